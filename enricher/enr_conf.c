/*
 * enr_conf.c: the enricher's option table. --help, ADTRACK_* environment variables and
 * docs/CONFIGURATION.md are all generated from these rows.
 */
#include "enr_conf.h"

#define C(field) AT_OFF(enr_conf_t, field)

static const at_conf_opt_t enr_conf_opts[] = {
    {"brokers", AT_CONF_STR, C(brokers), 1, 4096, "127.0.0.1:9092", "Kafka bootstrap servers, comma-separated."},
    {"group", AT_CONF_STR, C(group), 1, 255, "adtrack-enricher",
     "Kafka consumer group; enrichers in one group share the partitions of the raw topic."},
    {"kafka-prop", AT_CONF_LIST, C(kafka_prop), 0, 64, "",
     "Extra librdkafka property name=value for the consumer and the rejected-topic producer (repeatable)."},
    AT_KAFKA_SEC_OPTS(enr_conf_t, kafka),
    {"topic-raw", AT_CONF_STR, C(topic_raw), 1, 249, "adtrack.events.raw", "Topic the events are consumed from."},
    {"topic-rejected", AT_CONF_STR, C(topic_rejected), 1, 249, "adtrack.events.rejected",
     "Topic rejected events are produced to (with a reason)."},
    {"redis", AT_CONF_STR | AT_CONF_CREDS, C(redis), 1, 1024, "127.0.0.1:6379",
     "Redis holding core data, spend and counters: HOST:PORT, a Unix socket path, or redis://[USER[:PASSWORD]@]HOST[:PORT][/DB] (ACL user, AUTH on every connect; no TLS: see docs/SECURITY.md)."},
    {"redis-password", AT_CONF_STR | AT_CONF_SECRET, C(redis_password), 0, 1024, "",
     "Redis password (AUTH), instead of one inside --redis."},
    {"redis-timeout-ms", AT_CONF_INT, C(redis_timeout_ms), 1, 60000, "2000",
     "Redis connect and command timeout in milliseconds."},
    {"mongo", AT_CONF_STR | AT_CONF_CREDS, C(mongo), 0, 4096, "",
     "MongoDB URI (mongodb://...); events go to adtrack.events. Empty: the file sink in --data-dir."},
    {"mongo-w", AT_CONF_STR, C(mongo_w), 1, 32, "majority", "MongoDB write concern w: majority or a number."},
    {"mongo-wtimeout-ms", AT_CONF_INT, C(mongo_wtimeout_ms), 0, 600000, "10000", "MongoDB write concern timeout."},
    {"data-dir", AT_CONF_STR, C(data_dir), 1, 4096, "data/sink",
     "File sink directory (events-<seq>.jsonl, rejected-<seq>.jsonl), used when --mongo is empty."},
    {"sink-rotate-bytes", AT_CONF_INT, C(sink_rotate_bytes), 4096, INT64_C(1) << 40, "67108864",
     "File sink: start a new file once the current one passes this size."},
    {"batch-size", AT_CONF_INT, C(batch_size), 1, 5000, "1000", "Most events processed (and committed) together."},
    {"batch-max-ms", AT_CONF_INT, C(batch_max_ms), 1, 60000, "50",
     "Longest wait to fill a batch before processing what has arrived."},
    {"cache-ttl-ms", AT_CONF_INT, C(cache_ttl_ms), 1000, INT64_C(86400000) * 30, "300000",
     "Safety-net lifetime of a cached campaign or publisher; changes normally arrive by pub/sub."},
    {"bot-patterns", AT_CONF_STR, C(bot_patterns), 0, 4096, "",
     "File of user-agent substrings (one per line, # comments, case-insensitive) that mark bots; empty: built-in list."},
    {"listen", AT_CONF_STR, C(listen), 0, 256, "0.0.0.0:8081",
     "Address of /healthz, /readyz and /metrics, HOST:PORT (IPv6 as [addr]:port)."},
    {"replay-window-days", AT_CONF_INT, C(replay_window_days), 1, 365, "8",
     "How long per-event charge records are kept in Redis; a replay older than this could be charged again."},
    {"retry-max-ms", AT_CONF_INT, C(retry_max_ms), 100, 600000, "10000",
     "Cap of the exponential backoff (from 100 ms) while Redis, the sink or Kafka fail."},
    {"kafka-timeout-ms", AT_CONF_INT, C(kafka_timeout_ms), 100, 300000, "10000",
     "How long to wait for rejected-topic acknowledgements and offset commits before retrying."},
    {"rollups", AT_CONF_BOOL, C(rollups), 0, 0, "on",
     "Maintain the hourly rollups (stats_hourly, exactly once by the offset gate) in MongoDB or, with the file sink, in "
     "--data-dir/stats_hourly-<seq>.jsonl: on or off."},
    {"log-level", AT_CONF_STR, C(log_level), 1, 8, "info", "debug, info, warn or error."},
};

const at_conf_table_t enr_conf_table = {
    .program = "adtrack-enricher",
    .summary = "The adtrack enricher: consumes adtrack.events.raw in a consumer group, validates each event "
               "against campaign and publisher core data (Redis, cached locally and kept fresh by pub/sub), "
               "enriches it, charges budgets once per event id, and stores it exactly once (MongoDB or a "
               "file sink); rejected events go to adtrack.events.rejected with a reason. Offsets are committed "
               "only after the sink acknowledged.",
    .opts = enr_conf_opts,
    .nopts = AT_ARRAY_LEN(enr_conf_opts),
};
