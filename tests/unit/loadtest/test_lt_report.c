/*
 * test_lt_report.c: the JSON report's fields and values (parsed back with libbson), the
 * text summary, and the HTML page's self-containedness.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lt_report.h"

#include <bson/bson.h>
#include <math.h>
#include <stdlib.h>

typedef struct fixture_s {
    lt_stats_t st;
    lt_sched_t sched;
    lt_capture_t cap;
    lt_verify_result_t v;
    lt_report_t r;
} fixture_t;

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(lt_stats_init(&f->st, NULL), 0);
    lt_stage_t stage = {100, 10000000000LL};
    assert_int_equal(lt_sched_init_rate(&f->sched, 100, &stage, 1, 0, NULL), 0);
    /* 1000 intended: 990 sent (5 late), 10 dropped; 985 completed: 980 x 200, 5 x 503; 5 timeouts. */
    f->st.intended = 1000;
    f->st.sent = 990;
    f->st.late = 5;
    f->st.late_sender = 2;
    f->st.dropped = 10;
    f->st.completed = 985;
    f->st.ok = 980;
    f->st.status[200] = 980;
    f->st.status[503] = 5;
    f->st.failed[LT_FAIL_TIMEOUT] = 5;
    f->st.connect_errors = 2;
    f->st.last_send_ns = 9990000000LL;
    for (uint64_t i = 1; i <= 985; i++) {
        lt_hist_record(&f->st.latency, i * 10);
        lt_hist_record(&f->st.service, i * 5);
        lt_hist_record(&f->st.lag, i);
    }
    for (size_t k = 0; k < 10; k++) {
        lt_interval_t *iv = lt_stats_interval(&f->st, k);
        assert_non_null(iv);
        iv->intended = iv->sent = 100;
        iv->completed = iv->ok = 98;
        lt_hist_record(&iv->latency, 1000 * (k + 1));
    }
    const char *cap = "/a\nbad line\n/b\n";
    assert_int_equal(lt_capture_parse(&f->cap, cap, strlen(cap), LT_CAP_URLS, NULL), 0);
    snprintf(f->v.store, sizeof(f->v.store), "file");
    f->v.checked_requests = 980;
    f->v.expected_events = 980;
    f->v.found_events = 978;
    f->v.lost = 1;
    f->v.lost_requests = 1;
    f->v.lost_seqs[0] = 17;
    f->v.nlost_seqs = 1;
    f->v.duplicated = 0;
    f->v.rejected = 1;
    snprintf(f->v.reasons[0], sizeof(f->v.reasons[0]), "unknown_campaign");
    f->v.reason_counts[0] = 1;
    f->v.nreasons = 1;
    f->r = (lt_report_t){.target = "http://127.0.0.1:1/x<y>",
                         .source = "capture",
                         .source_detail = "caps.txt, urls",
                         .mode = "rate",
                         .speed = 1,
                         .threads = 2,
                         .connections = 8,
                         .run_id = "run7",
                         .started_unix_ms = 1795267622123LL,
                         .planned_ns = 10000000000LL,
                         .elapsed_ns = 10020000000LL,
                         .interval_ns = 1000000000LL,
                         .late_ns = 10000000,
                         .max_lag_ns = 10000000000LL,
                         .timeout_ns = 10000000000LL,
                         .sched = &f->sched,
                         .st = &f->st,
                         .capture = &f->cap,
                         .verify = &f->v};
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    lt_stats_free(&f->st);
    lt_sched_free(&f->sched);
    lt_capture_free(&f->cap);
    free(f);
    return 0;
}

static bool find(const bson_t *doc, const char *path, bson_iter_t *it)
{
    bson_iter_t root;
    return bson_iter_init(&root, doc) && bson_iter_find_descendant(&root, path, it);
}

static double num(const bson_t *doc, const char *path)
{
    bson_iter_t it;
    if (!find(doc, path, &it))
        fail_msg("missing field %s", path);
    if (!BSON_ITER_HOLDS_NUMBER(&it))
        fail_msg("field %s is not a number", path);
    return bson_iter_as_double(&it);
}

static const char *str(const bson_t *doc, const char *path)
{
    bson_iter_t it;
    if (!find(doc, path, &it) || !BSON_ITER_HOLDS_UTF8(&it))
        fail_msg("missing string field %s", path);
    return bson_iter_utf8(&it, NULL);
}

static void test_lt_report_json__fields(void **state)
{
    fixture_t *f = *state;
    lt_buf_t b = {0};
    lt_report_json(&f->r, &b);
    bson_t doc;
    bson_error_t e;
    if (!bson_init_from_json(&doc, b.data, (ssize_t)b.len, &e))
        fail_msg("report is not JSON: %s\n%s", e.message, b.data);
    assert_string_equal(str(&doc, "tool"), "adtrack-loadtest");
    assert_string_equal(str(&doc, "target"), "http://127.0.0.1:1/x<y>");
    assert_string_equal(str(&doc, "started"), "2026-11-21T13:27:02.123Z");
    assert_string_equal(str(&doc, "run_id"), "run7");
    assert_string_equal(str(&doc, "config.mode"), "rate");
    assert_true(num(&doc, "config.threads") == 2);
    assert_true(num(&doc, "requests.intended") == 1000);
    assert_true(num(&doc, "requests.sent") == 990);
    assert_true(num(&doc, "requests.late") == 5);
    assert_true(num(&doc, "requests.late_sender") == 2);
    assert_true(num(&doc, "requests.dropped") == 10);
    assert_true(num(&doc, "requests.completed") == 985);
    assert_true(num(&doc, "requests.ok") == 980);
    assert_true(num(&doc, "requests.failed") == 5);
    assert_true(fabs(num(&doc, "success_ratio") - 0.98) < 1e-9);
    assert_true(num(&doc, "errors.timeout") == 5);
    assert_true(num(&doc, "errors.connect") == 2);
    assert_true(num(&doc, "status.200") == 980);
    assert_true(num(&doc, "status.503") == 5);
    assert_true(fabs(num(&doc, "rates.target") - 100) < 1e-9);
    assert_true(fabs(num(&doc, "rates.sent") - 99) < 1e-9);
    assert_true(fabs(num(&doc, "rates.on_time") - 98.5) < 1e-9);
    assert_true(num(&doc, "latency_us.count") == 985);
    assert_true(num(&doc, "latency_us.min") == 10);
    assert_true(num(&doc, "latency_us.max") == 9850);
    assert_true(fabs(num(&doc, "latency_us.p50") - 4930) <= 5);
    assert_true(fabs(num(&doc, "latency_us.p99") - 9760) <= 10);
    bson_iter_t it;
    assert_true(find(&doc, "latency_us.p99_9", &it));
    assert_true(find(&doc, "latency_us.p99_99", &it));
    assert_true(find(&doc, "service_time_us.p90", &it));
    assert_true(find(&doc, "send_lag_us.max", &it));
    assert_true(num(&doc, "timeline.interval_s") == 1);
    assert_true(num(&doc, "timeline.points.9.t") == 9);
    assert_true(num(&doc, "timeline.points.9.p50_us") == 10000 ||
                fabs(num(&doc, "timeline.points.9.p50_us") - 10000) < 320);
    assert_true(num(&doc, "timeline.points.0.target_rate") == 100);
    assert_false(find(&doc, "timeline.points.10", &it));
    assert_true(num(&doc, "percentiles.0.p") == 0);
    assert_string_equal(str(&doc, "capture.format"), "urls");
    assert_true(num(&doc, "capture.bad") == 1);
    assert_true(num(&doc, "capture.bad_lines.0.line") == 2);
    assert_true(num(&doc, "verify.lost") == 1);
    assert_true(num(&doc, "verify.duplicated") == 0);
    assert_true(num(&doc, "verify.rejected_by_reason.unknown_campaign") == 1);
    assert_string_equal(str(&doc, "verify.lost_tags.0"), "run7:17");
    bson_destroy(&doc);
    lt_buf_free(&b);
}

static void test_lt_report_json__empty_run_is_valid(void **state)
{
    fixture_t *f = *state;
    lt_stats_t empty;
    assert_int_equal(lt_stats_init(&empty, NULL), 0);
    lt_report_t r = f->r;
    r.st = &empty;
    r.capture = NULL;
    r.verify = NULL;
    r.verify_error = "--verify kafka: all brokers down";
    r.run_id = NULL;
    lt_buf_t b = {0};
    lt_report_json(&r, &b);
    bson_t doc;
    bson_error_t e;
    assert_true(bson_init_from_json(&doc, b.data, (ssize_t)b.len, &e));
    assert_true(num(&doc, "success_ratio") == 0);
    assert_true(num(&doc, "latency_us.p99") == 0);
    assert_string_equal(str(&doc, "verify.error"), "--verify kafka: all brokers down");
    bson_iter_t it;
    assert_true(find(&doc, "run_id", &it) && BSON_ITER_HOLDS_NULL(&it));
    bson_destroy(&doc);
    lt_buf_free(&b);
    lt_stats_free(&empty);
}

static void test_lt_report_html__self_contained(void **state)
{
    fixture_t *f = *state;
    lt_buf_t b = {0};
    lt_report_html(&f->r, &b);
    assert_false(b.oom);
    assert_true(strncmp(b.data, "<!DOCTYPE html>", 15) == 0);
    assert_non_null(strstr(b.data, "</html>"));
    assert_null(strstr(b.data, "<script"));
    assert_null(strstr(b.data, "src=\"http"));
    assert_null(strstr(b.data, "href=\"http"));
    assert_null(strstr(b.data, "x<y>")); /* escaped */
    assert_non_null(strstr(b.data, "x&lt;y&gt;"));
    int svgs = 0;
    for (const char *p = b.data; (p = strstr(p, "<svg")) != NULL; p++)
        svgs++;
    assert_int_equal(svgs, 3); /* throughput, latency over time, percentile distribution */
    assert_non_null(strstr(b.data, "Throughput over time"));
    assert_non_null(strstr(b.data, "Latency over time"));
    assert_non_null(strstr(b.data, "Percentile distribution"));
    assert_non_null(strstr(b.data, "unknown_campaign"));
    lt_buf_free(&b);
}

static void test_lt_report_text__summary(void **state)
{
    fixture_t *f = *state;
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    lt_report_text(&f->r, out);
    fclose(out);
    assert_non_null(strstr(text, "intended 1000  sent 990 (late 5, dropped 10)"));
    assert_non_null(strstr(text, "98.000%"));
    assert_non_null(strstr(text, "3 waited for a busy connection (the target), 2 had one free"));
    assert_non_null(strstr(text, "503: 5"));
    assert_non_null(strstr(text, "lost 1"));
    assert_non_null(strstr(text, "run7:17"));
    assert_non_null(strstr(text, "bad lines: 2"));
    free(text);
}

static void test_lt_fmt_us__units(void **state)
{
    (void)state;
    char b[32];
    assert_string_equal(lt_fmt_us(850, b, sizeof(b)), "850us");
    assert_string_equal(lt_fmt_us(1234, b, sizeof(b)), "1.23ms");
    assert_string_equal(lt_fmt_us(12345, b, sizeof(b)), "12.3ms");
    assert_string_equal(lt_fmt_us(1250000, b, sizeof(b)), "1.250s");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lt_report_json__fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lt_report_json__empty_run_is_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lt_report_html__self_contained, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lt_report_text__summary, setup, teardown),
        cmocka_unit_test(test_lt_fmt_us__units),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
