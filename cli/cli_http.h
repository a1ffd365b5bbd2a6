/*
 * cli_http.h: the tiny blocking HTTP/1.1 client of the adtrack CLI (one request per
 * connection, http:// only: the admin API sits on a private network or behind a TLS
 * terminating proxy).
 */
#ifndef CLI_HTTP_H
#define CLI_HTTP_H

#include "at_err.h"

typedef struct cli_resp_s {
    int status;
    char *body; /* heap, NUL-terminated */
    size_t body_len;
} cli_resp_t;

/*
 * Sends @p method to @p base_url (http://host[:port][/prefix]) + @p path with an optional
 * bearer @p token and JSON @p body (NULL: none), waits up to @p timeout_ms for the whole
 * answer. @p extra_header: one more "Name: value" line or NULL. 0, or -1 with @p err.
 */
int cli_http(const char *base_url, const char *method, const char *path, const char *token, const char *extra_header,
             const char *body, size_t body_len, int timeout_ms, cli_resp_t *resp, at_err_t *err);
void cli_resp_free(cli_resp_t *resp);

#endif
