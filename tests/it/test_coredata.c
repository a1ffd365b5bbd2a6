/* LABELS: it;redis;kafka;coredata */
/*
 * test_coredata.c: adtrack-coredata as operators and subscribers see it, against a real
 * redis-server and a Kafka-protocol cluster (adtrack-devstream):
 *  - every API error path over HTTP: 400 naming each bad field, 401 (+ WWW-Authenticate),
 *    403, 404, 405, 409, 413;
 *  - the file store round trip, also across a restart (data and versions survive);
 *  - fan-out: two Redis pub/sub subscribers written here (hiredis) and one reader of
 *    adtrack.coredata.changes receive every change in version order; a subscriber that was
 *    disconnected during changes catches up by its resync;
 *  - a Redis restart (stop, change, start a new server on the same port) loses no change;
 *  - an older version applied directly through the compare-and-set script is ignored;
 *  - the updates feed: valid updates are applied, invalid ones land on the rejected topic.
 * Every test uses its own id prefix and flushes Redis first, so tests share one cluster.
 * All waits are polls with generous deadlines (the CI box has 2 shared cores).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <bson/bson.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "at_common.h"
#include "at_test_support.h"
#include "cd_fanout.h"

#define ADMIN "it-admin-token"
#define READER "it-read-token"
#define CHANGES "adtrack.coredata.changes"
#define UPDATES "adtrack.coredata.updates"
#define REJECTED "adtrack.events.rejected"

static ts_devstream_t ds;
static ts_proc_t redis_proc;
static int redis_port;
static char redis_addr[64];

/* Children a test started (pids): killed by the per-test teardown even when an assertion
 * failed, so no child outlives its test (and keeps ctest's output pipe open). */
static pid_t live[8];

static void live_add(pid_t pid)
{
    for (size_t i = 0; i < AT_ARRAY_LEN(live); i++)
        if (live[i] == 0) {
            live[i] = pid;
            return;
        }
}

static void live_del(pid_t pid)
{
    for (size_t i = 0; i < AT_ARRAY_LEN(live); i++)
        if (live[i] == pid)
            live[i] = 0;
}

static int test_teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < AT_ARRAY_LEN(live); i++) {
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
        }
        live[i] = 0;
    }
    return 0;
}

/* ---- redis-server on a fixed port (so it can be restarted on the same one) ---- */

static int redis_start_on(int port)
{
    char p[16];
    char *dir = ts_tmpdir("cd-redis");
    snprintf(p, sizeof(p), "%d", port);
    char *argv[] = {"redis-server", "--port", p,       "--bind", "127.0.0.1",  "--save",  "",
                    "--appendonly", "no",     "--dir", dir,      "--loglevel", "warning", NULL};
    int rc = ts_spawn(&redis_proc, argv, NULL, false, 0);
    free(dir);
    if (rc != 0)
        return -1;
    return ts_wait_port(port, 15000);
}

static void redis_stop(void)
{
    ts_signal(&redis_proc, SIGKILL);
    ts_wait(&redis_proc, 5000, NULL);
    ts_kill(&redis_proc);
}

static redisContext *rconn(void)
{
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    assert_non_null(c);
    assert_int_equal(c->err, 0);
    return c;
}

static void redis_flush(void)
{
    redisContext *c = rconn();
    freeReplyObject(redisCommand(c, "FLUSHALL"));
    redisFree(c);
}

/* HGET adtrack:<kind>:<id> version, or -1 (absent / Redis down). */
static int64_t redis_version(const char *kind, const char *id)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    int64_t v = -1;
    if (c == NULL || c->err) {
        if (c)
            redisFree(c);
        return -1;
    }
    redisReply *r = redisCommand(c, "HGET adtrack:%s:%s version", kind, id);
    if (r != NULL && r->type == REDIS_REPLY_STRING)
        v = strtoll(r->str, NULL, 10);
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return v;
}

/* ---- the coredata process ---- */

typedef struct cdp_s {
    ts_proc_t proc;
    int port;
    char *dir;
} cdp_t;

static void cd_start(cdp_t *c, const char *dir, const char *const *extra)
{
    char listen[32];
    char *bin = ts_bin("adtrack-coredata");
    c->port = ts_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", c->port);
    if (c->dir == NULL)
        c->dir = dir ? strdup(dir) : ts_tmpdir("coredata");
    const char *argv[40] = {bin,
                            "--listen",
                            listen,
                            "--admin-token",
                            ADMIN,
                            "--read-token",
                            READER,
                            "--data-dir",
                            c->dir,
                            "--redis",
                            redis_addr,
                            "--brokers",
                            ds.bootstraps,
                            "--redis-timeout-ms",
                            "500",
                            "--kafka-timeout-ms",
                            "5000",
                            "--log-level",
                            "warn",
                            "--body-max-bytes",
                            "4096",
                            "--kafka-prop",
                            "session.timeout.ms=6000"};
    size_t n = 23;
    for (size_t i = 0; extra != NULL && extra[i] != NULL && n < 39; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    assert_int_equal(ts_spawn(&c->proc, (char *const *)argv, NULL, false, 0), 0);
    live_add(c->proc.pid);
    free(bin);
    assert_int_equal(ts_wait_port(c->port, 30000), 0);
}

static void cd_stop(cdp_t *c, bool graceful)
{
    pid_t pid = c->proc.pid;
    if (graceful) {
        int status = -1;
        ts_signal(&c->proc, SIGTERM);
        assert_int_equal(ts_wait(&c->proc, 20000, &status), 0);
        live_del(pid); /* reaped */
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    live_del(pid);
    ts_kill(&c->proc);
}

static void cd_free(cdp_t *c)
{
    live_del(c->proc.pid);
    ts_kill(&c->proc);
    free(c->dir);
    c->dir = NULL;
}

/* One API call. @p token may be NULL; @p extra more header lines ("Name: v\r\n"). */
static int api(cdp_t *c, const char *method, const char *path, const char *token, const char *extra, const char *body,
               ts_http_resp_t *r)
{
    char hdr[1024];
    snprintf(hdr, sizeof(hdr), "%s%s%s%s", token ? "Authorization: Bearer " : "", token ? token : "",
             token ? "\r\n" : "", extra ? extra : "");
    memset(r, 0, sizeof(*r));
    assert_int_equal(ts_http(c->port, method, path, hdr, body, body ? strlen(body) : 0, r, 30000), 0);
    return r->status;
}

static int64_t body_version(const ts_http_resp_t *r)
{
    bson_t *b = bson_new_from_json((const uint8_t *)r->body, (ssize_t)r->body_len, NULL);
    int64_t v = -1;
    bson_iter_t it;
    if (b != NULL && bson_iter_init_find(&it, b, "version"))
        v = bson_iter_as_int64(&it);
    if (b)
        bson_destroy(b);
    return v;
}

static bool body_has_field_error(const ts_http_resp_t *r, const char *field)
{
    char needle[128];
    snprintf(needle, sizeof(needle), "\"field\" : \"%s\"", field);
    return strstr(r->body, needle) != NULL;
}

static char *campaign_json(const char *advertiser, int64_t budget, const char *publisher)
{
    char *buf = malloc(1024);
    snprintf(buf, 1024,
             "{\"advertiser\":\"%s\",\"name\":\"Spring sale\",\"start\":\"2026-11-01T00:00:00Z\","
             "\"end\":\"2026-12-31T23:59:59Z\",\"budget_micros\":%lld,\"pricing\":\"cpm\",\"price_micros\":2500000,"
             "\"publishers\":[\"%s\"],\"destinations\":[\"https://acme.example/spring\"]}",
             advertiser, (long long)budget, publisher);
    return buf;
}

/* PUTs a campaign; returns its new version. */
static int64_t put_campaign(cdp_t *c, const char *id, int64_t budget)
{
    char path[128];
    ts_http_resp_t r;
    char *body = campaign_json("adv-1", budget, "pub-1");
    snprintf(path, sizeof(path), "/v1/campaigns/%s", id);
    int st = api(c, "PUT", path, ADMIN, NULL, body, &r);
    if (st != 200 && st != 201)
        fail_msg("PUT %s: %d %s", path, st, r.body);
    int64_t v = body_version(&r);
    ts_http_resp_free(&r);
    free(body);
    return v;
}

static int64_t put_publisher(cdp_t *c, const char *id, const char *status)
{
    char path[128], body[256];
    ts_http_resp_t r;
    snprintf(path, sizeof(path), "/v1/publishers/%s", id);
    snprintf(body, sizeof(body), "{\"name\":\"Daily News\",\"domain\":\"news.example\",\"status\":\"%s\"}", status);
    int st = api(c, "PUT", path, ADMIN, NULL, body, &r);
    if (st != 200 && st != 201)
        fail_msg("PUT %s: %d %s", path, st, r.body);
    int64_t v = body_version(&r);
    ts_http_resp_free(&r);
    return v;
}

/* Waits until /readyz reports the fan-out idle (everything in Redis and acknowledged by Kafka). */
static void wait_fanout_idle(cdp_t *c, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    char last[512] = "";
    while (ts_now_ms() < deadline) {
        ts_http_resp_t r;
        memset(&r, 0, sizeof(r));
        if (ts_http(c->port, "GET", "/readyz", NULL, NULL, 0, &r, 5000) == 0) {
            snprintf(last, sizeof(last), "%s", r.body ? r.body : "");
            bool idle = r.body && strstr(r.body, "\"fanout_idle\" : true");
            ts_http_resp_free(&r);
            if (idle)
                return;
        }
        usleep(50 * 1000);
    }
    fail_msg("fan-out not idle after %d ms: %s", timeout_ms, last);
}

/* ---- a Redis subscriber as the contract describes one (subscribe, then resync) ---- */

#define SUB_MAX_KEYS 256
#define SUB_MAX_RECV 4096

typedef struct sub_s {
    pthread_t tid;
    char prefix[32];
    atomic_bool stop;
    atomic_bool offline; /* asked to stay disconnected */
    atomic_int sessions; /* completed subscribe+resync rounds */
    pthread_mutex_t mu;
    char keys[SUB_MAX_KEYS][96];
    int64_t vers[SUB_MAX_KEYS];
    size_t nkeys;
    int64_t recv[SUB_MAX_RECV]; /* versions of pub/sub messages, in arrival order */
    int recv_session[SUB_MAX_RECV];
    size_t nrecv;
    int64_t stale_ignored;
} sub_t;

/* Applies (key, version) by the subscriber rule; returns true when it moved the entry. */
static bool sub_apply(sub_t *s, const char *key, int64_t v)
{
    for (size_t i = 0; i < s->nkeys; i++) {
        if (strcmp(s->keys[i], key) == 0) {
            if (v <= s->vers[i]) {
                s->stale_ignored++;
                return false;
            }
            s->vers[i] = v;
            return true;
        }
    }
    if (s->nkeys < SUB_MAX_KEYS) {
        snprintf(s->keys[s->nkeys], sizeof(s->keys[0]), "%s", key);
        s->vers[s->nkeys++] = v;
    }
    return true;
}

static int64_t sub_get(sub_t *s, const char *key)
{
    int64_t v = -1;
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->nkeys; i++)
        if (strcmp(s->keys[i], key) == 0)
            v = s->vers[i];
    pthread_mutex_unlock(&s->mu);
    return v;
}

/* Reads one reply with a timeout: 1 got one, 0 timeout, -1 connection error. */
static int sub_read(redisContext *c, redisReply **out, int timeout_ms)
{
    void *r = NULL;
    if (redisGetReplyFromReader(c, &r) != REDIS_OK)
        return -1;
    if (r == NULL) {
        struct pollfd p = {.fd = c->fd, .events = POLLIN};
        int n = poll(&p, 1, timeout_ms);
        if (n <= 0)
            return 0;
        if (redisBufferRead(c) != REDIS_OK || redisGetReplyFromReader(c, &r) != REDIS_OK)
            return -1;
        if (r == NULL)
            return 0;
    }
    *out = r;
    return 1;
}

static void sub_handle_message(sub_t *s, const char *payload, size_t len, int session)
{
    bson_t *b = bson_new_from_json((const uint8_t *)payload, (ssize_t)len, NULL);
    bson_iter_t it;
    char kind[16] = "", id[80] = "";
    int64_t v = -1;
    if (b == NULL)
        return;
    if (bson_iter_init_find(&it, b, "kind") && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(kind, sizeof(kind), "%s", bson_iter_utf8(&it, NULL));
    if (bson_iter_init_find(&it, b, "id") && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(id, sizeof(id), "%s", bson_iter_utf8(&it, NULL));
    if (bson_iter_init_find(&it, b, "version"))
        v = bson_iter_as_int64(&it);
    bson_destroy(b);
    if (strncmp(id, s->prefix, strlen(s->prefix)) != 0)
        return;
    char key[96];
    snprintf(key, sizeof(key), "%s:%s", kind, id);
    pthread_mutex_lock(&s->mu);
    if (s->nrecv < SUB_MAX_RECV) {
        s->recv_session[s->nrecv] = session;
        s->recv[s->nrecv++] = v;
    }
    sub_apply(s, key, v);
    pthread_mutex_unlock(&s->mu);
}

/* Full resync from Redis over a second connection (a subscribed one cannot run commands). */
static int sub_resync(sub_t *s)
{
    struct timeval tv = {2, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
    if (c == NULL || c->err) {
        if (c)
            redisFree(c);
        return -1;
    }
    int rc = 0;
    const char *kinds[] = {"campaign", "publisher"};
    const char *sets[] = {"adtrack:campaigns", "adtrack:publishers"};
    for (int k = 0; k < 2 && rc == 0; k++) {
        redisReply *m = redisCommand(c, "SMEMBERS %s", sets[k]);
        if (m == NULL || m->type != REDIS_REPLY_ARRAY) {
            rc = -1;
            if (m)
                freeReplyObject(m);
            break;
        }
        for (size_t i = 0; i < m->elements; i++)
            redisAppendCommand(c, "HGET adtrack:%s:%s version", kinds[k], m->element[i]->str);
        for (size_t i = 0; i < m->elements; i++) {
            redisReply *r = NULL;
            if (redisGetReply(c, (void **)&r) != REDIS_OK) {
                rc = -1;
                break;
            }
            if (r->type == REDIS_REPLY_STRING && strncmp(m->element[i]->str, s->prefix, strlen(s->prefix)) == 0) {
                char key[96];
                snprintf(key, sizeof(key), "%s:%s", kinds[k], m->element[i]->str);
                pthread_mutex_lock(&s->mu);
                sub_apply(s, key, strtoll(r->str, NULL, 10));
                pthread_mutex_unlock(&s->mu);
            }
            freeReplyObject(r);
        }
        freeReplyObject(m);
    }
    redisFree(c);
    return rc;
}

static void *sub_main(void *arg)
{
    sub_t *s = arg;
    int session = 0;
    while (!atomic_load(&s->stop)) {
        if (atomic_load(&s->offline)) {
            usleep(20 * 1000);
            continue;
        }
        struct timeval tv = {2, 0};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_port, tv);
        if (c == NULL || c->err) {
            if (c)
                redisFree(c);
            usleep(100 * 1000);
            continue;
        }
        /* Subscribe first, then resync: a change during the resync is never lost. */
        redisReply *r = NULL;
        redisAppendCommand(c, "SUBSCRIBE adtrack:coredata");
        if (redisBufferWrite(c, &(int){0}) != REDIS_OK || sub_read(c, &r, 2000) != 1) {
            redisFree(c);
            usleep(100 * 1000);
            continue;
        }
        freeReplyObject(r);
        session++;
        if (sub_resync(s) != 0) {
            redisFree(c);
            usleep(100 * 1000);
            continue;
        }
        atomic_store(&s->sessions, session);
        while (!atomic_load(&s->stop) && !atomic_load(&s->offline)) {
            r = NULL;
            int rc = sub_read(c, &r, 100);
            if (rc < 0)
                break;
            if (rc == 0)
                continue;
            if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[2]->type == REDIS_REPLY_STRING)
                sub_handle_message(s, r->element[2]->str, r->element[2]->len, session);
            freeReplyObject(r);
        }
        redisFree(c);
    }
    return NULL;
}

static void sub_start(sub_t *s, const char *prefix)
{
    memset(s, 0, sizeof(*s));
    snprintf(s->prefix, sizeof(s->prefix), "%s", prefix);
    pthread_mutex_init(&s->mu, NULL);
    assert_int_equal(pthread_create(&s->tid, NULL, sub_main, s), 0);
}

static void sub_wait_session(sub_t *s, int at_least, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    while (atomic_load(&s->sessions) < at_least && ts_now_ms() < deadline)
        usleep(20 * 1000);
    assert_true(atomic_load(&s->sessions) >= at_least);
}

static void sub_stop(sub_t *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->tid, NULL);
    pthread_mutex_destroy(&s->mu);
}

/* Waits until the subscriber's cache has @p key at @p v. */
static void sub_wait_key(sub_t *s, const char *key, int64_t v, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    while (sub_get(s, key) != v && ts_now_ms() < deadline)
        usleep(10 * 1000);
    if (sub_get(s, key) != v)
        fail_msg("subscriber %s: %s at version %lld, want %lld", s->prefix, key, (long long)sub_get(s, key),
                 (long long)v);
}

/* Every version in @p want[0..n) was received, and within each session in strictly
 * increasing order. */
static void sub_check_order(sub_t *s, const int64_t *want, size_t n)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = 1; i < s->nrecv; i++)
        if (s->recv_session[i] == s->recv_session[i - 1] && s->recv[i] <= s->recv[i - 1])
            fail_msg("pub/sub out of order: version %lld after %lld", (long long)s->recv[i], (long long)s->recv[i - 1]);
    for (size_t j = 0; j < n; j++) {
        bool found = false;
        for (size_t i = 0; i < s->nrecv && !found; i++)
            found = s->recv[i] == want[j];
        if (!found)
            fail_msg("pub/sub subscriber never received version %lld", (long long)want[j]);
    }
    pthread_mutex_unlock(&s->mu);
}

/* ---- the changes topic ---- */

typedef struct kchange_s {
    char key[96];
    int64_t version;
} kchange_t;

/* Reads the changes topic from the beginning; keeps messages whose id starts with @p prefix. */
static size_t read_changes(const char *prefix, size_t expect, kchange_t *out, size_t max)
{
    ts_kmsg_t *msgs = NULL;
    size_t n = 0;
    int64_t deadline = ts_now_ms() + 60000;
    for (;;) {
        long got = ts_kafka_consume_all(ds.bootstraps, CHANGES, 0, 1500, 30000, &msgs);
        assert_true(got >= 0);
        n = 0;
        for (long i = 0; i < got; i++) {
            const char *colon = msgs[i].key ? strchr(msgs[i].key, ':') : NULL;
            if (colon == NULL || strncmp(colon + 1, prefix, strlen(prefix)) != 0 || n >= max)
                continue;
            snprintf(out[n].key, sizeof(out[n].key), "%s", msgs[i].key);
            out[n].version = body_version(&(ts_http_resp_t){.body = msgs[i].value, .body_len = msgs[i].value_len});
            n++;
        }
        ts_kmsgs_free(msgs, got);
        if (n >= expect || ts_now_ms() > deadline)
            return n;
        usleep(200 * 1000);
    }
}

/* ---- tests ---- */

static void test_api__every_error_path(void **state)
{
    (void)state;
    cdp_t c = {0};
    ts_http_resp_t r;
    redis_flush();
    cd_start(&c, NULL, NULL);

    /* 401 without a token, with a wrong one, with another scheme; WWW-Authenticate each time */
    assert_int_equal(api(&c, "GET", "/v1/campaigns", NULL, NULL, NULL, &r), 401);
    char *www = ts_http_header(&r, "www-authenticate");
    assert_non_null(www);
    assert_non_null(strstr(www, "Bearer"));
    free(www);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "GET", "/v1/campaigns/x", "wrong-token", NULL, NULL, &r), 401);
    www = ts_http_header(&r, "www-authenticate");
    assert_non_null(www);
    assert_non_null(strstr(www, "invalid_token"));
    free(www);
    assert_null(strstr(r.body, "wrong-token")); /* never echoed */
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "PUT", "/v1/campaigns/x", NULL, "Authorization: Basic YTpi\r\n", "{}", &r), 401);
    ts_http_resp_free(&r);

    /* 403: a read-only token may read but not write */
    assert_int_equal(api(&c, "GET", "/v1/publishers", READER, NULL, NULL, &r), 200);
    ts_http_resp_free(&r);
    char *body = campaign_json("adv-1", 1000, "pub-1");
    assert_int_equal(api(&c, "PUT", "/v1/campaigns/api-c1", READER, NULL, body, &r), 403);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "POST", "/v1/campaigns/api-c1/pause", READER, NULL, NULL, &r), 403);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "DELETE", "/v1/publishers/p", READER, NULL, NULL, &r), 403);
    ts_http_resp_free(&r);

    /* 400 naming each bad field */
    const char *bad =
        "{\"advertiser\":\"adv 1\",\"name\":\"\",\"status\":\"on\",\"start\":\"2026-12-01T00:00:00Z\","
        "\"end\":\"2026-11-01T00:00:00Z\",\"budget_micros\":-1,\"pricing\":\"cpa\",\"price_micros\":\"2\","
        "\"publishers\":[\"ok\",\"not ok\"],\"destinations\":[\"ftp://x\"],\"colour\":\"red\"}";
    assert_int_equal(api(&c, "PUT", "/v1/campaigns/api-c1", ADMIN, NULL, bad, &r), 400);
    const char *fields[] = {"advertiser",   "name",          "status",          "end",   "budget_micros", "pricing",
                            "price_micros", "publishers[1]", "destinations[0]", "colour"};
    for (size_t i = 0; i < AT_ARRAY_LEN(fields); i++)
        if (!body_has_field_error(&r, fields[i]))
            fail_msg("400 body does not name %s: %s", fields[i], r.body);
    assert_non_null(strstr(r.body, "after start"));
    assert_non_null(strstr(r.body, "\"expected\""));
    ts_http_resp_free(&r);
    /* missing fields, malformed JSON, not an object, id mismatch, bad id in the path */
    assert_int_equal(api(&c, "PUT", "/v1/campaigns/api-c1", ADMIN, NULL, "{\"advertiser\":\"a\"}", &r), 400);
    assert_true(body_has_field_error(&r, "start") && body_has_field_error(&r, "budget_micros"));
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "PUT", "/v1/campaigns/api-c1", ADMIN, NULL, "{\"advertiser\":", &r), 400);
    assert_true(body_has_field_error(&r, "(body)"));
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "PUT", "/v1/campaigns/api-c1", ADMIN, NULL, "[1]", &r), 400);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "PUT", "/v1/publishers/p-1", ADMIN, NULL,
                         "{\"id\":\"p-2\",\"name\":\"n\",\"domain\":\"d.example\"}", &r),
                     400);
    assert_true(body_has_field_error(&r, "id"));
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "GET", "/v1/campaigns/bad%20id", ADMIN, NULL, NULL, &r), 400);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "POST", "/v1/campaigns/api-c1/budget", ADMIN, NULL, "{\"topup_micros\":0}", &r), 400);
    assert_true(body_has_field_error(&r, "topup_micros"));
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "GET", "/v1/campaigns?limit=0", ADMIN, NULL, NULL, &r), 400);
    assert_true(body_has_field_error(&r, "limit"));
    ts_http_resp_free(&r);

    /* 413: over --body-max-bytes (4096) */
    char *big = malloc(6000);
    memset(big, ' ', 5999);
    big[0] = '{';
    big[5998] = '}';
    big[5999] = '\0';
    assert_int_equal(api(&c, "PUT", "/v1/campaigns/api-c1", ADMIN, NULL, big, &r), 413);
    ts_http_resp_free(&r);
    free(big);

    /* 404 and 405 */
    assert_int_equal(api(&c, "GET", "/v1/campaigns/api-none", ADMIN, NULL, NULL, &r), 404);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "POST", "/v1/campaigns/api-none/pause", ADMIN, NULL, NULL, &r), 404);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "GET", "/v1/advertisers", ADMIN, NULL, NULL, &r), 404);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "POST", "/v1/campaigns/api-c1", ADMIN, NULL, "{}", &r), 405);
    ts_http_resp_free(&r);

    /* 409: a stale If-Match or body version; "0" = must not exist yet */
    assert_int_equal(api(&c, "PUT", "/v1/campaigns/api-c1", ADMIN, "If-Match: \"0\"\r\n", body, &r), 201);
    char *etag = ts_http_header(&r, "etag");
    assert_non_null(etag);
    int64_t v1 = body_version(&r);
    char want[32];
    snprintf(want, sizeof(want), "\"%lld\"", (long long)v1);
    assert_string_equal(etag, want);
    free(etag);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "PUT", "/v1/campaigns/api-c1", ADMIN, "If-Match: \"0\"\r\n", body, &r), 409);
    assert_int_equal(body_version(&r), -1); /* the error body has the current doc under "current" */
    assert_non_null(strstr(r.body, "current"));
    ts_http_resp_free(&r);
    char hdr[64];
    snprintf(hdr, sizeof(hdr), "If-Match: \"%lld\"\r\n", (long long)v1);
    assert_int_equal(api(&c, "POST", "/v1/campaigns/api-c1/pause", ADMIN, hdr, NULL, &r), 200);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "POST", "/v1/campaigns/api-c1/resume", ADMIN, hdr, NULL, &r), 409); /* stale now */
    ts_http_resp_free(&r);
    char vb[64];
    snprintf(vb, sizeof(vb), "{\"topup_micros\":5,\"version\":%lld}", (long long)v1);
    assert_int_equal(api(&c, "POST", "/v1/campaigns/api-c1/budget", ADMIN, NULL, vb, &r), 409);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "PUT", "/v1/campaigns/api-c1", ADMIN, "If-Match: abc\r\n", body, &r), 400);
    assert_true(body_has_field_error(&r, "If-Match"));
    ts_http_resp_free(&r);

    /* health endpoints need no token */
    assert_int_equal(api(&c, "GET", "/healthz", NULL, NULL, NULL, &r), 200);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "GET", "/metrics", NULL, NULL, NULL, &r), 200);
    assert_non_null(strstr(r.body, "adtrack_http_requests_total{code=\"409\"}"));
    assert_null(strstr(r.body, ADMIN));
    ts_http_resp_free(&r);
    free(body);
    cd_stop(&c, true);
    cd_free(&c);
}

static void test_store__file_round_trip_survives_restart(void **state)
{
    (void)state;
    cdp_t c = {0};
    ts_http_resp_t r;
    redis_flush();
    cd_start(&c, NULL, NULL);
    int64_t vp = put_publisher(&c, "rt-p1", "active");
    int64_t vc = put_campaign(&c, "rt-c1", 1000);
    put_campaign(&c, "rt-c2", 2000);
    assert_int_equal(api(&c, "POST", "/v1/campaigns/rt-c1/budget", ADMIN, NULL, "{\"set_micros\":777}", &r), 200);
    int64_t vb = body_version(&r);
    assert_true(vb > vc);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "DELETE", "/v1/campaigns/rt-c2", ADMIN, NULL, NULL, &r), 200);
    int64_t vd = body_version(&r);
    ts_http_resp_free(&r);
    cd_stop(&c, true);

    /* Same data dir, fresh Redis: everything (and every version) comes from the store. */
    redis_flush();
    cd_start(&c, NULL, NULL);
    assert_int_equal(api(&c, "GET", "/v1/campaigns/rt-c1", READER, NULL, NULL, &r), 200);
    assert_int_equal(body_version(&r), vb);
    assert_non_null(strstr(r.body, "777"));
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "GET", "/v1/publishers/rt-p1", READER, NULL, NULL, &r), 200);
    assert_int_equal(body_version(&r), vp);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "GET", "/v1/campaigns/rt-c2", READER, NULL, NULL, &r), 404); /* still deleted */
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "GET", "/v1/campaigns?limit=1", READER, NULL, NULL, &r), 200);
    assert_non_null(strstr(r.body, "rt-c1"));
    ts_http_resp_free(&r);
    /* the counter continues above everything stored */
    assert_true(put_campaign(&c, "rt-c3", 1) > vd);
    /* and Redis was refilled from the store, tombstone included */
    wait_fanout_idle(&c, 30000);
    assert_int_equal(redis_version("campaign", "rt-c1"), vb);
    assert_int_equal(redis_version("campaign", "rt-c2"), vd);
    cd_stop(&c, true);
    cd_free(&c);
}

static void test_fanout__three_subscribers_in_order_and_catch_up(void **state)
{
    (void)state;
    cdp_t c = {0};
    sub_t a, b;
    int64_t versions[200];
    size_t nv = 0;
    redis_flush();
    cd_start(&c, NULL, NULL);
    sub_start(&a, "fo-");
    sub_start(&b, "fo-");
    sub_wait_session(&a, 1, 20000);
    sub_wait_session(&b, 1, 20000);

    char id[32], path[64];
    ts_http_resp_t r;
    for (int i = 0; i < 30; i++) {
        snprintf(id, sizeof(id), "fo-c%d", i % 5);
        versions[nv++] = put_campaign(&c, id, 1000 + i);
        if (i % 3 == 0) {
            snprintf(id, sizeof(id), "fo-p%d", i % 4);
            versions[nv++] = put_publisher(&c, id, i % 2 ? "blocked" : "active");
        }
        if (i == 12) {
            /* b goes away while changes keep coming */
            atomic_store(&b.offline, true);
        }
    }
    assert_int_equal(api(&c, "POST", "/v1/campaigns/fo-c1/pause", ADMIN, NULL, NULL, &r), 200);
    versions[nv++] = body_version(&r);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "POST", "/v1/campaigns/fo-c2/budget", ADMIN, NULL, "{\"topup_micros\":5}", &r), 200);
    versions[nv++] = body_version(&r);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "DELETE", "/v1/publishers/fo-p0", ADMIN, NULL, NULL, &r), 200);
    versions[nv++] = body_version(&r);
    ts_http_resp_free(&r);

    /* Truth: the latest version of every entity, from the API. */
    const char *keys[] = {"campaign:fo-c0",  "campaign:fo-c1",  "campaign:fo-c2",  "campaign:fo-c3", "campaign:fo-c4",
                          "publisher:fo-p0", "publisher:fo-p1", "publisher:fo-p2", "publisher:fo-p3"};
    int64_t truth[AT_ARRAY_LEN(keys)];
    for (size_t k = 0; k < AT_ARRAY_LEN(keys); k++) {
        int64_t best = -1;
        /* the highest version the API returned for this key */
        const char *kid = strchr(keys[k], ':') + 1;
        bool pub = keys[k][0] == 'p';
        snprintf(path, sizeof(path), "/v1/%s/%s", pub ? "publishers" : "campaigns", kid);
        int st = api(&c, "GET", path, READER, NULL, NULL, &r);
        if (st == 200)
            best = body_version(&r);
        ts_http_resp_free(&r);
        truth[k] = best;
    }
    truth[5] = versions[nv - 1]; /* fo-p0 was deleted: its tombstone version */

    /* a: connected throughout -> every change, in version order */
    for (size_t k = 0; k < AT_ARRAY_LEN(keys); k++)
        sub_wait_key(&a, keys[k], truth[k], 30000);
    sub_check_order(&a, versions, nv);

    /* b: reconnects, resyncs from Redis, and ends with the same state */
    atomic_store(&b.offline, false);
    sub_wait_session(&b, 2, 30000);
    for (size_t k = 0; k < AT_ARRAY_LEN(keys); k++)
        sub_wait_key(&b, keys[k], truth[k], 30000);
    sub_check_order(&b, versions, 0);

    /* The changes topic: every change, per key in version order, latest = truth. */
    kchange_t *kc = calloc(1024, sizeof(*kc));
    size_t nk = read_changes("fo-", nv, kc, 1024);
    for (size_t j = 0; j < nv; j++) {
        bool found = false;
        for (size_t i = 0; i < nk && !found; i++)
            found = kc[i].version == versions[j];
        if (!found)
            fail_msg("changes topic lacks version %lld (%zu messages)", (long long)versions[j], nk);
    }
    for (size_t k = 0; k < AT_ARRAY_LEN(keys); k++) {
        int64_t last = -1;
        for (size_t i = 0; i < nk; i++) {
            if (strcmp(kc[i].key, keys[k]) != 0)
                continue;
            if (kc[i].version < last)
                fail_msg("changes topic: %s version %lld after %lld", keys[k], (long long)kc[i].version,
                         (long long)last);
            last = kc[i].version;
        }
        assert_int_equal(last, truth[k]);
    }
    /* The budget top-up announced a replenishment after its campaign change. */
    bool replenished = false;
    for (size_t i = 0; i < nk; i++)
        replenished |= strcmp(kc[i].key, "budget:fo-c2") == 0;
    assert_true(replenished);
    free(kc);
    sub_stop(&a);
    sub_stop(&b);
    cd_stop(&c, true);
    cd_free(&c);
}

static void test_fanout__redis_restart_loses_no_change(void **state)
{
    (void)state;
    cdp_t c = {0};
    sub_t a;
    redis_flush();
    cd_start(&c, NULL, NULL);
    sub_start(&a, "rr-");
    sub_wait_session(&a, 1, 20000);
    put_campaign(&c, "rr-c1", 10);
    put_publisher(&c, "rr-p1", "active");
    wait_fanout_idle(&c, 30000);

    redis_stop();
    /* Changes while Redis is down are accepted: the store has them. */
    int64_t v1 = put_campaign(&c, "rr-c1", 20);
    int64_t v2 = put_campaign(&c, "rr-c2", 30);
    int64_t v3 = put_publisher(&c, "rr-p1", "blocked");
    ts_http_resp_t r;
    assert_int_equal(api(&c, "DELETE", "/v1/campaigns/rr-c1", ADMIN, NULL, NULL, &r), 200);
    int64_t v4 = body_version(&r);
    ts_http_resp_free(&r);
    assert_int_equal(api(&c, "GET", "/readyz", NULL, NULL, NULL, &r), 200);
    assert_non_null(strstr(r.body, "\"redis\" : \"down\""));
    ts_http_resp_free(&r);
    assert_true(v4 > v1);

    /* A new, empty redis-server on the same port. */
    assert_int_equal(redis_start_on(redis_port), 0);
    int64_t deadline = ts_now_ms() + 30000;
    while (ts_now_ms() < deadline &&
           !(redis_version("campaign", "rr-c1") == v4 && redis_version("campaign", "rr-c2") == v2 &&
             redis_version("publisher", "rr-p1") == v3))
        usleep(50 * 1000);
    assert_int_equal(redis_version("campaign", "rr-c1"), v4);
    assert_int_equal(redis_version("campaign", "rr-c2"), v2);
    assert_int_equal(redis_version("publisher", "rr-p1"), v3);
    redisContext *rc = rconn();
    redisReply *rep = redisCommand(rc, "GET adtrack:coredata:version");
    assert_int_equal(rep->type, REDIS_REPLY_STRING);
    assert_true(strtoll(rep->str, NULL, 10) >= v4);
    freeReplyObject(rep);
    redisFree(rc);
    /* and the subscriber, which lost its connection too, caught up by its resync */
    sub_wait_key(&a, "campaign:rr-c1", v4, 30000);
    sub_wait_key(&a, "campaign:rr-c2", v2, 30000);
    sub_wait_key(&a, "publisher:rr-p1", v3, 30000);
    sub_stop(&a);
    cd_stop(&c, true);
    cd_free(&c);
}

/* An idle coredata (no change after the restart) still notices a new, empty Redis on the
 * same port and writes its state there: readers do not wait for the next admin write. */
static void test_fanout__idle_redis_restart_is_resynced_without_a_write(void **state)
{
    (void)state;
    cdp_t c = {0};
    redis_flush();
    cd_start(&c, NULL, NULL);
    int64_t v1 = put_campaign(&c, "ir-c1", 10);
    int64_t v2 = put_publisher(&c, "ir-p1", "active");
    wait_fanout_idle(&c, 30000);
    assert_int_equal(redis_version("campaign", "ir-c1"), v1);

    redis_stop();
    assert_int_equal(redis_start_on(redis_port), 0);
    int64_t deadline = ts_now_ms() + 30000;
    while (ts_now_ms() < deadline &&
           !(redis_version("campaign", "ir-c1") == v1 && redis_version("publisher", "ir-p1") == v2))
        usleep(50 * 1000);
    assert_int_equal(redis_version("campaign", "ir-c1"), v1);
    assert_int_equal(redis_version("publisher", "ir-p1"), v2);
    cd_stop(&c, true);
    cd_free(&c);
}

static void test_cas__older_version_never_regresses(void **state)
{
    (void)state;
    cdp_t c = {0};
    sub_t a;
    redis_flush();
    cd_start(&c, NULL, NULL);
    sub_start(&a, "cas-");
    sub_wait_session(&a, 1, 20000);
    int64_t v1 = put_campaign(&c, "cas-c1", 10);
    int64_t v2 = put_campaign(&c, "cas-c1", 20);
    wait_fanout_idle(&c, 30000);
    sub_wait_key(&a, "campaign:cas-c1", v2, 30000);
    size_t before = a.nrecv;

    /* Deliver v1 again, late, straight through the script. */
    redisContext *rc = rconn();
    char ver[32];
    snprintf(ver, sizeof(ver), "%lld", (long long)v1);
    const char *msg = "{\"kind\":\"campaign\",\"id\":\"cas-c1\",\"version\":1,\"op\":\"put\"}";
    redisReply *rep = redisCommand(rc,
                                   "EVAL %s 5 adtrack:campaign:cas-c1 adtrack:campaigns adtrack:coredata:version "
                                   "adtrack:spend:cas-c1 adtrack:exhausted:cas-c1 %s cas-c1 0 %s adtrack:coredata "
                                   "%s 1 10 0 0 1",
                                   cd_fanout_cas_script, ver, "{\"old\":true}", msg);
    assert_non_null(rep);
    assert_int_equal(rep->type, REDIS_REPLY_ARRAY);
    assert_int_equal(rep->element[0]->integer, 0); /* not applied */
    freeReplyObject(rep);
    assert_int_equal(redis_version("campaign", "cas-c1"), v2);
    rep = redisCommand(rc, "HGET adtrack:campaign:cas-c1 doc");
    assert_null(strstr(rep->str, "\"old\""));
    freeReplyObject(rep);
    /* A tombstone with an older version cannot delete it either. */
    rep = redisCommand(rc,
                       "EVAL %s 5 adtrack:campaign:cas-c1 adtrack:campaigns adtrack:coredata:version "
                       "adtrack:spend:cas-c1 adtrack:exhausted:cas-c1 %s cas-c1 1 '' adtrack:coredata %s 1 0 0 0 1",
                       cd_fanout_cas_script, ver, msg);
    assert_int_equal(rep->element[0]->integer, 0);
    freeReplyObject(rep);
    redisFree(rc);
    usleep(300 * 1000);
    pthread_mutex_lock(&a.mu);
    assert_int_equal(a.nrecv, before); /* nothing was published */
    pthread_mutex_unlock(&a.mu);
    assert_int_equal(sub_get(&a, "campaign:cas-c1"), v2);
    /* the subscriber rule itself: an older message changes nothing */
    pthread_mutex_lock(&a.mu);
    assert_false(sub_apply(&a, "campaign:cas-c1", v1));
    pthread_mutex_unlock(&a.mu);
    assert_int_equal(sub_get(&a, "campaign:cas-c1"), v2);
    sub_stop(&a);
    cd_stop(&c, true);
    cd_free(&c);
}

/* GET http://127.0.0.1:@p port/metrics with curl (the enricher answers chunked). Heap text or NULL. */
static char *fetch_metrics(int port)
{
    char url[64];
    char *out = NULL;
    int status = 0;
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/metrics", port);
    char *argv[] = {"curl", "-s", "--max-time", "5", url, NULL};
    if (ts_run(argv, NULL, 10000, &out, NULL, &status) != 0)
        return NULL;
    return out;
}

/* Value of the Prometheus series @p series ("name{labels}") in @p text, or -1. */
static double metric(const char *text, const char *series)
{
    const char *p = text;
    size_t n = strlen(series);
    while ((p = strstr(p, series)) != NULL) {
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtod(p + n + 1, NULL);
        p += n;
    }
    return -1;
}

static void test_fanout__real_enricher_follows_changes(void **state)
{
    (void)state;
    char *bin = ts_bin("adtrack-enricher");
    if (access(bin, X_OK) != 0) {
        free(bin);
        skip(); /* the enricher is built by another part of the tree */
    }
    cdp_t c = {0};
    ts_proc_t enr = {0};
    redis_flush();
    cd_start(&c, NULL, NULL);
    put_campaign(&c, "enr-c0", 100); /* known before the enricher starts: its resync must load it */
    wait_fanout_idle(&c, 30000);

    char listen[32], *dir = ts_tmpdir("cd-enricher");
    int port = ts_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    char *argv[] = {bin,          "--listen", listen,    "--redis",        redis_addr,    "--brokers", ds.bootstraps,
                    "--data-dir", dir,        "--group", "cd-it-enricher", "--log-level", "warn",      NULL};
    assert_int_equal(ts_spawn(&enr, argv, NULL, false, 0), 0);
    live_add(enr.pid);
    assert_int_equal(ts_wait_port(port, 30000), 0);
    int64_t deadline = ts_now_ms() + 30000;
    double resyncs = -1;
    while (ts_now_ms() < deadline && resyncs < 1) {
        char *m = fetch_metrics(port);
        if (m != NULL)
            resyncs = metric(m, "adtrack_enricher_coredata_resyncs_total");
        free(m);
        usleep(100 * 1000);
    }
    assert_true(resyncs >= 1);

    for (int i = 0; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof(id), "enr-c%d", 1 + i % 4);
        put_campaign(&c, id, 100);
    }
    put_publisher(&c, "enr-p1", "active");
    /* Every change reaches the enricher's cache: 21 applied, 5 campaigns + 1 publisher cached. */
    double applied = -1, camps = -1, pubs = -1;
    deadline = ts_now_ms() + 30000;
    while (ts_now_ms() < deadline) {
        char *m = fetch_metrics(port);
        if (m != NULL) {
            applied = metric(m, "adtrack_enricher_coredata_changes_total{result=\"applied\"}");
            camps = metric(m, "adtrack_enricher_cache_entries{kind=\"campaign\"}");
            pubs = metric(m, "adtrack_enricher_cache_entries{kind=\"publisher\"}");
        }
        free(m);
        if (applied >= 21 && camps >= 5 && pubs >= 1)
            break;
        usleep(100 * 1000);
    }
    if (!(applied >= 21 && camps >= 5 && pubs >= 1))
        fail_msg("enricher: applied %.0f, campaigns %.0f, publishers %.0f", applied, camps, pubs);
    live_del(enr.pid);
    ts_kill(&enr);
    free(dir);
    free(bin);
    cd_stop(&c, true);
    cd_free(&c);
}

static void produce(const char *topic, const char *value)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    assert_int_equal(rd_kafka_conf_set(conf, "bootstrap.servers", ds.bootstraps, errstr, sizeof(errstr)),
                     RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_VALUE((void *)value, strlen(value)), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}

static void test_feed__valid_applied_invalid_rejected(void **state)
{
    (void)state;
    cdp_t c = {0};
    ts_http_resp_t r;
    redis_flush();
    const char *extra[] = {"--group", "cd-it-feed", NULL};
    cd_start(&c, NULL, extra);
    produce(UPDATES, "{\"kind\":\"publisher\",\"op\":\"put\",\"doc\":{\"id\":\"feed-p1\",\"name\":\"Feed News\","
                     "\"domain\":\"feed.example\"}}");
    produce(UPDATES, "{\"kind\":\"publisher\",\"op\":\"put\",\"doc\":{\"id\":\"feed-bad\",\"name\":\"\"}}");
    produce(UPDATES, "feed-garbage {");
    produce(UPDATES, "{\"kind\":\"campaign\",\"op\":\"pause\",\"id\":\"feed-missing\"}");

    int64_t deadline = ts_now_ms() + 90000;
    int st = 0;
    while (ts_now_ms() < deadline) {
        st = api(&c, "GET", "/v1/publishers/feed-p1", READER, NULL, NULL, &r);
        ts_http_resp_free(&r);
        if (st == 200)
            break;
        usleep(100 * 1000);
    }
    assert_int_equal(st, 200);

    /* three rejected records, each with a reason */
    bool saw[3] = {false};
    deadline = ts_now_ms() + 60000;
    while (ts_now_ms() < deadline && !(saw[0] && saw[1] && saw[2])) {
        ts_kmsg_t *msgs = NULL;
        long got = ts_kafka_consume_all(ds.bootstraps, REJECTED, 0, 1000, 20000, &msgs);
        for (long i = 0; i < got; i++) {
            const char *v = msgs[i].value;
            if (strstr(v, "coredata.updates") == NULL)
                continue;
            if (strstr(v, "feed-bad") && strstr(v, "invalid_update") && strstr(v, "doc.name"))
                saw[0] = true;
            if (strstr(v, "feed-garbage") && strstr(v, "malformed_json"))
                saw[1] = true;
            if (strstr(v, "feed-missing") && strstr(v, "not_found"))
                saw[2] = true;
        }
        ts_kmsgs_free(msgs, got);
    }
    assert_true(saw[0]);
    assert_true(saw[1]);
    assert_true(saw[2]);
    cd_stop(&c, true);
    cd_free(&c);
}

static int group_setup(void **state)
{
    (void)state;
    char *bin = ts_bin("adtrack-devstream");
    /* One partition for the changes topic: a single consumer then sees every change in
     * global version order (the recommended production layout, see docs/COREDATA.md). */
    char *argv[] = {bin, "--partitions", "2", "--topic", CHANGES ":1", NULL};
    if (ts_devstream_start_argv(&ds, argv) != 0)
        return -1;
    free(bin);
    redis_port = ts_free_port();
    if (redis_start_on(redis_port) != 0)
        return -1;
    snprintf(redis_addr, sizeof(redis_addr), "127.0.0.1:%d", redis_port);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    redis_stop();
    ts_devstream_stop(&ds);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_api__every_error_path, test_teardown),
        cmocka_unit_test_teardown(test_store__file_round_trip_survives_restart, test_teardown),
        cmocka_unit_test_teardown(test_fanout__three_subscribers_in_order_and_catch_up, test_teardown),
        cmocka_unit_test_teardown(test_fanout__redis_restart_loses_no_change, test_teardown),
        cmocka_unit_test_teardown(test_fanout__idle_redis_restart_is_resynced_without_a_write, test_teardown),
        cmocka_unit_test_teardown(test_cas__older_version_never_regresses, test_teardown),
        cmocka_unit_test_teardown(test_feed__valid_applied_invalid_rejected, test_teardown),
        cmocka_unit_test_teardown(test_fanout__real_enricher_follows_changes, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
