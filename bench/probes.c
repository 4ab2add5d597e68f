/* probes.c — the read-bandwidth and int8-peak probes behind every roofline fraction. */
#include "bench/probes.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double spq_probe_read_bw(size_t bytes)
{
    size_t n = bytes / sizeof(float);
    float *buf = aligned_alloc(64, n * sizeof(float));
    if (!buf) return 0;
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) buf[i] = (float)(i & 1023); /* touch: first-touch placement */
    const spq_kernels *k = spq_kern();
    double best = 0;
    volatile float sink = 0;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now();
#pragma omp parallel
        {
#ifdef _OPENMP
            int nt = omp_get_num_threads(), id = omp_get_thread_num();
#else
            int nt = 1, id = 0;
#endif
            size_t chunk = (n / (size_t)nt) & ~(size_t)15, lo = chunk * (size_t)id;
            float m = k->absmax(buf + lo, id == nt - 1 ? n - lo : chunk); /* one max per 64 B: load-bound */
#pragma omp atomic
            sink += m;
        }
        double bw = (double)(n * sizeof(float)) / (now() - t0);
        best = bw > best ? bw : best;
    }
    free(buf);
    return best;
}

double spq_probe_int8_macs(const spq_kernels *k)
{
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        double macs = 0, t0 = now();
#pragma omp parallel reduction(+ : macs)
        {
            int32_t sink = 0;
            macs += k->dot_spin(20000000, &sink);
            if (sink == 42) macs += 0; /* keep sink alive */
        }
        double r = macs / (now() - t0);
        best = r > best ? r : best;
    }
    return best;
}
