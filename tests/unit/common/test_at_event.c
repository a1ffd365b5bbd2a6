/* Unit tests for common/at_event.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <bson/bson.h>
#include <stdlib.h>
#include <time.h>

#include "at_event.h"

/* ---- helpers ---------------------------------------------------------------------------- */

/* A string of @p n copies of @p ch in a static buffer (max 4096). */
static at_str_t rep(char ch, size_t n)
{
    static char bufs[4][4096];
    static int next;
    char *b = bufs[next++ % 4];
    assert_true(n <= sizeof(bufs[0]));
    memset(b, ch, n);
    return (at_str_t){b, n};
}

static at_str_t S(const char *s)
{
    return (at_str_t){s, strlen(s)};
}

/* A valid minimal event: e=imp, c=camp-1. */
static at_event_t base_event(void)
{
    at_event_t ev;
    memset(&ev, 0, sizeof(ev));
    ev.type = AT_EV_IMP;
    ev.src = AT_SRC_PIXEL;
    ev.c = S("camp-1");
    ev.ts_ms = INT64_C(1763731622123); /* 2025-11-21T13:27:02.123Z */
    at_uuid7_gen_t g;
    memset(&g, 0, sizeof(g));
    at_uuid7_next(&g, (uint64_t)ev.ts_ms, &ev.id);
    return ev;
}

/* Parses @p json with libbson; fails the test when it is not valid JSON. */
static bson_t *must_parse(const char *json, size_t len)
{
    bson_error_t e;
    bson_t *b = bson_new_from_json((const uint8_t *)json, (ssize_t)len, &e);
    if (b == NULL)
        fail_msg("not valid JSON (%s): %s", e.message, json);
    return b;
}

/* The string value of @p key in @p b, or NULL. */
static const char *get_str(const bson_t *b, const char *key, uint32_t *len)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, b, key) || !BSON_ITER_HOLDS_UTF8(&it))
        return NULL;
    return bson_iter_utf8(&it, len);
}

static bool str_eq(at_str_t a, at_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

/* ---- name tables ------------------------------------------------------------------------ */

static void test_at_event_type_str__names(void **state)
{
    (void)state;
    assert_string_equal(at_event_type_str(AT_EV_IMP), "imp");
    assert_string_equal(at_event_type_str(AT_EV_VIEW), "view");
    assert_string_equal(at_event_type_str(AT_EV_CLICK), "click");
    assert_string_equal(at_event_type_str(AT_EV_CONV), "conv");
    assert_string_equal(at_event_type_str(AT_EV_NONE), "");
    assert_string_equal(at_event_type_str((at_event_type_t)99), "");
}

static void test_at_event_type_parse__known_and_unknown(void **state)
{
    (void)state;
    assert_int_equal(at_event_type_parse("imp", 3), AT_EV_IMP);
    assert_int_equal(at_event_type_parse("view", 4), AT_EV_VIEW);
    assert_int_equal(at_event_type_parse("click", 5), AT_EV_CLICK);
    assert_int_equal(at_event_type_parse("conv", 4), AT_EV_CONV);
    assert_int_equal(at_event_type_parse("impx", 3), AT_EV_IMP); /* length-bounded */
    assert_int_equal(at_event_type_parse("im", 2), AT_EV_NONE);
    assert_int_equal(at_event_type_parse("imps", 4), AT_EV_NONE);
    assert_int_equal(at_event_type_parse("IMP", 3), AT_EV_NONE);
    assert_int_equal(at_event_type_parse("", 0), AT_EV_NONE);
    assert_int_equal(at_event_type_parse(NULL, 0), AT_EV_NONE);
    assert_int_equal(at_event_type_parse("imp\0", 4), AT_EV_NONE);
}

static void test_at_event_src_str__names(void **state)
{
    (void)state;
    assert_string_equal(at_event_src_str(AT_SRC_PIXEL), "pixel");
    assert_string_equal(at_event_src_str(AT_SRC_CLICK), "click");
    assert_string_equal(at_event_src_str(AT_SRC_BEACON), "beacon");
    assert_string_equal(at_event_src_str((at_event_src_t)7), "");
}

static void test_at_reject_str__stable_codes(void **state)
{
    (void)state;
    assert_string_equal(at_reject_str(AT_REJ_NONE), "none");
    assert_string_equal(at_reject_str(AT_REJ_MISSING_FIELD), "missing_field");
    assert_string_equal(at_reject_str(AT_REJ_INVALID_FIELD), "invalid_field");
    assert_string_equal(at_reject_str(AT_REJ_FIELD_TOO_LONG), "field_too_long");
    assert_string_equal(at_reject_str(AT_REJ_BAD_ENCODING), "bad_encoding");
    assert_string_equal(at_reject_str(AT_REJ_UNKNOWN_EVENT_TYPE), "unknown_event_type");
    assert_string_equal(at_reject_str(AT_REJ_MALFORMED_JSON), "malformed_json");
    assert_string_equal(at_reject_str(AT_REJ_MALFORMED_ENVELOPE), "malformed_envelope");
    assert_string_equal(at_reject_str(AT_REJ_UNKNOWN_CAMPAIGN), "unknown_campaign");
    assert_string_equal(at_reject_str(AT_REJ_CAMPAIGN_INACTIVE), "campaign_inactive");
    assert_string_equal(at_reject_str(AT_REJ_UNKNOWN_PUBLISHER), "unknown_publisher");
    assert_string_equal(at_reject_str(AT_REJ_PUBLISHER_NOT_ALLOWED), "publisher_not_allowed");
    assert_string_equal(at_reject_str(AT_REJ_DUPLICATE), "duplicate_event");
    assert_string_equal(at_reject_str(AT_REJ_BOT), "bot");
    assert_string_equal(at_reject_str(AT_REJ_BUDGET_EXHAUSTED), "budget_exhausted");
    assert_string_equal(at_reject_str(AT_REJ__COUNT), "unknown");
    for (int a = 0; a < AT_REJ__COUNT; a++) {
        assert_true(strlen(at_reject_str((at_reject_t)a)) > 0);
        for (int b = a + 1; b < AT_REJ__COUNT; b++)
            assert_string_not_equal(at_reject_str((at_reject_t)a), at_reject_str((at_reject_t)b));
    }
}

/* ---- at_event_check ------------------------------------------------------------------- */

static void test_at_event_check__valid_minimal(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    at_err_t err = {AT_OK, ""};
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
}

static void test_at_event_check__valid_full(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    at_err_t err = {AT_OK, ""};
    ev.cr = S("cr-9");
    ev.p = S("pub.3:x_y-Z");
    ev.pl = S("slot-top");
    ev.uid = S("u-42 ~!@#$%^&*()");
    ev.u = S("https://example.com/p\xc3\xa4ge?q=\xe2\x82\xac&x=\xf0\x9f\x98\x80");
    ev.ref = S("https://ref.example/");
    ev.ua = S("Mozilla/5.0 (X11; Linux x86_64)");
    ev.ip = S("2001:db8::ffff:203.0.113.0");
    ev.d = S("https://dest.example/landing");
    ev.tag = S("run-1:17 \"quoted\"");
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
    assert_int_equal(ev.ua.len, strlen("Mozilla/5.0 (X11; Linux x86_64)"));
}

static void test_at_event_check__missing_c(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    at_err_t err = {AT_OK, ""};
    ev.c = (at_str_t){NULL, 0};
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_MISSING_FIELD);
    assert_non_null(strstr(err.msg, "c: missing"));
    ev.c = S(""); /* present but empty counts as missing */
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_MISSING_FIELD);
}

static void test_at_event_check_e__missing_e(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    at_err_t err = {AT_OK, ""};
    ev.type = AT_EV_NONE;
    assert_int_equal(at_event_check_e(&ev, (at_str_t){NULL, 0}, &err), AT_REJ_MISSING_FIELD);
    assert_memory_equal(err.msg, "e: missing", 10);
    assert_int_equal(at_event_check_e(&ev, S(""), &err), AT_REJ_MISSING_FIELD);
}

static void test_at_event_check_e__unknown_e_is_quoted(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    at_err_t err = {AT_OK, ""};
    ev.type = AT_EV_NONE;
    assert_int_equal(at_event_check_e(&ev, S("impression"), &err), AT_REJ_UNKNOWN_EVENT_TYPE);
    assert_non_null(strstr(err.msg, "e: unknown event type \"impression\""));
    /* hostile text is neutralised and cut */
    assert_int_equal(at_event_check_e(&ev, S("a\"b\\c\n"), &err), AT_REJ_UNKNOWN_EVENT_TYPE);
    assert_non_null(strstr(err.msg, "\"a?b?c?\""));
    assert_int_equal(at_event_check_e(&ev, rep('x', 100), &err), AT_REJ_UNKNOWN_EVENT_TYPE);
    assert_non_null(strstr(err.msg, "...\""));
}

static void test_at_event_check__type_none_is_unknown_type(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    at_err_t err = {AT_OK, ""};
    ev.type = AT_EV_NONE;
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_UNKNOWN_EVENT_TYPE);
    assert_memory_equal(err.msg, "e: ", 3);
    ev.type = (at_event_type_t)42;
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_UNKNOWN_EVENT_TYPE);
}

/* c, cr, p, pl share one rule: 1-64 bytes of [A-Za-z0-9._:-]. */
static void test_at_event_check__id_fields_length_boundary(void **state)
{
    (void)state;
    static const char *const names[] = {"c", "cr", "p", "pl"};
    for (int f = 0; f < 4; f++) {
        at_event_t ev = base_event();
        at_err_t err = {AT_OK, ""};
        at_str_t *fld = f == 0 ? &ev.c : f == 1 ? &ev.cr : f == 2 ? &ev.p : &ev.pl;
        *fld = rep('a', 64);
        assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
        *fld = rep('a', 65);
        assert_int_equal(at_event_check(&ev, &err), AT_REJ_FIELD_TOO_LONG);
        char want[16];
        snprintf(want, sizeof(want), "%s: 65 bytes", names[f]);
        assert_memory_equal(err.msg, want, strlen(want));
    }
}

static void test_at_event_check__id_fields_charset(void **state)
{
    (void)state;
    static const char *const ok[] = {"AZaz09", "a.b", "a_b", "a:b", "a-b", "-", "..."};
    static const char *const bad[] = {"a b", "a/b", "a%20", "a+b", "a\xc3\xa9", "a\"b", "a\nb", "a;b", "a#b"};
    for (size_t i = 0; i < AT_ARRAY_LEN(ok); i++) {
        at_event_t ev = base_event();
        at_err_t err = {AT_OK, ""};
        ev.cr = S(ok[i]);
        assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
    }
    for (size_t i = 0; i < AT_ARRAY_LEN(bad); i++) {
        at_event_t ev = base_event();
        at_err_t err = {AT_OK, ""};
        ev.pl = S(bad[i]);
        assert_int_equal(at_event_check(&ev, &err), AT_REJ_INVALID_FIELD);
        assert_memory_equal(err.msg, "pl: invalid character at byte 1", 31);
    }
    at_event_t ev = base_event();
    at_err_t err = {AT_OK, ""};
    ev.c = (at_str_t){"ab\0c", 4};
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_INVALID_FIELD);
    assert_memory_equal(err.msg, "c: invalid character at byte 2", 30);
}

static void test_at_event_check__uid_rules(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    at_err_t err = {AT_OK, ""};
    ev.uid = rep('u', 128);
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
    ev.uid = rep('u', 129);
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_FIELD_TOO_LONG);
    assert_memory_equal(err.msg, "uid: 129 bytes", 14);
    static const char *const bad[] = {"a\"", "a'", "a\\", "a\t", "a\x7f", "a\xc3\xa9"};
    for (size_t i = 0; i < AT_ARRAY_LEN(bad); i++) {
        ev.uid = S(bad[i]);
        assert_int_equal(at_event_check(&ev, &err), AT_REJ_INVALID_FIELD);
        assert_memory_equal(err.msg, "uid: invalid character at byte 1", 32);
    }
}

static void test_at_event_check__url_fields_length_boundary(void **state)
{
    (void)state;
    static const char *const names[] = {"u", "ref", "d"};
    for (int f = 0; f < 3; f++) {
        at_event_t ev = base_event();
        at_err_t err = {AT_OK, ""};
        at_str_t *fld = f == 0 ? &ev.u : f == 1 ? &ev.ref : &ev.d;
        *fld = rep('h', 2048);
        assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
        *fld = rep('h', 2049);
        assert_int_equal(at_event_check(&ev, &err), AT_REJ_FIELD_TOO_LONG);
        char want[24];
        snprintf(want, sizeof(want), "%s: 2049 bytes", names[f]);
        assert_memory_equal(err.msg, want, strlen(want));
    }
}

static void test_at_event_check__url_bad_utf8(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        size_t len;
        size_t at;
    } bad[] = {
        {"https://x/\xff", 11, 10},             /* never valid */
        {"https://x/\xc3", 11, 10},             /* truncated sequence */
        {"https://x/\xc0\xaf", 12, 10},         /* overlong '/' */
        {"https://x/\xe0\x80\xaf", 13, 10},     /* overlong 3-byte '/' */
        {"https://x/\xf0\x80\x80\xaf", 14, 10}, /* overlong 4-byte '/' */
        {"https://x/\xed\xa0\x80", 13, 10},     /* surrogate */
        {"https://x/\xf4\x90\x80\x80", 14, 10}, /* above U+10FFFF */
        {"https://x/\x80", 11, 10},             /* stray continuation */
        {"https://x/\0y", 12, 10},              /* NUL */
    };
    for (size_t i = 0; i < AT_ARRAY_LEN(bad); i++) {
        at_event_t ev = base_event();
        at_err_t err = {AT_OK, ""};
        ev.ref = (at_str_t){bad[i].s, bad[i].len};
        assert_int_equal(at_event_check(&ev, &err), AT_REJ_BAD_ENCODING);
        char want[40];
        snprintf(want, sizeof(want), "ref: invalid UTF-8 or NUL at byte %zu", bad[i].at);
        assert_memory_equal(err.msg, want, strlen(want));
    }
    /* the largest valid code points of each length pass */
    at_event_t ev = base_event();
    at_err_t err = {AT_OK, ""};
    ev.d = S("\x7f\xdf\xbf\xef\xbf\xbf\xf4\x8f\xbf\xbf\xed\x9f\xbf\xee\x80\x80");
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
}

static void test_at_event_check__tag_rules(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    at_err_t err = {AT_OK, ""};
    ev.tag = rep('t', 128);
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
    ev.tag = rep('t', 129);
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_FIELD_TOO_LONG);
    assert_memory_equal(err.msg, "tag: 129 bytes", 14);
    ev.tag = S("run\x01");
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_INVALID_FIELD);
    assert_memory_equal(err.msg, "tag: invalid character at byte 3", 32);
}

static void test_at_event_check__ip_rules(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    at_err_t err = {AT_OK, ""};
    ev.ip = S("203.0.113.7");
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
    ev.ip = rep('1', 45);
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
    ev.ip = rep('1', 46);
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_FIELD_TOO_LONG);
    assert_memory_equal(err.msg, "ip: 46 bytes", 12);
    ev.ip = S("1.2.3.4 x");
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_INVALID_FIELD);
}

static void test_at_event_check__ua_truncated_not_rejected(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    at_err_t err = {AT_OK, ""};
    ev.ua = rep('M', 512);
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
    assert_int_equal(ev.ua.len, 512);
    ev.ua = rep('M', 600);
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
    assert_int_equal(ev.ua.len, 512);
}

static void test_at_event_check__ua_truncated_at_char_boundary(void **state)
{
    (void)state;
    char ua[520];
    memset(ua, 'M', 511);
    memcpy(ua + 511, "\xc3\xa9zzzzz", 7); /* 2-byte char straddles the limit */
    at_event_t ev = base_event();
    at_err_t err = {AT_OK, ""};
    ev.ua = (at_str_t){ua, 518};
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
    assert_int_equal(ev.ua.len, 511);
    ev.ua = (at_str_t){ua + 1, 512}; /* now it fits exactly */
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
    assert_int_equal(ev.ua.len, 512);
}

static void test_at_event_check__ua_invalid_utf8_truncated(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    at_err_t err = {AT_OK, ""};
    ev.ua = S("Mozilla\xff/5.0");
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
    assert_int_equal(ev.ua.len, 7);
    ev.ua = (at_str_t){"Bot\0x", 5};
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
    assert_int_equal(ev.ua.len, 3);
    /* truncation also happens on events rejected for another reason */
    ev.c = (at_str_t){NULL, 0};
    ev.ua = rep('M', 700);
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_MISSING_FIELD);
    assert_int_equal(ev.ua.len, 512);
}

/* ---- serialisation ------------------------------------------------------------------ */

static void test_at_event_to_json__field_order_and_omission(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    ev.cr = S("cr-9");
    ev.uid = S("u-42");
    ev.u = S("https://a/");
    ev.ua = S("UA");
    ev.ip = S("203.0.113.0");
    ev.tag = S("run-1:17");
    size_t len = 0;
    char *json = at_event_to_json(&ev, &len);
    assert_non_null(json);
    assert_int_equal(len, strlen(json));
    static const char *const order[] = {
        "\"v\" : 1",       "\"id\" : ",           "\"ts\" : { \"$date\" : \"2025-11-21T13:27:02.123Z\" }",
        "\"e\" : \"imp\"", "\"src\" : \"pixel\"", "\"c\" : \"camp-1\"",
        "\"cr\" : ",       "\"uid\" : ",          "\"u\" : ",
        "\"ua\" : ",       "\"ip\" : ",           "\"tag\" : "};
    const char *prev = json;
    for (size_t i = 0; i < AT_ARRAY_LEN(order); i++) {
        const char *at = strstr(json, order[i]);
        if (at == NULL || at < prev)
            fail_msg("%s missing or out of order in %s", order[i], json);
        prev = at;
    }
    /* empty optional fields are omitted */
    assert_null(strstr(json, "\"p\""));
    assert_null(strstr(json, "\"pl\""));
    assert_null(strstr(json, "\"ref\""));
    assert_null(strstr(json, "\"d\""));
    bson_free(json);
}

static void test_at_event_to_json__roundtrip(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    ev.type = AT_EV_CLICK;
    ev.src = AT_SRC_CLICK;
    ev.cr = S("cr-9");
    ev.p = S("pub-3");
    ev.pl = S("slot-top");
    ev.uid = S("u-42");
    ev.u = S("https://example.com/\xe2\x82\xac?a=\"b\"\\");
    ev.ref = S("https://ref/");
    ev.ua = S("Mozilla/5.0");
    ev.ip = S("::1");
    ev.d = S("https://dest/");
    ev.tag = S("run-1:17");
    at_err_t err = {AT_OK, ""};
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);

    size_t len = 0;
    char *json = at_event_to_json(&ev, &len);
    assert_non_null(json);
    at_event_parsed_t pe;
    assert_int_equal(at_event_parse_json(json, len, &pe, &err), 0);
    assert_int_equal(pe.v, 1);
    assert_memory_equal(pe.ev.id.b, ev.id.b, 16);
    assert_int_equal(pe.ev.ts_ms, ev.ts_ms);
    assert_int_equal(pe.ev.type, AT_EV_CLICK);
    assert_int_equal(pe.ev.src, AT_SRC_CLICK);
    assert_true(str_eq(pe.ev.c, ev.c));
    assert_true(str_eq(pe.ev.cr, ev.cr));
    assert_true(str_eq(pe.ev.p, ev.p));
    assert_true(str_eq(pe.ev.pl, ev.pl));
    assert_true(str_eq(pe.ev.uid, ev.uid));
    assert_true(str_eq(pe.ev.u, ev.u));
    assert_true(str_eq(pe.ev.ref, ev.ref));
    assert_true(str_eq(pe.ev.ua, ev.ua));
    assert_true(str_eq(pe.ev.ip, ev.ip));
    assert_true(str_eq(pe.ev.d, ev.d));
    assert_true(str_eq(pe.ev.tag, ev.tag));
    at_event_parsed_free(&pe);
    assert_null(pe.doc);
    bson_free(json);
}

static void test_at_event_to_json__minimal_roundtrip_keeps_absent_fields_absent(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    size_t len = 0;
    char *json = at_event_to_json(&ev, &len);
    assert_non_null(json);
    at_event_parsed_t pe;
    at_err_t err = {AT_OK, ""};
    assert_int_equal(at_event_parse_json(json, len, &pe, &err), 0);
    assert_null(pe.ev.cr.p);
    assert_null(pe.ev.tag.p);
    assert_int_equal(pe.ev.src, AT_SRC_PIXEL);
    at_event_parsed_free(&pe);
    bson_free(json);
}

static void test_at_event_to_json__refuses_unwritable_input(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    size_t len = 123;
    ev.ts_ms = INT64_C(253402300800000); /* year 10000: libbson could not read it back */
    assert_null(at_event_to_json(&ev, &len));
    ev.ts_ms = -1;
    assert_null(at_event_to_json(&ev, &len));
    ev = base_event();
    ev.u = S("\xff"); /* unchecked event with invalid UTF-8 */
    assert_null(at_event_to_json(&ev, &len));
    assert_int_equal(len, 123);
    assert_null(at_event_to_json(NULL, &len));
}

static void test_at_event_rejected_to_json__has_reason_detail_raw(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    ev.c = rep('c', 65);
    ev.uid = S("u-1");
    const char raw[] = "e=imp&c=ccccc&uid=u-1";
    size_t len = 0;
    char *json = at_event_rejected_to_json(&ev, AT_REJ_FIELD_TOO_LONG, "c: 65 bytes, longer than 64", raw,
                                           sizeof(raw) - 1, &len);
    assert_non_null(json);
    assert_int_equal(len, strlen(json));
    bson_t *b = must_parse(json, len);
    uint32_t n;
    assert_string_equal(get_str(b, "reason", &n), "field_too_long");
    assert_string_equal(get_str(b, "detail", &n), "c: 65 bytes, longer than 64");
    assert_string_equal(get_str(b, "raw", &n), raw);
    assert_string_equal(get_str(b, "uid", &n), "u-1");
    assert_string_equal(get_str(b, "e", &n), "imp");
    assert_int_equal(strlen(get_str(b, "c", &n)), 65);
    assert_non_null(get_str(b, "id", &n));
    bson_destroy(b);
    bson_free(json);
}

static void test_at_event_rejected_to_json__null_event(void **state)
{
    (void)state;
    size_t len = 0;
    char *json = at_event_rejected_to_json(NULL, AT_REJ_MALFORMED_JSON, NULL, NULL, 0, &len);
    assert_non_null(json);
    bson_t *b = must_parse(json, len);
    uint32_t n;
    assert_string_equal(get_str(b, "reason", &n), "malformed_json");
    assert_string_equal(get_str(b, "detail", &n), "");
    assert_string_equal(get_str(b, "raw", &n), "");
    assert_null(get_str(b, "id", &n));
    bson_destroy(b);
    bson_free(json);
}

static void test_at_event_rejected_to_json__binary_raw_stays_valid_json(void **state)
{
    (void)state;
    char raw[256];
    for (int i = 0; i < 256; i++)
        raw[i] = (char)i;
    at_event_t ev = base_event();
    ev.u = (at_str_t){raw + 128, 16}; /* bad bytes in a field too */
    ev.type = AT_EV_NONE;
    size_t len = 0;
    char *json = at_event_rejected_to_json(&ev, AT_REJ_BAD_ENCODING, "u: \xff bad", raw, sizeof(raw), &len);
    assert_non_null(json);
    bson_t *b = must_parse(json, len);
    uint32_t n;
    const char *r = get_str(b, "raw", &n);
    assert_non_null(r);
    /* NUL and every byte >= 0x80 (none forms valid UTF-8 in this order) became U+FFFD */
    assert_int_equal(n, 127 + 129 * 3);
    assert_memory_equal(r, "\xef\xbf\xbd\x01\x02", 5);
    assert_memory_equal(r + 127 * 1 + 3, "\xef\xbf\xbd\xef\xbf\xbd", 6);
    assert_true(bson_utf8_validate(r, n, false));
    const char *u = get_str(b, "u", &n);
    assert_int_equal(n, 16 * 3);
    assert_memory_equal(get_str(b, "detail", &n), "u: \xef\xbf\xbd bad", 10);
    assert_null(get_str(b, "e", &n)); /* unknown type is not written */
    assert_non_null(u);
    bson_destroy(b);
    bson_free(json);
}

static void test_at_event_rejected_to_json__raw_truncated_at_char_boundary(void **state)
{
    (void)state;
    char raw[AT_EVENT_RAW_MAX + 16];
    memset(raw, 'r', AT_EVENT_RAW_MAX - 1);
    memcpy(raw + AT_EVENT_RAW_MAX - 1, "\xe2\x82\xac", 3); /* euro sign straddles the limit */
    memset(raw + AT_EVENT_RAW_MAX + 2, 'x', 14);
    size_t len = 0;
    char *json = at_event_rejected_to_json(NULL, AT_REJ_FIELD_TOO_LONG, "d", raw, sizeof(raw), &len);
    assert_non_null(json);
    bson_t *b = must_parse(json, len);
    uint32_t n;
    const char *r = get_str(b, "raw", &n);
    assert_int_equal(n, AT_EVENT_RAW_MAX - 1);
    assert_memory_equal(r, raw, n);
    bson_destroy(b);
    bson_free(json);

    /* exactly AT_EVENT_RAW_MAX fits */
    json = at_event_rejected_to_json(NULL, AT_REJ_FIELD_TOO_LONG, "d", raw + 2, AT_EVENT_RAW_MAX, &len);
    b = must_parse(json, len);
    r = get_str(b, "raw", &n);
    assert_int_equal(n, AT_EVENT_RAW_MAX);
    assert_memory_equal(r + n - 3, "\xe2\x82\xac", 3);
    bson_destroy(b);
    bson_free(json);
}

static void test_at_event_rejected_to_json__repaired_raw_capped(void **state)
{
    (void)state;
    char raw[3000];
    memset(raw, 0xff, sizeof(raw));
    size_t len = 0;
    char *json = at_event_rejected_to_json(NULL, AT_REJ_BAD_ENCODING, "u", raw, sizeof(raw), &len);
    bson_t *b = must_parse(json, len);
    uint32_t n;
    const char *r = get_str(b, "raw", &n);
    assert_non_null(r);
    assert_int_equal(n, (AT_EVENT_RAW_MAX / 3) * 3); /* whole replacement characters only */
    bson_destroy(b);
    bson_free(json);

    memset(raw, 'a', AT_EVENT_RAW_MAX - 1); /* one byte left: U+FFFD (3 bytes) does not fit */
    json = at_event_rejected_to_json(NULL, AT_REJ_BAD_ENCODING, "u", raw, AT_EVENT_RAW_MAX + 5, &len);
    b = must_parse(json, len);
    r = get_str(b, "raw", &n);
    assert_int_equal(n, AT_EVENT_RAW_MAX - 1);
    bson_destroy(b);
    bson_free(json);
}

static void test_at_event_rejected_to_json__long_field_capped(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    ev.u = rep('u', 4000);
    size_t len = 0;
    char *json = at_event_rejected_to_json(&ev, AT_REJ_FIELD_TOO_LONG, "u", "", 0, &len);
    bson_t *b = must_parse(json, len);
    uint32_t n;
    assert_non_null(get_str(b, "u", &n));
    assert_int_equal(n, AT_EVENT_RAW_MAX);
    bson_destroy(b);
    bson_free(json);
}

/* ---- at_event_parse_json ------------------------------------------------------------- */

#define ID "0190a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b"
#define TS "{\"$date\":\"2026-11-21T13:27:02.123Z\"}"

static void expect_parse_error(const char *json, at_errcode_t code, const char *msg_prefix)
{
    at_event_parsed_t pe;
    at_err_t err = {AT_OK, ""};
    if (at_event_parse_json(json, strlen(json), &pe, &err) != -1)
        fail_msg("accepted: %s", json);
    assert_int_equal(err.code, code);
    if (strncmp(err.msg, msg_prefix, strlen(msg_prefix)) != 0)
        fail_msg("message \"%s\" does not start with \"%s\" for %s", err.msg, msg_prefix, json);
    assert_null(pe.doc);
}

static void test_at_event_parse_json__not_json(void **state)
{
    (void)state;
    expect_parse_error("", AT_ERR_INVALID, "event: expected a JSON object");
    expect_parse_error("imp", AT_ERR_INVALID, "event: expected a JSON object");
    expect_parse_error("[1,2]", AT_ERR_INVALID, "event: expected a JSON object");
    expect_parse_error("{\"v\":1", AT_ERR_INVALID, "event: not JSON");
    expect_parse_error("{\"v\":1,}", AT_ERR_INVALID, "event: not JSON");
    expect_parse_error("{\"v\":1} {\"v\":2}", AT_ERR_INVALID, "event: unexpected text after");
    expect_parse_error("{\"v\":1} x", AT_ERR_INVALID, "event: unexpected text after");
    expect_parse_error("{\"v\":\"\xff\"}", AT_ERR_INVALID, "event: not JSON");
}

static void test_at_event_parse_json__not_an_envelope(void **state)
{
    (void)state;
    expect_parse_error("{}", AT_ERR_RANGE, "v: missing");
    expect_parse_error("{\"v\":\"1\"}", AT_ERR_RANGE, "v: expected");
    expect_parse_error("{\"v\":2,\"id\":\"" ID "\",\"ts\":" TS ",\"e\":\"imp\",\"c\":\"c1\"}", AT_ERR_RANGE,
                       "v: unsupported schema version 2");
    expect_parse_error("{\"v\":1,\"ts\":" TS ",\"e\":\"imp\",\"c\":\"c1\"}", AT_ERR_RANGE, "id: missing");
    expect_parse_error("{\"v\":1,\"id\":\"not-a-uuid\",\"ts\":" TS ",\"e\":\"imp\",\"c\":\"c1\"}", AT_ERR_RANGE,
                       "id: expected a UUID");
    expect_parse_error("{\"v\":1,\"id\":\"" ID "\",\"e\":\"imp\",\"c\":\"c1\"}", AT_ERR_RANGE, "ts: missing");
    expect_parse_error("{\"v\":1,\"id\":\"" ID "\",\"ts\":\"2026-11-21\",\"e\":\"imp\",\"c\":\"c1\"}", AT_ERR_RANGE,
                       "ts: expected a date");
    expect_parse_error("{\"v\":1,\"id\":\"" ID "\",\"ts\":" TS ",\"e\":\"bogus\",\"c\":\"c1\"}", AT_ERR_RANGE,
                       "e: expected one of");
    expect_parse_error("{\"v\":1,\"id\":\"" ID "\",\"ts\":" TS ",\"c\":\"c1\"}", AT_ERR_RANGE, "e: missing");
    expect_parse_error("{\"v\":1,\"id\":\"" ID "\",\"ts\":" TS ",\"e\":\"imp\"}", AT_ERR_RANGE, "c: missing");
    expect_parse_error("{\"v\":1,\"id\":\"" ID "\",\"ts\":" TS ",\"e\":\"imp\",\"c\":\"\"}", AT_ERR_RANGE,
                       "c: missing");
    expect_parse_error("{\"v\":1,\"id\":\"" ID "\",\"ts\":" TS ",\"e\":\"imp\",\"c\":\"c1\",\"cr\":5}", AT_ERR_RANGE,
                       "cr: expected a string");
    expect_parse_error("{\"v\":1,\"id\":\"" ID "\",\"ts\":" TS ",\"e\":\"imp\",\"c\":\"c1\",\"src\":\"x\"}",
                       AT_ERR_RANGE, "src: expected one of");
}

static void test_at_event_parse_json__first_key_wins_and_unknown_ignored(void **state)
{
    (void)state;
    const char *json = "  {\"v\":1,\"id\":\"" ID "\",\"ts\":" TS ",\"e\":\"view\",\"e\":\"imp\",\"c\":\"c1\","
                       "\"c\":\"c2\",\"reason\":\"bot\",\"raw\":{\"x\":[1,2]},\"src\":\"beacon\"}\n";
    at_event_parsed_t pe;
    at_err_t err = {AT_OK, ""};
    assert_int_equal(at_event_parse_json(json, strlen(json), &pe, &err), 0);
    assert_int_equal(pe.ev.type, AT_EV_VIEW);
    assert_true(str_eq(pe.ev.c, S("c1")));
    assert_int_equal(pe.ev.src, AT_SRC_BEACON);
    assert_int_equal(pe.ev.ts_ms, INT64_C(1795267622123));
    char id[AT_UUID_STR_LEN + 1];
    at_uuid_format(&pe.ev.id, id);
    assert_string_equal(id, ID);
    at_event_parsed_free(&pe);
    at_event_parsed_free(NULL);
}

static void test_at_event_parse_json__reads_rejected_records(void **state)
{
    (void)state;
    at_event_t ev = base_event();
    size_t len = 0;
    char *json = at_event_rejected_to_json(&ev, AT_REJ_BOT, "ua: bot", "x", 1, &len);
    at_event_parsed_t pe;
    at_err_t err = {AT_OK, ""};
    assert_int_equal(at_event_parse_json(json, len, &pe, &err), 0);
    assert_true(str_eq(pe.ev.c, S("camp-1")));
    at_event_parsed_free(&pe);
    bson_free(json);
}

/* ---- at_event_to_json writes what libbson writes ---------------------------------------- */

/* The document at_event_to_json() stands for, serialised by libbson itself. */
static char *libbson_json(const at_event_t *ev)
{
    static const char *keys[] = {"c", "cr", "p", "pl", "uid", "u", "ref", "ua", "ip", "d", "tag"};
    const at_str_t *vals[] = {&ev->c, &ev->cr, &ev->p, &ev->pl, &ev->uid, &ev->u, &ev->ref, &ev->ua, &ev->ip, &ev->d, &ev->tag};
    char id[AT_UUID_STR_LEN + 1];
    at_uuid_format(&ev->id, id);
    bson_t b = BSON_INITIALIZER;
    BSON_APPEND_INT32(&b, "v", 1);
    BSON_APPEND_UTF8(&b, "id", id);
    BSON_APPEND_DATE_TIME(&b, "ts", ev->ts_ms);
    BSON_APPEND_UTF8(&b, "e", at_event_type_str(ev->type));
    BSON_APPEND_UTF8(&b, "src", at_event_src_str(ev->src));
    if (ev->c.len == 0)
        BSON_APPEND_UTF8(&b, "c", "");
    for (size_t i = 0; i < 11; i++)
        if (vals[i]->len > 0)
            bson_append_utf8(&b, keys[i], -1, vals[i]->p, (int)vals[i]->len);
    char *json = bson_as_relaxed_extended_json(&b, NULL);
    bson_destroy(&b);
    return json;
}

static void assert_same_as_libbson(const at_event_t *ev)
{
    size_t len = 0;
    char *mine = at_event_to_json(ev, &len);
    char *ref = libbson_json(ev);
    assert_non_null(mine);
    assert_non_null(ref);
    assert_string_equal(mine, ref);
    assert_int_equal(len, strlen(ref));
    bson_free(mine);
    bson_free(ref);
}

static void test_at_event_to_json__byte_identical_to_libbson(void **state)
{
    (void)state;
    at_event_t ev = {0};
    at_uuid7_gen_t g = {0};
    at_uuid7_next(&g, 1795268310678ULL, &ev.id);
    ev.type = AT_EV_IMP;
    ev.src = AT_SRC_PIXEL;
    ev.c = AT_STR_LIT("camp-1");
    static const int64_t times[] = {0, 1000, 1795268310000LL, 1795268310005LL, 1795268310017LL, 1795268310678LL,
                                    253402300799999LL};
    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        ev.ts_ms = times[i];
        assert_same_as_libbson(&ev);
    }
    /* Every escape libbson applies, and multi-byte UTF-8 left as is. */
    ev.ts_ms = 1795268310678LL;
    ev.cr = AT_STR_LIT("cr-9");
    ev.p = AT_STR_LIT("pub-3");
    ev.pl = AT_STR_LIT("top");
    ev.uid = AT_STR_LIT("u-42");
    ev.u = AT_STR_LIT("https://news.example/a?q=\"quoted\"&b=back\\slash/\xc3\xa9t\xc3\xa9/\xf0\x9f\x98\x80");
    ev.ref = AT_STR_LIT("ctl:\x01\x02\x08\x09\x0a\x0b\x0c\x0d\x1e\x1f\x7f end");
    ev.ua = AT_STR_LIT("Mozilla/5.0 (X11; Linux x86_64) \"q\" \\ \t");
    ev.ip = AT_STR_LIT("2001:db8::");
    ev.d = AT_STR_LIT("https://dest.example/</script>");
    ev.tag = AT_STR_LIT("run-1:17");
    assert_same_as_libbson(&ev);
    /* Every type and source; and an empty c is still written. */
    for (int t = AT_EV_NONE; t <= AT_EV_CONV; t++) {
        for (int src = AT_SRC_PIXEL; src <= AT_SRC_BEACON; src++) {
            ev.type = (at_event_type_t)t;
            ev.src = (at_event_src_t)src;
            assert_same_as_libbson(&ev);
        }
    }
    ev.c = (at_str_t){NULL, 0};
    assert_same_as_libbson(&ev);
}

static void test_at_event_to_json__refuses_invalid_utf8_and_nul(void **state)
{
    (void)state;
    at_event_t ev = {0};
    ev.ts_ms = 1795268310678LL;
    ev.type = AT_EV_IMP;
    ev.c = AT_STR_LIT("camp-1");
    ev.u = AT_STR_LIT("https://x.example/\xff");
    assert_null(at_event_to_json(&ev, NULL));
    ev.u = (at_str_t){"a\0b", 3};
    assert_null(at_event_to_json(&ev, NULL));
    ev.u = AT_STR_LIT("https://x.example/\xc0\xaf"); /* overlong '/' */
    assert_null(at_event_to_json(&ev, NULL));
}


/* ---- the fast envelope reader against libbson's ----------------------------------------- */

static uint64_t fr_state = UINT64_C(0x2545F4914F6CDD1D);
static bool fr_clean; /* generate only what the collector could write (in any layout) */

static uint64_t fr_rnd(void)
{
    fr_state ^= fr_state >> 12;
    fr_state ^= fr_state << 25;
    fr_state ^= fr_state >> 27;
    return fr_state * UINT64_C(2685821657736338717);
}

static size_t fr_below(size_t n)
{
    return (size_t)(fr_rnd() % n);
}

static const char *fr_pick(const char *const *v, size_t n)
{
    return v[fr_below(n)];
}
#define FR_PICK(v) fr_pick((v), AT_ARRAY_LEN(v))

typedef struct fr_buf_s {
    char s[8192];
    size_t n;
} fr_buf_t;

static void fr_add(fr_buf_t *b, const char *s)
{
    size_t l = strlen(s);
    if (b->n + l < sizeof(b->s)) {
        memcpy(b->s + b->n, s, l);
        b->n += l;
    }
}

static void fr_ws(fr_buf_t *b)
{
    static const char *const ws[] = {"", "", "", " ", "  ", "\n", "\t", "\r\n ", "\v", "\f"};
    /* \v and \f are not JSON whitespace: an occasional one checks that both readers refuse */
    size_t k = fr_below(fr_clean ? 38 : 40);
    fr_add(b, k < 30 ? "" : k < 38 ? ws[3 + fr_below(5)] : ws[8 + fr_below(2)]);
}

/* One member value for @p key, mostly right, sometimes of the wrong type or form. */
static void fr_value(fr_buf_t *b, const char *key)
{
    static const char *const dates[] = {
        "2026-11-21T13:27:02.123Z", "2026-11-21T13:27:02Z", "1970-01-01T00:00:00Z", "9999-12-31T23:59:59.999Z",
        "2024-02-29T00:00:00.000Z", "2023-02-29T00:00:00Z", "2100-02-29T00:00:00Z", "2000-02-29T12:00:00.5Z",
        "2026-13-01T00:00:00Z", "2026-11-31T00:00:00Z", "2026-11-21T24:00:00Z", "2026-11-21T23:59:60Z",
        "1969-12-31T23:59:59.999Z", "2026-11-21T13:27:02.12Z", "2026-11-21T13:27:02.1234Z", "2026-11-21t13:27:02Z",
        "2026-11-21T13:27:02z", "2026-11-21T13:27:02+01:00", "2026-11-21T13:27:02.123+0100", "2026-11-21 13:27:02Z",
        "2026-11-21T13:27Z", "20261121T132702Z", "2026-11-21T13:27:02.-12Z", "0000-01-01T00:00:00Z",
        "2026-00-10T00:00:00Z", "2026-11-00T00:00:00Z"};
    static const char *const strs[] = {"camp-1", "pub-3", "slot-top", "u-42", "https://news.example/a?x=1&y=2",
                                       "Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0", "203.0.113.0", "run-1:17",
                                       "", "a\\\"b", "caf\\u00e9", "\\ud83d\\ude00", "tab\\there", "\xc3\xa9t\xc3\xa9",
                                       "\x7f", "\\/", "x\\u0000y", "camp 1", "\xff"};
    static const char *const odd[] = {"1", "0", "-1", "1.0", "1e0", "01", "-0", "true", "false", "null", "[]",
                                      "[1,\"a\"]", "{}", "{\"a\":1}", "12345678901234567890", "2147483648",
                                      "-2147483649", "{\"$numberLong\":\"1\"}", "{\"$oid\":\"5f1e0a0a0a0a0a0a0a0a0a0a\"}",
                                      "\"1\"", "1 2", "+1", ".5", "NaN"};
    size_t r = fr_clean ? 8 + fr_below(42) : fr_below(100);
    if (r < 8) {
        fr_add(b, FR_PICK(odd));
        return;
    }
    if (strcmp(key, "v") == 0) {
        fr_add(b, r < 90 ? "1" : r < 94 ? "2" : r < 97 ? "1.0" : "\"1\"");
    } else if (strcmp(key, "ts") == 0) {
        fr_add(b, "{");
        fr_ws(b);
        fr_add(b, fr_below(20) == 0 && !fr_clean ? "\"$dat\"" : "\"$date\"");
        fr_ws(b);
        fr_add(b, ":");
        fr_ws(b);
        if (fr_below(10) == 0 && !fr_clean) {
            fr_add(b, "{\"$numberLong\":\"1763731622123\"}");
        } else if (fr_below(10) == 0 && !fr_clean) {
            fr_add(b, "1763731622123");
        } else {
            char d[64];
            if (r < 50) {
                /* a random valid instant, as the collector writes it */
                int64_t ms = (int64_t)(fr_rnd() % UINT64_C(253402300800000));
                time_t secs = (time_t)(ms / 1000);
                struct tm tm;
                gmtime_r(&secs, &tm);
                size_t dn = strftime(d, sizeof(d), "%Y-%m-%dT%H:%M:%S", &tm);
                if (ms % 1000 != 0 || fr_below(2) == 0)
                    snprintf(d + dn, sizeof(d) - dn, ".%03dZ", (int)(ms % 1000));
                else
                    snprintf(d + dn, sizeof(d) - dn, "Z");
            } else {
                snprintf(d, sizeof(d), "%s", FR_PICK(dates));
            }
            fr_add(b, "\"");
            fr_add(b, d);
            fr_add(b, "\"");
        }
        fr_ws(b);
        if (fr_below(20) == 0 && !fr_clean)
            fr_add(b, ",\"x\":1");
        fr_add(b, "}");
    } else if (strcmp(key, "id") == 0) {
        static const char *const ids[] = {"\"0190a000-0000-7000-8000-0000000000aa\"", "\"0190A000-0000-7000-8000-0000000000AA\"",
                                          "\"0190a000-0000-7000-8000-0000000000a\"", "\"0190a0000000700080000000000000aa\"",
                                          "\"zz90a000-0000-7000-8000-0000000000aa\"", "\"\""};
        fr_add(b, r < 80 ? ids[0] : FR_PICK(ids));
    } else if (strcmp(key, "e") == 0) {
        static const char *const es[] = {"\"imp\"", "\"view\"", "\"click\"", "\"conv\"", "\"hover\"", "\"\"", "\"IMP\""};
        fr_add(b, r < 85 ? es[fr_below(4)] : FR_PICK(es));
    } else if (strcmp(key, "src") == 0) {
        static const char *const ss[] = {"\"pixel\"", "\"click\"", "\"beacon\"", "\"other\""};
        fr_add(b, FR_PICK(ss));
    } else {
        fr_add(b, "\"");
        fr_add(b, r < 70 ? strs[fr_below(8)] : FR_PICK(strs));
        fr_add(b, "\"");
    }
}

/* A generated envelope text: members in a random order, some missing, some repeated,
 * unknown keys, random whitespace. */
static void fr_envelope(fr_buf_t *b)
{
    static const char *const keys[] = {"v", "id", "ts", "e", "src", "c", "cr", "p", "pl", "uid",
                                       "u", "ref", "ua", "ip", "d", "tag"};
    static const char *const extra[] = {"x", "", "$date", "$x", "V", "c ", "tags", "\\u0063", "\xc3\xa9"};
    const char *order[40];
    size_t n = 0;
    for (size_t i = 0; i < AT_ARRAY_LEN(keys); i++) {
        bool required = i < 4 || i == 5;
        if (fr_below(required ? 40 : 3) != 0)
            order[n++] = keys[i];
    }
    size_t nextra = fr_below(8) == 0 ? 1 + fr_below(3) : 0;
    if (fr_clean)
        nextra = 0;
    for (size_t i = 0; i < nextra; i++)
        order[n++] = FR_PICK(extra);
    if (fr_below(6) == 0)
        order[n++] = FR_PICK(keys); /* a repeat */
    for (size_t i = n; i > 1; i--) {
        size_t j = fr_below(i);
        const char *t = order[i - 1];
        order[i - 1] = order[j];
        order[j] = t;
    }
    b->n = 0;
    fr_ws(b);
    fr_add(b, "{");
    for (size_t i = 0; i < n; i++) {
        fr_ws(b);
        if (i > 0) {
            fr_add(b, ",");
            fr_ws(b);
        }
        fr_add(b, "\"");
        fr_add(b, order[i]);
        fr_add(b, "\"");
        fr_ws(b);
        fr_add(b, ":");
        fr_ws(b);
        fr_value(b, order[i]);
    }
    fr_ws(b);
    fr_add(b, fr_below(50) == 0 && !fr_clean ? "" : "}");
    fr_ws(b);
    if (fr_below(60) == 0 && !fr_clean)
        fr_add(b, fr_below(2) ? "{}" : ",");
}

static bool fr_same_str(at_str_t a, at_str_t b)
{
    if ((a.p == NULL) != (b.p == NULL) || a.len != b.len)
        return false;
    return a.len == 0 || memcmp(a.p, b.p, a.len) == 0;
}

/* Both readers on @p s; they must agree. Returns true when the fast reader read it. */
static bool fr_compare(const char *s, size_t n)
{
    at_event_parsed_t a, b;
    at_err_t ea = {AT_OK, ""}, eb = {AT_OK, ""};
    /* exact-size copy, so a read past the end is an ASan error */
    char *in = malloc(n ? n : 1);
    assert_non_null(in);
    memcpy(in, s, n);
    int ra = at_event_parse_json(in, n, &a, &ea);
    int rb = at_event_parse_json_libbson(in, n, &b, &eb);
    bool fast = ra == 0 && a.text != NULL;
    if (ra == 0 && a.plain != fast)
        fail_msg("plain %d but read by the %s reader: %.*s", a.plain, fast ? "fast" : "libbson", (int)n, s);
    /* The in-place variant reads the same, with its views inside the input. */
    at_event_parsed_t c;
    at_err_t ec = {AT_OK, ""};
    int rc = at_event_parse_json_view(in, n, &c, &ec);
    if (rc != ra || (rc != 0 && (ec.code != ea.code || strcmp(ec.msg, ea.msg) != 0)))
        fail_msg("in-place reader differs (%d '%s' vs %d '%s') on: %.*s", rc, ec.msg, ra, ea.msg, (int)n, s);
    if (rc == 0) {
        if (c.plain != a.plain || c.text != NULL || (c.plain && c.doc != NULL))
            fail_msg("in-place reader: plain %d, text %p on: %.*s", c.plain, (void *)c.text, (int)n, s);
        const at_str_t *x[] = {&a.ev.c, &a.ev.cr, &a.ev.p, &a.ev.pl, &a.ev.uid, &a.ev.u, &a.ev.ref, &a.ev.ua, &a.ev.ip,
                               &a.ev.d, &a.ev.tag};
        const at_str_t *y[] = {&c.ev.c, &c.ev.cr, &c.ev.p, &c.ev.pl, &c.ev.uid, &c.ev.u, &c.ev.ref, &c.ev.ua, &c.ev.ip,
                               &c.ev.d, &c.ev.tag};
        for (size_t k = 0; k < AT_ARRAY_LEN(x); k++) {
            if (!fr_same_str(*x[k], *y[k]))
                fail_msg("in-place reader: field %zu differs on: %.*s", k, (int)n, s);
            if (c.plain && y[k]->len > 0 && (y[k]->p < in || y[k]->p + y[k]->len > in + n))
                fail_msg("in-place reader: field %zu not inside the input", k);
            if (c.plain)
                for (size_t j = 0; j < y[k]->len; j++)
                    if (y[k]->p[j] < 0x20 || y[k]->p[j] > 0x7e || y[k]->p[j] == '"' || y[k]->p[j] == '\\')
                        fail_msg("plain, but field %zu holds byte 0x%02x", k, (unsigned char)y[k]->p[j]);
        }
        if (c.v != a.v || memcmp(&c.ev.id, &a.ev.id, sizeof(c.ev.id)) != 0 || c.ev.ts_ms != a.ev.ts_ms ||
            c.ev.type != a.ev.type || c.ev.src != a.ev.src)
            fail_msg("in-place reader: envelope differs on: %.*s", (int)n, s);
        at_event_parsed_free(&c);
    }
    free(in); /* the fast reader's views must not point into the input */
    if (ra != rb)
        fail_msg("readers disagree (%d vs libbson %d) on: %.*s", ra, rb, (int)n, s);
    if (ra != 0) {
        if (ea.code != eb.code || strcmp(ea.msg, eb.msg) != 0)
            fail_msg("errors differ: '%s' vs libbson '%s' on: %.*s", ea.msg, eb.msg, (int)n, s);
        return false;
    }
    bool same = a.v == b.v && memcmp(&a.ev.id, &b.ev.id, sizeof(a.ev.id)) == 0 && a.ev.ts_ms == b.ev.ts_ms &&
                a.ev.type == b.ev.type && a.ev.src == b.ev.src && fr_same_str(a.ev.c, b.ev.c) &&
                fr_same_str(a.ev.cr, b.ev.cr) && fr_same_str(a.ev.p, b.ev.p) && fr_same_str(a.ev.pl, b.ev.pl) &&
                fr_same_str(a.ev.uid, b.ev.uid) && fr_same_str(a.ev.u, b.ev.u) && fr_same_str(a.ev.ref, b.ev.ref) &&
                fr_same_str(a.ev.ua, b.ev.ua) && fr_same_str(a.ev.ip, b.ev.ip) && fr_same_str(a.ev.d, b.ev.d) &&
                fr_same_str(a.ev.tag, b.ev.tag);
    if (!same)
        fail_msg("readers read different envelopes (ts %lld vs %lld) from: %.*s", (long long)a.ev.ts_ms,
                 (long long)b.ev.ts_ms, (int)n, s);
    at_event_parsed_free(&a);
    at_event_parsed_free(&b);
    assert_null(a.text);
    return fast;
}

static void test_at_event_parse_json__fast_reader_agrees_with_libbson(void **state)
{
    (void)state;
    fr_buf_t b;
    size_t fast = 0, total = 0;
    for (int i = 0; i < 40000; i++) {
        fr_clean = i % 2 == 0;
        fr_envelope(&b);
        fast += fr_compare(b.s, b.n);
        total++;
        /* and a few mutations of it: a byte changed, inserted, deleted; a cut */
        for (int m = 0; m < 3 && b.n > 0; m++) {
            fr_buf_t c = b;
            size_t at = fr_below(c.n);
            static const char bytes[] = "{}[]:,\" \\0a-.eZT\x01\x80\xff";
            char ch = bytes[fr_below(sizeof(bytes) - 1)];
            switch (fr_below(4)) {
            case 0:
                c.s[at] = ch;
                break;
            case 1:
                memmove(c.s + at + 1, c.s + at, c.n - at);
                c.s[at] = ch;
                c.n++;
                break;
            case 2:
                memmove(c.s + at, c.s + at + 1, c.n - at - 1);
                c.n--;
                break;
            default:
                c.n = at;
                break;
            }
            fast += fr_compare(c.s, c.n);
            total++;
        }
    }
    /* The fast reader must really carry the everyday envelopes. */
    print_message("fast reader: %zu of %zu inputs\n", fast, total);
    if (fast * 10 < total)
        fail_msg("the fast reader read only %zu of %zu inputs", fast, total);

    /* What the collector writes is read by the fast reader. */
    at_event_t ev = base_event();
    ev.ua = S("Mozilla/5.0 (X11; Linux x86_64) Chrome/120.0");
    ev.tag = S("run-1:17");
    size_t len;
    char *json = at_event_to_json(&ev, &len);
    assert_true(fr_compare(json, len));
    bson_free(json);
    ev.ts_ms = INT64_C(1763731622000); /* whole second: no ".000" */
    json = at_event_to_json(&ev, &len);
    assert_true(fr_compare(json, len));
    bson_free(json);
}


/* A conversion envelope: clid, order and payout_micros survive the writer and both readers
 * (the fast one and libbson's) alike; the postback source has its name. */
static void test_at_event__conversion_fields_roundtrip(void **state)
{
    (void)state;
    at_event_t ev;
    memset(&ev, 0, sizeof(ev));
    at_uuid_parse(ID, strlen(ID), &ev.id);
    ev.ts_ms = INT64_C(1795267622123);
    ev.type = AT_EV_CONV;
    ev.src = AT_SRC_POSTBACK;
    ev.c = S("camp-1");
    ev.clid = S("0190a000-0000-7000-8000-0000000000c1.camp-1");
    ev.order = S("A-17 x");
    ev.payout_micros = S("2500000");
    at_err_t err = {AT_OK, ""};
    assert_int_equal(at_event_check(&ev, &err), AT_REJ_NONE);
    size_t len;
    char *json = at_event_to_json(&ev, &len);
    assert_non_null(json);
    assert_non_null(strstr(json, "\"src\" : \"postback\""));
    for (int reader = 0; reader < 2; reader++) {
        at_event_parsed_t pe;
        int rc = reader == 0 ? at_event_parse_json(json, len, &pe, &err) : at_event_parse_json_libbson(json, len, &pe, &err);
        assert_int_equal(rc, 0);
        assert_int_equal(pe.ev.src, AT_SRC_POSTBACK);
        assert_true(str_eq(pe.ev.clid, ev.clid));
        assert_true(str_eq(pe.ev.order, ev.order));
        assert_true(str_eq(pe.ev.payout_micros, ev.payout_micros));
        at_event_parsed_free(&pe);
    }
    bson_free(json);

    at_uuid_t click;
    at_str_t c;
    assert_true(at_clid_split(ev.clid, &click, &c));
    assert_true(str_eq(c, S("camp-1")));
    char cs[AT_UUID_STR_LEN + 1];
    at_uuid_format(&click, cs);
    assert_string_equal(cs, "0190a000-0000-7000-8000-0000000000c1");
    assert_false(at_clid_split(S("0190a000-0000-7000-8000-0000000000c1"), NULL, NULL));  /* no campaign */
    assert_false(at_clid_split(S("0190a000-0000-7000-8000-0000000000c1."), NULL, NULL)); /* empty campaign */
    assert_false(at_clid_split(S("0190a000-0000-7000-8000-0000000000c1.a b"), NULL, NULL));
    assert_false(at_clid_split(S("0190a000-0000-7000-8000-0000000000cZ.camp"), NULL, NULL));
    assert_false(at_clid_split(S("0190a000-0000-7000-8000-0000000000c1_camp"), NULL, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_event__conversion_fields_roundtrip),
        cmocka_unit_test(test_at_event_type_str__names),
        cmocka_unit_test(test_at_event_type_parse__known_and_unknown),
        cmocka_unit_test(test_at_event_src_str__names),
        cmocka_unit_test(test_at_reject_str__stable_codes),
        cmocka_unit_test(test_at_event_check__valid_minimal),
        cmocka_unit_test(test_at_event_check__valid_full),
        cmocka_unit_test(test_at_event_check__missing_c),
        cmocka_unit_test(test_at_event_check_e__missing_e),
        cmocka_unit_test(test_at_event_check_e__unknown_e_is_quoted),
        cmocka_unit_test(test_at_event_check__type_none_is_unknown_type),
        cmocka_unit_test(test_at_event_check__id_fields_length_boundary),
        cmocka_unit_test(test_at_event_check__id_fields_charset),
        cmocka_unit_test(test_at_event_check__uid_rules),
        cmocka_unit_test(test_at_event_check__url_fields_length_boundary),
        cmocka_unit_test(test_at_event_check__url_bad_utf8),
        cmocka_unit_test(test_at_event_check__tag_rules),
        cmocka_unit_test(test_at_event_check__ip_rules),
        cmocka_unit_test(test_at_event_check__ua_truncated_not_rejected),
        cmocka_unit_test(test_at_event_check__ua_truncated_at_char_boundary),
        cmocka_unit_test(test_at_event_check__ua_invalid_utf8_truncated),
        cmocka_unit_test(test_at_event_to_json__field_order_and_omission),
        cmocka_unit_test(test_at_event_to_json__roundtrip),
        cmocka_unit_test(test_at_event_to_json__minimal_roundtrip_keeps_absent_fields_absent),
        cmocka_unit_test(test_at_event_to_json__refuses_unwritable_input),
        cmocka_unit_test(test_at_event_rejected_to_json__has_reason_detail_raw),
        cmocka_unit_test(test_at_event_rejected_to_json__null_event),
        cmocka_unit_test(test_at_event_rejected_to_json__binary_raw_stays_valid_json),
        cmocka_unit_test(test_at_event_rejected_to_json__raw_truncated_at_char_boundary),
        cmocka_unit_test(test_at_event_rejected_to_json__repaired_raw_capped),
        cmocka_unit_test(test_at_event_rejected_to_json__long_field_capped),
        cmocka_unit_test(test_at_event_parse_json__not_json),
        cmocka_unit_test(test_at_event_parse_json__not_an_envelope),
        cmocka_unit_test(test_at_event_parse_json__first_key_wins_and_unknown_ignored),
        cmocka_unit_test(test_at_event_parse_json__reads_rejected_records),
        cmocka_unit_test(test_at_event_to_json__byte_identical_to_libbson),
        cmocka_unit_test(test_at_event_parse_json__fast_reader_agrees_with_libbson),
        cmocka_unit_test(test_at_event_to_json__refuses_invalid_utf8_and_nul),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
