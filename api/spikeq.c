/* spikeq.c — the public API (include/spikeq.h) over the importers and the runtime: a model is
 * a checkpoint and its packed linears; a context is a multi-sequence state with its kernel
 * table, thread count and each sequence's length. */
#include "include/spikeq.h"

#include <limits.h>
#include <stddef.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "kernels/kernels.h"
#include "format/open.h"
#include "tok/chat.h"
#include "format/ckpt.h"
#include "runtime/model.h"
#include "runtime/sampler.h"

struct spikeq_model {
    spq_ckpt c;
    spq_model m;   /* packed for the trained context: every context shares these weights */
    int piece_max; /* bytes of the longest tokenizer piece */
};

struct spikeq_context {
    spikeq_model *model;
    spq_state s;
    int n_ctx;
    int32_t *len;          /* [n_seq_max] positions held per sequence */
    int32_t *held;         /* [n_seq_max] scratch: the lengths as a batch is checked */
    signed char *want;     /* [n_batch] the logits flags as the runtime reads them */
    int32_t *row;          /* [n_batch] batch index -> logits row, -1 when none */
    int n_last;            /* tokens in the last batch */
    char err[512];
};

struct spikeq_sampler {
    spq_sampler s;
};

static void put_err(char *err, size_t n, const char *fmt, ...)
{
    if (!err || !n) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, n, fmt, ap);
    va_end(ap);
}

static int ctx_fail(spikeq_context *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    va_end(ap);
    return -1;
}

spikeq_model *spikeq_model_load(const char *path, char *err, size_t errlen)
{
    spikeq_model *md = calloc(1, sizeof *md);
    spq_err e;
    if (!md) { put_err(err, errlen, "out of memory"); return NULL; }
    if (!path) { put_err(err, errlen, "no model path"); free(md); return NULL; }
    if (spq_open(path, &md->c, &e)) {
        put_err(err, errlen, "%s", e.msg);
        free(md);
        return NULL;
    }
    if (md->c.n == 0) {
        put_err(err, errlen, "%s: no weights (vocabulary-only file)", path);
        spq_ckpt_free(&md->c);
        free(md);
        return NULL;
    }
    if (spq_model_init(&md->m, &md->c, 0, &e)) {
        put_err(err, errlen, "%s", e.msg);
        spq_ckpt_free(&md->c);
        free(md);
        return NULL;
    }
    for (int i = 0; i < md->c.tok.n_vocab; i++) {
        int l = (int)strlen(md->c.tok.pieces[i]);
        md->piece_max = l > md->piece_max ? l : md->piece_max;
    }
    return md;
}

int spikeq_model_verify(const spikeq_model *md, char *err, size_t errlen)
{
    spq_err e;
    if (!spq_ckpt_verify(&md->c, &e)) return 0;
    put_err(err, errlen, "%s", e.msg);
    return -1;
}

void spikeq_model_free(spikeq_model *md)
{
    if (!md) return;
    spq_model_free(&md->m);
    spq_ckpt_free(&md->c);
    free(md);
}

int spikeq_n_vocab(const spikeq_model *md) { return md->c.cfg.vocab_size; }
int spikeq_n_ctx_train(const spikeq_model *md) { return md->c.cfg.max_seq; }
spikeq_token spikeq_token_bos(const spikeq_model *md) { return md->c.cfg.bos_id; }
spikeq_token spikeq_token_eos(const spikeq_model *md) { return md->c.cfg.eos_id; }

int spikeq_model_desc(const spikeq_model *md, char *buf, size_t len)
{
    const spq_config *p = &md->c.cfg;
    int n = snprintf(buf, len, "llama, %d layers, dim %d, hidden %d, heads %d/%d, vocab %d, ctx %d, %s", p->n_layers, p->dim,
                     p->hidden_dim, p->n_heads, p->n_kv_heads, p->vocab_size, p->max_seq,
                     md->c.plan_json ? "quantized (spikeq plan)" : "unquantized");
    return n < 0 ? 0 : n;
}

int32_t spikeq_tokenize(const spikeq_model *md, const char *text, int32_t len, spikeq_token *tokens, int32_t max,
                        int add_bos, int parse_special)
{
    if (!md->c.tok.n_vocab) return INT32_MIN;
    if (len < 0) len = (int32_t)strlen(text);
    long n = spq_tok_encode(&md->c.tok, text, (size_t)len, add_bos, parse_special, tokens, max);
    if (n < 0) return INT32_MIN;
    return n > max ? -(int32_t)n : (int32_t)n;
}

const char *spikeq_model_chat_template(const spikeq_model *md) { return md->c.tok.chat[0] ? md->c.tok.chat : NULL; }

static const char *chat_name(const spikeq_model *md, const char *tmpl)
{
    return tmpl ? tmpl : md->c.tok.chat[0] ? md->c.tok.chat : "chatml";
}

int32_t spikeq_chat_apply(const spikeq_model *md, const char *tmpl, const spikeq_chat_message *msgs, int32_t n,
                          int add_assistant, char *buf, int32_t len)
{
    if (n < 0 || (n > 0 && !msgs) || len < 0) return INT32_MIN;
    /* spikeq_chat_message and spq_chat_msg are the same two pointers */
    _Static_assert(sizeof(spikeq_chat_message) == sizeof(spq_chat_msg) &&
                   offsetof(spikeq_chat_message, content) == offsetof(spq_chat_msg, content), "chat message layouts");
    long k = spq_chat_format(chat_name(md, tmpl), (const spq_chat_msg *)msgs, n, add_assistant, buf, (size_t)len);
    if (k < 0 || k >= INT32_MAX) return INT32_MIN;
    return k < len ? (int32_t)k : -(int32_t)(k + 1);
}

const char *spikeq_chat_eot(const spikeq_model *md, const char *tmpl) { return spq_chat_eot(chat_name(md, tmpl)); }

int32_t spikeq_token_to_piece(const spikeq_model *md, spikeq_token prev, spikeq_token token, char *buf, int32_t len)
{
    if (!md->c.tok.n_vocab || token < 0 || token >= md->c.tok.n_vocab) return 0;
    char tmp[512]; /* spq_tok_piece wants 64 + the longest piece */
    int cap = md->piece_max + 64;
    char *b = cap <= (int)sizeof tmp ? tmp : malloc((size_t)cap);
    if (!b) return 0;
    int n = spq_tok_piece(&md->c.tok, prev, token, b, cap);
    if (n <= len) memcpy(buf, b, (size_t)n);
    if (b != tmp) free(b);
    return n <= len ? n : -n;
}

spikeq_context_params spikeq_context_default_params(void)
{
    return (spikeq_context_params){.n_threads = 0, .n_ctx = 0, .n_batch = 512, .n_seq_max = 1, .isa = NULL,
                                   .kv_type = SPIKEQ_KV_F16};
}

static int cores(void)
{
#ifdef _OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

spikeq_context *spikeq_context_new(spikeq_model *md, const spikeq_context_params *pp, char *err, size_t errlen)
{
    spikeq_context_params p = pp ? *pp : spikeq_context_default_params();
    if (!md) { put_err(err, errlen, "no model"); return NULL; }
    if (p.n_threads < 0 || p.n_ctx < 0 || p.n_batch < 1 || p.n_seq_max < 1 || p.n_seq_max > 4096) {
        put_err(err, errlen, "context parameters out of range (n_threads >= 0, n_ctx >= 0, n_batch >= 1, 1 <= n_seq_max <= 4096)");
        return NULL;
    }
    if (p.n_ctx > md->m.ctx) {
        put_err(err, errlen, "n_ctx %d exceeds the model's context of %d", p.n_ctx, md->m.ctx);
        return NULL;
    }
    const spq_kernels *k = p.isa ? spq_kern_get(p.isa) : spq_kern();
    if (!k) {
        put_err(err, errlen, "isa '%s' is not supported on this CPU", p.isa);
        return NULL;
    }
    spikeq_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) { put_err(err, errlen, "out of memory"); return NULL; }
    ctx->model = md;
    /* the state's threads and scratch are sized once here: at most the cores (a spinning
     * barrier over more threads than cores waits on descheduled threads) */
    int nt = p.n_threads > 0 && p.n_threads < cores() ? p.n_threads : cores();
    spq_err e;
    if (p.kv_type != SPIKEQ_KV_F16 && p.kv_type != SPIKEQ_KV_F32) {
        put_err(err, errlen, "kv_type %d is neither SPIKEQ_KV_F16 nor SPIKEQ_KV_F32", (int)p.kv_type);
        free(ctx);
        return NULL;
    }
    int kvt = p.kv_type == SPIKEQ_KV_F16 ? SPQ_F16 : SPQ_F32;
    if (spq_state_check(md->c.path, &md->m, p.n_batch, p.n_seq_max, p.n_ctx, nt, kvt, NULL, &e)) {
        put_err(err, errlen, "%s", e.msg);
        free(ctx);
        return NULL;
    }
    int rc = spq_state_init_seq(&ctx->s, &md->m, p.n_batch, p.n_seq_max, p.n_ctx, nt, kvt);
    ctx->s.kern = k;
    ctx->n_ctx = p.n_ctx ? p.n_ctx : md->m.ctx;
    size_t B = (size_t)p.n_batch;
    ctx->len = calloc((size_t)p.n_seq_max, sizeof *ctx->len);
    ctx->held = malloc((size_t)p.n_seq_max * sizeof *ctx->held);
    ctx->want = malloc(B);
    ctx->row = malloc(B * sizeof(int32_t));
    if (rc || !ctx->len || !ctx->held || !ctx->want || !ctx->row) {
        put_err(err, errlen, "out of memory for %d sequences of %d positions (%d tokens a batch)", p.n_seq_max, ctx->n_ctx, p.n_batch);
        spikeq_context_free(ctx);
        return NULL;
    }
    return ctx;
}

void spikeq_context_free(spikeq_context *ctx)
{
    if (!ctx) return;
    spq_state_free(&ctx->s);
    free(ctx->len); free(ctx->held); free(ctx->want); free(ctx->row);
    free(ctx);
}

const char *spikeq_context_error(const spikeq_context *ctx) { return ctx->err; }
int spikeq_n_threads(const spikeq_context *ctx) { return ctx->s.n_threads; }
int spikeq_n_ctx(const spikeq_context *ctx) { return ctx->n_ctx; }
const char *spikeq_isa(const spikeq_context *ctx) { return ctx->s.kern->name; }

spikeq_batch spikeq_batch_init(int32_t n_max)
{
    spikeq_batch b = {0};
    if (n_max < 1) return b;
    b.token = malloc(sizeof *b.token * (size_t)n_max);
    b.pos = malloc(sizeof *b.pos * (size_t)n_max);
    b.seq_id = malloc(sizeof *b.seq_id * (size_t)n_max);
    b.logits = malloc((size_t)n_max);
    if (!b.token || !b.pos || !b.seq_id || !b.logits) spikeq_batch_free(&b);
    return b;
}

void spikeq_batch_free(spikeq_batch *b)
{
    free(b->token); free(b->pos); free(b->seq_id); free(b->logits);
    memset(b, 0, sizeof *b);
}

void spikeq_batch_add(spikeq_batch *b, spikeq_token token, int32_t pos, int32_t seq_id, int logits)
{
    b->token[b->n_tokens] = token;
    b->pos[b->n_tokens] = pos;
    b->seq_id[b->n_tokens] = seq_id;
    b->logits[b->n_tokens] = (int8_t)(logits != 0);
    b->n_tokens++;
}

/* The runtime reads token ids, positions and sequences as int arrays: the batch's int32_t
 * arrays are passed as they are. */
_Static_assert(sizeof(int32_t) == sizeof(int), "spikeq_batch's arrays are read as int");

int spikeq_decode(spikeq_context *ctx, const spikeq_batch *b)
{
    const spq_model *m = &ctx->model->m;
    int M = b->n_tokens;
    ctx->err[0] = 0;
    ctx->n_last = 0;
    if (M < 1 || M > ctx->s.max_batch) return ctx_fail(ctx, "batch of %d tokens: 1 to n_batch (%d) allowed", M, ctx->s.max_batch);
    /* every sequence grows without gaps: a token's position is at most its sequence's
     * length so far, counting the tokens before it in this batch (held) */
    memcpy(ctx->held, ctx->len, sizeof *ctx->held * (size_t)ctx->s.n_seq);
    for (int i = 0; i < M; i++) {
        int q = b->seq_id[i], p = b->pos[i];
        if (q < 0 || q >= ctx->s.n_seq) return ctx_fail(ctx, "token %d: seq_id %d outside 0..%d", i, q, ctx->s.n_seq - 1);
        if (b->token[i] < 0 || b->token[i] >= m->cfg.vocab_size)
            return ctx_fail(ctx, "token %d: id %d outside the vocabulary (%d)", i, b->token[i], m->cfg.vocab_size);
        if (p < 0 || p > ctx->held[q])
            return ctx_fail(ctx, "token %d: position %d of sequence %d leaves a gap (it holds %d)", i, p, q, ctx->held[q]);
        if (p >= ctx->n_ctx) return ctx_fail(ctx, "token %d: position %d past the context (%d)", i, p, ctx->n_ctx);
        ctx->held[q] = p + 1 > ctx->held[q] ? p + 1 : ctx->held[q];
        ctx->want[i] = b->logits ? (signed char)(b->logits[i] != 0) : 0;
    }
    for (int i = 0; i < M; i++)
        for (int j = 0; j < i; j++)
            if (b->seq_id[j] == b->seq_id[i] && b->pos[j] == b->pos[i])
                return ctx_fail(ctx, "tokens %d and %d: the same sequence and position", j, i);
    spq_err e;
    if (spq_ckpt_check(&ctx->model->c, &e)) return ctx_fail(ctx, "%s", e.msg);
    if (spq_forward_batch(m, &ctx->s, (const int *)b->token, (const int *)b->pos, (const int *)b->seq_id, ctx->want, M) < 0)
        return ctx_fail(ctx, "batch out of range");
    memcpy(ctx->len, ctx->held, sizeof *ctx->len * (size_t)ctx->s.n_seq);
    int r = 0;
    for (int i = 0; i < M; i++) ctx->row[i] = ctx->want[i] ? r++ : -1;
    ctx->n_last = M;
    return 0;
}

const float *spikeq_get_logits(const spikeq_context *ctx, int32_t i)
{
    if (i < 0 || i >= ctx->n_last || ctx->row[i] < 0) return NULL;
    return ctx->s.logits + (size_t)ctx->row[i] * (size_t)ctx->model->m.cfg.vocab_size;
}

int32_t spikeq_kv_len(const spikeq_context *ctx, int32_t seq)
{
    return seq >= 0 && seq < ctx->s.n_seq ? ctx->len[seq] : -1;
}

void spikeq_kv_clear(spikeq_context *ctx, int32_t seq)
{
    for (int q = 0; q < ctx->s.n_seq; q++)
        if (seq < 0 || q == seq) ctx->len[q] = 0;
}

int spikeq_kv_truncate(spikeq_context *ctx, int32_t seq, int32_t n)
{
    if (seq < 0 || seq >= ctx->s.n_seq || n < 0 || n > ctx->len[seq]) return ctx_fail(ctx, "kv_truncate: sequence %d holds %d positions, not %d", seq, seq >= 0 && seq < ctx->s.n_seq ? ctx->len[seq] : 0, n);
    ctx->len[seq] = n;
    return 0;
}

int spikeq_kv_copy(spikeq_context *ctx, int32_t src, int32_t dst, int32_t n)
{
    spq_state *s = &ctx->s;
    if (src < 0 || src >= s->n_seq || dst < 0 || dst >= s->n_seq || n < 0 || n > ctx->len[src])
        return ctx_fail(ctx, "kv_copy: sequences 0..%d, and at most the %d positions sequence %d holds", s->n_seq - 1,
                        src >= 0 && src < s->n_seq ? ctx->len[src] : 0, src);
    spq_state_copy_seq(s, &ctx->model->m, src, dst, n);
    ctx->len[dst] = n;
    return 0;
}

spikeq_sampler_params spikeq_sampler_default_params(void)
{
    spq_sampler_params d = spq_sampler_defaults();
    return (spikeq_sampler_params){d.temp, d.top_k, d.top_p, d.min_p, d.repeat_penalty, d.repeat_last_n, d.seed};
}

spikeq_sampler *spikeq_sampler_new(const spikeq_sampler_params *p)
{
    if (!p || !(p->temp >= 0) || p->top_k < 0 || !(p->top_p > 0 && p->top_p <= 1) || !(p->min_p >= 0 && p->min_p < 1) ||
        !(p->repeat_penalty > 0) || p->repeat_last_n < 0)
        return NULL;
    spikeq_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    spq_sampler_params q = {p->temp, p->top_p, p->min_p, p->repeat_penalty, p->top_k, p->repeat_last_n, p->seed};
    if (spq_sampler_init(&s->s, &q)) { free(s); return NULL; }
    return s;
}

void spikeq_sampler_free(spikeq_sampler *s)
{
    if (!s) return;
    spq_sampler_free(&s->s);
    free(s);
}

spikeq_token spikeq_sampler_sample(spikeq_sampler *s, const float *logits, int32_t n_vocab)
{
    int t = spq_sample(&s->s, logits, n_vocab);
    spq_sampler_accept(&s->s, t);
    return t;
}
