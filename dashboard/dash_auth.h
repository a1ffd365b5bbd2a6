/*
 * dash_auth.h: who may see the dashboard (docs/DASHBOARD.md, "Authentication").
 *
 * The page shows every campaign's spend, so everything but /healthz, /readyz, /metrics and
 * the login page needs one of the tokens given with --auth-token (a secret option: from a
 * file or the environment). Two ways to present it:
 *   - `Authorization: Bearer <token>` (scripts, curl, Prometheus-style clients);
 *   - a session cookie for browsers, set by POST /login (a form field `token`): HttpOnly,
 *     SameSite=Strict, Path=/, Secure with --cookie-secure, valid --session-hours. Its value
 *     is "v1.<expiry unix s>.<base64url HMAC-SHA256(token, "adtrack-dashboard-session.v1.<expiry>")>":
 *     it proves knowledge of a token without holding it, expires on its own, and stops
 *     working when that token is removed from the configuration.
 * Tokens are compared through HMAC digests in constant time (at_ct_equal), against every
 * configured token without an early exit.
 *
 * @locality: dash_auth_new at start-up; the rest from any thread (read-only data).
 */
#ifndef DASH_AUTH_H
#define DASH_AUTH_H

#include <stdint.h>

#include "at_conf.h"

typedef struct dash_auth_s dash_auth_t;

#define DASH_AUTH_COOKIE "adtrack_dashboard"
/* Longest accepted token; shorter than 16 bytes draws a warning at start. */
#define DASH_TOKEN_MAX 256
/* "v1." + 20 digits + "." + 43 */
#define DASH_COOKIE_VALUE_MAX 80

/* A checker for @p tokens (copied as keyed digests; at least one, printable ASCII without
 * spaces, at most DASH_TOKEN_MAX bytes), or NULL with @p err. Free with dash_auth_destroy(). */
dash_auth_t *dash_auth_new(const at_conf_list_t *tokens, at_err_t *err);
void dash_auth_destroy(dash_auth_t *a);

/* True when the Authorization header value @p hdr (length @p len; NULL when absent) is
 * "Bearer <one of the tokens>". */
bool dash_auth_bearer_ok(const dash_auth_t *a, const char *hdr, size_t len);

/* True when the Cookie header value @p hdr (length @p len; NULL when absent) holds a
 * session cookie made by dash_auth_cookie() for one of the tokens that has not expired at
 * @p now_s (unix seconds). */
bool dash_auth_cookie_ok(const dash_auth_t *a, const char *hdr, size_t len, int64_t now_s);

/* When @p token (length @p len) is one of the tokens: writes a session cookie value valid
 * until @p expires_s into @p out and returns true. */
bool dash_auth_cookie(const dash_auth_t *a, const char *token, size_t len, int64_t expires_s,
                      char out[DASH_COOKIE_VALUE_MAX + 1]);

#endif
