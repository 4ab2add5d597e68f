/* cli.h — shared helpers of the spikeq subcommands (tools/ is where exit() lives). */
#ifndef SPQ_CLI_H
#define SPQ_CLI_H

#include "base/clock.h"
#include "format/ckpt.h"
#include "runtime/model.h"

/* Print "spikeq: MSG" on stderr and exit 1. */
void die(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
/* Print "spikeq: e->msg" and exit 1. */
void die_err(const spq_err *e) __attribute__((noreturn));
/* Parse an integer flag value in [lo, hi] or die naming the flag. */
long arg_int(const char *flag, const char *v, long lo, long hi);
/* Parse a float flag value or die. */
double arg_float(const char *flag, const char *v);
/* The shapes of real models, for random-weight checkpoints (synth, bench --synthetic). */
typedef struct {
    const char *name;
    int dim, hidden, layers, heads, kv, vocab, ctx;
    float theta;
    int rope_llama3; /* LLaMA-3.1 frequency scaling: factor 8, low 1, high 4, original context 8192 */
} model_shape;
/* The shape called name, or die naming flag and the known shapes. */
const model_shape *find_shape(const char *flag, const char *name);
/* Open a model file/dir (any format) or die. */
void open_ckpt(const char *path, spq_ckpt *c);
/* Wait for the check of the model's checksums (running since open_ckpt) and die naming a
 * corrupt tensor; then free it. What a command printed from a corrupt file is disowned by
 * the error and a non-zero exit. */
void close_ckpt(spq_ckpt *c);
/* Die, saying what it needs and what is available, when a state of these dimensions (see
 * spq_state_init_seq) and the model's weights need more memory than the machine has;
 * with verbose, print the figures to stderr. */
void check_mem(const char *path, const spq_model *m, int max_batch, int n_seq, int ctx, int kv_type, int verbose);
/* --kv f16|f32 -> SPQ_F16 / SPQ_F32, or die. */
int kv_arg(const char *v);
/* Die unless every tensor of c matches its checksum: before writing anything made from c. */
void verify_ckpt(const spq_ckpt *c);
/* Set OpenMP threads (<= 0: all cores; more than the cores: the cores, with a warning);
 * returns the count in effect. */
int set_threads(int n);
/* Read a whole file (NUL-terminated) or die. */
char *read_text(const char *path, size_t *n);
/* Token ids in text separated by spaces, commas or newlines, each checked against
 * [0, vocab); dies naming `what` on a bad entry. Returns a malloc'd array, count in *n. */
int *parse_ids(const char *text, const char *what, int vocab, long *n);
/* Mean of n values from their sum s1 and sum of squares s2, and its standard error (sample
 * standard deviation / sqrt(n), as lm-evaluation-harness and llama.cpp report it). */
void mean_se(double s1, double s2, long n, double *mean, double *se);
/* qsort's comparison of two doubles, ascending. */
int cmp_double(const void *a, const void *b);
/* Token ids of text[0..len) (BOS first when bos, control pieces parsed when special) in a
 * malloc'd array, their count in *n; dies when memory runs out. */
int *encode_text(const spq_tokenizer *t, const char *text, size_t len, int bos, int special, long *n);

int cmd_info(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_profile(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_serve(int argc, char **argv);

#endif
