#!/bin/sh
# Reruns every figure of docs/RESULTS.md from ../shared/data (or DATA=DIR LABELS=FILE).
#   sh examples/reproduce.sh [PART...]     parts: data anchor best ablation res short tasks (default: all)
# Outputs go to $OUT (default results/): one .out (the tables), .err (a line per run) and .json
# per experiment, and summary.tsv with one line per experiment. The fold table comes from
# ../shared/bench/torch_pipeline.py --list-folds when python3 with torch is there (the anchor's
# exact folds), else from flowpic's own copy of the same rule (experiment --list-folds).
# Time on 2 idle cores: about 3 minutes per experiment of 5 folds x 3 seeds with the mini net.
set -eu
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
LABELS=${LABELS:-$DATA/LABELS.tsv}
OUT=${OUT:-results}
SEEDS=${SEEDS:-1,2,3}
PARTS=${*:-data anchor best ablation res short tasks}
mkdir -p "$OUT"
[ -x ./flowpic ] || make flowpic
want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

# Every labelled capture, every window kept (--min-packets 1): blocks are the windows of >= 10
# packets, and the first window of each flow makes its short-flow picture.
if want data || [ ! -f "$OUT/data.fpds" ]; then
    find "$DATA" -type f \( -name '*.pcap' -o -name '*.pcapng' \) | LC_ALL=C sort > "$OUT/captures.txt"
    # shellcheck disable=SC2046
    ./flowpic extract --no-progress --labels "$LABELS" --min-packets 1 -o "$OUT/data.fpds" $(cat "$OUT/captures.txt")
    if /usr/bin/python3 -c 'import torch' 2>/dev/null && [ -f ../shared/bench/torch_pipeline.py ]; then
        /usr/bin/python3 ../shared/bench/torch_pipeline.py --data "$DATA" --labels "$LABELS" --list-folds > "$OUT/folds.tsv"
    else
        ./flowpic experiment --list-folds "$OUT/data.fpds" > "$OUT/folds.tsv"
    fi
fi

# run NAME OPTIONS...: one experiment (5 folds grouped by file x the seeds)
run() {
    name=$1
    shift
    echo "== $name: flowpic experiment --folds $OUT/folds.tsv --seeds $SEEDS $*" >&2
    ./flowpic experiment --no-progress --folds "$OUT/folds.tsv" --seeds "$SEEDS" --json "$OUT/$name.json" "$@" \
        "$OUT/data.fpds" > "$OUT/$name.out" 2> "$OUT/$name.err"
    awk -v n="$name" -v cmd="$*" -F '\t' '
        $1 == "block_accuracy" { b = $2 } $1 == "balanced_accuracy" { ba = $2 } $1 == "flow_accuracy" { f = $2 }
        $1 == "flow_accuracy_mean_vote" { fm = $2 } $1 == "short_flow_accuracy" { s = $2 }
        $1 == "worst_class_recall_in_a_fold" { w = $2 }
        END { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n, b, ba, f, fm, s, w, cmd }' "$OUT/$name.out" | tee -a "$OUT/summary.tsv"
}
[ -f "$OUT/summary.tsv" ] || printf 'experiment\tblock\tbalanced\tflow\tflow_mean\tshort\tworst_recall\toptions\n' > "$OUT/summary.tsv"

BEST="--oversample --aug-rtt 0.5 --aug-shift 1 --aug-loss 0.1 --aug-thin 0.5 --aug-truncate 10"
if want anchor; then # the plain pipeline's recipes, for the side-by-side
    run anchor-a --transform scale --balance
    run anchor-b --transform scale --oversample
fi
if want best; then
    # shellcheck disable=SC2086
    run best $BEST
fi
if want ablation; then # one change at a time from the best recipe
    run no-augment --oversample
    run no-rtt --oversample --aug-shift 1 --aug-loss 0.1 --aug-thin 0.5 --aug-truncate 10
    run no-shift --oversample --aug-rtt 0.5 --aug-loss 0.1 --aug-thin 0.5 --aug-truncate 10
    run no-loss --oversample --aug-rtt 0.5 --aug-shift 1 --aug-thin 0.5 --aug-truncate 10
    run no-thin --oversample --aug-rtt 0.5 --aug-shift 1 --aug-loss 0.1 --aug-truncate 10
    run no-truncate --oversample --aug-rtt 0.5 --aug-shift 1 --aug-loss 0.1 --aug-thin 0.5
    # shellcheck disable=SC2086
    run scale-values --transform scale $BEST
    # shellcheck disable=SC2086
    run binary-values --transform binary $BEST
    # shellcheck disable=SC2086
    run undersample $(echo "$BEST" | sed 's/--oversample/--balance/')
fi
if want res; then
    # shellcheck disable=SC2086
    run res32 --res 32 $BEST
    # shellcheck disable=SC2086
    run full1500 --net full --epochs 15 $BEST
fi
if want tasks; then
    # shellcheck disable=SC2086
    run one-vs-all --task one-vs-all --balance --aug-rtt 0.5 --aug-shift 1 --aug-loss 0.1 --aug-thin 0.5 --aug-truncate 10
    # shellcheck disable=SC2086
    run leave-one-out --task leave-one-out $BEST
    printf '*requet-youtube/*\tRequet\n*vca-sense-conferencing/*\tVCA-sense\n*ndpi-*/*\tnDPI\n' > "$OUT/conditions.tsv"
    # shellcheck disable=SC2086
    run conditions --task conditions --conditions "$OUT/conditions.tsv" $BEST
fi
echo "reproduce: tables in $OUT/*.out, one line per experiment in $OUT/summary.tsv" >&2
