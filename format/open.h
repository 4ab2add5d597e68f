/* open.h — the importers (HF safetensors, GGUF, llama2.c) and opening a model of any kind:
 * each fills an spq_ckpt (format/ckpt.h) from its format; the runtime knows none of them. */
#ifndef SPQ_OPEN_H
#define SPQ_OPEN_H

#include "format/ckpt.h"

/* Open any supported model: .spq, HF directory (or its config.json), GGUF, llama2.c .bin;
 * or a tokenizer.json / tokenizer.model alone (a vocabulary-only checkpoint, c->n == 0). */
int spq_open(const char *path, spq_ckpt *c, spq_err *e);

/* The importers. Each returns 0 or -1 with e set. */
int spq_import_llama2c(const char *path, spq_ckpt *c, spq_err *e);
int spq_import_hf(const char *dir, spq_ckpt *c, spq_err *e);
int spq_import_gguf(const char *path, spq_ckpt *c, spq_err *e);

#endif
