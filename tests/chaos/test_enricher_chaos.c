/* LABELS: chaos;kafka;redis;mongo;enricher */
/*
 * test_enricher_chaos.c: one adtrack-enricher drains a backlog of 200,000 events while
 * Redis, MongoDB and Kafka each go away and come back (issue: "survive every outage").
 *
 * Real parts: adtrack-devstream (one broker: broker-down takes all of Kafka away), a durable
 * redis-server (append-only file fsynced on every write, so a SIGKILL loses nothing it
 * acknowledged), and mockupdb in store mode (tests/support/mockupdb_server.py --store: it
 * keeps every inserted document by _id and answers a repeated _id with duplicate-key 11000,
 * as MongoDB's _id index does). Each event carries a unique tag (e-<n>).
 *
 * The backlog: 16 campaigns that can afford everything, one campaign whose budget pays for
 * exactly 1,000 impressions (2,000 of its events arrive), 1% unknown campaign, 1% bots.
 * Faults, each triggered when a share of the backlog has been stored: Redis frozen
 * (SIGSTOP) for 3 s; MongoDB failing inserts with a retryable error; MongoDB hanging up
 * mid-insert; Kafka down for 4 s; Redis killed (SIGKILL) and restarted; MongoDB failing
 * write concerns. Asserted afterwards:
 *  - the enricher stayed up throughout and exits 0 on SIGTERM;
 *  - every event is stored exactly once: each tag is in exactly one stored document, in
 *    events or in rejected, with the expected outcome (valid; unknown_campaign; bot; for
 *    the small campaign 1,000 valid and the rest budget_exhausted);
 *  - budgets charged once: each campaign's spend in Redis equals the price of its stored
 *    valid events, the small campaign's spend equals its budget exactly;
 *  - every fault was felt (the enricher's retry counters for redis and sink rose).
 *
 * ADTRACK_SOAK=<duration> repeats backlog-and-faults rounds for that long (scripts/soak.sh).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <bson/bson.h>
#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "at_common.h"
#include "at_test_coredata.h"
#include "at_test_mongo.h"
#include "at_test_support.h"

#define RAW "adtrack.events.raw"
#define NCAMPAIGNS 16
#define CPM_PRICE 3000        /* micros per 1000 impressions: 3 micros per impression */
#define SMALL_PRICE 2000      /* 2 micros per impression */
#define SMALL_BUDGET 2000     /* pays for exactly 1000 impressions */
#define BACKLOG 200000

enum { EXPECT_VALID = 1, EXPECT_UNKNOWN, EXPECT_BOT, EXPECT_SMALL };

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
        fprintf(stderr, "enricher exited: %s %d\n", WIFSIGNALED(status) ? "signal" : "status",
                WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
        p->pid = 0;
    }
    return r == 0;
}

static double metric(int port, const char *series)
{
    ts_http_resp_t r = {0};
    double v = -1;
    char want[256];
    snprintf(want, sizeof(want), "%s ", series);
    if (ts_http(port, "GET", "/metrics", NULL, NULL, 0, &r, 5000) == 0 && r.status == 200 && r.body != NULL) {
        const char *p = strstr(r.body, want);
        while (p != NULL && p != r.body && p[-1] != '\n')
            p = strstr(p + 1, want);
        if (p != NULL)
            v = atof(p + strlen(want));
    }
    ts_http_resp_free(&r);
    return v;
}

/* What event n is. */
static int expect_of(uint64_t n)
{
    if (n % 100 == 0)
        return EXPECT_UNKNOWN;
    if (n % 100 == 1)
        return EXPECT_BOT;
    if (n % 100 == 2)
        return EXPECT_SMALL;
    return EXPECT_VALID;
}

static void produce_backlog(const char *bootstraps, uint64_t first, uint64_t count, const char *small)
{
    char errstr[256], tag[32], camp[32];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "bootstrap.servers", bootstraps, errstr, sizeof(errstr));
    rd_kafka_conf_set(kc, "linger.ms", "20", errstr, sizeof(errstr));
    rd_kafka_conf_set(kc, "log_level", "3", errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr));
    assert_non_null(rk);
    at_uuid7_gen_t gen = {0};
    for (uint64_t n = first; n < first + count; n++) {
        int what = expect_of(n);
        snprintf(tag, sizeof(tag), "e-%llu", (unsigned long long)n);
        snprintf(camp, sizeof(camp), "camp-%llu", (unsigned long long)(n % NCAMPAIGNS));
        ts_evspec_t spec = {.c = what == EXPECT_UNKNOWN ? "camp-nobody-knows" : what == EXPECT_SMALL ? small : camp,
                            .p = "pub-1",
                            .ua = what == EXPECT_BOT ? "Googlebot/2.1 (+http://www.google.com/bot.html)" : NULL,
                            .tag = tag};
        size_t len;
        char *json = ts_event_json(&spec, &gen, &len);
        assert_non_null(json);
        for (;;) {
            rd_kafka_resp_err_t e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(RAW), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                                      RD_KAFKA_V_KEY(spec.c, strlen(spec.c)),
                                                      RD_KAFKA_V_VALUE(json, len), RD_KAFKA_V_END);
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
                break;
            assert_int_equal(e, RD_KAFKA_RESP_ERR__QUEUE_FULL);
            rd_kafka_poll(rk, 50);
        }
        bson_free(json);
    }
    assert_int_equal(rd_kafka_flush(rk, 120000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}

/* Documents stored in a mockupdb collection (events + rejected). */
static long stored(ts_mongo_t *mock, const char *coll)
{
    bson_t *ack = ts_mongo_ctl_ack(mock, "{\"op\": \"count\"}");
    bson_iter_t it, sub;
    long n = 0;
    if (bson_iter_init_find(&it, ack, "counts") && bson_iter_recurse(&it, &sub) && bson_iter_find(&sub, coll))
        n = (long)bson_iter_as_int64(&sub);
    bson_destroy(ack);
    return n;
}

typedef struct world_s {
    ts_devstream_t ds;
    ts_redis_t redis;
    ts_mongo_t mock;
    ts_proc_t enr;
    int port;
    const char *small;
} world_t;

/* Waits (keeping an eye on the enricher) until @p target documents are stored. */
static void wait_stored(world_t *w, long target, int timeout_ms, const char *what)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    long n;
    while ((n = stored(&w->mock, "events") + stored(&w->mock, "rejected")) < target) {
        assert_true(alive(&w->enr));
        if (ts_now_ms() > deadline)
            fail_msg("%s: %ld of %ld events stored after %d s", what, n, target, timeout_ms / 1000);
        sleep_ms(100);
    }
}

/* Holds @p ms, failing as soon as the enricher is gone. */
static void hold(world_t *w, int ms)
{
    int64_t end = ts_now_ms() + ms;
    while (ts_now_ms() < end) {
        assert_true(alive(&w->enr));
        sleep_ms(100);
    }
}

/* One round: a backlog of @p count events from @p first, drained under every fault. */
static void round_of_faults(world_t *w, uint64_t first, uint64_t count, long stored_before)
{
    static const struct {
        int pct;
        const char *name;
    } faults[] = {{5, "redis frozen 3 s"},  {20, "mongo retryable errors"}, {35, "mongo hang-ups"},
                  {50, "kafka down 4 s"},   {65, "redis killed and restarted"}, {80, "mongo write concern errors"}};
    int64_t t0 = ts_now_ms();
    produce_backlog(w->ds.bootstraps, first, count, w->small);
    fprintf(stderr, "enricher-chaos: %llu events produced in %.1f s\n", (unsigned long long)count,
            (ts_now_ms() - t0) / 1000.0);
    for (size_t f = 0; f < AT_ARRAY_LEN(faults); f++) {
        wait_stored(w, stored_before + (long)(count * (uint64_t)faults[f].pct / 100), 600000, faults[f].name);
        fprintf(stderr, "enricher-chaos: %5.1f s  %s\n", (ts_now_ms() - t0) / 1000.0, faults[f].name);
        switch (f) {
        case 0:
            assert_int_equal(ts_signal(&w->redis.proc, SIGSTOP), 0);
            hold(w, 3000);
            assert_int_equal(ts_signal(&w->redis.proc, SIGCONT), 0);
            break;
        case 1:
            ts_mongo_ctl(&w->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"error\", \"code\": 91, "
                                   "\"codeName\": \"ShutdownInProgress\", \"errmsg\": \"chaos: shutting down\", "
                                   "\"labels\": [\"RetryableWriteError\"], \"times\": 12}");
            break;
        case 2:
            ts_mongo_ctl(&w->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"hangup\", \"times\": 6}");
            break;
        case 3:
            assert_int_equal(ts_devstream_control(&w->ds, "broker-down all"), 0);
            hold(w, 4000);
            assert_int_equal(ts_devstream_control(&w->ds, "broker-up all"), 0);
            break;
        case 4:
            assert_int_equal(ts_redis_crash_restart(&w->redis, 1500), 0);
            break;
        case 5:
            ts_mongo_ctl(&w->mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"action\": \"write_concern_error\", "
                                   "\"times\": 4}");
            break;
        }
    }
    wait_stored(w, stored_before + (long)count, 600000, "the rest of the backlog");
    fprintf(stderr, "enricher-chaos: backlog of %llu drained in %.1f s\n", (unsigned long long)count,
            (ts_now_ms() - t0) / 1000.0);
}

/* Reads a dump of mockupdb's collection and counts tags into @p counts; @p valid_of says,
 * per campaign, how many valid events it has. */
static void read_dump(const char *path, uint8_t *counts, uint64_t ntags, int *outcome, bool rejected,
                      long long *valid_per_campaign, long long *small_valid)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[4096];
    while (fgets(line, sizeof(line), f) != NULL) {
        bson_error_t err;
        bson_t *d = bson_new_from_json((const uint8_t *)line, -1, &err);
        assert_non_null(d);
        bson_iter_t it;
        const char *tag = bson_iter_init_find(&it, d, "tag") ? bson_iter_utf8(&it, NULL) : NULL;
        const char *c = bson_iter_init_find(&it, d, "c") ? bson_iter_utf8(&it, NULL) : NULL;
        const char *reason = bson_iter_init_find(&it, d, "reason") ? bson_iter_utf8(&it, NULL) : NULL;
        if (tag == NULL || strncmp(tag, "e-", 2) != 0)
            fail_msg("stored document without a test tag: %s", line);
        uint64_t n = strtoull(tag + 2, NULL, 10);
        assert_true(n < ntags);
        if (counts[n] < 255)
            counts[n]++;
        int want = expect_of(n);
        int got = !rejected                                     ? EXPECT_VALID
                  : reason && !strcmp(reason, "unknown_campaign") ? EXPECT_UNKNOWN
                  : reason && !strcmp(reason, "bot")              ? EXPECT_BOT
                  : reason && !strcmp(reason, "budget_exhausted") ? EXPECT_SMALL
                                                                  : -1;
        if (want == EXPECT_SMALL && !rejected) {
            (*small_valid)++;
        } else if (got != want) {
            fail_msg("%s: stored as %s%s, expected outcome %d", tag, rejected ? "rejected " : "valid",
                     reason ? reason : "", want);
        }
        if (!rejected && want == EXPECT_VALID && c != NULL && strncmp(c, "camp-", 5) == 0)
            valid_per_campaign[atoi(c + 5) % NCAMPAIGNS]++;
        outcome[0]++;
        bson_destroy(d);
    }
    fclose(f);
}

static void test_enricher__drains_backlog_through_every_outage(void **state)
{
    AT_UNUSED(state);
    world_t w = {.small = "camp-small"};
    int64_t soak = soak_ms(), t_start = ts_now_ms();

    assert_int_equal(ts_devstream_start(&w.ds, 1, 32), 0);
    assert_int_equal(ts_redis_start_durable(&w.redis), 0);
    for (int i = 0; i < NCAMPAIGNS; i++) {
        char id[32];
        snprintf(id, sizeof(id), "camp-%d", i);
        ts_seed_campaign(w.redis.port, id, "cpm", CPM_PRICE, INT64_C(1000000000000), "active", 10 + (uint64_t)i);
    }
    ts_seed_campaign(w.redis.port, w.small, "cpm", SMALL_PRICE, SMALL_BUDGET, "active", 100);
    ts_seed_publishers(w.redis.port);
    const char *mock_args[] = {"--store", "--store-fields", "_id,tag,c,reason,price_micros", "--quiet", NULL};
    ts_mongo_start_args(&w.mock, mock_args);

    char *bin = ts_bin("adtrack-enricher");
    char *dir = ts_tmpdir("enricher-chaos");
    w.port = ts_free_port();
    char listen[32], rport[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", w.port);
    snprintf(rport, sizeof(rport), "127.0.0.1:%d", w.redis.port);
    char *argv[] = {bin, "--brokers", w.ds.bootstraps, "--group", "chaos", "--redis", rport, "--mongo", w.mock.uri,
                    "--mongo-w", "1", "--mongo-wtimeout-ms", "2000", "--data-dir", dir, "--listen", listen,
                    "--batch-size", "1000", "--redis-timeout-ms", "1000", "--retry-max-ms", "1000",
                    "--kafka-timeout-ms", "5000", "--kafka-prop", "session.timeout.ms=10000", "--log-level", "warn",
                    /* mockupdb stores events only: the rollups (tested on FerretDB by
                     * it/test_rollup) would wait for gates it never keeps */
                    "--rollups", "off", NULL};
    assert_int_equal(ts_spawn(&w.enr, argv, NULL, false, 0), 0);
    assert_int_equal(ts_wait_port(w.port, 30000), 0);

    uint64_t produced = 0;
    int rounds = 0;
    do {
        round_of_faults(&w, produced, BACKLOG, (long)produced);
        produced += BACKLOG;
        rounds++;
    } while (soak > 0 && ts_now_ms() - t_start < soak);

    /* Verify every stored document against what was produced. */
    uint8_t *counts = calloc(produced, 1);
    assert_non_null(counts);
    int docs[1] = {0};
    long long valid_per_campaign[NCAMPAIGNS] = {0}, small_valid = 0;
    char *events = ts_tmpdir("enricher-chaos-dump"), path[1100], cmd[1300];
    snprintf(path, sizeof(path), "%s/events.jsonl", events);
    snprintf(cmd, sizeof(cmd), "{\"op\": \"dump\", \"collection\": \"events\", \"path\": \"%s\"}", path);
    ts_mongo_ctl(&w.mock, cmd);
    read_dump(path, counts, produced, docs, false, valid_per_campaign, &small_valid);
    snprintf(path, sizeof(path), "%s/rejected.jsonl", events);
    snprintf(cmd, sizeof(cmd), "{\"op\": \"dump\", \"collection\": \"rejected\", \"path\": \"%s\"}", path);
    ts_mongo_ctl(&w.mock, cmd);
    read_dump(path, counts, produced, docs, true, valid_per_campaign, &small_valid);
    uint64_t lost = 0, doubled = 0;
    for (uint64_t n = 0; n < produced; n++) {
        if (counts[n] == 0 && lost++ < 10)
            fprintf(stderr, "lost: e-%llu\n", (unsigned long long)n);
        if (counts[n] > 1 && doubled++ < 10)
            fprintf(stderr, "doubled: e-%llu stored %d times\n", (unsigned long long)n, counts[n]);
    }
    double retries_redis = metric(w.port, "adtrack_enricher_retries_total{stage=\"redis\"}");
    double retries_sink = metric(w.port, "adtrack_enricher_retries_total{stage=\"sink\"}");
    fprintf(stderr,
            "enricher-chaos: %d round(s), %llu events, %d documents stored: %llu lost, %llu doubled; "
            "retries: redis %.0f, sink %.0f; %lld of the small campaign's events valid\n",
            rounds, (unsigned long long)produced, docs[0], (unsigned long long)lost, (unsigned long long)doubled,
            retries_redis, retries_sink, small_valid);
    assert_int_equal(lost, 0);
    assert_int_equal(doubled, 0);
    assert_true(retries_redis > 0);
    assert_true(retries_sink > 0);

    /* Budgets: charged once per event, to the micro. */
    for (int i = 0; i < NCAMPAIGNS; i++) {
        long long spend = ts_redis_int(w.redis.port, "GET adtrack:spend:camp-%d", i);
        long long want = valid_per_campaign[i] * ((CPM_PRICE + 500) / 1000);
        if (spend != want)
            fail_msg("camp-%d: spend %lld micros, %lld stored valid events cost %lld", i, spend,
                     valid_per_campaign[i], want);
    }
    assert_int_equal(small_valid, SMALL_BUDGET / ((SMALL_PRICE + 500) / 1000));
    assert_int_equal(ts_redis_int(w.redis.port, "GET adtrack:spend:%s", w.small), SMALL_BUDGET);

    int status = 0;
    assert_true(alive(&w.enr));
    assert_int_equal(ts_signal(&w.enr, SIGTERM), 0);
    assert_int_equal(ts_wait(&w.enr, 60000, &status), 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);

    free(counts);
    free(events);
    free(dir);
    free(bin);
    ts_mongo_stop(&w.mock);
    ts_redis_stop(&w.redis);
    ts_devstream_stop(&w.ds);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enricher__drains_backlog_through_every_outage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
