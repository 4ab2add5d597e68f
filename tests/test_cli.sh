#!/bin/sh
# test_cli.sh SPIKEQ — the spikeq binary on good and bad input: exit codes, one-line
# "spikeq: ..." errors naming the file, no partial outputs.
S=${1:-build/spikeq}
SH=${SPIKEQ_SHARED:-../shared}
pass=0; fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# expect_fail "PATTERN" CMD... : non-zero exit, stderr one line matching PATTERN, no crash
expect_fail() {
  pat=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q "^spikeq: .*$pat" "$tmp/err" && [ "$(grep -c . "$tmp/err")" -eq 1 ]; then
    pass=$((pass+1))
  else
    fail=$((fail+1)); echo "FAIL (rc=$rc): $*"; cat "$tmp/err"
  fi
}
expect_ok() {
  pat=$1; shift
  if "$@" >"$tmp/out" 2>"$tmp/err" && grep -q -- "$pat" "$tmp/out" "$tmp/err"; then pass=$((pass+1));
  else fail=$((fail+1)); echo "FAIL: $*"; head -5 "$tmp/err"; fi
}

M=models/docs-llama-28m-w8a8.spq
expect_fail "unknown command" $S frobnicate
expect_fail "unknown option --bogus" $S generate -m $M -p hi --bogus
expect_fail "no such file" $S generate -m /nonexistent.spq -p hi
expect_fail "empty prompt" $S generate -m $M -p ""
expect_fail "-n: '0' is not an integer" $S generate -m $M -p hi -n 0
expect_fail "-n: 'x' is not an integer" $S generate -m $M -p hi -n x
expect_fail "-t: missing value" $S generate -m $M -p hi -t
expect_fail "not valid UTF-8" $S generate -m $M -p "$(printf 'bad \377 byte')"
expect_fail "does not fit the context" $S generate -m $M -p "$(yes word | head -300 | tr '\n' ' ')" -c 64
expect_fail "--tokens: '99999' is not an integer" $S logits -m $M --tokens 1,99999
expect_fail "sampling parameters" $S generate -m $M -p hi --top-p 0
printf 'not a model at all, just text that is long enough to have a header' > "$tmp/x.spq"
expect_fail "x.spq: not a spikeq checkpoint" $S info "$tmp/x.spq"
head -c 1000 $M > "$tmp/trunc.spq"
expect_fail "trunc.spq: file_size field" $S info "$tmp/trunc.spq"
expect_ok "dim 384" $S info $M
# a flipped byte in the weights: loading reads none of them, the background check of the
# checksums names the tensor before a command finishes, and nothing is written from it
cp $M "$tmp/flip.spq"
printf '\377' | dd of="$tmp/flip.spq" bs=1 seek=$(($(wc -c < $M) - 5000)) conv=notrunc 2>/dev/null
expect_ok "tensors    92" $S info "$tmp/flip.spq"
expect_fail "flip.spq: tensor .*checksum mismatch (corrupt data)" $S info --verify "$tmp/flip.spq"
expect_fail "flip.spq: tensor .*checksum mismatch (corrupt data)" $S generate -m "$tmp/flip.spq" -p hi -n 2
expect_fail "flip.spq: tensor .*checksum mismatch (corrupt data)" $S quantize "$tmp/flip.spq" -o "$tmp/q.spq"
if [ -e "$tmp/q.spq" ]; then fail=$((fail+1)); echo "FAIL: quantize wrote from a corrupt file"; else pass=$((pass+1)); fi
expect_ok "checksums  92 tensors match" $S info --verify $M
# synth: an HF checkpoint of a real shape (one layer of TinyLlama), run as downloaded (BF16 GEMM)
expect_ok "wrote $tmp/syn: tinyllama-1.1b shape, 1 layers" $S synth --shape tinyllama-1.1b --layers 1 -o "$tmp/syn"
expect_ok "tensors    12, .* 12 bf16" $S info "$tmp/syn"
expect_ok "generation: " $S generate -m "$tmp/syn" --prompt-ids 1,450 --ids -n 2 -c 64
expect_fail "syn: exists; synth writes a new directory" $S synth --shape tinyllama-1.1b --layers 1 -o "$tmp/syn"
expect_fail "--shape: unknown shape 'gpt2'" $S synth --shape gpt2 -o "$tmp/syn2"
rm -rf "$tmp/syn"
# what a run needs is compared with what the machine has before it is taken (the machine's
# MemAvailable is replaced by SPIKEQ_MEM_AVAILABLE): a clear error naming -c, not an OOM kill
expect_fail "this run needs 0.0[0-9] GB more: KV cache .* but 0.06 GB is available: lower the context (-c)" env SPIKEQ_MEM_AVAILABLE=60000000 $S generate -m $M -p hi -n 2
expect_ok "generation: " env SPIKEQ_MEM_AVAILABLE=60000000 $S generate -m $M -p hi -n 2 -c 128
expect_fail "its weights need 0.04 GB .* but 0.02 GB is available" env SPIKEQ_MEM_AVAILABLE=20000000 $S perplexity -m $M -f $M
expect_ok "spike" $S info $M
expect_ok "pos 0 tok 1 top5" $S logits -m $M --tokens 1,450,4996
expect_ok "450 4996 17354 1701 29916" $S tokenize -m $M "The quick brown fox"
# greedy generation is deterministic, and seeded sampling is reproducible across thread counts
$S generate -m $M -p "The kernel" -n 24 --temp 0 2>/dev/null > "$tmp/g1"
$S generate -m $M -p "The kernel" -n 24 --temp 0 -t 1 2>/dev/null > "$tmp/g2"
$S generate -m $M -p "The kernel" -n 24 --seed 5 -t 1 2>/dev/null > "$tmp/s1"
$S generate -m $M -p "The kernel" -n 24 --seed 5 -t 2 2>/dev/null > "$tmp/s2"
if cmp -s "$tmp/g1" "$tmp/g2" && cmp -s "$tmp/s1" "$tmp/s2" && [ -s "$tmp/s1" ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: generation not reproducible"; fi
expect_ok "generation: " $S generate -m $M -p "import os" -n 8
expect_ok "tg16" $S bench -m $M -p 0 -n 16 -r 1 -t 1 --no-roofline
expect_ok "pp16" $S bench -m $M -p 16 -n 0 -r 1 -t 1 --no-roofline -o csv
# more threads than cores, after a smaller count: capped to the cores with a warning, and the
# threaded attention scratch is sized for both
expect_ok "| $(nproc) | pp200 " $S bench -m $M -p 200 -n 0 -r 1 -t 1,999 --no-roofline
expect_ok "this machine has $(nproc) cores, using $(nproc)" $S generate -m $M -p hi -n 2 -t 999
# batched decode of independent sequences: one row per sequence count
$S bench -m $M -n 4 -r 1 -t 1 --batch 1,3 --no-roofline -o csv >"$tmp/out" 2>"$tmp/err"
if grep -q ',1,1,tg4,' "$tmp/out" && grep -q ',1,3,tg4,' "$tmp/out"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: bench --batch"; cat "$tmp/out" "$tmp/err"; fi
expect_fail "give -n >= 1" $S bench -m $M -n 0 --batch 2
# --prefetch with a list: one row per value and test, the values named in the plan column
$S bench -m $M -p 8 -n 8 -r 1 -t 2 --no-roofline --prefetch 0,256 -o csv >"$tmp/out" 2>"$tmp/err"
if [ "$(grep -c 'prefetch 0 KiB",.*,\(pp8\|tg8\),' "$tmp/out")" -eq 2 ] && [ "$(grep -c 'prefetch 256 KiB",.*,\(pp8\|tg8\),' "$tmp/out")" -eq 2 ] &&
   [ "$(wc -l <"$tmp/out")" -eq 5 ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: bench --prefetch 0,256"; cat "$tmp/out" "$tmp/err"; fi
# the roofline: limits probed between the runs (table, roofline_fraction) and the best probes
# before and after (_best), every field non-zero for both tests
$S bench -m $M -p 8 -n 4 -r 2 -t 1 -o json >"$tmp/out" 2>"$tmp/err"
if [ "$(grep -c '"roofline_fraction": [0-9.]*[1-9][0-9]*, "read_bw": [1-9][0-9]*, "int8_macs": [1-9][0-9]*, "roofline_fraction_best": [0-9.]*[1-9][0-9]*, "read_bw_best": [1-9][0-9]*, "int8_macs_best": [1-9]' "$tmp/out")" -eq 2 ]; then
  pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: bench roofline fields"; cat "$tmp/out" "$tmp/err"; fi
# several models take turns (--scheme and --bits lists): one row per model and test, vs_first
# (the last field) the median of the repetitions' t/s ratios to the first row, 1 for it
$S bench --synthetic tinyllama-1.1b --layers 1 --scheme w8a8,cmpq --bits 3,4 -p 4 -n 4 -r 2 -t 1 --no-roofline -o csv >"$tmp/out" 2>"$tmp/err"
if [ "$(wc -l <"$tmp/out")" -eq 7 ] &&
   awk -F, 'NR > 1 { p = $(NF - 11); n[p]++; if (p == "\"w8a8\"" ? $NF != 1 : !($NF > 0)) bad = 1 }
            END { exit bad || n["\"w8a8\""] != 2 || n["\"cmpq 3.00 bits\""] != 2 || n["\"cmpq 4.00 bits\""] != 2 }' "$tmp/out"; then
  pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: bench --scheme w8a8,cmpq --bits 3,4"; cat "$tmp/out" "$tmp/err"; fi
# a prompt past the model's trained context (1024): the context is sized to the test, and the
# figure is one measured (not a division by a failed pass's zero time)
$S bench -m $M -p 1100 -n 0 -r 1 -t 2 --no-roofline -o csv >"$tmp/out" 2>"$tmp/err"
if awk -F, '$7 == "pp1100" { ok = $8 > 0 && $8 < 1e6 } END { exit !ok }' "$tmp/out"; then
  pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: bench -p 1100 past the context"; cat "$tmp/out" "$tmp/err"; fi
# ggml block schemes (random blocks, run as stored): one row each
$S bench --synthetic tinyllama-1.1b --layers 1 --scheme q4_k_m,q8_0,iq4_xs -p 4 -n 4 -r 1 -t 1 --no-roofline -o csv >"$tmp/out" 2>"$tmp/err"
if [ "$(wc -l <"$tmp/out")" -eq 7 ] && grep -q '"q4_k_m"' "$tmp/out" && grep -q '"iq4_xs"' "$tmp/out"; then
  pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: bench --scheme q4_k_m,q8_0,iq4_xs"; cat "$tmp/out" "$tmp/err"; fi
expect_fail "--scheme: w8a8, f16, f32, cmpq, q4_0, q8_0, q4_k, q5_k, q6_k, iq4_xs or q4_k_m, not 'int4'" $S bench --synthetic tinyllama-1.1b --scheme w8a8,int4
expect_fail "--bits: between 2 and 8, not '9'" $S bench --synthetic tinyllama-1.1b --scheme cmpq --bits 4,9
expect_fail "--batch: one model at a time" $S bench -m $M -m $M -n 4 --batch 2
expect_fail "--prefetch: 'x' is not an integer" $S bench -m $M -p 0 -n 4 --prefetch 0,x
expect_fail "give -n >= 3" $S bench -m $M -p 0 -n 2 --prefetch 0,1,2
# --timings: every step named, and the steps add up to most of (never more than) the time per token
# (the t/s mean is over runs: a slow run on a busy machine moves it, so the bound allows one sd)
$S bench -m $M -p 8 -n 8 -r 2 -t 1 --no-roofline --timings -o csv >"$tmp/out" 2>"$tmp/err"
if [ "$(grep -c 'ms per token: attn_norm .*qkv .*rope_kv .*attention .*, o .*ffn_norm .*gate_up .*swiglu .*down .*head .*; total' "$tmp/err")" -eq 2 ] &&
   awk -F, 'NR == FNR { if (FNR > 1) { ms[$7] = 1000 / $8; hi[$7] = $8 > $9 ? 1000 / ($8 - $9) : 1e9 }; next }
            /ms per token/ { t = $0; sub(/.* total /, "", t); n = $0; sub(/,.*/, "", n); sub(/.* /, "", n);
              if (!(n in ms) || t + 0 > 1.1 * hi[n] || t + 0 < 0.5 * ms[n]) bad = 1; seen++ }
            END { exit bad || seen != 2 }' "$tmp/out" "$tmp/err"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAIL: bench --timings"; cat "$tmp/out" "$tmp/err"; fi

if [ -d "$SH/models/docs-llama-28m" ]; then
  D=$SH/models/docs-llama-28m
  # calibration text must not be the evaluation text
  expect_fail "calibrated on this text" $S perplexity -m $M -f $D/docs-calib.txt
  expect_ok "Final estimate: PPL" $S perplexity -m $M -f $D/docs-eval.txt --chunks 2
  # a failed write leaves no file behind (read-only folder)
  mkdir "$tmp/ro"; chmod 555 "$tmp/ro"
  if [ "$(id -u)" -ne 0 ]; then
    expect_fail "no file written\|cannot create" $S convert $SH/models/stories260K/stories260K.bin -o "$tmp/ro/out.spq"
  fi
  # out of space mid-write (ulimit -f): no partial output, clear message
  ( ulimit -f 2000; $S convert $D -o "$tmp/big.spq" ) 2>"$tmp/err"; rc=$?
  if [ $rc -ne 0 ] && ! ls "$tmp"/big.spq* >/dev/null 2>&1 && grep -q "big.spq: write failed, no file written" "$tmp/err"; then pass=$((pass+1));
  else fail=$((fail+1)); echo "FAIL: ulimit -f convert rc=$rc"; cat "$tmp/err"; ls "$tmp"; fi
  # byte-level BPE from a vocab-only GGUF (gpt-2), and an unsupported tokenizer.json
  V=$SH/tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf
  expect_ok "^15496 995 11 340 338 1160 2075 0$" $S tokenize -m $V "Hello world, it's 2026!"
  expect_ok "^50256 15496$" $S tokenize -m $V --special "<|endoftext|>Hello"
  mkdir "$tmp/tj"; printf '{"model": {"type": "Unigram", "vocab": []}}' > "$tmp/tj/tokenizer.json"
  expect_fail "tokenizer.json: unsupported tokenizer model type" $S tokenize -m "$tmp/tj/tokenizer.json" hi
  # a model file truncated while in use: the next turn stops with a clear error
  cp $M "$tmp/live.spq"; mkfifo "$tmp/fifo"
  ( $S generate -m "$tmp/live.spq" -i -n 2 <"$tmp/fifo" >/dev/null 2>"$tmp/lerr"; echo $? >"$tmp/lrc" ) &
  exec 3>"$tmp/fifo"
  for i in $(seq 1 100); do grep -q "> " "$tmp/lerr" 2>/dev/null && break; sleep 0.1; done
  : > "$tmp/live.spq"; ( echo hello >&3 ) 2>/dev/null; exec 3>&-; wait
  if [ "$(cat "$tmp/lrc")" = 1 ] && grep -q "spikeq: .*live.spq: file changed size while in use" "$tmp/lerr"; then pass=$((pass+1));
  else fail=$((fail+1)); echo "FAIL: truncated model while in use"; cat "$tmp/lerr"; fi
  # killed mid-write (kill -9): no temporary or partial file is left (O_TMPFILE)
  mkdir "$tmp/kill"
  $S convert $D -o "$tmp/kill/k.spq" --outtype f32 >/dev/null 2>&1 & kp=$!
  sleep 0.3; kill -9 $kp 2>/dev/null; wait $kp 2>/dev/null
  if ! ls "$tmp/kill" | grep -q tmp && { [ ! -e "$tmp/kill/k.spq" ] || $S info "$tmp/kill/k.spq" >/dev/null 2>&1; }; then pass=$((pass+1));
  else fail=$((fail+1)); echo "FAIL: kill -9 during convert left:"; ls -la "$tmp/kill"; fi
  # CMPQ: the budget is refused when too small (no file), met from below otherwise, shown by info, runs
  head -c 20000 $D/docs-calib.txt > "$tmp/calib.txt"
  expect_fail "below the minimum of model.layers.0" $S quantize $D -o "$tmp/c2.spq" --scheme cmpq --bits 2.05 --calib "$tmp/calib.txt"
  [ ! -e "$tmp/c2.spq" ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL: refused CMPQ left a file"; }
  expect_fail "needs --calib" $S quantize $D -o "$tmp/c3.spq" --scheme cmpq --bits 3
  expect_fail "integer from 2 to 8" $S quantize $D -o "$tmp/r.spq" --scheme rtn --bits 3.5
  expect_ok "CMPQ, linear weights 3.4" $S quantize $D -o "$tmp/c35.spq" --scheme cmpq --bits 3.5 --calib "$tmp/calib.txt"
  # two files taking turns: the second's t/s over the first's on stderr
  expect_ok "tg4 against .*, median of the 2 repetitions' ratios (lowest-highest): .* [0-9.]*x (" \
    $S bench -m $M -m "$tmp/c35.spq" -p 4 -n 4 -r 2 -t 1
  expect_ok "3.4[0-9]* bits per weight over 15.73 M" $S info "$tmp/c35.spq"
  expect_ok "generation: *20 tokens" $S generate -m "$tmp/c35.spq" -p "The Linux kernel" -n 20
  # a chat template in tokenizer_config.json is recognised, shown and kept by convert
  mkdir "$tmp/hfchat"
  for f in config.json model.safetensors tokenizer.model; do ln -s "$(cd $D && pwd)/$f" "$tmp/hfchat/$f"; done
  printf '{"chat_template": "{%% for m in messages %%}{{ \047<|im_start|>\047 + m.role }}{%% endfor %%}"}' > "$tmp/hfchat/tokenizer_config.json"
  expect_ok "chat       chatml format" $S info "$tmp/hfchat"
  expect_ok "wrote" $S convert "$tmp/hfchat" -o "$tmp/chat.spq"
  expect_ok "chat       chatml format" $S info "$tmp/chat.spq"
  # the paper's experiment: narrower grids, scale granularities, SmoothQuant, rules, controls
  expect_ok "W8A6 (static activations per tensor, weights per tensor, SmoothQuant), 10 spike projection(s) in FP8 E5M2: 0.down" \
    $S quantize $D -o "$tmp/p1.spq" --act static --act-bits 6 --smooth 0.5 --spike fp8-e5m2 --spike-rule ratio --calib "$tmp/calib.txt" --samples 2 --seq 128
  expect_ok "W6A6 (dynamic activations per token, weights per channel), 3 spike projection(s) in FP16" \
    $S quantize $D -o "$tmp/p2.spq" --act-bits 6 --weight-bits 6 --act-scale token --weight-scale channel --keep-random 3 --seed 4
  expect_ok "mlp.down_proj.weight_scale" $S info "$tmp/p2.spq" -v
  expect_ok "act 6-bit per token" $S info "$tmp/p2.spq" -v
  expect_ok "act_bits=6 act_scale=token weight_bits=6 weight_scale=channel" $S info "$tmp/p2.spq"
  expect_ok "generation: *8 tokens" $S generate -m "$tmp/p2.spq" -p "The Linux kernel" -n 8
  expect_ok "down_in .*rules: ratio" $S profile $D --calib "$tmp/calib.txt" --samples 2 --seq 128
  expect_fail "act-bits: .*4 to 8\|act-bits" $S quantize $D -o "$tmp/p3.spq" --act-bits 3
  expect_fail "act-scale token is for dynamic" $S quantize $D -o "$tmp/p3.spq" --act static --act-scale token --calib "$tmp/calib.txt"
  expect_fail "smooth needs --calib" $S quantize $D -o "$tmp/p3.spq" --smooth 0.5
  expect_fail "smooth: alpha between 0 and 1" $S quantize $D -o "$tmp/p3.spq" --smooth 1.5 --calib "$tmp/calib.txt"
  expect_fail "keep paper: .*none of them" $S quantize $D -o "$tmp/p3.spq" --keep paper
  expect_fail "spike-rule abs needs --spike-threshold" $S quantize $D -o "$tmp/p3.spq" --spike-rule abs --calib "$tmp/calib.txt"
  expect_fail "spike-rule: median, ratio, top or abs" $S quantize $D -o "$tmp/p3.spq" --spike-rule loud --calib "$tmp/calib.txt"
  expect_fail "keep-random is its own rule" $S quantize $D -o "$tmp/p3.spq" --keep-random 2 --keep 1.down
  expect_fail "are W8A8 options" $S quantize $D -o "$tmp/p3.spq" --scheme cmpq --bits 4 --act-bits 6 --calib "$tmp/calib.txt"
  [ ! -e "$tmp/p3.spq" ] && pass=$((pass+1)) || { fail=$((fail+1)); echo "FAIL: a refused quantize left a file"; }
  expect_ok "wrote" $S convert $SH/models/stories260K/stories260K.bin -o "$tmp/s.spq"
  expect_ok "pos 15 tok 5 top5 345:9.8538" $S logits -m "$tmp/s.spq" --tokens 1,300,301,302,400,17,99,260,511,42,7,258,1,333,444,5
else
  [ "${CI:-}" = true ] && { echo "FAIL: ../shared missing in CI"; fail=$((fail+1)); } || echo "SKIP: ../shared absent: data-dependent CLI checks"
fi
echo "cli: $pass passed, $fail failed"
[ $fail -eq 0 ]
