/* by_count.h — a count of 1..4 known at run time made the compile-time first argument of
 * an always-inlined kernel, so that its loops over the count (query heads, weight panels)
 * unroll: SPQ_BY_COUNT4(fn, n, args...) calls fn(n, args...) for n = 4, 3, 2, else 1. */
#ifndef SPQ_BY_COUNT_H
#define SPQ_BY_COUNT_H

#define SPQ_BY_COUNT4(fn, n, ...)                                                          \
    switch (n) {                                                                           \
    case 4: fn(4, __VA_ARGS__); break;                                                     \
    case 3: fn(3, __VA_ARGS__); break;                                                     \
    case 2: fn(2, __VA_ARGS__); break;                                                     \
    default: fn(1, __VA_ARGS__); break;                                                    \
    }

#endif
