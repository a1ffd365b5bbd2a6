/*
 * test_col_spool.c: the spool's local guarantees, with Kafka unreachable (the replay
 * producer points at a closed port): appends are reported durable only after they are in
 * the file, survive a reopen, a torn tail is cut, and the size limit refuses appends.
 * Replay into a real Kafka-protocol cluster is covered by tests/it/test_collector.c.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "at_kafka.h"
#include "col_spool.h"

typedef struct sink_s {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int ok, failed;
} sink_t;

static void on_done(col_spool_rec_t *done, void *opaque)
{
    sink_t *s = opaque;
    pthread_mutex_lock(&s->mu);
    while (done != NULL) {
        col_spool_rec_t *next = done->next;
        if (done->result == 0)
            s->ok++;
        else
            s->failed++;
        free(done);
        done = next;
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static void wait_done(sink_t *s, int want)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 30;
    pthread_mutex_lock(&s->mu);
    while (s->ok + s->failed < want)
        if (pthread_cond_timedwait(&s->cv, &s->mu, &ts) != 0)
            break;
    pthread_mutex_unlock(&s->mu);
    assert_int_equal(s->ok + s->failed, want);
}

static char *make_dir(void)
{
    const char *base = getenv("ADTRACK_TEST_TMP");
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/spool.XXXXXX", base ? base : "/tmp");
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static col_spool_t *open_spool(const char *dir, uint64_t max)
{
    at_err_t err;
    /* Nothing listens on port 1: Kafka stays unreachable, so nothing is replayed. */
    const char *defaults[] = {"message.timeout.ms", "1000", "log_level", "0", NULL};
    rd_kafka_conf_t *kc = at_kafka_conf_new("127.0.0.1:1", NULL, defaults, NULL, &err);
    assert_non_null(kc);
    rd_kafka_conf_t *check = at_kafka_conf_new("127.0.0.1:1", NULL, NULL, NULL, &err);
    assert_non_null(check);
    const char *topics[] = {"adtrack.events.raw", "adtrack.events.rejected"};
    col_spool_t *sp = col_spool_open(dir, max, kc, check, topics, 2, &err);
    if (sp == NULL)
        fail_msg("col_spool_open: %s", err.msg);
    return sp;
}

static off_t file_size(const char *dir)
{
    char path[1024];
    struct stat st;
    snprintf(path, sizeof(path), "%s/spool.log", dir);
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void test_col_spool_append__durable_before_notify_and_survives_reopen(void **state)
{
    (void)state;
    char *dir = make_dir();
    sink_t s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    col_spool_t *sp = open_spool(dir, 1 << 20);
    int client = col_spool_register(sp, on_done, &s);
    assert_true(client >= 0);
    assert_false(col_spool_active(sp));
    off_t expect = 0;
    for (int i = 0; i < 100; i++) {
        char v[64];
        int n = snprintf(v, sizeof(v), "{\"n\":%d}", i);
        expect += 12 + 6 + n;
        col_spool_rec_t *r = col_spool_rec_new(i % 2, "camp-1", 6, v, (size_t)n, NULL);
        assert_non_null(r);
        assert_int_equal(col_spool_append(sp, client, r), 0);
    }
    wait_done(&s, 100);
    assert_int_equal(s.ok, 100);
    assert_true(col_spool_active(sp));
    /* Every acknowledged record is in the file already (12-byte header + key + value). */
    off_t size = file_size(dir);
    assert_int_equal(size, expect);
    col_spool_stats_t st;
    col_spool_get_stats(sp, &st);
    assert_int_equal(st.appended, 100);
    assert_true(st.fsyncs >= 1 && st.fsyncs <= 100);
    assert_int_equal(st.bytes, (uint64_t)size);
    col_spool_close(sp, 0);

    /* Reopen: the records are still owed to Kafka. */
    sp = open_spool(dir, 1 << 20);
    assert_true(col_spool_active(sp));
    col_spool_get_stats(sp, &st);
    assert_int_equal(st.bytes, (uint64_t)size);
    col_spool_close(sp, 0);
    free(dir);
}

static void test_col_spool_open__cuts_torn_tail(void **state)
{
    (void)state;
    char *dir = make_dir();
    sink_t s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    col_spool_t *sp = open_spool(dir, 1 << 20);
    int client = col_spool_register(sp, on_done, &s);
    for (int i = 0; i < 3; i++)
        assert_int_equal(col_spool_append(sp, client, col_spool_rec_new(0, "k", 1, "value", 5, NULL)), 0);
    wait_done(&s, 3);
    col_spool_close(sp, 0);
    off_t good = file_size(dir);

    /* A crash mid-write leaves half a record (never acknowledged). */
    char path[1024];
    snprintf(path, sizeof(path), "%s/spool.log", dir);
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    const unsigned char torn[] = {0xA7, 0x00, 0x01, 0x00, 0x40, 0x00, 0x00, 0x00, 1, 2, 3};
    assert_int_equal(write(fd, torn, sizeof(torn)), (ssize_t)sizeof(torn));
    close(fd);
    assert_int_equal(file_size(dir), good + (off_t)sizeof(torn));

    sp = open_spool(dir, 1 << 20);
    assert_int_equal(file_size(dir), good);
    col_spool_stats_t st;
    col_spool_get_stats(sp, &st);
    assert_int_equal(st.bytes, (uint64_t)good);
    col_spool_close(sp, 0);

    /* A flipped byte inside the last record fails its CRC: that record is cut too. */
    fd = open(path, O_RDWR);
    assert_int_equal(pwrite(fd, "X", 1, good - 1), 1);
    close(fd);
    sp = open_spool(dir, 1 << 20);
    assert_int_equal(file_size(dir), good - (12 + 1 + 5));
    col_spool_close(sp, 0);
    free(dir);
}

static void test_col_spool_append__refuses_over_limit(void **state)
{
    (void)state;
    char *dir = make_dir();
    sink_t s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    col_spool_t *sp = open_spool(dir, 100);
    int client = col_spool_register(sp, on_done, &s);
    char v[40];
    memset(v, 'v', sizeof(v));
    /* 12 + 1 + 40 = 53 bytes: one fits in 100, the second does not. */
    col_spool_rec_t *a = col_spool_rec_new(0, "k", 1, v, sizeof(v), NULL);
    col_spool_rec_t *b = col_spool_rec_new(0, "k", 1, v, sizeof(v), NULL);
    assert_int_equal(col_spool_append(sp, client, a), 0);
    assert_int_equal(col_spool_append(sp, client, b), -1);
    free(b); /* refused: still ours */
    wait_done(&s, 1);
    assert_false(col_spool_full(sp));
    col_spool_stats_t st;
    col_spool_get_stats(sp, &st);
    assert_int_equal(st.append_failed, 1);
    col_spool_close(sp, 0);
    free(dir);
}

static void test_col_spool_rec_set_in_doubt__kept_across_reopen_and_checked(void **state)
{
    (void)state;
    char *dir = make_dir();
    sink_t s = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0};
    col_spool_t *sp = open_spool(dir, 1 << 20);
    int client = col_spool_register(sp, on_done, &s);
    col_spool_rec_t *plain = col_spool_rec_new(0, "k", 1, "plain", 5, NULL);
    col_spool_rec_t *doubt = col_spool_rec_new(0, "k", 1, "doubt", 5, NULL);
    col_spool_rec_set_in_doubt(doubt, 7, INT64_C(1764720000123), 42);
    assert_true(doubt->in_doubt);
    assert_int_equal(doubt->partition, 7);
    assert_int_equal(col_spool_append(sp, client, plain), 0);
    assert_int_equal(col_spool_append(sp, client, doubt), 0);
    wait_done(&s, 2);
    col_spool_stats_t st;
    col_spool_get_stats(sp, &st);
    assert_int_equal(st.doubt_appended, 1);
    col_spool_close(sp, 0);
    /* 12-byte header for the plain record, 32 (with partition, timestamp, fate token) in doubt. */
    off_t good = file_size(dir);
    assert_int_equal(good, (12 + 1 + 5) + (32 + 1 + 5));

    /* The doubt record's header bytes are in its CRC: a flipped partition byte cuts it. */
    char path[1024];
    snprintf(path, sizeof(path), "%s/spool.log", dir);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    unsigned char magic = 0;
    assert_int_equal(pread(fd, &magic, 1, 12 + 1 + 5), 1);
    assert_int_equal(magic, 0xA8);
    assert_int_equal(pwrite(fd, "\x08", 1, 12 + 1 + 5 + 12), 1);
    close(fd);
    sp = open_spool(dir, 1 << 20);
    assert_int_equal(file_size(dir), 12 + 1 + 5);
    col_spool_close(sp, 0);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_col_spool_rec_set_in_doubt__kept_across_reopen_and_checked),
        cmocka_unit_test(test_col_spool_append__durable_before_notify_and_survives_reopen),
        cmocka_unit_test(test_col_spool_open__cuts_torn_tail),
        cmocka_unit_test(test_col_spool_append__refuses_over_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
