/* loglik.h — log-likelihood of continuations after a context: the requests of zero-shot
 * evaluation (lm-evaluation-harness's loglikelihood) and of perplexity. */
#ifndef SPQ_LOGLIK_H
#define SPQ_LOGLIK_H

#include "runtime/model.h"

typedef struct {
    double logp; /* sum over the continuation's tokens of log p(token | everything before it) */
    int n;       /* its token count */
    int greedy;  /* 1 when every continuation token is the argmax of its row (first max wins) */
} spq_loglik;

/* log sum_v exp(logits[v]) over V logits; leaves e[v] = exp(logits[v] - max) (V floats)
 * and, when top is not NULL, the index of the first maximum in *top. */
double spq_logsumexp(const float *logits, int V, float *e, int *top);

/* A request: the model sees ids[0..n) (BOS included when wanted), and the last ncont
 * tokens (1 <= ncont < n) are the continuation whose log-likelihood is asked. */
typedef struct {
    const int *ids;
    int n, ncont;
} spq_llreq;

/* Score requests r[0..n) into out[0..n). Adjacent requests with the same tokens before
 * their continuations (the choices of one question) share one prefill of them, copied
 * into each request's own sequence; requests run many at a time, one sequence each of s
 * (spq_state_init_seq: every request must fit its context: n - 1 <= ctx), their rows in
 * batches of up to max_batch. Each sequence is its own activation tensor, so a score does
 * not depend on the other requests around it; a prefix or continuation longer than a batch
 * runs in chunks of max_batch. Returns 0, or -1 when a request does not fit or memory runs
 * out. */
int spq_loglik_batch(const spq_model *m, spq_state *s, const spq_llreq *r, int n, spq_loglik *out);

#endif
