/*
 * dash_buf.h: a growable byte buffer with a hard size limit and a sticky failure flag
 * (hiredis style: after one failed append every later append is a no-op returning -1, so
 * builders check once at the end). Used to build JSON snapshots and SSE frames.
 */
#ifndef DASH_BUF_H
#define DASH_BUF_H

#include "at_common.h"

typedef struct dash_buf_s {
    char *p; /* heap, owned by the buffer; NUL-terminated when len > 0 */
    size_t len;
    size_t cap;
    size_t max;  /* appends that would grow len past max fail */
    bool failed; /* sticky: an append failed (limit or allocation) */
} dash_buf_t;

/* Starts an empty buffer that may hold up to @p max bytes. */
void dash_buf_init(dash_buf_t *b, size_t max);
/* Frees the storage; the buffer is empty and usable again. Accepts an inited-but-empty buffer. */
void dash_buf_free(dash_buf_t *b);
/* Empties the buffer but keeps its storage and clears the failure flag. */
void dash_buf_reset(dash_buf_t *b);

int dash_buf_append(dash_buf_t *b, const void *data, size_t n);
int dash_buf_str(dash_buf_t *b, const char *s);
int dash_buf_printf(dash_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends @p s (@p n bytes) as a quoted JSON string; control characters are \u-escaped
 * and bytes >= 0x80 are copied as they are (the inputs are UTF-8 from Redis documents). */
int dash_buf_json_str(dash_buf_t *b, const char *s, size_t n);
/* Appends a JSON number: integers without a fraction, others with 6 significant digits;
 * NaN and infinities become null (JSON has no such numbers). */
int dash_buf_json_num(dash_buf_t *b, double v);

/* Hands the storage to the caller (free() it) and empties the buffer. NULL when the buffer
 * failed or is empty. */
char *dash_buf_steal(dash_buf_t *b, size_t *len);

#endif
