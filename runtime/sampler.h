/* sampler.h — next-token choice: greedy, temperature, top-k, top-p, min-p, repetition
 * penalty, with a seeded generator so runs are reproducible (across thread counts too:
 * the logits themselves are bit-identical whatever the thread count). */
#ifndef SPQ_SAMPLER_H
#define SPQ_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temp, top_p, min_p, repeat_penalty;
    int top_k, repeat_last_n;
    uint64_t seed; /* UINT64_MAX: seed from the clock */
} spq_sampler_params;

typedef struct {
    spq_sampler_params p;
    uint64_t rng;
    int *hist;
    int n_hist;
    float *probs;
    int *idx;
    int cap;
} spq_sampler;

/* llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05, no repeat penalty. */
spq_sampler_params spq_sampler_defaults(void);
int spq_sampler_init(spq_sampler *s, const spq_sampler_params *p);
void spq_sampler_free(spq_sampler *s);
/* Choose the next token from logits[V] (not modified). */
int spq_sample(spq_sampler *s, const float *logits, int V);
/* Remember a token for the repetition penalty. */
void spq_sampler_accept(spq_sampler *s, int tok);

#endif
