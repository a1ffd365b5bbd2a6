/* Unit tests for common/at_hll.c: accuracy against exact counts, idempotent adds and
 * merges, and the sparse BSON form. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>

#include "at_hll.h"

static size_t uid(char *buf, size_t cap, unsigned run, unsigned i)
{
    /* Shaped like the collector's user ids (UUIDv7 text), which differ mostly in a few
     * positions: the hash must still spread them. */
    return (size_t)snprintf(buf, cap, "01a1fe54-%04x-7792-a399-%012x", run & 0xffff, i);
}

static void test_at_hll_estimate__within_four_standard_errors(void **state)
{
    (void)state;
    const unsigned sizes[] = {1, 10, 100, 1000, 5000, 20000, 100000, 1000000};
    const double se = 1.04 / sqrt((double)AT_HLL_REGISTERS);
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        at_hll_t h;
        at_hll_clear(&h);
        char buf[64];
        for (unsigned i = 0; i < sizes[s]; i++)
            at_hll_add(&h, buf, uid(buf, sizeof buf, (unsigned)s, i));
        double est = at_hll_estimate(&h);
        double rel = fabs(est - sizes[s]) / sizes[s];
        /* Small counts are linear counting, which is near exact; allow 4 standard errors
         * (or 1 user) everywhere. */
        if (!(rel <= 4 * se || fabs(est - sizes[s]) <= 1.0))
            fail_msg("%u distinct ids estimated as %.1f (%.2f%% off, bound %.2f%%)", sizes[s], est, rel * 100,
                     4 * se * 100);
    }
}

static void test_at_hll_estimate__mean_error_near_nominal(void **state)
{
    (void)state;
    /* 40 independent sketches of 50,000 ids: the root mean square relative error must be
     * near the nominal 2.3% (a broken hash or estimator shows as a large bias). */
    double sq = 0;
    const int runs = 40;
    const unsigned n = 50000;
    for (int r = 0; r < runs; r++) {
        at_hll_t h;
        at_hll_clear(&h);
        char buf[64];
        for (unsigned i = 0; i < n; i++)
            at_hll_add(&h, buf, uid(buf, sizeof buf, 1000u + (unsigned)r, i));
        double rel = (at_hll_estimate(&h) - n) / n;
        sq += rel * rel;
    }
    double rmse = sqrt(sq / runs);
    if (rmse > 0.035)
        fail_msg("RMS relative error %.2f%% over %d runs (nominal 2.3%%)", rmse * 100, runs);
}

static void test_at_hll_add__idempotent_and_merge_is_union(void **state)
{
    (void)state;
    at_hll_t a, b, all, twice;
    at_hll_clear(&a);
    at_hll_clear(&b);
    at_hll_clear(&all);
    at_hll_clear(&twice);
    char buf[64];
    for (unsigned i = 0; i < 30000; i++) {
        size_t n = uid(buf, sizeof buf, 7, i);
        at_hll_add(i < 20000 ? &a : &b, buf, n);
        if (i >= 10000 && i < 20000) /* overlap: in both halves */
            at_hll_add(&b, buf, n);
        at_hll_add(&all, buf, n);
        at_hll_add(&twice, buf, n);
        at_hll_add(&twice, buf, n);
    }
    assert_memory_equal(all.reg, twice.reg, sizeof all.reg);
    at_hll_merge(&a, &b);
    assert_memory_equal(a.reg, all.reg, sizeof a.reg);
    assert_true(at_hll_estimate(&a) == at_hll_estimate(&all));
}

static void test_at_hll_bson__round_trip_and_sparse(void **state)
{
    (void)state;
    at_hll_t h, back;
    at_hll_clear(&h);
    at_hll_clear(&back);
    assert_true(at_hll_estimate(&h) == 0);
    char buf[64];
    for (unsigned i = 0; i < 5; i++)
        at_hll_add(&h, buf, uid(buf, sizeof buf, 9, i));
    bson_t doc = BSON_INITIALIZER;
    assert_true(at_hll_append_bson(&doc, "u", &h));
    bson_iter_t it, child;
    assert_true(bson_iter_init_find(&it, &doc, "u") && BSON_ITER_HOLDS_DOCUMENT(&it));
    assert_true(bson_iter_recurse(&it, &child));
    size_t keys = 0;
    while (bson_iter_next(&child))
        keys++;
    assert_int_equal(keys, at_hll_used(&h)); /* only non-zero registers */
    assert_true(keys >= 1 && keys <= 5);
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_t sub;
    assert_true(bson_init_static(&sub, data, len));
    at_err_t err = {0};
    assert_int_equal(at_hll_merge_bson(&back, &sub, &err), 0);
    assert_memory_equal(back.reg, h.reg, sizeof h.reg);
    bson_destroy(&doc);
}

static void test_at_hll_merge_bson__rejects_bad_registers(void **state)
{
    (void)state;
    struct {
        const char *json;
        const char *expect;
    } cases[] = {
        {"{\"2048\": 3}", "u.2048: expected a register index"},
        {"{\"-1\": 3}", "u.-1: expected a register index"},
        {"{\"x\": 3}", "u.x: expected a register index"},
        {"{\"5\": \"3\"}", "u.5: expected an integer rank"},
        {"{\"5\": 0}", "u.5: expected a rank from 1"},
        {"{\"5\": 60}", "u.5: expected a rank from 1"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        bson_error_t berr;
        bson_t *doc = bson_new_from_json((const uint8_t *)cases[i].json, -1, &berr);
        assert_non_null(doc);
        at_hll_t h;
        at_hll_clear(&h);
        at_err_t err = {0};
        assert_int_equal(at_hll_merge_bson(&h, doc, &err), -1);
        if (strncmp(err.msg, cases[i].expect, strlen(cases[i].expect)) != 0)
            fail_msg("%s: got \"%s\", expected \"%s...\"", cases[i].json, err.msg, cases[i].expect);
        bson_destroy(doc);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_hll_estimate__within_four_standard_errors),
        cmocka_unit_test(test_at_hll_estimate__mean_error_near_nominal),
        cmocka_unit_test(test_at_hll_add__idempotent_and_merge_is_union),
        cmocka_unit_test(test_at_hll_bson__round_trip_and_sparse),
        cmocka_unit_test(test_at_hll_merge_bson__rejects_bad_registers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
