/* error.h — errors travel as return codes plus one message "FILE: what is wrong". */
#ifndef SPQ_ERROR_H
#define SPQ_ERROR_H

typedef struct {
    char msg[512];
} spq_err;

/* Format "file: message" into e (when non-NULL) and return -1. */
int spq_fail(spq_err *e, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
