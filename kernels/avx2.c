/* avx2.c — AVX2 + FMA + F16C kernels for x86-64 CPUs without AVX-512.
 *
 * INT8 uses sign extension to int16 and vpmaddwd (s16 x s16 -> s32 pairs): exact for every
 * int8 value, including -128, unlike vpmaddubsw whose int16 pair sums can saturate.
 * A k-quad of 4 columns (16 bytes) widens to one ymm; vpmaddwd against the token's 4
 * inputs broadcast as 4 x s16 leaves two partial sums per column, folded by vphaddd at
 * the end. Register tile: MR <= 4 tokens x one 16-column panel. */
#include "kernels.h"
#include "attn_driver.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <sleef.h>
#include <string.h>

#define INL static inline __attribute__((always_inline))

static inline __m256i maskn(int left) /* lanes < left set */
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(left), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

static inline void store8(float *y, __m256 v, int left)
{
    if (left >= 8) _mm256_storeu_ps(y, v);
    else if (left > 0) _mm256_maskstore_ps(y, maskn(left), v);
}

/* pairs (c0a c0b c1a c1b ...) for columns 0-3 (a) and 4-7 (b) -> 8 column sums */
static inline __m256i fold(__m256i a, __m256i b)
{
    return _mm256_permute4x64_epi64(_mm256_hadd_epi32(a, b), 0xd8);
}

INL void q8_tile(const int MR, int N, int kp, int n, int m, const int8_t *x, const int8_t *w,
                 float scale, float *y, int ldy)
{
    __m256i acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int c = 0; c < 4; c++) acc[i][c] = _mm256_setzero_si256();
    const int8_t *wp = w + (size_t)(n / SPQ_NR) * kp * SPQ_NR;
    for (int q = 0; q < kp / 4; q++) {
        __m256i wv[4];
        for (int c = 0; c < 4; c++)
            wv[c] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(wp + (size_t)q * 64 + 16 * c)));
        for (int i = 0; i < MR; i++) {
            int32_t x4;
            memcpy(&x4, x + (size_t)(m + i) * kp + 4 * q, 4);
            __m256i xb = _mm256_broadcastq_epi64(_mm_cvtepi8_epi16(_mm_cvtsi32_si128(x4)));
            for (int c = 0; c < 4; c++)
                acc[i][c] = _mm256_add_epi32(acc[i][c], _mm256_madd_epi16(xb, wv[c]));
        }
    }
    const __m256 sc = _mm256_set1_ps(scale);
    for (int i = 0; i < MR; i++) {
        float *yr = y + (size_t)(m + i) * ldy + n;
        store8(yr, _mm256_mul_ps(_mm256_cvtepi32_ps(fold(acc[i][0], acc[i][1])), sc), N - n);
        store8(yr + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(fold(acc[i][2], acc[i][3])), sc), N - n - 8);
    }
}

static void gemm_q8(int M, int N, int kp, int n0, int n1, const int8_t *x, const int8_t *w,
                    const int32_t *wsum, float scale, float *y, int ldy)
{
    (void)wsum;
    for (int n = n0; n < n1; n += 16) {
        int m = 0;
        for (; m + 4 <= M; m += 4) q8_tile(4, N, kp, n, m, x, w, scale, y, ldy);
        switch (M - m) {
        case 3: q8_tile(3, N, kp, n, m, x, w, scale, y, ldy); break;
        case 2: q8_tile(2, N, kp, n, m, x, w, scale, y, ldy); break;
        case 1: q8_tile(1, N, kp, n, m, x, w, scale, y, ldy); break;
        default: break;
        }
    }
}

/* Float weight formats: WF32, WF16 (IEEE half), WBF16 (bfloat16: the top half of an FP32). */
enum { WF32, WF16, WBF16 };

INL __m256 ld_w(const void *w, size_t off, int wf)
{
    if (wf == WF32) return _mm256_loadu_ps((const float *)w + off);
    __m128i h = _mm_loadu_si128((const __m128i *)((const uint16_t *)w + off));
    if (wf == WF16) return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

INL void f_tile(const int MR, int N, int K, int n, int m, const float *x, const void *w, int wf,
                float *y, int ldy)
{
    __m256 acc[4][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
    size_t base = (size_t)(n / SPQ_NR) * K * SPQ_NR;
    for (int k = 0; k < K; k++) {
        __m256 w0 = ld_w(w, base + (size_t)k * 16, wf), w1 = ld_w(w, base + (size_t)k * 16 + 8, wf);
        for (int i = 0; i < MR; i++) {
            __m256 xb = _mm256_set1_ps(x[(size_t)(m + i) * K + k]);
            acc[i][0] = _mm256_fmadd_ps(xb, w0, acc[i][0]);
            acc[i][1] = _mm256_fmadd_ps(xb, w1, acc[i][1]);
        }
    }
    for (int i = 0; i < MR; i++) {
        float *yr = y + (size_t)(m + i) * ldy + n;
        store8(yr, acc[i][0], N - n);
        store8(yr + 8, acc[i][1], N - n - 8);
    }
}

INL void gemm_fw(int M, int N, int K, int n0, int n1, const float *x, const void *w, int wf,
                 float *y, int ldy)
{
    for (int n = n0; n < n1; n += 16) {
        int m = 0;
        for (; m + 4 <= M; m += 4) f_tile(4, N, K, n, m, x, w, wf, y, ldy);
        switch (M - m) {
        case 3: f_tile(3, N, K, n, m, x, w, wf, y, ldy); break;
        case 2: f_tile(2, N, K, n, m, x, w, wf, y, ldy); break;
        case 1: f_tile(1, N, K, n, m, x, w, wf, y, ldy); break;
        default: break;
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

/* See avx512.c: byte j of each lane -> f32 bits, times 2^120. */
static inline __m256 e4m3_lane(__m256i v, int j)
{
    __m256i c = _mm256_and_si256(_mm256_srli_epi32(v, 8 * j), _mm256_set1_epi32(0xff));
    __m256i bits = _mm256_or_si256(_mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x80)), 24),
                                   _mm256_slli_epi32(_mm256_and_si256(c, _mm256_set1_epi32(0x7f)), 20));
    return _mm256_mul_ps(_mm256_castsi256_ps(bits), _mm256_set1_ps(0x1p120f));
}

static void gemm_e4m3(int M, int N, int kp, int n0, int n1, const float *x, const uint8_t *w,
                      float scale, float *y, int ldy)
{
    const __m256 sc = _mm256_set1_ps(scale);
    for (int n = n0; n < n1; n += 16) {
        const uint8_t *wp = w + (size_t)(n / SPQ_NR) * kp * SPQ_NR;
        for (int m = 0; m < M; m++) {
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            const float *xr = x + (size_t)m * kp;
            for (int q = 0; q < kp / 4; q++) {
                __m256i r0 = _mm256_loadu_si256((const __m256i *)(wp + (size_t)q * 64));
                __m256i r1 = _mm256_loadu_si256((const __m256i *)(wp + (size_t)q * 64 + 32));
                for (int j = 0; j < 4; j++) {
                    __m256 xb = _mm256_set1_ps(xr[4 * q + j]);
                    a0 = _mm256_fmadd_ps(xb, e4m3_lane(r0, j), a0);
                    a1 = _mm256_fmadd_ps(xb, e4m3_lane(r1, j), a1);
                }
            }
            float *yr = y + (size_t)m * ldy + n;
            store8(yr, _mm256_mul_ps(a0, sc), N - n);
            store8(yr + 8, _mm256_mul_ps(a1, sc), N - n - 8);
        }
    }
}

static float absmax(const float *x, size_t n)
{
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 m = _mm256_setzero_ps();
    size_t i = 0;
    for (; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
    float r[8];
    _mm256_storeu_ps(r, m);
    float best = 0.0f;
    for (int j = 0; j < 8; j++) best = r[j] > best ? r[j] : best;
    for (; i < n; i++) {
        float a = x[i] < 0 ? -x[i] : x[i];
        best = a > best ? a : best;
    }
    return best;
}

static void quant_i8(const float *x, int n, int npad, float inv, float qmax, int8_t *q)
{
    const __m256 s = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-qmax), hi = _mm256_set1_ps(qmax);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), s), lo), hi);
        __m256i d = _mm256_cvtps_epi32(v); /* RNE, as nearbyintf in the reference */
        __m128i h = _mm_packs_epi32(_mm256_castsi256_si128(d), _mm256_extracti128_si256(d, 1));
        _mm_storel_epi64((__m128i *)(q + i), _mm_packs_epi16(h, h));
    }
    for (; i < n; i++) {
        float v = x[i] * inv;
        v = v > qmax ? qmax : (v < -qmax ? -qmax : v);
        q[i] = (int8_t)_mm_cvtss_si32(_mm_set_ss(v));
    }
    for (; i < npad; i++) q[i] = 0;
}

static void vexp(float *x, int n)
{
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, Sleef_expf8_u10avx2(_mm256_loadu_ps(x + i)));
    for (; i < n; i++) x[i] = Sleef_expf_u10(x[i]);
}

static float dot_f32(const float *a, const float *b, int n)
{
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    float r[8], s = 0;
    _mm256_storeu_ps(r, _mm256_add_ps(s0, s1));
    for (int j = 0; j < 8; j++) s += r[j];
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---- attention (keys transposed: kt[d][t]) ----
 * Both products of attention are one shape, c[h][j] = mul[h] * sum_r a[h][r] * b[r][j] with
 * c's rows J long: scores (a = q, r = d, b = kt, j = key) and outputs (a = probabilities,
 * r = key, b = v, j = dim). NH heads x 16 columns in 8 accumulators, 2 loads of b per r.
 * Tails use masked loads and stores. */
/* 8 values of a KV-cache row from off (left of them in the row, may be < 8): FP32, or with
 * BH IEEE half (no masked 16-bit load here: a short tail goes through a zeroed copy) */
INL __m256 ld_kv(const int BH, const void *b, size_t off, int left, __m256i mk)
{
    if (!BH) return _mm256_maskload_ps((const float *)b + off, mk);
    const uint16_t *h = (const uint16_t *)b + off;
    if (left >= 8) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)h));
    uint16_t t[8] = {0};
    for (int i = 0; i < left; i++) t[i] = h[i];
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)t));
}

INL void attn_mm(const int NH, const int BH, int R, int J, const float *a, int lda, const void *b, int ldb,
                 const float *mul, float *c)
{
    for (int j0 = 0; j0 < J; j0 += 16) {
        __m256i mk[2] = {maskn(J - j0), maskn(J - j0 - 8)};
        __m256 acc[4][2];
        for (int h = 0; h < NH; h++) acc[h][0] = acc[h][1] = _mm256_setzero_ps();
        for (int r = 0; r < R; r++) {
            size_t br = (size_t)r * ldb + j0;
            __m256 b0 = ld_kv(BH, b, br, J - j0, mk[0]), b1 = ld_kv(BH, b, br + 8, J - j0 - 8, mk[1]);
            for (int h = 0; h < NH; h++) {
                __m256 ab = _mm256_broadcast_ss(a + (size_t)h * lda + r);
                acc[h][0] = _mm256_fmadd_ps(ab, b0, acc[h][0]);
                acc[h][1] = _mm256_fmadd_ps(ab, b1, acc[h][1]);
            }
        }
        for (int h = 0; h < NH; h++) {
            __m256 m = _mm256_set1_ps(mul[h]);
            store8(c + (size_t)h * J + j0, _mm256_mul_ps(acc[h][0], m), J - j0);
            store8(c + (size_t)h * J + j0 + 8, _mm256_mul_ps(acc[h][1], m), J - j0 - 8);
        }
    }
}

static float hsum8(__m256 v)
{
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    return _mm_cvtss_f32(_mm_add_ss(x, _mm_movehdup_ps(x)));
}

/* s[t] = exp(s[t] - max s) over one row; returns 1 / sum */
static float softmax_row(float *s, int T)
{
    const __m256 ninf = _mm256_set1_ps(-INFINITY);
    __m256 mx = ninf, sum = _mm256_setzero_ps();
    for (int t = 0; t < T; t += 8) {
        __m256i k = maskn(T - t);
        mx = _mm256_max_ps(mx, _mm256_blendv_ps(ninf, _mm256_maskload_ps(s + t, k), _mm256_castsi256_ps(k)));
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
    const __m256 m = _mm256_broadcastss_ps(m4);
    for (int t = 0; t < T; t += 8) {
        __m256i k = maskn(T - t);
        __m256 e = Sleef_expf8_u10avx2(_mm256_sub_ps(_mm256_maskload_ps(s + t, k), m));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(k));
        store8(s + t, e, T - t);
        sum = _mm256_add_ps(sum, e);
    }
    return 1.0f / hsum8(sum);
}

SPQ_ATTN

/* ---- CMPQ (kernels.h layout) ----
 * A 64-byte plane is two ymm halves (rows 0-7, 8-15). Shifts and masks give each byte its
 * code; vpshufb looks up 16-entry tables (5 and 6 bits: two or four lookups picked by bits
 * 4 and 5 through blendv; per-column tables: four lookups, each zeroing the bytes of the
 * other three columns by their index's bit 7, OR'd). AVX2 has no unsigned x signed dot
 * without saturation, so levels are made signed (^ 0x80) and multiplied as
 * maddubs(|l|, sign(x, l)) (pairs <= 2 x 127 x 127); the block sum then gets the u8
 * levels' bias back (+ 128 sum x), exactly the reference's integer. */
static inline int32_t load4(const int8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }

INL __m256i shift_bits(__m256i v, const int from, const int to)
{
    return from > to ? _mm256_srli_epi16(v, from - to) : from < to ? _mm256_slli_epi16(v, to - from) : v;
}

INL __m256i cq_code8(const int b, const int Q, const uint8_t *blk)
{
    const __m256i m03 = _mm256_set1_epi8(0x03), m0f = _mm256_set1_epi8(0x0f);
    __m256i i;
    if (b == 2 || b == 3) {
        i = _mm256_and_si256(shift_bits(_mm256_loadu_si256((const __m256i *)(blk + 64 * (Q / 4))), 2 * (Q % 4), 0), m03);
        if (b == 3)
            i = _mm256_or_si256(i, _mm256_and_si256(shift_bits(_mm256_loadu_si256((const __m256i *)(blk + 128)), Q, 2),
                                                    _mm256_set1_epi8(0x04)));
        return i;
    }
    i = _mm256_and_si256(shift_bits(_mm256_loadu_si256((const __m256i *)(blk + 64 * (Q / 2))), 4 * (Q % 2), 0), m0f);
    if (b == 5)
        i = _mm256_or_si256(i, _mm256_and_si256(shift_bits(_mm256_loadu_si256((const __m256i *)(blk + 256)), Q, 4),
                                                _mm256_set1_epi8(0x10)));
    if (b == 6)
        i = _mm256_or_si256(i, _mm256_and_si256(shift_bits(_mm256_loadu_si256((const __m256i *)(blk + 256 + 64 * (Q / 4))),
                                                           2 * (Q % 4), 4), _mm256_set1_epi8(0x30)));
    return i;
}

/* signed levels (-127..127) of one half's 32 bytes of quad Q (codes at blk, half h) */
INL __m256i cq_levels8(const int b, const int TS, const int Q, const uint8_t *blk, const uint8_t *tab, int k)
{
    const __m256i x80 = _mm256_set1_epi8((char)0x80);
    if (b == 8) return _mm256_loadu_si256((const __m256i *)(blk + 64 * Q));
    __m256i c = cq_code8(b, Q, blk), u;
    if (TS) {
        u = _mm256_setzero_si256();
        for (int j = 0; j < 4; j++) {
            __m256i t = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(tab + (size_t)16 * (k + j))));
            __m256i off = _mm256_set1_epi32((int)(0x80808080u & ~(0xffu << (8 * j))));
            u = _mm256_or_si256(u, _mm256_shuffle_epi8(t, _mm256_or_si256(c, off)));
        }
    } else if (b <= 4) {
        u = _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)tab)), c);
    } else {
        __m256i lo = _mm256_and_si256(c, _mm256_set1_epi8(0x0f));
        __m256i s4 = _mm256_slli_epi16(c, 3); /* bit 4 -> 7 */
        u = _mm256_blendv_epi8(_mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)tab)), lo),
                               _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(tab + 16))), lo), s4);
        if (b == 6) {
            __m256i v = _mm256_blendv_epi8(
                _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(tab + 32))), lo),
                _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)(tab + 48))), lo), s4);
            u = _mm256_blendv_epi8(u, v, _mm256_slli_epi16(c, 2)); /* bit 5 -> 7 */
        }
    }
    return _mm256_xor_si256(u, x80);
}

INL void cmpq_panel(const int b, const int TS, const int MT, int kp, const uint8_t *codes, const uint8_t *tab,
                    const int8_t *xq, int ldx, const float *xd, const int32_t *xs, int ldd, float *acc, int lda)
{
    __m256 f[2][2];
    for (int m = 0; m < MT; m++)
        for (int h = 0; h < 2; h++) f[m][h] = _mm256_loadu_ps(acc + (size_t)m * lda + 8 * h);
    const __m256i one = _mm256_set1_epi16(1);
    const size_t bb = (size_t)64 * b;
    for (int o = 0; o < kp / SPQ_CMPQ_BLK; o++) {
        __m256i a[2][2];
        for (int m = 0; m < MT; m++) a[m][0] = a[m][1] = _mm256_setzero_si256();
        for (int Q = 0; Q < 8; Q++) {
            const int k = o * SPQ_CMPQ_BLK + 4 * Q;
            for (int h = 0; h < 2; h++) {
                __m256i l = cq_levels8(b, TS, Q, codes + o * bb + 32 * h, tab, k), al = _mm256_abs_epi8(l);
                for (int m = 0; m < MT; m++) {
                    __m256i xb = _mm256_set1_epi32(load4(xq + (size_t)m * ldx + k));
                    __m256i p = _mm256_maddubs_epi16(al, _mm256_sign_epi8(xb, l));
                    a[m][h] = _mm256_add_epi32(a[m][h], _mm256_madd_epi16(p, one));
                }
            }
        }
        for (int m = 0; m < MT; m++) {
            __m256 d = _mm256_set1_ps(xd[(size_t)m * ldd + o]);
            __m256i bias = _mm256_set1_epi32(128 * xs[(size_t)m * ldd + o]);
            for (int h = 0; h < 2; h++)
                f[m][h] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(_mm256_add_epi32(a[m][h], bias)), f[m][h]);
        }
    }
    for (int m = 0; m < MT; m++)
        for (int h = 0; h < 2; h++) _mm256_storeu_ps(acc + (size_t)m * lda + 8 * h, f[m][h]);
}

#define CQ2_RUN(b, TS)                                                                                        \
    for (int p = 0; p < np; p++)                                                                              \
        for (int m = 0; m < M; m += 2) {                                                                      \
            const uint8_t *cp = codes + (size_t)p * ps;                                                       \
            float *ac = acc + (size_t)m * lda + 16 * p;                                                       \
            if (M - m >= 2) cmpq_panel(b, TS, 2, kp, cp, tab, xq + (size_t)m * ldx, ldx, xd + (size_t)m * ldd, xs + (size_t)m * ldd, ldd, ac, lda); \
            else cmpq_panel(b, TS, 1, kp, cp, tab, xq + (size_t)m * ldx, ldx, xd + (size_t)m * ldd, xs + (size_t)m * ldd, ldd, ac, lda); \
        }

static void cmpq_dot(int b, int kp, int np, const uint8_t *codes, size_t ps, const uint8_t *tab, int tstride, int M,
                     const int8_t *xq, int ldx, const float *xd, const int32_t *xs, int ldd, float *acc, int lda)
{
    if (tstride) {
        switch (b) {
        case 2: CQ2_RUN(2, 16) break;
        case 3: CQ2_RUN(3, 16) break;
        default: CQ2_RUN(4, 16) break;
        }
        return;
    }
    switch (b) {
    case 2: CQ2_RUN(2, 0) break;
    case 3: CQ2_RUN(3, 0) break;
    case 4: CQ2_RUN(4, 0) break;
    case 5: CQ2_RUN(5, 0) break;
    case 6: CQ2_RUN(6, 0) break;
    default: CQ2_RUN(8, 0) break;
    }
}

/* CMPQ input blocks (kernels.h): four gathers of 8 per block; absmax and rounding as
 * absmax / quant_i8 above */
static void cmpq_quant(int nb, const float *x, const int32_t *src, const float *sc, int8_t *xq, float *xd,
                       int32_t *xs)
{
    const __m256 sign = _mm256_set1_ps(-0.0f), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
    for (int o = 0; o < nb; o++, src += 32, sc += 32, xq += 32) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_mul_ps(_mm256_i32gather_ps(x, _mm256_loadu_si256((const __m256i *)(src + 8 * i)), 4),
                                 _mm256_loadu_ps(sc + 8 * i));
            m = _mm256_max_ps(m, _mm256_andnot_ps(sign, v[i]));
        }
        float r[8], a = 0.0f;
        _mm256_storeu_ps(r, m);
        for (int j = 0; j < 8; j++) a = r[j] > a ? r[j] : a;
        const __m256 s = _mm256_set1_ps(a > 0 ? 127.0f / a : 0.0f);
        __m256i d[4], sum = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            d[i] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[i], s), lo), hi));
            sum = _mm256_add_epi32(sum, d[i]);
        }
        /* the packs interleave 4-byte groups of the four vectors by 128-bit lane: put them back in order */
        __m256i h = _mm256_packs_epi16(_mm256_packs_epi32(d[0], d[1]), _mm256_packs_epi32(d[2], d[3]));
        _mm256_storeu_si256((__m256i *)xq, _mm256_permutevar8x32_epi32(h, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
        __m128i t = _mm_add_epi32(_mm256_castsi256_si128(sum), _mm256_extracti128_si256(sum, 1));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
        t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
        xd[o] = a / 127.0f;
        xs[o] = _mm_cvtsi128_si32(t);
    }
}

/* CMPQ outliers (kernels.h): one token, per slot two gathers of 8 (residuals widened by
 * F16C); 16 tokens, in four passes of 8 rows x 8 tokens, one load per slot entry */
static void cmpq_outliers(int n, const uint16_t *slot, const float *x, int T, float *s)
{
    if (T == 16) {
        for (int j0 = 0; j0 < 16; j0 += 8)
            for (int i0 = 0; i0 < 16; i0 += 8) {
                __m256 a[8];
                for (int j = 0; j < 8; j++) a[j] = _mm256_loadu_ps(s + 16 * (j0 + j) + i0);
                const uint16_t *sl = slot;
                for (int k = 0; k < n; k++, sl += 32) {
                    float v[8];
                    _mm256_storeu_ps(v, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sl + 16 + j0))));
                    for (int j = 0; j < 8; j++)
                        a[j] = _mm256_add_ps(a[j], _mm256_mul_ps(_mm256_loadu_ps(x + 16 * (size_t)sl[j0 + j] + i0),
                                                                 _mm256_set1_ps(v[j])));
                }
                for (int j = 0; j < 8; j++) _mm256_storeu_ps(s + 16 * (j0 + j) + i0, a[j]);
            }
        return;
    }
    __m256 a0 = _mm256_loadu_ps(s), a1 = _mm256_loadu_ps(s + 8);
    for (int i = 0; i < n; i++, slot += 32) {
        __m256i c0 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)slot));
        __m256i c1 = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(slot + 8)));
        __m256 v0 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(slot + 16)));
        __m256 v1 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(slot + 24)));
        a0 = _mm256_add_ps(a0, _mm256_mul_ps(_mm256_i32gather_ps(x, c0, 4), v0));
        a1 = _mm256_add_ps(a1, _mm256_mul_ps(_mm256_i32gather_ps(x, c1, 4), v1));
    }
    _mm256_storeu_ps(s, a0);
    _mm256_storeu_ps(s + 8, a1);
}

/* ---- ggml's block formats (kernels.h): activations per block, the 8-row layout ---- */

static void gq_quant(int qb, int K, const float *x, uint8_t *xa)
{
    float *d = (float *)xa;
    int16_t *s = (int16_t *)(xa + 4 * (size_t)(K / qb));
    int8_t *q = (int8_t *)(xa + spq_gq_act_q_at(qb, K));
    const __m256 mag = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    for (int b = 0; b < K / qb; b++) {
        const float *v = x + (size_t)b * qb;
        __m256 mx = _mm256_setzero_ps();
        for (int i = 0; i < qb; i += 8) mx = _mm256_max_ps(mx, _mm256_and_ps(_mm256_loadu_ps(v + i), mag));
        __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(mx), _mm256_extractf128_ps(mx, 1));
        m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
        m4 = _mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1));
        float amax = _mm_cvtss_f32(m4), db = amax / 127.0f, id = db > 0 ? 1.0f / db : 0.0f;
        d[b] = db;
        const __m256 vid = _mm256_set1_ps(id);
        for (int i = 0; i < qb; i += 16) { /* rne (the default rounding), within +-127 */
            __m256i r0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(v + i), vid));
            __m256i r1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(v + i + 8), vid));
            r0 = _mm256_max_epi32(_mm256_min_epi32(r0, hi), lo);
            r1 = _mm256_max_epi32(_mm256_min_epi32(r1, hi), lo);
            __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(r0, r1), 0xd8); /* 16 x int16 in order */
            __m128i b8 = _mm_packs_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
            _mm_storeu_si128((__m128i *)(q + (size_t)b * qb + i), b8);
            __m256i s32 = _mm256_add_epi32(r0, r1);
            __m128i t = _mm_add_epi32(_mm256_castsi256_si128(s32), _mm256_extracti128_si256(s32, 1));
            t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0x4e));
            t = _mm_add_epi32(t, _mm_shuffle_epi32(t, 0xb1));
            s[(b * qb + i) / 16] = (int16_t)_mm_cvtsi128_si32(t);
        }
    }
}

static inline long long ld8(const void *p)
{
    long long v;
    memcpy(&v, p, 8);
    return v;
}

/* int32 lanes += the sum of 4 u8 x s8 products (the u8 side <= 128: vpmaddubsw's pairs do not
 * saturate), as vpdpbusd */
static inline __m256i dp4(__m256i acc, __m256i u, __m256i s)
{
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

/* the lanes 2r, 2r + 1 of rows 0-3 (a) and 4-7 (b) added into rows 0..7 */
static inline __m256i rowsum8(__m256i a, __m256i b)
{
    a = _mm256_add_epi32(a, _mm256_srli_epi64(a, 32));
    b = _mm256_add_epi32(b, _mm256_srli_epi64(b, 32));
    __m256i t = _mm256_blend_epi32(a, _mm256_slli_epi64(b, 32), 0xAA); /* rows 0 4 1 5 2 6 3 7 */
    return _mm256_permutevar8x32_epi32(t, _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7));
}

/* 8 int8 scales (rows) -> lanes 2r, 2r + 1 of rows 0-3 (*lo) and 4-7 (*hi) */
static inline void r8_scales2(const uint8_t *p, __m256i *lo, __m256i *hi)
{
    __m128i v = _mm_loadl_epi64((const __m128i *)p), u = _mm_unpacklo_epi8(v, v);
    *lo = _mm256_cvtepi8_epi32(u);
    *hi = _mm256_cvtepi8_epi32(_mm_srli_si128(u, 8));
}

static inline __m256i iq4_lut2(void)
{
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)spq_gq_iq4));
}

/* A 64-byte code vector's bytes as two halves (rows 0-3, rows 4-7): the K formats' unsigned
 * codes (<= 63), or for IQ4_XS the signed levels */
typedef struct { __m256i h[2]; } cv2;

INL void r8k2_t(const int G, const int T, int K, int ng, const uint8_t *w, const uint8_t *xa, size_t ldx, float *y,
                size_t ldy)
{
    const int nb = K / 256, nsub = G == SPQ_GQ_Q6_K ? 16 : 8;
    const size_t qat = spq_gq_act_q_at(256, K), blk = spq_gq_r8_block(G), head = spq_gq_r8_head(G);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int i = 0; i < ng; i++) {
        __m256 acc[4];
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const uint8_t *o = w + ((size_t)i * nb + b) * blk, *cv = o + head;
            __m256i S[4][2];
            for (int t = 0; t < T; t++) S[t][0] = S[t][1] = _mm256_setzero_si256();
            for (int jj = 0; jj < 4; jj++) {
                cv2 lo[4], hi[4];
                for (int k = 0; k < 4; k++)
                    for (int q = 0; q < 2; q++) {
                        __m256i P = _mm256_load_si256((const __m256i *)(cv + spq_gq_r8_cv(G, 4 * jj + k) + 32 * q));
                        __m256i l = _mm256_and_si256(P, m4), h = _mm256_and_si256(_mm256_srli_epi16(P, 4), m4);
                        if (G == SPQ_GQ_Q5_K) {
                            const int c = 4 * jj + k, bit = c % 8;
                            __m256i H0 = _mm256_load_si256((const __m256i *)(cv + spq_gq_r8_qh(G, c / 8) + 32 * q));
                            __m256i H1 = _mm256_load_si256((const __m256i *)(cv + spq_gq_r8_qh(G, 2 + c / 8) + 32 * q));
                            __m256i b0 = bit >= 4 ? _mm256_srli_epi16(H0, bit - 4) : _mm256_slli_epi16(H0, 4 - bit);
                            __m256i b1 = bit >= 4 ? _mm256_srli_epi16(H1, bit - 4) : _mm256_slli_epi16(H1, 4 - bit);
                            l = _mm256_or_si256(l, _mm256_and_si256(b0, _mm256_set1_epi8(0x10)));
                            h = _mm256_or_si256(h, _mm256_and_si256(b1, _mm256_set1_epi8(0x10)));
                        }
                        if (G == SPQ_GQ_Q6_K) {
                            __m256i H0 = _mm256_load_si256((const __m256i *)(cv + spq_gq_r8_qh(G, jj) + 32 * q));
                            __m256i H1 = _mm256_load_si256((const __m256i *)(cv + spq_gq_r8_qh(G, 4 + jj) + 32 * q));
                            const int sh = 2 * k;
                            __m256i b0 = sh >= 4 ? _mm256_srli_epi16(H0, sh - 4) : _mm256_slli_epi16(H0, 4 - sh);
                            __m256i b1 = sh >= 4 ? _mm256_srli_epi16(H1, sh - 4) : _mm256_slli_epi16(H1, 4 - sh);
                            l = _mm256_or_si256(l, _mm256_and_si256(b0, _mm256_set1_epi8(0x30)));
                            h = _mm256_or_si256(h, _mm256_and_si256(b1, _mm256_set1_epi8(0x30)));
                        }
                        if (G == SPQ_GQ_IQ4_XS) { l = _mm256_shuffle_epi8(iq4_lut2(), l); h = _mm256_shuffle_epi8(iq4_lut2(), h); }
                        lo[k].h[q] = l;
                        hi[k].h[q] = h;
                    }
                /* sub-blocks: Q6_K 2jj, 2jj + 1, 8 + 2jj, 9 + 2jj (2 vectors each); else jj, 4 + jj (4) */
                const int ns = G == SPQ_GQ_Q6_K ? 4 : 2, per = ns == 4 ? 2 : 4;
                int sidx[4];
                if (ns == 4) { sidx[0] = 2 * jj; sidx[1] = 2 * jj + 1; sidx[2] = 8 + 2 * jj; sidx[3] = 9 + 2 * jj; }
                else { sidx[0] = jj; sidx[1] = 4 + jj; }
                for (int u = 0; u < ns; u++) {
                    __m256i sl, sh2;
                    r8_scales2(o + 32 + 8 * sidx[u], &sl, &sh2);
                    for (int t = 0; t < T; t++) {
                        const int8_t *x = (const int8_t *)(xa + (size_t)t * ldx + qat) + 256 * b;
                        __m256i a0 = _mm256_setzero_si256(), a1 = a0;
                        for (int e = 0; e < per; e++) {
                            /* code vector of this sub-block: low (u < ns / 2) or high nibbles */
                            const int k = ns == 4 ? 2 * (u % 2) + e : e, c = (u < ns / 2 ? 0 : 16) + 4 * jj + k;
                            const cv2 *v = u < ns / 2 ? &lo[k] : &hi[k];
                            __m256i xb = _mm256_set1_epi64x(ld8(x + 8 * c));
                            if (G == SPQ_GQ_IQ4_XS) {
                                a0 = dp4(a0, _mm256_sign_epi8(v->h[0], v->h[0]), _mm256_sign_epi8(xb, v->h[0]));
                                a1 = dp4(a1, _mm256_sign_epi8(v->h[1], v->h[1]), _mm256_sign_epi8(xb, v->h[1]));
                            } else {
                                a0 = dp4(a0, v->h[0], xb);
                                a1 = dp4(a1, v->h[1], xb);
                            }
                        }
                        S[t][0] = _mm256_add_epi32(S[t][0], _mm256_mullo_epi32(a0, sl));
                        S[t][1] = _mm256_add_epi32(S[t][1], _mm256_mullo_epi32(a1, sh2));
                    }
                }
            }
            const uint8_t *mv = o + 32 + (spq_gq_has_min(G) ? 8 * nsub : 0);
            const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)o));
            const __m256 m8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(o + 16)));
            for (int t = 0; t < T; t++) {
                const uint8_t *a = xa + (size_t)t * ldx;
                const int16_t *s16 = (const int16_t *)(a + 4 * (size_t)nb) + 16 * b;
                __m256i S8 = rowsum8(S[t][0], S[t][1]);
                if (G != SPQ_GQ_IQ4_XS) { /* mins, or Q6_K's - 32 */
                    __m256i M = _mm256_setzero_si256();
                    for (int j = 0; j < nsub; j++) {
                        int xs = nsub == 16 ? s16[j] : s16[2 * j] + s16[2 * j + 1];
                        __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(mv + 8 * j)));
                        M = _mm256_add_epi32(M, _mm256_mullo_epi32(v, _mm256_set1_epi32(xs)));
                    }
                    if (G == SPQ_GQ_Q6_K) S8 = _mm256_sub_epi32(S8, _mm256_slli_epi32(M, 5));
                    const __m256 xd = _mm256_set1_ps(((const float *)a)[b]);
                    acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d8, xd), _mm256_cvtepi32_ps(S8), acc[t]);
                    if (spq_gq_has_min(G))
                        acc[t] = _mm256_fmadd_ps(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(m8, xd)), _mm256_cvtepi32_ps(M), acc[t]);
                } else { /* IQ4_XS: signed levels, no offset */
                    const __m256 xd = _mm256_set1_ps(((const float *)a)[b]);
                    acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d8, xd), _mm256_cvtepi32_ps(S8), acc[t]);
                }
            }
        }
        for (int t = 0; t < T; t++) _mm256_storeu_ps(y + (size_t)t * ldy + 8 * (size_t)i, acc[t]);
    }
}

/* Legacy formats: Q4_0's unsigned nibbles (less 8 sum x), Q8_0's and IQ4_NL's signed values */
INL void r8l2_t(const int G, const int T, int K, int ng, const uint8_t *w, const uint8_t *xa, size_t ldx, float *y,
                size_t ldy)
{
    const int nsb = K / 256;
    const size_t qat = spq_gq_act_q_at(32, K), blk = spq_gq_r8_block(G), cstep = G == SPQ_GQ_Q8_0 ? 256 : 128;
    const __m256i m4 = _mm256_set1_epi8(0x0F), flip = _mm256_set1_epi8((char)0x80);
    for (int i = 0; i < ng; i++) {
        __m256 acc[4];
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
        for (int b = 0; b < nsb; b++) {
            const uint8_t *o = w + ((size_t)i * nsb + b) * blk;
            for (int j = 0; j < 8; j++) {
                const uint8_t *c = o + 128 + (size_t)j * cstep;
                cv2 v[4];
                for (int q = 0; q < 2; q++) {
                    if (G == SPQ_GQ_Q8_0)
                        for (int k = 0; k < 4; k++) v[k].h[q] = _mm256_xor_si256(_mm256_load_si256((const __m256i *)(c + 64 * k + 32 * q)), flip);
                    else
                        for (int k = 0; k < 2; k++) {
                            __m256i P = _mm256_load_si256((const __m256i *)(c + 64 * k + 32 * q));
                            v[k].h[q] = _mm256_and_si256(P, m4);
                            v[k + 2].h[q] = _mm256_and_si256(_mm256_srli_epi16(P, 4), m4);
                            if (G == SPQ_GQ_IQ4_NL) {
                                v[k].h[q] = _mm256_shuffle_epi8(iq4_lut2(), v[k].h[q]);
                                v[k + 2].h[q] = _mm256_shuffle_epi8(iq4_lut2(), v[k + 2].h[q]);
                            }
                        }
                }
                const __m256 d8 = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(o + 16 * j)));
                for (int t = 0; t < T; t++) {
                    const uint8_t *a = xa + (size_t)t * ldx;
                    const int8_t *x = (const int8_t *)(a + qat) + 256 * b + 32 * j;
                    __m256i p0 = _mm256_setzero_si256(), p1 = p0;
                    for (int k = 0; k < 4; k++) {
                        __m256i xb = _mm256_set1_epi64x(ld8(x + 8 * k));
                        if (G == SPQ_GQ_Q4_0) {
                            p0 = dp4(p0, v[k].h[0], xb);
                            p1 = dp4(p1, v[k].h[1], xb);
                        } else { /* |w| . sign(x, w) */
                            p0 = dp4(p0, _mm256_sign_epi8(v[k].h[0], v[k].h[0]), _mm256_sign_epi8(xb, v[k].h[0]));
                            p1 = dp4(p1, _mm256_sign_epi8(v[k].h[1], v[k].h[1]), _mm256_sign_epi8(xb, v[k].h[1]));
                        }
                    }
                    __m256i S8 = rowsum8(p0, p1);
                    if (G == SPQ_GQ_Q4_0) {
                        const int16_t *s16 = (const int16_t *)(a + 4 * (size_t)(K / 32)) + 16 * b + 2 * j;
                        S8 = _mm256_sub_epi32(S8, _mm256_set1_epi32(8 * (s16[0] + s16[1])));
                    }
                    const __m256 xd = _mm256_set1_ps(((const float *)a)[8 * b + j]);
                    acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d8, xd), _mm256_cvtepi32_ps(S8), acc[t]);
                }
            }
        }
        for (int t = 0; t < T; t++) _mm256_storeu_ps(y + (size_t)t * ldy + 8 * (size_t)i, acc[t]);
    }
}

#define GQ_BY_T4(FN, G, T, ...)                             \
    switch (T) {                                            \
    case 2: FN(G, 2, __VA_ARGS__); break;                   \
    default: FN(G, 1, __VA_ARGS__); break;                  \
    }

static void gq_dot_r8(int g, int K, int ng, const uint8_t *w, int M, const uint8_t *xa, size_t ldx, float *y, size_t ldy)
{
    for (int m = 0; m < M; m += 2) { /* two activation rows per expanded code vector: 16 ymm registers */
        int T = M - m < 2 ? M - m : 2;
        const uint8_t *a = xa + (size_t)m * ldx;
        float *o = y + (size_t)m * ldy;
        switch (g) {
        case SPQ_GQ_Q4_K: GQ_BY_T4(r8k2_t, SPQ_GQ_Q4_K, T, K, ng, w, a, ldx, o, ldy); break;
        case SPQ_GQ_Q5_K: GQ_BY_T4(r8k2_t, SPQ_GQ_Q5_K, T, K, ng, w, a, ldx, o, ldy); break;
        case SPQ_GQ_Q6_K: GQ_BY_T4(r8k2_t, SPQ_GQ_Q6_K, T, K, ng, w, a, ldx, o, ldy); break;
        case SPQ_GQ_IQ4_XS: GQ_BY_T4(r8k2_t, SPQ_GQ_IQ4_XS, T, K, ng, w, a, ldx, o, ldy); break;
        case SPQ_GQ_Q8_0: GQ_BY_T4(r8l2_t, SPQ_GQ_Q8_0, T, K, ng, w, a, ldx, o, ldy); break;
        case SPQ_GQ_Q4_0: GQ_BY_T4(r8l2_t, SPQ_GQ_Q4_0, T, K, ng, w, a, ldx, o, ldy); break;
        default: GQ_BY_T4(r8l2_t, SPQ_GQ_IQ4_NL, T, K, ng, w, a, ldx, o, ldy); break;
        }
    }
}

static const spq_kernels table = {
    .name = "avx2",
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
    .cmpq_quant = cmpq_quant,
    .cmpq_outliers = cmpq_outliers,
    .gq_quant = gq_quant,
    .gq_dot = spq_gq_dot_ref,
    .gq_dot_r8 = gq_dot_r8,
    .gemv_q8 = NULL, /* one panel at a time: the driver calls gemm_q8 per panel */
};

/* ---- AVX-VNNI (VEX vpdpbusd on ymm: Alder Lake and later, Zen 5) ----
 * Same panel layout as every ISA: per k-quad 16 columns x 4 bytes = 64 bytes, columns 0-7
 * in the low 32 bytes. As in avx512.c, activations are offset to unsigned (x ^ 0x80) and the
 * exact correction 128 * sum_k w[n][k] (pack-time column sums) is subtracted: bit-exact with
 * the scalar reference. Only these functions need the extension (target attribute); the
 * rest of the table is AVX2's. */
#define VNNI __attribute__((target("avx2,fma,avxvnni")))

static inline VNNI __m256i xq4(const int8_t *p)
{
    int32_t v;
    memcpy(&v, p, 4);
    return _mm256_set1_epi32(v ^ (int32_t)0x80808080u);
}

/* MR tokens x one 16-column panel: 2 MR accumulators */
static inline VNNI void q8v_tile(const int MR, int N, int kp, int n, int m, const int8_t *x, const int8_t *w,
                                 const int32_t *wsum, float scale, float *y, int ldy)
{
    __m256i acc[4][2];
    for (int i = 0; i < MR; i++) acc[i][0] = acc[i][1] = _mm256_setzero_si256();
    const int8_t *wp = w + (size_t)(n / SPQ_NR) * kp * SPQ_NR;
    for (int q = 0; q < kp / 4; q++) {
        __m256i w0 = _mm256_loadu_si256((const __m256i *)(wp + (size_t)q * 64));
        __m256i w1 = _mm256_loadu_si256((const __m256i *)(wp + (size_t)q * 64 + 32));
        for (int i = 0; i < MR; i++) {
            __m256i xb = xq4(x + (size_t)(m + i) * kp + 4 * q);
            acc[i][0] = _mm256_dpbusd_avx_epi32(acc[i][0], xb, w0);
            acc[i][1] = _mm256_dpbusd_avx_epi32(acc[i][1], xb, w1);
        }
    }
    const __m256 sc = _mm256_set1_ps(scale);
    __m256i c0 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(wsum + n)), 7);
    __m256i c1 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(wsum + n + 8)), 7);
    for (int i = 0; i < MR; i++) {
        float *yr = y + (size_t)(m + i) * ldy + n;
        store8(yr, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[i][0], c0)), sc), N - n);
        store8(yr + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[i][1], c1)), sc), N - n - 8);
    }
}

/* Decode (M = 1): NP panels at once, NP weight streams each prefetched 1 KiB ahead */
static inline VNNI void q8v_gemv(const int NP, int N, int kp, int p0, int pstride, const int8_t *x,
                                 const int8_t *w, const int32_t *wsum, float scale, float *y)
{
    __m256i acc[4][2];
    for (int p = 0; p < NP; p++) acc[p][0] = acc[p][1] = _mm256_setzero_si256();
    const size_t ps = (size_t)kp * SPQ_NR * (size_t)pstride; /* bytes between the NP streams */
    const int8_t *wp = w + (size_t)p0 * kp * SPQ_NR;
    for (int q = 0; q < kp / 4; q++) {
        __m256i xb = xq4(x + 4 * q);
        for (int p = 0; p < NP; p++) {
            const int8_t *b = wp + p * ps + (size_t)q * 64;
            _mm_prefetch((const char *)(b + 1024), _MM_HINT_T0);
            acc[p][0] = _mm256_dpbusd_avx_epi32(acc[p][0], xb, _mm256_loadu_si256((const __m256i *)b));
            acc[p][1] = _mm256_dpbusd_avx_epi32(acc[p][1], xb, _mm256_loadu_si256((const __m256i *)(b + 32)));
        }
    }
    const __m256 sc = _mm256_set1_ps(scale);
    for (int p = 0; p < NP; p++) {
        int c = (p0 + p * pstride) * SPQ_NR;
        __m256i c0 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(wsum + c)), 7);
        __m256i c1 = _mm256_slli_epi32(_mm256_loadu_si256((const __m256i *)(wsum + c + 8)), 7);
        store8(y + c, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[p][0], c0)), sc), N - c);
        store8(y + c + 8, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(acc[p][1], c1)), sc), N - c - 8);
    }
}

static VNNI void gemv_q8_vnni(int N, int kp, int p0, int np, int pstride, const int8_t *x, const int8_t *w,
                              const int32_t *wsum, float scale, float *y)
{
    SPQ_BY_COUNT4(q8v_gemv, np, N, kp, p0, pstride, x, w, wsum, scale, y)
}

static VNNI void gemm_q8_vnni(int M, int N, int kp, int n0, int n1, const int8_t *x, const int8_t *w,
                              const int32_t *wsum, float scale, float *y, int ldy)
{
    if (M == 1) {
        for (int n = n0; n < n1; n += 64) {
            int np = (n1 - n + 15) / 16;
            gemv_q8_vnni(N, kp, n / SPQ_NR, np > 4 ? 4 : np, 1, x, w, wsum, scale, y);
        }
        return;
    }
    for (int n = n0; n < n1; n += 16) {
        int m = 0;
        for (; m + 4 <= M; m += 4) q8v_tile(4, N, kp, n, m, x, w, wsum, scale, y, ldy);
        switch (M - m) {
        case 3: q8v_tile(3, N, kp, n, m, x, w, wsum, scale, y, ldy); break;
        case 2: q8v_tile(2, N, kp, n, m, x, w, wsum, scale, y, ldy); break;
        case 1: q8v_tile(1, N, kp, n, m, x, w, wsum, scale, y, ldy); break;
        default: break;
        }
    }
}

static const spq_kernels table_vnni = {
    .name = "avxvnni",
    .gemm_q8 = gemm_q8_vnni,
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
    .cmpq_quant = cmpq_quant,
    .cmpq_outliers = cmpq_outliers,
    .gq_quant = gq_quant,
    .gq_dot = spq_gq_dot_ref,
    .gq_dot_r8 = gq_dot_r8,
    .gemv_q8 = gemv_q8_vnni,
};
const spq_kernels *spq_kernels_avxvnni(void) { return &table_vnni; }

const spq_kernels *spq_kernels_avx2(void) { return &table; }
#else
const spq_kernels *spq_kernels_avx2(void) { return 0; }
const spq_kernels *spq_kernels_avxvnni(void) { return 0; }
#endif
