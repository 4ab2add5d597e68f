/* eval_tasks.c — read the zero-shot task files into requests (formats: data/eval/README.md
 * of the shared data; the same files lm-evaluation-harness and llama.cpp read). */
#include "tools/eval_tasks.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char ev_task_names[] = "hellaswag,piqa,arc_easy,arc_challenge,openbookqa,copa,boolq,winogrande,lambada";

static const struct {
    const char *name, *file;
    int kind, acc_norm;
} tasks[] = {
    {"hellaswag", "hellaswag_val_full.txt", EV_CHOICE, 1},
    {"piqa", "piqa_valid.jsonl", EV_CHOICE, 1},
    {"arc_easy", "arc_easy.jsonl", EV_CHOICE, 1},
    {"arc_challenge", "arc_challenge.jsonl", EV_CHOICE, 1},
    {"openbookqa", "openbook_qa.jsonl", EV_CHOICE, 1},
    {"copa", "copa.jsonl", EV_CHOICE, 0},
    {"boolq", "boolq.jsonl", EV_CHOICE, 0},
    {"winogrande", "winogrande.jsonl", EV_WINO, 0},
    {"lambada", "lambada_openai.jsonl", EV_GREEDY, 0},
};

typedef struct {
    FILE *f;
    char *line, path[4096];
    size_t cap;
    long no; /* line number of the last line read */
    char *err;
    int errlen;
} reader;

static int fail(reader *r, const char *fmt, ...)
{
    va_list ap;
    int k = snprintf(r->err, (size_t)r->errlen, "%s:%ld: ", r->path, r->no);
    va_start(ap, fmt);
    if (k >= 0 && k < r->errlen) vsnprintf(r->err + k, (size_t)(r->errlen - k), fmt, ap);
    va_end(ap);
    return -1;
}

static int open_in(reader *r, const char *dir, const char *file)
{
    char *err = r->err;
    int errlen = r->errlen;
    memset(r, 0, sizeof *r);
    r->err = err; r->errlen = errlen;
    snprintf(r->path, sizeof r->path, "%s/%s", dir, file);
    r->f = fopen(r->path, "r");
    if (!r->f) {
        snprintf(r->err, (size_t)r->errlen, "%s: cannot open (is --data the folder of the task files?)", r->path);
        return -1;
    }
    return 0;
}

/* Next line without its newline; NULL at the end of the file. */
static char *next_line(reader *r)
{
    ssize_t n = getline(&r->line, &r->cap, r->f);
    if (n < 0) return NULL;
    r->no++;
    if (n > 0 && r->line[n - 1] == '\n') r->line[--n] = 0;
    if (n > 0 && r->line[n - 1] == '\r') r->line[--n] = 0;
    return r->line;
}

static void close_in(reader *r)
{
    if (r->f) fclose(r->f);
    free(r->line);
    r->f = NULL; r->line = NULL;
}

static int add_item(ev_task *t, int *cap, ev_item *it)
{
    if (t->n_items == *cap) {
        int nc = *cap ? 2 * *cap : 256;
        ev_item *p = realloc(t->items, sizeof *p * (size_t)nc);
        if (!p) return -1;
        t->items = p; *cap = nc;
    }
    t->items[t->n_items++] = *it;
    return 0;
}

/* An item of n requests (the strings are set by the caller). */
static int make_item(ev_item *it, int n)
{
    memset(it, 0, sizeof *it);
    it->n = n;
    it->context = calloc((size_t)n, sizeof(char *));
    it->cont = calloc((size_t)n, sizeof(char *));
    if (it->context && it->cont) return 0;
    free(it->context); free(it->cont);
    it->context = it->cont = NULL;
    return -1;
}

static void item_free(ev_item *it, int kind)
{
    if (!it->context) return;
    if (kind == EV_WINO) for (int i = 0; i < it->n; i++) free(it->context[i]);
    else free(it->context[0]);
    if (kind == EV_CHOICE) for (int i = 0; i < it->n; i++) free(it->cont[i]);
    else free(it->cont[0]);
    free(it->context);
    free(it->cont);
}

static char *dup_str(const cJSON *j) { return cJSON_IsString(j) ? strdup(j->valuestring) : NULL; }

/* Strip leading and trailing whitespace in place (LAMBADA's continuation). */
static char *strip(char *s)
{
    size_t n = strlen(s), a = 0;
    while (a < n && isspace((unsigned char)s[a])) a++;
    while (n > a && isspace((unsigned char)s[n - 1])) n--;
    memmove(s, s + a, n - a);
    s[n - a] = 0;
    return s;
}

/* A gold index: a whole number in [0, n) (range first: a huge double to int is undefined). */
static int gold_in(const cJSON *g, int n)
{
    return cJSON_IsNumber(g) && g->valuedouble >= 0 && g->valuedouble < n && g->valuedouble == (double)(int)g->valuedouble;
}

/* One JSON line of a task into an item. */
static int json_item(reader *r, const char *name, cJSON *j, int *piqa_gold, ev_item *it)
{
    if (!cJSON_IsObject(j)) return fail(r, "not a JSON object");
    if (!strcmp(name, "piqa")) {
        char *goal = dup_str(cJSON_GetObjectItemCaseSensitive(j, "goal"));
        char *s1 = dup_str(cJSON_GetObjectItemCaseSensitive(j, "sol1")), *s2 = dup_str(cJSON_GetObjectItemCaseSensitive(j, "sol2"));
        char *ctx = goal ? malloc(strlen(goal) + 32) : NULL;
        if (!goal || !s1 || !s2 || !ctx || make_item(it, 2)) {
            free(goal); free(s1); free(s2); free(ctx);
            return fail(r, "expected string fields goal, sol1, sol2");
        }
        sprintf(ctx, "Question: %s\nAnswer:", goal);
        free(goal);
        it->context[0] = it->context[1] = ctx;
        it->cont[0] = s1; it->cont[1] = s2;
        it->gold = *piqa_gold;
        return 0;
    }
    if (!strcmp(name, "winogrande")) {
        const cJSON *opts = cJSON_GetObjectItemCaseSensitive(j, "context_options"), *g = cJSON_GetObjectItemCaseSensitive(j, "gold");
        char *cont = dup_str(cJSON_GetObjectItemCaseSensitive(j, "continuation"));
        int n = cJSON_IsArray(opts) ? cJSON_GetArraySize(opts) : 0;
        if (!cont || n < 2 || n > 16 || !gold_in(g, n) || make_item(it, n)) {
            free(cont);
            return fail(r, "expected context_options (2-16 strings), continuation and gold in range");
        }
        for (int i = 0; i < n; i++) it->cont[i] = cont;
        int k = 0;
        for (const cJSON *o = opts->child; o; o = o->next, k++)
            if (!(it->context[k] = dup_str(o))) { item_free(it, EV_WINO); return fail(r, "context_options[%d] is not a string", k); }
        it->gold = g->valueint;
        return 0;
    }
    if (!strcmp(name, "lambada")) {
        char *ctx = dup_str(cJSON_GetObjectItemCaseSensitive(j, "context")), *cont = dup_str(cJSON_GetObjectItemCaseSensitive(j, "continuation"));
        if (!ctx || !cont || !*strip(cont) || make_item(it, 1)) {
            free(ctx); free(cont);
            return fail(r, "expected string fields context and a non-empty continuation");
        }
        it->context[0] = ctx; it->cont[0] = cont; it->gold = 0;
        return 0;
    }
    /* ARC, OpenBookQA, COPA, BoolQ: query, choices, gold */
    const cJSON *ch = cJSON_GetObjectItemCaseSensitive(j, "choices"), *g = cJSON_GetObjectItemCaseSensitive(j, "gold");
    char *q = dup_str(cJSON_GetObjectItemCaseSensitive(j, "query"));
    int n = cJSON_IsArray(ch) ? cJSON_GetArraySize(ch) : 0;
    if (!q || n < 2 || n > 64 || !gold_in(g, n) || make_item(it, n)) {
        free(q);
        return fail(r, "expected query, choices (2-64 strings) and gold in range");
    }
    for (int i = 0; i < n; i++) it->context[i] = q;
    int k = 0;
    for (const cJSON *o = ch->child; o; o = o->next, k++)
        if (!(it->cont[k] = dup_str(o))) { item_free(it, EV_CHOICE); return fail(r, "choices[%d] is not a string", k); }
    it->gold = g->valueint;
    return 0;
}

static int load_jsonl(reader *r, const char *dir, const char *name, int limit, ev_task *t, int *cap)
{
    reader lab = {.err = r->err, .errlen = r->errlen};
    if (!strcmp(name, "piqa") && open_in(&lab, dir, "piqa_valid-labels.lst")) return -1;
    int rc = 0;
    for (char *l; (limit <= 0 || t->n_items < limit) && (l = next_line(r));) {
        if (!*l) continue;
        int gold = 0;
        if (lab.f) {
            char *gl = next_line(&lab);
            if (!gl || (strcmp(gl, "0") && strcmp(gl, "1"))) { rc = fail(&lab, "expected a label 0 or 1 for %s line %ld", r->path, r->no); break; }
            gold = gl[0] - '0';
        }
        cJSON *j = cJSON_Parse(l);
        if (!j) { rc = fail(r, "not valid JSON"); break; }
        ev_item it;
        rc = json_item(r, name, j, &gold, &it);
        cJSON_Delete(j);
        if (!rc && add_item(t, cap, &it)) { item_free(&it, t->kind); rc = fail(r, "out of memory"); }
        if (rc) break;
    }
    close_in(&lab);
    return rc;
}

/* llama.cpp's HellaSwag file: blocks of 6 lines: context, gold (0-3), 4 endings. */
static int load_hellaswag(reader *r, int limit, ev_task *t, int *cap)
{
    for (char *l; (limit <= 0 || t->n_items < limit) && (l = next_line(r));) {
        ev_item it;
        char *ctx = strdup(l), *g = next_line(r);
        if (!ctx || !g || strlen(g) != 1 || g[0] < '0' || g[0] > '3' || make_item(&it, 4)) {
            free(ctx);
            return fail(r, "expected a gold label 0-3 after the context (blocks of 6 lines)");
        }
        it.gold = g[0] - '0';
        for (int i = 0; i < 4; i++) {
            it.context[i] = ctx;
            char *e = next_line(r);
            if (!e || !(it.cont[i] = strdup(e))) { item_free(&it, EV_CHOICE); return fail(r, "block ends before its 4th ending"); }
        }
        if (add_item(t, cap, &it)) { item_free(&it, EV_CHOICE); return fail(r, "out of memory"); }
    }
    return 0;
}

int ev_task_load(const char *dir, const char *name, int limit, ev_task *t, char *err, int errlen)
{
    memset(t, 0, sizeof *t);
    int k = -1;
    for (int i = 0; i < (int)(sizeof tasks / sizeof tasks[0]); i++)
        if (!strcmp(name, tasks[i].name) || (!strcmp(name, "lambada_openai") && !strcmp(tasks[i].name, "lambada"))) k = i;
    if (k < 0) {
        snprintf(err, (size_t)errlen, "--tasks: unknown task '%s' (%s)", name, ev_task_names);
        return -1;
    }
    t->name = tasks[k].name;
    t->kind = tasks[k].kind;
    t->acc_norm = tasks[k].acc_norm;
    reader r = {.err = err, .errlen = errlen};
    if (open_in(&r, dir, tasks[k].file)) return -1;
    int cap = 0;
    int rc = !strcmp(t->name, "hellaswag") ? load_hellaswag(&r, limit, t, &cap) : load_jsonl(&r, dir, t->name, limit, t, &cap);
    if (!rc && t->n_items == 0) { r.no = 0; rc = fail(&r, "no items"); }
    close_in(&r);
    if (rc) ev_task_free(t);
    return rc;
}

void ev_task_free(ev_task *t)
{
    for (int i = 0; i < t->n_items; i++) item_free(&t->items[i], t->kind);
    free(t->items);
    t->items = NULL;
    t->n_items = 0;
}
