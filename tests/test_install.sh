#!/bin/sh
# test_install.sh — spikeq as an outside program uses it: `make install` into a temporary
# prefix, then examples/simple.c built with pkg-config against the shared library and the
# static one; both print the same greedy text as `spikeq generate --temp 0`. The header
# compiles as C++ (tests/api_cxx.cpp, run against the shared library), and the shared
# library exports the public API only.
cd "$(dirname "$0")/.." || exit 1
pass=0; fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
P=$tmp/prefix
M=models/docs-llama-28m-w8a8.spq
if make -s install PREFIX="$P" >"$tmp/log" 2>&1; then ok; else bad "make install"; cat "$tmp/log"; fi
export PKG_CONFIG_PATH="$P/lib/pkgconfig"
build/spikeq generate -m $M -p "The Linux kernel" -n 32 --temp 0 >"$tmp/want" 2>/dev/null
if cc -std=c11 -Wall -Wextra -Werror examples/simple.c -o "$tmp/simple" $(pkg-config --cflags --libs spikeq) 2>"$tmp/log"; then
  LD_LIBRARY_PATH="$P/lib" "$tmp/simple" $M 32 "The Linux kernel" >"$tmp/got" 2>"$tmp/err" && cmp -s "$tmp/want" "$tmp/got" && ok ||
    { bad "simple (shared) differs from spikeq generate --temp 0"; cat "$tmp/err"; diff "$tmp/want" "$tmp/got" | head -5; }
  readelf -d "$tmp/simple" | grep -q 'libspikeq.so.0' && ok || bad "simple is not linked to libspikeq.so.0"
else bad "simple.c does not build with pkg-config --cflags --libs spikeq"; cat "$tmp/log"; fi
if cc -std=c11 examples/simple.c -o "$tmp/simple_static" $(pkg-config --cflags spikeq) "$P/lib/libspikeq.a" \
     $(pkg-config --static --libs-only-other --libs-only-l spikeq | sed 's/-lspikeq//') 2>"$tmp/log"; then
  "$tmp/simple_static" $M 32 "The Linux kernel" >"$tmp/got" 2>/dev/null && cmp -s "$tmp/want" "$tmp/got" && ok ||
    bad "simple (static) differs from spikeq generate --temp 0"
else bad "simple.c does not link against libspikeq.a"; cat "$tmp/log"; fi
if g++ -std=c++11 -Wall -Wextra -Werror -pedantic tests/api_cxx.cpp -o "$tmp/cxx" $(pkg-config --cflags --libs spikeq) 2>"$tmp/log"; then
  LD_LIBRARY_PATH="$P/lib" "$tmp/cxx" $M >"$tmp/out" 2>&1 && grep -q "^llama, 10 layers" "$tmp/out" && ok || { bad "C++ program"; cat "$tmp/out"; }
else bad "spikeq.h does not compile as C++"; cat "$tmp/log"; fi
other=$(nm -D --defined-only "$P/lib/libspikeq.so.0" | awk '{print $3}' | grep -v '^spikeq_' | grep -v '^_' | head -5)
[ -z "$other" ] && ok || bad "libspikeq.so exports more than the API: $other"
echo "install: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
