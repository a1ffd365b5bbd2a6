/*
 * col_conf.c: the collector's option table. --help, ADTRACK_* environment variables and
 * docs/CONFIGURATION.md are all generated from these rows.
 */
#include "col_conf.h"

#define C(field) AT_OFF(col_conf_t, field)

static const at_conf_opt_t col_conf_opts[] = {
    {"listen", AT_CONF_STR, C(listen), 0, 256, "0.0.0.0:8080", "Address to serve HTTP on, HOST:PORT (IPv6 as [addr]:port)."},
    {"threads", AT_CONF_INT, C(threads), 1, 64, "2",
     "Event-loop threads; each has its own SO_REUSEPORT listener and Kafka producer."},
    {"brokers", AT_CONF_STR, C(brokers), 1, 4096, "127.0.0.1:9092", "Kafka bootstrap servers, comma-separated."},
    {"kafka-prop", AT_CONF_LIST, C(kafka_prop), 0, 64, "",
     "Extra librdkafka producer property name=value (repeatable), e.g. compression.type=lz4; security settings "
     "have options of their own (--kafka-security-protocol ...)."},
    AT_KAFKA_SEC_OPTS(col_conf_t, kafka),
    {"topic-raw", AT_CONF_STR, C(topic_raw), 1, 249, "adtrack.events.raw", "Topic for accepted events."},
    {"topic-rejected", AT_CONF_STR, C(topic_rejected), 1, 249, "adtrack.events.rejected",
     "Topic for rejected events (with a reason)."},
    {"kafka-timeout-ms", AT_CONF_INT, C(kafka_timeout_ms), 100, 300000, "5000",
     "How long librdkafka keeps trying an event (its message.timeout.ms) before it reports a failure. A request "
     "does not wait that long: after --kafka-ack-wait-ms it is answered from a copy in the spool while the "
     "original is still tried, and the copy is sent only if the original never landed."},
    {"kafka-ack-wait-ms", AT_CONF_INT, C(kafka_ack_wait_ms), 10, 300000, "500",
     "The longest a request waits for Kafka's acknowledgement: then it is answered from a copy in the spool (kept in "
     "doubt: sent later only if the original never landed), and the event's partition counts as in trouble, so its "
     "next events go to the spool at once until Kafka takes the partition's events again."},
    {"linger-ms", AT_CONF_INT, C(linger_ms), 0, 1000, "1",
     "librdkafka linger.ms: how long the producer waits to batch; adds directly to pixel latency."},
    {"spool-dir", AT_CONF_STR, C(spool_dir), 1, 4096, "data/spool",
     "Directory of the local spool that keeps events durable while Kafka cannot take them."},
    {"spool-max-bytes", AT_CONF_INT, C(spool_max_bytes), 1048576, INT64_C(1) << 50, "1073741824",
     "Spool size limit; above it /readyz fails and events that would need the spool get 503."},
    {"url-max-bytes", AT_CONF_INT, C(url_max_bytes), 256, 65536, "8192", "Longest accepted request target; longer gets 414."},
    {"body-max-bytes", AT_CONF_INT, C(body_max_bytes), 1024, 16777216, "65536",
     "Largest accepted POST /v1/events body; larger gets 413."},
    {"max-connections", AT_CONF_INT, C(max_connections), 1, 1000000, "10000",
     "Open connections per process; at the limit new ones wait in the listen backlog until others close. Lowered "
     "at start if the open-files limit cannot hold it."},
    {"max-connections-per-ip", AT_CONF_INT, C(max_connections_per_ip), 0, 1000000, "1000",
     "Open connections per client address (--trusted-proxies exempt); one more is closed at once. 0 = no limit."},
    {"request-timeout-ms", AT_CONF_INT, C(request_timeout_ms), 100, 600000, "10000",
     "Time a connection gets to deliver a whole request (headers and body) once it waits for one, and the "
     "keep-alive idle time; slower clients are disconnected."},
    {"click-key", AT_CONF_STR | AT_CONF_SECRET, C(click_key), 0, 1024, "",
     "HMAC-SHA256 key that signs click destinations (sig = base64url(HMAC(key, d))); empty refuses all redirects."},
    {"postback-keys", AT_CONF_LIST | AT_CONF_SECRET, C(postback_keys), 0, 10000, "",
     "Per-advertiser keys for server-to-server conversions (/v1/postback): '<advertiser id> <secret>', one per line "
     "of --postback-keys-file ('#' starts a comment line). A postback authenticates with 'Authorization: Bearer "
     "<secret>' or sig = base64url(HMAC-SHA256(secret, its parameters without sig)). None refuses every postback."},
    {"cookie-name", AT_CONF_STR, C(cookie_name), 1, 64, "adtrack_uid", "First-party user-id cookie name."},
    {"cookie-max-age-days", AT_CONF_INT, C(cookie_max_age_days), 0, 3650, "365",
     "Lifetime of the user-id cookie; 0 disables the cookie."},
    {"cookie-domain", AT_CONF_STR, C(cookie_domain), 0, 253, "", "Domain attribute of the cookie (empty: host only)."},
    {"cookie-secure", AT_CONF_BOOL, C(cookie_secure), 0, 0, "false",
     "Mark the cookie Secure; SameSite=None (needed in third-party contexts over HTTPS)."},
    {"trusted-proxies", AT_CONF_LIST, C(trusted_proxies), 0, 64, "",
     "CIDRs of load balancers whose X-Forwarded-For is trusted (repeatable), e.g. 10.0.0.0/8."},
    {"lb-request-id-header", AT_CONF_STR, C(lb_request_id_header), 0, 64, "x-adtrack-request-id",
     "Header (\"<unix ms>-<token>\", set once per request by a --trusted-proxies load balancer) from which event ids "
     "are derived, so a request the balancer retries on another collector keeps its event ids; empty disables."},
    {"ip-truncate", AT_CONF_BOOL, C(ip_truncate), 0, 0, "true",
     "Store client IPs truncated (IPv4 /24, IPv6 /48)."},
    {"honor-privacy-signals", AT_CONF_BOOL, C(honor_privacy_signals), 0, 0, "true",
     "On DNT: 1 or Sec-GPC: 1, set no cookie and store neither user id nor IP."},
    {"cors-origins", AT_CONF_LIST, C(cors_origins), 0, 256, "*",
     "Origins allowed to POST /v1/events (repeatable; * = any). The origin is echoed with credentials allowed."},
    {"drain-timeout-ms", AT_CONF_INT, C(drain_timeout_ms), 0, 600000, "10000",
     "On SIGTERM, how long to wait for in-flight requests and Kafka deliveries."},
    {"shutdown-delay-ms", AT_CONF_INT, C(shutdown_delay_ms), 0, 600000, "0",
     "On SIGTERM, keep serving but answer /readyz 503 this long before closing the listener, so load "
     "balancers stop sending first."},
    {"demo-page", AT_CONF_BOOL, C(demo_page), 0, 0, "false",
     "Also serve the demo publisher page GET /demo/ (ads with click URLs signed with --click-key) and its "
     "landing page /demo/landing."},
    {"log-level", AT_CONF_STR, C(log_level), 1, 8, "info", "debug, info, warn or error."},
};

const at_conf_table_t col_conf_table = {
    .program = "adtrack-collector",
    .summary = "The adtrack collector: answers tracking pixels (GET /t.gif), clicks (GET /c) and beacon batches "
               "(POST /v1/events), and answers 2xx only once the event is durable: acknowledged by Kafka, or "
               "fsynced to the local spool while Kafka cannot take it.",
    .opts = col_conf_opts,
    .nopts = AT_ARRAY_LEN(col_conf_opts),
};
