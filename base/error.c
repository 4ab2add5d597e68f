/* error.c — building the one-line error messages. */
#include "base/error.h"

#include <stdarg.h>
#include <stdio.h>

int spq_fail(spq_err *e, const char *file, const char *fmt, ...)
{
    if (!e) return -1;
    int n = snprintf(e->msg, sizeof e->msg, "%s: ", file ? file : "spikeq");
    if (n < 0 || (size_t)n >= sizeof e->msg) n = 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg + n, sizeof e->msg - (size_t)n, fmt, ap);
    va_end(ap);
    return -1;
}
