/* Unit tests for common/at_err.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "at_err.h"

static void test_at_err_set__fills_code_and_message(void **state)
{
    (void)state;
    at_err_t err = {0};
    int rc = at_err_set(&err, AT_ERR_INVALID, "c: campaign id longer than %d bytes", 64);
    assert_int_equal(rc, -1);
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_string_equal(err.msg, "c: campaign id longer than 64 bytes");
}

static void test_at_err_set__null_err_still_returns_minus_one(void **state)
{
    (void)state;
    assert_int_equal(at_err_set(NULL, AT_ERR_IO, "x"), -1);
}

static void test_at_err_set__truncates_long_message(void **state)
{
    (void)state;
    at_err_t err;
    char big[AT_ERR_MSG_MAX * 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    at_err_set(&err, AT_ERR_TOO_LARGE, "%s", big);
    assert_int_equal(strlen(err.msg), AT_ERR_MSG_MAX - 1);
    assert_int_equal(err.code, AT_ERR_TOO_LARGE);
}

static void test_at_err_clear__resets(void **state)
{
    (void)state;
    at_err_t err;
    at_err_set(&err, AT_ERR_TIMEOUT, "slow");
    at_err_clear(&err);
    assert_int_equal(err.code, AT_OK);
    assert_string_equal(err.msg, "");
    at_err_clear(NULL); /* must not crash */
}

static void test_at_errcode_str__names(void **state)
{
    (void)state;
    assert_string_equal(at_errcode_str(AT_OK), "ok");
    assert_string_equal(at_errcode_str(AT_ERR_INVALID), "invalid");
    assert_string_equal(at_errcode_str(AT_ERR_UNAVAILABLE), "unavailable");
    assert_string_equal(at_errcode_str(AT_ERR_BACKPRESSURE), "backpressure");
    assert_string_equal(at_errcode_str(AT_ERR_INTERNAL), "internal");
    assert_string_equal(at_errcode_str((at_errcode_t)999), "unknown");
}

static void test_at_errcode_str__all_distinct(void **state)
{
    (void)state;
    for (int a = AT_OK; a <= AT_ERR_INTERNAL; a++) {
        assert_non_null(at_errcode_str((at_errcode_t)a));
        for (int b = a + 1; b <= AT_ERR_INTERNAL; b++)
            assert_string_not_equal(at_errcode_str((at_errcode_t)a), at_errcode_str((at_errcode_t)b));
    }
}

static void test_at_err_retriable__classification(void **state)
{
    (void)state;
    assert_true(at_err_retriable(AT_ERR_UNAVAILABLE));
    assert_true(at_err_retriable(AT_ERR_TIMEOUT));
    assert_true(at_err_retriable(AT_ERR_BACKPRESSURE));
    assert_true(at_err_retriable(AT_ERR_IO));
    assert_false(at_err_retriable(AT_OK));
    assert_false(at_err_retriable(AT_ERR_INVALID));
    assert_false(at_err_retriable(AT_ERR_RANGE));
    assert_false(at_err_retriable(AT_ERR_TOO_LARGE));
    assert_false(at_err_retriable(AT_ERR_NOT_FOUND));
    assert_false(at_err_retriable(AT_ERR_NOMEM));
    assert_false(at_err_retriable(AT_ERR_INTERNAL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_err_set__fills_code_and_message),
        cmocka_unit_test(test_at_err_set__null_err_still_returns_minus_one),
        cmocka_unit_test(test_at_err_set__truncates_long_message),
        cmocka_unit_test(test_at_err_clear__resets),
        cmocka_unit_test(test_at_errcode_str__names),
        cmocka_unit_test(test_at_errcode_str__all_distinct),
        cmocka_unit_test(test_at_err_retriable__classification),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
