/*
 * at_json.c: JSON input framing (see at_json.h).
 */
#include "at_json.h"
#include "at_swar.h"

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_json_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Index one past the bracket closing the object or array that opens at s[start], counting
 * brackets outside strings only; 0 when it is not closed within @p len. A framing aid, not
 * a validator. */
static size_t json_container_end(const char *s, size_t len, size_t start)
{
    size_t depth = 0;
    bool in_str = false;

    for (size_t i = start; i < len; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
            continue;
        }
        if (ch == '"') {
            in_str = true;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (depth == 0 || --depth == 0)
                return i + 1;
        }
    }
    return 0;
}

bson_t *at_json_parse_single(const char *s, size_t len, char open, const char *what, const char *expected,
                             at_err_t *err)
{
    const char *kind = open == '[' ? "array" : "object";
    size_t i = 0;

    while (i < len && is_json_ws(s[i]))
        i++;
    if (i == len || s[i] != open) {
        at_err_set(err, AT_ERR_INVALID, "%s: expected %s", what, expected);
        return NULL;
    }
    size_t end = json_container_end(s, len, i);
    if (end == 0) {
        at_err_set(err, AT_ERR_INVALID, "%s: not JSON: unterminated %s", what, kind);
        return NULL;
    }
    for (size_t j = end; j < len; j++) {
        if (!is_json_ws(s[j])) {
            at_err_set(err, AT_ERR_INVALID, "%s: unexpected text after the JSON %s at byte %zu", what, kind, j);
            return NULL;
        }
    }
    if (end > (size_t)SSIZE_MAX) {
        at_err_set(err, AT_ERR_TOO_LARGE, "%s: too large", what);
        return NULL;
    }
    bson_error_t berr;
    bson_t *doc = bson_new_from_json((const uint8_t *)s, (ssize_t)end, &berr);
    if (doc == NULL)
        at_err_set(err, AT_ERR_INVALID, "%s: not JSON: %s", what, berr.message);
    return doc;
}

/* ------------------------------------------------------------------------------------------
 * Writing relaxed Extended JSON
 */

#define HIGHS AT_SWAR_HIGHS
#define HAS_BYTE AT_SWAR_HAS_BYTE
#define HAS_LESS AT_SWAR_HAS_LESS

char *at_json_put_str(char *o, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    *o++ = '"';
    for (size_t i = 0; i < n; i++) {
        /* Runs of 8 bytes that need no escape are copied as they are. */
        while (i + 8 <= n) {
            uint64_t w;
            memcpy(&w, s + i, 8);
            if (HAS_LESS(w, 0x20) | HAS_BYTE(w, '"') | HAS_BYTE(w, '\\'))
                break;
            memcpy(o, &w, 8);
            o += 8;
            i += 8;
        }
        if (i >= n)
            break;
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\') {
            *o++ = (char)c;
            continue;
        }
        *o++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *o++ = (char)c;
            break;
        case '\b':
            *o++ = 'b';
            break;
        case '\f':
            *o++ = 'f';
            break;
        case '\n':
            *o++ = 'n';
            break;
        case '\r':
            *o++ = 'r';
            break;
        case '\t':
            *o++ = 't';
            break;
        default:
            memcpy(o, "u00", 3);
            o[3] = hex[c >> 4];
            o[4] = hex[c & 15];
            o += 5;
            break;
        }
    }
    *o++ = '"';
    return o;
}

/* True when every byte of @p s at or above 0x80 belongs to a well-formed UTF-8 sequence
 * (no overlong forms, surrogates or code points above U+10FFFF). Such text is always
 * accepted by libbson's writer; anything else is left to libbson to judge. NUL and other
 * ASCII bytes are fine: they are escaped. */
bool at_json_utf8_ok(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        uint64_t w;
        if (i + 8 <= n && (memcpy(&w, s + i, 8), (w & HIGHS) == 0)) {
            i += 8; /* 8 ASCII bytes */
            continue;
        }
        unsigned char c = u[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t len;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) {
            len = 2;
        } else if (c >= 0xE0 && c <= 0xEF) {
            len = 3;
            if (c == 0xE0)
                lo = 0xA0; /* overlong */
            else if (c == 0xED)
                hi = 0x9F; /* surrogates */
        } else if (c >= 0xF0 && c <= 0xF4) {
            len = 4;
            if (c == 0xF0)
                lo = 0x90; /* overlong */
            else if (c == 0xF4)
                hi = 0x8F; /* above U+10FFFF */
        } else {
            return false;
        }
        if (n - i < len || u[i + 1] < lo || u[i + 1] > hi)
            return false;
        for (size_t k = 2; k < len; k++)
            if ((u[i + k] & 0xC0) != 0x80)
                return false;
        i += len;
    }
    return true;
}


/* Civil date of @p days since 1970-01-01 (proleptic Gregorian, days >= 0). */
static void civil_from_days(int64_t days, int *y, int *m, int *d)
{
    int64_t z = days + 719468;
    int64_t era = z / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = (int)(yoe + era * 400 + (*m <= 2));
}

static char *put_digits(char *o, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        o[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return o + width;
}

char *at_json_put_date(char *o, int64_t ms)
{
    int64_t secs = ms / 1000, days = secs / 86400, sod = secs % 86400;
    int y, m, d;
    civil_from_days(days, &y, &m, &d);
    memcpy(o, "{ \"$date\" : \"", 13);
    o += 13;
    o = put_digits(o, (unsigned)y, 4);
    *o++ = '-';
    o = put_digits(o, (unsigned)m, 2);
    *o++ = '-';
    o = put_digits(o, (unsigned)d, 2);
    *o++ = 'T';
    o = put_digits(o, (unsigned)(sod / 3600), 2);
    *o++ = ':';
    o = put_digits(o, (unsigned)(sod / 60 % 60), 2);
    *o++ = ':';
    o = put_digits(o, (unsigned)(sod % 60), 2);
    if (ms % 1000 != 0) {
        *o++ = '.';
        o = put_digits(o, (unsigned)(ms % 1000), 3);
    }
    memcpy(o, "Z\" }", 4);
    return o + 4;
}

typedef struct jbuf_s {
    char **buf;
    size_t *cap, *used;
} jbuf_t;

/* Room for @p n more bytes at the end of the buffer; NULL when memory runs out. */
static char *jbuf_room(jbuf_t *b, size_t n)
{
    if (*b->used + n > *b->cap) {
        size_t nc = *b->cap ? *b->cap : 4096;
        while (nc < *b->used + n)
            nc *= 2;
        char *nb = realloc(*b->buf, nc);
        if (nb == NULL)
            return NULL;
        *b->buf = nb;
        *b->cap = nc;
    }
    return *b->buf + *b->used;
}

/* Writes the elements of @p doc (a document, or an array when @p array) at the end of the
 * buffer. Returns 1 when done, 0 when an element needs libbson's writer, -1 when out of
 * memory. */
static int write_elements(jbuf_t *b, const bson_t *doc, bool array, int depth, bool top)
{
    bson_iter_t it;
    bool first = true;
    char *o;

    /* libbson nests up to 100 levels; deeper documents are left to it. */
    if (depth > 64 || !bson_iter_init(&it, doc))
        return 0;
    if ((o = jbuf_room(b, 2)) == NULL)
        return -1;
    *o++ = array ? '[' : '{';
    *o++ = ' ';
    *b->used += 2;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        size_t klen = strlen(key);
        bson_type_t t = bson_iter_type(&it);
        uint32_t slen = 0;
        const char *s = NULL;
        if (t == BSON_TYPE_UTF8) {
            s = bson_iter_utf8(&it, &slen);
            if (!at_json_utf8_ok(s, slen))
                return 0;
        }
        if (!array && !at_json_utf8_ok(key, klen))
            return 0;
        /* separator + key + " : " + the largest scalar (a string, or 64 bytes) */
        if ((o = jbuf_room(b, 2 + (array ? 0 : 6 * klen + 5) + 6 * (size_t)slen + 64)) == NULL)
            return -1;
        char *start = o;
        if (!first) {
            *o++ = ',';
            *o++ = ' ';
        }
        first = false;
        if (!array) {
            o = at_json_put_str(o, key, klen);
            memcpy(o, " : ", 3);
            o += 3;
        }
        switch (t) {
        case BSON_TYPE_UTF8:
            o = at_json_put_str(o, s, slen);
            break;
        case BSON_TYPE_INT32:
            o += snprintf(o, 16, "%" PRId32, bson_iter_int32(&it));
            break;
        case BSON_TYPE_INT64:
            o += snprintf(o, 24, "%" PRId64, bson_iter_int64(&it));
            break;
        case BSON_TYPE_BOOL:
            o += bson_iter_bool(&it) ? (memcpy(o, "true", 4), 4) : (memcpy(o, "false", 5), 5);
            break;
        case BSON_TYPE_NULL:
            memcpy(o, "null", 4);
            o += 4;
            break;
        case BSON_TYPE_DATE_TIME: {
            int64_t ms = bson_iter_date_time(&it);
            if (ms < 0 || ms > AT_JSON_DATE_MAX)
                return 0;
            o = at_json_put_date(o, ms);
            break;
        }
        case BSON_TYPE_DOCUMENT:
        case BSON_TYPE_ARRAY: {
            uint32_t dlen;
            const uint8_t *data;
            bson_t sub;
            if (t == BSON_TYPE_DOCUMENT)
                bson_iter_document(&it, &dlen, &data);
            else
                bson_iter_array(&it, &dlen, &data);
            if (!bson_init_static(&sub, data, dlen))
                return 0;
            *b->used += (size_t)(o - start);
            int r = write_elements(b, &sub, t == BSON_TYPE_ARRAY, depth + 1, false);
            if (r != 1)
                return r;
            continue;
        }
        default:
            return 0;
        }
        *b->used += (size_t)(o - start);
    }
    /* libbson closes an empty top-level document as "{ }" but nested empty ones as "{  }". */
    bool empty = first;
    if ((o = jbuf_room(b, 2)) == NULL)
        return -1;
    if (!(empty && top))
        *o++ = ' ';
    *o++ = array ? ']' : '}';
    *b->used += (empty && top) ? 1 : 2;
    return 1;
}

int at_json_append_relaxed(const bson_t *doc, char **buf, size_t *cap, size_t *used)
{
    jbuf_t b = {buf, cap, used};
    size_t start = *used;
    int r = write_elements(&b, doc, false, 0, true);
    if (r == 1)
        return 0;
    *used = start;
    if (r < 0)
        return -1;
    size_t n;
    char *json = bson_as_relaxed_extended_json(doc, &n);
    if (json == NULL)
        return -1;
    char *o = jbuf_room(&b, n);
    if (o != NULL) {
        memcpy(o, json, n);
        *used += n;
    }
    bson_free(json);
    return o != NULL ? 0 : -1;
}
