// serve_load.mjs URL [--streams N] [--requests R] [--max-tokens T] [--prompt TEXT] [--key KEY]
// A bounded load test of spikeq serve (or any OpenAI-compatible server): N concurrent
// clients each stream completions until R requests are done in all, every request asking
// for exactly T tokens (temperature 0, ignore nothing: the server stops at T). Prints the
// aggregate generated tokens/s over the wall time, the mean per-stream tokens/s (tokens after
// the first / time after the first), time to first token p50/p99, and the failed requests.
// Node 20+ (fetch), no packages.
const args = process.argv.slice(2);
const url = args[0];
const opt = (name, def) => { const i = args.indexOf(name); return i > 0 ? args[i + 1] : def; };
const streams = +opt("--streams", 8), total = +opt("--requests", 32), maxTokens = +opt("--max-tokens", 64);
const prompt = opt("--prompt", "The Linux kernel"), key = opt("--key", "none");
if (!url || !(streams > 0) || !(total > 0)) { console.error("usage: serve_load.mjs URL [--streams N] [--requests R] [--max-tokens T]"); process.exit(2); }

let started = 0, errors = 0, tokens = 0;
const ttft = [], rates = [];
async function one(i) {
  const t0 = performance.now();
  let first = 0, n = 0;
  try {
    const r = await fetch(url + "/v1/completions", {
      method: "POST", headers: { "Content-Type": "application/json", Authorization: "Bearer " + key },
      body: JSON.stringify({ prompt: `${prompt} (${i})`, max_tokens: maxTokens, temperature: 0, stream: true,
                             stream_options: { include_usage: true } }),
    });
    if (r.status !== 200) { errors++; await r.text(); return; }
    const dec = new TextDecoder();
    let buf = "", done = false;
    for await (const part of r.body) {
      buf += dec.decode(part, { stream: true });
      let k;
      while ((k = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, k); buf = buf.slice(k + 2);
        if (!ev.startsWith("data: ")) continue;
        const d = ev.slice(6);
        if (d === "[DONE]") { done = true; continue; }
        const j = JSON.parse(d);
        if (j.error) { errors++; return; }
        if (j.choices.length && j.choices[0].text && !first) first = performance.now();
        if (j.usage) n = j.usage.completion_tokens;
      }
    }
    const t1 = performance.now();
    if (!done || n !== maxTokens || !first) { errors++; return; }
    tokens += n;
    ttft.push(first - t0);
    if (n > 1 && t1 > first) rates.push((n - 1) / ((t1 - first) / 1000));
  } catch (e) {
    errors++;
  }
}
async function worker() { while (started < total) await one(started++); }

const w0 = performance.now();
await Promise.all(Array.from({ length: streams }, worker));
const wall = (performance.now() - w0) / 1000;
const q = (a, p) => { const s = [...a].sort((x, y) => x - y); return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN; };
const mean = rates.reduce((a, b) => a + b, 0) / (rates.length || 1);
console.log(`streams ${streams}, requests ${total}, ${maxTokens} tokens each: ` +
            `aggregate ${(tokens / wall).toFixed(2)} t/s, per stream ${mean.toFixed(2)} t/s, ` +
            `TTFT p50 ${q(ttft, 0.5).toFixed(0)} ms p99 ${q(ttft, 0.99).toFixed(0)} ms, errors ${errors}, wall ${wall.toFixed(1)} s`);
process.exit(errors ? 1 : 0);
