/* clock.h — the one clock every timing in spikeq reads. */
#ifndef SPQ_CLOCK_H
#define SPQ_CLOCK_H

/* Seconds on the monotonic clock (CLOCK_MONOTONIC: unaffected by changes of the wall
 * time; only differences mean anything). */
double spq_now(void);

#endif
