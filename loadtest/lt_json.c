/*
 * lt_json.c: minimal JSON writer (see lt_json.h).
 */
#include "lt_json.h"

#include <inttypes.h>
#include <math.h>

void lt_json_init(lt_json_t *j, lt_buf_t *b, bool pretty)
{
    memset(j, 0, sizeof(*j));
    j->b = b;
    j->pretty = pretty;
}

static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    uint32_t cp = c & (0x7f >> len);
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

void lt_json_escape(lt_buf_t *b, const char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            lt_buf_put_jsonstr(b, s + i, 1);
            i++;
            continue;
        }
        size_t l = utf8_len((const unsigned char *)s + i, n - i);
        if (l == 0) {
            lt_buf_puts(b, "\\ufffd");
            i++;
        } else {
            lt_buf_append(b, s + i, l);
            i += l;
        }
    }
}

static void newline(lt_json_t *j)
{
    if (!j->pretty)
        return;
    lt_buf_putc(j->b, '\n');
    for (int i = 0; i < j->depth; i++)
        lt_buf_append(j->b, "  ", 2);
}

static void prefix(lt_json_t *j, const char *key)
{
    if (j->depth > 0) {
        if (j->need_comma[j->depth])
            lt_buf_putc(j->b, ',');
        j->need_comma[j->depth] = true;
        newline(j);
    }
    if (key) {
        lt_buf_putc(j->b, '"');
        lt_json_escape(j->b, key, strlen(key));
        lt_buf_puts(j->b, j->pretty ? "\": " : "\":");
    }
}

static void open_(lt_json_t *j, const char *key, char ch)
{
    prefix(j, key);
    lt_buf_putc(j->b, ch);
    if (j->depth + 1 < LT_JSON_DEPTH)
        j->depth++;
    j->need_comma[j->depth] = false;
}

static void close_(lt_json_t *j, char ch)
{
    bool had = j->need_comma[j->depth];
    if (j->depth > 0)
        j->depth--;
    if (had)
        newline(j);
    lt_buf_putc(j->b, ch);
    if (j->depth == 0 && j->pretty)
        lt_buf_putc(j->b, '\n');
}

void lt_json_obj(lt_json_t *j, const char *key)
{
    open_(j, key, '{');
}

void lt_json_arr(lt_json_t *j, const char *key)
{
    open_(j, key, '[');
}

void lt_json_end_obj(lt_json_t *j)
{
    close_(j, '}');
}

void lt_json_end_arr(lt_json_t *j)
{
    close_(j, ']');
}

void lt_json_strn(lt_json_t *j, const char *key, const char *v, size_t n)
{
    prefix(j, key);
    lt_buf_putc(j->b, '"');
    lt_json_escape(j->b, v, n);
    lt_buf_putc(j->b, '"');
}

void lt_json_str(lt_json_t *j, const char *key, const char *v)
{
    if (v == NULL) {
        lt_json_null(j, key);
        return;
    }
    lt_json_strn(j, key, v, strlen(v));
}

void lt_json_u64(lt_json_t *j, const char *key, uint64_t v)
{
    prefix(j, key);
    lt_buf_printf(j->b, "%" PRIu64, v);
}

void lt_json_i64(lt_json_t *j, const char *key, int64_t v)
{
    prefix(j, key);
    lt_buf_printf(j->b, "%" PRId64, v);
}

void lt_json_dbl(lt_json_t *j, const char *key, double v)
{
    prefix(j, key);
    if (!isfinite(v)) {
        lt_buf_puts(j->b, "null");
        return;
    }
    /* Integers print without a fraction; others with enough digits to round-trip usefully. */
    if (v == floor(v) && fabs(v) < 1e15)
        lt_buf_printf(j->b, "%.0f", v);
    else
        lt_buf_printf(j->b, "%.6g", v);
}

void lt_json_bool(lt_json_t *j, const char *key, bool v)
{
    prefix(j, key);
    lt_buf_puts(j->b, v ? "true" : "false");
}

void lt_json_null(lt_json_t *j, const char *key)
{
    prefix(j, key);
    lt_buf_puts(j->b, "null");
}
