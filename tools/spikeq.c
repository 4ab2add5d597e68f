/* spikeq.c — the command-line entry point: one binary, llama.cpp-style subcommands. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "tools/cli.h"

static const struct {
    const char *name, *help;
    int (*fn)(int, char **);
} cmds[] = {
    {"generate", "generate text from a prompt", cmd_generate},
    {"bench", "measure prompt and generation tokens/s", cmd_bench},
    {"perplexity", "WikiText-2 style perplexity of a text file", cmd_perplexity},
    {"quantize", "write a W8A8 (+ spike fallback) checkpoint", cmd_quantize},
    {"profile", "activation spike profile of every linear input", cmd_profile},
    {"convert", "write any supported model as .spq (F32/F16)", cmd_convert},
    {"info", "print config, tensors and plan of a model", cmd_info},
    {"logits", "top-K logits for a token sequence", cmd_logits},
    {"tokenize", "print the token ids of a text", cmd_tokenize},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: spikeq COMMAND [options]   (spikeq COMMAND -h for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) fprintf(f, "  %-11s %s\n", cmds[i].name, cmds[i].help);
}

int main(int argc, char **argv)
{
    /* past a file-size limit, let write() fail with EFBIG so spq_write removes its temp file */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) { usage(stdout); return 0; }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "spikeq: unknown command '%s' (spikeq -h lists the commands)\n", argv[1]);
    return 2;
}
