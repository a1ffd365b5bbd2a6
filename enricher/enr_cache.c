/*
 * enr_cache.c: versioned core-data cache (see enr_cache.h): a chained hash table keyed by
 * (kind, id), grown by doubling, behind one rwlock.
 */
#include "enr_cache.h"
#include "at_time.h"

#include <stdlib.h>
#include <time.h>

struct enr_cache_s {
    pthread_rwlock_t lock;
    enr_entry_t **buckets;
    size_t nbuckets; /* power of two */
    size_t count[2];
    int64_t ttl_ms;
};

static uint64_t hash_key(enr_kind_t kind, const char *id, size_t len)
{
    uint64_t h = UINT64_C(1469598103934665603) ^ (uint64_t)kind;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)id[i];
        h *= UINT64_C(1099511628211);
    }
    return h ^ (h >> 29);
}

enr_cache_t *enr_cache_new(int64_t ttl_ms)
{
    enr_cache_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->nbuckets = 1024;
    c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    c->ttl_ms = ttl_ms;
    pthread_rwlock_init(&c->lock, NULL);
    return c;
}

static void free_doc(enr_entry_t *e)
{
    if (e->kind == ENR_CAMPAIGN)
        enr_campaign_free(e->u.campaign);
    else
        enr_publisher_free(e->u.publisher);
    e->u.doc = NULL;
}

void enr_cache_destroy(enr_cache_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        for (enr_entry_t *e = c->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            free_doc(e);
            free(e);
        }
    }
    free(c->buckets);
    pthread_rwlock_destroy(&c->lock);
    free(c);
}

void enr_cache_rdlock(enr_cache_t *c)
{
    pthread_rwlock_rdlock(&c->lock);
}

void enr_cache_unlock(enr_cache_t *c)
{
    pthread_rwlock_unlock(&c->lock);
}

static enr_entry_t *find(enr_cache_t *c, enr_kind_t kind, const char *id, size_t idlen)
{
    if (idlen == 0 || idlen > 64)
        return NULL;
    size_t b = (size_t)hash_key(kind, id, idlen) & (c->nbuckets - 1);
    for (enr_entry_t *e = c->buckets[b]; e != NULL; e = e->next) {
        if (e->kind == kind && e->idlen == idlen && memcmp(e->id, id, idlen) == 0)
            return e;
    }
    return NULL;
}

const enr_entry_t *enr_cache_get(enr_cache_t *c, enr_kind_t kind, const char *id, size_t idlen)
{
    return find(c, kind, id, idlen);
}

bool enr_cache_fresh(const enr_cache_t *c, const enr_entry_t *e, int64_t now_ms)
{
    return e != NULL && now_ms - e->fetched_ms < c->ttl_ms;
}

static void grow(enr_cache_t *c)
{
    size_t n = c->nbuckets * 2;
    enr_entry_t **nb = calloc(n, sizeof(*nb));
    if (nb == NULL)
        return; /* keep the longer chains; still correct */
    for (size_t i = 0; i < c->nbuckets; i++) {
        for (enr_entry_t *e = c->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            size_t b = (size_t)hash_key(e->kind, e->id, e->idlen) & (n - 1);
            e->next = nb[b];
            nb[b] = e;
        }
    }
    free(c->buckets);
    c->buckets = nb;
    c->nbuckets = n;
}

static enr_entry_t *insert(enr_cache_t *c, enr_kind_t kind, const char *id, size_t idlen)
{
    enr_entry_t *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    e->kind = kind;
    e->idlen = (uint8_t)idlen;
    memcpy(e->id, id, idlen);
    if (c->count[0] + c->count[1] >= c->nbuckets)
        grow(c);
    size_t b = (size_t)hash_key(kind, id, idlen) & (c->nbuckets - 1);
    e->next = c->buckets[b];
    c->buckets[b] = e;
    c->count[kind]++;
    return e;
}

size_t enr_cache_count(enr_cache_t *c, enr_kind_t kind)
{
    pthread_rwlock_rdlock(&c->lock);
    size_t n = c->count[kind];
    pthread_rwlock_unlock(&c->lock);
    return n;
}

/* ---- parsing ---- */

static bool digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return true;
}

int enr_parse_rfc3339(const char *s, size_t len, int64_t *ms)
{
    int y, mo, d, h, mi, sec, frac = 0;
    if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' ||
        s[16] != ':' || (s[len - 1] != 'Z' && s[len - 1] != 'z'))
        return -1;
    if (!digits(s, 4, &y) || !digits(s + 5, 2, &mo) || !digits(s + 8, 2, &d) || !digits(s + 11, 2, &h) ||
        !digits(s + 14, 2, &mi) || !digits(s + 17, 2, &sec))
        return -1;
    if (len > 20) {
        /* fraction: ".d+" before the Z; milliseconds kept, further digits truncated */
        if (s[19] != '.' || len < 22)
            return -1;
        size_t nd = len - 21;
        int scale = 100;
        for (size_t i = 0; i < nd; i++) {
            char ch = s[20 + i];
            if (ch < '0' || ch > '9')
                return -1;
            if (i < 3) {
                frac += (ch - '0') * scale;
                scale /= 10;
            }
        }
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    int64_t days = at_days_from_civil(y, mo, d);
    *ms = ((days * 24 + h) * 60 + mi) * INT64_C(60000) + (int64_t)sec * 1000 + frac;
    return 0;
}

static char *dup_utf8(const bson_iter_t *it)
{
    uint32_t n = 0;
    const char *s = bson_iter_utf8(it, &n);
    char *d = malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

static bool iter_int64(const bson_iter_t *it, int64_t *out)
{
    if (BSON_ITER_HOLDS_INT32(it)) {
        *out = bson_iter_int32(it);
        return true;
    }
    if (BSON_ITER_HOLDS_INT64(it)) {
        *out = bson_iter_int64(it);
        return true;
    }
    if (BSON_ITER_HOLDS_DOUBLE(it)) {
        double v = bson_iter_double(it);
        if (v >= -9.2e18 && v <= 9.2e18 && v == (double)(int64_t)v) {
            *out = (int64_t)v;
            return true;
        }
    }
    return false;
}

void enr_campaign_free(enr_campaign_t *cp)
{
    if (cp == NULL)
        return;
    free(cp->advertiser);
    free(cp->advertiser_name);
    free(cp->name);
    for (size_t i = 0; i < cp->npublishers; i++)
        free(cp->publishers[i]);
    free(cp->publishers);
    free(cp);
}

void enr_publisher_free(enr_publisher_t *pb)
{
    if (pb == NULL)
        return;
    free(pb->name);
    free(pb->domain);
    free(pb);
}

#define FAIL(...)                                                                                                  \
    do {                                                                                                           \
        at_err_set(err, AT_ERR_INVALID, __VA_ARGS__);                                                              \
        goto fail;                                                                                                 \
    } while (0)

enr_campaign_t *enr_campaign_from_bson(const bson_t *doc, at_err_t *err)
{
    enr_campaign_t *cp = calloc(1, sizeof(*cp));
    bson_iter_t it;
    bool have_status = false, have_start = false, have_end = false, have_budget = false, have_price = false,
         have_pricing = false;

    if (cp == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "campaign: out of memory");
        return NULL;
    }
    if (!bson_iter_init(&it, doc))
        FAIL("campaign: unreadable document");
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool utf8 = BSON_ITER_HOLDS_UTF8(&it);
        if (strcmp(k, "advertiser") == 0 && utf8 && cp->advertiser == NULL) {
            cp->advertiser = dup_utf8(&it);
        } else if (strcmp(k, "advertiser_name") == 0 && utf8 && cp->advertiser_name == NULL) {
            cp->advertiser_name = dup_utf8(&it);
        } else if (strcmp(k, "name") == 0 && utf8 && cp->name == NULL) {
            cp->name = dup_utf8(&it);
        } else if (strcmp(k, "status") == 0) {
            uint32_t n = 0;
            const char *s = utf8 ? bson_iter_utf8(&it, &n) : "";
            if (n == 6 && memcmp(s, "active", 6) == 0)
                cp->active = true;
            else if (n == 6 && memcmp(s, "paused", 6) == 0)
                cp->active = false;
            else
                FAIL("campaign status: expected active or paused");
            have_status = true;
        } else if (strcmp(k, "start") == 0 || strcmp(k, "end") == 0) {
            int64_t *dst = k[0] == 's' ? &cp->start_ms : &cp->end_ms;
            if (BSON_ITER_HOLDS_DATE_TIME(&it)) {
                *dst = bson_iter_date_time(&it);
            } else {
                uint32_t n = 0;
                const char *s = utf8 ? bson_iter_utf8(&it, &n) : "";
                if (enr_parse_rfc3339(s, n, dst) != 0)
                    FAIL("campaign %s: expected an RFC 3339 UTC time such as 2026-11-01T00:00:00Z", k);
            }
            if (k[0] == 's')
                have_start = true;
            else
                have_end = true;
        } else if (strcmp(k, "budget_micros") == 0) {
            if (!iter_int64(&it, &cp->budget_micros) || cp->budget_micros < 0)
                FAIL("campaign budget_micros: expected an integer >= 0");
            have_budget = true;
        } else if (strcmp(k, "price_micros") == 0) {
            if (!iter_int64(&it, &cp->price_micros) || cp->price_micros < 0)
                FAIL("campaign price_micros: expected an integer >= 0");
            have_price = true;
        } else if (strcmp(k, "lookback_days") == 0) {
            int64_t d;
            if (!iter_int64(&it, &d) || d < 1 || d > ENR_LOOKBACK_DAYS_MAX)
                FAIL("campaign lookback_days: expected an integer from 1 to %d", ENR_LOOKBACK_DAYS_MAX);
            cp->lookback_days = (int)d;
        } else if (strcmp(k, "payout_micros") == 0) {
            if (!iter_int64(&it, &cp->payout_micros) || cp->payout_micros < 0)
                FAIL("campaign payout_micros: expected an integer >= 0");
        } else if (strcmp(k, "pricing") == 0) {
            uint32_t n = 0;
            const char *s = utf8 ? bson_iter_utf8(&it, &n) : "";
            if (n == 3 && memcmp(s, "cpm", 3) == 0)
                cp->pricing = ENR_PRICING_CPM;
            else if (n == 3 && memcmp(s, "cpc", 3) == 0)
                cp->pricing = ENR_PRICING_CPC;
            else
                FAIL("campaign pricing: expected cpm or cpc");
            have_pricing = true;
        } else if (strcmp(k, "publishers") == 0 && BSON_ITER_HOLDS_ARRAY(&it) && cp->publishers == NULL) {
            bson_iter_t a;
            if (!bson_iter_recurse(&it, &a))
                FAIL("campaign publishers: unreadable array");
            size_t cap = 0;
            while (bson_iter_next(&a)) {
                if (!BSON_ITER_HOLDS_UTF8(&a))
                    FAIL("campaign publishers: expected an array of strings");
                if (cp->npublishers == cap) {
                    cap = cap ? cap * 2 : 4;
                    char **np = realloc(cp->publishers, cap * sizeof(*np));
                    if (np == NULL)
                        FAIL("campaign: out of memory");
                    cp->publishers = np;
                }
                cp->publishers[cp->npublishers++] = dup_utf8(&a);
            }
        }
    }
    if (cp->lookback_days == 0)
        cp->lookback_days = ENR_LOOKBACK_DAYS_DEFAULT;
    if (!have_status)
        FAIL("campaign status: missing");
    if (!have_start || !have_end)
        FAIL("campaign %s: missing", have_start ? "end" : "start");
    if (!have_budget)
        FAIL("campaign budget_micros: missing");
    if (!have_pricing)
        FAIL("campaign pricing: missing");
    if (!have_price)
        FAIL("campaign price_micros: missing");
    if (cp->advertiser == NULL)
        cp->advertiser = calloc(1, 1);
    if (cp->advertiser_name == NULL)
        cp->advertiser_name = calloc(1, 1);
    if (cp->name == NULL)
        cp->name = calloc(1, 1);
    return cp;
fail:
    enr_campaign_free(cp);
    return NULL;
}

enr_publisher_t *enr_publisher_from_bson(const bson_t *doc, at_err_t *err)
{
    enr_publisher_t *pb = calloc(1, sizeof(*pb));
    bson_iter_t it;
    bool have_status = false;

    if (pb == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "publisher: out of memory");
        return NULL;
    }
    if (!bson_iter_init(&it, doc))
        FAIL("publisher: unreadable document");
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bool utf8 = BSON_ITER_HOLDS_UTF8(&it);
        if (strcmp(k, "name") == 0 && utf8 && pb->name == NULL) {
            pb->name = dup_utf8(&it);
        } else if (strcmp(k, "domain") == 0 && utf8 && pb->domain == NULL) {
            pb->domain = dup_utf8(&it);
        } else if (strcmp(k, "status") == 0) {
            uint32_t n = 0;
            const char *s = utf8 ? bson_iter_utf8(&it, &n) : "";
            if (n == 6 && memcmp(s, "active", 6) == 0)
                pb->active = true;
            else if (n == 7 && memcmp(s, "blocked", 7) == 0)
                pb->active = false;
            else
                FAIL("publisher status: expected active or blocked");
            have_status = true;
        }
    }
    if (!have_status)
        FAIL("publisher status: missing");
    if (pb->name == NULL)
        pb->name = calloc(1, 1);
    if (pb->domain == NULL)
        pb->domain = calloc(1, 1);
    return pb;
fail:
    enr_publisher_free(pb);
    return NULL;
}

#undef FAIL

/* ---- applying changes ---- */

int enr_cache_apply_bson(enr_cache_t *c, enr_kind_t kind, const char *id, size_t idlen, uint64_t version,
                         bool deleted, const bson_t *doc, enr_source_t src, int64_t now_ms, at_err_t *err)
{
    void *parsed = NULL;

    if (idlen == 0 || idlen > 64)
        return at_err_set(err, AT_ERR_INVALID, "id: expected 1-64 characters");
    if (!deleted && doc != NULL) {
        /* Parse outside the lock: the worker may be validating a batch. */
        parsed = kind == ENR_CAMPAIGN ? (void *)enr_campaign_from_bson(doc, err)
                                      : (void *)enr_publisher_from_bson(doc, err);
        if (parsed == NULL)
            return -1;
    }
    pthread_rwlock_wrlock(&c->lock);
    enr_entry_t *e = find(c, kind, id, idlen);
    if (e != NULL) {
        bool newer = src == ENR_SRC_FETCH ? version >= e->version : version > e->version;
        if (!newer) {
            if (src == ENR_SRC_FETCH)
                e->fetched_ms = now_ms; /* confirmed against Redis: the newer cached copy stands */
            pthread_rwlock_unlock(&c->lock);
            if (kind == ENR_CAMPAIGN)
                enr_campaign_free(parsed);
            else
                enr_publisher_free(parsed);
            return ENR_STALE;
        }
    } else {
        e = insert(c, kind, id, idlen);
        if (e == NULL) {
            pthread_rwlock_unlock(&c->lock);
            if (kind == ENR_CAMPAIGN)
                enr_campaign_free(parsed);
            else
                enr_publisher_free(parsed);
            return at_err_set(err, AT_ERR_NOMEM, "cache: out of memory");
        }
    }
    free_doc(e);
    e->u.doc = parsed;
    e->version = version;
    e->deleted = deleted;
    e->fetched_ms = now_ms;
    pthread_rwlock_unlock(&c->lock);
    return ENR_APPLIED;
}

int enr_cache_apply(enr_cache_t *c, enr_kind_t kind, const char *id, size_t idlen, uint64_t version, bool deleted,
                    const char *doc_json, size_t doc_len, enr_source_t src, int64_t now_ms, at_err_t *err)
{
    bson_t *doc = NULL;
    if (!deleted && doc_json != NULL) {
        bson_error_t berr;
        doc = bson_new_from_json((const uint8_t *)doc_json, (ssize_t)doc_len, &berr);
        if (doc == NULL)
            return at_err_set(err, AT_ERR_INVALID, "doc: not JSON: %s", berr.message);
    }
    int rc = enr_cache_apply_bson(c, kind, id, idlen, version, deleted, doc, src, now_ms, err);
    bson_destroy(doc);
    return rc;
}

int enr_cache_set_exhausted(enr_cache_t *c, const char *id, size_t idlen, bool exhausted, uint64_t version)
{
    int rc = ENR_STALE;
    pthread_rwlock_wrlock(&c->lock);
    enr_entry_t *e = find(c, ENR_CAMPAIGN, id, idlen);
    if (e != NULL && (version == 0 || version > e->budget_version)) {
        e->exhausted = exhausted;
        if (version > e->budget_version)
            e->budget_version = version;
        rc = ENR_APPLIED;
    }
    pthread_rwlock_unlock(&c->lock);
    return rc;
}

int enr_cache_apply_change(enr_cache_t *c, const char *json, size_t len, int64_t now_ms, at_err_t *err)
{
    bson_error_t berr;
    bson_t *msg = bson_new_from_json((const uint8_t *)json, (ssize_t)len, &berr);
    bson_iter_t it;
    const char *kind = NULL, *id = NULL, *op = NULL;
    uint32_t kindlen = 0, idlen = 0, oplen = 0;
    int64_t version = -1;
    bson_t doc;
    bool have_doc = false;
    int rc;

    if (msg == NULL)
        return at_err_set(err, AT_ERR_INVALID, "change: not JSON: %s", berr.message);
    bson_iter_init(&it, msg);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "kind") == 0 && BSON_ITER_HOLDS_UTF8(&it))
            kind = bson_iter_utf8(&it, &kindlen);
        else if (strcmp(k, "id") == 0 && BSON_ITER_HOLDS_UTF8(&it))
            id = bson_iter_utf8(&it, &idlen);
        else if (strcmp(k, "op") == 0 && BSON_ITER_HOLDS_UTF8(&it))
            op = bson_iter_utf8(&it, &oplen);
        else if (strcmp(k, "version") == 0)
            iter_int64(&it, &version);
        else if (strcmp(k, "doc") == 0 && BSON_ITER_HOLDS_DOCUMENT(&it) && !have_doc) {
            uint32_t dlen;
            const uint8_t *data;
            bson_iter_document(&it, &dlen, &data);
            have_doc = bson_init_static(&doc, data, dlen);
        }
    }
    if (kind == NULL || id == NULL || op == NULL || version <= 0) {
        rc = at_err_set(err, AT_ERR_INVALID, "change: expected kind, id, op and a positive version");
        goto out;
    }
    if (strcmp(kind, "budget") == 0) {
        if (strcmp(op, "exhausted") == 0)
            rc = enr_cache_set_exhausted(c, id, idlen, true, (uint64_t)version);
        else if (strcmp(op, "replenished") == 0)
            rc = enr_cache_set_exhausted(c, id, idlen, false, (uint64_t)version);
        else
            rc = at_err_set(err, AT_ERR_INVALID, "change op: expected exhausted or replenished for a budget");
        goto out;
    }
    enr_kind_t k;
    if (strcmp(kind, "campaign") == 0)
        k = ENR_CAMPAIGN;
    else if (strcmp(kind, "publisher") == 0)
        k = ENR_PUBLISHER;
    else {
        rc = at_err_set(err, AT_ERR_INVALID, "change kind: expected campaign, publisher or budget");
        goto out;
    }
    if (strcmp(op, "put") == 0) {
        if (!have_doc) {
            rc = at_err_set(err, AT_ERR_INVALID, "change doc: missing for a put");
            goto out;
        }
        rc = enr_cache_apply_bson(c, k, id, idlen, (uint64_t)version, false, &doc, ENR_SRC_CHANGE, now_ms, err);
    } else if (strcmp(op, "delete") == 0) {
        rc = enr_cache_apply_bson(c, k, id, idlen, (uint64_t)version, true, NULL, ENR_SRC_CHANGE, now_ms, err);
    } else {
        rc = at_err_set(err, AT_ERR_INVALID, "change op: expected put or delete");
    }
out:
    bson_destroy(msg);
    return rc;
}
