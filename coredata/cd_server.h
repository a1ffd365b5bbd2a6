/*
 * cd_server.h: adtrack-coredata's process: the admin API on h2o (one event loop per
 * thread), the core worker, the fan-out thread and the updates-feed consumer.
 *
 * Threads: HTTP loop(s) parse, validate and authenticate requests and answer reads from
 * the in-memory state; writes go to the core worker, whose answer comes back to the loop
 * as an h2o_multithread message. No loop thread ever waits for the store, Redis or Kafka.
 */
#ifndef CD_SERVER_H
#define CD_SERVER_H

#include <h2o.h>
#include <stdatomic.h>

#include "at_accept.h"
#include "at_metrics.h"
#include "cd_auth.h"
#include "cd_conf.h"
#include "cd_core.h"
#include "cd_fanout.h"
#include "cd_reports.h"
#include "cd_state.h"

typedef struct cd_server_s cd_server_t;
typedef struct cd_feed_s cd_feed_t;

typedef struct cd_loop_s {
    cd_server_t *srv;
    pthread_t tid;
    bool started;
    h2o_evloop_t *loop;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    at_listener_t listener;
    bool listening;
    int listen_fd;
    h2o_multithread_queue_t *mq;
    h2o_multithread_receiver_t reply_rx; /* answers from the core worker */
    h2o_multithread_receiver_t ctl_rx;   /* stop */
    h2o_multithread_receiver_t report_rx; /* answers from the reports thread */
    atomic_size_t inflight;
    bool stopping, stopped;
} cd_loop_t;

struct cd_server_s {
    cd_conf_t *conf;
    h2o_globalconf_t h2o;
    struct sockaddr_storage addr;
    socklen_t addrlen;
    cd_loop_t *loops;
    size_t nloops;
    at_metrics_t *metrics;
    at_acceptor_t *acceptor; /* connection limits, shared by the loops */
    cd_auth_t *auth;
    cd_state_t state;
    cd_fanout_t *fo;
    cd_core_t *core;
    cd_feed_t *feed;
    cd_reports_t *reports; /* GET /v1/reports: its own thread (cd_reports.h) */
    atomic_bool stopping;
    at_counter_t *requests[600];
    at_histogram_t *latency;
};

/* Opens the store (MongoDB with --mongo, else the file store), loads it, creates the
 * fan-out and the worker. NULL + err. */
cd_server_t *cd_server_new(cd_conf_t *conf, at_err_t *err);
/* Starts the threads and the listener(s). 0 or -1. */
int cd_server_start(cd_server_t *srv, at_err_t *err);
/* Port actually bound (useful with port 0). */
int cd_server_port(const cd_server_t *srv);
/* Stops taking requests, answers those in flight, drains the fan-out (bounded). */
void cd_server_stop(cd_server_t *srv);
void cd_server_destroy(cd_server_t *srv);

/* ---- the admin API (cd_http.c) ---- */
/* Installs the API handler on @p pathconf. */
void cd_http_register(cd_server_t *srv, h2o_pathconf_t *pathconf);
/* Receiver of the core worker's answers on a loop thread. */
void cd_http_on_reply(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages);
/* Receiver of the reports thread's answers on a loop thread. */
void cd_http_on_report(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages);

/* ---- the updates feed (cd_feed.c) ---- */
cd_feed_t *cd_feed_new(const cd_conf_t *conf, cd_core_t *core, at_metrics_t *metrics, at_err_t *err);
int cd_feed_start(cd_feed_t *f, at_err_t *err);
void cd_feed_stop(cd_feed_t *f);
void cd_feed_destroy(cd_feed_t *f);

#endif
