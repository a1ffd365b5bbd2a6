/*
 * enr_cache.h: the enricher's in-process cache of campaigns and publishers (core data),
 * with versioned entries (docs/CORE-DATA.md).
 *
 * Rules:
 *  - A change (pub/sub, resync) is applied only if its version is higher than the cached
 *    one, so out-of-order delivery never moves an entry back. Deletes leave a tombstone
 *    that keeps its version.
 *  - A read-through fetch (a cache miss or an expired entry, read from Redis) is applied
 *    if its version is at least the cached one, and always refreshes the entry's age.
 *  - An id Redis does not know is cached as "absent" (version 0), so unknown campaigns
 *    cost no Redis call per event; any real version replaces it.
 *  - Entries older than the TTL count as misses (enr_cache_fresh()): the TTL is only a
 *    safety net against a lost notification.
 *  - Exhaustion (`budget` changes) is tracked per campaign with its own version.
 *
 * Locking: one pthread rwlock. The worker holds the read lock while it validates a batch
 * (pure CPU, no I/O: microseconds per event) so the entries it reads cannot be freed under
 * it; the subscriber thread and the worker's own miss fetches take the write lock to apply
 * changes. A mutex would also do, but the read lock lets the HTTP thread and the worker
 * read concurrently (entry counts for /metrics).
 */
#ifndef ENR_CACHE_H
#define ENR_CACHE_H

#include <bson/bson.h>
#include <pthread.h>

#include "at_err.h"

typedef enum enr_kind_e { ENR_CAMPAIGN = 0, ENR_PUBLISHER = 1 } enr_kind_t;

typedef enum enr_pricing_e { ENR_PRICING_CPM = 0, ENR_PRICING_CPC } enr_pricing_t;

typedef struct enr_campaign_s {
    char *advertiser;
    char *advertiser_name;
    char *name;
    bool active;             /* status == "active" */
    int64_t start_ms, end_ms; /* live when start <= ts < end */
    int64_t budget_micros;
    enr_pricing_t pricing;
    int64_t price_micros;    /* per 1000 impressions (cpm) or per click (cpc) */
    char **publishers;       /* allowed publisher ids; none = any known, active publisher */
    size_t npublishers;
    int lookback_days;       /* conversions: a click counts this long after it; default 30 */
    int64_t payout_micros;   /* conversions: payout when the conversion names none; default 0 */
} enr_campaign_t;

#define ENR_LOOKBACK_DAYS_DEFAULT 30
#define ENR_LOOKBACK_DAYS_MAX 90

typedef struct enr_publisher_s {
    char *name;
    char *domain;
    bool active; /* status == "active" (else "blocked") */
} enr_publisher_t;

typedef struct enr_entry_s {
    struct enr_entry_s *next; /* hash chain */
    enr_kind_t kind;
    uint8_t idlen;
    char id[65];
    bool deleted;             /* tombstone: version kept, no doc */
    bool exhausted;           /* campaign only: adtrack:exhausted:<id> seen */
    uint64_t version;         /* 0: absent (Redis had nothing) */
    uint64_t budget_version;  /* version of the last applied budget change */
    int64_t fetched_ms;       /* last time the entry was confirmed (fetch, resync or change) */
    union {
        enr_campaign_t *campaign;
        enr_publisher_t *publisher;
        void *doc;
    } u;                      /* NULL when absent or deleted */
} enr_entry_t;

typedef struct enr_cache_s enr_cache_t;

/* Returns an empty cache; entries older than @p ttl_ms count as misses. Free with
 * enr_cache_destroy(). */
enr_cache_t *enr_cache_new(int64_t ttl_ms);
void enr_cache_destroy(enr_cache_t *c);

/* Read access for the worker: lock, look up any number of entries, unlock. The entries
 * stay valid until enr_cache_unlock(). */
void enr_cache_rdlock(enr_cache_t *c);
void enr_cache_unlock(enr_cache_t *c);
/* @locality: any thread holding the read lock. NULL when not cached at all. */
const enr_entry_t *enr_cache_get(enr_cache_t *c, enr_kind_t kind, const char *id, size_t idlen);
/* True when @p e is usable without a refetch at @p now_ms. */
bool enr_cache_fresh(const enr_cache_t *c, const enr_entry_t *e, int64_t now_ms);

/* Where a change comes from: a notification/resync (strictly newer wins) or a read-through
 * fetch (newer or equal wins; refreshes the age). */
typedef enum enr_source_e { ENR_SRC_CHANGE = 0, ENR_SRC_FETCH } enr_source_t;

typedef enum enr_apply_e { ENR_APPLIED = 0, ENR_STALE = 1 } enr_apply_t;

/*
 * Applies a put (@p doc_json not NULL: the entity JSON), a delete (@p deleted) or an absence
 * (version 0, no doc, not deleted: only from fetches). Takes the write lock.
 * Returns ENR_APPLIED, ENR_STALE (ignored by version), or -1 with @p err when the document
 * cannot be read (the entry is left unchanged).
 */
int enr_cache_apply(enr_cache_t *c, enr_kind_t kind, const char *id, size_t idlen, uint64_t version, bool deleted,
                    const char *doc_json, size_t doc_len, enr_source_t src, int64_t now_ms, at_err_t *err);

/* As enr_cache_apply() with the entity as a parsed BSON document (@p doc may be NULL for
 * deletes and absences). */
int enr_cache_apply_bson(enr_cache_t *c, enr_kind_t kind, const char *id, size_t idlen, uint64_t version,
                         bool deleted, const bson_t *doc, enr_source_t src, int64_t now_ms, at_err_t *err);

/* Budget state of a cached campaign. @p version 0 = read from Redis by a fetch or resync
 * (always applied); else applied only when higher than the last budget change. Ignored
 * for a campaign that is not cached. Returns ENR_APPLIED or ENR_STALE. */
int enr_cache_set_exhausted(enr_cache_t *c, const char *id, size_t idlen, bool exhausted, uint64_t version);

/* Applies one change notification body ({"kind","id","version","op","doc"}, CORE-DATA.md).
 * Returns ENR_APPLIED, ENR_STALE, or -1 with @p err for a malformed message. */
int enr_cache_apply_change(enr_cache_t *c, const char *json, size_t len, int64_t now_ms, at_err_t *err);

/* Number of cached entries of @p kind (tombstones and absences included). */
size_t enr_cache_count(enr_cache_t *c, enr_kind_t kind);

/* Parsing helpers, exposed for tests. They return a new object (free with the matching
 * _free) or NULL + err naming the field. */
enr_campaign_t *enr_campaign_from_bson(const bson_t *doc, at_err_t *err);
enr_publisher_t *enr_publisher_from_bson(const bson_t *doc, at_err_t *err);
void enr_campaign_free(enr_campaign_t *cp);
void enr_publisher_free(enr_publisher_t *pb);

/* Parses "YYYY-MM-DDTHH:MM:SS[.fff]Z" into Unix ms. 0 or -1. */
int enr_parse_rfc3339(const char *s, size_t len, int64_t *ms);

#endif
