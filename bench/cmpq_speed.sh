#!/bin/sh
# cmpq_speed.sh — CMPQ decode and prefill beside W8A8 on random weights with TinyLlama-1.1B's
# shapes. Each round is one `spikeq bench` in which W8A8 and CMPQ at 3, 3.5, 4 and 5 bits take
# turns token by token (tg) and prompt by prompt (pp), so that they meet the same load on a
# shared machine. Each row: pp512 and tg128 t/s (mean of -r 3), the fraction of the limit
# measured between the runs, and pp and tg against W8A8 (the median of the repetitions' ratios).
# The limits probed in each round go to stderr.
# Usage: [SPIKEQ=path/to/spikeq] [BITS=3,3.5,4,5] sh bench/cmpq_speed.sh [ROUNDS] [THREADS] > table.md
R=${1:-2}
T=${2:-2}
S=${SPIKEQ:-build/spikeq}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| round | weights | size | pp512 t/s | of int8 peak | pp vs W8A8 | tg128 t/s | of read BW | tg vs W8A8 |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|---:|"
for r in $(seq 1 "$R"); do
  "$S" bench --synthetic tinyllama-1.1b --scheme w8a8,cmpq --bits "${BITS:-3,3.5,4,5}" -p 512 -n 128 -r 3 -t "$T" \
    >"$tmp/o" 2>"$tmp/e" || { cat "$tmp/e" >&2; exit 1; }
  grep "between the runs" "$tmp/e" | sed "s/^spikeq: /round $r: /; s/; best of.*//" >&2
  # the ratio lines: "...: cmpq 3.00 bits 0.83x (0.78-1.01), ..." -> "plan|ratio" per entry
  for t in pp512 tg128; do
    grep "thread(s) $t against" "$tmp/e" | sed 's/.*(lowest-highest): //' | tr ',' '\n' |
      sed 's/^ *//; s/ \([0-9.]*x\) .*/|\1/' >"$tmp/$t"
  done
  awk -F'|' -v r="$r" -v ppf="$tmp/pp512" -v tgf="$tmp/tg128" '
    BEGIN { while ((getline l < ppf) > 0) { split(l, a, "|"); pp[a[1]] = a[2] }
            while ((getline l < tgf) > 0) { split(l, a, "|"); tg[a[1]] = a[2] } }
    function trim(s) { gsub(/^ +| +$/, "", s); return s }
    / pp512 / { plan = trim($5); size[plan] = trim($3); ppt[plan] = trim($9); ppr[plan] = trim($10) }
    / tg128 / { plan = trim($5); tgt[plan] = trim($9); tgr[plan] = trim($10); order[n++] = plan }
    END { for (i = 0; i < n; i++) { p = order[i]; sub(/ of .*/, "", ppr[p]); sub(/ of .*/, "", tgr[p])
            printf "| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", r, p, size[p], ppt[p], ppr[p],
              i ? pp[p] : "1", tgt[p], tgr[p], i ? tg[p] : "1" } }' "$tmp/o"
done
