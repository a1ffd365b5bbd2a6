/*
 * at_log.h: structured logging as JSON lines on stderr.
 *
 * One line per record: {"ts":"2026-11-21T13:27:02.123Z","level":"info","comp":"collector",
 * "msg":"listening","addr":"0.0.0.0:8080"}. Thread-safe (each record is one write(2)).
 */
#ifndef AT_LOG_H
#define AT_LOG_H

#include "at_common.h"

typedef enum at_log_level_e { AT_LOG_DEBUG = 0, AT_LOG_INFO, AT_LOG_WARN, AT_LOG_ERROR } at_log_level_t;

/* Records below @p level are discarded. Default: AT_LOG_INFO. */
void at_log_set_level(at_log_level_t level);

/* Parses "debug", "info", "warn", "error"; returns 0 or -1. */
int at_log_parse_level(const char *s, at_log_level_t *level);

/* Redirects output (default: fd 2). For tests. */
void at_log_set_fd(int fd);

/*
 * Registers @p s (copied) as a secret: from now on every occurrence of it in a record's
 * message or values is written as "***". A second line of defence behind the rule that
 * callers never pass secrets (addresses go through at_secret_uri_redact()); the services
 * register every value of an option marked secret at start-up (at_main_init). Secrets
 * shorter than 4 bytes are not registered (they would mask ordinary text): returns -1 for
 * those, for NULL, and when the table of 64 is full; 0 otherwise. @locality: any thread
 */
int at_log_add_secret(const char *s);

/*
 * Emits one record. @p comp is a short component name; @p msg a constant message.
 * The variadic part is key/value string pairs terminated by NULL:
 *   at_log(AT_LOG_INFO, "collector", "listening", "addr", addr, NULL);
 * Values are JSON-escaped. Never logs secrets: callers must not pass tokens or keys
 * (registered secrets are masked anyway, see at_log_add_secret()).
 */
void at_log(at_log_level_t level, const char *comp, const char *msg, ...) __attribute__((sentinel));

/* Remembers what was logged last at one call site, for at_log_gate(). Zero-initialise. */
typedef struct at_log_gate_s {
    uint64_t hash;
    int64_t last_s;
} at_log_gate_t;

/* True when @p msg differs from the message last passed with @p g, or @p interval_s seconds
 * went by since it was last let through: a retry loop logs each new failure at once and a
 * repeating one every @p interval_s, instead of every attempt. Not thread-safe: one gate per
 * thread (or per call site on one thread). */
bool at_log_gate(at_log_gate_t *g, const char *msg, int interval_s);

/* printf-style convenience: the formatted text becomes "msg". */
void at_logf(at_log_level_t level, const char *comp, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
