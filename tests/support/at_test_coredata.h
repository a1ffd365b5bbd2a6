/*
 * at_test_coredata.h: core data and events for tests that drive an enricher without
 * coredata: campaigns and publishers written straight into Redis as coredata writes them
 * (docs/CORE-DATA.md: HSET adtrack:campaign:<id> version <v> doc <json>, SADD
 * adtrack:campaigns <id>), plain Redis commands, and events serialised exactly as the
 * collector writes them.
 *
 * The helpers fail the running cmocka test on any Redis error, so they may only be called
 * from inside a cmocka test or fixture.
 */
#ifndef AT_TEST_COREDATA_H
#define AT_TEST_COREDATA_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "at_event.h"
#include "at_uuid.h"

/* A connection to 127.0.0.1:@p port with a 5 s timeout, or NULL. The caller redisFree()s it. */
redisContext *ts_redis_connect(int port);

/* Runs one command; returns its integer (or numeric string) reply, 0 for other replies. */
long long ts_redis_int(int port, const char *fmt, ...);

/* Sum of @p field over every per-minute counter hash adtrack:stats:<c>:<minute>. */
long long ts_redis_stats_sum(int port, const char *c, const char *field);

/* A campaign with publishers pub-1 and pub-2, running 2020-2099, @p pricing "cpm" or "cpc". */
void ts_seed_campaign(int port, const char *id, const char *pricing, long long price_micros, long long budget_micros,
                      const char *status, uint64_t version);

/* Publishers pub-1 ("Daily News") and pub-3 ("Elsewhere"), both active. */
void ts_seed_publishers(int port);

/* What ts_event_json() builds; NULL fields are left out. */
typedef struct ts_evspec_s {
    const char *c, *p, *ua, *tag;
    at_event_type_t type;  /* 0: imp */
    const at_uuid_t *id;   /* NULL: a new UUIDv7 from @p gen */
} ts_evspec_t;

/* The event as the collector writes it (ts = now, ip 198.51.100.0, a desktop Chrome UA by
 * default). Returns a string the caller frees with bson_free(); its length in *@p len. */
char *ts_event_json(const ts_evspec_t *s, at_uuid7_gen_t *gen, size_t *len);

#endif
