/* bench_gemm.c — INT8 W8A8 (or CMPQ) GEMV/GEMM speed per ISA on TinyLlama-1.1B and LLaMA-2-7B
 * layer shapes, beside this machine's limits measured in the same run.
 * usage: bench_gemm [-t THREADS] [-r REPS] [--isa NAME] [--gemv (M = 1 only)] [--sync] [--cmpq BITS]
 * --cmpq BITS times CMPQ tensors whose channels are all at BITS (2, 3, 4, 5, 6, 8; shared
 * levels, 0.2% outliers) through spq_cmpq_apply in a thread team, as the forward pass runs
 * them: GEMV GB/s counts every byte of the blob.
 * --sync instead times what joins the threads between steps: an OpenMP fork/join, an
 * OpenMP barrier, and the forward pass's team barrier (kernels/team.h).
 * GEMV (M = 1) rotates over enough copies of the weights (>= 512 MiB) that every call
 * streams from DRAM: its figure of merit is GB/s of weights vs the read-bandwidth probe.
 * GEMM (M = 512) is compute-bound: int8 MAC/s vs the dot-product peak probe. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/clock.h"
#include "probe/probes.h"
#include "kernels/kernels.h"
#include "runtime/cmpq.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Microseconds per fork/join, per OpenMP barrier and per team barrier (median of reps). */
static void bench_sync(int threads, int reps)
{
    enum { N = 20000 };
    double t[3][64];
    reps = reps < 64 ? reps : 64;
    for (int r = 0; r < reps; r++) {
        double t0 = spq_now();
        for (int i = 0; i < N; i++) {
#pragma omp parallel
            __asm__ __volatile__("");
        }
        double t1 = spq_now();
#pragma omp parallel
        for (int i = 0; i < N; i++) {
#pragma omp barrier
        }
        double t2 = spq_now();
        spq_team tm;
        spq_team_init(&tm, threads, spq_kern());
#pragma omp parallel
        {
            spq_thr th = spq_team_member(&tm);
            for (int i = 0; i < N; i++) spq_team_sync(&th);
        }
        double t3 = spq_now();
        t[0][r] = (t1 - t0) / N * 1e6;
        t[1][r] = (t2 - t1) / N * 1e6;
        t[2][r] = (t3 - t2) / N * 1e6;
    }
    for (int i = 0; i < 3; i++) qsort(t[i], (size_t)reps, sizeof(double), cmp_d);
    printf("| join | us (median of %d) |\n|---|---:|\n| OpenMP fork/join | %.3f |\n| OpenMP barrier | %.3f |\n"
           "| team barrier (spq_team_sync) | %.3f |\n", reps, t[0][reps / 2], t[1][reps / 2], t[2][reps / 2]);
}

static const struct { const char *name; int N, K; } SHAPES[] = {
    {"tinyllama q/o 2048x2048", 2048, 2048},  {"tinyllama k/v 256x2048", 256, 2048},
    {"tinyllama gate/up 5632x2048", 5632, 2048}, {"tinyllama down 2048x5632", 2048, 5632},
    {"llama2-7b q/k/v/o 4096x4096", 4096, 4096}, {"llama2-7b gate/up 11008x4096", 11008, 4096},
    {"llama2-7b down 4096x11008", 4096, 11008},
};

/* Seconds per spq_cmpq_apply of M rows over tensors rs[0..n) in turn (one team, one region). */
static double cmpq_time(spq_cmpq_rt *rs, int n, int M, const float *x, float *y, float *xs, int threads)
{
    spq_team tm;
    spq_team_init(&tm, threads, spq_kern());
    double t0 = spq_now();
#pragma omp parallel num_threads(threads)
    {
        spq_thr t = spq_team_member(&tm);
        for (int c = 0; c < n; c++) spq_cmpq_apply(&t, &rs[c], x, M, y, xs, c + 1 < n ? &rs[c + 1] : NULL);
    }
    return (spq_now() - t0) / n;
}

static void bench_cmpq(int bits, int reps, int threads, int gemv_only, double bw, double peak, const char *isa)
{
    int c = 0;
    while (c < SPQ_CMPQ_NCLS - 1 && spq_cmpq_bits[c] != bits) c++;
    for (size_t h = 0; h < sizeof SHAPES / sizeof SHAPES[0]; h++) {
        int N = SHAPES[h].N, K = SHAPES[h].K;
        uint32_t kc[SPQ_CMPQ_NCLS] = {0};
        kc[c] = (uint32_t)K;
        size_t nb;
        void *one = spq_cmpq_synthetic(N, K, kc, (uint32_t)(0.002 * N * K), 1, &nb);
        free(one);
        int copies = (int)((512ull << 20) / nb) + 1;
        void **blob = malloc(sizeof *blob * (size_t)copies);
        spq_cmpq_rt *rs = calloc((size_t)copies, sizeof *rs);
        for (int i = 0; i < copies; i++) {
            blob[i] = spq_cmpq_synthetic(N, K, kc, (uint32_t)(0.002 * N * K), (uint64_t)i + 1, &nb);
            if (!blob[i] || spq_cmpq_rt_init(&rs[i], blob[i])) { fprintf(stderr, "out of memory\n"); exit(1); }
        }
        for (int M = 1; M <= (gemv_only ? 1 : 512); M += 511) {
            float *x = malloc(sizeof(float) * (size_t)M * K), *y = malloc(sizeof(float) * (size_t)M * N);
            float *xs = malloc(sizeof(float) * (size_t)M * (size_t)spq_cmpq_row_scratch(&rs[0]));
            for (size_t i = 0; i < (size_t)M * K; i++) x[i] = (float)(i % 251) / 125.0f - 1.0f;
            int nrep = M == 1 ? reps : (reps < 3 ? reps : 3), n = M == 1 ? copies : 1;
            double *t = malloc(sizeof(double) * (size_t)nrep);
            cmpq_time(rs, 1, M, x, y, xs, threads); /* warm-up */
            for (int r = 0; r < nrep; r++) t[r] = cmpq_time(rs, n, M, x, y, xs, threads);
            qsort(t, (size_t)nrep, sizeof(double), cmp_d);
            double sec = t[nrep / 2], macs = (double)M * N * K;
            double frac = M == 1 ? ((double)nb / sec) / bw : (macs / sec) / peak;
            printf("| %s cmpq %d-bit | %s | %d | %.3f | %.1f | %.1f | %.0f%% %s |\n", isa, bits, SHAPES[h].name, M, sec * 1e3,
                   2 * macs / sec / 1e9, (double)nb / sec / 1e9, 100 * frac, M == 1 ? "of read BW" : "of int8 peak");
            fflush(stdout);
            free(t); free(x); free(y); free(xs);
        }
        for (int i = 0; i < copies; i++) { spq_cmpq_rt_free(&rs[i]); free(blob[i]); }
        free(rs); free(blob);
    }
}

int main(int argc, char **argv)
{
    int threads = 0, reps = 7;
    const char *only = NULL;
    int gemv_only = 0, sync = 0, cmpq = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) only = argv[++i];
        else if (!strcmp(argv[i], "--gemv")) gemv_only = 1;
        else if (!strcmp(argv[i], "--sync")) sync = 1;
        else if (!strcmp(argv[i], "--cmpq") && i + 1 < argc) cmpq = atoi(argv[++i]);
        else { fprintf(stderr, "usage: bench_gemm [-t THREADS] [-r REPS] [--isa NAME] [--gemv] [--sync] [--cmpq BITS]\n"); return 2; }
    }
#ifdef _OPENMP
    if (threads > 0) omp_set_num_threads(threads);
    threads = omp_get_max_threads();
#else
    threads = 1;
#endif
    if (reps < 1) reps = 1;
    if (sync) {
        printf("# threads %d\n", threads);
        bench_sync(threads, reps);
        return 0;
    }
    double bw = spq_probe_read_bw((size_t)1 << 30);
    printf("# threads %d; read bandwidth probe (1 GiB, streaming loads): %.1f GB/s\n", threads, bw / 1e9);
    const char *names[8];
    int ni = spq_kern_available(names, 8);
    printf("| isa | shape | M | ms (median of %d) | GOP/s | GB/s weights | fraction of limit |\n|---|---|---:|---:|---:|---:|---:|\n", reps);
    for (int s = 0; s < ni; s++) {
        const spq_kernels *k = spq_kern_get(names[s]);
        if (only ? strcmp(only, names[s]) : !strcmp(names[s], "scalar")) continue; /* scalar: tests only */
        double peak = spq_probe_int8_macs(k);
        printf("| %s | int8 dot peak probe | | | %.0f | | (%.0f G MAC/s) |\n", k->name, 2 * peak / 1e9, peak / 1e9);
        if (cmpq) {
            if (spq_kern_select(names[s])) continue;
            bench_cmpq(cmpq, reps, threads, gemv_only, bw, peak, k->name);
            continue;
        }
        for (size_t h = 0; h < sizeof SHAPES / sizeof SHAPES[0]; h++) {
            int N = SHAPES[h].N, K = SHAPES[h].K, kp = spq_kpad(K);
            size_t wb = spq_pack_q8_size(N, K);
            int copies = (int)((512ull << 20) / wb) + 1;
            int8_t **w = malloc(sizeof *w * (size_t)copies);
            int32_t *ws = malloc(sizeof(int32_t) * (size_t)(N + 64));
            int8_t *raw = malloc((size_t)N * K);
            for (size_t i = 0; i < (size_t)N * K; i++) raw[i] = (int8_t)((i * 2654435761u >> 13) % 255 - 127);
            for (int c = 0; c < copies; c++) {
                w[c] = aligned_alloc(64, (wb + 63) & ~(size_t)63);
                spq_pack_q8(raw, N, K, w[c], ws);
            }
            free(raw);
            for (int M = 1; M <= (gemv_only ? 1 : 512); M += 511) {
                int8_t *x = aligned_alloc(64, (size_t)M * kp + 64);
                float *y = aligned_alloc(64, sizeof(float) * (size_t)M * N + 64);
                for (size_t i = 0; i < (size_t)M * kp; i++) x[i] = (int8_t)(i % 251 - 125);
                int inner = M == 1 ? copies : 1, nrep = M == 1 ? reps : (reps < 3 ? reps : 3);
                double *t = malloc(sizeof(double) * (size_t)nrep);
                spq_gemm_q8(k, M, N, K, x, w[0], ws, 1.0f, y, N); /* warm-up */
                for (int r = 0; r < nrep; r++) {
                    double t0 = spq_now();
                    for (int c = 0; c < inner; c++) spq_gemm_q8(k, M, N, K, x, w[c], ws, 1.0f, y, N);
                    t[r] = (spq_now() - t0) / inner;
                }
                qsort(t, (size_t)nrep, sizeof(double), cmp_d);
                double sec = t[nrep / 2], macs = (double)M * N * K;
                double frac = M == 1 ? ((double)N * K / sec) / bw : (macs / sec) / peak;
                printf("| %s | %s | %d | %.3f | %.1f | %.1f | %.0f%% %s |\n", k->name, SHAPES[h].name, M, sec * 1e3,
                       2 * macs / sec / 1e9, (double)N * K / sec / 1e9, 100 * frac, M == 1 ? "of read BW" : "of int8 peak");
                fflush(stdout);
                free(t); free(x); free(y);
            }
            for (int c = 0; c < copies; c++) free(w[c]);
            free(w); free(ws);
        }
    }
    return 0;
}
