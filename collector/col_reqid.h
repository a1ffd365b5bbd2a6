/*
 * col_reqid.h: event ids derived from the load balancer's request id, so that a request the
 * load balancer retries on another collector yields the same event ids.
 *
 * Why: a collector can be killed after Kafka acknowledged an event but before its answer left.
 * HAProxy then retries the request on the other collector (retry-on empty-response). With a
 * fresh UUIDv7 per attempt the store would hold the event twice. HAProxy sets, once per
 * request, a header (default X-Adtrack-Request-Id, see deploy/haproxy.cfg)
 *
 *     <accept time, Unix ms, decimal>-<unique token>      e.g. 1795267622123-5f0e3a9c-...
 *
 * and a retry carries the same value. From it the collector derives, for event number i of
 * the request (a beacon batch holds several), the UUIDv7
 *
 *     unix_ts_ms = the header's ms
 *     rand_a, rand_b (74 bits) = the first bits of SHA-256("adtrack.reqid.v1" 0x00 value be32(i))
 *
 * so both attempts store the same _id and the sink's idempotency (and the enricher's
 * charge-once budget, which is keyed by event id and the day of ts) absorbs the retry.
 * The header is believed only from a --trusted-proxies peer, like X-Forwarded-For: anybody
 * else could choose event ids, and by reusing one make the sink drop a genuine event as a
 * duplicate.
 *
 * @locality: pure functions, any thread.
 */
#ifndef COL_REQID_H
#define COL_REQID_H

#include <sys/socket.h>

#include "at_err.h"
#include "at_uuid.h"
#include "col_ip.h"

/* Longest header value accepted; HAProxy's "<13 digits>-<uuid>" is 50 bytes. */
#define COL_REQID_MAX_LEN 128
/* The load balancer's clock may differ from ours by at most this much (else: malformed). */
#define COL_REQID_MAX_SKEW_MS (3600 * 1000)
/* Index used for the derived first-party cookie value, so a retry sets the same cookie. */
#define COL_REQID_INDEX_COOKIE UINT32_MAX

typedef struct col_reqid_s {
    bool valid;                       /* false: ids come from the local generator */
    uint64_t ms;                      /* the load balancer's accept time, Unix ms */
    size_t len;
    char value[COL_REQID_MAX_LEN];    /* the header value as received (not NUL-terminated) */
} col_reqid_t;

/*
 * Parses a header value "<ms>-<token>": ms 1-15 decimal digits within
 * COL_REQID_MAX_SKEW_MS of @p now_ms, token 1 or more characters from [A-Za-z0-9._:-],
 * the whole at most COL_REQID_MAX_LEN bytes. On success fills @p out (valid = true) and
 * returns 0; otherwise out->valid = false and -1 + err naming what was wrong.
 */
int col_reqid_parse(const char *value, size_t len, uint64_t now_ms, col_reqid_t *out, at_err_t *err);

/* True when @p peer (AF_INET or AF_INET6) is inside one of @p trusted. */
bool col_reqid_peer_trusted(const struct sockaddr *peer, const col_cidr_t *trusted, size_t ntrusted);

/*
 * What a request's ids are derived from. @p value / @p len is the header (NULL or
 * @p occurrences 0 when absent). The header counts only when the peer is trusted and it
 * occurs exactly once (a second copy could come from the client). Returns 1 when out->valid
 * (derived ids), 0 when the header is absent or the peer untrusted, -1 + err when a trusted
 * peer sent a malformed or repeated header; in the last two cases out->valid is false.
 */
int col_reqid_from_request(const struct sockaddr *peer, const col_cidr_t *trusted, size_t ntrusted,
                           const char *value, size_t len, unsigned occurrences, uint64_t now_ms, col_reqid_t *out,
                           at_err_t *err);

/* The UUIDv7 of event @p index of the request (see the top of this file); @p r must be valid. */
void col_reqid_event_id(const col_reqid_t *r, uint32_t index, at_uuid_t *out);

#endif
