/*
 * at_kafka.h: librdkafka configuration glue shared by every service.
 *
 * Every service takes `--brokers LIST`, the security options of AT_KAFKA_SEC_OPTS() (TLS,
 * SASL/SCRAM and PLAIN, client certificates; the password from a file) and repeatable
 * `--kafka-prop name=value`, so anything else (compression, versions, OAUTHBEARER...) passes
 * straight through to librdkafka.
 */
#ifndef AT_KAFKA_H
#define AT_KAFKA_H

#include <librdkafka/rdkafka.h>
#include "at_conf.h"

/*
 * A Kafka client's security settings (docs/SECURITY.md, "Kafka"): the same options in every
 * service that talks to Kafka, declared with AT_KAFKA_SEC_OPTS() in its table.
 */
typedef struct at_kafka_sec_s {
    char *security_protocol; /* plaintext, ssl, sasl_plaintext or sasl_ssl */
    char *sasl_mechanism;    /* PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 */
    char *sasl_username;
    char *sasl_password; /* secret */
    char *ssl_ca;        /* PEM file of the CA(s) that signed the brokers' certificates */
    char *ssl_cert;      /* client certificate (PEM), for brokers that require one */
    char *ssl_key;       /* its private key (PEM) */
    char *ssl_key_password; /* secret: the key's passphrase, if it has one */
} at_kafka_sec_t;

/* The option rows of an at_kafka_sec_t member @p m of conf struct @p type. */
#define AT_KAFKA_SEC_OPTS(type, m)                                                                                     \
    {"kafka-security-protocol", AT_CONF_STR, AT_OFF(type, m.security_protocol), 1, 16, "plaintext",                    \
     "How to reach Kafka: plaintext, ssl (TLS), sasl_ssl (TLS + SASL: MSK, Confluent Cloud) or sasl_plaintext."},      \
    {"kafka-sasl-mechanism", AT_CONF_STR, AT_OFF(type, m.sasl_mechanism), 0, 16, "",                                   \
     "SASL mechanism with sasl_ssl or sasl_plaintext: SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN."},                       \
    {"kafka-sasl-username", AT_CONF_STR, AT_OFF(type, m.sasl_username), 0, 256, "", "SASL user name."},               \
    {"kafka-sasl-password", AT_CONF_STR | AT_CONF_SECRET, AT_OFF(type, m.sasl_password), 0, 4096, "",                  \
     "SASL password."},                                                                                                \
    {"kafka-ssl-ca", AT_CONF_STR, AT_OFF(type, m.ssl_ca), 0, 4096, "",                                                 \
     "PEM file of the CA certificates that signed the brokers' certificates (ssl, sasl_ssl); empty: the system's "    \
     "CA store. Broker host names are verified against their certificates."},                                          \
    {"kafka-ssl-cert", AT_CONF_STR, AT_OFF(type, m.ssl_cert), 0, 4096, "",                                             \
     "PEM file of a client certificate, for brokers that authenticate clients by TLS (mTLS)."},                       \
    {"kafka-ssl-key", AT_CONF_STR, AT_OFF(type, m.ssl_key), 0, 4096, "",                                               \
     "PEM file of the private key of --kafka-ssl-cert."},                                                              \
    {"kafka-ssl-key-password", AT_CONF_STR | AT_CONF_SECRET, AT_OFF(type, m.ssl_key_password), 0, 4096, "",            \
     "Passphrase of --kafka-ssl-key, when it is encrypted."}

/*
 * Returns a new librdkafka conf with bootstrap.servers = @p brokers, then the security
 * settings @p sec (may be NULL: plaintext), then @p defaults (NULL-terminated name, value,
 * name, value, ... array; may be NULL), then each "name=value" of @p props (may be NULL), so
 * user properties override the service's defaults. Contradictory security settings (a SASL
 * protocol without credentials, credentials without SASL) and secret properties in @p props
 * (sasl.password and the like: they have options of their own that read files) are refused.
 * On error returns NULL with @p err naming the option or property and the reason; the
 * message never quotes a secret. The caller owns the conf (rd_kafka_new() takes it over on
 * success).
 */
rd_kafka_conf_t *at_kafka_conf_new(const char *brokers, const at_kafka_sec_t *sec, const char *const *defaults,
                                   const at_conf_list_t *props, at_err_t *err);

/*
 * Process-wide record of Kafka refusing us: at_kafka_log_client_error() notes every
 * authentication or TLS failure (wrong SASL password, untrusted or mismatched certificate)
 * reported by any client of the process; at_kafka_note_ok() clears it once a client proved
 * a working connection (a delivery, metadata, an assignment). at_kafka_auth_failed() is true
 * in between and copies the last reason into @p why (may be NULL): the services answer
 * /readyz 503 with it, so wrong credentials never look healthy. @locality: any thread
 */
bool at_kafka_auth_failed(char *why, size_t len);
void at_kafka_note_ok(void);

/* Sets one property; 0, or -1 with @p err "kafka property 'x': <librdkafka's message>". */
int at_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, at_err_t *err);

/*
 * Logs a librdkafka client error (an error_cb's arguments) for @p comp, without flooding:
 * during an outage librdkafka reports the same error at every reconnect attempt, for every
 * client. The first occurrence of an error code is logged (fatal ones at error level, the
 * rest at warn); repeats within 30 s are counted and the next line after that says how many
 * were left out ("suppressed"). @locality: any thread
 */
void at_kafka_log_client_error(const char *comp, int err, const char *reason);

/* True for delivery errors that mean "Kafka is not reachable / not taking writes now"
 * (as opposed to a message-level problem such as a too-large message). */
bool at_kafka_err_is_outage(rd_kafka_resp_err_t err);

#endif
