/* model.h — a model ready to run: packed linears, norms, RoPE tables; and the forward pass. */
#ifndef SPQ_MODEL_H
#define SPQ_MODEL_H

#include "kernels/team.h"
#include "format/ckpt.h"
#include "runtime/linear.h"

enum { SPQ_Q, SPQ_K, SPQ_V, SPQ_O, SPQ_GATE, SPQ_UP, SPQ_DOWN, SPQ_NPROJ };
extern const char *const spq_proj_names[SPQ_NPROJ]; /* "q_proj", ... */

typedef struct {
    spq_linear p[SPQ_NPROJ];
    float *attn_norm, *ffn_norm;
} spq_layer;

typedef struct {
    spq_config cfg;
    const spq_tensor *embed;
    spq_layer *layers;
    float *final_norm;
    spq_linear head;
    float *rope_cos, *rope_sin; /* [ctx][head_dim/2] */
    int ctx;
    size_t linear_bytes;        /* weight bytes streamed per decoded token (all linears + head) */
    size_t mapped_bytes;        /* weights read where the checkpoint holds them (panels, CMPQ, embeddings) */
    size_t packed_bytes;        /* weights copied into panels at load (or by an importer) */
} spq_model;

/* What running a model takes, in bytes, against what the machine has. */
typedef struct {
    size_t weights, kv, scratch;
    long long avail; /* MemAvailable of /proc/meminfo (SPIKEQ_MEM_AVAILABLE overrides it); -1: unknown */
} spq_mem;

/* The inputs the forward pass shows an observer (spq_state.observe; the profiler,
 * quant/profiler.h): q/k/v share one input and gate/up one; RESID is the residual stream
 * after each block. */
enum { SPQ_SITE_QKV, SPQ_SITE_O, SPQ_SITE_GATEUP, SPQ_SITE_DOWN, SPQ_SITE_RESID, SPQ_NSITES };
/* Called on thread 0 with site `site`'s input x[M][K] in layer `layer`, once every thread
 * has written it; tokens[M] are the batch's tokens, pos its first position. */
typedef void (*spq_observe_fn)(void *ctx, int layer, int site, const float *x, int M, int K, const int *tokens, int pos);

/* The steps of one forward pass, as timed when spq_state.step_sec is set. */
enum { SPQ_STEP_ATTN_NORM, SPQ_STEP_QKV, SPQ_STEP_ROPE, SPQ_STEP_ATTN, SPQ_STEP_O, SPQ_STEP_FFN_NORM,
       SPQ_STEP_GATE_UP, SPQ_STEP_SWIGLU, SPQ_STEP_DOWN, SPQ_STEP_HEAD, SPQ_NSTEPS };
extern const char *const spq_step_names[SPQ_NSTEPS]; /* "attn_norm", "qkv", ... */

/* A thread that waits at a barrier fetches the first weights of its share of the next
 * GEMM: at K = 2048 two decode items (64 KiB in each of the four lanes) or two 64-column
 * blocks, a quarter of a Zen 5 core's 1 MiB L2. It pays with many threads, where more of
 * them wait at each barrier (`bench --prefetch 0,256`; docs/benchmarks.md, Findings). */
#define SPQ_PREFETCH ((size_t)256 << 10)

/* Activations and the KV caches of n_seq sequences for up to max_batch tokens at once and
 * ctx positions each. */
typedef struct {
    int max_batch, ctx, n_threads, n_seq;
    size_t prefetch;          /* bytes of its next weights a waiting thread fetches (SPQ_PREFETCH; 0: none) */
    const struct spq_kernels *kern; /* the kernel table (NULL: spq_kern(), the best the CPU has) */
    float *x, *xb, *xb2, *q, *hb, *hb2, *att, *logits, *xf;
    /* per sequence: keys [layer][kv_dim][ctx] (transposed for the attention kernel), values
     * [layer][ctx][kv_dim], in FP32 or IEEE half (kv_type SPQ_F32 / SPQ_F16); sequence s's
     * start at element s * seq_elems */
    int kv_type;
    void *kcache, *vcache;
    size_t seq_elems;
    int8_t *xq;
    /* the batch being run: each row's position and sequence, its tensor (spq_rows), the rows
     * whose logits are wanted (n_out of them, in row order) and their tensors */
    int *rpos, *rseq, *rid, *out, *out_id, n_out;
    spq_rows rows, out_rows;
    float *rmax, *tmax;
    spq_observe_fn observe;   /* when set, every site's input is shown to it (with observe_ctx) */
    void *observe_ctx;
    const int *tokens;        /* the batch being run and its first position (for observe) */
    int pos;
    double *step_sec;         /* when set: wall seconds of each step (SPQ_NSTEPS), added over calls */
} spq_state;

/* Build a runnable model from a validated checkpoint; ctx <= 0 means cfg.max_seq.
 * The checkpoint must outlive the model (embeddings are read from it). */
int spq_model_init(spq_model *m, const spq_ckpt *c, int ctx, spq_err *e);
void spq_model_free(spq_model *m);
/* Allocate state for batches of up to max_batch tokens of one sequence, its KV cache in FP32
 * (the reference path: tests against transformers, the profiler). */
int spq_state_init(spq_state *s, const spq_model *m, int max_batch);
/* The same for n_seq sequences, each with its own KV cache of ctx positions (at most the
 * model's; <= 0: the model's) in kv_type (SPQ_F16: half the memory and the attention reads,
 * keys and values rounded to IEEE half; SPQ_F32), for forward passes of up to n_threads
 * threads (<= 0: OpenMP's current count). */
int spq_state_init_seq(spq_state *s, const spq_model *m, int max_batch, int n_seq, int ctx, int n_threads, int kv_type);
void spq_state_free(spq_state *s);
/* What a state of these dimensions (as spq_state_init_seq takes them) and the model's weights
 * need; -1 with both figures and what to lower when that is more than the machine has
 * available. Call it before spq_state_init_seq: an allocation past the memory gets the process
 * killed, not an error. */
int spq_state_check(const char *path, const spq_model *m, int max_batch, int n_seq, int ctx, int n_threads, int kv_type,
                    spq_mem *need, spq_err *e);
/* MemAvailable in bytes (SPIKEQ_MEM_AVAILABLE, when set, instead), or -1. */
long long spq_mem_available(void);

/* Run M <= max_batch tokens at positions pos..pos+M-1 (earlier positions must be in
 * the cache). Logits of every row go to s->logits[M][vocab] when all_logits, else only
 * the last row's to s->logits[0..vocab). Returns 0, or -1 if pos+M exceeds ctx. */
int spq_forward(const spq_model *m, spq_state *s, const int *tokens, int M, int pos, int all_logits);
/* Copy the first n positions of sequence src's KV cache into sequence dst's. */
void spq_state_copy_seq(spq_state *s, const spq_model *m, int src, int dst, int n);
/* Run M <= max_batch tokens of any of the state's sequences: row i is token tokens[i] of
 * sequence seq[i] at position pos[i] (that sequence's earlier positions must be in its
 * cache, and no two rows may share a sequence and position). Each sequence's rows form its
 * own activation tensors, so its results are those of running it alone. The logits of the
 * rows with want[i] go to s->logits in row order (want NULL: every row). Returns how many
 * rows of logits were written, or -1 if a row is out of range. */
int spq_forward_batch(const spq_model *m, spq_state *s, const int *tokens, const int *pos, const int *seq,
                      const signed char *want, int M);

#endif
