/*
 * test_cd_rquery.c: GET /v1/reports parameters (every 400), aggregation over the rollup
 * index (sum over partitions, newer versions replacing older ones, days in a time zone
 * with a DST change, merged unique users), derived metrics with null on a zero
 * denominator, and the JSON and CSV answers (RFC 4180 quoting).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <math.h>
#include <stdlib.h>

#include <cmocka.h>

#include "cd_rindex.h"
#include "cd_rquery.h"

/* ---- parameters ---- */

static cd_tzcache_t tzc;

/* Parses @p qs; returns the number of problems, with the fields joined in @p fields. */
static size_t parse(const char *qs, cd_rquery_t *q, char *fields, size_t size)
{
    cd_verrs_t errs = {0};
    int rc = cd_rquery_parse(qs, strlen(qs), false, &tzc, q, &errs);
    fields[0] = '\0';
    size_t o = 0;
    for (size_t i = 0; i < errs.count; i++)
        o += (size_t)snprintf(fields + o, size - o, "%s%s", i ? "," : "", errs.items[i].field);
    assert_int_equal(rc, errs.count > 0 ? -1 : 0);
    return errs.count;
}

/* The "expected" text of the first problem with @p field. */
static const char *expected(const char *qs, const char *field)
{
    static cd_verrs_t errs;
    cd_rquery_t q;
    memset(&errs, 0, sizeof(errs));
    assert_int_equal(cd_rquery_parse(qs, strlen(qs), false, &tzc, &q, &errs), -1);
    for (size_t i = 0; i < errs.count; i++)
        if (strcmp(errs.items[i].field, field) == 0)
            return errs.items[i].expected;
    fail_msg("no problem with %s in %s", field, qs);
    return NULL;
}

static void test_cd_rquery_parse__defaults_and_forms(void **state)
{
    (void)state;
    cd_rquery_t q;
    char f[512];
    assert_int_equal(parse("from=2026-12-01&to=2026-12-03", &q, f, sizeof(f)), 0);
    assert_int_equal(q.from, 1796083200); /* 2026-12-01T00:00:00Z */
    assert_int_equal(q.to - q.from, 2 * 86400);
    assert_true(q.daily);
    assert_false(q.csv);
    assert_int_equal(q.ndims, 0);
    assert_int_equal(q.nmetrics, CD_M_REJECTED_BY_REASON); /* all but rejected_by_reason */
    assert_string_equal(q.tz->name, "UTC");
    /* midnight in the zone; an offset given as %2B or as a literal '+' */
    assert_int_equal(parse("from=2026-12-01&to=2026-12-02&tz=Europe%2FBerlin", &q, f, sizeof(f)), 0);
    assert_int_equal(q.from, 1796083200 - 3600);
    assert_int_equal(parse("from=2026-12-01T00:00:00%2B01:00&to=2026-12-01T05:00:00.000Z&granularity=hour"
                           "&group_by=publisher,campaign&metrics=ctr,imp&format=csv",
                           &q, f, sizeof(f)),
                     0);
    assert_int_equal(q.from, 1796083200 - 3600);
    assert_int_equal(q.to, 1796083200 + 5 * 3600);
    assert_false(q.daily);
    assert_true(q.csv);
    assert_int_equal(q.ndims, 2);
    assert_int_equal(q.dims[0], CD_DIM_PUBLISHER);
    assert_int_equal(q.dims[1], CD_DIM_CAMPAIGN);
    assert_int_equal(q.nmetrics, 2);
    assert_int_equal(q.metrics[0], CD_M_CTR);
    assert_int_equal(parse("from=2026-12-01T00:00:00+01:00&to=2026-12-01T01:00:00-05:00", &q, f, sizeof(f)), 0);
    assert_int_equal(q.to - q.from, 7 * 3600);
    /* Accept: text/csv without format=; format=json wins over it */
    cd_verrs_t errs = {0};
    const char *qs = "from=2026-12-01&to=2026-12-02";
    assert_int_equal(cd_rquery_parse(qs, strlen(qs), true, &tzc, &q, &errs), 0);
    assert_true(q.csv);
    qs = "from=2026-12-01&to=2026-12-02&format=json";
    assert_int_equal(cd_rquery_parse(qs, strlen(qs), true, &tzc, &q, &errs), 0);
    assert_false(q.csv);
    /* the longest ranges */
    assert_int_equal(parse("from=2026-01-01&to=2027-01-02", &q, f, sizeof(f)), 0);
    assert_int_equal(parse("from=2026-01-01&to=2026-02-01&granularity=hour", &q, f, sizeof(f)), 0);
    /* a year in Berlin spans a DST hour more or less: still allowed */
    assert_int_equal(parse("from=2026-03-01&to=2027-03-02&tz=Europe/Berlin", &q, f, sizeof(f)), 0);
}

static void test_cd_rquery_parse__every_400(void **state)
{
    (void)state;
    cd_rquery_t q;
    char f[512];
    assert_int_equal(parse("", &q, f, sizeof(f)), 2);
    assert_string_equal(f, "from,to");
    assert_non_null(strstr(expected("to=2026-12-01", "from"), "required"));
    assert_non_null(strstr(expected("from=2026-13-01&to=2026-12-02", "from"), "YYYY-MM-DD"));
    assert_non_null(strstr(expected("from=2026-02-30&to=2026-12-02", "from"), "YYYY-MM-DD"));
    assert_non_null(strstr(expected("from=yesterday&to=2026-12-02", "from"), "RFC 3339"));
    assert_non_null(strstr(expected("from=2026-12-01T00:00:00&to=2026-12-02", "from"), "RFC 3339"));
    assert_non_null(strstr(expected("from=2026-12-01T00:30:00Z&to=2026-12-02", "from"), "hour boundary"));
    assert_non_null(strstr(expected("from=2026-12-01T00:00:00.5Z&to=2026-12-02", "from"), "hour boundary"));
    assert_non_null(strstr(expected("from=2026-12-01T00:00:00%2B01:30&to=2026-12-02", "from"), "hour boundary"));
    assert_non_null(strstr(expected("from=2026-12-02&to=2026-12-02", "to"), "after from"));
    assert_non_null(strstr(expected("from=2026-12-03&to=2026-12-02", "to"), "after from"));
    assert_non_null(strstr(expected("from=2026-01-01&to=2027-01-03", "to"), "366 days"));
    assert_non_null(strstr(expected("from=2026-01-01&to=2026-02-02&granularity=hour", "to"), "31 days"));
    assert_string_equal(expected("from=2026-12-01&to=2026-12-02&granularity=week", "granularity"), "hour or day");
    assert_non_null(strstr(expected("from=2026-12-01&to=2026-12-02&group_by=campaign,site", "group_by"), "'site'"));
    assert_non_null(
        strstr(expected("from=2026-12-01&to=2026-12-02&group_by=campaign,campaign", "group_by"), "given twice"));
    assert_non_null(strstr(expected("from=2026-12-01&to=2026-12-02&metrics=imp,revenue", "metrics"), "'revenue'"));
    assert_non_null(strstr(expected("from=2026-12-01&to=2026-12-02&metrics=", "metrics"), "empty"));
    assert_non_null(strstr(expected("from=2026-12-01&to=2026-12-02&metrics=ctr,ctr", "metrics"), "given twice"));
    assert_non_null(strstr(expected("from=2026-12-01&to=2026-12-02&tz=Mars/Olympus", "tz"), "Mars/Olympus"));
    assert_non_null(strstr(expected("from=2026-12-01&to=2026-12-02&tz=..%2Fetc", "tz"), "IANA"));
    assert_non_null(strstr(expected("from=2026-12-01&to=2026-12-02&tz=Asia/Kolkata", "tz"), "whole number of hours"));
    assert_string_equal(expected("from=2026-12-01&to=2026-12-02&format=xml", "format"), "json or csv");
    assert_non_null(strstr(expected("from=2026-12-01&to=2026-12-02&limit=5", "limit"), "no such parameter"));
    assert_non_null(strstr(expected("from=2026-12-01&to=2026-12-02&to=2026-12-03", "to"), "once"));
    assert_non_null(strstr(expected("from=2026-12-01&to=2026-12-02&tz=%zz", "tz"), "percent-encoded"));
    assert_non_null(strstr(expected("from&to=2026-12-02", "from"), "name=value"));
    /* every problem is listed at once */
    assert_int_equal(parse("from=x&to=y&granularity=w&group_by=q&metrics=z&format=f&tz=Nope/Nope&bogus=1", &q, f,
                           sizeof(f)),
                     8);
}

/* ---- aggregation ---- */

static void put(cd_rindex_t *ix, const char *json, int want)
{
    bson_error_t e;
    bson_t *doc = bson_new_from_json((const uint8_t *)json, -1, &e);
    assert_non_null(doc);
    at_err_t err = {0};
    int rc = cd_rindex_put(ix, doc, &err);
    if (rc != want)
        fail_msg("put %s: %d (%s)", json, rc, err.msg);
    bson_destroy(doc);
}

/* A rollup document as the contract writes it. */
static void put_doc(cd_rindex_t *ix, const char *hour, const char *c, const char *cr, const char *p, int k,
                    long long imp, long long click, long long conv, long long spend, const char *u, const char *mt)
{
    char json[2048];
    snprintf(json, sizeof(json),
             "{\"_id\":\"%.13s|%s|%s|%s|top|%d\",\"h\":{\"$date\":\"%s:00:00Z\"},\"c\":\"%s\",\"adv\":\"adv-%s\","
             "\"cr\":\"%s\",\"p\":\"%s\",\"pl\":\"top\",\"k\":%d,\"o\":1,\"imp\":%lld,\"view\":%lld,"
             "\"click\":%lld,\"conv\":%lld,\"spend\":%lld,\"payout\":%lld,\"rejected\":1,\"rej\":{\"bot\":1},"
             "\"u\":%s,\"mt\":{\"$date\":\"%s\"}}",
             hour, c, cr, p, k, hour, c, c, cr, p, k, imp, imp / 2, click, conv, spend, conv * 1000, u, mt);
    put(ix, json, 1);
}

/* Runs @p qs over @p ix and returns the answer (static buffer). */
static const char *report(cd_rindex_t *ix, const char *qs)
{
    static char *last;
    free(last);
    last = NULL;
    cd_rquery_t q;
    cd_verrs_t errs = {0};
    if (cd_rquery_parse(qs, strlen(qs), false, &tzc, &q, &errs) != 0)
        fail_msg("%s: %s: %s", qs, errs.items[0].field, errs.items[0].expected);
    cd_rspec_t spec;
    cd_rresult_t res;
    at_err_t err = {0};
    cd_rquery_spec(&q, &spec);
    assert_int_equal(cd_rindex_query(ix, &spec, &res, &err), 0);
    size_t len;
    assert_int_equal(cd_rquery_render(&q, ix, &res, cd_rindex_newest_mt(ix), &last, &len), 0);
    cd_rresult_free(&res);
    last = realloc(last, len + 1);
    last[len] = '\0';
    return last;
}

static void test_cd_rindex_query__sums_over_partitions_and_versions(void **state)
{
    (void)state;
    cd_rindex_t *ix = cd_rindex_new();
    put_doc(ix, "2026-12-03T17", "camp-1", "cr-1", "pub-1", 7, 100, 3, 1, 250000, "{\"17\":3}",
            "2026-12-03T17:40:00Z");
    put_doc(ix, "2026-12-03T17", "camp-1", "cr-1", "pub-1", 8, 50, 1, 0, 50000, "{\"17\":5,\"900\":1}",
            "2026-12-03T17:41:00Z");
    /* a newer version of k=7 replaces it; an older one is ignored */
    put_doc(ix, "2026-12-03T17", "camp-1", "cr-1", "pub-1", 7, 200, 4, 1, 500000, "{\"17\":3}",
            "2026-12-03T17:50:00Z");
    put(ix,
        "{\"h\":{\"$date\":\"2026-12-03T17:00:00Z\"},\"c\":\"camp-1\",\"cr\":\"cr-1\",\"p\":\"pub-1\",\"pl\":\"top\","
        "\"k\":7,\"imp\":1,\"mt\":{\"$date\":\"2026-12-03T17:45:00Z\"}}",
        0);
    assert_int_equal(cd_rindex_count(ix), 2);
    const char *j = report(ix, "from=2026-12-03&to=2026-12-04&group_by=campaign&metrics=imp,click,conv,spend_micros,"
                               "payout_micros,rejected,uniques,ctr,cvr,ecpm_micros,cpc_micros,cpa_micros,"
                               "rejected_by_reason,viewability");
    assert_string_equal(
        j, "{\"from\":\"2026-12-03T00:00:00+00:00\",\"to\":\"2026-12-04T00:00:00+00:00\",\"tz\":\"UTC\","
           "\"granularity\":\"day\",\"group_by\":[\"campaign\"],\"metrics\":[\"imp\",\"click\",\"conv\","
           "\"spend_micros\",\"payout_micros\",\"rejected\",\"uniques\",\"ctr\",\"cvr\",\"ecpm_micros\","
           "\"cpc_micros\",\"cpa_micros\",\"rejected_by_reason\",\"viewability\"],"
           "\"rows\":[{\"period\":\"2026-12-03T00:00:00+00:00\",\"campaign\":\"camp-1\",\"imp\":250,\"click\":5,"
           "\"conv\":1,\"spend_micros\":550000,\"payout_micros\":1000,\"rejected\":2,\"uniques\":2,\"ctr\":0.02,"
           "\"cvr\":0.2,\"ecpm_micros\":2200000,\"cpc_micros\":110000,\"cpa_micros\":550000,"
           "\"rejected_by_reason\":{\"bot\":2},\"viewability\":0.5}],"
           "\"totals\":{\"imp\":250,\"click\":5,\"conv\":1,\"spend_micros\":550000,\"payout_micros\":1000,"
           "\"rejected\":2,\"uniques\":2,\"ctr\":0.02,\"cvr\":0.2,\"ecpm_micros\":2200000,\"cpc_micros\":110000,"
           "\"cpa_micros\":550000,\"rejected_by_reason\":{\"bot\":2},\"viewability\":0.5},"
           "\"data_through\":\"2026-12-03T17:50:00Z\"}\n");
    cd_rindex_destroy(ix);
}

static void test_cd_rindex_query__days_in_a_zone_with_dst(void **state)
{
    (void)state;
    cd_rindex_t *ix = cd_rindex_new();
    /* Berlin, 2026-03-29 has 23 hours: 2026-03-28T23:00Z to 2026-03-29T22:00Z */
    put_doc(ix, "2026-03-28T22", "c", "r", "p", 0, 1, 0, 0, 0, "{}", "2026-03-30T00:00:00Z");  /* 28th, 23:00 */
    put_doc(ix, "2026-03-28T23", "c", "r", "p", 0, 10, 0, 0, 0, "{}", "2026-03-30T00:00:00Z"); /* 29th, 00:00 */
    put_doc(ix, "2026-03-29T21", "c", "r", "p", 0, 100, 0, 0, 0, "{}", "2026-03-30T00:00:00Z"); /* 29th, 23:00 */
    put_doc(ix, "2026-03-29T22", "c", "r", "p", 0, 1000, 0, 0, 0, "{}", "2026-03-30T00:00:00Z"); /* 30th */
    const char *j = report(ix, "from=2026-03-28&to=2026-03-31&tz=Europe/Berlin&metrics=imp,ctr");
    assert_non_null(strstr(j, "\"rows\":[{\"period\":\"2026-03-28T00:00:00+01:00\",\"imp\":1,\"ctr\":0},"
                              "{\"period\":\"2026-03-29T00:00:00+01:00\",\"imp\":110,\"ctr\":0},"
                              "{\"period\":\"2026-03-30T00:00:00+02:00\",\"imp\":1000,\"ctr\":0}]"));
    /* the same range in UTC cuts differently */
    j = report(ix, "from=2026-03-28&to=2026-03-31&metrics=imp");
    assert_non_null(strstr(j, "\"rows\":[{\"period\":\"2026-03-28T00:00:00+00:00\",\"imp\":11},"
                              "{\"period\":\"2026-03-29T00:00:00+00:00\",\"imp\":1100}]"));
    /* hours, with the local offset; the range is half-open */
    j = report(ix, "from=2026-03-29T00:00:00%2B01:00&to=2026-03-30T00:00:00%2B02:00&granularity=hour&tz=Europe/Berlin"
                   "&metrics=imp");
    assert_non_null(strstr(j, "\"rows\":[{\"period\":\"2026-03-29T00:00:00+01:00\",\"imp\":10},"
                              "{\"period\":\"2026-03-29T23:00:00+02:00\",\"imp\":100}]"));
    assert_non_null(strstr(j, "\"totals\":{\"imp\":110}"));
    cd_rindex_destroy(ix);
}

static void test_cd_rindex_query__groups_sorted_nulls_and_uniques(void **state)
{
    (void)state;
    cd_rindex_t *ix = cd_rindex_new();
    put_doc(ix, "2026-12-03T10", "camp-b", "cr-1", "pub-2", 0, 0, 0, 0, 0, "{\"1\":2}", "2026-12-03T11:00:00Z");
    put_doc(ix, "2026-12-03T10", "camp-a", "cr-1", "pub-2", 0, 10, 0, 0, 5000, "{\"1\":4}", "2026-12-03T11:00:00Z");
    put_doc(ix, "2026-12-03T11", "camp-a", "cr-2", "pub-1", 0, 10, 2, 0, 5000, "{\"1\":3,\"2\":1}",
            "2026-12-03T12:00:00Z");
    const char *j = report(ix, "from=2026-12-03&to=2026-12-04&group_by=campaign&metrics=imp,ctr,cvr,cpa_micros,uniques");
    /* sorted by key; a zero denominator is null; uniques merge by register maximum */
    assert_non_null(strstr(j, "\"rows\":[{\"period\":\"2026-12-03T00:00:00+00:00\",\"campaign\":\"camp-a\",\"imp\":20,"
                              "\"ctr\":0.1,\"cvr\":0,\"cpa_micros\":null,\"uniques\":2},"
                              "{\"period\":\"2026-12-03T00:00:00+00:00\",\"campaign\":\"camp-b\",\"imp\":0,"
                              "\"ctr\":null,\"cvr\":null,\"cpa_micros\":null,\"uniques\":1}]"));
    assert_non_null(strstr(j, "\"totals\":{\"imp\":20,\"ctr\":0.1,\"cvr\":0,\"cpa_micros\":null,\"uniques\":2}"));
    /* advertiser comes from each document */
    j = report(ix, "from=2026-12-03&to=2026-12-04&group_by=advertiser,publisher&metrics=imp");
    assert_non_null(strstr(j, "{\"period\":\"2026-12-03T00:00:00+00:00\",\"advertiser\":\"adv-camp-a\","
                              "\"publisher\":\"pub-1\",\"imp\":10},{\"period\":\"2026-12-03T00:00:00+00:00\","
                              "\"advertiser\":\"adv-camp-a\",\"publisher\":\"pub-2\",\"imp\":10},"));
    /* an empty range: no rows, zero totals, ratios null */
    j = report(ix, "from=2026-12-05&to=2026-12-06&metrics=imp,ctr");
    assert_non_null(strstr(j, "\"rows\":[],\"totals\":{\"imp\":0,\"ctr\":null}"));
    cd_rindex_destroy(ix);
}

static void test_cd_rquery_render__csv_quoting(void **state)
{
    (void)state;
    cd_rindex_t *ix = cd_rindex_new();
    put_doc(ix, "2026-12-03T10", "camp,1", "cr-1", "pub \\\"q\\\"", 0, 4, 1, 0, 0, "{}", "2026-12-03T11:00:00Z");
    put_doc(ix, "2026-12-03T10", "camp-2", "cr-1", "line\\nbreak", 0, 0, 0, 0, 0, "{}", "2026-12-03T11:00:00Z");
    const char *c = report(ix, "from=2026-12-03&to=2026-12-04&group_by=campaign,publisher&metrics=imp,ctr,"
                               "rejected_by_reason&format=csv");
    assert_string_equal(c, "period,campaign,publisher,imp,ctr,rejected_by_reason.bot\r\n"
                           "2026-12-03T00:00:00+00:00,\"camp,1\",\"pub \"\"q\"\"\",4,0.25,1\r\n"
                           "2026-12-03T00:00:00+00:00,camp-2,\"line\nbreak\",0,,1\r\n");
    cd_rindex_destroy(ix);
}

static void test_cd_rindex_put__contract_violations(void **state)
{
    (void)state;
    cd_rindex_t *ix = cd_rindex_new();
    put(ix, "{\"c\":\"a\",\"cr\":\"\",\"p\":\"\",\"pl\":\"\",\"k\":1}", -1); /* no h */
    put(ix, "{\"h\":{\"$date\":\"2026-12-03T10:30:00Z\"},\"c\":\"a\",\"cr\":\"\",\"p\":\"\",\"pl\":\"\",\"k\":1}", -1);
    put(ix, "{\"h\":{\"$date\":\"2026-12-03T10:00:00Z\"},\"c\":\"a\",\"cr\":\"\",\"p\":\"\",\"pl\":\"\",\"k\":1,"
            "\"imp\":-1}",
        -1);
    put(ix, "{\"h\":{\"$date\":\"2026-12-03T10:00:00Z\"},\"c\":\"a\",\"cr\":\"\",\"p\":\"\",\"pl\":\"\",\"k\":1,"
            "\"u\":{\"5000\":1}}",
        -1);
    put(ix, "{\"h\":{\"$date\":\"2026-12-03T10:00:00Z\"},\"c\":\"a\",\"cr\":\"\",\"p\":\"\",\"pl\":\"\",\"k\":1,"
            "\"imp\":\"5\"}",
        -1);
    assert_int_equal(cd_rindex_count(ix), 0);
    put(ix, "{\"h\":{\"$date\":\"2026-12-03T10:00:00Z\"},\"c\":\"\",\"cr\":\"\",\"p\":\"\",\"pl\":\"\",\"k\":-1,"
            "\"rejected\":3}",
        1);
    assert_int_equal(cd_rindex_count(ix), 1);
    cd_rindex_destroy(ix);
}

static void test_cd_rindex_hll_estimate__matches_at_hll(void **state)
{
    (void)state;
    at_hll_t h;
    at_hll_clear(&h);
    char uid[32];
    for (int n = 0; n < 20000; n++) {
        snprintf(uid, sizeof(uid), "user-%d", n);
        at_hll_add(&h, uid, strlen(uid));
        if (n == 0 || n == 10 || n == 1000 || n == 5000 || n == 19999) {
            uint32_t hist[AT_HLL_RANK_MAX + 1] = {0};
            for (size_t i = 0; i < AT_HLL_REGISTERS; i++)
                hist[h.reg[i]]++;
            double a = at_hll_estimate(&h), b = cd_rindex_hll_estimate(hist);
            assert_true(fabs(a - b) <= 1e-9 * a);
        }
    }
}

/* Many documents in one group (past the sparse form's limit) and many groups: uniques equal
 * at_hll's estimate of the registers merged directly. */
static void test_cd_rindex_query__uniques_equal_a_direct_merge(void **state)
{
    (void)state;
    cd_rindex_t *ix = cd_rindex_new();
    at_hll_t all, camp0;
    at_hll_clear(&all);
    at_hll_clear(&camp0);
    unsigned seed = 7;
    for (int h = 0; h < 24; h++) {
        for (int c = 0; c < 40; c++) {
            for (int k = 0; k < 32; k++) { /* camp-0: 24 * 32 documents of 6 registers, 4608 > SPARSE_MAX */
                if (c > 0 && k > 0)
                    continue;
                char u[256], hour[16], camp[16];
                size_t o = 0;
                o += (size_t)snprintf(u + o, sizeof(u) - o, "{");
                for (int r = 0; r < 6; r++) {
                    seed = seed * 1103515245u + 12345u;
                    uint32_t idx = (seed >> 8) % AT_HLL_REGISTERS;
                    uint8_t rank = (uint8_t)(1 + (seed >> 20) % 12);
                    o += (size_t)snprintf(u + o, sizeof(u) - o, "%s\"%u\":%u", r ? "," : "", idx, rank);
                    at_hll_set(&all, idx, rank);
                    if (c == 0)
                        at_hll_set(&camp0, idx, rank);
                }
                snprintf(u + o, sizeof(u) - o, "}");
                snprintf(hour, sizeof(hour), "2026-12-03T%02d", h);
                snprintf(camp, sizeof(camp), "camp-%d", c);
                put_doc(ix, hour, camp, "cr", "p", k, 1, 0, 0, 0, u, "2026-12-04T00:00:00Z");
            }
        }
    }
    const char *j = report(ix, "from=2026-12-03&to=2026-12-04&group_by=campaign&metrics=uniques");
    char want[128];
    snprintf(want, sizeof(want), "\"campaign\":\"camp-0\",\"uniques\":%lld}", llround(at_hll_estimate(&camp0)));
    if (strstr(j, want) == NULL)
        fail_msg("want %s in %.300s", want, j);
    snprintf(want, sizeof(want), "\"totals\":{\"uniques\":%lld}", llround(at_hll_estimate(&all)));
    assert_non_null(strstr(j, want));
    assert_true(at_hll_estimate(&camp0) > 1000);
    cd_rindex_destroy(ix);
}

static int teardown(void **state)
{
    (void)state;
    cd_tzcache_free(&tzc);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cd_rquery_parse__defaults_and_forms),
        cmocka_unit_test(test_cd_rquery_parse__every_400),
        cmocka_unit_test(test_cd_rindex_query__sums_over_partitions_and_versions),
        cmocka_unit_test(test_cd_rindex_query__days_in_a_zone_with_dst),
        cmocka_unit_test(test_cd_rindex_query__groups_sorted_nulls_and_uniques),
        cmocka_unit_test(test_cd_rquery_render__csv_quoting),
        cmocka_unit_test(test_cd_rindex_put__contract_violations),
        cmocka_unit_test(test_cd_rindex_hll_estimate__matches_at_hll),
        cmocka_unit_test(test_cd_rindex_query__uniques_equal_a_direct_merge),
    };
    return cmocka_run_group_tests(tests, NULL, teardown);
}
