/* quantize.h — W8A8 per-tensor quantisation with a spike-aware precision plan
 * ("Precision Where It Matters", Maisonnave et al., 2025). */
#ifndef SPQ_QUANTIZE_H
#define SPQ_QUANTIZE_H

#include "format/ckpt.h"
#include "runtime/model.h"
#include "quant/profiler.h"

/* Which down/o projections the spike rule picks (spq_plan). */
enum {
    SPQ_RULE_MEDIAN, /* input absmax >= threshold x the median absmax of all linear inputs */
    SPQ_RULE_RATIO,  /* input absmax >= threshold x that input's own median |x| */
    SPQ_RULE_TOP,    /* the `top` largest input absmaxes */
    SPQ_RULE_ABS,    /* input absmax >= threshold */
    SPQ_RULE_RANDOM, /* `top` projections drawn at random (seed): the control */
    SPQ_NRULES
};
extern const char *const spq_rule_names[SPQ_NRULES]; /* "median", "ratio", "top", "abs", "random" */

struct spq_smooth;

typedef struct {
    int act_static;      /* 1: activation scales fixed from calibration; 0: dynamic absmax */
    int act_bits;        /* INT8 activation codes of 4..8 bits: +-(2^(b-1) - 1) */
    int act_token;       /* dynamic activation scales: 1 per token (row), 0 per tensor */
    int weight_bits;     /* INT8 weight codes of 4..8 bits */
    int weight_channel;  /* INT8 weights: 1 scale per output channel (NAME_scale), 0 per tensor */
    int spike;           /* fallback format of spike projections: 0 none, SPQ_F16, SPQ_E4M3
                          * (scaled by absmax/448), SPQ_E5M2 (weights and activations, no scale) */
    int spike_act;       /* activations of E4M3 fallbacks: SPQ_E4M3 (the paper's W8A8-FP8) or SPQ_F16 */
    int rule;            /* SPQ_RULE_* */
    float threshold;     /* the median, ratio and abs rules' threshold */
    int top;             /* the top and random rules' count */
    uint64_t seed;       /* the random rule's seed */
    int max_fallback;    /* at most this many fallback projections (0: no cap) */
    const char *keep;    /* explicit plan "5.down,9.o" (overrides the rule) */
    const struct spq_smooth *smooth; /* SmoothQuant factors folded into the weights, or NULL */
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
    int ggml_type;       /* GGML: the block format (format/ggml_quants.h ids) */
} spq_quant_opts;

/* RTN: the uniform baseline of weight-only papers: per output row, asymmetric min-max
 * round-to-nearest at `bits` bits (+ an FP16 scale and zero per row), stored dequantised
 * as FP16 (a simulation for accuracy tables; it runs at FP16 speed). GGML: llama.cpp's
 * legacy block format ggml_type (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) by ggml's reference
 * quantiser, stored dequantised as FP32 (exactly its values; for accuracy tables). */
enum { SPQ_SCHEME_W8A8 = 0, SPQ_SCHEME_CMPQ = 1, SPQ_SCHEME_RTN = 2, SPQ_SCHEME_GGML = 3 };

spq_quant_opts spq_quant_defaults(void);
/* The default threshold of a rule: median 3, ratio 50; 0 for the others (abs has none:
 * an absolute spike size is the user's call). */
float spq_rule_threshold(int rule);

/* The spike layers the paper lists for a model of c's shape, as a --keep list
 * ("1.down,30.down,31.o" for LLaMA-2-7B; LLaMA-3-8B, Mistral-7B), or NULL (naming the shape
 * in e) when the paper lists none for it. */
const char *spq_paper_keep(const spq_config *c, spq_err *e);

/* SmoothQuant (Xiao et al., 2023) per input channel of each linear input site:
 * s_j = max|x_j|^alpha / max|W_j|^(1 - alpha), W over every projection reading the site.
 * x / s is folded into the preceding RMSNorm weights (q/k/v, gate/up inputs), v_proj rows
 * (o_proj input; factors shared by the query heads of one KV head) and up_proj rows
 * (down_proj input); W s into the projections' columns: the FP32 function is unchanged. */
typedef struct spq_smooth {
    float alpha;
    int n_layers, k[4], rep, head_dim; /* k: channels of sites QKV, O, GATEUP, DOWN */
    float *s;  /* [n_layers][4] factor vectors, one after the other */
    size_t *at; /* [n_layers * 4]: where each vector starts in s */
} spq_smooth;
/* Factors from the profile's per-channel maxima and src's weights; the profile then
 * describes the smoothed inputs (site absmax, channel maxima and energies, row samples). */
int spq_smooth_init(spq_smooth *sm, const spq_ckpt *src, spq_profile *prof, float alpha, spq_err *e);
/* Apply the factors that touch tensor `name` (a norm or projection, rows x cols FP32 values
 * in w; cols 0 for vectors); other names are left as they are. */
void spq_smooth_tensor(const spq_smooth *sm, const char *name, float *w, int64_t rows, int64_t cols);
void spq_smooth_free(spq_smooth *sm);

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
