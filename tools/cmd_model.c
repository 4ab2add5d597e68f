/* cmd_model.c — spikeq info, convert, logits: looking at and rewriting checkpoints. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "format/cmpq_blob.h"
#include "runtime/model.h"
#include "tools/cli.h"

/* The precision plan: scheme, rule, the fallback projections and the statistics behind
 * them (every site with -v). */
static void print_plan(const char *json, int verbose)
{
    cJSON *j = cJSON_Parse(json);
    if (!j) { printf("plan       (unreadable)\n"); return; }
    const char *keys[] = {"scheme", "act", "spike", "spike_act", "embed"};
    printf("plan      ");
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const cJSON *v = cJSON_GetObjectItem(j, keys[i]);
        if (cJSON_IsString(v)) printf(" %s=%s", keys[i], v->valuestring);
    }
    /* the INT8 grids and SmoothQuant, where they differ from W8A8 per tensor */
    const cJSON *ab = cJSON_GetObjectItem(j, "act_bits"), *wb = cJSON_GetObjectItem(j, "weight_bits");
    const cJSON *as = cJSON_GetObjectItem(j, "act_scale"), *ws = cJSON_GetObjectItem(j, "weight_scale");
    const cJSON *sa = cJSON_GetObjectItem(j, "smooth_alpha");
    if (cJSON_IsNumber(ab) && ab->valueint != 8) printf(" act_bits=%d", ab->valueint);
    if (cJSON_IsString(as) && strcmp(as->valuestring, "tensor")) printf(" act_scale=%s", as->valuestring);
    if (cJSON_IsNumber(wb) && wb->valueint != 8) printf(" weight_bits=%d", wb->valueint);
    if (cJSON_IsString(ws) && strcmp(ws->valuestring, "tensor")) printf(" weight_scale=%s", ws->valuestring);
    if (cJSON_IsNumber(sa)) printf(" smooth=%g", sa->valuedouble);
    const cJSON *sch = cJSON_GetObjectItem(j, "scheme");
    if (cJSON_IsString(sch) && strcmp(sch->valuestring, "w8a8")) { /* weight-only: no spike rule */
        const cJSON *b = cJSON_GetObjectItem(j, "bits"), *o = cJSON_GetObjectItem(j, "outliers");
        if (cJSON_IsNumber(b)) printf(" bits=%g", b->valuedouble);
        if (cJSON_IsNumber(o)) printf(" outliers=%g%%", 100 * o->valuedouble);
        printf("\n");
        cJSON_Delete(j);
        return;
    }
    printf("\n           rule: %s", cJSON_GetStringValue(cJSON_GetObjectItem(j, "rule")) ? cJSON_GetStringValue(cJSON_GetObjectItem(j, "rule")) : "?");
    const cJSON *th = cJSON_GetObjectItem(j, "threshold"), *med = cJSON_GetObjectItem(j, "median_absmax");
    if (cJSON_IsNumber(th)) printf(" (threshold %g", th->valuedouble);
    if (cJSON_IsNumber(med)) printf(", median absmax %.4g", med->valuedouble);
    if (cJSON_IsNumber(th)) printf(")");
    const cJSON *top = cJSON_GetObjectItem(j, "top"), *seed = cJSON_GetObjectItem(j, "seed");
    if (cJSON_IsNumber(top)) printf(" (%d%s", top->valueint, cJSON_IsNumber(seed) ? "" : ")");
    if (cJSON_IsNumber(seed)) printf(", seed %.0f)", seed->valuedouble);
    printf("\n           fallback:");
    const cJSON *f;
    int nf = 0;
    cJSON_ArrayForEach(f, cJSON_GetObjectItem(j, "fallback")) { printf(" %s", f->valuestring); nf++; }
    printf("%s\n", nf ? "" : " none");
    const cJSON *sites = cJSON_GetObjectItem(j, "profile"), *st;
    if (sites) printf("           %-5s %-10s %10s %10s %10s %9s\n", "layer", "input", "absmax", "p99.9", "median", "max/med");
    cJSON_ArrayForEach(st, sites) {
        int l = (int)cJSON_GetNumberValue(cJSON_GetObjectItem(st, "layer"));
        const char *site = cJSON_GetStringValue(cJSON_GetObjectItem(st, "site"));
        char key[32];
        snprintf(key, sizeof key, "%d.%s", l, !strcmp(site, "down_in") ? "down" : !strcmp(site, "o_in") ? "o" : "-");
        int chosen = 0;
        cJSON_ArrayForEach(f, cJSON_GetObjectItem(j, "fallback")) chosen |= !strcmp(f->valuestring, key);
        if (!verbose && !chosen) continue;
        printf("           %5d %-10s %10.4g %10.4g %10.4g %9.1f%s\n", l, site, cJSON_GetNumberValue(cJSON_GetObjectItem(st, "absmax")),
               cJSON_GetNumberValue(cJSON_GetObjectItem(st, "p999")), cJSON_GetNumberValue(cJSON_GetObjectItem(st, "median")),
               cJSON_GetNumberValue(cJSON_GetObjectItem(st, "max_over_median")), chosen ? "  <- fallback" : "");
    }
    cJSON_Delete(j);
}

/* CMPQ bit allocation, from the tensors' own headers: per layer (per projection with -v) */
static void print_cmpq_row(int l, const char *proj, double bpw, const unsigned *kc, unsigned nout, const char *tables)
{
    printf("           %5d %-10s %7.3f", l, proj, bpw);
    for (int c = 0; c < SPQ_CMPQ_NCLS; c++) printf(" %6u", kc[c]);
    printf(" %9u%s%s\n", nout, *tables ? " " : "", tables);
}

static void print_cmpq(const spq_ckpt *c, int verbose)
{
    double tb = 0, tw = 0;
    int any = 0;
    for (int i = 0; i < c->n; i++)
        if (c->t[i].dtype == SPQ_CMPQ) { tb += (double)c->t[i].nbytes; tw += (double)spq_tensor_numel(&c->t[i]); any = 1; }
    if (!any) return;
    printf("CMPQ       %.4f bits per weight over %.2f M linear weights (%.2f MiB); channels per bit-width:\n", 8 * tb / tw,
           tw / 1e6, tb / 1048576.0);
    printf("           %5s %-10s %7s %6s %6s %6s %6s %6s %6s %9s%s\n", "layer", "proj", "bits/w", "2-bit", "3-bit", "4-bit",
           "5-bit", "6-bit", "8-bit", "outliers", verbose ? " tables" : "");
    for (int l = 0; l < c->cfg.n_layers; l++) {
        double lb = 0, lw = 0;
        unsigned kc[SPQ_CMPQ_NCLS] = {0}, nout = 0;
        for (int j = 0; j < SPQ_NPROJ; j++) {
            char nm[96];
            snprintf(nm, sizeof nm, "model.layers.%d.%s.%s.weight", l, j < SPQ_GATE ? "self_attn" : "mlp", spq_proj_names[j]);
            const spq_tensor *t = spq_ckpt_find(c, nm);
            spq_cmpq_hdr h;
            if (!t || t->dtype != SPQ_CMPQ) continue;
            spq_cmpq_read_hdr(t->data, &h); /* checked when the checkpoint was validated */
            lb += (double)t->nbytes;
            lw += (double)spq_tensor_numel(t);
            for (int k = 0; k < SPQ_CMPQ_NCLS; k++) kc[k] += h.kc[k];
            nout += h.n_out;
            if (verbose)
                print_cmpq_row(l, spq_proj_names[j], spq_cmpq_bpw(&h), h.kc, h.n_out,
                               h.mode == SPQ_CMPQ_SHARED ? "shared" : "column");
        }
        if (lw > 0 && !verbose) print_cmpq_row(l, "all", 8 * lb / lw, kc, nout, "");
    }
}

/* The ggml block types the tensors are stored and run in, with their counts. */
static void print_blocks(const spq_ckpt *c)
{
    const char *names[16];
    int counts[16], nn = 0;
    for (int i = 0; i < c->n; i++) {
        if (c->t[i].dtype != SPQ_GGML) continue;
        const char *f = spq_tensor_type_name(&c->t[i]);
        int j = 0;
        while (j < nn && strcmp(names[j], f)) j++;
        if (j == nn && nn < 16) { names[nn] = f; counts[nn++] = 0; }
        if (j < nn) counts[j]++;
    }
    if (!nn) return;
    printf("ggml       blocks run as stored:");
    for (int j = 0; j < nn; j++) printf("%s %d %s", j ? "," : "", counts[j], names[j]);
    printf("\n");
}

int cmd_info(int argc, char **argv)
{
    const char *path = NULL;
    int verbose = 0, verify = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h")) {
            puts("usage: spikeq info MODEL [-v] [--verify]   (-v: every tensor; --verify: check every tensor's checksum)");
            return 0;
        }
        else if (!strcmp(argv[i], "-v")) verbose = 1;
        else if (!strcmp(argv[i], "--verify")) verify = 1;
        else if (!strcmp(argv[i], "-m") && i + 1 < argc) path = argv[++i];
        else if (argv[i][0] == '-') die("info: unknown option %s", argv[i]);
        else path = argv[i];
    }
    spq_ckpt c;
    open_ckpt(path, &c);
    const spq_config *p = &c.cfg;
    printf("model      %s\n", path);
    if (c.n == 0) {
        printf("tensors    none (vocabulary only)\n");
    } else {
        printf("config     dim %d, hidden %d, layers %d, heads %d, kv heads %d, head_dim %d, vocab %d, max_seq %d\n",
               p->dim, p->hidden_dim, p->n_layers, p->n_heads, p->n_kv_heads, p->head_dim, p->vocab_size, p->max_seq);
        printf("           rms_norm_eps %g, rope_theta %g%s, tied embeddings %s, bos %d, eos %d\n", p->norm_eps,
               p->rope_theta, p->rope_type == 1 ? " (llama3 scaling)" : "", p->tied ? "yes" : "no", p->bos_id, p->eos_id);
    }
    if (c.tok.n_vocab && c.tok.type == SPQ_TOK_BPE)
        printf("tokenizer  byte-level BPE, %d pieces, %d merges, %d pre-tokenizer regex%s%s, bos %d, eos %d\n",
               c.tok.n_vocab, c.tok.n_merges, c.tok.n_re, c.tok.n_re == 1 ? "" : "es",
               c.tok.ignore_merges ? ", whole-word pieces first" : "", c.tok.bos_id, c.tok.eos_id);
    else if (c.tok.n_vocab)
        printf("tokenizer  SentencePiece BPE, %d pieces, bos %d, eos %d, unk %d\n", c.tok.n_vocab, c.tok.bos_id,
               c.tok.eos_id, c.tok.unk_id);
    else
        printf("tokenizer  none (use token ids, or convert with --tokenizer)\n");
    if (c.tok.chat[0]) printf("chat       %s format (from the model's chat template)\n", c.tok.chat);
    size_t bytes[SPQ_NDTYPES] = {0}, params = 0;
    int count[SPQ_NDTYPES] = {0};
    for (int i = 0; i < c.n; i++) {
        const spq_tensor *t = &c.t[i];
        bytes[t->dtype] += t->nbytes;
        count[t->dtype]++;
        params += spq_tensor_numel(t);
        if (verbose) {
            printf("  %-48s %-5s [%lld", t->name, spq_tensor_type_name(t), (long long)t->shape[0]);
            for (int d = 1; d < t->ndim; d++) printf(", %lld", (long long)t->shape[d]);
            printf("]");
            if (t->dtype >= SPQ_I8 && t->dtype != SPQ_GGML) printf(" scale %.6g", t->scale);
            if (t->act_scale > 0) printf(" act_scale %.6g", t->act_scale);
            if (t->act_fmt) printf(" act %s", spq_dtype_name(t->act_fmt));
            if (t->dtype == SPQ_I8 && ((t->act_bits && t->act_bits != 8) || t->act_token))
                printf(" act %d-bit per %s", t->act_bits ? t->act_bits : 8, t->act_token ? "token" : "tensor");
            printf("\n");
        }
    }
    if (c.n) {
        printf("tensors    %d, %.2f M parameters:", c.n, (double)params / 1e6);
        for (int d = 0; d < SPQ_NDTYPES; d++)
            if (count[d]) printf(" %d %s (%.2f MiB)", count[d], spq_dtype_name(d), (double)bytes[d] / 1048576.0);
        printf("\n");
    }
    print_blocks(&c);
    if (c.plan_json) print_plan(c.plan_json, verbose);
    print_cmpq(&c, verbose);
    if (verify) {
        if (!c.verify) die("%s: --verify: the format stores no checksums (only .spq files do)", path);
        double t0 = spq_now();
        verify_ckpt(&c);
        printf("checksums  %d tensors match (XXH3-64, %.2f s)\n", c.n, spq_now() - t0);
    }
    spq_ckpt_free(&c); /* info reads no weights: the background check is stopped */
    return 0;
}

int cmd_convert(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *tok = NULL, *outtype = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h")) {
            puts("usage: spikeq convert IN -o OUT.spq [--outtype f32|f16] [--tokenizer tokenizer.model|tokenizer.bin|tokenizer.json]\n"
                 "IN: HF model directory, GGUF file, llama2.c .bin or .spq");
            return 0;
        } else if (!strcmp(argv[i], "-o") && i + 1 < argc) out = argv[++i];
        else if (!strcmp(argv[i], "--tokenizer") && i + 1 < argc) tok = argv[++i];
        else if (!strcmp(argv[i], "--outtype") && i + 1 < argc) outtype = argv[++i];
        else if (argv[i][0] == '-') die("convert: unknown option %s", argv[i]);
        else in = argv[i];
    }
    if (!in || !out) die("convert: usage: spikeq convert IN -o OUT.spq");
    if (outtype && strcmp(outtype, "f32") && strcmp(outtype, "f16")) die("convert: --outtype must be f32 or f16");
    spq_ckpt c;
    spq_err e;
    open_ckpt(in, &c);
    if (tok) {
        spq_tok_free(&c.tok);
        size_t n = strlen(tok);
        int rc = n > 4 && !strcmp(tok + n - 4, ".bin")    ? spq_tok_load_llama2c(tok, c.cfg.vocab_size, &c.tok, &e)
                 : n > 5 && !strcmp(tok + n - 5, ".json") ? spq_tok_load_hf_json(tok, &c.tok, &e)
                                                          : spq_tok_load_spm(tok, &c.tok, &e);
        if (rc) die_err(&e);
        if (c.tok.n_vocab != c.cfg.vocab_size)
            die("%s: tokenizer has %d pieces, the model's vocabulary is %d", tok, c.tok.n_vocab, c.cfg.vocab_size);
    }
    if (spq_ckpt_validate(&c, &e)) die_err(&e);
    for (int i = 0; i < c.n; i++) {
        spq_tensor *t = &c.t[i];
        int want = outtype ? (!strcmp(outtype, "f16") ? SPQ_F16 : SPQ_F32) : t->dtype;
        if (t->dtype == want) continue;
        size_t n = spq_tensor_numel(t);
        float *f = malloc(4 * n);
        if (!f || spq_tensor_to_f32(t, f)) die("out of memory");
        if (want == SPQ_F16) {
            uint16_t *h = (uint16_t *)f; /* in place: each half is written after its float is read */
            for (size_t j = 0; j < n; j++) h[j] = spq_f32_to_f16(f[j]);
        }
        free(t->owned);
        t->owned = f;
        t->data = f;
        t->dtype = want;
        t->layout = SPQ_ROWS;
        t->nbytes = n * spq_dtype_size(want);
        t->scale = 1.0f;
    }
    verify_ckpt(&c);
    if (spq_write(out, &c, &e)) die_err(&e);
    fprintf(stderr, "spikeq: wrote %s (%d tensors)\n", out, c.n);
    spq_ckpt_free(&c);
    return 0;
}

int cmd_logits(int argc, char **argv)
{
    const char *path = NULL, *toks = NULL, *prompt = NULL;
    int top = 5, threads = 0, decode = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h")) {
            puts("usage: spikeq logits -m MODEL (--tokens 1,300,301 | -p TEXT) [--top K] [--decode] [-t N]\n"
                 "prints per position: pos P tok T topK id:logit ... sum S\n"
                 "--decode runs one token at a time instead of one batched prefill");
            return 0;
        } else if (!strcmp(argv[i], "-m") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "--tokens") && i + 1 < argc) toks = argv[++i];
        else if (!strcmp(argv[i], "-p") && i + 1 < argc) prompt = argv[++i];
        else if (!strcmp(argv[i], "--top") && i + 1 < argc) top = (int)arg_int("--top", argv[++i], 1, 1000);
        else if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = (int)arg_int("-t", argv[++i], 1, 1024);
        else if (!strcmp(argv[i], "--decode")) decode = 1;
        else die("logits: unknown option %s", argv[i]);
    }
    set_threads(threads);
    spq_ckpt c;
    open_ckpt(path, &c);
    if (c.n == 0) die("%s: no weights (vocabulary-only file)", path);
    int n;
    int *ids;
    if (toks) {
        long k;
        ids = parse_ids(toks, "--tokens", c.cfg.vocab_size, &k);
        if (!k) die("--tokens: no token ids given");
        n = (int)k;
    } else if (prompt) {
        if (!c.tok.n_vocab) die("%s: model has no tokenizer; use --tokens", path);
        size_t len = strlen(prompt);
        long k;
        ids = encode_text(&c.tok, prompt, len, 1, 0, &k);
        n = (int)k;
    } else die("logits: give --tokens or -p");
    spq_model m;
    spq_state s;
    spq_err e;
    if (spq_model_init(&m, &c, n, &e)) die_err(&e);
    check_mem(path, &m, decode ? 1 : n, 1, 0, SPQ_F32, 0); /* the reference path: FP32 cache */
    if (spq_state_init(&s, &m, decode ? 1 : n)) die("out of memory");
    int V = c.cfg.vocab_size;
    if (top > V) top = V;
    if (!decode) spq_forward(&m, &s, ids, n, 0, 1);
    int *best = malloc(sizeof(int) * (size_t)top);
    for (int i = 0; i < n; i++) {
        const float *lg = s.logits + (size_t)(decode ? 0 : i) * V;
        if (decode) spq_forward(&m, &s, ids + i, 1, i, 0);
        double sum = 0;
        for (int k = 0; k < top; k++) best[k] = -1;
        for (int v = 0; v < V; v++) {
            sum += lg[v];
            for (int k = 0; k < top; k++)
                if (best[k] < 0 || lg[v] > lg[best[k]]) {
                    memmove(best + k + 1, best + k, sizeof(int) * (size_t)(top - k - 1));
                    best[k] = v;
                    break;
                }
        }
        printf("pos %d tok %d top%d", i, ids[i], top);
        for (int k = 0; k < top; k++) printf(" %d:%.6f", best[k], lg[best[k]]);
        printf(" sum %.6f\n", sum);
    }
    free(best); free(ids);
    spq_state_free(&s);
    spq_model_free(&m);
    close_ckpt(&c);
    return 0;
}
