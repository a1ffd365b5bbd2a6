/* LABELS: it;realkafka;ferretdb;redis;enricher */
/*
 * test_realkafka_enricher.c: the enricher's consumer group on a real 3-node Apache Kafka
 * cluster (RF 3, min.insync.replicas 2), storing into FerretDB, budgets in a real
 * redis-server. One scenario, in phases:
 *   1. a backlog of events in adtrack.events.raw (12 partitions), and a producer that keeps
 *      adding to it at a fixed rate for the whole run;
 *   2. enricher A alone drains it;
 *   3. enricher B joins the group: a real rebalance, both then store events;
 *   4. A is SIGKILLed right after one of its batches reached the sink (so, most of the time,
 *      before that batch's offsets were committed): the coordinator notices after
 *      session.timeout.ms and B takes every partition, redelivered batch included;
 *   5. enricher C joins, then B gets SIGTERM and leaves the group (LeaveGroup: a rebalance
 *      without waiting for a timeout), C drains the rest.
 * Afterwards: every valid event is in adtrack.events exactly once and every bot event in
 * adtrack.rejected exactly once (counted by each event's unique tag); each campaign's spend
 * in Redis equals the sum of price_micros of its stored events and the per-event charge
 * records count each chargeable event once; the group's committed offset of every partition
 * is its end offset. The rebalance times are printed as "[rke] ..." lines.
 *
 * Session timeout: the enricher's default session.timeout.ms is 10000; the test passes
 * --kafka-prop session.timeout.ms=6000 (the broker's group.min.session.timeout.ms, so the
 * smallest a member may ask for) to keep the SIGKILL phase short. heartbeat.interval.ms
 * stays at the enricher's 1000.
 *
 * Exits 77 (skipped) unless both Kafka and FerretDB are installed (scripts/kafka.sh install,
 * scripts/ferretdb.sh install).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "at_common.h"
#include "at_event.h"
#include "at_mongo.h"
#include "at_test_infra.h"
#include "at_test_observe.h"
#include "at_test_support.h"

#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <bson/bson.h>
#include <mongoc/mongoc.h>

#define RAW "adtrack.events.raw"
#define PARTS 12     /* partitions of the raw topic (deploy/topics.conf) */
#define CAMPAIGNS 8  /* camp-rke-0..7: even CPM, odd CPC */
#define CPM_PRICE 2000000 /* an impression costs 2000 micros */
#define CPC_PRICE 30000   /* a click costs 30000 micros */
#define MAX_EVENTS 200000
#define SESSION_MS 6000

static ts_kafka_t kc;
static ts_ferretdb_t fdb;
static ts_redis_t redis;
static char group[64];
/* Event i has the time ts_base + i milliseconds, so the stored documents of a range of
 * offsets can be found by their "ts" (offset o of partition p is event o * PARTS + p). */
static int64_t ts_base;

/* ---- the events: a pure function of their index ---------------------------------------------- */

/* Event i is at offset o = i / PARTS of partition i % PARTS (see produce_one). Its campaign,
 * type and user agent follow o, so every stretch of a partition has every kind: campaign
 * camp-rke-<o % CAMPAIGNS>; a click when o % 20 == 7, a view when o % 20 == 13, a bot (so
 * rejected) when o % 50 == 11, else an impression. Every even o is then a chargeable CPM
 * impression, so any batch of more than 2 * PARTS documents charges something. */
static long ev_o(long i)
{
    return i / PARTS;
}

static int ev_campaign(long i)
{
    return (int)(ev_o(i) % CAMPAIGNS);
}

static at_event_type_t ev_type(long i)
{
    return ev_o(i) % 20 == 7 ? AT_EV_CLICK : ev_o(i) % 20 == 13 ? AT_EV_VIEW : AT_EV_IMP;
}

static bool ev_bot(long i)
{
    return ev_o(i) % 50 == 11;
}

/* What a valid event i costs its campaign (0: not chargeable). */
static int64_t ev_price(long i)
{
    bool cpm = ev_campaign(i) % 2 == 0;
    if (ev_bot(i))
        return 0;
    if (cpm && ev_type(i) == AT_EV_IMP)
        return (CPM_PRICE + 500) / 1000;
    if (!cpm && ev_type(i) == AT_EV_CLICK)
        return CPC_PRICE;
    return 0;
}

/* ---- Redis: core data as coredata writes it (docs/CORE-DATA.md) ------------------------------- */

static redisContext *rconnect(void)
{
    struct timeval tv = {5, 0};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", redis.port, tv);
    if (rc == NULL || rc->err)
        fail_msg("redis 127.0.0.1:%d: %s", redis.port, rc ? rc->errstr : "no context");
    redisSetTimeout(rc, tv);
    return rc;
}

static long long rcmd_int(redisContext *rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer : r->type == REDIS_REPLY_STRING ? atoll(r->str) : 0;
    freeReplyObject(r);
    return v;
}

static void seed_core_data(void)
{
    redisContext *rc = rconnect();
    const char *pub = "{\"id\":\"pub-1\",\"name\":\"Daily News\",\"domain\":\"news.example\",\"status\":\"active\","
                      "\"version\":2}";
    rcmd_int(rc, "HSET adtrack:publisher:pub-1 version 2 doc %s", pub);
    rcmd_int(rc, "SADD adtrack:publishers pub-1");
    for (int c = 0; c < CAMPAIGNS; c++) {
        char doc[1024];
        bool cpm = c % 2 == 0;
        snprintf(doc, sizeof(doc),
                 "{\"id\":\"camp-rke-%d\",\"advertiser\":\"adv-%d\",\"advertiser_name\":\"Advertiser %d\","
                 "\"name\":\"Campaign %d\",\"status\":\"active\",\"start\":\"2020-01-01T00:00:00Z\","
                 "\"end\":\"2099-01-01T00:00:00Z\",\"budget_micros\":1000000000000,\"pricing\":\"%s\","
                 "\"price_micros\":%d,\"publishers\":[\"pub-1\"],\"destinations\":[],\"version\":%d}",
                 c, c, c, c, cpm ? "cpm" : "cpc", cpm ? CPM_PRICE : CPC_PRICE, 10 + c);
        rcmd_int(rc, "HSET adtrack:campaign:camp-rke-%d version %d doc %s", c, 10 + c, doc);
        rcmd_int(rc, "SADD adtrack:campaigns camp-rke-%d", c);
    }
    redisFree(rc);
}

/* ---- the producer: a backlog, then a steady stream ------------------------------------------- */

typedef struct feeder_s {
    rd_kafka_t *rk;
    at_uuid7_gen_t gen;
    atomic_long next;  /* index of the next event to produce */
    atomic_bool stop;
    int rate;          /* events/s of the stream */
    pthread_t thread;
    bool running;
} feeder_t;

static feeder_t feeder;

static void feeder_init(feeder_t *f)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *kv[][2] = {{"bootstrap.servers", kc.bootstraps}, {"enable.idempotence", "true"}, {"acks", "all"},
                           {"linger.ms", "5"}, {"message.timeout.ms", "120000"}, {"log_level", "3"}};
    for (size_t i = 0; i < AT_ARRAY_LEN(kv); i++)
        assert_int_equal(rd_kafka_conf_set(conf, kv[i][0], kv[i][1], errstr, sizeof(errstr)), RD_KAFKA_CONF_OK);
    f->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(f->rk);
    atomic_store(&f->next, 0);
    atomic_store(&f->stop, false);
}

/* Produces event @p i as the collector writes it (relaxed Extended JSON), to its partition.
 * The idempotent producer keeps each partition in index order, so event i is at offset
 * i / PARTS of partition i % PARTS. */
static void produce_one(feeder_t *f, long i)
{
    at_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.ts_ms = ts_base + i;
    at_uuid7_next(&f->gen, (uint64_t)ev.ts_ms, &ev.id);
    ev.type = ev_type(i);
    ev.src = AT_SRC_PIXEL;
    char c[32], tag[32];
    snprintf(c, sizeof(c), "camp-rke-%d", ev_campaign(i));
    snprintf(tag, sizeof(tag), "rke:%ld", i);
    ev.c = (at_str_t){c, strlen(c)};
    ev.p = AT_STR_LIT("pub-1");
    const char *ua = ev_bot(i) ? "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
                               : "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";
    ev.ua = (at_str_t){ua, strlen(ua)};
    ev.ip = AT_STR_LIT("198.51.100.7");
    ev.tag = (at_str_t){tag, strlen(tag)};
    size_t len;
    char *json = at_event_to_json(&ev, &len);
    if (json == NULL)
        abort();
    rd_kafka_resp_err_t e;
    while ((e = rd_kafka_producev(f->rk, RD_KAFKA_V_TOPIC(RAW), RD_KAFKA_V_PARTITION((int32_t)(i % PARTS)),
                                  RD_KAFKA_V_KEY(c, strlen(c)), RD_KAFKA_V_VALUE(json, len),
                                  RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END)) ==
           RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(f->rk, 50);
    bson_free(json);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "produce rke:%ld: %s\n", i, rd_kafka_err2str(e));
        abort();
    }
    rd_kafka_poll(f->rk, 0);
}

static void *feeder_main(void *arg)
{
    feeder_t *f = arg;
    int64_t t0 = ts_now_ms();
    long base = atomic_load(&f->next);
    while (!atomic_load(&f->stop)) {
        /* On schedule: event base + k is due at k / rate seconds after the start. */
        long due = base + (long)((ts_now_ms() - t0) * f->rate / 1000);
        long i = atomic_load(&f->next);
        if (i >= due || i >= MAX_EVENTS) {
            rd_kafka_poll(f->rk, 5);
            continue;
        }
        for (; i < due && i < MAX_EVENTS; i++)
            produce_one(f, i);
        atomic_store(&f->next, i);
    }
    return NULL;
}

static void feeder_start_stream(feeder_t *f, int rate)
{
    f->rate = rate;
    assert_int_equal(pthread_create(&f->thread, NULL, feeder_main, f), 0);
    f->running = true;
}

/* Stops the stream and waits until Kafka acknowledged everything; returns the count. */
static long feeder_finish(feeder_t *f)
{
    if (f->running) {
        atomic_store(&f->stop, true);
        pthread_join(f->thread, NULL);
        f->running = false;
    }
    rd_kafka_resp_err_t e = rd_kafka_flush(f->rk, 120000);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        fail_msg("the producer could not flush: %s", rd_kafka_err2str(e));
    return atomic_load(&f->next);
}

static void feeder_destroy(feeder_t *f)
{
    if (f->running) {
        atomic_store(&f->stop, true);
        pthread_join(f->thread, NULL);
        f->running = false;
    }
    if (f->rk != NULL) {
        rd_kafka_flush(f->rk, 10000);
        rd_kafka_destroy(f->rk);
        f->rk = NULL;
    }
}

/* ---- enrichers ------------------------------------------------------------------------------ */

typedef struct enricher_s {
    ts_proc_t proc;
    int port;
    const char *name;
} enricher_t;

static enricher_t enr[3];

static void enricher_start(enricher_t *e, const char *name)
{
    char listen[32], rport[32], mongo[300], client_id[64];
    char *bin = ts_bin("adtrack-enricher");
    e->name = name;
    e->port = ts_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", e->port);
    snprintf(rport, sizeof(rport), "127.0.0.1:%d", redis.port);
    snprintf(mongo, sizeof(mongo), "%s/?w=1", fdb.uri);
    snprintf(client_id, sizeof(client_id), "client.id=rke-%s", name);
    /* --mongo-w 1: FerretDB ignores write concerns (docs/MONGODB.md); majority would only
     * pretend. --retry-max-ms 2000: a failed batch is retried soon. */
    const char *argv[] = {bin,           "--brokers",   kc.bootstraps, "--group",        group,
                          "--redis",     rport,         "--mongo",     mongo,            "--mongo-w",
                          "1",           "--listen",    listen,        "--batch-max-ms", "50",
                          "--retry-max-ms", "2000",     "--kafka-prop", "session.timeout.ms=6000",
                          "--kafka-prop", client_id,    "--log-level", "warn",        NULL};
    assert_int_equal(ts_spawn(&e->proc, (char *const *)argv, NULL, false, 0), 0);
    free(bin);
    assert_int_equal(ts_wait_port(e->port, 30000), 0);
}

static int teardown_enrichers(void **state)
{
    AT_UNUSED(state);
    for (size_t i = 0; i < AT_ARRAY_LEN(enr); i++)
        ts_kill(&enr[i].proc);
    feeder_destroy(&feeder);
    return 0;
}

static double assigned(const enricher_t *e)
{
    return ts_metric(e->port, "adtrack_enricher_assigned_partitions");
}

static double valid_events(const enricher_t *e)
{
    return ts_metric(e->port, "adtrack_enricher_events_total{outcome=\"valid\"}");
}

static double sink_inserted(const enricher_t *e)
{
    return ts_metric(e->port, "adtrack_enricher_sink_documents_total{result=\"inserted\"}");
}

/* Polls until the listed enrichers hold every partition between them, each at least one.
 * Returns the milliseconds it took. */
static int64_t wait_assignment(enricher_t *const *es, size_t n, int timeout_ms, const char *what)
{
    int64_t t0 = ts_now_ms(), deadline = t0 + timeout_ms;
    double got[3] = {0};
    while (ts_now_ms() < deadline) {
        double sum = 0;
        bool each = true;
        for (size_t i = 0; i < n; i++) {
            got[i] = assigned(es[i]);
            sum += got[i];
            each = each && got[i] > 0;
        }
        if (each && sum == PARTS)
            return ts_now_ms() - t0;
        usleep(50 * 1000);
    }
    fail_msg("%s: partitions not shared within %d ms (%g %g %g)", what, timeout_ms, got[0], got[1], got[2]);
    return -1;
}

/* Polls until @p e's count of valid events passed @p above (it is doing real work). */
static void wait_valid_above(const enricher_t *e, double above, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    double v = -1;
    while (ts_now_ms() < deadline) {
        if ((v = valid_events(e)) > above)
            return;
        usleep(50 * 1000);
    }
    fail_msg("enricher %s stored nothing more within %d ms (valid %g, wanted > %g)", e->name, timeout_ms, v, above);
}

/* ---- FerretDB: what was stored --------------------------------------------------------------- */

static mongoc_client_t *peek_client(void)
{
    bson_error_t e;
    mongoc_uri_t *u = mongoc_uri_new_with_error(fdb.uri, &e);
    if (u == NULL)
        fail_msg("%s: %s", fdb.uri, e.message);
    mongoc_uri_set_option_as_int32(u, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, 5000);
    mongoc_uri_set_option_as_int32(u, MONGOC_URI_SOCKETTIMEOUTMS, 60000);
    mongoc_client_t *c = mongoc_client_new_from_uri(u);
    mongoc_uri_destroy(u);
    assert_non_null(c);
    return c;
}

static int64_t count_tagged(const char *coll)
{
    mongoc_client_t *c = peek_client();
    mongoc_collection_t *col = mongoc_client_get_collection(c, "adtrack", coll);
    bson_t *filter = BCON_NEW("tag", BCON_REGEX("^rke:", ""));
    bson_error_t e;
    int64_t n = mongoc_collection_count_documents(col, filter, NULL, NULL, NULL, &e);
    if (n < 0)
        fprintf(stderr, "[rke] count %s: %s\n", coll, e.message);
    bson_destroy(filter);
    mongoc_collection_destroy(col);
    mongoc_client_destroy(c);
    return n;
}

/* What one collection holds for the run: copies per tag, and price_micros summed per
 * campaign (events only). */
typedef struct stored_s {
    uint8_t *copies; /* copies[i]: documents tagged rke:<i> (saturating) */
    int64_t spend[CAMPAIGNS];
    long docs;
    long untagged;        /* tag not of the form rke:<n> below the produced count */
    long wrong_reason;    /* rejected documents whose reason is not "bot" */
} stored_t;

static void read_stored(const char *coll, long produced, stored_t *s)
{
    memset(s, 0, sizeof(*s));
    s->copies = calloc((size_t)produced, 1);
    assert_non_null(s->copies);
    mongoc_client_t *c = peek_client();
    mongoc_collection_t *col = mongoc_client_get_collection(c, "adtrack", coll);
    bson_t *filter = BCON_NEW("tag", BCON_REGEX("^rke:", ""));
    bson_t *opts = BCON_NEW("projection", "{", "tag", BCON_INT32(1), "c", BCON_INT32(1), "price_micros",
                            BCON_INT32(1), "reason", BCON_INT32(1), "}", "batchSize", BCON_INT32(5000));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(col, filter, opts, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc)) {
        bson_iter_t it;
        s->docs++;
        long i = -1;
        if (bson_iter_init_find(&it, doc, "tag") && BSON_ITER_HOLDS_UTF8(&it)) {
            char *end;
            const char *t = bson_iter_utf8(&it, NULL) + strlen("rke:");
            i = strtol(t, &end, 10);
            if (*end != '\0' || end == t)
                i = -1;
        }
        if (i < 0 || i >= produced) {
            s->untagged++;
            continue;
        }
        if (s->copies[i] < 255)
            s->copies[i]++;
        if (bson_iter_init_find(&it, doc, "price_micros") && BSON_ITER_HOLDS_NUMBER(&it))
            s->spend[ev_campaign(i)] += bson_iter_as_int64(&it);
        if (bson_iter_init_find(&it, doc, "reason") &&
            (!BSON_ITER_HOLDS_UTF8(&it) || strcmp(bson_iter_utf8(&it, NULL), "bot") != 0))
            s->wrong_reason++;
    }
    bson_error_t e;
    if (mongoc_cursor_error(cur, &e))
        fail_msg("find in %s: %s", coll, e.message);
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(filter);
    mongoc_collection_destroy(col);
    mongoc_client_destroy(c);
}

/*
 * SIGKILLs @p e while it holds a batch that is in the sink but not committed, so the kill
 * forces a redelivery. Each attempt reads the group's committed offsets of e's partitions
 * (DescribeConsumerGroups tells which), waits for e's sink counter to move, freezes e at once
 * (SIGSTOP) and reads the offsets again. Unchanged: the batch just written was not committed
 * (its commit can only come after its sink write), so SIGKILL. Changed: a commit slipped in
 * between; SIGCONT and try again, well within the session timeout. Fills @p k: e's partitions
 * and their committed offsets at the kill, how many documents the batch inserted, and the
 * SIGSTOP time (e's last heartbeat).
 */
typedef struct kill_s {
    bool owned[PARTS];
    int64_t committed[PARTS];
    long docs;
    int64_t t_stop;
} kill_t;

static void kill_mid_batch(enricher_t *e, const char *client_id, kill_t *k)
{
    int64_t deadline = ts_now_ms() + 90000;
    int attempts = 0;
    while (ts_now_ms() < deadline) {
        bool *owned = k->owned;
        int64_t *before = k->committed, after[PARTS];
        int nowned = ts_group_assignment(kc.bootstraps, group, client_id, RAW, owned, PARTS);
        assert_true(nowned > 0);
        assert_int_equal(ts_group_offsets(kc.bootstraps, group, RAW, PARTS, before, NULL), 0);
        double ins = sink_inserted(e), now_ins = ins;
        int64_t until = ts_now_ms() + 10000;
        while ((now_ins = sink_inserted(e)) <= ins && ts_now_ms() < until)
            usleep(500);
        if (now_ins <= ins)
            fail_msg("enricher %s wrote nothing to the sink for 10 s", e->name);
        assert_int_equal(ts_signal(&e->proc, SIGSTOP), 0);
        k->t_stop = ts_now_ms();
        attempts++;
        assert_int_equal(ts_group_offsets(kc.bootstraps, group, RAW, PARTS, after, NULL), 0);
        bool unchanged = true;
        for (int p = 0; p < PARTS; p++)
            unchanged = unchanged && (!owned[p] || after[p] == before[p]);
        if (unchanged) {
            assert_int_equal(ts_signal(&e->proc, SIGKILL), 0);
            int status;
            assert_int_equal(ts_wait(&e->proc, 10000, &status), 0);
            fprintf(stderr, "[rke] attempt %d: %s frozen right after a sink write of %g documents whose offsets "
                            "(on its %d partitions) were not committed: SIGKILL\n",
                    attempts, e->name, now_ins - ins, nowned);
            k->docs = (long)(now_ins - ins);
            return;
        }
        assert_int_equal(ts_signal(&e->proc, SIGCONT), 0);
    }
    fail_msg("in %d attempts over 90 s, %s was never caught between a sink write and its commit", attempts, e->name);
}

/* ---- fixtures ------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    AT_UNUSED(state);
    at_mongo_init();
    snprintf(group, sizeof(group), "rke-%ld", (long)getpid());
    if (ts_ferretdb_start(&fdb) != 0 || ts_redis_start(&redis) != 0)
        return -1;
    return ts_kafka_start(&kc, 3) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    AT_UNUSED(state);
    ts_kafka_stop(&kc);
    ts_redis_stop(&redis);
    ts_ferretdb_stop(&fdb);
    return 0;
}

/* ---- the test -------------------------------------------------------------------------------- */

static void test_group__join_kill_leave_store_and_charge_once(void **state)
{
    AT_UNUSED(state);
    const long backlog = getenv("RKE_BACKLOG") ? atol(getenv("RKE_BACKLOG")) : 20000;
    const int rate = getenv("RKE_RATE") ? atoi(getenv("RKE_RATE")) : 400;
    seed_core_data();
    feeder_init(&feeder);

    /* 1. The backlog, acknowledged by the cluster (acks=all, RF 3) before anyone reads. */
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    ts_base = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
    int64_t t0 = ts_now_ms();
    for (long i = 0; i < backlog; i++)
        produce_one(&feeder, i);
    atomic_store(&feeder.next, backlog);
    assert_int_equal(rd_kafka_flush(feeder.rk, 120000), RD_KAFKA_RESP_ERR_NO_ERROR);
    fprintf(stderr, "[rke] backlog of %ld events produced in %lld ms\n", backlog, (long long)(ts_now_ms() - t0));
    feeder_start_stream(&feeder, rate);

    /* 2. A alone. */
    enricher_t *a = &enr[0], *b = &enr[1], *c = &enr[2];
    t0 = ts_now_ms();
    enricher_start(a, "A");
    int64_t ms = wait_assignment((enricher_t *const[]){a}, 1, 60000, "A alone");
    fprintf(stderr, "[rke] A joined and got all %d partitions %lld ms after its start\n", PARTS,
            (long long)(ts_now_ms() - t0));
    AT_UNUSED(ms);
    wait_valid_above(a, 0, 60000);
    int64_t stored_at_join = count_tagged("events");

    /* 3. B joins while A drains: a real rebalance (JoinGroup/SyncGroup round, eager). */
    t0 = ts_now_ms();
    enricher_start(b, "B");
    ms = wait_assignment((enricher_t *const[]){a, b}, 2, 60000, "B joins");
    fprintf(stderr, "[rke] B joined with %ld of the backlog stored: partitions shared (A %g, B %g) %lld ms after "
                    "B's start\n", (long)stored_at_join, assigned(a), assigned(b), (long long)(ts_now_ms() - t0));
    /* Both really work: each stores more after the rebalance. */
    double a_before = valid_events(a);
    wait_valid_above(b, 0, 60000);
    wait_valid_above(a, a_before, 60000);

    /* 4. SIGKILL A while a batch of its is stored but not committed: the coordinator
     * notices after session.timeout.ms, B takes every partition and gets that batch again. */
    kill_t kl;
    memset(&kl, 0, sizeof(kl));
    kill_mid_batch(a, "rke-A", &kl);
    long redo = kl.docs;
    int64_t t_stop = kl.t_stop;
    int64_t t_kill = ts_now_ms();
    int status;
    int64_t deadline = ts_now_ms() + 60000;
    double bp = 0;
    while ((bp = assigned(b)) != PARTS && ts_now_ms() < deadline)
        usleep(50 * 1000);
    if (bp != PARTS)
        fail_msg("B did not take over A's partitions within 60 s of the SIGKILL (B has %g)", bp);
    int64_t takeover_ms = ts_now_ms() - t_stop;
    fprintf(stderr, "[rke] B held all %d partitions %lld ms after A's last heartbeat (SIGSTOP), %lld ms after the "
                    "SIGKILL (session.timeout.ms %d)\n", PARTS, (long long)takeover_ms,
            (long long)(ts_now_ms() - t_kill), SESSION_MS);
    /* The coordinator waits out the session: B cannot have everything much sooner. */
    assert_true(takeover_ms >= SESSION_MS - 1500);
    /* B gets the batch again and stores it again: the sink finds those documents already
     * there (duplicate _id), and the budget script answers already_charged for their charges
     * (checked in sum below: spend == prices of what is stored). */
    deadline = ts_now_ms() + 60000;
    double dup_b = 0, again_b = 0;
    while (ts_now_ms() < deadline && (dup_b = ts_metric(b->port, "adtrack_enricher_sink_documents_total{result="
                                                                  "\"duplicate\"}")) < redo)
        usleep(100 * 1000);
    /* Charges are counted when a batch is committed: wait until B committed 5 offsets past
     * the redelivered batch's start on each of A's partitions. A batch of more than 4 * n
     * documents has 5 or more on one of A's n partitions, two of them chargeable (every even
     * offset is: see ev_o), and those are then counted. */
    int64_t now_committed[PARTS];
    for (bool past = false; !past && ts_now_ms() < deadline; usleep(100 * 1000)) {
        assert_int_equal(ts_group_offsets(kc.bootstraps, group, RAW, PARTS, now_committed, NULL), 0);
        past = true;
        for (int p = 0; p < PARTS; p++)
            past = past && (!kl.owned[p] || now_committed[p] >= kl.committed[p] + 5);
    }
    again_b = ts_metric(b->port, "adtrack_enricher_charges_total{verdict=\"already_charged\"}");
    fprintf(stderr, "[rke] B found %g documents already stored and %g charges already made (A's batch: %ld documents)"
                    "\n", dup_b, again_b, redo);
    assert_true(dup_b >= redo);
    int a_parts = 0;
    for (int p = 0; p < PARTS; p++)
        a_parts += kl.owned[p] ? 1 : 0;
    if (redo > 4 * a_parts)
        assert_true(again_b >= 2);

    /* 5. C joins, then B leaves cleanly (SIGTERM: finish and commit the batch in hand,
     * LeaveGroup), and C takes everything without waiting for a session to expire. */
    t0 = ts_now_ms();
    enricher_start(c, "C");
    ms = wait_assignment((enricher_t *const[]){b, c}, 2, 60000, "C joins");
    fprintf(stderr, "[rke] C joined: partitions shared (B %g, C %g) %lld ms after C's start\n", assigned(b),
            assigned(c), (long long)ms);
    int64_t t_term = ts_now_ms();
    ts_signal(&b->proc, SIGTERM);
    assert_int_equal(ts_wait(&b->proc, 30000, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ts_kill(&b->proc);
    deadline = ts_now_ms() + 60000;
    double cp = 0;
    while ((cp = assigned(c)) != PARTS && ts_now_ms() < deadline)
        usleep(20 * 1000);
    if (cp != PARTS)
        fail_msg("C did not take over after B left (C has %g)", cp);
    int64_t leave_ms = ts_now_ms() - t_term;
    fprintf(stderr, "[rke] B left (SIGTERM, exit 0); C held all %d partitions %lld ms after the SIGTERM\n", PARTS,
            (long long)leave_ms);
    /* A LeaveGroup rebalance does not wait for the session timeout. */
    assert_true(leave_ms < SESSION_MS);

    /* 6. The stream stops; C drains what is left. */
    long produced = feeder_finish(&feeder);
    long want_events = 0, want_bots = 0, want_charges[CAMPAIGNS] = {0};
    int64_t want_spend[CAMPAIGNS] = {0};
    for (long i = 0; i < produced; i++) {
        if (ev_bot(i)) {
            want_bots++;
            continue;
        }
        want_events++;
        if (ev_price(i) > 0) {
            want_spend[ev_campaign(i)] += ev_price(i);
            want_charges[ev_campaign(i)]++;
        }
    }
    t0 = ts_now_ms();
    deadline = t0 + 150000;
    int64_t have = 0;
    while ((have = count_tagged("events")) < want_events && ts_now_ms() < deadline)
        usleep(250 * 1000);
    fprintf(stderr, "[rke] %ld produced (%ld valid, %ld bots): %lld stored; drain after the stream stopped took "
                    "%lld ms\n", produced, want_events, want_bots, (long long)have, (long long)(ts_now_ms() - t0));
    if (have < want_events)
        fail_msg("only %lld of %ld valid events stored within 150 s", (long long)have, want_events);

    /* Offsets: every partition committed up to its end, nothing left behind. */
    int64_t committed[PARTS], high[PARTS];
    deadline = ts_now_ms() + 30000;
    bool done = false;
    while (!done && ts_now_ms() < deadline) {
        assert_int_equal(ts_group_offsets(kc.bootstraps, group, RAW, PARTS, committed, high), 0);
        done = true;
        for (int p = 0; p < PARTS; p++)
            done = done && committed[p] == high[p];
        if (!done)
            usleep(250 * 1000);
    }
    int64_t high_sum = 0;
    for (int p = 0; p < PARTS; p++) {
        high_sum += high[p];
        if (committed[p] != high[p])
            fail_msg("%s/%d: committed %lld, end offset %lld", RAW, p, (long long)committed[p], (long long)high[p]);
    }
    assert_int_equal(high_sum, produced); /* the idempotent producer wrote each event once */

    /* Stored exactly once (the sink's duplicates were caught by _id), rejected once. */
    usleep(1000 * 1000); /* a late duplicate, if any, would be written by now */
    stored_t ev, rj;
    read_stored("events", produced, &ev);
    read_stored("rejected", produced, &rj);
    long ev_bad = 0, rj_bad = 0;
    for (long i = 0; i < produced; i++) {
        int want_ev = ev_bot(i) ? 0 : 1;
        if (ev.copies[i] != want_ev) {
            if (ev_bad++ < 5)
                fprintf(stderr, "[rke] rke:%ld: %d copies in events, want %d\n", i, ev.copies[i], want_ev);
        }
        if (rj.copies[i] != 1 - want_ev) {
            if (rj_bad++ < 5)
                fprintf(stderr, "[rke] rke:%ld: %d copies in rejected, want %d\n", i, rj.copies[i], 1 - want_ev);
        }
    }
    assert_int_equal(ev_bad, 0);
    assert_int_equal(rj_bad, 0);
    assert_int_equal(ev.docs, want_events);
    assert_int_equal(rj.docs, want_bots);
    assert_int_equal(ev.untagged + rj.untagged, 0);
    assert_int_equal(rj.wrong_reason, 0);

    /* Budgets charged once: spend == the prices of the stored chargeable events, and one
     * charge record per chargeable event. */
    redisContext *rc = rconnect();
    for (int k = 0; k < CAMPAIGNS; k++) {
        long long spend = rcmd_int(rc, "GET adtrack:spend:camp-rke-%d", k);
        redisReply *keys = redisCommand(rc, "KEYS adtrack:charged:camp-rke-%d:*", k);
        assert_non_null(keys);
        long long records = 0;
        for (size_t j = 0; j < keys->elements; j++)
            records += rcmd_int(rc, "HLEN %s", keys->element[j]->str);
        freeReplyObject(keys);
        if (spend != ev.spend[k] || spend != want_spend[k] || records != want_charges[k])
            fail_msg("camp-rke-%d: spend %lld, stored prices %lld, expected %lld; %lld charge records, expected %ld", k,
                     spend, (long long)ev.spend[k], (long long)want_spend[k], records, want_charges[k]);
    }
    redisFree(rc);

    double dup_c = ts_metric(c->port, "adtrack_enricher_sink_documents_total{result=\"duplicate\"}");
    double again_c = ts_metric(c->port, "adtrack_enricher_charges_total{verdict=\"already_charged\"}");
    fprintf(stderr, "[rke] ok: %ld events stored once, %ld bots rejected once, spend exact on %d campaigns, all %d "
                    "offsets committed; C found %g documents already stored and %g charges already made\n",
            want_events, want_bots, CAMPAIGNS, PARTS, dup_c, again_c);
    free(ev.copies);
    free(rj.copies);
    ts_kill(&c->proc);
    feeder_destroy(&feeder);
}

int main(void)
{
    if (ts_infra_skip(true, true))
        return TS_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_group__join_kill_leave_store_and_charge_once, teardown_enrichers),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
