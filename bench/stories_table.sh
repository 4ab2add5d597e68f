#!/bin/sh
# stories_table.sh [OUT_DIR] — the paper's table for stories260K, by token ids (its tokenizer
# is not available): the FP32 model samples its own text (pure sampling, temp 1), 40 windows
# of 512 ids for evaluation (seeds 1-40) and 16 for calibration (seeds 1001-1016, disjoint),
# then each precision plan's perplexity on the evaluation ids (ctx 512 = the model's max).
set -e
S=${SPIKEQ:-build/spikeq}
B=${SPIKEQ_SHARED:-../shared}/models/stories260K/stories260K.bin
O=${1:-/tmp/spikeq-stories}
mkdir -p "$O"
sample() { for seed in $(seq "$1" "$2"); do
  printf '1 '; $S generate -m "$B" --prompt-ids 1 --ids -n 511 --temp 1 --top-k 0 --top-p 1 --min-p 0 --seed "$seed" 2>/dev/null
done; }
[ -s "$O/eval.ids" ] || sample 1 40 > "$O/eval.ids"
[ -s "$O/calib.ids" ] || sample 1001 1016 > "$O/calib.ids"
C="--calib $O/calib.ids --ids"
q() { name=$1; shift; $S quantize "$B" -o "$O/$name.spq" "$@" 2>>"$O/log"; }
$S convert "$B" -o "$O/fp32.spq" 2>>"$O/log"
q w8a8-dynamic --spike none
q w8a8-static --act static --spike none $C
q w8a8-dynamic-fp16spike $C
q w8a8-static-fp16spike --act static $C
q w8a8-static-fp8spike --act static --spike fp8 $C
q w8a8-dynamic-keep-all-down --keep 0.down,1.down,2.down,3.down,4.down
echo "| weights / activations | ppl on own samples, ctx 512 (20,440 ids) | size on disk | decode t/s (2 threads) | fallback |"
echo "|---|---:|---:|---:|---|"
for v in fp32 w8a8-dynamic w8a8-static w8a8-dynamic-fp16spike w8a8-static-fp16spike w8a8-static-fp8spike w8a8-dynamic-keep-all-down; do
  p=$($S perplexity -m "$O/$v.spq" -f "$O/eval.ids" --ids -c 512 2>>"$O/log" | sed -n 's/.*PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p')
  fb=$($S info "$O/$v.spq" | sed -n 's/^ *fallback: *//p')
  tg=$($S bench -m "$O/$v.spq" -p 0 -n 128 -r 5 -t 2 --no-roofline 2>/dev/null | awk -F'|' '/tg128/ {gsub(/^ +| +$/, "", $9); print $9}')
  echo "| $v | $p | $(du -k "$O/$v.spq" | cut -f1) KiB | $tg | ${fb:--} |"
done
