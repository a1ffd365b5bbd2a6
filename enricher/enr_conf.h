/*
 * enr_conf.h: the enricher's configuration (one table: enr_conf_table).
 */
#ifndef ENR_CONF_H
#define ENR_CONF_H

#include "at_conf.h"
#include "at_kafka.h"

typedef struct enr_conf_s {
    char *brokers;               /* Kafka bootstrap list */
    char *group;                 /* consumer group id */
    at_conf_list_t kafka_prop;   /* extra librdkafka properties (consumer and producer), name=value */
    at_kafka_sec_t kafka;        /* TLS / SASL settings (AT_KAFKA_SEC_OPTS) */
    char *topic_raw;
    char *topic_rejected;
    char *redis;                 /* HOST:PORT or redis://[user[:password]@]host[:port][/db] */
    char *redis_password;        /* secret; instead of a password in --redis */
    int64_t redis_timeout_ms;
    char *mongo;                 /* mongodb:// URI; empty = file sink */
    char *mongo_w;               /* write concern: "majority" or a number */
    int64_t mongo_wtimeout_ms;
    char *data_dir;              /* file sink directory */
    int64_t sink_rotate_bytes;
    int64_t batch_size;
    int64_t batch_max_ms;
    int64_t cache_ttl_ms;
    char *bot_patterns;          /* file of UA substrings; empty = built-in list */
    char *listen;                /* HOST:PORT of /healthz /readyz /metrics */
    int64_t replay_window_days;  /* how long charge de-duplication is kept in Redis */
    int64_t retry_max_ms;        /* cap of the retry backoff */
    int64_t kafka_timeout_ms;    /* rejected-topic delivery / commit timeout */
    bool rollups;                /* maintain stats_hourly (enr_rollup.h) */
    char *log_level;
} enr_conf_t;

/* File store: documents of hours older than this (behind the newest hour seen) are
 * dropped from memory and read back from their line when a late event needs them. */
#define ENR_ROLLUP_KEEP_HOURS 3

extern const at_conf_table_t enr_conf_table;

#endif
