/*
 * test_lt_capture.c: capture formats (combined log, URL list, JSON lines), bad lines,
 * format detection, replay timeline.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lt_capture.h"
#include "lt_profile.h"

#include <stdlib.h>
#include <unistd.h>

static const char *target(const lt_capture_t *c, size_t i)
{
    return lt_capture_str(c, c->entries[i].target_off);
}

static int parse(lt_capture_t *c, const char *text, lt_capture_format_t f)
{
    memset(c, 0, sizeof(*c));
    return lt_capture_parse(c, text, strlen(text), f, NULL);
}

static void test_lt_capture_parse__combined_log(void **state)
{
    (void)state;
    lt_capture_t c;
    const char *log = "203.0.113.9 - - [21/Nov/2026:13:27:02 +0000] \"GET /t.gif?e=imp&c=c1 HTTP/1.1\" 200 43 "
                      "\"https://news.example/a\" "
                      "\"Mozilla/5.0 (X11)\"\n"
                      "203.0.113.9 - bob [21/Nov/2026:14:27:03 +0100] \"HEAD /x HTTP/1.0\" 200 0 \"-\" \"-\"\n"
                      "10.0.0.1 - - [21/Nov/2026:13:27:04 +0000] \"POST /v1/events HTTP/1.1\" 204 0 \"-\" \"curl\"\n"
                      "10.0.0.1 - - [21/Nov/2026:13:27:05 +0000] \"GET /q?a=\\x22b\\x22 HTTP/1.1\" 200 1\n";
    assert_int_equal(parse(&c, log, LT_CAP_AUTO), 0);
    assert_int_equal(c.format, LT_CAP_CLF);
    assert_int_equal(c.lines, 4);
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.skipped, 1); /* the POST: logs have no bodies */
    assert_int_equal(c.n, 3);
    assert_true(c.all_timed);
    assert_string_equal(c.entries[0].method, "GET");
    assert_string_equal(target(&c, 0), "/t.gif?e=imp&c=c1");
    assert_int_equal(c.entries[0].ts_ns, 1795267622LL * 1000000000LL);
    char h[256];
    snprintf(h, sizeof(h), "%.*s", (int)c.entries[0].headers_len, lt_capture_str(&c, c.entries[0].headers_off));
    assert_string_equal(h, "Referer: https://news.example/a\r\nUser-Agent: Mozilla/5.0 (X11)\r\n");
    assert_string_equal(c.entries[1].method, "HEAD");
    assert_int_equal(c.entries[1].headers_len, 0);                           /* "-" means absent */
    assert_int_equal(c.entries[1].ts_ns, c.entries[0].ts_ns + 1000000000LL); /* +0100 offset applied */
    assert_string_equal(target(&c, 2), "/q?a=\"b\"");
    assert_int_equal(c.entries[2].line, 4);
    lt_capture_free(&c);
}

static void test_lt_capture_parse__bad_lines_counted_with_numbers(void **state)
{
    (void)state;
    lt_capture_t c;
    const char *log = "# comment\n"
                      "1.2.3.4 - - [21/Nov/2026:13:27:02 +0000] \"GET /ok HTTP/1.1\" 200 43 \"-\" \"-\"\n"
                      "garbage\n"
                      "\n"
                      "1.2.3.4 - - [99/Nov/2026:13:27:02 +0000] \"GET /ok HTTP/1.1\" 200 43\n"
                      "1.2.3.4 - - [21/Nov/2026:13:27:02 +0000] \"GET /has space HTTP/1.1\" 200 43\n"
                      "1.2.3.4 - - [21/Nov/2026:13:27:02 +0000] \"GET /unterminated\n"
                      "1.2.3.4 - - [21/Nov/2026:13:27:02 +0000] \"-\" 400 0 \"-\" \"-\"\n"
                      "1.2.3.4 - - [21/Nov/2026:13:27:02 +0000] \"GET /ok2 HTTP/1.1\" 200 43\r\n";
    assert_int_equal(parse(&c, log, LT_CAP_CLF), 0);
    assert_int_equal(c.n, 2);
    assert_int_equal(c.bad, 5);
    assert_int_equal(c.nbad_kept, 5);
    const uint64_t want[] = {3, 5, 6, 7, 8};
    for (int i = 0; i < 5; i++)
        assert_int_equal(c.bad_lines[i], want[i]);
    assert_non_null(strstr(c.bad_reasons[1], "time"));
    assert_string_equal(target(&c, 1), "/ok2");
    lt_capture_free(&c);
}

static void test_lt_capture_parse__url_list(void **state)
{
    (void)state;
    lt_capture_t c;
    const char *urls = "/t.gif?e=imp&c=1\n"
                       "http://collector.example:8080/c?c=2&d=x#frag\n"
                       "HEAD /healthz\n"
                       "  https://h.example\n"
                       "not a url\n"
                       "/caf\xc3\xa9?q=1\n"
                       "PUT /x\n";
    assert_int_equal(parse(&c, urls, LT_CAP_AUTO), 0);
    assert_int_equal(c.format, LT_CAP_URLS);
    assert_int_equal(c.n, 5);
    assert_int_equal(c.bad, 2);
    assert_false(c.all_timed);
    assert_string_equal(target(&c, 0), "/t.gif?e=imp&c=1");
    assert_string_equal(target(&c, 1), "/c?c=2&d=x");
    assert_string_equal(c.entries[2].method, "HEAD");
    assert_string_equal(target(&c, 2), "/healthz");
    assert_string_equal(target(&c, 3), "/");
    assert_string_equal(target(&c, 4), "/caf%C3%A9?q=1");
    assert_int_equal(c.bad_lines[0], 5);
    assert_int_equal(c.bad_lines[1], 7);
    lt_capture_free(&c);
}

static void test_lt_capture_parse__json_lines(void **state)
{
    (void)state;
    lt_capture_t c;
    const char *jl = "{\"ts\": 1795267622.25, \"url\": \"/t.gif?e=imp&c=1\", \"headers\": {\"User-Agent\": \"UA\", "
                     "\"Host\": \"x\"}}\n"
                     "{\"ts\": \"2026-11-21T13:27:03.5Z\", \"url\": \"/v1/events\", \"body\": "
                     "[{\"e\":\"imp\",\"c\":\"a\"},{\"e\":\"view\",\"c\":\"b\"}]}\n"
                     "{\"ts\": {\"$date\": \"2026-11-21T13:27:04Z\"}, \"method\": \"POST\", \"path\": \"/v1/events\", "
                     "\"body\": \"[{\\\"c\\\":\\\"x\\\"}]\"}\n"
                     "{\"ts_ms\": 1795267625000, \"url\": \"/y\"}\n"
                     "{\"url\": 5}\n"
                     "{not json\n"
                     "{\"ts\": \"yesterday\", \"url\": \"/z\"}\n"
                     "{\"method\": \"get\", \"url\": \"/z\"}\n";
    assert_int_equal(parse(&c, jl, LT_CAP_AUTO), 0);
    assert_int_equal(c.format, LT_CAP_JSONL);
    assert_int_equal(c.n, 4);
    assert_int_equal(c.bad, 4);
    assert_true(c.all_timed);
    assert_int_equal(c.entries[0].ts_ns, 1795267622250000000LL);
    char h[128];
    snprintf(h, sizeof(h), "%.*s", (int)c.entries[0].headers_len, lt_capture_str(&c, c.entries[0].headers_off));
    assert_string_equal(h, "User-Agent: UA\r\n");     /* Host is the load tester's */
    assert_string_equal(c.entries[1].method, "POST"); /* implied by the body */
    assert_int_equal(c.entries[1].nevents, 2);
    assert_int_equal(c.entries[1].ts_ns, 1795267623500000000LL);
    const char *body = lt_capture_str(&c, c.entries[1].body_off);
    assert_true(c.entries[1].body_len > 10 && body[0] == '[');
    assert_int_equal(c.entries[2].ts_ns, 1795267624000000000LL);
    assert_int_equal(c.entries[2].nevents, 1);
    assert_int_equal(c.entries[2].body_len, strlen("[{\"c\":\"x\"}]"));
    assert_int_equal(c.entries[3].ts_ns, 1795267625000000000LL);
    assert_int_equal(c.bad_lines[0], 5);
    assert_int_equal(c.bad_lines[3], 8);
    lt_capture_free(&c);
}

static void test_lt_capture_timeline__sorted_spread_and_sped_up(void **state)
{
    (void)state;
    lt_capture_t c;
    /* Three requests in second :02 (logged out of order with :03), one in :03. */
    const char *log = "a - - [21/Nov/2026:13:27:02 +0000] \"GET /1 HTTP/1.1\" 200 1\n"
                      "a - - [21/Nov/2026:13:27:03 +0000] \"GET /4 HTTP/1.1\" 200 1\n"
                      "a - - [21/Nov/2026:13:27:02 +0000] \"GET /2 HTTP/1.1\" 200 1\n"
                      "a - - [21/Nov/2026:13:27:02 +0000] \"GET /3 HTTP/1.1\" 200 1\n";
    assert_int_equal(parse(&c, log, LT_CAP_AUTO), 0);
    int64_t *t = NULL;
    assert_int_equal(lt_capture_timeline(&c, 2.0, &t, NULL), 0);
    assert_string_equal(target(&c, 0), "/1");
    assert_string_equal(target(&c, 1), "/2");
    assert_string_equal(target(&c, 2), "/3");
    assert_string_equal(target(&c, 3), "/4");
    assert_int_equal(t[0], 0);
    assert_int_equal(t[1], 166666667); /* 1/3 s, at double speed */
    assert_int_equal(t[2], 333333333);
    assert_int_equal(t[3], 500000000);
    free(t);
    lt_capture_free(&c);
}

static void test_lt_capture_timeline__untimed_refused(void **state)
{
    (void)state;
    lt_capture_t c;
    at_err_t err;
    assert_int_equal(parse(&c, "/a\n/b\n", LT_CAP_URLS), 0);
    int64_t *t;
    assert_int_equal(lt_capture_timeline(&c, 1.0, &t, &err), -1);
    assert_non_null(strstr(err.msg, "--rate"));
    lt_capture_free(&c);
}

static void test_lt_capture_parse__random_garbage_never_crashes(void **state)
{
    (void)state;
    lt_rng_t r;
    lt_rng_seed(&r, 99);
    static const char alphabet[] = "GET /t.gif?\"[]{}:\\x22 -+0123456789abc\t\r\n\0\xff{\"url\":";
    char buf[4096];
    for (int round = 0; round < 300; round++) {
        size_t n = (size_t)lt_rng_below(&r, sizeof(buf));
        for (size_t i = 0; i < n; i++)
            buf[i] = alphabet[lt_rng_below(&r, sizeof(alphabet) - 1)];
        for (int f = LT_CAP_AUTO; f <= LT_CAP_JSONL; f++) {
            lt_capture_t c;
            memset(&c, 0, sizeof(c));
            assert_int_equal(lt_capture_parse(&c, buf, n, (lt_capture_format_t)f, NULL), 0);
            assert_true(c.n + c.bad + c.skipped <= c.lines);
            for (size_t i = 0; i < c.n; i++)
                assert_int_equal(target(&c, i)[0], '/');
            lt_capture_free(&c);
        }
    }
}

static void test_lt_capture_load__file_errors(void **state)
{
    (void)state;
    lt_capture_t c;
    at_err_t err;
    memset(&c, 0, sizeof(c));
    assert_int_equal(lt_capture_load(&c, "/nonexistent/capture.log", LT_CAP_AUTO, &err), -1);
    assert_int_equal(err.code, AT_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/capture.log"));
    lt_capture_free(&c);

    char path[] = "/tmp/lt_capture_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "{\"url\": 1}\n{\"url\": 2}\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    memset(&c, 0, sizeof(c));
    assert_int_equal(lt_capture_load(&c, path, LT_CAP_AUTO, &err), -1);
    assert_non_null(strstr(err.msg, "line 1"));
    assert_int_equal(c.bad, 2);
    lt_capture_free(&c);
    unlink(path);
}

static void test_lt_parse_rfc3339__forms(void **state)
{
    (void)state;
    int64_t ns;
    assert_int_equal(lt_parse_rfc3339("1970-01-01T00:00:00Z", 20, &ns), 0);
    assert_int_equal(ns, 0);
    const char *s = "2026-11-21T14:27:02.123+01:00";
    assert_int_equal(lt_parse_rfc3339(s, strlen(s), &ns), 0);
    assert_int_equal(ns, 1795267622123000000LL);
    s = "2026-11-21T13:27:02";
    assert_int_equal(lt_parse_rfc3339(s, strlen(s), &ns), -1); /* no zone */
    s = "2026-13-21T13:27:02Z";
    assert_int_equal(lt_parse_rfc3339(s, strlen(s), &ns), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lt_capture_parse__combined_log),
        cmocka_unit_test(test_lt_capture_parse__bad_lines_counted_with_numbers),
        cmocka_unit_test(test_lt_capture_parse__url_list),
        cmocka_unit_test(test_lt_capture_parse__json_lines),
        cmocka_unit_test(test_lt_capture_timeline__sorted_spread_and_sped_up),
        cmocka_unit_test(test_lt_capture_timeline__untimed_refused),
        cmocka_unit_test(test_lt_capture_parse__random_garbage_never_crashes),
        cmocka_unit_test(test_lt_capture_load__file_errors),
        cmocka_unit_test(test_lt_parse_rfc3339__forms),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
