/* spikeq.h — the public C API of spikeq, a CPU inference runtime for LLaMA-family models
 * with W8A8 per-tensor INT8 kernels and profiler-chosen FP16/FP8 spike layers.
 *
 * A model (weights, tokenizer; read-only, shareable between contexts and threads) is
 * opened once; a context holds what one worker needs to run it: threads, kernel choice,
 * activations and the KV caches of up to n_seq_max sequences. A batch of tokens may mix
 * sequences at any positions: every token carries its sequence, its position and whether
 * its logits are wanted, so one forward pass serves many sequences (their weights read once),
 * and a sequence's results are the same whatever it is batched with.
 *
 * Errors: functions return NULL or a negative value; spikeq_model_load and
 * spikeq_context_new write a one-line message into the caller's buffer, the others leave it
 * for spikeq_context_error. Nothing here exits or prints. A context is used by one thread at
 * a time. */
#ifndef SPIKEQ_H
#define SPIKEQ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Exported from libspikeq.so (the library is built with hidden visibility otherwise). */
#if defined(__GNUC__)
#define SPIKEQ_API __attribute__((visibility("default")))
#else
#define SPIKEQ_API
#endif

typedef int32_t spikeq_token;
typedef struct spikeq_model spikeq_model;
typedef struct spikeq_context spikeq_context;
typedef struct spikeq_sampler spikeq_sampler;

/* ---- models ---- */

/* Open a model: a spikeq .spq, a Hugging Face directory, a GGUF file or a llama2.c .bin.
 * Returns NULL and a message in err (errlen bytes, may be 0) on failure. */
SPIKEQ_API spikeq_model *spikeq_model_load(const char *path, char *err, size_t errlen);
/* Wait for the check of a .spq model's checksums, which runs in the background from load
 * (loading maps the file and reads none of it); 0, or -1 with the corrupt tensor in err.
 * 0 at once for formats that store none. */
SPIKEQ_API int spikeq_model_verify(const spikeq_model *model, char *err, size_t errlen);
/* Free a model; every context made from it must be freed first. */
SPIKEQ_API void spikeq_model_free(spikeq_model *model);
/* Vocabulary size (logits per token). */
SPIKEQ_API int spikeq_n_vocab(const spikeq_model *model);
/* The context length the model was trained for. */
SPIKEQ_API int spikeq_n_ctx_train(const spikeq_model *model);
/* Beginning- and end-of-sequence token ids. */
SPIKEQ_API spikeq_token spikeq_token_bos(const spikeq_model *model);
SPIKEQ_API spikeq_token spikeq_token_eos(const spikeq_model *model);
/* One line describing the model (config and quantization plan) into buf; returns its length. */
SPIKEQ_API int spikeq_model_desc(const spikeq_model *model, char *buf, size_t len);

/* ---- text ---- */

/* Token ids of text[0..len) into tokens[0..max): BOS first when add_bos; control pieces
 * written in the text (e.g. "</s>") parsed when parse_special. Returns the count, or
 * -(the count needed) when max is too small, or INT32_MIN when the model has no tokenizer. */
SPIKEQ_API int32_t spikeq_tokenize(const spikeq_model *model, const char *text, int32_t len, spikeq_token *tokens, int32_t max,
                        int add_bos, int parse_special);
/* The text of token (after prev, -1 at the start: SentencePiece drops the space after BOS)
 * into buf[0..len) (not NUL-terminated); returns its length, or -(needed) if len is too small. */
SPIKEQ_API int32_t spikeq_token_to_piece(const spikeq_model *model, spikeq_token prev, spikeq_token token, char *buf, int32_t len);

/* ---- chat ---- */

typedef struct {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content;
} spikeq_chat_message;

/* The chat format the model's files name: "llama2", "llama3", "mistral", "chatml" or
 * "zephyr" (recognised from its chat template), or NULL when they name none spikeq knows. */
SPIKEQ_API const char *spikeq_model_chat_template(const spikeq_model *model);
/* msgs[0..n) as prompt text in format tmpl (NULL: the model's, else "chatml", as llama.cpp
 * falls back) into buf[0..len), NUL-terminated, ending with the assistant's header when
 * add_assistant; tokenize it with add_bos and parse_special. Returns its length, -(needed)
 * when len is too small, or INT32_MIN for an unknown format or role. */
SPIKEQ_API int32_t spikeq_chat_apply(const spikeq_model *model, const char *tmpl, const spikeq_chat_message *msgs,
                                     int32_t n, int add_assistant, char *buf, int32_t len);
/* The text that ends an assistant turn in format tmpl (NULL as above): "</s>", "<|eot_id|>", ... */
SPIKEQ_API const char *spikeq_chat_eot(const spikeq_model *model, const char *tmpl);

/* ---- contexts ---- */

/* KV cache in IEEE half (half the memory and attention reads; perplexity within 0.1% of FP32)
 * or FP32. */
typedef enum { SPIKEQ_KV_F16 = 0, SPIKEQ_KV_F32 = 1 } spikeq_kv_type;

typedef struct {
    int n_threads;   /* threads of each forward pass; 0: every core. More than the cores are capped to them */
    int n_ctx;       /* positions per sequence; 0: the model's trained length */
    int n_batch;     /* the most tokens of one spikeq_decode; default 512 */
    int n_seq_max;   /* sequences with a KV cache each; default 1 */
    const char *isa; /* kernels: "scalar", "avx2", "avxvnni", "avx512", "avx512bf16", "neon", "neonplain"; NULL: the best the CPU has */
    spikeq_kv_type kv_type; /* the KV cache's precision; default SPIKEQ_KV_F16 */
} spikeq_context_params;

/* The defaults above. */
SPIKEQ_API spikeq_context_params spikeq_context_default_params(void);
/* A context for model (which must outlive it). Returns NULL and a message in err when the
 * parameters are out of range, the ISA is not supported here, or memory runs out. */
SPIKEQ_API spikeq_context *spikeq_context_new(spikeq_model *model, const spikeq_context_params *params, char *err, size_t errlen);
SPIKEQ_API void spikeq_context_free(spikeq_context *ctx);
/* The message of the context's last failure ("" when none). */
SPIKEQ_API const char *spikeq_context_error(const spikeq_context *ctx);
/* The threads and positions per sequence the context really has (after capping). */
SPIKEQ_API int spikeq_n_threads(const spikeq_context *ctx);
SPIKEQ_API int spikeq_n_ctx(const spikeq_context *ctx);
/* The kernel table in use ("avx512", ...). */
SPIKEQ_API const char *spikeq_isa(const spikeq_context *ctx);

/* ---- batches ---- */

/* n_tokens tokens; token i is tokens[i] of sequence seq_id[i] at position pos[i], and its
 * logits are kept when logits[i] is non-zero. */
typedef struct {
    int32_t n_tokens;
    spikeq_token *token;
    int32_t *pos;
    int32_t *seq_id;
    int8_t *logits;
} spikeq_batch;

/* A batch with room for n_max tokens (n_tokens 0); free with spikeq_batch_free. */
SPIKEQ_API spikeq_batch spikeq_batch_init(int32_t n_max);
SPIKEQ_API void spikeq_batch_free(spikeq_batch *batch);
/* Append one token to a batch made by spikeq_batch_init with room for it. */
SPIKEQ_API void spikeq_batch_add(spikeq_batch *batch, spikeq_token token, int32_t pos, int32_t seq_id, int logits);

/* Run a batch: each token's key and value enter its sequence's cache at its position. A
 * token's position must be at most its sequence's length (spikeq_kv_len) plus the tokens
 * before it in the batch (no gaps). Returns 0, or -1 (spikeq_context_error says why). */
SPIKEQ_API int spikeq_decode(spikeq_context *ctx, const spikeq_batch *batch);
/* The n_vocab logits of token i of the last batch, which must have asked for them; NULL otherwise. */
SPIKEQ_API const float *spikeq_get_logits(const spikeq_context *ctx, int32_t i);

/* ---- KV caches ---- */

/* Positions held for seq (the next position to decode). */
SPIKEQ_API int32_t spikeq_kv_len(const spikeq_context *ctx, int32_t seq);
/* Forget seq's positions (seq < 0: every sequence). */
SPIKEQ_API void spikeq_kv_clear(spikeq_context *ctx, int32_t seq);
/* Keep only seq's first n positions. Returns 0, or -1 when n exceeds its length. */
SPIKEQ_API int spikeq_kv_truncate(spikeq_context *ctx, int32_t seq, int32_t n);
/* Copy src's first n positions into dst, which then holds those n (a shared prompt
 * prefilled once). Returns 0, or -1 when out of range. */
SPIKEQ_API int spikeq_kv_copy(spikeq_context *ctx, int32_t src, int32_t dst, int32_t n);

/* ---- sampling ---- */

typedef struct {
    float temp;           /* 0: greedy */
    int32_t top_k;        /* 0: off */
    float top_p, min_p;   /* 1, 0: off */
    float repeat_penalty; /* 1: off */
    int32_t repeat_last_n;
    uint64_t seed;        /* UINT64_MAX: from the clock */
} spikeq_sampler_params;

/* llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05, no repetition penalty. */
SPIKEQ_API spikeq_sampler_params spikeq_sampler_default_params(void);
/* A sampler (NULL when a parameter is out of range or memory runs out). */
SPIKEQ_API spikeq_sampler *spikeq_sampler_new(const spikeq_sampler_params *params);
SPIKEQ_API void spikeq_sampler_free(spikeq_sampler *s);
/* The next token from n_vocab logits (not modified); it is remembered for the penalty. */
SPIKEQ_API spikeq_token spikeq_sampler_sample(spikeq_sampler *s, const float *logits, int32_t n_vocab);

#ifdef __cplusplus
}
#endif

#endif
