/* peak_neon.c — the int8 peak probe's loops for the NEON tables (sdot, and smull + sadalp
 * without the dot-product extension); built with the NEON kernels' flags on aarch64,
 * falling back to the scalar loop elsewhere. */
#include "probe/peak.h"

#if defined(__aarch64__)
#include <arm_neon.h>

double spq_peak_neon(long iters, int32_t *sink)
{
    int32x4_t a[8];
    int8x16_t x = vdupq_n_s8(3), w = vdupq_n_s8(5);
    for (int i = 0; i < 8; i++) a[i] = vdupq_n_s32(i);
    for (long it = 0; it < iters; it++) {
        for (int i = 0; i < 8; i++) a[i] = vdotq_s32(a[i], x, w);
        __asm__ volatile("" : "+w"(x));
    }
    int32x4_t s = a[0];
    for (int i = 1; i < 8; i++) s = vaddq_s32(s, a[i]);
    *sink = (int32_t)((uint32_t)*sink + vaddvq_u32(vreinterpretq_u32_s32(s))); /* wraps: only keeps the loop alive */
    return (double)iters * 8 * 16;
}

double spq_peak_neonplain(long iters, int32_t *sink)
{
    int32x4_t a[8];
    int8x8_t x = vdup_n_s8(3), w = vdup_n_s8(5);
    for (int i = 0; i < 8; i++) a[i] = vdupq_n_s32(i);
    for (long it = 0; it < iters; it++) {
        for (int i = 0; i < 8; i++) a[i] = vpadalq_s16(a[i], vmull_s8(x, w));
        __asm__ volatile("" : "+w"(x));
    }
    int32x4_t s = a[0];
    for (int i = 1; i < 8; i++) s = vaddq_s32(s, a[i]);
    *sink = (int32_t)((uint32_t)*sink + vaddvq_u32(vreinterpretq_u32_s32(s))); /* wraps: only keeps the loop alive */
    return (double)iters * 8 * 8;
}
#else
double spq_peak_neon(long iters, int32_t *sink) { return spq_peak_scalar(iters, sink); }
double spq_peak_neonplain(long iters, int32_t *sink) { return spq_peak_scalar(iters, sink); }
#endif
