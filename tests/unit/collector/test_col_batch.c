/* Unit tests for collector/col_batch.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <bson/bson.h>
#include <stdlib.h>

#include "col_batch.h"

static int parse(const char *body, col_batch_t *b, at_err_t *err)
{
    /* exact-size heap copy so ASan sees any read past the body */
    size_t len = strlen(body);
    char *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    memcpy(copy, body, len);
    int rc = col_batch_parse(copy, len, b, err);
    free(copy); /* the batch must not keep pointers into the body */
    return rc;
}

static void assert_str(at_str_t s, const char *want)
{
    if (want == NULL) {
        assert_int_equal(s.len, 0);
        return;
    }
    assert_int_equal(s.len, strlen(want));
    assert_memory_equal(s.p, want, s.len);
}

static void test_col_batch_parse__valid_events(void **state)
{
    (void)state;
    col_batch_t b;
    at_err_t err = {AT_OK, ""};
    const char *body =
        "[{\"e\":\"imp\",\"c\":\"camp-1\",\"cr\":\"cr-9\",\"p\":\"pub-3\",\"pl\":\"top\",\"uid\":\"u-1\","
        "\"u\":\"https://a.example/\\u20ac\",\"tag\":\"run-1:1\"},\n {\"e\":\"view\",\"c\":\"camp-2\"}]";
    assert_int_equal(parse(body, &b, &err), 0);
    assert_int_equal(b.count, 2);
    col_batch_item_t *it = &b.items[0];
    assert_int_equal(it->reject, AT_REJ_NONE);
    assert_int_equal(it->ev.type, AT_EV_IMP);
    assert_int_equal(it->ev.src, AT_SRC_BEACON);
    assert_str(it->ev.c, "camp-1");
    assert_str(it->ev.cr, "cr-9");
    assert_str(it->ev.p, "pub-3");
    assert_str(it->ev.pl, "top");
    assert_str(it->ev.uid, "u-1");
    assert_str(it->ev.u, "https://a.example/\xe2\x82\xac");
    assert_str(it->ev.tag, "run-1:1");
    assert_non_null(it->raw);
    assert_int_equal(it->rawlen, strlen(it->raw));
    assert_non_null(strstr(it->raw, "\"camp-1\""));
    assert_int_equal(b.items[1].reject, AT_REJ_NONE);
    assert_int_equal(b.items[1].ev.type, AT_EV_VIEW);
    assert_str(b.items[1].ev.c, "camp-2");
    col_batch_free(&b);
    assert_null(b.items);
    col_batch_free(NULL);
}

static void test_col_batch_parse__mixed_valid_and_invalid(void **state)
{
    (void)state;
    col_batch_t b;
    at_err_t err;
    const char *body = "[{\"e\":\"imp\",\"c\":\"ok\"},"
                       " {\"e\":\"imp\"},"                                 /* 1 missing c */
                       " {\"c\":\"x\"},"                                   /* 2 missing e */
                       " {\"e\":\"hover\",\"c\":\"x\"},"                   /* 3 unknown type */
                       " {\"e\":\"imp\",\"c\":\"a b\"},"                   /* 4 invalid c */
                       " {\"e\":\"imp\",\"c\":\"x\",\"u\":\"a\\u0000b\"}," /* 5 NUL in u */
                       " 42,"                                              /* 6 not an object */
                       " {\"e\":\"imp\",\"c\":7,\"uid\":\"keep\"},"        /* 7 non-string c */
                       " {\"e\":[\"imp\"],\"c\":\"x\"},"                   /* 8 non-string e */
                       " {\"e\":\"click\",\"c\":\"x\",\"tag\":\"t\"}]";
    assert_int_equal(parse(body, &b, &err), 0);
    assert_int_equal(b.count, 10);
    assert_int_equal(b.items[0].reject, AT_REJ_NONE);
    assert_int_equal(b.items[1].reject, AT_REJ_MISSING_FIELD);
    assert_memory_equal(b.items[1].detail, "c: missing", 10);
    assert_int_equal(b.items[2].reject, AT_REJ_MISSING_FIELD);
    assert_memory_equal(b.items[2].detail, "e: missing", 10);
    assert_int_equal(b.items[3].reject, AT_REJ_UNKNOWN_EVENT_TYPE);
    assert_non_null(strstr(b.items[3].detail, "\"hover\""));
    assert_int_equal(b.items[4].reject, AT_REJ_INVALID_FIELD);
    assert_int_equal(b.items[5].reject, AT_REJ_BAD_ENCODING);
    assert_memory_equal(b.items[5].detail, "u: ", 3);
    assert_int_equal(b.items[6].reject, AT_REJ_MALFORMED_ENVELOPE);
    assert_string_equal(b.items[6].detail, "event 6: expected a JSON object");
    assert_string_equal(b.items[6].raw, "42");
    assert_int_equal(b.items[7].reject, AT_REJ_MALFORMED_ENVELOPE);
    assert_string_equal(b.items[7].detail, "c: expected a string");
    assert_str(b.items[7].ev.uid, "keep"); /* other fields still read for the record */
    assert_int_equal(b.items[8].reject, AT_REJ_MALFORMED_ENVELOPE);
    assert_string_equal(b.items[8].detail, "e: expected a string");
    assert_int_equal(b.items[9].reject, AT_REJ_NONE);
    assert_int_equal(b.items[9].ev.type, AT_EV_CLICK);
    for (size_t i = 0; i < b.count; i++) {
        assert_int_equal(b.items[i].ev.src, AT_SRC_BEACON);
        assert_non_null(b.items[i].raw);
    }
    col_batch_free(&b);
}

/* A rejected item serialises to valid JSON with its raw element. */
static void test_col_batch_parse__rejected_item_serialises(void **state)
{
    (void)state;
    col_batch_t b;
    at_err_t err;
    assert_int_equal(
        parse("[{\"e\":\"imp\",\"c\":{\"$oid\":\"000000000000000000000001\"},\"x\":[1,{\"y\":null}]}]", &b, &err), 0);
    assert_int_equal(b.count, 1);
    col_batch_item_t *it = &b.items[0];
    assert_int_equal(it->reject, AT_REJ_MALFORMED_ENVELOPE);
    size_t len = 0;
    char *json = at_event_rejected_to_json(&it->ev, it->reject, it->detail, it->raw, it->rawlen, &len);
    assert_non_null(json);
    bson_error_t be;
    bson_t *doc = bson_new_from_json((const uint8_t *)json, (ssize_t)len, &be);
    assert_non_null(doc);
    bson_iter_t bi;
    assert_true(bson_iter_init_find(&bi, doc, "raw"));
    assert_non_null(strstr(bson_iter_utf8(&bi, NULL), "$oid"));
    assert_true(bson_iter_init_find(&bi, doc, "reason"));
    assert_string_equal(bson_iter_utf8(&bi, NULL), "malformed_envelope");
    bson_destroy(doc);
    bson_free(json);
    col_batch_free(&b);
}

static void test_col_batch_parse__empty_array(void **state)
{
    (void)state;
    col_batch_t b;
    at_err_t err;
    assert_int_equal(parse(" [ ] \r\n", &b, &err), 0);
    assert_int_equal(b.count, 0);
    col_batch_free(&b);
}

static void expect_invalid(const char *body, at_errcode_t code, const char *msg_prefix)
{
    col_batch_t b;
    at_err_t err = {AT_OK, ""};
    if (parse(body, &b, &err) != -1)
        fail_msg("accepted: %.80s", body);
    assert_int_equal(err.code, code);
    if (strncmp(err.msg, msg_prefix, strlen(msg_prefix)) != 0)
        fail_msg("message \"%s\" does not start with \"%s\"", err.msg, msg_prefix);
    assert_int_equal(b.count, 0);
    assert_null(b.items);
    assert_null(b.doc);
    col_batch_free(&b);
}

static void test_col_batch_parse__not_an_array(void **state)
{
    (void)state;
    expect_invalid("", AT_ERR_INVALID, "body: expected a JSON array");
    expect_invalid("   ", AT_ERR_INVALID, "body: expected a JSON array");
    expect_invalid("{\"e\":\"imp\",\"c\":\"x\"}", AT_ERR_INVALID, "body: expected a JSON array");
    expect_invalid("\"[]\"", AT_ERR_INVALID, "body: expected a JSON array");
    expect_invalid("e=imp&c=x", AT_ERR_INVALID, "body: expected a JSON array");
    expect_invalid("\xef\xbb\xbf[]", AT_ERR_INVALID, "body: expected a JSON array");
}

static void test_col_batch_parse__not_json(void **state)
{
    (void)state;
    expect_invalid("[", AT_ERR_INVALID, "body: not JSON");
    expect_invalid("[{\"e\":\"imp\"]", AT_ERR_INVALID, "body: not JSON");
    expect_invalid("[1,]", AT_ERR_INVALID, "body: not JSON");
    expect_invalid("[\"\xff\"]", AT_ERR_INVALID, "body: not JSON");
    expect_invalid("[\"]", AT_ERR_INVALID, "body: not JSON");
    expect_invalid("[nul]", AT_ERR_INVALID, "body: not JSON");
}

static void test_col_batch_parse__trailing_garbage(void **state)
{
    (void)state;
    /* libbson alone would accept the first two, silently dropping the second value */
    expect_invalid("[{\"e\":\"imp\",\"c\":\"x\"}] {\"e\":\"imp\",\"c\":\"y\"}", AT_ERR_INVALID,
                   "body: unexpected text after the JSON array at byte 22");
    expect_invalid("[] []", AT_ERR_INVALID, "body: unexpected text after");
    expect_invalid("[]x", AT_ERR_INVALID, "body: unexpected text after the JSON array at byte 2");
    expect_invalid("[]]", AT_ERR_INVALID, "body: unexpected text after");
    /* brackets inside strings do not end the array */
    col_batch_t b;
    at_err_t err;
    assert_int_equal(parse("[{\"e\":\"imp\",\"c\":\"x\",\"u\":\"]}\\\"]\"}]  ", &b, &err), 0);
    assert_int_equal(b.count, 1);
    assert_str(b.items[0].ev.u, "]}\"]");
    col_batch_free(&b);
}

static void test_col_batch_parse__too_many(void **state)
{
    (void)state;
    size_t n = COL_BATCH_MAX_EVENTS + 1;
    char *body = malloc(n * 32 + 4);
    size_t o = 0;
    body[o++] = '[';
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(body + o, 32, "%s{\"e\":\"imp\",\"c\":\"c\"}", i ? "," : "");
    body[o++] = ']';
    body[o] = '\0';
    expect_invalid(body, AT_ERR_TOO_LARGE, "body: 501 events, more than 500");

    /* exactly the limit is fine */
    char *last = strrchr(body, '{');
    last[-1] = ']';
    last[0] = '\0';
    col_batch_t b;
    at_err_t err;
    assert_int_equal(parse(body, &b, &err), 0);
    assert_int_equal(b.count, COL_BATCH_MAX_EVENTS);
    assert_int_equal(b.items[COL_BATCH_MAX_EVENTS - 1].reject, AT_REJ_NONE);
    col_batch_free(&b);
    free(body);
}

static void test_col_batch_parse__nested_objects_and_unknown_keys(void **state)
{
    (void)state;
    col_batch_t b;
    at_err_t err;
    const char *body = "[{\"meta\":{\"deep\":[{\"c\":\"not-me\"}]},\"e\":\"imp\",\"c\":\"camp-1\",\"ua\":\"x\","
                       "\"ip\":\"1.1.1.1\",\"ref\":\"r\",\"d\":\"d\",\"extra\":1.5,\"c\":\"second\"},"
                       " [{\"e\":\"imp\",\"c\":\"in-array\"}], {\"e\":\"imp\",\"c\":{\"nested\":\"x\"}}]";
    assert_int_equal(parse(body, &b, &err), 0);
    assert_int_equal(b.count, 3);
    col_batch_item_t *it = &b.items[0];
    assert_int_equal(it->reject, AT_REJ_NONE);
    assert_str(it->ev.c, "camp-1"); /* not the nested one, and the first of two */
    assert_str(it->ev.ua, NULL);    /* ua, ip, ref, d are not taken from the body */
    assert_str(it->ev.ip, NULL);
    assert_str(it->ev.ref, NULL);
    assert_str(it->ev.d, NULL);
    assert_non_null(strstr(it->raw, "\"deep\""));
    assert_int_equal(b.items[1].reject, AT_REJ_MALFORMED_ENVELOPE); /* an array is not an object */
    assert_memory_equal(b.items[1].raw, "[ { ", 4);
    assert_int_equal(b.items[2].reject, AT_REJ_MALFORMED_ENVELOPE);
    assert_string_equal(b.items[2].detail, "c: expected a string");
    col_batch_free(&b);
}

static void test_col_batch_parse__field_limits(void **state)
{
    (void)state;
    char body[512];
    char c64[65], c65[66];
    memset(c64, 'a', 64);
    c64[64] = '\0';
    memset(c65, 'a', 65);
    c65[65] = '\0';
    snprintf(body, sizeof(body), "[{\"e\":\"imp\",\"c\":\"%s\"},{\"e\":\"imp\",\"c\":\"%s\"}]", c64, c65);
    col_batch_t b;
    at_err_t err;
    assert_int_equal(parse(body, &b, &err), 0);
    assert_int_equal(b.items[0].reject, AT_REJ_NONE);
    assert_int_equal(b.items[1].reject, AT_REJ_FIELD_TOO_LONG);
    assert_memory_equal(b.items[1].detail, "c: 65 bytes", 11);
    col_batch_free(&b);
}

/* A conversion by beacon: clid, order, payout_micros; the clid's campaign is c. */
static void test_col_batch_parse__conversion(void **state)
{
    (void)state;
    col_batch_t b;
    at_err_t err = {AT_OK, ""};
    const char *body = "[{\"e\":\"conv\",\"clid\":\"0190a000-0000-7000-8000-0000000000c1.camp-7\",\"order\":\"o-1\","
                       "\"payout_micros\":\"2500000\"},{\"e\":\"conv\",\"order\":\"o-2\"},"
                       "{\"e\":\"conv\",\"c\":\"camp-1\",\"payout_micros\":\"-1\"}]";
    assert_int_equal(parse(body, &b, &err), 0);
    assert_int_equal(b.count, 3);
    assert_int_equal(b.items[0].reject, AT_REJ_NONE);
    assert_str(b.items[0].ev.c, "camp-7");
    assert_str(b.items[0].ev.clid, "0190a000-0000-7000-8000-0000000000c1.camp-7");
    assert_str(b.items[0].ev.order, "o-1");
    assert_str(b.items[0].ev.payout_micros, "2500000");
    assert_int_equal(b.items[1].reject, AT_REJ_MISSING_FIELD); /* neither c nor clid */
    assert_int_equal(b.items[2].reject, AT_REJ_INVALID_FIELD);
    assert_non_null(strstr(b.items[2].detail, "payout_micros"));
    col_batch_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_col_batch_parse__conversion),
        cmocka_unit_test(test_col_batch_parse__valid_events),
        cmocka_unit_test(test_col_batch_parse__mixed_valid_and_invalid),
        cmocka_unit_test(test_col_batch_parse__rejected_item_serialises),
        cmocka_unit_test(test_col_batch_parse__empty_array),
        cmocka_unit_test(test_col_batch_parse__not_an_array),
        cmocka_unit_test(test_col_batch_parse__not_json),
        cmocka_unit_test(test_col_batch_parse__trailing_garbage),
        cmocka_unit_test(test_col_batch_parse__too_many),
        cmocka_unit_test(test_col_batch_parse__nested_objects_and_unknown_keys),
        cmocka_unit_test(test_col_batch_parse__field_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
