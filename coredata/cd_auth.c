/*
 * cd_auth.c: see cd_auth.h.
 */
#include "cd_auth.h"

#include <stdlib.h>
#include <strings.h>

#include "at_hmac.h"

/* A fixed key: the digests only need to be one-way and equal-length, not secret. */
static const char digest_key[] = "adtrack-coredata-token";

typedef struct digest_s {
    uint8_t d[32];
    bool write;
} digest_t;

struct cd_auth_s {
    digest_t *digests;
    size_t count;
};

static void digest(const char *tok, size_t len, uint8_t out[32])
{
    at_hmac_sha256(digest_key, sizeof(digest_key) - 1, tok, len, out);
}

static int add_list(cd_auth_t *a, const at_conf_list_t *l, bool write, at_err_t *err)
{
    for (size_t i = 0; l != NULL && i < l->count; i++) {
        size_t len = strlen(l->items[i]);
        if (len == 0 || len > CD_TOKEN_MAX)
            return at_err_set(err, AT_ERR_INVALID, "%s: token %zu: expected 1 to %d bytes",
                              write ? "--admin-token" : "--read-token", i + 1, CD_TOKEN_MAX);
        for (size_t j = 0; j < len; j++) {
            unsigned char c = (unsigned char)l->items[i][j];
            if (c <= 0x20 || c >= 0x7f)
                return at_err_set(err, AT_ERR_INVALID, "%s: token %zu: expected printable ASCII without spaces",
                                  write ? "--admin-token" : "--read-token", i + 1);
        }
        digest(l->items[i], len, a->digests[a->count].d);
        a->digests[a->count].write = write;
        a->count++;
    }
    return 0;
}

cd_auth_t *cd_auth_new(const at_conf_list_t *write_tokens, const at_conf_list_t *read_tokens, at_err_t *err)
{
    size_t n = (write_tokens ? write_tokens->count : 0) + (read_tokens ? read_tokens->count : 0);
    if (write_tokens == NULL || write_tokens->count == 0) {
        at_err_set(err, AT_ERR_INVALID,
                   "--admin-token: expected at least one write token (the API has no anonymous "
                   "access)");
        return NULL;
    }
    cd_auth_t *a = calloc(1, sizeof(*a));
    if (a == NULL || (a->digests = calloc(n, sizeof(digest_t))) == NULL) {
        free(a);
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    if (add_list(a, write_tokens, true, err) != 0 || add_list(a, read_tokens, false, err) != 0) {
        cd_auth_destroy(a);
        return NULL;
    }
    return a;
}

void cd_auth_destroy(cd_auth_t *a)
{
    if (a == NULL)
        return;
    /* Digests are not the tokens, but there is no reason to leave them behind either. */
    if (a->digests != NULL)
        memset(a->digests, 0, a->count * sizeof(digest_t));
    free(a->digests);
    free(a);
}

cd_access_t cd_auth_check(const cd_auth_t *a, const char *hdr, size_t len)
{
    if (hdr == NULL || len < 7 || strncasecmp(hdr, "Bearer ", 7) != 0)
        return CD_ACCESS_NONE;
    const char *tok = hdr + 7;
    size_t tlen = len - 7;
    while (tlen > 0 && *tok == ' ') {
        tok++;
        tlen--;
    }
    while (tlen > 0 && (tok[tlen - 1] == ' ' || tok[tlen - 1] == '\t'))
        tlen--;
    if (tlen == 0 || tlen > CD_TOKEN_MAX)
        return CD_ACCESS_INVALID;
    uint8_t d[32];
    digest(tok, tlen, d);
    bool read = false, write = false;
    for (size_t i = 0; i < a->count; i++) {
        bool eq = at_ct_equal(d, 32, a->digests[i].d, 32);
        write |= eq & a->digests[i].write;
        read |= eq & !a->digests[i].write;
    }
    return write ? CD_ACCESS_WRITE : read ? CD_ACCESS_READ : CD_ACCESS_INVALID;
}
