/*
 * cd_rline.c: the stats lines' fast JSON subset reader. See cd_rline.h.
 */
#include "cd_rline.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "at_time.h"

typedef struct rd_s {
    const char *p, *e;
} rd_t;

static void ws(rd_t *r)
{
    while (r->p < r->e && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
        r->p++;
}

static bool lit(rd_t *r, char c)
{
    ws(r);
    if (r->p < r->e && *r->p == c) {
        r->p++;
        return true;
    }
    return false;
}

/* A string without escapes or non-ASCII bytes: its start and length. */
static bool str(rd_t *r, const char **s, size_t *n)
{
    ws(r);
    if (r->p >= r->e || *r->p != '"')
        return false;
    const char *b = ++r->p;
    while (r->p < r->e && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p;
        if (c == '\\' || c < 0x20 || c >= 0x80)
            return false;
        r->p++;
    }
    if (r->p >= r->e)
        return false;
    *s = b;
    *n = (size_t)(r->p - b);
    r->p++;
    return true;
}

static bool digits_int(const char *s, size_t n, int64_t *v)
{
    size_t i = 0;
    bool neg = false;
    if (n > 0 && s[0] == '-') {
        neg = true;
        i = 1;
    }
    if (i == n || n - i > 18)
        return false; /* 19 digits may overflow: let libbson decide */
    int64_t x = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        x = x * 10 + (s[i] - '0');
    }
    *v = neg ? -x : x;
    return true;
}

static int num2(const char *s)
{
    return (s[0] >= '0' && s[0] <= '9' && s[1] >= '0' && s[1] <= '9') ? (s[0] - '0') * 10 + (s[1] - '0') : -1;
}

/* "YYYY-MM-DDTHH:MM:SS[.mmm]Z" (what the enricher writes) into ms. */
static bool date_ms(const char *s, size_t n, int64_t *ms)
{
    if ((n != 20 && n != 24) || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[n - 1] != 'Z')
        return false;
    int y1 = num2(s), y2 = num2(s + 2), mo = num2(s + 5), d = num2(s + 8), h = num2(s + 11), mi = num2(s + 14),
        se = num2(s + 17), frac = 0;
    if (y1 < 0 || y2 < 0 || mo < 1 || mo > 12 || d < 1 || d > 31 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 ||
        se > 59)
        return false;
    if (n == 24) {
        if (s[19] != '.' || num2(s + 20) < 0 || s[22] < '0' || s[22] > '9')
            return false;
        frac = num2(s + 20) * 10 + (s[22] - '0');
    }
    int64_t days = at_days_from_civil(y1 * 100 + y2, mo, d);
    if (days < 0)
        return false;
    *ms = ((days * 86400 + h * 3600 + mi * 60 + se) * 1000) + frac;
    return true;
}

static bool value(rd_t *r, bson_t *parent, const char *key, size_t klen, int depth);

/* The members of an object whose '{' was read, up to its '}'. */
static bool members(rd_t *r, bson_t *doc, int depth)
{
    if (lit(r, '}'))
        return true;
    do {
        const char *k;
        size_t kn;
        if (!str(r, &k, &kn) || !lit(r, ':') || !value(r, doc, k, kn, depth))
            return false;
    } while (lit(r, ','));
    return lit(r, '}');
}

static bool value(rd_t *r, bson_t *parent, const char *key, size_t klen, int depth)
{
    ws(r);
    if (r->p >= r->e)
        return false;
    if (*r->p == '"') {
        const char *s;
        size_t n;
        return str(r, &s, &n) && bson_append_utf8(parent, key, (int)klen, s, (int)n);
    }
    if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9')) {
        const char *b = r->p;
        while (r->p < r->e && ((*r->p >= '0' && *r->p <= '9') || *r->p == '-'))
            r->p++;
        if (r->p < r->e && (*r->p == '.' || *r->p == 'e' || *r->p == 'E'))
            return false;
        int64_t v;
        if (!digits_int(b, (size_t)(r->p - b), &v))
            return false;
        return v >= INT32_MIN && v <= INT32_MAX ? bson_append_int32(parent, key, (int)klen, (int32_t)v)
                                                : bson_append_int64(parent, key, (int)klen, v);
    }
    if (*r->p != '{' || depth >= 3)
        return false;
    r->p++;
    /* {"$date": "..."} and {"$numberLong": "..."} are values, not documents */
    rd_t peek = *r;
    const char *k, *s;
    size_t kn, sn;
    if (str(&peek, &k, &kn) && kn > 0 && k[0] == '$') {
        if (!lit(&peek, ':') || !str(&peek, &s, &sn) || !lit(&peek, '}'))
            return false;
        *r = peek;
        int64_t v;
        if (kn == 5 && memcmp(k, "$date", 5) == 0)
            return date_ms(s, sn, &v) && bson_append_date_time(parent, key, (int)klen, v);
        if (kn == 11 && memcmp(k, "$numberLong", 11) == 0)
            return digits_int(s, sn, &v) && bson_append_int64(parent, key, (int)klen, v);
        return false;
    }
    bson_t child;
    if (!bson_append_document_begin(parent, key, (int)klen, &child))
        return false;
    bool ok = members(r, &child, depth + 1);
    return bson_append_document_end(parent, &child) && ok;
}

int cd_rline_parse(const char *s, size_t n, bson_t *out)
{
    rd_t r = {s, s + n};
    bson_init(out);
    if (lit(&r, '{') && members(&r, out, 0)) {
        ws(&r);
        if (r.p == r.e)
            return 0;
    }
    bson_destroy(out);
    return -1;
}
