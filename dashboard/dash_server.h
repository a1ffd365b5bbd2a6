/*
 * dash_server.h: the adtrack-dashboard process.
 *
 * Three threads:
 *   - the HTTP loop (h2o evloop, one thread): serves the page, /api/snapshot, health and
 *     metrics, and streams /events (SSE) to browsers. It never touches Redis or sockets of
 *     its own making other than the listener.
 *   - the poll thread (dash_poll.c): every --poll-ms, pipelined reads from Redis and one
 *     /metrics scrape per --scrape target, feeds the model (dash_model.h), builds the
 *     snapshot JSON and hands it to the loop as a message (h2o_multithread).
 *   - the subscriber thread (dash_poll.c): SUBSCRIBE adtrack:coredata; every change is
 *     handed to the loop at once as an SSE `change` event, and wakes the poll thread so a
 *     fresh snapshot follows immediately.
 *   - the history thread (dash_history.c, only with --reports): every --reports-poll-s, two
 *     reports from coredata's GET /v1/reports, handed to the loop as a `history` message.
 * Threads share only: the message queue (h2o's, locked inside), atomics, the poll
 * thread's wake-up condition variable, and the metrics registry (atomic counters).
 */
#ifndef DASH_SERVER_H
#define DASH_SERVER_H

#include <h2o.h>
#include <pthread.h>
#include <stdatomic.h>

#include "at_accept.h"
#include "at_log.h"
#include "at_metrics.h"
#include "dash_auth.h"
#include "dash_conf.h"
#include "dash_model.h"
#include "dash_scrape.h"

#define DASH_SNAPSHOT_MAX (64u << 20) /* a snapshot larger than this is not built */

typedef struct dash_server_s dash_server_t;

typedef struct dash_stats_s {
    at_gauge_t *clients;
    at_counter_t *clients_total, *clients_dropped, *clients_refused;
    at_counter_t *polls, *poll_errors, *scrapes, *scrape_errors;
    at_counter_t *changes, *changes_invalid, *snapshots;
    at_counter_t *auth_refused, *logins, *login_failures;
    at_counter_t *history_fetches, *history_errors;
    at_gauge_t *redis_up, *snapshot_bytes;
    at_histogram_t *poll_duration;
} dash_stats_t;

/* A message from the poll or subscriber thread to the loop: an SSE event to broadcast. */
enum { DASH_MSG_SNAPSHOT = 1, DASH_MSG_CHANGE = 2, DASH_MSG_HISTORY = 3 };
typedef struct dash_msg_s {
    h2o_multithread_message_t super;
    int kind;
    char *json; /* heap; ownership passes to the receiver */
    size_t len;
} dash_msg_t;

struct dash_server_s {
    dash_conf_t *conf; /* borrowed; outlives the server */
    dash_auth_t *auth; /* NULL with --auth none */
    at_metrics_t *metrics;
    dash_stats_t stats;

    /* ---- HTTP loop (loop thread only, after start) ---- */
    h2o_globalconf_t h2o;
    h2o_evloop_t *loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int listen_fd;
    at_listener_t listener;
    bool listening;
    at_acceptor_t *acceptor; /* connection limits */
    h2o_multithread_queue_t *mq;
    h2o_multithread_receiver_t events_rx; /* dash_msg_t from the other threads */
    h2o_multithread_receiver_t ctl_rx;    /* stop request */
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick;
    h2o_linklist_t clients; /* dash_client_t (dash_http.c) */
    size_t nclients;
    char *snapshot; /* the latest snapshot JSON (heap), NULL before the first poll */
    size_t snapshot_len;
    char *history; /* the latest history JSON (heap), NULL before the first fetch or with no --reports */
    size_t history_len;
    bool loop_stopped;

    /* ---- poll thread ---- */
    dash_model_t *model;
    dash_url_t *urls; /* one per --scrape target */
    int64_t last_full_minute;
    uint64_t polls_done;
    at_log_gate_t redis_gate; /* refused credentials: logged once per new message or 30 s */
    void *redis; /* redisContext *, poll thread only */

    /* ---- history thread (dash_history.c) ---- */
    bool history_on;        /* --reports given; set before the threads start, then read-only */
    dash_url_t reports_url; /* --reports, its path without a trailing '/'; read-only after start */
    bool history_failing;   /* history thread only: the last fetch failed (log once per outage) */
    pthread_mutex_t history_mu;
    pthread_cond_t history_cv; /* CLOCK_MONOTONIC; signalled at stop */

    /* ---- shared ---- */
    pthread_t loop_tid, poll_tid, sub_tid, history_tid;
    bool loop_started, poll_started, sub_started, history_started;
    atomic_bool stopping;
    atomic_bool redis_up;
    atomic_bool subscribed;
    pthread_mutex_t wake_mu;
    pthread_cond_t wake_cv; /* CLOCK_MONOTONIC */
    bool wake;              /* under wake_mu: poll now */
};

/* Builds the server from @p conf (borrowed): model, metrics, h2o configuration. Nothing
 * runs yet. NULL + err (bad --listen, --scrape or --redis). */
dash_server_t *dash_server_new(dash_conf_t *conf, at_err_t *err);

/* Opens the listener and starts the threads. 0 or -1 + err. */
int dash_server_start(dash_server_t *srv, at_err_t *err);

/* Stops the threads (joins them). @locality: any thread but the server's. */
void dash_server_stop(dash_server_t *srv);

/* Frees what is safe to free; accepts NULL. Call after dash_server_stop. */
void dash_server_destroy(dash_server_t *srv);

/* The bound port (after start), for logs and tests. */
int dash_server_port(const dash_server_t *srv);

/* ---- between modules ---- */

/* Registers the HTTP handler (dash_http.c). */
void dash_http_register(dash_server_t *srv, h2o_pathconf_t *pathconf);
/* Broadcasts one message to every /events client and keeps snapshots for new clients
 * (dash_http.c). Takes ownership of msg. @locality: loop thread */
void dash_http_on_message(dash_server_t *srv, dash_msg_t *msg);
/* Once per second: heartbeats (dash_http.c). @locality: loop thread */
void dash_http_tick(dash_server_t *srv, int64_t now_ms);

/* Thread bodies (dash_poll.c). */
void *dash_poll_main(void *arg);
void *dash_sub_main(void *arg);
/* Makes the poll thread poll now. @locality: any thread */
void dash_poll_wake(dash_server_t *srv);

/* Sends an event to the loop; takes ownership of @p json. @locality: any thread */
void dash_server_post(dash_server_t *srv, int kind, char *json, size_t len);

int64_t dash_mono_ms(void);
/* Waits on @p cv (a CLOCK_MONOTONIC condition variable; @p mu held) for at most @p ms > 0. */
void dash_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms);
int64_t dash_wall_ms(void);

#endif
