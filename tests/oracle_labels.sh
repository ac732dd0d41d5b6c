#!/bin/sh
# Oracle test for blocks and labels: ../shared/data/labels_check.py (python3 + tshark, written
# outside this project) applies LABELS.tsv and counts the paper-preset blocks of every labelled
# capture. `flowpic blocks --labels LABELS.tsv` must select the same captures and cut the same
# number of blocks from each, and `flowpic flows --labels LABELS.tsv` must list, capture by
# capture, exactly the flows `labels_check.py --flows` marks as selected, with the same packet
# counts. Block packet sums may differ only where a flow's time goes
# backwards: flowpic counts such a packet in the current window at offset 0 (FLOWPIC.md
# section 2), labels_check.py in the window of its own time; those captures are listed.
set -u
cd "$(dirname "$0")/.." || exit 1
# the shared captures: $DATA, else ../shared/data beside this checkout, else /work/shared/data
if [ -z "${DATA:-}" ]; then
    for d in ../shared/data /work/shared/data; do [ -d "$d" ] && DATA=$d && break; done
fi
DATA=${DATA:-../shared/data}
FLOWPIC=${FLOWPIC:-./flowpic}
PYTHON=${PYTHON:-python3}
if ! command -v tshark >/dev/null 2>&1 || ! command -v "$PYTHON" >/dev/null 2>&1; then
    if [ "${FLOWPIC_REQUIRE_TSHARK:-0}" = 1 ]; then echo "oracle_labels: tshark and python3 are required"; exit 1; fi
    echo "oracle_labels: SKIPPED (needs tshark and python3)"; exit 0
fi
if [ ! -f "$DATA/labels_check.py" ]; then echo "oracle_labels: SKIPPED (no $DATA/labels_check.py)"; exit 0; fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$PYTHON" "$DATA/labels_check.py" "$DATA" --flows --jobs 2 > "$out/check.tsv" 2> "$out/check.err" || {
    echo "oracle_labels: labels_check.py failed:"; tail -5 "$out/check.err"; exit 1; }
# capture <TAB> blocks <TAB> block packets, for the labelled captures
awk -F '\t' '$1 ~ /\.(pcap|pcapng|cap)$/ && $2 != "" && $3 ~ /^L[0-9]+$/ { print $1 "\t" $8 "\t" $9 }' "$out/check.tsv" |
    LC_ALL=C sort > "$out/theirs"
: > "$out/mine"
: > "$out/mine_flows"
failed=0
while IFS="$(printf '\t')" read -r capture blocks packets; do
    $FLOWPIC blocks --labels "$DATA/LABELS.tsv" "$DATA/$capture" > "$out/one" 2> "$out/one.err" || {
        echo "FAIL $capture: flowpic blocks exits non-zero: $(cat "$out/one.err")"; failed=$((failed + 1)); continue; }
    tail -n +2 "$out/one" | awk -F '\t' -v c="$capture" '{ n++; p += $8 } END { print c "\t" n + 0 "\t" p + 0 }' >> "$out/mine"
    $FLOWPIC flows --labels "$DATA/LABELS.tsv" "$DATA/$capture" 2> "$out/one.err" |
        awk -F '\t' -v c="$capture" 'NR > 1 { print c "\t" toupper($1) "\t" $2 "\t" $3 "\t" $4 "\t" $5 "\t" $6 }' >> "$out/mine_flows"
done < "$out/theirs"
# the flows labels_check.py selects: "    * TCP 1.2.3.4:80 > [::1]:5 pkts=N ..." under each capture line
awk -F '\t' '$1 ~ /\.(pcap|pcapng|cap)$/ { c = $1; next }
    /^    \* / { split($0, w, " "); s = w[3]; d = w[5]; sub(/^pkts=/, "", w[6])
        sp = s; sub(/.*:/, "", sp); sub(/:[0-9]+$/, "", s); dp = d; sub(/.*:/, "", dp); sub(/:[0-9]+$/, "", d)
        gsub(/[][]/, "", s); gsub(/[][]/, "", d)
        print c "\t" w[2] "\t" s "\t" sp "\t" d "\t" dp "\t" w[6] }' "$out/check.tsv" | LC_ALL=C sort > "$out/theirs_flows"
LC_ALL=C sort -o "$out/mine_flows" "$out/mine_flows"
if cmp -s "$out/mine_flows" "$out/theirs_flows"; then
    echo "oracle_labels: $(wc -l < "$out/mine_flows") selected flows, the same as labels_check.py --flows"
else
    echo "FAIL: selected flows differ from labels_check.py --flows (< flowpic, > labels_check.py):"
    diff "$out/mine_flows" "$out/theirs_flows" | head -20
    failed=$((failed + 1))
fi
LC_ALL=C sort -o "$out/mine" "$out/mine"
passed=0
differ_packets=""
while IFS="$(printf '\t')" read -r capture blocks packets; do
    line=$(grep -F "$capture	" "$out/mine" | head -1)
    mb=$(printf '%s' "$line" | cut -f2)
    mp=$(printf '%s' "$line" | cut -f3)
    if [ "$mb" != "$blocks" ]; then
        echo "FAIL $capture: labels_check.py $blocks blocks, flowpic ${mb:-none}"
        failed=$((failed + 1))
    else
        passed=$((passed + 1))
        [ "$mp" != "$packets" ] && differ_packets="$differ_packets $capture($packets/$mp)"
    fi
done < "$out/theirs"
# every capture flowpic's labels select, labels_check.py selects too (and the other way round)
n_theirs=$(wc -l < "$out/theirs")
n_all=$(find "$DATA" -type f \( -name '*.pcap' -o -name '*.pcapng' \) | wc -l)
$FLOWPIC extract --no-progress --labels "$DATA/LABELS.tsv" -o "$out/all.fpds" \
    $(find "$DATA" -type f \( -name '*.pcap' -o -name '*.pcapng' \) | LC_ALL=C sort) > "$out/extract.txt" || failed=$((failed + 1))
mine_sources=$(sed -n 's/.* classes, \([0-9]*\) captures.*/\1/p' "$out/extract.txt" | head -1)
if [ "$mine_sources" != "$n_theirs" ]; then
    echo "FAIL: flowpic extract labels $mine_sources of $n_all captures, labels_check.py $n_theirs"
    failed=$((failed + 1))
fi
[ -n "$differ_packets" ] && echo "oracle_labels: same blocks, packet sums differ (time going backwards):$differ_packets"
echo "oracle_labels: $passed labelled captures cut into the same number of blocks as labels_check.py"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ "$passed" -gt 0 ]
