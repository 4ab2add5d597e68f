/* fuzz_tokjson.c — HF tokenizer.json loading (vocab, merges, added tokens, pre-tokenizer
 * regexes), then encode and decode with what was loaded. */
#include "fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static int fd = -1;
    char path[64];
    fuzz_file(&fd, "tokenizer.json", d, n, path, sizeof path);
    spq_tokenizer t;
    spq_err e;
    if (spq_tok_load_hf_json(path, &t, &e)) return 0;
    static const char *texts[] = {"Hello world, it's 2026!", " \n\n  x\xff\xfe", "日本語 🙂 <|endoftext|>"};
    int ids[256];
    char piece[4096];
    for (int k = 0; k < 3; k++)
        for (int special = 0; special < 2; special++) {
            long m = spq_tok_encode(&t, texts[k], strlen(texts[k]), special, special, ids, 256);
            for (long i = 0; i < m && i < 256; i++) spq_tok_piece(&t, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece);
        }
    uint8_t *blob;
    size_t bn = spq_tok_serialize(&t, &blob);
    spq_tokenizer t2;
    if (bn && !spq_tok_deserialize(blob, bn, &t2)) spq_tok_free(&t2);
    else if (bn) abort(); /* what we serialise we must read back */
    free(blob);
    spq_tok_free(&t);
    return 0;
}
