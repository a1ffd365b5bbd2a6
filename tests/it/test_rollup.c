/* LABELS: it;ferretdb;redis;kafka */
/*
 * test_rollup.c: the hourly rollups (stats_hourly, enricher/enr_rollup.c) stay exact while
 * the enricher is killed with SIGKILL in the middle of batches, again and again.
 *
 * A backlog of 12000 events over three campaigns, two publishers, creatives and placements
 * and four hours (a tenth of them late: an hour or two older than their neighbours), with
 * rejected ones among them (bot user agent, unknown campaign, paused campaign, publisher
 * not allowed), goes through adtrack-enricher (devstream, redis-server) with large batches.
 * The enricher is killed 6 times, each time shortly after it stored something and before
 * the backlog is done, and restarted. When it has finished, the sum of the stats_hourly
 * documents must equal a recount of what the sink stored (events, rejected) per
 * (hour, c, cr, p, pl), for every counter, spend and every rejected reason; and the
 * HyperLogLog of unique users within 3 standard errors of the exact count.
 *  - mongo: the MongoDB sink and store on a real FerretDB;
 *  - files: the file sink and stats_hourly-<seq>.jsonl.
 * Exits 77 (skipped) when FerretDB is not built (scripts/ferretdb.sh install).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <bson/bson.h>
#include <dirent.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <mongoc/mongoc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "at_event.h"
#include "at_hll.h"
#include "at_mongo.h"
#include "at_test_coredata.h"
#include "at_test_infra.h"
#include "at_test_support.h"
#include "enr_rollup.h"

#define N_EVENTS 12000
#define N_KILLS 6
#define HOUR INT64_C(3600000)

static ts_devstream_t ds;
static ts_redis_t redis;
static ts_ferretdb_t fdb;
static at_uuid7_gen_t gen;
static ts_proc_t live_proc;

/* ---- the backlog ---- */

static int64_t wall_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static const char *pick(const char *const *v, size_t n)
{
    return v[(size_t)rand() % n];
}

/* Produces N_EVENTS events to @p topic, spread over its 4 partitions. */
static void produce_backlog(const char *topic)
{
    static const char *const camps[] = {"camp-a", "camp-b", "camp-c"};
    static const char *const crs[] = {"cr-1", "cr-2", NULL};
    static const char *const pls[] = {"top", "side", NULL};
    char errstr[256];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "bootstrap.servers", ds.bootstraps, errstr, sizeof(errstr));
    rd_kafka_conf_set(kc, "linger.ms", "20", errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr));
    assert_non_null(rk);
    int64_t now = wall_ms();
    int64_t base = now - now % HOUR - 3 * HOUR;
    srand(14);
    for (int i = 0; i < N_EVENTS; i++) {
        at_event_t ev;
        memset(&ev, 0, sizeof(ev));
        int hour = i * 4 / N_EVENTS;
        if (hour > 0 && rand() % 10 == 0)
            hour -= 1 + rand() % hour; /* late: an earlier hour than its neighbours */
        ev.ts_ms = base + hour * HOUR + rand() % HOUR;
        at_uuid7_next(&gen, (uint64_t)ev.ts_ms, &ev.id);
        int t = rand() % 20;
        ev.type = t < 12 ? AT_EV_IMP : t < 17 ? AT_EV_VIEW : t < 19 ? AT_EV_CLICK : AT_EV_CONV;
        ev.src = AT_SRC_PIXEL;
        int r = rand() % 100;
        const char *c = r < 4 ? "camp-x" : r < 8 ? "camp-p" : pick(camps, 3); /* unknown, paused */
        const char *p = rand() % 10 == 0 ? "pub-3" : "pub-1";                /* pub-3: not allowed */
        const char *cr = pick(crs, 3), *pl = pick(pls, 3);
        const char *ua = rand() % 20 == 0 ? "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
                                          : "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0";
        char uid[32], tag[32];
        snprintf(uid, sizeof(uid), "user-%d", rand() % 2500);
        snprintf(tag, sizeof(tag), "r:%d", i);
        ev.c = (at_str_t){c, strlen(c)};
        ev.p = (at_str_t){p, strlen(p)};
        if (cr != NULL)
            ev.cr = (at_str_t){cr, strlen(cr)};
        if (pl != NULL)
            ev.pl = (at_str_t){pl, strlen(pl)};
        if (rand() % 10 != 0)
            ev.uid = (at_str_t){uid, strlen(uid)};
        ev.ua = (at_str_t){ua, strlen(ua)};
        ev.ip = AT_STR_LIT("198.51.100.0");
        ev.tag = (at_str_t){tag, strlen(tag)};
        size_t len;
        char *json = at_event_to_json(&ev, &len);
        assert_non_null(json);
        rd_kafka_resp_err_t e;
        while ((e = rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(i % 4),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_KEY(c, strlen(c)),
                                      RD_KAFKA_V_VALUE(json, len), RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
            rd_kafka_poll(rk, 50);
        assert_int_equal(e, RD_KAFKA_RESP_ERR_NO_ERROR);
        bson_free(json);
    }
    assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
}

/* ---- the enricher ---- */

typedef struct enricher_s {
    ts_proc_t proc;
    int port;
} enricher_t;

static void enricher_start(enricher_t *e, const char *topic, const char *group, const char *dir, const char *mongo,
                           const char *batch)
{
    char port[32], rport[32];
    char *bin = ts_bin("adtrack-enricher");
    e->port = ts_free_port();
    snprintf(port, sizeof(port), "127.0.0.1:%d", e->port);
    snprintf(rport, sizeof(rport), "127.0.0.1:%d", redis.port);
    /* Large batches, so that a kill lands inside one. */
    const char *argv[] = {bin, "--brokers", ds.bootstraps, "--group", group, "--topic-raw", topic, "--redis", rport,
                          "--data-dir", dir, "--listen", port, "--batch-size", batch, "--batch-max-ms", "300",
                          "--redis-timeout-ms", "2000", "--retry-max-ms", "1000", "--kafka-timeout-ms", "5000",
                          "--kafka-prop", "session.timeout.ms=6000", "--log-level", "warn", NULL, NULL, NULL, NULL,
                          NULL};
    if (mongo != NULL) {
        size_t n = 0;
        while (argv[n] != NULL)
            n++;
        argv[n++] = "--mongo";
        argv[n++] = mongo;
        argv[n++] = "--mongo-w";
        argv[n++] = "1";
    }
    assert_int_equal(ts_spawn(&e->proc, (char *const *)argv, NULL, false, 0), 0);
    live_proc = e->proc;
    free(bin);
    assert_int_equal(ts_wait_port(e->port, 30000), 0);
}

static void enricher_kill(enricher_t *e)
{
    ts_kill(&e->proc);
    memset(&live_proc, 0, sizeof(live_proc));
}

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

/* ---- where the documents are: FerretDB or the data directory ---- */

typedef struct source_s {
    const char *dir;   /* files, or NULL */
    const char *mongo; /* or the URI */
} source_t;

typedef void (*doc_cb)(const bson_t *doc, void *ctx);

/* One client for all the test's reads (each client's end costs FerretDB an "endSessions"
 * it does not know, logged by mongoc). */
static mongoc_client_t *peek;

static mongoc_client_t *peek_client(const char *uri)
{
    if (peek == NULL)
        peek = mongoc_client_new(uri);
    assert_non_null(peek);
    return peek;
}

static void mongo_each(const char *uri, const char *coll, doc_cb cb, void *ctx)
{
    mongoc_client_t *c = peek_client(uri);
    mongoc_collection_t *col = mongoc_client_get_collection(c, "adtrack", coll);
    bson_t filter = BSON_INITIALIZER;
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(col, &filter, NULL, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc))
        cb(doc, ctx);
    bson_error_t e;
    if (mongoc_cursor_error(cur, &e))
        fail_msg("find %s: %s", coll, e.message);
    mongoc_cursor_destroy(cur);
    mongoc_collection_destroy(col);
}

static int name_cmp(const void *a, const void *b)
{
    const char *x = *(char *const *)a, *y = *(char *const *)b;
    size_t lx = strlen(x), ly = strlen(y); /* numeric seq order: shorter first */
    return lx != ly ? (lx < ly ? -1 : 1) : strcmp(x, y);
}

/* Every line of <dir>/<prefix>-<seq>.jsonl in seq order. */
static void files_each(const char *dir, const char *prefix, doc_cb cb, void *ctx)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    char *names[256];
    size_t n = 0;
    struct dirent *de;
    size_t plen = strlen(prefix);
    while ((de = readdir(d)) != NULL && n < 256)
        if (strncmp(de->d_name, prefix, plen) == 0 && de->d_name[plen] == '-' && de->d_name[plen + 1] >= '1' &&
            de->d_name[plen + 1] <= '9')
            names[n++] = strdup(de->d_name);
    closedir(d);
    qsort(names, n, sizeof(*names), name_cmp);
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "r");
        assert_non_null(f);
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, f)) > 0) {
            if (line[len - 1] != '\n')
                break; /* being written */
            bson_error_t e;
            bson_t *doc = bson_new_from_json((const uint8_t *)line, len - 1, &e);
            if (doc == NULL)
                fail_msg("%s: not JSON: %s", path, e.message);
            cb(doc, ctx);
            bson_destroy(doc);
        }
        free(line);
        fclose(f);
        free(names[i]);
    }
}

static void each(const source_t *s, const char *coll, doc_cb cb, void *ctx)
{
    if (s->mongo != NULL)
        mongo_each(s->mongo, coll, cb, ctx);
    else
        files_each(s->dir, coll, cb, ctx);
}

/* Events stored so far (valid + rejected). */
static size_t stored(const source_t *s)
{
    size_t n = 0;
    if (s->mongo != NULL) {
        mongoc_client_t *c = peek_client(s->mongo);
        const char *colls[] = {"events", "rejected"};
        for (int i = 0; i < 2; i++) {
            mongoc_collection_t *col = mongoc_client_get_collection(c, "adtrack", colls[i]);
            bson_t filter = BSON_INITIALIZER;
            int64_t k = mongoc_collection_count_documents(col, &filter, NULL, NULL, NULL, NULL);
            n += k > 0 ? (size_t)k : 0;
            mongoc_collection_destroy(col);
        }
        return n;
    }
    /* Files: count lines without parsing them, so the poll that decides when to kill is quick. */
    DIR *d = opendir(s->dir);
    assert_non_null(d);
    struct dirent *de;
    static char buf[1 << 16];
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "events-", 7) != 0 && strncmp(de->d_name, "rejected-", 9) != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", s->dir, de->d_name);
        FILE *f = fopen(path, "r");
        if (f == NULL)
            continue;
        size_t got;
        while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
            for (size_t i = 0; i < got; i++)
                n += buf[i] == '\n';
        fclose(f);
    }
    closedir(d);
    return n;
}

/* ---- recount and compare ---- */

typedef struct agg_s {
    char key[300];
    int64_t imp, view, click, conv, spend, payout, rejected;
    int64_t rej[AT_REJ__COUNT];
    char **uids; /* recount: the uids of valid events */
    size_t nuids, capuids;
    at_hll_t u;  /* stats: merged registers */
    bool has_u;
} agg_t;

typedef struct aggs_s {
    agg_t *v;
    size_t n, cap;
    int64_t docs;
    /* stats_hourly in files: the last line of each _id wins */
    bson_t **last;
    size_t nlast, caplast;
} aggs_t;

static const char *str_field(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it) ? bson_iter_utf8(&it, NULL) : "";
}

static int64_t int_field(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_NUMBER(&it) ? bson_iter_as_int64(&it) : 0;
}

static agg_t *agg_get(aggs_t *a, int64_t ts_ms, const char *c, const char *cr, const char *p, const char *pl)
{
    char key[300];
    int64_t hour = ts_ms / HOUR - (ts_ms % HOUR < 0);
    snprintf(key, sizeof(key), "%lld|%s|%s|%s|%s", (long long)hour, c, cr, p, pl);
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->v[i].key, key) == 0)
            return &a->v[i];
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 64;
        a->v = realloc(a->v, a->cap * sizeof(*a->v));
        assert_non_null(a->v);
    }
    agg_t *g = &a->v[a->n++];
    memset(g, 0, sizeof(*g));
    snprintf(g->key, sizeof(g->key), "%s", key);
    return g;
}

static int64_t date_field(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, key) || !BSON_ITER_HOLDS_DATE_TIME(&it))
        fail_msg("%s: no date in a stored document", key);
    return bson_iter_date_time(&it);
}

static void recount_event(const bson_t *doc, void *ctx)
{
    agg_t *g = agg_get(ctx, date_field(doc, "ts"), str_field(doc, "c"), str_field(doc, "cr"), str_field(doc, "p"),
                       str_field(doc, "pl"));
    const char *e = str_field(doc, "e");
    if (strcmp(e, "imp") == 0)
        g->imp++;
    else if (strcmp(e, "view") == 0)
        g->view++;
    else if (strcmp(e, "click") == 0)
        g->click++;
    else if (strcmp(e, "conv") == 0)
        g->conv++;
    else
        fail_msg("stored event with e=%s", e);
    g->spend += int_field(doc, "price_micros");
    g->payout += int_field(doc, "payout_micros");
    const char *uid = str_field(doc, "uid");
    if (*uid != '\0') {
        if (g->nuids == g->capuids) {
            g->capuids = g->capuids ? g->capuids * 2 : 64;
            g->uids = realloc(g->uids, g->capuids * sizeof(*g->uids));
        }
        g->uids[g->nuids++] = strdup(uid);
    }
}

static void recount_rejected(const bson_t *doc, void *ctx)
{
    static const char *const keeps[] = {"campaign_inactive", "unknown_publisher", "publisher_not_allowed", "bot",
                                        "budget_exhausted"};
    const char *reason = str_field(doc, "reason");
    bool own = false;
    for (size_t i = 0; i < AT_ARRAY_LEN(keeps); i++)
        own = own || strcmp(reason, keeps[i]) == 0;
    agg_t *g = own ? agg_get(ctx, date_field(doc, "ts"), str_field(doc, "c"), str_field(doc, "cr"),
                             str_field(doc, "p"), str_field(doc, "pl"))
                   : agg_get(ctx, date_field(doc, "ts"), "", "", "", "");
    g->rejected++;
    for (int r = 1; r < AT_REJ__COUNT; r++)
        if (strcmp(reason, at_reject_str((at_reject_t)r)) == 0)
            g->rej[r]++;
}

static void sum_stats(const bson_t *doc, void *ctx)
{
    aggs_t *a = ctx;
    agg_t *g = agg_get(a, date_field(doc, "h"), str_field(doc, "c"), str_field(doc, "cr"), str_field(doc, "p"),
                       str_field(doc, "pl"));
    a->docs++;
    g->imp += int_field(doc, "imp");
    g->view += int_field(doc, "view");
    g->click += int_field(doc, "click");
    g->conv += int_field(doc, "conv");
    g->spend += int_field(doc, "spend");
    g->payout += int_field(doc, "payout");
    g->rejected += int_field(doc, "rejected");
    bson_iter_t it, sub;
    if (bson_iter_init_find(&it, doc, "rej") && bson_iter_recurse(&it, &sub))
        while (bson_iter_next(&sub))
            for (int r = 1; r < AT_REJ__COUNT; r++)
                if (strcmp(bson_iter_key(&sub), at_reject_str((at_reject_t)r)) == 0)
                    g->rej[r] += bson_iter_as_int64(&sub);
    if (bson_iter_init_find(&it, doc, "u") && BSON_ITER_HOLDS_DOCUMENT(&it)) {
        uint32_t len;
        const uint8_t *data;
        bson_t u;
        bson_iter_document(&it, &len, &data);
        assert_true(bson_init_static(&u, data, len));
        at_err_t err;
        assert_int_equal(at_hll_merge_bson(&g->u, &u, &err), 0);
        g->has_u = true;
    }
}

/* Files: keep the last line per _id, then sum those. */
static void last_line(const bson_t *doc, void *ctx)
{
    aggs_t *a = ctx;
    const char *id = str_field(doc, "_id");
    for (size_t i = 0; i < a->nlast; i++) {
        if (strcmp(str_field(a->last[i], "_id"), id) == 0) {
            bson_destroy(a->last[i]);
            a->last[i] = bson_copy(doc);
            return;
        }
    }
    if (a->nlast == a->caplast) {
        a->caplast = a->caplast ? a->caplast * 2 : 256;
        a->last = realloc(a->last, a->caplast * sizeof(*a->last));
    }
    a->last[a->nlast++] = bson_copy(doc);
}

static void aggs_free(aggs_t *a)
{
    for (size_t i = 0; i < a->n; i++) {
        for (size_t j = 0; j < a->v[i].nuids; j++)
            free(a->v[i].uids[j]);
        free(a->v[i].uids);
    }
    for (size_t i = 0; i < a->nlast; i++)
        bson_destroy(a->last[i]);
    free(a->last);
    free(a->v);
    memset(a, 0, sizeof(*a));
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static size_t distinct(char **v, size_t n)
{
    if (n > 1) /* v is NULL for a key without users (UBSan) */
        qsort(v, n, sizeof(*v), str_cmp);
    size_t d = 0;
    for (size_t i = 0; i < n; i++)
        d += i == 0 || strcmp(v[i], v[i - 1]) != 0;
    return d;
}

static void load(const source_t *s, aggs_t *recount, aggs_t *stats)
{
    each(s, "events", recount_event, recount);
    each(s, "rejected", recount_rejected, recount);
    if (s->mongo != NULL) {
        each(s, "stats_hourly", sum_stats, stats);
    } else {
        each(s, "stats_hourly", last_line, stats);
        for (size_t i = 0; i < stats->nlast; i++)
            sum_stats(stats->last[i], stats);
    }
}

/* Counters that differ between recount and stats (printed when @p verbose). */
static size_t mismatches(aggs_t *recount, aggs_t *stats, bool verbose)
{
    size_t bad = 0;
    for (int pass = 0; pass < 2; pass++) {
        aggs_t *a = pass == 0 ? recount : stats, *b = pass == 0 ? stats : recount;
        for (size_t i = 0; i < a->n; i++) {
            agg_t *x = &a->v[i];
            agg_t *y = NULL;
            for (size_t j = 0; j < b->n && y == NULL; j++)
                if (strcmp(b->v[j].key, x->key) == 0)
                    y = &b->v[j];
            agg_t zero;
            memset(&zero, 0, sizeof(zero));
            if (y == NULL)
                y = &zero;
            if (pass == 1 && y != &zero)
                continue; /* compared in pass 0 */
            int64_t xs[] = {x->imp, x->view, x->click, x->conv, x->spend, x->payout, x->rejected};
            int64_t ys[] = {y->imp, y->view, y->click, y->conv, y->spend, y->payout, y->rejected};
            bool differ = memcmp(xs, ys, sizeof(xs)) != 0 || memcmp(x->rej, y->rej, sizeof(x->rej)) != 0;
            if (differ) {
                bad++;
                if (verbose)
                    print_message("%s %s: imp %lld/%lld view %lld/%lld click %lld/%lld conv %lld/%lld spend "
                                  "%lld/%lld rejected %lld/%lld\n",
                                  pass == 0 ? "recount/stats" : "stats/recount", x->key, (long long)xs[0],
                                  (long long)ys[0], (long long)xs[1], (long long)ys[1], (long long)xs[2],
                                  (long long)ys[2], (long long)xs[3], (long long)ys[3], (long long)xs[4],
                                  (long long)ys[4], (long long)xs[6], (long long)ys[6]);
            }
        }
    }
    return bad;
}

static int64_t total(const aggs_t *a)
{
    int64_t t = 0;
    for (size_t i = 0; i < a->n; i++)
        t += a->v[i].imp + a->v[i].view + a->v[i].click + a->v[i].conv + a->v[i].rejected;
    return t;
}

/* The whole scenario on one sink: batches of @p batch, each kill up to @p max_delay_ms after
 * the run first stored something. */
static void kill_and_check(const char *topic, const char *group, const source_t *src, const char *batch,
                           int max_delay_ms)
{
    produce_backlog(topic);
    enricher_t e = {0};
    double dups = 0, skips = 0, lost = 0;
    size_t before = 0;
    srand(1402);
    for (int k = 0; k < N_KILLS; k++) {
        enricher_start(&e, topic, group, src->dir, src->mongo, batch);
        /* Wait for this run to store something, then kill it a random moment later: it is
         * then inside its next batch (sink, rollups, rejected topic or commit). */
        int64_t deadline = ts_now_ms() + 60000;
        size_t n;
        while ((n = stored(src)) <= before && ts_now_ms() < deadline)
            usleep(10000);
        if (n <= before)
            fail_msg("run %d stored nothing within 60 s", k + 1);
        usleep((useconds_t)(rand() % max_delay_ms) * 1000);
        double d = metric(&e, "adtrack_enricher_sink_documents_total{result=\"duplicate\"}");
        double s = metric(&e, "adtrack_enricher_rollup_gate_skips_total");
        double lag = metric(&e, "adtrack_enricher_consumer_lag");
        double l = metric(&e, "adtrack_enricher_rollup_lost_writes_total");
        enricher_kill(&e);
        before = stored(src);
        dups += d > 0 ? d : 0;
        skips += s > 0 ? s : 0;
        lost += l > 0 ? l : 0;
        print_message("kill %d: %zu of %d stored, lag %.0f, sink duplicates %.0f, gate skips %.0f, lost writes %.0f\n",
                      k + 1, before, N_EVENTS, lag, d, s, l);
        if (before >= N_EVENTS)
            fail_msg("kill %d came after the backlog was done: not mid-stream", k + 1);
    }
    enricher_start(&e, topic, group, src->dir, src->mongo, batch);
    /* Done when every event is stored and the rollups agree with them (they are written
     * after the sink, so poll a little longer). Polled once a second: a full read of
     * FerretDB competes with the enricher for it. */
    aggs_t recount = {0}, stats = {0};
    int64_t deadline = ts_now_ms() + 300000;
    while (stored(src) < N_EVENTS && ts_now_ms() < deadline)
        sleep(1);
    size_t bad = 1;
    deadline = ts_now_ms() + 60000;
    while (ts_now_ms() < deadline) {
        aggs_free(&recount);
        aggs_free(&stats);
        load(src, &recount, &stats);
        bad = mismatches(&recount, &stats, false);
        if (total(&recount) == N_EVENTS && bad == 0)
            break;
        sleep(1);
    }
    double s = metric(&e, "adtrack_enricher_rollup_gate_skips_total");
    double d = metric(&e, "adtrack_enricher_sink_documents_total{result=\"duplicate\"}");
    double l = metric(&e, "adtrack_enricher_rollup_lost_writes_total");
    skips += s > 0 ? s : 0;
    dups += d > 0 ? d : 0;
    lost += l > 0 ? l : 0;
    print_message("after %d kills: %lld stored, %lld in stats_hourly (%lld documents, %zu keys), sink duplicates "
                  "%.0f, gate skips %.0f, stats_hourly writes undone by a concurrent writer and counted again %.0f\n",
                  N_KILLS, (long long)total(&recount), (long long)total(&stats), (long long)stats.docs, stats.n, dups,
                  skips, lost);
    if (bad != 0 || total(&recount) != N_EVENTS) {
        mismatches(&recount, &stats, true);
        fail_msg("stats_hourly differs from the recount in %zu keys (stored %lld of %d)", bad,
                 (long long)total(&recount), N_EVENTS);
    }
    assert_int_equal(total(&stats), N_EVENTS);
    /* At least one kill landed inside a batch, after its sink write or its rollup write and
     * before its commit: the batch came back (in the next run) and the sink found it
     * stored, or the gate found it counted. */
    assert_true(dups + skips > 0);

    /* Unique users: every key with at least 10 users, every hour (all dimensions merged),
     * and everything merged, each within 3 standard errors of the exact count. */
    const double se = 1.04 / sqrt((double)AT_HLL_REGISTERS);
    size_t checked = 0;
    for (size_t i = 0; i < recount.n; i++) {
        agg_t *x = &recount.v[i];
        agg_t *y = NULL;
        for (size_t j = 0; j < stats.n && y == NULL; j++)
            if (strcmp(stats.v[j].key, x->key) == 0)
                y = &stats.v[j];
        assert_non_null(y);
        size_t exact = distinct(x->uids, x->nuids);
        if (exact < 10)
            continue;
        double est = at_hll_estimate(&y->u);
        if (fabs(est - (double)exact) > 3 * se * (double)exact)
            fail_msg("%s: %zu unique users, estimate %.1f (beyond 3 standard errors)", x->key, exact, est);
        checked++;
    }
    char **every = NULL;
    size_t nevery = 0;
    at_hll_t all;
    at_hll_clear(&all);
    for (int pass = 0; pass < 2; pass++) {
        /* pass 0: per hour (the key's prefix up to the first '|'); pass 1: all */
        char hours[16][32];
        size_t nhours = 0;
        for (size_t i = 0; i < recount.n && pass == 0; i++) {
            const char *bar = strchr(recount.v[i].key, '|');
            char h[32];
            snprintf(h, sizeof(h), "%.*s", (int)(bar - recount.v[i].key), recount.v[i].key);
            bool seen = false;
            for (size_t j = 0; j < nhours; j++)
                seen = seen || strcmp(hours[j], h) == 0;
            if (!seen && nhours < 16)
                snprintf(hours[nhours++], sizeof(hours[0]), "%s", h);
        }
        size_t groups = pass == 0 ? nhours : 1;
        for (size_t g = 0; g < groups; g++) {
            nevery = 0;
            at_hll_clear(&all);
            for (size_t i = 0; i < recount.n; i++) {
                agg_t *x = &recount.v[i];
                if (pass == 0 && (strncmp(x->key, hours[g], strlen(hours[g])) != 0 || x->key[strlen(hours[g])] != '|'))
                    continue;
                for (size_t j = 0; j < x->nuids; j++) {
                    every = realloc(every, (nevery + 1) * sizeof(*every));
                    every[nevery++] = x->uids[j];
                }
                for (size_t j = 0; j < stats.n; j++)
                    if (strcmp(stats.v[j].key, x->key) == 0)
                        at_hll_merge(&all, &stats.v[j].u);
            }
            size_t exact = distinct(every, nevery);
            double est = at_hll_estimate(&all);
            print_message("unique users of %s: exact %zu, estimate %.1f\n", pass == 0 ? hours[g] : "all hours", exact,
                          est);
            if (fabs(est - (double)exact) > 3 * se * (double)exact)
                fail_msg("unique users of %s: %zu, estimate %.1f (beyond 3 standard errors)",
                         pass == 0 ? hours[g] : "all hours", exact, est);
            checked++;
        }
    }
    print_message("unique users: %zu sketches checked\n", checked);
    free(every);
    aggs_free(&recount);
    aggs_free(&stats);
    enricher_kill(&e);
}

/* ---- a conditional write that a concurrent writer undoes ---- */

/* FerretDB runs a conditional update as a query and then a replace of the whole document by
 * _id. Two writers that both matched {o: N} (a killed enricher's bulk the server still runs,
 * and its successor) both get nMatched 1, and the later replace wins. The hook plays the
 * writer whose replace lands after ours: once, it puts back the document it computed
 * from o = 4 (offsets 5 and 6 counted: 7 impressions, o = 6). */
typedef struct lost_write_s {
    mongoc_collection_t *coll; /* borrowed from peek_client() */
    const char *id;
    int fired;
} lost_write_t;

static void replace_with_concurrent_writer(void *ctx)
{
    lost_write_t *lw = ctx;
    if (lw->fired++ > 0)
        return;
    bson_t *sel = BCON_NEW("_id", BCON_UTF8(lw->id));
    bson_t *upd = BCON_NEW("$set", "{", "imp", BCON_INT64(7), "o", BCON_INT64(6), "}");
    bson_error_t e;
    assert_true(mongoc_collection_update_one(lw->coll, sel, upd, NULL, NULL, &e));
    bson_destroy(upd);
    bson_destroy(sel);
}

static enr_rollup_result_t lost_write_batch(enr_rollup_t *r, int64_t from, int64_t to, int64_t ts)
{
    at_err_t err;
    enr_rollup_result_t res;
    enr_rollup_begin(r);
    for (int64_t off = from; off <= to; off++) {
        enr_rollup_event_t ev = {.k = 0, .offset = off, .has_ts = true, .ts_ms = ts, .type = AT_EV_IMP,
                                 .c = {"lw-camp", 7}, .cr = {"lw-cr", 5}, .p = {"lw-pub", 6}, .pl = {"top", 3}};
        assert_int_equal(enr_rollup_add(r, &ev, &err), 0);
    }
    if (enr_rollup_commit(r, wall_ms(), &res, &err) != 0)
        fail_msg("rollup commit: %s", err.msg);
    return res;
}

/* Offsets 0-4, then 5-9 (whose write the concurrent writer undoes after it reported a
 * match), then 10-11: the document must end with all 12 impressions and o = 11. Before the
 * read-back it ended with 9: offsets 7-9 were never counted. */
static void test_rollup__ferretdb_write_undone_by_concurrent_writer(void **state)
{
    AT_UNUSED(state);
    const int64_t ts = wall_ms() - 3 * HOUR;
    char id[256];
    at_str_t c = {"lw-camp", 7}, cr = {"lw-cr", 5}, p = {"lw-pub", 6}, pl = {"top", 3};
    assert_true(enr_rollup_format_id(id, sizeof(id), ts, c, cr, p, pl, 0) > 0);
    at_err_t err;
    enr_rollup_t *r = enr_rollup_mongo_new(fdb.uri, NULL, 0, &err);
    assert_non_null(r);
    lost_write_t lw = {.coll = mongoc_client_get_collection(peek_client(fdb.uri), "adtrack", "stats_hourly"),
                       .id = id};
    lost_write_batch(r, 0, 4, ts);
    enr_rollup_set_write_hook(r, replace_with_concurrent_writer, &lw);
    enr_rollup_result_t res = lost_write_batch(r, 5, 9, ts);
    int fired = lw.fired;
    lost_write_batch(r, 10, 11, ts);

    bson_t *sel = BCON_NEW("_id", BCON_UTF8(id));
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(lw.coll, sel, NULL, NULL);
    const bson_t *doc;
    assert_true(mongoc_cursor_next(cur, &doc));
    assert_int_equal(int_field(doc, "imp"), 12);
    assert_int_equal(int_field(doc, "o"), 11);
    mongoc_cursor_destroy(cur);
    assert_int_equal(fired, 2); /* the write, and the one that counted 7-9 again */
    assert_int_equal(res.lost_writes, 1);
    /* Not part of the kill -9 tests' recount. */
    bson_error_t e;
    assert_true(mongoc_collection_delete_one(lw.coll, sel, NULL, NULL, &e));
    bson_destroy(sel);
    mongoc_collection_destroy(lw.coll);
    enr_rollup_destroy(r);
}

/* ---- tests ---- */

static void test_rollup__ferretdb_exact_after_kill9(void **state)
{
    AT_UNUSED(state);
    char *dir = ts_tmpdir("rollup-mongo");
    source_t src = {.dir = dir, .mongo = fdb.uri};
    kill_and_check("t-roll-mongo", "g-roll-mongo", &src, "1000", 150);
    free(dir);
}

static void test_rollup__files_exact_after_kill9(void **state)
{
    AT_UNUSED(state);
    char *dir = ts_tmpdir("rollup-files");
    source_t src = {.dir = dir, .mongo = NULL};
    /* The file sink stores a batch in milliseconds: smaller batches and shorter delays, so
     * that six kills still come before the backlog is done. */
    kill_and_check("t-roll-files", "g-roll-files", &src, "500", 30);
    free(dir);
}

static int test_teardown(void **state)
{
    AT_UNUSED(state);
    ts_kill(&live_proc);
    memset(&live_proc, 0, sizeof(live_proc));
    return 0;
}

static int group_setup(void **state)
{
    AT_UNUSED(state);
    at_mongo_init();
    char *bin = ts_bin("adtrack-devstream");
    char *argv[] = {bin, "--partitions", "4", "--topic", "t-roll-mongo:4", "--topic", "t-roll-files:4", NULL};
    if (ts_devstream_start_argv(&ds, argv) != 0)
        return -1;
    free(bin);
    if (ts_redis_start(&redis) != 0 || ts_ferretdb_start(&fdb) != 0)
        return -1;
    ts_seed_publishers(redis.port);
    const long long budget = INT64_C(1000000000000000); /* never exhausted: verdicts stay the same */
    ts_seed_campaign(redis.port, "camp-a", "cpm", 2000000, budget, "active", 10);
    ts_seed_campaign(redis.port, "camp-b", "cpc", 150000, budget, "active", 11);
    ts_seed_campaign(redis.port, "camp-c", "cpm", 1000000, budget, "active", 12);
    ts_seed_campaign(redis.port, "camp-p", "cpm", 1000000, budget, "paused", 13);
    return 0;
}

static int group_teardown(void **state)
{
    AT_UNUSED(state);
    ts_ferretdb_stop(&fdb);
    ts_redis_stop(&redis);
    ts_devstream_stop(&ds);
    return 0;
}

int main(void)
{
    if (ts_infra_skip(false, true))
        return TS_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rollup__ferretdb_write_undone_by_concurrent_writer),
        cmocka_unit_test_teardown(test_rollup__ferretdb_exact_after_kill9, test_teardown),
        cmocka_unit_test_teardown(test_rollup__files_exact_after_kill9, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
