/* Unit tests for common/at_redis.c: parsing --redis (the network parts are in
 * tests/it/redis_auth.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include "at_redis.h"

static void test_at_redis_addr_parse__forms(void **state)
{
    (void)state;
    at_err_t err = {0};
    at_redis_addr_t a;
    char buf[400];
    assert_int_equal(at_redis_addr_parse("127.0.0.1:6380", NULL, &a, &err), 0);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 6380);
    assert_null(a.password);
    assert_string_equal(at_redis_addr_str(&a, buf, sizeof(buf)), "127.0.0.1:6380");
    at_redis_addr_free(&a);

    assert_int_equal(at_redis_addr_parse("redis://app:p%40ss@cache.example:6390/3", NULL, &a, &err), 0);
    assert_string_equal(a.user, "app");
    assert_string_equal(a.password, "p@ss");
    assert_string_equal(a.host, "cache.example");
    assert_int_equal(a.port, 6390);
    assert_int_equal(a.db, 3);
    /* For logs: the user, never the password. */
    assert_string_equal(at_redis_addr_str(&a, buf, sizeof(buf)), "redis://app@cache.example:6390/3");
    at_redis_addr_free(&a);
    assert_null(a.password);

    assert_int_equal(at_redis_addr_parse("redis://[::1]", "from-file", &a, &err), 0);
    assert_string_equal(a.host, "::1");
    assert_int_equal(a.port, 6379);
    assert_string_equal(a.password, "from-file");
    assert_string_equal(a.user, "");
    at_redis_addr_free(&a);

    assert_int_equal(at_redis_addr_parse("/run/redis.sock", NULL, &a, &err), 0);
    assert_string_equal(a.path, "/run/redis.sock");
    at_redis_addr_free(&a);
}

static void test_at_redis_addr_parse__refusals(void **state)
{
    (void)state;
    at_err_t err = {0};
    at_redis_addr_t a;
    assert_int_equal(at_redis_addr_parse("rediss://h:6379", NULL, &a, &err), -1);
    assert_non_null(strstr(err.msg, "TLS tunnel"));
    assert_int_equal(at_redis_addr_parse("redis://:urlpw@h:1", "filepw", &a, &err), -1);
    assert_non_null(strstr(err.msg, "expected only one"));
    assert_null(strstr(err.msg, "urlpw"));
    assert_null(strstr(err.msg, "filepw"));
    assert_int_equal(at_redis_addr_parse("redis://app@h:1", NULL, &a, &err), -1);
    assert_non_null(strstr(err.msg, "without a password"));
    assert_int_equal(at_redis_addr_parse("h:99999", NULL, &a, &err), -1);
    assert_int_equal(at_redis_addr_parse("hostonly", NULL, &a, &err), -1);
    assert_int_equal(at_redis_addr_parse("redis://h:1/x", NULL, &a, &err), -1);
    assert_int_equal(at_redis_addr_parse("http://h:1", NULL, &a, &err), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_redis_addr_parse__forms),
        cmocka_unit_test(test_at_redis_addr_parse__refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
