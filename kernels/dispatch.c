/* dispatch.c — pick the best kernel table for this CPU once; thread the GEMM drivers.
 * The table pointer is the project's only global (see DEVELOPERS.md). */
#include "kernels.h"

#include <stdlib.h>
#include <string.h>
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
    if (!strcmp(name, "neon")) return spq_kernels_neon();
    if (!strcmp(name, "neonplain")) return spq_kernels_neonplain();
    return NULL;
}

int spq_kern_available(const char **names, int max)
{
    static const char *all[] = {"scalar", "neonplain", "avx2", "avxvnni", "avx512", "neon"};
    int n = 0;
    for (int i = 0; i < 6 && n < max; i++)
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

void spq_gemm_q8(const spq_kernels *k, int M, int N, int K, const int8_t *x, const int8_t *w,
                 const int32_t *wsum, float scale, float *y, int ldy)
{
    int nb = (N + BLK - 1) / BLK, kp = spq_kpad(K);
    /* decode streams weights from DRAM: threads that get more bandwidth at the moment take
     * more blocks (dynamic) instead of waiting at the barrier for the slowest half (static) */
#pragma omp parallel for schedule(dynamic, 1) if (nb > 1 && (long)M * N * K > 200000)
    for (int b = 0; b < nb; b++) {
        int n1 = (b + 1) * BLK < N ? (b + 1) * BLK : N;
        k->gemm_q8(M, N, kp, b * BLK, n1, x, w, wsum, scale, y, ldy);
    }
}

void spq_gemm_f32(const spq_kernels *k, int M, int N, int K, const float *x, const float *w,
                  float *y, int ldy)
{
    int nb = (N + BLK - 1) / BLK;
#pragma omp parallel for schedule(static) if (nb > 1 && (long)M * N * K > 200000)
    for (int b = 0; b < nb; b++) {
        int n1 = (b + 1) * BLK < N ? (b + 1) * BLK : N;
        k->gemm_f32(M, N, K, b * BLK, n1, x, w, y, ldy);
    }
}

void spq_gemm_f16(const spq_kernels *k, int M, int N, int K, const float *x, const uint16_t *w,
                  float *y, int ldy)
{
    int nb = (N + BLK - 1) / BLK;
#pragma omp parallel for schedule(static) if (nb > 1 && (long)M * N * K > 200000)
    for (int b = 0; b < nb; b++) {
        int n1 = (b + 1) * BLK < N ? (b + 1) * BLK : N;
        k->gemm_f16(M, N, K, b * BLK, n1, x, w, y, ldy);
    }
}

void spq_gemm_e4m3(const spq_kernels *k, int M, int N, int K, const float *x, const uint8_t *w,
                   float scale, float *y, int ldy)
{
    int nb = (N + BLK - 1) / BLK, kp = spq_kpad(K);
#pragma omp parallel for schedule(static) if (nb > 1 && (long)M * N * K > 200000)
    for (int b = 0; b < nb; b++) {
        int n1 = (b + 1) * BLK < N ? (b + 1) * BLK : N;
        k->gemm_e4m3(M, N, kp, b * BLK, n1, x, w, scale, y, ldy);
    }
}
