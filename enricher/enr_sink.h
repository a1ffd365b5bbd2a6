/*
 * enr_sink.h: where enriched events land. Two implementations: MongoDB (enr_sink_mongo.c)
 * and the embedded file sink (enr_sink_file.c, mongoimport-compatible JSON lines).
 *
 * The enricher commits Kafka offsets only after write() returned 0 for the batch, so every
 * sink must be idempotent: the same batch may be written again after a failure, a
 * rebalance or a restart, and must still end up stored exactly once (_id = event id).
 */
#ifndef ENR_SINK_H
#define ENR_SINK_H

#include <bson/bson.h>
#include "at_err.h"

typedef struct enr_sink_s enr_sink_t;

/* One document already written as its relaxed Extended JSON line (see write_lines). */
typedef struct enr_line_s {
    const char *id; /* its "_id" string */
    size_t idlen;
    const char *json; /* exactly what at_json_append_relaxed() writes for it; no newline */
    size_t len;
} enr_line_t;

typedef struct enr_sink_result_s {
    size_t inserted;   /* new documents stored */
    size_t duplicates; /* documents that were already stored (counted as success) */
} enr_sink_result_t;

typedef struct enr_sink_ops_s {
    /*
     * Stores @p nevents enriched event documents (each with "_id" = event id) in
     * adtrack.events and @p nrejected rejected documents (each with "_id", "reason",
     * "detail") in adtrack.rejected. Returns 0 once all are durably acknowledged
     * (duplicate ids count as success), or -1 with @p err; at_err_retriable(err->code)
     * says whether trying the same batch again later may succeed. The documents stay the
     * caller's. @locality: the enricher worker thread that owns the sink.
     */
    int (*write)(enr_sink_t *s, const bson_t *const *events, size_t nevents, const bson_t *const *rejected,
                 size_t nrejected, enr_sink_result_t *res, at_err_t *err);
    /*
     * Optional (NULL when the sink stores BSON): as write(), but the events come as their
     * JSON lines, so the caller need not build BSON documents for them. The lines stay the
     * caller's. @locality: as write().
     */
    int (*write_lines)(enr_sink_t *s, const enr_line_t *events, size_t nevents, const bson_t *const *rejected,
                       size_t nrejected, enr_sink_result_t *res, at_err_t *err);
    /* Frees the sink; accepts NULL. */
    void (*destroy)(enr_sink_t *s);
    const char *name; /* "mongodb" or "file" */
} enr_sink_ops_t;

struct enr_sink_s {
    const enr_sink_ops_t *ops;
};

/*
 * MongoDB sink: @p uri (mongodb://...), database "adtrack", collections "events" and
 * "rejected"; unordered bulk inserts; write concern from @p w ("majority" or a number as
 * text) with @p wtimeout_ms; creates indexes {c:1, ts:1} on events (and {reason:1, ts:1}
 * on rejected) at start-up when the server is reachable (retried on the first write
 * otherwise). Returns NULL + err on a malformed URI or options.
 */
enr_sink_t *enr_sink_mongo_new(const char *uri, const char *w, int64_t wtimeout_ms, at_err_t *err);

/*
 * File sink: appends events to <dir>/events-<seq>.jsonl and rejected documents to
 * <dir>/rejected-<seq>.jsonl (one relaxed Extended JSON document per line, loadable
 * unchanged with `mongoimport --type json`), fsyncs before returning, and rotates a file
 * once it passes @p rotate_bytes. Idempotent across restarts by remembering the ids it
 * wrote (see enr_sink_file.c for how). Returns NULL + err when @p dir is unusable.
 */
enr_sink_t *enr_sink_file_new(const char *dir, int64_t rotate_bytes, at_err_t *err);

static inline int enr_sink_write(enr_sink_t *s, const bson_t *const *events, size_t nevents,
                                 const bson_t *const *rejected, size_t nrejected, enr_sink_result_t *res,
                                 at_err_t *err)
{
    return s->ops->write(s, events, nevents, rejected, nrejected, res, err);
}

/* True when the sink takes events as JSON lines (enr_sink_write_lines()). */
static inline bool enr_sink_takes_lines(const enr_sink_t *s)
{
    return s->ops->write_lines != NULL;
}

static inline int enr_sink_write_lines(enr_sink_t *s, const enr_line_t *events, size_t nevents,
                                       const bson_t *const *rejected, size_t nrejected, enr_sink_result_t *res,
                                       at_err_t *err)
{
    return s->ops->write_lines(s, events, nevents, rejected, nrejected, res, err);
}

static inline void enr_sink_destroy(enr_sink_t *s)
{
    if (s != NULL)
        s->ops->destroy(s);
}

#endif
