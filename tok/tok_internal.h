/* tok_internal.h — what tokenizer.c (SentencePiece), bpe.c (byte-level BPE) and tok_json.c
 * share; the shared helpers live in tok_common.c (not a public API: use tokenizer.h). */
#ifndef SPQ_TOK_INTERNAL_H
#define SPQ_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tok/vocab.h"

/* A candidate merge of the symbols starting at `left` covering `size` bytes: the larger key
 * pops first, ties leftmost (SentencePiece: key = piece score; byte-level BPE: key = -rank,
 * with the rank kept in id). */
typedef struct { double key; int left, size, id; } spq_bigram;
typedef struct { spq_bigram *a; long n, cap; } spq_heap;
/* Byte order of two pieces (memcmp, then the shorter first): the order of t->sorted. */
int spq_piece_cmp(const char *a, int la, const char *b, int lb);

/* Push b; -1 on OOM. */
int spq_heap_push(spq_heap *h, spq_bigram b);
/* Pop the first candidate (h->n > 0). */
spq_bigram spq_heap_pop(spq_heap *h);

/* Whole file, NUL-terminated, length in *n; NULL with *opened = 0 when it cannot be opened,
 * 1 when it cannot be read (or is empty or over 1 GiB). */
char *spq_tok_read_file(const char *path, size_t *n, int *opened);

/* GPT-2's pre-tokenizer regex (also ByteLevel's in tokenizer.json). */
extern const char spq_re_gpt2[];

/* Hash the merges and compile the pre-tokenizer of a BPE tokenizer; -1 on failure. */
int spq_bpe_finish(spq_tokenizer *t);
/* Free what spq_bpe_finish and the BPE fields hold. */
void spq_bpe_free(spq_tokenizer *t);
/* Encode plain text (no special tokens) appending to ids[n..]; returns the new count (may
 * exceed max), -1 on OOM. prefix: add a leading space unless the text starts with one. */
/* The words the pre-tokenizer cuts text into: up to max of them as byte offsets and lengths;
 * returns how many there are (-1: out of memory). */
long spq_bpe_pretokenize(const spq_tokenizer *t, const char *text, size_t len, size_t *off, size_t *n, long max);
/* The '\n'-separated regexes of a tokenizer.ggml.pre name (NULL: unknown). */
const char *spq_bpe_pre_regexes(const char *name);
/* The tokenizer.ggml.pre names spikeq knows, space-separated. */
const char *spq_bpe_pre_names(void);
long spq_bpe_encode(const spq_tokenizer *t, const char *text, size_t len, int prefix, int *ids, long n, long max);
/* Bytes of a normal piece: the byte-to-unicode map undone; returns the length written. */
int spq_bpe_piece(const spq_tokenizer *t, int id, char *buf, int cap);
/* Size of the BPE part of the serialised tokenizer. */
size_t spq_bpe_blob_size(const spq_tokenizer *t);
/* Write the BPE part (spq_bpe_blob_size bytes) at p. */
void spq_bpe_blob_write(const spq_tokenizer *t, uint8_t *p);
/* Read the BPE part from [p, end); -1 if malformed. */
int spq_bpe_blob_read(spq_tokenizer *t, const uint8_t *p, const uint8_t *end);
/* Codepoint GPT-2's byte-to-unicode map gives byte b. */
int spq_bpe_byte_cp(int b);

#endif /* SPQ_TOK_INTERNAL_H */
