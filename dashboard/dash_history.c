/*
 * dash_history.c: the history thread. Every --reports-poll-s it asks adtrack-coredata's
 * reporting API (GET /v1/reports, docs/REPORTS.md) for two reports and hands them to the
 * loop as one `history` JSON (the page draws the charts from it):
 *   - hourly totals of the last --reports-hours hours (granularity=hour, no grouping);
 *   - daily numbers per campaign of the last --reports-days days (granularity=day,
 *     group_by=campaign); the page sums them per day for the daily chart and lists the
 *     campaigns in a table.
 * Both in UTC. The reports come from the hourly rollups, so they lag the live view by the
 * rollups' own delay (seconds), and a new fetch once a minute is plenty.
 *
 * A thread of its own, not the poll thread: a slow or hung coredata must not delay the
 * live numbers (each request is bounded by --scrape-timeout-ms x 10, at least 3 s).
 * It owns nothing shared: the answers go to the loop as a DASH_MSG_HISTORY message.
 */
#include "dash_history.h"

#include <bson/bson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "at_log.h"

#define REPORT_MAX_BYTES (16u << 20)
#define METRICS "imp,view,click,conv,spend_micros,payout_micros,rejected,ctr,cpa_micros"

int dash_history_init(dash_server_t *srv, at_err_t *err)
{
    const dash_conf_t *conf = srv->conf;
    if (conf->reports == NULL || conf->reports[0] == '\0')
        return 0;
    if (conf->reports_token == NULL || conf->reports_token[0] == '\0')
        return at_err_set(err, AT_ERR_INVALID, "--reports-token: required with --reports (a coredata read token)");
    for (const char *c = conf->reports_token; *c; c++)
        if ((unsigned char)*c < 0x21 || *c == 0x7f)
            return at_err_set(err, AT_ERR_INVALID, "--reports-token: expected printable characters without spaces");
    at_err_t uerr = {0};
    if (dash_url_parse(conf->reports, &srv->reports_url, &uerr) != 0) {
        /* the parser names --scrape, its first user */
        const char *msg = strncmp(uerr.msg, "--scrape: ", 10) == 0 ? uerr.msg + 10 : uerr.msg;
        return at_err_set(err, AT_ERR_INVALID, "--reports: %s", msg);
    }
    /* the base URL's path is a prefix: "/" or "/something" (a proxy in front) */
    size_t pl = strlen(srv->reports_url.path);
    if (strchr(srv->reports_url.path, '?') != NULL)
        return at_err_set(err, AT_ERR_INVALID, "--reports: expected a base URL without a query, e.g. http://HOST:PORT");
    if (pl > 0 && srv->reports_url.path[pl - 1] == '/')
        srv->reports_url.path[pl - 1] = '\0';
    srv->history_on = true;
    return 0;
}

static void utc_hour(int64_t s, char *out, size_t cap)
{
    time_t t = (time_t)s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%dT%H:00:00Z", &tm);
}

static void utc_day(int64_t s, char *out, size_t cap)
{
    time_t t = (time_t)s;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, cap, "%Y-%m-%d", &tm);
}

/* GETs one report into *body (heap) and checks it is JSON. 0 or -1 + err. */
static int fetch(dash_server_t *srv, const char *query, char **body, size_t *len, at_err_t *err)
{
    dash_url_t u = srv->reports_url;
    int n = snprintf(u.path, sizeof(u.path), "%s/v1/reports?%s", srv->reports_url.path, query);
    if (n < 0 || (size_t)n >= sizeof(u.path))
        return at_err_set(err, AT_ERR_INVALID, "report URL too long");
    int timeout = (int)AT_MAX(3000, srv->conf->scrape_timeout_ms * 10);
    if (dash_http_get(&u, "application/json", srv->conf->reports_token, timeout, REPORT_MAX_BYTES, body, len, err) != 0)
        return -1;
    bson_t doc;
    bson_error_t berr;
    if (!bson_init_from_json(&doc, *body, (ssize_t)*len, &berr)) {
        free(*body);
        *body = NULL;
        return at_err_set(err, AT_ERR_INVALID, "the report is not JSON: %s", berr.message);
    }
    bson_destroy(&doc);
    return 0;
}

char *dash_history_build(dash_server_t *srv, int64_t now_ms, size_t *len)
{
    const dash_conf_t *conf = srv->conf;
    int64_t now_s = now_ms / 1000;
    int64_t hour_end = (now_s / 3600 + 1) * 3600;
    int64_t day_end = (now_s / 86400 + 1) * 86400;
    char from[32], to[32], q[512];
    at_err_t err = {0};
    char *hourly = NULL, *daily = NULL;
    size_t hlen = 0, dlen = 0;

    utc_hour(hour_end - conf->reports_hours * 3600, from, sizeof(from));
    utc_hour(hour_end, to, sizeof(to));
    snprintf(q, sizeof(q), "from=%s&to=%s&granularity=hour&tz=UTC&metrics=" METRICS, from, to);
    int rc = fetch(srv, q, &hourly, &hlen, &err);
    if (rc == 0) {
        utc_day(day_end - conf->reports_days * 86400, from, sizeof(from));
        utc_day(day_end, to, sizeof(to));
        snprintf(q, sizeof(q), "from=%s&to=%s&granularity=day&tz=UTC&group_by=campaign&metrics=" METRICS, from, to);
        rc = fetch(srv, q, &daily, &dlen, &err);
    }

    bson_string_t *s = bson_string_new(NULL);
    bson_string_append_printf(s, "{\"v\":1,\"ts_ms\":%" PRId64 ",\"ok\":%s", now_ms, rc == 0 ? "true" : "false");
    if (rc == 0) {
        bson_string_append(s, ",\"hourly\":");
        bson_string_append(s, hourly);
        bson_string_append(s, ",\"daily\":");
        bson_string_append(s, daily);
    } else {
        /* the message is ours (at_err), printable ASCII: escape what JSON needs */
        bson_string_append(s, ",\"error\":\"");
        for (const char *c = err.msg; *c; c++) {
            if (*c == '"' || *c == '\\')
                bson_string_append_c(s, '\\');
            if ((unsigned char)*c >= 0x20)
                bson_string_append_c(s, *c);
        }
        bson_string_append(s, "\"");
    }
    bson_string_append(s, "}");
    free(hourly);
    free(daily);
    if (rc != 0) {
        at_counter_add(srv->stats.history_errors, 1);
        if (!srv->history_failing)
            at_log(AT_LOG_WARN, "dashboard", "history reports unavailable; retrying every --reports-poll-s", "error",
                   err.msg, NULL);
    } else if (srv->history_failing) {
        at_log(AT_LOG_INFO, "dashboard", "history reports available again", NULL);
    }
    srv->history_failing = rc != 0;
    at_counter_add(srv->stats.history_fetches, 1);
    *len = s->len;
    return bson_string_free(s, false);
}

void *dash_history_main(void *arg)
{
    dash_server_t *srv = arg;
    while (!atomic_load(&srv->stopping)) {
        size_t len = 0;
        char *json = dash_history_build(srv, dash_wall_ms(), &len);
        if (json != NULL)
            dash_server_post(srv, DASH_MSG_HISTORY, json, len);
        int64_t until = dash_mono_ms() + srv->conf->reports_poll_s * 1000;
        pthread_mutex_lock(&srv->history_mu);
        while (!atomic_load(&srv->stopping) && dash_mono_ms() < until) {
            int64_t left = AT_MIN(until - dash_mono_ms(), 1000);
            if (left <= 0)
                break;
            dash_cond_wait_ms(&srv->history_cv, &srv->history_mu, left);
        }
        pthread_mutex_unlock(&srv->history_mu);
    }
    return NULL;
}
