/* linear.c — one linear layer in its chosen precision: packing at load, and the
 * quantise-then-GEMM step at run time. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "format/ggml_quants.h"
#include "runtime/cmpq.h"
#include "runtime/linear.h"

int spq_linear_init(spq_linear *l, const spq_tensor *t, const spq_tensor *cs, spq_err *e)
{
    memset(l, 0, sizeof *l);
    int N = (int)t->shape[0], K = (int)t->shape[1];
    l->N = N; l->K = K; l->w_scale = t->scale; l->a_scale = t->act_scale; l->act_fmt = t->act_fmt;
    l->qmax = spq_code_max(t->act_bits);
    l->act_token = t->act_token;
    if (cs) { /* checked by spq_ckpt_validate: F32, N positive finite values */
        if (t->dtype != SPQ_I8) return spq_fail(e, NULL, "%s: per-channel scales belong to INT8 weights", t->name);
        l->cscale = cs->data;
    }
    size_t nk = (size_t)N * K;
    if (t->dtype == SPQ_GGML) { /* checked by spq_ckpt_validate */
        l->kind = SPQ_GGML;
        l->gq = spq_ggml_gq(t->gtype);
        l->ldw = spq_tensor_row_bytes(t);
        l->w_scale = 1.0f;
        if (!spq_linear_repacks(t)) { /* run where the checkpoint holds it */
            l->mapped = 1;
            l->w = (void *)t->data;
            return 0;
        }
        size_t gb = spq_gq_r8_bytes(l->gq, K);
        if (!(l->w = aligned_alloc(64, gb * (size_t)(N / 8)))) return spq_fail(e, NULL, "out of memory repacking %s", t->name);
        /* each group of 8 rows on its own: the same bytes whatever the thread count */
#pragma omp parallel for schedule(static) if (N >= 1024)
        for (int i = 0; i < N / 8; i++)
            spq_gq_pack_r8(l->gq, K, (const uint8_t *)t->data + (size_t)i * 8 * l->ldw, l->ldw, (uint8_t *)l->w + (size_t)i * gb);
        l->ldw = gb;
        l->r8 = 1;
        return 0;
    }
    if (t->layout == SPQ_PANELS) { /* checked against spq_panel_bytes when read */
        l->mapped = 1;
        l->w = (void *)t->data;
        l->kind = t->dtype;
        if (t->dtype == SPQ_I8) l->wsum = (int32_t *)((char *)l->w + spq_pack_q8_wsum_at(N, K));
        if (t->dtype == SPQ_F16 || t->dtype == SPQ_BF16 || t->dtype == SPQ_F32) l->w_scale = 1.0f;
        return 0;
    }
    switch (t->dtype) {
    case SPQ_CMPQ: /* weight-only: codes stay in the checkpoint's memory, tables expand to floats */
        l->kind = SPQ_CMPQ;
        l->w = malloc(sizeof(spq_cmpq_rt));
        if (!l->w || spq_cmpq_rt_init(l->w, t->data)) break;
        return 0;
    case SPQ_I8:
        l->kind = SPQ_I8;
        l->w = aligned_alloc(64, (spq_pack_q8_size(N, K) + 63) & ~(size_t)63);
        l->wsum = aligned_alloc(64, sizeof(int32_t) * (size_t)((N + 63) / 64 * 64));
        if (!l->w || !l->wsum) break;
        spq_pack_q8(t->data, N, K, l->w, l->wsum);
        return 0;
    case SPQ_E4M3:
        l->kind = SPQ_E4M3;
        l->w = aligned_alloc(64, (spq_pack_q8_size(N, K) + 63) & ~(size_t)63);
        if (!l->w) break;
        spq_pack_fp8(t->data, N, K, l->w);
        return 0;
    case SPQ_BF16: /* read as it is stored (a BF16 checkpoint's profiling pass needs no FP32 copy) */
        l->kind = SPQ_BF16;
        l->w_scale = 1.0f;
        l->w = aligned_alloc(64, (spq_pack_f_size(N, K, 2) + 63) & ~(size_t)63);
        if (!l->w) break;
        spq_pack_f(t->data, N, K, 2, l->w);
        return 0;
    case SPQ_F16:
    case SPQ_E5M2: { /* E5M2 is the top byte of an IEEE half: widen exactly to F16 */
        l->kind = SPQ_F16;
        uint16_t *h = malloc(2 * nk);
        l->w = aligned_alloc(64, (spq_pack_f_size(N, K, 2) + 63) & ~(size_t)63);
        if (!h || !l->w) { free(h); break; }
        const uint8_t *src = t->data;
        if (t->dtype == SPQ_F16) memcpy(h, src, 2 * nk);
        else
            for (size_t i = 0; i < nk; i++) h[i] = (uint16_t)(src[i] << 8);
        spq_pack_f(h, N, K, 2, l->w);
        free(h);
        if (t->dtype == SPQ_F16) l->w_scale = 1.0f;
        return 0;
    }
    default: { /* F32 */
        l->kind = SPQ_F32;
        l->w_scale = 1.0f;
        float *f = malloc(4 * nk);
        l->w = aligned_alloc(64, (spq_pack_f_size(N, K, 4) + 63) & ~(size_t)63);
        if (!f || !l->w) { free(f); break; }
        spq_tensor_to_f32(t, f);
        spq_pack_f(f, N, K, 4, l->w);
        free(f);
        return 0;
    }
    }
    spq_linear_free(l);
    return spq_fail(e, NULL, "out of memory packing %s", t->name);
}

int spq_linear_repacks(const spq_tensor *t)
{
    return t->dtype == SPQ_GGML && spq_ggml_gq(t->gtype) >= 0 && spq_gq_r8(spq_ggml_gq(t->gtype)) && t->shape[0] % 8 == 0 &&
           t->shape[1] % 256 == 0;
}

size_t spq_linear_repacked_bytes(const spq_tensor *t)
{
    return (size_t)(t->shape[0] / 8) * spq_gq_r8_bytes(spq_ggml_gq(t->gtype), (int)t->shape[1]);
}

void spq_linear_free(spq_linear *l)
{
    if (l->kind == SPQ_CMPQ && l->w) spq_cmpq_rt_free(l->w);
    if (!l->mapped) {
        free(l->w);
        free(l->wsum);
    }
    memset(l, 0, sizeof *l);
}

/* The largest |x| over all M rows of x[M][K], each thread scanning its rows r0..r1. */
static float team_absmax(const spq_thr *t, const float *x, int r0, int r1, int K)
{
    const spq_kernels *k = t->team->k;
    float amax = 0.0f;
    for (int m = r0; m < r1; m++) {
        float a = k->absmax(x + (size_t)m * K, (size_t)K);
        amax = a > amax ? a : amax;
    }
    return spq_team_max(t, amax);
}

/* The activation scale's absmax for row m: its tensor's (several) or the one value. */
static float row_amax(const spq_rows *rows, int m, float one) { return rows && rows->n > 1 ? rows->tmax[rows->id[m]] : one; }

/* Absmax of each activation tensor of x[M][K]: the team max when the rows form one tensor
 * (returned), else each tensor's in rows->tmax. Each thread scans its rows r0..r1. */
static float input_absmax(const spq_thr *t, const spq_rows *rows, const float *x, int M, int r0, int r1, int K)
{
    if (!rows || rows->n <= 1) return team_absmax(t, x, r0, r1, K);
    const spq_kernels *k = t->team->k;
    for (int m = r0; m < r1; m++) rows->rmax[m] = k->absmax(x + (size_t)m * K, (size_t)K);
    spq_team_sync(t);
    if (t->id == 0) {
        for (int j = 0; j < rows->n; j++) rows->tmax[j] = 0;
        for (int m = 0; m < M; m++) {
            float *v = &rows->tmax[rows->id[m]];
            *v = rows->rmax[m] > *v ? rows->rmax[m] : *v;
        }
    }
    spq_team_sync(t);
    return 0;
}

/* Round rows r0..r1 of x to FP8 E4M3 with one scale per activation tensor (its absmax ->
 * 448), as the paper's W8A8-FP8 setting does, writing [M][kp] rows. */
static void round_e4m3(const spq_thr *t, const spq_rows *rows, const float *x, int M, int r0, int r1, int K, int kp,
                       float *out)
{
    float one = input_absmax(t, rows, x, M, r0, r1, K);
    for (int m = r0; m < r1; m++) {
        float amax = row_amax(rows, m, one), s = amax > 0 ? amax / 448.0f : 1.0f;
        for (int i = 0; i < K; i++) out[(size_t)m * kp + i] = spq_e4m3_to_f32(spq_f32_to_e4m3(x[(size_t)m * K + i] / s)) * s;
        for (int i = K; i < kp; i++) out[(size_t)m * kp + i] = 0;
    }
}

/* Bring x into the form l's GEMM reads: INT8 codes in xq, or FP16/FP8-rounded / K-padded
 * floats in xf. *xin is what float GEMMs read. Returns the INT8 activation scale when the
 * rows are one tensor (or the scale is static), else 0 with each row's scale in rsc[m].
 * Each thread converts its rows (spq_split over M) and reads only those of x; the team
 * syncs before returning. */
static float prepare_input(const spq_thr *t, const spq_linear *l, const float *x, int M, const spq_rows *rows,
                           int8_t *xq, float *xf, float *rsc, const float **xin)
{
    const spq_kernels *k = t->team->k;
    int K = l->K, kp = spq_kpad(K), r0, r1;
    float sa = 1.0f;
    spq_split(t, M, &r0, &r1);
    *xin = x;
    switch (l->kind) {
    case SPQ_I8: {
        sa = l->a_scale;
        float qm = l->qmax;
        if (sa <= 0) { /* dynamic: the absmax of each row (per token) or of the input tensor */
            float one = l->act_token ? 0 : input_absmax(t, rows, x, M, r0, r1, K);
            if (l->act_token || (rows && rows->n > 1)) { /* a scale per row */
                sa = 0;
                for (int m = r0; m < r1; m++) {
                    float amax = l->act_token ? k->absmax(x + (size_t)m * K, (size_t)K) : row_amax(rows, m, one);
                    rsc[m] = amax > 0 ? amax / qm : 1.0f;
                    k->quant_i8(x + (size_t)m * K, K, kp, 1.0f / rsc[m], qm, xq + (size_t)m * kp);
                }
                break;
            }
            sa = one > 0 ? one / qm : 1.0f;
        }
        float inv = 1.0f / sa;
        for (int m = r0; m < r1; m++) k->quant_i8(x + (size_t)m * K, K, kp, inv, qm, xq + (size_t)m * kp);
        break;
    }
    case SPQ_E4M3:
        if (l->act_fmt == SPQ_E4M3) round_e4m3(t, rows, x, M, r0, r1, K, kp, xf);
        else
            for (int m = r0; m < r1; m++) {
                memcpy(xf + (size_t)m * kp, x + (size_t)m * K, 4 * (size_t)K);
                for (int i = K; i < kp; i++) xf[(size_t)m * kp + i] = 0;
            }
        *xin = xf;
        break;
    case SPQ_F16:
        if (l->act_fmt == SPQ_F16) {
            for (size_t i = (size_t)r0 * K; i < (size_t)r1 * K; i++) xf[i] = spq_f16_to_f32(spq_f32_to_f16(x[i]));
            *xin = xf;
        } else if (l->act_fmt == SPQ_E4M3) {
            round_e4m3(t, rows, x, M, r0, r1, K, K, xf);
            *xin = xf;
        } else if (l->act_fmt == SPQ_E5M2) { /* the paper's FP8 setting: no scale */
            for (size_t i = (size_t)r0 * K; i < (size_t)r1 * K; i++) xf[i] = spq_e5m2_to_f32(spq_f32_to_e5m2(x[i]));
            *xin = xf;
        }
        break;
    default:
        break;
    }
    spq_team_sync(t);
    return sa;
}

/* The GEMM kind and outputs of linears ls[0..n) (same kind and input format). An INT8
 * activation scale sa of 0 (one per row) or per-channel weight scales make the kernels'
 * scale 1: the outputs are scaled after the GEMM (int8_epilogue). */
static int gemm_outs(const spq_linear *const *ls, int n, float sa, float *const *ys, spq_gemm_out *outs)
{
    int kind = ls[0]->kind == SPQ_I8 ? SPQ_GEMM_Q8 : ls[0]->kind == SPQ_E4M3 ? SPQ_GEMM_E4M3
             : ls[0]->kind == SPQ_F16 ? SPQ_GEMM_F16 : ls[0]->kind == SPQ_BF16 ? SPQ_GEMM_BF16 : SPQ_GEMM_F32;
    for (int i = 0; i < n; i++) {
        const spq_linear *l = ls[i];
        float sc = kind != SPQ_GEMM_Q8 ? l->w_scale : sa > 0 && !l->cscale ? l->w_scale * sa : 1.0f;
        outs[i] = (spq_gemm_out){l->N, l->w, l->wsum, sc, ys ? ys[i] : NULL, l->N};
    }
    return kind;
}

/* y[m][j] *= w * a for this thread's rows of each output, w the weight scale (the
 * tensor's, or channel j's) and a the activation scale (sa, or row m's rsc[m] when sa is
 * 0): the INT8 epilogue where the kernels could not apply one scale. They wrote
 * (float)acc * 1, exact, so this is the same product (float)acc * (w * a) as a single
 * scale gives, on every ISA. Outputs whose kernels applied the scale are skipped. */
static void int8_epilogue(const spq_thr *t, const spq_linear *const *ls, int n, int M, float sa, const float *rsc,
                          float *const *ys)
{
    int r0, r1;
    spq_split(t, M, &r0, &r1);
    for (int i = 0; i < n; i++) {
        const float *cs = ls[i]->cscale;
        if (sa > 0 && !cs) continue;
        for (int m = r0; m < r1; m++) {
            float a = sa > 0 ? sa : rsc[m], *y = ys[i] + (size_t)m * ls[i]->N;
            if (!cs) {
                float sc = ls[i]->w_scale * a;
                for (int j = 0; j < ls[i]->N; j++) y[j] *= sc;
            } else {
                for (int j = 0; j < ls[i]->N; j++) y[j] *= cs[j] * a;
            }
        }
    }
    spq_team_sync(t);
}

/* Hint (spq_team_hint) the weights this thread reads first when the team applies ls[0..n)
 * to M rows (nothing for CMPQ or n = 0). */
static void linear_hint(const spq_thr *t, const spq_linear *const *ls, int n, int M)
{
    if (!ls || n < 1 || ls[0]->kind == SPQ_CMPQ || ls[0]->kind == SPQ_GGML) {
        spq_team_hint(t, NULL, 0, 0, 1);
        return;
    }
    spq_gemm_out outs[SPQ_GEMM_MAXN];
    int c = n < SPQ_GEMM_MAXN ? n : SPQ_GEMM_MAXN;
    int kind = gemm_outs(ls, c, 1.0f, NULL, outs);
    spq_gemm_team_hint(t, kind, M, ls[0]->K, outs, c);
}

/* ys[i] = x ls[i]^T for block-format linears on one input (their formats may differ, as a
 * Q4_K_M file's Q4_K q/k and Q6_K v do): x quantised once per activation block size the
 * formats use (32 and/or 256 values) into xf, each thread its rows; then work items of 16
 * weight rows over every matrix in turn, each for all M input rows. */
static void ggml_apply(const spq_thr *t, const spq_linear *const *ls, int n, const float *x, int M, float *const *ys,
                       float *xf)
{
    const spq_kernels *k = t->team->k;
    int K = ls[0]->K, r0, r1, use[2] = {0, 0};
    for (int i = 0; i < n; i++) use[spq_gq_act_block(ls[i]->gq) == 256] = 1;
    uint8_t *xa[2] = {NULL, NULL}, *p = (uint8_t *)xf;
    size_t lda[2] = {spq_gq_act_bytes(32, K), spq_gq_act_bytes(256, K)};
    spq_split(t, M, &r0, &r1);
    for (int j = 0; j < 2; j++) {
        if (!use[j]) continue;
        xa[j] = p;
        p += (size_t)M * lda[j];
        for (int m = r0; m < r1; m++) k->gq_quant(j ? 256 : 32, K, x + (size_t)m * K, xa[j] + (size_t)m * lda[j]);
    }
    spq_team_sync(t);
    int start[SPQ_GEMM_MAXN + 1], items = 0;
    for (int i = 0; i < n; i++) { start[i] = items; items += (ls[i]->N + 15) / 16; } /* 16 rows: two groups of 8 */
    start[n] = items;
    spq_loop lp;
    spq_loop_begin(t, items, &lp);
    for (int it; (it = spq_loop_next(t, &lp)) >= 0;) {
        int i = 0;
        while (it >= start[i + 1]) i++;
        const spq_linear *l = ls[i];
        int r = 16 * (it - start[i]), nr = l->N - r < 16 ? l->N - r : 16, j = spq_gq_act_block(l->gq) == 256;
        if (l->r8)
            k->gq_dot_r8(l->gq, K, nr / 8, (const uint8_t *)l->w + (size_t)(r / 8) * l->ldw, M, xa[j], lda[j], ys[i] + r,
                         (size_t)l->N);
        else
            k->gq_dot(l->gq, K, nr, (const uint8_t *)l->w + (size_t)r * l->ldw, l->ldw, M, xa[j], lda[j], ys[i] + r,
                      (size_t)l->N);
    }
    spq_team_sync(t);
}

void spq_linear_apply_n(const spq_thr *t, const spq_linear *const *ls, int n, const float *x, int M,
                        const spq_rows *rows, float *const *ys, int8_t *xq, float *xf, const spq_linear *const *next,
                        int nnext)
{
    for (int i = 1; i < n; i++) /* linears of different kinds (a mixed file) run one by one */
        if (ls[i]->kind != ls[0]->kind) {
            for (int j = 0; j < n; j++) spq_linear_apply_n(t, ls + j, 1, x, M, rows, ys + j, xq, xf, next, nnext);
            return;
        }
    if (ls[0]->kind == SPQ_GGML) {
        for (int i0 = 0; i0 < n; i0 += SPQ_GEMM_MAXN)
            ggml_apply(t, ls + i0, n - i0 < SPQ_GEMM_MAXN ? n - i0 : SPQ_GEMM_MAXN, x, M, ys + i0, xf);
        return;
    }
    if (ls[0]->kind == SPQ_CMPQ) { /* weight-only: each reads x itself (xf: its scratch) */
        for (int i0 = 0; i0 < n; i0 += SPQ_CMPQ_MAXN) {
            int c = n - i0 < SPQ_CMPQ_MAXN ? n - i0 : SPQ_CMPQ_MAXN;
            const spq_cmpq_rt *rs[SPQ_CMPQ_MAXN];
            for (int i = 0; i < c; i++) rs[i] = ls[i0 + i]->w;
            const spq_linear *nx = i0 + c < n ? ls[i0 + c] : next && nnext > 0 ? next[0] : NULL;
            spq_cmpq_apply_n(t, rs, c, x, M, ys + i0, xf, nx && nx->kind == SPQ_CMPQ ? nx->w : NULL);
        }
        return;
    }
    linear_hint(t, ls, n, M); /* for the waits while the input is prepared */
    const float *xin;
    float *rsc = rows ? rows->rmax : NULL;
    float sa = prepare_input(t, ls[0], x, M, rows, xq, xf, rsc, &xin);
    linear_hint(t, next, nnext, M); /* for the wait at the end of the GEMM, and after */
    spq_gemm_out outs[SPQ_GEMM_MAXN];
    int kind = SPQ_GEMM_F32;
    for (int i0 = 0; i0 < n; i0 += SPQ_GEMM_MAXN) { /* q, k, v (or gate, up): one job, one balance */
        int c = n - i0 < SPQ_GEMM_MAXN ? n - i0 : SPQ_GEMM_MAXN;
        kind = gemm_outs(ls + i0, c, sa, ys + i0, outs);
        spq_gemm_team(t, t->team->k, kind, M, ls[0]->K, kind == SPQ_GEMM_Q8 ? (const void *)xq : xin, outs, c);
    }
    if (kind == SPQ_GEMM_Q8) {
        int post = sa == 0;
        for (int i = 0; i < n; i++) post |= ls[i]->cscale != NULL;
        if (post) int8_epilogue(t, ls, n, M, sa, rsc, ys);
    }
    /* F16 weights stored with a scale (E5M2 widened): applied to each thread's rows */
    if (kind == SPQ_GEMM_F16) {
        int r0, r1;
        spq_split(t, M, &r0, &r1);
        for (int i = 0; i < n; i++)
            if (ls[i]->w_scale != 1.0f)
                for (size_t j = (size_t)r0 * ls[i]->N; j < (size_t)r1 * ls[i]->N; j++) ys[i][j] *= ls[i]->w_scale;
        spq_team_sync(t);
    }
}

void spq_linear_apply(const spq_thr *t, const spq_linear *l, const float *x, int M, const spq_rows *rows, float *y,
                      int8_t *xq, float *xf, const spq_linear *const *next, int nnext)
{
    spq_linear_apply_n(t, &l, 1, x, M, rows, &y, xq, xf, next, nnext);
}
