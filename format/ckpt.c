/* ckpt.c — the in-memory checkpoint: tensor table, validation, and opening any format. */
#include "format/ckpt.h"

#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "kernels/kernels.h"
#include "format/cmpq_blob.h"
#include "format/ggml_quants.h"

size_t spq_dtype_size(int dtype)
{
    switch (dtype) {
    case SPQ_F32: return 4;
    case SPQ_F16: case SPQ_BF16: return 2;
    case SPQ_I8: case SPQ_E4M3: case SPQ_E5M2: return 1;
    default: return 0;
    }
}

const char *spq_dtype_name(int dtype)
{
    static const char *names[] = {"f32", "f16", "bf16", "i8", "e4m3", "e5m2", "cmpq", "ggml"};
    return dtype >= 0 && dtype < SPQ_NDTYPES ? names[dtype] : "?";
}

spq_tensor *spq_ckpt_add(spq_ckpt *c, const spq_tensor *t)
{
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 64;
        spq_tensor *nt = realloc(c->t, sizeof *nt * (size_t)cap);
        if (!nt) return NULL;
        c->t = nt;
        c->cap = cap;
    }
    c->t[c->n] = *t;
    return &c->t[c->n++];
}

spq_tensor *spq_ckpt_find(const spq_ckpt *c, const char *name)
{
    for (int i = 0; i < c->n; i++)
        if (!strcmp(c->t[i].name, name)) return &c->t[i];
    return NULL;
}

int spq_ckpt_add_map(spq_ckpt *c, void *p, size_t n, int fd)
{
    if (c->n_maps == 64) return -1;
    c->maps[c->n_maps] = p;
    c->map_fds[c->n_maps] = fd;
    c->map_sizes[c->n_maps++] = n;
    return 0;
}

/* The background check of a .spq's tensor checksums: one thread hashes the tensors in file
 * order while the model runs, so that loading costs no full read of the file. */
static int check_size(const spq_ckpt *c, spq_err *e);

struct spq_verifier {
    pthread_t thr;
    const spq_ckpt *c;
    int sync;          /* checked on the caller's thread (SPIKEQ_VERIFY=sync, or no thread) */
    atomic_int stop;
    atomic_int state;  /* 0 running, 1 every tensor matched, -1 tensor `bad` did not, -2 out of
                        * memory, 2 stopped: the file changed size */
    int bad;
};

static void *verify_main(void *arg)
{
    struct spq_verifier *v = arg;
    const spq_ckpt *c = v->c;
    XXH3_state_t *st = XXH3_createState();
    for (int i = 0; i < c->n && !atomic_load(&v->stop) && st; i++) {
        spq_err e;
        if (check_size(c, &e)) { /* truncated under the map: the size check reports it */
            XXH3_freeState(st);
            atomic_store(&v->state, 2);
            return NULL;
        }
        /* in 8 MiB pieces, so that freeing the checkpoint stops it at once */
        const uint8_t *d = c->t[i].data;
        size_t n = c->t[i].nbytes, CH = (size_t)8 << 20;
        XXH3_64bits_reset(st);
        for (size_t o = 0; o < n && !atomic_load(&v->stop); o += CH) XXH3_64bits_update(st, d + o, n - o < CH ? n - o : CH);
        if (atomic_load(&v->stop)) break;
        if (XXH3_64bits_digest(st) != c->t[i].hash) {
            XXH3_freeState(st);
            v->bad = i;
            atomic_store(&v->state, -1);
            return NULL;
        }
    }
    int ok = st != NULL;
    XXH3_freeState(st);
    atomic_store(&v->state, ok ? 1 : -2);
    return NULL;
}

/* The background thread: the lowest priority (nice 19), not SCHED_IDLE: it yields to the
 * forward pass's threads but still runs when other processes fill every core, so that
 * waiting for it ends. */
static void *verify_thread(void *arg)
{
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
    return verify_main(arg);
}

int spq_ckpt_verify_start(spq_ckpt *c)
{
    struct spq_verifier *v = calloc(1, sizeof *v);
    if (!v) return -1;
    v->c = c;
    const char *mode = getenv("SPIKEQ_VERIFY");
    if (mode && !strcmp(mode, "sync")) v->sync = 1;
    else if (pthread_create(&v->thr, NULL, verify_thread, v)) v->sync = 1; /* no thread: check here */
    if (v->sync) verify_main(v);
    c->verify = v;
    return 0;
}

uint64_t spq_hash_xxh3(const void *p, size_t n) { return XXH3_64bits(p, n); }

static int verify_failed(const spq_ckpt *c, spq_err *e)
{
    const struct spq_verifier *v = c->verify;
    if (atomic_load(&c->verify->state) == -2) return spq_fail(e, c->path, "out of memory checking the checksums");
    return spq_fail(e, c->path, "tensor %s: checksum mismatch (corrupt data)", c->t[v->bad].name);
}

int spq_ckpt_verify(const spq_ckpt *c, spq_err *e)
{
    struct spq_verifier *v = c->verify;
    if (!v) return 0;
    while (!atomic_load(&v->state)) usleep(1000); /* the thread is joined by spq_ckpt_free */
    int st = atomic_load(&v->state);
    return st < 0 ? verify_failed(c, e) : st == 2 ? check_size(c, e) : 0;
}

/* A file truncated or rewritten in place under a MAP_PRIVATE mapping makes every access past
 * its new end raise SIGBUS; the open descriptor sees the inode's current size. (Replacing the
 * file by rename, as spikeq's writer does, leaves the mapping valid.) */
int spq_ckpt_check(const spq_ckpt *c, spq_err *e)
{
    if (c->verify && atomic_load(&c->verify->state) < 0) return verify_failed(c, e);
    return check_size(c, e);
}

static int check_size(const spq_ckpt *c, spq_err *e)
{
    for (int i = 0; i < c->n_maps; i++) {
        struct stat st;
        if (fstat(c->map_fds[i], &st) == 0 && (uint64_t)st.st_size == (uint64_t)c->map_sizes[i]) continue;
        char link[64], path[1024];
        snprintf(link, sizeof link, "/proc/self/fd/%d", c->map_fds[i]);
        ssize_t k = readlink(link, path, sizeof path - 1);
        path[k > 0 ? k : 0] = 0;
        return spq_fail(e, k > 0 ? path : c->path, "file changed size while in use (was %zu bytes, now %lld): reload it",
                        c->map_sizes[i], (long long)st.st_size);
    }
    return 0;
}

void spq_ckpt_free(spq_ckpt *c)
{
    if (c->verify) {
        atomic_store(&c->verify->stop, 1);
        if (!c->verify->sync) pthread_join(c->verify->thr, NULL);
        free(c->verify);
    }
    for (int i = 0; i < c->n; i++) free(c->t[i].owned);
    free(c->t);
    for (int i = 0; i < c->n_maps; i++) { munmap(c->maps[i], c->map_sizes[i]); close(c->map_fds[i]); }
    spq_tok_free(&c->tok);
    free(c->plan_json);
    memset(c, 0, sizeof *c);
}

void spq_ckpt_release(const spq_ckpt *c, const spq_tensor *t)
{
    const uint8_t *d = t->data;
    long pg = sysconf(_SC_PAGESIZE);
    for (int i = 0; i < c->n_maps; i++) {
        const uint8_t *b = c->maps[i];
        if (d < b || d + t->nbytes > b + c->map_sizes[i]) continue;
        /* the pages wholly inside the tensor: its neighbours' data stays mapped */
        uintptr_t lo = ((uintptr_t)d + (uintptr_t)pg - 1) & ~((uintptr_t)pg - 1);
        uintptr_t hi = ((uintptr_t)d + t->nbytes) & ~((uintptr_t)pg - 1);
        if (hi > lo) madvise((void *)lo, hi - lo, MADV_DONTNEED);
        return;
    }
}

int spq_is_linear_name(const char *name)
{
    size_t n = strlen(name);
    return (n > 12 && !strcmp(name + n - 12, "_proj.weight")) || !strcmp(name, "lm_head.weight");
}

size_t spq_panel_bytes(int dtype, int64_t N, int64_t K)
{
    /* the packing sizes round N and K up in int: keep that rounding in range */
    if (N <= 0 || K <= 0 || N > INT_MAX - 64 || K > INT_MAX - 64) return 0;
    switch (dtype) {
    case SPQ_I8: return spq_pack_q8_wsum_at((int)N, (int)K) + 4 * (size_t)((N + 63) / 64 * 64);
    case SPQ_E4M3: return spq_pack_q8_size((int)N, (int)K);
    case SPQ_F16: case SPQ_BF16: return spq_pack_f_size((int)N, (int)K, 2);
    case SPQ_F32: return spq_pack_f_size((int)N, (int)K, 4);
    default: return 0;
    }
}

void spq_tensor_pack(const spq_tensor *t, void *out)
{
    int N = (int)t->shape[0], K = (int)t->shape[1];
    if (t->dtype == SPQ_I8)
        spq_pack_q8(t->data, N, K, out, (int32_t *)((char *)out + spq_pack_q8_wsum_at(N, K)));
    else if (t->dtype == SPQ_E4M3) spq_pack_fp8(t->data, N, K, out);
    else spq_pack_f(t->data, N, K, (int)spq_dtype_size(t->dtype), out);
}

/* Row-major bytes of panel-packed t (the inverse of spq_tensor_pack) into out. */
static void unpack(const spq_tensor *t, uint8_t *out)
{
    int N = (int)t->shape[0], K = (int)t->shape[1], kp = spq_kpad(K);
    size_t el = spq_dtype_size(t->dtype);
    const uint8_t *b = t->data;
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            size_t src = t->dtype == SPQ_I8 || t->dtype == SPQ_E4M3
                             ? (size_t)(n / SPQ_NR) * kp * SPQ_NR + (size_t)(k / 4) * 64 + (size_t)(n % SPQ_NR) * 4 + (k & 3)
                             : ((size_t)(n / SPQ_NR) * K * SPQ_NR + (size_t)k * SPQ_NR + n % SPQ_NR) * el;
            memcpy(out + ((size_t)n * K + k) * el, b + src, el);
        }
}

size_t spq_tensor_numel(const spq_tensor *t)
{
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= (size_t)t->shape[i];
    return n;
}

size_t spq_tensor_row_bytes(const spq_tensor *t)
{
    int64_t k = t->ndim ? t->shape[t->ndim - 1] : 1;
    if (t->dtype == SPQ_GGML) {
        int el;
        size_t bb;
        return spq_ggml_block(t->gtype, &el, &bb) || k % el ? 0 : (size_t)(k / el) * bb;
    }
    return (size_t)k * spq_dtype_size(t->dtype);
}

const char *spq_tensor_type_name(const spq_tensor *t)
{
    return t->dtype == SPQ_GGML ? spq_ggml_type_name(t->gtype) : spq_dtype_name(t->dtype);
}

int spq_tensor_to_f32(const spq_tensor *t, float *out)
{
    size_t n = spq_tensor_numel(t);
    if (t->dtype == SPQ_GGML) { /* row by row (each row whole blocks), by every thread for big tensors */
        int64_t k = t->shape[t->ndim - 1], rows = (int64_t)(n / (size_t)k);
        size_t rb = spq_tensor_row_bytes(t);
#pragma omp parallel for schedule(static) if (n > (1u << 20))
        for (int64_t r = 0; r < rows; r++) spq_ggml_dequant(t->gtype, (const uint8_t *)t->data + (size_t)r * rb, out + (size_t)r * k, k);
        return 0;
    }
    if (t->dtype == SPQ_CMPQ) {
        if (spq_cmpq_dequant(t->data, out)) memset(out, 0, 4 * n);
        return 0;
    }
    if (t->layout == SPQ_PANELS) {
        spq_tensor r = *t;
        uint8_t *rows = malloc(n * spq_dtype_size(t->dtype));
        if (!rows) return -1;
        unpack(t, rows);
        r.layout = SPQ_ROWS;
        r.data = rows;
        spq_tensor_to_f32(&r, out);
        free(rows);
        return 0;
    }
    const uint8_t *b = t->data;
    /* a 7B model's tensors are 10^7-10^8 elements: converted by every thread (each element
     * on its own, so the result does not depend on the count) */
#pragma omp parallel for schedule(static) if (n > (1u << 20))
    for (size_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case SPQ_F32: memcpy(&out[i], b + 4 * i, 4); break;
        case SPQ_F16: { uint16_t h; memcpy(&h, b + 2 * i, 2); out[i] = spq_f16_to_f32(h); } break;
        case SPQ_BF16: { uint16_t h; memcpy(&h, b + 2 * i, 2); out[i] = spq_bf16_to_f32(h); } break;
        case SPQ_I8: out[i] = (float)(int8_t)b[i] * t->scale; break;
        case SPQ_E4M3: out[i] = spq_e4m3_to_f32(b[i]) * t->scale; break;
        case SPQ_E5M2: out[i] = spq_e5m2_to_f32(b[i]) * t->scale; break;
        default: out[i] = 0; break;
        }
    }
    return 0;
}

/* One expected tensor: name, rows, cols (cols 0 for vectors); linear: 1 CMPQ allowed, 2 the
 * panel layout allowed (what the model applies as a linear and never reads by rows). */
const spq_tensor *spq_ckpt_channel_scales(const spq_ckpt *c, const char *weight)
{
    char sn[sizeof c->t->name + 8];
    snprintf(sn, sizeof sn, "%s_scale", weight);
    return spq_ckpt_find(c, sn);
}

static int expect(const spq_ckpt *c, const char *name, int64_t r, int64_t k, int linear, spq_err *e)
{
    const spq_tensor *t = spq_ckpt_find(c, name);
    if (!t) return spq_fail(e, c->path, "tensor %s is missing", name);
    int nd = k ? 2 : 1;
    if (t->ndim != nd || t->shape[0] != r || (k && t->shape[1] != k))
        return spq_fail(e, c->path, "tensor %s has shape [%lld%s%lld], config says [%lld%s%lld]", name,
                        (long long)t->shape[0], t->ndim > 1 ? "," : "", t->ndim > 1 ? (long long)t->shape[1] : 0LL,
                        (long long)r, k ? "," : "", (long long)k);
    if (t->dtype == SPQ_CMPQ) /* its blob was checked by spq_ckpt_validate */
        return linear & 1 ? 0 : spq_fail(e, c->path, "tensor %s: CMPQ is for linear projections only", name);
    if (t->dtype == SPQ_GGML) { /* block rows: embeddings and linears (not norms) */
        if (!k || !spq_tensor_row_bytes(t) || t->layout != SPQ_ROWS)
            return spq_fail(e, c->path, "tensor %s: ggml type %d with rows of %lld values", name, t->gtype, (long long)k);
        if (t->nbytes != (size_t)r * spq_tensor_row_bytes(t))
            return spq_fail(e, c->path, "tensor %s: %zu bytes for %lld rows of %s", name, t->nbytes, (long long)r,
                            spq_ggml_type_name(t->gtype));
        return 0;
    }
    if (!spq_dtype_size(t->dtype)) return spq_fail(e, c->path, "tensor %s has unknown dtype %d", name, t->dtype);
    if (t->layout == SPQ_PANELS ? !(linear & 2) || t->nbytes != spq_panel_bytes(t->dtype, t->shape[0], t->shape[1])
                                : t->nbytes != spq_tensor_numel(t) * spq_dtype_size(t->dtype))
        return spq_fail(e, c->path, "tensor %s: %zu bytes for %zu elements of %s", name, t->nbytes,
                        spq_tensor_numel(t), spq_dtype_name(t->dtype));
    if (!(t->scale > 0 && t->scale < 1e30f)) /* every dtype: 1 for floats, the step for codes */
        return spq_fail(e, c->path, "tensor %s has invalid scale %g", name, (double)t->scale);
    if (!(t->act_scale >= 0 && t->act_scale < 1e30f))
        return spq_fail(e, c->path, "tensor %s has invalid activation scale %g", name, (double)t->act_scale);
    if (t->act_bits && (t->act_bits < 4 || t->act_bits > 8))
        return spq_fail(e, c->path, "tensor %s has activation bits %d (4 to 8)", name, t->act_bits);
    const spq_tensor *cs = spq_ckpt_channel_scales(c, name);
    if (cs) { /* per-output-channel weight scales */
        if (!(linear & 1) || t->dtype != SPQ_I8 || cs->dtype != SPQ_F32 || cs->ndim != 1 || cs->shape[0] != r ||
            cs->layout != SPQ_ROWS || cs->nbytes != 4 * (size_t)r)
            return spq_fail(e, c->path, "tensor %s: per-channel scales need an INT8 projection and %lld F32 values", cs->name,
                            (long long)r);
        for (int64_t i = 0; i < r; i++) {
            float v;
            memcpy(&v, (const char *)cs->data + 4 * i, 4);
            if (!(v > 0 && v < 1e30f)) return spq_fail(e, c->path, "tensor %s: scale %lld is %g", cs->name, (long long)i, (double)v);
        }
    }
    return 0;
}

static int cmp_name(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

int spq_ckpt_validate(const spq_ckpt *c, spq_err *e)
{
    const spq_config *p = &c->cfg;
    if (p->dim <= 0 || p->n_layers <= 0 || p->n_heads <= 0 || p->n_kv_heads <= 0 || p->hidden_dim <= 0 ||
        p->vocab_size <= 0 || p->head_dim <= 0 || p->max_seq <= 0 || p->dim > 65536 || p->hidden_dim > 262144 ||
        p->n_layers > 1024 || p->vocab_size > 1 << 22 || p->head_dim > 1024 || p->n_heads > 1024)
        return spq_fail(e, c->path, "invalid model config (dim %d, layers %d, heads %d/%d, vocab %d)", p->dim,
                        p->n_layers, p->n_heads, p->n_kv_heads, p->vocab_size);
    if (p->bos_id < -1 || p->bos_id >= p->vocab_size || p->eos_id < -1 || p->eos_id >= p->vocab_size)
        return spq_fail(e, c->path, "bos id %d or eos id %d outside the vocabulary (%d)", p->bos_id, p->eos_id, p->vocab_size);
    if (c->tok.n_vocab && c->tok.n_vocab > p->vocab_size)
        return spq_fail(e, c->path, "tokenizer has %d pieces, more than the model's vocabulary (%d)", c->tok.n_vocab, p->vocab_size);
    if (p->n_heads % p->n_kv_heads)
        return spq_fail(e, c->path, "n_heads %d is not a multiple of n_kv_heads %d", p->n_heads, p->n_kv_heads);
    if (p->head_dim % 2) return spq_fail(e, c->path, "head_dim %d is odd", p->head_dim);
    if (!(p->norm_eps > 0) || !(p->rope_theta > 0))
        return spq_fail(e, c->path, "invalid rms_norm_eps or rope_theta");
    for (int i = 0; i < c->n; i++) { /* every CMPQ blob, whatever its name: dequantisation reads them all */
        const spq_tensor *t = &c->t[i];
        spq_cmpq_hdr h;
        const char *bad = t->dtype != SPQ_CMPQ ? NULL
                          : t->ndim != 2      ? "CMPQ tensor is not 2-D"
                                              : spq_cmpq_check(t->data, t->nbytes, t->shape[0], t->shape[1], &h);
        if (bad) return spq_fail(e, c->path, "tensor %s: %s", t->name, bad);
    }
    /* duplicates: sort the names (a hostile file may hold a million tensors) */
    const char **names = malloc(sizeof *names * ((size_t)c->n + 1));
    if (!names) return spq_fail(e, c->path, "out of memory");
    for (int i = 0; i < c->n; i++) names[i] = c->t[i].name;
    qsort(names, (size_t)c->n, sizeof *names, cmp_name);
    for (int i = 1; i < c->n; i++)
        if (!strcmp(names[i], names[i - 1])) {
            spq_fail(e, c->path, "tensor %s appears twice", names[i]);
            free(names);
            return -1;
        }
    free(names);
    int D = p->dim, H = p->hidden_dim, q = p->n_heads * p->head_dim, kv = p->n_kv_heads * p->head_dim;
    char nm[96];
    if (expect(c, "model.embed_tokens.weight", p->vocab_size, D, 0, e)) return -1;
    if (expect(c, "model.norm.weight", D, 0, 0, e)) return -1;
    if (!p->tied && expect(c, "lm_head.weight", p->vocab_size, D, 2, e)) return -1;
    for (int l = 0; l < p->n_layers; l++) {
        static const char *fmt[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
                                    "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"};
        int64_t rows[] = {q, kv, kv, D, H, H, D}, cols[] = {D, D, D, q, D, D, H};
        for (int j = 0; j < 7; j++) {
            snprintf(nm, sizeof nm, "model.layers.%d.%s.weight", l, fmt[j]);
            if (expect(c, nm, rows[j], cols[j], 3, e)) return -1;
        }
        snprintf(nm, sizeof nm, "model.layers.%d.input_layernorm.weight", l);
        if (expect(c, nm, D, 0, 0, e)) return -1;
        snprintf(nm, sizeof nm, "model.layers.%d.post_attention_layernorm.weight", l);
        if (expect(c, nm, D, 0, 0, e)) return -1;
    }
    return 0;
}

int spq_file_int(double x)
{
    return x >= -2147483648.0 && x <= 2147483647.0 ? (int)x : INT_MIN;
}

float spq_file_float(double x)
{
    return fabs(x) <= 3.0e38 ? (float)x : NAN;
}

int spq_unpermute_rope(void *rows, int n_heads, int head_dim, size_t rowbytes)
{
    char *tmp = malloc(rowbytes * (size_t)head_dim), *b = rows;
    if (!tmp) return -1;
    for (int h = 0; h < n_heads; h++) {
        char *head = b + (size_t)h * head_dim * rowbytes;
        for (int i = 0; i < head_dim / 2; i++)
            for (int j = 0; j < 2; j++)
                memcpy(tmp + ((size_t)j * head_dim / 2 + i) * rowbytes, head + (size_t)(2 * i + j) * rowbytes, rowbytes);
        memcpy(head, tmp, rowbytes * (size_t)head_dim);
    }
    free(tmp);
    return 0;
}
