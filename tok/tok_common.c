/* tok_common.c — what both tokenizer families use: the piece order and look-up, the merge
 * heap, UTF-8 lengths, reading a tokenizer file. */
#include "tok/tok_internal.h"
#include "tok/tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int spq_piece_cmp(const char *a, int la, const char *b, int lb)
{
    int c = memcmp(a, b, (size_t)(la < lb ? la : lb));
    return c ? c : la - lb;
}

int spq_tok_lookup(const spq_tokenizer *t, const char *s, int len)
{
    int lo = 0, hi = t->n_vocab - 1, found = -1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, id = t->sorted[mid];
        int c = spq_piece_cmp(t->pieces[id], t->lens[id], s, len);
        if (c < 0) lo = mid + 1;
        else { if (!c) found = id; hi = mid - 1; }
    }
    return found; /* lowest id among duplicates */
}

static int better(const spq_bigram *x, const spq_bigram *y) /* x pops before y */
{
    return x->key > y->key || (x->key == y->key && x->left < y->left);
}

int spq_heap_push(spq_heap *h, spq_bigram b)
{
    if (h->n == h->cap) {
        long cap = h->cap ? 2 * h->cap : 1024;
        spq_bigram *na = realloc(h->a, sizeof *na * (size_t)cap);
        if (!na) return -1;
        h->a = na; h->cap = cap;
    }
    long i = h->n++;
    while (i > 0 && better(&b, &h->a[(i - 1) / 2])) { h->a[i] = h->a[(i - 1) / 2]; i = (i - 1) / 2; }
    h->a[i] = b;
    return 0;
}

spq_bigram spq_heap_pop(spq_heap *h)
{
    spq_bigram top = h->a[0], last = h->a[--h->n];
    long i = 0;
    for (;;) {
        long c = 2 * i + 1;
        if (c >= h->n) break;
        if (c + 1 < h->n && better(&h->a[c + 1], &h->a[c])) c++;
        if (!better(&h->a[c], &last)) break;
        h->a[i] = h->a[c];
        i = c;
    }
    if (h->n) h->a[i] = last;
    return top;
}

int spq_utf8_len(unsigned char c)
{
    return c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
}

char *spq_tok_read_file(const char *path, size_t *n, int *opened)
{
    FILE *f = fopen(path, "rb");
    *opened = f != NULL;
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = sz > 0 && sz < (1l << 30) ? malloc((size_t)sz + 1) : NULL;
    if (buf && fread(buf, 1, (size_t)sz, f) != (size_t)sz) { free(buf); buf = NULL; }
    fclose(f);
    if (buf) { buf[sz] = 0; *n = (size_t)sz; }
    return buf;
}
