/* serve_req.c — reading an OpenAI request: every field the API defines is either used,
 * accepted at the value that means "off", or refused by name; unknown fields are refused. */
#include "tools/serve_req.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *err, *param;
    size_t errlen, plen;
} why;

static int bad(why *w, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, w->errlen, fmt, ap);
    va_end(ap);
    snprintf(w->param, w->plen, "%s", field);
    return -1;
}

static int number(const cJSON *v, double lo, double hi, double *out)
{
    if (!cJSON_IsNumber(v) || !(v->valuedouble >= lo && v->valuedouble <= hi)) return -1;
    *out = v->valuedouble;
    return 0;
}

static int integer(const cJSON *v, double lo, double hi, double *out)
{
    return number(v, lo, hi, out) || floor(*out) != *out ? -1 : 0;
}

/* A message's content: a string, or an array of {"type": "text", "text": ...} parts joined. */
static char *content_text(const cJSON *c)
{
    if (cJSON_IsString(c)) return strdup(c->valuestring);
    if (!cJSON_IsArray(c)) return NULL;
    size_t n = 1;
    const cJSON *p;
    cJSON_ArrayForEach(p, c) {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "text"));
        const char *ty = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "type"));
        if (!t || !ty || strcmp(ty, "text")) return NULL;
        n += strlen(t);
    }
    char *s = malloc(n);
    if (!s) return NULL;
    s[0] = 0;
    cJSON_ArrayForEach(p, c) strcat(s, cJSON_GetObjectItemCaseSensitive(p, "text")->valuestring);
    return s;
}

static int messages(const cJSON *v, serve_req *r, why *w)
{
    int n = cJSON_GetArraySize(v);
    if (!cJSON_IsArray(v) || n < 1) return bad(w, "messages", "'messages' must be a non-empty array");
    if (n > 4096) return bad(w, "messages", "'messages' holds %d messages (at most 4096)", n);
    if (!(r->msgs = calloc((size_t)n, sizeof *r->msgs))) return bad(w, "messages", "out of memory");
    const cJSON *m;
    cJSON_ArrayForEach(m, v) {
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role"), *k;
        const char *rs = cJSON_GetStringValue(role);
        if (!cJSON_IsObject(m) || !rs) return bad(w, "messages", "messages[%d] needs a 'role' string", r->n_msgs);
        cJSON_ArrayForEach(k, m)
            if (strcmp(k->string, "role") && strcmp(k->string, "content") && strcmp(k->string, "name"))
                return bad(w, "messages", "messages[%d]: unknown field '%s'", r->n_msgs, k->string);
        /* OpenAI's newer name for the system role */
        const char *canon = !strcmp(rs, "developer") ? "system" : rs;
        if (strcmp(canon, "system") && strcmp(canon, "user") && strcmp(canon, "assistant"))
            return bad(w, "messages", "messages[%d]: role '%s' (system, user or assistant)", r->n_msgs, rs);
        char *text = content_text(cJSON_GetObjectItemCaseSensitive(m, "content"));
        if (!text) return bad(w, "messages", "messages[%d]: 'content' must be a string or text parts", r->n_msgs);
        r->msgs[r->n_msgs].role = !strcmp(canon, "system") ? "system" : !strcmp(canon, "user") ? "user" : "assistant";
        r->msgs[r->n_msgs++].content = text;
    }
    return 0;
}

static int prompt(const cJSON *v, serve_req *r, int n_vocab, why *w)
{
    if (cJSON_IsString(v)) return (r->prompt = strdup(v->valuestring)) ? 0 : bad(w, "prompt", "out of memory");
    int n = cJSON_GetArraySize(v);
    if (!cJSON_IsArray(v) || n < 1) return bad(w, "prompt", "'prompt' must be a string, an array of one string or of token ids");
    const cJSON *first = cJSON_GetArrayItem(v, 0);
    if (cJSON_IsString(first)) {
        if (n != 1) return bad(w, "prompt", "'prompt' holds %d strings: one prompt per request", n);
        return (r->prompt = strdup(first->valuestring)) ? 0 : bad(w, "prompt", "out of memory");
    }
    if (!(r->prompt_ids = malloc(sizeof(int) * (size_t)n))) return bad(w, "prompt", "out of memory");
    const cJSON *t;
    cJSON_ArrayForEach(t, v) {
        double x;
        if (integer(t, 0, n_vocab - 1, &x)) return bad(w, "prompt", "'prompt' token %d is not an id below %d", r->n_prompt_ids, n_vocab);
        r->prompt_ids[r->n_prompt_ids++] = (int)x;
    }
    return 0;
}

static int stops(const cJSON *v, serve_req *r, why *w)
{
    if (cJSON_IsNull(v)) return 0;
    const cJSON *one = cJSON_IsString(v) ? v : NULL, *s;
    int n = one ? 1 : cJSON_GetArraySize(v);
    if (!one && !cJSON_IsArray(v)) return bad(w, "stop", "'stop' must be a string or an array of strings");
    if (n > SERVE_MAX_STOP) return bad(w, "stop", "'stop' holds %d strings (at most %d)", n, SERVE_MAX_STOP);
    for (int i = 0; i < n; i++) {
        s = one ? one : cJSON_GetArrayItem(v, i);
        if (!cJSON_IsString(s) || !*s->valuestring || strlen(s->valuestring) > 256)
            return bad(w, "stop", "'stop' strings must be 1 to 256 bytes");
        if (!(r->stop[r->n_stop++] = strdup(s->valuestring))) return bad(w, "stop", "out of memory");
    }
    return 0;
}

/* A field the API defines that spikeq does not implement: accepted at its "off" value only. */
static int off_value(const cJSON *v, const char *k, why *w)
{
    double x;
    if (!strcmp(k, "frequency_penalty") || !strcmp(k, "presence_penalty"))
        return !number(v, 0, 0, &x) || cJSON_IsNull(v) ? 0 : bad(w, k, "'%s' is not supported (0 only)", k);
    if (!strcmp(k, "logprobs") || !strcmp(k, "echo"))
        return cJSON_IsFalse(v) || cJSON_IsNull(v) ? 0 : bad(w, k, "'%s' is not supported (false only)", k);
    if (!strcmp(k, "top_logprobs") || !strcmp(k, "suffix"))
        return cJSON_IsNull(v) || (cJSON_IsString(v) && !*v->valuestring) ? 0 : bad(w, k, "'%s' is not supported", k);
    if (!strcmp(k, "best_of") || !strcmp(k, "n"))
        return cJSON_IsNull(v) || !integer(v, 1, 1, &x) ? 0 : bad(w, k, "'%s' must be 1 (one completion per request)", k);
    if (!strcmp(k, "logit_bias"))
        return cJSON_IsNull(v) || (cJSON_IsObject(v) && !v->child) ? 0 : bad(w, k, "'logit_bias' is not supported");
    if (!strcmp(k, "response_format")) {
        const char *t = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(v, "type"));
        return cJSON_IsNull(v) || (t && !strcmp(t, "text")) ? 0 : bad(w, k, "'response_format' must be {\"type\": \"text\"}");
    }
    if (!strcmp(k, "user")) return cJSON_IsString(v) || cJSON_IsNull(v) ? 0 : bad(w, k, "'user' must be a string");
    return 1; /* not one of them */
}

static int field(const cJSON *v, serve_req *r, int n_vocab, why *w)
{
    const char *k = v->string;
    double x;
    if ((!strcmp(k, "prompt") && (r->prompt || r->prompt_ids)) || (!strcmp(k, "messages") && r->msgs) ||
        (!strcmp(k, "stop") && r->n_stop))
        return bad(w, k, "'%s' appears twice", k);
    if (!strcmp(k, "model")) {
        if (!cJSON_IsString(v)) return bad(w, k, "'model' must be a string");
        snprintf(r->model, sizeof r->model, "%s", v->valuestring);
    } else if (!strcmp(k, "messages") && r->chat) return messages(v, r, w);
    else if (!strcmp(k, "prompt") && !r->chat) return prompt(v, r, n_vocab, w);
    else if (!strcmp(k, "max_tokens") || !strcmp(k, "max_completion_tokens")) {
        if (cJSON_IsNull(v)) return 0;
        if (integer(v, 1, 1 << 30, &x)) return bad(w, k, "'%s' must be a positive integer", k);
        r->max_tokens = (int)x;
    } else if (!strcmp(k, "temperature")) {
        if (number(v, 0, 2, &x)) return bad(w, k, "'temperature' must be a number from 0 to 2");
        r->sp.temp = (float)x;
    } else if (!strcmp(k, "top_p")) {
        if (number(v, 0, 1, &x) || x == 0) return bad(w, k, "'top_p' must be a number in (0, 1]");
        r->sp.top_p = (float)x;
    } else if (!strcmp(k, "top_k")) {
        if (integer(v, 0, 1 << 22, &x)) return bad(w, k, "'top_k' must be a non-negative integer");
        r->sp.top_k = (int)x;
    } else if (!strcmp(k, "min_p")) {
        if (number(v, 0, 1, &x) || x == 1) return bad(w, k, "'min_p' must be a number in [0, 1)");
        r->sp.min_p = (float)x;
    } else if (!strcmp(k, "repeat_penalty")) {
        if (number(v, 0, 100, &x) || x == 0) return bad(w, k, "'repeat_penalty' must be a positive number");
        r->sp.repeat_penalty = (float)x;
    } else if (!strcmp(k, "seed")) {
        if (cJSON_IsNull(v)) return 0;
        if (integer(v, 0, 9007199254740991.0, &x)) return bad(w, k, "'seed' must be a non-negative integer");
        r->sp.seed = (uint64_t)x;
    } else if (!strcmp(k, "stop")) return stops(v, r, w);
    else if (!strcmp(k, "stream")) {
        if (!cJSON_IsBool(v) && !cJSON_IsNull(v)) return bad(w, k, "'stream' must be true or false");
        r->stream = cJSON_IsTrue(v);
    } else if (!strcmp(k, "cache_prompt")) {
        if (!cJSON_IsBool(v)) return bad(w, k, "'cache_prompt' must be true or false");
        r->cache_prompt = cJSON_IsTrue(v);
    } else if (!strcmp(k, "stream_options")) {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(v, "include_usage");
        if (cJSON_IsNull(v)) return 0;
        if (!cJSON_IsObject(v) || (u && !cJSON_IsBool(u))) return bad(w, k, "'stream_options' must be {\"include_usage\": true|false}");
        r->include_usage = cJSON_IsTrue(u);
    } else {
        int o = off_value(v, k, w);
        if (o <= 0) return o;
        return bad(w, k, "unknown field '%s'", k);
    }
    return 0;
}

int serve_req_parse(const char *body, size_t len, int chat, int n_vocab, serve_req *r, char *err, size_t errlen,
                    char *param, size_t plen)
{
    memset(r, 0, sizeof *r);
    r->chat = chat;
    r->max_tokens = -1;
    r->cache_prompt = 1;
    r->sp = spikeq_sampler_default_params();
    why w = {err, param, errlen, plen};
    if (plen) param[0] = 0;
    cJSON *root = cJSON_ParseWithLength(body, len);
    if (!root) return bad(&w, "", "the body is not valid JSON");
    int rc = 0;
    if (!cJSON_IsObject(root)) rc = bad(&w, "", "the body must be a JSON object");
    const cJSON *v, *obj = cJSON_IsObject(root) ? root : NULL;
    cJSON_ArrayForEach(v, obj) {
        if (rc) break;
        rc = field(v, r, n_vocab, &w);
    }
    if (!rc && chat && !r->msgs) rc = bad(&w, "messages", "'messages' is required");
    if (!rc && !chat && !r->prompt && !r->prompt_ids) rc = bad(&w, "prompt", "'prompt' is required");
    if (!rc && r->include_usage && !r->stream) rc = bad(&w, "stream_options", "'stream_options' is only for stream: true");
    cJSON_Delete(root);
    return rc;
}

void serve_req_free(serve_req *r)
{
    free(r->prompt);
    free(r->prompt_ids);
    for (int i = 0; i < r->n_msgs; i++) free((char *)r->msgs[i].content);
    free(r->msgs);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    memset(r, 0, sizeof *r);
}
