/* rec_tally.c: see rec_tally.h. */
#include "rec_tally.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "at_event.h"
#include "at_time.h"
#include "rec_map.h"

struct rec_tally_s {
    int64_t from_ms, to_ms;
    rec_map_t *groups; /* key -> rec_group_t* (owned by the tally) */
    rec_map_t *uids;   /* "<group pointer><uid>" -> nothing: the exact unique users */
    size_t ngroups;
    size_t ignored;
    size_t nevents, nrejected, ndocs; /* documents counted */
};

/* ---- hours ---- */

static bool two_digits(const char *s, int *out)
{
    if (s[0] < '0' || s[0] > '9' || s[1] < '0' || s[1] > '9')
        return false;
    *out = (s[0] - '0') * 10 + (s[1] - '0');
    return true;
}

int rec_parse_hour(const char *text, int64_t *hour_ms, at_err_t *err)
{
    int y1, y2, mo, d, h = 0;
    size_t n = strlen(text);
    bool ok = n >= 10 && two_digits(text, &y1) && two_digits(text + 2, &y2) && text[4] == '-' &&
              two_digits(text + 5, &mo) && text[7] == '-' && two_digits(text + 8, &d);
    const char *rest = text + 10;
    if (ok && *rest == 'T') {
        ok = two_digits(rest + 1, &h);
        rest += 3;
        if (ok && strcmp(rest, ":00:00") == 0)
            rest += 6;
        else if (ok && strcmp(rest, ":00") == 0)
            rest += 3;
        else if (ok && strcmp(rest, ":00:00Z") == 0)
            rest += 6;
        else if (ok && strcmp(rest, ":00Z") == 0)
            rest += 3;
    }
    if (ok && strcmp(rest, "Z") == 0)
        rest++;
    ok = ok && *rest == '\0';
    if (!ok)
        return at_err_set(err, AT_ERR_INVALID,
                          "expected YYYY-MM-DD or YYYY-MM-DDTHH (UTC, a whole hour), got '%.40s'", text);
    int64_t days = at_days_from_civil(y1 * 100 + y2, mo, d);
    int64_t cy;
    int cm, cd;
    at_civil_from_days(days, &cy, &cm, &cd);
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || cm != mo || cd != d || h > 23)
        return at_err_set(err, AT_ERR_RANGE, "expected a real date and an hour from 00 to 23, got '%.40s'", text);
    *hour_ms = days * 86400000 + (int64_t)h * REC_HOUR_MS;
    return 0;
}

void rec_hour_str(int64_t ms, char out[REC_HOUR_STR_LEN + 1])
{
    int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    int64_t y;
    int m, d;
    at_civil_from_days(days, &y, &m, &d);
    int h = (int)((ms - days * 86400000) / REC_HOUR_MS);
    char buf[64]; /* the compiler cannot see that every field has its width */
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d", (int)(y % 10000), m % 100, d % 100, h % 100);
    memcpy(out, buf, REC_HOUR_STR_LEN);
    out[REC_HOUR_STR_LEN] = '\0';
}

bool rec_reason_keeps_dims(const char *reason)
{
    /* the enricher's own rule (common/at_event.h), so the recount places rejections as the rollups do */
    at_reject_t r = at_reject_from_str(reason);
    return r != AT_REJ__COUNT && at_reject_keeps_campaign(r);
}

/* ---- counts ---- */

static void counts_free(rec_counts_t *c)
{
    for (size_t i = 0; i < c->nrej; i++)
        free(c->rej[i].reason);
    free(c->rej);
}

static int counts_add_reason(rec_counts_t *c, const char *reason, int64_t n)
{
    for (size_t i = 0; i < c->nrej; i++)
        if (strcmp(c->rej[i].reason, reason) == 0) {
            c->rej[i].n += n;
            return 0;
        }
    if (c->nrej == c->caprej) {
        size_t ncap = c->caprej ? c->caprej * 2 : 4;
        void *p = realloc(c->rej, ncap * sizeof(*c->rej));
        if (p == NULL)
            return -1;
        c->rej = p;
        c->caprej = ncap;
    }
    char *copy = strdup(reason);
    if (copy == NULL)
        return -1;
    c->rej[c->nrej++] = (struct rec_reason_s){copy, n};
    return 0;
}

static bool has_reason(const rec_counts_t *c, const char *reason)
{
    for (size_t i = 0; i < c->nrej; i++)
        if (strcmp(c->rej[i].reason, reason) == 0)
            return true;
    return false;
}

static int64_t counts_reason(const rec_counts_t *c, const char *reason)
{
    for (size_t i = 0; i < c->nrej; i++)
        if (strcmp(c->rej[i].reason, reason) == 0)
            return c->rej[i].n;
    return 0;
}

/* ---- groups ---- */

rec_tally_t *rec_tally_new(int64_t from_ms, int64_t to_ms)
{
    rec_tally_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    t->from_ms = from_ms;
    t->to_ms = to_ms;
    t->groups = rec_map_new();
    t->uids = rec_map_new();
    if (t->groups == NULL || t->uids == NULL) {
        rec_tally_free(t);
        return NULL;
    }
    return t;
}

static void group_free(rec_group_t *g)
{
    free(g->key);
    for (int i = 0; i < 4; i++)
        free(g->dim[i]);
    free(g->adv);
    counts_free(&g->recount);
    counts_free(&g->total);
    counts_free(&g->corr);
    free(g->recount_u);
    free(g->total_u);
    free(g->corr_u);
    free(g);
}

static void free_group_cb(const char *key, size_t len, void *value, void *arg)
{
    (void)key, (void)len, (void)arg;
    group_free(value);
}

void rec_tally_free(rec_tally_t *t)
{
    if (t == NULL)
        return;
    if (t->groups != NULL)
        rec_map_each(t->groups, free_group_cb, NULL);
    rec_map_free(t->groups);
    rec_map_free(t->uids);
    free(t);
}

/* The group of @p key (hour start @p hour_ms), created when new. NULL when out of memory. */
static rec_group_t *group_of(rec_tally_t *t, const char *key, size_t len, int64_t hour_ms)
{
    rec_group_t *g = rec_map_get(t->groups, key, len);
    if (g != NULL)
        return g;
    g = calloc(1, sizeof(*g));
    if (g == NULL)
        return NULL;
    g->hour_ms = hour_ms;
    g->key = strndup(key, len);
    g->adv = strdup("");
    bool ok = g->key != NULL && g->adv != NULL;
    /* key = hour|c|cr|p|pl */
    const char *s = ok ? strchr(g->key, '|') : NULL;
    for (int i = 0; i < 4 && ok; i++) {
        if (s == NULL) {
            ok = false;
            break;
        }
        s++;
        const char *e = strchr(s, '|');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        g->dim[i] = strndup(s, n);
        ok = g->dim[i] != NULL;
        s = e;
    }
    if (!ok || rec_map_add(t->groups, key, len, g, NULL) != 1) {
        group_free(g);
        return NULL;
    }
    t->ngroups++;
    return g;
}

static const char *str_field(const bson_t *doc, const char *name)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, name) && BSON_ITER_HOLDS_UTF8(&it))
        return bson_iter_utf8(&it, NULL);
    return "";
}

/* An integer field as int32, int64 or an integral double; false when absent or another type. */
static bool int_field(bson_iter_t *it, int64_t *out)
{
    if (BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it)) {
        *out = bson_iter_as_int64(it);
        return true;
    }
    if (BSON_ITER_HOLDS_DOUBLE(it)) {
        double v = bson_iter_double(it);
        if (v == floor(v) && fabs(v) < 9.0e18) {
            *out = (int64_t)v;
            return true;
        }
    }
    return false;
}

static int64_t int_or_zero(const bson_t *doc, const char *name)
{
    bson_iter_t it;
    int64_t v = 0;
    if (bson_iter_init_find(&it, doc, name))
        (void)int_field(&it, &v);
    return v;
}

/* The hour of a document's date `ts`, inside the tally's range. False (and counted as
 * ignored) otherwise. */
static bool event_hour(rec_tally_t *t, const bson_t *doc, int64_t *hour_ms)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "ts") || !BSON_ITER_HOLDS_DATE_TIME(&it)) {
        t->ignored++;
        return false;
    }
    int64_t ms = bson_iter_date_time(&it);
    if (ms < t->from_ms || ms >= t->to_ms) {
        t->ignored++;
        return false;
    }
    int64_t rem = ms % REC_HOUR_MS;
    *hour_ms = ms - (rem < 0 ? rem + REC_HOUR_MS : rem);
    return true;
}

static rec_group_t *event_group(rec_tally_t *t, int64_t hour_ms, const char *c, const char *cr, const char *p,
                                const char *pl)
{
    char hour[REC_HOUR_STR_LEN + 1];
    rec_hour_str(hour_ms, hour);
    char key[512];
    int n = snprintf(key, sizeof(key), "%s|%s|%s|%s|%s", hour, c, cr, p, pl);
    if (n < 0 || (size_t)n >= sizeof(key))
        n = (int)sizeof(key) - 1; /* dimensions are at most 64 characters; a longer one is cut */
    return group_of(t, key, (size_t)n, hour_ms);
}

static int oom(at_err_t *err)
{
    return at_err_set(err, AT_ERR_NOMEM, "out of memory");
}

int rec_tally_add_event(rec_tally_t *t, const bson_t *doc, at_err_t *err)
{
    int64_t hour_ms;
    if (!event_hour(t, doc, &hour_ms))
        return 0;
    rec_group_t *g = event_group(t, hour_ms, str_field(doc, "c"), str_field(doc, "cr"), str_field(doc, "p"),
                                 str_field(doc, "pl"));
    if (g == NULL)
        return oom(err);
    const char *e = str_field(doc, "e");
    if (strcmp(e, "imp") == 0)
        g->recount.imp++;
    else if (strcmp(e, "view") == 0)
        g->recount.view++;
    else if (strcmp(e, "click") == 0)
        g->recount.click++;
    else if (strcmp(e, "conv") == 0)
        g->recount.conv++;
    g->recount.spend += int_or_zero(doc, "price_micros");
    g->recount.payout += int_or_zero(doc, "payout_micros");
    const char *adv = str_field(doc, "advertiser");
    if (g->adv[0] == '\0' && adv[0] != '\0') {
        char *copy = strdup(adv);
        if (copy == NULL)
            return oom(err);
        free(g->adv);
        g->adv = copy;
    }
    bson_iter_t it;
    uint32_t ulen = 0;
    const char *uid = NULL;
    if (bson_iter_init_find(&it, doc, "uid") && BSON_ITER_HOLDS_UTF8(&it))
        uid = bson_iter_utf8(&it, &ulen);
    if (uid != NULL && ulen > 0) { /* an empty uid is no user id */
        if (g->recount_u == NULL && (g->recount_u = calloc(1, sizeof(at_hll_t))) == NULL)
            return oom(err);
        at_hll_add(g->recount_u, uid, ulen);
        /* the exact set: the group's address, then the uid */
        char stackkey[256];
        size_t klen = sizeof(g) + ulen;
        char *key = klen <= sizeof(stackkey) ? stackkey : malloc(klen);
        if (key == NULL)
            return oom(err);
        memcpy(key, &g, sizeof(g));
        memcpy(key + sizeof(g), uid, ulen);
        int rc = rec_map_add(t->uids, key, klen, NULL, NULL);
        if (key != stackkey)
            free(key);
        if (rc < 0)
            return oom(err);
        g->uniques += rc;
    }
    t->nevents++;
    return 1;
}

int rec_tally_add_rejected(rec_tally_t *t, const bson_t *doc, at_err_t *err)
{
    int64_t hour_ms;
    if (!event_hour(t, doc, &hour_ms))
        return 0;
    const char *reason = str_field(doc, "reason");
    bool own = rec_reason_keeps_dims(reason);
    rec_group_t *g = own ? event_group(t, hour_ms, str_field(doc, "c"), str_field(doc, "cr"), str_field(doc, "p"),
                                       str_field(doc, "pl"))
                         : event_group(t, hour_ms, "", "", "", "");
    if (g == NULL)
        return oom(err);
    g->recount.rejected++;
    if (counts_add_reason(&g->recount, reason, 1) != 0)
        return oom(err);
    t->nrejected++;
    return 1;
}

/* ---- rollup documents ---- */

static int add_counters(rec_counts_t *c, const bson_t *doc, const char *id, at_err_t *err)
{
    static const char *const names[] = {"imp", "view", "click", "conv", "spend", "payout", "rejected"};
    int64_t *slots[] = {&c->imp, &c->view, &c->click, &c->conv, &c->spend, &c->payout, &c->rejected};
    for (size_t i = 0; i < AT_ARRAY_LEN(names); i++) {
        bson_iter_t it;
        int64_t v;
        if (!bson_iter_init_find(&it, doc, names[i]))
            continue; /* absent: 0 */
        if (!int_field(&it, &v))
            return at_err_set(err, AT_ERR_INVALID, "stats_hourly %s: %s: expected an integer", id, names[i]);
        *slots[i] += v;
    }
    bson_iter_t it, sub;
    if (bson_iter_init_find(&it, doc, "rej")) {
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &sub))
            return at_err_set(err, AT_ERR_INVALID, "stats_hourly %s: rej: expected a document of counts", id);
        while (bson_iter_next(&sub)) {
            int64_t v;
            if (!int_field(&sub, &v))
                return at_err_set(err, AT_ERR_INVALID, "stats_hourly %s: rej.%s: expected an integer", id,
                                  bson_iter_key(&sub));
            if (counts_add_reason(c, bson_iter_key(&sub), v) != 0)
                return oom(err);
        }
    }
    return 0;
}

static int merge_u(at_hll_t **h, const bson_t *doc, const char *id, at_err_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "u"))
        return 0;
    if (!BSON_ITER_HOLDS_DOCUMENT(&it))
        return at_err_set(err, AT_ERR_INVALID, "stats_hourly %s: u: expected a document of registers", id);
    uint32_t len;
    const uint8_t *data;
    bson_iter_document(&it, &len, &data);
    bson_t sparse;
    if (!bson_init_static(&sparse, data, len))
        return at_err_set(err, AT_ERR_INVALID, "stats_hourly %s: u: not a valid document", id);
    if (*h == NULL && (*h = calloc(1, sizeof(at_hll_t))) == NULL)
        return oom(err);
    at_err_t herr = {0};
    if (at_hll_merge_bson(*h, &sparse, &herr) != 0)
        return at_err_set(err, AT_ERR_INVALID, "stats_hourly %s: u: %s", id, herr.msg);
    return 0;
}

int rec_tally_add_rollup(rec_tally_t *t, const bson_t *doc, at_err_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "_id") || !BSON_ITER_HOLDS_UTF8(&it))
        return at_err_set(err, AT_ERR_INVALID, "stats_hourly: a document without a string _id");
    const char *id = bson_iter_utf8(&it, NULL);
    /* _id = hour|c|cr|p|pl|k: the group key is everything before the last '|' */
    const char *last = strrchr(id, '|');
    size_t bars = 0;
    for (const char *s = id; *s; s++)
        bars += *s == '|';
    int64_t hour_ms;
    char hour[REC_HOUR_STR_LEN + 1];
    if (last == NULL || bars != 5 || (size_t)(strchr(id, '|') - id) != REC_HOUR_STR_LEN)
        return at_err_set(err, AT_ERR_INVALID, "stats_hourly %.200s: _id: expected <YYYY-MM-DDTHH>|c|cr|p|pl|k", id);
    memcpy(hour, id, REC_HOUR_STR_LEN);
    hour[REC_HOUR_STR_LEN] = '\0';
    if (rec_parse_hour(hour, &hour_ms, NULL) != 0)
        return at_err_set(err, AT_ERR_INVALID, "stats_hourly %.200s: _id: expected <YYYY-MM-DDTHH>|c|cr|p|pl|k", id);
    if (hour_ms < t->from_ms || hour_ms >= t->to_ms)
        return 0;
    int64_t k = 0;
    if (!bson_iter_init_find(&it, doc, "k") || !int_field(&it, &k))
        return at_err_set(err, AT_ERR_INVALID, "stats_hourly %.200s: k: expected an integer", id);
    rec_group_t *g = group_of(t, id, (size_t)(last - id), hour_ms);
    if (g == NULL)
        return oom(err);
    if (add_counters(&g->total, doc, id, err) != 0 || merge_u(&g->total_u, doc, id, err) != 0)
        return -1;
    if (k == -1) {
        /* one correction per group (its _id); a second one here is a later line of the same
         * _id in file mode, which the file reader already resolved, so this is the one */
        g->has_corr = true;
        if (add_counters(&g->corr, doc, id, err) != 0 || merge_u(&g->corr_u, doc, id, err) != 0)
            return -1;
    }
    const char *adv = str_field(doc, "adv");
    if (adv[0] != '\0' && g->adv[0] == '\0') {
        char *copy = strdup(adv);
        if (copy == NULL)
            return oom(err);
        free(g->adv);
        g->adv = copy;
    }
    g->ndocs++;
    t->ndocs++;
    return 1;
}

size_t rec_tally_groups(const rec_tally_t *t)
{
    return t->ngroups;
}

size_t rec_tally_ignored(const rec_tally_t *t)
{
    return t->ignored;
}

void rec_tally_counted(const rec_tally_t *t, size_t *events, size_t *rejected, size_t *docs)
{
    *events = t->nevents;
    *rejected = t->nrejected;
    *docs = t->ndocs;
}

typedef struct bytes_acc_s {
    size_t bytes;
} bytes_acc_t;

static void bytes_cb(const char *key, size_t len, void *value, void *arg)
{
    (void)key;
    rec_group_t *g = value;
    bytes_acc_t *a = arg;
    a->bytes += sizeof(*g) + 2 * (len + 16) + (g->recount_u ? sizeof(at_hll_t) : 0) +
                (g->total_u ? sizeof(at_hll_t) : 0) + (g->corr_u ? sizeof(at_hll_t) : 0) +
                (g->recount.caprej + g->total.caprej + g->corr.caprej) * (sizeof(struct rec_reason_s) + 32);
}

size_t rec_tally_bytes(const rec_tally_t *t)
{
    bytes_acc_t a = {rec_map_bytes(t->groups) + rec_map_bytes(t->uids)};
    rec_map_each(t->groups, bytes_cb, &a);
    return a.bytes;
}

/* ---- comparison ---- */

bool rec_uniques_drift(double estimate, int64_t exact)
{
    const double se = 1.04 / sqrt((double)AT_HLL_REGISTERS);
    /* the estimate is reported rounded, and compared so: one register of a sketch that
     * should be empty estimates 1.0002 users, which is the "+ 1" */
    return fabs(round(estimate) - (double)exact) > 3.0 * se * (double)exact + 1.0;
}

typedef struct collect_s {
    rec_group_t **v;
    size_t n;
} collect_t;

static void collect_cb(const char *key, size_t len, void *value, void *arg)
{
    (void)key, (void)len;
    collect_t *c = arg;
    c->v[c->n++] = value;
}

static int by_key(const void *a, const void *b)
{
    return strcmp((*(rec_group_t *const *)a)->key, (*(rec_group_t *const *)b)->key);
}

static int by_field(const void *a, const void *b)
{
    return strcmp(((const rec_diff_t *)a)->field, ((const rec_diff_t *)b)->field);
}

static double estimate_of(const at_hll_t *h)
{
    return h ? at_hll_estimate(h) : 0.0;
}

/* Appends the differences of @p g to @p d (room for 8 + reasons); returns how many. */
static size_t group_diffs(const rec_group_t *g, rec_diff_t *d, size_t cap)
{
    size_t n = 0;
    const char *names[] = {"imp", "view", "click", "conv", "spend", "payout", "rejected"};
    const int64_t have[] = {g->total.imp, g->total.view, g->total.click, g->total.conv, g->total.spend,
                            g->total.payout, g->total.rejected};
    const int64_t want[] = {g->recount.imp, g->recount.view, g->recount.click, g->recount.conv,
                            g->recount.spend, g->recount.payout, g->recount.rejected};
    for (size_t i = 0; i < AT_ARRAY_LEN(names); i++)
        if (have[i] != want[i] && n < cap) {
            d[n] = (rec_diff_t){.rollup = have[i], .recount = want[i]};
            snprintf(d[n++].field, sizeof(d->field), "%s", names[i]);
        }
    size_t first_rej = n;
    for (size_t i = 0; i < g->total.nrej; i++) {
        int64_t want_r = counts_reason(&g->recount, g->total.rej[i].reason);
        if (g->total.rej[i].n != want_r && n < cap) {
            d[n] = (rec_diff_t){.rollup = g->total.rej[i].n, .recount = want_r};
            snprintf(d[n++].field, sizeof(d->field), "rej.%.70s", g->total.rej[i].reason);
        }
    }
    for (size_t i = 0; i < g->recount.nrej; i++) {
        if (!has_reason(&g->total, g->recount.rej[i].reason) && g->recount.rej[i].n != 0 && n < cap) {
            d[n] = (rec_diff_t){.rollup = 0, .recount = g->recount.rej[i].n};
            snprintf(d[n++].field, sizeof(d->field), "rej.%.70s", g->recount.rej[i].reason);
        }
    }
    qsort(d + first_rej, n - first_rej, sizeof(*d), by_field);
    double est = estimate_of(g->total_u);
    if (rec_uniques_drift(est, g->uniques) && n < cap) {
        d[n] = (rec_diff_t){.rollup = (int64_t)llround(est), .recount = g->uniques};
        snprintf(d[n++].field, sizeof(d->field), "u");
    }
    return n;
}

size_t rec_tally_compare(rec_tally_t *t,
                         void (*cb)(const rec_group_t *g, const rec_diff_t *diffs, size_t ndiffs, bool repairable,
                                    void *arg),
                         void *arg)
{
    collect_t c = {calloc(t->ngroups ? t->ngroups : 1, sizeof(rec_group_t *)), 0};
    if (c.v == NULL)
        return 0;
    rec_map_each(t->groups, collect_cb, &c);
    qsort(c.v, c.n, sizeof(*c.v), by_key);
    size_t drifting = 0;
    for (size_t i = 0; i < c.n; i++) {
        rec_group_t *g = c.v[i];
        size_t cap = 9 + g->total.nrej + g->recount.nrej;
        rec_diff_t *d = calloc(cap, sizeof(*d));
        if (d == NULL)
            continue;
        size_t n = group_diffs(g, d, cap);
        if (n > 0) {
            /* After a repair the merged sketch is max(all documents, recount): when that still
             * estimates beyond the tolerance, registers are too high and no correction can
             * lower them. */
            at_hll_t after;
            at_hll_clear(&after);
            if (g->total_u)
                at_hll_merge(&after, g->total_u);
            if (g->recount_u)
                at_hll_merge(&after, g->recount_u);
            bool repairable = !rec_uniques_drift(at_hll_estimate(&after), g->uniques);
            drifting++;
            cb(g, d, n, repairable, arg);
        }
        free(d);
    }
    free(c.v);
    return drifting;
}

/* ---- the correction ---- */

bson_t *rec_correction_new(const rec_group_t *g, int64_t now_ms)
{
    bson_t *doc = bson_new();
    char id[600];
    snprintf(id, sizeof(id), "%s|-1", g->key);
    BSON_APPEND_UTF8(doc, "_id", id);
    BSON_APPEND_DATE_TIME(doc, "h", g->hour_ms);
    BSON_APPEND_UTF8(doc, "c", g->dim[0]);
    BSON_APPEND_UTF8(doc, "adv", g->adv);
    BSON_APPEND_UTF8(doc, "cr", g->dim[1]);
    BSON_APPEND_UTF8(doc, "p", g->dim[2]);
    BSON_APPEND_UTF8(doc, "pl", g->dim[3]);
    BSON_APPEND_INT32(doc, "k", -1);
    /* value = recount - (total - existing correction): the other documents stay as they are */
    const char *names[] = {"imp", "view", "click", "conv", "spend", "payout", "rejected"};
    const int64_t want[] = {g->recount.imp, g->recount.view, g->recount.click, g->recount.conv,
                            g->recount.spend, g->recount.payout, g->recount.rejected};
    const int64_t total[] = {g->total.imp, g->total.view, g->total.click, g->total.conv,
                             g->total.spend, g->total.payout, g->total.rejected};
    const int64_t corr[] = {g->corr.imp, g->corr.view, g->corr.click, g->corr.conv,
                            g->corr.spend, g->corr.payout, g->corr.rejected};
    for (size_t i = 0; i < AT_ARRAY_LEN(names); i++)
        BSON_APPEND_INT64(doc, names[i], want[i] - (total[i] - corr[i]));
    bson_t rej;
    BSON_APPEND_DOCUMENT_BEGIN(doc, "rej", &rej);
    /* every reason either side knows, each once */
    const rec_counts_t *sides[] = {&g->recount, &g->total};
    for (size_t s = 0; s < 2; s++)
        for (size_t i = 0; i < sides[s]->nrej; i++) {
            const char *r = sides[s]->rej[i].reason;
            if (s == 1 && has_reason(&g->recount, r))
                continue;
            int64_t v = counts_reason(&g->recount, r) - (counts_reason(&g->total, r) - counts_reason(&g->corr, r));
            if (v != 0)
                BSON_APPEND_INT64(&rej, r, v);
        }
    bson_append_document_end(doc, &rej);
    at_hll_t u;
    at_hll_clear(&u);
    if (g->corr_u)
        at_hll_merge(&u, g->corr_u);
    if (g->recount_u)
        at_hll_merge(&u, g->recount_u);
    at_hll_append_bson(doc, "u", &u);
    BSON_APPEND_DATE_TIME(doc, "mt", now_ms);
    return doc;
}
