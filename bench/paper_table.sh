#!/bin/sh
# paper_table.sh [OUT_DIR] — the experiment of "Precision Where It Matters" (Maisonnave et
# al., 2025) on docs-llama-28m: INT8 grids of 8 and 6 bits (W8A8, W8A6, W6A6; weights
# symmetric per output channel as the authors quantize them), activations per tensor with
# static scales, per token, or per tensor after SmoothQuant (alpha 0.5); each without a
# fallback and with the spike projections (ratio rule: input absmax >= 50 x its own median)
# in FP16, FP8 E4M3 (scaled) or FP8 E5M2 (unscaled, the authors' setting); the absmax-vs-median
# rule and the same number of random down/o layers (three seeds) as controls.
# Columns: WikiText-2 and docs-eval perplexity (CHUNKS windows of 512 tokens each), the
# share of the naive row's docs-eval loss a row recovers, mean KL divergence from the FP16
# checkpoint and same-top-token rate on the docs-eval windows, and the mean zero-shot
# accuracy of the nine tasks of ../shared/data/eval (LIMIT items each).
# Environment: CHUNKS (default 40), LIMIT (default 100), T (threads, default 2). About 25
# minutes on 2 cores with the defaults. Prints a markdown table.
set -e
S=${SPIKEQ:-build/spikeq}
SH=${SPIKEQ_SHARED:-../shared}
D=$SH/models/docs-llama-28m
E=$SH/data/eval
W=$SH/data/wikitext-2-raw/wiki.test.raw
O=${1:-/tmp/spikeq-paper}
CHUNKS=${CHUNKS:-40}; LIMIT=${LIMIT:-100}; T=${T:-2}
mkdir -p "$O"
C="--calib $D/docs-calib.txt"
[ -f "$O/fp16.spq" ] || $S convert "$D" -o "$O/fp16.spq" --outtype f16 2>>"$O/log"

# measure NAME: the four figures of $O/NAME.spq (cached in $O/NAME.*)
measure() {
  m="$O/$1.spq"
  [ -f "$O/$1.wiki" ] || $S perplexity -m "$m" -f "$W" --chunks $CHUNKS -t $T >"$O/$1.wiki" 2>>"$O/log"
  [ -f "$O/$1.kl" ] || $S perplexity -m "$m" -f "$D/docs-eval.txt" --chunks $CHUNKS --kl-base "$O/fp16.spq" -t $T >"$O/$1.kl" 2>>"$O/log"
  [ -f "$O/$1.json" ] || $S eval -m "$m" --data "$E" --limit $LIMIT -t $T -o json >"$O/$1.json" 2>>"$O/log"
  wiki=$(sed -n 's/.*PPL = \([0-9.]*\) +\/- .*/\1/p' "$O/$1.wiki")
  ppl=$(sed -n 's/.*PPL = \([0-9.]*\) +\/- .*/\1/p' "$O/$1.kl")
  kld=$(sed -n 's/^Mean KLD *: *\([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p' "$O/$1.kl")
  top=$(sed -n 's/^Same top token *: *\([0-9.]*\) +\/- .*/\1 %/p' "$O/$1.kl")
  acc=$(grep '"acc":' "$O/$1.json" | sed 's/.*"acc": \([0-9.]*\).*/\1/' | awk '{s+=$1; n++} END {printf "%.3f", s/n}')
}

# row NAME LABEL SCALES FALLBACK QUANTIZE-FLAGS...: quantize (once), measure, print
row() {
  name=$1; label=$2; scales=$3; fbk=$4; shift 4
  if [ ! -f "$O/$name.spq" ]; then
    $S quantize "$D" -o "$O/$name.spq" -t $T "$@" 2>"$O/$name.q" || { cat "$O/$name.q"; exit 1; }
  fi
  layers=$(sed -n 's/.*spike projection(s) in [^:]*:\(.*\)/\1/p' "$O/$name.q" | wc -w)
  measure "$name"
  rec=$(awk -v n="$naive" -v b="$base" -v p="$ppl" 'BEGIN { if (n == "" || n - b <= 0) print "-"; else printf "%.0f %%", 100 * (n - p) / (n - b) }')
  echo "| $label | $scales | $fbk | $layers | $wiki | $ppl | $rec | $kld | $top | $acc |"
}

measure fp16
base=$ppl
echo "| weights/activations | activation scales | spike fallback | layers | WikiText-2 ppl | docs-eval ppl | loss recovered | KLD vs FP16 | same top token | zero-shot mean acc |"
echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"
echo "| FP16 | - | - | - | $wiki | $ppl | - | 0 | 100 % | $acc |"
for g in "8 8" "8 6" "6 6"; do
  set -- $g; wb=$1; ab=$2; G="W${wb}A${ab}"
  for mode in tensor token smooth; do
    case $mode in
      tensor) A="--act static"; SC="per tensor, static" ;;
      token) A="--act-scale token"; SC="per token" ;;
      smooth) A="--act static --smooth 0.5"; SC="SmoothQuant 0.5, per tensor, static" ;;
    esac
    B="--weight-bits $wb --act-bits $ab --weight-scale channel $A $C"
    naive=""
    row "w${wb}a${ab}-$mode" "$G" "$SC" none $B --spike none
    naive=$ppl
    row "w${wb}a${ab}-$mode-fp16" "$G" "$SC" "FP16 (ratio rule)" $B --spike fp16 --spike-rule ratio
    n=$layers
    row "w${wb}a${ab}-$mode-e4m3" "$G" "$SC" "FP8 E4M3 (ratio rule)" $B --spike fp8 --spike-rule ratio
    row "w${wb}a${ab}-$mode-e5m2" "$G" "$SC" "FP8 E5M2 unscaled (ratio rule)" $B --spike fp8-e5m2 --spike-rule ratio
    if [ $mode = tensor ]; then
      row "w${wb}a${ab}-$mode-median" "$G" "$SC" "FP16 (median rule)" $B --spike fp16 --spike-rule median
      for seed in 1 2 3; do
        row "w${wb}a${ab}-$mode-rand$seed" "$G" "$SC" "FP16, $n random down/o (seed $seed)" $B --spike fp16 --keep-random $n --seed $seed
      done
    fi
  done
done
