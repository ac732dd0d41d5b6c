#!/bin/sh
# make demo: the main job on a bundled default, as far as flowpic goes today:
#   synthetic captures of the paper's five classes (examples/gentraffic.c)
#   -> a labelled data set (flowpic extract --labels) -> its statistics
#   -> one FlowPic per class as PNG (flowpic render).
# DATA=DIR LABELS=FILE runs the same on any labelled captures (e.g. ../shared/data and its
# LABELS.tsv). Outputs go to $DEMO_DIR (default demo-output/).
set -eu
cd "$(dirname "$0")/.."
out=${DEMO_DIR:-demo-output}
mkdir -p "$out"
step() { printf '\n== %s\n' "$*"; }

if [ -n "${DATA:-}" ]; then
    [ -n "${LABELS:-}" ] || { echo "demo: DATA needs LABELS (a label map)" >&2; exit 2; }
    captures=$(find "$DATA" -type f \( -name '*.pcap' -o -name '*.pcapng' \) | LC_ALL=C sort)
    labels=$LABELS
else
    step "1. synthetic captures, one per class (examples/gentraffic.c, seed 1)"
    cc -O2 -std=c99 -o "$out/gentraffic" examples/gentraffic.c -lm
    labels="$out/labels.tsv"
    printf '# glob\tlabel: each capture holds one class\n' > "$labels"
    captures=""
    for class in voip video file chat browsing; do
        "$out/gentraffic" --seed 1 --classes "$class" --flows-per-class 8 -o "$out/$class.pcap"
        printf '%s.pcap\t%s\n' "$class" "$class" >> "$labels"
        captures="$captures $out/$class.pcap"
        echo "demo: wrote $out/$class.pcap"
    done
fi

step "2. flowpic extract: 60 s blocks of >= 10 packets, labelled by $labels"
# shellcheck disable=SC2086
./flowpic extract --progress --labels "$labels" -o "$out/data.fpds" $captures

step "3. flowpic stats $out/data.fpds"
./flowpic stats "$out/data.fpds" | head -12

step "4. one FlowPic per class, time left to right, size bottom to top"
for class in $(./flowpic stats "$out/data.fpds" | awk -F '\t' 'f && NF == 3 { print $1 } /^class\t/ { f = 1 } /^$/ { if (f) exit }'); do
    ./flowpic render --class "$class" -o "$out/$class.png" "$out/data.fpds"
done

step "done: outputs in $out/ (captures, data.fpds, one PNG per class)"
