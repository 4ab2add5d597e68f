#!/bin/sh
# gguf_table.sh — llama.cpp's quantized GGUF files of docs-llama-42m (../shared; rows of 512
# and 1536, so every K-quant applies) run by spikeq, beside CMPQ at about the same bits:
# docs-eval perplexity with llama.cpp's half-window scoring (`--score half`, ctx 512) and the
# KL divergence to the FP16 model on the same windows. The GGUFs are what `llama-quantize
# docs-llama-42m-F16.gguf OUT.gguf TYPE` writes (no importance matrix); spikeq runs their
# blocks as stored. Bits per linear weight count the linears' blocks only (the tied
# embedding, which llama.cpp stores as Q6_K and CMPQ as FP16, is left out).
# Usage: sh bench/gguf_table.sh DIR_OF_GGUFS [THREADS] [CMPQ_BITS...] > table.md
G=${1:?directory of docs-llama-42m-TYPE.gguf files}
T=${2:-2}
shift 2 2>/dev/null || shift $#
S=build/spikeq
D=${SPIKEQ_SHARED:-../shared}/models/docs-llama-42m
E=${SPIKEQ_SHARED:-../shared}/models/docs-llama-28m/docs-eval.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ppl() { # model -> "| ppl | kld | top |"
  $S perplexity -m "$1" -f $E -t $T --score half --kl-base $D >$tmp/out 2>/dev/null
  echo "| $(sed -n 's/.*PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p' $tmp/out | head -1)" \
       "| $(sed -n 's/^Mean KLD *: \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p' $tmp/out)" \
       "| $(sed -n 's/^Same top token *: \([0-9.]*\) .*/\1/p' $tmp/out) |"
}
# bits per weight of ggml's block formats (block bytes x 8 / block weights)
bits() {
  $S info "$1" -v 2>/dev/null | awk '
    BEGIN { b["Q4_0"]=4.5; b["Q4_1"]=5; b["Q5_0"]=5.5; b["Q5_1"]=6; b["Q8_0"]=8.5; b["Q2_K"]=2.625; b["Q3_K"]=3.4375;
            b["Q4_K"]=4.5; b["Q5_K"]=5.5; b["Q6_K"]=6.5625; b["IQ4_NL"]=4.5; b["IQ4_XS"]=4.25 }
    /layers\..*_proj.weight/ && ($2 in b) {
      s = $3 $4; gsub(/[\[\]]/, "", s); split(s, d, ","); n = d[1] * d[2]; w += n; x += n * b[$2]; m[$2]++ }
    END { for (t in m) mix = mix (mix ? " " : "") m[t] " " t; printf "%.3f | %s", x / w, mix }'
}
echo "| weights | bits per linear weight | linears | docs-eval PPL (--score half) | mean KLD to FP16 | same top token % |"
echo "|---|---:|---|---:|---:|---:|"
echo "| FP16 (HF) | 16 | | $($S perplexity -m $D -f $E -t $T --score half 2>/dev/null | sed -n 's/.*PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p') | 0 | 100 |"
for f in "$G"/*.gguf; do
  name=$(basename "$f" .gguf | sed 's/.*-//')
  echo "| llama.cpp $name | $(bits "$f") $(ppl "$f")"
done
for b in "$@"; do
  $S quantize $D -o $tmp/c.spq --scheme cmpq --bits $b --calib ${SPIKEQ_SHARED:-../shared}/models/docs-llama-28m/docs-calib.txt -t $T 2>$tmp/log
  echo "| CMPQ --bits $b | $(sed -n 's/.*linear weights \([0-9.]*\) bits per weight.*/\1/p' $tmp/log) | | $(ppl $tmp/c.spq | cut -c3-)"
done
