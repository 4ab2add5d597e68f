/* fuzz_evaltask.c — the zero-shot task readers (tools/eval_tasks.c) on arbitrary files:
 * the first byte picks the task, the rest is its file (PIQA: u16 length of the labels
 * file first). Every item that loads must have its strings and a gold index in range. */
#include <stdlib.h>

#include "fuzz/fuzz.h"
#include "tools/eval_tasks.h"

int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n)
{
    static const char *names[] = {"hellaswag", "piqa", "arc_easy", "winogrande", "lambada", "copa"};
    static const char *files[] = {"hellaswag_val_full.txt", "piqa_valid.jsonl", "arc_easy.jsonl", "winogrande.jsonl",
                                  "lambada_openai.jsonl", "copa.jsonl"};
    static char dir[64];
    fuzz_dir(dir, sizeof dir, "ev");
    if (n < 3) return 0;
    int k = d[0] % 6;
    d++; n--;
    if (k == 1) { /* PIQA: its labels file first */
        size_t L = (size_t)d[0] | (size_t)d[1] << 8;
        if (L > n - 2) L = n - 2;
        fuzz_put(dir, "piqa_valid-labels.lst", d + 2, L);
        d += 2 + L; n -= 2 + L;
    }
    fuzz_put(dir, files[k], d, n);
    ev_task t;
    char err[4600];
    if (ev_task_load(dir, names[k], 0, &t, err, sizeof err)) {
        if (!err[0]) abort(); /* a refusal says why */
        return 0;
    }
    for (int i = 0; i < t.n_items; i++) {
        const ev_item *it = &t.items[i];
        if (it->n < 1 || it->gold < 0 || it->gold >= (t.kind == EV_GREEDY ? 1 : it->n)) abort();
        for (int j = 0; j < it->n; j++)
            if (!it->context[j] || !it->cont[j] || strlen(it->context[j]) > n || strlen(it->cont[j]) > n + 32) abort();
    }
    ev_task_free(&t);
    return 0;
}
