#!/bin/sh
# scale.sh SHAPE [WORK_DIR] — a real model size end to end, as a user runs it: a random-weight
# BF16 Hugging Face checkpoint of SHAPE (tinyllama-1.1b, llama2-7b, llama3-8b, mistral-7b;
# `spikeq synth`), quantized with calibration text, then info, generate, bench and perplexity
# from the .spq, and two processes generating from it at once. Prints each step's wall time
# and peak resident memory (/usr/bin/time: anonymous + mapped) as a markdown table.
# Random weights have no real activation spikes (the profiler finds the down_proj inputs of
# every layer alike), so the 7-8B shapes are quantized with the paper's fallback layers for that
# model (--keep; calibration still runs, as its cost is part of quantizing).
# Environment: T (threads, default 2), KEEP_FILES=1 keeps the checkpoints in WORK_DIR.
# Disk: the BF16 checkpoint plus half of it for the .spq (13.5 + 7.2 GB for llama2-7b).
set -e
S=${SPIKEQ:-build/spikeq}
SH=${SPIKEQ_SHARED:-../shared}
SHAPE=${1:?usage: bench/scale.sh SHAPE [WORK_DIR]}
W=${2:-/tmp/spikeq-scale}
T=${T:-2}
TOK=$SH/tokenizers/llama2/tokenizer.model
CAL=$SH/models/docs-llama-28m/docs-calib.txt
TXT=$SH/data/wikitext-2-raw/wiki.test.raw
[ -x /usr/bin/time ] || { echo "scale.sh: needs /usr/bin/time (Debian package time)" >&2; exit 1; }
mkdir -p "$W"
HF=$W/$SHAPE-bf16 Q=$W/$SHAPE-w8a8.spq
rm -rf "$HF" "$HF.partial" "$Q"
rows=""
# step NAME CMD...: run CMD under /usr/bin/time, keep its stderr in $W/NAME.log
step() {
  name=$1; shift
  /usr/bin/time -f "%e %M" -o "$W/$name.time" "$@" >"$W/$name.out" 2>"$W/$name.log" || {
    echo "scale.sh: $name failed:" >&2; tail -3 "$W/$name.log" >&2; exit 1; }
  set -- $(cat "$W/$name.time")
  rows="$rows| $name | $1 | $(awk -v k="$2" 'BEGIN { printf "%.2f", k / 1048576 }') |
"
}
gib() { awk -v b="$1" 'BEGIN { printf "%.2f", b / 1073741824 }'; }

step synth $S synth --shape "$SHAPE" --dtype bf16 -o "$HF" --tokenizer "$TOK" -t "$T"
hf_bytes=$(cat "$HF"/*.safetensors | wc -c)
case $SHAPE in
  tinyllama-1.1b) PLAN="" ;;
  *) PLAN="--keep paper" ;; # the paper's layer list for the 7-8B shapes (spq_paper_keep)
esac
step quantize $S quantize "$HF" -o "$Q" --calib "$CAL" --samples 4 --seq 256 -t "$T" $PLAN
q_bytes=$(wc -c < "$Q")
step info $S info "$Q"
step generate $S generate -m "$Q" -p "The history of the city" -n 32 -t "$T" -c 2048
step bench $S bench -m "$Q" -p 512 -n 128 -t "$T" -r 2 --no-roofline
step perplexity $S perplexity -m "$Q" -f "$TXT" -c 512 --chunks 2 -t "$T"
# two processes on one file: their proportional share (Pss) of its pages is half of what each maps
$S generate -m "$Q" -p "The history of the city" -n 512 -t 1 -c 1024 >/dev/null 2>&1 & a=$!
$S generate -m "$Q" -p "The history of the city" -n 512 -t 1 -c 1024 >/dev/null 2>&1 & b=$!
sleep ${SHARE_WAIT:-8}
ra=$(awk '/^Rss:/ { print $2 }' /proc/$a/smaps_rollup); pa=$(awk '/^Pss:/ { print $2 }' /proc/$a/smaps_rollup)
rb=$(awk '/^Rss:/ { print $2 }' /proc/$b/smaps_rollup); pb=$(awk '/^Pss:/ { print $2 }' /proc/$b/smaps_rollup)
kill $a $b 2>/dev/null; wait $a $b 2>/dev/null || true

echo "## $SHAPE: $(date -u +%F), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores," \
     "$(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), spikeq $(git rev-parse --short HEAD 2>/dev/null || echo '?'), -t $T"
echo
echo "BF16 checkpoint $(gib "$hf_bytes") GiB; W8A8 .spq $(gib "$q_bytes") GiB; $(tail -1 "$W/quantize.log" | sed 's/.*W8A8/W8A8/')"
echo
echo "| step | wall s | peak resident GiB |"
echo "|---|---:|---:|"
printf '%s' "$rows"
echo
echo "quantize peak / checkpoint: $(awk -v m="$(cut -d' ' -f2 "$W/quantize.time")" -v b="$hf_bytes" 'BEGIN { printf "%.2f", m * 1024 / b }')x"
grep -h "load time\|tokens/s" "$W/generate.log" | sed 's/^/    /'
grep -h "^|" "$W/bench.out" | sed 's/^/    /'
grep -h "memory:" "$W/bench.log" | sed 's/^/    /'
grep -h "Final estimate\|perplexity" "$W/perplexity.out" | head -3 | sed 's/^/    /'
echo "two processes generating from one file: Rss $(gib $((ra * 1024))) / $(gib $((rb * 1024))) GiB, Pss $(gib $((pa * 1024))) / $(gib $((pb * 1024))) GiB"
[ "${KEEP_FILES:-0}" = 1 ] || rm -rf "$HF" "$Q"
