/*
 * test_col_ip.c: CIDR parsing and matching, X-Forwarded-For trust, IP truncation.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "col_ip.h"

static struct sockaddr_in v4(const char *s)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, s, &sa.sin_addr), 1);
    return sa;
}

static void test_col_cidr_parse__accepts_v4_v6_and_bare(void **state)
{
    (void)state;
    col_cidr_t c;
    at_err_t err;
    uint8_t a[16];
    assert_int_equal(col_cidr_parse("10.0.0.0/8", &c, &err), 0);
    assert_int_equal(col_ip_parse("10.200.3.4", 10, a), 0);
    assert_true(col_cidr_match(&c, a));
    assert_int_equal(col_ip_parse("11.0.0.1", 8, a), 0);
    assert_false(col_cidr_match(&c, a));

    assert_int_equal(col_cidr_parse("2001:db8::/32", &c, &err), 0);
    assert_int_equal(col_ip_parse("2001:db8:ffff::1", 16, a), 0);
    assert_true(col_cidr_match(&c, a));
    assert_int_equal(col_ip_parse("2001:db9::1", 11, a), 0);
    assert_false(col_cidr_match(&c, a));

    assert_int_equal(col_cidr_parse("192.168.1.7", &c, &err), 0);
    assert_int_equal(col_ip_parse("192.168.1.7", 11, a), 0);
    assert_true(col_cidr_match(&c, a));
    assert_int_equal(col_ip_parse("192.168.1.8", 11, a), 0);
    assert_false(col_cidr_match(&c, a));

    /* A /20 boundary inside a byte. */
    assert_int_equal(col_cidr_parse("172.16.16.0/20", &c, &err), 0);
    assert_int_equal(col_ip_parse("172.16.31.255", 13, a), 0);
    assert_true(col_cidr_match(&c, a));
    assert_int_equal(col_ip_parse("172.16.32.0", 11, a), 0);
    assert_false(col_cidr_match(&c, a));
}

static void test_col_cidr_parse__rejects_garbage_with_message(void **state)
{
    (void)state;
    col_cidr_t c;
    at_err_t err;
    assert_int_equal(col_cidr_parse("10.0.0.0/33", &c, &err), -1);
    assert_non_null(strstr(err.msg, "0-32"));
    assert_int_equal(col_cidr_parse("not-an-ip", &c, &err), -1);
    assert_non_null(strstr(err.msg, "not-an-ip"));
    assert_int_equal(col_cidr_parse("10.0.0.0/", &c, &err), -1);
    assert_int_equal(col_cidr_parse("::/129", &c, &err), -1);
}

static void test_col_client_ip__ignores_xff_from_untrusted_peer(void **state)
{
    (void)state;
    struct sockaddr_in peer = v4("203.0.113.9");
    char out[64];
    const char *xff = "1.2.3.4";
    size_t n = col_client_ip((struct sockaddr *)&peer, xff, strlen(xff), NULL, 0, false, out, sizeof(out));
    assert_int_equal(n, strlen("203.0.113.9"));
    assert_string_equal(out, "203.0.113.9");
}

static void test_col_client_ip__takes_rightmost_untrusted_hop(void **state)
{
    (void)state;
    col_cidr_t trusted[2];
    at_err_t err;
    assert_int_equal(col_cidr_parse("10.0.0.0/8", &trusted[0], &err), 0);
    assert_int_equal(col_cidr_parse("192.168.0.0/16", &trusted[1], &err), 0);
    struct sockaddr_in peer = v4("10.1.1.1");
    char out[64];
    /* The client could have forged "6.6.6.6"; the LB appended the real one and an inner proxy. */
    const char *xff = "6.6.6.6, 198.51.100.23, 192.168.5.5";
    col_client_ip((struct sockaddr *)&peer, xff, strlen(xff), trusted, 2, false, out, sizeof(out));
    assert_string_equal(out, "198.51.100.23");
    /* Malformed hop: stop at the last trusted address rather than believe garbage. */
    const char *bad = "198.51.100.23, garbage";
    col_client_ip((struct sockaddr *)&peer, bad, strlen(bad), trusted, 2, false, out, sizeof(out));
    assert_string_equal(out, "10.1.1.1");
}

static void test_col_client_ip__truncates_v4_24_and_v6_48(void **state)
{
    (void)state;
    struct sockaddr_in p4 = v4("198.51.100.23");
    char out[64];
    col_client_ip((struct sockaddr *)&p4, NULL, 0, NULL, 0, true, out, sizeof(out));
    assert_string_equal(out, "198.51.100.0");

    struct sockaddr_in6 p6 = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, "2001:db8:abcd:1234:5678::9", &p6.sin6_addr), 1);
    col_client_ip((struct sockaddr *)&p6, NULL, 0, NULL, 0, true, out, sizeof(out));
    assert_string_equal(out, "2001:db8:abcd::");
    col_client_ip((struct sockaddr *)&p6, NULL, 0, NULL, 0, false, out, sizeof(out));
    assert_string_equal(out, "2001:db8:abcd:1234:5678::9");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_col_cidr_parse__accepts_v4_v6_and_bare),
        cmocka_unit_test(test_col_cidr_parse__rejects_garbage_with_message),
        cmocka_unit_test(test_col_client_ip__ignores_xff_from_untrusted_peer),
        cmocka_unit_test(test_col_client_ip__takes_rightmost_untrusted_hop),
        cmocka_unit_test(test_col_client_ip__truncates_v4_24_and_v6_48),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
