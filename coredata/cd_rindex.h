/*
 * cd_rindex.h: the in-memory index of the hourly rollups (docs/REPORTS.md, stats_hourly)
 * that the reporting API answers from, and the aggregation of a report over it.
 *
 * One entry per rollup document, identified like its _id by (hour, c, cr, p, pl, k). Adding
 * a document whose identity is already there replaces the entry when the new one's "mt" is
 * not older (documents are whole: a newer version carries every count). Strings are
 * interned (one copy of each campaign, creative, ... id); unique users are kept as the
 * document's non-zero HyperLogLog registers (4 bytes each), not as a 2 KiB sketch.
 * Entries are bucketed by hour, so a report touches only the hours of its range.
 *
 * Memory: about 120 bytes per document + 4 bytes per non-zero register + the interned
 * strings + 8 bytes per document of hash table (docs/REPORTS.md, "Limits").
 *
 * @locality: not thread-safe; the reports thread (cd_reports.c) owns the one instance.
 */
#ifndef CD_RINDEX_H
#define CD_RINDEX_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stdint.h>

#include "at_err.h"
#include "at_hll.h"

typedef enum cd_dim_e {
    CD_DIM_CAMPAIGN,
    CD_DIM_ADVERTISER,
    CD_DIM_CREATIVE,
    CD_DIM_PUBLISHER,
    CD_DIM_PLACEMENT,
    CD_DIM_COUNT
} cd_dim_t;

/* The summed counts of a document or of a report row. */
typedef struct cd_rsums_s {
    int64_t imp, view, click, conv, spend, payout, rejected;
} cd_rsums_t;

typedef struct cd_rindex_s cd_rindex_t;

/* A new empty index (free with cd_rindex_destroy), or NULL when memory runs out. */
cd_rindex_t *cd_rindex_new(void);
void cd_rindex_destroy(cd_rindex_t *ix);

/*
 * Adds (or replaces) the rollup document @p doc. Returns 1 when it was added or replaced
 * the entry, 0 when an entry of the same identity with a newer "mt" is kept, or -1 with
 * @p err naming the field when the document does not follow the contract (nothing changes).
 */
int cd_rindex_put(cd_rindex_t *ix, const bson_t *doc, at_err_t *err);

/* Documents held. */
size_t cd_rindex_count(const cd_rindex_t *ix);
/* The newest "mt" seen (ms since the epoch), or INT64_MIN before any document. */
int64_t cd_rindex_newest_mt(const cd_rindex_t *ix);
/* The interned string @p id (valid until the index is destroyed). */
const char *cd_rindex_str(const cd_rindex_t *ix, uint32_t id);

/* One row of a report: a period and the group's keys (interned ids, by cd_dim_t; only the
 * grouped dimensions are set), with everything summed over its documents. */
typedef struct cd_rrow_s {
    int64_t period; /* the period's start, UTC seconds */
    uint32_t key[CD_DIM_COUNT];
    cd_rsums_t s;
    double uniques; /* the merged sketch's estimate; 0 unless wanted */
    size_t rej_at;  /* its rejections by reason: cd_rresult_rej() */
    size_t nrej;
} cd_rrow_t;

/* Rejections of a row by reason, sorted by reason text. */
typedef struct cd_rrej_s {
    uint32_t reason;
    int64_t n;
} cd_rrej_t;

/* Maps an hour (UTC seconds) to the start of its period (UTC seconds). */
typedef int64_t (*cd_rperiod_fn)(int64_t hour, void *opaque);

typedef struct cd_rspec_s {
    int64_t from, to; /* [from, to), UTC seconds on hour boundaries */
    cd_dim_t dims[CD_DIM_COUNT];
    int ndims;
    bool uniques;   /* estimate unique users */
    bool by_reason; /* rejections by reason */
    cd_rperiod_fn period;
    void *period_opaque;
} cd_rspec_t;

typedef struct cd_rresult_s {
    cd_rrow_t *rows; /* sorted by period, then the keys' text in the order of dims */
    size_t nrows;
    cd_rrow_t totals; /* over every document of the range */
    cd_rrej_t *rej;   /* every row's rejections by reason (totals' last): row r owns rej[r.rej_at, +r.nrej) */
    size_t nrej;
    size_t docs; /* documents aggregated */
} cd_rresult_t;

/* Aggregates the documents of [spec->from, spec->to). The result is the caller's; free it
 * with cd_rresult_free(). 0, or -1 with @p err when memory runs out. */
int cd_rindex_query(const cd_rindex_t *ix, const cd_rspec_t *spec, cd_rresult_t *res, at_err_t *err);
void cd_rresult_free(cd_rresult_t *res);

/* The rejections of row @p r (in @p res) by reason: *@p n entries, sorted by reason text. */
const cd_rrej_t *cd_rresult_rej(const cd_rresult_t *res, const cd_rrow_t *r, size_t *n);

/* The HyperLogLog estimate of a register histogram (count of registers by rank); the same
 * formula as at_hll_estimate(), which a unit test checks. */
double cd_rindex_hll_estimate(const uint32_t hist[AT_HLL_RANK_MAX + 1]);

#endif
