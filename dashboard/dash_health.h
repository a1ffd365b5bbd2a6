/*
 * dash_health.h: the pipeline-health values the dashboard reads from one /metrics scrape
 * of a collector or an enricher (names as in docs/COLLECTOR.md and docs/ENRICHER.md).
 * Families with several series (by code, reason, partition) are summed.
 */
#ifndef DASH_HEALTH_H
#define DASH_HEALTH_H

#include "at_common.h"

typedef struct dash_health_s {
    bool collector;          /* the target exposes adtrack_spool_bytes */
    double spool_bytes;      /* adtrack_spool_bytes */
    double spool_active;     /* adtrack_spool_active */
    double kafka_reachable;  /* adtrack_kafka_reachable */
    double requests_total;   /* sum of adtrack_http_requests_total */
    bool enricher;           /* the target exposes adtrack_enricher_* */
    double enr_events_total; /* sum of adtrack_enricher_events_total + adtrack_enricher_rejected_total */
    double enr_paused;       /* adtrack_enricher_paused */
    double enr_ready;        /* adtrack_enricher_ready */
    bool has_lag;            /* adtrack_enricher_consumer_lag was present */
    double consumer_lag;     /* sum of adtrack_enricher_consumer_lag */
    size_t samples, bad_lines;
} dash_health_t;

/* Fills @p h (zeroed first) from the Prometheus text @p text. */
void dash_health_extract(const char *text, size_t len, dash_health_t *h);

/*
 * The per-second rate of a counter between two readings @p dt_s apart. A counter that went
 * down was restarted (a process restart), so its whole new value counts as the increase,
 * as Prometheus' rate() does. Returns NaN when dt_s <= 0.
 */
double dash_rate(double prev, double cur, double dt_s);

#endif
