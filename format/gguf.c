/* gguf.c — import GGUF v2/v3 files with general.architecture = llama: tensors F32, F16, BF16
 * and ggml's block formats (Q4_0 ... Q8_0, Q2_K ... Q6_K, IQ4_NL, IQ4_XS; format/ggml_quants.c)
 * kept in their blocks where the file is mapped, and the tokenizer.ggml.* vocabulary.
 * Vocab-only files (no tensors) load just the tokenizer. Every count, length and offset is
 * checked against the file size before use. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/kernels.h"
#include "format/ggml_quants.h"
#include "tok/chat.h"
#include "format/open.h"

enum { G_U8, G_I8, G_U16, G_I16, G_U32, G_I32, G_F32, G_BOOL, G_STR, G_ARR, G_U64, G_I64, G_F64 };
static const int gsize[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

typedef struct {
    const uint8_t *p, *end;
    int bad;
} rd;

static uint64_t take(rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) { r->bad = 1; return 0; }
    uint64_t v = 0;
    memcpy(&v, r->p, n);
    r->p += n;
    return v;
}

static const char *str(rd *r, uint64_t *len)
{
    *len = take(r, 8);
    if (r->bad || *len > (uint64_t)(r->end - r->p)) { r->bad = 1; return NULL; }
    const char *s = (const char *)r->p;
    r->p += *len;
    return s;
}

static double scalar(rd *r, int type)
{
    uint64_t v = take(r, (size_t)gsize[type]);
    switch (type) {
    case G_I8: return (int8_t)v;
    case G_I16: return (int16_t)v;
    case G_I32: return (int32_t)v;
    case G_I64: return (double)(int64_t)v;
    case G_F32: { float f; uint32_t u = (uint32_t)v; memcpy(&f, &u, 4); return f; }
    case G_F64: { double d; memcpy(&d, &v, 8); return d; }
    default: return (double)v;
    }
}

/* skip one value of type (arrays recurse one level) */
static void skip(rd *r, int type)
{
    uint64_t n;
    if (type == G_STR) { str(r, &n); return; }
    if (type == G_ARR) {
        int et = (int)take(r, 4);
        n = take(r, 8);
        if (et < 0 || et > G_F64 || et == G_ARR) { r->bad = 1; return; }
        if (et == G_STR) { for (uint64_t i = 0; i < n && !r->bad; i++) str(r, &(uint64_t){0}); return; }
        if (n > (uint64_t)(r->end - r->p) / (uint64_t)gsize[et]) { r->bad = 1; return; }
        r->p += n * (uint64_t)gsize[et];
        return;
    }
    if (type < 0 || type > G_F64) { r->bad = 1; return; }
    take(r, (size_t)gsize[type]);
}

typedef struct {
    const uint8_t *tokens; uint64_t n_tokens; /* position of the string array */
    const uint8_t *scores; uint64_t n_scores;
    const uint8_t *ttypes; uint64_t n_ttypes; int ttype_t;
    const uint8_t *merges; uint64_t n_merges;
    char model[32], pre[64];
    int bos, eos, unk, add_space, add_space_set;
} vocab;

/* What the metadata says beyond the config: architecture, alignment, RoPE dimensions. */
typedef struct {
    char arch[32];
    uint64_t align;
    int rope_dim;
    const char *chat; /* the chat format tokenizer.chat_template writes (tok/chat.h), or NULL */
} meta;

/* The key-value section into c->cfg, the vocabulary's places (v) and mt; r.bad on damage. */
static void read_metadata(rd *r, uint64_t nkv, spq_config *p, vocab *v, meta *mt)
{
    for (uint64_t i = 0; i < nkv && !r->bad; i++) {
        uint64_t kl;
        const char *k = str(r, &kl);
        int type = (int)take(r, 4);
        if (r->bad) break;
        char key[128];
        snprintf(key, sizeof key, "%.*s", (int)(kl < 127 ? kl : 127), k);
        const char *sub = !strncmp(key, "llama.", 6) ? key + 6 : NULL;
        if (type == G_STR) {
            uint64_t sl;
            const char *s = str(r, &sl);
            if (!strcmp(key, "general.architecture")) snprintf(mt->arch, sizeof mt->arch, "%.*s", (int)(sl < 31 ? sl : 31), s);
            if (!strcmp(key, "tokenizer.ggml.model")) snprintf(v->model, sizeof v->model, "%.*s", (int)(sl < 31 ? sl : 31), s);
            if (!strcmp(key, "tokenizer.ggml.pre")) snprintf(v->pre, sizeof v->pre, "%.*s", (int)(sl < 63 ? sl : 63), s);
            if (!strcmp(key, "tokenizer.chat_template") && !r->bad) mt->chat = spq_chat_detect(s, sl);
        } else if (type == G_ARR) {
            const uint8_t *at = r->p;
            int et = (int)take(r, 4);
            uint64_t n = take(r, 8);
            r->p = at;
            if (!strcmp(key, "tokenizer.ggml.tokens") && et == G_STR) { v->tokens = at + 12; v->n_tokens = n; }
            if (!strcmp(key, "tokenizer.ggml.scores") && et == G_F32) { v->scores = at + 12; v->n_scores = n; }
            if (!strcmp(key, "tokenizer.ggml.token_type") && (et == G_I32 || et == G_U32)) { v->ttypes = at + 12; v->n_ttypes = n; }
            if (!strcmp(key, "tokenizer.ggml.merges") && et == G_STR) { v->merges = at + 12; v->n_merges = n; }
            skip(r, G_ARR);
        } else if (type >= 0 && type <= G_F64 && type != G_STR && type != G_ARR) {
            double x = scalar(r, type);
            if (!strcmp(key, "general.alignment")) mt->align = x >= 1 && x <= 4096 ? (uint64_t)x : 0;
            else if (!strcmp(key, "tokenizer.ggml.bos_token_id")) v->bos = spq_file_int(x);
            else if (!strcmp(key, "tokenizer.ggml.eos_token_id")) v->eos = spq_file_int(x);
            else if (!strcmp(key, "tokenizer.ggml.unknown_token_id")) v->unk = spq_file_int(x);
            else if (!strcmp(key, "tokenizer.ggml.add_space_prefix")) v->add_space = x != 0, v->add_space_set = 1;
            else if (sub && !strcmp(sub, "context_length")) p->max_seq = spq_file_int(x);
            else if (sub && !strcmp(sub, "embedding_length")) p->dim = spq_file_int(x);
            else if (sub && !strcmp(sub, "block_count")) p->n_layers = spq_file_int(x);
            else if (sub && !strcmp(sub, "feed_forward_length")) p->hidden_dim = spq_file_int(x);
            else if (sub && !strcmp(sub, "attention.head_count")) p->n_heads = spq_file_int(x);
            else if (sub && !strcmp(sub, "attention.head_count_kv")) p->n_kv_heads = spq_file_int(x);
            else if (sub && !strcmp(sub, "attention.layer_norm_rms_epsilon")) p->norm_eps = spq_file_float(x);
            else if (sub && !strcmp(sub, "rope.freq_base")) p->rope_theta = spq_file_float(x);
            else if (sub && !strcmp(sub, "rope.dimension_count")) mt->rope_dim = spq_file_int(x);
            else if (sub && !strcmp(sub, "vocab_size")) p->vocab_size = spq_file_int(x);
        } else {
            r->bad = 1;
        }
    }
}

/* The tokenizer from the metadata arrays (SentencePiece 'llama' or byte-level BPE 'gpt2'). */
static int load_vocab(spq_ckpt *c, const vocab *v, const uint8_t *end, const char *path, spq_err *e)
{
    int bpe = !strcmp(v->model, "gpt2");
    if (strcmp(v->model, "llama") && !bpe)
        return spq_fail(e, path, "unsupported tokenizer model '%s' (SentencePiece 'llama' or byte-level BPE 'gpt2')", v->model);
    if (bpe && !v->merges) return spq_fail(e, path, "byte-level BPE vocabulary without tokenizer.ggml.merges");
    if (v->n_merges > (1u << 22)) return spq_fail(e, path, "tokenizer.ggml.merges count too large");
    uint64_t n = v->n_tokens;
    if (n == 0 || n > (1u << 22) || (v->scores && v->n_scores != n) || (v->ttypes && v->n_ttypes != n))
        return spq_fail(e, path, "tokenizer arrays disagree in length");
    const char **pieces = malloc(sizeof *pieces * n);
    int *lens = malloc(sizeof *lens * n);
    float *scores = calloc(n, sizeof *scores);
    uint8_t *types = malloc(n);
    if (!pieces || !lens || !scores || !types) {
        free(pieces); free(lens); free(scores); free(types);
        return spq_fail(e, path, "out of memory");
    }
    rd tr = {v->tokens, end, 0};
    for (uint64_t i = 0; i < n; i++) {
        uint64_t l;
        pieces[i] = str(&tr, &l);
        lens[i] = (int)l;
        if (l > 1024) tr.bad = 1;
        scores[i] = v->scores ? ({ float f; memcpy(&f, v->scores + 4 * i, 4); f; }) : 0.0f;
        int32_t ty = 1;
        if (v->ttypes) memcpy(&ty, v->ttypes + 4 * i, 4);
        types[i] = (uint8_t)(ty >= 1 && ty <= 6 ? ty : 1);
    }
    int rc = tr.bad ? spq_fail(e, path, "corrupt tokenizer.ggml.tokens")
                    : spq_tok_build(&c->tok, (int)n, pieces, lens, scores, types, v->bos, v->eos, v->unk, e);
    c->tok.add_space_prefix = v->add_space;
    if (!rc && bpe) {
        uint64_t nm = v->n_merges;
        const char **ms = malloc(sizeof *ms * (nm + 1));
        int *ml = malloc(sizeof *ml * (nm + 1));
        rd mr = {v->merges, end, 0};
        for (uint64_t i = 0; ms && ml && i < nm && !mr.bad; i++) {
            uint64_t l;
            ms[i] = str(&mr, &l);
            ml[i] = (int)l;
            if (l > 2048) mr.bad = 1;
        }
        if (!ms || !ml) rc = spq_fail(e, path, "out of memory");
        else if (mr.bad) rc = spq_fail(e, path, "corrupt tokenizer.ggml.merges");
        else rc = spq_tok_make_bpe(&c->tok, v->pre, (int)nm, ms, ml, path, e);
        free(ms); free(ml);
        c->tok.add_space_prefix = v->add_space_set && v->add_space;
    }
    free(pieces); free(lens); free(scores); free(types);
    if (!rc && !c->cfg.vocab_size) c->cfg.vocab_size = (int)n;
    return rc;
}

/* One tensor info of the file. */
typedef struct { char name[96]; int ndim; uint64_t ne[4]; int type; uint64_t off; } info;

/* The runtime's (Hugging Face) name of a GGUF tensor into out; "" for tensors it does not use. */
static void hf_name(const char *gguf, char *out, size_t n)
{
    static const char *map[][2] = {
        {"attn_norm.weight", "input_layernorm.weight"}, {"attn_q.weight", "self_attn.q_proj.weight"},
        {"attn_k.weight", "self_attn.k_proj.weight"}, {"attn_v.weight", "self_attn.v_proj.weight"},
        {"attn_output.weight", "self_attn.o_proj.weight"}, {"ffn_norm.weight", "post_attention_layernorm.weight"},
        {"ffn_gate.weight", "mlp.gate_proj.weight"}, {"ffn_up.weight", "mlp.up_proj.weight"},
        {"ffn_down.weight", "mlp.down_proj.weight"}};
    int layer = -1;
    char what[64] = "";
    out[0] = 0;
    if (sscanf(gguf, "blk.%d.%63s", &layer, what) == 2) {
        for (size_t j = 0; j < sizeof map / sizeof map[0]; j++)
            if (!strcmp(what, map[j][0])) snprintf(out, n, "model.layers.%d.%s", layer, map[j][1]);
    } else if (!strcmp(gguf, "token_embd.weight")) snprintf(out, n, "model.embed_tokens.weight");
    else if (!strcmp(gguf, "output_norm.weight")) snprintf(out, n, "model.norm.weight");
    else if (!strcmp(gguf, "output.weight")) snprintf(out, n, "lm_head.weight");
    else if (!strcmp(gguf, "rope_freqs.weight")) snprintf(out, n, "rope_freqs.weight"); /* llama3 RoPE */
}

/* Add tensor t (its data at m + data + t->off) to c: F32/F16/BF16 and ggml's block formats
 * mapped as they are; q/k rows un-permuted to rotate-half order in a copy (the file's pages
 * of the original released). */
static int add_tensor(spq_ckpt *c, const info *t, const uint8_t *m, size_t fsz, uint64_t data, const char *path, spq_err *e)
{
    const spq_config *p = &c->cfg;
    spq_tensor o;
    memset(&o, 0, sizeof o);
    o.scale = 1.0f;
    o.ndim = t->ndim; /* GGUF dims are innermost first */
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->ne[d] == 0 || t->ne[d] > (1ull << 32)) return spq_fail(e, path, "tensor %s: bad dimension", t->name);
        o.shape[t->ndim - 1 - d] = (int64_t)t->ne[d];
        numel *= t->ne[d];
    }
    uint64_t bytes;
    int blk;
    size_t blk_bytes;
    int quant = spq_ggml_block((int)t->type, &blk, &blk_bytes) == 0;
    if (t->type == 0) { o.dtype = SPQ_F32; bytes = numel * 4; }
    else if (t->type == 1) { o.dtype = SPQ_F16; bytes = numel * 2; }
    else if (t->type == 30) { o.dtype = SPQ_BF16; bytes = numel * 2; }
    else if (quant) {
        if (t->ne[0] % (uint64_t)blk)
            return spq_fail(e, path, "tensor %s: %s rows of %llu weights, not a multiple of its block of %d", t->name,
                            spq_ggml_type_name((int)t->type), (unsigned long long)t->ne[0], blk);
        o.dtype = SPQ_GGML;
        o.gtype = (int)t->type;
        bytes = numel / (uint64_t)blk * blk_bytes;
    } else
        return spq_fail(e, path, "tensor %s: unsupported GGML type %u (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, "
                        "Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS)", t->name, (unsigned)t->type);
    if (t->off > fsz || data > fsz - t->off || bytes > fsz - data - t->off)
        return spq_fail(e, path, "tensor %s: data offset %llu out of range", t->name, (unsigned long long)t->off);
    const uint8_t *src = m + data + t->off;
    hf_name(t->name, o.name, sizeof o.name);
    if (!o.name[0]) return 0; /* tensors the runtime does not use */
    int permute = strstr(o.name, "q_proj") ? p->n_heads : strstr(o.name, "k_proj") ? p->n_kv_heads : 0;
    o.nbytes = (size_t)bytes;
    o.data = src;
    if (permute) {
        if (!(o.owned = malloc(o.nbytes))) return spq_fail(e, path, "out of memory");
        memcpy(o.owned, src, o.nbytes);
        o.data = o.owned;
        if (o.shape[0] % p->head_dim ||
            spq_unpermute_rope(o.owned, (int)(o.shape[0] / p->head_dim), p->head_dim, o.nbytes / (size_t)o.shape[0])) {
            free(o.owned);
            return spq_fail(e, path, "tensor %s: rows not a multiple of head_dim", o.name);
        }
        spq_tensor orig = o;
        orig.data = src;
        spq_ckpt_release(c, &orig);
    }
    if (!spq_ckpt_add(c, &o)) { free(o.owned); return spq_fail(e, path, "out of memory"); }
    return 0;
}

/* The llama hyperparameters in range (after the metadata). */
static int check_llama(spq_config *p, int rope_dim, const char *path, spq_err *e)
{
    if (!p->n_kv_heads) p->n_kv_heads = p->n_heads;
    if (p->n_heads <= 0 || p->dim <= 0) return spq_fail(e, path, "missing llama.* hyperparameters");
    p->head_dim = rope_dim ? rope_dim : p->dim / p->n_heads;
    if (p->n_heads > 1024 || p->n_kv_heads <= 0 || p->n_kv_heads > p->n_heads || p->head_dim <= 0 || p->head_dim > 1024 ||
        p->head_dim % 2)
        return spq_fail(e, path, "llama.attention.head_count %d / head_count_kv %d / rope.dimension_count %d out of range",
                        p->n_heads, p->n_kv_heads, p->head_dim);
    return 0;
}

/* The tensor infos after the metadata, and every llama tensor into c. */
static int load_tensors(spq_ckpt *c, rd *r, uint64_t nt, const uint8_t *m, size_t fsz, uint64_t align, const char *path,
                        spq_err *e)
{
    info *ti = calloc(nt, sizeof *ti);
    if (!ti) return spq_fail(e, path, "out of memory");
    for (uint64_t i = 0; i < nt && !r->bad; i++) {
        uint64_t nl;
        const char *nm = str(r, &nl);
        if (r->bad || nl >= sizeof ti[i].name) { r->bad = 1; break; }
        memcpy(ti[i].name, nm, nl);
        ti[i].ndim = (int)take(r, 4);
        if (ti[i].ndim < 1 || ti[i].ndim > 4) { r->bad = 1; break; }
        for (int d = 0; d < ti[i].ndim; d++) ti[i].ne[d] = take(r, 8);
        ti[i].type = (int)take(r, 4);
        ti[i].off = take(r, 8);
    }
    if (r->bad) { free(ti); return spq_fail(e, path, "truncated or corrupt GGUF tensor info"); }
    uint64_t data = ((uint64_t)(r->p - m) + align - 1) / align * align;
    int rc = 0;
    for (uint64_t i = 0; i < nt && !rc; i++) rc = add_tensor(c, &ti[i], m, fsz, data, path, e);
    free(ti);
    if (!rc && c->n == 0)
        rc = spq_fail(e, path, "none of its %llu tensors is a llama tensor (token_embd.weight, blk.N.attn_q.weight, ...)",
                      (unsigned long long)nt);
    return rc;
}

int spq_import_gguf(const char *path, spq_ckpt *c, spq_err *e)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return spq_fail(e, path, "cannot open: %s", strerror(errno));
    struct stat st;
    fstat(fd, &st);
    size_t fsz = (size_t)st.st_size;
    if (fsz < 24) { close(fd); return spq_fail(e, path, "truncated GGUF header"); }
    uint8_t *m = mmap(NULL, fsz, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) { close(fd); return spq_fail(e, path, "mmap failed"); }
    spq_ckpt_add_map(c, m, fsz, fd);
    rd r = {m + 4, m + fsz, 0};
    uint32_t ver = (uint32_t)take(&r, 4);
    uint64_t nt = take(&r, 8), nkv = take(&r, 8);
    if (ver < 2 || ver > 3) { spq_ckpt_free(c); return spq_fail(e, path, "unsupported GGUF version %u", ver); }
    if (nt > fsz / 24 || nkv > fsz / 12) { spq_ckpt_free(c); return spq_fail(e, path, "GGUF tensor or key count larger than the file"); }
    spq_config *p = &c->cfg;
    vocab v;
    memset(&v, 0, sizeof v);
    v.bos = 1; v.eos = 2; v.unk = 0; v.add_space = 1;
    meta mt = {"", 32, 0, NULL};
    p->norm_eps = 1e-5f; p->rope_theta = 10000.0f; p->max_seq = 2048;
    read_metadata(&r, nkv, p, &v, &mt);
    if (r.bad) { spq_ckpt_free(c); return spq_fail(e, path, "truncated or corrupt GGUF metadata"); }
    if (mt.align == 0 || mt.align > 4096 || (mt.align & (mt.align - 1))) { spq_ckpt_free(c); return spq_fail(e, path, "bad general.alignment"); }
    if (v.tokens && load_vocab(c, &v, m + fsz, path, e)) { spq_ckpt_free(c); return -1; }
    if (c->tok.n_vocab && mt.chat) snprintf(c->tok.chat, sizeof c->tok.chat, "%s", mt.chat);
    p->bos_id = v.bos;
    p->eos_id = v.eos;
    if (nt == 0) return 0; /* vocab-only file */
    if (strcmp(mt.arch, "llama")) { spq_ckpt_free(c); return spq_fail(e, path, "unsupported architecture '%s' (llama)", mt.arch); }
    if (check_llama(p, mt.rope_dim, path, e) || load_tensors(c, &r, nt, m, fsz, mt.align, path, e)) { spq_ckpt_free(c); return -1; }
    spq_tensor *emb = spq_ckpt_find(c, "model.embed_tokens.weight");
    if (emb && !p->vocab_size) p->vocab_size = (int)emb->shape[0];
    if (!spq_ckpt_find(c, "lm_head.weight")) p->tied = 1;
    return 0;
}
