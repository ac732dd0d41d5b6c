#!/bin/sh
# make demo: the main job on a bundled default. Until training lands, the most complete pipeline
# that exists: generate a capture of synthetic traffic, then summarise it and list its flows.
set -eu
cd "$(dirname "$0")/.."
out=${DEMO_DIR:-demo-output}
mkdir -p "$out"
cc -O2 -std=c99 -o "$out/gentraffic" examples/gentraffic.c -lm
echo "demo: writing $out/traffic.pcap (synthetic voip, video, file, chat, browsing flows)"
"$out/gentraffic" --seed 1 --labels "$out/traffic.labels.tsv" -o "$out/traffic.pcap"
echo
echo "demo: flowpic info $out/traffic.pcap"
./flowpic info "$out/traffic.pcap"
echo
echo "demo: flowpic flows $out/traffic.pcap > $out/flows.tsv"
./flowpic flows "$out/traffic.pcap" > "$out/flows.tsv"
echo "demo: $(($(wc -l < "$out/flows.tsv") - 1)) flows; the ten largest by packets:"
{ head -1 "$out/flows.tsv"; tail -n +2 "$out/flows.tsv" | sort -t '	' -k6,6nr | head -10; } | column -t -s '	' 2>/dev/null || head -11 "$out/flows.tsv"
echo
echo "demo: outputs in $out/ (traffic.pcap, traffic.labels.tsv, flows.tsv)"
