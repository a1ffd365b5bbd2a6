/*
 * test_cd_auth.c: bearer-token checks: write vs read-only tokens, wrong / missing / malformed
 * headers, and configuration errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cd_auth.h"

static cd_access_t check(const cd_auth_t *a, const char *h)
{
    return cd_auth_check(a, h, h ? strlen(h) : 0);
}

static void test_cd_auth_check__tokens(void **state)
{
    (void)state;
    char *w[] = {"write-1", "write-2"}, *r[] = {"read-1"};
    at_conf_list_t wl = {w, 2}, rl = {r, 1};
    at_err_t err = {0};
    cd_auth_t *a = cd_auth_new(&wl, &rl, &err);
    assert_non_null(a);
    assert_int_equal(check(a, "Bearer write-1"), CD_ACCESS_WRITE);
    assert_int_equal(check(a, "bearer write-2"), CD_ACCESS_WRITE);
    assert_int_equal(check(a, "Bearer  write-2 "), CD_ACCESS_WRITE);
    assert_int_equal(check(a, "Bearer read-1"), CD_ACCESS_READ);
    assert_int_equal(check(a, "Bearer write-"), CD_ACCESS_INVALID);
    assert_int_equal(check(a, "Bearer write-11"), CD_ACCESS_INVALID);
    assert_int_equal(check(a, "Bearer "), CD_ACCESS_INVALID);
    assert_int_equal(check(a, "Basic d3JpdGUtMTo="), CD_ACCESS_NONE);
    assert_int_equal(check(a, "write-1"), CD_ACCESS_NONE);
    assert_int_equal(check(a, NULL), CD_ACCESS_NONE);
    /* not NUL-terminated: only len bytes count */
    assert_int_equal(cd_auth_check(a, "Bearer read-1XYZ", 13), CD_ACCESS_READ);
    cd_auth_destroy(a);
}

static void test_cd_auth_new__config_errors(void **state)
{
    (void)state;
    at_err_t err = {0};
    at_conf_list_t none = {NULL, 0};
    assert_null(cd_auth_new(&none, &none, &err));
    assert_non_null(strstr(err.msg, "--admin-token"));
    char *bad[] = {"has space"};
    at_conf_list_t bl = {bad, 1};
    char *w[] = {"ok"};
    at_conf_list_t wl = {w, 1};
    assert_null(cd_auth_new(&wl, &bl, &err));
    assert_non_null(strstr(err.msg, "--read-token"));
    assert_null(strstr(err.msg, "has space")); /* never echo a token */
    cd_auth_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cd_auth_check__tokens),
        cmocka_unit_test(test_cd_auth_new__config_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
