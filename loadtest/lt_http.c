/*
 * lt_http.c: target URLs, request serialisation, incremental response parser.
 */
#include "lt_http.h"

#include <ctype.h>
#include <stdlib.h>
#include <strings.h>

int lt_target_parse(const char *url, lt_target_t *t, at_err_t *err)
{
    memset(t, 0, sizeof(*t));
    if (url == NULL || *url == '\0')
        return at_err_set(err, AT_ERR_INVALID, "--target: expected http://host[:port][/path], got an empty value");
    if (strncasecmp(url, "https://", 8) == 0)
        return at_err_set(err, AT_ERR_INVALID,
                          "--target: https is not supported; point the load tester at the plain-HTTP listener "
                          "(or a TLS-terminating proxy in front of it)");
    if (strncasecmp(url, "http://", 7) != 0)
        return at_err_set(err, AT_ERR_INVALID, "--target: expected http://host[:port][/path], got '%s'", url);
    const char *h = url + 7;
    const char *slash = strchr(h, '/');
    size_t hlen = slash ? (size_t)(slash - h) : strlen(h);
    if (hlen == 0 || hlen >= sizeof(t->host))
        return at_err_set(err, AT_ERR_INVALID, "--target: missing or too long host in '%s'", url);
    memcpy(t->host, h, hlen);
    t->host[hlen] = '\0';
    const char *portp = NULL;
    if (t->host[0] == '[') {
        char *close = strchr(t->host, ']');
        if (close == NULL)
            return at_err_set(err, AT_ERR_INVALID, "--target: unterminated IPv6 literal in '%s'", url);
        size_t n = (size_t)(close - t->host - 1);
        memcpy(t->hostname, t->host + 1, n);
        t->hostname[n] = '\0';
        if (close[1] == ':')
            portp = close + 2;
        else if (close[1] != '\0')
            return at_err_set(err, AT_ERR_INVALID, "--target: junk after IPv6 literal in '%s'", url);
    } else {
        char *colon = strchr(t->host, ':');
        size_t n = colon ? (size_t)(colon - t->host) : hlen;
        memcpy(t->hostname, t->host, n);
        t->hostname[n] = '\0';
        if (colon)
            portp = colon + 1;
    }
    if (t->hostname[0] == '\0')
        return at_err_set(err, AT_ERR_INVALID, "--target: missing host in '%s'", url);
    if (portp) {
        char *end = NULL;
        long port = strtol(portp, &end, 10);
        if (*portp == '\0' || *end != '\0' || port < 1 || port > 65535)
            return at_err_set(err, AT_ERR_INVALID, "--target: port must be 1-65535 in '%s'", url);
        snprintf(t->port, sizeof(t->port), "%ld", port);
    } else {
        snprintf(t->port, sizeof(t->port), "80");
    }
    if (slash) {
        size_t blen = strlen(slash);
        while (blen > 0 && slash[blen - 1] == '/')
            blen--;
        if (blen >= sizeof(t->base))
            return at_err_set(err, AT_ERR_TOO_LARGE, "--target: path longer than %zu bytes", sizeof(t->base) - 1);
        for (size_t i = 0; i < blen; i++) {
            unsigned char c = (unsigned char)slash[i];
            if (c <= ' ' || c >= 0x7f || c == '?' || c == '#')
                return at_err_set(err, AT_ERR_INVALID,
                                  "--target: the path may not contain a query, fragment, spaces or control characters");
        }
        memcpy(t->base, slash, blen);
        t->base[blen] = '\0';
    }
    return 0;
}

void lt_http_write_request(lt_buf_t *out, const lt_target_t *t, const char *method, const char *target,
                           size_t target_len, const char *tag, const char *headers, const char *req_headers,
                           size_t req_headers_len, const char *body, size_t body_len)
{
    lt_buf_puts(out, method);
    lt_buf_putc(out, ' ');
    lt_buf_puts(out, t->base);
    lt_buf_append(out, target, target_len);
    if (tag) {
        lt_buf_putc(out, memchr(target, '?', target_len) ? '&' : '?');
        lt_buf_puts(out, "tag=");
        lt_buf_put_urlenc(out, tag, strlen(tag));
    }
    lt_buf_puts(out, " HTTP/1.1\r\nHost: ");
    lt_buf_puts(out, t->host);
    lt_buf_puts(out, "\r\n");
    if (headers)
        lt_buf_puts(out, headers);
    if (req_headers && req_headers_len)
        lt_buf_append(out, req_headers, req_headers_len);
    if (body_len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0) {
        bool have_ct = false;
        if (req_headers && req_headers_len) {
            for (size_t i = 0; i + 13 <= req_headers_len; i++) {
                if ((i == 0 || req_headers[i - 1] == '\n') && strncasecmp(req_headers + i, "content-type:", 13) == 0)
                    have_ct = true;
            }
        }
        if (!have_ct && headers) {
            for (const char *p = headers; *p;) {
                if (strncasecmp(p, "content-type:", 13) == 0)
                    have_ct = true;
                const char *nl = strchr(p, '\n');
                if (nl == NULL)
                    break;
                p = nl + 1;
            }
        }
        if (!have_ct && body_len > 0)
            lt_buf_puts(out, "Content-Type: application/json\r\n");
        lt_buf_printf(out, "Content-Length: %zu\r\n", body_len);
    }
    lt_buf_puts(out, "\r\n");
    if (body_len)
        lt_buf_append(out, body, body_len);
}

void lt_resp_reset(lt_resp_t *r, bool head_request)
{
    r->state = LT_RESP_HEAD;
    r->head_request = head_request;
    r->status = 0;
    r->keep_alive = true;
    r->remaining = 0;
    r->body_bytes = 0;
    r->line_len = 0;
    r->error = NULL;
}

void lt_resp_free(lt_resp_t *r)
{
    if (r == NULL)
        return;
    free(r->line);
    r->line = NULL;
    r->line_cap = r->line_len = 0;
}

static int fail(lt_resp_t *r, const char *msg)
{
    r->error = msg;
    return -1;
}

/* Makes room for @p want bytes in r->line (capped at LT_RESP_HEAD_MAX); returns the room. */
static size_t line_room(lt_resp_t *r, size_t want)
{
    size_t need = r->line_len + want;
    if (need > LT_RESP_HEAD_MAX)
        need = LT_RESP_HEAD_MAX;
    if (need > r->line_cap) {
        size_t cap = r->line_cap ? r->line_cap : 1024;
        while (cap < need)
            cap *= 2;
        if (cap > LT_RESP_HEAD_MAX)
            cap = LT_RESP_HEAD_MAX;
        char *l = realloc(r->line, cap);
        if (l == NULL)
            return r->line_cap - r->line_len;
        r->line = l;
        r->line_cap = cap;
    }
    return r->line_cap - r->line_len;
}

/* Case-insensitive "does the comma-separated list @p v (length @p n) contain @p tok". */
static bool has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    size_t i = 0;
    while (i < n) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t s = i;
        while (i < n && v[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - s == tl && strncasecmp(v + s, tok, tl) == 0)
            return true;
    }
    return false;
}

/* Parses the complete head in r->line (r->line_len bytes, ending with CRLFCRLF or LFLF). */
static int parse_head(lt_resp_t *r)
{
    const char *p = r->line, *end = r->line + r->line_len;
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (eol == NULL || eol - p < 12 || memcmp(p, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)p[7]) || p[8] != ' ')
        return fail(r, "bad status line");
    bool http10 = p[7] == '0';
    if (!isdigit((unsigned char)p[9]) || !isdigit((unsigned char)p[10]) || !isdigit((unsigned char)p[11]) ||
        (eol - p > 12 && p[12] != ' ' && p[12] != '\r'))
        return fail(r, "bad status code");
    r->status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
    if (r->status < 100)
        return fail(r, "bad status code");
    bool have_len = false, chunked = false, conn_close = false, conn_keep = false;
    uint64_t clen = 0;
    p = eol + 1;
    while (p < end) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            return fail(r, "truncated header");
        const char *le = eol;
        if (le > p && le[-1] == '\r')
            le--;
        if (le == p)
            break; /* empty line: end of head */
        const char *colon = memchr(p, ':', (size_t)(le - p));
        if (colon == NULL || colon == p)
            return fail(r, "header line without a name");
        size_t nlen = (size_t)(colon - p);
        const char *v = colon + 1;
        while (v < le && (*v == ' ' || *v == '\t'))
            v++;
        size_t vlen = (size_t)(le - v);
        while (vlen > 0 && (v[vlen - 1] == ' ' || v[vlen - 1] == '\t'))
            vlen--;
        if (nlen == 14 && strncasecmp(p, "content-length", 14) == 0) {
            if (vlen == 0 || vlen > 18)
                return fail(r, "bad Content-Length");
            uint64_t n = 0;
            for (size_t i = 0; i < vlen; i++) {
                if (!isdigit((unsigned char)v[i]))
                    return fail(r, "bad Content-Length");
                n = n * 10 + (uint64_t)(v[i] - '0');
            }
            if (have_len && n != clen)
                return fail(r, "conflicting Content-Length headers");
            have_len = true;
            clen = n;
        } else if (nlen == 17 && strncasecmp(p, "transfer-encoding", 17) == 0) {
            if (has_token(v, vlen, "chunked"))
                chunked = true;
        } else if (nlen == 10 && strncasecmp(p, "connection", 10) == 0) {
            if (has_token(v, vlen, "close"))
                conn_close = true;
            if (has_token(v, vlen, "keep-alive"))
                conn_keep = true;
        }
        p = eol + 1;
    }
    /* HTTP/1.1 keeps the connection unless told to close; 1.0 only when asked to keep it. */
    r->keep_alive = http10 ? (conn_keep && !conn_close) : !conn_close;
    if (r->head_request || r->status == 204 || r->status == 304 || (r->status >= 100 && r->status < 200)) {
        r->state = LT_RESP_DONE;
    } else if (chunked) {
        r->state = LT_RESP_CHUNK_SIZE;
    } else if (have_len) {
        r->remaining = clen;
        r->state = clen ? LT_RESP_BODY_LEN : LT_RESP_DONE;
    } else {
        r->state = LT_RESP_BODY_EOF;
        r->keep_alive = false;
    }
    r->line_len = 0;
    return 0;
}

/* Appends to r->line until a line ends; returns the bytes used and sets *done. */
static int take_line(lt_resp_t *r, const char *data, size_t len, size_t *used, bool *done)
{
    const char *nl = memchr(data, '\n', len);
    size_t n = nl ? (size_t)(nl - data + 1) : len;
    if (line_room(r, n) < n)
        return fail(r, "line too long");
    memcpy(r->line + r->line_len, data, n);
    r->line_len += n;
    *used = n;
    *done = nl != NULL;
    return 0;
}

int lt_resp_feed(lt_resp_t *r, const char *data, size_t len, size_t *used)
{
    size_t pos = 0;
    *used = 0;
    if (r->error)
        return -1;
    while (pos < len || r->state == LT_RESP_DONE) {
        switch (r->state) {
        case LT_RESP_HEAD: {
            /* Copy up to the end of the head (blank line) into r->line. */
            size_t avail = len - pos;
            size_t room = line_room(r, avail);
            size_t n = AT_MIN(avail, room);
            size_t start = r->line_len;
            memcpy(r->line + start, data + pos, n);
            r->line_len += n;
            /* Search for "\n\r\n" or "\n\n" from a little before the new data. */
            size_t from = start >= 3 ? start - 3 : 0;
            size_t headend = 0;
            for (size_t i = from; i < r->line_len; i++) {
                if (r->line[i] != '\n')
                    continue;
                if (i + 1 < r->line_len && r->line[i + 1] == '\n') {
                    headend = i + 2;
                    break;
                }
                if (i + 2 < r->line_len && r->line[i + 1] == '\r' && r->line[i + 2] == '\n') {
                    headend = i + 3;
                    break;
                }
            }
            if (headend == 0) {
                if (r->line_len >= LT_RESP_HEAD_MAX || n == 0)
                    return fail(r, "response head larger than 16 KiB");
                pos += n;
                break;
            }
            pos += headend - start;
            r->line_len = headend;
            if (parse_head(r) < 0)
                return -1;
            if (r->state == LT_RESP_DONE && r->status >= 100 && r->status < 200 && r->status != 101) {
                lt_resp_reset(r, r->head_request); /* interim response: the real one follows */
                continue;
            }
            break;
        }
        case LT_RESP_BODY_LEN: {
            uint64_t n = AT_MIN((uint64_t)(len - pos), r->remaining);
            pos += (size_t)n;
            r->remaining -= n;
            r->body_bytes += (size_t)n;
            if (r->remaining == 0)
                r->state = LT_RESP_DONE;
            break;
        }
        case LT_RESP_CHUNK_SIZE:
        case LT_RESP_CHUNK_CRLF:
        case LT_RESP_TRAILER: {
            size_t n;
            bool done;
            if (take_line(r, data + pos, len - pos, &n, &done) < 0)
                return -1;
            pos += n;
            if (!done)
                break;
            const char *l = r->line;
            size_t ll = r->line_len;
            while (ll > 0 && (l[ll - 1] == '\n' || l[ll - 1] == '\r'))
                ll--;
            r->line_len = 0;
            if (r->state == LT_RESP_CHUNK_CRLF) {
                if (ll != 0)
                    return fail(r, "missing CRLF after chunk");
                r->state = LT_RESP_CHUNK_SIZE;
            } else if (r->state == LT_RESP_TRAILER) {
                if (ll == 0)
                    r->state = LT_RESP_DONE;
            } else {
                uint64_t sz = 0;
                size_t i = 0;
                for (; i < ll && isxdigit((unsigned char)l[i]); i++) {
                    if (sz >> 60)
                        return fail(r, "chunk size too large");
                    sz = sz * 16 + (uint64_t)(isdigit((unsigned char)l[i]) ? l[i] - '0'
                                                                           : (tolower((unsigned char)l[i]) - 'a' + 10));
                }
                if (i == 0 || (i < ll && l[i] != ';' && l[i] != ' ' && l[i] != '\t'))
                    return fail(r, "bad chunk size");
                if (sz == 0) {
                    r->state = LT_RESP_TRAILER;
                } else {
                    r->remaining = sz;
                    r->state = LT_RESP_CHUNK_DATA;
                }
            }
            break;
        }
        case LT_RESP_CHUNK_DATA: {
            uint64_t n = AT_MIN((uint64_t)(len - pos), r->remaining);
            pos += (size_t)n;
            r->remaining -= n;
            r->body_bytes += (size_t)n;
            if (r->remaining == 0)
                r->state = LT_RESP_CHUNK_CRLF;
            break;
        }
        case LT_RESP_BODY_EOF:
            r->body_bytes += len - pos;
            pos = len;
            break;
        case LT_RESP_DONE:
            *used = pos;
            return 1;
        }
    }
    *used = pos;
    return 0;
}

int lt_resp_eof(lt_resp_t *r)
{
    if (r->state == LT_RESP_BODY_EOF || r->state == LT_RESP_DONE) {
        r->state = LT_RESP_DONE;
        return 1;
    }
    return fail(r, r->state == LT_RESP_HEAD && r->line_len == 0 ? "connection closed before the response"
                                                                : "connection closed in the middle of the response");
}
