/* cmpq_blob.c — the CMPQ blob (cmpq_blob.h): header, layout, checks, dequantisation. */
#include "format/cmpq_blob.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

const int spq_cmpq_bits[SPQ_CMPQ_NCLS] = {2, 3, 4, 5, 6, 8};
const int spq_cmpq_lvoff[SPQ_CMPQ_NCLS - 1] = {0, 4, 12, 28, 60};
#define NLEVELS 124
#define MAGIC 0x51504d43u /* "CMPQ" */
#define VERSION 2

static size_t up64(size_t x) { return (x + 63) & ~(size_t)63; }
static size_t up4(size_t x) { return (x + 3) & ~(size_t)3; }
#define HDR 48

void spq_cmpq_read_hdr(const void *blob, spq_cmpq_hdr *h)
{
    uint32_t u[HDR / 4];
    memcpy(u, blob, sizeof u);
    h->N = u[2]; h->K = u[3];
    memcpy(h->kc, u + 4, sizeof h->kc);
    h->n_out = u[10]; h->mode = u[11];
}

void spq_cmpq_write_hdr(void *blob, const spq_cmpq_hdr *h)
{
    uint32_t u[HDR / 4] = {MAGIC, VERSION, h->N, h->K};
    memcpy(u + 4, h->kc, sizeof h->kc);
    u[10] = h->n_out; u[11] = h->mode;
    memcpy(blob, u, sizeof u);
}

void spq_cmpq_layout_of(const spq_cmpq_hdr *h, spq_cmpq_layout *L)
{
    size_t np = (h->N + 15) / 16, off = HDR, tb = 0;
    L->cls = off;
    off = up4(off + ((size_t)h->K + 1) / 2);
    L->levels = off;
    off = up4(off + NLEVELS);
    L->scales = off;
    off = up4(off + 2 * (size_t)h->K);
    for (int c = 0; c < SPQ_CMPQ_NCLS; c++) {
        L->kp[c] = (int)((h->kc[c] + SPQ_CMPQ_BLK - 1) / SPQ_CMPQ_BLK * SPQ_CMPQ_BLK);
        if (!spq_cmpq_uses_shared((int)h->mode, c) && spq_cmpq_bits[c] <= 4) tb += (size_t)h->kc[c] << spq_cmpq_bits[c];
    }
    L->tables = off;
    off = up64(off + tb); /* codes: 64-byte aligned for the kernels' loads */
    for (int c = 0; c < SPQ_CMPQ_NCLS; c++) {
        L->codes[c] = off;
        off = up64(off + np * spq_cmpq_panel_bytes(spq_cmpq_bits[c], L->kp[c]));
    }
    L->rowptr = off;
    off = up4(off + 4 * ((size_t)h->N + 1));
    L->col = off;
    off = up4(off + 2 * (size_t)h->n_out);
    L->val = off;
    L->size = up64(off + 2 * (size_t)h->n_out); /* the next tensor starts 64-aligned anyway */
}

double spq_cmpq_bpw(const spq_cmpq_hdr *h)
{
    spq_cmpq_layout L;
    spq_cmpq_layout_of(h, &L);
    return 8.0 * (double)L.size / ((double)h->N * h->K);
}

static int finite_f16(uint16_t v) { return (v & 0x7c00) != 0x7c00; }

const char *spq_cmpq_check(const void *blob, size_t n, int64_t N, int64_t K, spq_cmpq_hdr *h)
{
    const uint8_t *p = blob;
    uint32_t u[2];
    if (n < HDR) return "CMPQ tensor shorter than its header";
    memcpy(u, p, sizeof u);
    if (u[0] != MAGIC) return "CMPQ tensor has a wrong magic";
    if (u[1] == 1) return "CMPQ tensor is format version 1: quantise the model again with this spikeq";
    if (u[1] != VERSION) return "CMPQ tensor version is not 2";
    spq_cmpq_read_hdr(blob, h);
    if (h->N != N || h->K != K) return "CMPQ header shape differs from the tensor's";
    if (K > 65535) return "CMPQ tensor has more than 65535 input channels";
    uint64_t sum = 0;
    for (int c = 0; c < SPQ_CMPQ_NCLS; c++) sum += h->kc[c];
    if (sum != h->K) return "CMPQ class column counts do not add up to K";
    if (h->mode > 1) return "CMPQ table mode is unknown";
    if ((uint64_t)h->n_out > (uint64_t)h->N * h->K) return "CMPQ outlier count out of range";
    spq_cmpq_layout L;
    spq_cmpq_layout_of(h, &L);
    if (L.size != n) return "CMPQ tensor size does not match its header";
    uint32_t cnt[16] = {0};
    for (uint32_t k = 0; k < h->K; k++) cnt[spq_cmpq_class_of(p + L.cls, k)]++;
    if (memcmp(cnt, h->kc, sizeof h->kc)) return "CMPQ channel classes do not match the class counts";
    const int8_t *lv = (const int8_t *)(p + L.levels), *tb = (const int8_t *)(p + L.tables);
    for (int i = 0; i < NLEVELS; i++)
        if (lv[i] == -128) return "CMPQ level out of range (-128)";
    for (size_t i = 0; i < L.codes[0] - L.tables; i++)
        if (tb[i] == -128) return "CMPQ level out of range (-128)";
    const uint16_t *sc = (const uint16_t *)(p + L.scales);
    for (uint32_t k = 0; k < h->K; k++)
        if (!finite_f16(sc[k])) return "CMPQ column scale is not finite";
    const uint8_t *codes8 = p + L.codes[SPQ_CMPQ_NCLS - 1]; /* 8-bit codes are levels too */
    for (size_t i = 0; i < L.rowptr - L.codes[SPQ_CMPQ_NCLS - 1]; i++)
        if (codes8[i] == 0x80) return "CMPQ 8-bit code out of range (-128)";
    const uint32_t *rp = (const uint32_t *)(p + L.rowptr);
    const uint16_t *col = (const uint16_t *)(p + L.col), *val = (const uint16_t *)(p + L.val);
    if (rp[0] != 0 || rp[h->N] != h->n_out) return "CMPQ outlier row pointers out of range";
    for (uint32_t i = 0; i < h->N; i++)
        if (rp[i + 1] < rp[i]) return "CMPQ outlier row pointers out of range";
    for (uint32_t i = 0; i < h->n_out; i++)
        if (col[i] >= h->K || !finite_f16(val[i])) return "CMPQ outlier column or value out of range";
    return NULL;
}

void spq_cmpq_perm(const void *blob, const spq_cmpq_hdr *h, const spq_cmpq_layout *L, int32_t *perm)
{
    const uint8_t *map = (const uint8_t *)blob + L->cls;
    for (int c = 0, j = 0; c < SPQ_CMPQ_NCLS; c++)
        for (uint32_t k = 0; k < h->K; k++)
            if (spq_cmpq_class_of(map, k) == c) perm[j++] = (int32_t)k;
}

/* the levels of class c's stored column j (its class's shared set, or its own table) */
static const int8_t *column_levels(const uint8_t *p, const spq_cmpq_hdr *h, const spq_cmpq_layout *L, int c, int j)
{
    if (spq_cmpq_uses_shared((int)h->mode, c)) return (const int8_t *)(p + L->levels) + spq_cmpq_lvoff[c];
    size_t off = 0; /* the tables of the classes before c, then the columns before j */
    for (int d = 0; d < c; d++)
        if (!spq_cmpq_uses_shared((int)h->mode, d) && spq_cmpq_bits[d] <= 4) off += (size_t)h->kc[d] << spq_cmpq_bits[d];
    return (const int8_t *)(p + L->tables) + off + ((size_t)j << spq_cmpq_bits[c]);
}

int spq_cmpq_dequant(const void *blob, float *out)
{
    const uint8_t *p = blob;
    spq_cmpq_hdr h;
    spq_cmpq_layout L;
    spq_cmpq_read_hdr(blob, &h);
    spq_cmpq_layout_of(&h, &L);
    int N = (int)h.N, K = (int)h.K;
    int32_t *perm = malloc(sizeof(int32_t) * (K ? (size_t)K : 1));
    if (!perm) return -1;
    spq_cmpq_perm(blob, &h, &L, perm);
    const uint16_t *sc = (const uint16_t *)(p + L.scales);
    for (int c = 0, j0 = 0; c < SPQ_CMPQ_NCLS; j0 += (int)h.kc[c], c++) {
        int b = spq_cmpq_bits[c];
        for (int j = 0; j < (int)h.kc[c]; j++) {
            const int8_t *lv = b == 8 ? NULL : column_levels(p, &h, &L, c, j);
            float t = spq_f16_to_f32(sc[j0 + j]);
            for (int n = 0; n < N; n++) {
                unsigned code = spq_cmpq_code(p + L.codes[c] + (size_t)(n / 16) * spq_cmpq_panel_bytes(b, L.kp[c]), b, j, n % 16);
                int level = b == 8 ? (int8_t)code : lv[code];
                out[(size_t)n * K + perm[j0 + j]] = (float)level * t;
            }
        }
    }
    const uint32_t *rp = (const uint32_t *)(p + L.rowptr);
    const uint16_t *col = (const uint16_t *)(p + L.col), *val = (const uint16_t *)(p + L.val);
    for (int n = 0; n < N; n++)
        for (uint32_t i = rp[n]; i < rp[n + 1]; i++) out[(size_t)n * K + col[i]] += spq_f16_to_f32(val[i]);
    free(perm);
    return 0;
}

void *spq_cmpq_synthetic(int N, int K, const uint32_t *kc, uint32_t n_out, uint64_t seed, size_t *nbytes)
{
    spq_cmpq_hdr h = {(uint32_t)N, (uint32_t)K, {0}, n_out, SPQ_CMPQ_SHARED};
    memcpy(h.kc, kc, sizeof h.kc);
    spq_cmpq_layout L;
    spq_cmpq_layout_of(&h, &L);
    uint8_t *p = aligned_alloc(64, L.size);
    if (!p) return NULL;
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < L.size; i++) { /* xorshift bytes */
        x ^= x << 13; x ^= x >> 7; x ^= x << 17;
        p[i] = (uint8_t)(x >> 32);
    }
    spq_cmpq_write_hdr(p, &h);
    memset(p + L.cls, 0, ((size_t)K + 1) / 2);
    for (int k = 0, c = 0, left = (int)kc[0]; k < K; k++, left--) { /* classes in turn */
        while (left == 0) left = (int)kc[++c];
        p[L.cls + (size_t)k / 2] |= (uint8_t)(c << (4 * (k % 2)));
    }
    int8_t *lv = (int8_t *)(p + L.levels);
    for (size_t i = 0; i < L.scales - L.levels; i++) lv[i] = lv[i] == -128 ? 0 : lv[i];
    uint16_t *sc = (uint16_t *)(p + L.scales);
    for (int k = 0; k < K; k++) sc[k] = spq_f32_to_f16(0.0002f + 0.000001f * (float)(sc[k] & 255));
    int8_t *tb = (int8_t *)(p + L.tables);
    for (size_t i = 0; i < L.codes[0] - L.tables; i++) tb[i] = tb[i] == -128 ? 0 : tb[i];
    uint8_t *c8 = p + L.codes[SPQ_CMPQ_NCLS - 1];
    for (size_t i = 0; i < L.rowptr - L.codes[SPQ_CMPQ_NCLS - 1]; i++) c8[i] = c8[i] == 0x80 ? 0 : c8[i];
    uint32_t *rp = (uint32_t *)(p + L.rowptr);
    uint16_t *col = (uint16_t *)(p + L.col), *val = (uint16_t *)(p + L.val);
    for (int n = 0; n <= N; n++) rp[n] = (uint32_t)((uint64_t)n_out * (uint64_t)n / (uint64_t)N);
    for (uint32_t i = 0; i < n_out; i++) { col[i] = (uint16_t)((i * 7919u) % (uint32_t)K); val[i] = spq_f32_to_f16(0.01f); }
    *nbytes = L.size;
    return p;
}
