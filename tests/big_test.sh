#!/bin/sh
# Captures of more than 4 GiB through a pipe (never stored): tests/big_capture.c writes them,
# `flowpic info -` reads them. The error planted after byte 2^32 must come with its record
# number and 64-bit offset, and every packet and byte before it must be counted. The expected
# figures are worked out here from the generator's layout. About 10 s (8.6 GB through pipes).
# Last line: "N passed, N failed".
set -u
cd "$(dirname "$0")/.." || exit 1
FLOWPIC=${FLOWPIC:-./flowpic}
GEN=${GEN:-build/big_capture}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
passed=0
failed=0
check() { # name, expected line, file
    if grep -qxF "$2" "$3"; then
        passed=$((passed + 1)); echo "ok   $1"
    else
        failed=$((failed + 1)); echo "FAIL $1: no line '$2' in:"; cat "$3"
    fi
}

# classic pcap: 24-byte header, 16400 records of 16 + 262144 bytes, then a caplen over the limit
"$GEN" pcap | "$FLOWPIC" info - > "$out/pcap" 2> /dev/null
records=16400
offset=$((24 + records * (16 + 262144)))
check "pcap: offset past 4 GiB" "error:           record $((records + 1)), offset $offset: capture length 262145 exceeds the limit of 262144" "$out/pcap"
check "pcap: packets" "packets:         $records" "$out/pcap"
check "pcap: captured bytes" "captured bytes:  $((records * 262144))" "$out/pcap"
check "pcap: file bytes" "file bytes:      $offset" "$out/pcap"
check "pcap: last time" "last:            $((1000000000 + records - 1)).000000000" "$out/pcap"

# pcapng: section header (28 bytes), interface (20), 4100 packet blocks of 1 MiB, a bad block
"$GEN" pcapng | "$FLOWPIC" info - > "$out/ng" 2> /dev/null
blocks=4100
offset=$((28 + 20 + blocks * 1048576))
check "pcapng: offset past 4 GiB" "error:           record $((blocks + 3)), offset $offset: block length 13 is not a multiple of 4" "$out/ng"
check "pcapng: packets" "packets:         $blocks" "$out/ng"
check "pcapng: captured bytes" "captured bytes:  $((blocks * (1048576 - 32)))" "$out/ng"
check "pcapng: file bytes" "file bytes:      $offset" "$out/ng"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
