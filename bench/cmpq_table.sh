#!/bin/sh
# cmpq_table.sh — the README's CMPQ accuracy table: docs-llama-28m (../shared), average bits
# per linear weight vs docs-eval perplexity and linear-weight size, CMPQ against the uniform
# per-row RTN baseline, W8A8 and FP32. Usage: sh bench/cmpq_table.sh [THREADS] > table.md
T=${1:-2}
S=build/spikeq
D=${SPIKEQ_SHARED:-../shared}/models/docs-llama-28m
E=$D/docs-eval.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ppl() { $S perplexity -m "$1" -f $E -t $T 2>/dev/null | sed -n 's/.*PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p'; }
row() { # name, model, quantize log
  bits=$(sed -n 's/.*linear weights \([0-9.]*\) bits per weight (\([0-9.]*\) MiB.*/\1 | \2/p' "$3")
  echo "| $1 | $bits | $(ppl "$2") |"
}
echo "| scheme | bits per linear weight | linear weights MiB | docs-eval PPL |"
echo "|---|---:|---:|---:|"
echo "| FP32 | 32 | 60.00 | $(ppl $D) |"
$S quantize $D -o $tmp/w8.spq -t $T 2>/dev/null
echo "| W8A8 per-tensor (dynamic) | 8 | 15.00 | $(ppl $tmp/w8.spq) |"
for b in 4 3 2; do
  $S quantize $D -o $tmp/r.spq --scheme rtn --bits $b -t $T 2>$tmp/log
  row "RTN $b-bit (per row, min-max)" $tmp/r.spq $tmp/log
done
for b in 5 4 3.5 3 2.5; do
  $S quantize $D -o $tmp/c.spq --scheme cmpq --bits $b --calib $D/docs-calib.txt -t $T 2>$tmp/log
  row "CMPQ --bits $b" $tmp/c.spq $tmp/log
done
for v in "--outliers 0" "--tables column" "--tables shared"; do
  $S quantize $D -o $tmp/c.spq --scheme cmpq --bits 3 $v --calib $D/docs-calib.txt -t $T 2>$tmp/log
  row "CMPQ --bits 3 $v" $tmp/c.spq $tmp/log
done
