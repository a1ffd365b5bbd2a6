/*
 * at_test_mongo.h: a scripted MongoDB wire peer for integration tests
 * (tests/support/mockupdb_server.py, mockupdb under Debian's /usr/bin/python3).
 *
 * A test starts its own peer, scripts its replies with control lines, drives a client
 * against ts_mongo_t.uri, and then asserts the wire conversation the peer reported: every
 * {"event": "command", ...} line is kept, in arrival order, while control lines are acked.
 *
 * These helpers fail the running cmocka test (assert_* / fail_msg) on any problem with the
 * peer itself, so they may only be called from inside a cmocka test or fixture.
 */
#ifndef AT_TEST_MONGO_H
#define AT_TEST_MONGO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

#include "at_test_support.h"

#define TS_MONGO_LINE_MAX 65536
#define TS_MONGO_TIMEOUT_MS 15000

/* A running peer. */
typedef struct ts_mongo_s {
    ts_proc_t proc;
    int port;
    char uri[256];
    bson_t **reports; /* every {"event": "command", ...} line read so far, in arrival order */
    size_t nreports, cap;
    char *line;
} ts_mongo_t;

/* Starts the peer on @p port (0 = any free port) with optional --rule arguments
 * (NULL-terminated, may be NULL). */
void ts_mongo_start_port(ts_mongo_t *m, int port, const char *const *rules);

/* Starts the peer on any free port, without rules. */
void ts_mongo_start(ts_mongo_t *m);

/* Starts the peer on any free port with extra command-line arguments (NULL-terminated), e.g.
 * {"--store", "--store-fields", "_id,tag", "--quiet", NULL}. */
void ts_mongo_start_args(ts_mongo_t *m, const char *const *args);

/* Sends one control line and reads up to its ack, keeping the command reports on the way.
 * Because the peer reports a request before answering it, an ack read after a client call
 * returned proves that every report of that call has been kept. */
void ts_mongo_ctl(ts_mongo_t *m, const char *json);

/* ts_mongo_ctl(), returning the ack document (the caller destroys it). */
bson_t *ts_mongo_ctl_ack(ts_mongo_t *m, const char *json);

/* ts_mongo_ctl() with {"op": "sync"}. */
void ts_mongo_sync(ts_mongo_t *m);

/* Stops the peer (SIGTERM, then ts_kill()) and frees the reports; safe on a zeroed or
 * already-stopped ts_mongo_t. */
void ts_mongo_stop(ts_mongo_t *m);

/* The @p nth (0-based) report of command @p cmd (case-insensitive), or NULL. */
const bson_t *ts_mongo_report(const ts_mongo_t *m, const char *cmd, size_t nth);

/* The latest report of command @p cmd, or NULL. */
const bson_t *ts_mongo_last_report(const ts_mongo_t *m, const char *cmd);

/* How many reports of @p cmd there are for @p collection (NULL = any collection). */
size_t ts_mongo_count(const ts_mongo_t *m, const char *cmd, const char *collection);

/* Index of the first report of @p cmd, or (size_t)-1. */
size_t ts_mongo_first_index(const ts_mongo_t *m, const char *cmd);

/* The @p nth report of @p cmd for @p collection, or NULL. */
const bson_t *ts_mongo_report_in(const ts_mongo_t *m, const char *cmd, const char *collection, size_t nth);

/* ---- reading reported commands ---------------------------------------------------------------- */

/* The top-level UTF-8 field @p key of @p b, or NULL. */
const char *ts_mongo_str_field(const bson_t *b, const char *key);

/* Iterator on "doc.<path>" of a report (dotted path). */
bool ts_mongo_report_find(const bson_t *report, const char *path, bson_iter_t *out);

/* The string at "doc.<path>", or NULL. */
const char *ts_mongo_report_str(const bson_t *report, const char *path);

/* The number at "doc.<path>"; fails the test when there is none. */
int64_t ts_mongo_report_int(const bson_t *report, const char *path);

/* Whether "doc.<path>" exists. */
bool ts_mongo_report_has(const bson_t *report, const char *path);

/* The "_id"s of doc.documents, comma-joined, into @p buf. Returns @p buf. */
const char *ts_mongo_report_ids(const bson_t *report, char *buf, size_t size);

#endif
