/* probes.c — the read-bandwidth and int8-peak probes behind every roofline fraction. */
#include "bench/probes.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

double spq_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* XOR of 4 interleaved streams (one per quarter of the slice): several independent loads
 * in flight per thread, like the GEMV's panel streams; integer XOR vectorises freely. */
static uint64_t xor4(const uint64_t *p, size_t n)
{
    size_t q = n / 4;
    const uint64_t *a = p, *b = p + q, *c = p + 2 * q, *d = p + 3 * q;
    uint64_t x0 = 0, x1 = 0, x2 = 0, x3 = 0;
    for (size_t i = 0; i < q; i++) { x0 ^= a[i]; x1 ^= b[i]; x2 ^= c[i]; x3 ^= d[i]; }
    return x0 ^ x1 ^ x2 ^ x3;
}

double spq_probe_read_bw(size_t bytes)
{
    size_t n = bytes / sizeof(uint64_t);
    uint64_t *buf = aligned_alloc(64, n * sizeof(uint64_t));
    if (!buf) return 0;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = i * 0x9E3779B97F4A7C15ull; /* first touch by the reader */
    double best = 0;
    volatile uint64_t sink = 0;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = spq_now();
#pragma omp parallel
        {
#ifdef _OPENMP
            int nt = omp_get_num_threads(), id = omp_get_thread_num();
#else
            int nt = 1, id = 0;
#endif
            size_t chunk = n / (size_t)nt;
            uint64_t x = xor4(buf + chunk * (size_t)id, chunk);
#pragma omp atomic
            sink ^= x;
        }
        double bw = (double)(n * sizeof(uint64_t)) / (spq_now() - t0);
        best = bw > best ? bw : best;
    }
    free(buf);
    return best;
}

double spq_probe_int8_macs(const spq_kernels *k)
{
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double macs = 0, t0 = spq_now();
#pragma omp parallel reduction(+ : macs)
        {
            int32_t sink = 0;
            macs += k->dot_spin(20000000, &sink);
            if (sink == 42) macs += 0; /* keep sink alive */
        }
        double r = macs / (spq_now() - t0);
        best = r > best ? r : best;
    }
    return best;
}
