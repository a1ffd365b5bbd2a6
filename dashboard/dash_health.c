/*
 * dash_health.c: see dash_health.h.
 */
#include "dash_health.h"

#include <math.h>

#include "dash_prom.h"

static void on_sample(const dash_prom_sample_t *s, void *opaque)
{
    dash_health_t *h = opaque;
    const char *n = s->name;
    double v = isfinite(s->value) ? s->value : 0;

    if (strcmp(n, "adtrack_spool_bytes") == 0) {
        h->collector = true;
        h->spool_bytes += v;
    } else if (strcmp(n, "adtrack_spool_active") == 0) {
        h->spool_active = v;
    } else if (strcmp(n, "adtrack_kafka_reachable") == 0) {
        h->kafka_reachable = v;
    } else if (strcmp(n, "adtrack_http_requests_total") == 0) {
        h->requests_total += v;
    } else if (strncmp(n, "adtrack_enricher_", 17) == 0) {
        h->enricher = true;
        if (strcmp(n, "adtrack_enricher_events_total") == 0 || strcmp(n, "adtrack_enricher_rejected_total") == 0)
            h->enr_events_total += v;
        else if (strcmp(n, "adtrack_enricher_paused") == 0)
            h->enr_paused = v;
        else if (strcmp(n, "adtrack_enricher_ready") == 0)
            h->enr_ready = v;
        else if (strcmp(n, "adtrack_enricher_consumer_lag") == 0) {
            h->has_lag = true;
            h->consumer_lag += v;
        }
    }
}

void dash_health_extract(const char *text, size_t len, dash_health_t *h)
{
    memset(h, 0, sizeof(*h));
    h->samples = dash_prom_parse(text, len, on_sample, h, &h->bad_lines);
}

double dash_rate(double prev, double cur, double dt_s)
{
    if (!(dt_s > 0))
        return NAN;
    double inc = cur >= prev ? cur - prev : cur;
    return inc / dt_s;
}
