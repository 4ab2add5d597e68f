#!/usr/bin/env python3
"""tokenizer_speed.py SPIKEQ TOKENIZER.model TOKENIZER.json GPT2.gguf TEXT [ROUNDS]

Tokenizing speed against HF tokenizers and sentencepiece, one thread each, over ROUNDS (3)
alternating rounds: LLaMA-2's SentencePiece tokenizer (tokenizer.model for sentencepiece and
spikeq, tokenizer.json for HF and spikeq) and GPT-2's byte-level BPE (llama.cpp's vocabulary
GGUF for spikeq; the same vocabulary and merges built into an HF tokenizer). spikeq is timed as
a whole process (`spikeq tokenize -m TOK -f TEXT`: start, loading, writing the ids), the Python
libraries as one encode() of the whole text. Prints token counts and whether the ids agree.
Needs the Python packages tokenizers and sentencepiece (run it where they are installed)."""
import os, struct, subprocess, sys, time

spikeq, spm_model, tok_json, gpt2, text_path = sys.argv[1:6]
rounds = int(sys.argv[6]) if len(sys.argv) > 6 else 3
env = dict(os.environ, OMP_NUM_THREADS="1")

def gguf_vocab(path):
    """The key-value section of a GGUF file (arrays of strings decoded)."""
    b = open(path, "rb").read()
    p = 8
    _, nkv = struct.unpack_from("<QQ", b, p)
    p += 16
    sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
    def s():
        nonlocal p
        n = struct.unpack_from("<Q", b, p)[0]
        p += 8
        v = b[p:p + n].decode("utf-8", "replace")
        p += n
        return v
    def val(t):
        nonlocal p
        if t == 8:
            return s()
        if t == 9:
            et, n = struct.unpack_from("<IQ", b, p)
            p += 12
            return [val(et) for _ in range(n)]
        v = b[p:p + sizes[t]]
        p += sizes[t]
        return v
    kv = {}
    for _ in range(nkv):
        k = s()
        t = struct.unpack_from("<I", b, p)[0]
        p += 4
        kv[k] = val(t)
    return kv

def spikeq_ids(tok):
    t0 = time.perf_counter()
    out = subprocess.run([spikeq, "tokenize", "-m", tok, "-f", text_path], env=env, capture_output=True, text=True)
    t = time.perf_counter() - t0
    if out.returncode:
        sys.exit(out.stderr)
    return t, [int(x) for x in out.stdout.split()]

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
import sentencepiece as spm
import tokenizers

text = open(text_path, encoding="utf-8").read()
hf = Tokenizer.from_file(tok_json)
sp = spm.SentencePieceProcessor(model_file=spm_model)
kv = gguf_vocab(gpt2)
toks, merges = kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.merges"]
bpe = Tokenizer(models.BPE({t: i for i, t in enumerate(toks)}, [tuple(m.split(" ", 1)) for m in merges]))
bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
bpe.decoder = decoders.ByteLevel()
print(f"tokenizers {tokenizers.__version__}, sentencepiece {spm.__version__}, {len(text.encode())} bytes")
for r in range(rounds):
    t0 = time.perf_counter(); h = hf.encode(text).ids; th = time.perf_counter() - t0
    t0 = time.perf_counter(); s = sp.encode(text); ts = time.perf_counter() - t0
    tm, m = spikeq_ids(spm_model)
    tj, j = spikeq_ids(tok_json)
    print(f"round {r}: SentencePiece: HF {th:.3f} s ({len(h)} tokens), sentencepiece {ts:.3f} s ({len(s)}), "
          f"spikeq {tm:.3f} s ({len(m)}, = sentencepiece: {m == s}), from tokenizer.json {tj:.3f} s (= : {j == m})")
    t0 = time.perf_counter(); g = bpe.encode(text).ids; tg = time.perf_counter() - t0
    tq, q = spikeq_ids(gpt2)
    print(f"round {r}: GPT-2 byte-level BPE: HF {tg:.3f} s ({len(g)} tokens), spikeq {tq:.3f} s ({len(q)}, = HF: {q == g})")
