/*
 * lt_http.h: the HTTP/1.1 pieces of the load tester that need no sockets: target URL
 * parsing, request serialisation and an incremental response parser.
 *
 * The parser is fed whatever a read returned and says when one full response (headers and
 * body: Content-Length, chunked, or until close) has been consumed, so the connection can
 * be reused for the next request (keep-alive, no pipelining).
 */
#ifndef LT_HTTP_H
#define LT_HTTP_H

#include "at_err.h"
#include "lt_buf.h"

/* A parsed --target. */
typedef struct lt_target_s {
    char host[256];     /* as given, for the Host header (with :port when not 80) */
    char hostname[256]; /* for name resolution; IPv6 literals without brackets */
    char port[8];
    char base[512]; /* path prefix without trailing '/', may be "" */
} lt_target_t;

/* Parses "http://host[:port][/base]". https and other schemes are refused with a
 * message saying so. Returns 0 or -1 with @p err. */
int lt_target_parse(const char *url, lt_target_t *t, at_err_t *err);

/*
 * Appends one request to @p out: "<method> <base><target>[?|&]tag=<tag> HTTP/1.1", Host,
 * the fixed @p headers block (zero or more "Name: value\r\n" lines, may be NULL),
 * the per-request @p req_headers block (may be NULL), Content-Length and
 * Content-Type (application/json unless given) when @p body_len > 0, then the body.
 * @p tag may be NULL (no tag parameter).
 */
void lt_http_write_request(lt_buf_t *out, const lt_target_t *t, const char *method, const char *target,
                           size_t target_len, const char *tag, const char *headers, const char *req_headers,
                           size_t req_headers_len, const char *body, size_t body_len);

/* Response parser states. */
typedef enum lt_resp_state_e {
    LT_RESP_HEAD = 0, /* collecting the status line and headers */
    LT_RESP_BODY_LEN, /* Content-Length body */
    LT_RESP_CHUNK_SIZE,
    LT_RESP_CHUNK_DATA,
    LT_RESP_CHUNK_CRLF,
    LT_RESP_TRAILER,
    LT_RESP_BODY_EOF, /* no length: body ends when the server closes */
    LT_RESP_DONE,
} lt_resp_state_t;

#define LT_RESP_HEAD_MAX 16384 /* larger header blocks are a parse error */

typedef struct lt_resp_s {
    lt_resp_state_t state;
    bool head_request; /* set before feeding: the response to HEAD has no body */
    int status;
    bool keep_alive;    /* false when the server said Connection: close or spoke HTTP/1.0 */
    uint64_t remaining; /* body or chunk bytes still expected */
    size_t body_bytes;
    char *line; /* heap, grows up to LT_RESP_HEAD_MAX: the head / a chunk-size line */
    size_t line_len, line_cap;
    const char *error; /* static message once lt_resp_feed() returned -1 */
} lt_resp_t;

/* Prepares @p r (zeroed the first time) for the next response; @p head_request as for
 * the request method. Keeps the line buffer for reuse. */
void lt_resp_reset(lt_resp_t *r, bool head_request);

/* Releases the line buffer. Accepts NULL. */
void lt_resp_free(lt_resp_t *r);

/*
 * Consumes bytes from @p data (@p len). Returns 1 when a full response ended (*@p used =
 * bytes consumed, the rest belongs to whatever comes next), 0 when more is needed (all
 * bytes used), -1 on a malformed response (r->error says why).
 * Interim 1xx responses are skipped. A body that ends with the connection is completed
 * by lt_resp_eof().
 */
int lt_resp_feed(lt_resp_t *r, const char *data, size_t len, size_t *used);

/* The peer closed the connection: returns 1 when that completes the response (body
 * delimited by close), else -1 (truncated) with r->error set. */
int lt_resp_eof(lt_resp_t *r);

#endif
