/*
 * test_lt_profile.c: synthetic traffic: reproducibility, Zipf skew, event mix, profile
 * parsing, click signatures, beacon bodies.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "at_hmac.h"
#include "lt_profile.h"

#include <bson/bson.h>
#include <math.h>
#include <stdlib.h>

static void prepared(lt_profile_t *p, const char *json)
{
    lt_profile_defaults(p);
    at_err_t err;
    if (json && lt_profile_parse(p, json, strlen(json), &err) < 0)
        fail_msg("%s", err.msg);
    assert_int_equal(lt_profile_prepare(p, &err), 0);
}

static void gen(const lt_profile_t *p, uint64_t i, const char *tag, const char **m, lt_buf_t *t, lt_buf_t *b)
{
    lt_buf_t scratch = {0};
    lt_profile_request(p, i, tag, m, t, b, &scratch);
    lt_buf_free(&scratch);
}

static void test_lt_profile_request__reproducible_by_seed_and_index(void **state)
{
    (void)state;
    lt_profile_t p, q;
    prepared(&p, NULL);
    prepared(&q, "{\"seed\": 2}");
    lt_buf_t a = {0}, b = {0}, body = {0};
    const char *m;
    int differ = 0;
    for (uint64_t i = 0; i < 1000; i++) {
        gen(&p, i, NULL, &m, &a, &body);
        gen(&p, i, NULL, &m, &b, &body);
        assert_string_equal(a.data, b.data);
        gen(&q, i, NULL, &m, &b, &body);
        differ += strcmp(a.data, b.data) != 0;
    }
    assert_true(differ > 990);
    /* Known first request for seed 1, so a change in generation is noticed. */
    gen(&p, 0, NULL, &m, &a, &body);
    assert_string_equal(m, "GET");
    assert_true(strncmp(a.data, "/t.gif?e=", 9) == 0 || strncmp(a.data, "/c?e=click", 10) == 0);
    assert_non_null(strstr(a.data, "&c=camp-"));
    assert_non_null(strstr(a.data, "&uid=u-"));
    assert_non_null(strstr(a.data, "&u=https%3A%2F%2Fpub-"));
    assert_non_null(strstr(a.data, "&cb="));
    lt_buf_free(&a);
    lt_buf_free(&b);
    lt_buf_free(&body);
    lt_profile_free(&p);
    lt_profile_free(&q);
}

static void test_lt_zipf_sample__matches_theory(void **state)
{
    (void)state;
    lt_zipf_t z;
    assert_int_equal(lt_zipf_init(&z, 100, 1.0, NULL), 0);
    lt_rng_t r;
    lt_rng_seed(&r, 5);
    enum { N = 400000 };
    uint64_t counts[100] = {0};
    for (int i = 0; i < N; i++)
        counts[lt_zipf_sample(&z, &r)]++;
    double h = 0;
    for (int k = 1; k <= 100; k++)
        h += 1.0 / k;
    /* P(rank k) = 1 / (k H_100); with 400k samples the top ranks are within 2%. */
    for (int k = 1; k <= 5; k++) {
        double want = (double)N / (k * h);
        assert_true(fabs((double)counts[k - 1] - want) / want < 0.02);
    }
    assert_true(counts[0] > 9 * counts[9]);
    lt_zipf_free(&z);

    assert_int_equal(lt_zipf_init(&z, 10, 0.0, NULL), 0); /* uniform */
    uint64_t u[10] = {0};
    for (int i = 0; i < 100000; i++)
        u[lt_zipf_sample(&z, &r)]++;
    for (int k = 0; k < 10; k++)
        assert_true(fabs((double)u[k] - 10000) < 500);
    lt_zipf_free(&z);
}

static void test_lt_profile_request__event_mix(void **state)
{
    (void)state;
    lt_profile_t p;
    prepared(&p, "{\"mix\": {\"imp\": 60, \"view\": 20, \"click\": 15, \"conv\": 5}, \"click_key\": \"k\"}");
    lt_buf_t t = {0}, b = {0};
    const char *m;
    int imp = 0, view = 0, click = 0, conv = 0;
    for (uint64_t i = 0; i < 20000; i++) {
        gen(&p, i, NULL, &m, &t, &b);
        if (strncmp(t.data, "/t.gif?e=imp&", 13) == 0)
            imp++;
        else if (strncmp(t.data, "/t.gif?e=view&", 14) == 0)
            view++;
        else if (strncmp(t.data, "/c?e=click&", 11) == 0)
            click++;
        else if (strncmp(t.data, "/t.gif?e=conv&", 14) == 0)
            conv++;
        else
            fail_msg("unexpected request %s", t.data);
    }
    assert_true(abs(imp - 12000) < 400);
    assert_true(abs(view - 4000) < 300);
    assert_true(abs(click - 3000) < 300);
    assert_true(abs(conv - 1000) < 200);
    lt_buf_free(&t);
    lt_buf_free(&b);
    lt_profile_free(&p);
}

static void test_lt_profile_request__click_signature_verifies(void **state)
{
    (void)state;
    lt_profile_t p;
    prepared(&p, "{\"mix\": {\"click\": 1}, \"campaign_ids\": [\"summer-1\"], \"click_key\": \"s3cret\","
                 "\"click_dest\": \"https://shop.example/{c}?x=1\"}");
    lt_buf_t t = {0}, b = {0};
    const char *m;
    gen(&p, 7, NULL, &m, &t, &b);
    assert_non_null(strstr(t.data, "&c=summer-1&"));
    const char *d = strstr(t.data, "&d=");
    const char *sig = strstr(t.data, "&sig=");
    assert_non_null(d);
    assert_non_null(sig);
    assert_non_null(strstr(t.data, "&d=https%3A%2F%2Fshop.example%2Fsummer-1%3Fx%3D1&"));
    const char *dest = "https://shop.example/summer-1?x=1";
    assert_true(at_hmac_verify("s3cret", 6, dest, strlen(dest), sig + 5, AT_HMAC_SIG_LEN));
    lt_buf_free(&t);
    lt_buf_free(&b);
    lt_profile_free(&p);
}

static void test_lt_profile_request__beacon_batch_is_json_with_tags(void **state)
{
    (void)state;
    lt_profile_t p;
    prepared(&p, "{\"beacon_ratio\": 1.0, \"beacon_batch\": 3, \"publisher_ids\": [\"p1\", \"p2\"]}");
    lt_buf_t t = {0}, b = {0}, scratch = {0};
    const char *m;
    unsigned n = lt_profile_request(&p, 1, "run:1", &m, &t, &b, &scratch);
    assert_int_equal(n, 3);
    assert_string_equal(m, "POST");
    assert_string_equal(t.data, "/v1/events");
    bson_t doc;
    bson_error_t e;
    assert_true(bson_init_from_json(&doc, b.data, (ssize_t)b.len, &e));
    bson_iter_t it;
    int k = 0;
    assert_true(bson_iter_init(&it, &doc));
    while (bson_iter_next(&it)) {
        bson_iter_t f;
        assert_true(BSON_ITER_HOLDS_DOCUMENT(&it));
        assert_true(bson_iter_recurse(&it, &f));
        assert_true(bson_iter_find(&f, "tag"));
        assert_string_equal(bson_iter_utf8(&f, NULL), "run:1");
        k++;
    }
    assert_int_equal(k, 3);
    assert_non_null(strstr(b.data, "\"p\":\"p"));
    bson_destroy(&doc);
    lt_buf_free(&t);
    lt_buf_free(&b);
    lt_buf_free(&scratch);
    lt_profile_free(&p);
}

static void test_lt_profile_parse__errors_name_the_field(void **state)
{
    (void)state;
    const char *bad[][2] = {
        {"{\"campaigns\": 0}", "campaigns"},
        {"{\"campaign_skew\": -1}", "campaign_skew"},
        {"{\"mix\": {\"imp\": 1, \"bogus\": 2}}", "bogus"},
        {"{\"mix\": {\"imp\": 0}}", "mix"},
        {"{\"colour\": 1}", "colour"},
        {"{\"campaign_ids\": [\"ok\", \"not ok\"]}", "campaign_ids[1]"},
        {"[1, 2]", "profile"},
        {"not json", "JSON"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lt_profile_t p;
        lt_profile_defaults(&p);
        at_err_t err;
        int rc = lt_profile_parse(&p, bad[i][0], strlen(bad[i][0]), &err);
        if (rc == 0)
            rc = lt_profile_prepare(&p, &err);
        assert_int_equal(rc, -1);
        if (strstr(err.msg, bad[i][1]) == NULL)
            fail_msg("'%s': message '%s' does not name '%s'", bad[i][0], err.msg, bad[i][1]);
        lt_profile_free(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lt_profile_request__reproducible_by_seed_and_index),
        cmocka_unit_test(test_lt_zipf_sample__matches_theory),
        cmocka_unit_test(test_lt_profile_request__event_mix),
        cmocka_unit_test(test_lt_profile_request__click_signature_verifies),
        cmocka_unit_test(test_lt_profile_request__beacon_batch_is_json_with_tags),
        cmocka_unit_test(test_lt_profile_parse__errors_name_the_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
