/* LABELS: it;kafka */
/*
 * test_devstream.c: adtrack-devstream as tests and scripts use it: bootstrap list on the
 * first stdout line, real produce/consume over TCP, fault injection through the stdin
 * control channel, leader placement as documented, --help wording, option errors, and
 * staying up after stdin EOF until SIGTERM (exit 0).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "at_common.h"
#include "at_test_support.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define RAW_TOPIC "adtrack.events.raw"

/* ---- a minimal producer with per-message results -------------------------------------------- */

typedef struct dr_result_s {
    bool done;
    rd_kafka_resp_err_t err;
} dr_result_t;

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    AT_UNUSED(rk);
    AT_UNUSED(opaque);
    dr_result_t *r = m->_private;
    r->err = m->err;
    r->done = true;
}

/* @p extra: NULL-terminated name/value pairs. */
static rd_kafka_t *producer_new(const char *bootstraps, const char *const *extra)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *base[] = {"bootstrap.servers", bootstraps, "linger.ms", "0", "reconnect.backoff.max.ms", "500",
                          "log_level", "3", NULL};
    for (const char *const *kv = base; *kv != NULL; kv += 2)
        assert_int_equal(rd_kafka_conf_set(conf, kv[0], kv[1], errstr, sizeof(errstr)), RD_KAFKA_CONF_OK);
    for (const char *const *kv = extra; kv != NULL && *kv != NULL; kv += 2)
        assert_int_equal(rd_kafka_conf_set(conf, kv[0], kv[1], errstr, sizeof(errstr)), RD_KAFKA_CONF_OK);
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    return rk;
}

/* Produces one message and waits up to @p wait_ms for its delivery report. Returns the
 * report's error, or RD_KAFKA_RESP_ERR__TIMED_OUT when none came. */
static rd_kafka_resp_err_t produce_one(rd_kafka_t *rk, const char *key, const char *value, int wait_ms)
{
    dr_result_t r = {false, RD_KAFKA_RESP_ERR_NO_ERROR};
    rd_kafka_resp_err_t err = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC(RAW_TOPIC), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)value, strlen(value)), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(&r), RD_KAFKA_V_END);
    assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    int64_t deadline = ts_now_ms() + wait_ms;
    while (!r.done && ts_now_ms() < deadline)
        rd_kafka_poll(rk, 50);
    if (!r.done) {
        /* The report must not outlive r: purge and wait for it. */
        rd_kafka_purge(rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        while (!r.done)
            rd_kafka_poll(rk, 50);
        return RD_KAFKA_RESP_ERR__TIMED_OUT;
    }
    return r.err;
}

static void start_devstream(ts_devstream_t *d, int brokers, int partitions)
{
    assert_int_equal(ts_devstream_start(d, brokers, partitions), 0);
    assert_true(strncmp(d->bootstraps, "127.0.0.1:", 10) == 0);
}

/* Every devstream a test starts lives in *state, so the teardown stops it even when an
 * assertion jumped out of the test half-way. */
static int setup(void **state)
{
    ts_devstream_t *d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -1;
    d->proc.stdin_fd = d->proc.stdout_fd = -1;
    *state = d;
    return 0;
}

static int teardown(void **state)
{
    ts_devstream_stop(*state);
    free(*state);
    return 0;
}

/* ---- tests ------------------------------------------------------------------------------------ */

static void test_devstream__help_says_dev_only(void **state)
{
    AT_UNUSED(state);
    char *bin = ts_bin("adtrack-devstream");
    char *argv[] = {bin, "--help", NULL};
    char *out = NULL, *err = NULL;
    int status = -1;
    assert_int_equal(ts_run(argv, NULL, 10000, &out, &err, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_non_null(strstr(out, "development"));
    assert_non_null(strstr(out, "not for production"));
    assert_non_null(strstr(out, "in-memory"));
    assert_non_null(strstr(out, "data dies with the process"));
    assert_non_null(strstr(out, "no TLS/SASL"));
    assert_non_null(strstr(out, "broker-down"));
    assert_non_null(strstr(out, "ADTRACK_BROKERS"));
    free(out);
    free(err);
    free(bin);
}

static void expect_usage_error(const char *flag, const char *value, const char *needle)
{
    char *bin = ts_bin("adtrack-devstream");
    char *argv[] = {bin, (char *)flag, (char *)value, NULL};
    char *out = NULL, *err = NULL;
    int status = -1;
    assert_int_equal(ts_run(argv, NULL, 10000, &out, &err, &status), 0);
    assert_true(WIFEXITED(status));
    assert_int_not_equal(WEXITSTATUS(status), 0);
    if (strstr(err, needle) == NULL)
        fail_msg("%s %s: stderr lacks '%s': %s", flag, value, needle, err);
    assert_string_equal(out, ""); /* no bootstrap line: nothing was started */
    free(out);
    free(err);
    free(bin);
}

static void test_devstream__bad_options_fail_with_message(void **state)
{
    AT_UNUSED(state);
    expect_usage_error("--bogus", "1", "--bogus");
    expect_usage_error("--brokers", "0", "--brokers");
    expect_usage_error("--brokers", "17", "1 to 16");
    expect_usage_error("--partitions", "257", "--partitions");
    expect_usage_error("--topic", "bad/name", "--topic");
    expect_usage_error("--topic", "ok.name:0", "--topic");
    expect_usage_error("--log-level", "loud", "--log-level");
}

static void test_devstream__produce_then_consume(void **state)
{
    ts_devstream_t *d = *state;
    enum { N = 20 };
    start_devstream(d, 1, 4);

    rd_kafka_t *rk = producer_new(d->bootstraps, NULL);
    for (int i = 0; i < N; i++) {
        char key[16], value[64];
        snprintf(key, sizeof(key), "c%d", i);
        snprintf(value, sizeof(value), "{\"v\":1,\"n\":%d}", i);
        assert_int_equal(produce_one(rk, key, value, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    }
    rd_kafka_destroy(rk);

    ts_kmsg_t *msgs = NULL;
    long n = ts_kafka_consume_all(d->bootstraps, RAW_TOPIC, N, 500, 20000, &msgs);
    assert_int_equal(n, N);
    bool seen[N] = {false};
    for (long i = 0; i < n; i++) {
        int k = -1, v = -1;
        assert_non_null(msgs[i].key);
        assert_int_equal(sscanf(msgs[i].key, "c%d", &k), 1);
        assert_int_equal(sscanf(msgs[i].value, "{\"v\":1,\"n\":%d}", &v), 1);
        assert_int_equal(k, v);
        assert_true(k >= 0 && k < N && !seen[k]);
        seen[k] = true;
        assert_true(msgs[i].partition >= 0 && msgs[i].partition < 4);
    }
    ts_kmsgs_free(msgs, n);
    }

static void test_devstream__broker_down_fails_produce_and_up_heals(void **state)
{
    ts_devstream_t *d = *state;
    start_devstream(d, 1, 4);
    const char *extra[] = {"message.timeout.ms", "1500", NULL};
    rd_kafka_t *rk = producer_new(d->bootstraps, extra);

    /* Warm up: connection and metadata exist before the fault. */
    assert_int_equal(produce_one(rk, "c1", "before", 10000), RD_KAFKA_RESP_ERR_NO_ERROR);

    assert_int_equal(ts_devstream_control(d, "broker-down 1"), 0);
    int64_t t0 = ts_now_ms();
    rd_kafka_resp_err_t err = produce_one(rk, "c1", "during", 10000);
    fprintf(stderr, "produce while broker down: %s after %lld ms\n", rd_kafka_err2name(err),
            (long long)(ts_now_ms() - t0));
    assert_int_not_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_not_equal(err, RD_KAFKA_RESP_ERR__TIMED_OUT); /* a real delivery failure, not our own wait */

    assert_int_equal(ts_devstream_control(d, "broker-up 1"), 0);
    int64_t deadline = ts_now_ms() + 20000;
    int attempts = 0;
    do {
        attempts++;
        err = produce_one(rk, "c1", "after", 5000);
    } while (err != RD_KAFKA_RESP_ERR_NO_ERROR && ts_now_ms() < deadline);
    fprintf(stderr, "produce after broker-up: %s after %d attempt(s)\n", rd_kafka_err2name(err), attempts);
    assert_int_equal(err, RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);

    /* The failed message is gone; the two delivered ones are there. */
    ts_kmsg_t *msgs = NULL;
    long n = ts_kafka_consume_all(d->bootstraps, RAW_TOPIC, 2, 500, 20000, &msgs);
    assert_true(n >= 2);
    int before = 0, during = 0;
    for (long i = 0; i < n; i++) {
        before += strcmp(msgs[i].value, "before") == 0;
        during += strcmp(msgs[i].value, "during") == 0;
    }
    assert_int_equal(before, 1);
    assert_int_equal(during, 0);
    ts_kmsgs_free(msgs, n);
    }

static void test_devstream__produce_errors_and_leaders(void **state)
{
    ts_devstream_t *d = *state;
    char *bin = ts_bin("adtrack-devstream");
    char *argv[] = {bin, "--brokers", "3", "--partitions", "4", "--topic", "extra.topic:2", NULL};
    char reply[8192];
    assert_int_equal(ts_devstream_start_argv(d, argv), 0);
    free(bin);

    /* Documented placement: partition p is led by broker (p mod brokers)+1. */
    assert_int_equal(ts_devstream_control_reply(d, "leaders", reply, sizeof(reply)), 0);
    const char *expect[] = {" adtrack.events.raw/0=1",       " adtrack.events.raw/1=2", " adtrack.events.raw/2=3",
                            " adtrack.events.raw/3=1",       " adtrack.coredata.changes/3=1",
                            " extra.topic/0=1",              " extra.topic/1=2"};
    for (size_t i = 0; i < AT_ARRAY_LEN(expect); i++)
        if (strstr(reply, expect[i]) == NULL)
            fail_msg("leaders lacks '%s': %s", expect[i], reply);
    assert_null(strstr(reply, "extra.topic/2="));

    /* ... and that is what clients see in metadata. */
    rd_kafka_t *rk = producer_new(d->bootstraps, (const char *[]){"retries", "0", "enable.idempotence", "false", NULL});
    const struct rd_kafka_metadata *md = NULL;
    assert_int_equal(rd_kafka_metadata(rk, 1, NULL, &md, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(md->broker_cnt, 3);
    int checked = 0;
    for (int t = 0; t < md->topic_cnt; t++) {
        if (strcmp(md->topics[t].topic, RAW_TOPIC) != 0)
            continue;
        assert_int_equal(md->topics[t].partition_cnt, 4);
        for (int p = 0; p < md->topics[t].partition_cnt; p++) {
            assert_int_equal(md->topics[t].partitions[p].leader, (md->topics[t].partitions[p].id % 3) + 1);
            checked++;
        }
    }
    assert_int_equal(checked, 4);
    rd_kafka_metadata_destroy(md);

    /* Control errors are answered, not fatal. */
    assert_int_equal(ts_devstream_control_reply(d, "broker-down 4", reply, sizeof(reply)), -1);
    assert_true(strncmp(reply, "error ", 6) == 0);
    assert_int_equal(ts_devstream_control_reply(d, "no-such-command", reply, sizeof(reply)), -1);
    assert_true(strncmp(reply, "error ", 6) == 0);
    assert_int_equal(ts_devstream_control_reply(d, "produce-errors 1 NO_SUCH_ERROR", reply, sizeof(reply)), -1);
    assert_true(strncmp(reply, "error ", 6) == 0);
    assert_int_equal(ts_devstream_control(d, "help"), 0);
    assert_int_equal(ts_devstream_control(d, "broker-rtt all 0"), 0);

    /* A queued Produce error reaches the client unchanged (no retries here); the next
     * request is served normally. */
    assert_int_equal(produce_one(rk, "c1", "warm", 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    assert_int_equal(ts_devstream_control(d, "produce-errors 1 MSG_SIZE_TOO_LARGE"), 0);
    assert_int_equal(produce_one(rk, "c1", "rejected", 10000), RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE);
    assert_int_equal(produce_one(rk, "c1", "accepted", 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);
    }

static void test_devstream__stdin_eof_keeps_running_until_sigterm(void **state)
{
    ts_devstream_t *d = *state;
    int status = -1;
    start_devstream(d, 1, 1);
    close(d->proc.stdin_fd);
    d->proc.stdin_fd = -1;

    /* Still up (ts_wait times out) and still serving Kafka. */
    assert_int_equal(ts_wait(&d->proc, 700, &status), -1);
    rd_kafka_t *rk = producer_new(d->bootstraps, NULL);
    assert_int_equal(produce_one(rk, "c1", "after-eof", 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
    rd_kafka_destroy(rk);

    assert_int_equal(ts_signal(&d->proc, SIGTERM), 0);
    assert_int_equal(ts_wait(&d->proc, 10000, &status), 0);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    ts_kill(&d->proc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_devstream__help_says_dev_only),
        cmocka_unit_test(test_devstream__bad_options_fail_with_message),
        cmocka_unit_test_setup_teardown(test_devstream__produce_then_consume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devstream__broker_down_fails_produce_and_up_heals, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devstream__produce_errors_and_leaders, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devstream__stdin_eof_keeps_running_until_sigterm, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
