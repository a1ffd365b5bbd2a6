/* Unit tests for collector/col_postback.c: the key file, the canonical text a signature
 * covers, and the per-advertiser check (bearer token or HMAC; never open). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "at_hmac.h"
#include "col_postback.h"

static const char KEYS[] = "# advertiser secret\n"
                           "adv-1 s3cret-one\n"
                           "\n"
                           "  adv-2\tsecret two with spaces  \r\n"
                           "adv-3 x";

static void test_col_postback_keys_parse__lines(void **state)
{
    (void)state;
    col_postback_keys_t k;
    at_err_t err = {0};
    assert_int_equal(col_postback_keys_parse(KEYS, &k, &err), 0);
    assert_int_equal(k.count, 3);
    assert_string_equal(k.items[0].advertiser, "adv-1");
    assert_string_equal(k.items[0].secret, "s3cret-one");
    assert_string_equal(k.items[1].advertiser, "adv-2");
    assert_string_equal(k.items[1].secret, "secret two with spaces");
    assert_string_equal(k.items[2].secret, "x");
    col_postback_keys_free(&k);

    assert_int_equal(col_postback_keys_parse("adv-1\n", &k, &err), -1);
    assert_non_null(strstr(err.msg, "line 1"));
    assert_int_equal(col_postback_keys_parse("ok a\nadv/1 s\n", &k, &err), -1);
    assert_non_null(strstr(err.msg, "line 2"));
    assert_null(strstr(err.msg, " s\n"));
    assert_int_equal(col_postback_keys_parse("a s1\na s2\n", &k, &err), -1);
    assert_non_null(strstr(err.msg, "twice"));
    assert_null(strstr(err.msg, "s2")); /* never quotes a secret */
    assert_int_equal(col_postback_keys_parse("", &k, &err), 0);
    assert_int_equal(k.count, 0);
    col_postback_keys_free(&k);
}

static void canon_case(const char *q, const char *want, const char *want_sig)
{
    char out[256];
    at_str_t sig;
    size_t n = col_postback_canonical(q, strlen(q), out, &sig);
    assert_int_equal(n, strlen(want));
    assert_memory_equal(out, want, n);
    if (want_sig == NULL) {
        assert_null(sig.p);
    } else {
        assert_int_equal(sig.len, strlen(want_sig));
        assert_memory_equal(sig.p, want_sig, sig.len);
    }
}

static void test_col_postback_canonical__sig_taken_out(void **state)
{
    (void)state;
    canon_case("adv=a&clid=x&sig=SIG", "adv=a&clid=x", "SIG");
    canon_case("sig=SIG&adv=a&clid=x", "adv=a&clid=x", "SIG");
    canon_case("adv=a&sig=SIG&clid=x", "adv=a&clid=x", "SIG");
    canon_case("adv=a&clid=x", "adv=a&clid=x", NULL);
    canon_case("adv=a&sig=1&sig=2", "adv=a&sig=2", "1"); /* only the first is the signature */
    canon_case("xsig=1&adv=a", "xsig=1&adv=a", NULL);
    canon_case("", "", NULL);
    /* empty pairs are kept: only the sig pair and one '&' go (found by fuzz_postback) */
    canon_case("a&", "a&", NULL);
    canon_case("a&&sig=S&", "a&&", "S");
    canon_case("sig=S&", "", "S");
    canon_case("&sig=S", "", "S");
}

static void test_col_postback_check__token_and_hmac(void **state)
{
    (void)state;
    col_postback_keys_t k;
    at_err_t err = {0};
    assert_int_equal(col_postback_keys_parse(KEYS, &k, &err), 0);
    const char *canon = "adv=adv-1&clid=c&order=o";
    char sig[AT_HMAC_SIG_LEN + 1];
    at_hmac_sign("s3cret-one", 10, canon, strlen(canon), sig);
    at_str_t none = {NULL, 0};
    at_str_t adv1 = AT_STR_LIT("adv-1");

    assert_int_equal(col_postback_check(&k, adv1, none, canon, strlen(canon), (at_str_t){sig, strlen(sig)}),
                     COL_PB_OK);
    /* another advertiser's signature, a changed parameter, a wrong key */
    assert_int_equal(col_postback_check(&k, AT_STR_LIT("adv-3"), none, canon, strlen(canon),
                                        (at_str_t){sig, strlen(sig)}),
                     COL_PB_BAD_CREDENTIALS);
    const char *changed = "adv=adv-1&clid=c&order=p";
    assert_int_equal(col_postback_check(&k, adv1, none, changed, strlen(changed), (at_str_t){sig, strlen(sig)}),
                     COL_PB_BAD_CREDENTIALS);
    assert_int_equal(col_postback_check(&k, adv1, none, canon, strlen(canon), AT_STR_LIT("AAAA")),
                     COL_PB_BAD_CREDENTIALS);
    /* bearer */
    assert_int_equal(col_postback_check(&k, adv1, AT_STR_LIT("Bearer s3cret-one"), "", 0, none), COL_PB_OK);
    assert_int_equal(col_postback_check(&k, adv1, AT_STR_LIT("bearer s3cret-one"), "", 0, none), COL_PB_OK);
    assert_int_equal(col_postback_check(&k, adv1, AT_STR_LIT("Bearer s3cret-on"), "", 0, none),
                     COL_PB_BAD_CREDENTIALS);
    assert_int_equal(col_postback_check(&k, adv1, AT_STR_LIT("Basic czNjcmV0LW9uZQ=="), "", 0, none),
                     COL_PB_BAD_CREDENTIALS);
    /* a bearer token decides alone, even next to a valid sig */
    assert_int_equal(col_postback_check(&k, adv1, AT_STR_LIT("Bearer nope"), canon, strlen(canon),
                                        (at_str_t){sig, strlen(sig)}),
                     COL_PB_BAD_CREDENTIALS);
    /* never open */
    assert_int_equal(col_postback_check(&k, adv1, none, canon, strlen(canon), none), COL_PB_NO_CREDENTIALS);
    assert_int_equal(col_postback_check(&k, none, AT_STR_LIT("Bearer s3cret-one"), "", 0, none), COL_PB_NO_ADVERTISER);
    assert_int_equal(col_postback_check(&k, AT_STR_LIT("adv-9"), AT_STR_LIT("Bearer s3cret-one"), "", 0, none),
                     COL_PB_NO_ADVERTISER);
    col_postback_keys_t empty = {0};
    assert_int_equal(col_postback_check(&empty, adv1, AT_STR_LIT("Bearer s3cret-one"), "", 0, none),
                     COL_PB_NO_ADVERTISER);
    assert_int_equal(col_postback_check(NULL, adv1, AT_STR_LIT("Bearer s3cret-one"), "", 0, none),
                     COL_PB_NO_ADVERTISER);
    col_postback_keys_free(&k);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_col_postback_keys_parse__lines),
        cmocka_unit_test(test_col_postback_canonical__sig_taken_out),
        cmocka_unit_test(test_col_postback_check__token_and_hmac),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
