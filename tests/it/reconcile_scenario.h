/*
 * reconcile_scenario.h: the scenario both reconciliation tests run (test_reconcile_ferretdb.c
 * against FerretDB, test_reconcile_files.c against file sinks), through a small backend that
 * stores documents its own way. Included by those two files only (static functions).
 *
 * Hours 2026-11-20T09 to T12; the range checked is [T10, T12). The test builds the
 * stats_hourly documents itself from its event list, per docs/REPORTS.md (one document per
 * group and partition k), independently of cli/rec_tally.c. Then:
 *  1. matching rollups: exit 0, no drift;
 *  2. deliberate drift: a missing document (camp-b's k = 3), a doubled count (camp-a's k = 0
 *     imp), a wrong spend (camp-c), a drifted rejected reason (unknown_campaign under the
 *     empty dimensions), a late event in an earlier hour (camp-d, T10, after its rollups):
 *     exit 1, each group and field named with rollup and recount;
 *  3. --repair: exit 0, five corrections; again: exit 0, no drift; --repair again writes none;
 *  4. outside the range: T09 (seeded with a wrong document on purpose) still drifts as
 *     before, T12 still matches.
 */
#ifndef RECONCILE_SCENARIO_H
#define RECONCILE_SCENARIO_H

#include <bson/bson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "at_hll.h"
#include "at_test_support.h"

#define RS_T09 INT64_C(1795165200000) /* 2026-11-20T09:00:00Z */
#define RS_HOUR INT64_C(3600000)

typedef struct rs_backend_s {
    /* Stores valid events ("events") or rejected ones ("rejected"). */
    void (*put)(void *ctx, const char *coll, bson_t *const *docs, size_t n);
    /* Replaces every stats_hourly document the test wrote (not the corrections) with these. */
    void (*put_stats)(void *ctx, bson_t *const *docs, size_t n);
    /* Checks what the store holds outside the range after the repairs. */
    void (*check_outside)(void *ctx);
    const char *store_args[6]; /* e.g. "--mongo", uri, NULL */
    void *ctx;
} rs_backend_t;

/* One event of the scenario. */
typedef struct rs_event_s {
    int hour; /* 9..12 */
    int minute;
    const char *c, *cr, *p, *pl, *e;
    int64_t price, payout;
    char uid[32];
    int k;
    const char *reason; /* NULL: a valid event */
} rs_event_t;

#define RS_MAX_EVENTS 128
typedef struct rs_world_s {
    rs_event_t ev[RS_MAX_EVENTS];
    size_t n;
} rs_world_t;

static rs_event_t *rs_add(rs_world_t *w, int hour, int minute, const char *c, const char *cr, const char *p,
                          const char *pl, const char *e, int64_t price, const char *uid, int k)
{
    assert_true(w->n < RS_MAX_EVENTS);
    rs_event_t *x = &w->ev[w->n++];
    *x = (rs_event_t){.hour = hour, .minute = minute, .c = c, .cr = cr, .p = p, .pl = pl, .e = e, .price = price, .k = k};
    snprintf(x->uid, sizeof(x->uid), "%s", uid ? uid : "");
    return x;
}

static void rs_world_build(rs_world_t *w)
{
    char uid[32];
    w->n = 0;
    for (int i = 0; i < 20; i++) { /* camp-a, T10: 10 users twice, partitions 0 and 3 */
        snprintf(uid, sizeof(uid), "ua-%d", i % 10);
        rs_add(w, 10, i, "camp-a", "cr-1", "pub-1", "top", "imp", 1000, uid, i < 10 ? 0 : 3);
    }
    for (int i = 0; i < 4; i++) {
        snprintf(uid, sizeof(uid), "ua-%d", i);
        rs_add(w, 10, 30 + i, "camp-a", "cr-1", "pub-1", "top", "click", 50000, uid, 0);
    }
    for (int i = 0; i < 10; i++) { /* camp-b, T11, no creative or placement */
        snprintf(uid, sizeof(uid), "ub-%d", i);
        rs_add(w, 11, i, "camp-b", "", "pub-2", "", "imp", 2000, uid, i % 2 ? 3 : 0);
    }
    for (int i = 0; i < 2; i++) {
        snprintf(uid, sizeof(uid), "ub-%d", i);
        rs_add(w, 11, 40 + i, "camp-b", "", "pub-2", "", "conv", 0, uid, 0)->payout = 5000;
    }
    for (int i = 0; i < 6; i++) {
        snprintf(uid, sizeof(uid), "uc-%d", i);
        rs_add(w, 11, 20 + i, "camp-c", "cr-2", "pub-1", "side", "imp", 3000, uid, 1);
    }
    for (int i = 0; i < 5; i++) {
        snprintf(uid, sizeof(uid), "ud-%d", i);
        rs_add(w, 10, 10 + i, "camp-d", "cr-3", "pub-3", "top", "imp", 1500, uid, 2);
    }
    rs_add(w, 10, 45, "camp-d", "cr-3", "pub-3", "top", "imp", 1500, NULL, 2); /* no uid (DNT) */
    for (int i = 0; i < 3; i++) /* bots keep camp-a's dimensions */
        rs_add(w, 10, 50 + i, "camp-a", "cr-1", "pub-1", "top", "imp", 0, "ubot", 0)->reason = "bot";
    for (int i = 0; i < 2; i++) /* an unknown campaign counts under the empty dimensions */
        rs_add(w, 10, 55 + i, "camp-zz", "cr-9", "pub-1", "top", "imp", 0, NULL, 1)->reason = "unknown_campaign";
    for (int i = 0; i < 4; i++) /* outside the range: T09 and T12 */
        rs_add(w, 9, i, "camp-a", "cr-1", "pub-1", "top", "imp", 1000, "ua-0", 0);
    for (int i = 0; i < 2; i++)
        rs_add(w, 12, i, "camp-a", "cr-1", "pub-1", "top", "imp", 1000, "ua-1", 0);
}

static void rs_hour_str(int hour, char out[16])
{
    snprintf(out, 16, "2026-11-20T%02d", hour);
}

static bson_t *rs_event_doc(const rs_event_t *x, size_t seq)
{
    bson_t *d = bson_new();
    char id[64];
    snprintf(id, sizeof(id), "%s-%04zu", x->reason ? "rej" : "ev", seq);
    BSON_APPEND_UTF8(d, "_id", id);
    BSON_APPEND_INT32(d, "v", 1);
    BSON_APPEND_DATE_TIME(d, "ts", RS_T09 + (x->hour - 9) * RS_HOUR + x->minute * 60000 + 123);
    BSON_APPEND_UTF8(d, "e", x->e);
    BSON_APPEND_UTF8(d, "c", x->c);
    if (x->cr[0])
        BSON_APPEND_UTF8(d, "cr", x->cr);
    BSON_APPEND_UTF8(d, "p", x->p);
    if (x->pl[0])
        BSON_APPEND_UTF8(d, "pl", x->pl);
    if (x->uid[0])
        BSON_APPEND_UTF8(d, "uid", x->uid);
    if (x->reason) {
        BSON_APPEND_UTF8(d, "reason", x->reason);
        BSON_APPEND_UTF8(d, "detail", "test");
    } else {
        BSON_APPEND_UTF8(d, "advertiser", "adv-1");
        BSON_APPEND_INT64(d, "price_micros", x->price);
        if (x->payout)
            BSON_APPEND_INT64(d, "payout_micros", x->payout);
    }
    return d;
}

/* The test's own rollup of one (hour, dims, k). */
typedef struct rs_roll_s {
    char id[160];
    int hour;
    const char *c, *cr, *p, *pl;
    int k;
    int64_t imp, view, click, conv, spend, payout, rejected, bot, unknown_campaign;
    at_hll_t u;
} rs_roll_t;

#define RS_MAX_ROLLS 32
typedef struct rs_rolls_s {
    rs_roll_t r[RS_MAX_ROLLS];
    size_t n;
} rs_rolls_t;

static rs_roll_t *rs_roll_of(rs_rolls_t *rs, const rs_event_t *x)
{
    bool own = x->reason == NULL || strcmp(x->reason, "bot") == 0;
    const char *c = own ? x->c : "", *cr = own ? x->cr : "", *p = own ? x->p : "", *pl = own ? x->pl : "";
    char hour[16], id[160];
    rs_hour_str(x->hour, hour);
    snprintf(id, sizeof(id), "%s|%s|%s|%s|%s|%d", hour, c, cr, p, pl, x->k);
    for (size_t i = 0; i < rs->n; i++)
        if (strcmp(rs->r[i].id, id) == 0)
            return &rs->r[i];
    assert_true(rs->n < RS_MAX_ROLLS);
    rs_roll_t *r = &rs->r[rs->n++];
    memset(r, 0, sizeof(*r));
    snprintf(r->id, sizeof(r->id), "%s", id);
    r->hour = x->hour;
    r->c = c, r->cr = cr, r->p = p, r->pl = pl, r->k = x->k;
    return r;
}

static void rs_rollup(const rs_world_t *w, size_t nevents, rs_rolls_t *rs)
{
    rs->n = 0;
    for (size_t i = 0; i < nevents; i++) {
        const rs_event_t *x = &w->ev[i];
        rs_roll_t *r = rs_roll_of(rs, x);
        if (x->reason) {
            r->rejected++;
            if (strcmp(x->reason, "bot") == 0)
                r->bot++;
            else
                r->unknown_campaign++;
            continue;
        }
        if (strcmp(x->e, "imp") == 0)
            r->imp++;
        else if (strcmp(x->e, "click") == 0)
            r->click++;
        else if (strcmp(x->e, "conv") == 0)
            r->conv++;
        r->spend += x->price;
        r->payout += x->payout;
        if (x->uid[0])
            at_hll_add(&r->u, x->uid, strlen(x->uid));
    }
}

static bson_t *rs_roll_doc(const rs_roll_t *r)
{
    bson_t *d = bson_new(), rej;
    BSON_APPEND_UTF8(d, "_id", r->id);
    BSON_APPEND_DATE_TIME(d, "h", RS_T09 + (r->hour - 9) * RS_HOUR);
    BSON_APPEND_UTF8(d, "c", r->c);
    BSON_APPEND_UTF8(d, "adv", r->c[0] ? "adv-1" : "");
    BSON_APPEND_UTF8(d, "cr", r->cr);
    BSON_APPEND_UTF8(d, "p", r->p);
    BSON_APPEND_UTF8(d, "pl", r->pl);
    BSON_APPEND_INT32(d, "k", r->k);
    BSON_APPEND_INT64(d, "o", 1000 + r->k);
    BSON_APPEND_INT64(d, "imp", r->imp);
    BSON_APPEND_INT64(d, "view", r->view);
    BSON_APPEND_INT64(d, "click", r->click);
    BSON_APPEND_INT64(d, "conv", r->conv);
    BSON_APPEND_INT64(d, "spend", r->spend);
    BSON_APPEND_INT64(d, "payout", r->payout);
    BSON_APPEND_INT64(d, "rejected", r->rejected);
    BSON_APPEND_DOCUMENT_BEGIN(d, "rej", &rej);
    if (r->bot)
        BSON_APPEND_INT64(&rej, "bot", r->bot);
    if (r->unknown_campaign)
        BSON_APPEND_INT64(&rej, "unknown_campaign", r->unknown_campaign);
    bson_append_document_end(d, &rej);
    at_hll_append_bson(d, "u", &r->u);
    BSON_APPEND_DATE_TIME(d, "mt", RS_T09 + 4 * RS_HOUR);
    return d;
}

static rs_roll_t *rs_find(rs_rolls_t *rs, const char *id)
{
    for (size_t i = 0; i < rs->n; i++)
        if (strcmp(rs->r[i].id, id) == 0)
            return &rs->r[i];
    fail_msg("no rollup %s in the test's data", id);
    return NULL;
}

/* Writes the rollups, except the one named @p skip (may be NULL). */
static void rs_put_rolls(rs_backend_t *b, rs_rolls_t *rs, const char *skip)
{
    bson_t *docs[RS_MAX_ROLLS] = {0};
    size_t n = 0;
    for (size_t i = 0; i < rs->n; i++)
        if (skip == NULL || strcmp(rs->r[i].id, skip) != 0)
            docs[n++] = rs_roll_doc(&rs->r[i]);
    b->put_stats(b->ctx, docs, n);
    for (size_t i = 0; i < n; i++)
        bson_destroy(docs[i]);
}

static void rs_put_events(rs_backend_t *b, const rs_world_t *w, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        bson_t *d = rs_event_doc(&w->ev[i], i);
        b->put(b->ctx, w->ev[i].reason ? "rejected" : "events", &d, 1);
        bson_destroy(d);
    }
}

/* A run of the command: exit status, stdout parsed as JSON when asked for, stderr. */
typedef struct rs_run_s {
    int status;
    char *out, *err;
    bson_t *json;
} rs_run_t;

static rs_run_t rs_reconcile(rs_backend_t *b, const char *from, const char *to, bool repair, bool json,
                             const char *const *extra)
{
    char *bin = ts_bin("adtrack");
    const char *argv[32] = {bin, "rollups", "reconcile", "--from", from, "--to", to};
    size_t n = 7;
    for (size_t i = 0; b != NULL && i < AT_ARRAY_LEN(b->store_args) && b->store_args[i]; i++)
        argv[n++] = b->store_args[i];
    if (repair)
        argv[n++] = "--repair";
    if (json)
        argv[n++] = "--json";
    for (size_t i = 0; extra && extra[i]; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    rs_run_t r = {0};
    int st;
    assert_int_equal(ts_run((char *const *)argv, NULL, 60000, &r.out, &r.err, &st), 0);
    assert_true(WIFEXITED(st));
    r.status = WEXITSTATUS(st);
    if (json && r.status != 2) {
        bson_error_t e;
        r.json = bson_new_from_json((const uint8_t *)r.out, -1, &e);
        if (r.json == NULL)
            fail_msg("stdout is not JSON (%s): %s\nstderr: %s", e.message, r.out, r.err);
    }
    fprintf(stderr, "[rec] %s %s..%s%s: exit %d\n%s%s", b && b->store_args[0] ? b->store_args[0] : "(no store)", from, to, repair ? " --repair" : "",
            r.status, r.out, r.err);
    free(bin);
    return r;
}

static void rs_run_free(rs_run_t *r)
{
    free(r->out);
    free(r->err);
    if (r->json)
        bson_destroy(r->json);
}

static int64_t rs_json_int(const bson_t *d, const char *path)
{
    bson_iter_t it, f;
    if (!bson_iter_init(&it, d) || !bson_iter_find_descendant(&it, path, &f))
        fail_msg("no %s in the report", path);
    return bson_iter_as_int64(&f);
}

/* Asserts that the report's drift entry @p group has @p field with these values. */
static void rs_expect_diff(const bson_t *report, const char *group, const char *field, int64_t rollup, int64_t recount)
{
    bson_iter_t it, drift, g;
    assert_true(bson_iter_init_find(&it, report, "drift") && bson_iter_recurse(&it, &drift));
    while (bson_iter_next(&drift)) {
        bson_iter_recurse(&drift, &g);
        if (!bson_iter_find(&g, "group") || strcmp(bson_iter_utf8(&g, NULL), group) != 0)
            continue;
        bson_iter_t f, fields, one;
        bson_iter_recurse(&drift, &f);
        assert_true(bson_iter_find(&f, "fields") && bson_iter_recurse(&f, &fields));
        while (bson_iter_next(&fields)) {
            bson_iter_recurse(&fields, &one);
            assert_true(bson_iter_find(&one, "field"));
            if (strcmp(bson_iter_utf8(&one, NULL), field) != 0)
                continue;
            bson_iter_t v;
            bson_iter_recurse(&fields, &v);
            assert_true(bson_iter_find(&v, "rollup"));
            if (bson_iter_as_int64(&v) != rollup)
                fail_msg("%s %s: rollup %lld, want %lld", group, field, (long long)bson_iter_as_int64(&v),
                         (long long)rollup);
            assert_true(bson_iter_find(&v, "recount"));
            if (bson_iter_as_int64(&v) != recount)
                fail_msg("%s %s: recount %lld, want %lld", group, field, (long long)bson_iter_as_int64(&v),
                         (long long)recount);
            return;
        }
        fail_msg("%s: no field %s in the report", group, field);
    }
    fail_msg("group %s not in the report", group);
}

/* The number of fields the report names for @p group. */
static size_t rs_nfields(const bson_t *report, const char *group)
{
    bson_iter_t it, drift, g;
    assert_true(bson_iter_init_find(&it, report, "drift") && bson_iter_recurse(&it, &drift));
    while (bson_iter_next(&drift)) {
        bson_iter_recurse(&drift, &g);
        if (!bson_iter_find(&g, "group") || strcmp(bson_iter_utf8(&g, NULL), group) != 0)
            continue;
        bson_iter_t f, fields;
        bson_iter_recurse(&drift, &f);
        assert_true(bson_iter_find(&f, "fields") && bson_iter_recurse(&f, &fields));
        size_t n = 0;
        while (bson_iter_next(&fields))
            n++;
        return n;
    }
    return 0;
}

static void rs_run_scenario(rs_backend_t *b)
{
    static rs_world_t w;
    static rs_rolls_t rolls;
    rs_world_build(&w);
    rs_put_events(b, &w, 0, w.n);
    rs_rollup(&w, w.n, &rolls);
    /* outside the range, on purpose: T09 says 7 impressions where there are 4 */
    rs_find(&rolls, "2026-11-20T09|camp-a|cr-1|pub-1|top|0")->imp = 7;
    rs_put_rolls(b, &rolls, NULL);

    /* 1. matching */
    rs_run_t r = rs_reconcile(b, "2026-11-20T10", "2026-11-20T12", false, true, NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(rs_json_int(r.json, "drifting"), 0);
    assert_int_equal(rs_json_int(r.json, "hours"), 2);
    assert_int_equal(rs_json_int(r.json, "groups"), 5);
    assert_int_equal(rs_json_int(r.json, "events"), 48);
    assert_int_equal(rs_json_int(r.json, "rejected"), 5);
    rs_run_free(&r);
    r = rs_reconcile(b, "2026-11-20T10", "2026-11-20T12", false, false, NULL); /* the text form */
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.out, "checked 2 hours, 5 groups"));
    assert_non_null(strstr(r.out, ": 0 drifting"));
    assert_non_null(strstr(r.out, "3 standard errors"));
    rs_run_free(&r);

    /* 2. drift */
    rs_find(&rolls, "2026-11-20T10|camp-a|cr-1|pub-1|top|0")->imp *= 2;         /* doubled: 10 -> 20 */
    rs_find(&rolls, "2026-11-20T11|camp-c|cr-2|pub-1|side|1")->spend += 777;     /* wrong spend */
    rs_roll_t *e = rs_find(&rolls, "2026-11-20T10|||||1");                          /* a drifted reason */
    e->unknown_campaign = 1;
    e->rejected = 1;
    rs_put_rolls(b, &rolls, "2026-11-20T11|camp-b||pub-2||3");                   /* a missing document */
    size_t before = w.n;
    rs_add(&w, 10, 59, "camp-d", "cr-3", "pub-3", "top", "imp", 1500, "ud-late", 2); /* late, after its rollup */
    rs_put_events(b, &w, before, w.n);

    r = rs_reconcile(b, "2026-11-20T10", "2026-11-20T12", false, true, NULL);
    assert_int_equal(r.status, 1);
    assert_int_equal(rs_json_int(r.json, "drifting"), 5);
    rs_expect_diff(r.json, "2026-11-20T10|camp-a|cr-1|pub-1|top", "imp", 30, 20);
    assert_int_equal(rs_nfields(r.json, "2026-11-20T10|camp-a|cr-1|pub-1|top"), 1);
    rs_expect_diff(r.json, "2026-11-20T10|camp-d|cr-3|pub-3|top", "imp", 6, 7);
    rs_expect_diff(r.json, "2026-11-20T10|camp-d|cr-3|pub-3|top", "spend", 9000, 10500);
    assert_int_equal(rs_nfields(r.json, "2026-11-20T10|camp-d|cr-3|pub-3|top"), 2); /* u 5 vs 6: within */
    rs_expect_diff(r.json, "2026-11-20T10||||", "rejected", 1, 2);
    rs_expect_diff(r.json, "2026-11-20T10||||", "rej.unknown_campaign", 1, 2);
    rs_expect_diff(r.json, "2026-11-20T11|camp-b||pub-2|", "imp", 5, 10);
    rs_expect_diff(r.json, "2026-11-20T11|camp-b||pub-2|", "spend", 10000, 20000);
    rs_expect_diff(r.json, "2026-11-20T11|camp-b||pub-2|", "u", 6, 10); /* k = 0 also has ub-1 (a conversion) */
    assert_int_equal(rs_nfields(r.json, "2026-11-20T11|camp-b||pub-2|"), 3);
    rs_expect_diff(r.json, "2026-11-20T11|camp-c|cr-2|pub-1|side", "spend", 18777, 18000);
    rs_run_free(&r);
    r = rs_reconcile(b, "2026-11-20T10", "2026-11-20T12", false, false, NULL);
    assert_int_equal(r.status, 1);
    assert_non_null(strstr(r.out, "drift 2026-11-20T11|camp-c|cr-2|pub-1|side"));
    assert_non_null(strstr(r.out, ": 5 drifting"));
    rs_run_free(&r);

    /* 3. repair, then nothing drifts; repairing again writes nothing */
    r = rs_reconcile(b, "2026-11-20T10", "2026-11-20T12", true, true, NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(rs_json_int(r.json, "drifting"), 5);
    assert_int_equal(rs_json_int(r.json, "repaired"), 5);
    assert_int_equal(rs_json_int(r.json, "corrections_written"), 5);
    rs_run_free(&r);
    r = rs_reconcile(b, "2026-11-20T10", "2026-11-20T12", false, true, NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(rs_json_int(r.json, "drifting"), 0);
    assert_int_equal(rs_json_int(r.json, "groups"), 5);
    rs_run_free(&r);
    r = rs_reconcile(b, "2026-11-20T10", "2026-11-20T12", true, true, NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(rs_json_int(r.json, "corrections_written"), 0);
    rs_run_free(&r);

    /* 4. outside the range: untouched */
    r = rs_reconcile(b, "2026-11-20T09", "2026-11-20T10", false, true, NULL);
    assert_int_equal(r.status, 1);
    rs_expect_diff(r.json, "2026-11-20T09|camp-a|cr-1|pub-1|top", "imp", 7, 4);
    rs_run_free(&r);
    r = rs_reconcile(b, "2026-11-20T12", "2026-11-20T13", false, true, NULL);
    assert_int_equal(r.status, 0);
    assert_int_equal(rs_json_int(r.json, "groups"), 1);
    rs_run_free(&r);
    b->check_outside(b->ctx);
}

#endif
