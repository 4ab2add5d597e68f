/* cmpq.h — running a CMPQ tensor (format/cmpq_blob.h): its blob set up for the kernels, and
 * y = x W^T with int8 activations per block of 32 stored columns times its int8 levels. */
#ifndef SPQ_CMPQ_H
#define SPQ_CMPQ_H

#include <stddef.h>
#include <stdint.h>

#include "format/cmpq_blob.h"
#include "kernels/team.h"

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

#endif
