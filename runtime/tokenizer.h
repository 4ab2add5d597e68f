/* tokenizer.h — two tokenizer families behind one struct:
 * SentencePiece-style BPE (LLaMA-2, Mistral, TinyLlama, llama2.c) with byte fallback, loaded
 * from tokenizer.model, llama2.c tokenizer.bin, GGUF metadata or a .spq file; and byte-level
 * BPE (GPT-2, LLaMA-3, SmolLM) with rank-ordered merges and a regex pre-tokenizer, loaded from
 * HF tokenizer.json, GGUF metadata or a .spq file. */
#ifndef SPQ_TOKENIZER_H
#define SPQ_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "runtime/error.h"

enum { SPQ_TOK_NONE = 0, SPQ_TOK_SPM = 1, SPQ_TOK_BPE = 2, SPQ_MAX_RE = 8 };
/* SentencePiece piece types */
enum { SPQ_PT_NORMAL = 1, SPQ_PT_UNKNOWN = 2, SPQ_PT_CONTROL = 3, SPQ_PT_USER = 4, SPQ_PT_UNUSED = 5, SPQ_PT_BYTE = 6 };

typedef struct {
    int type, n_vocab;
    char **pieces;       /* NUL-terminated UTF-8 ('▁' marks a space) */
    int *lens;
    float *scores;
    uint8_t *types;
    int bos_id, eos_id, unk_id;
    int add_space_prefix;
    int byte_ids[256];   /* id of <0xNN>, -1 if absent */
    int *sorted;         /* ids sorted by piece bytes, for lookup */
    /* byte-level BPE only (type SPQ_TOK_BPE); pieces are in GPT-2's byte-to-unicode alphabet */
    int n_merges;
    int32_t *merges;     /* 2 ids (left, right) per merge; rank = index */
    char *pre;           /* pre-tokenizer: regexes applied in turn, separated by '\n' */
    int ignore_merges;   /* LLaMA-3: a word that is a whole piece is not merged */
    int32_t *merge_to;   /* derived: id of the merged piece per rank (-1: not in vocab) */
    uint64_t *mkeys;     /* derived: hash (left, right) -> rank, open addressing */
    int32_t *mranks;
    uint32_t mmask;
    void *re[8];         /* derived: compiled pre-tokenizer regexes (pcre2_code *), SPQ_MAX_RE */
    int n_re;
    char chat[16];       /* the chat format the model's files name (runtime/chat.h), "" if none */
    int space_split;     /* derived (SentencePiece): no piece holds "▁" after another character,
                          * so text is merged word by word, each distinct word once */
} spq_tokenizer;

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
