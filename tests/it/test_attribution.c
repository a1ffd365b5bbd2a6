/* LABELS: it;kafka;redis;collector;enricher */
/*
 * test_attribution.c: conversions attributed to clicks, end to end through the real
 * processes: adtrack-collector -> devstream (librdkafka's mock cluster) -> adtrack-enricher
 * (file sink) with a redis-server holding the core data and the click records.
 *
 *  - a click through /c: its 302 Location carries adt_clid=<click id> (and, with a signed
 *    cp, the campaign's own parameter name); an unsigned cp is refused;
 *  - a conversion by pixel with that clid and one by postback (HMAC-signed, and one with a
 *    bearer token) are stored attributed, with the click's cr/p/pl and the payout (their own,
 *    or the campaign's default);
 *  - a postback with a bad signature, or none, or an unknown advertiser is 401 and not
 *    recorded; one from another advertiser is rejected as wrong_advertiser;
 *  - a second conversion with the same order is rejected as duplicate_order;
 *  - a conversion with an unknown clid, and one without any, are kept with their reason.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "at_common.h"
#include "at_hmac.h"
#include "at_test_coredata.h"
#include "at_test_support.h"

#include <bson/bson.h>
#include <librdkafka/rdkafka.h>

#define CLICK_KEY "it-click-key"
#define ADV_KEY "adv-secret-1"
#define OTHER_KEY "adv-secret-2"

static ts_devstream_t ds;
static ts_redis_t redis;
static ts_proc_t collector, enricher;
static int col_port, enr_port;
static char *sink_dir, *keys_file;

/* ---- helpers ---- */

static void seed(void)
{
    /* camp-at: advertiser adv-1, cpc, a default payout of 0.5 and the default lookback. */
    const char *doc =
        "{\"id\":\"camp-at\",\"advertiser\":\"adv-1\",\"advertiser_name\":\"Acme\",\"name\":\"Attribution\","
        "\"status\":\"active\",\"start\":\"2020-01-01T00:00:00Z\",\"end\":\"2099-01-01T00:00:00Z\","
        "\"budget_micros\":1000000000,\"pricing\":\"cpc\",\"price_micros\":100000,\"publishers\":[\"pub-1\"],"
        "\"payout_micros\":500000,\"version\":5}";
    ts_redis_int(redis.port, "HSET adtrack:campaign:camp-at version 5 doc %s", doc);
    ts_redis_int(redis.port, "SADD adtrack:campaigns camp-at");
    ts_seed_publishers(redis.port);
}

static int http_get(const char *path, const char *headers, ts_http_resp_t *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(ts_http(col_port, "GET", path, headers, NULL, 0, r, 20000), 0);
    return r->status;
}

/* Clicks d (percent-encoded in @p d_enc) with the optional click-param @p cp; returns the
 * click id the Location carries (heap), after checking the Location's form. */
static char *click(const char *d, const char *d_enc, const char *cp)
{
    char msg[512], sig[AT_HMAC_SIG_LEN + 1], path[1024];
    snprintf(msg, sizeof(msg), "%s%s%s", d, cp != NULL ? "\n" : "", cp != NULL ? cp : "");
    at_hmac_sign(CLICK_KEY, strlen(CLICK_KEY), msg, strlen(msg), sig);
    snprintf(path, sizeof(path), "/c?c=camp-at&cr=cr-7&p=pub-1&pl=top&d=%s%s%s&sig=%s", d_enc,
             cp != NULL ? "&cp=" : "", cp != NULL ? cp : "", sig);
    ts_http_resp_t r;
    assert_int_equal(http_get(path, NULL, &r), 302);
    char *loc = ts_http_header(&r, "location");
    assert_non_null(loc);
    char want[256];
    snprintf(want, sizeof(want), "%s%c%s=", d, strchr(d, '?') != NULL ? '&' : '?', cp != NULL ? cp : "adt_clid");
    assert_int_equal(strncmp(loc, want, strlen(want)), 0);
    char *clid = strdup(loc + strlen(want));
    assert_int_equal(strlen(clid), AT_UUID_STR_LEN + strlen(".camp-at"));
    assert_string_equal(clid + AT_UUID_STR_LEN, ".camp-at");
    free(loc);
    ts_http_resp_free(&r);
    return clid;
}

/* A postback GET signed with @p key (NULL: unsigned) over its parameters @p params. */
static int postback(const char *params, const char *key, const char *headers, ts_http_resp_t *r)
{
    char path[1024];
    if (key != NULL) {
        char sig[AT_HMAC_SIG_LEN + 1];
        at_hmac_sign(key, strlen(key), params, strlen(params), sig);
        snprintf(path, sizeof(path), "/v1/postback?%s&sig=%s", params, sig);
    } else {
        snprintf(path, sizeof(path), "/v1/postback?%s", params);
    }
    return http_get(path, headers, r);
}

/* Lines of <sink_dir>/<prefix>-*.jsonl containing @p needle, concatenated (heap). */
static char *sink_lines(const char *prefix, const char *needle, size_t *count)
{
    char cmd[1024];
    snprintf(cmd, sizeof(cmd), "cat %s/%s-*.jsonl 2>/dev/null", sink_dir, prefix);
    FILE *f = popen(cmd, "r");
    assert_non_null(f);
    size_t cap = 4096, used = 0;
    char *out = calloc(1, cap);
    char *line = NULL;
    size_t lcap = 0;
    ssize_t n;
    *count = 0;
    while ((n = getline(&line, &lcap, f)) > 0) {
        if (strstr(line, needle) == NULL)
            continue;
        while (used + (size_t)n + 1 > cap)
            out = realloc(out, cap *= 2);
        memcpy(out + used, line, (size_t)n + 1);
        used += (size_t)n;
        (*count)++;
    }
    free(line);
    pclose(f);
    return out;
}

/* Waits until @p prefix holds a line containing @p needle, and returns that line (heap). */
static char *wait_line(const char *prefix, const char *needle)
{
    for (int64_t until = ts_now_ms() + 30000; ts_now_ms() < until; usleep(50 * 1000)) {
        size_t n;
        char *all = sink_lines(prefix, needle, &n);
        if (n > 0) {
            char *nl = strchr(all, '\n');
            if (nl != NULL)
                nl[1] = '\0';
            return all;
        }
        free(all);
    }
    fail_msg("no %s line containing %s within 30 s", prefix, needle);
    return NULL;
}

static void assert_has(const char *doc, const char *part)
{
    if (strstr(doc, part) == NULL)
        fail_msg("expected %s in %s", part, doc);
}

/* ---- the test ---- */

static void test_attribution__end_to_end(void **state)
{
    AT_UNUSED(state);
    ts_http_resp_t r;

    /* 1. Clicks: the destination gets the click id (default name, or a signed cp). */
    char *clid = click("https://shop.example/landing?x=1", "https%3A%2F%2Fshop.example%2Flanding%3Fx%3D1", NULL);
    char *clid2 = click("https://shop.example/p", "https%3A%2F%2Fshop.example%2Fp", "gclid");
    char *clid3 = click("https://shop.example/q", "https%3A%2F%2Fshop.example%2Fq", NULL);
    /* cp that the signature does not cover: refused, no redirect. */
    {
        char sig[AT_HMAC_SIG_LEN + 1], path[512];
        const char *d = "https://shop.example/p";
        at_hmac_sign(CLICK_KEY, strlen(CLICK_KEY), d, strlen(d), sig);
        snprintf(path, sizeof(path), "/c?c=camp-at&p=pub-1&d=https%%3A%%2F%%2Fshop.example%%2Fp&cp=redirect&sig=%s",
                 sig);
        assert_int_equal(http_get(path, NULL, &r), 400);
        assert_null(ts_http_header(&r, "location"));
        ts_http_resp_free(&r);
    }

    /* 2. A conversion by pixel with the clid, its own payout and order. */
    char path[1024];
    snprintf(path, sizeof(path), "/t.gif?e=conv&clid=%s&order=ord-1&payout_micros=1500000&tag=conv:pixel", clid);
    assert_int_equal(http_get(path, NULL, &r), 200);
    ts_http_resp_free(&r);

    /* 3. Postbacks. Unauthenticated, badly signed, unknown advertiser: 401, not recorded. */
    char params[512];
    snprintf(params, sizeof(params), "adv=adv-1&clid=%s&order=ord-2&tag=conv:bad", clid2);
    assert_int_equal(postback(params, NULL, NULL, &r), 401);
    assert_has(r.body, "authorization: missing");
    ts_http_resp_free(&r);
    assert_int_equal(postback(params, "wrong-key", NULL, &r), 401);
    assert_has(r.body, "does not match");
    ts_http_resp_free(&r);
    assert_int_equal(postback(params, NULL, "Authorization: Bearer wrong\r\n", &r), 401);
    ts_http_resp_free(&r);
    snprintf(params, sizeof(params), "adv=adv-9&clid=%s&order=ord-2&tag=conv:bad", clid2);
    assert_int_equal(postback(params, ADV_KEY, NULL, &r), 401);
    assert_has(r.body, "adv:");
    ts_http_resp_free(&r);

    /* Signed: accepted, the campaign's default payout (none given). */
    snprintf(params, sizeof(params), "adv=adv-1&clid=%s&order=ord-2&tag=conv:signed", clid2);
    assert_int_equal(postback(params, ADV_KEY, NULL, &r), 200);
    assert_has(r.body, "\"status\" : \"accepted\"");
    ts_http_resp_free(&r);
    /* Bearer token, POST with a form body. */
    snprintf(params, sizeof(params), "adv=adv-1&clid=%s&order=ord-3&payout_micros=42&tag=conv:bearer", clid3);
    assert_int_equal(ts_http(col_port, "POST", "/v1/postback",
                             "Authorization: Bearer " ADV_KEY "\r\nContent-Type: application/x-www-form-urlencoded\r\n",
                             params, strlen(params), &r, 20000),
                     0);
    assert_int_equal(r.status, 200);
    ts_http_resp_free(&r);
    /* A postback without a clid: 400 naming it. */
    assert_int_equal(postback("adv=adv-1&order=ord-9", ADV_KEY, NULL, &r), 400);
    assert_has(r.body, "clid: missing");
    ts_http_resp_free(&r);
    /* Another advertiser (authenticated as itself) for adv-1's click: wrong_advertiser. */
    snprintf(params, sizeof(params), "adv=adv-2&clid=%s&order=ord-4&tag=conv:other-adv", clid3);
    assert_int_equal(postback(params, OTHER_KEY, NULL, &r), 200);
    ts_http_resp_free(&r);

    /* 4. The same order again (by postback): duplicate_order. */
    snprintf(params, sizeof(params), "adv=adv-1&clid=%s&order=ord-1&tag=conv:dup", clid2);
    assert_int_equal(postback(params, ADV_KEY, NULL, &r), 200);
    ts_http_resp_free(&r);

    /* 5. Unknown click (a well-formed id nobody clicked) and no click at all: kept. */
    assert_int_equal(
        http_get("/t.gif?e=conv&clid=0190a000-0000-7000-8000-00000000beef.camp-at&order=ord-5&tag=conv:unknown", NULL,
                 &r),
        200);
    ts_http_resp_free(&r);
    assert_int_equal(http_get("/t.gif?e=conv&c=camp-at&order=ord-6&tag=conv:noclick", NULL, &r), 200);
    ts_http_resp_free(&r);

    /* The stored documents. */
    char *doc = wait_line("events", "\"tag\" : \"conv:pixel\"");
    assert_has(doc, "\"e\" : \"conv\"");
    assert_has(doc, "\"attribution\" : \"attributed\"");
    assert_has(doc, "\"cr\" : \"cr-7\"");
    assert_has(doc, "\"p\" : \"pub-1\"");
    assert_has(doc, "\"pl\" : \"top\"");
    assert_has(doc, "\"payout_micros\" : 1500000");
    assert_has(doc, "\"order\" : \"ord-1\"");
    assert_has(doc, clid);
    assert_has(doc, "\"click_ts\"");
    free(doc);

    doc = wait_line("events", "\"tag\" : \"conv:signed\"");
    assert_has(doc, "\"src\" : \"postback\"");
    assert_has(doc, "\"attribution\" : \"attributed\"");
    assert_has(doc, "\"cr\" : \"cr-7\"");
    assert_has(doc, "\"payout_micros\" : 500000"); /* the campaign's default */
    assert_has(doc, "\"advertiser\" : \"adv-1\"");
    free(doc);

    doc = wait_line("events", "\"tag\" : \"conv:bearer\"");
    assert_has(doc, "\"attribution\" : \"attributed\"");
    assert_has(doc, "\"payout_micros\" : 42");
    free(doc);

    doc = wait_line("events", "\"tag\" : \"conv:unknown\"");
    assert_has(doc, "\"attribution\" : \"unknown_click\"");
    assert_has(doc, "\"payout_micros\" : 0");
    free(doc);
    doc = wait_line("events", "\"tag\" : \"conv:noclick\"");
    assert_has(doc, "\"attribution\" : \"no_click\"");
    free(doc);

    doc = wait_line("rejected", "\"tag\" : \"conv:dup\"");
    assert_has(doc, "\"reason\" : \"duplicate_order\"");
    free(doc);
    doc = wait_line("rejected", "\"tag\" : \"conv:other-adv\"");
    assert_has(doc, "\"reason\" : \"wrong_advertiser\"");
    free(doc);

    /* Nothing from the refused postbacks reached the topics, and ord-1 is stored once. */
    size_t n;
    free(sink_lines("events", "conv:bad", &n));
    assert_int_equal(n, 0);
    free(sink_lines("rejected", "conv:bad", &n));
    assert_int_equal(n, 0);
    free(sink_lines("events", "\"order\" : \"ord-1\"", &n));
    assert_int_equal(n, 1);
    /* The three clicks were stored as clicks. */
    free(sink_lines("events", "\"e\" : \"click\"", &n));
    assert_int_equal(n, 3);
    free(clid);
    free(clid2);
    free(clid3);
}


/* ---- envelopes produced straight to the raw topic, with chosen times ---- */

static rd_kafka_t *producer(void)
{
    char errstr[256];
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "bootstrap.servers", ds.bootstraps, errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr));
    assert_non_null(rk);
    return rk;
}

/* Produces @p ev (keyed by its campaign, so every event of the test shares a partition and
 * keeps its order); returns the JSON (heap, bson_free) so it can be sent again. */
static char *produce(rd_kafka_t *rk, const at_event_t *ev, size_t *len)
{
    char *json = at_event_to_json(ev, len);
    assert_non_null(json);
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("adtrack.events.raw"), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_KEY(ev->c.p, ev->c.len), RD_KAFKA_V_VALUE(json, *len), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    return json;
}

static at_event_t envelope(at_event_type_t type, const char *id, int64_t ts, const char *tag)
{
    at_event_t ev;
    memset(&ev, 0, sizeof(ev));
    assert_int_equal(at_uuid_parse(id, strlen(id), &ev.id), 0);
    ev.ts_ms = ts;
    ev.type = type;
    ev.src = type == AT_EV_CLICK ? AT_SRC_CLICK : AT_SRC_PIXEL;
    ev.c = AT_STR_LIT("camp-lb");
    ev.ua = AT_STR_LIT("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36");
    ev.ip = AT_STR_LIT("198.51.100.0");
    ev.tag = (at_str_t){tag, strlen(tag)};
    return ev;
}

/* The campaign's lookback_days (1 here) decides through the real enricher; a conversion
 * delivered again (same id: a redelivery) is not a duplicate of itself. */
static void test_attribution__lookback_and_replay_through_enricher(void **state)
{
    AT_UNUSED(state);
    const char *doc =
        "{\"id\":\"camp-lb\",\"advertiser\":\"adv-1\",\"advertiser_name\":\"Acme\",\"name\":\"Lookback\","
        "\"status\":\"active\",\"start\":\"2020-01-01T00:00:00Z\",\"end\":\"2099-01-01T00:00:00Z\","
        "\"budget_micros\":1000000000,\"pricing\":\"cpc\",\"price_micros\":100000,\"publishers\":[\"pub-1\"],"
        "\"lookback_days\":1,\"payout_micros\":700000,\"version\":6}";
    ts_redis_int(redis.port, "HSET adtrack:campaign:camp-lb version 6 doc %s", doc);
    ts_redis_int(redis.port, "SADD adtrack:campaigns camp-lb");

#define CLICK_OLD "0190a000-0000-7000-8000-00000000a001"
#define CLICK_NEW "0190a000-0000-7000-8000-00000000a002"
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall); /* event time, not ts_now_ms()'s monotonic clock */
    int64_t now = (int64_t)wall.tv_sec * 1000 + wall.tv_nsec / 1000000;
    rd_kafka_t *rk = producer();
    size_t len;
    at_event_t e = envelope(AT_EV_CLICK, CLICK_OLD, now - 3 * 86400000LL, "lb:click-old");
    e.cr = AT_STR_LIT("cr-old");
    e.p = AT_STR_LIT("pub-1");
    bson_free(produce(rk, &e, &len));
    e = envelope(AT_EV_CLICK, CLICK_NEW, now - 12 * 3600000LL, "lb:click-new");
    e.cr = AT_STR_LIT("cr-new");
    e.p = AT_STR_LIT("pub-1");
    e.pl = AT_STR_LIT("side");
    bson_free(produce(rk, &e, &len));
    e = envelope(AT_EV_CONV, "0190a000-0000-7000-8000-00000000b001", now, "lb:expired");
    e.clid = AT_STR_LIT(CLICK_OLD ".camp-lb");
    e.order = AT_STR_LIT("lb-1");
    bson_free(produce(rk, &e, &len));
    e = envelope(AT_EV_CONV, "0190a000-0000-7000-8000-00000000b002", now, "lb:in");
    e.clid = AT_STR_LIT(CLICK_NEW ".camp-lb");
    e.order = AT_STR_LIT("lb-2");
    char *again = produce(rk, &e, &len);
    assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);

    char *d = wait_line("events", "\"tag\" : \"lb:expired\"");
    assert_has(d, "\"attribution\" : \"click_expired\"");
    assert_has(d, "\"payout_micros\" : 0");
    free(d);
    d = wait_line("events", "\"tag\" : \"lb:in\"");
    assert_has(d, "\"attribution\" : \"attributed\"");
    assert_has(d, "\"cr\" : \"cr-new\"");
    assert_has(d, "\"pl\" : \"side\"");
    assert_has(d, "\"payout_micros\" : 700000");
    free(d);

    /* The same message again (a redelivery), then a marker on the same partition: once the
     * marker is stored, the copy was processed. */
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC("adtrack.events.raw"), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_KEY("camp-lb", 7), RD_KAFKA_V_VALUE(again, len), RD_KAFKA_V_END),
                     RD_KAFKA_RESP_ERR_NO_ERROR);
    e = envelope(AT_EV_IMP, "0190a000-0000-7000-8000-00000000c001", now, "lb:marker");
    e.p = AT_STR_LIT("pub-1");
    bson_free(produce(rk, &e, &len));
    assert_int_equal(rd_kafka_flush(rk, 30000), RD_KAFKA_RESP_ERR_NO_ERROR);
    free(wait_line("events", "\"tag\" : \"lb:marker\""));
    size_t n;
    free(sink_lines("rejected", "lb:in", &n));
    assert_int_equal(n, 0); /* not a duplicate_order of itself */
    free(sink_lines("events", "\"tag\" : \"lb:in\"", &n));
    assert_int_equal(n, 1); /* stored once */
    bson_free(again);
    rd_kafka_destroy(rk);
}

/* ---- fixtures ---- */

static int start_pipeline(void);

static int group_setup(void **state)
{
    AT_UNUSED(state);
    if (ts_devstream_start(&ds, 1, 4) != 0 || ts_redis_start(&redis) != 0)
        return -1;
    sink_dir = ts_tmpdir("attrib-sink");
    char *dir = ts_tmpdir("attrib-keys");
    if (asprintf(&keys_file, "%s/postback.keys", dir) < 0)
        return -1;
    free(dir);
    FILE *f = fopen(keys_file, "w");
    if (f == NULL)
        return -1;
    fprintf(f, "# advertiser secret\nadv-1 %s\nadv-2 %s\n", ADV_KEY, OTHER_KEY);
    fclose(f);
    chmod(keys_file, 0600);
    return start_pipeline();
}

static int group_teardown(void **state)
{
    AT_UNUSED(state);
    ts_kill(&collector);
    ts_kill(&enricher);
    ts_redis_stop(&redis);
    ts_devstream_stop(&ds);
    free(sink_dir);
    free(keys_file);
    return 0;
}

static int start_pipeline(void)
{
    seed();
    char cport[32], eport[32], rport[32], spool[512];
    char *sp = ts_tmpdir("attrib-spool");
    snprintf(spool, sizeof(spool), "%s", sp);
    free(sp);
    col_port = ts_free_port();
    snprintf(cport, sizeof(cport), "127.0.0.1:%d", col_port);
    char *cbin = ts_bin("adtrack-collector");
    const char *cargv[] = {cbin, "--listen", cport, "--brokers", ds.bootstraps, "--spool-dir", spool,
                           "--threads", "1", "--click-key", CLICK_KEY, "--postback-keys-file", keys_file,
                           "--log-level", "warn", NULL};
    if (ts_spawn(&collector, (char *const *)cargv, NULL, false, 0) != 0)
        return -1;
    free(cbin);
    enr_port = ts_free_port();
    snprintf(eport, sizeof(eport), "127.0.0.1:%d", enr_port);
    snprintf(rport, sizeof(rport), "127.0.0.1:%d", redis.port);
    char *ebin = ts_bin("adtrack-enricher");
    const char *eargv[] = {ebin, "--brokers", ds.bootstraps, "--group", "attrib", "--redis", rport, "--data-dir",
                           sink_dir, "--listen", eport, "--batch-size", "200", "--batch-max-ms", "50",
                           "--log-level", "warn", NULL};
    if (ts_spawn(&enricher, (char *const *)eargv, NULL, false, 0) != 0)
        return -1;
    free(ebin);
    if (ts_wait_port(col_port, 30000) != 0 || ts_wait_port(enr_port, 30000) != 0)
        return -1;
    /* Kafka reachable before the first click: a click spooled while the collector had not
     * seen Kafka yet could reach the topic after its conversion. */
    for (int64_t until = ts_now_ms() + 30000; ts_now_ms() < until; usleep(50 * 1000)) {
        ts_http_resp_t r = {0};
        int st = ts_http(col_port, "GET", "/readyz", NULL, NULL, 0, &r, 5000) == 0 ? r.status : -1;
        ts_http_resp_free(&r);
        if (st == 200)
            return 0;
    }
    return -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attribution__end_to_end),
        cmocka_unit_test(test_attribution__lookback_and_replay_through_enricher),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
