/*
 * dash_auth.c: see dash_auth.h.
 */
#include "dash_auth.h"

#include <inttypes.h>
#include <stdlib.h>
#include <strings.h>

#include "at_hmac.h"
#include "at_secret.h"

/* A fixed key: the token digests only need to be one-way and of equal length. */
static const char digest_key[] = "adtrack-dashboard-token";

struct dash_auth_s {
    uint8_t (*digests)[32]; /* HMAC(digest_key, token), for the Bearer comparison */
    char **tokens;          /* the tokens themselves: the keys of the session cookies */
    size_t count;
};

dash_auth_t *dash_auth_new(const at_conf_list_t *tokens, at_err_t *err)
{
    if (tokens == NULL || tokens->count == 0) {
        at_err_set(err, AT_ERR_INVALID,
                   "--auth-token: expected at least one token (give it with --auth-token-file or "
                   "ADTRACK_AUTH_TOKEN_FILE), or --auth none behind an authenticating proxy");
        return NULL;
    }
    dash_auth_t *a = calloc(1, sizeof(*a));
    if (a == NULL || (a->digests = calloc(tokens->count, sizeof(*a->digests))) == NULL ||
        (a->tokens = calloc(tokens->count, sizeof(char *))) == NULL) {
        dash_auth_destroy(a);
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < tokens->count; i++) {
        const char *t = tokens->items[i];
        size_t len = strlen(t);
        bool printable = len > 0 && len <= DASH_TOKEN_MAX;
        for (size_t j = 0; printable && j < len; j++)
            printable = (unsigned char)t[j] > 0x20 && (unsigned char)t[j] < 0x7f;
        if (!printable) {
            dash_auth_destroy(a);
            at_err_set(err, AT_ERR_INVALID, "--auth-token: token %zu: expected 1 to %d printable ASCII bytes without spaces",
                       i + 1, DASH_TOKEN_MAX);
            return NULL;
        }
        at_hmac_sha256(digest_key, sizeof(digest_key) - 1, t, len, a->digests[i]);
        if ((a->tokens[i] = strdup(t)) == NULL) {
            dash_auth_destroy(a);
            at_err_set(err, AT_ERR_NOMEM, "out of memory");
            return NULL;
        }
        a->count++;
    }
    return a;
}

void dash_auth_destroy(dash_auth_t *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; a->tokens != NULL && i < a->count; i++) {
        at_secret_wipe(a->tokens[i]);
        free(a->tokens[i]);
    }
    free(a->tokens);
    free(a->digests);
    free(a);
}

/* Index of the token equal to [tok, tok+len), or -1; looks at every token. */
static long find_token(const dash_auth_t *a, const char *tok, size_t len)
{
    if (len == 0 || len > DASH_TOKEN_MAX)
        return -1;
    uint8_t d[32];
    at_hmac_sha256(digest_key, sizeof(digest_key) - 1, tok, len, d);
    long found = -1;
    for (size_t i = 0; i < a->count; i++)
        if (at_ct_equal(d, 32, a->digests[i], 32) && found < 0)
            found = (long)i;
    return found;
}

bool dash_auth_bearer_ok(const dash_auth_t *a, const char *hdr, size_t len)
{
    if (hdr == NULL || len < 7 || strncasecmp(hdr, "Bearer ", 7) != 0)
        return false;
    const char *tok = hdr + 7;
    size_t tlen = len - 7;
    while (tlen > 0 && *tok == ' ') {
        tok++;
        tlen--;
    }
    while (tlen > 0 && (tok[tlen - 1] == ' ' || tok[tlen - 1] == '\t'))
        tlen--;
    return find_token(a, tok, tlen) >= 0;
}

/* The MAC part of a cookie value for token @p i and @p expires_s. */
static void cookie_mac(const dash_auth_t *a, size_t i, int64_t expires_s, char out[AT_HMAC_SIG_LEN + 1])
{
    char msg[64];
    int n = snprintf(msg, sizeof(msg), "adtrack-dashboard-session.v1.%" PRId64, expires_s);
    at_hmac_sign(a->tokens[i], strlen(a->tokens[i]), msg, (size_t)n, out);
}

bool dash_auth_cookie(const dash_auth_t *a, const char *token, size_t len, int64_t expires_s,
                      char out[DASH_COOKIE_VALUE_MAX + 1])
{
    long i = find_token(a, token, len);
    if (i < 0)
        return false;
    char mac[AT_HMAC_SIG_LEN + 1];
    cookie_mac(a, (size_t)i, expires_s, mac);
    snprintf(out, DASH_COOKIE_VALUE_MAX + 1, "v1.%" PRId64 ".%s", expires_s, mac);
    return true;
}

/* True when the value [v, v+n) is a valid, unexpired session cookie. */
static bool cookie_value_ok(const dash_auth_t *a, const char *v, size_t n, int64_t now_s)
{
    if (n < 4 || n > DASH_COOKIE_VALUE_MAX || memcmp(v, "v1.", 3) != 0)
        return false;
    int64_t exp = 0;
    size_t i = 3;
    for (; i < n && v[i] >= '0' && v[i] <= '9' && i < 23; i++)
        exp = exp * 10 + (v[i] - '0');
    if (i == 3 || i >= n || v[i] != '.' || exp <= now_s)
        return false;
    const char *mac = v + i + 1;
    size_t maclen = n - i - 1;
    bool ok = false;
    for (size_t t = 0; t < a->count; t++) {
        char want[AT_HMAC_SIG_LEN + 1];
        cookie_mac(a, t, exp, want);
        ok |= at_ct_equal(want, AT_HMAC_SIG_LEN, mac, maclen);
    }
    return ok;
}

bool dash_auth_cookie_ok(const dash_auth_t *a, const char *hdr, size_t len, int64_t now_s)
{
    static const char name[] = DASH_AUTH_COOKIE "=";
    const size_t nlen = sizeof(name) - 1;
    /* "a=1; adtrack_dashboard=v1...; b=2": every cookie of that name is tried. */
    for (size_t i = 0; hdr != NULL && i < len;) {
        while (i < len && (hdr[i] == ' ' || hdr[i] == ';'))
            i++;
        size_t end = i;
        while (end < len && hdr[end] != ';')
            end++;
        if (end - i > nlen && memcmp(hdr + i, name, nlen) == 0 &&
            cookie_value_ok(a, hdr + i + nlen, end - i - nlen, now_s))
            return true;
        i = end;
    }
    return false;
}
