/* cmd_text.c — spikeq tokenize and generate: text in, text out. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <limits.h>

#include "include/spikeq.h"
#include "tools/cli.h"

static int utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        int len = spq_utf8_len(p[i]);
        if (!len || i + (size_t)len > n) return 0;
        for (int k = 1; k < len; k++)
            if ((p[i + k] & 0xc0) != 0x80) return 0;
        i += (size_t)len;
    }
    return 1;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *path = NULL, *file = NULL, *text = NULL;
    int bos = 0, special = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h")) {
            puts("usage: spikeq tokenize -m MODEL [--bos] [--special] [-f FILE | TEXT]");
            return 0;
        } else if (!strcmp(argv[i], "-m") && i + 1 < argc) path = argv[++i];
        else if (!strcmp(argv[i], "-f") && i + 1 < argc) file = argv[++i];
        else if (!strcmp(argv[i], "-p") && i + 1 < argc) text = argv[++i];
        else if (!strcmp(argv[i], "--bos")) bos = 1;
        else if (!strcmp(argv[i], "--special")) special = 1;
        else if (argv[i][0] == '-' && argv[i][1]) die("tokenize: unknown option %s", argv[i]);
        else text = argv[i];
    }
    spq_ckpt c;
    open_ckpt(path, &c);
    if (!c.tok.n_vocab) die("%s: no tokenizer in this model", path);
    size_t len;
    char *buf = NULL;
    if (file) text = buf = read_text(file, &len);
    else if (text) len = strlen(text);
    else die("tokenize: give TEXT or -f FILE");
    if (!utf8_valid(text, len)) die("%s: input is not valid UTF-8", file ? file : "text");
    long n;
    int *ids = encode_text(&c.tok, text, len, bos, special, &n);
    for (long i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
    printf("\n");
    free(ids); free(buf);
    close_ckpt(&c);
    return 0;
}

/* Streams decoded pieces, holding back an incomplete UTF-8 sequence until it completes. */
typedef struct { char pend[8]; int n; } utf8_out;

static void emit(utf8_out *u, const char *s, int n)
{
    for (int i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (u->n == 0) {
            int len = spq_utf8_len(c);
            if (len <= 1) { fputc(c, stdout); continue; }
            u->pend[u->n++] = (char)c;
        } else if ((c & 0xc0) == 0x80) {
            u->pend[u->n++] = (char)c;
            if (u->n == spq_utf8_len((unsigned char)u->pend[0])) { fwrite(u->pend, 1, (size_t)u->n, stdout); u->n = 0; }
        } else { /* broken sequence: flush as is, restart with this byte */
            fwrite(u->pend, 1, (size_t)u->n, stdout);
            u->n = 0;
            i--;
        }
    }
    fflush(stdout);
}

/* One generation through the public API: a model, a context of one sequence, a sampler. */
typedef struct {
    spikeq_model *model;
    spikeq_context *ctx;
    spikeq_sampler *smp;
    spikeq_batch batch;
    int n_ctx, n_batch, pos, n_predict, special, ids_out;
    double t_prompt, t_gen;
    long n_prompt, n_gen;
    int eot;               /* --chat: the format's end-of-turn token (-1: none) */
    char *reply;           /* --chat: the assistant's text of the turn */
    size_t reply_len, reply_cap;
} gen_run;

static void keep_reply(gen_run *g, const char *s, int n)
{
    if (n <= 0) return;
    if (g->reply_len + (size_t)n + 1 > g->reply_cap) {
        g->reply_cap = (g->reply_len + (size_t)n + 1) * 2;
        if (!(g->reply = realloc(g->reply, g->reply_cap))) die("out of memory");
    }
    memcpy(g->reply + g->reply_len, s, (size_t)n);
    g->reply_len += (size_t)n;
    g->reply[g->reply_len] = 0;
}

/* Decode the batch built in g->batch or die with the context's message. */
static void decode(gen_run *g)
{
    if (spikeq_decode(g->ctx, &g->batch)) die("%s", spikeq_context_error(g->ctx));
}

/* Feed the prompt ids, then sample and stream up to n_predict tokens. */
static void run_turn(gen_run *g, const int *ids, long n)
{
    if (g->pos + n >= g->n_ctx) die("prompt of %ld tokens does not fit the context (%d, %d used): raise -c", n, g->n_ctx, g->pos);
    double t0 = spq_now();
    for (long i = 0; i < n; i += g->n_batch) {
        int b = (int)(n - i < g->n_batch ? n - i : g->n_batch);
        g->batch.n_tokens = 0;
        for (int k = 0; k < b; k++) spikeq_batch_add(&g->batch, ids[i + k], g->pos + k, 0, i + k == n - 1);
        decode(g);
        g->pos += b;
    }
    g->t_prompt += spq_now() - t0;
    g->n_prompt += n;
    t0 = spq_now();
    utf8_out u = {{0}, 0};
    int prev = ids[n - 1], V = spikeq_n_vocab(g->model);
    const float *logits = spikeq_get_logits(g->ctx, g->batch.n_tokens - 1);
    char piece[1200];
    for (int k = 0; k < g->n_predict && g->pos < g->n_ctx; k++) {
        int next = spikeq_sampler_sample(g->smp, logits, V);
        if ((next == spikeq_token_eos(g->model) || next == g->eot) && !g->ids_out) break;
        if (g->ids_out) printf("%d ", next);
        else {
            int len = spikeq_token_to_piece(g->model, prev, next, piece, sizeof piece);
            emit(&u, piece, len > 0 ? len : 0);
            if (g->eot != -2) keep_reply(g, piece, len);
        }
        g->n_gen++;
        prev = next;
        g->batch.n_tokens = 0;
        spikeq_batch_add(&g->batch, next, g->pos++, 0, 1);
        decode(g);
        logits = spikeq_get_logits(g->ctx, 0);
    }
    if (u.n) fwrite(u.pend, 1, (size_t)u.n, stdout);
    fputc('\n', stdout);
    fflush(stdout);
    g->t_gen += spq_now() - t0;
}

/* Token ids of text (BOS first when bos) in a malloc'd array; dies on failure. */
static int *encode_api(const spikeq_model *m, const char *text, size_t len, int bos, int special, long *n)
{
    int cap = (int)len + 8;
    int *ids = malloc(sizeof(int) * (size_t)cap);
    int k = ids ? spikeq_tokenize(m, text, (int32_t)len, ids, cap, bos, special) : INT32_MIN;
    if (k < 0) die("out of memory encoding the text");
    *n = k;
    return ids;
}

/* --chat: the conversation so far (user turns, the assistant's replies) formatted by the
 * public API's chat formats, ending with the assistant's header, as token ids. Each turn runs
 * the whole conversation again from position 0: a format's next turn may change how the
 * previous one ends (LLaMA-2 closes an answer with </s> and opens the next question with <s>). */
typedef struct {
    spikeq_chat_message *m;
    int n, cap;
    const char *tmpl;
} chat_log;

static void chat_add(chat_log *c, const char *role, const char *text)
{
    if (c->n == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 8;
        if (!(c->m = realloc(c->m, sizeof *c->m * (size_t)c->cap))) die("out of memory");
    }
    char *t = strdup(text);
    if (!t) die("out of memory");
    c->m[c->n++] = (spikeq_chat_message){role, t};
}

static int *chat_ids(gen_run *g, const chat_log *c, long *n)
{
    int32_t k = spikeq_chat_apply(g->model, c->tmpl, c->m, c->n, 1, NULL, 0);
    char *text = k == INT32_MIN ? NULL : malloc((size_t)-k);
    if (!text) die("cannot format the conversation");
    spikeq_chat_apply(g->model, c->tmpl, c->m, c->n, 1, text, -k);
    int *ids = encode_api(g->model, text, strlen(text), 1, 1, n);
    free(text);
    return ids;
}

/* One chat turn: the conversation with the user's new text, the reply streamed and kept. */
static void chat_turn(gen_run *g, chat_log *c, const char *user)
{
    chat_add(c, "user", user);
    long n;
    int *ids = chat_ids(g, c, &n);
    spikeq_kv_clear(g->ctx, 0);
    g->pos = 0;
    g->reply_len = 0;
    if (g->reply) g->reply[0] = 0;
    run_turn(g, ids, n);
    free(ids);
    chat_add(c, "assistant", g->reply ? g->reply : "");
}

int cmd_generate(int argc, char **argv)
{
    const char *path = NULL, *prompt = NULL, *file = NULL, *prompt_ids = NULL;
    int threads = 0, interactive = 0, chat = 0;
    const char *system = NULL, *tmpl = NULL;
    spikeq_kv_type kv = SPIKEQ_KV_F16;
    gen_run g;
    memset(&g, 0, sizeof g);
    g.n_predict = 128;
    spikeq_sampler_params sp = spikeq_sampler_default_params();
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: spikeq generate -m MODEL -p PROMPT [-n N] [-t THREADS] [-c CTX] [-f FILE] [-i]\n"
                 "       [--temp T] [--top-k K] [--top-p P] [--min-p P] [--repeat-penalty R]\n"
                 "       [--repeat-last-n N] [--seed S] [--special] [--kv f16|f32]\n"
                 "       [--chat [--system TEXT] [--chat-template llama2|llama3|mistral|chatml|zephyr]]\n"
                 "--chat: the prompt (and each -i line) is a user turn in the model's chat format (the one its\n"
                 "files name, else ChatML, or --chat-template); the reply ends at the format's end of turn.\n"
                 "--temp 0 is greedy. Defaults: -n 128, --temp 0.8, --top-k 40, --top-p 0.95, --min-p 0.05,\n"
                 "--repeat-penalty 1.0 (off), --seed from the clock. -i: interactive, Ctrl-D ends.\n"
                 "--prompt-ids 1,300 gives the prompt as token ids; --ids prints token ids instead of text\n"
                 "(together they run models without a tokenizer, e.g. llama2.c's stories260K).");
            return 0;
        }
#define NEXT (i++, v)
        if (!strcmp(a, "-m") && v) path = NEXT;
        else if (!strcmp(a, "-p") && v) prompt = NEXT;
        else if (!strcmp(a, "-f") && v) file = NEXT;
        else if (!strcmp(a, "-n") && v) g.n_predict = (int)arg_int("-n", NEXT, 1, 1 << 24);
        else if (!strcmp(a, "-t") && v) threads = (int)arg_int("-t", NEXT, 1, 1024);
        else if (!strcmp(a, "-c") && v) g.n_ctx = (int)arg_int("-c", NEXT, 8, 1 << 22);
        else if (!strcmp(a, "--kv") && v) kv = kv_arg(NEXT) == SPQ_F16 ? SPIKEQ_KV_F16 : SPIKEQ_KV_F32;
        else if (!strcmp(a, "--temp") && v) sp.temp = (float)arg_float("--temp", NEXT);
        else if (!strcmp(a, "--top-k") && v) sp.top_k = (int)arg_int("--top-k", NEXT, 0, 1 << 22);
        else if (!strcmp(a, "--top-p") && v) sp.top_p = (float)arg_float("--top-p", NEXT);
        else if (!strcmp(a, "--min-p") && v) sp.min_p = (float)arg_float("--min-p", NEXT);
        else if (!strcmp(a, "--repeat-penalty") && v) sp.repeat_penalty = (float)arg_float("--repeat-penalty", NEXT);
        else if (!strcmp(a, "--repeat-last-n") && v) sp.repeat_last_n = (int)arg_int("--repeat-last-n", NEXT, 0, 1 << 20);
        else if (!strcmp(a, "--seed") && v) sp.seed = (uint64_t)arg_int("--seed", NEXT, 0, 0x7fffffffffffffffL);
        else if (!strcmp(a, "-i")) interactive = 1;
        else if (!strcmp(a, "--chat")) chat = 1;
        else if (!strcmp(a, "--system") && v) system = NEXT;
        else if (!strcmp(a, "--chat-template") && v) tmpl = NEXT;
        else if (!strcmp(a, "--special")) g.special = 1;
        else if (!strcmp(a, "--ids")) g.ids_out = 1;
        else if (!strcmp(a, "--prompt-ids") && v) prompt_ids = NEXT;
        else if (!strcmp(a, "-n") || !strcmp(a, "-p") || !strcmp(a, "-m") || !strcmp(a, "-t") || !strcmp(a, "-c"))
            die("generate: %s: missing value", a);
        else die("generate: unknown option %s (see spikeq generate -h)", a);
#undef NEXT
    }
    if (!(sp.temp >= 0) || !(sp.top_p > 0 && sp.top_p <= 1) || !(sp.min_p >= 0 && sp.min_p < 1) || !(sp.repeat_penalty > 0))
        die("generate: sampling parameters out of range (temp >= 0, 0 < top-p <= 1, 0 <= min-p < 1, repeat-penalty > 0)");
    threads = set_threads(threads);
    char *fbuf = NULL;
    if (file) prompt = fbuf = read_text(file, NULL);
    if (!interactive && !prompt_ids && (!prompt || !*prompt)) die("generate: empty prompt (give -p TEXT, -f FILE or -i)");
    double t0 = spq_now();
    char err[512];
    if (!path) die("no model given (-m MODEL)");
    if (!(g.model = spikeq_model_load(path, err, sizeof err))) die("%s", err);
    int has_tok = spikeq_tokenize(g.model, "", 0, NULL, 0, 0, 0) != INT32_MIN;
    if (!has_tok && !(prompt_ids && g.ids_out && !interactive))
        die("%s: model has no tokenizer; convert it with --tokenizer (or use --prompt-ids with --ids)", path);
    int train = spikeq_n_ctx_train(g.model);
    g.n_ctx = g.n_ctx <= 0 || g.n_ctx > train ? train : g.n_ctx;
    g.n_batch = g.n_ctx < 256 ? g.n_ctx : 256;
    spikeq_context_params cp = spikeq_context_default_params();
    cp.n_threads = threads;
    cp.n_ctx = g.n_ctx;
    cp.n_batch = g.n_batch;
    cp.kv_type = kv;
    if (!(g.ctx = spikeq_context_new(g.model, &cp, err, sizeof err))) die("%s", err);
    g.batch = spikeq_batch_init(g.n_batch);
    if (!(g.smp = spikeq_sampler_new(&sp)) || !g.batch.token) die("out of memory");
    double t_load = spq_now() - t0;
    chat_log cl = {NULL, 0, 0, tmpl};
    g.eot = -2; /* not a chat: no end-of-turn token, no reply kept */
    if ((system || tmpl) && !chat) die("generate: --system and --chat-template go with --chat");
    if (chat) {
        if (prompt_ids || g.ids_out) die("generate: --chat speaks text (no --prompt-ids or --ids)");
        if (tmpl && spikeq_chat_eot(g.model, tmpl) && spikeq_chat_apply(g.model, tmpl, NULL, 0, 1, NULL, 0) == INT32_MIN)
            die("--chat-template: llama2, llama3, mistral, chatml or zephyr, not '%s'", tmpl);
        int t[4];
        g.eot = spikeq_tokenize(g.model, spikeq_chat_eot(g.model, tmpl), -1, t, 4, 0, 1) == 1 ? t[0] : -1;
        if (system) chat_add(&cl, "system", system);
    }
    if (chat && prompt && *prompt) {
        if (!utf8_valid(prompt, strlen(prompt))) die("%s: prompt is not valid UTF-8", file ? file : "-p");
        chat_turn(&g, &cl, prompt);
    } else if (prompt_ids) {
        long n;
        int *ids = parse_ids(prompt_ids, "--prompt-ids", spikeq_n_vocab(g.model), &n);
        if (!n) die("--prompt-ids: no ids given");
        run_turn(&g, ids, n);
        free(ids);
    } else if (prompt && *prompt) {
        size_t len = strlen(prompt);
        if (!utf8_valid(prompt, len)) die("%s: prompt is not valid UTF-8", file ? file : "-p");
        long n;
        int *ids = encode_api(g.model, prompt, len, 1, g.special, &n);
        fputs(prompt, stdout);
        run_turn(&g, ids, n);
        free(ids);
    }
    if (interactive) {
        char line[8192];
        while (fputs("> ", stderr), fgets(line, sizeof line, stdin)) {
            size_t len = strcspn(line, "\n");
            line[len] = 0;
            if (!len) continue;
            if (!utf8_valid(line, len)) { fprintf(stderr, "spikeq: input is not valid UTF-8\n"); continue; }
            if (chat) { chat_turn(&g, &cl, line); continue; }
            long n;
            int *ids = encode_api(g.model, line, len, g.pos == 0, g.special, &n);
            run_turn(&g, ids, n);
            free(ids);
        }
        fputc('\n', stderr);
    }
    if (spikeq_model_verify(g.model, err, sizeof err)) die("%s", err);
    fprintf(stderr, "\nspikeq: load time %.2f ms\n", t_load * 1e3);
    fprintf(stderr, "spikeq: prompt eval: %ld tokens, %.2f ms, %.2f tokens/s\n", g.n_prompt, g.t_prompt * 1e3,
            g.t_prompt > 0 ? (double)g.n_prompt / g.t_prompt : 0);
    fprintf(stderr, "spikeq: generation:  %ld tokens, %.2f ms, %.2f tokens/s\n", g.n_gen, g.t_gen * 1e3,
            g.t_gen > 0 ? (double)g.n_gen / g.t_gen : 0);
    spikeq_batch_free(&g.batch);
    spikeq_sampler_free(g.smp);
    spikeq_context_free(g.ctx);
    spikeq_model_free(g.model);
    for (int i = 0; i < cl.n; i++) free((char *)cl.m[i].content);
    free(cl.m);
    free(g.reply);
    free(fbuf);
    return 0;
}
