/* LABELS: it;ferretdb */
/*
 * test_ferretdb_smoke.c: the FerretDB test infrastructure (scripts/ferretdb.sh through
 * tests/support/at_test_infra.c) with our own MongoDB code, against a real database instead
 * of mockupdb's scripted replies:
 *  - the enricher's sink (enricher/enr_sink_mongo.c): its indexes exist; an unordered insert
 *    whose batch repeats stored ids stores the new ones and counts the rest as duplicates
 *    (code 11000), also for the rejected collection; a document is stored as built
 *    (int64 and date types kept);
 *  - coredata's store (coredata/cd_store_mongo.c): the versioned upsert applies a higher and
 *    an equal version, refuses a lower one (duplicate key on the upsert), and load() gives
 *    back exactly the latest documents;
 *  - a FerretDB killed under the sink: the write fails retriably, and after a restart on the
 *    same port the same batch goes through, nothing stored twice;
 *  - two sinks writing the same batch at the same moment (what two enrichers do with a batch
 *    redelivered across a rebalance): each document inserted by exactly one of them, the
 *    other counts it as a duplicate;
 *  - two stores upserting a new id at the same moment with different versions (two coredata
 *    writers): the higher version is what stays, whatever the interleaving.
 * Exits 77 (skipped) when FerretDB is not built (scripts/ferretdb.sh install).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "at_common.h"
#include "at_err.h"
#include "at_mongo.h"
#include "at_test_infra.h"
#include "at_test_support.h"
#include "cd_store.h"
#include "enr_sink.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bson/bson.h>
#include <mongoc/mongoc.h>

#define WTIMEOUT_MS 5000

static ts_ferretdb_t fdb;

static bson_t *json_doc(const char *json)
{
    bson_error_t e;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &e);
    if (b == NULL)
        fail_msg("bad test JSON: %s (%s)", e.message, json);
    return b;
}

/* A client of our own, to look at what the services stored. */
static mongoc_client_t *peek_client(void)
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

static int64_t count_docs(const char *coll, const char *filter_json)
{
    mongoc_client_t *c = peek_client();
    mongoc_collection_t *col = mongoc_client_get_collection(c, "adtrack", coll);
    bson_t *filter = json_doc(filter_json);
    bson_error_t e;
    int64_t n = mongoc_collection_count_documents(col, filter, NULL, NULL, NULL, &e);
    if (n < 0)
        fail_msg("count %s: %s", coll, e.message);
    bson_destroy(filter);
    mongoc_collection_destroy(col);
    mongoc_client_destroy(c);
    return n;
}

/* Whether adtrack.<coll> has an index named @p name. */
static bool has_index(const char *coll, const char *name)
{
    mongoc_client_t *c = peek_client();
    mongoc_collection_t *col = mongoc_client_get_collection(c, "adtrack", coll);
    mongoc_cursor_t *cur = mongoc_collection_find_indexes_with_opts(col, NULL);
    const bson_t *doc;
    bool found = false;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        if (bson_iter_init_find(&it, doc, "name") && BSON_ITER_HOLDS_UTF8(&it) &&
            strcmp(bson_iter_utf8(&it, NULL), name) == 0)
            found = true;
    }
    bson_error_t e;
    if (mongoc_cursor_error(cur, &e))
        fail_msg("listIndexes %s: %s", coll, e.message);
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(col);
    mongoc_client_destroy(c);
    return found;
}

static int group_setup(void **state)
{
    AT_UNUSED(state);
    at_mongo_init();
    return ts_ferretdb_start(&fdb) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    AT_UNUSED(state);
    ts_ferretdb_stop(&fdb);
    return 0;
}

/* Event documents ev-<from>..ev-<to-1> of campaign camp-<i % 3>, with an int64 price and a
 * date, as the enricher builds them. */
static bson_t **make_events(int from, int to)
{
    bson_t **docs = calloc((size_t)(to - from), sizeof(*docs));
    assert_non_null(docs);
    for (int i = from; i < to; i++) {
        char json[512];
        snprintf(json, sizeof(json),
                 "{\"_id\": \"ev-%d\", \"v\": 1, \"ts\": {\"$date\": \"2026-12-03T10:00:%02d.000Z\"}, \"e\": \"imp\", "
                 "\"c\": \"camp-%d\", \"p\": \"pub-1\", \"price_micros\": {\"$numberLong\": \"%d\"}, "
                 "\"tag\": \"fdb:%d\"}",
                 i, i % 60, i % 3, 2500 + i, i);
        docs[i - from] = json_doc(json);
    }
    return docs;
}

static void free_docs(bson_t **docs, int n)
{
    for (int i = 0; i < n; i++)
        bson_destroy(docs[i]);
    free(docs);
}

static enr_sink_t *sink_new(void)
{
    at_err_t err;
    at_err_clear(&err);
    enr_sink_t *s = enr_sink_mongo_new(fdb.uri, "majority", WTIMEOUT_MS, &err);
    if (s == NULL)
        fail_msg("enr_sink_mongo_new(%s): %s", fdb.uri, err.msg);
    return s;
}

/* ---- tests ------------------------------------------------------------------------------------ */

static void test_sink__unordered_insert_counts_duplicates(void **state)
{
    AT_UNUSED(state);
    enr_sink_t *s = sink_new();
    enr_sink_result_t res;
    at_err_t err;

    /* First batch: 0..49 and two rejected documents. */
    bson_t **a = make_events(0, 50);
    bson_t *rej[2] = {json_doc("{\"_id\": \"rj-1\", \"reason\": \"unknown_campaign\", \"detail\": \"x\", "
                               "\"ts\": {\"$date\": \"2026-12-03T10:00:00.000Z\"}}"),
                      json_doc("{\"_id\": \"rj-2\", \"reason\": \"bot\", \"detail\": \"y\", "
                               "\"ts\": {\"$date\": \"2026-12-03T10:00:01.000Z\"}}")};
    memset(&res, 0, sizeof(res));
    at_err_clear(&err);
    if (enr_sink_write(s, (const bson_t *const *)a, 50, (const bson_t *const *)rej, 2, &res, &err) != 0)
        fail_msg("first write: %s", err.msg);
    assert_int_equal(res.inserted, 52);
    assert_int_equal(res.duplicates, 0);

    /* The same ids again mixed with new ones (a redelivered batch after a rebalance): 25..74
     * and the same rejected documents. */
    bson_t **b = make_events(25, 75);
    memset(&res, 0, sizeof(res));
    at_err_clear(&err);
    if (enr_sink_write(s, (const bson_t *const *)b, 50, (const bson_t *const *)rej, 2, &res, &err) != 0)
        fail_msg("second write: %s", err.msg);
    assert_int_equal(res.inserted, 25);
    assert_int_equal(res.duplicates, 27);

    /* An empty write is the readiness ping. */
    at_err_clear(&err);
    assert_int_equal(enr_sink_write(s, NULL, 0, NULL, 0, &res, &err), 0);

    assert_int_equal(count_docs("events", "{}"), 75);
    assert_int_equal(count_docs("events", "{\"c\": \"camp-1\"}"), 25);
    assert_int_equal(count_docs("rejected", "{}"), 2);
    /* Types as built: price_micros an int64 (a $numberLong query matches the stored type). */
    assert_int_equal(count_docs("events", "{\"_id\": \"ev-7\", \"price_micros\": {\"$numberLong\": \"2507\"}, "
                                          "\"ts\": {\"$date\": \"2026-12-03T10:00:07.000Z\"}}"),
                     1);
    assert_int_equal(count_docs("events", "{\"tag\": {\"$regex\": \"^fdb:7\"}}"), 6); /* 7 and 70..74 */

    /* The sink's indexes, created at start-up. */
    assert_true(has_index("events", "c_1_ts_1"));
    assert_true(has_index("rejected", "reason_1_ts_1"));

    free_docs(a, 50);
    free_docs(b, 50);
    bson_destroy(rej[0]);
    bson_destroy(rej[1]);
    enr_sink_destroy(s);
}

typedef struct seen_s {
    int campaigns, publishers;
    int64_t version;
    char name[32];
    bool had_id;
} seen_t;

static void on_load(cd_kind_t kind, const bson_t *doc, void *opaque)
{
    seen_t *seen = opaque;
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, "_id"))
        seen->had_id = true;
    if (kind != CD_KIND_CAMPAIGN) {
        seen->publishers++;
        return;
    }
    seen->campaigns++;
    if (bson_iter_init_find(&it, doc, "version") && BSON_ITER_HOLDS_NUMBER(&it))
        seen->version = bson_iter_as_int64(&it);
    if (bson_iter_init_find(&it, doc, "name") && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(seen->name, sizeof(seen->name), "%s", bson_iter_utf8(&it, NULL));
}

static void test_store__versioned_upsert(void **state)
{
    AT_UNUSED(state);
    at_err_t err;
    at_err_clear(&err);
    cd_store_t *st = cd_store_mongo_new(fdb.uri, "majority", WTIMEOUT_MS, &err);
    if (st == NULL)
        fail_msg("cd_store_mongo_new: %s", err.msg);

    const struct {
        int version;
        const char *name;
        bool applied;
    } puts[] = {{5, "five", true}, {7, "seven", true}, {7, "seven", true}, {3, "three", false}, {6, "six", false}};
    for (size_t i = 0; i < AT_ARRAY_LEN(puts); i++) {
        char json[256];
        snprintf(json, sizeof(json), "{\"id\": \"camp-fdb\", \"name\": \"%s\", \"version\": %d, \"status\": \"active\"}",
                 puts[i].name, puts[i].version);
        bson_t *doc = json_doc(json);
        bool applied = !puts[i].applied;
        at_err_clear(&err);
        if (st->ops->put(st, CD_KIND_CAMPAIGN, doc, &applied, &err) != 0)
            fail_msg("put version %d: %s", puts[i].version, err.msg);
        if (applied != puts[i].applied)
            fail_msg("put version %d: applied %d, want %d", puts[i].version, applied, puts[i].applied);
        bson_destroy(doc);
    }
    bson_t *pub = json_doc("{\"id\": \"pub-fdb\", \"name\": \"P\", \"version\": 8}");
    bool applied = false;
    assert_int_equal(st->ops->put(st, CD_KIND_PUBLISHER, pub, &applied, &err), 0);
    assert_true(applied);
    bson_destroy(pub);

    /* Stored: version 7 with _id = id. */
    assert_int_equal(count_docs("campaigns", "{\"_id\": \"camp-fdb\", \"version\": 7, \"name\": \"seven\"}"), 1);
    assert_int_equal(count_docs("campaigns", "{}"), 1);

    /* load(): every document once, as put() was given it (no _id). */
    seen_t seen;
    memset(&seen, 0, sizeof(seen));
    at_err_clear(&err);
    if (st->ops->load(st, on_load, &seen, &err) != 0)
        fail_msg("load: %s", err.msg);
    assert_int_equal(seen.campaigns, 1);
    assert_int_equal(seen.publishers, 1);
    assert_int_equal(seen.version, 7);
    assert_string_equal(seen.name, "seven");
    assert_false(seen.had_id);
    cd_store_destroy(st);
}

static void test_sink__survives_ferretdb_restart(void **state)
{
    AT_UNUSED(state);
    enr_sink_t *s = sink_new();
    enr_sink_result_t res;
    at_err_t err;
    bson_t **a = make_events(100, 120);

    assert_int_equal(ts_ferretdb_kill(&fdb), 0);
    memset(&res, 0, sizeof(res));
    at_err_clear(&err);
    assert_int_equal(enr_sink_write(s, (const bson_t *const *)a, 20, NULL, 0, &res, &err), -1);
    if (!at_err_retriable(err.code))
        fail_msg("a write to a dead FerretDB failed non-retriably: %s", err.msg);

    assert_int_equal(ts_ferretdb_start(&fdb), 0);
    /* The driver does not retry a refused host for 5 s: poll the same batch, like the
     * enricher's backoff does. */
    int64_t deadline = ts_now_ms() + 30000;
    int rc;
    do {
        memset(&res, 0, sizeof(res));
        at_err_clear(&err);
        rc = enr_sink_write(s, (const bson_t *const *)a, 20, NULL, 0, &res, &err);
        if (rc != 0) {
            if (!at_err_retriable(err.code))
                fail_msg("after the restart: %s", err.msg);
            usleep(250 * 1000);
        }
    } while (rc != 0 && ts_now_ms() < deadline);
    if (rc != 0)
        fail_msg("the sink did not get through within 30 s of the restart: %s", err.msg);
    assert_int_equal(res.inserted + res.duplicates, 20);
    /* Data from before the restart is still there (SQLite files kept), nothing twice. */
    assert_int_equal(count_docs("events", "{}"), 95);
    free_docs(a, 20);
    enr_sink_destroy(s);
}

/* ---- concurrency: two writers at the same moment ------------------------------------------- */

typedef struct racer_s {
    pthread_barrier_t *go;
    bson_t **docs;
    int n;
    enr_sink_result_t res;
    int rc;
    char err[256];
} racer_t;

static void *sink_racer(void *arg)
{
    racer_t *r = arg;
    at_err_t err;
    at_err_clear(&err);
    enr_sink_t *s = enr_sink_mongo_new(fdb.uri, "majority", WTIMEOUT_MS, &err);
    if (s == NULL) {
        r->rc = -1;
        snprintf(r->err, sizeof(r->err), "%s", err.msg);
        return NULL;
    }
    /* A first empty write connects and proves the sink, so both start the real one together. */
    enr_sink_write(s, NULL, 0, NULL, 0, &r->res, &err);
    memset(&r->res, 0, sizeof(r->res));
    pthread_barrier_wait(r->go);
    r->rc = enr_sink_write(s, (const bson_t *const *)r->docs, (size_t)r->n, NULL, 0, &r->res, &err);
    if (r->rc != 0)
        snprintf(r->err, sizeof(r->err), "%s", err.msg);
    enr_sink_destroy(s);
    return NULL;
}

static void test_sink__two_sinks_same_batch_store_each_once(void **state)
{
    AT_UNUSED(state);
    enum { N = 400, ROUNDS = 3 };
    for (int round = 0; round < ROUNDS; round++) {
        int from = 1000 + round * N;
        bson_t **docs = make_events(from, from + N);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        racer_t r[2] = {{.go = &go, .docs = docs, .n = N}, {.go = &go, .docs = docs, .n = N}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&t[i], NULL, sink_racer, &r[i]), 0);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&go);
        for (int i = 0; i < 2; i++)
            if (r[i].rc != 0)
                fail_msg("round %d, sink %d: %s", round, i, r[i].err);
        /* Each sink saw every document once: as its own insert or as the other's. */
        assert_int_equal(r[0].res.inserted + r[0].res.duplicates, N);
        assert_int_equal(r[1].res.inserted + r[1].res.duplicates, N);
        assert_int_equal(r[0].res.inserted + r[1].res.inserted, N);
        print_message("round %d: inserted %lld + %lld, duplicates %lld + %lld\n", round, (long long)r[0].res.inserted,
                      (long long)r[1].res.inserted, (long long)r[0].res.duplicates, (long long)r[1].res.duplicates);
        free_docs(docs, N);
    }
    /* Tags fdb:1000..fdb:2199: 1200 documents, each once. */
    assert_int_equal(count_docs("events", "{\"tag\": {\"$regex\": \"^fdb:(1[0-9]{3}|2[01][0-9]{2})$\"}}"), N * ROUNDS);
}

typedef struct upserter_s {
    pthread_barrier_t *go;
    const char *id;
    int version;
    bool applied;
    int rc;
    char err[256];
} upserter_t;

static void *store_racer(void *arg)
{
    upserter_t *u = arg;
    at_err_t err;
    at_err_clear(&err);
    cd_store_t *st = cd_store_mongo_new(fdb.uri, "majority", WTIMEOUT_MS, &err);
    if (st == NULL) {
        u->rc = -1;
        snprintf(u->err, sizeof(u->err), "%s", err.msg);
        return NULL;
    }
    char json[256];
    snprintf(json, sizeof(json), "{\"id\": \"%s\", \"name\": \"v%d\", \"version\": %d}", u->id, u->version,
             u->version);
    bson_error_t be;
    bson_t *doc = bson_new_from_json((const uint8_t *)json, -1, &be);
    pthread_barrier_wait(u->go);
    u->rc = st->ops->put(st, CD_KIND_PUBLISHER, doc, &u->applied, &err);
    if (u->rc != 0)
        snprintf(u->err, sizeof(u->err), "%s", err.msg);
    bson_destroy(doc);
    cd_store_destroy(st);
    return NULL;
}

static void test_store__racing_upserts_keep_the_higher_version(void **state)
{
    AT_UNUSED(state);
    enum { ROUNDS = 10 };
    int lost_races = 0;
    for (int round = 0; round < ROUNDS; round++) {
        char id[32];
        snprintf(id, sizeof(id), "pub-race-%d", round);
        pthread_barrier_t go;
        pthread_barrier_init(&go, NULL, 2);
        /* The lower version first in even rounds, second in odd ones. */
        upserter_t u[2] = {{.go = &go, .id = id, .version = round % 2 ? 20 : 10},
                           {.go = &go, .id = id, .version = round % 2 ? 10 : 20}};
        pthread_t t[2];
        for (int i = 0; i < 2; i++)
            assert_int_equal(pthread_create(&t[i], NULL, store_racer, &u[i]), 0);
        for (int i = 0; i < 2; i++)
            pthread_join(t[i], NULL);
        pthread_barrier_destroy(&go);
        for (int i = 0; i < 2; i++)
            if (u[i].rc != 0)
                fail_msg("round %d, version %d: %s", round, u[i].version, u[i].err);
        upserter_t *hi = u[0].version == 20 ? &u[0] : &u[1], *lo = hi == &u[0] ? &u[1] : &u[0];
        assert_true(hi->applied); /* the higher version is never refused */
        lost_races += lo->applied ? 0 : 1;
        char filter[128];
        snprintf(filter, sizeof(filter), "{\"_id\": \"%s\", \"version\": 20, \"name\": \"v20\"}", id);
        assert_int_equal(count_docs("publishers", filter), 1);
    }
    print_message("the lower version was refused in %d of %d rounds (applied, then replaced, in the rest)\n",
                  lost_races, ROUNDS);
}

int main(void)
{
    if (ts_infra_skip(false, true))
        return TS_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sink__unordered_insert_counts_duplicates),
        cmocka_unit_test(test_store__versioned_upsert),
        cmocka_unit_test(test_sink__survives_ferretdb_restart),
        cmocka_unit_test(test_sink__two_sinks_same_batch_store_each_once),
        cmocka_unit_test(test_store__racing_upserts_keep_the_higher_version),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
