/* scalar.c — the reference kernels: plain loops every SIMD path is tested against. */
#include "kernels.h"

#include <math.h>
#include <sleef.h>

static void gemm_q8(int M, int N, int kp, int n0, int n1, const int8_t *x, const int8_t *w,
                    const int32_t *wsum, float scale, float *y, int ldy)
{
    (void)wsum;
    for (int n = n0; n < n1 && n < N; n++) {
        const int8_t *panel = w + (size_t)(n / SPQ_NR) * kp * SPQ_NR;
        int c = n % SPQ_NR;
        for (int m = 0; m < M; m++) {
            int32_t acc = 0;
            for (int k = 0; k < kp; k++)
                acc += (int32_t)x[(size_t)m * kp + k] * panel[(size_t)(k / 4) * 64 + c * 4 + (k & 3)];
            y[(size_t)m * ldy + n] = (float)acc * scale;
        }
    }
}

static void gemm_f32(int M, int N, int K, int n0, int n1, const float *x, const float *w,
                     float *y, int ldy)
{
    for (int n = n0; n < n1 && n < N; n++) {
        const float *panel = w + (size_t)(n / SPQ_NR) * K * SPQ_NR + n % SPQ_NR;
        for (int m = 0; m < M; m++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) acc += x[(size_t)m * K + k] * panel[(size_t)k * SPQ_NR];
            y[(size_t)m * ldy + n] = acc;
        }
    }
}

/* 16-bit float weights (IEEE half, or bfloat16 with bf), widened to FP32 */
static void gemm_half(int M, int N, int K, int n0, int n1, const float *x, const uint16_t *w, int bf,
                      float *y, int ldy)
{
    for (int n = n0; n < n1 && n < N; n++) {
        const uint16_t *panel = w + (size_t)(n / SPQ_NR) * K * SPQ_NR + n % SPQ_NR;
        for (int m = 0; m < M; m++) {
            float acc = 0.0f;
            for (int k = 0; k < K; k++) {
                uint16_t h = panel[(size_t)k * SPQ_NR];
                acc += x[(size_t)m * K + k] * (bf ? spq_bf16_to_f32(h) : spq_f16_to_f32(h));
            }
            y[(size_t)m * ldy + n] = acc;
        }
    }
}

static void gemm_f16(int M, int N, int K, int n0, int n1, const float *x, const uint16_t *w,
                     float *y, int ldy)
{
    gemm_half(M, N, K, n0, n1, x, w, 0, y, ldy);
}

static void gemm_bf16(int M, int N, int K, int n0, int n1, const float *x, const uint16_t *w,
                      float *y, int ldy)
{
    gemm_half(M, N, K, n0, n1, x, w, 1, y, ldy);
}

static void gemm_e4m3(int M, int N, int kp, int n0, int n1, const float *x, const uint8_t *w,
                      float scale, float *y, int ldy)
{
    for (int n = n0; n < n1 && n < N; n++) {
        const uint8_t *panel = w + (size_t)(n / SPQ_NR) * kp * SPQ_NR;
        int c = n % SPQ_NR;
        for (int m = 0; m < M; m++) {
            float acc = 0.0f;
            for (int k = 0; k < kp; k++)
                acc += x[(size_t)m * kp + k] *
                       spq_e4m3_to_f32(panel[(size_t)(k / 4) * 64 + c * 4 + (k & 3)]);
            y[(size_t)m * ldy + n] = acc * scale;
        }
    }
}

static float absmax(const float *x, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++) {
        float a = fabsf(x[i]);
        if (a > m) m = a;
    }
    return m;
}

static void quant_i8(const float *x, int n, int npad, float inv, float qmax, int8_t *q)
{
    int i = 0;
    for (; i < n; i++) {
        float v = nearbyintf(x[i] * inv);
        v = v > qmax ? qmax : (v < -qmax ? -qmax : v);
        q[i] = (int8_t)v;
    }
    for (; i < npad; i++) q[i] = 0;
}

static void vexp(float *x, int n)
{
    for (int i = 0; i < n; i++) x[i] = Sleef_expf_u10(x[i]);
}

static float dot_f32(const float *a, const float *b, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* One attention over a cache in FP32 (bh 0) or IEEE half (bh 1): element i of b. */
static inline float kv_at(int bh, const void *b, size_t i)
{
    return bh ? spq_f16_to_f32(((const uint16_t *)b)[i]) : ((const float *)b)[i];
}

static void attn_any(int bh, int nq, int hd, int T, float scale, const float *q, const void *kt, int ldk,
                     const void *v, int ldv, float *s, float *o)
{
    for (int h = 0; h < nq; h++) {
        const float *qh = q + (size_t)h * hd;
        float *sh = s + (size_t)h * T, mx = -INFINITY, sum = 0.0f;
        for (int t = 0; t < T; t++) {
            float a = 0.0f;
            for (int d = 0; d < hd; d++) a += qh[d] * kv_at(bh, kt, (size_t)d * ldk + t);
            sh[t] = a * scale;
            mx = sh[t] > mx ? sh[t] : mx;
        }
        for (int t = 0; t < T; t++) {
            sh[t] = Sleef_expf_u10(sh[t] - mx);
            sum += sh[t];
        }
        for (int j = 0; j < hd; j++) {
            float a = 0.0f;
            for (int t = 0; t < T; t++) a += sh[t] * kv_at(bh, v, (size_t)t * ldv + j);
            o[(size_t)h * hd + j] = a / sum;
        }
    }
}

static void attn(int nq, int hd, int T, float scale, const float *q, const float *kt, int ldk, const float *v,
                 int ldv, float *s, float *o)
{
    attn_any(0, nq, hd, T, scale, q, kt, ldk, v, ldv, s, o);
}

static void attn_h(int nq, int hd, int T, float scale, const float *q, const uint16_t *kt, int ldk,
                   const uint16_t *v, int ldv, float *s, float *o)
{
    attn_any(1, nq, hd, T, scale, q, kt, ldk, v, ldv, s, o);
}

/* The reference: decode each code with spq_cmpq_code; exact block sums, one fmaf each. */
static void cmpq_dot(int b, int kp, int np, const uint8_t *codes, size_t pstride, const uint8_t *tab, int tstride,
                     int M, const int8_t *xq, int ldx, const float *xd, const int32_t *xs, int ldd, float *acc, int lda)
{
    (void)xs;
    for (int m = 0; m < M; m++)
        for (int i = 0; i < np; i++)
            for (int r = 0; r < SPQ_NR; r++) {
                float *a = acc + (size_t)m * lda + 16 * i + r;
                for (int o = 0; o < kp / SPQ_CMPQ_BLK; o++) {
                    int32_t A = 0;
                    for (int c = 0; c < SPQ_CMPQ_BLK; c++) {
                        int k = o * SPQ_CMPQ_BLK + c;
                        unsigned code = spq_cmpq_code(codes + (size_t)i * pstride, b, k, r);
                        int lev = b == 8 ? (int)(code ^ 0x80) : tab[(size_t)k * (size_t)tstride + (code & 63)];
                        A += lev * xq[(size_t)m * ldx + k];
                    }
                    *a = fmaf(xd[(size_t)m * ldd + o], (float)A, *a);
                }
            }
}

void spq_cmpq_quant_ref(int nb, const float *x, const int32_t *src, const float *sc, int8_t *xq, float *xd,
                        int32_t *xs)
{
    for (int o = 0; o < nb; o++) {
        float v[SPQ_CMPQ_BLK];
        for (int i = 0; i < SPQ_CMPQ_BLK; i++) v[i] = x[src[SPQ_CMPQ_BLK * o + i]] * sc[SPQ_CMPQ_BLK * o + i];
        float a = absmax(v, SPQ_CMPQ_BLK);
        quant_i8(v, SPQ_CMPQ_BLK, SPQ_CMPQ_BLK, a > 0 ? 127.0f / a : 0.0f, 127.0f, xq + SPQ_CMPQ_BLK * o);
        int32_t sum = 0;
        for (int i = 0; i < SPQ_CMPQ_BLK; i++) sum += xq[SPQ_CMPQ_BLK * o + i];
        xd[o] = a / 127.0f;
        xs[o] = sum;
    }
}

void spq_cmpq_outliers_ref(int n, const uint16_t *slot, const float *x, int T, float *s)
{
    for (int k = 0; k < n; k++, slot += 32)
        for (int j = 0; j < 16; j++)
            for (int i = 0; i < T; i++) {
                float p = x[(size_t)T * slot[j] + i] * spq_f16_to_f32(slot[16 + j]);
                s[T * j + i] += p;
            }
}

static const spq_kernels table = {
    .name = "scalar",
    .gemm_q8 = gemm_q8,
    .gemm_f32 = gemm_f32,
    .gemm_f16 = gemm_f16,
    .gemm_bf16 = gemm_bf16,
    .gemm_e4m3 = gemm_e4m3,
    .absmax = absmax,
    .quant_i8 = quant_i8,
    .vexp = vexp,
    .dot_f32 = dot_f32,
    .attn = attn,
    .attn_h = attn_h,
    .cmpq_dot = cmpq_dot,
    .cmpq_quant = spq_cmpq_quant_ref,
    .cmpq_outliers = spq_cmpq_outliers_ref,
    .gq_quant = spq_gq_quant_ref,
    .gq_dot = spq_gq_dot_ref,
    .gq_dot_r8 = spq_gq_dot_r8_ref,
    .gemv_q8 = NULL, /* the driver calls gemm_q8 per panel */
};

const spq_kernels *spq_kernels_scalar(void) { return &table; }
