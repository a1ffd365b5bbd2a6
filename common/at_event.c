/*
 * at_event.c: the event envelope (see at_event.h): name tables, field rules, JSON
 * serialisation and parsing with libbson.
 *
 * Every string written to JSON goes through libbson, which refuses (returns NULL from
 * bson_as_relaxed_extended_json) a document holding invalid UTF-8. Checked events never hold
 * any (at_event_check() rejects it); rejected events may, so their serialiser repairs every
 * string it writes (see append_repaired()).
 */
#include "at_event.h"
#include "at_time.h"
#include "at_json.h"
#include "at_swar.h"

#include <time.h>

#include <bson/bson.h>
#include <limits.h>
#include <pthread.h>

/* Largest ts_ms that relaxed Extended JSON writes as an ISO-8601 string libbson can read
 * back (9999-12-31T23:59:59.999Z). libbson 1.23 writes later dates with a 5+ digit year
 * that its own reader rejects, so at_event_to_json() refuses them instead of writing a
 * document nobody can parse. */
#define AT_EVENT_TS_MAX INT64_C(253402300799999)

/* ------------------------------------------------------------------------------------------
 * Name tables
 */

static const char *const type_names[] = {
    [AT_EV_NONE] = "", [AT_EV_IMP] = "imp", [AT_EV_VIEW] = "view", [AT_EV_CLICK] = "click", [AT_EV_CONV] = "conv",
};

static const char *const src_names[] = {
    [AT_SRC_PIXEL] = "pixel",
    [AT_SRC_CLICK] = "click",
    [AT_SRC_BEACON] = "beacon",
    [AT_SRC_POSTBACK] = "postback",
};

static const char *const reject_names[AT_REJ__COUNT] = {
    [AT_REJ_NONE] = "none",
    [AT_REJ_MISSING_FIELD] = "missing_field",
    [AT_REJ_INVALID_FIELD] = "invalid_field",
    [AT_REJ_FIELD_TOO_LONG] = "field_too_long",
    [AT_REJ_BAD_ENCODING] = "bad_encoding",
    [AT_REJ_UNKNOWN_EVENT_TYPE] = "unknown_event_type",
    [AT_REJ_MALFORMED_JSON] = "malformed_json",
    [AT_REJ_MALFORMED_ENVELOPE] = "malformed_envelope",
    [AT_REJ_UNKNOWN_CAMPAIGN] = "unknown_campaign",
    [AT_REJ_CAMPAIGN_INACTIVE] = "campaign_inactive",
    [AT_REJ_UNKNOWN_PUBLISHER] = "unknown_publisher",
    [AT_REJ_PUBLISHER_NOT_ALLOWED] = "publisher_not_allowed",
    [AT_REJ_DUPLICATE] = "duplicate_event",
    [AT_REJ_BOT] = "bot",
    [AT_REJ_BUDGET_EXHAUSTED] = "budget_exhausted",
    [AT_REJ_DUPLICATE_ORDER] = "duplicate_order",
    [AT_REJ_WRONG_ADVERTISER] = "wrong_advertiser",
};

const char *at_event_type_str(at_event_type_t t)
{
    /* Out-of-range values can arrive through casts; never hand NULL to a serialiser. */
    if ((unsigned)t >= AT_ARRAY_LEN(type_names))
        return "";
    return type_names[t];
}

at_event_type_t at_event_type_parse(const char *s, size_t len)
{
    if (s == NULL)
        return AT_EV_NONE;
    for (size_t t = AT_EV_IMP; t < AT_ARRAY_LEN(type_names); t++) {
        if (strlen(type_names[t]) == len && memcmp(type_names[t], s, len) == 0)
            return (at_event_type_t)t;
    }
    return AT_EV_NONE;
}

const char *at_event_src_str(at_event_src_t s)
{
    if ((unsigned)s >= AT_ARRAY_LEN(src_names))
        return "";
    return src_names[s];
}

/* Parses a src name; -1 when unknown. */
static int src_parse(const char *s, size_t len)
{
    for (size_t i = 0; i < AT_ARRAY_LEN(src_names); i++) {
        if (strlen(src_names[i]) == len && memcmp(src_names[i], s, len) == 0)
            return (int)i;
    }
    return -1;
}

const char *at_reject_str(at_reject_t r)
{
    if ((unsigned)r >= AT_REJ__COUNT)
        return "unknown";
    return reject_names[r];
}

bool at_reject_keeps_campaign(at_reject_t r)
{
    return r == AT_REJ_CAMPAIGN_INACTIVE || r == AT_REJ_UNKNOWN_PUBLISHER || r == AT_REJ_PUBLISHER_NOT_ALLOWED ||
           r == AT_REJ_BOT || r == AT_REJ_BUDGET_EXHAUSTED || r == AT_REJ_DUPLICATE_ORDER ||
           r == AT_REJ_WRONG_ADVERTISER;
}

at_reject_t at_reject_from_str(const char *s)
{
    for (int r = AT_REJ_NONE + 1; r < AT_REJ__COUNT; r++)
        if (strcmp(s, at_reject_str((at_reject_t)r)) == 0)
            return (at_reject_t)r;
    return AT_REJ__COUNT;
}

/* ------------------------------------------------------------------------------------------
 * UTF-8
 */

/*
 * Length (1-4) of the well-formed UTF-8 sequence at @p s, or 0 when the bytes there are not
 * one: stray continuation bytes, overlong forms, surrogates, code points above U+10FFFF and
 * sequences cut short by @p avail (>= 1). NUL also counts as invalid: no field may carry it
 * (C consumers would cut the value there), and libbson treats some NUL forms as invalid too.
 */
static size_t utf8_seq_len(const unsigned char *s, size_t avail)
{
    unsigned char c = s[0];
    unsigned char lo = 0x80, hi = 0xBF;

    if (c == 0)
        return 0;
    if (c < 0x80)
        return 1;
    if (c < 0xC2) /* continuation byte, or overlong 2-byte lead */
        return 0;
    if (c < 0xE0)
        return (avail >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (c == 0xE0)
            lo = 0xA0; /* overlong */
        else if (c == 0xED)
            hi = 0x9F; /* UTF-16 surrogates */
        if (avail < 3 || s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80)
            return 0;
        return 3;
    }
    if (c < 0xF5) {
        if (c == 0xF0)
            lo = 0x90; /* overlong */
        else if (c == 0xF4)
            hi = 0x8F; /* above U+10FFFF */
        if (avail < 4 || s[1] < lo || s[1] > hi || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        return 4;
    }
    return 0;
}

/* Length of the longest prefix of @p s that is well-formed UTF-8 (without NUL) and at most
 * @p max bytes, never splitting a character. Equals @p len when all of s is valid and fits. */
static size_t utf8_valid_prefix(const char *s, size_t len, size_t max)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < len) {
        uint64_t w;
        /* 8 ASCII bytes without NUL at once */
        if (i + 8 <= len && i + 8 <= max &&
            (memcpy(&w, s + i, 8), !AT_SWAR_HAS_HIGH(w) && !AT_SWAR_HAS_ZERO(w))) {
            i += 8;
            continue;
        }
        if (u[i] >= 0x01 && u[i] < 0x80) { /* ASCII fast path */
            if (i + 1 > max)
                break;
            i++;
            continue;
        }
        size_t n = utf8_seq_len(u + i, len - i);
        if (n == 0 || i + n > max)
            break;
        i += n;
    }
    return i;
}

/* ------------------------------------------------------------------------------------------
 * Field rules
 */

/* Character classes of the ASCII fields, one bit each in a table filled once from the rules
 * below: a lookup per byte instead of a call and a chain of comparisons. */
enum { CC_ID = 1, CC_UID = 2, CC_TAG = 4, CC_IP = 8 };

static bool is_id_char(unsigned char ch)
{
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
           ch == ':' || ch == '-';
}

static bool is_uid_char(unsigned char ch)
{
    return ch >= 0x20 && ch <= 0x7E && ch != '"' && ch != '\'' && ch != '\\';
}

static bool is_tag_char(unsigned char ch)
{
    return ch >= 0x20 && ch <= 0x7E;
}

static bool is_ip_char(unsigned char ch)
{
    return (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || (ch >= 'A' && ch <= 'F') || ch == '.' || ch == ':';
}

static uint8_t char_class_table[256];
static pthread_once_t char_class_once = PTHREAD_ONCE_INIT;

static void char_class_init(void)
{
    for (int c = 0; c < 256; c++) {
        unsigned char ch = (unsigned char)c;
        char_class_table[c] = (uint8_t)((is_id_char(ch) ? CC_ID : 0) | (is_uid_char(ch) ? CC_UID : 0) |
                                        (is_tag_char(ch) ? CC_TAG : 0) | (is_ip_char(ch) ? CC_IP : 0));
    }
}

static const uint8_t *char_class(void)
{
    pthread_once(&char_class_once, char_class_init);
    return char_class_table;
}

/* Offset of the first byte of @p s outside class @p cc, or s->len when all are in it. */
static size_t first_bad_char(const at_str_t *s, uint8_t cc)
{
    const uint8_t *t = char_class();
    for (size_t i = 0; i < s->len; i++) {
        if (!(t[(unsigned char)s->p[i]] & cc))
            return i;
    }
    return s->len;
}

static const char id_rule[] = "expected 1-64 characters from [A-Za-z0-9._:-]";

/* c, cr, p, pl. */
static at_reject_t check_id(const char *name, const at_str_t *s, bool required, at_err_t *err)
{
    if (s->len == 0) {
        if (!required)
            return AT_REJ_NONE;
        at_err_set(err, AT_ERR_INVALID, "%s: missing; %s", name, id_rule);
        return AT_REJ_MISSING_FIELD;
    }
    if (s->len > AT_EVENT_ID_MAX) {
        at_err_set(err, AT_ERR_INVALID, "%s: %zu bytes, longer than %d; %s", name, s->len, AT_EVENT_ID_MAX, id_rule);
        return AT_REJ_FIELD_TOO_LONG;
    }
    size_t bad = first_bad_char(s, CC_ID);
    if (bad < s->len) {
        at_err_set(err, AT_ERR_INVALID, "%s: invalid character at byte %zu; %s", name, bad, id_rule);
        return AT_REJ_INVALID_FIELD;
    }
    return AT_REJ_NONE;
}

/* uid, tag, ip: an optional ASCII field with a length limit and a character rule. */
static at_reject_t check_ascii(const char *name, const at_str_t *s, size_t max, uint8_t cc, const char *rule,
                               at_err_t *err)
{
    if (s->len == 0)
        return AT_REJ_NONE;
    if (s->len > max) {
        at_err_set(err, AT_ERR_INVALID, "%s: %zu bytes, longer than %zu", name, s->len, max);
        return AT_REJ_FIELD_TOO_LONG;
    }
    size_t bad = first_bad_char(s, cc);
    if (bad < s->len) {
        at_err_set(err, AT_ERR_INVALID, "%s: invalid character at byte %zu; expected %s", name, bad, rule);
        return AT_REJ_INVALID_FIELD;
    }
    return AT_REJ_NONE;
}

/* u, ref, d. */
static at_reject_t check_url(const char *name, const at_str_t *s, at_err_t *err)
{
    if (s->len == 0)
        return AT_REJ_NONE;
    if (s->len > AT_EVENT_URL_MAX) {
        at_err_set(err, AT_ERR_INVALID, "%s: %zu bytes, longer than %d", name, s->len, AT_EVENT_URL_MAX);
        return AT_REJ_FIELD_TOO_LONG;
    }
    size_t ok = utf8_valid_prefix(s->p, s->len, s->len);
    if (ok < s->len) {
        at_err_set(err, AT_ERR_INVALID, "%s: invalid UTF-8 or NUL at byte %zu; expected UTF-8 text", name, ok);
        return AT_REJ_BAD_ENCODING;
    }
    return AT_REJ_NONE;
}

static const char type_rule[] = "expected one of imp, view, click, conv";

bool at_clid_split(at_str_t clid, at_uuid_t *click_id, at_str_t *c)
{
    at_uuid_t id;
    if (clid.len < AT_UUID_STR_LEN + 2 || clid.len > AT_EVENT_CLID_MAX || clid.p[AT_UUID_STR_LEN] != '.' ||
        at_uuid_parse(clid.p, AT_UUID_STR_LEN, &id) != 0)
        return false;
    at_str_t camp = {clid.p + AT_UUID_STR_LEN + 1, clid.len - AT_UUID_STR_LEN - 1};
    if (first_bad_char(&camp, CC_ID) < camp.len)
        return false;
    if (click_id != NULL)
        *click_id = id;
    if (c != NULL)
        *c = camp;
    return true;
}

/* clid, order, payout_micros: optional, and only the conversion reads them. */
static at_reject_t check_conversion(const at_event_t *ev, at_err_t *err)
{
    at_reject_t r;
    if ((r = check_id("adv", &ev->adv, false, err)) != AT_REJ_NONE)
        return r;
    if (ev->clid.len > AT_EVENT_CLID_MAX) {
        at_err_set(err, AT_ERR_INVALID, "clid: %zu bytes, longer than %d", ev->clid.len, AT_EVENT_CLID_MAX);
        return AT_REJ_FIELD_TOO_LONG;
    }
    if (ev->clid.len > 0 && !at_clid_split(ev->clid, NULL, NULL)) {
        at_err_set(err, AT_ERR_INVALID, "clid: expected <click id (UUID)>.<campaign id> as the click's redirect gave it");
        return AT_REJ_INVALID_FIELD;
    }
    if ((r = check_ascii("order", &ev->order, AT_EVENT_ORDER_MAX, CC_UID,
                         "printable ASCII without quotes or backslash", err)) != AT_REJ_NONE)
        return r;
    if (ev->payout_micros.len > AT_EVENT_PAYOUT_DIGITS) {
        at_err_set(err, AT_ERR_INVALID, "payout_micros: %zu digits, more than %d", ev->payout_micros.len,
                   AT_EVENT_PAYOUT_DIGITS);
        return AT_REJ_FIELD_TOO_LONG;
    }
    for (size_t i = 0; i < ev->payout_micros.len; i++) {
        if (ev->payout_micros.p[i] < '0' || ev->payout_micros.p[i] > '9') {
            at_err_set(err, AT_ERR_INVALID,
                       "payout_micros: invalid character at byte %zu; expected a non-negative integer in micros", i);
            return AT_REJ_INVALID_FIELD;
        }
    }
    return AT_REJ_NONE;
}

/* Copies up to 32 bytes of @p s into @p out (size >= 36) for quoting in a message, replacing
 * anything that is not plain printable ASCII, so a hostile value cannot garble the log. */
static void quote_for_msg(const at_str_t *s, char *out, size_t outsize)
{
    size_t n = AT_MIN(s->len, (size_t)32);
    size_t o = 0;
    for (size_t i = 0; i < n && o + 1 < outsize; i++) {
        unsigned char ch = (unsigned char)s->p[i];
        out[o++] = (ch >= 0x20 && ch <= 0x7E && ch != '"' && ch != '\\') ? (char)ch : '?';
    }
    if (s->len > n && o + 4 < outsize) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
}

/* @p e_text: the e value as received, or NULL when the caller does not know it. */
static at_reject_t check_event(at_event_t *ev, const at_str_t *e_text, at_err_t *err)
{
    at_reject_t r;

    /*
     * The user agent is not under the user's control (and real ones are sometimes mangled
     * by proxies), so it never rejects an event: it is cut at AT_EVENT_UA_MAX bytes on a
     * character boundary, or before the first byte that is not valid UTF-8 (or NUL),
     * whichever comes first. Done before any rejection so rejected records get the same.
     */
    if (ev->ua.len > 0)
        ev->ua.len = utf8_valid_prefix(ev->ua.p, ev->ua.len, AT_EVENT_UA_MAX);

    if (ev->type <= AT_EV_NONE || ev->type > AT_EV_CONV) {
        if (e_text == NULL) {
            /* Without the received text an absent and an unknown type look the same. */
            at_err_set(err, AT_ERR_INVALID, "e: missing or unknown event type; %s", type_rule);
            return AT_REJ_UNKNOWN_EVENT_TYPE;
        }
        if (e_text->len == 0) {
            at_err_set(err, AT_ERR_INVALID, "e: missing; %s", type_rule);
            return AT_REJ_MISSING_FIELD;
        }
        char q[40];
        quote_for_msg(e_text, q, sizeof(q));
        at_err_set(err, AT_ERR_INVALID, "e: unknown event type \"%s\"; %s", q, type_rule);
        return AT_REJ_UNKNOWN_EVENT_TYPE;
    }
    if ((r = check_id("c", &ev->c, true, err)) != AT_REJ_NONE)
        return r;
    if ((r = check_id("cr", &ev->cr, false, err)) != AT_REJ_NONE)
        return r;
    if ((r = check_id("p", &ev->p, false, err)) != AT_REJ_NONE)
        return r;
    if ((r = check_id("pl", &ev->pl, false, err)) != AT_REJ_NONE)
        return r;
    if ((r = check_ascii("uid", &ev->uid, AT_EVENT_UID_MAX, CC_UID, "printable ASCII without quotes or backslash",
                         err)) != AT_REJ_NONE)
        return r;
    if ((r = check_url("u", &ev->u, err)) != AT_REJ_NONE)
        return r;
    if ((r = check_url("ref", &ev->ref, err)) != AT_REJ_NONE)
        return r;
    if ((r = check_url("d", &ev->d, err)) != AT_REJ_NONE)
        return r;
    if ((r = check_ascii("tag", &ev->tag, AT_EVENT_TAG_MAX, CC_TAG, "printable ASCII", err)) != AT_REJ_NONE)
        return r;
    if ((r = check_ascii("ip", &ev->ip, AT_EVENT_IP_MAX, CC_IP, "a textual IPv4 or IPv6 address [0-9A-Fa-f.:]",
                         err)) != AT_REJ_NONE)
        return r;
    return check_conversion(ev, err);
}

at_reject_t at_event_check(at_event_t *ev, at_err_t *err)
{
    return check_event(ev, NULL, err);
}

at_reject_t at_event_check_e(at_event_t *ev, at_str_t e_text, at_err_t *err)
{
    return check_event(ev, &e_text, err);
}

/* ------------------------------------------------------------------------------------------
 * Serialisation
 */

static bool append_str(bson_t *b, const char *key, const char *s)
{
    return bson_append_utf8(b, key, -1, s, -1);
}

/* Fields c..tag in envelope order, shared by both serialisers. */
static const struct {
    const char *key;
    size_t off;
} str_fields[] = {
    {"c", offsetof(at_event_t, c)},     {"cr", offsetof(at_event_t, cr)},   {"p", offsetof(at_event_t, p)},
    {"pl", offsetof(at_event_t, pl)},   {"uid", offsetof(at_event_t, uid)}, {"u", offsetof(at_event_t, u)},
    {"ref", offsetof(at_event_t, ref)}, {"ua", offsetof(at_event_t, ua)},   {"ip", offsetof(at_event_t, ip)},
    {"d", offsetof(at_event_t, d)},     {"tag", offsetof(at_event_t, tag)},
    {"clid", offsetof(at_event_t, clid)}, {"order", offsetof(at_event_t, order)},
    {"payout_micros", offsetof(at_event_t, payout_micros)}, {"adv", offsetof(at_event_t, adv)},
};

static const at_str_t *field_at(const at_event_t *ev, size_t i)
{
    return (const at_str_t *)((const char *)ev + str_fields[i].off);
}

static char *finish_json(bson_t *b, bool ok, size_t *len)
{
    size_t n = 0;
    char *json = ok ? bson_as_relaxed_extended_json(b, &n) : NULL;
    bson_destroy(b);
    if (json != NULL && len != NULL)
        *len = n;
    return json;
}

static char *put_lit(char *o, const char *lit)
{
    size_t n = strlen(lit);
    memcpy(o, lit, n);
    return o + n;
}

/* ", "<key>" : <string>" */
static char *put_field(char *o, const char *key, const char *s, size_t n)
{
    o = put_lit(o, ", \"");
    o = put_lit(o, key);
    o = put_lit(o, "\" : ");
    return at_json_put_str(o, s, n);
}

/*
 * The hot path of every pixel. The envelope has a fixed shape, so it is written directly
 * rather than through a bson_t and bson_as_relaxed_extended_json(), which the collector
 * benchmark showed costing about a quarter of the collector's CPU per request. The output
 * is byte for byte what libbson writes for the same document (tests/unit/common/
 * test_at_event.c compares the two), so every reader sees the same relaxed Extended JSON.
 */
char *at_event_to_json(const at_event_t *ev, size_t *len)
{
    if (ev == NULL || ev->ts_ms < 0 || ev->ts_ms > AT_EVENT_TS_MAX)
        return NULL;

    /* libbson refuses invalid UTF-8: so does this writer (an unchecked event). */
    size_t cap = 256;
    for (size_t i = 0; i < AT_ARRAY_LEN(str_fields); i++) {
        const at_str_t *f = field_at(ev, i);
        if (f->len == 0)
            continue;
        if (f->p == NULL || f->len > INT_MAX || utf8_valid_prefix(f->p, f->len, f->len) != f->len)
            return NULL;
        for (size_t k = 0; k < f->len; k++)
            if (f->p[k] == '\0')
                return NULL;
        cap += 16 + 6 * f->len;
    }

    char id[AT_UUID_STR_LEN + 1];
    at_uuid_format(&ev->id, id);
    /* libbson's date form: seconds in UTC, then ".mmm" only when the milliseconds are not 0. */
    char date[32];
    at_utc_iso8601(ev->ts_ms, date); /* ts is within 1970..9999: checked above */

    char *out = bson_malloc(cap);
    char *o = out;
    o = put_lit(o, "{ \"v\" : 1");
    o = put_field(o, "id", id, AT_UUID_STR_LEN);
    o = put_lit(o, ", \"ts\" : { \"$date\" : \"");
    o = put_lit(o, date);
    o = put_lit(o, "\" }");
    const char *type = at_event_type_str(ev->type), *src = at_event_src_str(ev->src);
    o = put_field(o, "e", type, strlen(type));
    o = put_field(o, "src", src, strlen(src));
    /* c is required (the Kafka key): written even when empty so a bad event is visible. */
    if (ev->c.len == 0)
        o = put_field(o, "c", "", 0);
    for (size_t i = 0; i < AT_ARRAY_LEN(str_fields); i++) {
        const at_str_t *f = field_at(ev, i);
        if (f->len > 0)
            o = put_field(o, str_fields[i].key, f->p, f->len);
    }
    o = put_lit(o, " }");
    *o = '\0';
    if (len != NULL)
        *len = (size_t)(o - out);
    return out;
}

/*
 * Appends @p s (length @p len) as a string, made safe for JSON: cut to at most @p max bytes
 * on a character boundary, and every byte that is not part of well-formed UTF-8 (and every
 * NUL) replaced by U+FFFD. Replacement rather than hex escaping keeps the text readable and
 * unambiguous (a literal "\xff" in the input stays distinguishable from a bad byte); the
 * bytes themselves are lost, which is acceptable for a forensic copy capped at 2 KiB anyway.
 * Valid input, the common case, is appended without a copy.
 */
static bool append_repaired(bson_t *b, const char *key, const char *s, size_t len, size_t max)
{
    char buf[AT_EVENT_RAW_MAX];
    const unsigned char *u = (const unsigned char *)s;
    size_t o = 0;

    if (max > sizeof(buf))
        max = sizeof(buf);
    if (s == NULL)
        return append_str(b, key, "");
    size_t valid = utf8_valid_prefix(s, len, max);
    if (valid == len)
        return bson_append_utf8(b, key, -1, s, (int)len);

    memcpy(buf, s, valid);
    o = valid;
    for (size_t i = valid; i < len;) {
        size_t n = utf8_seq_len(u + i, len - i);
        if (n == 0) {
            if (o + 3 > max)
                break;
            memcpy(buf + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        } else {
            if (o + n > max)
                break;
            memcpy(buf + o, s + i, n);
            o += n;
            i += n;
        }
    }
    return bson_append_utf8(b, key, -1, buf, (int)o);
}

static bool uuid_is_zero(const at_uuid_t *u)
{
    for (size_t i = 0; i < sizeof(u->b); i++) {
        if (u->b[i] != 0)
            return false;
    }
    return true;
}

char *at_event_rejected_to_json(const at_event_t *ev, at_reject_t reason, const char *detail, const char *raw,
                                size_t rawlen, size_t *len)
{
    bson_t b;
    bson_init(&b);
    bool ok = bson_append_int32(&b, "v", 1, AT_EVENT_SCHEMA_VERSION);

    if (ev != NULL) {
        if (ok && !uuid_is_zero(&ev->id)) {
            char id[AT_UUID_STR_LEN + 1];
            at_uuid_format(&ev->id, id);
            ok = append_str(&b, "id", id);
        }
        if (ok && ev->ts_ms > 0 && ev->ts_ms <= AT_EVENT_TS_MAX)
            ok = bson_append_date_time(&b, "ts", 2, ev->ts_ms);
        if (ok && ev->type > AT_EV_NONE && ev->type <= AT_EV_CONV)
            ok = append_str(&b, "e", at_event_type_str(ev->type));
        if (ok)
            ok = append_str(&b, "src", at_event_src_str(ev->src));
        /* Fields are whatever the request held, so each is repaired and capped like raw:
         * a rejected record stays bounded and always serialisable. */
        for (size_t i = 0; ok && i < AT_ARRAY_LEN(str_fields); i++) {
            const at_str_t *s = field_at(ev, i);
            if (s->len > 0)
                ok = append_repaired(&b, str_fields[i].key, s->p, s->len, AT_EVENT_RAW_MAX);
        }
    }
    if (ok)
        ok = append_str(&b, "reason", at_reject_str(reason));
    if (ok)
        ok = append_repaired(&b, "detail", detail, detail != NULL ? strlen(detail) : 0, AT_EVENT_RAW_MAX);
    if (ok)
        ok = append_repaired(&b, "raw", raw, raw != NULL ? rawlen : 0, AT_EVENT_RAW_MAX);
    return finish_json(&b, ok, len);
}

/* ------------------------------------------------------------------------------------------
 * Parsing
 */

enum {
    PF_V,
    PF_ID,
    PF_TS,
    PF_E,
    PF_SRC,
    PF_STR0 /* + index into str_fields */
};

/* Index of @p key among the envelope fields, or -1. */
static int parse_field_index(const char *key)
{
    static const char *const fixed[] = {"v", "id", "ts", "e", "src"};
    for (size_t i = 0; i < AT_ARRAY_LEN(fixed); i++) {
        if (strcmp(key, fixed[i]) == 0)
            return (int)i;
    }
    for (size_t i = 0; i < AT_ARRAY_LEN(str_fields); i++) {
        if (strcmp(key, str_fields[i].key) == 0)
            return PF_STR0 + (int)i;
    }
    return -1;
}

/* Reads the fields of @p doc into @p out. Returns 0 or -1 (AT_ERR_RANGE) naming the field. */
static int parse_fields(const bson_t *doc, at_event_parsed_t *out, at_err_t *err)
{
    bson_iter_t it;
    uint32_t seen = 0;
    bool have_v = false, have_id = false, have_ts = false, have_src = false;
    at_event_t *ev = &out->ev;

    if (!bson_iter_init(&it, doc))
        return at_err_set(err, AT_ERR_RANGE, "event: unreadable document");
    /* One pass; when a key repeats, the first occurrence wins (as for query parameters). */
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        int f = parse_field_index(key);
        if (f < 0 || (seen & (UINT32_C(1) << f)) != 0)
            continue;
        seen |= UINT32_C(1) << f;

        if (f == PF_V) {
            if (BSON_ITER_HOLDS_INT32(&it)) {
                out->v = bson_iter_int32(&it);
            } else if (BSON_ITER_HOLDS_INT64(&it)) {
                int64_t v = bson_iter_int64(&it);
                out->v = v > INT_MAX ? INT_MAX : v < INT_MIN ? INT_MIN : (int)v;
            } else {
                return at_err_set(err, AT_ERR_RANGE, "v: expected the integer %d", AT_EVENT_SCHEMA_VERSION);
            }
            have_v = true;
        } else if (f == PF_TS) {
            if (!BSON_ITER_HOLDS_DATE_TIME(&it))
                return at_err_set(err, AT_ERR_RANGE, "ts: expected a date ({\"$date\": ...})");
            ev->ts_ms = bson_iter_date_time(&it);
            have_ts = true;
        } else {
            if (!BSON_ITER_HOLDS_UTF8(&it))
                return at_err_set(err, AT_ERR_RANGE, "%s: expected a string", key);
            uint32_t n = 0;
            const char *s = bson_iter_utf8(&it, &n);
            if (f == PF_ID) {
                if (at_uuid_parse(s, n, &ev->id) != 0)
                    return at_err_set(err, AT_ERR_RANGE, "id: expected a UUID (8-4-4-4-12 hex digits)");
                have_id = true;
            } else if (f == PF_E) {
                ev->type = at_event_type_parse(s, n);
                if (ev->type == AT_EV_NONE)
                    return at_err_set(err, AT_ERR_RANGE, "e: %s", type_rule);
            } else if (f == PF_SRC) {
                int src = src_parse(s, n);
                if (src < 0)
                    return at_err_set(err, AT_ERR_RANGE, "src: expected one of pixel, click, beacon, postback");
                ev->src = (at_event_src_t)src;
                have_src = true;
            } else {
                at_str_t *dst = (at_str_t *)((char *)ev + str_fields[f - PF_STR0].off);
                dst->p = s;
                dst->len = n;
            }
        }
    }
    if (!have_v)
        return at_err_set(err, AT_ERR_RANGE, "v: missing; expected the integer %d", AT_EVENT_SCHEMA_VERSION);
    if (out->v != AT_EVENT_SCHEMA_VERSION)
        return at_err_set(err, AT_ERR_RANGE, "v: unsupported schema version %d; expected %d", out->v,
                          AT_EVENT_SCHEMA_VERSION);
    if (!have_id)
        return at_err_set(err, AT_ERR_RANGE, "id: missing; expected a UUID");
    if (!have_ts)
        return at_err_set(err, AT_ERR_RANGE, "ts: missing; expected a date");
    if (ev->type == AT_EV_NONE)
        return at_err_set(err, AT_ERR_RANGE, "e: missing; %s", type_rule);
    if (ev->c.len == 0)
        return at_err_set(err, AT_ERR_RANGE, "c: missing; expected a non-empty string");
    if (!have_src)
        ev->src = AT_SRC_PIXEL; /* tolerated: older writers; src is informational */
    return 0;
}

/*
 * The fast reader. The envelopes the collector writes use a small part of JSON: one flat
 * object whose values are strings of printable ASCII without escapes, the integer v, and
 * ts as {"$date": "YYYY-MM-DDTHH:MM:SS[.mmm]Z"}. This reads exactly that subset, by hand,
 * at a few percent of the cost of libbson's reader (its reader set-up, jsonsl and its
 * date parser were a third of the enricher's CPU). Anything else - escapes, non-ASCII
 * text, other value types, a key starting with '$', a date it does not recognise, or an
 * envelope with any error - returns 0, and at_event_parse_json() reads the input again
 * with libbson, so every answer outside the subset, and every error message, is libbson's.
 * Inside the subset the result equals libbson's reading (tests/unit/common/test_at_event.c
 * compares the two on generated and mutated envelopes; fuzz it with the same comparison).
 * Returns 1 with @p out filled (its views point into out->text, a copy of the input, or
 * with @p copy false into the input itself), or 0 with @p out untouched.
 */
typedef struct fast_s {
    const char *p, *end;
} fast_t;

static void fast_ws(fast_t *f)
{
    while (f->p < f->end && (*f->p == ' ' || *f->p == '\t' || *f->p == '\n' || *f->p == '\r'))
        f->p++;
}

/* A string of printable ASCII without escapes: its content in *s, *n. Eight bytes at a time:
 * the first byte of a word that is '"', '\\', a control character, DEL or above 0x7e is
 * found exactly (the lowest flag of each SWAR test is exact), and it either closes the
 * string or makes it one for libbson's path. */
static bool fast_str(fast_t *f, const char **s, size_t *n)
{
    if (f->p >= f->end || *f->p != '"')
        return false;
    const char *start = ++f->p;
    while (f->end - f->p >= 8) {
        uint64_t w = at_swar_load(f->p);
        uint64_t m = AT_SWAR_HAS_LESS(w, 0x20) | AT_SWAR_HAS_HIGH(w) | AT_SWAR_HAS_BYTE(w, 0x7f) |
                     AT_SWAR_HAS_BYTE(w, '"') | AT_SWAR_HAS_BYTE(w, '\\');
        if (m == 0) {
            f->p += 8;
            continue;
        }
        f->p += AT_SWAR_FIRST(m);
        if (*f->p != '"')
            return false;
        *s = start;
        *n = (size_t)(f->p - start);
        f->p++;
        return true;
    }
    while (f->p < f->end) {
        unsigned char c = (unsigned char)*f->p;
        if (c == '"') {
            *s = start;
            *n = (size_t)(f->p - start);
            f->p++;
            return true;
        }
        if (c < 0x20 || c > 0x7e || c == '\\')
            return false;
        f->p++;
    }
    return false;
}

/* An integer without sign tricks or leading zeros, at most 18 digits (fits int64). */
static bool fast_int(fast_t *f, int64_t *v)
{
    bool neg = false;
    if (f->p < f->end && *f->p == '-') {
        neg = true;
        f->p++;
    }
    const char *start = f->p;
    int64_t x = 0;
    while (f->p < f->end && *f->p >= '0' && *f->p <= '9' && f->p - start < 18)
        x = x * 10 + (*f->p++ - '0');
    size_t nd = (size_t)(f->p - start);
    if (nd == 0 || nd > 18 || (start[0] == '0' && (nd > 1 || neg)))
        return false;
    /* "1.5", "1e3": not an integer; left to libbson */
    if (f->p < f->end && (*f->p == '.' || *f->p == 'e' || *f->p == 'E' || (*f->p >= '0' && *f->p <= '9')))
        return false;
    *v = neg ? -x : x;
    return true;
}

static int fast_digits(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* "YYYY-MM-DDTHH:MM:SSZ" or "YYYY-MM-DDTHH:MM:SS.mmmZ", a real calendar date from 1970
 * on, no leap second. */
static bool fast_date(const char *s, size_t n, int64_t *ms)
{
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if ((n != 20 && n != 24) || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[n - 1] != 'Z' || (n == 24 && s[19] != '.'))
        return false;
    int y = fast_digits(s, 4), mo = fast_digits(s + 5, 2), d = fast_digits(s + 8, 2);
    int h = fast_digits(s + 11, 2), mi = fast_digits(s + 14, 2), sec = fast_digits(s + 17, 2);
    int frac = n == 24 ? fast_digits(s + 20, 3) : 0;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || sec < 0 || sec > 59 ||
        frac < 0)
        return false;
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    if (d > mdays[mo - 1] + (mo == 2 && leap))
        return false;
    *ms = ((at_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec) * 1000) + frac;
    return true;
}

static bool key_is(const char *k, size_t kn, const char *name)
{
    return strlen(name) == kn && memcmp(k, name, kn) == 0;
}

/* Index of an envelope key, the same as parse_field_index() gives (PF_STR0 + the position
 * in str_fields: c cr p pl uid u ref ua ip d tag clid order payout_micros adv), or -1. Decided by length and bytes: this
 * runs for every key of every event. The differential test of the two readers would catch
 * a mapping that drifted from str_fields. */
static int fast_field_index(const char *k, size_t kn)
{
    switch (kn) {
    case 1:
        switch (k[0]) {
        case 'v': return PF_V;
        case 'e': return PF_E;
        case 'c': return PF_STR0 + 0;
        case 'p': return PF_STR0 + 2;
        case 'u': return PF_STR0 + 5;
        case 'd': return PF_STR0 + 9;
        default: return -1;
        }
    case 2: {
        unsigned two = (unsigned)(unsigned char)k[0] << 8 | (unsigned char)k[1];
        switch (two) {
        case 'i' << 8 | 'd': return PF_ID;
        case 't' << 8 | 's': return PF_TS;
        case 'c' << 8 | 'r': return PF_STR0 + 1;
        case 'p' << 8 | 'l': return PF_STR0 + 3;
        case 'u' << 8 | 'a': return PF_STR0 + 7;
        case 'i' << 8 | 'p': return PF_STR0 + 8;
        default: return -1;
        }
    }
    case 3:
        if (memcmp(k, "src", 3) == 0)
            return PF_SRC;
        if (memcmp(k, "uid", 3) == 0)
            return PF_STR0 + 4;
        if (memcmp(k, "ref", 3) == 0)
            return PF_STR0 + 6;
        if (memcmp(k, "tag", 3) == 0)
            return PF_STR0 + 10;
        if (memcmp(k, "adv", 3) == 0)
            return PF_STR0 + 14;
        return -1;
    case 4:
        return memcmp(k, "clid", 4) == 0 ? PF_STR0 + 11 : -1;
    case 5:
        return memcmp(k, "order", 5) == 0 ? PF_STR0 + 12 : -1;
    case 13:
        return memcmp(k, "payout_micros", 13) == 0 ? PF_STR0 + 13 : -1;
    default:
        return -1;
    }
}

static int parse_fast(const char *json, size_t len, bool copy, at_event_parsed_t *out)
{
    fast_t f = {json, json + len};
    at_event_parsed_t pe;
    uint32_t seen = 0;
    bool have_src = false;
    /* Offsets of the string views into the input, turned into pointers into the copy. */
    struct {
        size_t off, len;
        bool set;
    } views[AT_ARRAY_LEN(str_fields)] = {{0, 0, false}};

    memset(&pe, 0, sizeof(pe));
    fast_ws(&f);
    if (f.p >= f.end || *f.p++ != '{')
        return 0;
    fast_ws(&f);
    if (f.p < f.end && *f.p == '}')
        return 0; /* {}: not an envelope; libbson's path names what is missing */
    for (;;) {
        const char *k, *s;
        size_t kn, sn;
        fast_ws(&f);
        if (!fast_str(&f, &k, &kn) || (kn > 0 && k[0] == '$'))
            return 0;
        fast_ws(&f);
        if (f.p >= f.end || *f.p++ != ':')
            return 0;
        fast_ws(&f);
        int fi = fast_field_index(k, kn);
        bool first = fi >= 0 && (seen & (UINT32_C(1) << fi)) == 0;
        if (fi >= 0)
            seen |= UINT32_C(1) << fi;
        if (f.p >= f.end)
            return 0;
        if (*f.p == '"') {
            if (!fast_str(&f, &s, &sn))
                return 0;
            if (first) {
                if (fi == PF_V || fi == PF_TS)
                    return 0; /* wrong type: libbson's path reports it */
                if (fi == PF_ID) {
                    if (at_uuid_parse(s, sn, &pe.ev.id) != 0)
                        return 0;
                } else if (fi == PF_E) {
                    pe.ev.type = at_event_type_parse(s, sn);
                    if (pe.ev.type == AT_EV_NONE)
                        return 0;
                } else if (fi == PF_SRC) {
                    int src = src_parse(s, sn);
                    if (src < 0)
                        return 0;
                    pe.ev.src = (at_event_src_t)src;
                    have_src = true;
                } else {
                    size_t vi = (size_t)(fi - PF_STR0);
                    views[vi].off = (size_t)(s - json);
                    views[vi].len = sn;
                    views[vi].set = true;
                }
            }
        } else if (*f.p == '{') {
            /* only ts: {"$date": "<ISO-8601>"} */
            const char *dk;
            size_t dkn;
            int64_t ms;
            f.p++;
            fast_ws(&f);
            if (!first || fi != PF_TS || !fast_str(&f, &dk, &dkn) || !key_is(dk, dkn, "$date"))
                return 0;
            fast_ws(&f);
            if (f.p >= f.end || *f.p++ != ':')
                return 0;
            fast_ws(&f);
            if (!fast_str(&f, &s, &sn) || !fast_date(s, sn, &ms))
                return 0;
            fast_ws(&f);
            if (f.p >= f.end || *f.p++ != '}')
                return 0;
            pe.ev.ts_ms = ms;
        } else {
            int64_t v;
            if (!fast_int(&f, &v))
                return 0;
            if (first) {
                if (fi != PF_V)
                    return 0; /* a number where a string belongs: libbson's path reports it */
                pe.v = v > INT_MAX ? INT_MAX : v < INT_MIN ? INT_MIN : (int)v;
            }
        }
        fast_ws(&f);
        if (f.p >= f.end)
            return 0;
        if (*f.p == ',') {
            f.p++;
            continue;
        }
        if (*f.p++ != '}')
            return 0;
        break;
    }
    fast_ws(&f);
    if (f.p != f.end)
        return 0;
    /* A complete, valid envelope only; every error comes from libbson's path. */
    uint32_t need = (UINT32_C(1) << PF_V) | (UINT32_C(1) << PF_ID) | (UINT32_C(1) << PF_TS) | (UINT32_C(1) << PF_E);
    if ((seen & need) != need || pe.v != AT_EVENT_SCHEMA_VERSION || pe.ev.type == AT_EV_NONE)
        return 0;
    size_t ci = 0; /* c is str_fields[0] */
    if (!views[ci].set || views[ci].len == 0 || len > (size_t)SSIZE_MAX)
        return 0;
    char *text = NULL;
    const char *base = json;
    if (copy) {
        if ((text = malloc(len + 1)) == NULL)
            return 0;
        memcpy(text, json, len);
        text[len] = '\0';
        base = text;
    }
    for (size_t i = 0; i < AT_ARRAY_LEN(str_fields); i++) {
        if (!views[i].set)
            continue;
        at_str_t *dst = (at_str_t *)((char *)&pe.ev + str_fields[i].off);
        dst->p = base + views[i].off;
        dst->len = views[i].len;
    }
    if (!have_src)
        pe.ev.src = AT_SRC_PIXEL;
    pe.text = text;
    pe.plain = true;
    *out = pe;
    return 1;
}

int at_event_parse_json(const char *json, size_t len, at_event_parsed_t *out, at_err_t *err)
{
    if (json != NULL && parse_fast(json, len, true, out) == 1)
        return 0;
    return at_event_parse_json_libbson(json, len, out, err);
}

int at_event_parse_json_view(const char *json, size_t len, at_event_parsed_t *out, at_err_t *err)
{
    if (json != NULL && parse_fast(json, len, false, out) == 1)
        return 0;
    return at_event_parse_json_libbson(json, len, out, err);
}

int at_event_parse_json_libbson(const char *json, size_t len, at_event_parsed_t *out, at_err_t *err)
{
    memset(out, 0, sizeof(*out));
    if (json == NULL)
        return at_err_set(err, AT_ERR_INVALID, "event: no input");
    bson_t *doc = at_json_parse_single(json, len, '{', "event", "a JSON object", err);
    if (doc == NULL) {
        if (err != NULL)
            err->code = AT_ERR_INVALID; /* AT_ERR_RANGE is reserved for "JSON but not an envelope" */
        return -1;
    }
    out->doc = doc;
    if (parse_fields(doc, out, err) != 0) {
        at_event_parsed_free(out);
        return -1;
    }
    return 0;
}

void at_event_parsed_free(at_event_parsed_t *pe)
{
    if (pe == NULL)
        return;
    if (pe->doc != NULL)
        bson_destroy((bson_t *)pe->doc);
    free(pe->text);
    memset(pe, 0, sizeof(*pe));
}
