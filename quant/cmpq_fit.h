/* cmpq_fit.h — fitting a CMPQ tensor (format/cmpq_blob.h) to a weight matrix: bits per
 * input channel from its activation energy, levels by Lloyd, outliers as FP16 residuals. */
#ifndef SPQ_CMPQ_FIT_H
#define SPQ_CMPQ_FIT_H

#include "base/error.h"
#include "format/cmpq_blob.h"

typedef struct {
    double bits;     /* budget: average bits per weight, everything in the blob counted */
    double outliers; /* fraction of weights kept as FP16 residuals (half by activation-scaled
                      * magnitude before the fit, half by weighted error after it) */
    int mode;        /* SPQ_CMPQ_COLUMN, SPQ_CMPQ_SHARED, or -1: fit both, keep the lower loss */
} spq_cmpq_opts;

typedef struct {
    double bpw;      /* bits per weight achieved (<= opts.bits) */
    double loss;     /* sum_k h_k sum_n (w - dequant)^2: the output error proxy minimised */
    spq_cmpq_hdr h;
} spq_cmpq_stats;

/* The fewest bits per weight an [N][K] tensor can take: every channel at 2 bits, shared
 * levels, the outlier fraction's residuals. */
double spq_cmpq_min_bits(int N, int K, double outliers);
/* Quantise w[N][K] with input-channel energies h[K] (E[x_k^2] on calibration text; NULL:
 * all 1) into a new 64-aligned blob (free()) of at most opts->bits * N * K bits. Errors
 * name `what` (e.g. "FILE: tensor"; NULL: none). */
int spq_cmpq_quantize(const float *w, int N, int K, const double *h, const spq_cmpq_opts *o, void **blob,
                      size_t *nbytes, spq_cmpq_stats *st, const char *what, spq_err *e);

#endif
