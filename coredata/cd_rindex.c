/*
 * cd_rindex.c: the rollup index and the report aggregation. See cd_rindex.h.
 */
#include "cd_rindex.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "at_common.h"

#define NONE UINT32_MAX
#define STR_MAX 1024 /* longest dimension value accepted (ids are at most 64 bytes) */

#define U_INLINE 6

/* One rollup document. The identity is (hour, c, cr, p, pl, k). */
typedef struct rdoc_s {
    cd_rsums_t s;
    int64_t mt;      /* ms; INT64_MIN when the document has none */
    union {          /* non-zero registers, index << 8 | rank: in place up to U_INLINE (no */
        uint32_t in[U_INLINE]; /* allocation, and a report's scan reads them with the document), */
        uint32_t *heap;        /* else on the heap */
    } u;
    cd_rrej_t *rej;  /* rejections by reason; heap, NULL when none */
    int32_t hour;    /* hours since the epoch */
    int32_t k;
    uint32_t dim[CD_DIM_COUNT]; /* interned c, adv, cr, p, pl (by cd_dim_t) */
    uint16_t nu, nrej;
} rdoc_t;

typedef struct bucket_s {
    int32_t hour;
    uint32_t n, cap;
    uint32_t *docs; /* indexes into ix->docs */
} bucket_t;

struct cd_rindex_s {
    /* interned strings: id -> text, and an open-addressing table text -> id */
    char **strs;
    uint32_t nstrs, capstrs;
    uint32_t *strtab;
    size_t strmask;
    /* documents, and an open-addressing table identity -> document */
    rdoc_t *docs;
    size_t ndocs, capdocs;
    uint32_t *doctab;
    size_t docmask;
    /* hour buckets, ascending */
    bucket_t *buckets;
    size_t nbuckets, capbuckets;
    int64_t newest_mt;
};

static uint64_t mix(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ULL;
    return h ^ (h >> 33);
}

static uint64_t str_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return mix(h);
}

/* ---- interning ---- */

static int str_grow(cd_rindex_t *ix)
{
    size_t size = (ix->strmask + 1) * 2;
    uint32_t *t = malloc(size * sizeof(*t));
    if (t == NULL)
        return -1;
    memset(t, 0xff, size * sizeof(*t));
    for (uint32_t id = 0; id < ix->nstrs; id++) {
        size_t j = str_hash(ix->strs[id], strlen(ix->strs[id])) & (size - 1);
        while (t[j] != NONE)
            j = (j + 1) & (size - 1);
        t[j] = id;
    }
    free(ix->strtab);
    ix->strtab = t;
    ix->strmask = size - 1;
    return 0;
}

/* The id of @p s (length @p n), interning it first. NONE when memory runs out. */
static uint32_t intern(cd_rindex_t *ix, const char *s, size_t n)
{
    size_t j = str_hash(s, n) & ix->strmask;
    for (; ix->strtab[j] != NONE; j = (j + 1) & ix->strmask) {
        const char *t = ix->strs[ix->strtab[j]];
        if (strncmp(t, s, n) == 0 && t[n] == '\0')
            return ix->strtab[j];
    }
    if (ix->nstrs == ix->capstrs) {
        uint32_t cap = ix->capstrs ? ix->capstrs * 2 : 64;
        char **ns = realloc(ix->strs, cap * sizeof(*ns));
        if (ns == NULL)
            return NONE;
        ix->strs = ns;
        ix->capstrs = cap;
    }
    char *copy = malloc(n + 1);
    if (copy == NULL)
        return NONE;
    memcpy(copy, s, n);
    copy[n] = '\0';
    uint32_t id = ix->nstrs++;
    ix->strs[id] = copy;
    ix->strtab[j] = id;
    if ((size_t)ix->nstrs * 2 > ix->strmask + 1 && str_grow(ix) != 0)
        return NONE; /* the string is interned; the table stays usable, only fuller */
    return id;
}

const char *cd_rindex_str(const cd_rindex_t *ix, uint32_t id)
{
    return id < ix->nstrs ? ix->strs[id] : "";
}

/* ---- documents ---- */

static uint64_t doc_hash(const rdoc_t *d)
{
    uint64_t h = (uint64_t)(uint32_t)d->hour << 32 | (uint32_t)d->k;
    h = mix(h ^ d->dim[CD_DIM_CAMPAIGN]);
    h = mix(h ^ ((uint64_t)d->dim[CD_DIM_CREATIVE] << 32 | d->dim[CD_DIM_PUBLISHER]));
    return mix(h ^ d->dim[CD_DIM_PLACEMENT]);
}

static bool same_identity(const rdoc_t *a, const rdoc_t *b)
{
    return a->hour == b->hour && a->k == b->k && a->dim[CD_DIM_CAMPAIGN] == b->dim[CD_DIM_CAMPAIGN] &&
           a->dim[CD_DIM_CREATIVE] == b->dim[CD_DIM_CREATIVE] && a->dim[CD_DIM_PUBLISHER] == b->dim[CD_DIM_PUBLISHER] &&
           a->dim[CD_DIM_PLACEMENT] == b->dim[CD_DIM_PLACEMENT];
}

static int doc_grow(cd_rindex_t *ix)
{
    size_t size = (ix->docmask + 1) * 2;
    uint32_t *t = malloc(size * sizeof(*t));
    if (t == NULL)
        return -1;
    memset(t, 0xff, size * sizeof(*t));
    for (size_t i = 0; i < ix->ndocs; i++) {
        size_t j = doc_hash(&ix->docs[i]) & (size - 1);
        while (t[j] != NONE)
            j = (j + 1) & (size - 1);
        t[j] = (uint32_t)i;
    }
    free(ix->doctab);
    ix->doctab = t;
    ix->docmask = size - 1;
    return 0;
}

cd_rindex_t *cd_rindex_new(void)
{
    cd_rindex_t *ix = calloc(1, sizeof(*ix));
    if (ix == NULL)
        return NULL;
    ix->strmask = 63;
    ix->docmask = 1023;
    ix->strtab = malloc((ix->strmask + 1) * sizeof(uint32_t));
    ix->doctab = malloc((ix->docmask + 1) * sizeof(uint32_t));
    ix->newest_mt = INT64_MIN;
    if (ix->strtab == NULL || ix->doctab == NULL) {
        cd_rindex_destroy(ix);
        return NULL;
    }
    memset(ix->strtab, 0xff, (ix->strmask + 1) * sizeof(uint32_t));
    memset(ix->doctab, 0xff, (ix->docmask + 1) * sizeof(uint32_t));
    if (intern(ix, "", 0) != 0) { /* id 0 is the empty string: "no such dimension" */
        cd_rindex_destroy(ix);
        return NULL;
    }
    return ix;
}

void cd_rindex_destroy(cd_rindex_t *ix)
{
    if (ix == NULL)
        return;
    for (uint32_t i = 0; i < ix->nstrs; i++)
        free(ix->strs[i]);
    free(ix->strs);
    free(ix->strtab);
    for (size_t i = 0; i < ix->ndocs; i++) {
        if (ix->docs[i].nu > U_INLINE)
            free(ix->docs[i].u.heap);
        free(ix->docs[i].rej);
    }
    free(ix->docs);
    free(ix->doctab);
    for (size_t i = 0; i < ix->nbuckets; i++)
        free(ix->buckets[i].docs);
    free(ix->buckets);
    free(ix);
}

size_t cd_rindex_count(const cd_rindex_t *ix)
{
    return ix->ndocs;
}

int64_t cd_rindex_newest_mt(const cd_rindex_t *ix)
{
    return ix->newest_mt;
}

/* First bucket whose hour is >= @p hour. */
static size_t bucket_lower(const cd_rindex_t *ix, int64_t hour)
{
    size_t lo = 0, hi = ix->nbuckets;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (ix->buckets[mid].hour < hour)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int bucket_add(cd_rindex_t *ix, int32_t hour, uint32_t doc)
{
    size_t i = bucket_lower(ix, hour);
    if (i == ix->nbuckets || ix->buckets[i].hour != hour) {
        if (ix->nbuckets == ix->capbuckets) {
            size_t cap = ix->capbuckets ? ix->capbuckets * 2 : 256;
            bucket_t *nb = realloc(ix->buckets, cap * sizeof(*nb));
            if (nb == NULL)
                return -1;
            ix->buckets = nb;
            ix->capbuckets = cap;
        }
        /* Usually the newest hour: the move is then empty. */
        memmove(&ix->buckets[i + 1], &ix->buckets[i], (ix->nbuckets - i) * sizeof(*ix->buckets));
        ix->buckets[i] = (bucket_t){.hour = hour};
        ix->nbuckets++;
    }
    bucket_t *b = &ix->buckets[i];
    if (b->n == b->cap) {
        uint32_t cap = b->cap ? b->cap * 2 : 16;
        uint32_t *nd = realloc(b->docs, cap * sizeof(*nd));
        if (nd == NULL)
            return -1;
        b->docs = nd;
        b->cap = cap;
    }
    b->docs[b->n++] = doc;
    return 0;
}

static int get_int(const bson_iter_t *it, int64_t *out)
{
    if (BSON_ITER_HOLDS_INT32(it))
        *out = bson_iter_int32(it);
    else if (BSON_ITER_HOLDS_INT64(it))
        *out = bson_iter_int64(it);
    else
        return -1;
    return 0;
}

/* Reads the registers of "u" into d->u. */
static int parse_u(bson_iter_t *it, rdoc_t *d, at_err_t *err)
{
    bson_iter_t c;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &c))
        return at_err_set(err, AT_ERR_INVALID, "u: expected a document of HyperLogLog registers");
    uint32_t tmp[AT_HLL_REGISTERS];
    size_t n = 0;
    while (bson_iter_next(&c)) {
        const char *key = bson_iter_key(&c);
        char *end = NULL;
        long index = strtol(key, &end, 10);
        int64_t rank;
        if (key[0] < '0' || key[0] > '9' || *end != '\0' || index < 0 || index >= (long)AT_HLL_REGISTERS)
            return at_err_set(err, AT_ERR_INVALID, "u.%.16s: expected a register index from 0 to %u", key,
                              AT_HLL_REGISTERS - 1);
        if (get_int(&c, &rank) != 0 || rank < 1 || rank > AT_HLL_RANK_MAX)
            return at_err_set(err, AT_ERR_INVALID, "u.%s: expected a rank from 1 to %d", key, AT_HLL_RANK_MAX);
        if (n == AT_HLL_REGISTERS)
            return at_err_set(err, AT_ERR_INVALID, "u: expected each register once");
        tmp[n++] = (uint32_t)index << 8 | (uint32_t)rank;
    }
    if (n == 0)
        return 0;
    if (n <= U_INLINE) {
        memcpy(d->u.in, tmp, n * sizeof(*tmp));
    } else {
        d->u.heap = malloc(n * sizeof(*tmp));
        if (d->u.heap == NULL)
            return at_err_set(err, AT_ERR_NOMEM, "out of memory");
        memcpy(d->u.heap, tmp, n * sizeof(*tmp));
    }
    d->nu = (uint16_t)n;
    return 0;
}

static int parse_rej(cd_rindex_t *ix, bson_iter_t *it, rdoc_t *d, at_err_t *err)
{
    bson_iter_t c;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &c))
        return at_err_set(err, AT_ERR_INVALID, "rej: expected a document {reason: count}");
    uint32_t n = 0;
    bson_iter_t cnt = c;
    while (bson_iter_next(&cnt))
        n++;
    if (n == 0)
        return 0;
    if (n > UINT16_MAX)
        return at_err_set(err, AT_ERR_INVALID, "rej: expected at most %u reasons", UINT16_MAX);
    d->rej = malloc(n * sizeof(*d->rej));
    if (d->rej == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    while (bson_iter_next(&c)) {
        int64_t v;
        uint32_t klen;
        const char *key = bson_iter_key(&c);
        klen = (uint32_t)strlen(key);
        if (get_int(&c, &v) != 0 || v < 0)
            return at_err_set(err, AT_ERR_INVALID, "rej.%.64s: expected a non-negative integer", key);
        uint32_t id = intern(ix, key, klen > STR_MAX ? STR_MAX : klen);
        if (id == NONE)
            return at_err_set(err, AT_ERR_NOMEM, "out of memory");
        d->rej[d->nrej++] = (cd_rrej_t){.reason = id, .n = v};
    }
    return 0;
}

static void doc_free(rdoc_t *d)
{
    if (d->nu > U_INLINE)
        free(d->u.heap);
    free(d->rej);
    d->nu = 0;
    d->rej = NULL;
}

/* Reads @p doc into @p d (interning its strings). */
static int parse_doc(cd_rindex_t *ix, const bson_t *doc, rdoc_t *d, at_err_t *err)
{
    static const struct {
        const char *name;
        size_t off;
    } counts[] = {
        {"imp", offsetof(cd_rsums_t, imp)},         {"view", offsetof(cd_rsums_t, view)},
        {"click", offsetof(cd_rsums_t, click)},     {"conv", offsetof(cd_rsums_t, conv)},
        {"spend", offsetof(cd_rsums_t, spend)},     {"payout", offsetof(cd_rsums_t, payout)},
        {"rejected", offsetof(cd_rsums_t, rejected)},
    };
    static const struct {
        const char *name;
        cd_dim_t dim;
    } dims[] = {{"c", CD_DIM_CAMPAIGN}, {"adv", CD_DIM_ADVERTISER}, {"cr", CD_DIM_CREATIVE},
                {"p", CD_DIM_PUBLISHER}, {"pl", CD_DIM_PLACEMENT}};
    bson_iter_t it;
    unsigned seen = 0; /* bits: h, k, c, cr, p, pl */
    memset(d, 0, sizeof(*d));
    d->mt = INT64_MIN;
    if (!bson_iter_init(&it, doc))
        return at_err_set(err, AT_ERR_INVALID, "(document): not valid BSON");
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        if (strcmp(key, "h") == 0) {
            if (!BSON_ITER_HOLDS_DATE_TIME(&it))
                return at_err_set(err, AT_ERR_INVALID, "h: expected a date");
            int64_t ms = bson_iter_date_time(&it);
            if (ms % 3600000 != 0 || ms / 3600000 > INT32_MAX || ms < 0)
                return at_err_set(err, AT_ERR_INVALID, "h: expected the start of an hour after 1970");
            d->hour = (int32_t)(ms / 3600000);
            seen |= 1;
            continue;
        }
        if (strcmp(key, "k") == 0) {
            int64_t k;
            if (get_int(&it, &k) != 0 || k < -1 || k > INT32_MAX)
                return at_err_set(err, AT_ERR_INVALID, "k: expected a partition number (or -1)");
            d->k = (int32_t)k;
            seen |= 2;
            continue;
        }
        if (strcmp(key, "mt") == 0) {
            if (!BSON_ITER_HOLDS_DATE_TIME(&it))
                return at_err_set(err, AT_ERR_INVALID, "mt: expected a date");
            d->mt = bson_iter_date_time(&it);
            continue;
        }
        if (strcmp(key, "u") == 0) {
            if (parse_u(&it, d, err) != 0)
                return -1;
            continue;
        }
        if (strcmp(key, "rej") == 0) {
            if (parse_rej(ix, &it, d, err) != 0)
                return -1;
            continue;
        }
        bool done = false;
        for (size_t i = 0; i < AT_ARRAY_LEN(dims) && !done; i++) {
            if (strcmp(key, dims[i].name) != 0)
                continue;
            uint32_t len;
            const char *s;
            if (!BSON_ITER_HOLDS_UTF8(&it) || (s = bson_iter_utf8(&it, &len), len > STR_MAX))
                return at_err_set(err, AT_ERR_INVALID, "%s: expected a string of at most %d bytes", key, STR_MAX);
            if (memchr(s, '\0', len) != NULL)
                return at_err_set(err, AT_ERR_INVALID, "%s: expected a string without NUL", key);
            uint32_t id = intern(ix, s, len);
            if (id == NONE)
                return at_err_set(err, AT_ERR_NOMEM, "out of memory");
            d->dim[dims[i].dim] = id;
            if (dims[i].dim != CD_DIM_ADVERTISER)
                seen |= 4u << dims[i].dim;
            done = true;
        }
        for (size_t i = 0; i < AT_ARRAY_LEN(counts) && !done; i++) {
            if (strcmp(key, counts[i].name) != 0)
                continue;
            int64_t v;
            if (get_int(&it, &v) != 0 || v < 0)
                return at_err_set(err, AT_ERR_INVALID, "%s: expected a non-negative integer", key);
            *(int64_t *)((char *)&d->s + counts[i].off) = v;
            done = true;
        }
        /* _id, o and fields added later are not needed here. */
    }
    static const char *const required[] = {"h", "k", "c", "", "cr", "p", "pl"};
    for (unsigned b = 0; b < 7; b++)
        if (required[b][0] != '\0' && !(seen & (1u << b)))
            return at_err_set(err, AT_ERR_INVALID, "%s: missing", required[b]);
    return 0;
}

int cd_rindex_put(cd_rindex_t *ix, const bson_t *doc, at_err_t *err)
{
    rdoc_t d;
    if (parse_doc(ix, doc, &d, err) != 0) {
        doc_free(&d);
        return -1;
    }
    if (d.mt > ix->newest_mt)
        ix->newest_mt = d.mt;
    size_t j = doc_hash(&d) & ix->docmask;
    for (; ix->doctab[j] != NONE; j = (j + 1) & ix->docmask) {
        rdoc_t *old = &ix->docs[ix->doctab[j]];
        if (!same_identity(old, &d))
            continue;
        if (d.mt < old->mt) { /* an older version: keep the newer one */
            doc_free(&d);
            return 0;
        }
        doc_free(old);
        *old = d;
        return 1;
    }
    if (ix->ndocs >= NONE - 1) {
        doc_free(&d);
        return at_err_set(err, AT_ERR_TOO_LARGE, "the reports index is full (%zu documents)", ix->ndocs);
    }
    if (ix->ndocs == ix->capdocs) {
        size_t cap = ix->capdocs ? ix->capdocs * 2 : 1024;
        rdoc_t *nd = realloc(ix->docs, cap * sizeof(*nd));
        if (nd == NULL) {
            doc_free(&d);
            return at_err_set(err, AT_ERR_NOMEM, "out of memory");
        }
        ix->docs = nd;
        ix->capdocs = cap;
    }
    uint32_t di = (uint32_t)ix->ndocs;
    if (bucket_add(ix, d.hour, di) != 0) {
        doc_free(&d);
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    }
    ix->docs[ix->ndocs++] = d;
    ix->doctab[j] = di;
    if (ix->ndocs * 2 > ix->docmask + 1 && doc_grow(ix) != 0)
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    return 1;
}

/* ---- aggregation ---- */

double cd_rindex_hll_estimate(const uint32_t hist[AT_HLL_RANK_MAX + 1])
{
    const double m = AT_HLL_REGISTERS;
    double sum = 0;
    for (int r = 0; r <= AT_HLL_RANK_MAX; r++) /* 2^-r exactly, as ldexp(1, -r) */
        if (hist[r] != 0)
            sum += (double)hist[r] / (double)(UINT64_C(1) << r);
    uint32_t zeros = hist[0];
    if (zeros == AT_HLL_REGISTERS)
        return 0;
    double alpha = 0.7213 / (1.0 + 1.079 / m);
    double e = alpha * m * m / sum;
    if (e <= 2.5 * m && zeros > 0)
        e = m * log(m / (double)zeros);
    return e;
}

static void add_sums(cd_rsums_t *a, const cd_rsums_t *b)
{
    a->imp += b->imp;
    a->view += b->view;
    a->click += b->click;
    a->conv += b->conv;
    a->spend += b->spend;
    a->payout += b->payout;
    a->rejected += b->rejected;
}

/* A sketch being merged into, with its registers counted by rank. */
typedef struct sketch_s {
    at_hll_t hll;
    uint32_t hist[AT_HLL_RANK_MAX + 1];
} sketch_t;

static void sketch_clear(sketch_t *k)
{
    at_hll_clear(&k->hll);
    memset(k->hist, 0, sizeof(k->hist));
    k->hist[0] = AT_HLL_REGISTERS;
}

static const uint32_t *doc_u(const rdoc_t *d)
{
    return d->nu <= U_INLINE ? d->u.in : d->u.heap;
}

/* Raises @p k's registers to the @p n entries (index << 8 | rank) at @p u. */
static void sketch_add(sketch_t *k, const uint32_t *u, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t idx = u[i] >> 8;
        uint8_t rank = (uint8_t)(u[i] & 0xff), cur = k->hll.reg[idx];
        if (cur < rank) {
            k->hist[cur]--;
            k->hist[rank]++;
            k->hll.reg[idx] = rank;
        }
    }
}

/* A group being summed: its row, sketch (from the pool) and rejections. */
/*
 * A group's unique users while its period is summed: first just the documents' register
 * entries appended (ureg; a day of a campaign is a few hundred), resolved at the end of the
 * period through one scratch array that stays in the cache; past SPARSE_MAX entries a dense
 * sketch from the pool. Merging straight into a 2 KiB sketch per group cost a cache miss
 * per register once a period has thousands of groups.
 */
#define SPARSE_MAX 4096

typedef struct group_s {
    uint32_t *ureg;
    size_t nureg, capureg;
    sketch_t *dense;
    cd_rrej_t *rej;
    size_t nrej, caprej;
} group_t;

typedef struct agg_s {
    const cd_rindex_t *ix;
    const cd_rspec_t *spec;
    cd_rrow_t *rows;
    group_t *groups;
    size_t n, cap;
    uint32_t *tab; /* groups of the current period: key -> index */
    size_t mask;
    size_t period_first; /* first group of the current period */
    sketch_t **pool; /* free dense sketches */
    size_t npool, cappool;
    sketch_t *total_hll;
    uint8_t scratch[AT_HLL_REGISTERS]; /* all zero between uses */
    group_t total;
} agg_t;

static uint64_t group_hash(const agg_t *a, const uint32_t *key)
{
    uint64_t h = 0;
    for (int i = 0; i < a->spec->ndims; i++)
        h = mix(h ^ key[a->spec->dims[i]]) + (uint64_t)i;
    return h;
}

static int add_rej(group_t *g, const rdoc_t *d)
{
    for (uint16_t i = 0; i < d->nrej; i++) {
        size_t j = 0;
        while (j < g->nrej && g->rej[j].reason != d->rej[i].reason)
            j++;
        if (j == g->nrej) {
            if (g->nrej == g->caprej) {
                size_t cap = g->caprej ? g->caprej * 2 : 4;
                cd_rrej_t *nr = realloc(g->rej, cap * sizeof(*nr));
                if (nr == NULL)
                    return -1;
                g->rej = nr;
                g->caprej = cap;
            }
            g->rej[g->nrej++] = (cd_rrej_t){.reason = d->rej[i].reason, .n = 0};
        }
        g->rej[j].n += d->rej[i].n;
    }
    return 0;
}

static int cmp_rows(const void *pa, const void *pb, void *opaque)
{
    const agg_t *a = opaque;
    const cd_rrow_t *x = pa, *y = pb;
    for (int i = 0; i < a->spec->ndims; i++) {
        cd_dim_t dm = a->spec->dims[i];
        if (x->key[dm] == y->key[dm])
            continue;
        int c = strcmp(cd_rindex_str(a->ix, x->key[dm]), cd_rindex_str(a->ix, y->key[dm]));
        if (c != 0)
            return c;
    }
    return 0;
}

static int cmp_rej(const void *pa, const void *pb, void *opaque)
{
    const cd_rindex_t *ix = opaque;
    return strcmp(cd_rindex_str(ix, ((const cd_rrej_t *)pa)->reason), cd_rindex_str(ix, ((const cd_rrej_t *)pb)->reason));
}

/* The current period is complete: estimate its groups, give their sketches back, sort its
 * rows (the groups move with them: sorted through a permutation). */
static int end_period(agg_t *a)
{
    size_t first = a->period_first, n = a->n - first;
    for (size_t i = first; i < a->n; i++) {
        group_t *g = &a->groups[i];
        if (g->dense != NULL) {
            a->rows[i].uniques = cd_rindex_hll_estimate(g->dense->hist);
            a->pool[a->npool++] = g->dense;
            g->dense = NULL;
        } else if (g->nureg > 0) {
            uint32_t hist[AT_HLL_RANK_MAX + 1] = {0};
            for (size_t k = 0; k < g->nureg; k++) {
                uint32_t idx = g->ureg[k] >> 8;
                uint8_t rank = (uint8_t)(g->ureg[k] & 0xff);
                if (a->scratch[idx] < rank)
                    a->scratch[idx] = rank;
            }
            uint32_t used = 0;
            for (size_t k = 0; k < g->nureg; k++) { /* each register once: zeroed when counted */
                uint32_t idx = g->ureg[k] >> 8;
                if (a->scratch[idx] != 0) {
                    hist[a->scratch[idx]]++;
                    a->scratch[idx] = 0;
                    used++;
                }
            }
            hist[0] = AT_HLL_REGISTERS - used;
            a->rows[i].uniques = cd_rindex_hll_estimate(hist);
        }
        free(g->ureg);
        g->ureg = NULL;
        g->nureg = g->capureg = 0;
        /* Park the group's index in rej_at so the sort keeps rows and groups together. */
        a->rows[i].rej_at = i;
    }
    if (n > 1) {
        qsort_r(&a->rows[first], n, sizeof(*a->rows), cmp_rows, a);
        group_t *tmp = malloc(n * sizeof(*tmp));
        if (tmp == NULL)
            return -1;
        for (size_t i = 0; i < n; i++)
            tmp[i] = a->groups[a->rows[first + i].rej_at];
        memcpy(&a->groups[first], tmp, n * sizeof(*tmp));
        free(tmp);
    }
    a->period_first = a->n;
    memset(a->tab, 0xff, (a->mask + 1) * sizeof(*a->tab));
    return 0;
}

static int tab_grow(agg_t *a)
{
    size_t size = (a->mask + 1) * 2;
    uint32_t *t = malloc(size * sizeof(*t));
    if (t == NULL)
        return -1;
    memset(t, 0xff, size * sizeof(*t));
    for (size_t i = a->period_first; i < a->n; i++) {
        size_t j = group_hash(a, a->rows[i].key) & (size - 1);
        while (t[j] != NONE)
            j = (j + 1) & (size - 1);
        t[j] = (uint32_t)i;
    }
    free(a->tab);
    a->tab = t;
    a->mask = size - 1;
    return 0;
}

/* The group of @p key in the current period @p period, created when new. NULL: no memory. */
static size_t find_group(agg_t *a, int64_t period, const uint32_t *key)
{
    size_t j = group_hash(a, key) & a->mask;
    for (; a->tab[j] != NONE; j = (j + 1) & a->mask) {
        const cd_rrow_t *r = &a->rows[a->tab[j]];
        bool eq = true;
        for (int i = 0; i < a->spec->ndims && eq; i++)
            eq = r->key[a->spec->dims[i]] == key[a->spec->dims[i]];
        if (eq)
            return a->tab[j];
    }
    if (a->n == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 256;
        cd_rrow_t *nr = realloc(a->rows, cap * sizeof(*nr));
        if (nr == NULL)
            return SIZE_MAX;
        a->rows = nr;
        group_t *ng = realloc(a->groups, cap * sizeof(*ng));
        if (ng == NULL)
            return SIZE_MAX;
        a->groups = ng;
        a->cap = cap;
    }
    size_t gi = a->n++;
    cd_rrow_t *r = &a->rows[gi];
    memset(r, 0, sizeof(*r));
    r->period = period;
    for (int i = 0; i < a->spec->ndims; i++)
        r->key[a->spec->dims[i]] = key[a->spec->dims[i]];
    group_t *g = &a->groups[gi];
    memset(g, 0, sizeof(*g));
    a->tab[j] = (uint32_t)gi;
    if ((a->n - a->period_first) * 2 > a->mask + 1 && tab_grow(a) != 0)
        return SIZE_MAX;
    return gi;
}

/* Adds document @p d's registers to group @p g. -1: out of memory. */
static int group_add_u(agg_t *a, group_t *g, const rdoc_t *d)
{
    if (d->nu == 0)
        return 0;
    if (g->dense == NULL && g->nureg + d->nu > SPARSE_MAX) {
        if (a->npool + 1 > a->cappool) {
            size_t cap = a->cappool ? a->cappool * 2 : 16;
            sketch_t **np = realloc(a->pool, cap * sizeof(*np));
            if (np == NULL)
                return -1;
            a->pool = np;
            a->cappool = cap;
        }
        g->dense = a->npool > 0 ? a->pool[--a->npool] : malloc(sizeof(*g->dense));
        if (g->dense == NULL)
            return -1;
        sketch_clear(g->dense);
        sketch_add(g->dense, g->ureg, g->nureg);
        free(g->ureg);
        g->ureg = NULL;
        g->nureg = g->capureg = 0;
    }
    if (g->dense != NULL) {
        sketch_add(g->dense, doc_u(d), d->nu);
        return 0;
    }
    if (g->nureg + d->nu > g->capureg) {
        size_t cap = g->capureg ? g->capureg * 2 : 64;
        while (cap < g->nureg + d->nu)
            cap *= 2;
        uint32_t *nu = realloc(g->ureg, cap * sizeof(*nu));
        if (nu == NULL)
            return -1;
        g->ureg = nu;
        g->capureg = cap;
    }
    memcpy(g->ureg + g->nureg, doc_u(d), d->nu * sizeof(uint32_t));
    g->nureg += d->nu;
    return 0;
}

static void agg_free(agg_t *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->groups[i].dense);
        free(a->groups[i].ureg);
        free(a->groups[i].rej);
    }
    for (size_t i = 0; i < a->npool; i++)
        free(a->pool[i]);
    free(a->pool);
    free(a->total_hll);
    free(a->groups);
    free(a->tab);
    free(a->total.rej);
}

int cd_rindex_query(const cd_rindex_t *ix, const cd_rspec_t *spec, cd_rresult_t *res, at_err_t *err)
{
    agg_t a = {.ix = ix, .spec = spec, .mask = 1023};
    memset(res, 0, sizeof(*res));
    a.tab = malloc((a.mask + 1) * sizeof(*a.tab));
    if (a.tab == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    memset(a.tab, 0xff, (a.mask + 1) * sizeof(*a.tab));
    if (spec->uniques) {
        a.total_hll = malloc(sizeof(*a.total_hll));
        if (a.total_hll == NULL)
            goto nomem;
        sketch_clear(a.total_hll);
    }
    int64_t cur = INT64_MIN;
    uint32_t key[CD_DIM_COUNT] = {0};
    for (size_t b = bucket_lower(ix, spec->from / 3600); b < ix->nbuckets; b++) {
        const bucket_t *bk = &ix->buckets[b];
        int64_t hour = (int64_t)bk->hour * 3600;
        if (hour >= spec->to)
            break;
        int64_t period = spec->period(hour, spec->period_opaque);
        if (period != cur) {
            if (cur != INT64_MIN && end_period(&a) != 0)
                goto nomem;
            cur = period;
        }
        size_t gi = SIZE_MAX; /* the previous document's group: neighbours often share it */
        for (uint32_t i = 0; i < bk->n; i++) {
            const rdoc_t *d = &ix->docs[bk->docs[i]];
            bool same = gi != SIZE_MAX;
            for (int k = 0; k < spec->ndims; k++) {
                same = same && key[spec->dims[k]] == d->dim[spec->dims[k]];
                key[spec->dims[k]] = d->dim[spec->dims[k]];
            }
            if (!same)
                gi = find_group(&a, period, key);
            if (gi == SIZE_MAX)
                goto nomem;
            add_sums(&a.rows[gi].s, &d->s);
            add_sums(&res->totals.s, &d->s);
            if (spec->uniques) {
                if (group_add_u(&a, &a.groups[gi], d) != 0)
                    goto nomem;
                sketch_add(a.total_hll, doc_u(d), d->nu);
            }
            if (spec->by_reason && d->nrej > 0 && (add_rej(&a.groups[gi], d) != 0 || add_rej(&a.total, d) != 0))
                goto nomem;
            res->docs++;
        }
    }
    if (cur != INT64_MIN && end_period(&a) != 0)
        goto nomem;
    if (spec->uniques)
        res->totals.uniques = cd_rindex_hll_estimate(a.total_hll->hist);
    /* Rejections by reason: one array, each row's slice sorted by reason text. */
    size_t nrej = a.total.nrej;
    for (size_t i = 0; i < a.n; i++)
        nrej += a.groups[i].nrej;
    if (nrej > 0) {
        res->rej = malloc(nrej * sizeof(*res->rej));
        if (res->rej == NULL)
            goto nomem;
    }
    for (size_t i = 0; i <= a.n; i++) {
        group_t *g = i < a.n ? &a.groups[i] : &a.total;
        cd_rrow_t *r = i < a.n ? &a.rows[i] : &res->totals;
        r->rej_at = res->nrej;
        r->nrej = g->nrej;
        if (g->nrej > 0) {
            memcpy(&res->rej[res->nrej], g->rej, g->nrej * sizeof(*g->rej));
            qsort_r(&res->rej[res->nrej], g->nrej, sizeof(*res->rej), cmp_rej, (void *)ix);
            res->nrej += g->nrej;
        }
    }
    res->rows = a.rows;
    res->nrows = a.n;
    agg_free(&a);
    return 0;
nomem:
    free(a.rows);
    agg_free(&a);
    cd_rresult_free(res);
    return at_err_set(err, AT_ERR_NOMEM, "out of memory while aggregating the report");
}

void cd_rresult_free(cd_rresult_t *res)
{
    if (res == NULL)
        return;
    free(res->rows);
    free(res->rej);
    memset(res, 0, sizeof(*res));
}

const cd_rrej_t *cd_rresult_rej(const cd_rresult_t *res, const cd_rrow_t *r, size_t *n)
{
    *n = r->nrej;
    return r->nrej > 0 ? &res->rej[r->rej_at] : NULL;
}
