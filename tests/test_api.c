/* test_api.c — the public API (include/spikeq.h) on the shipped model: batches of several
 * sequences equal each sequence alone, a shared prompt copied between caches, the checks
 * on batches and parameters, tokens and text, the sampler. */
#include "include/spikeq.h"
#include "tests/helpers.h"
#include "format/open.h"
#include "tok/chat.h"

#include <limits.h>
#include <omp.h>

#define MODEL "models/docs-llama-28m-w8a8.spq"

static spikeq_model *load(void)
{
    char err[512];
    spikeq_model *m = spikeq_model_load(MODEL, err, sizeof err);
    if (!m) fprintf(stderr, "  %s\n", err);
    assert_non_null(m);
    return m;
}

static spikeq_context *context(spikeq_model *m, int n_seq, int n_batch)
{
    char err[512];
    spikeq_context_params p = spikeq_context_default_params();
    p.n_seq_max = n_seq;
    p.n_batch = n_batch;
    p.n_ctx = 128;
    spikeq_context *c = spikeq_context_new(m, &p, err, sizeof err);
    if (!c) fprintf(stderr, "  %s\n", err);
    assert_non_null(c);
    return c;
}

/* Greedy continuation logits of one prompt alone, decoded as ids[0..pre) then the rest
 * (with dynamic per-tensor activation scales, a prompt's chunks are its tensors): step
 * k's logits into out[k * V]. */
static void alone(spikeq_model *m, const spikeq_token *ids, int n, int pre, int steps, float *out)
{
    int V = spikeq_n_vocab(m);
    spikeq_context *c = context(m, 1, n);
    spikeq_batch b = spikeq_batch_init(n);
    for (int i = 0; i < pre; i++) spikeq_batch_add(&b, ids[i], i, 0, 0);
    assert_int_equal(spikeq_decode(c, &b), 0);
    b.n_tokens = 0;
    for (int i = pre; i < n; i++) spikeq_batch_add(&b, ids[i], i, 0, i == n - 1);
    for (int k = 0; k < steps; k++) {
        assert_int_equal(spikeq_decode(c, &b), 0);
        const float *lg = spikeq_get_logits(c, b.n_tokens - 1);
        assert_non_null(lg);
        memcpy(out + (size_t)k * V, lg, sizeof(float) * (size_t)V);
        int next = 0;
        for (int v = 1; v < V; v++) next = lg[v] > lg[next] ? v : next;
        b.n_tokens = 0;
        spikeq_batch_add(&b, next, n + k, 0, 1);
    }
    spikeq_batch_free(&b);
    spikeq_context_free(c);
}

/* Two prompts that share a prefix: the prefix is decoded once into sequence 0, copied
 * into sequence 1, then each suffix and greedy steps run batched together; every logits
 * row equals the sequence's run alone in the same chunks, bit for bit. */
static void test_shared_prefix_batched(void **st)
{
    (void)st;
    spikeq_model *m = load();
    int V = spikeq_n_vocab(m);
    spikeq_token a[32], b2[32];
    int na = spikeq_tokenize(m, "The Linux kernel supports", -1, a, 32, 1, 0);
    int nb = spikeq_tokenize(m, "The Linux kernel documentation", -1, b2, 32, 1, 0);
    int pre = 0;
    while (pre < na && pre < nb && a[pre] == b2[pre]) pre++;
    assert_true(pre >= 3 && pre < na && pre < nb);
    enum { STEPS = 5 };
    float *ra = malloc(sizeof(float) * STEPS * (size_t)V), *rb = malloc(sizeof(float) * STEPS * (size_t)V);
    alone(m, a, na, pre, STEPS, ra);
    alone(m, b2, nb, pre, STEPS, rb);

    spikeq_context *c = context(m, 2, 16);
    spikeq_batch b = spikeq_batch_init(16);
    for (int i = 0; i < pre; i++) spikeq_batch_add(&b, a[i], i, 0, 0);
    assert_int_equal(spikeq_decode(c, &b), 0);
    assert_null(spikeq_get_logits(c, 0)); /* not asked for */
    assert_int_equal(spikeq_kv_copy(c, 0, 1, pre), 0);
    assert_int_equal(spikeq_kv_len(c, 1), pre);
    b.n_tokens = 0;
    for (int i = pre; i < na; i++) spikeq_batch_add(&b, a[i], i, 0, i == na - 1);
    for (int i = pre; i < nb; i++) spikeq_batch_add(&b, b2[i], i, 1, i == nb - 1);
    int ia = na - pre - 1, ib = b.n_tokens - 1;
    for (int k = 0; k < STEPS; k++) {
        assert_int_equal(spikeq_decode(c, &b), 0);
        const float *la = spikeq_get_logits(c, ia), *lb = spikeq_get_logits(c, ib);
        assert_non_null(la);
        assert_non_null(lb);
        assert_memory_equal(la, ra + (size_t)k * V, sizeof(float) * (size_t)V);
        assert_memory_equal(lb, rb + (size_t)k * V, sizeof(float) * (size_t)V);
        int xa = 0, xb = 0;
        for (int v = 1; v < V; v++) { xa = la[v] > la[xa] ? v : xa; xb = lb[v] > lb[xb] ? v : xb; }
        b.n_tokens = 0; /* B first this time */
        spikeq_batch_add(&b, xb, nb + k, 1, 1);
        spikeq_batch_add(&b, xa, na + k, 0, 1);
        ia = 1; ib = 0;
    }
    assert_int_equal(spikeq_kv_len(c, 0), na + STEPS - 1);
    spikeq_batch_free(&b);
    spikeq_context_free(c);
    spikeq_model_free(m);
    free(ra); free(rb);
}

/* Bad batches and parameters are refused with a message, and change nothing. */
static void test_refusals(void **st)
{
    (void)st;
    char err[512];
    assert_null(spikeq_model_load("/nonexistent.spq", err, sizeof err));
    assert_non_null(strstr(err, "/nonexistent.spq"));
    spikeq_model *m = load();
    spikeq_context_params p = spikeq_context_default_params();
    p.n_ctx = 1 << 20;
    assert_null(spikeq_context_new(m, &p, err, sizeof err));
    assert_non_null(strstr(err, "exceeds the model's context"));
    p = spikeq_context_default_params();
    p.isa = "vax";
    assert_null(spikeq_context_new(m, &p, err, sizeof err));
    assert_non_null(strstr(err, "isa 'vax'"));
    p = spikeq_context_default_params();
    p.n_threads = 999; /* capped at the cores */
    p.isa = "scalar";
    spikeq_context *c = spikeq_context_new(m, &p, err, sizeof err);
    assert_non_null(c);
    assert_int_equal(spikeq_n_threads(c), omp_get_num_procs());
    assert_string_equal(spikeq_isa(c), "scalar");
    spikeq_context_free(c);

    c = context(m, 2, 4);
    spikeq_batch b = spikeq_batch_init(8);
    spikeq_batch_add(&b, 1, 1, 0, 1); /* position 1 of an empty sequence: a gap */
    assert_int_equal(spikeq_decode(c, &b), -1);
    assert_non_null(strstr(spikeq_context_error(c), "gap"));
    b.n_tokens = 0;
    spikeq_batch_add(&b, 1, 0, 2, 1);
    assert_int_equal(spikeq_decode(c, &b), -1);
    assert_non_null(strstr(spikeq_context_error(c), "seq_id 2"));
    b.n_tokens = 0;
    spikeq_batch_add(&b, 32000, 0, 0, 1);
    assert_int_equal(spikeq_decode(c, &b), -1);
    assert_non_null(strstr(spikeq_context_error(c), "vocabulary"));
    b.n_tokens = 0;
    spikeq_batch_add(&b, 1, 0, 0, 1);
    spikeq_batch_add(&b, 450, 0, 0, 1);
    assert_int_equal(spikeq_decode(c, &b), -1);
    assert_non_null(strstr(spikeq_context_error(c), "same sequence and position"));
    b.n_tokens = 0;
    for (int i = 0; i < 5; i++) spikeq_batch_add(&b, 1, i, 0, 0);
    assert_int_equal(spikeq_decode(c, &b), -1); /* n_batch 4 */
    assert_int_equal(spikeq_kv_len(c, 0), 0);
    b.n_tokens = 0;
    spikeq_batch_add(&b, 1, 0, 0, 1);
    spikeq_batch_add(&b, 450, 1, 0, 1);
    assert_int_equal(spikeq_decode(c, &b), 0);
    assert_string_equal(spikeq_context_error(c), "");
    assert_int_equal(spikeq_kv_len(c, 0), 2);
    assert_int_equal(spikeq_kv_copy(c, 0, 1, 3), -1);
    assert_int_equal(spikeq_kv_truncate(c, 0, 1), 0);
    assert_int_equal(spikeq_kv_len(c, 0), 1);
    spikeq_kv_clear(c, -1);
    assert_int_equal(spikeq_kv_len(c, 0), 0);
    spikeq_batch_free(&b);
    spikeq_context_free(c);
    spikeq_model_free(m);
}

static void test_text_and_sampler(void **st)
{
    (void)st;
    spikeq_model *m = load();
    spikeq_token ids[8];
    assert_int_equal(spikeq_tokenize(m, "The quick brown fox", -1, ids, 8, 0, 0), 5);
    assert_int_equal(ids[0], 450);
    assert_int_equal(spikeq_tokenize(m, "The quick brown fox", -1, ids, 2, 1, 0), -6); /* room for 6 needed */
    char buf[64];
    int n = spikeq_token_to_piece(m, 450, 4996, buf, sizeof buf);
    assert_int_equal(n, 6);
    assert_memory_equal(buf, " quick", 6);
    assert_true(spikeq_token_to_piece(m, 450, 4996, buf, 3) < 0);
    spikeq_sampler_params sp = spikeq_sampler_default_params();
    sp.temp = 0;
    spikeq_sampler *s = spikeq_sampler_new(&sp);
    float lg[5] = {0, 3, 1, 3, -1};
    assert_int_equal(spikeq_sampler_sample(s, lg, 5), 1);
    spikeq_sampler_free(s);
    sp.top_p = 0;
    assert_null(spikeq_sampler_new(&sp));
    spikeq_model_free(m);
}

/* The chat formats as their templates write them; recognised from template text; the format's
 * name travels in a .spq's tokenizer section. */
static void test_chat(void **st)
{
    (void)st;
    spikeq_model *m = load();
    assert_null(spikeq_model_chat_template(m)); /* the shipped base model names none */
    spikeq_chat_message conv[] = {{"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}};
    static const struct { const char *name, *want; } F[] = {
        {"llama2", "[INST] <<SYS>>\nS\n<</SYS>>\n\nU1 [/INST] A1 </s><s>[INST] U2 [/INST]"},
        {"mistral", "[INST] S\n\nU1 [/INST]A1</s>[INST] U2 [/INST]"},
        {"llama3", "<|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nU1"
                   "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nA1<|eot_id|><|start_header_id|>user"
                   "<|end_header_id|>\n\nU2<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"},
        {"chatml", "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n"
                   "<|im_start|>user\nU2<|im_end|>\n<|im_start|>assistant\n"},
        {"zephyr", "<|system|>\nS</s>\n<|user|>\nU1</s>\n<|assistant|>\nA1</s>\n<|user|>\nU2</s>\n<|assistant|>\n"},
    };
    char buf[512];
    for (size_t i = 0; i < sizeof F / sizeof F[0]; i++) {
        int32_t n = spikeq_chat_apply(m, F[i].name, conv, 4, 1, buf, sizeof buf);
        if (n < 0 || strcmp(buf, F[i].want)) { fprintf(stderr, "  %s: [%s]\n", F[i].name, buf); fail(); }
        assert_int_equal(spikeq_chat_apply(m, F[i].name, conv, 4, 1, buf, 10), -(n + 1));
    }
    int32_t k = spikeq_chat_apply(m, NULL, conv, 2, 1, buf, sizeof buf);
    assert_true(k > 0 && k == (int32_t)strlen(buf));
    assert_non_null(strstr(buf, "<|im_start|>")); /* no format named: ChatML */
    assert_int_equal(spikeq_chat_apply(m, "vicuna", conv, 4, 1, buf, sizeof buf), INT32_MIN);
    spikeq_chat_message robot = {"robot", "x"};
    assert_int_equal(spikeq_chat_apply(m, "chatml", &robot, 1, 1, buf, sizeof buf), INT32_MIN);
    assert_string_equal(spikeq_chat_eot(m, "llama3"), "<|eot_id|>");
    /* recognition from template text, as tokenizer_config.json and GGUF carry it */
    assert_string_equal(spq_chat_detect("{% for m in messages %}<|start_header_id|>", 42), "llama3");
    const char *l2 = "{{ bos_token + '[INST] ' + '<<SYS>>\\n' }}";
    assert_string_equal(spq_chat_detect(l2, strlen(l2)), "llama2");
    assert_string_equal(spq_chat_detect("[INST] {{ m }} [/INST]", 22), "mistral");
    assert_string_equal(spq_chat_detect("<|user|>\n", 9), "zephyr");
    assert_null(spq_chat_detect("{{ messages }}", 14));
    spikeq_model_free(m);
    /* the name in the tokenizer blob, read back; an unknown name is refused */
    spq_ckpt c;
    spq_err e;
    assert_int_equal(spq_open("models/docs-llama-28m-w8a8.spq", &c, &e), 0);
    strcpy(c.tok.chat, "zephyr");
    uint8_t *blob;
    size_t nb = spq_tok_serialize(&c.tok, &blob);
    spq_tokenizer t;
    assert_int_equal(spq_tok_deserialize(blob, nb, &t), 0);
    assert_string_equal(t.chat, "zephyr");
    spq_tok_free(&t);
    memcpy(blob + 28, "vicuna", 7);
    assert_int_equal(spq_tok_deserialize(blob, nb, &t), -1);
    free(blob);
    spq_ckpt_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shared_prefix_batched),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_text_and_sampler),
        cmocka_unit_test(test_chat),
    };
    return cmocka_run_group_tests_name("api", tests, NULL, NULL);
}
