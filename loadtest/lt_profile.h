/*
 * lt_profile.h: synthetic ad traffic from a profile.
 *
 * A profile describes a campaign/publisher mix: how many campaigns, creatives, publishers,
 * placements and users there are, how skewed their popularity is (Zipf exponent; 0 =
 * uniform, 1 = classic Zipf where the top item gets about as much as the next ten), the
 * ratio of event types (imp/view/click/conv), the share sent as sendBeacon batches, and a
 * seed. The profile file is JSON (see docs/LOADTEST.md); every field is optional.
 *
 * Request i is generated from (seed, i) alone, so a run is reproducible whatever the
 * number of threads or which thread sends which request.
 */
#ifndef LT_PROFILE_H
#define LT_PROFILE_H

#include "at_err.h"
#include "lt_buf.h"

/* Small, fast, seedable PRNG (xoshiro256**), seeded through splitmix64. */
typedef struct lt_rng_s {
    uint64_t s[4];
} lt_rng_t;

void lt_rng_seed(lt_rng_t *r, uint64_t seed);
uint64_t lt_rng_next(lt_rng_t *r);
/* Uniform in [0, 1). */
double lt_rng_double(lt_rng_t *r);
/* Uniform in [0, n). n > 0. */
uint64_t lt_rng_below(lt_rng_t *r, uint64_t n);

/* Zipf-distributed ranks 0..n-1 with exponent s (s = 0: uniform). */
typedef struct lt_zipf_s {
    uint64_t n;
    double s;
    double *cdf; /* heap, n entries, or NULL when uniform */
} lt_zipf_t;

int lt_zipf_init(lt_zipf_t *z, uint64_t n, double s, at_err_t *err);
void lt_zipf_free(lt_zipf_t *z);
uint64_t lt_zipf_sample(const lt_zipf_t *z, lt_rng_t *r);

enum { LT_EV_IMP = 0, LT_EV_VIEW, LT_EV_CLICK, LT_EV_CONV, LT_EV_COUNT };

typedef struct lt_profile_s {
    uint64_t seed;
    uint64_t campaigns, creatives_per_campaign, publishers, placements_per_publisher, users;
    double campaign_skew, publisher_skew, user_skew;
    double mix[LT_EV_COUNT]; /* normalised to sum 1 */
    double beacon_ratio;     /* share of requests sent as POST /v1/events */
    uint64_t beacon_batch;   /* events per beacon request (1..500) */
    char **campaign_ids;     /* heap array of heap strings, or NULL: "camp-<n>" */
    char **publisher_ids;    /* same, "pub-<n>" */
    char *page_url;          /* page URL template; "{p}" = publisher, "{n}" = page number */
    char *click_dest;        /* click destination template; "{c}" = campaign */
    char *click_secret;      /* HMAC key for click signatures; NULL = unsigned clicks */
    /* derived */
    lt_zipf_t zc, zp, zu;
    char **click_sigs;            /* per campaign: percent-encoded d=...&sig=... */
    char **cids, **pids;          /* per campaign / publisher: the id text */
    char **page_pre, **page_post; /* per publisher: percent-encoded page URL around {n} */
} lt_profile_t;

/* Fills @p p with the built-in defaults (100 campaigns, 50 publishers, 100000 users,
 * 90% imp / 7% view / 2% click / 1% conv, Zipf 1.0 / 0.8 / 0). */
void lt_profile_defaults(lt_profile_t *p);

/* Applies the JSON object @p json (length @p len) over the current values. Returns 0, or
 * -1 with @p err naming the field and what was expected. */
int lt_profile_parse(lt_profile_t *p, const char *json, size_t len, at_err_t *err);

/* Reads and applies a profile file. */
int lt_profile_load(lt_profile_t *p, const char *path, at_err_t *err);

/* Sets the click secret (copied); NULL or "" for unsigned clicks. */
int lt_profile_set_secret(lt_profile_t *p, const char *secret, at_err_t *err);

/* Builds the samplers and click signatures; call once after the setters, before
 * lt_profile_request(). Returns 0 or -1 with @p err. */
int lt_profile_prepare(lt_profile_t *p, at_err_t *err);

/* Releases everything the profile owns. Accepts NULL. */
void lt_profile_free(lt_profile_t *p);

/*
 * Generates request @p i: writes the method ("GET"/"POST") into *@p method, the path and
 * query into @p target and the body (empty for GET) into @p body, both cleared first.
 * @p tag (may be NULL) is put into each beacon element as "tag"; the query tag is added
 * by the HTTP layer. @p scratch is a caller-owned work buffer (one per thread). Returns the
 * number of events the request carries (1, or the batch size). Thread-safe on a prepared
 * profile (read-only).
 */
unsigned lt_profile_request(const lt_profile_t *p, uint64_t i, const char *tag, const char **method, lt_buf_t *target,
                            lt_buf_t *body, lt_buf_t *scratch);

#endif
