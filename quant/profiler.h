/* profiler.h — activation statistics of every linear layer's input (the spikes of
 * "Precision Where It Matters"), gathered while the FP32 model runs calibration text. */
#ifndef SPQ_PROFILER_H
#define SPQ_PROFILER_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/model.h"

/* The names of the forward pass's input sites (SPQ_SITE_*, runtime/model.h). */
extern const char *const spq_site_names[SPQ_NSITES];

#define SPQ_HBINS 4096 /* log2-spaced |x| bins: 64 per octave over 2^-32 .. 2^32 */

typedef struct {
    double n, s1, s2, s3, s4; /* moments of x */
    float absmax;
    int max_pos, max_chan, max_tok;
    uint64_t hist[SPQ_HBINS];
} spq_site_stats;

typedef struct spq_profile {
    int n_layers, tokens_seen;
    spq_site_stats *s; /* [n_layers][SPQ_NSITES] */
    /* optional row samples (spq_profile_sample): per (layer, site) a uniform reservoir of
     * up to rows input rows of site_k[site] floats, for searches that need real inputs */
    int rows, site_k[SPQ_NSITES];
    float **sample;     /* [n_layers * SPQ_NSITES] -> rows x site_k */
    long *seen;         /* rows offered per (layer, site) */
    uint64_t rng;
    /* per input channel: sum of x^2 over every row recorded (CMPQ's channel energies) and
     * largest |x| (SmoothQuant's activation range) */
    double **chan;      /* [n_layers * SPQ_NSITES] -> chan_k[i] sums, allocated at first record */
    float **chan_max;   /* [n_layers * SPQ_NSITES] -> chan_k[i] maxima */
    int *chan_k;
    long *chan_rows;
} spq_profile;

int spq_profile_init(spq_profile *p, int n_layers);
/* Also keep a uniform sample of `rows` input rows per (layer, site); site_k: row lengths. */
int spq_profile_sample(spq_profile *p, const int site_k[SPQ_NSITES], int rows);
/* Rows sampled at (layer, site) (min(rows, seen)); *x points at them. */
int spq_profile_rows(const spq_profile *p, int layer, int site, const float **x);
void spq_profile_free(spq_profile *p);
/* Record an input tensor x[M][K] at (layer, site); tokens/pos locate the max. */
void spq_profile_record(spq_profile *p, int layer, int site, const float *x, int M, int K,
                        const int *tokens, int pos);
/* Mean x_k^2 of each of the K input channels at (layer, site) into out[K]; -1 when that
 * site saw no rows of K channels. */
int spq_profile_energy(const spq_profile *p, int layer, int site, int K, double *out);
/* Largest |x_k| of each of the K input channels at (layer, site); NULL when that site saw
 * no rows of K channels. */
const float *spq_profile_chan_max(const spq_profile *p, int layer, int site, int K);
/* q-quantile (0..1) of |x| from the histogram (bin centre). */
double spq_site_quantile(const spq_site_stats *s, double q);
/* spq_profile_record as the forward pass's observer (spq_state.observe, ctx: the
 * spq_profile). */
void spq_profile_observe(void *ctx, int layer, int site, const float *x, int M, int K, const int *tokens, int pos);
/* Excess-free kurtosis E[(x-mu)^4] / var^2 (3 for a Gaussian). */
double spq_site_kurtosis(const spq_site_stats *s);

#endif
