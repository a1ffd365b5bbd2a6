/*
 * test_cd_reports.c: the reports service on the calling thread with the file source
 * (--stats-dir): incremental reads (only whole lines, each file from where it was left),
 * the last line of an _id winning, several directories, a rotated-in file, a shrunk file
 * read again, and the 503 without any source.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "cd_reports.h"

static char root[512];

static void write_file(const char *path, const char *mode, const char *text)
{
    FILE *f = fopen(path, mode);
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *line(int k, long long imp, const char *mt)
{
    static char buf[1024];
    snprintf(buf, sizeof(buf),
             "{\"_id\":\"2026-12-03T17|camp-1|cr|pub|top|%d\",\"h\":{\"$date\":\"2026-12-03T17:00:00Z\"},"
             "\"c\":\"camp-1\",\"adv\":\"adv-1\",\"cr\":\"cr\",\"p\":\"pub\",\"pl\":\"top\",\"k\":%d,\"o\":5,"
             "\"imp\":%lld,\"view\":0,\"click\":0,\"conv\":0,\"spend\":0,\"payout\":0,\"rejected\":0,\"u\":{},"
             "\"mt\":{\"$date\":\"%s\"}}\n",
             k, k, imp, mt);
    return buf;
}

/* imp of the day's total (-1 on a non-200 answer). */
static long long total_imp(cd_reports_t *rp)
{
    const char *qs = "from=2026-12-03&to=2026-12-04&metrics=imp";
    cd_report_req_t *r = cd_report_req_new(qs, strlen(qs), false);
    cd_reports_answer(rp, r);
    long long v = -1;
    if (r->status == 200) {
        const char *t = strstr(r->body, "\"totals\":{\"imp\":");
        assert_non_null(t);
        v = atoll(t + 16);
    }
    cd_report_req_free(r);
    return v;
}

static void test_cd_reports_poll__files_incrementally(void **state)
{
    (void)state;
    char d1[600], d2[600], f1[700], f2[700], f3[700];
    snprintf(d1, sizeof(d1), "%s/enricher-1", root);
    snprintf(d2, sizeof(d2), "%s/enricher-2", root);
    mkdir(d1, 0755);
    snprintf(f1, sizeof(f1), "%s/stats_hourly-000001.jsonl", d1);
    snprintf(f2, sizeof(f2), "%s/stats_hourly-000002.jsonl", d1);
    snprintf(f3, sizeof(f3), "%s/stats_hourly-000001.jsonl", d2);
    char *dirs[] = {d1, d2}; /* d2 does not exist yet: fine */
    cd_conf_t conf = {.mongo = "", .stats_dir = {dirs, 2}, .reports_poll_ms = 100, .reports_overlap_ms = 0};
    at_err_t err = {0};
    cd_reports_t *rp = cd_reports_new(&conf, NULL, &err);
    assert_non_null(rp);
    write_file(f1, "w", line(0, 10, "2026-12-03T17:10:00Z"));
    write_file(f1, "a", line(1, 5, "2026-12-03T17:10:00Z"));
    /* a line still being written is not taken */
    char partial[1024];
    snprintf(partial, sizeof(partial), "%s", line(0, 20, "2026-12-03T17:20:00Z"));
    size_t half = strlen(partial) / 2;
    partial[half] = '\0';
    write_file(f1, "a", partial);
    cd_reports_poll(rp);
    assert_int_equal(cd_reports_documents(rp), 2);
    assert_int_equal(total_imp(rp), 15);
    /* its rest arrives: the newer version of k=0 replaces the first */
    write_file(f1, "a", line(0, 20, "2026-12-03T17:20:00Z") + half);
    cd_reports_poll(rp);
    assert_int_equal(cd_reports_documents(rp), 2);
    assert_int_equal(total_imp(rp), 25);
    /* a rotated-in file and a second directory */
    write_file(f2, "w", line(1, 7, "2026-12-03T17:30:00Z"));
    mkdir(d2, 0755);
    write_file(f3, "w", line(2, 100, "2026-12-03T17:31:00Z"));
    /* not a stats file: ignored */
    char other[700];
    snprintf(other, sizeof(other), "%s/events-000001.jsonl", d1);
    write_file(other, "w", line(3, 1000, "2026-12-03T17:31:00Z"));
    cd_reports_poll(rp);
    assert_int_equal(cd_reports_documents(rp), 3);
    assert_int_equal(total_imp(rp), 127);
    /* nothing new: nothing changes */
    cd_reports_poll(rp);
    assert_int_equal(total_imp(rp), 127);
    /* a bad line is skipped, the next one is read */
    write_file(f3, "a", "{not json\n");
    write_file(f3, "a", line(2, 200, "2026-12-03T17:40:00Z"));
    cd_reports_poll(rp);
    assert_int_equal(total_imp(rp), 227);
    /* a file that shrank (replaced) is read again from the start */
    write_file(f3, "w", line(2, 300, "2026-12-03T17:50:00Z"));
    cd_reports_poll(rp);
    assert_int_equal(total_imp(rp), 327);
    cd_reports_destroy(rp);
}

static void test_cd_reports_answer__no_source_is_503(void **state)
{
    (void)state;
    cd_conf_t conf = {.mongo = "", .reports_poll_ms = 100};
    at_err_t err = {0};
    cd_reports_t *rp = cd_reports_new(&conf, NULL, &err);
    assert_non_null(rp);
    cd_report_req_t *r = cd_report_req_new("from=2026-12-03&to=2026-12-04", 29, false);
    cd_reports_answer(rp, r);
    assert_int_equal(r->status, 503);
    assert_non_null(strstr(r->body, "--stats-dir"));
    cd_report_req_free(r);
    /* a bad request with a source is a 400 with the fields */
    cd_reports_destroy(rp);
    char *dirs[] = {root};
    cd_conf_t conf2 = {.mongo = "", .stats_dir = {dirs, 1}, .reports_poll_ms = 100};
    rp = cd_reports_new(&conf2, NULL, &err);
    r = cd_report_req_new("from=2026-12-03", 15, false);
    cd_reports_answer(rp, r);
    assert_int_equal(r->status, 400);
    assert_non_null(strstr(r->body, "\"field\" : \"to\""));
    cd_report_req_free(r);
    cd_reports_destroy(rp);
}

static int setup(void **state)
{
    (void)state;
    const char *tmp = getenv("ADTRACK_TEST_TMP");
    snprintf(root, sizeof(root), "%s/cd_reports_XXXXXX", tmp ? tmp : "/tmp");
    return mkdtemp(root) == NULL ? -1 : 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cd_reports_poll__files_incrementally),
        cmocka_unit_test(test_cd_reports_answer__no_source_is_503),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
