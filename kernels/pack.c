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

/* Where the bits of column k, row r sit in a panel: for each plane kind of a b-bit class
 * (8, 4, 2 low, 2 high, 1), the byte and the shift; one table for the reader and the packer. */
typedef struct { int n, bits[4], at[4], byte[4], shift[4]; } cmpq_site; /* code bits at..at+bits-1 */

static void cmpq_site_of(int b, int k, int r, cmpq_site *s)
{
    int o = k / SPQ_CMPQ_BLK, Q = k % SPQ_CMPQ_BLK / 4, j = k % 4, base = o * 64 * b, at = 0;
    int p8 = b == 8 ? 8 : 0, p4 = b >= 4 && b <= 6 ? 4 : 0, p2 = b == 2 || b == 3 || b == 6 ? 2 : 0;
    int off4 = base + 64 * p8, off2 = off4 + 64 * p4, off1 = off2 + 64 * p2, cell = 4 * r + j;
    s->n = 0;
    if (p8) { s->bits[s->n] = 8; s->at[s->n] = at; s->byte[s->n] = base + 64 * Q + cell; s->shift[s->n++] = 0; at = 8; }
    if (p4) { s->bits[s->n] = 4; s->at[s->n] = at; s->byte[s->n] = off4 + 64 * (Q / 2) + cell; s->shift[s->n++] = 4 * (Q % 2); at = 4; }
    if (p2) { s->bits[s->n] = 2; s->at[s->n] = at; s->byte[s->n] = off2 + 64 * (Q / 4) + cell; s->shift[s->n++] = 2 * (Q % 4); at += 2; }
    if (b == 3 || b == 5) { s->bits[s->n] = 1; s->at[s->n] = at; s->byte[s->n] = off1 + cell; s->shift[s->n++] = Q; }
}

unsigned spq_cmpq_code(const uint8_t *panel, int b, int k, int r)
{
    cmpq_site s;
    cmpq_site_of(b, k, r, &s);
    unsigned c = 0;
    for (int i = 0; i < s.n; i++) c |= (unsigned)(panel[s.byte[i]] >> s.shift[i] & ((1u << s.bits[i]) - 1u)) << s.at[i];
    return c;
}

void spq_pack_cmpq(const uint8_t *c, int N, int kc, int b, int kp, uint8_t *out)
{
    int np = (N + SPQ_NR - 1) / SPQ_NR;
    size_t pb = spq_cmpq_panel_bytes(b, kp);
    memset(out, 0, pb * (size_t)np);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < kc; k++) {
            cmpq_site s;
            cmpq_site_of(b, k, n % SPQ_NR, &s);
            unsigned v = c[(size_t)n * kc + k];
            for (int i = 0; i < s.n; i++)
                out[(size_t)(n / SPQ_NR) * pb + (size_t)s.byte[i]] |= (uint8_t)((v >> s.at[i] & ((1u << s.bits[i]) - 1u)) << s.shift[i]);
        }
}
