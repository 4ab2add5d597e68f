#!/bin/sh
# gguf_speed.sh — spikeq and llama.cpp (or ik_llama.cpp) on the same GGUF files, taking turns:
# per round and file, `llama-bench -p P -n N -r 3 -t T [-rtr 1]` then `spikeq bench -m FILE`
# with the same tests, so both see the machine in the same state (its read bandwidth moves
# by 2x within minutes). Prints one row per round, file and tool, then per file the median
# over rounds of spikeq's t/s over llama.cpp's, with spikeq's probed read bandwidth beside.
# Usage: sh bench/gguf_speed.sh LLAMA_BIN_DIR ROUNDS FILE.gguf... (env: P=512 N=128 T=2,
# RTR=1 for ik_llama.cpp's run-time repacking, RTR= for mainline llama.cpp)
B=${1:?directory with llama-bench}
R=${2:-2}
shift 2
P=${P:-512}
N=${N:-128}
T=${T:-2}
RTR=${RTR-1}
S=build/spikeq
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "| round | file | tool | pp$P t/s | tg$N t/s |"
echo "|---:|---|---|---:|---:|"
for r in $(seq 1 "$R"); do
  for f in "$@"; do
    n=$(basename "$f" .gguf)
    "$B/llama-bench" -m "$f" -p "$P" -n "$N" -r 3 -t "$T" ${RTR:+-rtr $RTR} -o csv >"$tmp/l.csv" 2>/dev/null
    # llama-bench csv: avg_ts, stddev_ts, test are the last three fields
    lpp=$(awk -F, -v t="pp$P" '{ gsub(/"/, "") } $NF == t { print $(NF - 2) }' "$tmp/l.csv" | tail -1)
    ltg=$(awk -F, -v t="tg$N" '{ gsub(/"/, "") } $NF == t { print $(NF - 2) }' "$tmp/l.csv" | tail -1)
    $S bench -m "$f" -p "$P" -n "$N" -r 3 -t "$T" -o csv >"$tmp/s.csv" 2>"$tmp/s.err"
    # spikeq bench csv: test and tps_mean are fields 7 and 8
    spp=$(awk -F, -v t="pp$P" '$7 == t { print $8 }' "$tmp/s.csv" | head -1)
    stg=$(awk -F, -v t="tg$N" '$7 == t { print $8 }' "$tmp/s.csv" | head -1)
    # the read bandwidth probed between spikeq's tokens (limit_between of its tg row, bytes/s)
    bw=$(awk -F, -v t="tg$N" '$7 == t { printf "%.0f GB/s", $12 / 1e9 }' "$tmp/s.csv" | head -1)
    echo "| $r | $n | llama.cpp | $lpp | $ltg |"
    echo "| $r | $n | spikeq ($bw) | $spp | $stg |"
    echo "$n $lpp $ltg $spp $stg" >>"$tmp/all"
  done
done
echo
echo "| file | spikeq / llama.cpp pp$P (median of rounds) | tg$N |"
echo "|---|---:|---:|"
for f in "$@"; do
  n=$(basename "$f" .gguf)
  awk -v n="$n" '$1 == n && $2 > 0 && $3 > 0 { pp[++k] = $4 / $2; tg[k] = $5 / $3 }
    function med(a, k,   i, j, t) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                   return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2 }
    END { if (k) printf "| %s | %.2fx | %.2fx |\n", n, med(pp, k), med(tg, k) }' "$tmp/all"
done
