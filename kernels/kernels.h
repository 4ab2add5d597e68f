/* kernels.h — spikeq's compute kernels behind one dispatch table.
 *
 * Weight layout shared by every ISA ("panel" layout): output columns are grouped
 * in panels of SPQ_NR = 16. Within a panel, INT8/FP8 weights are stored k-quad by
 * k-quad: for each group of 4 consecutive inputs k, 16 columns x 4 bytes (64 B),
 * which is exactly one vpdpbusd operand (AVX-512), two AVX-VNNI/AVX2 operands or
 * four NEON sdot operands. K is padded with zeros to a multiple of 4 and N to a
 * multiple of 16. Float weights (F32, F16) use panels of [k][16].
 *
 * Numerics: INT8 GEMMs accumulate exactly in int32 and write
 * y = (float)acc * scale, scale = w_scale * x_scale, so every SIMD path equals the
 * scalar reference bit for bit. Float paths accumulate in FP32 in a different
 * order than the reference: they match it to ~1e-5 relative.
 */
#ifndef SPQ_KERNELS_H
#define SPQ_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/team.h"

#define SPQ_NR 16 /* output columns per weight panel */

/* Bytes in an INT8/FP8 panel-packed matrix of N outputs by K inputs. */
size_t spq_pack_q8_size(int N, int K);
/* Where a stored INT8 linear's column sums start: after its panels, 64-byte aligned. */
size_t spq_pack_q8_wsum_at(int N, int K);
/* Padded K (multiple of 4) used for quantised activations and packed weights. */
int spq_kpad(int K);
/* Pack row-major int8 W[N][K] into panels; wsum[n] = sum_k W[n][k] (for the u8 trick). */
void spq_pack_q8(const int8_t *w, int N, int K, int8_t *out, int32_t *wsum);
/* Pack row-major 16-bit codes or floats [N][K] into [N/16][K][16] panels (elem bytes 2 or 4). */
void spq_pack_f(const void *w, int N, int K, int elem, void *out);
/* Bytes of a float/f16 panel-packed matrix. */
size_t spq_pack_f_size(int N, int K, int elem);
/* Pack FP8 codes row-major [N][K] into the INT8 panel layout (same byte layout). */
void spq_pack_fp8(const uint8_t *w, int N, int K, uint8_t *out);

/* CMPQ integer layout (weight-only, format/cmpq_blob.h). The columns of one bit-width b (2, 3,
 * 4, 5, 6 or 8) form a class of kp columns, kp a multiple of SPQ_CMPQ_BLK = 32 (zero codes
 * pad it); rows are in panels of 16. A panel holds kp / 32 blocks of 64 * b bytes, each
 * the codes of 32 columns x 16 rows as 64-byte planes whose byte 4r + j (row r) holds bits
 * of the columns 4Q + j of the block's quads Q = 0..7 (one vpdpbusd operand per quad):
 *   8-bit planes (b = 8): plane Q, the whole code (two's complement);
 *   4-bit planes (b = 4, 5, 6): plane Q / 2, bits 0-3 in the low (Q even) or high nibble;
 *   2-bit planes (b = 2, 3: bits 0-1; b = 6: bits 4-5): plane Q / 4, bits 2 (Q % 4) ...;
 *   1-bit plane (b = 3: bit 2; b = 5: bit 4): bit Q;
 * in that order within a block. Tables (u8, the level + 128): tstride 16: 16 entries per
 * column, entry i = level of code (i mod 2^b) (b <= 4), so a quad's four tables are 64
 * bytes; tstride 0: one 64-entry table for the class, entry i = level of (i mod 2^b)
 * (b <= 6); b = 8 has none (the code is the level). */
#define SPQ_CMPQ_BLK 32
static inline size_t spq_cmpq_panel_bytes(int b, int kp) { return (size_t)kp / SPQ_CMPQ_BLK * 64 * (size_t)b; }
/* The b-bit code of row r (0..15) and column k within one panel. */
unsigned spq_cmpq_code(const uint8_t *panel, int b, int k, int r);
/* Pack row-major codes c[N][kc] (values < 2^b) into the layout of kp >= kc columns (out:
 * ceil(N/16) panels, zeroed first). */
void spq_pack_cmpq(const uint8_t *c, int N, int kc, int b, int kp, uint8_t *out);

/* ggml's block formats, run as GGUF files store them: a weight row of K values (K a
 * multiple of the format's block) is K / blk blocks laid out as ggml lays them out
 * (format/ggml_quants.c decodes them to floats). The activations they multiply: each row of
 * K values quantised per block of qb values (spq_gq_act_block: 32 for the legacy formats,
 * 256 for the K-quants and IQ4_XS, the roles of ggml's Q8_0/Q8_1 and Q8_K) at d = absmax /
 * 127, q = rne(x * (1 / d)) within +-127 (0 where absmax is 0), laid out as float d[K / qb],
 * int16 s[K / 16] (the sum of q over each 16 values), then int8 q[K] at spq_gq_act_q_at.
 * Products (gq_dot), with each weight block's integers q (w = d * q + m, or d * sc * q -
 * dmin * mn over a sub-block):
 *   legacy formats: per block, p = its exact integer product, acc = fmaf(d_w * d_x, (float)p,
 *   acc), then (Q4_1, Q5_1) acc = fmaf(m_w * d_x, (float)sum x, acc), blocks in order from 0;
 *   K formats: per super-block S = sum_j sc_j (q . x)_j and Mn = sum_j mn_j (sum x)_j, exact,
 *   then acc = fmaf(d_w * d_x, (float)S, acc) and, for Q2_K/Q4_K/Q5_K, acc = fmaf(-(dmin_w *
 *   d_x), (float)Mn, acc), super-blocks in order from acc = 0.
 * So every ISA gives the scalar reference's bits. */
enum { SPQ_GQ_Q4_0, SPQ_GQ_Q4_1, SPQ_GQ_Q5_0, SPQ_GQ_Q5_1, SPQ_GQ_Q8_0, SPQ_GQ_IQ4_NL,
       SPQ_GQ_Q2_K, SPQ_GQ_Q3_K, SPQ_GQ_Q4_K, SPQ_GQ_Q5_K, SPQ_GQ_Q6_K, SPQ_GQ_IQ4_XS, SPQ_GQ_N };
/* Values per weight block, bytes per weight block, values per activation block of format g,
 * and the bytes of a weight row of K values. */
int spq_gq_block(int g);
size_t spq_gq_block_bytes(int g);
int spq_gq_act_block(int g);
size_t spq_gq_row_bytes(int g, int K);
static inline int spq_gq_has_min(int g) { return g == SPQ_GQ_Q2_K || g == SPQ_GQ_Q4_K || g == SPQ_GQ_Q5_K; }
/* Where an activation row's int8 codes start, and its bytes (64-byte multiples), for
 * activation blocks of qb values. */
size_t spq_gq_act_q_at(int qb, int K);
size_t spq_gq_act_bytes(int qb, int K);
/* The 8-row layout (spq_gq_r8: Q4_K, Q5_K, Q6_K, IQ4_XS, Q8_0, Q4_0, IQ4_NL), which a
 * linear's rows are repacked into at load (N a multiple of 8, K of 256). Legacy formats: per
 * group of 8 rows and 256 values (8 blocks), the halves d [block][row] (128 bytes), then each
 * block's code vectors, byte 8r + e of vector k holding value 8k + e of row r: Q8_0 4 vectors
 * of w + 128, Q4_0 and IQ4_NL 2 whose low nibbles are vectors 0, 1 and high nibbles 2, 3: the
 * file's size exactly. K formats: per group of 8 rows and super-block, a 64-byte-aligned
 * head (8 halves d, 8 halves dmin, int8 scales [sub][row], Q4_K/Q5_K int8 mins [sub][row])
 * then 16 code vectors of 64 bytes: byte 8r + e of vector k
 * holds, in its low nibble, the low 4 bits of value 8k + e of row r and, in its high nibble,
 * those of value 8(k + 16) + e (IQ4_XS: the level index; Q6_K: the code before - 32); then
 * Q5_K 4 vectors whose byte 8r + e bit t is bit 4 of value 8(8m + t) + e, or Q6_K 8 vectors
 * whose bits 2t.. are bits 4-5 of value 8(4m + t) + e; the vectors of Q5_K and Q6_K in the
 * order the kernels read them (spq_gq_r8_cv, spq_gq_r8_qh), since a stream read out of order
 * within each super-block halves its speed. So one vpdpbusd lane is 4 values of one row,
 * and the 8 rows' sums come out side by side. The products are those of gq_dot, bit for
 * bit. */
int spq_gq_r8(int g);
size_t spq_gq_r8_head(int g);
/* Offsets, from the end of the head, of code vector k (0..15) and bit vector m of format g:
 * Q6_K [codes 4j..4j+3, bits j, bits 4 + j] for j = 0..3; Q5_K [codes 0-3, bits 0, 2, codes
 * 4-7, 8-11, bits 1, 3, codes 12-15]; else the codes in order, then the bits. */
static inline size_t spq_gq_r8_cv(int g, int k)
{
    static const size_t q5[4] = {0, 384, 640, 1024};
    return g == SPQ_GQ_Q6_K ? 384 * (size_t)(k / 4) + 64 * (size_t)(k % 4)
           : g == SPQ_GQ_Q5_K ? q5[k / 4] + 64 * (size_t)(k % 4) : 64 * (size_t)k;
}
static inline size_t spq_gq_r8_qh(int g, int m)
{
    static const size_t q5[4] = {256, 896, 320, 960};
    return g == SPQ_GQ_Q6_K   ? 384 * (size_t)(m % 4) + 256 + 64 * (size_t)(m / 4)
           : g == SPQ_GQ_Q5_K ? q5[m] : 1024 + 64 * (size_t)m;
}
/* Bytes of one super-block of 8 rows, and of one group of 8 rows of K values. */
size_t spq_gq_r8_block(int g);
size_t spq_gq_r8_bytes(int g, int K);
/* Rows 0..7 of format g (ldw bytes apart) into one group (spq_gq_r8_bytes). */
void spq_gq_pack_r8(int g, int K, const uint8_t *w, size_t ldw, uint8_t *out);
void spq_gq_dot_r8_ref(int g, int K, int ng, const uint8_t *w, int M, const uint8_t *xa, size_t ldx, float *y,
                       size_t ldy);
/* The scalar references of gq_quant and gq_dot (ISAs without a faster one use them), and
 * the helpers the ISAs share: an IEEE half at p, the
 * IQ4_NL/IQ4_XS levels, the 6-bit scale and min j of a Q4_K/Q5_K super-block. */
void spq_gq_quant_ref(int qb, int K, const float *x, uint8_t *xa);
void spq_gq_dot_ref(int g, int K, int nr, const uint8_t *w, size_t ldw, int M, const uint8_t *xa, size_t ldx,
                    float *y, size_t ldy);
float spq_gq_half(const uint8_t *p);
extern const int8_t spq_gq_iq4[16];
void spq_gq_scale_min_k4(int j, const uint8_t *q, int *sc, int *m);

/* One ISA's kernels. Ranges [n0, n1) are in output columns and multiples of SPQ_NR
 * except that n1 may be N (the padded tail is computed but not stored). */
typedef struct spq_kernels {
    const char *name;
    /* y[m][n] = scale * sum_k x[m][k] * w[n][k]; x is int8 [M][kp], kp = spq_kpad(K). */
    void (*gemm_q8)(int M, int N, int kp, int n0, int n1, const int8_t *x,
                    const int8_t *w, const int32_t *wsum, float scale, float *y, int ldy);
    /* y[m][n] = sum_k x[m][k] * w[n][k]; w panel-packed f32. */
    void (*gemm_f32)(int M, int N, int K, int n0, int n1, const float *x, const float *w,
                     float *y, int ldy);
    /* Same with IEEE half weights (panel-packed), FP32 accumulation. */
    void (*gemm_f16)(int M, int N, int K, int n0, int n1, const float *x, const uint16_t *w,
                     float *y, int ldy);
    /* Same with bfloat16 weights (panel-packed like F16): widened to FP32 exactly, or, where
     * bf16_rounds_x, with the activations rounded to BF16 (vdpbf16ps), FP32 accumulation. */
    void (*gemm_bf16)(int M, int N, int K, int n0, int n1, const float *x, const uint16_t *w,
                      float *y, int ldy);
    int bf16_rounds_x;
    /* Same with FP8 E4M3 weights (INT8 panel layout), times scale. */
    void (*gemm_e4m3)(int M, int N, int kp, int n0, int n1, const float *x, const uint8_t *w,
                      float scale, float *y, int ldy);
    /* Largest |x[i]| over n floats. */
    float (*absmax)(const float *x, size_t n);
    /* q[i] = rne(clamp(x[i] * inv, -qmax, qmax)) for i < n, zeros up to npad; qmax is a
     * whole number <= 127 (2^(b-1) - 1 for b-bit codes: 127 at 8 bits, 31 at 6). */
    void (*quant_i8)(const float *x, int n, int npad, float inv, float qmax, int8_t *q);
    /* x[i] = exp(x[i]) */
    void (*vexp)(float *x, int n);
    /* sum_j a[j] * b[j] for j < n. */
    float (*dot_f32)(const float *a, const float *b, int n);
    /* Causal attention of nq query heads that share one KV head, over keys t < T:
     * o[h*hd + j] = sum_t softmax_t(scale * sum_d q[h*hd + d] * kt[d*ldk + t]) * v[t*ldv + j]
     * for h < nq, j < hd. Keys are stored transposed (hd rows of ldk >= T floats) so that
     * the scores vectorise over t and every load feeds all nq heads; s: nq * T floats of
     * scratch. */
    void (*attn)(int nq, int hd, int T, float scale, const float *q, const float *kt, int ldk,
                 const float *v, int ldv, float *s, float *o);
    /* The same over a KV cache stored in IEEE half (widened exactly; FP32 arithmetic). */
    void (*attn_h)(int nq, int hd, int T, float scale, const float *q, const uint16_t *kt, int ldk,
                   const uint16_t *v, int ldv, float *s, float *o);
    /* CMPQ integer product over one b-bit class (layout above) of kp columns, for tokens
     * m < M and panels i < np (panel i at codes + i * pstride): every lane of
     * acc[m * lda + 16 i + r] is updated block by block (o < kp / 32, in order) as
     * acc = fmaf(xd[m * ldd + o], (float)A, acc), A = sum over the block's columns c of
     * (tab level of row r's code + 128) * xq[m * ldx + 32 o + c] (exact in int32 and float);
     * xs[m * ldd + o] = sum of those xq (for kernels that multiply signed levels). Every ISA
     * gives the same bits. */
    void (*cmpq_dot)(int b, int kp, int np, const uint8_t *codes, size_t pstride, const uint8_t *tab,
                     int tstride, int M, const int8_t *xq, int ldx, const float *xd, const int32_t *xs,
                     int ldd, float *acc, int lda);
    /* CMPQ input, nb blocks of 32 stored columns: v[i] = x[src[i]] * sc[i], each block to int8
     * at its own scale d = absmax(v) / 127: xq[i] = rne(v[i] * (127 / absmax)) clamped to
     * +-127 (0 when absmax = 0), xd[o] = d, xs[o] = the sum of the block's xq. Every ISA gives
     * the reference's bits for finite x. */
    void (*cmpq_quant)(int nb, const float *x, const int32_t *src, const float *sc, int8_t *xq, float *xd,
                       int32_t *xs);
    /* CMPQ outliers of one 16-row panel, n slots of 32 halves each (the 16 rows' input
     * columns, then their FP16 residuals), for one token or 16: T = 1, s[j] += x[column] *
     * residual (row j; x one input row); T = 16, s[16 j + i] += x[16 column + i] * residual
     * (token i; x the input's columns, 16 tokens each); the slots in turn, each product rounded
     * before it is added (no fused multiply-add: every ISA the same bits). */
    void (*cmpq_outliers)(int n, const uint16_t *slot, const float *x, int T, float *s);
    /* Decode (M = 1) over np <= 4 panels pstride panels apart: the 16 columns of each panel
     * p0 + i * pstride (i < np), exactly as gemm_q8 computes them, into y[column]. A thread
     * of the driver runs panels from four places in a matrix, so that its weights arrive as
     * four long sequential streams. NULL: the driver calls gemm_q8 one panel at a time. */
    void (*gemv_q8)(int N, int kp, int p0, int np, int pstride, const int8_t *x, const int8_t *w,
                    const int32_t *wsum, float scale, float *y);
    /* The same for 2 <= M <= 8 rows (a batch of decode steps; x and y rows kp and ldy
     * apart), so that batched decode reads the same four long streams. NULL: the driver
     * runs such batches in blocks of 64 columns. */
    void (*gemm_q8_lanes)(int M, int N, int kp, int p0, int np, int pstride, const int8_t *x, const int8_t *w,
                          const int32_t *wsum, float scale, float *y, int ldy);
    /* Block formats (above): one activation row of K values for blocks of qb, into xa
     * (spq_gq_act_bytes); and y[m * ldy + r] = weight row r (nr rows of format g, ldw bytes
     * apart) times activation row m (M rows ldx bytes apart), for r < nr, m < M. */
    void (*gq_quant)(int qb, int K, const float *x, uint8_t *xa);
    void (*gq_dot)(int g, int K, int nr, const uint8_t *w, size_t ldw, int M, const uint8_t *xa, size_t ldx,
                   float *y, size_t ldy);
    /* The same over ng groups of 8 rows in the 8-row layout (spq_gq_r8_bytes apart): y[m * ldy
     * + 8 i + r] for row r of group i. */
    void (*gq_dot_r8)(int g, int K, int ng, const uint8_t *w, int M, const uint8_t *xa, size_t ldx, float *y,
                      size_t ldy);
} spq_kernels;

/* The scalar references of cmpq_quant and cmpq_outliers (ISAs without a faster one use them). */
void spq_cmpq_quant_ref(int nb, const float *x, const int32_t *src, const float *sc, int8_t *xq, float *xd,
                        int32_t *xs);
void spq_cmpq_outliers_ref(int n, const uint16_t *slot, const float *x, int T, float *s);

/* The active kernel table (chosen once at start-up; SPIKEQ_ISA overrides). */
const spq_kernels *spq_kern(void);
/* Select a table by name ("scalar", "avx2", "avxvnni", "avx512", "avx512bf16", "neon", "neonplain"); 0 on success,
 * -1 if unknown or unsupported by this CPU. */
int spq_kern_select(const char *name);
/* Names of the tables this CPU supports, best last; returns the count. */
int spq_kern_available(const char **names, int max);
/* A table by name (NULL when unsupported here). */
const spq_kernels *spq_kern_get(const char *name);

/* Threaded drivers: output columns in blocks of 64 (INT8 decode: items of 4 panels, one from
 * each quarter of the matrix, see gemv_q8) through a team's work loop (team.h): each thread
 * runs a contiguous range of items, then takes items from the back of the others' ranges.
 * These run one call on all OpenMP threads; spq_gemm_team runs inside a team that spans
 * several steps. */
void spq_gemm_q8(const spq_kernels *k, int M, int N, int K, const int8_t *x, const int8_t *w,
                 const int32_t *wsum, float scale, float *y, int ldy);
void spq_gemm_f32(const spq_kernels *k, int M, int N, int K, const float *x, const float *w,
                  float *y, int ldy);
/* One INT8 GEMM's weights and output, for several GEMMs on one input in one parallel region. */
#define SPQ_GEMM_MAXN 4
typedef struct {
    int N;
    const void *w;        /* packed weights (int8 panels for spq_gemm_q8_n) */
    const int32_t *wsum;  /* per-column weight sums (INT8 only) */
    float scale, *y;
    int ldy;
} spq_gemm_out;
/* spq_gemm_q8 for n weight matrices sharing the quantised input x (q, k, v; gate, up): one
 * fork/join and one load balance per SPQ_GEMM_MAXN of them instead of one per matrix. */
void spq_gemm_q8_n(const spq_kernels *k, int M, int K, const int8_t *x, const spq_gemm_out *outs, int n);
void spq_gemm_f16(const spq_kernels *k, int M, int N, int K, const float *x, const uint16_t *w,
                  float *y, int ldy);
void spq_gemm_bf16(const spq_kernels *k, int M, int N, int K, const float *x, const uint16_t *w,
                   float *y, int ldy);
void spq_gemm_e4m3(const spq_kernels *k, int M, int N, int K, const float *x, const uint8_t *w,
                   float scale, float *y, int ldy);
enum { SPQ_GEMM_Q8, SPQ_GEMM_F32, SPQ_GEMM_F16, SPQ_GEMM_E4M3, SPQ_GEMM_BF16 }; /* weight formats */
/* outs[i].y = outs[i].scale * x W_i^T (scale unused for F32/F16) for n matrices of one kind
 * on one input x (int8 [M][kpad(K)] for Q8, float [M][K] for F32/F16, [M][kpad(K)] for
 * E4M3). Every thread of t's team calls it; it returns after a team barrier. */
void spq_gemm_team(const spq_thr *t, const spq_kernels *k, int kind, int M, int K, const void *x,
                   const spq_gemm_out *outs, int n);
/* Hint (spq_team_hint) the weights this thread reads first in the spq_gemm_team call
 * with these arguments: from its first item to the end of its share in that matrix (in
 * each of the four lanes for INT8 decode). */
void spq_gemm_team_hint(const spq_thr *t, int kind, int M, int K, const spq_gemm_out *outs, int n);

/* Per-ISA tables (NULL-returning where not compiled in). */
const spq_kernels *spq_kernels_scalar(void);
const spq_kernels *spq_kernels_avx2(void);
const spq_kernels *spq_kernels_avxvnni(void);
const spq_kernels *spq_kernels_avx512(void);
const spq_kernels *spq_kernels_avx512bf16(void); /* avx512 with BF16 weights through vdpbf16ps */
const spq_kernels *spq_kernels_neon(void);      /* sdot (armv8.2-a+dotprod) */
const spq_kernels *spq_kernels_neonplain(void); /* any ARMv8 NEON */

/* ---- number formats (kernels/numfmt.c) ---- */
float spq_f16_to_f32(uint16_t h);
uint16_t spq_f32_to_f16(float f); /* round to nearest even, saturating to inf */
float spq_bf16_to_f32(uint16_t h);
uint16_t spq_f32_to_bf16(float f); /* round to nearest even */
float spq_e4m3_to_f32(uint8_t c); /* OCP FP8 E4M3 (max 448, 0x7f/0xff NaN) */
uint8_t spq_f32_to_e4m3(float f); /* RNE, saturating to +-448 */
float spq_e5m2_to_f32(uint8_t c);
uint8_t spq_f32_to_e5m2(float f); /* RNE, saturating to +-57344 */

#endif
