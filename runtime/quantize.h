/* quantize.h — W8A8 per-tensor quantisation with a spike-aware precision plan
 * ("Precision Where It Matters", Maisonnave et al., 2025). */
#ifndef SPQ_QUANTIZE_H
#define SPQ_QUANTIZE_H

#include "runtime/ckpt.h"
#include "runtime/model.h"
#include "runtime/profiler.h"

typedef struct {
    int act_static;      /* 1: activation scales fixed from calibration; 0: dynamic absmax */
    int spike;           /* fallback format of spike projections: 0 none, SPQ_F16, SPQ_E4M3 */
    int spike_act;       /* activations of FP8 fallbacks: SPQ_E4M3 (the paper's W8A8-FP8) or SPQ_F16 */
    float threshold;     /* spike rule: input absmax >= threshold x median absmax of all linear inputs */
    int max_fallback;    /* at most this many fallback projections (0: no cap) */
    const char *keep;    /* explicit plan "5.down,9.o" (overrides the rule) */
    int embed;           /* embedding (and tied head) dtype: SPQ_F16, SPQ_F32 or SPQ_I8 */
    int head_i8;         /* untied lm_head in INT8 too */
    int clip;            /* INT8 weights: search the clipping of the scale (needs calibration
                          * row samples, spq_profile_sample) instead of absmax/127 */
    int scheme;          /* SPQ_SCHEME_W8A8, SPQ_SCHEME_CMPQ (weight-only mixed precision,
                          * runtime/cmpq.h) or SPQ_SCHEME_RTN (baseline, see below) */
    double bits;         /* CMPQ: bits per weight of every linear (all bytes counted);
                          * RTN: the integer bit-width */
    double outliers;     /* CMPQ: fraction of weights kept as FP16 residuals */
    int cmpq_mode;       /* CMPQ level tables: -1 best of both, SPQ_CMPQ_COLUMN, SPQ_CMPQ_SHARED */
} spq_quant_opts;

/* RTN: the uniform baseline of weight-only papers: per output row, asymmetric min-max
 * round-to-nearest at `bits` bits (+ an FP16 scale and zero per row), stored dequantised
 * as FP16 (a simulation for accuracy tables; it runs at FP16 speed). */
enum { SPQ_SCHEME_W8A8 = 0, SPQ_SCHEME_CMPQ = 1, SPQ_SCHEME_RTN = 2 };

spq_quant_opts spq_quant_defaults(void);

/* Run the model over calibration ids in `samples` windows of `seq` tokens and gather
 * statistics of every linear input into prof (initialised here); keep a uniform sample of
 * sample_rows input rows per (layer, site) when sample_rows > 0. */
int spq_profile_run(const spq_model *m, const int *ids, long n, int samples, int seq, int sample_rows,
                    spq_profile *prof, spq_err *e);

/* Which projections keep high precision: fb[layer * SPQ_NPROJ + proj] = 1. Returns the count. */
int spq_plan(const spq_profile *prof, const spq_quant_opts *o, int n_layers, unsigned char *fb, spq_err *e);

/* Quantise src into dst (dst references src's unchanged tensors: keep src alive while
 * dst is used). prof may be NULL when no calibration is needed (dynamic, no spike plan).
 * calib_hash identifies the calibration text (stored in the plan). */
int spq_quantize(const spq_ckpt *src, const spq_profile *prof, const unsigned char *fb, const spq_quant_opts *o,
                 uint64_t calib_hash, spq_ckpt *dst, spq_err *e);
/* Clipping factor a in [0.5, 1] for an INT8 weight w[N][K] (scale a * absmax / 127) that
 * minimises the output error sum over the S sample rows x of |x (w - q(w))^T|^2. */
float spq_clip_search(const float *w, int N, int K, const float *x, int S);
/* RTN of w[N][K] in place: per row, levels min + i (max - min) / (2^bits - 1). */
void spq_rtn_rows(float *w, int N, int K, int bits);
/* Free what spq_quantize allocated in dst (not src's data). */
void spq_quantized_free(spq_ckpt *dst);

#endif
