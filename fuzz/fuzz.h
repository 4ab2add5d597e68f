/* fuzz.h — helpers shared by the libFuzzer targets: inputs reach the loaders as files
 * (every reader takes a path and mmaps it), written to memfd files so no disk is touched. */
#ifndef SPQ_FUZZ_H
#define SPQ_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "format/ckpt.h"
#include "runtime/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t n);

/* Replace the contents of the memfd *fd (created on first use) with d[0..n) and write its
 * /proc path into path. */
static inline void fuzz_file(int *fd, const char *name, const uint8_t *d, size_t n, char *path, size_t cap)
{
    if (*fd < 0) *fd = memfd_create(name, 0);
    if (*fd < 0) abort();
    if (ftruncate(*fd, 0) || (n && pwrite(*fd, d, n, 0) != (ssize_t)n)) abort();
    snprintf(path, cap, "/proc/self/fd/%d", *fd);
}

/* Write d[0..n) to dir/name (for readers that take a folder of files). */
static inline void fuzz_put(const char *dir, const char *name, const uint8_t *d, size_t n)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(d, 1, n, f) != n) abort();
    fclose(f);
}

/* A folder of its own under /dev/shm (or /tmp) into dir, made once per process. */
static inline void fuzz_dir(char *dir, size_t cap, const char *tag)
{
    if (dir[0]) return;
    snprintf(dir, cap, "/dev/shm/spq-fuzz-%s-XXXXXX", tag);
    if (!mkdtemp(dir)) { snprintf(dir, cap, "/tmp/spq-fuzz-%s-XXXXXX", tag); if (!mkdtemp(dir)) abort(); }
}

/* What a user would do next with a checkpoint that opened: tokenize, and run one token
 * through a small context (bounded sizes: the config came from the fuzzer). */
static inline void fuzz_use(spq_ckpt *c)
{
    if (c->tok.n_vocab) {
        int ids[64];
        char piece[2048];
        long k = spq_tok_encode(&c->tok, "hello world 123", 15, 1, 1, ids, 64);
        for (long i = 0; i < k && i < 64; i++) spq_tok_piece(&c->tok, i ? ids[i - 1] : c->tok.bos_id, ids[i], piece, sizeof piece);
    }
    spq_err e;
    if (c->n == 0 || spq_ckpt_validate(c, &e)) return;
    const spq_config *p = &c->cfg;
    if ((size_t)p->dim * (size_t)p->hidden_dim > (1u << 22) || (size_t)p->vocab_size * (size_t)p->dim > (1u << 22)) return;
    spq_model m;
    if (spq_model_init(&m, c, 4, &e)) return;
    spq_state s;
    if (!spq_state_init(&s, &m, 2)) {
        int tok[2] = {p->bos_id >= 0 && p->bos_id < p->vocab_size ? p->bos_id : 0, p->vocab_size - 1};
        spq_forward(&m, &s, tok, 2, 0, 1);
        spq_state_free(&s);
    }
    spq_model_free(&m);
}

#endif
