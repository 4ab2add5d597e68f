/* tok_json.c — HF tokenizer.json (tokenizers library format): model.vocab (piece -> id),
 * model.merges ("a b" strings or [a, b] pairs, in rank order), added_tokens, and
 * - for byte-level BPE models: model.ignore_merges and the pre_tokenizer turned into the regex
 *   list the encoder applies in turn (ByteLevel's own regex is GPT-2's; Digits and Split add
 *   theirs);
 * - for SentencePiece models converted by transformers (LLaMA-2, Mistral, TinyLlama: a
 *   Metaspace pre-tokenizer, or a Prepend/Replace normalizer, and byte_fallback): the
 *   SentencePiece tokenizer itself, each piece scored by the rank of the first merge that
 *   makes it (the converter lists merges in the order of the pieces' scores), so that it
 *   encodes as the tokenizer.model does. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tok/tok_internal.h"
#include "tok/tokenizer.h"

typedef struct { char s[4096]; size_t n; int prefix; } pre_out;

static int append(pre_out *o, const char *re)
{
    size_t l = strlen(re);
    if (o->n + l + 2 >= sizeof o->s) return -1;
    if (o->n) o->s[o->n++] = '\n';
    memcpy(o->s + o->n, re, l + 1);
    o->n += l;
    return 0;
}

/* Append pt's regexes to o; returns 0, or -1 with what is unsupported in why. */
static int pre_regexes(const cJSON *pt, pre_out *o, char *why, size_t cap)
{
    if (!pt || cJSON_IsNull(pt)) return 0;
    const cJSON *ty = cJSON_GetObjectItem(pt, "type");
    const char *type = cJSON_IsString(ty) ? ty->valuestring : "?";
    if (!strcmp(type, "Sequence")) {
        const cJSON *a = cJSON_GetObjectItem(pt, "pretokenizers");
        for (const cJSON *it = a ? a->child : NULL; it; it = it->next)
            if (pre_regexes(it, o, why, cap)) return -1;
        return 0;
    }
    if (!strcmp(type, "ByteLevel")) {
        const cJSON *ur = cJSON_GetObjectItem(pt, "use_regex");
        o->prefix |= cJSON_IsTrue(cJSON_GetObjectItem(pt, "add_prefix_space"));
        return cJSON_IsFalse(ur) ? 0 : append(o, spq_re_gpt2);
    }
    if (!strcmp(type, "Digits"))
        return append(o, cJSON_IsTrue(cJSON_GetObjectItem(pt, "individual_digits")) ? "\\p{N}" : "\\p{N}+");
    if (!strcmp(type, "Split")) {
        const cJSON *pat = cJSON_GetObjectItem(pt, "pattern"), *beh = cJSON_GetObjectItem(pt, "behavior");
        const cJSON *re = cJSON_GetObjectItem(pat, "Regex"), *lit = cJSON_GetObjectItem(pat, "String");
        if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated") || cJSON_IsTrue(cJSON_GetObjectItem(pt, "invert"))) {
            snprintf(why, cap, "Split pre-tokenizer other than behavior Isolated, invert false");
            return -1;
        }
        if (cJSON_IsString(re)) return strchr(re->valuestring, '\n') ? -1 : append(o, re->valuestring);
        if (cJSON_IsString(lit)) {
            char q[1100];
            if (strlen(lit->valuestring) > 1000 || strstr(lit->valuestring, "\\E")) return -1;
            snprintf(q, sizeof q, "\\Q%s\\E", lit->valuestring);
            return append(o, q);
        }
    }
    snprintf(why, cap, "pre_tokenizer '%s'", type);
    return -1;
}

/* Is this a SentencePiece model's tokenizer.json? 1 yes (*prefix: a '▁' goes before the
 * text), 0 no (byte-level BPE), -1 a normalizer or pre-tokenizer neither kind has (why). */
static int spm_style(const cJSON *j, int *prefix, char *why, size_t cap)
{
    const cJSON *norm = cJSON_GetObjectItem(j, "normalizer"), *pt = cJSON_GetObjectItem(j, "pre_tokenizer");
    const cJSON *ty = cJSON_GetObjectItem(pt, "type");
    *prefix = 0;
    if (cJSON_IsString(ty) && !strcmp(ty->valuestring, "Metaspace")) {
        const cJSON *ps = cJSON_GetObjectItem(pt, "prepend_scheme"), *ap = cJSON_GetObjectItem(pt, "add_prefix_space");
        *prefix = cJSON_IsString(ps) ? strcmp(ps->valuestring, "never") != 0 : !cJSON_IsFalse(ap);
        if (norm && !cJSON_IsNull(norm)) { snprintf(why, cap, "a normalizer beside the Metaspace pre-tokenizer"); return -1; }
        return 1;
    }
    if (!norm || cJSON_IsNull(norm)) return 0;
    /* the older converter's form: normalizer Sequence [Prepend "▁", Replace " " -> "▁"] */
    const cJSON *nt = cJSON_GetObjectItem(norm, "type"), *list = cJSON_GetObjectItem(norm, "normalizers");
    int replace = 0;
    for (const cJSON *it = cJSON_IsString(nt) && !strcmp(nt->valuestring, "Sequence") && list ? list->child : norm; it;
         it = it == norm ? NULL : it->next) {
        const cJSON *t = cJSON_GetObjectItem(it, "type");
        const char *type = cJSON_IsString(t) ? t->valuestring : "?";
        if (!strcmp(type, "Prepend") && cJSON_IsString(cJSON_GetObjectItem(it, "prepend")) &&
            !strcmp(cJSON_GetObjectItem(it, "prepend")->valuestring, "\xe2\x96\x81"))
            *prefix = 1;
        else if (!strcmp(type, "Replace") &&
                 cJSON_IsString(cJSON_GetObjectItem(cJSON_GetObjectItem(it, "pattern"), "String")) &&
                 !strcmp(cJSON_GetObjectItem(cJSON_GetObjectItem(it, "pattern"), "String")->valuestring, " "))
            replace = 1;
        else { snprintf(why, cap, "normalizer '%s'", type); return -1; }
    }
    if (!replace || (pt && !cJSON_IsNull(pt))) { snprintf(why, cap, "normalizer without a Replace of spaces by '\xe2\x96\x81'"); return -1; }
    return 1;
}

static int fail_j(cJSON *j, spq_err *e, const char *path, const char *what)
{
    cJSON_Delete(j);
    return spq_fail(e, path, "%s", what);
}

int spq_tok_load_hf_json(const char *path, spq_tokenizer *t, spq_err *e)
{
    memset(t, 0, sizeof *t);
    size_t sz;
    int opened;
    char *txt = spq_tok_read_file(path, &sz, &opened);
    if (!txt) return spq_fail(e, path, opened ? "cannot read tokenizer.json" : "cannot open tokenizer.json");
    cJSON *j = cJSON_Parse(txt);
    free(txt);
    if (!j) return spq_fail(e, path, "not valid JSON");
    const cJSON *model = cJSON_GetObjectItem(j, "model");
    const cJSON *mt = cJSON_GetObjectItem(model, "type");
    const cJSON *vocab = cJSON_GetObjectItem(model, "vocab"), *merges = cJSON_GetObjectItem(model, "merges");
    if (!cJSON_IsObject(model)) return fail_j(j, e, path, "no \"model\" object (not a tokenizer.json)");
    if (!cJSON_IsString(mt) || strcmp(mt->valuestring, "BPE"))
        return fail_j(j, e, path, "unsupported tokenizer model type (BPE only)");
    if (!cJSON_IsObject(vocab) || !cJSON_IsArray(merges)) return fail_j(j, e, path, "model.vocab or model.merges missing");
    pre_out pre = {.n = 0};
    char why[160] = "pre_tokenizer";
    int spm_prefix, spm = spm_style(j, &spm_prefix, why, sizeof why);
    if (spm < 0) {
        char m[200];
        snprintf(m, sizeof m, "unsupported %s", why);
        return fail_j(j, e, path, m);
    }
    if (!spm && pre_regexes(cJSON_GetObjectItem(j, "pre_tokenizer"), &pre, why, sizeof why)) {
        char m[200];
        snprintf(m, sizeof m, "unsupported %s", why);
        return fail_j(j, e, path, m);
    }
    /* ids: vocabulary plus added tokens; holes become unused pieces */
    const cJSON *added = cJSON_GetObjectItem(j, "added_tokens");
    long n = 0;
    for (const cJSON *it = vocab->child; it; it = it->next) {
        if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= (1 << 22)) return fail_j(j, e, path, "bad id in model.vocab");
        if (it->valueint + 1 > n) n = it->valueint + 1;
    }
    for (const cJSON *it = added ? added->child : NULL; it; it = it->next) {
        const cJSON *id = cJSON_GetObjectItem(it, "id"), *c = cJSON_GetObjectItem(it, "content");
        if (!cJSON_IsNumber(id) || id->valuedouble < 0 || id->valuedouble >= (1 << 22) || !cJSON_IsString(c))
            return fail_j(j, e, path, "bad entry in added_tokens");
        if (id->valueint + 1 > n) n = id->valueint + 1;
    }
    if (n == 0) return fail_j(j, e, path, "empty vocabulary");
    const char **pieces = calloc((size_t)n, sizeof *pieces);
    int *lens = calloc((size_t)n, sizeof *lens);
    uint8_t *types = malloc((size_t)n);
    int nm = cJSON_GetArraySize(merges);
    const char **ms = malloc(sizeof *ms * ((size_t)nm + 1));
    int *ml = malloc(sizeof *ml * ((size_t)nm + 1));
    char **owned = calloc((size_t)nm + 1, sizeof *owned);
    int rc = !pieces || !lens || !types || !ms || !ml || !owned ? spq_fail(e, path, "out of memory") : 0;
    for (long i = 0; !rc && i < n; i++) { pieces[i] = ""; types[i] = SPQ_PT_UNUSED; }
    for (const cJSON *it = vocab->child; !rc && it; it = it->next) {
        pieces[it->valueint] = it->string;
        lens[it->valueint] = (int)strlen(it->string);
        types[it->valueint] = SPQ_PT_NORMAL;
    }
    int unk = -1;
    for (const cJSON *it = added ? added->child : NULL; !rc && it; it = it->next) {
        int id = cJSON_GetObjectItem(it, "id")->valueint;
        pieces[id] = cJSON_GetObjectItem(it, "content")->valuestring;
        lens[id] = (int)strlen(pieces[id]);
        types[id] = cJSON_IsTrue(cJSON_GetObjectItem(it, "special")) ? SPQ_PT_CONTROL : SPQ_PT_USER;
    }
    const cJSON *uk = cJSON_GetObjectItem(model, "unk_token");
    for (long i = 0; !rc && cJSON_IsString(uk) && i < n && unk < 0; i++)
        if (!strcmp(pieces[i], uk->valuestring)) unk = (int)i;
    int k = 0;
    for (const cJSON *it = merges->child; !rc && it; it = it->next, k++) {
        if (cJSON_IsString(it)) { ms[k] = it->valuestring; ml[k] = (int)strlen(it->valuestring); continue; }
        const cJSON *a = cJSON_GetArrayItem(it, 0), *b = cJSON_GetArrayItem(it, 1);
        if (!cJSON_IsArray(it) || !cJSON_IsString(a) || !cJSON_IsString(b)) { rc = spq_fail(e, path, "bad entry %d in model.merges", k); break; }
        size_t la = strlen(a->valuestring), lb = strlen(b->valuestring);
        owned[k] = malloc(la + lb + 2);
        if (!owned[k]) { rc = spq_fail(e, path, "out of memory"); break; }
        memcpy(owned[k], a->valuestring, la);
        owned[k][la] = ' ';
        memcpy(owned[k] + la + 1, b->valuestring, lb + 1);
        ms[k] = owned[k];
        ml[k] = (int)(la + lb + 1);
    }
    /* BOS/EOS: the model's config.json says which (the HF importer sets them); until then
     * the usual names */
    int bos = -1, eos = -1;
    static const char *const BOS[] = {"<|begin_of_text|>", "<|im_start|>", "<s>", "<|endoftext|>"};
    static const char *const EOS[] = {"<|end_of_text|>", "<|im_end|>", "</s>", "<|endoftext|>"};
    for (int q = 0; q < 4; q++)
        for (long i = 0; i < n && !rc; i++) {
            if (bos < 0 && !strcmp(pieces[i], BOS[q])) bos = (int)i;
            if (eos < 0 && !strcmp(pieces[i], EOS[q])) eos = (int)i;
        }
    float *scores = NULL;
    if (!rc && spm) { /* SentencePiece: unknown, scores from merge ranks (spq_tok_finish finds
                       * the <0xNN> byte pieces) */
        scores = malloc(sizeof(float) * (size_t)n);
        if (!scores) rc = spq_fail(e, path, "out of memory");
        for (long i = 0; !rc && i < n; i++) scores[i] = -(float)(nm + i); /* never made by a merge: after every merged piece */
        if (!rc && unk >= 0) types[unk] = SPQ_PT_UNKNOWN;
    }
    if (!rc) rc = spq_tok_build(t, (int)n, pieces, lens, scores, types, bos, eos, unk, e);
    if (!rc && spm) { /* a piece's score: minus the rank of the first merge that makes it */
        for (int r = nm - 1; r >= 0; r--) {
            const char *sp = memchr(ms[r], ' ', (size_t)ml[r]);
            char buf[512];
            int la = sp ? (int)(sp - ms[r]) : 0, lb = sp ? ml[r] - la - 1 : 0;
            if (!sp || la + lb >= (int)sizeof buf) continue;
            memcpy(buf, ms[r], (size_t)la);
            memcpy(buf + la, sp + 1, (size_t)lb);
            int id = spq_tok_lookup(t, buf, la + lb);
            if (id >= 0) t->scores[id] = -(float)r;
        }
        t->add_space_prefix = spm_prefix;
    }
    free(scores);
    if (!rc && !spm) {
        char re[4200];
        snprintf(re, sizeof re, "^%s", pre.s);
        t->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItem(model, "ignore_merges"));
        rc = spq_tok_make_bpe(t, re, nm, ms, ml, path, e);
        t->add_space_prefix = pre.prefix;
    }
    for (int i = 0; owned && i < nm; i++) free(owned[i]);
    free(owned); free(ms); free(ml); free(pieces); free(lens); free(types);
    cJSON_Delete(j);
    if (rc) spq_tok_free(t);
    return rc;
}
