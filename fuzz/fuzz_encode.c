/* fuzz_encode.c — the tokenizers' encode on arbitrary bytes: LLaMA-2 SentencePiece (from the
 * shipped model) and GPT-2 byte-level BPE (../shared, when present). Byte-level BPE is
 * lossless, so decode(encode(x)) == x is checked. First input byte: bit 0 special, bit 1 BOS. */
#include "fuzz/fuzz.h"
#include "format/open.h"

static spq_ckpt spm, bpe;
static int have_bpe;

static void init(void)
{
    spq_err e;
    if (spq_open("models/docs-llama-28m-w8a8.spq", &spm, &e)) { fprintf(stderr, "%s\n", e.msg); abort(); }
    const char *sh = getenv("SPIKEQ_SHARED");
    char p[512];
    snprintf(p, sizeof p, "%s/tokenizers/llamacpp-vocab/ggml-vocab-gpt-2.gguf", sh ? sh : "../shared");
    have_bpe = !spq_open(p, &bpe, &e);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static int ready;
    if (!ready) { init(); ready = 1; }
    if (n < 1) return 0;
    int special = d[0] & 1, bos = (d[0] >> 1) & 1;
    const char *text = (const char *)d + 1;
    size_t len = n - 1;
    int *ids = malloc(sizeof *ids * (len + 4));
    char *back = malloc(len + 64), piece[2048];
    for (int which = 0; which < 1 + have_bpe; which++) {
        const spq_tokenizer *t = which ? &bpe.tok : &spm.tok;
        long k = spq_tok_encode(t, text, len, bos, special, ids, (long)len + 4);
        if (k < 0 || k > (long)len + 4) abort(); /* at most one id per byte (+ BOS, prefix) */
        size_t o = 0;
        for (long i = 0; i < k; i++) {
            if (ids[i] < 0 || ids[i] >= t->n_vocab) abort();
            int l = spq_tok_piece(t, i ? ids[i - 1] : -1, ids[i], piece, sizeof piece);
            if (o + (size_t)l <= len + 64) memcpy(back + o, piece, (size_t)l);
            o += (size_t)l;
        }
        if (which == 1 && !special && !bos && (o != len || memcmp(back, text, len))) abort();
    }
    free(ids); free(back);
    return 0;
}
