/*
 * at_metrics.h: a Prometheus metrics registry with text exposition (format 0.0.4).
 *
 * Metrics are registered at start-up (not thread-safe against concurrent registration),
 * then updated from any thread with relaxed atomics (no locks on the hot path).
 * Several series of one family share a name and differ in their label set, given as
 * preformatted Prometheus label text without braces, e.g. "code=\"200\"" (NULL = none).
 * Series of one family are exposed together under a single HELP/TYPE header.
 */
#ifndef AT_METRICS_H
#define AT_METRICS_H

#include "at_common.h"

typedef struct at_metrics_s at_metrics_t;
typedef struct at_counter_s at_counter_t;
typedef struct at_gauge_s at_gauge_t;
typedef struct at_histogram_s at_histogram_t;

/* Called at the start of every render, so gauges fed from elsewhere (queue depths,
 * librdkafka stats) can be refreshed. Runs on the rendering thread. */
typedef void (*at_metrics_collect_cb)(at_metrics_t *m, void *opaque);

/* Returns a new empty registry; free with at_metrics_destroy(). */
at_metrics_t *at_metrics_new(void);
/* Frees the registry and every metric it returned. Accepts NULL. */
void at_metrics_destroy(at_metrics_t *m);

/* Registration: returns a metric owned by the registry (valid until at_metrics_destroy).
 * Registering the same name+labels twice returns the same metric. Names and label text
 * are copied. Returns NULL on a type clash with an existing family or on allocation failure. */
at_counter_t *at_metrics_counter(at_metrics_t *m, const char *name, const char *labels, const char *help);
at_gauge_t *at_metrics_gauge(at_metrics_t *m, const char *name, const char *labels, const char *help);
/* @p bounds: ascending upper bounds (the +Inf bucket is implicit); copied. */
at_histogram_t *at_metrics_histogram(at_metrics_t *m, const char *name, const char *labels, const char *help,
                                     const double *bounds, size_t nbounds);

/* Adds a collect callback (at most 8). */
void at_metrics_on_collect(at_metrics_t *m, at_metrics_collect_cb cb, void *opaque);

/* @locality: any thread */
void at_counter_add(at_counter_t *c, uint64_t n);
uint64_t at_counter_get(const at_counter_t *c);
void at_gauge_set(at_gauge_t *g, double v);
void at_gauge_add(at_gauge_t *g, double delta);
double at_gauge_get(const at_gauge_t *g);
void at_histogram_observe(at_histogram_t *h, double v);
uint64_t at_histogram_count(const at_histogram_t *h);

/* Renders the whole registry as Prometheus text. Returns a heap string the caller frees
 * with free(), and its length in @p len; NULL on allocation failure. @locality: any thread. */
char *at_metrics_render(at_metrics_t *m, size_t *len);

/* Bucket bounds for request latencies in seconds: 50us .. 10s. */
extern const double at_metrics_latency_bounds[];
extern const size_t at_metrics_latency_nbounds;

#endif
