/*
 * fuzz_common.h: invariant checks shared by the libFuzzer targets. A broken invariant
 * prints what failed and abort()s, which libFuzzer reports as a crash with the input saved.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <bson/bson.h>
#include <stdio.h>
#include <stdlib.h>

#include "at_event.h"

#define FUZZ_CHECK(cond, ...)                                                                                          \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

/* A fixed id and time, so serialisation is deterministic. */
static inline void fuzz_stamp(at_event_t *ev)
{
    for (int i = 0; i < 16; i++)
        ev->id.b[i] = (uint8_t)(0x11 * (i + 1));
    ev->id.b[6] = 0x70 | (ev->id.b[6] & 0x0f);
    ev->id.b[8] = 0x80 | (ev->id.b[8] & 0x3f);
    ev->ts_ms = INT64_C(1795267622123);
}

static inline bool fuzz_str_eq(at_str_t a, at_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

static inline bool fuzz_all(const at_str_t *s, bool (*ok)(unsigned char))
{
    for (size_t i = 0; i < s->len; i++) {
        if (!ok((unsigned char)s->p[i]))
            return false;
    }
    return true;
}

static inline bool fuzz_id_char(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
           ch == ':' || ch == '-';
}

/* The promises of at_event_check() for an accepted event. */
static inline void fuzz_check_accepted(const at_event_t *ev)
{
    FUZZ_CHECK(ev->type > AT_EV_NONE && ev->type <= AT_EV_CONV, "type %d", (int)ev->type);
    FUZZ_CHECK(ev->c.len >= 1 && ev->c.len <= AT_EVENT_ID_MAX && fuzz_all(&ev->c, fuzz_id_char), "c");
    FUZZ_CHECK(ev->cr.len <= AT_EVENT_ID_MAX && fuzz_all(&ev->cr, fuzz_id_char), "cr");
    FUZZ_CHECK(ev->p.len <= AT_EVENT_ID_MAX && fuzz_all(&ev->p, fuzz_id_char), "p");
    FUZZ_CHECK(ev->pl.len <= AT_EVENT_ID_MAX && fuzz_all(&ev->pl, fuzz_id_char), "pl");
    FUZZ_CHECK(ev->uid.len <= AT_EVENT_UID_MAX, "uid");
    FUZZ_CHECK(ev->u.len <= AT_EVENT_URL_MAX && ev->ref.len <= AT_EVENT_URL_MAX && ev->d.len <= AT_EVENT_URL_MAX,
               "url");
    FUZZ_CHECK(ev->ua.len <= AT_EVENT_UA_MAX, "ua %zu", ev->ua.len);
    FUZZ_CHECK(ev->tag.len <= AT_EVENT_TAG_MAX && ev->ip.len <= AT_EVENT_IP_MAX, "tag/ip");
    FUZZ_CHECK(bson_utf8_validate(ev->u.p ? ev->u.p : "", ev->u.len, false), "u utf8");
    FUZZ_CHECK(bson_utf8_validate(ev->ua.p ? ev->ua.p : "", ev->ua.len, false), "ua utf8");
}

/* An accepted event serialises, and reads back to the same envelope. */
static inline void fuzz_check_roundtrip(const at_event_t *ev)
{
    size_t len = 0;
    char *json = at_event_to_json(ev, &len);
    FUZZ_CHECK(json != NULL, "to_json failed for an accepted event");
    FUZZ_CHECK(strlen(json) == len, "length");
    at_event_parsed_t pe;
    at_err_t err = {AT_OK, ""};
    FUZZ_CHECK(at_event_parse_json(json, len, &pe, &err) == 0, "re-parse: %s: %s", err.msg, json);
    FUZZ_CHECK(memcmp(pe.ev.id.b, ev->id.b, 16) == 0, "id");
    FUZZ_CHECK(pe.ev.ts_ms == ev->ts_ms && pe.ev.type == ev->type && pe.ev.src == ev->src, "ts/type/src");
    FUZZ_CHECK(fuzz_str_eq(pe.ev.c, ev->c) && fuzz_str_eq(pe.ev.cr, ev->cr) && fuzz_str_eq(pe.ev.p, ev->p) &&
                   fuzz_str_eq(pe.ev.pl, ev->pl) && fuzz_str_eq(pe.ev.uid, ev->uid) && fuzz_str_eq(pe.ev.u, ev->u) &&
                   fuzz_str_eq(pe.ev.ref, ev->ref) && fuzz_str_eq(pe.ev.ua, ev->ua) && fuzz_str_eq(pe.ev.ip, ev->ip) &&
                   fuzz_str_eq(pe.ev.d, ev->d) && fuzz_str_eq(pe.ev.tag, ev->tag),
               "fields differ after round trip: %s", json);
    FUZZ_CHECK(at_event_check(&pe.ev, &err) == AT_REJ_NONE, "re-parsed event fails the check: %s", err.msg);
    at_event_parsed_free(&pe);
    bson_free(json);
}

/* A rejected record always serialises to JSON that libbson reads back, with the reason. */
static inline void fuzz_check_rejected(const at_event_t *ev, at_reject_t r, const char *detail, const char *raw,
                                       size_t rawlen)
{
    size_t len = 0;
    char *json = at_event_rejected_to_json(ev, r, detail, raw, rawlen, &len);
    FUZZ_CHECK(json != NULL, "rejected_to_json failed");
    bson_error_t be;
    bson_t *doc = bson_new_from_json((const uint8_t *)json, (ssize_t)len, &be);
    FUZZ_CHECK(doc != NULL, "rejected JSON does not re-parse: %s: %s", be.message, json);
    bson_iter_t it;
    FUZZ_CHECK(bson_iter_init_find(&it, doc, "reason") && BSON_ITER_HOLDS_UTF8(&it) &&
                   strcmp(bson_iter_utf8(&it, NULL), at_reject_str(r)) == 0,
               "reason");
    FUZZ_CHECK(bson_iter_init_find(&it, doc, "raw") && BSON_ITER_HOLDS_UTF8(&it), "raw missing");
    uint32_t n = 0;
    bson_iter_utf8(&it, &n);
    FUZZ_CHECK(n <= AT_EVENT_RAW_MAX, "raw %u bytes", n);
    bson_destroy(doc);
    bson_free(json);
}

#endif
