/* test_formats.c — importers against transformers (HF fixtures in F32/F16/BF16, sharded,
 * GQA, llama3 RoPE, tied), the same models written as GGUF (F32/F16 and Q8_0), and one
 * test per class of bad input: each must fail with a message naming the file. */
#include "tests/helpers.h"
#include "format/open.h"

#include <cjson/cJSON.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "format/ggml_quants.h"

static const char *FIXTURES[] = {"llama2-mha-f32", "llama3-gqa-f32", "llama3-gqa-bf16", "mistral-gqa-f16-sharded",
                                 "smollm-tied-f16"};

static float *ref_logits(const char *dir, int *ids, int *n, int *V)
{
    char p[512];
    snprintf(p, sizeof p, "%s/logits.json", dir);
    FILE *f = fopen(p, "rb");
    assert_non_null(f);
    char *buf = calloc(1 << 22, 1);
    size_t len = fread(buf, 1, (1 << 22) - 1, f);
    fclose(f);
    cJSON *j = cJSON_ParseWithLength(buf, len);
    free(buf);
    const cJSON *ji = cJSON_GetObjectItem(j, "ids"), *jl = cJSON_GetObjectItem(j, "logits");
    *n = cJSON_GetArraySize(ji);
    *V = cJSON_GetArraySize(cJSON_GetArrayItem(jl, 0));
    float *lg = malloc(sizeof(float) * (size_t)*n * *V);
    for (int i = 0; i < *n; i++) {
        ids[i] = cJSON_GetArrayItem(ji, i)->valueint;
        for (int v = 0; v < *V; v++) lg[(size_t)i * *V + v] = (float)cJSON_GetArrayItem(cJSON_GetArrayItem(jl, i), v)->valuedouble;
    }
    cJSON_Delete(j);
    return lg;
}

static void test_hf_matches_transformers(void **st)
{
    (void)st;
    for (size_t k = 0; k < sizeof FIXTURES / sizeof FIXTURES[0]; k++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tests/fixtures/hf/%s", FIXTURES[k]);
        int ids[64], n, V;
        float *ref = ref_logits(dir, ids, &n, &V);
        spq_ckpt c;
        spq_err e;
        if (spq_open(dir, &c, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
        float *lg = run_logits(&c, ids, n, 0);
        double r = rel_err(lg, ref, (size_t)n * V);
        /* weights stored in F16/BF16 are exact in FP32: the same bound, except where the BF16
         * GEMM rounds the activations to BF16 too (vdpbf16ps), as a BF16 run does */
        int rounds = strstr(FIXTURES[k], "bf16") && spq_kern()->bf16_rounds_x;
        fprintf(stderr, "  %-26s max relative error vs transformers %.2e%s\n", FIXTURES[k], r,
                rounds ? " (activations rounded to BF16)" : "");
        assert_true(r <= (rounds ? 5e-3 : 1e-4));
        free(lg); free(ref);
        spq_ckpt_free(&c);
    }
}

/* ---- a small GGUF writer (llama.cpp's layout: q/k rows interleaved for RoPE) ---- */
static void w_str(FILE *f, const char *s) { uint64_t n = strlen(s); fwrite(&n, 8, 1, f); fwrite(s, 1, n, f); }
static void w_u32kv(FILE *f, const char *k, uint32_t v) { uint32_t t = 4; w_str(f, k); fwrite(&t, 4, 1, f); fwrite(&v, 4, 1, f); }
static void w_f32kv(FILE *f, const char *k, float v) { uint32_t t = 6; w_str(f, k); fwrite(&t, 4, 1, f); fwrite(&v, 4, 1, f); }

static const char *gguf_name(const char *hf, char *out)
{
    int l;
    char what[64];
    static const char *map[][2] = {{"input_layernorm.weight", "attn_norm.weight"}, {"self_attn.q_proj.weight", "attn_q.weight"},
                                   {"self_attn.k_proj.weight", "attn_k.weight"}, {"self_attn.v_proj.weight", "attn_v.weight"},
                                   {"self_attn.o_proj.weight", "attn_output.weight"}, {"post_attention_layernorm.weight", "ffn_norm.weight"},
                                   {"mlp.gate_proj.weight", "ffn_gate.weight"}, {"mlp.up_proj.weight", "ffn_up.weight"},
                                   {"mlp.down_proj.weight", "ffn_down.weight"}};
    if (sscanf(hf, "model.layers.%d.%63s", &l, what) == 2)
        for (size_t i = 0; i < 9; i++)
            if (!strcmp(what, map[i][0])) { sprintf(out, "blk.%d.%s", l, map[i][1]); return out; }
    if (!strcmp(hf, "model.embed_tokens.weight")) return "token_embd.weight";
    if (!strcmp(hf, "model.norm.weight")) return "output_norm.weight";
    if (!strcmp(hf, "lm_head.weight")) return "output.weight";
    return NULL;
}

/* ggml's reference Q4_0 of 32 weights: d = (the weight of largest magnitude) / -8, codes
 * min(15, (int)(x / d + 8.5)) */
static void q4_0_block(const float *x, uint8_t *b)
{
    float amax = 0, mx = 0;
    for (int q = 0; q < 32; q++)
        if (fabsf(x[q]) > amax) { amax = fabsf(x[q]); mx = x[q]; }
    float d = mx / -8, id = d ? 1.0f / d : 0.0f;
    uint16_t h = spq_f32_to_f16(d);
    memcpy(b, &h, 2);
    for (int j = 0; j < 16; j++) {
        int a = (int8_t)(x[j] * id + 8.5f), c = (int8_t)(x[j + 16] * id + 8.5f);
        b[2 + j] = (uint8_t)((a < 15 ? a : 15) | (c < 15 ? c : 15) << 4);
    }
}

/* x[n] through Q4_0 and back: the blocks' values, d * (q - 8) (spikeq runs the blocks) */
static void q4_0_roundtrip(float *x, size_t n)
{
    uint8_t b[18];
    for (size_t k = 0; k < n; k += 32) {
        q4_0_block(x + k, b);
        uint16_t h;
        memcpy(&h, b, 2);
        float d = spq_f16_to_f32(h);
        for (int j = 0; j < 16; j++) {
            x[k + j] = d * (float)((b[2 + j] & 0xF) - 8);
            x[k + j + 16] = d * (float)((b[2 + j] >> 4) - 8);
        }
    }
}

/* Blocks made by ggml itself (tests/fixtures/ggml_blocks.bin): ggml's quantiser
 * (ggml_quantize_chunk without an importance matrix, the path llama-quantize takes; ggml
 * d99724f) on a fixed input of 4 rows x 256 weights, and ggml's dequantization of them. File:
 * "KBLK", u32 types, u32 n, n floats of input, then per type u32 type, u32 bytes, the blocks,
 * n floats. */
typedef struct {
    int n, count;
    const float *x;
    struct { int type; uint32_t bytes; const uint8_t *b; const float *y; } k[16];
    uint8_t *file;
} ggml_fixture;

static size_t slurp(const char *p, uint8_t **out)
{
    FILE *f = fopen(p, "rb");
    fseek(f, 0, SEEK_END);
    size_t n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    *out = malloc(n);
    assert_int_equal(fread(*out, 1, n, f), n);
    fclose(f);
    return n;
}

static void ggml_fixture_load(ggml_fixture *fx)
{
    size_t n = slurp("tests/fixtures/ggml_blocks.bin", &fx->file), at = 12;
    uint32_t h[3];
    memcpy(h, fx->file, 12);
    assert_int_equal(h[0], 0x4b424c4b);
    assert_true(h[1] <= 16);
    fx->count = (int)h[1];
    fx->n = (int)h[2];
    fx->x = (const float *)(fx->file + at);
    at += 4 * (size_t)fx->n;
    for (int i = 0; i < fx->count; i++) {
        uint32_t tb[2];
        memcpy(tb, fx->file + at, 8);
        fx->k[i].type = (int)tb[0];
        fx->k[i].bytes = tb[1];
        fx->k[i].b = fx->file + at + 8;
        at += 8 + tb[1];
        fx->k[i].y = (const float *)(fx->file + at);
        at += 4 * (size_t)fx->n;
    }
    assert_int_equal(at, n);
}

/* A tensor's rows in GGUF's order: llama.cpp interleaves q/k rows for RoPE (the inverse of
 * spq_unpermute_rope: row j*hd/2+i -> 2i+j); other tensors unchanged. Takes v, returns the
 * tensor in GGUF order. */
static float *gguf_rows(const spq_config *p, const spq_tensor *t, float *v)
{
    int heads = strstr(t->name, "q_proj") ? p->n_heads : strstr(t->name, "k_proj") ? p->n_kv_heads : 0;
    if (!heads) return v;
    int hd = p->head_dim, K = (int)t->shape[1];
    float *o = malloc(4 * spq_tensor_numel(t));
    for (int h = 0; h < heads; h++)
        for (int i2 = 0; i2 < hd / 2; i2++)
            for (int j = 0; j < 2; j++)
                memcpy(o + ((size_t)h * hd + 2 * i2 + j) * K, v + ((size_t)h * hd + j * hd / 2 + i2) * K, 4 * (size_t)K);
    free(v);
    return o;
}

/* The fixture's type for the i-th 2-D tensor of a K-quant test file, and element j of a
 * tensor made of its blocks: block b of the tensor is the fixture's block b mod its count. */
static int fixture_pick(const ggml_fixture *fx, int i) { return i % fx->count; }
static float fixture_weight(const ggml_fixture *fx, int k, size_t j)
{
    int el;
    size_t bytes;
    spq_ggml_block(fx->k[k].type, &el, &bytes);
    size_t nb = (size_t)fx->n / (size_t)el;
    return fx->k[k].y[(j / (size_t)el) % nb * (size_t)el + j % (size_t)el];
}

/* q8: write 2-D weights as Q8_0 (blocks of 32: f16 scale + 32 int8); 2: as Q4_0; 3: linears
 * (not the embedding) as the fixture fx's blocks of every type in turn */
static void write_gguf(const spq_ckpt *c, const char *path, int q8, const ggml_fixture *fx)
{
    FILE *f = fopen(path, "wb");
    const spq_config *p = &c->cfg;
    uint32_t ver = 3;
    int extra = p->rope_type == 1; /* llama3 RoPE travels as rope_freqs.weight, as llama.cpp converts it */
    uint64_t nt = (uint64_t)c->n + (uint64_t)extra, nkv = 9;
    fwrite("GGUF", 1, 4, f); fwrite(&ver, 4, 1, f); fwrite(&nt, 8, 1, f); fwrite(&nkv, 8, 1, f);
    uint32_t ts = 8;
    w_str(f, "general.architecture"); fwrite(&ts, 4, 1, f); w_str(f, "llama");
    w_u32kv(f, "llama.block_count", (uint32_t)p->n_layers);
    w_u32kv(f, "llama.embedding_length", (uint32_t)p->dim);
    w_u32kv(f, "llama.feed_forward_length", (uint32_t)p->hidden_dim);
    w_u32kv(f, "llama.attention.head_count", (uint32_t)p->n_heads);
    w_u32kv(f, "llama.attention.head_count_kv", (uint32_t)p->n_kv_heads);
    w_u32kv(f, "llama.context_length", (uint32_t)p->max_seq);
    w_f32kv(f, "llama.rope.freq_base", p->rope_theta);
    w_f32kv(f, "llama.attention.layer_norm_rms_epsilon", p->norm_eps);
    /* tensors: FP32 data (F16 source kept F16), q/k permuted to interleaved order */
    void **data = calloc((size_t)c->n + 1, sizeof *data);
    size_t *size = calloc((size_t)c->n + 1, sizeof *size);
    uint64_t off = 0;
    char nm[96];
    for (int i = 0; i < c->n; i++) {
        const spq_tensor *t = &c->t[i];
        size_t n = spq_tensor_numel(t);
        float *v = malloc(4 * n);
        spq_tensor_to_f32(t, v);
        v = gguf_rows(p, t, v);
        uint32_t type = 0;
        if (q8 == 3 && t->ndim == 2 && strstr(t->name, "layers.")) {
            int k = fixture_pick(fx, i), el;
            size_t bytes;
            spq_ggml_block(fx->k[k].type, &el, &bytes);
            size_t nb = n / (size_t)el, fnb = (size_t)fx->n / (size_t)el;
            uint8_t *b = malloc(nb * bytes);
            for (size_t q = 0; q < nb; q++) memcpy(b + q * bytes, fx->k[k].b + q % fnb * bytes, bytes);
            type = (uint32_t)fx->k[k].type;
            data[i] = b; size[i] = nb * bytes;
            free(v);
        } else if (q8 == 2 && t->ndim == 2) {
            type = 2;
            uint8_t *b = malloc(n / 32 * 18);
            for (size_t k = 0; k < n / 32; k++) q4_0_block(v + k * 32, b + k * 18);
            data[i] = b; size[i] = n / 32 * 18;
            free(v);
        } else if (q8 && t->ndim == 2) {
            type = 8;
            uint8_t *b = malloc(n / 32 * 34);
            for (size_t k = 0; k < n / 32; k++) {
                float amax = 0;
                for (int q = 0; q < 32; q++) amax = fmaxf(amax, fabsf(v[k * 32 + q]));
                float d = amax / 127.0f;
                uint16_t h = spq_f32_to_f16(d);
                memcpy(b + k * 34, &h, 2);
                for (int q = 0; q < 32; q++) b[k * 34 + 2 + q] = (uint8_t)(int8_t)lrintf(d > 0 ? v[k * 32 + q] / d : 0);
            }
            data[i] = b; size[i] = n / 32 * 34;
            free(v);
        } else if (t->dtype == SPQ_F16) {
            type = 1;
            uint16_t *h = malloc(2 * n);
            for (size_t k = 0; k < n; k++) h[k] = spq_f32_to_f16(v[k]);
            data[i] = h; size[i] = 2 * n;
            free(v);
        } else {
            data[i] = v; size[i] = 4 * n;
        }
        w_str(f, gguf_name(t->name, nm));
        uint32_t nd = (uint32_t)t->ndim;
        fwrite(&nd, 4, 1, f);
        for (int d = t->ndim - 1; d >= 0; d--) { uint64_t x = (uint64_t)t->shape[d]; fwrite(&x, 8, 1, f); }
        fwrite(&type, 4, 1, f);
        fwrite(&off, 8, 1, f);
        off = (off + size[i] + 31) / 32 * 32;
    }
    if (extra) { /* convert_hf_to_gguf.py's factors: theta_i is divided by factor_i */
        int half = p->head_dim / 2;
        float *fac = malloc(sizeof(float) * (size_t)half);
        double lo_wl = p->rope_orig_ctx / p->rope_low_freq, hi_wl = p->rope_orig_ctx / p->rope_high_freq;
        for (int i = 0; i < half; i++) {
            double freq = 1.0 / pow(p->rope_theta, (double)(2 * i) / p->head_dim), wl = 2 * M_PI / freq;
            if (wl < hi_wl) fac[i] = 1;
            else if (wl > lo_wl) fac[i] = p->rope_factor;
            else {
                double sm = (p->rope_orig_ctx / wl - p->rope_low_freq) / (p->rope_high_freq - p->rope_low_freq);
                fac[i] = (float)(1 / ((1 - sm) / p->rope_factor + sm));
            }
        }
        data[c->n] = fac; size[c->n] = sizeof(float) * (size_t)half;
        w_str(f, "rope_freqs.weight");
        uint32_t nd = 1, type = 0;
        uint64_t x = (uint64_t)half;
        fwrite(&nd, 4, 1, f); fwrite(&x, 8, 1, f); fwrite(&type, 4, 1, f); fwrite(&off, 8, 1, f);
    }
    long pos = ftell(f);
    for (; pos % 32; pos++) fputc(0, f);
    for (int i = 0; i < c->n + extra; i++) {
        fwrite(data[i], 1, size[i], f);
        for (size_t k = size[i]; k % 32; k++) fputc(0, f);
        free(data[i]);
    }
    free(data); free(size);
    fclose(f);
}

static void test_gguf_matches_hf(void **st)
{
    (void)st;
    for (size_t k = 0; k < sizeof FIXTURES / sizeof FIXTURES[0]; k++) {
        char dir[256];
        snprintf(dir, sizeof dir, "tests/fixtures/hf/%s", FIXTURES[k]);
        int ids[64], n, V;
        float *ref = ref_logits(dir, ids, &n, &V);
        spq_ckpt c, g;
        spq_err e;
        assert_int_equal(spq_open(dir, &c, &e), 0);
        float *hf = run_logits(&c, ids, n, 0);
        for (int q8 = 0; q8 < 3; q8++) {
            char path[] = "/tmp/spq_gguf_XXXXXX";
            close(mkstemp(path));
            write_gguf(&c, path, q8, NULL);
            if (spq_open(path, &g, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
            if (q8 == 2) { /* Q4_0: every weight is the block's value, in HF's row order, kept in blocks */
                for (int i = 0; i < c.n; i++) {
                    const spq_tensor *a = &c.t[i], *b = spq_ckpt_find(&g, a->name);
                    if (a->ndim != 2) continue;
                    assert_non_null(b);
                    assert_int_equal(b->dtype, SPQ_GGML);
                    assert_string_equal(spq_tensor_type_name(b), "Q4_0");
                    size_t n = spq_tensor_numel(a);
                    float *x = malloc(4 * n), *y = malloc(4 * n);
                    spq_tensor_to_f32(a, x);
                    q4_0_roundtrip(x, n);
                    assert_int_equal(spq_tensor_to_f32(b, y), 0);
                    assert_memory_equal(x, y, 4 * n);
                    free(x); free(y);
                }
                fprintf(stderr, "  %-26s GGUF Q4_0: every tensor its blocks' values\n", FIXTURES[k]);
                spq_ckpt_free(&g);
                unlink(path);
                continue;
            }
            float *lg = run_logits(&g, ids, n, 0);
            double r = rel_err(lg, hf, (size_t)n * V);
            double rr = rel_err(lg, ref, (size_t)n * V);
            fprintf(stderr, "  %-26s GGUF %s vs HF path: %.2e, vs transformers %.2e\n", FIXTURES[k], q8 ? "Q8_0" : "F32/F16", r, rr);
            if (!q8 && !c.cfg.rope_type) assert_memory_equal(lg, hf, sizeof(float) * (size_t)n * V); /* identical weights: identical logits */
            else if (!q8) assert_true(rr < 1e-4); /* llama3: rope_freqs factors instead of the scaling formula */
            else assert_true(r < 0.05);
            free(lg);
            spq_ckpt_free(&g);
            unlink(path);
        }
        free(hf); free(ref);
        spq_ckpt_free(&c);
    }
}


/* ---- ggml's block formats: one hand-built block per type, the expected weights worked out
 * from the format's definition (ggml-common.h), not from the code under test ---- */
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }
enum { H1 = 0x3C00, H05 = 0x3800, H025 = 0x3400, H0125 = 0x3000, H2 = 0x4000, HM1 = 0xBC00 };

static float *deq(int type, const uint8_t *b, int n)
{
    float *y = malloc(sizeof(float) * (size_t)n);
    assert_int_equal(spq_ggml_dequant(type, b, y, n), 0);
    return y;
}

static void test_ggml_blocks(void **st)
{
    (void)st;
    static const int iq4[16] = {-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113};
    uint8_t b[256];
    float *y;
    /* Q4_0: d, 16 bytes, low nibble weight j, high nibble j + 16, minus 8 */
    memset(b, 0, sizeof b); put16(b, H05);
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | (15 - j) << 4);
    y = deq(GGML_Q4_0, b, 32);
    for (int j = 0; j < 16; j++) { assert_true(y[j] == 0.5f * (float)(j - 8)); assert_true(y[j + 16] == 0.5f * (float)(7 - j)); }
    free(y);
    /* Q4_1: d, m, nibbles without offset */
    memset(b, 0, sizeof b); put16(b, H025); put16(b + 2, HM1);
    for (int j = 0; j < 16; j++) b[4 + j] = (uint8_t)(j | j << 4);
    y = deq(GGML_Q4_1, b, 32);
    for (int j = 0; j < 16; j++) { assert_true(y[j] == 0.25f * (float)j - 1); assert_true(y[j + 16] == y[j]); }
    free(y);
    /* Q5_0: d, qh (bit j: the fifth bit of weight j), nibbles, minus 16 */
    memset(b, 0, sizeof b); put16(b, H1);
    uint32_t qh = 1u << 1 | 1u << 16;
    memcpy(b + 2, &qh, 4);
    y = deq(GGML_Q5_0, b, 32);
    for (int j = 0; j < 32; j++) assert_true(y[j] == (j == 1 || j == 16 ? 0.0f : -16.0f));
    free(y);
    /* Q5_1: d, m, qh, nibbles */
    memset(b, 0, sizeof b); put16(b, H2); put16(b + 2, H05);
    qh = 1u << 31;
    memcpy(b + 4, &qh, 4);
    b[8 + 15] = 0xF0;
    y = deq(GGML_Q5_1, b, 32);
    assert_true(y[31] == 2.0f * 31 + 0.5f); assert_true(y[0] == 0.5f); assert_true(y[15] == 0.5f);
    free(y);
    /* Q8_0: d, 32 int8 */
    memset(b, 0, sizeof b); put16(b, H0125);
    for (int j = 0; j < 32; j++) b[2 + j] = (uint8_t)(int8_t)(j - 16);
    y = deq(GGML_Q8_0, b, 32);
    for (int j = 0; j < 32; j++) assert_true(y[j] == 0.125f * (float)(j - 16));
    free(y);
    /* IQ4_NL: d, nibbles index the non-uniform table */
    memset(b, 0, sizeof b); put16(b, H1);
    for (int j = 0; j < 16; j++) b[2 + j] = (uint8_t)(j | j << 4);
    y = deq(GGML_IQ4_NL, b, 32);
    for (int j = 0; j < 16; j++) { assert_true(y[j] == (float)iq4[j]); assert_true(y[j + 16] == (float)iq4[j]); }
    free(y);
    /* Q2_K: scales[16] (scale | min << 4), qs[64] (2 bits, shift 2j), d, dmin; weight
     * 128n + 32j + l uses scale 8n + 2j + l/16 */
    memset(b, 0, sizeof b);
    for (int is = 0; is < 16; is++) b[is] = (uint8_t)(is | 1 << 4);
    for (int i = 0; i < 64; i++) b[16 + i] = 0xE4; /* 2-bit fields 0, 1, 2, 3 */
    put16(b + 80, H1); put16(b + 82, H05);
    y = deq(GGML_Q2_K, b, 256);
    assert_true(y[244] == 15.0f * 3 - 0.5f); /* n 1, j 3, l 20: scale 15, q 3 */
    assert_true(y[0] == -0.5f);              /* scale 0 */
    assert_true(y[32 + 17] == 3.0f * 1 - 0.5f); /* n 0, j 1, l 17: scale 3, q 1 */
    free(y);
    /* Q3_K: hmask[32], qs[64], scales[12], d; scale 13 = (scales[5] >> 4 | (scales[9] >> 6) << 4) - 32 */
    memset(b, 0, sizeof b);
    b[96 + 5] = 0x70; b[96 + 9] = 0xC0;
    b[32 + 49] = 0x20;  /* qs[32 n + l], n 1, l 17, shift 4: 2 */
    b[17] = 0x40;       /* hmask[17] bit 4 n + j = 6: no minus 4 */
    put16(b + 108, H1);
    y = deq(GGML_Q3_K, b, 256);
    assert_true(y[128 + 64 + 17] == 23.0f * 2);   /* scale 7 | 3 << 4 = 55, minus 32 */
    assert_true(y[0] == -32.0f * -4);             /* scale 0 - 32, q 0 - 4 */
    free(y);
    /* Q4_K / Q5_K: d, dmin, scales[12] (6-bit scale j and min j: j < 4 in bytes j and j + 4;
     * j >= 4 in byte j + 4's nibbles with the top bits of bytes j - 4 and j), [qh[32]], qs[128] */
    for (int five = 0; five < 2; five++) {
        memset(b, 0, sizeof b); put16(b, H1); put16(b + 2, H2);
        uint8_t *sc = b + 4, *qs = b + (five ? 48 : 16);
        sc[0] = 5; sc[4] = 3;          /* scale 0 = 5, min 0 = 3 */
        sc[9] = 0x21; sc[1] = 0xC0; sc[5] = 0x40; /* scale 5 = 1 | 3 << 4 = 49, min 5 = 2 | 1 << 4 = 18 */
        qs[0] = 0x09;                  /* weight 0: low nibble of qs[0] */
        qs[64 + 3] = 0x70;             /* weight 64 * 2 + 32 + 3: high nibble of qs[64 + 3] */
        if (five) b[16 + 3] = 0x20;    /* qh[3] bit 2 * 2 + 1: its fifth bit */
        y = deq(five ? GGML_Q5_K : GGML_Q4_K, b, 256);
        assert_true(y[0] == 5.0f * 9 - 2.0f * 3);
        assert_true(y[163] == 49.0f * (five ? 23 : 7) - 2.0f * 18);
        free(y);
    }
    /* Q6_K: ql[128], qh[64], int8 scales[16], d; weight 128 n + 64 + l = (ql[64 n + l] >> 4 |
     * (qh[32 n + l] >> 4 & 3) << 4) - 32, scale 8 n + l/16 + 4 */
    memset(b, 0, sizeof b);
    b[64 + 20] = 0xA0; b[128 + 32 + 20] = 0x20; b[192 + 13] = (uint8_t)(int8_t)-3; b[192] = 2;
    put16(b + 208, H05);
    y = deq(GGML_Q6_K, b, 256);
    assert_true(y[128 + 64 + 20] == 0.5f * -3 * 10);
    assert_true(y[0] == 0.5f * 2 * -32);
    free(y);
    /* IQ4_XS: d, scales_h (2 bits a group), scales_l[4] (a nibble a group), qs[128]; minus 32 */
    memset(b, 0, sizeof b); put16(b, H1); put16(b + 2, 0x00C0); b[4 + 1] = 0x50; b[8 + 48 + 2] = 0xF0;
    y = deq(GGML_IQ4_XS, b, 256);
    assert_true(y[32 * 3 + 16 + 2] == 21.0f * 113); /* group 3: 5 | 3 << 4 = 53, minus 32 */
    assert_true(y[0] == -32.0f * -127);
    free(y);
    /* sizes, names, refusals */
    int el;
    size_t nb;
    assert_int_equal(spq_ggml_block(GGML_Q4_K, &el, &nb), 0);
    assert_int_equal(el, 256); assert_int_equal(nb, 144);
    assert_int_equal(spq_ggml_block(16, &el, &nb), -1); /* IQ2_XXS: not read */
    assert_string_equal(spq_ggml_type_name(GGML_Q6_K), "Q6_K");
    float z[32];
    assert_int_equal(spq_ggml_dequant(GGML_Q4_0, b, z, 31), -1); /* not whole blocks */
}

/* ---- bad input ---- */
static void expect_fail(const char *path, const char *what)
{
    spq_ckpt c;
    spq_err e;
    memset(&e, 0, sizeof e);
    int rc = spq_open(path, &c, &e);
    if (rc == 0) {
        rc = spq_ckpt_validate(&c, &e); /* importers leave shape checks to model build */
        spq_ckpt_free(&c);
    }
    if (rc == 0 || !strstr(e.msg, path) || (what && !strstr(e.msg, what))) {
        fprintf(stderr, "expected failure with '%s' for %s, got rc=%d '%s'\n", what ? what : "", path, rc, e.msg);
        fail();
    }
    fprintf(stderr, "  ok: %s\n", e.msg);
}

static void spit(const char *p, const void *b, size_t n)
{
    FILE *f = fopen(p, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

/* ggml's reference quantiser on blocks whose codes follow from its formulas: Q4_0 / Q5_0
 * take d = (the signed value of largest magnitude) / -8 (-16) and code round-half-up
 * (x / d + 8.5, capped at 15), Q4_1 / Q5_1 d = (max - min) / 15 (31) and codes (x - min) / d
 * rounded, Q8_0 d = absmax / 127; every result is read back by the dequantiser. */
static void test_ggml_quant(void **st)
{
    (void)st;
    float x[64], y[64];
    uint8_t b[2 * 34];
    for (int j = 0; j < 32; j++) x[j] = (float)(j - 16) * 0.25f; /* -4 .. 3.75: max = -4 */
    assert_int_equal(spq_ggml_quant(GGML_Q4_0, x, b, 32), 0);
    assert_int_equal(spq_ggml_dequant(GGML_Q4_0, b, y, 32), 0);
    for (int j = 0; j < 32; j++) { /* d = 0.5: x / d + 8 = j / 2, ties up */
        int q = (j + 1) / 2 < 15 ? (j + 1) / 2 : 15;
        assert_true(y[j] == 0.5f * (float)(q - 8));
    }
    assert_int_equal(spq_ggml_quant(GGML_Q5_0, x, b, 32), 0);
    assert_int_equal(spq_ggml_dequant(GGML_Q5_0, b, y, 32), 0);
    for (int j = 0; j < 32; j++) assert_true(y[j] == x[j]); /* d = 0.25: exact */
    for (int j = 0; j < 32; j++) x[j] = 1.0f + (float)j * 0.5f; /* 1 .. 16.5: Q5_1 d = 0.5 */
    assert_int_equal(spq_ggml_quant(GGML_Q5_1, x, b, 32), 0);
    assert_int_equal(spq_ggml_dequant(GGML_Q5_1, b, y, 32), 0);
    for (int j = 0; j < 32; j++) assert_true(y[j] == x[j]); /* m = 1: exact */
    assert_int_equal(spq_ggml_quant(GGML_Q4_1, x, b, 32), 0);
    assert_int_equal(spq_ggml_dequant(GGML_Q4_1, b, y, 32), 0);
    float d = (16.5f - 1.0f) / 15, id = 1.0f / d, dh = spq_f16_to_f32(spq_f32_to_f16(d));
    for (int j = 0; j < 32; j++) assert_true(y[j] == 1.0f + (float)(int)((x[j] - 1.0f) * id + 0.5f) * dh);
    for (int j = 0; j < 64; j++) x[j] = (float)(j % 32 - 13) * 0.125f + (j >= 32 ? 100.0f : 0.0f);
    assert_int_equal(spq_ggml_quant(GGML_Q8_0, x, b, 64), 0);
    assert_int_equal(spq_ggml_dequant(GGML_Q8_0, b, y, 64), 0);
    for (int j = 0; j < 64; j++) { /* half a step, plus the half-rounded scale's error */
        float amax = j < 32 ? 2.25f : 102.25f;
        assert_true(fabsf(y[j] - x[j]) <= amax / 127 / 2 + amax * 1e-3f);
    }
    assert_int_equal(spq_ggml_quant(GGML_Q4_K, x, b, 256), -1); /* K-quants: not here */
}

/* ggml's own blocks of every type read back to ggml's own floats, bit for bit; spikeq's
 * reference quantiser writes ggml's bytes for the block formats it has */
static void test_ggml_real_blocks(void **st)
{
    (void)st;
    ggml_fixture fx;
    ggml_fixture_load(&fx);
    float *y = malloc(4 * (size_t)fx.n);
    uint8_t *b = malloc(4 * (size_t)fx.n);
    int quantised = 0;
    for (int i = 0; i < fx.count; i++) {
        int el;
        size_t bytes;
        assert_int_equal(spq_ggml_block(fx.k[i].type, &el, &bytes), 0);
        assert_int_equal(fx.k[i].bytes, (size_t)fx.n / (size_t)el * bytes);
        assert_int_equal(spq_ggml_dequant(fx.k[i].type, fx.k[i].b, y, fx.n), 0);
        assert_memory_equal(y, fx.k[i].y, 4 * (size_t)fx.n);
        if (spq_ggml_quant(fx.k[i].type, fx.x, b, fx.n) == 0) {
            assert_memory_equal(b, fx.k[i].b, fx.k[i].bytes);
            quantised++;
        }
    }
    fprintf(stderr, "  %d ggml types read as ggml reads them; %d written as ggml writes them\n", fx.count, quantised);
    assert_int_equal(fx.count, 12);
    assert_int_equal(quantised, 5);
    free(y); free(b); free(fx.file);
}

/* The block-format product (gq_dot) of every kernel table on ggml's own blocks: the fixture's
 * 4 rows of 256 weights of each type times quantised activations equal, to float rounding,
 * the sum of ggml's dequantised weights times the activations' values (q * d). */
static void test_gq_dot_matches_ggml(void **st)
{
    (void)st;
    ggml_fixture fx;
    ggml_fixture_load(&fx);
    const char *names[8];
    int nk = spq_kern_available(names, 8), K = 256, R = fx.n / K;
    float x[256], y[4 * 3];
    uint8_t xa[3][1024];
    for (int i = 0; i < K; i++) x[i] = 2.0f * sinf(0.37f * (float)i) + (i % 37 == 0 ? 9.0f : 0.0f);
    for (int t = 0; t < nk; t++) {
        const spq_kernels *k = spq_kern_get(names[t]);
        for (int i = 0; i < fx.count; i++) {
            int g = spq_ggml_gq(fx.k[i].type), qb = spq_gq_act_block(g);
            assert_true(g >= 0);
            for (int m = 0; m < 3; m++) { /* three activation rows: x, -x / 3, x * 1e-3 */
                float xm[256];
                for (int j = 0; j < K; j++) xm[j] = m == 0 ? x[j] : m == 1 ? -x[j] / 3 : x[j] * 1e-3f;
                k->gq_quant(qb, K, xm, xa[m]);
            }
            size_t rb = spq_gq_row_bytes(g, K);
            k->gq_dot(g, K, R, fx.k[i].b, rb, 3, xa[0], sizeof xa[0], y, (size_t)R);
            for (int m = 0; m < 3; m++) {
                const float *d = (const float *)xa[m];
                const int8_t *q = (const int8_t *)(xa[m] + spq_gq_act_q_at(qb, K));
                for (int r = 0; r < R; r++) {
                    double ref = 0, mag = 0;
                    for (int j = 0; j < K; j++) {
                        double w = fx.k[i].y[r * K + j], v = (double)q[j] * d[j / qb];
                        ref += w * v;
                        mag += fabs(w * v);
                    }
                    if (fabs(y[m * R + r] - ref) > 1e-5 * mag + 1e-30) {
                        fprintf(stderr, "%s %s row %d act %d: %.9g, dequantised %.9g\n", names[t], spq_ggml_type_name(fx.k[i].type), r,
                                m, (double)y[m * R + r], ref);
                        fail();
                    }
                }
            }
        }
    }
    fprintf(stderr, "  %d ggml types multiplied as stored by %d kernel tables: the dequantised sums\n", fx.count, nk);
    free(fx.file);
}

/* docs-llama-42m's shapes (../shared; rows of 512 and 1536, K-quant blocks of 256) as a GGUF
 * whose linears hold ggml-made blocks of every type in turn: each opens as its blocks (read
 * as ggml's dequantization, rows in HF's order), and the model runs them as they are, its
 * logits near those of the same weights in F32. */
static void test_gguf_kquant_model(void **st)
{
    (void)st;
    const char *dir = shared_path("models/docs-llama-42m");
    ggml_fixture fx;
    ggml_fixture_load(&fx);
    spq_ckpt c, g;
    spq_err e;
    assert_int_equal(spq_open(dir, &c, &e), 0);
    char path[] = "/tmp/spq_kq_XXXXXX";
    close(mkstemp(path));
    write_gguf(&c, path, 3, &fx);
    if (spq_open(path, &g, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
    int seen[32] = {0}, linears = 0;
    for (int i = 0; i < c.n; i++) {
        const spq_tensor *a = &c.t[i], *t = spq_ckpt_find(&g, a->name);
        assert_non_null(t);
        if (a->ndim != 2 || !strstr(a->name, "layers.")) continue;
        int k = fixture_pick(&fx, i);
        assert_int_equal(t->dtype, SPQ_GGML);
        assert_string_equal(spq_tensor_type_name(t), spq_ggml_type_name(fx.k[k].type));
        size_t n = spq_tensor_numel(t);
        float *v = malloc(4 * n);
        assert_int_equal(spq_tensor_to_f32(t, v), 0);
        v = gguf_rows(&g.cfg, t, v);
        for (size_t j = 0; j < n; j++)
            if (v[j] != fixture_weight(&fx, k, j)) {
                fprintf(stderr, "%s (%s) weight %zu: %g, ggml %g\n", a->name, spq_tensor_type_name(t), j, v[j], fixture_weight(&fx, k, j));
                fail();
            }
        free(v);
        seen[k] = 1;
        linears++;
    }
    int types = 0;
    for (int k = 0; k < fx.count; k++) types += seen[k];
    assert_int_equal(types, fx.count);
    int ids[4] = {1, 450, 4799, 263};
    float *lg = run_logits(&g, ids, 4, 0);
    for (size_t j = 0; j < 4 * (size_t)g.cfg.vocab_size; j++) assert_true(isfinite(lg[j]));
    { /* spikeq convert keeps the blocks: a .spq of them maps them and gives the same logits */
        char sp[] = "/tmp/spq_kq_spq_XXXXXX";
        close(mkstemp(sp));
        spq_ckpt back;
        assert_int_equal(spq_write(sp, &g, &e), 0);
        if (spq_open(sp, &back, &e)) { fprintf(stderr, "%s\n", e.msg); fail(); }
        assert_int_equal(spq_ckpt_verify(&back, &e), 0);
        for (int i = 0; i < g.n; i++) {
            const spq_tensor *a = &g.t[i], *b = spq_ckpt_find(&back, a->name);
            assert_non_null(b);
            assert_int_equal(b->dtype, a->dtype);
            if (a->dtype == SPQ_GGML) { assert_int_equal(b->gtype, a->gtype); assert_null(b->owned); }
        }
        float *lb = run_logits(&back, ids, 4, 0);
        assert_memory_equal(lb, lg, 4 * sizeof(float) * (size_t)g.cfg.vocab_size);
        free(lb);
        spq_ckpt_free(&back);
        unlink(sp);
    }
    /* the same weights widened to F32: what the blocks hold, run with FP32 activations */
    for (int i = 0; i < g.n; i++) {
        spq_tensor *t = &g.t[i];
        if (t->dtype != SPQ_GGML) continue;
        float *v = malloc(4 * spq_tensor_numel(t));
        assert_int_equal(spq_tensor_to_f32(t, v), 0);
        if (t->owned) free(t->owned);
        t->owned = v; t->data = v; t->dtype = SPQ_F32; t->nbytes = 4 * spq_tensor_numel(t);
    }
    float *ref = run_logits(&g, ids, 4, 0);
    double r = rel_err(lg, ref, 4 * (size_t)g.cfg.vocab_size);
    fprintf(stderr, "  docs-llama-42m as GGUF: %d linears in %d ggml types, each its blocks' values; logits run in "
                    "blocks vs in F32: %.2e\n", linears, types, r);
    assert_true(r < 0.05);
    free(lg); free(ref);
    spq_ckpt_free(&g);
    spq_ckpt_free(&c);
    unlink(path);
    free(fx.file);
}

/* Version 1 files (linears in rows, packed at load) still read; written again they become
 * version 2 (linears in panels, run from the mapped file) with bit-identical logits. */
static void test_spq_versions(void **st)
{
    (void)st;
    const char *v1 = "tests/fixtures/stories260K-w8a8-v1.spq", *v2 = "/tmp/spq_v2_test.spq";
    spq_ckpt a, b;
    spq_err e;
    assert_int_equal(spq_open(v1, &a, &e), 0);
    assert_int_equal(spq_write(v2, &a, &e), 0);
    assert_int_equal(spq_open(v2, &b, &e), 0);
    assert_int_equal(spq_ckpt_verify(&b, &e), 0);
    int panels = 0;
    for (int i = 0; i < b.n; i++) {
        assert_int_equal(a.t[i].layout, SPQ_ROWS);
        panels += b.t[i].layout == SPQ_PANELS;
        if (b.t[i].layout == SPQ_PANELS) { /* unpacked again, the same values */
            size_t n = spq_tensor_numel(&a.t[i]);
            float *x = malloc(4 * n), *y = malloc(4 * n);
            assert_int_equal(spq_tensor_to_f32(&a.t[i], x), 0);
            assert_int_equal(spq_tensor_to_f32(&b.t[i], y), 0);
            assert_memory_equal(x, y, 4 * n);
            free(x); free(y);
        }
    }
    assert_int_equal(panels, 7 * a.cfg.n_layers); /* every projection; the head is the tied embedding */
    int ids[] = {1, 100, 200, 300, 50, 7, 400, 2};
    float *la = run_logits(&a, ids, 8, 0), *lb = run_logits(&b, ids, 8, 0);
    assert_memory_equal(la, lb, sizeof(float) * 8 * (size_t)a.cfg.vocab_size);
    free(la); free(lb);
    spq_ckpt_free(&a);
    spq_ckpt_free(&b);
    /* a version this build does not know */
    uint8_t *m;
    size_t n = slurp(v2, &m);
    m[8] = 3;
    spit(v2, m, n);
    assert_int_not_equal(spq_open(v2, &a, &e), 0);
    assert_non_null(strstr(e.msg, "unsupported .spq version 3"));
    free(m);
    unlink(v2);
}

static void test_bad_spq(void **st)
{
    (void)st;
    spq_ckpt c, c2;
    spq_err e;
    tiny_model(&c, 32, 48, 1, 2, 1, 20, 0);
    const char *good = "/tmp/spq_bad_good.spq", *bad = "/tmp/spq_bad.spq";
    assert_int_equal(spq_write(good, &c, &e), 0);
    uint8_t *b;
    size_t n = slurp(good, &b);
    uint64_t tab_off, data_off;
    memcpy(&tab_off, b + 56, 8);
    memcpy(&data_off, b + 72, 8);
    /* truncated at every header field boundary, inside the table and inside the data */
    size_t cuts[] = {0, 4, 8, 12, 16, 24, 40, 56, 72, 80, 176, 184, 191, 192, tab_off + 1, tab_off + 37, data_off + 5, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        spit(bad, b, cuts[i]);
        expect_fail(bad, NULL);
    }
    uint8_t *m = malloc(n);
    /* wrong magic */
    memcpy(m, b, n); m[0] = 'X'; spit(bad, m, n); expect_fail(bad, "wrong magic");
    /* unsupported version */
    memcpy(m, b, n); m[8] = 9; spit(bad, m, n); expect_fail(bad, "version");
    /* section offset past EOF, with a valid header checksum */
    memcpy(m, b, n);
    uint64_t huge = (uint64_t)n + 1000;
    memcpy(m + 24, &huge, 8);
    uint64_t h = spq_hash64(m, 176);
    memcpy(m + 176, &h, 8);
    spit(bad, m, n); expect_fail(bad, "out of range");
    /* huge tensor count */
    memcpy(m, b, n);
    uint32_t big = 0x7fffffff;
    memcpy(m + 12, &big, 4);
    h = spq_hash64(m, 176);
    memcpy(m + 176, &h, 8);
    spit(bad, m, n); expect_fail(bad, "tensor count");
    /* first tensor's data offset out of range (table entry: name len, name, 4, shape, 8, offset) */
    memcpy(m, b, n);
    uint16_t nl;
    memcpy(&nl, m + tab_off, 2);
    uint8_t nd = m[tab_off + 2 + nl + 1];
    size_t eoff = tab_off + 2 + nl + 4 + 8 * nd + 8;
    memcpy(m + eoff, &huge, 8); spit(bad, m, n); expect_fail(bad, "offset out of range");
    /* overlapping / negative-looking offset: points into the header */
    uint64_t low = 64;
    memcpy(m, b, n); memcpy(m + eoff, &low, 8); spit(bad, m, n); expect_fail(bad, "offset out of range");
    /* NaN scale */
    float nan = NAN;
    memcpy(m, b, n); memcpy(m + eoff - 8, &nan, 4); spit(bad, m, n); expect_fail(bad, "scale");
    /* wrong dtype for a tensor: byte size no longer matches */
    memcpy(m, b, n); m[tab_off + 2 + nl] = SPQ_F16; spit(bad, m, n); expect_fail(bad, "byte size");
    /* flipped data byte: reads, and the background check names the tensor (SPIKEQ_VERIFY=sync:
     * the read fails) */
    memcpy(m, b, n); m[data_off + 3] ^= 0x40; spit(bad, m, n);
    const char *vm = getenv("SPIKEQ_VERIFY");
    if (vm && !strcmp(vm, "sync")) {
        expect_fail(bad, "checksum mismatch (corrupt data)");
    } else if (spq_open(bad, &c2, &e)) { /* the background check was done before the read's own check */
        assert_non_null(strstr(e.msg, "checksum mismatch (corrupt data)"));
    } else {
        assert_int_equal(spq_ckpt_verify(&c2, &e), -1);
        assert_non_null(strstr(e.msg, "checksum mismatch (corrupt data)"));
        assert_int_equal(spq_ckpt_check(&c2, &e), -1); /* and so does the check between turns */
        assert_non_null(strstr(e.msg, bad));
        spq_ckpt_free(&c2);
    }
    /* a change the structural checks cannot see: the sections' checksum */
    memcpy(m, b, n); m[eoff - 8] ^= 0x01; spit(bad, m, n); expect_fail(bad, "tensor table (corrupt file)"); /* a scale's last bit */
    free(m); free(b);
    unlink(bad); unlink(good);
    /* duplicated tensor names and shape mismatches are refused before writing */
    strcpy(c.t[2].name, c.t[1].name);
    assert_int_equal(spq_write(bad, &c, &e), -1);
    assert_non_null(strstr(e.msg, "twice"));
    assert_int_equal(access(bad, F_OK), -1); /* no partial file */
    spq_ckpt_free(&c);
    expect_fail("/tmp/does-not-exist.spq", "no such file");
}

/* a file truncated while mapped is reported (spq_ckpt_check), naming the file */
static void test_size_change(void **st)
{
    (void)st;
    const char *p = "/tmp/spq_live_test.spq";
    assert_int_equal(system("cp fuzz/corpus/spq/tiny-f16.spq /tmp/spq_live_test.spq"), 0);
    spq_ckpt c;
    spq_err e;
    assert_int_equal(spq_open(p, &c, &e), 0);
    assert_int_equal(spq_ckpt_verify(&c, &e), 0);
    assert_int_equal(spq_ckpt_check(&c, &e), 0);
    assert_int_equal(truncate(p, 100), 0);
    assert_int_equal(spq_ckpt_check(&c, &e), -1);
    assert_non_null(strstr(e.msg, "spq_live_test.spq: file changed size while in use"));
    spq_ckpt_free(&c);
    unlink(p);
}

static void test_bad_hf(void **st)
{
    (void)st;
    assert_int_equal(system("rm -rf /tmp/spq_hf && mkdir -p /tmp/spq_hf && cp -r tests/fixtures/hf/* /tmp/spq_hf/"), 0);
    /* unknown architecture */
    assert_int_equal(system("sed -i 's/LlamaForCausalLM/GPT2LMHeadModel/' /tmp/spq_hf/llama2-mha-f32/config.json"), 0);
    expect_fail("/tmp/spq_hf/llama2-mha-f32", "unsupported architecture GPT2LMHeadModel");
    /* shape mismatch with config */
    assert_int_equal(system("sed -i 's/\"intermediate_size\": 128/\"intermediate_size\": 96/' /tmp/spq_hf/smollm-tied-f16/config.json"), 0);
    expect_fail("/tmp/spq_hf/smollm-tied-f16", "config says");
    /* missing shard */
    assert_int_equal(system("rm /tmp/spq_hf/mistral-gqa-f16-sharded/model-00007-of-00012.safetensors"), 0);
    expect_fail("/tmp/spq_hf/mistral-gqa-f16-sharded", "missing shard");
    /* header length past EOF; tensor offsets past the data */
    uint8_t *b;
    const char *st_path = "/tmp/spq_hf/llama3-gqa-f32/model.safetensors";
    size_t n = slurp(st_path, &b);
    uint64_t hl;
    memcpy(&hl, b, 8);
    uint64_t huge = n * 2;
    memcpy(b, &huge, 8);
    spit(st_path, b, n);
    expect_fail(st_path, "pass the model directory");
    expect_fail("/tmp/spq_hf/llama3-gqa-f32", "past the end");
    memcpy(b, &hl, 8);
    spit(st_path, b, n - 1000); /* data cut: the last tensors' offsets are now out of range */
    expect_fail("/tmp/spq_hf/llama3-gqa-f32", "outside");
    free(b);
    /* invalid JSON config */
    spit("/tmp/spq_hf/llama3-gqa-bf16/config.json", "{\"architectures\": [", 19);
    expect_fail("/tmp/spq_hf/llama3-gqa-bf16", "invalid JSON");
    assert_int_equal(system("rm -rf /tmp/spq_hf"), 0);
}

static void test_bad_llama2c_gguf(void **st)
{
    (void)st;
    uint8_t *b;
    size_t n = slurp(shared_path("models/stories260K/stories260K.bin"), &b);
    spit("/tmp/spq_trunc.bin", b, n / 2);
    expect_fail("/tmp/spq_trunc.bin", "truncated");
    int32_t hdr[7] = {64, 172, 5, 8, 4, 512, 512};
    hdr[0] = -5;
    spit("/tmp/spq_trunc.bin", hdr, sizeof hdr);
    expect_fail("/tmp/spq_trunc.bin", "unrecognised model format");
    free(b);
    unlink("/tmp/spq_trunc.bin");
    n = slurp(shared_path("tokenizers/llamacpp-vocab/ggml-vocab-llama-spm.gguf"), &b);
    spit("/tmp/spq_bad.gguf", b, n / 3);
    expect_fail("/tmp/spq_bad.gguf", "GGUF");
    b[4] = 7; /* version */
    spit("/tmp/spq_bad.gguf", b, n);
    expect_fail("/tmp/spq_bad.gguf", "version");
    b[4] = 3;
    uint64_t huge = 1ull << 60; /* tensor count */
    memcpy(b + 8, &huge, 8);
    spit("/tmp/spq_bad.gguf", b, n);
    expect_fail("/tmp/spq_bad.gguf", "count");
    free(b);
    unlink("/tmp/spq_bad.gguf");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hf_matches_transformers),
        cmocka_unit_test(test_gguf_matches_hf),
        cmocka_unit_test(test_ggml_blocks),
        cmocka_unit_test(test_ggml_quant),
        cmocka_unit_test(test_ggml_real_blocks),
        cmocka_unit_test(test_gq_dot_matches_ggml),
        cmocka_unit_test(test_gguf_kquant_model),
        cmocka_unit_test(test_spq_versions),
        cmocka_unit_test(test_bad_spq),
        cmocka_unit_test(test_size_change),
        cmocka_unit_test(test_bad_hf),
        cmocka_unit_test(test_bad_llama2c_gguf),
    };
    return cmocka_run_group_tests_name("formats", tests, NULL, NULL);
}
