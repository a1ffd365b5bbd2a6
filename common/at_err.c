/*
 * at_err.c: the error convention (see at_err.h).
 */
#include "at_err.h"

#include <stdarg.h>

int at_err_set(at_err_t *err, at_errcode_t code, const char *fmt, ...)
{
    if (err == NULL)
        return -1;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    /* Truncation is acceptable: the message is for humans and the code carries the meaning. */
    int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    if (n < 0)
        err->msg[0] = '\0';
    return -1;
}

void at_err_clear(at_err_t *err)
{
    if (err == NULL)
        return;
    err->code = AT_OK;
    err->msg[0] = '\0';
}

const char *at_errcode_str(at_errcode_t code)
{
    switch (code) {
    case AT_OK:
        return "ok";
    case AT_ERR_INVALID:
        return "invalid";
    case AT_ERR_RANGE:
        return "range";
    case AT_ERR_TOO_LARGE:
        return "too_large";
    case AT_ERR_NOT_FOUND:
        return "not_found";
    case AT_ERR_NOMEM:
        return "nomem";
    case AT_ERR_IO:
        return "io";
    case AT_ERR_UNAVAILABLE:
        return "unavailable";
    case AT_ERR_TIMEOUT:
        return "timeout";
    case AT_ERR_BACKPRESSURE:
        return "backpressure";
    case AT_ERR_INTERNAL:
        return "internal";
    case AT_ERR_AUTH:
        return "auth";
    }
    /* Out-of-range values can arrive through casts; never return NULL to a logger. */
    return "unknown";
}

bool at_err_retriable(at_errcode_t code)
{
    switch (code) {
    case AT_ERR_UNAVAILABLE:
    case AT_ERR_TIMEOUT:
    case AT_ERR_BACKPRESSURE:
    case AT_ERR_IO:
        return true;
    default:
        return false;
    }
}
