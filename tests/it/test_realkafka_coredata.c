/* LABELS: it;realkafka;redis;coredata */
/*
 * test_realkafka_coredata.c: coredata's changes topic, adtrack.coredata.changes, on a real
 * Apache Kafka (1 node) where it is what deploy/topics.conf makes it: cleanup.policy=compact,
 * with the test profile's segment.ms 5 s and min.cleanable.dirty.ratio 0.01 so the log
 * cleaner runs within seconds.
 *
 * Many versions of a few keys are written through coredata's admin API (campaign puts, a
 * delete, budget top-ups that also produce budget:<id> "replenished" changes). Then, while
 * a publisher keeps changing once a second (so the active segment rolls, as any real traffic
 * does: the cleaner never touches the active segment), the topic is read from the beginning
 * until compaction has removed every superseded version of those keys. Finally a brand-new
 * consumer group subscriber reads the topic from the beginning and must get every entity's
 * current version (checked against the admin API) and content.
 *
 * Nothing in adtrack consumes this topic yet (docs/ENRICHER.md, known gaps); this test is
 * the subscriber the topic is designed for. Exits 77 unless Kafka is installed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "at_common.h"
#include "at_test_infra.h"
#include "at_test_support.h"

#include <librdkafka/rdkafka.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <bson/bson.h>

#define CHANGES "adtrack.coredata.changes"
#define ADMIN "rk-coredata-admin-token"
#define CAMPAIGNS 4  /* camp-cmp-0..3; camp-cmp-3 ends deleted */
#define VERSIONS 30  /* puts per campaign */
#define TOPUPS 5     /* budget top-ups of camp-cmp-0 */
#define MAX_KEYS 64

static ts_kafka_t kc;
static ts_redis_t redis;
static ts_proc_t cd;
static int cd_port;

/* ---- coredata and its admin API ---------------------------------------------------------------- */

static int group_setup(void **state)
{
    AT_UNUSED(state);
    if (ts_redis_start(&redis) != 0 || ts_kafka_start(&kc, 1) != 0)
        return -1;
    char listen[32], raddr[32];
    char *bin = ts_bin("adtrack-coredata"), *dir = ts_tmpdir("rk-coredata");
    cd_port = ts_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", cd_port);
    snprintf(raddr, sizeof(raddr), "127.0.0.1:%d", redis.port);
    const char *argv[] = {bin,           "--listen", listen,    "--admin-token", ADMIN,     "--data-dir",
                          dir,           "--redis",  raddr,     "--brokers",     kc.bootstraps, "--log-level",
                          "warn",        NULL};
    int rc = ts_spawn(&cd, (char *const *)argv, NULL, false, 0) == 0 && ts_wait_port(cd_port, 30000) == 0 ? 0 : -1;
    free(bin);
    free(dir);
    return rc;
}

static int group_teardown(void **state)
{
    AT_UNUSED(state);
    ts_kill(&cd);
    ts_kafka_stop(&kc);
    ts_redis_stop(&redis);
    return 0;
}

/* One admin API call; fails the test unless the status is 200 or 201. Returns the answer's
 * "version". */
static int64_t api(const char *method, const char *path, const char *body)
{
    ts_http_resp_t r;
    memset(&r, 0, sizeof(r));
    assert_int_equal(ts_http(cd_port, method, path, "Authorization: Bearer " ADMIN "\r\n", body,
                             body != NULL ? strlen(body) : 0, &r, 30000),
                     0);
    if (r.status != 200 && r.status != 201)
        fail_msg("%s %s: %d %s", method, path, r.status, r.body);
    int64_t v = -1;
    bson_t *b = bson_new_from_json((const uint8_t *)r.body, (ssize_t)r.body_len, NULL);
    bson_iter_t it;
    if (b != NULL && bson_iter_init_find(&it, b, "version") && BSON_ITER_HOLDS_NUMBER(&it))
        v = bson_iter_as_int64(&it);
    if (b != NULL)
        bson_destroy(b);
    ts_http_resp_free(&r);
    return v;
}

/* GET status of @p path (404 for a deleted entity). */
static int api_status(const char *path)
{
    ts_http_resp_t r;
    memset(&r, 0, sizeof(r));
    assert_int_equal(ts_http(cd_port, "GET", path, "Authorization: Bearer " ADMIN "\r\n", NULL, 0, &r, 30000), 0);
    int st = r.status;
    ts_http_resp_free(&r);
    return st;
}

static int64_t put_campaign(int c, int v)
{
    char path[64], body[1024];
    snprintf(path, sizeof(path), "/v1/campaigns/camp-cmp-%d", c);
    snprintf(body, sizeof(body),
             "{\"advertiser\":\"adv-cmp\",\"name\":\"Compacted %d v%d\",\"start\":\"2026-11-01T00:00:00Z\","
             "\"end\":\"2027-12-31T23:59:59Z\",\"budget_micros\":1000000000,\"pricing\":\"cpm\","
             "\"price_micros\":2500000,\"publishers\":[\"pub-cmp-0\"],\"destinations\":[]}",
             c, v);
    return api("PUT", path, body);
}

static int64_t put_publisher(const char *id, int v)
{
    char path[64], body[256];
    snprintf(path, sizeof(path), "/v1/publishers/%s", id);
    snprintf(body, sizeof(body), "{\"name\":\"Publisher v%d\",\"domain\":\"cmp.example\",\"status\":\"active\"}", v);
    return api("PUT", path, body);
}

/* Waits until coredata reports every change in Redis and acknowledged by Kafka. */
static void wait_fanout_idle(void)
{
    int64_t deadline = ts_now_ms() + 60000;
    while (ts_now_ms() < deadline) {
        ts_http_resp_t r;
        memset(&r, 0, sizeof(r));
        bool idle = ts_http(cd_port, "GET", "/readyz", NULL, NULL, 0, &r, 5000) == 0 && r.body != NULL &&
                    strstr(r.body, "\"fanout_idle\" : true") != NULL;
        ts_http_resp_free(&r);
        if (idle)
            return;
        usleep(100 * 1000);
    }
    fail_msg("coredata's fan-out not idle within 60 s");
}

/* ---- reading the topic -------------------------------------------------------------------------- */

/* Per key: how many messages the read saw, and the last one's version, op and doc.name. */
typedef struct keyinfo_s {
    char key[96];
    int count;
    int64_t version, max_version;
    int64_t first_offset;
    char op[16];
    char name[64];
} keyinfo_t;

typedef struct topicread_s {
    keyinfo_t keys[MAX_KEYS];
    int nkeys;
    long messages;
    int64_t lowest_offset;
} topicread_t;

static keyinfo_t *key_slot(topicread_t *t, const char *key)
{
    for (int i = 0; i < t->nkeys; i++)
        if (strcmp(t->keys[i].key, key) == 0)
            return &t->keys[i];
    assert_true(t->nkeys < MAX_KEYS);
    keyinfo_t *k = &t->keys[t->nkeys++];
    memset(k, 0, sizeof(*k));
    snprintf(k->key, sizeof(k->key), "%s", key);
    k->first_offset = -1;
    return k;
}

static void note_message(topicread_t *t, const char *key, const char *value, size_t len, int64_t offset)
{
    keyinfo_t *k = key_slot(t, key != NULL ? key : "(null)");
    bson_t *b = bson_new_from_json((const uint8_t *)value, (ssize_t)len, NULL);
    if (b == NULL)
        fail_msg("%s at offset %lld is not JSON: %.*s", CHANGES, (long long)offset, (int)len, value);
    bson_iter_t it;
    k->count++;
    if (k->first_offset < 0)
        k->first_offset = offset;
    k->version = bson_iter_init_find(&it, b, "version") && BSON_ITER_HOLDS_NUMBER(&it) ? bson_iter_as_int64(&it) : -1;
    if (k->version > k->max_version)
        k->max_version = k->version;
    snprintf(k->op, sizeof(k->op), "%s",
             bson_iter_init_find(&it, b, "op") && BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : "");
    bson_iter_t name;
    k->name[0] = '\0';
    if (bson_iter_init(&it, b) && bson_iter_find_descendant(&it, "doc.name", &name) && BSON_ITER_HOLDS_UTF8(&name))
        snprintf(k->name, sizeof(k->name), "%s", bson_iter_utf8(&name, NULL));
    bson_destroy(b);
    t->messages++;
    if (t->lowest_offset < 0 || offset < t->lowest_offset)
        t->lowest_offset = offset;
}

/* Reads the whole topic from the beginning (a fresh reader each time, no group). */
static void read_topic(topicread_t *t)
{
    memset(t, 0, sizeof(*t));
    t->lowest_offset = -1;
    ts_kmsg_t *msgs = NULL;
    long n = ts_kafka_consume_all(kc.bootstraps, CHANGES, 1, 1000, 30000, &msgs);
    assert_true(n > 0);
    for (long i = 0; i < n; i++)
        note_message(t, msgs[i].key, msgs[i].value, msgs[i].value_len, msgs[i].offset);
    ts_kmsgs_free(msgs, n);
}

/*
 * A brand-new subscriber: joins a new consumer group (auto.offset.reset=earliest), reads until
 * the end of every partition (partition EOF), and commits nothing. What a late service
 * would do to build its state from the topic.
 */
static void subscribe_from_start(topicread_t *t)
{
    char errstr[256], gid[64];
    memset(t, 0, sizeof(*t));
    t->lowest_offset = -1;
    snprintf(gid, sizeof(gid), "rk-coredata-late-%ld", (long)getpid());
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {{"bootstrap.servers", kc.bootstraps}, {"group.id", gid},
                           {"auto.offset.reset", "earliest"},    {"enable.auto.commit", "false"},
                           {"enable.partition.eof", "true"},     {"log_level", "3"}};
    for (size_t i = 0; i < AT_ARRAY_LEN(kv); i++)
        assert_int_equal(rd_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, sizeof(errstr)), RD_KAFKA_CONF_OK);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_poll_set_consumer(rk);
    rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(sub, CHANGES, RD_KAFKA_PARTITION_UA);
    assert_int_equal(rd_kafka_subscribe(rk, sub), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_topic_partition_list_destroy(sub);
    int64_t deadline = ts_now_ms() + 60000;
    bool eof = false;
    while (!eof && ts_now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF)
            eof = true; /* one partition (deploy/topics.conf) */
        else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            char key[96];
            snprintf(key, sizeof(key), "%.*s", (int)AT_MIN(m->key_len, sizeof(key) - 1), (const char *)m->key);
            note_message(t, m->key != NULL ? key : NULL, m->payload, m->len, m->offset);
        }
        else
            fprintf(stderr, "[rkc] subscriber: %s\n", rd_kafka_message_errstr(m));
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    assert_true(eof);
}

/* ---- the test ----------------------------------------------------------------------------------- */

static void test_changes__compacted_and_new_subscriber_gets_current(void **state)
{
    AT_UNUSED(state);
    int64_t current[CAMPAIGNS] = {0};
    int64_t t0 = ts_now_ms();
    int64_t pub_v = put_publisher("pub-cmp-0", 0);
    for (int v = 1; v <= VERSIONS; v++)
        for (int c = 0; c < CAMPAIGNS; c++)
            current[c] = put_campaign(c, v);
    for (int i = 0; i < TOPUPS; i++)
        current[0] = api("POST", "/v1/campaigns/camp-cmp-0/budget", "{\"topup_micros\":1000000}");
    pub_v = put_publisher("pub-cmp-0", 1);
    current[3] = api("DELETE", "/v1/campaigns/camp-cmp-3", NULL);
    wait_fanout_idle();
    int64_t t_written = ts_now_ms();
    fprintf(stderr, "[rkc] %d API writes acknowledged and fanned out in %lld ms\n",
            2 + CAMPAIGNS * VERSIONS + TOPUPS + 1, (long long)(t_written - t0));

    /* Before compaction: every version is there (or compaction already began: then fewer).
     * The highest version of each key is the one that must survive. */
    topicread_t before;
    read_topic(&before);
    keyinfo_t *budget = key_slot(&before, "budget:camp-cmp-0");
    assert_true(budget->count >= 1); /* top-ups produce "replenished" changes */
    int64_t budget_current = budget->max_version;
    fprintf(stderr, "[rkc] first read: %ld messages, %d of campaign:camp-cmp-1, %d of budget:camp-cmp-0\n",
            before.messages, key_slot(&before, "campaign:camp-cmp-1")->count, budget->count);

    /* Keep changing another entity once a second, so segments roll (segment.ms 5 s: the
     * cleaner never touches the active segment), until every tracked key is down to one. */
    const char *tracked[] = {"campaign:camp-cmp-0", "campaign:camp-cmp-1", "campaign:camp-cmp-2",
                             "campaign:camp-cmp-3", "budget:camp-cmp-0",   "publisher:pub-cmp-0"};
    topicread_t after;
    int64_t deadline = ts_now_ms() + 120000;
    int tick = 0;
    bool compacted = false;
    while (!compacted && ts_now_ms() < deadline) {
        put_publisher("pub-cmp-tick", ++tick);
        read_topic(&after);
        compacted = true;
        for (size_t i = 0; i < AT_ARRAY_LEN(tracked); i++)
            compacted = compacted && key_slot(&after, tracked[i])->count == 1;
        if (!compacted)
            usleep(1000 * 1000);
    }
    int64_t t_compacted = ts_now_ms();
    if (!compacted) {
        for (size_t i = 0; i < AT_ARRAY_LEN(tracked); i++)
            fprintf(stderr, "[rkc] %s: %d messages left\n", tracked[i], key_slot(&after, tracked[i])->count);
        fail_msg("superseded versions still in %s 120 s after the writes", CHANGES);
    }
    fprintf(stderr, "[rkc] compacted %lld ms after the last write: %ld messages before, %ld after (lowest offset "
                    "now %lld), %d ticks written meanwhile\n",
            (long long)(t_compacted - t_written), before.messages, after.messages, (long long)after.lowest_offset,
            tick);
    /* Superseded versions are gone, not just hidden: fewer messages, and the surviving one
     * of each key is its latest. */
    assert_true(after.messages < before.messages);

    /* A late subscriber builds the current state from the topic alone. */
    topicread_t late;
    subscribe_from_start(&late);
    for (int c = 0; c < CAMPAIGNS; c++) {
        char key[64], name[64], path[64];
        snprintf(key, sizeof(key), "campaign:camp-cmp-%d", c);
        keyinfo_t *k = key_slot(&late, key);
        assert_int_equal(k->count, 1);
        if (k->version != current[c])
            fail_msg("%s: the subscriber got version %lld, the API says %lld", key, (long long)k->version,
                     (long long)current[c]);
        snprintf(path, sizeof(path), "/v1/campaigns/camp-cmp-%d", c);
        if (c == 3) {
            assert_string_equal(k->op, "delete"); /* a delete is a message, kept by compaction */
            assert_int_equal(api_status(path), 404);
        } else {
            snprintf(name, sizeof(name), "Compacted %d v%d", c, VERSIONS);
            assert_string_equal(k->name, name);
            assert_int_equal(api("GET", path, NULL), current[c]);
        }
    }
    keyinfo_t *pk = key_slot(&late, "publisher:pub-cmp-0");
    assert_int_equal(pk->count, 1);
    assert_int_equal(pk->version, pub_v);
    assert_string_equal(pk->name, "Publisher v1");
    keyinfo_t *bk = key_slot(&late, "budget:camp-cmp-0");
    assert_int_equal(bk->count, 1);
    assert_int_equal(bk->version, budget_current);
    assert_string_equal(bk->op, "replenished");
    /* The ticking publisher: its latest version is there too (older ones may or may not be,
     * depending on which segment they are in). */
    keyinfo_t *tk = key_slot(&late, "publisher:pub-cmp-tick");
    assert_true(tk->count >= 1);
    assert_int_equal(tk->version, api("GET", "/v1/publishers/pub-cmp-tick", NULL));
    assert_int_equal(late.nkeys, 7);
    fprintf(stderr, "[rkc] late subscriber: %ld messages, %d keys, every one at its current version\n", late.messages,
            late.nkeys);
}

int main(void)
{
    if (ts_infra_skip(true, false))
        return TS_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_changes__compacted_and_new_subscriber_gets_current),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
