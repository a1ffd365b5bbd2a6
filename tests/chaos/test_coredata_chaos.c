/* LABELS: chaos;kafka;redis;coredata */
/*
 * test_coredata_chaos.c: a stream of admin writes to adtrack-coredata while Redis and Kafka
 * go away and come back (issue: "survive every outage"): every acknowledged write reaches
 * every subscriber afterwards.
 *
 * Real parts: adtrack-devstream (one broker, one partition per topic), a durable
 * redis-server, adtrack-coredata (file store), and adtrack-dashboard as a live subscriber of
 * the adtrack:coredata channel. A writer thread PUTs campaign after campaign (40 of them,
 * each renamed again and again) as fast as coredata answers, recording every 2xx and the
 * version it answered with. Meanwhile: Redis frozen (SIGSTOP) 3 s, Kafka down 4 s, Redis
 * killed and restarted, then Kafka down and Redis frozen at once. Asserted afterwards:
 *  - coredata stayed up, kept acknowledging writes during every outage (its store is the
 *    source of truth), reports its fan-out idle, and exits 0 on SIGTERM;
 *  - Redis (the cache every subscriber reads and resyncs from) holds each campaign at the
 *    version and name of its last acknowledged write;
 *  - the changes topic holds each campaign's last acknowledged version, in version order per
 *    key (intermediate versions may be dropped once a newer one of the same key was
 *    acknowledged: a compacted topic keeps only the latest; their count is reported);
 *  - the dashboard, which missed publications while Redis was away, shows every
 *    campaign's last name.
 *
 * ADTRACK_SOAK=<duration> keeps writing and cycling the outages for that long.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <bson/bson.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "at_common.h"
#include "at_test_coredata.h"
#include "at_test_support.h"

#define NCAMP 40
#define MAXW 400000
#define ADMIN "chaos-admin-token"
#define DASH_TOKEN "chaos-dashboard-token-0123456789"
#define CHANGES "adtrack.coredata.changes"

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int64_t soak_ms(void)
{
    const char *s = getenv("ADTRACK_SOAK");
    if (s == NULL || *s == '\0')
        return 0;
    char *end;
    double v = strtod(s, &end);
    if (*end == 'm')
        v *= 60;
    else if (*end == 'h')
        v *= 3600;
    return (int64_t)(v * 1000);
}

static bool alive(ts_proc_t *p)
{
    int status;
    pid_t r = waitpid(p->pid, &status, WNOHANG);
    if (r == p->pid) {
        fprintf(stderr, "process %d exited: %s %d\n", (int)p->pid, WIFSIGNALED(status) ? "signal" : "status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        p->pid = 0;
    }
    return r == 0;
}

/* The writer: campaign k gets name "chaos-k #seq"; every 2xx is recorded. */
typedef struct ack_s {
    int camp;
    int64_t version;
    uint32_t seq;
} ack_t;

typedef struct writer_s {
    int port;
    pthread_t tid;
    atomic_bool stop;
    atomic_uint_fast64_t acked, failed;
    ack_t *acks; /* the writer's until joined */
    size_t nacks;
    int64_t last_version[NCAMP];
    uint32_t last_seq[NCAMP];
} writer_t;

static int64_t body_version(const char *body)
{
    bson_t *b = body ? bson_new_from_json((const uint8_t *)body, -1, NULL) : NULL;
    int64_t v = -1;
    bson_iter_t it;
    if (b != NULL && bson_iter_init_find(&it, b, "version"))
        v = bson_iter_as_int64(&it);
    if (b != NULL)
        bson_destroy(b);
    return v;
}

static void *writer_main(void *arg)
{
    writer_t *w = arg;
    uint32_t seq = 0;
    while (!atomic_load(&w->stop) && w->nacks < MAXW) {
        int k = (int)(seq % NCAMP);
        char path[64], body[768];
        snprintf(path, sizeof(path), "/v1/campaigns/chaos-%d", k);
        snprintf(body, sizeof(body),
                 "{\"advertiser\":\"adv-chaos\",\"name\":\"chaos-%d #%u\",\"start\":\"2026-01-01T00:00:00Z\","
                 "\"end\":\"2099-01-01T00:00:00Z\",\"budget_micros\":1000000000,\"pricing\":\"cpm\","
                 "\"price_micros\":2000,\"publishers\":[\"pub-1\"],\"destinations\":[\"https://chaos.example/\"]}",
                 k, seq);
        ts_http_resp_t r = {0};
        int rc = ts_http(w->port, "PUT", path, "Authorization: Bearer " ADMIN "\r\n", body, strlen(body), &r, 30000);
        if (rc == 0 && (r.status == 200 || r.status == 201)) {
            int64_t v = body_version(r.body);
            if (v > 0) {
                w->acks[w->nacks++] = (ack_t){k, v, seq};
                w->last_version[k] = v;
                w->last_seq[k] = seq;
                atomic_fetch_add(&w->acked, 1);
            }
        } else {
            atomic_fetch_add(&w->failed, 1);
        }
        ts_http_resp_free(&r);
        seq++;
    }
    return NULL;
}

static bool fanout_idle(int port)
{
    ts_http_resp_t r = {0};
    bool idle = ts_http(port, "GET", "/readyz", NULL, NULL, 0, &r, 5000) == 0 && r.body != NULL &&
                strstr(r.body, "\"fanout_idle\" : true") != NULL;
    ts_http_resp_free(&r);
    return idle;
}

/* Holds @p ms, failing as soon as coredata is gone; returns the writes acknowledged meanwhile. */
static uint64_t hold(ts_proc_t *cd, writer_t *w, int ms)
{
    uint64_t before = atomic_load(&w->acked);
    int64_t end = ts_now_ms() + ms;
    while (ts_now_ms() < end) {
        assert_true(alive(cd));
        sleep_ms(100);
    }
    return atomic_load(&w->acked) - before;
}

static void test_coredata__acknowledged_writes_reach_every_subscriber(void **state)
{
    AT_UNUSED(state);
    ts_devstream_t ds = {0};
    ts_redis_t redis = {0};
    ts_proc_t cd = {0}, dash = {0};
    int64_t soak = soak_ms();

    assert_int_equal(ts_devstream_start(&ds, 1, 1), 0);
    assert_int_equal(ts_redis_start_durable(&redis), 0);
    char raddr[32];
    snprintf(raddr, sizeof(raddr), "127.0.0.1:%d", redis.port);

    char *bin = ts_bin("adtrack-coredata"), *dir = ts_tmpdir("coredata-chaos");
    int port = ts_free_port();
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    char *argv[] = {bin, "--listen", listen, "--admin-token", ADMIN, "--data-dir", dir, "--redis", raddr, "--brokers",
                    ds.bootstraps, "--redis-timeout-ms", "500", "--kafka-timeout-ms", "3000", "--log-level", "warn",
                    NULL};
    assert_int_equal(ts_spawn(&cd, argv, NULL, false, 0), 0);
    assert_int_equal(ts_wait_port(port, 30000), 0);

    char *dbin = ts_bin("adtrack-dashboard");
    int dport = ts_free_port();
    char dlisten[32];
    snprintf(dlisten, sizeof(dlisten), "127.0.0.1:%d", dport);
    char *dargv[] = {dbin, "--listen", dlisten, "--redis", raddr, "--poll-ms", "200", "--redis-timeout-ms", "500",
                     "--log-level", "error", NULL};
    char *denv[] = {"ADTRACK_AUTH_TOKEN=" DASH_TOKEN, NULL};
    assert_int_equal(ts_spawn(&dash, dargv, denv, false, 0), 0);
    assert_int_equal(ts_wait_port(dport, 30000), 0);

    writer_t *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    w->port = port;
    w->acks = calloc(MAXW, sizeof(*w->acks));
    assert_non_null(w->acks);
    assert_int_equal(pthread_create(&w->tid, NULL, writer_main, w), 0);

    int64_t t0 = ts_now_ms();
    int cycles = 0;
    do {
        hold(&cd, w, 2000);
        fprintf(stderr, "coredata-chaos: %5.1f s  redis frozen 3 s\n", (ts_now_ms() - t0) / 1000.0);
        assert_int_equal(ts_signal(&redis.proc, SIGSTOP), 0);
        uint64_t during = hold(&cd, w, 3000);
        assert_int_equal(ts_signal(&redis.proc, SIGCONT), 0);
        assert_true(during > 0);
        hold(&cd, w, 2000);
        fprintf(stderr, "coredata-chaos: %5.1f s  kafka down 4 s\n", (ts_now_ms() - t0) / 1000.0);
        assert_int_equal(ts_devstream_control(&ds, "broker-down all"), 0);
        during = hold(&cd, w, 4000);
        assert_int_equal(ts_devstream_control(&ds, "broker-up all"), 0);
        assert_true(during > 0);
        hold(&cd, w, 2000);
        fprintf(stderr, "coredata-chaos: %5.1f s  redis killed and restarted\n", (ts_now_ms() - t0) / 1000.0);
        assert_int_equal(ts_redis_crash_restart(&redis, 1500), 0);
        hold(&cd, w, 2000);
        fprintf(stderr, "coredata-chaos: %5.1f s  kafka down and redis frozen together, 3 s\n",
                (ts_now_ms() - t0) / 1000.0);
        assert_int_equal(ts_devstream_control(&ds, "broker-down all"), 0);
        assert_int_equal(ts_signal(&redis.proc, SIGSTOP), 0);
        during = hold(&cd, w, 3000);
        assert_int_equal(ts_signal(&redis.proc, SIGCONT), 0);
        assert_int_equal(ts_devstream_control(&ds, "broker-up all"), 0);
        assert_true(during > 0);
        hold(&cd, w, 1000);
        cycles++;
    } while (soak > 0 && ts_now_ms() - t0 < soak);
    atomic_store(&w->stop, true);
    pthread_join(w->tid, NULL);
    int64_t t_last = ts_now_ms();
    fprintf(stderr, "coredata-chaos: %d cycle(s) in %.1f s: %zu writes acknowledged, %llu not (connection or 5xx)\n",
            cycles, (ts_now_ms() - t0) / 1000.0, w->nacks, (unsigned long long)atomic_load(&w->failed));
    assert_true(w->nacks > 100);

    /* The fan-out catches up. */
    int64_t deadline = ts_now_ms() + 120000;
    while (!fanout_idle(port)) {
        assert_true(alive(&cd));
        if (ts_now_ms() > deadline)
            fail_msg("coredata's fan-out not idle 120 s after the last write");
        sleep_ms(200);
    }
    fprintf(stderr, "coredata-chaos: fan-out idle %.1f s after the last write\n", (ts_now_ms() - t_last) / 1000.0);

    /* Redis: each campaign at its last acknowledged version and name. */
    redisContext *rc = ts_redis_connect(redis.port);
    assert_non_null(rc);
    for (int k = 0; k < NCAMP; k++) {
        redisReply *r = redisCommand(rc, "HMGET adtrack:campaign:chaos-%d version doc", k);
        assert_non_null(r);
        assert_int_equal(r->type, REDIS_REPLY_ARRAY);
        char want[64];
        snprintf(want, sizeof(want), "\"chaos-%d #%u\"", k, w->last_seq[k]);
        if (r->element[0]->type != REDIS_REPLY_STRING || atoll(r->element[0]->str) != w->last_version[k] ||
            r->element[1]->type != REDIS_REPLY_STRING || strstr(r->element[1]->str, want) == NULL)
            fail_msg("redis: chaos-%d is at version %s, last acknowledged %lld (%s)", k,
                     r->element[0]->type == REDIS_REPLY_STRING ? r->element[0]->str : "(none)",
                     (long long)w->last_version[k], want);
        freeReplyObject(r);
    }
    redisFree(rc);

    /* The changes topic: every acknowledged version (or, after a backlog overflow, at least
     * each campaign's last), and per key in version order. */
    ts_http_resp_t mr = {0};
    assert_int_equal(ts_http(port, "GET", "/metrics", NULL, NULL, 0, &mr, 5000), 0);
    const char *ov = strstr(mr.body, "adtrack_coredata_kafka_backlog_overflow_total ");
    double overflow = ov ? atof(ov + strlen("adtrack_coredata_kafka_backlog_overflow_total ")) : -1;
    ts_http_resp_free(&mr);
    ts_kmsg_t *msgs = NULL;
    long n = ts_kafka_consume_all(ds.bootstraps, CHANGES, (size_t)NCAMP, 3000, 60000, &msgs);
    assert_true(n >= NCAMP);
    int64_t maxv = 0;
    for (size_t i = 0; i < w->nacks; i++)
        maxv = AT_MAX(maxv, w->acks[i].version);
    uint8_t *seen = calloc((size_t)maxv + 1, 1);
    int64_t last_in_topic[NCAMP] = {0};
    long out_of_order = 0;
    for (long i = 0; i < n; i++) {
        bson_t *b = bson_new_from_json((const uint8_t *)msgs[i].value, (ssize_t)msgs[i].value_len, NULL);
        assert_non_null(b);
        bson_iter_t it;
        const char *id = bson_iter_init_find(&it, b, "id") ? bson_iter_utf8(&it, NULL) : "";
        int64_t v = bson_iter_init_find(&it, b, "version") ? bson_iter_as_int64(&it) : -1;
        if (strncmp(id, "chaos-", 6) == 0) {
            int k = atoi(id + 6);
            if (k >= 0 && k < NCAMP) {
                if (v < last_in_topic[k])
                    out_of_order++;
                last_in_topic[k] = AT_MAX(last_in_topic[k], v);
                if (v >= 0 && v <= maxv)
                    seen[v] = 1;
            }
        }
        bson_destroy(b);
    }
    ts_kmsgs_free(msgs, n);
    long missing = 0, missing_last = 0;
    for (size_t i = 0; i < w->nacks; i++)
        if (!seen[w->acks[i].version])
            missing++;
    for (int k = 0; k < NCAMP; k++)
        if (last_in_topic[k] != w->last_version[k])
            missing_last++;
    fprintf(stderr,
            "coredata-chaos: changes topic: %ld messages; %ld acknowledged versions missing (backlog overflows: %.0f), "
            "%ld campaigns without their last version, %ld out of order\n",
            n, missing, overflow, missing_last, out_of_order);
    free(seen);
    /* A compacting subscriber keeps only each key's latest version, and the fan-out drops a
     * failed version once a newer one of the same key is acknowledged (docs/COREDATA.md,
     * "Changes topic"); so what must hold is each campaign's last acknowledged version, in
     * order. The intermediate versions missed are reported above. */
    assert_int_equal(missing_last, 0);
    assert_int_equal(out_of_order, 0);
    AT_UNUSED(overflow);

    /* The dashboard, a live pub/sub subscriber that lost its connection twice. */
    deadline = ts_now_ms() + 60000;
    int wrong = NCAMP;
    while (wrong > 0) {
        ts_http_resp_t r = {0};
        wrong = 0;
        if (ts_http(dport, "GET", "/api/snapshot", "Authorization: Bearer " DASH_TOKEN "\r\n", NULL, 0, &r, 5000) == 0 &&
            r.status == 200) {
            for (int k = 0; k < NCAMP; k++) {
                char want[64];
                snprintf(want, sizeof(want), "\"chaos-%d #%u\"", k, w->last_seq[k]);
                if (strstr(r.body, want) == NULL)
                    wrong++;
            }
        } else {
            wrong = NCAMP;
        }
        ts_http_resp_free(&r);
        assert_true(alive(&dash));
        if (wrong > 0 && ts_now_ms() > deadline)
            fail_msg("dashboard: %d of %d campaigns not at their last acknowledged name", wrong, NCAMP);
        if (wrong > 0)
            sleep_ms(200);
    }
    fprintf(stderr, "coredata-chaos: the dashboard shows every campaign's last name\n");

    int status = 0;
    assert_true(alive(&cd));
    assert_int_equal(ts_signal(&cd, SIGTERM), 0);
    assert_int_equal(ts_wait(&cd, 30000, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ts_signal(&dash, SIGTERM);
    ts_wait(&dash, 10000, &status);
    ts_kill(&dash);

    free(w->acks);
    free(w);
    free(bin);
    free(dbin);
    free(dir);
    ts_redis_stop(&redis);
    ts_devstream_stop(&ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_coredata__acknowledged_writes_reach_every_subscriber),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
