/* test_quant.c — the paper's mechanism on a model built to show it: a spike planted in
 * one down_proj input must be found by the profiler (and only it), must hurt W8A8
 * per-tensor everywhere, and the mixed plan must recover the accuracy. Plus the plan's
 * explicit --keep syntax and static activation scales. */
#include "tests/helpers.h"

#include "kernels/kernels.h"
#include "runtime/profiler.h"
#include "runtime/quantize.h"

#define L 3
#define V 97

static void planted(spq_ckpt *c)
{
    tiny_model(c, 64, 128, L, 4, 2, V, 0);
    /* hidden channel 5 of layer 1: gate and up rows x12 -> its SwiGLU output ~100x the rest */
    spq_tensor *g = spq_ckpt_find(c, "model.layers.1.mlp.gate_proj.weight");
    spq_tensor *u = spq_ckpt_find(c, "model.layers.1.mlp.up_proj.weight");
    for (int k = 0; k < 64; k++) {
        ((float *)g->owned)[5 * 64 + k] = 0.4f;
        ((float *)u->owned)[5 * 64 + k] *= 12.0f;
    }
}

static void test_planted_spike(void **st)
{
    (void)st;
    spq_ckpt c;
    planted(&c);
    spq_model m;
    spq_err e;
    assert_int_equal(spq_model_init(&m, &c, 64, &e), 0);
    int ids[128];
    for (int i = 0; i < 128; i++) ids[i] = (i * 53 + 11) % V;
    spq_profile prof;
    assert_int_equal(spq_profile_run(&m, ids, 128, 2, 64, 0, &prof, &e), 0);
    spq_model_free(&m);
    const spq_site_stats *sp = &prof.s[1 * SPQ_NSITES + SPQ_SITE_DOWN];
    fprintf(stderr, "  planted site absmax %.2f (channel %d), median %.4f\n", sp->absmax, sp->max_chan, spq_site_quantile(sp, 0.5));
    assert_int_equal(sp->max_chan, 5);
    spq_quant_opts o = spq_quant_defaults();
    o.spike = SPQ_F16;
    unsigned char fb[L * SPQ_NPROJ], none[L * SPQ_NPROJ] = {0};
    int n = spq_plan(&prof, &o, L, fb, &e);
    assert_int_equal(n, 1);
    assert_int_equal(fb[1 * SPQ_NPROJ + SPQ_DOWN], 1);
    /* accuracy on held-out ids: FP32 vs W8A8 everywhere vs the mixed plan */
    int ev[48];
    for (int i = 0; i < 48; i++) ev[i] = (i * 29 + 3) % V;
    float *ref = run_logits(&c, ev, 48, 0);
    double err[4];
    for (int k = 0; k < 4; k++) {
        spq_quant_opts q = o;
        q.act_static = k & 1;
        spq_ckpt qc;
        assert_int_equal(spq_quantize(&c, &prof, k < 2 ? none : fb, &q, 0, &qc, &e), 0);
        float *lg = run_logits(&qc, ev, 48, 0);
        err[k] = rel_err(lg, ref, 48 * V);
        free(lg);
        spq_quantized_free(&qc);
    }
    fprintf(stderr, "  max rel logit error: W8A8 everywhere %.4f (dynamic) %.4f (static); mixed plan %.4f / %.4f\n",
            err[0], err[1], err[2], err[3]);
    /* measured: 0.086 / 0.110 everywhere vs 0.023 / 0.035 mixed; the rest is the ordinary
     * per-tensor INT8 noise of a 64-wide random model */
    assert_true(err[0] > 2.5 * err[2]);
    assert_true(err[1] > 2.5 * err[3]);
    assert_true(err[2] < 0.05 && err[3] < 0.05);
    /* FP8 fallback recovers too */
    o.spike = SPQ_E4M3;
    spq_ckpt qc;
    assert_int_equal(spq_quantize(&c, &prof, fb, &o, 0, &qc, &e), 0);
    float *lg = run_logits(&qc, ev, 48, 0);
    double e8 = rel_err(lg, ref, 48 * V);
    fprintf(stderr, "  mixed plan with FP8 E4M3 (weights and activations): %.4f\n", e8);
    assert_true(err[0] > 2 * e8);
    free(lg);
    spq_quantized_free(&qc);
    free(ref);
    spq_profile_free(&prof);
    spq_ckpt_free(&c);
}

static void test_keep_list(void **st)
{
    (void)st;
    spq_quant_opts o = spq_quant_defaults();
    unsigned char fb[L * SPQ_NPROJ];
    spq_err e;
    o.keep = "0.down,2.o,2.down_proj";
    assert_int_equal(spq_plan(NULL, &o, L, fb, &e), 3);
    assert_true(fb[0 * SPQ_NPROJ + SPQ_DOWN] && fb[2 * SPQ_NPROJ + SPQ_O] && fb[2 * SPQ_NPROJ + SPQ_DOWN]);
    o.keep = "7.down";
    assert_int_equal(spq_plan(NULL, &o, L, fb, &e), -1);
    o.keep = "1.gate";
    assert_int_equal(spq_plan(NULL, &o, L, fb, &e), -1);
    assert_non_null(strstr(e.msg, "only down and o"));
}

/* error of per-tensor INT8 with scale a * absmax / 127, computed plainly */
static double out_err(const float *w, int N, int K, const float *x, int S, float a)
{
    float amax = 0;
    for (int i = 0; i < N * K; i++) amax = fabsf(w[i]) > amax ? fabsf(w[i]) : amax;
    float sc = a * amax / 127.0f;
    double err = 0;
    for (int n = 0; n < N; n++)
        for (int s = 0; s < S; s++) {
            double y = 0;
            for (int k = 0; k < K; k++) {
                float q = nearbyintf(w[n * K + k] / sc);
                q = q > 127 ? 127 : q < -127 ? -127 : q;
                y += (double)x[s * K + k] * (w[n * K + k] - q * sc);
            }
            err += y * y;
        }
    return err;
}

/* the clipping search returns a factor at least as good as every coarse-grid point, and on
 * heavy-tailed weights (a few 40-sigma outliers among Gaussian-like values) clips */
static void test_clip_search(void **st)
{
    (void)st;
    enum { N = 48, K = 200, S = 24 };
    static float w[N * K], x[S * K];
    for (int i = 0; i < N * K; i++) w[i] = 0.02f * (test_rand() + test_rand() + test_rand());
    for (int i = 0; i < S * K; i++) x[i] = test_rand();
    for (int round = 0; round < 2; round++) {
        if (round == 1) { w[7] = 2.4f; w[4000] = -2.2f; } /* outliers: absmax/127 is now coarse */
        float a = spq_clip_search(w, N, K, x, S);
        double ea = out_err(w, N, K, x, S, a), e1 = out_err(w, N, K, x, S, 1.0f);
        assert_true(a >= 0.45f && a <= 1.0f);
        for (int g = 0; g <= 10; g++) assert_true(ea <= out_err(w, N, K, x, S, 1.0f - 0.05f * (float)g) * (1 + 1e-9));
        fprintf(stderr, "  clip search: a = %.2f, output error %.4g vs %.4g at absmax\n", (double)a, ea, e1);
        if (round == 1) assert_true(a < 1.0f && ea < e1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planted_spike),
        cmocka_unit_test(test_keep_list),
        cmocka_unit_test(test_clip_search),
    };
    return cmocka_run_group_tests_name("quant", tests, NULL, NULL);
}
