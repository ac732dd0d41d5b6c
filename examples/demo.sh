#!/bin/sh
# make demo: the main job on a bundled default.
#   1. synthetic captures of the paper's five classes (examples/gentraffic.c, seeded)
#   2. flowpic extract: captures -> a labelled data set of 60 s blocks
#   3. flowpic train: the CNN (the paper's net at 1500 x 1500, log1p values) with a validation split
#   4. flowpic eval: accuracy and confusion matrix on blocks the model has not seen
#   5. flowpic classify: a freshly generated mixed capture, flow by flow, scored against the
#      generator's own labels
#   6. flowpic render: one FlowPic per class as PNG
# DATA=DIR LABELS=FILE runs steps 2-4 and 6 on any labelled captures (e.g. DATA=../shared/data
# LABELS=../shared/data/LABELS.tsv). Outputs go to $DEMO_DIR (default demo-output/).
set -eu
cd "$(dirname "$0")/.."
out=${DEMO_DIR:-demo-output}
epochs=${EPOCHS:-30}
mkdir -p "$out"
step() { printf '\n== %s\n' "$*"; }

if [ -n "${DATA:-}" ]; then
    [ -n "${LABELS:-}" ] || { echo "demo: DATA needs LABELS (a label map)" >&2; exit 2; }
    labels=$LABELS
    find "$DATA" -type f \( -name '*.pcap' -o -name '*.pcapng' \) | LC_ALL=C sort > "$out/captures.txt"
else
    step "1. synthetic captures, one per class, for training (examples/gentraffic.c, seed 1)"
    cc -O2 -std=c99 -o "$out/gentraffic" examples/gentraffic.c -lm
    labels="$out/labels.tsv"
    printf '# glob\tlabel: each training capture holds one class\n' > "$labels"
    : > "$out/captures.txt"
    for class in voip video file chat browsing; do
        "$out/gentraffic" --seed 1 --classes "$class" --flows-per-class 8 -o "$out/$class.pcap"
        printf '%s.pcap\t%s\n' "$class" "$class" >> "$labels"
        echo "$out/$class.pcap" >> "$out/captures.txt"
        echo "demo: wrote $out/$class.pcap"
    done
fi

step "2. flowpic extract: 60 s blocks of >= 10 packets, labelled by $labels"
# shellcheck disable=SC2046
./flowpic extract --progress --labels "$labels" -o "$out/data.fpds" $(cat "$out/captures.txt")

step "3. flowpic train: the paper's net, 1500 x 1500, $epochs epochs, 20 % of the blocks held out"
./flowpic train --progress --epochs "$epochs" --val-split 0.2 -o "$out/model.fpm" "$out/data.fpds"

step "4. flowpic eval on the training data (the held-out 20 % are in the last epoch line above)"
./flowpic eval "$out/model.fpm" "$out/data.fpds" | tail -n 12

if [ -z "${DATA:-}" ]; then
    step "5. flowpic classify: a new capture (seed 2, every class mixed), flow by flow"
    "$out/gentraffic" --seed 2 --flows-per-class 4 --labels "$out/new.truth.tsv" -o "$out/new.pcap"
    ./flowpic classify "$out/model.fpm" "$out/new.pcap" > "$out/new.classified.tsv"
    head -n 8 "$out/new.classified.tsv"
    echo "... ($(($(wc -l < "$out/new.classified.tsv") - 1)) flows in $out/new.classified.tsv)"
    # score: the generator's truth is per client-side 5-tuple; a flow matches in either direction
    awk -F '\t' 'NR == FNR { if (FNR > 1) { t[$1 FS $2 FS $3 FS $4 FS $5] = $6; t[$1 FS $4 FS $5 FS $2 FS $3] = $6 } next }
                 FNR > 1 { k = $1 FS $2 FS $3 FS $4 FS $5; if (k in t) { n++; ok += t[k] == $7 } }
                 END { printf "demo: %d of %d flows of the new capture classified as their true class (%.0f %%)\n", ok, n, n ? 100 * ok / n : 0 }' \
        "$out/new.truth.tsv" "$out/new.classified.tsv"
fi

step "6. one FlowPic per class as PNG (its block with the most packets): time left to right, size bottom to top"
for class in $(./flowpic stats "$out/data.fpds" | awk -F '\t' 'f && NF == 3 { print $1 } /^class\t/ { f = 1 } /^$/ { if (f) exit }'); do
    ./flowpic render --class "$class" --index busiest -o "$out/$class.png" "$out/data.fpds"
done

step "done: outputs in $out/ (captures, data.fpds, model.fpm, new.classified.tsv, one PNG per class)"
