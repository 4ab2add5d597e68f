/* test_kernels.c — every SIMD table against the scalar reference on edge shapes:
 * INT8 GEMMs bit for bit, float GEMMs to 1e-5 relative (FMA and order differ),
 * FP8/FP16 conversions over all codes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void)
{
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 32);
}

static const int shapes[][3] = { /* M, N, K */
    {1, 16, 4}, {1, 1, 1}, {1, 17, 5}, {3, 33, 67}, {4, 64, 64}, {5, 71, 130},
    {1, 129, 2051}, {7, 100, 257}, {9, 48, 1000}, {1, 8, 14336}, {2, 3, 14336},
    {1, 40, 27}, {1, 100, 2060}, /* M = 1 with 3 panels in a block; 3 and 0 tail k-quads */
};
#define NSHAPES (int)(sizeof shapes / sizeof shapes[0])

static void check_q8(const spq_kernels *kt, int M, int N, int K, int mode)
{
    const spq_kernels *ref = spq_kernels_scalar();
    int kp = spq_kpad(K);
    int8_t *w = malloc((size_t)N * K), *x = calloc((size_t)M * kp, 1);
    int8_t *wp = malloc(spq_pack_q8_size(N, K));
    int32_t *ws = malloc(sizeof(int32_t) * (size_t)((N + 15) / 16 * 16));
    float *y0 = calloc((size_t)M * N, 4), *y1 = calloc((size_t)M * N, 4);
    for (int i = 0; i < N * K; i++)
        w[i] = mode == 0 ? (int8_t)(rnd() & 0xff) : mode == 1 ? (int8_t)((rnd() & 1) ? 127 : -128) : -127;
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++)
            x[(size_t)m * kp + k] = mode == 0 ? (int8_t)(rnd() & 0xff) : mode == 1 ? (int8_t)((rnd() & 1) ? 127 : -128) : -127;
    spq_pack_q8(w, N, K, wp, ws);
    float scale = 0.0123f;
    ref->gemm_q8(M, N, kp, 0, N, x, wp, ws, scale, y0, N);
    spq_gemm_q8(kt, M, N, K, x, wp, ws, scale, y1, N);
    /* the reference is itself checked against a plain row-major dot product */
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            int32_t acc = 0;
            for (int k = 0; k < K; k++) acc += x[(size_t)m * kp + k] * w[(size_t)n * K + k];
            assert_true((float)acc * scale == y0[(size_t)m * N + n]);
        }
    if (memcmp(y0, y1, sizeof(float) * (size_t)M * N)) {
        fprintf(stderr, "%s q8 M=%d N=%d K=%d mode=%d differs\n", kt->name, M, N, K, mode);
        fail();
    }
    /* column ranges that start and end inside a 64-column block (the driver deals whole
     * blocks; the kernel contract allows any multiple of 16) */
    int cut = N > 48 ? 48 : N / 16 * 16;
    memset(y1, 0, sizeof(float) * (size_t)M * N);
    kt->gemm_q8(M, N, kp, 0, cut, x, wp, ws, scale, y1, N);
    kt->gemm_q8(M, N, kp, cut, N, x, wp, ws, scale, y1, N);
    if (memcmp(y0, y1, sizeof(float) * (size_t)M * N)) {
        fprintf(stderr, "%s q8 M=%d N=%d K=%d mode=%d split at %d differs\n", kt->name, M, N, K, mode, cut);
        fail();
    }
    /* the decode GEMV over panels spread across the matrix: the driver's lanes (item i:
     * panels i, i + Q, i + 2Q, i + 3Q with Q = ceil(panels / 4)) and a stride of 3 */
    int np = (N + SPQ_NR - 1) / SPQ_NR;
    for (int st = 0; ((M == 1 && kt->gemv_q8) || (M > 1 && M <= 8 && kt->gemm_q8_lanes)) && st < 2; st++) {
        int Q = st ? 3 : (np + 3) / 4, span = st ? 4 * Q : Q; /* items start in [0, Q) of each span */
        memset(y1, 0, sizeof(float) * (size_t)M * N);
        for (int b = 0; b < np; b += span)
            for (int p0 = b; p0 < b + Q && p0 < np; p0++) {
                int nv = (np - 1 - p0) / Q + 1;
                if (M == 1) kt->gemv_q8(N, kp, p0, nv > 4 ? 4 : nv, Q, x, wp, ws, scale, y1);
                else kt->gemm_q8_lanes(M, N, kp, p0, nv > 4 ? 4 : nv, Q, x, wp, ws, scale, y1, N);
            }
        if (memcmp(y0, y1, sizeof(float) * (size_t)M * N)) {
            fprintf(stderr, "%s %s M=%d N=%d K=%d mode=%d stride %d differs\n", kt->name, M == 1 ? "gemv_q8" : "gemm_q8_lanes",
                    M, N, K, mode, Q);
            fail();
        }
    }
    free(w); free(x); free(wp); free(ws); free(y0); free(y1);
}

static float frand(void) { return (float)((int)(rnd() % 20001) - 10000) / 10000.0f; }

/* y1 equals y0 within 1e-5 of sum |x||w|: the scale of rounding error in any order */
static void check_close(const spq_kernels *kt, int M, int N, int K, int which, const float *x, int ldx,
                        const float *wf, const float *y0, const float *y1)
{
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += fabs(x[(size_t)m * ldx + k] * wf[(size_t)n * K + k]);
            double d = fabs((double)y0[(size_t)m * N + n] - y1[(size_t)m * N + n]);
            if (d > 1e-5 * s + 1e-30) {
                fprintf(stderr, "%s float%d M=%d N=%d K=%d: %g vs %g (s=%g)\n", kt->name, which, M, N,
                        K, y0[(size_t)m * N + n], y1[(size_t)m * N + n], s);
                fail();
            }
        }
}

static void check_float(const spq_kernels *kt, int M, int N, int K, int which)
{
    const spq_kernels *ref = spq_kernels_scalar();
    int kp = spq_kpad(K);
    float *wf = malloc(sizeof(float) * (size_t)N * K), *x = calloc((size_t)M * kp, 4);
    uint16_t *wh = malloc(2 * (size_t)N * K), *wb = malloc(2 * (size_t)N * K);
    uint8_t *w8 = malloc((size_t)N * K);
    void *wp = malloc(spq_pack_f_size(N, K, 4) + spq_pack_q8_size(N, K));
    float *y0 = calloc((size_t)M * N, 4), *y1 = calloc((size_t)M * N, 4), *yabs = calloc((size_t)M * N, 4);
    for (int i = 0; i < N * K; i++) {
        wf[i] = frand();
        wh[i] = spq_f32_to_f16(wf[i]);
        wb[i] = spq_f32_to_bf16(wf[i]);
        w8[i] = spq_f32_to_e4m3(wf[i] * 400.0f);
    }
    int ldx = which == 2 ? kp : K;
    for (int m = 0; m < M; m++)
        for (int k = 0; k < K; k++) x[(size_t)m * ldx + k] = frand();
    if (which == 0) {
        spq_pack_f(wf, N, K, 4, wp);
        ref->gemm_f32(M, N, K, 0, N, x, wp, y0, N);
        spq_gemm_f32(kt, M, N, K, x, wp, y1, N);
    } else if (which == 1) {
        spq_pack_f(wh, N, K, 2, wp);
        ref->gemm_f16(M, N, K, 0, N, x, wp, y0, N);
        spq_gemm_f16(kt, M, N, K, x, wp, y1, N);
    } else if (which == 3) { /* a table with vdpbf16ps rounds x to BF16: the reference too */
        spq_pack_f(wb, N, K, 2, wp);
        float *xr = malloc(sizeof(float) * (size_t)M * K);
        for (size_t i = 0; i < (size_t)M * K; i++) xr[i] = kt->bf16_rounds_x ? spq_bf16_to_f32(spq_f32_to_bf16(x[i])) : x[i];
        ref->gemm_bf16(M, N, K, 0, N, xr, wp, y0, N);
        spq_gemm_bf16(kt, M, N, K, x, wp, y1, N);
        free(xr);
    } else {
        spq_pack_fp8(w8, N, K, wp);
        ref->gemm_e4m3(M, N, kp, 0, N, x, wp, 1.0f / 400.0f, y0, N);
        int cut = N > 48 ? 48 : N / 16 * 16; /* as in check_q8: ranges inside a block */
        kt->gemm_e4m3(M, N, kp, 0, cut, x, wp, 1.0f / 400.0f, y1, N);
        kt->gemm_e4m3(M, N, kp, cut, N, x, wp, 1.0f / 400.0f, yabs, N);
        for (int m = 0; m < M; m++)
            for (int n = cut; n < N; n++) y1[(size_t)m * N + n] = yabs[(size_t)m * N + n];
        check_close(kt, M, N, K, which, x, ldx, wf, y0, y1);
        spq_gemm_e4m3(kt, M, N, K, x, wp, 1.0f / 400.0f, y1, N);
    }
    check_close(kt, M, N, K, which, x, ldx, wf, y0, y1);
    free(wf); free(x); free(wh); free(wb); free(w8); free(wp); free(y0); free(y1); free(yabs);
}

static void for_each_isa(void (*fn)(const spq_kernels *))
{
    const char *names[8];
    int n = spq_kern_available(names, 8);
    for (int i = 0; i < n; i++) {
        fprintf(stderr, "  isa %s\n", names[i]);
        fn(spq_kern_get(names[i]));
    }
}

static void q8_all(const spq_kernels *kt)
{
    for (int s = 0; s < NSHAPES; s++)
        for (int mode = 0; mode < 3; mode++) check_q8(kt, shapes[s][0], shapes[s][1], shapes[s][2], mode);
    check_q8(kt, 33, 130, 300, 0); /* several full 4x4 register tiles plus tails */
    for (int M = 2; M <= 8; M++) check_q8(kt, M, 200, 1100, M % 3); /* batched decode: lanes, k chunks plus a tail */
}
static void f_all(const spq_kernels *kt)
{
    for (int s = 0; s < NSHAPES; s++)
        for (int w = 0; w < 4; w++) check_float(kt, shapes[s][0], shapes[s][1], shapes[s][2], w);
}

/* CMPQ integer product: codes packed by spq_pack_cmpq read back by spq_cmpq_code; the
 * scalar kernel equals a plain per-block integer sum (one fmaf per block) over the
 * dequantised levels; every SIMD table equals the scalar one bit for bit, for M = 1..6 and
 * 8..13 tokens and the panels split as a threaded driver would. Per-column tables (ts 16, b <= 4)
 * and one shared table (ts 0); all-ones codes in row 0 (every plane bit set). */
static void check_cmpq(const spq_kernels *kt, int N, int kc, int b, int ts, int M)
{
    const spq_kernels *ref = spq_kernels_scalar();
    int kp = (kc + SPQ_CMPQ_BLK - 1) / SPQ_CMPQ_BLK * SPQ_CMPQ_BLK, np = (N + 15) / 16, nb = kp / SPQ_CMPQ_BLK;
    size_t pb = spq_cmpq_panel_bytes(b, kp);
    uint8_t *c = malloc((size_t)N * kc + 1), *pk = malloc(pb * (size_t)np + 64), *tab = malloc((size_t)kp * 16 + 64);
    int8_t *xq = calloc((size_t)M * kp + 1, 1);
    float *xd = calloc((size_t)M * nb + 1, 4), *a0 = calloc((size_t)M * np * 16, 4), *a1 = calloc((size_t)M * np * 16, 4);
    int32_t *xs = calloc((size_t)M * nb + 1, 4);
    for (int i = 0; i < N * kc; i++) {
        c[i] = (uint8_t)(rnd() & ((1u << b) - 1u));
        if (b == 8 && c[i] == 0x80) c[i] = 0x81; /* -128 is not a level */
    }
    for (int k = 0; k < kc && N > 0; k++) c[k] = (uint8_t)(b == 8 ? 0x7f : (1u << b) - 1u);
    for (int i = 0; i < kp * 16 + 64; i++) tab[i] = (uint8_t)(1 + rnd() % 255);
    for (int i = 0; i < (ts ? kp * 16 : 64) && b < 8; i++) /* entry i = level (i mod 2^b) within each table */
        if (i % (ts ? 16 : 64) >= 1 << b) tab[i] = tab[i - (1 << b)];
    for (int m = 0; m < M; m++) {
        for (int k = 0; k < kc; k++) xq[(size_t)m * kp + k] = (int8_t)(rnd() % 255 - 127);
        for (int o = 0; o < nb; o++) {
            xd[m * nb + o] = 0.001f * (float)(1 + rnd() % 1000);
            for (int i = 0; i < SPQ_CMPQ_BLK; i++) xs[m * nb + o] += xq[(size_t)m * kp + o * SPQ_CMPQ_BLK + i];
        }
    }
    spq_pack_cmpq(c, N, kc, b, kp, pk);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < kp; k++)
            assert_int_equal(spq_cmpq_code(pk + (size_t)(n / 16) * pb, b, k, n % 16), k < kc ? c[(size_t)n * kc + k] : 0);
    for (int i = 0; i < M * np * 16; i++) a0[i] = a1[i] = 0.5f; /* the kernels accumulate */
    ref->cmpq_dot(b, kp, np, pk, pb, tab, ts, M, xq, kp, xd, xs, nb, a0, np * 16);
    int p1 = np > 5 ? 5 : np > 1 ? 1 : np; /* [0, p1) then [p1, np) */
    kt->cmpq_dot(b, kp, p1, pk, pb, tab, ts, M, xq, kp, xd, xs, nb, a1, np * 16);
    if (np > p1) kt->cmpq_dot(b, kp, np - p1, pk + p1 * pb, pb, tab, ts, M, xq, kp, xd, xs, nb, a1 + 16 * p1, np * 16);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            float plain = 0.5f;
            for (int o = 0; o < nb; o++) {
                int32_t A = 0;
                for (int i = 0; i < SPQ_CMPQ_BLK; i++) {
                    int k = o * SPQ_CMPQ_BLK + i;
                    unsigned q = k < kc ? c[(size_t)n * kc + k] : 0;
                    int lev = b == 8 ? (int)(q ^ 0x80) : tab[(size_t)k * (size_t)ts + q];
                    A += lev * xq[(size_t)m * kp + k];
                }
                plain = fmaf(xd[m * nb + o], (float)A, plain);
            }
            float r = a0[(size_t)m * np * 16 + n], v = a1[(size_t)m * np * 16 + n];
            if (r != plain || v != r) {
                fprintf(stderr, "%s cmpq b=%d ts=%d N=%d kc=%d M=%d token %d row %d: plain %.9g scalar %.9g simd %.9g\n",
                        kt->name, b, ts, N, kc, M, m, n, plain, r, v);
                fail();
            }
        }
    free(c); free(pk); free(tab); free(xq); free(xd); free(xs); free(a0); free(a1);
}

static void cmpq_all(const spq_kernels *kt)
{
    static const int Ns[] = {1, 16, 17, 64, 71, 129}, Ks[] = {1, 31, 33, 100, 257};
    for (int c = 0; c < 6; c++) {
        int b = (int[]){2, 3, 4, 5, 6, 8}[c];
        for (int i = 0; i < 6; i++)
            for (int j = 0; j < 5; j++)
                for (int ts = 0; ts <= (b <= 4 ? 16 : 0); ts += 16) {
                    for (int M = 1; M <= 6; M += (i + j) % 2 ? 1 : 5) check_cmpq(kt, Ns[i], Ks[j], b, ts, M);
                    check_cmpq(kt, Ns[i], Ks[j], b, ts, 8 + (i + j + c) % 6); /* 8-token tiles (3, 5, 6 bits) */
                }
    }
}

/* cmpq_quant and cmpq_outliers against plain code and the scalar reference: gathered,
 * scaled blocks with a zero block, a block whose absmax lands on a rounding tie, padding
 * columns (src 0, scale 0); outlier slots with padding and FP16 residuals down to subnormals. */
static void cmpq_io_all(const spq_kernels *kt)
{
    const spq_kernels *ref = spq_kernels_scalar();
    enum { NB = 7, K = 300 };
    float x[K], sc[NB * 32], xd0[NB], xd1[NB];
    int32_t src[NB * 32], xs0[NB], xs1[NB];
    int8_t q0[NB * 32], q1[NB * 32];
    for (int i = 0; i < K; i++) x[i] = frand() * 4.0f;
    for (int i = 0; i < NB * 32; i++) {
        src[i] = (int)(rnd() % K);
        sc[i] = 0.5f + (float)(rnd() % 1000) / 1000.0f;
    }
    for (int i = 32; i < 64; i++) sc[i] = 0.0f;           /* block 1: all zero */
    for (int i = NB * 32 - 5; i < NB * 32; i++) src[i] = 0, sc[i] = 0.0f; /* padding */
    x[src[64]] = 2.0f; sc[64] = 1.0f; x[src[65]] = 2.5f * (2.0f / 127.0f); sc[65] = 1.0f; /* an exact tie */
    for (int i = 66; i < 96; i++) sc[i] = 0.001f;
    ref->cmpq_quant(NB, x, src, sc, q0, xd0, xs0);
    kt->cmpq_quant(NB, x, src, sc, q1, xd1, xs1);
    assert_memory_equal(q0, q1, sizeof q0);
    assert_memory_equal(xd0, xd1, sizeof xd0);
    assert_memory_equal(xs0, xs1, sizeof xs0);
    for (int o = 0; o < NB; o++) {
        float a = 0;
        for (int i = 0; i < 32; i++) a = fmaxf(a, fabsf(x[src[32 * o + i]] * sc[32 * o + i]));
        int32_t sum = 0;
        for (int i = 0; i < 32; i++) {
            float v = a > 0 ? nearbyintf(x[src[32 * o + i]] * sc[32 * o + i] * (127.0f / a)) : 0.0f;
            assert_int_equal(q0[32 * o + i], (int)fmaxf(-127.0f, fminf(127.0f, v)));
            sum += q0[32 * o + i];
        }
        assert_true(xd0[o] == a / 127.0f);
        assert_int_equal(xs0[o], sum);
    }
    assert_int_equal(q0[65], 2); /* 2.5 rounds to even */
    assert_int_equal(xs0[1], 0);
    for (int n = 0; n <= 9; n += 3) {
        uint16_t slot[9 * 32];
        for (int i = 0; i < 9 * 32; i++)
            slot[i] = i % 32 < 16 ? (uint16_t)(rnd() % 20) : spq_f32_to_f16(frand() * (i % 7 ? 1.0f : 1e-6f));
        for (int j = 0; j < 16; j += 5) slot[32 + j] = 0, slot[48 + j] = 0; /* padding */
        for (int T = 1; T <= 16; T += 15) { /* one token; 16 (x: 20 columns of 16 tokens) */
            float s0[256], s1[256], want[256], xt[16 * 20];
            for (int i = 0; i < 16 * 20; i++) xt[i] = frand();
            const float *xin = T == 1 ? x : xt;
            for (int j = 0; j < 16 * T; j++) s0[j] = s1[j] = want[j] = frand();
            ref->cmpq_outliers(n, slot, xin, T, s0);
            kt->cmpq_outliers(n, slot, xin, T, s1);
            for (int k = 0; k < n; k++)
                for (int j = 0; j < 16; j++)
                    for (int i = 0; i < T; i++) {
                        volatile float p = xin[T * slot[32 * k + j] + i] * spq_f16_to_f32(slot[32 * k + 16 + j]);
                        want[T * j + i] += p;
                    }
            assert_memory_equal(s0, want, sizeof(float) * 16 * (size_t)T);
            assert_memory_equal(s1, want, sizeof(float) * 16 * (size_t)T);
        }
    }
}

/* One call of the attention kernel vs a double-precision softmax(q K^T) V, and the ISA vs
 * the scalar reference; q and o rows are hd apart, keys transposed with ldk > T. half: the
 * cache in IEEE half (attn_h; values made exact in half, so the reference is the same). */
static void check_attn(const spq_kernels *kt, int nq, int hd, int T, int half)
{
    const spq_kernels *ref = spq_kernels_scalar();
    int ldk = T + 5, ldv = hd + 3;
    float *q = malloc(sizeof(float) * (size_t)nq * hd), *k = malloc(sizeof(float) * (size_t)hd * ldk);
    float *v = malloc(sizeof(float) * (size_t)T * ldv), *s = malloc(sizeof(float) * (size_t)nq * T);
    float *o0 = malloc(sizeof(float) * (size_t)nq * hd), *o1 = malloc(sizeof(float) * (size_t)nq * hd);
    double *p = malloc(sizeof(double) * (size_t)T);
    float scale = 3.0f / sqrtf((float)hd); /* peaky rows: the max subtraction matters */
    for (int i = 0; i < nq * hd; i++) q[i] = frand();
    uint16_t *kh = malloc(2 * (size_t)hd * ldk), *vh = malloc(2 * (size_t)T * ldv);
    for (int i = 0; i < hd * ldk; i++) k[i] = spq_f16_to_f32(kh[i] = spq_f32_to_f16(frand()));
    for (int i = 0; i < T * ldv; i++) v[i] = spq_f16_to_f32(vh[i] = spq_f32_to_f16(frand()));
    if (half) {
        ref->attn_h(nq, hd, T, scale, q, kh, ldk, vh, ldv, s, o0);
        kt->attn_h(nq, hd, T, scale, q, kh, ldk, vh, ldv, s, o1);
    } else {
        ref->attn(nq, hd, T, scale, q, k, ldk, v, ldv, s, o0);
        kt->attn(nq, hd, T, scale, q, k, ldk, v, ldv, s, o1);
    }
    for (int h = 0; h < nq; h++) {
        double mx = -1e300, sum = 0;
        for (int t = 0; t < T; t++) {
            double a = 0;
            for (int d = 0; d < hd; d++) a += (double)q[h * hd + d] * k[(size_t)d * ldk + t];
            p[t] = a * scale;
            mx = p[t] > mx ? p[t] : mx;
        }
        for (int t = 0; t < T; t++) sum += p[t] = exp(p[t] - mx);
        for (int j = 0; j < hd; j++) {
            double want = 0;
            for (int t = 0; t < T; t++) want += p[t] / sum * v[(size_t)t * ldv + j];
            float a = o0[h * hd + j], b = o1[h * hd + j];
            if (fabs(a - want) > 1e-5 || fabsf(a - b) > 1e-5f) {
                fprintf(stderr, "%s attn%s nq=%d hd=%d T=%d h=%d j=%d: exact %g scalar %g simd %g\n", kt->name,
                        half ? "_h" : "", nq, hd, T, h, j, want, a, b);
                fail();
            }
        }
    }
    free(q); free(k); free(v); free(s); free(o0); free(o1); free(p); free(kh); free(vh);
}

static void attn_all(const spq_kernels *kt)
{
    static const int nqs[] = {1, 3, 4, 5, 8}, hds[] = {2, 6, 8, 64, 70, 128}, Ts[] = {1, 3, 15, 16, 17, 64, 65, 130};
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 6; j++)
            for (int t = 0; t < 8; t++)
                for (int half = 0; half < 2; half++) check_attn(kt, nqs[i], hds[j], Ts[t], half);
}

/* The threaded driver: several GEMMs on one input in one region, each thread's contiguous
 * range then stealing from the others, for thread counts that do not divide the blocks:
 * every output equals the scalar reference bit for bit. */
static void test_gemm_driver(void **st)
{
    (void)st;
    const spq_kernels *ref = spq_kernels_scalar(), *kt = spq_kern();
    enum { K = 700, NM = 3 };
    static const int Ns[NM] = {1000, 64, 333};
    int kp = spq_kpad(K);
    int8_t *w[NM], *wp[NM];
    int32_t *ws[NM];
    float *y0[NM], *y1[NM];
    int8_t *x = calloc((size_t)5 * kp, 1);
#ifdef _OPENMP
    int max_threads = omp_get_max_threads();
#endif
    for (int i = 0; i < 5 * kp; i++) x[i] = (int8_t)(i % kp < K ? rnd() & 0xff : 0);
    for (int i = 0; i < NM; i++) {
        w[i] = malloc((size_t)Ns[i] * K);
        wp[i] = malloc(spq_pack_q8_size(Ns[i], K));
        ws[i] = malloc(sizeof(int32_t) * (size_t)((Ns[i] + 15) / 16 * 16));
        y0[i] = malloc(sizeof(float) * 5 * (size_t)Ns[i]);
        y1[i] = malloc(sizeof(float) * 5 * (size_t)Ns[i]);
        for (int j = 0; j < Ns[i] * K; j++) w[i][j] = (int8_t)(rnd() & 0xff);
        spq_pack_q8(w[i], Ns[i], K, wp[i], ws[i]);
    }
    static const int threads[] = {1, 2, 3, 5, 8};
    int nthr = 5;
#ifdef _OPENMP
    if (omp_get_max_threads() == 1) nthr = 1; /* OMP_NUM_THREADS=1: under qemu-user libgomp's workers hang */
#endif
    for (int ti = 0; ti < nthr; ti++) {
#ifdef _OPENMP
        omp_set_num_threads(threads[ti]);
#endif
        for (int M = 1; M <= 5; M += 4) {
            spq_gemm_out outs[NM];
            for (int i = 0; i < NM; i++) {
                ref->gemm_q8(M, Ns[i], kp, 0, Ns[i], x, wp[i], ws[i], 0.5f + (float)i, y0[i], Ns[i]);
                memset(y1[i], 0xff, sizeof(float) * (size_t)M * Ns[i]);
                outs[i] = (spq_gemm_out){Ns[i], wp[i], ws[i], 0.5f + (float)i, y1[i], Ns[i]};
            }
            spq_gemm_q8_n(kt, M, K, x, outs, NM);
            for (int i = 0; i < NM; i++)
                if (memcmp(y0[i], y1[i], sizeof(float) * (size_t)M * Ns[i])) {
                    fprintf(stderr, "%s driver: %d threads M=%d matrix %d differs\n", kt->name, threads[ti], M, i);
                    fail();
                }
        }
    }
#ifdef _OPENMP
    omp_set_num_threads(max_threads);
#endif
    for (int i = 0; i < NM; i++) { free(w[i]); free(wp[i]); free(ws[i]); free(y0[i]); free(y1[i]); }
    free(x);
}

/* ggml's block formats: random blocks (their halves finite and of a sane size), activations
 * with zero blocks and exact ties; every ISA's gq_quant bytes and gq_dot floats equal the
 * scalar reference's, for 1..9 activation rows (tails of the 4-row groups), odd block counts
 * and a short last item. */
static void gq_fill(int g, uint8_t *w, size_t n)
{
    static const int half_at[SPQ_GQ_N][2] = {
        [SPQ_GQ_Q4_0] = {0, -1}, [SPQ_GQ_Q4_1] = {0, 2},  [SPQ_GQ_Q5_0] = {0, -1},   [SPQ_GQ_Q5_1] = {0, 2},
        [SPQ_GQ_Q8_0] = {0, -1}, [SPQ_GQ_IQ4_NL] = {0, -1}, [SPQ_GQ_Q2_K] = {80, 82}, [SPQ_GQ_Q3_K] = {108, -1},
        [SPQ_GQ_Q4_K] = {0, 2},  [SPQ_GQ_Q5_K] = {0, 2},  [SPQ_GQ_Q6_K] = {208, -1}, [SPQ_GQ_IQ4_XS] = {0, -1},
    };
    size_t bb = spq_gq_block_bytes(g);
    for (size_t i = 0; i < n; i++) w[i] = (uint8_t)rnd();
    for (size_t b = 0; b < n / bb; b++)
        for (int j = 0; j < 2; j++)
            if (half_at[g][j] >= 0) {
                uint16_t h = spq_f32_to_f16(frand() * 0.01f);
                memcpy(w + b * bb + half_at[g][j], &h, 2);
            }
}

static void gq_all(const spq_kernels *kt)
{
    const spq_kernels *ref = spq_kernels_scalar();
    static const int Ks[] = {256, 768, 2816};
    for (int g = 0; g < SPQ_GQ_N; g++)
        for (int ki = 0; ki < 3; ki++) {
            int K = Ks[ki] + (spq_gq_block(g) == 32 && ki == 1 ? 32 : 0), qb = spq_gq_act_block(g), M = 9, N = 19;
            size_t rb = spq_gq_row_bytes(g, K), lda = spq_gq_act_bytes(qb, K);
            uint8_t *w = malloc(rb * N), *a0 = malloc(lda * M), *a1 = malloc(lda * M);
            float *x = malloc(sizeof(float) * (size_t)K * M), *y0 = malloc(sizeof(float) * M * N), *y1 = malloc(sizeof(float) * M * N);
            gq_fill(g, w, rb * N);
            for (int i = 0; i < K * M; i++) x[i] = frand() * (i % 97 == 0 ? 40.0f : 2.0f);
            for (int i = 0; i < 32; i++) x[K + i] = 0; /* row 1: a zero block */
            x[2 * K] = 1.0f; x[2 * K + 1] = 0.5f * (1.0f / 127.0f); /* row 2: a tie at half a step */
            memset(a0, 0, lda * M); memset(a1, 0, lda * M);
            for (int m = 0; m < M; m++) {
                ref->gq_quant(qb, K, x + (size_t)m * K, a0 + (size_t)m * lda);
                kt->gq_quant(qb, K, x + (size_t)m * K, a1 + (size_t)m * lda);
            }
            assert_memory_equal(a0, a1, lda * M);
            for (int Mi = 1; Mi <= M; Mi += 4) {
                ref->gq_dot(g, K, N, w, rb, Mi, a0, lda, y0, N);
                kt->gq_dot(g, K, N, w, rb, Mi, a0, lda, y1, N);
                for (int i = 0; i < Mi * N; i++)
                    if (memcmp(&y0[i], &y1[i], 4)) {
                        fprintf(stderr, "%s format %d K %d M %d: out %d is %.9g, the reference %.9g\n", kt->name, g, K, Mi, i,
                                (double)y1[i], (double)y0[i]);
                        fail();
                    }
            }
            if (spq_gq_r8(g) && K % 256 == 0) { /* the 8-row layout of rows 0..15: the row reference's bits */
                size_t gb = spq_gq_r8_bytes(g, K);
                uint8_t *p8 = aligned_alloc(64, 2 * gb);
                spq_gq_pack_r8(g, K, w, rb, p8);
                spq_gq_pack_r8(g, K, w + 8 * rb, rb, p8 + gb);
                for (int Mi = 1; Mi <= M; Mi += 4) {
                    ref->gq_dot(g, K, 16, w, rb, Mi, a0, lda, y0, N);
                    kt->gq_dot_r8(g, K, 2, p8, Mi, a0, lda, y1, N);
                    for (int m = 0; m < Mi; m++)
                        if (memcmp(y0 + m * N, y1 + m * N, 16 * sizeof(float))) {
                            fprintf(stderr, "%s format %d K %d M %d: 8-row layout differs in row %d\n", kt->name, g, K, Mi, m);
                            fail();
                        }
                }
                free(p8);
            }
            kt->gq_dot(g, K, 3, w + rb * 16, rb, 2, a0, lda, y1, N); /* a short item */
            ref->gq_dot(g, K, 3, w + rb * 16, rb, 2, a0, lda, y0, N);
            for (int m = 0; m < 2; m++) assert_memory_equal(y0 + m * N, y1 + m * N, 3 * sizeof(float));
            free(w); free(a0); free(a1); free(x); free(y0); free(y1);
        }
}
static void test_gq_bitexact(void **st) { (void)st; for_each_isa(gq_all); }

static void test_gemm_q8_bitexact(void **st) { (void)st; for_each_isa(q8_all); }
static void test_cmpq_dot(void **st) { (void)st; for_each_isa(cmpq_all); }
static void test_cmpq_io(void **st) { (void)st; for_each_isa(cmpq_io_all); }
static void test_gemm_float(void **st) { (void)st; for_each_isa(f_all); }
static void test_attn(void **st) { (void)st; for_each_isa(attn_all); }

/* spq_gemm_team_hint names the first weights a thread runs: the start of its even share
 * of the job's items, to the end of that matrix or of the share (worked by hand: 16 + 1 + 6
 * = 23 items here), and nothing for a thread that runs none; in decode INT8 jobs the same
 * stretch of each of the four quarters of the matrix (panels of 16 x 700 = 11200 bytes; the
 * 63 panels of matrix 0 in quarters of 16), elsewhere blocks of 64 columns; a thread
 * waiting at spq_team_sync fetches its hint. */
static void test_gemm_hint(void **st)
{
    (void)st;
    enum { K = 700, PS = 16 * K };
    static int8_t w0[2 * 1000 * K], w1[64 * K], w2[333 * K]; /* w0: room for F16 */
    spq_gemm_out outs[3] = {{1000, w0, NULL, 1, NULL, 0}, {64, w1, NULL, 1, NULL, 0}, {333, w2, NULL, 1, NULL, 0}};
    static const struct { int nt, id, M; const void *p; size_t len, stride; int lanes; } want[] = {
        {2, 0, 1, w0, 12 * PS, 16 * PS, 4},         /* items 0..11: panels 0-11, 16-27, 32-43, 48-59 */
        {2, 1, 1, w0 + 12 * PS, 3 * PS, 16 * PS, 4}, /* items 12..15 (to matrix 1): the last quarter ends at 63 */
        {3, 1, 1, w0 + 8 * PS, 7 * PS, 16 * PS, 4},  /* items 8..15 */
        {3, 2, 1, w1, PS, PS, 4},                    /* matrix 1 (item 16): its 4 panels, one per quarter */
        {2, 0, 9, w0, 768 * K, 0, 1},                /* M = 9: blocks 0..11 */
        {2, 1, 9, w0 + 768 * K, 232 * K, 0, 1},      /* blocks 12..22: to the end of matrix 0 (col 1000) */
        {3, 2, 9, w1, 64 * K, 0, 1},                 /* blocks 16..22: matrix 1 is block 16 */
    };
    spq_team tm;
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        spq_team_init(&tm, want[i].nt, spq_kern());
        spq_thr t = {&tm, want[i].id, want[i].nt};
        spq_gemm_team_hint(&t, SPQ_GEMM_Q8, want[i].M, K, outs, 3);
        assert_int_equal(atomic_load(&tm.hint[t.id].left), 0); /* hint_max 0: hints off */
        tm.hint_max = (size_t)1 << 30;
        spq_gemm_team_hint(&t, SPQ_GEMM_Q8, want[i].M, K, outs, 3);
        assert_ptr_equal(tm.hint[t.id].p, want[i].p);
        assert_int_equal(atomic_load(&tm.hint[t.id].left), want[i].len);
        assert_int_equal(tm.hint[t.id].lanes, want[i].lanes);
        if (want[i].lanes > 1) assert_int_equal(tm.hint[t.id].stride, want[i].stride);
        tm.hint_max = 4096; /* the cap is over all lanes */
        spq_gemm_team_hint(&t, SPQ_GEMM_Q8, want[i].M, K, outs, 3);
        assert_int_equal(atomic_load(&tm.hint[t.id].left), 4096 / want[i].lanes);
        if (want[i].M == 1 && tm.k->gemm_q8_lanes) { /* batched decode: the same lanes */
            tm.hint_max = (size_t)1 << 30;
            spq_gemm_team_hint(&t, SPQ_GEMM_Q8, 8, K, outs, 3);
            assert_ptr_equal(tm.hint[t.id].p, want[i].p);
            assert_int_equal(atomic_load(&tm.hint[t.id].left), want[i].len);
            assert_int_equal(tm.hint[t.id].lanes, want[i].lanes);
        }
    }
    /* F16 decode: blocks, 2 bytes per weight, K not padded; thread 1 of 2 */
    spq_team_init(&tm, 2, spq_kern());
    tm.hint_max = (size_t)1 << 30;
    spq_thr t1 = {&tm, 1, 2}, t0 = {&tm, 0, 2};
    spq_gemm_team_hint(&t1, SPQ_GEMM_F16, 1, K, outs, 3);
    assert_ptr_equal(tm.hint[1].p, (const char *)w0 + 768 * 2 * K);
    assert_int_equal(tm.hint[1].lanes, 1);
    /* a job too small to share (64 x 700 MACs): thread 0 runs it all, thread 1 nothing */
    spq_gemm_team_hint(&t0, SPQ_GEMM_Q8, 1, K, outs + 1, 1);
    assert_ptr_equal(tm.hint[0].p, w1);
    assert_int_equal(atomic_load(&tm.hint[0].left), PS);
    assert_int_equal(tm.hint[0].lanes, 4);
    spq_gemm_team_hint(&t1, SPQ_GEMM_Q8, 1, K, outs + 1, 1);
    assert_int_equal(atomic_load(&tm.hint[1].left), 0);
#ifdef _OPENMP
    if (omp_get_max_threads() < 2) return; /* OMP_NUM_THREADS=1 (qemu-user) */
    /* thread 1 waits at the barrier until its hint is fetched: thread 0 arrives only then */
    int drained = 0;
    spq_team_init(&tm, 2, spq_kern());
    tm.hint_max = sizeof w0;
#pragma omp parallel num_threads(2)
    {
        spq_thr t = spq_team_member(&tm);
        if (t.nt == 2 && t.id == 1) spq_team_hint(&t, w0, sizeof w0, 0, 1);
#pragma omp barrier
        if (t.nt == 2 && t.id == 0) {
            for (long i = 0; i < 2000000000L && !drained; i++)
                drained = atomic_load(&tm.arrived) == 1 && atomic_load(&tm.hint[1].left) == 0;
        }
        spq_team_sync(&t);
    }
    assert_true(drained);
#endif
}

static void test_act_quant(void **st)
{
    (void)st;
    const char *names[8];
    int n = spq_kern_available(names, 8);
    float x[203];
    for (int i = 0; i < 203; i++) x[i] = frand() * 3.0f;
    x[17] = -7.5f; x[100] = 2.5f * (7.5f / 127.0f); /* exact .5 tie: rounds to even */
    const spq_kernels *ref = spq_kernels_scalar();
    int8_t q0[208], q1[208];
    for (int i = 0; i < n; i++) {
        const spq_kernels *kt = spq_kern_get(names[i]);
        assert_true(kt->absmax(x, 203) == 7.5f);
        ref->quant_i8(x, 203, 208, 127.0f / 7.5f, 127.0f, q0);
        kt->quant_i8(x, 203, 208, 127.0f / 7.5f, 127.0f, q1);
        assert_memory_equal(q0, q1, 208);
        assert_int_equal(q0[17], -127);
        ref->quant_i8(x, 203, 208, 127.0f / 2.0f, 127.0f, q0); /* saturating static scale */
        kt->quant_i8(x, 203, 208, 127.0f / 2.0f, 127.0f, q1);
        assert_memory_equal(q0, q1, 208);
        for (int b = 4; b <= 7; b++) { /* narrower grids: codes stay within +-(2^(b-1) - 1) */
            float qm = (float)((1 << (b - 1)) - 1);
            ref->quant_i8(x, 203, 208, qm / 2.0f, qm, q0);
            kt->quant_i8(x, 203, 208, qm / 2.0f, qm, q1);
            assert_memory_equal(q0, q1, 208);
            int top = 0;
            for (int j = 0; j < 203; j++) top = abs(q0[j]) > top ? abs(q0[j]) : top;
            assert_int_equal(top, (int)qm);
        }
        /* dot product against the reference, n not a multiple of the width */
        float a[75], b[75];
        for (int j = 0; j < 75; j++) { a[j] = frand(); b[j] = frand(); }
        for (int len = 1; len <= 75; len += 7) {
            float d0 = ref->dot_f32(a, b, len), d1 = kt->dot_f32(a, b, len);
            assert_true(fabsf(d0 - d1) <= 1e-5f * (float)len);
        }
        float e[37];
        for (int j = 0; j < 37; j++) e[j] = (float)j / 4.0f - 4.0f;
        kt->vexp(e, 37);
        for (int j = 0; j < 37; j++) assert_true(fabsf(e[j] - expf((float)j / 4.0f - 4.0f)) <= 2e-7f * expf(5));
    }
}

static void test_fp8_codes(void **st)
{
    (void)st;
    int finite = 0;
    for (int c = 0; c < 256; c++) {
        float v = spq_e4m3_to_f32((uint8_t)c);
        if (isnan(v)) { assert_true((c & 0x7f) == 0x7f); continue; }
        finite++;
        uint8_t back = spq_f32_to_e4m3(v);
        if (v == 0.0f) assert_true((back & 0x7f) == 0);
        else assert_int_equal(back, c);
        float w = spq_e5m2_to_f32((uint8_t)c);
        if (isfinite(w) && w != 0.0f) assert_int_equal(spq_f32_to_e5m2(w), c);
    }
    assert_int_equal(finite, 254);
    assert_true(spq_e4m3_to_f32(0x7e) == 448.0f);
    assert_true(spq_e4m3_to_f32(0x01) == 0x1p-9f);
    assert_true(spq_e5m2_to_f32(0x7b) == 57344.0f);
    assert_int_equal(spq_f32_to_e4m3(1e6f), 0x7e);
    assert_int_equal(spq_f32_to_e4m3(-1e6f), 0xfe);
    assert_int_equal(spq_f32_to_e4m3(0x1p-11f), 0x00); /* half the smallest subnormal: tie -> even 0 */
    assert_int_equal(spq_f32_to_e4m3(1.0625f), 0x38); /* tie between 1 and 1.125 -> even (1.0) */
    assert_int_equal(spq_f32_to_e4m3(1.1875f), 0x3a); /* tie between 1.125 and 1.25 -> 1.25 */
    /* f16: every finite code round-trips through f32 */
    for (int h = 0; h < 65536; h++) {
        float v = spq_f16_to_f32((uint16_t)h);
        if (isfinite(v)) assert_int_equal(spq_f32_to_f16(v), h);
    }
    assert_int_equal(spq_f32_to_f16(65520.0f), 0x7c00);
    assert_int_equal(spq_f32_to_f16(1.0f + 0x1p-11f), 0x3c00); /* tie -> even */
    /* bf16: every code that is not a NaN round-trips; ties go to even; NaN stays NaN */
    for (int h = 0; h < 65536; h++) {
        float v = spq_bf16_to_f32((uint16_t)h);
        if (!isnan(v)) assert_int_equal(spq_f32_to_bf16(v), h);
        else assert_true(isnan(spq_bf16_to_f32(spq_f32_to_bf16(v))));
    }
    assert_int_equal(spq_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);           /* tie between 1 and 1 + 2^-7 -> 1 */
    assert_int_equal(spq_f32_to_bf16(1.0f + 0x1p-7f + 0x1p-8f), 0x3f82); /* tie -> the even 1 + 2^-6 */
    assert_int_equal(spq_f32_to_bf16(3.4e38f), 0x7f80);                 /* rounds up to infinity */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gemm_q8_bitexact),
        cmocka_unit_test(test_gemm_float),
        cmocka_unit_test(test_cmpq_dot),
        cmocka_unit_test(test_gq_bitexact),
        cmocka_unit_test(test_cmpq_io),
        cmocka_unit_test(test_attn),
        cmocka_unit_test(test_gemm_driver),
        cmocka_unit_test(test_gemm_hint),
        cmocka_unit_test(test_act_quant),
        cmocka_unit_test(test_fp8_codes),
    };
    return cmocka_run_group_tests_name("kernels", tests, NULL, NULL);
}
