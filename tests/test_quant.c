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
    assert_int_equal(spq_profile_run(&m, ids, 128, 2, 64, &prof, &e), 0);
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_planted_spike),
        cmocka_unit_test(test_keep_list),
    };
    return cmocka_run_group_tests_name("quant", tests, NULL, NULL);
}
