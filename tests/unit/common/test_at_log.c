/* Unit tests for common/at_log.c: every line must be valid JSON (checked with libbson). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <bson/bson.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "at_log.h"

typedef struct pipe_s {
    int rd, wr;
} pipe_t;

static int setup(void **state)
{
    pipe_t *p = calloc(1, sizeof(*p));
    int fds[2];
    if (p == NULL || pipe(fds) != 0)
        return -1;
    p->rd = fds[0];
    p->wr = fds[1];
    fcntl(p->rd, F_SETFL, O_NONBLOCK);
    at_log_set_fd(p->wr);
    at_log_set_level(AT_LOG_INFO);
    *state = p;
    return 0;
}

static int teardown(void **state)
{
    pipe_t *p = *state;
    at_log_set_fd(2);
    at_log_set_level(AT_LOG_INFO);
    close(p->rd);
    close(p->wr);
    free(p);
    return 0;
}

/* Everything written to the pipe so far, NUL-terminated; caller frees. */
static char *drain(pipe_t *p)
{
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    assert_non_null(buf);
    for (;;) {
        if (cap - len < 1024) {
            cap *= 2;
            buf = realloc(buf, cap);
            assert_non_null(buf);
        }
        ssize_t n = read(p->rd, buf + len, cap - len - 1);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

/* Parses one JSON line (without its '\n'); fails the test if it is not valid JSON. */
static bson_t *parse_line(const char *line, size_t len)
{
    bson_error_t error;
    bson_t *doc = bson_new_from_json((const uint8_t *)line, (ssize_t)len, &error);
    if (doc == NULL)
        fail_msg("not valid JSON (%s): %.*s", error.message, (int)len, line);
    return doc;
}

/* Expects exactly one record in @p text and returns it parsed. */
static bson_t *only_record(const char *text)
{
    size_t len = strlen(text);
    assert_true(len > 0);
    assert_int_equal(text[len - 1], '\n');
    assert_null(memchr(text, '\n', len - 1)); /* one line only: embedded newlines were escaped */
    return parse_line(text, len - 1);
}

static const char *get_str(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, key))
        fail_msg("missing key %s", key);
    assert_true(BSON_ITER_HOLDS_UTF8(&it));
    return bson_iter_utf8(&it, NULL);
}

static void test_at_log__record_fields(void **state)
{
    pipe_t *p = *state;
    time_t before = time(NULL);
    at_log(AT_LOG_INFO, "collector", "listening", "addr", "0.0.0.0:8080", "threads", "4", NULL);
    char *text = drain(p);
    bson_t *doc = only_record(text);
    assert_string_equal(get_str(doc, "level"), "info");
    assert_string_equal(get_str(doc, "comp"), "collector");
    assert_string_equal(get_str(doc, "msg"), "listening");
    assert_string_equal(get_str(doc, "addr"), "0.0.0.0:8080");
    assert_string_equal(get_str(doc, "threads"), "4");
    /* The line starts with the timestamp: {"ts":"YYYY-MM-DDTHH:MM:SS.mmmZ" */
    assert_memory_equal(text, "{\"ts\":\"", 7);

    const char *ts = get_str(doc, "ts");
    assert_int_equal(strlen(ts), 24);
    assert_int_equal(ts[10], 'T');
    assert_int_equal(ts[19], '.');
    assert_int_equal(ts[23], 'Z');
    struct tm tm = {0};
    const char *end = strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm);
    assert_non_null(end);
    assert_int_equal(*end, '.');
    time_t t = timegm(&tm);
    assert_true(t >= before - 1 && t <= time(NULL) + 1); /* UTC, not local time */
    bson_destroy(doc);
    free(text);
}

static void test_at_log__escapes_values(void **state)
{
    pipe_t *p = *state;
    const char *nasty = "q\"uote back\\slash new\nline cr\r tab\t ctl\x01\x1f del\x7f utf8-\xc3\xa9 end";
    at_log(AT_LOG_WARN, "comp\"x", "msg\nwith newline", "key\"k", nasty, NULL);
    char *text = drain(p);
    bson_t *doc = only_record(text);
    assert_string_equal(get_str(doc, "comp"), "comp\"x");
    assert_string_equal(get_str(doc, "msg"), "msg\nwith newline");
    /* Round trip: the parser gives back exactly the bytes that were logged. */
    assert_string_equal(get_str(doc, "key\"k"), nasty);
    /* Raw control bytes never reach the output. */
    for (const char *c = text; c[1] != '\0'; c++)
        assert_true((unsigned char)*c >= 0x20 && *c != 0x7f);
    bson_destroy(doc);
    free(text);
}

static void test_at_log__invalid_utf8_replaced(void **state)
{
    pipe_t *p = *state;
    at_log(AT_LOG_ERROR, "c", "m", "ua", "bad\xff\xc3(", "surrogate", "\xed\xa0\x80", NULL);
    char *text = drain(p);
    bson_t *doc = only_record(text);
    assert_string_equal(get_str(doc, "ua"), "bad\xef\xbf\xbd\xef\xbf\xbd(");
    assert_string_equal(get_str(doc, "surrogate"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");
    bson_destroy(doc);
    free(text);
}

static void test_at_log__null_value_is_json_null(void **state)
{
    pipe_t *p = *state;
    at_log(AT_LOG_INFO, "c", "m", "missing", (const char *)NULL, "after", "x", NULL);
    char *text = drain(p);
    bson_t *doc = only_record(text);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, doc, "missing"));
    assert_true(BSON_ITER_HOLDS_NULL(&it));
    assert_string_equal(get_str(doc, "after"), "x");
    bson_destroy(doc);
    free(text);
}

static void test_at_log_set_level__filters(void **state)
{
    pipe_t *p = *state;
    at_log(AT_LOG_DEBUG, "c", "hidden-by-default", NULL);
    char *text = drain(p);
    assert_string_equal(text, "");
    free(text);

    at_log_set_level(AT_LOG_WARN);
    at_log(AT_LOG_INFO, "c", "dropped", NULL);
    at_logf(AT_LOG_INFO, "c", "dropped %d", 2);
    at_log(AT_LOG_WARN, "c", "kept-warn", NULL);
    at_log(AT_LOG_ERROR, "c", "kept-error", NULL);
    text = drain(p);
    assert_null(strstr(text, "dropped"));
    assert_non_null(strstr(text, "\"msg\":\"kept-warn\""));
    assert_non_null(strstr(text, "\"level\":\"error\""));

    at_log_set_level(AT_LOG_DEBUG);
    at_log(AT_LOG_DEBUG, "c", "now-visible", NULL);
    free(text);
    text = drain(p);
    bson_t *doc = only_record(text);
    assert_string_equal(get_str(doc, "level"), "debug");
    bson_destroy(doc);
    free(text);
}

static void test_at_log_parse_level__names(void **state)
{
    (void)state;
    at_log_level_t l = AT_LOG_ERROR;
    assert_int_equal(at_log_parse_level("debug", &l), 0);
    assert_int_equal(l, AT_LOG_DEBUG);
    assert_int_equal(at_log_parse_level("info", &l), 0);
    assert_int_equal(l, AT_LOG_INFO);
    assert_int_equal(at_log_parse_level("warn", &l), 0);
    assert_int_equal(l, AT_LOG_WARN);
    assert_int_equal(at_log_parse_level("error", &l), 0);
    assert_int_equal(l, AT_LOG_ERROR);
    assert_int_equal(at_log_parse_level("verbose", &l), -1);
    assert_int_equal(at_log_parse_level("", &l), -1);
    assert_int_equal(at_log_parse_level(NULL, &l), -1);
    assert_int_equal(l, AT_LOG_ERROR);
}

static void test_at_logf__formats_msg(void **state)
{
    pipe_t *p = *state;
    at_logf(AT_LOG_INFO, "enricher", "retry %d of %s \"q\"", 3, "redis");
    char *text = drain(p);
    bson_t *doc = only_record(text);
    assert_string_equal(get_str(doc, "msg"), "retry 3 of redis \"q\"");
    bson_destroy(doc);
    free(text);

    /* Longer than any internal stack buffer. */
    char big[3000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    at_logf(AT_LOG_INFO, "c", "<%s>", big);
    text = drain(p);
    doc = only_record(text);
    const char *msg = get_str(doc, "msg");
    assert_int_equal(strlen(msg), sizeof(big) - 1 + 2);
    assert_int_equal(msg[0], '<');
    assert_int_equal(msg[sizeof(big)], '>');
    bson_destroy(doc);
    free(text);
}

#define LOG_THREADS 4
#define LOG_PER_THREAD 500

static void *log_worker(void *arg)
{
    char id[16];
    snprintf(id, sizeof(id), "%d", (int)(intptr_t)arg);
    for (int i = 0; i < LOG_PER_THREAD; i++)
        at_log(AT_LOG_INFO, "worker", "tick", "thread", id, "pad",
               "a reasonably long value so records are not tiny and interleaving would show", NULL);
    return NULL;
}

static void test_at_log__threads_do_not_interleave(void **state)
{
    (void)state;
    char path[] = "/tmp/at_log_test_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    unlink(path);
    assert_int_equal(fcntl(fd, F_SETFL, O_APPEND), 0);
    at_log_set_fd(fd);
    pthread_t th[LOG_THREADS];
    for (int i = 0; i < LOG_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, log_worker, (void *)(intptr_t)i), 0);
    for (int i = 0; i < LOG_THREADS; i++)
        pthread_join(th[i], NULL);

    off_t size = lseek(fd, 0, SEEK_END);
    char *text = malloc((size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(pread(fd, text, (size_t)size, 0), size);
    text[size] = '\0';
    int lines = 0;
    for (char *line = text, *nl; (nl = strchr(line, '\n')) != NULL; line = nl + 1) {
        bson_t *doc = parse_line(line, (size_t)(nl - line));
        assert_string_equal(get_str(doc, "msg"), "tick");
        bson_destroy(doc);
        lines++;
    }
    assert_int_equal(lines, LOG_THREADS * LOG_PER_THREAD);
    free(text);
    close(fd);
}

/* Runs last: registered secrets stay registered for the rest of the process. */
static void test_at_log_add_secret__masked_everywhere(void **state)
{
    pipe_t *p = *state;
    assert_int_equal(at_log_add_secret("hunter22"), 0);
    assert_int_equal(at_log_add_secret("q\"uote\\d"), 0);
    assert_int_equal(at_log_add_secret("abc"), -1); /* too short: would mask ordinary text */
    assert_int_equal(at_log_add_secret(NULL), -1);
    at_log(AT_LOG_WARN, "t", "connect hunter22 failed", "uri", "redis://u:hunter22@h:1/hunter22", "x",
           "pre q\"uote\\d post", NULL);
    at_logf(AT_LOG_WARN, "t", "formatted %s", "hunter22");
    char *text = drain(p);
    assert_null(strstr(text, "hunter22"));
    assert_null(strstr(text, "uote"));
    assert_non_null(strstr(text, "\"msg\":\"connect *** failed\""));
    assert_non_null(strstr(text, "\"uri\":\"redis://u:***@h:1/***\""));
    assert_non_null(strstr(text, "\"x\":\"pre *** post\""));
    assert_non_null(strstr(text, "\"msg\":\"formatted ***\""));
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_at_log__record_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_at_log__escapes_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_at_log__invalid_utf8_replaced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_at_log__null_value_is_json_null, setup, teardown),
        cmocka_unit_test_setup_teardown(test_at_log_set_level__filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_at_log_parse_level__names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_at_logf__formats_msg, setup, teardown),
        cmocka_unit_test_setup_teardown(test_at_log__threads_do_not_interleave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_at_log_add_secret__masked_everywhere, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
