/*
 * cd_auth.h: bearer-token authentication of the admin API.
 *
 * Tokens come from the config (--admin-token: read and write; --read-token: read only).
 * Only SHA-256 digests of the tokens are kept in memory; a presented token is hashed and
 * compared with every configured digest in constant time (at_ct_equal), without an early
 * exit, so neither the match position nor the token leaks through timing. Tokens are never
 * logged.
 *
 * @locality: cd_auth_new at start-up; cd_auth_check from any thread (read-only data).
 */
#ifndef CD_AUTH_H
#define CD_AUTH_H

#include "at_conf.h"

typedef enum cd_access_e {
    CD_ACCESS_NONE = 0, /* no Authorization header, or not a Bearer token */
    CD_ACCESS_INVALID,  /* a Bearer token that matches nothing */
    CD_ACCESS_READ,
    CD_ACCESS_WRITE,
} cd_access_t;

typedef struct cd_auth_s cd_auth_t;

#define CD_TOKEN_MAX 512

/* Returns the token set; NULL with @p err when a token is empty or longer than 512 bytes,
 * or when no write token is given. The lists are not kept. Free with cd_auth_destroy(). */
cd_auth_t *cd_auth_new(const at_conf_list_t *write_tokens, const at_conf_list_t *read_tokens, at_err_t *err);
void cd_auth_destroy(cd_auth_t *a);

/* Access granted by an Authorization header value (@p hdr, length @p len; NULL when absent). */
cd_access_t cd_auth_check(const cd_auth_t *a, const char *hdr, size_t len);

#endif
