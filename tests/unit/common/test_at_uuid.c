/* Unit tests for common/at_uuid.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdlib.h>

#include "at_uuid.h"

/* RFC 9562 appendix A.6 example UUIDv7. */
#define RFC_V7 "017f22e2-79b0-7cc3-98c4-dc0c0c07398f"
#define RFC_V7_MS 0x017F22E279B0ull

#define NOW_MS 1732195622123ull /* 2024-11-21, any fixed instant works */

static void test_at_uuid7_next__version_and_variant(void **state)
{
    (void)state;
    at_uuid7_gen_t g = {0};
    for (int i = 0; i < 1000; i++) {
        at_uuid_t u;
        at_uuid7_next(&g, NOW_MS + (uint64_t)(i / 10), &u);
        assert_int_equal(u.b[6] >> 4, 7);
        assert_int_equal(u.b[8] & 0xc0, 0x80);
        char s[AT_UUID_STR_LEN + 1];
        at_uuid_format(&u, s);
        assert_int_equal(s[14], '7');
        assert_true(strchr("89ab", s[19]) != NULL);
    }
}

static void test_at_uuid7_time_ms__extracts_timestamp(void **state)
{
    (void)state;
    at_uuid7_gen_t g = {0};
    at_uuid_t u;
    at_uuid7_next(&g, NOW_MS, &u);
    assert_int_equal(at_uuid7_time_ms(&u), NOW_MS);
    at_uuid7_next(&g, NOW_MS + 5, &u);
    assert_int_equal(at_uuid7_time_ms(&u), NOW_MS + 5);

    at_uuid_t rfc;
    assert_int_equal(at_uuid_parse(RFC_V7, strlen(RFC_V7), &rfc), 0);
    assert_int_equal(at_uuid7_time_ms(&rfc), RFC_V7_MS);
}

static void test_at_uuid_format__parse_round_trip(void **state)
{
    (void)state;
    at_uuid_t u, back;
    char s[AT_UUID_STR_LEN + 1];
    assert_int_equal(at_uuid_parse(RFC_V7, strlen(RFC_V7), &u), 0);
    assert_int_equal(u.b[0], 0x01);
    assert_int_equal(u.b[15], 0x8f);
    at_uuid_format(&u, s);
    assert_string_equal(s, RFC_V7);

    at_uuid7_gen_t g = {0};
    for (int i = 0; i < 100; i++) {
        at_uuid7_next(&g, NOW_MS, &u);
        at_uuid_format(&u, s);
        assert_int_equal(strlen(s), AT_UUID_STR_LEN);
        assert_int_equal(at_uuid_parse(s, strlen(s), &back), 0);
        assert_memory_equal(u.b, back.b, 16);
    }
}

static void test_at_uuid_parse__upper_case(void **state)
{
    (void)state;
    at_uuid_t lower, upper;
    assert_int_equal(at_uuid_parse(RFC_V7, strlen(RFC_V7), &lower), 0);
    assert_int_equal(at_uuid_parse("017F22E2-79B0-7CC3-98C4-DC0C0C07398F", 36, &upper), 0);
    assert_memory_equal(lower.b, upper.b, 16);
}

static void test_at_uuid_parse__rejects_malformed(void **state)
{
    (void)state;
    static const char *bad[] = {
        "017f22e2-79b0-7cc3-98c4-dc0c0c07398",   /* short */
        "017f22e2-79b0-7cc3-98c4-dc0c0c07398ff", /* long */
        "017f22e2x79b0-7cc3-98c4-dc0c0c07398f",  /* separator */
        "017f22e2-79b0-7cc3-98c4-dc0c0c07398g",  /* hex digit */
        "017f22e279b0-7cc3-98c4-dc0c0c07398f-",  /* dash moved */
        "{17f22e2-79b0-7cc3-98c4-dc0c0c07398f",  "",
    };
    at_uuid_t u;
    memset(&u, 0xaa, sizeof(u));
    for (size_t i = 0; i < AT_ARRAY_LEN(bad); i++)
        assert_int_equal(at_uuid_parse(bad[i], strlen(bad[i]), &u), -1);
    /* The length argument is honoured: a valid id followed by garbage is rejected... */
    assert_int_equal(at_uuid_parse(RFC_V7 "x", 37, &u), -1);
    /* ...and a valid prefix of a longer buffer is accepted. */
    assert_int_equal(at_uuid_parse(RFC_V7 "trailing", 36, &u), 0);
    assert_int_equal(at_uuid_parse(NULL, 36, &u), -1);
}

#define MANY 100000

static void test_at_uuid7_next__monotonic_within_one_ms(void **state)
{
    (void)state;
    at_uuid7_gen_t g = {0};
    at_uuid_t *ids = malloc(MANY * sizeof(*ids));
    assert_non_null(ids);
    for (int i = 0; i < MANY; i++)
        at_uuid7_next(&g, NOW_MS, &ids[i]);
    assert_int_equal(at_uuid7_time_ms(&ids[0]), NOW_MS);
    for (int i = 1; i < MANY; i++) {
        if (at_uuid_cmp(&ids[i - 1], &ids[i]) >= 0)
            fail_msg("id %d is not greater than id %d", i, i - 1);
        assert_int_equal(ids[i].b[6] >> 4, 7);
    }
    /* More than 4096 ids forced the timestamp ahead of the clock, but only as far as
     * needed: at least 2048 ids fit in each borrowed millisecond. */
    uint64_t last = at_uuid7_time_ms(&ids[MANY - 1]);
    assert_true(last > NOW_MS);
    assert_true(last <= NOW_MS + MANY / 2048 + 1);
    free(ids);
}

static void test_at_uuid7_next__monotonic_when_clock_goes_back(void **state)
{
    (void)state;
    at_uuid7_gen_t g = {0};
    at_uuid_t prev, u;
    at_uuid7_next(&g, NOW_MS, &prev);
    /* Clock steps back 1 s, then creeps forward, then jumps well past the original time. */
    static const int64_t offsets[] = {-1000, -999, -999, -500, 0, 0, 1, 5000};
    uint64_t first_ms = 0;
    for (size_t i = 0; i < AT_ARRAY_LEN(offsets); i++) {
        for (int k = 0; k < 3000; k++) {
            at_uuid7_next(&g, (uint64_t)((int64_t)NOW_MS + offsets[i]), &u);
            assert_true(at_uuid_cmp(&prev, &u) < 0);
            assert_true(at_uuid7_time_ms(&u) >= NOW_MS);
            if (k == 0)
                first_ms = at_uuid7_time_ms(&u);
            prev = u;
        }
    }
    /* Once the clock is ahead again the real time is used. */
    assert_int_equal(first_ms, NOW_MS + 5000);
}

static void test_at_uuid7_next__counter_seed_leaves_headroom(void **state)
{
    (void)state;
    at_uuid7_gen_t g = {0};
    bool saw_nonzero = false;
    for (uint64_t ms = 0; ms < 200; ms++) {
        at_uuid_t u;
        at_uuid7_next(&g, NOW_MS + ms, &u);
        unsigned counter = (unsigned)(u.b[6] & 0x0f) << 8 | u.b[7];
        assert_true(counter < 2048);
        saw_nonzero |= counter != 0;
    }
    assert_true(saw_nonzero); /* the seed is random, not a constant 0 */
}

static void test_at_uuid7_next__random_bits_vary(void **state)
{
    (void)state;
    at_uuid7_gen_t a = {0}, b = {0};
    at_uuid_t ua, ub;
    at_uuid7_next(&a, NOW_MS, &ua);
    at_uuid7_next(&b, NOW_MS, &ub);
    /* Two generators in the same millisecond differ in their 62 random bits. */
    assert_memory_not_equal(ua.b + 8, ub.b + 8, 8);
    /* And the pool served this id without emptying: one getrandom call covers several ids. */
    assert_true(a.rand_left > 0 && a.rand_left < AT_ARRAY_LEN(a.rand_pool));

    /* Among consecutive ids every random byte position takes more than one value. */
    uint8_t first[8];
    bool varied[8] = {false};
    memcpy(first, ua.b + 8, 8);
    for (int i = 0; i < 64; i++) {
        at_uuid7_next(&a, NOW_MS, &ua);
        for (int j = 0; j < 8; j++)
            varied[j] |= ua.b[8 + j] != first[j];
    }
    for (int j = 0; j < 8; j++)
        assert_true(varied[j]);
}

static void test_at_uuid_cmp__orders_by_time(void **state)
{
    (void)state;
    at_uuid7_gen_t g1 = {0}, g2 = {0};
    at_uuid_t early, late;
    at_uuid7_next(&g1, NOW_MS, &early);
    at_uuid7_next(&g2, NOW_MS + 1, &late);
    assert_true(at_uuid_cmp(&early, &late) < 0);
    assert_true(at_uuid_cmp(&late, &early) > 0);
    assert_int_equal(at_uuid_cmp(&early, &early), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_uuid7_next__version_and_variant),
        cmocka_unit_test(test_at_uuid7_time_ms__extracts_timestamp),
        cmocka_unit_test(test_at_uuid_format__parse_round_trip),
        cmocka_unit_test(test_at_uuid_parse__upper_case),
        cmocka_unit_test(test_at_uuid_parse__rejects_malformed),
        cmocka_unit_test(test_at_uuid7_next__monotonic_within_one_ms),
        cmocka_unit_test(test_at_uuid7_next__monotonic_when_clock_goes_back),
        cmocka_unit_test(test_at_uuid7_next__counter_seed_leaves_headroom),
        cmocka_unit_test(test_at_uuid7_next__random_bits_vary),
        cmocka_unit_test(test_at_uuid_cmp__orders_by_time),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
