/*
 * enr_server.c: process life cycle, metrics and readiness (see enr_server.h).
 */
#include "enr_server.h"

#include <stdlib.h>
#include <time.h>

#include "at_kafka.h"
#include "at_log.h"

int64_t enr_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t enr_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void collect(at_metrics_t *m, void *opaque)
{
    enr_server_t *srv = opaque;
    const char *why;
    AT_UNUSED(m);
    at_gauge_set(srv->stats.ready, enr_server_ready(srv, &why) ? 1 : 0);
    at_gauge_set(srv->stats.paused, atomic_load(&srv->paused) ? 1 : 0);
    at_gauge_set(srv->stats.assigned, atomic_load(&srv->assigned));
    at_gauge_set(srv->stats.cache_campaigns, (double)enr_cache_count(srv->cache, ENR_CAMPAIGN));
    at_gauge_set(srv->stats.cache_publishers, (double)enr_cache_count(srv->cache, ENR_PUBLISHER));
}

static int stats_init(enr_server_t *srv)
{
    enr_stats_t *st = &srv->stats;
    at_metrics_t *m = srv->metrics;
    char lbl[96];
    static const char *const stages[ENR_NSTAGES] = {"redis", "sink", "kafka", "commit", "rollup"};
    static const char *const verdicts[3] = {"charged", "already_charged", "exhausted"};

    st->valid = at_metrics_counter(m, "adtrack_enricher_events_total", "outcome=\"valid\"",
                                   "Events processed, by outcome (valid events stored in the sink).");
    for (int r = 1; r < AT_REJ__COUNT; r++) {
        snprintf(lbl, sizeof(lbl), "reason=\"%s\"", at_reject_str((at_reject_t)r));
        st->rejected[r] = at_metrics_counter(m, "adtrack_enricher_rejected_total", lbl,
                                             "Events rejected (rejected topic and collection), by reason.");
    }
    st->batches = at_metrics_counter(m, "adtrack_enricher_batches_total", NULL, "Batches processed and committed.");
    st->batch_seconds = at_metrics_histogram(m, "adtrack_enricher_batch_duration_seconds", NULL,
                                             "Time from a batch in hand to its offsets committed, retries included.",
                                             at_metrics_latency_bounds, at_metrics_latency_nbounds);
    for (int s = 0; s < ENR_NSTAGES; s++) {
        snprintf(lbl, sizeof(lbl), "stage=\"%s\"", stages[s]);
        st->retries[s] = at_metrics_counter(m, "adtrack_enricher_retries_total", lbl,
                                            "Batch attempts that failed and were retried after a backoff, by stage.");
    }
    st->cache_hits = at_metrics_counter(m, "adtrack_enricher_cache_hits_total", NULL,
                                        "Campaign/publisher lookups answered by the local cache.");
    st->cache_misses = at_metrics_counter(m, "adtrack_enricher_cache_misses_total", NULL,
                                          "Lookups that needed a Redis read (missing or expired entry).");
    st->redis_commands = at_metrics_counter(m, "adtrack_enricher_redis_commands_total", NULL,
                                            "Redis commands sent by the worker (the budget script counts as one).");
    for (int v = 0; v < 3; v++) {
        snprintf(lbl, sizeof(lbl), "verdict=\"%s\"", verdicts[v]);
        st->charges[v] = at_metrics_counter(m, "adtrack_enricher_charges_total", lbl,
                                            "Chargeable events by budget verdict.");
    }
    st->spend_micros = at_metrics_counter(m, "adtrack_enricher_spend_micros_total", NULL, "Micros charged.");
    st->exhausted_published = at_metrics_counter(m, "adtrack_enricher_budget_exhausted_published_total", NULL,
                                                 "Campaigns this enricher marked exhausted (and published).");
    st->changes_applied = at_metrics_counter(m, "adtrack_enricher_coredata_changes_total", "result=\"applied\"",
                                             "Core-data change notifications, by result.");
    st->changes_stale = at_metrics_counter(m, "adtrack_enricher_coredata_changes_total", "result=\"stale\"",
                                           "Core-data change notifications, by result.");
    st->changes_invalid = at_metrics_counter(m, "adtrack_enricher_coredata_changes_total", "result=\"invalid\"",
                                             "Core-data change notifications, by result.");
    st->resyncs = at_metrics_counter(m, "adtrack_enricher_coredata_resyncs_total", NULL,
                                     "Full cache loads from Redis (on every (re)subscribe).");
    st->sink_inserted = at_metrics_counter(m, "adtrack_enricher_sink_documents_total", "result=\"inserted\"",
                                           "Documents the sink stored, or found already stored.");
    st->sink_duplicates = at_metrics_counter(m, "adtrack_enricher_sink_documents_total", "result=\"duplicate\"",
                                             "Documents the sink stored, or found already stored.");
    st->commit_failures = at_metrics_counter(m, "adtrack_enricher_commit_failures_total", NULL,
                                             "Offset commits that failed (the batch is redelivered; the sink is idempotent).");
    st->rollup_documents = at_metrics_counter(m, "adtrack_enricher_rollup_documents_total", NULL,
                                              "stats_hourly documents written (updated, inserted or appended).");
    st->rollup_gate_skips = at_metrics_counter(m, "adtrack_enricher_rollup_gate_skips_total", NULL,
                                               "Events the rollups did not count because their document's offset "
                                               "gate had counted them already (redelivered batches).");
    st->rollup_lost_writes = at_metrics_counter(m, "adtrack_enricher_rollup_lost_writes_total", NULL,
                                                "stats_hourly writes reported as matched that a concurrent writer "
                                                "replaced (read back, counted again).");
    st->paused = at_metrics_gauge(m, "adtrack_enricher_paused", NULL, "1 while partitions are paused for a retry.");
    st->ready = at_metrics_gauge(m, "adtrack_enricher_ready", NULL, "1 when /readyz answers 200.");
    st->assigned = at_metrics_gauge(m, "adtrack_enricher_assigned_partitions", NULL, "Partitions assigned now.");
    st->cache_campaigns = at_metrics_gauge(m, "adtrack_enricher_cache_entries", "kind=\"campaign\"",
                                           "Cached entries (tombstones and known absences included).");
    st->cache_publishers = at_metrics_gauge(m, "adtrack_enricher_cache_entries", "kind=\"publisher\"",
                                            "Cached entries (tombstones and known absences included).");
    st->consumer_lag = at_metrics_gauge(m, "adtrack_enricher_consumer_lag", NULL,
                                        "Messages of the assigned raw-topic partitions not committed yet: per partition, the "
                                        "end offset last seen minus the committed offset, summed; refreshed every second.");
    at_metrics_on_collect(m, collect, srv);
    return st->cache_publishers != NULL && st->consumer_lag != NULL && st->batch_seconds != NULL ? 0 : -1;
}

enr_server_t *enr_server_new(enr_conf_t *conf, at_err_t *err)
{
    enr_server_t *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    srv->conf = conf;
    srv->metrics = at_metrics_new();
    if (srv->metrics == NULL || stats_init(srv) != 0) {
        at_err_set(err, AT_ERR_NOMEM, "metrics: out of memory");
        goto fail;
    }
    srv->cache = enr_cache_new(conf->cache_ttl_ms);
    if (srv->cache == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "cache: out of memory");
        goto fail;
    }
    srv->ua = enr_ua_new(conf->bot_patterns, err);
    if (srv->ua == NULL)
        goto fail;
    if (conf->mongo != NULL && conf->mongo[0] != '\0')
        srv->sink = enr_sink_mongo_new(conf->mongo, conf->mongo_w, conf->mongo_wtimeout_ms, err);
    else
        srv->sink = enr_sink_file_new(conf->data_dir, conf->sink_rotate_bytes, err);
    if (srv->sink == NULL)
        goto fail;
    /* The file sink is proven by opening its files; MongoDB by its first acknowledged write
     * (the worker writes an empty batch at start-up). */
    atomic_store(&srv->sink_ok, strcmp(srv->sink->ops->name, "file") == 0);
    return srv;
fail:
    enr_server_destroy(srv);
    return NULL;
}

int enr_server_start(enr_server_t *srv, at_err_t *err)
{
    if (srv->conf->listen != NULL && srv->conf->listen[0] != '\0') {
        if (enr_http_start(srv, err) != 0)
            return -1;
    }
    if (pthread_create(&srv->sub_tid, NULL, enr_sub_main, srv) != 0)
        return at_err_set(err, AT_ERR_INTERNAL, "cannot start the subscriber thread");
    srv->sub_started = true;
    if (pthread_create(&srv->worker_tid, NULL, enr_worker_main, srv) != 0)
        return at_err_set(err, AT_ERR_INTERNAL, "cannot start the worker thread");
    srv->worker_started = true;
    return 0;
}

void enr_server_stop(enr_server_t *srv)
{
    atomic_store(&srv->stopping, true);
    if (srv->worker_started) {
        pthread_join(srv->worker_tid, NULL);
        srv->worker_started = false;
    }
    if (srv->sub_started) {
        pthread_join(srv->sub_tid, NULL);
        srv->sub_started = false;
    }
    enr_http_stop(srv);
}

void enr_server_destroy(enr_server_t *srv)
{
    if (srv == NULL)
        return;
    enr_sink_destroy(srv->sink);
    enr_ua_destroy(srv->ua);
    enr_cache_destroy(srv->cache);
    at_metrics_destroy(srv->metrics);
    free(srv);
}

bool enr_server_ready(enr_server_t *srv, const char **why)
{
    if (atomic_load(&srv->stopping))
        *why = "shutting down";
    else if (at_kafka_auth_failed(NULL, 0))
        *why = "kafka refused our credentials or certificate (see the log)";
    else if (atomic_load(&srv->redis_auth_failed))
        *why = "redis refused our credentials or permissions (see the log)";
    else if (atomic_load(&srv->sink_auth_failed))
        *why = "mongodb refused our credentials or certificate (see the log)";
    else if (!atomic_load(&srv->kafka_ok))
        *why = "kafka not proven reachable";
    else if (!atomic_load(&srv->redis_ok))
        *why = "redis not reachable";
    else if (!atomic_load(&srv->sink_ok))
        *why = "sink not proven writable";
    else if (atomic_load(&srv->paused))
        *why = "paused: retrying a batch after a failure";
    else {
        *why = "ready";
        return true;
    }
    return false;
}
