/* spikeq.c — the command-line entry point: one binary, llama.cpp-style subcommands. */
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "tools/cli.h"

static const struct {
    const char *name, *help;
    int (*fn)(int, char **);
} cmds[] = {
    {"generate", "generate text from a prompt", cmd_generate},
    {"bench", "measure prompt and generation tokens/s", cmd_bench},
    {"perplexity", "WikiText-2 style perplexity of a text file", cmd_perplexity},
    {"eval", "zero-shot accuracy on HellaSwag, PIQA, ARC, ... (lm-eval-harness requests)", cmd_eval},
    {"quantize", "write a W8A8 (+ spike fallback) checkpoint", cmd_quantize},
    {"profile", "activation spike profile of every linear input", cmd_profile},
    {"convert", "write any supported model as .spq (F32/F16)", cmd_convert},
    {"info", "print config, tensors and plan of a model", cmd_info},
    {"logits", "top-K logits for a token sequence", cmd_logits},
    {"tokenize", "print the token ids of a text", cmd_tokenize},
    {"synth", "write a random-weight HF checkpoint of a real model's shape", cmd_synth},
    {"serve", "an OpenAI-compatible HTTP server with continuous batching", cmd_serve},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: spikeq COMMAND [options]   (spikeq COMMAND -h for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) fprintf(f, "  %-11s %s\n", cmds[i].name, cmds[i].help);
}

static uintptr_t hex(const char **p)
{
    uintptr_t v = 0;
    for (;; (*p)++) {
        char c = **p;
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (d < 0) return v;
        v = v * 16 + (uintptr_t)d;
    }
}

/* A model file truncated or rewritten in place while mapped makes the next read of a lost
 * page raise SIGBUS. Name the file (the mapping holding the faulting address, from
 * /proc/self/maps) and exit with a one-line error instead of dying on a signal. Only
 * async-signal-safe calls from here on. */
static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
    (void)sig; (void)uc;
    static char buf[1 << 18];
    const char *name = "a mapped model file";
    size_t nl = strlen(name), n = 0;
    int fd = open("/proc/self/maps", O_RDONLY);
    for (ssize_t k; fd >= 0 && n < sizeof buf - 1 && (k = read(fd, buf + n, sizeof buf - 1 - n)) > 0;) n += (size_t)k;
    buf[n] = 0;
    for (const char *l = buf; *l;) { /* "start-end perms offset dev inode   path" */
        const char *p = l, *eol = strchr(l, '\n');
        uintptr_t a = hex(&p);
        p++;
        uintptr_t b = hex(&p);
        const char *path = memchr(l, '/', eol ? (size_t)(eol - l) : strlen(l));
        if ((uintptr_t)si->si_addr >= a && (uintptr_t)si->si_addr < b && path) {
            name = path;
            nl = eol ? (size_t)(eol - path) : strlen(path);
            break;
        }
        if (!eol) break;
        l = eol + 1;
    }
    static const char pre[] = "spikeq: ", post[] = ": file changed size while in use (truncated under its mapping)\n";
    ssize_t w = write(2, pre, sizeof pre - 1) + write(2, name, nl) + write(2, post, sizeof post - 1);
    (void)w;
    _exit(1);
}

int main(int argc, char **argv)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigbus;
    sa.sa_flags = SA_SIGINFO;
    sigaction(SIGBUS, &sa, NULL);
    /* past a file-size limit, let write() fail with EFBIG so spq_write removes its temp file */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) { usage(stdout); return 0; }
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++)
        if (!strcmp(argv[1], cmds[i].name)) return cmds[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "spikeq: unknown command '%s' (spikeq -h lists the commands)\n", argv[1]);
    return 2;
}
