/*
 * col_postback.c: the postback key table and its checks (see col_postback.h).
 */
#include "col_postback.h"

#include <stdlib.h>

#include "at_hmac.h"
#include "at_secret.h"

static bool is_id_char(char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' ||
           ch == '_' || ch == ':' || ch == '-';
}

void col_postback_keys_free(col_postback_keys_t *k)
{
    if (k == NULL)
        return;
    for (size_t i = 0; i < k->count; i++) {
        free(k->items[i].advertiser);
        at_secret_wipe(k->items[i].secret);
        free(k->items[i].secret);
    }
    free(k->items);
    k->items = NULL;
    k->count = 0;
}

int col_postback_keys_parse(const char *text, col_postback_keys_t *out, at_err_t *err)
{
    memset(out, 0, sizeof(*out));
    size_t lineno = 0;
    for (const char *p = text; *p != '\0';) {
        const char *eol = strchr(p, '\n');
        size_t n = eol != NULL ? (size_t)(eol - p) : strlen(p);
        const char *next = eol != NULL ? eol + 1 : p + n;
        lineno++;
        while (n > 0 && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t'))
            n--;
        size_t i = 0;
        while (i < n && (p[i] == ' ' || p[i] == '\t'))
            i++;
        if (i == n || p[i] == '#') {
            p = next;
            continue;
        }
        size_t a0 = i;
        while (i < n && is_id_char(p[i]))
            i++;
        size_t alen = i - a0;
        size_t gap = i;
        while (i < n && (p[i] == ' ' || p[i] == '\t'))
            i++;
        if (alen == 0 || alen > AT_EVENT_ID_MAX || i == gap || i == n) {
            col_postback_keys_free(out);
            return at_err_set(err, AT_ERR_INVALID,
                              "--postback-keys-file: line %zu: expected '<advertiser id: 1-64 of [A-Za-z0-9._:-]> "
                              "<secret>'",
                              lineno);
        }
        for (size_t k = 0; k < out->count; k++) {
            if (strlen(out->items[k].advertiser) == alen && memcmp(out->items[k].advertiser, p + a0, alen) == 0) {
                col_postback_keys_free(out);
                return at_err_set(err, AT_ERR_INVALID, "--postback-keys-file: line %zu: advertiser listed twice",
                                  lineno);
            }
        }
        col_postback_key_t *items = realloc(out->items, (out->count + 1) * sizeof(*items));
        if (items == NULL) {
            col_postback_keys_free(out);
            return at_err_set(err, AT_ERR_NOMEM, "--postback-keys-file: out of memory");
        }
        out->items = items;
        col_postback_key_t *k = &out->items[out->count];
        k->advertiser = strndup(p + a0, alen);
        k->secret = strndup(p + i, n - i);
        if (k->advertiser == NULL || k->secret == NULL) {
            free(k->advertiser);
            free(k->secret);
            col_postback_keys_free(out);
            return at_err_set(err, AT_ERR_NOMEM, "--postback-keys-file: out of memory");
        }
        out->count++;
        p = next;
    }
    return 0;
}

int col_postback_keys_from_list(char *const *items, size_t count, col_postback_keys_t *out, at_err_t *err)
{
    size_t total = 1;
    for (size_t i = 0; i < count; i++)
        total += strlen(items[i]) + 1;
    char *text = malloc(total);
    if (text == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "--postback-keys: out of memory");
    size_t o = 0;
    for (size_t i = 0; i < count; i++) {
        size_t n = strlen(items[i]);
        memcpy(text + o, items[i], n);
        o += n;
        text[o++] = '\n';
    }
    text[o] = '\0';
    int rc = col_postback_keys_parse(text, out, err);
    at_secret_wipe(text);
    free(text);
    return rc;
}

size_t col_postback_canonical(const char *q, size_t len, char *out, at_str_t *sig)
{
    *sig = (at_str_t){NULL, 0};
    size_t o = 0;
    bool first_out = true;
    /* Every pair, the empty ones too (a trailing '&' ends with one), so that the result is
     * the input with exactly the sig pair and one '&' taken out. */
    for (size_t i = 0;;) {
        const char *pair = q + i;
        const char *amp = len > i ? memchr(pair, '&', len - i) : NULL;
        size_t plen = amp != NULL ? (size_t)(amp - pair) : len - i;
        if (sig->p == NULL && plen >= 4 && memcmp(pair, "sig=", 4) == 0) {
            *sig = (at_str_t){pair + 4, plen - 4};
        } else {
            if (!first_out)
                out[o++] = '&';
            memcpy(out + o, pair, plen);
            o += plen;
            first_out = false;
        }
        if (amp == NULL)
            break;
        i += plen + 1;
    }
    return o;
}

const char *col_postback_auth_str(col_postback_auth_t a)
{
    switch (a) {
    case COL_PB_OK:
        return "";
    case COL_PB_NO_ADVERTISER:
        return "adv: missing or not an advertiser with a postback key; expected the advertiser id the key was "
               "issued to";
    case COL_PB_NO_CREDENTIALS:
        return "authorization: missing; expected 'Authorization: Bearer <token>' or sig=<base64url HMAC-SHA256 of "
               "the parameters without sig>";
    case COL_PB_BAD_CREDENTIALS:
        return "authorization: the token or sig does not match the advertiser's postback key";
    }
    return "authorization: refused";
}

col_postback_auth_t col_postback_check(const col_postback_keys_t *keys, at_str_t adv, at_str_t authz,
                                       const char *canon, size_t canon_len, at_str_t sig)
{
    const char *secret = NULL;
    for (size_t i = 0; keys != NULL && i < keys->count && adv.len > 0; i++) {
        if (strlen(keys->items[i].advertiser) == adv.len && memcmp(keys->items[i].advertiser, adv.p, adv.len) == 0)
            secret = keys->items[i].secret;
    }
    if (secret == NULL)
        return COL_PB_NO_ADVERTISER;
    if (authz.len > 0) {
        if (authz.len < 7 || strncasecmp(authz.p, "Bearer ", 7) != 0)
            return COL_PB_BAD_CREDENTIALS;
        return at_ct_equal(authz.p + 7, authz.len - 7, secret, strlen(secret)) ? COL_PB_OK : COL_PB_BAD_CREDENTIALS;
    }
    if (sig.len == 0)
        return COL_PB_NO_CREDENTIALS;
    return at_hmac_verify(secret, strlen(secret), canon, canon_len, sig.p, sig.len) ? COL_PB_OK
                                                                                    : COL_PB_BAD_CREDENTIALS;
}
