/*
 * dash_server.c: set-up, the HTTP loop thread, and the hand-over of events from the poll
 * and subscriber threads to it. See dash_server.h.
 */
#include "dash_server.h"
#include "dash_history.h"

#include <netdb.h>
#include <stdlib.h>
#include <unistd.h>

#include "at_accept.h"
#include "at_listen.h"
#include "at_log.h"
#include "at_loop.h"
#include "at_redis.h"
#include "at_secret.h"

#define TICK_MS 1000

static int stats_init(dash_server_t *srv)
{
    dash_stats_t *st = &srv->stats;
    at_metrics_t *m = srv->metrics;
    st->clients = at_metrics_gauge(m, "adtrack_dashboard_clients", NULL, "Browsers connected to /events now.");
    st->clients_total = at_metrics_counter(m, "adtrack_dashboard_clients_total", NULL, "/events streams opened.");
    st->clients_dropped =
        at_metrics_counter(m, "adtrack_dashboard_clients_dropped_total", NULL,
                           "/events clients dropped for falling more than --client-buffer-bytes behind.");
    st->clients_refused = at_metrics_counter(m, "adtrack_dashboard_clients_refused_total", NULL,
                                             "/events requests refused with 503 over --max-clients.");
    st->polls = at_metrics_counter(m, "adtrack_dashboard_polls_total", NULL, "Polls of Redis (successful or not).");
    st->poll_errors = at_metrics_counter(m, "adtrack_dashboard_poll_errors_total", NULL,
                                         "Polls that failed because Redis could not be reached or answered an error.");
    st->scrapes =
        at_metrics_counter(m, "adtrack_dashboard_scrapes_total", NULL, "/metrics scrapes of --scrape targets.");
    st->scrape_errors = at_metrics_counter(m, "adtrack_dashboard_scrape_errors_total", NULL,
                                           "Scrapes that failed (the target is shown as down).");
    st->changes = at_metrics_counter(m, "adtrack_dashboard_changes_total", NULL,
                                     "Core-data changes received on adtrack:coredata and pushed to browsers.");
    st->changes_invalid = at_metrics_counter(m, "adtrack_dashboard_changes_invalid_total", NULL,
                                             "Messages on adtrack:coredata that were not change objects.");
    st->snapshots = at_metrics_counter(m, "adtrack_dashboard_snapshots_total", NULL, "Snapshots broadcast.");
    st->auth_refused = at_metrics_counter(m, "adtrack_dashboard_auth_refused_total", NULL,
                                          "Requests answered 401: no or a wrong token or session cookie.");
    st->logins = at_metrics_counter(m, "adtrack_dashboard_logins_total", NULL, "Successful POST /login.");
    st->login_failures = at_metrics_counter(m, "adtrack_dashboard_login_failures_total", NULL,
                                            "POST /login with a wrong token.");
    st->history_fetches = at_metrics_counter(m, "adtrack_dashboard_history_fetches_total", NULL,
                                             "Fetches of the history reports from coredata (--reports).");
    st->history_errors = at_metrics_counter(m, "adtrack_dashboard_history_errors_total", NULL,
                                            "History fetches that failed (coredata down, refused, or not JSON).");
    st->redis_up = at_metrics_gauge(m, "adtrack_dashboard_redis_up", NULL, "1 when the last poll of Redis succeeded.");
    st->snapshot_bytes =
        at_metrics_gauge(m, "adtrack_dashboard_snapshot_bytes", NULL, "Size of the last snapshot JSON.");
    static const double bounds[] = {0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5};
    st->poll_duration =
        at_metrics_histogram(m, "adtrack_dashboard_poll_duration_seconds", NULL,
                             "Time of one poll: Redis reads, scrapes and the snapshot.", bounds, AT_ARRAY_LEN(bounds));
    return st->poll_duration != NULL && st->clients != NULL ? 0 : -1;
}

void dash_server_post(dash_server_t *srv, int kind, char *json, size_t len)
{
    dash_msg_t *msg = calloc(1, sizeof(*msg));
    if (msg == NULL) {
        free(json);
        return;
    }
    msg->kind = kind;
    msg->json = json;
    msg->len = len;
    h2o_multithread_send_message(&srv->events_rx, &msg->super);
}

/* ---- loop thread ---- */

static void on_events(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages)
{
    dash_server_t *srv = H2O_STRUCT_FROM_MEMBER(dash_server_t, events_rx, rx);
    while (!h2o_linklist_is_empty(messages)) {
        dash_msg_t *msg = H2O_STRUCT_FROM_MEMBER(dash_msg_t, super.link, messages->next);
        h2o_linklist_unlink(&msg->super.link);
        dash_http_on_message(srv, msg);
    }
}

static void on_ctl(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages)
{
    dash_server_t *srv = H2O_STRUCT_FROM_MEMBER(dash_server_t, ctl_rx, rx);
    while (!h2o_linklist_is_empty(messages)) {
        h2o_multithread_message_t *msg = H2O_STRUCT_FROM_MEMBER(h2o_multithread_message_t, link, messages->next);
        h2o_linklist_unlink(&msg->link);
        free(msg);
    }
    srv->loop_stopped = true;
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    dash_server_t *srv = H2O_STRUCT_FROM_MEMBER(dash_server_t, tick, entry);
    dash_http_tick(srv, dash_mono_ms());
    if (srv->listening)
        at_listener_tick(&srv->listener);
    h2o_timeout_link(srv->loop, &srv->tick_timeout, &srv->tick);
}

/* @locality: loop thread */
static void loop_run(h2o_evloop_t *loop, void *opaque)
{
    dash_server_t *srv = opaque;
    while (!srv->loop_stopped)
        h2o_evloop_run(loop, INT32_MAX);
}

/* Every h2o object of the loop, created on the loop's own thread (common/at_loop.h says
 * why). @locality: loop thread */
static int loop_setup(h2o_evloop_t *loop, void *opaque, at_err_t *err)
{
    dash_server_t *srv = opaque;
    AT_UNUSED(err);
    srv->loop = loop;
    h2o_context_init(&srv->ctx, srv->loop, &srv->h2o);
    srv->accept_ctx.ctx = &srv->ctx;
    srv->accept_ctx.hosts = srv->h2o.hosts;
    at_listener_start(&srv->listener, srv->acceptor, srv->loop, srv->listen_fd, &srv->accept_ctx);
    srv->listening = true;
    srv->mq = h2o_multithread_create_queue(srv->loop);
    h2o_multithread_register_receiver(srv->mq, &srv->events_rx, on_events);
    h2o_multithread_register_receiver(srv->mq, &srv->ctl_rx, on_ctl);
    h2o_timeout_init(srv->loop, &srv->tick_timeout, TICK_MS);
    srv->tick.cb = on_tick;
    h2o_timeout_link(srv->loop, &srv->tick_timeout, &srv->tick);
    return 0;
}

/* ---- life cycle ---- */

dash_server_t *dash_server_new(dash_conf_t *conf, at_err_t *err)
{
    dash_server_t *srv = calloc(1, sizeof(*srv));
    if (srv == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    srv->conf = conf;
    srv->listen_fd = -1;
    srv->last_full_minute = -1;
    h2o_linklist_init_anchor(&srv->clients);
    pthread_mutex_init(&srv->wake_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&srv->wake_cv, &ca);
    pthread_mutex_init(&srv->history_mu, NULL);
    pthread_cond_init(&srv->history_cv, &ca);
    pthread_condattr_destroy(&ca);

    if (at_listen_parse(conf->listen, &srv->addr, &srv->addrlen, err) != 0)
        goto fail;
    if (strcmp(conf->auth, "token") == 0) {
        srv->auth = dash_auth_new(&conf->auth_token, err);
        if (srv->auth == NULL)
            goto fail;
        for (size_t i = 0; i < conf->auth_token.count; i++)
            if (strlen(conf->auth_token.items[i]) < 16)
                at_log(AT_LOG_WARN, "dashboard", "an --auth-token is shorter than 16 bytes: easy to guess; use e.g. "
                                                 "openssl rand -hex 24", NULL);
    } else if (strcmp(conf->auth, "none") == 0) {
        if (conf->auth_token.count > 0) {
            at_err_set(err, AT_ERR_INVALID, "--auth none: --auth-token would be ignored; give one or the other");
            goto fail;
        }
        at_log(AT_LOG_WARN, "dashboard",
               "--auth none: no authentication; only behind a proxy that authenticates every request", NULL);
    } else {
        at_err_set(err, AT_ERR_INVALID, "--auth: expected token or none, got '%.16s'", conf->auth);
        goto fail;
    }
    at_redis_addr_t ra;
    if (at_redis_addr_parse(conf->redis, conf->redis_password, &ra, err) != 0)
        goto fail;
    at_redis_addr_free(&ra);
    dash_model_opts_t mo = {
        .window_min = (int)conf->window_min,
        .history_len = (size_t)(conf->history_s * 1000 / conf->poll_ms),
        .max_campaigns = (size_t)conf->max_campaigns,
        .poll_ms = conf->poll_ms,
    };
    if (mo.history_len > 36000)
        mo.history_len = 36000; /* e.g. --history-s 3600 at --poll-ms 100 */
    srv->model = dash_model_new(&mo);
    srv->urls = calloc(conf->scrape.count + 1, sizeof(*srv->urls));
    srv->metrics = at_metrics_new();
    if (srv->model == NULL || srv->urls == NULL || srv->metrics == NULL || stats_init(srv) != 0) {
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < conf->scrape.count; i++) {
        char name[64], url[1200];
        if (dash_scrape_spec(conf->scrape.items[i], name, sizeof(name), url, sizeof(url), err) != 0 ||
            dash_url_parse(url, &srv->urls[i], err) != 0)
            goto fail;
        if (dash_model_add_target(srv->model, name, url) != 0) {
            at_err_set(err, AT_ERR_RANGE, "--scrape: at most %d targets", DASH_TARGETS_MAX);
            goto fail;
        }
    }

    if (dash_history_init(srv, err) != 0)
        goto fail;

    at_accept_raise_fd_limit(&conf->max_connections, 128, "--max-connections");
    at_accept_limits_t lim = {.max_connections = (int)conf->max_connections,
                              .max_per_ip = (int)conf->max_connections_per_ip};
    srv->acceptor = at_acceptor_new(&lim, srv->metrics, "dashboard", err);
    if (srv->acceptor == NULL)
        goto fail;

    h2o_config_init(&srv->h2o);
    srv->h2o.server_name = h2o_iovec_init(H2O_STRLIT("adtrack"));
    /* h2o 2.2.5: a whole request within this, and the keep-alive idle time. An /events stream
     * is a response in progress, which this timeout does not cover. */
    srv->h2o.http1.req_timeout = (uint64_t)conf->request_timeout_ms;
    srv->h2o.http2.idle_timeout = (uint64_t)conf->request_timeout_ms;
    h2o_hostconf_t *host = h2o_config_register_host(&srv->h2o, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    dash_http_register(srv, path);
    return srv;

fail:
    dash_server_destroy(srv);
    return NULL;
}

int dash_server_start(dash_server_t *srv, at_err_t *err)
{
    srv->listen_fd = at_listen_open(&srv->addr, &srv->addrlen, 1024, srv->conf->listen, err);
    if (srv->listen_fd < 0)
        return -1;
    if (at_loop_start(&srv->loop_tid, "dash-loop", loop_setup, loop_run, srv, err) != 0)
        return -1;
    srv->loop_started = true;
    if (pthread_create(&srv->poll_tid, NULL, dash_poll_main, srv) != 0)
        return at_err_set(err, AT_ERR_INTERNAL, "cannot start the poll thread");
    srv->poll_started = true;
    if (pthread_create(&srv->sub_tid, NULL, dash_sub_main, srv) != 0)
        return at_err_set(err, AT_ERR_INTERNAL, "cannot start the subscriber thread");
    srv->sub_started = true;
    if (srv->history_on) {
        if (pthread_create(&srv->history_tid, NULL, dash_history_main, srv) != 0)
            return at_err_set(err, AT_ERR_INTERNAL, "cannot start the history thread");
        srv->history_started = true;
    }

    char hostbuf[INET6_ADDRSTRLEN + 8], port[16], addr[INET6_ADDRSTRLEN + 24], targets[16];
    getnameinfo((struct sockaddr *)&srv->addr, srv->addrlen, hostbuf, sizeof(hostbuf), port, sizeof(port),
                NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(addr, sizeof(addr), srv->addr.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", hostbuf, port);
    snprintf(targets, sizeof(targets), "%zu", srv->conf->scrape.count);
    char redis[1100];
    at_log(AT_LOG_INFO, "dashboard", "listening", "addr", addr, "redis",
           at_secret_uri_redact(srv->conf->redis, redis, sizeof(redis)), "scrape_targets", targets, NULL);
    return 0;
}

void dash_server_stop(dash_server_t *srv)
{
    atomic_store(&srv->stopping, true);
    dash_poll_wake(srv);
    if (srv->poll_started)
        pthread_join(srv->poll_tid, NULL);
    if (srv->sub_started)
        pthread_join(srv->sub_tid, NULL);
    if (srv->history_started) {
        pthread_mutex_lock(&srv->history_mu);
        pthread_cond_signal(&srv->history_cv);
        pthread_mutex_unlock(&srv->history_mu);
        pthread_join(srv->history_tid, NULL);
    }
    srv->poll_started = srv->sub_started = srv->history_started = false;
    if (srv->loop_started) {
        h2o_multithread_message_t *msg = calloc(1, sizeof(*msg));
        if (msg != NULL)
            h2o_multithread_send_message(&srv->ctl_rx, msg);
        pthread_join(srv->loop_tid, NULL);
        srv->loop_started = false;
    }
}

void dash_server_destroy(dash_server_t *srv)
{
    if (srv == NULL)
        return;
    /* The h2o loop, its context and open /events connections are left to process exit:
     * 2.2.5 cannot dispose a loop that still has connections attached (as in the collector). */
    if (!srv->listening && srv->listen_fd >= 0)
        close(srv->listen_fd);
    at_acceptor_destroy(srv->acceptor);
    dash_auth_destroy(srv->auth);
    dash_model_destroy(srv->model);
    free(srv->urls);
    free(srv->snapshot);
    free(srv->history);
    at_metrics_destroy(srv->metrics);
    free(srv);
}

int dash_server_port(const dash_server_t *srv)
{
    return at_listen_port(&srv->addr);
}
