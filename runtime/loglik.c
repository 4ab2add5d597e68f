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

/* Rows of one forward pass being gathered, and what each wanted row's logits score:
 * the first token of each request of a family (prefix rows), or token t + 1 of a
 * request's continuation. */
typedef struct {
    int n, nw;
    int *tok, *pos, *seq;
    signed char *want;
    int *fam, *req, *t; /* per wanted row: family (prefix rows) or request and index (else) */
    double *lse;
    int *top;
} rows_buf;

typedef struct {
    int r0, k, seq, P; /* requests r0..r0+k-1 share tokens 0..P-1; sequences seq..seq+k-1 */
} family;

/* Run the gathered rows and add each wanted row's log-probabilities to out. */
static int flush(const spq_model *m, spq_state *s, rows_buf *b, const spq_llreq *r, const family *f, spq_loglik *out)
{
    if (!b->n) return 0;
    const int V = m->cfg.vocab_size;
    if (spq_forward_batch(m, s, b->tok, b->pos, b->seq, b->want, b->n) != b->nw) return -1;
    int oom = 0;
#pragma omp parallel reduction(|| : oom)
    {
        float *tmp = malloc(sizeof(float) * (size_t)V);
        if (!tmp) oom = 1;
#pragma omp for
        for (int w = 0; w < b->nw; w++)
            if (tmp) b->lse[w] = spq_logsumexp(s->logits + (size_t)w * V, V, tmp, &b->top[w]);
        free(tmp);
    }
    if (oom) return -1;
    for (int w = 0; w < b->nw; w++) {
        const float *lg = s->logits + (size_t)w * V;
        int q0 = b->fam[w] >= 0 ? f[b->fam[w]].r0 : b->req[w], nq = b->fam[w] >= 0 ? f[b->fam[w]].k : 1;
        for (int q = q0; q < q0 + nq; q++) {
            int P = r[q].n - r[q].ncont, target = r[q].ids[P + (b->fam[w] >= 0 ? 0 : b->t[w] + 1)];
            out[q].logp += (double)lg[target] - b->lse[w];
            out[q].greedy = out[q].greedy && b->top[w] == target;
            out[q].n++;
        }
    }
    b->n = b->nw = 0;
    return 0;
}

/* Add tokens ids[0..cnt) at positions pos0.. of sequence seq, running the gathered rows
 * first when they would not fit; a run longer than a batch goes in chunks of a batch.
 * fam >= 0: only the run's last row is wanted, for family fam; else every row is, row i
 * for token i + 1 of request req's continuation. */
static int add_run(const spq_model *m, spq_state *s, rows_buf *b, const spq_llreq *r, const family *f, spq_loglik *out,
                   const int *ids, int cnt, int pos0, int seq, int fam, int req)
{
    const int B = s->max_batch;
    if (b->n + cnt > B && flush(m, s, b, r, f, out)) return -1;
    for (int i = 0; i < cnt; i++) {
        if (b->n == B && flush(m, s, b, r, f, out)) return -1;
        b->tok[b->n] = ids[i];
        b->pos[b->n] = pos0 + i;
        b->seq[b->n] = seq;
        int w = fam >= 0 ? i == cnt - 1 : 1;
        b->want[b->n++] = (signed char)w;
        if (w) { b->fam[b->nw] = fam; b->req[b->nw] = req; b->t[b->nw] = i; b->nw++; }
    }
    return 0;
}

int spq_loglik_batch(const spq_model *m, spq_state *s, const spq_llreq *r, int n, spq_loglik *out)
{
    const int B = s->max_batch;
    for (int q = 0; q < n; q++) {
        if (r[q].ncont < 1 || r[q].ncont >= r[q].n || r[q].n - 1 > s->ctx) return -1;
        out[q] = (spq_loglik){0, 0, 1};
    }
    rows_buf b = {0};
    b.tok = malloc(sizeof(int) * (size_t)B); b.pos = malloc(sizeof(int) * (size_t)B); b.seq = malloc(sizeof(int) * (size_t)B);
    b.want = malloc((size_t)B); b.fam = malloc(sizeof(int) * (size_t)B); b.req = malloc(sizeof(int) * (size_t)B);
    b.t = malloc(sizeof(int) * (size_t)B); b.lse = malloc(sizeof(double) * (size_t)B); b.top = malloc(sizeof(int) * (size_t)B);
    family *f = malloc(sizeof(family) * (size_t)s->n_seq);
    int rc = !b.tok || !b.pos || !b.seq || !b.want || !b.fam || !b.req || !b.t || !b.lse || !b.top || !f ? -1 : 0;
    for (int i = 0; i < n && !rc;) {
        /* a round: families of requests (the same tokens before their continuations), one
         * sequence per request, as many as the state has */
        int nf = 0, used = 0;
        while (i < n && used < s->n_seq) {
            int P = r[i].n - r[i].ncont, j = i + 1;
            while (j < n && j - i < s->n_seq && r[j].n - r[j].ncont == P && !memcmp(r[j].ids, r[i].ids, sizeof(int) * (size_t)P)) j++;
            if (used + (j - i) > s->n_seq) {
                if (used) break;
                j = i + s->n_seq;
            }
            f[nf++] = (family){i, j - i, used, P};
            used += j - i;
            i = j;
        }
        /* the prefixes, each in its family's first sequence; its last row scores every
         * request's first continuation token */
        for (int k = 0; k < nf && !rc; k++)
            rc = add_run(m, s, &b, r, f, out, r[f[k].r0].ids, f[k].P, 0, f[k].seq, k, -1);
        if (!rc) rc = flush(m, s, &b, r, f, out);
        /* the continuations: the prefix copied into the family's other sequences, then each
         * continuation's tokens but the last */
        for (int k = 0; k < nf && !rc; k++)
            for (int j = 0; j < f[k].k && !rc; j++) {
                int q = f[k].r0 + j, P = f[k].P;
                if (j) spq_state_copy_seq(s, m, f[k].seq, f[k].seq + j, P);
                rc = add_run(m, s, &b, r, f, out, r[q].ids + P, r[q].ncont - 1, P, f[k].seq + j, -1, q);
            }
        if (!rc) rc = flush(m, s, &b, r, f, out);
    }
    free(b.tok); free(b.pos); free(b.seq); free(b.want); free(b.fam); free(b.req); free(b.t); free(b.lse); free(b.top); free(f);
    return rc;
}
