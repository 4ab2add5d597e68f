/* numfmt.c — conversions between FP32 and the 16- and 8-bit float formats spikeq stores. */
#include "kernels.h"

#include <math.h>
#include <string.h>

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

float spq_f16_to_f32(uint16_t h)
{
    uint32_t s = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f) return u2f(s | 0x7f800000u | (m << 13));
    if (e == 0) { /* subnormal: m * 2^-24 */
        float v = (float)m * 5.9604644775390625e-8f;
        return s ? -v : v;
    }
    return u2f(s | ((e + 112) << 23) | (m << 13));
}

uint16_t spq_f32_to_f16(float f)
{
    uint32_t u = f2u(f), s = (u >> 16) & 0x8000;
    float a = fabsf(f);
    if (a != a) return (uint16_t)(s | 0x7e00);
    if (a >= 65520.0f) return (uint16_t)(s | 0x7c00);
    if (a < 6.103515625e-05f) { /* subnormal half: round a / 2^-24 to nearest even */
        return (uint16_t)(s | (uint32_t)nearbyintf(a * 16777216.0f));
    }
    uint32_t au = u & 0x7fffffffu;
    uint32_t r = au + 0xfffu + ((au >> 13) & 1u); /* RNE on the 13 dropped bits */
    return (uint16_t)(s | ((r >> 13) - (112u << 10)));
}

float spq_bf16_to_f32(uint16_t h) { return u2f((uint32_t)h << 16); }

uint16_t spq_f32_to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);          /* round to nearest even */
}

/* Minifloats: value = (-1)^s * 2^(e-bias) * (1 + m/2^mb), subnormal for e = 0. */
static float mini_to_f32(uint8_t c, int mb, int bias)
{
    int s = c >> 7, e = (c >> mb) & ((1 << (7 - mb)) - 1), m = c & ((1 << mb) - 1);
    float v = e ? ldexpf(1.0f + (float)m / (float)(1 << mb), e - bias)
                : ldexpf((float)m / (float)(1 << mb), 1 - bias);
    return s ? -v : v;
}

/* Round |f| to the nearest representable minifloat (ties to even), saturating at maxv. */
static uint8_t f32_to_mini(float f, int mb, int bias, float maxv, int emax_code)
{
    uint8_t s = signbit(f) ? 0x80 : 0;
    float a = fabsf(f);
    if (a != a) return (uint8_t)(s | 0x7f);
    if (a >= maxv) a = maxv;
    int e;
    frexpf(a, &e); /* a = frac * 2^e, frac in [0.5, 1) */
    int ee = e - 1 + bias; /* biased exponent if normal */
    if (ee < 1) ee = 1;    /* subnormal range shares the step of e = 1 */
    float step = ldexpf(1.0f, ee - bias - mb);
    float q = nearbyintf(a / step); /* exact division by a power of two */
    float v = q * step;
    if (v > maxv) v = maxv;
    if (v == 0.0f) return s;
    /* re-encode v exactly */
    int e2;
    float fr = frexpf(v, &e2);
    int be = e2 - 1 + bias;
    uint8_t code;
    if (be < 1) { /* subnormal */
        code = (uint8_t)(v / ldexpf(1.0f, 1 - bias - mb));
    } else {
        int m = (int)((fr * 2.0f - 1.0f) * (float)(1 << mb) + 0.5f);
        code = (uint8_t)((be << mb) | m);
    }
    (void)emax_code;
    return (uint8_t)(s | code);
}

float spq_e4m3_to_f32(uint8_t c)
{
    if ((c & 0x7f) == 0x7f) return NAN;
    return mini_to_f32(c, 3, 7);
}
uint8_t spq_f32_to_e4m3(float f) { return f32_to_mini(f, 3, 7, 448.0f, 15); }

float spq_e5m2_to_f32(uint8_t c)
{
    int e = (c >> 2) & 0x1f;
    if (e == 0x1f) return (c & 3) ? NAN : ((c & 0x80) ? -INFINITY : INFINITY);
    return mini_to_f32(c, 2, 15);
}
uint8_t spq_f32_to_e5m2(float f) { return f32_to_mini(f, 2, 15, 57344.0f, 30); }
