/* Unit tests for common/at_metrics.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

#include "at_metrics.h"

static void test_at_metrics_render__exact_text(void **state)
{
    (void)state;
    at_metrics_t *m = at_metrics_new();
    assert_non_null(m);
    at_counter_t *ok = at_metrics_counter(m, "http_requests_total", "code=\"200\"", "Requests served.");
    at_gauge_t *q = at_metrics_gauge(m, "queue_depth", NULL, "Depth of the\nqueue \\ now.");
    at_counter_t *err = at_metrics_counter(m, "http_requests_total", "code=\"500\"", "ignored: first help wins");
    at_counter_t *up = at_metrics_counter(m, "restarts_total", NULL, "Restarts.");
    assert_non_null(ok);
    assert_non_null(q);
    assert_non_null(err);
    assert_non_null(up);
    at_counter_add(ok, 3);
    at_counter_add(err, 1);
    at_gauge_set(q, 2.5);
    at_gauge_add(q, -0.25);

    size_t len = 0;
    char *text = at_metrics_render(m, &len);
    assert_non_null(text);
    /* The two http series share one HELP/TYPE header although registered apart. */
    assert_string_equal(text, "# HELP http_requests_total Requests served.\n"
                              "# TYPE http_requests_total counter\n"
                              "http_requests_total{code=\"200\"} 3\n"
                              "http_requests_total{code=\"500\"} 1\n"
                              "# HELP queue_depth Depth of the\\nqueue \\\\ now.\n"
                              "# TYPE queue_depth gauge\n"
                              "queue_depth 2.25\n"
                              "# HELP restarts_total Restarts.\n"
                              "# TYPE restarts_total counter\n"
                              "restarts_total 0\n");
    assert_int_equal(len, strlen(text));
    free(text);
    at_metrics_destroy(m);
}

static void test_at_metrics_histogram__cumulative_buckets(void **state)
{
    (void)state;
    at_metrics_t *m = at_metrics_new();
    static const double bounds[] = {0.5, 1, 2.5};
    at_histogram_t *h = at_metrics_histogram(m, "req_seconds", "path=\"/p\"", "Latency.", bounds, 3);
    at_histogram_t *bare = at_metrics_histogram(m, "req_seconds", NULL, "Latency.", bounds, 3);
    assert_non_null(h);
    assert_non_null(bare);
    at_histogram_observe(h, 0.25);
    at_histogram_observe(h, 0.5); /* on a bound: counts in that bucket (le = less or equal) */
    at_histogram_observe(h, 0.75);
    at_histogram_observe(h, 4);
    assert_int_equal(at_histogram_count(h), 4);
    assert_int_equal(at_histogram_count(bare), 0);

    char *text = at_metrics_render(m, NULL);
    assert_non_null(text);
    assert_string_equal(text, "# HELP req_seconds Latency.\n"
                              "# TYPE req_seconds histogram\n"
                              "req_seconds_bucket{path=\"/p\",le=\"0.5\"} 2\n"
                              "req_seconds_bucket{path=\"/p\",le=\"1\"} 3\n"
                              "req_seconds_bucket{path=\"/p\",le=\"2.5\"} 3\n"
                              "req_seconds_bucket{path=\"/p\",le=\"+Inf\"} 4\n"
                              "req_seconds_sum{path=\"/p\"} 5.5\n"
                              "req_seconds_count{path=\"/p\"} 4\n"
                              "req_seconds_bucket{le=\"0.5\"} 0\n"
                              "req_seconds_bucket{le=\"1\"} 0\n"
                              "req_seconds_bucket{le=\"2.5\"} 0\n"
                              "req_seconds_bucket{le=\"+Inf\"} 0\n"
                              "req_seconds_sum 0\n"
                              "req_seconds_count 0\n");
    free(text);
    at_metrics_destroy(m);
}

static void test_at_metrics_histogram__rejects_unsorted_bounds(void **state)
{
    (void)state;
    at_metrics_t *m = at_metrics_new();
    static const double bad[] = {1, 0.5};
    static const double dup[] = {1, 1};
    assert_null(at_metrics_histogram(m, "h", NULL, "h", bad, 2));
    assert_null(at_metrics_histogram(m, "h", NULL, "h", dup, 2));
    at_metrics_destroy(m);
}

static void test_at_metrics_counter__same_series_and_type_clash(void **state)
{
    (void)state;
    at_metrics_t *m = at_metrics_new();
    at_counter_t *a = at_metrics_counter(m, "x_total", "k=\"v\"", "X.");
    at_counter_t *b = at_metrics_counter(m, "x_total", "k=\"v\"", "X.");
    at_counter_t *c = at_metrics_counter(m, "x_total", "k=\"w\"", "X.");
    assert_non_null(a);
    assert_ptr_equal(a, b);
    assert_ptr_not_equal(a, c);
    /* NULL and "" both mean "no labels". */
    assert_ptr_equal(at_metrics_counter(m, "y_total", NULL, "Y."), at_metrics_counter(m, "y_total", "", "Y."));
    assert_null(at_metrics_gauge(m, "x_total", NULL, "clash"));
    assert_null(
        at_metrics_histogram(m, "x_total", NULL, "clash", at_metrics_latency_bounds, at_metrics_latency_nbounds));
    at_metrics_destroy(m);
}

static void test_at_gauge__set_add_get(void **state)
{
    (void)state;
    at_metrics_t *m = at_metrics_new();
    at_gauge_t *g = at_metrics_gauge(m, "g", NULL, "G.");
    assert_true(at_gauge_get(g) == 0.0);
    at_gauge_set(g, -3.5);
    assert_true(at_gauge_get(g) == -3.5);
    at_gauge_add(g, 1.25);
    assert_true(at_gauge_get(g) == -2.25);
    at_gauge_set(g, INFINITY);
    char *text = at_metrics_render(m, NULL);
    assert_non_null(strstr(text, "\ng +Inf\n"));
    free(text);
    at_metrics_destroy(m);
}

static void test_at_metrics_latency_bounds__range(void **state)
{
    (void)state;
    assert_true(at_metrics_latency_nbounds >= 10);
    assert_true(at_metrics_latency_bounds[0] == 0.00005);
    assert_true(at_metrics_latency_bounds[at_metrics_latency_nbounds - 1] == 10.0);
    for (size_t i = 1; i < at_metrics_latency_nbounds; i++)
        assert_true(at_metrics_latency_bounds[i] > at_metrics_latency_bounds[i - 1]);

    at_metrics_t *m = at_metrics_new();
    at_histogram_t *h =
        at_metrics_histogram(m, "lat", NULL, "L.", at_metrics_latency_bounds, at_metrics_latency_nbounds);
    assert_non_null(h);
    at_histogram_observe(h, 0.00001);
    char *text = at_metrics_render(m, NULL);
    assert_non_null(strstr(text, "lat_bucket{le=\"5e-05\"} 1\n"));
    assert_non_null(strstr(text, "lat_bucket{le=\"10\"} 1\n"));
    free(text);
    at_metrics_destroy(m);
}

typedef struct collect_ctx_s {
    int calls;
    at_gauge_t *g;
} collect_ctx_t;

static void on_collect(at_metrics_t *m, void *opaque)
{
    collect_ctx_t *ctx = opaque;
    ctx->calls++;
    /* Registering from a callback must not deadlock on the registry lock. */
    if (ctx->g == NULL)
        ctx->g = at_metrics_gauge(m, "kafka_queue_depth", NULL, "Messages waiting.");
    at_gauge_set(ctx->g, 42);
}

static void test_at_metrics_on_collect__runs_before_render(void **state)
{
    (void)state;
    at_metrics_t *m = at_metrics_new();
    collect_ctx_t ctx = {0};
    at_metrics_on_collect(m, on_collect, &ctx);
    char *text = at_metrics_render(m, NULL);
    assert_int_equal(ctx.calls, 1);
    assert_non_null(strstr(text, "\nkafka_queue_depth 42\n"));
    free(text);
    text = at_metrics_render(m, NULL);
    assert_int_equal(ctx.calls, 2);
    free(text);
    at_metrics_destroy(m);
}

#define N_THREADS 4
#define N_ITER 100000

typedef struct work_s {
    at_counter_t *c;
    at_gauge_t *g;
    at_histogram_t *h;
} work_t;

static void *worker(void *arg)
{
    work_t *w = arg;
    for (int i = 0; i < N_ITER; i++) {
        at_counter_add(w->c, 1);
        at_gauge_add(w->g, 1.0);
        at_histogram_observe(w->h, (i % 2) ? 0.5 : 2.0);
    }
    return NULL;
}

static void *renderer(void *arg)
{
    at_metrics_t *m = arg;
    for (int i = 0; i < 50; i++)
        free(at_metrics_render(m, NULL));
    return NULL;
}

static void test_at_counter_add__concurrent_exact_total(void **state)
{
    (void)state;
    at_metrics_t *m = at_metrics_new();
    static const double bounds[] = {1};
    work_t w = {
        at_metrics_counter(m, "hits_total", NULL, "Hits."),
        at_metrics_gauge(m, "inflight", NULL, "In flight."),
        at_metrics_histogram(m, "h", NULL, "H.", bounds, 1),
    };
    pthread_t th[N_THREADS], r;
    assert_int_equal(pthread_create(&r, NULL, renderer, m), 0);
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, worker, &w), 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(th[i], NULL);
    pthread_join(r, NULL);

    assert_int_equal(at_counter_get(w.c), (uint64_t)N_THREADS * N_ITER);
    assert_true(at_gauge_get(w.g) == (double)N_THREADS * N_ITER);
    assert_int_equal(at_histogram_count(w.h), (uint64_t)N_THREADS * N_ITER);
    char *text = at_metrics_render(m, NULL);
    char expect[128];
    snprintf(expect, sizeof(expect), "\nhits_total %d\n", N_THREADS * N_ITER);
    assert_non_null(strstr(text, expect));
    snprintf(expect, sizeof(expect), "\nh_bucket{le=\"1\"} %d\n", N_THREADS * N_ITER / 2);
    assert_non_null(strstr(text, expect));
    snprintf(expect, sizeof(expect), "\nh_sum %d\n", N_THREADS * N_ITER / 2 * 5 / 2);
    assert_non_null(strstr(text, expect));
    free(text);
    at_metrics_destroy(m);
}

static void test_at_metrics_destroy__null(void **state)
{
    (void)state;
    at_metrics_destroy(NULL);
    at_metrics_t *m = at_metrics_new();
    char *text = at_metrics_render(m, NULL);
    assert_string_equal(text, "");
    free(text);
    at_metrics_destroy(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_metrics_render__exact_text),
        cmocka_unit_test(test_at_metrics_histogram__cumulative_buckets),
        cmocka_unit_test(test_at_metrics_histogram__rejects_unsorted_bounds),
        cmocka_unit_test(test_at_metrics_counter__same_series_and_type_clash),
        cmocka_unit_test(test_at_gauge__set_add_get),
        cmocka_unit_test(test_at_metrics_latency_bounds__range),
        cmocka_unit_test(test_at_metrics_on_collect__runs_before_render),
        cmocka_unit_test(test_at_counter_add__concurrent_exact_total),
        cmocka_unit_test(test_at_metrics_destroy__null),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
