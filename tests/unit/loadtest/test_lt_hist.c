/*
 * test_lt_hist.c: the log-linear histogram: bucket geometry, percentile accuracy on known
 * distributions (against exact order statistics), merging, clamping.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lt_hist.h"
#include "lt_profile.h"

#include <math.h>
#include <stdlib.h>

#define HIGHEST 3600000000ULL

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Exact percentile by the same rank rule as lt_hist_percentile (ceil(p/100 * n)). */
static uint64_t exact_pct(const uint64_t *sorted, size_t n, double p)
{
    double r = ceil(p / 100.0 * (double)n);
    size_t rank = r < 1 ? 1 : (size_t)r;
    if (rank > n)
        rank = n;
    return sorted[rank - 1];
}

static void assert_within(uint64_t got, uint64_t want, double rel)
{
    double d = fabs((double)got - (double)want);
    if (d > rel * (double)want + 1.0)
        fail_msg("got %llu, want %llu within %.3f%%", (unsigned long long)got, (unsigned long long)want, rel * 100);
}

static void test_lt_hist_index__exact_below_sub_bucket_count(void **state)
{
    (void)state;
    lt_hist_t h;
    assert_int_equal(lt_hist_init(&h, LT_HIST_PRECISE, HIGHEST, NULL), 0);
    for (uint64_t v = 0; v < 2048; v++) {
        size_t i = lt_hist_index(&h, v);
        assert_int_equal(i, v);
        assert_int_equal(lt_hist_bucket_low(&h, i), v);
        assert_int_equal(lt_hist_bucket_width(&h, i), 1);
    }
    lt_hist_free(&h);
}

static void test_lt_hist_index__bucket_contains_value_with_bounded_width(void **state)
{
    (void)state;
    lt_hist_t h;
    assert_int_equal(lt_hist_init(&h, LT_HIST_PRECISE, HIGHEST, NULL), 0);
    lt_rng_t r;
    lt_rng_seed(&r, 7);
    size_t prev = 0;
    for (uint64_t v = 2048; v < HIGHEST; v = v + 1 + v / 997) {
        size_t i = lt_hist_index(&h, v);
        uint64_t lo = lt_hist_bucket_low(&h, i), w = lt_hist_bucket_width(&h, i);
        assert_true(lo <= v && v < lo + w);
        assert_true((double)w / (double)lo <= 1.0 / 1024 + 1e-12); /* 3 significant digits */
        assert_true(i >= prev);                                    /* monotonic */
        prev = i;
    }
    for (int k = 0; k < 100000; k++) {
        uint64_t v = lt_rng_below(&r, HIGHEST);
        size_t i = lt_hist_index(&h, v);
        assert_true(i < h.nbuckets);
        assert_true(lt_hist_bucket_low(&h, i) <= v && v < lt_hist_bucket_low(&h, i) + lt_hist_bucket_width(&h, i));
    }
    assert_int_equal(lt_hist_index(&h, HIGHEST), h.nbuckets - 1);
    lt_hist_free(&h);
}

static void test_lt_hist_percentile__small_exact_set(void **state)
{
    (void)state;
    lt_hist_t h;
    assert_int_equal(lt_hist_init(&h, LT_HIST_PRECISE, HIGHEST, NULL), 0);
    assert_int_equal(lt_hist_percentile(&h, 50), 0); /* empty */
    for (uint64_t v = 1; v <= 4; v++)
        lt_hist_record(&h, v);
    assert_int_equal(lt_hist_percentile(&h, 0), 1);
    assert_int_equal(lt_hist_percentile(&h, 25), 1);
    assert_int_equal(lt_hist_percentile(&h, 50), 2);
    assert_int_equal(lt_hist_percentile(&h, 75), 3);
    assert_int_equal(lt_hist_percentile(&h, 99), 4);
    assert_int_equal(lt_hist_percentile(&h, 100), 4);
    assert_int_equal(h.min, 1);
    assert_int_equal(h.max, 4);
    assert_true(fabs(lt_hist_mean(&h) - 2.5) < 1e-9);
    lt_hist_free(&h);
}

static void test_lt_hist_percentile__uniform_1_to_1e6(void **state)
{
    (void)state;
    lt_hist_t h;
    assert_int_equal(lt_hist_init(&h, LT_HIST_PRECISE, HIGHEST, NULL), 0);
    for (uint64_t v = 1; v <= 1000000; v++)
        lt_hist_record(&h, v);
    assert_int_equal(h.total, 1000000);
    const double ps[] = {10, 50, 90, 99, 99.9, 99.99};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
        assert_within(lt_hist_percentile(&h, ps[i]), (uint64_t)(ps[i] * 10000), 0.001);
    assert_int_equal(lt_hist_percentile(&h, 100), 1000000);
    assert_true(fabs(lt_hist_mean(&h) - 500000.5) < 1e-3);
    /* stddev of a discrete uniform 1..n is sqrt((n^2-1)/12) ~ 288675; buckets add < 0.1% */
    assert_true(fabs(lt_hist_stddev(&h) - 288675.1) / 288675.1 < 0.002);
    lt_hist_free(&h);
}

/* Exponential and log-normal latencies (microseconds), compared with exact quantiles. */
static void check_distribution(int kind)
{
    enum { N = 200000 };
    uint64_t *v = malloc(N * sizeof(*v));
    assert_non_null(v);
    lt_rng_t r;
    lt_rng_seed(&r, 42 + (uint64_t)kind);
    lt_hist_t h;
    assert_int_equal(lt_hist_init(&h, LT_HIST_PRECISE, HIGHEST, NULL), 0);
    for (size_t i = 0; i < N; i++) {
        double u = lt_rng_double(&r);
        double x;
        if (kind == 0) {
            x = -1000.0 * log(1.0 - u); /* exponential, mean 1 ms */
        } else {
            double u2 = lt_rng_double(&r); /* log-normal via Box-Muller, median ~ 2 ms, heavy tail */
            double z = sqrt(-2.0 * log(1.0 - u)) * cos(2 * M_PI * u2);
            x = exp(log(2000.0) + 1.2 * z);
        }
        v[i] = (uint64_t)x;
        lt_hist_record(&h, v[i]);
    }
    qsort(v, N, sizeof(*v), cmp_u64);
    const double ps[] = {1, 25, 50, 75, 90, 95, 99, 99.9, 99.99};
    for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++)
        assert_within(lt_hist_percentile(&h, ps[i]), exact_pct(v, N, ps[i]), 0.001);
    assert_int_equal(lt_hist_percentile(&h, 100), v[N - 1]);
    assert_int_equal(h.min, v[0]);
    lt_hist_free(&h);
    free(v);
}

static void test_lt_hist_percentile__exponential(void **state)
{
    (void)state;
    check_distribution(0);
}

static void test_lt_hist_percentile__lognormal(void **state)
{
    (void)state;
    check_distribution(1);
}

static void test_lt_hist_merge__equals_recording_into_one(void **state)
{
    (void)state;
    lt_hist_t all, part[4], merged;
    assert_int_equal(lt_hist_init(&all, LT_HIST_PRECISE, HIGHEST, NULL), 0);
    assert_int_equal(lt_hist_init(&merged, LT_HIST_PRECISE, HIGHEST, NULL), 0);
    for (int k = 0; k < 4; k++)
        assert_int_equal(lt_hist_init(&part[k], LT_HIST_PRECISE, HIGHEST, NULL), 0);
    lt_rng_t r;
    lt_rng_seed(&r, 3);
    for (int i = 0; i < 100000; i++) {
        uint64_t x = (uint64_t)(-500.0 * log(1.0 - lt_rng_double(&r))) + (uint64_t)(i % 7 == 0 ? 100000 : 0);
        lt_hist_record(&all, x);
        lt_hist_record(&part[i % 4], x);
    }
    for (int k = 0; k < 4; k++)
        assert_int_equal(lt_hist_merge(&merged, &part[k], NULL), 0);
    assert_int_equal(merged.total, all.total);
    assert_int_equal(merged.min, all.min);
    assert_int_equal(merged.max, all.max);
    assert_memory_equal(merged.counts, all.counts, all.nbuckets * sizeof(uint64_t));
    for (double p = 0; p <= 100; p += 0.5)
        assert_int_equal(lt_hist_percentile(&merged, p), lt_hist_percentile(&all, p));
    assert_true(fabs(lt_hist_mean(&merged) - lt_hist_mean(&all)) < 1e-6);
    /* merging an empty histogram changes nothing */
    lt_hist_t empty;
    assert_int_equal(lt_hist_init(&empty, LT_HIST_PRECISE, HIGHEST, NULL), 0);
    assert_int_equal(lt_hist_merge(&merged, &empty, NULL), 0);
    assert_int_equal(merged.min, all.min);
    lt_hist_free(&empty);
    for (int k = 0; k < 4; k++)
        lt_hist_free(&part[k]);
    lt_hist_free(&all);
    lt_hist_free(&merged);
}

static void test_lt_hist_merge__different_geometry_refused(void **state)
{
    (void)state;
    lt_hist_t a, b;
    at_err_t err;
    assert_int_equal(lt_hist_init(&a, LT_HIST_PRECISE, HIGHEST, NULL), 0);
    assert_int_equal(lt_hist_init(&b, LT_HIST_COARSE, HIGHEST, NULL), 0);
    assert_int_equal(lt_hist_merge(&a, &b, &err), -1);
    assert_int_equal(err.code, AT_ERR_INVALID);
    lt_hist_free(&a);
    lt_hist_free(&b);
}

static void test_lt_hist_record__above_highest_is_clamped_but_max_exact(void **state)
{
    (void)state;
    lt_hist_t h;
    assert_int_equal(lt_hist_init(&h, LT_HIST_PRECISE, 1000000, NULL), 0);
    lt_hist_record(&h, 10);
    lt_hist_record(&h, 5000000);
    assert_int_equal(h.clamped, 1);
    assert_int_equal(h.max, 5000000);
    assert_int_equal(lt_hist_percentile(&h, 100), 5000000);
    uint64_t p99 = lt_hist_percentile(&h, 99);
    assert_true(p99 >= 999000 && p99 <= 5000000);
    lt_hist_free(&h);
}

static void test_lt_hist_coarse__within_3_percent(void **state)
{
    (void)state;
    lt_hist_t h;
    assert_int_equal(lt_hist_init(&h, LT_HIST_COARSE, HIGHEST, NULL), 0);
    for (uint64_t v = 1; v <= 100000; v++)
        lt_hist_record(&h, v * 37);
    assert_within(lt_hist_percentile(&h, 50), 50000 * 37, 0.032);
    assert_within(lt_hist_percentile(&h, 99), 99000 * 37, 0.032);
    assert_true(h.nbuckets < 1100);
    lt_hist_free(&h);
}

static void test_lt_hist_init__bad_arguments(void **state)
{
    (void)state;
    lt_hist_t h;
    at_err_t err;
    assert_int_equal(lt_hist_init(&h, 1, HIGHEST, &err), -1);
    assert_int_equal(err.code, AT_ERR_RANGE);
    assert_int_equal(lt_hist_init(&h, 11, 1, &err), -1);
    lt_hist_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lt_hist_index__exact_below_sub_bucket_count),
        cmocka_unit_test(test_lt_hist_index__bucket_contains_value_with_bounded_width),
        cmocka_unit_test(test_lt_hist_percentile__small_exact_set),
        cmocka_unit_test(test_lt_hist_percentile__uniform_1_to_1e6),
        cmocka_unit_test(test_lt_hist_percentile__exponential),
        cmocka_unit_test(test_lt_hist_percentile__lognormal),
        cmocka_unit_test(test_lt_hist_merge__equals_recording_into_one),
        cmocka_unit_test(test_lt_hist_merge__different_geometry_refused),
        cmocka_unit_test(test_lt_hist_record__above_highest_is_clamped_but_max_exact),
        cmocka_unit_test(test_lt_hist_coarse__within_3_percent),
        cmocka_unit_test(test_lt_hist_init__bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
