/* cmpq.c — running a CMPQ tensor (cmpq.h): the blob's tables and outlier slots set up for
 * the kernels, and its product (int8 activations per block of 32 columns times int8 levels,
 * cmpq_dot). */
#include "runtime/cmpq.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

static size_t up64(size_t x) { return (x + 63) & ~(size_t)63; }

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
    spq_cmpq_perm(blob, &r->h, L, r->perm);
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
            for (int i = 0; i < 64; i++) r->tab[c][i] = (uint8_t)(lv[spq_cmpq_lvoff[c] + i % (1 << b)] + 128);
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
