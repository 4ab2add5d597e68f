/* spq_io.c — the .spq checkpoint file: read (mmap, every field bounds-checked, tensor
 * checksums verified) and write (unnamed O_TMPFILE, fsync, link + rename: never a half file).
 *
 * Layout, all little-endian:
 *   0   magic "SPIKEQ\0\1"         8   u32 version (2)      12  u32 n_tensors
 *   16  u64 file_size              24  u64 tok_off   32 u64 tok_size
 *   40  u64 plan_off  48 u64 plan_size                    56  u64 table_off  64 u64 table_size
 *   72  u64 data_off               80  config: 13 x i32, 5 x f32 (96 bytes reserved)
 *   176 u64 checksum of bytes 0..175
 *   184 u64 XXH3 of the tokenizer, plan and table (version 1: 0)   (header = 192 bytes)
 *   tokenizer blob, plan JSON, tensor table, then 64-byte-aligned tensor data.
 * Table entry: u16 name_len, name, u8 dtype, u8 ndim, u8 act, u8 layout (version 1: 0),
 *   i64 shape[ndim], f32 scale, f32 act_scale, u64 offset, u64 nbytes, u64 checksum (version 2:
 *   XXH3-64, checked in the background; version 1: spq_hash64, checked on read).
 *   act: a fallback linear's activation format (dtype code); an I8 linear's activation grid:
 *   bits 0-3 the code width 4..8 (0 = 8), bit 4 one dynamic scale per token (0: per tensor);
 *   of a dtype 7 tensor (ggml blocks, stored by rows) the ggml type of its blocks.
 * An I8 linear may have a companion F32 tensor NAME_scale of its N rows (NAME ending in
 *   .weight): one scale per output channel, the tensor's scale field then 1.
 * Version 2 stores the linear weights in the kernels' panel layout, so the model runs them
 * from the mapped file: loading copies nothing and two processes share the pages. */
#include "format/ckpt.h"
#include "format/ggml_quants.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define HDR 192
/* fuzz builds skip the checksums so that mutated files reach the parsing behind them */
#ifdef FUZZING_BUILD_MODE_UNSAFE_FOR_PRODUCTION
#define FUZZING 1
#else
#define FUZZING 0
#endif
static const char MAGIC[8] = {'S', 'P', 'I', 'K', 'E', 'Q', 0, 1};

uint64_t spq_hash64(const void *p, size_t n)
{
    const uint8_t *b = p;
    const uint64_t P = 0x9E3779B97F4A7C15ull;
    uint64_t h[4] = {1, 2, 3, 4};
    size_t i = 0;
    for (; i + 32 <= n; i += 32)
        for (int j = 0; j < 4; j++) {
            uint64_t w;
            memcpy(&w, b + i + 8 * j, 8);
            h[j] = (h[j] ^ w) * P;
            h[j] ^= h[j] >> 29;
        }
    uint64_t r = n * P;
    for (int j = 0; j < 4; j++) r = (r ^ h[j]) * P + (uint64_t)j;
    for (; i < n; i++) r = (r ^ b[i]) * 0x100000001B3ull;
    return r ^ (r >> 31);
}

/* ---- config <-> 96 bytes ---- */
static void cfg_put(uint8_t *p, const spq_config *c)
{
    int32_t iv[13] = {c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads, c->head_dim,
                      c->vocab_size, c->max_seq, c->tied, c->bos_id, c->eos_id, c->rope_type, c->rope_orig_ctx};
    float fv[5] = {c->norm_eps, c->rope_theta, c->rope_factor, c->rope_low_freq, c->rope_high_freq};
    memcpy(p, iv, sizeof iv);
    memcpy(p + sizeof iv, fv, sizeof fv);
}

static void cfg_get(const uint8_t *p, spq_config *c)
{
    int32_t iv[13];
    float fv[5];
    memcpy(iv, p, sizeof iv);
    memcpy(fv, p + sizeof iv, sizeof fv);
    c->dim = iv[0]; c->hidden_dim = iv[1]; c->n_layers = iv[2]; c->n_heads = iv[3]; c->n_kv_heads = iv[4];
    c->head_dim = iv[5]; c->vocab_size = iv[6]; c->max_seq = iv[7]; c->tied = iv[8]; c->bos_id = iv[9];
    c->eos_id = iv[10]; c->rope_type = iv[11]; c->rope_orig_ctx = iv[12];
    c->norm_eps = fv[0]; c->rope_theta = fv[1]; c->rope_factor = fv[2]; c->rope_low_freq = fv[3];
    c->rope_high_freq = fv[4];
}

static uint64_t rd64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }
static uint32_t rd32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }

/* [off, off+size) inside [lo, file_size]? Overflow-safe. */
static int in_file(uint64_t off, uint64_t size, uint64_t lo, uint64_t fsz)
{
    return off >= lo && off <= fsz && size <= fsz - off;
}

int spq_read(const char *path, spq_ckpt *c, spq_err *e)
{
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return spq_fail(e, path, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || st.st_size < HDR) {
        close(fd);
        return spq_fail(e, path, "truncated: %lld bytes, the header alone is %d", (long long)st.st_size, HDR);
    }
    uint64_t fsz = (uint64_t)st.st_size;
    uint8_t *m = mmap(NULL, fsz, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) { close(fd); return spq_fail(e, path, "mmap failed: %s", strerror(errno)); }
    spq_ckpt_add_map(c, m, fsz, fd);
    if (memcmp(m, MAGIC, 8)) { spq_ckpt_free(c); return spq_fail(e, path, "not a spikeq checkpoint (wrong magic)"); }
    const char *bad = NULL;
    uint32_t ver = rd32(m + 8), nt = rd32(m + 12);
    uint64_t hsz = rd64(m + 16), tok_off = rd64(m + 24), tok_size = rd64(m + 32), plan_off = rd64(m + 40),
             plan_size = rd64(m + 48), tab_off = rd64(m + 56), tab_size = rd64(m + 64), data_off = rd64(m + 72);
    if (ver != 1 && ver != 2) {
        spq_ckpt_free(c);
        return spq_fail(e, path, "unsupported .spq version %u (this spikeq reads versions 1 and 2): requantize it", ver);
    }
    if (rd64(m + 176) != spq_hash64(m, 176) && !FUZZING) bad = "header checksum mismatch (corrupt header)";
    else if (hsz != fsz) bad = "file_size field differs from the file's size (truncated or appended)";
    else if (!in_file(tok_off, tok_size, HDR, fsz)) bad = "tokenizer offset/size out of range";
    else if (!in_file(plan_off, plan_size, HDR, fsz)) bad = "plan offset/size out of range";
    else if (!in_file(tab_off, tab_size, HDR, fsz)) bad = "tensor table offset/size out of range";
    else if (!in_file(data_off, 0, HDR, fsz)) bad = "data offset out of range";
    else if (nt == 0 || nt > 1000000 || (uint64_t)nt * 40 > tab_size) bad = "tensor count does not fit the table";
    if (bad) {
        spq_ckpt_free(c);
        return spq_fail(e, path, "%s", bad);
    }
    cfg_get(m + 80, &c->cfg);
    snprintf(c->path, sizeof c->path, "%s", path);
    if (tok_size && spq_tok_deserialize(m + tok_off, tok_size, &c->tok)) {
        spq_ckpt_free(c);
        return spq_fail(e, path, "corrupt tokenizer section");
    }
    if (plan_size) {
        c->plan_json = malloc(plan_size + 1);
        if (!c->plan_json) { spq_ckpt_free(c); return spq_fail(e, path, "out of memory"); }
        memcpy(c->plan_json, m + plan_off, plan_size);
        c->plan_json[plan_size] = 0;
    }
    const uint8_t *p = m + tab_off, *end = m + tab_off + tab_size;
    for (uint32_t i = 0; i < nt; i++) {
        spq_tensor t;
        memset(&t, 0, sizeof t);
        if (end - p < 6) { bad = "tensor table truncated"; break; }
        uint16_t nl;
        memcpy(&nl, p, 2);
        p += 2;
        if (nl == 0 || nl >= sizeof t.name || end - p < nl + 4) { bad = "tensor name length out of range"; break; }
        memcpy(t.name, p, nl);
        p += nl;
        t.dtype = p[0]; t.ndim = p[1]; t.act_fmt = p[2]; t.layout = p[3];
        p += 4;
        if (t.dtype == SPQ_I8) { /* the activation grid (see the layout above) */
            int b = t.act_fmt & 15;
            if ((t.act_fmt & 0xe0) || (b && (b < 4 || b > 8))) { bad = "INT8 activation grid out of range"; break; }
            t.act_bits = b ? b : 8;
            t.act_token = t.act_fmt >> 4;
            t.act_fmt = 0;
        }
        if (t.dtype == SPQ_GGML) { /* the act byte names the block type */
            t.gtype = t.act_fmt;
            t.act_fmt = 0;
            if (spq_ggml_gq(t.gtype) < 0 || t.layout != SPQ_ROWS) { bad = "ggml block type out of range"; break; }
        }
        if (t.ndim < 1 || t.ndim > 4) { bad = "tensor ndim out of range"; break; }
        if (t.layout != SPQ_ROWS && (ver == 1 || t.layout != SPQ_PANELS || t.ndim != 2)) { bad = "tensor layout out of range"; break; }
        if (!spq_dtype_size(t.dtype) && t.dtype != SPQ_CMPQ && t.dtype != SPQ_GGML) { bad = "unknown tensor dtype"; break; }
        if (end - p < 8 * t.ndim + 32) { bad = "tensor table truncated"; break; }
        uint64_t numel = 1;
        for (int d = 0; d < t.ndim; d++) {
            memcpy(&t.shape[d], p + 8 * d, 8);
            if (t.shape[d] <= 0 || t.shape[d] > (1ll << 32) || numel > (UINT64_MAX >> 33)) { bad = "tensor shape out of range"; break; }
            numel *= (uint64_t)t.shape[d];
        }
        if (bad) break;
        p += 8 * t.ndim;
        memcpy(&t.scale, p, 4);
        memcpy(&t.act_scale, p + 4, 4);
        uint64_t off = rd64(p + 8), nb = rd64(p + 16), hash = rd64(p + 24);
        p += 32;
        size_t want = t.layout == SPQ_PANELS ? spq_panel_bytes(t.dtype, t.shape[0], t.shape[1]) : numel * spq_dtype_size(t.dtype);
        if (t.dtype == SPQ_GGML) /* whole blocks per row (0 when they are not) */
            want = (size_t)(numel / (uint64_t)t.shape[t.ndim - 1]) * spq_tensor_row_bytes(&t);
        if (t.dtype == SPQ_CMPQ ? t.layout || t.ndim != 2 || nb < 64 || nb > fsz : !want || nb != want) { bad = "tensor byte size does not match its shape and dtype"; break; }
        if (!in_file(off, nb, data_off, fsz) || off % 64) { bad = "tensor data offset out of range"; break; }
        t.hash = hash;
        if (ver == 1 && spq_hash64(m + off, nb) != hash && !FUZZING) {
            spq_ckpt_free(c);
            return spq_fail(e, path, "tensor %s: checksum mismatch (corrupt data)", t.name);
        }
        t.data = m + off;
        t.nbytes = nb;
        if (!spq_ckpt_add(c, &t)) { bad = "out of memory"; break; }
    }
    if (bad) {
        char msg[128];
        snprintf(msg, sizeof msg, "%s (tensor %d)", bad, c->n);
        spq_ckpt_free(c);
        return spq_fail(e, path, "%s", msg);
    }
    if (spq_ckpt_validate(c, e)) { spq_ckpt_free(c); return -1; }
    /* after the checks that name what is wrong: a change they cannot see (a name, a scale,
     * a tokenizer piece) still differs from the sections' checksum */
    if (ver == 2 && !FUZZING && rd64(m + 184) != spq_hash_xxh3(m + HDR, tab_off + tab_size - HDR)) {
        spq_ckpt_free(c);
        return spq_fail(e, path, "checksum mismatch in the tokenizer, plan or tensor table (corrupt file)");
    }
    if (ver == 2 && !FUZZING && spq_ckpt_verify_start(c)) { spq_ckpt_free(c); return spq_fail(e, path, "out of memory"); }
    if (ver == 2 && !FUZZING && spq_ckpt_check(c, e)) { spq_ckpt_free(c); return -1; } /* checked here (sync) */
    return 0;
}

/* ---- writing ---- */
static int put(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }
static int pad_to(FILE *f, uint64_t *pos, uint64_t align)
{
    static const uint8_t z[64];
    uint64_t n = (align - *pos % align) % align;
    *pos += n;
    return put(f, z, n);
}

static size_t entry_size(const spq_tensor *t) { return 2 + strlen(t->name) + 4 + 8 * (size_t)t->ndim + 32; }

/* Is t stored in the panel layout? The linears the model applies (projections, an untied
 * head) whose dtype the kernels read as it is; embeddings, norms and E5M2 (widened to F16 at
 * load) stay in rows. */
static int store_panels(const spq_tensor *t)
{
    return t->layout == SPQ_PANELS ||
           (spq_is_linear_name(t->name) && t->ndim == 2 && spq_panel_bytes(t->dtype, t->shape[0], t->shape[1]));
}

/* Is t in rows in memory and to be packed into panels as it is written? */
static int to_pack(const spq_tensor *t) { return t->layout == SPQ_ROWS && store_panels(t); }

static size_t stored_bytes(const spq_tensor *t)
{
    return to_pack(t) ? spq_panel_bytes(t->dtype, t->shape[0], t->shape[1]) : t->nbytes;
}

static int write_file(const char *path, const spq_ckpt *c, spq_err *e);

/* Ctrl-C and SIGTERM are held until the file is complete and renamed (or removed), so
 * an interrupted quantize leaves the whole checkpoint or nothing. */
int spq_write(const char *path, const spq_ckpt *c, spq_err *e)
{
    sigset_t block, old;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &block, &old);
    int rc = write_file(path, c, e);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static int write_file(const char *path, const spq_ckpt *c, spq_err *e)
{
    if (spq_ckpt_validate(c, e)) return -1;
    if (c->n <= 0) return spq_fail(e, path, "no tensors to write");
    /* An unnamed file (O_TMPFILE) in the target's directory: if the process dies mid-write
     * (kill -9, or SIGBUS from a source file truncated under its mapping) nothing is left
     * behind. Where the filesystem lacks O_TMPFILE, a named temp file removed on every error. */
    char tmp[1100], dir[1100];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    int fd = open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666), named = fd < 0;
    snprintf(tmp, sizeof tmp, "%s.tmp.XXXXXX", path);
    if (named) {
        fd = mkstemp(tmp);
        if (fd < 0) return spq_fail(e, path, "cannot create a temporary file beside it: %s", strerror(errno));
        mode_t um = umask(0);
        umask(um);
        fchmod(fd, 0666 & ~um); /* mkstemp makes 0600; a checkpoint is an ordinary file */
    }
    FILE *f = fdopen(fd, "wb");
    if (!f) { close(fd); if (named) unlink(tmp); return spq_fail(e, path, "cannot write"); }
    uint8_t *tokb = NULL;
    size_t tok_size = c->tok.n_vocab ? spq_tok_serialize(&c->tok, &tokb) : 0;
    size_t plan_size = c->plan_json ? strlen(c->plan_json) : 0;
    uint64_t tab_size = 0;
    for (int i = 0; i < c->n; i++) tab_size += entry_size(&c->t[i]);
    uint64_t tok_off = HDR, plan_off = tok_off + tok_size, tab_off = plan_off + plan_size;
    uint64_t data_off = (tab_off + tab_size + 63) & ~63ull, pos = data_off;
    uint64_t *offs = malloc(sizeof *offs * (unsigned)c->n), *hash = malloc(sizeof *hash * (unsigned)c->n);
    uint8_t *meta = malloc(tab_off + tab_size - HDR);
    size_t maxp = 0;
    for (int i = 0; offs && i < c->n; i++) {
        offs[i] = pos;
        size_t sb = stored_bytes(&c->t[i]);
        pos = (pos + sb + 63) & ~63ull;
        if (to_pack(&c->t[i]) && sb > maxp) maxp = sb;
    }
    /* one tensor at a time is packed here: the buffer is the largest packed tensor */
    void *pk = maxp ? aligned_alloc(64, (maxp + 63) & ~(size_t)63) : NULL;
    int rc = !offs || !hash || !meta || (maxp && !pk) ? -1 : 0;
    uint64_t fsz = offs ? offs[c->n - 1] + stored_bytes(&c->t[c->n - 1]) : 0;
    /* data first (its checksums go into the table), then the sections before it */
    pos = data_off;
    if (!rc) rc = fseeko(f, (off_t)data_off, SEEK_SET);
    for (int i = 0; i < c->n && !rc; i++) {
        const spq_tensor *t = &c->t[i];
        const void *d = t->data;
        size_t nb = stored_bytes(t);
        if (to_pack(t)) { spq_tensor_pack(t, pk); d = pk; }
        hash[i] = spq_hash_xxh3(d, nb);
        rc = pad_to(f, &pos, 64) || put(f, d, nb) || ((pos += nb), 0);
    }
    uint8_t *q = meta;
    if (!rc) {
        if (tok_size) memcpy(q, tokb, tok_size);
        q += tok_size;
        if (plan_size) memcpy(q, c->plan_json, plan_size);
        q += plan_size;
    }
    for (int i = 0; i < c->n && !rc; i++) {
        const spq_tensor *t = &c->t[i];
        uint16_t nl = (uint16_t)strlen(t->name);
        int act = t->dtype == SPQ_GGML ? t->gtype
                  : t->dtype != SPQ_I8 ? t->act_fmt : (t->act_bits && t->act_bits != 8 ? t->act_bits : 0) | (t->act_token ? 16 : 0);
        uint8_t b4[4] = {(uint8_t)t->dtype, (uint8_t)t->ndim, (uint8_t)act, (uint8_t)(store_panels(t) ? SPQ_PANELS : SPQ_ROWS)};
        uint64_t tail[3] = {offs[i], stored_bytes(t), hash[i]};
        memcpy(q, &nl, 2); q += 2;
        memcpy(q, t->name, nl); q += nl;
        memcpy(q, b4, 4); q += 4;
        memcpy(q, t->shape, 8 * (size_t)t->ndim); q += 8 * (size_t)t->ndim;
        memcpy(q, &t->scale, 4); q += 4;
        memcpy(q, &t->act_scale, 4); q += 4;
        memcpy(q, tail, sizeof tail); q += sizeof tail;
    }
    if (!rc) {
        uint8_t h[HDR] = {0};
        memcpy(h, MAGIC, 8);
        uint32_t ver = 2, nt = (uint32_t)c->n;
        memcpy(h + 8, &ver, 4);
        memcpy(h + 12, &nt, 4);
        uint64_t f8[8] = {fsz, tok_off, tok_size, plan_off, plan_size, tab_off, tab_size, data_off};
        memcpy(h + 16, f8, sizeof f8);
        cfg_put(h + 80, &c->cfg);
        uint64_t hh = spq_hash64(h, 176), mh = spq_hash_xxh3(meta, tab_off + tab_size - HDR);
        memcpy(h + 176, &hh, 8);
        memcpy(h + 184, &mh, 8);
        rc = fseeko(f, 0, SEEK_SET) || put(f, h, HDR) || put(f, meta, tab_off + tab_size - HDR);
    }
    free(tokb);
    free(offs);
    free(hash);
    free(meta);
    free(pk);
    if (!rc) rc = fflush(f) || fsync(fileno(f));
    int err = errno;
    if (!rc && !named) { /* give the complete file a temporary name, then rename it over path */
        char proc[64];
        snprintf(proc, sizeof proc, "/proc/self/fd/%d", fileno(f));
        for (int k = 0; k < 100; k++) {
            snprintf(tmp, sizeof tmp, "%s.tmp.%d.%d", path, (int)getpid(), k);
            if (!linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW)) { named = 1; break; }
            if (errno != EEXIST) break;
        }
        if (!named) { rc = -1; err = errno; }
    }
    if (fclose(f)) { rc = -1; err = errno; }
    if (!rc && rename(tmp, path)) { rc = -1; err = errno; }
    if (rc) {
        if (named) unlink(tmp);
        return spq_fail(e, path, "write failed, no file written: %s", strerror(err));
    }
    return 0;
}
