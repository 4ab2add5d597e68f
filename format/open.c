/* open.c — open a model by its kind: a directory or config.json (HF), a tokenizer file
 * alone, or by magic: spikeq .spq, GGUF, else llama2.c. */
#include "format/open.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static int has_suffix(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

int spq_open(const char *path, spq_ckpt *c, spq_err *e)
{
    memset(c, 0, sizeof *c);
    snprintf(c->path, sizeof c->path, "%s", path);
    struct stat st;
    if (stat(path, &st)) return spq_fail(e, path, "no such file or directory");
    if (S_ISDIR(st.st_mode)) return spq_import_hf(path, c, e);
    if (has_suffix(path, "config.json")) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%.*s", (int)(strlen(path) - strlen("config.json")), path);
        if (!dir[0]) strcpy(dir, ".");
        return spq_import_hf(dir, c, e);
    }
    if (has_suffix(path, "tokenizer.json") || has_suffix(path, "tokenizer.model")) { /* vocabulary only */
        int rc = has_suffix(path, ".json") ? spq_tok_load_hf_json(path, &c->tok, e) : spq_tok_load_spm(path, &c->tok, e);
        if (rc) return -1;
        c->cfg.vocab_size = c->tok.n_vocab;
        c->cfg.bos_id = c->tok.bos_id;
        c->cfg.eos_id = c->tok.eos_id;
        return 0;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return spq_fail(e, path, "cannot open");
    char magic[8] = {0};
    size_t got = fread(magic, 1, 8, f);
    fclose(f);
    if (got >= 8 && !memcmp(magic, "SPIKEQ\0\1", 8)) return spq_read(path, c, e);
    if (got < 8 && (has_suffix(path, ".spq") || has_suffix(path, ".gguf")))
        return spq_fail(e, path, "truncated: %zu bytes, too short for a header", got);
    if (got >= 4 && !memcmp(magic, "GGUF", 4)) return spq_import_gguf(path, c, e);
    if (has_suffix(path, ".spq")) return spq_fail(e, path, "not a spikeq checkpoint (wrong magic)");
    if (has_suffix(path, ".gguf")) return spq_fail(e, path, "not a GGUF file (wrong magic)");
    if (has_suffix(path, ".safetensors"))
        return spq_fail(e, path, "pass the model directory (with config.json), not the .safetensors file");
    return spq_import_llama2c(path, c, e);
}

