/*
 * test_dash_sse.c: Server-Sent Events framing, and the bounded buffer under it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>

#include "dash_buf.h"
#include "dash_sse.h"

static void test_dash_sse_event__single_line(void **state)
{
    (void)state;
    dash_buf_t b;
    dash_buf_init(&b, 1024);
    assert_int_equal(dash_sse_event(&b, "snapshot", "{\"a\":1}", 7), 0);
    assert_string_equal(b.p, "event: snapshot\ndata: {\"a\":1}\n\n");
    dash_buf_free(&b);
}

static void test_dash_sse_event__line_breaks_cannot_inject_fields(void **state)
{
    (void)state;
    dash_buf_t b;
    dash_buf_init(&b, 1024);
    const char *evil = "a\n\nevent: x\r\nb\rc\n";
    dash_sse_event(&b, "change", evil, strlen(evil));
    assert_string_equal(b.p, "event: change\ndata: a\ndata: \ndata: event: x\ndata: b\ndata: c\ndata: \n\n");
    dash_buf_reset(&b);
    dash_sse_event(&b, NULL, "", 0);
    assert_string_equal(b.p, "data: \n\n");
    dash_buf_free(&b);
}

static void test_dash_sse_comment_and_retry(void **state)
{
    (void)state;
    dash_buf_t b;
    dash_buf_init(&b, 1024);
    dash_sse_retry(&b, 2000);
    dash_sse_comment(&b, "heart\nbeat");
    assert_string_equal(b.p, "retry: 2000\n\n: heart beat\n\n");
    dash_buf_free(&b);
}

static void test_dash_buf__limit_is_sticky(void **state)
{
    (void)state;
    dash_buf_t b;
    dash_buf_init(&b, 10);
    assert_int_equal(dash_buf_append(&b, "12345", 5), 0);
    assert_int_equal(dash_sse_event(&b, "snapshot", "x", 1), -1);
    assert_true(b.failed);
    assert_int_equal(dash_buf_append(&b, "1", 1), -1); /* sticky */
    size_t len;
    assert_null(dash_buf_steal(&b, &len));
    dash_buf_init(&b, 100);
    dash_buf_json_str(&b, "a\"b\\c\x01\xc3\xa9", 8);
    dash_buf_append(&b, " ", 1);
    dash_buf_json_num(&b, 3);
    dash_buf_append(&b, " ", 1);
    dash_buf_json_num(&b, NAN);
    dash_buf_append(&b, " ", 1);
    dash_buf_json_num(&b, 0.125);
    assert_string_equal(b.p, "\"a\\\"b\\\\c\\u0001\xc3\xa9\" 3 null 0.125");
    dash_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dash_sse_event__single_line),
        cmocka_unit_test(test_dash_sse_event__line_breaks_cannot_inject_fields),
        cmocka_unit_test(test_dash_sse_comment_and_retry),
        cmocka_unit_test(test_dash_buf__limit_is_sticky),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
