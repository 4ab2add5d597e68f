#!/usr/bin/env python3
"""serve_load.py URL [--streams N] [--requests R] [--max-tokens T] [--prompt TEXT] [--key KEY]

A bounded load test of spikeq serve (or any OpenAI-compatible server), Python's standard
library only: N concurrent clients each stream completions until R requests are done in all,
every request asking for exactly T tokens at temperature 0. Prints the aggregate generated
tokens/s over the wall time, the mean per-stream tokens/s (tokens after the first over the time
after the first), time to first token p50/p99, and the failed requests (exit status 1 if any)."""
import argparse, http.client, json, statistics, sys, threading, time, urllib.parse

ap = argparse.ArgumentParser()
ap.add_argument("url")
ap.add_argument("--streams", type=int, default=8)
ap.add_argument("--requests", type=int, default=32)
ap.add_argument("--max-tokens", type=int, default=64)
ap.add_argument("--prompt", default="The Linux kernel")
ap.add_argument("--key", default="none")
a = ap.parse_args()
u = urllib.parse.urlparse(a.url)
lock = threading.Lock()
state = {"next": 0, "errors": 0, "tokens": 0}
ttft, rates = [], []

def one(i):
    body = json.dumps({"prompt": f"{a.prompt} ({i})", "max_tokens": a.max_tokens, "temperature": 0, "stream": True,
                       "stream_options": {"include_usage": True}})
    t0 = time.perf_counter()
    first, n, done = 0.0, 0, False
    c = http.client.HTTPConnection(u.hostname, u.port or 80, timeout=600)
    c.request("POST", "/v1/completions", body, {"Content-Type": "application/json", "Authorization": "Bearer " + a.key})
    r = c.getresponse()
    if r.status != 200:
        r.read()
        return None
    for line in r:
        line = line.strip()
        if not line.startswith(b"data: "):
            continue
        d = line[6:]
        if d == b"[DONE]":
            done = True
            continue
        j = json.loads(d)
        if "error" in j:
            return None
        if j["choices"] and j["choices"][0].get("text") and not first:
            first = time.perf_counter()
        if j.get("usage"):
            n = j["usage"]["completion_tokens"]
    t1 = time.perf_counter()
    c.close()
    if not done or n != a.max_tokens or not first:
        return None
    return n, first - t0, (n - 1) / (t1 - first) if n > 1 and t1 > first else None

def worker():
    while True:
        with lock:
            i = state["next"]
            if i >= a.requests:
                return
            state["next"] += 1
        try:
            res = one(i)
        except Exception:
            res = None
        with lock:
            if res is None:
                state["errors"] += 1
                continue
            state["tokens"] += res[0]
            ttft.append(res[1] * 1000)
            if res[2]:
                rates.append(res[2])

w0 = time.perf_counter()
ts = [threading.Thread(target=worker) for _ in range(a.streams)]
for t in ts: t.start()
for t in ts: t.join()
wall = time.perf_counter() - w0
q = lambda v, p: sorted(v)[min(len(v) - 1, int(p * len(v)))] if v else float("nan")
print(f"streams {a.streams}, requests {a.requests}, {a.max_tokens} tokens each: aggregate {state['tokens'] / wall:.2f} t/s, "
      f"per stream {statistics.mean(rates) if rates else 0:.2f} t/s, TTFT p50 {q(ttft, 0.5):.0f} ms p99 {q(ttft, 0.99):.0f} ms, "
      f"errors {state['errors']}, wall {wall:.1f} s")
sys.exit(1 if state["errors"] else 0)
