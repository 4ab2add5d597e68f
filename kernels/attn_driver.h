/* attn_driver.h — the attention entry points shared by the ISA files. Each defines
 *   attn_mm(NH, BH, R, J, a, lda, b, ldb, mul, c): c[h][j] = mul[h] * sum_r a[h][r] * b[r][j]
 *   (always inlined; NH heads, a compile-time 1..4; b, the KV cache, is FP32 or, with the
 *   compile-time BH = 1, IEEE half; c's rows J long)
 * and softmax_row(s, T) returning 1 / sum, then expands SPQ_ATTN: the dispatch table's attn
 * (FP32 cache) and attn_h (FP16 cache), four query heads at a time. SPQ_BY_COUNT4 picks the
 * NH specialisation; an ISA whose product is not one attn_mm call (NEON: column blocks of 16,
 * 4, then scalar) defines ATTN_PROD(nh, BH, R, J, a, lda, b, ldb, mul, c) before including
 * this. */
#ifndef SPQ_ATTN_DRIVER_H
#define SPQ_ATTN_DRIVER_H

#include "by_count.h"

#ifndef ATTN_PROD
#define ATTN_PROD(nh, ...) SPQ_BY_COUNT4(attn_mm, nh, __VA_ARGS__)
#endif

#define SPQ_ATTN                                                                                       \
    static inline __attribute__((always_inline)) void attn_any(const int BH, int nq, int hd, int T,   \
                                                               float scale, const float *q,            \
                                                               const void *kt, int ldk, const void *v, \
                                                               int ldv, float *s, float *o)            \
    {                                                                                                  \
        for (int h0 = 0; h0 < nq; h0 += 4) {                                                           \
            int nh = nq - h0 < 4 ? nq - h0 : 4;                                                        \
            float inv[4], sc[4] = {scale, scale, scale, scale}, *sh = s + (size_t)h0 * T;              \
            ATTN_PROD(nh, BH, hd, T, q + (size_t)h0 * hd, hd, kt, ldk, sc, sh);                      \
            for (int h = 0; h < nh; h++) inv[h] = softmax_row(sh + (size_t)h * T, T);                  \
            ATTN_PROD(nh, BH, T, hd, sh, T, v, ldv, inv, o + (size_t)h0 * hd);                       \
        }                                                                                              \
    }                                                                                                  \
    static void attn(int nq, int hd, int T, float scale, const float *q, const float *kt, int ldk,    \
                     const float *v, int ldv, float *s, float *o)                                     \
    {                                                                                                  \
        attn_any(0, nq, hd, T, scale, q, kt, ldk, v, ldv, s, o);                                       \
    }                                                                                                  \
    static void attn_h(int nq, int hd, int T, float scale, const float *q, const uint16_t *kt,        \
                       int ldk, const uint16_t *v, int ldv, float *s, float *o)                       \
    {                                                                                                  \
        attn_any(1, nq, hd, T, scale, q, kt, ldk, v, ldv, s, o);                                       \
    }

#endif
