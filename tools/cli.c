/* cli.c — helpers shared by the subcommands. */
#include "tools/cli.h"
#include "format/open.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _OPENMP
#include <omp.h>
#endif

void die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("spikeq: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

void die_err(const spq_err *e) { die("%s", e->msg); }

long arg_int(const char *flag, const char *v, long lo, long hi)
{
    if (!v) die("%s: missing value", flag);
    char *end;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) die("%s: '%s' is not an integer in [%ld, %ld]", flag, v, lo, hi);
    return x;
}

double arg_float(const char *flag, const char *v)
{
    if (!v) die("%s: missing value", flag);
    char *end;
    double x = strtod(v, &end);
    if (end == v || *end || x != x) die("%s: '%s' is not a number", flag, v);
    return x;
}

static const model_shape SHAPES[] = {
    {"tinyllama-1.1b", 2048, 5632, 22, 32, 4, 32000, 2048, 10000.0f, 0},
    {"llama2-7b", 4096, 11008, 32, 32, 32, 32000, 4096, 10000.0f, 0},
    {"llama3-8b", 4096, 14336, 32, 32, 8, 128256, 8192, 500000.0f, 1},
    {"mistral-7b", 4096, 14336, 32, 32, 8, 32000, 32768, 1000000.0f, 0},
};

const model_shape *find_shape(const char *flag, const char *name)
{
    for (size_t i = 0; i < sizeof SHAPES / sizeof SHAPES[0]; i++)
        if (!strcmp(SHAPES[i].name, name)) return &SHAPES[i];
    die("%s: unknown shape '%s' (tinyllama-1.1b, llama2-7b, llama3-8b, mistral-7b)", flag, name);
}

void open_ckpt(const char *path, spq_ckpt *c)
{
    spq_err e;
    if (!path) die("no model given (-m MODEL)");
    if (spq_open(path, c, &e)) die_err(&e);
}

void verify_ckpt(const spq_ckpt *c)
{
    spq_err e;
    if (spq_ckpt_verify(c, &e)) die_err(&e);
}

void check_mem(const char *path, const spq_model *m, int max_batch, int n_seq, int ctx, int kv_type, int verbose)
{
    spq_mem need;
    spq_err e;
    if (spq_state_check(path, m, max_batch, n_seq, ctx, 0, kv_type, &need, &e)) die_err(&e);
    if (verbose)
        fprintf(stderr, "spikeq: memory: weights %.2f GB (%.2f GB mapped, %.2f GB packed), KV cache %.2f GB (%s), scratch %.2f GB; %.2f GB available\n",
                (double)need.weights / 1e9, (double)m->mapped_bytes / 1e9, (double)m->packed_bytes / 1e9, (double)need.kv / 1e9,
                kv_type == SPQ_F16 ? "f16" : "f32",
                (double)need.scratch / 1e9, (double)need.avail / 1e9);
}

int kv_arg(const char *v)
{
    if (!strcmp(v, "f16")) return SPQ_F16;
    if (!strcmp(v, "f32")) return SPQ_F32;
    die("--kv: f16 or f32, not '%s'", v);
}

void close_ckpt(spq_ckpt *c)
{
    verify_ckpt(c);
    spq_ckpt_free(c);
}

int set_threads(int n)
{
#ifdef _OPENMP
    /* more threads than cores: the team's spinning barriers wait on descheduled threads */
    if (n > omp_get_num_procs()) {
        fprintf(stderr, "spikeq: -t %d: this machine has %d cores, using %d\n", n, omp_get_num_procs(), omp_get_num_procs());
        n = omp_get_num_procs();
    }
    if (n > 0) omp_set_num_threads(n);
    return omp_get_max_threads();
#else
    (void)n;
    return 1;
#endif
}

char *read_text(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) die("%s: cannot open: %s", path, strerror(errno));
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    if (sz < 0) die("%s: cannot read", path);
    char *b = malloc((size_t)sz + 1);
    if (!b || fread(b, 1, (size_t)sz, f) != (size_t)sz) die("%s: cannot read", path);
    fclose(f);
    b[sz] = 0;
    if (n) *n = (size_t)sz;
    return b;
}


int *encode_text(const spq_tokenizer *t, const char *text, size_t len, int bos, int special, long *n)
{
    long cap = (long)len + 8; /* at most a token per byte, BOS and the dummy prefix */
    int *ids = malloc(sizeof(int) * (size_t)cap);
    long k = ids ? spq_tok_encode(t, text, len, bos, special, ids, cap) : -1;
    if (k < 0) die("out of memory encoding the text");
    *n = k;
    return ids;
}

int *parse_ids(const char *text, const char *what, int vocab, long *n)
{
    long cap = 64, k = 0;
    int *ids = malloc(sizeof(int) * (size_t)cap);
    char *dup = strdup(text), *save = NULL;
    if (!ids || !dup) die("out of memory");
    for (char *t = strtok_r(dup, " \t\r\n,", &save); t; t = strtok_r(NULL, " \t\r\n,", &save)) {
        if (k == cap && !(ids = realloc(ids, sizeof(int) * (size_t)(cap *= 2)))) die("out of memory");
        ids[k++] = (int)arg_int(what, t, 0, vocab - 1);
    }
    free(dup);
    *n = k;
    return ids;
}

void mean_se(double s1, double s2, long n, double *mean, double *se)
{
    *mean = n > 0 ? s1 / (double)n : 0;
    double var = n > 1 ? (s2 - (double)n * *mean * *mean) / (double)(n - 1) : 0;
    *se = n > 0 ? sqrt((var > 0 ? var : 0) / (double)n) : 0;
}

int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
