/*
 * cd_server.c: threads, listeners and life cycle of adtrack-coredata. See cd_server.h.
 */
#include "at_accept.h"
#include "at_listen.h"
#include "cd_server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "at_log.h"
#include "at_secret.h"
#include "at_loop.h"

#define TICK_MS 100
#define COMP "coredata"

/* ---- loop thread ---- */

typedef struct ctl_msg_s {
    h2o_multithread_message_t super;
} ctl_msg_t;

static void on_ctl(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages)
{
    cd_loop_t *lp = H2O_STRUCT_FROM_MEMBER(cd_loop_t, ctl_rx, rx);
    while (!h2o_linklist_is_empty(messages)) {
        ctl_msg_t *msg = H2O_STRUCT_FROM_MEMBER(ctl_msg_t, super.link, messages->next);
        h2o_linklist_unlink(&msg->super.link);
        free(msg);
    }
    lp->stopping = true;
    if (lp->listening) {
        at_listener_close(&lp->listener);
        lp->listening = false;
        h2o_context_request_shutdown(&lp->ctx);
    }
}

/* @locality: loop thread */
static void loop_run(h2o_evloop_t *loop, void *opaque)
{
    cd_loop_t *lp = opaque;
    /* Wake at least every TICK_MS so a stop request with requests still in flight is seen. */
    while (!(lp->stopping && atomic_load(&lp->inflight) == 0)) {
        h2o_evloop_run(loop, TICK_MS);
        if (lp->listening)
            at_listener_tick(&lp->listener);
    }
    lp->stopped = true;
}

/* ---- set-up ---- */

/* The main thread's part of a loop: its listening socket. @locality: main thread */
static int loop_prepare(cd_server_t *srv, cd_loop_t *lp, at_err_t *err)
{
    lp->srv = srv;
    atomic_init(&lp->inflight, 0);
    lp->listen_fd = at_listen_open(&srv->addr, &srv->addrlen, 1024, srv->conf->listen, err);
    return lp->listen_fd < 0 ? -1 : 0;
}

/* Every h2o object of the loop, created on the loop's own thread (common/at_loop.h says
 * why). @locality: loop thread */
static int loop_setup(h2o_evloop_t *loop, void *opaque, at_err_t *err)
{
    cd_loop_t *lp = opaque;
    cd_server_t *srv = lp->srv;
    AT_UNUSED(err);
    lp->loop = loop;
    h2o_context_init(&lp->ctx, lp->loop, &srv->h2o);
    lp->accept_ctx.ctx = &lp->ctx;
    lp->accept_ctx.hosts = srv->h2o.hosts;
    at_listener_start(&lp->listener, srv->acceptor, lp->loop, lp->listen_fd, &lp->accept_ctx);
    lp->listening = true;
    lp->mq = h2o_multithread_create_queue(lp->loop);
    h2o_multithread_register_receiver(lp->mq, &lp->reply_rx, cd_http_on_reply);
    h2o_multithread_register_receiver(lp->mq, &lp->ctl_rx, on_ctl);
    h2o_multithread_register_receiver(lp->mq, &lp->report_rx, cd_http_on_report);
    return 0;
}

static void stats_init(cd_server_t *srv)
{
    static const int codes[] = {200, 201, 400, 401, 403, 404, 405, 409, 413, 500, 503};
    char lbl[32];
    for (size_t i = 0; i < AT_ARRAY_LEN(codes); i++) {
        snprintf(lbl, sizeof(lbl), "code=\"%d\"", codes[i]);
        srv->requests[codes[i]] =
            at_metrics_counter(srv->metrics, "adtrack_http_requests_total", lbl, "HTTP responses by status code.");
    }
    srv->latency = at_metrics_histogram(srv->metrics, "adtrack_http_request_duration_seconds", NULL,
                                        "Time from request to response, including the store write for changes.",
                                        at_metrics_latency_bounds, at_metrics_latency_nbounds);
}

#ifdef CD_HAVE_MONGO_STORE
#define MONGO_AVAILABLE 1
#else
#define MONGO_AVAILABLE 0
#endif

static cd_store_t *open_store(const cd_conf_t *conf, at_err_t *err)
{
    if (conf->mongo[0] != '\0') {
#if MONGO_AVAILABLE
        return cd_store_mongo_new(conf->mongo, conf->mongo_w, conf->mongo_wtimeout_ms, err);
#else
        at_err_set(err, AT_ERR_INVALID, "--mongo: this build has no MongoDB store (coredata/cd_store_mongo.c)");
        return NULL;
#endif
    }
    return cd_store_file_new(conf->data_dir, err);
}

cd_server_t *cd_server_new(cd_conf_t *conf, at_err_t *err)
{
    cd_server_t *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    srv->conf = conf;
    atomic_init(&srv->stopping, false);
    cd_state_init(&srv->state);
    if (at_listen_parse(conf->listen, &srv->addr, &srv->addrlen, err) != 0)
        goto fail;
    srv->auth = cd_auth_new(&conf->admin_token, &conf->read_token, err);
    if (srv->auth == NULL)
        goto fail;
    srv->metrics = at_metrics_new();
    if (srv->metrics == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    stats_init(srv);
    at_accept_raise_fd_limit(&conf->max_connections, 256, "--max-connections");
    at_accept_limits_t lim = {.max_connections = (int)conf->max_connections,
                              .max_per_ip = (int)conf->max_connections_per_ip};
    srv->acceptor = at_acceptor_new(&lim, srv->metrics, COMP, err);
    if (srv->acceptor == NULL)
        goto fail;
    cd_store_t *store = open_store(conf, err);
    if (store == NULL)
        goto fail;
    srv->fo = cd_fanout_new(conf, &srv->state, srv->metrics, err);
    if (srv->fo == NULL) {
        cd_store_destroy(store);
        goto fail;
    }
    srv->core = cd_core_new(conf, store, &srv->state, srv->fo, srv->metrics, err);
    if (srv->core == NULL)
        goto fail;
    srv->reports = cd_reports_new(conf, srv->metrics, err);
    if (srv->reports == NULL)
        goto fail;
    if (conf->feed) {
        srv->feed = cd_feed_new(conf, srv->core, srv->metrics, err);
        if (srv->feed == NULL)
            goto fail;
    }

    h2o_config_init(&srv->h2o);
    /* Bodies up to twice the limit reach the handler, which answers 413 with a JSON body;
     * beyond that h2o itself answers 413. */
    srv->h2o.max_request_entity_size = (size_t)conf->body_max_bytes * 2;
    /* h2o 2.2.5: a whole request (headers and body) within this, and the keep-alive idle time. */
    srv->h2o.http1.req_timeout = (uint64_t)conf->request_timeout_ms;
    srv->h2o.http2.idle_timeout = (uint64_t)conf->request_timeout_ms;
    srv->h2o.server_name = h2o_iovec_init(H2O_STRLIT("adtrack"));
    h2o_hostconf_t *host = h2o_config_register_host(&srv->h2o, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    cd_http_register(srv, path);
    return srv;
fail:
    cd_server_destroy(srv);
    return NULL;
}

int cd_server_port(const cd_server_t *srv)
{
    if (srv->addr.ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)&srv->addr)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&srv->addr)->sin_port);
}

int cd_server_start(cd_server_t *srv, at_err_t *err)
{
    at_err_t perr = {0};
    /* The enricher also takes versions from adtrack:coredata:version: start above it. */
    if (cd_fanout_probe_floor(srv->fo, &perr) != 0)
        at_log(AT_LOG_WARN, COMP,
               perr.code == AT_ERR_AUTH ? "redis refused our credentials or permissions at start; versions continue "
                                          "from the store"
                                        : "redis not reachable at start; versions continue from the store",
               "error", perr.msg, NULL);
    if (cd_fanout_start(srv->fo, err) != 0 || cd_core_start(srv->core, err) != 0)
        return -1;
    if (srv->feed != NULL && cd_feed_start(srv->feed, err) != 0)
        return -1;
    if (cd_reports_start(srv->reports, err) != 0)
        return -1;
    srv->nloops = (size_t)srv->conf->threads;
    srv->loops = calloc(srv->nloops, sizeof(*srv->loops));
    for (size_t i = 0; i < srv->nloops; i++)
        if (loop_prepare(srv, &srv->loops[i], err) != 0)
            return -1;
    for (size_t i = 0; i < srv->nloops; i++) {
        char name[32];
        snprintf(name, sizeof(name), "cd-loop-%zu", i);
        if (at_loop_start(&srv->loops[i].tid, name, loop_setup, loop_run, &srv->loops[i], err) != 0)
            return -1;
        srv->loops[i].started = true;
    }

    char host[INET6_ADDRSTRLEN + 8], port[16], addr[INET6_ADDRSTRLEN + 24], ver[32], n[32];
    getnameinfo((struct sockaddr *)&srv->addr, srv->addrlen, host, sizeof(host), port, sizeof(port),
                NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(addr, sizeof(addr), srv->addr.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
    /* The core thread is already applying changes: read the state under its lock. */
    pthread_rwlock_rdlock(&srv->state.lock);
    snprintf(ver, sizeof(ver), "%lld", (long long)srv->state.version);
    snprintf(n, sizeof(n), "%zu", srv->state.count[0] + srv->state.count[1]);
    pthread_rwlock_unlock(&srv->state.lock);
    char redis[1100];
    at_log(AT_LOG_INFO, COMP, "listening", "addr", addr, "store", cd_core_store_name(srv->core), "entities", n,
           "version", ver, "redis", at_secret_uri_redact(srv->conf->redis, redis, sizeof(redis)), "brokers",
           srv->conf->brokers, "kafka_security", srv->conf->kafka.security_protocol, NULL);
    return 0;
}

void cd_server_stop(cd_server_t *srv)
{
    if (srv == NULL || srv->loops == NULL)
        return;
    atomic_store(&srv->stopping, true);
    for (size_t i = 0; i < srv->nloops; i++) {
        if (srv->loops[i].mq == NULL)
            continue;
        ctl_msg_t *msg = calloc(1, sizeof(*msg));
        h2o_multithread_send_message(&srv->loops[i].ctl_rx, &msg->super);
    }
    for (size_t i = 0; i < srv->nloops; i++)
        if (srv->loops[i].started)
            pthread_join(srv->loops[i].tid, NULL);
    cd_feed_stop(srv->feed);
    cd_reports_stop(srv->reports);
    cd_core_stop(srv->core);
    /* Give Redis and Kafka a bounded chance to take what the store already has. */
    cd_fanout_stop(srv->fo, 5000);
}

void cd_server_destroy(cd_server_t *srv)
{
    if (srv == NULL)
        return;
    cd_feed_destroy(srv->feed);
    cd_reports_destroy(srv->reports);
    cd_core_destroy(srv->core);
    cd_fanout_destroy(srv->fo);
    cd_auth_destroy(srv->auth);
    /* h2o loops and contexts are left to process exit (2.2.5 cannot dispose a loop with idle
     * keep-alive connections attached); the listeners were closed by the loops. */
    cd_state_free(&srv->state);
    at_acceptor_destroy(srv->acceptor);
    at_metrics_destroy(srv->metrics);
    free(srv->loops);
    free(srv);
}
