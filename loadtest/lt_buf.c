/*
 * lt_buf.c: growable byte buffer (see lt_buf.h).
 */
#include "lt_buf.h"

#include <stdarg.h>
#include <stdlib.h>

void lt_buf_free(lt_buf_t *b)
{
    if (b == NULL)
        return;
    free(b->data);
    memset(b, 0, sizeof(*b));
}

int lt_buf_reserve(lt_buf_t *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra + 1) {
        if (cap > SIZE_MAX / 2) {
            b->oom = true;
            return -1;
        }
        cap *= 2;
    }
    char *d = realloc(b->data, cap);
    if (d == NULL) {
        b->oom = true;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

void lt_buf_append(lt_buf_t *b, const void *p, size_t n)
{
    if (lt_buf_reserve(b, n) < 0)
        return;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void lt_buf_puts(lt_buf_t *b, const char *s)
{
    lt_buf_append(b, s, strlen(s));
}

void lt_buf_putc(lt_buf_t *b, char c)
{
    lt_buf_append(b, &c, 1);
}

void lt_buf_printf(lt_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char small[256];
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof(small)) {
        lt_buf_append(b, small, (size_t)n);
        return;
    }
    if (lt_buf_reserve(b, (size_t)n) < 0)
        return;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void lt_buf_put_urlenc(lt_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    if (lt_buf_reserve(b, n * 3) < 0)
        return;
    char *o = b->data + b->len;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
            c == '_' || c == '~') {
            *o++ = (char)c;
        } else {
            *o++ = '%';
            *o++ = hex[c >> 4];
            *o++ = hex[c & 15];
        }
    }
    b->len = (size_t)(o - b->data);
    b->data[b->len] = '\0';
}

void lt_buf_put_jsonstr(lt_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"':
            lt_buf_append(b, "\\\"", 2);
            break;
        case '\\':
            lt_buf_append(b, "\\\\", 2);
            break;
        case '\n':
            lt_buf_append(b, "\\n", 2);
            break;
        case '\r':
            lt_buf_append(b, "\\r", 2);
            break;
        case '\t':
            lt_buf_append(b, "\\t", 2);
            break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                lt_buf_append(b, e, 6);
            } else {
                lt_buf_putc(b, (char)c);
            }
        }
    }
}
