/* lut_driver.h — the CMPQ LUT GEMV entry point shared by the x86 ISA files. Each defines
 *   lut_panels(b, NP, TS, kp, x, codes, pw, tab, acc)
 * (always inlined; b, NP panels and TS table stride are compile-time constants) and then
 * expands SPQ_LUT_GEMV(NPMAX): the dispatch table's gemv_lut, NPMAX panels at a time and the
 * rest one by one, with every (b, TS) pair specialised. */
#ifndef SPQ_LUT_DRIVER_H
#define SPQ_LUT_DRIVER_H

#define SPQ_LUT_B(NP, TS, ...)                                         \
    switch (b) {                                                       \
    case 2: lut_panels(2, NP, TS, __VA_ARGS__); break;                 \
    case 3: lut_panels(3, NP, TS, __VA_ARGS__); break;                 \
    case 4: lut_panels(4, NP, TS, __VA_ARGS__); break;                 \
    default: lut_panels(8, NP, 0, __VA_ARGS__); break;                 \
    }
#define SPQ_LUT_CASES(NP, ...)                                         \
    if (tstride) SPQ_LUT_B(NP, 16, __VA_ARGS__) else SPQ_LUT_B(NP, 0, __VA_ARGS__)

#define SPQ_LUT_GEMV(NPMAX)                                                                                 \
    static void gemv_lut(int b, int kp, int p0, int p1, const float *x, const uint32_t *codes,             \
                         const float *tab, int tstride, float *acc)                                         \
    {                                                                                                       \
        size_t pw = spq_lut_panel_words(b, kp);                                                             \
        int p = p0;                                                                                         \
        for (; p + NPMAX <= p1; p += NPMAX)                                                                 \
            SPQ_LUT_CASES(NPMAX, kp, x, codes + p * pw, pw, tab, acc + (size_t)(p - p0) * 16)               \
        for (; p < p1; p++) SPQ_LUT_CASES(1, kp, x, codes + p * pw, pw, tab, acc + (size_t)(p - p0) * 16)  \
    }

#endif
