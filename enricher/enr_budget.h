/*
 * enr_budget.h: exact, once-per-event budget charging and the real-time counters, in one
 * Redis call per batch (EVALSHA of a Lua script loaded at start).
 *
 * Per chargeable event (price > 0), atomically inside Redis:
 *  - the charge record adtrack:charged:<campaign>:<yyyymmdd of the event ts> (a hash:
 *    event id -> "c" charged / "x" refused as exhausted) is consulted first, so a replayed
 *    event gets the verdict it got the first time and is never charged twice;
 *  - otherwise, if adtrack:exhausted:<campaign> is absent and spend + price <= budget, the
 *    spend is increased (INCRBY adtrack:spend:<campaign>, once per campaign per batch);
 *  - otherwise the event is refused, and the first refusal (or the charge that makes spend
 *    reach the budget exactly) marks the campaign exhausted: SET adtrack:exhausted:<c> 1,
 *    INCR adtrack:coredata:version, PUBLISH adtrack:coredata {"kind":"budget",...,
 *    "op":"exhausted"}.
 * Charge records expire after --replay-window-days (refreshed on every write).
 * Because the whole batch runs as one script, enrichers racing on a campaign are
 * serialised by Redis: spend never exceeds the budget (bound: 0 micros).
 *
 * Counters: HINCRBY adtrack:stats:<campaign>:<yyyymmddHHMM of the event ts> for the fields
 * events, imp, view, click, conv, rejected, rejected:<reason> (one per reason code, e.g.
 * rejected:bot) and spend, aggregated per batch, EXPIRE 2 days.
 */
#ifndef ENR_BUDGET_H
#define ENR_BUDGET_H

#include <hiredis/hiredis.h>

#include "at_event.h"

#define ENR_STATS_TTL_S (2 * 86400)

typedef enum enr_charge_verdict_e {
    ENR_CHARGED = 0,         /* charged now */
    ENR_ALREADY_CHARGED = 1, /* a replay of an event charged before: accepted, not charged again */
    ENR_EXHAUSTED = 2,       /* refused: budget_exhausted */
} enr_charge_verdict_t;

typedef struct enr_charge_s {
    const char *c; /* campaign id (checked: [A-Za-z0-9._:-]{1,64}) */
    size_t clen;
    char id[AT_UUID_STR_LEN + 1];
    int64_t price_micros;
    int64_t budget_micros;
    int64_t ts_ms;
    at_event_type_t type;
    enr_charge_verdict_t verdict; /* out */
} enr_charge_t;

/* A counter increment for an event whose fate is known without the script. */
typedef struct enr_stat_s {
    const char *c;
    size_t clen;
    int64_t minute_ms; /* event ts floored to the minute */
    const char *field; /* "events", "imp", "view", "click", "conv", "rejected", enr_budget_rejected_field() */
    int64_t n;
} enr_stat_t;

/* The script's SHA1 after enr_budget_load(), for EVALSHA, and buffers kept between calls.
 * Zero-initialise it, set replay_window_s, and free it with enr_budget_fini(). */
typedef struct enr_budget_s {
    char sha[41];
    bool loaded;
    int64_t replay_window_s;
    struct enr_budget_scratch_s *scratch;
} enr_budget_t;

/* Frees what enr_budget_run() keeps between calls (the struct itself is the caller's). */
void enr_budget_fini(enr_budget_t *b);

/* SCRIPT LOAD. 0 or -1 with @p err. */
int enr_budget_load(enr_budget_t *b, redisContext *rc, at_err_t *err);

/*
 * Runs the script for @p charges (verdicts filled in) and @p stats in one call (EVALSHA;
 * on NOSCRIPT, e.g. after a Redis restart, EVAL with the text, which loads it again).
 * Returns 0, or -1 with @p err (the context may then be unusable). *@p published gets the
 * number of campaigns this call marked exhausted; *@p ncmds the commands sent.
 * @locality: the thread owning @p rc.
 */
int enr_budget_run(enr_budget_t *b, redisContext *rc, enr_charge_t *charges, size_t ncharges, const enr_stat_t *stats,
                   size_t nstats, int *published, uint64_t *ncmds, at_err_t *err);

/* "yyyymmdd" (UTC) of @p ms; the stats minute key is at_utc_minute_key() (common/at_time.h). */
void enr_budget_day(int64_t ms, char out[16]);

/* The per-reason counter field, "rejected:<reason code>" (e.g. "rejected:bot"): a static
 * string, the same pointer for the same reason. */
const char *enr_budget_rejected_field(at_reject_t r);

/* The script text (for docs and tests). */
extern const char enr_budget_script[];

#endif
