#!/bin/sh
# cmpq_speed.sh — CMPQ decode and prefill beside W8A8 on random weights with TinyLlama-1.1B's
# shapes, alternating the plans round by round (this machine's bandwidth moves between rounds:
# compare within a round). Each row: pp512 and tg128 t/s (mean of -r 3), the fraction of the
# limit measured between the runs, and tg against W8A8's in the same round.
# Usage: [SPIKEQ=path/to/spikeq] sh bench/cmpq_speed.sh [ROUNDS] [THREADS] > table.md
R=${1:-2}
T=${2:-2}
S=${SPIKEQ:-build/spikeq}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| round | weights | size | pp512 t/s | of int8 peak | tg128 t/s | of read BW | tg vs W8A8 |"
echo "|---:|---|---:|---:|---:|---:|---:|---:|"
for r in $(seq 1 $R); do
  w8=
  for p in w8a8 "cmpq --bits 3" "cmpq --bits 3.5" "cmpq --bits 4" "cmpq --bits 5"; do
    # shellcheck disable=SC2086
    $S bench --synthetic tinyllama-1.1b --scheme $p -p 512 -n 128 -r 3 -t $T >$tmp/o 2>/dev/null
    pp=$(grep '| pp512 |' $tmp/o | awk -F'|' '{print $9 "|" $10}')
    tg=$(grep '| tg128 |' $tmp/o | awk -F'|' '{print $9 "|" $10}')
    size=$(grep '| tg128 |' $tmp/o | awk -F'|' '{print $3}')
    plan=$(grep '| tg128 |' $tmp/o | awk -F'|' '{print $5}')
    t=$(echo "$tg" | awk -F'|' '{print $1}' | awk '{print $1}')
    [ -n "$w8" ] || w8=$t
    echo "| $r |$plan|$size|$pp|$tg| $(awk -v a="$t" -v b="$w8" 'BEGIN {printf "%.2fx", a / b}') |"
  done
done
