/* cmd_serve.c — spikeq serve: an OpenAI-compatible HTTP server (libmicrohttpd, one thread
 * per connection) with continuous batching.
 *
 * HTTP threads read and check a request, tokenize its prompt and queue it. The scheduler (the
 * main thread, the only one that touches the context) admits queued requests into free slots
 * (one KV-cache sequence each) between steps, and runs every step as one spikeq_decode: the
 * next token of each stream under way plus a chunk of a new prompt, so the weights are read
 * once per step for all users and a long prompt does not stall the streams. Generated text
 * goes into the request under the server's lock; streaming readers wait on its condition
 * variable and send it as server-sent events. A slot whose client has gone is freed at the
 * next step; a new prompt reuses the longest prefix a free slot still holds. */
#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "include/spikeq.h"
#include "tok/chat.h"
#include "tools/cli.h"
#include "tools/serve_req.h"

enum { FIN_STOP, FIN_LENGTH, FIN_ERROR };

typedef struct req {
    struct req *next;  /* the queue */
    serve_req q;
    int *ids, n_ids;   /* the prompt's tokens */
    int max_tokens, eot_id;
    size_t stop_max;   /* longest stop string: the tail held back while streaming */
    spikeq_sampler *smp;
    /* under the server's lock: */
    int slot, n_past, n_gen, last, pending; /* pending: `last` is sampled, not yet in the cache */
    char *text;
    size_t len, cap, sent;
    int done, finish, cancelled, refs, stage; /* stage: streaming progress (see sse_next) */
    char err[200];
    char id[48];
    long created;
    char *out;         /* streaming: bytes of the current event not yet handed to MHD */
    size_t out_len, out_at;
} req;

typedef struct {
    const char *path, *host, *api_key, *chat;
    int port, slots, ctx, threads, batch, queue_max;
    size_t body_max;
} serve_opts;

typedef struct {
    serve_opts o;
    spikeq_model *model;
    spikeq_context *ctx;
    spikeq_batch batch;
    const char *chat;  /* the chat format in use */
    char name[256];    /* the model's id in responses */
    int n_vocab, n_ctx, eos;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* broadcast: new requests, new text, cancellations */
    req *qhead, *qtail, **slot;
    int qlen, open, draining;
    int **stok, *ntok; /* the tokens each slot's cache holds */
    /* metrics */
    struct counter { const char *ep; int code; unsigned long long n; } cnt[64];
    int ncnt;
    unsigned long long prompt_tok, cached_tok, gen_tok, steps;
    double step_s, tps; /* seconds in decode steps; generated tokens per second, smoothed */
} server;

static volatile sig_atomic_t g_stop;
static void on_signal(int s) { (void)s; g_stop = 1; }

static double wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Wait on the server's condition variable (its lock held) for a signal or 100 ms. */
static void wait_100ms(server *S)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 100000000;
    if (ts.tv_nsec >= 1000000000) { ts.tv_sec++; ts.tv_nsec -= 1000000000; }
    pthread_cond_timedwait(&S->cv, &S->mu, &ts);
}

/* ---- requests' lifetime: one reference for the HTTP side, one for the scheduler ---- */

static void req_unref(req *r) /* under the lock */
{
    if (--r->refs > 0) return;
    serve_req_free(&r->q);
    free(r->ids);
    free(r->text);
    free(r->out);
    spikeq_sampler_free(r->smp);
    free(r);
}

static void count(server *S, const char *ep, int code) /* under the lock */
{
    for (int i = 0; i < S->ncnt; i++)
        if (S->cnt[i].code == code && !strcmp(S->cnt[i].ep, ep)) { S->cnt[i].n++; return; }
    if (S->ncnt < 64) S->cnt[S->ncnt++] = (struct counter){ep, code, 1};
}

/* ---- text ---- */

/* Bytes of s[0..n) that end on a whole UTF-8 character (an incomplete tail held back). */
static size_t utf8_whole(const char *s, size_t n)
{
    size_t i = n;
    for (int back = 0; back < 4 && i > 0; back++) {
        unsigned char c = (unsigned char)s[i - 1];
        if ((c & 0xc0) != 0x80) { /* a lead byte (or ASCII): complete when its length fits */
            int len = spq_utf8_len(c);
            return len && (size_t)len > n - (i - 1) ? i - 1 : n;
        }
        i--;
    }
    return n;
}

/* s[0..n) as a JSON-safe string: invalid UTF-8 bytes become U+FFFD. */
static char *utf8_clean(const char *s, size_t n)
{
    char *o = malloc(3 * n + 1);
    size_t k = 0;
    if (!o) return NULL;
    for (size_t i = 0; i < n;) {
        int len = spq_utf8_len((unsigned char)s[i]), ok = len > 0 && i + (size_t)len <= n;
        for (int j = 1; ok && j < len; j++) ok = ((unsigned char)s[i + j] & 0xc0) == 0x80;
        if (ok) { memcpy(o + k, s + i, (size_t)len); k += (size_t)len; i += (size_t)len; }
        else { memcpy(o + k, "\xef\xbf\xbd", 3); k += 3; i++; }
    }
    o[k] = 0;
    return o;
}

static int append(req *r, const char *s, size_t n)
{
    if (r->len + n + 1 > r->cap) {
        size_t cap = (r->len + n + 1) * 2;
        char *t = realloc(r->text, cap);
        if (!t) return -1;
        r->text = t;
        r->cap = cap;
    }
    memcpy(r->text + r->len, s, n);
    r->len += n;
    r->text[r->len] = 0;
    return 0;
}

/* The first stop string in the text (searching only where the newest piece can complete
 * one): the text is cut there. Returns 1 when found. */
static int cut_at_stop(req *r, size_t piece)
{
    size_t from = r->len > piece + r->stop_max ? r->len - piece - r->stop_max : 0;
    size_t best = SIZE_MAX;
    for (int i = 0; i < r->q.n_stop; i++) {
        const char *p = memmem(r->text + from, r->len - from, r->q.stop[i], strlen(r->q.stop[i]));
        if (p && (size_t)(p - r->text) < best) best = (size_t)(p - r->text);
    }
    if (best == SIZE_MAX) return 0;
    r->len = best;
    r->text[best] = 0;
    return 1;
}

/* ---- the scheduler ---- */

static void finish(server *S, req *r, int why) /* under the lock: leaves its slot */
{
    r->done = 1;
    r->finish = why;
    if (r->slot >= 0) S->slot[r->slot] = NULL;
    r->slot = -1;
    req_unref(r);
    pthread_cond_broadcast(&S->cv);
}

/* A queued request into a free slot: the one whose cache shares the longest prefix with its
 * prompt. A prefix of at least REUSE_MIN tokens is kept (at least the last prompt token is run
 * again for its logits); a shorter one is not worth it: a prompt prefilled whole computes its
 * dynamic activation scales over all its tokens, BOS's large activations included, exactly as
 * `spikeq generate` does, while a remainder computes them over itself. */
#define REUSE_MIN 16
static void admit(server *S, req *r)
{
    int best = -1, keep = -1;
    for (int s = 0; s < S->o.slots; s++) {
        if (S->slot[s]) continue;
        int k = 0;
        while (r->q.cache_prompt && k < S->ntok[s] && k < r->n_ids - 1 && S->stok[s][k] == r->ids[k]) k++;
        if (k > keep) { keep = k; best = s; }
    }
    if (keep < REUSE_MIN) keep = 0;
    spikeq_kv_truncate(S->ctx, best, keep);
    S->ntok[best] = keep;
    S->slot[best] = r;
    r->slot = best;
    r->n_past = keep;
    S->prompt_tok += (unsigned long long)r->n_ids;
    S->cached_tok += (unsigned long long)keep;
}

/* Fill the batch: each decoding slot's sampled token, then prompt chunks (at most 128
 * tokens per step while streams are decoding, so they keep flowing). rows[i]: the slot of
 * batch row i. */
static void build_batch(server *S, int *rows)
{
    spikeq_batch *b = &S->batch;
    b->n_tokens = 0;
    int decoding = 0;
    for (int s = 0; s < S->o.slots; s++) {
        req *r = S->slot[s];
        if (!r || !r->pending) continue;
        rows[b->n_tokens] = s;
        spikeq_batch_add(b, r->last, S->ntok[s], s, 1);
        decoding++;
    }
    int budget = S->o.batch - b->n_tokens;
    if (decoding && budget > 128) budget = 128;
    for (int s = 0; s < S->o.slots && budget > 0; s++) {
        req *r = S->slot[s];
        if (!r || r->pending || r->n_past >= r->n_ids) continue;
        int n = r->n_ids - r->n_past < budget ? r->n_ids - r->n_past : budget;
        for (int i = 0; i < n; i++) {
            rows[b->n_tokens] = s;
            spikeq_batch_add(b, r->ids[r->n_past + i], S->ntok[s] + i, s, r->n_past + i == r->n_ids - 1);
        }
        budget -= n;
    }
}

/* After a step: record what entered each cache, sample where logits came, and finish what
 * is complete. */
static void after_step(server *S, const int *rows)
{
    spikeq_batch *b = &S->batch;
    char piece[256];
    for (int i = 0; i < b->n_tokens; i++) {
        int s = rows[i];
        req *r = S->slot[s];
        S->stok[s][S->ntok[s]++] = b->token[i];
        if (!r) continue; /* cancelled meanwhile */
        if (r->pending) r->pending = 0;
        else r->n_past++;
        if (!b->logits[i]) continue;
        int prev = b->token[i];
        int tok = spikeq_sampler_sample(r->smp, spikeq_get_logits(S->ctx, i), S->n_vocab);
        if (tok == S->eos || tok == r->eot_id) { finish(S, r, FIN_STOP); continue; }
        int n = spikeq_token_to_piece(S->model, prev, tok, piece, sizeof piece);
        if (n < 0 || append(r, piece, (size_t)n)) { snprintf(r->err, sizeof r->err, "out of memory"); finish(S, r, FIN_ERROR); continue; }
        r->n_gen++;
        S->gen_tok++;
        pthread_cond_broadcast(&S->cv);
        if (cut_at_stop(r, (size_t)n)) finish(S, r, FIN_STOP);
        else if (r->n_gen >= r->max_tokens || S->ntok[s] + 1 >= S->n_ctx) finish(S, r, FIN_LENGTH);
        else { r->last = tok; r->pending = 1; }
    }
}

static void schedule(server *S)
{
    int *rows = malloc(sizeof(int) * (size_t)S->o.batch);
    if (!rows) die("out of memory");
    pthread_mutex_lock(&S->mu);
    for (;;) {
        if (g_stop && !S->draining) {
            S->draining = 1;
            fprintf(stderr, "spikeq: draining %d request(s), then exiting\n", S->open);
        }
        for (int s = 0; s < S->o.slots; s++) /* clients gone: their slots free now */
            if (S->slot[s] && S->slot[s]->cancelled) finish(S, S->slot[s], FIN_STOP);
        for (int s = 0; s < S->o.slots && S->qhead; s++) {
            if (S->slot[s]) continue;
            req *r = S->qhead;
            S->qhead = r->next;
            if (!S->qhead) S->qtail = NULL;
            S->qlen--;
            if (r->cancelled) { finish(S, r, FIN_STOP); s--; continue; }
            admit(S, r);
        }
        build_batch(S, rows);
        if (!S->batch.n_tokens) {
            if (S->draining && !S->open) break;
            wait_100ms(S);
            continue;
        }
        pthread_mutex_unlock(&S->mu); /* the step runs unlocked: only this thread uses the context */
        double t0 = spq_now();
        int rc = spikeq_decode(S->ctx, &S->batch);
        double dt = spq_now() - t0;
        pthread_mutex_lock(&S->mu);
        if (rc) { /* a failed step: its requests end with the context's message */
            for (int s = 0; s < S->o.slots; s++)
                if (S->slot[s]) {
                    snprintf(S->slot[s]->err, sizeof S->slot[s]->err, "%s", spikeq_context_error(S->ctx));
                    spikeq_kv_clear(S->ctx, s);
                    S->ntok[s] = 0;
                    finish(S, S->slot[s], FIN_ERROR);
                }
            continue;
        }
        unsigned long long g0 = S->gen_tok;
        after_step(S, rows);
        S->steps++;
        S->step_s += dt;
        if (dt > 0) S->tps = 0.9 * S->tps + 0.1 * (double)(S->gen_tok - g0) / dt;
    }
    pthread_mutex_unlock(&S->mu);
    free(rows);
}

/* ---- responses ---- */

typedef struct {
    char *body;
    size_t len;
    int too_big;
} upload;

static enum MHD_Result send_text(struct MHD_Connection *c, int code, const char *type, char *body)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", type);
    if (code == 503) MHD_add_response_header(resp, "Retry-After", "1");
    if (code == 401) MHD_add_response_header(resp, "WWW-Authenticate", "Bearer");
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)code, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result send_json(struct MHD_Connection *c, int code, cJSON *j)
{
    char *s = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    if (!s) return MHD_NO;
    char *m = strdup(s); /* MHD frees with free() */
    cJSON_free(s);
    return m ? send_text(c, code, "application/json", m) : MHD_NO;
}

/* OpenAI's error object, counted in the metrics. */
static enum MHD_Result send_errorv(server *S, struct MHD_Connection *c, const char *ep, int code, const char *param,
                                   const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    pthread_mutex_lock(&S->mu);
    count(S, ep, code);
    pthread_mutex_unlock(&S->mu);
    cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");
    cJSON_AddStringToObject(e, "message", msg);
    cJSON_AddStringToObject(e, "type", code == 401 ? "authentication_error" : code == 503 ? "overloaded_error"
                                       : code >= 500 ? "server_error" : "invalid_request_error");
    if (param && *param) cJSON_AddStringToObject(e, "param", param);
    else cJSON_AddNullToObject(e, "param");
    cJSON_AddNullToObject(e, "code");
    return send_json(c, code, j);
}

static enum MHD_Result send_error(server *S, struct MHD_Connection *c, const char *ep, int code, const char *param,
                                  const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result rc = send_errorv(S, c, ep, code, param, fmt, ap);
    va_end(ap);
    return rc;
}

static const char *finish_name(int f) { return f == FIN_LENGTH ? "length" : "stop"; }

static void add_usage(cJSON *j, const req *r)
{
    cJSON *u = cJSON_AddObjectToObject(j, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", r->n_ids);
    cJSON_AddNumberToObject(u, "completion_tokens", r->n_gen);
    cJSON_AddNumberToObject(u, "total_tokens", r->n_ids + r->n_gen);
}

/* A response object (whole, or one streamed chunk with text[0..n) as its new text; fin < 0:
 * no finish reason yet). */
static cJSON *response(const server *S, const req *r, const char *text, size_t n, int fin, int chunk, int role)
{
    cJSON *j = cJSON_CreateObject(), *ch = cJSON_AddArrayToObject(j, "choices"), *c0 = cJSON_CreateObject();
    cJSON_AddStringToObject(j, "id", r->id);
    cJSON_AddStringToObject(j, "object", r->q.chat ? (chunk ? "chat.completion.chunk" : "chat.completion") : "text_completion");
    cJSON_AddNumberToObject(j, "created", (double)r->created);
    cJSON_AddStringToObject(j, "model", S->name);
    cJSON_AddItemToArray(ch, c0);
    cJSON_AddNumberToObject(c0, "index", 0);
    char *t = utf8_clean(text, n);
    if (r->q.chat) {
        cJSON *m = cJSON_AddObjectToObject(c0, chunk ? "delta" : "message");
        if (role || !chunk) cJSON_AddStringToObject(m, "role", "assistant");
        if (t && (n || !chunk || role)) cJSON_AddStringToObject(m, "content", t);
    } else {
        cJSON_AddStringToObject(c0, "text", t ? t : "");
    }
    free(t);
    cJSON_AddNullToObject(c0, "logprobs");
    if (fin >= 0) cJSON_AddStringToObject(c0, "finish_reason", finish_name(fin));
    else cJSON_AddNullToObject(c0, "finish_reason");
    if (!chunk) add_usage(j, r);
    return j;
}

/* Set r->out to "data: JSON\n\n" of j. */
static void event(req *r, cJSON *j)
{
    char *s = j ? cJSON_PrintUnformatted(j) : NULL;
    cJSON_Delete(j);
    free(r->out);
    size_t n = s ? strlen(s) : 0;
    r->out = malloc(n + 9);
    if (r->out) {
        memcpy(r->out, "data: ", 6);
        if (s) memcpy(r->out + 6, s, n);
        memcpy(r->out + 6 + n, "\n\n", 3);
    }
    r->out_len = r->out ? n + 8 : 0;
    r->out_at = 0;
    cJSON_free(s);
}

/* The next event of a stream, when there is one (under the lock). stage 0: the chat role;
 * 1: text as it comes, holding back a tail that could start a stop string or an incomplete
 * character; 2: the finish chunk; 3: usage (include_usage); 4: [DONE]; 5: the end. */
static int sse_next(server *S, req *r)
{
    if (r->stage == 0) {
        r->stage = 1;
        if (r->q.chat) { event(r, response(S, r, "", 0, -1, 1, 1)); return 1; }
    }
    if (r->stage == 1) {
        size_t ready = r->len;
        if (!r->done) {
            ready = r->stop_max > 1 && ready > r->stop_max - 1 ? ready - (r->stop_max - 1) : r->stop_max > 1 ? 0 : ready;
            ready = utf8_whole(r->text, ready);
        }
        if (ready > r->sent) {
            event(r, response(S, r, r->text + r->sent, ready - r->sent, -1, 1, 0));
            r->sent = ready;
            return 1;
        }
        if (!r->done) return 0;
        r->stage = 2;
    }
    if (r->stage == 2) {
        r->stage = 3;
        if (r->finish == FIN_ERROR) {
            cJSON *j = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(j, "error");
            cJSON_AddStringToObject(e, "message", r->err);
            cJSON_AddStringToObject(e, "type", "server_error");
            event(r, j);
        } else {
            event(r, response(S, r, "", 0, r->finish, 1, 0));
        }
        return 1;
    }
    if (r->stage == 3) {
        r->stage = 4;
        if (r->q.include_usage) {
            cJSON *j = response(S, r, "", 0, -1, 1, 0);
            cJSON_DeleteItemFromObject(j, "choices");
            cJSON_AddArrayToObject(j, "choices");
            add_usage(j, r);
            event(r, j);
            return 1;
        }
    }
    if (r->stage == 4) {
        r->stage = 5;
        free(r->out);
        r->out = strdup("data: [DONE]\n\n");
        r->out_len = r->out ? strlen(r->out) : 0;
        r->out_at = 0;
        return 1;
    }
    return 0;
}

typedef struct {
    server *S;
    req *r;
} stream_ctx;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream_ctx *sc = cls;
    server *S = sc->S;
    req *r = sc->r;
    pthread_mutex_lock(&S->mu);
    for (;;) {
        if (r->out_at < r->out_len) {
            size_t n = r->out_len - r->out_at < max ? r->out_len - r->out_at : max;
            memcpy(buf, r->out + r->out_at, n);
            r->out_at += n;
            pthread_mutex_unlock(&S->mu);
            return (ssize_t)n;
        }
        if (r->stage == 5) break;
        if (!sse_next(S, r)) pthread_cond_wait(&S->cv, &S->mu);
    }
    pthread_mutex_unlock(&S->mu);
    return MHD_CONTENT_READER_END_OF_STREAM;
}

/* The stream's response is gone: sent to the end, or its client went away (then the
 * scheduler frees the slot at its next step). */
static void stream_free(void *cls)
{
    stream_ctx *sc = cls;
    server *S = sc->S;
    pthread_mutex_lock(&S->mu);
    if (!sc->r->done) sc->r->cancelled = 1;
    S->open--;
    req_unref(sc->r);
    pthread_cond_broadcast(&S->cv);
    pthread_mutex_unlock(&S->mu);
    free(sc);
}

/* ---- endpoints ---- */

/* The prompt's tokens: the chat formatted (special pieces parsed) or the text, BOS first. */
static int prompt_ids(server *S, req *r, char *err, size_t errlen)
{
    char *text = r->q.prompt;
    int special = 0;
    char *chat = NULL;
    if (r->q.chat) {
        int32_t n = spikeq_chat_apply(S->model, S->chat, r->q.msgs, r->q.n_msgs, 1, NULL, 0);
        if (n == INT32_MIN || !(chat = malloc((size_t)-n))) { snprintf(err, errlen, "cannot format the messages"); return -1; }
        spikeq_chat_apply(S->model, S->chat, r->q.msgs, r->q.n_msgs, 1, chat, -n);
        text = chat;
        special = 1;
    }
    if (r->q.prompt_ids) {
        r->n_ids = r->q.n_prompt_ids + 1;
        if (!(r->ids = malloc(sizeof(int) * (size_t)r->n_ids))) return -1;
        r->ids[0] = spikeq_token_bos(S->model);
        memcpy(r->ids + 1, r->q.prompt_ids, sizeof(int) * (size_t)r->q.n_prompt_ids);
        return 0;
    }
    size_t len = strlen(text);
    int cap = (int)(len < (size_t)S->n_ctx * 8 ? len : (size_t)S->n_ctx * 8) + 8;
    r->ids = malloc(sizeof(int) * (size_t)cap);
    int32_t n = r->ids ? spikeq_tokenize(S->model, text, (int32_t)len, r->ids, cap, 1, special) : INT32_MIN;
    free(chat);
    if (n == INT32_MIN) { snprintf(err, errlen, "cannot tokenize the prompt"); return -1; }
    r->n_ids = n < 0 ? -n : n; /* too many for cap: longer than the context anyway */
    return 0;
}

/* Whether the peer of socket fd has closed its side (or the socket failed). */
static int client_gone(int fd)
{
    struct pollfd p = {fd, POLLIN | POLLRDHUP, 0};
    if (poll(&p, 1, 0) <= 0) return 0;
    if (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) return 1;
    char b;
    return recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT) == 0;
}

/* A request refused before it was queued (no other thread knows it): freed, answered. */
static enum MHD_Result refuse(server *S, struct MHD_Connection *c, req *r, const char *ep, int code, const char *param,
                              const char *fmt, ...)
{
    req_unref(r);
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result rc = send_errorv(S, c, ep, code, param, fmt, ap);
    va_end(ap);
    return rc;
}

static enum MHD_Result completion(server *S, struct MHD_Connection *c, const char *ep, int chat, const upload *u)
{
    char err[512], param[64];
    req *r = calloc(1, sizeof *r);
    if (!r) return send_error(S, c, ep, 500, "", "out of memory");
    r->refs = 1;
    r->slot = -1;
    r->eot_id = -1;
    if (serve_req_parse(u->body ? u->body : "", u->len, chat, S->n_vocab, &r->q, err, sizeof err, param, sizeof param))
        return refuse(S, c, r, ep, 400, param, "%s", err);
    if (prompt_ids(S, r, err, sizeof err)) return refuse(S, c, r, ep, 400, chat ? "messages" : "prompt", "%s", err);
    if (r->n_ids >= S->n_ctx)
        return refuse(S, c, r, ep, 400, chat ? "messages" : "prompt",
                      "the prompt has %d tokens; the context holds %d (-c), room for at least one more is needed", r->n_ids,
                      S->n_ctx);
    if (r->q.max_tokens > S->n_ctx)
        return refuse(S, c, r, ep, 400, "max_tokens", "'max_tokens' is above the context length (%d)", S->n_ctx);
    /* OpenAI's defaults: 16 tokens for completions, the rest of the context for chat */
    r->max_tokens = r->q.max_tokens > 0 ? r->q.max_tokens : chat ? S->n_ctx : 16;
    if (chat) { /* the turn ends at the format's end-of-turn piece, or its text */
        const char *eot = spikeq_chat_eot(S->model, S->chat);
        int t[4];
        if (spikeq_tokenize(S->model, eot, -1, t, 4, 0, 1) == 1) r->eot_id = t[0];
        if (!(r->q.stop[r->q.n_stop++] = strdup(eot))) return refuse(S, c, r, ep, 500, "", "out of memory"); /* a slot past the client's */
    }
    for (int i = 0; i < r->q.n_stop; i++)
        if (strlen(r->q.stop[i]) > r->stop_max) r->stop_max = strlen(r->q.stop[i]);
    if (!(r->smp = spikeq_sampler_new(&r->q.sp))) return refuse(S, c, r, ep, 400, "", "sampling parameters out of range");
    r->created = (long)wall();
    pthread_mutex_lock(&S->mu);
    static unsigned long long seq;
    snprintf(r->id, sizeof r->id, "%s-%llx%04llx", chat ? "chatcmpl" : "cmpl", (unsigned long long)r->created, ++seq);
    if (S->draining || S->qlen >= S->o.queue_max) {
        int draining = S->draining;
        pthread_mutex_unlock(&S->mu);
        return refuse(S, c, r, ep, 503, "", draining ? "the server is shutting down" : "the queue is full (%d waiting); retry later",
                      S->o.queue_max);
    }
    r->refs = 2; /* the scheduler's and this thread's */
    if (S->qtail) S->qtail->next = r;
    else S->qhead = r;
    S->qtail = r;
    S->qlen++;
    S->open++;
    count(S, ep, 200);
    pthread_cond_broadcast(&S->cv);
    if (r->q.stream) {
        pthread_mutex_unlock(&S->mu);
        stream_ctx *sc = malloc(sizeof *sc);
        struct MHD_Response *resp = sc ? MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, sc, stream_free) : NULL;
        if (!resp) {
            free(sc);
            pthread_mutex_lock(&S->mu);
            r->cancelled = 1;
            S->open--;
            req_unref(r);
            pthread_mutex_unlock(&S->mu);
            return MHD_NO;
        }
        *sc = (stream_ctx){S, r};
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        enum MHD_Result rc = MHD_queue_response(c, 200, resp);
        MHD_destroy_response(resp);
        return rc;
    }
    /* the whole answer at the end: meanwhile, check every 100 ms that the client is still there
     * (a closed connection reads as end of file), and give its slot back if not */
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    int fd = ci ? ci->connect_fd : -1;
    while (!r->done) {
        wait_100ms(S);
        if (!r->done && fd >= 0 && client_gone(fd)) {
            r->cancelled = 1;
            pthread_cond_broadcast(&S->cv);
            while (!r->done) pthread_cond_wait(&S->cv, &S->mu); /* the scheduler's ack: the slot is free */
        }
    }
    cJSON *j = r->finish == FIN_ERROR ? NULL : response(S, r, r->text ? r->text : "", r->len, r->finish, 0, 0);
    char msg[sizeof r->err];
    snprintf(msg, sizeof msg, "%s", r->err);
    S->open--;
    req_unref(r);
    pthread_cond_broadcast(&S->cv);
    pthread_mutex_unlock(&S->mu);
    return j ? send_json(c, 200, j) : send_error(S, c, ep, 500, "", "%s", msg);
}

static enum MHD_Result metrics(server *S, struct MHD_Connection *c)
{
    size_t cap = 8192, n = 0;
    char *b = malloc(cap);
    if (!b) return MHD_NO;
#define P(...) (n += (size_t)snprintf(b + n, n < cap ? cap - n : 0, __VA_ARGS__))
    pthread_mutex_lock(&S->mu);
    int busy = 0;
    for (int s = 0; s < S->o.slots; s++) busy += S->slot[s] != NULL;
    P("# HELP spikeq_requests_total HTTP requests answered, by endpoint and status code.\n# TYPE spikeq_requests_total counter\n");
    for (int i = 0; i < S->ncnt && n < cap - 256; i++)
        P("spikeq_requests_total{endpoint=\"%s\",code=\"%d\"} %llu\n", S->cnt[i].ep, S->cnt[i].code, S->cnt[i].n);
    P("# HELP spikeq_prompt_tokens_total Prompt tokens of admitted requests.\n# TYPE spikeq_prompt_tokens_total counter\n"
      "spikeq_prompt_tokens_total %llu\n", S->prompt_tok);
    P("# HELP spikeq_prompt_tokens_cached_total Prompt tokens found in a slot's cache (not run again).\n"
      "# TYPE spikeq_prompt_tokens_cached_total counter\nspikeq_prompt_tokens_cached_total %llu\n", S->cached_tok);
    P("# HELP spikeq_generated_tokens_total Tokens generated.\n# TYPE spikeq_generated_tokens_total counter\n"
      "spikeq_generated_tokens_total %llu\n", S->gen_tok);
    P("# HELP spikeq_decode_steps_total Batched forward passes.\n# TYPE spikeq_decode_steps_total counter\n"
      "spikeq_decode_steps_total %llu\n", S->steps);
    P("# HELP spikeq_decode_seconds_total Seconds spent in forward passes.\n# TYPE spikeq_decode_seconds_total counter\n"
      "spikeq_decode_seconds_total %.6f\n", S->step_s);
    P("# HELP spikeq_tokens_per_second Generated tokens per second of forward-pass time, smoothed over recent steps.\n"
      "# TYPE spikeq_tokens_per_second gauge\nspikeq_tokens_per_second %.3f\n", S->tps);
    P("# HELP spikeq_queue_depth Requests waiting for a slot.\n# TYPE spikeq_queue_depth gauge\nspikeq_queue_depth %d\n", S->qlen);
    P("# HELP spikeq_slots_busy Slots running a request.\n# TYPE spikeq_slots_busy gauge\nspikeq_slots_busy %d\n", busy);
    P("# HELP spikeq_slots Slots (sequences batched together).\n# TYPE spikeq_slots gauge\nspikeq_slots %d\n", S->o.slots);
    count(S, "/metrics", 200);
    pthread_mutex_unlock(&S->mu);
#undef P
    if (n >= cap) b[cap - 1] = 0;
    return send_text(c, 200, "text/plain; version=0.0.4", b);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *data, size_t *data_size, void **con_cls)
{
    (void)version;
    server *S = cls;
    upload *u = *con_cls;
    if (!u) { /* the headers: the body follows in calls with data */
        if (!(u = calloc(1, sizeof *u))) return MHD_NO;
        *con_cls = u;
        return MHD_YES;
    }
    if (*data_size) {
        if (u->len + *data_size > S->o.body_max) u->too_big = 1;
        else {
            char *b = realloc(u->body, u->len + *data_size + 1);
            if (!b) return MHD_NO;
            u->body = b;
            memcpy(b + u->len, data, *data_size);
            u->len += *data_size;
            b[u->len] = 0;
        }
        *data_size = 0;
        return MHD_YES;
    }
    int post = !strcmp(method, "POST"), get = !strcmp(method, "GET");
    int comp = !strcmp(url, "/v1/completions") || !strcmp(url, "/completions");
    int chat = !strcmp(url, "/v1/chat/completions") || !strcmp(url, "/chat/completions");
    if (!strcmp(url, "/health")) {
        if (!get) return send_error(S, c, url, 405, "", "use GET for %s", url);
        pthread_mutex_lock(&S->mu);
        int dr = S->draining;
        count(S, "/health", dr ? 503 : 200);
        pthread_mutex_unlock(&S->mu);
        return send_text(c, dr ? 503 : 200, "application/json", strdup(dr ? "{\"status\":\"draining\"}" : "{\"status\":\"ok\"}"));
    }
    if (!strcmp(url, "/metrics")) return get ? metrics(S, c) : send_error(S, c, url, 405, "", "use GET for %s", url);
    if (strncmp(url, "/v1/", 4) && !comp && !chat) return send_error(S, c, "other", 404, "", "no endpoint %s", url);
    const char *ep = comp ? "/v1/completions" : chat ? "/v1/chat/completions" : !strcmp(url, "/v1/models") ? "/v1/models" : "other";
    if (S->o.api_key) {
        const char *a = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
        if (!a || strncmp(a, "Bearer ", 7) || strcmp(a + 7, S->o.api_key))
            return send_error(S, c, ep, 401, "", "a valid API key is required (Authorization: Bearer KEY)");
    }
    if (!strcmp(ep, "/v1/models")) {
        if (!get) return send_error(S, c, ep, 405, "", "use GET for %s", url);
        cJSON *j = cJSON_CreateObject(), *d = cJSON_AddArrayToObject(j, "data"), *m = cJSON_CreateObject();
        cJSON_AddStringToObject(j, "object", "list");
        cJSON_AddItemToArray(d, m);
        cJSON_AddStringToObject(m, "id", S->name);
        cJSON_AddStringToObject(m, "object", "model");
        cJSON_AddNumberToObject(m, "created", 0);
        cJSON_AddStringToObject(m, "owned_by", "spikeq");
        pthread_mutex_lock(&S->mu);
        count(S, ep, 200);
        pthread_mutex_unlock(&S->mu);
        return send_json(c, 200, j);
    }
    if (!comp && !chat) return send_error(S, c, ep, 404, "", "no endpoint %s", url);
    if (!post) return send_error(S, c, ep, 405, "", "use POST for %s", url);
    if (u->too_big) return send_error(S, c, ep, 400, "", "the body is larger than %zu bytes", S->o.body_max);
    return completion(S, c, ep, chat, u);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)cls; (void)c; (void)toe;
    upload *u = *con_cls;
    if (u) free(u->body);
    free(u);
    *con_cls = NULL;
}

/* ---- the command ---- */

int cmd_serve(int argc, char **argv)
{
    serve_opts o = {NULL, "127.0.0.1", NULL, NULL, 8080, 4, 0, 0, 512, 0, 1 << 20};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            puts("usage: spikeq serve -m MODEL [--host 127.0.0.1] [--port 8080] [-np SLOTS] [-c CTX] [-t THREADS]\n"
                 "       [-b BATCH] [--queue N] [--api-key KEY] [--chat-template NAME]\n"
                 "An OpenAI-compatible server: POST /v1/completions, /v1/chat/completions (stream: true for\n"
                 "server-sent events), GET /v1/models, /health, /metrics (Prometheus). -np: requests decoded\n"
                 "together (default 4), each with -c positions of KV cache (default min(trained, 4096));\n"
                 "--queue: requests waiting beyond the slots before 503 (default 4 x SLOTS); -b: tokens per\n"
                 "forward pass (default 512). --chat-template: llama2, llama3, mistral, chatml or zephyr\n"
                 "(default: what the model's files name, else chatml). SIGTERM or Ctrl-C finish the requests\n"
                 "under way, then exit.");
            return 0;
        }
        if (!strcmp(a, "-m") && v) o.path = argv[++i];
        else if (!strcmp(a, "--host") && v) o.host = argv[++i];
        else if (!strcmp(a, "--port") && v) o.port = (int)arg_int(a, argv[++i], 0, 65535);
        else if ((!strcmp(a, "-np") || !strcmp(a, "--parallel")) && v) o.slots = (int)arg_int(a, argv[++i], 1, 256);
        else if (!strcmp(a, "-c") && v) o.ctx = (int)arg_int(a, argv[++i], 8, 1 << 20);
        else if (!strcmp(a, "-t") && v) o.threads = (int)arg_int(a, argv[++i], 1, 1024);
        else if (!strcmp(a, "-b") && v) o.batch = (int)arg_int(a, argv[++i], 1, 1 << 16);
        else if (!strcmp(a, "--queue") && v) o.queue_max = (int)arg_int(a, argv[++i], 0, 1 << 20);
        else if (!strcmp(a, "--api-key") && v) o.api_key = argv[++i];
        else if (!strcmp(a, "--chat-template") && v) o.chat = argv[++i];
        else die("serve: unknown option %s (see spikeq serve -h)", a);
    }
    if (!o.path) die("serve: no model given (-m MODEL)");
    if (o.chat && !spq_chat_known(o.chat)) die("--chat-template: llama2, llama3, mistral, chatml or zephyr, not '%s'", o.chat);
    if (!o.queue_max) o.queue_max = 4 * o.slots;
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)o.port);
    if (inet_pton(AF_INET, !strcmp(o.host, "localhost") ? "127.0.0.1" : o.host, &addr.sin_addr) != 1)
        die("--host: an IPv4 address (127.0.0.1, 0.0.0.0), not '%s'", o.host);

    server S;
    memset(&S, 0, sizeof S);
    S.o = o;
    char err[512];
    if (!(S.model = spikeq_model_load(o.path, err, sizeof err))) die("%s", err);
    if (spikeq_tokenize(S.model, "", 0, NULL, 0, 0, 0) == INT32_MIN) die("%s: the model has no tokenizer: the server speaks text", o.path);
    int train = spikeq_n_ctx_train(S.model);
    spikeq_context_params cp = spikeq_context_default_params();
    cp.n_threads = o.threads;
    cp.n_ctx = o.ctx ? o.ctx : train < 4096 ? train : 4096;
    cp.n_seq_max = o.slots;
    cp.n_batch = o.batch;
    if (!(S.ctx = spikeq_context_new(S.model, &cp, err, sizeof err))) die("%s", err);
    S.n_ctx = spikeq_n_ctx(S.ctx);
    S.n_vocab = spikeq_n_vocab(S.model);
    S.eos = spikeq_token_eos(S.model);
    S.chat = o.chat ? o.chat : spikeq_model_chat_template(S.model) ? spikeq_model_chat_template(S.model) : "chatml";
    const char *base = strrchr(o.path, '/');
    snprintf(S.name, sizeof S.name, "%s", base && base[1] ? base + 1 : o.path);
    S.batch = spikeq_batch_init(o.batch);
    S.slot = calloc((size_t)o.slots, sizeof *S.slot);
    S.stok = calloc((size_t)o.slots, sizeof *S.stok);
    S.ntok = calloc((size_t)o.slots, sizeof *S.ntok);
    if (!S.batch.token || !S.slot || !S.stok || !S.ntok) die("out of memory");
    for (int s = 0; s < o.slots; s++)
        if (!(S.stok[s] = malloc(sizeof(int) * (size_t)S.n_ctx))) die("out of memory");
    pthread_mutex_init(&S.mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_cond_init(&S.cv, &ca);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    struct MHD_Daemon *d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, (uint16_t)o.port, NULL,
                                            NULL, on_request, &S, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_LIMIT,
                                            (unsigned)(16 * o.slots + 64), MHD_OPTION_CONNECTION_TIMEOUT, 600u, MHD_OPTION_END);
    if (!d) die("serve: cannot listen on %s:%d (%s)", o.host, o.port, strerror(errno));
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    fprintf(stderr, "spikeq: serving %s on http://%s:%u: %d slot(s) of %d positions, %d thread(s), %s, chat format %s\n",
            S.name, o.host, di ? di->port : (unsigned)o.port, o.slots, S.n_ctx, spikeq_n_threads(S.ctx), spikeq_isa(S.ctx), S.chat);
    schedule(&S);
    MHD_stop_daemon(d);
    int rc = spikeq_model_verify(S.model, err, sizeof err);
    spikeq_batch_free(&S.batch);
    for (int s = 0; s < o.slots; s++) free(S.stok[s]);
    free(S.stok); free(S.ntok); free(S.slot);
    spikeq_context_free(S.ctx);
    spikeq_model_free(S.model);
    if (rc) die("%s", err);
    fprintf(stderr, "spikeq: stopped\n");
    return 0;
}
