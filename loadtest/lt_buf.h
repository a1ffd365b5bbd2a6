/*
 * lt_buf.h: a growable byte buffer, the load tester's one string builder.
 *
 * The data is always NUL-terminated (not counted in len) so it can be printed. Appends
 * that fail to allocate set a sticky `oom` flag instead of returning errors at every call
 * site; callers check it once after building (hiredis-style sticky error).
 */
#ifndef LT_BUF_H
#define LT_BUF_H

#include "at_common.h"

typedef struct lt_buf_s {
    char *data; /* heap, owned; NULL until the first append */
    size_t len, cap;
    bool oom;
} lt_buf_t;

/* Releases the memory; the buffer may be reused. Accepts NULL. */
void lt_buf_free(lt_buf_t *b);
/* Ensures room for @p extra more bytes plus the NUL. Returns 0 or -1 (and sets oom). */
int lt_buf_reserve(lt_buf_t *b, size_t extra);
void lt_buf_append(lt_buf_t *b, const void *p, size_t n);
void lt_buf_puts(lt_buf_t *b, const char *s);
void lt_buf_putc(lt_buf_t *b, char c);
void lt_buf_printf(lt_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Appends @p n bytes percent-encoded for a query-string value (RFC 3986 unreserved kept). */
void lt_buf_put_urlenc(lt_buf_t *b, const char *s, size_t n);
/* Appends @p n bytes as the inside of a JSON string (quotes not included). */
void lt_buf_put_jsonstr(lt_buf_t *b, const char *s, size_t n);
static inline void lt_buf_clear(lt_buf_t *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

#endif
