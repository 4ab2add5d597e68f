#!/bin/sh
# test_layers.sh — the folders depend downward only, and no unit includes its way round to
# itself. Reads every `#include "..."` of the tree's C and C++ files (docs/architecture.md
# draws the same order):
# - a file in folder A may include a header of folder B only when B is below A in LAYERS
#   (or B is A);
# - units (NAME.c with NAME.h, or a header alone) form no cycle: unit X depends on unit Y
#   when a file of X includes Y's header, and following those edges never leads back to X.
set -u
cd "$(dirname "$0")/.."

# bottom first; folders on one line stand side by side (neither may include the other)
LAYERS='base
kernels
tok
format
runtime
quant
include
api probe
tools
bench
tests fuzz examples'

pass=0
fail=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); echo "ok   $1"; }
no() { fail=$((fail + 1)); echo "FAIL $1"; }

# "including-file included-file" for every quoted include of the tree
srcs=$(git ls-files '*.c' '*.h' '*.cpp' 2>/dev/null)
[ -n "$srcs" ] || srcs=$(find . -name '*.[ch]' -o -name '*.cpp' | grep -v '^\./build' | sed 's#^\./##')
for f in $srcs; do
    sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f" | while read -r inc; do
        case $inc in
        */*) echo "$f $inc" ;;
        *) echo "$f $(dirname "$f")/$inc" ;; # a same-folder include
        esac
    done
done >"$tmp/edges"

# upward FILE: the includes of stdin that point up or sideways, one line each
upward() {
    awk -v layers="$LAYERS" '
        BEGIN { n = split(layers, row, "\n"); for (i = 1; i <= n; i++) { m = split(row[i], d, " "); for (j = 1; j <= m; j++) rank[d[j]] = i } }
        { a = $1; sub("/.*", "", a); b = $2; sub("/.*", "", b)
          if (a == b) next
          if (!(a in rank) || !(b in rank)) print $1 " includes " $2 ": folder " (a in rank ? b : a) " has no place in LAYERS"
          else if (rank[b] >= rank[a]) print $1 " includes " $2 ": " b "/ is not below " a "/" }'
}

# cycle: the first cycle among the units of stdin's includes, as "a -> b -> a", or nothing
cycle() {
    sed 's/\.\(c\|h\|cpp\) / /; s/\.\(c\|h\|cpp\)$//' | awk '
        $1 != $2 { adj[$1] = adj[$1] " " $2; node[$1]; node[$2] }
        function dfs(u,   n, i, v, e, j, p) {
            state[u] = 1; stack[++sp] = u
            n = split(adj[u], e, " ")
            for (i = 1; i <= n && !found; i++) {
                v = e[i]
                if (state[v] == 1) {
                    for (j = sp; stack[j] != v; j--) ;
                    p = v; for (j++; j <= sp; j++) p = p " -> " stack[j]
                    print p " -> " v; found = 1
                } else if (!state[v]) dfs(v)
            }
            sp--; state[u] = 2
        }
        END { for (u in node) if (!state[u] && !found) dfs(u) }'
}

up=$(upward <"$tmp/edges")
if [ -z "$up" ]; then ok "every include points down ($(wc -l <"$tmp/edges") includes)"; else no "includes that point up or sideways:"; echo "$up"; fi
cyc=$(cycle <"$tmp/edges")
if [ -z "$cyc" ]; then ok "no include cycle between units"; else no "include cycle: $cyc"; fi

# the checks can fail: an upward include, a sideways one and a cycle are each reported
[ -n "$(echo 'base/clock.c kernels/kernels.h' | upward)" ] && ok "base/ including kernels/ would be refused" || no "base/ -> kernels/ passed the rank check"
[ -n "$(echo 'api/spikeq.c probe/probes.h' | upward)" ] && ok "api/ including probe/ (side by side) would be refused" || no "api/ -> probe/ passed the rank check"
[ -n "$(printf 'kernels/team.c kernels/kernels.h\nkernels/kernels.h kernels/team.h\n' | cycle)" ] && ok "a unit cycle (team.c -> kernels.h -> team.h) would be refused" || no "a unit cycle passed the cycle check"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
