/* probes.h — this machine's limits, measured in the same run as every benchmark:
 * streaming read bandwidth and the int8 dot-product peak of the active kernels. */
#ifndef SPQ_PROBES_H
#define SPQ_PROBES_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/kernels.h"

/* Read bandwidth in bytes/s with the current OpenMP thread count: best of 5 passes over
 * a buffer of `bytes` (1 GiB: far past any cache), the threads taking 4 MiB chunks in turn,
 * each read as 4 interleaved streams with the widest loads the CPU has. */
double spq_probe_read_bw(size_t bytes);
/* int8 multiply-adds per second with the current thread count (ops = 2 x MACs): best of 3
 * passes. */
double spq_probe_int8_macs(const spq_kernels *k);

/* Single passes, to interleave with a benchmark's runs so that each is compared with what
 * the machine gave at that moment (a shared machine's bandwidth swings by 2x in minutes). */
typedef struct {
    uint64_t *buf;
    size_t n; /* 64-bit words */
} spq_bwprobe;
/* Allocate and first-touch (with the current threads) a read buffer of about `bytes`; 0 on
 * success, -1 when out of memory. */
int spq_bwprobe_init(spq_bwprobe *p, size_t bytes);
/* Seconds one read pass over p's n * 8 bytes takes with the current OpenMP threads. */
double spq_bwprobe_pass(const spq_bwprobe *p);
void spq_bwprobe_free(spq_bwprobe *p);
/* One pass of the int8 peak probe: returns its multiply-adds, *sec the seconds taken. */
double spq_probe_int8_pass(const spq_kernels *k, double *sec);

#endif
