/*
 * col_postback.h: server-to-server conversions (GET|POST /v1/postback), authenticated per
 * advertiser. See docs/COLLECTOR.md "Postbacks" and docs/REPORTS.md "Attribution".
 *
 * Keys: --postback-keys (a secret list option: give it as --postback-keys-file, a file that is
 * not world-readable, one item per line), items "<advertiser id> <secret>"; blank lines and
 * lines starting with '#' are skipped.
 * A postback names its advertiser (adv=...) and proves it knows that advertiser's secret
 * in one of two ways:
 *  - "Authorization: Bearer <secret>", compared in constant time;
 *  - sig=<unpadded base64url HMAC-SHA256(secret, canonical)> among the parameters, where
 *    the canonical text is the parameter string exactly as sent with the sig pair (and the
 *    '&' before it, or after it when it comes first) taken out.
 * Without a key file, or for an advertiser it does not list, every postback is refused:
 * the endpoint is never open.
 *
 * Ownership: the key table is built once at start (col_server_new) and read-only after,
 * from every loop thread.
 */
#ifndef COL_POSTBACK_H
#define COL_POSTBACK_H

#include "at_event.h"

typedef struct col_postback_key_s {
    char *advertiser; /* owned */
    char *secret;     /* owned; wiped on free */
} col_postback_key_t;

typedef struct col_postback_keys_s {
    col_postback_key_t *items; /* owned */
    size_t count;
} col_postback_keys_t;

/* Parses the key file's text (not modified). Returns 0, or -1 with @p err naming the line
 * ("line 3: expected '<advertiser id> <secret>'"); the message never quotes a secret. */
int col_postback_keys_parse(const char *text, col_postback_keys_t *out, at_err_t *err);

/* The same for the lines at_conf read into a list (--postback-keys, blank lines dropped).
 * A line number in a message counts the non-blank lines. */
int col_postback_keys_from_list(char *const *items, size_t count, col_postback_keys_t *out, at_err_t *err);

void col_postback_keys_free(col_postback_keys_t *k);

/* The parameter string @p q (length @p len) without its first "sig" pair, into @p out
 * (capacity >= len); the length written. The value of that sig pair (raw, not decoded) in
 * *@p sig ({NULL,0} when there is none). */
size_t col_postback_canonical(const char *q, size_t len, char *out, at_str_t *sig);

typedef enum col_postback_auth_e {
    COL_PB_OK = 0,
    COL_PB_NO_ADVERTISER,  /* adv missing or not in the key file */
    COL_PB_NO_CREDENTIALS, /* neither a bearer token nor sig */
    COL_PB_BAD_CREDENTIALS /* the token or signature does not match the advertiser's secret */
} col_postback_auth_t;

/*
 * Checks a postback for advertiser @p adv: @p authz the Authorization header's value
 * ({NULL,0} when absent), @p canon the canonical text and @p sig the sig value (from
 * col_postback_canonical). A bearer token, when given, decides alone.
 */
col_postback_auth_t col_postback_check(const col_postback_keys_t *keys, at_str_t adv, at_str_t authz,
                                       const char *canon, size_t canon_len, at_str_t sig);

/* The message for a refusal (401 body): names what was expected, never a secret. */
const char *col_postback_auth_str(col_postback_auth_t a);

#endif
