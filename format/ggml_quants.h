/* ggml_quants.h — ggml's quantized block formats, as GGUF files store them. */
#ifndef SPQ_GGML_QUANTS_H
#define SPQ_GGML_QUANTS_H

#include <stddef.h>
#include <stdint.h>

/* GGML type ids (ggml.h) */
enum {
    GGML_Q4_0 = 2, GGML_Q4_1 = 3, GGML_Q5_0 = 6, GGML_Q5_1 = 7, GGML_Q8_0 = 8, GGML_Q2_K = 10, GGML_Q3_K = 11,
    GGML_Q4_K = 12, GGML_Q5_K = 13, GGML_Q6_K = 14, GGML_IQ4_NL = 20, GGML_IQ4_XS = 23
};

/* Weights and bytes per block of a quantized type; -1 for a type not listed above. */
int spq_ggml_block(int type, int *elems, size_t *bytes);
/* The kernels' block format (SPQ_GQ_*, kernels/kernels.h) of a type; -1 for a type not listed above. */
int spq_ggml_gq(int type);
/* "Q4_K", "F16", ... ("?" for an unknown id). */
const char *spq_ggml_type_name(int type);
/* n weights (a multiple of the block) of type from src into dst; -1 for an unknown type. */
int spq_ggml_dequant(int type, const uint8_t *src, float *dst, int64_t n);
/* n floats (a multiple of 32) into blocks of Q4_0, Q4_1, Q5_0, Q5_1 or Q8_0 exactly as ggml's
 * reference quantiser writes them (llama-quantize without an importance matrix); -1 for
 * another type. */
int spq_ggml_quant(int type, const float *src, uint8_t *dst, int64_t n);

#endif
