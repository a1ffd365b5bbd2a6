/*
 * dash_conf.c: the dashboard's option table. --help, ADTRACK_* environment variables and
 * docs/CONFIGURATION.md are all generated from these rows.
 */
#include "dash_conf.h"

#define C(field) AT_OFF(dash_conf_t, field)

static const at_conf_opt_t dash_conf_opts[] = {
    {"listen", AT_CONF_STR, C(listen), 0, 256, "127.0.0.1:8091",
     "Address to serve the dashboard on, HOST:PORT (IPv6 as [addr]:port)."},
    {"redis", AT_CONF_STR | AT_CONF_CREDS, C(redis), 1, 1024, "127.0.0.1:6379",
     "Redis with the core data and the enrichers' real-time counters: HOST:PORT, a Unix socket path, or redis://[USER[:PASSWORD]@]HOST[:PORT][/DB] (ACL user, AUTH on every connect; no TLS: see docs/SECURITY.md)."},
    {"redis-password", AT_CONF_STR | AT_CONF_SECRET, C(redis_password), 0, 1024, "",
     "Redis password (AUTH), instead of one inside --redis."},
    {"redis-timeout-ms", AT_CONF_INT, C(redis_timeout_ms), 10, 60000, "500",
     "Connect and command timeout for Redis; a poll that takes longer counts as Redis down."},
    {"scrape", AT_CONF_LIST, C(scrape), 0, 32, "",
     "A /metrics endpoint to show in pipeline health, NAME=URL (repeatable), e.g. "
     "collector=http://127.0.0.1:8080/metrics. Only http:// is supported."},
    {"scrape-timeout-ms", AT_CONF_INT, C(scrape_timeout_ms), 10, 10000, "300",
     "Time allowed for one /metrics scrape (connect, request and response); slower targets are shown as down."},
    {"poll-ms", AT_CONF_INT, C(poll_ms), 100, 60000, "1000",
     "How often Redis is polled and the /metrics targets scraped; also the step of every chart."},
    {"history-s", AT_CONF_INT, C(history_s), 10, 3600, "300", "How far back the total events/s chart reaches."},
    {"window-min", AT_CONF_INT, C(window_min), 1, 1440, "60",
     "Counts (impressions, clicks, rejections, ...) are totals over this many most recent minutes."},
    {"max-campaigns", AT_CONF_INT, C(max_campaigns), 1, 100000, "1000",
     "Campaigns shown at most (memory bound); the snapshot says truncated when there are more."},
    {"max-clients", AT_CONF_INT, C(max_clients), 1, 100000, "256",
     "Browsers connected to /events at most; more get 503."},
    {"max-connections", AT_CONF_INT, C(max_connections), 1, 1000000, "1024",
     "Open connections at most (page loads, API calls and /events streams); at the limit new ones wait in the "
     "listen backlog."},
    {"max-connections-per-ip", AT_CONF_INT, C(max_connections_per_ip), 0, 1000000, "64",
     "Open connections per client address; one more is closed at once. 0 = no limit."},
    {"request-timeout-ms", AT_CONF_INT, C(request_timeout_ms), 100, 600000, "10000",
     "Time a connection gets to deliver a whole request once it waits for one, and the keep-alive idle time."},
    {"client-buffer-bytes", AT_CONF_INT, C(client_buffer_bytes), 65536, INT64_C(1) << 30, "4194304",
     "Data queued for one /events client at most; a client that falls further behind is dropped."},
    {"heartbeat-ms", AT_CONF_INT, C(heartbeat_ms), 100, 600000, "15000",
     "An SSE comment is sent to a client that has received nothing for this long."},
    {"auth", AT_CONF_STR, C(auth), 1, 8, "token",
     "token: every page, stream and API call needs one of --auth-token (Bearer header, or the session cookie set by "
     "POST /login); none: no check, only behind a proxy that authenticates (docs/DASHBOARD.md)."},
    {"auth-token", AT_CONF_LIST | AT_CONF_SECRET, C(auth_token), 0, 16, "",
     "Access token (repeatable; env: comma-separated, file: one per line); at least 16 random bytes, e.g. openssl rand "
     "-hex 24. Required with --auth token."},
    {"cookie-secure", AT_CONF_BOOL, C(cookie_secure), 0, 0, "false",
     "Mark the session cookie Secure (set it when the dashboard is served over HTTPS, e.g. behind a TLS proxy)."},
    {"session-hours", AT_CONF_INT, C(session_hours), 1, 720, "12", "Lifetime of a browser session after POST /login."},
    {"reports", AT_CONF_STR, C(reports), 0, 1024, "",
     "adtrack-coredata's base URL (http://HOST:PORT) for the history charts: hourly and daily totals read from its "
     "GET /v1/reports. Empty: no history section."},
    {"reports-token", AT_CONF_STR | AT_CONF_SECRET, C(reports_token), 0, 1024, "",
     "A coredata read token (--read-token there) sent as Bearer with every report request. Required with --reports."},
    {"reports-poll-s", AT_CONF_INT, C(reports_poll_s), 5, 3600, "60",
     "How often the history reports are fetched again (the rollups behind them change by the hour)."},
    {"reports-hours", AT_CONF_INT, C(reports_hours), 1, 744, "48", "Length of the hourly history chart, in hours."},
    {"reports-days", AT_CONF_INT, C(reports_days), 1, 366, "30",
     "Length of the daily history chart and the per-campaign table, in days."},
    {"log-level", AT_CONF_STR, C(log_level), 1, 8, "info", "debug, info, warn or error."},
};

const at_conf_table_t dash_conf_table = {
    .program = "adtrack-dashboard",
    .summary = "The adtrack live dashboard: a web page (GET /) showing, per campaign, events/s, impressions, "
               "views, clicks, CTR, spend against budget and rejections by reason, plus pipeline health "
               "(spool, Kafka lag, enricher throughput), updated by Server-Sent Events (GET /events) from the "
               "Redis counters, the core-data change channel and the services' /metrics.",
    .opts = dash_conf_opts,
    .nopts = AT_ARRAY_LEN(dash_conf_opts),
};
