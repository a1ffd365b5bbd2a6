/*
 * at_hmac.c: HMAC-SHA256 click signatures (see at_hmac.h).
 */
#include "at_hmac.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#define MAC_LEN 32

/* Returns false only when libcrypto fails (allocation); callers then fail closed. */
static bool compute(const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[MAC_LEN])
{
    /* Pointers to a real byte: OpenSSL has historically given NULL keys and messages special
     * meanings, and an empty key or message is legitimate input here. */
    static const uint8_t empty = 0;
    unsigned int outlen = 0;
    if (keylen > INT32_MAX)
        return false;
    if (HMAC(EVP_sha256(), key ? key : &empty, (int)keylen, msg ? msg : &empty, msglen, out, &outlen) == NULL ||
        outlen != MAC_LEN)
        return false;
    return true;
}

void at_hmac_sha256(const void *key, size_t keylen, const void *msg, size_t msglen, uint8_t out[32])
{
    /* The signature has no error return; on a libcrypto failure the output is all zeros,
     * which at_hmac_verify() never accepts because it recomputes and fails closed. */
    if (!compute(key, keylen, msg, msglen, out))
        memset(out, 0, MAC_LEN);
}

/* Unpadded base64url (RFC 4648 section 5) of @p len bytes into @p out; returns chars written
 * (NUL added). @p out must hold 4 * ceil(len / 3) + 1 bytes. */
static size_t b64url(const uint8_t *in, size_t len, char *out)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t o = 0, i = 0;
    for (; i + 3 <= len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
        out[o++] = alphabet[v & 63];
    }
    if (len - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
    } else if (len - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[(v >> 18) & 63];
        out[o++] = alphabet[(v >> 12) & 63];
        out[o++] = alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
    return o;
}

void at_hmac_sign(const void *key, size_t keylen, const void *msg, size_t msglen, char out[AT_HMAC_SIG_LEN + 1])
{
    uint8_t mac[MAC_LEN];
    at_hmac_sha256(key, keylen, msg, msglen, mac);
    b64url(mac, sizeof(mac), out);
}

bool at_hmac_verify(const void *key, size_t keylen, const void *msg, size_t msglen, const char *sig, size_t siglen)
{
    uint8_t mac[MAC_LEN];
    char expect[AT_HMAC_SIG_LEN + 1];
    /* An empty key would make every signature forgeable by anyone who knows the scheme. */
    if (key == NULL || keylen == 0 || sig == NULL)
        return false;
    if (!compute(key, keylen, msg, msglen, mac))
        return false;
    b64url(mac, sizeof(mac), expect);
    /* Comparing encoded text is comparing MACs: each 32-byte MAC has exactly one canonical
     * 43-character encoding, and any non-canonical spelling is (rightly) rejected. */
    return at_ct_equal(expect, AT_HMAC_SIG_LEN, sig, siglen);
}

bool at_ct_equal(const void *a, size_t alen, const void *b, size_t blen)
{
    /* Lengths are public (a signature's length is fixed), so an early exit leaks nothing. */
    if (alen != blen)
        return false;
    if (alen == 0)
        return true;
    return CRYPTO_memcmp(a, b, alen) == 0;
}
