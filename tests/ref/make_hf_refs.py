"""make_hf_refs.py — reference fixtures made with PyTorch + transformers + sentencepiece
(run on the device machine; no network). Writes tests/fixtures/:

  hf/<name>/        tiny random-initialised LlamaForCausalLM / MistralForCausalLM models,
                    saved with save_pretrained (F32, F16, BF16; one sharded), and
                    logits.json: transformers' FP32 CPU logits for a fixed batch of ids.
  sp_ids.json       sentencepiece ids (no BOS) of a few hundred varied strings under the
                    LLaMA-2 tokenizer.model.

usage: python3 tests/ref/make_hf_refs.py TOKENIZER_MODEL WIKI_LINES OUT_DIR
"""
import json, os, sys

import torch
import transformers
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

torch.manual_seed(0)
torch.backends.cuda.matmul.allow_tf32 = False
out = sys.argv[3]
IDS = [1, 17, 200, 3, 99, 250, 7, 7, 42, 128, 5, 201, 33, 64]

def base(**kw):
    d = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=4, vocab_size=256, max_position_embeddings=128, rms_norm_eps=1e-5,
             bos_token_id=1, eos_token_id=2, tie_word_embeddings=False)
    d.update(kw)
    return d

MODELS = [
    # name, class, config class, config, dtype, max shard size
    ("llama2-mha-f32", LlamaForCausalLM, LlamaConfig, base(rope_theta=10000.0), torch.float32, None),
    ("llama3-gqa-f32", LlamaForCausalLM, LlamaConfig,
     base(num_key_value_heads=2, num_hidden_layers=3, rope_theta=500000.0,
          rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0, "original_max_position_embeddings": 64}), torch.float32, None),
    ("llama3-gqa-bf16", LlamaForCausalLM, LlamaConfig,
     base(num_key_value_heads=2, rope_theta=500000.0,
          rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                        "high_freq_factor": 4.0, "original_max_position_embeddings": 64}), torch.bfloat16, None),
    ("mistral-gqa-f16-sharded", MistralForCausalLM, MistralConfig,
     base(num_key_value_heads=2, hidden_size=128, intermediate_size=256, sliding_window=None, rope_theta=1000000.0),
     torch.float16, "60KB"),
    ("smollm-tied-f16", LlamaForCausalLM, LlamaConfig,
     base(num_key_value_heads=1, tie_word_embeddings=True, num_hidden_layers=4, rope_theta=10000.0), torch.float16, None),
]

for name, cls, ccls, kw, dtype, shard in MODELS:
    cfg = ccls(**kw)
    model = cls(cfg).eval()
    with torch.no_grad():  # wider weights than the default init so logits are not all ~0
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.08)
            else:
                p.uniform_(0.8, 1.2)
    model = model.to(dtype)
    d = os.path.join(out, "hf", name)
    os.makedirs(d, exist_ok=True)
    args = {"safe_serialization": True}
    if shard:
        args["max_shard_size"] = shard
    model.save_pretrained(d, **args)
    # reference: the saved weights upcast to FP32, on the CPU (no TF32)
    ref = cls.from_pretrained(d, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        lg = ref(torch.tensor([IDS])).logits[0].float()
    json.dump({"ids": IDS, "dtype": str(dtype), "transformers": transformers.__version__,
               "logits": [[round(float(v), 7) for v in row] for row in lg]},
              open(os.path.join(d, "logits.json"), "w"))
    print(name, sorted(os.listdir(d)))

# sentencepiece reference ids
import sentencepiece as spm
sp = spm.SentencePieceProcessor(model_file=sys.argv[1])
S = ["", " ", "  ", "   ", "\t", "\n", "\n\n", " \n ", "Hello world", " Hello world", "Hello  world", "hello\tworld",
     "The quick brown fox jumps over the lazy dog.", "12345", "3.14159", "1,000,000", "2026-11-22", "x=1+2*3",
     "def f(x):\n    return x ** 2\n", "int main(void) { return 0; }", "for (i = 0; i < n; i++) {}", "    indented",
     "café", "naïve résumé", "Ελληνικά", "русский текст", "日本語のテキスト", "中文字符测试", "한국어", "עברית", "العربية",
     "emoji 😀🎉👍🏽", "🤖", "👨‍👩‍👧", "mixed 中文 and English", "tabs\tand\nnewlines", "trailing space ", " leading",
     "UPPER lower MiXeD", "don't won't can't", "e.g. i.e. etc.", "http://example.com/path?q=1&r=2", "a@b.c",
     "<s>", "</s>", "<unk>", "<0x0A>", "▁", "▁▁", "\u00a0nbsp", "zero\u200bwidth", "\r\n", "ﬁ ligature", "Å Å",
     "🙂" * 5, "a" * 50, " " * 16 + "x", "\n" * 5, "$%^&*()_+{}|:\"<>?", "`~!@#", "\\backslash\\", "tab\t\ttab"]
for i in range(64):
    S.append(" ".join(str(i * 7919 % (10 ** (1 + i % 6))) for _ in range(1 + i % 4)))
S += [l.rstrip("\n") for l in open(sys.argv[2], encoding="utf-8")][:200]
json.dump({"strings": S, "ids": [sp.encode(s) for s in S]}, open(os.path.join(out, "sp_ids.json"), "w"),
          ensure_ascii=False)
print("sp strings", len(S))
