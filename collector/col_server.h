/*
 * col_server.h: the collector process: N event-loop threads serving HTTP with h2o, each
 * with its own SO_REUSEPORT listener and Kafka producer, sharing one spool.
 *
 * Durability path of one event (all on the loop thread that took the request, except the
 * spool's own threads):
 *   request -> col_sink_submit() -> Kafka producer (or, while the spool is active, the spool)
 *           -> delivery report through the producer's wake-up pipe in the h2o loop
 *           -> on failure, the spool (group-committed fsync) -> message back to the loop
 *           -> col_pending_done() -> response
 */
#ifndef COL_SERVER_H
#define COL_SERVER_H

#include <h2o.h>
#include <pthread.h>
#include <stdatomic.h>
#include <librdkafka/rdkafka.h>

#include "at_accept.h"
#include "at_event.h"
#include "at_log.h"
#include "at_metrics.h"
#include "at_uuid.h"
#include "col_conf.h"
#include "col_postback.h"
#include "col_ip.h"
#include "col_spool.h"

enum { COL_TOPIC_RAW = 0, COL_TOPIC_REJECTED = 1, COL_NTOPICS = 2 };

typedef struct col_server_s col_server_t;
typedef struct col_loop_s col_loop_t;
typedef struct col_pending_s col_pending_t;
typedef struct col_inflight_s col_inflight_t;

#define COL_KEY_MAX 64 /* campaign ids are at most 64 bytes (docs/EVENTS.md) */


/* Metrics, registered once; updated from any thread. */
typedef struct col_stats_s {
    at_counter_t *requests[600];  /* by status code; the codes the collector sends are registered at start */
    at_counter_t *events_produced[COL_NTOPICS];
    at_counter_t *events_spooled;
    at_counter_t *delivery_failures;
    at_counter_t *rejected[32];   /* by at_reject_t */
    at_counter_t *durability_failures;
    at_gauge_t *spool_bytes, *spool_active, *kafka_queue, *kafka_reachable, *inflight;
    at_counter_t *spool_fsyncs, *spool_replayed, *spool_dead_lettered;
    at_counter_t *spool_doubt[3]; /* spooled, already in Kafka, sent again */
    at_counter_t *ack_wait_suspects, *ack_wait_spooled;
    at_histogram_t *latency;
    uint64_t spool_seen_fsyncs, spool_seen_replayed, spool_seen_dead; /* collect-callback bookkeeping */
    uint64_t spool_seen_doubt[3];
    uint64_t spool_seen_suspects;
} col_stats_t;

/* A request waiting for its events to become durable. Heap-allocated; owned by the loop
 * until the last of its events is done (remaining == 0), then freed by col_pending_done. */
typedef void (*col_pending_respond_cb)(col_pending_t *p, h2o_req_t *req);
struct col_pending_s {
    col_loop_t *lp;
    h2o_req_t *req;          /* NULL once the client went away */
    col_pending_t **slot;    /* in req->pool; cleared when we answer, so disposal cannot touch us */
    unsigned remaining;      /* events not yet durable */
    unsigned failed;         /* events that could not be made durable */
    uint64_t start_ns;
    col_pending_respond_cb respond; /* builds the answer once all events are settled */
    void *data;              /* respond's data, allocated in req->pool */
};

struct col_loop_s {
    col_server_t *srv;
    size_t index;
    pthread_t tid;
    bool started;            /* tid is a running (or finished, not yet joined) loop thread */
    h2o_evloop_t *loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    int listen_fd;
    at_listener_t listener;
    bool listening;          /* the listener is open (until the drain closes it) */

    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt[COL_NTOPICS];
    int dr_pipe[2];
    h2o_socket_t *dr_sock;

    h2o_multithread_queue_t *mq;
    h2o_multithread_receiver_t spool_rx; /* spool write completions */
    h2o_multithread_receiver_t ctl_rx;   /* shutdown request */
    int spool_client;

    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick;

    at_uuid7_gen_t uuid;
    col_pending_t *spare;    /* freed pending entries kept for reuse (linked by data), this loop's */
    unsigned nspare;
    col_inflight_t *spare_inflight; /* the same for events on their way to Kafka */
    unsigned nspare_inflight;
    h2o_timeout_t ack_wait_timeout; /* --kafka-ack-wait-ms */
    at_log_gate_t spool_refused_gate; /* "spool full" error, at most every 10 s per loop */
    uint64_t spool_refused;           /* events refused since that line was last written */
    bool acked_once;         /* Kafka acknowledged one of this loop's events: ack waits count from now on */
    atomic_size_t inflight; /* pending requests not yet answered or settled */
    uint64_t stop_deadline_ns;
    bool stopping;
    bool stopped;
};

struct col_server_s {
    col_conf_t *conf;
    h2o_globalconf_t h2o;
    col_loop_t *loops;
    size_t nloops;
    col_spool_t *spool;
    at_acceptor_t *acceptor; /* connection limits, shared by the loops */
    at_metrics_t *metrics;
    col_stats_t stats;
    col_cidr_t *trusted;
    size_t ntrusted;
    const char *topics[COL_NTOPICS];
    col_postback_keys_t postback_keys; /* parsed --postback-keys; read-only after start */
    char cookie_attrs[512];  /* "; Max-Age=...; Path=/..." after name=value, made once at start */
    size_t cookie_attrs_len;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    atomic_bool stopping;
};

/*
 * Builds the server from @p conf (borrowed; must outlive the server): metrics, spool,
 * h2o configuration. Nothing listens yet. Returns NULL + err (e.g. a bad --listen,
 * --trusted-proxies or --kafka-prop, or an unusable --spool-dir).
 */
col_server_t *col_server_new(col_conf_t *conf, at_err_t *err);

/* Opens the listeners and starts the loop threads. 0 or -1 + err. */
int col_server_start(col_server_t *srv, at_err_t *err);

/*
 * Graceful stop: listeners close, keep-alive ends, in-flight requests finish (up to
 * --drain-timeout-ms), producers flush (failures go to the spool), the spool syncs.
 * Blocks until the loop threads exit. @locality: any thread but a loop thread.
 */
void col_server_stop(col_server_t *srv);

/* Frees everything; accepts NULL. Call after col_server_stop (or if never started). */
void col_server_destroy(col_server_t *srv);

/* ---- used by the handlers (col_http.c) ---- */

/* Starts tracking @p req; respond is called once every submitted event is settled.
 * @locality: loop thread */
col_pending_t *col_pending_new(col_loop_t *lp, h2o_req_t *req, col_pending_respond_cb respond, void *data);

/* Hands one event to the durable path on behalf of @p p (remaining++). Copies @p key and
 * takes ownership of @p value, a heap string from libbson's allocator (the system malloc:
 * adtrack never sets a libbson memory vtable), which librdkafka then frees itself.
 * @locality: loop thread */
void col_sink_submit(col_pending_t *p, int topic, const char *key, size_t keylen, char *value, size_t valuelen);

/* Called when the caller has submitted everything: answers at once if all events are
 * already settled (e.g. the spool refused them). @locality: loop thread */
void col_pending_seal(col_pending_t *p);

/* Counts a response with @p status and its latency since @p start_ns. */
void col_stats_response(col_server_t *srv, int status, uint64_t start_ns);

/* Wall-clock milliseconds since the epoch. */
int64_t col_wall_ms(void);

/* Monotonic nanoseconds. */
uint64_t col_now_ns(void);

/* True when /readyz should answer 200. */
bool col_server_ready(col_server_t *srv, const char **why);

/* Registers the HTTP handler on the h2o path config (col_http.c). */
void col_http_register(col_server_t *srv, h2o_pathconf_t *pathconf);

#endif
