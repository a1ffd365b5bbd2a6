/*
 * rec_tally.h: the pure part of `adtrack rollups reconcile` (docs/REPORTS.md,
 * "Reconciliation"): hour ranges, the recount of stored events per (UTC hour, c, cr, p, pl)
 * group, the sum of the stats_hourly documents of each group, their comparison, and the
 * correction document that makes the sum equal the recount. No I/O: the stores
 * (rec_mongo.c, rec_files.c) feed documents in, reconcile.c prints and writes.
 *
 * A group's key is "<YYYY-MM-DDTHH>|<c>|<cr>|<p>|<pl>", which is a rollup document's _id
 * without its last "|<k>": dimensions are ids of [A-Za-z0-9._:-], so '|' cannot occur in them.
 *
 * A tally belongs to its caller; one thread.
 */
#ifndef REC_TALLY_H
#define REC_TALLY_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "at_err.h"
#include "at_hll.h"

#define REC_HOUR_MS INT64_C(3600000)
#define REC_HOUR_STR_LEN 13 /* "YYYY-MM-DDTHH" */

/*
 * Parses the start of an hour: "YYYY-MM-DDTHH" (that hour) or "YYYY-MM-DD" (00:00 of that
 * day), UTC, with an optional trailing "Z" or ":00" / ":00:00". Into *@p hour_ms
 * (milliseconds since the epoch). -1 + err ("expected YYYY-MM-DD or YYYY-MM-DDTHH ...") when
 * @p text is anything else, including minutes other than 00.
 */
int rec_parse_hour(const char *text, int64_t *hour_ms, at_err_t *err);

/* "YYYY-MM-DDTHH" of the hour holding @p ms (years 0000-9999). */
void rec_hour_str(int64_t ms, char out[REC_HOUR_STR_LEN + 1]);

/* Whether a rejected event of this reason counts under its own c, cr, p, pl (the campaign
 * was known) rather than under the empty dimensions (docs/REPORTS.md). */
bool rec_reason_keeps_dims(const char *reason);

/* Counters of one group, from the recount or summed over rollup documents. */
typedef struct rec_counts_s {
    int64_t imp, view, click, conv, spend, payout, rejected;
    struct rec_reason_s {
        char *reason; /* heap, owned by the counts */
        int64_t n;
    } *rej;
    size_t nrej, caprej;
} rec_counts_t;

typedef struct rec_group_s {
    char *key;              /* heap: "<hour>|c|cr|p|pl" */
    char *dim[4];           /* heap: c, cr, p, pl */
    int64_t hour_ms;
    char *adv;              /* heap: the advertiser from a rollup document or an event; "" unknown */
    rec_counts_t recount;   /* from events / rejected */
    int64_t uniques;        /* exact distinct uids of the valid events */
    at_hll_t *recount_u;    /* heap, NULL while no uid: the recount's own sketch */
    rec_counts_t total;     /* summed over every stats_hourly document of the group (all k) */
    rec_counts_t corr;      /* the existing correction (k = -1) alone */
    at_hll_t *total_u;      /* heap or NULL: registers merged over all documents */
    at_hll_t *corr_u;       /* heap or NULL: the existing correction's registers */
    size_t ndocs;           /* rollup documents seen */
    bool has_corr;
} rec_group_t;

/* One field that differs: "imp" ... "rejected", "rej.<reason>", or "u" (rollup = the merged
 * sketch's estimate rounded, recount = the exact count). */
typedef struct rec_diff_s {
    char field[80];
    int64_t rollup, recount;
} rec_diff_t;

typedef struct rec_tally_s rec_tally_t;

/* A tally of the hours [@p from_ms, @p to_ms); documents of other hours are ignored. The
 * caller frees it with rec_tally_free(). NULL when out of memory. */
rec_tally_t *rec_tally_new(int64_t from_ms, int64_t to_ms);
void rec_tally_free(rec_tally_t *t);

/* Adds a document of `events` (a valid event: e, c, cr, p, pl, ts, uid, price_micros,
 * payout_micros, advertiser). Returns 1 counted, 0 ignored (outside the range or no date
 * ts), -1 + err out of memory. */
int rec_tally_add_event(rec_tally_t *t, const bson_t *doc, at_err_t *err);

/* Adds a document of `rejected`, placed by rec_reason_keeps_dims(). Same returns. */
int rec_tally_add_rejected(rec_tally_t *t, const bson_t *doc, at_err_t *err);

/* Adds a stats_hourly document. Returns 1 counted, 0 outside the range, -1 + err naming the
 * _id and the field when the document is not what docs/REPORTS.md describes. */
int rec_tally_add_rollup(rec_tally_t *t, const bson_t *doc, at_err_t *err);

/* Groups seen, and documents ignored so far (no date ts; outside the range). */
size_t rec_tally_groups(const rec_tally_t *t);
size_t rec_tally_ignored(const rec_tally_t *t);

/* Documents counted so far: events, rejected events, stats_hourly documents. */
void rec_tally_counted(const rec_tally_t *t, size_t *events, size_t *rejected, size_t *docs);

/* Bytes the tally holds (groups, sketches, id sets), for the memory figure. */
size_t rec_tally_bytes(const rec_tally_t *t);

/* The tolerance on unique users: |rounded estimate - exact| beyond 3 standard errors of p = 11
 * (3 x 1.04/sqrt(2048) = 6.9%) of the exact count, plus 1, is drift. */
bool rec_uniques_drift(double estimate, int64_t exact);

/*
 * Compares every group (in key order) and calls @p cb for each one that drifts, with its
 * differences (at least one) and @p repairable = false when the only way to fix it would be
 * to lower a sketch (the merged registers estimate more users than there are, which a
 * correction cannot undo: an HLL register can only go up). @p diffs is valid during the
 * call. Returns the number of drifting groups.
 */
size_t rec_tally_compare(rec_tally_t *t,
                         void (*cb)(const rec_group_t *g, const rec_diff_t *diffs, size_t ndiffs, bool repairable,
                                    void *arg),
                         void *arg);

/*
 * The correction document of @p g: _id "<key>|-1", k = -1, no o, every counter set to the
 * recount minus the sum of the group's other documents (so the sum over the group equals the
 * recount; it may be negative), u = register-wise max of the existing correction and the
 * recount's sketch, mt = @p now_ms. The caller destroys it.
 */
bson_t *rec_correction_new(const rec_group_t *g, int64_t now_ms);

#endif
