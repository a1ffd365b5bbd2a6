/*
 * col_server.c: loop threads, listeners, the per-loop Kafka producer wired into the h2o
 * loop, the durable sink (Kafka or spool) and pending-request tracking. See col_server.h.
 */
#include "col_server.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "at_kafka.h"
#include "at_accept.h"
#include "at_listen.h"
#include "at_loop.h"
#include "at_log.h"

#define TICK_MS 100
#define SHUTDOWN_FLUSH_MS 3000
#define REPLAY_MSG_TIMEOUT_MS 10000 /* the spool's own producer: a replay window waits this long at most */
#define SPARE_PENDING_MAX 4096 /* per loop: enough for a burst, a few hundred KiB at most */

int64_t col_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t col_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- metrics ---- */

static const char *status_labels(int status, char *buf, size_t len)
{
    snprintf(buf, len, "code=\"%d\"", status);
    return buf;
}

static void stats_collect(at_metrics_t *m, void *opaque)
{
    col_server_t *srv = opaque;
    col_spool_stats_t ss;
    AT_UNUSED(m);

    col_spool_get_stats(srv->spool, &ss);
    at_gauge_set(srv->stats.spool_bytes, (double)ss.bytes);
    at_gauge_set(srv->stats.spool_active, col_spool_active(srv->spool) ? 1 : 0);
    at_gauge_set(srv->stats.kafka_reachable, ss.kafka_reachable ? 1 : 0);
    /* Counters that live in the spool are mirrored as deltas, under the registry's render. */
    at_counter_add(srv->stats.spool_fsyncs, ss.fsyncs - srv->stats.spool_seen_fsyncs);
    at_counter_add(srv->stats.spool_replayed, ss.replayed - srv->stats.spool_seen_replayed);
    at_counter_add(srv->stats.spool_dead_lettered, ss.dead_lettered - srv->stats.spool_seen_dead);
    at_counter_add(srv->stats.spool_doubt[0], ss.doubt_appended - srv->stats.spool_seen_doubt[0]);
    at_counter_add(srv->stats.spool_doubt[1], ss.doubt_found - srv->stats.spool_seen_doubt[1]);
    at_counter_add(srv->stats.spool_doubt[2], ss.doubt_resent - srv->stats.spool_seen_doubt[2]);
    srv->stats.spool_seen_doubt[0] = ss.doubt_appended;
    srv->stats.spool_seen_doubt[1] = ss.doubt_found;
    srv->stats.spool_seen_doubt[2] = ss.doubt_resent;
    at_counter_add(srv->stats.ack_wait_suspects, ss.suspects - srv->stats.spool_seen_suspects);
    srv->stats.spool_seen_suspects = ss.suspects;
    srv->stats.spool_seen_fsyncs = ss.fsyncs;
    srv->stats.spool_seen_replayed = ss.replayed;
    srv->stats.spool_seen_dead = ss.dead_lettered;
    double q = 0, inflight = 0;
    for (size_t i = 0; i < srv->nloops; i++) {
        if (srv->loops[i].rk != NULL)
            q += rd_kafka_outq_len(srv->loops[i].rk);
        inflight += (double)atomic_load_explicit(&srv->loops[i].inflight, memory_order_relaxed);
    }
    at_gauge_set(srv->stats.kafka_queue, q);
    at_gauge_set(srv->stats.inflight, inflight);
}

static int stats_init(col_server_t *srv)
{
    col_stats_t *st = &srv->stats;
    at_metrics_t *m = srv->metrics;
    static const int codes[] = {200, 204, 301, 302, 304, 400, 401, 403, 404, 405, 413, 414, 415, 500, 503};
    char lbl[64];

    for (size_t i = 0; i < AT_ARRAY_LEN(codes); i++)
        st->requests[codes[i]] = at_metrics_counter(m, "adtrack_http_requests_total",
                                                    status_labels(codes[i], lbl, sizeof(lbl)),
                                                    "HTTP responses by status code.");
    st->events_produced[COL_TOPIC_RAW] = at_metrics_counter(m, "adtrack_events_produced_total", "topic=\"raw\"",
                                                            "Events acknowledged by Kafka, directly or by replay.");
    st->events_produced[COL_TOPIC_REJECTED] =
        at_metrics_counter(m, "adtrack_events_produced_total", "topic=\"rejected\"",
                           "Events acknowledged by Kafka, directly or by replay.");
    st->events_spooled = at_metrics_counter(m, "adtrack_events_spooled_total", NULL,
                                            "Events written to the local spool because Kafka could not take them.");
    st->delivery_failures = at_metrics_counter(m, "adtrack_kafka_delivery_failures_total", NULL,
                                               "Kafka produce or delivery failures (the event then went to the spool).");
    st->durability_failures = at_metrics_counter(m, "adtrack_events_lost_total", NULL,
                                                 "Events neither Kafka nor the spool could take (answered 503, never 2xx).");
    for (int r = 1; r < AT_REJ__COUNT && r < 32; r++) {
        snprintf(lbl, sizeof(lbl), "reason=\"%s\"", at_reject_str((at_reject_t)r));
        st->rejected[r] = at_metrics_counter(m, "adtrack_events_rejected_total", lbl,
                                             "Events sent to the rejected topic, by reason.");
    }
    st->spool_bytes = at_metrics_gauge(m, "adtrack_spool_bytes", NULL, "Bytes in the spool not yet replayed to Kafka.");
    st->spool_active = at_metrics_gauge(m, "adtrack_spool_active", NULL, "1 while the spool holds events not yet replayed.");
    st->kafka_reachable = at_metrics_gauge(m, "adtrack_kafka_reachable", NULL, "1 when Kafka answered the last probe.");
    st->kafka_queue = at_metrics_gauge(m, "adtrack_kafka_queue_messages", NULL,
                                       "Messages in librdkafka's queues awaiting delivery (all loops).");
    st->inflight = at_metrics_gauge(m, "adtrack_requests_inflight", NULL, "Requests waiting for durability.");
    st->spool_fsyncs = at_metrics_counter(m, "adtrack_spool_fsyncs_total", NULL, "Group commits (fdatasync) of the spool.");
    st->spool_replayed = at_metrics_counter(m, "adtrack_spool_replayed_total", NULL,
                                            "Spooled events delivered to Kafka by the replayer.");
    st->spool_dead_lettered = at_metrics_counter(m, "adtrack_spool_dead_lettered_total", NULL,
                                                 "Spooled events Kafka refused for good (kept in dead-letter.log).");
    st->ack_wait_suspects = at_metrics_counter(m, "adtrack_kafka_partition_suspects_total", NULL,
                                               "Times a partition was routed to the spool: an acknowledgement later "
                                               "than --kafka-ack-wait-ms, a failed delivery, or its broker's "
                                               "connection lost.");
    st->ack_wait_spooled = at_metrics_counter(m, "adtrack_kafka_ack_wait_spooled_total", NULL,
                                              "Events answered from a copy in doubt in the spool while their original "
                                              "still waited in librdkafka (ack wait over, or the broker's connection lost).");
    st->spool_doubt[0] = at_metrics_counter(m, "adtrack_spool_in_doubt_total", NULL,
                                            "Events spooled after a produce attempt that ended without an answer "
                                            "(possibly persisted): the replayer looks for them in Kafka first.");
    st->spool_doubt[1] = at_metrics_counter(m, "adtrack_spool_doubt_checks_total", "result=\"already_in_kafka\"",
                                            "Spooled events in doubt (from the loops or from a replay attempt) looked "
                                            "for in Kafka: found there (not sent again) or not (sent).");
    st->spool_doubt[2] = at_metrics_counter(m, "adtrack_spool_doubt_checks_total", "result=\"sent\"",
                                            "Spooled events in doubt (from the loops or from a replay attempt) looked "
                                            "for in Kafka: found there (not sent again) or not (sent).");
    st->latency = at_metrics_histogram(m, "adtrack_http_request_duration_seconds", NULL,
                                       "Time from request to response, including waiting for durability.",
                                       at_metrics_latency_bounds, at_metrics_latency_nbounds);
    at_metrics_on_collect(m, stats_collect, srv);
    return st->latency != NULL && st->inflight != NULL ? 0 : -1;
}

void col_stats_response(col_server_t *srv, int status, uint64_t start_ns)
{
    if (status > 0 && status < (int)AT_ARRAY_LEN(srv->stats.requests)) {
        at_counter_t *c = srv->stats.requests[status];
        if (c != NULL)
            at_counter_add(c, 1);
    }
    if (start_ns != 0)
        at_histogram_observe(srv->stats.latency, (double)(col_now_ns() - start_ns) / 1e9);
}

bool col_server_ready(col_server_t *srv, const char **why)
{
    if (atomic_load(&srv->stopping)) {
        *why = "shutting down";
        return false;
    }
    /* Before "not reachable": wrong credentials or an untrusted certificate would otherwise
     * look like an outage the spool rides out (docs/SECURITY.md). */
    if (at_kafka_auth_failed(NULL, 0)) {
        *why = "kafka refused our credentials or certificate (see the log)";
        return false;
    }
    if (!col_spool_kafka_reachable(srv->spool)) {
        *why = "kafka not reachable";
        return false;
    }
    if (col_spool_full(srv->spool)) {
        *why = "spool over its size limit";
        return false;
    }
    *why = "ready";
    return true;
}

static bool is_trusted_peer(const struct sockaddr *sa, void *opaque)
{
    col_server_t *srv = opaque;
    char ip[64];
    uint8_t addr[16];
    if (srv->ntrusted == 0)
        return false;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, ip, sizeof(ip));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, ip, sizeof(ip));
    else
        return false;
    if (col_ip_parse(ip, strlen(ip), addr) != 0)
        return false;
    for (size_t i = 0; i < srv->ntrusted; i++)
        if (col_cidr_match(&srv->trusted[i], addr))
            return true;
    return false;
}

/* ---- pending requests ---- */

static void on_req_dispose(void *slotp)
{
    col_pending_t *p = *(col_pending_t **)slotp;
    if (p != NULL)
        p->req = NULL; /* the client went away; events still settle, nobody to answer */
}

/* While a request waits for its answer, bytes from its connection (a pipelined next
 * request, or the end of the connection) are left in the socket's buffer: h2o's HTTP/1 code
 * reads them once it polls the connection again after the answer. */
static void park_early_bytes(h2o_socket_t *sock, const char *err)
{
    AT_UNUSED(err);
    h2o_socket_read_stop(sock);
}

/*
 * h2o 2.2.5's HTTP/1 stops polling a connection for reads when a request is complete and
 * starts again once the answer is sent. Both only take effect at the start of the loop's
 * next iteration (lib/common/socket/evloop/epoll.c.h, update_status), so for an answer
 * given in the same iteration nothing happens, but an answer that waits for Kafka falls in
 * a later iteration: one epoll_ctl to stop and one to start, per request, 12% of the
 * collector's CPU at full load (perf, docs/bench/collector.md). Polling on, with a callback
 * that parks early bytes, leaves the registration untouched: no epoll_ctl in the common
 * case (no bytes until the answer), and the same behaviour as h2o's in the rare one.
 * HTTP/2 connections keep reading on their own and are left alone.
 */
static void keep_polling(h2o_req_t *req)
{
    if (req->version >= 0x200 || req->conn->callbacks->get_socket == NULL)
        return;
    h2o_socket_t *sock = req->conn->callbacks->get_socket(req->conn);
    if (sock != NULL && !h2o_socket_is_reading(sock))
        h2o_socket_read_start(sock, park_early_bytes);
}

col_pending_t *col_pending_new(col_loop_t *lp, h2o_req_t *req, col_pending_respond_cb respond, void *data)
{
    AT_ASSERT_LOOP(lp->loop);
    /* Reused from this loop's spares: one calloc/free pair less per request. */
    col_pending_t *p = lp->spare;
    if (p != NULL) {
        lp->spare = p->data;
        lp->nspare--;
        memset(p, 0, sizeof(*p));
    } else if ((p = calloc(1, sizeof(*p))) == NULL) {
        h2o_fatal("out of memory");
    }
    p->lp = lp;
    p->req = req;
    p->respond = respond;
    p->data = data;
    p->start_ns = col_now_ns();
    p->remaining = 1; /* held by the submitter until col_pending_seal() */
    p->slot = h2o_mem_alloc_shared(&req->pool, sizeof(*p->slot), on_req_dispose);
    *p->slot = p;
    keep_polling(req);
    atomic_fetch_add_explicit(&lp->inflight, 1, memory_order_relaxed);
    return p;
}

static void pending_settle(col_pending_t *p, bool ok)
{
    AT_ASSERT_LOOP(p->lp->loop);
    if (!ok)
        p->failed++;
    if (--p->remaining > 0)
        return;
    if (p->req != NULL) {
        *p->slot = NULL;
        p->respond(p, p->req);
    }
    col_loop_t *lp = p->lp;
    atomic_fetch_sub_explicit(&lp->inflight, 1, memory_order_relaxed);
    if (lp->nspare < SPARE_PENDING_MAX) {
        p->data = lp->spare;
        lp->spare = p;
        lp->nspare++;
    } else {
        free(p);
    }
}

void col_pending_seal(col_pending_t *p)
{
    pending_settle(p, true);
}

/* ---- durable sink ---- */

/* An event the spool could not take is answered 503 and lost: the one failure of the
 * durability promise, so an operator must see it in the log, not only in
 * adtrack_events_lost_total (found by the soak: a spool at --spool-max-bytes after minutes of
 * repeated outages at full load answered 503 to everything, silently). */
static void spool_refused(col_loop_t *lp, bool out_of_memory)
{
    lp->spool_refused++;
    /* col_spool_append() refuses only a closing spool (not while requests are served) or one
     * whose file plus queue would pass --spool-max-bytes. */
    const char *msg = !out_of_memory ? "spool full (--spool-max-bytes): events answered 503 and lost until it drains"
                                     : "out of memory for a spool record: events answered 503 and lost";
    if (at_log_gate(&lp->spool_refused_gate, msg, 10)) {
        char n[24];
        snprintf(n, sizeof(n), "%llu", (unsigned long long)lp->spool_refused);
        at_log(AT_LOG_ERROR, "spool", msg, "events_refused", n, NULL);
        lp->spool_refused = 0;
    }
}

/* Spools one event for @p p. @p failed: the delivery report of an attempt that failed, or
 * NULL when the event never went to Kafka. */
static void sink_spool(col_loop_t *lp, col_pending_t *p, int topic, const void *key, size_t keylen, const void *value,
                       size_t valuelen, const rd_kafka_message_t *failed)
{
    col_server_t *srv = lp->srv;
    col_spool_rec_t *rec = col_spool_rec_new((uint8_t)topic, key, keylen, value, valuelen, p);
    /* The broker may have appended it (the answer was lost): the replayer looks before it
     * sends it again (col_doubt.h). */
    if (rec != NULL && failed != NULL && rd_kafka_message_status(failed) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED)
        col_spool_rec_set_in_doubt(rec, failed->partition, rd_kafka_message_timestamp(failed, NULL), 0);

    if (rec == NULL || col_spool_append(srv->spool, lp->spool_client, rec) != 0) {
        bool oom = rec == NULL;
        free(rec);
        at_counter_add(srv->stats.durability_failures, 1);
        pending_settle(p, false);
        spool_refused(lp, oom);
    }
}

/*
 * An event on its way to Kafka. Its value buffer belongs to librdkafka (RD_KAFKA_MSG_F_FREE)
 * but stays valid until the delivery report, which runs on this loop thread, so the loop may
 * still read it until then. When the acknowledgement takes longer than --kafka-ack-wait-ms
 * (the partition's leader is gone, most likely), on_ack_wait() spools a copy *in doubt* and
 * the request is answered once that is on disk; librdkafka keeps trying the original, and
 * the replayer decides about the copy only once the original's fate is settled (see
 * col_spool.h, "in doubt"). Owned by the loop thread; reused from lp->spare_inflight.
 */
struct col_inflight_s {
    h2o_timeout_entry_t wait;
    col_pending_t *p;
    const char *value;       /* librdkafka's (our former) buffer: read only, until the report */
    size_t valuelen;
    int64_t sent_ms;         /* wall clock when produced */
    int32_t partition;       /* chosen by us (col_part.h), or COL_PART_ANY */
    uint8_t topic;
    uint8_t keylen;
    bool spooled;            /* a copy is in the spool, which settles the pending entry */
    uint64_t token;          /* the copy's, for col_spool_fate() */
    char key[COL_KEY_MAX];
};

static col_inflight_t *inflight_new(col_loop_t *lp)
{
    col_inflight_t *r = lp->spare_inflight;
    if (r != NULL) {
        lp->spare_inflight = (col_inflight_t *)r->p;
        lp->nspare_inflight--;
        memset(r, 0, sizeof(*r));
    } else if ((r = calloc(1, sizeof(*r))) == NULL) {
        h2o_fatal("out of memory");
    }
    return r;
}

static void inflight_free(col_loop_t *lp, col_inflight_t *r)
{
    if (h2o_timeout_is_linked(&r->wait))
        h2o_timeout_unlink(&r->wait);
    if (lp->nspare_inflight < SPARE_PENDING_MAX) {
        r->p = (col_pending_t *)lp->spare_inflight;
        lp->spare_inflight = r;
        lp->nspare_inflight++;
    } else {
        free(r);
    }
}

/* The acknowledgement is late: route the partition's next events to the spool, and answer
 * this one from the spool too. @locality: loop thread */
static void on_ack_wait(h2o_timeout_entry_t *entry)
{
    col_inflight_t *r = H2O_STRUCT_FROM_MEMBER(col_inflight_t, wait, entry);
    col_loop_t *lp = r->p->lp;
    col_server_t *srv = lp->srv;
    AT_ASSERT_LOOP(lp->loop);

    col_spool_partition_suspect(srv->spool, r->topic, r->partition, "no acknowledgement within --kafka-ack-wait-ms");
    col_spool_rec_t *rec = col_spool_rec_new(r->topic, r->key, r->keylen, r->value, r->valuelen, r->p);
    if (rec == NULL)
        return; /* the delivery report settles it, as without this */
    r->token = col_spool_fate_token(srv->spool);
    col_spool_rec_set_in_doubt(rec, r->partition, r->sent_ms, r->token);
    if (col_spool_append(srv->spool, lp->spool_client, rec) != 0) {
        free(rec); /* spool full: the delivery report decides */
        return;
    }
    r->spooled = true;
    at_counter_add(srv->stats.events_spooled, 1);
    at_counter_add(srv->stats.ack_wait_spooled, 1);
}

void col_sink_submit(col_pending_t *p, int topic, const char *key, size_t keylen, char *value, size_t valuelen)
{
    col_loop_t *lp = p->lp;
    col_server_t *srv = lp->srv;
    col_spool_t *sp = srv->spool;

    p->remaining++;
    /* Kafka known down, or this event's partition in trouble: to the spool at once, answered
     * after its fsync instead of after a delivery timeout. */
    int32_t part = col_part_of(col_spool_partitioner(sp), lp->rkt[topic], key, keylen,
                               col_spool_partition_count(sp, topic));
    if (col_spool_kafka_reachable(sp) && !(part != COL_PART_ANY && col_spool_partition_is_suspect(sp, topic, part))) {
        col_inflight_t *r = inflight_new(lp);
        r->p = p;
        r->value = value;
        r->valuelen = valuelen;
        r->sent_ms = col_wall_ms();
        r->partition = part;
        r->topic = (uint8_t)topic;
        /* A key longer than a campaign id (a rejected event's raw c) gets no copy: no ack wait. */
        bool copyable = keylen <= COL_KEY_MAX;
        r->keylen = copyable ? (uint8_t)keylen : 0;
        if (copyable && keylen > 0)
            memcpy(r->key, key, keylen);
        /* F_FREE: librdkafka keeps our buffer instead of copying it (and frees it after the
         * report); on an error the buffer is still ours. */
        rd_kafka_resp_err_t err = rd_kafka_producev(
            lp->rk, RD_KAFKA_V_RKT(lp->rkt[topic]), RD_KAFKA_V_PARTITION(part), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
            RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE(value, valuelen), RD_KAFKA_V_OPAQUE(r), RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            /* Not before this loop's first acknowledgement: at start-up the first events wait
             * for connections, metadata and the idempotent producer id (over a second on a
             * fresh real cluster), which says nothing about a partition and is not worth a
             * copy in the spool. */
            if (part != COL_PART_ANY && copyable && lp->acked_once) {
                r->wait.cb = on_ack_wait;
                h2o_timeout_link(lp->loop, &lp->ack_wait_timeout, &r->wait);
            }
            return;
        }
        inflight_free(lp, r);
        at_counter_add(srv->stats.delivery_failures, 1);
    }
    at_counter_add(srv->stats.events_spooled, 1);
    sink_spool(lp, p, topic, key, keylen, value, valuelen, NULL);
    free(value);
}

/* Delivery report: runs on the loop thread, inside rd_kafka_poll(). */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    col_loop_t *lp = opaque;
    col_inflight_t *r = m->_private;
    col_pending_t *p = r->p; /* not to be touched when r->spooled: the spool may have freed it */
    int topic = r->topic;
    bool spooled = r->spooled;
    uint64_t token = r->token;
    int32_t part = r->partition;
    AT_UNUSED(rk);

    inflight_free(lp, r);
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        lp->acked_once = true;
        at_kafka_note_ok();
        at_counter_add(lp->srv->stats.events_produced[topic], 1);
        /* An acknowledgement proves the partition works: it is Kafka's again. */
        if (part != COL_PART_ANY)
            col_spool_partition_clear(lp->srv->spool, topic, part);
        if (!spooled)
            pending_settle(p, true);
        else
            col_spool_fate(lp->srv->spool, token, COL_FATE_DELIVERED); /* the copy is not needed */
        return;
    }
    if (spooled)
        col_spool_fate(lp->srv->spool, token, COL_FATE_FAILED);
    at_counter_add(lp->srv->stats.delivery_failures, 1);
    /* A partition whose messages fail or time out while the rest of Kafka works goes to the
     * spool; all of Kafka down (messages purged by on_kafka_error, the probe failing) is the
     * global flag's business. */
    if (at_kafka_err_is_outage(m->err) && m->err != RD_KAFKA_RESP_ERR__PURGE_QUEUE &&
        col_spool_kafka_reachable(lp->srv->spool)) {
        if (m->partition >= 0)
            col_spool_partition_suspect(lp->srv->spool, topic, m->partition, rd_kafka_err2str(m->err));
        else
            col_spool_report_outage(lp->srv->spool);
    }
    if (spooled)
        return; /* its copy (in doubt) is on disk and the request answered */
    at_log(AT_LOG_DEBUG, "collector", "delivery failed; spooling", "error", rd_kafka_err2str(m->err), NULL);
    at_counter_add(lp->srv->stats.events_spooled, 1);
    sink_spool(lp, p, topic, m->key, m->key_len, m->payload, m->len, m);
}

/*
 * One broker's connection broke while Kafka as a whole answers (one broker of three killed):
 * the partitions it led go to the spool now, and this loop's events already waiting on them
 * are answered from the spool at once (as on_ack_wait() would after --kafka-ack-wait-ms),
 * instead of holding their connections for the ack wait. librdkafka's reason starts with
 * the broker's name, "host:port/<id>: ..."; without a readable id, the ack wait covers it.
 * @locality: loop thread
 */
static void broker_lost(col_loop_t *lp, const char *reason)
{
    const char *colon = reason != NULL ? strstr(reason, ": ") : NULL;
    const char *slash = colon != NULL ? memrchr(reason, '/', (size_t)(colon - reason)) : NULL;
    if (slash == NULL || slash + 1 == colon)
        return;
    int32_t id = 0;
    for (const char *c = slash + 1; c < colon; c++) {
        if (*c < '0' || *c > '9' || id > 100000000)
            return;
        id = id * 10 + (*c - '0');
    }
    if (col_spool_broker_down(lp->srv->spool, id) == 0)
        return;
    /* Every event of this loop waiting for an acknowledgement is on the ack-wait list; those
     * of the partitions now suspect are answered from the spool. */
    h2o_linklist_t *anchor = &lp->ack_wait_timeout._entries;
    for (h2o_linklist_t *node = anchor->next, *next; node != anchor; node = next) {
        next = node->next;
        h2o_timeout_entry_t *e = H2O_STRUCT_FROM_MEMBER(h2o_timeout_entry_t, _link, node);
        col_inflight_t *r = H2O_STRUCT_FROM_MEMBER(col_inflight_t, wait, e);
        if (col_spool_partition_is_suspect(lp->srv->spool, r->topic, r->partition)) {
            h2o_timeout_unlink(e);
            on_ack_wait(e);
        }
    }
}

/* Client-level errors: runs on the loop thread, inside rd_kafka_poll(). When every broker
 * is down, queued messages that were never sent are purged so they reach the spool now
 * rather than after --kafka-timeout-ms (purged messages were not sent: no duplicates). */
static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    col_loop_t *lp = opaque;
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        col_spool_report_outage(lp->srv->spool);
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_NON_BLOCKING);
    } else if (err == RD_KAFKA_RESP_ERR__TRANSPORT && col_spool_kafka_reachable(lp->srv->spool)) {
        broker_lost(lp, reason);
    }
    at_kafka_log_client_error("collector", err, reason);
}

static void on_dr_readable(h2o_socket_t *sock, const char *err)
{
    col_loop_t *lp = sock->data;
    char buf[256];
    AT_UNUSED(err);

    /* librdkafka writes one wake-up per non-polling period: drain it all, then always poll. */
    while (read(lp->dr_pipe[0], buf, sizeof(buf)) > 0)
        ;
    rd_kafka_poll(lp->rk, 0);
}

/* Spool completions arrive from the writer thread as one message per batch. */
typedef struct spool_done_msg_s {
    h2o_multithread_message_t super;
    col_spool_rec_t *list;
} spool_done_msg_t;

static void spool_notify(col_spool_rec_t *done, void *opaque)
{
    col_loop_t *lp = opaque;
    spool_done_msg_t *msg = calloc(1, sizeof(*msg));
    if (msg == NULL)
        h2o_fatal("out of memory");
    msg->list = done;
    h2o_multithread_send_message(&lp->spool_rx, &msg->super);
}

static void on_spool_done(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages)
{
    AT_UNUSED(rx);
    while (!h2o_linklist_is_empty(messages)) {
        spool_done_msg_t *msg = H2O_STRUCT_FROM_MEMBER(spool_done_msg_t, super.link, messages->next);
        h2o_linklist_unlink(&msg->super.link);
        for (col_spool_rec_t *r = msg->list, *next; r != NULL; r = next) {
            next = r->next;
            pending_settle(r->opaque, r->result == 0);
            free(r);
        }
        free(msg);
    }
}

/* ---- loop thread ---- */

static void close_listener(col_loop_t *lp)
{
    if (lp->listening) {
        at_listener_close(&lp->listener);
        lp->listening = false;
        lp->listen_fd = -1;
    }
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    col_loop_t *lp = H2O_STRUCT_FROM_MEMBER(col_loop_t, tick, entry);

    rd_kafka_poll(lp->rk, 0); /* safety net; delivery reports normally arrive via the pipe */
    if (lp->listening)
        at_listener_tick(&lp->listener);
    if (lp->stopping) {
        uint64_t now = col_now_ns();
        if (lp->listening && now >= lp->stop_deadline_ns - (uint64_t)lp->srv->conf->drain_timeout_ms * 1000000u) {
            /* The unready period (--shutdown-delay-ms) is over: stop taking connections. */
            close_listener(lp);
            h2o_context_request_shutdown(&lp->ctx);
        }
        size_t inflight = atomic_load_explicit(&lp->inflight, memory_order_relaxed);
        if (!lp->listening && (inflight == 0 || now >= lp->stop_deadline_ns)) {
            if (inflight > 0)
                at_logf(AT_LOG_WARN, "collector", "drain timeout with %zu requests still waiting for Kafka", inflight);
            lp->stopped = true;
            return;
        }
    }
    h2o_timeout_link(lp->loop, &lp->tick_timeout, &lp->tick);
}

typedef struct ctl_msg_s {
    h2o_multithread_message_t super;
} ctl_msg_t;

static void on_ctl(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages)
{
    col_loop_t *lp = H2O_STRUCT_FROM_MEMBER(col_loop_t, ctl_rx, rx);
    while (!h2o_linklist_is_empty(messages)) {
        ctl_msg_t *msg = H2O_STRUCT_FROM_MEMBER(ctl_msg_t, super.link, messages->next);
        h2o_linklist_unlink(&msg->super.link);
        free(msg);
    }
    if (!lp->stopping) {
        const col_conf_t *conf = lp->srv->conf;
        lp->stopping = true;
        lp->stop_deadline_ns =
            col_now_ns() + (uint64_t)(conf->shutdown_delay_ms + conf->drain_timeout_ms) * 1000000u;
    }
}

/* Runs the loop until the drain is over. @locality: loop thread */
static void loop_run(h2o_evloop_t *loop, void *opaque)
{
    col_loop_t *lp = opaque;

    while (!lp->stopped)
        h2o_evloop_run(loop, INT32_MAX);

    /* Anything still in librdkafka gets its delivery report before the producer goes away:
     * what Kafka acknowledges within a few seconds, as a success; the rest, purged, as a
     * failure that spools it (in doubt if it was sent). Waiting out --kafka-timeout-ms here
     * would hold a shutdown for a minute behind a partition without a leader. */
    rd_kafka_flush(lp->rk, (int)AT_MIN(lp->srv->conf->kafka_timeout_ms, (int64_t)SHUTDOWN_FLUSH_MS));
    rd_kafka_purge(lp->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
    for (int i = 0; i < 100 && rd_kafka_outq_len(lp->rk) > 0; i++)
        rd_kafka_poll(lp->rk, 50);
    rd_kafka_poll(lp->rk, 0);
}

/* ---- set-up ---- */

/* The main thread's part of a loop: its listening socket and its producer. Neither is an
 * h2o object; librdkafka handles are thread-safe. @locality: main thread, before start */
static int loop_prepare(col_server_t *srv, col_loop_t *lp, size_t index, at_err_t *err)
{
    const col_conf_t *conf = srv->conf;
    char linger[32], tmo[32], errstr[512];

    lp->srv = srv;
    lp->index = index;
    lp->dr_pipe[0] = lp->dr_pipe[1] = -1;
    lp->listen_fd = at_listen_open(&srv->addr, &srv->addrlen, 4096, srv->conf->listen, err);
    if (lp->listen_fd < 0)
        return -1;

    snprintf(linger, sizeof(linger), "%lld", (long long)conf->linger_ms);
    snprintf(tmo, sizeof(tmo), "%lld", (long long)conf->kafka_timeout_ms);
    /* reconnect.backoff.max.ms: librdkafka's 10 s default keeps a broker that came back
     * unused for up to 10 s while answers wait on its partitions (p99 8.1 s vs 3.0 s in
     * tests/e2e/failover.sh, docs/bench/failover.md); 1 s costs a few more connection
     * attempts during an outage. */
    const char *defaults[] = {"linger.ms", linger, "message.timeout.ms", tmo, "enable.idempotence", "true",
                              "acks", "all", "queue.buffering.max.messages", "100000",
                              "reconnect.backoff.max.ms", "1000", NULL};
    rd_kafka_conf_t *kc = at_kafka_conf_new(conf->brokers, &conf->kafka, defaults, &conf->kafka_prop, err);
    if (kc == NULL)
        return -1;
    rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
    rd_kafka_conf_set_error_cb(kc, on_kafka_error);
    rd_kafka_conf_set_opaque(kc, lp);
    lp->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr));
    if (lp->rk == NULL) {
        rd_kafka_conf_destroy(kc);
        return at_err_set(err, AT_ERR_INVALID, "kafka producer: %s", errstr);
    }
    for (int t = 0; t < COL_NTOPICS; t++)
        lp->rkt[t] = rd_kafka_topic_new(lp->rk, srv->topics[t], NULL);

    /* Delivery reports wake the loop through a pipe that librdkafka writes to. */
    if (pipe2(lp->dr_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
        return at_err_set(err, AT_ERR_IO, "pipe: %s", strerror(errno));
    rd_kafka_queue_t *mainq = rd_kafka_queue_get_main(lp->rk);
    rd_kafka_queue_io_event_enable(mainq, lp->dr_pipe[1], "1", 1);
    rd_kafka_queue_destroy(mainq);
    return 0;
}

/* The loop thread's part: every h2o object of the loop is created here, on the thread that
 * runs it (common/at_loop.h says why). @locality: loop thread */
static int loop_setup(h2o_evloop_t *loop, void *opaque, at_err_t *err)
{
    col_loop_t *lp = opaque;
    col_server_t *srv = lp->srv;

    lp->loop = loop;
    h2o_context_init(&lp->ctx, lp->loop, &srv->h2o);
    lp->accept_ctx.ctx = &lp->ctx;
    lp->accept_ctx.hosts = srv->h2o.hosts;

    lp->dr_sock = h2o_evloop_socket_create(lp->loop, lp->dr_pipe[0], H2O_SOCKET_FLAG_DONT_READ);
    lp->dr_sock->data = lp;
    h2o_socket_read_start(lp->dr_sock, on_dr_readable);

    at_listener_start(&lp->listener, srv->acceptor, lp->loop, lp->listen_fd, &lp->accept_ctx);
    lp->listening = true;

    lp->mq = h2o_multithread_create_queue(lp->loop);
    h2o_multithread_register_receiver(lp->mq, &lp->spool_rx, on_spool_done);
    h2o_multithread_register_receiver(lp->mq, &lp->ctl_rx, on_ctl);
    lp->spool_client = col_spool_register(srv->spool, spool_notify, lp);
    if (lp->spool_client < 0)
        return at_err_set(err, AT_ERR_RANGE, "--threads: at most %d loops", COL_SPOOL_MAX_CLIENTS);

    h2o_timeout_init(lp->loop, &lp->tick_timeout, TICK_MS);
    h2o_timeout_init(lp->loop, &lp->ack_wait_timeout, (uint64_t)srv->conf->kafka_ack_wait_ms);
    lp->tick.cb = on_tick;
    h2o_timeout_link(lp->loop, &lp->tick_timeout, &lp->tick);
    return 0;
}

col_server_t *col_server_new(col_conf_t *conf, at_err_t *err)
{
    col_server_t *srv = calloc(1, sizeof(*srv));
    char linger[32], tmo[32];

    if (srv == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    srv->conf = conf;
    srv->topics[COL_TOPIC_RAW] = conf->topic_raw;
    srv->topics[COL_TOPIC_REJECTED] = conf->topic_rejected;
    int an = snprintf(srv->cookie_attrs, sizeof(srv->cookie_attrs), "; Max-Age=%lld; Path=/%s%s%s",
                      (long long)conf->cookie_max_age_days * 86400, conf->cookie_domain[0] ? "; Domain=" : "",
                      conf->cookie_domain, conf->cookie_secure ? "; SameSite=None; Secure" : "; SameSite=Lax");
    srv->cookie_attrs_len = an > 0 && (size_t)an < sizeof(srv->cookie_attrs) ? (size_t)an : 0;
    if (at_listen_parse(conf->listen, &srv->addr, &srv->addrlen, err) != 0)
        goto fail;
    if (col_postback_keys_from_list(conf->postback_keys.items, conf->postback_keys.count, &srv->postback_keys, err) !=
        0)
        goto fail;
    for (size_t i = 0; i < srv->postback_keys.count; i++)
        at_log_add_secret(srv->postback_keys.items[i].secret); /* each one masked, not only the whole text */

    srv->ntrusted = conf->trusted_proxies.count;
    srv->trusted = calloc(srv->ntrusted + 1, sizeof(*srv->trusted));
    for (size_t i = 0; i < srv->ntrusted; i++) {
        if (col_cidr_parse(conf->trusted_proxies.items[i], &srv->trusted[i], err) != 0) {
            char msg[AT_ERR_MSG_MAX];
            snprintf(msg, sizeof(msg), "%s", err->msg);
            at_err_set(err, AT_ERR_INVALID, "--trusted-proxies: %s", msg);
            goto fail;
        }
    }

    srv->metrics = at_metrics_new();
    if (srv->metrics == NULL || stats_init(srv) != 0) {
        at_err_set(err, AT_ERR_NOMEM, "metrics: out of memory");
        goto fail;
    }
    /* Descriptors besides client connections: listeners, wake-up pipes, spool files, and each
     * loop's broker connections. */
    at_accept_raise_fd_limit(&conf->max_connections, 256 + 16 * conf->threads, "--max-connections");
    /* A load balancer in --trusted-proxies carries every client's traffic: no per-address limit. */
    at_accept_limits_t lim = {.max_connections = (int)conf->max_connections,
                              .max_per_ip = (int)conf->max_connections_per_ip,
                              .exempt = is_trusted_peer,
                              .exempt_opaque = srv};
    srv->acceptor = at_acceptor_new(&lim, srv->metrics, "collector", err);
    if (srv->acceptor == NULL)
        goto fail;

    snprintf(linger, sizeof(linger), "%d", 5);
    /* The replay producer gives up sooner than the loops: a window of a partition without a
     * leader must not hold the replay of everything behind it for a minute. */
    snprintf(tmo, sizeof(tmo), "%lld", (long long)AT_MIN(conf->kafka_timeout_ms, (int64_t)REPLAY_MSG_TIMEOUT_MS));
    const char *defaults[] = {"linger.ms", linger, "message.timeout.ms", tmo, "enable.idempotence", "true",
                              "acks", "all", NULL};
    rd_kafka_conf_t *kc = at_kafka_conf_new(conf->brokers, &conf->kafka, defaults, &conf->kafka_prop, err);
    if (kc == NULL)
        goto fail;
    /* The consumer that looks for events in doubt: the same brokers and security settings. */
    rd_kafka_conf_t *check = at_kafka_conf_new(conf->brokers, &conf->kafka, NULL, &conf->kafka_prop, err);
    if (check == NULL) {
        rd_kafka_conf_destroy(kc);
        goto fail;
    }
    srv->spool = col_spool_open(conf->spool_dir, (uint64_t)conf->spool_max_bytes, kc, check, srv->topics, COL_NTOPICS,
                                err);
    if (srv->spool != NULL)
        col_spool_set_original_timeout(srv->spool, (int)conf->kafka_timeout_ms);
    if (srv->spool == NULL)
        goto fail;

    h2o_config_init(&srv->h2o);
    srv->h2o.max_request_entity_size = (size_t)conf->body_max_bytes;
    /* h2o 2.2.5: from waiting for a request until all of it (headers and body) arrived, and
     * the keep-alive idle time (docs/COLLECTOR.md, "Connections and slow clients"). */
    srv->h2o.http1.req_timeout = (uint64_t)conf->request_timeout_ms;
    srv->h2o.http2.idle_timeout = (uint64_t)conf->request_timeout_ms;
    srv->h2o.server_name = h2o_iovec_init(H2O_STRLIT("adtrack"));
    h2o_hostconf_t *host = h2o_config_register_host(&srv->h2o, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    col_http_register(srv, path);
    return srv;

fail:
    col_server_destroy(srv);
    return NULL;
}

int col_server_start(col_server_t *srv, at_err_t *err)
{
    srv->nloops = (size_t)srv->conf->threads;
    srv->loops = calloc(srv->nloops, sizeof(*srv->loops));
    for (size_t i = 0; i < srv->nloops; i++)
        if (loop_prepare(srv, &srv->loops[i], i, err) != 0)
            return -1;
    for (size_t i = 0; i < srv->nloops; i++) {
        char name[32];
        snprintf(name, sizeof(name), "col-loop-%zu", i);
        if (at_loop_start(&srv->loops[i].tid, name, loop_setup, loop_run, &srv->loops[i], err) != 0)
            return -1;
        srv->loops[i].started = true;
    }

    char host[INET6_ADDRSTRLEN + 8], port[16], addr[INET6_ADDRSTRLEN + 24];
    getnameinfo((struct sockaddr *)&srv->addr, srv->addrlen, host, sizeof(host), port, sizeof(port),
                NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(addr, sizeof(addr), srv->addr.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
    char threads[16];
    snprintf(threads, sizeof(threads), "%zu", srv->nloops);
    at_log(AT_LOG_INFO, "collector", "listening", "addr", addr, "threads", threads, "brokers", srv->conf->brokers,
           "spool_dir", srv->conf->spool_dir, NULL);
    if (srv->conf->click_key == NULL || srv->conf->click_key[0] == '\0')
        at_log(AT_LOG_WARN, "collector", "no --click-key: /c records clicks but refuses every redirect", NULL);
    return 0;
}

void col_server_stop(col_server_t *srv)
{
    if (srv->loops == NULL)
        return;
    atomic_store(&srv->stopping, true);
    at_log(AT_LOG_INFO, "collector", "shutting down: draining in-flight requests", NULL);
    for (size_t i = 0; i < srv->nloops; i++) {
        if (srv->loops[i].mq == NULL)
            continue;
        ctl_msg_t *msg = calloc(1, sizeof(*msg));
        h2o_multithread_send_message(&srv->loops[i].ctl_rx, &msg->super);
    }
    for (size_t i = 0; i < srv->nloops; i++)
        if (srv->loops[i].started)
            pthread_join(srv->loops[i].tid, NULL);
}

void col_server_destroy(col_server_t *srv)
{
    if (srv == NULL)
        return;
    for (size_t i = 0; srv->loops != NULL && i < srv->nloops; i++) {
        col_loop_t *lp = &srv->loops[i];
        if (lp->rk != NULL) {
            for (int t = 0; t < COL_NTOPICS; t++)
                if (lp->rkt[t] != NULL)
                    rd_kafka_topic_destroy(lp->rkt[t]);
            rd_kafka_destroy(lp->rk);
        }
        if (!lp->listening && lp->listen_fd >= 0 && lp->loop == NULL)
            close(lp->listen_fd);
        for (col_pending_t *p = lp->spare, *next; p != NULL; p = next) { /* the loop thread has exited */
            next = p->data;
            free(p);
        }
        lp->spare = NULL;
        for (col_inflight_t *r = lp->spare_inflight, *next; r != NULL; r = next) {
            next = (col_inflight_t *)r->p;
            free(r);
        }
        lp->spare_inflight = NULL;
        /* The h2o loop and context are left to process exit: 2.2.5 cannot dispose a loop
         * that still has idle keep-alive connections attached. */
    }
    /* Spool last: the flushes above may have spooled failed deliveries. */
    col_spool_close(srv->spool, (int)srv->conf->drain_timeout_ms);
    at_acceptor_destroy(srv->acceptor);
    at_metrics_destroy(srv->metrics);
    free(srv->trusted);
    col_postback_keys_free(&srv->postback_keys);
    free(srv);
}
