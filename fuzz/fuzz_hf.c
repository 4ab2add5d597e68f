/* fuzz_hf.c — an HF model directory: config.json + model.safetensors (header and data), then
 * use. Input: u16 length L, L bytes of config.json, the rest is model.safetensors. */
#include <stdlib.h>

#include "fuzz/fuzz.h"
#include "models/open.h"

static void put(const char *dir, const char *name, const uint8_t *d, size_t n)
{
    char p[512];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    FILE *f = fopen(p, "wb");
    if (!f || fwrite(d, 1, n, f) != n) abort();
    fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static char dir[64];
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/dev/shm/spq-fuzz-hf-XXXXXX");
        if (!mkdtemp(dir)) { snprintf(dir, sizeof dir, "/tmp/spq-fuzz-hf-XXXXXX"); if (!mkdtemp(dir)) abort(); }
    }
    if (n < 2) return 0;
    size_t L = (size_t)d[0] | (size_t)d[1] << 8;
    if (L > n - 2) L = n - 2;
    put(dir, "config.json", d + 2, L);
    put(dir, "model.safetensors", d + 2 + L, n - 2 - L);
    spq_ckpt c;
    spq_err e;
    memset(&c, 0, sizeof c);
    if (spq_import_hf(dir, &c, &e)) return 0;
    fuzz_use(&c);
    spq_ckpt_free(&c);
    return 0;
}
