/*
 * enr_ua.h: user-agent classification: browser family, device class and bot detection.
 *
 * Bot detection is a case-insensitive substring match against a pattern list: the
 * built-in default (crawlers, headless browsers, HTTP libraries) or a file given with
 * --bot-patterns (one pattern per line; blank lines and lines starting with '#' are
 * skipped; the file replaces the default list).
 */
#ifndef ENR_UA_H
#define ENR_UA_H

#include "at_err.h"

typedef enum enr_ua_family_e {
    ENR_UA_OTHER = 0,
    ENR_UA_CHROME,
    ENR_UA_FIREFOX,
    ENR_UA_SAFARI,
    ENR_UA_EDGE,
    ENR_UA_OPERA,
} enr_ua_family_t;

typedef enum enr_device_e {
    ENR_DEV_UNKNOWN = 0, /* no user agent */
    ENR_DEV_DESKTOP,
    ENR_DEV_MOBILE,
    ENR_DEV_TABLET,
    ENR_DEV_BOT,
} enr_device_t;

typedef struct enr_ua_s enr_ua_t;

typedef struct enr_ua_info_s {
    enr_ua_family_t family;
    enr_device_t device;
    bool bot;
} enr_ua_info_t;

/* Returns a classifier with the built-in bot list (@p path NULL or empty) or the patterns
 * of the file @p path; NULL + err when the file cannot be read or holds no pattern.
 * Free with enr_ua_destroy(). Read-only after creation, so any thread may use it. */
enr_ua_t *enr_ua_new(const char *path, at_err_t *err);
void enr_ua_destroy(enr_ua_t *ua);
size_t enr_ua_npatterns(const enr_ua_t *ua);

/* Classifies @p s (@p len bytes, not necessarily NUL-terminated; may be empty). */
void enr_ua_classify(const enr_ua_t *ua, const char *s, size_t len, enr_ua_info_t *out);

/*
 * A cache of classifications keyed by the whole user-agent string, for one thread. Traffic
 * repeats a small set of user agents, and a hit costs a hash and a memcmp instead of some
 * 60 case-insensitive substring searches. Direct-mapped with @p slots entries (rounded up
 * to a power of two): a colliding UA replaces the entry, so memory stays bounded (at most
 * slots x AT_EVENT_UA_MAX bytes of keys). Answers are always those of enr_ua_classify() on
 * @p ua, which must outlive the cache. NULL when out of memory. Not thread-safe: one per
 * thread. @locality: the thread that created it.
 */
typedef struct enr_ua_cache_s enr_ua_cache_t;
enr_ua_cache_t *enr_ua_cache_new(const enr_ua_t *ua, size_t slots);
void enr_ua_cache_destroy(enr_ua_cache_t *c);
void enr_ua_cache_classify(enr_ua_cache_t *c, const char *s, size_t len, enr_ua_info_t *out);

/* "chrome", "firefox", "safari", "edge", "opera", "other" */
const char *enr_ua_family_str(enr_ua_family_t f);
/* "unknown", "desktop", "mobile", "tablet", "bot" */
const char *enr_device_str(enr_device_t d);

#endif
