/*
 * enr_rollup.c: the hourly rollups and their offset gate (see enr_rollup.h and
 * docs/REPORTS.md "Hourly rollups", docs/ENRICHER.md "Rollups").
 *
 * Memory: a table of documents keyed by _id. Each knows its gate ("o", the highest offset
 * counted) and, in the file store, its totals (body_t: the counters and a dense 2 KB
 * HyperLogLog). A batch is kept as one small record per message (rec_t: the document it
 * goes to, its offset and what it adds), so the gate can be applied again in a later round
 * without the caller's strings. At commit each document the batch changes gets a delta_t
 * (what the batch adds past the gate, and the highest offset it counts).
 *
 * @locality: the enricher worker thread that owns the store; no locking.
 */
#include "enr_rollup.h"

#include <stddef.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mongoc/mongoc.h>

#include "at_json.h"
#include "at_log.h"
#include "at_mongo.h"

#define ROLLUP_DB "adtrack"
#define ROLLUP_COLL "stats_hourly"
#define ROLLUP_PREFIX "stats_hourly-"
#define HOUR_MS INT64_C(3600000)
/* A conditional write misses only when another worker moved the same document at the same
 * moment; a few rounds settle any such race. More means something else is wrong. */
#define MONGO_MAX_ROUNDS 8
/* The MongoDB store's cache of "o" is only a shortcut (a stale entry costs one more round),
 * so it is simply emptied when it grows past this many documents. */
#define MONGO_CACHE_MAX 100000
#define ID_MAX (13 + 4 * (AT_EVENT_ID_MAX + 1) + 16)

typedef struct body_s {
    enr_rollup_counts_t n;
    at_hll_t u;
} body_t;

typedef enum gate_e { GATE_UNKNOWN = 0, GATE_KNOWN } gate_t;

typedef struct doc_s {
    struct doc_s *next; /* hash chain */
    uint64_t hash;
    char *id;           /* owned: "_id\0c\0cr\0p\0pl\0adv\0" in one allocation */
    size_t idlen;
    const char *c, *cr, *p, *pl, *adv; /* into id's allocation */
    int64_t h_ms;
    int32_t k;
    gate_t gate;        /* MongoDB: UNKNOWN until read (again); files: always KNOWN */
    bool exists;        /* the store holds the document */
    int64_t o;          /* highest offset counted; -1 = none */
    int64_t mt_ms;
    body_t *body;       /* files: the totals, NULL while dropped from memory; MongoDB: NULL */
    uint64_t line_seq;  /* files: where the document's last line is (seq 0 = none) */
    int64_t line_off;
    uint32_t line_len;
    int delta;          /* index into deltas during a commit, else -1 */
    bool in_batch;
} doc_t;

typedef struct rec_s {
    doc_t *d;
    int64_t offset;
    int64_t price, payout;
    uint8_t type;   /* AT_EV_* of a valid event, or AT_EV_NONE for a rejected one */
    uint8_t reason; /* at_reject_t of a rejected event */
    uint8_t rank;   /* HyperLogLog rank of uid, 0 = no uid */
    uint16_t reg;
} rec_t;

typedef struct delta_s {
    doc_t *d;
    body_t b;        /* what the batch adds; b.u is all zero except the registers in dirty */
    int64_t top;     /* highest offset the batch counts in d */
    uint16_t *dirty; /* registers b.u sets, each once (a batch sets few of the 2048) */
    uint8_t *undo;   /* files: the document's rank of each dirty register before the batch */
    size_t ndirty, capdirty;
    enr_rollup_counts_t undo_n; /* files: the document's counters before the batch */
    bool fresh;      /* files: the document's body was allocated by this commit */
} delta_t;

struct enr_rollup_s {
    bool is_file;
    enr_rollup_write_hook_fn write_hook; /* tests only (enr_rollup_set_write_hook); NULL: none */
    void *write_hook_ctx;
    doc_t **tab;
    size_t tcap, ndocs, nloaded;
    rec_t *recs;
    size_t nrecs, reccap;
    delta_t *deltas;
    size_t ndeltas, dcap;
    doc_t **batch;
    size_t nbatch, bcap;

    /* MongoDB */
    mongoc_client_t *client;
    mongoc_collection_t *coll;
    bson_t *opts; /* {ordered: false, writeConcern: ...} */
    bool indexes_pending;

    /* files */
    char *dir;
    int64_t rotate_bytes, keep_hours;
    int fd;
    uint64_t seq;
    int64_t size;
    char *buf;
    size_t bufcap, bufused;
    size_t *line_end; /* per delta: end of its line in buf */
    size_t lecap;
    int64_t newest_hour;

    /* "YYYY-MM-DDTHH" of the last few hours seen, so that an event's _id costs no
     * gmtime/snprintf (direct-mapped on the hour number). */
    int64_t hour_ms[8];
    char hour_txt[8][14];
};

/* ---- pure helpers ---- */

bool enr_rollup_reason_keeps_dims(at_reject_t r)
{
    return at_reject_keeps_campaign(r);
}

int64_t enr_rollup_hour_ms(int64_t ts_ms)
{
    int64_t r = ts_ms % HOUR_MS;
    return ts_ms - (r < 0 ? r + HOUR_MS : r);
}

static size_t put_str(char *o, at_str_t s)
{
    if (s.len > 0)
        memcpy(o, s.p, s.len);
    return s.len;
}

/* Writes the decimal form of @p v at @p o; returns the end. */
static char *put_int(char *o, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u > 0);
    if (v < 0)
        *o++ = '-';
    while (n > 0)
        *o++ = tmp[--n];
    return o;
}

/* "YYYY-MM-DDTHH" of the hour starting at @p hour_ms into @p out (14 bytes with the NUL);
 * false for a year outside 0-9999. */
static bool format_hour(char out[14], int64_t hour_ms)
{
    time_t secs = (time_t)(hour_ms / 1000);
    struct tm tm;
    if (gmtime_r(&secs, &tm) == NULL || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return false;
    int f[4] = {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour}; /* 4, 2, 2, 2 digits */
    int width[4] = {4, 2, 2, 2};
    char sep[4] = {'-', '-', 'T', '\0'};
    char *o = out;
    for (int i = 0; i < 4; i++) {
        for (int d = width[i] - 1; d >= 0; d--, f[i] /= 10)
            o[d] = (char)('0' + f[i] % 10);
        o += width[i];
        *o++ = sep[i];
    }
    return true;
}

/* The _id after its hour: "|c|cr|p|pl|k" at @p o; returns the end. */
static char *put_id_tail(char *o, at_str_t c, at_str_t cr, at_str_t p, at_str_t pl, int32_t k)
{
    *o++ = '|';
    o += put_str(o, c);
    *o++ = '|';
    o += put_str(o, cr);
    *o++ = '|';
    o += put_str(o, p);
    *o++ = '|';
    o += put_str(o, pl);
    *o++ = '|';
    return put_int(o, k);
}

size_t enr_rollup_format_id(char *out, size_t size, int64_t ts_ms, at_str_t c, at_str_t cr, at_str_t p, at_str_t pl,
                            int32_t k)
{
    if (size < 13 + c.len + cr.len + p.len + pl.len + 4 + 13)
        return 0;
    char hour[14];
    if (!format_hour(hour, enr_rollup_hour_ms(ts_ms)))
        return 0;
    memcpy(out, hour, 13);
    char *end = put_id_tail(out + 13, c, cr, p, pl, k);
    *end = '\0';
    return (size_t)(end - out);
}

int64_t enr_rollup_payout_bson(const bson_t *event)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, event, "payout_micros") && BSON_ITER_HOLDS_NUMBER(&it) ? bson_iter_as_int64(&it)
                                                                                             : 0;
}

int64_t enr_rollup_payout_line(const char *json, size_t len)
{
    static const char key[] = "\"payout_micros\" : ";
    const size_t klen = sizeof(key) - 1;
    /* The key at top level: the enriched event has no subdocuments, and a string value
     * holds a quote only escaped (\"payout_micros\" is not followed by '"'), so the first
     * match is the field. */
    const char *s = memmem(json, len, key, klen);
    if (s == NULL)
        return 0;
    const char *end = json + len;
    char num[24];
    size_t n = 0;
    for (const char *q = s + klen; q < end && n + 1 < sizeof(num) && (*q == '-' || (*q >= '0' && *q <= '9')); q++)
        num[n++] = *q;
    num[n] = '\0';
    return n > 0 ? strtoll(num, NULL, 10) : 0;
}

static uint64_t id_hash(const char *s, size_t len)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static void counts_add(enr_rollup_counts_t *dst, const enr_rollup_counts_t *src)
{
    dst->imp += src->imp;
    dst->view += src->view;
    dst->click += src->click;
    dst->conv += src->conv;
    dst->spend += src->spend;
    dst->payout += src->payout;
    dst->rejected += src->rejected;
    for (int i = 1; i < AT_REJ__COUNT; i++)
        dst->rej[i] += src->rej[i];
}

static void body_clear(body_t *b)
{
    memset(&b->n, 0, sizeof(b->n));
    at_hll_clear(&b->u);
}

/* ---- the document table ---- */

static doc_t *doc_find(const enr_rollup_t *r, const char *id, size_t len, uint64_t h)
{
    if (r->tcap == 0)
        return NULL;
    for (doc_t *d = r->tab[h & (r->tcap - 1)]; d != NULL; d = d->next)
        if (d->hash == h && d->idlen == len && memcmp(d->id, id, len) == 0)
            return d;
    return NULL;
}

static int tab_grow(enr_rollup_t *r)
{
    size_t ncap = r->tcap ? r->tcap * 2 : 1024;
    doc_t **nt = calloc(ncap, sizeof(*nt));
    if (nt == NULL)
        return -1;
    for (size_t i = 0; i < r->tcap; i++) {
        for (doc_t *d = r->tab[i], *next; d != NULL; d = next) {
            next = d->next;
            d->next = nt[d->hash & (ncap - 1)];
            nt[d->hash & (ncap - 1)] = d;
        }
    }
    free(r->tab);
    r->tab = nt;
    r->tcap = ncap;
    return 0;
}

/* A new document (not in the store yet as far as this process knows) for the given
 * dimensions; NULL when memory runs out. */
static doc_t *doc_new(enr_rollup_t *r, const char *id, size_t idlen, uint64_t h, int64_t h_ms, at_str_t c, at_str_t cr,
                      at_str_t p, at_str_t pl, at_str_t adv, int32_t k)
{
    if (r->ndocs + 1 > r->tcap && tab_grow(r) != 0)
        return NULL;
    doc_t *d = calloc(1, sizeof(*d));
    char *s = malloc(idlen + c.len + cr.len + p.len + pl.len + adv.len + 6);
    if (d == NULL || s == NULL) {
        free(d);
        free(s);
        return NULL;
    }
    size_t n = 0;
    at_str_t parts[6] = {{id, idlen}, c, cr, p, pl, adv};
    const char **dst[6] = {NULL, &d->c, &d->cr, &d->p, &d->pl, &d->adv};
    for (int i = 0; i < 6; i++) {
        if (dst[i] != NULL)
            *dst[i] = s + n;
        n += put_str(s + n, parts[i]);
        s[n++] = '\0';
    }
    d->id = s;
    d->idlen = idlen;
    d->hash = h;
    d->h_ms = h_ms;
    d->k = k;
    d->o = -1;
    d->delta = -1;
    d->gate = r->is_file ? GATE_KNOWN : GATE_UNKNOWN;
    d->next = r->tab[h & (r->tcap - 1)];
    r->tab[h & (r->tcap - 1)] = d;
    r->ndocs++;
    return d;
}

static void doc_free(doc_t *d)
{
    free(d->body);
    free(d->id);
    free(d);
}

static void tab_clear(enr_rollup_t *r)
{
    for (size_t i = 0; i < r->tcap; i++) {
        for (doc_t *d = r->tab[i], *next; d != NULL; d = next) {
            next = d->next;
            doc_free(d);
        }
        r->tab[i] = NULL;
    }
    r->ndocs = r->nloaded = 0;
}

/* ---- the document in BSON (the stored shape, docs/REPORTS.md) ---- */

static void doc_to_bson(bson_t *out, const doc_t *d, const body_t *b, int64_t o, int64_t mt_ms)
{
    bson_t rej;
    BSON_APPEND_UTF8(out, "_id", d->id);
    BSON_APPEND_DATE_TIME(out, "h", d->h_ms);
    BSON_APPEND_UTF8(out, "c", d->c);
    BSON_APPEND_UTF8(out, "adv", d->adv);
    BSON_APPEND_UTF8(out, "cr", d->cr);
    BSON_APPEND_UTF8(out, "p", d->p);
    BSON_APPEND_UTF8(out, "pl", d->pl);
    BSON_APPEND_INT32(out, "k", d->k);
    BSON_APPEND_INT64(out, "o", o);
    BSON_APPEND_INT64(out, "imp", b->n.imp);
    BSON_APPEND_INT64(out, "view", b->n.view);
    BSON_APPEND_INT64(out, "click", b->n.click);
    BSON_APPEND_INT64(out, "conv", b->n.conv);
    BSON_APPEND_INT64(out, "spend", b->n.spend);
    BSON_APPEND_INT64(out, "payout", b->n.payout);
    BSON_APPEND_INT64(out, "rejected", b->n.rejected);
    BSON_APPEND_DOCUMENT_BEGIN(out, "rej", &rej);
    for (int i = 1; i < AT_REJ__COUNT; i++)
        if (b->n.rej[i] > 0)
            BSON_APPEND_INT64(&rej, at_reject_str((at_reject_t)i), b->n.rej[i]);
    bson_append_document_end(out, &rej);
    at_hll_append_bson(out, "u", &b->u);
    BSON_APPEND_DATE_TIME(out, "mt", mt_ms);
}

/* The document's counters and where each lives in enr_rollup_counts_t: one table for the
 * reader (counter_field) and the MongoDB update ($inc), in the stored order. */
static const struct {
    const char *name;
    size_t off;
} counters[] = {
    {"imp", offsetof(enr_rollup_counts_t, imp)},     {"view", offsetof(enr_rollup_counts_t, view)},
    {"click", offsetof(enr_rollup_counts_t, click)}, {"conv", offsetof(enr_rollup_counts_t, conv)},
    {"spend", offsetof(enr_rollup_counts_t, spend)}, {"payout", offsetof(enr_rollup_counts_t, payout)},
    {"rejected", offsetof(enr_rollup_counts_t, rejected)},
};

static int64_t *counter_field(enr_rollup_counts_t *n, const char *key)
{
    for (size_t i = 0; i < AT_ARRAY_LEN(counters); i++)
        if (strcmp(key, counters[i].name) == 0)
            return (int64_t *)((char *)n + counters[i].off);
    return NULL;
}

static at_str_t utf8_field(const bson_t *doc, const char *key)
{
    bson_iter_t it;
    uint32_t len = 0;
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it)) {
        const char *s = bson_iter_utf8(&it, &len);
        return (at_str_t){s, len};
    }
    return (at_str_t){NULL, 0};
}

/*
 * Reads one stored document (a line of the files) into its document in @p r (created if
 * new) and its body. Returns the document, or NULL + err naming the field.
 */
static doc_t *doc_from_bson(enr_rollup_t *r, const bson_t *src, at_err_t *err)
{
    bson_iter_t it;
    at_str_t id = utf8_field(src, "_id");
    if (id.p == NULL || id.len == 0 || id.len >= ID_MAX)
        return at_err_set(err, AT_ERR_INVALID, "_id: expected a string of 1-%d bytes", ID_MAX - 1), NULL;
    if (!bson_iter_init_find(&it, src, "h") || !BSON_ITER_HOLDS_DATE_TIME(&it))
        return at_err_set(err, AT_ERR_INVALID, "h: expected a date"), NULL;
    int64_t h_ms = bson_iter_date_time(&it);
    if (!bson_iter_init_find(&it, src, "k") || !BSON_ITER_HOLDS_NUMBER(&it))
        return at_err_set(err, AT_ERR_INVALID, "k: expected a partition number"), NULL;
    int32_t k = (int32_t)bson_iter_as_int64(&it);
    uint64_t h = id_hash(id.p, id.len);
    doc_t *d = doc_find(r, id.p, id.len, h);
    if (d == NULL) {
        d = doc_new(r, id.p, id.len, h, h_ms, utf8_field(src, "c"), utf8_field(src, "cr"), utf8_field(src, "p"),
                    utf8_field(src, "pl"), utf8_field(src, "adv"), k);
        if (d == NULL)
            return at_err_set(err, AT_ERR_NOMEM, "stats_hourly: out of memory"), NULL;
    }
    if (d->body == NULL) {
        d->body = malloc(sizeof(*d->body));
        if (d->body == NULL)
            return at_err_set(err, AT_ERR_NOMEM, "stats_hourly: out of memory"), NULL;
        r->nloaded++;
    }
    body_clear(d->body);
    d->o = -1;
    if (bson_iter_init_find(&it, src, "o")) {
        if (!BSON_ITER_HOLDS_NUMBER(&it))
            return at_err_set(err, AT_ERR_INVALID, "o: expected an offset"), NULL;
        d->o = bson_iter_as_int64(&it);
    }
    if (bson_iter_init_find(&it, src, "mt") && BSON_ITER_HOLDS_DATE_TIME(&it))
        d->mt_ms = bson_iter_date_time(&it);
    if (!bson_iter_init(&it, src))
        return at_err_set(err, AT_ERR_INVALID, "stats_hourly: corrupt document"), NULL;
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        int64_t *f = counter_field(&d->body->n, key);
        if (f != NULL) {
            if (!BSON_ITER_HOLDS_NUMBER(&it))
                return at_err_set(err, AT_ERR_INVALID, "%s: expected an integer", key), NULL;
            *f = bson_iter_as_int64(&it);
        } else if (strcmp(key, "rej") == 0 || strcmp(key, "u") == 0) {
            uint32_t len;
            const uint8_t *data;
            bson_t sub;
            if (!BSON_ITER_HOLDS_DOCUMENT(&it))
                return at_err_set(err, AT_ERR_INVALID, "%s: expected a document", key), NULL;
            bson_iter_document(&it, &len, &data);
            if (!bson_init_static(&sub, data, len))
                return at_err_set(err, AT_ERR_INVALID, "%s: corrupt document", key), NULL;
            if (key[0] == 'u') {
                if (at_hll_merge_bson(&d->body->u, &sub, err) != 0)
                    return NULL;
                continue;
            }
            bson_iter_t ri;
            bson_iter_init(&ri, &sub);
            while (bson_iter_next(&ri)) {
                at_reject_t reason = at_reject_from_str(bson_iter_key(&ri));
                if (reason == AT_REJ__COUNT || !BSON_ITER_HOLDS_NUMBER(&ri))
                    return at_err_set(err, AT_ERR_INVALID, "rej.%s: expected a reason code with a count",
                                      bson_iter_key(&ri)),
                           NULL;
                d->body->n.rej[reason] = bson_iter_as_int64(&ri);
            }
        }
    }
    d->exists = true;
    d->gate = GATE_KNOWN;
    return d;
}

/* ---- a batch ---- */

void enr_rollup_begin(enr_rollup_t *r)
{
    for (size_t i = 0; i < r->nbatch; i++) {
        r->batch[i]->in_batch = false;
        r->batch[i]->delta = -1;
    }
    r->nbatch = 0;
    r->nrecs = 0;
    if (!r->is_file && r->ndocs > MONGO_CACHE_MAX)
        tab_clear(r);
}

int enr_rollup_add(enr_rollup_t *r, const enr_rollup_event_t *ev, at_err_t *err)
{
    if (!ev->has_ts)
        return 0;
    bool own = ev->reason == AT_REJ_NONE || enr_rollup_reason_keeps_dims(ev->reason);
    at_str_t none = {NULL, 0};
    at_str_t c = own ? ev->c : none, cr = own ? ev->cr : none, p = own ? ev->p : none, pl = own ? ev->pl : none;
    char id[ID_MAX];
    int64_t hour = enr_rollup_hour_ms(ev->ts_ms);
    size_t slot = (size_t)(hour / HOUR_MS) & 7;
    if (c.len + cr.len + p.len + pl.len > 4 * AT_EVENT_ID_MAX)
        return 0; /* longer than the envelope allows: cannot be a checked event */
    if (r->hour_ms[slot] != hour || r->hour_txt[slot][0] == '\0') {
        if (!format_hour(r->hour_txt[slot], hour))
            return 0; /* a year past 9999: no hour to write */
        r->hour_ms[slot] = hour;
    }
    memcpy(id, r->hour_txt[slot], 13);
    size_t idlen = (size_t)(put_id_tail(id + 13, c, cr, p, pl, ev->k) - id);
    uint64_t h = id_hash(id, idlen);
    doc_t *d = doc_find(r, id, idlen, h);
    if (d == NULL) {
        d = doc_new(r, id, idlen, h, hour, c, cr, p, pl, own ? ev->adv : none, ev->k);
        if (d == NULL)
            return at_err_set(err, AT_ERR_NOMEM, "stats_hourly: out of memory");
    }
    if (!d->in_batch) {
        if (r->nbatch == r->bcap) {
            size_t nc = r->bcap ? r->bcap * 2 : 256;
            doc_t **nb = realloc(r->batch, nc * sizeof(*nb));
            if (nb == NULL)
                return at_err_set(err, AT_ERR_NOMEM, "stats_hourly: out of memory");
            r->batch = nb;
            r->bcap = nc;
        }
        r->batch[r->nbatch++] = d;
        d->in_batch = true;
    }
    if (r->nrecs == r->reccap) {
        size_t nc = r->reccap ? r->reccap * 2 : 1024;
        rec_t *nr = realloc(r->recs, nc * sizeof(*nr));
        if (nr == NULL)
            return at_err_set(err, AT_ERR_NOMEM, "stats_hourly: out of memory");
        r->recs = nr;
        r->reccap = nc;
    }
    rec_t *rc = &r->recs[r->nrecs++];
    memset(rc, 0, sizeof(*rc));
    rc->d = d;
    rc->offset = ev->offset;
    if (ev->reason == AT_REJ_NONE) {
        rc->type = (uint8_t)ev->type;
        rc->price = ev->price_micros;
        rc->payout = ev->payout_micros;
    } else {
        rc->reason = (uint8_t)ev->reason;
    }
    /* Unique users are those of stored, valid events: a bot's or an unknown campaign's
     * traffic is not an audience (docs/REPORTS.md). */
    if (ev->reason == AT_REJ_NONE && ev->uid.len > 0) {
        uint32_t reg;
        at_hll_hash(ev->uid.p, ev->uid.len, &reg, &rc->rank);
        rc->reg = (uint16_t)reg;
    }
    return 0;
}

/* Applies the gate to every record of the batch: what each document's "o" has not counted
 * yet goes into its delta. Every document of the batch must have a KNOWN gate. Returns the
 * number of records skipped by the gate, or -1 when memory runs out. */
static long compute_deltas(enr_rollup_t *r)
{
    long skips = 0;
    for (size_t i = 0; i < r->nbatch; i++)
        r->batch[i]->delta = -1;
    r->ndeltas = 0;
    for (size_t i = 0; i < r->nrecs; i++) {
        const rec_t *rc = &r->recs[i];
        doc_t *d = rc->d;
        if (rc->offset <= d->o) {
            skips++;
            continue;
        }
        if (d->delta < 0) {
            if (r->ndeltas == r->dcap) {
                size_t nc = r->dcap ? r->dcap * 2 : 64;
                delta_t *nd = realloc(r->deltas, nc * sizeof(*nd));
                if (nd == NULL)
                    return -1;
                memset(nd + r->dcap, 0, (nc - r->dcap) * sizeof(*nd)); /* clean sketches */
                r->deltas = nd;
                r->dcap = nc;
            }
            delta_t *dl = &r->deltas[r->ndeltas];
            dl->d = d;
            dl->top = -1;
            dl->fresh = false;
            memset(&dl->b.n, 0, sizeof(dl->b.n));
            for (size_t j = 0; j < dl->ndirty; j++) /* the slot's last use: clear only what it set */
                dl->b.u.reg[dl->dirty[j]] = 0;
            dl->ndirty = 0;
            d->delta = (int)r->ndeltas++;
        }
        delta_t *dl = &r->deltas[d->delta];
        enr_rollup_counts_t *n = &dl->b.n;
        if (rc->type != AT_EV_NONE) {
            switch ((at_event_type_t)rc->type) {
            case AT_EV_IMP: n->imp++; break;
            case AT_EV_VIEW: n->view++; break;
            case AT_EV_CLICK: n->click++; break;
            case AT_EV_CONV: n->conv++; break;
            default: break;
            }
            n->spend += rc->price;
            n->payout += rc->payout;
        } else {
            n->rejected++;
            n->rej[rc->reason]++;
        }
        if (rc->rank > dl->b.u.reg[rc->reg]) {
            if (dl->b.u.reg[rc->reg] == 0) {
                if (dl->ndirty == dl->capdirty) {
                    size_t nc = dl->capdirty ? dl->capdirty * 2 : 16;
                    uint16_t *ndy = realloc(dl->dirty, nc * sizeof(*ndy));
                    uint8_t *nu = realloc(dl->undo, nc);
                    if (ndy != NULL)
                        dl->dirty = ndy;
                    if (nu != NULL)
                        dl->undo = nu;
                    if (ndy == NULL || nu == NULL)
                        return -1;
                    dl->capdirty = nc;
                }
                dl->dirty[dl->ndirty++] = rc->reg;
            }
            dl->b.u.reg[rc->reg] = rc->rank;
        }
        if (rc->offset > dl->top)
            dl->top = rc->offset;
    }
    return skips;
}

/* ---- MongoDB store ---- */

static void mongo_ensure_indexes(enr_rollup_t *r)
{
    if (!r->indexes_pending)
        return;
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(ROLLUP_COLL), "indexes", "[", "{", "key", "{", "mt",
                           BCON_INT32(1), "}", "name", BCON_UTF8("mt_1"), "}", "{", "key", "{", "h", BCON_INT32(1),
                           "c", BCON_INT32(1), "}", "name", BCON_UTF8("h_1_c_1"), "}", "]");
    bson_t reply;
    bson_error_t e;
    bool ok = mongoc_collection_write_command_with_opts(r->coll, cmd, NULL, &reply, &e);
    if (ok) {
        r->indexes_pending = false;
    } else {
        at_err_t err;
        at_err_clear(&err);
        at_mongo_fail("createIndexes " ROLLUP_DB "." ROLLUP_COLL, &e, &reply, &err);
        if (!at_err_retriable(err.code)) {
            /* e.g. an index of that name with other keys: reads still work, only slower */
            at_log(AT_LOG_WARN, "enricher", "stats_hourly indexes not created; not retrying", "error", err.msg, NULL);
            r->indexes_pending = false;
        }
    }
    bson_destroy(&reply);
    bson_destroy(cmd);
}

/* One find {_id: {$in: [...]}} (projection _id, o) for the batch's documents whose gate is
 * not known; a document the store does not have gets o = -1 and will be inserted. */
static int mongo_read_gates(enr_rollup_t *r, at_err_t *err)
{
    bson_t filter = BSON_INITIALIZER, in, arr;
    size_t nunknown = 0;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "_id", &in);
    BSON_APPEND_ARRAY_BEGIN(&in, "$in", &arr);
    for (size_t i = 0; i < r->nbatch; i++) {
        doc_t *d = r->batch[i];
        if (d->gate != GATE_UNKNOWN)
            continue;
        char key[16];
        const char *k;
        bson_uint32_to_string((uint32_t)nunknown++, &k, key, sizeof(key));
        bson_append_utf8(&arr, k, -1, d->id, (int)d->idlen);
    }
    bson_append_array_end(&in, &arr);
    bson_append_document_end(&filter, &in);
    if (nunknown == 0) {
        bson_destroy(&filter);
        return 0;
    }
    bson_t *opts = BCON_NEW("projection", "{", "_id", BCON_INT32(1), "o", BCON_INT32(1), "}");
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(r->coll, &filter, opts, NULL);
    const bson_t *doc;
    bson_iter_t it;
    for (size_t i = 0; i < r->nbatch; i++) {
        doc_t *d = r->batch[i];
        if (d->gate == GATE_UNKNOWN) {
            d->exists = false;
            d->o = -1;
        }
    }
    while (mongoc_cursor_next(cur, &doc)) {
        at_str_t id = utf8_field(doc, "_id");
        doc_t *d = id.p != NULL ? doc_find(r, id.p, id.len, id_hash(id.p, id.len)) : NULL;
        if (d == NULL || d->gate != GATE_UNKNOWN)
            continue;
        d->exists = true;
        /* A document without o (not one of ours) counts as having counted nothing. */
        d->o = bson_iter_init_find(&it, doc, "o") && BSON_ITER_HOLDS_NUMBER(&it) ? bson_iter_as_int64(&it) : -1;
    }
    bson_error_t e;
    const bson_t *reply = NULL;
    int rc = 0;
    if (mongoc_cursor_error_document(cur, &e, &reply))
        rc = at_mongo_fail("find " ROLLUP_DB "." ROLLUP_COLL, &e, reply, err);
    else
        for (size_t i = 0; i < r->nbatch; i++)
            r->batch[i]->gate = GATE_KNOWN;
    mongoc_cursor_destroy(cur);
    bson_destroy(opts);
    bson_destroy(&filter);
    return rc;
}

static void mongo_append_update(mongoc_bulk_operation_t *bulk, const delta_t *dl, int64_t now_ms)
{
    const doc_t *d = dl->d;
    const enr_rollup_counts_t *n = &dl->b.n;
    bson_t sel = BSON_INITIALIZER, upd = BSON_INITIALIZER, inc, max, set;
    BSON_APPEND_UTF8(&sel, "_id", d->id);
    BSON_APPEND_INT64(&sel, "o", d->o);
    BSON_APPEND_DOCUMENT_BEGIN(&upd, "$inc", &inc);
    for (size_t i = 0; i < AT_ARRAY_LEN(counters); i++) {
        int64_t v = *(const int64_t *)((const char *)n + counters[i].off);
        if (v != 0)
            BSON_APPEND_INT64(&inc, counters[i].name, v);
    }
    for (int i = 1; i < AT_REJ__COUNT; i++) {
        if (n->rej[i] == 0)
            continue;
        char key[64];
        snprintf(key, sizeof(key), "rej.%s", at_reject_str((at_reject_t)i));
        BSON_APPEND_INT64(&inc, key, n->rej[i]);
    }
    bson_append_document_end(&upd, &inc);
    if (dl->ndirty > 0) {
        BSON_APPEND_DOCUMENT_BEGIN(&upd, "$max", &max);
        for (size_t i = 0; i < dl->ndirty; i++) {
            char key[16];
            snprintf(key, sizeof(key), "u.%u", (unsigned)dl->dirty[i]);
            BSON_APPEND_INT32(&max, key, dl->b.u.reg[dl->dirty[i]]);
        }
        bson_append_document_end(&upd, &max);
    }
    BSON_APPEND_DOCUMENT_BEGIN(&upd, "$set", &set);
    BSON_APPEND_INT64(&set, "o", dl->top);
    BSON_APPEND_DATE_TIME(&set, "mt", now_ms);
    bson_append_document_end(&upd, &set);
    mongoc_bulk_operation_update_one(bulk, &sel, &upd, false);
    bson_destroy(&sel);
    bson_destroy(&upd);
}

static int64_t reply_int(const bson_t *reply, const char *key)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, reply, key) && BSON_ITER_HOLDS_NUMBER(&it) ? bson_iter_as_int64(&it) : 0;
}

static void mongo_forget_deltas(enr_rollup_t *r)
{
    for (size_t i = 0; i < r->ndeltas; i++)
        r->deltas[i].d->gate = GATE_UNKNOWN;
}

static int mongo_commit(enr_rollup_t *r, int64_t now_ms, enr_rollup_result_t *res, at_err_t *err)
{
    mongo_ensure_indexes(r);
    for (int round = 0; round < MONGO_MAX_ROUNDS; round++) {
        res->rounds++;
        if (mongo_read_gates(r, err) != 0)
            return -1;
        long skips = compute_deltas(r);
        if (skips < 0)
            return at_err_set(err, AT_ERR_NOMEM, "stats_hourly: out of memory");
        if (round == 0)
            res->gate_skips = (size_t)skips;
        if (r->ndeltas == 0)
            return 0;
        mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(r->coll, r->opts);
        int64_t nupd = 0, nins = 0;
        for (size_t i = 0; i < r->ndeltas; i++) {
            const delta_t *dl = &r->deltas[i];
            if (dl->d->exists) {
                mongo_append_update(bulk, dl, now_ms);
                nupd++;
            } else {
                /* A plain insert, not an upsert: if another worker created the document
                 * meanwhile, this fails with a duplicate key and the next round reads it. */
                bson_t doc = BSON_INITIALIZER;
                doc_to_bson(&doc, dl->d, &dl->b, dl->top, now_ms);
                mongoc_bulk_operation_insert(bulk, &doc);
                bson_destroy(&doc);
                nins++;
            }
        }
        bson_t reply;
        bson_error_t e;
        bool ok = mongoc_bulk_operation_execute(bulk, &reply, &e) != 0;
        mongoc_bulk_operation_destroy(bulk);
        if (r->write_hook != NULL)
            r->write_hook(r->write_hook_ctx);
        at_mongo_reply_t ri;
        at_mongo_reply_parse(&reply, &ri);
        int64_t matched = reply_int(&reply, "nMatched"), inserted = reply_int(&reply, "nInserted");
        if (!ok && (ri.nother > 0 || ri.wce || ri.duplicates == 0)) {
            /* Unknown what reached the store: read every gate again next time. */
            int rc = at_mongo_fail("bulk write " ROLLUP_DB "." ROLLUP_COLL, &e, &reply, err);
            bson_destroy(&reply);
            mongo_forget_deltas(r);
            return rc;
        }
        bson_destroy(&reply);
        res->documents += (size_t)(matched + inserted);
        /* Some conditional write missed (another worker moved "o", or created the document
         * first), or seemed to land: read those gates again and count only what is still
         * above them. Which of our writes landed does not matter: the ones that did moved
         * "o" past their events, so the next round skips them. */
        mongo_forget_deltas(r);
        if (matched == nupd && inserted == nins) {
            /* Every write reports a match, yet on FerretDB that does not mean it stayed:
             * its conditional update is a query and then a whole-document replace by _id,
             * not one atomic step (FerretDB 1.24 internal/handler/msg_update.go), so a
             * concurrent writer of the same document (a killed enricher's bulk that the
             * server still runs, a rebalance) that matched the same "o" replaces our
             * document with its own, and both report nMatched 1. Caching o = top then would
             * gate the next batch's update on a value the store no longer has, and the
             * re-read after that miss would skip the events that were lost with our write.
             * So the gates are read back: a document whose "o" is not the top we wrote
             * goes through another round while this batch's records are still here. */
            if (mongo_read_gates(r, err) != 0)
                return -1;
            size_t lost = 0;
            for (size_t i = 0; i < r->ndeltas; i++)
                if (r->deltas[i].d->o != r->deltas[i].top)
                    lost++;
            if (lost == 0)
                return 0;
            res->lost_writes += lost;
            char nbuf[24];
            snprintf(nbuf, sizeof(nbuf), "%zu", lost);
            at_log(AT_LOG_WARN, "enricher", "stats_hourly: writes reported as matched did not stay; counting again",
                   "documents", nbuf, NULL);
        }
    }
    return at_err_set(err, AT_ERR_UNAVAILABLE,
                      "stats_hourly: conditional writes still missing after %d rounds (another writer?)",
                      MONGO_MAX_ROUNDS);
}

enr_rollup_t *enr_rollup_mongo_new(const char *uri, const char *w, int64_t wtimeout_ms, at_err_t *err)
{
    enr_rollup_t *r = calloc(1, sizeof(*r));
    if (r == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "stats_hourly: out of memory");
        return NULL;
    }
    r->fd = -1;
    at_mongo_init();
    r->opts = bson_new();
    BSON_APPEND_BOOL(r->opts, "ordered", false);
    r->client = at_mongo_client_new(uri, "adtrack-enricher-rollup", w, wtimeout_ms, r->opts, err);
    if (r->client == NULL) {
        enr_rollup_destroy(r);
        return NULL;
    }
    r->coll = mongoc_client_get_collection(r->client, ROLLUP_DB, ROLLUP_COLL);
    r->indexes_pending = true;
    return r;
}

void enr_rollup_set_write_hook(enr_rollup_t *r, enr_rollup_write_hook_fn fn, void *ctx)
{
    r->write_hook = fn;
    r->write_hook_ctx = ctx;
}

/* ---- file store ---- */

static void file_path(const enr_rollup_t *r, uint64_t seq, char *out, size_t size)
{
    snprintf(out, size, "%s/" ROLLUP_PREFIX "%llu.jsonl", r->dir, (unsigned long long)seq);
}

static int read_whole(const char *path, char **data, size_t *size, at_err_t *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return at_err_set(err, AT_ERR_IO, "stats_hourly: open %s: %s", path, strerror(e));
    }
    *size = (size_t)st.st_size;
    *data = malloc(*size + 1);
    size_t got = 0;
    while (*data != NULL && got < *size) {
        ssize_t n = pread(fd, *data + got, *size - got, (off_t)got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fd);
    if (*data == NULL || got < *size) {
        free(*data);
        *data = NULL;
        return at_err_set(err, AT_ERR_IO, "stats_hourly: read %s failed", path);
    }
    return 0;
}

static doc_t *line_to_doc(enr_rollup_t *r, const char *line, size_t len, at_err_t *err)
{
    bson_t b;
    bson_error_t be;
    if (!bson_init_from_json(&b, line, (ssize_t)len, &be)) {
        at_err_set(err, AT_ERR_INVALID, "not JSON: %s", be.message);
        return NULL;
    }
    doc_t *d = doc_from_bson(r, &b, err);
    bson_destroy(&b);
    return d;
}

/* Reads every line of file @p seq (the newest one with @p repair: a torn last line is cut). */
static int file_load(enr_rollup_t *r, uint64_t seq, bool repair, at_err_t *err)
{
    char path[4200];
    file_path(r, seq, path, sizeof(path));
    char *data = NULL;
    size_t size = 0;
    if (read_whole(path, &data, &size, err) != 0)
        return -1;
    size_t start = 0, lineno = 0;
    for (size_t i = 0; i < size; i++) {
        if (data[i] != '\n')
            continue;
        lineno++;
        at_err_t le;
        at_err_clear(&le);
        doc_t *d = line_to_doc(r, data + start, i - start, &le);
        if (d == NULL) {
            free(data);
            return at_err_set(err, le.code, "stats_hourly: %s line %zu: %s", path, lineno, le.msg);
        }
        d->line_seq = seq;
        d->line_off = (int64_t)start;
        d->line_len = (uint32_t)(i - start);
        if (d->h_ms > r->newest_hour)
            r->newest_hour = d->h_ms;
        start = i + 1;
    }
    free(data);
    if (start < size) {
        if (!repair)
            return at_err_set(err, AT_ERR_INVALID, "stats_hourly: %s: last line has no newline (torn?)", path);
        /* Torn by a crash mid-write: its fdatasync never returned, so the batch was not
         * acknowledged and comes back. */
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0 || ftruncate(fd, (off_t)start) != 0 || fsync(fd) != 0) {
            int e = errno;
            if (fd >= 0)
                close(fd);
            return at_err_set(err, AT_ERR_IO, "stats_hourly: truncate %s: %s", path, strerror(e));
        }
        close(fd);
    }
    r->size = (int64_t)start;
    return 0;
}

/* Reads a dropped document back from its last line. */
static int file_reload(enr_rollup_t *r, doc_t *d, at_err_t *err)
{
    char path[4200];
    file_path(r, d->line_seq, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    char *line = malloc(d->line_len + 1);
    ssize_t got = fd >= 0 && line != NULL ? pread(fd, line, d->line_len, (off_t)d->line_off) : -1;
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (got != (ssize_t)d->line_len) {
        free(line);
        return at_err_set(err, AT_ERR_IO, "stats_hourly: reading back %s from %s: %s", d->id, path,
                          got < 0 ? strerror(e) : "short read");
    }
    at_err_t le;
    at_err_clear(&le);
    doc_t *back = line_to_doc(r, line, d->line_len, &le);
    free(line);
    if (back != d)
        return at_err_set(err, AT_ERR_IO, "stats_hourly: reading back %s from %s: %s", d->id, path,
                          back == NULL ? le.msg : "another _id there");
    return 0;
}

/* Drops the bodies of documents whose hour is more than keep_hours older than the newest
 * hour seen; their "o" and the place of their last line stay. */
static void file_evict(enr_rollup_t *r)
{
    if (r->newest_hour == INT64_MIN)
        return; /* no document yet */
    int64_t cutoff = r->newest_hour - r->keep_hours * HOUR_MS;
    for (size_t i = 0; i < r->tcap; i++)
        for (doc_t *d = r->tab[i]; d != NULL; d = d->next)
            if (d->body != NULL && d->h_ms < cutoff && d->line_seq > 0 && !d->in_batch) {
                free(d->body);
                d->body = NULL;
                r->nloaded--;
            }
}

static int file_open_current(enr_rollup_t *r, at_err_t *err)
{
    char path[4200];
    file_path(r, r->seq, path, sizeof(path));
    bool existed = access(path, F_OK) == 0;
    r->fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (r->fd < 0)
        return at_err_set(err, AT_ERR_IO, "stats_hourly: open %s: %s", path, strerror(errno));
    if (!existed) {
        int dfd = open(r->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
    }
    return 0;
}

static int buf_reserve(enr_rollup_t *r, size_t more)
{
    if (r->bufused + more <= r->bufcap)
        return 0;
    size_t nc = r->bufcap ? r->bufcap : 65536;
    while (nc < r->bufused + more)
        nc *= 2;
    char *nb = realloc(r->buf, nc);
    if (nb == NULL)
        return -1;
    r->buf = nb;
    r->bufcap = nc;
    return 0;
}

/* Appends ", "<key>" : <v>" (or without the comma for the first of a document). */
static char *put_kv_int(char *o, const char *key, size_t klen, int64_t v)
{
    memcpy(o, key, klen);
    return put_int(o + klen, v);
}

static char *put_kv_str(char *o, const char *key, size_t klen, const char *v)
{
    memcpy(o, key, klen);
    return at_json_put_str(o + klen, v, strlen(v));
}

/*
 * Appends document @p d with counters and sketch @p b as its line: the bytes
 * bson_as_relaxed_extended_json() writes for doc_to_bson()'s document, without building
 * it (a batch writes one line per document it changed, and libbson's path cost the worker
 * several times more). Returns 0, or 1 when the document needs libbson's path (text that
 * is not UTF-8, a date outside 1970-9999), or -1 when memory runs out.
 */
static int render_line(enr_rollup_t *r, const doc_t *d, const body_t *b, int64_t o, int64_t mt_ms)
{
    const char *strs[] = {d->id, d->c, d->adv, d->cr, d->p, d->pl};
    size_t slen = 0;
    for (size_t i = 0; i < AT_ARRAY_LEN(strs); i++) {
        size_t n = strlen(strs[i]);
        if (!at_json_utf8_ok(strs[i], n))
            return 1;
        slen += 2 + 6 * n;
    }
    if (d->h_ms < 0 || d->h_ms > AT_JSON_DATE_MAX || mt_ms < 0 || mt_ms > AT_JSON_DATE_MAX)
        return 1;
    /* strings, 2 dates, 11 numbers, every reason and every register at their longest */
    if (buf_reserve(r, slen + 2 * 40 + 11 * 32 + AT_REJ__COUNT * 64 + AT_HLL_REGISTERS * 16 + 256) != 0)
        return -1;
    char *w = r->buf + r->bufused;
    w = put_kv_str(w, "{ \"_id\" : ", 10, d->id);
    memcpy(w, ", \"h\" : ", 8);
    w = at_json_put_date(w + 8, d->h_ms);
    w = put_kv_str(w, ", \"c\" : ", 8, d->c);
    w = put_kv_str(w, ", \"adv\" : ", 10, d->adv);
    w = put_kv_str(w, ", \"cr\" : ", 9, d->cr);
    w = put_kv_str(w, ", \"p\" : ", 8, d->p);
    w = put_kv_str(w, ", \"pl\" : ", 9, d->pl);
    w = put_kv_int(w, ", \"k\" : ", 8, d->k);
    w = put_kv_int(w, ", \"o\" : ", 8, o);
    w = put_kv_int(w, ", \"imp\" : ", 10, b->n.imp);
    w = put_kv_int(w, ", \"view\" : ", 11, b->n.view);
    w = put_kv_int(w, ", \"click\" : ", 12, b->n.click);
    w = put_kv_int(w, ", \"conv\" : ", 11, b->n.conv);
    w = put_kv_int(w, ", \"spend\" : ", 12, b->n.spend);
    w = put_kv_int(w, ", \"payout\" : ", 13, b->n.payout);
    w = put_kv_int(w, ", \"rejected\" : ", 15, b->n.rejected);
    memcpy(w, ", \"rej\" : {", 11);
    w += 11;
    bool first = true;
    for (int i = 1; i < AT_REJ__COUNT; i++) {
        if (b->n.rej[i] <= 0)
            continue;
        const char *name = at_reject_str((at_reject_t)i);
        *w++ = first ? ' ' : ',';
        if (!first)
            *w++ = ' ';
        w = at_json_put_str(w, name, strlen(name));
        memcpy(w, " : ", 3);
        w = put_int(w + 3, b->n.rej[i]);
        first = false;
    }
    memcpy(w, first ? "  }" : " }", first ? 3 : 2);
    w += first ? 3 : 2;
    memcpy(w, ", \"u\" : {", 9);
    w += 9;
    first = true;
    for (uint32_t i = 0; i < AT_HLL_REGISTERS; i += 8) {
        uint64_t word;
        memcpy(&word, b->u.reg + i, 8); /* most registers of most documents are 0 */
        if (word == 0)
            continue;
        for (uint32_t j = i; j < i + 8; j++) {
            if (b->u.reg[j] == 0)
                continue;
            *w++ = first ? ' ' : ',';
            if (!first)
                *w++ = ' ';
            *w++ = '"';
            w = put_int(w, j);
            memcpy(w, "\" : ", 4);
            w = put_int(w + 4, b->u.reg[j]);
            first = false;
        }
    }
    memcpy(w, first ? "  }" : " }", first ? 3 : 2);
    w += first ? 3 : 2;
    memcpy(w, ", \"mt\" : ", 9);
    w = at_json_put_date(w + 9, mt_ms);
    memcpy(w, " }", 2);
    w += 2;
    r->bufused = (size_t)(w - r->buf);
    return 0;
}

/* Puts the documents of the batch's deltas back as they were before apply_deltas(). */
static void undo_deltas(enr_rollup_t *r, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        delta_t *dl = &r->deltas[i];
        doc_t *d = dl->d;
        if (dl->fresh) {
            free(d->body);
            d->body = NULL;
            r->nloaded--;
            continue;
        }
        d->body->n = dl->undo_n;
        for (size_t j = 0; j < dl->ndirty; j++)
            d->body->u.reg[dl->dirty[j]] = dl->undo[j];
    }
}

static int file_commit(enr_rollup_t *r, int64_t now_ms, enr_rollup_result_t *res, at_err_t *err)
{
    res->rounds = 1;
    long skips = compute_deltas(r);
    if (skips < 0)
        return at_err_set(err, AT_ERR_NOMEM, "stats_hourly: out of memory");
    res->gate_skips = (size_t)skips;
    if (r->ndeltas == 0)
        return 0;
    if (r->lecap < r->ndeltas) {
        size_t *nl = realloc(r->line_end, r->ndeltas * sizeof(*nl));
        if (nl == NULL)
            return at_err_set(err, AT_ERR_NOMEM, "stats_hourly: out of memory");
        r->line_end = nl;
        r->lecap = r->ndeltas;
    }
    /* Each document gets its new version in place (old totals + the batch's delta), with
     * what it was kept in the delta, so a failed write can put it back: then nothing of
     * the batch counts, as if it had not been tried. */
    r->bufused = 0;
    size_t applied = 0;
    int rc = 0;
    for (size_t i = 0; i < r->ndeltas && rc == 0; i++) {
        delta_t *dl = &r->deltas[i];
        doc_t *d = dl->d;
        if (d->exists && d->body == NULL && file_reload(r, d, err) != 0) {
            rc = -1;
            break;
        }
        if (d->body == NULL) {
            d->body = calloc(1, sizeof(*d->body));
            if (d->body == NULL) {
                rc = at_err_set(err, AT_ERR_NOMEM, "stats_hourly: out of memory");
                break;
            }
            r->nloaded++;
            dl->fresh = true;
        }
        body_t *bd = d->body;
        dl->undo_n = bd->n;
        for (size_t j = 0; j < dl->ndirty; j++) {
            uint16_t g = dl->dirty[j];
            dl->undo[j] = bd->u.reg[g];
            if (dl->b.u.reg[g] > bd->u.reg[g])
                bd->u.reg[g] = dl->b.u.reg[g];
        }
        counts_add(&bd->n, &dl->b.n);
        applied = i + 1;
        int lr = render_line(r, d, bd, dl->top, now_ms);
        if (lr > 0) {
            bson_t doc = BSON_INITIALIZER;
            doc_to_bson(&doc, d, bd, dl->top, now_ms);
            lr = at_json_append_relaxed(&doc, &r->buf, &r->bufcap, &r->bufused);
            bson_destroy(&doc);
        }
        if (lr != 0 || buf_reserve(r, 1) != 0) {
            rc = at_err_set(err, AT_ERR_NOMEM, "stats_hourly: cannot write %s as JSON", d->id);
            break;
        }
        r->buf[r->bufused++] = '\n';
        r->line_end[i] = r->bufused;
    }
    if (rc == 0 && r->size >= r->rotate_bytes) {
        close(r->fd);
        r->fd = -1;
        r->seq++;
        r->size = 0;
        if (file_open_current(r, err) != 0) {
            r->seq--; /* keep appending to the old one next time */
            rc = -1;
        }
    }
    if (rc == 0) {
        size_t done = 0;
        while (done < r->bufused) {
            ssize_t n = write(r->fd, r->buf + done, r->bufused - done);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            done += (size_t)n;
        }
        if (done < r->bufused || fdatasync(r->fd) != 0) {
            int e = errno;
            /* Cut whatever part reached the file, so the next attempt does not append
             * after a torn line. */
            if (ftruncate(r->fd, (off_t)r->size) != 0)
                at_log(AT_LOG_WARN, "enricher", "stats_hourly: could not cut a failed write", "error",
                       strerror(errno), NULL);
            rc = at_err_set(err, AT_ERR_IO, "stats_hourly: write: %s", strerror(e));
        }
    }
    if (rc != 0) {
        undo_deltas(r, applied);
        return -1;
    }
    size_t start = 0;
    int64_t newest = r->newest_hour;
    for (size_t i = 0; i < r->ndeltas; i++) {
        delta_t *dl = &r->deltas[i];
        doc_t *d = dl->d;
        d->exists = true;
        d->o = dl->top;
        d->mt_ms = now_ms;
        d->line_seq = r->seq;
        d->line_off = r->size + (int64_t)start;
        d->line_len = (uint32_t)(r->line_end[i] - 1 - start);
        start = r->line_end[i];
        if (d->h_ms > newest)
            newest = d->h_ms;
    }
    r->size += (int64_t)r->bufused;
    res->documents = r->ndeltas;
    if (newest > r->newest_hour) {
        r->newest_hour = newest;
        file_evict(r);
    }
    return 0;
}

static int seq_cmp(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

enr_rollup_t *enr_rollup_file_new(const char *dir, int64_t rotate_bytes, int64_t keep_hours, at_err_t *err)
{
    enr_rollup_t *r = calloc(1, sizeof(*r));
    if (r == NULL || (r->dir = strdup(dir)) == NULL) {
        free(r);
        at_err_set(err, AT_ERR_NOMEM, "stats_hourly: out of memory");
        return NULL;
    }
    r->is_file = true;
    r->fd = -1;
    r->rotate_bytes = rotate_bytes;
    r->keep_hours = keep_hours;
    r->newest_hour = INT64_MIN;
    DIR *dd = opendir(dir);
    if (dd == NULL) {
        at_err_set(err, AT_ERR_IO, "stats_hourly: %s: %s", dir, strerror(errno));
        enr_rollup_destroy(r);
        return NULL;
    }
    uint64_t *seqs = NULL;
    size_t nseqs = 0, seqcap = 0;
    struct dirent *de;
    while ((de = readdir(dd)) != NULL) {
        /* stats_hourly-corrections.jsonl is the reconciliation command's: not a number. */
        if (strncmp(de->d_name, ROLLUP_PREFIX, sizeof(ROLLUP_PREFIX) - 1) != 0)
            continue;
        const char *num = de->d_name + sizeof(ROLLUP_PREFIX) - 1;
        char *end = NULL;
        if (*num < '1' || *num > '9')
            continue;
        unsigned long long seq = strtoull(num, &end, 10);
        if (end == NULL || strcmp(end, ".jsonl") != 0)
            continue;
        if (nseqs == seqcap) {
            seqcap = seqcap ? seqcap * 2 : 16;
            uint64_t *ns = realloc(seqs, seqcap * sizeof(*ns));
            if (ns == NULL) {
                closedir(dd);
                free(seqs);
                at_err_set(err, AT_ERR_NOMEM, "stats_hourly: out of memory");
                enr_rollup_destroy(r);
                return NULL;
            }
            seqs = ns;
        }
        seqs[nseqs++] = seq;
    }
    closedir(dd);
    if (nseqs > 1) /* seqs is NULL when there are none (UBSan) */
        qsort(seqs, nseqs, sizeof(*seqs), seq_cmp);
    for (size_t i = 0; i < nseqs; i++) {
        if (file_load(r, seqs[i], i + 1 == nseqs, err) != 0) {
            free(seqs);
            enr_rollup_destroy(r);
            return NULL;
        }
    }
    r->seq = nseqs > 0 ? seqs[nseqs - 1] : 1;
    if (nseqs == 0)
        r->size = 0;
    free(seqs);
    file_evict(r);
    if (file_open_current(r, err) != 0) {
        enr_rollup_destroy(r);
        return NULL;
    }
    return r;
}

bool enr_rollup_file_peek(enr_rollup_t *r, const char *id, enr_rollup_counts_t *counts, at_hll_t *u, int64_t *o)
{
    size_t len = strlen(id);
    doc_t *d = r->is_file ? doc_find(r, id, len, id_hash(id, len)) : NULL;
    if (d == NULL || !d->exists)
        return false;
    if (d->body == NULL) {
        at_err_t err;
        if (file_reload(r, d, &err) != 0)
            return false;
    }
    if (counts != NULL)
        *counts = d->body->n;
    if (u != NULL)
        *u = d->body->u;
    if (o != NULL)
        *o = d->o;
    return true;
}

void enr_rollup_file_sizes(const enr_rollup_t *r, size_t *known, size_t *loaded)
{
    *known = r->ndocs;
    *loaded = r->nloaded;
}

/* ---- common ---- */

int enr_rollup_commit(enr_rollup_t *r, int64_t now_ms, enr_rollup_result_t *res, at_err_t *err)
{
    memset(res, 0, sizeof(*res));
    if (r->nrecs == 0)
        return 0;
    return r->is_file ? file_commit(r, now_ms, res, err) : mongo_commit(r, now_ms, res, err);
}

void enr_rollup_forget(enr_rollup_t *r)
{
    if (r == NULL || r->is_file)
        return;
    for (size_t i = 0; i < r->tcap; i++)
        for (doc_t *d = r->tab[i]; d != NULL; d = d->next)
            d->gate = GATE_UNKNOWN;
}

void enr_rollup_destroy(enr_rollup_t *r)
{
    if (r == NULL)
        return;
    tab_clear(r);
    free(r->tab);
    free(r->recs);
    for (size_t i = 0; i < r->dcap; i++) {
        free(r->deltas[i].dirty);
        free(r->deltas[i].undo);
    }
    free(r->deltas);
    free(r->batch);
    free(r->buf);
    free(r->line_end);
    free(r->dir);
    if (r->fd >= 0)
        close(r->fd);
    if (r->coll != NULL)
        mongoc_collection_destroy(r->coll);
    if (r->client != NULL)
        mongoc_client_destroy(r->client);
    if (r->opts != NULL)
        bson_destroy(r->opts);
    free(r);
}
