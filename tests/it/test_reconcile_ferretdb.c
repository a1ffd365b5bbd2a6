/* LABELS: it;ferretdb */
/*
 * test_reconcile_ferretdb.c: `adtrack rollups reconcile --mongo` against a real MongoDB
 * wire-protocol server (FerretDB, scripts/ferretdb.sh): the scenario of reconcile_scenario.h
 * (matching rollups, five kinds of drift named with their values, --repair, idempotence, hours
 * outside the range untouched), then the correction documents as stored (k = -1, no o, the
 * values that make the sums right), and an unreachable server (exit 2).
 * Exits 77 (skipped) when FerretDB is not built (scripts/ferretdb.sh install).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <mongoc/mongoc.h>

#include "at_test_infra.h"
#include "reconcile_scenario.h"

static ts_ferretdb_t fdb;

static mongoc_client_t *client(void)
{
    bson_error_t e;
    mongoc_uri_t *u = mongoc_uri_new_with_error(fdb.uri, &e);
    if (u == NULL)
        fail_msg("%s: %s", fdb.uri, e.message);
    mongoc_uri_set_option_as_int32(u, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
    mongoc_client_t *c = mongoc_client_new_from_uri(u);
    mongoc_uri_destroy(u);
    assert_non_null(c);
    return c;
}

static void mongo_put(void *ctx, const char *coll, bson_t *const *docs, size_t n)
{
    mongoc_collection_t *col = mongoc_client_get_collection(ctx, "adtrack", coll);
    bson_error_t e;
    if (!mongoc_collection_insert_many(col, (const bson_t **)docs, n, NULL, NULL, &e))
        fail_msg("insert %s: %s", coll, e.message);
    mongoc_collection_destroy(col);
}

static void mongo_put_stats(void *ctx, bson_t *const *docs, size_t n)
{
    mongoc_collection_t *col = mongoc_client_get_collection(ctx, "adtrack", "stats_hourly");
    bson_error_t e;
    bson_t *not_corrections = BCON_NEW("k", "{", "$ne", BCON_INT32(-1), "}");
    if (!mongoc_collection_delete_many(col, not_corrections, NULL, NULL, &e))
        fail_msg("delete stats_hourly: %s", e.message);
    bson_destroy(not_corrections);
    mongoc_collection_destroy(col);
    mongo_put(ctx, "stats_hourly", docs, n);
}

static bson_t *find_one(mongoc_client_t *c, const char *id)
{
    mongoc_collection_t *col = mongoc_client_get_collection(c, "adtrack", "stats_hourly");
    bson_t *filter = BCON_NEW("_id", BCON_UTF8(id));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(col, filter, NULL, NULL);
    const bson_t *d;
    bson_t *copy = mongoc_cursor_next(cur, &d) ? bson_copy(d) : NULL;
    mongoc_cursor_destroy(cur);
    bson_destroy(filter);
    mongoc_collection_destroy(col);
    return copy;
}

static int64_t field(const bson_t *d, const char *path)
{
    bson_iter_t it, f;
    if (!bson_iter_init(&it, d) || !bson_iter_find_descendant(&it, path, &f))
        fail_msg("no %s", path);
    return bson_iter_as_int64(&f);
}

static void mongo_check_outside(void *ctx)
{
    mongoc_client_t *c = ctx;
    /* exactly the five corrections, all in the range */
    mongoc_collection_t *col = mongoc_client_get_collection(c, "adtrack", "stats_hourly");
    bson_t *corr = BCON_NEW("k", BCON_INT32(-1));
    bson_error_t e;
    assert_int_equal(mongoc_collection_count_documents(col, corr, NULL, NULL, NULL, &e), 5);
    bson_destroy(corr);
    mongoc_collection_destroy(col);
    bson_t *d = find_one(c, "2026-11-20T09|camp-a|cr-1|pub-1|top|0");
    assert_non_null(d);
    assert_int_equal(field(d, "imp"), 7);
    bson_destroy(d);
    assert_null(find_one(c, "2026-11-20T09|camp-a|cr-1|pub-1|top|-1"));
    assert_null(find_one(c, "2026-11-20T12|camp-a|cr-1|pub-1|top|-1"));

    /* the corrections as stored */
    d = find_one(c, "2026-11-20T10|camp-a|cr-1|pub-1|top|-1");
    assert_non_null(d);
    assert_int_equal(field(d, "k"), -1);
    assert_int_equal(field(d, "imp"), -10); /* a doubled count is taken back */
    assert_int_equal(field(d, "click"), 0);
    bson_iter_t it;
    assert_false(bson_iter_init_find(&it, d, "o"));
    assert_true(bson_iter_init_find(&it, d, "mt") && BSON_ITER_HOLDS_DATE_TIME(&it));
    assert_true(bson_iter_init_find(&it, d, "h") && BSON_ITER_HOLDS_DATE_TIME(&it));
    assert_int_equal(bson_iter_date_time(&it), RS_T09 + RS_HOUR);
    assert_true(bson_iter_init_find(&it, d, "adv") && strcmp(bson_iter_utf8(&it, NULL), "adv-1") == 0);
    bson_destroy(d);
    d = find_one(c, "2026-11-20T11|camp-b||pub-2||-1");
    assert_non_null(d);
    assert_int_equal(field(d, "imp"), 5); /* the missing document's counts */
    assert_int_equal(field(d, "spend"), 10000);
    assert_int_equal(field(d, "conv"), 0);
    bson_destroy(d);
    d = find_one(c, "2026-11-20T10|||||-1");
    assert_non_null(d);
    assert_int_equal(field(d, "rejected"), 1);
    assert_int_equal(field(d, "rej.unknown_campaign"), 1);
    bson_destroy(d);
}

static void test_reconcile__mongo_report_repair_idempotent(void **state)
{
    (void)state;
    mongoc_client_t *c = client();
    char uri[300];
    snprintf(uri, sizeof(uri), "%s/?serverSelectionTimeoutMS=5000", fdb.uri);
    rs_backend_t b = {.put = mongo_put,
                      .put_stats = mongo_put_stats,
                      .check_outside = mongo_check_outside,
                      .store_args = {"--mongo", uri, NULL},
                      .ctx = c};
    rs_run_scenario(&b);
    mongoc_client_destroy(c);
}

static void test_reconcile__mongo_unreachable_is_exit_2(void **state)
{
    (void)state;
    char uri[128];
    snprintf(uri, sizeof(uri), "mongodb://127.0.0.1:%d/?serverSelectionTimeoutMS=500", ts_free_port());
    rs_backend_t b = {.store_args = {"--mongo", uri, NULL}};
    rs_run_t r = rs_reconcile(&b, "2026-11-20T10", "2026-11-20T12", false, true, NULL);
    assert_int_equal(r.status, 2);
    assert_non_null(strstr(r.err, "mongo find adtrack."));
    assert_string_equal(r.out, "");
    rs_run_free(&r);
}

static int group_setup(void **state)
{
    (void)state;
    mongoc_init();
    return ts_ferretdb_start(&fdb) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    ts_ferretdb_stop(&fdb);
    mongoc_cleanup();
    return 0;
}

int main(void)
{
    if (ts_infra_skip(false, true))
        return TS_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reconcile__mongo_report_repair_idempotent),
        cmocka_unit_test(test_reconcile__mongo_unreachable_is_exit_2),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
