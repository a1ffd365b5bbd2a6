/*
 * enr_attrib.h: conversion attribution in Redis, one script call per batch (see
 * docs/REPORTS.md "Attribution").
 *
 * Per operation, in batch order, atomically inside Redis:
 *  - a valid click records itself: SET adtrack:click:<click event id>
 *    "<ts ms>|<c>|<cr>|<p>|<pl>" EX <the campaign's lookback + 1 day>;
 *  - a conversion with an order id looks up adtrack:order:<len(advertiser)>:<advertiser>:<order>:
 *    held by another conversion id -> duplicate_order (nothing else is done); absent or
 *    held by this very conversion (a replay of the batch) -> it goes on;
 *  - a conversion without a click id -> no_click; with one whose record is absent or
 *    belongs to another campaign -> unknown_click; whose click is older than the lookback
 *    (conversion ts - click ts > lookback) -> click_expired; otherwise attributed, with the
 *    click's record;
 *  - a conversion that is not a duplicate then holds its order key: SET ... <conversion id>
 *    EX <lookback + 1 day>.
 * Because a click's SET runs before a later conversion of the same batch, a conversion in
 * the batch of its own click is attributed; because the order key holds the conversion's
 * own id, a replayed batch gets the same answers and is not deduplicated against itself.
 */
#ifndef ENR_ATTRIB_H
#define ENR_ATTRIB_H

#include <hiredis/hiredis.h>

#include "at_event.h"

/* What happened to a conversion. The names (enr_attrib_str) are stored in the event's
 * "attribution" field. */
typedef enum enr_attrib_e {
    ENR_ATTR_NONE = 0,      /* not a conversion */
    ENR_ATTR_ATTRIBUTED,    /* "attributed" */
    ENR_ATTR_NO_CLICK,      /* "no_click": the conversion carries no click id */
    ENR_ATTR_UNKNOWN_CLICK, /* "unknown_click": no record of that click (never stored, expired from Redis,
                             * or of another campaign) */
    ENR_ATTR_CLICK_EXPIRED, /* "click_expired": the click is older than the campaign's lookback */
    ENR_ATTR_DUPLICATE,     /* rejected: duplicate_order */
} enr_attrib_t;

/* One click record or conversion lookup. Views point into the batch (the event) or the
 * caller's storage; they must stay valid during enr_attrib_run(). */
typedef struct enr_attrib_op_s {
    bool is_conv;
    at_uuid_t id;        /* the event's id (a click's is the click id) */
    int64_t ts_ms;
    at_str_t c, cr, p, pl; /* click: its dimensions */
    /* conversion: */
    bool has_click;      /* clid present */
    at_uuid_t click_id;  /* the clid's event id */
    char advertiser[AT_EVENT_ID_MAX + 1]; /* copied: the cache entry may go once its lock is released */
    at_str_t order;
    int64_t lookback_ms; /* campaign's lookback */
    int64_t ttl_s;       /* click record / order key lifetime: lookback + 1 day */
    /* out, conversions: */
    enr_attrib_t result;
    int64_t click_ts_ms;                          /* attributed: the click's ts */
    char click_rec[4 * AT_EVENT_ID_MAX + 32];     /* attributed: "<ts>|c|cr|p|pl" */
    at_str_t click_c, click_cr, click_p, click_pl; /* attributed: views into click_rec */
} enr_attrib_op_t;

/* "attributed", "no_click", "unknown_click", "click_expired", "duplicate_order"; "" for NONE. */
const char *enr_attrib_str(enr_attrib_t a);

/*
 * Runs the script for @p ops (results filled in) in one call. Returns 0, or -1 with @p err
 * (the context may then be unusable). *@p ncmds is increased by the commands sent.
 * @locality: the thread owning @p rc.
 */
int enr_attrib_run(redisContext *rc, enr_attrib_op_t *ops, size_t nops, uint64_t *ncmds, at_err_t *err);

/* The script text (for docs and tests). */
extern const char enr_attrib_script[];

#endif
