/*
 * at_redis.h: the one way the services open a hiredis connection from a `--redis
 * HOST:PORT` option (the enricher's reader and subscriber, the dashboard's poller and
 * subscriber). Synchronous hiredis, with timeouts.
 */
#ifndef AT_REDIS_H
#define AT_REDIS_H

#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdint.h>

#include "at_err.h"

/* Returns a connected context with @p timeout_ms for connect and every command, or NULL
 * with @p err (AT_ERR_INVALID for a malformed @p addr, AT_ERR_UNAVAILABLE when Redis does
 * not answer). @p addr is HOST:PORT. The caller owns the context: free with redisFree(). */
redisContext *at_redis_connect(const char *addr, int64_t timeout_ms, at_err_t *err);

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
