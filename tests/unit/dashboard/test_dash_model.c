/*
 * test_dash_model.c: the snapshot JSON built from fed Redis data: counts over the window,
 * rates from deltas between polls, CTR, counter resets, reasons, removal, Redis down,
 * pipeline targets, and core-data change events. The JSON is checked by parsing it back
 * with libbson.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <bson/bson.h>
#include <math.h>
#include <stdlib.h>

#include "dash_model.h"
#include "at_time.h"

#define T0 1800000000000LL /* a wall-clock ms at a minute boundary */

static dash_model_t *model(void)
{
    dash_model_opts_t o = {.window_min = 60, .history_len = 10, .max_campaigns = 3, .poll_ms = 1000};
    dash_model_t *m = dash_model_new(&o);
    assert_non_null(m);
    return m;
}

static const char *DOC = "{\"id\":\"c1\",\"name\":\"Spring sale\",\"advertiser_name\":\"Acme\",\"status\":\"active\","
                         "\"budget_micros\":1000000,\"pricing\":\"cpm\",\"price_micros\":2500}";

/* Feeds one campaign with the given minute counters (events, imp, click, bot rejections). */
static void feed(dash_model_t *m, const char *id, int64_t minute, const char *events, const char *imp,
                 const char *click, const char *bot)
{
    dash_campaign_t *c = dash_model_campaign(m, id);
    assert_non_null(c);
    dash_model_campaign_meta(c, 3, false, DOC, strlen(DOC));
    dash_model_campaign_spend(c, 2500, false);
    const char *f[] = {"events", "imp", "click", "rejected", "rejected:bot", "bogus"};
    const char *v[] = {events, imp, click, bot, bot, "99"};
    dash_model_campaign_stats(m, c, minute, f, v, 6);
}

static bson_t *snapshot(dash_model_t *m)
{
    size_t len;
    char *json = dash_model_json(m, 1 << 20, &len);
    assert_non_null(json);
    bson_error_t err;
    bson_t *b = bson_new_from_json((const uint8_t *)json, (ssize_t)len, &err);
    if (b == NULL)
        fail_msg("snapshot is not JSON: %s\n%s", err.message, json);
    free(json);
    return b;
}

static double num(const bson_t *b, const char *path)
{
    bson_iter_t it, f;
    bson_iter_init(&it, b);
    if (!bson_iter_find_descendant(&it, path, &f))
        fail_msg("no %s", path);
    if (BSON_ITER_HOLDS_NULL(&f))
        return NAN;
    return bson_iter_as_double(&f);
}

static const char *str(const bson_t *b, const char *path)
{
    bson_iter_t it, f;
    bson_iter_init(&it, b);
    if (!bson_iter_find_descendant(&it, path, &f) || !BSON_ITER_HOLDS_UTF8(&f))
        fail_msg("no string %s", path);
    return bson_iter_utf8(&f, NULL);
}

static bool boolean(const bson_t *b, const char *path)
{
    bson_iter_t it, f;
    bson_iter_init(&it, b);
    if (!bson_iter_find_descendant(&it, path, &f) || !BSON_ITER_HOLDS_BOOL(&f))
        fail_msg("no bool %s", path);
    return bson_iter_bool(&f);
}

static void test_dash_model_json__counts_ctr_and_first_rate_unknown(void **state)
{
    (void)state;
    dash_model_t *m = model();
    int64_t min = dash_minute_of_ms(T0);
    dash_model_begin(m, T0);
    feed(m, "c1", min, "10", "8", "2", "1");
    feed(m, "c1", min - 1, "5", "4", "0", "0");
    dash_model_end(m, true, NULL);
    bson_t *b = snapshot(m);
    assert_string_equal(str(b, "campaigns.0.id"), "c1");
    assert_string_equal(str(b, "campaigns.0.name"), "Spring sale");
    assert_string_equal(str(b, "campaigns.0.status"), "active");
    assert_true(num(b, "campaigns.0.events") == 15);
    assert_true(num(b, "campaigns.0.imp") == 12);
    assert_true(num(b, "campaigns.0.click") == 2);
    assert_true(fabs(num(b, "campaigns.0.ctr") - 2.0 / 12.0) < 1e-5);
    assert_true(num(b, "campaigns.0.rejected_by_reason.bot") == 1);
    assert_true(num(b, "campaigns.0.budget_micros") == 1000000);
    assert_true(num(b, "campaigns.0.spend_micros") == 2500);
    assert_true(isnan(num(b, "campaigns.0.events_per_s"))); /* first poll: no rate yet */
    assert_true(num(b, "totals.imp") == 12);
    assert_true(boolean(b, "redis.up"));
    bson_destroy(b);
    dash_model_destroy(m);
}

static void test_dash_model_json__rate_from_deltas_and_minute_rollover(void **state)
{
    (void)state;
    dash_model_t *m = model();
    int64_t min = dash_minute_of_ms(T0);
    dash_model_begin(m, T0);
    feed(m, "c1", min, "100", "0", "0", "0");
    dash_model_end(m, true, NULL);

    dash_model_begin(m, T0 + 2000); /* 2 s later: +50 events */
    feed(m, "c1", min, "150", "0", "0", "0");
    dash_model_end(m, true, NULL);
    bson_t *b = snapshot(m);
    assert_true(num(b, "campaigns.0.events_per_s") == 25);
    assert_true(num(b, "totals.events_per_s") == 25);
    assert_true(num(b, "history.events_per_s.9") == 25); /* newest point last */
    bson_destroy(b);

    /* next minute: the old minute grew by 10, the new one has 20 */
    dash_model_begin(m, T0 + 62000);
    feed(m, "c1", min, "160", "0", "0", "0");
    feed(m, "c1", min + 1, "20", "0", "0", "0");
    dash_model_end(m, true, NULL);
    b = snapshot(m);
    assert_true(num(b, "campaigns.0.events_per_s") == 30.0 / 60.0);
    assert_true(num(b, "campaigns.0.events") == 180);
    bson_destroy(b);
    dash_model_destroy(m);
}

static void test_dash_model_json__counter_reset_counts_new_value(void **state)
{
    (void)state;
    dash_model_t *m = model();
    int64_t min = dash_minute_of_ms(T0);
    dash_model_begin(m, T0);
    feed(m, "c1", min, "500", "0", "0", "0");
    dash_model_end(m, true, NULL);
    dash_model_begin(m, T0 + 1000); /* Redis flushed, 7 new events since */
    feed(m, "c1", min, "7", "0", "0", "0");
    dash_model_end(m, true, NULL);
    bson_t *b = snapshot(m);
    assert_true(num(b, "campaigns.0.events_per_s") == 7);
    assert_true(num(b, "campaigns.0.events") == 7);
    bson_destroy(b);
    dash_model_destroy(m);
}

static void test_dash_model_json__window_excludes_old_minutes(void **state)
{
    (void)state;
    dash_model_t *m = model();
    int64_t min = dash_minute_of_ms(T0);
    dash_model_begin(m, T0);
    feed(m, "c1", min - 60, "1000", "1000", "0", "0"); /* just outside a 60-minute window */
    feed(m, "c1", min - 59, "1", "1", "0", "0");
    dash_model_end(m, true, NULL);
    bson_t *b = snapshot(m);
    assert_true(num(b, "campaigns.0.imp") == 1);
    assert_true(isnan(num(b, "campaigns.0.ctr")) == false);
    bson_destroy(b);
    dash_model_destroy(m);
}

static void test_dash_model_end__removed_deleted_and_truncated(void **state)
{
    (void)state;
    dash_model_t *m = model();
    int64_t min = dash_minute_of_ms(T0);
    dash_model_begin(m, T0);
    feed(m, "c1", min, "1", "0", "0", "0");
    feed(m, "c2", min, "1", "0", "0", "0");
    dash_campaign_t *c3 = dash_model_campaign(m, "c3");
    dash_model_campaign_meta(c3, 9, true, NULL, 0); /* tombstone */
    assert_null(dash_model_campaign(m, "c4"));      /* max 3 */
    assert_null(dash_model_campaign(m, "bad id"));
    dash_model_end(m, true, NULL);
    bson_t *b = snapshot(m);
    assert_true(boolean(b, "truncated"));
    assert_true(num(b, "totals.campaigns") == 2);
    bson_destroy(b);

    dash_model_begin(m, T0 + 1000); /* c1 left the set */
    feed(m, "c2", min, "1", "0", "0", "0");
    dash_model_end(m, true, NULL);
    b = snapshot(m);
    assert_true(num(b, "totals.campaigns") == 1);
    assert_string_equal(str(b, "campaigns.0.id"), "c2");
    assert_false(boolean(b, "truncated"));
    bson_destroy(b);
    dash_model_destroy(m);
}

static void test_dash_model_end__redis_down_keeps_counts_and_gaps(void **state)
{
    (void)state;
    dash_model_t *m = model();
    int64_t min = dash_minute_of_ms(T0);
    dash_model_begin(m, T0);
    feed(m, "c1", min, "10", "3", "0", "0");
    dash_model_end(m, true, NULL);
    dash_model_begin(m, T0 + 1000);
    dash_model_end(m, false, "redis 127.0.0.1:1: Connection refused");
    bson_t *b = snapshot(m);
    assert_false(boolean(b, "redis.up"));
    assert_string_equal(str(b, "redis.error"), "redis 127.0.0.1:1: Connection refused");
    assert_true(num(b, "campaigns.0.imp") == 3);
    assert_true(isnan(num(b, "history.events_per_s.9")));
    bson_destroy(b);
    dash_model_destroy(m);
}

static void test_dash_model_target__up_down_rates_and_lag(void **state)
{
    (void)state;
    dash_model_t *m = model();
    assert_int_equal(dash_model_add_target(m, "collector", "http://127.0.0.1:8080/metrics"), 0);
    assert_int_equal(dash_model_add_target(m, "enricher", "http://127.0.0.1:8081/metrics"), 0);
    const char *col1 = "adtrack_spool_bytes 0\nadtrack_http_requests_total{code=\"200\"} 100\n";
    const char *col2 =
        "adtrack_spool_bytes 2048\nadtrack_spool_active 1\nadtrack_http_requests_total{code=\"200\"} 300\n";
    const char *enr = "adtrack_enricher_events_total{outcome=\"valid\"} 10\nadtrack_enricher_consumer_lag 42\n";
    dash_model_target(m, 0, true, col1, strlen(col1), NULL, T0);
    dash_model_target(m, 0, true, col2, strlen(col2), NULL, T0 + 2000);
    dash_model_target(m, 1, false, NULL, 0, "connect: Connection refused", T0 + 2000);
    bson_t *b = snapshot(m);
    assert_true(num(b, "pipeline.up") == 1);
    assert_true(num(b, "pipeline.down") == 1);
    assert_string_equal(str(b, "pipeline.targets.0.kind"), "collector");
    assert_true(num(b, "pipeline.targets.0.requests_per_s") == 100);
    assert_true(num(b, "pipeline.spool_bytes") == 2048);
    assert_true(boolean(b, "pipeline.spool_active"));
    assert_false(boolean(b, "pipeline.targets.1.up"));
    assert_string_equal(str(b, "pipeline.targets.1.error"), "connect: Connection refused");
    assert_true(isnan(num(b, "pipeline.consumer_lag")));
    bson_destroy(b);
    dash_model_target(m, 1, true, enr, strlen(enr), NULL, T0 + 3000);
    b = snapshot(m);
    assert_true(num(b, "pipeline.consumer_lag") == 42);
    assert_string_equal(str(b, "pipeline.targets.1.kind"), "enricher");
    bson_destroy(b);
    dash_model_destroy(m);
}

static void test_dash_change_json__campaign_budget_and_garbage(void **state)
{
    (void)state;
    const char *put = "{\"kind\":\"campaign\",\"id\":\"c1\",\"version\":17,\"op\":\"put\","
                      "\"doc\":{\"id\":\"c1\",\"name\":\"Spring \\\"sale\\\"\",\"status\":\"paused\"}}";
    size_t len;
    char *j = dash_change_json(put, strlen(put), 5, &len);
    assert_non_null(j);
    assert_string_equal(j, "{\"kind\":\"campaign\",\"id\":\"c1\",\"op\":\"put\",\"version\":17,\"status\":\"paused\","
                           "\"name\":\"Spring \\\"sale\\\"\",\"ts_ms\":5}");
    free(j);
    const char *budget = "{\"kind\":\"budget\",\"id\":\"c1\",\"version\":22,\"op\":\"exhausted\"}";
    j = dash_change_json(budget, strlen(budget), 6, &len);
    assert_string_equal(j, "{\"kind\":\"budget\",\"id\":\"c1\",\"op\":\"exhausted\",\"version\":22,\"ts_ms\":6}");
    free(j);
    assert_null(dash_change_json("not json", 8, 0, &len));
    assert_null(dash_change_json("{\"id\":\"c1\"}", 11, 0, &len));
    assert_null(dash_change_json("[1,2]", 5, 0, &len));
}

static void test_dash_minute_key__utc(void **state)
{
    (void)state;
    char k[16];
    at_utc_minute_key(dash_minute_of_ms(1795275315432LL) * 60000, k); /* 2026-11-21T15:35:15Z */
    assert_string_equal(k, "202611211535");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dash_model_json__counts_ctr_and_first_rate_unknown),
        cmocka_unit_test(test_dash_model_json__rate_from_deltas_and_minute_rollover),
        cmocka_unit_test(test_dash_model_json__counter_reset_counts_new_value),
        cmocka_unit_test(test_dash_model_json__window_excludes_old_minutes),
        cmocka_unit_test(test_dash_model_end__removed_deleted_and_truncated),
        cmocka_unit_test(test_dash_model_end__redis_down_keeps_counts_and_gaps),
        cmocka_unit_test(test_dash_model_target__up_down_rates_and_lag),
        cmocka_unit_test(test_dash_change_json__campaign_budget_and_garbage),
        cmocka_unit_test(test_dash_minute_key__utc),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
