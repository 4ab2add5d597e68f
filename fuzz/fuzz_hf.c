/* fuzz_hf.c — an HF model directory: config.json + model.safetensors (header and data), then
 * use. Input: u16 length L, L bytes of config.json, the rest is model.safetensors. */
#include <stdlib.h>

#include "fuzz/fuzz.h"
#include "format/open.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static char dir[64];
    fuzz_dir(dir, sizeof dir, "hf");
    if (n < 2) return 0;
    size_t L = (size_t)d[0] | (size_t)d[1] << 8;
    if (L > n - 2) L = n - 2;
    fuzz_put(dir, "config.json", d + 2, L);
    fuzz_put(dir, "model.safetensors", d + 2 + L, n - 2 - L);
    spq_ckpt c;
    spq_err e;
    memset(&c, 0, sizeof c);
    if (spq_import_hf(dir, &c, &e)) return 0;
    fuzz_use(&c);
    spq_ckpt_free(&c);
    return 0;
}
