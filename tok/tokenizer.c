/* tokenizer.c — SentencePiece BPE: loading, (de)serialising, encoding and decoding.
 *
 * Encoding follows SentencePiece's BPE (and llama.cpp's llm_tokenizer_spm): spaces become
 * '▁' (U+2581), a '▁' is prepended (add_dummy_prefix), the text is split into UTF-8
 * characters, and the adjacent pair whose concatenation is a vocabulary piece with the
 * highest score is merged first (ties: leftmost), with a max-heap so a 1 MB text costs
 * O(n log n). Characters outside the vocabulary fall back to <0xNN> byte pieces. */
#include "tok/tokenizer.h"

#include "tok/chat.h"

#include "tok/tok_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char SPACE_MARK[] = "\xe2\x96\x81"; /* ▁ */

void spq_tok_free(spq_tokenizer *t)
{
    if (t->pieces)
        for (int i = 0; i < t->n_vocab; i++) free(t->pieces[i]);
    free(t->pieces); free(t->lens); free(t->scores); free(t->types); free(t->sorted);
    spq_bpe_free(t);
    memset(t, 0, sizeof *t);
}

static int alloc_arrays(spq_tokenizer *t, int n)
{
    t->n_vocab = n;
    t->pieces = calloc((size_t)n, sizeof *t->pieces);
    t->lens = calloc((size_t)n, sizeof *t->lens);
    t->scores = calloc((size_t)n, sizeof *t->scores);
    t->types = calloc((size_t)n, 1);
    t->sorted = calloc((size_t)n, sizeof *t->sorted);
    return t->pieces && t->lens && t->scores && t->types && t->sorted ? 0 : -1;
}

static int set_piece(spq_tokenizer *t, int i, const char *s, int len)
{
    t->pieces[i] = malloc((size_t)len + 1);
    if (!t->pieces[i]) return -1;
    memcpy(t->pieces[i], s, (size_t)len);
    t->pieces[i][len] = 0;
    t->lens[i] = len;
    return 0;
}

static int cmp_ids(const void *x, const void *y, void *ctx)
{
    const spq_tokenizer *t = ctx;
    int a = *(const int *)x, b = *(const int *)y;
    int c = spq_piece_cmp(t->pieces[a], t->lens[a], t->pieces[b], t->lens[b]);
    return c ? c : a - b;
}

int spq_tok_finish(spq_tokenizer *t)
{
    if (t->type != SPQ_TOK_BPE) t->type = SPQ_TOK_SPM;
    /* ids a file names must be in the vocabulary; -1 means "none" */
    if (t->bos_id < 0 || t->bos_id >= t->n_vocab) t->bos_id = -1;
    if (t->eos_id < 0 || t->eos_id >= t->n_vocab) t->eos_id = -1;
    if (t->unk_id < 0 || t->unk_id >= t->n_vocab) t->unk_id = -1;
    for (int i = 0; i < t->n_vocab; i++) t->sorted[i] = i;
    qsort_r(t->sorted, (size_t)t->n_vocab, sizeof(int), cmp_ids, t);
    if (t->type == SPQ_TOK_BPE) return spq_bpe_finish(t);
    /* can spans be cut before a "▁" that follows another character? only if no piece that
     * merges can produce holds such a pair */
    t->space_split = 1;
    for (int i = 0; i < t->n_vocab && t->space_split; i++) {
        const char *p = t->pieces[i];
        if (t->types[i] == SPQ_PT_UNUSED) continue;
        for (int k = 1; k + 3 <= t->lens[i]; k++)
            if (!memcmp(p + k, SPACE_MARK, 3) && (k < 3 || memcmp(p + k - 3, SPACE_MARK, 3))) { t->space_split = 0; break; }
    }
    for (int b = 0; b < 256; b++) t->byte_ids[b] = -1;
    for (int i = 0; i < t->n_vocab; i++) {
        unsigned v;
        if (t->lens[i] == 6 && sscanf(t->pieces[i], "<0x%2X>", &v) == 1 && v < 256) {
            t->byte_ids[v] = i;
            t->types[i] = SPQ_PT_BYTE;
        }
    }
    return 0;
}

int spq_tok_build(spq_tokenizer *t, int n, const char *const *pieces, const int *lens, const float *scores,
                  const uint8_t *types, int bos, int eos, int unk, spq_err *e)
{
    memset(t, 0, sizeof *t);
    if (alloc_arrays(t, n)) { spq_tok_free(t); return spq_fail(e, NULL, "out of memory"); }
    for (int i = 0; i < n; i++) {
        if (set_piece(t, i, pieces[i], lens[i])) { spq_tok_free(t); return spq_fail(e, NULL, "out of memory"); }
        t->scores[i] = scores ? scores[i] : 0.0f;
        t->types[i] = types ? types[i] : SPQ_PT_NORMAL;
    }
    t->bos_id = bos; t->eos_id = eos; t->unk_id = unk; t->add_space_prefix = 1;
    return spq_tok_finish(t);
}

/* ---- tokenizer.model: protobuf ModelProto ---- */
typedef struct { const uint8_t *p, *end; int bad; } pb;

static uint64_t varint(pb *b)
{
    uint64_t v = 0;
    for (int s = 0; s < 64; s += 7) {
        if (b->p >= b->end) { b->bad = 1; return 0; }
        uint8_t c = *b->p++;
        v |= (uint64_t)(c & 0x7f) << s;
        if (!(c & 0x80)) return v;
    }
    b->bad = 1;
    return 0;
}

/* Read one field header; returns field number, sets wire type; then the caller reads. */
static int field(pb *b, int *wt)
{
    uint64_t k = varint(b);
    *wt = (int)(k & 7);
    return (int)(k >> 3);
}

static pb sub(pb *b)
{
    uint64_t n = varint(b);
    pb s = {b->p, b->p, 1};
    if (b->bad || n > (uint64_t)(b->end - b->p)) { b->bad = 1; return s; }
    s.end = b->p + n;
    s.bad = 0;
    b->p += n;
    return s;
}

static void skip_field(pb *b, int wt)
{
    if (wt == 0) varint(b);
    else if (wt == 1) { if (b->end - b->p < 8) b->bad = 1; else b->p += 8; }
    else if (wt == 2) sub(b);
    else if (wt == 5) { if (b->end - b->p < 4) b->bad = 1; else b->p += 4; }
    else b->bad = 1;
}

int spq_tok_load_spm(const char *path, spq_tokenizer *t, spq_err *e)
{
    memset(t, 0, sizeof *t);
    size_t fsz;
    int opened;
    uint8_t *buf = (uint8_t *)spq_tok_read_file(path, &fsz, &opened);
    if (!buf) return spq_fail(e, path, opened ? "cannot read tokenizer" : "cannot open tokenizer");
    long sz = (long)fsz;
    /* pass 1: count pieces */
    pb b = {buf, buf + sz, 0};
    int n = 0, wt;
    while (b.p < b.end && !b.bad) {
        int fn = field(&b, &wt);
        if (fn == 1 && wt == 2) { sub(&b); n++; } else skip_field(&b, wt);
    }
    if (b.bad || n == 0) { free(buf); return spq_fail(e, path, "not a SentencePiece model (corrupt protobuf)"); }
    if (alloc_arrays(t, n)) { free(buf); spq_tok_free(t); return spq_fail(e, path, "out of memory"); }
    t->bos_id = 1; t->eos_id = 2; t->unk_id = 0; t->add_space_prefix = 1;
    b = (pb){buf, buf + sz, 0};
    int i = 0;
    while (b.p < b.end && !b.bad) {
        int fn = field(&b, &wt);
        if (fn == 1 && wt == 2) {
            pb s = sub(&b);
            const uint8_t *ps = NULL;
            uint64_t pl = 0;
            float score = 0;
            int type = SPQ_PT_NORMAL;
            while (s.p < s.end && !s.bad) {
                int g = field(&s, &wt);
                if (g == 1 && wt == 2) { pb v = sub(&s); ps = v.p; pl = (uint64_t)(v.end - v.p); }
                else if (g == 2 && wt == 5) { if (s.end - s.p < 4) s.bad = 1; else { memcpy(&score, s.p, 4); s.p += 4; } }
                else if (g == 3 && wt == 0) type = (int)varint(&s);
                else skip_field(&s, wt);
            }
            if (s.bad || !ps || pl > 4096) { b.bad = 1; break; }
            if (set_piece(t, i, (const char *)ps, (int)pl)) { b.bad = 1; break; }
            t->scores[i] = score;
            t->types[i] = (uint8_t)(type >= 1 && type <= 6 ? type : 1);
            i++;
        } else if ((fn == 2 || fn == 3) && wt == 2) { /* trainer_spec / normalizer_spec */
            pb s = sub(&b);
            while (s.p < s.end && !s.bad) {
                int g = field(&s, &wt);
                if (wt != 0) { skip_field(&s, wt); continue; }
                uint64_t v = varint(&s);
                if (fn == 2 && g == 40) t->unk_id = (int)v;
                else if (fn == 2 && g == 41) t->bos_id = (int)(int32_t)v;
                else if (fn == 2 && g == 42) t->eos_id = (int)(int32_t)v;
                else if (fn == 3 && g == 3) t->add_space_prefix = v != 0;
            }
        } else {
            skip_field(&b, wt);
        }
    }
    free(buf);
    if (b.bad || i != n) { spq_tok_free(t); return spq_fail(e, path, "not a SentencePiece model (corrupt protobuf)"); }
    return spq_tok_finish(t);
}

int spq_tok_load_llama2c(const char *path, int n_vocab, spq_tokenizer *t, spq_err *e)
{
    memset(t, 0, sizeof *t);
    FILE *f = fopen(path, "rb");
    if (!f) return spq_fail(e, path, "cannot open tokenizer");
    int32_t maxlen;
    if (n_vocab <= 0 || fread(&maxlen, 4, 1, f) != 1 || alloc_arrays(t, n_vocab)) {
        fclose(f); spq_tok_free(t);
        return spq_fail(e, path, "cannot read llama2.c tokenizer header");
    }
    char buf[4096];
    for (int i = 0; i < n_vocab; i++) {
        int32_t len;
        if (fread(&t->scores[i], 4, 1, f) != 1 || fread(&len, 4, 1, f) != 1 || len < 0 || len > 1024 ||
            fread(buf, 1, (size_t)len, f) != (size_t)len) {
            fclose(f); spq_tok_free(t);
            return spq_fail(e, path, "truncated llama2.c tokenizer at piece %d", i);
        }
        /* llama2.c's export wrote '▁' as ' ': restore it so encoding is SentencePiece's */
        char out[4096 * 3];
        int o = 0;
        for (int k = 0; k < len; k++) {
            if (buf[k] == ' ') { memcpy(out + o, SPACE_MARK, 3); o += 3; }
            else out[o++] = buf[k];
        }
        if (set_piece(t, i, out, o)) { fclose(f); spq_tok_free(t); return spq_fail(e, path, "out of memory"); }
        t->types[i] = SPQ_PT_NORMAL;
    }
    fclose(f);
    t->unk_id = 0; t->bos_id = 1; t->eos_id = 2; t->add_space_prefix = 1;
    if (n_vocab > 2) { t->types[0] = SPQ_PT_UNKNOWN; t->types[1] = t->types[2] = SPQ_PT_CONTROL; }
    return spq_tok_finish(t);
}

/* ---- blob ---- */
/* Blob: "SPQT", 6 x i32 (type, n_vocab, bos, eos, unk, add_space_prefix), or "SPQ2" with the
 * same and then the chat format's name in 16 NUL-padded bytes; the pieces; the BPE data. */
size_t spq_tok_serialize(const spq_tokenizer *t, uint8_t **out)
{
    int chat = t->chat[0] != 0;
    size_t n = 4 + 6 * 4 + (chat ? 16 : 0);
    for (int i = 0; i < t->n_vocab; i++) n += 4 + 1 + 4 + (size_t)t->lens[i];
    size_t nb = t->type == SPQ_TOK_BPE ? spq_bpe_blob_size(t) : 0;
    n += nb;
    uint8_t *b = malloc(n), *p = b;
    if (!b) return 0;
    int32_t h[6] = {t->type, t->n_vocab, t->bos_id, t->eos_id, t->unk_id, t->add_space_prefix};
    memcpy(p, chat ? "SPQ2" : "SPQT", 4); p += 4;
    memcpy(p, h, sizeof h); p += sizeof h;
    if (chat) { memset(p, 0, 16); memcpy(p, t->chat, strnlen(t->chat, 15)); p += 16; }
    for (int i = 0; i < t->n_vocab; i++) {
        memcpy(p, &t->scores[i], 4); p += 4;
        *p++ = t->types[i];
        memcpy(p, &t->lens[i], 4); p += 4;
        memcpy(p, t->pieces[i], (size_t)t->lens[i]); p += t->lens[i];
    }
    if (nb) spq_bpe_blob_write(t, p);
    *out = b;
    return n;
}

int spq_tok_deserialize(const uint8_t *p, size_t n, spq_tokenizer *t)
{
    memset(t, 0, sizeof *t);
    const uint8_t *end = p + n;
    int32_t h[6];
    int chat = n >= 4 && !memcmp(p, "SPQ2", 4);
    if (n < 28 + (chat ? 16u : 0u) || (!chat && memcmp(p, "SPQT", 4))) return -1;
    memcpy(h, p + 4, sizeof h);
    p += 28;
    char name[16] = "";
    if (chat) {
        memcpy(name, p, 15); /* NUL-padded; the 16th byte is the terminator we keep */
        p += 16;
    }
    if ((h[0] != SPQ_TOK_SPM && h[0] != SPQ_TOK_BPE) || h[1] <= 0 || h[1] > (1 << 22) || (size_t)h[1] * 9 > n) return -1;
    if (alloc_arrays(t, h[1])) { spq_tok_free(t); return -1; }
    for (int i = 0; i < h[1]; i++) {
        int32_t len;
        if (end - p < 9) { spq_tok_free(t); return -1; }
        memcpy(&t->scores[i], p, 4);
        t->types[i] = p[4];
        memcpy(&len, p + 5, 4);
        p += 9;
        if (len < 0 || len > end - p || set_piece(t, i, (const char *)p, len)) { spq_tok_free(t); return -1; }
        p += len;
    }
    t->bos_id = h[2]; t->eos_id = h[3]; t->unk_id = h[4]; t->add_space_prefix = h[5];
    t->type = h[0];
    if (name[0] && !spq_chat_known(name)) { spq_tok_free(t); return -1; }
    memcpy(t->chat, name, sizeof name);
    if (t->type == SPQ_TOK_BPE && spq_bpe_blob_read(t, p, end)) { spq_tok_free(t); return -1; }
    if (spq_tok_finish(t)) { spq_tok_free(t); return -1; }
    return 0;
}

/* ---- encode ---- */
typedef struct { int prev, next; const char *s; int n; } sym;

static int try_bigram(const spq_tokenizer *t, spq_heap *h, const sym *s, int l, int r)
{
    if (l < 0 || r < 0) return 0;
    int id = spq_tok_lookup(t, s[l].s, s[l].n + s[r].n);
    if (id < 0 || t->types[id] == SPQ_PT_UNUSED) return 0;
    return spq_heap_push(h, (spq_bigram){t->scores[id], l, s[l].n + s[r].n, id});
}

/* BPE of one word w[0..n) (symbols built here; s, h: scratch of n symbols and a heap)
 * appending its ids to ids[n_out..]. Returns the new count, or -1 when out of memory. */
static long bpe_word(const spq_tokenizer *t, const char *w, int len, sym *s, spq_heap *h, int *ids, long n, long max)
{
    int ns = 0;
    for (int i = 0; i < len;) {
        int l = spq_utf8_len((unsigned char)w[i]);
        if (i + l > len) l = 1;
        for (int k = 1; k < l; k++)
            if (((unsigned char)w[i + k] & 0xC0) != 0x80) l = 1;
        if (!l) l = 1; /* a stray or malformed byte is a symbol of its own (byte fallback) */
        s[ns] = (sym){ns - 1, ns + 1, w + i, l};
        ns++;
        i += l;
    }
    if (ns) s[ns - 1].next = -1;
    int rc = 0;
    h->n = 0;
    for (int i = 1; i < ns && !rc; i++) rc = try_bigram(t, h, s, i - 1, i);
    while (h->n && !rc) {
        spq_bigram b = spq_heap_pop(h);
        sym *L = &s[b.left];
        if (L->n == 0 || L->next < 0) continue;
        sym *R = &s[L->next];
        if (L->n + R->n != b.size) continue; /* stale: one side merged since */
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0) s[R->next].prev = b.left;
        rc = try_bigram(t, h, s, L->prev, b.left) || try_bigram(t, h, s, b.left, L->next);
    }
    for (int i = 0; ns && i != -1 && !rc; i = s[i].next) {
        int id = spq_tok_lookup(t, s[i].s, s[i].n);
        if (id >= 0) { if (n < max) ids[n] = id; n++; continue; }
        for (int k = 0; k < s[i].n; k++) {
            int bid = t->byte_ids[(unsigned char)s[i].s[k]];
            if (bid < 0) bid = t->unk_id;
            if (bid < 0) continue; /* neither a byte piece nor <unk>: the byte is dropped */
            if (n < max) ids[n] = bid;
            n++;
        }
    }
    return rc ? -1 : n;
}

/* Words already encoded in one span: word bytes -> their ids, open addressing. Text repeats
 * its words, so most words are looked up rather than merged again (HF tokenizers keeps the
 * same kind of cache). */
typedef struct {
    uint64_t *key;     /* hash | 1 (0: empty) */
    uint32_t *at, *len, *ids_at, *ids_n;
    uint32_t mask, used;
    int *pool;
    size_t pool_n, pool_cap;
} word_cache;

static uint64_t word_hash(const char *p, int n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h | 1;
}

static void cache_free(word_cache *c)
{
    free(c->key); free(c->at); free(c->len); free(c->ids_at); free(c->ids_n); free(c->pool);
    memset(c, 0, sizeof *c);
}

static int cache_init(word_cache *c, uint32_t slots)
{
    memset(c, 0, sizeof *c);
    c->mask = slots - 1;
    c->key = calloc(slots, sizeof *c->key);
    c->at = malloc(sizeof(uint32_t) * slots); c->len = malloc(sizeof(uint32_t) * slots);
    c->ids_at = malloc(sizeof(uint32_t) * slots); c->ids_n = malloc(sizeof(uint32_t) * slots);
    if (c->key && c->at && c->len && c->ids_at && c->ids_n) return 0;
    cache_free(c);
    return -1;
}

/* The slot of word (buf + at, n): its own, or the empty one where it goes. */
static uint32_t cache_slot(const word_cache *c, const char *buf, uint32_t at, int n, uint64_t h)
{
    uint32_t i = (uint32_t)h & c->mask;
    while (c->key[i] && !(c->key[i] == h && c->len[i] == (uint32_t)n && !memcmp(buf + c->at[i], buf + at, (size_t)n)))
        i = (i + 1) & c->mask;
    return i;
}

/* Where a SentencePiece vocabulary lets a span be cut (t->space_split): before a "▁" that
 * follows another character, as no piece holds such a pair, so no merge crosses the cut. */
static int cut_before(const char *buf, size_t i, size_t n)
{
    return i >= 1 && i + 3 <= n && !memcmp(buf + i, SPACE_MARK, 3) && (i < 3 || memcmp(buf + i - 3, SPACE_MARK, 3));
}

/* Encode one span of plain text (no special tokens) appending to ids: normalised, cut into
 * words where merges cannot cross (when the vocabulary allows), each word merged once. */
static long encode_span(const spq_tokenizer *t, const char *text, size_t len, int prefix, int *ids, long n, long max)
{
    /* normalise: optional dummy prefix, ' ' -> ▁ */
    size_t cap = 3 * (len + 1);
    char *buf = malloc(cap);
    if (!buf) return -1;
    size_t o = 0;
    if (prefix) { memcpy(buf, SPACE_MARK, 3); o = 3; }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') { memcpy(buf + o, SPACE_MARK, 3); o += 3; }
        else buf[o++] = text[i];
    }
    /* the words, and the longest, for the symbol scratch */
    size_t longest = 0, w0 = 0;
    for (size_t i = 1; i <= o; i++)
        if (i == o || (t->space_split && cut_before(buf, i, o))) {
            if (i - w0 > longest) longest = i - w0;
            w0 = i;
        }
    if (o > UINT32_MAX || longest > INT32_MAX) { free(buf); return -1; }
    sym *s = malloc(sizeof *s * (longest + 1));
    spq_heap h = {0};
    word_cache wc;
    int cached = t->space_split && !cache_init(&wc, 1u << 14);
    if (!s) { free(buf); free(s); if (cached) cache_free(&wc); return -1; }
    w0 = 0;
    for (size_t i = 1; i <= o && n >= 0; i++) {
        if (i < o && !(t->space_split && cut_before(buf, i, o))) continue;
        int wl = (int)(i - w0);
        if (cached && wl <= 256) {
            uint64_t hv = word_hash(buf + w0, wl);
            uint32_t k = cache_slot(&wc, buf, (uint32_t)w0, wl, hv);
            if (wc.key[k]) { /* seen: copy its ids */
                for (uint32_t q = 0; q < wc.ids_n[k]; q++) {
                    if (n < max) ids[n] = wc.pool[wc.ids_at[k] + q];
                    n++;
                }
            } else {
                long n0 = n;
                /* into the pool first (ids may be too short to hold them: max) */
                size_t need = wc.pool_n + (size_t)wl * 4 + 8;
                if (need > wc.pool_cap) {
                    size_t nc = need * 2;
                    int *np = realloc(wc.pool, sizeof(int) * nc);
                    if (!np) { n = -1; break; }
                    wc.pool = np; wc.pool_cap = nc;
                }
                long got = bpe_word(t, buf + w0, wl, s, &h, wc.pool + wc.pool_n, 0, (long)(wc.pool_cap - wc.pool_n));
                if (got < 0) { n = -1; break; }
                for (long q = 0; q < got; q++) {
                    if (n < max) ids[n] = wc.pool[wc.pool_n + (size_t)q];
                    n++;
                }
                if (wc.used < (wc.mask + 1) / 2) { /* at most half full: probes stay short */
                    wc.key[k] = hv; wc.at[k] = (uint32_t)w0; wc.len[k] = (uint32_t)wl;
                    wc.ids_at[k] = (uint32_t)wc.pool_n; wc.ids_n[k] = (uint32_t)(n - n0);
                    wc.pool_n += (size_t)got;
                    wc.used++;
                }
            }
        } else {
            n = bpe_word(t, buf + w0, wl, s, &h, ids, n, max);
        }
        w0 = i;
    }
    if (cached) cache_free(&wc);
    free(h.a); free(buf); free(s);
    return n;
}

long spq_tok_encode(const spq_tokenizer *t, const char *text, size_t len, int bos, int special, int *ids, long max)
{
    long n = 0;
    if (bos && t->bos_id >= 0) { if (n < max) ids[n] = t->bos_id; n++; }
    int first = 1;
    size_t start = 0;
    while (start <= len) {
        /* next literal control/user piece when asked to parse special tokens */
        size_t at = len;
        int sid = -1, slen = 0;
        if (special)
            for (int id = 0; id < t->n_vocab; id++) {
                if (t->types[id] != SPQ_PT_CONTROL && t->types[id] != SPQ_PT_USER) continue;
                if (t->lens[id] == 0) continue;
                const char *hit = memmem(text + start, len - start, t->pieces[id], (size_t)t->lens[id]);
                if (hit && ((size_t)(hit - text) < at || ((size_t)(hit - text) == at && t->lens[id] > slen))) {
                    at = (size_t)(hit - text); sid = id; slen = t->lens[id];
                }
            }
        if (at > start) {
            int prefix = first && t->add_space_prefix;
            n = t->type == SPQ_TOK_BPE ? spq_bpe_encode(t, text + start, at - start, prefix, ids, n, max)
                                       : encode_span(t, text + start, at - start, prefix, ids, n, max);
            if (n < 0) return -1;
        }
        first = 0;
        if (sid < 0) break;
        if (n < max) ids[n] = sid;
        n++;
        start = at + (size_t)slen;
        if (start == len) break;
    }
    return n;
}

int spq_tok_piece(const spq_tokenizer *t, int prev, int id, char *buf, int cap)
{
    if (id < 0 || id >= t->n_vocab) return 0;
    if (t->types[id] == SPQ_PT_CONTROL || t->types[id] == SPQ_PT_UNKNOWN || t->types[id] == SPQ_PT_UNUSED) return 0;
    if (t->type == SPQ_TOK_BPE && t->types[id] == SPQ_PT_USER) {
        int n = t->lens[id] < cap ? t->lens[id] : cap;
        memcpy(buf, t->pieces[id], (size_t)n);
        return n;
    }
    if (t->type == SPQ_TOK_BPE) return spq_bpe_piece(t, id, buf, cap);
    if (t->types[id] == SPQ_PT_BYTE) {
        unsigned v = 0;
        sscanf(t->pieces[id], "<0x%2X>", &v);
        buf[0] = (char)v;
        return 1;
    }
    const char *p = t->pieces[id];
    int n = 0, L = t->lens[id];
    for (int i = 0; i < L && n < cap - 1;) {
        if (i + 3 <= L && !memcmp(p + i, SPACE_MARK, 3)) {
            if (!(n == 0 && i == 0 && prev == t->bos_id)) buf[n++] = ' ';
            i += 3;
        } else {
            buf[n++] = p[i++];
        }
    }
    return n;
}
