/* cmd_eval.c — spikeq perplexity: the model's perplexity on a text file, llama.cpp-style
 * output. Windows: `all` (default, as the GPTQ-family papers and the fixture's
 * transformers reference: BOS once, inputs ids[i..i+ctx), every next token scored) or
 * `half` (llama.cpp: BOS at each window start, only the second half scored). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "tools/cli.h"

/* -log softmax(logits)[target]; tmp is V floats of scratch */
static double nll_of(const float *lg, int V, int target, float *tmp)
{
    float mx = lg[0];
    for (int v = 1; v < V; v++) mx = lg[v] > mx ? lg[v] : mx;
    for (int v = 0; v < V; v++) tmp[v] = lg[v] - mx;
    spq_kern()->vexp(tmp, V);
    double s = 0;
    for (int v = 0; v < V; v++) s += tmp[v];
    return log(s) + mx - lg[target];
}

/* refuse to evaluate on the text the checkpoint was calibrated on */
static void check_calib(const spq_ckpt *c, const char *file, const char *text, size_t len)
{
    if (!c->plan_json) return;
    cJSON *j = cJSON_Parse(c->plan_json);
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(j, "calib_hash");
    char hx[24];
    snprintf(hx, sizeof hx, "%016llx", (unsigned long long)spq_hash64(text, len));
    int same = cJSON_IsString(h) && !strcmp(h->valuestring, hx);
    cJSON_Delete(j);
    if (same) die("%s: this model was calibrated on this text: evaluate on held-out text", file);
}

int cmd_perplexity(int argc, char **argv)
{
    const char *path = NULL, *file = NULL, *score = "all";
    int ctx = 512, batch = 0, chunks = 0, threads = 0, ids_file = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h")) {
            puts("usage: spikeq perplexity -m MODEL -f FILE [-c 512] [--chunks N] [-b BATCH] [-t N]\n"
                 "       [--score all|half] [--ids]\n"
                 "--score all (default): BOS once, non-overlapping windows of -c tokens, every token scored\n"
                 "  (the GPTQ-family papers' method, and the transformers reference of the fixture model).\n"
                 "--score half: llama.cpp's method: BOS at each window start, second half scored.\n"
                 "--ids: FILE holds token ids instead of text.");
            return 0;
        }
        if (!strcmp(a, "-m") && v) path = argv[++i];
        else if (!strcmp(a, "-f") && v) file = argv[++i];
        else if (!strcmp(a, "-c") && v) ctx = (int)arg_int(a, argv[++i], 4, 1 << 20);
        else if (!strcmp(a, "-b") && v) batch = (int)arg_int(a, argv[++i], 1, 1 << 20);
        else if (!strcmp(a, "--chunks") && v) chunks = (int)arg_int(a, argv[++i], 1, 1 << 30);
        else if (!strcmp(a, "-t") && v) threads = (int)arg_int(a, argv[++i], 1, 1024);
        else if (!strcmp(a, "--score") && v) score = argv[++i];
        else if (!strcmp(a, "--ids")) ids_file = 1;
        else die("perplexity: unknown option %s", a);
    }
    if (!file) die("perplexity: -f FILE is required");
    if (strcmp(score, "all") && strcmp(score, "half")) die("--score: all or half");
    int half = !strcmp(score, "half");
    set_threads(threads);
    spq_ckpt c;
    open_ckpt(path, &c);
    if (c.n == 0) die("%s: no weights (vocabulary-only file)", path);
    if (ctx > c.cfg.max_seq) die("-c %d exceeds the model's context of %d", ctx, c.cfg.max_seq);
    size_t len;
    char *text = read_text(file, &len);
    check_calib(&c, file, text, len);
    double t0 = now_s();
    int *ids;
    long n;
    if (ids_file) {
        ids = parse_ids(text, file, c.cfg.vocab_size, &n);
    } else {
        if (!c.tok.n_vocab) die("%s: model has no tokenizer; pass ids with --ids", path);
        ids = malloc(sizeof(int) * (len + 2));
        n = spq_tok_encode(&c.tok, text, len, 1, 0, ids, (long)len + 2);
    }
    fprintf(stderr, "spikeq: tokenized %s: %ld tokens in %.2f s\n", file, n, now_s() - t0);
    if (n < 2 || (half && n < ctx)) die("%s: too few tokens (%ld) for -c %d", file, n, ctx);
    if (batch <= 0 || batch > ctx) batch = ctx;
    spq_model m;
    spq_state s;
    spq_err e;
    if (spq_model_init(&m, &c, ctx, &e)) die_err(&e);
    if (spq_state_init(&s, &m, batch)) die("out of memory");
    long n_windows = half ? n / ctx : (n - 1 + ctx - 1) / ctx;
    if (chunks > 0 && chunks < n_windows) n_windows = chunks;
    fprintf(stderr, "spikeq: %ld windows of %d tokens, scoring %s, batch %d\n", n_windows, ctx,
            half ? "the second half (llama.cpp)" : "every token", batch);
    double sum = 0, sum2 = 0;
    long cnt = 0;
    int V = c.cfg.vocab_size;
    int *win = malloc(sizeof(int) * (size_t)ctx);
    t0 = now_s();
    for (long w = 0; w < n_windows; w++) {
        spq_err ce;
        if (spq_ckpt_check(&c, &ce)) die_err(&ce);
        long start = w * ctx;
        int wl = (int)(half ? ctx : (n - 1 - start < ctx ? n - 1 - start : ctx));
        memcpy(win, ids + start, sizeof(int) * (size_t)wl);
        if (half) win[0] = c.cfg.bos_id;
        int first = half ? ctx / 2 : 0;
        for (int b = 0; b < wl; b += batch) {
            int bl = wl - b < batch ? wl - b : batch;
            spq_forward(&m, &s, win + b, bl, b, 1);
#pragma omp parallel
            {
                float *tmp = malloc(sizeof(float) * (size_t)V);
#pragma omp for reduction(+ : sum, sum2, cnt)
                for (int i = 0; i < bl; i++) {
                    int p = b + i; /* logits at p predict ids[start + p + 1] */
                    if (p < first || start + p + 1 >= n || (half && p >= ctx - 1)) continue;
                    double l = nll_of(s.logits + (size_t)i * V, V, ids[start + p + 1], tmp);
                    sum += l;
                    sum2 += l * l;
                    cnt++;
                }
                free(tmp);
            }
        }
        printf("[%ld]%.4f,", w + 1, exp(sum / (double)cnt));
        fflush(stdout);
        if (w == 0) fprintf(stderr, "spikeq: %.2f s per window, about %.1f min in all\n", now_s() - t0, (now_s() - t0) * (double)n_windows / 60);
    }
    double mean = sum / (double)cnt, var = sum2 / (double)cnt - mean * mean;
    double ppl = exp(mean), err = ppl * sqrt(var > 0 ? var / (double)(cnt > 1 ? cnt - 1 : 1) : 0);
    printf("\nFinal estimate: PPL = %.4f +/- %.5f over %ld tokens\n", ppl, err, cnt);
    fprintf(stderr, "spikeq: %.2f s, %.1f tokens/s\n", now_s() - t0, (double)cnt / (now_s() - t0));
    free(win); free(ids); free(text);
    spq_state_free(&s);
    spq_model_free(&m);
    spq_ckpt_free(&c);
    return 0;
}
