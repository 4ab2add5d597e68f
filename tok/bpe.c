/* bpe.c — byte-level BPE (GPT-2, LLaMA-3, SmolLM): pre-tokenizer split, rank-ordered merges,
 * decoding through GPT-2's byte-to-unicode map.
 *
 * Encoding (as HF tokenizers' ByteLevel BPE and llama.cpp's llm_tokenizer_bpe): the text is cut
 * into words by the model's pre-tokenizer regexes, applied in turn (each splits every piece the
 * previous one left, and the text between matches stays a piece of its own); each word's bytes
 * become one symbol each (spelled in the byte-to-unicode alphabet the vocabulary uses), and the
 * adjacent pair with the lowest merge rank is merged first (ties: leftmost), with the heap
 * the SentencePiece encoder uses (key = -rank).
 *
 * The split uses PCRE2 (Debian libpcre2-dev) rather than hand code: the patterns need Unicode
 * property classes (\p{L}, \p{N}, Unicode \s) and a negative look-ahead; by hand that means
 * carrying our own Unicode category tables (llama.cpp ships thousands of lines of them) and a
 * matcher per pattern, while PCRE2 tracks the Unicode standard, is in every distribution, and
 * with PCRE2_MATCH_INVALID_UTF it also takes arbitrary (invalid UTF-8) bytes without failing. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "tok/tok_internal.h"
#include "tok/tokenizer.h"

#include <pcre2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The regexes llama.cpp (llama-vocab.cpp) uses per tokenizer.ggml.pre, same as the models'
 * tokenizer.json. GPT-2's ends in "|\s+" as in OpenAI's encoder: a whitespace character the
 * alternatives leave unmatched becomes a word of its own either way. */
#define RE_GPT2 "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"
#define RE_LLAMA3                                                                                  \
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"


/* The same contractions without (?i:...), as llama.cpp writes them */
#define RE_CONTR "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
/* DeepSeek-LLM's letter ranges (its tokenizer.json, as llama.cpp lists them) */
#define RE_DEEPSEEK_LETTERS                                                                        \
    "\\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-\\x{1F7D}ᾀ-ᾴᾶ-ᾼ\\x{1FBE}ῂ-ῄῆ-ῌῐ-\\x{1FD3}ῖ-\\x{1FDB}ῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤ\\x{2126}ℨ\\x{212A}-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"
#define RE_CJK "[一-龥ࠀ-一가-퟿]+"
#define RE_GPT2_NOWS "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
#define RE_QWEN2 RE_CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
#define RE_PORO " ?[^(\\s|.,!?…。，、।۔،)]+"

const char spq_re_gpt2[] = RE_GPT2;

/* tokenizer.ggml.pre -> the regexes, '\n'-separated, applied in turn (llama.cpp's
 * llama-vocab.cpp, the models' tokenizer.json) */
static const struct { const char *names, *re; } PRESETS[] = {
    {"|gpt-2|gpt2|mpt|olmo|jais|trillion|", RE_GPT2},
    {"|llama3|llama-v3|llama-bpe|falcon3|dbrx|smaug-bpe|chatglm-bpe|", RE_LLAMA3},
    {"|smollm|starcoder|refact|command-r|codeshell|exaone|minerva-7b|", "\\p{N}\n" RE_GPT2},
    {"|default|", "[\\p{P}\\$\\+<=>\\^~\\|]+\n" RE_GPT2 "\n\\p{N}+\n[0-9][0-9][0-9]"},
    {"|falcon|", "[\\p{P}\\$\\+<=>\\^~\\|`]+\n" RE_GPT2_NOWS "\n[0-9][0-9][0-9]"},
    {"|deepseek-llm|", "[\\r\\n]\n" RE_DEEPSEEK_LETTERS "\n\\s?[!-/:-~！-／：-～‘-‟　-。]+\n\\s+$\n" RE_CJK "\n\\p{N}+"},
    {"|deepseek-coder|", "[\\r\\n]\n\\s?\\p{L}+\n\\s?\\p{P}+\n" RE_CJK "\n\\p{N}"},
    {"|deepseek-v3|", "\\p{N}{1,3}\n[一-龥぀-ゟ゠-ヿ]+\n"
                      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\\r\\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+|"
                      " ?[\\p{P}\\p{S}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    {"|qwen2|stablelm2|", RE_QWEN2},
    {"|poro-chat|bloom|gpt3-finnish|", RE_PORO},
    {"|viking|", RE_PORO "\n\\p{N}"},
    {"|tekken|pixtral|", "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+|"
                         "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*|"
                         "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    {"|gpt-4o|", "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
                 "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
                 "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
    {"|seed-coder|", RE_CONTR "|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1}| ?[^\\s\\p{L}\\p{N}\\r\\n]+|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
};

const char *spq_bpe_pre_names(void)
{
    return "gpt-2 gpt2 mpt olmo jais trillion llama3 llama-v3 llama-bpe falcon3 dbrx smaug-bpe chatglm-bpe smollm starcoder "
           "refact command-r codeshell exaone minerva-7b default falcon deepseek-llm deepseek-coder deepseek-v3 qwen2 "
           "stablelm2 poro-chat bloom gpt3-finnish viking tekken pixtral gpt-4o seed-coder";
}

/* GPT-2's byte-to-unicode map: the printable bytes 33-126, 161-172 and 174-255 stand for
 * themselves; the other 68 (0-32, 127-160, 173), in byte order, become 256, 257, ... */
int spq_bpe_byte_cp(int b)
{
    if (b <= 32) return 256 + b;
    if (b >= 127 && b <= 160) return 256 + 33 + (b - 127);
    if (b == 173) return 256 + 67;
    return b;
}

static int cp_byte(int cp)
{
    if (cp < 256) return spq_bpe_byte_cp(cp) == cp ? cp : -1;
    int n = cp - 256;
    return n < 33 ? n : n < 67 ? 127 + (n - 33) : n == 67 ? 173 : -1;
}

static int put_utf8(char *o, int cp) /* cp < 0x800 here */
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    o[0] = (char)(0xC0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
}

static uint32_t mhash(uint64_t key, uint32_t mask)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

static int merge_rank(const spq_tokenizer *t, int l, int r)
{
    uint64_t key = (uint64_t)(uint32_t)l << 32 | (uint32_t)r;
    for (uint32_t h = mhash(key, t->mmask);; h = (h + 1) & t->mmask) {
        if (t->mranks[h] < 0) return -1;
        if (t->mkeys[h] == key) return t->mranks[h];
    }
}

void spq_bpe_free(spq_tokenizer *t)
{
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    free(t->merges); free(t->pre); free(t->merge_to); free(t->mkeys); free(t->mranks);
    t->merges = NULL; t->pre = NULL; t->merge_to = NULL; t->mkeys = NULL; t->mranks = NULL;
    t->n_re = 0; t->n_merges = 0;
}

int spq_bpe_finish(spq_tokenizer *t)
{
    for (int i = 0; i < t->n_re; i++) pcre2_code_free(t->re[i]);
    t->n_re = 0;
    free(t->merge_to); free(t->mkeys); free(t->mranks);
    uint32_t cap = 16;
    while (cap < 2u * (uint32_t)t->n_merges) cap *= 2;
    t->mmask = cap - 1;
    t->merge_to = malloc(sizeof *t->merge_to * ((size_t)t->n_merges + 1));
    t->mkeys = malloc(sizeof *t->mkeys * cap);
    t->mranks = malloc(sizeof *t->mranks * cap);
    if (!t->merge_to || !t->mkeys || !t->mranks) return -1;
    for (uint32_t i = 0; i < cap; i++) t->mranks[i] = -1;
    char buf[2 * 1024 + 8];
    for (int r = 0; r < t->n_merges; r++) {
        int a = t->merges[2 * r], b = t->merges[2 * r + 1];
        t->merge_to[r] = -1;
        if (a < 0 || b < 0 || a >= t->n_vocab || b >= t->n_vocab || t->lens[a] + t->lens[b] > 2048) continue;
        memcpy(buf, t->pieces[a], (size_t)t->lens[a]);
        memcpy(buf + t->lens[a], t->pieces[b], (size_t)t->lens[b]);
        t->merge_to[r] = spq_tok_lookup(t, buf, t->lens[a] + t->lens[b]);
        if (t->merge_to[r] < 0) continue;
        uint64_t key = (uint64_t)(uint32_t)a << 32 | (uint32_t)b;
        uint32_t h = mhash(key, t->mmask);
        while (t->mranks[h] >= 0 && t->mkeys[h] != key) h = (h + 1) & t->mmask;
        if (t->mranks[h] < 0) { t->mkeys[h] = key; t->mranks[h] = r; } /* first (lowest) rank wins */
    }
    for (int b = 0; b < 256; b++) {
        int n = put_utf8(buf, spq_bpe_byte_cp(b));
        t->byte_ids[b] = spq_tok_lookup(t, buf, n);
    }
    /* pre-tokenizer regexes, '\n'-separated */
    for (const char *p = t->pre; p && *p && t->n_re < SPQ_MAX_RE;) {
        const char *q = strchr(p, '\n');
        size_t len = q ? (size_t)(q - p) : strlen(p);
        int err;
        PCRE2_SIZE off;
        pcre2_code *re = pcre2_compile((PCRE2_SPTR)p, len, PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err,
                                       &off, NULL);
        if (!re) return -1;
        pcre2_jit_compile(re, PCRE2_JIT_COMPLETE); /* optional: falls back to the interpreter */
        t->re[t->n_re++] = re;
        p = q ? q + 1 : p + len;
    }
    return 0;
}

const char *spq_bpe_pre_regexes(const char *name)
{
    char key[80];
    snprintf(key, sizeof key, "|%.60s|", name && *name ? name : "default");
    for (size_t i = 0; i < sizeof PRESETS / sizeof *PRESETS; i++)
        if (strstr(PRESETS[i].names, key)) return PRESETS[i].re;
    return NULL;
}

int spq_tok_make_bpe(spq_tokenizer *t, const char *pre, int n, const char *const *merges, const int *lens,
                     const char *path, spq_err *e)
{
    spq_bpe_free(t);
    const char *re = NULL;
    if (pre && pre[0] == '^') re = pre + 1;
    else {
        re = spq_bpe_pre_regexes(pre);
        if (!re) return spq_fail(e, path, "unsupported BPE pre-tokenizer '%s' (spikeq knows: %s)", pre, spq_bpe_pre_names());
    }
    t->type = SPQ_TOK_BPE;
    t->add_space_prefix = 0;
    t->pre = strdup(re);
    t->merges = malloc(sizeof *t->merges * 2 * ((size_t)n + 1));
    if (!t->pre || !t->merges) return spq_fail(e, path, "out of memory");
    t->n_merges = n;
    for (int i = 0; i < n; i++) {
        const char *sp = memchr(merges[i], ' ', (size_t)lens[i]);
        if (!sp) return spq_fail(e, path, "merge %d has no space between its two pieces", i);
        int la = (int)(sp - merges[i]);
        t->merges[2 * i] = spq_tok_lookup(t, merges[i], la);
        t->merges[2 * i + 1] = spq_tok_lookup(t, sp + 1, lens[i] - la - 1);
    }
    /* the pieces are indexed already (spq_tok_build): only the BPE part is left to derive */
    if (spq_bpe_finish(t)) return spq_fail(e, path, "bad pre-tokenizer regex or out of memory");
    return 0;
}

/* ---- encode ---- */
typedef struct { int prev, next, n, id; } sym; /* n: bytes of the word this symbol covers */

static int try_pair(const spq_tokenizer *t, spq_heap *h, const sym *s, int l, int r)
{
    if (l < 0 || r < 0 || s[l].id < 0 || s[r].id < 0) return 0;
    int rank = merge_rank(t, s[l].id, s[r].id);
    if (rank < 0) return 0;
    return spq_heap_push(h, (spq_bigram){-(double)rank, l, s[l].n + s[r].n, rank}); /* lowest rank first */
}

static long emit(int *ids, long n, long max, int id)
{
    if (n < max) ids[n] = id;
    return n + 1;
}

/* One pre-tokenized word w[0..len) -> ids. s and the heap are scratch of >= len symbols. */
static long encode_word(const spq_tokenizer *t, const unsigned char *w, int len, sym *s, spq_heap *h, int *ids,
                        long n, long max)
{
    if (t->ignore_merges && len <= 512) {
        char buf[1024];
        int o = 0;
        for (int i = 0; i < len; i++) o += put_utf8(buf + o, spq_bpe_byte_cp(w[i]));
        int id = spq_tok_lookup(t, buf, o);
        if (id >= 0) return emit(ids, n, max, id);
    }
    for (int i = 0; i < len; i++) s[i] = (sym){i - 1, i + 1 < len ? i + 1 : -1, 1, t->byte_ids[w[i]]};
    h->n = 0;
    for (int i = 1; i < len; i++)
        if (try_pair(t, h, s, i - 1, i)) return -1;
    while (h->n) {
        spq_bigram p = spq_heap_pop(h);
        sym *L = &s[p.left];
        if (L->n == 0 || L->next < 0) continue;
        sym *R = &s[L->next];
        if (L->n + R->n != p.size) continue; /* stale: one side has merged since */
        L->id = t->merge_to[p.id];
        L->n += R->n;
        R->n = 0;
        L->next = R->next;
        if (R->next >= 0) s[R->next].prev = p.left;
        if (try_pair(t, h, s, L->prev, p.left) || try_pair(t, h, s, p.left, L->next)) return -1;
    }
    for (int i = 0; i != -1 && len; i = s[i].next) {
        if (s[i].id >= 0) { n = emit(ids, n, max, s[i].id); continue; }
        for (int k = 0; k < s[i].n; k++) /* a byte missing from the vocabulary */
            if (t->unk_id >= 0 && t->unk_id < t->n_vocab) n = emit(ids, n, max, t->unk_id);
    }
    return n;
}

typedef struct { size_t off, len; } span;
typedef struct { span *a; size_t n, cap; } spans;

static int add(spans *v, size_t off, size_t len)
{
    if (!len) return 0;
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 64;
        span *na = realloc(v->a, sizeof *na * cap);
        if (!na) return -1;
        v->a = na; v->cap = cap;
    }
    v->a[v->n++] = (span){off, len};
    return 0;
}

static int split(const spq_tokenizer *t, const char *text, size_t len, spans *out);

long spq_bpe_pretokenize(const spq_tokenizer *t, const char *text, size_t len, size_t *off, size_t *n, long max)
{
    spans w = {0};
    if (split(t, text, len, &w)) return -1;
    for (size_t i = 0; i < w.n && (long)i < max; i++) { off[i] = w.a[i].off; n[i] = w.a[i].len; }
    long k = (long)w.n;
    free(w.a);
    return k;
}

/* Split [text, text+len) into words: each regex in turn cuts every current piece into its
 * matches and the gaps between them. */
static int split(const spq_tokenizer *t, const char *text, size_t len, spans *out)
{
    spans cur = {0}, nx = {0};
    if (add(&cur, 0, len)) return -1;
    pcre2_match_data *md = pcre2_match_data_create(1, NULL);
    if (!md) { free(cur.a); return -1; }
    int rc = 0;
    for (int r = 0; r < t->n_re && !rc; r++) {
        nx.n = 0;
        for (size_t i = 0; i < cur.n && !rc; i++) {
            const char *s = text + cur.a[i].off;
            size_t sl = cur.a[i].len, pos = 0, gap = 0;
            while (pos < sl && !rc) {
                int m = pcre2_match(t->re[r], (PCRE2_SPTR)s, sl, pos, 0, md, NULL);
                if (m < 0) break;
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                if (ov[1] <= ov[0]) { /* an empty match: step over one character */
                    int l = spq_utf8_len((unsigned char)s[ov[0]]);
                    pos = ov[0] + (size_t)(l ? l : 1);
                    continue;
                }
                rc = add(&nx, cur.a[i].off + gap, ov[0] - gap) || add(&nx, cur.a[i].off + ov[0], ov[1] - ov[0]);
                pos = gap = ov[1];
            }
            rc = rc || add(&nx, cur.a[i].off + gap, sl - gap);
        }
        spans tmp = cur; cur = nx; nx = tmp;
    }
    pcre2_match_data_free(md);
    free(nx.a);
    if (rc) { free(cur.a); return -1; }
    *out = cur;
    return 0;
}

long spq_bpe_encode(const spq_tokenizer *t, const char *text, size_t len, int prefix, int *ids, long n, long max)
{
    char *tmp = NULL;
    if (prefix && (len == 0 || text[0] != ' ')) { /* HF ByteLevel add_prefix_space */
        tmp = malloc(len + 1);
        if (!tmp) return -1;
        tmp[0] = ' ';
        memcpy(tmp + 1, text, len);
        text = tmp;
        len++;
    }
    spans w = {0};
    if (split(t, text, len, &w)) { free(tmp); return -1; }
    size_t longest = 1;
    for (size_t i = 0; i < w.n; i++) longest = w.a[i].len > longest ? w.a[i].len : longest;
    sym *s = malloc(sizeof *s * longest);
    spq_heap h = {0};
    if (!s) n = -1;
    for (size_t i = 0; i < w.n && n >= 0; i++)
        n = encode_word(t, (const unsigned char *)text + w.a[i].off, (int)w.a[i].len, s, &h, ids, n, max);
    free(s); free(h.a); free(w.a); free(tmp);
    return n;
}

int spq_bpe_piece(const spq_tokenizer *t, int id, char *buf, int cap)
{
    const unsigned char *p = (const unsigned char *)t->pieces[id];
    int n = 0, L = t->lens[id];
    for (int i = 0; i < L && n < cap;) {
        int l = spq_utf8_len(p[i]), cp = -1;
        if (l == 1) cp = p[i];
        else if (l == 2 && i + 1 < L) cp = (p[i] & 0x1F) << 6 | (p[i + 1] & 0x3F);
        int b = cp >= 0 ? cp_byte(cp) : -1;
        if (b >= 0) { buf[n++] = (char)b; i += l; continue; }
        if (!l) l = 1; /* not in the byte alphabet: copy as is */
        for (int k = 0; k < l && i < L && n < cap; k++) buf[n++] = (char)p[i++];
    }
    return n;
}

/* ---- blob: n_merges, ignore_merges, pre length, pre, merges ---- */
size_t spq_bpe_blob_size(const spq_tokenizer *t)
{
    return 12 + strlen(t->pre ? t->pre : "") + 8 * (size_t)t->n_merges;
}

void spq_bpe_blob_write(const spq_tokenizer *t, uint8_t *p)
{
    int32_t h[3] = {t->n_merges, t->ignore_merges, (int32_t)strlen(t->pre ? t->pre : "")};
    memcpy(p, h, 12);
    memcpy(p + 12, t->pre ? t->pre : "", (size_t)h[2]);
    memcpy(p + 12 + h[2], t->merges, 8 * (size_t)t->n_merges);
}

int spq_bpe_blob_read(spq_tokenizer *t, const uint8_t *p, const uint8_t *end)
{
    int32_t h[3];
    if (end - p < 12) return -1;
    memcpy(h, p, 12);
    p += 12;
    if (h[0] < 0 || h[2] < 0 || h[2] > 65536 || h[2] > end - p || (uint64_t)h[0] * 8 != (uint64_t)(end - p - h[2]))
        return -1;
    t->pre = malloc((size_t)h[2] + 1);
    t->merges = malloc(8 * (size_t)h[0] + 8);
    if (!t->pre || !t->merges) return -1;
    memcpy(t->pre, p, (size_t)h[2]);
    t->pre[h[2]] = 0;
    memcpy(t->merges, p + h[2], 8 * (size_t)h[0]);
    t->n_merges = h[0];
    t->ignore_merges = h[1] != 0;
    return 0;
}
