/* cmpq_fit.c — the CMPQ quantiser: outliers, per-channel level fitting, bit allocation.
 *
 * Error model: for an input x with channel energies h_k = E[x_k^2] and small cross terms,
 * E|x (W - Q)^T|^2 ~ sum_k h_k sum_n (w_nk - q_nk)^2. Every choice below minimises that
 * proxy ("loss") under the byte budget:
 *  1. activation outliers: the n_out/2 weights of largest |w| sqrt(h_k) (big weights on the
 *     channels that carry big activations) are set apart before fitting;
 *  2. each column's squared error at 2 to 6 (Lloyd levels) and 8 bits (uniform) is measured,
 *     with every level an int8 times the column's FP16 scale (what the kernels multiply);
 *  3. bits per column: a Lagrangian sweep (loss + lambda * bytes) then greedy exact filling,
 *     so the blob's real size meets the budget to within one column's step;
 *  4. error outliers: after quantising, the other n_out/2 weights of largest h_k (w - q)^2;
 *  all outliers keep an FP16 residual. Within one column every weight meets the same
 * activation, so the weighted Lloyd of the shared level sets (one per bit-width, weights
 * h_k s_k^2 across columns of scale s_k) is where the activation weighting enters the fit;
 * mode COLUMN fits each 2/3/4-bit column's own levels (5 and 6 bits always share: 32 or 64
 * levels per column would cost too much). With mode -1 both run and the lower loss wins
 * (per-column tables cost 2^b x 8 bits per column: a poor trade when N is small). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "quant/cmpq_fit.h"

typedef struct {
    int N, K, Np, mode;
    const float *wt;     /* [K][N]: columns contiguous */
    const double *h;     /* [K] */
    unsigned char *out;  /* [K][N]: 1 = outlier */
    float *lv;           /* [K][NC][16]: sorted levels of own-table classes, lv[0] = scale at 8 bits */
    double *sse;         /* [K][NC] */
    float *shared;       /* [NC][64]: shared level sets, int8 values */
    float *scale;        /* [K][NC]: column scales t (f16) per class; levels x t */
    float *amax;         /* [K]: non-outlier absmax of each column */
} fit;

#define NC SPQ_CMPQ_NCLS
#define C8 (NC - 1) /* the 8-bit class */

static float r16(float v) { return spq_f16_to_f32(spq_f32_to_f16(v)); }
static int shared_cls(const fit *f, int c) { return spq_cmpq_uses_shared(f->mode, c); }

static int cmp_f(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* index of the nearest of nl sorted levels */
static int nearest(const float *lv, int nl, float v)
{
    int lo = 0, hi = nl - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (v > 0.5f * (lv[mid] + lv[mid + 1])) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

/* 1-D Lloyd (k-means) on sorted v[n] with prefix sums s1 (v) and s2 (v^2), nl levels,
 * started at quantiles; levels rounded to int8 x the scale *t = f16(max |level| / 127) and
 * sorted. Returns the squared error. */
static double lloyd_sorted(const float *v, int n, const double *s1, const double *s2, int nl, float *lv, float *t)
{
    *t = 0;
    if (n == 0) { for (int i = 0; i < nl; i++) lv[i] = 0; return 0; }
    for (int i = 0; i < nl; i++) lv[i] = v[(int)(((double)i + 0.5) * n / nl)];
    int cut[17];
    for (int it = 0; it < 60; it++) {
        cut[0] = 0; cut[nl] = n;
        for (int i = 1; i < nl; i++) { /* first index with v > midpoint */
            float t = 0.5f * (lv[i - 1] + lv[i]);
            int lo = cut[i - 1], hi = n;
            while (lo < hi) { int mid = (lo + hi) / 2; if (v[mid] > t) hi = mid; else lo = mid + 1; }
            cut[i] = lo;
        }
        int moved = 0;
        for (int i = 0; i < nl; i++)
            if (cut[i + 1] > cut[i]) {
                float c = (float)((s1[cut[i + 1]] - s1[cut[i]]) / (cut[i + 1] - cut[i]));
                moved |= c != lv[i];
                lv[i] = c;
            }
        if (!moved) break;
    }
    float m = 0;
    for (int i = 0; i < nl; i++) m = fmaxf(m, fabsf(lv[i]));
    *t = r16(m / 127.0f);
    for (int i = 0; i < nl; i++) lv[i] = *t > 0 ? fminf(fmaxf(nearbyintf(lv[i] / *t), -127), 127) * *t : 0;
    qsort(lv, (size_t)nl, sizeof *lv, cmp_f);
    double e = 0; /* error with the rounded levels: segments between their midpoints */
    int a = 0;
    for (int i = 0; i < nl; i++) {
        int b = n;
        if (i + 1 < nl) {
            float t = 0.5f * (lv[i] + lv[i + 1]);
            int lo = a, hi = n;
            while (lo < hi) { int mid = (lo + hi) / 2; if (v[mid] > t) hi = mid; else lo = mid + 1; }
            b = lo;
        }
        double c = lv[i];
        e += s2[b] - s2[a] - 2 * c * (s1[b] - s1[a]) + (double)(b - a) * c * c;
        a = b;
    }
    return e > 0 ? e : 0;
}

/* 8-bit symmetric uniform: scale = f16(absmax / 127); returns the squared error */
static double uniform8(const float *v, int n, float *scale)
{
    float a = 0;
    for (int i = 0; i < n; i++) a = fabsf(v[i]) > a ? fabsf(v[i]) : a;
    float s = r16(a / 127.0f);
    *scale = s;
    double e = 0;
    for (int i = 0; i < n; i++) {
        float q = s > 0 ? fminf(fmaxf(nearbyintf(v[i] / s), -127), 127) * s : 0;
        e += (double)(v[i] - q) * (v[i] - q);
    }
    return e;
}

/* the column's non-outlier values into buf; returns how many */
static int column_values(const fit *f, int k, float *buf)
{
    int n = 0;
    for (int i = 0; i < f->N; i++)
        if (!f->out[(size_t)k * f->N + i]) buf[n++] = f->wt[(size_t)k * f->N + i];
    return n;
}

/* dequantised value of v in column k at class c (levels/scale from f) */
static float deq(const fit *f, int k, int c, float v, int *code)
{
    const float *lv = f->lv + ((size_t)k * NC + c) * 16;
    if (c == C8) {
        float s = lv[0];
        int q = s > 0 ? (int)fminf(fmaxf(nearbyintf(v / s), -127), 127) : 0;
        *code = q & 0xff;
        return (float)q * s;
    }
    int nl = 1 << spq_cmpq_bits[c];
    if (shared_cls(f, c)) {
        float s = f->scale[(size_t)k * NC + c];
        int i = s > 0 ? nearest(f->shared + c * 64, nl, v / s) : 0;
        *code = i;
        return s * f->shared[c * 64 + i];
    }
    int i = nearest(lv, nl, v);
    *code = i;
    return lv[i];
}

/* a shared level set: weighted Lloyd over the normalised values u = w / (127 t_k) of the
 * columns with sel[k] == c (all when sel is NULL), weights h_k t_k^2, on a 4096-bin
 * histogram of [-1, 1]; the levels are kept as int8 values (127 u) */
static void fit_shared(fit *f, int c, const int *sel)
{
    enum { NB = 4096 };
    double *W = calloc(3 * NB, sizeof(double)), *WU = W + NB, *WUU = W + 2 * NB;
    int nl = 1 << spq_cmpq_bits[c];
    float *lv = f->shared + c * 64;
    if (!W) { for (int i = 0; i < nl; i++) lv[i] = nearbyintf(127.0f * (-1 + 2.0f * i / (nl - 1))); return; }
    for (int k = 0; k < f->K; k++) {
        float s = 127.0f * f->scale[(size_t)k * NC + c];
        if ((sel && sel[k] != c) || !(s > 0)) continue;
        double wk = f->h[k] * (double)s * s;
        for (int i = 0; i < f->N; i++) {
            if (f->out[(size_t)k * f->N + i]) continue;
            double u = f->wt[(size_t)k * f->N + i] / s;
            int b = (int)((u + 1) * 0.5 * NB);
            b = b < 0 ? 0 : b >= NB ? NB - 1 : b;
            W[b] += wk; WU[b] += wk * u; WUU[b] += wk * u * u;
        }
    }
    for (int i = 0; i < nl; i++) lv[i] = -1 + 2.0f * ((float)i + 0.5f) / (float)nl;
    for (int it = 0; it < 100; it++) {
        double sw[64] = {0}, su[64] = {0};
        for (int b = 0; b < NB; b++) {
            if (W[b] == 0) continue;
            int i = nearest(lv, nl, (float)(WU[b] / W[b]));
            sw[i] += W[b]; su[i] += WU[b];
        }
        int moved = 0;
        for (int i = 0; i < nl; i++)
            if (sw[i] > 0) {
                float v = (float)(su[i] / sw[i]);
                moved |= v != lv[i];
                lv[i] = v;
            }
        qsort(lv, (size_t)nl, sizeof *lv, cmp_f);
        if (!moved) break;
    }
    for (int i = 0; i < nl; i++) lv[i] = fminf(fmaxf(nearbyintf(127.0f * lv[i]), -127), 127);
    qsort(lv, (size_t)nl, sizeof *lv, cmp_f);
    free(W);
}

/* squared error of every column at every class (levels kept in f->lv) */
static void fit_columns(fit *f)
{
#pragma omp parallel
    {
        float *v = malloc(sizeof(float) * (size_t)f->N);
        double *s1 = malloc(sizeof(double) * ((size_t)f->N + 1)), *s2 = malloc(sizeof(double) * ((size_t)f->N + 1));
#pragma omp for schedule(dynamic, 4)
        for (int k = 0; k < f->K; k++) {
            if (!v || !s1 || !s2) continue;
            int n = column_values(f, k, v);
            float *lv = f->lv + (size_t)k * NC * 16;
            double *sse = f->sse + (size_t)k * NC;
            sse[C8] = uniform8(v, n, &lv[16 * C8]);
            for (int c = 0; c < C8; c++) { /* shared levels: the scale (a x absmax / 127, a
                                            * in 0.5..1; 0.8..1 at 5 and 6 bits) with the least
                                            * error for the class's levels */
                if (!shared_cls(f, c)) continue;
                float *sc = f->scale + (size_t)k * NC + c, bs = r16(f->amax[k] / 127.0f);
                double be = -1;
                for (int a = 0; a <= (c < 3 ? 10 : 4); a++) {
                        *sc = r16(f->amax[k] * (1.0f - 0.05f * (float)a) / 127.0f);
                        double e = 0;
                        for (int i = 0; i < n; i++) {
                            int code;
                            float d = v[i] - deq(f, k, c, v[i], &code);
                            e += (double)d * d;
                        }
                        if (be < 0 || e < be) { be = e; bs = *sc; }
                }
                *sc = bs;
                sse[c] = be;
            }
            if (f->mode == SPQ_CMPQ_SHARED) continue;
            qsort(v, (size_t)n, sizeof *v, cmp_f);
            s1[0] = s2[0] = 0;
            for (int i = 0; i < n; i++) { s1[i + 1] = s1[i] + v[i]; s2[i + 1] = s2[i] + (double)v[i] * v[i]; }
            for (int c = 0; c < 3; c++)
                sse[c] = lloyd_sorted(v, n, s1, s2, 1 << spq_cmpq_bits[c], lv + 16 * c, f->scale + (size_t)k * NC + c);
        }
        free(v); free(s1); free(s2);
    }
}

/* exact blob bytes for an assignment summarised by class counts */
static size_t blob_bytes(const fit *f, const int *kc, long n_out)
{
    spq_cmpq_hdr h = {(uint32_t)f->N, (uint32_t)f->K, {0}, (uint32_t)n_out, (uint32_t)f->mode};
    for (int c = 0; c < NC; c++) h.kc[c] = (uint32_t)kc[c];
    spq_cmpq_layout L;
    spq_cmpq_layout_of(&h, &L);
    return L.size;
}

/* the approximate bytes of one column at class c (codes + table) for the Lagrangian sweep */
static double col_bytes(const fit *f, int c)
{
    int b = spq_cmpq_bits[c];
    return (double)f->Np * b / 8 + (!shared_cls(f, c) && b <= 4 ? (double)(1 << b) + 2.0 : 2.0);
}

static double col_loss(const fit *f, int k, int c) { return f->h[k] * f->sse[(size_t)k * NC + c]; }

/* the single-column upgrade with the most loss saved per byte that fits; 0 if none */
static int upgrade_one(const fit *f, size_t budget, long n_out, int *cls, int *kc)
{
    size_t now = blob_bytes(f, kc, n_out);
    double best = 0;
    int bk = -1, bc = -1;
    for (int k = 0; k < f->K; k++)
        for (int c = cls[k] + 1; c < NC; c++) {
            double gain = col_loss(f, k, cls[k]) - col_loss(f, k, c);
            if (gain <= 0) continue;
            kc[cls[k]]--; kc[c]++;
            size_t nb = blob_bytes(f, kc, n_out);
            kc[cls[k]]++; kc[c]--;
            if (nb > budget) continue;
            double r = gain / (double)(nb > now ? nb - now : 1);
            if (r > best) { best = r; bk = k; bc = c; }
        }
    if (bk < 0) return 0;
    kc[cls[bk]]--; kc[bc]++;
    cls[bk] = bc;
    return 1;
}

typedef struct { double r; int k; } cand;
static int cmp_cand(const void *a, const void *b)
{
    double x = ((const cand *)a)->r, y = ((const cand *)b)->r;
    return (x < y) - (x > y); /* descending */
}

/* move the m best columns (by loss saved per byte) into one class at once, m up to two
 * blocks: the best such move that fits; 0 if none */
static int upgrade_group(const fit *f, size_t budget, long n_out, int *cls, int *kc)
{
    size_t now = blob_bytes(f, kc, n_out);
    cand *cd = malloc(sizeof(cand) * (size_t)f->K);
    if (!cd) return 0;
    double best = 0;
    int bc = -1, bm = 0;
    for (int pass = 0; pass < 2; pass++)
        for (int c = 1; c < NC; c++) {
            int n = 0;
            for (int k = 0; k < f->K; k++) {
                double gain = cls[k] < c ? col_loss(f, k, cls[k]) - col_loss(f, k, c) : 0;
                if (gain > 0) cd[n++] = (cand){gain / (col_bytes(f, c) - col_bytes(f, cls[k])), k};
            }
            qsort(cd, (size_t)n, sizeof *cd, cmp_cand);
            int t[NC];
            memcpy(t, kc, sizeof t);
            double g = 0;
            for (int m = 1; m <= n && m <= 2 * SPQ_CMPQ_BLK; m++) {
                int k = cd[m - 1].k;
                t[cls[k]]--; t[c]++;
                g += col_loss(f, k, cls[k]) - col_loss(f, k, c);
                size_t nb = blob_bytes(f, t, n_out);
                if (nb > budget) continue; /* size is not monotone in m: the source class may shed a block later */
                double r = g / (double)(nb > now ? nb - now : 1);
                if (pass == 0 && r > best) { best = r; bc = c; bm = m; }
            }
            if (pass == 1 && c == bc) { /* apply the chosen move */
                for (int m = 0; m < bm; m++) {
                    int k = cd[m].k;
                    kc[cls[k]]--; kc[c]++;
                    cls[k] = c;
                }
                free(cd);
                return 1;
            }
        }
    free(cd);
    return 0;
}

/* each column's class minimising loss + lam * bytes; kc: the class counts */
static void assign(const fit *f, double lam, int *cls, int *kc)
{
    memset(kc, 0, NC * sizeof *kc);
    for (int k = 0; k < f->K; k++) {
        int best = 0;
        double bv = col_loss(f, k, 0) + lam * col_bytes(f, 0);
        for (int c = 1; c < NC; c++) {
            double v = col_loss(f, k, c) + lam * col_bytes(f, c);
            if (v < bv) { bv = v; best = c; }
        }
        cls[k] = best;
        kc[best]++;
    }
}

/* bits per column under the budget (bytes): Lagrangian sweep, then exact greedy moves */
static int allocate(const fit *f, size_t budget, long n_out, int *cls)
{
    int kc[NC];
    double lo = 0, hi = 1e30;
    for (int it = 0; it < 200; it++) {
        double lam = it == 0 ? hi : sqrt(fmax(lo, 1e-300) * hi);
        assign(f, lam, cls, kc);
        int fits = blob_bytes(f, kc, n_out) <= budget;
        if (it == 0 && !fits) return -1; /* all at 2 bits does not fit */
        if (fits) hi = lam; else lo = lam;
        if (lo > 0 && hi / lo < 1.0 + 1e-9) break;
    }
    assign(f, hi, cls, kc); /* the feasible end of the sweep */
    /* greedy: the move with the most loss saved per byte that still fits, until none does;
     * single columns first, then several at once into one class (a class grows in blocks of
     * 32 columns, so one column alone may not fit where a block's worth does) */
    for (;;) {
        if (upgrade_one(f, budget, n_out, cls, kc)) continue;
        if (upgrade_group(f, budget, n_out, cls, kc)) continue;
        break;
    }
    return 0;
}

/* k-th largest of v[n] (quickselect on a copy); n >= 1, 1 <= k <= n */
static float kth_largest(const float *src, size_t n, size_t k)
{
    float *v = malloc(sizeof(float) * n);
    if (!v) return INFINITY;
    memcpy(v, src, sizeof(float) * n);
    size_t lo = 0, hi = n - 1, want = k - 1;
    uint64_t rng = 0x9E3779B97F4A7C15ull;
    while (lo < hi) {
        rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
        float piv = v[lo + rng % (hi - lo + 1)];
        size_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] > piv) i++;
            while (v[j] < piv) j--;
            if (i <= j) { float t = v[i]; v[i] = v[j]; v[j] = t; i++; if (j == 0) break; j--; }
        }
        if (want <= j) hi = j;
        else if (want >= i) lo = i;
        else break;
    }
    float r = v[want];
    free(v);
    return r;
}

/* mark the n top-scored weights (score[k][n], outliers already marked excluded) */
static long mark_top(fit *f, float *score, long n)
{
    size_t NK = (size_t)f->N * f->K;
    if (n <= 0) return 0;
    float t = kth_largest(score, NK, (size_t)n);
    long got = 0;
    for (size_t i = 0; i < NK && got < n; i++)
        if (score[i] > t && !f->out[i]) { f->out[i] = 1; got++; }
    for (size_t i = 0; i < NK && got < n; i++)
        if (score[i] == t && !f->out[i]) { f->out[i] = 1; got++; }
    return got;
}

/* Quantise with f->mode; fills codes[k][n] and the class of each column; returns the loss
 * or -1 when the budget cannot hold the smallest assignment. */
static double run_mode(fit *f, size_t budget, long n_act, long n_err, int *cls, uint8_t *codes, float *deqv)
{
    int K = f->K, N = f->N;
    size_t NK = (size_t)N * K;
    memset(f->out, 0, NK);
    float *score = malloc(sizeof(float) * NK);
    if (!score) return -2;
    for (int k = 0; k < K; k++)
        for (int i = 0; i < N; i++) score[(size_t)k * N + i] = fabsf(f->wt[(size_t)k * N + i]) * (float)sqrt(f->h[k]);
    mark_top(f, score, n_act);
    for (int k = 0; k < K; k++) { /* shared levels: column scales from the non-outlier absmax */
        float a = 0;
        for (int i = 0; i < N; i++)
            if (!f->out[(size_t)k * N + i]) a = fmaxf(a, fabsf(f->wt[(size_t)k * N + i]));
        f->amax[k] = a;
        for (int c = 0; c < NC; c++) f->scale[(size_t)k * NC + c] = r16(a / 127.0f);
    }
    for (int round = 0; round < 2; round++) { /* shared levels and scales depend on each other: alternate */
        for (int c = 0; c < C8; c++)
            if (shared_cls(f, c)) fit_shared(f, c, NULL);
        fit_columns(f);
    }
    if (allocate(f, budget, n_act + n_err, cls)) { free(score); return -1; }
    /* refit each shared level set on the columns that use it, and their scales */
    for (int c = 0; c < C8; c++)
        if (shared_cls(f, c)) fit_shared(f, c, cls);
    fit_columns(f);
    /* quantise, then the error outliers among the rest */
    for (int k = 0; k < K; k++)
        for (int i = 0; i < N; i++) {
            size_t j = (size_t)k * N + i;
            int code;
            float w = f->wt[j], d = deq(f, k, cls[k], w, &code);
            codes[j] = (uint8_t)code;
            deqv[j] = d;
            score[j] = f->out[j] ? -1.0f : (float)(f->h[k] * (double)(w - d) * (w - d));
        }
    mark_top(f, score, n_err);
    free(score);
    double loss = 0;
    for (int k = 0; k < K; k++) {
        double e = 0;
        for (int i = 0; i < N; i++) {
            size_t j = (size_t)k * N + i;
            double d = f->out[j] ? f->wt[j] - deqv[j] - r16(f->wt[j] - deqv[j]) : f->wt[j] - deqv[j];
            e += d * d;
        }
        loss += f->h[k] * e;
    }
    return loss;
}

/* write the blob for the state in f */
static void *build_blob(const fit *f, const int *cls, const uint8_t *codes, const float *deqv, long n_out,
                        size_t *nbytes)
{
    int N = f->N, K = f->K, kc[NC] = {0};
    for (int k = 0; k < K; k++) kc[cls[k]]++;
    spq_cmpq_hdr h = {(uint32_t)N, (uint32_t)K, {0}, (uint32_t)n_out, (uint32_t)f->mode};
    for (int c = 0; c < NC; c++) h.kc[c] = (uint32_t)kc[c];
    spq_cmpq_layout L;
    spq_cmpq_layout_of(&h, &L);
    uint8_t *p = aligned_alloc(64, L.size);
    uint8_t *rowc = malloc((size_t)N * K);
    if (!p || !rowc) { free(p); free(rowc); return NULL; }
    memset(p, 0, L.size);
    spq_cmpq_write_hdr(p, &h);
    uint8_t *map = p + L.cls;
    int8_t *lvo = (int8_t *)(p + L.levels), *tb = (int8_t *)(p + L.tables);
    uint16_t *sc = (uint16_t *)(p + L.scales);
    for (int k = 0; k < K; k++) map[k / 2] |= (uint8_t)(cls[k] << (4 * (k % 2)));
    for (int c = 0, o = 0; c < C8; o += 1 << spq_cmpq_bits[c], c++)
        for (int i = 0; i < 1 << spq_cmpq_bits[c] && shared_cls(f, c); i++) lvo[o + i] = (int8_t)f->shared[c * 64 + i];
    for (int c = 0; c < NC; c++) {
        int b = spq_cmpq_bits[c], jc = 0;
        for (int k = 0; k < K; k++) {
            if (cls[k] != c) continue;
            const float *lv = f->lv + ((size_t)k * NC + c) * 16;
            float t = c == C8 ? lv[0] : f->scale[(size_t)k * NC + c];
            *sc++ = spq_f32_to_f16(t);
            if (c < C8 && !shared_cls(f, c))
                for (int i = 0; i < 1 << b; i++) *tb++ = (int8_t)(t > 0 ? nearbyintf(lv[i] / t) : 0);
            for (int n = 0; n < N; n++) rowc[(size_t)n * kc[c] + jc] = codes[(size_t)k * N + n];
            jc++;
        }
        if (kc[c]) spq_pack_cmpq(rowc, N, kc[c], b, L.kp[c], p + L.codes[c]);
    }
    uint32_t *rp = (uint32_t *)(p + L.rowptr);
    uint16_t *col = (uint16_t *)(p + L.col), *val = (uint16_t *)(p + L.val);
    uint32_t o = 0;
    for (int n = 0; n < N; n++) {
        rp[n] = o;
        for (int k = 0; k < K; k++) {
            size_t i = (size_t)k * N + n;
            if (!f->out[i]) continue;
            col[o] = (uint16_t)k;
            val[o++] = spq_f32_to_f16(f->wt[i] - deqv[i]);
        }
    }
    rp[N] = o;
    free(rowc);
    *nbytes = L.size;
    return p;
}

double spq_cmpq_min_bits(int N, int K, double outliers)
{
    spq_cmpq_hdr h = {(uint32_t)N, (uint32_t)K, {(uint32_t)K}, (uint32_t)(outliers * (double)N * K), SPQ_CMPQ_SHARED};
    return spq_cmpq_bpw(&h);
}

int spq_cmpq_quantize(const float *w, int N, int K, const double *h, const spq_cmpq_opts *o, void **blob,
                      size_t *nbytes, spq_cmpq_stats *st, const char *what, spq_err *e)
{
    *blob = NULL;
    if (K > 65535 || N <= 0 || K <= 0) return spq_fail(e, what, "CMPQ needs 1..65535 input channels (K = %d)", K);
    size_t NK = (size_t)N * K;
    fit f = {N, K, (N + 15) / 16 * 16, 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL};
    float *wt = malloc(sizeof(float) * NK), *deqv = malloc(sizeof(float) * NK), *best_deq = malloc(sizeof(float) * NK);
    double *hh = malloc(sizeof(double) * (size_t)K);
    int *cls = malloc(sizeof(int) * (size_t)K), *best_cls = malloc(sizeof(int) * (size_t)K);
    uint8_t *codes = malloc(NK), *best_codes = malloc(NK), *best_out = malloc(NK);
    f.out = malloc(NK);
    f.lv = malloc(sizeof(float) * NC * 16 * (size_t)K);
    f.sse = malloc(sizeof(double) * NC * (size_t)K);
    f.shared = calloc(NC * 64, sizeof(float));
    f.scale = malloc(sizeof(float) * NC * (size_t)K);
    f.amax = malloc(sizeof(float) * (size_t)K);
    float best_lv_shared[NC * 64];
    float *best_lv = malloc(sizeof(float) * NC * 16 * (size_t)K), *best_scale = malloc(sizeof(float) * NC * (size_t)K);
    int rc = 0;
    if (!wt || !deqv || !best_deq || !hh || !cls || !best_cls || !codes || !best_codes || !best_out || !f.out || !f.lv ||
        !f.sse || !f.shared || !f.scale || !f.amax || !best_lv || !best_scale) {
        rc = spq_fail(e, what, "out of memory");
        goto done;
    }
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) wt[(size_t)k * N + n] = w[(size_t)n * K + k];
    for (int k = 0; k < K; k++) hh[k] = h && h[k] > 0 ? h[k] : h ? 1e-12 : 1.0;
    f.wt = wt;
    f.h = hh;
    long n_out = (long)(o->outliers * (double)NK), n_act = n_out / 2, n_err = n_out - n_act;
    size_t budget = (size_t)(o->bits * (double)NK / 8.0);
    double best = -1;
    int best_mode = 0;
    for (int mode = 0; mode < 2; mode++) {
        if (o->mode >= 0 && mode != o->mode) continue;
        f.mode = mode;
        double loss = run_mode(&f, budget, n_act, n_err, cls, codes, deqv);
        if (loss == -2) { rc = spq_fail(e, what, "out of memory"); goto done; }
        if (loss < 0 || (best >= 0 && loss >= best)) continue;
        best = loss;
        best_mode = mode;
        memcpy(best_cls, cls, sizeof(int) * (size_t)K);
        memcpy(best_codes, codes, NK);
        memcpy(best_out, f.out, NK);
        memcpy(best_deq, deqv, sizeof(float) * NK);
        memcpy(best_lv, f.lv, sizeof(float) * NC * 16 * (size_t)K);
        memcpy(best_lv_shared, f.shared, sizeof best_lv_shared);
        memcpy(best_scale, f.scale, sizeof(float) * NC * (size_t)K);
    }
    if (best < 0) {
        rc = spq_fail(e, what, "--bits %.3g is below this [%d x %d] tensor's minimum (%.3g bits: every channel at 2 bits, tables and %ld outliers)",
                      o->bits, N, K, spq_cmpq_min_bits(N, K, o->outliers), n_out);
        goto done;
    }
    f.mode = best_mode;
    memcpy(f.out, best_out, NK);
    memcpy(f.lv, best_lv, sizeof(float) * NC * 16 * (size_t)K);
    memcpy(f.shared, best_lv_shared, sizeof best_lv_shared);
    memcpy(f.scale, best_scale, sizeof(float) * NC * (size_t)K);
    *blob = build_blob(&f, best_cls, best_codes, best_deq, n_out, nbytes);
    if (!*blob) { rc = spq_fail(e, what, "out of memory"); goto done; }
    if (st) {
        spq_cmpq_read_hdr(*blob, &st->h);
        st->bpw = 8.0 * (double)*nbytes / (double)NK;
        st->loss = best;
    }
done:
    free(wt); free(deqv); free(best_deq); free(hh); free(cls); free(best_cls); free(codes); free(best_codes);
    free(best_out); free(f.out); free(f.lv); free(f.sse); free(f.shared); free(f.scale); free(f.amax); free(best_lv); free(best_scale);
    return rc;
}
