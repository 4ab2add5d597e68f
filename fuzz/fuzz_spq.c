/* fuzz_spq.c — the .spq reader (header, tokenizer blob, plan, tensor table), then use. */
#include "fuzz/fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static int fd = -1;
    char path[64];
    fuzz_file(&fd, "fuzz.spq", d, n, path, sizeof path);
    spq_ckpt c;
    spq_err e;
    if (spq_read(path, &c, &e)) return 0;
    fuzz_use(&c);
    spq_ckpt_free(&c);
    return 0;
}
