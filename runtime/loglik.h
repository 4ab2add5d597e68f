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

/* log softmax(logits[0..V))[target]; tmp: V floats of scratch. */
double spq_logprob(const float *logits, int V, int target, float *tmp);
/* log sum_v exp(logits[v]) over V logits; leaves e[v] = exp(logits[v] - max) (V floats)
 * and, when top is not NULL, the index of the first maximum in *top. */
double spq_logsumexp(const float *logits, int V, float *e, int *top);

/* Score n continuations cont[i][0..ncont[i]) (each >= 1 token) after one context
 * ctx[0..nctx) (nctx >= 1, BOS included when wanted): the context is prefilled once, then
 * each continuation runs from position nctx, overwriting the cache after the context.
 * Needs nctx + ncont[i] - 1 <= the state's context. Returns 0, or -1 when a sequence does
 * not fit or memory runs out. */
int spq_loglik_choices(const spq_model *m, spq_state *s, const int *ctx, int nctx, const int *const *cont,
                       const int *ncont, int n, spq_loglik *out);

#endif
