/* model.c — building a runnable model from a checkpoint, and the transformer forward pass.
 * The forward pass follows llama2.c's run.c: one block, top to bottom, on a batch of M
 * tokens (prefill: a matrix through every linear; decode: M = 1). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/clock.h"
#include "kernels/kernels.h"
#include "runtime/model.h"

const char *const spq_step_names[SPQ_NSTEPS] = {"attn_norm", "qkv", "rope_kv", "attention", "o",
                                                "ffn_norm", "gate_up", "swiglu", "down", "head"};
const char *const spq_proj_names[SPQ_NPROJ] = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
static const char *const proj_prefix[SPQ_NPROJ] = {"self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp"};

static float *vec_f32(const spq_ckpt *c, const char *name)
{
    const spq_tensor *t = spq_ckpt_find(c, name);
    float *v = malloc(sizeof(float) * spq_tensor_numel(t));
    if (v) spq_tensor_to_f32(t, v);
    return v;
}

/* RoPE tables as transformers computes them: inv_freq in FP32, angle = pos * inv_freq in
 * FP32, then cos/sin; LLaMA-3 scaling rescales the low frequencies, either from its config
 * parameters or (GGUF) from per-frequency divisors, the rope_freqs tensor (NULL if none). */
static void rope_tables(spq_model *m, const float *freq_div)
{
    const spq_config *p = &m->cfg;
    int half = p->head_dim / 2;
    for (int i = 0; i < half; i++) {
        float inv = 1.0f / powf(p->rope_theta, (float)(2 * i) / (float)p->head_dim);
        if (freq_div) inv /= freq_div[i];
        else if (p->rope_type == 1) {
            double lo_wl = p->rope_orig_ctx / p->rope_low_freq, hi_wl = p->rope_orig_ctx / p->rope_high_freq;
            double wl = 2 * M_PI / inv;
            if (wl > lo_wl) inv = inv / p->rope_factor;
            else if (wl >= hi_wl) {
                double sm = (p->rope_orig_ctx / wl - p->rope_low_freq) / (p->rope_high_freq - p->rope_low_freq);
                inv = (float)((1 - sm) * inv / p->rope_factor + sm * inv);
            }
        }
        for (int pos = 0; pos < m->ctx; pos++) {
            float a = (float)pos * inv;
            m->rope_cos[(size_t)pos * half + i] = (float)cos((double)a);
            m->rope_sin[(size_t)pos * half + i] = (float)sin((double)a);
        }
    }
}

long long spq_mem_available(void)
{
    const char *v = getenv("SPIKEQ_MEM_AVAILABLE");
    if (v && *v) return atoll(v);
    FILE *f = fopen("/proc/meminfo", "r");
    if (!f) return -1;
    char line[256];
    long long kb = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) break;
    fclose(f);
    return kb < 0 ? -1 : kb * 1024;
}

/* Bytes a linear stored as t occupies once built: where it lies in a mapped file (*mapped),
 * where an importer put it (*taken, already allocated), or packed at load (*packed). */
static void linear_bytes(const spq_tensor *t, size_t *mapped, size_t *packed, size_t *taken)
{
    int N = (int)t->shape[0], K = (int)t->shape[1];
    if (spq_linear_repacks(t)) *packed += spq_linear_repacked_bytes(t);
    else if (t->layout == SPQ_PANELS || t->dtype == SPQ_CMPQ || t->dtype == SPQ_GGML) *(t->owned ? taken : mapped) += t->nbytes;
    else *packed += spq_panel_bytes(t->dtype == SPQ_E5M2 ? SPQ_F16 : t->dtype, N, K); /* E5M2 widens to F16 */
}

static double gb(size_t b) { return (double)b / 1e9; }

int spq_model_init(spq_model *m, const spq_ckpt *c, int ctx, spq_err *e)
{
    memset(m, 0, sizeof *m);
    if (spq_ckpt_validate(c, e)) return -1;
    {   /* the weights' memory before any of it is taken */
        size_t mapped = 0, packed = 0, taken = 0;
        char nm[128];
        for (int l = 0; l < c->cfg.n_layers; l++)
            for (int j = 0; j < SPQ_NPROJ; j++) {
                snprintf(nm, sizeof nm, "model.layers.%d.%s.%s.weight", l, proj_prefix[j], spq_proj_names[j]);
                linear_bytes(spq_ckpt_find(c, nm), &mapped, &packed, &taken);
            }
        const spq_tensor *emb = spq_ckpt_find(c, "model.embed_tokens.weight");
        *(emb->owned ? &taken : &mapped) += emb->nbytes;
        linear_bytes(c->cfg.tied ? emb : spq_ckpt_find(c, "lm_head.weight"), &mapped, &packed, &taken);
        long long avail = spq_mem_available();
        if (avail >= 0 && (double)(mapped + packed) > (double)avail)
            return spq_fail(e, c->path, "its weights need %.2f GB (%.2f GB %s at load) but %.2f GB is available: quantize it "
                            "(spikeq quantize) or free memory", gb(mapped + packed), gb(packed),
                            packed ? "packed" : "none packed", (double)avail / 1e9);
        m->mapped_bytes = mapped;
        m->packed_bytes = packed + taken;
    }
    m->cfg = c->cfg;
    const spq_config *p = &m->cfg;
    m->ctx = ctx > 0 ? ctx : p->max_seq;
    m->embed = spq_ckpt_find(c, "model.embed_tokens.weight");
    m->layers = calloc((size_t)p->n_layers, sizeof *m->layers);
    m->final_norm = vec_f32(c, "model.norm.weight");
    m->rope_cos = malloc(sizeof(float) * (size_t)m->ctx * (p->head_dim / 2));
    m->rope_sin = malloc(sizeof(float) * (size_t)m->ctx * (p->head_dim / 2));
    if (!m->layers || !m->final_norm || !m->rope_cos || !m->rope_sin) { spq_model_free(m); return spq_fail(e, c->path, "out of memory"); }
    const spq_tensor *rf = spq_ckpt_find(c, "rope_freqs.weight");
    float *div = NULL;
    if (rf) {
        if (spq_tensor_numel(rf) != (size_t)(p->head_dim / 2)) {
            spq_model_free(m);
            return spq_fail(e, c->path, "rope_freqs.weight has %zu values, head_dim / 2 is %d", spq_tensor_numel(rf), p->head_dim / 2);
        }
        div = malloc(sizeof(float) * (size_t)(p->head_dim / 2));
        if (!div) { spq_model_free(m); return spq_fail(e, c->path, "out of memory"); }
        spq_tensor_to_f32(rf, div);
        for (int i = 0; i < p->head_dim / 2; i++)
            if (!(div[i] > 0 && div[i] < 1e30f)) {
                free(div);
                spq_model_free(m);
                return spq_fail(e, c->path, "rope_freqs.weight value %d is not a positive number", i);
            }
    }
    rope_tables(m, div);
    free(div);
    char nm[128];
    for (int l = 0; l < p->n_layers; l++) {
        spq_layer *L = &m->layers[l];
        for (int j = 0; j < SPQ_NPROJ; j++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s.%s.weight", l, proj_prefix[j], spq_proj_names[j]);
            const spq_tensor *t = spq_ckpt_find(c, nm);
            if (spq_linear_init(&L->p[j], t, spq_ckpt_channel_scales(c, nm), e)) { spq_model_free(m); return -1; }
            if (L->p[j].r8) spq_ckpt_release(c, t); /* repacked: the file's pages of it are not read again */
            if (!L->p[j].mapped && t->dtype != SPQ_CMPQ) spq_ckpt_release(c, t); /* packed: the copy is what runs */
            m->linear_bytes += spq_linear_repacks(t) ? spq_linear_repacked_bytes(t) : t->dtype == SPQ_CMPQ || t->dtype == SPQ_GGML ? t->nbytes : spq_tensor_numel(t) * spq_dtype_size(t->dtype == SPQ_E5M2 ? SPQ_F16 : t->dtype);
        }
        /* q/k/v (and gate/up) read one quantised input (spq_linear_apply_n): they must
         * agree on its format */
        for (int j = SPQ_K; j <= SPQ_UP; j++) {
            int ref = j <= SPQ_V ? SPQ_Q : j == SPQ_UP ? SPQ_GATE : j;
            const spq_linear *a = &L->p[j], *b = &L->p[ref];
            if (a->kind != b->kind || a->a_scale != b->a_scale || a->act_fmt != b->act_fmt || a->qmax != b->qmax ||
                a->act_token != b->act_token) {
                spq_model_free(m);
                return spq_fail(e, c->path, "layer %d: %s and %s share an input but differ in precision", l,
                                spq_proj_names[ref], spq_proj_names[j]);
            }
        }
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        L->attn_norm = vec_f32(c, nm);
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
        L->ffn_norm = vec_f32(c, nm);
        if (!L->attn_norm || !L->ffn_norm) { spq_model_free(m); return spq_fail(e, c->path, "out of memory"); }
    }
    const spq_tensor *h = spq_ckpt_find(c, p->tied ? "model.embed_tokens.weight" : "lm_head.weight");
    if (spq_linear_init(&m->head, h, NULL, e)) { spq_model_free(m); return -1; }
    if (!m->head.mapped && !p->tied && h->dtype != SPQ_CMPQ) spq_ckpt_release(c, h); /* a tied head's rows are the embeddings */
    m->linear_bytes += spq_linear_repacks(h) ? spq_linear_repacked_bytes(h) : h->dtype == SPQ_CMPQ || h->dtype == SPQ_GGML ? h->nbytes
                                                                 : spq_tensor_numel(h) * spq_dtype_size(h->dtype == SPQ_E5M2 ? SPQ_F16 : h->dtype);
    return 0;
}

void spq_model_free(spq_model *m)
{
    if (m->layers)
        for (int l = 0; l < m->cfg.n_layers; l++) {
            for (int j = 0; j < SPQ_NPROJ; j++) spq_linear_free(&m->layers[l].p[j]);
            free(m->layers[l].attn_norm);
            free(m->layers[l].ffn_norm);
        }
    free(m->layers);
    spq_linear_free(&m->head);
    free(m->final_norm);
    free(m->rope_cos);
    free(m->rope_sin);
    memset(m, 0, sizeof *m);
}

/* The bytes of each of spq_state_init_seq's allocations (ctx and n_threads resolved): what
 * it allocates and what spq_state_check counts are one computation. */
typedef struct {
    int ctx, n_threads;
    size_t x, xb, q, hb, att, logits, xf, xq, kv, row; /* kv: each of the two caches; row: B ints */
} state_sizes;

static void state_sizes_of(const spq_model *m, int max_batch, int n_seq, int ctx, int n_threads, int kv_type, state_sizes *z)
{
    const spq_config *p = &m->cfg;
    z->ctx = ctx > 0 ? ctx : m->ctx;
#ifdef _OPENMP
    z->n_threads = n_threads > 0 ? n_threads : omp_get_max_threads();
#else
    z->n_threads = 1;
    (void)n_threads;
#endif
    size_t B = (size_t)max_batch, D = (size_t)p->dim, q = (size_t)p->n_heads * p->head_dim;
    size_t kv = (size_t)p->n_kv_heads * p->head_dim, H = (size_t)p->hidden_dim;
    size_t kmax = (size_t)spq_kpad((int)(H > q ? (H > D ? H : D) : (q > D ? q : D))) + 64;
    /* CMPQ: up to three tensors' quantised inputs at once (spq_cmpq_apply_n), each at most
     * kt / 16 + 16 + kt / 4 floats (spq_cmpq_row_scratch), kt <= K + 6 x 31 */
    size_t cq = 3 * ((kmax + 186) * 5 / 16 + 17);
    z->x = 4 * B * D;
    z->xb = 4 * B * (D > q ? D : q);
    z->q = 4 * B * q;
    z->hb = 4 * B * H;
    z->att = 4 * (size_t)z->n_threads * (size_t)(p->n_heads / p->n_kv_heads) * (size_t)z->ctx;
    z->logits = 4 * B * (size_t)p->vocab_size;
    z->xf = 4 * B * (kmax > cq ? kmax : cq);
    z->xq = B * kmax;
    z->kv = spq_dtype_size(kv_type) * (size_t)p->n_layers * (size_t)z->ctx * kv * (size_t)n_seq;
    z->row = sizeof(int) * B;
}

int spq_state_check(const char *path, const spq_model *m, int max_batch, int n_seq, int ctx, int n_threads, int kv_type,
                    spq_mem *need, spq_err *e)
{
    spq_mem r = {m->mapped_bytes + m->packed_bytes, 0, 0, spq_mem_available()};
    state_sizes z;
    state_sizes_of(m, max_batch, n_seq, ctx, n_threads, kv_type, &z);
    r.kv = 2 * z.kv;
    r.scratch = 2 * z.x + z.xb + z.q + 2 * z.hb + z.att + z.logits + z.xf + z.xq + 7 * z.row;
    if (need) *need = r;
    /* packed weights are already allocated (MemAvailable has dropped by them); mapped ones
     * become resident as they are read (counted, whether or not the page cache holds them:
     * MemAvailable counts what it holds) */
    size_t more = m->mapped_bytes + r.kv + r.scratch;
    if (r.avail < 0 || (double)more <= (double)r.avail) return 0;
    return spq_fail(e, path, "this run needs %.2f GB more: KV cache %.2f GB (%d sequence%s x %d positions), scratch %.2f GB, "
                    "mapped weights %.2f GB (and %.2f GB packed at load, taken) but %.2f GB is available: lower the context (-c)%s",
                    gb(more), gb(r.kv), n_seq, n_seq == 1 ? "" : "s", z.ctx, gb(r.scratch),
                    gb(m->mapped_bytes), gb(m->packed_bytes), (double)r.avail / 1e9, n_seq > 1 ? " or the sequences" : "");
}

int spq_state_init(spq_state *s, const spq_model *m, int max_batch)
{
    return spq_state_init_seq(s, m, max_batch, 1, 0, 0, SPQ_F32);
}

int spq_state_init_seq(spq_state *s, const spq_model *m, int max_batch, int n_seq, int ctx, int n_threads, int kv_type)
{
    memset(s, 0, sizeof *s);
    if (max_batch < 1 || n_seq < 1 || ctx > m->ctx || (kv_type != SPQ_F32 && kv_type != SPQ_F16)) return -1;
    const spq_config *p = &m->cfg;
    state_sizes z;
    state_sizes_of(m, max_batch, n_seq, ctx, n_threads, kv_type, &z);
    s->n_threads = z.n_threads;
    s->max_batch = max_batch;
    s->ctx = z.ctx;
    s->prefetch = SPQ_PREFETCH;
    s->x = malloc(z.x);
    s->xb = malloc(z.xb);
    s->xb2 = malloc(z.x);
    s->q = malloc(z.q);
    s->hb = malloc(z.hb);
    s->hb2 = malloc(z.hb);
    s->att = malloc(z.att);
    s->logits = malloc(z.logits);
    s->xf = malloc(z.xf);
    s->xq = malloc(z.xq);
    s->n_seq = n_seq;
    s->kv_type = kv_type;
    s->seq_elems = (size_t)p->n_layers * (size_t)z.ctx * (size_t)p->n_kv_heads * (size_t)p->head_dim;
    s->kcache = calloc(z.kv, 1);
    s->vcache = calloc(z.kv, 1);
    s->rpos = malloc(z.row);
    s->rseq = malloc(z.row);
    s->rid = malloc(z.row);
    s->out = malloc(z.row);
    s->out_id = malloc(z.row);
    s->rmax = malloc(sizeof(float) * (size_t)max_batch);
    s->tmax = malloc(sizeof(float) * (size_t)max_batch);
    if (!s->x || !s->xb || !s->xb2 || !s->q || !s->hb || !s->hb2 || !s->att || !s->logits || !s->xf || !s->xq ||
        !s->kcache || !s->vcache || !s->rpos || !s->rseq || !s->rid || !s->out || !s->out_id || !s->rmax || !s->tmax) {
        spq_state_free(s);
        return -1;
    }
    return 0;
}

void spq_state_free(spq_state *s)
{
    free(s->x); free(s->xb); free(s->xb2); free(s->q); free(s->hb); free(s->hb2); free(s->att);
    free(s->logits); free(s->xf); free(s->xq); free(s->kcache); free(s->vcache);
    free(s->rpos); free(s->rseq); free(s->rid); free(s->out); free(s->out_id); free(s->rmax); free(s->tmax);
    memset(s, 0, sizeof *s);
}

/* Sequence seq's part of a KV cache (kcache or vcache), at layer offset lo (elements). */
static inline void *seq_cache(const spq_state *s, void *cache, int seq, size_t lo)
{
    size_t i = (size_t)seq * s->seq_elems + lo;
    return s->kv_type == SPQ_F16 ? (void *)((uint16_t *)cache + i) : (void *)((float *)cache + i);
}

/* The sum of squares through the kernels' dot product: a plain loop is one chain of
 * dependent adds (2 x 4096 cycles per decode step at dim 2048, on one thread). */
static void rmsnorm(const spq_kernels *k, float *o, const float *x, const float *w, int n, float eps)
{
    float ss = k->dot_f32(x, x, n);
    float r = 1.0f / sqrtf(ss / (float)n + eps);
    for (int i = 0; i < n; i++) o[i] = w[i] * (x[i] * r);
}

/* rotate-half RoPE on one head vector at position pos */
static void rope(float *v, const float *cs, const float *sn, int half)
{
    for (int i = 0; i < half; i++) {
        float a = v[i], b = v[i + half];
        v[i] = a * cs[i] - b * sn[i];
        v[i + half] = a * sn[i] + b * cs[i];
    }
}

/* Adds the wall time since *t to s->step_sec[step] and restarts *t (no-op when s is NULL,
 * a thread other than the timing one, or when not timing). */
static void lap(spq_state *s, int step, double *t)
{
    if (!s || !s->step_sec) return;
    double now = spq_now();
    s->step_sec[step] += now - *t;
    *t = now;
}

static void embed_row(const spq_tensor *t, int tok, int dim, float *out)
{
    spq_tensor row = *t;
    row.ndim = 1;
    row.shape[0] = dim;
    row.data = (const char *)t->data + (size_t)tok * spq_tensor_row_bytes(t);
    spq_tensor_to_f32(&row, out);
}

/* Shows site `site`'s input x[M][K] to the observer when there is one: thread 0 calls it,
 * after a team barrier when other threads wrote rows of x since the last one (sync). */
static void observe(const spq_thr *t, spq_state *s, int l, int site, const float *x, int M, int K, int sync)
{
    if (!s->observe) return;
    if (sync) spq_team_sync(t);
    if (t->id == 0) s->observe(s->observe_ctx, l, site, x, M, K, s->tokens, s->pos);
}

/* SwiGLU on one chunk of up to 256 of a row's H values: g = silu(g) * u. Chunks start
 * at multiples of 256 in every row whatever the thread count, so that the vector exp
 * sees the same lanes (its scalar tail may round differently). */
static void swiglu_chunk(const spq_kernels *kern, float *g, const float *u, int n)
{
    float e[256];
    for (int j = 0; j < n; j++) e[j] = -g[j];
    kern->vexp(e, n);
    for (int j = 0; j < n; j++) g[j] = g[j] / (1.0f + e[j]) * u[j];
}

/* One thread's part of spq_forward: every thread of the team runs this, top to bottom.
 * Row-wise steps take the thread's rows (spq_split over M: thread 0 has a decode step's
 * single row) or an even share of smaller items (heads, chunks); each step that reads
 * what other threads wrote follows a team barrier. Thread 0 times (lead) and calls the observer. */
static void forward_thread(const spq_model *m, spq_state *s, const spq_thr *t, const int *tokens, int M)
{
    const spq_config *p = &m->cfg;
    const spq_kernels *kern = t->team->k;
    const int D = p->dim, hd = p->head_dim, half = hd / 2, nh = p->n_heads, nkv = p->n_kv_heads;
    const int qd = nh * hd, kvd = nkv * hd, H = p->hidden_dim, grp = nh / nkv, nch = (H + 255) / 256;
    const float att_scale = 1.0f / sqrtf((float)hd);
    spq_state *lead = t->id == 0 ? s : NULL; /* timing and observing: thread 0 only */
    float *att = s->att + (size_t)t->id * grp * s->ctx;
    int r0, r1, i0, i1;
    spq_split(t, M, &r0, &r1);
    double tm = lead && s->step_sec ? spq_now() : 0;
    for (int i = r0; i < r1; i++) embed_row(m->embed, tokens[i], D, s->x + (size_t)i * D);

    for (int l = 0; l < p->n_layers; l++) {
        const spq_layer *L = &m->layers[l];
        const size_t lo = (size_t)l * s->ctx * kvd; /* this layer's cache in each sequence's */
        const spq_rows *rows = &s->rows;

        /* attention: xb = norm(x); q, k, v = xb W^T; RoPE; k, v into the cache */
        for (int i = r0; i < r1; i++) rmsnorm(kern, s->xb + (size_t)i * D, s->x + (size_t)i * D, L->attn_norm, D, p->norm_eps);
        lap(lead, SPQ_STEP_ATTN_NORM, &tm);
        observe(t, s, l, SPQ_SITE_QKV, s->xb, M, D, 1);
        const spq_linear *qkv[3] = {&L->p[SPQ_Q], &L->p[SPQ_K], &L->p[SPQ_V]}, *o = &L->p[SPQ_O];
        const spq_linear *gu[2] = {&L->p[SPQ_GATE], &L->p[SPQ_UP]}, *down = &L->p[SPQ_DOWN];
        float *qkv_out[3] = {s->q, s->hb, s->hb2};
        spq_linear_apply_n(t, qkv, 3, s->xb, M, rows, qkv_out, s->xq, s->xf, &o, 1);
        lap(lead, SPQ_STEP_QKV, &tm);
        /* items: (token, head) over the nh query heads, then the nkv key heads with their
         * cache writes */
        spq_split(t, M * (nh + nkv), &i0, &i1);
        for (int it = i0; it < i1; it++) {
            int i = it / (nh + nkv), h = it % (nh + nkv), pi = s->rpos[i];
            const float *cs = m->rope_cos + (size_t)pi * half, *sn = m->rope_sin + (size_t)pi * half;
            if (h < nh) {
                rope(s->q + (size_t)i * qd + h * hd, cs, sn, half);
                continue;
            }
            int d0 = (h - nh) * hd; /* this KV head's dims */
            float *kr = s->hb + (size_t)i * kvd, *vr = s->hb2 + (size_t)i * kvd;
            rope(kr + d0, cs, sn, half);
            void *kc = seq_cache(s, s->kcache, s->rseq[i], lo), *vc = seq_cache(s, s->vcache, s->rseq[i], lo);
            if (s->kv_type == SPQ_F16) {
                uint16_t *kh = kc, *vh = (uint16_t *)vc + (size_t)pi * kvd;
                for (int d = d0; d < d0 + hd; d++) kh[(size_t)d * s->ctx + pi] = spq_f32_to_f16(kr[d]);
                for (int d = d0; d < d0 + hd; d++) vh[d] = spq_f32_to_f16(vr[d]);
            } else {
                for (int d = d0; d < d0 + hd; d++) ((float *)kc)[(size_t)d * s->ctx + pi] = kr[d];
                memcpy((float *)vc + (size_t)pi * kvd + d0, vr + d0, 4 * (size_t)hd);
            }
        }
        spq_team_sync(t);
        lap(lead, SPQ_STEP_ROPE, &tm);
        /* causal grouped-query attention: the grp query heads of one (token, KV head) share
         * every key and value load; the longest rows go first so that threads end together */
        spq_loop lp;
        spq_loop_begin(t, M * nkv, &lp);
        for (int it; (it = spq_loop_next(t, &lp)) >= 0;) {
            int r = M * nkv - 1 - it, i = r / nkv, g = r % nkv;
            size_t qo = (size_t)i * qd + (size_t)g * grp * hd;
            size_t ko = lo + (size_t)g * hd * s->ctx, vo = lo + (size_t)g * hd;
            if (s->kv_type == SPQ_F16)
                kern->attn_h(grp, hd, s->rpos[i] + 1, att_scale, s->q + qo, seq_cache(s, s->kcache, s->rseq[i], ko), s->ctx,
                             seq_cache(s, s->vcache, s->rseq[i], vo), kvd, att, s->xb + qo);
            else
                kern->attn(grp, hd, s->rpos[i] + 1, att_scale, s->q + qo, seq_cache(s, s->kcache, s->rseq[i], ko), s->ctx,
                           seq_cache(s, s->vcache, s->rseq[i], vo), kvd, att, s->xb + qo);
        }
        spq_team_sync(t);
        lap(lead, SPQ_STEP_ATTN, &tm);
        observe(t, s, l, SPQ_SITE_O, s->xb, M, qd, 0);
        spq_linear_apply(t, o, s->xb, M, rows, s->xb2, s->xq, s->xf, gu, 2);
        lap(lead, SPQ_STEP_O, &tm);

        /* SwiGLU MLP: x += down(silu(gate(xb)) * up(xb)) */
        for (int i = r0; i < r1; i++) {
            float *xr = s->x + (size_t)i * D;
            for (int j = 0; j < D; j++) xr[j] += s->xb2[(size_t)i * D + j];
            rmsnorm(kern, s->xb + (size_t)i * D, xr, L->ffn_norm, D, p->norm_eps);
        }
        lap(lead, SPQ_STEP_FFN_NORM, &tm);
        observe(t, s, l, SPQ_SITE_GATEUP, s->xb, M, D, 1);
        float *gu_out[2] = {s->hb, s->hb2};
        spq_linear_apply_n(t, gu, 2, s->xb, M, rows, gu_out, s->xq, s->xf, &down, 1);
        lap(lead, SPQ_STEP_GATE_UP, &tm);
        spq_split(t, M * nch, &i0, &i1); /* items: (token, chunk of 256) */
        for (int it = i0; it < i1; it++) {
            int i = it / nch, j0 = it % nch * 256;
            swiglu_chunk(kern, s->hb + (size_t)i * H + j0, s->hb2 + (size_t)i * H + j0, H - j0 < 256 ? H - j0 : 256);
        }
        spq_team_sync(t);
        lap(lead, SPQ_STEP_SWIGLU, &tm);
        observe(t, s, l, SPQ_SITE_DOWN, s->hb, M, H, 0);
        /* next: the following layer's q/k/v, or the head after the last layer */
        const spq_linear *next[3] = {&m->head};
        int nnext = 1;
        if (l + 1 < p->n_layers) {
            const spq_linear *P = m->layers[l + 1].p;
            next[0] = &P[SPQ_Q]; next[1] = &P[SPQ_K]; next[2] = &P[SPQ_V];
            nnext = 3;
        }
        spq_linear_apply(t, down, s->hb, M, rows, s->xb, s->xq, s->xf, next, nnext);
        for (int i = r0; i < r1; i++)
            for (int j = 0; j < D; j++) s->x[(size_t)i * D + j] += s->xb[(size_t)i * D + j];
        lap(lead, SPQ_STEP_DOWN, &tm);
        observe(t, s, l, SPQ_SITE_RESID, s->x, M, D, 1);
    }

    /* the head: the wanted rows' logits (split over those: a barrier first) */
    spq_team_sync(t);
    spq_split(t, s->n_out, &i0, &i1);
    for (int j = i0; j < i1; j++)
        rmsnorm(kern, s->xb + (size_t)j * D, s->x + (size_t)s->out[j] * D, m->final_norm, D, p->norm_eps);
    spq_linear_apply(t, &m->head, s->xb, s->n_out, &s->out_rows, s->logits, s->xq, s->xf, NULL, 0);
    lap(lead, SPQ_STEP_HEAD, &tm);
}

void spq_state_copy_seq(spq_state *s, const spq_model *m, int src, int dst, int n)
{
    if (src == dst || n <= 0) return;
    size_t kvd = (size_t)m->cfg.n_kv_heads * m->cfg.head_dim, layer = (size_t)s->ctx * kvd;
    size_t el = spq_dtype_size(s->kv_type);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const char *ks = seq_cache(s, s->kcache, src, l * layer), *vs = seq_cache(s, s->vcache, src, l * layer);
        char *kd = seq_cache(s, s->kcache, dst, l * layer), *vd = seq_cache(s, s->vcache, dst, l * layer);
        for (size_t d = 0; d < kvd; d++) memcpy(kd + d * s->ctx * el, ks + d * s->ctx * el, el * (size_t)n); /* keys [kv_dim][ctx] */
        memcpy(vd, vs, el * (size_t)n * kvd);                                                              /* values [ctx][kv_dim] */
    }
}

/* Number each row's sequence as a tensor (0, 1, ... in order of first appearance) into
 * ids; returns how many. */
static int number_tensors(const int *seq, int M, int *ids, int *first_row)
{
    int n = 0;
    for (int i = 0; i < M; i++) {
        int j = 0;
        while (j < n && seq[first_row[j]] != seq[i]) j++;
        if (j == n) first_row[n++] = i;
        ids[i] = j;
    }
    return n;
}

static void run_team(const spq_model *m, spq_state *s, const int *tokens, int M)
{
    /* s->att holds one score buffer per thread counted at spq_state_init: never more */
    int nt = s->n_threads;
#ifdef _OPENMP
    nt = omp_get_max_threads() < nt ? omp_get_max_threads() : nt;
#endif
    spq_team tm;
    spq_team_init(&tm, nt, s->kern ? s->kern : spq_kern());
    tm.hint_max = s->prefetch;
#pragma omp parallel num_threads(tm.nt)
    {
        spq_thr t = spq_team_member(&tm);
        forward_thread(m, s, &t, tokens, M);
    }
}

/* Run the rows set in s->rpos, s->rseq and s->out[0..n_out): each sequence's rows become
 * one activation tensor, for the head too. */
static void run_rows(const spq_model *m, spq_state *s, const int *tokens, int M)
{
    int *first = s->out_id; /* scratch until the outputs are numbered */
    int n = number_tensors(s->rseq, M, s->rid, first);
    for (int j = 0; j < s->n_out; j++) s->out_id[j] = s->rid[s->out[j]];
    s->rows = (spq_rows){n, s->rid, s->rmax, s->tmax};
    s->out_rows = (spq_rows){n, s->out_id, s->rmax, s->tmax};
    s->tokens = tokens;
    s->pos = s->rpos[0];
    run_team(m, s, tokens, M);
}

int spq_forward_batch(const spq_model *m, spq_state *s, const int *tokens, const int *pos, const int *seq,
                      const signed char *want, int M)
{
    if (M < 1 || M > s->max_batch) return -1;
    for (int i = 0; i < M; i++)
        if (pos[i] < 0 || pos[i] >= s->ctx || seq[i] < 0 || seq[i] >= s->n_seq || tokens[i] < 0 ||
            tokens[i] >= m->cfg.vocab_size)
            return -1;
    memcpy(s->rpos, pos, sizeof(int) * (size_t)M);
    memcpy(s->rseq, seq, sizeof(int) * (size_t)M);
    s->n_out = 0;
    for (int i = 0; i < M; i++)
        if (!want || want[i]) s->out[s->n_out++] = i;
    run_rows(m, s, tokens, M);
    return s->n_out;
}

int spq_forward(const spq_model *m, spq_state *s, const int *tokens, int M, int pos, int all_logits)
{
    if (M < 1 || M > s->max_batch || pos < 0 || pos + M > s->ctx) return -1;
    for (int i = 0; i < M; i++) { s->rpos[i] = pos + i; s->rseq[i] = 0; }
    s->n_out = all_logits ? M : 1;
    for (int j = 0; j < s->n_out; j++) s->out[j] = all_logits ? j : M - 1;
    run_rows(m, s, tokens, M);
    return 0;
}
