/* vocab.h — a tokenizer's tables, the one struct both families fill (tokenizer.h): pieces,
 * scores and types, byte tokens, and for byte-level BPE the merges and pre-tokenizer. */
#ifndef SPQ_VOCAB_H
#define SPQ_VOCAB_H

#include <stddef.h>
#include <stdint.h>

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
    char chat[16];       /* the chat format the model's files name (tok/chat.h), "" if none */
    int space_split;     /* derived (SentencePiece): no piece holds "▁" after another character,
                          * so text is merged word by word, each distinct word once */
} spq_tokenizer;

#endif
