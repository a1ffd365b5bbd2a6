/* LABELS: it;kafka;collector */
/*
 * test_collector.c: adtrack-collector as a user runs it, against a real Kafka-protocol
 * cluster (adtrack-devstream) over HTTP:
 *  - N pixels in -> exactly N records on adtrack.events.raw with the right keys and fields;
 *  - bad input gets the documented status, and the event lands on the rejected topic;
 *  - a Kafka outage while firing: every 2xx event is in Kafka after recovery, none twice;
 *  - the spool survives a kill -9 and is replayed by the next process;
 *  - SIGTERM answers the requests in flight, then exits 0.
 * Every test tags its events (tag=<test>:<n>) and counts only its own tags, so tests can
 * share one cluster. All waits are polls with generous deadlines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "at_common.h"
#include "at_event.h"
#include "at_hmac.h"
#include "at_test_support.h"
#include "at_kafka.h"
#include "col_doubt.h"
#include <time.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define RAW "adtrack.events.raw"
#define REJECTED "adtrack.events.rejected"
#define CLICK_KEY "it-click-key"

static ts_devstream_t ds;

/* Collectors started by the current test. A failed assertion jumps out of the test
 * function, so the per-test teardown, not the test, makes sure none outlives it. */
static pid_t live_pids[8];

static void track_pid(pid_t pid, bool add)
{
    for (size_t i = 0; i < AT_ARRAY_LEN(live_pids); i++) {
        if (add && live_pids[i] == 0) {
            live_pids[i] = pid;
            return;
        }
        if (!add && live_pids[i] == pid)
            live_pids[i] = 0;
    }
}

static int kill_leftovers(void **state)
{
    AT_UNUSED(state);
    for (size_t i = 0; i < AT_ARRAY_LEN(live_pids); i++) {
        if (live_pids[i] > 0) {
            kill(live_pids[i], SIGKILL);
            waitpid(live_pids[i], NULL, 0);
            live_pids[i] = 0;
        }
    }
    return 0;
}

typedef struct collector_s {
    ts_proc_t proc;
    int port;
    char *spool;
} collector_t;

static void collector_start(collector_t *c, const char *spool_dir, const char *const *extra_args)
{
    char port[16];
    char *bin = ts_bin("adtrack-collector");
    c->port = ts_free_port();
    snprintf(port, sizeof(port), "127.0.0.1:%d", c->port);
    c->spool = spool_dir ? strdup(spool_dir) : ts_tmpdir("collector-spool");
    const char *argv[32] = {bin, "--listen", port, "--brokers", ds.bootstraps, "--spool-dir", c->spool,
                            "--threads", "2", "--kafka-timeout-ms", "3000", "--click-key", CLICK_KEY,
                            "--log-level", "warn"};
    size_t n = 15;
    for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL && n < 31; i++)
        argv[n++] = extra_args[i];
    argv[n] = NULL;
    assert_int_equal(ts_spawn(&c->proc, (char *const *)argv, NULL, false, 0), 0);
    track_pid(c->proc.pid, true);
    free(bin);
    assert_int_equal(ts_wait_port(c->port, 30000), 0);
}

static void collector_stop(collector_t *c)
{
    track_pid(c->proc.pid, false);
    ts_kill(&c->proc);
    free(c->spool);
    c->spool = NULL;
}

/* Polls /readyz until it answers @p want (200 or 503). */
static void wait_ready(collector_t *c, int want, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    int last = -1;
    while (ts_now_ms() < deadline) {
        ts_http_resp_t r = {0};
        if (ts_http(c->port, "GET", "/readyz", NULL, NULL, 0, &r, 5000) == 0)
            last = r.status;
        ts_http_resp_free(&r);
        if (last == want)
            return;
        usleep(50 * 1000);
    }
    fail_msg("/readyz never answered %d (last %d)", want, last);
}

static int get_status(collector_t *c, const char *path, ts_http_resp_t *r)
{
    memset(r, 0, sizeof(*r));
    assert_int_equal(ts_http(c->port, "GET", path, NULL, NULL, 0, r, 20000), 0);
    return r->status;
}

/* Messages of @p topic whose "tag" starts with @p prefix; counts per tag index into @p seen
 * (size n). Returns the number of matching messages. Waits until at least @p expect match. */
static long count_tagged(const char *topic, const char *prefix, int *seen, int n, long expect, ts_kmsg_t **keep,
                         long *nkeep)
{
    long matched = 0;
    int64_t deadline = ts_now_ms() + 60000;
    for (;;) {
        ts_kmsg_t *msgs = NULL;
        long got = ts_kafka_consume_all(ds.bootstraps, topic, 0, 1500, 30000, &msgs);
        assert_true(got >= 0);
        matched = 0;
        if (seen != NULL)
            memset(seen, 0, sizeof(*seen) * (size_t)n);
        for (long i = 0; i < got; i++) {
            at_event_parsed_t pe;
            at_err_t err;
            bool rejected = strcmp(topic, REJECTED) == 0;
            const char *tag = NULL;
            size_t taglen = 0;
            char *hit = NULL;
            if (!rejected) {
                if (at_event_parse_json(msgs[i].value, msgs[i].value_len, &pe, &err) != 0)
                    fail_msg("unparsable event on %s: %s (%s)", topic, err.msg, msgs[i].value);
                tag = pe.ev.tag.p;
                taglen = pe.ev.tag.len;
                if (tag != NULL && taglen > strlen(prefix) && memcmp(tag, prefix, strlen(prefix)) == 0) {
                    /* The key is the campaign id. */
                    assert_non_null(msgs[i].key);
                    assert_int_equal(strlen(msgs[i].key), pe.ev.c.len);
                    assert_memory_equal(msgs[i].key, pe.ev.c.p, pe.ev.c.len);
                    int idx = atoi(tag + strlen(prefix));
                    if (seen != NULL && idx >= 0 && idx < n)
                        seen[idx]++;
                    matched++;
                }
                at_event_parsed_free(&pe);
            } else if ((hit = strstr(msgs[i].value, prefix)) != NULL) {
                int idx = atoi(hit + strlen(prefix));
                if (seen != NULL && idx >= 0 && idx < n)
                    seen[idx]++;
                matched++;
            }
        }
        if (matched >= expect || ts_now_ms() > deadline) {
            if (keep != NULL) {
                *keep = msgs;
                *nkeep = got;
            } else {
                ts_kmsgs_free(msgs, got);
            }
            return matched;
        }
        ts_kmsgs_free(msgs, got);
    }
}

static int group_setup(void **state)
{
    AT_UNUSED(state);
    return ts_devstream_start(&ds, 1, 4);
}

static int group_teardown(void **state)
{
    AT_UNUSED(state);
    ts_devstream_stop(&ds);
    return 0;
}

/* ---- tests ---- */

static void test_pixel__n_events_land_once_with_fields(void **state)
{
    AT_UNUSED(state);
    enum { N = 300 };
    collector_t c = {0};
    collector_start(&c, NULL, NULL);
    wait_ready(&c, 200, 30000);

    for (int i = 0; i < N; i++) {
        char path[512];
        ts_http_resp_t r;
        snprintf(path, sizeof(path),
                 "/t.gif?e=%s&c=camp-%d&cr=cr-1&p=pub-%d&pl=top&uid=user-%d&u=https%%3A%%2F%%2Fnews.example%%2Fa%%3Fb%%3D1"
                 "&cb=%d&tag=rt:%d",
                 i % 3 == 0 ? "view" : "imp", i % 7, i % 5, i, rand(), i);
        assert_int_equal(get_status(&c, path, &r), 200);
        assert_int_equal(r.body_len, 43);
        assert_memory_equal(r.body, "GIF89a", 6);
        char *cc = ts_http_header(&r, "cache-control");
        assert_non_null(cc);
        assert_non_null(strstr(cc, "no-store"));
        char *ct = ts_http_header(&r, "content-type");
        assert_string_equal(ct, "image/gif");
        free(cc);
        free(ct);
        ts_http_resp_free(&r);
    }

    int seen[N];
    ts_kmsg_t *msgs = NULL;
    long nmsgs = 0;
    long got = count_tagged(RAW, "rt:", seen, N, N, &msgs, &nmsgs);
    assert_int_equal(got, N);
    for (int i = 0; i < N; i++)
        if (seen[i] != 1)
            fail_msg("event rt:%d seen %d times", i, seen[i]);

    /* Field-level check of one event: what the pixel said, plus what the collector added. */
    bool checked = false;
    for (long i = 0; i < nmsgs && !checked; i++) {
        if (strstr(msgs[i].value, "\"rt:7\"") == NULL)
            continue;
        at_event_parsed_t pe;
        at_err_t err;
        assert_int_equal(at_event_parse_json(msgs[i].value, msgs[i].value_len, &pe, &err), 0);
        assert_int_equal(pe.v, 1);
        assert_int_equal(pe.ev.type, AT_EV_IMP);
        assert_int_equal(pe.ev.src, AT_SRC_PIXEL);
        assert_int_equal(pe.ev.c.len, 6);
        assert_memory_equal(pe.ev.c.p, "camp-0", 6);
        assert_memory_equal(pe.ev.p.p, "pub-2", 5);
        assert_memory_equal(pe.ev.pl.p, "top", 3);
        assert_memory_equal(pe.ev.uid.p, "user-7", 6);
        assert_int_equal(pe.ev.u.len, strlen("https://news.example/a?b=1"));
        assert_memory_equal(pe.ev.u.p, "https://news.example/a?b=1", pe.ev.u.len);
        /* IP truncation is on by default: 127.0.0.1 is stored as 127.0.0.0. */
        assert_int_equal(pe.ev.ip.len, 9);
        assert_memory_equal(pe.ev.ip.p, "127.0.0.0", 9);
        assert_true(pe.ev.ts_ms > 1700000000000LL);
        assert_true(at_uuid7_time_ms(&pe.ev.id) > 1700000000000ULL);
        at_event_parsed_free(&pe);
        checked = true;
    }
    assert_true(checked);
    ts_kmsgs_free(msgs, nmsgs);
    collector_stop(&c);
}

static void test_bad_input__documented_statuses_and_rejected_topic(void **state)
{
    AT_UNUSED(state);
    collector_t c = {0};
    const char *extra[] = {"--body-max-bytes", "2048", NULL};
    collector_start(&c, NULL, extra);
    wait_ready(&c, 200, 30000);
    ts_http_resp_t r;

    /* URL over 8 KiB -> 414 with a message. */
    char *longpath = malloc(9000);
    memcpy(longpath, "/t.gif?c=", 9);
    memset(longpath + 9, 'a', 8990);
    longpath[8999] = '\0';
    assert_int_equal(get_status(&c, longpath, &r), 414);
    assert_non_null(strstr(r.body, "url"));
    ts_http_resp_free(&r);
    free(longpath);

    /* Missing campaign, bad encoding, over-long field, unknown type: the pixel is still
     * served and the event goes to the rejected topic with its reason. */
    const char *bad[] = {"/t.gif?e=imp&tag=bad:0", "/t.gif?e=imp&c=x&u=%zz&tag=bad:1",
                         "/t.gif?e=imp&c=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa&tag=bad:2",
                         "/t.gif?e=hover&c=x&tag=bad:3"};
    const char *reasons[] = {"missing_field", "bad_encoding", "field_too_long", "unknown_event_type"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(get_status(&c, bad[i], &r), 200);
        assert_int_equal(r.body_len, 43);
        ts_http_resp_free(&r);
    }
    ts_kmsg_t *msgs = NULL;
    long nmsgs = 0;
    int seen[4];
    assert_int_equal(count_tagged(REJECTED, "bad:", seen, 4, 4, &msgs, &nmsgs), 4);
    for (int i = 0; i < 4; i++) {
        char tag[32];
        snprintf(tag, sizeof(tag), "bad:%d", i);
        bool found = false;
        for (long k = 0; k < nmsgs; k++) {
            if (strstr(msgs[k].value, tag) == NULL)
                continue;
            char want[64];
            snprintf(want, sizeof(want), "\"reason\" : \"%s\"", reasons[i]);
            if (strstr(msgs[k].value, want) == NULL)
                fail_msg("rejected %s lacks %s: %s", tag, want, msgs[k].value);
            assert_non_null(strstr(msgs[k].value, "\"detail\""));
            found = true;
        }
        assert_true(found);
    }
    ts_kmsgs_free(msgs, nmsgs);

    /* Unknown path and wrong method. */
    assert_int_equal(get_status(&c, "/nope", &r), 404);
    ts_http_resp_free(&r);
    assert_int_equal(ts_http(c.port, "POST", "/t.gif", NULL, "x", 1, &r, 10000), 0);
    assert_int_equal(r.status, 405);
    ts_http_resp_free(&r);

    /* Beacon: not JSON -> 400 naming the body, and the body is kept as a rejected record. */
    const char *ctj = "Content-Type: application/json\r\n";
    assert_int_equal(ts_http(c.port, "POST", "/v1/events", ctj, "{oops", 5, &r, 10000), 0);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "body"));
    ts_http_resp_free(&r);
    /* Over the body limit -> 413. */
    char big[4096];
    memset(big, ' ', sizeof(big));
    big[0] = '[';
    big[sizeof(big) - 1] = ']';
    assert_int_equal(ts_http(c.port, "POST", "/v1/events", ctj, big, sizeof(big), &r, 10000), 0);
    assert_int_equal(r.status, 413);
    ts_http_resp_free(&r);
    /* Wrong content type -> 415. */
    assert_int_equal(ts_http(c.port, "POST", "/v1/events", "Content-Type: application/xml\r\n", "[]", 2, &r, 10000), 0);
    assert_int_equal(r.status, 415);
    ts_http_resp_free(&r);
    /* Mixed batch as text/plain (sendBeacon with a string): per-event errors reported. */
    const char *batch = "[{\"e\":\"imp\",\"c\":\"camp-b\",\"tag\":\"beacon:0\"},{\"e\":\"nope\",\"c\":\"camp-b\"},"
                        "{\"e\":\"click\",\"c\":\"camp-b\",\"tag\":\"beacon:1\"}]";
    assert_int_equal(ts_http(c.port, "POST", "/v1/events",
                             "Content-Type: text/plain;charset=UTF-8\r\nOrigin: https://pub.example\r\n", batch,
                             strlen(batch), &r, 10000),
                     0);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"accepted\" : 2"));
    assert_non_null(strstr(r.body, "\"rejected\" : 1"));
    assert_non_null(strstr(r.body, "unknown_event_type"));
    char *acao = ts_http_header(&r, "access-control-allow-origin");
    assert_string_equal(acao, "https://pub.example");
    free(acao);
    ts_http_resp_free(&r);
    int bseen[2];
    assert_int_equal(count_tagged(RAW, "beacon:", bseen, 2, 2, NULL, NULL), 2);
    assert_int_equal(bseen[0], 1);
    assert_int_equal(bseen[1], 1);

    /* Clicks: a valid signature redirects; a wrong one is 400 without Location. */
    const char *dest = "https://advertiser.example/landing?x=1";
    char sig[AT_HMAC_SIG_LEN + 1], path[512];
    at_hmac_sign(CLICK_KEY, strlen(CLICK_KEY), dest, strlen(dest), sig);
    snprintf(path, sizeof(path), "/c?c=camp-1&d=https%%3A%%2F%%2Fadvertiser.example%%2Flanding%%3Fx%%3D1&sig=%s&tag=click:0",
             sig);
    assert_int_equal(get_status(&c, path, &r), 302);
    char *loc = ts_http_header(&r, "location");
    /* The destination with the click id: "&adt_clid=<click event id>.<campaign>". */
    assert_non_null(loc);
    assert_int_equal(strncmp(loc, dest, strlen(dest)), 0);
    assert_int_equal(strncmp(loc + strlen(dest), "&adt_clid=", 10), 0);
    assert_int_equal(strlen(loc), strlen(dest) + 10 + AT_UUID_STR_LEN + strlen(".camp-1"));
    assert_string_equal(loc + strlen(dest) + 10 + AT_UUID_STR_LEN, ".camp-1");
    free(loc);
    ts_http_resp_free(&r);
    snprintf(path, sizeof(path), "/c?c=camp-1&d=https%%3A%%2F%%2Fevil.example%%2F&sig=%s&tag=click:1", sig);
    assert_int_equal(get_status(&c, path, &r), 400);
    assert_null(ts_http_header(&r, "location"));
    assert_non_null(strstr(r.body, "sig"));
    ts_http_resp_free(&r);
    int cseen[2];
    assert_int_equal(count_tagged(RAW, "click:", cseen, 2, 1, NULL, NULL), 1);
    assert_int_equal(cseen[0], 1);
    assert_int_equal(count_tagged(REJECTED, "click:", cseen, 2, 1, NULL, NULL), 1);
    assert_int_equal(cseen[1], 1);

    /* A browser's over-long Referer is cut, not a reason to lose the impression. */
    char *hdr = malloc(3200);
    int hl = snprintf(hdr, 3200, "Referer: https://news.example/");
    memset(hdr + hl, 'r', 3000);
    memcpy(hdr + hl + 3000, "\r\n", 3);
    assert_int_equal(ts_http(c.port, "GET", "/t.gif?e=imp&c=camp-r&tag=ref:0", hdr, NULL, 0, &r, 10000), 0);
    assert_int_equal(r.status, 200);
    ts_http_resp_free(&r);
    free(hdr);
    ts_kmsg_t *rmsgs = NULL;
    long nr = 0;
    int rseen[1];
    assert_int_equal(count_tagged(RAW, "ref:", rseen, 1, 1, &rmsgs, &nr), 1);
    for (long k = 0; k < nr; k++) {
        at_event_parsed_t pe;
        at_err_t perr;
        if (strstr(rmsgs[k].value, "\"ref:0\"") == NULL)
            continue;
        assert_int_equal(at_event_parse_json(rmsgs[k].value, rmsgs[k].value_len, &pe, &perr), 0);
        assert_int_equal(pe.ev.ref.len, AT_EVENT_URL_MAX);
        at_event_parsed_free(&pe);
    }
    ts_kmsgs_free(rmsgs, nr);

    /* Health endpoints and metrics exposition. */
    assert_int_equal(get_status(&c, "/healthz", &r), 200);
    ts_http_resp_free(&r);
    assert_int_equal(get_status(&c, "/metrics", &r), 200);
    assert_non_null(strstr(r.body, "adtrack_http_requests_total{code=\"414\"} 1"));
    assert_non_null(strstr(r.body, "adtrack_events_rejected_total{reason=\"missing_field\"} 1"));
    assert_non_null(strstr(r.body, "adtrack_http_request_duration_seconds_bucket"));
    ts_http_resp_free(&r);
    collector_stop(&c);
}

static void test_outage__every_2xx_event_in_kafka_once(void **state)
{
    AT_UNUSED(state);
    enum { N = 150 };
    collector_t c = {0};
    collector_start(&c, NULL, NULL);
    wait_ready(&c, 200, 30000);
    int status[N];

    for (int i = 0; i < N; i++) {
        if (i == 30)
            assert_int_equal(ts_devstream_control(&ds, "broker-down all"), 0);
        if (i == 110)
            assert_int_equal(ts_devstream_control(&ds, "broker-up all"), 0);
        if (i == 60)
            wait_ready(&c, 503, 30000); /* the outage is visible to the load balancer */
        char path[256];
        ts_http_resp_t r;
        snprintf(path, sizeof(path), "/t.gif?e=imp&c=camp-%d&tag=out:%d", i % 11, i);
        status[i] = get_status(&c, path, &r);
        ts_http_resp_free(&r);
    }
    wait_ready(&c, 200, 60000);
    int ok = 0;
    for (int i = 0; i < N; i++)
        ok += status[i] == 200;
    /* With the spool, Kafka being down costs no request. */
    assert_int_equal(ok, N);

    int seen[N];
    long got = count_tagged(RAW, "out:", seen, N, N, NULL, NULL);
    for (int i = 0; i < N; i++)
        if (status[i] == 200 && seen[i] != 1)
            fail_msg("event out:%d answered 200 but seen %d times in Kafka", i, seen[i]);
    assert_int_equal(got, N);

    ts_http_resp_t r;
    assert_int_equal(get_status(&c, "/metrics", &r), 200);
    assert_null(strstr(r.body, "adtrack_events_spooled_total 0\n"));
    ts_http_resp_free(&r);
    collector_stop(&c);
}

static void test_spool__survives_kill9_and_replays_on_restart(void **state)
{
    AT_UNUSED(state);
    enum { N = 40 };
    collector_t a = {0};
    collector_start(&a, NULL, NULL);
    wait_ready(&a, 200, 30000);
    assert_int_equal(ts_devstream_control(&ds, "broker-down all"), 0);
    wait_ready(&a, 503, 30000);
    for (int i = 0; i < N; i++) {
        char path[256];
        ts_http_resp_t r;
        snprintf(path, sizeof(path), "/t.gif?e=imp&c=camp-k&tag=kill:%d", i);
        assert_int_equal(get_status(&a, path, &r), 200);
        ts_http_resp_free(&r);
    }
    /* Every 200 above was fsynced to the spool; a crash must not lose them. */
    char *spool = strdup(a.spool);
    ts_signal(&a.proc, SIGKILL);
    collector_stop(&a);

    assert_int_equal(ts_devstream_control(&ds, "broker-up all"), 0);
    collector_t b = {0};
    collector_start(&b, spool, NULL);
    int seen[N];
    long got = count_tagged(RAW, "kill:", seen, N, N, NULL, NULL);
    assert_int_equal(got, N);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    free(spool);
    collector_stop(&b);
}

/* Opens @p n connections and sends one pixel request on each without reading. */
static void send_raw_requests(int port, int *fds, int n, const char *tagprefix)
{
    for (int i = 0; i < n; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fds[i] >= 0);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
        char req[256];
        int len = snprintf(req, sizeof(req), "GET /t.gif?e=imp&c=camp-t&tag=%s%d HTTP/1.1\r\nHost: x\r\n\r\n", tagprefix, i);
        assert_int_equal(write(fds[i], req, (size_t)len), len);
    }
}

static int read_status(int fd, int timeout_ms)
{
    char buf[512];
    size_t got = 0;
    int64_t deadline = ts_now_ms() + timeout_ms;
    while (got < 12 && ts_now_ms() < deadline) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 100) <= 0)
            continue;
        ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    return got >= 12 && strncmp(buf, "HTTP/1.1 ", 9) == 0 ? atoi(buf + 9) : -1;
}

static void test_sigterm__answers_inflight_then_exits_0(void **state)
{
    AT_UNUSED(state);
    enum { N = 20 };
    collector_t c = {0};
    collector_start(&c, NULL, NULL);
    wait_ready(&c, 200, 30000);
    /* Slow Kafka down so the requests are still waiting for acks when SIGTERM arrives. */
    assert_int_equal(ts_devstream_control(&ds, "broker-rtt all 400"), 0);
    int fds[N];
    send_raw_requests(c.port, fds, N, "term:");
    usleep(100 * 1000);
    assert_int_equal(ts_signal(&c.proc, SIGTERM), 0);
    for (int i = 0; i < N; i++) {
        assert_int_equal(read_status(fds[i], 30000), 200);
        close(fds[i]);
    }
    int st = 0;
    assert_int_equal(ts_wait(&c.proc, 30000, &st), 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    assert_int_equal(ts_devstream_control(&ds, "broker-rtt all 0"), 0);
    int seen[N];
    assert_int_equal(count_tagged(RAW, "term:", seen, N, N, NULL, NULL), N);
    for (int i = 0; i < N; i++)
        assert_int_equal(seen[i], 1);
    collector_stop(&c);
}

static void test_config__bad_value_names_option_and_range(void **state)
{
    AT_UNUSED(state);
    char *bin = ts_bin("adtrack-collector");
    char *out = NULL, *err = NULL;
    int st = 0;
    char *argv[] = {bin, "--threads", "0", NULL};
    assert_int_equal(ts_run(argv, NULL, 20000, &out, &err, &st), 0);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 2);
    assert_non_null(strstr(err, "--threads"));
    assert_non_null(strstr(err, "1 to 64"));
    free(out);
    free(err);
    char *env[] = {"ADTRACK_LISTEN=nonsense", NULL};
    char *argv2[] = {bin, NULL};
    assert_int_equal(ts_run(argv2, env, 20000, &out, &err, &st), 0);
    assert_int_not_equal(WEXITSTATUS(st), 0);
    assert_non_null(strstr(err, "--listen"));
    free(out);
    free(err);
    free(bin);
}

/* col_doubt against the broker: what is in the partition is found, what is not (other
 * bytes, or the same bytes in another partition) is not. devstream cannot look offsets up by
 * time, so this also covers the fallback that reads the last messages of the partition. */
/* A topic of its own (devstream creates it on first use with 4 partitions), so the other
 * tests' counts of adtrack.events.raw stay exact. */
#define DOUBT_TOPIC "adtrack.test.doubt"

static void test_doubt__finds_exactly_what_kafka_holds(void **state)
{
    AT_UNUSED(state);
    at_err_t err = {0};
    char errstr[256];
    rd_kafka_conf_t *pc = at_kafka_conf_new(ds.bootstraps, NULL, NULL, NULL, &err);
    assert_non_null(pc);
    rd_kafka_t *p = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof(errstr));
    assert_non_null(p);
    char held[5][64];
    for (int i = 0; i < 5; i++) {
        snprintf(held[i], sizeof(held[i]), "{\"v\":1,\"id\":\"doubt-held-%d\"}", i);
        assert_int_equal(rd_kafka_producev(p, RD_KAFKA_V_TOPIC(DOUBT_TOPIC), RD_KAFKA_V_PARTITION(2),
                                           RD_KAFKA_V_VALUE(held[i], strlen(held[i])), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                           RD_KAFKA_V_END),
                         0);
    }
    assert_int_equal(rd_kafka_flush(p, 10000), 0);
    rd_kafka_destroy(p);

    int64_t now = (int64_t)time(NULL) * 1000;
    const char *absent = "{\"v\":1,\"id\":\"doubt-never-sent\"}";
    col_doubt_item_t items[] = {
        {.topic = DOUBT_TOPIC, .partition = 2, .ts_ms = now, .value = held[1], .valuelen = strlen(held[1])},
        {.topic = DOUBT_TOPIC, .partition = 2, .ts_ms = now, .value = absent, .valuelen = strlen(absent)},
        {.topic = DOUBT_TOPIC, .partition = 1, .ts_ms = now, .value = held[3], .valuelen = strlen(held[3])},
        {.topic = DOUBT_TOPIC, .partition = 2, .ts_ms = now, .value = held[4], .valuelen = strlen(held[4])},
    };
    rd_kafka_conf_t *cc = at_kafka_conf_new(ds.bootstraps, NULL, NULL, NULL, &err);
    col_doubt_t *d = col_doubt_new(cc, &err);
    assert_non_null(d);
    assert_int_equal(col_doubt_check(d, items, AT_ARRAY_LEN(items), 30000, NULL, &err), 0);
    assert_true(items[0].found);
    assert_false(items[1].found);
    assert_false(items[2].found); /* right bytes, wrong partition */
    assert_true(items[3].found);
    col_doubt_destroy(d);

    /* A broker that cannot be reached: no conclusion, an error instead. */
    rd_kafka_conf_t *dead = at_kafka_conf_new("127.0.0.1:1", NULL, NULL, NULL, &err);
    d = col_doubt_new(dead, &err);
    assert_non_null(d);
    items[0].found = false;
    assert_int_equal(col_doubt_check(d, items, 1, 2000, NULL, &err), -1);
    assert_false(items[0].found);
    col_doubt_destroy(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doubt__finds_exactly_what_kafka_holds),
        cmocka_unit_test_teardown(test_config__bad_value_names_option_and_range, kill_leftovers),
        cmocka_unit_test_teardown(test_pixel__n_events_land_once_with_fields, kill_leftovers),
        cmocka_unit_test_teardown(test_bad_input__documented_statuses_and_rejected_topic, kill_leftovers),
        cmocka_unit_test_teardown(test_outage__every_2xx_event_in_kafka_once, kill_leftovers),
        cmocka_unit_test_teardown(test_spool__survives_kill9_and_replays_on_restart, kill_leftovers),
        cmocka_unit_test_teardown(test_sigterm__answers_inflight_then_exits_0, kill_leftovers),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
