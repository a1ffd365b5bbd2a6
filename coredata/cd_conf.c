/*
 * cd_conf.c: adtrack-coredata's option table. --help, ADTRACK_* environment variables and
 * docs/CONFIGURATION.md all come from these rows.
 */
#include "cd_conf.h"

#define C(field) AT_OFF(cd_conf_t, field)

static const at_conf_opt_t cd_conf_opts[] = {
    {"listen", AT_CONF_STR, C(listen), 0, 256, "127.0.0.1:8090",
     "Address of the admin API, HOST:PORT (IPv6 as [addr]:port)."},
    {"threads", AT_CONF_INT, C(threads), 1, 16, "1", "HTTP event-loop threads (the API is light; 1 is plenty)."},
    {"admin-token", AT_CONF_LIST | AT_CONF_SECRET, C(admin_token), 0, 64, "",
     "Bearer token allowed to read and write (repeatable; env: comma-separated). At least one is required."},
    {"read-token", AT_CONF_LIST | AT_CONF_SECRET, C(read_token), 0, 64, "",
     "Bearer token allowed to read only (repeatable; env: comma-separated); writes with it get 403."},
    {"body-max-bytes", AT_CONF_INT, C(body_max_bytes), 1024, 16777216, "262144",
     "Largest accepted request body; larger gets 413."},
    {"max-connections", AT_CONF_INT, C(max_connections), 1, 1000000, "1024",
     "Open connections per process; at the limit new ones wait in the listen backlog until others close."},
    {"max-connections-per-ip", AT_CONF_INT, C(max_connections_per_ip), 0, 1000000, "256",
     "Open connections per client address; one more is closed at once. 0 = no limit."},
    {"request-timeout-ms", AT_CONF_INT, C(request_timeout_ms), 100, 600000, "10000",
     "Time a connection gets to deliver a whole request (headers and body) once it waits for one, and the "
     "keep-alive idle time; slower clients are disconnected."},
    {"queue-max", AT_CONF_INT, C(queue_max), 16, 1000000, "10000",
     "Changes that may wait for the store at once; beyond that writes get 503 (backpressure)."},
    {"data-dir", AT_CONF_STR, C(data_dir), 1, 4000, "data/coredata",
     "Directory of the embedded file store (campaigns.json, publishers.json), used without --mongo."},
    {"mongo", AT_CONF_STR | AT_CONF_CREDS, C(mongo), 0, 4096, "",
     "MongoDB URI of the source of truth (database adtrack); empty: the embedded file store in --data-dir."},
    {"mongo-w", AT_CONF_STR, C(mongo_w), 1, 32, "majority", "MongoDB write concern w: majority or a number."},
    {"mongo-wtimeout-ms", AT_CONF_INT, C(mongo_wtimeout_ms), 0, 600000, "5000", "MongoDB write concern timeout."},
    {"redis", AT_CONF_STR | AT_CONF_CREDS, C(redis), 1, 4096, "127.0.0.1:6379",
     "Redis cache and pub/sub: HOST:PORT, a Unix socket path, or redis://[USER[:PASSWORD]@]HOST[:PORT][/DB] (ACL user, AUTH on every connect; no TLS: see docs/SECURITY.md)."},
    {"redis-password", AT_CONF_STR | AT_CONF_SECRET, C(redis_password), 0, 1024, "",
     "Redis password (AUTH), instead of one inside --redis."},
    {"redis-timeout-ms", AT_CONF_INT, C(redis_timeout_ms), 10, 60000, "1000",
     "Redis connect and command timeout; on expiry the connection is dropped and resynced later."},
    {"brokers", AT_CONF_STR, C(brokers), 1, 4096, "127.0.0.1:9092", "Kafka bootstrap servers, comma-separated."},
    {"kafka-prop", AT_CONF_LIST, C(kafka_prop), 0, 64, "",
     "Extra librdkafka property name=value for the producer and the consumer (repeatable)."},
    AT_KAFKA_SEC_OPTS(cd_conf_t, kafka),
    {"topic-changes", AT_CONF_STR, C(topic_changes), 1, 249, "adtrack.coredata.changes",
     "Compacted topic every accepted change is produced to, keyed <kind>:<id>."},
    {"topic-updates", AT_CONF_STR, C(topic_updates), 1, 249, "adtrack.coredata.updates",
     "Topic of JSON updates from back-office systems, consumed when --feed is on."},
    {"topic-rejected", AT_CONF_STR, C(topic_rejected), 1, 249, "adtrack.events.rejected",
     "Topic that invalid updates land on, with a reason."},
    {"group", AT_CONF_STR, C(group), 1, 255, "adtrack-coredata", "Consumer group of the updates feed."},
    {"feed", AT_CONF_BOOL, C(feed), 0, 0, "true", "Consume --topic-updates."},
    {"kafka-timeout-ms", AT_CONF_INT, C(kafka_timeout_ms), 100, 300000, "10000",
     "How long a change may wait for a Kafka acknowledgement before it is retried (message.timeout.ms)."},
    {"linger-ms", AT_CONF_INT, C(linger_ms), 0, 1000, "0", "librdkafka linger.ms of the changes producer."},
    {"kafka-backlog-max", AT_CONF_INT, C(kafka_backlog_max), 100, 10000000, "100000",
     "Changes kept for Kafka while it is down; beyond that they are dropped and the full state is produced "
     "again once Kafka is back (the topic is compacted, so the latest state is what matters)."},
    {"resync-changes-on-start", AT_CONF_BOOL, C(resync_changes_on_start), 0, 0, "true",
     "On start, produce every entity's current state to --topic-changes, so a change accepted just before a "
     "crash is never missing from the topic."},
    {"stats-dir", AT_CONF_LIST, C(stats_dir), 0, 64, "",
     "Directory of hourly rollup files stats_hourly-*.jsonl (an enricher's --data-dir) that GET /v1/reports "
     "answers from, without --mongo (repeatable: one per enricher). With --mongo, adtrack.stats_hourly is read instead."},
    {"reports-poll-ms", AT_CONF_INT, C(reports_poll_ms), 100, 3600000, "2000",
     "How often the reports thread reads new and changed hourly rollups (stats files or MongoDB)."},
    {"reports-overlap-ms", AT_CONF_INT, C(reports_overlap_ms), 0, 86400000, "60000",
     "MongoDB polls read again the rollups whose mt is within this of the newest mt seen, so a write that lands "
     "after a newer one (another enricher, a clock behind) is not missed."},
    {"log-level", AT_CONF_STR, C(log_level), 1, 8, "info", "debug, info, warn or error."},
};

const at_conf_table_t cd_conf_table = {
    .program = "adtrack-coredata",
    .summary = "The adtrack core-data service: an authenticated admin API (and the adtrack.coredata.updates feed) "
               "for campaigns, publishers and budgets. Every accepted change gets the next global version, is "
               "stored (MongoDB, or the embedded file store), written to the Redis cache, and announced on Redis "
               "pub/sub adtrack:coredata and the compacted topic adtrack.coredata.changes.",
    .opts = cd_conf_opts,
    .nopts = AT_ARRAY_LEN(cd_conf_opts),
};
