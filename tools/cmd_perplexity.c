/* cmd_perplexity.c — spikeq perplexity: the model's perplexity on a text file, llama.cpp-style
 * output. Windows: `all` (default, as the GPTQ-family papers and the fixture's
 * transformers reference: BOS once, inputs ids[i..i+ctx), every next token scored) or
 * `half` (llama.cpp: BOS at each window start, only the second half scored). With
 * --kl-base, a second model runs the same windows and each scored token adds its KL
 * divergence KL(P_base || P_model) and whether the two agree on the top token, as
 * llama.cpp's --kl-divergence reports them. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/loglik.h"
#include "tools/cli.h"

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

/* A model opened for scoring windows of ctx tokens, batch at a time. */
typedef struct {
    spq_ckpt c;
    spq_model m;
    spq_state s;
} runner;

static void runner_open(runner *r, const char *path, int ctx, int batch, int kv)
{
    spq_err e;
    open_ckpt(path, &r->c);
    if (r->c.n == 0) die("%s: no weights (vocabulary-only file)", path);
    if (ctx > r->c.cfg.max_seq) die("-c %d exceeds the context of %s (%d)", ctx, path, r->c.cfg.max_seq);
    if (spq_model_init(&r->m, &r->c, ctx, &e)) die_err(&e);
    check_mem(path, &r->m, batch, 1, 0, kv, 0);
    if (spq_state_init_seq(&r->s, &r->m, batch, 1, 0, 0, kv)) die("out of memory");
}

static void runner_close(runner *r)
{
    spq_state_free(&r->s);
    spq_model_free(&r->m);
    close_ckpt(&r->c);
}

/* KL(P_b || P_q) = sum_v p_b(v) (log p_b(v) - log p_q(v)) with log p = logit - lse;
 * e[v] = exp(lb[v] - max lb), as spq_logsumexp leaves it, so p_b(v) = e[v] / sum e. */
static double kld_row(const float *lb, const float *lq, int V, double lse_b, double lse_q, const float *e)
{
    double acc = 0, se = 0;
    for (int v = 0; v < V; v++) {
        acc += (double)e[v] * ((double)lb[v] - (double)lq[v]);
        se += (double)e[v];
    }
    double k = acc / se - lse_b + lse_q;
    return k > 0 ? k : 0; /* rounding can leave -1e-9 where the two rows are equal */
}

int cmd_perplexity(int argc, char **argv)
{
    int kv = SPQ_F16;
    const char *path = NULL, *file = NULL, *score = "all", *base = NULL;
    int ctx = 512, batch = 0, chunks = 0, threads = 0, ids_file = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h")) {
            puts("usage: spikeq perplexity -m MODEL -f FILE [-c 512] [--chunks N] [-b BATCH] [-t N] [--kv f16|f32]\n"
                 "       [--score all|half] [--ids] [--kl-base BASE_MODEL]\n"
                 "--score all (default): BOS once, non-overlapping windows of -c tokens, every token scored\n"
                 "  (the GPTQ-family papers' method, and the transformers reference of the fixture model).\n"
                 "--score half: llama.cpp's method: BOS at each window start, second half scored.\n"
                 "--ids: FILE holds token ids instead of text.\n"
                 "--kl-base: run BASE_MODEL (e.g. the FP16 checkpoint) on the same windows and report the\n"
                 "  KL divergence of MODEL from it per token (mean, percentiles), how often their top tokens\n"
                 "  agree, and the perplexity ratio and difference.");
            return 0;
        }
        if (!strcmp(a, "-m") && v) path = argv[++i];
        else if (!strcmp(a, "-f") && v) file = argv[++i];
        else if (!strcmp(a, "-c") && v) ctx = (int)arg_int(a, argv[++i], 4, 1 << 20);
        else if (!strcmp(a, "-b") && v) batch = (int)arg_int(a, argv[++i], 1, 1 << 20);
        else if (!strcmp(a, "--chunks") && v) chunks = (int)arg_int(a, argv[++i], 1, 1 << 30);
        else if (!strcmp(a, "-t") && v) threads = (int)arg_int(a, argv[++i], 1, 1024);
        else if (!strcmp(a, "--score") && v) score = argv[++i];
        else if (!strcmp(a, "--kl-base") && v) base = argv[++i];
        else if (!strcmp(a, "--ids")) ids_file = 1;
        else if (!strcmp(a, "--kv") && v) kv = kv_arg(argv[++i]);
        else if (!strcmp(a, "-m") || !strcmp(a, "-f") || !strcmp(a, "-c") || !strcmp(a, "-b") || !strcmp(a, "--chunks") ||
                 !strcmp(a, "-t") || !strcmp(a, "--score") || !strcmp(a, "--kl-base") || !strcmp(a, "--kv"))
            die("%s: missing value", a);
        else die("perplexity: unknown option %s", a);
    }
    if (!path) die("perplexity: -m MODEL is required");
    if (!file) die("perplexity: -f FILE is required");
    if (strcmp(score, "all") && strcmp(score, "half")) die("--score: all or half");
    int half = !strcmp(score, "half");
    if (batch <= 0 || batch > ctx) batch = ctx;
    set_threads(threads);
    runner q, b;
    runner_open(&q, path, ctx, batch, kv);
    if (base) {
        runner_open(&b, base, ctx, batch, kv);
        if (b.c.cfg.vocab_size != q.c.cfg.vocab_size)
            die("%s: vocabulary of %d tokens, %s has %d: KL divergence needs the same vocabulary", base, b.c.cfg.vocab_size,
                path, q.c.cfg.vocab_size);
    }
    size_t len;
    char *text = read_text(file, &len);
    check_calib(&q.c, file, text, len);
    if (base) check_calib(&b.c, file, text, len);
    double t0 = spq_now();
    int *ids;
    long n;
    if (ids_file) {
        ids = parse_ids(text, file, q.c.cfg.vocab_size, &n);
    } else {
        if (!q.c.tok.n_vocab) die("%s: model has no tokenizer; pass ids with --ids", path);
        ids = encode_text(&q.c.tok, text, len, 1, 0, &n);
    }
    /* one whole window at least: the inputs of -c tokens and the token after them (all), or
     * -c tokens whose second half is scored (half) */
    if (n < ctx + !half) die("%s: too few tokens (%ld) for one window of -c %d", file, n, ctx);
    fprintf(stderr, "spikeq: tokenized %s: %ld tokens in %.2f s\n", file, n, spq_now() - t0);
    long n_windows = half ? n / ctx : (n - 1 + ctx - 1) / ctx;
    if (chunks > 0 && chunks < n_windows) n_windows = chunks;
    fprintf(stderr, "spikeq: %ld windows of %d tokens, scoring %s, batch %d\n", n_windows, ctx,
            half ? "the second half (llama.cpp)" : "every token", batch);
    double sum = 0, sum2 = 0, sb = 0, sb2 = 0, sd = 0, sd2 = 0, sk = 0, sk2 = 0;
    long cnt = 0, same = 0, nk = 0;
    int V = q.c.cfg.vocab_size;
    int *win = malloc(sizeof(int) * (size_t)ctx);
    double *klds = base ? malloc(sizeof(double) * (size_t)(n_windows * ctx)) : NULL, *kb = base ? malloc(sizeof(double) * (size_t)batch) : NULL;
    if (!win || (base && (!klds || !kb))) die("out of memory");
    t0 = spq_now();
    for (long w = 0; w < n_windows; w++) {
        spq_err ce;
        if (spq_ckpt_check(&q.c, &ce) || (base && spq_ckpt_check(&b.c, &ce))) die_err(&ce);
        long start = w * ctx;
        int wl = (int)(half ? ctx : (n - 1 - start < ctx ? n - 1 - start : ctx));
        memcpy(win, ids + start, sizeof(int) * (size_t)wl);
        if (half) win[0] = q.c.cfg.bos_id;
        int first = half ? ctx / 2 : 0;
        for (int bo = 0; bo < wl; bo += batch) {
            int bl = wl - bo < batch ? wl - bo : batch;
            spq_forward(&q.m, &q.s, win + bo, bl, bo, 1);
            if (base) spq_forward(&b.m, &b.s, win + bo, bl, bo, 1);
            int oom = 0;
#pragma omp parallel reduction(+ : sum, sum2, sb, sb2, sd, sd2, sk, sk2, cnt, same) reduction(|| : oom)
            {
                float *tq = malloc(sizeof(float) * (size_t)V), *tb = base ? malloc(sizeof(float) * (size_t)V) : NULL;
                if (!tq || (base && !tb)) oom = 1;
#pragma omp for
                for (int i = 0; i < bl; i++) {
                    int p = bo + i; /* logits at p predict ids[start + p + 1] */
                    if (base) kb[i] = -1;
                    if (!tq || (base && !tb) || p < first || start + p + 1 >= n || (half && p >= ctx - 1)) continue;
                    int tgt = ids[start + p + 1], top_q, top_b;
                    const float *lq = q.s.logits + (size_t)i * V;
                    double lse_q = spq_logsumexp(lq, V, tq, &top_q), l = lse_q - lq[tgt];
                    sum += l; sum2 += l * l;
                    cnt++;
                    if (!base) continue;
                    const float *lb = b.s.logits + (size_t)i * V;
                    double lse_b = spq_logsumexp(lb, V, tb, &top_b), lbn = lse_b - lb[tgt], d = l - lbn;
                    double k = kld_row(lb, lq, V, lse_b, lse_q, tb);
                    sb += lbn; sb2 += lbn * lbn; sd += d; sd2 += d * d; sk += k; sk2 += k * k;
                    same += top_q == top_b;
                    kb[i] = k;
                }
                free(tq); free(tb);
            }
            if (oom) die("out of memory");
            for (int i = 0; base && i < bl; i++)
                if (kb[i] >= 0) klds[nk++] = kb[i];
        }
        printf("[%ld]%.4f,", w + 1, exp(sum / (double)cnt));
        fflush(stdout);
        if (w == 0) fprintf(stderr, "spikeq: %.2f s per window, about %.1f min in all\n", spq_now() - t0, (spq_now() - t0) * (double)n_windows / 60);
    }
    double mean, se;
    mean_se(sum, sum2, cnt, &mean, &se);
    double ppl = exp(mean);
    printf("\nFinal estimate: PPL = %.4f +/- %.5f over %ld tokens\n", ppl, ppl * se, cnt);
    if (base) {
        /* llama.cpp's statistics: ln(PPL(Q)/PPL(base)) is the mean of the per-token
         * differences of the two negative log-likelihoods, with its own standard error */
        double mb, seb, md, sed, mk, sek;
        mean_se(sb, sb2, cnt, &mb, &seb);
        mean_se(sd, sd2, cnt, &md, &sed);
        mean_se(sk, sk2, cnt, &mk, &sek);
        qsort(klds, (size_t)nk, sizeof *klds, cmp_double);
        double pb = exp(mb), ps = (double)same / (double)cnt;
        printf("\nPPL(base)                     : %.4f +/- %.5f (%s)\n", pb, pb * seb, base);
        printf("ln(PPL(Q)/PPL(base))          : %.6f +/- %.6f\n", md, sed);
        printf("PPL(Q)/PPL(base)              : %.6f +/- %.6f\n", exp(md), exp(md) * sed);
        printf("PPL(Q)-PPL(base)              : %.4f +/- %.5f\n", ppl - pb, pb * exp(md) * sed);
        printf("Mean KLD                      : %.6f +/- %.6f\n", mk, sek);
        printf("99.9%% KLD                     : %.6f\n", klds[(long)(0.999 * (double)(nk - 1))]);
        printf("99.0%% KLD                     : %.6f\n", klds[(long)(0.99 * (double)(nk - 1))]);
        printf("Median KLD                    : %.6f\n", klds[(nk - 1) / 2]);
        printf("Maximum KLD                   : %.6f\n", klds[nk - 1]);
        printf("Same top token                : %.3f +/- %.3f %%\n", 100 * ps, 100 * sqrt(ps * (1 - ps) / (double)(cnt > 1 ? cnt - 1 : 1)));
    }
    fprintf(stderr, "spikeq: %.2f s, %.1f tokens/s\n", spq_now() - t0, (double)cnt / (spq_now() - t0));
    free(kb);
    free(win); free(ids); free(text); free(klds);
    if (base) runner_close(&b);
    runner_close(&q);
    return 0;
}
