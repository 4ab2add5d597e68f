#!/bin/sh
# run.sh TARGET SECONDS — one libFuzzer campaign; prints executions, corpus size and crashes.
t=$1; secs=$2
bin=build-fuzz/fuzz/fuzz_$t
mkdir -p build-fuzz/corpus/$t
dirs="build-fuzz/corpus/$t fuzz/corpus/$t"
[ -d fuzz/regress/$t ] && dirs="$dirs fuzz/regress/$t"
log=build-fuzz/fuzz-$t.log
# -max_len: the seeds are ~3 KB; -rss_limit_mb: a loader may not need more than 2 GB for any input
$bin -max_total_time="$secs" -timeout=20 -rss_limit_mb=2048 -max_len=16384 -print_final_stats=1 \
  -artifact_prefix=build-fuzz/crash-$t- $dirs >"$log" 2>&1
rc=$?
execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$')
cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
corpus=$(ls build-fuzz/corpus/$t | wc -l)
if [ $rc -eq 0 ]; then
  echo "fuzz $t: ${execs:-?} executions in ${secs} s, $cov, corpus $corpus, 0 crashes"
else
  echo "FAIL fuzz $t (rc=$rc): see $log and build-fuzz/crash-$t-*"; grep -A12 "ERROR\|==ERROR\|SUMMARY\|deadly" "$log" | head -40
  exit 1
fi
