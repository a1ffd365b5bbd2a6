/*
 * at_metrics.c: Prometheus registry and text exposition 0.0.4 (see at_metrics.h).
 *
 * Concurrency model: the registry's structure (families, series, callbacks) is guarded by
 * one mutex, taken only by registration and rendering. Metric values are atomics updated
 * with relaxed ordering: each value is independent, and a scrape needs no ordering between
 * them, only that no increment is lost.
 */
#include "at_metrics.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#define MAX_COLLECT_CBS 8

typedef enum fam_type_e { FAM_COUNTER, FAM_GAUGE, FAM_HISTOGRAM } fam_type_t;

/* Every series starts with this header so a family can hold any of the three kinds. */
typedef struct series_s {
    char *labels; /* "" when none */
} series_t;

struct at_counter_s {
    series_t s;
    _Atomic uint64_t value;
};

/* A double kept as its bit pattern: C11 has no portable atomic double with fetch_add. */
struct at_gauge_s {
    series_t s;
    _Atomic uint64_t bits;
};

struct at_histogram_s {
    series_t s;
    double *bounds;
    size_t nbounds;
    /* Per-bucket (non-cumulative) counts, nbounds + 1 with the last one for +Inf. Storing
     * them non-cumulatively makes observe() a single increment; render sums them. */
    _Atomic uint64_t *buckets;
    _Atomic uint64_t sum_bits;
};

typedef struct collect_s {
    at_metrics_collect_cb cb;
    void *opaque;
} collect_t;

typedef struct family_s {
    char *name;
    char *help;
    fam_type_t type;
    series_t **series;
    size_t nseries;
} family_t;

struct at_metrics_s {
    pthread_mutex_t lock;
    family_t **fams;
    size_t nfams;
    collect_t cbs[MAX_COLLECT_CBS];
    size_t ncbs;
};

const double at_metrics_latency_bounds[] = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
};
const size_t at_metrics_latency_nbounds = AT_ARRAY_LEN(at_metrics_latency_bounds);

static uint64_t dbl_bits(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double bits_dbl(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

static void atomic_dbl_add(_Atomic uint64_t *a, double delta)
{
    uint64_t old = atomic_load_explicit(a, memory_order_relaxed);
    /* On failure the CAS reloads @p old, so each retry adds to the latest value. */
    while (!atomic_compare_exchange_weak_explicit(a, &old, dbl_bits(bits_dbl(old) + delta), memory_order_relaxed,
                                                  memory_order_relaxed))
        ;
}

at_metrics_t *at_metrics_new(void)
{
    at_metrics_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    return m;
}

static void series_free(fam_type_t type, series_t *s)
{
    if (s == NULL)
        return;
    if (type == FAM_HISTOGRAM) {
        at_histogram_t *h = (at_histogram_t *)s;
        free(h->bounds);
        free(h->buckets);
    }
    free(s->labels);
    free(s);
}

void at_metrics_destroy(at_metrics_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nfams; i++) {
        family_t *f = m->fams[i];
        for (size_t j = 0; j < f->nseries; j++)
            series_free(f->type, f->series[j]);
        free(f->series);
        free(f->name);
        free(f->help);
        free(f);
    }
    free(m->fams);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

/* Finds or creates the family; NULL on type clash or allocation failure. Lock held. */
static family_t *family_get(at_metrics_t *m, const char *name, const char *help, fam_type_t type)
{
    for (size_t i = 0; i < m->nfams; i++) {
        if (strcmp(m->fams[i]->name, name) == 0)
            return m->fams[i]->type == type ? m->fams[i] : NULL;
    }
    family_t **fams = realloc(m->fams, (m->nfams + 1) * sizeof(*fams));
    if (fams == NULL)
        return NULL;
    m->fams = fams;
    family_t *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->name = strdup(name);
    f->help = strdup(help ? help : "");
    f->type = type;
    if (f->name == NULL || f->help == NULL) {
        free(f->name);
        free(f->help);
        free(f);
        return NULL;
    }
    m->fams[m->nfams++] = f;
    return f;
}

static series_t *series_find(family_t *f, const char *labels)
{
    for (size_t i = 0; i < f->nseries; i++)
        if (strcmp(f->series[i]->labels, labels) == 0)
            return f->series[i];
    return NULL;
}

static bool series_add(family_t *f, series_t *s)
{
    series_t **arr = realloc(f->series, (f->nseries + 1) * sizeof(*arr));
    if (arr == NULL)
        return false;
    f->series = arr;
    f->series[f->nseries++] = s;
    return true;
}

/*
 * Shared registration path: returns the existing series for name+labels, or a new zeroed
 * one of @p size bytes created by @p init (may be NULL). Takes and releases the lock.
 */
static series_t *register_series(at_metrics_t *m, const char *name, const char *labels, const char *help,
                                 fam_type_t type, size_t size, bool (*init)(series_t *, const void *), const void *arg)
{
    if (m == NULL || name == NULL || name[0] == '\0')
        return NULL;
    if (labels == NULL)
        labels = "";
    series_t *s = NULL;
    pthread_mutex_lock(&m->lock);
    family_t *f = family_get(m, name, help, type);
    if (f == NULL)
        goto out;
    s = series_find(f, labels);
    if (s != NULL)
        goto out;
    s = calloc(1, size);
    if (s == NULL)
        goto out;
    s->labels = strdup(labels);
    if (s->labels == NULL || (init != NULL && !init(s, arg)) || !series_add(f, s)) {
        series_free(type, s);
        s = NULL;
    }
out:
    pthread_mutex_unlock(&m->lock);
    return s;
}

at_counter_t *at_metrics_counter(at_metrics_t *m, const char *name, const char *labels, const char *help)
{
    return (at_counter_t *)register_series(m, name, labels, help, FAM_COUNTER, sizeof(at_counter_t), NULL, NULL);
}

at_gauge_t *at_metrics_gauge(at_metrics_t *m, const char *name, const char *labels, const char *help)
{
    /* calloc's all-zero bits are +0.0 in IEEE 754, so a new gauge reads 0 without init. */
    return (at_gauge_t *)register_series(m, name, labels, help, FAM_GAUGE, sizeof(at_gauge_t), NULL, NULL);
}

typedef struct hist_args_s {
    const double *bounds;
    size_t nbounds;
} hist_args_t;

static bool hist_init(series_t *s, const void *arg)
{
    const hist_args_t *a = arg;
    at_histogram_t *h = (at_histogram_t *)s;
    h->nbounds = a->nbounds;
    h->bounds = malloc(AT_MAX(a->nbounds, 1) * sizeof(double));
    h->buckets = calloc(a->nbounds + 1, sizeof(*h->buckets));
    if (h->bounds == NULL || h->buckets == NULL)
        return false;
    if (a->nbounds > 0)
        memcpy(h->bounds, a->bounds, a->nbounds * sizeof(double));
    return true;
}

at_histogram_t *at_metrics_histogram(at_metrics_t *m, const char *name, const char *labels, const char *help,
                                     const double *bounds, size_t nbounds)
{
    /* Unsorted bounds would make the cumulative buckets meaningless; refuse them early. */
    for (size_t i = 0; i < nbounds; i++)
        if (isnan(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
            return NULL;
    hist_args_t a = {bounds, nbounds};
    return (at_histogram_t *)register_series(m, name, labels, help, FAM_HISTOGRAM, sizeof(at_histogram_t), hist_init,
                                             &a);
}

void at_metrics_on_collect(at_metrics_t *m, at_metrics_collect_cb cb, void *opaque)
{
    pthread_mutex_lock(&m->lock);
    /* The limit is a fixed-size array; a ninth callback is a programming error and is
     * dropped rather than overflowing. */
    if (m->ncbs < MAX_COLLECT_CBS) {
        m->cbs[m->ncbs].cb = cb;
        m->cbs[m->ncbs].opaque = opaque;
        m->ncbs++;
    }
    pthread_mutex_unlock(&m->lock);
}

void at_counter_add(at_counter_t *c, uint64_t n)
{
    atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
}

uint64_t at_counter_get(const at_counter_t *c)
{
    return atomic_load_explicit((_Atomic uint64_t *)&c->value, memory_order_relaxed);
}

void at_gauge_set(at_gauge_t *g, double v)
{
    atomic_store_explicit(&g->bits, dbl_bits(v), memory_order_relaxed);
}

void at_gauge_add(at_gauge_t *g, double delta)
{
    atomic_dbl_add(&g->bits, delta);
}

double at_gauge_get(const at_gauge_t *g)
{
    return bits_dbl(atomic_load_explicit((_Atomic uint64_t *)&g->bits, memory_order_relaxed));
}

void at_histogram_observe(at_histogram_t *h, double v)
{
    /* Linear scan: bucket lists are short (~20) and the scan stays in one cache line or two;
     * NaN compares false everywhere and lands in +Inf. */
    size_t i = 0;
    while (i < h->nbounds && !(v <= h->bounds[i]))
        i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    atomic_dbl_add(&h->sum_bits, v);
}

uint64_t at_histogram_count(const at_histogram_t *h)
{
    uint64_t n = 0;
    for (size_t i = 0; i <= h->nbounds; i++)
        n += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
    return n;
}

/* Prometheus float text: shortest form that reads back exactly, plus +Inf/-Inf/NaN. */
static void fmt_double(char *buf, size_t len, double d)
{
    if (isnan(d)) {
        snprintf(buf, len, "NaN");
        return;
    }
    if (isinf(d)) {
        snprintf(buf, len, d > 0 ? "+Inf" : "-Inf");
        return;
    }
    /* Fewest significant digits that read back exactly... */
    int prec = 1;
    for (; prec < 17; prec++) {
        snprintf(buf, len, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    /* ...but %g alone would print 10 as "1e+01". Widen the precision to cover the integer
     * digits so moderate magnitudes stay in plain notation; tiny and huge ones keep the
     * exponent form (5e-05), as the Go client prints them. */
    snprintf(buf, len, "%.*e", prec - 1, d);
    const char *e = strchr(buf, 'e');
    int exp10 = e ? atoi(e + 1) : 0;
    if (exp10 >= prec && exp10 < 17)
        prec = exp10 + 1;
    snprintf(buf, len, "%.*g", prec, d);
}

/* HELP text escapes backslash and newline (exposition format 0.0.4). */
static void write_help(FILE *out, const char *help)
{
    for (const char *p = help; *p != '\0'; p++) {
        if (*p == '\\')
            fputs("\\\\", out);
        else if (*p == '\n')
            fputs("\\n", out);
        else
            fputc(*p, out);
    }
}

static void write_labels(FILE *out, const char *labels, const char *le)
{
    if (labels[0] == '\0' && le == NULL)
        return;
    fputc('{', out);
    fputs(labels, out);
    if (le != NULL)
        fprintf(out, "%sle=\"%s\"", labels[0] != '\0' ? "," : "", le);
    fputc('}', out);
}

static void render_family(FILE *out, const family_t *f)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    char num[64];
    fprintf(out, "# HELP %s ", f->name);
    write_help(out, f->help);
    fprintf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
    for (size_t i = 0; i < f->nseries; i++) {
        const series_t *s = f->series[i];
        switch (f->type) {
        case FAM_COUNTER:
            fputs(f->name, out);
            write_labels(out, s->labels, NULL);
            fprintf(out, " %" PRIu64 "\n", at_counter_get((const at_counter_t *)s));
            break;
        case FAM_GAUGE:
            fmt_double(num, sizeof(num), at_gauge_get((const at_gauge_t *)s));
            fputs(f->name, out);
            write_labels(out, s->labels, NULL);
            fprintf(out, " %s\n", num);
            break;
        case FAM_HISTOGRAM: {
            const at_histogram_t *h = (const at_histogram_t *)s;
            /* _count is the +Inf bucket's cumulative total computed here, so the two agree
             * even while other threads observe concurrently. */
            uint64_t cum = 0;
            for (size_t b = 0; b <= h->nbounds; b++) {
                cum += atomic_load_explicit(&h->buckets[b], memory_order_relaxed);
                if (b < h->nbounds)
                    fmt_double(num, sizeof(num), h->bounds[b]);
                else
                    snprintf(num, sizeof(num), "+Inf");
                fprintf(out, "%s_bucket", f->name);
                write_labels(out, s->labels, num);
                fprintf(out, " %" PRIu64 "\n", cum);
            }
            fmt_double(num, sizeof(num), bits_dbl(atomic_load_explicit(&h->sum_bits, memory_order_relaxed)));
            fprintf(out, "%s_sum", f->name);
            write_labels(out, s->labels, NULL);
            fprintf(out, " %s\n", num);
            fprintf(out, "%s_count", f->name);
            write_labels(out, s->labels, NULL);
            fprintf(out, " %" PRIu64 "\n", cum);
            break;
        }
        }
    }
}

char *at_metrics_render(at_metrics_t *m, size_t *len)
{
    /* Callbacks run without the lock: they may register gauges, which takes it. A copy is
     * taken so a concurrent at_metrics_on_collect() cannot race the loop. */
    pthread_mutex_lock(&m->lock);
    size_t ncbs = m->ncbs;
    collect_t cbs[MAX_COLLECT_CBS];
    memcpy(cbs, m->cbs, sizeof(cbs));
    pthread_mutex_unlock(&m->lock);
    for (size_t i = 0; i < ncbs; i++)
        cbs[i].cb(m, cbs[i].opaque);

    char *buf = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&buf, &size);
    if (out == NULL)
        return NULL;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->nfams; i++)
        render_family(out, m->fams[i]);
    pthread_mutex_unlock(&m->lock);
    bool failed = ferror(out) != 0;
    if (fclose(out) != 0 || failed) {
        free(buf);
        return NULL;
    }
    if (len != NULL)
        *len = size;
    return buf;
}
