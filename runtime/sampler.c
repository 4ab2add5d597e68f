/* sampler.c — the sampling chain: penalty -> (greedy | top-k -> temperature softmax ->
 * min-p -> top-p -> draw). */
#include "runtime/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

spq_sampler_params spq_sampler_defaults(void)
{
    spq_sampler_params p = {0.8f, 0.95f, 0.05f, 1.0f, 40, 64, UINT64_MAX};
    return p;
}

int spq_sampler_init(spq_sampler *s, const spq_sampler_params *p)
{
    memset(s, 0, sizeof *s);
    s->p = *p;
    s->rng = p->seed != UINT64_MAX ? p->seed : (uint64_t)time(NULL) ^ (uint64_t)clock() << 20;
    s->rng = s->rng * 0x9E3779B97F4A7C15ull + 1;
    if (p->repeat_last_n > 0) s->hist = malloc(sizeof(int) * (size_t)p->repeat_last_n);
    return 0;
}

void spq_sampler_free(spq_sampler *s)
{
    free(s->hist); free(s->probs); free(s->idx);
    memset(s, 0, sizeof *s);
}

void spq_sampler_accept(spq_sampler *s, int tok)
{
    if (!s->hist) return;
    if (s->n_hist == s->p.repeat_last_n) {
        memmove(s->hist, s->hist + 1, sizeof(int) * (size_t)(s->n_hist - 1));
        s->n_hist--;
    }
    s->hist[s->n_hist++] = tok;
}

static float uniform(spq_sampler *s) /* [0, 1) from xorshift64* */
{
    s->rng ^= s->rng >> 12; s->rng ^= s->rng << 25; s->rng ^= s->rng >> 27;
    return (float)((s->rng * 0x2545F4914F6CDD1Dull) >> 40) / 16777216.0f;
}


static int cmp_desc(const void *a, const void *b, void *ctx)
{
    const float *p = ctx;
    float x = p[*(const int *)a], y = p[*(const int *)b];
    return x < y ? 1 : x > y ? -1 : *(const int *)a - *(const int *)b;
}

int spq_sample(spq_sampler *s, const float *logits, int V)
{

    if (s->cap < V) {
        free(s->probs); free(s->idx);
        s->probs = malloc(sizeof(float) * (size_t)V);
        s->idx = malloc(sizeof(int) * (size_t)V);
        s->cap = V;
    }
    float *p = s->probs;
    memcpy(p, logits, sizeof(float) * (size_t)V);
    if (s->p.repeat_penalty != 1.0f)
        for (int i = 0; i < s->n_hist; i++) {
            int t = s->hist[i];
            if (t < 0 || t >= V) continue;
            int seen = 0; /* penalise each distinct token once */
            for (int j = 0; j < i; j++) seen |= s->hist[j] == t;
            if (!seen) p[t] = p[t] > 0 ? p[t] / s->p.repeat_penalty : p[t] * s->p.repeat_penalty;
        }
    if (s->p.temp <= 0.0f) {
        int best = 0;
        for (int i = 1; i < V; i++) if (p[i] > p[best]) best = i;
        return best;
    }
    /* candidates sorted by logit (descending), cut to top-k: with top-k on, a min-heap of
     * k entries selects them in O(V log k) and only those k are sorted (a full sort of a
     * 32k vocabulary per token cost more than the forward pass of a small model) */
    int n = V;
    if (s->p.top_k > 0 && s->p.top_k < V) {
        n = s->p.top_k;
        int *h = s->idx;
        for (int i = 0; i < n; i++) { /* build: sift up */
            int c = i;
            h[c] = i;
            while (c > 0 && cmp_desc(&h[(c - 1) / 2], &h[c], p) < 0) {
                int t = h[c]; h[c] = h[(c - 1) / 2]; h[(c - 1) / 2] = t;
                c = (c - 1) / 2;
            }
        }
        for (int v = n; v < V; v++) {
            if (cmp_desc(&v, &h[0], p) >= 0) continue; /* not better than the worst kept */
            h[0] = v;
            for (int c = 0;;) { /* sift down: the root holds the worst of the k */
                int l = 2 * c + 1, r = l + 1, w = c;
                if (l < n && cmp_desc(&h[l], &h[w], p) > 0) w = l;
                if (r < n && cmp_desc(&h[r], &h[w], p) > 0) w = r;
                if (w == c) break;
                int t = h[c]; h[c] = h[w]; h[w] = t;
                c = w;
            }
        }
    } else {
        for (int i = 0; i < V; i++) s->idx[i] = i;
    }
    qsort_r(s->idx, (size_t)n, sizeof(int), cmp_desc, p);
    float mx = p[s->idx[0]], sum = 0;
    for (int i = 0; i < n; i++) {
        float e = expf((p[s->idx[i]] - mx) / s->p.temp);
        p[s->idx[i]] = e;
        sum += e;
    }
    /* min-p: drop candidates below min_p x the best probability */
    int keep = n;
    for (int i = 1; i < n; i++)
        if (p[s->idx[i]] < s->p.min_p * p[s->idx[0]]) { keep = i; break; }
    n = keep;
    sum = 0;
    for (int i = 0; i < n; i++) sum += p[s->idx[i]];
    /* top-p: smallest prefix with mass >= top_p */
    float cum = 0;
    for (int i = 0; i < n; i++) {
        cum += p[s->idx[i]] / sum;
        if (cum >= s->p.top_p) { n = i + 1; break; }
    }
    sum = 0;
    for (int i = 0; i < n; i++) sum += p[s->idx[i]];
    float r = uniform(s) * sum, acc = 0;
    for (int i = 0; i < n; i++) {
        acc += p[s->idx[i]];
        if (r < acc) return s->idx[i];
    }
    return s->idx[n - 1];
}
