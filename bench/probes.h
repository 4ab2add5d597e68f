/* probes.h — this machine's limits, measured in the same run as every benchmark:
 * streaming read bandwidth and the int8 dot-product peak of the active kernels. */
#ifndef SPQ_PROBES_H
#define SPQ_PROBES_H

#include "kernels/kernels.h"

/* Seconds on a monotonic clock. */
double spq_now(void);
/* Read bandwidth in bytes/s with the current OpenMP thread count: best of 5 passes over
 * a buffer of `bytes` (1 GiB: far past any cache), each thread reading its slice as 4
 * interleaved streams. */
double spq_probe_read_bw(size_t bytes);
/* int8 multiply-adds per second with the current thread count (ops = 2 x MACs). */
double spq_probe_int8_macs(const spq_kernels *k);

#endif
