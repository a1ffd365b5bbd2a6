/* Unit tests for dashboard/dash_auth.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "dash_auth.h"

static char *tok_items[] = {"first-token-0123456789", "second-token-abcdefghij"};
static const at_conf_list_t toks = {tok_items, 2};

static void test_dash_auth_new__needs_a_printable_token(void **state)
{
    (void)state;
    at_err_t err = {0};
    const at_conf_list_t none = {NULL, 0};
    assert_null(dash_auth_new(&none, &err));
    assert_non_null(strstr(err.msg, "--auth-token: expected at least one token"));
    char *bad_items[] = {"has space"};
    const at_conf_list_t bad = {bad_items, 1};
    assert_null(dash_auth_new(&bad, &err));
    assert_non_null(strstr(err.msg, "printable ASCII"));
    assert_null(strstr(err.msg, "has space"));
}

static void test_dash_auth_bearer_ok__each_token(void **state)
{
    (void)state;
    at_err_t err = {0};
    dash_auth_t *a = dash_auth_new(&toks, &err);
    assert_non_null(a);
    const char *h1 = "Bearer first-token-0123456789", *h2 = "bearer  second-token-abcdefghij ";
    assert_true(dash_auth_bearer_ok(a, h1, strlen(h1)));
    assert_true(dash_auth_bearer_ok(a, h2, strlen(h2)));
    const char *bad[] = {"Bearer first-token-012345678", "Bearer ", "Basic Zmlyc3Q=", "first-token-0123456789",
                         "Bearer first-token-0123456789x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(dash_auth_bearer_ok(a, bad[i], strlen(bad[i])));
    assert_false(dash_auth_bearer_ok(a, NULL, 0));
    dash_auth_destroy(a);
}

static void test_dash_auth_cookie__round_trip_and_expiry(void **state)
{
    (void)state;
    at_err_t err = {0};
    dash_auth_t *a = dash_auth_new(&toks, &err);
    char v[DASH_COOKIE_VALUE_MAX + 1], hdr[256];
    assert_false(dash_auth_cookie(a, "nope-nope-nope", 14, 2000, v));
    assert_true(dash_auth_cookie(a, "second-token-abcdefghij", 23, 2000, v));
    /* The cookie does not carry the token. */
    assert_null(strstr(v, "second-token"));
    snprintf(hdr, sizeof(hdr), "a=1; " DASH_AUTH_COOKIE "=%s; b=2", v);
    assert_true(dash_auth_cookie_ok(a, hdr, strlen(hdr), 1999));
    assert_false(dash_auth_cookie_ok(a, hdr, strlen(hdr), 2000)); /* expired */
    /* A changed expiry, a changed MAC, another cookie name: refused. */
    char forged[256];
    snprintf(forged, sizeof(forged), DASH_AUTH_COOKIE "=v1.9999%s", v + 7);
    assert_false(dash_auth_cookie_ok(a, forged, strlen(forged), 1000));
    snprintf(hdr, sizeof(hdr), DASH_AUTH_COOKIE "=%s", v);
    hdr[strlen(hdr) - 1] ^= 1;
    assert_false(dash_auth_cookie_ok(a, hdr, strlen(hdr), 1000));
    snprintf(hdr, sizeof(hdr), "other=%s", v);
    assert_false(dash_auth_cookie_ok(a, hdr, strlen(hdr), 1000));
    assert_false(dash_auth_cookie_ok(a, NULL, 0, 1000));
    dash_auth_destroy(a);
    /* Removing the token from the configuration ends its sessions. */
    char *only_first[] = {"first-token-0123456789"};
    const at_conf_list_t first = {only_first, 1};
    a = dash_auth_new(&first, &err);
    snprintf(hdr, sizeof(hdr), DASH_AUTH_COOKIE "=%s", v);
    assert_false(dash_auth_cookie_ok(a, hdr, strlen(hdr), 1000));
    dash_auth_destroy(a);
    dash_auth_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dash_auth_new__needs_a_printable_token),
        cmocka_unit_test(test_dash_auth_bearer_ok__each_token),
        cmocka_unit_test(test_dash_auth_cookie__round_trip_and_expiry),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
