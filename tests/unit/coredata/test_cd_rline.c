/*
 * test_cd_rline.c: the stats lines' fast JSON reader gives exactly libbson's BSON for what
 * the enricher writes (bson_equal), and gives up (so libbson reads the line) on anything
 * outside its subset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#include "cd_rline.h"

static void same_as_libbson(const char *json)
{
    bson_t fast, slow;
    bson_error_t e;
    if (cd_rline_parse(json, strlen(json), &fast) != 0)
        fail_msg("fast reader gave up on %s", json);
    assert_true(bson_init_from_json(&slow, json, -1, &e));
    if (!bson_equal(&fast, &slow)) {
        char *a = bson_as_canonical_extended_json(&fast, NULL), *b = bson_as_canonical_extended_json(&slow, NULL);
        fail_msg("differs:\n fast %s\n slow %s", a, b);
    }
    bson_destroy(&fast);
    bson_destroy(&slow);
}

static void gives_up(const char *json)
{
    bson_t doc;
    if (cd_rline_parse(json, strlen(json), &doc) == 0)
        fail_msg("fast reader took %s", json);
}

static void test_cd_rline_parse__same_bson_as_libbson(void **state)
{
    (void)state;
    /* the contract's example, as relaxed Extended JSON writes it (with spaces) and compact */
    same_as_libbson("{ \"_id\" : \"2026-12-03T17|camp-1|cr-9|pub-1|top|7\", \"h\" : { \"$date\" : "
                    "\"2026-12-03T17:00:00Z\" }, \"c\" : \"camp-1\", \"adv\" : \"adv-1\", \"cr\" : \"cr-9\", \"p\" : "
                    "\"pub-1\", \"pl\" : \"top\", \"k\" : 7, \"o\" : 123456, \"imp\" : 100, \"view\" : 60, \"click\" : 3, "
                    "\"conv\" : 1, \"spend\" : 250000, \"payout\" : 0, \"rejected\" : 4, \"rej\" : { \"bot\" : 3, "
                    "\"budget_exhausted\" : 1 }, \"u\" : { \"17\" : 3, \"1022\" : 5 }, \"mt\" : { \"$date\" : "
                    "\"2026-12-03T17:42:10.311Z\" } }");
    same_as_libbson("{\"_id\":\"x\",\"k\":-1,\"o\":{\"$numberLong\":\"5\"},\"imp\":{\"$numberLong\":\"9000000000\"},"
                    "\"spend\":9000000000,\"neg\":-2147483649,\"i32\":2147483647,\"u\":{},\"rej\":{},"
                    "\"h\":{\"$date\":\"1970-01-01T00:00:00Z\"},\"c\":\"\"}");
    same_as_libbson("{}");
    same_as_libbson("  {\"a\":\"b\"}  \r");
}

static void test_cd_rline_parse__gives_up_outside_its_subset(void **state)
{
    (void)state;
    gives_up("{\"c\":\"a\\\"b\"}");                          /* escape */
    gives_up("{\"c\":\"caf\xc3\xa9\"}");                      /* non-ASCII */
    gives_up("{\"imp\":1.5}");                                /* double */
    gives_up("{\"imp\":1e3}");
    gives_up("{\"a\":[1]}");                                  /* array */
    gives_up("{\"a\":true}");
    gives_up("{\"a\":null}");
    gives_up("{\"h\":{\"$date\":\"2026-12-03T17:00:00+01:00\"}}"); /* another date form */
    gives_up("{\"h\":{\"$date\":{\"$numberLong\":\"5\"}}}");
    gives_up("{\"a\":1} x");                                  /* trailing text */
    gives_up("{\"a\":1");                                     /* cut */
    gives_up("{\"a\":99999999999999999999}");                 /* too many digits */
    gives_up("{\"a\":{\"b\":{\"c\":{\"d\":{}}}}}");           /* deeper than the contract */
    gives_up("{\"a\":1,}");
    gives_up("");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cd_rline_parse__same_bson_as_libbson),
        cmocka_unit_test(test_cd_rline_parse__gives_up_outside_its_subset),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
