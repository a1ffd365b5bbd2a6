/*
 * at_kafka.c: librdkafka configuration glue (see at_kafka.h).
 */
#include "at_kafka.h"

#include <pthread.h>
#include <time.h>

#include "at_log.h"

#define ERROR_LOG_INTERVAL_S 30

/* librdkafka's own log lines become JSON log records (syslog levels: 0-3 error, 4 warn,
 * 5-6 info, 7 debug). Runs on librdkafka's threads; at_log is thread-safe. */
static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    at_log_level_t l = level <= 3 ? AT_LOG_ERROR : level == 4 ? AT_LOG_WARN : level <= 6 ? AT_LOG_INFO : AT_LOG_DEBUG;
    /* "FAIL" lines repeat every connection failure, which the services' error callbacks
     * already report (at_kafka_log_client_error, rate-limited): during an outage they would
     * be a stream of error-level lines per client per second. */
    if (strcmp(fac, "FAIL") == 0)
        l = AT_LOG_DEBUG;
    at_log(l, "kafka", buf, "client", rd_kafka_name(rk), "facility", fac, NULL);
}

int at_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, at_err_t *err)
{
    char errstr[256];

    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
        return at_err_set(err, AT_ERR_INVALID, "kafka property '%s': %s", name, errstr);
    return 0;
}

rd_kafka_conf_t *at_kafka_conf_new(const char *brokers, const char *const *defaults, const at_conf_list_t *props,
                                   at_err_t *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);

    if (at_kafka_conf_set(conf, "bootstrap.servers", brokers, err) != 0)
        goto fail;
    for (size_t i = 0; defaults != NULL && defaults[i] != NULL; i += 2)
        if (at_kafka_conf_set(conf, defaults[i], defaults[i + 1], err) != 0)
            goto fail;
    for (size_t i = 0; props != NULL && i < props->count; i++) {
        const char *item = props->items[i];
        const char *eq = strchr(item, '=');
        char name[256];
        if (eq == NULL || eq == item || (size_t)(eq - item) >= sizeof(name)) {
            at_err_set(err, AT_ERR_INVALID, "--kafka-prop: expected name=value, got '%s'", item);
            goto fail;
        }
        memcpy(name, item, (size_t)(eq - item));
        name[eq - item] = '\0';
        if (at_kafka_conf_set(conf, name, eq + 1, err) != 0)
            goto fail;
    }
    return conf;

fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* Per error code: when it was last logged and how many repeats were left out since. */
typedef struct err_seen_s {
    int err;
    time_t last;
    unsigned long suppressed;
} err_seen_t;

void at_kafka_log_client_error(const char *comp, int err, const char *reason)
{
    static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    static err_seen_t seen[32];
    time_t now = time(NULL);
    unsigned long suppressed = 0;
    bool fatal = err == RD_KAFKA_RESP_ERR__FATAL;
    bool log = true;

    pthread_mutex_lock(&mu);
    err_seen_t *e = NULL;
    for (size_t i = 0; i < AT_ARRAY_LEN(seen) && e == NULL; i++)
        if (seen[i].err == err && seen[i].last != 0)
            e = &seen[i];
    if (e == NULL) {
        /* A new code takes a free slot, or the oldest one. */
        e = &seen[0];
        for (size_t i = 1; i < AT_ARRAY_LEN(seen); i++)
            if (seen[i].last < e->last)
                e = &seen[i];
        *e = (err_seen_t){.err = err};
    }
    if (!fatal && e->last != 0 && now - e->last < ERROR_LOG_INTERVAL_S) {
        e->suppressed++;
        log = false;
    } else {
        suppressed = e->suppressed;
        e->suppressed = 0;
        e->last = now;
    }
    pthread_mutex_unlock(&mu);
    if (!log)
        return;
    char n[24];
    snprintf(n, sizeof(n), "%lu", suppressed);
    at_log(fatal ? AT_LOG_ERROR : AT_LOG_WARN, comp, "kafka client error", "error",
           rd_kafka_err2str((rd_kafka_resp_err_t)err), "reason", reason, suppressed ? "suppressed" : NULL, n, NULL);
}

bool at_kafka_err_is_outage(rd_kafka_resp_err_t err)
{
    switch (err) {
    case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TIMED_OUT:
    case RD_KAFKA_RESP_ERR__TRANSPORT:
    case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
    case RD_KAFKA_RESP_ERR__QUEUE_FULL:
    case RD_KAFKA_RESP_ERR__PURGE_QUEUE:
    case RD_KAFKA_RESP_ERR__PURGE_INFLIGHT:
    case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
    case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
    case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
    case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
    case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
    case RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION:
        return true;
    default:
        return false;
    }
}
