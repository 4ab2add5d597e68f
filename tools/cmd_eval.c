/* cmd_eval.c — spikeq eval: zero-shot accuracy on multiple-choice and cloze tasks, with the
 * requests built exactly as lm-evaluation-harness builds them (data/eval/README.md of the
 * shared data): continuation = " " + choice, trailing whitespace of the context moved to it,
 * continuation tokens = encode(context + continuation) after encode(context)'s length, one
 * BOS before the context, the last tokens kept when too long for the model's context. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/loglik.h"
#include "tools/cli.h"
#include "tools/eval_tasks.h"

/* Growable text (the per-item file, kept in memory until the run is complete). */
typedef struct {
    char *p;
    size_t n, cap;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->p ? b->p + b->n : NULL, b->p ? b->cap - b->n : 0, fmt, ap);
        va_end(ap);
        if (k < 0) die("per-item output: formatting failed");
        if (b->p && b->n + (size_t)k < b->cap) { b->n += (size_t)k; return; }
        size_t nc = (b->cap + (size_t)k + 1) * 2;
        char *q = realloc(b->p, nc);
        if (!q) die("out of memory");
        b->p = q; b->cap = nc;
    }
}

static long utf8_chars(const char *s)
{
    long n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* The harness's _encode_pair, then BOS + context + continuation cut to fit ctx_len inputs;
 * the ids are malloc'd (ncont may be 0: the continuation added no tokens of its own). */
static spq_llreq make_request(const spq_tokenizer *tok, int bos, int ctx_len, const char *context, const char *choice)
{
    size_t lc = strlen(context), ls = strlen(choice), sp = 0;
    while (sp < lc && (context[lc - 1 - sp] == ' ' || (context[lc - 1 - sp] >= '\t' && context[lc - 1 - sp] <= '\r'))) sp++;
    char *whole = malloc(lc + ls + 2);
    if (!whole) die("out of memory");
    memcpy(whole, context, lc);
    whole[lc] = ' '; /* the target delimiter; the context's trailing spaces stay before it */
    memcpy(whole + lc + 1, choice, ls + 1);
    long nc, nw;
    int *c = encode_text(tok, context, lc - sp, 0, 0, &nc), *w = encode_text(tok, whole, lc + 1 + ls, 0, 0, &nw);
    spq_llreq r;
    r.ncont = nw > nc ? (int)(nw - nc) : 0;
    long total = 1 + nc + r.ncont, drop = total - 1 > ctx_len ? total - 1 - ctx_len : 0;
    int *ids = malloc(sizeof(int) * (size_t)total);
    if (!ids) die("out of memory");
    ids[0] = bos;
    memcpy(ids + 1, c, sizeof(int) * (size_t)nc);
    if (r.ncont) memcpy(ids + 1 + nc, w + nc, sizeof(int) * (size_t)r.ncont);
    if (drop) memmove(ids, ids + drop, sizeof(int) * (size_t)(total - drop));
    r.ids = ids;
    r.n = (int)(total - drop);
    if (r.ncont > r.n - 1) r.ncont = r.n - 1;
    free(c); free(w); free(whole);
    return r;
}

static int argmax_d(const double *v, int n)
{
    int b = 0;
    for (int i = 1; i < n; i++) b = v[i] > v[b] ? i : b;
    return b;
}

typedef struct {
    const char *name;
    int kind, acc_norm, n;
    double acc, acc_se, norm, norm_se, ppl, ppl_se, chance, sec;
} task_result;

/* Items scored per call of spq_loglik_batch: between calls the progress line moves. */
#define SLICE 64

/* Sequences scored at once: as many as fit CACHE_BYTES of KV cache for the task's longest
 * request, at most 64, at least an item's requests. */
#define CACHE_BYTES ((size_t)256 << 20)

static task_result run_task(const spq_model *m, int n_ctx, int batch, int kv, const spq_tokenizer *tok, int bos, const ev_task *t,
                            strbuf *per_item)
{
    task_result res = {.name = t->name, .kind = t->kind, .acc_norm = t->acc_norm, .n = t->n_items};
    double a = 0, a2 = 0, an = 0, ll = 0, ll2 = 0, chance = 0;
    int tty = isatty(2), shown = -1;
    double t0 = spq_now();
    /* request k of item it is lr[first[it] + k] */
    int *first = malloc(sizeof(int) * (size_t)(t->n_items + 1));
    if (!first) die("out of memory");
    first[0] = 0;
    for (int it = 0; it < t->n_items; it++) first[it + 1] = first[it] + t->items[it].n;
    spq_llreq *lr = malloc(sizeof *lr * (size_t)first[t->n_items]);
    spq_loglik *r = malloc(sizeof *r * (size_t)first[t->n_items]);
    if (!lr || !r) die("out of memory");
    for (int it = 0; it < t->n_items; it++)
        for (int i = 0; i < t->items[it].n; i++)
            lr[first[it] + i] = make_request(tok, bos, n_ctx, t->items[it].context[i], t->items[it].cont[i]);
    int longest = 1, widest = 1;
    for (int q = 0; q < first[t->n_items]; q++) longest = lr[q].n - 1 > longest ? lr[q].n - 1 : longest;
    for (int it = 0; it < t->n_items; it++) widest = t->items[it].n > widest ? t->items[it].n : widest;
    size_t per_seq = (size_t)m->cfg.n_layers * (size_t)longest * (size_t)m->cfg.n_kv_heads * (size_t)m->cfg.head_dim * 2 * spq_dtype_size(kv);
    size_t fit = CACHE_BYTES / per_seq;
    int n_seq = fit > 64 ? 64 : fit < (size_t)widest ? widest : (int)fit;
    spq_state st, *s = &st;
    check_mem(NULL, m, batch, n_seq, longest, kv, 0);
    if (spq_state_init_seq(s, m, batch, n_seq, longest, 0, kv)) die("out of memory for %d sequences of %d positions", n_seq, longest);
    for (int i0 = 0; i0 < t->n_items; i0 += SLICE) {
        int i1 = i0 + SLICE < t->n_items ? i0 + SLICE : t->n_items;
        /* requests whose continuation has no tokens of its own score 0 (none here, in practice) */
        int q0 = first[i0], q1 = first[i1], k = 0;
        spq_llreq *sub = malloc(sizeof *sub * (size_t)(q1 - q0));
        int *map = malloc(sizeof(int) * (size_t)(q1 - q0));
        spq_loglik *got = malloc(sizeof *got * (size_t)(q1 - q0));
        if (!sub || !map || !got) die("out of memory");
        for (int q = q0; q < q1; q++) {
            r[q] = (spq_loglik){0, 0, 1};
            if (lr[q].ncont > 0) { map[k] = q; sub[k++] = lr[q]; }
        }
        if (k && spq_loglik_batch(m, s, sub, k, got)) die("out of memory scoring %s", t->name);
        for (int j = 0; j < k; j++) r[map[j]] = got[j];
        free(sub); free(map); free(got);
        int pct = (int)(100L * i1 / t->n_items);
        if (tty && pct != shown) {
            shown = pct;
            double el = spq_now() - t0;
            fprintf(stderr, "\rspikeq: %-13s %5d/%d items %3d%%, %.0f s, about %.0f s left ", t->name, i1, t->n_items, pct, el,
                    el / i1 * (t->n_items - i1));
        }
    }
    if (tty) fputc('\n', stderr);
    for (int it = 0; it < t->n_items; it++) {
        const ev_item *x = &t->items[it];
        const spq_loglik *ri = r + first[it];
        double lp[64], norm[64];
        for (int i = 0; i < x->n; i++) {
            lp[i] = ri[i].logp;
            norm[i] = ri[i].logp / (double)(utf8_chars(x->cont[i]) > 0 ? utf8_chars(x->cont[i]) : 1);
        }
        double hit = t->kind == EV_GREEDY ? ri[0].greedy : argmax_d(lp, x->n) == x->gold;
        a += hit; a2 += hit * hit;
        if (t->acc_norm) an += argmax_d(norm, x->n) == x->gold;
        if (t->kind == EV_GREEDY) { ll += lp[0]; ll2 += lp[0] * lp[0]; }
        chance += t->kind == EV_GREEDY ? 0 : 1.0 / x->n;
        if (per_item) {
            sb_printf(per_item, "{\"task\":\"%s\",\"item\":%d,\"gold\":%d,\"logprob\":[", t->name, it, x->gold);
            for (int i = 0; i < x->n; i++) sb_printf(per_item, "%s%.6f", i ? "," : "", lp[i]);
            sb_printf(per_item, "],\"tokens\":[");
            for (int i = 0; i < x->n; i++) sb_printf(per_item, "%s%d", i ? "," : "", ri[i].n);
            sb_printf(per_item, "],\"chars\":[");
            for (int i = 0; i < x->n; i++) sb_printf(per_item, "%s%ld", i ? "," : "", utf8_chars(x->cont[i]));
            sb_printf(per_item, "],\"greedy\":[");
            for (int i = 0; i < x->n; i++) sb_printf(per_item, "%s%s", i ? "," : "", ri[i].greedy ? "true" : "false");
            sb_printf(per_item, "]}\n");
        }
    }
    for (int q = 0; q < first[t->n_items]; q++) free((void *)lr[q].ids);
    free(lr); free(r); free(first);
    spq_state_free(s);
    long n = t->n_items;
    mean_se(a, a2, n, &res.acc, &res.acc_se);
    mean_se(an, an, n, &res.norm, &res.norm_se); /* 0/1 values: the sum of squares is the sum */
    if (t->kind == EV_GREEDY) {
        /* perplexity = exp(-mean log-likelihood of a continuation); its error by the delta method */
        double mll, sell;
        mean_se(ll, ll2, n, &mll, &sell);
        res.ppl = exp(-mll);
        res.ppl_se = res.ppl * sell;
    }
    res.chance = chance / (double)n;
    res.sec = spq_now() - t0;
    fprintf(stderr, "spikeq: %s: %d items in %.1f s (%.1f items/s)\n", t->name, t->n_items, res.sec, t->n_items / res.sec);
    return res;
}

static void print_table(const task_result *r, int n)
{
    printf("| task | items | metric | value | ± stderr | chance |\n|---|---:|---|---:|---:|---:|\n");
    for (int i = 0; i < n; i++) {
        if (r[i].kind == EV_GREEDY) {
            printf("| %s | %d | acc | %.4f | %.4f | - |\n", r[i].name, r[i].n, r[i].acc, r[i].acc_se);
            printf("| | | perplexity | %.4f | %.4f | - |\n", r[i].ppl, r[i].ppl_se);
            continue;
        }
        printf("| %s | %d | acc | %.4f | %.4f | %.4f |\n", r[i].name, r[i].n, r[i].acc, r[i].acc_se, r[i].chance);
        if (r[i].acc_norm) printf("| | | acc_norm | %.4f | %.4f | %.4f |\n", r[i].norm, r[i].norm_se, r[i].chance);
    }
}

static void print_json(const char *model, const task_result *r, int n)
{
    printf("{\"model\": \"%s\", \"results\": {", model);
    for (int i = 0; i < n; i++) {
        printf("%s\n  \"%s\": {\"items\": %d, \"acc\": %.6f, \"acc_stderr\": %.6f", i ? "," : "", r[i].name, r[i].n, r[i].acc, r[i].acc_se);
        if (r[i].acc_norm) printf(", \"acc_norm\": %.6f, \"acc_norm_stderr\": %.6f", r[i].norm, r[i].norm_se);
        if (r[i].kind == EV_GREEDY) printf(", \"perplexity\": %.6f, \"perplexity_stderr\": %.6f", r[i].ppl, r[i].ppl_se);
        else printf(", \"chance\": %.6f", r[i].chance);
        printf(", \"seconds\": %.2f}", r[i].sec);
    }
    printf("\n}}\n");
}

/* Write the whole buffer to path through a temporary name, so no partial file is left. */
static void write_file(const char *path, const strbuf *b)
{
    size_t pl = strlen(path);
    char *tmp = malloc(pl + 16);
    if (!tmp) die("out of memory");
    snprintf(tmp, pl + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) die("%s: cannot write", path);
    FILE *f = fdopen(fd, "w");
    int ok = f && fwrite(b->p ? b->p : "", 1, b->n, f) == b->n;
    if (f) ok = fclose(f) == 0 && ok;
    if (!ok || rename(tmp, path)) { unlink(tmp); die("%s: write failed, no file written", path); }
    free(tmp);
}

int cmd_eval(int argc, char **argv)
{
    const char *path = NULL, *tasks = ev_task_names, *dir = NULL, *fmt = "table", *per_item = NULL;
    int limit = 0, batch = 512, threads = 0, ctx = 0, kv = SPQ_F16;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h")) {
            printf("usage: spikeq eval -m MODEL --data DIR [--tasks %s]\n"
                   "       [--limit N] [-b BATCH] [-c CTX] [-t N] [-o table|json] [--per-item FILE.jsonl] [--kv f16|f32]\n"
                   "Zero-shot accuracy, requests built as lm-evaluation-harness builds them. --data: the folder\n"
                   "of the task files (hellaswag_val_full.txt, piqa_valid.jsonl + piqa_valid-labels.lst,\n"
                   "arc_easy.jsonl, ...). acc: the gold choice has the highest summed log-probability;\n"
                   "acc_norm: the highest per character of the choice; lambada: acc = the continuation is the\n"
                   "greedy prediction, and its perplexity. --limit: the first N items of each task;\n"
                   "--per-item: each choice's log-probability, token and character counts, one JSON line per item.\n",
                   ev_task_names);
            return 0;
        }
        if (!strcmp(a, "-m") && v) path = argv[++i];
        else if (!strcmp(a, "--tasks") && v) tasks = argv[++i];
        else if (!strcmp(a, "--data") && v) dir = argv[++i];
        else if (!strcmp(a, "--limit") && v) limit = (int)arg_int(a, argv[++i], 1, 1 << 30);
        else if (!strcmp(a, "-b") && v) batch = (int)arg_int(a, argv[++i], 1, 1 << 16);
        else if (!strcmp(a, "-c") && v) ctx = (int)arg_int(a, argv[++i], 8, 1 << 22);
        else if (!strcmp(a, "-t") && v) threads = (int)arg_int(a, argv[++i], 1, 1024);
        else if (!strcmp(a, "-o") && v) fmt = argv[++i];
        else if (!strcmp(a, "--per-item") && v) per_item = argv[++i];
        else if (!strcmp(a, "--kv") && v) kv = kv_arg(argv[++i]);
        else if (!strcmp(a, "-m") || !strcmp(a, "--tasks") || !strcmp(a, "--data") || !strcmp(a, "--limit") || !strcmp(a, "-b") ||
                 !strcmp(a, "-c") || !strcmp(a, "-t") || !strcmp(a, "-o") || !strcmp(a, "--per-item") || !strcmp(a, "--kv"))
            die("%s: missing value", a);
        else die("eval: unknown option %s (spikeq eval -h)", a);
    }
    if (!path) die("eval: -m MODEL is required");
    if (!dir) die("eval: --data DIR is required (the folder of the task files)");
    if (strcmp(fmt, "table") && strcmp(fmt, "json")) die("-o: table or json");
    /* every task's files are read before the model runs, so a bad name or file fails at once */
    int nt = 1;
    for (const char *p = tasks; *p; p++) nt += *p == ',';
    ev_task *ts = calloc((size_t)nt, sizeof *ts);
    task_result *res = calloc((size_t)nt, sizeof *res);
    char *names = strdup(tasks), err[4600];
    if (!ts || !res || !names) die("out of memory");
    nt = 0;
    for (char *sv, *name = strtok_r(names, ",", &sv); name; name = strtok_r(NULL, ",", &sv))
        if (ev_task_load(dir, name, limit, &ts[nt++], err, sizeof err)) die("%s", err);
    if (nt == 0) die("--tasks: no task named");
    set_threads(threads);
    spq_ckpt c;
    open_ckpt(path, &c);
    if (c.n == 0) die("%s: no weights (vocabulary-only file)", path);
    if (!c.tok.n_vocab) die("%s: model has no tokenizer", path);
    spq_model m;
    spq_err e;
    if (spq_model_init(&m, &c, ctx, &e)) die_err(&e);
    strbuf items = {0};
    for (int i = 0; i < nt; i++) {
        if (spq_ckpt_check(&c, &e)) die_err(&e);
        res[i] = run_task(&m, m.ctx, batch, kv, &c.tok, c.cfg.bos_id, &ts[i], per_item ? &items : NULL);
    }
    if (!strcmp(fmt, "json")) print_json(path, res, nt);
    else print_table(res, nt);
    if (per_item) write_file(per_item, &items);
    for (int i = 0; i < nt; i++) ev_task_free(&ts[i]);
    free(ts); free(res); free(names); free(items.p);
    spq_model_free(&m);
    close_ckpt(&c);
    return 0;
}
