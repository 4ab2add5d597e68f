/* dispatch.c — pick the best kernel table for this CPU once; thread the GEMM drivers.
 * The table pointer is the project's only global (docs/architecture.md, Dispatch). */
#include "kernels.h"

#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#endif
#if defined(__x86_64__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

static const spq_kernels *g_kern; /* the dispatch table */

#if defined(__x86_64__)
/* CPUID.1:ECX bit 29 (clang's __builtin_cpu_supports does not know "f16c") */
static int has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c >> 29 & 1);
}
#endif

static int cpu_has(const char *name)
{
    if (!strcmp(name, "scalar")) return 1;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (!strcmp(name, "avx2"))
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
    if (!strcmp(name, "avxvnni")) { /* CPUID.(7,1):EAX bit 4 */
        unsigned a, b, c, d;
        return cpu_has("avx2") && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 4 & 1);
    }
    if (!strcmp(name, "avx512"))
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    if (!strcmp(name, "avx512bf16")) { /* CPUID.(7,1):EAX bit 5 */
        unsigned a, b, c, d;
        return cpu_has("avx512") && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a >> 5 & 1);
    }
#elif defined(__aarch64__)
    if (!strcmp(name, "neonplain")) return 1;
    if (!strcmp(name, "neon")) {
#ifdef __linux__
        return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#else
        return 1;
#endif
    }
#endif
    return 0;
}

const spq_kernels *spq_kern_get(const char *name)
{
    if (!cpu_has(name)) return NULL;
    if (!strcmp(name, "scalar")) return spq_kernels_scalar();
    if (!strcmp(name, "avx2")) return spq_kernels_avx2();
    if (!strcmp(name, "avxvnni")) return spq_kernels_avxvnni();
    if (!strcmp(name, "avx512")) return spq_kernels_avx512();
    if (!strcmp(name, "avx512bf16")) return spq_kernels_avx512bf16();
    if (!strcmp(name, "neon")) return spq_kernels_neon();
    if (!strcmp(name, "neonplain")) return spq_kernels_neonplain();
    return NULL;
}

int spq_kern_available(const char **names, int max)
{
    static const char *all[] = {"scalar", "neonplain", "avx2", "avxvnni", "avx512", "avx512bf16", "neon"};
    int n = 0;
    for (size_t i = 0; i < sizeof all / sizeof all[0] && n < max; i++)
        if (spq_kern_get(all[i])) names[n++] = all[i];
    return n;
}

int spq_kern_select(const char *name)
{
    const spq_kernels *k = spq_kern_get(name);
    if (!k) return -1;
    g_kern = k;
    return 0;
}

const spq_kernels *spq_kern(void)
{
    if (!g_kern) {
        const char *env = getenv("SPIKEQ_ISA");
        if (env && *env && spq_kern_select(env) == 0) return g_kern;
        const char *names[8];
        int n = spq_kern_available(names, 8); /* in order of preference: the last is best */
        g_kern = spq_kern_get(names[n - 1]);
    }
    return g_kern;
}

/* Column blocks of 64 (4 panels) are the unit of work: big enough to amortise the
 * activation loads, small enough to balance 16 threads on a 2048-wide layer. */
#define BLK 64

/* One or more GEMMs on the same input, their column blocks numbered one after another.
 * Decode INT8 jobs (lanes) deal the same number of items, each of four panels from the
 * four quarters of a matrix: item i is panels i, i + Q, i + 2Q, i + 3Q (Q = ceil(panels / 4)
 * = the matrix's item count), so that a thread's contiguous share reads four long
 * sequential streams instead of four panel-long ones (kpad * 16 bytes: 32 KiB at K = 2048)
 * that restart at every block; the hardware prefetcher ramps up once per share, not once
 * per block (streams that restart every 32 KiB read measurably slower than long ones:
 * docs/benchmarks.md, Findings). */
typedef struct {
    const spq_kernels *k;
    int kind, M, K, nmat, lanes;
    const void *x;
    spq_gemm_out mat[SPQ_GEMM_MAXN];
    int b0[SPQ_GEMM_MAXN + 1]; /* first block of each matrix; b0[nmat]: all blocks */
} gemm_job;

/* Lanes: item p0 of a matrix of N columns is panels p0 + l * (*Q) for l below the count
 * returned (4, or fewer where the last quarters run out). */
static int lane_item(int N, int p0, int *Q)
{
    int np = (N + SPQ_NR - 1) / SPQ_NR, nv;
    *Q = (np + 3) / 4;
    nv = (np - 1 - p0) / *Q + 1;
    return nv < 4 ? nv : 4;
}

static void run_block(const gemm_job *j, int b)
{
    int i = 0;
    while (b >= j->b0[i + 1]) i++;
    const spq_gemm_out *o = &j->mat[i];
    int N = o->N, n0 = (b - j->b0[i]) * BLK, n1 = n0 + BLK < N ? n0 + BLK : N, kp = spq_kpad(j->K);
    if (j->lanes) {
        int Q, p0 = b - j->b0[i], nv = lane_item(N, p0, &Q);
        if (j->M > 1) {
            j->k->gemm_q8_lanes(j->M, N, kp, p0, nv, Q, j->x, o->w, o->wsum, o->scale, o->y, o->ldy);
            return;
        }
        if (j->k->gemv_q8) {
            j->k->gemv_q8(N, kp, p0, nv, Q, j->x, o->w, o->wsum, o->scale, o->y);
            return;
        }
        for (int l = 0; l < nv; l++) {
            int c = (p0 + l * Q) * SPQ_NR;
            j->k->gemm_q8(1, N, kp, c, c + SPQ_NR < N ? c + SPQ_NR : N, j->x, o->w, o->wsum, o->scale, o->y, o->ldy);
        }
        return;
    }
    switch (j->kind) {
    case SPQ_GEMM_Q8: j->k->gemm_q8(j->M, N, kp, n0, n1, j->x, o->w, o->wsum, o->scale, o->y, o->ldy); break;
    case SPQ_GEMM_F32: j->k->gemm_f32(j->M, N, j->K, n0, n1, j->x, o->w, o->y, o->ldy); break;
    case SPQ_GEMM_F16: j->k->gemm_f16(j->M, N, j->K, n0, n1, j->x, o->w, o->y, o->ldy); break;
    case SPQ_GEMM_BF16: j->k->gemm_bf16(j->M, N, j->K, n0, n1, j->x, o->w, o->y, o->ldy); break;
    default: j->k->gemm_e4m3(j->M, N, kp, n0, n1, j->x, o->w, o->scale, o->y, o->ldy); break;
    }
}

/* The blocks go through the team's work loop: each thread owns a contiguous range and runs
 * it front to back, so that its weights are one long sequential read, as in the
 * read-bandwidth probe, instead of blocks dealt out one at a time, which interleave the
 * threads' streams; a thread that finishes early takes blocks from the back of the others'
 * ranges instead of waiting at the barrier. q/k/v and gate/up each run as one job, so that
 * a thread's range spans the matrices and no barrier separates them. */
/* Number the job's blocks (b0); whether the team shares them (else thread 0 runs all). */
static int plan_job(const spq_thr *t, gemm_job *j)
{
    long work = 0;
    j->b0[0] = 0;
    for (int i = 0; i < j->nmat; i++) {
        j->b0[i + 1] = j->b0[i] + (j->mat[i].N + BLK - 1) / BLK;
        work += (long)j->M * j->mat[i].N * j->K;
    }
    return t->nt > 1 && j->b0[j->nmat] >= 2 && work > 200000; /* else too small to share */
}

static void run_job(const spq_thr *t, gemm_job *j)
{
    if (!plan_job(t, j)) {
        if (t->id == 0)
            for (int b = 0; b < j->b0[j->nmat]; b++) run_block(j, b);
    } else {
        spq_loop lp;
        spq_loop_begin(t, j->b0[j->nmat], &lp);
        for (int b; (b = spq_loop_next(t, &lp)) >= 0;) run_block(j, b);
    }
    spq_team_sync(t);
}

static gemm_job make_job(const spq_kernels *k, int kind, int M, int K, const void *x, const spq_gemm_out *outs, int n)
{
    gemm_job j = {.k = k, .kind = kind, .M = M, .K = K, .nmat = n, .x = x,
                  .lanes = kind == SPQ_GEMM_Q8 && (M == 1 || (M <= 8 && k->gemm_q8_lanes))};
    memcpy(j.mat, outs, sizeof *outs * (size_t)n);
    return j;
}

void spq_gemm_team(const spq_thr *t, const spq_kernels *k, int kind, int M, int K, const void *x,
                   const spq_gemm_out *outs, int n)
{
    for (int i0 = 0; i0 < n; i0 += SPQ_GEMM_MAXN) { /* more than fit one job: several */
        gemm_job j = make_job(k, kind, M, K, x, outs + i0, n - i0 < SPQ_GEMM_MAXN ? n - i0 : SPQ_GEMM_MAXN);
        run_job(t, &j);
    }
}

void spq_gemm_team_hint(const spq_thr *t, int kind, int M, int K, const spq_gemm_out *outs, int n)
{
    gemm_job j = make_job(t->team->k, kind, M, K, NULL, outs, n < SPQ_GEMM_MAXN ? n : SPQ_GEMM_MAXN);
    int b0 = 0, b1 = 0;
    if (plan_job(t, &j)) spq_split(t, j.b0[j.nmat], &b0, &b1);
    else if (t->id == 0) b1 = j.b0[j.nmat];
    if (b0 >= b1) {
        spq_team_hint(t, NULL, 0, 0, 1);
        return;
    }
    int i = 0;
    while (b0 >= j.b0[i + 1]) i++;
    if (b1 > j.b0[i + 1]) b1 = j.b0[i + 1]; /* the blocks of one matrix lie end to end */
    /* a column of panel-packed weights: kpad(K) bytes for INT8/FP8, K elements for F16/F32 */
    size_t col = kind == SPQ_GEMM_Q8 || kind == SPQ_GEMM_E4M3 ? (size_t)spq_kpad(K)
               : (size_t)K * (kind == SPQ_GEMM_F16 || kind == SPQ_GEMM_BF16 ? 2 : 4);
    const char *w = j.mat[i].w;
    int N = j.mat[i].N, p0 = b0 - j.b0[i], p1 = b1 - j.b0[i];
    if (j.lanes) { /* panels p0..p1 of each quarter, as long as the last quarter has them */
        int Q, nv = lane_item(N, p0, &Q), np = (N + SPQ_NR - 1) / SPQ_NR;
        if (p1 > np - (nv - 1) * Q) p1 = np - (nv - 1) * Q;
        size_t ps = col * SPQ_NR;
        spq_team_hint(t, w + (size_t)p0 * ps, (size_t)(p1 - p0) * ps, (size_t)Q * ps, nv);
        return;
    }
    size_t n0 = (size_t)p0 * BLK, n1 = (size_t)p1 * BLK; /* blocks of 64 columns */
    if (n1 > (size_t)N) n1 = (size_t)N;
    spq_team_hint(t, w + n0 * col, (n1 - n0) * col, 0, 1);
}

/* The standalone drivers: a team of all OpenMP threads for one call. */
static void run_alone(int kind, const spq_kernels *k, int M, int K, const void *x, const spq_gemm_out *outs, int n)
{
    int nt = 1;
#ifdef _OPENMP
    nt = omp_get_max_threads();
#endif
    spq_team tm;
    spq_team_init(&tm, nt, k);
#pragma omp parallel num_threads(tm.nt)
    {
        spq_thr t = spq_team_member(&tm);
        spq_gemm_team(&t, k, kind, M, K, x, outs, n);
    }
}

void spq_gemm_q8_n(const spq_kernels *k, int M, int K, const int8_t *x, const spq_gemm_out *outs, int n)
{
    run_alone(SPQ_GEMM_Q8, k, M, K, x, outs, n);
}

void spq_gemm_q8(const spq_kernels *k, int M, int N, int K, const int8_t *x, const int8_t *w,
                 const int32_t *wsum, float scale, float *y, int ldy)
{
    spq_gemm_out o = {N, w, wsum, scale, y, ldy};
    run_alone(SPQ_GEMM_Q8, k, M, K, x, &o, 1);
}

void spq_gemm_f32(const spq_kernels *k, int M, int N, int K, const float *x, const float *w,
                  float *y, int ldy)
{
    spq_gemm_out o = {N, w, NULL, 1.0f, y, ldy};
    run_alone(SPQ_GEMM_F32, k, M, K, x, &o, 1);
}

void spq_gemm_f16(const spq_kernels *k, int M, int N, int K, const float *x, const uint16_t *w,
                  float *y, int ldy)
{
    spq_gemm_out o = {N, w, NULL, 1.0f, y, ldy};
    run_alone(SPQ_GEMM_F16, k, M, K, x, &o, 1);
}

void spq_gemm_bf16(const spq_kernels *k, int M, int N, int K, const float *x, const uint16_t *w,
                   float *y, int ldy)
{
    spq_gemm_out o = {N, w, NULL, 1.0f, y, ldy};
    run_alone(SPQ_GEMM_BF16, k, M, K, x, &o, 1);
}

void spq_gemm_e4m3(const spq_kernels *k, int M, int N, int K, const float *x, const uint8_t *w,
                   float scale, float *y, int ldy)
{
    spq_gemm_out o = {N, w, NULL, scale, y, ldy};
    run_alone(SPQ_GEMM_E4M3, k, M, K, x, &o, 1);
}
