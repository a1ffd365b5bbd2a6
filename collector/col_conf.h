/*
 * col_conf.h: the collector's configuration (one table: col_conf_table).
 */
#ifndef COL_CONF_H
#define COL_CONF_H

#include "at_conf.h"
#include "at_kafka.h"

typedef struct col_conf_s {
    char *listen;                 /* HOST:PORT */
    int64_t threads;              /* event loops, one SO_REUSEPORT listener each */
    char *brokers;                /* Kafka bootstrap list */
    at_conf_list_t kafka_prop;    /* extra librdkafka properties, name=value */
    at_kafka_sec_t kafka;        /* TLS / SASL settings (AT_KAFKA_SEC_OPTS) */
    char *topic_raw;
    char *topic_rejected;
    int64_t kafka_timeout_ms;     /* message.timeout.ms: when an undelivered event is spooled */
    int64_t linger_ms;            /* linger.ms: batching vs latency */
    int64_t kafka_ack_wait_ms;    /* a later acknowledgement routes the partition to the spool */
    char *spool_dir;
    int64_t spool_max_bytes;
    int64_t url_max_bytes;        /* longer request targets get 414 */
    int64_t body_max_bytes;       /* larger POST bodies get 413 */
    int64_t max_connections;      /* per process; the listeners pause at it */
    int64_t max_connections_per_ip; /* per client address (trusted proxies exempt); 0 = no limit */
    int64_t request_timeout_ms;   /* a whole request must arrive within it; also the keep-alive idle time */
    char *click_key;              /* HMAC key for /c destinations; empty = redirects refused */
    at_conf_list_t postback_keys; /* "<advertiser> <secret>" items (col_postback.h); none = postbacks refused */
    char *cookie_name;
    int64_t cookie_max_age_days;
    char *cookie_domain;
    bool cookie_secure;
    at_conf_list_t trusted_proxies; /* CIDRs whose X-Forwarded-For is believed */
    char *lb_request_id_header;   /* event ids derived from it when sent by a trusted proxy; "" = off */
    bool ip_truncate;
    bool honor_privacy_signals;   /* DNT: 1 / Sec-GPC: 1 => no cookie, no uid, no ip */
    at_conf_list_t cors_origins;  /* allowed Origin values; "*" = any */
    int64_t drain_timeout_ms;
    int64_t shutdown_delay_ms;    /* unready-but-serving time after SIGTERM, for load balancers */
    bool demo_page;               /* serve /demo/ and /demo/landing (col_static.c) */
    char *log_level;
} col_conf_t;

extern const at_conf_table_t col_conf_table;

#endif
