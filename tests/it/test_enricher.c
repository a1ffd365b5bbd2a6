/* LABELS: it;kafka;redis;mongo;enricher */
/*
 * test_enricher.c: adtrack-enricher as a user runs it, against adtrack-devstream (Kafka
 * protocol) and a real redis-server seeded directly per docs/CORE-DATA.md:
 *  - round trip: valid events land in the file sink enriched (names, prices, UA, IP), and
 *    each kind of rejection lands in the rejected file and topic with its reason;
 *  - two enrichers in one group share the partitions and together store each event once;
 *  - budget exhaustion with two enrichers racing on one campaign: spend never exceeds the
 *    budget (bound 0), refused events are budget_exhausted, the change is published;
 *  - kill -9 mid-stream and restart: nothing lost, nothing doubled, nothing charged twice;
 *  - redis-server restarted mid-stream: processing resumes, /readyz reports the outage;
 *  - a pub/sub change (campaign paused) is applied without a restart;
 *  - MongoDB (mockupdb) failing inserts: no offset is committed while it fails, then every
 *    event lands exactly once when it recovers.
 * Every test has its own raw topic, consumer group, campaigns and data directory. All waits
 * are polls with generous deadlines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <bson/bson.h>
#include <dirent.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "at_event.h"
#include "at_test_coredata.h"
#include "at_test_mongo.h"
#include "at_test_support.h"

#define REJECTED "adtrack.events.rejected"

static ts_devstream_t ds;
static ts_redis_t redis;
static at_uuid7_gen_t gen;

/* ---- kafka helpers ---- */

static rd_kafka_t *producer(void)
{
    char errstr[256];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "bootstrap.servers", ds.bootstraps, errstr, sizeof(errstr));
    rd_kafka_conf_set(kc, "linger.ms", "5", errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr));
    assert_non_null(rk);
    return rk;
}

static void produce_raw(rd_kafka_t *rk, const char *topic, int partition, const char *key, const char *value,
                        size_t len)
{
    rd_kafka_resp_err_t e;
    for (;;) {
        e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
                              RD_KAFKA_V_VALUE((void *)value, len), RD_KAFKA_V_END);
        if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
            break;
        rd_kafka_poll(rk, 50);
    }
    assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
}

static void flush_producer(rd_kafka_t *rk)
{
    assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
}

typedef ts_evspec_t evspec_t;

/* Produces one event (JSON as the collector writes it) to @p topic, @p partition (-1: by key). */
static void produce_event(rd_kafka_t *rk, const char *topic, int partition, const evspec_t *s)
{
    size_t len;
    char *json = ts_event_json(s, &gen, &len);
    assert_non_null(json);
    produce_raw(rk, topic, partition, s->c, json, len);
    bson_free(json);
}

/* ---- enricher processes ---- */

/* Children started by a test, killed by the per-test teardown even when an assertion
 * failed half-way (cmocka then skips the test's own clean-up). */
static pid_t live[32];

static void live_add(pid_t pid)
{
    for (size_t i = 0; i < AT_ARRAY_LEN(live); i++) {
        if (live[i] == 0) {
            live[i] = pid;
            return;
        }
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
    AT_UNUSED(state);
    for (size_t i = 0; i < AT_ARRAY_LEN(live); i++) {
        if (live[i] > 0) {
            kill(live[i], SIGKILL);
            waitpid(live[i], NULL, 0);
        }
        live[i] = 0;
    }
    return 0;
}

typedef struct enricher_s {
    ts_proc_t proc;
    int port;
    char *dir;
} enricher_t;

static void enricher_start_sink(enricher_t *e, const char *topic, const char *group, const char *dir, int redis_port,
                                const char *mongo_uri);

static void enricher_start(enricher_t *e, const char *topic, const char *group, const char *dir, int redis_port)
{
    enricher_start_sink(e, topic, group, dir, redis_port, NULL);
}

/* With @p mongo_uri, the MongoDB sink (w=1, short wtimeout) instead of the file sink. */
static void enricher_start_sink(enricher_t *e, const char *topic, const char *group, const char *dir, int redis_port,
                                const char *mongo_uri)
{
    char port[32], rport[32];
    char *bin = ts_bin("adtrack-enricher");
    e->port = ts_free_port();
    snprintf(port, sizeof(port), "127.0.0.1:%d", e->port);
    snprintf(rport, sizeof(rport), "127.0.0.1:%d", redis_port);
    if (e->dir == NULL)
        e->dir = strdup(dir);
    const char *argv[] = {bin, "--brokers", ds.bootstraps, "--group", group, "--topic-raw", topic, "--redis", rport,
                          "--data-dir", e->dir, "--listen", port, "--batch-size", "200", "--batch-max-ms", "50",
                          "--redis-timeout-ms", "1000", "--retry-max-ms", "1000", "--kafka-timeout-ms", "5000",
                          "--kafka-prop", "session.timeout.ms=6000", "--log-level", "warn", NULL, NULL, NULL,
                          NULL, NULL, NULL, NULL, NULL, NULL};
    if (mongo_uri != NULL) {
        size_t n = 0;
        while (argv[n] != NULL)
            n++;
        argv[n++] = "--mongo";
        argv[n++] = mongo_uri;
        argv[n++] = "--mongo-w";
        argv[n++] = "1";
        /* mockupdb answers with scripted replies and stores nothing, so the rollups' gate
         * read-back could never see its writes; their MongoDB path runs against FerretDB in
         * it/test_rollup. This test is about the sink. */
        argv[n++] = "--rollups";
        argv[n++] = "off";
    }
    assert_int_equal(ts_spawn(&e->proc, (char *const *)argv, NULL, false, 0), 0);
    live_add(e->proc.pid);
    free(bin);
    assert_int_equal(ts_wait_port(e->port, 30000), 0);
}

static void enricher_kill(enricher_t *e)
{
    live_del(e->proc.pid);
    ts_kill(&e->proc);
}

static void enricher_free(enricher_t *e)
{
    live_del(e->proc.pid);
    ts_kill(&e->proc);
    free(e->dir);
    e->dir = NULL;
}

/* Value of the first metric line starting with @p prefix (name plus labels), or -1. */
static double metric(const enricher_t *e, const char *prefix)
{
    ts_http_resp_t r = {0};
    double v = -1;
    if (ts_http(e->port, "GET", "/metrics", NULL, NULL, 0, &r, 5000) != 0)
        return -1;
    size_t pl = strlen(prefix);
    for (char *line = r.body; line != NULL && *line;) {
        char *nl = strchr(line, '\n');
        if (strncmp(line, prefix, pl) == 0 && line[pl] == ' ') {
            v = atof(line + pl + 1);
            break;
        }
        line = nl ? nl + 1 : NULL;
    }
    ts_http_resp_free(&r);
    return v;
}

static int readyz(const enricher_t *e)
{
    ts_http_resp_t r = {0};
    if (ts_http(e->port, "GET", "/readyz", NULL, NULL, 0, &r, 5000) != 0)
        return -1;
    int st = r.status;
    ts_http_resp_free(&r);
    return st;
}

static bool wait_status(const enricher_t *e, int want, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    while (ts_now_ms() < deadline) {
        if (readyz(e) == want)
            return true;
        usleep(50000);
    }
    return false;
}

/* ---- reading the file sink ---- */

typedef struct line_s {
    char *text;
} line_t;

typedef struct lines_s {
    line_t *v;
    size_t n, cap;
} lines_t;

static void lines_free(lines_t *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].text);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* Appends every line of <dir>/<prefix>-*.jsonl that contains @p needle. */
static void read_sink(const char *dir, const char *prefix, const char *needle, lines_t *out)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *de;
    size_t plen = strlen(prefix);
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, prefix, plen) != 0 || de->d_name[plen] != '-')
            continue;
        char p[1024];
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        FILE *f = fopen(p, "r");
        if (f == NULL)
            continue;
        char *line = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&line, &cap, f)) > 0) {
            if (line[n - 1] != '\n' || (needle != NULL && strstr(line, needle) == NULL))
                continue;
            if (out->n == out->cap) {
                out->cap = out->cap ? out->cap * 2 : 256;
                out->v = realloc(out->v, out->cap * sizeof(*out->v));
            }
            out->v[out->n++].text = strdup(line);
        }
        free(line);
        fclose(f);
    }
    closedir(d);
}

static size_t count_sink(const char *dir, const char *prefix, const char *needle)
{
    lines_t l = {0};
    read_sink(dir, prefix, needle, &l);
    size_t n = l.n;
    lines_free(&l);
    return n;
}

/* Polls until <dir>/<prefix> holds at least @p want lines containing @p needle. */
static size_t wait_sink(const char *const *dirs, size_t ndirs, const char *prefix, const char *needle, size_t want,
                        int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    size_t n = 0;
    while (ts_now_ms() < deadline) {
        n = 0;
        for (size_t i = 0; i < ndirs; i++)
            n += count_sink(dirs[i], prefix, needle);
        if (n >= want)
            break;
        usleep(100000);
    }
    return n;
}

/* Checks that the tags "<base>:<i>" (0 <= i < n) each appear exactly once over the lines. */
static void assert_each_tag_once(const lines_t *l, const char *base, int n)
{
    int *seen = calloc((size_t)n, sizeof(int));
    char pat[96];
    int plen = snprintf(pat, sizeof(pat), "\"tag\" : \"%s:", base);
    for (size_t i = 0; i < l->n; i++) {
        const char *t = strstr(l->v[i].text, pat);
        if (t == NULL)
            continue;
        int k = atoi(t + plen);
        assert_true(k >= 0 && k < n);
        seen[k]++;
    }
    for (int k = 0; k < n; k++) {
        if (seen[k] != 1)
            fail_msg("tag %s:%d stored %d times", base, k, seen[k]);
    }
    free(seen);
}

static char *test_dir(const char *name)
{
    return ts_tmpdir(name);
}

/* ---- fixtures ---- */

static int group_setup(void **state)
{
    AT_UNUSED(state);
    char *bin = ts_bin("adtrack-devstream");
    char *argv[] = {bin, "--partitions", "4", "--topic", "t-rt:4", "--topic", "t-two:4", "--topic", "t-budget:4",
                    "--topic", "t-kill:4", "--topic", "t-redis:4", "--topic", "t-pubsub:4", NULL};
    if (ts_devstream_start_argv(&ds, argv) != 0)
        return -1;
    free(bin);
    if (ts_redis_start(&redis) != 0)
        return -1;
    ts_seed_publishers(redis.port);
    return 0;
}

static int group_teardown(void **state)
{
    AT_UNUSED(state);
    ts_redis_stop(&redis);
    ts_devstream_stop(&ds);
    return 0;
}

/* ---- tests ---- */

static void test_enricher__round_trip(void **state)
{
    AT_UNUSED(state);
    ts_seed_campaign(redis.port, "camp-rt", "cpm", 2500000, INT64_C(1000000000000), "active", 10);
    ts_seed_campaign(redis.port, "camp-rt-paused", "cpm", 2500000, INT64_C(1000000000000), "paused", 11);
    rd_kafka_t *rk = producer();
    char tag[64];
    for (int i = 0; i < 20; i++) {
        snprintf(tag, sizeof(tag), "rt:%d", i);
        produce_event(rk, "t-rt", -1, &(evspec_t){.c = "camp-rt", .p = "pub-1", .tag = tag});
    }
    for (int i = 0; i < 5; i++) {
        snprintf(tag, sizeof(tag), "rc:%d", i);
        produce_event(rk, "t-rt", -1, &(evspec_t){.c = "camp-rt", .p = "pub-1", .tag = tag, .type = AT_EV_CLICK});
    }
    produce_event(rk, "t-rt", -1, &(evspec_t){.c = "camp-nope", .p = "pub-1", .tag = "rj:unknown_campaign"});
    produce_event(rk, "t-rt", -1, &(evspec_t){.c = "camp-rt-paused", .p = "pub-1", .tag = "rj:campaign_inactive"});
    produce_event(rk, "t-rt", -1, &(evspec_t){.c = "camp-rt", .p = "pub-2", .tag = "rj:unknown_publisher"});
    produce_event(rk, "t-rt", -1, &(evspec_t){.c = "camp-rt", .p = "pub-3", .tag = "rj:publisher_not_allowed"});
    produce_event(rk, "t-rt", -1,
                  &(evspec_t){.c = "camp-rt", .p = "pub-1", .tag = "rj:bot",
                              .ua = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"});
    /* The same id twice, adjacent on one partition: one batch, the second is a duplicate. */
    at_uuid_t dup;
    at_uuid7_next(&gen, (uint64_t)time(NULL) * 1000, &dup);
    produce_event(rk, "t-rt", 0, &(evspec_t){.c = "camp-rt", .p = "pub-1", .tag = "rd:0", .id = &dup});
    produce_event(rk, "t-rt", 0, &(evspec_t){.c = "camp-rt", .p = "pub-1", .tag = "rj:duplicate_event", .id = &dup});
    const char *notjson = "rtmark not json";
    produce_raw(rk, "t-rt", -1, "x", notjson, strlen(notjson));
    const char *badtype = "{\"v\":1,\"id\":\"0190a000-0000-7000-8000-0000000000aa\",\"ts\":{\"$date\":"
                          "\"2026-11-21T13:27:02.123Z\"},\"e\":\"hover\",\"c\":\"camp-rt\",\"tag\":\"rtmark\"}";
    produce_raw(rk, "t-rt", -1, "camp-rt", badtype, strlen(badtype));
    const char *noid = "{\"v\":1,\"ts\":{\"$date\":\"2026-11-21T13:27:02.123Z\"},\"e\":\"imp\",\"c\":\"camp-rt\","
                       "\"tag\":\"rtmark\"}";
    produce_raw(rk, "t-rt", -1, "camp-rt", noid, strlen(noid));
    flush_producer(rk);
    rd_kafka_destroy(rk);

    char *dir = test_dir("enr-rt");
    enricher_t e = {0};
    enricher_start(&e, "t-rt", "g-rt", dir, redis.port);
    const char *dirs[] = {dir};
    assert_int_equal(wait_sink(dirs, 1, "events", "\"tag\" : \"r", 26, 30000), 26);
    assert_int_equal(wait_sink(dirs, 1, "rejected", "\"reason\"", 9, 30000), 9);
    assert_true(wait_status(&e, 200, 20000));

    lines_t l = {0};
    read_sink(dir, "events", NULL, &l);
    assert_int_equal(l.n, 26);
    assert_each_tag_once(&l, "rt", 20);
    assert_each_tag_once(&l, "rc", 5);
    for (size_t i = 0; i < l.n; i++) {
        const char *t = l.v[i].text;
        assert_non_null(strstr(t, "\"advertiser_name\" : \"Advertiser of camp-rt\""));
        assert_non_null(strstr(t, "\"campaign_name\" : \"Campaign camp-rt\""));
        assert_non_null(strstr(t, "\"publisher_name\" : \"Daily News\""));
        assert_non_null(strstr(t, "\"ua_family\" : \"chrome\""));
        assert_non_null(strstr(t, "\"device\" : \"desktop\""));
        assert_non_null(strstr(t, "\"ip\" : \"198.51.100.0\""));
        bool click = strstr(t, "\"e\" : \"click\"") != NULL;
        assert_non_null(strstr(t, click ? "\"price_micros\" : 0" : "\"price_micros\" : 2500"));
    }
    lines_free(&l);

    static const char *const reasons[] = {"unknown_campaign", "campaign_inactive", "unknown_publisher",
                                          "publisher_not_allowed", "bot", "duplicate_event",
                                          "malformed_json", "unknown_event_type", "malformed_envelope"};
    for (size_t i = 0; i < AT_ARRAY_LEN(reasons); i++) {
        char needle[96];
        snprintf(needle, sizeof(needle), "\"reason\" : \"%s\"", reasons[i]);
        if (count_sink(dir, "rejected", needle) != 1)
            fail_msg("rejected file: expected one %s", reasons[i]);
    }
    /* The tagged rejections carry their own reason as the tag. */
    l = (lines_t){0};
    read_sink(dir, "rejected", "\"tag\" : \"rj:", &l);
    assert_int_equal(l.n, 6);
    for (size_t i = 0; i < l.n; i++) {
        const char *t = strstr(l.v[i].text, "\"tag\" : \"rj:") + 12;
        char needle[96];
        snprintf(needle, sizeof(needle), "\"reason\" : \"%.*s\"", (int)(strchr(t, '"') - t), t);
        assert_non_null(strstr(l.v[i].text, needle));
    }
    lines_free(&l);

    /* Spend: 21 impressions (rt:0-19 and the duplicated id once) at 2500 micros; clicks
     * cost nothing on a CPM campaign. */
    assert_int_equal(ts_redis_int(redis.port, "GET adtrack:spend:camp-rt"), 21 * 2500);
    /* Counted once the batch is committed, a moment after the sink has it. */
    double valid = -1;
    for (int64_t until = ts_now_ms() + 10000; ts_now_ms() < until; usleep(20000)) {
        valid = metric(&e, "adtrack_enricher_events_total{outcome=\"valid\"}");
        if (valid >= 26)
            break;
    }
    if (valid != 26)
        fail_msg("adtrack_enricher_events_total{outcome=\"valid\"} = %g, expected 26", valid);

    /* Real-time counters: per reason next to the total, only for known campaigns
     * (unknown_campaign, duplicate_event and the unparsable ones are not counted). */
    assert_int_equal(ts_redis_stats_sum(redis.port, "camp-rt", "events"), 26 + 3);
    assert_int_equal(ts_redis_stats_sum(redis.port, "camp-rt", "imp"), 21);
    assert_int_equal(ts_redis_stats_sum(redis.port, "camp-rt", "click"), 5);
    assert_int_equal(ts_redis_stats_sum(redis.port, "camp-rt", "rejected"), 3);
    assert_int_equal(ts_redis_stats_sum(redis.port, "camp-rt", "rejected:unknown_publisher"), 1);
    assert_int_equal(ts_redis_stats_sum(redis.port, "camp-rt", "rejected:publisher_not_allowed"), 1);
    assert_int_equal(ts_redis_stats_sum(redis.port, "camp-rt", "rejected:bot"), 1);
    assert_int_equal(ts_redis_stats_sum(redis.port, "camp-rt", "rejected:duplicate_event"), 0);
    assert_int_equal(ts_redis_stats_sum(redis.port, "camp-rt-paused", "rejected"), 1);
    assert_int_equal(ts_redis_stats_sum(redis.port, "camp-rt-paused", "rejected:campaign_inactive"), 1);
    assert_int_equal(ts_redis_stats_sum(redis.port, "camp-nope", "rejected"), 0);

    /* The rejected topic has the same 9, with reasons. */
    ts_kmsg_t *msgs = NULL;
    long n = ts_kafka_consume_all(ds.bootstraps, REJECTED, 9, 1000, 30000, &msgs);
    int mine = 0;
    for (long i = 0; i < n; i++) {
        if (strstr(msgs[i].value, "rj:") != NULL || strstr(msgs[i].value, "rtmark") != NULL) {
            assert_non_null(strstr(msgs[i].value, "\"reason\""));
            mine++;
        }
    }
    ts_kmsgs_free(msgs, n);
    assert_int_equal(mine, 9);

    /* SIGTERM: leaves cleanly with exit 0. */
    int status = -1;
    ts_signal(&e.proc, SIGTERM);
    assert_int_equal(ts_wait(&e.proc, 20000, &status), 0);
    live_del(e.proc.pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    enricher_free(&e);
    free(dir);
}

static void test_enricher__pubsub_change_applied(void **state)
{
    AT_UNUSED(state);
    ts_seed_campaign(redis.port, "camp-ps", "cpm", 1000000, INT64_C(1000000000000), "active", 100);
    char *dir = test_dir("enr-ps");
    enricher_t e = {0};
    enricher_start(&e, "t-pubsub", "g-ps", dir, redis.port);
    assert_true(wait_status(&e, 200, 30000));
    rd_kafka_t *rk = producer();
    char tag[64];
    for (int i = 0; i < 10; i++) {
        snprintf(tag, sizeof(tag), "ps:%d", i);
        produce_event(rk, "t-pubsub", -1, &(evspec_t){.c = "camp-ps", .p = "pub-1", .tag = tag});
    }
    flush_producer(rk);
    const char *dirs[] = {dir};
    assert_int_equal(wait_sink(dirs, 1, "events", "\"tag\" : \"ps:", 10, 30000), 10);

    /* coredata's way: write Redis first, then publish. */
    double before = metric(&e, "adtrack_enricher_coredata_changes_total{result=\"applied\"}");
    char doc[1024], msg[1200];
    snprintf(doc, sizeof(doc),
             "{\"id\":\"camp-ps\",\"advertiser\":\"adv-ps\",\"advertiser_name\":\"A\",\"name\":\"PS\",\"status\":\"paused\","
             "\"start\":\"2020-01-01T00:00:00Z\",\"end\":\"2099-01-01T00:00:00Z\",\"budget_micros\":1000000000000,"
             "\"pricing\":\"cpm\",\"price_micros\":1000000,\"publishers\":[],\"version\":101}");
    ts_redis_int(redis.port, "HSET adtrack:campaign:camp-ps version 101 doc %s", doc);
    snprintf(msg, sizeof(msg), "{\"kind\":\"campaign\",\"id\":\"camp-ps\",\"version\":101,\"op\":\"put\",\"doc\":%s}", doc);
    assert_true(ts_redis_int(redis.port, "PUBLISH adtrack:coredata %s", msg) >= 1);
    int64_t deadline = ts_now_ms() + 10000;
    while (ts_now_ms() < deadline &&
           metric(&e, "adtrack_enricher_coredata_changes_total{result=\"applied\"}") < before + 1)
        usleep(20000);
    assert_true(metric(&e, "adtrack_enricher_coredata_changes_total{result=\"applied\"}") >= before + 1);
    /* An older version arriving late is ignored. */
    snprintf(msg, sizeof(msg), "{\"kind\":\"campaign\",\"id\":\"camp-ps\",\"version\":99,\"op\":\"put\",\"doc\":%s}", doc);
    ts_redis_int(redis.port, "PUBLISH adtrack:coredata %s", msg);

    for (int i = 10; i < 20; i++) {
        snprintf(tag, sizeof(tag), "ps:%d", i);
        produce_event(rk, "t-pubsub", -1, &(evspec_t){.c = "camp-ps", .p = "pub-1", .tag = tag});
    }
    flush_producer(rk);
    rd_kafka_destroy(rk);
    assert_int_equal(wait_sink(dirs, 1, "rejected", "\"reason\" : \"campaign_inactive\"", 10, 30000), 10);
    assert_int_equal(count_sink(dir, "events", "\"tag\" : \"ps:"), 10);
    enricher_free(&e);
    free(dir);
}

/* Waits until @p a and @p b together hold all @p total partitions, each at least one. */
static void wait_shared(enricher_t *a, enricher_t *b, int total)
{
    int64_t deadline = ts_now_ms() + 60000;
    double x = 0, y = 0;
    while (ts_now_ms() < deadline) {
        x = metric(a, "adtrack_enricher_assigned_partitions");
        y = metric(b, "adtrack_enricher_assigned_partitions");
        if (x > 0 && y > 0 && x + y == total)
            return;
        usleep(100000);
    }
    fail_msg("partitions not shared: %g + %g", x, y);
}

static void test_enricher__two_in_one_group_store_once(void **state)
{
    AT_UNUSED(state);
    char id[32];
    for (int c = 0; c < 8; c++) {
        snprintf(id, sizeof(id), "camp-two-%d", c);
        ts_seed_campaign(redis.port, id, "cpm", 1000000, INT64_C(1000000000000), "active", 200 + (uint64_t)c);
    }
    char *da = test_dir("enr-two-a"), *db = test_dir("enr-two-b");
    enricher_t a = {0}, b = {0};
    enricher_start(&a, "t-two", "g-two", da, redis.port);
    enricher_start(&b, "t-two", "g-two", db, redis.port);
    wait_shared(&a, &b, 4);

    rd_kafka_t *rk = producer();
    char tag[64];
    const int N = 1000;
    for (int i = 0; i < N; i++) {
        snprintf(tag, sizeof(tag), "two:%d", i);
        snprintf(id, sizeof(id), "camp-two-%d", i % 8);
        produce_event(rk, "t-two", i % 4, &(evspec_t){.c = id, .p = "pub-1", .tag = tag});
    }
    flush_producer(rk);
    rd_kafka_destroy(rk);
    const char *dirs[] = {da, db};
    assert_true(wait_sink(dirs, 2, "events", "\"tag\" : \"two:", (size_t)N, 60000) >= (size_t)N);
    usleep(500000); /* anything extra (a duplicate) would show up now */
    lines_t l = {0};
    read_sink(da, "events", "\"tag\" : \"two:", &l);
    size_t na = l.n;
    read_sink(db, "events", "\"tag\" : \"two:", &l);
    assert_true(na > 0 && l.n - na > 0); /* both did a share */
    assert_int_equal(l.n, N);
    assert_each_tag_once(&l, "two", N);
    lines_free(&l);
    enricher_free(&a);
    enricher_free(&b);
    free(da);
    free(db);
}

static void test_enricher__budget_race_within_bound(void **state)
{
    AT_UNUSED(state);
    const long long price = 1000, budget = 150000; /* 150 clicks */
    ts_seed_campaign(redis.port, "camp-b", "cpc", price, budget, "active", 300);
    redisContext *sub = ts_redis_connect(redis.port);
    assert_non_null(sub);
    redisReply *r = redisCommand(sub, "SUBSCRIBE adtrack:coredata");
    assert_non_null(r);
    freeReplyObject(r);

    char *da = test_dir("enr-b-a"), *db = test_dir("enr-b-b");
    enricher_t a = {0}, b = {0};
    enricher_start(&a, "t-budget", "g-budget", da, redis.port);
    enricher_start(&b, "t-budget", "g-budget", db, redis.port);
    wait_shared(&a, &b, 4);

    /* One campaign on every partition, so both enrichers charge it at the same time. */
    rd_kafka_t *rk = producer();
    char tag[64];
    const int N = 400;
    for (int i = 0; i < N; i++) {
        snprintf(tag, sizeof(tag), "b:%d", i);
        produce_event(rk, "t-budget", i % 4, &(evspec_t){.c = "camp-b", .p = "pub-1", .tag = tag, .type = AT_EV_CLICK});
    }
    flush_producer(rk);
    rd_kafka_destroy(rk);
    const char *dirs[] = {da, db};
    int64_t deadline = ts_now_ms() + 60000;
    size_t ev = 0, rej = 0;
    while (ts_now_ms() < deadline) {
        ev = count_sink(da, "events", "\"tag\" : \"b:") + count_sink(db, "events", "\"tag\" : \"b:");
        rej = count_sink(da, "rejected", "\"tag\" : \"b:") + count_sink(db, "rejected", "\"tag\" : \"b:");
        if (ev + rej >= (size_t)N)
            break;
        usleep(100000);
    }
    AT_UNUSED(dirs);
    assert_int_equal(ev + rej, N);
    long long spend = ts_redis_int(redis.port, "GET adtrack:spend:camp-b");
    assert_true(spend <= budget); /* the bound: 0 micros over */
    assert_int_equal(spend, budget); /* and every click that fit was charged */
    assert_int_equal(ev, budget / price);
    assert_int_equal(count_sink(da, "rejected", "\"reason\" : \"budget_exhausted\"") +
                         count_sink(db, "rejected", "\"reason\" : \"budget_exhausted\""),
                     N - budget / price);
    assert_int_equal(ts_redis_int(redis.port, "EXISTS adtrack:exhausted:camp-b"), 1);
    /* The script counts its refusals by reason too. */
    assert_int_equal(ts_redis_stats_sum(redis.port, "camp-b", "rejected:budget_exhausted"), N - budget / price);
    assert_int_equal(ts_redis_stats_sum(redis.port, "camp-b", "rejected"), N - budget / price);
    assert_int_equal(ts_redis_stats_sum(redis.port, "camp-b", "click"), budget / price);

    /* The exhausted change was published (exactly once: one campaign, one transition). */
    bool seen = false;
    int64_t until = ts_now_ms() + 5000;
    while (!seen && ts_now_ms() < until) {
        void *reply = NULL;
        struct pollfd pfd = {.fd = sub->fd, .events = POLLIN};
        if (redisGetReplyFromReader(sub, &reply) == REDIS_OK && reply != NULL) {
            redisReply *m = reply;
            if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 && m->element[2]->type == REDIS_REPLY_STRING &&
                strstr(m->element[2]->str, "\"kind\":\"budget\"") && strstr(m->element[2]->str, "\"id\":\"camp-b\"") &&
                strstr(m->element[2]->str, "\"op\":\"exhausted\""))
                seen = true;
            freeReplyObject(m);
            continue;
        }
        if (poll(&pfd, 1, 100) > 0)
            redisBufferRead(sub);
    }
    redisFree(sub);
    assert_true(seen);
    assert_true(metric(&a, "adtrack_enricher_budget_exhausted_published_total") +
                    metric(&b, "adtrack_enricher_budget_exhausted_published_total") ==
                1);
    enricher_free(&a);
    enricher_free(&b);
    free(da);
    free(db);
}

static void test_enricher__kill9_restart_exactly_once(void **state)
{
    AT_UNUSED(state);
    const long long price_each = 1000; /* cpm 1,000,000 micros / 1000 */
    ts_seed_campaign(redis.port, "camp-k", "cpm", 1000000, INT64_C(1000000000000), "active", 400);
    rd_kafka_t *rk = producer();
    char tag[64];
    const int N = 5000;
    for (int i = 0; i < N; i++) {
        snprintf(tag, sizeof(tag), "k:%d", i);
        produce_event(rk, "t-kill", i % 4, &(evspec_t){.c = "camp-k", .p = "pub-1", .tag = tag});
    }
    flush_producer(rk);
    rd_kafka_destroy(rk);

    char *dir = test_dir("enr-kill");
    enricher_t e = {0};
    enricher_start(&e, "t-kill", "g-kill", dir, redis.port);
    const char *dirs[] = {dir};
    int64_t deadline = ts_now_ms() + 30000;
    size_t n = 0;
    while (ts_now_ms() < deadline && (n = count_sink(dir, "events", "\"tag\" : \"k:")) == 0)
        usleep(2000);
    assert_true(n > 0);
    enricher_kill(&e); /* SIGKILL mid-stream */
    n = count_sink(dir, "events", "\"tag\" : \"k:");
    print_message("killed with %zu of %d stored\n", n, N);

    enricher_start(&e, "t-kill", "g-kill", dir, redis.port);
    assert_true(wait_sink(dirs, 1, "events", "\"tag\" : \"k:", (size_t)N, 90000) >= (size_t)N);
    usleep(500000);
    lines_t l = {0};
    read_sink(dir, "events", "\"tag\" : \"k:", &l);
    assert_int_equal(l.n, N);
    assert_each_tag_once(&l, "k", N);
    lines_free(&l);
    assert_int_equal(ts_redis_int(redis.port, "GET adtrack:spend:camp-k"), N * price_each);
    enricher_free(&e);
    free(dir);
}

/* A redis-server of our own (append-only, fsync always) so it can be restarted on the same
 * port with its data. */
static void own_redis_start(ts_proc_t *p, int port, const char *dir)
{
    char ps[16];
    snprintf(ps, sizeof(ps), "%d", port);
    char *argv[] = {"redis-server", "--port", ps, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
                    "--appendfsync", "always", "--dir", (char *)dir, "--loglevel", "warning", NULL};
    assert_int_equal(ts_spawn(p, argv, NULL, false, 0), 0);
    live_add(p->pid);
    assert_int_equal(ts_wait_port(port, 10000), 0);
    int64_t deadline = ts_now_ms() + 10000;
    while (ts_now_ms() < deadline) { /* loading the AOF answers -LOADING for a moment */
        redisContext *rc = ts_redis_connect(port);
        redisReply *r = rc ? redisCommand(rc, "PING") : NULL;
        bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        if (rc)
            redisFree(rc);
        if (ok)
            return;
        usleep(20000);
    }
    fail_msg("own redis did not come up");
}

static void test_enricher__redis_restart_resumes(void **state)
{
    AT_UNUSED(state);
    char *rdir = test_dir("enr-redis-data");
    int port = ts_free_port();
    ts_proc_t rp = {0};
    own_redis_start(&rp, port, rdir);
    ts_seed_publishers(port);
    ts_seed_campaign(port, "camp-r", "cpm", 1000000, INT64_C(1000000000000), "active", 500);

    char *dir = test_dir("enr-redis");
    enricher_t e = {0};
    enricher_start(&e, "t-redis", "g-redis", dir, port);
    assert_true(wait_status(&e, 200, 30000));
    rd_kafka_t *rk = producer();
    char tag[64];
    for (int i = 0; i < 200; i++) {
        snprintf(tag, sizeof(tag), "r:%d", i);
        produce_event(rk, "t-redis", i % 4, &(evspec_t){.c = "camp-r", .p = "pub-1", .tag = tag});
    }
    flush_producer(rk);
    const char *dirs[] = {dir};
    assert_int_equal(wait_sink(dirs, 1, "events", "\"tag\" : \"r:", 200, 30000), 200);

    live_del(rp.pid);
    ts_kill(&rp); /* Redis goes away */
    for (int i = 200; i < 400; i++) {
        snprintf(tag, sizeof(tag), "r:%d", i);
        produce_event(rk, "t-redis", i % 4, &(evspec_t){.c = "camp-r", .p = "pub-1", .tag = tag});
    }
    flush_producer(rk);
    rd_kafka_destroy(rk);
    assert_true(wait_status(&e, 503, 30000)); /* paused, retrying: unready */
    /* The batch in hand is not committed, so the consumer lag shows it. */
    double lag = 0;
    for (int64_t until = ts_now_ms() + 15000; ts_now_ms() < until && lag <= 0; usleep(100000))
        lag = metric(&e, "adtrack_enricher_consumer_lag");
    if (lag <= 0 || lag > 200)
        fail_msg("adtrack_enricher_consumer_lag = %g while paused, expected 1-200", lag);
    own_redis_start(&rp, port, rdir);
    assert_int_equal(wait_sink(dirs, 1, "events", "\"tag\" : \"r:", 400, 60000), 400);
    assert_true(wait_status(&e, 200, 30000));
    for (int64_t until = ts_now_ms() + 15000; ts_now_ms() < until && lag != 0; usleep(100000))
        lag = metric(&e, "adtrack_enricher_consumer_lag");
    if (lag != 0)
        fail_msg("adtrack_enricher_consumer_lag = %g after the drain, expected 0", lag);
    assert_true(metric(&e, "adtrack_enricher_retries_total{stage=\"redis\"}") > 0);
    lines_t l = {0};
    read_sink(dir, "events", "\"tag\" : \"r:", &l);
    assert_each_tag_once(&l, "r", 400);
    lines_free(&l);
    assert_int_equal(ts_redis_int(port, "GET adtrack:spend:camp-r"), 400 * 1000);
    enricher_free(&e);
    live_del(rp.pid);
    ts_kill(&rp);
    free(dir);
    free(rdir);
}

/* Sum of the group's committed offsets on partitions 0-3 of @p topic, read with
 * OffsetFetch from a consumer that does not join the group; a partition with nothing
 * committed counts 0 and sets *@p none_committed. */
static long long committed_sum(const char *topic, const char *group, bool *none_committed)
{
    char errstr[256];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "bootstrap.servers", ds.bootstraps, errstr, sizeof(errstr));
    rd_kafka_conf_set(kc, "group.id", group, errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(4);
    for (int p = 0; p < 4; p++)
        rd_kafka_topic_partition_list_add(parts, topic, p);
    rd_kafka_resp_err_t e = rd_kafka_committed(rk, parts, 10000);
    assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
    long long sum = 0;
    *none_committed = true;
    for (int i = 0; i < parts->cnt; i++) {
        if (parts->elems[i].offset >= 0) {
            sum += parts->elems[i].offset;
            *none_committed = false;
        }
    }
    rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_destroy(rk);
    return sum;
}

static void test_enricher__mongo_outage_commits_nothing_then_lands_once(void **state)
{
    AT_UNUSED(state);
    ts_seed_campaign(redis.port, "camp-m", "cpm", 1000, INT64_C(1000000000000), "active", 700);
    ts_mongo_t mock = {0};
    ts_mongo_start(&mock);
    live_add(mock.proc.pid); /* killed by the teardown if an assertion fails */
    /* Every insert into events fails: a retriable command error (ShutdownInProgress) three
     * times, one hang-up, then the error again until the rules are cleared. */
    static const char err91[] = "{\"op\": \"rule\", \"cmd\": \"insert\", \"collection\": \"events\", \"action\": "
                                "\"error\", \"code\": 91, \"errmsg\": \"The server is in quiesce mode\", \"times\": %d}";
    char rule[512];
    snprintf(rule, sizeof(rule), err91, 3);
    ts_mongo_ctl(&mock, rule);
    ts_mongo_ctl(&mock, "{\"op\": \"rule\", \"cmd\": \"insert\", \"collection\": \"events\", \"action\": \"hangup\"}");
    snprintf(rule, sizeof(rule), err91, -1);
    ts_mongo_ctl(&mock, rule);

    char *dir = test_dir("enr-mongo");
    enricher_t e = {0};
    enricher_start_sink(&e, "t-mongo", "g-mongo", dir, redis.port, mock.uri);
    rd_kafka_t *rk = producer();
    char tag[64];
    const int N = 120;
    for (int i = 0; i < N; i++) {
        snprintf(tag, sizeof(tag), "m:%d", i);
        produce_event(rk, "t-mongo", i % 4, &(evspec_t){.c = "camp-m", .p = "pub-1", .tag = tag});
    }
    flush_producer(rk);
    rd_kafka_destroy(rk);

    /* The sink keeps failing: the batch is retried with backoff, partitions paused. */
    size_t failed = 0;
    for (int64_t until = ts_now_ms() + 60000; ts_now_ms() < until && failed < 6; usleep(200000)) {
        ts_mongo_sync(&mock);
        failed = ts_mongo_count(&mock, "insert", "events");
    }
    if (failed < 6)
        fail_msg("%zu failed inserts seen, expected the batch to be retried past the hang-up", failed);
    assert_true(metric(&e, "adtrack_enricher_retries_total{stage=\"sink\"}") >= 5);
    assert_true(wait_status(&e, 503, 10000));
    bool none = false;
    assert_int_equal(committed_sum("t-mongo", "g-mongo", &none), 0);
    assert_true(none);
    double lag = 0;
    for (int64_t until = ts_now_ms() + 10000; ts_now_ms() < until && lag <= 0; usleep(100000))
        lag = metric(&e, "adtrack_enricher_consumer_lag");
    assert_true(lag > 0 && lag <= N);
    ts_mongo_sync(&mock);
    failed = ts_mongo_count(&mock, "insert", "events");
    for (size_t i = 0; i < failed; i++)
        assert_string_not_equal(ts_mongo_str_field(ts_mongo_report_in(&mock, "insert", "events", i), "action"),
                                "default");
    /* Still nothing committed a moment later. */
    usleep(1500000);
    assert_int_equal(committed_sum("t-mongo", "g-mongo", &none), 0);
    assert_true(none);

    /* MongoDB recovers: the batch goes through, then its offsets are committed. */
    ts_mongo_ctl(&mock, "{\"op\": \"clear\"}");
    long long sum = 0;
    for (int64_t until = ts_now_ms() + 30000; ts_now_ms() < until && sum < N; usleep(200000))
        sum = committed_sum("t-mongo", "g-mongo", &none);
    assert_int_equal(sum, N);
    assert_true(wait_status(&e, 200, 10000));
    ts_mongo_sync(&mock);

    /* Exactly once: the accepted inserts carry each event once, N in all. */
    size_t total = ts_mongo_count(&mock, "insert", "events"), landed = 0;
    char **ids = calloc((size_t)N + 1, sizeof(*ids));
    assert_non_null(ids);
    for (size_t i = 0; i < total; i++) {
        const bson_t *r = ts_mongo_report_in(&mock, "insert", "events", i);
        if (strcmp(ts_mongo_str_field(r, "action"), "default") != 0)
            continue;
        bson_iter_t it, docs;
        assert_true(ts_mongo_report_find(r, "documents", &it) && bson_iter_recurse(&it, &docs));
        while (bson_iter_next(&docs)) {
            bson_iter_t d;
            assert_true(bson_iter_recurse(&docs, &d) && bson_iter_find(&d, "_id"));
            const char *id = bson_iter_utf8(&d, NULL);
            for (size_t k = 0; k < landed; k++)
                if (strcmp(ids[k], id) == 0)
                    fail_msg("event %s inserted twice", id);
            assert_true(landed < (size_t)N);
            ids[landed++] = strdup(id);
        }
    }
    assert_int_equal(landed, N);
    for (size_t k = 0; k < landed; k++)
        free(ids[k]);
    free(ids);
    assert_int_equal(metric(&e, "adtrack_enricher_events_total{outcome=\"valid\"}"), N);
    for (int64_t until = ts_now_ms() + 10000; ts_now_ms() < until && lag != 0; usleep(100000))
        lag = metric(&e, "adtrack_enricher_consumer_lag");
    assert_true(lag == 0);
    enricher_free(&e);
    live_del(mock.proc.pid);
    ts_mongo_stop(&mock);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_enricher__round_trip, test_teardown),
        cmocka_unit_test_teardown(test_enricher__pubsub_change_applied, test_teardown),
        cmocka_unit_test_teardown(test_enricher__two_in_one_group_store_once, test_teardown),
        cmocka_unit_test_teardown(test_enricher__budget_race_within_bound, test_teardown),
        cmocka_unit_test_teardown(test_enricher__kill9_restart_exactly_once, test_teardown),
        cmocka_unit_test_teardown(test_enricher__redis_restart_resumes, test_teardown),
        cmocka_unit_test_teardown(test_enricher__mongo_outage_commits_nothing_then_lands_once, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
