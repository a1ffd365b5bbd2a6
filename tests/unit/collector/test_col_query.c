/* Unit tests for collector/col_query.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>

#include "col_query.h"

/* Parses @p q with a decode buffer of exactly strlen(q) bytes on the heap, so ASan catches
 * any write or read past it. The buffer is kept in *buf for the views; the caller frees it. */
static at_reject_t parse(const char *q, at_event_t *ev, col_query_t *out, char **buf, at_err_t *err)
{
    size_t len = strlen(q);
    char *qcopy = malloc(len + 1); /* exact-size copy of the query: no slack to read into */
    assert_non_null(qcopy);
    memcpy(qcopy, q, len);
    *buf = malloc(len + 1);
    assert_non_null(*buf);
    memset(ev, 0, sizeof(*ev));
    memset(out, 0, sizeof(*out));
    at_reject_t r = col_query_parse(qcopy, len, ev, out, *buf, len, err);
    /* views must point into buf, never into the query */
    free(qcopy);
    return r;
}

static void assert_str(at_str_t s, const char *want)
{
    if (want == NULL) {
        assert_null(s.p);
        assert_int_equal(s.len, 0);
        return;
    }
    assert_non_null(s.p);
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.p, want, s.len);
}

static void test_col_query_parse__all_known_params(void **state)
{
    (void)state;
    at_event_t ev;
    col_query_t q;
    char *buf;
    at_err_t err = {AT_OK, ""};
    at_reject_t r = parse("e=click&c=camp-1&cr=cr-9&p=pub-3&pl=slot-top&uid=u-42&u=https%3A%2F%2Fa.example%2F"
                          "&d=https%3A%2F%2Fdest%2F&sig=AbC-_x&tag=run-1%3A17&cb=123",
                          &ev, &q, &buf, &err);
    assert_int_equal(r, AT_REJ_NONE);
    assert_int_equal(ev.type, AT_EV_CLICK);
    assert_str(q.e, "click");
    assert_str(ev.c, "camp-1");
    assert_str(ev.cr, "cr-9");
    assert_str(ev.p, "pub-3");
    assert_str(ev.pl, "slot-top");
    assert_str(ev.uid, "u-42");
    assert_str(ev.u, "https://a.example/");
    assert_str(ev.d, "https://dest/");
    assert_str(q.sig, "AbC-_x");
    assert_str(ev.tag, "run-1:17");
    assert_int_equal(err.code, AT_OK);
    assert_int_equal(at_event_check_e(&ev, q.e, &err), AT_REJ_NONE);
    free(buf);
}

static void test_col_query_parse__leaves_other_fields_untouched(void **state)
{
    (void)state;
    at_event_t ev;
    col_query_t q;
    char buf[64];
    at_err_t err;
    memset(&ev, 0, sizeof(ev));
    ev.ua = AT_STR_LIT("UA");
    ev.ip = AT_STR_LIT("1.2.3.4");
    ev.ref = AT_STR_LIT("https://r/");
    ev.ts_ms = 77;
    ev.src = AT_SRC_CLICK;
    ev.cr = AT_STR_LIT("stale"); /* a parsed field is reset even when absent */
    const char *qs = "e=imp&c=x";
    assert_int_equal(col_query_parse(qs, strlen(qs), &ev, &q, buf, sizeof(buf), &err), AT_REJ_NONE);
    assert_str(ev.ua, "UA");
    assert_str(ev.ip, "1.2.3.4");
    assert_str(ev.ref, "https://r/");
    assert_int_equal(ev.ts_ms, 77);
    assert_int_equal(ev.src, AT_SRC_CLICK);
    assert_str(ev.cr, NULL);
    assert_str(q.sig, NULL);
}

static void test_col_query_parse__empty_query(void **state)
{
    (void)state;
    at_event_t ev;
    col_query_t q;
    at_err_t err;
    memset(&ev, 0, sizeof(ev));
    assert_int_equal(col_query_parse("", 0, &ev, &q, NULL, 0, &err), AT_REJ_NONE);
    assert_int_equal(ev.type, AT_EV_NONE);
    assert_str(ev.c, NULL);
    assert_str(q.e, NULL);
    /* and the checker then reports the missing type */
    assert_int_equal(at_event_check_e(&ev, q.e, &err), AT_REJ_MISSING_FIELD);
    assert_memory_equal(err.msg, "e: missing", 10);
}

static void test_col_query_parse__percent_decoding(void **state)
{
    (void)state;
    at_event_t ev;
    col_query_t q;
    char *buf;
    at_err_t err;
    assert_int_equal(parse("c=a%2eb%3Ac&u=%E2%82%AC+x%2B&uid=a+b", &ev, &q, &buf, &err), AT_REJ_NONE);
    assert_str(ev.c, "a.b:c");
    assert_str(ev.u, "\xe2\x82\xac x+");
    assert_str(ev.uid, "a b");
    free(buf);
}

static void test_col_query_parse__bad_hex_escape(void **state)
{
    (void)state;
    at_event_t ev;
    col_query_t q;
    char *buf;
    at_err_t err;
    assert_int_equal(parse("e=imp&c=c1&u=https%zzx&uid=u1", &ev, &q, &buf, &err), AT_REJ_BAD_ENCODING);
    assert_int_equal(err.code, AT_ERR_INVALID);
    assert_string_equal(err.msg, "u: invalid percent-encoding at byte 18");
    /* the other parameters are still filled, the bad one stays absent */
    assert_str(ev.u, NULL);
    assert_str(ev.c, "c1");
    assert_str(ev.uid, "u1");
    assert_int_equal(ev.type, AT_EV_IMP);
    free(buf);
}

static void test_col_query_parse__truncated_escape(void **state)
{
    (void)state;
    at_event_t ev;
    col_query_t q;
    char *buf;
    at_err_t err;
    assert_int_equal(parse("c=c1&tag=ab%4", &ev, &q, &buf, &err), AT_REJ_BAD_ENCODING);
    assert_string_equal(err.msg, "tag: invalid percent-encoding at byte 11");
    assert_str(ev.tag, NULL);
    free(buf);
    assert_int_equal(parse("c=%", &ev, &q, &buf, &err), AT_REJ_BAD_ENCODING);
    assert_string_equal(err.msg, "c: invalid percent-encoding at byte 2");
    free(buf);
    assert_int_equal(parse("c=%4&p=ok", &ev, &q, &buf, &err), AT_REJ_BAD_ENCODING);
    assert_str(ev.p, "ok");
    free(buf);
}

static void test_col_query_parse__nul_byte_rejected(void **state)
{
    (void)state;
    at_event_t ev;
    col_query_t q;
    char *buf;
    at_err_t err;
    assert_int_equal(parse("e=imp&c=c1&uid=ab%00cd", &ev, &q, &buf, &err), AT_REJ_BAD_ENCODING);
    assert_string_equal(err.msg, "uid: NUL byte (%00) at byte 17");
    assert_str(ev.uid, NULL);
    assert_str(ev.c, "c1");
    free(buf);
}

static void test_col_query_parse__first_error_reported(void **state)
{
    (void)state;
    at_event_t ev;
    col_query_t q;
    char *buf;
    at_err_t err;
    assert_int_equal(parse("p=%x1&u=%00&c=ok", &ev, &q, &buf, &err), AT_REJ_BAD_ENCODING);
    assert_memory_equal(err.msg, "p: ", 3);
    assert_str(ev.c, "ok");
    free(buf);
}

static void test_col_query_parse__first_wins(void **state)
{
    (void)state;
    at_event_t ev;
    col_query_t q;
    char *buf;
    at_err_t err;
    assert_int_equal(parse("c=first&e=view&c=second&e=imp&c=%zz", &ev, &q, &buf, &err), AT_REJ_NONE);
    assert_str(ev.c, "first");
    assert_int_equal(ev.type, AT_EV_VIEW);
    free(buf);
    /* a bad first occurrence is not replaced by a later good one */
    assert_int_equal(parse("c=%zz&c=good", &ev, &q, &buf, &err), AT_REJ_BAD_ENCODING);
    assert_str(ev.c, NULL);
    free(buf);
}

static void test_col_query_parse__unknown_params_ignored(void **state)
{
    (void)state;
    at_event_t ev;
    col_query_t q;
    char *buf;
    at_err_t err;
    /* unknown ones are not even decoded, so their bad escapes do not matter */
    assert_int_equal(
        parse("cb=%zz&x=1&cc=2&uidx=3&C=4&%63=5&=6&&e=imp&c=c1&ua=ignored&ref=ignored&ip=9", &ev, &q, &buf, &err),
        AT_REJ_NONE);
    assert_str(ev.c, "c1");
    assert_str(ev.ua, NULL);
    assert_str(ev.ref, NULL);
    assert_str(ev.ip, NULL);
    free(buf);
}

static void test_col_query_parse__missing_equals_and_empty_values(void **state)
{
    (void)state;
    at_event_t ev;
    col_query_t q;
    char *buf;
    at_err_t err;
    assert_int_equal(parse("c&e=&uid=&p=a=b", &ev, &q, &buf, &err), AT_REJ_NONE);
    assert_non_null(ev.c.p);
    assert_int_equal(ev.c.len, 0);
    assert_int_equal(q.e.len, 0);
    assert_int_equal(ev.type, AT_EV_NONE);
    assert_str(ev.p, "a=b");
    /* an empty e counts as missing, an empty c too */
    assert_int_equal(at_event_check_e(&ev, q.e, &err), AT_REJ_MISSING_FIELD);
    ev.type = AT_EV_IMP;
    assert_int_equal(at_event_check_e(&ev, q.e, &err), AT_REJ_MISSING_FIELD);
    assert_memory_equal(err.msg, "c: missing", 10);
    free(buf);
}

static void test_col_query_parse__unknown_event_type(void **state)
{
    (void)state;
    at_event_t ev;
    col_query_t q;
    char *buf;
    at_err_t err;
    assert_int_equal(parse("e=IMP&c=c1", &ev, &q, &buf, &err), AT_REJ_NONE);
    assert_int_equal(ev.type, AT_EV_NONE);
    assert_str(q.e, "IMP");
    assert_int_equal(at_event_check_e(&ev, q.e, &err), AT_REJ_UNKNOWN_EVENT_TYPE);
    assert_non_null(strstr(err.msg, "\"IMP\""));
    free(buf);
    assert_int_equal(parse("e=%69mp&c=c1", &ev, &q, &buf, &err), AT_REJ_NONE); /* encoded name value */
    assert_int_equal(ev.type, AT_EV_IMP);
    free(buf);
}

/* The limits are in decoded bytes: 64 encoded as %xx triplets is still 64. */
static void test_col_query_parse__limits_after_decoding(void **state)
{
    (void)state;
    char qs[512];
    size_t n = (size_t)snprintf(qs, sizeof(qs), "e=imp&c=");
    for (int i = 0; i < 64; i++)
        n += (size_t)snprintf(qs + n, sizeof(qs) - n, "%%41");
    at_event_t ev;
    col_query_t q;
    char *buf;
    at_err_t err;
    assert_int_equal(parse(qs, &ev, &q, &buf, &err), AT_REJ_NONE);
    assert_int_equal(ev.c.len, 64);
    assert_int_equal(at_event_check_e(&ev, q.e, &err), AT_REJ_NONE);
    free(buf);
    snprintf(qs + n, sizeof(qs) - n, "A");
    assert_int_equal(parse(qs, &ev, &q, &buf, &err), AT_REJ_NONE);
    assert_int_equal(ev.c.len, 65);
    assert_int_equal(at_event_check_e(&ev, q.e, &err), AT_REJ_FIELD_TOO_LONG);
    free(buf);
}

/* Invalid UTF-8 is not col_query's business; at_event_check() reports it. */
static void test_col_query_parse__bad_utf8_left_to_check(void **state)
{
    (void)state;
    at_event_t ev;
    col_query_t q;
    char *buf;
    at_err_t err;
    assert_int_equal(parse("e=imp&c=c1&u=%FF%FE", &ev, &q, &buf, &err), AT_REJ_NONE);
    assert_str(ev.u, "\xff\xfe");
    assert_int_equal(at_event_check_e(&ev, q.e, &err), AT_REJ_BAD_ENCODING);
    assert_memory_equal(err.msg, "u: ", 3);
    free(buf);
}

static void test_col_query_parse__small_buffer_never_overflows(void **state)
{
    (void)state;
    const char *qs = "c=abcdef&uid=0123456789";
    char *buf = malloc(8); /* contract says >= len; broken on purpose */
    at_event_t ev;
    col_query_t q;
    at_err_t err;
    memset(&ev, 0, sizeof(ev));
    assert_int_equal(col_query_parse(qs, strlen(qs), &ev, &q, buf, 8, &err), AT_REJ_BAD_ENCODING);
    assert_str(ev.c, "abcdef");
    assert_str(ev.uid, NULL);
    assert_memory_equal(err.msg, "uid: decode buffer too small", 28);
    free(buf);
}

static void test_col_percent_decode__cases(void **state)
{
    (void)state;
    char out[32];
    size_t bad = 99;
    assert_int_equal(col_percent_decode("a%20b", 5, out, false, &bad), 3);
    assert_memory_equal(out, "a b", 3);
    assert_int_equal(col_percent_decode("a+b", 3, out, true, NULL), 3);
    assert_memory_equal(out, "a b", 3);
    assert_int_equal(col_percent_decode("a+b", 3, out, false, NULL), 3);
    assert_memory_equal(out, "a+b", 3);
    assert_int_equal(col_percent_decode("%fF%Aa%00", 9, out, false, NULL), 3);
    assert_memory_equal(out, "\xff\xaa\x00", 3);
    assert_int_equal(col_percent_decode("", 0, out, false, NULL), 0);
    assert_int_equal(col_percent_decode("ab%g0", 5, out, false, &bad), -1);
    assert_int_equal(bad, 2);
    assert_int_equal(col_percent_decode("ab%0g", 5, out, false, &bad), -1);
    assert_int_equal(bad, 2);
    assert_int_equal(col_percent_decode("x%4", 3, out, false, &bad), -1);
    assert_int_equal(bad, 1);
    assert_int_equal(col_percent_decode("%", 1, out, false, &bad), -1);
    assert_int_equal(bad, 0);
    /* the length bounds the read: "%41" cut to "%4" is invalid even though '1' follows */
    assert_int_equal(col_percent_decode("%41", 2, out, false, &bad), -1);
    assert_int_equal(col_percent_decode("%%41", 4, out, false, &bad), -1);
    assert_int_equal(bad, 0);
}


/* Conversions: clid, order, payout_micros; the clid's campaign becomes c. */
static void test_col_query_parse__conversion_params(void **state)
{
    (void)state;
    at_event_t ev;
    col_query_t q;
    char *buf;
    at_err_t err = {AT_OK, ""};
    at_reject_t r = parse("e=conv&clid=0190a000-0000-7000-8000-0000000000c1.camp-1&order=A%2017&payout_micros=2500000"
                          "&c=other",
                          &ev, &q, &buf, &err);
    assert_int_equal(r, AT_REJ_NONE);
    assert_int_equal(ev.type, AT_EV_CONV);
    assert_str(ev.clid, "0190a000-0000-7000-8000-0000000000c1.camp-1");
    assert_str(ev.order, "A 17");
    assert_str(ev.payout_micros, "2500000");
    assert_str(ev.c, "other");
    col_conv_campaign(&ev); /* the click's campaign wins */
    assert_str(ev.c, "camp-1");
    assert_int_equal(at_event_check_e(&ev, q.e, &err), AT_REJ_NONE);
    free(buf);

    /* Without c, the clid gives the campaign; with neither, c is missing. */
    parse("e=conv&clid=0190a000-0000-7000-8000-0000000000c1.camp-2", &ev, &q, &buf, &err);
    col_conv_campaign(&ev);
    assert_str(ev.c, "camp-2");
    free(buf);
    parse("e=conv&order=1", &ev, &q, &buf, &err);
    col_conv_campaign(&ev);
    assert_int_equal(at_event_check_e(&ev, q.e, &err), AT_REJ_MISSING_FIELD);
    free(buf);
    /* A malformed clid is rejected naming it, and gives no campaign. */
    parse("e=conv&c=camp-1&clid=not-a-click-id", &ev, &q, &buf, &err);
    col_conv_campaign(&ev);
    assert_str(ev.c, "camp-1");
    assert_int_equal(at_event_check_e(&ev, q.e, &err), AT_REJ_INVALID_FIELD);
    assert_non_null(strstr(err.msg, "clid:"));
    free(buf);
    parse("e=conv&c=camp-1&payout_micros=12x", &ev, &q, &buf, &err);
    assert_int_equal(at_event_check_e(&ev, q.e, &err), AT_REJ_INVALID_FIELD);
    assert_non_null(strstr(err.msg, "payout_micros:"));
    free(buf);
    parse("e=conv&c=camp-1&payout_micros=12345678901234", &ev, &q, &buf, &err);
    assert_int_equal(at_event_check_e(&ev, q.e, &err), AT_REJ_FIELD_TOO_LONG);
    free(buf);
    parse("e=conv&c=camp-1&order=a%22b", &ev, &q, &buf, &err);
    assert_int_equal(at_event_check_e(&ev, q.e, &err), AT_REJ_INVALID_FIELD);
    assert_non_null(strstr(err.msg, "order:"));
    free(buf);
    /* cp is read for /c. */
    parse("d=https%3A%2F%2Fa%2F&cp=gclid&sig=x", &ev, &q, &buf, &err);
    assert_str(q.cp, "gclid");
    free(buf);
}

static void test_col_click_location__query_and_fragment(void **state)
{
    (void)state;
    static const struct {
        const char *d, *want;
    } cases[] = {
        {"https://shop.example/landing", "https://shop.example/landing?adt_clid=ID"},
        {"https://shop.example/landing?x=1", "https://shop.example/landing?x=1&adt_clid=ID"},
        {"https://shop.example/landing?", "https://shop.example/landing?adt_clid=ID"},
        {"https://shop.example/landing?x=1&", "https://shop.example/landing?x=1&adt_clid=ID"},
        {"https://shop.example/p#top", "https://shop.example/p?adt_clid=ID#top"},
        {"https://shop.example/p?x=1#a?b", "https://shop.example/p?x=1&adt_clid=ID#a?b"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char out[256];
        at_str_t d = {cases[i].d, strlen(cases[i].d)};
        size_t n = col_click_location(d, AT_STR_LIT("adt_clid"), "ID", out, sizeof(out));
        assert_int_equal(n, strlen(cases[i].want));
        assert_memory_equal(out, cases[i].want, n);
    }
    char small[10];
    assert_int_equal(col_click_location(AT_STR_LIT("https://a/"), AT_STR_LIT("p"), "ID", small, sizeof(small)),
                     SIZE_MAX);
}

static void test_col_click_signed_message__and_param_names(void **state)
{
    (void)state;
    char out[64];
    size_t n = col_click_signed_message(AT_STR_LIT("https://a/"), (at_str_t){NULL, 0}, out, sizeof(out));
    assert_int_equal(n, 10);
    assert_memory_equal(out, "https://a/", 10);
    n = col_click_signed_message(AT_STR_LIT("https://a/"), AT_STR_LIT("gclid"), out, sizeof(out));
    assert_int_equal(n, 16);
    assert_memory_equal(out, "https://a/\ngclid", 16);
    assert_true(col_click_param_valid(AT_STR_LIT("adt_clid")));
    assert_true(col_click_param_valid(AT_STR_LIT("a.b-c_9")));
    assert_false(col_click_param_valid(AT_STR_LIT("")));
    assert_false(col_click_param_valid(AT_STR_LIT("a=b")));
    assert_false(col_click_param_valid(AT_STR_LIT("a&b")));
    assert_false(col_click_param_valid(AT_STR_LIT("123456789012345678901234567890123")));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_col_query_parse__all_known_params),
        cmocka_unit_test(test_col_query_parse__leaves_other_fields_untouched),
        cmocka_unit_test(test_col_query_parse__empty_query),
        cmocka_unit_test(test_col_query_parse__percent_decoding),
        cmocka_unit_test(test_col_query_parse__bad_hex_escape),
        cmocka_unit_test(test_col_query_parse__truncated_escape),
        cmocka_unit_test(test_col_query_parse__nul_byte_rejected),
        cmocka_unit_test(test_col_query_parse__first_error_reported),
        cmocka_unit_test(test_col_query_parse__first_wins),
        cmocka_unit_test(test_col_query_parse__unknown_params_ignored),
        cmocka_unit_test(test_col_query_parse__missing_equals_and_empty_values),
        cmocka_unit_test(test_col_query_parse__unknown_event_type),
        cmocka_unit_test(test_col_query_parse__limits_after_decoding),
        cmocka_unit_test(test_col_query_parse__bad_utf8_left_to_check),
        cmocka_unit_test(test_col_query_parse__small_buffer_never_overflows),
        cmocka_unit_test(test_col_percent_decode__cases),
        cmocka_unit_test(test_col_query_parse__conversion_params),
        cmocka_unit_test(test_col_click_location__query_and_fragment),
        cmocka_unit_test(test_col_click_signed_message__and_param_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
