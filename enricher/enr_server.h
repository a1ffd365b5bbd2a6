/*
 * enr_server.h: the enricher process: its threads, shared state, readiness and metrics.
 *
 * Threads (each owns its own connections; nothing blocks a shared loop):
 *  - worker (enr_worker.c): Kafka consumer, validation, Redis fetches and the budget
 *    script, sink writes, the rejected-topic producer, offset commits. Blocking calls with
 *    timeouts, on its own thread.
 *  - subscriber (enr_sub.c): Redis SUBSCRIBE adtrack:coredata, resync on (re)subscribe,
 *    applies changes to the cache.
 *  - http (enr_http.c): one h2o loop serving /healthz, /readyz and /metrics.
 * Shared between them: the cache (rwlock, see enr_cache.h), the metrics registry
 * (atomics), and the readiness flags below (atomics).
 */
#ifndef ENR_SERVER_H
#define ENR_SERVER_H

#include <pthread.h>
#include <stdatomic.h>

#include "at_event.h"
#include "at_metrics.h"
#include "enr_cache.h"
#include "enr_conf.h"
#include "enr_sink.h"
#include "enr_ua.h"

enum { ENR_STAGE_REDIS = 0, ENR_STAGE_SINK, ENR_STAGE_KAFKA, ENR_STAGE_COMMIT, ENR_STAGE_ROLLUP, ENR_NSTAGES };

typedef struct enr_stats_s {
    at_counter_t *valid;                  /* events stored as valid */
    at_counter_t *rejected[AT_REJ__COUNT]; /* by reason */
    at_counter_t *batches;
    at_histogram_t *batch_seconds;
    at_counter_t *retries[ENR_NSTAGES];
    at_counter_t *cache_hits, *cache_misses;
    at_counter_t *redis_commands;
    at_counter_t *charges[3];             /* by enr_charge_verdict_t */
    at_counter_t *spend_micros;
    at_counter_t *exhausted_published;
    at_counter_t *changes_applied, *changes_stale, *changes_invalid;
    at_counter_t *resyncs;
    at_counter_t *sink_inserted, *sink_duplicates;
    at_counter_t *commit_failures;
    at_counter_t *rollup_documents;       /* stats_hourly documents written */
    at_counter_t *rollup_gate_skips;      /* events the offset gate found counted already */
    at_counter_t *rollup_lost_writes;     /* matched writes a concurrent writer replaced */
    at_gauge_t *paused, *ready, *assigned, *cache_campaigns, *cache_publishers;
    at_gauge_t *consumer_lag;             /* set by the worker from librdkafka's statistics */
} enr_stats_t;

typedef struct enr_server_s {
    enr_conf_t *conf;
    at_metrics_t *metrics;
    enr_stats_t stats;
    enr_cache_t *cache;
    enr_ua_t *ua;
    enr_sink_t *sink;              /* used by the worker thread only */

    atomic_bool stopping;
    atomic_bool kafka_ok, redis_ok, sink_ok, sub_ok, paused;
    atomic_bool redis_auth_failed; /* the last connect was refused: credentials or ACL */
    atomic_bool sink_auth_failed;  /* the sink probe was refused: credentials or TLS */
    atomic_int assigned;           /* partitions currently assigned */

    pthread_t worker_tid, sub_tid, http_tid;
    bool worker_started, sub_started, http_started;
    void *http;                    /* enr_http state */
    int http_port;                 /* bound port (useful with :0) */
} enr_server_t;

/* Creates the server from @p conf (kept, not owned): metrics, cache, bot patterns and the
 * sink (MongoDB when conf->mongo is set, else the file sink). NULL + err on failure.
 * Free with enr_server_destroy(). */
enr_server_t *enr_server_new(enr_conf_t *conf, at_err_t *err);
/* Starts the threads. 0 or -1 with err. */
int enr_server_start(enr_server_t *srv, at_err_t *err);
/* Asks every thread to stop (the worker finishes and commits its batch first) and joins
 * them. */
void enr_server_stop(enr_server_t *srv);
void enr_server_destroy(enr_server_t *srv);

/* Readiness: true when Kafka, Redis and the sink have been proven and the worker is not
 * paused or stopping; otherwise @p why says which. @locality: any thread. */
bool enr_server_ready(enr_server_t *srv, const char **why);

/* Monotonic and wall-clock milliseconds. */
int64_t enr_mono_ms(void);
int64_t enr_wall_ms(void);

/* Thread entry points (enr_worker.c, enr_sub.c, enr_http.c). */
void *enr_worker_main(void *srv);
void *enr_sub_main(void *srv);
int enr_http_start(enr_server_t *srv, at_err_t *err);
void enr_http_stop(enr_server_t *srv);

#endif
