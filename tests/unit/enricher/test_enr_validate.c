/* Unit tests for enricher/enr_validate.c: every validation rule and reason code, pricing,
 * IP anonymisation and the sink documents. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <stdlib.h>

#include "at_json.h"
#include "enr_validate.h"

#define TS_IN INT64_C(1790000000000) /* 2026-09-21, inside the flight below */

static const char CAMP_JSON[] =
    "{\"id\":\"camp-1\",\"advertiser\":\"adv-1\",\"advertiser_name\":\"Acme Shoes\",\"name\":\"Spring sale\","
    "\"status\":\"active\",\"start\":\"2026-01-01T00:00:00Z\",\"end\":\"2026-12-31T23:59:59Z\","
    "\"budget_micros\":5000000000,\"pricing\":\"cpm\",\"price_micros\":2500000,"
    "\"publishers\":[\"pub-1\",\"pub-2\"],\"version\":17}";
static const char PUB_JSON[] = "{\"id\":\"pub-1\",\"name\":\"Daily News\",\"status\":\"active\",\"version\":18}";

typedef struct fx_s {
    enr_cache_t *cache;
    enr_ua_t *ua;
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    at_err_t err;
    fx->cache = enr_cache_new(60000);
    fx->ua = enr_ua_new(NULL, &err);
    assert_int_equal(enr_cache_apply(fx->cache, ENR_CAMPAIGN, "camp-1", 6, 17, false, CAMP_JSON, strlen(CAMP_JSON),
                                     ENR_SRC_CHANGE, 0, &err),
                     ENR_APPLIED);
    assert_int_equal(enr_cache_apply(fx->cache, ENR_PUBLISHER, "pub-1", 5, 18, false, PUB_JSON, strlen(PUB_JSON),
                                     ENR_SRC_CHANGE, 0, &err),
                     ENR_APPLIED);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    enr_cache_destroy(fx->cache);
    enr_ua_destroy(fx->ua);
    free(fx);
    return 0;
}

static at_str_t S(const char *s)
{
    return (at_str_t){s, strlen(s)};
}

static at_event_t ev_base(void)
{
    at_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = AT_EV_IMP;
    ev.c = S("camp-1");
    ev.p = S("pub-1");
    ev.ua = S("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36");
    ev.ts_ms = TS_IN;
    ev.ip = S("203.0.113.77");
    ev.tag = S("run:1");
    return ev;
}

static at_reject_t run(fx_t *fx, const at_event_t *ev, enr_verdict_t *v)
{
    enr_ua_info_t ua;
    enr_ua_classify(fx->ua, ev->ua.p, ev->ua.len, &ua);
    const enr_entry_t *ce = enr_cache_get(fx->cache, ENR_CAMPAIGN, ev->c.p, ev->c.len);
    const enr_entry_t *pe = ev->p.len ? enr_cache_get(fx->cache, ENR_PUBLISHER, ev->p.p, ev->p.len) : NULL;
    return enr_validate(ev, ce, pe, &ua, v);
}

static void put_campaign(fx_t *fx, uint64_t version, const char *from, const char *to)
{
    /* CAMP_JSON with one substring replaced. */
    char buf[1024];
    const char *at = strstr(CAMP_JSON, from);
    assert_non_null(at);
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - CAMP_JSON), CAMP_JSON, to, at + strlen(from));
    at_err_t err;
    assert_int_equal(enr_cache_apply(fx->cache, ENR_CAMPAIGN, "camp-1", 6, version, false, buf, strlen(buf),
                                     ENR_SRC_CHANGE, 0, &err),
                     ENR_APPLIED);
}

static void test_enr_validate__valid_cpm_impression(void **state)
{
    fx_t *fx = *state;
    at_event_t ev = ev_base();
    enr_verdict_t v;
    assert_int_equal(run(fx, &ev, &v), AT_REJ_NONE);
    assert_true(v.chargeable);
    assert_int_equal(v.price_micros, 2500);
    assert_int_equal(v.budget_micros, INT64_C(5000000000));
    assert_int_equal(v.ua.family, ENR_UA_CHROME);
    assert_int_equal(v.ua.device, ENR_DEV_DESKTOP);
}

static void test_enr_validate__unknown_campaign(void **state)
{
    fx_t *fx = *state;
    at_event_t ev = ev_base();
    enr_verdict_t v;
    ev.c = S("camp-404");
    assert_int_equal(run(fx, &ev, &v), AT_REJ_UNKNOWN_CAMPAIGN);
    assert_non_null(strstr(v.detail, "camp-404"));
    /* A cached absence (Redis had nothing) is unknown too. */
    at_err_t err;
    enr_cache_apply(fx->cache, ENR_CAMPAIGN, "camp-404", 8, 0, false, NULL, 0, ENR_SRC_FETCH, 0, &err);
    assert_int_equal(run(fx, &ev, &v), AT_REJ_UNKNOWN_CAMPAIGN);
}

static void test_enr_validate__deleted_campaign(void **state)
{
    fx_t *fx = *state;
    at_err_t err;
    assert_int_equal(enr_cache_apply(fx->cache, ENR_CAMPAIGN, "camp-1", 6, 30, true, NULL, 0, ENR_SRC_CHANGE, 0, &err),
                     ENR_APPLIED);
    at_event_t ev = ev_base();
    enr_verdict_t v;
    assert_int_equal(run(fx, &ev, &v), AT_REJ_UNKNOWN_CAMPAIGN);
    assert_non_null(strstr(v.detail, "deleted"));
}

static void test_enr_validate__paused(void **state)
{
    fx_t *fx = *state;
    put_campaign(fx, 20, "\"status\":\"active\"", "\"status\":\"paused\"");
    at_event_t ev = ev_base();
    enr_verdict_t v;
    assert_int_equal(run(fx, &ev, &v), AT_REJ_CAMPAIGN_INACTIVE);
    assert_non_null(strstr(v.detail, "paused"));
}

static void test_enr_validate__flight_dates(void **state)
{
    fx_t *fx = *state;
    at_event_t ev = ev_base();
    enr_verdict_t v;
    int64_t start, end;
    assert_int_equal(enr_parse_rfc3339("2026-01-01T00:00:00Z", 20, &start), 0);
    assert_int_equal(enr_parse_rfc3339("2026-12-31T23:59:59Z", 20, &end), 0);
    ev.ts_ms = start - 1;
    assert_int_equal(run(fx, &ev, &v), AT_REJ_CAMPAIGN_INACTIVE);
    ev.ts_ms = start; /* start is inclusive */
    assert_int_equal(run(fx, &ev, &v), AT_REJ_NONE);
    ev.ts_ms = end - 1;
    assert_int_equal(run(fx, &ev, &v), AT_REJ_NONE);
    ev.ts_ms = end; /* end is exclusive */
    assert_int_equal(run(fx, &ev, &v), AT_REJ_CAMPAIGN_INACTIVE);
    assert_non_null(strstr(v.detail, "flight"));
}

static void test_enr_validate__unknown_publisher(void **state)
{
    fx_t *fx = *state;
    at_event_t ev = ev_base();
    enr_verdict_t v;
    ev.p = S("pub-2"); /* allowed by the campaign, but not known */
    assert_int_equal(run(fx, &ev, &v), AT_REJ_UNKNOWN_PUBLISHER);
    ev.p = (at_str_t){NULL, 0};
    assert_int_equal(run(fx, &ev, &v), AT_REJ_UNKNOWN_PUBLISHER);
    assert_non_null(strstr(v.detail, "p: missing"));
}

static void test_enr_validate__publisher_not_allowed(void **state)
{
    fx_t *fx = *state;
    at_err_t err;
    const char pub3[] = "{\"id\":\"pub-3\",\"name\":\"Other\",\"status\":\"active\"}";
    enr_cache_apply(fx->cache, ENR_PUBLISHER, "pub-3", 5, 19, false, pub3, strlen(pub3), ENR_SRC_CHANGE, 0, &err);
    at_event_t ev = ev_base();
    enr_verdict_t v;
    ev.p = S("pub-3");
    assert_int_equal(run(fx, &ev, &v), AT_REJ_PUBLISHER_NOT_ALLOWED);
    /* An empty list allows any known, active publisher. */
    put_campaign(fx, 21, "[\"pub-1\",\"pub-2\"]", "[]");
    assert_int_equal(run(fx, &ev, &v), AT_REJ_NONE);
    /* A blocked publisher is never allowed. */
    const char blocked[] = "{\"id\":\"pub-3\",\"name\":\"Other\",\"status\":\"blocked\"}";
    enr_cache_apply(fx->cache, ENR_PUBLISHER, "pub-3", 5, 22, false, blocked, strlen(blocked), ENR_SRC_CHANGE, 0, &err);
    assert_int_equal(run(fx, &ev, &v), AT_REJ_PUBLISHER_NOT_ALLOWED);
    assert_non_null(strstr(v.detail, "blocked"));
}

static void test_enr_validate__bot(void **state)
{
    fx_t *fx = *state;
    at_event_t ev = ev_base();
    enr_verdict_t v;
    ev.ua = S("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)");
    assert_int_equal(run(fx, &ev, &v), AT_REJ_BOT);
    ev.ua = S("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/120.0 Safari/537.36");
    assert_int_equal(run(fx, &ev, &v), AT_REJ_BOT);
}

static void test_enr_validate__exhausted(void **state)
{
    fx_t *fx = *state;
    at_event_t ev = ev_base();
    enr_verdict_t v;
    assert_int_equal(enr_cache_set_exhausted(fx->cache, "camp-1", 6, true, 40), ENR_APPLIED);
    /* A chargeable event goes to the budget script (which may answer "already charged"). */
    assert_int_equal(run(fx, &ev, &v), AT_REJ_NONE);
    assert_true(v.chargeable);
    /* One that costs nothing is rejected here. */
    ev.type = AT_EV_VIEW;
    assert_int_equal(run(fx, &ev, &v), AT_REJ_BUDGET_EXHAUSTED);
    /* A replenished budget (newer version) lifts it; an older one does not. */
    assert_int_equal(enr_cache_set_exhausted(fx->cache, "camp-1", 6, false, 39), ENR_STALE);
    assert_int_equal(run(fx, &ev, &v), AT_REJ_BUDGET_EXHAUSTED);
    assert_int_equal(enr_cache_set_exhausted(fx->cache, "camp-1", 6, false, 41), ENR_APPLIED);
    assert_int_equal(run(fx, &ev, &v), AT_REJ_NONE);
}

static void test_enr_validate__order_of_checks(void **state)
{
    fx_t *fx = *state;
    at_event_t ev = ev_base();
    enr_verdict_t v;
    /* Paused campaign and unknown publisher and a bot: the campaign rule comes first. */
    put_campaign(fx, 23, "\"status\":\"active\"", "\"status\":\"paused\"");
    ev.p = S("nobody");
    ev.ua = S("curl/8.0");
    assert_int_equal(run(fx, &ev, &v), AT_REJ_CAMPAIGN_INACTIVE);
}

static void test_enr_parse_error_reason__mapping(void **state)
{
    AT_UNUSED(state);
    at_event_parsed_t pe;
    at_err_t err;
    const char *bad_json = "{\"v\":1,";
    assert_int_equal(at_event_parse_json(bad_json, strlen(bad_json), &pe, &err), -1);
    assert_int_equal(enr_parse_error_reason(&err), AT_REJ_MALFORMED_JSON);
    const char *bad_type = "{\"v\":1,\"id\":\"0190a000-0000-7000-8000-000000000001\",\"ts\":{\"$date\":"
                           "\"2026-11-21T13:27:02.123Z\"},\"e\":\"hover\",\"c\":\"camp-1\"}";
    assert_int_equal(at_event_parse_json(bad_type, strlen(bad_type), &pe, &err), -1);
    assert_int_equal(enr_parse_error_reason(&err), AT_REJ_UNKNOWN_EVENT_TYPE);
    const char *no_id = "{\"v\":1,\"ts\":{\"$date\":\"2026-11-21T13:27:02.123Z\"},\"e\":\"imp\",\"c\":\"camp-1\"}";
    assert_int_equal(at_event_parse_json(no_id, strlen(no_id), &pe, &err), -1);
    assert_int_equal(enr_parse_error_reason(&err), AT_REJ_MALFORMED_ENVELOPE);
    const char *no_e = "{\"v\":1,\"id\":\"0190a000-0000-7000-8000-000000000001\",\"ts\":{\"$date\":"
                       "\"2026-11-21T13:27:02.123Z\"},\"c\":\"camp-1\"}";
    assert_int_equal(at_event_parse_json(no_e, strlen(no_e), &pe, &err), -1);
    assert_int_equal(enr_parse_error_reason(&err), AT_REJ_MALFORMED_ENVELOPE);
}

static void test_enr_price_micros__rules(void **state)
{
    AT_UNUSED(state);
    enr_campaign_t cp = {.pricing = ENR_PRICING_CPM, .price_micros = 2500000};
    assert_int_equal(enr_price_micros(&cp, AT_EV_IMP), 2500);
    assert_int_equal(enr_price_micros(&cp, AT_EV_CLICK), 0);
    assert_int_equal(enr_price_micros(&cp, AT_EV_VIEW), 0);
    assert_int_equal(enr_price_micros(&cp, AT_EV_CONV), 0);
    /* CPM rounding: half up, per impression. */
    cp.price_micros = 1499;
    assert_int_equal(enr_price_micros(&cp, AT_EV_IMP), 1);
    cp.price_micros = 1500;
    assert_int_equal(enr_price_micros(&cp, AT_EV_IMP), 2);
    cp.price_micros = 499;
    assert_int_equal(enr_price_micros(&cp, AT_EV_IMP), 0);
    cp.price_micros = 0;
    assert_int_equal(enr_price_micros(&cp, AT_EV_IMP), 0);
    cp = (enr_campaign_t){.pricing = ENR_PRICING_CPC, .price_micros = 350000};
    assert_int_equal(enr_price_micros(&cp, AT_EV_CLICK), 350000);
    assert_int_equal(enr_price_micros(&cp, AT_EV_IMP), 0);
    assert_int_equal(enr_price_micros(&cp, AT_EV_CONV), 0);
}

static void test_enr_ip_anonymize__v4_v6(void **state)
{
    AT_UNUSED(state);
    char out[46];
    assert_int_equal(enr_ip_anonymize("203.0.113.77", 12, out), 0);
    assert_string_equal(out, "203.0.113.0");
    assert_int_equal(enr_ip_anonymize("2001:db8:abcd:12:1:2:3:4", 24, out), 0);
    assert_string_equal(out, "2001:db8:abcd::");
    assert_int_equal(enr_ip_anonymize("not-an-ip", 9, out), -1);
    assert_int_equal(enr_ip_anonymize("", 0, out), -1);
}

/* What enr_ip_anonymize() did before its IPv4 fast path: inet_pton + inet_ntop only. */
static int ip_anonymize_libc(const char *ip, size_t len, char out[46])
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

static uint64_t ip_rng = 0x2545F4914F6CDD1DULL;

static uint64_t rnd_ip(void)
{
    ip_rng ^= ip_rng << 13;
    ip_rng ^= ip_rng >> 7;
    ip_rng ^= ip_rng << 17;
    return ip_rng;
}

static void test_enr_ip_anonymize__same_as_libc(void **state)
{
    AT_UNUSED(state);
    static const char *const edge[] = {"0.0.0.0", "255.255.255.255", "256.0.0.1", "1.2.3.4", "01.2.3.4", "1.02.3.4",
                                       "1.2.3.04", "1.2.3.00", "1.2.3.0", "1.2.3", "1.2.3.4.", ".1.2.3.4", "1..2.3",
                                       "1.2.3.4.5", "1.2.3.1234", "1234.2.3.4", "1.2.3.4 ", " 1.2.3.4", "1.2.3.-4",
                                       "1.2.3.4a", "999.1.1.1", "10.0.0.255", "::1", "::ffff:1.2.3.4", "1.2.3.4:80",
                                       "100.200.255.254", "1.2.3.4\0"};
    for (size_t i = 0; i < AT_ARRAY_LEN(edge); i++) {
        char got[46] = "", want[46] = "";
        size_t len = strlen(edge[i]) + (i == AT_ARRAY_LEN(edge) - 1); /* the last with a NUL inside */
        int g = enr_ip_anonymize(edge[i], len, got), w = ip_anonymize_libc(edge[i], len, want);
        if (g != w || (w == 0 && strcmp(got, want) != 0))
            fail_msg("'%s': %d '%s', libc %d '%s'", edge[i], g, got, w, want);
    }
    /* Random near-IPv4 text: 3 to 5 groups of 0-4 digits (leading zeros and values above
     * 255 included) joined mostly by dots, now and then with a stray byte. */
    static const char other[] = ".:a -\0";
    int valid = 0;
    for (int i = 0; i < 200000; i++) {
        char ip[40];
        size_t len = 0;
        int groups = 3 + (int)(rnd_ip() % 3);
        for (int g = 0; g < groups; g++) {
            if (g > 0)
                ip[len++] = rnd_ip() % 20 ? '.' : other[rnd_ip() % (sizeof(other) - 1)];
            int nd = (int)(rnd_ip() % 5);
            if (rnd_ip() % 3)
                nd = 1 + (int)(rnd_ip() % 3);
            for (int d = 0; d < nd; d++)
                ip[len++] = (char)('0' + (d == 0 && rnd_ip() % 4 ? 1 + rnd_ip() % 2 : rnd_ip() % 10));
        }
        if (rnd_ip() % 30 == 0)
            ip[rnd_ip() % (len + 1)] = other[rnd_ip() % (sizeof(other) - 1)];
        char got[46] = "", want[46] = "";
        int g = enr_ip_anonymize(ip, len, got), w = ip_anonymize_libc(ip, len, want);
        if (g != w || (w == 0 && strcmp(got, want) != 0))
            fail_msg("'%.*s': %d '%s', libc %d '%s'", (int)len, ip, g, got, w, want);
        valid += w == 0;
    }
    print_message("%d of 200000 valid\n", valid);
    assert_true(valid > 10000);
}

static void test_enr_doc_event__fields(void **state)
{
    fx_t *fx = *state;
    at_event_t ev = ev_base();
    enr_verdict_t v;
    at_uuid_parse("0190a000-0000-7000-8000-000000000001", 36, &ev.id);
    assert_int_equal(run(fx, &ev, &v), AT_REJ_NONE);
    const enr_entry_t *ce = enr_cache_get(fx->cache, ENR_CAMPAIGN, "camp-1", 6);
    const enr_entry_t *pe = enr_cache_get(fx->cache, ENR_PUBLISHER, "pub-1", 5);
    bson_t doc = BSON_INITIALIZER;
    enr_doc_event(&doc, &ev, ce->u.campaign, pe->u.publisher, &v);
    char *json = bson_as_relaxed_extended_json(&doc, NULL);
    assert_non_null(strstr(json, "{ \"_id\" : \"0190a000-0000-7000-8000-000000000001\""));
    assert_non_null(strstr(json, "\"advertiser_name\" : \"Acme Shoes\""));
    assert_non_null(strstr(json, "\"campaign_name\" : \"Spring sale\""));
    assert_non_null(strstr(json, "\"publisher_name\" : \"Daily News\""));
    assert_non_null(strstr(json, "\"price_micros\" : 2500"));
    assert_non_null(strstr(json, "\"ip\" : \"203.0.113.0\""));
    assert_non_null(strstr(json, "\"tag\" : \"run:1\""));
    assert_non_null(strstr(json, "\"ua_family\" : \"chrome\""));
    assert_non_null(strstr(json, "\"device\" : \"desktop\""));
    bson_free(json);
    bson_destroy(&doc);
}

static void test_enr_doc_event__same_bytes_as_libbson_appends(void **state)
{
    fx_t *fx = *state;
    const enr_entry_t *ce = enr_cache_get(fx->cache, ENR_CAMPAIGN, "camp-1", 6);
    const enr_entry_t *pe = enr_cache_get(fx->cache, ENR_PUBLISHER, "pub-1", 5);
    static char big[10000];
    memset(big, 'x', sizeof(big));
    for (int i = 0; i < 64; i++) {
        at_event_t ev = ev_base();
        at_uuid_parse("0190a000-0000-7000-8000-000000000001", 36, &ev.id);
        enr_verdict_t v;
        memset(&v, 0, sizeof(v));
        v.price_micros = i % 3 == 0 ? 2500 : i % 3 == 1 ? 0 : -(INT64_C(1) << 40);
        v.ua.family = (enr_ua_family_t)(i % 6);
        v.ua.device = (enr_device_t)(i % 5);
        ev.ts_ms = i % 4 == 0 ? -1 : INT64_C(1795786022123) + i;
        ev.type = (at_event_type_t)(i % 5);
        ev.src = (at_event_src_t)(i % 3);
        /* absent, present, NUL inside, and (i >= 60) larger than the stack buffer */
        if (i % 2)
            ev.cr = S("cr-9");
        if (i % 5 == 1)
            ev.ref = (at_str_t){"a\0b\"c\xc3\xa9", 7};
        if (i % 7 == 3)
            ev.ip = S("2001:db8::1");
        if (i % 11 == 4)
            ev.ip = S("nope");
        if (i >= 60)
            ev.u = (at_str_t){big, (size_t)(2000 + (i - 60) * 2000)};
        bson_t got = BSON_INITIALIZER, want = BSON_INITIALIZER;
        enr_doc_event(&got, &ev, ce->u.campaign, pe->u.publisher, &v);
        enr_doc_event_libbson(&want, &ev, ce->u.campaign, pe->u.publisher, &v);
        assert_int_equal(got.len, want.len);
        assert_memory_equal(bson_get_data(&got), bson_get_data(&want), want.len);
        bson_destroy(&got);
        bson_destroy(&want);
    }
}

/* ---- the direct JSON line against at_json_append_relaxed(enr_doc_event()) ---- */

static uint64_t rng = 0x9E3779B97F4A7C15ULL;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* A random string into @p buf: plain ASCII mostly, sometimes quotes, backslashes, control
 * characters and NUL, valid multi-byte UTF-8, and (rarely) bytes that are not UTF-8. */
static bool rnd_plain_only; /* only printable ASCII without '"' or '\\' */

static size_t rnd_text(char *buf, size_t max)
{
    static const char *const pieces[] = {"a", "Zz", "0", " ", "-_.:", "/?&=", "\"", "\\", "\n", "\t", "\x01",
                                         "\x1f", "\x7f", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "<>"};
    static const char *const bad[] = {"\xff", "\xc0\xaf", "\xed\xa0\x80", "\xe2\x82", "\xf4\x90\x80\x80"};
    size_t n = 0, want = (size_t)(rnd() % 24);
    if (rnd() % 50 == 0)
        want = 3000 + rnd() % 3000; /* longer than enr_doc_event()'s stack buffer */
    while (n < want && n + 8 < max) {
        uint64_t r = rnd() % 100;
        const char *p;
        size_t len;
        if (r < 60) {
            buf[n++] = (char)('a' + rnd() % 26);
            continue;
        }
        if (rnd_plain_only) {
            static const char punct[] = " !#$%&'()*+,-./:;<=>?@[]^_`{|}~0123456789";
            buf[n++] = punct[rnd() % (sizeof(punct) - 1)];
            continue;
        }
        if (r < 99) {
            p = pieces[rnd() % AT_ARRAY_LEN(pieces)];
            len = strlen(p);
        } else if (rnd() % 2) {
            p = bad[rnd() % AT_ARRAY_LEN(bad)];
            len = strlen(p);
        } else {
            p = "\0";
            len = 1;
        }
        memcpy(buf + n, p, len);
        n += len;
    }
    return n;
}

static void test_enr_doc_event_json__same_bytes_as_bson_route(void **state)
{
    AT_UNUSED(state);
    static char bufs[20][8192];
    static const char *const ips[] = {"203.0.113.77", "10.0.0.1", "2001:db8::1", "::ffff:1.2.3.4", "nope", "1.2.3",
                                      "01.2.3.4", "256.1.1.1", "fe80::1%eth0", ""};
    static const int64_t times[] = {0, 1, 999, 1000, INT64_C(1795786022123), INT64_C(1795786022000),
                                    AT_JSON_DATE_MAX, AT_JSON_DATE_MAX + 1, -1, INT64_MIN, INT64_MAX};
    char *line = NULL, *ref = NULL;
    size_t lcap = 0, rcap = 0;
    int plain_cases = 0;
    for (int i = 0; i < 20000; i++) {
        at_event_t ev;
        memset(&ev, 0, sizeof(ev));
        rnd_plain_only = i % 3 == 0;
        for (int b = 0; b < 16; b++)
            ev.id.b[b] = (uint8_t)rnd();
        ev.type = (at_event_type_t)(rnd() % 5);
        ev.src = (at_event_src_t)(rnd() % 3);
        ev.ts_ms = rnd() % 4 ? INT64_C(1700000000000) + (int64_t)(rnd() % INT64_C(100000000000))
                             : times[rnd() % AT_ARRAY_LEN(times)];
        at_str_t *fields[] = {&ev.c, &ev.cr, &ev.p, &ev.pl, &ev.uid, &ev.u, &ev.ref, &ev.ua, &ev.d, &ev.tag};
        for (size_t k = 0; k < AT_ARRAY_LEN(fields); k++) {
            if (rnd() % 3 == 0)
                continue; /* absent */
            size_t n = rnd_text(bufs[k], sizeof(bufs[k]));
            *fields[k] = (at_str_t){bufs[k], n};
        }
        const char *ip = ips[rnd() % AT_ARRAY_LEN(ips)];
        ev.ip = (at_str_t){ip, strlen(ip)};
        rnd_plain_only = false; /* campaign and publisher names: anything */
        char adv[64], advn[64], name[64], pname[64];
        size_t n;
        n = rnd_text(bufs[10], 60), memcpy(adv, bufs[10], n), adv[n] = '\0';
        n = rnd_text(bufs[11], 60), memcpy(advn, bufs[11], n), advn[n] = '\0';
        n = rnd_text(bufs[12], 60), memcpy(name, bufs[12], n), name[n] = '\0';
        n = rnd_text(bufs[13], 60), memcpy(pname, bufs[13], n), pname[n] = '\0';
        enr_campaign_t cp = {.advertiser = adv, .advertiser_name = advn, .name = name};
        enr_publisher_t pb = {.name = pname};
        enr_verdict_t v;
        memset(&v, 0, sizeof(v));
        v.price_micros = rnd() % 5 == 0 ? -(int64_t)(rnd() % INT64_C(1000000000000)) : (int64_t)(rnd() % 100000);
        if (rnd() % 100 == 0)
            v.price_micros = rnd() % 2 ? INT64_MIN : INT64_MAX;
        v.ua.family = (enr_ua_family_t)(rnd() % 6);
        v.ua.device = (enr_device_t)(rnd() % 5);

        bson_t doc = BSON_INITIALIZER;
        enr_doc_event(&doc, &ev, &cp, &pb, &v);
        size_t rused = 0, lused = 0;
        int want = at_json_append_relaxed(&doc, &ref, &rcap, &rused);
        bson_destroy(&doc);
        /* Something already in the buffer stays as it is. */
        size_t pre = (size_t)(rnd() % 3);
        if (pre > 0) {
            if (lcap < pre) {
                lcap = 16;
                line = realloc(line, lcap);
            }
            memcpy(line, "xyz", pre);
            lused = pre;
        }
        /* plain as the fast reader would say it: every envelope string printable ASCII
         * without '"' or '\\' (then also the copy-through path is compared) */
        bool is_plain = true;
        for (size_t k = 0; k < AT_ARRAY_LEN(fields); k++)
            for (size_t j = 0; j < fields[k]->len && is_plain; j++) {
                unsigned char ch = (unsigned char)fields[k]->p[j];
                is_plain = ch >= 0x20 && ch <= 0x7e && ch != '"' && ch != '\\';
            }
        for (int pass = 0; pass < (is_plain ? 2 : 1); pass++) {
            size_t start = lused;
            int got = enr_doc_event_json(&line, &lcap, &lused, &ev, pass == 1, &cp, &pb, &v);
            assert_int_equal(got, want);
            if (want != 0) {
                assert_int_equal(lused, start);
                continue;
            }
            if (lused - start != rused || memcmp(line + start, ref, rused) != 0)
                fail_msg("case %d (plain %d) differs:\n  got:  %.*s\n  want: %.*s", i, pass, (int)(lused - start),
                         line + start, (int)rused, ref);
            plain_cases += pass;
            lused = start;
        }
        if (pre > 0)
            assert_memory_equal(line, "xyz", pre);
    }
    print_message("%d of 20000 compared through the plain path too\n", plain_cases);
    assert_true(plain_cases > 1000);
    free(line);
    free(ref);
}

static void test_enr_doc_rejected__fields(void **state)
{
    AT_UNUSED(state);
    at_event_t ev = ev_base();
    at_uuid_parse("0190a000-0000-7000-8000-000000000002", 36, &ev.id);
    bson_t doc = BSON_INITIALIZER;
    assert_int_equal(enr_doc_rejected(&doc, "0190a000-0000-7000-8000-000000000002:bot", &ev, AT_REJ_BOT,
                                      "ua: matches a bot pattern", NULL, 0),
                     0);
    char *json = bson_as_relaxed_extended_json(&doc, NULL);
    assert_non_null(strstr(json, "{ \"_id\" : \"0190a000-0000-7000-8000-000000000002:bot\""));
    assert_non_null(strstr(json, "\"reason\" : \"bot\""));
    assert_non_null(strstr(json, "\"ip\" : \"203.0.113.0\""));
    assert_non_null(strstr(json, "\"tag\" : \"run:1\""));
    bson_free(json);
    bson_destroy(&doc);
    /* Without an event: only the raw input. */
    bson_init(&doc);
    assert_int_equal(enr_doc_rejected(&doc, "raw:t:0:5", NULL, AT_REJ_MALFORMED_JSON, "not JSON", "\xff{", 2), 0);
    json = bson_as_relaxed_extended_json(&doc, NULL);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"reason\" : \"malformed_json\""));
    bson_free(json);
    bson_destroy(&doc);
}


/* Conversions: only an unknown campaign (and a bot, except for a postback) rejects them;
 * flight dates, pause, publisher and exhaustion do not. */
static void test_enr_validate__conversion_rules(void **state)
{
    fx_t *fx = *state;
    at_event_t ev = ev_base();
    enr_verdict_t v;
    ev.type = AT_EV_CONV;
    ev.p = (at_str_t){NULL, 0};
    ev.ts_ms = INT64_C(1800000000000); /* 2027-01-15: after the flight */
    assert_int_equal(run(fx, &ev, &v), AT_REJ_NONE);
    assert_false(v.chargeable);
    ev.ua = S("Googlebot/2.1 (+http://www.google.com/bot.html)");
    assert_int_equal(run(fx, &ev, &v), AT_REJ_BOT);
    ev.src = AT_SRC_POSTBACK;
    assert_int_equal(run(fx, &ev, &v), AT_REJ_NONE);
    put_campaign(fx, 20, "\"status\":\"active\"", "\"status\":\"paused\"");
    assert_int_equal(run(fx, &ev, &v), AT_REJ_NONE);
    ev.c = S("camp-x");
    assert_int_equal(run(fx, &ev, &v), AT_REJ_UNKNOWN_CAMPAIGN);
}

static void test_enr_conversion_apply__attribution_and_payout(void **state)
{
    fx_t *fx = *state;
    put_campaign(fx, 21, "\"version\":17", "\"payout_micros\":700000,\"lookback_days\":7,\"version\":21");
    const enr_entry_t *ce = enr_cache_get(fx->cache, ENR_CAMPAIGN, "camp-1", 6);
    assert_int_equal(ce->u.campaign->lookback_days, 7);
    assert_int_equal(ce->u.campaign->payout_micros, 700000);

    enr_attrib_op_t op = {0};
    op.result = ENR_ATTR_ATTRIBUTED;
    snprintf(op.click_rec, sizeof(op.click_rec), "1790000000000|camp-1|cr-9|pub-1|top");
    op.click_ts_ms = INT64_C(1790000000000);
    op.click_c = (at_str_t){op.click_rec + 14, 6};
    op.click_cr = (at_str_t){op.click_rec + 21, 4};
    op.click_p = (at_str_t){op.click_rec + 26, 5};
    op.click_pl = (at_str_t){op.click_rec + 32, 3};

    at_event_t ev = ev_base();
    ev.type = AT_EV_CONV;
    ev.p = (at_str_t){NULL, 0};
    ev.clid = S("0190a000-0000-7000-8000-0000000000c1.camp-1");
    ev.order = S("o-1");
    enr_verdict_t v;
    assert_int_equal(run(fx, &ev, &v), AT_REJ_NONE);
    /* Attributed, no payout of its own: the campaign's. */
    assert_int_equal(enr_conversion_apply(&ev, ce->u.campaign, &op, &v), AT_REJ_NONE);
    assert_int_equal(v.attribution, ENR_ATTR_ATTRIBUTED);
    assert_int_equal(v.payout_micros, 700000);
    assert_true(ev.cr.len == 4 && memcmp(ev.cr.p, "cr-9", 4) == 0);
    assert_true(ev.p.len == 5 && memcmp(ev.p.p, "pub-1", 5) == 0);
    assert_true(ev.pl.len == 3 && memcmp(ev.pl.p, "top", 3) == 0);

    /* Its own payout wins. The document carries the attribution fields. */
    ev.payout_micros = S("1250000");
    assert_int_equal(enr_conversion_apply(&ev, ce->u.campaign, &op, &v), AT_REJ_NONE);
    assert_int_equal(v.payout_micros, 1250000);
    at_uuid_parse("0190a000-0000-7000-8000-000000000001", 36, &ev.id);
    bson_t doc = BSON_INITIALIZER;
    enr_doc_event(&doc, &ev, ce->u.campaign, NULL, &v);
    char *json = bson_as_relaxed_extended_json(&doc, NULL);
    assert_non_null(strstr(json, "\"e\" : \"conv\""));
    assert_non_null(strstr(json, "\"p\" : \"pub-1\""));
    assert_non_null(strstr(json, "\"clid\" : \"0190a000-0000-7000-8000-0000000000c1.camp-1\""));
    assert_non_null(strstr(json, "\"order\" : \"o-1\""));
    assert_non_null(strstr(json, "\"attribution\" : \"attributed\""));
    assert_non_null(strstr(json, "\"payout_micros\" : 1250000"));
    assert_non_null(strstr(json, "\"click_ts\" : { \"$date\""));
    assert_null(strstr(json, "publisher_name"));
    /* The JSON line the file sink writes is the same document. */
    char *line = NULL;
    size_t cap = 0, used = 0;
    assert_int_equal(enr_doc_event_json(&line, &cap, &used, &ev, false, ce->u.campaign, NULL, &v), 0);
    assert_int_equal(used, strlen(json));
    assert_memory_equal(line, json, used);
    free(line);
    bson_free(json);
    bson_destroy(&doc);

    /* Unattributed: kept with its reason, no payout, own dimensions. */
    at_event_t ev2 = ev_base();
    ev2.type = AT_EV_CONV;
    ev2.p = (at_str_t){NULL, 0};
    ev2.payout_micros = S("99");
    op.result = ENR_ATTR_CLICK_EXPIRED;
    assert_int_equal(enr_conversion_apply(&ev2, ce->u.campaign, &op, &v), AT_REJ_NONE);
    assert_int_equal(v.attribution, ENR_ATTR_CLICK_EXPIRED);
    assert_int_equal(v.payout_micros, 0);
    assert_int_equal(ev2.p.len, 0);

    /* A duplicate order is rejected, naming the order. */
    ev2.order = S("o-1");
    op.result = ENR_ATTR_DUPLICATE;
    assert_int_equal(enr_conversion_apply(&ev2, ce->u.campaign, &op, &v), AT_REJ_DUPLICATE_ORDER);
    assert_non_null(strstr(v.detail, "order: 'o-1'"));
    assert_string_equal(at_reject_str(AT_REJ_DUPLICATE_ORDER), "duplicate_order");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_enr_validate__valid_cpm_impression, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_validate__unknown_campaign, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_validate__deleted_campaign, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_validate__paused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_validate__flight_dates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_validate__unknown_publisher, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_validate__publisher_not_allowed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_validate__bot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_validate__exhausted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_validate__order_of_checks, setup, teardown),
        cmocka_unit_test(test_enr_parse_error_reason__mapping),
        cmocka_unit_test(test_enr_price_micros__rules),
        cmocka_unit_test(test_enr_ip_anonymize__v4_v6),
        cmocka_unit_test(test_enr_ip_anonymize__same_as_libc),
        cmocka_unit_test_setup_teardown(test_enr_doc_event__fields, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_doc_event__same_bytes_as_libbson_appends, setup, teardown),
        cmocka_unit_test(test_enr_doc_event_json__same_bytes_as_bson_route),
        cmocka_unit_test(test_enr_doc_rejected__fields),
        cmocka_unit_test_setup_teardown(test_enr_validate__conversion_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_enr_conversion_apply__attribution_and_payout, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
