/* test_tokenizer.c — SentencePiece BPE against llama.cpp's vocab test vectors (llama-spm,
 * phi-3) and the sentencepiece library's ids (fixture from tests/ref/make_hf_refs.py) for
 * tokenizer.model and tokenizer.bin; byte-level BPE against llama.cpp's gpt-2 vectors and the
 * HF tokenizers library's ids (fixture from tests/ref/make_bpe_refs.py) for tokenizer.json with
 * the GPT-2, SmolLM and LLaMA-3 pre-tokenizers; decode round trips; and the sampler. */
#include "tests/helpers.h"
#include "format/open.h"

#include <cjson/cJSON.h>

#include "runtime/sampler.h"

#include <unistd.h>

#include "tok/tok_internal.h"

static char *read_all(const char *p, size_t *n)
{
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    assert_int_equal(fread(b, 1, *n, f), *n);
    b[*n] = 0;
    fclose(f);
    return b;
}

/* decode ids back to text (no BOS: the dummy-prefix space is removed once) */
static size_t decode(const spq_tokenizer *t, const int *ids, long n, char *out)
{
    size_t o = 0;
    char piece[1200];
    for (long i = 0; i < n; i++) {
        int len = spq_tok_piece(t, i == 0 ? t->bos_id : ids[i - 1], ids[i], piece, sizeof piece);
        memcpy(out + o, piece, (size_t)len);
        o += (size_t)len;
    }
    return o;
}

static void check_vocab_vectors(const char *name)
{
    char p[256];
    snprintf(p, sizeof p, "tokenizers/llamacpp-vocab/ggml-vocab-%s.gguf", name);
    const char *gguf = shared_path(p);
    spq_ckpt c;
    spq_err e;
    assert_int_equal(spq_open(gguf, &c, &e), 0);
    assert_int_equal(c.n, 0); /* vocab-only */
    snprintf(p, sizeof p, "%s.inp", gguf);
    size_t ni, no;
    char *inp = read_all(p, &ni);
    snprintf(p, sizeof p, "%s.out", gguf);
    char *outp = read_all(p, &no);
    const char *sep = "\n__ggml_vocab_test__\n";
    char *s = inp, *o = outp;
    int count = 0;
    while (s && *s) {
        char *end = strstr(s, sep);
        size_t len = end ? (size_t)(end - s) : strlen(s);
        char *eol = strchr(o, '\n');
        assert_non_null(eol);
        *eol = 0;
        int want[4096], nw = 0, got[4096];
        for (char *tok = strtok(o, " "); tok; tok = strtok(NULL, " ")) want[nw++] = atoi(tok);
        long ng = spq_tok_encode(&c.tok, s, len, 0, 0, got, 4096);
        if (ng != nw || memcmp(got, want, sizeof(int) * (size_t)nw)) {
            fprintf(stderr, "%s: string %d '%.*s' differs\n", name, count, (int)len, s);
            fail();
        }
        count++;
        o = eol + 1;
        s = end ? end + strlen(sep) : NULL;
    }
    fprintf(stderr, "  %s: %d strings identical to llama.cpp\n", name, count);
    assert_true(count >= 40);
    free(inp); free(outp);
    spq_ckpt_free(&c);
}

static void test_llamacpp_llama_spm(void **st) { (void)st; check_vocab_vectors("llama-spm"); }
static void test_llamacpp_phi3(void **st) { (void)st; check_vocab_vectors("phi-3"); }
static void test_llamacpp_gpt2(void **st) { (void)st; check_vocab_vectors("gpt-2"); }

/* tokenizer.model (protobuf), tokenizer.bin (llama2.c) and the tokenizer.json transformers
 * writes for the same model (tests/fixtures/llama2-tokenizer.json.gz: LlamaTokenizerFast
 * from_slow, transformers 5.17 / tokenizers 0.23.2; Metaspace, byte_fallback) give
 * sentencepiece's ids */
static void test_sentencepiece_reference(void **st)
{
    (void)st;
    /* the shared files first: a skip must not leave the fixture parsed (LeakSanitizer) */
    const char *model = shared_path("tokenizers/llama2/tokenizer.model"), *bin = shared_path("tokenizers/llama2/tokenizer.bin");
    size_t n;
    char *txt = read_all("tests/fixtures/sp_ids.json", &n);
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    spq_tokenizer tm, tb, tj;
    spq_err e;
    assert_int_equal(spq_tok_load_spm(model, &tm, &e), 0);
    assert_int_equal(spq_tok_load_llama2c(bin, 32000, &tb, &e), 0);
    char json[] = "/tmp/spq_llama2_tok_XXXXXX", cmd[256];
    close(mkstemp(json));
    snprintf(cmd, sizeof cmd, "gzip -dc tests/fixtures/llama2-tokenizer.json.gz > %s", json);
    assert_int_equal(system(cmd), 0);
    if (spq_tok_load_hf_json(json, &tj, &e)) fail_msg("%s", e.msg);
    unlink(json);
    assert_int_equal(tj.type, SPQ_TOK_SPM);
    const cJSON *S = cJSON_GetObjectItem(j, "strings"), *I = cJSON_GetObjectItem(j, "ids");
    int total = cJSON_GetArraySize(S), roundtrip = 0;
    static int got[1 << 16];
    static char back[1 << 18];
    for (int k = 0; k < total; k++) {
        const char *s = cJSON_GetArrayItem(S, k)->valuestring;
        const cJSON *ids = cJSON_GetArrayItem(I, k);
        int nw = cJSON_GetArraySize(ids);
        for (int pass = 0; pass < 3; pass++) {
            const spq_tokenizer *t = pass == 2 ? &tj : pass ? &tb : &tm;
            long ng = spq_tok_encode(t, s, strlen(s), 0, 0, got, 1 << 16);
            int same = ng == nw;
            for (int i = 0; same && i < nw; i++) same = got[i] == cJSON_GetArrayItem(ids, i)->valueint;
            if (!same) {
                fprintf(stderr, "%s: string %d '%s' differs from sentencepiece\n",
                        pass == 2 ? "tokenizer.json" : pass ? "tokenizer.bin" : "tokenizer.model", k, s);
                fail();
            }
            if (!pass) {
                size_t bl = decode(t, got, ng, back);
                /* a literal U+2581 is SentencePiece's own space marker: it decodes to ' ' by
                 * design, so those strings cannot round-trip (sentencepiece's decode agrees) */
                if (bl == strlen(s) && !memcmp(back, s, bl)) roundtrip++;
                else if (!strstr(s, "\xe2\x96\x81")) { fprintf(stderr, "round trip failed for string %d '%s' -> '%.*s'\n", k, s, (int)bl, back); fail(); }
            }
        }
    }
    fprintf(stderr, "  %d strings identical to sentencepiece (tokenizer.model, .bin and .json); %d/%d round trip exactly\n",
            total, roundtrip, total);
    /* word by word (LLaMA-2's vocabulary allows it) = the whole text merged at once, on the
     * vectors and on WikiText-2's first 300 KB */
    assert_int_equal(tm.space_split, 1);
    size_t wn;
    char *wiki = read_all(shared_path("data/wikitext-2-raw/wiki.test.raw"), &wn);
    if (wn > 300000) wn = 300000;
    while (wn && ((unsigned char)wiki[wn] & 0xC0) == 0x80) wn--; /* end on a character */
    static int whole[120000], words[120000];
    long nw1 = spq_tok_encode(&tm, wiki, wn, 1, 0, words, 120000);
    tm.space_split = 0;
    long nw0 = spq_tok_encode(&tm, wiki, wn, 1, 0, whole, 120000);
    assert_true(nw1 > 50000 && nw1 <= 120000);
    assert_int_equal(nw0, nw1);
    assert_memory_equal(whole, words, sizeof(int) * (size_t)nw1);
    free(wiki);
    /* a vocabulary with a piece holding "▁" after another character is merged whole */
    const char *pc[] = {"a", "b", "\xe2\x96\x81", "a\xe2\x96\x81", "a\xe2\x96\x81" "b"};
    int pl[] = {1, 1, 3, 4, 5};
    float sc[] = {0, 0, 0, 1, 2};
    spq_tokenizer tx;
    assert_int_equal(spq_tok_build(&tx, 5, pc, pl, sc, NULL, -1, -1, -1, &e), 0);
    assert_int_equal(tx.space_split, 0);
    tx.add_space_prefix = 0;
    assert_int_equal(spq_tok_encode(&tx, "a b", 3, 0, 0, got, 8), 1);
    assert_int_equal(got[0], 4);
    spq_tok_free(&tx);
    spq_tok_free(&tm); spq_tok_free(&tb); spq_tok_free(&tj);
    cJSON_Delete(j);
}

/* tokenizer.json (HF tokenizers' serialisation, vocab refilled from the gpt-2 GGUF) gives the
 * tokenizers library's ids for every pre-tokenizer family, decodes back exactly, and survives
 * the .spq blob */
static void test_hf_tokenizers_reference(void **st)
{
    (void)st;
    spq_ckpt g;
    spq_err e;
    assert_int_equal(spq_open(shared_path("tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf"), &g, &e), 0);
    const spq_tokenizer *gt = &g.tok;
    size_t n;
    char *txt = read_all("tests/fixtures/bpe_ids.json", &n);
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    assert_non_null(j);
    const cJSON *S = cJSON_GetObjectItem(j, "strings");
    int total = cJSON_GetArraySize(S);
    static int got[1 << 16];
    static char back[1 << 18];
    const char *kinds[] = {"gpt2", "smollm", "llama3"};
    for (int v = 0; v < 3; v++) {
        const cJSON *var = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "variants"), kinds[v]);
        cJSON *sk = cJSON_Duplicate(cJSON_GetObjectItem(var, "skeleton"), 1);
        cJSON *model = cJSON_GetObjectItem(sk, "model");
        cJSON *vocab = cJSON_CreateObject(), *merges = cJSON_CreateArray();
        for (int i = 0; i < gt->n_vocab; i++)
            if (gt->types[i] == SPQ_PT_NORMAL) cJSON_AddNumberToObject(vocab, gt->pieces[i], i);
        for (int r = 0; r < gt->n_merges; r++) {
            const char *a = gt->pieces[gt->merges[2 * r]], *b = gt->pieces[gt->merges[2 * r + 1]];
            if (v == 2) { /* newer tokenizers write [a, b] pairs, older "a b" strings: both */
                const char *ab[2] = {a, b};
                cJSON_AddItemToArray(merges, cJSON_CreateStringArray(ab, 2));
            } else {
                char m[512];
                snprintf(m, sizeof m, "%s %s", a, b);
                cJSON_AddItemToArray(merges, cJSON_CreateString(m));
            }
        }
        cJSON_ReplaceItemInObject(model, "vocab", vocab);
        cJSON_ReplaceItemInObject(model, "merges", merges);
        char path[] = "/tmp/spq-tokjson-XXXXXX";
        int fd = mkstemp(path);
        assert_true(fd >= 0);
        char *out = cJSON_PrintUnformatted(sk);
        assert_int_equal(write(fd, out, strlen(out)), (ssize_t)strlen(out));
        close(fd);
        free(out);
        cJSON_Delete(sk);
        spq_tokenizer t, t2;
        if (spq_tok_load_hf_json(path, &t, &e)) fail_msg("%s", e.msg);
        unlink(path);
        assert_int_equal(t.type, SPQ_TOK_BPE);
        uint8_t *blob;
        size_t bn = spq_tok_serialize(&t, &blob);
        assert_int_equal(spq_tok_deserialize(blob, bn, &t2), 0);
        free(blob);
        int roundtrip = 0;
        for (int k = 0; k < total; k++) {
            const char *s = cJSON_GetArrayItem(S, k)->valuestring;
            const cJSON *ids = cJSON_GetArrayItem(cJSON_GetObjectItem(var, "ids"), k);
            int nw = cJSON_GetArraySize(ids);
            for (int pass = 0; pass < 2; pass++) {
                long ng = spq_tok_encode(pass ? &t2 : &t, s, strlen(s), 0, 0, got, 1 << 16);
                int same = ng == nw;
                for (int i = 0; same && i < nw; i++) same = got[i] == cJSON_GetArrayItem(ids, i)->valueint;
                if (!same) {
                    fprintf(stderr, "%s%s: string %d '%s' differs from tokenizers\n", kinds[v], pass ? " (.spq blob)" : "", k, s);
                    fail();
                }
            }
            size_t bl = decode(&t, got, nw, back);
            roundtrip += bl == strlen(s) && !memcmp(back, s, bl);
        }
        fprintf(stderr, "  tokenizer.json %s: %d strings identical to HF tokenizers; %d/%d round trip exactly\n",
                kinds[v], total, roundtrip, total);
        assert_int_equal(roundtrip, total); /* byte-level BPE is lossless */
        assert_true(total >= 300);
        spq_tok_free(&t); spq_tok_free(&t2);
    }
    /* special tokens only when asked; invalid UTF-8 still encodes and round-trips */
    int x[64];
    assert_int_equal(spq_tok_encode(gt, "<|endoftext|>", 13, 0, 1, x, 64), 1);
    assert_int_equal(x[0], 50256);
    assert_true(spq_tok_encode(gt, "<|endoftext|>", 13, 0, 0, x, 64) > 1);
    const char bad[] = "a\xff\xfe b\xc3(\xe2\x82 c";
    long nb = spq_tok_encode(gt, bad, sizeof bad - 1, 0, 0, x, 64);
    assert_true(nb > 0 && nb < 64);
    size_t bl = decode(gt, x, nb, back);
    assert_int_equal(bl, sizeof bad - 1);
    assert_memory_equal(back, bad, bl);
    cJSON_Delete(j);
    spq_ckpt_free(&g);
}

/* .spq stores the tokenizer: serialise/deserialise gives the same encoder */

/* Every tokenizer.ggml.pre spikeq knows cuts text into the words HF tokenizers' Split
 * pre-tokenizers (isolated, applied in turn) cut it into with the same regexes
 * (tests/fixtures/pre_splits.json.gz: tokenizers 0.23.2 on the device machine; the 201
 * sentencepiece test strings of at most 200 bytes, and 8 of letter case, digits, CJK and
 * whitespace) */
static void test_pre_tokenizers(void **st)
{
    (void)st;
    char path[] = "/tmp/spq_pre_XXXXXX", cmd[256];
    close(mkstemp(path));
    snprintf(cmd, sizeof cmd, "gzip -dc tests/fixtures/pre_splits.json.gz > %s", path);
    assert_int_equal(system(cmd), 0);
    size_t n;
    char *txt = read_all(path, &n);
    unlink(path);
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    assert_non_null(j);
    const cJSON *S = cJSON_GetObjectItem(j, "strings"), *sp = cJSON_GetObjectItem(j, "splits");
    static size_t off[1 << 16], len[1 << 16];
    int presets = 0;
    for (const cJSON *p = sp->child; p; p = p->next, presets++) {
        spq_tokenizer t;
        spq_err e;
        const char *piece = "a";
        int l = 1;
        assert_int_equal(spq_tok_build(&t, 1, &piece, &l, NULL, NULL, -1, -1, -1, &e), 0);
        if (spq_tok_make_bpe(&t, p->string, 0, NULL, NULL, "test", &e)) fail_msg("%s: %s", p->string, e.msg);
        int k = 0;
        for (const cJSON *want = p->child; want; want = want->next, k++) {
            const char *s = cJSON_GetArrayItem(S, k)->valuestring;
            long got = spq_bpe_pretokenize(&t, s, strlen(s), off, len, 1 << 16);
            int same = got == cJSON_GetArraySize(want);
            for (long i = 0; same && i < got; i++) {
                const cJSON *w = cJSON_GetArrayItem(want, (int)i);
                same = (size_t)cJSON_GetArrayItem(w, 0)->valuedouble == off[i] && (size_t)cJSON_GetArrayItem(w, 1)->valuedouble == len[i];
            }
            if (!same) fail_msg("pre-tokenizer %s: string %d '%.60s' splits differently from HF tokenizers", p->string, k, s);
        }
        spq_tok_free(&t);
    }
    fprintf(stderr, "  %d pre-tokenizers: %d strings each split as HF tokenizers splits them\n", presets, cJSON_GetArraySize(S));
    cJSON_Delete(j);
}

static void test_tokenizer_blob(void **st)
{
    (void)st;
    spq_tokenizer a, b;
    spq_err e;
    assert_int_equal(spq_tok_load_spm(shared_path("tokenizers/llama2/tokenizer.model"), &a, &e), 0);
    uint8_t *blob;
    size_t n = spq_tok_serialize(&a, &blob);
    assert_int_equal(spq_tok_deserialize(blob, n, &b), 0);
    const char *s = "Tokenizers travel inside .spq files: 日本語 🙂 x=42";
    int x[256], y[256];
    long nx = spq_tok_encode(&a, s, strlen(s), 1, 0, x, 256), ny = spq_tok_encode(&b, s, strlen(s), 1, 0, y, 256);
    assert_int_equal(nx, ny);
    assert_memory_equal(x, y, sizeof(int) * (size_t)nx);
    spq_tok_free(&b);
    assert_int_equal(spq_tok_deserialize(blob, n / 2, &b), -1); /* truncated blob */
    /* special tokens are recognised only when asked */
    long k = spq_tok_encode(&a, "</s>", 4, 0, 1, x, 256);
    assert_int_equal(k, 1);
    assert_int_equal(x[0], 2);
    k = spq_tok_encode(&a, "</s>", 4, 0, 0, x, 256);
    assert_true(k > 1);
    free(blob);
    spq_tok_free(&a); spq_tok_free(&b);
}

static void test_sampler(void **st)
{
    (void)st;
    float lg[100];
    for (int i = 0; i < 100; i++) lg[i] = test_rand() * 3;
    lg[42] = 10;
    spq_sampler_params p = spq_sampler_defaults();
    p.temp = 0;
    spq_sampler s;
    spq_sampler_init(&s, &p);
    assert_int_equal(spq_sample(&s, lg, 100), 42);
    spq_sampler_free(&s);
    /* a seed reproduces the sequence; another seed changes it */
    p = spq_sampler_defaults();
    p.temp = 1.5f; p.top_k = 0; p.top_p = 1.0f; p.min_p = 0; p.seed = 7;
    int a[200], b[200], c[200];
    for (int run = 0; run < 3; run++) {
        p.seed = run == 2 ? 8 : 7;
        spq_sampler_init(&s, &p);
        for (int i = 0; i < 200; i++) (run == 0 ? a : run == 1 ? b : c)[i] = spq_sample(&s, lg, 100);
        spq_sampler_free(&s);
    }
    assert_memory_equal(a, b, sizeof a);
    assert_true(memcmp(a, c, sizeof a) != 0);
    /* top-k 1 is greedy; top-p tiny is greedy; min-p 0.99 is greedy */
    p.top_k = 1;
    spq_sampler_init(&s, &p);
    for (int i = 0; i < 20; i++) assert_int_equal(spq_sample(&s, lg, 100), 42);
    spq_sampler_free(&s);
    p.top_k = 0; p.top_p = 1e-6f;
    spq_sampler_init(&s, &p);
    for (int i = 0; i < 20; i++) assert_int_equal(spq_sample(&s, lg, 100), 42);
    spq_sampler_free(&s);
    /* top-k 5: only the 5 largest logits are ever drawn, and (temp 50) each of them is */
    float flat[300];
    for (int i = 0; i < 300; i++) flat[i] = (float)((i * 37) % 300) / 100.0f; /* distinct, shuffled */
    p = spq_sampler_defaults();
    p.temp = 50.0f; p.top_k = 5; p.top_p = 1.0f; p.min_p = 0; p.seed = 3;
    spq_sampler_init(&s, &p);
    int seen[300] = {0};
    for (int i = 0; i < 3000; i++) seen[spq_sample(&s, flat, 300)]++;
    spq_sampler_free(&s);
    int kept = 0;
    for (int i = 0; i < 300; i++) {
        if (!seen[i]) continue;
        kept++;
        assert_true(flat[i] >= 2.95f); /* the five largest are 2.95 .. 2.99 */
    }
    assert_int_equal(kept, 5);
    /* repetition penalty pushes a repeated winner down */
    p = spq_sampler_defaults();
    p.temp = 0; p.repeat_penalty = 100.0f;
    spq_sampler_init(&s, &p);
    spq_sampler_accept(&s, 42);
    assert_true(spq_sample(&s, lg, 100) != 42);
    spq_sampler_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_llamacpp_llama_spm),
        cmocka_unit_test(test_llamacpp_phi3),
        cmocka_unit_test(test_llamacpp_gpt2),
        cmocka_unit_test(test_sentencepiece_reference),
        cmocka_unit_test(test_hf_tokenizers_reference),
        cmocka_unit_test(test_pre_tokenizers),
        cmocka_unit_test(test_tokenizer_blob),
        cmocka_unit_test(test_sampler),
    };
    return cmocka_run_group_tests_name("tokenizer", tests, NULL, NULL);
}
