/*
 * at_redis.h: the one way the services open a hiredis connection from a `--redis` option
 * (the enricher's reader and subscriber, the dashboard's poller and subscriber, coredata's
 * fan-out). Synchronous hiredis, with timeouts.
 *
 * Accepted forms of --redis (docs/SECURITY.md, "Redis"):
 *   HOST:PORT, [IPv6]:PORT                      no authentication
 *   /path/to/redis.sock                         a Unix socket
 *   redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]  ACL user (Redis 6+) or a plain requirepass
 *                                               password (USER empty), database DB
 * The password may instead come from --redis-password (a secret option: its -file variant
 * keeps it out of the command line); giving both is an error. User and password are
 * percent-decoded. `rediss://` (TLS) is refused with a pointer to the documented TLS tunnel:
 * hiredis 0.14 has no TLS.
 *
 * Every (re)connect sends AUTH (and SELECT) before anything else, so a Redis restart or a
 * failover is authenticated like the first connection.
 */
#ifndef AT_REDIS_H
#define AT_REDIS_H

#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdint.h>

#include "at_err.h"

/* A parsed --redis value. */
typedef struct at_redis_addr_s {
    char host[256]; /* empty for a Unix socket */
    int port;
    char path[256]; /* the Unix socket, or empty */
    char user[128]; /* ACL user, or empty (AUTH with the password only) */
    char *password; /* heap, or NULL: no AUTH */
    int db;         /* SELECT when not 0 */
} at_redis_addr_t;

/* Parses @p addr (see above) and the separate @p password (NULL or "" = none) into @p a.
 * Returns 0, or -1 with @p err (AT_ERR_INVALID; the message never quotes a password). Free
 * with at_redis_addr_free(). */
int at_redis_addr_parse(const char *addr, const char *password, at_redis_addr_t *a, at_err_t *err);

/* Wipes and frees the password held by @p a. Accepts NULL. */
void at_redis_addr_free(at_redis_addr_t *a);

/* @p a for logs: "redis://user@host:port/db" or "host:port", never the password. Returns
 * @p buf. */
const char *at_redis_addr_str(const at_redis_addr_t *a, char *buf, size_t len);

/*
 * Returns a connected, authenticated context (AUTH, then SELECT when a database is named)
 * with @p timeout_ms for connect and every command, or NULL with @p err: AT_ERR_INVALID for
 * a malformed @p addr, AT_ERR_UNAVAILABLE when Redis does not answer, AT_ERR_AUTH when it
 * refuses the credentials ("redis://app@host:6379: authentication refused: WRONGPASS ...";
 * addresses in messages never carry the password). @p addr and @p password as for
 * at_redis_addr_parse(). The caller owns the context: free with redisFree().
 */
redisContext *at_redis_connect(const char *addr, const char *password, int64_t timeout_ms, at_err_t *err);

/*
 * Checks that the connected user may run every command of @p probes (NULL-terminated;
 * each a space-separated command line with the keys and channels the service uses, e.g.
 * "PUBLISH adtrack:coredata x"), without running any: they are queued inside MULTI and the
 * transaction is DISCARDed, and Redis checks ACL permissions (command, keys, channels) while
 * queueing. Returns 0, or -1 with AT_ERR_AUTH and a message naming the first refused
 * command ("redis user 'app' may not run PUBLISH adtrack:coredata: NOPERM ...").
 * When the user may not run MULTI itself nothing can be checked this way and 0 is returned
 * (the first real use then fails with the same NOPERM message). AT_ERR_UNAVAILABLE when the
 * connection breaks.
 */
int at_redis_check_acl(redisContext *rc, const char *const *probes, at_err_t *err);

/*
 * Reads a subscribed connection until it breaks or @p stopping is set, calling
 * @p on_message(@p arg, reply) for every reply (the reply is freed after the call).
 * Replies already buffered are handed over first; then it waits for bytes at most 200 ms
 * at a time, so @p stopping is seen within that. Returns when @p sub failed (sub->err
 * says why, or 0 for a clean close) or on stop.
 */
void at_redis_sub_pump(redisContext *sub, const atomic_bool *stopping, void (*on_message)(void *arg, redisReply *r),
                       void *arg);

#endif
