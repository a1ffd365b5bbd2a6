/*
 * enr_http.c: the enricher's small HTTP listener: GET /healthz, /readyz, /metrics on one
 * h2o event loop thread (--listen). It only reads atomics and the metrics registry, so a
 * slow Redis, Kafka or sink never delays it.
 */
#include "at_listen.h"
#include "enr_server.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <unistd.h>

#include <bson/bson.h>
#include <h2o.h>

#include "at_log.h"
#include "at_loop.h"

#define HTTP_TICK_MS 100

typedef struct enr_http_s {
    enr_server_t *srv;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_evloop_t *loop;
    h2o_accept_ctx_t accept_ctx;
    int listen_fd;             /* opened by the starter, wrapped by the http thread */
    h2o_socket_t *listener;
    h2o_timeout_t tick_timeout;
    h2o_timeout_entry_t tick;
    atomic_bool stop;
    bool stopped;
} enr_http_t;

typedef struct enr_handler_s {
    h2o_handler_t super;
    enr_http_t *http;
} enr_handler_t;

static void send_body(h2o_req_t *req, int status, const char *reason, const char *type, const char *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type, strlen(type));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_send_inline(req, body, len);
}

static bool path_is(h2o_req_t *req, const char *path)
{
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    return plen == strlen(path) && memcmp(req->path.base, path, plen) == 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    enr_server_t *srv = ((enr_handler_t *)self)->http->srv;
    bool get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
               h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));

    if (!get) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD"));
        send_body(req, 405, "Method Not Allowed", "application/json",
                  H2O_STRLIT("{ \"error\" : \"method: expected GET or HEAD\" }"));
        return 0;
    }
    if (path_is(req, "/healthz")) {
        send_body(req, 200, "OK", "application/json", H2O_STRLIT("{ \"status\" : \"ok\" }"));
        return 0;
    }
    if (path_is(req, "/readyz")) {
        const char *why;
        bool ready = enr_server_ready(srv, &why);
        bson_t doc = BSON_INITIALIZER;
        size_t len;
        BSON_APPEND_UTF8(&doc, "status", ready ? "ready" : "unready");
        BSON_APPEND_UTF8(&doc, "reason", why);
        char *json = bson_as_relaxed_extended_json(&doc, &len);
        bson_destroy(&doc);
        send_body(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable", "application/json", json, len);
        bson_free(json);
        return 0;
    }
    if (path_is(req, "/metrics")) {
        size_t len;
        char *text = at_metrics_render(srv->metrics, &len);
        if (text == NULL) {
            send_body(req, 500, "Internal Server Error", "application/json",
                      H2O_STRLIT("{ \"error\" : \"metrics: out of memory\" }"));
            return 0;
        }
        send_body(req, 200, "OK", "text/plain; version=0.0.4", text, len);
        free(text);
        return 0;
    }
    send_body(req, 404, "Not Found", "application/json",
              H2O_STRLIT("{ \"error\" : \"path: expected /healthz, /readyz or /metrics\" }"));
    return 0;
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    enr_http_t *h = listener->data;
    h2o_socket_t *sock;
    if (err != NULL)
        return;
    for (int i = 0; i < 16 && (sock = h2o_evloop_socket_accept(listener)) != NULL; i++)
        h2o_accept(&h->accept_ctx, sock);
}

static void on_tick(h2o_timeout_entry_t *entry)
{
    enr_http_t *h = H2O_STRUCT_FROM_MEMBER(enr_http_t, tick, entry);
    if (atomic_load(&h->stop)) {
        h->stopped = true;
        return;
    }
    h2o_timeout_link(h->loop, &h->tick_timeout, &h->tick);
}

/* @locality: the http thread */
static void http_run(h2o_evloop_t *loop, void *opaque)
{
    enr_http_t *h = opaque;
    while (!h->stopped)
        h2o_evloop_run(loop, INT32_MAX);
}

/* Every h2o object of the loop, created on the loop's own thread (common/at_loop.h says
 * why). @locality: the http thread */
static int http_setup(h2o_evloop_t *loop, void *opaque, at_err_t *err)
{
    enr_http_t *h = opaque;
    AT_UNUSED(err);
    h->loop = loop;
    h2o_context_init(&h->ctx, h->loop, &h->config);
    h->accept_ctx.ctx = &h->ctx;
    h->accept_ctx.hosts = h->config.hosts;
    h->listener = h2o_evloop_socket_create(h->loop, h->listen_fd, H2O_SOCKET_FLAG_DONT_READ);
    h->listener->data = h;
    h2o_socket_read_start(h->listener, on_accept);
    h2o_timeout_init(h->loop, &h->tick_timeout, HTTP_TICK_MS);
    h->tick.cb = on_tick;
    h2o_timeout_link(h->loop, &h->tick_timeout, &h->tick);
    return 0;
}

/* The ops listener: one socket on --listen; the bound port is reported back for tests
 * that ask for port 0. */
static int open_listener(const char *listen_addr, int *port_out, at_err_t *err)
{
    struct sockaddr_storage ss;
    socklen_t sl;
    if (at_listen_parse(listen_addr, &ss, &sl, err) != 0)
        return -1;
    int fd = at_listen_open(&ss, &sl, 128, listen_addr, err);
    if (fd >= 0)
        *port_out = at_listen_port(&ss);
    return fd;
}

int enr_http_start(enr_server_t *srv, at_err_t *err)
{
    int fd = open_listener(srv->conf->listen, &srv->http_port, err);
    if (fd < 0)
        return -1;
    enr_http_t *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        close(fd);
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    }
    h->srv = srv;
    h2o_config_init(&h->config);
    h->config.server_name = h2o_iovec_init(H2O_STRLIT("adtrack-enricher"));
    h2o_hostconf_t *host = h2o_config_register_host(&h->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    enr_handler_t *hd = (enr_handler_t *)h2o_create_handler(path, sizeof(*hd));
    hd->http = h;
    hd->super.on_req = on_req;

    h->listen_fd = fd;
    srv->http = h;
    if (at_loop_start(&srv->http_tid, "enr-http", http_setup, http_run, h, err) != 0)
        return -1;
    srv->http_started = true;
    char port[16];
    snprintf(port, sizeof(port), "%d", srv->http_port);
    at_log(AT_LOG_INFO, "enricher", "http listening", "listen", srv->conf->listen, "port", port, NULL);
    return 0;
}

void enr_http_stop(enr_server_t *srv)
{
    enr_http_t *h = srv->http;
    if (h == NULL || !srv->http_started)
        return;
    atomic_store(&h->stop, true);
    pthread_join(srv->http_tid, NULL);
    srv->http_started = false;
    /* The loop and context are left to process exit: h2o 2.2.5 cannot dispose a loop with
     * idle keep-alive connections still attached. */
}
