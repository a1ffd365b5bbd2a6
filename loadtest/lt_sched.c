/*
 * lt_sched.c: arrival schedules (see lt_sched.h).
 */
#include "lt_sched.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#define LT_MAX_STAGES 1000
#define LT_MAX_RATE 10000000.0

int lt_parse_double(const char *s, double *out, const char *what, at_err_t *err)
{
    if (s == NULL || *s == '\0')
        return at_err_set(err, AT_ERR_INVALID, "%s: expected a number, got an empty value", what);
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0)
        return at_err_set(err, AT_ERR_INVALID, "%s: expected a non-negative number, got '%s'", what, s);
    *out = v;
    return 0;
}

int lt_parse_duration(const char *s, int64_t *out_ns, const char *what, at_err_t *err)
{
    if (s == NULL || *s == '\0')
        return at_err_set(err, AT_ERR_INVALID, "%s: expected a duration like 10s or 250ms, got an empty value", what);
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || end == s || !isfinite(v) || v < 0 || *s == '+' || isspace((unsigned char)*s))
        return at_err_set(err, AT_ERR_INVALID, "%s: expected a duration like 10s or 250ms, got '%s'", what, s);
    double mult;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1e9;
    else if (strcmp(end, "ms") == 0)
        mult = 1e6;
    else if (strcmp(end, "us") == 0)
        mult = 1e3;
    else if (strcmp(end, "ns") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0)
        mult = 60e9;
    else if (strcmp(end, "h") == 0)
        mult = 3600e9;
    else
        return at_err_set(err, AT_ERR_INVALID, "%s: unknown unit in '%s' (expected ns, us, ms, s, m or h)", what, s);
    double ns = v * mult;
    if (ns > 365.0 * 86400e9)
        return at_err_set(err, AT_ERR_RANGE, "%s: '%s' is longer than a year", what, s);
    *out_ns = (int64_t)llround(ns);
    return 0;
}

int lt_parse_stages(const char *spec, lt_stage_t **out, size_t *n, at_err_t *err)
{
    *out = NULL;
    *n = 0;
    if (spec == NULL || *spec == '\0')
        return at_err_set(err, AT_ERR_INVALID,
                          "--stages: expected rate:duration[,rate:duration...], got an empty value");
    size_t cap = 1;
    for (const char *p = spec; *p; p++)
        cap += *p == ',';
    if (cap > LT_MAX_STAGES)
        return at_err_set(err, AT_ERR_TOO_LARGE, "--stages: more than %d stages", LT_MAX_STAGES);
    lt_stage_t *st = calloc(cap, sizeof(*st));
    if (st == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "--stages: out of memory");
    size_t count = 0;
    const char *p = spec;
    while (1) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char item[128];
        if (len == 0 || len >= sizeof(item)) {
            free(st);
            return at_err_set(err, AT_ERR_INVALID, "--stages: stage %zu: expected rate:duration, got '%.*s'", count + 1,
                              (int)AT_MIN(len, 64), p);
        }
        memcpy(item, p, len);
        item[len] = '\0';
        char *colon = strchr(item, ':');
        if (colon == NULL) {
            free(st);
            return at_err_set(err, AT_ERR_INVALID, "--stages: stage %zu: expected rate:duration, got '%s'", count + 1,
                              item);
        }
        *colon = '\0';
        at_err_t e2;
        char what[48];
        snprintf(what, sizeof(what), "--stages: stage %zu rate", count + 1);
        if (lt_parse_double(item, &st[count].rate, what, &e2) < 0 || st[count].rate > LT_MAX_RATE) {
            free(st);
            return at_err_set(err, AT_ERR_INVALID, "--stages: stage %zu: expected a rate from 0 to %.0f/s, got '%s'",
                              count + 1, LT_MAX_RATE, item);
        }
        snprintf(what, sizeof(what), "--stages: stage %zu duration", count + 1);
        if (lt_parse_duration(colon + 1, &st[count].dur_ns, what, err) < 0) {
            free(st);
            return -1;
        }
        count++;
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    *out = st;
    *n = count;
    return 0;
}

static double stage_start_rate(const lt_sched_t *s, size_t k)
{
    return k == 0 ? s->start_rate : s->stages[k - 1].rate;
}

int lt_sched_init_rate(lt_sched_t *s, double start_rate, const lt_stage_t *stages, size_t nstages, uint64_t max_total,
                       at_err_t *err)
{
    memset(s, 0, sizeof(*s));
    if (nstages == 0)
        return at_err_set(err, AT_ERR_INVALID, "schedule: no stages");
    if (start_rate < 0 || start_rate > LT_MAX_RATE)
        return at_err_set(err, AT_ERR_RANGE, "schedule: start rate out of range");
    s->stages = calloc(nstages, sizeof(*s->stages));
    s->t0 = calloc(nstages + 1, sizeof(*s->t0));
    s->n0 = calloc(nstages + 1, sizeof(*s->n0));
    if (s->stages == NULL || s->t0 == NULL || s->n0 == NULL) {
        lt_sched_free(s);
        return at_err_set(err, AT_ERR_NOMEM, "schedule: out of memory");
    }
    memcpy(s->stages, stages, nstages * sizeof(*stages));
    s->nstages = nstages;
    s->start_rate = start_rate;
    for (size_t k = 0; k < nstages; k++) {
        double r0 = stage_start_rate(s, k), r1 = stages[k].rate;
        if (r1 < 0 || r1 > LT_MAX_RATE || stages[k].dur_ns < 0) {
            lt_sched_free(s);
            return at_err_set(err, AT_ERR_RANGE, "schedule: stage %zu out of range", k + 1);
        }
        s->t0[k + 1] = s->t0[k] + stages[k].dur_ns;
        s->n0[k + 1] = s->n0[k] + (r0 + r1) / 2.0 * ((double)stages[k].dur_ns / 1e9);
    }
    s->duration_ns = s->t0[nstages];
    /* Arrival i happens where N(t) = i; those with t < end are the ones with i < N(end).
     * The small epsilon keeps an exact product (500/s * 10 s) from rounding up to 5001. */
    double nt = s->n0[nstages];
    double c = ceil(nt - 1e-7);
    s->total = c <= 0 ? 0 : (uint64_t)c;
    if (max_total > 0 && s->total > max_total)
        s->total = max_total;
    if (s->total == 0) {
        lt_sched_free(s);
        return at_err_set(err, AT_ERR_INVALID, "schedule: the rate and duration give no requests at all");
    }
    return 0;
}

int lt_sched_init_times(lt_sched_t *s, const int64_t *times, uint64_t n, at_err_t *err)
{
    memset(s, 0, sizeof(*s));
    if (n == 0)
        return at_err_set(err, AT_ERR_INVALID, "schedule: no requests to replay");
    for (uint64_t i = 0; i < n; i++) {
        if (times[i] < 0 || (i > 0 && times[i] < times[i - 1]))
            return at_err_set(err, AT_ERR_INVALID, "schedule: replay times not sorted at %llu", (unsigned long long)i);
    }
    s->times = times;
    s->ntimes = n;
    s->total = n;
    s->duration_ns = times[n - 1] + 1;
    return 0;
}

void lt_sched_free(lt_sched_t *s)
{
    if (s == NULL)
        return;
    free(s->stages);
    free(s->t0);
    free(s->n0);
    memset(s, 0, sizeof(*s));
}

int64_t lt_sched_time(const lt_sched_t *s, uint64_t i)
{
    if (s->times != NULL)
        return s->times[i < s->ntimes ? i : s->ntimes - 1];
    double n = (double)i;
    /* Last stage k with n0[k] <= n (stages with no arrivals are passed over). */
    size_t lo = 0, hi = s->nstages; /* invariant: n0[lo] <= n, answer in [lo, hi) */
    while (hi - lo > 1) {
        size_t mid = (lo + hi) / 2;
        if (s->n0[mid] <= n)
            lo = mid;
        else
            hi = mid;
    }
    size_t k = lo;
    while (k + 1 < s->nstages && s->n0[k + 1] <= n && s->n0[k + 1] == s->n0[k])
        k++;
    double dn = n - s->n0[k];
    double r0 = stage_start_rate(s, k), r1 = s->stages[k].rate;
    double d = (double)s->stages[k].dur_ns / 1e9;
    double t; /* seconds into the stage: solve r0 t + (r1 - r0) t^2 / (2d) = dn */
    if (dn <= 0 || d <= 0) {
        t = 0;
    } else {
        double a = (r1 - r0) / (2.0 * d), b = r0;
        double disc = b * b + 4.0 * a * dn;
        if (disc < 0)
            disc = 0;
        double den = b + sqrt(disc);
        t = den > 0 ? 2.0 * dn / den : d;
        if (t > d)
            t = d;
    }
    return s->t0[k] + (int64_t)llround(t * 1e9);
}

double lt_sched_rate_at(const lt_sched_t *s, int64_t t_ns)
{
    if (s->times != NULL)
        return s->duration_ns > 0 ? (double)s->total / ((double)s->duration_ns / 1e9) : 0;
    for (size_t k = 0; k < s->nstages; k++) {
        if (t_ns < s->t0[k + 1] || k + 1 == s->nstages) {
            double r0 = stage_start_rate(s, k), r1 = s->stages[k].rate;
            int64_t d = s->stages[k].dur_ns;
            if (d <= 0)
                return r1;
            double f = (double)(t_ns - s->t0[k]) / (double)d;
            if (f < 0)
                f = 0;
            if (f > 1)
                f = 1;
            return r0 + (r1 - r0) * f;
        }
    }
    return 0;
}
