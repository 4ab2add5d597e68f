/* probes.c — the read-bandwidth and int8-peak probes behind every roofline fraction. */
#include "probe/probes.h"

#include "base/clock.h"
#include "probe/peak.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* XOR of 4 interleaved streams (one per quarter of the slice): several independent loads
 * in flight per thread, like the GEMV's four lanes; 4 streams read faster than 1, 2, 8 or
 * 16. Built for the baseline ISA the loop vectorises to 16-byte loads, which read slower
 * than the GEMV's 64-byte ones: the widest loads the CPU has are used, so that the probe
 * is the limit and not a loop that a kernel can beat (docs/benchmarks.md, Method). */
#define XOR4_BODY                                                                              \
    size_t q = n / 4;                                                                          \
    const uint64_t *a = p, *b = p + q, *c = p + 2 * q, *d = p + 3 * q;                         \
    uint64_t x0 = 0, x1 = 0, x2 = 0, x3 = 0;                                                   \
    for (size_t i = 0; i < q; i++) { x0 ^= a[i]; x1 ^= b[i]; x2 ^= c[i]; x3 ^= d[i]; }         \
    return x0 ^ x1 ^ x2 ^ x3;

static uint64_t xor4_base(const uint64_t *p, size_t n) { XOR4_BODY }
#if defined(__x86_64__)
__attribute__((target("avx512f"))) static uint64_t xor4_avx512(const uint64_t *p, size_t n) { XOR4_BODY }
__attribute__((target("avx2"))) static uint64_t xor4_avx2(const uint64_t *p, size_t n) { XOR4_BODY }
#endif

static uint64_t xor4(const uint64_t *p, size_t n)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return xor4_avx512(p, n);
    if (__builtin_cpu_supports("avx2")) return xor4_avx2(p, n);
#endif
    return xor4_base(p, n);
}

int spq_bwprobe_init(spq_bwprobe *p, size_t bytes)
{
    p->n = bytes / sizeof(uint64_t) / 64 * 64; /* whole lines in every thread's quarters */
    p->buf = aligned_alloc(64, p->n * sizeof(uint64_t));
    if (!p->buf) return -1;
    uint64_t *buf = p->buf;
    size_t n = p->n;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = i * 0x9E3779B97F4A7C15ull; /* first touch by the reader */
    return 0;
}

/* A pass reads the buffer in 4 MiB chunks (each as 4 streams of 1 MiB, as long as the
 * GEMV lanes' streams), taken in turn by whichever thread is free: like the GEMM driver's
 * stealing, so that a thread descheduled by a neighbour on a shared machine does not hold
 * the pass up while the other threads could read its part. */
#define CHUNK_WORDS ((size_t)4 << 20 >> 3)

double spq_bwprobe_pass(const spq_bwprobe *p)
{
    volatile uint64_t sink = 0;
    long nch = (long)((p->n + CHUNK_WORDS - 1) / CHUNK_WORDS);
    double t0 = spq_now();
#pragma omp parallel
    {
        uint64_t x = 0;
#pragma omp for schedule(dynamic, 1) nowait
        for (long c = 0; c < nch; c++) {
            size_t w0 = (size_t)c * CHUNK_WORDS, len = p->n - w0 < CHUNK_WORDS ? p->n - w0 : CHUNK_WORDS;
            x ^= xor4(p->buf + w0, len);
        }
#pragma omp atomic
        sink ^= x;
    }
    return spq_now() - t0;
}

void spq_bwprobe_free(spq_bwprobe *p)
{
    free(p->buf);
    p->buf = NULL;
    p->n = 0;
}

double spq_probe_read_bw(size_t bytes)
{
    spq_bwprobe p;
    if (spq_bwprobe_init(&p, bytes)) return 0;
    double best = 0;
    for (int rep = 0; rep < 5; rep++) {
        double bw = (double)(p.n * sizeof(uint64_t)) / spq_bwprobe_pass(&p);
        best = bw > best ? bw : best;
    }
    spq_bwprobe_free(&p);
    return best;
}

double spq_probe_int8_pass(const spq_kernels *k, double *sec)
{
    double macs = 0, t0 = spq_now();
#pragma omp parallel reduction(+ : macs)
    {
        int32_t sink = 0;
        macs += spq_peak_for(k->name)(20000000, &sink);
        if (sink == 42) macs += 0; /* keep sink alive */
    }
    *sec = spq_now() - t0;
    return macs;
}

double spq_probe_int8_macs(const spq_kernels *k)
{
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double sec, macs = spq_probe_int8_pass(k, &sec);
        best = macs / sec > best ? macs / sec : best;
    }
    return best;
}
