/*
 * lt_verify.h: end-to-end delivery check (--verify).
 *
 * During the run every request carries tag=<run-id>:<seq>. Afterwards the store is read
 * back and every request that was acknowledged (status 200-399: the collector answers a
 * pixel with 200 and a click with 302, both only once the event is durable) is looked up:
 *   lost        an acknowledged event found neither among the events nor the rejected ones;
 *   duplicated  more distinct event ids carry the same tag than the request had events
 *               (the same id delivered twice is a redelivery, which an idempotent sink
 *               absorbs, and is reported separately);
 *   rejected    found in the rejected store, counted by reason.
 * Stores: kafka:<bootstrap> (the raw and rejected topics, read from the beginning),
 * file:<dir> (the enricher's file sink: events-*.jsonl, rejected-*.jsonl) and
 * mongodb://... (collections events and rejected).
 */
#ifndef LT_VERIFY_H
#define LT_VERIFY_H

#include "at_err.h"

#define LT_VERIFY_KEEP 10    /* example tags kept per finding */
#define LT_VERIFY_REASONS 32 /* distinct reasons counted; more go to "other" */

enum { LT_OBS_EVENT = 0, LT_OBS_REJECTED = 1 };

/* One document found in the store that belongs to this run. */
typedef struct lt_obs_s {
    uint64_t seq;
    uint64_t idhash; /* hash of the event id (or of the whole document when it has none) */
    uint16_t reason; /* index into the set's reasons, for rejected documents */
    uint8_t kind;
} lt_obs_t;

typedef struct lt_obs_set_s {
    lt_obs_t *v; /* heap */
    size_t n, cap;
    char *reasons[LT_VERIFY_REASONS]; /* heap strings; reasons beyond the table count as "other" */
    size_t nreasons;
    uint64_t docs;       /* documents read that belong to the run */
    uint64_t foreign;    /* documents with this run's prefix but an unusable sequence number */
    uint64_t unreadable; /* documents that were not JSON */
} lt_obs_set_t;

void lt_obs_clear(lt_obs_set_t *s);
void lt_obs_free(lt_obs_set_t *s);

/* Adds the JSON document @p json if its "tag" starts with "<run_id>:" (others are
 * ignored). Reads "_id" or "id", and "reason" for @p kind LT_OBS_REJECTED. Returns 0, or -1
 * when out of memory. */
int lt_obs_add_json(lt_obs_set_t *s, const char *run_id, const char *json, size_t len, int kind);

/* Adds one observation from already extracted fields (@p id may be NULL). */
int lt_obs_add(lt_obs_set_t *s, const char *run_id, const char *tag, size_t taglen, const char *id, size_t idlen,
               const char *reason, int kind);

/* What the run knows about each request. */
typedef struct lt_verify_input_s {
    const char *run_id;
    const uint8_t *seq_state;   /* LT_SEQ_* per sequence number */
    const uint16_t *seq_events; /* events per request, or NULL (one each) */
    uint64_t nseq;
} lt_verify_input_t;

typedef struct lt_verify_result_s {
    char store[16];            /* "kafka", "file", "mongodb" */
    uint64_t checked_requests; /* acknowledged requests looked up */
    uint64_t expected_events;
    uint64_t found_events; /* distinct event ids for acknowledged requests */
    uint64_t lost;         /* events */
    uint64_t lost_requests;
    uint64_t duplicated; /* extra events */
    uint64_t duplicated_requests;
    uint64_t rejected;
    uint64_t redelivered;   /* same id seen again (absorbed by an idempotent sink) */
    uint64_t unacked_found; /* events of requests that got no 2xx/3xx (e.g. timed out) */
    uint64_t foreign, unreadable, docs;
    char reasons[LT_VERIFY_REASONS + 1][64];
    uint64_t reason_counts[LT_VERIFY_REASONS + 1];
    size_t nreasons;
    uint64_t lost_seqs[LT_VERIFY_KEEP];
    size_t nlost_seqs;
    uint64_t dup_seqs[LT_VERIFY_KEEP];
    size_t ndup_seqs;
    int64_t waited_ms;
    bool settled;   /* ended because nothing was missing, not by --verify-wait/-quiet */
    char note[256]; /* e.g. why the store could not be read, "" when fine */
} lt_verify_result_t;

/* Reconciles @p obs (sorted and de-duplicated in place) against @p in. Pure. */
void lt_verify_reconcile(const lt_verify_input_t *in, lt_obs_set_t *obs, lt_verify_result_t *res);

typedef struct lt_verify_opts_s {
    const char *spec;           /* kafka:<bootstrap> | file:<dir> | mongodb://... */
    const char *topic;          /* events topic (kafka) */
    const char *rejected_topic; /* may be "" */
    const char *db;             /* default database (mongodb) */
    int64_t wait_ns, quiet_ns;
} lt_verify_opts_t;

/* A store to read back. */
typedef struct lt_store_s lt_store_t;

/* Opens the store @p o->spec names. Returns NULL with @p err. */
lt_store_t *lt_store_open(const lt_verify_opts_t *o, const char *run_id, at_err_t *err);

/* Reads what the store holds for the run into @p obs (replacing its contents; the Kafka
 * store keeps its position and adds only what is new). Returns 0 or -1 with @p err. */
int lt_store_collect(lt_store_t *st, lt_obs_set_t *obs, at_err_t *err);

void lt_store_close(lt_store_t *st);

/*
 * The whole check: collects and reconciles until nothing is missing, nothing new arrived
 * for quiet_ns, or wait_ns passed. Returns 0 with @p res filled (also when events are
 * missing: that is a finding, not an error), or -1 with @p err when the store could not
 * be read at all.
 */
int lt_verify_run(const lt_verify_opts_t *o, const lt_verify_input_t *in, lt_verify_result_t *res, at_err_t *err);

#endif
