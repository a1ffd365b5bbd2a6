/*
 * at_kafka.h: librdkafka configuration glue shared by every service.
 *
 * Every service takes `--brokers LIST` and repeatable `--kafka-prop name=value` so a real
 * cluster's TLS/SASL, compression or version settings pass straight through to librdkafka.
 */
#ifndef AT_KAFKA_H
#define AT_KAFKA_H

#include <librdkafka/rdkafka.h>
#include "at_conf.h"

/*
 * Returns a new librdkafka conf with bootstrap.servers = @p brokers, then @p defaults
 * (NULL-terminated name, value, name, value, ... array; may be NULL), then each "name=value"
 * of @p props (may be NULL), so user properties override the service's defaults.
 * On error returns NULL with @p err naming the property and librdkafka's reason.
 * The caller owns the conf (rd_kafka_new() takes it over on success).
 */
rd_kafka_conf_t *at_kafka_conf_new(const char *brokers, const char *const *defaults, const at_conf_list_t *props,
                                   at_err_t *err);

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
