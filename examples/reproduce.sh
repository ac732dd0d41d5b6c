#!/bin/sh
# Reruns the figures of docs/RESULTS.md from ../shared/data (or DATA=DIR LABELS=FILE).
#   sh examples/reproduce.sh [PART...]   parts: anchor best blocks ablation res tasks (default: all)
# Outputs go to $OUT (default results/): per experiment NAME.out (the tables), NAME.err (a line
# per run) and NAME.json, and summary.tsv with one line per experiment. The fold table comes from
# ../shared/bench/torch_pipeline.py --list-folds when python3 with torch is there (the anchor's
# exact folds), else from flowpic's copy of the same rule (experiment --list-folds).
# SEEDS=1,2,3 by default. Time on 2 idle cores: 2-6 minutes per experiment of 5 folds x 3 seeds.
set -eu
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
LABELS=${LABELS:-$DATA/LABELS.tsv}
OUT=${OUT:-results}
SEEDS=${SEEDS:-1,2,3}
PARTS=${*:-anchor best blocks ablation res tasks}
mkdir -p "$OUT"
[ -x ./flowpic ] || make flowpic
want() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }

# Every labelled capture with every window kept (--min-packets 1): the experiment's blocks are the
# windows of >= 10 packets, and each flow's first window makes its short-flow picture.
extract() { # NAME [extract options]
    name=$1
    shift
    [ -f "$OUT/$name.fpds" ] && return 0
    find "$DATA" -type f \( -name '*.pcap' -o -name '*.pcapng' \) | LC_ALL=C sort > "$OUT/captures.txt"
    # shellcheck disable=SC2046
    ./flowpic extract --no-progress --labels "$LABELS" --min-packets 1 "$@" -o "$OUT/$name.fpds" $(cat "$OUT/captures.txt") >&2
}
extract data
if [ ! -f "$OUT/folds.tsv" ]; then
    if /usr/bin/python3 -c 'import torch' 2>/dev/null && [ -f ../shared/bench/torch_pipeline.py ]; then
        /usr/bin/python3 ../shared/bench/torch_pipeline.py --data "$DATA" --labels "$LABELS" --list-folds > "$OUT/folds.tsv"
    else
        ./flowpic experiment --list-folds "$OUT/data.fpds" > "$OUT/folds.tsv"
    fi
fi
[ -f "$OUT/summary.tsv" ] ||
    printf 'experiment\tblock\tbalanced\tflow\tflow_both\tshort\tshort_both\tworst_recall\toptions\n' > "$OUT/summary.tsv"

run() { # NAME DATASET [experiment options]: 5 folds grouped by file x the seeds
    name=$1
    data=$2
    shift 2
    echo "== $name: flowpic experiment --folds $OUT/folds.tsv --seeds $SEEDS $* $OUT/$data.fpds" >&2
    ./flowpic experiment --no-progress --folds "$OUT/folds.tsv" --seeds "$SEEDS" --json "$OUT/$name.json" "$@" \
        "$OUT/$data.fpds" > "$OUT/$name.out" 2> "$OUT/$name.err"
    awk -v n="$name" -v cmd="$*" -F '\t' '{ v[$1] = $2 }
        END { printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", n, v["block_accuracy"], v["balanced_accuracy"],
              v["flow_accuracy"], v["flow_accuracy_both_directions"], v["short_flow_accuracy"],
              v["short_flow_accuracy_both_directions"], v["worst_class_recall_in_a_fold"], cmd }' "$OUT/$name.out" |
        tee -a "$OUT/summary.tsv"
}

# The plain pipeline's protocol: validation files, early stopping, no augmentation.
PIPELINE="--no-augment --val-share 0.1 --patience 5 --epochs 30"
if want anchor; then # its recipes (a), (b) and (d), oversampling in place of its weighted loss
    # shellcheck disable=SC2086
    run anchor-a data --net mini --transform scale --balance $PIPELINE
    # shellcheck disable=SC2086
    run anchor-b data --net mini --transform scale --oversample $PIPELINE
    # shellcheck disable=SC2086
    run anchor-d data --transform raw --oversample $PIPELINE
fi
if want best; then # the defaults: full net, log1p, oversampling, augmentations, 15 epochs on all training files
    run best data
    run best-mini data --net mini
    run no-augment data --no-augment
fi
if want blocks; then # shorter windows: finer time columns, more blocks
    extract data-20s --block 20
    run best-20s data-20s
    run best-mini-20s data-20s --net mini
    extract data-step30 --step 30 # overlapping windows
    run best-step30 data-step30
fi
if want ablation; then # one change at a time
    # shellcheck disable=SC2086
    run log1p-pipeline data --net mini --oversample $PIPELINE
    run no-rtt data --aug-rtt 0
    run no-shift data --aug-shift 0
    run no-loss data --aug-loss 0
    run no-thin data --aug-thin 0
    run no-truncate data --aug-truncate 0
    run scale-values data --transform scale
    run binary-values data --transform binary
    run undersample data --balance
    run no-balance data --no-balance
fi
if want res; then
    run mini64 data --net mini
    run mini32 data --net mini --res 32
    run full-raw data --transform raw
fi
if want tasks; then
    run one-vs-all data --task one-vs-all --balance
    run leave-one-out data --task leave-one-out
    printf '*requet-youtube/*\tRequet\n*vca-sense-conferencing/*\tVCA-sense\n*ndpi-*/*\tnDPI\n*lab-file-transfer/*\tlab\n*whatsapp-alonmesh/*\twhatsapp\n' \
        > "$OUT/conditions.tsv"
    run conditions data --task conditions --conditions "$OUT/conditions.tsv"
fi
echo "reproduce: tables in $OUT/*.out, one line per experiment in $OUT/summary.tsv" >&2
