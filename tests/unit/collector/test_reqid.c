/*
 * test_reqid.c: event ids derived from the load balancer's request id (col_reqid.c):
 * parsing, trust, determinism, and the UUIDv7 bits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "col_reqid.h"

#define NOW_MS UINT64_C(1795267622123)
#define GOOD "1795267622123-5f0e3a9c-1b2d-4c3e-9f00-0123456789ab"
/* Event 0 of GOOD, computed independently (Python hashlib) from the description in
 * col_reqid.h: ms in bytes 0-5, then SHA-256("adtrack.reqid.v1\0" GOOD be32(0)) bits. */
#define REQID_VECTOR "01a1fe49-f4eb-731b-83c5-21f93990c86f"

static struct sockaddr_in v4(const char *s)
{
    struct sockaddr_in sa = {.sin_family = AF_INET};
    assert_int_equal(inet_pton(AF_INET, s, &sa.sin_addr), 1);
    return sa;
}

static col_cidr_t loopback(void)
{
    col_cidr_t c;
    at_err_t err;
    assert_int_equal(col_cidr_parse("127.0.0.1/32", &c, &err), 0);
    return c;
}

static void test_col_reqid_parse__valid(void **state)
{
    (void)state;
    col_reqid_t r;
    at_err_t err = {0};
    assert_int_equal(col_reqid_parse(GOOD, strlen(GOOD), NOW_MS, &r, &err), 0);
    assert_true(r.valid);
    assert_true(r.ms == NOW_MS);
    assert_int_equal(r.len, strlen(GOOD));
    assert_memory_equal(r.value, GOOD, strlen(GOOD));
    /* Any token characters from the set, and a clock 59 minutes apart, are fine. */
    const char *other = "1795271162123-Ab.9_x:y";
    assert_int_equal(col_reqid_parse(other, strlen(other), NOW_MS, &r, &err), 0);
    assert_true(r.ms == NOW_MS + 3540000);
}

static void test_col_reqid_parse__malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "",                                   /* empty */
        "1795267622123",                      /* no token */
        "1795267622123-",                     /* empty token */
        "-5f0e3a9c",                          /* no timestamp */
        "17952676x2123-abc",                  /* not a number */
        "1795267622123 abc",                  /* wrong separator */
        "1795267622123-ab c",                 /* space in token */
        "1795267622123-ab\"c",                /* quote in token */
        "1795267622123-ab\xc3\xa9",           /* non-ASCII */
        "0001795267622123-abc",               /* 16 digits */
        "1795263962123-abc",                  /* 61 minutes early */
        "1795271282123-abc",                  /* 61 minutes late */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        col_reqid_t r = {.valid = true};
        at_err_t err = {0};
        assert_int_equal(col_reqid_parse(bad[i], strlen(bad[i]), NOW_MS, &r, &err), -1);
        assert_false(r.valid);
        assert_non_null(strstr(err.msg, "request id"));
    }
    col_reqid_t r = {.valid = true};
    at_err_t err = {0};
    assert_int_equal(col_reqid_parse(NULL, 0, NOW_MS, &r, &err), -1);
    assert_false(r.valid);
}

static void test_col_reqid_parse__too_long(void **state)
{
    (void)state;
    char v[COL_REQID_MAX_LEN + 2];
    memcpy(v, "1795267622123-", 14);
    memset(v + 14, 'a', sizeof(v) - 14);
    col_reqid_t r;
    at_err_t err = {0};
    /* Exactly the limit is accepted; one byte more is not. */
    assert_int_equal(col_reqid_parse(v, COL_REQID_MAX_LEN, NOW_MS, &r, &err), 0);
    assert_int_equal(col_reqid_parse(v, COL_REQID_MAX_LEN + 1, NOW_MS, &r, &err), -1);
    assert_int_equal(err.code, AT_ERR_TOO_LARGE);
    assert_false(r.valid);
}

static void test_col_reqid_from_request__untrusted_or_absent_ignored(void **state)
{
    (void)state;
    col_cidr_t lo = loopback();
    struct sockaddr_in lb = v4("127.0.0.1"), client = v4("203.0.113.9");
    col_reqid_t r;
    at_err_t err = {0};

    /* From the trusted load balancer: used. */
    assert_int_equal(col_reqid_from_request((struct sockaddr *)&lb, &lo, 1, GOOD, strlen(GOOD), 1, NOW_MS, &r, &err), 1);
    assert_true(r.valid);
    /* From anybody else, even well-formed: ignored without an error. */
    assert_int_equal(
        col_reqid_from_request((struct sockaddr *)&client, &lo, 1, GOOD, strlen(GOOD), 1, NOW_MS, &r, &err), 0);
    assert_false(r.valid);
    /* No trusted proxies configured at all. */
    assert_int_equal(col_reqid_from_request((struct sockaddr *)&lb, NULL, 0, GOOD, strlen(GOOD), 1, NOW_MS, &r, &err), 0);
    assert_false(r.valid);
    /* Header absent. */
    assert_int_equal(col_reqid_from_request((struct sockaddr *)&lb, &lo, 1, NULL, 0, 0, NOW_MS, &r, &err), 0);
    assert_false(r.valid);
    /* Malformed or repeated from the trusted peer: an error, and not used. */
    assert_int_equal(col_reqid_from_request((struct sockaddr *)&lb, &lo, 1, "x", 1, 1, NOW_MS, &r, &err), -1);
    assert_false(r.valid);
    assert_int_equal(col_reqid_from_request((struct sockaddr *)&lb, &lo, 1, GOOD, strlen(GOOD), 2, NOW_MS, &r, &err),
                     -1);
    assert_false(r.valid);
    assert_non_null(strstr(err.msg, "2 times"));
}

static void test_col_reqid_peer_trusted__v6_and_mapped(void **state)
{
    (void)state;
    col_cidr_t c[2];
    at_err_t err;
    assert_int_equal(col_cidr_parse("10.0.0.0/8", &c[0], &err), 0);
    assert_int_equal(col_cidr_parse("fd00::/8", &c[1], &err), 0);
    struct sockaddr_in6 six = {.sin6_family = AF_INET6};
    assert_int_equal(inet_pton(AF_INET6, "fd12::1", &six.sin6_addr), 1);
    assert_true(col_reqid_peer_trusted((struct sockaddr *)&six, c, 2));
    /* An IPv4 peer on a dual-stack socket arrives IPv4-mapped. */
    assert_int_equal(inet_pton(AF_INET6, "::ffff:10.1.2.3", &six.sin6_addr), 1);
    assert_true(col_reqid_peer_trusted((struct sockaddr *)&six, c, 2));
    assert_int_equal(inet_pton(AF_INET6, "2001:db8::1", &six.sin6_addr), 1);
    assert_false(col_reqid_peer_trusted((struct sockaddr *)&six, c, 2));
    struct sockaddr_in four = v4("11.0.0.1");
    assert_false(col_reqid_peer_trusted((struct sockaddr *)&four, c, 2));
    assert_false(col_reqid_peer_trusted(NULL, c, 2));
}

static void test_col_reqid_event_id__same_input_same_id_index_changes_it(void **state)
{
    (void)state;
    col_reqid_t a, b, c;
    at_err_t err = {0};
    const char *other = "1795267622123-5f0e3a9c-1b2d-4c3e-9f00-0123456789ac";
    assert_int_equal(col_reqid_parse(GOOD, strlen(GOOD), NOW_MS, &a, &err), 0);
    assert_int_equal(col_reqid_parse(GOOD, strlen(GOOD), NOW_MS + 5000, &b, &err), 0); /* "another collector" */
    assert_int_equal(col_reqid_parse(other, strlen(other), NOW_MS, &c, &err), 0);

    at_uuid_t a0, a0again, b0, a1, c0, cookie;
    col_reqid_event_id(&a, 0, &a0);
    col_reqid_event_id(&a, 0, &a0again);
    col_reqid_event_id(&b, 0, &b0);
    col_reqid_event_id(&a, 1, &a1);
    col_reqid_event_id(&c, 0, &c0);
    col_reqid_event_id(&a, COL_REQID_INDEX_COOKIE, &cookie);
    assert_memory_equal(a0.b, a0again.b, 16);
    assert_memory_equal(a0.b, b0.b, 16);
    assert_memory_not_equal(a0.b, a1.b, 16);
    assert_memory_not_equal(a0.b, c0.b, 16);
    assert_memory_not_equal(a0.b, cookie.b, 16);
    /* Differences are in the random part only: the timestamp is the request's. */
    assert_memory_equal(a0.b, a1.b, 6);

    /* A fixed vector, so the derivation cannot change silently between releases (it must
     * not: two collector versions behind one load balancer must agree on it). */
    char s[AT_UUID_STR_LEN + 1];
    at_uuid_format(&a0, s);
    assert_string_equal(s, REQID_VECTOR);
}

static void test_col_reqid_event_id__version_variant_and_time(void **state)
{
    (void)state;
    col_reqid_t r;
    at_err_t err = {0};
    assert_int_equal(col_reqid_parse(GOOD, strlen(GOOD), NOW_MS, &r, &err), 0);
    for (uint32_t i = 0; i < 2000; i++) {
        at_uuid_t u;
        col_reqid_event_id(&r, i, &u);
        assert_int_equal(u.b[6] >> 4, 7);       /* version 7 */
        assert_int_equal(u.b[8] >> 6, 2);       /* variant 0b10 */
        assert_true(at_uuid7_time_ms(&u) == NOW_MS);
        char s[AT_UUID_STR_LEN + 1];
        at_uuid_t back;
        at_uuid_format(&u, s);
        assert_int_equal(at_uuid_parse(s, AT_UUID_STR_LEN, &back), 0);
        assert_memory_equal(back.b, u.b, 16);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_col_reqid_parse__valid),
        cmocka_unit_test(test_col_reqid_parse__malformed),
        cmocka_unit_test(test_col_reqid_parse__too_long),
        cmocka_unit_test(test_col_reqid_from_request__untrusted_or_absent_ignored),
        cmocka_unit_test(test_col_reqid_peer_trusted__v6_and_mapped),
        cmocka_unit_test(test_col_reqid_event_id__same_input_same_id_index_changes_it),
        cmocka_unit_test(test_col_reqid_event_id__version_variant_and_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
