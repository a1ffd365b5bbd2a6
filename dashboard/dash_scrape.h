/*
 * dash_scrape.h: a small blocking HTTP/1.0 GET client for /metrics, bounded in time and
 * size. It runs on the poll thread, never on the HTTP loop.
 */
#ifndef DASH_SCRAPE_H
#define DASH_SCRAPE_H

#include "at_err.h"

typedef struct dash_url_s {
    char host[256];
    int port;
    char path[1024]; /* with the query, "/" when empty */
} dash_url_t;

/* Parses "http://HOST[:PORT][/PATH]" (IPv6 as [addr]). 0, or -1 + err naming --scrape. */
int dash_url_parse(const char *url, dash_url_t *u, at_err_t *err);

/* Splits a --scrape value "NAME=URL" (or just "URL": the name is then the URL's host:port)
 * into @p name and @p url. 0 or -1 + err. */
int dash_scrape_spec(const char *spec, char *name, size_t name_size, char *url, size_t url_size, at_err_t *err);

/*
 * GETs @p u with the whole exchange limited to @p timeout_ms and the body to @p max_bytes.
 * On a 200 answer returns 0 with *@p body (heap, NUL-terminated, free()) and *@p len;
 * otherwise -1 with err (connection refused, timeout, status, too large).
 * @locality: any thread; blocks up to @p timeout_ms.
 */
int dash_scrape_get(const dash_url_t *u, int timeout_ms, size_t max_bytes, char **body, size_t *len, at_err_t *err);

/* As dash_scrape_get, with the Accept header @p accept and, unless @p bearer is NULL,
 * "Authorization: Bearer <bearer>" (the caller keeps it free of line breaks). */
int dash_http_get(const dash_url_t *u, const char *accept, const char *bearer, int timeout_ms, size_t max_bytes,
                  char **body, size_t *len, at_err_t *err);

#endif
