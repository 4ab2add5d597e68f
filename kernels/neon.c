/* neon.c — AArch64 kernels. Built with -march=armv8.2-a+dotprod; the "neon" table uses
 * sdot (chosen when HWCAP says ASIMDDP), "neonplain" widens with smull/sadalp and runs on
 * any ARMv8 core. A 16-byte k-quad chunk is 4 columns x 4 inputs: exactly one sdot
 * operand against the token's 4 inputs broadcast to every 32-bit lane. */
#include "kernels.h"
#define ATTN_PROD attn_rows
#include "attn_driver.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#include <math.h>
#include <sleef.h>
#include <string.h>

static void store4(float *y, float32x4_t v, int left)
{
    if (left >= 4) { vst1q_f32(y, v); return; }
    float t[4];
    vst1q_f32(t, v);
    for (int i = 0; i < left; i++) y[i] = t[i];
}

static void q8_store(const int32x4_t acc[4], float scale, float *yr, int left)
{
    for (int c = 0; c < 4; c++)
        store4(yr + 4 * c, vmulq_n_f32(vcvtq_f32_s32(acc[c]), scale), left - 4 * c);
}

static void gemm_q8_dot(int M, int N, int kp, int n0, int n1, const int8_t *x, const int8_t *w,
                        const int32_t *wsum, float scale, float *y, int ldy)
{
    (void)wsum;
    for (int n = n0; n < n1; n += 16) {
        const int8_t *wp = w + (size_t)(n / SPQ_NR) * kp * SPQ_NR;
        for (int m = 0; m < M; m++) {
            int32x4_t acc[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
            const int8_t *xr = x + (size_t)m * kp;
            for (int q = 0; q < kp / 4; q++) {
                int32_t x4;
                memcpy(&x4, xr + 4 * q, 4);
                int8x16_t xb = vreinterpretq_s8_s32(vdupq_n_s32(x4));
                for (int c = 0; c < 4; c++)
                    acc[c] = vdotq_s32(acc[c], vld1q_s8(wp + (size_t)q * 64 + 16 * c), xb);
            }
            q8_store(acc, scale, y + (size_t)m * ldy + n, N - n);
        }
    }
}

static void gemm_q8_plain(int M, int N, int kp, int n0, int n1, const int8_t *x, const int8_t *w,
                          const int32_t *wsum, float scale, float *y, int ldy)
{
    (void)wsum;
    for (int n = n0; n < n1; n += 16) {
        const int8_t *wp = w + (size_t)(n / SPQ_NR) * kp * SPQ_NR;
        for (int m = 0; m < M; m++) {
            int32x4_t acc[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
            const int8_t *xr = x + (size_t)m * kp;
            for (int q = 0; q < kp / 4; q++) {
                int32_t x4;
                memcpy(&x4, xr + 4 * q, 4);
                int8x8_t xb = vreinterpret_s8_s32(vdup_n_s32(x4));
                for (int c = 0; c < 4; c++) {
                    int8x16_t wv = vld1q_s8(wp + (size_t)q * 64 + 16 * c);
                    /* products for columns (2c',2c'+1): 8 int16, pairwise-add to int32 */
                    int16x8_t lo = vmull_s8(vget_low_s8(wv), xb), hi = vmull_s8(vget_high_s8(wv), xb);
                    int32x4_t pl = vpaddlq_s16(lo), ph = vpaddlq_s16(hi); /* 2 partials per column */
                    acc[c] = vaddq_s32(acc[c], vpaddq_s32(pl, ph));
                }
            }
            q8_store(acc, scale, y + (size_t)m * ldy + n, N - n);
        }
    }
}

enum { WF32, WF16, WBF16 }; /* float weight formats (BF16: the top half of an FP32) */

static inline __attribute__((always_inline)) void gemm_fw(int M, int N, int K, int n0, int n1, const float *x,
                                                          const void *w, int wf, float *y, int ldy)
{
    for (int n = n0; n < n1; n += 16) {
        size_t base = (size_t)(n / SPQ_NR) * K * SPQ_NR;
        for (int m = 0; m < M; m++) {
            float32x4_t a[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
            const float *xr = x + (size_t)m * K;
            for (int k = 0; k < K; k++) {
                float32x4_t xb = vdupq_n_f32(xr[k]);
                for (int c = 0; c < 4; c++) {
                    float32x4_t wv;
                    if (wf == WF32)
                        wv = vld1q_f32((const float *)w + base + (size_t)k * 16 + 4 * c);
                    else if (wf == WF16)
                        wv = vcvt_f32_f16(vreinterpret_f16_u16(
                            vld1_u16((const uint16_t *)w + base + (size_t)k * 16 + 4 * c)));
                    else
                        wv = vreinterpretq_f32_u32(vshll_n_u16(vld1_u16((const uint16_t *)w + base + (size_t)k * 16 + 4 * c), 16));
                    a[c] = vfmaq_f32(a[c], xb, wv);
                }
            }
            for (int c = 0; c < 4; c++) store4(y + (size_t)m * ldy + n + 4 * c, a[c], N - n - 4 * c);
        }
    }
}

static void gemm_f32(int M, int N, int K, int n0, int n1, const float *x, const float *w, float *y, int ldy)
{
    gemm_fw(M, N, K, n0, n1, x, w, WF32, y, ldy);
}

static void gemm_f16(int M, int N, int K, int n0, int n1, const float *x, const uint16_t *w, float *y,
                     int ldy)
{
    gemm_fw(M, N, K, n0, n1, x, w, WF16, y, ldy);
}

static void gemm_bf16(int M, int N, int K, int n0, int n1, const float *x, const uint16_t *w, float *y,
                      int ldy)
{
    gemm_fw(M, N, K, n0, n1, x, w, WBF16, y, ldy);
}

/* byte j of each 32-bit lane -> f32 (see avx512.c for the 2^120 rebias) */
static float32x4_t e4m3_lane(uint32x4_t v, int j)
{
    uint32x4_t c = vandq_u32(vshlq_u32(v, vdupq_n_s32(-8 * j)), vdupq_n_u32(0xff));
    uint32x4_t bits = vorrq_u32(vshlq_n_u32(vandq_u32(c, vdupq_n_u32(0x80)), 24),
                                vshlq_n_u32(vandq_u32(c, vdupq_n_u32(0x7f)), 20));
    return vmulq_n_f32(vreinterpretq_f32_u32(bits), 0x1p120f);
}

static void gemm_e4m3(int M, int N, int kp, int n0, int n1, const float *x, const uint8_t *w,
                      float scale, float *y, int ldy)
{
    for (int n = n0; n < n1; n += 16) {
        const uint8_t *wp = w + (size_t)(n / SPQ_NR) * kp * SPQ_NR;
        for (int m = 0; m < M; m++) {
            float32x4_t a[4] = {vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0), vdupq_n_f32(0)};
            const float *xr = x + (size_t)m * kp;
            for (int q = 0; q < kp / 4; q++)
                for (int c = 0; c < 4; c++) {
                    uint32x4_t raw = vld1q_u32((const uint32_t *)(const void *)(wp + (size_t)q * 64 + 16 * c));
                    for (int j = 0; j < 4; j++)
                        a[c] = vfmaq_f32(a[c], vdupq_n_f32(xr[4 * q + j]), e4m3_lane(raw, j));
                }
            for (int c = 0; c < 4; c++)
                store4(y + (size_t)m * ldy + n + 4 * c, vmulq_n_f32(a[c], scale), N - n - 4 * c);
        }
    }
}

static float absmax(const float *x, size_t n)
{
    float32x4_t m = vdupq_n_f32(0);
    size_t i = 0;
    for (; i + 4 <= n; i += 4) m = vmaxq_f32(m, vabsq_f32(vld1q_f32(x + i)));
    float best = vmaxvq_f32(m);
    for (; i < n; i++) {
        float a = x[i] < 0 ? -x[i] : x[i];
        best = a > best ? a : best;
    }
    return best;
}

static void quant_i8(const float *x, int n, int npad, float inv, float qmax, int8_t *q)
{
    int i = 0;
    for (; i + 4 <= n; i += 4) {
        float32x4_t v = vmulq_n_f32(vld1q_f32(x + i), inv);
        v = vminq_f32(vmaxq_f32(v, vdupq_n_f32(-qmax)), vdupq_n_f32(qmax));
        int32x4_t d = vcvtnq_s32_f32(v); /* round to nearest even */
        int16x4_t h = vmovn_s32(d);
        int8x8_t b = vmovn_s16(vcombine_s16(h, h));
        vst1_lane_s32((int32_t *)(void *)(q + i), vreinterpret_s32_s8(b), 0);
    }
    for (; i < n; i++) {
        float v = x[i] * inv;
        v = v > qmax ? qmax : (v < -qmax ? -qmax : v);
        q[i] = (int8_t)vcvtns_s32_f32(v);
    }
    for (; i < npad; i++) q[i] = 0;
}

static void vexp(float *x, int n)
{
    int i = 0;
    for (; i + 4 <= n; i += 4) vst1q_f32(x + i, Sleef_expf4_u10advsimd(vld1q_f32(x + i)));
    for (; i < n; i++) x[i] = Sleef_expf_u10(x[i]);
}

static float dot_f32(const float *a, const float *b, int n)
{
    float32x4_t s = vdupq_n_f32(0);
    int i = 0;
    for (; i + 4 <= n; i += 4) s = vfmaq_f32(s, vld1q_f32(a + i), vld1q_f32(b + i));
    float r = vaddvq_f32(s);
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}

/* ---- attention (keys transposed: kt[d][t]) ----
 * Both products of attention are one shape, c[h][j] = mul[h] * sum_r a[h][r] * b[r][j] with
 * c's rows J long: scores (a = q, r = d, b = kt, j = key) and outputs (a = probabilities,
 * r = key, b = v, j = dim). attn_mm: NH heads x 4*NV columns from j0, NV loads of b per r
 * feed NH*NV FMAs; attn_rows: blocks of 16, then 4; the last J % 4 in scalar code. */
/* 4 values of the KV cache from off: FP32, or with BH IEEE half */
static inline __attribute__((always_inline)) float32x4_t ld_kv(const int BH, const void *b, size_t off)
{
    if (BH) return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16((const uint16_t *)b + off)));
    return vld1q_f32((const float *)b + off);
}

static inline __attribute__((always_inline)) float kv_at(const int BH, const void *b, size_t off)
{
    if (BH) return spq_f16_to_f32(((const uint16_t *)b)[off]);
    return ((const float *)b)[off];
}

static inline __attribute__((always_inline)) void attn_mm(const int NH, const int BH, const int NV, int R, int J,
                                                          int j0, const float *a, int lda, const void *b, int ldb,
                                                          const float *mul, float *c)
{
    float32x4_t acc[4][4];
    for (int h = 0; h < NH; h++)
        for (int k = 0; k < NV; k++) acc[h][k] = vdupq_n_f32(0);
    for (int r = 0; r < R; r++) {
        size_t br = (size_t)r * ldb + j0;
        float32x4_t bv[4];
        for (int k = 0; k < NV; k++) bv[k] = ld_kv(BH, b, br + 4 * k);
        for (int h = 0; h < NH; h++) {
            float ar = a[(size_t)h * lda + r];
            for (int k = 0; k < NV; k++) acc[h][k] = vfmaq_n_f32(acc[h][k], bv[k], ar);
        }
    }
    for (int h = 0; h < NH; h++)
        for (int k = 0; k < NV; k++) vst1q_f32(c + (size_t)h * J + j0 + 4 * k, vmulq_n_f32(acc[h][k], mul[h]));
}

static inline __attribute__((always_inline)) void attn_rows(int nh, const int BH, int R, int J, const float *a,
                                                            int lda, const void *b, int ldb, const float *mul,
                                                            float *c)
{
    int j = 0;
    for (; j + 16 <= J; j += 16) SPQ_BY_COUNT4(attn_mm, nh, BH, 4, R, J, j, a, lda, b, ldb, mul, c)
    for (; j + 4 <= J; j += 4) SPQ_BY_COUNT4(attn_mm, nh, BH, 1, R, J, j, a, lda, b, ldb, mul, c)
    for (; j < J; j++)
        for (int h = 0; h < nh; h++) {
            float acc = 0.0f;
            for (int r = 0; r < R; r++) acc += a[(size_t)h * lda + r] * kv_at(BH, b, (size_t)r * ldb + j);
            c[(size_t)h * J + j] = acc * mul[h];
        }
}

/* s[t] = exp(s[t] - max s) over one row; returns 1 / sum */
static float softmax_row(float *s, int T)
{
    float32x4_t mv = vdupq_n_f32(-INFINITY), sv = vdupq_n_f32(0);
    int t = 0;
    for (; t + 4 <= T; t += 4) mv = vmaxq_f32(mv, vld1q_f32(s + t));
    float mx = vmaxvq_f32(mv), sum;
    for (; t < T; t++) mx = s[t] > mx ? s[t] : mx;
    for (t = 0; t + 4 <= T; t += 4) {
        float32x4_t e = Sleef_expf4_u10advsimd(vsubq_f32(vld1q_f32(s + t), vdupq_n_f32(mx)));
        vst1q_f32(s + t, e);
        sv = vaddq_f32(sv, e);
    }
    sum = vaddvq_f32(sv);
    for (; t < T; t++) {
        s[t] = Sleef_expf_u10(s[t] - mx);
        sum += s[t];
    }
    return 1.0f / sum;
}

SPQ_ATTN

/* ---- CMPQ (kernels.h layout) ----
 * A 64-byte plane is four vectors of 4 rows x 4 columns. Shifts and masks give each byte
 * its code; tbl over four q registers looks up 64 bytes: the quad's four per-column tables
 * (the byte's column j in index bits 4-5) or the class's shared table. The u8 levels are
 * made signed (^ 0x80) for sdot (or smull + pairwise adds), and the block sum gets the
 * bias back (+ 128 sum x): the reference's integer exactly. */
static inline uint8x16_t cq_bits(uint8x16_t v, int from, int to, uint8_t mask)
{
    return vandq_u8(vreinterpretq_u8_u16(vshlq_u16(vreinterpretq_u16_u8(v), vdupq_n_s16((int16_t)(to - from)))), vdupq_n_u8(mask));
}

/* signed levels of rows 4v..4v+3 of quad Q (block blk) */
static inline int8x16_t cq_levels(int b, int ts, int Q, int v, const uint8_t *blk, const uint8_t *tab, int k)
{
    const uint8_t *pv = blk + 16 * v;
    if (b == 8) return vld1q_s8((const int8_t *)(pv + 64 * Q));
    uint8x16_t c;
    if (b == 2 || b == 3) {
        c = cq_bits(vld1q_u8(pv + 64 * (Q / 4)), 2 * (Q % 4), 0, 0x03);
        if (b == 3) c = vorrq_u8(c, cq_bits(vld1q_u8(pv + 128), Q, 2, 0x04));
    } else {
        c = cq_bits(vld1q_u8(pv + 64 * (Q / 2)), 4 * (Q % 2), 0, 0x0f);
        if (b == 5) c = vorrq_u8(c, cq_bits(vld1q_u8(pv + 256), Q, 4, 0x10));
        if (b == 6) c = vorrq_u8(c, cq_bits(vld1q_u8(pv + 256 + 64 * (Q / 4)), 2 * (Q % 4), 4, 0x30));
    }
    uint8x16x4_t t;
    if (ts) {
        t = vld1q_u8_x4(tab + (size_t)16 * k);
        c = vorrq_u8(c, vreinterpretq_u8_u32(vdupq_n_u32(0x30201000u)));
    } else {
        t = vld1q_u8_x4(tab);
    }
    return vreinterpretq_s8_u8(veorq_u8(vqtbl4q_u8(t, c), vdupq_n_u8(0x80)));
}

static inline int32x4_t cq_dot(int sdot, int32x4_t acc, int8x16_t l, int8x16_t xb)
{
    if (sdot) return vdotq_s32(acc, l, xb);
    int16x8_t lo = vmull_s8(vget_low_s8(l), vget_low_s8(xb)), hi = vmull_s8(vget_high_s8(l), vget_high_s8(xb));
    return vaddq_s32(acc, vpaddq_s32(vpaddlq_s16(lo), vpaddlq_s16(hi)));
}

static inline void cmpq_run(int sdot, int b, int kp, int np, const uint8_t *codes, size_t ps, const uint8_t *tab,
                            int tstride, int M, const int8_t *xq, int ldx, const float *xd, const int32_t *xs, int ldd,
                            float *acc, int lda)
{
    for (int p = 0; p < np; p++)
        for (int m = 0; m < M; m++) {
            float *ac = acc + (size_t)m * lda + 16 * p;
            float32x4_t f[4];
            for (int v = 0; v < 4; v++) f[v] = vld1q_f32(ac + 4 * v);
            for (int o = 0; o < kp / SPQ_CMPQ_BLK; o++) {
                const uint8_t *blk = codes + (size_t)p * ps + (size_t)o * 64 * b;
                int32x4_t a[4] = {vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)};
                for (int Q = 0; Q < 8; Q++) {
                    int k = o * SPQ_CMPQ_BLK + 4 * Q;
                    int32_t x4;
                    memcpy(&x4, xq + (size_t)m * ldx + k, 4);
                    int8x16_t xb = vreinterpretq_s8_s32(vdupq_n_s32(x4));
                    for (int v = 0; v < 4; v++) a[v] = cq_dot(sdot, a[v], cq_levels(b, tstride, Q, v, blk, tab, k), xb);
                }
                float32x4_t d = vdupq_n_f32(xd[(size_t)m * ldd + o]);
                int32x4_t bias = vdupq_n_s32(128 * xs[(size_t)m * ldd + o]);
                for (int v = 0; v < 4; v++) f[v] = vfmaq_f32(f[v], d, vcvtq_f32_s32(vaddq_s32(a[v], bias)));
            }
            for (int v = 0; v < 4; v++) vst1q_f32(ac + 4 * v, f[v]);
        }
}

static void cmpq_dot_sdot(int b, int kp, int np, const uint8_t *codes, size_t ps, const uint8_t *tab, int tstride, int M,
                          const int8_t *xq, int ldx, const float *xd, const int32_t *xs, int ldd, float *acc, int lda)
{
    cmpq_run(1, b, kp, np, codes, ps, tab, tstride, M, xq, ldx, xd, xs, ldd, acc, lda);
}

static void cmpq_dot_plain(int b, int kp, int np, const uint8_t *codes, size_t ps, const uint8_t *tab, int tstride, int M,
                           const int8_t *xq, int ldx, const float *xd, const int32_t *xs, int ldd, float *acc, int lda)
{
    cmpq_run(0, b, kp, np, codes, ps, tab, tstride, M, xq, ldx, xd, xs, ldd, acc, lda);
}

static const spq_kernels table_dot = {
    .name = "neon",
    .gemm_q8 = gemm_q8_dot,
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
    .cmpq_dot = cmpq_dot_sdot,
    .cmpq_quant = spq_cmpq_quant_ref,
    .cmpq_outliers = spq_cmpq_outliers_ref,
    .gq_quant = spq_gq_quant_ref,
    .gq_dot = spq_gq_dot_ref,
    .gq_dot_r8 = spq_gq_dot_r8_ref,
    .gemv_q8 = NULL, /* the driver calls gemm_q8 per panel */
};
static const spq_kernels table_plain = {
    .name = "neonplain",
    .gemm_q8 = gemm_q8_plain,
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
    .cmpq_dot = cmpq_dot_plain,
    .cmpq_quant = spq_cmpq_quant_ref,
    .cmpq_outliers = spq_cmpq_outliers_ref,
    .gq_quant = spq_gq_quant_ref,
    .gq_dot = spq_gq_dot_ref,
    .gq_dot_r8 = spq_gq_dot_r8_ref,
    .gemv_q8 = NULL, /* the driver calls gemm_q8 per panel */
};

const spq_kernels *spq_kernels_neon(void) { return &table_dot; }
const spq_kernels *spq_kernels_neonplain(void) { return &table_plain; }
#else
const spq_kernels *spq_kernels_neon(void) { return 0; }
const spq_kernels *spq_kernels_neonplain(void) { return 0; }
#endif
