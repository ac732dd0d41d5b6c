#!/bin/sh
# Oracle test: for every capture under DATA (default ../shared/data), the per-flow packet counts
# and byte sums of `flowpic flows` must equal what tshark reports for the same capture.
#
# tshark's view (the same rule as shared/bench/torch_pipeline.py and shared/data/LABELS.tsv): a
# packet counts when the first ip/ipv6 layer of frame.protocols is followed, after IPv6
# extension headers, by tcp or udp; size = ip.len or ipv6.plen + 40; first fields only.
# Without tshark the test is skipped, unless FLOWPIC_REQUIRE_TSHARK=1 (CI sets it).
set -u
cd "$(dirname "$0")/.." || exit 1
# the shared captures: $DATA, else ../shared/data beside this checkout, else /work/shared/data
if [ -z "${DATA:-}" ]; then
    for d in ../shared/data /work/shared/data; do [ -d "$d" ] && DATA=$d && break; done
fi
DATA=${DATA:-../shared/data}
FLOWPIC=${FLOWPIC:-./flowpic}
JOBS=${JOBS:-2}

if ! command -v tshark >/dev/null 2>&1; then
    if [ "${FLOWPIC_REQUIRE_TSHARK:-0}" = 1 ]; then
        echo "oracle_tshark: tshark is required but not installed"; exit 1
    fi
    echo "oracle_tshark: SKIPPED (tshark not installed; apt-get install tshark)"; exit 0
fi
if [ ! -d "$DATA" ]; then
    echo "oracle_tshark: SKIPPED (no capture directory $DATA)"; exit 0
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

# One capture: writes $out/<n>.ok or $out/<n>.fail with the difference.
cat > "$out/one.sh" <<'ONE'
#!/bin/sh
f=$1; out=$2; flowpic=$3
n=$(printf '%s' "$f" | tr '/.' '__')
$flowpic flows "$f" > "$out/$n.flowpic" 2> "$out/$n.err"
status=$?
tail -n +2 "$out/$n.flowpic" | cut -f1-7 | LC_ALL=C sort > "$out/$n.mine"
tshark -n -r "$f" -o ip.defragment:FALSE -o ipv6.defragment:FALSE \
    -o tcp.desegment_tcp_streams:FALSE -T fields -E occurrence=f -E separator=/t \
    -e frame.protocols -e ip.src -e ip.dst -e ip.len -e ipv6.src -e ipv6.dst -e ipv6.plen \
    -e tcp.srcport -e tcp.dstport -e udp.srcport -e udp.dstport 2>/dev/null |
awk -F '\t' '
{
    n = split($1, layer, ":"); ip = 0
    for (i = 1; i <= n; i++) if (layer[i] == "ip" || layer[i] == "ipv6") { ip = i; break }
    if (!ip) next
    j = ip + 1
    if (layer[ip] == "ipv6")
        while (j <= n && (layer[j] == "ipv6.hopopts" || layer[j] == "ipv6.routing" ||
                          layer[j] == "ipv6.dstopts" || layer[j] == "ipv6.fraghdr" || layer[j] == "ah")) j++
    if (j > n) next
    if (layer[j] == "tcp") { sp = $8; dp = $9 } else if (layer[j] == "udp") { sp = $10; dp = $11 } else next
    if (sp == "" || dp == "") next
    if (layer[ip] == "ip") { s = $2; d = $3; size = $4 } else { s = $5; d = $6; size = $7 + 40 }
    k = layer[j] "\t" s "\t" sp "\t" d "\t" dp
    pk[k]++; by[k] += size
}
END { for (k in pk) printf "%s\t%d\t%d\n", k, pk[k], by[k] }' | LC_ALL=C sort > "$out/$n.tshark"
if [ $status -ne 0 ]; then
    { echo "$f: flowpic exit status $status"; cat "$out/$n.err"; } > "$out/$n.fail"
elif ! diff "$out/$n.tshark" "$out/$n.mine" > "$out/$n.diff"; then
    { echo "$f: flows differ (< tshark, > flowpic)"; head -20 "$out/$n.diff"; } > "$out/$n.fail"
else
    echo "$f $(wc -l < "$out/$n.mine") flows" > "$out/$n.ok"
fi
ONE

find "$DATA" -type f \( -name '*.pcap' -o -name '*.pcapng' \) | LC_ALL=C sort |
    xargs -P "$JOBS" -I{} sh "$out/one.sh" {} "$out" "$FLOWPIC"

passed=$(ls "$out" | grep -c '\.ok$')
failed=$(ls "$out" | grep -c '\.fail$')
cat "$out"/*.fail 2>/dev/null
echo "oracle_tshark: $passed captures agree with tshark, $failed differ"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
