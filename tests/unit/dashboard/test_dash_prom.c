/*
 * test_dash_prom.c: the Prometheus text parser and the health values read from it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdlib.h>

#include "dash_health.h"
#include "dash_prom.h"

typedef struct seen_s {
    char names[16][64];
    double values[16];
    char labels[16][128]; /* "k=v;k=v" */
    size_t n;
} seen_t;

static void collect(const dash_prom_sample_t *s, void *opaque)
{
    seen_t *seen = opaque;
    if (seen->n == 16)
        return;
    snprintf(seen->names[seen->n], sizeof(seen->names[0]), "%s", s->name);
    seen->values[seen->n] = s->value;
    size_t off = 0;
    seen->labels[seen->n][0] = '\0';
    for (size_t i = 0; i < s->nlabels; i++) {
        int w = snprintf(seen->labels[seen->n] + off, sizeof(seen->labels[0]) - off, "%s%s=%s", i ? ";" : "",
                         s->labels[i].name, s->labels[i].value);
        if (w > 0)
            off += (size_t)w;
    }
    seen->n++;
}

static void test_dash_prom_parse__samples_labels_comments(void **state)
{
    (void)state;
    const char *text = "# HELP adtrack_spool_bytes Bytes in the spool.\n"
                       "# TYPE adtrack_spool_bytes gauge\n"
                       "adtrack_spool_bytes 1024\n"
                       "\n"
                       "adtrack_http_requests_total{code=\"200\"} 17 1700000000000\r\n"
                       "x{a=\"q\\\"uo\\\\te\\n\",b=\"\",} -2.5e3\n"
                       "inf_metric +Inf\n"
                       "   spaced{ a = \"1\" }   3\n";
    seen_t seen = {0};
    size_t bad = 99;
    size_t n = dash_prom_parse(text, strlen(text), collect, &seen, &bad);
    assert_int_equal(n, 5);
    assert_int_equal(bad, 0);
    assert_string_equal(seen.names[0], "adtrack_spool_bytes");
    assert_true(seen.values[0] == 1024);
    assert_string_equal(seen.labels[1], "code=200");
    assert_true(seen.values[1] == 17);
    assert_string_equal(seen.labels[2], "a=q\"uo\\te\n;b=");
    assert_true(seen.values[2] == -2500);
    assert_true(isinf(seen.values[3]));
    assert_string_equal(seen.names[4], "spaced");
    assert_string_equal(seen.labels[4], "a=1");
}

static void test_dash_prom_parse__malformed_lines_skipped(void **state)
{
    (void)state;
    const char *text = "ok 1\n"
                       "no_value\n"
                       "9starts_with_digit 1\n"
                       "unterminated{a=\"x 1\n"
                       "badescape{a=\"\\q\"} 1\n"
                       "noquote{a=x} 1\n"
                       "trailing 1 2 3\n"
                       "notanumber abc\n"
                       "ts_not_int 1 1.5\n"
                       "{a=\"1\"} 1\n"
                       "also_ok{} 2";
    seen_t seen = {0};
    size_t bad = 0;
    size_t n = dash_prom_parse(text, strlen(text), collect, &seen, &bad);
    assert_int_equal(n, 2);
    assert_int_equal(bad, 9);
    assert_string_equal(seen.names[1], "also_ok");
    assert_true(seen.values[1] == 2);
}

static void test_dash_prom_parse__too_many_labels_and_long_lines(void **state)
{
    (void)state;
    char line[DASH_PROM_LINE_MAX + 100];
    size_t off = (size_t)snprintf(line, sizeof(line), "m{");
    for (int i = 0; i < DASH_PROM_LABELS_MAX + 1; i++)
        off += (size_t)snprintf(line + off, sizeof(line) - off, "l%d=\"v\",", i);
    snprintf(line + off, sizeof(line) - off, "} 1\n");
    size_t bad = 0;
    assert_int_equal(dash_prom_parse(line, strlen(line), NULL, NULL, &bad), 0);
    assert_int_equal(bad, 1);

    memset(line, 'a', sizeof(line));
    memcpy(line + sizeof(line) - 3, " 1", 2);
    assert_int_equal(dash_prom_parse(line, sizeof(line) - 1, NULL, NULL, &bad), 0);
    assert_int_equal(bad, 1);
}

/* Random bytes and truncations of a valid text: never crash, never read past len (the
 * buffer is exactly len bytes on the heap, so ASan would see an overread). */
static void test_dash_prom_parse__garbage_never_crashes(void **state)
{
    (void)state;
    const char *valid = "a_b{x=\"1\",y=\"two\\\"\"} 3.5 17\n# c\nz 1\n";
    size_t vlen = strlen(valid);
    for (size_t cut = 0; cut <= vlen; cut++) {
        char *p = malloc(cut ? cut : 1);
        memcpy(p, valid, cut);
        size_t bad;
        dash_prom_parse(p, cut, NULL, NULL, &bad);
        free(p);
    }
    srand(7);
    static const char alphabet[] = "ab_:{}=\",\\ \n\r\t0123456789.+-eInfNa#";
    for (int round = 0; round < 3000; round++) {
        size_t len = (size_t)(rand() % 200);
        char *p = malloc(len ? len : 1);
        for (size_t i = 0; i < len; i++)
            p[i] = round % 2 ? (char)(rand() % 256) : alphabet[rand() % (int)(sizeof(alphabet) - 1)];
        seen_t seen = {0};
        size_t bad;
        size_t n = dash_prom_parse(p, len, collect, &seen, &bad);
        assert_true(n + bad <= len + 1);
        free(p);
    }
}

static void test_dash_health_extract__collector_and_enricher(void **state)
{
    (void)state;
    const char *col = "adtrack_spool_bytes 4096\nadtrack_spool_active 1\nadtrack_kafka_reachable 0\n"
                      "adtrack_http_requests_total{code=\"200\"} 10\nadtrack_http_requests_total{code=\"400\"} 5\n";
    dash_health_t h;
    dash_health_extract(col, strlen(col), &h);
    assert_true(h.collector);
    assert_false(h.enricher);
    assert_true(h.spool_bytes == 4096);
    assert_true(h.spool_active == 1);
    assert_true(h.requests_total == 15);

    const char *enr = "adtrack_enricher_events_total{outcome=\"valid\"} 100\n"
                      "adtrack_enricher_rejected_total{reason=\"bot\"} 7\n"
                      "adtrack_enricher_rejected_total{reason=\"unknown_campaign\"} 3\n"
                      "adtrack_enricher_paused 1\nadtrack_enricher_ready 0\n";
    dash_health_extract(enr, strlen(enr), &h);
    assert_true(h.enricher);
    assert_true(h.enr_events_total == 110);
    assert_true(h.enr_paused == 1);
    assert_false(h.has_lag);

    const char *lag =
        "adtrack_enricher_consumer_lag{partition=\"0\"} 5\nadtrack_enricher_consumer_lag{partition=\"1\"} 7\n";
    dash_health_extract(lag, strlen(lag), &h);
    assert_true(h.has_lag);
    assert_true(h.consumer_lag == 12);
}

static void test_dash_rate__deltas_and_resets(void **state)
{
    (void)state;
    assert_true(dash_rate(100, 150, 2.0) == 25);
    assert_true(dash_rate(100, 40, 2.0) == 20); /* restarted: the new value is the increase */
    assert_true(isnan(dash_rate(1, 2, 0)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dash_prom_parse__samples_labels_comments),
        cmocka_unit_test(test_dash_prom_parse__malformed_lines_skipped),
        cmocka_unit_test(test_dash_prom_parse__too_many_labels_and_long_lines),
        cmocka_unit_test(test_dash_prom_parse__garbage_never_crashes),
        cmocka_unit_test(test_dash_health_extract__collector_and_enricher),
        cmocka_unit_test(test_dash_rate__deltas_and_resets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
