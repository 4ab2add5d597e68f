#!/bin/sh
# ppl_table.sh [OUT_DIR] — the paper's table for docs-llama-28m: quantise every variant
# from the FP16 HF checkpoint (calibration: docs-calib.txt), then perplexity on WikiText-2
# (ctx 512 and the model's max 1024) and on held-out docs-eval.txt (ctx 512), plus size.
# Prints a markdown table. Takes ~30 min on 2 cores.
set -e
S=${SPIKEQ:-build/spikeq}
D=${SPIKEQ_SHARED:-../shared}/models/docs-llama-28m
W=${SPIKEQ_SHARED:-../shared}/data/wikitext-2-raw/wiki.test.raw
O=${1:-/tmp/spikeq-ppl}
mkdir -p "$O"
C="--calib $D/docs-calib.txt"
q() { name=$1; shift; [ -f "$O/$name.spq" ] || $S quantize "$D" -o "$O/$name.spq" "$@" 2>>"$O/log"; }
q w8a8-dynamic --spike none
q w8a8-static --act static --spike none $C
q w8a8-dynamic-fp16spike $C
q w8a8-static-fp16spike --act static $C
q w8a8-static-fp8spike --act static --spike fp8 $C
$S convert "$D" -o "$O/fp16.spq" 2>>"$O/log"
ppl() { $S perplexity -m "$1" -f "$2" -c "$3" 2>>"$O/log" | sed -n 's/.*PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p'; }
echo "| weights / activations | WikiText-2 ppl, ctx 512 | WikiText-2 ppl, ctx 1024 | docs-eval ppl, ctx 512 | size on disk |"
echo "|---|---:|---:|---:|---:|"
for v in fp16 w8a8-dynamic w8a8-static w8a8-dynamic-fp16spike w8a8-static-fp16spike w8a8-static-fp8spike; do
  m="$O/$v.spq"
  [ $v = fp16 ] && label="FP16 weights, FP32 compute (reference)" || label=$v
  echo "| $label | $(ppl $m $W 512) | $(ppl $m $W 1024) | $(ppl $m $D/docs-eval.txt 512) | $(du -m $m | cut -f1) MiB |"
done
echo
$S info "$O/w8a8-static-fp16spike.spq" | sed -n 's/^plan *//p' | cut -c1-400
