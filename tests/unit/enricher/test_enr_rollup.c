/* Unit tests for enricher/enr_rollup.c: the _id and document shape, the offset gate
 * (redelivered batches cut elsewhere, wholly counted batches, partitions, late events),
 * where rejected events count, unique users, and the file store (rebuild from its lines,
 * torn tail, the reconciliation file ignored, documents dropped from memory and read back).
 * The gate is the same code for the MongoDB store; tests/it/test_rollup.c runs that one
 * against FerretDB. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "enr_rollup.h"

/* 2026-12-03T17:00:00Z */
#define H17 INT64_C(1796317200000)
#define HOUR INT64_C(3600000)

static char *fresh_dir(void)
{
    char tmpl[] = "/tmp/enr-rollup-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void rm_dir(char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[512];
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        unlink(p);
    }
    if (d != NULL)
        closedir(d);
    rmdir(dir);
    free(dir);
}

static at_str_t S(const char *s)
{
    return (at_str_t){s, s != NULL ? strlen(s) : 0};
}

/* A valid impression of camp-1/cr-9/pub-1/top at @p ts, partition @p k, offset @p off. */
static enr_rollup_event_t imp(int32_t k, int64_t off, int64_t ts, const char *uid)
{
    return (enr_rollup_event_t){.k = k, .offset = off, .has_ts = true, .ts_ms = ts, .type = AT_EV_IMP,
                                .c = S("camp-1"), .cr = S("cr-9"), .p = S("pub-1"), .pl = S("top"),
                                .adv = S("adv-1"), .uid = S(uid), .price_micros = 2};
}

/* Adds offsets [from, to] of partition @p k (impressions at H17 + 10 min) and commits. */
static enr_rollup_result_t run(enr_rollup_t *r, int32_t k, int64_t from, int64_t to)
{
    at_err_t err;
    enr_rollup_result_t res;
    enr_rollup_begin(r);
    for (int64_t o = from; o <= to; o++) {
        enr_rollup_event_t ev = imp(k, o, H17 + 600000, NULL);
        assert_int_equal(enr_rollup_add(r, &ev, &err), 0);
    }
    assert_int_equal(enr_rollup_commit(r, H17 + HOUR, &res, &err), 0);
    return res;
}

static off_t file_size(const char *dir, int seq)
{
    char p[512];
    struct stat st;
    snprintf(p, sizeof(p), "%s/stats_hourly-%d.jsonl", dir, seq);
    return stat(p, &st) == 0 ? st.st_size : -1;
}

static const char *ID0 = "2026-12-03T17|camp-1|cr-9|pub-1|top|0";

static void test_enr_rollup_format_id__shape(void **state)
{
    (void)state;
    char id[300];
    size_t n = enr_rollup_format_id(id, sizeof(id), H17 + 59 * 60000 + 59999, S("camp-1"), S("cr-9"), S("pub-1"),
                                    S("top"), 7);
    assert_string_equal(id, "2026-12-03T17|camp-1|cr-9|pub-1|top|7");
    assert_int_equal(n, strlen(id));
    enr_rollup_format_id(id, sizeof(id), H17 + HOUR, S(NULL), S(NULL), S(NULL), S(NULL), 0);
    assert_string_equal(id, "2026-12-03T18|||||0");
    /* floor, not truncation, before 1970 */
    assert_int_equal(enr_rollup_hour_ms(-1), -HOUR);
    enr_rollup_format_id(id, sizeof(id), -1, S("c"), S(NULL), S(NULL), S(NULL), 12);
    assert_string_equal(id, "1969-12-31T23|c||||12");
    assert_int_equal(enr_rollup_format_id(id, 20, H17, S("camp-1"), S("cr-9"), S("pub-1"), S("top"), 7), 0);
}

static void test_enr_rollup_gate__redelivery_cut_elsewhere(void **state)
{
    (void)state;
    char *dir = fresh_dir();
    at_err_t err;
    enr_rollup_t *r = enr_rollup_file_new(dir, 1 << 20, 3, &err);
    assert_non_null(r);
    enr_rollup_result_t res = run(r, 0, 0, 9);
    assert_int_equal(res.documents, 1);
    assert_int_equal(res.gate_skips, 0);
    /* The same messages again, cut at another place: 5..14. */
    res = run(r, 0, 5, 14);
    assert_int_equal(res.gate_skips, 5);
    enr_rollup_counts_t n;
    int64_t o;
    assert_true(enr_rollup_file_peek(r, ID0, &n, NULL, &o));
    assert_int_equal(n.imp, 15);
    assert_int_equal(n.spend, 30);
    assert_int_equal(o, 14);
    enr_rollup_destroy(r);
    rm_dir(dir);
}

static void test_enr_rollup_gate__batch_wholly_counted(void **state)
{
    (void)state;
    char *dir = fresh_dir();
    at_err_t err;
    enr_rollup_t *r = enr_rollup_file_new(dir, 1 << 20, 3, &err);
    run(r, 0, 0, 9);
    off_t before = file_size(dir, 1);
    enr_rollup_result_t res = run(r, 0, 0, 9);
    assert_int_equal(res.documents, 0);
    assert_int_equal(res.gate_skips, 10);
    assert_int_equal(file_size(dir, 1), before); /* nothing written */
    enr_rollup_counts_t n;
    assert_true(enr_rollup_file_peek(r, ID0, &n, NULL, NULL));
    assert_int_equal(n.imp, 10);
    enr_rollup_destroy(r);
    rm_dir(dir);
}

static void test_enr_rollup_gate__two_partitions_one_dimension_set(void **state)
{
    (void)state;
    char *dir = fresh_dir();
    at_err_t err;
    enr_rollup_t *r = enr_rollup_file_new(dir, 1 << 20, 3, &err);
    /* Offsets of different partitions are unrelated: the same numbers must both count. */
    enr_rollup_begin(r);
    for (int64_t o = 0; o < 5; o++) {
        enr_rollup_event_t a = imp(0, o, H17, NULL), b = imp(1, o, H17, NULL);
        assert_int_equal(enr_rollup_add(r, &a, &err), 0);
        assert_int_equal(enr_rollup_add(r, &b, &err), 0);
    }
    enr_rollup_result_t res;
    assert_int_equal(enr_rollup_commit(r, H17, &res, &err), 0);
    assert_int_equal(res.documents, 2);
    res = run(r, 1, 3, 7); /* partition 1 redelivered from 3: 5..7 are new */
    assert_int_equal(res.gate_skips, 2);
    enr_rollup_counts_t n0, n1;
    assert_true(enr_rollup_file_peek(r, ID0, &n0, NULL, NULL));
    assert_true(enr_rollup_file_peek(r, "2026-12-03T17|camp-1|cr-9|pub-1|top|1", &n1, NULL, NULL));
    assert_int_equal(n0.imp, 5);
    assert_int_equal(n1.imp, 8);
    enr_rollup_destroy(r);
    rm_dir(dir);
}

static void test_enr_rollup_add__rejected_reason_placement(void **state)
{
    (void)state;
    char *dir = fresh_dir();
    at_err_t err;
    enr_rollup_t *r = enr_rollup_file_new(dir, 1 << 20, 3, &err);
    enr_rollup_begin(r);
    enr_rollup_event_t bot = imp(0, 1, H17, "u1"), unknown = imp(0, 2, H17, "u2"), torn = imp(0, 3, H17, NULL),
                       inactive = imp(0, 4, H17, NULL), click = imp(0, 5, H17, NULL);
    bot.reason = AT_REJ_BOT;
    inactive.reason = AT_REJ_CAMPAIGN_INACTIVE;
    unknown.reason = AT_REJ_UNKNOWN_CAMPAIGN;
    unknown.c = S("made-up");
    unknown.adv = S(NULL);
    torn.reason = AT_REJ_MALFORMED_JSON;
    torn.has_ts = false; /* no hour: not counted */
    click.type = AT_EV_CLICK;
    click.price_micros = 700;
    click.payout_micros = 0;
    enr_rollup_event_t all[] = {bot, unknown, torn, inactive, click};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(enr_rollup_add(r, &all[i], &err), 0);
    enr_rollup_result_t res;
    assert_int_equal(enr_rollup_commit(r, H17, &res, &err), 0);
    assert_int_equal(res.documents, 2);
    enr_rollup_counts_t own, none;
    at_hll_t users;
    assert_true(enr_rollup_file_peek(r, ID0, &own, &users, NULL));
    assert_int_equal(at_hll_used(&users), 0); /* the bot's uid is not a unique user */
    assert_int_equal(own.rejected, 2);
    assert_int_equal(own.rej[AT_REJ_BOT], 1);
    assert_int_equal(own.rej[AT_REJ_CAMPAIGN_INACTIVE], 1);
    assert_int_equal(own.click, 1);
    assert_int_equal(own.imp, 0); /* rejected events are not impressions */
    assert_int_equal(own.spend, 700);
    assert_true(enr_rollup_file_peek(r, "2026-12-03T17|||||0", &none, NULL, NULL));
    assert_int_equal(none.rejected, 1);
    assert_int_equal(none.rej[AT_REJ_UNKNOWN_CAMPAIGN], 1);
    assert_false(enr_rollup_file_peek(r, "2026-12-03T17|made-up|cr-9|pub-1|top|0", NULL, NULL, NULL));
    assert_true(enr_rollup_reason_keeps_dims(AT_REJ_BUDGET_EXHAUSTED));
    assert_true(enr_rollup_reason_keeps_dims(AT_REJ_DUPLICATE_ORDER));
    assert_true(enr_rollup_reason_keeps_dims(AT_REJ_WRONG_ADVERTISER));
    assert_true(enr_rollup_reason_keeps_dims(AT_REJ_UNKNOWN_PUBLISHER));
    assert_true(enr_rollup_reason_keeps_dims(AT_REJ_PUBLISHER_NOT_ALLOWED));
    assert_false(enr_rollup_reason_keeps_dims(AT_REJ_DUPLICATE));
    assert_false(enr_rollup_reason_keeps_dims(AT_REJ_MALFORMED_ENVELOPE));
    enr_rollup_destroy(r);
    rm_dir(dir);
}

static void test_enr_rollup_add__late_event_in_its_own_hour(void **state)
{
    (void)state;
    char *dir = fresh_dir();
    at_err_t err;
    enr_rollup_t *r = enr_rollup_file_new(dir, 1 << 20, 3, &err);
    enr_rollup_begin(r);
    enr_rollup_event_t now = imp(0, 10, H17 + 2 * HOUR, NULL), late = imp(0, 11, H17 + 5, NULL),
                       later = imp(0, 12, H17 + 2 * HOUR + 1, NULL);
    assert_int_equal(enr_rollup_add(r, &now, &err), 0);
    assert_int_equal(enr_rollup_add(r, &late, &err), 0);
    assert_int_equal(enr_rollup_add(r, &later, &err), 0);
    enr_rollup_result_t res;
    assert_int_equal(enr_rollup_commit(r, H17, &res, &err), 0);
    enr_rollup_counts_t a, b;
    int64_t oa, ob;
    assert_true(enr_rollup_file_peek(r, ID0, &a, NULL, &oa));
    assert_true(enr_rollup_file_peek(r, "2026-12-03T19|camp-1|cr-9|pub-1|top|0", &b, NULL, &ob));
    assert_int_equal(a.imp, 1);
    assert_int_equal(b.imp, 2);
    assert_int_equal(oa, 11);
    assert_int_equal(ob, 12);
    /* The hour-17 document's gate is its own: offset 10 of that partition was never its
     * event, so a redelivery of 10..12 adds nothing anywhere. */
    enr_rollup_begin(r);
    assert_int_equal(enr_rollup_add(r, &now, &err), 0);
    assert_int_equal(enr_rollup_add(r, &late, &err), 0);
    assert_int_equal(enr_rollup_add(r, &later, &err), 0);
    assert_int_equal(enr_rollup_commit(r, H17, &res, &err), 0);
    assert_int_equal(res.documents, 0);
    assert_int_equal(res.gate_skips, 3);
    enr_rollup_destroy(r);
    rm_dir(dir);
}

static void test_enr_rollup_users__hll_merge_across_partitions(void **state)
{
    (void)state;
    char *dir = fresh_dir();
    at_err_t err;
    enr_rollup_t *r = enr_rollup_file_new(dir, 1 << 20, 3, &err);
    enr_rollup_begin(r);
    /* 3000 users; users 1000-1999 appear on both partitions. */
    for (int i = 0; i < 4000; i++) {
        char uid[32];
        int user = i < 2000 ? i : i - 1000;
        snprintf(uid, sizeof(uid), "user-%d", user);
        enr_rollup_event_t ev = imp(i < 2000 ? 0 : 1, i, H17, uid);
        assert_int_equal(enr_rollup_add(r, &ev, &err), 0);
    }
    enr_rollup_result_t res;
    assert_int_equal(enr_rollup_commit(r, H17, &res, &err), 0);
    at_hll_t u0, u1;
    assert_true(enr_rollup_file_peek(r, ID0, NULL, &u0, NULL));
    assert_true(enr_rollup_file_peek(r, "2026-12-03T17|camp-1|cr-9|pub-1|top|1", NULL, &u1, NULL));
    at_hll_merge(&u0, &u1);
    double est = at_hll_estimate(&u0), se = 1.04 / sqrt(2048.0);
    assert_true(fabs(est - 3000.0) <= 3 * se * 3000.0);
    enr_rollup_destroy(r);
    rm_dir(dir);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "a");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_enr_rollup_file__rebuild_torn_tail_and_corrections(void **state)
{
    (void)state;
    char *dir = fresh_dir();
    at_err_t err;
    enr_rollup_t *r = enr_rollup_file_new(dir, 1 << 20, 3, &err);
    run(r, 0, 0, 9);
    run(r, 0, 10, 19);
    enr_rollup_destroy(r);
    off_t good = file_size(dir, 1);
    write_file(dir, "stats_hourly-1.jsonl", "{ \"_id\" : \"2026-12-03T17|camp-1|cr-9|pub-1|top|0\", \"h\" : ");
    /* The reconciliation command's file is not ours: a k = -1 correction must not load. */
    write_file(dir, "stats_hourly-corrections.jsonl", "{ \"_id\" : \"x\" }\n");
    r = enr_rollup_file_new(dir, 1 << 20, 3, &err);
    assert_non_null(r);
    assert_int_equal(file_size(dir, 1), good); /* torn tail cut */
    enr_rollup_counts_t n;
    int64_t o;
    assert_true(enr_rollup_file_peek(r, ID0, &n, NULL, &o));
    assert_int_equal(n.imp, 20);
    assert_int_equal(o, 19);
    enr_rollup_result_t res = run(r, 0, 15, 24); /* after the restart, the gate still holds */
    assert_int_equal(res.gate_skips, 5);
    assert_true(enr_rollup_file_peek(r, ID0, &n, NULL, NULL));
    assert_int_equal(n.imp, 25);
    enr_rollup_destroy(r);
    /* A line that is not a rollup document is an error naming the file and line. */
    write_file(dir, "stats_hourly-1.jsonl", "{ \"_id\" : \"y\", \"h\" : 3 }\n");
    r = enr_rollup_file_new(dir, 1 << 20, 3, &err);
    assert_null(r);
    assert_non_null(strstr(err.msg, "stats_hourly-1.jsonl line 4"));
    assert_non_null(strstr(err.msg, "h: expected a date"));
    rm_dir(dir);
}

static void test_enr_rollup_file__rotation_and_reload_of_dropped_hours(void **state)
{
    (void)state;
    char *dir = fresh_dir();
    at_err_t err;
    enr_rollup_t *r = enr_rollup_file_new(dir, 1024, 1, &err); /* keep 1 hour: drop eagerly */
    at_hll_t before;
    enr_rollup_begin(r);
    for (int i = 0; i < 50; i++) {
        char uid[16];
        snprintf(uid, sizeof(uid), "u%d", i);
        enr_rollup_event_t ev = imp(0, i, H17, uid);
        assert_int_equal(enr_rollup_add(r, &ev, &err), 0);
    }
    enr_rollup_result_t res;
    assert_int_equal(enr_rollup_commit(r, H17, &res, &err), 0);
    assert_true(enr_rollup_file_peek(r, ID0, NULL, &before, NULL));
    size_t known, loaded;
    /* Many hours later, with enough lines to rotate the 1 KB file a few times. */
    int64_t off = 100;
    for (int hour = 1; hour <= 8; hour++) {
        enr_rollup_begin(r);
        enr_rollup_event_t ev = imp(0, off++, H17 + hour * HOUR, NULL);
        assert_int_equal(enr_rollup_add(r, &ev, &err), 0);
        assert_int_equal(enr_rollup_commit(r, H17, &res, &err), 0);
    }
    enr_rollup_file_sizes(r, &known, &loaded);
    assert_int_equal(known, 9);
    assert_true(loaded <= 3);
    assert_true(file_size(dir, 2) > 0); /* rotated */
    /* A late event for hour 17 reads its document back and adds to it. */
    enr_rollup_begin(r);
    enr_rollup_event_t late = imp(0, off++, H17 + 1, "late-user");
    assert_int_equal(enr_rollup_add(r, &late, &err), 0);
    assert_int_equal(enr_rollup_commit(r, H17, &res, &err), 0);
    enr_rollup_counts_t n;
    at_hll_t after;
    assert_true(enr_rollup_file_peek(r, ID0, &n, &after, NULL));
    assert_int_equal(n.imp, 51);
    at_hll_add(&before, "late-user", 9);
    assert_memory_equal(before.reg, after.reg, sizeof(before.reg));
    enr_rollup_destroy(r);
    /* And the same after a restart from the rotated files. */
    r = enr_rollup_file_new(dir, 1024, 1, &err);
    assert_non_null(r);
    assert_true(enr_rollup_file_peek(r, ID0, &n, NULL, NULL));
    assert_int_equal(n.imp, 51);
    enr_rollup_destroy(r);
    rm_dir(dir);
}

/* The stored document, field by field, as docs/REPORTS.md shows it. */
static void test_enr_rollup_file__document_shape(void **state)
{
    (void)state;
    char *dir = fresh_dir();
    at_err_t err;
    enr_rollup_t *r = enr_rollup_file_new(dir, 1 << 20, 3, &err);
    enr_rollup_begin(r);
    enr_rollup_event_t a = imp(7, 123456, H17 + 5, "u-1"), b = imp(7, 123450, H17 + 9, NULL);
    b.type = AT_EV_CONV;
    b.price_micros = 0;
    b.payout_micros = 250000;
    assert_int_equal(enr_rollup_add(r, &b, &err), 0);
    assert_int_equal(enr_rollup_add(r, &a, &err), 0);
    enr_rollup_result_t res;
    assert_int_equal(enr_rollup_commit(r, H17 + 42 * 60000 + 10311, &res, &err), 0);
    enr_rollup_destroy(r);
    char p[512], line[4096];
    snprintf(p, sizeof(p), "%s/stats_hourly-1.jsonl", dir);
    FILE *f = fopen(p, "r");
    assert_non_null(fgets(line, sizeof(line), f));
    fclose(f);
    uint32_t reg;
    uint8_t rank;
    at_hll_hash("u-1", 3, &reg, &rank);
    char want[1024];
    snprintf(want, sizeof(want),
             "{ \"_id\" : \"2026-12-03T17|camp-1|cr-9|pub-1|top|7\", \"h\" : { \"$date\" : \"2026-12-03T17:00:00Z\" }, "
             "\"c\" : \"camp-1\", \"adv\" : \"adv-1\", \"cr\" : \"cr-9\", \"p\" : \"pub-1\", \"pl\" : \"top\", "
             "\"k\" : 7, \"o\" : 123456, \"imp\" : 1, \"view\" : 0, \"click\" : 0, \"conv\" : 1, \"spend\" : 2, "
             "\"payout\" : 250000, \"rejected\" : 0, \"rej\" : {  }, \"u\" : { \"%u\" : %u }, "
             "\"mt\" : { \"$date\" : \"2026-12-03T17:42:10.311Z\" } }\n",
             reg, rank);
    assert_string_equal(line, want);
    rm_dir(dir);
}

/* The lines are written by hand (render_line), not by libbson: each must be exactly what
 * libbson writes for the same document (rejected reasons, thousands of registers, an
 * advertiser that needs escapes, a document read back and grown after a restart). */
static void test_enr_rollup_file__lines_are_libbson_bytes(void **state)
{
    (void)state;
    char *dir = fresh_dir();
    at_err_t err;
    enr_rollup_t *r = enr_rollup_file_new(dir, 1 << 20, 3, &err);
    for (int round = 0; round < 2; round++) {
        if (round == 1) {
            enr_rollup_destroy(r);
            r = enr_rollup_file_new(dir, 1 << 20, 3, &err);
            assert_non_null(r);
        }
        enr_rollup_begin(r);
        for (int i = 0; i < 6000; i++) {
            char uid[32];
            snprintf(uid, sizeof(uid), "user-%d-%d", round, i);
            enr_rollup_event_t ev = imp(i % 3, round * 10000 + i, H17 + i, uid);
            ev.adv = S("adv \"quoted\" \\ tab\t caf\xc3\xa9");
            if (i % 7 == 0)
                ev.reason = i % 2 ? AT_REJ_BOT : AT_REJ_PUBLISHER_NOT_ALLOWED;
            if (i % 11 == 0)
                ev.type = AT_EV_CONV, ev.payout_micros = -5; /* negative numbers too */
            assert_int_equal(enr_rollup_add(r, &ev, &err), 0);
        }
        enr_rollup_result_t res;
        assert_int_equal(enr_rollup_commit(r, H17 + 7, &res, &err), 0);
        assert_int_equal(res.documents, 3);
    }
    enr_rollup_destroy(r);
    char p[512];
    snprintf(p, sizeof(p), "%s/stats_hourly-1.jsonl", dir);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int lines = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        bson_error_t e;
        bson_t *b = bson_new_from_json((const uint8_t *)line, len - 1, &e);
        assert_non_null(b);
        char *again = bson_as_relaxed_extended_json(b, NULL);
        line[len - 1] = '\0';
        assert_string_equal(line, again);
        bson_free(again);
        bson_destroy(b);
        lines++;
    }
    free(line);
    fclose(f);
    assert_int_equal(lines, 6);
    rm_dir(dir);
}

static void test_enr_rollup_payout__from_line_and_bson(void **state)
{
    (void)state;
    const char *line = "{ \"_id\" : \"x\", \"tag\" : \"\\\"payout_micros\\\" : 9\", \"payout_micros\" : 1250, "
                       "\"device\" : \"desktop\" }";
    assert_int_equal(enr_rollup_payout_line(line, strlen(line)), 1250);
    assert_int_equal(enr_rollup_payout_line("{ \"_id\" : \"x\" }", 15), 0);
    bson_t *b = BCON_NEW("_id", "x", "payout_micros", BCON_INT64(77));
    assert_int_equal(enr_rollup_payout_bson(b), 77);
    bson_destroy(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enr_rollup_format_id__shape),
        cmocka_unit_test(test_enr_rollup_gate__redelivery_cut_elsewhere),
        cmocka_unit_test(test_enr_rollup_gate__batch_wholly_counted),
        cmocka_unit_test(test_enr_rollup_gate__two_partitions_one_dimension_set),
        cmocka_unit_test(test_enr_rollup_add__rejected_reason_placement),
        cmocka_unit_test(test_enr_rollup_add__late_event_in_its_own_hour),
        cmocka_unit_test(test_enr_rollup_users__hll_merge_across_partitions),
        cmocka_unit_test(test_enr_rollup_file__rebuild_torn_tail_and_corrections),
        cmocka_unit_test(test_enr_rollup_file__rotation_and_reload_of_dropped_hours),
        cmocka_unit_test(test_enr_rollup_file__document_shape),
        cmocka_unit_test(test_enr_rollup_file__lines_are_libbson_bytes),
        cmocka_unit_test(test_enr_rollup_payout__from_line_and_bson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
