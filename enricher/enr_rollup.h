/*
 * enr_rollup.h: the hourly rollups (`stats_hourly`, docs/REPORTS.md "Hourly rollups"),
 * counted exactly once by the offset gate.
 *
 * One document per (UTC hour of ts, c, cr, p, pl, raw-topic partition k). A document
 * remembers in "o" the highest offset of its partition that it counted; an event is added
 * only when its offset is above "o", and the write that adds it moves "o" in the same
 * single-document write, conditional on "o" still being what was read. A redelivered batch
 * (whole, or cut at another place) therefore never counts an event twice, and two workers
 * racing on one partition (a zombie after a rebalance) cannot either: the loser's
 * conditional write misses, it re-reads "o" and recomputes. FerretDB's conditional update
 * is not atomic (both racers may be told they matched, and the later replace wins), so
 * after a bulk whose writes all matched the MongoDB store reads "o" back and recomputes
 * what another writer's replace erased (docs/ENRICHER.md "Rollups").
 *
 * Use per batch, after the sink acknowledged it:
 *     enr_rollup_begin(r);
 *     for each message: enr_rollup_add(r, &ev);   (no I/O; copies what it keeps)
 *     enr_rollup_commit(r, now_ms, &res, &err);   (the store's I/O)
 * A failed commit changes nothing that matters: the same batch is added and committed
 * again (the worker retries it), and the gate drops whatever did reach the store.
 *
 * Two stores, chosen like the sink:
 *  - MongoDB (enr_rollup_mongo_new): collection adtrack.stats_hourly; "o" per document is
 *    cached in memory, documents not seen since the last enr_rollup_forget() are read with
 *    one find {_id: {$in: [...]}} per batch; then one unordered bulk of conditional
 *    updates ($inc, $max on u.<register>, $set o and mt) and inserts of new documents.
 *  - files (enr_rollup_file_new): <dir>/stats_hourly-<seq>.jsonl, each line the whole new
 *    version of a document the batch changed; the state in memory is authoritative and is
 *    rebuilt from the files at start-up (last line per _id wins).
 *
 * @locality: one enricher worker thread owns a rollup store; no locking.
 */
#ifndef ENR_ROLLUP_H
#define ENR_ROLLUP_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "at_err.h"
#include "at_event.h"
#include "at_hll.h"

typedef struct enr_rollup_s enr_rollup_t;

/* One consumed message as the rollups see it. The strings are only read during
 * enr_rollup_add(). */
typedef struct enr_rollup_event_s {
    int32_t k;              /* raw-topic partition */
    int64_t offset;         /* its offset in that partition */
    bool has_ts;            /* false: unreadable envelope, not counted (no hour) */
    int64_t ts_ms;
    at_event_type_t type;
    at_reject_t reason;     /* AT_REJ_NONE: stored in events; else stored in rejected */
    at_str_t c, cr, p, pl;  /* the event's dimensions ({NULL, 0} = absent) */
    at_str_t adv;           /* the campaign's advertiser as the worker saw it, or absent */
    at_str_t uid;           /* counted in the unique users of valid events; absent: not counted */
    int64_t price_micros;   /* the stored event's price_micros (valid events) */
    int64_t payout_micros;  /* the stored event's payout_micros (attribution), or 0 */
} enr_rollup_event_t;

typedef struct enr_rollup_result_s {
    size_t documents;  /* documents written (updated, inserted or appended) */
    size_t gate_skips; /* events not counted because their document had counted them already */
    size_t rounds;     /* MongoDB: write rounds (a conditional write that missed costs one more) */
    size_t lost_writes; /* MongoDB: writes reported as matched whose "o" was not ours when read back
                         * (a concurrent writer replaced the document; counted again) */
} enr_rollup_result_t;

/* The counters of one document (also the in-memory form the tests read). */
typedef struct enr_rollup_counts_s {
    int64_t imp, view, click, conv, spend, payout, rejected;
    int64_t rej[AT_REJ__COUNT]; /* by reason; rej[0] unused */
} enr_rollup_counts_t;

/*
 * Rejected events of these reasons leave the campaign known and count under the event's
 * own c, cr, p, pl; all others under c = cr = p = pl = "" (docs/REPORTS.md).
 */
bool enr_rollup_reason_keeps_dims(at_reject_t r);

/*
 * Writes the document _id "<YYYY-MM-DDTHH>|<c>|<cr>|<p>|<pl>|<k>" for the hour containing
 * @p ts_ms into @p out (NUL-terminated). Returns its length, or 0 when @p size is too small.
 */
size_t enr_rollup_format_id(char *out, size_t size, int64_t ts_ms, at_str_t c, at_str_t cr, at_str_t p, at_str_t pl,
                            int32_t k);

/*
 * The "payout_micros" of a stored event (attribution adds it to conversions), from its BSON
 * document or from its JSON line as the file sink writes it (at_json_append_relaxed()'s
 * bytes: "payout_micros" : <integer>). 0 when the event has none.
 */
int64_t enr_rollup_payout_bson(const bson_t *event);
int64_t enr_rollup_payout_line(const char *json, size_t len);

/* Start of the UTC hour containing @p ts_ms (floor, also before 1970). */
int64_t enr_rollup_hour_ms(int64_t ts_ms);

/*
 * MongoDB store: a client of its own for @p uri with the sink's write concern (@p w,
 * @p wtimeout_ms), collection adtrack.stats_hourly; creates the indexes {mt:1} and
 * {h:1, c:1} when the server answers (retried before later writes otherwise). Does not
 * touch the network otherwise. NULL + err on a malformed URI. Free with
 * enr_rollup_destroy().
 */
enr_rollup_t *enr_rollup_mongo_new(const char *uri, const char *w, int64_t wtimeout_ms, at_err_t *err);

/*
 * File store in @p dir (which must exist): rebuilds the documents from
 * stats_hourly-<seq>.jsonl (cutting a torn last line of the newest file), then appends to
 * the newest file, rotating past @p rotate_bytes. Documents whose hour is more than
 * @p keep_hours older than the newest hour seen are dropped from memory (only their "o"
 * and the place of their last line stay) and read back from their line when an event
 * needs them. NULL + err when a file cannot be read or holds a line that is not a rollup
 * document (naming the file and line).
 */
enr_rollup_t *enr_rollup_file_new(const char *dir, int64_t rotate_bytes, int64_t keep_hours, at_err_t *err);

/* Starts a batch (drops what an earlier, uncommitted batch added). */
void enr_rollup_begin(enr_rollup_t *r);

/* Adds one message of the batch. Messages of one partition come in offset order. -1 only
 * when memory runs out (err set). No I/O. */
int enr_rollup_add(enr_rollup_t *r, const enr_rollup_event_t *ev, at_err_t *err);

/*
 * Writes the batch's contributions through the offset gate. 0, or -1 + err
 * (at_err_retriable() says whether trying again may help); after a failure the caller
 * begins, adds and commits the same batch again. @p now_ms is the "mt" of the documents
 * written. @locality: the owning worker thread.
 */
int enr_rollup_commit(enr_rollup_t *r, int64_t now_ms, enr_rollup_result_t *res, at_err_t *err);

/* MongoDB: forgets the cached "o" of every document (the partitions were re-assigned, so
 * another worker may have moved them); a no-op for the file store, whose state is its own. */
void enr_rollup_forget(enr_rollup_t *r);

/*
 * For the tests: the in-memory state of document @p id in the file store (counts, unique
 * users, "o"), reloading it from its line if it was dropped from memory. false when the
 * store does not know the document (or is the MongoDB store).
 */
bool enr_rollup_file_peek(enr_rollup_t *r, const char *id, enr_rollup_counts_t *counts, at_hll_t *u, int64_t *o);

/* For the tests: @p fn(@p ctx) runs on the committing thread after each MongoDB bulk write
 * has returned and before its gates are read back, so that a test can play the concurrent
 * writer whose whole-document replace lands after ours (FerretDB, docs/ENRICHER.md
 * "Rollups"). NULL: none. */
typedef void (*enr_rollup_write_hook_fn)(void *ctx);
void enr_rollup_set_write_hook(enr_rollup_t *r, enr_rollup_write_hook_fn fn, void *ctx);

/* Documents the file store knows, and how many of them are held in memory in full. */
void enr_rollup_file_sizes(const enr_rollup_t *r, size_t *known, size_t *loaded);

void enr_rollup_destroy(enr_rollup_t *r);

#endif
