/*
 * enr_validate.c: validation rules, pricing and sink documents (see enr_validate.h).
 */
#include "enr_validate.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdlib.h>

#include "at_json.h"

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
    if (ev->type == AT_EV_CONV) {
        /* A conversion is the late effect of a click the rules already admitted: it counts
         * after the flight, while paused, and after the budget ran out, and it has no
         * publisher of its own (the click's is copied in). A server's postback is not a
         * browser, so the bot patterns do not apply to it. */
        if (ev->adv.len > 0 && (strlen(cp->advertiser) != ev->adv.len ||
                                memcmp(cp->advertiser, ev->adv.p, ev->adv.len) != 0))
            return reject(v, AT_REJ_WRONG_ADVERTISER, "adv: advertiser '%.*s' does not own campaign '%.*s' of the click",
                          (int)AT_MIN(ev->adv.len, 64), ev->adv.p, cl, ev->c.p);
        if (ua->bot && ev->src != AT_SRC_POSTBACK)
            return reject(v, AT_REJ_BOT, "ua: matches a bot pattern");
        return AT_REJ_NONE;
    }
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

at_reject_t enr_conversion_apply(at_event_t *ev, const enr_campaign_t *cp, const enr_attrib_op_t *op,
                                 enr_verdict_t *v)
{
    v->attribution = op->result;
    v->payout_micros = 0;
    if (op->result == ENR_ATTR_DUPLICATE)
        return reject(v, AT_REJ_DUPLICATE_ORDER, "order: '%.*s' was already converted for advertiser '%s'",
                      (int)AT_MIN(ev->order.len, 128), ev->order.p, cp->advertiser);
    if (op->result != ENR_ATTR_ATTRIBUTED)
        return AT_REJ_NONE;
    ev->cr = op->click_cr;
    ev->p = op->click_p;
    ev->pl = op->click_pl;
    v->click_ts_ms = op->click_ts_ms;
    int64_t payout = 0;
    for (size_t i = 0; i < ev->payout_micros.len; i++) /* digits only, at most 13: at_event_check */
        payout = payout * 10 + (ev->payout_micros.p[i] - '0');
    v->payout_micros = ev->payout_micros.len > 0 ? payout : cp->payout_micros;
    return AT_REJ_NONE;
}

/*
 * Dotted-quad IPv4 the way inet_pton(3) accepts it (four decimal octets up to 255, no
 * leading zeros, nothing else), anonymised without the library: inet_ntop would print the
 * first three octets exactly as they are written, so they are copied, then ".0". inet_ntop
 * was a tenth of the worker's instructions. Returns 0, or 1 when @p ip is anything else
 * (the caller then asks the library, which also judges IPv6 and every error).
 */
static int ipv4_anonymize(const char *ip, size_t len, char out[46])
{
    size_t i = 0, third_dot = 0;
    if (len < 7 || len > 15)
        return 1;
    for (int octet = 1;; octet++) {
        size_t start = i;
        unsigned v = 0;
        while (i < len && i - start < 3 && ip[i] >= '0' && ip[i] <= '9')
            v = v * 10 + (unsigned)(ip[i++] - '0');
        size_t nd = i - start;
        if (nd == 0 || (nd > 1 && ip[start] == '0') || v > 255)
            return 1;
        if (octet == 4)
            break;
        if (i >= len || ip[i] != '.')
            return 1;
        if (octet == 3)
            third_dot = i;
        i++;
    }
    if (i != len)
        return 1;
    memcpy(out, ip, third_dot + 1);
    out[third_dot + 1] = '0';
    out[third_dot + 2] = '\0';
    return 0;
}

int enr_ip_anonymize(const char *ip, size_t len, char out[46])
{
    char buf[64];
    unsigned char a[16];

    if (len == 0 || len >= sizeof(buf))
        return -1;
    if (ipv4_anonymize(ip, len, out) == 0)
        return 0;
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
    bool conv = ev->type == AT_EV_CONV;
    if (conv) {
        put_str(out, "clid", ev->clid);
        put_str(out, "order", ev->order); /* adv, when given, equals advertiser: wrong_advertiser otherwise */
    }
    BSON_APPEND_UTF8(out, "advertiser", cp->advertiser);
    BSON_APPEND_UTF8(out, "advertiser_name", cp->advertiser_name);
    BSON_APPEND_UTF8(out, "campaign_name", cp->name);
    if (pb != NULL)
        BSON_APPEND_UTF8(out, "publisher_name", pb->name);
    BSON_APPEND_INT64(out, "price_micros", v->price_micros);
    BSON_APPEND_UTF8(out, "ua_family", enr_ua_family_str(v->ua.family));
    BSON_APPEND_UTF8(out, "device", enr_device_str(v->ua.device));
    if (conv) {
        BSON_APPEND_UTF8(out, "attribution", enr_attrib_str(v->attribution));
        BSON_APPEND_INT64(out, "payout_micros", v->payout_micros);
        if (v->attribution == ENR_ATTR_ATTRIBUTED)
            BSON_APPEND_DATE_TIME(out, "click_ts", v->click_ts_ms);
    }
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

    if (ev->type == AT_EV_CONV || pb == NULL) {
        /* Conversions are few and carry more fields: libbson's appends build them. */
        enr_doc_event_libbson(out, ev, cp, pb, v);
        return;
    }

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

/*
 * The enriched document as its file-sink line, written straight from the event: what
 * at_json_append_relaxed() writes for enr_doc_event()'s document, without building it.
 * Going through BSON and reading it back cost about half of the worker's instructions per
 * event once the envelope was read by hand. The direct path covers every document whose
 * strings at_json_append_relaxed() writes itself (at_json_utf8_ok) and whose ts it formats
 * (1970 to 9999); anything else takes the BSON route, so the bytes are the same either
 * way. tests/unit/enricher/test_enr_validate.c compares the two.
 */
typedef struct jfield_s {
    const char *key;
    size_t klen;
    const char *s;
    size_t n;
    bool plain; /* known to need no escapes (printable ASCII without '"' or '\\') */
} jfield_t;

static char *put_key(char *o, const char *key, size_t klen)
{
    *o++ = ',';
    *o++ = ' ';
    *o++ = '"';
    memcpy(o, key, klen);
    o += klen;
    memcpy(o, "\" : ", 4);
    return o + 4;
}

static char *put_i64(char *o, int64_t v)
{
    char tmp[24];
    char *t = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        *--t = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--t = '-';
    size_t n = (size_t)(tmp + sizeof(tmp) - t);
    memcpy(o, t, n);
    return o + n;
}

static int json_room(char **buf, size_t *cap, size_t used, size_t need)
{
    if (used + need <= *cap)
        return 0;
    size_t nc = *cap ? *cap : 65536;
    while (nc < used + need)
        nc *= 2;
    char *nb = realloc(*buf, nc);
    if (nb == NULL)
        return -1;
    *buf = nb;
    *cap = nc;
    return 0;
}

int enr_doc_event_json(char **buf, size_t *cap, size_t *used, const at_event_t *ev, bool plain,
                       const enr_campaign_t *cp, const enr_publisher_t *pb, const enr_verdict_t *v)
{
#define F(k, str, len, pl) ((jfield_t){k, sizeof(k) - 1, (str), (len), (pl)})
#define FC(k, str, pl) F(k, (str), strlen(str), pl)
    char ip[46];
    const char *e = at_event_type_str(ev->type), *src = at_event_src_str(ev->src);
    bool has_ip = ev->ip.len > 0 && enr_ip_anonymize(ev->ip.p, ev->ip.len, ip) == 0;
    /* The string fields after ts, in enr_doc_event()'s order; empty optional ones left out. */
    jfield_t f[20];
    size_t nf = 0;
    f[nf++] = FC("e", e, true);
    f[nf++] = FC("src", src, true);
    const at_str_t *opt1[] = {&ev->c, &ev->cr, &ev->p, &ev->pl, &ev->uid, &ev->u, &ev->ref, &ev->ua};
    static const char *const k1[] = {"c", "cr", "p", "pl", "uid", "u", "ref", "ua"};
    for (size_t i = 0; i < AT_ARRAY_LEN(opt1); i++)
        if (opt1[i]->len > 0)
            f[nf++] = (jfield_t){k1[i], strlen(k1[i]), opt1[i]->p, opt1[i]->len, plain};
    if (has_ip)
        f[nf++] = FC("ip", ip, true); /* digits, hex digits, '.' and ':' */
    if (ev->d.len > 0)
        f[nf++] = F("d", ev->d.p, ev->d.len, plain);
    if (ev->tag.len > 0)
        f[nf++] = F("tag", ev->tag.p, ev->tag.len, plain);
    f[nf++] = FC("advertiser", cp->advertiser, false);
    f[nf++] = FC("advertiser_name", cp->advertiser_name, false);
    f[nf++] = FC("campaign_name", cp->name, false);
    if (pb != NULL)
        f[nf++] = FC("publisher_name", pb->name, false);
#undef F
#undef FC

    /* Conversions (and documents without a publisher) go through the BSON route. */
    bool direct = ev->ts_ms >= 0 && ev->ts_ms <= AT_JSON_DATE_MAX && ev->type != AT_EV_CONV && pb != NULL;
    size_t need = 256; /* _id, v, ts, price_micros, ua_family, device, braces */
    for (size_t i = 0; direct && i < nf; i++) {
        direct = f[i].plain || at_json_utf8_ok(f[i].s, f[i].n);
        need += f[i].klen + 8 + (f[i].plain ? 1 : 6) * f[i].n; /* worst case: every byte escaped as \u00XX */
    }
    if (!direct) {
        bson_t doc;
        bson_init(&doc);
        enr_doc_event(&doc, ev, cp, pb, v);
        int rc = at_json_append_relaxed(&doc, buf, cap, used);
        bson_destroy(&doc);
        return rc;
    }
    if (json_room(buf, cap, *used, need) != 0)
        return -1;
    char *o = *buf + *used;
    memcpy(o, "{ \"_id\" : \"", 11);
    o += 11;
    at_uuid_format(&ev->id, o); /* writes a NUL after the 36 characters; overwritten next */
    o += AT_UUID_STR_LEN;
    memcpy(o, "\", \"v\" : ", 9);
    o += 9;
    o = put_i64(o, AT_EVENT_SCHEMA_VERSION);
    o = put_key(o, "ts", 2);
    o = at_json_put_date(o, ev->ts_ms);
    for (size_t i = 0; i < nf; i++) {
        o = put_key(o, f[i].key, f[i].klen);
        if (f[i].plain) {
            *o++ = '"';
            memcpy(o, f[i].s, f[i].n);
            o += f[i].n;
            *o++ = '"';
        } else {
            o = at_json_put_str(o, f[i].s, f[i].n);
        }
    }
    o = put_key(o, "price_micros", 12);
    o = put_i64(o, v->price_micros);
    const char *fam = enr_ua_family_str(v->ua.family), *dev = enr_device_str(v->ua.device);
    o = put_key(o, "ua_family", 9);
    o = at_json_put_str(o, fam, strlen(fam));
    o = put_key(o, "device", 6);
    o = at_json_put_str(o, dev, strlen(dev));
    memcpy(o, " }", 2);
    o += 2;
    *used = (size_t)(o - *buf);
    return 0;
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
