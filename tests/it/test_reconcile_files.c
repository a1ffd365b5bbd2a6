/* LABELS: it */
/*
 * test_reconcile_files.c: `adtrack rollups reconcile --data-dir` against the enricher's file
 * sink layout (docs/ENRICHER.md "Sinks", docs/REPORTS.md): the scenario of
 * reconcile_scenario.h with two data directories (the late event lands in the second), an
 * event stored twice across files (a redelivery: counted once), a torn last line (skipped),
 * stale stats_hourly lines in stats_hourly-2.jsonl superseded by stats_hourly-10.jsonl (the
 * last line of an _id wins, files in numeric order); then what the corrections file holds,
 * bad arguments (exit 2, the option named) and the warning for the current hour.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <time.h>

#include "reconcile_scenario.h"

typedef struct files_ctx_s {
    char *dir[2];
    int stats_calls;
    char *stats_written; /* what the test last wrote to stats_hourly-10.jsonl */
} files_ctx_t;

static void append(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

static char *slurp(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void append_doc(const char *dir, const char *name, const bson_t *d)
{
    char *json = bson_as_relaxed_extended_json(d, NULL);
    append(dir, name, json);
    append(dir, name, "\n");
    bson_free(json);
}

static void files_put(void *ctx, const char *coll, bson_t *const *docs, size_t n)
{
    files_ctx_t *fc = ctx;
    /* after the drift phase began, events go to the second directory (another enricher) */
    const char *dir = fc->dir[fc->stats_calls >= 2 ? 1 : 0];
    char name[64];
    snprintf(name, sizeof(name), "%s-1.jsonl", coll);
    for (size_t i = 0; i < n; i++)
        append_doc(dir, name, docs[i]);
}

static void files_put_stats(void *ctx, bson_t *const *docs, size_t n)
{
    files_ctx_t *fc = ctx;
    fc->stats_calls++;
    char path[4096];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof(path), "%s/%s", fc->dir[0], i ? "stats_hourly-10.jsonl" : "stats_hourly-2.jsonl");
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fclose(f);
    }
    for (size_t i = 0; i < n; i++) {
        /* a stale version first, in the earlier file; the current one in the later file */
        bson_t *stale = bson_new();
        bson_iter_t it;
        bson_iter_init(&it, docs[i]);
        while (bson_iter_next(&it)) {
            if (strcmp(bson_iter_key(&it), "imp") == 0)
                BSON_APPEND_INT64(stale, "imp", 999);
            else
                bson_append_iter(stale, NULL, 0, &it);
        }
        append_doc(fc->dir[0], "stats_hourly-2.jsonl", stale);
        bson_destroy(stale);
        append_doc(fc->dir[0], "stats_hourly-10.jsonl", docs[i]);
    }
    free(fc->stats_written);
    fc->stats_written = slurp(fc->dir[0], "stats_hourly-10.jsonl");
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; s && *s; s++)
        n += *s == '\n';
    return n;
}

static void files_check_outside(void *ctx)
{
    files_ctx_t *fc = ctx;
    char *corr = slurp(fc->dir[0], "stats_hourly-corrections.jsonl");
    assert_non_null(corr);
    assert_int_equal(count_lines(corr), 5);
    /* every line a correction of an hour inside the range */
    for (char *line = corr; *line; line = strchr(line, '\n') + 1) {
        assert_true(strncmp(line, "{ \"_id\" : \"2026-11-20T10|", 25) == 0 ||
                    strncmp(line, "{ \"_id\" : \"2026-11-20T11|", 25) == 0);
        assert_non_null(strstr(line, "|-1\", \"h\" : { \"$date\" : \"2026-11-20T1"));
        assert_non_null(strstr(line, "\"k\" : -1,"));
        char *eol = strchr(line, '\n');
        *eol = '\0';
        assert_null(strstr(line, "\"o\" :"));
        *eol = '\n';
    }
    assert_non_null(strstr(corr, "{ \"_id\" : \"2026-11-20T10|camp-a|cr-1|pub-1|top|-1\""));
    assert_non_null(strstr(corr, "\"imp\" : -10,"));
    free(corr);
    assert_null(slurp(fc->dir[1], "stats_hourly-corrections.jsonl"));
    /* the enricher's files are read, never written */
    char *now = slurp(fc->dir[0], "stats_hourly-10.jsonl");
    assert_string_equal(now, fc->stats_written);
    free(now);
}

static void test_reconcile__files_report_repair_idempotent(void **state)
{
    (void)state;
    files_ctx_t fc = {.dir = {ts_tmpdir("reconcile-a"), ts_tmpdir("reconcile-b")}};
    /* a redelivered event, stored again in a later file, and a write in progress */
    static rs_world_t w;
    rs_world_build(&w);
    bson_t *again = rs_event_doc(&w.ev[3], 3);
    append_doc(fc.dir[0], "events-2.jsonl", again);
    bson_destroy(again);
    append(fc.dir[0], "events-2.jsonl",
           "{ \"_id\" : \"torn\", \"e\" : \"imp\", \"c\" : \"camp-a\", \"ts\" : { \"$date\" : \"2026-11-20T10:00:00Z\" }");
    rs_backend_t b = {.put = files_put,
                      .put_stats = files_put_stats,
                      .check_outside = files_check_outside,
                      .store_args = {"--data-dir", fc.dir[0], "--data-dir", fc.dir[1]},
                      .ctx = &fc};
    rs_run_scenario(&b);
    free(fc.dir[0]);
    free(fc.dir[1]);
    free(fc.stats_written);
}

static void expect_usage(const char *from, const char *to, const char *const *args, const char *want)
{
    rs_backend_t none = {.store_args = {NULL}};
    rs_run_t r = rs_reconcile(&none, from, to, false, false, args);
    assert_int_equal(r.status, 2);
    if (strstr(r.err, want) == NULL)
        fail_msg("stderr '%s' does not say '%s'", r.err, want);
    assert_string_equal(r.out, "");
    rs_run_free(&r);
}

static void test_reconcile__bad_arguments_are_exit_2_naming_the_option(void **state)
{
    (void)state;
    char *dir = ts_tmpdir("reconcile-args");
    const char *data[] = {"--data-dir", dir, NULL};
    expect_usage("2026-11-20T10:30", "2026-11-20T12", data,
                 "--from: expected YYYY-MM-DD or YYYY-MM-DDTHH (UTC, a whole hour), got '2026-11-20T10:30'");
    expect_usage("2026-11-20T10", "2026-13-01", data, "--to: expected a real date");
    expect_usage("2026-11-20T10", "2026-11-20T10", data, "--to: expected an hour after --from");
    expect_usage("2026-11-20", "2026-11-21", NULL, "expected a store: --mongo URI, --mongo-file FILE or --data-dir DIR");
    const char *both[] = {"--data-dir", dir, "--mongo", "mongodb://127.0.0.1:1", NULL};
    expect_usage("2026-11-20", "2026-11-21", both, "expected --mongo (or --mongo-file) or --data-dir, not both");
    const char *missing[] = {"--data-dir", "/nonexistent/reconcile", NULL};
    expect_usage("2026-11-20", "2026-11-21", missing, "--data-dir /nonexistent/reconcile: expected a readable directory");
    const char *badbool[] = {"--data-dir", dir, "--repair", "maybe", NULL};
    expect_usage("2026-11-20", "2026-11-21", badbool, "--repair");
    /* an unreadable line in a sink file is an error naming the file and line, not a skip */
    append(dir, "events-1.jsonl", "{ \"_id\" : \"x\" }\nnot json\n");
    expect_usage("2026-11-20", "2026-11-21", data, "events-1.jsonl:2: not a JSON document");
    free(dir);
}

static void test_reconcile__warns_when_the_range_includes_the_current_hour(void **state)
{
    (void)state;
    char *dir = ts_tmpdir("reconcile-now");
    time_t now = time(NULL);
    struct tm tm;
    char from[32], to[32];
    gmtime_r(&now, &tm);
    strftime(from, sizeof(from), "%Y-%m-%dT%H", &tm);
    time_t next = now + 3600;
    gmtime_r(&next, &tm);
    strftime(to, sizeof(to), "%Y-%m-%dT%H", &tm);
    rs_backend_t b = {.store_args = {"--data-dir", dir, NULL}};
    rs_run_t r = rs_reconcile(&b, from, to, false, false, NULL);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.err, "warning: the range includes the current hour"));
    rs_run_free(&r);
    /* two days ago: settled, no warning */
    time_t old = now - 2 * 86400;
    gmtime_r(&old, &tm);
    strftime(from, sizeof(from), "%Y-%m-%d", &tm);
    old += 86400;
    gmtime_r(&old, &tm);
    strftime(to, sizeof(to), "%Y-%m-%d", &tm);
    r = rs_reconcile(&b, from, to, false, false, NULL);
    assert_int_equal(r.status, 0);
    assert_null(strstr(r.err, "warning"));
    assert_non_null(strstr(r.out, "checked 24 hours, 0 groups"));
    rs_run_free(&r);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reconcile__files_report_repair_idempotent),
        cmocka_unit_test(test_reconcile__bad_arguments_are_exit_2_naming_the_option),
        cmocka_unit_test(test_reconcile__warns_when_the_range_includes_the_current_hour),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
