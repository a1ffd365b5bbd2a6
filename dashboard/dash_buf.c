/*
 * dash_buf.c: see dash_buf.h.
 */
#include "dash_buf.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

void dash_buf_init(dash_buf_t *b, size_t max)
{
    memset(b, 0, sizeof(*b));
    b->max = max;
}

void dash_buf_free(dash_buf_t *b)
{
    free(b->p);
    b->p = NULL;
    b->len = b->cap = 0;
    b->failed = false;
}

void dash_buf_reset(dash_buf_t *b)
{
    b->len = 0;
    b->failed = false;
    if (b->p != NULL)
        b->p[0] = '\0';
}

static int reserve(dash_buf_t *b, size_t n)
{
    if (b->failed)
        return -1;
    if (n > b->max || b->len + n > b->max) {
        b->failed = true;
        return -1;
    }
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (p == NULL) {
        b->failed = true;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

int dash_buf_append(dash_buf_t *b, const void *data, size_t n)
{
    if (reserve(b, n) != 0)
        return -1;
    if (n > 0)
        memcpy(b->p + b->len, data, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int dash_buf_str(dash_buf_t *b, const char *s)
{
    return dash_buf_append(b, s, strlen(s));
}

int dash_buf_printf(dash_buf_t *b, const char *fmt, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(small, sizeof(small), fmt, ap);
    va_end(ap);
    if (n < 0) {
        b->failed = true;
        return -1;
    }
    if ((size_t)n < sizeof(small))
        return dash_buf_append(b, small, (size_t)n);
    if (reserve(b, (size_t)n) != 0)
        return -1;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return 0;
}

int dash_buf_json_str(dash_buf_t *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    if (dash_buf_append(b, "\"", 1) != 0)
        return -1;
    size_t run = 0; /* bytes copied as they are, flushed in one append */
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch >= 0x20 && ch != '"' && ch != '\\' && ch != 0x7f) {
            run++;
            continue;
        }
        dash_buf_append(b, s + i - run, run);
        run = 0;
        char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
        if (ch == '"' || ch == '\\') {
            esc[1] = (char)ch;
            dash_buf_append(b, esc, 2);
        } else {
            dash_buf_append(b, esc, 6);
        }
    }
    dash_buf_append(b, s + n - run, run);
    return dash_buf_append(b, "\"", 1);
}

int dash_buf_json_num(dash_buf_t *b, double v)
{
    if (!isfinite(v))
        return dash_buf_append(b, "null", 4);
    if (v == floor(v) && fabs(v) < 9e15)
        return dash_buf_printf(b, "%lld", (long long)v);
    return dash_buf_printf(b, "%.6g", v);
}

char *dash_buf_steal(dash_buf_t *b, size_t *len)
{
    if (b->failed || b->p == NULL) {
        dash_buf_free(b);
        *len = 0;
        return NULL;
    }
    char *p = b->p;
    *len = b->len;
    b->p = NULL;
    b->len = b->cap = 0;
    return p;
}
