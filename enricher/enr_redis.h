/*
 * enr_redis.h: the enricher's Redis reads (connections come from at_redis_connect): read-through fetches of cache
 * misses (one pipelined round trip per batch) and the full resync of the core-data cache
 * (docs/CORE-DATA.md). Synchronous hiredis on the calling thread, with timeouts.
 */
#ifndef ENR_REDIS_H
#define ENR_REDIS_H

#include <hiredis/hiredis.h>

#include "at_redis.h"
#include "enr_cache.h"

/*
 * Opens an authenticated connection (at_redis_connect()) and checks that the Redis user may
 * run every command the enricher needs (at_redis_check_acl() with enr_redis_acl_probes), so a
 * user without, say, EVALSHA or PUBLISH fails here with a message naming the command instead
 * of at the first budget charge. NULL + @p err (AT_ERR_AUTH for refused credentials or
 * permissions). The caller frees the context with redisFree().
 */
redisContext *enr_redis_connect(const char *addr, const char *password, int64_t timeout_ms, at_err_t *err);

/* The commands (with representative keys and channels) the enricher runs on Redis, directly
 * or inside its budget script. */
extern const char *const enr_redis_acl_probes[];

/* One item to fetch into the cache. */
typedef struct enr_fetch_s {
    enr_kind_t kind;
    const char *id;
    size_t idlen;
} enr_fetch_t;

/*
 * Reads @p n entities with one pipelined round trip (HGETALL adtrack:<kind>:<id>, plus
 * EXISTS adtrack:exhausted:<id> for campaigns) and applies them to @p cache as fetches;
 * an id Redis does not hold is cached as absent. Adds the commands sent to *@p ncmds.
 * Returns 0, or -1 with @p err (AT_ERR_UNAVAILABLE / AT_ERR_TIMEOUT: the context is then
 * unusable, reconnect). @locality: the thread owning @p rc.
 */
int enr_redis_fetch(redisContext *rc, enr_cache_t *cache, const enr_fetch_t *items, size_t n, int64_t now_ms,
                    uint64_t *ncmds, at_err_t *err);

/*
 * Loads every campaign and publisher (SMEMBERS adtrack:campaigns / adtrack:publishers,
 * then pipelined HGETALL in chunks) and merges them by version. Returns the number of
 * entities read, or -1 with @p err.
 */
long enr_redis_resync(redisContext *rc, enr_cache_t *cache, int64_t now_ms, uint64_t *ncmds, at_err_t *err);

/* Fills @p err from a failed context (c->err) and returns -1. */
int enr_redis_ctx_err(redisContext *rc, const char *what, at_err_t *err);

#endif
