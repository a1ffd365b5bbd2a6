/*
 * test_cd_doc.c: validation of campaigns, publishers, API bodies and feed updates: every
 * field's rule, every error path, and that every problem of a document is reported.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "cd_doc.h"

#define GOOD_CAMPAIGN                                                                                                  \
    "{\"advertiser\":\"adv-1\",\"advertiser_name\":\"Acme Shoes\",\"name\":\"Spring sale\",\"status\":\"active\","     \
    "\"start\":\"2026-11-01T00:00:00Z\",\"end\":\"2026-12-31T23:59:59Z\",\"budget_micros\":5000000000,"                \
    "\"pricing\":\"cpm\",\"price_micros\":2500000,\"publishers\":[\"pub-1\",\"pub-2\"],"                               \
    "\"destinations\":[\"https://acme.example/spring\"]}"

/* Validates @p json as a campaign for path id camp-1; returns the rc and fills errs/out. */
static int validate(cd_kind_t kind, const char *json, cd_verrs_t *errs, bson_t *out, int64_t *ev)
{
    bson_t in;
    memset(errs, 0, sizeof(*errs));
    if (cd_json_object(json, strlen(json), &in, errs) != 0)
        return -2;
    int rc = cd_doc_validate(kind, &in, kind == CD_KIND_CAMPAIGN ? "camp-1" : "pub-1", out, ev, errs);
    bson_destroy(&in);
    return rc;
}

static bool has_error(const cd_verrs_t *e, const char *field, const char *expected_part)
{
    for (size_t i = 0; i < e->count; i++)
        if (strcmp(e->items[i].field, field) == 0 &&
            (expected_part == NULL || strstr(e->items[i].expected, expected_part)))
            return true;
    return false;
}

/* Replaces "key":<value> in GOOD_CAMPAIGN by "key":<repl> (or removes it when repl is NULL). */
static char *campaign_with(const char *key, const char *repl)
{
    bson_t in, out = BSON_INITIALIZER;
    bson_error_t berr;
    assert_true(bson_init_from_json(&in, GOOD_CAMPAIGN, -1, &berr));
    bson_iter_t it;
    bson_iter_init(&it, &in);
    bool done = false;
    char *json;
    /* Build the text by hand: libbson cannot hold a raw JSON fragment. */
    size_t cap = 4096;
    char *buf = malloc(cap);
    size_t off = 0;
    off += (size_t)snprintf(buf + off, cap - off, "{");
    bool first = true;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        bson_t one = BSON_INITIALIZER;
        if (strcmp(k, key) == 0) {
            done = true;
            if (repl == NULL)
                continue;
            off += (size_t)snprintf(buf + off, cap - off, "%s\"%s\":%s", first ? "" : ",", k, repl);
            first = false;
            continue;
        }
        bson_append_iter(&one, k, -1, &it);
        size_t l;
        json = bson_as_relaxed_extended_json(&one, &l);
        /* strip the braces of {"k": v} */
        char *s = strchr(json, '{') + 1;
        char *e = strrchr(json, '}');
        *e = '\0';
        off += (size_t)snprintf(buf + off, cap - off, "%s%s", first ? "" : ",", s);
        first = false;
        bson_free(json);
        bson_destroy(&one);
    }
    if (!done && repl != NULL)
        off += (size_t)snprintf(buf + off, cap - off, "%s\"%s\":%s", first ? "" : ",", key, repl);
    snprintf(buf + off, cap - off, "}");
    bson_destroy(&in);
    bson_destroy(&out);
    return buf;
}

static void expect_field_error(const char *key, const char *repl, const char *field, const char *expected_part)
{
    char *json = campaign_with(key, repl);
    cd_verrs_t errs;
    bson_t out;
    int64_t ev;
    int rc = validate(CD_KIND_CAMPAIGN, json, &errs, &out, &ev);
    if (rc != -1 || !has_error(&errs, field, expected_part)) {
        char sum[2048];
        fail_msg("%s=%s: rc %d, errors: %s", key, repl ? repl : "(absent)", rc,
                 cd_verrs_summary(&errs, sum, sizeof(sum)));
    }
    free(json);
}

static void test_cd_doc_validate__good_campaign_is_canonical(void **state)
{
    (void)state;
    cd_verrs_t errs;
    bson_t out;
    int64_t ev;
    assert_int_equal(validate(CD_KIND_CAMPAIGN, GOOD_CAMPAIGN, &errs, &out, &ev), 0);
    assert_int_equal(ev, -1);
    char buf[64];
    assert_string_equal(cd_doc_utf8(&out, "id", buf, sizeof(buf)), "camp-1");
    assert_int_equal(cd_doc_int64(&out, "budget_micros", -1), 5000000000LL);
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, &out, "price_micros"));
    assert_true(BSON_ITER_HOLDS_INT64(&it)); /* int32 in, int64 stored */
    assert_false(bson_iter_init_find(&it, &out, "version"));
    bson_destroy(&out);
}

static void test_cd_doc_validate__defaults_for_optional_fields(void **state)
{
    (void)state;
    const char *json = "{\"advertiser\":\"a\",\"name\":\"n\",\"start\":\"2026-01-01T00:00:00Z\","
                       "\"end\":\"2026-01-02T00:00:00Z\",\"budget_micros\":0,\"pricing\":\"cpc\",\"price_micros\":0}";
    cd_verrs_t errs;
    bson_t out;
    int64_t ev;
    assert_int_equal(validate(CD_KIND_CAMPAIGN, json, &errs, &out, &ev), 0);
    char buf[64];
    assert_string_equal(cd_doc_utf8(&out, "status", buf, sizeof(buf)), "active");
    assert_string_equal(cd_doc_utf8(&out, "advertiser_name", buf, sizeof(buf)), "");
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, &out, "publishers") && BSON_ITER_HOLDS_ARRAY(&it));
    assert_true(bson_iter_init_find(&it, &out, "destinations") && BSON_ITER_HOLDS_ARRAY(&it));
    bson_destroy(&out);
}

static void test_cd_doc_validate__every_field_rule(void **state)
{
    (void)state;
    /* wrong types */
    expect_field_error("advertiser", "5", "advertiser", "advertiser id");
    expect_field_error("name", "[\"x\"]", "name", "1 to 256");
    expect_field_error("budget_micros", "\"5\"", "budget_micros", "integer");
    expect_field_error("budget_micros", "5.0", "budget_micros", "integer");
    expect_field_error("price_micros", "true", "price_micros", "10^12");
    expect_field_error("publishers", "\"pub-1\"", "publishers", "array");
    expect_field_error("destinations", "{}", "destinations", "array");
    expect_field_error("status", "1", "status", "active");
    expect_field_error("start", "{\"$date\":\"2026-01-01T00:00:00Z\"}", "start", "RFC 3339");
    /* out of range / bad values */
    expect_field_error("advertiser", "\"\"", "advertiser", NULL);
    expect_field_error("advertiser", "\"adv 1\"", "advertiser", NULL);
    expect_field_error("advertiser", "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"",
                       "advertiser", NULL);
    expect_field_error("name", "\"\"", "name", NULL);
    expect_field_error("status", "\"running\"", "status", NULL);
    expect_field_error("status", "\"blocked\"", "status", NULL); /* a publisher status */
    expect_field_error("start", "\"2026-02-30T00:00:00Z\"", "start", NULL);
    expect_field_error("start", "\"2026-11-01 00:00:00Z\"", "start", NULL);
    expect_field_error("start", "\"2026-11-01T00:00:00+01:00\"", "start", NULL);
    expect_field_error("end", "\"1969-12-31T23:59:59Z\"", "end", NULL);
    expect_field_error("end", "\"2026-11-01T00:00:00Z\"", "end", "after start"); /* end == start */
    expect_field_error("end", "\"2026-10-01T00:00:00Z\"", "end", "after start"); /* end before start */
    expect_field_error("budget_micros", "-1", "budget_micros", NULL);
    expect_field_error("budget_micros", "1000000000000001", "budget_micros", NULL);
    expect_field_error("price_micros", "1000000000001", "price_micros", NULL);
    expect_field_error("pricing", "\"cpa\"", "pricing", "cpm");
    expect_field_error("publishers", "[\"pub-1\",\"bad id\"]", "publishers[1]", "publisher id");
    expect_field_error("publishers", "[\"pub-1\",\"pub-1\"]", "publishers[1]", "not listed before");
    expect_field_error("publishers", "[1]", "publishers[0]", NULL);
    expect_field_error("destinations", "[\"javascript:alert(1)\"]", "destinations[0]", "http");
    expect_field_error("destinations", "[\"https://\"]", "destinations[0]", NULL);
    expect_field_error("destinations", "[\"https://a.example/x y\"]", "destinations[0]", NULL);
    expect_field_error("version", "-1", "version", NULL);
    expect_field_error("version", "\"3\"", "version", NULL);
    expect_field_error("id", "\"camp-2\"", "id", "same id as in the URL");
    /* missing required fields */
    expect_field_error("advertiser", NULL, "advertiser", "required");
    expect_field_error("name", NULL, "name", "required");
    expect_field_error("start", NULL, "start", "required");
    expect_field_error("end", NULL, "end", "required");
    expect_field_error("budget_micros", NULL, "budget_micros", "required");
    expect_field_error("pricing", NULL, "pricing", "required");
    expect_field_error("price_micros", NULL, "price_micros", "required");
    /* unknown field */
    expect_field_error("colour", "\"red\"", "colour", "unknown field");
    expect_field_error("deleted", "true", "deleted", "unknown field");
}

static void test_cd_doc_validate__lists_every_bad_field(void **state)
{
    (void)state;
    const char *json =
        "{\"advertiser\":\"adv 1\",\"name\":\"\",\"start\":\"2026-12-01T00:00:00Z\",\"end\":\"2026-11-01T00:00:00Z\","
        "\"budget_micros\":-5,\"pricing\":\"cpx\",\"price_micros\":2.5,\"extra\":1}";
    cd_verrs_t errs;
    bson_t out;
    int64_t ev;
    assert_int_equal(validate(CD_KIND_CAMPAIGN, json, &errs, &out, &ev), -1);
    assert_true(has_error(&errs, "advertiser", NULL));
    assert_true(has_error(&errs, "name", NULL));
    assert_true(has_error(&errs, "end", "after start"));
    assert_true(has_error(&errs, "budget_micros", NULL));
    assert_true(has_error(&errs, "pricing", NULL));
    assert_true(has_error(&errs, "price_micros", NULL));
    assert_true(has_error(&errs, "extra", "unknown"));
    assert_int_equal(errs.count, 7);
}

static void test_cd_doc_validate__duplicate_key(void **state)
{
    (void)state;
    cd_verrs_t errs;
    bson_t out;
    int64_t ev;
    const char *json = "{\"id\":\"pub-1\",\"name\":\"a\",\"name\":\"b\",\"domain\":\"news.example\"}";
    assert_int_equal(validate(CD_KIND_PUBLISHER, json, &errs, &out, &ev), -1);
    assert_true(has_error(&errs, "name", "only once"));
}

static void test_cd_doc_validate__publisher(void **state)
{
    (void)state;
    cd_verrs_t errs;
    bson_t out;
    int64_t ev;
    assert_int_equal(validate(CD_KIND_PUBLISHER, "{\"name\":\"Daily News\",\"domain\":\"news.example\",\"version\":4}",
                              &errs, &out, &ev),
                     0);
    assert_int_equal(ev, 4);
    bson_destroy(&out);
    assert_int_equal(validate(CD_KIND_PUBLISHER,
                              "{\"name\":\"x\",\"domain\":\"-bad.example\",\"status\":\"paused\",\"budget_micros\":1}",
                              &errs, &out, &ev),
                     -1);
    assert_true(has_error(&errs, "domain", NULL));
    assert_true(has_error(&errs, "status", "blocked"));
    assert_true(has_error(&errs, "budget_micros", "unknown"));
    assert_int_equal(validate(CD_KIND_PUBLISHER, "{\"domain\":\"a..b\"}", &errs, &out, &ev), -1);
    assert_true(has_error(&errs, "name", "required"));
    assert_true(has_error(&errs, "domain", NULL));
}

static void test_cd_json_object__malformed(void **state)
{
    (void)state;
    const char *bad[] = {"", "   ", "[1,2]", "\"x\"", "{", "{\"a\":}", "{\"a\":1}}", "nul", "{\"a\":1e999999}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cd_verrs_t errs = {0};
        bson_t out;
        if (cd_json_object(bad[i], strlen(bad[i]), &out, &errs) == 0) {
            bson_destroy(&out);
            fail_msg("accepted '%s'", bad[i]);
        }
        assert_true(has_error(&errs, "(body)", "JSON object"));
    }
}

static void test_cd_time_parse__forms(void **state)
{
    (void)state;
    int64_t ms;
    assert_int_equal(cd_time_parse("1970-01-01T00:00:00Z", 20, &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(cd_time_parse("2026-11-01T00:00:00.5Z", 22, &ms), 0);
    assert_int_equal(ms, 1793491200500LL);
    assert_int_equal(cd_time_parse("2024-02-29T12:00:00Z", 20, &ms), 0);
    assert_int_equal(cd_time_parse("2023-02-29T12:00:00Z", 20, &ms), -1);
    assert_int_equal(cd_time_parse("2026-11-01T24:00:00Z", 20, &ms), -1);
    assert_int_equal(cd_time_parse("2026-11-01T00:00:00.Z", 21, &ms), -1);
    assert_int_equal(cd_time_parse("2026-11-01T00:00:00.1234567890Z", 31, &ms), -1);
}

static void test_cd_budget_body__rules(void **state)
{
    (void)state;
    cd_update_t u;
    cd_verrs_t errs = {0};
    bson_t *b = bson_new_from_json((const uint8_t *)"{\"topup_micros\":5,\"version\":3}", -1, NULL);
    cd_update_init(&u);
    assert_int_equal(cd_budget_body(b, &u, &errs), 0);
    assert_int_equal(u.op, CD_OP_BUDGET_TOPUP);
    assert_int_equal(u.amount, 5);
    assert_int_equal(u.expect_version, 3);
    bson_destroy(b);

    const char *bad[][2] = {{"{}", "set_micros"},
                            {"{\"set_micros\":1,\"topup_micros\":1}", "set_micros"},
                            {"{\"topup_micros\":0}", "topup_micros"},
                            {"{\"set_micros\":-1}", "set_micros"},
                            {"{\"set_micros\":\"1\"}", "set_micros"},
                            {"{\"set_micros\":1,\"x\":1}", "x"}};
    for (size_t i = 0; i < 6; i++) {
        memset(&errs, 0, sizeof(errs));
        b = bson_new_from_json((const uint8_t *)bad[i][0], -1, NULL);
        assert_int_equal(cd_budget_body(b, &u, &errs), -1);
        assert_true(has_error(&errs, bad[i][1], NULL));
        bson_destroy(b);
    }
    memset(&errs, 0, sizeof(errs));
    assert_int_equal(cd_budget_body(NULL, &u, &errs), -1);
    cd_update_free(&u);
}

static void test_cd_update_parse__ops(void **state)
{
    (void)state;
    cd_update_t u;
    cd_verrs_t errs = {0};
    bool malformed;
    char json[2048];
    snprintf(json, sizeof(json), "{\"kind\":\"campaign\",\"op\":\"put\",\"doc\":%s}", GOOD_CAMPAIGN);
    /* no id in doc -> required */
    assert_int_equal(cd_update_parse(json, strlen(json), &u, &errs, &malformed), -1);
    assert_false(malformed);
    assert_true(has_error(&errs, "doc.id", "required"));

    memset(&errs, 0, sizeof(errs));
    snprintf(json, sizeof(json), "{\"kind\":\"campaign\",\"op\":\"put\",\"version\":7,\"doc\":{\"id\":\"c-9\",%s}",
             GOOD_CAMPAIGN + 1);
    assert_int_equal(cd_update_parse(json, strlen(json), &u, &errs, &malformed), 0);
    assert_int_equal(u.op, CD_OP_PUT);
    assert_string_equal(u.id, "c-9");
    assert_int_equal(u.expect_version, 7);
    cd_update_free(&u);

    const char *ok[] = {"{\"kind\":\"publisher\",\"op\":\"delete\",\"id\":\"pub-1\"}",
                        "{\"kind\":\"campaign\",\"op\":\"budget\",\"id\":\"c\",\"topup_micros\":10}",
                        "{\"kind\":\"campaign\",\"op\":\"pause\",\"id\":\"c\",\"version\":2}",
                        "{\"kind\":\"campaign\",\"op\":\"resume\",\"id\":\"c\"}"};
    const cd_op_t ops[] = {CD_OP_DELETE, CD_OP_BUDGET_TOPUP, CD_OP_PAUSE, CD_OP_RESUME};
    for (size_t i = 0; i < 4; i++) {
        memset(&errs, 0, sizeof(errs));
        assert_int_equal(cd_update_parse(ok[i], strlen(ok[i]), &u, &errs, &malformed), 0);
        assert_int_equal(u.op, ops[i]);
        cd_update_free(&u);
    }

    const char *bad[][2] = {
        {"{\"op\":\"put\",\"doc\":{}}", "kind"},
        {"{\"kind\":\"advertiser\",\"op\":\"delete\",\"id\":\"x\"}", "kind"},
        {"{\"kind\":\"campaign\",\"op\":\"upsert\",\"id\":\"x\"}", "op"},
        {"{\"kind\":\"campaign\",\"id\":\"x\"}", "op"},
        {"{\"kind\":\"publisher\",\"op\":\"pause\",\"id\":\"x\"}", "op"},
        {"{\"kind\":\"campaign\",\"op\":\"delete\"}", "id"},
        {"{\"kind\":\"campaign\",\"op\":\"delete\",\"id\":\"a b\"}", "id"},
        {"{\"kind\":\"campaign\",\"op\":\"budget\",\"id\":\"x\"}", "set_micros"},
        {"{\"kind\":\"campaign\",\"op\":\"delete\",\"id\":\"x\",\"set_micros\":1}", "set_micros"},
        {"{\"kind\":\"campaign\",\"op\":\"put\"}", "doc"},
        {"{\"kind\":\"campaign\",\"op\":\"put\",\"doc\":[]}", "doc"},
        {"{\"kind\":\"campaign\",\"op\":\"delete\",\"id\":\"x\",\"surprise\":1}", "surprise"},
        {"{\"kind\":\"campaign\",\"op\":\"delete\",\"id\":\"x\",\"version\":-3}", "version"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        memset(&errs, 0, sizeof(errs));
        if (cd_update_parse(bad[i][0], strlen(bad[i][0]), &u, &errs, &malformed) != -1)
            fail_msg("accepted %s", bad[i][0]);
        if (!has_error(&errs, bad[i][1], NULL)) {
            char sum[1024];
            fail_msg("%s: expected an error on %s, got %s", bad[i][0], bad[i][1],
                     cd_verrs_summary(&errs, sum, sizeof(sum)));
        }
        assert_false(malformed);
    }
    memset(&errs, 0, sizeof(errs));
    assert_int_equal(cd_update_parse("not json", 8, &u, &errs, &malformed), -1);
    assert_true(malformed);
}

static void test_cd_utf8_sanitize__always_valid(void **state)
{
    (void)state;
    const char in[] = "ok\xff\xfe\0x\xe2\x82\xac";
    char *s = cd_utf8_sanitize(in, sizeof(in) - 1, 2048);
    assert_true(bson_utf8_validate(s, strlen(s), false));
    assert_non_null(strstr(s, "\xe2\x82\xac"));
    bson_free(s);
    s = cd_utf8_sanitize("abcdef", 6, 3);
    assert_string_equal(s, "abc");
    bson_free(s);
}

static void test_cd_verrs_add__bounded(void **state)
{
    (void)state;
    cd_verrs_t e = {0};
    for (int i = 0; i < 40; i++)
        cd_verrs_add(&e, "f\x01\"", "x %d", i);
    assert_int_equal(e.count, CD_VERRS_MAX);
    assert_int_equal(e.dropped, 8);
    assert_string_equal(e.items[0].field, "f??");
}

/* The optional attribution fields (docs/REPORTS.md "Attribution"). */
static void test_cd_doc_validate__attribution_fields(void **state)
{
    (void)state;
    char *json = campaign_with("destinations", "[],\"click_param\":\"gclid\",\"lookback_days\":7,\"payout_micros\":2500000");
    cd_verrs_t errs;
    bson_t out;
    int64_t ev;
    int rc = validate(CD_KIND_CAMPAIGN, json, &errs, &out, &ev);
    if (rc != 0) {
        char sum[1024];
        fail_msg("rc %d: %s", rc, cd_verrs_summary(&errs, sum, sizeof(sum)));
    }
    char buf[64];
    assert_string_equal(cd_doc_utf8(&out, "click_param", buf, sizeof(buf)), "gclid");
    assert_int_equal(cd_doc_int64(&out, "lookback_days", -1), 7);
    assert_int_equal(cd_doc_int64(&out, "payout_micros", -1), 2500000);
    bson_destroy(&out);
    free(json);
    /* absent: no default is written (the enricher and tracker apply theirs) */
    assert_int_equal(validate(CD_KIND_CAMPAIGN, GOOD_CAMPAIGN, &errs, &out, &ev), 0);
    bson_iter_t it;
    assert_false(bson_iter_init_find(&it, &out, "lookback_days"));
    bson_destroy(&out);

    expect_field_error("click_param", "\"\"", "click_param", "1 to 32");
    expect_field_error("click_param", "\"a=b\"", "click_param", "1 to 32");
    expect_field_error("click_param", "\"123456789012345678901234567890123\"", "click_param", NULL);
    expect_field_error("click_param", "5", "click_param", NULL);
    expect_field_error("lookback_days", "0", "lookback_days", "1 to 90");
    expect_field_error("lookback_days", "91", "lookback_days", NULL);
    expect_field_error("lookback_days", "\"30\"", "lookback_days", NULL);
    expect_field_error("payout_micros", "-1", "payout_micros", "10^12");
    expect_field_error("payout_micros", "1000000000001", "payout_micros", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cd_doc_validate__attribution_fields),
        cmocka_unit_test(test_cd_doc_validate__good_campaign_is_canonical),
        cmocka_unit_test(test_cd_doc_validate__defaults_for_optional_fields),
        cmocka_unit_test(test_cd_doc_validate__every_field_rule),
        cmocka_unit_test(test_cd_doc_validate__lists_every_bad_field),
        cmocka_unit_test(test_cd_doc_validate__duplicate_key),
        cmocka_unit_test(test_cd_doc_validate__publisher),
        cmocka_unit_test(test_cd_json_object__malformed),
        cmocka_unit_test(test_cd_time_parse__forms),
        cmocka_unit_test(test_cd_budget_body__rules),
        cmocka_unit_test(test_cd_update_parse__ops),
        cmocka_unit_test(test_cd_utf8_sanitize__always_valid),
        cmocka_unit_test(test_cd_verrs_add__bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
