/*
 * cd_http.c: the admin API.
 *
 *   GET    /v1/campaigns[?limit=N&after=ID]     list (by id; "next" is the after= of the next page)
 *   GET    /v1/campaigns/{id}                   read (ETag: "<version>")
 *   PUT    /v1/campaigns/{id}                   create (201) or replace (200)
 *   DELETE /v1/campaigns/{id}                   delete (a tombstone keeps the version)
 *   POST   /v1/campaigns/{id}/budget            {"set_micros":N} or {"topup_micros":N}
 *   POST   /v1/campaigns/{id}/pause, /resume
 *   the same (without budget/pause/resume) under /v1/publishers
 *   GET    /v1/reports?from=&to=&...            reports from the hourly rollups (cd_reports.h;
 *                                                 any token)
 *   GET    /healthz /readyz /metrics            no token needed
 *
 * Every /v1 request needs "Authorization: Bearer <token>". Writes take If-Match: "<version>"
 * (or "version" in the body): 409 when the entity is not at that version ("0": it must not
 * exist yet).
 *
 * @locality: every function here runs on the loop thread that owns the request, except
 * on_core_done (core worker thread) and on_report_done (reports thread), which only post a
 * message to that loop.
 */
#include <stdlib.h>
#include <time.h>

#include "at_kafka.h"
#include "at_log.h"
#include "cd_server.h"

typedef struct cd_handler_s {
    h2o_handler_t super;
    cd_server_t *srv;
} cd_handler_t;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void count_response(cd_server_t *srv, int status, uint64_t start_ns)
{
    if (status > 0 && status < (int)AT_ARRAY_LEN(srv->requests) && srv->requests[status] != NULL)
        at_counter_add(srv->requests[status], 1);
    if (start_ns != 0)
        at_histogram_observe(srv->latency, (double)(now_ns() - start_ns) / 1e9);
}

static const char *reason_of(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

static void send_json(cd_server_t *srv, h2o_req_t *req, int status, const char *json, size_t len, uint64_t start_ns)
{
    req->res.status = status;
    req->res.reason = reason_of(status);
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    h2o_iovec_t body = h2o_strdup(&req->pool, json, len);
    h2o_send_inline(req, body.base, body.len);
    count_response(srv, status, start_ns);
}

static void send_bson(cd_server_t *srv, h2o_req_t *req, int status, const bson_t *doc, uint64_t start_ns)
{
    size_t len;
    char *json = bson_as_relaxed_extended_json(doc, &len);
    if (json == NULL) {
        static const char fallback[] = "{\"error\":\"response not serialisable\"}";
        send_json(srv, req, 500, fallback, sizeof(fallback) - 1, start_ns);
        return;
    }
    send_json(srv, req, status, json, len, start_ns);
    bson_free(json);
}

/* {"error": msg[, "errors": [...]][, "current": doc]} */
static void send_error(cd_server_t *srv, h2o_req_t *req, int status, const char *msg, const cd_verrs_t *errs,
                       const bson_t *current, uint64_t start_ns)
{
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&doc, "error", msg);
    if (errs != NULL && errs->count > 0)
        cd_verrs_append(errs, &doc);
    if (current != NULL)
        BSON_APPEND_DOCUMENT(&doc, "current", current);
    send_bson(srv, req, status, &doc, start_ns);
    bson_destroy(&doc);
}

static void send_400(cd_server_t *srv, h2o_req_t *req, const cd_verrs_t *errs, uint64_t start_ns)
{
    send_error(srv, req, 400, "validation failed: see errors", errs, NULL, start_ns);
}

static void set_etag(h2o_req_t *req, int64_t version)
{
    char buf[32];
    int n = snprintf(buf, sizeof(buf), "\"%lld\"", (long long)version);
    h2o_iovec_t v = h2o_strdup(&req->pool, buf, (size_t)n);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ETAG, NULL, v.base, v.len);
}

static h2o_iovec_t find_header(h2o_req_t *req, const h2o_token_t *token)
{
    ssize_t i = h2o_find_header(&req->headers, token, -1);
    return i >= 0 ? req->headers.entries[i].value : h2o_iovec_init(NULL, 0);
}

static bool method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

static int method_not_allowed(cd_server_t *srv, h2o_req_t *req, const char *allow, uint64_t start_ns)
{
    char msg[128];
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
    snprintf(msg, sizeof(msg), "method: expected %s", allow);
    send_error(srv, req, 405, msg, NULL, NULL, start_ns);
    return 0;
}

/* ---- answers from the core worker ---- */

typedef struct http_op_s {
    h2o_multithread_message_t super;
    cd_loop_t *lp;
    h2o_req_t *req; /* NULL once the client went away */
    struct http_op_s **slot;
    cd_req_t *r;
    uint64_t start_ns;
} http_op_t;

static void on_req_dispose(void *slotp)
{
    http_op_t *op = *(http_op_t **)slotp;
    if (op != NULL)
        op->req = NULL; /* the change still completes; nobody to answer */
}

/* @locality: core worker thread. */
static void on_core_done(cd_req_t *r, void *opaque)
{
    http_op_t *op = opaque;
    AT_UNUSED(r);
    h2o_multithread_send_message(&op->lp->reply_rx, &op->super);
}

static void respond_result(cd_server_t *srv, h2o_req_t *req, cd_req_t *r, uint64_t start_ns)
{
    if (r->status == 200 || r->status == 201) {
        int64_t v = cd_doc_int64(r->doc, "version", 0);
        set_etag(req, v);
        if (r->status == 201) {
            char loc[160];
            int n = snprintf(loc, sizeof(loc), "/v1/%s/%s", cd_kind_plural(r->u.kind), r->u.id);
            h2o_iovec_t l = h2o_strdup(&req->pool, loc, (size_t)n);
            h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_LOCATION, NULL, l.base, l.len);
        }
        send_bson(srv, req, r->status, r->doc, start_ns);
        return;
    }
    if (r->status == 400) {
        send_400(srv, req, &r->errs, start_ns);
        return;
    }
    send_error(srv, req, r->status, r->msg, NULL, r->status == 409 ? r->doc : NULL, start_ns);
}

static void on_reply(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages)
{
    AT_UNUSED(rx);
    while (!h2o_linklist_is_empty(messages)) {
        http_op_t *op = H2O_STRUCT_FROM_MEMBER(http_op_t, super.link, messages->next);
        h2o_linklist_unlink(&op->super.link);
        if (op->req != NULL) {
            *op->slot = NULL;
            respond_result(op->lp->srv, op->req, op->r, op->start_ns);
        }
        atomic_fetch_sub(&op->lp->inflight, 1);
        cd_req_free(op->r);
        free(op);
    }
}

static void submit(cd_server_t *srv, h2o_req_t *req, cd_req_t *r, uint64_t start_ns)
{
    cd_loop_t *lp = H2O_STRUCT_FROM_MEMBER(cd_loop_t, ctx, req->conn->ctx);
    http_op_t *op = calloc(1, sizeof(*op));
    if (op == NULL) {
        cd_req_free(r);
        send_error(srv, req, 503, "out of memory", NULL, NULL, start_ns);
        return;
    }
    op->lp = lp;
    op->req = req;
    op->r = r;
    op->start_ns = start_ns;
    r->done = on_core_done;
    r->opaque = op;
    if (cd_core_submit(srv->core, r) != 0) {
        free(op);
        cd_req_free(r);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        send_error(srv, req, 503, "too many changes waiting for the store; retry shortly", NULL, NULL, start_ns);
        return;
    }
    op->slot = h2o_mem_alloc_shared(&req->pool, sizeof(*op->slot), on_req_dispose);
    *op->slot = op;
    atomic_fetch_add(&lp->inflight, 1);
}

/* ---- reports: answered by the reports thread ---- */

typedef struct report_op_s {
    h2o_multithread_message_t super;
    cd_loop_t *lp;
    h2o_req_t *req; /* NULL once the client went away */
    struct report_op_s **slot;
    cd_report_req_t *r;
    uint64_t start_ns;
} report_op_t;

static void on_report_dispose(void *slotp)
{
    report_op_t *op = *(report_op_t **)slotp;
    if (op != NULL)
        op->req = NULL;
}

/* @locality: reports thread. */
static void on_report_done(cd_report_req_t *r, void *opaque)
{
    report_op_t *op = opaque;
    AT_UNUSED(r);
    h2o_multithread_send_message(&op->lp->report_rx, &op->super);
}

static void on_body_dispose(void *p)
{
    free(*(char **)p);
}

static void respond_report(cd_server_t *srv, h2o_req_t *req, cd_report_req_t *r, uint64_t start_ns)
{
    if (r->body == NULL) {
        send_error(srv, req, 503, "reports: out of memory", NULL, NULL, start_ns);
        return;
    }
    /* Not send_json: a report can be tens of megabytes (send_json copies it twice). */
    req->res.status = r->status;
    req->res.reason = reason_of(r->status);
    req->res.content_length = r->body_len;
    if (r->csv)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                       H2O_STRLIT("text/csv; charset=utf-8; header=present"));
    else
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, H2O_STRLIT("application/json"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL, H2O_STRLIT("no-store"));
    /* The body (up to tens of megabytes) is sent from where the reports thread wrote it, not
     * copied on the loop: the request's pool takes it over and frees it when the request
     * is done. */
    char **owned = h2o_mem_alloc_shared(&req->pool, sizeof(*owned), on_body_dispose);
    *owned = r->body;
    h2o_iovec_t body = h2o_iovec_init(r->body, r->body_len);
    r->body = NULL;
    static h2o_generator_t generator = {NULL, NULL};
    h2o_start_response(req, &generator);
    if (method_is(req, "HEAD"))
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
    else
        h2o_send(req, &body, 1, H2O_SEND_STATE_FINAL);
    count_response(srv, r->status, start_ns);
}

void cd_http_on_report(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages)
{
    AT_UNUSED(rx);
    while (!h2o_linklist_is_empty(messages)) {
        report_op_t *op = H2O_STRUCT_FROM_MEMBER(report_op_t, super.link, messages->next);
        h2o_linklist_unlink(&op->super.link);
        if (op->req != NULL) {
            *op->slot = NULL;
            respond_report(op->lp->srv, op->req, op->r, op->start_ns);
        }
        atomic_fetch_sub(&op->lp->inflight, 1);
        cd_report_req_free(op->r);
        free(op);
    }
}

static bool accepts_csv(h2o_req_t *req)
{
    h2o_iovec_t a = find_header(req, H2O_TOKEN_ACCEPT);
    return a.base != NULL && h2o_strstr(a.base, a.len, H2O_STRLIT("text/csv")) != SIZE_MAX;
}

static void handle_report(cd_server_t *srv, h2o_req_t *req, uint64_t start_ns)
{
    cd_loop_t *lp = H2O_STRUCT_FROM_MEMBER(cd_loop_t, ctx, req->conn->ctx);
    const char *qs = req->query_at != SIZE_MAX ? req->path.base + req->query_at + 1 : NULL;
    size_t qslen = qs != NULL ? req->path.len - req->query_at - 1 : 0;
    cd_report_req_t *r = cd_report_req_new(qs, qslen, accepts_csv(req));
    report_op_t *op = r != NULL ? calloc(1, sizeof(*op)) : NULL;
    if (op == NULL) {
        cd_report_req_free(r);
        send_error(srv, req, 503, "out of memory", NULL, NULL, start_ns);
        return;
    }
    op->lp = lp;
    op->req = req;
    op->r = r;
    op->start_ns = start_ns;
    r->done = on_report_done;
    r->opaque = op;
    if (cd_reports_submit(srv->reports, r) != 0) {
        free(op);
        cd_report_req_free(r);
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_RETRY_AFTER, NULL, H2O_STRLIT("1"));
        send_error(srv, req, 503, "too many reports waiting; retry shortly", NULL, NULL, start_ns);
        return;
    }
    op->slot = h2o_mem_alloc_shared(&req->pool, sizeof(*op->slot), on_report_dispose);
    *op->slot = op;
    atomic_fetch_add(&lp->inflight, 1);
}

/* ---- request parsing ---- */

/* If-Match: "17", W/"17" or 17. Returns 0 (absent: *v = -1), or -1 when malformed. */
static int parse_if_match(h2o_req_t *req, int64_t *v)
{
    h2o_iovec_t h = find_header(req, H2O_TOKEN_IF_MATCH);
    *v = -1;
    if (h.base == NULL)
        return 0;
    const char *p = h.base, *e = h.base + h.len;
    while (p < e && *p == ' ')
        p++;
    while (e > p && e[-1] == ' ')
        e--;
    if (e - p >= 2 && p[0] == 'W' && p[1] == '/')
        p += 2;
    if (e - p >= 2 && *p == '"' && e[-1] == '"') {
        p++;
        e--;
    }
    if (p == e || e - p > 16)
        return -1;
    int64_t n = 0;
    for (; p < e; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (*p - '0');
    }
    *v = n;
    return 0;
}

/* Parses the body as a JSON object (NULL out when the body is empty and @p allow_empty). */
static int parse_body(cd_server_t *srv, h2o_req_t *req, bson_t *out, bool *have, bool allow_empty, cd_verrs_t *errs,
                      uint64_t start_ns)
{
    *have = false;
    size_t len = req->entity.base != NULL ? req->entity.len : 0;
    if (len > (size_t)srv->conf->body_max_bytes) {
        char msg[128];
        snprintf(msg, sizeof(msg), "body: expected at most %lld bytes", (long long)srv->conf->body_max_bytes);
        send_error(srv, req, 413, msg, NULL, NULL, start_ns);
        return -1;
    }
    bool blank = true;
    for (size_t i = 0; i < len && blank; i++)
        blank = req->entity.base[i] == ' ' || req->entity.base[i] == '\n' || req->entity.base[i] == '\r' ||
                req->entity.base[i] == '\t';
    if (blank) {
        if (allow_empty)
            return 0;
        cd_verrs_add(errs, "(body)", "a JSON object");
        send_400(srv, req, errs, start_ns);
        return -1;
    }
    if (cd_json_object(req->entity.base, len, out, errs) != 0) {
        send_400(srv, req, errs, start_ns);
        return -1;
    }
    *have = true;
    return 0;
}

/* Merges If-Match with a body version into r->u.expect_version. -1 when they disagree. */
static int merge_versions(h2o_req_t *req, cd_req_t *r, cd_verrs_t *errs)
{
    int64_t hv;
    if (parse_if_match(req, &hv) != 0) {
        cd_verrs_add(errs, "If-Match", "a version in quotes, e.g. \"17\"");
        return -1;
    }
    if (hv >= 0 && r->u.expect_version >= 0 && hv != r->u.expect_version) {
        cd_verrs_add(errs, "version", "the same version as If-Match (%lld)", (long long)hv);
        return -1;
    }
    if (hv >= 0)
        r->u.expect_version = hv;
    return 0;
}

typedef enum sub_e { SUB_NONE, SUB_BUDGET, SUB_PAUSE, SUB_RESUME } sub_t;

static void handle_write(cd_server_t *srv, h2o_req_t *req, cd_kind_t kind, const char *id, sub_t sub, uint64_t start_ns)
{
    cd_verrs_t errs = {0};
    bson_t body;
    bool have = false;
    cd_req_t *r = cd_req_new();
    if (r == NULL) {
        send_error(srv, req, 503, "out of memory", NULL, NULL, start_ns);
        return;
    }
    r->u.kind = kind;
    snprintf(r->u.id, sizeof(r->u.id), "%s", id);
    bool del = method_is(req, "DELETE");
    if (parse_body(srv, req, &body, &have, sub != SUB_NONE || del, &errs, start_ns) != 0) {
        cd_req_free(r);
        return;
    }
    int rc = 0;
    if (sub == SUB_BUDGET) {
        rc = cd_budget_body(have ? &body : NULL, &r->u, &errs);
    } else if (sub == SUB_PAUSE || sub == SUB_RESUME) {
        r->u.op = sub == SUB_PAUSE ? CD_OP_PAUSE : CD_OP_RESUME;
        rc = cd_version_body(have ? &body : NULL, &r->u, &errs);
    } else if (del) {
        r->u.op = CD_OP_DELETE;
        rc = cd_version_body(have ? &body : NULL, &r->u, &errs);
    } else {
        r->u.op = CD_OP_PUT;
        bson_t canon;
        rc = cd_doc_validate(kind, &body, id, &canon, &r->u.expect_version, &errs);
        if (rc == 0) {
            bson_destroy(&r->u.doc);
            bson_steal(&r->u.doc, &canon);
        }
    }
    if (have)
        bson_destroy(&body);
    if (rc == 0)
        rc = merge_versions(req, r, &errs);
    if (rc != 0) {
        cd_req_free(r);
        send_400(srv, req, &errs, start_ns);
        return;
    }
    submit(srv, req, r, start_ns);
}

static void handle_get(cd_server_t *srv, h2o_req_t *req, cd_kind_t kind, const char *id, uint64_t start_ns)
{
    cd_state_t *st = &srv->state;
    char *json = NULL;
    size_t len = 0;
    int64_t v = 0;
    pthread_rwlock_rdlock(&st->lock);
    ssize_t i = cd_state_find(st, kind, id);
    if (i >= 0 && !st->items[kind][i].deleted) {
        json = bson_as_relaxed_extended_json(st->items[kind][i].doc, &len);
        v = st->items[kind][i].version;
    }
    pthread_rwlock_unlock(&st->lock);
    if (json == NULL) {
        char msg[160];
        snprintf(msg, sizeof(msg), "%s '%s' not found", cd_kind_str(kind), id);
        send_error(srv, req, 404, msg, NULL, NULL, start_ns);
        return;
    }
    set_etag(req, v);
    send_json(srv, req, 200, json, len, start_ns);
    bson_free(json);
}

/* Value of query parameter @p name (not decoded: ids and numbers need no decoding). */
static h2o_iovec_t query_param(h2o_req_t *req, const char *name)
{
    if (req->query_at == SIZE_MAX)
        return h2o_iovec_init(NULL, 0);
    const char *p = req->path.base + req->query_at + 1, *end = req->path.base + req->path.len;
    size_t nlen = strlen(name);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        if ((size_t)(e - p) > nlen && memcmp(p, name, nlen) == 0 && p[nlen] == '=')
            return h2o_iovec_init(p + nlen + 1, (size_t)(e - p - (ptrdiff_t)nlen - 1));
        p = e + 1;
    }
    return h2o_iovec_init(NULL, 0);
}

static void handle_list(cd_server_t *srv, h2o_req_t *req, cd_kind_t kind, uint64_t start_ns)
{
    cd_verrs_t errs = {0};
    int64_t limit = 100;
    char after[CD_ID_MAX + 1] = "";
    h2o_iovec_t l = query_param(req, "limit"), a = query_param(req, "after");
    if (l.base != NULL) {
        limit = 0;
        bool ok = l.len > 0 && l.len <= 4;
        for (size_t i = 0; ok && i < l.len; i++) {
            ok = l.base[i] >= '0' && l.base[i] <= '9';
            limit = limit * 10 + (l.base[i] - '0');
        }
        if (!ok || limit < 1 || limit > 1000)
            cd_verrs_add(&errs, "limit", "an integer from 1 to 1000");
    }
    if (a.base != NULL) {
        if (!cd_id_valid(a.base, a.len))
            cd_verrs_add(&errs, "after", "an id: 1 to 64 characters from A-Z a-z 0-9 . _ : -");
        else {
            memcpy(after, a.base, a.len);
            after[a.len] = '\0';
        }
    }
    if (errs.count > 0) {
        send_400(srv, req, &errs, start_ns);
        return;
    }
    bson_t doc = BSON_INITIALIZER, items;
    char idx[16], next[CD_ID_MAX + 1] = "";
    const char *key;
    uint32_t n = 0;
    cd_state_t *st = &srv->state;
    bson_append_array_begin(&doc, "items", -1, &items);
    pthread_rwlock_rdlock(&st->lock);
    size_t i = cd_state_lower_bound(st, kind, after[0] ? after : NULL);
    for (; i < st->count[kind]; i++) {
        const cd_entry_t *e = &st->items[kind][i];
        if (e->deleted)
            continue;
        if (n == (uint32_t)limit) {
            /* There is more: the next page starts after the last one shown. */
            snprintf(next, sizeof(next), "%s", st->items[kind][i - 1].id);
            break;
        }
        bson_uint32_to_string(n++, &key, idx, sizeof(idx));
        BSON_APPEND_DOCUMENT(&items, key, e->doc);
    }
    int64_t version = st->version;
    pthread_rwlock_unlock(&st->lock);
    bson_append_array_end(&doc, &items);
    if (next[0] != '\0')
        BSON_APPEND_UTF8(&doc, "next", next);
    BSON_APPEND_INT64(&doc, "version", version);
    send_bson(srv, req, 200, &doc, start_ns);
    bson_destroy(&doc);
}

/* ---- operational endpoints ---- */

static void handle_readyz(cd_server_t *srv, h2o_req_t *req, uint64_t start_ns)
{
    bool stopping = atomic_load(&srv->stopping);
    /* Writes are accepted while Redis or Kafka is down (the fan-out catches up), but not while
     * either refuses our credentials: that is a deployment error no wait can fix, and a
     * rolling update must stop at it (docs/SECURITY.md). */
    char kwhy[200] = "";
    bool kafka_auth = at_kafka_auth_failed(kwhy, sizeof(kwhy));
    bool redis_auth = cd_fanout_redis_auth_failed(srv->fo);
    bool ready = !stopping && !kafka_auth && !redis_auth;
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&doc, "status", stopping ? "stopping" : ready ? "ready" : "unready");
    if (kafka_auth)
        BSON_APPEND_UTF8(&doc, "error", "kafka refused our credentials or certificate (see the log)");
    else if (redis_auth)
        BSON_APPEND_UTF8(&doc, "error", "redis refused our credentials or permissions (see the log)");
    BSON_APPEND_UTF8(&doc, "store", cd_core_store_name(srv->core));
    BSON_APPEND_UTF8(&doc, "redis", cd_fanout_redis_up(srv->fo) ? "up" : "down");
    BSON_APPEND_INT64(&doc, "kafka_backlog", (int64_t)cd_fanout_kafka_backlog(srv->fo));
    BSON_APPEND_INT64(&doc, "fanout_queue", (int64_t)cd_fanout_queue_len(srv->fo));
    BSON_APPEND_BOOL(&doc, "fanout_idle", cd_fanout_idle(srv->fo));
    pthread_rwlock_rdlock(&srv->state.lock);
    BSON_APPEND_INT64(&doc, "version", srv->state.version);
    pthread_rwlock_unlock(&srv->state.lock);
    send_bson(srv, req, ready ? 200 : 503, &doc, start_ns);
    bson_destroy(&doc);
}

static void handle_metrics(cd_server_t *srv, h2o_req_t *req, uint64_t start_ns)
{
    size_t len = 0;
    char *text = at_metrics_render(srv->metrics, &len);
    if (text == NULL) {
        send_error(srv, req, 500, "metrics: out of memory", NULL, NULL, start_ns);
        return;
    }
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = len;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/plain; version=0.0.4"));
    h2o_iovec_t body = h2o_strdup(&req->pool, text, len);
    free(text);
    h2o_send_inline(req, body.base, body.len);
    count_response(srv, 200, start_ns);
}

/* ---- routing ---- */

static bool path_is(const char *p, size_t plen, const char *lit)
{
    return plen == strlen(lit) && memcmp(p, lit, plen) == 0;
}

/* The caller's access; CD_ACCESS_NONE after answering 401 (no token, or a wrong one). */
static cd_access_t authenticate(cd_server_t *srv, h2o_req_t *req, uint64_t start_ns)
{
    h2o_iovec_t authz = find_header(req, H2O_TOKEN_AUTHORIZATION);
    cd_access_t access = cd_auth_check(srv->auth, authz.base, authz.len);
    if (access == CD_ACCESS_NONE || access == CD_ACCESS_INVALID) {
        const char *www =
            access == CD_ACCESS_NONE ? "Bearer realm=\"adtrack\"" : "Bearer realm=\"adtrack\", error=\"invalid_token\"";
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL, www, strlen(www));
        send_error(srv, req, 401,
                   access == CD_ACCESS_NONE ? "authorization: expected a header 'Authorization: Bearer <token>'"
                                            : "authorization: the bearer token is not valid",
                   NULL, NULL, start_ns);
        return CD_ACCESS_NONE;
    }
    return access;
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    cd_server_t *srv = ((cd_handler_t *)self)->srv;
    uint64_t start_ns = now_ns();
    const char *p = req->path.base;
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;
    bool get = method_is(req, "GET") || method_is(req, "HEAD");

    if (path_is(p, plen, "/healthz")) {
        if (!get)
            return method_not_allowed(srv, req, "GET", start_ns);
        send_json(srv, req, 200, "{\"status\":\"ok\"}", 15, start_ns);
        return 0;
    }
    if (path_is(p, plen, "/readyz")) {
        if (!get)
            return method_not_allowed(srv, req, "GET", start_ns);
        handle_readyz(srv, req, start_ns);
        return 0;
    }
    if (path_is(p, plen, "/metrics")) {
        if (!get)
            return method_not_allowed(srv, req, "GET", start_ns);
        handle_metrics(srv, req, start_ns);
        return 0;
    }

    /* /v1/<plural>[/<id>[/<sub>]] */
    cd_kind_t kind;
    const char *rest;
    size_t rlen;
    if (plen >= 13 && memcmp(p, "/v1/campaigns", 13) == 0 && (plen == 13 || p[13] == '/')) {
        kind = CD_KIND_CAMPAIGN;
        rest = p + 13;
        rlen = plen - 13;
    } else if (plen >= 14 && memcmp(p, "/v1/publishers", 14) == 0 && (plen == 14 || p[14] == '/')) {
        kind = CD_KIND_PUBLISHER;
        rest = p + 14;
        rlen = plen - 14;
    } else if (path_is(p, plen, "/v1/reports")) {
        if (authenticate(srv, req, start_ns) == CD_ACCESS_NONE)
            return 0;
        if (!get)
            return method_not_allowed(srv, req, "GET", start_ns);
        handle_report(srv, req, start_ns);
        return 0;
    } else {
        send_error(srv, req, 404,
                   "path: expected /v1/campaigns, /v1/publishers, /v1/reports, /healthz, /readyz or /metrics", NULL,
                   NULL, start_ns);
        return 0;
    }

    /* Authentication before anything else on /v1, so unauthenticated callers learn nothing. */
    cd_access_t access = authenticate(srv, req, start_ns);
    if (access == CD_ACCESS_NONE)
        return 0;

    if (rlen == 0 || (rlen == 1 && rest[0] == '/')) {
        if (!get)
            return method_not_allowed(srv, req, "GET", start_ns);
        handle_list(srv, req, kind, start_ns);
        return 0;
    }
    rest++;
    rlen--;
    const char *slash = memchr(rest, '/', rlen);
    size_t idlen = slash ? (size_t)(slash - rest) : rlen;
    sub_t sub = SUB_NONE;
    if (slash != NULL) {
        const char *s = slash + 1;
        size_t slen = rlen - idlen - 1;
        if (kind == CD_KIND_CAMPAIGN && path_is(s, slen, "budget"))
            sub = SUB_BUDGET;
        else if (kind == CD_KIND_CAMPAIGN && path_is(s, slen, "pause"))
            sub = SUB_PAUSE;
        else if (kind == CD_KIND_CAMPAIGN && path_is(s, slen, "resume"))
            sub = SUB_RESUME;
        else {
            send_error(srv, req, 404,
                       kind == CD_KIND_CAMPAIGN ? "path: expected /v1/campaigns/{id}[/budget|/pause|/resume]"
                                                : "path: expected /v1/publishers/{id}",
                       NULL, NULL, start_ns);
            return 0;
        }
    }
    if (!cd_id_valid(rest, idlen)) {
        cd_verrs_t errs = {0};
        cd_verrs_add(&errs, "id", "an id in the path: 1 to 64 characters from A-Z a-z 0-9 . _ : -");
        send_400(srv, req, &errs, start_ns);
        return 0;
    }
    char id[CD_ID_MAX + 1];
    memcpy(id, rest, idlen);
    id[idlen] = '\0';

    bool write;
    if (sub != SUB_NONE) {
        if (!method_is(req, "POST"))
            return method_not_allowed(srv, req, "POST", start_ns);
        write = true;
    } else if (get) {
        write = false;
    } else if (method_is(req, "PUT") || method_is(req, "DELETE")) {
        write = true;
    } else {
        return method_not_allowed(srv, req, "GET, PUT, DELETE", start_ns);
    }
    if (write && access != CD_ACCESS_WRITE) {
        send_error(srv, req, 403, "authorization: this token may only read", NULL, NULL, start_ns);
        return 0;
    }
    if (!write) {
        handle_get(srv, req, kind, id, start_ns);
        return 0;
    }
    handle_write(srv, req, kind, id, sub, start_ns);
    return 0;
}

void cd_http_register(cd_server_t *srv, h2o_pathconf_t *pathconf)
{
    cd_handler_t *h = (cd_handler_t *)h2o_create_handler(pathconf, sizeof(*h));
    h->srv = srv;
    h->super.on_req = on_req;
}

void cd_http_on_reply(h2o_multithread_receiver_t *rx, h2o_linklist_t *messages)
{
    on_reply(rx, messages);
}
