#!/bin/sh
# test_docs.sh [all | DOC.md ...] — every command shown in the docs runs as written.
# In each fenced block, a line "$ build/spikeq ..." (or "$ build/bench/...") is a command,
# and the lines after it, up to the next command or the fence, are what it printed. The
# command is run from the repository root and must exit 0. An HTML comment right before the
# fence says how its output is checked:
#   <!-- doc-test: output -->  stdout equals the shown lines that do not start with "spikeq: ",
#                              and each shown "spikeq: " line is on stderr (numbers masked on
#                              lines that report a time or a rate; decimals within 2e-3
#                              relative, as another ISA sums floats in another order);
#   <!-- doc-test: shape -->   the same with every number and the kernel table's name masked;
#   <!-- doc-test: skip REASON --> not run (said in the summary);
#   no comment: exit status only.
# Commands that read ../shared skip when it is absent, and fail when CI=true.
cd "$(dirname "$0")/.." || exit 1
[ $# -gt 0 ] && [ "$1" != all ] || set -- README.md docs/usage.md
SH=../shared
pass=0; fail=0; skip=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Split the docs into cases: $tmp/N.cmd, N.exp (shown output), N.mode, N.where.
awk -v dir="$tmp" '
  function flush() { if (n > 0 && cmd != "") { print cmd > (dir "/" n ".cmd"); close(dir "/" n ".cmd");
                     printf "%s", shown > (dir "/" n ".exp"); close(dir "/" n ".exp");
                     print mode > (dir "/" n ".mode"); close(dir "/" n ".mode");
                     print where > (dir "/" n ".where"); close(dir "/" n ".where") } cmd = ""; shown = "" }
  FNR == 1 { pending = "" }
  /^<!-- doc-test: / { pending = $0; sub(/^<!-- doc-test: /, "", pending); sub(/ -->.*$/, "", pending); next }
  /^```/ { if (infence) { flush(); infence = 0; blockmode = "" }
           else { infence = 1; blockmode = pending == "" ? "status" : pending }
           pending = ""; next }
  !infence { if ($0 !~ /^[ \t]*$/) pending = ""; next }
  /^\$ build\// { flush(); n++; cmd = substr($0, 3); mode = blockmode; where = FILENAME ":" FNR; next }
  cmd != "" { shown = shown $0 "\n" }
' "$@"

# (the kernel table's name too: it is the machine's, as the timings are)
mask_all() { sed -E 's/\| (scalar|avx2|avxvnni|avx512|avx512bf16|neon|neonplain) \|/| ISA |/g; s/[0-9]+(\.[0-9]+)?/N/g; s/[ \t]+$//' | grep -v '^$'; }
# numbers masked only on lines that report a time or a rate
mask_time() { sed -E '/[0-9] (ms|s|min)\b|tokens\/s|t\/s/ s/[0-9]+(\.[0-9]+)?/N/g; s/[ \t]+$//' | grep -v '^$'; }

# same WANT GOT: the same lines, except that numbers with a decimal point may differ by
# 2e-3 relative (float sums in another order on another ISA); integers are exact
same() {
  [ "$(wc -l <"$1")" -eq "$(wc -l <"$2")" ] || return 1
  paste -d '\n' "$1" "$2" | awk '
    function skel(s, arr,   n) { n = 0
      while (match(s, /-?[0-9]+(\.[0-9]+)?(e[-+]?[0-9]+)?/)) { arr[++n] = substr(s, RSTART, RLENGTH); s = substr(s, 1, RSTART - 1) "#" substr(s, RSTART + RLENGTH) }
      arr[0] = n; return s }
    NR % 2 == 1 { w = $0; next }
    { if (skel(w, a) != skel($0, b) || a[0] != b[0]) bad = 1
      for (i = 1; i <= a[0] && !bad; i++) {
        if (a[i] !~ /\./) { if (a[i] != b[i]) bad = 1; continue }
        d = a[i] - b[i]; m = a[i] < 0 ? -a[i] : a[i]; if (d < 0) d = -d
        if (d > 2e-3 * m + 1e-5) bad = 1 } }
    END { exit bad }'
}

i=1
while [ -f "$tmp/$i.cmd" ]; do
  cmd=$(cat "$tmp/$i.cmd"); mode=$(cat "$tmp/$i.mode"); where=$(cat "$tmp/$i.where")
  i=$((i + 1))
  case "$mode" in
    skip*) skip=$((skip + 1)); echo "skipped ($where): ${mode#skip } — $cmd"; continue ;;
  esac
  case "$cmd" in
    *../shared*) if [ ! -d "$SH" ]; then
        if [ "$CI" = true ]; then fail=$((fail + 1)); echo "FAIL ($where): ../shared is missing"; else skip=$((skip + 1)); fi
        continue; fi ;;
  esac
  if ! timeout 600 sh -c "$cmd" >"$tmp/out" 2>"$tmp/err"; then
    fail=$((fail + 1)); echo "FAIL ($where): exit status: $cmd"; head -3 "$tmp/err"; continue
  fi
  ok=1
  case "$mode" in
    output|shape)
      if [ "$mode" = shape ]; then m=mask_all; else m=mask_time; fi
      grep -v '^spikeq: ' "$tmp/$((i - 1)).exp" | $m >"$tmp/want"
      $m <"$tmp/out" >"$tmp/got"
      if ! same "$tmp/want" "$tmp/got"; then
        ok=0; echo "FAIL ($where): stdout differs: $cmd"; diff "$tmp/want" "$tmp/got" | head -10
      fi
      $m <"$tmp/err" >"$tmp/goterr"
      grep '^spikeq: ' "$tmp/$((i - 1)).exp" | $m | while IFS= read -r line; do
        grep -qxF -- "$line" "$tmp/goterr" || { echo "FAIL ($where): not on stderr: $line"; echo x >>"$tmp/errmiss"; }
      done
      if [ -s "$tmp/errmiss" ]; then ok=0; rm -f "$tmp/errmiss"; fi ;;
    status) ;;
    *) ok=0; echo "FAIL ($where): unknown doc-test mode '$mode'" ;;
  esac
  if [ $ok -eq 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
echo "docs: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ]
