/* test_cmpq.c — the CMPQ quantiser and format: the budget is met from below, error falls
 * as bits rise, channels that carry energy get the bits, the reported loss is the real
 * dequantised error, the integer kernels equal a plain product with the dequantised
 * weights up to the int8 activations' rounding, corrupt blobs are refused, and a quantised
 * model survives .spq. */
#include "tests/helpers.h"

#include <omp.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "runtime/cmpq.h"
#include "quant/cmpq_fit.h"
#include "quant/profiler.h"

enum { N = 100, K = 300 }; /* N not a multiple of 16, K of no class group */

static float W[N * K];
static double H[K];

static void make_weights(void)
{
    for (int k = 0; k < K; k++) {
        float colscale = 0.02f * (1.0f + 3.0f * (float)(k % 7) / 7.0f);
        for (int n = 0; n < N; n++) {
            float g = test_rand() + test_rand() + test_rand(); /* bell-shaped */
            W[(size_t)n * K + k] = colscale * g * (n % 17 == 0 && k % 13 == 0 ? 8.0f : 1.0f);
        }
        H[k] = k % 50 == 3 ? 400.0 : 0.5 + (double)(k % 11) / 11.0; /* six loud channels */
    }
}

/* sum_k h_k sum_n (w - dequant)^2 */
static double weighted_err(const float *dq)
{
    double e = 0;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double d = W[(size_t)n * K + k] - dq[(size_t)n * K + k];
            e += H[k] * d * d;
        }
    return e;
}

/* y = x W^T through spq_cmpq_apply against a plain sum with the dequantised weights: within
 * the activations' rounding (each stored column's x * t is rounded to its block's step
 * d_o = absmax / 127, so row n errs by at most sum_o d_o / 2 sum_j |level(n, j)|) plus
 * float rounding; every row of a batch equals that row alone, on any team size */
static void check_apply(const void *blob, const float *dq, int M)
{
    spq_cmpq_rt r;
    assert_int_equal(spq_cmpq_rt_init(&r, blob), 0);
    float *x = malloc(sizeof(float) * (size_t)M * K), *y = malloc(sizeof(float) * (size_t)M * N);
    float *xs = malloc(sizeof(float) * (size_t)M * (size_t)spq_cmpq_row_scratch(&r));
    for (int i = 0; i < M * K; i++) x[i] = test_rand();
    float *y3 = malloc(sizeof(float) * (size_t)M * N);
    spq_team tm;
    spq_team_init(&tm, 1, spq_kern());
    spq_thr t = spq_team_member(&tm); /* outside a parallel region: a team of one */
    spq_cmpq_apply(&t, &r, x, M, y, xs, NULL);
    /* a team of up to 3 (OMP_NUM_THREADS caps it: 1 under qemu) splits rows and blocks:
     * the same sums */
    int nt = omp_get_max_threads() < 3 ? omp_get_max_threads() : 3;
    spq_team_init(&tm, nt, spq_kern());
#pragma omp parallel num_threads(nt)
    {
        spq_thr t3 = spq_team_member(&tm);
        spq_cmpq_apply(&t3, &r, x, M, y3, xs, &r);
    }
    assert_memory_equal(y, y3, sizeof(float) * (size_t)M * N);
    for (int m = 0; m < M; m++) {
        spq_cmpq_apply(&t, &r, x + (size_t)m * K, 1, y3, xs, NULL);
        assert_memory_equal(y + (size_t)m * N, y3, sizeof(float) * N);
    }
    free(y3);
    for (int m = 0; m < M; m++)
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)m * K;
            double ref = 0, s = 0, bound = 0;
            for (int k = 0; k < K; k++) {
                ref += (double)xr[k] * dq[(size_t)n * K + k];
                s += fabs((double)xr[k] * dq[(size_t)n * K + k]);
            }
            for (int o = 0; o < r.kt / SPQ_CMPQ_BLK; o++) {
                double a = 0, l = 0;
                for (int j = o * SPQ_CMPQ_BLK; j < (o + 1) * SPQ_CMPQ_BLK; j++)
                    if (r.scale[j] > 0) {
                        a = fmax(a, fabs((double)xr[r.src[j]] * r.scale[j]));
                        l += fabs(dq[(size_t)n * K + r.src[j]] / r.scale[j]);
                    }
                bound += a / 127 / 2 * l;
            }
            if (fabs(y[(size_t)m * N + n] - ref) > bound * 1.0001 + 1e-5 * s + 1e-12) {
                fprintf(stderr, "M=%d row %d col %d: %g vs %g (bound %g)\n", M, m, n, y[(size_t)m * N + n], ref, bound);
                fail();
            }
        }
    free(x); free(y); free(xs);
    spq_cmpq_rt_free(&r);
}

static void test_budget_error_kernels(void **st)
{
    (void)st;
    make_weights();
    static const double bits[] = {2.9, 3.0, 3.25, 3.5, 4.0, 5.0, 5.5, 6.0, 6.5, 8.5}; /* 2.88: all at 2 bits */
    double prev = INFINITY;
    float *dq = malloc(sizeof(float) * N * K);
    for (int i = 0; i < (int)(sizeof bits / sizeof bits[0]); i++) {
        spq_cmpq_opts o = {bits[i], 0.004, -1};
        spq_cmpq_stats s;
        spq_err e;
        void *blob;
        size_t nb;
        if (spq_cmpq_quantize(W, N, K, H, &o, &blob, &nb, &s, "test", &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
        spq_cmpq_hdr h;
        assert_null(spq_cmpq_check(blob, nb, N, K, &h));
        /* the budget from below, within one block of the largest step: 32 8-bit columns of
         * 112 padded rows (3584 bytes) */
        double slack = 8.0 * 3584 / ((double)N * K);
        fprintf(stderr, "  --bits %.2f: %.4f bits per weight, classes %u/%u/%u/%u/%u/%u, %u outliers, %s tables, loss %.4g\n",
                bits[i], s.bpw, h.kc[0], h.kc[1], h.kc[2], h.kc[3], h.kc[4], h.kc[5], h.n_out, h.mode ? "shared" : "column",
                s.loss);
        assert_true(s.bpw <= bits[i] + 1e-12);
        assert_true(bits[i] - s.bpw < slack);
        assert_true(fabs(s.bpw - spq_cmpq_bpw(&h)) < 1e-12);
        assert_int_equal(h.n_out, (uint32_t)(0.004 * N * K));
        /* more bits, less error */
        assert_true(s.loss <= prev * (1 + 1e-9));
        prev = s.loss;
        /* the reported loss is the dequantised weights' real error (outliers included) */
        assert_int_equal(spq_cmpq_dequant(blob, dq), 0);
        assert_true(fabs(weighted_err(dq) - s.loss) <= 1e-3 * s.loss + 1e-9);
        /* the loud channels get at least the median channel's bits */
        const uint8_t *map = (const uint8_t *)blob + 48;
        int cnt[SPQ_CMPQ_NCLS] = {0};
        for (int k = 0; k < K; k++) cnt[map[k / 2] >> (4 * (k % 2)) & 15]++;
        int med = 0, acc = 0;
        while (acc + cnt[med] <= K / 2) acc += cnt[med++];
        for (int k = 3; k < K; k += 50) assert_true((map[k / 2] >> (4 * (k % 2)) & 15) >= med);
        /* decode (1 row) and prefill (3 and 7 rows) against the dequantised weights */
        check_apply(blob, dq, 1);
        check_apply(blob, dq, 3);
        check_apply(blob, dq, 7);
        if (i % 3 == 0) check_apply(blob, dq, 37); /* outliers 16 rows at a time, the last 5 too */
        free(blob);
    }
    free(dq);
}

static void test_too_few_bits(void **st)
{
    (void)st;
    make_weights();
    spq_cmpq_opts o = {1.5, 0.0, -1};
    spq_err e;
    void *blob;
    size_t nb;
    assert_int_equal(spq_cmpq_quantize(W, N, K, H, &o, &blob, &nb, NULL, "test", &e), -1);
    fprintf(stderr, "  %s\n", e.msg);
    assert_non_null(strstr(e.msg, "below"));
    assert_null(blob);
}

/* each corruption of a sound blob is named, never run */
static void test_corrupt(void **st)
{
    (void)st;
    make_weights();
    spq_cmpq_opts o = {3.0, 0.004, SPQ_CMPQ_SHARED};
    spq_err e;
    void *blob;
    size_t nb;
    spq_cmpq_hdr h;
    assert_int_equal(spq_cmpq_quantize(W, N, K, H, &o, &blob, &nb, NULL, "test", &e), 0);
    assert_null(spq_cmpq_check(blob, nb, N, K, &h));
    uint8_t *c = malloc(nb);
    spq_cmpq_layout L;
    spq_cmpq_layout_of(&h, &L);
    struct { size_t off; uint32_t v; int bytes; } bad[] = {
        {0, 0x12345678u, 4},                      /* magic */
        {4, 3, 4},                                /* version */
        {4, 1, 4},                                /* version 1: quantise again */
        {16, h.kc[0] + 1, 4},                     /* class counts != K */
        {44, 7, 4},                               /* table mode */
        {48, 0xff, 1},                            /* class map != counts */
        {L.rowptr + 4 * 5, 0xffffffu, 4},         /* row pointers */
        {L.col, 0xffff, 2},                       /* outlier column >= K */
        {L.val, 0x7c00, 2},                       /* outlier value inf */
        {L.levels + 5, 0x80, 1},                  /* level -128 */
        {L.scales + 2, 0x7e00, 2},                /* column scale NaN */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memcpy(c, blob, nb);
        memcpy(c + bad[i].off, &bad[i].v, (size_t)bad[i].bytes);
        const char *why = spq_cmpq_check(c, nb, N, K, &h);
        fprintf(stderr, "  corruption %zu: %s\n", i, why ? why : "(accepted!)");
        assert_non_null(why);
    }
    assert_non_null(spq_cmpq_check(blob, nb - 64, N, K, &h)); /* truncated */
    assert_non_null(spq_cmpq_check(blob, nb, N + 1, K, &h));  /* other shape */
    free(c);
    free(blob);
}

/* a whole model: profile -> CMPQ -> .spq -> read back -> the same logits, near FP32 */
static void test_model_roundtrip(void **st)
{
    (void)st;
    spq_ckpt c, q, back;
    tiny_model(&c, 128, 256, 2, 4, 2, 97, 0);
    spq_model m;
    spq_err e;
    assert_int_equal(spq_model_init(&m, &c, 64, &e), 0);
    int ids[128]; /* 32-column blocks and per-column tables cost more in small layers: 4.5 and 6 bits */
    for (int i = 0; i < 128; i++) ids[i] = (i * 53 + 11) % 97;
    spq_profile prof;
    assert_int_equal(spq_profile_run(&m, ids, 128, 2, 64, 0, &prof, &e), 0);
    spq_model_free(&m);
    double ehi = 0;
    for (int pass = 0; pass < 2; pass++) {
        spq_quant_opts o = spq_quant_defaults();
        o.scheme = SPQ_SCHEME_CMPQ;
        o.bits = pass ? 6.0 : 4.5;
        unsigned char fb[2 * SPQ_NPROJ] = {0};
        if (spq_quantize(&c, &prof, fb, &o, 0, &q, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
        if (pass == 0) { /* validation checks every blob: a broken class map is named */
            spq_tensor *bt = spq_ckpt_find(&q, "model.layers.0.self_attn.k_proj.weight");
            uint8_t *cm = (uint8_t *)bt->owned + 48, keep = *cm;
            *cm ^= 0x3;
            assert_int_equal(spq_ckpt_validate(&q, &e), -1);
            fprintf(stderr, "  %s\n", e.msg);
            assert_non_null(strstr(e.msg, "k_proj.weight: CMPQ channel classes"));
            *cm = keep;
            assert_int_equal(spq_ckpt_validate(&q, &e), 0);
        }
        char path[] = "/tmp/spq_cmpq_XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        close(fd);
        assert_int_equal(spq_write(path, &q, &e), 0);
        assert_int_equal(spq_read(path, &back, &e), 0);
        const spq_tensor *t = spq_ckpt_find(&back, "model.layers.1.mlp.down_proj.weight");
        assert_int_equal(t->dtype, SPQ_CMPQ);
        int ev[40];
        for (int i = 0; i < 40; i++) ev[i] = (i * 29 + 3) % 97;
        float *ref = run_logits(&c, ev, 40, 0), *a = run_logits(&q, ev, 40, 0), *b = run_logits(&back, ev, 40, 0);
        float *d = run_logits(&back, ev, 40, 1); /* token by token: the decode path */
        double err = rel_err(a, ref, 40 * 97), errd = rel_err(d, b, 40 * 97);
        fprintf(stderr, "  %.1f bits: logits rel err vs FP32 %.4f; decode vs prefill %.2e\n", o.bits, err, errd);
        assert_memory_equal(a, b, sizeof(float) * 40 * 97);
        assert_true(errd < 1e-4);
        assert_true(err < 0.15);
        if (pass == 1) assert_true(err < ehi); /* 6 bits closer than 4.5 */
        ehi = err;
        free(ref); free(a); free(b); free(d);
        spq_ckpt_free(&back);
        spq_quantized_free(&q);
        unlink(path);
    }
    spq_profile_free(&prof);
    spq_ckpt_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_budget_error_kernels),
        cmocka_unit_test(test_too_few_bits),
        cmocka_unit_test(test_corrupt),
        cmocka_unit_test(test_model_roundtrip),
    };
    return cmocka_run_group_tests_name("cmpq", tests, NULL, NULL);
}
