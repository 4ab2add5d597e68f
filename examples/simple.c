/* simple.c — the smallest complete use of libspikeq: load a model, tokenize a prompt,
 * generate greedily, print the text. Build against an installed spikeq:
 *   cc simple.c -o simple $(pkg-config --cflags --libs spikeq)
 *   ./simple MODEL [N] [PROMPT] */
#include <spikeq.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL [N_PREDICT] [PROMPT]\n", argv[0]);
        return 1;
    }
    const char *path = argv[1], *prompt = argc > 3 ? argv[3] : "The Linux kernel";
    int n_predict = argc > 2 ? atoi(argv[2]) : 32;
    char err[512];

    /* the model: weights and tokenizer */
    spikeq_model *model = spikeq_model_load(path, err, sizeof err);
    if (!model) {
        fprintf(stderr, "simple: %s\n", err);
        return 1;
    }

    /* the prompt's tokens, BOS first */
    int n_prompt = -spikeq_tokenize(model, prompt, (int32_t)strlen(prompt), NULL, 0, 1, 0);
    spikeq_token *tokens = malloc(sizeof(spikeq_token) * (size_t)(n_prompt + n_predict));
    if (!tokens || spikeq_tokenize(model, prompt, (int32_t)strlen(prompt), tokens, n_prompt, 1, 0) != n_prompt) {
        fprintf(stderr, "simple: cannot tokenize the prompt\n");
        return 1;
    }

    /* a context for one sequence with room for the prompt and the continuation */
    spikeq_context_params cp = spikeq_context_default_params();
    cp.n_ctx = n_prompt + n_predict;
    cp.n_batch = n_prompt;
    spikeq_context *ctx = spikeq_context_new(model, &cp, err, sizeof err);
    if (!ctx) {
        fprintf(stderr, "simple: %s\n", err);
        return 1;
    }
    spikeq_sampler_params sp = spikeq_sampler_default_params();
    sp.temp = 0; /* greedy */
    spikeq_sampler *smpl = spikeq_sampler_new(&sp);
    spikeq_batch batch = spikeq_batch_init(n_prompt);

    /* the prompt in one batch, logits of its last token only */
    for (int i = 0; i < n_prompt; i++) spikeq_batch_add(&batch, tokens[i], i, 0, i == n_prompt - 1);
    printf("%s", prompt);
    int n = n_prompt;
    char piece[256];
    while (n < n_prompt + n_predict) {
        if (spikeq_decode(ctx, &batch)) {
            fprintf(stderr, "simple: %s\n", spikeq_context_error(ctx));
            return 1;
        }
        const float *logits = spikeq_get_logits(ctx, batch.n_tokens - 1);
        spikeq_token next = spikeq_sampler_sample(smpl, logits, spikeq_n_vocab(model));
        if (next == spikeq_token_eos(model)) break;
        int len = spikeq_token_to_piece(model, tokens[n - 1], next, piece, sizeof piece);
        if (len > 0) fwrite(piece, 1, (size_t)len, stdout);
        fflush(stdout);
        tokens[n] = next;
        /* the next batch: the new token at the next position */
        batch.n_tokens = 0;
        spikeq_batch_add(&batch, next, n, 0, 1);
        n++;
    }
    printf("\n");
    fprintf(stderr, "simple: %d tokens generated with %d threads, %s kernels\n", n - n_prompt, spikeq_n_threads(ctx), spikeq_isa(ctx));

    spikeq_batch_free(&batch);
    spikeq_sampler_free(smpl);
    spikeq_context_free(ctx);
    spikeq_model_free(model);
    free(tokens);
    return 0;
}
