/* Unit tests for common/at_hmac.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "at_hmac.h"

/* Decodes lower-case hex test vectors; @p out must be large enough. */
static size_t unhex(const char *hex, uint8_t *out)
{
    size_t n = strlen(hex) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(hex + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void check_vector(const uint8_t *key, size_t keylen, const void *msg, size_t msglen, const char *expect_hex)
{
    uint8_t expect[32], mac[32];
    assert_int_equal(unhex(expect_hex, expect), 32);
    at_hmac_sha256(key, keylen, msg, msglen, mac);
    assert_memory_equal(mac, expect, 32);
}

/* RFC 4231 section 4.2. */
static void test_at_hmac_sha256__rfc4231_case1(void **state)
{
    (void)state;
    uint8_t key[20];
    memset(key, 0x0b, sizeof(key));
    check_vector(key, sizeof(key), "Hi There", 8, "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
}

/* RFC 4231 section 4.3: a key shorter than the block size. */
static void test_at_hmac_sha256__rfc4231_case2(void **state)
{
    (void)state;
    check_vector((const uint8_t *)"Jefe", 4, "what do ya want for nothing?", 28,
                 "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

/* RFC 4231 section 4.4: 0xaa key, 50 bytes of 0xdd. */
static void test_at_hmac_sha256__rfc4231_case3(void **state)
{
    (void)state;
    uint8_t key[20], msg[50];
    memset(key, 0xaa, sizeof(key));
    memset(msg, 0xdd, sizeof(msg));
    check_vector(key, sizeof(key), msg, sizeof(msg),
                 "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
}

/* RFC 4231 section 4.7: a 131-byte key, longer than the block size, is hashed first. */
static void test_at_hmac_sha256__rfc4231_case6(void **state)
{
    (void)state;
    uint8_t key[131];
    memset(key, 0xaa, sizeof(key));
    const char *msg = "Test Using Larger Than Block-Size Key - Hash Key First";
    check_vector(key, sizeof(key), msg, strlen(msg),
                 "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

static void test_at_hmac_sign__base64url_encoding(void **state)
{
    (void)state;
    char sig[AT_HMAC_SIG_LEN + 1];
    /* RFC 4231 case 2's MAC 5bdcc146... encoded by hand as unpadded base64url. */
    at_hmac_sign("Jefe", 4, "what do ya want for nothing?", 28, sig);
    assert_int_equal(strlen(sig), AT_HMAC_SIG_LEN);
    assert_string_equal(sig, "W9zBRr9gdU5qBCQmCJV1x1oAPwidJzmDnexYuWTsOEM");
    /* Only the URL-safe alphabet, never '+', '/' or '='. */
    uint8_t key[20];
    memset(key, 0x0b, sizeof(key));
    for (int i = 0; i < 200; i++) {
        char msg[16];
        snprintf(msg, sizeof(msg), "m%d", i);
        at_hmac_sign(key, sizeof(key), msg, strlen(msg), sig);
        assert_int_equal(strspn(sig, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                         AT_HMAC_SIG_LEN);
    }
}

static void test_at_hmac_verify__round_trip(void **state)
{
    (void)state;
    const char *key = "k3y-for-clicks";
    const char *msg = "c=camp1&u=https%3A%2F%2Fexample.com%2F";
    char sig[AT_HMAC_SIG_LEN + 1];
    at_hmac_sign(key, strlen(key), msg, strlen(msg), sig);
    assert_true(at_hmac_verify(key, strlen(key), msg, strlen(msg), sig, strlen(sig)));
    /* The signature need not be NUL-terminated: only siglen bytes are read. */
    char padded[64];
    memcpy(padded, sig, AT_HMAC_SIG_LEN);
    memcpy(padded + AT_HMAC_SIG_LEN, "&x=1", 5);
    assert_true(at_hmac_verify(key, strlen(key), msg, strlen(msg), padded, AT_HMAC_SIG_LEN));
    /* An empty message is still signable. */
    at_hmac_sign(key, strlen(key), "", 0, sig);
    assert_true(at_hmac_verify(key, strlen(key), "", 0, sig, AT_HMAC_SIG_LEN));
}

static void test_at_hmac_verify__rejects_tampering(void **state)
{
    (void)state;
    const char *key = "k3y-for-clicks";
    const char *msg = "c=camp1&u=https%3A%2F%2Fexample.com%2F";
    char sig[AT_HMAC_SIG_LEN + 1];
    at_hmac_sign(key, strlen(key), msg, strlen(msg), sig);

    /* Message changed by one character. */
    assert_false(
        at_hmac_verify(key, strlen(key), "c=camp2&u=https%3A%2F%2Fexample.com%2F", strlen(msg), sig, AT_HMAC_SIG_LEN));
    /* Every single-character change of the signature is rejected. */
    for (size_t i = 0; i < AT_HMAC_SIG_LEN; i++) {
        char bad[AT_HMAC_SIG_LEN + 1];
        memcpy(bad, sig, sizeof(bad));
        bad[i] = bad[i] == 'A' ? 'B' : 'A';
        assert_false(at_hmac_verify(key, strlen(key), msg, strlen(msg), bad, AT_HMAC_SIG_LEN));
    }
    /* Truncated, extended, empty signatures. */
    assert_false(at_hmac_verify(key, strlen(key), msg, strlen(msg), sig, AT_HMAC_SIG_LEN - 1));
    char longer[AT_HMAC_SIG_LEN + 2];
    memcpy(longer, sig, AT_HMAC_SIG_LEN);
    longer[AT_HMAC_SIG_LEN] = 'A';
    longer[AT_HMAC_SIG_LEN + 1] = '\0';
    assert_false(at_hmac_verify(key, strlen(key), msg, strlen(msg), longer, AT_HMAC_SIG_LEN + 1));
    assert_false(at_hmac_verify(key, strlen(key), msg, strlen(msg), "", 0));
    assert_false(at_hmac_verify(key, strlen(key), msg, strlen(msg), NULL, 0));
    /* Wrong key. */
    assert_false(at_hmac_verify("k3y-for-click", 13, msg, strlen(msg), sig, AT_HMAC_SIG_LEN));
}

static void test_at_hmac_verify__empty_key_rejected(void **state)
{
    (void)state;
    const char *msg = "c=camp1";
    char sig[AT_HMAC_SIG_LEN + 1];
    /* Even a signature correctly made with the empty key does not verify. */
    at_hmac_sign("", 0, msg, strlen(msg), sig);
    assert_int_equal(strlen(sig), AT_HMAC_SIG_LEN);
    assert_false(at_hmac_verify("", 0, msg, strlen(msg), sig, AT_HMAC_SIG_LEN));
    assert_false(at_hmac_verify(NULL, 0, msg, strlen(msg), sig, AT_HMAC_SIG_LEN));
}

static void test_at_ct_equal__cases(void **state)
{
    (void)state;
    assert_true(at_ct_equal("abc", 3, "abc", 3));
    assert_false(at_ct_equal("abc", 3, "abd", 3));
    assert_false(at_ct_equal("abc", 3, "abcd", 4)); /* length mismatch, common prefix */
    assert_false(at_ct_equal("abcd", 4, "abc", 3));
    assert_false(at_ct_equal("", 0, "a", 1));
    assert_true(at_ct_equal("", 0, "", 0));
    assert_true(at_ct_equal("x\0y", 3, "x\0y", 3)); /* binary-safe, not string compare */
    assert_false(at_ct_equal("x\0y", 3, "x\0z", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_hmac_sha256__rfc4231_case1),
        cmocka_unit_test(test_at_hmac_sha256__rfc4231_case2),
        cmocka_unit_test(test_at_hmac_sha256__rfc4231_case3),
        cmocka_unit_test(test_at_hmac_sha256__rfc4231_case6),
        cmocka_unit_test(test_at_hmac_sign__base64url_encoding),
        cmocka_unit_test(test_at_hmac_verify__round_trip),
        cmocka_unit_test(test_at_hmac_verify__rejects_tampering),
        cmocka_unit_test(test_at_hmac_verify__empty_key_rejected),
        cmocka_unit_test(test_at_ct_equal__cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
