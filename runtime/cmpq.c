/* cmpq.c — the CMPQ blob: layout, checks, dequantisation, and running it (int8 activations
 * per block of 32 columns times int8 levels, cmpq_dot). */
#include "runtime/cmpq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

const int spq_cmpq_bits[SPQ_CMPQ_NCLS] = {2, 3, 4, 5, 6, 8};
static const int lvoff[5] = {0, 4, 12, 28, 60}; /* shared levels of class c at levels + lvoff[c] */
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

static int chan_class(const uint8_t *map, uint32_t k) { return map[k / 2] >> (4 * (k % 2)) & 15; }

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
    for (uint32_t k = 0; k < h->K; k++) cnt[chan_class(p + L.cls, k)]++;
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

/* Work items (spq_cmpq_apply_n): item i is panels i, i + Q, i + 2Q, i + 3Q (Q = ceil(panels
 * / 4) items; the lanes past the last panel are left out), so that a thread's contiguous share
 * of items reads four long sequential streams, not streams that restart every few KiB (as the
 * INT8 decode driver, kernels/dispatch.c). */
static int panels_of(const spq_cmpq_rt *r) { return ((int)r->h.N + 15) / 16; }
static int items_of(const spq_cmpq_rt *r) { return (panels_of(r) + 3) / 4; }

/* the panels of item blk that exist (1..4) */
static int lanes_of(const spq_cmpq_rt *r, int blk)
{
    int np = panels_of(r), Q = items_of(r), lanes = 0;
    while (lanes < 4 && blk + lanes * Q < np) lanes++;
    return lanes;
}

/* panel p's place in item order (items in turn, each its lanes in turn): the panels of items
 * before p's, in each lane, then p's lane */
static int item_pos(const spq_cmpq_rt *r, int p)
{
    int np = panels_of(r), Q = items_of(r), blk = p % Q, pos = p / Q;
    for (int l = 0; l < 4; l++) {
        int in_lane = np - l * Q < 0 ? 0 : np - l * Q;
        pos += in_lane < blk ? in_lane : blk;
    }
    return pos;
}

/* the blob's row lists as panel slots (spq_cmpq_rt.eoff), in item order: a thread's outliers
 * are one sequential stream */
static int outlier_slots(spq_cmpq_rt *r, const uint16_t *val)
{
    int N = (int)r->h.N, np = panels_of(r);
    if (!(r->eoff = malloc(sizeof(uint32_t) * ((size_t)np + 1)))) goto fail;
    for (int p = 0; p < np; p++) { /* the slot count of the panel at each place */
        uint32_t most = 0;
        for (int n = 16 * p; n < 16 * p + 16 && n < N; n++)
            most = r->rowptr[n + 1] - r->rowptr[n] > most ? r->rowptr[n + 1] - r->rowptr[n] : most;
        r->eoff[item_pos(r, p) + 1] = most;
    }
    r->eoff[0] = 0;
    for (int i = 0; i < np; i++) r->eoff[i + 1] += r->eoff[i];
    size_t slots = (size_t)r->eoff[np];
    if (!(r->eslot = aligned_alloc(64, 64 * (slots + 1)))) goto fail;
    memset(r->eslot, 0, 64 * (slots + 1));
    for (int n = 0; n < N; n++)
        for (uint32_t i = r->rowptr[n], k = 0, at = r->eoff[item_pos(r, n / 16)]; i < r->rowptr[n + 1]; i++, k++) {
            uint16_t *s = r->eslot + 32 * ((size_t)at + k);
            s[n % 16] = r->col[i];
            s[16 + n % 16] = val[i];
        }
    return 0;
fail:
    spq_cmpq_rt_free(r);
    return -1;
}

int spq_cmpq_rt_init(spq_cmpq_rt *r, const void *blob)
{
    memset(r, 0, sizeof *r);
    const uint8_t *p = blob;
    spq_cmpq_read_hdr(blob, &r->h);
    spq_cmpq_layout_of(&r->h, &r->L);
    const spq_cmpq_layout *L = &r->L;
    for (int c = 0; c < SPQ_CMPQ_NCLS; c++) r->kt += L->kp[c];
    r->perm = malloc(sizeof(int32_t) * r->h.K);
    r->pos = malloc(sizeof(int32_t) * r->h.K);
    r->scale = calloc((size_t)r->kt + 1, sizeof(float));
    r->src = calloc((size_t)r->kt + 1, sizeof(int32_t));
    if (!r->perm || !r->pos || !r->scale || !r->src) { spq_cmpq_rt_free(r); return -1; }
    const int8_t *lv = (const int8_t *)(p + L->levels), *tb = (const int8_t *)(p + L->tables);
    const uint16_t *sc = (const uint16_t *)(p + L->scales);
    for (int c = 0, j = 0; c < SPQ_CMPQ_NCLS; c++) /* stored order: by class, then channel */
        for (uint32_t k = 0; k < r->h.K; k++)
            if (chan_class(p + L->cls, k) == c) r->perm[j++] = (int32_t)k;
    uint32_t jstart = 0; /* first stored column of class c */
    for (int c = 0, xo = 0; c < SPQ_CMPQ_NCLS; c++) {
        int b = spq_cmpq_bits[c], kc = (int)r->h.kc[c];
        r->xoff[c] = xo;
        xo += L->kp[c];
        r->codes[c] = p + L->codes[c];
        for (int j = 0; j < kc; j++) {
            r->pos[r->perm[jstart + j]] = r->xoff[c] + j;
            r->src[r->xoff[c] + j] = r->perm[jstart + j];
            r->scale[r->xoff[c] + j] = spq_f16_to_f32(sc[jstart + j]);
        }
        jstart += (uint32_t)kc;
        if (b == 8) continue;
        if (spq_cmpq_uses_shared((int)r->h.mode, c)) { /* one 64-entry table */
            if (!(r->tab[c] = aligned_alloc(64, 64))) { spq_cmpq_rt_free(r); return -1; }
            for (int i = 0; i < 64; i++) r->tab[c][i] = (uint8_t)(lv[lvoff[c] + i % (1 << b)] + 128);
            continue;
        }
        r->tstride[c] = 16; /* its own 16 entries per column, padding columns zero-level */
        if (!(r->tab[c] = aligned_alloc(64, up64((size_t)L->kp[c] * 16)))) { spq_cmpq_rt_free(r); return -1; }
        memset(r->tab[c], 128, (size_t)L->kp[c] * 16);
        for (int j = 0; j < kc; j++, tb += 1 << b)
            for (int i = 0; i < 16; i++) r->tab[c][(size_t)j * 16 + i] = (uint8_t)(tb[i % (1 << b)] + 128);
    }
    r->rowptr = (const uint32_t *)(p + L->rowptr);
    r->col = (const uint16_t *)(p + L->col);
    return outlier_slots(r, (const uint16_t *)(p + L->val));
}

void spq_cmpq_rt_free(spq_cmpq_rt *r)
{
    free(r->perm);
    free(r->pos);
    free(r->scale);
    free(r->src);
    for (int c = 0; c < SPQ_CMPQ_NCLS; c++) free(r->tab[c]);
    free(r->eoff);
    free(r->eslot);
    memset(r, 0, sizeof *r);
}

/* the level (-127..127) of padded stored column j (class c) in row n */
static int level_of(const spq_cmpq_rt *r, int c, int j, int n)
{
    int b = spq_cmpq_bits[c], kp = r->L.kp[c];
    unsigned code = spq_cmpq_code(r->codes[c] + (size_t)(n / 16) * spq_cmpq_panel_bytes(b, kp), b, j, n % 16);
    if (b == 8) return (int8_t)code;
    return (int)r->tab[c][(size_t)j * (size_t)r->tstride[c] + code] - 128;
}

int spq_cmpq_dequant(const void *blob, float *out)
{
    spq_cmpq_rt r;
    if (spq_cmpq_rt_init(&r, blob)) return -1;
    int N = (int)r.h.N, K = (int)r.h.K;
    const uint16_t *val = (const uint16_t *)((const uint8_t *)blob + r.L.val);
    for (int n = 0; n < N; n++) {
        for (int c = 0, j0 = 0; c < SPQ_CMPQ_NCLS; j0 += (int)r.h.kc[c], c++)
            for (int j = 0; j < (int)r.h.kc[c]; j++)
                out[(size_t)n * K + r.perm[j0 + j]] = (float)level_of(&r, c, j, n) * r.scale[r.xoff[c] + j];
        for (uint32_t i = r.rowptr[n]; i < r.rowptr[n + 1]; i++) out[(size_t)n * K + r.col[i]] += spq_f16_to_f32(val[i]);
    }
    spq_cmpq_rt_free(&r);
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

/* One input row's scratch: xd[nb] block scales, xs[nb] block sums, then xq[kt] (16-byte
 * aligned with the row). */
typedef struct { float *xd; int32_t *xs; int8_t *xq; } qrow;
static int nblocks(const spq_cmpq_rt *r) { return r->kt / SPQ_CMPQ_BLK; }
int spq_cmpq_row_scratch(const spq_cmpq_rt *r) { return (2 * nblocks(r) + 15) / 16 * 16 + r->kt / 4; }
static qrow row_of(const spq_cmpq_rt *r, float *xs, int m)
{
    float *o = xs + (size_t)m * spq_cmpq_row_scratch(r);
    int nb = nblocks(r);
    return (qrow){o, (int32_t *)(o + nb), (int8_t *)(o + (2 * nb + 15) / 16 * 16)};
}

/* blocks o0..o1 of input row x (original order): their stored columns times their scales
 * (padding: src 0, scale 0), int8 with each block's scale absmax / 127, and the codes' sums */
static void quantize_blocks(const spq_kernels *k, const spq_cmpq_rt *r, const float *x, qrow q, int o0, int o1)
{
    k->cmpq_quant(o1 - o0, x, r->src + o0 * SPQ_CMPQ_BLK, r->scale + o0 * SPQ_CMPQ_BLK, q.xq + o0 * SPQ_CMPQ_BLK,
                  q.xd + o0, q.xs + o0);
}

/* sum_o xd[o] * 128 * xs[o]: the bias of the kernels' u8 levels (level + 128) in one row */
static float bias_of(const spq_cmpq_rt *r, qrow q)
{
    float s = 0;
    for (int o = 0; o < nblocks(r); o++) s += q.xd[o] * (float)(128 * q.xs[o]);
    return s;
}

/* y[i * N + 16p + j] += the outlier residuals of panel p's rows j against input token i <
 * ntok: xin one original-order input row (T = 1) or its columns 16 tokens wide (T = 16,
 * ntok <= 16); pos the panel's place in item order (item_pos); the panel's slots 16 rows at a
 * time (no branch per row: a loop per row of a few outliers mispredicts its exit about once a
 * row) */
static inline __attribute__((always_inline)) void outliers_panel(const spq_kernels *k, const spq_cmpq_rt *r, int p,
                                                                 int pos, const float *xin, const int T, int ntok,
                                                                 float *y)
{
    int N = (int)r->h.N, n0 = 16 * p, rows = N - n0 < 16 ? N - n0 : 16;
    float s[256];
    memset(s, 0, sizeof(float) * 16 * (size_t)T);
    k->cmpq_outliers((int)(r->eoff[pos + 1] - r->eoff[pos]), r->eslot + 32 * (size_t)r->eoff[pos], xin, T, s);
    for (int i = 0; i < ntok; i++)
        for (int j = 0; j < rows; j++) y[(size_t)i * N + n0 + j] += s[T * j + i];
}

/* item blk for all M rows, outliers left out; acc: M x 64 floats; bias: each row's bias_of */
static void run_block(const spq_kernels *k, const spq_cmpq_rt *r, int M, float *y, float *xs, float *acc,
                      const float *bias, int blk)
{
    int N = (int)r->h.N, ld = spq_cmpq_row_scratch(r), Q = items_of(r), lanes = lanes_of(r, blk);
    qrow q0 = row_of(r, xs, 0);
    memset(acc, 0, sizeof(float) * (size_t)M * 64);
    for (int c = 0; c < SPQ_CMPQ_NCLS; c++) {
        if (!r->h.kc[c]) continue;
        int b = spq_cmpq_bits[c], kp = r->L.kp[c], o0 = r->xoff[c] / SPQ_CMPQ_BLK;
        size_t pb = spq_cmpq_panel_bytes(b, kp);
        k->cmpq_dot(b, kp, lanes, r->codes[c] + (size_t)blk * pb, (size_t)Q * pb, r->tab[c], r->tstride[c], M,
                    q0.xq + r->xoff[c], 4 * ld, q0.xd + o0, q0.xs + o0, ld, acc, 64);
    }
    for (int i = 0; i < lanes; i++) {
        int n0 = 16 * (blk + i * Q), rows = N - n0 < 16 ? N - n0 : 16;
        for (int m = 0; m < M; m++) {
            float *yr = y + (size_t)m * N + n0, corr = bias[m];
            const float *ar = acc + (size_t)m * 64 + 16 * i;
            for (int j = 0; j < rows; j++) yr[j] = ar[j] - corr;
        }
    }
}

/* the outliers of the items done[0..nd) (tensor, item) for all M rows: with by16, 16 rows at
 * a time through a transposed copy (K x 16 floats) where there is memory for it, so that each
 * outlier reads its column's 16 tokens in one load instead of one gather per token; else row
 * by row of x. Each input row is read once (item by item, a long prompt's x would stream from
 * far caches once per item). */
static void add_outliers(const spq_kernels *k, const spq_cmpq_rt *const *rs, float *const *ys, const int *done, int nd,
                         const float *x, int M, int by16)
{
    int K = (int)rs[0]->h.K;
    float *xt = by16 && M >= 16 ? malloc(sizeof(float) * 16 * (size_t)K) : NULL;
    const int T = xt ? 16 : 1;
    for (int m = 0, ntok; m < M; m += ntok) {
        ntok = M - m < T ? M - m : T;
        const float *xin = x + (size_t)m * K;
        if (xt) {
            for (int c = 0; c < K; c++)
                for (int i = 0; i < 16; i++) xt[16 * (size_t)c + i] = i < ntok ? xin[(size_t)i * K + c] : 0.0f;
            xin = xt;
        }
        for (int d = 0; d < nd; d++) {
            const spq_cmpq_rt *r = rs[done[2 * d]];
            int N = (int)r->h.N, blk = done[2 * d + 1], Q = items_of(r), lanes = lanes_of(r, blk);
            int pos = item_pos(r, blk); /* the item's lanes are at pos, pos + 1, ... */
            float *y = ys[done[2 * d]] + (size_t)m * N;
            for (int i = 0; i < lanes; i++) /* T a constant in each call: a decode step's panel stays small */
                if (xt) outliers_panel(k, r, blk + i * Q, pos + i, xin, 16, ntok, y);
                else outliers_panel(k, r, blk + i * Q, pos + i, xin, 1, 1, y);
        }
    }
    free(xt);
}

void spq_cmpq_hint(const spq_thr *t, const spq_cmpq_rt *r)
{
    if (!r) { spq_team_hint(t, NULL, 0, 0, 1); return; }
    int Q = items_of(r), b0, b1, c = 0;
    for (int i = 1; i < SPQ_CMPQ_NCLS; i++) /* the class with the most bytes */
        if ((size_t)r->L.kp[i] * spq_cmpq_bits[i] > (size_t)r->L.kp[c] * spq_cmpq_bits[c]) c = i;
    spq_split(t, Q, &b0, &b1);
    size_t pb = spq_cmpq_panel_bytes(spq_cmpq_bits[c], r->L.kp[c]);
    /* the thread's share in each of the four lanes (the last lane may end short: the hint
     * stops at the tensor's end) */
    spq_team_hint(t, r->codes[c] + (size_t)b0 * pb, (size_t)(b1 - b0) * pb, (size_t)Q * pb, lanes_of(r, 0));
}

/* the item counts of n tensors: quantised blocks of M rows, or items of four panels */
static int total_blocks(const spq_cmpq_rt *const *rs, int n, int M, int rows)
{
    int s = 0;
    for (int i = 0; i < n; i++) s += rows ? items_of(rs[i]) : M * nblocks(rs[i]);
    return s;
}

void spq_cmpq_apply_n(const spq_thr *t, const spq_cmpq_rt *const *rs, int n, const float *x, int M, float *const *ys,
                      float *xs, const spq_cmpq_rt *next)
{
    int K = (int)rs[0]->h.K, q0, q1;
    float *xsi[SPQ_CMPQ_MAXN];
    for (int i = 0; i < n; xs += (size_t)M * spq_cmpq_row_scratch(rs[i]), i++) xsi[i] = xs;
    spq_cmpq_hint(t, rs[0]); /* for the waits while the input is quantised */
    spq_team_sync(t); /* every row of x is complete */
    spq_split(t, total_blocks(rs, n, M, 0), &q0, &q1); /* every thread quantises its share of the blocks */
    for (int i = 0, base = 0; i < n; base += M * nblocks(rs[i]), i++) {
        int nq = nblocks(rs[i]);
        for (int m = 0; m < M; m++) { /* row m's blocks base + m nq .. + nq */
            int a = base + m * nq, lo = q0 > a ? q0 : a, hi = q1 < a + nq ? q1 : a + nq;
            if (lo < hi) quantize_blocks(t->team->k, rs[i], x + (size_t)m * K, row_of(rs[i], xsi[i], m), lo - a, hi - a);
        }
    }
    /* per thread: M x 64 accumulators and each tensor's row biases (M each): on the stack up to
     * 4 rows, so that the fallback below needs no memory */
    size_t fl = (size_t)M * (64 + (size_t)n);
    float stack[4 * (64 + SPQ_CMPQ_MAXN)], *acc = M <= 4 ? stack : malloc(sizeof(float) * fl);
    if (spq_team_max(t, !acc) > 0) { /* a thread has no accumulator: 4 rows at a time */
        if (acc != stack) free(acc);
        for (int m = 0; m < M; m += 4) {
            float *ym[SPQ_CMPQ_MAXN];
            for (int i = 0; i < n; i++) ym[i] = ys[i] + (size_t)m * rs[i]->h.N;
            spq_cmpq_apply_n(t, rs, n, x + (size_t)m * K, M - m < 4 ? M - m : 4, ym, xsi[0], next);
        }
        return;
    }
    /* (spq_team_max above: every row of xs is complete) */
    float *bias = acc + (size_t)M * 64; /* each thread its own copy: no shared writes */
    for (int i = 0; i < n; i++)
        for (int m = 0; m < M; m++) bias[(size_t)i * M + m] = bias_of(rs[i], row_of(rs[i], xsi[i], m));
    /* the items this thread does (tensor, item): their outliers after the loop; without
     * memory for the list, each item's right after it */
    int nitems = total_blocks(rs, n, M, 1), istack[512], nd = 0;
    int *done = 2 * nitems <= 512 ? istack : malloc(sizeof(int) * 2 * (size_t)nitems);
    spq_loop lp;
    spq_loop_begin(t, nitems, &lp);
    for (int blk; (blk = spq_loop_next(t, &lp)) >= 0;) {
        int i = 0, one[2];
        while (i + 1 < n && blk >= items_of(rs[i])) blk -= items_of(rs[i++]);
        run_block(t->team->k, rs[i], M, ys[i], xsi[i], acc, bias + (size_t)i * M, blk);
        int *slot = done ? done + 2 * nd++ : one;
        slot[0] = i;
        slot[1] = blk;
        if (!done) add_outliers(t->team->k, rs, ys, one, 1, x, M, 0);
    }
    if (done) add_outliers(t->team->k, rs, ys, done, nd, x, M, 1);
    if (done != istack) free(done);
    if (acc != stack) free(acc);
    spq_cmpq_hint(t, next); /* for the wait at the end, and after */
    spq_team_sync(t);
}

void spq_cmpq_apply(const spq_thr *t, const spq_cmpq_rt *r, const float *x, int M, float *y, float *xs,
                    const spq_cmpq_rt *next)
{
    spq_cmpq_apply_n(t, &r, 1, x, M, &y, xs, next);
}
