#!/usr/bin/env python3
"""hf_to_gguf.py - an F16 GGUF of a LLaMA checkpoint, for llama.cpp's tools to quantize.

  python3 bench/hf_to_gguf.py HF_DIR OUT.gguf           # config.json, model.safetensors, tokenizer.model
  python3 bench/hf_to_gguf.py --random tinyllama-1.1b OUT.gguf TOKENIZER.model

Writes what llama.cpp's convert_hf_to_gguf.py writes for a LLaMA: the llama.* keys, the
SentencePiece vocabulary (tokens, scores, types), every weight in F16 (norms in F32), q/k rows
in llama.cpp's interleaved RoPE order. --random fills TinyLlama-1.1B's shapes with N(0, 0.02)
weights (what `spikeq bench --synthetic` and llama-bench compare on). Needs numpy (Debian's
python3-numpy) and gguf-py on PYTHONPATH (llama.cpp's gguf-py folder)."""
import json
import struct
import sys

import numpy as np
import gguf

SHAPES = {"tinyllama-1.1b": dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                                 num_attention_heads=32, num_key_value_heads=4, vocab_size=32000,
                                 max_position_embeddings=2048, rms_norm_eps=1e-5, rope_theta=10000.0,
                                 tie_word_embeddings=False)}


def sp_pieces(path):
    """(piece, score, type) of a SentencePiece model file: ModelProto field 1, each a
    SentencePiece {1: piece, 2: score, 3: type}."""
    b = open(path, "rb").read()

    def varint(p):
        v = s = 0
        while True:
            c = b[p]
            p += 1
            v |= (c & 127) << s
            s += 7
            if c < 128:
                return v, p

    out, p = [], 0
    while p < len(b):
        key, p = varint(p)
        f, wt = key >> 3, key & 7
        if wt == 2:
            n, p = varint(p)
            if f == 1:
                q, end, piece, score, typ = p, p + n, b"", 0.0, 1
                while q < end:
                    k2, q = varint(q)
                    if k2 >> 3 == 1:
                        m, q = varint(q)
                        piece = b[q:q + m]
                        q += m
                    elif k2 >> 3 == 2:
                        score = struct.unpack("<f", b[q:q + 4])[0]
                        q += 4
                    elif k2 >> 3 == 3:
                        typ, q = varint(q)
                    else:
                        raise ValueError("unexpected SentencePiece field")
                out.append((piece, score, typ))
            p += n
        elif wt == 0:
            _, p = varint(p)
        elif wt == 5:
            p += 4
        elif wt == 1:
            p += 8
        else:
            raise ValueError("unexpected protobuf wire type")
    return out


def safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    head = json.loads(b[8:8 + n])
    base = 8 + n
    dt = {"F16": np.float16, "F32": np.float32, "BF16": None}
    for name, t in head.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        raw = b[base + lo:base + hi]
        if t["dtype"] == "BF16":
            a = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            a = np.frombuffer(raw, dt[t["dtype"]])
        yield name, a.reshape(t["shape"])


def interleave(w, heads):
    """HF's rotate-half q/k rows -> llama.cpp's interleaved pairs (convert_hf_to_gguf's permute)."""
    r = w.shape[0]
    return w.reshape(heads, 2, r // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_name(n):
    n = n.replace("model.embed_tokens.weight", "token_embd.weight").replace("model.norm.weight", "output_norm.weight")
    n = n.replace("lm_head.weight", "output.weight").replace("model.layers.", "blk.")
    for a, b in [("self_attn.q_proj", "attn_q"), ("self_attn.k_proj", "attn_k"), ("self_attn.v_proj", "attn_v"),
                 ("self_attn.o_proj", "attn_output"), ("mlp.gate_proj", "ffn_gate"), ("mlp.up_proj", "ffn_up"),
                 ("mlp.down_proj", "ffn_down"), ("input_layernorm", "attn_norm"),
                 ("post_attention_layernorm", "ffn_norm")]:
        n = n.replace(a, b)
    return n


def main():
    a = sys.argv[1:]
    if a and a[0] == "--random":
        cfg, out, tokpath = dict(SHAPES[a[1]]), a[2], a[3]
        rng = np.random.default_rng(1)
        D, H, L, V = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
        kv = D // cfg["num_attention_heads"] * cfg["num_key_value_heads"]

        def tensors():
            yield "model.embed_tokens.weight", rng.normal(0, 0.02, (V, D)).astype(np.float16)
            for l in range(L):
                p = f"model.layers.{l}."
                for n, s in [("self_attn.q_proj", (D, D)), ("self_attn.k_proj", (kv, D)), ("self_attn.v_proj", (kv, D)),
                             ("self_attn.o_proj", (D, D)), ("mlp.gate_proj", (H, D)), ("mlp.up_proj", (H, D)),
                             ("mlp.down_proj", (D, H))]:
                    yield p + n + ".weight", rng.normal(0, 0.02, s).astype(np.float16)
                yield p + "input_layernorm.weight", np.ones(D, np.float32)
                yield p + "post_attention_layernorm.weight", np.ones(D, np.float32)
            yield "model.norm.weight", np.ones(D, np.float32)
            yield "lm_head.weight", rng.normal(0, 0.02, (V, D)).astype(np.float16)
    else:
        d, out = a[0], a[1]
        cfg = json.load(open(d + "/config.json"))
        tokpath = d + "/tokenizer.model"

        def tensors():
            return safetensors(d + "/model.safetensors")

    heads, kvh = cfg["num_attention_heads"], cfg.get("num_key_value_heads", cfg["num_attention_heads"])
    w = gguf.GGUFWriter(out, "llama")
    w.add_name("spikeq-bench")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(heads)
    w.add_head_count_kv(kvh)
    w.add_rope_dimension_count(cfg["hidden_size"] // heads)
    w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
    w.add_rope_freq_base(cfg.get("rope_theta", 10000.0))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    pieces = sp_pieces(tokpath)
    w.add_tokenizer_model("llama")
    w.add_token_list([p for p, _, _ in pieces])
    w.add_token_scores([s for _, s, _ in pieces])
    w.add_token_types([t for _, _, t in pieces])
    w.add_bos_token_id(cfg.get("bos_token_id", 1))
    w.add_eos_token_id(cfg.get("eos_token_id", 2))
    w.add_add_bos_token(True)
    tied = cfg.get("tie_word_embeddings", False)
    for name, t in tensors():
        if tied and name == "lm_head.weight":
            continue
        if name.endswith("q_proj.weight"):
            t = interleave(t, heads)
        elif name.endswith("k_proj.weight"):
            t = interleave(t, kvh)
        t = t.astype(np.float32 if t.ndim == 1 else np.float16)
        w.add_tensor(gguf_name(name), np.ascontiguousarray(t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    main()
