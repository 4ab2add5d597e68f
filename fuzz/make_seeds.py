"""make_seeds.py — small, valid seed inputs for the fuzz targets (fuzz/corpus/<target>/).

Seeds are kept tiny (a 1-layer, dim-8 model) so that libFuzzer's mutations land on headers,
counts and offsets rather than on weight bytes. Uses only the standard library and
build/spikeq (for the .spq seeds, written by spikeq itself).

usage: python3 fuzz/make_seeds.py   (from the repository root, after `make`)
"""
import json, os, random, struct, subprocess, tempfile

random.seed(1)
ROOT = "fuzz/corpus"
D, H, L, NH, NKV, V = 8, 16, 1, 2, 1, 24
HD = D // NH


def f16(x):
    return struct.pack("<e", x)


def tensors():
    shapes = {"model.embed_tokens.weight": (V, D), "model.norm.weight": (D,)}
    for l in range(L):
        p = f"model.layers.{l}."
        shapes.update({p + "self_attn.q_proj.weight": (NH * HD, D), p + "self_attn.k_proj.weight": (NKV * HD, D),
                       p + "self_attn.v_proj.weight": (NKV * HD, D), p + "self_attn.o_proj.weight": (D, NH * HD),
                       p + "mlp.gate_proj.weight": (H, D), p + "mlp.up_proj.weight": (H, D),
                       p + "mlp.down_proj.weight": (D, H), p + "input_layernorm.weight": (D,),
                       p + "post_attention_layernorm.weight": (D,)})
    out = {}
    for k, s in shapes.items():
        n = 1
        for d in s:
            n *= d
        vals = [1.0] * n if "norm" in k else [random.uniform(-0.5, 0.5) for _ in range(n)]
        out[k] = (s, vals)
    return out


CONFIG = {"architectures": ["LlamaForCausalLM"], "hidden_size": D, "intermediate_size": H,
          "num_hidden_layers": L, "num_attention_heads": NH, "num_key_value_heads": NKV,
          "vocab_size": V, "max_position_embeddings": 64, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
          "bos_token_id": 1, "eos_token_id": 2, "tie_word_embeddings": True, "torch_dtype": "float16"}


def safetensors(ts):
    hdr, blob = {}, b""
    for k, (s, vals) in ts.items():
        b = b"".join(f16(v) for v in vals)
        hdr[k] = {"dtype": "F16", "shape": list(s), "data_offsets": [len(blob), len(blob) + len(b)]}
        blob += b
    h = json.dumps(hdr).encode()
    return struct.pack("<Q", len(h)) + h + blob


def gguf(ts, vocab=None, merges=None, model="llama"):
    def s(x):
        x = x.encode() if isinstance(x, str) else x
        return struct.pack("<Q", len(x)) + x
    kv = [("general.architecture", 8, s("llama")), ("llama.embedding_length", 4, struct.pack("<I", D)),
          ("llama.feed_forward_length", 4, struct.pack("<I", H)), ("llama.block_count", 4, struct.pack("<I", L)),
          ("llama.attention.head_count", 4, struct.pack("<I", NH)),
          ("llama.attention.head_count_kv", 4, struct.pack("<I", NKV)),
          ("llama.context_length", 4, struct.pack("<I", 64)),
          ("llama.attention.layer_norm_rms_epsilon", 6, struct.pack("<f", 1e-5))]
    if vocab:
        kv.append(("tokenizer.ggml.model", 8, s(model)))
        kv.append(("tokenizer.ggml.tokens", 9, struct.pack("<IQ", 8, len(vocab)) + b"".join(s(t) for t in vocab)))
        if model == "llama":
            kv.append(("tokenizer.ggml.scores", 9, struct.pack("<IQ", 6, len(vocab)) +
                       b"".join(struct.pack("<f", -i) for i in range(len(vocab)))))
        else:
            kv.append(("tokenizer.ggml.pre", 8, s("gpt-2")))
            kv.append(("tokenizer.ggml.merges", 9, struct.pack("<IQ", 8, len(merges)) + b"".join(s(m) for m in merges)))
    ts = ts or {}
    out = b"GGUF" + struct.pack("<IQQ", 3, len(ts), len(kv))
    for k, t, v in kv:
        out += s(k) + struct.pack("<I", t) + v
    off, datas = 0, []
    gname = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "input_layernorm": "attn_norm", "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k",
             "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output", "post_attention_layernorm": "ffn_norm",
             "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for k, (sh, vals) in ts.items():
        if k in gname:
            k = gname[k]
        else:
            parts = k.split(".")  # model.layers.N.<a>.<b>.weight or model.layers.N.<a>.weight
            rest = ".".join(parts[3:-1])
            k = f"blk.{parts[2]}.{gname[rest]}.weight"
        ne = list(reversed(sh))
        out += s(k) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne)
        out += struct.pack("<IQ", 1, off)  # F16
        b = b"".join(f16(v) for v in vals)
        datas.append(b)
        off += (len(b) + 31) // 32 * 32
    out += b"\0" * ((32 - len(out) % 32) % 32)
    for b in datas:
        out += b + b"\0" * ((32 - len(b) % 32) % 32)
    return out


def put(target, name, data):
    os.makedirs(f"{ROOT}/{target}", exist_ok=True)
    open(f"{ROOT}/{target}/{name}", "wb").write(data if isinstance(data, bytes) else data.encode())


def byte_vocab():
    """GPT-2's byte-to-unicode alphabet plus a few merges."""
    bs = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    alpha = [chr(c) for c in cs]
    merges = ["Ġ t", "h e", "Ġt he", "i n", "e r", "Ġ a"]
    return alpha + ["Ġt", "he", "Ġthe", "in", "er", "Ġa", "<|endoftext|>"], merges


def main():
    ts = tensors()
    spm_vocab = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(4)] + ["▁", "a", "b", "c", "▁a", "ab",
                                                                                   "▁ab", "d", "e", "▁d", "de", "x", "y", "z", "▁x", "ba", "▁b"]
    bvocab, bmerges = byte_vocab()
    cfg = json.dumps(CONFIG).encode()
    st = safetensors(ts)
    put("hf", "tiny-f16", struct.pack("<H", len(cfg)) + cfg + st)
    put("gguf", "tiny-llama-spm", gguf(ts, spm_vocab))
    put("gguf", "vocab-only-gpt2", gguf(None, bvocab, bmerges, "gpt2"))
    tok = {"version": "1.0", "added_tokens": [{"id": len(bvocab) - 1, "content": "<|endoftext|>", "special": True}],
           "normalizer": None,
           "pre_tokenizer": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                                   {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}]},
           "model": {"type": "BPE", "ignore_merges": False,
                     "vocab": {t: i for i, t in enumerate(bvocab[:-1])}, "merges": bmerges}}
    put("tokjson", "bytelevel-digits.json", json.dumps(tok, ensure_ascii=False))
    tok["pre_tokenizer"] = {"type": "Split", "pattern": {"Regex": "\\p{N}{1,3}| ?\\p{L}+|\\s+"}, "behavior": "Isolated", "invert": False}
    tok["model"]["merges"] = [m.split(" ") for m in bmerges]
    tok["model"]["ignore_merges"] = True
    put("tokjson", "split-pairs.json", json.dumps(tok, ensure_ascii=False))
    for i, text in enumerate(["\x00Hello world, it's 2026!", "\x01 the <|endoftext|> </s> a b", "\x02日本語 🙂\n\n  x",
                              "\x03\xff\xfe bytes \xc3("]):
        put("encode", f"text{i}", text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text)
    os.makedirs(f"{ROOT}/spq", exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        open(f"{d}/config.json", "wb").write(cfg)
        open(f"{d}/model.safetensors", "wb").write(st)
        subprocess.run(["build/spikeq", "convert", d, "-o", f"{ROOT}/spq/tiny-f16.spq", "--outtype", "f16"], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["build/spikeq", "quantize", d, "-o", f"{ROOT}/spq/tiny-w8a8.spq", "--scheme", "w8a8"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


main()
