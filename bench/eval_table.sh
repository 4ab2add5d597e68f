#!/bin/sh
# eval_table.sh [OUT_DIR] — the accuracy table of each precision plan on docs-llama-28m:
# docs-eval perplexity, KL divergence from the FP16 checkpoint and top-token agreement on the
# same windows (--kl-base), and zero-shot accuracy on the nine tasks of ../shared/data/eval
# (acc; acc_norm where the harness reports it). Prints a markdown table.
# Environment: CHUNKS (docs-eval windows of 512 tokens, default 100), LIMIT (items per task,
# default 300), T (threads, default 2), PLANS (the rows, default all nine). About 25 minutes on
# 2 cores with the defaults.
set -e
S=${SPIKEQ:-build/spikeq}
SH=${SPIKEQ_SHARED:-../shared}
D=$SH/models/docs-llama-28m
E=$SH/data/eval
O=${1:-/tmp/spikeq-eval}
CHUNKS=${CHUNKS:-100}; LIMIT=${LIMIT:-300}; T=${T:-2}
mkdir -p "$O"
C="--calib $D/docs-calib.txt"
PLANS=${PLANS:-"fp16 w8a8-dynamic w8a8-static w8a8-dynamic-fp16spike w8a8-static-fp16spike w8a8-static-fp8spike cmpq-5 cmpq-4 cmpq-3"}
want() { case " $PLANS " in *" $1 "*) return 0;; esac; return 1; }
q() { name=$1; shift; want $name || return 0; [ -f "$O/$name.spq" ] || $S quantize "$D" -o "$O/$name.spq" -t $T "$@" 2>>"$O/log"; }
! want fp16 || [ -f "$O/fp16.spq" ] || $S convert "$D" -o "$O/fp16.spq" 2>>"$O/log"
q w8a8-dynamic --spike none
q w8a8-static --act static --spike none $C
q w8a8-dynamic-fp16spike $C
q w8a8-static-fp16spike --act static $C
q w8a8-static-fp8spike --act static --spike fp8 $C
q cmpq-5 --scheme cmpq --bits 5 $C
q cmpq-4 --scheme cmpq --bits 4 $C
q cmpq-3 --scheme cmpq --bits 3 $C
field() { sed -n "s/^$1 *: *\([-0-9.]*\)\( +\/- \([0-9.]*\)\)\{0,1\}.*/\1 ± \3/p" "$2" | sed 's/ ± $//'; }
echo "| plan | docs-eval ppl | mean KLD vs FP16 | same top token | zero-shot mean acc | hellaswag acc_norm | piqa acc_norm | arc_easy acc_norm | winogrande acc | lambada acc |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for v in $PLANS; do
  m="$O/$v.spq"
  [ -f "$O/$v.kl" ] || $S perplexity -m "$m" -f "$D/docs-eval.txt" --chunks $CHUNKS --kl-base "$D" -t $T >"$O/$v.kl" 2>>"$O/log"
  [ -f "$O/$v.json" ] || $S eval -m "$m" --data "$E" --limit $LIMIT -t $T -o json >"$O/$v.json" 2>>"$O/log"
  ppl=$(sed -n 's/.*PPL = \([0-9.]*\) +\/- \([0-9.]*\).*/\1 ± \2/p' "$O/$v.kl")
  kld=$(field "Mean KLD" "$O/$v.kl"); top=$(sed -n 's/^Same top token *: *\([0-9.]*\) +\/- \([0-9.]*\) %/\1 ± \2 %/p' "$O/$v.kl")
  # mean of each task's acc, and a few tasks' figures, from the eval JSON (one task per line)
  acc=$(grep '"acc":' "$O/$v.json" | sed 's/.*"acc": \([0-9.]*\).*/\1/' | awk '{s+=$1; n++} END {printf "%.4f", s/n}')
  get() { grep "\"$1\":" "$O/$v.json" | sed "s/.*\"$2\": \([0-9.]*\), \"$2_stderr\": \([0-9.]*\).*/\1 ± \2/" | awk '{printf "%.3f ± %.3f", $1, $3}'; }
  echo "| $v | $ppl | $kld | $top | $acc | $(get hellaswag acc_norm) | $(get piqa acc_norm) | $(get arc_easy acc_norm) | $(get winogrande acc) | $(get lambada acc) |"
done
