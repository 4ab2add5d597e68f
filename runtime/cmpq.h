/* cmpq.h — CMPQ weight-only tensors (channel-wise mixed precision, non-uniform levels, FP16
 * outliers; "Channel-Wise Mixed-Precision Quantization for LLMs", arXiv 2410.13056).
 *
 * A weight W[N][K] (N outputs, K input channels) keeps each input channel k at b_k bits,
 * b_k in {2, 3, 4, 5, 6, 8}, chosen from the activation energy E[x_k^2] so that the whole
 * tensor fits a bit budget. Channels of one bit-width form a class; the stored columns are
 * the classes one after the other (2, 3, 4, 5, 6, 8 bits), each in ascending channel order.
 * Every weight is an int8 level times its column's FP16 scale t_k (so the kernels multiply
 * int8 levels by int8 activations): a 2/3/4-bit column has 2^b non-uniform levels (fitted
 * by Lloyd), its own (mode COLUMN) or its class's per-tensor set (mode SHARED); 5- and
 * 6-bit columns always use their class's set; an 8-bit column is uniform (the code is the
 * level). Outliers (weights set apart before and after the fit) add an FP16 residual
 * w - dequant(code), kept as CSR by output row.
 *
 * Blob (the tensor's bytes in a .spq; little-endian; code sections start 64-byte aligned,
 * the others 4-byte aligned):
 *   header 48 B: u32 magic "CMPQ", u32 version 2, u32 N, u32 K, u32 kc[6] (columns per
 *     class), u32 n_out (outliers), u32 mode (0 COLUMN, 1 SHARED)
 *   class  u8[ceil(K/2)]: 4 bits per input channel (bits 4(k%2).. of byte k/2): its class 0..5
 *   levels i8[4 + 8 + 16 + 32 + 64]: the shared level sets of the 2- to 6-bit classes
 *   scales f16[K]: t of each stored column
 *   tables i8: mode COLUMN, per stored column of the 2/3/4-bit classes: its 2^b levels
 *   codes  per class: the kernels' layout (kernels.h) of ceil(N/16) panels x kp columns
 *   rowptr u32[N + 1], col u16[n_out], val f16[n_out]
 * Levels are in -127..127. Every byte counts in the tensor's bits per weight
 * (8 * blob bytes / (N * K)). */
#ifndef SPQ_CMPQ_H
#define SPQ_CMPQ_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/team.h"
#include "runtime/error.h"

enum { SPQ_CMPQ_COLUMN = 0, SPQ_CMPQ_SHARED = 1 };
#define SPQ_CMPQ_NCLS 6
extern const int spq_cmpq_bits[SPQ_CMPQ_NCLS]; /* 2, 3, 4, 5, 6, 8 */
/* Whether class c's columns use the class's shared level set under a tensor's mode. */
static inline int spq_cmpq_uses_shared(int mode, int c) { return c == 3 || c == 4 || (c < 3 && mode == SPQ_CMPQ_SHARED); }

typedef struct {
    uint32_t N, K, kc[SPQ_CMPQ_NCLS], n_out, mode;
} spq_cmpq_hdr;

/* Byte offsets of the blob's sections; kp: padded columns per class. */
typedef struct {
    size_t cls, levels, scales, tables, codes[SPQ_CMPQ_NCLS], rowptr, col, val, size;
    int kp[SPQ_CMPQ_NCLS];
} spq_cmpq_layout;

/* The 48-byte header at the start of a blob: read (no checks: spq_cmpq_check does them)
 * and write (magic, version 2, h). */
void spq_cmpq_read_hdr(const void *blob, spq_cmpq_hdr *h);
void spq_cmpq_write_hdr(void *blob, const spq_cmpq_hdr *h);
/* Section offsets and total size of a blob with header h. */
void spq_cmpq_layout_of(const spq_cmpq_hdr *h, spq_cmpq_layout *L);
/* Check a blob of n bytes meant for an [N][K] tensor: NULL when sound (h filled), else what
 * is wrong. Reads every index and value (hostile files). */
const char *spq_cmpq_check(const void *blob, size_t n, int64_t N, int64_t K, spq_cmpq_hdr *h);
/* Bits per weight of a checked blob: 8 * size / (N * K). */
double spq_cmpq_bpw(const spq_cmpq_hdr *h);
/* Dequantise a checked blob to row-major out[N][K]; -1 when out of memory. */
int spq_cmpq_dequant(const void *blob, float *out);

/* A sound blob of [N][K] with kc[c] channels in class c (in turn), shared levels, random
 * codes, levels and scales and n_out outliers spread over the rows, from seed: for
 * benchmarks. NULL when out of memory; free(). */
void *spq_cmpq_synthetic(int N, int K, const uint32_t *kc, uint32_t n_out, uint64_t seed, size_t *nbytes);

/* A checked blob ready to run: the kernels' tables, the input permutation, pointers into
 * the blob (which must outlive it). */
typedef struct {
    spq_cmpq_hdr h;
    spq_cmpq_layout L;
    int32_t *perm;                     /* stored column j reads x[perm[j]] */
    int32_t *pos;                      /* input channel k sits at pos[k] of the padded input */
    int xoff[SPQ_CMPQ_NCLS], kt;       /* class offsets in the permuted, padded input; its length */
    uint8_t *tab[SPQ_CMPQ_NCLS];       /* kernel tables (kernels.h); NULL for 8 bits */
    int tstride[SPQ_CMPQ_NCLS];        /* 16: per column; 0: shared */
    float *scale;                      /* [kt]: t of each padded stored column (0: padding) */
    int32_t *src;                      /* [kt]: the input channel it reads (0: padding) */
    const uint8_t *codes[SPQ_CMPQ_NCLS];
    const uint32_t *rowptr;
    const uint16_t *col;
    /* the outliers by panel of 16 rows, as many slots per row as the panel's fullest row has
     * outliers, so that a panel's outliers are a fixed number of 16-row steps (cmpq_outliers):
     * slot k of the panel at place i is the 64 bytes at eslot + 32 * (eoff[i] + k), halves j =
     * the input column of row j's k-th outlier and 16 + j its FP16 residual (padding: column 0,
     * 0); the panels are placed in the order the work items read them (panels b, b + Q, b + 2Q,
     * b + 3Q for b = 0, 1, ...; runtime/cmpq.c, item_pos), so a thread's outliers are one stream */
    uint32_t *eoff;                    /* [panels + 1] */
    uint16_t *eslot;
} spq_cmpq_rt;

int spq_cmpq_rt_init(spq_cmpq_rt *r, const void *blob);
void spq_cmpq_rt_free(spq_cmpq_rt *r);
/* Floats of scratch spq_cmpq_apply needs per input row. */
int spq_cmpq_row_scratch(const spq_cmpq_rt *r);
/* y[M][N] = x[M][K] W^T. Each input row, permuted and times the column scales, is quantised
 * to int8 per block of 32 stored columns (its own scale per block, as llama.cpp's Q8_0
 * activations), and the kernels multiply int8 levels by it exactly (cmpq_dot); outliers in
 * FP32. xs: M * spq_cmpq_row_scratch floats; next: the tensor the team applies next (NULL:
 * unknown). Every thread of t's team calls it; it returns
 * after a team barrier. */
void spq_cmpq_apply(const spq_thr *t, const spq_cmpq_rt *r, const float *x, int M, float *y, float *xs,
                    const spq_cmpq_rt *next);
/* spq_cmpq_apply for n <= SPQ_CMPQ_MAXN tensors of one input (q, k, v; gate, up): one
 * quantisation pass, one work loop and one balance for all; xs: M * the sum of their
 * spq_cmpq_row_scratch floats. */
#define SPQ_CMPQ_MAXN 4
void spq_cmpq_apply_n(const spq_thr *t, const spq_cmpq_rt *const *rs, int n, const float *x, int M, float *const *ys,
                      float *xs, const spq_cmpq_rt *next);
/* Hint (spq_team_hint) the codes this thread reads first when the team applies r (NULL:
 * clear the hint); spq_cmpq_apply hints r on entry and `next` before its last barrier. */
void spq_cmpq_hint(const spq_thr *t, const spq_cmpq_rt *r);

/* ---- quantiser (cmpq_fit.c) ---- */
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
