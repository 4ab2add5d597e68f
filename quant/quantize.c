/* quantize.c — profile -> plan -> write. Weights: symmetric per-tensor INT8, scale =
 * absmax/127 (values in [-127, 127], never -128). Activations: per-tensor, dynamic or
 * static (calibration absmax/127). Spike projections (down/o inputs whose absmax towers
 * over the rest) stay in FP16, or FP8 E4M3 with scale absmax/448. */
#include "quant/quantize.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "format/ggml_quants.h"
#include "quant/cmpq_fit.h"

/* the input site of each projection */
static const int proj_site[SPQ_NPROJ] = {SPQ_SITE_QKV, SPQ_SITE_QKV, SPQ_SITE_QKV, SPQ_SITE_O,
                                         SPQ_SITE_GATEUP, SPQ_SITE_GATEUP, SPQ_SITE_DOWN};

const char *const spq_rule_names[SPQ_NRULES] = {"median", "ratio", "top", "abs", "random"};

spq_quant_opts spq_quant_defaults(void)
{
    return (spq_quant_opts){.act_bits = 8, .weight_bits = 8, .spike_act = SPQ_E4M3, .rule = SPQ_RULE_MEDIAN,
                            .threshold = 3.0f, .embed = SPQ_F16, .scheme = SPQ_SCHEME_W8A8, .bits = 4.0,
                            .outliers = 0.002, .cmpq_mode = -1};
}

float spq_rule_threshold(int rule) { return rule == SPQ_RULE_MEDIAN ? 3.0f : rule == SPQ_RULE_RATIO ? 50.0f : 0.0f; }

const char *spq_paper_keep(const spq_config *c, spq_err *e)
{
    /* the layers the paper keeps in high precision, by the shape that identifies each model */
    static const struct { const char *model; int layers, dim, hidden, kv_heads, vocab; const char *keep; } P[] = {
        {"LLaMA-2-7B", 32, 4096, 11008, 32, 32000, "1.down,30.down,31.o"},
        {"LLaMA-3-8B", 32, 4096, 14336, 8, 128256, "1.down,31.down"},
        {"Mistral-7B", 32, 4096, 14336, 8, 32000, "1.down,30.down,31.down,31.o"},
    };
    for (size_t i = 0; i < sizeof P / sizeof P[0]; i++)
        if (c->n_layers == P[i].layers && c->dim == P[i].dim && c->hidden_dim == P[i].hidden &&
            c->n_kv_heads == P[i].kv_heads && c->vocab_size == P[i].vocab)
            return P[i].keep;
    spq_fail(e, NULL, "--keep paper: the paper lists spike layers for LLaMA-2-7B, LLaMA-3-8B and Mistral-7B; this model "
             "(%d layers, dim %d, hidden %d, %d KV heads, vocab %d) is none of them", c->n_layers, c->dim, c->hidden_dim,
             c->n_kv_heads, c->vocab_size);
    return NULL;
}

int spq_profile_run(const spq_model *m, const int *ids, long n, int samples, int seq, int sample_rows,
                    spq_profile *prof, spq_err *e)
{
    if (seq > m->ctx) seq = m->ctx;
    if (n < 2) return spq_fail(e, NULL, "calibration text is too short");
    if (spq_profile_init(prof, m->cfg.n_layers)) return spq_fail(e, NULL, "out of memory");
    const spq_config *c = &m->cfg;
    int site_k[SPQ_NSITES] = {c->dim, c->n_heads * c->head_dim, c->dim, c->hidden_dim, c->dim};
    if (sample_rows > 0 && spq_profile_sample(prof, site_k, sample_rows)) {
        spq_profile_free(prof);
        return spq_fail(e, NULL, "out of memory for calibration row samples");
    }
    spq_state s;
    if (spq_state_check(NULL, m, seq, 1, 0, 0, SPQ_F32, NULL, e)) { spq_profile_free(prof); return -1; }
    if (spq_state_init(&s, m, seq)) { spq_profile_free(prof); return spq_fail(e, NULL, "out of memory"); }
    s.observe = spq_profile_observe;
    s.observe_ctx = prof;
    for (int k = 0; k < samples && (long)k * seq < n; k++) {
        long start = (long)k * seq;
        int len = (int)(n - start < seq ? n - start : seq);
        spq_forward(m, &s, ids + start, len, 0, 0);
        prof->tokens_seen += len;
    }
    spq_state_free(&s);
    return 0;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* median absmax over the four linear-input sites of every layer */
static float median_absmax(const spq_profile *p, int L)
{
    int n = 0;
    float *v = malloc(sizeof(float) * (size_t)L * 4);
    for (int l = 0; l < L; l++)
        for (int s = 0; s < 4; s++) v[n++] = p->s[l * SPQ_NSITES + s].absmax;
    qsort(v, (size_t)n, sizeof(float), cmp_float);
    float med = n % 2 ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
    free(v);
    return med;
}

int spq_plan(const spq_profile *prof, const spq_quant_opts *o, int L, unsigned char *fb, spq_err *e)
{
    memset(fb, 0, (size_t)L * SPQ_NPROJ);
    int count = 0;
    if (o->keep) { /* "5.down,9.o,3.down_proj" */
        char *dup = strdup(o->keep), *save = NULL;
        for (char *t = strtok_r(dup, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
            int l;
            char what[32];
            if (sscanf(t, "%d.%31s", &l, what) != 2 || l < 0 || l >= L) {
                spq_fail(e, NULL, "--keep: bad entry '%s' (LAYER.down or LAYER.o)", t);
                free(dup);
                return -1;
            }
            int j = !strncmp(what, "down", 4) ? SPQ_DOWN : !strncmp(what, "o", 1) ? SPQ_O : -1;
            if (j < 0) {
                spq_fail(e, NULL, "--keep: '%s': only down and o projections fall back", t);
                free(dup);
                return -1;
            }
            if (!fb[l * SPQ_NPROJ + j]) count++;
            fb[l * SPQ_NPROJ + j] = 1;
        }
        free(dup);
        return count;
    }
    if (!o->spike || (!prof && o->rule != SPQ_RULE_RANDOM)) return 0;
    int cap = o->rule == SPQ_RULE_TOP || o->rule == SPQ_RULE_RANDOM ? o->top : 0;
    if (o->max_fallback > 0 && (cap == 0 || o->max_fallback < cap)) cap = o->max_fallback;
    if (o->rule == SPQ_RULE_RANDOM) { /* the control: as many down/o projections, drawn uniformly */
        int n = 2 * L, *idx = malloc(sizeof(int) * (size_t)n);
        if (!idx) return spq_fail(e, NULL, "out of memory");
        uint64_t r = o->seed;
        for (int i = 0; i < n; i++) idx[i] = i;
        for (int i = n - 1; i > 0; i--) { /* Fisher-Yates on splitmix64 */
            uint64_t z = (r += 0x9E3779B97F4A7C15ull);
            z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
            z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
            z ^= z >> 31;
            int j = (int)(z % (uint64_t)(i + 1)), t = idx[i];
            idx[i] = idx[j]; idx[j] = t;
        }
        for (int i = 0; i < n && count < cap; i++, count++) fb[(idx[i] / 2) * SPQ_NPROJ + (idx[i] % 2 ? SPQ_DOWN : SPQ_O)] = 1;
        free(idx);
        return count;
    }
    float med = median_absmax(prof, L);
    /* candidates: down and o inputs the rule accepts, largest absmax first, capped */
    for (;;) {
        float best = 0;
        int bl = -1, bj = -1;
        for (int l = 0; l < L; l++)
            for (int j = SPQ_O; j <= SPQ_DOWN; j += SPQ_DOWN - SPQ_O) {
                const spq_site_stats *st = &prof->s[l * SPQ_NSITES + proj_site[j]];
                float a = st->absmax;
                int ok = o->rule == SPQ_RULE_MEDIAN ? a >= o->threshold * med
                       : o->rule == SPQ_RULE_RATIO  ? a >= o->threshold * spq_site_quantile(st, 0.5)
                       : o->rule == SPQ_RULE_ABS    ? a >= o->threshold
                                                    : 1;
                if (!fb[l * SPQ_NPROJ + j] && ok && a > best) { best = a; bl = l; bj = j; }
            }
        if (bl < 0 || (cap > 0 && count >= cap)) break;
        fb[bl * SPQ_NPROJ + bj] = 1;
        count++;
    }
    return count;
}

/* Output error of quantising w with scale sc: sum over samples and rows of (x . (w - q(w)))^2. */
static double clip_error(const float *w, int N, int K, const float *x, int S, float sc)
{
    const spq_kernels *k = spq_kern();
    double err = 0;
#pragma omp parallel reduction(+ : err)
    {
        float *dr = malloc(sizeof(float) * (size_t)K);
#pragma omp for schedule(static)
        for (int n = 0; n < N; n++) {
            const float *wr = w + (size_t)n * K;
            for (int i = 0; i < K; i++) {
                float q = nearbyintf(wr[i] / sc);
                q = q > 127 ? 127 : q < -127 ? -127 : q;
                dr[i] = wr[i] - q * sc;
            }
            for (int s = 0; s < S; s++) {
                double y = k->dot_f32(x + (size_t)s * K, dr, K);
                err += y * y;
            }
        }
        free(dr);
    }
    return err;
}

float spq_clip_search(const float *w, int N, int K, const float *x, int S)
{
    float amax = spq_kern()->absmax(w, (size_t)N * K);
    if (!(amax > 0) || S <= 0) return 1.0f;
    /* coarse grid 1.00 .. 0.50 step 0.05, then 0.01 steps around the best */
    float best = 1.0f;
    double be = clip_error(w, N, K, x, S, amax / 127.0f);
    for (int i = 1; i <= 10; i++) {
        float a = 1.0f - 0.05f * (float)i;
        double er = clip_error(w, N, K, x, S, a * amax / 127.0f);
        if (er < be) { be = er; best = a; }
    }
    float c = best;
    for (int i = -4; i <= 4; i++) {
        float a = c + 0.01f * (float)i;
        if (i == 0 || a > 1.0f || a < 0.45f) continue;
        double er = clip_error(w, N, K, x, S, a * amax / 127.0f);
        if (er < be) { be = er; best = a; }
    }
    return best;
}

/* How one tensor is stored: dtype, and for INT8 the code widths, scale granularity and
 * activation scale; x, S: calibration rows of its input when its INT8 scale is to be searched. */
typedef struct {
    int dtype, act_fmt, act_bits, act_token, weight_bits, channel;
    float act_scale;
    const float *x;
    int S;
} qparams;

/* Quantise t as p says (after folding in the smoothing factors sm, if any) and add it to d,
 * with its per-channel scales as NAME_scale when p->channel; *alpha receives the clipping
 * factor used (1: absmax). */
static spq_tensor *add_quantized(spq_ckpt *d, const spq_tensor *t, const qparams *p, const spq_smooth *sm, float *alpha)
{
    spq_tensor q = *t;
    size_t n = spq_tensor_numel(t);
    int dtype = p->dtype;
    float *f = malloc(4 * n), *cs = NULL;
    int N = (int)t->shape[0], K = t->ndim == 2 ? (int)t->shape[1] : 1;
    int channel = dtype == SPQ_I8 && p->channel && t->ndim == 2;
    q.owned = malloc(n * (dtype == SPQ_F16 ? 2 : dtype == SPQ_F32 ? 4 : 1));
    if (channel) cs = malloc(sizeof(float) * (size_t)N);
    q.layout = SPQ_ROWS;
    if (!f || !q.owned || (channel && !cs) || spq_tensor_to_f32(t, f)) { free(f); free(q.owned); free(cs); return NULL; }
    if (sm) spq_smooth_tensor(sm, t->name, f, t->shape[0], t->ndim == 2 ? t->shape[1] : 0);
    const spq_kernels *k = spq_kern();
    /* every step element by element, in chunks over the threads: the result does not
     * depend on their count */
    const size_t CH = (size_t)1 << 20;
    long nch = (long)((n + CH - 1) / CH);
    float amax = 0;
#pragma omp parallel for reduction(max : amax) schedule(static)
    for (long c = 0; c < nch; c++) {
        size_t c0 = (size_t)c * CH, len = n - c0 < CH ? n - c0 : CH;
        float a = k->absmax(f + c0, len);
        amax = a > amax ? a : amax;
    }
    q.dtype = dtype;
    q.act_scale = p->act_scale;
    q.act_fmt = p->act_fmt;
    q.act_bits = dtype == SPQ_I8 ? p->act_bits : 0;
    q.act_token = dtype == SPQ_I8 && p->act_token;
    q.scale = 1.0f;
    if (dtype == SPQ_I8) {
        float qm = spq_code_max(p->weight_bits);
        float a = p->x && p->S > 0 && t->ndim == 2 ? spq_clip_search(f, N, K, p->x, p->S) : 1.0f;
        if (alpha) *alpha = a;
        int8_t *c8 = q.owned;
        if (channel) { /* symmetric per output row: scale = absmax of the row / qmax */
#pragma omp parallel for schedule(static)
            for (int r = 0; r < N; r++) {
                float ra = k->absmax(f + (size_t)r * K, (size_t)K);
                cs[r] = ra > 0 ? a * ra / qm : 1.0f;
                k->quant_i8(f + (size_t)r * K, K, K, 1.0f / cs[r], qm, c8 + (size_t)r * K);
            }
        } else {
            q.scale = amax > 0 ? a * amax / qm : 1.0f;
            float inv = 1.0f / q.scale;
#pragma omp parallel for schedule(static)
            for (long c = 0; c < nch; c++) {
                size_t c0 = (size_t)c * CH, len = n - c0 < CH ? n - c0 : CH;
                k->quant_i8(f + c0, (int)len, (int)len, inv, qm, c8 + c0);
            }
        }
    } else if (dtype == SPQ_E4M3) {
        q.scale = amax > 0 ? amax / 448.0f : 1.0f;
        uint8_t *c = q.owned;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) c[i] = spq_f32_to_e4m3(f[i] / q.scale);
    } else if (dtype == SPQ_E5M2) { /* no scale: the weights as they are, rounded */
        uint8_t *c = q.owned;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) c[i] = spq_f32_to_e5m2(f[i]);
    } else if (dtype == SPQ_F16) {
        uint16_t *h = q.owned;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) h[i] = spq_f32_to_f16(f[i]);
    } else {
        memcpy(q.owned, f, 4 * n);
    }
    free(f);
    q.data = q.owned;
    q.nbytes = n * spq_dtype_size(dtype);
    spq_tensor *r = spq_ckpt_add(d, &q);
    if (!r) { free(q.owned); free(cs); return NULL; }
    if (channel) {
        spq_tensor c = {0};
        if (strlen(t->name) > sizeof c.name - 7) { free(cs); return NULL; } /* NAME_scale must fit */
        snprintf(c.name, sizeof c.name, "%.89s_scale", t->name);
        c.dtype = SPQ_F32; c.ndim = 1; c.shape[0] = N; c.scale = 1.0f;
        c.data = c.owned = cs; c.nbytes = sizeof(float) * (size_t)N;
        if (!(r = spq_ckpt_add(d, &c))) free(cs);
    }
    return r;
}

void spq_rtn_rows(float *w, int N, int K, int bits)
{
    float top = (float)((1 << bits) - 1);
    for (int n = 0; n < N; n++) {
        float *r = w + (size_t)n * K, lo = r[0], hi = r[0];
        for (int k = 1; k < K; k++) { lo = fminf(lo, r[k]); hi = fmaxf(hi, r[k]); }
        /* scale and zero as a real RTN file would store them: FP16 */
        float s = spq_f16_to_f32(spq_f32_to_f16((hi - lo) / top)), z = spq_f16_to_f32(spq_f32_to_f16(lo));
        for (int k = 0; k < K; k++) r[k] = s > 0 ? z + s * fminf(fmaxf(nearbyintf((r[k] - z) / s), 0), top) : z;
    }
}

/* A weight-only linear (CMPQ, RTN or a ggml block format); its allocation summary goes to alloc. */
static spq_tensor *add_weight_only(spq_ckpt *d, const spq_tensor *t, const spq_profile *prof, int l, int site,
                                   const spq_quant_opts *o, cJSON *alloc, const char *nm, spq_err *e)
{
    int N = (int)t->shape[0], K = (int)t->shape[1];
    spq_tensor q = *t;
    float *f = malloc(sizeof(float) * (size_t)N * K);
    double *h = malloc(sizeof(double) * (size_t)K);
    if (!f || !h || spq_tensor_to_f32(t, f)) { free(f); free(h); spq_fail(e, d->path, "out of memory quantising %s", t->name); return NULL; }
    q.scale = 1.0f; q.act_scale = 0; q.act_fmt = 0; q.layout = SPQ_ROWS;
    if (o->scheme == SPQ_SCHEME_GGML) { /* blocks of 32 along each row, as llama.cpp stores them */
        int el;
        size_t bb;
        uint8_t *blk = NULL;
        if (spq_ggml_block(o->ggml_type, &el, &bb) || K % el || !(blk = malloc((size_t)N * K / (size_t)el * bb)) ||
            spq_ggml_quant(o->ggml_type, f, blk, (int64_t)N * K) || spq_ggml_dequant(o->ggml_type, blk, f, (int64_t)N * K)) {
            int oom = blk == NULL && K % 32 == 0;
            free(blk); free(f); free(h);
            if (oom) spq_fail(e, d->path, "out of memory quantising %s", t->name);
            else spq_fail(e, d->path, "%s: %s needs rows whose length is a multiple of 32 (K = %d)", t->name,
                          spq_ggml_type_name(o->ggml_type), K);
            return NULL;
        }
        free(blk);
        free(h);
        q.dtype = SPQ_F32;
        q.owned = f;
        q.nbytes = sizeof(float) * (size_t)N * K;
        q.data = q.owned;
        spq_tensor *r = spq_ckpt_add(d, &q);
        if (!r) { free(f); spq_fail(e, d->path, "out of memory"); }
        return r;
    }
    if (o->scheme == SPQ_SCHEME_RTN) {
        spq_rtn_rows(f, N, K, (int)o->bits);
        uint16_t *c = malloc(2 * (size_t)N * K);
        if (!c) { free(f); free(h); spq_fail(e, d->path, "out of memory"); return NULL; }
        for (size_t i = 0; i < (size_t)N * K; i++) c[i] = spq_f32_to_f16(f[i]);
        q.dtype = SPQ_F16;
        q.owned = c;
        q.nbytes = 2 * (size_t)N * K;
    } else {
        if (!prof || spq_profile_energy(prof, l, site, K, h))
            for (int k = 0; k < K; k++) h[k] = 1.0;
        spq_cmpq_opts co = {o->bits, o->outliers, o->cmpq_mode};
        spq_cmpq_stats st;
        void *blob;
        size_t nb;
        char where[sizeof d->path + sizeof t->name + 2];
        snprintf(where, sizeof where, "%s: %s", d->path, t->name);
        if (spq_cmpq_quantize(f, N, K, h, &co, &blob, &nb, &st, where, e)) {
            free(f); free(h);
            return NULL;
        }
        q.dtype = SPQ_CMPQ;
        q.owned = blob;
        q.nbytes = nb;
        cJSON *a = cJSON_CreateObject();
        cJSON_AddNumberToObject(a, "bpw", st.bpw);
        cJSON *kc = cJSON_AddArrayToObject(a, "channels_2_3_4_5_6_8");
        for (int c = 0; c < SPQ_CMPQ_NCLS; c++) cJSON_AddItemToArray(kc, cJSON_CreateNumber(st.h.kc[c]));
        cJSON_AddNumberToObject(a, "outliers", st.h.n_out);
        cJSON_AddStringToObject(a, "tables", st.h.mode == SPQ_CMPQ_SHARED ? "shared" : "column");
        cJSON_AddItemToObject(alloc, nm, a);
    }
    free(f); free(h);
    q.data = q.owned;
    spq_tensor *r = spq_ckpt_add(d, &q);
    if (!r) { free(q.owned); spq_fail(e, d->path, "out of memory"); }
    return r;
}

static cJSON *site_json(const spq_site_stats *s)
{
    cJSON *o = cJSON_CreateObject();
    double med = spq_site_quantile(s, 0.5);
    cJSON_AddNumberToObject(o, "absmax", s->absmax);
    cJSON_AddNumberToObject(o, "p999", spq_site_quantile(s, 0.999));
    cJSON_AddNumberToObject(o, "median", med);
    cJSON_AddNumberToObject(o, "max_over_median", med > 0 ? s->absmax / med : 0);
    cJSON_AddNumberToObject(o, "kurtosis", spq_site_kurtosis(s));
    return o;
}

int spq_quantize(const spq_ckpt *src, const spq_profile *prof, const unsigned char *fb, const spq_quant_opts *o,
                 uint64_t calib_hash, spq_ckpt *d, spq_err *e)
{
    memset(d, 0, sizeof *d);
    d->cfg = src->cfg;
    d->tok = src->tok; /* shared, not owned: see spq_quantized_free */
    snprintf(d->path, sizeof d->path, "%s", src->path);
    if (o->act_static && !prof) return spq_fail(e, src->path, "static activation scales need calibration text (--calib)");
    if (o->act_bits < 4 || o->act_bits > 8 || o->weight_bits < 4 || o->weight_bits > 8)
        return spq_fail(e, src->path, "activation and weight bits are 4 to 8 (got %d and %d)", o->act_bits, o->weight_bits);
    if (o->clip && (o->weight_bits != 8 || o->weight_channel))
        return spq_fail(e, src->path, "the clipping search is for 8-bit weights with one scale per tensor");
    if (o->smooth && o->scheme != SPQ_SCHEME_W8A8) return spq_fail(e, src->path, "SmoothQuant is a W8A8 option");
    const int L = src->cfg.n_layers;
    cJSON *plan = cJSON_CreateObject(), *fbl = cJSON_CreateArray(), *sites = cJSON_CreateArray();
    static const char *scheme_names[] = {"w8a8", "cmpq", "rtn", "ggml"};
    int wonly = o->scheme != SPQ_SCHEME_W8A8;
    cJSON_AddStringToObject(plan, "scheme", scheme_names[o->scheme]);
    cJSON *alloc = cJSON_CreateObject();
    if (wonly) {
        cJSON_AddNumberToObject(plan, "bits", o->bits);
        if (o->scheme == SPQ_SCHEME_CMPQ) {
            cJSON_AddNumberToObject(plan, "outliers", o->outliers);
            cJSON_AddItemToObject(plan, "allocation", alloc);
        } else if (o->scheme == SPQ_SCHEME_GGML) {
            cJSON_AddStringToObject(plan, "ggml", spq_ggml_type_name(o->ggml_type));
        } else {
            cJSON_AddStringToObject(plan, "rtn", "per output row, asymmetric min-max, FP16 scale and zero; stored dequantised as FP16");
        }
    }
    if (!wonly || o->scheme != SPQ_SCHEME_CMPQ) cJSON_Delete(alloc);
    if (!wonly) {
        cJSON_AddStringToObject(plan, "act", o->act_static ? "static" : "dynamic");
        cJSON_AddNumberToObject(plan, "act_bits", o->act_bits);
        cJSON_AddStringToObject(plan, "act_scale", o->act_token && !o->act_static ? "token" : "tensor");
        cJSON_AddNumberToObject(plan, "weight_bits", o->weight_bits);
        cJSON_AddStringToObject(plan, "weight_scale", o->weight_channel ? "channel" : "tensor");
        if (o->smooth) cJSON_AddNumberToObject(plan, "smooth_alpha", o->smooth->alpha);
        cJSON_AddStringToObject(plan, "spike", o->spike == SPQ_F16 ? "fp16" : o->spike == SPQ_E4M3 ? "fp8-e4m3"
                                               : o->spike == SPQ_E5M2 ? "fp8-e5m2-unscaled" : "none");
        if (o->spike == SPQ_E4M3) cJSON_AddStringToObject(plan, "spike_act", spq_dtype_name(o->spike_act));
        static const char *rule_text[SPQ_NRULES] = {
            "down/o input absmax >= threshold x median absmax of all linear inputs",
            "down/o input absmax >= threshold x that input's median |x|", "the top down/o inputs by absmax",
            "down/o input absmax >= threshold", "down/o projections drawn at random (control)"};
        cJSON_AddStringToObject(plan, "rule", o->keep ? "explicit --keep" : rule_text[o->rule]);
        if (!o->keep && (o->rule == SPQ_RULE_TOP || o->rule == SPQ_RULE_RANDOM)) cJSON_AddNumberToObject(plan, "top", o->top);
        if (!o->keep && o->rule == SPQ_RULE_RANDOM) cJSON_AddNumberToObject(plan, "seed", (double)o->seed);
        if (!o->keep && o->rule != SPQ_RULE_TOP && o->rule != SPQ_RULE_RANDOM) cJSON_AddNumberToObject(plan, "threshold", o->threshold);
    }
    if (prof) {
        char hx[24];
        snprintf(hx, sizeof hx, "%016llx", (unsigned long long)calib_hash);
        cJSON_AddStringToObject(plan, "calib_hash", hx);
        cJSON_AddNumberToObject(plan, "calib_tokens", prof->tokens_seen);
        cJSON_AddNumberToObject(plan, "median_absmax", median_absmax(prof, L));
    }
    cJSON_AddStringToObject(plan, "embed", spq_dtype_name(o->embed));
    cJSON_AddItemToObject(plan, "fallback", fbl);
    if (o->clip && (!prof || !prof->sample)) { cJSON_Delete(plan); cJSON_Delete(sites); return spq_fail(e, src->path, "weight clipping search needs calibration text (--calib)"); }
    cJSON *clip = cJSON_CreateObject();
    if (o->clip) cJSON_AddItemToObject(plan, "clip", clip);
    else cJSON_Delete(clip);
    int rc = 0;
    for (int i = 0; i < src->n && !rc; i++) {
        const spq_tensor *t = &src->t[i];
        int l = -1, j = -1;
        char what[64];
        if (sscanf(t->name, "model.layers.%d.%63[^.]", &l, what) == 2 && strstr(t->name, "_proj.weight"))
            for (int k = 0; k < SPQ_NPROJ; k++)
                if (strstr(t->name, spq_proj_names[k])) j = k;
        spq_tensor *q;
        if (j >= 0 && l >= 0 && l < L && wonly) {
            char nm[32];
            snprintf(nm, sizeof nm, "%d.%s", l, spq_proj_names[j]);
            q = add_weight_only(d, t, prof, l, proj_site[j], o, alloc, nm, e);
            if (!q) { rc = -1; break; }
            spq_ckpt_release(src, t);
            continue;
        } else if (j >= 0 && l >= 0 && l < L) {
            const spq_site_stats *st = prof ? &prof->s[l * SPQ_NSITES + proj_site[j]] : NULL;
            if (fb[l * SPQ_NPROJ + j]) {
                int act = o->spike == SPQ_E4M3 ? o->spike_act : o->spike == SPQ_E5M2 ? SPQ_E5M2 : SPQ_F32;
                qparams p = {.dtype = o->spike == SPQ_E4M3 || o->spike == SPQ_E5M2 ? o->spike : SPQ_F16, .act_fmt = act};
                q = add_quantized(d, t, &p, o->smooth, NULL);
                char nm[32];
                snprintf(nm, sizeof nm, "%d.%s", l, j == SPQ_DOWN ? "down" : "o");
                cJSON_AddItemToArray(fbl, cJSON_CreateString(nm));
            } else {
                float qm = spq_code_max(o->act_bits), alpha = 1;
                qparams p = {.dtype = SPQ_I8, .act_bits = o->act_bits, .act_token = o->act_token && !o->act_static,
                             .weight_bits = o->weight_bits, .channel = o->weight_channel,
                             .act_scale = o->act_static && st->absmax > 0 ? st->absmax / qm : 0};
                p.S = o->clip && prof ? spq_profile_rows(prof, l, proj_site[j], &p.x) : 0;
                q = add_quantized(d, t, &p, o->smooth, &alpha);
                if (p.S) {
                    char nm[32];
                    snprintf(nm, sizeof nm, "%d.%s", l, spq_proj_names[j]);
                    cJSON_AddNumberToObject(clip, nm, (double)alpha);
                }
            }
        } else if (!strcmp(t->name, "model.embed_tokens.weight")) {
            q = add_quantized(d, t, &(qparams){.dtype = o->embed}, NULL, NULL);
        } else if (!strcmp(t->name, "lm_head.weight")) {
            q = add_quantized(d, t, &(qparams){.dtype = o->head_i8 ? SPQ_I8 : SPQ_F16}, NULL, NULL);
        } else { /* norms: FP32 (the smoothing factors of their outputs folded in) */
            q = add_quantized(d, t, &(qparams){.dtype = SPQ_F32}, o->smooth, NULL);
        }
        if (!q) rc = spq_fail(e, src->path, "out of memory quantising %s", t->name);
        /* the source's pages leave this process as each tensor is made: at most the
         * quantised checkpoint and one source tensor are resident */
        spq_ckpt_release(src, t);
    }
    if (prof) {
        for (int l = 0; l < L; l++)
            for (int s = 0; s < SPQ_NSITES; s++) {
                cJSON *sj = site_json(&prof->s[l * SPQ_NSITES + s]);
                cJSON_AddNumberToObject(sj, "layer", l);
                cJSON_AddStringToObject(sj, "site", spq_site_names[s]);
                cJSON_AddItemToArray(sites, sj);
            }
        cJSON_AddItemToObject(plan, "profile", sites);
    } else {
        cJSON_Delete(sites);
    }
    d->plan_json = cJSON_PrintUnformatted(plan);
    cJSON_Delete(plan);
    if (rc) spq_quantized_free(d);
    return rc;
}

void spq_quantized_free(spq_ckpt *d)
{
    for (int i = 0; i < d->n; i++) free(d->t[i].owned);
    free(d->t);
    cJSON_free(d->plan_json);
    memset(d, 0, sizeof *d);
}

/* ---- SmoothQuant ---- */

static const int smooth_site[4] = {SPQ_SITE_QKV, SPQ_SITE_O, SPQ_SITE_GATEUP, SPQ_SITE_DOWN};

static float smooth_factor(float a, float w, float alpha)
{
    if (!(a > 0) || !(w > 0)) return 1.0f;
    float s = powf(a, alpha) / powf(w, 1.0f - alpha);
    return s < 1e-5f ? 1e-5f : s > 1e5f ? 1e5f : s;
}

/* Largest |W[n][k]| over rows n of each column k, into wmax[K] (max with what is there). */
static int column_absmax(const spq_ckpt *src, const char *name, int K, float *wmax)
{
    const spq_tensor *t = spq_ckpt_find(src, name);
    if (!t || t->ndim != 2 || t->shape[1] != K) return -1;
    size_t N = (size_t)t->shape[0];
    float *f = malloc(sizeof(float) * N * (size_t)K);
    if (!f || spq_tensor_to_f32(t, f)) { free(f); return -1; }
    for (size_t n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            float a = fabsf(f[n * (size_t)K + (size_t)k]);
            wmax[k] = a > wmax[k] ? a : wmax[k];
        }
    free(f);
    return 0;
}

int spq_smooth_init(spq_smooth *sm, const spq_ckpt *src, spq_profile *prof, float alpha, spq_err *e)
{
    memset(sm, 0, sizeof *sm);
    const spq_config *c = &src->cfg;
    if (!(alpha >= 0 && alpha <= 1)) return spq_fail(e, NULL, "--smooth: alpha between 0 and 1, not %g", (double)alpha);
    int L = c->n_layers, hd = c->head_dim;
    sm->alpha = alpha; sm->n_layers = L; sm->rep = c->n_heads / c->n_kv_heads; sm->head_dim = hd;
    sm->k[0] = c->dim; sm->k[1] = c->n_heads * hd; sm->k[2] = c->dim; sm->k[3] = c->hidden_dim;
    size_t total = (size_t)L * (size_t)(sm->k[0] + sm->k[1] + sm->k[2] + sm->k[3]);
    sm->s = malloc(sizeof(float) * total);
    sm->at = malloc(sizeof(size_t) * (size_t)L * 4);
    int kmax = 0;
    for (int i = 0; i < 4; i++) kmax = sm->k[i] > kmax ? sm->k[i] : kmax;
    float *wmax = malloc(sizeof(float) * (size_t)kmax);
    if (!sm->s || !sm->at || !wmax) { free(wmax); spq_smooth_free(sm); return spq_fail(e, NULL, "out of memory"); }
    static const char *const readers[4][3] = {{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"},
                                              {"self_attn.o_proj", NULL, NULL},
                                              {"mlp.gate_proj", "mlp.up_proj", NULL},
                                              {"mlp.down_proj", NULL, NULL}};
    size_t at = 0;
    for (int l = 0; l < L; l++)
        for (int si = 0; si < 4; si++) {
            int K = sm->k[si], site = smooth_site[si];
            const float *amax = spq_profile_chan_max(prof, l, site, K);
            if (!amax) {
                free(wmax); spq_smooth_free(sm);
                return spq_fail(e, NULL, "--smooth: no calibration statistics for layer %d %s", l, spq_site_names[site]);
            }
            for (int k = 0; k < K; k++) wmax[k] = 0;
            for (int r = 0; r < 3 && readers[si][r]; r++) {
                char nm[96];
                snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, readers[si][r]);
                if (column_absmax(src, nm, K, wmax)) {
                    free(wmax); spq_smooth_free(sm);
                    return spq_fail(e, src->path, "--smooth: cannot read %s", nm);
                }
            }
            float *s = sm->s + at;
            sm->at[l * 4 + si] = at;
            at += (size_t)K;
            if (si == 1 && sm->rep > 1) { /* o's input: one factor per channel of a KV head's value */
                int kv = K / sm->rep;
                for (int g = 0; g < kv; g++) {
                    int kvh = g / hd, d = g % hd;
                    float a = 0, w = 0;
                    for (int h = kvh * sm->rep; h < (kvh + 1) * sm->rep; h++) {
                        a = fmaxf(a, amax[h * hd + d]);
                        w = fmaxf(w, wmax[h * hd + d]);
                    }
                    for (int h = kvh * sm->rep; h < (kvh + 1) * sm->rep; h++) s[h * hd + d] = smooth_factor(a, w, alpha);
                }
            } else {
                for (int k = 0; k < K; k++) s[k] = smooth_factor(amax[k], wmax[k], alpha);
            }
            /* the profile now describes x / s: what the smoothed model's linears read */
            size_t i = (size_t)l * SPQ_NSITES + (size_t)site;
            float *cm = prof->chan_max[i], top = 0;
            for (int k = 0; k < K; k++) {
                cm[k] /= s[k];
                prof->chan[i][k] /= (double)s[k] * s[k];
                top = cm[k] > top ? cm[k] : top;
            }
            prof->s[i].absmax = top;
            const float *rows;
            int S = spq_profile_rows(prof, l, site, &rows);
            for (int r = 0; r < S; r++)
                for (int k = 0; k < K; k++) ((float *)rows)[(size_t)r * K + k] /= s[k];
        }
    free(wmax);
    return 0;
}

void spq_smooth_tensor(const spq_smooth *sm, const char *name, float *w, int64_t rows, int64_t cols)
{
    int l;
    char what[64];
    if (sscanf(name, "model.layers.%d.%63s", &l, what) != 2 || l < 0 || l >= sm->n_layers) return;
    const float *sq = sm->s + sm->at[l * 4], *so = sm->s + sm->at[l * 4 + 1], *sg = sm->s + sm->at[l * 4 + 2],
                *sd = sm->s + sm->at[l * 4 + 3];
    const float *col = NULL, *row = NULL;
    int vrow = 0;
    if (!strcmp(what, "input_layernorm.weight")) row = sq;
    else if (!strcmp(what, "post_attention_layernorm.weight")) row = sg;
    else if (!strcmp(what, "self_attn.q_proj.weight") || !strcmp(what, "self_attn.k_proj.weight")) col = sq;
    else if (!strcmp(what, "self_attn.v_proj.weight")) { col = sq; row = so; vrow = 1; }
    else if (!strcmp(what, "self_attn.o_proj.weight")) col = so;
    else if (!strcmp(what, "mlp.gate_proj.weight")) col = sg;
    else if (!strcmp(what, "mlp.up_proj.weight")) { col = sg; row = sd; }
    else if (!strcmp(what, "mlp.down_proj.weight")) col = sd;
    else return;
    int64_t nc = cols > 0 ? cols : 1, hd = sm->head_dim, rep = sm->rep;
    for (int64_t r = 0; r < rows; r++) {
        float *wr = w + r * nc;
        if (col)
            for (int64_t k = 0; k < nc; k++) wr[k] *= col[k];
        if (row) { /* v_proj row r feeds o's channels h * hd + r % hd of the heads of KV head r / hd */
            float sr = vrow ? row[(r / hd) * rep * hd + r % hd] : row[r];
            for (int64_t k = 0; k < nc; k++) wr[k] /= sr;
        }
    }
}

void spq_smooth_free(spq_smooth *sm)
{
    free(sm->s);
    free(sm->at);
    memset(sm, 0, sizeof *sm);
}
