/* blocks.c — ggml's block formats as the kernels read them (kernels.h, "block formats"): their
 * sizes, the activation rows they multiply, and the scalar reference of both, which every
 * ISA's gq_quant / gq_dot reproduces bit for bit. */
#include "kernels/kernels.h"

#include <math.h>
#include <string.h>

static const struct {
    int blk, bytes, qb;
} FMT[SPQ_GQ_N] = {
    [SPQ_GQ_Q4_0] = {32, 18, 32},    [SPQ_GQ_Q4_1] = {32, 20, 32},    [SPQ_GQ_Q5_0] = {32, 22, 32},
    [SPQ_GQ_Q5_1] = {32, 24, 32},    [SPQ_GQ_Q8_0] = {32, 34, 32},    [SPQ_GQ_IQ4_NL] = {32, 18, 32},
    [SPQ_GQ_Q2_K] = {256, 84, 256},  [SPQ_GQ_Q3_K] = {256, 110, 256}, [SPQ_GQ_Q4_K] = {256, 144, 256},
    [SPQ_GQ_Q5_K] = {256, 176, 256}, [SPQ_GQ_Q6_K] = {256, 210, 256}, [SPQ_GQ_IQ4_XS] = {256, 136, 256},
};

int spq_gq_block(int g) { return FMT[g].blk; }
size_t spq_gq_block_bytes(int g) { return (size_t)FMT[g].bytes; }
int spq_gq_act_block(int g) { return FMT[g].qb; }
size_t spq_gq_row_bytes(int g, int K) { return (size_t)(K / FMT[g].blk) * (size_t)FMT[g].bytes; }

static size_t up64(size_t x) { return (x + 63) & ~(size_t)63; }
size_t spq_gq_act_q_at(int qb, int K) { return up64(4 * (size_t)(K / qb) + 2 * (size_t)(K / 16)); }
size_t spq_gq_act_bytes(int qb, int K) { return up64(spq_gq_act_q_at(qb, K) + (size_t)K); }

void spq_gq_quant_ref(int qb, int K, const float *x, uint8_t *xa)
{
    float *d = (float *)xa;
    int16_t *s = (int16_t *)(xa + 4 * (size_t)(K / qb));
    int8_t *q = (int8_t *)(xa + spq_gq_act_q_at(qb, K));
    for (int b = 0; b < K / qb; b++) {
        const float *v = x + (size_t)b * qb;
        float amax = 0;
        for (int i = 0; i < qb; i++) amax = fabsf(v[i]) > amax ? fabsf(v[i]) : amax;
        float db = amax / 127.0f, id = db > 0 ? 1.0f / db : 0.0f;
        d[b] = db;
        for (int i = 0; i < qb; i++) {
            float r = rintf(v[i] * id);
            q[b * qb + i] = (int8_t)(r > 127.0f ? 127 : r < -127.0f ? -127 : (int)r);
        }
    }
    for (int j = 0; j < K / 16; j++) {
        int sum = 0;
        for (int i = 0; i < 16; i++) sum += q[16 * j + i];
        s[j] = (int16_t)sum;
    }
}

float spq_gq_half(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return spq_f16_to_f32(h);
}

const int8_t spq_gq_iq4[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* A legacy block's integer weights q[32] (natural order): w = d * q + m. */
static void legacy_ints(int g, const uint8_t *b, int *q, float *d, float *m)
{
    *d = spq_gq_half(b);
    *m = g == SPQ_GQ_Q4_1 || g == SPQ_GQ_Q5_1 ? spq_gq_half(b + 2) : 0.0f;
    switch (g) {
    case SPQ_GQ_Q8_0:
        for (int j = 0; j < 32; j++) q[j] = (int8_t)b[2 + j];
        return;
    case SPQ_GQ_Q4_0: case SPQ_GQ_Q4_1: case SPQ_GQ_IQ4_NL: {
        const uint8_t *qs = b + (g == SPQ_GQ_Q4_1 ? 4 : 2);
        for (int j = 0; j < 16; j++) {
            int lo = qs[j] & 15, hi = qs[j] >> 4;
            q[j] = g == SPQ_GQ_IQ4_NL ? spq_gq_iq4[lo] : g == SPQ_GQ_Q4_0 ? lo - 8 : lo;
            q[j + 16] = g == SPQ_GQ_IQ4_NL ? spq_gq_iq4[hi] : g == SPQ_GQ_Q4_0 ? hi - 8 : hi;
        }
        return;
    }
    default: { /* Q5_0, Q5_1: d, [m], the fifth bits (u32), the nibbles */
        int o = g == SPQ_GQ_Q5_1 ? 2 : 0, off = g == SPQ_GQ_Q5_0 ? 16 : 0;
        uint32_t qh;
        memcpy(&qh, b + 2 + o, 4);
        const uint8_t *qs = b + 6 + o;
        for (int j = 0; j < 16; j++) {
            q[j] = ((qs[j] & 15) | (int)((qh >> j) & 1) << 4) - off;
            q[j + 16] = ((qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - off;
        }
        return;
    }
    }
}

void spq_gq_scale_min_k4(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* A super-block's integer weights q[256] (natural order), sub-block scales sc[] and mins
 * mn[] (w = d * sc * q - dmin * mn over each sub-block); returns the sub-block size. */
static int k_ints(int g, const uint8_t *b, int *q, int *sc, int *mn, float *d, float *dmin)
{
    *dmin = 0;
    switch (g) {
    case SPQ_GQ_Q2_K: { /* scales[16] (scale | min << 4), qs[64], d, dmin */
        const uint8_t *qs = b + 16;
        *d = spq_gq_half(b + 80);
        *dmin = spq_gq_half(b + 82);
        for (int j = 0; j < 16; j++) { sc[j] = b[j] & 15; mn[j] = b[j] >> 4; }
        for (int e = 0; e < 256; e++) q[e] = (qs[32 * (e / 128) + e % 32] >> (2 * (e % 128 / 32))) & 3;
        return 16;
    }
    case SPQ_GQ_Q3_K: { /* hmask[32], qs[64], scales[12], d */
        const uint8_t *hm = b, *qs = b + 32, *s = b + 96;
        *d = spq_gq_half(b + 108);
        for (int j = 0; j < 16; j++) {
            int lo = j < 8 ? s[j] & 0xF : s[j - 8] >> 4, hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
            sc[j] = (lo | hi << 4) - 32;
            mn[j] = 0;
        }
        for (int e = 0; e < 256; e++) {
            int n = e / 128, j = e % 128 / 32, l = e % 32;
            q[e] = ((qs[32 * n + l] >> (2 * j)) & 3) - ((hm[l] >> (4 * n + j)) & 1 ? 0 : 4);
        }
        return 16;
    }
    case SPQ_GQ_Q4_K: case SPQ_GQ_Q5_K: { /* d, dmin, scales[12], [qh[32]], qs[128] */
        int five = g == SPQ_GQ_Q5_K;
        const uint8_t *qh = b + 16, *qs = b + (five ? 48 : 16);
        *d = spq_gq_half(b);
        *dmin = spq_gq_half(b + 2);
        for (int j = 0; j < 8; j++) spq_gq_scale_min_k4(j, b + 4, &sc[j], &mn[j]);
        for (int e = 0; e < 256; e++) {
            int gg = e / 64, hi = e % 64 / 32, l = e % 32;
            q[e] = (qs[32 * gg + l] >> (4 * hi)) & 15;
            if (five) q[e] += ((qh[l] >> (2 * gg + hi)) & 1) << 4;
        }
        return 32;
    }
    case SPQ_GQ_Q6_K: { /* ql[128], qh[64], int8 scales[16], d; codes minus 32 */
        const uint8_t *ql = b, *qh = b + 128;
        *d = spq_gq_half(b + 208);
        for (int j = 0; j < 16; j++) { sc[j] = (int8_t)b[192 + j]; mn[j] = 0; }
        for (int e = 0; e < 256; e++) {
            int n = e / 128, part = e % 128 / 32, l = e % 32;
            int lo = (ql[64 * n + l + 32 * (part & 1)] >> (4 * (part >> 1))) & 15;
            int hi = (qh[32 * n + l] >> (2 * part)) & 3;
            q[e] = (lo | hi << 4) - 32;
        }
        return 16;
    }
    default: { /* IQ4_XS: d, scales_h (u16), scales_l[4], qs[128] */
        uint16_t sh;
        memcpy(&sh, b + 2, 2);
        *d = spq_gq_half(b);
        for (int j = 0; j < 8; j++) {
            sc[j] = (((b[4 + j / 2] >> (4 * (j % 2))) & 0xF) | ((sh >> (2 * j)) & 3) << 4) - 32;
            mn[j] = 0;
        }
        for (int e = 0; e < 256; e++) q[e] = spq_gq_iq4[(b[8 + 16 * (e / 32) + e % 16] >> (4 * (e % 32 / 16))) & 15];
        return 32;
    }
    }
}

/* One weight row (K / 32 legacy blocks) with one activation row. */
static float dot_legacy(int g, int K, const uint8_t *w, const uint8_t *xa)
{
    const float *xd = (const float *)xa;
    const int8_t *x = (const int8_t *)(xa + spq_gq_act_q_at(32, K));
    float acc = 0;
    int two = g == SPQ_GQ_Q4_1 || g == SPQ_GQ_Q5_1;
    for (int b = 0; b < K / 32; b++) {
        int q[32], p = 0, sx = 0;
        float d, m;
        legacy_ints(g, w + (size_t)b * FMT[g].bytes, q, &d, &m);
        for (int i = 0; i < 32; i++) { p += q[i] * x[32 * b + i]; sx += x[32 * b + i]; }
        acc = fmaf(d * xd[b], (float)p, acc);
        if (two) acc = fmaf(m * xd[b], (float)sx, acc);
    }
    return acc;
}

/* One super-block's contribution (the reference arithmetic, kernels.h) to acc: integer
 * weights q[256] with sub-block scales sc[] and mins mn[] of sub values each, times the
 * activation codes x[256] with their per-16 sums xs[16] and scale xd. */
static float k_step(int g, const int *q, const int *sc, const int *mn, int sub, float d, float dmin, const int8_t *x,
                    const int16_t *xs, float xd, float acc)
{
    int32_t S = 0, Mn = 0;
    for (int j = 0; j < 256 / sub; j++) {
        int32_t p = 0, sx = 0;
        for (int i = sub * j; i < sub * j + sub; i++) p += q[i] * x[i];
        for (int i = sub * j / 16; i < sub * (j + 1) / 16; i++) sx += xs[i];
        S += sc[j] * p;
        Mn += mn[j] * sx;
    }
    acc = fmaf(d * xd, (float)S, acc);
    if (spq_gq_has_min(g)) acc = fmaf(-(dmin * xd), (float)Mn, acc);
    return acc;
}

/* One weight row (K / 256 super-blocks) with one activation row. */
static float dot_k(int g, int K, const uint8_t *w, const uint8_t *xa)
{
    const float *xd = (const float *)xa;
    const int16_t *xs = (const int16_t *)(xa + 4 * (size_t)(K / 256));
    const int8_t *x = (const int8_t *)(xa + spq_gq_act_q_at(256, K));
    float acc = 0;
    for (int b = 0; b < K / 256; b++) {
        int q[256], sc[16], mn[16];
        float d, dmin;
        int sub = k_ints(g, w + (size_t)b * FMT[g].bytes, q, sc, mn, &d, &dmin);
        acc = k_step(g, q, sc, mn, sub, d, dmin, x + 256 * b, xs + 16 * b, xd[b], acc);
    }
    return acc;
}

/* ---- the 8-row layout (kernels.h, spq_gq_r8) ---- */

static int r8_legacy(int g) { return g == SPQ_GQ_Q8_0 || g == SPQ_GQ_Q4_0 || g == SPQ_GQ_IQ4_NL; }
int spq_gq_r8(int g) { return g == SPQ_GQ_Q4_K || g == SPQ_GQ_Q5_K || g == SPQ_GQ_Q6_K || g == SPQ_GQ_IQ4_XS || r8_legacy(g); }
static int r8_nsub(int g) { return g == SPQ_GQ_Q6_K ? 16 : 8; }
size_t spq_gq_r8_head(int g)
{
    if (r8_legacy(g)) return 128; /* the 8 blocks' halves d [block][row] */
    size_t h = 32 + 8 * (size_t)r8_nsub(g) * (spq_gq_has_min(g) ? 2 : 1);
    return (h + 63) & ~(size_t)63;
}
size_t spq_gq_r8_block(int g)
{
    if (r8_legacy(g)) return 128 + (g == SPQ_GQ_Q8_0 ? 2048 : 1024);
    return spq_gq_r8_head(g) + 1024 + (g == SPQ_GQ_Q5_K ? 256 : g == SPQ_GQ_Q6_K ? 512 : 0);
}
size_t spq_gq_r8_bytes(int g, int K) { return (size_t)(K / 256) * spq_gq_r8_block(g); }

/* the byte of code vector c (values 8c..8c+7 of every row) that holds value v of row r */
static size_t r8_byte(int r, int v) { return 8 * (size_t)r + (size_t)(v % 8); }

/* legacy formats: per 256 values, block j's code vectors at 128 + j * (256 or 128): Q8_0 4
 * vectors of (w + 128), Q4_0 / IQ4_NL 2 of nibbles (low: values 8k + e, high: 16 + 8k + e) */
static size_t r8l_codes(int g, int j) { return 128 + (size_t)j * (g == SPQ_GQ_Q8_0 ? 256 : 128); }

static void pack_r8_legacy(int g, int K, const uint8_t *w, size_t ldw, uint8_t *out)
{
    for (int b = 0; b < K / 256; b++) {
        uint8_t *o = out + (size_t)b * spq_gq_r8_block(g);
        memset(o, 0, spq_gq_r8_block(g));
        for (int r = 0; r < 8; r++)
            for (int j = 0; j < 8; j++) {
                const uint8_t *blk = w + (size_t)r * ldw + (size_t)(8 * b + j) * FMT[g].bytes;
                memcpy(o + 16 * j + 2 * r, blk, 2);
                uint8_t *c = o + r8l_codes(g, j);
                for (int v = 0; v < 32; v++) {
                    if (g == SPQ_GQ_Q8_0) { c[64 * (v / 8) + 8 * r + v % 8] = blk[2 + v] ^ 0x80; continue; }
                    int code = (blk[2 + v % 16] >> (4 * (v / 16))) & 15, k = v / 8;
                    c[64 * (k % 2) + 8 * r + v % 8] |= (uint8_t)(code << (k < 2 ? 0 : 4));
                }
            }
    }
}

static void dot_r8_legacy(int g, int K, int ng, const uint8_t *w, int M, const uint8_t *xa, size_t ldx, float *y,
                          size_t ldy)
{
    const size_t gb = spq_gq_r8_bytes(g, K), bb = spq_gq_r8_block(g), qat = spq_gq_act_q_at(32, K);
    for (int m = 0; m < M; m++) {
        const uint8_t *a = xa + (size_t)m * ldx;
        const float *xd = (const float *)a;
        const int8_t *x = (const int8_t *)(a + qat);
        for (int i = 0; i < ng; i++)
            for (int r = 0; r < 8; r++) {
                float acc = 0;
                for (int b = 0; b < K / 32; b++) {
                    const uint8_t *o = w + (size_t)i * gb + (size_t)(b / 8) * bb, *c = o + r8l_codes(g, b % 8);
                    float d = spq_gq_half(o + 16 * (b % 8) + 2 * r);
                    int p = 0;
                    for (int v = 0; v < 32; v++) {
                        int q;
                        if (g == SPQ_GQ_Q8_0) q = (int8_t)(c[64 * (v / 8) + 8 * r + v % 8] ^ 0x80); /* stored w + 128 */
                        else {
                            int k = v / 8, code = (c[64 * (k % 2) + 8 * r + v % 8] >> (k < 2 ? 0 : 4)) & 15;
                            q = g == SPQ_GQ_Q4_0 ? code - 8 : spq_gq_iq4[code];
                        }
                        p += q * x[32 * b + v];
                    }
                    acc = fmaf(d * xd[b], (float)p, acc);
                }
                y[(size_t)m * ldy + 8 * (size_t)i + r] = acc;
            }
    }
}

void spq_gq_pack_r8(int g, int K, const uint8_t *w, size_t ldw, uint8_t *out)
{
    if (r8_legacy(g)) { pack_r8_legacy(g, K, w, ldw, out); return; }
    const int nsub = r8_nsub(g);
    const size_t hb = spq_gq_r8_head(g);
    for (int b = 0; b < K / 256; b++) {
        uint8_t *o = out + (size_t)b * spq_gq_r8_block(g);
        memset(o, 0, spq_gq_r8_block(g));
        uint8_t *codes = o + hb;
        for (int r = 0; r < 8; r++) {
            int q[256], sc[16], mn[16];
            float d, dmin;
            k_ints(g, w + (size_t)r * ldw + (size_t)b * FMT[g].bytes, q, sc, mn, &d, &dmin);
            uint16_t hd = spq_f32_to_f16(d), hm = spq_f32_to_f16(dmin); /* exact: they were halves */
            memcpy(o + 2 * r, &hd, 2);
            memcpy(o + 16 + 2 * r, &hm, 2);
            for (int j = 0; j < nsub; j++) {
                o[32 + 8 * j + r] = (uint8_t)(int8_t)sc[j];
                if (spq_gq_has_min(g)) o[32 + 8 * nsub + 8 * j + r] = (uint8_t)mn[j];
            }
            for (int v = 0; v < 256; v++) {
                int c = v / 8, code; /* the stored code: unsigned, the level index for IQ4_XS */
                if (g == SPQ_GQ_Q6_K) code = q[v] + 32;
                else if (g == SPQ_GQ_IQ4_XS) {
                    int bb = w[(size_t)r * ldw + (size_t)b * FMT[g].bytes + 8 + 16 * (v / 32) + v % 16];
                    code = (bb >> (4 * (v % 32 / 16))) & 15;
                } else code = q[v];
                codes[spq_gq_r8_cv(g, c % 16) + r8_byte(r, v)] |= (uint8_t)((code & 15) << (c < 16 ? 0 : 4));
                if (g == SPQ_GQ_Q5_K) codes[spq_gq_r8_qh(g, c / 8) + r8_byte(r, v)] |= (uint8_t)(((code >> 4) & 1) << (c % 8));
                if (g == SPQ_GQ_Q6_K) codes[spq_gq_r8_qh(g, c / 4) + r8_byte(r, v)] |= (uint8_t)(((code >> 4) & 3) << (2 * (c % 4)));
            }
        }
    }
}

/* Row r of an 8-row super-block back to the integers k_ints gives; returns the sub-block size. */
static int r8_ints(int g, const uint8_t *o, int r, int *q, int *sc, int *mn, float *d, float *dmin)
{
    const int nsub = r8_nsub(g);
    const uint8_t *codes = o + spq_gq_r8_head(g);
    *d = spq_gq_half(o + 2 * r);
    *dmin = spq_gq_half(o + 16 + 2 * r);
    for (int j = 0; j < nsub; j++) {
        sc[j] = (int8_t)o[32 + 8 * j + r];
        mn[j] = spq_gq_has_min(g) ? o[32 + 8 * nsub + 8 * j + r] : 0;
    }
    for (int v = 0; v < 256; v++) {
        int c = v / 8, code = (codes[spq_gq_r8_cv(g, c % 16) + r8_byte(r, v)] >> (c < 16 ? 0 : 4)) & 15;
        if (g == SPQ_GQ_Q5_K) code |= ((codes[spq_gq_r8_qh(g, c / 8) + r8_byte(r, v)] >> (c % 8)) & 1) << 4;
        if (g == SPQ_GQ_Q6_K) code |= ((codes[spq_gq_r8_qh(g, c / 4) + r8_byte(r, v)] >> (2 * (c % 4))) & 3) << 4;
        q[v] = g == SPQ_GQ_Q6_K ? code - 32 : g == SPQ_GQ_IQ4_XS ? spq_gq_iq4[code] : code;
    }
    return 256 / nsub;
}

void spq_gq_dot_r8_ref(int g, int K, int ng, const uint8_t *w, int M, const uint8_t *xa, size_t ldx, float *y,
                       size_t ldy)
{
    if (r8_legacy(g)) { dot_r8_legacy(g, K, ng, w, M, xa, ldx, y, ldy); return; }
    const size_t gb = spq_gq_r8_bytes(g, K), bb = spq_gq_r8_block(g), qat = spq_gq_act_q_at(256, K);
    for (int m = 0; m < M; m++) {
        const uint8_t *a = xa + (size_t)m * ldx;
        const float *xd = (const float *)a;
        const int16_t *xs = (const int16_t *)(a + 4 * (size_t)(K / 256));
        const int8_t *x = (const int8_t *)(a + qat);
        for (int i = 0; i < ng; i++)
            for (int r = 0; r < 8; r++) {
                float acc = 0;
                for (int b = 0; b < K / 256; b++) {
                    int q[256], sc[16], mn[16];
                    float d, dmin;
                    int sub = r8_ints(g, w + (size_t)i * gb + (size_t)b * bb, r, q, sc, mn, &d, &dmin);
                    acc = k_step(g, q, sc, mn, sub, d, dmin, x + 256 * b, xs + 16 * b, xd[b], acc);
                }
                y[(size_t)m * ldy + 8 * (size_t)i + r] = acc;
            }
    }
}

/* One weight row with one activation row. */
static float dot1(int g, int K, const uint8_t *w, const uint8_t *xa)
{
    return FMT[g].blk == 32 ? dot_legacy(g, K, w, xa) : dot_k(g, K, w, xa);
}

void spq_gq_dot_ref(int g, int K, int nr, const uint8_t *w, size_t ldw, int M, const uint8_t *xa, size_t ldx,
                    float *y, size_t ldy)
{
    for (int m = 0; m < M; m++)
        for (int r = 0; r < nr; r++) y[(size_t)m * ldy + r] = dot1(g, K, w + (size_t)r * ldw, xa + (size_t)m * ldx);
}
