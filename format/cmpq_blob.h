/* cmpq_blob.h — the CMPQ tensor format: weight-only tensors (channel-wise mixed precision, non-uniform levels, FP16
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
#ifndef SPQ_CMPQ_BLOB_H
#define SPQ_CMPQ_BLOB_H

#include <stddef.h>
#include <stdint.h>

enum { SPQ_CMPQ_COLUMN = 0, SPQ_CMPQ_SHARED = 1 };
#define SPQ_CMPQ_NCLS 6
extern const int spq_cmpq_bits[SPQ_CMPQ_NCLS]; /* 2, 3, 4, 5, 6, 8 */
/* Where class c's (c < 5) shared level set starts among the blob's levels. */
extern const int spq_cmpq_lvoff[SPQ_CMPQ_NCLS - 1];
/* The class (0..5) of input channel k in the blob's class map. */
static inline int spq_cmpq_class_of(const uint8_t *map, uint32_t k) { return map[k / 2] >> (4 * (k % 2)) & 15; }
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
/* perm[j] = the input channel of stored column j (the classes in turn, each in channel
 * order) of a blob with header h and layout L. */
void spq_cmpq_perm(const void *blob, const spq_cmpq_hdr *h, const spq_cmpq_layout *L, int32_t *perm);
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

#endif
