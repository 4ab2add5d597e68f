/* loglik.c — log-likelihood of continuations after a shared context. */
#include "runtime/loglik.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

double spq_logsumexp(const float *lg, int V, float *e, int *top)
{
    int b = 0;
    for (int v = 1; v < V; v++) b = lg[v] > lg[b] ? v : b;
    float mx = lg[b];
    for (int v = 0; v < V; v++) e[v] = lg[v] - mx;
    spq_kern()->vexp(e, V);
    double sum = 0;
    for (int v = 0; v < V; v++) sum += e[v];
    if (top) *top = b;
    return (double)mx + log(sum);
}

double spq_logprob(const float *lg, int V, int target, float *tmp)
{
    return (double)lg[target] - spq_logsumexp(lg, V, tmp, NULL);
}

/* Whether target is the first index of the row's maximum (torch's argmax). */
static int is_argmax(const float *lg, int V, int target)
{
    int best = 0;
    for (int v = 1; v < V; v++) best = lg[v] > lg[best] ? v : best;
    return best == target;
}

/* Score rows[0..M) of logits against targets[0..M) into *r. */
static int score_rows(const float *lg, int V, int M, const int *targets, spq_loglik *r)
{
    double sum = 0;
    int greedy = 1, oom = 0;
#pragma omp parallel reduction(+ : sum) reduction(&& : greedy) reduction(|| : oom)
    {
        float *tmp = malloc(sizeof(float) * (size_t)V);
        if (!tmp) oom = 1;
#pragma omp for
        for (int i = 0; i < M; i++) {
            if (!tmp) continue;
            const float *row = lg + (size_t)i * V;
            sum += spq_logprob(row, V, targets[i], tmp);
            greedy = greedy && is_argmax(row, V, targets[i]);
        }
        free(tmp);
    }
    r->logp += sum;
    r->greedy = r->greedy && greedy;
    r->n += M;
    return oom ? -1 : 0;
}

int spq_loglik_choices(const spq_model *m, spq_state *s, const int *ctx, int nctx, const int *const *cont,
                       const int *ncont, int n, spq_loglik *out)
{
    const int V = m->cfg.vocab_size, B = s->max_batch;
    if (nctx < 1) return -1;
    for (int i = 0; i < n; i++)
        if (ncont[i] < 1 || nctx + ncont[i] - 1 > s->ctx) return -1;
    /* the context, in chunks; the last row's logits predict each continuation's first token */
    for (int b = 0; b < nctx; b += B) {
        int bl = nctx - b < B ? nctx - b : B;
        if (spq_forward(m, s, ctx + b, bl, b, 0)) return -1;
    }
    float *last = malloc(sizeof(float) * (size_t)V);
    if (!last) return -1;
    memcpy(last, s->logits, sizeof(float) * (size_t)V);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        spq_loglik *r = &out[i];
        r->logp = 0; r->n = 0; r->greedy = 1;
        rc = score_rows(last, V, 1, cont[i], r);
        /* rows of cont[i][0..ncont-1) predict cont[i][1..ncont) */
        for (int b = 0; b < ncont[i] - 1 && !rc; b += B) {
            int bl = ncont[i] - 1 - b < B ? ncont[i] - 1 - b : B;
            rc = spq_forward(m, s, cont[i] + b, bl, nctx + b, 1);
            if (!rc) rc = score_rows(s->logits, V, bl, cont[i] + b + 1, r);
        }
    }
    free(last);
    return rc;
}
