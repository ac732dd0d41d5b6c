#!/bin/sh
# Online classification through the CLI (docs/ONLINE.md):
#   1. pipe: `flowpic classify MODEL - < capture` prints, for every block, the decision of the
#      offline `classify --per-block` (label and its probability), and for every flow the line of
#      the offline `classify` (blocks, vote, confidence).
#   2. --follow: a writer appends the capture in pieces (the file header and records cut across
#      writes); the follower, stopped by SIGINT once it has every packet, exits 0 with exactly the
#      decisions of the pipe.
#   3. live: a veth pair between two network namespaces of its own; tests/online_send.c sends
#      VoIP-like and bulk UDP for a bounded time; `flowpic live` on the other end, with a model trained
#      here on 2-second blocks of examples/gentraffic.c captures, prints final, partial and flow
#      decisions with the expected labels (voip, file), and exits 0 on SIGINT. Needs root and
#      `ip netns`: it skips with a message otherwise, unless FLOWPIC_REQUIRE_NETNS=1 (CI).
#   4. live without CAP_NET_RAW (as user nobody): a clear error, exit status 1.
# Also: examples/embed.c builds and decides.
set -u
cd "$(dirname "$0")/.." || exit 1
FLOWPIC=${FLOWPIC:-./flowpic}
CC=${CC:-cc}
out=$(mktemp -d)
A=fpA$$
B=fpB$$
cleanup() {
    ip netns del "$A" 2> /dev/null
    ip netns del "$B" 2> /dev/null
    rm -rf "$out"
}
trap cleanup EXIT
passed=0
failed=0
check() { # name, condition
    if eval "$2"; then passed=$((passed + 1)); echo "ok   $1"; else failed=$((failed + 1)); echo "FAIL $1"; fi
}
# wait_for SECONDS CONDITION: polls every 0.1 s
wait_for() {
    n=$(($1 * 10))
    while [ "$n" -gt 0 ] && ! eval "$2"; do sleep 0.1; n=$((n - 1)); done
    eval "$2"
}

# ---- a model and captures (seconds)
$CC -O2 -std=c99 -o "$out/gentraffic" examples/gentraffic.c -lm || exit 1
for class in voip video file chat browsing; do
    "$out/gentraffic" --seed 1 --classes "$class" --flows-per-class 4 -o "$out/$class.pcap" || exit 1
    printf '%s.pcap\t%s\n' "$class" "$class" >> "$out/labels.tsv"
done
"$out/gentraffic" --seed 2 --flows-per-class 3 -o "$out/mix.pcap" || exit 1
$FLOWPIC extract --no-progress --labels "$out/labels.tsv" -o "$out/d.fpds" "$out/voip.pcap" "$out/video.pcap" \
    "$out/file.pcap" "$out/chat.pcap" "$out/browsing.pcap" > /dev/null &&
    $FLOWPIC train --no-progress --net mini --res 32 --epochs 3 --val-split 0 --no-keep-best -o "$out/m.fpm" "$out/d.fpds" > /dev/null
check "model trained" '[ -s "$out/m.fpm" ]'

# ---- 1. pipe = offline
header=$(printf 'time\tproto\tsrc\tsport\tdst\tdport\tblock\tstate\tlabel\tconfidence')
cat "$out/mix.pcap" | $FLOWPIC classify "$out/m.fpm" - > "$out/pipe.tsv" 2> "$out/pipe.err"
status=$?
check "pipe: exit status 0" '[ $status -eq 0 ]'
check "pipe: the header" '[ "$(head -1 "$out/pipe.tsv")" = "$header" ]'
$FLOWPIC classify --per-block "$out/m.fpm" "$out/mix.pcap" > "$out/offline-blocks.tsv"
$FLOWPIC classify "$out/m.fpm" "$out/mix.pcap" > "$out/offline-flows.tsv"
awk -F '\t' 'NR > 1 && $8 == "final" { print $2, $3, $4, $5, $6, $7, $9, $10 }' "$out/pipe.tsv" | LC_ALL=C sort > "$out/a1"
awk -F '\t' 'NR == 1 { for (i = 9; i <= NF; i++) col[$i] = i; next }
             { print $1, $2, $3, $4, $5, $6, $8, $(col["p_" $8]) }' "$out/offline-blocks.tsv" | LC_ALL=C sort > "$out/b1"
awk -F '\t' 'NR > 1 && $8 == "flow" { print $2, $3, $4, $5, $6, $7, $9, $10 }' "$out/pipe.tsv" | LC_ALL=C sort > "$out/a2"
awk -F '\t' 'NR > 1 { print $1, $2, $3, $4, $5, $6, $7, $8 }' "$out/offline-flows.tsv" | LC_ALL=C sort > "$out/b2"
echo "     pipe: $(wc -l < "$out/a1") block decisions, $(wc -l < "$out/a2") flow decisions"
check "pipe: every block decision equals the offline one" '[ -s "$out/a1" ] && cmp -s "$out/a1" "$out/b1"'
check "pipe: every flow decision equals the offline vote" '[ -s "$out/a2" ] && cmp -s "$out/a2" "$out/b2"'
check "pipe: statistics on stderr" 'grep -q "^flowpic: packets [1-9]" "$out/pipe.err"'

# ---- examples/embed.c: the 40-line sensor builds warning-free and decides its two flows
$CC -std=c99 -Wall -Wextra -Wpedantic -Werror -O2 -o "$out/embed" examples/embed.c -lm &&
    "$out/embed" "$out/m.fpm" > "$out/embed.txt"
status=$?
check "embed: runs, final and flow decisions for both flows" \
    '[ $status -eq 0 ] && [ "$(grep -c " final " "$out/embed.txt")" -ge 4 ] && [ "$(grep -c " flow " "$out/embed.txt")" -eq 2 ]'

# ---- 2. --follow on a growing file
packets=$($FLOWPIC info "$out/mix.pcap" | awk '$1 == "packets:" { print $2; exit }')
: > "$out/grow.pcap"
$FLOWPIC classify --follow "$out/m.fpm" "$out/grow.pcap" > "$out/follow.tsv" 2> "$out/follow.err" &
follower=$!
size=$(wc -c < "$out/mix.pcap")
# 10 bytes first (half a file header), then pieces of a prime size (records cut across writes)
dd if="$out/mix.pcap" bs=10 count=1 2> /dev/null >> "$out/grow.pcap"
sleep 0.2
i=0
while [ $((10 + i * 65521)) -lt "$size" ] && [ "$i" -lt 200 ]; do
    tail -c +$((11 + i * 65521)) "$out/mix.pcap" | head -c 65521 >> "$out/grow.pcap"
    i=$((i + 1))
    sleep 0.02
done
check "follow: the writer wrote the whole capture" 'cmp -s "$out/grow.pcap" "$out/mix.pcap"'
read_all() {
    kill -USR1 "$follower" 2> /dev/null
    sleep 0.2
    [ "$(grep '^flowpic: packets' "$out/follow.err" | tail -1 | awk '{ print $3 }')" = "$packets" ]
}
check "follow: every packet read ($packets)" 'wait_for 20 read_all'
kill -INT "$follower"
wait "$follower"
status=$?
check "follow: exit status 0 after SIGINT" '[ $status -eq 0 ]'
check "follow: the same decisions as the pipe" 'cmp -s "$out/follow.tsv" "$out/pipe.tsv"'

# ---- 4. no CAP_NET_RAW: a clear error
if [ "$(id -u)" = 0 ] && command -v setpriv > /dev/null 2>&1; then
    setpriv --reuid=65534 --regid=65534 --clear-groups $FLOWPIC live "$out/m.fpm" > /dev/null 2> "$out/nocap.err"
    status=$?
    check "live without CAP_NET_RAW: exit status 1 and the reason" \
        '[ $status -eq 1 ] && grep -q "cannot open a packet socket: Operation not permitted (needs root or the CAP_NET_RAW capability)" "$out/nocap.err"'
fi

# ---- 3. live on a veth pair
skip_live() {
    echo "     live: SKIPPED ($1)"
    if [ "${FLOWPIC_REQUIRE_NETNS:-0}" = 1 ]; then failed=$((failed + 1)); echo "FAIL live (FLOWPIC_REQUIRE_NETNS=1)"; fi
}
if [ "$(id -u)" != 0 ]; then
    skip_live "needs root for network namespaces and AF_PACKET"
elif ! command -v ip > /dev/null 2>&1; then
    skip_live "no ip command (iproute2)"
elif ! { ip netns add "$A" && ip netns add "$B" && ip link add "va$$" type veth peer name "vb$$" &&
         ip link set "va$$" netns "$A" && ip link set "vb$$" netns "$B" &&
         ip -n "$A" addr add 10.213.0.1/24 dev "va$$" && ip -n "$A" link set "va$$" up &&
         ip -n "$B" addr add 10.213.0.2/24 dev "vb$$" && ip -n "$B" link set "vb$$" up; } 2> "$out/netns.err"; then
    skip_live "cannot create network namespaces and a veth pair: $(head -1 "$out/netns.err")"
else
    $CC -O2 -std=c99 -o "$out/send" tests/online_send.c || exit 1
    printf 'voip.pcap\tvoip\nfile.pcap\tfile\n' > "$out/l2.tsv"
    $FLOWPIC extract --no-progress --block 2 --labels "$out/l2.tsv" -o "$out/d2.fpds" "$out/voip.pcap" "$out/file.pcap" > /dev/null &&
        $FLOWPIC train --no-progress --net mini --res 32 --epochs 10 --val-split 0 --no-keep-best -o "$out/m2.fpm" "$out/d2.fpds" > /dev/null
    ip netns exec "$A" $FLOWPIC live --interface "va$$" --early-packets 50 "$out/m2.fpm" > "$out/live.tsv" 2> "$out/live.err" &
    live=$!
    wait_for 10 '[ -s "$out/live.tsv" ]' # the header: the ring is up
    ip netns exec "$B" "$out/send" 10.213.0.1 5000 voip 5 &
    sender=$!
    ip netns exec "$B" "$out/send" 10.213.0.1 5001 bulk 5
    wait "$sender"
    sleep 0.5
    kill -INT "$live"
    wait "$live"
    status=$?
    check "live: exit status 0 after SIGINT" '[ $status -eq 0 ]'
    check "live: the header" '[ "$(head -1 "$out/live.tsv")" = "$header" ]'
    # decisions of the two flows (destination port 5000 voip, 5001 bulk)
    for want in 5000:voip 5001:file; do
        port=${want%:*}
        label=${want#*:}
        n_final=$(awk -F '\t' -v p="$port" '$6 == p && $8 == "final"' "$out/live.tsv" | wc -l)
        n_right=$(awk -F '\t' -v p="$port" -v l="$label" '$6 == p && $8 == "final" && $9 == l' "$out/live.tsv" | wc -l)
        n_partial=$(awk -F '\t' -v p="$port" '$6 == p && $8 == "partial"' "$out/live.tsv" | wc -l)
        flow=$(awk -F '\t' -v p="$port" '$6 == p && $8 == "flow" { print $9 }' "$out/live.tsv")
        echo "     live: port $port: $n_right of $n_final final decisions $label, $n_partial partial, flow decision '$flow'"
        check "live: port $port has final decisions, most of them $label" '[ "$n_final" -ge 2 ] && [ $((2 * n_right)) -gt "$n_final" ]'
        check "live: port $port flow decision is $label" '[ "$flow" = "$label" ]'
        check "live: port $port has early (partial) decisions" '[ "$n_partial" -ge 1 ]'
    done
    check "live: statistics on stderr" 'grep -q "^flowpic: packets [1-9].*drops [0-9]" "$out/live.err"'
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
