/* peak_x86.c — the int8 peak probe's loops for the x86 tables (vpmaddwd, vpdpbusd ymm and
 * zmm), each built for its ISA with a target attribute; the probe calls one only where
 * dispatch.c chose that table. Elsewhere the names exist and fall back to the scalar loop. */
#include "probe/peak.h"

#if defined(__x86_64__)
#include <immintrin.h>

/* 12 independent vpmaddwd + vpaddd chains (16-bit pairs: 16 int8 MACs each) */
__attribute__((target("avx2"))) double spq_peak_avx2(long iters, int32_t *sink)
{
    __m256i a[12], x = _mm256_set1_epi16(3), w = _mm256_set1_epi16(5);
    for (int i = 0; i < 12; i++) a[i] = _mm256_set1_epi32(i);
    for (long it = 0; it < iters; it++) {
        for (int i = 0; i < 12; i++) a[i] = _mm256_add_epi32(a[i], _mm256_madd_epi16(x, w));
        __asm__ volatile("" : "+x"(x));
    }
    __m256i s = a[0];
    for (int i = 1; i < 12; i++) s = _mm256_add_epi32(s, a[i]);
    int32_t r[8];
    _mm256_storeu_si256((__m256i *)r, s);
    *sink = (int32_t)((uint32_t)*sink + (uint32_t)r[0]); /* wraps: only keeps the loop alive */
    return (double)iters * 12 * 16;
}

/* 12 independent vpdpbusd chains in named registers (an array stays in memory here): 32
 * int8 MACs each. On this Zen 5 the probe reaches about 1 vpdpbusd ymm per cycle while the
 * GEMM tile (loads interleaved) gets about 1.35: the probe is a lower bound here. */
#define VN_ALL(OP) OP(0) OP(1) OP(2) OP(3) OP(4) OP(5) OP(6) OP(7) OP(8) OP(9) OP(10) OP(11)
__attribute__((target("avx2,fma,avxvnni"))) double spq_peak_avxvnni(long iters, int32_t *sink)
{
    __m256i x = _mm256_set1_epi8(3), w = _mm256_set1_epi8(5);
#define VN_INIT(i) __m256i a##i = _mm256_set1_epi32(i);
#define VN_STEP(i) a##i = _mm256_dpbusd_avx_epi32(a##i, x, w);
#define VN_SUM(i) s = _mm256_add_epi32(s, a##i);
    VN_ALL(VN_INIT)
    for (long it = 0; it < iters; it++) {
        VN_ALL(VN_STEP)
    }
    __m256i s = _mm256_setzero_si256();
    VN_ALL(VN_SUM)
    int32_t r[8];
    _mm256_storeu_si256((__m256i *)r, s);
    *sink = (int32_t)((uint32_t)*sink + (uint32_t)r[0]); /* wraps: only keeps the loop alive */
    return (double)iters * 12 * 32;
}

/* 16 independent vpdpbusd chains: enough to cover latency x throughput */
__attribute__((target("avx512f,avx512bw,avx512vnni"))) double spq_peak_avx512(long iters, int32_t *sink)
{
    __m512i a[16], x = _mm512_set1_epi32(0x01020304), w = _mm512_set1_epi32(0x05060708);
    for (int i = 0; i < 16; i++) a[i] = _mm512_set1_epi32(i);
    for (long it = 0; it < iters; it++) {
        for (int i = 0; i < 16; i++) a[i] = _mm512_dpbusd_epi32(a[i], x, w);
        __asm__ volatile("" : "+v"(x)); /* keep the loop from being folded */
    }
    __m512i s = a[0];
    for (int i = 1; i < 16; i++) s = _mm512_add_epi32(s, a[i]);
    /* the accumulators wrap; so does this sum (unsigned), which only keeps the loop alive
     * (_mm512_reduce_add_epi32 adds in signed int: overflow, as UBSan found) */
    uint32_t r[16], t = (uint32_t)*sink;
    _mm512_storeu_si512(r, s);
    for (int i = 0; i < 16; i++) t += r[i];
    *sink = (int32_t)t;
    return (double)iters * 16 * 64;
}
#else
double spq_peak_avx2(long iters, int32_t *sink) { return spq_peak_scalar(iters, sink); }
double spq_peak_avxvnni(long iters, int32_t *sink) { return spq_peak_scalar(iters, sink); }
double spq_peak_avx512(long iters, int32_t *sink) { return spq_peak_scalar(iters, sink); }
#endif
