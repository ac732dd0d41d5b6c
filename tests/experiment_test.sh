#!/bin/sh
# flowpic experiment on ../shared/data, checked against the plain pipeline's own counts
# (../shared/bench/README.md: 1157 blocks of >= 10 packets, 924 flows with blocks, 104 files with
# blocks, 5 file-grouped folds): every block and flow is tested exactly once over the folds, no
# file is on both sides, the fold table round-trips through --folds, the metrics are shares, and
# one epoch of the default net is quick. Also the one-vs-all and leave-one-out tasks run.
# FLOWPIC_REDUCED=1 (valgrind): the same runs and checks on the mini net (tests/lib.sh).
set -u
cd "$(dirname "$0")/.." || exit 1
. tests/lib.sh
if [ ! -f "${DATA:-}/LABELS.tsv" ]; then echo "experiment_test: SKIPPED (no shared captures)"; exit 0; fi
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

find "$DATA" -type f \( -name '*.pcap' -o -name '*.pcapng' \) | LC_ALL=C sort > "$out/all"
# shellcheck disable=SC2046
$FLOWPIC extract --no-progress --labels "$DATA/LABELS.tsv" --min-packets 1 -o "$out/d.fpds" $(cat "$out/all") > /dev/null
net=
[ "$REDUCED" = 1 ] && net="--net mini --res 32 --balance" &&
    echo "     (FLOWPIC_REDUCED=1: every run on the mini net at 32 x 32, trained on classes undersampled to the smallest)"
$FLOWPIC experiment --list-folds "$out/d.fpds" > "$out/folds.tsv"
check "fold table: 104 files with blocks, 1157 blocks, 5 folds" \
    "awk -F '\t' 'NR > 1 { n++; b += \$4; f[\$3] = 1 } END { exit !(n == 104 && b == 1157 && length(f) == 5) }' '$out/folds.tsv'"
$FLOWPIC experiment $net --no-progress --folds "$out/folds.tsv" --epochs 1 --seeds 1,2 --json "$out/e.json" \
    --confusion-png "$out/cm" "$out/d.fpds" > "$out/e.out" 2> "$out/e.err"
check "multiclass experiment runs 5 folds x 2 seeds" "[ \$(grep -c '^multiclass' '$out/e.err') -eq 10 ]"
pngs=0
for k in block flow short; do # PNG signature, then IHDR width and height: 6 x (48 + 2) + 2 = 302
    [ "$(head -c 8 "$out/cm-$k.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] &&
        [ "$(od -An -tu1 -j16 -N8 "$out/cm-$k.png" | tr -s ' ')" = ' 0 0 1 46 0 0 1 46' ] && pngs=$((pngs + 1))
done
check "confusion matrices as PNG (block, flow, short; 302 x 302)" '[ "$pngs" -eq 3 ]'
check "metrics are shares in [0, 1]" \
    "awk -F '\t' '/_accuracy|_balanced/ { n++; if (\$2 < 0 || \$2 > 1) bad++ } END { exit !(n >= 6 && !bad) }' '$out/e.out'"
if /usr/bin/python3 -c 'import json' 2>/dev/null; then
    /usr/bin/python3 - "$out/e.json" "$out/folds.tsv" > "$out/py.txt" 2>&1 <<'PY'
import json, sys, collections
runs = json.load(open(sys.argv[1]))["runs"]
for seed in (1, 2):
    rs = [r for r in runs if r["seed"] == seed]
    blocks = sum(r["test_blocks"] for r in rs)
    flows = sum(sum(map(sum, r["flow_confusion"])) for r in rs)
    shorts = sum(sum(map(sum, r["short_confusion"])) for r in rs)
    cm_blocks = sum(sum(map(sum, r["block_confusion"])) for r in rs)
    print(seed, len(rs), blocks, cm_blocks, flows, shorts)
    # every run: train + val + test never exceeds the blocks, and test is one fold
    assert all(r["train_blocks"] + r["val_blocks"] + r["test_blocks"] <= 1157 for r in rs)
PY
    check "over the folds each of the 1157 blocks and 924 flows is tested once (pipeline's counts)" \
        "awk '{ if (\$2 != 5 || \$3 != 1157 || \$4 != 1157 || \$5 != 924 || \$6 != 924) bad++ } END { exit !(NR == 2 && !bad) }' '$out/py.txt'"
fi
# the computed folds, given back as a table, give the same runs
$FLOWPIC experiment $net --no-progress --epochs 1 --json "$out/f.json" "$out/d.fpds" > "$out/f.out" 2> "$out/f.err"
check "computed folds = the same folds read back with --folds" \
    "[ \"\$(grep -o 'test_blocks\": [0-9]*' '$out/f.json')\" = \"\$(grep -o 'test_blocks\": [0-9]*' '$out/e.json' | head -n 5)\" ]"
$FLOWPIC experiment $net --no-progress --task one-vs-all --balance --epochs 1 --k 2 "$out/d.fpds" > "$out/o.out" 2> "$out/o.err"
check "one-vs-all: a table per class" "[ \$(grep -c '^== .* vs all ==' '$out/o.out') -eq 6 ]"
$FLOWPIC experiment $net --no-progress --task leave-one-out --epochs 1 "$out/d.fpds" > "$out/l.out" 2> "$out/l.err"
check "leave-one-out: a line per capture directory with blocks" \
    "[ \$(awk -F '\t' 'NR > 1 && NF == 3' '$out/l.out' | wc -l) -ge 8 ]"
printf '# conditions: a label map\n*requet-youtube/*\tRequet\n*vca-sense-*/*\tVCA\n*ndpi-*/*\tnDPI\n' > "$out/cond.tsv"
$FLOWPIC experiment $net --no-progress --task conditions --conditions "$out/cond.tsv" --epochs 1 --k 2 "$out/d.fpds" \
    > "$out/c.out" 2> "$out/c.err"
check "conditions: a 3 x 3 matrix of block and of flow accuracy" \
    "[ \$(awk -F '\t' '\$1 ~ /^(Requet|VCA|nDPI)\$/ && NF == 4' '$out/c.out' | wc -l) -eq 6 ]"
printf 'nope\n' > "$out/bad.tsv"
$FLOWPIC experiment $net --folds "$out/bad.tsv" "$out/d.fpds" > /dev/null 2> "$out/bad.err"
check "a fold table without file and fold columns is refused" "grep -q \"need columns 'file' and 'fold'\" '$out/bad.err'"
echo "experiment: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
