/*
 * rec_store.h: where `adtrack rollups reconcile` reads events, rejected events and rollups,
 * and writes corrections (docs/REPORTS.md, "Reconciliation"):
 *  - MongoDB (rec_store_mongo.c): the collections events, rejected and stats_hourly of the
 *    database adtrack, read with streamed finds one hour at a time;
 *  - the enricher's file sink (rec_store_files.c): events-*.jsonl, rejected-*.jsonl,
 *    stats_hourly-*.jsonl and stats_hourly-corrections.jsonl of one or more data
 *    directories, read in one pass over the whole range.
 *
 * A store belongs to its caller; one thread.
 */
#ifndef REC_STORE_H
#define REC_STORE_H

#include <bson/bson.h>
#include <stdint.h>

#include "at_err.h"
#include "rec_tally.h"

typedef struct rec_store_s rec_store_t;

struct rec_store_s {
    /* How many milliseconds of the range one load covers: one hour for MongoDB (memory
     * bounded by an hour's groups), the whole range for files (every file is read once). */
    int64_t (*step_ms)(rec_store_t *s, int64_t from_ms, int64_t to_ms);
    /* Feeds every event, rejected event and stats_hourly document of [from_ms, to_ms) into
     * @p t. 0, or -1 + err (unreachable store: AT_ERR_UNAVAILABLE/TIMEOUT/AUTH; unreadable
     * file: AT_ERR_IO; malformed document: AT_ERR_INVALID). */
    int (*load)(rec_store_t *s, rec_tally_t *t, int64_t from_ms, int64_t to_ms, at_err_t *err);
    /* Writes the correction documents (rec_correction_new()), durably: MongoDB replaces or
     * inserts each by _id with the write concern majority; files append them to
     * stats_hourly-corrections.jsonl of the first directory and fdatasync it. 0 or -1 + err;
     * on -1, *@p written (may be NULL) says how many of the first ones are durable. */
    int (*write)(rec_store_t *s, bson_t *const *docs, size_t n, size_t *written, at_err_t *err);
    void (*free)(rec_store_t *s);
};

/* A store on the MongoDB at @p uri (database adtrack). Does not connect yet: the first load
 * does, and reports an unreachable server. NULL + err for a malformed URI. The caller frees
 * it with rec_store_free(). */
rec_store_t *rec_store_mongo_new(const char *uri, at_err_t *err);

/* A store on the file sinks in @p dirs (@p ndirs >= 1, the strings are copied). NULL + err
 * when a directory cannot be opened. */
rec_store_t *rec_store_files_new(char *const *dirs, size_t ndirs, at_err_t *err);

/* Accepts NULL. */
void rec_store_free(rec_store_t *s);

#endif
