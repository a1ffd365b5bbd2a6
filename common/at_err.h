/*
 * at_err.h: the project's error convention.
 *
 * Functions return 0 on success and -1 on failure; details go into a caller-owned
 * at_err_t (code + message). Messages name the input and what was expected, e.g.
 * "c: campaign id longer than 64 bytes".
 */
#ifndef AT_ERR_H
#define AT_ERR_H

#include "at_common.h"

typedef enum at_errcode_e {
    AT_OK = 0,
    AT_ERR_INVALID,     /* malformed input */
    AT_ERR_RANGE,       /* value outside the accepted range */
    AT_ERR_TOO_LARGE,   /* input over a size limit */
    AT_ERR_NOT_FOUND,   /* a looked-up entity does not exist */
    AT_ERR_NOMEM,       /* allocation failed */
    AT_ERR_IO,          /* local I/O (file, fsync, socket) failed */
    AT_ERR_UNAVAILABLE, /* a dependency (Kafka, Redis, MongoDB) cannot be reached; retriable */
    AT_ERR_TIMEOUT,     /* a dependency did not answer in time; retriable */
    AT_ERR_BACKPRESSURE,/* a bounded queue is full; retriable */
    AT_ERR_INTERNAL,    /* a bug or an unexpected library failure */
    AT_ERR_AUTH,        /* a dependency refused our credentials or permissions (wrong password,
                           untrusted certificate, ACL); not retriable until the config changes */
} at_errcode_t;

#define AT_ERR_MSG_MAX 256

typedef struct at_err_s {
    at_errcode_t code;
    char msg[AT_ERR_MSG_MAX];
} at_err_t;

/* Fills @p err (may be NULL) with @p code and a printf-style message; always returns -1
 * so callers can write `return at_err_set(err, AT_ERR_INVALID, "...")`. */
int at_err_set(at_err_t *err, at_errcode_t code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Resets @p err (may be NULL) to AT_OK with an empty message. */
void at_err_clear(at_err_t *err);

/* Static, stable name of a code ("invalid", "unavailable", ...). */
const char *at_errcode_str(at_errcode_t code);

/* True for failures that may succeed when tried again later (unavailable, timeout, backpressure, io). */
bool at_err_retriable(at_errcode_t code);

#endif
