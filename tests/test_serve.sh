#!/bin/sh
# test_serve.sh SPIKEQ — spikeq serve on loopback with the shipped model: curl and the official
# `openai` npm client (installed into build/node, skipped with a message when npm cannot reach
# its registry, a failure when CI=true), greedy text equal to `spikeq generate --temp 0` alone
# and with eight requests batched together, every bad-request row of the README's table,
# API keys, a full queue, a client that disconnects, SIGTERM draining.
S=${1:-build/spikeq}
M=models/docs-llama-28m-w8a8.spq
pass=0; fail=0
tmp=$(mktemp -d)
pids=""
trap 'for p in $pids; do kill -9 $p 2>/dev/null; done; rm -rf "$tmp"' EXIT
ok() { pass=$((pass+1)); }
no() { fail=$((fail+1)); echo "FAIL: $*"; }

# start NAME ARGS...: a server on a free port; sets $U (base URL) and $P (pid)
start() {
  name=$1; shift
  $S serve -m $M --port 0 -t 2 "$@" 2>"$tmp/$name.log" & P=$!
  pids="$pids $P"
  for i in $(seq 1 100); do
    port=$(sed -n 's/.*on http:\/\/127.0.0.1:\([0-9]*\):.*/\1/p' "$tmp/$name.log")
    [ -n "$port" ] && curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
  U="http://127.0.0.1:$port"
}
# code METHOD PATH BODY: the HTTP status; the body in $tmp/body
code() { curl -s -o "$tmp/body" -w '%{http_code}' -X "$1" "$U$2" -H 'Content-Type: application/json' ${3:+--data-binary "$3"}; }
# bad STATUS PARAM METHOD PATH BODY: an OpenAI error object with that status and param
bad() {
  st=$1; param=$2; shift 2
  c=$(code "$@")
  if [ "$c" = "$st" ] && grep -q '"error":{"message":"' "$tmp/body" && { [ -z "$param" ] || grep -q "\"param\":\"$param\"" "$tmp/body"; }; then ok
  else no "expected $st ($param) for $*: got $c $(head -c 300 "$tmp/body")"; fi
}
text() { sed -n 's/.*"text":"\([^"]*\)".*/\1/p' "$1"; }

start main -np 4
# greedy completion = generate --temp 0
want=$($S generate -m $M -p "The Linux kernel" -n 24 --temp 0 2>/dev/null | sed 's/^The Linux kernel//')
c=$(code POST /v1/completions '{"prompt":"The Linux kernel","max_tokens":24,"temperature":0}')
[ "$c" = 200 ] && [ "$(text "$tmp/body")" = "$want" ] && grep -q '"finish_reason":"length"' "$tmp/body" &&
  grep -q '"usage":{"prompt_tokens":4,"completion_tokens":24,"total_tokens":28}' "$tmp/body" && ok || no "greedy completion: $(cat "$tmp/body") vs [$want]"
# eight at once (decoded in one batch): each text is what it is alone
for i in 1 2 3 4 5 6 7 8; do
  curl -s "$U/v1/completions" -d "{\"prompt\":\"Question $i: how do I\",\"max_tokens\":20,\"temperature\":0}" >"$tmp/par$i" & eval "j$i=\$!"
done
wait $j1 $j2 $j3 $j4 $j5 $j6 $j7 $j8
same=1
for i in 1 2 3 4 5 6 7 8; do
  curl -s "$U/v1/completions" -d "{\"prompt\":\"Question $i: how do I\",\"max_tokens\":20,\"temperature\":0}" >"$tmp/one"
  a=$(text "$tmp/par$i"); b=$(text "$tmp/one")
  [ -n "$a" ] && [ "$a" = "$b" ] || { same=0; echo "  request $i batched [$a] alone [$b]"; }
done
[ $same = 1 ] && ok || no "batched requests differ from alone"
# a streamed chat: the role, text chunks, the finish chunk, usage, [DONE]
curl -sN "$U/v1/chat/completions" -d '{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is a module?"}],"max_tokens":10,"stream":true,"stream_options":{"include_usage":true}}' >"$tmp/sse"
grep -q '^data: {.*"delta":{"role":"assistant","content":""}' "$tmp/sse" && grep -q '"finish_reason":"length"' "$tmp/sse" &&
  grep -q '"usage":{"prompt_tokens":[0-9]*,"completion_tokens":10' "$tmp/sse" && [ "$(tail -2 "$tmp/sse" | head -1)" = "data: [DONE]" ] && ok || no "chat stream: $(cat "$tmp/sse")"
# a chat turn = spikeq generate --chat (one formatting code)
wantc=$($S generate -m $M --chat --system "Be brief." -p "What is a module?" -n 16 --temp 0 2>/dev/null | tr '\n' '@')
c=$(code POST /v1/chat/completions '{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is a module?"}],"max_tokens":16,"temperature":0}')
gotc=$(sed -n 's/.*"content":"\([^"]*\)".*/\1/p' "$tmp/body" | sed 's/\\n/@/g')
[ "$c" = 200 ] && [ -n "$gotc" ] && [ "${wantc%@}" = "$gotc" ] && ok || no "chat vs generate --chat: [$gotc] vs [$wantc]"
# stop strings end the text before them
c=$(code POST /v1/completions '{"prompt":"The Linux kernel","max_tokens":24,"temperature":0,"stop":["server"]}')
[ "$(text "$tmp/body")" = "${want%%server*}" ] && grep -q '"finish_reason":"stop"' "$tmp/body" && ok || no "stop string: $(cat "$tmp/body")"
c=$(code GET /v1/models); [ "$c" = 200 ] && grep -q '"id":"docs-llama-28m-w8a8.spq"' "$tmp/body" && ok || no "models: $c"
# bad requests
bad 400 "" POST /v1/completions '{"prompt": "x"'
bad 400 "" POST /v1/completions '[1,2]'
bad 400 prompt POST /v1/completions '{"prompt": 5}'
bad 400 prompt POST /v1/completions '{"max_tokens": 5}'
bad 400 messages POST /v1/chat/completions '{"messages": []}'
bad 400 messages POST /v1/chat/completions '{"messages": [{"role":"robot","content":"hi"}]}'
bad 400 temperature POST /v1/completions '{"prompt":"x","temperature":"hot"}'
bad 400 max_tokens POST /v1/completions '{"prompt":"x","max_tokens":0}'
bad 400 max_tokens POST /v1/completions '{"prompt":"x","max_tokens":100000}'
bad 400 n POST /v1/completions '{"prompt":"x","n":2}'
bad 400 frobnicate POST /v1/completions '{"prompt":"x","frobnicate":1}'
bad 400 stop POST /v1/completions '{"prompt":"x","stop":["a","b","c","d","e"]}'
bad 400 prompt POST /v1/completions '{"prompt":[1,99999999]}'
long=$(awk 'BEGIN { for (i = 0; i < 1500; i++) printf "kernel " }')
bad 400 prompt POST /v1/completions "{\"prompt\":\"$long\"}"
head -c 1100000 /dev/zero | tr '\0' ' ' >"$tmp/huge"
c=$(curl -s -o "$tmp/body" -w '%{http_code}' "$U/v1/completions" --data-binary @"$tmp/huge")
[ "$c" = 400 ] && grep -q 'larger than' "$tmp/body" && ok || no "oversized body: $c"
bad 405 "" GET /v1/completions
bad 404 "" GET /v2/nothing
kill $P
# a client that goes away mid-stream: generation stops and its slot is free at once
start one -np 1
gen() { curl -s "$U/metrics" | sed -n 's/^spikeq_generated_tokens_total //p'; }
curl -sN --max-time 0.2 "$U/v1/completions" -d '{"prompt":"The","max_tokens":1000,"stream":true,"temperature":0}' >/dev/null 2>&1
sleep 0.1; g1=$(gen); sleep 0.3; g2=$(gen)
[ -n "$g1" ] && [ "$g1" = "$g2" ] && [ "$g1" -lt 1000 ] && ok || no "generation went on after the client left ($g1 then $g2 tokens)"
curl -s --max-time 0.2 "$U/v1/completions" -d '{"prompt":"The","max_tokens":1000,"temperature":0}' >/dev/null 2>&1
sleep 0.3; g3=$(gen); sleep 0.3; g4=$(gen)
[ -n "$g3" ] && [ "$g3" = "$g4" ] && [ $((g3 - g2)) -lt 1000 ] && ok || no "generation went on after a waiting (not streaming) client left ($g3 then $g4 tokens)"
t0=$(date +%s%N)
c=$(code POST /v1/completions '{"prompt":"The","max_tokens":4}')
dt=$(( ($(date +%s%N) - t0) / 1000000 ))
[ "$c" = 200 ] && [ $dt -lt 1500 ] && ok || no "slot of a disconnected stream not freed ($c after $dt ms)"
curl -s "$U/metrics" | grep -q '^spikeq_slots_busy 0' && ok || no "metrics: slots busy after the requests"
kill $P
# a full queue: six requests at once on one slot with a queue of one: the ones that find both
# taken get 503 with Retry-After, the others complete
start queue -np 1 --queue 1
for i in 1 2 3 4 5 6; do
  curl -s -D "$tmp/hdr$i" -o "$tmp/qb$i" -w '%{http_code}' "$U/v1/completions" -d '{"prompt":"The","max_tokens":400,"temperature":0}' >"$tmp/qc$i" & eval "q$i=\$!"
  if [ $i = 1 ]; then # the first holds the slot before the others arrive (a loaded machine may be slow to start it)
    w=0; while [ $w -lt 100 ] && ! curl -s "$U/metrics" | grep -q '^spikeq_slots_busy 1'; do sleep 0.05; w=$((w+1)); done
  fi
done
wait $q1 $q2 $q3 $q4 $q5 $q6
n503=0; n200=0; good=1
for i in 1 2 3 4 5 6; do
  case $(cat "$tmp/qc$i") in
    503) n503=$((n503+1)); grep -qi '^Retry-After: 1' "$tmp/hdr$i" && grep -q 'queue is full' "$tmp/qb$i" || good=0 ;;
    200) n200=$((n200+1)) ;;
    *) good=0 ;;
  esac
done
[ $good = 1 ] && [ $n503 -ge 1 ] && [ $n200 -ge 2 ] && ok || no "full queue: $n200 x 200, $n503 x 503 (Retry-After and message checked: $good)"
kill $P
# SIGTERM: the stream under way finishes, new requests get 503, the process exits 0
start drain -np 2
curl -sN "$U/v1/completions" -d '{"prompt":"The","max_tokens":1000,"stream":true,"temperature":0}' >"$tmp/drain" 2>/dev/null & b3=$!
sleep 0.1
kill -TERM $P
sleep 0.1
c=$(code POST /v1/completions '{"prompt":"The","max_tokens":2}')
wait $b3
wait $P; rc=$?
[ $rc = 0 ] && grep -q '^data: \[DONE\]' "$tmp/drain" && grep -q '"finish_reason":"length"' "$tmp/drain" && { [ "$c" = 503 ] || [ "$c" = 000 ]; } && ok ||
  no "SIGTERM drain: rc $rc, new request $c, stream $(tail -c 200 "$tmp/drain")"
# API keys
start key --api-key s3cret
bad 401 "" POST /v1/completions '{"prompt":"x"}'
c=$(curl -s -o "$tmp/body" -w '%{http_code}' "$U/v1/completions" -H 'Authorization: Bearer s3cret' -d '{"prompt":"x","max_tokens":2}')
[ "$c" = 200 ] && ok || no "right API key: $c"
curl -sf "$U/health" >/dev/null && ok || no "health needs no key"
# the official openai client (npm), streaming and not
N=build/node
if [ ! -d "$N/node_modules/openai" ]; then
  mkdir -p "$N" && (cd "$N" && npm install --silent --no-audit --no-fund openai@4 >/dev/null 2>&1) || rm -rf "$N/node_modules"
fi
if [ -d "$N/node_modules/openai" ]; then
  if node tests/serve_openai.mjs "$U" s3cret "$(pwd)/$N/node_modules/openai/index.mjs"; then ok; else no "openai client"; fi
elif [ "${CI:-}" = true ]; then no "npm could not install the openai client in CI"
else echo "SKIP: npm could not install the openai package: client test"; fi
kill $P
# two replicas behind Debian's nginx, round-robin (examples/nginx-spikeq.conf with these ports)
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
if [ -x "$NGINX" ]; then
  start r1 -np 2; U1=$U; P1=$P
  start r2 -np 2; U2=$U; P2=$P
  mkdir -p "$tmp/ngx"
  nport=$(( 20000 + $$ % 20000 ))
  sed -e "s|127.0.0.1:8081|${U1#http://}|; s|127.0.0.1:8082|${U2#http://}|; s|127.0.0.1:8080|127.0.0.1:$nport|" \
    examples/nginx-spikeq.conf >"$tmp/ngx/nginx.conf"
  "$NGINX" -p "$tmp/ngx" -c "$tmp/ngx/nginx.conf" 2>"$tmp/ngx.err"
  U="http://127.0.0.1:$nport"
  for i in $(seq 1 50); do curl -sf "$U/health" >/dev/null 2>&1 && break; sleep 0.1; done
  all=1
  for i in 1 2 3 4; do c=$(code POST /v1/completions '{"prompt":"The","max_tokens":3}'); [ "$c" = 200 ] || all=0; done
  n1=$(curl -s "$U1/metrics" | sed -n 's/^spikeq_requests_total{endpoint="\/v1\/completions",code="200"} //p')
  n2=$(curl -s "$U2/metrics" | sed -n 's/^spikeq_requests_total{endpoint="\/v1\/completions",code="200"} //p')
  [ $all = 1 ] && [ "${n1:-0}" -ge 1 ] && [ "${n2:-0}" -ge 1 ] && ok || no "nginx round-robin: all 200 $all, replica requests $n1 / $n2"
  kill $P1; wait $P1 2>/dev/null
  all=1
  for i in 1 2 3 4; do c=$(code POST /v1/completions '{"prompt":"The","max_tokens":3}'); [ "$c" = 200 ] || all=0; done
  [ $all = 1 ] && ok || no "nginx: requests failed with one replica down"
  kill "$(cat "$tmp/ngx/nginx.pid")" 2>/dev/null; kill $P2
elif [ "${CI:-}" = true ]; then no "nginx missing in CI (tools/deps.sh installs nginx-light)"
else echo "SKIP: nginx absent: the replicas test"; fi
echo "serve: $pass passed, $fail failed"
[ $fail -eq 0 ]
