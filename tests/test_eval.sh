#!/bin/sh
# test_eval.sh SPIKEQ — spikeq eval against transformers, and perplexity --kl-base:
# - per-item log-likelihoods of the first LIMIT items of every task (default 100; the fixture
#   holds 300) on docs-llama-28m equal tests/fixtures/eval_ref_docs28m.jsonl (made by
#   tests/ref/make_eval_refs.py with transformers FP32 + sentencepiece): the same token count
#   per choice, the same greedy flags, summed log-probabilities within 1e-3;
# - KL divergence of a model from itself is 0 with every top token the same, and of the
#   shipped W8A8 model from FP16 is above 0;
# - bad task names, folders, task lines and too-short texts are one-line errors.
S=${1:-build/spikeq}
SH=${SPIKEQ_SHARED:-../shared}
LIMIT=${LIMIT:-100}
pass=0; fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

if [ ! -d "$SH/data/eval" ] || [ ! -d "$SH/models/docs-llama-28m" ]; then
  if [ "$CI" = true ]; then echo "FAIL: $SH/data/eval or docs-llama-28m missing"; echo "eval: 0 passed, 1 failed"; exit 1; fi
  echo "eval: skipped ($SH/data/eval or $SH/models/docs-llama-28m is missing)"; echo "eval: 0 passed, 0 failed"; exit 0
fi
D=$SH/models/docs-llama-28m
M=models/docs-llama-28m-w8a8.spq

# 1. per-item log-likelihoods against transformers (whose KV cache is FP32, as here)
if $S eval -m "$D" --data "$SH/data/eval" --limit "$LIMIT" --kv f32 --per-item "$tmp/items.jsonl" >"$tmp/table" 2>"$tmp/err"; then
  # "task item" -> tokens, greedy, logprobs (both files: one JSON object per line, arrays flat)
  norm() {
    sed 's/ //g' "$1" | awk -F'"' '{
      task = $4; match($0, /"item":[0-9]+/); item = substr($0, RSTART + 7, RLENGTH - 7)
      match($0, /"logprob":\[[^]]*\]/); lp = substr($0, RSTART + 11, RLENGTH - 12)
      match($0, /"tokens":\[[^]]*\]/); tk = substr($0, RSTART + 10, RLENGTH - 11)
      match($0, /"greedy":\[[^]]*\]/); gr = substr($0, RSTART + 10, RLENGTH - 11)
      print task, item, tk, gr, lp }'
  }
  norm "$tmp/items.jsonl" >"$tmp/got"
  norm tests/fixtures/eval_ref_docs28m.jsonl >"$tmp/ref"
  awk '{print $1 "/" $2, $3, $4, $5}' "$tmp/got" | sort >"$tmp/got2"
  awk '{print $1 "/" $2, $3, $4, $5}' "$tmp/ref" | sort >"$tmp/ref2"
  join "$tmp/got2" "$tmp/ref2" >"$tmp/joined"
  n=$(wc -l <"$tmp/items.jsonl")
  res=$(awk -v want="$n" '{
      if ($2 != $5) { bad++; if (bad < 4) print "tokens differ: " $1 " " $2 " vs " $5 > "/dev/stderr"; next }
      if ($3 != $6) { bad++; if (bad < 4) print "greedy differs: " $1 > "/dev/stderr"; next }
      k = split($4, a, ","); split($7, b, ",")
      for (i = 1; i <= k; i++) { d = a[i] - b[i]; if (d < 0) d = -d; if (d > worst) worst = d; if (d > 1e-3) { bad++; print "logprob differs: " $1 " " a[i] " vs " b[i] > "/dev/stderr" } }
      cnt++ }
    END { printf "%d %d %.2e", cnt, bad + (want - cnt), worst }' "$tmp/joined")
  set -- $res
  if [ "$1" -gt 0 ] && [ "$2" -eq 0 ]; then ok; echo "eval: $1 items identical to transformers in tokens and greedy flags, max |logprob difference| $3"
  else bad "per-item log-likelihoods vs transformers: $res (items compared, mismatches, max difference)"; fi
  grep -q '^| hellaswag | '"$LIMIT"' | acc | ' "$tmp/table" && grep -q '^| lambada | '"$LIMIT"' | acc' "$tmp/table" && ok || bad "eval table"
else
  bad "spikeq eval exit status"; head -3 "$tmp/err"
fi

# 2. JSON output, KL divergence, and the FP16 KV cache (the default): perplexity within 0.1%
# of the FP32 cache's on docs-eval
p32=$($S perplexity -m $M -f "$D/docs-eval.txt" --chunks 20 --kv f32 2>/dev/null | sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p')
p16=$($S perplexity -m $M -f "$D/docs-eval.txt" --chunks 20 2>/dev/null | sed -n 's/^Final estimate: PPL = \([0-9.]*\).*/\1/p')
awk -v a="$p32" -v b="$p16" 'BEGIN { d = (b - a) / a; exit !(a > 0 && d < 0.001 && d > -0.001) }' && ok ||
  bad "perplexity with the FP16 KV cache ($p16) vs FP32 ($p32): more than 0.1% apart"
$S eval -m $M --data "$SH/data/eval" --tasks copa,winogrande --limit 20 -o json >"$tmp/j" 2>/dev/null &&
  grep -q '"copa": {"items": 20, "acc": ' "$tmp/j" && grep -q '"winogrande": {"items": 20' "$tmp/j" && ok || bad "eval -o json"
$S perplexity -m $M -f "$D/docs-eval.txt" --chunks 2 --kl-base $M >"$tmp/k0" 2>/dev/null &&
  grep -q '^Mean KLD *: 0.000000 +/- 0.000000' "$tmp/k0" && grep -q '^Same top token *: 100.000' "$tmp/k0" && ok || bad "KLD of a model from itself"
$S perplexity -m $M -f "$D/docs-eval.txt" --chunks 2 --kl-base "$D" >"$tmp/k1" 2>/dev/null &&
  awk '/^Mean KLD/ { if ($4 > 0.001 && $4 < 0.1) f = 1 } END { exit !f }' "$tmp/k1" && ok || { bad "KLD of W8A8 from FP16"; cat "$tmp/k1"; }

# 3. bad input: one line on stderr, non-zero exit
expect_fail() {
  pat=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"; rc=$?
  if [ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q "^spikeq: .*$pat" "$tmp/err" && [ "$(grep -c . "$tmp/err")" -eq 1 ] && [ ! -s "$tmp/out" ]; then ok
  else bad "(rc=$rc) $*"; cat "$tmp/err"; fi
}
mkdir -p "$tmp/ev"
expect_fail "unknown task 'mmlu'" $S eval -m $M --data "$SH/data/eval" --tasks piqa,mmlu
expect_fail "nowhere/copa.jsonl: cannot open" $S eval -m $M --data "$tmp/nowhere" --tasks copa
expect_fail "data DIR is required" $S eval -m $M --tasks copa
printf '{"query": "a", "choices": ["x", "y"], "gold": 1}\n{"query": "b", "choices": ["x"], "gold": 0}\n' >"$tmp/ev/copa.jsonl"
expect_fail "copa.jsonl:2: expected query, choices" $S eval -m $M --data "$tmp/ev" --tasks copa
printf '{"query": "a", "choices": ["x", "y"], "gold": 2}\n' >"$tmp/ev/copa.jsonl"
expect_fail "copa.jsonl:1: expected query, choices (2-64 strings) and gold in range" $S eval -m $M --data "$tmp/ev" --tasks copa
printf '{"query": "a", "choices": ["x", "y"], "gold": 1\n' >"$tmp/ev/copa.jsonl"
expect_fail "copa.jsonl:1: not valid JSON" $S eval -m $M --data "$tmp/ev" --tasks copa
printf 'ctx\n7\na\nb\nc\nd\n' >"$tmp/ev/hellaswag_val_full.txt"
expect_fail "hellaswag_val_full.txt:2: expected a gold label" $S eval -m $M --data "$tmp/ev" --tasks hellaswag
printf '{"goal": "g", "sol1": "a", "sol2": "b"}\n' >"$tmp/ev/piqa_valid.jsonl"; : >"$tmp/ev/piqa_valid-labels.lst"
expect_fail "piqa_valid-labels.lst:0: expected a label 0 or 1" $S eval -m $M --data "$tmp/ev" --tasks piqa
expect_fail "per-item: missing value" $S eval -m $M --data "$SH/data/eval" --per-item
# a per-item file is written whole at the end or not at all
$S eval -m $M --data "$tmp/ev" --tasks copa,piqa --per-item "$tmp/pi.jsonl" >/dev/null 2>&1
[ ! -e "$tmp/pi.jsonl" ] && [ -z "$(ls "$tmp" | grep 'pi.jsonl.tmp')" ] && ok || bad "partial per-item file left"
# a text shorter than one window is refused whatever its bytes
printf '\377\376' >"$tmp/short.txt"
expect_fail "too few tokens" $S perplexity -m $M -f "$tmp/short.txt"
: >"$tmp/empty.txt"
expect_fail "too few tokens" $S perplexity -m $M -f "$tmp/empty.txt"
expect_fail "nothing: no such file" $S perplexity -m $M -f "$D/docs-eval.txt" --kl-base "$tmp/nothing"
expect_fail "vocabulary of 512 tokens" $S perplexity -m $M -f "$D/docs-eval.txt" --kl-base "$SH/models/stories260K/stories260K.bin"

echo "eval: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
