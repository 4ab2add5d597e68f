/* helpers.h — shared test plumbing: ../shared lookup (skip locally, fail in CI), tiny
 * random models built in memory, and logits comparison. Header-only: each test binary
 * includes it once. */
#ifndef SPQ_TEST_HELPERS_H
#define SPQ_TEST_HELPERS_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "format/ckpt.h"
#include "runtime/model.h"
#include "quant/quantize.h"

/* Path of a file under ../shared, or skip the test (fail when CI=true). */
static inline const char *shared_path(const char *rel)
{
    static char buf[8][1024];
    static int k;
    char *p = buf[k++ % 8];
    const char *root = getenv("SPIKEQ_SHARED") ? getenv("SPIKEQ_SHARED") : "../shared";
    snprintf(p, 1024, "%s/%s", root, rel);
    struct stat st;
    if (stat(p, &st)) {
        const char *ci = getenv("CI");
        if (ci && !strcmp(ci, "true")) {
            fprintf(stderr, "FAIL: %s is missing and CI=true: ../shared must be present in CI\n", p);
            fail();
        }
        fprintf(stderr, "SKIP: %s not found (../shared absent)\n", p);
        skip();
    }
    return p;
}

static uint64_t test_rng = 0x2545F4914F6CDD1Dull;
static inline float test_rand(void) /* uniform in [-1, 1) */
{
    test_rng ^= test_rng << 13; test_rng ^= test_rng >> 7; test_rng ^= test_rng << 17;
    return (float)((test_rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

static inline void add_f32(spq_ckpt *c, const char *name, int64_t r, int64_t k, float scale, float bias)
{
    spq_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.dtype = SPQ_F32;
    t.ndim = k ? 2 : 1;
    t.shape[0] = r;
    t.shape[1] = k;
    t.scale = 1.0f;
    size_t n = (size_t)r * (size_t)(k ? k : 1);
    float *f = malloc(4 * n);
    for (size_t i = 0; i < n; i++) f[i] = bias + scale * test_rand();
    t.owned = f;
    t.data = f;
    t.nbytes = 4 * n;
    spq_ckpt_add(c, &t);
}

/* A random LLaMA with the given shape (weights ~ U(-s, s), norms ~ 1). */
static inline void tiny_model(spq_ckpt *c, int dim, int hidden, int layers, int heads, int kv_heads, int vocab, int tied)
{
    memset(c, 0, sizeof *c);
    strcpy(c->path, "tiny");
    spq_config *p = &c->cfg;
    p->dim = dim; p->hidden_dim = hidden; p->n_layers = layers; p->n_heads = heads; p->n_kv_heads = kv_heads;
    p->head_dim = dim / heads; p->vocab_size = vocab; p->max_seq = 64; p->tied = tied; p->bos_id = 1; p->eos_id = 2;
    p->norm_eps = 1e-5f; p->rope_theta = 10000.0f;
    int kv = kv_heads * p->head_dim;
    char nm[96];
    float s = 1.0f / sqrtf((float)dim);
    add_f32(c, "model.embed_tokens.weight", vocab, dim, 1.0f, 0);
    for (int l = 0; l < layers; l++) {
#define T(fmt, r, k, sc, b) (snprintf(nm, sizeof nm, fmt, l), add_f32(c, nm, r, k, sc, b))
        T("model.layers.%d.input_layernorm.weight", dim, 0, 0.1f, 1.0f);
        T("model.layers.%d.self_attn.q_proj.weight", dim, dim, s, 0);
        T("model.layers.%d.self_attn.k_proj.weight", kv, dim, s, 0);
        T("model.layers.%d.self_attn.v_proj.weight", kv, dim, s, 0);
        T("model.layers.%d.self_attn.o_proj.weight", dim, dim, s, 0);
        T("model.layers.%d.post_attention_layernorm.weight", dim, 0, 0.1f, 1.0f);
        T("model.layers.%d.mlp.gate_proj.weight", hidden, dim, s, 0);
        T("model.layers.%d.mlp.up_proj.weight", hidden, dim, s, 0);
        T("model.layers.%d.mlp.down_proj.weight", dim, hidden, 1.0f / sqrtf((float)hidden), 0);
#undef T
    }
    add_f32(c, "model.norm.weight", dim, 0, 0.1f, 1.0f);
    if (!tied) add_f32(c, "lm_head.weight", vocab, dim, s, 0);
}

/* max |a - b| / max |b| over n values */
static inline double rel_err(const float *a, const float *b, size_t n)
{
    /* plain comparisons: gcc 12's aarch64 vectoriser ICEs on an fmax reduction here */
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        double x = fabs((double)a[i] - b[i]), y = fabs((double)b[i]);
        if (x > d) d = x;
        if (y > m) m = y;
    }
    return m > 0 ? d / m : d;
}

/* Run ids through a freshly built model; returns malloc'd logits [n][V]: one prefill
 * (decode 0), n decode steps (1), or a prefill asked for the last row only (2: [1][V]). */
static inline float *run_logits(const spq_ckpt *c, const int *ids, int n, int decode)
{
    spq_model m;
    spq_state s;
    spq_err e;
    if (spq_model_init(&m, c, n, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
    assert_int_equal(spq_state_init(&s, &m, decode == 1 ? 1 : n), 0);
    int V = c->cfg.vocab_size;
    float *out = malloc(sizeof(float) * (size_t)n * V);
    if (decode == 1) {
        for (int i = 0; i < n; i++) {
            spq_forward(&m, &s, ids + i, 1, i, 0);
            memcpy(out + (size_t)i * V, s.logits, sizeof(float) * (size_t)V);
        }
    } else {
        assert_int_equal(spq_forward(&m, &s, ids, n, 0, decode == 0), 0);
        memcpy(out, s.logits, sizeof(float) * (size_t)(decode ? 1 : n) * V);
    }
    spq_state_free(&s);
    spq_model_free(&m);
    return out;
}

#endif
