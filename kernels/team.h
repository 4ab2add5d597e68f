/* team.h — the threads that run one forward pass together: a spinning barrier, a static
 * split of items, and a work loop with stealing, so that one OpenMP parallel region spans
 * the whole pass instead of one per GEMM and row-wise step (about 90 per decoded token of
 * TinyLlama), and the steps between the GEMMs (norms, RoPE, attention, SwiGLU) run on every
 * thread instead of one at M = 1. A spinning barrier is several times cheaper than a libgomp
 * fork/join or barrier (`bench_gemm --sync`; figures in docs/benchmarks.md). */
#ifndef SPQ_TEAM_H
#define SPQ_TEAM_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#define SPQ_TEAM_MAX 256

struct spq_kernels;

/* One thread's remaining items [front, back) packed in one word, on its own cache line. */
typedef struct {
    _Alignas(64) _Atomic uint64_t fb;
} spq_span;

/* Bytes one thread reads next, fetched into its cache while it waits at a barrier: left
 * bytes from p in each of lanes streams stride bytes apart (left is atomic only so that a
 * test may watch it from another thread). */
typedef struct {
    _Alignas(64) const char *p;
    size_t stride;
    int lanes;
    _Atomic size_t left;
} spq_hint;

typedef struct {
    int nt;
    const struct spq_kernels *k; /* the kernel table of the team's steps */
    size_t hint_max; /* the most bytes a thread's hint holds (0, as spq_team_init sets: none) */
    _Alignas(64) _Atomic int arrived;
    _Alignas(64) _Atomic int gen;
    _Alignas(64) spq_span span[SPQ_TEAM_MAX];
    spq_hint hint[SPQ_TEAM_MAX];
    float red[2][SPQ_TEAM_MAX]; /* one partial per thread for spq_team_max, by barrier parity */
} spq_team;

/* One thread's view of its team: shared state, its index and the team size. */
typedef struct {
    spq_team *team;
    int id, nt;
} spq_thr;

/* Prepare a team of nt threads (clamped to 1..SPQ_TEAM_MAX) running the kernels of table k. */
void spq_team_init(spq_team *tm, int nt, const struct spq_kernels *k);
/* The calling OpenMP thread's view of tm: its thread number and the size of the
 * enclosing parallel region (which may be smaller than asked; outside one, a team of one). */
spq_thr spq_team_member(spq_team *tm);
/* The calling thread reads [p + l * stride, + bytes) for l < lanes (1..4) next: its waits at
 * spq_team_sync fetch up to hint_max bytes of them in all into its cache, the lanes in step
 * (replaces the previous hint; bytes 0 clears it). */
void spq_team_hint(const spq_thr *t, const void *p, size_t bytes, size_t stride, int lanes);
/* Barrier: returns once every thread of the team has called it (spins, then yields). */
void spq_team_sync(const spq_thr *t);
/* This thread's share [*i0, *i1) of n items split evenly in team order (thread 0 first). */
void spq_split(const spq_thr *t, int n, int *i0, int *i1);
/* The largest v over the team (every thread gets it; a barrier inside). */
float spq_team_max(const spq_thr *t, float v);

/* A work loop over items 0..n-1: each thread takes its own even share front to back (one
 * sequential stream of weights), then items from the back of the others' shares (the
 * other core was busy: these machines are shared). Every thread calls spq_loop_begin,
 * then spq_loop_next until it returns -1, and the team syncs before the next loop. */
typedef struct {
    int victim; /* the span being taken from: own first, then the others in turn */
} spq_loop;
void spq_loop_begin(const spq_thr *t, int n, spq_loop *l);
int spq_loop_next(const spq_thr *t, spq_loop *l);

#endif
