/*
 * cd_conf.h: adtrack-coredata's configuration (one at_conf table; see cd_conf.c).
 */
#ifndef CD_CONF_H
#define CD_CONF_H

#include "at_conf.h"
#include "at_kafka.h"

typedef struct cd_conf_s {
    char *listen;
    int64_t threads;
    at_conf_list_t admin_token;
    at_conf_list_t read_token;
    int64_t body_max_bytes;
    int64_t max_connections;
    int64_t max_connections_per_ip;
    int64_t request_timeout_ms;
    int64_t queue_max;
    char *data_dir;
    char *mongo;
    char *mongo_w;
    int64_t mongo_wtimeout_ms;
    char *redis;
    char *redis_password;
    int64_t redis_timeout_ms;
    char *brokers;
    at_conf_list_t kafka_prop;
    at_kafka_sec_t kafka;        /* TLS / SASL settings (AT_KAFKA_SEC_OPTS) */
    char *topic_changes;
    char *topic_updates;
    char *topic_rejected;
    char *group;
    bool feed;
    int64_t kafka_timeout_ms;
    int64_t linger_ms;
    int64_t kafka_backlog_max;
    bool resync_changes_on_start;
    at_conf_list_t stats_dir; /* the reports' rollup files (without --mongo) */
    int64_t reports_poll_ms;
    int64_t reports_overlap_ms;
    char *log_level;
} cd_conf_t;

extern const at_conf_table_t cd_conf_table;

#endif
