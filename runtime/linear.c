/* linear.c — one linear layer in its chosen precision: packing at load, and the
 * quantise-then-GEMM step at run time. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "runtime/cmpq.h"
#include "runtime/model.h"

int spq_linear_init(spq_linear *l, const spq_tensor *t, spq_err *e)
{
    memset(l, 0, sizeof *l);
    int N = (int)t->shape[0], K = (int)t->shape[1];
    l->N = N; l->K = K; l->w_scale = t->scale; l->a_scale = t->act_scale; l->act_fmt = t->act_fmt;
    size_t nk = (size_t)N * K;
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
    default: { /* F32, BF16 -> F32 */
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

void spq_linear_free(spq_linear *l)
{
    if (l->kind == SPQ_CMPQ && l->w) spq_cmpq_rt_free(l->w);
    free(l->w);
    free(l->wsum);
    memset(l, 0, sizeof *l);
}

/* Round activations to FP8 E4M3 with one per-tensor scale (absmax -> 448), as the
 * paper's W8A8-FP8 setting does, writing [M][kp] rows. */
static void round_e4m3(const float *x, int M, int K, int kp, float *out)
{
    const spq_kernels *k = spq_kern();
    float amax = k->absmax(x, (size_t)M * K);
    float s = amax > 0 ? amax / 448.0f : 1.0f;
    for (int m = 0; m < M; m++) {
        for (int i = 0; i < K; i++) out[(size_t)m * kp + i] = spq_e4m3_to_f32(spq_f32_to_e4m3(x[(size_t)m * K + i] / s)) * s;
        for (int i = K; i < kp; i++) out[(size_t)m * kp + i] = 0;
    }
}

/* Bring x into the form l's GEMM reads: INT8 codes in xq (returning the activation
 * scale), or FP16/FP8-rounded / K-padded floats in xf. *xin is what float GEMMs read. */
static float prepare_input(const spq_linear *l, const float *x, int M, int8_t *xq, float *xf, const float **xin)
{
    const spq_kernels *k = spq_kern();
    int K = l->K, kp = spq_kpad(K);
    *xin = x;
    switch (l->kind) {
    case SPQ_I8: {
        float sa = l->a_scale;
        if (sa <= 0) { /* dynamic per-tensor: absmax of the whole input */
            float amax = 0.0f;
#pragma omp parallel for schedule(static) reduction(max : amax) if (M >= 16)
            for (int m = 0; m < M; m++) {
                float a = k->absmax(x + (size_t)m * K, (size_t)K);
                amax = a > amax ? a : amax;
            }
            sa = amax > 0 ? amax / 127.0f : 1.0f;
        }
        float inv = 1.0f / sa;
#pragma omp parallel for schedule(static) if (M >= 16)
        for (int m = 0; m < M; m++) k->quant_i8(x + (size_t)m * K, K, kp, inv, xq + (size_t)m * kp);
        return sa;
    }
    case SPQ_E4M3:
        if (l->act_fmt == SPQ_E4M3) round_e4m3(x, M, K, kp, xf);
        else
            for (int m = 0; m < M; m++) {
                memcpy(xf + (size_t)m * kp, x + (size_t)m * K, 4 * (size_t)K);
                for (int i = K; i < kp; i++) xf[(size_t)m * kp + i] = 0;
            }
        *xin = xf;
        return 1.0f;
    case SPQ_F16:
        if (l->act_fmt == SPQ_F16) {
            for (size_t i = 0; i < (size_t)M * K; i++) xf[i] = spq_f16_to_f32(spq_f32_to_f16(x[i]));
            *xin = xf;
        } else if (l->act_fmt == SPQ_E4M3) {
            round_e4m3(x, M, K, K, xf);
            *xin = xf;
        }
        return 1.0f;
    default:
        return 1.0f;
    }
}

/* y = prepared input x W^T */
static void run_prepared(const spq_linear *l, const float *xin, const int8_t *xq, float sa, int M, float *y,
                         float *xf_scratch)
{
    const spq_kernels *k = spq_kern();
    int K = l->K, N = l->N;
    switch (l->kind) {
    case SPQ_CMPQ: /* xf: scratch for the permuted input */
        spq_cmpq_apply(l->w, xin, M, y, (float *)xf_scratch);
        return;
    case SPQ_I8:
        spq_gemm_q8(k, M, N, K, xq, l->w, l->wsum, l->w_scale * sa, y, N);
        return;
    case SPQ_E4M3:
        spq_gemm_e4m3(k, M, N, K, xin, l->w, l->w_scale, y, N);
        return;
    case SPQ_F16:
        spq_gemm_f16(k, M, N, K, xin, l->w, y, N);
        if (l->w_scale != 1.0f)
            for (size_t i = 0; i < (size_t)M * N; i++) y[i] *= l->w_scale;
        return;
    default:
        spq_gemm_f32(k, M, N, K, xin, l->w, y, N);
        return;
    }
}

void spq_linear_apply_n(const spq_linear *const *ls, int n, const float *x, int M, float *const *ys, int8_t *xq, float *xf)
{
    const float *xin;
    float sa = prepare_input(ls[0], x, M, xq, xf, &xin);
    int all_i8 = n <= SPQ_GEMM_MAXN; /* outs[] below */
    for (int i = 0; i < n; i++) all_i8 &= ls[i]->kind == SPQ_I8;
    if (all_i8) { /* q, k, v (or gate, up) in one parallel region: one fork/join, one balance */
        spq_gemm_out outs[SPQ_GEMM_MAXN];
        for (int i = 0; i < n; i++)
            outs[i] = (spq_gemm_out){ls[i]->N, ls[i]->w, ls[i]->wsum, ls[i]->w_scale * sa, ys[i], ls[i]->N};
        spq_gemm_q8_n(spq_kern(), M, ls[0]->K, xq, outs, n);
        return;
    }
    for (int i = 0; i < n; i++) run_prepared(ls[i], xin, xq, sa, M, ys[i], xf);
}

void spq_linear_apply(const spq_linear *l, const float *x, int M, float *y, int8_t *xq, float *xf)
{
    spq_linear_apply_n(&l, 1, x, M, &y, xq, xf);
}
