/*
 * at_kafka.c: librdkafka configuration glue (see at_kafka.h).
 */
#include "at_kafka.h"

#include <pthread.h>
#include <stdatomic.h>
#include <strings.h>
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

/* librdkafka properties whose values are secrets: refused in --kafka-prop, which may sit on
 * a command line and is not masked in logs. Each names the option to use instead. */
static const char *const secret_props[][2] = {
    {"sasl.password", "--kafka-sasl-password-file"},
    {"ssl.key.password", "--kafka-ssl-key-password-file"},
    {"ssl.key.pem", "--kafka-ssl-key (a file)"},
    {"ssl.keystore.password", "a PEM key with --kafka-ssl-key and --kafka-ssl-key-password-file"},
    {"sasl.oauthbearer.client.secret", "(not supported: use SCRAM or PLAIN)"},
    {"sasl.oauthbearer.config", "(not supported: use SCRAM or PLAIN)"},
};

static bool empty(const char *s)
{
    return s == NULL || s[0] == '\0';
}

/* Checks @p sec and sets it on @p conf. */
static int apply_sec(rd_kafka_conf_t *conf, const at_kafka_sec_t *sec, at_err_t *err)
{
    static const char *const protocols[] = {"plaintext", "ssl", "sasl_plaintext", "sasl_ssl"};
    static const char *const mechanisms[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"};
    const char *proto = empty(sec->security_protocol) ? "plaintext" : sec->security_protocol;
    size_t pi = AT_ARRAY_LEN(protocols);
    for (size_t i = 0; i < AT_ARRAY_LEN(protocols); i++)
        if (strcasecmp(proto, protocols[i]) == 0)
            pi = i;
    if (pi == AT_ARRAY_LEN(protocols))
        return at_err_set(err, AT_ERR_INVALID,
                          "--kafka-security-protocol: expected plaintext, ssl, sasl_plaintext or sasl_ssl, got '%.32s'",
                          proto);
    bool sasl = pi >= 2, tls = pi == 1 || pi == 3;
    bool any_sasl = !empty(sec->sasl_mechanism) || !empty(sec->sasl_username) || !empty(sec->sasl_password);
    if (!sasl && any_sasl)
        return at_err_set(err, AT_ERR_INVALID,
                          "--kafka-sasl-*: SASL settings need --kafka-security-protocol sasl_ssl (or sasl_plaintext), "
                          "not %s",
                          protocols[pi]);
    if (!tls && (!empty(sec->ssl_ca) || !empty(sec->ssl_cert) || !empty(sec->ssl_key)))
        return at_err_set(err, AT_ERR_INVALID,
                          "--kafka-ssl-*: TLS settings need --kafka-security-protocol ssl or sasl_ssl, not %s",
                          protocols[pi]);
    if (empty(sec->ssl_cert) != empty(sec->ssl_key))
        return at_err_set(err, AT_ERR_INVALID, "--kafka-ssl-cert and --kafka-ssl-key: expected both or neither");
    if (!empty(sec->ssl_key_password) && empty(sec->ssl_key))
        return at_err_set(err, AT_ERR_INVALID, "--kafka-ssl-key-password: expected with --kafka-ssl-key");
    if (at_kafka_conf_set(conf, "security.protocol", protocols[pi], err) != 0)
        return -1;
    if (sasl) {
        const char *mech = NULL;
        for (size_t i = 0; i < AT_ARRAY_LEN(mechanisms); i++)
            if (!empty(sec->sasl_mechanism) && strcasecmp(sec->sasl_mechanism, mechanisms[i]) == 0)
                mech = mechanisms[i];
        if (mech == NULL)
            return at_err_set(err, AT_ERR_INVALID,
                              "--kafka-sasl-mechanism: expected SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN with %s, got "
                              "'%.32s'",
                              protocols[pi], empty(sec->sasl_mechanism) ? "" : sec->sasl_mechanism);
        if (empty(sec->sasl_username) || empty(sec->sasl_password))
            return at_err_set(err, AT_ERR_INVALID,
                              "--kafka-sasl-username and --kafka-sasl-password(-file): both expected with %s", mech);
        if (at_kafka_conf_set(conf, "sasl.mechanism", mech, err) != 0 ||
            at_kafka_conf_set(conf, "sasl.username", sec->sasl_username, err) != 0 ||
            at_kafka_conf_set(conf, "sasl.password", sec->sasl_password, err) != 0)
            return -1;
        if (!tls) {
            static atomic_bool warned = false;
            if (!atomic_exchange(&warned, true))
                at_log(AT_LOG_WARN, "kafka",
                       "sasl_plaintext: the SASL exchange and all data cross the network unencrypted; use sasl_ssl",
                       NULL);
        }
    }
    if (tls) {
        /* Host name verification is librdkafka 2.0's default; set anyway so a changed default
         * elsewhere cannot turn it off silently. */
        if (at_kafka_conf_set(conf, "ssl.endpoint.identification.algorithm", "https", err) != 0)
            return -1;
        if (!empty(sec->ssl_ca) && at_kafka_conf_set(conf, "ssl.ca.location", sec->ssl_ca, err) != 0)
            return -1;
        if (!empty(sec->ssl_cert) && (at_kafka_conf_set(conf, "ssl.certificate.location", sec->ssl_cert, err) != 0 ||
                                      at_kafka_conf_set(conf, "ssl.key.location", sec->ssl_key, err) != 0))
            return -1;
        if (!empty(sec->ssl_key_password) && at_kafka_conf_set(conf, "ssl.key.password", sec->ssl_key_password, err) != 0)
            return -1;
    }
    return 0;
}

rd_kafka_conf_t *at_kafka_conf_new(const char *brokers, const at_kafka_sec_t *sec, const char *const *defaults,
                                   const at_conf_list_t *props, at_err_t *err)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);

    if (at_kafka_conf_set(conf, "bootstrap.servers", brokers, err) != 0)
        goto fail;
    if (sec != NULL && apply_sec(conf, sec, err) != 0)
        goto fail;
    for (size_t i = 0; defaults != NULL && defaults[i] != NULL; i += 2)
        if (at_kafka_conf_set(conf, defaults[i], defaults[i + 1], err) != 0)
            goto fail;
    for (size_t i = 0; props != NULL && i < props->count; i++) {
        const char *item = props->items[i];
        const char *eq = strchr(item, '=');
        char name[256];
        if (eq == NULL || eq == item || (size_t)(eq - item) >= sizeof(name)) {
            at_err_set(err, AT_ERR_INVALID, "--kafka-prop: expected name=value, got an item without a name");
            goto fail;
        }
        memcpy(name, item, (size_t)(eq - item));
        name[eq - item] = '\0';
        for (size_t j = 0; j < AT_ARRAY_LEN(secret_props); j++) {
            if (strcmp(name, secret_props[j][0]) == 0) {
                at_err_set(err, AT_ERR_INVALID, "--kafka-prop %s: a secret; use %s instead", name, secret_props[j][1]);
                goto fail;
            }
        }
        if (at_kafka_conf_set(conf, name, eq + 1, err) != 0)
            goto fail;
    }
    return conf;

fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}

/* ---- authentication failures (see at_kafka_auth_failed) ---- */

static pthread_mutex_t auth_mu = PTHREAD_MUTEX_INITIALIZER;
static atomic_bool auth_bad = false;
static char auth_why[256];

static bool is_auth_error(int err, const char *reason)
{
    if (err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL ||
        err == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED || err == RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED ||
        err == RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED || err == RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED ||
        err == RD_KAFKA_RESP_ERR_UNSUPPORTED_SASL_MECHANISM)
        return true;
    /* librdkafka reports some TLS failures as transport errors; the reason tells. */
    return reason != NULL && (strstr(reason, "SSL handshake failed") != NULL ||
                              strstr(reason, "certificate verify failed") != NULL ||
                              strstr(reason, "SASL authentication error") != NULL);
}

bool at_kafka_auth_failed(char *why, size_t len)
{
    if (!atomic_load(&auth_bad))
        return false;
    if (why != NULL && len > 0) {
        pthread_mutex_lock(&auth_mu);
        snprintf(why, len, "%s", auth_why);
        pthread_mutex_unlock(&auth_mu);
    }
    return true;
}

void at_kafka_note_ok(void)
{
    if (atomic_load_explicit(&auth_bad, memory_order_relaxed) && atomic_exchange(&auth_bad, false))
        at_log(AT_LOG_INFO, "kafka", "kafka accepts our credentials again", NULL);
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

    bool auth = is_auth_error(err, reason);
    if (auth) {
        pthread_mutex_lock(&auth_mu);
        snprintf(auth_why, sizeof(auth_why), "%s: %s", rd_kafka_err2str((rd_kafka_resp_err_t)err),
                 reason != NULL ? reason : "");
        pthread_mutex_unlock(&auth_mu);
        atomic_store(&auth_bad, true);
    }
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
    /* Refused credentials or certificates are errors: retrying cannot fix them. */
    at_log(fatal || auth ? AT_LOG_ERROR : AT_LOG_WARN, comp,
           auth ? "kafka refused our credentials or certificate (check --kafka-sasl-*, --kafka-ssl-*)"
                : "kafka client error",
           "error",
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
