#!/bin/sh
# run.sh RUNNER TEST... — run each cmocka test binary (under RUNNER, e.g. qemu), then print
# one closing line "N passed, N failed" counting binaries.
runner=$1; shift
pass=0; fail=0
for t in "$@"; do
  if $runner "$t"; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAILED: $t"; fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
