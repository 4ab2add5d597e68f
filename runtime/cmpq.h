/* cmpq.h — CMPQ weight-only tensors (channel-wise mixed precision, non-uniform levels, FP16
 * outliers; "Channel-Wise Mixed-Precision Quantization for LLMs", arXiv 2410.13056).
 *
 * A weight W[N][K] (N outputs, K input channels) keeps each input channel k at b_k bits,
 * b_k in {2, 3, 4, 8}, chosen from the activation energy E[x_k^2] so that the whole tensor
 * fits a bit budget. Channels of one bit-width form a class; the stored columns are the
 * classes one after the other (2, 3, 4, 8 bits), each in ascending channel order (so the
 * 2-bit class of each channel defines the order). A 2/3/4-bit column has 2^b levels
 * (non-uniform, fitted by Lloyd): its own table (mode COLUMN) or a per-tensor table per
 * bit-width times the column's scale (mode SHARED). An 8-bit column is uniform, symmetric:
 * code * scale. Outliers (weights set apart before and after the fit) add an FP16 residual
 * w - dequant(code), kept as CSR by output row.
 *
 * Blob (the tensor's bytes in a .spq; little-endian; code sections start 64-byte aligned,
 * the others 4-byte aligned):
 *   header 48 B: u32 magic "CMPQ", u32 version 1, u32 N, u32 K, u32 kc[4] (columns per
 *     class), u32 n_out (outliers), u32 mode (0 COLUMN, 1 SHARED), zeros
 *   class  u8[ceil(K/4)]: 2 bits per input channel (bits 2k%8.. of byte k/4): its class
 *   levels f16[4 + 8 + 16]   (mode SHARED only: the levels of the 2-, 3- and 4-bit classes)
 *   tables per stored column: mode COLUMN and b <= 4: f16[2^b] levels; otherwise f16 scale
 *   codes  per class: the kernels' LUT layout (kernels.h) of ceil(N/16) panels x kp columns
 *   rowptr u32[N + 1], col u16[n_out], val f16[n_out]
 * Every byte counts in the tensor's bits per weight (8 * blob bytes / (N * K)). */
#ifndef SPQ_CMPQ_H
#define SPQ_CMPQ_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/team.h"
#include "runtime/error.h"

enum { SPQ_CMPQ_COLUMN = 0, SPQ_CMPQ_SHARED = 1 };
#define SPQ_CMPQ_NCLS 4
extern const int spq_cmpq_bits[SPQ_CMPQ_NCLS]; /* 2, 3, 4, 8 */

typedef struct {
    uint32_t N, K, kc[SPQ_CMPQ_NCLS], n_out, mode;
} spq_cmpq_hdr;

/* Byte offsets of the blob's sections; kp: padded columns per class. */
typedef struct {
    size_t cls, levels, tables, codes[SPQ_CMPQ_NCLS], rowptr, col, val, size;
    int kp[SPQ_CMPQ_NCLS];
} spq_cmpq_layout;

/* The 48-byte header at the start of a blob: read (no checks: spq_cmpq_check does them)
 * and write (magic, version 1, h, zeros). */
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

/* A checked blob ready to run: float tables, the input permutation, pointers into the blob
 * (which must outlive it). */
typedef struct {
    spq_cmpq_hdr h;
    spq_cmpq_layout L;
    int32_t *perm;                     /* stored column j reads x[perm[j]] */
    int32_t *pos;                      /* input channel k sits at pos[k] of the padded input */
    int xoff[SPQ_CMPQ_NCLS], kt;       /* class offsets in the permuted, padded input; its length */
    float *tab[SPQ_CMPQ_NCLS];         /* b <= 4: [kp][16]; b = 8: [kp] scales */
    /* mode SHARED, b <= 4: one table per class and the column scales, which the decode path
     * folds into the input so that the LUT kernel keeps its table in a register */
    float shtab[3][16];
    float *colscale[3];                /* [kp] */
    const uint32_t *codes[SPQ_CMPQ_NCLS];
    const uint32_t *rowptr;
    const uint16_t *col;
    float *val;                        /* outlier residuals as floats */
} spq_cmpq_rt;

int spq_cmpq_rt_init(spq_cmpq_rt *r, const void *blob);
void spq_cmpq_rt_free(spq_cmpq_rt *r);
/* Floats of scratch spq_cmpq_apply needs per input row. */
int spq_cmpq_row_scratch(const spq_cmpq_rt *r);
/* y[M][N] = x[M][K] W^T. xs: M * spq_cmpq_row_scratch floats. M < 4: LUT GEMV per row;
 * else each 64-row block is dequantised to FP32 and multiplied by the float GEMM (3 rows
 * at a time through the GEMV when out of memory for that). Every thread of t's team calls
 * it; it returns after a team barrier. */
void spq_cmpq_apply(const spq_thr *t, const spq_cmpq_rt *r, const float *x, int M, float *y, float *xs);

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
