/*
 * at_uuid.h: UUIDv7 (RFC 9562) event ids: 48-bit Unix ms timestamp, version 7, then a
 * 12-bit counter seeded randomly each millisecond (method 1 of RFC 9562 6.2), variant,
 * and 62 random bits. Ids from one generator are strictly increasing, also when the clock
 * steps back or more than 4096 ids are made in one millisecond (the timestamp is then
 * advanced past the clock, as the RFC allows).
 */
#ifndef AT_UUID_H
#define AT_UUID_H

#include "at_common.h"

#define AT_UUID_STR_LEN 36 /* without the terminating NUL */

typedef struct at_uuid_s {
    uint8_t b[16];
} at_uuid_t;

/* Per-thread generator state: no locking; use one per thread. Zero-initialise it. */
typedef struct at_uuid7_gen_s {
    uint64_t last_ms;
    uint16_t counter;
    uint64_t rand_pool[64]; /* one getrandom(2) per ~40 ids: it was 1% of the collector's CPU at 8 */
    unsigned rand_left;
} at_uuid7_gen_t;

/* Makes the next id for time @p now_ms (Unix ms). Never fails: random bits come from
 * getrandom(2) with a fallback. @locality: the thread that owns @p g. */
void at_uuid7_next(at_uuid7_gen_t *g, uint64_t now_ms, at_uuid_t *out);

/* Writes the canonical lower-case 8-4-4-4-12 form plus NUL into @p out (37 bytes). */
void at_uuid_format(const at_uuid_t *u, char out[AT_UUID_STR_LEN + 1]);

/* Parses the canonical form (either case); returns 0 or -1. */
int at_uuid_parse(const char *s, size_t len, at_uuid_t *out);

/* The Unix ms timestamp inside a v7 id. */
uint64_t at_uuid7_time_ms(const at_uuid_t *u);

/* memcmp order, which for v7 ids is time order. */
int at_uuid_cmp(const at_uuid_t *a, const at_uuid_t *b);

#endif
