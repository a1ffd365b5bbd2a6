/*
 * test_lt_http.c: target URL parsing, request serialisation and the incremental response
 * parser (every framing, fed whole and byte by byte).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lt_http.h"

static void test_lt_target_parse__forms(void **state)
{
    (void)state;
    lt_target_t t;
    at_err_t err;
    assert_int_equal(lt_target_parse("http://127.0.0.1:8080", &t, NULL), 0);
    assert_string_equal(t.hostname, "127.0.0.1");
    assert_string_equal(t.port, "8080");
    assert_string_equal(t.host, "127.0.0.1:8080");
    assert_string_equal(t.base, "");
    assert_int_equal(lt_target_parse("http://collector.example/prefix/", &t, NULL), 0);
    assert_string_equal(t.port, "80");
    assert_string_equal(t.base, "/prefix");
    assert_int_equal(lt_target_parse("http://[::1]:9000/", &t, NULL), 0);
    assert_string_equal(t.hostname, "::1");
    assert_string_equal(t.port, "9000");
    assert_string_equal(t.host, "[::1]:9000");
    assert_int_equal(lt_target_parse("https://x", &t, &err), -1);
    assert_non_null(strstr(err.msg, "https"));
    assert_int_equal(lt_target_parse("ftp://x", &t, &err), -1);
    assert_int_equal(lt_target_parse("http://x:0", &t, &err), -1);
    assert_int_equal(lt_target_parse("http://x:99999", &t, &err), -1);
    assert_int_equal(lt_target_parse("http://", &t, &err), -1);
    assert_int_equal(lt_target_parse("http://x/a?b", &t, &err), -1);
    assert_int_equal(lt_target_parse("", &t, &err), -1);
}

static void test_lt_http_write_request__get_with_tag(void **state)
{
    (void)state;
    lt_target_t t;
    assert_int_equal(lt_target_parse("http://h:81/base", &t, NULL), 0);
    lt_buf_t b = {0};
    const char *tg = "/t.gif?e=imp";
    lt_http_write_request(&b, &t, "GET", tg, strlen(tg), "run1:42", "X-A: 1\r\n", "Referer: r\r\n", 12, NULL, 0);
    assert_string_equal(b.data,
                        "GET /base/t.gif?e=imp&tag=run1%3A42 HTTP/1.1\r\nHost: h:81\r\nX-A: 1\r\nReferer: r\r\n\r\n");
    lt_buf_clear(&b);
    lt_http_write_request(&b, &t, "GET", "/c", 2, "r:1", NULL, NULL, 0, NULL, 0);
    assert_string_equal(b.data, "GET /base/c?tag=r%3A1 HTTP/1.1\r\nHost: h:81\r\n\r\n");
    lt_buf_free(&b);
}

static void test_lt_http_write_request__post_body(void **state)
{
    (void)state;
    lt_target_t t;
    assert_int_equal(lt_target_parse("http://h", &t, NULL), 0);
    lt_buf_t b = {0};
    lt_http_write_request(&b, &t, "POST", "/v1/events", 10, NULL, NULL, NULL, 0, "[1]", 3);
    assert_string_equal(b.data, "POST /v1/events HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
                                "Content-Length: 3\r\n\r\n[1]");
    lt_buf_clear(&b);
    const char *h = "content-type: text/plain\r\n";
    lt_http_write_request(&b, &t, "POST", "/v1/events", 10, NULL, NULL, h, strlen(h), "[1]", 3);
    assert_null(strstr(b.data, "application/json"));
    assert_non_null(strstr(b.data, "Content-Length: 3\r\n"));
    lt_buf_free(&b);
}

/* Feeds @p s whole, then byte by byte; both must give the same verdict and consumption. */
static int feed_both(const char *s, bool head, lt_resp_t *out_whole, size_t *used_whole)
{
    size_t len = strlen(s);
    lt_resp_t r;
    memset(&r, 0, sizeof(r));
    lt_resp_reset(&r, head);
    size_t used = 0;
    int rc1 = lt_resp_feed(&r, s, len, &used);
    *out_whole = r;
    out_whole->line = NULL;
    *used_whole = used;
    lt_resp_free(&r);

    memset(&r, 0, sizeof(r));
    lt_resp_reset(&r, head);
    int rc2 = 0;
    size_t total = 0;
    for (size_t i = 0; i < len; i++) {
        size_t u = 0;
        rc2 = lt_resp_feed(&r, s + i, 1, &u);
        total += u;
        if (rc2 != 0)
            break;
    }
    if (rc1 == 1) {
        assert_int_equal(rc2, 1);
        assert_int_equal(total, used);
        assert_int_equal(r.status, out_whole->status);
        assert_int_equal(r.keep_alive, out_whole->keep_alive);
    } else if (rc1 < 0) {
        assert_int_equal(rc2, -1);
    }
    lt_resp_free(&r);
    return rc1;
}

static void test_lt_resp_feed__content_length(void **state)
{
    (void)state;
    lt_resp_t r;
    size_t used;
    const char *s = "HTTP/1.1 200 OK\r\nContent-Type: image/gif\r\nContent-Length: 5\r\n\r\nGIF89NEXT";
    assert_int_equal(feed_both(s, false, &r, &used), 1);
    assert_int_equal(r.status, 200);
    assert_true(r.keep_alive);
    assert_int_equal(used, strlen(s) - 4); /* "NEXT" is not ours */
    assert_int_equal(r.body_bytes, 5);
}

static void test_lt_resp_feed__chunked_with_extensions_and_trailers(void **state)
{
    (void)state;
    lt_resp_t r;
    size_t used;
    const char *s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                    "4;ext=1\r\nWiki\r\n5\r\npedia\r\nA\r\n 0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";
    /* "A\r\n 0123456789" is 11 bytes of which 10 are data: a malformed chunk */
    assert_int_equal(feed_both(s, false, &r, &used), -1);
    s = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        "4;ext=1\r\nWiki\r\n5\r\npedia\r\na\r\n0123456789\r\n0\r\nX-Trailer: 1\r\n\r\n";
    assert_int_equal(feed_both(s, false, &r, &used), 1);
    assert_int_equal(used, strlen(s));
    assert_int_equal(r.body_bytes, 19);
}

static void test_lt_resp_feed__interim_100_skipped(void **state)
{
    (void)state;
    lt_resp_t r;
    size_t used;
    const char *s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 302 Found\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n";
    assert_int_equal(feed_both(s, false, &r, &used), 1);
    assert_int_equal(r.status, 302);
    assert_int_equal(used, strlen(s));
}

static void test_lt_resp_feed__no_body_statuses_and_head(void **state)
{
    (void)state;
    lt_resp_t r;
    size_t used;
    assert_int_equal(feed_both("HTTP/1.1 204 No Content\r\n\r\n", false, &r, &used), 1);
    assert_int_equal(r.status, 204);
    assert_int_equal(feed_both("HTTP/1.1 200 OK\r\nContent-Length: 43\r\n\r\n", true, &r, &used), 1);
    assert_int_equal(feed_both("HTTP/1.1 304 Not Modified\nETag: x\n\n", false, &r, &used), 1); /* bare LF */
}

static void test_lt_resp_feed__close_delimited_and_keepalive_rules(void **state)
{
    (void)state;
    lt_resp_t r;
    memset(&r, 0, sizeof(r));
    lt_resp_reset(&r, false);
    size_t used;
    const char *s = "HTTP/1.0 200 OK\r\n\r\nbody bytes";
    assert_int_equal(lt_resp_feed(&r, s, strlen(s), &used), 0);
    assert_false(r.keep_alive);
    assert_int_equal(lt_resp_eof(&r), 1);
    assert_int_equal(r.body_bytes, 10);
    lt_resp_free(&r);

    size_t u;
    lt_resp_t w;
    assert_int_equal(feed_both("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", false, &w, &u), 1);
    assert_false(w.keep_alive);
    assert_int_equal(feed_both("HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n", false, &w, &u),
                     1);
    assert_true(w.keep_alive);

    /* A response cut short by the close is an error. */
    memset(&r, 0, sizeof(r));
    lt_resp_reset(&r, false);
    s = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    assert_int_equal(lt_resp_feed(&r, s, strlen(s), &used), 0);
    assert_int_equal(lt_resp_eof(&r), -1);
    assert_non_null(r.error);
    lt_resp_free(&r);
}

static void test_lt_resp_feed__malformed(void **state)
{
    (void)state;
    lt_resp_t r;
    size_t used;
    const char *bad[] = {
        "HTTX/1.1 200 OK\r\n\r\n",
        "HTTP/1.1 2x0 OK\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(feed_both(bad[i], false, &r, &used), -1);
}

static void test_lt_resp_feed__huge_head_refused(void **state)
{
    (void)state;
    lt_resp_t r;
    memset(&r, 0, sizeof(r));
    lt_resp_reset(&r, false);
    size_t used;
    const char *start = "HTTP/1.1 200 OK\r\n";
    assert_int_equal(lt_resp_feed(&r, start, strlen(start), &used), 0);
    char line[1000];
    memset(line, 'a', sizeof(line));
    memcpy(line, "X-Big: ", 7);
    line[998] = '\r';
    line[999] = '\n';
    int rc = 0;
    for (int i = 0; i < 40 && rc == 0; i++)
        rc = lt_resp_feed(&r, line, sizeof(line), &used);
    assert_int_equal(rc, -1);
    assert_non_null(strstr(r.error, "16 KiB"));
    lt_resp_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lt_target_parse__forms),
        cmocka_unit_test(test_lt_http_write_request__get_with_tag),
        cmocka_unit_test(test_lt_http_write_request__post_body),
        cmocka_unit_test(test_lt_resp_feed__content_length),
        cmocka_unit_test(test_lt_resp_feed__chunked_with_extensions_and_trailers),
        cmocka_unit_test(test_lt_resp_feed__interim_100_skipped),
        cmocka_unit_test(test_lt_resp_feed__no_body_statuses_and_head),
        cmocka_unit_test(test_lt_resp_feed__close_delimited_and_keepalive_rules),
        cmocka_unit_test(test_lt_resp_feed__malformed),
        cmocka_unit_test(test_lt_resp_feed__huge_head_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
