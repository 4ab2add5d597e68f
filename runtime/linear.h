/* linear.h — one linear layer in the precision its plan gives it (INT8 W8A8 per-tensor,
 * FP16 or FP8 spike fallback, F32, CMPQ), applied by a thread team. */
#ifndef SPQ_LINEAR_H
#define SPQ_LINEAR_H

#include "kernels/team.h"
#include "format/ckpt.h"

/* One linear layer y = x W^T in the kernels' panel layout.
 * kind SPQ_I8: INT8 x INT8 (weights: w_scale per tensor, or cscale[N] per output channel;
 * activations: a_scale > 0 static per tensor, 0 dynamic absmax/qmax per tensor or, with
 * act_token, per row; codes within +-qmax).
 * kind SPQ_F32 / SPQ_BF16: a float checkpoint's weights as stored.
 * kind SPQ_F16 / SPQ_E4M3: the spike fallback (or an F16 checkpoint); act_fmt rounds activations to FP16 or
 * FP8 E4M3 (per-tensor scale) before the product, SPQ_F32 leaves them in FP32.
 * kind SPQ_GGML: rows of one of ggml's block formats (gq, kernels.h) where the checkpoint
 * holds them, ldw bytes apart; activations quantised per block as the kernels define. */
typedef struct {
    int kind, N, K, act_fmt;
    int mapped;     /* w (and wsum) point into the checkpoint (stored in panels): not freed */
    void *w;
    int32_t *wsum;
    float w_scale, a_scale;
    float qmax;           /* I8: largest activation code, 2^(b-1) - 1 for b-bit activations */
    int act_token;        /* I8 dynamic: one activation scale per row */
    const float *cscale;  /* I8: per-output-channel weight scales (N), or NULL: w_scale */
    int gq;               /* SPQ_GGML: the block format (SPQ_GQ_*) */
    size_t ldw;           /* SPQ_GGML: bytes per weight row, or per group of 8 rows when r8 */
    int r8;               /* SPQ_GGML: repacked at load into the kernels' 8-row layout (spq_gq_r8) */
} spq_linear;

/* Which rows of a linear's input form one activation tensor, with one dynamic activation
 * scale: the rows of one sequence, so that a sequence's results do not depend on what it
 * is batched with. n == 1: every row (the single-sequence path). */
typedef struct {
    int n;          /* tensors (sequences) among the rows */
    const int *id;  /* [M] row -> tensor 0..n-1 */
    float *rmax;    /* [M] scratch: each row's absmax */
    float *tmax;    /* [n] scratch: each tensor's absmax */
} spq_rows;

/* Prepare one linear from a weight tensor (any stored dtype): a tensor stored in the panel
 * layout is used where it lies (the checkpoint must outlive the linear), others are packed.
 * cs: the INT8 tensor's per-output-channel scales (F32 [N]), or NULL. */
int spq_linear_init(spq_linear *l, const spq_tensor *t, const spq_tensor *cs, spq_err *e);
/* Whether a linear of t is a repacked copy (ggml blocks in the 8-row layout), and its bytes:
 * the checkpoint's pages of t are then no longer read. */
int spq_linear_repacks(const spq_tensor *t);
size_t spq_linear_repacked_bytes(const spq_tensor *t);
void spq_linear_free(spq_linear *l);
/* y[M][N] = x[M][K] W^T with the linear's precision; xq/xf are scratch of M*kpad(K); rows
 * groups the rows into activation tensors (NULL: one tensor; not NULL for a linear with
 * per-row scales, act_token, which keeps them in rows->rmax).
 * Every thread of t's team calls it, when its own rows of x (spq_split over M) are
 * written; it returns after a team barrier, y complete. next[0..nnext) are the linears
 * the team applies next (NULL, 0 if none known): a thread that waits fetches its first
 * weights of them. */
void spq_linear_apply(const spq_thr *t, const spq_linear *l, const float *x, int M, const spq_rows *rows, float *y,
                      int8_t *xq, float *xf, const spq_linear *const *next, int nnext);
/* ys[i] = x ls[i]^T for linears that read one input in one format (same kind, activation
 * scale and format, as q/k/v and gate/up are): the input is quantised once. */
void spq_linear_apply_n(const spq_thr *t, const spq_linear *const *ls, int n, const float *x, int M,
                        const spq_rows *rows, float *const *ys, int8_t *xq, float *xf, const spq_linear *const *next,
                        int nnext);

#endif
