/* LABELS: it;realkafka;collector */
/*
 * test_realkafka_failover.c: the collector under a steady load (adtrack-loadtest --verify
 * kafka:, 200 requests/s, open model) while a real 3-node Apache Kafka cluster (RF 3,
 * min.insync.replicas 2) fails, with the collector's production settings (acks=all,
 * idempotence, the default --kafka-timeout-ms 5000 after which an event goes to the spool):
 *  - one broker SIGKILLed mid-load and started again: leaders move off it and its replicas
 *    leave the ISR (measured, as librdkafka sees the metadata), the node catches up and
 *    rejoins every ISR;
 *  - the whole cluster stopped (controlled shutdown of every node) and started again on the
 *    same data: the collector answers from its spool meanwhile and replays it afterwards.
 * Each time: every request answered 2xx, every acknowledged event in Kafka exactly once
 * (0 lost, 0 duplicated in loadtest's verify report), the collector's spool drained after
 * the recovery, nothing lost by the collector, which stays up and ready. The p99 latency over
 * the whole run and the worst one-second p99 from the fault until the spool drained are
 * printed ("[rkf] ..."), as are the election and recovery times and the events Kafka holds
 * twice. A third case, a broker left down, fails today (a known collector bug) and runs only
 * with ADTRACK_KNOWN_BUGS=1.
 * Exits 77 (skipped) when Kafka is not installed (scripts/kafka.sh install).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "at_common.h"
#include "at_test_infra.h"
#include "at_test_observe.h"
#include "at_test_support.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define RAW "adtrack.events.raw"
#define PARTS 12
#define NODES 3
#define CLICK_KEY "rk-failover-click-key"
#define RATE 200

static ts_kafka_t kc;

/* ---- the collector and the load ---------------------------------------------------------------- */

typedef struct collector_s {
    ts_proc_t proc;
    int port;
    char *spool;
} collector_t;

static collector_t col;
static ts_proc_t load;

static void collector_start(collector_t *c)
{
    char listen[32];
    char *bin = ts_bin("adtrack-collector");
    c->port = ts_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", c->port);
    c->spool = ts_tmpdir("rk-failover-spool");
    assert_non_null(c->spool);
    /* Production settings: no --kafka-timeout-ms, so an event Kafka has not acknowledged
     * after 5 s is answered from the spool. */
    const char *argv[] = {bin,        "--listen",    listen,    "--brokers", kc.bootstraps, "--spool-dir", c->spool,
                          "--threads", "2",          "--click-key", CLICK_KEY, "--log-level", "warn",       NULL};
    assert_int_equal(ts_spawn(&c->proc, (char *const *)argv, NULL, false, 0), 0);
    free(bin);
    assert_int_equal(ts_wait_port(c->port, 30000), 0);
}

/* Polls /readyz until 200 (Kafka answered its probe, the spool is replayed). */
static int64_t collector_wait_ready(collector_t *c, int timeout_ms)
{
    int64_t t0 = ts_now_ms(), deadline = t0 + timeout_ms;
    int last = -1;
    while (ts_now_ms() < deadline) {
        ts_http_resp_t r = {0};
        last = ts_http(c->port, "GET", "/readyz", NULL, NULL, 0, &r, 5000) == 0 ? r.status : -1;
        ts_http_resp_free(&r);
        if (last == 200)
            return ts_now_ms() - t0;
        usleep(100 * 1000);
    }
    fail_msg("collector /readyz not 200 within %d ms (last %d)", timeout_ms, last);
    return -1;
}

/* The collector is still the process we started, and answers /healthz. */
static void assert_collector_up(collector_t *c)
{
    int status;
    pid_t r = waitpid(c->proc.pid, &status, WNOHANG);
    if (r == c->proc.pid)
        fail_msg("the collector exited (status %d)", status);
    ts_http_resp_t resp = {0};
    assert_int_equal(ts_http(c->port, "GET", "/healthz", NULL, NULL, 0, &resp, 5000), 0);
    assert_int_equal(resp.status, 200);
    ts_http_resp_free(&resp);
}

static double cmetric(const char *name)
{
    double v = ts_metric_sum(col.port, name);
    return v < 0 ? 0 : v;
}

static int teardown_procs(void **state)
{
    AT_UNUSED(state);
    ts_kill(&load);
    ts_kill(&col.proc);
    free(col.spool);
    memset(&col, 0, sizeof(col));
    return 0;
}

/* Starts adtrack-loadtest at RATE for @p seconds with --verify kafka:, report in @p report. */
static void load_start(const char *run_id, int seconds, const char *report)
{
    char target[64], verify[600], rate[16], duration[16];
    snprintf(target, sizeof(target), "http://127.0.0.1:%d", col.port);
    snprintf(verify, sizeof(verify), "kafka:%s", kc.bootstraps);
    snprintf(rate, sizeof(rate), "%d", RATE);
    snprintf(duration, sizeof(duration), "%ds", seconds);
    char *lt = ts_bin("adtrack-loadtest");
    /* Pixels come from many independent browsers: a request waiting out the 5 s Kafka
     * timeout must not hold up the others. 600 connections cover the requests that wait on
     * the partitions of a dead leader (a third of 5 s of the rate) several times over, and
     * stay below the collector's --max-connections-per-ip (1000), which the test's own
     * /metrics requests from 127.0.0.1 share. */
    const char *argv[] = {lt,        "--target",     target,     "--rate",        rate,     "--duration",
                          duration,  "--threads",    "1",        "--connections", "600",    "--timeout",
                          "60s",     "--max-lag",    "60s",      "--click-key",   CLICK_KEY, "--progress",
                          "off",     "--run-id",     run_id,     "--verify",      verify,   "--verify-wait",
                          "180s",    "--verify-quiet", "10s",    "--json",        report,   "--log-level",
                          "warn",    NULL};
    assert_int_equal(ts_spawn(&load, (char *const *)argv, NULL, false, 0), 0);
    free(lt);
}

/* Waits until the collector has produced @p n events (the load is under way). */
static void wait_produced(double n)
{
    int64_t deadline = ts_now_ms() + 60000;
    double got = 0;
    while ((got = cmetric("adtrack_events_produced_total")) < n) {
        if (ts_now_ms() > deadline)
            fail_msg("the load did not get going (%.0f of %.0f events produced)", got, n);
        usleep(100 * 1000);
    }
}

typedef struct verdict_s {
    double intended, ok, lost, dup, redelivered, expected, found, p99_ms, fault_p99_ms, max_ms;
} verdict_t;

/*
 * Waits for the loadtest (exit 0: nothing lost or duplicated), reads its report and asserts:
 * every intended request answered 2xx, every one checked against Kafka, every expected event
 * found, none lost, none duplicated. The worst one-second p99 over [@p fault_from_s,
 * @p fault_to_s) of the run goes to v->fault_p99_ms.
 */
static void load_finish(const char *report, int seconds, double fault_from_s, double fault_to_s, verdict_t *v)
{
    int status = -1;
    if (ts_wait(&load, 300000, &status) != 0)
        fail_msg("adtrack-loadtest did not finish within 300 s");
    bson_t *rep = ts_json_file(report);
    assert_non_null(rep);
    double checked = -1;
    struct {
        const char *path;
        double *out;
    } f[] = {{"requests.intended", &v->intended}, {"requests.ok", &v->ok},
             {"verify.checked_requests", &checked}, {"verify.lost", &v->lost},
             {"verify.duplicated", &v->dup},      {"verify.redelivered", &v->redelivered},
             {"verify.expected_events", &v->expected}, {"verify.found_events", &v->found},
             {"latency_us.p99", &v->p99_ms},      {"latency_us.max", &v->max_ms}};
    for (size_t i = 0; i < AT_ARRAY_LEN(f); i++)
        if (!ts_json_num(rep, f[i].path, f[i].out))
            fail_msg("%s has no number at %s", report, f[i].path);
    v->p99_ms /= 1000;
    v->max_ms /= 1000;
    v->fault_p99_ms = ts_report_max_p99_us(rep, fault_from_s, fault_to_s) / 1000;
    bson_destroy(rep);
    fprintf(stderr, "[rkf] %s: %.0f intended, %.0f ok, %.0f checked; events %.0f expected, %.0f found, %.0f lost, "
                    "%.0f duplicated, %.0f redelivered; latency p99 %.1f ms (worst 1-s p99 during the fault %.1f ms), "
                    "max %.1f ms\n",
            report, v->intended, v->ok, checked, v->expected, v->found, v->lost, v->dup, v->redelivered, v->p99_ms,
            v->fault_p99_ms, v->max_ms);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    assert_true(v->intended == (double)RATE * seconds);
    assert_true(v->ok == v->intended);
    assert_true(checked == v->intended);
    assert_true(v->lost == 0);
    assert_true(v->dup == 0);
    assert_true(v->found == v->expected);
}

/* ---- redeliveries: which events are in Kafka twice, and where ---------------------------------- */

typedef struct copy_s {
    char id[40];
    int32_t partition;
    int64_t offset;
} copy_t;

static int copy_cmp(const void *a, const void *b)
{
    const copy_t *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c != 0 ? c : x->offset < y->offset ? -1 : x->offset > y->offset;
}

/*
 * Reads the raw topic and prints, for the run @p run_id, every event id that is there more
 * than once (loadtest's "redelivered": the same event stored twice in Kafka, which the
 * enricher's idempotent sink absorbs) with its partition, whether @p victim led that
 * partition when it was killed (@p led, or NULL), and the offsets of the copies. This is
 * the evidence for docs/REAL-INFRA.md; nothing is asserted on it. Returns the count.
 */
static long report_redelivered(const char *run_id, const ts_part_t *led, int victim)
{
    ts_kmsg_t *msgs = NULL;
    long n = ts_kafka_consume_all(kc.bootstraps, RAW, 1, 2000, 60000, &msgs);
    if (n < 0)
        return -1;
    copy_t *c = calloc((size_t)n + 1, sizeof(*c));
    long nc = 0;
    char tag[64];
    snprintf(tag, sizeof(tag), "\"%s:", run_id);
    for (long i = 0; c != NULL && i < n; i++) {
        const char *id = strstr(msgs[i].value, "\"id\" : \"");
        if (strstr(msgs[i].value, tag) == NULL || id == NULL)
            continue;
        snprintf(c[nc].id, sizeof(c[nc].id), "%.36s", id + strlen("\"id\" : \""));
        c[nc].partition = msgs[i].partition;
        c[nc].offset = msgs[i].offset;
        nc++;
    }
    ts_kmsgs_free(msgs, n);
    qsort(c, (size_t)nc, sizeof(*c), copy_cmp);
    long twice = 0, on_victim = 0;
    for (long i = 1; i < nc; i++) {
        if (strcmp(c[i].id, c[i - 1].id) != 0)
            continue;
        twice++;
        bool v = led != NULL && c[i].partition >= 0 && c[i].partition < PARTS && led[c[i].partition].leader == victim;
        on_victim += v ? 1 : 0;
        if (twice <= 8)
            fprintf(stderr, "[rkf]   %s twice in %s/%d (offsets %lld and %lld)%s\n", c[i].id, RAW, c[i].partition,
                    (long long)c[i - 1].offset, (long long)c[i].offset,
                    led == NULL ? "" : v ? ", a partition the killed node led" : ", a partition a live node led");
    }
    if (twice > 0 && led != NULL)
        fprintf(stderr, "[rkf] %ld events of run %s are in Kafka twice (same id), %ld of them on partitions the killed "
                        "node led\n", twice, run_id, on_victim);
    else if (twice > 0)
        fprintf(stderr, "[rkf] %ld events of run %s are in Kafka twice (same id)\n", twice, run_id);
    free(c);
    return twice;
}

/*
 * SIGKILLs the leader of raw/0 (so surely a leader of raw partitions) and waits until the
 * metadata shows the election and the ISR shrink: no partition led by it, it in no ISR, 2 of
 * 3 in sync (still min.insync.replicas, so acks=all keeps working). Returns the node; its
 * layout before the kill in @p before, the kill and election times in *@p t_kill, *@p t_moved.
 */
static int kill_leader_wait_election(ts_part_t *before, int64_t *t_kill, int64_t *t_moved)
{
    ts_part_t parts[PARTS];
    assert_int_equal(ts_topic_layout(kc.bootstraps, RAW, parts, PARTS), PARTS);
    int victim = parts[0].leader;
    memcpy(before, parts, sizeof(parts));
    *t_kill = ts_now_ms();
    assert_int_equal(ts_kafka_kill_node(&kc, victim), 0);
    int64_t deadline = ts_now_ms() + 60000;
    for (;;) {
        int n = ts_topic_layout(kc.bootstraps, RAW, parts, PARTS);
        bool moved = n == PARTS;
        for (int p = 0; moved && p < PARTS; p++)
            moved = parts[p].leader >= 1 && parts[p].leader != victim && !parts[p].isr_has[victim] &&
                    parts[p].nisr == NODES - 1;
        if (moved)
            break;
        if (ts_now_ms() > deadline)
            fail_msg("60 s after the SIGKILL of node %d, leadership and ISRs had not moved", victim);
        usleep(100 * 1000);
    }
    *t_moved = ts_now_ms();
    return victim;
}

/* Polls until the collector's spool is empty (everything replayed; new events go to Kafka
 * directly again), at most @p timeout_ms. Returns when it was, or -1. */
static int64_t wait_spool_empty(int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    while (ts_now_ms() < deadline) {
        if (cmetric("adtrack_spool_bytes") <= 0)
            return ts_now_ms();
        usleep(100 * 1000);
    }
    return -1;
}

/* ---- fixtures ----------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    AT_UNUSED(state);
    return ts_kafka_start(&kc, NODES) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    AT_UNUSED(state);
    ts_kafka_stop(&kc);
    return 0;
}

/* ---- tests -------------------------------------------------------------------------------------- */

static void test_failover__broker_sigkill_and_restart_loses_nothing(void **state)
{
    AT_UNUSED(state);
    enum { SECONDS = 30 };
    collector_start(&col);
    collector_wait_ready(&col, 60000);
    char *tmp = ts_tmpdir("rk-failover-kill");
    char report[1200];
    snprintf(report, sizeof(report), "%s/run.json", tmp);
    int64_t t_load = ts_now_ms();
    load_start("rkkill", SECONDS, report);
    wait_produced(RATE * 4);

    ts_part_t before[PARTS], parts[PARTS];
    int64_t t_kill = 0, t_moved = 0;
    int victim = kill_leader_wait_election(before, &t_kill, &t_moved), led = 0;
    for (int p = 0; p < PARTS; p++)
        led += before[p].leader == victim ? 1 : 0;
    assert_collector_up(&col);
    int64_t t_back0 = ts_now_ms();
    assert_int_equal(ts_kafka_start_node(&kc, victim), 0);
    int64_t t_back = ts_now_ms();
    assert_int_equal(ts_topic_layout(kc.bootstraps, RAW, parts, PARTS), PARTS);
    for (int p = 0; p < PARTS; p++)
        if (!parts[p].isr_has[victim] || parts[p].nisr != NODES)
            fail_msg("%s/%d: node %d not back in the ISR after start-node", RAW, p, victim);
    /* The spool drains, and new events go to Kafka directly again; until then they wait in
     * the spool too, so for clients the fault lasts until it is empty. With the node left
     * down it does not drain (test_failover__spool_drains_with_a_broker_left_down), and even
     * after the restart the in-doubt check can stay stuck on a stale leader for up to 15 min:
     * 1 of 7 runs failed here that way. Both are the collector bug of docs/REAL-INFRA.md
     * ("Found on real Kafka", item 1); this assertion is meant to fail until it is fixed. */
    int64_t t_drained = wait_spool_empty(60000);
    if (t_drained < 0)
        fail_msg("the collector's spool still holds %.0f bytes 60 s after node %d came back (the known collector "
                 "bug of docs/REAL-INFRA.md, \"Found on real Kafka\", item 1: look for \"could not check events in "
                 "doubt yet\" above)",
                 cmetric("adtrack_spool_bytes"), victim);
    fprintf(stderr, "[rkf] node %d (leader of %d of %d partitions) SIGKILLed %.1f s into the run; leaders moved and "
                    "ISRs shrank to 2 after %lld ms; restarted, back in every ISR %lld ms after its start; the "
                    "collector's spool empty %lld ms after the SIGKILL\n",
            victim, led, PARTS, (t_kill - t_load) / 1000.0, (long long)(t_moved - t_kill),
            (long long)(t_back - t_back0), (long long)(t_drained - t_kill));

    verdict_t v;
    load_finish(report, SECONDS, (t_kill - t_load) / 1000.0 - 1, (t_drained - t_load) / 1000.0 + 1, &v);
    assert_collector_up(&col);
    collector_wait_ready(&col, 60000);
    fprintf(stderr, "[rkf] collector: %.0f events produced directly, %.0f spooled (%.0f in doubt), %.0f replayed, "
                    "%.0f delivery failures, %.0f lost\n",
            cmetric("adtrack_events_produced_total"), cmetric("adtrack_events_spooled_total"),
            cmetric("adtrack_spool_in_doubt_total"), cmetric("adtrack_spool_replayed_total"),
            cmetric("adtrack_kafka_delivery_failures_total"), cmetric("adtrack_events_lost_total"));
    assert_true(cmetric("adtrack_events_lost_total") == 0);
    if (v.redelivered > 0)
        report_redelivered("rkkill", before, victim);
    free(tmp);
}

static void test_failover__whole_cluster_down_and_back_loses_nothing(void **state)
{
    AT_UNUSED(state);
    enum { SECONDS = 50 };
    collector_start(&col);
    collector_wait_ready(&col, 60000);
    char *tmp = ts_tmpdir("rk-failover-cluster");
    char report[1200];
    snprintf(report, sizeof(report), "%s/run.json", tmp);
    int64_t t_load = ts_now_ms();
    load_start("rkcluster", SECONDS, report);
    wait_produced(RATE * 4);

    /* Every node gets SIGTERM at once, data kept. The last node standing cannot finish
     * its controlled shutdown without a controller quorum; kafka.sh SIGKILLs it after
     * --timeout (docs/REAL-INFRA.md). */
    int64_t t_stop = ts_now_ms();
    char *out = NULL;
    assert_int_equal(ts_kafka_script(&kc, "stop", (const char *const[]){"--timeout", "10", NULL}, &out), 0);
    free(out);
    int64_t t_down = ts_now_ms();
    /* Down for a while: the collector says it is not ready (Kafka unreachable) and answers
     * from its spool. */
    double spooled0 = cmetric("adtrack_events_spooled_total");
    int64_t deadline = ts_now_ms() + 30000;
    bool unready = false;
    while ((!unready || cmetric("adtrack_events_spooled_total") < spooled0 + RATE * 3) && ts_now_ms() < deadline) {
        ts_http_resp_t r = {0};
        if (ts_http(col.port, "GET", "/readyz", NULL, NULL, 0, &r, 5000) == 0 && r.status == 503)
            unready = true;
        ts_http_resp_free(&r);
        usleep(100 * 1000);
    }
    assert_true(unready);
    assert_collector_up(&col);
    int64_t t_start = ts_now_ms();
    out = NULL;
    assert_int_equal(ts_kafka_script(&kc, "start", NULL, &out), 0);
    free(out);
    int64_t t_up = ts_now_ms();
    /* The collector notices, replays its spool and is ready again. */
    int64_t ready_ms = collector_wait_ready(&col, 120000);
    /* While the spool is not empty, new events go there too (behind the replay): the fault
     * lasts, for clients, until it is drained. */
    int64_t t_drained = wait_spool_empty(120000);
    if (t_drained < 0)
        fail_msg("the collector's spool still holds %.0f bytes 120 s after the cluster came back",
                 cmetric("adtrack_spool_bytes"));
    fprintf(stderr, "[rkf] cluster stopped %.1f s into the run (stop took %lld ms), down %lld ms, start on the same "
                    "data took %lld ms; collector ready again %lld ms later, its spool empty %lld ms after the start\n",
            (t_stop - t_load) / 1000.0, (long long)(t_down - t_stop), (long long)(t_start - t_down),
            (long long)(t_up - t_start), (long long)ready_ms, (long long)(t_drained - t_up));

    verdict_t v;
    load_finish(report, SECONDS, (t_stop - t_load) / 1000.0 - 1, (t_drained - t_load) / 1000.0 + 1, &v);
    assert_collector_up(&col);
    double spooled = cmetric("adtrack_events_spooled_total"), replayed = cmetric("adtrack_spool_replayed_total");
    fprintf(stderr, "[rkf] collector: %.0f events produced directly, %.0f spooled (%.0f in doubt), %.0f replayed, "
                    "%.0f delivery failures, %.0f lost\n",
            cmetric("adtrack_events_produced_total"), spooled, cmetric("adtrack_spool_in_doubt_total"), replayed,
            cmetric("adtrack_kafka_delivery_failures_total"), cmetric("adtrack_events_lost_total"));
    /* The outage was real: the spool carried events, and all of them reached Kafka. */
    assert_true(spooled >= RATE * 3);
    assert_true(cmetric("adtrack_events_lost_total") == 0);
    if (v.redelivered > 0)
        report_redelivered("rkcluster", NULL, 0);
    free(tmp);
}

/*
 * Known bug, run only with ADTRACK_KNOWN_BUGS=1 until it is fixed (docs/REAL-INFRA.md, "Found
 * on real Kafka", item 1): a broker SIGKILLed under load and left down. The spool's blocking
 * watermark query (librdkafka #2588) is fixed and the spool now drains after the election;
 * what still fails is loadtest's --verify, which reads only the events produced before the
 * kill and gives up after its quiet window.
 * Pass: the spool is empty within 60 s of the election.
 */
static void test_failover__spool_drains_with_a_broker_left_down(void **state)
{
    AT_UNUSED(state);
    const char *known = getenv("ADTRACK_KNOWN_BUGS");
    if (known == NULL || strcmp(known, "1") != 0) {
        print_message("known bug (docs/REAL-INFRA.md, Found on real Kafka, 1); ADTRACK_KNOWN_BUGS=1 runs it\n");
        skip();
    }
    enum { SECONDS = 20 };
    collector_start(&col);
    collector_wait_ready(&col, 60000);
    char *tmp = ts_tmpdir("rk-failover-leftdown");
    char report[1200];
    snprintf(report, sizeof(report), "%s/run.json", tmp);
    int64_t t_load = ts_now_ms();
    load_start("rkleftdown", SECONDS, report);
    wait_produced(RATE * 2);
    ts_part_t before[PARTS];
    int64_t t_kill = 0, t_moved = 0;
    int victim = kill_leader_wait_election(before, &t_kill, &t_moved);
    int64_t t_drained = wait_spool_empty(60000);
    double left = cmetric("adtrack_spool_bytes");
    fprintf(stderr, "[rkf] node %d left down; election after %lld ms; spool %s (%.0f bytes, %.0f of %.0f replayed)\n",
            victim, (long long)(t_moved - t_kill), t_drained < 0 ? "NOT drained 60 s after it" : "drained", left,
            cmetric("adtrack_spool_replayed_total"), cmetric("adtrack_events_spooled_total"));
    /* Bring the node back either way, so the cluster is whole for whatever runs next. */
    assert_int_equal(ts_kafka_start_node(&kc, victim), 0);
    assert_true(t_drained >= 0);
    verdict_t v;
    load_finish(report, SECONDS, (t_kill - t_load) / 1000.0 - 1, SECONDS, &v);
    free(tmp);
}

int main(void)
{
    if (ts_infra_skip(true, false))
        return TS_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_failover__broker_sigkill_and_restart_loses_nothing, teardown_procs),
        cmocka_unit_test_teardown(test_failover__whole_cluster_down_and_back_loses_nothing, teardown_procs),
        cmocka_unit_test_teardown(test_failover__spool_drains_with_a_broker_left_down, teardown_procs),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
