/* peak.h — the int8 peak probe's inner loops, one per kernel table: independent chains of
 * the GEMM's own dot-product instruction, so the probe measures what that table's GEMM
 * could reach. Benchmark code: not in the library. */
#ifndef SPQ_PEAK_H
#define SPQ_PEAK_H

#include <stdint.h>

/* Run `iters` rounds of independent int8 dot-product instructions; returns the int8
 * multiply-adds done (sink only keeps the loop alive). */
typedef double (*spq_peak_fn)(long iters, int32_t *sink);

/* The loop for the kernel table named name ("scalar", "avx2", "avxvnni", "avx512", "neon",
 * "neonplain"); the scalar one for a name this build does not know. */
spq_peak_fn spq_peak_for(const char *name);

double spq_peak_scalar(long iters, int32_t *sink);
double spq_peak_avx2(long iters, int32_t *sink);
double spq_peak_avxvnni(long iters, int32_t *sink);
double spq_peak_avx512(long iters, int32_t *sink);
double spq_peak_neon(long iters, int32_t *sink);
double spq_peak_neonplain(long iters, int32_t *sink);

#endif
