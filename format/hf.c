/* hf.c — import a Hugging Face model directory: config.json, model.safetensors or shards
 * listed in model.safetensors.index.json (F32/F16/BF16, mmapped, zero-copy), and
 * tokenizer.model when present, else tokenizer.json (byte-level BPE). LlamaForCausalLM and
 * MistralForCausalLM. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/open.h"
#include "tok/chat.h"

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
    if (b && fread(b, 1, (size_t)sz, f) != (size_t)sz) { free(b); b = NULL; }
    fclose(f);
    if (b) { b[sz] = 0; if (n) *n = (size_t)sz; }
    return b;
}

static double num(const cJSON *o, const char *k, double dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, k);
    if (cJSON_IsArray(v)) v = cJSON_GetArrayItem(v, 0); /* eos_token_id may be a list */
    return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

static int inum(const cJSON *o, const char *k, double dflt) { return spq_file_int(num(o, k, dflt)); }
static float fnum(const cJSON *o, const char *k, double dflt) { return spq_file_float(num(o, k, dflt)); }

static int parse_config(const char *dir, spq_config *p, spq_err *e)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *s = slurp(path, NULL);
    if (!s) return spq_fail(e, path, "cannot read (an HF model directory needs config.json)");
    cJSON *j = cJSON_Parse(s);
    free(s);
    if (!j) return spq_fail(e, path, "invalid JSON");
    int rc = 0;
    const cJSON *arch = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(j, "architectures"), 0);
    const char *a = cJSON_IsString(arch) ? arch->valuestring : "(none)";
    if (strcmp(a, "LlamaForCausalLM") && strcmp(a, "MistralForCausalLM")) {
        rc = spq_fail(e, path, "unsupported architecture %s (LlamaForCausalLM, MistralForCausalLM)", a);
        goto out;
    }
    p->dim = inum(j, "hidden_size", 0);
    p->hidden_dim = inum(j, "intermediate_size", 0);
    p->n_layers = inum(j, "num_hidden_layers", 0);
    p->n_heads = inum(j, "num_attention_heads", 0);
    p->n_kv_heads = inum(j, "num_key_value_heads", p->n_heads);
    p->head_dim = inum(j, "head_dim", p->n_heads > 0 ? p->dim / p->n_heads : 0);
    p->vocab_size = inum(j, "vocab_size", 0);
    p->max_seq = inum(j, "max_position_embeddings", 2048);
    p->norm_eps = fnum(j, "rms_norm_eps", 1e-6);
    p->tied = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "tie_word_embeddings"));
    p->bos_id = inum(j, "bos_token_id", 1);
    p->eos_id = inum(j, "eos_token_id", 2);
    /* transformers 5 nests RoPE under rope_parameters; older files use rope_theta + rope_scaling */
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(j, "rope_parameters");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(j, "rope_scaling");
    p->rope_theta = fnum(j, "rope_theta", cJSON_IsObject(rp) ? num(rp, "rope_theta", 10000) : 10000);
    const cJSON *sc = cJSON_IsObject(rs) ? rs : (cJSON_IsObject(rp) ? rp : NULL);
    if (sc) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(sc, "rope_type");
        if (!cJSON_IsString(t)) t = cJSON_GetObjectItemCaseSensitive(sc, "type");
        const char *ty = cJSON_IsString(t) ? t->valuestring : "default";
        if (!strcmp(ty, "llama3")) {
            p->rope_type = 1;
            p->rope_factor = fnum(sc, "factor", 8);
            p->rope_low_freq = fnum(sc, "low_freq_factor", 1);
            p->rope_high_freq = fnum(sc, "high_freq_factor", 4);
            p->rope_orig_ctx = inum(sc, "original_max_position_embeddings", 8192);
        } else if (strcmp(ty, "default")) {
            rc = spq_fail(e, path, "unsupported rope scaling type %s (default, llama3)", ty);
        }
    }
out:
    cJSON_Delete(j);
    return rc;
}

static int dtype_of(const char *s)
{
    if (!strcmp(s, "F32")) return SPQ_F32;
    if (!strcmp(s, "F16")) return SPQ_F16;
    if (!strcmp(s, "BF16")) return SPQ_BF16;
    return -1;
}

/* mmap one shard and add its tensors. */
static int load_shard(const char *path, spq_ckpt *c, spq_err *e)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return spq_fail(e, path, "cannot open shard: %s", strerror(errno));
    struct stat st;
    fstat(fd, &st);
    uint64_t fsz = (uint64_t)st.st_size, hl;
    if (fsz < 8 || pread(fd, &hl, 8, 0) != 8) { close(fd); return spq_fail(e, path, "truncated safetensors file"); }
    if (hl > fsz - 8 || hl > (100u << 20)) { close(fd); return spq_fail(e, path, "safetensors header length %llu runs past the end of the file", (unsigned long long)hl); }
    char *m = mmap(NULL, fsz, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) { close(fd); return spq_fail(e, path, "mmap failed"); }
    if (spq_ckpt_add_map(c, m, fsz, fd)) { munmap(m, fsz); close(fd); return spq_fail(e, path, "too many shards"); }
    cJSON *j = cJSON_ParseWithLength(m + 8, hl);
    if (!cJSON_IsObject(j)) { cJSON_Delete(j); return spq_fail(e, path, "invalid safetensors header JSON (not an object)"); }
    const char *data = m + 8 + hl;
    uint64_t dsz = fsz - 8 - hl;
    int rc = 0;
    for (const cJSON *it = j->child; it && !rc; it = it->next) {
        if (!it->string || !strcmp(it->string, "__metadata__")) continue;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(it, "dtype");
        const cJSON *sh = cJSON_GetObjectItemCaseSensitive(it, "shape");
        const cJSON *of = cJSON_GetObjectItemCaseSensitive(it, "data_offsets");
        if (!cJSON_IsString(dt) || !cJSON_IsArray(sh) || cJSON_GetArraySize(of) != 2) {
            rc = spq_fail(e, path, "tensor %s: malformed header entry", it->string);
            break;
        }
        spq_tensor t;
        memset(&t, 0, sizeof t);
        if (strlen(it->string) >= sizeof t.name) { rc = spq_fail(e, path, "tensor name too long"); break; }
        strcpy(t.name, it->string);
        t.dtype = dtype_of(dt->valuestring);
        if (t.dtype < 0) {
            /* tensors the runtime does not use (e.g. rotary inv_freq) may have any dtype */
            if (strstr(t.name, "rotary_emb")) continue;
            rc = spq_fail(e, path, "tensor %s has unsupported dtype %s (F32, F16, BF16)", t.name, dt->valuestring);
            break;
        }
        t.ndim = cJSON_GetArraySize(sh);
        if (t.ndim < 1 || t.ndim > 4) { rc = spq_fail(e, path, "tensor %s: %d dimensions", t.name, t.ndim); break; }
        double numel = 1;
        for (int d = 0; d < t.ndim; d++) {
            double v = cJSON_GetArrayItem(sh, d)->valuedouble;
            if (!(v >= 1 && v < 4e9)) { rc = spq_fail(e, path, "tensor %s: bad shape", t.name); break; }
            t.shape[d] = (int64_t)v;
            numel *= v;
        }
        if (rc) break;
        double b0 = cJSON_GetArrayItem(of, 0)->valuedouble, b1 = cJSON_GetArrayItem(of, 1)->valuedouble;
        if (!(b0 >= 0 && b1 >= b0 && b1 <= (double)dsz)) {
            rc = spq_fail(e, path, "tensor %s: data offsets [%.0f, %.0f) outside the %llu data bytes", t.name, b0, b1,
                          (unsigned long long)dsz);
            break;
        }
        if (b1 - b0 != numel * (double)spq_dtype_size(t.dtype)) {
            rc = spq_fail(e, path, "tensor %s: %.0f bytes do not match its shape and dtype", t.name, b1 - b0);
            break;
        }
        t.data = data + (uint64_t)b0;
        t.nbytes = (size_t)(b1 - b0);
        t.scale = 1.0f;
        if (!spq_ckpt_add(c, &t)) rc = spq_fail(e, path, "out of memory");
    }
    cJSON_Delete(j);
    return rc;
}


/* The chat format tokenizer_config.json's chat_template writes (a string, or a list of named
 * templates whose "default" counts), into tok->chat; nothing when absent or unknown. */
static void chat_format(const char *dir, spq_tokenizer *tok)
{
    char path[1100];
    snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
    FILE *f = fopen(path, "rb");
    if (!f) return;
    char *txt = NULL;
    long n = fseek(f, 0, SEEK_END) ? -1 : ftell(f);
    if (n > 0 && n < (64 << 20) && !fseek(f, 0, SEEK_SET) && (txt = malloc((size_t)n + 1)) && fread(txt, 1, (size_t)n, f) == (size_t)n)
        txt[n] = 0;
    else { free(txt); txt = NULL; }
    fclose(f);
    cJSON *j = txt ? cJSON_Parse(txt) : NULL, *t = cJSON_GetObjectItem(j, "chat_template"), *it;
    const char *tmpl = cJSON_GetStringValue(t);
    cJSON *list = cJSON_IsArray(t) ? t : NULL;
    cJSON_ArrayForEach(it, list) {
        const char *nm = cJSON_GetStringValue(cJSON_GetObjectItem(it, "name"));
        if (nm && !strcmp(nm, "default")) tmpl = cJSON_GetStringValue(cJSON_GetObjectItem(it, "template"));
    }
    const char *fmt = tmpl ? spq_chat_detect(tmpl, strlen(tmpl)) : NULL;
    if (fmt) snprintf(tok->chat, sizeof tok->chat, "%s", fmt);
    cJSON_Delete(j);
    free(txt);
}

int spq_import_hf(const char *dir, spq_ckpt *c, spq_err *e)
{
    if (parse_config(dir, &c->cfg, e)) return -1;
    char path[1100];
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    struct stat st;
    int rc = 0;
    if (!stat(path, &st)) {
        char *s = slurp(path, NULL);
        cJSON *j = s ? cJSON_Parse(s) : NULL;
        free(s);
        const cJSON *wm = cJSON_GetObjectItemCaseSensitive(j, "weight_map");
        if (!cJSON_IsObject(wm)) { cJSON_Delete(j); spq_ckpt_free(c); return spq_fail(e, path, "no weight_map"); }
        /* each distinct shard once */
        const char *seen[64];
        int ns = 0;
        for (const cJSON *it = wm->child; it && !rc; it = it->next) {
            if (!cJSON_IsString(it)) continue;
            int dup = 0;
            for (int i = 0; i < ns; i++) dup |= !strcmp(seen[i], it->valuestring);
            if (dup) continue;
            if (ns == 64 || strchr(it->valuestring, '/')) { rc = spq_fail(e, path, "bad shard list"); break; }
            seen[ns++] = it->valuestring;
            char sp[1400];
            snprintf(sp, sizeof sp, "%s/%s", dir, it->valuestring);
            if (stat(sp, &st)) { rc = spq_fail(e, sp, "missing shard listed in model.safetensors.index.json"); break; }
            rc = load_shard(sp, c, e);
        }
        cJSON_Delete(j);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        rc = load_shard(path, c, e);
    }
    if (!rc && c->cfg.tied && spq_ckpt_find(c, "lm_head.weight")) c->cfg.tied = 0;
    if (!rc) {
        snprintf(path, sizeof path, "%s/tokenizer.model", dir);
        if (!stat(path, &st)) rc = spq_tok_load_spm(path, &c->tok, e);
        else {
            snprintf(path, sizeof path, "%s/tokenizer.json", dir);
            if (!stat(path, &st)) rc = spq_tok_load_hf_json(path, &c->tok, e);
            /* byte-level vocabularies name no BOS/EOS of their own: config.json does */
            if (!rc && c->cfg.bos_id >= 0 && c->cfg.bos_id < c->tok.n_vocab) c->tok.bos_id = c->cfg.bos_id;
            if (!rc && c->cfg.eos_id >= 0 && c->cfg.eos_id < c->tok.n_vocab) c->tok.eos_id = c->cfg.eos_id;
        }
    }
    if (!rc && c->tok.n_vocab) chat_format(dir, &c->tok);
    if (rc) spq_ckpt_free(c);
    return rc;
}
