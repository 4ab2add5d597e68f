/* test_model.c — the FP32 forward pass against independent references, .spq round trips,
 * prefill vs decode, GQA/tied/untied shapes, and the W8A8 path's closeness to FP32. */
#include "tests/helpers.h"
#include "format/open.h"
#include <omp.h>

#include <cjson/cJSON.h>
#include <unistd.h>

#include "kernels/kernels.h"

static const int STORIES_IDS[16] = {1, 300, 301, 302, 400, 17, 99, 260, 511, 42, 7, 258, 1, 333, 444, 5};

/* karpathy's run.c reference: same top-5 ids at every position, logits within 1e-4 */
static void test_stories260k_matches_llama2c(void **st)
{
    (void)st;
    const char *bin = shared_path("models/stories260K/stories260K.bin");
    FILE *f = fopen(shared_path("models/stories260K/reference-llama2c.txt"), "r");
    spq_ckpt c;
    spq_err e;
    assert_int_equal(spq_open(bin, &c, &e), 0);
    float *lg = run_logits(&c, STORIES_IDS, 16, 0);
    double worst = 0;
    for (int pos = 0; pos < 16; pos++) {
        int p, tok, id[5];
        float v[5];
        double sum;
        assert_int_equal(fscanf(f, " pos %d tok %d top5 %d:%f %d:%f %d:%f %d:%f %d:%f sum %lf", &p, &tok, &id[0], &v[0],
                                &id[1], &v[1], &id[2], &v[2], &id[3], &v[3], &id[4], &v[4], &sum), 13);
        const float *row = lg + (size_t)pos * 512;
        double s = 0;
        for (int k = 0; k < 512; k++) s += row[k];
        for (int k = 0; k < 5; k++) {
            for (int j = 0; j < 512; j++) /* id[k] must be the k-th largest */
                if (row[j] > row[id[k]]) {
                    int better = 0;
                    for (int q = 0; q < k; q++) better |= id[q] == j;
                    assert_true(better);
                }
            double r = fabs(row[id[k]] - v[k]) / fabs(v[k]);
            worst = fmax(worst, r);
        }
        assert_true(fabs(s - sum) < 1e-3 * fmax(1.0, fabs(sum)) + 0.05);
    }
    fprintf(stderr, "  stories260K vs llama2.c: max relative logit error %.2e\n", worst);
    assert_true(worst < 1e-4);
    fclose(f);
    free(lg);
    spq_ckpt_free(&c);
}

/* the trained fixture against transformers' top-5 and greedy continuations */
static void test_docs_model_matches_transformers(void **st)
{
    (void)st;
    const char *dir = shared_path("models/docs-llama-28m");
    FILE *f = fopen(shared_path("models/docs-llama-28m/reference.json"), "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *txt = calloc((size_t)n + 1, 1);
    assert_int_equal(fread(txt, 1, (size_t)n, f), n);
    fclose(f);
    cJSON *j = cJSON_Parse(txt);
    spq_ckpt c;
    spq_err e;
    assert_int_equal(spq_open(dir, &c, &e), 0);
    spq_model m;
    spq_state s;
    assert_int_equal(spq_model_init(&m, &c, 128, &e), 0);
    assert_int_equal(spq_state_init(&s, &m, 16), 0);
    double worst = 0;
    const cJSON *pr;
    cJSON_ArrayForEach(pr, cJSON_GetObjectItem(j, "prompts")) {
        const cJSON *ids = cJSON_GetObjectItem(pr, "ids");
        int np = cJSON_GetArraySize(ids), in[16];
        for (int i = 0; i < np; i++) in[i] = cJSON_GetArrayItem(ids, i)->valueint;
        /* the tokenizer must produce the same ids from the prompt text */
        int got[64];
        const char *text = cJSON_GetObjectItem(pr, "prompt")->valuestring;
        long ng = spq_tok_encode(&c.tok, text, strlen(text), 1, 0, got, 64);
        assert_int_equal(ng, np);
        assert_memory_equal(got, in, sizeof(int) * (size_t)np);
        spq_forward(&m, &s, in, np, 0, 0);
        for (int k = 0; k < 5; k++) {
            int id = cJSON_GetArrayItem(cJSON_GetObjectItem(pr, "top5_ids"), k)->valueint;
            double ref = cJSON_GetArrayItem(cJSON_GetObjectItem(pr, "top5_logits"), k)->valuedouble;
            worst = fmax(worst, fabs(s.logits[id] - ref) / fabs(ref));
        }
        /* greedy continuation, 32 tokens */
        int pos = np;
        const cJSON *g = cJSON_GetObjectItem(pr, "greedy_ids");
        for (int k = 0; k < cJSON_GetArraySize(g); k++) {
            int best = 0;
            for (int v = 1; v < c.cfg.vocab_size; v++) if (s.logits[v] > s.logits[best]) best = v;
            assert_int_equal(best, cJSON_GetArrayItem(g, k)->valueint);
            spq_forward(&m, &s, &best, 1, pos++, 0);
        }
    }
    /* reference.json was computed on a GPU (TF32-class matmuls): 1e-3 relative */
    fprintf(stderr, "  docs-llama-28m vs transformers: max relative top-5 logit error %.2e\n", worst);
    assert_true(worst < 1e-3);
    spq_state_free(&s);
    spq_model_free(&m);
    spq_ckpt_free(&c);
    cJSON_Delete(j);
    free(txt);
}

/* prefill of M tokens == M decode steps (GQA, tied and untied, odd shapes) */
static void test_prefill_equals_decode(void **st)
{
    (void)st;
    int shapes[][7] = {{64, 172, 2, 8, 4, 97, 1}, {48, 80, 3, 4, 4, 61, 0}, {96, 200, 2, 6, 2, 130, 1}};
    for (int s = 0; s < 3; s++) {
        spq_ckpt c;
        tiny_model(&c, shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], shapes[s][4], shapes[s][5], shapes[s][6]);
        int ids[23];
        for (int i = 0; i < 23; i++) ids[i] = (i * 37 + 5) % shapes[s][5];
        float *a = run_logits(&c, ids, 23, 0), *b = run_logits(&c, ids, 23, 1);
        double r = rel_err(a, b, (size_t)23 * shapes[s][5]);
        fprintf(stderr, "  shape %d: prefill vs decode %.2e\n", s, r);
        assert_true(r <= 1e-5);
        free(a); free(b);
        spq_ckpt_free(&c);
    }
}

/* The forward pass splits rows, heads and column blocks over its team: the logits must
 * not depend on how many threads there are (bit for bit: every reduction is per row or a
 * max). FP32 and W8A8 (dynamic scales: a team-wide max), prefill all rows / last row only,
 * and decode; the matrices are big enough that decode GEMMs are shared too. */
static void test_threads_agree(void **st)
{
    (void)st;
    spq_ckpt c, q;
    spq_err e;
    tiny_model(&c, 384, 1024, 2, 6, 2, 300, 0);
    spq_quant_opts o = spq_quant_defaults();
    unsigned char fb[2 * SPQ_NPROJ] = {0};
    assert_int_equal(spq_quantize(&c, NULL, fb, &o, 0, &q, &e), 0);
    int ids[19];
    for (int i = 0; i < 19; i++) ids[i] = (i * 53 + 7) % 300;
    int max = omp_get_max_threads();
    for (int w = 0; w < 2; w++)
        for (int mode = 0; mode < 3; mode++) {
            omp_set_num_threads(1);
            float *ref = run_logits(w ? &q : &c, ids, 19, mode);
            for (int nt = 2; nt <= 4; nt++) {
                omp_set_num_threads(nt);
                float *got = run_logits(w ? &q : &c, ids, 19, mode);
                if (memcmp(ref, got, sizeof(float) * (mode == 2 ? 1 : 19) * 300)) {
                    fprintf(stderr, "  %s mode %d: %d threads differ from 1 (%g vs %g)\n", w ? "W8A8" : "FP32", mode, nt, ref[0], got[0]);
                    fail();
                }
                free(got);
            }
            free(ref);
        }
    omp_set_num_threads(max);
    spq_quantized_free(&q);
    spq_ckpt_free(&c);
}

/* Greedy steps of one sequence run alone: the prompt's last logits, then `steps` decode
 * steps, each row of V logits into out[(1 + steps) * V]. */
static void run_alone(const spq_model *m, const int *prompt, int np, int steps, int kv, float *out)
{
    spq_state s;
    int V = m->cfg.vocab_size;
    assert_int_equal(spq_state_init_seq(&s, m, np, 1, 0, 0, kv), 0);
    assert_int_equal(spq_forward(m, &s, prompt, np, 0, 0), 0);
    for (int k = 0;; k++) {
        memcpy(out + (size_t)k * V, s.logits, sizeof(float) * (size_t)V);
        if (k == steps) break;
        int next = 0;
        for (int v = 1; v < V; v++) next = s.logits[v] > s.logits[next] ? v : next;
        assert_int_equal(spq_forward(m, &s, &next, 1, np + k, 0), 0);
    }
    spq_state_free(&s);
}

/* Three sequences in one batch (prompt rows interleaved, then one decode row each per
 * step, in a rotating order) give bit for bit the logits each gives alone: per-sequence
 * activation scales (INT8, FP8), per-row positions and caches. */
static void batch_agrees_kv(const spq_ckpt *c, const char *what, int kv)
{
    enum { NS = 3, STEPS = 4 };
    static const int np[NS] = {7, 5, 3};
    int prompt[NS][7];
    for (int j = 0; j < NS; j++)
        for (int i = 0; i < np[j]; i++) prompt[j][i] = (j * 97 + i * 31 + 5) % c->cfg.vocab_size;
    spq_model m;
    spq_err e;
    assert_int_equal(spq_model_init(&m, c, 64, &e), 0);
    int V = m.cfg.vocab_size;
    float *ref = malloc(sizeof(float) * NS * (STEPS + 1) * (size_t)V);
    for (int j = 0; j < NS; j++) run_alone(&m, prompt[j], np[j], STEPS, kv, ref + (size_t)j * (STEPS + 1) * V);
    spq_state s;
    assert_int_equal(spq_state_init_seq(&s, &m, 15, NS, 0, 0, kv), 0);
    int tok[15], pos[15], seq[15], n = 0, last[NS];
    signed char want[15];
    for (int i = 0; i < 7; i++) /* A0 B0 C0 A1 B1 C1 A2 ... */
        for (int j = 0; j < NS; j++)
            if (i < np[j]) { tok[n] = prompt[j][i]; pos[n] = i; seq[n] = j; want[n] = i == np[j] - 1; n++; }
    assert_int_equal(spq_forward_batch(&m, &s, tok, pos, seq, want, n), NS);
    int row = 0, bad = 0;
    for (int i = 0; i < n; i++) /* logits rows come in row order: C's prompt ends first */
        if (want[i]) last[seq[i]] = row++;
    for (int k = 0; k <= STEPS; k++) {
        int next[NS];
        for (int j = 0; j < NS; j++) {
            const float *got = s.logits + (size_t)last[j] * V, *want_row = ref + ((size_t)j * (STEPS + 1) + k) * V;
            if (memcmp(got, want_row, sizeof(float) * (size_t)V)) {
                fprintf(stderr, "  %s (%s KV): sequence %d step %d differs batched (%g vs %g)\n", what,
                        kv == SPQ_F16 ? "F16" : "F32", j, k, got[0], want_row[0]);
                bad = 1;
            }
            next[j] = 0;
            for (int v = 1; v < V; v++) next[j] = want_row[v] > want_row[next[j]] ? v : next[j];
        }
        if (k == STEPS) break;
        for (int r = 0; r < NS; r++) { /* rotate which sequence comes first */
            int j = (r + k) % NS;
            tok[r] = next[j]; pos[r] = np[j] + k; seq[r] = j; last[j] = r;
        }
        assert_int_equal(spq_forward_batch(&m, &s, tok, pos, seq, NULL, NS), NS);
    }
    assert_false(bad);
    int bad_pos[1] = {64}, zero[1] = {0};
    assert_int_equal(spq_forward_batch(&m, &s, tok, bad_pos, zero, NULL, 1), -1); /* position past ctx */
    assert_int_equal(spq_forward_batch(&m, &s, tok, zero, (int[]){NS}, NULL, 1), -1); /* no such sequence */
    free(ref);
    spq_state_free(&s);
    spq_model_free(&m);
}

/* ... with the KV cache in FP32 and in FP16 */
static void batch_agrees(const spq_ckpt *c, const char *what)
{
    batch_agrees_kv(c, what, SPQ_F32);
    batch_agrees_kv(c, what, SPQ_F16);
}

static void test_batch_agrees(void **st)
{
    (void)st;
    spq_ckpt c, q;
    spq_err e;
    tiny_model(&c, 384, 1024, 2, 6, 2, 300, 0);
    batch_agrees(&c, "FP32");
    unsigned char fb[2 * SPQ_NPROJ] = {0};
    fb[1 * SPQ_NPROJ + SPQ_DOWN] = 1;
    spq_quant_opts o = spq_quant_defaults();
    static const char *what[] = {"W8A8", "W8A8 + FP16 down", "W8A8 + FP8 down (FP8 activations)",
                                 "W6A6 per token, per channel + FP8 E5M2 down"};
    for (int v = 0; v < 4; v++) {
        o.spike = v == 0 ? 0 : v == 1 ? SPQ_F16 : v == 2 ? SPQ_E4M3 : SPQ_E5M2;
        o.spike_act = SPQ_E4M3;
        o.embed = SPQ_F16;
        o.act_bits = o.weight_bits = v == 3 ? 6 : 8;
        o.act_token = o.weight_channel = v == 3;
        assert_int_equal(spq_quantize(&c, NULL, fb, &o, 0, &q, &e), 0);
        batch_agrees(&q, what[v]);
        spq_quantized_free(&q);
    }
    spq_ckpt_free(&c);
    assert_int_equal(spq_open("models/docs-llama-28m-w8a8.spq", &c, &e), 0);
    batch_agrees(&c, "shipped model");
    spq_ckpt_free(&c);
}

/* .spq written and read back gives bit-identical logits; F16 conversion stays close */
static void test_spq_roundtrip(void **st)
{
    (void)st;
    spq_ckpt c, r;
    spq_err e;
    tiny_model(&c, 64, 96, 2, 4, 2, 50, 0);
    char path[] = "/tmp/spq_rt_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    assert_int_equal(spq_write(path, &c, &e), 0);
    assert_int_equal(spq_open(path, &r, &e), 0);
    assert_int_equal(r.n, c.n);
    int ids[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float *a = run_logits(&c, ids, 9, 0), *b = run_logits(&r, ids, 9, 0);
    assert_memory_equal(a, b, sizeof(float) * 9 * 50);
    free(a); free(b);
    spq_ckpt_free(&r);
    unlink(path);
    spq_ckpt_free(&c);
}

/* top-1 agreement of two [n][V] logit sets */
static int top1_agree(const float *a, const float *b, int n, int V)
{
    int agree = 0;
    for (int i = 0; i < n; i++) {
        int x = 0, y = 0;
        for (int v = 1; v < V; v++) {
            if (a[(size_t)i * V + v] > a[(size_t)i * V + x]) x = v;
            if (b[(size_t)i * V + v] > b[(size_t)i * V + y]) y = v;
        }
        agree += x == y;
    }
    return agree;
}

/* W8A8 per-tensor on the trained fixture stays close to FP32 on held-out text. On the
 * 64-wide stories260K, per-tensor INT8 is coarse: its error is reported, not bounded. */
static void test_w8a8_close_to_fp32(void **st)
{
    (void)st;
    spq_ckpt c, q;
    spq_err e;
    assert_int_equal(spq_open(shared_path("models/docs-llama-28m"), &c, &e), 0);
    FILE *f = fopen(shared_path("models/docs-llama-28m/docs-eval.txt"), "rb");
    char text[4096];
    size_t len = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    int ids[4096];
    long n = spq_tok_encode(&c.tok, text, len, 1, 0, ids, 4096);
    if (n > 128) n = 128;
    const int V = c.cfg.vocab_size;
    float *ref = run_logits(&c, ids, (int)n, 0);
    spq_quant_opts o = spq_quant_defaults();
    unsigned char fb[10 * SPQ_NPROJ] = {0};
    assert_int_equal(spq_quantize(&c, NULL, fb, &o, 0, &q, &e), 0);
    float *w8 = run_logits(&q, ids, (int)n, 0);
    double r = rel_err(w8, ref, (size_t)n * V);
    int agree = top1_agree(w8, ref, (int)n, V);
    fprintf(stderr, "  docs-llama-28m W8A8 dynamic: max rel logit error %.4f, top-1 agrees at %d/%ld positions\n", r, agree, n);
    assert_true(r < 0.10);
    assert_true(agree >= n * 90 / 100);
    free(w8);
    spq_quantized_free(&q);
    free(ref);
    spq_ckpt_free(&c);

    assert_int_equal(spq_open(shared_path("models/stories260K/stories260K.bin"), &c, &e), 0);
    ref = run_logits(&c, STORIES_IDS, 16, 0);
    assert_int_equal(spq_quantize(&c, NULL, fb, &o, 0, &q, &e), 0);
    w8 = run_logits(&q, STORIES_IDS, 16, 0);
    fprintf(stderr, "  stories260K W8A8 dynamic: max rel logit error %.3f, top-1 agrees at %d/16 positions\n",
            rel_err(w8, ref, 16 * 512), top1_agree(w8, ref, 16, 512));
    free(ref); free(w8);
    spq_quantized_free(&q);
    spq_ckpt_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stories260k_matches_llama2c),
        cmocka_unit_test(test_docs_model_matches_transformers),
        cmocka_unit_test(test_prefill_equals_decode),
        cmocka_unit_test(test_threads_agree),
        cmocka_unit_test(test_batch_agrees),
        cmocka_unit_test(test_spq_roundtrip),
        cmocka_unit_test(test_w8a8_close_to_fp32),
    };
    return cmocka_run_group_tests_name("model", tests, NULL, NULL);
}
