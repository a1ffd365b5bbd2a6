/*
 * dash_model.h: what the dashboard knows, and the snapshot JSON built from it.
 *
 * The poll thread owns the model. Each poll it feeds what it read from Redis (campaign
 * documents, spend, exhaustion, per-minute counters `adtrack:stats:<id>:<yyyymmddHHMM>`)
 * and from the /metrics scrapes, then asks for the snapshot JSON, which it hands to the
 * HTTP loop as an immutable string. Nothing here does I/O, so tests drive it directly.
 *
 * Counts are totals over the last --window-min minutes, kept per campaign as one bucket
 * per minute (a ring indexed by minute). Rates (events/s) come from how much the re-read
 * minute buckets grew since the previous successful poll, divided by the time between the
 * polls. A bucket that shrank was reset (key expired or Redis flushed): its new value
 * counts as the increase, like Prometheus' rate(). A campaign's first poll has no rate.
 *
 * Memory is bounded by --max-campaigns x (window buckets + sparkline) + the history ring.
 * @locality: poll thread only (no locks inside).
 */
#ifndef DASH_MODEL_H
#define DASH_MODEL_H

#include "at_common.h"
#include "dash_health.h"

#define DASH_ID_MAX 64
#define DASH_REASONS_MAX 16 /* distinct rejection reasons; later ones are counted as "other" */
#define DASH_REASON_NAME_MAX 32
#define DASH_SPARK_MAX 60 /* sparkline points per campaign */
#define DASH_TARGETS_MAX 32

enum dash_field_e {
    DASH_F_EVENTS,
    DASH_F_IMP,
    DASH_F_VIEW,
    DASH_F_CLICK,
    DASH_F_CONV,
    DASH_F_REJECTED,
    DASH_F_SPEND,
    DASH_F__COUNT
};

typedef struct dash_counts_s {
    int64_t f[DASH_F__COUNT];
    int64_t reason[DASH_REASONS_MAX]; /* indexed like the model's reason table */
} dash_counts_t;

typedef struct dash_bucket_s {
    int64_t minute; /* minutes since the epoch (UTC); 0 = empty */
    dash_counts_t c;
} dash_bucket_t;

typedef struct dash_campaign_s {
    char id[DASH_ID_MAX + 1];
    char name[128], advertiser[128], status[16], pricing[8];
    int64_t version;
    bool deleted;
    int64_t budget_micros, price_micros, spend_micros;
    bool exhausted;
    dash_bucket_t *buckets;      /* window_min entries, index minute % window_min; owned */
    float spark[DASH_SPARK_MAX]; /* ring of events/s, NaN = unknown */
    size_t spark_head, spark_count;
    double events_per_s;  /* NaN until known */
    int64_t delta_events; /* growth of the re-read buckets during this poll */
    bool seen;            /* fed during this poll */
    bool polled_before;   /* present at the previous successful poll: its deltas count */
} dash_campaign_t;

typedef struct dash_model_s dash_model_t;

typedef struct dash_model_opts_s {
    int window_min;       /* minutes the counts cover (1..1440) */
    size_t history_len;   /* points of the total events/s chart */
    size_t max_campaigns; /* campaigns beyond this are left out (snapshot says truncated) */
    int64_t poll_ms;      /* for the snapshot's step */
} dash_model_opts_t;

/* A new, empty model; free with dash_model_destroy(). NULL on allocation failure. */
dash_model_t *dash_model_new(const dash_model_opts_t *o);
void dash_model_destroy(dash_model_t *m);

/* Registers a /metrics target (order is kept); @p name and @p url are copied. -1 when full. */
int dash_model_add_target(dash_model_t *m, const char *name, const char *url);
size_t dash_model_ntargets(const dash_model_t *m);
const char *dash_model_target_url(const dash_model_t *m, size_t i);

/* Starts a poll at wall-clock @p now_ms. */
void dash_model_begin(dash_model_t *m, int64_t now_ms);

/* The campaign @p id, or NULL when it is not known yet. */
dash_campaign_t *dash_model_find(dash_model_t *m, const char *id);

/* Finds or creates campaign @p id and marks it seen in this poll. NULL when @p id is not a
 * valid id ([A-Za-z0-9._:-]{1,64}) or the model is full. */
dash_campaign_t *dash_model_campaign(dash_model_t *m, const char *id);

/* Applies the campaign hash: @p version, @p deleted (tombstone) and the JSON @p doc (may be
 * NULL). The document is parsed only when the version changed. */
void dash_model_campaign_meta(dash_campaign_t *c, int64_t version, bool deleted, const char *doc, size_t doclen);

void dash_model_campaign_spend(dash_campaign_t *c, int64_t spend_micros, bool exhausted);

/* Replaces the bucket of @p minute (minutes since the epoch) with the HGETALL reply given
 * as @p n field/value pairs (values are decimal text). Unknown fields are ignored;
 * `rejected:<reason>` fields go to the reason table. */
void dash_model_campaign_stats(dash_model_t *m, dash_campaign_t *c, int64_t minute, const char *const *fields,
                               const char *const *values, size_t n);

/* Ends the poll. @p redis_ok false: the poll failed (@p error says why); counts stay as
 * they were and the chart gets a gap. Otherwise campaigns not seen (or deleted) are
 * dropped and rates are computed. */
void dash_model_end(dash_model_t *m, bool redis_ok, const char *error);

/* Stores the result of scraping target @p i at @p now_ms: the /metrics text, or up=false
 * with @p error. */
void dash_model_target(dash_model_t *m, size_t i, bool up, const char *text, size_t len, const char *error,
                       int64_t now_ms);

bool dash_model_redis_up(const dash_model_t *m);

/* The snapshot JSON (see docs/DASHBOARD.md); a heap string the caller frees, NULL when it
 * would exceed @p max bytes or on allocation failure. */
char *dash_model_json(const dash_model_t *m, size_t max, size_t *len);

/* Minutes since the epoch of @p ms (the text key of a minute is at_utc_minute_key() of
 * minute * 60000, common/at_time.h). */
int64_t dash_minute_of_ms(int64_t ms);

/*
 * Turns a core-data change (docs/CORE-DATA.md "Change notifications") into the compact
 * JSON of an SSE `change` event: {"kind","id","op","version","status","name","ts_ms"}
 * (status and name only when the change carries a document). Returns a heap string (free())
 * or NULL when @p raw is not a change object.
 */
char *dash_change_json(const char *raw, size_t len, int64_t now_ms, size_t *outlen);

#endif
