/* cmd_synth.c — spikeq synth: a random-weight Hugging Face checkpoint of a real model's
 * shape (LLaMA-2-7B, LLaMA-3-8B, ...), written as a user downloads one: config.json,
 * safetensors shards of at most 4 GiB with their index, and a tokenizer. It is what the
 * memory and speed of 7-8B models are measured on where no trained checkpoint may be
 * downloaded. Weights are uniform with the standard deviation of LLaMA's initialisation
 * (0.02), norms 1. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "tools/cli.h"

#define SHARD_MAX ((uint64_t)4 << 30)

typedef struct {
    char name[96];
    int64_t rows, cols; /* cols 0: a vector */
    int shard;
    uint64_t off;       /* within its shard's data */
} synth_tensor;

typedef struct {
    synth_tensor *t;
    int n, cap;
} synth_list;

static void add(synth_list *l, const char *name, int64_t r, int64_t k)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 64;
        l->t = realloc(l->t, sizeof *l->t * (size_t)l->cap);
        if (!l->t) die("out of memory");
    }
    synth_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->rows = r;
    t->cols = k;
}

static void tensors(synth_list *l, const model_shape *s, int layers)
{
    int hd = s->dim / s->heads, q = s->heads * hd, kv = s->kv * hd;
    char nm[96];
    add(l, "model.embed_tokens.weight", s->vocab, s->dim);
    for (int i = 0; i < layers; i++) {
        static const char *proj[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
        int64_t rows[] = {q, kv, kv, s->dim, s->hidden, s->hidden, s->dim};
        int64_t cols[] = {s->dim, s->dim, s->dim, q, s->dim, s->dim, s->hidden};
        for (int j = 0; j < 7; j++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", i, proj[j]);
            add(l, nm, rows[j], cols[j]);
        }
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", i);
        add(l, nm, s->dim, 0);
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", i);
        add(l, nm, s->dim, 0);
    }
    add(l, "model.norm.weight", s->dim, 0);
    add(l, "lm_head.weight", s->vocab, s->dim);
}

static uint64_t numel(const synth_tensor *t) { return (uint64_t)t->rows * (uint64_t)(t->cols ? t->cols : 1); }

/* Element i of tensor `seed`: uniform in [-a, a], a = 0.02 sqrt 3, from a counter hash (the
 * same value whatever the chunking or thread). Vectors are 1. */
static float value(uint64_t seed, uint64_t i, int vec)
{
    if (vec) return 1.0f;
    uint64_t z = seed + i * 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return ((float)(z >> 40) * (1.0f / 8388608.0f) - 1.0f) * 0.034641f;
}

static void put_elem(uint8_t *out, float v, int dtype)
{
    if (dtype == SPQ_F32) memcpy(out, &v, 4);
    else {
        uint16_t h = dtype == SPQ_F16 ? spq_f32_to_f16(v) : spq_f32_to_bf16(v);
        memcpy(out, &h, 2);
    }
}

/* Write shard `sh` of the list to path: the safetensors header, then each tensor's data in
 * 16 MiB chunks filled by the threads. */
static int write_shard(const char *path, const synth_list *l, int sh, int dtype, uint64_t seed)
{
    static const char *dt[] = {"F32", "F16", "BF16"};
    size_t el = spq_dtype_size(dtype), cap = 1 << 16, len = 0;
    char *hdr = malloc(cap);
    if (!hdr) return -1;
    len += (size_t)snprintf(hdr, cap, "{\"__metadata__\":{\"format\":\"pt\"}");
    for (int i = 0; i < l->n; i++) {
        const synth_tensor *t = &l->t[i];
        if (t->shard != sh) continue;
        if (cap - len < 512) {
            cap *= 2;
            char *nh = realloc(hdr, cap);
            if (!nh) { free(hdr); return -1; }
            hdr = nh;
        }
        if (t->cols)
            len += (size_t)snprintf(hdr + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld,%lld],\"data_offsets\":[%llu,%llu]}",
                                    t->name, dt[dtype], (long long)t->rows, (long long)t->cols,
                                    (unsigned long long)t->off, (unsigned long long)(t->off + numel(t) * el));
        else
            len += (size_t)snprintf(hdr + len, cap - len, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[%lld],\"data_offsets\":[%llu,%llu]}",
                                    t->name, dt[dtype], (long long)t->rows, (unsigned long long)t->off,
                                    (unsigned long long)(t->off + numel(t) * el));
    }
    len += (size_t)snprintf(hdr + len, cap - len, "}");
    while (len % 8) hdr[len++] = ' ';
    FILE *f = fopen(path, "wb");
    if (!f) { free(hdr); return -1; }
    uint64_t hl = len;
    int rc = fwrite(&hl, 8, 1, f) != 1 || fwrite(hdr, 1, len, f) != len;
    free(hdr);
    const size_t CH = (size_t)16 << 20;
    uint8_t *buf = malloc(CH);
    if (!buf) rc = 1;
    for (int i = 0; i < l->n && !rc; i++) {
        const synth_tensor *t = &l->t[i];
        if (t->shard != sh) continue;
        uint64_t n = numel(t), per = CH / el, tseed = seed ^ ((uint64_t)(i + 1) << 32);
        for (uint64_t a = 0; a < n && !rc; a += per) {
            long m = (long)(n - a < per ? n - a : per);
#pragma omp parallel for schedule(static)
            for (long j = 0; j < m; j++) put_elem(buf + (size_t)j * el, value(tseed, a + (uint64_t)j, !t->cols), dtype);
            rc = fwrite(buf, el, (size_t)m, f) != (size_t)m;
        }
    }
    free(buf);
    if (fclose(f)) rc = 1;
    return rc ? -1 : 0;
}

static void write_config(const char *path, const model_shape *s, int layers, int dtype)
{
    FILE *f = fopen(path, "w");
    if (!f) die("%s: cannot write: %s", path, strerror(errno));
    fprintf(f, "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n"
               "  \"hidden_size\": %d,\n  \"intermediate_size\": %d,\n  \"num_hidden_layers\": %d,\n"
               "  \"num_attention_heads\": %d,\n  \"num_key_value_heads\": %d,\n  \"vocab_size\": %d,\n"
               "  \"max_position_embeddings\": %d,\n  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": %.1f,\n",
            s->dim, s->hidden, layers, s->heads, s->kv, s->vocab, s->ctx, (double)s->theta);
    if (s->rope_llama3)
        fprintf(f, "  \"rope_scaling\": {\"rope_type\": \"llama3\", \"factor\": 8.0, \"low_freq_factor\": 1.0, "
                   "\"high_freq_factor\": 4.0, \"original_max_position_embeddings\": 8192},\n");
    fprintf(f, "  \"tie_word_embeddings\": false,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n"
               "  \"torch_dtype\": \"%s\"\n}\n", dtype == SPQ_F32 ? "float32" : dtype == SPQ_F16 ? "float16" : "bfloat16");
    if (fclose(f)) die("%s: write failed", path);
}

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb");
    if (!a) die("%s: cannot open: %s", from, strerror(errno));
    FILE *b = fopen(to, "wb");
    if (!b) die("%s: cannot write: %s", to, strerror(errno));
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, a)) > 0)
        if (fwrite(buf, 1, n, b) != n) die("%s: write failed", to);
    fclose(a);
    if (fclose(b)) die("%s: write failed", to);
}

int cmd_synth(int argc, char **argv)
{
    const char *shape_name = NULL, *out = NULL, *dt = "bf16", *tok = NULL;
    int layers = 0, threads = 0;
    uint64_t seed = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h")) {
            puts("usage: spikeq synth --shape NAME -o DIR [--dtype bf16|f16|f32] [--tokenizer FILE] [--layers N]\n"
                 "       [--seed S] [-t N]\n"
                 "A random-weight Hugging Face checkpoint of a real model's shape: config.json, safetensors\n"
                 "shards (at most 4 GiB each) with model.safetensors.index.json, and FILE copied in as\n"
                 "tokenizer.model or tokenizer.json. Shapes: tinyllama-1.1b, llama2-7b, llama3-8b\n"
                 "(GQA 8, vocab 128256, llama3 RoPE scaling), mistral-7b. DIR must not exist; it is\n"
                 "written as DIR.partial and renamed when complete (an interrupted run leaves DIR.partial).");
            return 0;
        }
        if (!strcmp(a, "--shape") && v) shape_name = argv[++i];
        else if (!strcmp(a, "-o") && v) out = argv[++i];
        else if (!strcmp(a, "--dtype") && v) dt = argv[++i];
        else if (!strcmp(a, "--tokenizer") && v) tok = argv[++i];
        else if (!strcmp(a, "--layers") && v) layers = (int)arg_int(a, argv[++i], 1, 1024);
        else if (!strcmp(a, "--seed") && v) seed = (uint64_t)arg_int(a, argv[++i], 0, 1L << 62);
        else if (!strcmp(a, "-t") && v) threads = (int)arg_int(a, argv[++i], 1, 1024);
        else die("synth: unknown option %s", a);
    }
    if (!shape_name || !out) die("synth: usage: spikeq synth --shape NAME -o DIR");
    const model_shape *s = find_shape("--shape", shape_name);
    int dtype = !strcmp(dt, "bf16") ? SPQ_BF16 : !strcmp(dt, "f16") ? SPQ_F16 : !strcmp(dt, "f32") ? SPQ_F32 : -1;
    if (dtype < 0) die("--dtype: bf16, f16 or f32, not '%s'", dt);
    const char *tok_name = NULL;
    if (tok) {
        size_t n = strlen(tok);
        tok_name = n >= 6 && !strcmp(tok + n - 6, ".model") ? "tokenizer.model"
                 : n >= 5 && !strcmp(tok + n - 5, ".json")  ? "tokenizer.json" : NULL;
        if (!tok_name) die("--tokenizer: %s: a tokenizer.model or tokenizer.json file", tok);
        if (access(tok, R_OK)) die("%s: cannot open: %s", tok, strerror(errno));
    }
    if (layers <= 0 || layers > s->layers) layers = s->layers;
    set_threads(threads);
    struct stat st;
    if (!stat(out, &st)) die("%s: exists; synth writes a new directory", out);
    char part[1024], path[1200], fin[1200];
    snprintf(part, sizeof part, "%s.partial", out);
    if (!stat(part, &st)) die("%s: exists (an interrupted synth): remove it first", part);
    if (mkdir(part, 0777)) die("%s: cannot create: %s", part, strerror(errno));
    synth_list l = {0};
    tensors(&l, s, layers);
    size_t el = spq_dtype_size(dtype);
    int shards = 1;
    uint64_t used = 0, total = 0;
    for (int i = 0; i < l.n; i++) {
        uint64_t b = numel(&l.t[i]) * el;
        if (used && used + b > SHARD_MAX) { shards++; used = 0; }
        l.t[i].shard = shards - 1;
        l.t[i].off = used;
        used += b;
        total += b;
    }
    double t0 = spq_now();
    snprintf(path, sizeof path, "%s/config.json", part);
    write_config(path, s, layers, dtype);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", part);
    FILE *f = fopen(path, "w");
    if (!f) die("%s: cannot write: %s", path, strerror(errno));
    fprintf(f, "{\"metadata\": {\"total_size\": %llu}, \"weight_map\": {", (unsigned long long)total);
    for (int i = 0; i < l.n; i++)
        fprintf(f, "%s\n  \"%s\": \"model-%05d-of-%05d.safetensors\"", i ? "," : "", l.t[i].name, l.t[i].shard + 1, shards);
    fprintf(f, "\n}}\n");
    if (fclose(f)) die("%s: write failed", path);
    for (int sh = 0; sh < shards; sh++) {
        snprintf(path, sizeof path, "%s/model-%05d-of-%05d.safetensors", part, sh + 1, shards);
        if (write_shard(path, &l, sh, dtype, seed)) die("%s: write failed: %s", path, strerror(errno));
        if (isatty(2)) fprintf(stderr, "\rspikeq: synth: shard %d of %d", sh + 1, shards);
    }
    if (tok) {
        snprintf(path, sizeof path, "%s/%s", part, tok_name);
        copy_file(tok, path);
    }
    snprintf(fin, sizeof fin, "%s", out);
    if (rename(part, fin)) die("%s: cannot rename to %s: %s", part, out, strerror(errno));
    fprintf(stderr, "%sspikeq: wrote %s: %s shape, %d layers, %.2f G parameters, %s, %d shard%s, %.2f GB in %.1f s\n",
            isatty(2) ? "\r" : "", out, s->name, layers, (double)total / (double)el / 1e9, dt, shards, shards == 1 ? "" : "s", (double)total / 1e9,
            spq_now() - t0);
    free(l.t);
    return 0;
}
