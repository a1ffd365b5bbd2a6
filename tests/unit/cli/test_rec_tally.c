/* Unit tests for cli/rec_tally.c and cli/rec_map.c: the pure part of `adtrack rollups
 * reconcile` (hour ranges, the placement of rejected events, the recount, the sum of the
 * rollups, the comparison and the correction). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rec_map.h"
#include "rec_tally.h"

#define H10 INT64_C(1795514400000) /* 2026-11-24T10:00:00Z */

static bson_t *doc(const char *json)
{
    bson_error_t e;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &e);
    if (b == NULL)
        fail_msg("bad test JSON: %s: %s", e.message, json);
    return b;
}

static void add(rec_tally_t *t, int (*fn)(rec_tally_t *, const bson_t *, at_err_t *), const char *json, int want)
{
    bson_t *b = doc(json);
    at_err_t err = {0};
    int rc = fn(t, b, &err);
    if (rc != want)
        fail_msg("%s: got %d, want %d (%s)", json, rc, want, err.msg);
    bson_destroy(b);
}

static void test_rec_parse_hour__forms(void **state)
{
    (void)state;
    int64_t ms;
    at_err_t err = {0};
    assert_int_equal(rec_parse_hour("2026-11-24T10", &ms, &err), 0);
    assert_int_equal(ms, H10);
    assert_int_equal(rec_parse_hour("2026-11-24T10Z", &ms, &err), 0);
    assert_int_equal(ms, H10);
    assert_int_equal(rec_parse_hour("2026-11-24T10:00:00Z", &ms, &err), 0);
    assert_int_equal(ms, H10);
    assert_int_equal(rec_parse_hour("2026-11-24T10:00", &ms, &err), 0);
    assert_int_equal(ms, H10);
    assert_int_equal(rec_parse_hour("2026-11-24", &ms, &err), 0);
    assert_int_equal(ms, H10 - 10 * REC_HOUR_MS);
    assert_int_equal(rec_parse_hour("2024-02-29T23", &ms, &err), 0);
    char s[REC_HOUR_STR_LEN + 1];
    rec_hour_str(ms + 59 * 60000, s);
    assert_string_equal(s, "2024-02-29T23");
    rec_hour_str(H10, s);
    assert_string_equal(s, "2026-11-24T10");
}

static void test_rec_parse_hour__refuses_what_is_not_a_whole_hour(void **state)
{
    (void)state;
    const char *bad[] = {"",          "2026-11-24T10:30", "2026-11-24T24", "2026-02-30", "2026-13-01",
                         "26-11-24",  "2026/11/24",       "2026-11-24T1",  "2026-11-24 10", "2026-11-24T10:00:01",
                         "yesterday", "2026-11-24T10ZZ"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t ms = -1;
        at_err_t err = {0};
        if (rec_parse_hour(bad[i], &ms, &err) != -1)
            fail_msg("'%s' was accepted", bad[i]);
        assert_non_null(strstr(err.msg, "expected"));
    }
}

static void test_rec_reason_keeps_dims__campaign_known_reasons_only(void **state)
{
    (void)state;
    assert_true(rec_reason_keeps_dims("bot"));
    assert_true(rec_reason_keeps_dims("duplicate_order"));
    assert_true(rec_reason_keeps_dims("wrong_advertiser"));
    assert_true(rec_reason_keeps_dims("budget_exhausted"));
    assert_true(rec_reason_keeps_dims("campaign_inactive"));
    assert_true(rec_reason_keeps_dims("unknown_publisher"));
    assert_true(rec_reason_keeps_dims("publisher_not_allowed"));
    assert_false(rec_reason_keeps_dims("unknown_campaign"));
    assert_false(rec_reason_keeps_dims("duplicate_event"));
    assert_false(rec_reason_keeps_dims("malformed_json"));
    assert_false(rec_reason_keeps_dims("invalid_field"));
    assert_false(rec_reason_keeps_dims(""));
}

/* Collects what rec_tally_compare reports. */
typedef struct seen_s {
    char keys[16][128];
    char fields[16][256];
    bool repairable[16];
    size_t n;
    bson_t *corr[16];
} seen_t;

static void on_drift(const rec_group_t *g, const rec_diff_t *d, size_t n, bool repairable, void *arg)
{
    seen_t *s = arg;
    assert_true(s->n < 16);
    snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", g->key);
    size_t off = 0;
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(s->fields[s->n] + off, sizeof(s->fields[0]) - off, "%s%s:%lld/%lld", i ? " " : "",
                                d[i].field, (long long)d[i].rollup, (long long)d[i].recount);
    s->repairable[s->n] = repairable;
    s->corr[s->n] = rec_correction_new(g, H10 + 7200000);
    s->n++;
}

static void seen_free(seen_t *s)
{
    for (size_t i = 0; i < s->n; i++)
        bson_destroy(s->corr[i]);
}

#define EV(e, c, uid, price, minute)                                                                              \
    "{\"_id\":\"" e c uid minute "\",\"e\":\"" e "\",\"c\":\"" c "\",\"cr\":\"cr-1\",\"p\":\"pub-1\",\"pl\":\"top\","   \
    "\"uid\":\"" uid "\",\"price_micros\":{\"$numberLong\":\"" price "\"},\"advertiser\":\"adv-1\","              \
    "\"ts\":{\"$date\":\"2026-11-24T10:" minute ":00Z\"}}"

static void test_rec_tally__recount_groups_places_and_counts(void **state)
{
    (void)state;
    rec_tally_t *t = rec_tally_new(H10, H10 + REC_HOUR_MS);
    add(t, rec_tally_add_event, EV("imp", "camp-1", "u1", "1000", "01"), 1);
    add(t, rec_tally_add_event, EV("imp", "camp-1", "u1", "1000", "02"), 1);
    add(t, rec_tally_add_event, EV("click", "camp-1", "u2", "50000", "03"), 1);
    add(t, rec_tally_add_event,
        "{\"e\":\"conv\",\"c\":\"camp-1\",\"cr\":\"cr-1\",\"p\":\"pub-1\",\"pl\":\"top\",\"payout_micros\":7,"
        "\"ts\":{\"$date\":\"2026-11-24T10:59:59.999Z\"}}",
        1);
    /* outside the hour, and without a date ts: not counted */
    add(t, rec_tally_add_event, "{\"e\":\"imp\",\"c\":\"camp-1\",\"ts\":{\"$date\":\"2026-11-24T11:00:00Z\"}}", 0);
    add(t, rec_tally_add_event, "{\"e\":\"imp\",\"c\":\"camp-1\",\"ts\":\"2026-11-24T10:10:00Z\"}", 0);
    /* a bot keeps its dimensions, an unknown campaign goes to the empty ones, no ts: nowhere */
    add(t, rec_tally_add_rejected,
        "{\"reason\":\"bot\",\"c\":\"camp-1\",\"cr\":\"cr-1\",\"p\":\"pub-1\",\"pl\":\"top\","
        "\"ts\":{\"$date\":\"2026-11-24T10:05:00Z\"}}",
        1);
    add(t, rec_tally_add_rejected,
        "{\"reason\":\"unknown_campaign\",\"c\":\"camp-zz\",\"p\":\"pub-1\",\"ts\":{\"$date\":\"2026-11-24T10:06:00Z\"}}",
        1);
    add(t, rec_tally_add_rejected, "{\"reason\":\"malformed_json\",\"raw\":\"{\"}", 0);
    assert_int_equal(rec_tally_groups(t), 2);
    assert_int_equal(rec_tally_ignored(t), 3);

    /* no rollups at all: both groups drift, every counter named */
    seen_t s = {0};
    assert_int_equal(rec_tally_compare(t, on_drift, &s), 2);
    /* in key order: '|' sorts after the letters */
    assert_string_equal(s.keys[1], "2026-11-24T10||||");
    assert_string_equal(s.fields[1], "rejected:0/1 rej.unknown_campaign:0/1");
    assert_string_equal(s.keys[0], "2026-11-24T10|camp-1|cr-1|pub-1|top");
    assert_string_equal(s.fields[0], "imp:0/2 click:0/1 conv:0/1 spend:0/52000 payout:0/7 rejected:0/1 rej.bot:0/1 u:0/2");
    assert_true(s.repairable[0]);

    /* the correction carries the whole recount; added to the tally, nothing drifts */
    char *json = bson_as_relaxed_extended_json(s.corr[0], NULL);
    assert_non_null(strstr(json, "\"_id\" : \"2026-11-24T10|camp-1|cr-1|pub-1|top|-1\""));
    assert_non_null(strstr(json, "\"adv\" : \"adv-1\""));
    assert_non_null(strstr(json, "\"k\" : -1"));
    assert_null(strstr(json, "\"o\""));
    assert_non_null(strstr(json, "\"imp\" : 2"));
    assert_non_null(strstr(json, "\"spend\" : 52000"));
    assert_non_null(strstr(json, "\"rej\" : { \"bot\" : 1 }"));
    bson_free(json);
    at_err_t err = {0};
    assert_int_equal(rec_tally_add_rollup(t, s.corr[0], &err), 1);
    assert_int_equal(rec_tally_add_rollup(t, s.corr[1], &err), 1);
    seen_t s2 = {0};
    assert_int_equal(rec_tally_compare(t, on_drift, &s2), 0);
    seen_free(&s);
    rec_tally_free(t);
}

#define ROLL(k, imp, spend, extra)                                                                                \
    "{\"_id\":\"2026-11-24T10|camp-1|cr-1|pub-1|top|" k "\",\"h\":{\"$date\":\"2026-11-24T10:00:00Z\"},"            \
    "\"c\":\"camp-1\",\"adv\":\"adv-1\",\"cr\":\"cr-1\",\"p\":\"pub-1\",\"pl\":\"top\",\"k\":" k ",\"imp\":" imp         \
    ",\"spend\":" spend extra "}"

static void test_rec_tally__sums_every_k_and_corrects_to_the_recount(void **state)
{
    (void)state;
    rec_tally_t *t = rec_tally_new(H10, H10 + REC_HOUR_MS);
    for (int i = 0; i < 5; i++)
        add(t, rec_tally_add_event, EV("imp", "camp-1", "", "100", "10"), 1);
    /* partitions 0 and 3 hold 2 + 4 = 6 (one doubled), spend 600 instead of 500; an old
     * correction said -3 on imp; a document of another hour is not this tally's */
    add(t, rec_tally_add_rollup, ROLL("0", "2", "200", ",\"rej\":{\"bot\":0}"), 1);
    add(t, rec_tally_add_rollup, ROLL("3", "4", "400", ""), 1);
    add(t, rec_tally_add_rollup, ROLL("-1", "-3", "0", ",\"u\":{\"5\":2}"), 1);
    add(t, rec_tally_add_rollup, "{\"_id\":\"2026-11-24T11|camp-1|cr-1|pub-1|top|0\",\"k\":0,\"imp\":9}", 0);
    seen_t s = {0};
    assert_int_equal(rec_tally_compare(t, on_drift, &s), 1);
    assert_string_equal(s.fields[0], "imp:3/5 spend:600/500");
    /* correction = recount - others = 5 - 6 = -1; spend 500 - 600 = -100; u keeps register 5 */
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, s.corr[0], "imp"));
    assert_int_equal(bson_iter_as_int64(&it), -1);
    assert_true(bson_iter_init_find(&it, s.corr[0], "spend"));
    assert_int_equal(bson_iter_as_int64(&it), -100);
    assert_true(bson_iter_init_find(&it, s.corr[0], "u"));
    char *json = bson_as_relaxed_extended_json(s.corr[0], NULL);
    assert_non_null(strstr(json, "\"u\" : { \"5\" : 2 }"));
    bson_free(json);
    rec_tally_free(t);

    /* the same documents with the new correction in place of the old one: no drift */
    t = rec_tally_new(H10, H10 + REC_HOUR_MS);
    for (int i = 0; i < 5; i++)
        add(t, rec_tally_add_event, EV("imp", "camp-1", "", "100", "10"), 1);
    add(t, rec_tally_add_rollup, ROLL("0", "2", "200", ""), 1);
    add(t, rec_tally_add_rollup, ROLL("3", "4", "400", ""), 1);
    at_err_t err = {0};
    assert_int_equal(rec_tally_add_rollup(t, s.corr[0], &err), 1);
    seen_t s2 = {0};
    assert_int_equal(rec_tally_compare(t, on_drift, &s2), 0);
    seen_free(&s);
    rec_tally_free(t);
}

static void test_rec_tally__malformed_rollups_name_id_and_field(void **state)
{
    (void)state;
    rec_tally_t *t = rec_tally_new(H10, H10 + REC_HOUR_MS);
    const struct {
        const char *json, *want;
    } bad[] = {
        {"{\"k\":0}", "without a string _id"},
        {"{\"_id\":\"2026-11-24T10|camp-1|0\",\"k\":0}", "_id: expected <YYYY-MM-DDTHH>|c|cr|p|pl|k"},
        {"{\"_id\":\"2026-11-24T10|camp-1||||0\"}", "k: expected an integer"},
        {"{\"_id\":\"2026-11-24T10|camp-1||||0\",\"k\":0,\"imp\":\"x\"}", "imp: expected an integer"},
        {"{\"_id\":\"2026-11-24T10|camp-1||||0\",\"k\":0,\"rej\":{\"bot\":true}}", "rej.bot: expected an integer"},
        {"{\"_id\":\"2026-11-24T10|camp-1||||0\",\"k\":0,\"u\":{\"4096\":1}}", "2026-11-24T10|camp-1||||0: u:"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        bson_t *b = doc(bad[i].json);
        at_err_t err = {0};
        assert_int_equal(rec_tally_add_rollup(t, b, &err), -1);
        if (strstr(err.msg, bad[i].want) == NULL)
            fail_msg("%s: '%s' does not say '%s'", bad[i].json, err.msg, bad[i].want);
        bson_destroy(b);
    }
    rec_tally_free(t);
}

static void test_rec_uniques_drift__three_standard_errors_plus_one(void **state)
{
    (void)state;
    assert_false(rec_uniques_drift(0, 0));
    assert_false(rec_uniques_drift(1, 0));
    assert_true(rec_uniques_drift(2, 0));
    assert_false(rec_uniques_drift(1069, 1000)); /* 3 x 2.3% x 1000 + 1 = 69.9 */
    assert_true(rec_uniques_drift(1071, 1000));
    assert_true(rec_uniques_drift(929, 1000));
}

/* A sketch that holds more than the events had: a correction cannot lower it. */
static void test_rec_tally__too_high_sketch_is_not_repairable(void **state)
{
    (void)state;
    rec_tally_t *t = rec_tally_new(H10, H10 + REC_HOUR_MS);
    add(t, rec_tally_add_event, EV("imp", "camp-1", "u1", "0", "10"), 1);
    add(t, rec_tally_add_rollup,
        ROLL("0", "1", "0", ",\"u\":{\"1\":1,\"2\":1,\"3\":1,\"4\":1,\"5\":1,\"6\":1,\"7\":1,\"8\":1}"), 1);
    seen_t s = {0};
    assert_int_equal(rec_tally_compare(t, on_drift, &s), 1);
    assert_string_equal(s.fields[0], "u:8/1");
    assert_false(s.repairable[0]);
    seen_free(&s);
    rec_tally_free(t);
}

static void test_rec_tally__exact_uniques_per_group(void **state)
{
    (void)state;
    rec_tally_t *t = rec_tally_new(H10, H10 + REC_HOUR_MS);
    char json[512];
    for (int i = 0; i < 3000; i++) {
        /* 1000 users, each seen 3 times, in camp-1; the same ids in camp-2 are other groups' */
        snprintf(json, sizeof(json),
                 "{\"e\":\"imp\",\"c\":\"camp-%d\",\"uid\":\"user-%d\",\"ts\":{\"$date\":\"2026-11-24T10:20:00Z\"}}",
                 1 + (i >= 2000), i % 1000);
        add(t, rec_tally_add_event, json, 1);
    }
    seen_t s = {0};
    assert_int_equal(rec_tally_compare(t, on_drift, &s), 2);
    assert_string_equal(s.fields[0], "imp:0/2000 u:0/1000");
    assert_string_equal(s.fields[1], "imp:0/1000 u:0/1000");
    seen_free(&s);
    rec_tally_free(t);
}

static void test_rec_map__add_get_put_and_grow(void **state)
{
    (void)state;
    rec_map_t *m = rec_map_new();
    char key[32];
    for (int i = 0; i < 10000; i++) {
        int n = snprintf(key, sizeof(key), "k%d", i);
        assert_int_equal(rec_map_add(m, key, (size_t)n, (void *)(intptr_t)(i + 1), NULL), 1);
    }
    void *old = NULL;
    assert_int_equal(rec_map_add(m, "k42", 3, (void *)1, &old), 0);
    assert_int_equal((intptr_t)old, 43);
    assert_int_equal(rec_map_count(m), 10000);
    assert_int_equal((intptr_t)rec_map_get(m, "k9999", 5), 10000);
    assert_null(rec_map_get(m, "k10000", 6));
    assert_null(rec_map_get(m, "k4", 1)); /* "k" is not "k4": the length is the key's */
    bool failed;
    assert_int_equal((intptr_t)rec_map_put(m, "k7", 2, (void *)99, &failed), 8);
    assert_int_equal((intptr_t)rec_map_get(m, "k7", 2), 99);
    rec_map_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rec_parse_hour__forms),
        cmocka_unit_test(test_rec_parse_hour__refuses_what_is_not_a_whole_hour),
        cmocka_unit_test(test_rec_reason_keeps_dims__campaign_known_reasons_only),
        cmocka_unit_test(test_rec_tally__recount_groups_places_and_counts),
        cmocka_unit_test(test_rec_tally__sums_every_k_and_corrects_to_the_recount),
        cmocka_unit_test(test_rec_tally__malformed_rollups_name_id_and_field),
        cmocka_unit_test(test_rec_uniques_drift__three_standard_errors_plus_one),
        cmocka_unit_test(test_rec_tally__too_high_sketch_is_not_repairable),
        cmocka_unit_test(test_rec_tally__exact_uniques_per_group),
        cmocka_unit_test(test_rec_map__add_get_put_and_grow),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
