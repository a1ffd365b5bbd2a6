/*
 * at_test_mongo.c: see at_test_mongo.h.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "at_test_mongo.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *mock_script(void)
{
    static char path[1024];
    const char *src = getenv("ADTRACK_SOURCE_DIR");
    snprintf(path, sizeof(path), "%s/tests/support/mockupdb_server.py", src != NULL ? src : ".");
    return path;
}

static void mock_keep(ts_mongo_t *m, bson_t *report)
{
    if (m->nreports == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 32;
        m->reports = realloc(m->reports, m->cap * sizeof(*m->reports));
        assert_non_null(m->reports);
    }
    m->reports[m->nreports++] = report;
}

const char *ts_mongo_str_field(const bson_t *b, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, b, key) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return NULL;
}

static void mock_start(ts_mongo_t *m, int port, const char *const *rules, const char *const *args);

void ts_mongo_start_port(ts_mongo_t *m, int port, const char *const *rules)
{
    mock_start(m, port, rules, NULL);
}

void ts_mongo_start_args(ts_mongo_t *m, const char *const *args)
{
    mock_start(m, 0, NULL, args);
}

static void mock_start(ts_mongo_t *m, int port, const char *const *rules, const char *const *args)
{
    memset(m, 0, sizeof(*m));
    m->line = malloc(TS_MONGO_LINE_MAX);
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
    for (size_t i = 0; args != NULL && args[i] != NULL && n < 31; i++)
        argv[n++] = (char *)args[i];
    argv[n] = NULL;
    assert_int_equal(ts_spawn(&m->proc, argv, NULL, true, TS_MONGO_TIMEOUT_MS), 0);
    bson_error_t e;
    bson_t *first = bson_new_from_json((const uint8_t *)m->proc.first_line, -1, &e);
    assert_non_null(first);
    assert_string_equal(ts_mongo_str_field(first, "event"), "listening");
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, first, "port"));
    m->port = (int)bson_iter_as_int64(&it);
    snprintf(m->uri, sizeof(m->uri), "%s", ts_mongo_str_field(first, "uri"));
    bson_destroy(first);
}

void ts_mongo_start(ts_mongo_t *m)
{
    ts_mongo_start_port(m, 0, NULL);
}

void ts_mongo_ctl(ts_mongo_t *m, const char *json)
{
    bson_destroy(ts_mongo_ctl_ack(m, json));
}

bson_t *ts_mongo_ctl_ack(ts_mongo_t *m, const char *json)
{
    assert_int_equal(ts_send_line(&m->proc, json), 0);
    for (;;) {
        int rc = ts_read_stdout_line(&m->proc, m->line, TS_MONGO_LINE_MAX, TS_MONGO_TIMEOUT_MS);
        assert_int_equal(rc, 0);
        bson_error_t e;
        bson_t *r = bson_new_from_json((const uint8_t *)m->line, -1, &e);
        if (r == NULL)
            fail_msg("mockupdb peer: unparsable line: %.200s (%s)", m->line, e.message);
        const char *ev = ts_mongo_str_field(r, "event");
        assert_non_null(ev);
        if (strcmp(ev, "command") == 0) {
            mock_keep(m, r);
            continue;
        }
        if (strcmp(ev, "error") == 0)
            fail_msg("mockupdb peer refused control line %s: %s", json, ts_mongo_str_field(r, "msg"));
        assert_string_equal(ev, "ack");
        return r;
    }
}

void ts_mongo_sync(ts_mongo_t *m)
{
    ts_mongo_ctl(m, "{\"op\": \"sync\"}");
}

void ts_mongo_stop(ts_mongo_t *m)
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

const bson_t *ts_mongo_report(const ts_mongo_t *m, const char *cmd, size_t nth)
{
    for (size_t i = 0; i < m->nreports; i++) {
        const char *c = ts_mongo_str_field(m->reports[i], "cmd");
        if (c != NULL && strcasecmp(c, cmd) == 0 && nth-- == 0)
            return m->reports[i];
    }
    return NULL;
}

const bson_t *ts_mongo_last_report(const ts_mongo_t *m, const char *cmd)
{
    for (size_t i = m->nreports; i-- > 0;) {
        const char *c = ts_mongo_str_field(m->reports[i], "cmd");
        if (c != NULL && strcasecmp(c, cmd) == 0)
            return m->reports[i];
    }
    return NULL;
}

size_t ts_mongo_count(const ts_mongo_t *m, const char *cmd, const char *collection)
{
    size_t n = 0;
    for (size_t i = 0; i < m->nreports; i++) {
        const char *c = ts_mongo_str_field(m->reports[i], "cmd");
        const char *coll = ts_mongo_str_field(m->reports[i], "collection");
        if (c != NULL && strcasecmp(c, cmd) == 0 &&
            (collection == NULL || (coll != NULL && strcmp(coll, collection) == 0)))
            n++;
    }
    return n;
}

size_t ts_mongo_first_index(const ts_mongo_t *m, const char *cmd)
{
    for (size_t i = 0; i < m->nreports; i++) {
        const char *c = ts_mongo_str_field(m->reports[i], "cmd");
        if (c != NULL && strcasecmp(c, cmd) == 0)
            return i;
    }
    return (size_t)-1;
}

const bson_t *ts_mongo_report_in(const ts_mongo_t *m, const char *cmd, const char *collection, size_t nth)
{
    for (size_t i = 0; i < m->nreports; i++) {
        const char *c = ts_mongo_str_field(m->reports[i], "cmd");
        const char *coll = ts_mongo_str_field(m->reports[i], "collection");
        if (c != NULL && strcasecmp(c, cmd) == 0 && coll != NULL && strcmp(coll, collection) == 0 && nth-- == 0)
            return m->reports[i];
    }
    return NULL;
}

/* ---- reading reported commands ---------------------------------------------------------------- */

bool ts_mongo_report_find(const bson_t *report, const char *path, bson_iter_t *out)
{
    char full[256];
    snprintf(full, sizeof(full), "doc.%s", path);
    bson_iter_t it;
    return bson_iter_init(&it, report) && bson_iter_find_descendant(&it, full, out);
}

const char *ts_mongo_report_str(const bson_t *report, const char *path)
{
    bson_iter_t it;
    if (ts_mongo_report_find(report, path, &it) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return NULL;
}

int64_t ts_mongo_report_int(const bson_t *report, const char *path)
{
    bson_iter_t it;
    if (!ts_mongo_report_find(report, path, &it) || !BSON_ITER_HOLDS_NUMBER(&it))
        fail_msg("report has no number at doc.%s", path);
    return bson_iter_as_int64(&it);
}

bool ts_mongo_report_has(const bson_t *report, const char *path)
{
    bson_iter_t it;
    return ts_mongo_report_find(report, path, &it);
}

const char *ts_mongo_report_ids(const bson_t *report, char *buf, size_t size)
{
    bson_iter_t it, docs;
    buf[0] = '\0';
    if (!ts_mongo_report_find(report, "documents", &it) || !BSON_ITER_HOLDS_ARRAY(&it) ||
        !bson_iter_recurse(&it, &docs))
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
