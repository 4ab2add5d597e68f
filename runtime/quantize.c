/* quantize.c — profile -> plan -> write. Weights: symmetric per-tensor INT8, scale =
 * absmax/127 (values in [-127, 127], never -128). Activations: per-tensor, dynamic or
 * static (calibration absmax/127). Spike projections (down/o inputs whose absmax towers
 * over the rest) stay in FP16, or FP8 E4M3 with scale absmax/448. */
#include "runtime/quantize.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "runtime/cmpq.h"

/* the input site of each projection */
static const int proj_site[SPQ_NPROJ] = {SPQ_SITE_QKV, SPQ_SITE_QKV, SPQ_SITE_QKV, SPQ_SITE_O,
                                         SPQ_SITE_GATEUP, SPQ_SITE_GATEUP, SPQ_SITE_DOWN};

spq_quant_opts spq_quant_defaults(void)
{
    spq_quant_opts o = {0, 0, SPQ_E4M3, 3.0f, 0, NULL, SPQ_F16, 0, 0, SPQ_SCHEME_W8A8, 4.0, 0.002, -1};
    return o;
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
    s.prof = prof;
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
    if (!o->spike || !prof) return 0;
    float med = median_absmax(prof, L);
    /* candidates: down and o inputs over the threshold, largest first, capped */
    for (;;) {
        float best = 0;
        int bl = -1, bj = -1;
        for (int l = 0; l < L; l++)
            for (int j = SPQ_O; j <= SPQ_DOWN; j += SPQ_DOWN - SPQ_O) {
                float a = prof->s[l * SPQ_NSITES + proj_site[j]].absmax;
                if (!fb[l * SPQ_NPROJ + j] && a >= o->threshold * med && a > best) { best = a; bl = l; bj = j; }
            }
        if (bl < 0 || (o->max_fallback > 0 && count >= o->max_fallback)) break;
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

/* x, S: calibration rows of the tensor's input when its INT8 scale is to be searched;
 * *alpha receives the clipping factor used (1: absmax). */
static spq_tensor *add_quantized(spq_ckpt *d, const spq_tensor *t, int dtype, float act_scale, int act_fmt,
                                 const float *x, int S, float *alpha)
{
    spq_tensor q = *t;
    size_t n = spq_tensor_numel(t);
    float *f = malloc(4 * n);
    q.owned = malloc(n * (dtype == SPQ_F16 ? 2 : dtype == SPQ_F32 ? 4 : 1));
    q.layout = SPQ_ROWS;
    if (!f || !q.owned || spq_tensor_to_f32(t, f)) { free(f); free(q.owned); return NULL; }
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
    q.act_scale = act_scale;
    q.act_fmt = act_fmt;
    q.scale = 1.0f;
    if (dtype == SPQ_I8) {
        float a = x && S > 0 && t->ndim == 2 ? spq_clip_search(f, (int)t->shape[0], (int)t->shape[1], x, S) : 1.0f;
        if (alpha) *alpha = a;
        q.scale = amax > 0 ? a * amax / 127.0f : 1.0f;
        float inv = 1.0f / q.scale;
        int8_t *c8 = q.owned;
#pragma omp parallel for schedule(static)
        for (long c = 0; c < nch; c++) {
            size_t c0 = (size_t)c * CH, len = n - c0 < CH ? n - c0 : CH;
            k->quant_i8(f + c0, (int)len, (int)len, inv, c8 + c0);
        }
    } else if (dtype == SPQ_E4M3) {
        q.scale = amax > 0 ? amax / 448.0f : 1.0f;
        uint8_t *c = q.owned;
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) c[i] = spq_f32_to_e4m3(f[i] / q.scale);
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
    return spq_ckpt_add(d, &q);
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

/* A weight-only linear (CMPQ or RTN); its allocation summary goes to alloc. */
static spq_tensor *add_weight_only(spq_ckpt *d, const spq_tensor *t, const spq_profile *prof, int l, int site,
                                   const spq_quant_opts *o, cJSON *alloc, const char *nm, spq_err *e)
{
    int N = (int)t->shape[0], K = (int)t->shape[1];
    spq_tensor q = *t;
    float *f = malloc(sizeof(float) * (size_t)N * K);
    double *h = malloc(sizeof(double) * (size_t)K);
    if (!f || !h || spq_tensor_to_f32(t, f)) { free(f); free(h); spq_fail(e, d->path, "out of memory quantising %s", t->name); return NULL; }
    q.scale = 1.0f; q.act_scale = 0; q.act_fmt = 0; q.layout = SPQ_ROWS;
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
        cJSON *kc = cJSON_AddArrayToObject(a, "channels_2_3_4_8");
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
    const int L = src->cfg.n_layers;
    cJSON *plan = cJSON_CreateObject(), *fbl = cJSON_CreateArray(), *sites = cJSON_CreateArray();
    static const char *scheme_names[] = {"w8a8", "cmpq", "rtn"};
    int wonly = o->scheme != SPQ_SCHEME_W8A8;
    cJSON_AddStringToObject(plan, "scheme", scheme_names[o->scheme]);
    cJSON *alloc = cJSON_CreateObject();
    if (wonly) {
        cJSON_AddNumberToObject(plan, "bits", o->bits);
        if (o->scheme == SPQ_SCHEME_CMPQ) {
            cJSON_AddNumberToObject(plan, "outliers", o->outliers);
            cJSON_AddItemToObject(plan, "allocation", alloc);
        } else {
            cJSON_AddStringToObject(plan, "rtn", "per output row, asymmetric min-max, FP16 scale and zero; stored dequantised as FP16");
        }
    }
    if (!wonly || o->scheme != SPQ_SCHEME_CMPQ) cJSON_Delete(alloc);
    if (!wonly) {
        cJSON_AddStringToObject(plan, "act", o->act_static ? "static" : "dynamic");
        cJSON_AddStringToObject(plan, "spike", o->spike == SPQ_F16 ? "fp16" : o->spike == SPQ_E4M3 ? "fp8-e4m3" : "none");
        if (o->spike == SPQ_E4M3) cJSON_AddStringToObject(plan, "spike_act", spq_dtype_name(o->spike_act));
        cJSON_AddStringToObject(plan, "rule", o->keep ? "explicit --keep" : "down/o input absmax >= threshold x median absmax of all linear inputs");
        if (!o->keep) cJSON_AddNumberToObject(plan, "threshold", o->threshold);
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
                int act = o->spike == SPQ_E4M3 ? o->spike_act : SPQ_F32;
                q = add_quantized(d, t, o->spike == SPQ_E4M3 ? SPQ_E4M3 : SPQ_F16, 0, act, NULL, 0, NULL);
                char nm[32];
                snprintf(nm, sizeof nm, "%d.%s", l, j == SPQ_DOWN ? "down" : "o");
                cJSON_AddItemToArray(fbl, cJSON_CreateString(nm));
            } else {
                float as = o->act_static && st->absmax > 0 ? st->absmax / 127.0f : 0, alpha = 1;
                const float *x = NULL;
                int S = o->clip && prof ? spq_profile_rows(prof, l, proj_site[j], &x) : 0;
                q = add_quantized(d, t, SPQ_I8, as, 0, x, S, &alpha);
                if (S) {
                    char nm[32];
                    snprintf(nm, sizeof nm, "%d.%s", l, spq_proj_names[j]);
                    cJSON_AddNumberToObject(clip, nm, (double)alpha);
                }
            }
        } else if (!strcmp(t->name, "model.embed_tokens.weight")) {
            q = add_quantized(d, t, o->embed, 0, 0, NULL, 0, NULL);
        } else if (!strcmp(t->name, "lm_head.weight")) {
            q = add_quantized(d, t, o->head_i8 ? SPQ_I8 : SPQ_F16, 0, 0, NULL, 0, NULL);
        } else { /* norms: FP32 */
            q = add_quantized(d, t, SPQ_F32, 0, 0, NULL, 0, NULL);
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
