#!/bin/sh
# cmpq_blocks.sh — CMPQ against llama.cpp's block formats at their real bits per weight on
# docs-llama-28m (../shared): docs-eval perplexity with llama.cpp's half-window scoring
# (`--score half`, ctx 512) and the KL divergence to the FP16 model on the same windows.
# Q4_0 ... Q8_0 are ggml's reference quantiser (what llama-quantize writes without an
# importance matrix), run dequantised in FP32; the token embedding stays FP16 in every row.
# Usage: sh bench/cmpq_blocks.sh [THREADS] > table.md
T=${1:-2}
S=build/spikeq
D=${SPIKEQ_SHARED:-../shared}/models/docs-llama-28m
E=$D/docs-eval.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
row() { # name, model, quantize log
  bits=$(sed -n 's/.*linear weights \([0-9.]*\) bits per weight.*/\1/p' "$3")
  $S perplexity -m "$2" -f $E -t $T --score half --kl-base $D >$tmp/out 2>/dev/null
  ppl=$(sed -n 's/.*PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p' $tmp/out | head -1)
  kld=$(sed -n 's/^Mean KLD *: \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p' $tmp/out)
  top=$(sed -n 's/^Same top token *: \([0-9.]*\) .*/\1/p' $tmp/out)
  echo "| $1 | $bits | $ppl | $kld | $top |"
}
echo "| format | bits per linear weight | docs-eval PPL (--score half) | mean KLD to FP16 | same top token % |"
echo "|---|---:|---:|---:|---:|"
echo "| FP16 | 16 | $($S perplexity -m $D -f $E -t $T --score half 2>/dev/null | sed -n 's/.*PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p') | 0 | 100 |"
for f in q4_0 q4_1 q5_0 q5_1 q8_0; do
  $S quantize $D -o $tmp/q.spq --scheme $f -t $T 2>$tmp/log
  row "llama.cpp $(echo $f | tr a-z A-Z) (ggml reference quantiser)" $tmp/q.spq $tmp/log
done
for b in 3 3.5 4 4.5 5 5.5 6; do
  $S quantize $D -o $tmp/c.spq --scheme cmpq --bits $b --calib $D/docs-calib.txt -t $T 2>$tmp/log
  row "CMPQ --bits $b" $tmp/c.spq $tmp/log
done
