/*
 * cd_rquery.c: GET /v1/reports parameters, periods and the JSON/CSV answer. See cd_rquery.h.
 */
#include "cd_rquery.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "at_json.h"
#include "at_time.h"

/* One list, two tables: the names and their lengths (the answer writer copies names with
 * their length; strlen on every cell showed up in profiles). */
#define METRICS(X)                                                                                                     \
    X("imp") X("view") X("click") X("conv") X("spend_micros") X("payout_micros") X("rejected") X("uniques") X("ctr")  \
        X("viewability") X("cvr") X("ecpm_micros") X("cpc_micros") X("cpa_micros") X("rejected_by_reason")
#define M_NAME(s) s,
#define M_LEN(s) sizeof(s) - 1,
static const char *const metric_names[CD_M_COUNT] = {METRICS(M_NAME)};
static const size_t metric_lens[CD_M_COUNT] = {METRICS(M_LEN)};
_Static_assert(sizeof((const char *[]){METRICS(M_NAME)}) / sizeof(char *) == CD_M_COUNT, "one name per cd_metric_t");

static const char *const dim_names[CD_DIM_COUNT] = {"campaign", "advertiser", "creative", "publisher", "placement"};

const char *cd_metric_name(cd_metric_t m)
{
    return m < CD_M_COUNT ? metric_names[m] : "?";
}

const char *cd_dim_name(cd_dim_t d)
{
    return d < CD_DIM_COUNT ? dim_names[d] : "?";
}

/* ---- zones ---- */

const cd_tz_t *cd_tzcache_get(cd_tzcache_t *c, const char *name, at_err_t *err)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->zones[i].name, name) == 0)
            return &c->zones[i];
    cd_tz_t z;
    if (cd_tz_load(&z, name, c->dir, err) != 0)
        return NULL;
    if (c->n == c->cap) {
        /* Pointers into the array are handed out: grow by moving into a fresh array only
         * between requests (the caller holds none across calls). */
        size_t cap = c->cap ? c->cap * 2 : 8;
        cd_tz_t *nz = realloc(c->zones, cap * sizeof(*nz));
        if (nz == NULL) {
            cd_tz_free(&z);
            at_err_set(err, AT_ERR_NOMEM, "out of memory");
            return NULL;
        }
        c->zones = nz;
        c->cap = cap;
    }
    c->zones[c->n] = z;
    return &c->zones[c->n++];
}

void cd_tzcache_free(cd_tzcache_t *c)
{
    for (size_t i = 0; i < c->n; i++)
        cd_tz_free(&c->zones[i]);
    free(c->zones);
    c->zones = NULL;
    c->n = c->cap = 0;
}

/* ---- parameters ---- */

#define VAL_MAX 512

/* Percent-decodes @p s into @p out (NUL-terminated). '+' stays '+' (it is the sign of an
 * RFC 3339 offset far more often than a space here). -1 when malformed or too long. */
static int decode(const char *s, size_t n, char out[VAL_MAX + 1])
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (o == VAL_MAX)
            return -1;
        char c = s[i];
        if (c == '%') {
            if (i + 2 >= n)
                return -1;
            int v = 0;
            for (int k = 1; k <= 2; k++) {
                char h = s[i + (size_t)k];
                v <<= 4;
                if (h >= '0' && h <= '9')
                    v |= h - '0';
                else if (h >= 'a' && h <= 'f')
                    v |= h - 'a' + 10;
                else if (h >= 'A' && h <= 'F')
                    v |= h - 'A' + 10;
                else
                    return -1;
            }
            if (v == 0)
                return -1;
            c = (char)v;
            i += 2;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

static bool date_ok(int y, int m, int d)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || y > 9999 || m < 1 || m > 12 || d < 1)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return d <= mdays[m - 1] + (m == 2 && leap);
}

#define TIME_EXPECTED                                                                                                  \
    "a date YYYY-MM-DD (midnight in tz) or an RFC 3339 time with Z or an offset, on an hour boundary, e.g. "          \
    "2026-03-29T00:00:00+01:00"

/*
 * "YYYY-MM-DD" (midnight in @p tz; tz NULL: unknown, syntax only) or
 * "YYYY-MM-DDTHH:MM:SS[.000]Z|±HH:MM". 0 with *@p out (UTC seconds), -1 malformed,
 * -2 not on an hour boundary.
 */
static int parse_time(const char *s, const cd_tz_t *tz, int64_t *out)
{
    size_t n = strlen(s);
    if (n < 10 || s[4] != '-' || s[7] != '-')
        return -1;
    int y = digits(s, 4), m = digits(s + 5, 2), d = digits(s + 8, 2);
    if (y < 0 || m < 0 || d < 0 || !date_ok(y, m, d))
        return -1;
    int64_t days = at_days_from_civil(y, m, d);
    if (n == 10) { /* a midnight off the hour (a zone like Asia/Kolkata) is the tz check's to report */
        *out = tz != NULL ? cd_tz_to_utc(tz, days * 86400) : days * 86400;
        return 0;
    }
    if (n < 20 || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
        return -1;
    int hh = digits(s + 11, 2), mm = digits(s + 14, 2), ss = digits(s + 17, 2);
    if (hh < 0 || hh > 23 || mm < 0 || mm > 59 || ss < 0 || ss > 59)
        return -1;
    const char *p = s + 19, *e = s + n;
    bool frac_zero = true;
    if (*p == '.') {
        p++;
        if (p == e || *p < '0' || *p > '9')
            return -1;
        for (; p < e && *p >= '0' && *p <= '9'; p++)
            frac_zero = frac_zero && *p == '0';
    }
    int32_t off;
    if (e - p == 1 && (*p == 'Z' || *p == 'z')) {
        off = 0;
    } else if (e - p == 6 && (*p == '+' || *p == '-') && p[3] == ':') {
        int oh = digits(p + 1, 2), om = digits(p + 4, 2);
        if (oh < 0 || oh > 23 || om < 0 || om > 59)
            return -1;
        off = (oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
    } else {
        return -1;
    }
    *out = days * 86400 + hh * 3600 + mm * 60 + ss - off;
    return frac_zero && *out % 3600 == 0 ? 0 : -2;
}

/* Splits a comma list and looks every item up in @p names; -1 on an unknown or repeated item. */
static int parse_list(const char *v, const char *const *names, int nnames, int *out, int *nout, char *bad,
                      size_t bad_size)
{
    *nout = 0;
    const char *p = v;
    if (*p == '\0')
        return 0;
    for (;;) {
        const char *c = strchr(p, ',');
        size_t len = c ? (size_t)(c - p) : strlen(p);
        int found = -1;
        for (int i = 0; i < nnames && found < 0; i++)
            if (strlen(names[i]) == len && memcmp(names[i], p, len) == 0)
                found = i;
        for (int i = 0; i < *nout && found >= 0; i++)
            if (out[i] == found) {
                snprintf(bad, bad_size, "'%.*s' given twice", (int)(len > 40 ? 40 : len), p);
                return -1;
            }
        if (found < 0) {
            snprintf(bad, bad_size, "unknown '%.*s'", (int)(len > 40 ? 40 : len), p);
            return -1;
        }
        out[(*nout)++] = found;
        if (c == NULL)
            return 0;
        p = c + 1;
    }
}

static void list_text(const char *const *names, int n, char *out, size_t size)
{
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < n && o < size; i++)
        o += (size_t)snprintf(out + o, size - o, "%s%s", i ? "," : "", names[i]);
}

enum { P_FROM, P_TO, P_GRAN, P_GROUP, P_METRICS, P_TZ, P_FORMAT, P_COUNT };
static const char *const param_names[P_COUNT] = {"from", "to", "granularity", "group_by", "metrics", "tz", "format"};

int cd_rquery_parse(const char *qs, size_t len, bool accept_csv, cd_tzcache_t *tzc, cd_rquery_t *q, cd_verrs_t *errs)
{
    char vals[P_COUNT][VAL_MAX + 1];
    bool have[P_COUNT] = {false};
    memset(q, 0, sizeof(*q));
    size_t before = errs->count + errs->dropped;
    const char *p = qs, *end = qs != NULL ? qs + len : NULL;
    while (p != NULL && p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *e = amp ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(e - p));
        size_t nlen = eq ? (size_t)(eq - p) : (size_t)(e - p);
        if (nlen == 0 && e == p) { /* "&&": nothing */
            p = e + 1;
            continue;
        }
        int which = -1;
        for (int i = 0; i < P_COUNT && which < 0; i++)
            if (strlen(param_names[i]) == nlen && memcmp(param_names[i], p, nlen) == 0)
                which = i;
        char name[72];
        snprintf(name, sizeof(name), "%.*s", (int)(nlen > 64 ? 64 : nlen), p);
        if (which < 0) {
            cd_verrs_add(errs, name,
                         "no such parameter (from, to, granularity, group_by, metrics, tz, format)");
        } else if (have[which]) {
            cd_verrs_add(errs, name, "the parameter once");
        } else if (eq == NULL || decode(eq + 1, (size_t)(e - eq - 1), vals[which]) != 0) {
            cd_verrs_add(errs, name, "name=value with a percent-encoded value of at most %d bytes", VAL_MAX);
            have[which] = true;
            vals[which][0] = '\0';
            which = -1;
        } else {
            have[which] = true;
        }
        p = e + 1;
    }
    bool tz_ok = true;
    /* tz first: dates without a time are midnights in it. */
    const char *tzname = have[P_TZ] ? vals[P_TZ] : "UTC";
    at_err_t terr = {0};
    q->tz = cd_tzcache_get(tzc, tzname, &terr);
    if (q->tz == NULL) {
        cd_verrs_add(errs, "tz", "%s", terr.msg);
        tz_ok = false;
    }
    q->daily = true;
    if (have[P_GRAN]) {
        if (strcmp(vals[P_GRAN], "hour") == 0)
            q->daily = false;
        else if (strcmp(vals[P_GRAN], "day") != 0)
            cd_verrs_add(errs, "granularity", "hour or day");
    }
    q->csv = accept_csv;
    if (have[P_FORMAT]) {
        if (strcmp(vals[P_FORMAT], "csv") == 0)
            q->csv = true;
        else if (strcmp(vals[P_FORMAT], "json") == 0)
            q->csv = false;
        else
            cd_verrs_add(errs, "format", "json or csv");
    }
    char bad[96], all[400];
    if (have[P_GROUP]) {
        int dims[CD_DIM_COUNT];
        if (parse_list(vals[P_GROUP], dim_names, CD_DIM_COUNT, dims, &q->ndims, bad, sizeof(bad)) != 0) {
            list_text(dim_names, CD_DIM_COUNT, all, sizeof(all));
            cd_verrs_add(errs, "group_by", "a comma-separated list of distinct dimensions: %s (%s)", all, bad);
            q->ndims = 0;
        }
        for (int i = 0; i < q->ndims; i++)
            q->dims[i] = (cd_dim_t)dims[i];
    }
    if (have[P_METRICS]) {
        int ms[CD_M_COUNT];
        if (vals[P_METRICS][0] == '\0' ||
            parse_list(vals[P_METRICS], metric_names, CD_M_COUNT, ms, &q->nmetrics, bad, sizeof(bad)) != 0) {
            list_text(metric_names, CD_M_COUNT, all, sizeof(all));
            cd_verrs_add(errs, "metrics", "each once, from %s (%s)", all, vals[P_METRICS][0] == '\0' ? "empty" : bad);
            q->nmetrics = 0;
        }
        for (int i = 0; i < q->nmetrics; i++)
            q->metrics[i] = (cd_metric_t)ms[i];
    } else {
        for (int i = 0; i < CD_M_REJECTED_BY_REASON; i++)
            q->metrics[q->nmetrics++] = (cd_metric_t)i;
    }
    bool times_ok = true;
    static const int tfields[2] = {P_FROM, P_TO};
    int64_t *touts[2] = {&q->from, &q->to};
    for (int i = 0; i < 2; i++) {
        const char *f = param_names[tfields[i]];
        if (!have[tfields[i]]) {
            cd_verrs_add(errs, f, TIME_EXPECTED " (required)");
            times_ok = false;
            continue;
        }
        int rc = parse_time(vals[tfields[i]], tz_ok ? q->tz : NULL, touts[i]);
        if (rc == -1) {
            cd_verrs_add(errs, f, TIME_EXPECTED);
            times_ok = false;
        } else if (rc == -2) {
            cd_verrs_add(errs, f, "a time on an hour boundary (reports are cut from hourly rollups)");
            times_ok = false;
        }
    }
    if (times_ok && tz_ok) {
        int max_days = q->daily ? CD_RQUERY_MAX_DAYS_DAY : CD_RQUERY_MAX_DAYS_HOUR;
        char why[300];
        if (q->to <= q->from)
            cd_verrs_add(errs, "to", "a time after from");
        else if (q->to - q->from > (int64_t)max_days * 86400 + 3600)
            cd_verrs_add(errs, "to", "at most %d days after from with granularity %s", max_days,
                         q->daily ? "day" : "hour");
        else if (cd_tz_check_range(q->tz, q->from, q->to, why, sizeof(why)) != 0)
            cd_verrs_add(errs, "tz", "%s", why);
    }
    return errs->count + errs->dropped > before ? -1 : 0;
}

/* ---- periods ---- */

static int64_t period_of(int64_t hour, void *opaque)
{
    const cd_rquery_t *q = opaque;
    if (!q->daily)
        return hour;
    int64_t local = hour + cd_tz_offset(q->tz, hour);
    int64_t day = local >= 0 ? local / 86400 : -((-local + 86399) / 86400);
    return cd_tz_to_utc(q->tz, day * 86400);
}

void cd_rquery_spec(const cd_rquery_t *q, cd_rspec_t *spec)
{
    memset(spec, 0, sizeof(*spec));
    spec->from = q->from;
    spec->to = q->to;
    spec->ndims = q->ndims;
    memcpy(spec->dims, q->dims, sizeof(q->dims));
    for (int i = 0; i < q->nmetrics; i++) {
        spec->uniques = spec->uniques || q->metrics[i] == CD_M_UNIQUES;
        spec->by_reason = spec->by_reason || q->metrics[i] == CD_M_REJECTED_BY_REASON;
    }
    spec->period = period_of;
    spec->period_opaque = (void *)q;
}

/* ---- writing ---- */

typedef struct buf_s {
    char *p;
    size_t len, cap;
    bool oom;
} buf_t;

static char *reserve(buf_t *b, size_t n)
{
    if (b->oom)
        return NULL;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *np = realloc(b->p, cap);
        if (np == NULL) {
            b->oom = true;
            return NULL;
        }
        b->p = np;
        b->cap = cap;
    }
    return b->p + b->len;
}

static void put(buf_t *b, const char *s, size_t n)
{
    char *o = reserve(b, n);
    if (o != NULL) {
        memcpy(o, s, n);
        b->len += n;
    }
}

static void puts_(buf_t *b, const char *s)
{
    put(b, s, strlen(s));
}

static void putf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(buf_t *b, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    put(b, tmp, n < 0 ? 0 : (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A JSON string; bytes that are not valid UTF-8 become '?' so the answer stays valid JSON. */
static void put_jstr(buf_t *b, const char *s)
{
    size_t n = strlen(s);
    char *o = reserve(b, 2 + 6 * n);
    if (o == NULL)
        return;
    if (at_json_utf8_ok(s, n)) {
        b->len = (size_t)(at_json_put_str(o, s, n) - b->p);
        return;
    }
    char *copy = malloc(n + 1);
    if (copy == NULL) {
        b->oom = true;
        return;
    }
    for (size_t i = 0; i < n; i++)
        copy[i] = (unsigned char)s[i] < 0x80 ? s[i] : '?';
    b->len = (size_t)(at_json_put_str(o, copy, n) - b->p);
    free(copy);
}

/* RFC 4180: quoted (inner quotes doubled) when it holds a comma, quote, CR or LF. */
static void put_csv(buf_t *b, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        puts_(b, s);
        return;
    }
    put(b, "\"", 1);
    for (const char *p = s; *p; p++) {
        if (*p == '"')
            put(b, "\"", 1);
        put(b, p, 1);
    }
    put(b, "\"", 1);
}

/* Decimal @p v into @p out (NUL-terminated): the answers hold hundreds of thousands of
 * integers, and snprintf is most of the cost of writing them. */
static void i64_text(int64_t v, char out[40])
{
    char tmp[24], *e = tmp + sizeof(tmp), *p = e;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--p = '-';
    memcpy(out, p, (size_t)(e - p));
    out[e - p] = '\0';
}

/* A ratio with 6 significant digits, trailing zeros dropped ("0.02", "0.333333",
 * "0.0026087"): printf's %g is most of the cost of a large answer, so it is kept for
 * values this does not cover (1e6 and up, below 1e-9, not finite). */
static void ratio_text(double v, char out[40])
{
    if (!(v >= 1e-9 && v < 1e6)) {
        if (v == 0)
            snprintf(out, 40, "0");
        else
            snprintf(out, 40, "%.6g", v);
        return;
    }
    int d = 5; /* decimals for 6 significant digits: 5 - floor(log10(v)) */
    for (double t = v; t >= 10; t /= 10)
        d--;
    for (double t = v; t < 1; t *= 10)
        d++;
    if (d < 0)
        d = 0;
    double scale = 1;
    for (int i = 0; i < d; i++)
        scale *= 10;
    int64_t x = llround(v * scale), ip = 0;
    uint64_t pow10 = 1;
    for (int i = 0; i < d; i++)
        pow10 *= 10;
    ip = x / (int64_t)pow10;
    int64_t frac = x % (int64_t)pow10;
    i64_text(ip, out);
    if (frac == 0 || d == 0)
        return;
    size_t o = strlen(out);
    out[o++] = '.';
    for (int i = d - 1; i >= 0; i--) {
        out[o + (size_t)i] = (char)('0' + frac % 10);
        frac /= 10;
    }
    o += (size_t)d;
    while (out[o - 1] == '0')
        o--;
    out[o] = '\0';
}

/* A metric's value as text; false when it is null (a zero denominator). */
static bool metric_text(cd_metric_t m, const cd_rrow_t *r, char out[40])
{
    const cd_rsums_t *s = &r->s;
    double num = 0, den = 0;
    bool ratio = false, micros = false;
    switch (m) {
    case CD_M_IMP:
        i64_text(s->imp, out);
        return true;
    case CD_M_VIEW:
        i64_text(s->view, out);
        return true;
    case CD_M_CLICK:
        i64_text(s->click, out);
        return true;
    case CD_M_CONV:
        i64_text(s->conv, out);
        return true;
    case CD_M_SPEND:
        i64_text(s->spend, out);
        return true;
    case CD_M_PAYOUT:
        i64_text(s->payout, out);
        return true;
    case CD_M_REJECTED:
        i64_text(s->rejected, out);
        return true;
    case CD_M_UNIQUES:
        i64_text(llround(r->uniques), out);
        return true;
    case CD_M_CTR:
        num = (double)s->click, den = (double)s->imp, ratio = true;
        break;
    case CD_M_VIEWABILITY:
        num = (double)s->view, den = (double)s->imp, ratio = true;
        break;
    case CD_M_CVR:
        num = (double)s->conv, den = (double)s->click, ratio = true;
        break;
    case CD_M_ECPM:
        num = (double)s->spend * 1000.0, den = (double)s->imp, micros = true;
        break;
    case CD_M_CPC:
        num = (double)s->spend, den = (double)s->click, micros = true;
        break;
    case CD_M_CPA:
        num = (double)s->spend, den = (double)s->conv, micros = true;
        break;
    default:
        return false;
    }
    if (den == 0)
        return false;
    if (ratio)
        ratio_text(num / den, out);
    else if (micros)
        i64_text(llround(num / den), out);
    return true;
}

static void json_metrics(buf_t *b, const cd_rquery_t *q, const cd_rindex_t *ix, const cd_rresult_t *res,
                         const cd_rrow_t *r, bool first)
{
    char v[40];
    for (int i = 0; i < q->nmetrics; i++) {
        cd_metric_t m = q->metrics[i];
        if (first && i == 0)
            put(b, "\"", 1);
        else
            put(b, ",\"", 2);
        put(b, metric_names[m], metric_lens[m]);
        put(b, "\":", 2);
        if (m == CD_M_REJECTED_BY_REASON) {
            size_t n;
            const cd_rrej_t *rj = cd_rresult_rej(res, r, &n);
            put(b, "{", 1);
            for (size_t k = 0; k < n; k++) {
                if (k)
                    put(b, ",", 1);
                put_jstr(b, cd_rindex_str(ix, rj[k].reason));
                char n40[40];
                i64_text(rj[k].n, n40);
                put(b, ":", 1);
                puts_(b, n40);
            }
            put(b, "}", 1);
        } else if (metric_text(m, r, v)) {
            puts_(b, v);
        } else {
            puts_(b, "null");
        }
    }
}

static void render_json(buf_t *b, const cd_rquery_t *q, const cd_rindex_t *ix, const cd_rresult_t *res,
                        int64_t data_through_ms)
{
    char t[32];
    cd_tz_format(q->tz, q->from, t);
    putf(b, "{\"from\":\"%s\"", t);
    cd_tz_format(q->tz, q->to, t);
    putf(b, ",\"to\":\"%s\",\"tz\":", t);
    put_jstr(b, q->tz->name);
    putf(b, ",\"granularity\":\"%s\",\"group_by\":[", q->daily ? "day" : "hour");
    for (int i = 0; i < q->ndims; i++)
        putf(b, "%s\"%s\"", i ? "," : "", dim_names[q->dims[i]]);
    puts_(b, "],\"metrics\":[");
    for (int i = 0; i < q->nmetrics; i++)
        putf(b, "%s\"%s\"", i ? "," : "", metric_names[q->metrics[i]]);
    puts_(b, "],\"rows\":[");
    int64_t shown = INT64_MIN; /* rows come by period: format each period once */
    for (size_t i = 0; i < res->nrows; i++) {
        const cd_rrow_t *r = &res->rows[i];
        if (r->period != shown) {
            cd_tz_format(q->tz, r->period, t);
            shown = r->period;
        }
        puts_(b, i ? ",{\"period\":\"" : "{\"period\":\"");
        puts_(b, t);
        put(b, "\"", 1);
        for (int k = 0; k < q->ndims; k++) {
            put(b, ",\"", 2);
            puts_(b, dim_names[q->dims[k]]);
            put(b, "\":", 2);
            put_jstr(b, cd_rindex_str(ix, r->key[q->dims[k]]));
        }
        json_metrics(b, q, ix, res, r, false);
        put(b, "}", 1);
    }
    puts_(b, "],\"totals\":{");
    json_metrics(b, q, ix, res, &res->totals, true);
    puts_(b, "},\"data_through\":");
    if (data_through_ms == INT64_MIN || at_utc_iso8601(data_through_ms, t) == 0)
        puts_(b, "null");
    else
        putf(b, "\"%s\"", t);
    puts_(b, "}\n");
}

static int cmp_reason(const void *a, const void *b, void *opaque)
{
    return strcmp(cd_rindex_str(opaque, *(const uint32_t *)a), cd_rindex_str(opaque, *(const uint32_t *)b));
}

static void render_csv(buf_t *b, const cd_rquery_t *q, const cd_rindex_t *ix, const cd_rresult_t *res)
{
    /* rejected_by_reason becomes one column per reason seen in the rows. */
    uint32_t *reasons = NULL;
    size_t nreasons = 0;
    bool by_reason = false;
    for (int i = 0; i < q->nmetrics; i++)
        by_reason = by_reason || q->metrics[i] == CD_M_REJECTED_BY_REASON;
    if (by_reason && res->nrej > 0) {
        reasons = malloc(res->nrej * sizeof(*reasons));
        if (reasons == NULL) {
            b->oom = true;
            return;
        }
        for (size_t i = 0; i < res->nrej; i++) {
            size_t k = 0;
            while (k < nreasons && reasons[k] != res->rej[i].reason)
                k++;
            if (k == nreasons)
                reasons[nreasons++] = res->rej[i].reason;
        }
        qsort_r(reasons, nreasons, sizeof(*reasons), cmp_reason, (void *)ix);
    }
    puts_(b, "period");
    for (int k = 0; k < q->ndims; k++)
        putf(b, ",%s", dim_names[q->dims[k]]);
    for (int i = 0; i < q->nmetrics; i++) {
        if (q->metrics[i] != CD_M_REJECTED_BY_REASON) {
            putf(b, ",%s", metric_names[q->metrics[i]]);
            continue;
        }
        for (size_t k = 0; k < nreasons; k++) {
            char col[1100];
            snprintf(col, sizeof(col), "rejected_by_reason.%s", cd_rindex_str(ix, reasons[k]));
            put(b, ",", 1);
            put_csv(b, col);
        }
    }
    puts_(b, "\r\n");
    char t[32], v[40];
    int64_t shown = INT64_MIN;
    for (size_t i = 0; i < res->nrows; i++) {
        const cd_rrow_t *r = &res->rows[i];
        if (r->period != shown) {
            cd_tz_format(q->tz, r->period, t);
            shown = r->period;
        }
        puts_(b, t);
        for (int k = 0; k < q->ndims; k++) {
            put(b, ",", 1);
            put_csv(b, cd_rindex_str(ix, r->key[q->dims[k]]));
        }
        for (int m = 0; m < q->nmetrics; m++) {
            if (q->metrics[m] != CD_M_REJECTED_BY_REASON) {
                put(b, ",", 1);
                if (metric_text(q->metrics[m], r, v))
                    puts_(b, v);
                continue;
            }
            size_t n;
            const cd_rrej_t *rj = cd_rresult_rej(res, r, &n);
            for (size_t k = 0; k < nreasons; k++) {
                int64_t c = 0;
                for (size_t j = 0; j < n; j++)
                    if (rj[j].reason == reasons[k])
                        c = rj[j].n;
                i64_text(c, v);
                put(b, ",", 1);
                puts_(b, v);
            }
        }
        puts_(b, "\r\n");
    }
    free(reasons);
}

int cd_rquery_render(const cd_rquery_t *q, const cd_rindex_t *ix, const cd_rresult_t *res, int64_t data_through_ms,
                     char **body, size_t *len)
{
    buf_t b = {0};
    reserve(&b, 1024 + res->nrows * (size_t)(64 + 24 * (q->ndims + q->nmetrics)));
    if (q->csv)
        render_csv(&b, q, ix, res);
    else
        render_json(&b, q, ix, res, data_through_ms);
    if (b.oom || b.p == NULL) {
        free(b.p);
        return -1;
    }
    *body = b.p;
    *len = b.len;
    return 0;
}
