/* LABELS: it;mongo */
/*
 * test_mongo_store.c: coredata's MongoDB store (coredata/cd_store_mongo.c) against a
 * scripted MongoDB wire peer (tests/support/mockupdb_server.py, mockupdb under Debian's
 * python3): the versioned upsert put() sends, how duplicate keys (stale versions) and
 * racing inserts are told apart, load() over scripted find replies, and the retriable
 * classification of dropped connections and server errors.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "at_common.h"
#include "at_err.h"
#include "at_test_mongo.h"
#include "at_test_support.h"
#include "cd_store.h"

#include <signal.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include <bson/bson.h>

#define WTIMEOUT_MS 4000

/* ---- fixtures --------------------------------------------------------------------------------- */

typedef struct fx_s {
    ts_mongo_t mock;
    cd_store_t *store;
    bson_t *campaign;
    bson_t *publisher;
} fx_t;

static bson_t *json_doc(const char *json)
{
    bson_error_t e;
    bson_t *b = bson_new_from_json((const uint8_t *)json, -1, &e);
    if (b == NULL)
        fail_msg("bad test JSON: %s", e.message);
    return b;
}

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    ts_mongo_start(&fx->mock);
    at_err_t err;
    at_err_clear(&err);
    fx->store = cd_store_mongo_new(fx->mock.uri, "majority", WTIMEOUT_MS, &err);
    if (fx->store == NULL)
        fail_msg("cd_store_mongo_new: %s", err.msg);
    fx->campaign =
        json_doc("{\"id\": \"camp-1\", \"advertiser\": \"adv-1\", \"advertiser_name\": \"Acme Shoes\", "
                 "\"name\": \"Spring sale\", \"status\": \"active\", \"start\": \"2026-11-01T00:00:00Z\", "
                 "\"end\": \"2026-12-31T23:59:59Z\", \"budget_micros\": {\"$numberLong\": \"5000000000\"}, "
                 "\"pricing\": \"cpm\", \"price_micros\": {\"$numberLong\": \"2500000\"}, "
                 "\"publishers\": [\"pub-1\", \"pub-2\"], \"destinations\": [\"https://acme.example/spring\"], "
                 "\"version\": {\"$numberLong\": \"17\"}}");
    fx->publisher = json_doc("{\"id\": \"pub-1\", \"name\": \"Daily News\", \"domain\": \"news.example\", "
                             "\"status\": \"active\", \"version\": {\"$numberLong\": \"18\"}}");
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    cd_store_destroy(fx->store);
    ts_mongo_stop(&fx->mock);
    bson_destroy(fx->campaign);
    bson_destroy(fx->publisher);
    free(fx);
    return 0;
}

static int put(fx_t *fx, cd_kind_t kind, const bson_t *doc, bool *applied, at_err_t *err)
{
    at_err_clear(err);
    *applied = !*applied; /* poison: the call must set it */
    int rc = fx->store->ops->put(fx->store, kind, doc, applied, err);
    ts_mongo_sync(&fx->mock);
    return rc;
}

/* ---- put -------------------------------------------------------------------------------------- */

static void test_cd_store_mongo_put__versioned_upsert(void **state)
{
    fx_t *fx = *state;
    assert_string_equal(fx->store->ops->name, "mongodb");
    bool applied = false;
    at_err_t err;
    assert_int_equal(put(fx, CD_KIND_CAMPAIGN, fx->campaign, &applied, &err), 0);
    assert_true(applied);

    assert_int_equal(ts_mongo_count(&fx->mock, "update", NULL), 1);
    const bson_t *up = ts_mongo_report_in(&fx->mock, "update", "campaigns", 0);
    assert_non_null(up);
    assert_string_equal(ts_mongo_str_field(up, "db"), "adtrack");
    /* The filter: this id, only while the stored version is not newer. */
    assert_string_equal(ts_mongo_report_str(up, "updates.0.q._id"), "camp-1");
    assert_int_equal(ts_mongo_report_int(up, "updates.0.q.version.$lte"), 17);
    assert_false(ts_mongo_report_has(up, "updates.0.q.status"));
    /* A replacement (no operators) carrying _id = id and the whole document. */
    assert_string_equal(ts_mongo_report_str(up, "updates.0.u._id"), "camp-1");
    assert_string_equal(ts_mongo_report_str(up, "updates.0.u.id"), "camp-1");
    assert_string_equal(ts_mongo_report_str(up, "updates.0.u.name"), "Spring sale");
    assert_int_equal(ts_mongo_report_int(up, "updates.0.u.budget_micros"), 5000000000);
    assert_string_equal(ts_mongo_report_str(up, "updates.0.u.publishers.1"), "pub-2");
    assert_int_equal(ts_mongo_report_int(up, "updates.0.u.version"), 17);
    bson_iter_t it;
    assert_true(ts_mongo_report_find(up, "updates.0.upsert", &it));
    assert_true(bson_iter_as_bool(&it));
    assert_false(ts_mongo_report_has(up, "updates.1"));
    assert_string_equal(ts_mongo_report_str(up, "writeConcern.w"), "majority");
    assert_int_equal(ts_mongo_report_int(up, "writeConcern.wtimeout"), WTIMEOUT_MS);

    const bson_t *hs = ts_mongo_last_report(&fx->mock, "isMaster");
    assert_non_null(hs);
    assert_string_equal(ts_mongo_report_str(hs, "client.application.name"), "adtrack-coredata");
}

static void test_cd_store_mongo_put__publisher_replaced(void **state)
{
    fx_t *fx = *state;
    /* An older version is stored: the filter matches and the document is replaced. */
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"update\", \"action\": \"reply\", \"reply\": {\"n\": 1, "
                            "\"nModified\": 1}}");
    bool applied = false;
    at_err_t err;
    assert_int_equal(put(fx, CD_KIND_PUBLISHER, fx->publisher, &applied, &err), 0);
    assert_true(applied);
    const bson_t *up = ts_mongo_report_in(&fx->mock, "update", "publishers", 0);
    assert_non_null(up);
    assert_string_equal(ts_mongo_report_str(up, "updates.0.q._id"), "pub-1");
    assert_int_equal(ts_mongo_report_int(up, "updates.0.q.version.$lte"), 18);
    assert_string_equal(ts_mongo_report_str(up, "updates.0.u.domain"), "news.example");
    assert_int_equal(ts_mongo_count(&fx->mock, "update", "campaigns"), 0);
}

static void test_cd_store_mongo_put__stale_version_not_applied(void **state)
{
    fx_t *fx = *state;
    /* A newer version is stored: the filter misses, the upsert collides on _id, twice. */
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"update\", \"action\": \"duplicate\", \"times\": 2}");
    bool applied = true;
    at_err_t err;
    assert_int_equal(put(fx, CD_KIND_CAMPAIGN, fx->campaign, &applied, &err), 0);
    assert_false(applied);
    assert_int_equal(err.code, AT_OK);
    assert_int_equal(ts_mongo_count(&fx->mock, "update", "campaigns"), 2);
    const bson_t *second = ts_mongo_report_in(&fx->mock, "update", "campaigns", 1);
    assert_int_equal(ts_mongo_report_int(second, "updates.0.q.version.$lte"), 17);
}

static void test_cd_store_mongo_put__racing_insert_retried(void **state)
{
    fx_t *fx = *state;
    /* Two writers upsert a new id at once; this one loses the insert race although its
     * version is the newer one. The retry matches the other writer's document. */
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"update\", \"action\": \"duplicate\"}");
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"update\", \"action\": \"reply\", \"reply\": {\"n\": 1, "
                            "\"nModified\": 1}}");
    bool applied = false;
    at_err_t err;
    assert_int_equal(put(fx, CD_KIND_CAMPAIGN, fx->campaign, &applied, &err), 0);
    assert_true(applied);
    assert_int_equal(ts_mongo_count(&fx->mock, "update", NULL), 2);
}

static void test_cd_store_mongo_put__hangup_retriable(void **state)
{
    fx_t *fx = *state;
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"update\", \"action\": \"hangup\"}");
    bool applied = true;
    at_err_t err;
    assert_int_equal(put(fx, CD_KIND_CAMPAIGN, fx->campaign, &applied, &err), -1);
    assert_int_equal(err.code, AT_ERR_UNAVAILABLE);
    assert_true(at_err_retriable(err.code));
    assert_false(applied);
    /* The caller's retry: the first attempt may have landed, so the same version must
     * match again ($lte) and report applied, not stale. */
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"update\", \"action\": \"reply\", \"reply\": {\"n\": 1, "
                            "\"nModified\": 0}}");
    assert_int_equal(put(fx, CD_KIND_CAMPAIGN, fx->campaign, &applied, &err), 0);
    assert_true(applied);
    assert_int_equal(ts_mongo_count(&fx->mock, "update", NULL), 2);
}

static void test_cd_store_mongo_put__write_concern_error_retriable(void **state)
{
    fx_t *fx = *state;
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"update\", \"action\": \"write_concern_error\"}");
    bool applied = true;
    at_err_t err;
    assert_int_equal(put(fx, CD_KIND_CAMPAIGN, fx->campaign, &applied, &err), -1);
    assert_int_equal(err.code, AT_ERR_TIMEOUT);
    assert_true(at_err_retriable(err.code));
    assert_false(applied);
}

static void test_cd_store_mongo_put__server_errors_classified(void **state)
{
    fx_t *fx = *state;
    bool applied;
    at_err_t err;
    /* NotWritablePrimary: an election is under way. */
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"update\", \"action\": \"error\", \"code\": 10107, "
                            "\"errmsg\": \"not primary\"}");
    assert_int_equal(put(fx, CD_KIND_CAMPAIGN, fx->campaign, &applied, &err), -1);
    assert_int_equal(err.code, AT_ERR_UNAVAILABLE);
    /* Unauthorized: configuration, retrying will not help. */
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"update\", \"action\": \"error\", \"code\": 13, "
                            "\"errmsg\": \"not authorized on adtrack\"}");
    assert_int_equal(put(fx, CD_KIND_CAMPAIGN, fx->campaign, &applied, &err), -1);
    assert_int_equal(err.code, AT_ERR_AUTH);
    assert_false(at_err_retriable(err.code));
    /* A write error other than a duplicate key (schema validation). */
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"update\", \"action\": \"reply\", \"reply\": {\"n\": 0, "
                            "\"nModified\": 0, \"writeErrors\": [{\"index\": 0, \"code\": 121, \"errmsg\": "
                            "\"Document failed validation\"}]}}");
    assert_int_equal(put(fx, CD_KIND_CAMPAIGN, fx->campaign, &applied, &err), -1);
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_non_null(strstr(err.msg, "121"));
    assert_int_equal(ts_mongo_count(&fx->mock, "update", NULL), 3);
}

static void test_cd_store_mongo_put__invalid_document(void **state)
{
    fx_t *fx = *state;
    bool applied = true;
    at_err_t err;
    bson_t *no_id = json_doc("{\"name\": \"x\", \"version\": 3}");
    bson_t *no_version = json_doc("{\"id\": \"camp-2\"}");
    bson_t *str_version = json_doc("{\"id\": \"camp-2\", \"version\": \"3\"}");
    assert_int_equal(put(fx, CD_KIND_CAMPAIGN, no_id, &applied, &err), -1);
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_false(applied);
    assert_int_equal(put(fx, CD_KIND_CAMPAIGN, no_version, &applied, &err), -1);
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_int_equal(put(fx, CD_KIND_CAMPAIGN, str_version, &applied, &err), -1);
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_int_equal(put(fx, (cd_kind_t)7, fx->campaign, &applied, &err), -1);
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_int_equal(ts_mongo_count(&fx->mock, "update", NULL), 0);
    bson_destroy(no_id);
    bson_destroy(no_version);
    bson_destroy(str_version);
}

/* ---- load ------------------------------------------------------------------------------------- */

typedef struct loaded_s {
    size_t n;
    cd_kind_t kind[8];
    char id[8][32];
    int64_t version[8];
    bool has_underscore_id[8];
    bool deleted[8];
    cd_store_t *put_back; /* when set, the callback puts every document back (re-entrancy) */
    int put_rc;
} loaded_t;

static void on_doc(cd_kind_t kind, const bson_t *doc, void *opaque)
{
    loaded_t *l = opaque;
    if (l->n >= 8)
        return;
    bson_iter_t it;
    l->kind[l->n] = kind;
    if (bson_iter_init_find(&it, doc, "id") && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(l->id[l->n], sizeof(l->id[0]), "%s", bson_iter_utf8(&it, NULL));
    if (bson_iter_init_find(&it, doc, "version") && BSON_ITER_HOLDS_NUMBER(&it))
        l->version[l->n] = bson_iter_as_int64(&it);
    l->has_underscore_id[l->n] = bson_has_field(doc, "_id");
    l->deleted[l->n] = bson_iter_init_find(&it, doc, "deleted") && bson_iter_as_bool(&it);
    l->n++;
    if (l->put_back != NULL) {
        bool applied;
        at_err_t err;
        l->put_rc |= l->put_back->ops->put(l->put_back, kind, doc, &applied, &err);
    }
}

static void script_load(fx_t *fx)
{
    ts_mongo_ctl(&fx->mock,
                 "{\"op\": \"rule\", \"cmd\": \"find\", \"collection\": \"campaigns\", \"action\": \"cursor\", "
                 "\"docs\": [{\"_id\": \"camp-1\", \"id\": \"camp-1\", \"name\": \"Spring sale\", "
                 "\"status\": \"active\", \"version\": {\"$numberLong\": \"17\"}}, "
                 "{\"_id\": \"camp-2\", \"id\": \"camp-2\", \"version\": {\"$numberLong\": \"9007199254740000\"}, "
                 "\"deleted\": true}]}");
    ts_mongo_ctl(&fx->mock,
                 "{\"op\": \"rule\", \"cmd\": \"find\", \"collection\": \"publishers\", \"action\": \"cursor\", "
                 "\"docs\": [{\"_id\": \"pub-1\", \"id\": \"pub-1\", \"name\": \"Daily News\", "
                 "\"version\": {\"$numberLong\": \"18\"}}]}");
}

static void test_cd_store_mongo_load__returns_stored_documents(void **state)
{
    fx_t *fx = *state;
    script_load(fx);
    loaded_t l;
    memset(&l, 0, sizeof(l));
    at_err_t err;
    at_err_clear(&err);
    assert_int_equal(fx->store->ops->load(fx->store, on_doc, &l, &err), 0);
    ts_mongo_sync(&fx->mock);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.kind[0], CD_KIND_CAMPAIGN);
    assert_string_equal(l.id[0], "camp-1");
    assert_int_equal(l.version[0], 17);
    assert_int_equal(l.kind[1], CD_KIND_CAMPAIGN);
    assert_string_equal(l.id[1], "camp-2");
    assert_int_equal(l.version[1], INT64_C(9007199254740000));
    assert_true(l.deleted[1]); /* tombstones come back too */
    assert_int_equal(l.kind[2], CD_KIND_PUBLISHER);
    assert_string_equal(l.id[2], "pub-1");
    assert_int_equal(l.version[2], 18);
    for (size_t i = 0; i < l.n; i++)
        assert_false(l.has_underscore_id[i]); /* _id is the store's; the document has "id" */

    assert_int_equal(ts_mongo_count(&fx->mock, "find", "campaigns"), 1);
    assert_int_equal(ts_mongo_count(&fx->mock, "find", "publishers"), 1);
    const bson_t *f = ts_mongo_report_in(&fx->mock, "find", "campaigns", 0);
    assert_string_equal(ts_mongo_str_field(f, "db"), "adtrack");
    bson_iter_t it;
    assert_true(ts_mongo_report_find(f, "filter", &it));
    assert_true(BSON_ITER_HOLDS_DOCUMENT(&it));
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    assert_int_equal(len, 5); /* {} : load takes everything */
}

static void test_cd_store_mongo_load__callback_may_put(void **state)
{
    fx_t *fx = *state;
    script_load(fx);
    loaded_t l;
    memset(&l, 0, sizeof(l));
    l.put_back = fx->store;
    at_err_t err;
    assert_int_equal(fx->store->ops->load(fx->store, on_doc, &l, &err), 0);
    ts_mongo_sync(&fx->mock);
    assert_int_equal(l.n, 3);
    assert_int_equal(l.put_rc, 0);
    assert_int_equal(ts_mongo_count(&fx->mock, "update", "campaigns"), 2);
    assert_int_equal(ts_mongo_count(&fx->mock, "update", "publishers"), 1);
    const bson_t *up = ts_mongo_report_in(&fx->mock, "update", "publishers", 0);
    assert_string_equal(ts_mongo_report_str(up, "updates.0.u._id"), "pub-1");
}

static void test_cd_store_mongo_load__hangup_retriable(void **state)
{
    fx_t *fx = *state;
    /* The driver retries a read once by itself (retryReads): drop both attempts. */
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"find\", \"action\": \"hangup\", \"times\": 2}");
    loaded_t l;
    memset(&l, 0, sizeof(l));
    at_err_t err;
    at_err_clear(&err);
    assert_int_equal(fx->store->ops->load(fx->store, on_doc, &l, &err), -1);
    ts_mongo_sync(&fx->mock);
    assert_int_equal(err.code, AT_ERR_UNAVAILABLE);
    assert_true(at_err_retriable(err.code));
    assert_int_equal(l.n, 0);
    assert_int_equal(ts_mongo_count(&fx->mock, "find", "campaigns"), 2);
    assert_int_equal(ts_mongo_count(&fx->mock, "find", "publishers"), 0);

    /* A later load succeeds. */
    script_load(fx);
    assert_int_equal(fx->store->ops->load(fx->store, on_doc, &l, &err), 0);
    assert_int_equal(l.n, 3);
}

static void test_cd_store_mongo_load__single_hangup_absorbed(void **state)
{
    fx_t *fx = *state;
    ts_mongo_ctl(&fx->mock,
                 "{\"op\": \"rule\", \"cmd\": \"find\", \"collection\": \"campaigns\", \"action\": \"hangup\"}");
    script_load(fx);
    loaded_t l;
    memset(&l, 0, sizeof(l));
    at_err_t err;
    assert_int_equal(fx->store->ops->load(fx->store, on_doc, &l, &err), 0);
    ts_mongo_sync(&fx->mock);
    assert_int_equal(l.n, 3);
    assert_int_equal(ts_mongo_count(&fx->mock, "find", "campaigns"), 2);
}

static void test_cd_store_mongo_load__server_error(void **state)
{
    fx_t *fx = *state;
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"find\", \"action\": \"error\", \"code\": 13, \"errmsg\": "
                            "\"not authorized on adtrack to execute command\"}");
    loaded_t l;
    memset(&l, 0, sizeof(l));
    at_err_t err;
    assert_int_equal(fx->store->ops->load(fx->store, on_doc, &l, &err), -1);
    assert_int_equal(err.code, AT_ERR_AUTH);
    assert_false(at_err_retriable(err.code));
    assert_non_null(strstr(err.msg, "adtrack.campaigns"));
}

/* ---- construction ----------------------------------------------------------------------------- */

static void test_cd_store_mongo_new__options(void **state)
{
    AT_UNUSED(state);
    at_err_t err;
    /* No network at construction: an unreachable URI still gives a store. */
    cd_store_t *s = cd_store_mongo_new("mongodb://127.0.0.1:1/?connectTimeoutMS=500", "1", 0, &err);
    assert_non_null(s);
    bool applied;
    bson_t *doc = BCON_NEW("id", "camp-9", "version", BCON_INT64(1));
    assert_int_equal(s->ops->put(s, CD_KIND_CAMPAIGN, doc, &applied, &err), -1);
    assert_int_equal(err.code, AT_ERR_UNAVAILABLE);
    cd_store_destroy(s);
    bson_destroy(doc);
    cd_store_destroy(NULL);

    assert_null(cd_store_mongo_new("not a uri", "majority", 1000, &err));
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_null(cd_store_mongo_new("mongodb://127.0.0.1:1", "0", 1000, &err));
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_null(cd_store_mongo_new("mongodb://127.0.0.1:1", "majority", -5, &err));
    assert_int_equal(err.code, AT_ERR_RANGE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cd_store_mongo_put__versioned_upsert, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_store_mongo_put__publisher_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_store_mongo_put__stale_version_not_applied, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_store_mongo_put__racing_insert_retried, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_store_mongo_put__hangup_retriable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_store_mongo_put__write_concern_error_retriable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_store_mongo_put__server_errors_classified, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_store_mongo_put__invalid_document, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_store_mongo_load__returns_stored_documents, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_store_mongo_load__callback_may_put, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_store_mongo_load__hangup_retriable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_store_mongo_load__single_hangup_absorbed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_store_mongo_load__server_error, setup, teardown),
        cmocka_unit_test(test_cd_store_mongo_new__options),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
