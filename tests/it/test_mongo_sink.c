/* LABELS: it;mongo */
/*
 * test_mongo_sink.c: the enricher's MongoDB sink (enricher/enr_sink_mongo.c) against a
 * scripted MongoDB wire peer (tests/support/mockupdb_server.py, mockupdb under Debian's
 * python3). Every test starts its own peer, scripts its replies, drives the sink, and then
 * asserts the wire conversation the peer reported: the insert command's shape (ordered:
 * false, _id, write concern), createIndexes, duplicate keys counted as success, and every
 * failure classified so that the enricher retries the same batch without loss.
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
#include "enr_sink.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <bson/bson.h>

#define WTIMEOUT_MS 2500

/* ---- fixtures --------------------------------------------------------------------------------- */

typedef struct fx_s {
    ts_mongo_t mock;
    enr_sink_t *sink;
    bson_t *events[3];
    bson_t *rejected[1];
} fx_t;

static bson_t *event_doc(const char *id, const char *camp)
{
    return BCON_NEW("_id", BCON_UTF8(id), "v", BCON_INT32(1), "ts", BCON_DATE_TIME(1795000000000), "e", "imp", "c",
                    BCON_UTF8(camp), "p", "pub-1", "price_micros", BCON_INT64(2500));
}

/* The documents only: tests that start their own peer (a port of their choice) or their
 * own sinks keep both in fx, so the teardown stops them even after a failed assertion. */
static int setup_bare(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    fx->events[0] = event_doc("0190a1b2-0000-7000-8000-000000000001", "camp-1");
    fx->events[1] = event_doc("0190a1b2-0000-7000-8000-000000000002", "camp-1");
    fx->events[2] = event_doc("0190a1b2-0000-7000-8000-000000000003", "camp-2");
    fx->rejected[0] = BCON_NEW("_id", "0190a1b2-0000-7000-8000-00000000000f", "ts", BCON_DATE_TIME(1795000000000),
                               "reason", "unknown_campaign", "detail", "c: no campaign camp-x");
    *state = fx;
    return 0;
}

/* A peer and a sink on it (majority, WTIMEOUT_MS), with the start-up conversation synced. */
static int setup(void **state)
{
    setup_bare(state);
    fx_t *fx = *state;
    ts_mongo_start(&fx->mock);
    at_err_t err;
    at_err_clear(&err);
    fx->sink = enr_sink_mongo_new(fx->mock.uri, "majority", WTIMEOUT_MS, &err);
    if (fx->sink == NULL)
        fail_msg("enr_sink_mongo_new: %s", err.msg);
    ts_mongo_sync(&fx->mock);
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    enr_sink_destroy(fx->sink);
    ts_mongo_stop(&fx->mock);
    for (size_t i = 0; i < 3; i++)
        bson_destroy(fx->events[i]);
    bson_destroy(fx->rejected[0]);
    free(fx);
    return 0;
}

static int write_events(fx_t *fx, enr_sink_result_t *res, at_err_t *err)
{
    at_err_clear(err);
    *res = (enr_sink_result_t){99, 99};
    int rc = enr_sink_write(fx->sink, (const bson_t *const *)fx->events, 3, (const bson_t *const *)fx->rejected, 1, res,
                            err);
    ts_mongo_sync(&fx->mock);
    return rc;
}

/* ---- tests ------------------------------------------------------------------------------------ */

static void test_enr_sink_mongo_new__creates_indexes(void **state)
{
    fx_t *fx = *state;
    assert_string_equal(fx->sink->ops->name, "mongodb");
    assert_int_equal(ts_mongo_count(&fx->mock, "createIndexes", NULL), 2);

    const bson_t *ev = ts_mongo_report_in(&fx->mock, "createIndexes", "events", 0);
    assert_non_null(ev);
    assert_string_equal(ts_mongo_str_field(ev, "db"), "adtrack");
    assert_int_equal(ts_mongo_report_int(ev, "indexes.0.key.c"), 1);
    assert_int_equal(ts_mongo_report_int(ev, "indexes.0.key.ts"), 1);
    assert_string_equal(ts_mongo_report_str(ev, "indexes.0.name"), "c_1_ts_1");

    const bson_t *rj = ts_mongo_report_in(&fx->mock, "createIndexes", "rejected", 0);
    assert_non_null(rj);
    assert_int_equal(ts_mongo_report_int(rj, "indexes.0.key.reason"), 1);
    assert_int_equal(ts_mongo_report_int(rj, "indexes.0.key.ts"), 1);
    assert_string_equal(ts_mongo_report_str(rj, "indexes.0.name"), "reason_1_ts_1");

    /* The handshake names the service, so it shows in the server's log and currentOp. */
    const bson_t *hs = ts_mongo_report(&fx->mock, "isMaster", 0);
    assert_non_null(hs);
    assert_string_equal(ts_mongo_report_str(hs, "client.application.name"), "adtrack-enricher");

    /* Indexes are created once, not before every write. */
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), 0);
    assert_int_equal(ts_mongo_count(&fx->mock, "createIndexes", NULL), 2);
}

static void test_enr_sink_mongo_write__insert_shape(void **state)
{
    fx_t *fx = *state;
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), 0);
    assert_int_equal(res.inserted, 4);
    assert_int_equal(res.duplicates, 0);

    assert_int_equal(ts_mongo_count(&fx->mock, "insert", "events"), 1);
    const bson_t *ins = ts_mongo_report_in(&fx->mock, "insert", "events", 0);
    assert_string_equal(ts_mongo_str_field(ins, "db"), "adtrack");
    assert_string_equal(ts_mongo_report_str(ins, "insert"), "events");
    bson_iter_t it;
    assert_true(ts_mongo_report_find(ins, "ordered", &it));
    assert_true(BSON_ITER_HOLDS_BOOL(&it));
    assert_false(bson_iter_bool(&it));
    assert_string_equal(ts_mongo_report_str(ins, "writeConcern.w"), "majority");
    assert_int_equal(ts_mongo_report_int(ins, "writeConcern.wtimeout"), WTIMEOUT_MS);
    char ids[512];
    assert_string_equal(ts_mongo_report_ids(ins, ids, sizeof(ids)), "0190a1b2-0000-7000-8000-000000000001,"
                                                                    "0190a1b2-0000-7000-8000-000000000002,"
                                                                    "0190a1b2-0000-7000-8000-000000000003");
    /* The documents travel unchanged: no ObjectId added, fields as given. */
    assert_string_equal(ts_mongo_report_str(ins, "documents.2.c"), "camp-2");
    assert_int_equal(ts_mongo_report_int(ins, "documents.0.price_micros"), 2500);
    assert_false(ts_mongo_report_has(ins, "documents.3"));

    assert_int_equal(ts_mongo_count(&fx->mock, "insert", "rejected"), 1);
    const bson_t *rej = ts_mongo_report_in(&fx->mock, "insert", "rejected", 0);
    assert_string_equal(ts_mongo_str_field(rej, "db"), "adtrack");
    assert_true(ts_mongo_report_find(rej, "ordered", &it));
    assert_false(bson_iter_bool(&it));
    assert_string_equal(ts_mongo_report_str(rej, "writeConcern.w"), "majority");
    assert_string_equal(ts_mongo_report_str(rej, "documents.0._id"), "0190a1b2-0000-7000-8000-00000000000f");
    assert_string_equal(ts_mongo_report_str(rej, "documents.0.reason"), "unknown_campaign");
}

static void test_enr_sink_mongo_write__duplicates_are_success(void **state)
{
    fx_t *fx = *state;
    ts_mongo_ctl(&fx->mock,
                 "{\"op\": \"rule\", \"cmd\": \"insert\", \"collection\": \"events\", \"action\": \"duplicate\","
                 " \"ids\": [\"0190a1b2-0000-7000-8000-000000000001\", \"0190a1b2-0000-7000-8000-000000000003\"]}");
    ts_mongo_ctl(&fx->mock,
                 "{\"op\": \"rule\", \"cmd\": \"insert\", \"collection\": \"rejected\", \"action\": \"duplicate\"}");
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), 0);
    assert_int_equal(res.inserted, 1);
    assert_int_equal(res.duplicates, 3);
    assert_int_equal(ts_mongo_count(&fx->mock, "insert", NULL), 2);
}

static void test_enr_sink_mongo_write__command_error_retriable(void **state)
{
    fx_t *fx = *state;
    /* ShutdownInProgress: the primary is going away; a later try reaches the next one. */
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"error\", \"code\": 91, \"errmsg\": "
                            "\"The server is in quiesce mode and will shut down\"}");
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), -1);
    assert_int_equal(err.code, AT_ERR_UNAVAILABLE);
    assert_true(at_err_retriable(err.code));
    assert_non_null(strstr(err.msg, "quiesce"));
    assert_int_equal(res.inserted, 0);

    /* The caller retries the same batch: it goes through. */
    assert_int_equal(write_events(fx, &res, &err), 0);
    assert_int_equal(res.inserted, 4);
    char a[512], b[512];
    assert_string_equal(ts_mongo_report_ids(ts_mongo_report_in(&fx->mock, "insert", "events", 0), a, sizeof(a)),
                        ts_mongo_report_ids(ts_mongo_report_in(&fx->mock, "insert", "events", 1), b, sizeof(b)));
}

static void test_enr_sink_mongo_write__command_error_permanent(void **state)
{
    fx_t *fx = *state;
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"error\", \"code\": 2, \"errmsg\": "
                            "\"bad value\"}");
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), -1);
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_false(at_err_retriable(err.code));
    /* The rejected documents are not sent after the events failed. */
    assert_int_equal(ts_mongo_count(&fx->mock, "insert", "rejected"), 0);
}

static void test_enr_sink_mongo_write__write_error_permanent(void **state)
{
    fx_t *fx = *state;
    /* One document fails schema validation, one is a duplicate, one is stored. */
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"reply\", \"reply\": {\"n\": 1, "
                            "\"writeErrors\": [{\"index\": 0, \"code\": 11000, \"errmsg\": \"E11000 duplicate key\"}, "
                            "{\"index\": 1, \"code\": 121, \"errmsg\": \"Document failed validation\"}]}}");
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), -1);
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_false(at_err_retriable(err.code));
    assert_non_null(strstr(err.msg, "events[1]"));
    assert_non_null(strstr(err.msg, "code 121"));
}

static void test_enr_sink_mongo_write__hangup_then_retry_same_batch(void **state)
{
    fx_t *fx = *state;
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"hangup\"}");
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), -1);
    assert_int_equal(err.code, AT_ERR_UNAVAILABLE);
    assert_true(at_err_retriable(err.code));

    assert_int_equal(write_events(fx, &res, &err), 0);
    assert_int_equal(res.inserted, 4);
    assert_int_equal(res.duplicates, 0);
    /* The retry carried exactly the documents of the dropped attempt: same _ids, in order. */
    assert_int_equal(ts_mongo_count(&fx->mock, "insert", "events"), 2);
    char a[512], b[512];
    ts_mongo_report_ids(ts_mongo_report_in(&fx->mock, "insert", "events", 0), a, sizeof(a));
    ts_mongo_report_ids(ts_mongo_report_in(&fx->mock, "insert", "events", 1), b, sizeof(b));
    assert_string_equal(a, b);
    assert_non_null(strstr(a, "0190a1b2-0000-7000-8000-000000000003"));
    assert_int_equal(ts_mongo_count(&fx->mock, "insert", "rejected"), 1);
}

static void test_enr_sink_mongo_write__hangup_after_landing_counts_duplicates(void **state)
{
    fx_t *fx = *state;
    /* The first attempt landed but its answer was lost: the retry meets its own documents. */
    ts_mongo_ctl(&fx->mock,
                 "{\"op\": \"rule\", \"cmd\": \"insert\", \"collection\": \"events\", \"action\": \"hangup\"}");
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"collection\": \"events\", \"action\": "
                            "\"duplicate\"}");
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), -1);
    assert_true(at_err_retriable(err.code));
    assert_int_equal(write_events(fx, &res, &err), 0);
    assert_int_equal(res.inserted, 1); /* the rejected document */
    assert_int_equal(res.duplicates, 3);
}

static void test_enr_sink_mongo_write__write_concern_error_retriable(void **state)
{
    fx_t *fx = *state;
    ts_mongo_ctl(&fx->mock,
                 "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"write_concern_error\", \"code\": 64}");
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), -1);
    assert_int_equal(err.code, AT_ERR_TIMEOUT);
    assert_true(at_err_retriable(err.code));
    assert_non_null(strstr(err.msg, "write concern"));

    /* On the retry the server has the documents: duplicates, and the write concern holds. */
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"collection\": \"events\", \"action\": "
                            "\"duplicate\"}");
    assert_int_equal(write_events(fx, &res, &err), 0);
    assert_int_equal(res.duplicates, 3);
    assert_int_equal(res.inserted, 1);
}

static void test_enr_sink_mongo_write__unsatisfiable_write_concern_permanent(void **state)
{
    fx_t *fx = *state;
    ts_mongo_ctl(&fx->mock,
                 "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"write_concern_error\", \"code\": 100, "
                 "\"codeName\": \"UnsatisfiableWriteConcern\", \"errmsg\": \"Not enough data-bearing nodes\"}");
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), -1);
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_false(at_err_retriable(err.code));
}

static void test_enr_sink_mongo_write__missing_id_refused(void **state)
{
    fx_t *fx = *state;
    bson_t *bad = BCON_NEW("c", "camp-1");
    const bson_t *docs[2] = {fx->events[0], bad};
    enr_sink_result_t res;
    at_err_t err;
    at_err_clear(&err);
    assert_int_equal(enr_sink_write(fx->sink, docs, 2, NULL, 0, &res, &err), -1);
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_non_null(strstr(err.msg, "events[1]"));
    ts_mongo_sync(&fx->mock);
    assert_int_equal(ts_mongo_count(&fx->mock, "insert", NULL), 0);
    bson_destroy(bad);
}

static void test_enr_sink_mongo_write__empty_batch_pings(void **state)
{
    fx_t *fx = *state;
    /* No documents: a ping to the primary proves the sink (the worker's readiness probe). */
    enr_sink_result_t res = {5, 5};
    at_err_t err;
    at_err_clear(&err);
    assert_int_equal(enr_sink_write(fx->sink, NULL, 0, NULL, 0, &res, &err), 0);
    assert_int_equal(res.inserted, 0);
    assert_int_equal(res.duplicates, 0);
    ts_mongo_sync(&fx->mock);
    assert_int_equal(ts_mongo_count(&fx->mock, "insert", NULL), 0);
    const bson_t *ping = ts_mongo_last_report(&fx->mock, "ping");
    assert_non_null(ping);
    assert_string_equal(ts_mongo_str_field(ping, "db"), "admin");

    /* Unreachable: the probe fails retriably. */
    ts_mongo_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"ping\", \"action\": \"hangup\"}");
    assert_int_equal(enr_sink_write(fx->sink, NULL, 0, NULL, 0, &res, &err), -1);
    assert_int_equal(err.code, AT_ERR_UNAVAILABLE);
    ts_mongo_sync(&fx->mock);
    assert_int_equal(ts_mongo_count(&fx->mock, "ping", NULL), 2);

    /* Only rejected documents: only the rejected collection is written, no ping. */
    assert_int_equal(enr_sink_write(fx->sink, NULL, 0, (const bson_t *const *)fx->rejected, 1, &res, &err), 0);
    assert_int_equal(res.inserted, 1);
    ts_mongo_sync(&fx->mock);
    assert_int_equal(ts_mongo_count(&fx->mock, "insert", "events"), 0);
    assert_int_equal(ts_mongo_count(&fx->mock, "insert", "rejected"), 1);
    assert_int_equal(ts_mongo_count(&fx->mock, "ping", NULL), 2);
}

/* ---- tests with their own peer ---------------------------------------------------------------- */

static void test_enr_sink_mongo_new__write_concern_options(void **state)
{
    fx_t *fx = *state;
    ts_mongo_t *m = &fx->mock;
    ts_mongo_start(m);
    at_err_t err;
    at_err_clear(&err);

    fx->sink = enr_sink_mongo_new(m->uri, "2", 0, &err);
    assert_non_null(fx->sink);
    bson_t *doc = BCON_NEW("_id", "x-1");
    const bson_t *docs[1] = {doc};
    enr_sink_result_t res;
    assert_int_equal(enr_sink_write(fx->sink, docs, 1, NULL, 0, &res, &err), 0);
    ts_mongo_sync(m);
    const bson_t *ins = ts_mongo_report_in(m, "insert", "events", 0);
    assert_non_null(ins);
    assert_int_equal(ts_mongo_report_int(ins, "writeConcern.w"), 2);
    assert_false(ts_mongo_report_has(ins, "writeConcern.wtimeout")); /* 0 = no limit: not sent */
    enr_sink_destroy(fx->sink);
    fx->sink = NULL;

    /* Refused up front, nothing sent: unacknowledged writes, nonsense numbers, bad URIs. */
    assert_null(enr_sink_mongo_new(m->uri, "0", 1000, &err));
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_null(enr_sink_mongo_new(m->uri, "3x", 1000, &err));
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_null(enr_sink_mongo_new(m->uri, "majority", -1, &err));
    assert_int_equal(err.code, AT_ERR_RANGE);
    assert_null(enr_sink_mongo_new("http://127.0.0.1:1", "majority", 1000, &err));
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_null(enr_sink_mongo_new("", "majority", 1000, &err));
    assert_int_equal(err.code, AT_ERR_INVALID);

    /* The user's URI wins over the defaults, and an empty w takes the URI's w. */
    char uri[300];
    snprintf(uri, sizeof(uri), "%s/?appname=my-enricher&w=1", m->uri);
    fx->sink = enr_sink_mongo_new(uri, "", 1500, &err);
    assert_non_null(fx->sink);
    assert_int_equal(enr_sink_write(fx->sink, docs, 1, NULL, 0, &res, &err), 0);
    ts_mongo_sync(m);
    ins = ts_mongo_report_in(m, "insert", "events", 1);
    assert_non_null(ins);
    assert_int_equal(ts_mongo_report_int(ins, "writeConcern.w"), 1);
    assert_int_equal(ts_mongo_report_int(ins, "writeConcern.wtimeout"), 1500);
    const bson_t *hs = ts_mongo_last_report(m, "isMaster");
    assert_non_null(hs);
    assert_string_equal(ts_mongo_report_str(hs, "client.application.name"), "my-enricher");
    bson_destroy(doc);
}

/* The server is down when the sink starts: construction succeeds, writes fail retriably,
 * and once the server is up the indexes are created before the inserts (at the latest
 * before the second insert that gets through). */
static void test_enr_sink_mongo_new__server_down_at_start(void **state)
{
    fx_t *fx = *state;
    ts_mongo_t *m = &fx->mock;
    int port = ts_free_port();
    assert_true(port > 0);
    char uri[128];
    snprintf(uri, sizeof(uri), "mongodb://127.0.0.1:%d/?connectTimeoutMS=1000", port);
    at_err_t err;
    at_err_clear(&err);
    int64_t t0 = ts_now_ms();
    fx->sink = enr_sink_mongo_new(uri, "majority", 1000, &err);
    assert_non_null(fx->sink);
    assert_true(ts_now_ms() - t0 < 4000); /* a refused connection fails fast, it does not wait */

    bson_t *doc = BCON_NEW("_id", "late-1", "c", "camp-1");
    const bson_t *docs[1] = {doc};
    enr_sink_result_t res;
    assert_int_equal(enr_sink_write(fx->sink, docs, 1, NULL, 0, &res, &err), -1);
    assert_int_equal(err.code, AT_ERR_UNAVAILABLE);
    assert_true(at_err_retriable(err.code));

    ts_mongo_start_port(m, port, NULL);
    /* The caller's retry loop, with a deadline: the driver keeps a host that refused a
     * connection in a 5 s cooldown before it tries it again. */
    int64_t deadline = ts_now_ms() + 20000;
    int rc;
    while ((rc = enr_sink_write(fx->sink, docs, 1, NULL, 0, &res, &err)) != 0 && ts_now_ms() < deadline) {
        assert_true(at_err_retriable(err.code));
        usleep(200 * 1000);
    }
    assert_int_equal(rc, 0);
    assert_int_equal(res.inserted, 1);
    /* The write that first got through may have raced the index attempt before it (both
     * select the server separately); by the next write the indexes exist at the latest. */
    assert_int_equal(enr_sink_write(fx->sink, docs, 1, NULL, 0, &res, &err), 0);
    ts_mongo_sync(m);
    assert_int_equal(ts_mongo_count(m, "createIndexes", "events"), 1);
    assert_int_equal(ts_mongo_count(m, "createIndexes", "rejected"), 1);
    size_t ci = ts_mongo_first_index(m, "createIndexes");
    const bson_t *last = ts_mongo_last_report(m, "insert");
    assert_true(ci != (size_t)-1);
    assert_non_null(last);
    assert_true(m->reports[ci] != last);
    size_t li = 0;
    while (m->reports[li] != last)
        li++;
    assert_true(ci < li);
    assert_string_equal(ts_mongo_report_str(last, "documents.0._id"), "late-1");
    bson_destroy(doc);
}

/* The peer keeps answering while the test leaves its reports unread (as the enricher test
 * does while it polls Kafka after clearing the rules). Each report here is ~45 KB (below
 * TS_MONGO_LINE_MAX), three of them twice the 64 KiB a pipe holds: a peer that wrote
 * reports straight into the pipe would stop answering at the second write, which would
 * then fail with a socket timeout. */
static void test_enr_sink_mongo_write__peer_answers_while_reports_unread(void **state)
{
    fx_t *fx = *state;
    enum { NEV = 100, ROUNDS = 3 };
    char pad[401];
    memset(pad, 'x', sizeof(pad) - 1);
    pad[sizeof(pad) - 1] = '\0';
    bson_t *evs[NEV];
    for (int i = 0; i < NEV; i++) {
        char id[64];
        snprintf(id, sizeof(id), "0190a1b2-0000-7000-8000-%012d", 100 + i);
        evs[i] = BCON_NEW("_id", BCON_UTF8(id), "c", "camp-1", "pad", BCON_UTF8(pad));
    }
    for (int r = 0; r < ROUNDS; r++) {
        enr_sink_result_t res = {0, 0};
        at_err_t err;
        at_err_clear(&err);
        int rc = enr_sink_write(fx->sink, (const bson_t *const *)evs, NEV, NULL, 0, &res, &err);
        if (rc != 0)
            fail_msg("write %d with the peer's reports unread: %s", r, err.msg);
        assert_int_equal(res.inserted, NEV);
    }
    ts_mongo_sync(&fx->mock);
    assert_int_equal(ts_mongo_count(&fx->mock, "insert", "events"), ROUNDS);
    const bson_t *last = ts_mongo_report_in(&fx->mock, "insert", "events", ROUNDS - 1);
    assert_string_equal(ts_mongo_report_str(last, "documents.99.pad"), pad);
    for (int i = 0; i < NEV; i++)
        bson_destroy(evs[i]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_new__creates_indexes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_write__insert_shape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_write__duplicates_are_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_write__command_error_retriable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_write__command_error_permanent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_write__write_error_permanent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_write__hangup_then_retry_same_batch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_write__hangup_after_landing_counts_duplicates, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_write__write_concern_error_retriable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_write__unsatisfiable_write_concern_permanent, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_write__missing_id_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_write__empty_batch_pings, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_write__peer_answers_while_reports_unread, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_new__write_concern_options, setup_bare, teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_new__server_down_at_start, setup_bare, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
