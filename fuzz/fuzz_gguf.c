/* fuzz_gguf.c — the GGUF reader (metadata, vocabulary incl. merges, tensor infos), then use. */
#include "fuzz/fuzz.h"
#include "format/open.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static int fd = -1;
    char path[64];
    fuzz_file(&fd, "fuzz.gguf", d, n, path, sizeof path);
    spq_ckpt c;
    spq_err e;
    memset(&c, 0, sizeof c);
    if (spq_import_gguf(path, &c, &e)) return 0;
    fuzz_use(&c);
    spq_ckpt_free(&c);
    return 0;
}
