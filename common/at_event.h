/*
 * at_event.h: the event envelope shared by every service.
 *
 * On the wire (Kafka value, file sink) an event is one JSON document in relaxed Extended
 * JSON, written and read with libbson:
 *   {"v":1,"id":"<uuidv7>","ts":{"$date":"2026-11-21T13:27:02.123Z"},"e":"imp","src":"pixel",
 *    "c":"camp-1","cr":"cr-9","p":"pub-3","pl":"slot-top","uid":"u-42","u":"https://...",
 *    "ref":"https://...","ua":"Mozilla/5.0 ...","ip":"203.0.113.0","d":"https://dest",
 *    "tag":"run-1:17"}
 * Optional fields are omitted when empty. The Kafka key is the campaign id "c".
 * A rejected event carries the same fields that could be read, plus "reason" (a stable
 * reason code, below), "detail" (a message naming the field and what was expected) and
 * "raw" (the offending input, truncated to AT_EVENT_RAW_MAX bytes).
 */
#ifndef AT_EVENT_H
#define AT_EVENT_H

#include "at_err.h"
#include "at_uuid.h"

#define AT_EVENT_SCHEMA_VERSION 1

/* Field limits, in bytes after percent-decoding. */
#define AT_EVENT_ID_MAX 64    /* c, cr, p, pl: [A-Za-z0-9._:-]+ */
#define AT_EVENT_UID_MAX 128  /* uid: printable ASCII, no quotes or backslash */
#define AT_EVENT_URL_MAX 2048 /* u, ref, d */
#define AT_EVENT_UA_MAX 512   /* ua: longer values are truncated, not rejected */
#define AT_EVENT_TAG_MAX 128  /* tag: opaque client tag (the load tester's run id and sequence) */
#define AT_EVENT_IP_MAX 45    /* textual IPv6 */
#define AT_EVENT_RAW_MAX 2048 /* "raw" in a rejected event */
/* Conversions (docs/REPORTS.md "Attribution"). A click id is "<click event id>.<campaign>":
 * the UUIDv7 of the click event, a dot, and the click's campaign id, so a conversion that
 * carries only the click id still has a campaign (its Kafka key, the click's partition). */
#define AT_EVENT_CLID_MAX (36 + 1 + AT_EVENT_ID_MAX) /* clid: [A-Za-z0-9._:-] */
#define AT_EVENT_ORDER_MAX 128                       /* order: printable ASCII, no quotes or backslash */
#define AT_EVENT_PAYOUT_DIGITS 13                    /* payout_micros: decimal digits, at most 10^13 - 1 */

typedef enum at_event_type_e {
    AT_EV_NONE = 0, /* not given / not recognised */
    AT_EV_IMP,
    AT_EV_VIEW,
    AT_EV_CLICK,
    AT_EV_CONV,
} at_event_type_t;

typedef enum at_event_src_e { AT_SRC_PIXEL = 0, AT_SRC_CLICK, AT_SRC_BEACON, AT_SRC_POSTBACK } at_event_src_t;

/* Stable reason codes for rejected events. The string forms are part of the public
 * interface (rejected topic and collection, metrics labels). */
typedef enum at_reject_e {
    AT_REJ_NONE = 0,
    /* edge (collector) */
    AT_REJ_MISSING_FIELD,      /* "missing_field" */
    AT_REJ_INVALID_FIELD,      /* "invalid_field": wrong characters or form */
    AT_REJ_FIELD_TOO_LONG,     /* "field_too_long" */
    AT_REJ_BAD_ENCODING,       /* "bad_encoding": invalid percent-encoding or UTF-8 */
    AT_REJ_UNKNOWN_EVENT_TYPE, /* "unknown_event_type" */
    AT_REJ_MALFORMED_JSON,     /* "malformed_json" */
    AT_REJ_MALFORMED_ENVELOPE, /* "malformed_envelope": JSON but not a valid event */
    /* enricher */
    AT_REJ_UNKNOWN_CAMPAIGN,   /* "unknown_campaign" */
    AT_REJ_CAMPAIGN_INACTIVE,  /* "campaign_inactive": paused, or outside its flight dates */
    AT_REJ_UNKNOWN_PUBLISHER,  /* "unknown_publisher" */
    AT_REJ_PUBLISHER_NOT_ALLOWED, /* "publisher_not_allowed" */
    AT_REJ_DUPLICATE,          /* "duplicate_event" */
    AT_REJ_BOT,                /* "bot" */
    AT_REJ_BUDGET_EXHAUSTED,   /* "budget_exhausted" */
    AT_REJ_DUPLICATE_ORDER,    /* "duplicate_order": a conversion whose (advertiser, order) was seen */
    AT_REJ_WRONG_ADVERTISER,   /* "wrong_advertiser": a postback's advertiser does not own the click's campaign */
    AT_REJ__COUNT
} at_reject_t;

/* A string view; not necessarily NUL-terminated. {NULL, 0} means absent. */
typedef struct at_str_s {
    const char *p;
    size_t len;
} at_str_t;

#define AT_STR_LIT(s) ((at_str_t){(s), sizeof(s) - 1})

/*
 * An event in memory. String fields are views into storage the event does not own (the
 * request's decoded query buffer, or a parsed bson document); whoever fills the struct
 * keeps that storage alive while the event is used.
 */
typedef struct at_event_s {
    at_uuid_t id;
    int64_t ts_ms; /* received time, Unix ms */
    at_event_type_t type;
    at_event_src_t src;
    at_str_t c, cr, p, pl, uid, u, ref, ua, ip, d, tag;
    /* Conversions only: the click id (AT_EVENT_CLID_MAX), the advertiser's order id and the
     * payout in micros as decimal digits (a string, so the envelope stays all strings). */
    at_str_t clid, order, payout_micros;
    /* Postbacks: the advertiser the collector authenticated (an id like c); the enricher
     * rejects the conversion when the clid's campaign belongs to another advertiser. */
    at_str_t adv;
} at_event_t;

/* Static names: "imp", "view", "click", "conv"; "" for AT_EV_NONE. */
const char *at_event_type_str(at_event_type_t t);
/* Parses a type name; AT_EV_NONE when unknown. */
at_event_type_t at_event_type_parse(const char *s, size_t len);
/* "pixel", "click", "beacon", "postback" */
const char *at_event_src_str(at_event_src_t s);
/* Stable reason code string, e.g. "missing_field". */
const char *at_reject_str(at_reject_t r);

/*
 * True for the reasons decided once the campaign was found in core data (inactive, the
 * publisher, a bot, the budget, an attribution refusal). Those rejections are counted under
 * the event's own campaign (and, in the hourly rollups, its creative, publisher and
 * placement) by every counter: the real-time counters, the rollups and the reconciliation
 * recount (docs/REPORTS.md). Other reasons leave the campaign unknown or untrusted, so
 * counting them per campaign would let arbitrary ids in traffic create keys.
 */
bool at_reject_keeps_campaign(at_reject_t r);

/* The reason named @p s (as at_reject_str() spells it), or AT_REJ__COUNT when none is. */
at_reject_t at_reject_from_str(const char *s);

/* Splits a click id "<uuid>.<campaign>" (see AT_EVENT_CLID_MAX): true with the click
 * event's id in @p click_id (may be NULL) and the campaign view in @p c (may be NULL) when
 * @p clid has that form; false otherwise. */
bool at_clid_split(at_str_t clid, at_uuid_t *click_id, at_str_t *c);

/*
 * Checks a filled event against the envelope rules (required c and a known type; field
 * lengths and character sets above). Returns AT_REJ_NONE, or the reason with @p err's
 * message naming the field and what was expected ("c: expected 1-64 characters from
 * [A-Za-z0-9._:-]"). A ua longer than AT_EVENT_UA_MAX is truncated in place, not rejected.
 */
at_reject_t at_event_check(at_event_t *ev, at_err_t *err);

/*
 * As at_event_check(), but with the event type text as received (@p e_text, e.g.
 * col_query_t.e; {NULL, 0} when the parameter was absent), so that an absent or empty e is
 * AT_REJ_MISSING_FIELD and an unrecognised one AT_REJ_UNKNOWN_EVENT_TYPE quoting it.
 * at_event_check() alone cannot tell the two apart and reports AT_REJ_UNKNOWN_EVENT_TYPE.
 */
at_reject_t at_event_check_e(at_event_t *ev, at_str_t e_text, at_err_t *err);

/* Serialises @p ev as relaxed Extended JSON. Returns a string the caller frees with
 * bson_free(), its length in @p len; NULL on failure (a field that is not valid UTF-8, i.e.
 * an unchecked event, or ts_ms outside years 1970-9999, which libbson could not read back). */
char *at_event_to_json(const at_event_t *ev, size_t *len);

/* Serialises a rejected event: the fields of @p ev that are set (ev may be NULL), plus
 * reason, detail and raw (truncated to AT_EVENT_RAW_MAX). Every string (fields too) is cut
 * to AT_EVENT_RAW_MAX bytes on a character boundary, with bytes that are not valid UTF-8
 * (and NUL) replaced by U+FFFD, so the result is always valid JSON. Caller frees with
 * bson_free(). */
char *at_event_rejected_to_json(const at_event_t *ev, at_reject_t reason, const char *detail, const char *raw,
                                size_t rawlen, size_t *len);

/*
 * Parsed form of an envelope read back from JSON (by the enricher and the tests).
 * The views in ev point into doc or text (whichever reader read it); at_event_parsed_free()
 * releases both.
 */
typedef struct at_event_parsed_s {
    at_event_t ev;
    int v;              /* schema version found */
    void *doc;          /* bson_t *, owned; NULL when the fast reader read it */
    char *text;         /* owned copy of the input (NUL-terminated); NULL when libbson read it,
                         * or when at_event_parse_json_view() left the views in the input */
    bool plain;         /* read by the fast reader: every string field is printable ASCII
                         * (0x20-0x7e) without '"' or '\\', so JSON needs no escapes for it */
} at_event_parsed_t;

/* Parses an envelope. Returns 0, or -1 with @p err naming the bad field (the caller
 * rejects with AT_REJ_MALFORMED_JSON or AT_REJ_MALFORMED_ENVELOPE as err->code says:
 * AT_ERR_INVALID = not JSON, AT_ERR_RANGE = JSON but not an envelope). On success the
 * caller calls at_event_parsed_free(). */
int at_event_parse_json(const char *json, size_t len, at_event_parsed_t *out, at_err_t *err);
/* As at_event_parse_json(), but when the fast reader reads @p json the views point into
 * @p json itself instead of a copy: the caller keeps it alive and unchanged until
 * at_event_parsed_free(). (The enricher parses each Kafka message this way; the message
 * lives as long as its batch.) */
int at_event_parse_json_view(const char *json, size_t len, at_event_parsed_t *out, at_err_t *err);
/* The same, always through libbson's reader. at_event_parse_json() reads the envelopes the
 * collector writes (flat, ASCII, no escapes) with a small hand parser and leaves the rest
 * to this; the two must agree on every input, which the tests and the fuzzer check with
 * this function as the reference. */
int at_event_parse_json_libbson(const char *json, size_t len, at_event_parsed_t *out, at_err_t *err);
void at_event_parsed_free(at_event_parsed_t *pe);

#endif
