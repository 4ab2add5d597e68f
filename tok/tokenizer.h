/* tokenizer.h — two tokenizer families behind one struct:
 * SentencePiece-style BPE (LLaMA-2, Mistral, TinyLlama, llama2.c) with byte fallback, loaded
 * from tokenizer.model, llama2.c tokenizer.bin, GGUF metadata or a .spq file; and byte-level
 * BPE (GPT-2, LLaMA-3, SmolLM) with rank-ordered merges and a regex pre-tokenizer, loaded from
 * HF tokenizer.json, GGUF metadata or a .spq file. */
#ifndef SPQ_TOKENIZER_H
#define SPQ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "base/error.h"
#include "tok/vocab.h"

/* Load a SentencePiece tokenizer.model (protobuf). */
int spq_tok_load_spm(const char *path, spq_tokenizer *t, spq_err *e);
/* Load a llama2.c tokenizer.bin holding n_vocab pieces. */
int spq_tok_load_llama2c(const char *path, int n_vocab, spq_tokenizer *t, spq_err *e);
/* Build from parallel arrays (GGUF); copies everything. */
int spq_tok_build(spq_tokenizer *t, int n, const char *const *pieces, const int *lens,
                  const float *scores, const uint8_t *types, int bos, int eos, int unk, spq_err *e);
/* Load a HF tokenizer.json (byte-level BPE: GPT-2, LLaMA-3, SmolLM pre-tokenizers). */
int spq_tok_load_hf_json(const char *path, spq_tokenizer *t, spq_err *e);
/* Turn a built tokenizer into byte-level BPE: pre is a name (GGUF tokenizer.ggml.pre, e.g.
 * "gpt-2", "llama-bpe", "smollm") or, with a leading '^', '\n'-separated regexes; n merges
 * "left right" (GGUF / tokenizer.json string form, lens[i] bytes each); path names errors. */
int spq_tok_make_bpe(spq_tokenizer *t, const char *pre, int n, const char *const *merges, const int *lens,
                     const char *path, spq_err *e);
/* Finish a tokenizer whose arrays are filled: index pieces, find byte tokens, and for
 * byte-level BPE hash the merges and compile the pre-tokenizer; -1 on failure. */
int spq_tok_finish(spq_tokenizer *t);
/* Release memory. */
void spq_tok_free(spq_tokenizer *t);

/* Serialise into a malloc'd blob (for .spq); returns its size (0 on OOM). */
size_t spq_tok_serialize(const spq_tokenizer *t, uint8_t **out);
/* Parse a blob written by spq_tok_serialize; -1 if malformed. */
int spq_tok_deserialize(const uint8_t *p, size_t n, spq_tokenizer *t);

/* Length of the UTF-8 sequence a lead byte starts (1-4), 0 for a continuation or invalid byte. */
int spq_utf8_len(unsigned char c);
/* Id of the piece with these bytes, or -1. */
int spq_tok_lookup(const spq_tokenizer *t, const char *s, int len);
/* Encode text; writes at most max ids and returns the count (may exceed max: then retry
 * with more room), or -1 on OOM. bos: prepend BOS; special: recognise control pieces
 * written literally (e.g. "</s>"). */
long spq_tok_encode(const spq_tokenizer *t, const char *text, size_t len, int bos, int special,
                    int *ids, long max);
/* Bytes of token id as text (byte tokens give their byte; '▁' becomes ' '). Writes into
 * buf (>= 64 + longest piece) and returns the length; the space after BOS is dropped. */
int spq_tok_piece(const spq_tokenizer *t, int prev, int id, char *buf, int cap);

#endif
