/*
 * dash_http.c: the dashboard's HTTP endpoints.
 *
 *   GET /               the page (and /dashboard.js, /dashboard.css), embedded
 *   GET /events         Server-Sent Events: `snapshot` at once and every poll, `change` on
 *                       every core-data change, comment heartbeats
 *   GET /api/snapshot   the latest snapshot JSON
 *   GET /api/history    the latest history JSON (dash_history.h; 404 without --reports)
 *   GET /healthz /readyz /metrics
 *   GET /login          the sign-in form; POST /login (form field token) sets the session
 *                       cookie; POST /logout clears it
 *
 * Everything but /healthz, /readyz, /metrics and the login endpoints needs a token (Bearer
 * header or session cookie, dash_auth.h) unless --auth none; without one the answer is 401:
 * the sign-in form for a browser asking for HTML, JSON otherwise.
 *
 * Streaming with h2o 2.2.5: each /events client is an h2o_generator_t. h2o_send() is called
 * only when no send is in flight (proceed() says the previous one completed); data that
 * arrives meanwhile waits in the client's pending buffer, bounded by --client-buffer-bytes.
 * A client over the bound is dropped: it gets nothing more, and its stream is ended with
 * an error as soon as h2o hands control back (proceed), which closes the connection.
 * The client struct lives in the request's pool (h2o_mem_alloc_shared), so it is unlinked
 * and freed exactly when h2o disposes of the request, however the request ends.
 *
 * @locality: every function here runs on the loop thread.
 */
#include "dash_server.h"

#include <stdlib.h>
#include <time.h>

#include "at_log.h"
#include "dash_assets.h"
#include "dash_buf.h"
#include "dash_sse.h"

typedef struct dash_handler_s {
    h2o_handler_t super;
    dash_server_t *srv;
} dash_handler_t;

typedef struct dash_client_s {
    h2o_generator_t super; /* first: h2o hands this pointer back to proceed/stop */
    dash_server_t *srv;
    h2o_req_t *req;
    h2o_linklist_t link; /* in srv->clients */
    dash_buf_t inflight; /* handed to h2o_send; valid until proceed */
    dash_buf_t pending;  /* waiting for the in-flight send to complete */
    bool sending;
    bool dropped;  /* fell too far behind: send nothing more */
    bool finished; /* the stream ended (error sent, or h2o stopped it) */
    int64_t last_data_ms;
} dash_client_t;

/* ---- response helpers ---- */

static void send_body(h2o_req_t *req, int status, const char *reason, const char *ctype, const void *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len;
    if (ctype != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_send_inline(req, body, len);
}

static void send_json_msg(h2o_req_t *req, int status, const char *reason, const char *field, const char *msg)
{
    dash_buf_t b;
    dash_buf_init(&b, 4096);
    dash_buf_printf(&b, "{\"%s\":", field);
    dash_buf_json_str(&b, msg, strlen(msg));
    dash_buf_str(&b, "}");
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    send_body(req, status, reason, "application/json", b.p != NULL ? b.p : "{}", b.p != NULL ? b.len : 2);
    dash_buf_free(&b);
}

/* ---- SSE clients ---- */

static void client_flush(dash_client_t *cl)
{
    if (cl->sending || cl->finished || cl->pending.len == 0)
        return;
    dash_buf_t t = cl->inflight;
    cl->inflight = cl->pending;
    cl->pending = t;
    dash_buf_reset(&cl->pending);
    cl->sending = true;
    h2o_iovec_t v = h2o_iovec_init(cl->inflight.p, cl->inflight.len);
    h2o_send(cl->req, &v, 1, H2O_SEND_STATE_IN_PROGRESS);
}

static void client_push(dash_client_t *cl, const char *data, size_t len, int64_t now_ms)
{
    if (cl->dropped || cl->finished)
        return;
    if (dash_buf_append(&cl->pending, data, len) != 0) {
        cl->dropped = true;
        dash_buf_free(&cl->pending);
        at_counter_add(cl->srv->stats.clients_dropped, 1);
        at_log(AT_LOG_WARN, "dashboard", "dropping a slow /events client (buffer limit reached)", NULL);
        if (!cl->sending) {
            cl->finished = true;
            h2o_send(cl->req, NULL, 0, H2O_SEND_STATE_ERROR);
        }
        return;
    }
    cl->last_data_ms = now_ms;
    client_flush(cl);
}

static void on_client_proceed(h2o_generator_t *self, h2o_req_t *req)
{
    dash_client_t *cl = (dash_client_t *)self;
    AT_UNUSED(req);
    cl->sending = false;
    dash_buf_reset(&cl->inflight);
    if (cl->finished)
        return;
    if (cl->dropped) {
        cl->finished = true;
        h2o_send(cl->req, NULL, 0, H2O_SEND_STATE_ERROR);
        return;
    }
    client_flush(cl);
}

static void on_client_stop(h2o_generator_t *self, h2o_req_t *req)
{
    dash_client_t *cl = (dash_client_t *)self;
    AT_UNUSED(req);
    cl->finished = true;
}

/* Runs when h2o frees the request's pool: the one place a client is forgotten. */
static void on_client_dispose(void *p)
{
    dash_client_t *cl = p;
    if (h2o_linklist_is_linked(&cl->link)) {
        h2o_linklist_unlink(&cl->link);
        cl->srv->nclients--;
        at_gauge_set(cl->srv->stats.clients, (double)cl->srv->nclients);
    }
    dash_buf_free(&cl->inflight);
    dash_buf_free(&cl->pending);
}

static int handle_events(dash_server_t *srv, h2o_req_t *req)
{
    if (srv->nclients >= (size_t)srv->conf->max_clients) {
        at_counter_add(srv->stats.clients_refused, 1);
        send_json_msg(req, 503, "Service Unavailable", "error", "too many /events clients (--max-clients)");
        return 0;
    }
    dash_client_t *cl = h2o_mem_alloc_shared(&req->pool, sizeof(*cl), on_client_dispose);
    memset(cl, 0, sizeof(*cl));
    cl->super.proceed = on_client_proceed;
    cl->super.stop = on_client_stop;
    cl->srv = srv;
    cl->req = req;
    dash_buf_init(&cl->inflight, (size_t)srv->conf->client_buffer_bytes);
    dash_buf_init(&cl->pending, (size_t)srv->conf->client_buffer_bytes);
    h2o_linklist_insert(&srv->clients, &cl->link);
    srv->nclients++;
    at_gauge_set(srv->stats.clients, (double)srv->nclients);
    at_counter_add(srv->stats.clients_total, 1);

    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream; charset=utf-8"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
    /* nginx and similar proxies must not buffer the stream */
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0, NULL, H2O_STRLIT("no"));
    h2o_start_response(req, &cl->super);

    dash_buf_t b;
    dash_buf_init(&b, DASH_SNAPSHOT_MAX + 4096);
    dash_sse_retry(&b, 2000);
    if (srv->snapshot != NULL)
        dash_sse_event(&b, "snapshot", srv->snapshot, srv->snapshot_len);
    else
        dash_sse_comment(&b, "waiting for the first poll");
    if (srv->history != NULL)
        dash_sse_event(&b, "history", srv->history, srv->history_len);
    if (!b.failed)
        client_push(cl, b.p, b.len, dash_mono_ms());
    dash_buf_free(&b);
    return 0;
}

void dash_http_on_message(dash_server_t *srv, dash_msg_t *msg)
{
    const char *event = msg->kind == DASH_MSG_SNAPSHOT  ? "snapshot"
                        : msg->kind == DASH_MSG_HISTORY ? "history"
                                                         : "change";
    const char *data = msg->json;
    if (msg->kind == DASH_MSG_SNAPSHOT) {
        free(srv->snapshot);
        srv->snapshot = msg->json;
        srv->snapshot_len = msg->len;
        msg->json = NULL;
        at_counter_add(srv->stats.snapshots, 1);
    } else if (msg->kind == DASH_MSG_HISTORY) {
        free(srv->history);
        srv->history = msg->json;
        srv->history_len = msg->len;
        msg->json = NULL;
    }
    if (srv->nclients > 0) {
        dash_buf_t b;
        dash_buf_init(&b, DASH_SNAPSHOT_MAX + 4096);
        dash_sse_event(&b, event, data, msg->len);
        int64_t now = dash_mono_ms();
        if (!b.failed) {
            /* next is read first: ending a stream may dispose of its client right away */
            for (h2o_linklist_t *l = srv->clients.next, *next; l != &srv->clients; l = next) {
                next = l->next;
                client_push(H2O_STRUCT_FROM_MEMBER(dash_client_t, link, l), b.p, b.len, now);
            }
        }
        dash_buf_free(&b);
    }
    free(msg->json);
    free(msg);
}

void dash_http_tick(dash_server_t *srv, int64_t now_ms)
{
    for (h2o_linklist_t *l = srv->clients.next, *next; l != &srv->clients; l = next) {
        next = l->next;
        dash_client_t *cl = H2O_STRUCT_FROM_MEMBER(dash_client_t, link, l);
        if (now_ms - cl->last_data_ms >= srv->conf->heartbeat_ms)
            client_push(cl, H2O_STRLIT(": heartbeat\n\n"), now_ms);
    }
}

/* ---- other endpoints ---- */

static bool path_is(h2o_req_t *req, const char *path)
{
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    return plen == strlen(path) && memcmp(req->path.base, path, plen) == 0;
}

static int handle_readyz(dash_server_t *srv, h2o_req_t *req)
{
    bool ready = atomic_load(&srv->redis_up);
    if (ready)
        send_json_msg(req, 200, "OK", "status", "ready");
    else
        send_json_msg(req, 503, "Service Unavailable", "status", "unready: redis not reachable");
    return 0;
}

static int handle_metrics(dash_server_t *srv, h2o_req_t *req)
{
    size_t len;
    char *text = at_metrics_render(srv->metrics, &len);
    if (text == NULL) {
        send_json_msg(req, 500, "Internal Server Error", "error", "metrics: out of memory");
        return 0;
    }
    send_body(req, 200, "OK", "text/plain; version=0.0.4", text, len);
    free(text);
    return 0;
}

static int handle_history(dash_server_t *srv, h2o_req_t *req)
{
    if (!srv->history_on) {
        send_json_msg(req, 404, "Not Found", "error", "history is off: start the dashboard with --reports and --reports-token");
        return 0;
    }
    if (srv->history == NULL) {
        send_json_msg(req, 503, "Service Unavailable", "error", "no history yet: the first report fetch has not finished");
        return 0;
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    send_body(req, 200, "OK", "application/json", srv->history, srv->history_len);
    return 0;
}

static int handle_snapshot(dash_server_t *srv, h2o_req_t *req)
{
    if (srv->snapshot == NULL) {
        send_json_msg(req, 503, "Service Unavailable", "error", "no snapshot yet: the first poll has not finished");
        return 0;
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    send_body(req, 200, "OK", "application/json", srv->snapshot, srv->snapshot_len);
    return 0;
}

/* ---- authentication ---- */

static h2o_iovec_t header(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    return i >= 0 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

static void security_headers(h2o_req_t *req)
{
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-frame-options"), 0, NULL, H2O_STRLIT("DENY"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("referrer-policy"), 0, NULL,
                          H2O_STRLIT("same-origin"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-content-type-options"), 0, NULL,
                          H2O_STRLIT("nosniff"));
}

static bool authorized(dash_server_t *srv, h2o_req_t *req)
{
    if (srv->auth == NULL)
        return true;
    h2o_iovec_t authz = header(req, H2O_TOKEN_AUTHORIZATION);
    if (authz.base != NULL && dash_auth_bearer_ok(srv->auth, authz.base, authz.len))
        return true;
    h2o_iovec_t cookie = header(req, H2O_TOKEN_COOKIE);
    return cookie.base != NULL && dash_auth_cookie_ok(srv->auth, cookie.base, cookie.len, (int64_t)time(NULL));
}

static void send_login_page(h2o_req_t *req, int status, const char *reason)
{
    const dash_asset_t *a = dash_asset_find(H2O_STRLIT("/login.html"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    security_headers(req);
    send_body(req, status, reason, a->content_type, a->data, a->len);
}

/* 401: the sign-in form for a browser navigating to a page, JSON for scripts and streams. */
static int refuse(dash_server_t *srv, h2o_req_t *req)
{
    at_counter_add(srv->stats.auth_refused, 1);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("www-authenticate"), 0, NULL,
                          H2O_STRLIT("Bearer realm=\"adtrack-dashboard\""));
    h2o_iovec_t accept = header(req, H2O_TOKEN_ACCEPT);
    if (accept.base != NULL && h2o_strstr(accept.base, accept.len, H2O_STRLIT("text/html")) != SIZE_MAX) {
        send_login_page(req, 401, "Unauthorized");
        return 0;
    }
    send_json_msg(req, 401, "Unauthorized", "error",
                  "authentication required: Authorization: Bearer <token>, or sign in at /login");
    return 0;
}

static void redirect(h2o_req_t *req, const char *location, const char *cookie)
{
    req->res.status = 303;
    req->res.reason = "See Other";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, location, strlen(location));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    if (cookie != NULL) {
        char *c = h2o_mem_alloc_pool(&req->pool, strlen(cookie) + 1);
        memcpy(c, cookie, strlen(cookie) + 1);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_SET_COOKIE, NULL, c, strlen(c));
    }
    security_headers(req);
    req->res.content_length = 0;
    h2o_send_inline(req, "", 0);
}

static int hexdigit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* The form field `token` of an application/x-www-form-urlencoded body, decoded into @p out;
 * its length, or -1 when absent or too long. */
static long form_token(const char *body, size_t len, char *out, size_t outlen)
{
    for (size_t i = 0; i < len;) {
        size_t end = i;
        while (end < len && body[end] != '&')
            end++;
        if (end - i >= 6 && memcmp(body + i, "token=", 6) == 0) {
            size_t o = 0;
            for (size_t j = i + 6; j < end; j++) {
                char c = body[j];
                if (c == '+')
                    c = ' ';
                else if (c == '%' && j + 2 < end && hexdigit(body[j + 1]) >= 0 && hexdigit(body[j + 2]) >= 0) {
                    c = (char)(hexdigit(body[j + 1]) * 16 + hexdigit(body[j + 2]));
                    j += 2;
                }
                if (o + 1 >= outlen)
                    return -1;
                out[o++] = c;
            }
            out[o] = '\0';
            return (long)o;
        }
        i = end + 1;
    }
    return -1;
}

static int handle_login_post(dash_server_t *srv, h2o_req_t *req)
{
    if (srv->auth == NULL) {
        redirect(req, "/", NULL);
        return 0;
    }
    char token[DASH_TOKEN_MAX + 2];
    long n = form_token(req->entity.base, req->entity.base != NULL ? req->entity.len : 0, token, sizeof(token));
    char value[DASH_COOKIE_VALUE_MAX + 1];
    int64_t expires = (int64_t)time(NULL) + srv->conf->session_hours * 3600;
    bool ok = n > 0 && dash_auth_cookie(srv->auth, token, (size_t)n, expires, value);
    memset(token, 0, sizeof(token));
    if (!ok) {
        at_counter_add(srv->stats.login_failures, 1);
        at_log(AT_LOG_WARN, "dashboard", "sign-in with a wrong token", NULL);
        redirect(req, "/login?failed", NULL);
        return 0;
    }
    char cookie[DASH_COOKIE_VALUE_MAX + 160];
    snprintf(cookie, sizeof(cookie), DASH_AUTH_COOKIE "=%s; Path=/; Max-Age=%lld; HttpOnly; SameSite=Strict%s", value,
             (long long)(srv->conf->session_hours * 3600), srv->conf->cookie_secure ? "; Secure" : "");
    at_counter_add(srv->stats.logins, 1);
    redirect(req, "/", cookie);
    return 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    dash_server_t *srv = ((dash_handler_t *)self)->srv;
    bool get = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
               h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"));
    bool post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    if (post && path_is(req, "/login"))
        return handle_login_post(srv, req);
    if (post && path_is(req, "/logout")) {
        char cookie[160];
        snprintf(cookie, sizeof(cookie), DASH_AUTH_COOKIE "=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict%s",
                 srv->conf->cookie_secure ? "; Secure" : "");
        redirect(req, "/login", cookie);
        return 0;
    }
    if (get && path_is(req, "/login")) {
        send_login_page(req, 200, "OK");
        return 0;
    }
    if (!get) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, H2O_STRLIT("GET, HEAD"));
        send_json_msg(req, 405, "Method Not Allowed", "error", "method: expected GET or HEAD (POST for /login, /logout)");
        return 0;
    }
    /* Open: probes and Prometheus (they carry no campaign data). */
    if (path_is(req, "/healthz")) {
        send_json_msg(req, 200, "OK", "status", "ok");
        return 0;
    }
    if (path_is(req, "/readyz"))
        return handle_readyz(srv, req);
    if (path_is(req, "/metrics"))
        return handle_metrics(srv, req);
    if (!authorized(srv, req))
        return refuse(srv, req);
    if (path_is(req, "/events"))
        return handle_events(srv, req);
    if (path_is(req, "/api/snapshot"))
        return handle_snapshot(srv, req);
    if (path_is(req, "/api/history"))
        return handle_history(srv, req);
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    const dash_asset_t *a = dash_asset_find(req->path.base, plen);
    if (a != NULL) {
        security_headers(req);
        /* The page is small; no-cache makes browsers revalidate, so upgrades show at once. */
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-cache"));
        send_body(req, 200, "OK", a->content_type, a->data, a->len);
        return 0;
    }
    send_json_msg(req, 404, "Not Found", "error",
                  "path: expected /, /events, /api/snapshot, /api/history, /healthz, /readyz or /metrics");
    return 0;
}

void dash_http_register(dash_server_t *srv, h2o_pathconf_t *pathconf)
{
    dash_handler_t *h = (dash_handler_t *)h2o_create_handler(pathconf, sizeof(*h));
    h->srv = srv;
    h->super.on_req = on_req;
}
