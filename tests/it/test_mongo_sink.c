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
#include "at_test_support.h"
#include "enr_sink.h"

#include <signal.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#include <bson/bson.h>

#define MOCK_LINE_MAX 65536
#define MOCK_TIMEOUT_MS 15000
#define WTIMEOUT_MS 2500

/* ---- the mockupdb peer ------------------------------------------------------------------------ */

typedef struct mock_s {
    ts_proc_t proc;
    int port;
    char uri[256];
    bson_t **reports; /* every {"event": "command", ...} line read so far, in arrival order */
    size_t nreports, cap;
    char *line;
} mock_t;

static const char *mock_script(void)
{
    static char path[1024];
    const char *src = getenv("ADTRACK_SOURCE_DIR");
    snprintf(path, sizeof(path), "%s/tests/support/mockupdb_server.py", src != NULL ? src : ".");
    return path;
}

static void mock_keep(mock_t *m, bson_t *report)
{
    if (m->nreports == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 32;
        m->reports = realloc(m->reports, m->cap * sizeof(*m->reports));
        assert_non_null(m->reports);
    }
    m->reports[m->nreports++] = report;
}

static const char *str_field(const bson_t *b, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, b, key) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return NULL;
}

/* Starts the peer on @p port (0 = any free port) with optional --rule arguments. */
static void mock_start_port(mock_t *m, int port, const char *const *rules)
{
    memset(m, 0, sizeof(*m));
    m->line = malloc(MOCK_LINE_MAX);
    assert_non_null(m->line);
    char portbuf[16];
    char *argv[32];
    int n = 0;
    argv[n++] = "/usr/bin/python3";
    argv[n++] = (char *)mock_script();
    if (port > 0) {
        snprintf(portbuf, sizeof(portbuf), "%d", port);
        argv[n++] = "--port";
        argv[n++] = portbuf;
    }
    for (size_t i = 0; rules != NULL && rules[i] != NULL && n < 29; i++) {
        argv[n++] = "--rule";
        argv[n++] = (char *)rules[i];
    }
    argv[n] = NULL;
    assert_int_equal(ts_spawn(&m->proc, argv, NULL, true, MOCK_TIMEOUT_MS), 0);
    bson_error_t e;
    bson_t *first = bson_new_from_json((const uint8_t *)m->proc.first_line, -1, &e);
    assert_non_null(first);
    assert_string_equal(str_field(first, "event"), "listening");
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, first, "port"));
    m->port = (int)bson_iter_as_int64(&it);
    snprintf(m->uri, sizeof(m->uri), "%s", str_field(first, "uri"));
    bson_destroy(first);
}

static void mock_start(mock_t *m)
{
    mock_start_port(m, 0, NULL);
}

/* Sends one control line and reads up to its ack, keeping the command reports on the way.
 * Because the peer reports a request before answering it, an ack read after a client call
 * returned proves that every report of that call has been kept. */
static void mock_ctl(mock_t *m, const char *json)
{
    assert_int_equal(ts_send_line(&m->proc, json), 0);
    for (;;) {
        int rc = ts_read_stdout_line(&m->proc, m->line, MOCK_LINE_MAX, MOCK_TIMEOUT_MS);
        assert_int_equal(rc, 0);
        bson_error_t e;
        bson_t *r = bson_new_from_json((const uint8_t *)m->line, -1, &e);
        if (r == NULL)
            fail_msg("mockupdb peer: unparsable line: %.200s (%s)", m->line, e.message);
        const char *ev = str_field(r, "event");
        assert_non_null(ev);
        if (strcmp(ev, "command") == 0) {
            mock_keep(m, r);
            continue;
        }
        if (strcmp(ev, "error") == 0)
            fail_msg("mockupdb peer refused control line %s: %s", json, str_field(r, "msg"));
        assert_string_equal(ev, "ack");
        bson_destroy(r);
        return;
    }
}

static void mock_sync(mock_t *m)
{
    mock_ctl(m, "{\"op\": \"sync\"}");
}

/* The @p nth (0-based) report of command @p cmd (case-insensitive), or NULL. */
static const bson_t *mock_report(const mock_t *m, const char *cmd, size_t nth)
{
    for (size_t i = 0; i < m->nreports; i++) {
        const char *c = str_field(m->reports[i], "cmd");
        if (c != NULL && strcasecmp(c, cmd) == 0 && nth-- == 0)
            return m->reports[i];
    }
    return NULL;
}

/* The latest report of command @p cmd, or NULL. */
static const bson_t *mock_last_report(const mock_t *m, const char *cmd)
{
    for (size_t i = m->nreports; i-- > 0;) {
        const char *c = str_field(m->reports[i], "cmd");
        if (c != NULL && strcasecmp(c, cmd) == 0)
            return m->reports[i];
    }
    return NULL;
}

static size_t mock_count(const mock_t *m, const char *cmd, const char *collection)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nreports; i++) {
        const char *c = str_field(m->reports[i], "cmd");
        const char *coll = str_field(m->reports[i], "collection");
        if (c != NULL && strcasecmp(c, cmd) == 0 &&
            (collection == NULL || (coll != NULL && strcmp(coll, collection) == 0)))
            n++;
    }
    return n;
}

/* Index of the first report of @p cmd, or (size_t)-1. */
static size_t mock_first_index(const mock_t *m, const char *cmd)
{
    for (size_t i = 0; i < m->nreports; i++) {
        const char *c = str_field(m->reports[i], "cmd");
        if (c != NULL && strcasecmp(c, cmd) == 0)
            return i;
    }
    return (size_t)-1;
}

/* The nth report of @p cmd for @p collection. */
static const bson_t *mock_report_in(const mock_t *m, const char *cmd, const char *collection, size_t nth)
{
    for (size_t i = 0; i < m->nreports; i++) {
        const char *c = str_field(m->reports[i], "cmd");
        const char *coll = str_field(m->reports[i], "collection");
        if (c != NULL && strcasecmp(c, cmd) == 0 && coll != NULL && strcmp(coll, collection) == 0 && nth-- == 0)
            return m->reports[i];
    }
    return NULL;
}

static void mock_stop(mock_t *m)
{
    if (m->proc.pid > 0) {
        /* SIGTERM first (the peer exits at once); ts_kill() then only closes the pipes,
         * or kills a peer that did not exit within the wait. */
        int status;
        ts_signal(&m->proc, SIGTERM);
        (void)ts_wait(&m->proc, 5000, &status);
        ts_kill(&m->proc);
    }
    for (size_t i = 0; i < m->nreports; i++)
        bson_destroy(m->reports[i]);
    free(m->reports);
    free(m->line);
    memset(m, 0, sizeof(*m));
}

/* ---- reading reported commands ---------------------------------------------------------------- */

/* Iterator on "doc.<path>" of a report (dotted path). */
static bool report_find(const bson_t *report, const char *path, bson_iter_t *out)
{
    char full[256];
    snprintf(full, sizeof(full), "doc.%s", path);
    bson_iter_t it;
    return bson_iter_init(&it, report) && bson_iter_find_descendant(&it, full, out);
}

static const char *report_str(const bson_t *report, const char *path)
{
    bson_iter_t it;
    if (report_find(report, path, &it) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return NULL;
}

static int64_t report_int(const bson_t *report, const char *path)
{
    bson_iter_t it;
    if (!report_find(report, path, &it) || !BSON_ITER_HOLDS_NUMBER(&it))
        fail_msg("report has no number at doc.%s", path);
    return bson_iter_as_int64(&it);
}

static bool report_has(const bson_t *report, const char *path)
{
    bson_iter_t it;
    return report_find(report, path, &it);
}

/* The "_id"s of doc.documents, comma-joined, into @p buf. */
static const char *report_ids(const bson_t *report, char *buf, size_t size)
{
    bson_iter_t it, docs;
    buf[0] = '\0';
    if (!report_find(report, "documents", &it) || !BSON_ITER_HOLDS_ARRAY(&it) || !bson_iter_recurse(&it, &docs))
        return buf;
    size_t len = 0;
    while (bson_iter_next(&docs)) {
        bson_iter_t d;
        const char *id = "?";
        if (bson_iter_recurse(&docs, &d) && bson_iter_find(&d, "_id") && BSON_ITER_HOLDS_UTF8(&d))
            id = bson_iter_utf8(&d, NULL);
        int n = snprintf(buf + len, size - len, "%s%s", len ? "," : "", id);
        if (n < 0 || (size_t)n >= size - len)
            break;
        len += (size_t)n;
    }
    return buf;
}

/* ---- fixtures --------------------------------------------------------------------------------- */

typedef struct fx_s {
    mock_t mock;
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
    mock_start(&fx->mock);
    at_err_t err;
    at_err_clear(&err);
    fx->sink = enr_sink_mongo_new(fx->mock.uri, "majority", WTIMEOUT_MS, &err);
    if (fx->sink == NULL)
        fail_msg("enr_sink_mongo_new: %s", err.msg);
    mock_sync(&fx->mock);
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    enr_sink_destroy(fx->sink);
    mock_stop(&fx->mock);
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
    mock_sync(&fx->mock);
    return rc;
}

/* ---- tests ------------------------------------------------------------------------------------ */

static void test_enr_sink_mongo_new__creates_indexes(void **state)
{
    fx_t *fx = *state;
    assert_string_equal(fx->sink->ops->name, "mongodb");
    assert_int_equal(mock_count(&fx->mock, "createIndexes", NULL), 2);

    const bson_t *ev = mock_report_in(&fx->mock, "createIndexes", "events", 0);
    assert_non_null(ev);
    assert_string_equal(str_field(ev, "db"), "adtrack");
    assert_int_equal(report_int(ev, "indexes.0.key.c"), 1);
    assert_int_equal(report_int(ev, "indexes.0.key.ts"), 1);
    assert_string_equal(report_str(ev, "indexes.0.name"), "c_1_ts_1");

    const bson_t *rj = mock_report_in(&fx->mock, "createIndexes", "rejected", 0);
    assert_non_null(rj);
    assert_int_equal(report_int(rj, "indexes.0.key.reason"), 1);
    assert_int_equal(report_int(rj, "indexes.0.key.ts"), 1);
    assert_string_equal(report_str(rj, "indexes.0.name"), "reason_1_ts_1");

    /* The handshake names the service, so it shows in the server's log and currentOp. */
    const bson_t *hs = mock_report(&fx->mock, "isMaster", 0);
    assert_non_null(hs);
    assert_string_equal(report_str(hs, "client.application.name"), "adtrack-enricher");

    /* Indexes are created once, not before every write. */
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), 0);
    assert_int_equal(mock_count(&fx->mock, "createIndexes", NULL), 2);
}

static void test_enr_sink_mongo_write__insert_shape(void **state)
{
    fx_t *fx = *state;
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), 0);
    assert_int_equal(res.inserted, 4);
    assert_int_equal(res.duplicates, 0);

    assert_int_equal(mock_count(&fx->mock, "insert", "events"), 1);
    const bson_t *ins = mock_report_in(&fx->mock, "insert", "events", 0);
    assert_string_equal(str_field(ins, "db"), "adtrack");
    assert_string_equal(report_str(ins, "insert"), "events");
    bson_iter_t it;
    assert_true(report_find(ins, "ordered", &it));
    assert_true(BSON_ITER_HOLDS_BOOL(&it));
    assert_false(bson_iter_bool(&it));
    assert_string_equal(report_str(ins, "writeConcern.w"), "majority");
    assert_int_equal(report_int(ins, "writeConcern.wtimeout"), WTIMEOUT_MS);
    char ids[512];
    assert_string_equal(report_ids(ins, ids, sizeof(ids)), "0190a1b2-0000-7000-8000-000000000001,"
                                                           "0190a1b2-0000-7000-8000-000000000002,"
                                                           "0190a1b2-0000-7000-8000-000000000003");
    /* The documents travel unchanged: no ObjectId added, fields as given. */
    assert_string_equal(report_str(ins, "documents.2.c"), "camp-2");
    assert_int_equal(report_int(ins, "documents.0.price_micros"), 2500);
    assert_false(report_has(ins, "documents.3"));

    assert_int_equal(mock_count(&fx->mock, "insert", "rejected"), 1);
    const bson_t *rej = mock_report_in(&fx->mock, "insert", "rejected", 0);
    assert_string_equal(str_field(rej, "db"), "adtrack");
    assert_true(report_find(rej, "ordered", &it));
    assert_false(bson_iter_bool(&it));
    assert_string_equal(report_str(rej, "writeConcern.w"), "majority");
    assert_string_equal(report_str(rej, "documents.0._id"), "0190a1b2-0000-7000-8000-00000000000f");
    assert_string_equal(report_str(rej, "documents.0.reason"), "unknown_campaign");
}

static void test_enr_sink_mongo_write__duplicates_are_success(void **state)
{
    fx_t *fx = *state;
    mock_ctl(&fx->mock,
             "{\"op\": \"rule\", \"cmd\": \"insert\", \"collection\": \"events\", \"action\": \"duplicate\","
             " \"ids\": [\"0190a1b2-0000-7000-8000-000000000001\", \"0190a1b2-0000-7000-8000-000000000003\"]}");
    mock_ctl(&fx->mock,
             "{\"op\": \"rule\", \"cmd\": \"insert\", \"collection\": \"rejected\", \"action\": \"duplicate\"}");
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), 0);
    assert_int_equal(res.inserted, 1);
    assert_int_equal(res.duplicates, 3);
    assert_int_equal(mock_count(&fx->mock, "insert", NULL), 2);
}

static void test_enr_sink_mongo_write__command_error_retriable(void **state)
{
    fx_t *fx = *state;
    /* ShutdownInProgress: the primary is going away; a later try reaches the next one. */
    mock_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"error\", \"code\": 91, \"errmsg\": "
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
    assert_string_equal(report_ids(mock_report_in(&fx->mock, "insert", "events", 0), a, sizeof(a)),
                        report_ids(mock_report_in(&fx->mock, "insert", "events", 1), b, sizeof(b)));
}

static void test_enr_sink_mongo_write__command_error_permanent(void **state)
{
    fx_t *fx = *state;
    mock_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"error\", \"code\": 2, \"errmsg\": "
                        "\"bad value\"}");
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), -1);
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_false(at_err_retriable(err.code));
    /* The rejected documents are not sent after the events failed. */
    assert_int_equal(mock_count(&fx->mock, "insert", "rejected"), 0);
}

static void test_enr_sink_mongo_write__write_error_permanent(void **state)
{
    fx_t *fx = *state;
    /* One document fails schema validation, one is a duplicate, one is stored. */
    mock_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"reply\", \"reply\": {\"n\": 1, "
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
    mock_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"hangup\"}");
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), -1);
    assert_int_equal(err.code, AT_ERR_UNAVAILABLE);
    assert_true(at_err_retriable(err.code));

    assert_int_equal(write_events(fx, &res, &err), 0);
    assert_int_equal(res.inserted, 4);
    assert_int_equal(res.duplicates, 0);
    /* The retry carried exactly the documents of the dropped attempt: same _ids, in order. */
    assert_int_equal(mock_count(&fx->mock, "insert", "events"), 2);
    char a[512], b[512];
    report_ids(mock_report_in(&fx->mock, "insert", "events", 0), a, sizeof(a));
    report_ids(mock_report_in(&fx->mock, "insert", "events", 1), b, sizeof(b));
    assert_string_equal(a, b);
    assert_non_null(strstr(a, "0190a1b2-0000-7000-8000-000000000003"));
    assert_int_equal(mock_count(&fx->mock, "insert", "rejected"), 1);
}

static void test_enr_sink_mongo_write__hangup_after_landing_counts_duplicates(void **state)
{
    fx_t *fx = *state;
    /* The first attempt landed but its answer was lost: the retry meets its own documents. */
    mock_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"collection\": \"events\", \"action\": \"hangup\"}");
    mock_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"collection\": \"events\", \"action\": "
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
    mock_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"write_concern_error\", \"code\": 64}");
    enr_sink_result_t res;
    at_err_t err;
    assert_int_equal(write_events(fx, &res, &err), -1);
    assert_int_equal(err.code, AT_ERR_TIMEOUT);
    assert_true(at_err_retriable(err.code));
    assert_non_null(strstr(err.msg, "write concern"));

    /* On the retry the server has the documents: duplicates, and the write concern holds. */
    mock_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"collection\": \"events\", \"action\": "
                        "\"duplicate\"}");
    assert_int_equal(write_events(fx, &res, &err), 0);
    assert_int_equal(res.duplicates, 3);
    assert_int_equal(res.inserted, 1);
}

static void test_enr_sink_mongo_write__unsatisfiable_write_concern_permanent(void **state)
{
    fx_t *fx = *state;
    mock_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"write_concern_error\", \"code\": 100, "
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
    mock_sync(&fx->mock);
    assert_int_equal(mock_count(&fx->mock, "insert", NULL), 0);
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
    mock_sync(&fx->mock);
    assert_int_equal(mock_count(&fx->mock, "insert", NULL), 0);
    const bson_t *ping = mock_last_report(&fx->mock, "ping");
    assert_non_null(ping);
    assert_string_equal(str_field(ping, "db"), "admin");

    /* Unreachable: the probe fails retriably. */
    mock_ctl(&fx->mock, "{\"op\": \"rule\", \"cmd\": \"ping\", \"action\": \"hangup\"}");
    assert_int_equal(enr_sink_write(fx->sink, NULL, 0, NULL, 0, &res, &err), -1);
    assert_int_equal(err.code, AT_ERR_UNAVAILABLE);
    mock_sync(&fx->mock);
    assert_int_equal(mock_count(&fx->mock, "ping", NULL), 2);

    /* Only rejected documents: only the rejected collection is written, no ping. */
    assert_int_equal(enr_sink_write(fx->sink, NULL, 0, (const bson_t *const *)fx->rejected, 1, &res, &err), 0);
    assert_int_equal(res.inserted, 1);
    mock_sync(&fx->mock);
    assert_int_equal(mock_count(&fx->mock, "insert", "events"), 0);
    assert_int_equal(mock_count(&fx->mock, "insert", "rejected"), 1);
    assert_int_equal(mock_count(&fx->mock, "ping", NULL), 2);
}

/* ---- tests with their own peer ---------------------------------------------------------------- */

static void test_enr_sink_mongo_new__write_concern_options(void **state)
{
    fx_t *fx = *state;
    mock_t *m = &fx->mock;
    mock_start(m);
    at_err_t err;
    at_err_clear(&err);

    fx->sink = enr_sink_mongo_new(m->uri, "2", 0, &err);
    assert_non_null(fx->sink);
    bson_t *doc = BCON_NEW("_id", "x-1");
    const bson_t *docs[1] = {doc};
    enr_sink_result_t res;
    assert_int_equal(enr_sink_write(fx->sink, docs, 1, NULL, 0, &res, &err), 0);
    mock_sync(m);
    const bson_t *ins = mock_report_in(m, "insert", "events", 0);
    assert_non_null(ins);
    assert_int_equal(report_int(ins, "writeConcern.w"), 2);
    assert_false(report_has(ins, "writeConcern.wtimeout")); /* 0 = no limit: not sent */
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
    mock_sync(m);
    ins = mock_report_in(m, "insert", "events", 1);
    assert_non_null(ins);
    assert_int_equal(report_int(ins, "writeConcern.w"), 1);
    assert_int_equal(report_int(ins, "writeConcern.wtimeout"), 1500);
    const bson_t *hs = mock_last_report(m, "isMaster");
    assert_non_null(hs);
    assert_string_equal(report_str(hs, "client.application.name"), "my-enricher");
    bson_destroy(doc);
}

/* The server is down when the sink starts: construction succeeds, writes fail retriably,
 * and once the server is up the indexes are created before the inserts (at the latest
 * before the second insert that gets through). */
static void test_enr_sink_mongo_new__server_down_at_start(void **state)
{
    fx_t *fx = *state;
    mock_t *m = &fx->mock;
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

    mock_start_port(m, port, NULL);
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
    mock_sync(m);
    assert_int_equal(mock_count(m, "createIndexes", "events"), 1);
    assert_int_equal(mock_count(m, "createIndexes", "rejected"), 1);
    size_t ci = mock_first_index(m, "createIndexes");
    const bson_t *last = mock_last_report(m, "insert");
    assert_true(ci != (size_t)-1);
    assert_non_null(last);
    assert_true(m->reports[ci] != last);
    size_t li = 0;
    while (m->reports[li] != last)
        li++;
    assert_true(ci < li);
    assert_string_equal(report_str(last, "documents.0._id"), "late-1");
    bson_destroy(doc);
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
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_new__write_concern_options, setup_bare, teardown),
        cmocka_unit_test_setup_teardown(test_enr_sink_mongo_new__server_down_at_start, setup_bare, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
