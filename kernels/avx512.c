/* avx512.c — AVX-512 (F/BW/VL/VNNI) kernels. Compiled with -mavx512f -mavx512bw -mavx512vl
 * -mavx512vnni -mf16c -mfma; called only after dispatch.c saw those features.
 *
 * INT8: vpdpbusd multiplies unsigned by signed bytes, so activations are offset by +128
 * (x ^ 0x80 on the broadcast) and the exact correction 128 * sum_k w[n][k] (precomputed
 * at pack time) is subtracted from each int32 accumulator: bit-exact with the scalar sum.
 * Register tile: MR tokens x NP panels (<= 4 x 4 = 16 zmm accumulators); per k-quad
 * NP weight loads and MR 4-byte broadcasts feed MR*NP vpdpbusd. */
#include "kernels.h"
#include "attn_driver.h"

#if defined(__x86_64__)

#include <immintrin.h>
#include <math.h>
#include <pthread.h>
#include <sleef.h>
#include <stdlib.h>
#include <string.h>

#define INL static inline __attribute__((always_inline))

static inline int32_t load4(const int8_t *p) { int32_t v; memcpy(&v, p, 4); return v; }

static inline __mmask16 colmask(int n, int N)
{
    int left = N - n;
    return left >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (left > 0 ? left : 0)) - 1u);
}

INL void q8_tile(const int MR, const int NP, int N, int kp, int n, int m, const int8_t *x,
                 const int8_t *w, const int32_t *wsum, float scale, float *y, int ldy)
{
    __m512i acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int p = 0; p < NP; p++) acc[i][p] = _mm512_setzero_si512();
    const size_t ps = (size_t)kp * SPQ_NR;
    const int8_t *wp = w + (size_t)(n / SPQ_NR) * ps;
    const int8_t *xr = x + (size_t)m * kp;
    for (int q = 0; q < kp / 4; q++) {
        __m512i wv[4];
        for (int p = 0; p < NP; p++) wv[p] = _mm512_loadu_si512(wp + p * ps + (size_t)q * 64);
        for (int i = 0; i < MR; i++) {
            __m512i xb = _mm512_set1_epi32(load4(xr + (size_t)i * kp + 4 * q) ^ (int32_t)0x80808080u);
            for (int p = 0; p < NP; p++) acc[i][p] = _mm512_dpbusd_epi32(acc[i][p], xb, wv[p]);
        }
    }
    const __m512 sc = _mm512_set1_ps(scale);
    for (int p = 0; p < NP; p++) {
        __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(wsum + n + p * 16), 7);
        __mmask16 mk = colmask(n + p * 16, N);
        for (int i = 0; i < MR; i++) {
            __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(acc[i][p], corr)), sc);
            _mm512_mask_storeu_ps(y + (size_t)(m + i) * ldy + n + p * 16, mk, v);
        }
    }
}

#ifndef GEMV_PF
#define GEMV_PF 1024 /* CMPQ prefetch distance, bytes */
#endif
/* Decode (M = 1): a pure weight stream. Four k-quads per iteration, two accumulator chains
 * per panel, activations broadcast straight from memory and offset in-register. No software
 * prefetch: the hardware prefetcher keeps up with NP sequential streams, and prefetch
 * instructions only take issue slots (docs/benchmarks.md, Findings). */
INL void q8_gemv(const int NP, int N, int kp, int p0, int pstride, const int8_t *x, const int8_t *w,
                 const int32_t *wsum, float scale, float *y)
{
    __m512i a[4], b[4];
    for (int p = 0; p < NP; p++) a[p] = b[p] = _mm512_setzero_si512();
    const size_t ps = (size_t)kp * SPQ_NR * (size_t)pstride; /* bytes between the NP streams */
    const int8_t *wp = w + (size_t)p0 * kp * SPQ_NR;
    const __m512i off = _mm512_set1_epi32((int32_t)0x80808080u);
#define XB(i) _mm512_xor_si512(off, _mm512_set1_epi32(load4(x + 4 * (q + (i)))))
#define DP(acc, xv, i) for (int p = 0; p < NP; p++) \
        acc[p] = _mm512_dpbusd_epi32(acc[p], xv, _mm512_loadu_si512(wp + p * ps + (size_t)(q + (i)) * 64))
    int nq = kp / 4, q = 0;
    for (; q + 3 < nq; q += 4) {
        __m512i x0 = XB(0), x1 = XB(1), x2 = XB(2), x3 = XB(3);
        DP(a, x0, 0);
        DP(b, x1, 1);
        DP(a, x2, 2);
        DP(b, x3, 3);
    }
    for (; q < nq; q++) {
        __m512i x0 = XB(0);
        DP(a, x0, 0);
    }
#undef XB
#undef DP
    const __m512 sc = _mm512_set1_ps(scale);
    for (int p = 0; p < NP; p++) {
        int n = (p0 + p * pstride) * SPQ_NR;
        __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(wsum + n), 7);
        __m512i acc = _mm512_sub_epi32(_mm512_add_epi32(a[p], b[p]), corr);
        _mm512_mask_storeu_ps(y + n, colmask(n, N), _mm512_mul_ps(_mm512_cvtepi32_ps(acc), sc));
    }
}

static void gemv_q8(int N, int kp, int p0, int np, int pstride, const int8_t *x, const int8_t *w,
                    const int32_t *wsum, float scale, float *y)
{
    SPQ_BY_COUNT4(q8_gemv, np, N, kp, p0, pstride, x, w, wsum, scale, y)
}

#define TILE_ROW(fn, MR, np, ...)                                                          \
    switch (np) {                                                                          \
    case 4: fn(MR, 4, __VA_ARGS__); break;                                                 \
    case 3: fn(MR, 3, __VA_ARGS__); break;                                                 \
    case 2: fn(MR, 2, __VA_ARGS__); break;                                                 \
    default: fn(MR, 1, __VA_ARGS__); break;                                                \
    }

#ifndef LANES_PF
#define LANES_PF 2048 /* batched-decode prefetch distance per stream, bytes */
#endif
/* A row tile over k-quads [q0, q1) of NP panels pstride panels apart (from p0), its int32
 * sums carried in ab (rows x 64, from row m) */
INL void q8_tile_part(const int MR, const int NP, int kp, int p0, int pstride, int m, const int8_t *x,
                      const int8_t *w, int q0, int q1, int32_t *ab)
{
    __m512i acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int p = 0; p < NP; p++) acc[i][p] = _mm512_loadu_si512(ab + (m + i) * 64 + 16 * p);
    const size_t ps = (size_t)kp * SPQ_NR * (size_t)pstride;
    const int8_t *wp = w + (size_t)p0 * kp * SPQ_NR;
    const int8_t *xr = x + (size_t)m * kp;
    for (int q = q0; q < q1; q++) {
        __m512i wv[4];
        for (int p = 0; p < NP; p++) wv[p] = _mm512_loadu_si512(wp + p * ps + (size_t)q * 64);
        if (!m)
            for (int p = 0; p < NP; p++) _mm_prefetch((const char *)(wp + p * ps + (size_t)q * 64) + LANES_PF, _MM_HINT_T0);
        for (int i = 0; i < MR; i++) {
            __m512i xb = _mm512_set1_epi32(load4(xr + (size_t)i * kp + 4 * q) ^ (int32_t)0x80808080u);
            for (int p = 0; p < NP; p++) acc[i][p] = _mm512_dpbusd_epi32(acc[i][p], xb, wv[p]);
        }
    }
    for (int i = 0; i < MR; i++)
        for (int p = 0; p < NP; p++) _mm512_storeu_si512(ab + (m + i) * 64 + 16 * p, acc[i][p]);
}

#define TILE_LANES(MR, np) TILE_ROW(q8_tile_part, MR, np, kp, p0, pstride, m, x, w, q0, q1, ab)

/* 2-8 rows over np <= 4 panels pstride apart: k in chunks of 64 quads (4 KiB of each
 * panel), every row tile over a chunk before the next, so that the tiles after the first
 * find it in L1. The first tile prefetches its four streams 2 KiB ahead: with 5-8 rows the
 * arithmetic per weight byte is high enough that the hardware prefetcher alone let the
 * stream stall (8 sequences decoded 12-20% slower; docs/benchmarks.md, Findings). */
static void gemm_q8_lanes(int M, int N, int kp, int p0, int np, int pstride, const int8_t *x, const int8_t *w,
                          const int32_t *wsum, float scale, float *y, int ldy)
{
    int32_t ab[8 * 64] __attribute__((aligned(64)));
    memset(ab, 0, sizeof(int32_t) * 64 * (size_t)M);
    for (int q0 = 0; q0 < kp / 4; q0 += 64) {
        int q1 = q0 + 64 < kp / 4 ? q0 + 64 : kp / 4;
        for (int m = 0; m < M; m += 4) switch (M - m) {
            case 1: TILE_LANES(1, np); break;
            case 2: TILE_LANES(2, np); break;
            case 3: TILE_LANES(3, np); break;
            default: TILE_LANES(4, np); break;
            }
    }
    const __m512 sc = _mm512_set1_ps(scale);
    for (int p = 0; p < np; p++) {
        int n = (p0 + p * pstride) * SPQ_NR;
        __m512i corr = _mm512_slli_epi32(_mm512_loadu_si512(wsum + n), 7);
        __mmask16 mk = colmask(n, N);
        for (int i = 0; i < M; i++) {
            __m512i a = _mm512_load_si512(ab + i * 64 + 16 * p);
            _mm512_mask_storeu_ps(y + (size_t)i * ldy + n, mk, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a, corr)), sc));
        }
    }
}
#undef TILE_LANES

static void gemm_q8(int M, int N, int kp, int n0, int n1, const int8_t *x, const int8_t *w,
                    const int32_t *wsum, float scale, float *y, int ldy)
{
    for (int n = n0; n < n1; n += 64) {
        int np = (n1 - n + 15) / 16;
        if (np > 4) np = 4;
        if (M == 1) {
            gemv_q8(N, kp, n / SPQ_NR, np, 1, x, w, wsum, scale, y);
            continue;
        }
        int m = 0;
        for (; m + 4 <= M; m += 4) TILE_ROW(q8_tile, 4, np, N, kp, n, m, x, w, wsum, scale, y, ldy);
        switch (M - m) {
        case 3: TILE_ROW(q8_tile, 3, np, N, kp, n, m, x, w, wsum, scale, y, ldy); break;
        case 2: TILE_ROW(q8_tile, 2, np, N, kp, n, m, x, w, wsum, scale, y, ldy); break;
        case 1: TILE_ROW(q8_tile, 1, np, N, kp, n, m, x, w, wsum, scale, y, ldy); break;
        default: break;
        }
    }
}

/* Float weights: WT is a loader turning 16 stored weights at k into a __m512. */
INL __m512 ld_f32(const void *p, size_t off) { return _mm512_loadu_ps((const float *)p + off); }
INL __m512 ld_f16(const void *p, size_t off)
{
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)p + off)));
}
/* bfloat16 is the top half of an FP32: widening is a shift */
INL __m512 ld_bf16(const void *p, size_t off)
{
    __m256i h = _mm256_loadu_si256((const __m256i *)((const uint16_t *)p + off));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
enum { WF32, WF16, WBF16 }; /* float weight formats */

INL void f_tile(const int MR, const int NP, int N, int K, int n, int m, const float *x,
                const void *w, int wf, float *y, int ldy)
{
    __m512 acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int p = 0; p < NP; p++) acc[i][p] = _mm512_setzero_ps();
    const size_t ps = (size_t)K * SPQ_NR, base = (size_t)(n / SPQ_NR) * ps;
    const float *xr = x + (size_t)m * K;
    for (int k = 0; k < K; k++) {
        __m512 wv[4];
        for (int p = 0; p < NP; p++)
            wv[p] = wf == WF32   ? ld_f32(w, base + p * ps + (size_t)k * 16)
                  : wf == WF16   ? ld_f16(w, base + p * ps + (size_t)k * 16)
                                 : ld_bf16(w, base + p * ps + (size_t)k * 16);
        for (int i = 0; i < MR; i++) {
            __m512 xb = _mm512_set1_ps(xr[(size_t)i * K + k]);
            for (int p = 0; p < NP; p++) acc[i][p] = _mm512_fmadd_ps(xb, wv[p], acc[i][p]);
        }
    }
    for (int p = 0; p < NP; p++)
        for (int i = 0; i < MR; i++)
            _mm512_mask_storeu_ps(y + (size_t)(m + i) * ldy + n + p * 16, colmask(n + p * 16, N),
                                  acc[i][p]);
}

#define F_TILE4(MR, NP, ...) f_tile(MR, NP, __VA_ARGS__, WF32, y, ldy)
#define F_TILE2(MR, NP, ...) f_tile(MR, NP, __VA_ARGS__, WF16, y, ldy)
#define F_TILEB(MR, NP, ...) f_tile(MR, NP, __VA_ARGS__, WBF16, y, ldy)

#define GEMM_FLOAT(NAME, WTYPE, TILE)                                                      \
    static void NAME(int M, int N, int K, int n0, int n1, const float *x, const WTYPE *w,  \
                     float *y, int ldy)                                                    \
    {                                                                                      \
        for (int n = n0; n < n1; n += 64) {                                                \
            int np = (n1 - n + 15) / 16;                                                   \
            if (np > 4) np = 4;                                                            \
            int m = 0;                                                                     \
            for (; m + 4 <= M; m += 4) TILE_ROW(TILE, 4, np, N, K, n, m, x, w);            \
            switch (M - m) {                                                               \
            case 3: TILE_ROW(TILE, 3, np, N, K, n, m, x, w); break;                        \
            case 2: TILE_ROW(TILE, 2, np, N, K, n, m, x, w); break;                        \
            case 1: TILE_ROW(TILE, 1, np, N, K, n, m, x, w); break;                        \
            default: break;                                                                \
            }                                                                              \
        }                                                                                  \
    }
GEMM_FLOAT(gemm_f32, float, F_TILE4)
GEMM_FLOAT(gemm_f16, uint16_t, F_TILE2)
GEMM_FLOAT(gemm_bf16, uint16_t, F_TILEB)

/* E4M3 -> f32 for byte j of each 32-bit lane: the 7 magnitude bits land in the f32
 * exponent/mantissa fields shifted so that multiplying by 2^120 rebiases 7 -> 127
 * (subnormals included), and the sign moves to bit 31. */
INL __m512 e4m3_lane(__m512i v, int j)
{
    __m512i c = _mm512_and_si512(_mm512_srli_epi32(v, 8 * j), _mm512_set1_epi32(0xff));
    __m512i bits = _mm512_or_si512(_mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x80)), 24),
                                   _mm512_slli_epi32(_mm512_and_si512(c, _mm512_set1_epi32(0x7f)), 20));
    return _mm512_mul_ps(_mm512_castsi512_ps(bits), _mm512_set1_ps(0x1p120f));
}

INL void e4m3_tile(const int MR, const int NP, int N, int kp, int n, int m, const float *x,
                   const uint8_t *w, float scale, float *y, int ldy)
{
    __m512 acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int p = 0; p < NP; p++) acc[i][p] = _mm512_setzero_ps();
    const size_t ps = (size_t)kp * SPQ_NR;
    const uint8_t *wp = w + (size_t)(n / SPQ_NR) * ps;
    const float *xr = x + (size_t)m * kp;
    for (int q = 0; q < kp / 4; q++) {
        __m512i raw[4];
        for (int p = 0; p < NP; p++) raw[p] = _mm512_loadu_si512(wp + p * ps + (size_t)q * 64);
        for (int j = 0; j < 4; j++) {
            __m512 wv[4];
            for (int p = 0; p < NP; p++) wv[p] = e4m3_lane(raw[p], j);
            for (int i = 0; i < MR; i++) {
                __m512 xb = _mm512_set1_ps(xr[(size_t)i * kp + 4 * q + j]);
                for (int p = 0; p < NP; p++) acc[i][p] = _mm512_fmadd_ps(xb, wv[p], acc[i][p]);
            }
        }
    }
    const __m512 sc = _mm512_set1_ps(scale);
    for (int p = 0; p < NP; p++)
        for (int i = 0; i < MR; i++)
            _mm512_mask_storeu_ps(y + (size_t)(m + i) * ldy + n + p * 16, colmask(n + p * 16, N),
                                  _mm512_mul_ps(acc[i][p], sc));
}

static void gemm_e4m3(int M, int N, int kp, int n0, int n1, const float *x, const uint8_t *w,
                      float scale, float *y, int ldy)
{
    for (int n = n0; n < n1; n += 64) {
        int np = (n1 - n + 15) / 16;
        if (np > 4) np = 4;
        int m = 0;
        for (; m + 4 <= M; m += 4) TILE_ROW(e4m3_tile, 4, np, N, kp, n, m, x, w, scale, y, ldy);
        switch (M - m) {
        case 3: TILE_ROW(e4m3_tile, 3, np, N, kp, n, m, x, w, scale, y, ldy); break;
        case 2: TILE_ROW(e4m3_tile, 2, np, N, kp, n, m, x, w, scale, y, ldy); break;
        case 1: TILE_ROW(e4m3_tile, 1, np, N, kp, n, m, x, w, scale, y, ldy); break;
        default: break;
        }
    }
}

static float absmax(const float *x, size_t n)
{
    __m512 m = _mm512_setzero_ps();
    size_t i = 0;
    for (; i + 16 <= n; i += 16) m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_loadu_ps(x + i)));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1u);
        m = _mm512_max_ps(m, _mm512_abs_ps(_mm512_maskz_loadu_ps(k, x + i)));
    }
    return _mm512_reduce_max_ps(m);
}

static void quant_i8(const float *x, int n, int npad, float inv, float qmax, int8_t *q)
{
    const __m512 s = _mm512_set1_ps(inv), lo = _mm512_set1_ps(-qmax), hi = _mm512_set1_ps(qmax);
    int i = 0;
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        __m512 v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + i), s);
        v = _mm512_min_ps(_mm512_max_ps(v, lo), hi); /* RNE below: same as nearbyintf+clamp */
        _mm_mask_storeu_epi8(q + i, k, _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(v)));
    }
    for (i = n; i < npad; i++) q[i] = 0;
}

/* x[idx[j]] for j < 16: one vgatherdps, or (LD) 16 scalar loads. Gathers are microcoded on
 * AMD Zen: from L1, 6.5 ns per 16 on Zen 5 against 3.6 ns for the loads; on an Intel Xeon the
 * reverse, 3.4-3.7 against 7.0-8.3 (docs/benchmarks.md, Findings). */
#define LOADS16(x, idx)                                                                                \
    _mm512_set_ps(x[idx[15]], x[idx[14]], x[idx[13]], x[idx[12]], x[idx[11]], x[idx[10]], x[idx[9]], \
                  x[idx[8]], x[idx[7]], x[idx[6]], x[idx[5]], x[idx[4]], x[idx[3]], x[idx[2]], x[idx[1]], x[idx[0]])
INL __m512 gather16_i32(const int LD, const float *x, const int32_t *idx)
{
    return LD ? LOADS16(x, idx) : _mm512_i32gather_ps(_mm512_loadu_si512(idx), x, 4);
}
INL __m512 gather16_u16(const int LD, const float *x, const uint16_t *idx)
{
    return LD ? LOADS16(x, idx) : _mm512_i32gather_ps(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)idx)), x, 4);
}
#undef LOADS16

/* CMPQ input blocks (kernels.h): two gather16_i32 per block; absmax and rounding as
 * absmax / quant_i8 above */
INL void cmpq_quant_t(const int LD, int nb, const float *x, const int32_t *src, const float *sc, int8_t *xq,
                      float *xd, int32_t *xs)
{
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (int o = 0; o < nb; o++, src += 32, sc += 32, xq += 32) {
        __m512 v0 = _mm512_mul_ps(gather16_i32(LD, x, src), _mm512_loadu_ps(sc));
        __m512 v1 = _mm512_mul_ps(gather16_i32(LD, x, src + 16), _mm512_loadu_ps(sc + 16));
        float a = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_max_ps(_mm512_setzero_ps(), _mm512_abs_ps(v0)), _mm512_abs_ps(v1)));
        const __m512 s = _mm512_set1_ps(a > 0 ? 127.0f / a : 0.0f);
        __m512i d0 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v0, s), lo), hi));
        __m512i d1 = _mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v1, s), lo), hi));
        _mm_storeu_si128((__m128i *)xq, _mm512_cvtsepi32_epi8(d0));
        _mm_storeu_si128((__m128i *)(xq + 16), _mm512_cvtsepi32_epi8(d1));
        xd[o] = a / 127.0f;
        xs[o] = _mm512_reduce_add_epi32(_mm512_add_epi32(d0, d1));
    }
}
static void cmpq_quant(int nb, const float *x, const int32_t *src, const float *sc, int8_t *xq, float *xd,
                       int32_t *xs)
{
    cmpq_quant_t(0, nb, x, src, sc, xq, xd, xs);
}
static void cmpq_quant_ld(int nb, const float *x, const int32_t *src, const float *sc, int8_t *xq, float *xd,
                          int32_t *xs)
{
    cmpq_quant_t(1, nb, x, src, sc, xq, xd, xs);
}

/* CMPQ outliers (kernels.h): one token, per slot one gather16_u16 (residuals widened by
 * vcvtph2ps); 16 tokens, per slot entry one load of its column's 16 tokens */
INL void cmpq_outliers_t(const int LD, int n, const uint16_t *slot, const float *x, int T, float *s)
{
    if (T == 16) {
        __m512 a[16];
        for (int j = 0; j < 16; j++) a[j] = _mm512_loadu_ps(s + 16 * j);
        for (int k = 0; k < n; k++, slot += 32) {
            float v[16];
            _mm512_storeu_ps(v, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(slot + 16))));
            for (int j = 0; j < 16; j++)
                a[j] = _mm512_add_ps(a[j], _mm512_mul_ps(_mm512_loadu_ps(x + 16 * (size_t)slot[j]), _mm512_set1_ps(v[j])));
        }
        for (int j = 0; j < 16; j++) _mm512_storeu_ps(s + 16 * j, a[j]);
        return;
    }
    __m512 a = _mm512_loadu_ps(s);
    for (int i = 0; i < n; i++, slot += 32) {
        __m512 v = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(slot + 16)));
        a = _mm512_add_ps(a, _mm512_mul_ps(gather16_u16(LD, x, slot), v));
    }
    _mm512_storeu_ps(s, a);
}
static void cmpq_outliers(int n, const uint16_t *slot, const float *x, int T, float *s)
{
    cmpq_outliers_t(0, n, slot, x, T, s);
}
static void cmpq_outliers_ld(int n, const uint16_t *slot, const float *x, int T, float *s)
{
    cmpq_outliers_t(1, n, slot, x, T, s);
}

static void vexp(float *x, int n)
{
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, Sleef_expf16_u10avx512f(_mm512_loadu_ps(x + i)));
    for (; i < n; i++) x[i] = Sleef_expf_u10(x[i]);
}

static float dot_f32(const float *a, const float *b, int n)
{
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1u);
        s0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i), s0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}

/* ---- attention (keys transposed: kt[d][t]) ----
 * Both products of attention are one shape, c[h][j] = mul[h] * sum_r a[h][r] * b[r][j] with
 * c's rows J long: scores (a = q, r = d, b = kt, j = key) and outputs (a = probabilities,
 * r = key, b = v, j = dim). NH heads x 64 columns in 16 accumulators; per r, 4 loads of b
 * feed 4*NH FMAs. */
INL __m512 ld_kv(const int BH, __mmask16 mk, const void *b, size_t off)
{
    if (BH) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(mk, (const uint16_t *)b + off));
    return _mm512_maskz_loadu_ps(mk, (const float *)b + off);
}

INL void attn_mm(const int NH, const int BH, int R, int J, const float *a, int lda, const void *b, int ldb,
                 const float *mul, float *c)
{
    for (int j0 = 0; j0 < J; j0 += 64) {
        __mmask16 mk[4];
        __m512 acc[4][4];
        for (int k = 0; k < 4; k++) mk[k] = colmask(j0 + 16 * k, J);
        for (int h = 0; h < NH; h++)
            for (int k = 0; k < 4; k++) acc[h][k] = _mm512_setzero_ps();
        for (int r = 0; r < R; r++) {
            size_t br = (size_t)r * ldb + j0;
            __m512 bv[4];
            for (int k = 0; k < 4; k++) bv[k] = ld_kv(BH, mk[k], b, br + 16 * k);
            for (int h = 0; h < NH; h++) {
                __m512 ab = _mm512_set1_ps(a[(size_t)h * lda + r]);
                for (int k = 0; k < 4; k++) acc[h][k] = _mm512_fmadd_ps(ab, bv[k], acc[h][k]);
            }
        }
        for (int h = 0; h < NH; h++)
            for (int k = 0; k < 4; k++)
                _mm512_mask_storeu_ps(c + (size_t)h * J + j0 + 16 * k, mk[k], _mm512_mul_ps(acc[h][k], _mm512_set1_ps(mul[h])));
    }
}

/* s[t] = exp(s[t] - max s) over one row; returns 1 / sum */
static float softmax_row(float *s, int T)
{
    __m512 mx = _mm512_set1_ps(-INFINITY), sum = _mm512_setzero_ps();
    for (int t = 0; t < T; t += 16) mx = _mm512_max_ps(mx, _mm512_mask_loadu_ps(mx, colmask(t, T), s + t));
    mx = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
    for (int t = 0; t < T; t += 16) {
        __mmask16 k = colmask(t, T);
        __m512 e = Sleef_expf16_u10avx512f(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, s + t), mx));
        _mm512_mask_storeu_ps(s + t, k, e);
        sum = _mm512_mask_add_ps(sum, k, sum, e);
    }
    return 1.0f / _mm512_reduce_add_ps(sum);
}

SPQ_ATTN

#ifndef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
/* CMPQ (kernels.h layout): per quad Q of a 32-column block, the planes give each byte its
 * code (shift + ternlog), vpermb looks up the u8 level (per-column tables: four columns'
 * 16-entry tables in one 64-byte memory operand, the byte's position j in bits 4-5 of its
 * index; shared tables: one register), and vpdpbusd multiplies the 64 levels by the quad's
 * broadcast int8 activations. Every block ends in one fmadd per accumulator (its
 * activation scale), as the reference. MT tokens x NP panels share each decoded quad. */
#define VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512vbmi")))
#define INLV static inline __attribute__((always_inline)) VBMI

/* byte v shifted so that bit `from` lands on bit `to` (16-bit lanes; the caller masks) */
INLV __m512i bitmove(__m512i v, const int from, const int to)
{
    return from > to ? _mm512_srli_epi16(v, from - to) : from < to ? _mm512_slli_epi16(v, to - from) : v;
}

/* the look-up index of quad Q's 64 bytes in block blk: code bits, then (TS) j in bits 4-5 */
INLV __m512i cq_index(const int b, const int TS, const int Q, const uint8_t *blk)
{
    const __m512i pat = _mm512_set1_epi32(0x30201000), m0f = _mm512_set1_epi8(0x0f);
    __m512i i;
    if (b == 2 || b == 3) {
        i = bitmove(_mm512_loadu_si512(blk + 64 * (Q / 4)), 2 * (Q % 4), 0);
        if (b == 3) /* bit 2 from the 1-bit plane (bitselect, mask 0x03) */
            i = _mm512_ternarylogic_epi32(_mm512_set1_epi8(0x03), i, bitmove(_mm512_loadu_si512(blk + 128), Q, 2), 0xca);
    } else {
        i = bitmove(_mm512_loadu_si512(blk + 64 * (Q / 2)), 4 * (Q % 2), 0);
        if (b == 5)
            i = _mm512_ternarylogic_epi32(m0f, i, bitmove(_mm512_loadu_si512(blk + 256), Q, 4), 0xca);
        if (b == 6)
            i = _mm512_ternarylogic_epi32(m0f, i, bitmove(_mm512_loadu_si512(blk + 256 + 64 * (Q / 4)), 2 * (Q % 4), 4), 0xca);
    }
    if (TS) i = _mm512_ternarylogic_epi32(i, m0f, pat, 0xea); /* (i & 0x0f) | pat */
    return i;
}

INLV void cmpq_tile(const int b, const int TS, const int MT, const int NP, int kp, const uint8_t *codes, size_t ps,
                    const uint8_t *tab, const int8_t *xq, int ldx, const float *xd, int ldd, float *acc, int lda)
{
    /* up to 4 tokens the float sums stay in registers; 8 tokens (prefill) take 16 registers of
     * int32 sums per block, so their float sums are read from and written to acc each block
     * (the same fmadds in the same order) */
    const int FM = MT > 4;
    __m512 f[4][4];
    for (int m = 0; m < (FM ? 0 : MT); m++)
        for (int p = 0; p < NP; p++) f[m][p] = _mm512_loadu_ps(acc + (size_t)m * lda + 16 * p);
    const __m512i T = TS || b == 8 ? _mm512_setzero_si512() : _mm512_loadu_si512(tab), x80 = _mm512_set1_epi8((char)0x80);
    const size_t bb = (size_t)64 * b;
    for (int o = 0; o < kp / SPQ_CMPQ_BLK; o++) {
        __m512i a[8][4];
        for (int m = 0; m < MT; m++)
            for (int p = 0; p < NP; p++) a[m][p] = _mm512_setzero_si512();
        for (int p = 0; p < NP; p++)
            for (int l = 0; l < b; l++) _mm_prefetch((const char *)(codes + p * ps + o * bb + 64 * l) + GEMV_PF, _MM_HINT_T0);
#pragma GCC unroll 8
        for (int Q = 0; Q < 8; Q++) {
            const int k = o * SPQ_CMPQ_BLK + 4 * Q;
            __m512i w[4];
            for (int p = 0; p < NP; p++) {
                const uint8_t *blk = codes + p * ps + o * bb;
                if (b == 8) w[p] = _mm512_xor_si512(_mm512_loadu_si512(blk + 64 * Q), x80);
                else if (TS) w[p] = _mm512_permutexvar_epi8(cq_index(b, TS, Q, blk), _mm512_loadu_si512(tab + (size_t)16 * k));
                else w[p] = _mm512_permutexvar_epi8(cq_index(b, TS, Q, blk), T);
            }
            for (int m = 0; m < MT; m++) {
                __m512i xb = _mm512_set1_epi32(load4(xq + (size_t)m * ldx + k));
                for (int p = 0; p < NP; p++) a[m][p] = _mm512_dpbusd_epi32(a[m][p], w[p], xb);
            }
        }
        for (int m = 0; m < MT; m++) {
            __m512 d = _mm512_set1_ps(xd[(size_t)m * ldd + o]);
            for (int p = 0; p < NP; p++) {
                if (!FM) { f[m][p] = _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(a[m][p]), f[m][p]); continue; }
                float *ap = acc + (size_t)m * lda + 16 * p;
                _mm512_storeu_ps(ap, _mm512_fmadd_ps(d, _mm512_cvtepi32_ps(a[m][p]), _mm512_loadu_ps(ap)));
            }
        }
    }
    for (int m = 0; m < (FM ? 0 : MT); m++)
        for (int p = 0; p < NP; p++) _mm512_storeu_ps(acc + (size_t)m * lda + 16 * p, f[m][p]);
}

/* MT tokens over np panels, NP at a time, then one by one */
INLV void cmpq_tokens(const int b, const int TS, const int MT, const int NP, int kp, int np, const uint8_t *codes,
                      size_t ps, const uint8_t *tab, const int8_t *x, int ldx, const float *d, int ldd, float *ac, int lda)
{
    int p = 0;
    for (; p + NP <= np; p += NP) cmpq_tile(b, TS, MT, NP, kp, codes + p * ps, ps, tab, x, ldx, d, ldd, ac + 16 * p, lda);
    for (; p < np; p++) cmpq_tile(b, TS, MT, 1, kp, codes + p * ps, ps, tab, x, ldx, d, ldd, ac + 16 * p, lda);
}

/* tokens in groups of 8 (3, 5 and 6 bits), then of 4 (then the rest); panels in groups of 4 for
 * one or two tokens, else 2. Codes that straddle bytes cost the most to decode, so there one
 * decoded quad feeds 8 tokens x 2 panels (the kernel 4-15% faster on Zen 5, docs/benchmarks.md,
 * Findings); at 2, 4 and 8 bits the decode is cheap and the 8-token tile's accumulator traffic
 * made it 1-3% slower. */
INLV void cmpq_class(const int b, const int TS, int kp, int np, const uint8_t *codes, size_t ps, const uint8_t *tab,
                     int M, const int8_t *xq, int ldx, const float *xd, int ldd, float *acc, int lda)
{
    int m = 0;
    for (; (b == 3 || b == 5 || b == 6) && m + 8 <= M; m += 8)
        cmpq_tokens(b, TS, 8, 2, kp, np, codes, ps, tab, xq + (size_t)m * ldx, ldx, xd + (size_t)m * ldd, ldd,
                    acc + (size_t)m * lda, lda);
    for (; m < M; m += 4) {
        const int8_t *x = xq + (size_t)m * ldx;
        const float *d = xd + (size_t)m * ldd;
        float *ac = acc + (size_t)m * lda;
        switch (M - m) {
        case 1: cmpq_tokens(b, TS, 1, 4, kp, np, codes, ps, tab, x, ldx, d, ldd, ac, lda); break;
        case 2: cmpq_tokens(b, TS, 2, 4, kp, np, codes, ps, tab, x, ldx, d, ldd, ac, lda); break;
        case 3: cmpq_tokens(b, TS, 3, 2, kp, np, codes, ps, tab, x, ldx, d, ldd, ac, lda); break;
        default: cmpq_tokens(b, TS, 4, 2, kp, np, codes, ps, tab, x, ldx, d, ldd, ac, lda); break;
        }
    }
}
#define CQ_RUN(b, TS) cmpq_class(b, TS, kp, np, codes, ps, tab, M, xq, ldx, xd, ldd, acc, lda);

VBMI static void cmpq_dot_vbmi(int b, int kp, int np, const uint8_t *codes, size_t ps, const uint8_t *tab, int tstride,
                               int M, const int8_t *xq, int ldx, const float *xd, const int32_t *xs, int ldd, float *acc,
                               int lda)
{
    (void)xs;
    if (tstride) {
        switch (b) {
        case 2: CQ_RUN(2, 16) break;
        case 3: CQ_RUN(3, 16) break;
        default: CQ_RUN(4, 16) break;
        }
        return;
    }
    switch (b) {
    case 2: CQ_RUN(2, 0) break;
    case 3: CQ_RUN(3, 0) break;
    case 4: CQ_RUN(4, 0) break;
    case 5: CQ_RUN(5, 0) break;
    case 6: CQ_RUN(6, 0) break;
    default: CQ_RUN(8, 0) break;
    }
}
#define HAVE_CMPQ_VBMI 1
#else
/* The fuzz build (clang with ASan and UBSan) spends minutes on this kernel's instances; the
 * fuzzers test the loaders, which the AVX2 kernel serves as well. */
#define HAVE_CMPQ_VBMI 0
#endif

/* ---- BF16 weights with AVX-512 BF16 (Zen 4/5, Sapphire Rapids): vdpbf16ps multiplies
 * pairs of BF16 (k, k+1) and adds both products to an FP32 lane, twice the FMAs' rate. The
 * activations are rounded to BF16 (round to nearest even, as spq_f32_to_bf16), one pair of a
 * row per 32-bit broadcast; a panel's rows k and k+1 (16 columns each) are interleaved into
 * per-column pairs as they are loaded. Only the table "avx512bf16" uses it. */
#define BF16_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16")))

/* x[0..K) as BF16 pairs (k, k+1) into xp[0..(K+1)/2), K + 1 padded with 0: vcvtne2ps2bf16
 * rounds 32 floats to nearest even at a time */
static inline BF16_TARGET void bf16_pairs(const float *x, int K, uint32_t *xp)
{
    for (int k = 0; k < K; k += 32) {
        __m512 lo = _mm512_maskz_loadu_ps(colmask(k, K), x + k), hi = _mm512_maskz_loadu_ps(colmask(k + 16, K), x + k + 16);
        __m512i v = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
        _mm512_mask_storeu_epi32(xp + k / 2, colmask(k / 2, (K + 1) / 2), v);
    }
}

static inline __attribute__((always_inline)) BF16_TARGET void
bf16_tile(const int MR, const int NP, int N, int K, int n, int m, const uint32_t *xp, int kh, const uint16_t *w,
          float *y, int ldy)
{
    __m512 acc[4][4];
    for (int i = 0; i < MR; i++)
        for (int p = 0; p < NP; p++) acc[i][p] = _mm512_setzero_ps();
    const __m512i idx = _mm512_set_epi16(47, 15, 46, 14, 45, 13, 44, 12, 43, 11, 42, 10, 41, 9, 40, 8,
                                         39, 7, 38, 6, 37, 5, 36, 4, 35, 3, 34, 2, 33, 1, 32, 0);
    const size_t ps = (size_t)K * SPQ_NR, base = (size_t)(n / SPQ_NR) * ps;
    for (int k2 = 0; k2 < kh; k2++) {
        __m512i wv[4];
        for (int p = 0; p < NP; p++) {
            const uint16_t *r = w + base + p * ps + (size_t)(2 * k2) * 16;
            __m256i a = _mm256_loadu_si256((const __m256i *)r);
            __m256i b = 2 * k2 + 1 < K ? _mm256_loadu_si256((const __m256i *)(r + 16)) : _mm256_setzero_si256();
            wv[p] = _mm512_permutex2var_epi16(_mm512_castsi256_si512(a), idx, _mm512_castsi256_si512(b));
        }
        for (int i = 0; i < MR; i++) {
            __m512i xb = _mm512_set1_epi32((int)xp[(size_t)i * kh + k2]);
            for (int p = 0; p < NP; p++)
                acc[i][p] = _mm512_dpbf16_ps(acc[i][p], (__m512bh)wv[p], (__m512bh)xb);
        }
    }
    for (int p = 0; p < NP; p++)
        for (int i = 0; i < MR; i++)
            _mm512_mask_storeu_ps(y + (size_t)(m + i) * ldy + n + p * 16, colmask(n + p * 16, N), acc[i][p]);
}

#define BF16_TILE(MR, NP, ...) bf16_tile(MR, NP, __VA_ARGS__)

static BF16_TARGET void gemm_bf16_dp(int M, int N, int K, int n0, int n1, const float *x, const uint16_t *w, float *y,
                                     int ldy)
{
    int kh = (K + 1) / 2;
    /* up to 4 rows of x as BF16 pairs (k, k+1), k + 1 = K padded with 0 */
    uint32_t stack[4 * 2048], *xp = 4 * (size_t)kh <= sizeof stack / 4 ? stack : malloc(16 * (size_t)kh);
    if (!xp) return;
    for (int m = 0; m < M; m += 4) {
        int mr = M - m < 4 ? M - m : 4;
        for (int i = 0; i < mr; i++) bf16_pairs(x + (size_t)(m + i) * K, K, xp + (size_t)i * kh);
        for (int n = n0; n < n1; n += 64) {
            int np = (n1 - n + 15) / 16;
            if (np > 4) np = 4;
            switch (mr) {
            case 4: TILE_ROW(BF16_TILE, 4, np, N, K, n, m, xp, kh, w, y, ldy); break;
            case 3: TILE_ROW(BF16_TILE, 3, np, N, K, n, m, xp, kh, w, y, ldy); break;
            case 2: TILE_ROW(BF16_TILE, 2, np, N, K, n, m, xp, kh, w, y, ldy); break;
            default: TILE_ROW(BF16_TILE, 1, np, N, K, n, m, xp, kh, w, y, ldy); break;
            }
        }
    }
    if (xp != stack) free(xp);
}

/* ---- ggml's block formats (kernels.h): activations per block, products as stored ---- */

static void gq_quant(int qb, int K, const float *x, uint8_t *xa)
{
    float *d = (float *)xa;
    int16_t *s = (int16_t *)(xa + 4 * (size_t)(K / qb));
    int8_t *q = (int8_t *)(xa + spq_gq_act_q_at(qb, K));
    const __m512 mag = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
    const __m512i lo = _mm512_set1_epi32(-127), hi = _mm512_set1_epi32(127);
    for (int b = 0; b < K / qb; b++) {
        const float *v = x + (size_t)b * qb;
        __m512 mx = _mm512_setzero_ps();
        for (int i = 0; i < qb; i += 16) mx = _mm512_max_ps(mx, _mm512_and_ps(_mm512_loadu_ps(v + i), mag));
        float amax = _mm512_reduce_max_ps(mx), db = amax / 127.0f, id = db > 0 ? 1.0f / db : 0.0f;
        d[b] = db;
        const __m512 vid = _mm512_set1_ps(id);
        for (int i = 0; i < qb; i += 16) { /* rne (the default rounding), within +-127 */
            __m512i r = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(v + i), vid));
            r = _mm512_max_epi32(_mm512_min_epi32(r, hi), lo);
            _mm_storeu_si128((__m128i *)(q + (size_t)b * qb + i), _mm512_cvtsepi32_epi8(r));
            s[(b * qb + i) / 16] = (int16_t)_mm512_reduce_add_epi32(r);
        }
    }
}

/* the IEEE half at p (F16C: exact, as spq_f16_to_f32) */
static inline float half_at(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return _cvtsh_ss(h);
}

/* sum of the 8 int32 lanes */
static inline int32_t hsum8(__m256i v)
{
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
    return _mm_cvtsi128_si32(s);
}

/* A super-block of Q4_K, Q5_K, Q6_K or IQ4_XS as four 64-byte vectors of unsigned codes in
 * natural order (wv[v]: values 64v..64v+63), the int32 scale of each vpdpbusd lane (sv[v]:
 * lane i covers values 64v + 4i..4i+3), and what turns sum_j sc_j (code . x)_j into the
 * exact S and Mn of the reference: per-16 scales sc16 (int16) times the activations' sums
 * with factor off (S -= off * sc16 . s16), and the mins mn16 (Mn = mn16 . s16). */
/* spq_gq_iq4 + 128, the IQ4_NL / IQ4_XS levels as vpdpbusd's unsigned bytes, in each lane */
#define IQ4_LUT                                                                                                  \
    _mm512_broadcast_i32x4(_mm_setr_epi8(1, 24, 45, 63, 79, 93, 106, 118, (char)129, (char)141, (char)153, (char)166, \
                                         (char)181, (char)197, (char)217, (char)241))

typedef struct {
    __m512i wv[4], sv[4];
    __m256i sc16, mn16;
    int off;
    float d, dmin;
} kblock;

INL __m512i lanes_of32(__m256i sc8, int v) /* [sc_2v x 8, sc_2v+1 x 8] */
{
    const __m512i idx = _mm512_set_epi32(2 * v + 1, 2 * v + 1, 2 * v + 1, 2 * v + 1, 2 * v + 1, 2 * v + 1, 2 * v + 1, 2 * v + 1,
                                         2 * v, 2 * v, 2 * v, 2 * v, 2 * v, 2 * v, 2 * v, 2 * v);
    return _mm512_permutexvar_epi32(idx, _mm512_castsi256_si512(sc8));
}

INL __m512i lanes_of16(__m512i sc16x32, int v) /* [sc_4v x 4, ..., sc_4v+3 x 4] */
{
    const __m512i idx = _mm512_set_epi32(4 * v + 3, 4 * v + 3, 4 * v + 3, 4 * v + 3, 4 * v + 2, 4 * v + 2, 4 * v + 2, 4 * v + 2,
                                         4 * v + 1, 4 * v + 1, 4 * v + 1, 4 * v + 1, 4 * v, 4 * v, 4 * v, 4 * v);
    return _mm512_permutexvar_epi32(idx, sc16x32);
}

INL void kblock_decode(const int G, const uint8_t *b, kblock *k)
{
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i sh04 = _mm512_set_epi64(4, 4, 4, 4, 0, 0, 0, 0) /* per 16-bit word: 0 low half, 4 high */;
    const __m512i nib = _mm512_or_si512(sh04, _mm512_slli_epi64(sh04, 16));
    const __m512i nsh = _mm512_or_si512(nib, _mm512_slli_epi64(nib, 32)); /* words 0-15: 0, 16-31: 4 */
    if (G == SPQ_GQ_Q4_K || G == SPQ_GQ_Q5_K) {
        /* the 12 scale bytes (spq_gq_scale_min_k4) as 4 bytes of scales 0-3, 4-7, mins 0-3, 4-7 */
        uint32_t u[3];
        memcpy(u, b + 4, 12);
        const uint32_t m6 = 0x3f3f3f3f, m4b = 0x0f0f0f0f, m2 = 0x03030303;
        uint32_t s03 = u[0] & m6, s47 = (u[2] & m4b) | ((u[0] >> 6) & m2) << 4;
        uint32_t n03 = u[1] & m6, n47 = ((u[2] >> 4) & m4b) | ((u[1] >> 6) & m2) << 4;
        k->d = half_at(b);
        k->dmin = half_at(b + 2);
        __m128i sb = _mm_set_epi32(0, 0, (int)s47, (int)s03), nb = _mm_set_epi32(0, 0, (int)n47, (int)n03);
        __m256i sc8 = _mm256_cvtepu8_epi32(sb);
        k->mn16 = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(nb, nb)); /* each 32-value min twice */
        const uint8_t *qs = b + (G == SPQ_GQ_Q5_K ? 48 : 16);
        __m512i qh = G == SPQ_GQ_Q5_K ? _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b + 16))) : _mm512_setzero_si512();
        for (int v = 0; v < 4; v++) {
            __m512i z = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(qs + 32 * v)));
            __m512i c = _mm512_and_si512(_mm512_srlv_epi16(z, nsh), m4);
            if (G == SPQ_GQ_Q5_K) { /* bit 2v (first 32 values) or 2v + 1 of qh[l] */
                __m512i s = _mm512_add_epi16(_mm512_set1_epi16((short)(2 * v)), _mm512_srli_epi16(nsh, 2));
                __m512i h = _mm512_and_si512(_mm512_srlv_epi16(qh, s), _mm512_set1_epi8(1));
                c = _mm512_or_si512(c, _mm512_slli_epi16(h, 4));
            }
            k->wv[v] = c;
            k->sv[v] = lanes_of32(sc8, v);
        }
        k->sc16 = _mm256_setzero_si256();
        k->off = 0;
        return;
    }
    if (G == SPQ_GQ_Q6_K) { /* ql[128], qh[64], int8 scales[16], d */
        k->d = half_at(b + 208);
        k->dmin = 0;
        __m128i s8 = _mm_loadu_si128((const __m128i *)(b + 192));
        __m512i s32 = _mm512_cvtepi8_epi32(s8);
        for (int n = 0; n < 2; n++) {
            __m512i L = _mm512_loadu_si512((const void *)(b + 64 * n));
            __m512i H = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b + 128 + 32 * n)));
            for (int h = 0; h < 2; h++) { /* values 128n + 64h ..: nibble h of ql, qh bits 4h + (0 | 2) */
                __m512i lo = _mm512_and_si512(h ? _mm512_srli_epi16(L, 4) : L, m4);
                __m512i s = _mm512_add_epi16(_mm512_set1_epi16((short)(4 * h)), _mm512_srli_epi16(nsh, 1));
                __m512i hi = _mm512_and_si512(_mm512_srlv_epi16(H, s), _mm512_set1_epi8(3));
                k->wv[2 * n + h] = _mm512_or_si512(lo, _mm512_slli_epi16(hi, 4));
                k->sv[2 * n + h] = lanes_of16(s32, 2 * n + h);
            }
        }
        k->sc16 = _mm256_cvtepi8_epi16(s8);
        k->mn16 = _mm256_setzero_si256();
        k->off = 32;
        return;
    }
    /* IQ4_XS: d, scales_h (u16), scales_l[4], qs[128]; codes are the levels + 128. Scale j:
     * nibble j of scales_l (bits 4j..) and bits 2j.. of scales_h, minus 32, built in lanes */
    uint16_t sh;
    uint32_t sl;
    memcpy(&sh, b + 2, 2);
    memcpy(&sl, b + 4, 4);
    __m256i lo = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32((int)sl), _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                                  _mm256_set1_epi32(15));
    __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(sh), _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                                  _mm256_set1_epi32(3));
    __m256i sc8 = _mm256_sub_epi32(_mm256_or_si256(lo, _mm256_slli_epi32(hi, 4)), _mm256_set1_epi32(32));
    k->d = half_at(b);
    k->dmin = 0;
    const __m512i lut = IQ4_LUT;
    const __m512i sh0404 = _mm512_set_epi64(4 * 0x0001000100010001ll, 4 * 0x0001000100010001ll, 0, 0,
                                            4 * 0x0001000100010001ll, 4 * 0x0001000100010001ll, 0, 0);
    const __m512i dup = _mm512_set_epi64(3, 2, 3, 2, 1, 0, 1, 0);
    for (int v = 0; v < 4; v++) { /* groups 2v, 2v + 1: [low A, high A, low B, high B] */
        __m512i z = _mm512_permutexvar_epi64(dup, _mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(b + 8 + 32 * v))));
        __m512i c = _mm512_and_si512(_mm512_srlv_epi16(z, sh0404), m4);
        k->wv[v] = _mm512_shuffle_epi8(lut, c);
        k->sv[v] = lanes_of32(sc8, v);
    }
    k->sc16 = _mm256_or_si256(_mm256_and_si256(sc8, _mm256_set1_epi32(0xffff)), _mm256_slli_epi32(sc8, 16)); /* each twice */
    k->mn16 = _mm256_setzero_si256();
    k->off = 128;
}

/* T (1..4) activation rows times weight rows r < nr of a K format, super-block by super-block */
INL void kdot_t(const int G, const int T, int K, int nr, const uint8_t *w, size_t ldw, const uint8_t *xa, size_t ldx,
                float *y, size_t ldy)
{
    const int nb = K / 256;
    const size_t qat = spq_gq_act_q_at(256, K), bb = spq_gq_block_bytes(G);
    for (int r = 0; r < nr; r++) {
        float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        for (int b = 0; b < nb; b++) {
            kblock k;
            kblock_decode(G, w + (size_t)r * ldw + (size_t)b * bb, &k);
            for (int t = 0; t < T; t++) {
                const uint8_t *a = xa + (size_t)t * ldx;
                const int8_t *xq = (const int8_t *)(a + qat) + 256 * b;
                __m256i s16 = _mm256_loadu_si256((const __m256i *)(a + 4 * (size_t)nb) + b);
                __m512i S = _mm512_setzero_si512();
                for (int v = 0; v < 4; v++) {
                    __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), k.wv[v], _mm512_loadu_si512((const void *)(xq + 64 * v)));
                    S = _mm512_add_epi32(S, _mm512_mullo_epi32(p, k.sv[v]));
                }
                int32_t Si = _mm512_reduce_add_epi32(S);
                if (k.off) Si -= k.off * hsum8(_mm256_madd_epi16(k.sc16, s16));
                float xd = ((const float *)a)[b];
                acc[t] = fmaf(k.d * xd, (float)Si, acc[t]);
                if (spq_gq_has_min(G)) acc[t] = fmaf(-(k.dmin * xd), (float)hsum8(_mm256_madd_epi16(k.mn16, s16)), acc[t]);
            }
        }
        for (int t = 0; t < T; t++) y[(size_t)t * ldy + r] = acc[t];
    }
}

#define GQ_BY_T(FN, G, T, ...)                              \
    switch (T) {                                            \
    case 8: FN(G, 8, __VA_ARGS__); break;                   \
    case 7: FN(G, 7, __VA_ARGS__); break;                   \
    case 6: FN(G, 6, __VA_ARGS__); break;                   \
    case 5: FN(G, 5, __VA_ARGS__); break;                   \
    case 4: FN(G, 4, __VA_ARGS__); break;                   \
    case 3: FN(G, 3, __VA_ARGS__); break;                   \
    case 2: FN(G, 2, __VA_ARGS__); break;                   \
    default: FN(G, 1, __VA_ARGS__); break;                  \
    }

static void gq_dot(int g, int K, int nr, const uint8_t *w, size_t ldw, int M, const uint8_t *xa, size_t ldx, float *y,
                   size_t ldy)
{
    /* up to 8 activation rows share each decoded super-block; the legacy formats' rows (a
     * matrix the 8-row layout does not take) run in the reference */
    if (spq_gq_block(g) == 32) {
        spq_gq_dot_ref(g, K, nr, w, ldw, M, xa, ldx, y, ldy);
        return;
    }
    const int step = 8;
    for (int m = 0; m < M; m += step) {
        int T = M - m < step ? M - m : step;
        const uint8_t *a = xa + (size_t)m * ldx;
        float *o = y + (size_t)m * ldy;
        switch (g) {
        case SPQ_GQ_Q4_K: GQ_BY_T(kdot_t, SPQ_GQ_Q4_K, T, K, nr, w, ldw, a, ldx, o, ldy); break;
        case SPQ_GQ_Q5_K: GQ_BY_T(kdot_t, SPQ_GQ_Q5_K, T, K, nr, w, ldw, a, ldx, o, ldy); break;
        case SPQ_GQ_Q6_K: GQ_BY_T(kdot_t, SPQ_GQ_Q6_K, T, K, nr, w, ldw, a, ldx, o, ldy); break;
        case SPQ_GQ_IQ4_XS: GQ_BY_T(kdot_t, SPQ_GQ_IQ4_XS, T, K, nr, w, ldw, a, ldx, o, ldy); break;
        default: spq_gq_dot_ref(g, K, nr, w, ldw, T, a, ldx, o, ldy); break;
        }
    }
}

/* The 8-row layout (kernels.h): each vpdpbusd lane 2r + h is 4 values of row r against the
 * activations' 8 bytes of that code vector broadcast; a sub-block's lanes times its rows'
 * scales, the lane pairs added: the 8 rows' exact S side by side, then the float steps of the
 * reference in 8 lanes at once. */
static inline long long ld8(const void *p)
{
    long long v;
    memcpy(&v, p, 8);
    return v;
}

INL __m512i r8_scales(const uint8_t *p) /* 8 int8 scales (rows) -> lanes 2r, 2r + 1 */
{
    __m128i v = _mm_loadl_epi64((const __m128i *)p);
    return _mm512_cvtepi8_epi32(_mm_unpacklo_epi8(v, v));
}

INL __m256i r8_rowsum(__m512i s) /* lanes 2r + 2r + 1 -> row r */
{
    return _mm512_cvtepi64_epi32(_mm512_add_epi32(s, _mm512_srli_epi64(s, 32)));
}

INL void r8_t(const int G, const int T, int K, int ng, const uint8_t *w, const uint8_t *xa, size_t ldx, float *y,
              size_t ldy)
{
    const int nb = K / 256, nsub = G == SPQ_GQ_Q6_K ? 16 : 8;
    const size_t qat = spq_gq_act_q_at(256, K), blk = spq_gq_r8_block(G), head = spq_gq_r8_head(G);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int i = 0; i < ng; i++) {
        __m256 acc[8];
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
        for (int b = 0; b < nb; b++) {
            const uint8_t *o = w + ((size_t)i * nb + b) * blk, *cv = o + head;
            __m512i S[8];
            for (int t = 0; t < T; t++) S[t] = _mm512_setzero_si512();
            for (int jj = 0; jj < 4; jj++) { /* code vectors 4jj..4jj+3 (low nibbles), 16 + 4jj.. (high) */
                __m512i lo[4], hi[4];
                for (int k = 0; k < 4; k++) {
                    __m512i P = _mm512_load_si512((const void *)(cv + spq_gq_r8_cv(G, 4 * jj + k)));
                    lo[k] = _mm512_and_si512(P, m4);
                    hi[k] = _mm512_and_si512(_mm512_srli_epi16(P, 4), m4);
                    if (G == SPQ_GQ_Q5_K) { /* bit c % 8 of vector c / 8 */
                        const int c = 4 * jj + k, bit = c % 8;
                        __m512i H0 = _mm512_load_si512((const void *)(cv + spq_gq_r8_qh(G, c / 8)));
                        __m512i H1 = _mm512_load_si512((const void *)(cv + spq_gq_r8_qh(G, 2 + c / 8)));
                        __m512i b0 = bit >= 4 ? _mm512_srli_epi16(H0, bit - 4) : _mm512_slli_epi16(H0, 4 - bit);
                        __m512i b1 = bit >= 4 ? _mm512_srli_epi16(H1, bit - 4) : _mm512_slli_epi16(H1, 4 - bit);
                        lo[k] = _mm512_or_si512(lo[k], _mm512_and_si512(b0, _mm512_set1_epi8(0x10)));
                        hi[k] = _mm512_or_si512(hi[k], _mm512_and_si512(b1, _mm512_set1_epi8(0x10)));
                    }
                    if (G == SPQ_GQ_Q6_K) { /* bits 2 (c % 4) of vector c / 4 */
                        __m512i H0 = _mm512_load_si512((const void *)(cv + spq_gq_r8_qh(G, jj)));
                        __m512i H1 = _mm512_load_si512((const void *)(cv + spq_gq_r8_qh(G, 4 + jj)));
                        const int sh = 2 * k;
                        __m512i b0 = sh >= 4 ? _mm512_srli_epi16(H0, sh - 4) : _mm512_slli_epi16(H0, 4 - sh);
                        __m512i b1 = sh >= 4 ? _mm512_srli_epi16(H1, sh - 4) : _mm512_slli_epi16(H1, 4 - sh);
                        lo[k] = _mm512_or_si512(lo[k], _mm512_and_si512(b0, _mm512_set1_epi8(0x30)));
                        hi[k] = _mm512_or_si512(hi[k], _mm512_and_si512(b1, _mm512_set1_epi8(0x30)));
                    }
                    if (G == SPQ_GQ_IQ4_XS) {
                        lo[k] = _mm512_shuffle_epi8(IQ4_LUT, lo[k]);
                        hi[k] = _mm512_shuffle_epi8(IQ4_LUT, hi[k]);
                    }
                }
                if (G == SPQ_GQ_Q6_K) { /* sub-blocks of 16: 2jj, 2jj + 1 (low), 8 + 2jj, 9 + 2jj (high) */
                    __m512i s0 = r8_scales(o + 32 + 8 * (2 * jj)), s1 = r8_scales(o + 32 + 8 * (2 * jj + 1));
                    __m512i s2 = r8_scales(o + 32 + 8 * (8 + 2 * jj)), s3 = r8_scales(o + 32 + 8 * (9 + 2 * jj));
                    for (int t = 0; t < T; t++) {
                        const int8_t *x = (const int8_t *)(xa + (size_t)t * ldx + qat) + 256 * b;
                        __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
                        for (int k = 0; k < 2; k++) {
                            a0 = _mm512_dpbusd_epi32(a0, lo[k], _mm512_set1_epi64(ld8(x + 8 * (4 * jj + k))));
                            a1 = _mm512_dpbusd_epi32(a1, lo[2 + k], _mm512_set1_epi64(ld8(x + 8 * (4 * jj + 2 + k))));
                            a2 = _mm512_dpbusd_epi32(a2, hi[k], _mm512_set1_epi64(ld8(x + 8 * (16 + 4 * jj + k))));
                            a3 = _mm512_dpbusd_epi32(a3, hi[2 + k], _mm512_set1_epi64(ld8(x + 8 * (18 + 4 * jj + k))));
                        }
                        S[t] = _mm512_add_epi32(S[t], _mm512_add_epi32(_mm512_add_epi32(_mm512_mullo_epi32(a0, s0), _mm512_mullo_epi32(a1, s1)),
                                                                         _mm512_add_epi32(_mm512_mullo_epi32(a2, s2), _mm512_mullo_epi32(a3, s3))));
                    }
                } else { /* sub-blocks of 32: jj (low), 4 + jj (high) */
                    __m512i s0 = r8_scales(o + 32 + 8 * jj), s1 = r8_scales(o + 32 + 8 * (4 + jj));
                    for (int t = 0; t < T; t++) {
                        const int8_t *x = (const int8_t *)(xa + (size_t)t * ldx + qat) + 256 * b;
                        __m512i a0 = _mm512_setzero_si512(), a1 = a0;
                        for (int k = 0; k < 4; k++) {
                            a0 = _mm512_dpbusd_epi32(a0, lo[k], _mm512_set1_epi64(ld8(x + 8 * (4 * jj + k))));
                            a1 = _mm512_dpbusd_epi32(a1, hi[k], _mm512_set1_epi64(ld8(x + 8 * (16 + 4 * jj + k))));
                        }
                        S[t] = _mm512_add_epi32(S[t], _mm512_add_epi32(_mm512_mullo_epi32(a0, s0), _mm512_mullo_epi32(a1, s1)));
                    }
                }
            }
            /* the rows' scales (or mins) times the activations' sub-block sums: Mn, or the
             * offset of Q6_K's (- 32) and IQ4_XS's (- 128) unsigned codes */
            const uint8_t *mv = o + 32 + (spq_gq_has_min(G) ? 8 * nsub : 0);
            const __m256 d8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)o));
            const __m256 m8 = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(o + 16)));
            for (int t = 0; t < T; t++) {
                const uint8_t *a = xa + (size_t)t * ldx;
                const int16_t *s16 = (const int16_t *)(a + 4 * (size_t)nb) + 16 * b;
                __m256i M = _mm256_setzero_si256();
                for (int j = 0; j < nsub; j++) {
                    int xs = nsub == 16 ? s16[j] : s16[2 * j] + s16[2 * j + 1];
                    __m256i v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(mv + 8 * j)));
                    M = _mm256_add_epi32(M, _mm256_mullo_epi32(v, _mm256_set1_epi32(xs)));
                }
                __m256i S8 = r8_rowsum(S[t]);
                if (G == SPQ_GQ_Q6_K) S8 = _mm256_sub_epi32(S8, _mm256_slli_epi32(M, 5));
                if (G == SPQ_GQ_IQ4_XS) S8 = _mm256_sub_epi32(S8, _mm256_slli_epi32(M, 7));
                const __m256 xd = _mm256_set1_ps(((const float *)a)[b]);
                acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d8, xd), _mm256_cvtepi32_ps(S8), acc[t]);
                if (spq_gq_has_min(G))
                    acc[t] = _mm256_fmadd_ps(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(m8, xd)), _mm256_cvtepi32_ps(M), acc[t]);
            }
        }
        for (int t = 0; t < T; t++) _mm256_storeu_ps(y + (size_t)t * ldy + 8 * (size_t)i, acc[t]);
    }
}

/* Legacy formats in the 8-row layout: per block of 32, 4 vpdpbusd (codes unsigned: Q8_0's w +
 * 128, Q4_0's nibbles, IQ4_NL's levels + 128) against the broadcast activations, the lane
 * pairs added into the 8 rows' sums, less the offset times the block's activation sum, then
 * the reference's one float step per block in 8 lanes. */
INL void r8l_t(const int G, const int T, int K, int ng, const uint8_t *w, const uint8_t *xa, size_t ldx, float *y,
               size_t ldy)
{
    const int nsb = K / 256;
    const size_t qat = spq_gq_act_q_at(32, K), blk = spq_gq_r8_block(G), cstep = G == SPQ_GQ_Q8_0 ? 256 : 128;
    const int off = G == SPQ_GQ_Q4_0 ? 8 : 128;
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int i = 0; i < ng; i++) {
        __m256 acc[8];
        for (int t = 0; t < T; t++) acc[t] = _mm256_setzero_ps();
        for (int b = 0; b < nsb; b++) {
            const uint8_t *o = w + ((size_t)i * nsb + b) * blk;
            for (int j = 0; j < 8; j++) {
                const uint8_t *c = o + 128 + (size_t)j * cstep;
                __m512i cv[4];
                if (G == SPQ_GQ_Q8_0)
                    for (int k = 0; k < 4; k++) cv[k] = _mm512_load_si512((const void *)(c + 64 * k));
                else
                    for (int k = 0; k < 2; k++) {
                        __m512i P = _mm512_load_si512((const void *)(c + 64 * k));
                        cv[k] = _mm512_and_si512(P, m4);
                        cv[k + 2] = _mm512_and_si512(_mm512_srli_epi16(P, 4), m4);
                        if (G == SPQ_GQ_IQ4_NL) { cv[k] = _mm512_shuffle_epi8(IQ4_LUT, cv[k]); cv[k + 2] = _mm512_shuffle_epi8(IQ4_LUT, cv[k + 2]); }
                    }
                const __m256 d8 = _mm256_cvtph_ps(_mm_load_si128((const __m128i *)(o + 16 * j)));
                for (int t = 0; t < T; t++) {
                    const uint8_t *a = xa + (size_t)t * ldx;
                    const int8_t *x = (const int8_t *)(a + qat) + 256 * b + 32 * j;
                    const int16_t *s16 = (const int16_t *)(a + 4 * (size_t)(K / 32)) + 16 * b + 2 * j;
                    __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), cv[0], _mm512_set1_epi64(ld8(x)));
                    for (int k = 1; k < 4; k++) p = _mm512_dpbusd_epi32(p, cv[k], _mm512_set1_epi64(ld8(x + 8 * k)));
                    __m256i S8 = _mm256_sub_epi32(r8_rowsum(p), _mm256_set1_epi32(off * (s16[0] + s16[1])));
                    const __m256 xd = _mm256_set1_ps(((const float *)a)[8 * b + j]);
                    acc[t] = _mm256_fmadd_ps(_mm256_mul_ps(d8, xd), _mm256_cvtepi32_ps(S8), acc[t]);
                }
            }
        }
        for (int t = 0; t < T; t++) _mm256_storeu_ps(y + (size_t)t * ldy + 8 * (size_t)i, acc[t]);
    }
}

static void gq_dot_r8(int g, int K, int ng, const uint8_t *w, int M, const uint8_t *xa, size_t ldx, float *y, size_t ldy)
{
    for (int m = 0; m < M; m += 4) { /* four activation rows share each expanded code vector */
        int T = M - m < 4 ? M - m : 4;
        const uint8_t *a = xa + (size_t)m * ldx;
        float *o = y + (size_t)m * ldy;
        switch (g) {
        case SPQ_GQ_Q4_K: GQ_BY_T(r8_t, SPQ_GQ_Q4_K, T, K, ng, w, a, ldx, o, ldy); break;
        case SPQ_GQ_Q5_K: GQ_BY_T(r8_t, SPQ_GQ_Q5_K, T, K, ng, w, a, ldx, o, ldy); break;
        case SPQ_GQ_Q6_K: GQ_BY_T(r8_t, SPQ_GQ_Q6_K, T, K, ng, w, a, ldx, o, ldy); break;
        case SPQ_GQ_IQ4_XS: GQ_BY_T(r8_t, SPQ_GQ_IQ4_XS, T, K, ng, w, a, ldx, o, ldy); break;
        case SPQ_GQ_Q8_0: GQ_BY_T(r8l_t, SPQ_GQ_Q8_0, T, K, ng, w, a, ldx, o, ldy); break;
        case SPQ_GQ_Q4_0: GQ_BY_T(r8l_t, SPQ_GQ_Q4_0, T, K, ng, w, a, ldx, o, ldy); break;
        default: GQ_BY_T(r8l_t, SPQ_GQ_IQ4_NL, T, K, ng, w, a, ldx, o, ldy); break;
        }
    }
}

static spq_kernels table = {
    .name = "avx512",
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
    .cmpq_dot = NULL, /* set at first use: VBMI or the AVX2 kernel */
    .cmpq_quant = cmpq_quant,
    .cmpq_outliers = cmpq_outliers,
    .gq_quant = gq_quant,
    .gq_dot = gq_dot,
    .gq_dot_r8 = gq_dot_r8,
    .gemv_q8 = gemv_q8,
    .gemm_q8_lanes = gemm_q8_lanes,
};

/* the same kernels, BF16 weights through vdpbf16ps */
static spq_kernels table_bf16;
/* CMPQ needs vpermb (AVX512_VBMI, not on Skylake/Cascade Lake): else the AVX2 kernel */
static void init_tables(void)
{
    __builtin_cpu_init();
    table.cmpq_dot = spq_kernels_avx2()->cmpq_dot;
#if HAVE_CMPQ_VBMI
    if (__builtin_cpu_supports("avx512vbmi")) table.cmpq_dot = cmpq_dot_vbmi;
#endif
    if (__builtin_cpu_is("amd")) { /* gather16_*: loads beat vgatherdps there */
        table.cmpq_quant = cmpq_quant_ld;
        table.cmpq_outliers = cmpq_outliers_ld;
    }
    table_bf16 = table;
    table_bf16.name = "avx512bf16";
    table_bf16.gemm_bf16 = gemm_bf16_dp;
    table_bf16.bf16_rounds_x = 1;
}
static pthread_once_t once = PTHREAD_ONCE_INIT;

const spq_kernels *spq_kernels_avx512(void)
{
    pthread_once(&once, init_tables);
    return &table;
}
const spq_kernels *spq_kernels_avx512bf16(void)
{
    pthread_once(&once, init_tables);
    return &table_bf16;
}
#else
const spq_kernels *spq_kernels_avx512(void) { return 0; }
const spq_kernels *spq_kernels_avx512bf16(void) { return 0; }
#endif
