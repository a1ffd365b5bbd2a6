/*
 * col_http.c: the collector's HTTP endpoints.
 *
 *   GET  /t.gif      pixel: 43-byte GIF once the event is durable
 *   GET  /c          click: recorded, then 302 to d when sig verifies, else 400
 *   POST /v1/events  beacon batch (JSON array; application/json or text/plain)
 *   GET|POST /v1/postback  server-to-server conversion, authenticated per advertiser
 *   OPTIONS /v1/events  CORS preflight
 *   GET  /healthz /readyz /metrics
 *   GET  /tracker.js, and /demo/ with --demo-page: col_static.c
 *
 * @locality: every function here runs on the loop thread that owns the request.
 */
#include <bson/bson.h>
#include <stdlib.h>
#include <time.h>

#include "at_hmac.h"
#include "at_log.h"
#include "col_batch.h"
#include "col_postback.h"
#include "col_query.h"
#include "col_reqid.h"
#include "col_server.h"
#include "col_static.h"

typedef struct col_handler_s {
    h2o_handler_t super;
    col_server_t *srv;
} col_handler_t;

/* The smallest transparent 1x1 GIF89a. */
static const uint8_t pixel_gif[43] = {0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00,
                                      0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00,
                                      0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02, 0x02,
                                      0x44, 0x01, 0x00, 0x3b};

/* ---- small response helpers ---- */

static void send_body(h2o_req_t *req, int status, const char *reason, const char *ctype, const void *body, size_t len)
{
    req->res.status = status;
    req->res.reason = reason;
    req->res.content_length = len;
    if (ctype != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, ctype, strlen(ctype));
    h2o_send_inline(req, body, len);
}

/* A JSON error body: {"error":"<message>"}. Messages name the field and what was expected. */
static void send_error(col_server_t *srv, h2o_req_t *req, int status, const char *reason, const char *msg,
                       uint64_t start_ns)
{
    bson_t doc = BSON_INITIALIZER;
    size_t len;
    BSON_APPEND_UTF8(&doc, "error", msg);
    char *json = bson_as_relaxed_extended_json(&doc, &len);
    bson_destroy(&doc);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    send_body(req, status, reason, "application/json", json, len);
    bson_free(json);
    col_stats_response(srv, status, start_ns);
}

static h2o_iovec_t find_header(h2o_req_t *req, const h2o_token_t *token, const char *name)
{
    ssize_t i = token ? h2o_find_header(&req->headers, token, -1) : h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    return i >= 0 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

static bool header_is_1(h2o_req_t *req, const char *name)
{
    h2o_iovec_t v = find_header(req, NULL, name);
    return v.len >= 1 && v.base[0] == '1';
}

/* ---- request-derived event fields ---- */

typedef struct req_ctx_s {
    col_loop_t *lp;
    col_server_t *srv;
    h2o_req_t *req;
    uint64_t start_ns;
    bool privacy;      /* DNT/GPC honoured: no cookie, no uid, no ip */
    char ip[64];
    char new_uid[AT_UUID_STR_LEN + 1];
    bool set_cookie;
    int64_t now_ms;      /* the wall clock, read once per request */
    col_reqid_t reqid;   /* valid: event ids derive from the load balancer's request id */
    uint32_t next_index; /* index of the next event of this request (fill_from_request order) */
} req_ctx_t;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Looks for name=value in the Cookie header. */
static at_str_t cookie_value(h2o_req_t *req, const char *name)
{
    size_t nlen = strlen(name);
    for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, i)) != -1;) {
        h2o_iovec_t v = req->headers.entries[i].value;
        size_t pos = 0;
        while (pos < v.len) {
            while (pos < v.len && (v.base[pos] == ' ' || v.base[pos] == ';'))
                pos++;
            size_t start = pos;
            while (pos < v.len && v.base[pos] != ';')
                pos++;
            if (pos - start > nlen && memcmp(v.base + start, name, nlen) == 0 && v.base[start + nlen] == '=')
                return (at_str_t){v.base + start + nlen + 1, pos - start - nlen - 1};
        }
    }
    return (at_str_t){NULL, 0};
}

/*
 * Looks for --lb-request-id-header (any case) and, when a trusted proxy sent it once and
 * well-formed, makes this request's event ids derive from it (col_reqid.h), so a retry of
 * the request on another collector stores the same ids. A malformed value is logged once per
 * process (a misconfigured balancer, not a per-request condition) and ids stay random.
 */
static void reqid_init(req_ctx_t *rc, const struct sockaddr *peer)
{
    static atomic_bool warned;
    const char *name = rc->srv->conf->lb_request_id_header;
    size_t nlen = name != NULL ? strlen(name) : 0;
    if (nlen == 0 || rc->srv->ntrusted == 0)
        return;
    h2o_iovec_t v = {NULL, 0};
    unsigned seen = 0;
    for (size_t i = 0; i < rc->req->headers.size; i++) {
        const h2o_header_t *h = &rc->req->headers.entries[i];
        if (h->name->len == nlen && h2o_lcstris(h->name->base, nlen, name, nlen)) {
            if (seen++ == 0)
                v = h->value;
        }
    }
    at_err_t err = {0};
    if (col_reqid_from_request(peer, rc->srv->trusted, rc->srv->ntrusted, v.base, v.len, seen, (uint64_t)rc->now_ms,
                               &rc->reqid, &err) < 0 &&
        !atomic_exchange(&warned, true))
        at_log(AT_LOG_WARN, "collector", "ignoring the load balancer's request id; event ids are random (logged once)",
               "error", err.msg, NULL);
}

static void req_ctx_init(req_ctx_t *rc, col_server_t *srv, h2o_req_t *req)
{
    memset(rc, 0, sizeof(*rc));
    rc->srv = srv;
    rc->req = req;
    rc->lp = H2O_STRUCT_FROM_MEMBER(col_loop_t, ctx, req->conn->ctx);
    rc->start_ns = col_now_ns();
    rc->now_ms = wall_ms();
    rc->privacy = srv->conf->honor_privacy_signals && (header_is_1(req, "dnt") || header_is_1(req, "sec-gpc"));
    struct sockaddr_storage ss;
    socklen_t sl = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&ss);
    if (sl > 0)
        reqid_init(rc, (struct sockaddr *)&ss);
    if (!rc->privacy) {
        h2o_iovec_t xff = find_header(req, H2O_TOKEN_X_FORWARDED_FOR, NULL);
        if (sl > 0)
            col_client_ip((struct sockaddr *)&ss, xff.base, xff.len, srv->trusted, srv->ntrusted,
                          srv->conf->ip_truncate, rc->ip, sizeof(rc->ip));
    }
}

/* Headers are the browser's doing, not the page's: an over-long Referer is cut (at a UTF-8
 * character start) rather than costing the event. */
static at_str_t header_url(h2o_iovec_t v)
{
    size_t len = v.len;
    if (len > AT_EVENT_URL_MAX) {
        len = AT_EVENT_URL_MAX;
        while (len > 0 && ((unsigned char)v.base[len] & 0xC0) == 0x80)
            len--;
    }
    return (at_str_t){v.base, len};
}

/*
 * Fills the fields every event of this request shares, and the event's id: a fresh UUIDv7,
 * or, behind a trusted load balancer, the one derived from its request id and the event's
 * index in the request, with ts = the balancer's accept time. A retried request then yields
 * identical ids and ts, so the store keeps one copy and the budget (charged once per id and
 * day of ts) charges once. Called once per event, in request order.
 */
static void fill_from_request(req_ctx_t *rc, at_event_t *ev)
{
    const col_conf_t *conf = rc->srv->conf;
    h2o_iovec_t ua = find_header(rc->req, H2O_TOKEN_USER_AGENT, NULL);
    h2o_iovec_t ref = find_header(rc->req, H2O_TOKEN_REFERER, NULL);

    if (rc->reqid.valid) {
        col_reqid_event_id(&rc->reqid, rc->next_index++, &ev->id);
        ev->ts_ms = (int64_t)rc->reqid.ms;
    } else {
        at_uuid7_next(&rc->lp->uuid, (uint64_t)rc->now_ms, &ev->id);
        ev->ts_ms = rc->now_ms;
    }
    ev->ua = (at_str_t){ua.base, ua.len};
    ev->ref = header_url(ref);
    if (ev->u.len == 0)
        ev->u = ev->ref;
    if (rc->privacy) {
        ev->uid = (at_str_t){NULL, 0};
        ev->ip = (at_str_t){NULL, 0};
        return;
    }
    ev->ip = (at_str_t){rc->ip, strlen(rc->ip)};
    if (ev->uid.len == 0 && conf->cookie_max_age_days > 0) {
        at_str_t c = cookie_value(rc->req, conf->cookie_name);
        if (c.len > 0 && c.len <= AT_EVENT_UID_MAX) {
            ev->uid = c;
        } else {
            if (!rc->set_cookie) {
                at_uuid_t u;
                if (rc->reqid.valid)
                    col_reqid_event_id(&rc->reqid, COL_REQID_INDEX_COOKIE, &u); /* a retry sets the same cookie */
                else
                    at_uuid7_next(&rc->lp->uuid, (uint64_t)rc->now_ms, &u);
                at_uuid_format(&u, rc->new_uid);
                rc->set_cookie = true;
            }
            ev->uid = (at_str_t){rc->new_uid, AT_UUID_STR_LEN};
        }
    }
}

/* name=<uid> and the attributes the server made once (col_server_new): no formatting per
 * request (snprintf here was 2% of the collector's CPU under a cookie-less load). */
static void add_cookie_header(req_ctx_t *rc, h2o_req_t *req)
{
    col_server_t *srv = rc->srv;
    size_t nlen = strlen(srv->conf->cookie_name);
    if (srv->cookie_attrs_len == 0)
        return;
    size_t len = nlen + 1 + AT_UUID_STR_LEN + srv->cookie_attrs_len;
    char *v = h2o_mem_alloc_pool(&req->pool, len);
    memcpy(v, srv->conf->cookie_name, nlen);
    v[nlen] = '=';
    memcpy(v + nlen + 1, rc->new_uid, AT_UUID_STR_LEN);
    memcpy(v + nlen + 1 + AT_UUID_STR_LEN, srv->cookie_attrs, srv->cookie_attrs_len);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_SET_COOKIE, NULL, v, len);
}

/* Serializes @p ev (valid or rejected) and hands it to the durable sink. */
static void submit_event(req_ctx_t *rc, col_pending_t *p, const at_event_t *ev, at_reject_t rej, const char *detail,
                         const char *raw, size_t rawlen)
{
    size_t len = 0;
    char *json;
    int topic;

    if (rej == AT_REJ_NONE) {
        json = at_event_to_json(ev, &len);
        topic = COL_TOPIC_RAW;
    } else {
        json = at_event_rejected_to_json(ev, rej, detail, raw, rawlen, &len);
        topic = COL_TOPIC_REJECTED;
        if ((int)rej < 32 && rc->srv->stats.rejected[rej] != NULL)
            at_counter_add(rc->srv->stats.rejected[rej], 1);
    }
    if (json == NULL) {
        /* Cannot happen with checked fields; answered as not durable rather than lost silently. */
        at_log(AT_LOG_ERROR, "collector", "event serialization failed", NULL);
        p->failed++;
        return;
    }
    /* Kafka key = campaign id, so one campaign's events stay in order on one partition. */
    col_sink_submit(p, topic, ev != NULL ? ev->c.p : NULL, ev != NULL ? ev->c.len : 0, json, len); /* takes json */
}

/* ---- pixel and click ---- */

typedef struct reply_data_s {
    req_ctx_t rc;             /* copied: the pending answer needs the cookie */
    int status;               /* 200 pixel, 302 click, 400 click refused, 200 beacon */
    h2o_iovec_t location;     /* 302 target, in req->pool */
    h2o_iovec_t body;         /* 400 / beacon body, in req->pool */
} reply_data_t;

static void respond_reply(col_pending_t *p, h2o_req_t *req)
{
    reply_data_t *d = p->data;
    col_server_t *srv = d->rc.srv;

    if (p->failed > 0) {
        send_error(srv, req, 503, "Service Unavailable",
                   "the event could not be stored (Kafka and the local spool both refused it); retry later",
                   p->start_ns);
        return;
    }
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store, max-age=0"));
    if (d->rc.set_cookie)
        add_cookie_header(&d->rc, req);
    switch (d->status) {
    case 200:
        if (d->body.base != NULL) { /* beacon */
            send_body(req, 200, "OK", "application/json", d->body.base, d->body.len);
        } else {
            send_body(req, 200, "OK", "image/gif", pixel_gif, sizeof(pixel_gif));
        }
        break;
    case 302:
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, d->location.base, d->location.len);
        send_body(req, 302, "Found", NULL, "", 0);
        break;
    default:
        send_body(req, d->status, "Bad Request", "application/json", d->body.base, d->body.len);
        break;
    }
    col_stats_response(srv, d->status, p->start_ns);
}

static void add_cors(h2o_req_t *req, h2o_iovec_t origin)
{
    if (origin.len == 0)
        return;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ACCESS_CONTROL_ALLOW_ORIGIN, NULL, origin.base, origin.len);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-credentials"), 0, NULL,
                          H2O_STRLIT("true"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_VARY, NULL, H2O_STRLIT("Origin"));
}

static h2o_iovec_t json_error_body(h2o_req_t *req, const char *msg)
{
    bson_t doc = BSON_INITIALIZER;
    size_t len;
    BSON_APPEND_UTF8(&doc, "error", msg);
    char *json = bson_as_relaxed_extended_json(&doc, &len);
    bson_destroy(&doc);
    h2o_iovec_t v = h2o_strdup(&req->pool, json, len);
    bson_free(json);
    return v;
}

/* A destination is followed only when it is an absolute http(s) URL with no control
 * characters (no header injection, no javascript: URLs even if signed). */
static bool destination_is_safe(at_str_t d)
{
    if (!((d.len > 7 && strncasecmp(d.p, "http://", 7) == 0) || (d.len > 8 && strncasecmp(d.p, "https://", 8) == 0)))
        return false;
    for (size_t i = 0; i < d.len; i++)
        if ((unsigned char)d.p[i] < 0x20 || d.p[i] == 0x7f)
            return false;
    return true;
}

static int handle_pixel_or_click(col_server_t *srv, h2o_req_t *req, bool click)
{
    reply_data_t *d = h2o_mem_alloc_pool(&req->pool, sizeof(*d));
    memset(d, 0, sizeof(*d));
    req_ctx_t *rc = &d->rc;
    req_ctx_init(rc, srv, req);

    const char *query = "";
    size_t qlen = 0;
    if (req->query_at != SIZE_MAX) {
        query = req->path.base + req->query_at + 1;
        qlen = req->path.len - req->query_at - 1;
    }
    char *buf = h2o_mem_alloc_pool(&req->pool, qlen + 1);
    at_event_t ev = {0};
    col_query_t q = {0};
    at_err_t err = {0};
    ev.src = click ? AT_SRC_CLICK : AT_SRC_PIXEL;
    at_reject_t rej = col_query_parse(query, qlen, &ev, &q, buf, qlen + 1, &err);
    if (click && ev.type == AT_EV_NONE && q.e.len == 0) {
        ev.type = AT_EV_CLICK; /* /c is a click unless it says otherwise */
        q.e = AT_STR_LIT("click");
    }
    fill_from_request(rc, &ev);
    col_conv_campaign(&ev); /* a conversion with a click id belongs to the click's campaign */
    if (rej == AT_REJ_NONE)
        rej = at_event_check_e(&ev, q.e, &err);

    d->status = 200;
    if (click) {
        const char *key = srv->conf->click_key;
        const char *why = NULL;
        /* The signature covers cp too when it is given, so a forged link cannot choose the
         * parameter that lands on the advertiser's page. */
        size_t msglen = SIZE_MAX;
        char *msg = NULL;
        if (ev.d.len > 0) {
            msg = h2o_mem_alloc_pool(&req->pool, ev.d.len + 1 + q.cp.len);
            msglen = col_click_signed_message(ev.d, q.cp, msg, ev.d.len + 1 + q.cp.len);
        }
        if (ev.d.len == 0)
            why = "d: missing; expected the click destination URL";
        else if (q.cp.p != NULL && !col_click_param_valid(q.cp))
            why = "cp: expected 1-32 characters from [A-Za-z0-9_.-], the destination's click-id parameter";
        else if (key == NULL || key[0] == '\0')
            why = "sig: this collector has no --click-key, so no destination can be verified";
        else if (q.sig.len == 0)
            why = "sig: missing; expected base64url HMAC-SHA256 of d (of d, a newline and cp when cp is given)";
        else if (!at_hmac_verify(key, strlen(key), msg, msglen, q.sig.p, q.sig.len))
            why = "sig: does not verify; expected base64url HMAC-SHA256 with the collector's key of d (of d, a "
                  "newline and cp when cp is given)";
        else if (!destination_is_safe(ev.d))
            why = "d: expected an absolute http(s) URL without control characters";
        if (why != NULL) {
            d->status = 400;
            d->body = json_error_body(req, why);
            if (rej == AT_REJ_NONE) {
                rej = AT_REJ_INVALID_FIELD;
                at_err_set(&err, AT_ERR_INVALID, "%s", why);
            }
        } else if (rej != AT_REJ_NONE || ev.type != AT_EV_CLICK) {
            /* A click that is not recorded as one has no click id to hand on. */
            d->status = 302;
            d->location = h2o_strdup(&req->pool, ev.d.p, ev.d.len);
        } else {
            /* The click id is the click event's own id plus its campaign (at_clid_split). */
            char *clid = h2o_mem_alloc_pool(&req->pool, AT_UUID_STR_LEN + 2 + ev.c.len);
            at_uuid_format(&ev.id, clid);
            clid[AT_UUID_STR_LEN] = '.';
            memcpy(clid + AT_UUID_STR_LEN + 1, ev.c.p, ev.c.len);
            clid[AT_UUID_STR_LEN + 1 + ev.c.len] = '\0';
            at_str_t param = q.cp.len > 0 ? q.cp : AT_STR_LIT(COL_CLICK_PARAM_DEFAULT);
            size_t cap = ev.d.len + param.len + AT_UUID_STR_LEN + ev.c.len + 4;
            char *loc = h2o_mem_alloc_pool(&req->pool, cap);
            size_t n = col_click_location(ev.d, param, clid, loc, cap);
            d->status = 302;
            d->location = h2o_iovec_init(loc, n);
        }
    }

    col_pending_t *p = col_pending_new(rc->lp, req, respond_reply, d);
    submit_event(rc, p, &ev, rej, err.msg, query, qlen);
    col_pending_seal(p);
    return 0;
}

/* ---- beacon ---- */

static bool origin_allowed(col_server_t *srv, h2o_iovec_t origin)
{
    const at_conf_list_t *l = &srv->conf->cors_origins;
    for (size_t i = 0; i < l->count; i++) {
        const char *o = l->items[i];
        if (strcmp(o, "*") == 0 || (strlen(o) == origin.len && memcmp(o, origin.base, origin.len) == 0))
            return true;
    }
    return false;
}

static bool content_type_ok(h2o_iovec_t ct)
{
    if (ct.len == 0)
        return true;
    static const char *ok[] = {"application/json", "text/plain"};
    for (size_t i = 0; i < AT_ARRAY_LEN(ok); i++) {
        size_t n = strlen(ok[i]);
        if (ct.len >= n && strncasecmp(ct.base, ok[i], n) == 0 && (ct.len == n || ct.base[n] == ';' || ct.base[n] == ' '))
            return true;
    }
    return false;
}

static int handle_preflight(col_server_t *srv, h2o_req_t *req, uint64_t start_ns)
{
    h2o_iovec_t origin = find_header(req, NULL, "origin");
    if (origin.len == 0 || !origin_allowed(srv, origin)) {
        send_error(srv, req, 403, "Forbidden", "origin: not in --cors-origins", start_ns);
        return 0;
    }
    add_cors(req, origin);
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-methods"), 0, NULL,
                          H2O_STRLIT("POST, GET, OPTIONS"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-allow-headers"), 0, NULL,
                          H2O_STRLIT("Content-Type"));
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("access-control-max-age"), 0, NULL,
                          H2O_STRLIT("86400"));
    send_body(req, 204, "No Content", NULL, "", 0);
    col_stats_response(srv, 204, start_ns);
    return 0;
}

static int handle_beacon(col_server_t *srv, h2o_req_t *req)
{
    reply_data_t *d = h2o_mem_alloc_pool(&req->pool, sizeof(*d));
    memset(d, 0, sizeof(*d));
    req_ctx_t *rc = &d->rc;
    req_ctx_init(rc, srv, req);

    h2o_iovec_t origin = find_header(req, NULL, "origin");
    if (origin.len > 0 && !origin_allowed(srv, origin)) {
        send_error(srv, req, 403, "Forbidden", "origin: not in --cors-origins", rc->start_ns);
        return 0;
    }
    add_cors(req, origin);
    h2o_iovec_t ct = find_header(req, H2O_TOKEN_CONTENT_TYPE, NULL);
    if (!content_type_ok(ct)) {
        send_error(srv, req, 415, "Unsupported Media Type",
                   "content-type: expected application/json or text/plain (a JSON array of events)", rc->start_ns);
        return 0;
    }

    const char *body = req->entity.base != NULL ? req->entity.base : "";
    size_t blen = req->entity.base != NULL ? req->entity.len : 0;
    col_batch_t batch = {0};
    at_err_t err = {0};
    if (col_batch_parse(body, blen, &batch, &err) != 0) {
        if (err.code == AT_ERR_TOO_LARGE) {
            send_error(srv, req, 413, "Payload Too Large", err.msg, rc->start_ns);
            return 0;
        }
        /* Not a JSON array: keep the body as a rejected record, then say why. */
        d->status = 400;
        d->body = json_error_body(req, err.msg);
        col_pending_t *p = col_pending_new(rc->lp, req, respond_reply, d);
        at_event_t ev = {0};
        ev.src = AT_SRC_BEACON;
        fill_from_request(rc, &ev);
        submit_event(rc, p, &ev, AT_REJ_MALFORMED_JSON, err.msg, body, blen);
        col_pending_seal(p);
        return 0;
    }

    d->status = 200;
    col_pending_t *p = col_pending_new(rc->lp, req, respond_reply, d);
    bson_t reply = BSON_INITIALIZER, errors;
    uint32_t accepted = 0, rejected = 0;
    bson_append_array_begin(&reply, "errors", -1, &errors);
    for (size_t i = 0; i < batch.count; i++) {
        col_batch_item_t *it = &batch.items[i];
        fill_from_request(rc, &it->ev);
        if (it->reject == AT_REJ_NONE) {
            /* The request added ua, ref, u and ip: check those too (ua is truncated). */
            at_err_t cerr = {0};
            it->reject = at_event_check(&it->ev, &cerr);
            if (it->reject != AT_REJ_NONE)
                snprintf(it->detail, sizeof(it->detail), "%s", cerr.msg);
        }
        submit_event(rc, p, &it->ev, it->reject, it->detail, it->raw, it->rawlen);
        if (it->reject == AT_REJ_NONE) {
            accepted++;
            continue;
        }
        char idx[16];
        const char *key;
        bson_t e;
        bson_uint32_to_string(rejected++, &key, idx, sizeof(idx));
        bson_append_document_begin(&errors, key, -1, &e);
        BSON_APPEND_INT32(&e, "index", (int32_t)i);
        BSON_APPEND_UTF8(&e, "reason", at_reject_str(it->reject));
        BSON_APPEND_UTF8(&e, "detail", it->detail);
        bson_append_document_end(&errors, &e);
    }
    bson_append_array_end(&reply, &errors);
    BSON_APPEND_INT32(&reply, "accepted", (int32_t)accepted);
    BSON_APPEND_INT32(&reply, "rejected", (int32_t)rejected);
    size_t len;
    char *json = bson_as_relaxed_extended_json(&reply, &len);
    d->body = h2o_strdup(&req->pool, json, len);
    bson_free(json);
    bson_destroy(&reply);
    col_batch_free(&batch);
    col_pending_seal(p);
    return 0;
}

/* ---- postback ---- */

/*
 * GET|POST /v1/postback: a conversion from the advertiser's server (col_postback.h). The
 * parameters come from the query string or, when it is empty, from a form-encoded POST body.
 * Unauthenticated requests are answered 401 and not recorded (nobody may fill the topics
 * through an open endpoint); authenticated ones are recorded like a pixel: valid -> 200
 * {"id":...} once durable, invalid -> 400 naming the field, kept on the rejected topic.
 */
static int handle_postback(col_server_t *srv, h2o_req_t *req)
{
    reply_data_t *d = h2o_mem_alloc_pool(&req->pool, sizeof(*d));
    memset(d, 0, sizeof(*d));
    req_ctx_t *rc = &d->rc;
    req_ctx_init(rc, srv, req);

    const char *params = "";
    size_t plen = 0;
    if (req->query_at != SIZE_MAX && req->path.len > req->query_at + 1) {
        params = req->path.base + req->query_at + 1;
        plen = req->path.len - req->query_at - 1;
    } else if (req->entity.base != NULL) {
        h2o_iovec_t ct = find_header(req, H2O_TOKEN_CONTENT_TYPE, NULL);
        if (ct.len > 0 && strncasecmp(ct.base, "application/x-www-form-urlencoded", 33) != 0) {
            send_error(srv, req, 415, "Unsupported Media Type",
                       "content-type: expected application/x-www-form-urlencoded (or the parameters in the query)",
                       rc->start_ns);
            return 0;
        }
        params = req->entity.base;
        plen = req->entity.len;
    }
    char *canon = h2o_mem_alloc_pool(&req->pool, plen + 1);
    at_str_t sig;
    size_t clen = col_postback_canonical(params, plen, canon, &sig);

    char *buf = h2o_mem_alloc_pool(&req->pool, plen + 1);
    at_event_t ev = {0};
    col_query_t q = {0};
    at_err_t err = {0};
    at_reject_t rej = col_query_parse(params, plen, &ev, &q, buf, plen + 1, &err);
    h2o_iovec_t authz = find_header(req, H2O_TOKEN_AUTHORIZATION, NULL);
    col_postback_auth_t auth =
        col_postback_check(&srv->postback_keys, ev.adv, (at_str_t){authz.base, authz.len}, canon, clen, sig);
    if (auth != COL_PB_OK) {
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, H2O_STRLIT("Bearer"));
        send_error(srv, req, 401, "Unauthorized", col_postback_auth_str(auth), rc->start_ns);
        return 0;
    }

    ev.type = AT_EV_CONV; /* whatever e said: a postback is a conversion */
    ev.src = AT_SRC_POSTBACK;
    fill_from_request(rc, &ev);
    /* A server, not a browser: no user, no cookie. */
    ev.uid = (at_str_t){NULL, 0};
    rc->set_cookie = false;
    col_conv_campaign(&ev);
    if (rej == AT_REJ_NONE && ev.clid.len == 0) {
        rej = AT_REJ_MISSING_FIELD;
        at_err_set(&err, AT_ERR_INVALID,
                   "clid: missing; expected the click id the landing page received (<uuid>.<campaign>)");
    }
    if (rej == AT_REJ_NONE)
        rej = at_event_check_e(&ev, AT_STR_LIT("conv"), &err);
    if (rej != AT_REJ_NONE) {
        d->status = 400;
        d->body = json_error_body(req, err.msg);
    } else {
        char id[AT_UUID_STR_LEN + 1];
        at_uuid_format(&ev.id, id);
        bson_t doc = BSON_INITIALIZER;
        size_t len;
        BSON_APPEND_UTF8(&doc, "id", id);
        BSON_APPEND_UTF8(&doc, "status", "accepted");
        char *json = bson_as_relaxed_extended_json(&doc, &len);
        bson_destroy(&doc);
        d->body = h2o_strdup(&req->pool, json, len);
        bson_free(json);
        d->status = 200;
    }
    col_pending_t *p = col_pending_new(rc->lp, req, respond_reply, d);
    submit_event(rc, p, &ev, rej, err.msg, params, plen);
    col_pending_seal(p);
    return 0;
}

/* ---- operational endpoints ---- */

static int handle_readyz(col_server_t *srv, h2o_req_t *req, uint64_t start_ns)
{
    const char *why;
    bool ready = col_server_ready(srv, &why);
    bson_t doc = BSON_INITIALIZER;
    size_t len;
    BSON_APPEND_UTF8(&doc, "status", ready ? "ready" : "unready");
    BSON_APPEND_UTF8(&doc, "reason", why);
    char *json = bson_as_relaxed_extended_json(&doc, &len);
    bson_destroy(&doc);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    send_body(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable", "application/json", json, len);
    bson_free(json);
    col_stats_response(srv, ready ? 200 : 503, start_ns);
    return 0;
}

static int handle_metrics(col_server_t *srv, h2o_req_t *req, uint64_t start_ns)
{
    size_t len;
    char *text = at_metrics_render(srv->metrics, &len);
    if (text == NULL) {
        send_error(srv, req, 500, "Internal Server Error", "metrics: out of memory", start_ns);
        return 0;
    }
    send_body(req, 200, "OK", "text/plain; version=0.0.4", text, len);
    free(text);
    col_stats_response(srv, 200, start_ns);
    return 0;
}

static bool path_is(h2o_req_t *req, const char *path)
{
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    return plen == strlen(path) && memcmp(req->path.base, path, plen) == 0;
}

static bool method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

static int method_not_allowed(col_server_t *srv, h2o_req_t *req, const char *allow, uint64_t start_ns)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
    char msg[128];
    snprintf(msg, sizeof(msg), "method: expected %s", allow);
    send_error(srv, req, 405, "Method Not Allowed", msg, start_ns);
    return 0;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    col_server_t *srv = ((col_handler_t *)self)->srv;
    uint64_t start_ns = col_now_ns();
    bool get = method_is(req, "GET") || method_is(req, "HEAD");

    if (req->path.len > (size_t)srv->conf->url_max_bytes) {
        char msg[128];
        snprintf(msg, sizeof(msg), "url: longer than %lld bytes", (long long)srv->conf->url_max_bytes);
        send_error(srv, req, 414, "URI Too Long", msg, start_ns);
        return 0;
    }
    if (path_is(req, "/t.gif"))
        return get ? handle_pixel_or_click(srv, req, false) : method_not_allowed(srv, req, "GET, HEAD", start_ns);
    if (path_is(req, "/c"))
        return get ? handle_pixel_or_click(srv, req, true) : method_not_allowed(srv, req, "GET, HEAD", start_ns);
    if (path_is(req, "/v1/events")) {
        if (method_is(req, "POST"))
            return handle_beacon(srv, req);
        if (method_is(req, "OPTIONS"))
            return handle_preflight(srv, req, start_ns);
        return method_not_allowed(srv, req, "POST, OPTIONS", start_ns);
    }
    if (path_is(req, "/v1/postback"))
        return get || method_is(req, "POST") ? handle_postback(srv, req)
                                             : method_not_allowed(srv, req, "GET, HEAD, POST", start_ns);
    if (path_is(req, "/healthz")) {
        if (!get)
            return method_not_allowed(srv, req, "GET, HEAD", start_ns);
        send_body(req, 200, "OK", "application/json", H2O_STRLIT("{ \"status\" : \"ok\" }"));
        col_stats_response(srv, 200, start_ns);
        return 0;
    }
    if (path_is(req, "/readyz"))
        return get ? handle_readyz(srv, req, start_ns) : method_not_allowed(srv, req, "GET, HEAD", start_ns);
    if (path_is(req, "/metrics"))
        return get ? handle_metrics(srv, req, start_ns) : method_not_allowed(srv, req, "GET, HEAD", start_ns);
    if (col_static_serve(srv, req, start_ns) == 0) /* /tracker.js; /demo/ with --demo-page */
        return 0;
    send_error(srv, req, 404, "Not Found",
               "path: expected /t.gif, /c, /v1/events, /v1/postback, /healthz, /readyz, /metrics or /tracker.js", start_ns);
    return 0;
}

void col_http_register(col_server_t *srv, h2o_pathconf_t *pathconf)
{
    col_handler_t *h = (col_handler_t *)h2o_create_handler(pathconf, sizeof(*h));
    h->srv = srv;
    h->super.on_req = on_req;
}
