/* ggml_quants.c — ggml's block formats, dequantised exactly as ggml defines them
 * (ggml-common.h's block layouts, ggml-quants.c's dequantize_row_*): the legacy 32-weight
 * blocks Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL and the 256-weight K-quant super-blocks Q2_K,
 * Q3_K, Q4_K, Q5_K, Q6_K, IQ4_XS. Every block is little-endian; "d" and "dmin" are IEEE
 * halves. */
#include "format/ggml_quants.h"

#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

static const struct {
    int type, elems, bytes, gq;
    const char *name;
} FORMATS[] = {
    {GGML_Q4_0, 32, 18, SPQ_GQ_Q4_0, "Q4_0"},       {GGML_Q4_1, 32, 20, SPQ_GQ_Q4_1, "Q4_1"},
    {GGML_Q5_0, 32, 22, SPQ_GQ_Q5_0, "Q5_0"},       {GGML_Q5_1, 32, 24, SPQ_GQ_Q5_1, "Q5_1"},
    {GGML_Q8_0, 32, 34, SPQ_GQ_Q8_0, "Q8_0"},       {GGML_Q2_K, 256, 84, SPQ_GQ_Q2_K, "Q2_K"},
    {GGML_Q3_K, 256, 110, SPQ_GQ_Q3_K, "Q3_K"},     {GGML_Q4_K, 256, 144, SPQ_GQ_Q4_K, "Q4_K"},
    {GGML_Q5_K, 256, 176, SPQ_GQ_Q5_K, "Q5_K"},     {GGML_Q6_K, 256, 210, SPQ_GQ_Q6_K, "Q6_K"},
    {GGML_IQ4_NL, 32, 18, SPQ_GQ_IQ4_NL, "IQ4_NL"}, {GGML_IQ4_XS, 256, 136, SPQ_GQ_IQ4_XS, "IQ4_XS"},
};

int spq_ggml_gq(int type)
{
    for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++)
        if (FORMATS[i].type == type) return FORMATS[i].gq;
    return -1;
}

int spq_ggml_block(int type, int *elems, size_t *bytes)
{
    for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++)
        if (FORMATS[i].type == type) {
            *elems = FORMATS[i].elems;
            *bytes = (size_t)FORMATS[i].bytes;
            return 0;
        }
    return -1;
}

const char *spq_ggml_type_name(int type)
{
    static const char *plain[] = {"F32", "F16"};
    if (type == 0 || type == 1) return plain[type];
    if (type == 30) return "BF16";
    for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++)
        if (FORMATS[i].type == type) return FORMATS[i].name;
    return "?";
}

static float half(const uint8_t *p)
{
    uint16_t h;
    memcpy(&h, p, 2);
    return spq_f16_to_f32(h);
}

/* IQ4_NL / IQ4_XS: 4-bit indices into a fixed non-uniform table */
static const int8_t IQ4[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};

/* The 6-bit scale and min j (0..7) of a Q4_K/Q5_K super-block, packed in 12 bytes: scales
 * 0-3 and mins 0-3 in the low 6 bits of bytes 0-3 and 4-7; 4-7 in bytes 8-11's nibbles, their
 * top 2 bits in the top bits of bytes 0-3 (scales) and 4-7 (mins). */
static void scale_min_k4(int j, const uint8_t *q, int *sc, int *m)
{
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4);
        *m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
    }
}

/* Q3_K's 16 6-bit scales (stored + 32) in 12 bytes: low nibbles of bytes 0-7 for 0-7, high
 * nibbles for 8-15, the top 2 bits of each in bytes 8-11 (2 bits per scale, 4 scales a byte). */
static int scale_q3k(const uint8_t *s, int is)
{
    int lo = is < 8 ? s[is] & 0xF : s[is - 8] >> 4;
    int hi = (s[8 + is % 4] >> (2 * (is / 4))) & 3;
    return (lo | hi << 4) - 32;
}

/* One block at b into y[0..elems). */
static void block(int type, const uint8_t *b, float *y)
{
    switch (type) {
    case GGML_Q4_0: case GGML_IQ4_NL: { /* d, qs[16]: low nibbles are weights 0-15, high 16-31 */
        float d = half(b);
        for (int j = 0; j < 16; j++) {
            int lo = b[2 + j] & 0xF, hi = b[2 + j] >> 4;
            y[j] = d * (float)(type == GGML_Q4_0 ? lo - 8 : IQ4[lo]);
            y[j + 16] = d * (float)(type == GGML_Q4_0 ? hi - 8 : IQ4[hi]);
        }
        break;
    }
    case GGML_Q4_1: { /* d, m, qs[16] */
        float d = half(b), m = half(b + 2);
        for (int j = 0; j < 16; j++) {
            y[j] = d * (float)(b[4 + j] & 0xF) + m;
            y[j + 16] = d * (float)(b[4 + j] >> 4) + m;
        }
        break;
    }
    case GGML_Q5_0: case GGML_Q5_1: { /* d, [m], qh (32 fifth bits), qs[16] */
        int o = type == GGML_Q5_1 ? 2 : 0;
        float d = half(b), m = o ? half(b + 2) : 0.0f;
        uint32_t qh;
        memcpy(&qh, b + 2 + o, 4);
        const uint8_t *qs = b + 6 + o;
        for (int j = 0; j < 16; j++) {
            int x0 = (qs[j] & 0xF) | (int)((qh >> j) & 1) << 4, x1 = (qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4;
            y[j] = o ? d * (float)x0 + m : d * (float)(x0 - 16);
            y[j + 16] = o ? d * (float)x1 + m : d * (float)(x1 - 16);
        }
        break;
    }
    case GGML_Q8_0: { /* d, qs[32] */
        float d = half(b);
        for (int j = 0; j < 32; j++) y[j] = d * (float)(int8_t)b[2 + j];
        break;
    }
    case GGML_Q2_K: { /* scales[16] (4-bit scale | 4-bit min), qs[64], d, dmin */
        const uint8_t *sc = b, *qs = b + 16;
        float d = half(b + 80), dmin = half(b + 82);
        for (int n = 0; n < 2; n++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++) {
                    int s = sc[8 * n + 2 * j + l / 16], q = (qs[32 * n + l] >> (2 * j)) & 3;
                    y[128 * n + 32 * j + l] = d * (float)(s & 0xF) * (float)q - dmin * (float)(s >> 4);
                }
        break;
    }
    case GGML_Q3_K: { /* hmask[32], qs[64], scales[12], d: 2 low bits + 1 high bit, minus 4 when clear */
        const uint8_t *hm = b, *qs = b + 32, *sc = b + 96;
        float d = half(b + 108);
        for (int n = 0; n < 2; n++)
            for (int j = 0; j < 4; j++)
                for (int l = 0; l < 32; l++) {
                    int q = ((qs[32 * n + l] >> (2 * j)) & 3) - ((hm[l] >> (4 * n + j)) & 1 ? 0 : 4);
                    y[128 * n + 32 * j + l] = d * (float)scale_q3k(sc, 8 * n + 2 * j + l / 16) * (float)q;
                }
        break;
    }
    case GGML_Q4_K: case GGML_Q5_K: { /* d, dmin, scales[12], [qh[32]], qs[128] */
        int five = type == GGML_Q5_K;
        float d = half(b), dmin = half(b + 2);
        const uint8_t *sc = b + 4, *qh = b + 16, *qs = b + (five ? 48 : 16);
        for (int g = 0; g < 4; g++) { /* 64 weights: the low nibbles of 32 bytes, then the high */
            int s0, m0, s1, m1;
            scale_min_k4(2 * g, sc, &s0, &m0);
            scale_min_k4(2 * g + 1, sc, &s1, &m1);
            for (int l = 0; l < 32; l++) {
                int q0 = qs[32 * g + l] & 0xF, q1 = qs[32 * g + l] >> 4;
                if (five) {
                    q0 += (qh[l] >> (2 * g) & 1) << 4;
                    q1 += (qh[l] >> (2 * g + 1) & 1) << 4;
                }
                y[64 * g + l] = d * (float)s0 * (float)q0 - dmin * (float)m0;
                y[64 * g + 32 + l] = d * (float)s1 * (float)q1 - dmin * (float)m1;
            }
        }
        break;
    }
    case GGML_Q6_K: { /* ql[128] (low 4 bits), qh[64] (high 2), int8 scales[16], d; minus 32 */
        const uint8_t *ql = b, *qh = b + 128;
        const int8_t *sc = (const int8_t *)(b + 192);
        float d = half(b + 208);
        for (int n = 0; n < 2; n++)
            for (int l = 0; l < 32; l++) {
                const uint8_t *L = ql + 64 * n, *H = qh + 32 * n;
                const int8_t *S = sc + 8 * n;
                int is = l / 16;
                int q1 = ((L[l] & 0xF) | ((H[l] >> 0) & 3) << 4) - 32, q2 = ((L[l + 32] & 0xF) | ((H[l] >> 2) & 3) << 4) - 32;
                int q3 = ((L[l] >> 4) | ((H[l] >> 4) & 3) << 4) - 32, q4 = ((L[l + 32] >> 4) | ((H[l] >> 6) & 3) << 4) - 32;
                y[128 * n + l] = d * (float)S[is] * (float)q1;
                y[128 * n + 32 + l] = d * (float)S[is + 2] * (float)q2;
                y[128 * n + 64 + l] = d * (float)S[is + 4] * (float)q3;
                y[128 * n + 96 + l] = d * (float)S[is + 6] * (float)q4;
            }
        break;
    }
    case GGML_IQ4_XS: { /* d, scales_h (u16), scales_l[4], qs[128]: 8 groups of 32, 6-bit scales - 32 */
        float d = half(b);
        uint16_t sh;
        memcpy(&sh, b + 2, 2);
        const uint8_t *sl = b + 4, *qs = b + 8;
        for (int g = 0; g < 8; g++) {
            int ls = ((sl[g / 2] >> (4 * (g % 2))) & 0xF) | ((sh >> (2 * g)) & 3) << 4;
            float dl = d * (float)(ls - 32);
            for (int j = 0; j < 16; j++) {
                y[32 * g + j] = dl * (float)IQ4[qs[16 * g + j] & 0xF];
                y[32 * g + 16 + j] = dl * (float)IQ4[qs[16 * g + j] >> 4];
            }
        }
        break;
    }
    default: break;
    }
}

int spq_ggml_dequant(int type, const uint8_t *src, float *dst, int64_t n)
{
    int el;
    size_t nb;
    if (spq_ggml_block(type, &el, &nb) || n % el) return -1;
    for (int64_t i = 0; i < n / el; i++) block(type, src + (size_t)i * nb, dst + (size_t)i * el);
    return 0;
}

/* One 32-weight block of a legacy type by ggml's reference quantiser (ggml-quants.c's
 * quantize_row_*_ref, which llama-quantize runs without an importance matrix): codes from
 * the float scale, the scale stored as a half. */
static void put_half(uint8_t *p, float v)
{
    uint16_t h = spq_f32_to_f16(v);
    memcpy(p, &h, 2);
}

static void quant_block(int type, const float *x, uint8_t *b)
{
    float amax = 0, max = 0, lo = x[0], hi = x[0];
    for (int j = 0; j < 32; j++) {
        if (amax < fabsf(x[j])) { amax = fabsf(x[j]); max = x[j]; }
        lo = x[j] < lo ? x[j] : lo;
        hi = x[j] > hi ? x[j] : hi;
    }
    if (type == GGML_Q8_0) {
        float d = amax / 127, id = d ? 1.0f / d : 0.0f;
        put_half(b, d);
        for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)roundf(x[j] * id);
        return;
    }
    int q[32], sym = type == GGML_Q4_0 || type == GGML_Q5_0, top = type == GGML_Q4_0 || type == GGML_Q4_1 ? 15 : 31;
    float d = sym ? max / -(float)(top / 2 + 1) : (hi - lo) / (float)top, id = d ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++) {
        int v = sym ? (int8_t)(x[j] * id + (float)(top / 2 + 1) + 0.5f) : (int8_t)((x[j] - lo) * id + 0.5f);
        q[j] = v < top ? v : top;
    }
    put_half(b, d);
    if (!sym) put_half(b + 2, lo);
    uint8_t *qs = b + (sym ? 2 : 4);
    if (top == 31) { /* the fifth bits: qh (u32) after the scale(s), then the nibbles */
        uint32_t qh = 0;
        for (int j = 0; j < 16; j++) qh |= (uint32_t)(q[j] >> 4 & 1) << j | (uint32_t)(q[16 + j] >> 4 & 1) << (j + 16);
        memcpy(qs, &qh, 4);
        qs += 4;
    }
    for (int j = 0; j < 16; j++) qs[j] = (uint8_t)((q[j] & 15) | (q[16 + j] & 15) << 4);
}

int spq_ggml_quant(int type, const float *src, uint8_t *dst, int64_t n)
{
    int el;
    size_t nb;
    if (spq_ggml_block(type, &el, &nb) || el != 32 || type == GGML_IQ4_NL || n % 32) return -1;
    for (int64_t i = 0; i < n / 32; i++) quant_block(type, src + 32 * i, dst + (size_t)i * nb);
    return 0;
}
