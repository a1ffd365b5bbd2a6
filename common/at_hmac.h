/*
 * at_hmac.h: HMAC-SHA256 signatures for click destinations (OpenSSL libcrypto).
 *
 * A signature is the unpadded base64url encoding of HMAC-SHA256(key, message): 43 chars.
 */
#ifndef AT_HMAC_H
#define AT_HMAC_H

#include "at_common.h"

#define AT_HMAC_SIG_LEN 43 /* base64url of 32 bytes, no padding, without NUL */

/* Raw HMAC-SHA256 into @p out. */
void at_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[32]);

/* Writes the base64url signature plus NUL into @p out (44 bytes). */
void at_hmac_sign(const void *key, size_t keylen, const void *msg, size_t msglen, char out[AT_HMAC_SIG_LEN + 1]);

/* True when @p sig (length @p siglen, not necessarily NUL-terminated) is the signature of
 * @p msg. Compares in constant time; false for an empty key. */
bool at_hmac_verify(const void *key, size_t keylen, const void *msg, size_t msglen, const char *sig, size_t siglen);

/* Constant-time equality of two byte strings (false when lengths differ). */
bool at_ct_equal(const void *a, size_t alen, const void *b, size_t blen);

#endif
