/* cmpq.c — the CMPQ blob: layout, checks, dequantisation, and running it (LUT GEMV for
 * decode, dequantised panels + float GEMM for prefill). */
#include "runtime/cmpq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

const int spq_cmpq_bits[SPQ_CMPQ_NCLS] = {2, 3, 4, 8};
#define MAGIC 0x51504d43u /* "CMPQ" */

static size_t up64(size_t x) { return (x + 63) & ~(size_t)63; }
static size_t up4(size_t x) { return (x + 3) & ~(size_t)3; }
#define HDR 48

void spq_cmpq_read_hdr(const void *blob, spq_cmpq_hdr *h)
{
    uint32_t u[10];
    memcpy(u, blob, sizeof u);
    h->N = u[2]; h->K = u[3];
    memcpy(h->kc, u + 4, sizeof h->kc);
    h->n_out = u[8]; h->mode = u[9];
}

void spq_cmpq_write_hdr(void *blob, const spq_cmpq_hdr *h)
{
    uint32_t u[HDR / 4] = {MAGIC, 1, h->N, h->K, h->kc[0], h->kc[1], h->kc[2], h->kc[3], h->n_out, h->mode};
    memcpy(blob, u, sizeof u);
}

void spq_cmpq_layout_of(const spq_cmpq_hdr *h, spq_cmpq_layout *L)
{
    size_t np = (h->N + 15) / 16, off = HDR, tb = 0;
    L->cls = off;
    off = up4(off + ((size_t)h->K + 3) / 4);
    L->levels = off;
    if (h->mode == SPQ_CMPQ_SHARED) off = up4(off + 2 * (4 + 8 + 16));
    for (int c = 0; c < SPQ_CMPQ_NCLS; c++) {
        int b = spq_cmpq_bits[c], G = spq_lut_group(b);
        L->kp[c] = (int)((h->kc[c] + (uint32_t)G - 1) / (uint32_t)G * (uint32_t)G);
        tb += (size_t)h->kc[c] * (h->mode == SPQ_CMPQ_COLUMN && b <= 4 ? (size_t)1 << b : 1);
    }
    L->tables = off;
    off = up64(off + 2 * tb); /* codes: 64-byte aligned for the kernels' loads */
    for (int c = 0; c < SPQ_CMPQ_NCLS; c++) {
        L->codes[c] = off;
        off = up64(off + 4 * np * spq_lut_panel_words(spq_cmpq_bits[c], L->kp[c]));
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

static int chan_class(const uint8_t *map, uint32_t k) { return map[k / 4] >> (2 * (k % 4)) & 3; }

static int finite_f16(uint16_t v) { return (v & 0x7c00) != 0x7c00; }

const char *spq_cmpq_check(const void *blob, size_t n, int64_t N, int64_t K, spq_cmpq_hdr *h)
{
    const uint8_t *p = blob;
    uint32_t u[2];
    if (n < HDR) return "CMPQ tensor shorter than its header";
    memcpy(u, p, sizeof u);
    if (u[0] != MAGIC) return "CMPQ tensor has a wrong magic";
    if (u[1] != 1) return "CMPQ tensor version is not 1";
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
    uint32_t cnt[SPQ_CMPQ_NCLS] = {0};
    for (uint32_t k = 0; k < h->K; k++) cnt[chan_class(p + L.cls, k)]++;
    if (memcmp(cnt, h->kc, sizeof cnt)) return "CMPQ channel classes do not match the class counts";
    const uint16_t *lv = (const uint16_t *)(p + L.levels), *tb = (const uint16_t *)(p + L.tables);
    size_t ntab = (L.codes[0] - L.tables) / 2;
    for (int i = 0; h->mode == SPQ_CMPQ_SHARED && i < 28; i++)
        if (!finite_f16(lv[i])) return "CMPQ level is not finite";
    for (size_t i = 0; i < ntab; i++)
        if (!finite_f16(tb[i])) return "CMPQ table entry is not finite";
    const uint32_t *rp = (const uint32_t *)(p + L.rowptr);
    const uint16_t *col = (const uint16_t *)(p + L.col), *val = (const uint16_t *)(p + L.val);
    if (rp[0] != 0 || rp[h->N] != h->n_out) return "CMPQ outlier row pointers out of range";
    for (uint32_t i = 0; i < h->N; i++)
        if (rp[i + 1] < rp[i]) return "CMPQ outlier row pointers out of range";
    for (uint32_t i = 0; i < h->n_out; i++)
        if (col[i] >= h->K || !finite_f16(val[i])) return "CMPQ outlier column or value out of range";
    return NULL;
}

int spq_cmpq_rt_init(spq_cmpq_rt *r, const void *blob)
{
    memset(r, 0, sizeof *r);
    const uint8_t *p = blob;
    spq_cmpq_read_hdr(blob, &r->h);
    spq_cmpq_layout_of(&r->h, &r->L);
    const spq_cmpq_layout *L = &r->L;
    r->perm = malloc(sizeof(int32_t) * r->h.K);
    r->pos = malloc(sizeof(int32_t) * r->h.K);
    if (!r->perm || !r->pos) { free(r->perm); free(r->pos); r->perm = r->pos = NULL; return -1; }
    const uint16_t *lv = (const uint16_t *)(p + L->levels), *tb = (const uint16_t *)(p + L->tables);
    for (int c = 0, j = 0; c < SPQ_CMPQ_NCLS; c++) /* stored order: by class, then channel */
        for (uint32_t k = 0; k < r->h.K; k++)
            if (chan_class(p + L->cls, k) == c) r->perm[j++] = (int32_t)k;
    int lvoff[3] = {0, 4, 12};
    uint32_t jstart = 0; /* first stored column of class c */
    for (int c = 0; c < SPQ_CMPQ_NCLS; c++) {
        int b = spq_cmpq_bits[c], kp = L->kp[c];
        r->xoff[c] = r->kt;
        r->kt += kp;
        r->codes[c] = (const uint32_t *)(p + L->codes[c]);
        for (uint32_t j = 0; j < r->h.kc[c]; j++)
            r->pos[r->perm[jstart + j]] = r->xoff[c] + (int)j;
        jstart += r->h.kc[c];
        size_t nf = (size_t)kp * (b <= 4 ? 16 : 1);
        r->tab[c] = aligned_alloc(64, up64(4 * nf + 4));
        if (!r->tab[c]) { spq_cmpq_rt_free(r); return -1; }
        memset(r->tab[c], 0, 4 * nf);
        if (b <= 4 && r->h.mode == SPQ_CMPQ_SHARED) {
            if (!(r->colscale[c] = calloc((size_t)kp + 1, sizeof(float)))) { spq_cmpq_rt_free(r); return -1; }
            for (int i = 0; i < 16; i++) r->shtab[c][i] = spq_f16_to_f32(lv[lvoff[c] + i % (1 << b)]);
        }
        for (uint32_t k = 0; k < r->h.kc[c]; k++) {
            if (b == 8) { r->tab[c][k] = spq_f16_to_f32(*tb++); continue; }
            float lev[16], s = 1.0f;
            if (r->h.mode == SPQ_CMPQ_SHARED) {
                s = spq_f16_to_f32(*tb++);
                r->colscale[c][k] = s;
                for (int i = 0; i < 1 << b; i++) lev[i] = s * spq_f16_to_f32(lv[lvoff[c] + i]);
            } else {
                for (int i = 0; i < 1 << b; i++) lev[i] = spq_f16_to_f32(*tb++);
            }
            for (int i = 0; i < 16; i++) r->tab[c][(size_t)k * 16 + i] = lev[i % (1 << b)];
        }
    }
    r->rowptr = (const uint32_t *)(p + L->rowptr);
    r->col = (const uint16_t *)(p + L->col);
    r->val = malloc(sizeof(float) * ((size_t)r->h.n_out + 1));
    if (!r->val) { spq_cmpq_rt_free(r); return -1; }
    const uint16_t *val = (const uint16_t *)(p + L->val);
    for (uint32_t i = 0; i < r->h.n_out; i++) r->val[i] = spq_f16_to_f32(val[i]);
    return 0;
}

void spq_cmpq_rt_free(spq_cmpq_rt *r)
{
    free(r->perm);
    free(r->pos);
    for (int c = 0; c < SPQ_CMPQ_NCLS; c++) free(r->tab[c]);
    for (int c = 0; c < 3; c++) free(r->colscale[c]);
    free(r->val);
    memset(r, 0, sizeof *r);
}

int spq_cmpq_row_scratch(const spq_cmpq_rt *r) { return r->kt; }

/* class c of panel p into tile[kp][16] (the float GEMM's panel layout); the 16-entry tables
 * repeat every 2^b entries, so a code's neighbours above bit b may stay in the index */
static void dequant_panel(const spq_cmpq_rt *r, int c, int p, float *tile)
{
    int b = spq_cmpq_bits[c], kp = r->L.kp[c], G = spq_lut_group(b), WG = G * b / 32;
    const uint32_t *pc = r->codes[c] + (size_t)p * spq_lut_panel_words(b, kp);
    for (int k = 0; k < kp; k++) {
        int o = (k % G) * b, sh = o & 31;
        const uint32_t *gw = pc + (size_t)(k / G) * WG * 16 + (o >> 5) * 16;
        const float *T = r->tab[c] + (size_t)k * 16;
        float *t = tile + (size_t)k * 16;
        if (b == 8) {
            float s = r->tab[c][k];
            for (int i = 0; i < 16; i++) t[i] = (float)(int8_t)(gw[i] >> sh) * s;
        } else if (sh + b <= 32) {
            for (int i = 0; i < 16; i++) t[i] = T[(gw[i] >> sh) & 15];
        } else {
            for (int i = 0; i < 16; i++) t[i] = T[((gw[i] >> sh) | (gw[i + 16] << (32 - sh))) & 15];
        }
    }
}

int spq_cmpq_dequant(const void *blob, float *out)
{
    spq_cmpq_rt r;
    if (spq_cmpq_rt_init(&r, blob)) return -1;
    int N = (int)r.h.N, K = (int)r.h.K;
    float *tile = malloc(sizeof(float) * (size_t)r.kt * 16); /* one panel, the prefill layout */
    if (!tile) { spq_cmpq_rt_free(&r); return -1; }
    for (int p = 0; p < (N + 15) / 16; p++) {
        for (int c = 0; c < SPQ_CMPQ_NCLS; c++) dequant_panel(&r, c, p, tile + (size_t)r.xoff[c] * 16);
        for (int n = 16 * p; n < 16 * p + 16 && n < N; n++) {
            for (int k = 0; k < K; k++) out[(size_t)n * K + k] = tile[(size_t)r.pos[k] * 16 + n % 16];
            for (uint32_t i = r.rowptr[n]; i < r.rowptr[n + 1]; i++) out[(size_t)n * K + r.col[i]] += r.val[i];
        }
    }
    free(tile);
    spq_cmpq_rt_free(&r);
    return 0;
}

/* x[M][K] -> xs[M][kt]: each class's channels in stored order, zero padding; fold: times
 * the column scales of shared-table classes (the decode kernel's form) */
static void permute_input(const spq_cmpq_rt *r, const float *x, int M, float *xs, int fold)
{
    int K = (int)r->h.K;
    for (int m = 0; m < M; m++) {
        const float *xr = x + (size_t)m * K;
        float *o = xs + (size_t)m * r->kt;
        int j0 = 0;
        for (int c = 0; c < SPQ_CMPQ_NCLS; c++) {
            float *oc = o + r->xoff[c];
            int kc = (int)r->h.kc[c];
            const float *sc = fold && c < 3 ? r->colscale[c] : NULL;
            if (sc)
                for (int j = 0; j < kc; j++) oc[j] = xr[r->perm[j0 + j]] * sc[j];
            else
                for (int j = 0; j < kc; j++) oc[j] = xr[r->perm[j0 + j]];
            for (int j = kc; j < r->L.kp[c]; j++) oc[j] = 0;
            j0 += kc;
        }
    }
}

/* y[n] += outlier residuals of row n against the original-order input row xr */
static float outliers_row(const spq_cmpq_rt *r, int n, const float *xr)
{
    float s = 0;
    for (uint32_t i = r->rowptr[n]; i < r->rowptr[n + 1]; i++) s += xr[r->col[i]] * r->val[i];
    return s;
}

/* one block of 4 panels (64 rows) of the decode GEMV for M < 4 input rows */
static void gemv_block(const spq_kernels *k, const spq_cmpq_rt *r, const float *x, int M, float *y, const float *xs, int blk)
{
    int N = (int)r->h.N, K = (int)r->h.K, np = (N + 15) / 16;
    int p0 = 4 * blk, p1 = p0 + 4 < np ? p0 + 4 : np;
    for (int m = 0; m < M; m++) {
        float acc[64] = {0};
        for (int c = 0; c < SPQ_CMPQ_NCLS; c++) {
            if (!r->h.kc[c]) continue;
            int sh = c < 3 && r->colscale[c];
            k->gemv_lut(spq_cmpq_bits[c], r->L.kp[c], p0, p1, xs + (size_t)m * r->kt + r->xoff[c], r->codes[c],
                        sh ? r->shtab[c] : r->tab[c], sh ? 0 : 16, acc);
        }
        for (int n = 16 * p0; n < 16 * p1 && n < N; n++)
            y[(size_t)m * N + n] = acc[n - 16 * p0] + outliers_row(r, n, x + (size_t)m * K);
    }
}

/* prefill: dequantise one block of 4 panels (64 rows) to a [4][kt][16] float tile (the
 * float GEMM's panel layout) and multiply all M rows by it */
static void gemm_block(const spq_kernels *k, const spq_cmpq_rt *r, const float *xs, int M, float *y, float *tile, int blk)
{
    int N = (int)r->h.N, np = (N + 15) / 16;
    int p0 = 4 * blk, p1 = p0 + 4 < np ? p0 + 4 : np;
    for (int p = p0; p < p1; p++)
        for (int c = 0; c < SPQ_CMPQ_NCLS; c++)
            dequant_panel(r, c, p, tile + ((size_t)(p - p0) * r->kt + (size_t)r->xoff[c]) * 16);
    int n0 = 16 * p0, nr = N - n0 < 64 ? N - n0 : 64;
    for (int n = n0; n < n0 + nr; n++) /* outliers join the tile: the GEMM applies them */
        for (uint32_t i = r->rowptr[n]; i < r->rowptr[n + 1]; i++)
            tile[((size_t)(n / 16 - p0) * r->kt + (size_t)r->pos[r->col[i]]) * 16 + n % 16] += r->val[i];
    k->gemm_f32(M, nr, r->kt, 0, nr, xs, tile, y + n0, N);
}

void spq_cmpq_apply(const spq_thr *t, const spq_cmpq_rt *r, const float *x, int M, float *y, float *xs)
{
    int N = (int)r->h.N, K = (int)r->h.K, nb = ((N + 15) / 16 + 3) / 4, r0, r1;
    spq_team_sync(t); /* every row of x is complete */
    spq_split(t, M, &r0, &r1);
    permute_input(r, x + (size_t)r0 * K, r1 - r0, xs + (size_t)r0 * r->kt, M < 4);
    /* prefill: one tile per thread, allocated once per call */
    float *tile = M < 4 ? NULL : aligned_alloc(64, up64(sizeof(float) * (size_t)r->kt * 64));
    if (spq_team_max(t, M >= 4 && !tile) > 0) { /* a thread has no tile: the GEMV path, 3 rows at a time */
        free(tile);
        for (int m = 0; m < M; m += 3)
            spq_cmpq_apply(t, r, x + (size_t)m * K, M - m < 3 ? M - m : 3, y + (size_t)m * N, xs);
        return;
    }
    spq_loop lp; /* (spq_team_max above: every row of xs is complete) */
    spq_loop_begin(t, nb, &lp);
    for (int blk; (blk = spq_loop_next(t, &lp)) >= 0;)
        if (M < 4) gemv_block(t->team->k, r, x, M, y, xs, blk);
        else gemm_block(t->team->k, r, xs, M, y, tile, blk);
    free(tile);
    spq_team_sync(t);
}
