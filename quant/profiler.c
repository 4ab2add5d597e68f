/* profiler.c — accumulating activation statistics per (layer, input site). */
#include "quant/profiler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *const spq_site_names[SPQ_NSITES] = {"qkv_in", "o_in", "gateup_in", "down_in", "resid"};

int spq_profile_init(spq_profile *p, int n_layers)
{
    memset(p, 0, sizeof *p);
    p->n_layers = n_layers;
    size_t n = (size_t)n_layers * SPQ_NSITES;
    p->s = calloc(n, sizeof *p->s);
    p->chan = calloc(n, sizeof *p->chan);
    p->chan_max = calloc(n, sizeof *p->chan_max);
    p->chan_k = calloc(n, sizeof *p->chan_k);
    p->chan_rows = calloc(n, sizeof *p->chan_rows);
    if (p->s && p->chan && p->chan_max && p->chan_k && p->chan_rows) return 0;
    spq_profile_free(p);
    return -1;
}

int spq_profile_sample(spq_profile *p, const int site_k[SPQ_NSITES], int rows)
{
    size_t n = (size_t)p->n_layers * SPQ_NSITES;
    p->rows = rows;
    memcpy(p->site_k, site_k, sizeof p->site_k);
    p->sample = calloc(n, sizeof *p->sample);
    p->seen = calloc(n, sizeof *p->seen);
    p->rng = 0x9E3779B97F4A7C15ull;
    if (!p->sample || !p->seen) return -1;
    for (size_t i = 0; i < n; i++)
        if (!(p->sample[i] = malloc(sizeof(float) * (size_t)rows * (size_t)site_k[i % SPQ_NSITES]))) return -1;
    return 0;
}

int spq_profile_rows(const spq_profile *p, int layer, int site, const float **x)
{
    if (!p->sample) return 0;
    size_t i = (size_t)layer * SPQ_NSITES + (size_t)site;
    *x = p->sample[i];
    return (int)(p->seen[i] < p->rows ? p->seen[i] : p->rows);
}

void spq_profile_free(spq_profile *p)
{
    for (size_t i = 0; p->sample && i < (size_t)p->n_layers * SPQ_NSITES; i++) free(p->sample[i]);
    free(p->sample);
    free(p->seen);
    for (size_t i = 0; p->chan && i < (size_t)p->n_layers * SPQ_NSITES; i++) free(p->chan[i]);
    for (size_t i = 0; p->chan_max && i < (size_t)p->n_layers * SPQ_NSITES; i++) free(p->chan_max[i]);
    free(p->chan);
    free(p->chan_max);
    free(p->chan_k);
    free(p->chan_rows);
    free(p->s);
    memset(p, 0, sizeof *p);
}

static int bin_of(float a)
{
    if (!(a > 0)) return 0;
    int b = (int)floor((log2((double)a) + 32.0) * 64.0);
    return b < 0 ? 0 : b >= SPQ_HBINS ? SPQ_HBINS - 1 : b;
}

void spq_profile_record(spq_profile *p, int layer, int site, const float *x, int M, int K, const int *tokens,
                        int pos)
{
    spq_site_stats *s = &p->s[layer * SPQ_NSITES + site];
    for (int m = 0; m < M; m++) {
        double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
        for (int k = 0; k < K; k++) {
            double v = x[(size_t)m * K + k], v2 = v * v;
            s1 += v; s2 += v2; s3 += v2 * v; s4 += v2 * v2;
            float a = fabsf(x[(size_t)m * K + k]);
            s->hist[bin_of(a)]++;
            if (a > s->absmax) {
                s->absmax = a;
                s->max_pos = pos + m;
                s->max_chan = k;
                s->max_tok = tokens ? tokens[m] : -1;
            }
        }
        s->n += K; s->s1 += s1; s->s2 += s2; s->s3 += s3; s->s4 += s4;
    }
    size_t i = (size_t)layer * SPQ_NSITES + (size_t)site;
    if (!p->chan[i]) {
        p->chan[i] = calloc((size_t)K, sizeof(double));
        p->chan_max[i] = calloc((size_t)K, sizeof(float));
        if (p->chan[i] && p->chan_max[i]) p->chan_k[i] = K;
    }
    if (p->chan_k[i] == K) {
        double *e = p->chan[i];
        float *mx = p->chan_max[i];
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++) {
                float v = x[(size_t)m * K + k], a = fabsf(v);
                e[k] += (double)v * v;
                mx[k] = a > mx[k] ? a : mx[k];
            }
        p->chan_rows[i] += M;
    }
    if (!p->sample || K != p->site_k[site]) return;
    for (int m = 0; m < M; m++) { /* reservoir sampling (Algorithm R), deterministic xorshift */
        long c = p->seen[i]++, slot = c;
        if (c >= p->rows) {
            p->rng ^= p->rng << 13; p->rng ^= p->rng >> 7; p->rng ^= p->rng << 17;
            slot = (long)(p->rng % (uint64_t)(c + 1));
        }
        if (slot < p->rows) memcpy(p->sample[i] + (size_t)slot * K, x + (size_t)m * K, sizeof(float) * (size_t)K);
    }
}

int spq_profile_energy(const spq_profile *p, int layer, int site, int K, double *out)
{
    size_t i = (size_t)layer * SPQ_NSITES + (size_t)site;
    if (!p->chan || !p->chan[i] || p->chan_k[i] != K || p->chan_rows[i] == 0) return -1;
    for (int k = 0; k < K; k++) out[k] = p->chan[i][k] / (double)p->chan_rows[i];
    return 0;
}

const float *spq_profile_chan_max(const spq_profile *p, int layer, int site, int K)
{
    size_t i = (size_t)layer * SPQ_NSITES + (size_t)site;
    return p->chan_max && p->chan_max[i] && p->chan_k[i] == K && p->chan_rows[i] ? p->chan_max[i] : NULL;
}

double spq_site_quantile(const spq_site_stats *s, double q)
{
    uint64_t total = 0;
    for (int b = 0; b < SPQ_HBINS; b++) total += s->hist[b];
    if (!total) return 0;
    double target = q * (double)total, cum = 0;
    for (int b = 0; b < SPQ_HBINS; b++) {
        cum += (double)s->hist[b];
        if (cum >= target) return exp2(((double)b + 0.5) / 64.0 - 32.0);
    }
    return s->absmax;
}

double spq_site_kurtosis(const spq_site_stats *s)
{
    if (s->n < 2) return 0;
    double mu = s->s1 / s->n, m2 = s->s2 / s->n - mu * mu;
    double m4 = s->s4 / s->n - 4 * mu * s->s3 / s->n + 6 * mu * mu * s->s2 / s->n - 3 * mu * mu * mu * mu;
    return m2 > 0 ? m4 / (m2 * m2) : 0;
}

void spq_profile_observe(void *ctx, int layer, int site, const float *x, int M, int K, const int *tokens, int pos)
{
    spq_profile_record(ctx, layer, site, x, M, K, tokens, pos);
}
