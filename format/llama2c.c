/* llama2c.c — import karpathy's llama2.c .bin checkpoints (FP32, interleaved RoPE).
 * Header: 7 x int32 {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len};
 * a negative vocab_size means a separate classifier follows the weights. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "format/open.h"

static int add(spq_ckpt *c, const char *name, const float **p, int64_t r, int64_t k, int copy)
{
    spq_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.dtype = SPQ_F32;
    t.ndim = k ? 2 : 1;
    t.shape[0] = r;
    t.shape[1] = k;
    t.scale = 1.0f;
    t.nbytes = (size_t)r * (size_t)(k ? k : 1) * 4;
    t.data = *p;
    if (copy) {
        t.owned = malloc(t.nbytes);
        if (!t.owned) return -1;
        memcpy(t.owned, *p, t.nbytes);
        t.data = t.owned;
    }
    *p += t.nbytes / 4;
    return spq_ckpt_add(c, &t) ? 0 : (free(t.owned), -1);
}

int spq_import_llama2c(const char *path, spq_ckpt *c, spq_err *e)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return spq_fail(e, path, "cannot open: %s", strerror(errno));
    struct stat st;
    fstat(fd, &st);
    if (st.st_size < 28) { close(fd); return spq_fail(e, path, "not a model file (too short for a llama2.c header)"); }
    int32_t h[7];
    if (pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h) { close(fd); return spq_fail(e, path, "cannot read header"); }
    int shared = h[5] > 0, vocab = shared ? h[5] : -h[5];
    spq_config *p = &c->cfg;
    p->dim = h[0]; p->hidden_dim = h[1]; p->n_layers = h[2]; p->n_heads = h[3]; p->n_kv_heads = h[4];
    p->vocab_size = vocab; p->max_seq = h[6]; p->tied = shared;
    if (p->dim <= 0 || p->hidden_dim <= 0 || p->n_layers <= 0 || p->n_heads <= 0 || p->n_kv_heads <= 0 ||
        vocab <= 0 || p->max_seq <= 0 || p->dim % p->n_heads || p->dim > 65536 || p->hidden_dim > 262144 ||
        p->n_layers > 1024 || vocab > 1 << 22 || p->max_seq > 1 << 22 || p->n_heads > p->dim ||
        p->n_kv_heads > p->n_heads) {
        close(fd);
        return spq_fail(e, path, "unrecognised model format (not .spq, GGUF, an HF directory, or a valid llama2.c header)");
    }
    p->head_dim = p->dim / p->n_heads;
    p->norm_eps = 1e-5f; p->rope_theta = 10000.0f; p->bos_id = 1; p->eos_id = 2;
    int64_t D = p->dim, H = p->hidden_dim, L = p->n_layers, kv = (int64_t)p->n_kv_heads * p->head_dim, V = vocab;
    int64_t floats = V * D + L * (2 * D + D * D + 2 * kv * D + D * D + 3 * D * H) + D + (int64_t)p->max_seq * p->head_dim;
    int64_t need = 28 + 4 * (floats + (shared ? 0 : V * D));
    if (st.st_size < need) {
        close(fd);
        return spq_fail(e, path, "truncated llama2.c checkpoint: %lld bytes, the header's shapes need %lld",
                        (long long)st.st_size, (long long)need);
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) { close(fd); return spq_fail(e, path, "mmap failed"); }
    spq_ckpt_add_map(c, m, (size_t)st.st_size, fd);
    const float *w = (const float *)((const char *)m + 28);
    const float *emb = w;
    char nm[96];
    int rc = add(c, "model.embed_tokens.weight", &w, V, D, 0);
    /* per-kind arrays stacked over layers */
    const float *att_norm = w; w += L * D;
    const float *wq = w; w += L * D * D;
    const float *wk = w; w += L * kv * D;
    const float *wv = w; w += L * kv * D;
    const float *wo = w; w += L * D * D;
    const float *ffn_norm = w; w += L * D;
    const float *w1 = w; w += L * H * D;
    const float *w2 = w; w += L * D * H;
    const float *w3 = w; w += L * H * D;
    const float *fnorm = w; w += D;
    w += (int64_t)p->max_seq * p->head_dim; /* precomputed RoPE tables: recomputed at load */
    for (int l = 0; l < L && !rc; l++) {
#define ADD(fmt, arr, r, k, cp) (snprintf(nm, sizeof nm, fmt, l), add(c, nm, &arr, r, k, cp))
        rc = ADD("model.layers.%d.input_layernorm.weight", att_norm, D, 0, 0) ||
             ADD("model.layers.%d.self_attn.q_proj.weight", wq, D, D, 1) ||
             ADD("model.layers.%d.self_attn.k_proj.weight", wk, kv, D, 1) ||
             ADD("model.layers.%d.self_attn.v_proj.weight", wv, kv, D, 0) ||
             ADD("model.layers.%d.self_attn.o_proj.weight", wo, D, D, 0) ||
             ADD("model.layers.%d.post_attention_layernorm.weight", ffn_norm, D, 0, 0) ||
             ADD("model.layers.%d.mlp.gate_proj.weight", w1, H, D, 0) ||
             ADD("model.layers.%d.mlp.down_proj.weight", w2, D, H, 0) ||
             ADD("model.layers.%d.mlp.up_proj.weight", w3, H, D, 0);
#undef ADD
        if (!rc) {
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.q_proj.weight", l);
            spq_tensor *q = spq_ckpt_find(c, nm);
            snprintf(nm, sizeof nm, "model.layers.%d.self_attn.k_proj.weight", l);
            spq_tensor *k = spq_ckpt_find(c, nm);
            rc = spq_unpermute_rope(q->owned, p->n_heads, p->head_dim, 4 * (size_t)D) ||
                 spq_unpermute_rope(k->owned, p->n_kv_heads, p->head_dim, 4 * (size_t)D);
        }
    }
    if (!rc) rc = add(c, "model.norm.weight", &fnorm, D, 0, 0);
    if (!rc && !shared) rc = add(c, "lm_head.weight", &w, V, D, 0);
    (void)emb;
    if (rc) { spq_ckpt_free(c); return spq_fail(e, path, "out of memory"); }
    return 0;
}
