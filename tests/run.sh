#!/bin/sh
# run.sh RUNNER TEST... — run each cmocka test binary (under RUNNER, e.g. qemu) and each
# SCRIPT.sh:ARG entry as `sh SCRIPT.sh ARG`, then print one closing line
# "N passed, N failed" counting them.
runner=$1; shift
pass=0; fail=0
for t in "$@"; do
  case "$t" in
    *.sh:*) if sh "${t%%:*}" "${t#*:}"; then ok=1; else ok=0; fi ;;
    *) if $runner "$t"; then ok=1; else ok=0; fi ;;
  esac
  if [ $ok -eq 1 ]; then pass=$((pass+1)); else fail=$((fail+1)); echo "FAILED: $t"; fi
done
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
