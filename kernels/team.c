/* team.c — barrier, splits and the stealing work loop of a team of threads (team.h). */
#include "kernels/team.h"

#include <sched.h>
#ifdef _OPENMP
#include <omp.h>
#endif

/* Spins before a waiting thread yields its core: about the span of a barrier between two
 * steps that end together; a longer wait (the other core is taken, or more threads than
 * cores) gives the core to whoever can use it. */
#define SPINS 4096
#define HINT_STEP 512 /* bytes fetched between two looks at the barrier */

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

void spq_team_init(spq_team *tm, int nt, const struct spq_kernels *k)
{
    /* only what nt threads use: the team is set up on every forward pass */
    tm->nt = nt < 1 ? 1 : nt > SPQ_TEAM_MAX ? SPQ_TEAM_MAX : nt;
    tm->k = k;
    tm->hint_max = 0;
    atomic_init(&tm->arrived, 0);
    atomic_init(&tm->gen, 0);
    for (int i = 0; i < tm->nt; i++) {
        atomic_init(&tm->span[i].fb, 0);
        tm->hint[i].p = NULL;
        tm->hint[i].stride = 0;
        tm->hint[i].lanes = 1;
        atomic_init(&tm->hint[i].left, 0);
    }
}

spq_thr spq_team_member(spq_team *tm)
{
#ifdef _OPENMP
    return (spq_thr){tm, omp_get_thread_num(), omp_get_num_threads()};
#else
    return (spq_thr){tm, 0, 1};
#endif
}

void spq_team_hint(const spq_thr *t, const void *p, size_t bytes, size_t stride, int lanes)
{
    spq_hint *h = &t->team->hint[t->id];
    lanes = lanes < 1 ? 1 : lanes > 4 ? 4 : lanes;
    size_t cap = t->team->hint_max / (size_t)lanes;
    h->p = p;
    h->stride = stride;
    h->lanes = lanes;
    atomic_store_explicit(&h->left, bytes < cap ? bytes : cap, memory_order_relaxed);
}

/* Fetch the next piece of this thread's hint (HINT_STEP bytes over its lanes); 0 when none
 * is left. */
static int fetch_hint(spq_hint *h)
{
    size_t left = atomic_load_explicit(&h->left, memory_order_relaxed);
    if (!left) return 0;
    size_t step = HINT_STEP / (size_t)h->lanes & ~(size_t)63, n = left < step ? left : step;
    for (int l = 0; l < h->lanes; l++)
        for (size_t o = 0; o < n; o += 64) __builtin_prefetch(h->p + (size_t)l * h->stride + o, 0, 3);
    h->p += n;
    atomic_store_explicit(&h->left, left - n, memory_order_relaxed);
    return 1;
}

void spq_team_sync(const spq_thr *t)
{
    if (t->nt == 1) return;
    spq_team *tm = t->team;
    int g = atomic_load_explicit(&tm->gen, memory_order_acquire);
    if (atomic_fetch_add_explicit(&tm->arrived, 1, memory_order_acq_rel) == t->nt - 1) {
        /* the last to arrive: reset the count before it releases the others */
        atomic_store_explicit(&tm->arrived, 0, memory_order_relaxed);
        atomic_store_explicit(&tm->gen, g + 1, memory_order_release);
        return;
    }
    spq_hint *h = &tm->hint[t->id];
    for (int spin = 0; atomic_load_explicit(&tm->gen, memory_order_acquire) == g; spin++) {
        if (fetch_hint(h)) spin--;
        else if (spin < SPINS) cpu_relax();
        else sched_yield();
    }
}

void spq_split(const spq_thr *t, int n, int *i0, int *i1)
{
    /* rounded up: thread 0 has the extra item (a decode step's single row) */
    *i0 = (int)(((long)n * t->id + t->nt - 1) / t->nt);
    *i1 = (int)(((long)n * (t->id + 1) + t->nt - 1) / t->nt);
}

float spq_team_max(const spq_thr *t, float v)
{
    if (t->nt == 1) return v;
    /* two buffers by barrier parity: a thread still reading this call's partials never
     * sees the next call's (which writes the other buffer, and the one after waits on the
     * barrier this reader has not yet reached) */
    int par = atomic_load_explicit(&t->team->gen, memory_order_acquire) & 1;
    float *red = t->team->red[par];
    red[t->id] = v;
    spq_team_sync(t);
    float m = red[0];
    for (int i = 1; i < t->nt; i++) m = red[i] > m ? red[i] : m;
    return m;
}

void spq_loop_begin(const spq_thr *t, int n, spq_loop *l)
{
    int i0, i1;
    spq_split(t, n, &i0, &i1);
    atomic_store(&t->team->span[t->id].fb, (uint64_t)(uint32_t)i1 << 32 | (uint32_t)i0);
    l->victim = 0; /* offset from own index */
}

/* Take one item from span s: its front (the owner) or its back (a thief); -1 when empty. */
static int take(spq_span *s, int from_back)
{
    uint64_t v = atomic_load(&s->fb);
    for (;;) {
        uint32_t f = (uint32_t)v, bk = (uint32_t)(v >> 32);
        if (f >= bk) return -1;
        uint64_t nv = from_back ? ((uint64_t)(bk - 1) << 32 | f) : ((uint64_t)bk << 32 | (f + 1));
        if (atomic_compare_exchange_weak(&s->fb, &v, nv)) return from_back ? (int)bk - 1 : (int)f;
    }
}

int spq_loop_next(const spq_thr *t, spq_loop *l)
{
    for (; l->victim < t->nt; l->victim++) {
        int i = take(&t->team->span[(t->id + l->victim) % t->nt], l->victim > 0);
        if (i >= 0) return i;
    }
    return -1;
}
