"""make_eval_refs.py MODEL_DIR EVAL_DIR N OUT.jsonl — per-item log-likelihoods of the first N
items of every zero-shot task, computed with transformers (FP32) and the sentencepiece library,
the requests built as lm-evaluation-harness builds them (an implementation independent of
spikeq's, for tests/test_eval.sh). Run on a machine with PyTorch and transformers (the device
machine); no network needed.

Rules (EVAL_DIR/README.md): continuation = " " + choice; trailing whitespace of the context
moves to the continuation; continuation tokens = encode(context + continuation) after
len(encode(context)); the model sees BOS + context + continuation, the last max_len + 1 tokens
kept; a choice's score is the sum of its tokens' log-probabilities.
"""
import json
import sys

import sentencepiece
import torch
import transformers

model_dir, eval_dir, n_items, out_path = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
sp = sentencepiece.SentencePieceProcessor(model_file=f"{model_dir}/tokenizer.model")
dev = "cuda" if torch.cuda.is_available() else "cpu"
model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).to(dev).eval()
max_len = model.config.max_position_embeddings
bos = model.config.bos_token_id


def encode_pair(context, cont):
    n_spaces = len(context) - len(context.rstrip())
    if n_spaces > 0:
        cont = context[-n_spaces:] + cont
        context = context[:-n_spaces]
    whole = sp.encode(context + cont)
    ctx = sp.encode(context)
    return ctx, whole[len(ctx):]


@torch.no_grad()
def score(context, choice):
    ctx, cont = encode_pair(context, " " + choice)
    ids = ([bos] + ctx + cont)[-(max_len + 1):]
    inp = torch.tensor([ids[:-1]], device=dev)
    logits = model(inp).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)[-len(cont):]
    tgt = torch.tensor(cont, device=dev)
    ll = lp.gather(1, tgt[:, None])[:, 0].sum().item()
    greedy = bool((logits[-len(cont):].argmax(-1) == tgt).all().item())
    return ll, len(cont), greedy


def jsonl(name):
    with open(f"{eval_dir}/{name}") as f:
        return [json.loads(l) for l in f if l.strip()][:n_items]


def items():
    lines = open(f"{eval_dir}/hellaswag_val_full.txt").read().split("\n")
    for i in range(min(n_items, len(lines) // 6)):
        b = lines[6 * i: 6 * i + 6]
        yield "hellaswag", [(b[0], e) for e in b[2:6]], int(b[1])
    labels = open(f"{eval_dir}/piqa_valid-labels.lst").read().split()
    for i, d in enumerate(jsonl("piqa_valid.jsonl")):
        q = f"Question: {d['goal']}\nAnswer:"
        yield "piqa", [(q, d["sol1"]), (q, d["sol2"])], int(labels[i])
    for task, f in [("arc_easy", "arc_easy.jsonl"), ("arc_challenge", "arc_challenge.jsonl"),
                    ("openbookqa", "openbook_qa.jsonl"), ("copa", "copa.jsonl"), ("boolq", "boolq.jsonl")]:
        for d in jsonl(f):
            yield task, [(d["query"], c) for c in d["choices"]], d["gold"]
    for d in jsonl("winogrande.jsonl"):
        yield "winogrande", [(c, d["continuation"]) for c in d["context_options"]], d["gold"]
    for d in jsonl("lambada_openai.jsonl"):
        yield "lambada", [(d["context"], d["continuation"].strip())], 0


with open(out_path, "w") as out:
    idx = {}
    for task, reqs, gold in items():
        k = idx.get(task, 0)
        idx[task] = k + 1
        r = [score(c, x) for c, x in reqs]
        out.write(json.dumps({"task": task, "item": k, "gold": gold, "logprob": [round(a, 6) for a, _, _ in r],
                              "tokens": [b for _, b, _ in r], "greedy": [g for _, _, g in r]}) + "\n")
print("versions: torch", torch.__version__, "transformers", transformers.__version__,
      "sentencepiece", sentencepiece.__version__, "device", dev)
