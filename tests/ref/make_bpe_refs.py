"""make_bpe_refs.py — byte-level BPE reference ids from the HF `tokenizers` library (run on the
device machine; no network). Writes tests/fixtures/bpe_ids.json.

The GPT-2 vocabulary and merges come from llama.cpp's ggml-vocab-gpt-2.gguf (read here with a
minimal GGUF parser). Three tokenizers are built from them with `tokenizers`, one per
pre-tokenizer family spikeq supports:
  gpt2    ByteLevel(use_regex=True)                                    (GPT-2)
  smollm  Sequence[Digits(individual_digits=True), ByteLevel]          (SmolLM, StarCoder)
  llama3  Sequence[Split(LLaMA-3 regex, isolated), ByteLevel(no regex)], ignore_merges (LLaMA-3)
For each, the fixture keeps the tokenizer.json exactly as `tokenizers` serialises it but with
model.vocab and model.merges emptied (the test refills them from the same GGUF), and the ids
(no special tokens added) of every test string.

usage: python3 tests/ref/make_bpe_refs.py GPT2_GGUF SP_IDS_JSON GPT2_INP OUT_JSON
"""
import json, struct, sys

import tokenizers
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
          r"\s*[\r\n]+|\s+(?!\S)|\s+")


def gguf_vocab(path):
    b = open(path, "rb").read()
    assert b[:4] == b"GGUF"
    _, nt, nkv = struct.unpack_from("<IQQ", b, 4)
    p = 24
    size = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}

    def s(p):
        n, = struct.unpack_from("<Q", b, p)
        return b[p + 8:p + 8 + n].decode("utf-8"), p + 8 + n

    kv = {}
    for _ in range(nkv):
        k, p = s(p)
        t, = struct.unpack_from("<I", b, p); p += 4
        if t == 8:
            v, p = s(p)
        elif t == 9:
            et, n = struct.unpack_from("<IQ", b, p); p += 12
            if et == 8:
                v = []
                for _ in range(n):
                    x, p = s(p); v.append(x)
            else:
                v = None; p += n * size[et]
        else:
            v = b[p:p + size[t]]; p += size[t]
        kv[k] = v
    return kv["tokenizer.ggml.tokens"], kv["tokenizer.ggml.merges"]


def build(kind, vocab, merges):
    tk = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=(kind == "llama3")))
    bl = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=(kind != "llama3"))
    if kind == "gpt2":
        tk.pre_tokenizer = bl
    elif kind == "smollm":
        tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), bl])
    else:
        tk.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Split(Regex(LLAMA3), behavior="isolated", invert=False), bl])
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens(["<|endoftext|>"])
    return tk


def main():
    tokens, merges = gguf_vocab(sys.argv[1])
    vocab = {t: i for i, t in enumerate(tokens)}
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    strings = json.load(open(sys.argv[2]))["strings"]
    strings += [x for x in open(sys.argv[3], encoding="utf-8").read().split("\n__ggml_vocab_test__\n") if x]
    strings = [x for x in strings if "<|endoftext|>" not in x]
    out = {"tokenizers_version": tokenizers.__version__, "strings": strings, "variants": {}}
    for kind in ("gpt2", "smollm", "llama3"):
        tk = build(kind, vocab, pairs)
        skel = json.loads(tk.to_str())
        skel["model"]["vocab"] = {}
        skel["model"]["merges"] = []
        ids = [tk.encode(x, add_special_tokens=False).ids for x in strings]
        rt = sum(tk.decode(i, skip_special_tokens=False) == x for i, x in zip(ids, strings))
        print(f"{kind}: {len(strings)} strings, {sum(map(len, ids))} ids, round trip {rt}/{len(strings)}")
        out["variants"][kind] = {"skeleton": skel, "ids": ids}
    json.dump(out, open(sys.argv[4], "w"), ensure_ascii=False)


main()
