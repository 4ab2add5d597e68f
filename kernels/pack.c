/* pack.c — reorder row-major weights into the panel layout every kernel reads. */
#include "kernels.h"

#include <string.h>

int spq_kpad(int K) { return (K + 3) & ~3; }

size_t spq_pack_q8_size(int N, int K)
{
    size_t np = (size_t)(N + SPQ_NR - 1) / SPQ_NR;
    return np * (size_t)spq_kpad(K) * SPQ_NR;
}

size_t spq_pack_q8_wsum_at(int N, int K) { return (spq_pack_q8_size(N, K) + 63) & ~(size_t)63; }

/* Panel p, quad q, column c, byte j  <-  W[p*16 + c][4q + j]. */
void spq_pack_q8(const int8_t *w, int N, int K, int8_t *out, int32_t *wsum)
{
    int kp = spq_kpad(K), np = (N + SPQ_NR - 1) / SPQ_NR;
    memset(out, 0, spq_pack_q8_size(N, K));
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)K > (1u << 20))
    for (int n = 0; n < N; n++) {
        int8_t *panel = out + (size_t)(n / SPQ_NR) * kp * SPQ_NR;
        int c = n % SPQ_NR;
        int32_t s = 0;
        for (int k = 0; k < K; k++) {
            int8_t v = w[(size_t)n * K + k];
            panel[(size_t)(k / 4) * 64 + c * 4 + (k & 3)] = v;
            s += v;
        }
        if (wsum) wsum[n] = s;
    }
    if (wsum)
        for (int n = N; n < np * SPQ_NR; n++) wsum[n] = 0;
}

void spq_pack_fp8(const uint8_t *w, int N, int K, uint8_t *out)
{
    spq_pack_q8((const int8_t *)w, N, K, (int8_t *)out, NULL);
}

size_t spq_pack_f_size(int N, int K, int elem)
{
    size_t np = (size_t)(N + SPQ_NR - 1) / SPQ_NR;
    return np * (size_t)K * SPQ_NR * (size_t)elem;
}

void spq_pack_f(const void *w, int N, int K, int elem, void *out)
{
    const char *src = w;
    char *dst = out;
    memset(out, 0, spq_pack_f_size(N, K, elem));
#pragma omp parallel for schedule(static) if ((size_t)N * (size_t)K > (1u << 20))
    for (int n = 0; n < N; n++) {
        char *panel = dst + (size_t)(n / SPQ_NR) * K * SPQ_NR * elem;
        int c = n % SPQ_NR;
        for (int k = 0; k < K; k++)
            memcpy(panel + ((size_t)k * SPQ_NR + c) * elem, src + ((size_t)n * K + k) * elem,
                   (size_t)elem);
    }
}

void spq_pack_lut(const uint8_t *c, int N, int kc, int b, int kp, uint32_t *out)
{
    int G = spq_lut_group(b), np = (N + SPQ_NR - 1) / SPQ_NR;
    size_t pw = spq_lut_panel_words(b, kp);
    memset(out, 0, 4 * pw * (size_t)np);
    for (int n = 0; n < N; n++) {
        uint32_t *panel = out + (size_t)(n / SPQ_NR) * pw;
        int r = n % SPQ_NR;
        for (int k = 0; k < kc; k++) {
            int o = (k % G) * b;
            uint32_t *gw = panel + (size_t)(k / G) * (size_t)(G * b / 32) * 16;
            uint64_t v = (uint64_t)(c[(size_t)n * kc + k] & ((1u << b) - 1u)) << (o % 32);
            gw[(o / 32) * 16 + r] |= (uint32_t)v;
            if (v >> 32) gw[(o / 32 + 1) * 16 + r] |= (uint32_t)(v >> 32);
        }
    }
}
