/*
 * test_lt_sched.c: the open-model schedule (exact arrival counts and times, ramps, pauses,
 * caps) and the duration / stage parsers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lt_sched.h"

#include <math.h>
#include <stdlib.h>

static void test_lt_sched_time__constant_rate_is_exact(void **state)
{
    (void)state;
    lt_sched_t s;
    lt_stage_t st = {500, 10000000000LL};
    assert_int_equal(lt_sched_init_rate(&s, 500, &st, 1, 0, NULL), 0);
    assert_int_equal(s.total, 5000);
    assert_int_equal(s.duration_ns, 10000000000LL);
    for (uint64_t i = 0; i < s.total; i++)
        assert_int_equal(lt_sched_time(&s, i), (int64_t)i * 2000000);
    assert_true(fabs(lt_sched_rate_at(&s, 5000000000LL) - 500) < 1e-9);
    lt_sched_free(&s);
}

static void test_lt_sched_time__fractional_rate_counts_started_arrivals(void **state)
{
    (void)state;
    lt_sched_t s;
    lt_stage_t st = {3, 1000000000LL}; /* 3/s for 1 s: arrivals at 0, 1/3, 2/3 */
    assert_int_equal(lt_sched_init_rate(&s, 3, &st, 1, 0, NULL), 0);
    assert_int_equal(s.total, 3);
    assert_int_equal(lt_sched_time(&s, 1), 333333333);
    lt_stage_t st2 = {2.5, 1000000000LL}; /* N(1 s) = 2.5: arrivals at 0, 0.4, 0.8 */
    lt_sched_free(&s);
    assert_int_equal(lt_sched_init_rate(&s, 2.5, &st2, 1, 0, NULL), 0);
    assert_int_equal(s.total, 3);
    assert_int_equal(lt_sched_time(&s, 2), 800000000);
    lt_sched_free(&s);
}

static void test_lt_sched_time__linear_ramp_matches_integral(void **state)
{
    (void)state;
    lt_sched_t s;
    lt_stage_t st = {1000, 10000000000LL}; /* 0 -> 1000/s over 10 s: N(t) = 50 t^2 */
    assert_int_equal(lt_sched_init_rate(&s, 0, &st, 1, 0, NULL), 0);
    assert_int_equal(s.total, 5000);
    int64_t prev = -1;
    uint64_t first_half = 0;
    for (uint64_t i = 0; i < s.total; i++) {
        int64_t t = lt_sched_time(&s, i);
        assert_true(t > prev || (i == 0 && t == 0));
        prev = t;
        double expect = sqrt((double)i / 50.0) * 1e9;
        assert_true(fabs((double)t - expect) < 1000); /* within 1 us */
        if (t < 5000000000LL)
            first_half++;
    }
    assert_int_equal(first_half, 1250); /* N(5 s) = 1250 */
    assert_true(fabs(lt_sched_rate_at(&s, 2500000000LL) - 250) < 1e-6);
    lt_sched_free(&s);
}

static void test_lt_sched_time__stages_ramp_up_and_down(void **state)
{
    (void)state;
    lt_stage_t *st;
    size_t n;
    assert_int_equal(lt_parse_stages("1000:10s,5000:30s,0:5s", &st, &n, NULL), 0);
    assert_int_equal(n, 3);
    lt_sched_t s;
    assert_int_equal(lt_sched_init_rate(&s, 0, st, n, 0, NULL), 0);
    /* 0->1000 over 10 s = 5000; 1000->5000 over 30 s = 90000; 5000->0 over 5 s = 12500 */
    assert_int_equal(s.total, 107500);
    assert_int_equal(s.duration_ns, 45000000000LL);
    int64_t prev = -1;
    for (uint64_t i = 0; i < s.total; i++) {
        int64_t t = lt_sched_time(&s, i);
        assert_true(t >= prev && t < s.duration_ns);
        prev = t;
    }
    assert_true(lt_sched_time(&s, 5000) >= 10000000000LL - 1000);
    assert_true(lt_sched_time(&s, 4999) < 10000000000LL);
    assert_true(fabs(lt_sched_rate_at(&s, 25000000000LL) - 3000) < 1e-6);
    lt_sched_free(&s);
    free(st);
}

static void test_lt_sched_time__pause_has_no_arrivals(void **state)
{
    (void)state;
    /* 100/s for 1 s, jump to 0, pause 1 s, jump back, 100/s for 1 s. */
    lt_stage_t *st;
    size_t n;
    assert_int_equal(lt_parse_stages("100:1s,0:0s,0:1s,100:0s,100:1s", &st, &n, NULL), 0);
    lt_sched_t s;
    assert_int_equal(lt_sched_init_rate(&s, 100, st, n, 0, NULL), 0);
    assert_int_equal(s.total, 200);
    for (uint64_t i = 0; i < s.total; i++) {
        int64_t t = lt_sched_time(&s, i);
        assert_true(t < 1000000000LL || t >= 2000000000LL);
    }
    assert_int_equal(lt_sched_time(&s, 100), 2000000000LL);
    lt_sched_free(&s);
    free(st);
}

static void test_lt_sched_init__max_total_caps(void **state)
{
    (void)state;
    lt_sched_t s;
    lt_stage_t st = {1000, 10000000000LL};
    assert_int_equal(lt_sched_init_rate(&s, 1000, &st, 1, 123, NULL), 0);
    assert_int_equal(s.total, 123);
    lt_sched_free(&s);
}

static void test_lt_sched_init__no_arrivals_is_an_error(void **state)
{
    (void)state;
    lt_sched_t s;
    at_err_t err;
    lt_stage_t st = {0, 10000000000LL};
    assert_int_equal(lt_sched_init_rate(&s, 0, &st, 1, 0, &err), -1);
    assert_int_equal(err.code, AT_ERR_INVALID);
}

static void test_lt_sched_init_times__replay_offsets(void **state)
{
    (void)state;
    lt_sched_t s;
    int64_t t[] = {0, 5, 5, 100};
    assert_int_equal(lt_sched_init_times(&s, t, 4, NULL), 0);
    assert_int_equal(s.total, 4);
    assert_int_equal(lt_sched_time(&s, 3), 100);
    lt_sched_free(&s);
    int64_t bad[] = {0, 10, 5};
    at_err_t err;
    assert_int_equal(lt_sched_init_times(&s, bad, 3, &err), -1);
}

static void test_lt_parse_duration__units_and_errors(void **state)
{
    (void)state;
    int64_t ns;
    at_err_t err;
    assert_int_equal(lt_parse_duration("1.5s", &ns, "--x", NULL), 0);
    assert_int_equal(ns, 1500000000LL);
    assert_int_equal(lt_parse_duration("250ms", &ns, "--x", NULL), 0);
    assert_int_equal(ns, 250000000LL);
    assert_int_equal(lt_parse_duration("2m", &ns, "--x", NULL), 0);
    assert_int_equal(ns, 120000000000LL);
    assert_int_equal(lt_parse_duration("10", &ns, "--x", NULL), 0);
    assert_int_equal(ns, 10000000000LL);
    assert_int_equal(lt_parse_duration("7us", &ns, "--x", NULL), 0);
    assert_int_equal(ns, 7000);
    assert_int_equal(lt_parse_duration("1d", &ns, "--x", &err), -1);
    assert_non_null(strstr(err.msg, "--x"));
    assert_int_equal(lt_parse_duration("-1s", &ns, "--x", &err), -1);
    assert_int_equal(lt_parse_duration("", &ns, "--x", &err), -1);
    assert_int_equal(lt_parse_duration("s", &ns, "--x", &err), -1);
    assert_int_equal(lt_parse_duration("2000000h", &ns, "--x", &err), -1);
}

static void test_lt_parse_stages__errors_name_the_stage(void **state)
{
    (void)state;
    lt_stage_t *st;
    size_t n;
    at_err_t err;
    const char *bad[] = {"", "abc", "10:", "10:5x", "-1:1s", "10:1s,", ",10:1s", "1e9:1s", "10:1s:3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(lt_parse_stages(bad[i], &st, &n, &err), -1);
        assert_null(st);
        assert_non_null(strstr(err.msg, "--stages"));
    }
    assert_int_equal(lt_parse_stages("10:1s,abc", &st, &n, &err), -1);
    assert_non_null(strstr(err.msg, "stage 2"));
    assert_int_equal(lt_parse_stages("0.5:2s", &st, &n, NULL), 0);
    assert_true(st[0].rate == 0.5);
    free(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lt_sched_time__constant_rate_is_exact),
        cmocka_unit_test(test_lt_sched_time__fractional_rate_counts_started_arrivals),
        cmocka_unit_test(test_lt_sched_time__linear_ramp_matches_integral),
        cmocka_unit_test(test_lt_sched_time__stages_ramp_up_and_down),
        cmocka_unit_test(test_lt_sched_time__pause_has_no_arrivals),
        cmocka_unit_test(test_lt_sched_init__max_total_caps),
        cmocka_unit_test(test_lt_sched_init__no_arrivals_is_an_error),
        cmocka_unit_test(test_lt_sched_init_times__replay_offsets),
        cmocka_unit_test(test_lt_parse_duration__units_and_errors),
        cmocka_unit_test(test_lt_parse_stages__errors_name_the_stage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
