/*
 * lt_capture.c: capture formats (see lt_capture.h).
 */
#include "lt_capture.h"
#include "at_time.h"

#include <bson/bson.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <strings.h>

#define LT_CAPTURE_LINE_MAX (1024 * 1024)

const char *lt_capture_format_str(lt_capture_format_t f)
{
    switch (f) {
    case LT_CAP_CLF:
        return "clf";
    case LT_CAP_URLS:
        return "urls";
    case LT_CAP_JSONL:
        return "jsonl";
    case LT_CAP_AUTO:
        break;
    }
    return "auto";
}

int lt_capture_format_parse(const char *s, lt_capture_format_t *f, at_err_t *err)
{
    if (strcmp(s, "auto") == 0 || *s == '\0')
        *f = LT_CAP_AUTO;
    else if (strcmp(s, "clf") == 0 || strcmp(s, "combined") == 0)
        *f = LT_CAP_CLF;
    else if (strcmp(s, "urls") == 0)
        *f = LT_CAP_URLS;
    else if (strcmp(s, "jsonl") == 0)
        *f = LT_CAP_JSONL;
    else
        return at_err_set(err, AT_ERR_INVALID, "--capture-format: expected auto, clf, urls or jsonl, got '%s'", s);
    return 0;
}

/* ---- time ---- */

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

static bool valid_ymdhms(int y, int mo, int d, int h, int mi, int s)
{
    return y >= 1970 && y <= 9999 && mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59 && s <= 60;
}

int lt_parse_rfc3339(const char *s, size_t len, int64_t *out_ns)
{
    int y, mo, d, h, mi, sec;
    if (len < 19 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') || !digits(s + 11, 2, &h) ||
        s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' || !digits(s + 17, 2, &sec) ||
        !valid_ymdhms(y, mo, d, h, mi, sec))
        return -1;
    size_t i = 19;
    int64_t frac_ns = 0;
    if (i < len && s[i] == '.') {
        i++;
        int64_t scale = 100000000;
        size_t start = i;
        while (i < len && isdigit((unsigned char)s[i])) {
            frac_ns += (s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == start)
            return -1;
    }
    int64_t off_s = 0;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i + 6 <= len && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
        int oh, om;
        if (!digits(s + i + 1, 2, &oh) || !digits(s + i + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        off_s = (oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
        i += 6;
    } else {
        return -1;
    }
    if (i != len)
        return -1;
    int64_t days = at_days_from_civil(y, mo, d);
    int64_t secs = days * 86400 + h * 3600 + mi * 60 + sec - off_s;
    *out_ns = secs * 1000000000LL + frac_ns;
    return 0;
}

/* "10/Oct/2000:13:55:36 -0700" */
static int parse_clf_time(const char *s, size_t len, int64_t *out_ns)
{
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    int d, y, h, mi, sec, oh, om;
    if (len != 26 || !digits(s, 2, &d) || s[2] != '/' || s[6] != '/' || !digits(s + 7, 4, &y) || s[11] != ':' ||
        !digits(s + 12, 2, &h) || s[14] != ':' || !digits(s + 15, 2, &mi) || s[17] != ':' || !digits(s + 18, 2, &sec) ||
        s[20] != ' ' || (s[21] != '+' && s[21] != '-') || !digits(s + 22, 2, &oh) || !digits(s + 24, 2, &om))
        return -1;
    int mo = 0;
    for (int k = 0; k < 12; k++)
        if (memcmp(s + 3, months + 3 * k, 3) == 0)
            mo = k + 1;
    if (mo == 0 || !valid_ymdhms(y, mo, d, h, mi, sec) || oh > 23 || om > 59)
        return -1;
    int64_t off = (oh * 3600 + om * 60) * (s[21] == '-' ? -1 : 1);
    int64_t secs = at_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - off;
    *out_ns = secs * 1000000000LL;
    return 0;
}

/* ---- building entries ---- */

static void bad_line(lt_capture_t *c, uint64_t line, const char *reason)
{
    c->bad++;
    if (c->nbad_kept < LT_CAPTURE_BAD_KEEP) {
        c->bad_lines[c->nbad_kept] = line;
        snprintf(c->bad_reasons[c->nbad_kept], sizeof(c->bad_reasons[0]), "%s", reason);
        c->nbad_kept++;
    }
}

static lt_capture_entry_t *new_entry(lt_capture_t *c, uint64_t line)
{
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 1024;
        lt_capture_entry_t *e = realloc(c->entries, cap * sizeof(*e));
        if (e == NULL)
            return NULL;
        c->entries = e;
        c->cap = cap;
    }
    lt_capture_entry_t *e = &c->entries[c->n];
    memset(e, 0, sizeof(*e));
    e->ts_ns = LT_CAPTURE_NO_TIME;
    e->line = line;
    e->nevents = 1;
    snprintf(e->method, sizeof(e->method), "GET");
    e->target_off = e->headers_off = e->body_off = c->arena.len;
    return e;
}

/*
 * Appends a request target to the arena: the path and query of @p s (an absolute http(s)
 * URL or a path), bytes >= 0x80 percent-encoded. Returns false for anything that cannot
 * go on a request line.
 */
static bool put_target(lt_capture_t *c, lt_capture_entry_t *e, const char *s, size_t n, const char **why)
{
    if (n >= 7 && strncasecmp(s, "http://", 7) == 0) {
        const char *p = memchr(s + 7, '/', n - 7);
        if (p == NULL) {
            s = "/";
            n = 1;
        } else {
            n -= (size_t)(p - s);
            s = p;
        }
    } else if (n >= 8 && strncasecmp(s, "https://", 8) == 0) {
        const char *p = memchr(s + 8, '/', n - 8);
        if (p == NULL) {
            s = "/";
            n = 1;
        } else {
            n -= (size_t)(p - s);
            s = p;
        }
    }
    if (n == 0 || s[0] != '/') {
        *why = "request target does not start with '/' or http://";
        return false;
    }
    if (n > 65536) {
        *why = "request target longer than 64 KiB";
        return false;
    }
    e->target_off = c->arena.len;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch <= ' ' || ch == 0x7f) {
            *why = "space or control character in the request target";
            c->arena.len = e->target_off;
            return false;
        }
        if (ch == '#')
            break; /* fragments are never sent */
        if (ch >= 0x80) {
            char enc[4];
            snprintf(enc, sizeof(enc), "%%%02X", ch);
            lt_buf_append(&c->arena, enc, 3);
        } else {
            lt_buf_putc(&c->arena, (char)ch);
        }
    }
    e->target_len = c->arena.len - e->target_off;
    lt_buf_putc(&c->arena, '\0');
    return true;
}

static bool valid_method(const char *s, size_t n)
{
    if (n == 0 || n > 7)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isupper((unsigned char)s[i]))
            return false;
    return true;
}

/* Header names we never replay: the client sets these itself. */
static bool reserved_header(const char *name, size_t n)
{
    static const char *const names[] = {"host",       "content-length", "connection", "transfer-encoding",
                                        "keep-alive", "upgrade",        "te",         "expect"};
    for (size_t i = 0; i < AT_ARRAY_LEN(names); i++)
        if (strlen(names[i]) == n && strncasecmp(names[i], name, n) == 0)
            return true;
    return false;
}

static bool valid_header_name(const char *s, size_t n)
{
    if (n == 0 || n > 256)
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (!(isalnum(ch) || strchr("!#$%&'*+-.^_`|~", ch)))
            return false;
    }
    return true;
}

/* Appends "Name: value\r\n"; control characters in the value become spaces. */
static void put_header(lt_capture_t *c, const char *name, size_t nlen, const char *v, size_t vlen)
{
    lt_buf_append(&c->arena, name, nlen);
    lt_buf_append(&c->arena, ": ", 2);
    for (size_t i = 0; i < vlen && i < 8192; i++) {
        unsigned char ch = (unsigned char)v[i];
        lt_buf_putc(&c->arena, (ch < 0x20 || ch == 0x7f) ? ' ' : (char)ch);
    }
    lt_buf_append(&c->arena, "\r\n", 2);
}

/* ---- clf ---- */

/* Reads a double-quoted field starting at s[*i] == '"', decoding \" \\ and \xHH into @p out. */
static bool clf_quoted(const char *s, size_t n, size_t *i, lt_buf_t *out)
{
    lt_buf_clear(out);
    if (*i >= n || s[*i] != '"')
        return false;
    size_t k = *i + 1;
    while (k < n) {
        char ch = s[k];
        if (ch == '"') {
            *i = k + 1;
            return true;
        }
        if (ch == '\\' && k + 1 < n) {
            char nx = s[k + 1];
            if (nx == 'x' && k + 3 < n && isxdigit((unsigned char)s[k + 2]) && isxdigit((unsigned char)s[k + 3])) {
                char hex[3] = {s[k + 2], s[k + 3], 0};
                lt_buf_putc(out, (char)strtol(hex, NULL, 16));
                k += 4;
                continue;
            }
            lt_buf_putc(out, nx);
            k += 2;
            continue;
        }
        lt_buf_putc(out, ch);
        k++;
    }
    return false;
}

static void skip_spaces(const char *s, size_t n, size_t *i)
{
    while (*i < n && s[*i] == ' ')
        (*i)++;
}

static bool skip_token(const char *s, size_t n, size_t *i)
{
    size_t st = *i;
    while (*i < n && s[*i] != ' ')
        (*i)++;
    return *i > st;
}

static void parse_clf(lt_capture_t *c, const char *s, size_t n, uint64_t line, lt_buf_t *tmp)
{
    size_t i = 0;
    /* remote host, ident, user */
    for (int k = 0; k < 3; k++) {
        skip_spaces(s, n, &i);
        if (!skip_token(s, n, &i))
            return bad_line(c, line, "not a log line: expected host ident user [time] \"request\"");
    }
    skip_spaces(s, n, &i);
    if (i >= n || s[i] != '[')
        return bad_line(c, line, "expected [time] as the fourth field");
    const char *close = memchr(s + i, ']', n - i);
    if (close == NULL)
        return bad_line(c, line, "unterminated [time]");
    int64_t ts;
    if (parse_clf_time(s + i + 1, (size_t)(close - s - i - 1), &ts) < 0)
        return bad_line(c, line, "bad time, expected [10/Oct/2000:13:55:36 -0700]");
    i = (size_t)(close - s) + 1;
    skip_spaces(s, n, &i);
    if (!clf_quoted(s, n, &i, tmp) || tmp->oom)
        return bad_line(c, line, "expected a quoted request \"GET /path HTTP/1.1\"");
    /* "METHOD target [HTTP/x.y]" */
    const char *rq = tmp->data ? tmp->data : "";
    size_t rl = tmp->len;
    const char *sp1 = memchr(rq, ' ', rl);
    if (sp1 == NULL)
        return bad_line(c, line, "request is not \"METHOD target HTTP/x.y\"");
    size_t mlen = (size_t)(sp1 - rq);
    const char *tg = sp1 + 1;
    const char *sp2 = memchr(tg, ' ', rl - mlen - 1);
    size_t tlen = sp2 ? (size_t)(sp2 - tg) : rl - mlen - 1;
    if (sp2 && strncmp(sp2 + 1, "HTTP/", 5) != 0)
        return bad_line(c, line, "request is not \"METHOD target HTTP/x.y\"");
    if (!valid_method(rq, mlen))
        return bad_line(c, line, "bad request method");
    /* status and bytes */
    skip_spaces(s, n, &i);
    size_t st = i;
    if (!skip_token(s, n, &i) || i - st != 3 || !isdigit((unsigned char)s[st]))
        return bad_line(c, line, "expected a 3-digit status after the request");
    skip_spaces(s, n, &i);
    if (!skip_token(s, n, &i))
        return bad_line(c, line, "expected a byte count after the status");
    if (!((mlen == 3 && memcmp(rq, "GET", 3) == 0) || (mlen == 4 && memcmp(rq, "HEAD", 4) == 0))) {
        c->skipped++;
        return;
    }
    lt_capture_entry_t *e = new_entry(c, line);
    if (e == NULL)
        return bad_line(c, line, "out of memory");
    memcpy(e->method, rq, mlen);
    e->method[mlen] = '\0';
    e->ts_ns = ts;
    const char *why = NULL;
    if (!put_target(c, e, tg, tlen, &why))
        return bad_line(c, line, why);
    /* Optional "referer" "user-agent" (combined format). */
    skip_spaces(s, n, &i);
    e->headers_off = c->arena.len;
    if (i < n && s[i] == '"') {
        if (!clf_quoted(s, n, &i, tmp))
            return bad_line(c, line, "unterminated referer");
        if (tmp->len > 0 && !(tmp->len == 1 && tmp->data[0] == '-'))
            put_header(c, "Referer", 7, tmp->data, tmp->len);
        skip_spaces(s, n, &i);
        if (i < n && s[i] == '"') {
            if (!clf_quoted(s, n, &i, tmp))
                return bad_line(c, line, "unterminated user agent");
            if (tmp->len > 0 && !(tmp->len == 1 && tmp->data[0] == '-'))
                put_header(c, "User-Agent", 10, tmp->data, tmp->len);
        }
    }
    e->headers_len = c->arena.len - e->headers_off;
    if (c->arena.oom)
        return bad_line(c, line, "out of memory");
    c->n++;
}

/* ---- urls ---- */

static void parse_url_line(lt_capture_t *c, const char *s, size_t n, uint64_t line)
{
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    size_t i = 0;
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    lt_capture_entry_t *e = new_entry(c, line);
    if (e == NULL)
        return bad_line(c, line, "out of memory");
    const char *sp = memchr(s + i, ' ', n - i);
    if (sp) {
        size_t mlen = (size_t)(sp - s - i);
        if (!((mlen == 3 && memcmp(s + i, "GET", 3) == 0) || (mlen == 4 && memcmp(s + i, "HEAD", 4) == 0)))
            return bad_line(c, line, "expected a URL or path, optionally after GET or HEAD");
        memcpy(e->method, s + i, mlen);
        e->method[mlen] = '\0';
        i += mlen;
        while (i < n && s[i] == ' ')
            i++;
    }
    const char *why = NULL;
    if (!put_target(c, e, s + i, n - i, &why))
        return bad_line(c, line, why);
    e->headers_off = e->body_off = c->arena.len;
    if (c->arena.oom)
        return bad_line(c, line, "out of memory");
    c->n++;
}

/* ---- jsonl ---- */

static uint32_t count_array(const bson_t *arr)
{
    bson_iter_t it;
    uint32_t k = 0;
    if (bson_iter_init(&it, arr))
        while (bson_iter_next(&it))
            k++;
    return k ? k : 1;
}

static void parse_json_line(lt_capture_t *c, const char *s, size_t n, uint64_t line)
{
    bson_t doc;
    bson_error_t berr;
    if (!bson_init_from_json(&doc, s, (ssize_t)n, &berr))
        return bad_line(c, line, "not a JSON object");
    size_t mark = c->arena.len;
    lt_capture_entry_t *e = new_entry(c, line);
    bson_iter_t it;
    const char *why = NULL;
    bool have_target = false, have_method = false, have_body = false;
    if (e == NULL) {
        why = "out of memory";
        goto bad;
    }
    if (!bson_iter_init(&it, &doc)) {
        why = "unreadable JSON";
        goto bad;
    }
    /* First pass: target (so that its offset comes first in the arena). */
    bson_iter_t f;
    if ((bson_iter_init_find(&f, &doc, "url") || bson_iter_init_find(&f, &doc, "path"))) {
        uint32_t len;
        if (!BSON_ITER_HOLDS_UTF8(&f)) {
            why = "url: expected a string";
            goto bad;
        }
        const char *u = bson_iter_utf8(&f, &len);
        if (!put_target(c, e, u, len, &why))
            goto bad;
        have_target = true;
    }
    if (!have_target) {
        why = "missing \"url\"";
        goto bad;
    }
    e->headers_off = c->arena.len;
    if (bson_iter_init_find(&f, &doc, "headers")) {
        bson_iter_t h;
        if (!BSON_ITER_HOLDS_DOCUMENT(&f) || !bson_iter_recurse(&f, &h)) {
            why = "headers: expected an object of strings";
            goto bad;
        }
        while (bson_iter_next(&h)) {
            const char *name = bson_iter_key(&h);
            size_t nlen = strlen(name);
            uint32_t vlen;
            if (!BSON_ITER_HOLDS_UTF8(&h) || !valid_header_name(name, nlen)) {
                why = "headers: expected header names with string values";
                goto bad;
            }
            const char *v = bson_iter_utf8(&h, &vlen);
            if (!reserved_header(name, nlen))
                put_header(c, name, nlen, v, vlen);
        }
    }
    e->headers_len = c->arena.len - e->headers_off;
    e->body_off = c->arena.len;
    if (bson_iter_init_find(&f, &doc, "body")) {
        if (BSON_ITER_HOLDS_UTF8(&f)) {
            uint32_t blen;
            const char *b = bson_iter_utf8(&f, &blen);
            lt_buf_append(&c->arena, b, blen);
            e->body_len = blen;
            /* A beacon body given as text: count its events when it is a JSON array. */
            if (blen > 0 && b[0] == '[') {
                bson_t arr;
                if (bson_init_from_json(&arr, b, blen, &berr)) {
                    e->nevents = count_array(&arr);
                    bson_destroy(&arr);
                }
            }
        } else if (BSON_ITER_HOLDS_ARRAY(&f) || BSON_ITER_HOLDS_DOCUMENT(&f)) {
            const uint8_t *data;
            uint32_t dlen;
            bool arr = BSON_ITER_HOLDS_ARRAY(&f);
            if (arr)
                bson_iter_array(&f, &dlen, &data);
            else
                bson_iter_document(&f, &dlen, &data);
            bson_t sub;
            if (!bson_init_static(&sub, data, dlen)) {
                why = "body: unreadable";
                goto bad;
            }
            size_t jlen = 0;
            char *j = arr ? bson_array_as_json(&sub, &jlen) : bson_as_relaxed_extended_json(&sub, &jlen);
            if (j == NULL) {
                why = "body: cannot serialise";
                goto bad;
            }
            lt_buf_append(&c->arena, j, jlen);
            e->body_len = jlen;
            bson_free(j);
            if (arr)
                e->nevents = count_array(&sub);
        } else if (!BSON_ITER_HOLDS_NULL(&f)) {
            why = "body: expected a string, array or object";
            goto bad;
        }
        have_body = e->body_len > 0;
    }
    lt_buf_putc(&c->arena, '\0');
    if (bson_iter_init_find(&f, &doc, "method")) {
        uint32_t mlen;
        const char *m = BSON_ITER_HOLDS_UTF8(&f) ? bson_iter_utf8(&f, &mlen) : NULL;
        if (m == NULL || !valid_method(m, mlen)) {
            why = "method: expected an upper-case method name";
            goto bad;
        }
        memcpy(e->method, m, mlen);
        e->method[mlen] = '\0';
        have_method = true;
    }
    if (!have_method && have_body)
        snprintf(e->method, sizeof(e->method), "POST");
    if (bson_iter_init_find(&f, &doc, "ts")) {
        if (BSON_ITER_HOLDS_DATE_TIME(&f)) {
            e->ts_ns = bson_iter_date_time(&f) * 1000000LL;
        } else if (BSON_ITER_HOLDS_UTF8(&f)) {
            uint32_t tl;
            const char *t = bson_iter_utf8(&f, &tl);
            if (lt_parse_rfc3339(t, tl, &e->ts_ns) < 0) {
                why = "ts: expected Unix seconds or an RFC 3339 time";
                goto bad;
            }
        } else if (BSON_ITER_HOLDS_NUMBER(&f)) {
            double v = bson_iter_as_double(&f);
            if (!(v >= 0 && v < 1e11)) {
                why = "ts: expected Unix seconds (use ts_ms for milliseconds)";
                goto bad;
            }
            /* Whole seconds and fraction apart: v * 1e9 would exceed a double's precision. */
            double whole = floor(v);
            e->ts_ns = (int64_t)whole * 1000000000LL + (int64_t)llround((v - whole) * 1e9);
        } else {
            why = "ts: expected Unix seconds or an RFC 3339 time";
            goto bad;
        }
    } else if (bson_iter_init_find(&f, &doc, "ts_ms")) {
        if (!BSON_ITER_HOLDS_NUMBER(&f) || bson_iter_as_double(&f) < 0 || bson_iter_as_double(&f) > 1e14) {
            why = "ts_ms: expected Unix milliseconds";
            goto bad;
        }
        e->ts_ns = (int64_t)llround(bson_iter_as_double(&f) * 1e6);
    }
    if (c->arena.oom) {
        why = "out of memory";
        goto bad;
    }
    bson_destroy(&doc);
    c->n++;
    return;
bad:
    if (e != NULL)
        c->arena.len = mark;
    bson_destroy(&doc);
    bad_line(c, line, why);
}

/* ---- driver ---- */

static lt_capture_format_t detect(const char *s, size_t n)
{
    if (n > 0 && s[0] == '{')
        return LT_CAP_JSONL;
    const char *br = memchr(s, '[', n);
    const char *q = memchr(s, '"', n);
    if (br && q && q > br)
        return LT_CAP_CLF;
    return LT_CAP_URLS;
}

int lt_capture_parse(lt_capture_t *c, const char *data, size_t len, lt_capture_format_t fmt, at_err_t *err)
{
    lt_buf_t tmp = {0};
    size_t pos = 0;
    uint64_t line = c->lines;
    if (c->format == LT_CAP_AUTO)
        c->format = fmt;
    while (pos < len) {
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - data) : len;
        const char *s = data + pos;
        size_t n = end - pos;
        pos = nl ? end + 1 : len;
        line++;
        if (n > 0 && s[n - 1] == '\r')
            n--;
        size_t lead = 0;
        while (lead < n && (s[lead] == ' ' || s[lead] == '\t'))
            lead++;
        if (lead == n || s[lead] == '#')
            continue;
        if (memchr(s, '\0', n) != NULL) {
            bad_line(c, line, "NUL byte in line");
            continue;
        }
        if (n > LT_CAPTURE_LINE_MAX) {
            bad_line(c, line, "line longer than 1 MiB");
            continue;
        }
        if (c->format == LT_CAP_AUTO)
            c->format = detect(s + lead, n - lead);
        switch (c->format) {
        case LT_CAP_CLF:
            parse_clf(c, s, n, line, &tmp);
            break;
        case LT_CAP_JSONL:
            parse_json_line(c, s + lead, n - lead, line);
            break;
        default:
            parse_url_line(c, s, n, line);
            break;
        }
    }
    c->lines = line;
    lt_buf_free(&tmp);
    c->all_timed = c->n > 0;
    for (size_t i = 0; i < c->n; i++)
        if (c->entries[i].ts_ns == LT_CAPTURE_NO_TIME)
            c->all_timed = false;
    if (c->arena.oom)
        return at_err_set(err, AT_ERR_NOMEM, "capture: out of memory");
    return 0;
}

int lt_capture_load(lt_capture_t *c, const char *path, lt_capture_format_t fmt, at_err_t *err)
{
    bool use_stdin = strcmp(path, "-") == 0;
    FILE *f = use_stdin ? stdin : fopen(path, "rb");
    if (f == NULL)
        return at_err_set(err, AT_ERR_IO, "--capture: cannot open '%s': %s", path, strerror(errno));
    lt_buf_t b = {0};
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        lt_buf_append(&b, chunk, n);
    bool rerr = ferror(f) != 0;
    if (!use_stdin)
        fclose(f);
    if (rerr || b.oom) {
        lt_buf_free(&b);
        return at_err_set(err, AT_ERR_IO, "--capture: cannot read '%s'", path);
    }
    int rc = lt_capture_parse(c, b.data ? b.data : "", b.len, fmt, err);
    lt_buf_free(&b);
    if (rc < 0)
        return -1;
    if (c->n == 0) {
        if (c->bad > 0)
            return at_err_set(err, AT_ERR_INVALID,
                              "--capture: no usable request in '%s' (%llu bad lines as %s, first at line %llu: %s)",
                              path, (unsigned long long)c->bad, lt_capture_format_str(c->format),
                              (unsigned long long)c->bad_lines[0], c->bad_reasons[0]);
        return at_err_set(err, AT_ERR_INVALID, "--capture: no usable request in '%s'", path);
    }
    return 0;
}

void lt_capture_free(lt_capture_t *c)
{
    if (c == NULL)
        return;
    free(c->entries);
    lt_buf_free(&c->arena);
    memset(c, 0, sizeof(*c));
}

typedef struct order_s {
    int64_t ts;
    size_t idx;
} order_t;

static int cmp_order(const void *a, const void *b)
{
    const order_t *x = a, *y = b;
    if (x->ts != y->ts)
        return x->ts < y->ts ? -1 : 1;
    return x->idx < y->idx ? -1 : (x->idx > y->idx);
}

int lt_capture_timeline(lt_capture_t *c, double speed, int64_t **out, at_err_t *err)
{
    *out = NULL;
    if (!c->all_timed || c->n == 0)
        return at_err_set(err, AT_ERR_INVALID, "capture: not every request has a timestamp; replay it with --rate");
    if (!(speed > 0))
        return at_err_set(err, AT_ERR_RANGE, "--speed: expected a positive factor");
    order_t *o = malloc(c->n * sizeof(*o));
    lt_capture_entry_t *sorted = malloc(c->n * sizeof(*sorted));
    int64_t *t = malloc(c->n * sizeof(*t));
    if (o == NULL || sorted == NULL || t == NULL) {
        free(o);
        free(sorted);
        free(t);
        return at_err_set(err, AT_ERR_NOMEM, "capture: out of memory");
    }
    bool whole_seconds = true;
    for (size_t i = 0; i < c->n; i++) {
        o[i].ts = c->entries[i].ts_ns;
        o[i].idx = i;
        if (o[i].ts % 1000000000LL != 0)
            whole_seconds = false;
    }
    qsort(o, c->n, sizeof(*o), cmp_order);
    for (size_t i = 0; i < c->n; i++)
        sorted[i] = c->entries[o[i].idx];
    memcpy(c->entries, sorted, c->n * sizeof(*sorted));
    int64_t t0 = o[0].ts;
    for (size_t i = 0; i < c->n;) {
        size_t j = i;
        while (j < c->n && o[j].ts == o[i].ts)
            j++;
        size_t k = j - i; /* entries sharing this timestamp */
        for (size_t m = i; m < j; m++) {
            double off = (double)(o[m].ts - t0);
            if (whole_seconds && k > 1)
                off += 1e9 * (double)(m - i) / (double)k;
            t[m] = (int64_t)llround(off / speed);
        }
        i = j;
    }
    free(o);
    free(sorted);
    *out = t;
    return 0;
}
