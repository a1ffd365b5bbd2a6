/*
 * enr_validate.c: validation rules, pricing and sink documents (see enr_validate.h).
 */
#include "enr_validate.h"

#include <arpa/inet.h>
#include <stdarg.h>

int64_t enr_price_micros(const enr_campaign_t *cp, at_event_type_t type)
{
    if (cp->pricing == ENR_PRICING_CPM && type == AT_EV_IMP)
        return (cp->price_micros + 500) / 1000;
    if (cp->pricing == ENR_PRICING_CPC && type == AT_EV_CLICK)
        return cp->price_micros;
    return 0;
}

static at_reject_t reject(enr_verdict_t *v, at_reject_t r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static at_reject_t reject(enr_verdict_t *v, at_reject_t r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->detail, sizeof(v->detail), fmt, ap);
    va_end(ap);
    v->reason = r;
    return r;
}

static bool usable(const enr_entry_t *e)
{
    return e != NULL && !e->deleted && e->version > 0 && e->u.doc != NULL;
}

at_reject_t enr_validate(const at_event_t *ev, const enr_entry_t *ce, const enr_entry_t *pe,
                         const enr_ua_info_t *ua, enr_verdict_t *v)
{
    int cl = (int)AT_MIN(ev->c.len, 64), pl = (int)AT_MIN(ev->p.len, 64);

    memset(v, 0, sizeof(*v));
    v->ua = *ua;
    if (!usable(ce))
        return reject(v, AT_REJ_UNKNOWN_CAMPAIGN, "c: campaign '%.*s' %s", cl, ev->c.p,
                      ce != NULL && ce->deleted ? "was deleted" : "is not known");
    const enr_campaign_t *cp = ce->u.campaign;
    if (!cp->active)
        return reject(v, AT_REJ_CAMPAIGN_INACTIVE, "c: campaign '%.*s' is paused", cl, ev->c.p);
    if (ev->ts_ms < cp->start_ms || ev->ts_ms >= cp->end_ms)
        return reject(v, AT_REJ_CAMPAIGN_INACTIVE, "ts: outside the flight dates of campaign '%.*s'", cl, ev->c.p);
    if (ev->p.len == 0)
        return reject(v, AT_REJ_UNKNOWN_PUBLISHER, "p: missing; expected a known publisher id");
    if (!usable(pe))
        return reject(v, AT_REJ_UNKNOWN_PUBLISHER, "p: publisher '%.*s' %s", pl, ev->p.p,
                      pe != NULL && pe->deleted ? "was deleted" : "is not known");
    if (!pe->u.publisher->active)
        return reject(v, AT_REJ_PUBLISHER_NOT_ALLOWED, "p: publisher '%.*s' is blocked", pl, ev->p.p);
    if (cp->npublishers > 0) {
        bool found = false;
        for (size_t i = 0; i < cp->npublishers && !found; i++)
            found = strlen(cp->publishers[i]) == ev->p.len && memcmp(cp->publishers[i], ev->p.p, ev->p.len) == 0;
        if (!found)
            return reject(v, AT_REJ_PUBLISHER_NOT_ALLOWED, "p: publisher '%.*s' is not allowed for campaign '%.*s'",
                          pl, ev->p.p, cl, ev->c.p);
    }
    if (ua->bot)
        return reject(v, AT_REJ_BOT, "ua: matches a bot pattern");
    v->price_micros = enr_price_micros(cp, ev->type);
    v->budget_micros = cp->budget_micros;
    v->chargeable = v->price_micros > 0;
    if (!v->chargeable && ce->exhausted)
        return reject(v, AT_REJ_BUDGET_EXHAUSTED, "c: the budget of campaign '%.*s' is exhausted", cl, ev->c.p);
    return AT_REJ_NONE;
}

int enr_ip_anonymize(const char *ip, size_t len, char out[46])
{
    char buf[64];
    unsigned char a[16];

    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, ip, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, a) == 1) {
        a[3] = 0;
        return inet_ntop(AF_INET, a, out, 46) != NULL ? 0 : -1;
    }
    if (inet_pton(AF_INET6, buf, a) == 1) {
        memset(a + 6, 0, 10);
        return inet_ntop(AF_INET6, a, out, 46) != NULL ? 0 : -1;
    }
    return -1;
}

static void put_str(bson_t *out, const char *key, at_str_t s)
{
    if (s.len > 0)
        bson_append_utf8(out, key, -1, s.p, (int)s.len);
}

void enr_doc_event_libbson(bson_t *out, const at_event_t *ev, const enr_campaign_t *cp, const enr_publisher_t *pb,
                           const enr_verdict_t *v)
{
    char id[AT_UUID_STR_LEN + 1], ip[46];

    at_uuid_format(&ev->id, id);
    BSON_APPEND_UTF8(out, "_id", id);
    BSON_APPEND_INT32(out, "v", AT_EVENT_SCHEMA_VERSION);
    BSON_APPEND_DATE_TIME(out, "ts", ev->ts_ms);
    BSON_APPEND_UTF8(out, "e", at_event_type_str(ev->type));
    BSON_APPEND_UTF8(out, "src", at_event_src_str(ev->src));
    put_str(out, "c", ev->c);
    put_str(out, "cr", ev->cr);
    put_str(out, "p", ev->p);
    put_str(out, "pl", ev->pl);
    put_str(out, "uid", ev->uid);
    put_str(out, "u", ev->u);
    put_str(out, "ref", ev->ref);
    put_str(out, "ua", ev->ua);
    if (ev->ip.len > 0 && enr_ip_anonymize(ev->ip.p, ev->ip.len, ip) == 0)
        BSON_APPEND_UTF8(out, "ip", ip);
    put_str(out, "d", ev->d);
    put_str(out, "tag", ev->tag);
    BSON_APPEND_UTF8(out, "advertiser", cp->advertiser);
    BSON_APPEND_UTF8(out, "advertiser_name", cp->advertiser_name);
    BSON_APPEND_UTF8(out, "campaign_name", cp->name);
    BSON_APPEND_UTF8(out, "publisher_name", pb->name);
    BSON_APPEND_INT64(out, "price_micros", v->price_micros);
    BSON_APPEND_UTF8(out, "ua_family", enr_ua_family_str(v->ua.family));
    BSON_APPEND_UTF8(out, "device", enr_device_str(v->ua.device));
}

/*
 * The enriched document, built by hand: the same bytes the appends above produce, written
 * into a stack buffer and added to @p out with one bson_concat(). libbson's generic append
 * path (one call per field, the document regrowing as it goes) was a quarter of the
 * worker's CPU once JSON parsing and writing were fast. A document too large for the buffer
 * (very long names or URLs) goes through the appends. tests/unit/enricher/
 * test_enr_validate.c compares the bytes with the appends.
 */
#define DOC_BUF 8192

typedef struct rawdoc_s {
    uint8_t *b;
    size_t n, cap;
    bool ok;
} rawdoc_t;

static void raw_bytes(rawdoc_t *d, const void *p, size_t n)
{
    if (!d->ok || n > d->cap - d->n) {
        d->ok = false;
        return;
    }
    memcpy(d->b + d->n, p, n);
    d->n += n;
}

static void raw_le(rawdoc_t *d, uint64_t v, size_t bytes)
{
    uint8_t x[8];
    for (size_t i = 0; i < bytes; i++)
        x[i] = (uint8_t)(v >> (8 * i));
    raw_bytes(d, x, bytes);
}

static void raw_key(rawdoc_t *d, uint8_t type, const char *key)
{
    raw_bytes(d, &type, 1);
    raw_bytes(d, key, strlen(key) + 1);
}

static void raw_utf8(rawdoc_t *d, const char *key, const char *s, size_t len)
{
    if (len > INT32_MAX - 1) {
        d->ok = false;
        return;
    }
    raw_key(d, BSON_TYPE_UTF8, key);
    raw_le(d, (uint64_t)len + 1, 4);
    raw_bytes(d, s, len);
    raw_bytes(d, "", 1);
}

static void raw_cstr(rawdoc_t *d, const char *key, const char *s)
{
    raw_utf8(d, key, s, strlen(s));
}

static void raw_str(rawdoc_t *d, const char *key, at_str_t s)
{
    if (s.len > 0)
        raw_utf8(d, key, s.p, s.len);
}

void enr_doc_event(bson_t *out, const at_event_t *ev, const enr_campaign_t *cp, const enr_publisher_t *pb,
                   const enr_verdict_t *v)
{
    uint8_t buf[DOC_BUF];
    rawdoc_t d = {buf, 4, sizeof(buf), true}; /* 4: the length, written last */
    char id[AT_UUID_STR_LEN + 1], ip[46];

    at_uuid_format(&ev->id, id);
    raw_utf8(&d, "_id", id, AT_UUID_STR_LEN);
    raw_key(&d, BSON_TYPE_INT32, "v");
    raw_le(&d, (uint32_t)AT_EVENT_SCHEMA_VERSION, 4);
    raw_key(&d, BSON_TYPE_DATE_TIME, "ts");
    raw_le(&d, (uint64_t)ev->ts_ms, 8);
    raw_cstr(&d, "e", at_event_type_str(ev->type));
    raw_cstr(&d, "src", at_event_src_str(ev->src));
    raw_str(&d, "c", ev->c);
    raw_str(&d, "cr", ev->cr);
    raw_str(&d, "p", ev->p);
    raw_str(&d, "pl", ev->pl);
    raw_str(&d, "uid", ev->uid);
    raw_str(&d, "u", ev->u);
    raw_str(&d, "ref", ev->ref);
    raw_str(&d, "ua", ev->ua);
    if (ev->ip.len > 0 && enr_ip_anonymize(ev->ip.p, ev->ip.len, ip) == 0)
        raw_cstr(&d, "ip", ip);
    raw_str(&d, "d", ev->d);
    raw_str(&d, "tag", ev->tag);
    raw_cstr(&d, "advertiser", cp->advertiser);
    raw_cstr(&d, "advertiser_name", cp->advertiser_name);
    raw_cstr(&d, "campaign_name", cp->name);
    raw_cstr(&d, "publisher_name", pb->name);
    raw_key(&d, BSON_TYPE_INT64, "price_micros");
    raw_le(&d, (uint64_t)v->price_micros, 8);
    raw_cstr(&d, "ua_family", enr_ua_family_str(v->ua.family));
    raw_cstr(&d, "device", enr_device_str(v->ua.device));
    raw_bytes(&d, "", 1);
    if (d.ok) {
        size_t n = d.n;
        d.n = 0;
        raw_le(&d, (uint64_t)n, 4);
        bson_t tmp;
        if (bson_init_static(&tmp, buf, n) && bson_concat(out, &tmp))
            return;
        bson_reinit(out);
    }
    enr_doc_event_libbson(out, ev, cp, pb, v);
}

int enr_doc_rejected(bson_t *out, const char *rid, const at_event_t *ev, at_reject_t reason, const char *detail,
                     const char *raw, size_t rawlen)
{
    size_t len;
    bson_error_t berr;
    at_event_t copy;
    char ip[46];

    /* The stored copy of a rejected event is anonymised like an accepted one. */
    if (ev != NULL) {
        copy = *ev;
        if (copy.ip.len > 0) {
            if (enr_ip_anonymize(copy.ip.p, copy.ip.len, ip) == 0)
                copy.ip = (at_str_t){ip, strlen(ip)};
            else
                copy.ip = (at_str_t){NULL, 0};
        }
        ev = &copy;
    }
    char *json = at_event_rejected_to_json(ev, reason, detail, raw, rawlen, &len);
    if (json == NULL)
        return -1;
    bson_t body;
    bool ok = bson_init_from_json(&body, json, (ssize_t)len, &berr);
    bson_free(json);
    if (!ok)
        return -1;
    BSON_APPEND_UTF8(out, "_id", rid);
    bson_iter_t it;
    bson_iter_init(&it, &body);
    while (bson_iter_next(&it)) {
        if (strcmp(bson_iter_key(&it), "_id") != 0)
            bson_append_iter(out, NULL, 0, &it);
    }
    bson_destroy(&body);
    return 0;
}

at_reject_t enr_parse_error_reason(const at_err_t *err)
{
    if (err->code == AT_ERR_INVALID)
        return AT_REJ_MALFORMED_JSON;
    /* at_event_parse_json names an unrecognised type as "e: <rule>"; a missing one as
     * "e: missing; ...". */
    if (strncmp(err->msg, "e: ", 3) == 0 && strncmp(err->msg, "e: missing", 10) != 0)
        return AT_REJ_UNKNOWN_EVENT_TYPE;
    return AT_REJ_MALFORMED_ENVELOPE;
}
