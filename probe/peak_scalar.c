/* peak_scalar.c — the int8 peak probe's loops for the scalar table, and the look-up by
 * table name. */
#include "probe/peak.h"

#include <string.h>

double spq_peak_scalar(long iters, int32_t *sink)
{
    uint32_t a[8] = {0}, t = (uint32_t)*sink; /* unsigned: the sums wrap, they only keep the loop alive */
    volatile int8_t xv = 3, wv = 5;
    int8_t x = xv, w = wv;
    for (long it = 0; it < iters; it++) {
        for (int i = 0; i < 8; i++) a[i] += (uint32_t)(x * w + i);
        __asm__ volatile("" : "+r"(x)); /* else the compiler folds the loop into one multiply */
    }
    for (int i = 0; i < 8; i++) t += a[i];
    *sink = (int32_t)t;
    return (double)iters * 8;
}

spq_peak_fn spq_peak_for(const char *name)
{
    static const struct {
        const char *name;
        spq_peak_fn fn;
    } all[] = {{"avx2", spq_peak_avx2}, {"avxvnni", spq_peak_avxvnni}, {"avx512", spq_peak_avx512},
               {"avx512bf16", spq_peak_avx512},
               {"neon", spq_peak_neon}, {"neonplain", spq_peak_neonplain}};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (!strcmp(name, all[i].name) && all[i].fn) return all[i].fn;
    return spq_peak_scalar;
}
