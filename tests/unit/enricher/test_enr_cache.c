/* Unit tests for enricher/enr_cache.c: versioning (stale ignored, tombstones, fetch vs
 * change rules), TTL expiry, change messages and document parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "enr_cache.h"

static char *camp_json(const char *name, const char *status)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf),
             "{\"id\":\"c1\",\"advertiser\":\"a1\",\"advertiser_name\":\"A\",\"name\":\"%s\",\"status\":\"%s\","
             "\"start\":\"2026-01-01T00:00:00Z\",\"end\":\"2027-01-01T00:00:00Z\",\"budget_micros\":100,"
             "\"pricing\":\"cpc\",\"price_micros\":10,\"publishers\":[]}",
             name, status);
    return buf;
}

static int put(enr_cache_t *c, uint64_t version, const char *name, enr_source_t src, int64_t now)
{
    at_err_t err;
    const char *j = camp_json(name, "active");
    return enr_cache_apply(c, ENR_CAMPAIGN, "c1", 2, version, false, j, strlen(j), src, now, &err);
}

static const char *name_of(enr_cache_t *c)
{
    const enr_entry_t *e = enr_cache_get(c, ENR_CAMPAIGN, "c1", 2);
    return e != NULL && e->u.campaign != NULL ? e->u.campaign->name : NULL;
}

static void test_enr_cache_apply__newer_wins_stale_ignored(void **state)
{
    AT_UNUSED(state);
    enr_cache_t *c = enr_cache_new(60000);
    assert_int_equal(put(c, 5, "v5", ENR_SRC_CHANGE, 0), ENR_APPLIED);
    assert_int_equal(put(c, 7, "v7", ENR_SRC_CHANGE, 0), ENR_APPLIED);
    assert_int_equal(put(c, 6, "v6", ENR_SRC_CHANGE, 0), ENR_STALE);
    assert_int_equal(put(c, 7, "v7b", ENR_SRC_CHANGE, 0), ENR_STALE); /* equal: ignored */
    assert_string_equal(name_of(c), "v7");
    /* A fetch of the same version is accepted (and refreshes the age); an older one not. */
    assert_int_equal(put(c, 7, "v7f", ENR_SRC_FETCH, 0), ENR_APPLIED);
    assert_int_equal(put(c, 3, "v3", ENR_SRC_FETCH, 0), ENR_STALE);
    assert_string_equal(name_of(c), "v7f");
    enr_cache_destroy(c);
}

static void test_enr_cache_apply__tombstone_keeps_version(void **state)
{
    AT_UNUSED(state);
    enr_cache_t *c = enr_cache_new(60000);
    at_err_t err;
    assert_int_equal(put(c, 5, "v5", ENR_SRC_CHANGE, 0), ENR_APPLIED);
    assert_int_equal(enr_cache_apply(c, ENR_CAMPAIGN, "c1", 2, 8, true, NULL, 0, ENR_SRC_CHANGE, 0, &err), ENR_APPLIED);
    const enr_entry_t *e = enr_cache_get(c, ENR_CAMPAIGN, "c1", 2);
    assert_true(e->deleted);
    assert_null(e->u.campaign);
    /* A late, older put cannot bring it back. */
    assert_int_equal(put(c, 6, "late", ENR_SRC_CHANGE, 0), ENR_STALE);
    assert_true(enr_cache_get(c, ENR_CAMPAIGN, "c1", 2)->deleted);
    /* A newer one does (re-created). */
    assert_int_equal(put(c, 9, "again", ENR_SRC_CHANGE, 0), ENR_APPLIED);
    assert_false(enr_cache_get(c, ENR_CAMPAIGN, "c1", 2)->deleted);
    assert_string_equal(name_of(c), "again");
    enr_cache_destroy(c);
}

static void test_enr_cache_fresh__ttl_expiry(void **state)
{
    AT_UNUSED(state);
    enr_cache_t *c = enr_cache_new(1000);
    assert_int_equal(put(c, 5, "v5", ENR_SRC_CHANGE, 10000), ENR_APPLIED);
    const enr_entry_t *e = enr_cache_get(c, ENR_CAMPAIGN, "c1", 2);
    assert_true(enr_cache_fresh(c, e, 10999));
    assert_false(enr_cache_fresh(c, e, 11000)); /* expired: the worker refetches it */
    /* A refetch returning the same version refreshes the age. */
    assert_int_equal(put(c, 5, "v5", ENR_SRC_FETCH, 11000), ENR_APPLIED);
    assert_true(enr_cache_fresh(c, enr_cache_get(c, ENR_CAMPAIGN, "c1", 2), 11500));
    /* A refetch older than the cached entry is ignored but also confirms it. */
    assert_int_equal(put(c, 4, "v4", ENR_SRC_FETCH, 12500), ENR_STALE);
    assert_true(enr_cache_fresh(c, enr_cache_get(c, ENR_CAMPAIGN, "c1", 2), 13000));
    assert_string_equal(name_of(c), "v5");
    assert_false(enr_cache_fresh(c, NULL, 0));
    enr_cache_destroy(c);
}

static void test_enr_cache_apply__absent_replaced_by_real(void **state)
{
    AT_UNUSED(state);
    enr_cache_t *c = enr_cache_new(60000);
    at_err_t err;
    assert_int_equal(enr_cache_apply(c, ENR_CAMPAIGN, "c1", 2, 0, false, NULL, 0, ENR_SRC_FETCH, 0, &err), ENR_APPLIED);
    const enr_entry_t *e = enr_cache_get(c, ENR_CAMPAIGN, "c1", 2);
    assert_non_null(e);
    assert_int_equal(e->version, 0);
    assert_null(e->u.campaign);
    assert_int_equal(put(c, 1, "new", ENR_SRC_CHANGE, 0), ENR_APPLIED);
    assert_string_equal(name_of(c), "new");
    enr_cache_destroy(c);
}

static void test_enr_cache_apply_change__messages(void **state)
{
    AT_UNUSED(state);
    enr_cache_t *c = enr_cache_new(60000);
    at_err_t err;
    char msg[2048];
    snprintf(msg, sizeof(msg), "{\"kind\":\"campaign\",\"id\":\"c1\",\"version\":17,\"op\":\"put\",\"doc\":%s}",
             camp_json("from-pubsub", "paused"));
    assert_int_equal(enr_cache_apply_change(c, msg, strlen(msg), 0, &err), ENR_APPLIED);
    const enr_entry_t *e = enr_cache_get(c, ENR_CAMPAIGN, "c1", 2);
    assert_false(e->u.campaign->active);
    assert_string_equal(e->u.campaign->name, "from-pubsub");
    /* Out of order: an older put is ignored. */
    snprintf(msg, sizeof(msg), "{\"kind\":\"campaign\",\"id\":\"c1\",\"version\":16,\"op\":\"put\",\"doc\":%s}",
             camp_json("older", "active"));
    assert_int_equal(enr_cache_apply_change(c, msg, strlen(msg), 0, &err), ENR_STALE);
    /* Budget changes. */
    const char *ex = "{\"kind\":\"budget\",\"id\":\"c1\",\"version\":22,\"op\":\"exhausted\"}";
    assert_int_equal(enr_cache_apply_change(c, ex, strlen(ex), 0, &err), ENR_APPLIED);
    assert_true(enr_cache_get(c, ENR_CAMPAIGN, "c1", 2)->exhausted);
    const char *old = "{\"kind\":\"budget\",\"id\":\"c1\",\"version\":21,\"op\":\"replenished\"}";
    assert_int_equal(enr_cache_apply_change(c, old, strlen(old), 0, &err), ENR_STALE);
    const char *rep = "{\"kind\":\"budget\",\"id\":\"c1\",\"version\":25,\"op\":\"replenished\"}";
    assert_int_equal(enr_cache_apply_change(c, rep, strlen(rep), 0, &err), ENR_APPLIED);
    assert_false(enr_cache_get(c, ENR_CAMPAIGN, "c1", 2)->exhausted);
    /* Publisher delete = tombstone. */
    const char *pd = "{\"kind\":\"publisher\",\"id\":\"p9\",\"version\":30,\"op\":\"delete\"}";
    assert_int_equal(enr_cache_apply_change(c, pd, strlen(pd), 0, &err), ENR_APPLIED);
    assert_true(enr_cache_get(c, ENR_PUBLISHER, "p9", 2)->deleted);
    /* Malformed messages. */
    const char *bad[] = {"not json", "{\"kind\":\"campaign\",\"id\":\"c1\",\"op\":\"put\"}",
                         "{\"kind\":\"thing\",\"id\":\"c1\",\"version\":40,\"op\":\"put\",\"doc\":{}}",
                         "{\"kind\":\"campaign\",\"id\":\"c1\",\"version\":40,\"op\":\"put\"}",
                         "{\"kind\":\"campaign\",\"id\":\"c1\",\"version\":40,\"op\":\"put\",\"doc\":{\"status\":\"x\"}}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(enr_cache_apply_change(c, bad[i], strlen(bad[i]), 0, &err), -1);
    /* The bad put left the entry as it was. */
    assert_string_equal(enr_cache_get(c, ENR_CAMPAIGN, "c1", 2)->u.campaign->name, "from-pubsub");
    enr_cache_destroy(c);
}

static void test_enr_campaign_from_bson__fields_and_errors(void **state)
{
    AT_UNUSED(state);
    bson_error_t berr;
    at_err_t err;
    const char *j = "{\"advertiser\":\"a\",\"status\":\"active\",\"start\":\"2026-11-01T00:00:00Z\","
                    "\"end\":\"2026-12-31T23:59:59.500Z\",\"budget_micros\":5000000000,\"pricing\":\"cpm\","
                    "\"price_micros\":2500000,\"publishers\":[\"p1\",\"p2\"]}";
    bson_t *d = bson_new_from_json((const uint8_t *)j, -1, &berr);
    enr_campaign_t *cp = enr_campaign_from_bson(d, &err);
    assert_non_null(cp);
    assert_int_equal(cp->budget_micros, INT64_C(5000000000));
    assert_int_equal(cp->start_ms, INT64_C(1793491200000));
    assert_int_equal(cp->end_ms, INT64_C(1798761599500));
    assert_int_equal(cp->npublishers, 2);
    assert_string_equal(cp->publishers[1], "p2");
    assert_string_equal(cp->name, "");
    enr_campaign_free(cp);
    bson_destroy(d);
    const char *bad[] = {
        "{\"status\":\"active\",\"start\":\"x\",\"end\":\"2026-12-31T23:59:59Z\",\"budget_micros\":1,\"pricing\":\"cpm\",\"price_micros\":1}",
        "{\"status\":\"active\",\"start\":\"2026-11-01T00:00:00Z\",\"end\":\"2026-12-31T23:59:59Z\",\"budget_micros\":-1,\"pricing\":\"cpm\",\"price_micros\":1}",
        "{\"status\":\"active\",\"start\":\"2026-11-01T00:00:00Z\",\"end\":\"2026-12-31T23:59:59Z\",\"budget_micros\":1,\"pricing\":\"cpa\",\"price_micros\":1}",
        "{\"start\":\"2026-11-01T00:00:00Z\",\"end\":\"2026-12-31T23:59:59Z\",\"budget_micros\":1,\"pricing\":\"cpm\",\"price_micros\":1}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        d = bson_new_from_json((const uint8_t *)bad[i], -1, &berr);
        assert_non_null(d);
        assert_null(enr_campaign_from_bson(d, &err));
        bson_destroy(d);
    }
}

static void test_enr_cache__many_entries(void **state)
{
    AT_UNUSED(state);
    enr_cache_t *c = enr_cache_new(60000);
    at_err_t err;
    char id[32];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(id, sizeof(id), "camp-%d", i);
        assert_int_equal(enr_cache_apply(c, ENR_CAMPAIGN, id, (size_t)n, 0, false, NULL, 0, ENR_SRC_FETCH, 0, &err),
                         ENR_APPLIED);
    }
    assert_int_equal(enr_cache_count(c, ENR_CAMPAIGN), 5000);
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(id, sizeof(id), "camp-%d", i);
        assert_non_null(enr_cache_get(c, ENR_CAMPAIGN, id, (size_t)n));
        assert_null(enr_cache_get(c, ENR_PUBLISHER, id, (size_t)n));
    }
    enr_cache_destroy(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enr_cache_apply__newer_wins_stale_ignored),
        cmocka_unit_test(test_enr_cache_apply__tombstone_keeps_version),
        cmocka_unit_test(test_enr_cache_fresh__ttl_expiry),
        cmocka_unit_test(test_enr_cache_apply__absent_replaced_by_real),
        cmocka_unit_test(test_enr_cache_apply_change__messages),
        cmocka_unit_test(test_enr_campaign_from_bson__fields_and_errors),
        cmocka_unit_test(test_enr_cache__many_entries),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
