/* ckpt.h — a checkpoint in memory: model config, tokenizer, precision plan and named
 * tensors, whatever file it came from (.spq, HF directory, GGUF, llama2.c).
 *
 * Canonical tensor names and layouts are Hugging Face's (model.layers.N.self_attn.q_proj
 * .weight, row-major [out][in]); q/k rows use HF's "rotate-half" RoPE order, so importers
 * of interleaved-RoPE files (llama2.c, GGUF) un-permute them. */
#ifndef SPQ_CKPT_H
#define SPQ_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "tok/tokenizer.h"

enum { SPQ_F32 = 0, SPQ_F16 = 1, SPQ_BF16 = 2, SPQ_I8 = 3, SPQ_E4M3 = 4, SPQ_E5M2 = 5, SPQ_CMPQ = 6, SPQ_GGML = 7, SPQ_NDTYPES };
/* SPQ_CMPQ: a weight-only mixed-precision blob (format/cmpq_blob.h) whose size follows from
 * its header, not from shape x element size (spq_dtype_size gives 0).
 * SPQ_GGML: rows of one of ggml's block formats as a GGUF stores them (spq_tensor.gtype,
 * format/ggml_quants.h), run as they are: spq_tensor_row_bytes per row. */

typedef struct {
    int dim, hidden_dim, n_layers, n_heads, n_kv_heads, head_dim, vocab_size, max_seq;
    int tied;           /* lm_head shares model.embed_tokens.weight */
    int bos_id, eos_id;
    int rope_type;      /* 0: default, 1: llama3 frequency scaling */
    int rope_orig_ctx;  /* llama3: original_max_position_embeddings */
    float norm_eps, rope_theta;
    float rope_factor, rope_low_freq, rope_high_freq; /* llama3 scaling parameters */
} spq_config;

typedef struct {
    char name[96];
    int dtype, ndim;
    int64_t shape[4];   /* shape[0] = rows (out), shape[1] = cols (in) */
    float scale;        /* I8/FP8: real value = code * scale; 1 otherwise */
    float act_scale;    /* I8 linear: static activation scale; 0 = dynamic */
    int act_fmt;        /* fallback linears: activation format (SPQ_F32, SPQ_F16, SPQ_E4M3,
                         * SPQ_E5M2 unscaled) */
    int act_bits;       /* I8 linear: activation codes of 4..8 bits (0 = 8), +-(2^(b-1) - 1) */
    int act_token;      /* I8 linear with dynamic scales: one scale per token (row), not per tensor */
    int layout;         /* SPQ_ROWS, or SPQ_PANELS: a linear weight already in the kernels'
                         * panel layout (spq_panel_bytes), used in place by the model */
    const void *data;
    size_t nbytes;
    void *owned;        /* freed with the checkpoint when non-NULL */
    uint64_t hash;      /* .spq: the data's checksum as stored (checked by spq_ckpt_verify) */
    int gtype;          /* SPQ_GGML: the ggml type id of its blocks (GGML_Q4_K, ...) */
} spq_tensor;

enum { SPQ_ROWS = 0, SPQ_PANELS = 1 };

/* The largest code of a symmetric b-bit INT8 grid, 2^(b-1) - 1 (b = 0 means 8: 127). */
static inline float spq_code_max(int bits) { return (float)((1 << ((bits ? bits : 8) - 1)) - 1); }

struct spq_verifier;

typedef struct {
    spq_config cfg;
    spq_tokenizer tok;  /* n_vocab == 0 when the file had none */
    char *plan_json;    /* the precision plan and profile behind it (NULL if none) */
    spq_tensor *t;
    int n, cap;
    void *maps[64];     /* mmapped files backing tensor data */
    size_t map_sizes[64];
    int map_fds[64];    /* kept open: spq_ckpt_check compares the files' sizes with the maps */
    int n_maps;
    struct spq_verifier *verify; /* .spq: the background check of the tensor checksums */
    char path[1024];
} spq_ckpt;

/* Size in bytes of one element of dtype (0 if unknown). */
size_t spq_dtype_size(int dtype);
/* Printable name of a dtype ("f32", "i8", ...). */
const char *spq_dtype_name(int dtype);
/* Append a tensor (copying t); returns it or NULL when out of memory. */
spq_tensor *spq_ckpt_add(spq_ckpt *c, const spq_tensor *t);
/* The tensor called name, or NULL. */
spq_tensor *spq_ckpt_find(const spq_ckpt *c, const char *name);
/* The per-output-channel scales of INT8 weight tensor `weight` (its companion F32 tensor
 * "WEIGHT_scale", see spq_io.c), or NULL when it has one scale. */
const spq_tensor *spq_ckpt_channel_scales(const spq_ckpt *c, const char *weight);
/* Remember an mmap of file descriptor fd (now owned by c) to release with the checkpoint;
 * -1 when the table is full. */
int spq_ckpt_add_map(spq_ckpt *c, void *p, size_t n, int fd);
/* -1 (naming the file) when a mapped file no longer has the size it had when mapped: reading
 * its tensors would fault, or when the background check has found a tensor whose data does
 * not match its checksum. Cheap (one fstat per file): called between turns and chunks. */
int spq_ckpt_check(const spq_ckpt *c, spq_err *e);
/* Wait for the check of every tensor's checksum (started by spq_read); 0, or -1 naming the
 * first corrupt tensor. 0 at once for checkpoints without stored checksums. */
int spq_ckpt_verify(const spq_ckpt *c, spq_err *e);
/* Release everything the checkpoint owns. */
void spq_ckpt_free(spq_ckpt *c);
/* Check names, shapes and dtypes against cfg; 0 or -1 with e set. */
int spq_ckpt_validate(const spq_ckpt *c, spq_err *e);
/* Drop t's pages from this process's memory when it lies in a mapped file (a read-only map:
 * a later read faults them in again from the page cache or the file). For a tensor that has
 * been copied or converted, so that the copy and the file's pages are not both resident. */
void spq_ckpt_release(const spq_ckpt *c, const spq_tensor *t);
/* Is name a weight the model applies as a linear (a projection, an untied lm_head), which it
 * never reads by rows? */
int spq_is_linear_name(const char *name);
/* Bytes of an N x K linear weight of dtype in the kernels' panel layout: INT8 panels then
 * the 64-byte-aligned column sums (int32, N rounded up to 64), FP8 panels, F16/BF16/F32
 * panels; 0 for a dtype the kernels read otherwise. */
size_t spq_panel_bytes(int dtype, int64_t N, int64_t K);
/* Write row-major 2-D t into out (spq_panel_bytes) in the panel layout. */
void spq_tensor_pack(const spq_tensor *t, void *out);
/* Fill the tensor's data as FP32 (any stored dtype and layout); out has numel floats; -1
 * when out of memory (a panel-packed tensor is unpacked through a buffer). */
int spq_tensor_to_f32(const spq_tensor *t, float *out);
/* Number of elements of t. */
size_t spq_tensor_numel(const spq_tensor *t);
/* Bytes of one row (shape[ndim - 1] values) of a tensor stored by rows; 0 for CMPQ, and for
 * ggml blocks of an unknown type or rows that are not whole blocks. */
size_t spq_tensor_row_bytes(const spq_tensor *t);
/* The tensor's type as a file would name it: "Q4_K" for ggml blocks, else spq_dtype_name. */
const char *spq_tensor_type_name(const spq_tensor *t);

/* Read a .spq file (mmapped). Version 1 files have their tensor checksums verified here;
 * version 2 files have them checked by a background thread (spq_ckpt_check reports a
 * mismatch, spq_ckpt_verify waits for it). */
int spq_read(const char *path, spq_ckpt *c, spq_err *e);
/* Write c to path atomically (temp file in the same folder, fsync, rename), linear weights
 * in the panel layout (spq_panel_bytes), with XXH3 checksums. */
int spq_write(const char *path, const spq_ckpt *c, spq_err *e);
/* 64-bit checksum of n bytes (4 lanes of multiply-xor): version 1 files. */
uint64_t spq_hash64(const void *p, size_t n);
/* XXH3-64 of n bytes: version 2 files. */
uint64_t spq_hash_xxh3(const void *p, size_t n);
/* Start the background check of every tensor's hash against XXH3 of its data (spq_read); with
 * SPIKEQ_VERIFY=sync in the environment, or where no thread can be made, check them here. */
int spq_ckpt_verify_start(spq_ckpt *c);



/* Reorder q/k rows from interleaved RoPE pairs (llama2.c, GGUF) to HF's rotate-half order:
 * within each head, row 2i+j moves to j*hd/2+i. rowbytes = bytes per row. */
int spq_unpermute_rope(void *rows, int n_heads, int head_dim, size_t rowbytes);
/* A number read from a file as an int: out of int range or NaN gives INT_MIN, which every
 * later check refuses, instead of an undefined conversion. */
int spq_file_int(double x);
/* ... and as a float: out of float range or NaN gives NaN, which the checks refuse. */
float spq_file_float(double x);
#endif
