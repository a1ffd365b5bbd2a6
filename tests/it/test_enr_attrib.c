/* LABELS: it;redis;enricher */
/*
 * test_enr_attrib.c: the attribution script (enricher/enr_attrib.c) against a real
 * redis-server: a conversion within / after its campaign's lookback, an unknown click, a
 * click id naming another campaign, no click id, a duplicate order across two calls and
 * within one, a replay of the same batch that must not deduplicate against itself, a
 * click and its conversion in one batch, and the memory one click record costs.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "at_test_coredata.h"
#include "at_test_support.h"
#include "enr_attrib.h"

static ts_redis_t redis;

#define DAY_MS INT64_C(86400000)
#define T0 INT64_C(1795786022123) /* 2026-11-27 */

static redisContext *fresh_db(int db)
{
    redisContext *rc = ts_redis_connect(redis.port);
    assert_non_null(rc);
    redisReply *r = redisCommand(rc, "SELECT %d", db);
    freeReplyObject(r);
    r = redisCommand(rc, "FLUSHDB");
    freeReplyObject(r);
    return rc;
}

static void uuid_of(const char *s, at_uuid_t *u)
{
    assert_int_equal(at_uuid_parse(s, strlen(s), u), 0);
}

static enr_attrib_op_t click(const char *id, int64_t ts, const char *c, const char *cr, const char *p, const char *pl)
{
    enr_attrib_op_t op = {0};
    uuid_of(id, &op.id);
    op.ts_ms = ts;
    op.c = (at_str_t){c, strlen(c)};
    op.cr = (at_str_t){cr, strlen(cr)};
    op.p = (at_str_t){p, strlen(p)};
    op.pl = (at_str_t){pl, strlen(pl)};
    op.ttl_s = 31 * 86400;
    return op;
}

/* A conversion of campaign @p c (the clid's) with a 30-day lookback; @p click_id NULL = no clid. */
static enr_attrib_op_t conv(const char *id, int64_t ts, const char *click_id, const char *c, const char *adv,
                            const char *order)
{
    enr_attrib_op_t op = {0};
    op.is_conv = true;
    uuid_of(id, &op.id);
    op.ts_ms = ts;
    if (click_id != NULL) {
        op.has_click = true;
        uuid_of(click_id, &op.click_id);
    }
    op.c = (at_str_t){c, strlen(c)};
    snprintf(op.advertiser, sizeof(op.advertiser), "%s", adv);
    op.order = order != NULL ? (at_str_t){order, strlen(order)} : (at_str_t){NULL, 0};
    op.lookback_ms = 30 * DAY_MS;
    op.ttl_s = 31 * 86400;
    return op;
}

static void run(redisContext *rc, enr_attrib_op_t *ops, size_t n)
{
    at_err_t err = {0};
    uint64_t ncmds = 0;
    assert_int_equal(enr_attrib_run(rc, ops, n, &ncmds, &err), 0);
    assert_int_equal(ncmds, 1);
}

#define CLICK1 "0190a000-0000-7000-8000-0000000000c1"
#define CLICK2 "0190a000-0000-7000-8000-0000000000c2"

static void test_attrib__lookback_and_unknown(void **state)
{
    AT_UNUSED(state);
    redisContext *rc = fresh_db(1);
    enr_attrib_op_t k[] = {click(CLICK1, T0, "camp-a", "cr-1", "pub-1", "top")};
    run(rc, k, 1);

    enr_attrib_op_t v[] = {
        conv("0190a000-0000-7000-8000-000000000001", T0 + 30 * DAY_MS, CLICK1, "camp-a", "adv-1", NULL), /* edge: in */
        conv("0190a000-0000-7000-8000-000000000002", T0 + 30 * DAY_MS + 1, CLICK1, "camp-a", "adv-1", NULL),
        conv("0190a000-0000-7000-8000-000000000003", T0 + 1000, CLICK2, "camp-a", "adv-1", NULL), /* never clicked */
        conv("0190a000-0000-7000-8000-000000000004", T0 + 1000, CLICK1, "camp-b", "adv-1", NULL), /* other campaign */
        conv("0190a000-0000-7000-8000-000000000005", T0 + 1000, NULL, "camp-a", "adv-1", NULL),
    };
    run(rc, v, AT_ARRAY_LEN(v));
    assert_int_equal(v[0].result, ENR_ATTR_ATTRIBUTED);
    assert_int_equal(v[0].click_ts_ms, T0);
    assert_true(v[0].click_c.len == 6 && memcmp(v[0].click_c.p, "camp-a", 6) == 0);
    assert_true(v[0].click_cr.len == 4 && memcmp(v[0].click_cr.p, "cr-1", 4) == 0);
    assert_true(v[0].click_p.len == 5 && memcmp(v[0].click_p.p, "pub-1", 5) == 0);
    assert_true(v[0].click_pl.len == 3 && memcmp(v[0].click_pl.p, "top", 3) == 0);
    assert_int_equal(v[1].result, ENR_ATTR_CLICK_EXPIRED);
    assert_int_equal(v[2].result, ENR_ATTR_UNKNOWN_CLICK);
    assert_int_equal(v[3].result, ENR_ATTR_UNKNOWN_CLICK);
    assert_int_equal(v[4].result, ENR_ATTR_NO_CLICK);

    /* The click record lives for the ttl given (lookback + a day). */
    redisReply *r = redisCommand(rc, "TTL adtrack:click:" CLICK1);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_true(r->integer > 30 * 86400 && r->integer <= 31 * 86400);
    freeReplyObject(r);
    redisFree(rc);
}

static void test_attrib__duplicate_orders_and_replay(void **state)
{
    AT_UNUSED(state);
    redisContext *rc = fresh_db(2);
    enr_attrib_op_t batch1[] = {
        click(CLICK1, T0, "camp-a", "cr-1", "pub-1", "top"),
        /* the conversion in the batch of its click */
        conv("0190a000-0000-7000-8000-000000000011", T0 + 5000, CLICK1, "camp-a", "adv-1", "order-1"),
        /* the same order again within the batch */
        conv("0190a000-0000-7000-8000-000000000012", T0 + 6000, CLICK1, "camp-a", "adv-1", "order-1"),
        /* the same order id at another advertiser is another order */
        conv("0190a000-0000-7000-8000-000000000013", T0 + 6000, NULL, "camp-x", "adv-2", "order-1"),
        /* an unattributed conversion holds its order too */
        conv("0190a000-0000-7000-8000-000000000014", T0 + 6000, CLICK2, "camp-a", "adv-1", "order-2"),
    };
    run(rc, batch1, AT_ARRAY_LEN(batch1));
    assert_int_equal(batch1[1].result, ENR_ATTR_ATTRIBUTED);
    assert_int_equal(batch1[2].result, ENR_ATTR_DUPLICATE);
    assert_int_equal(batch1[3].result, ENR_ATTR_NO_CLICK);
    assert_int_equal(batch1[4].result, ENR_ATTR_UNKNOWN_CLICK);

    /* The batch replayed (a retry after a sink failure): the same answers, nothing counted
     * as a duplicate of itself. */
    run(rc, batch1, AT_ARRAY_LEN(batch1));
    assert_int_equal(batch1[1].result, ENR_ATTR_ATTRIBUTED);
    assert_int_equal(batch1[2].result, ENR_ATTR_DUPLICATE);
    assert_int_equal(batch1[3].result, ENR_ATTR_NO_CLICK);
    assert_int_equal(batch1[4].result, ENR_ATTR_UNKNOWN_CLICK);

    /* A later batch: both orders are taken by other conversion ids. */
    enr_attrib_op_t batch2[] = {
        conv("0190a000-0000-7000-8000-000000000021", T0 + 9000, CLICK1, "camp-a", "adv-1", "order-1"),
        conv("0190a000-0000-7000-8000-000000000022", T0 + 9000, CLICK1, "camp-a", "adv-1", "order-2"),
        conv("0190a000-0000-7000-8000-000000000023", T0 + 9000, CLICK1, "camp-a", "adv-1", "order-3"),
    };
    run(rc, batch2, AT_ARRAY_LEN(batch2));
    assert_int_equal(batch2[0].result, ENR_ATTR_DUPLICATE);
    assert_int_equal(batch2[1].result, ENR_ATTR_DUPLICATE);
    assert_int_equal(batch2[2].result, ENR_ATTR_ATTRIBUTED);

    /* Advertiser ids with ':' cannot collide: "adv:1" + "x" vs "adv" + "1:x". */
    enr_attrib_op_t batch3[] = {
        conv("0190a000-0000-7000-8000-000000000031", T0, NULL, "camp-a", "adv:1", "x"),
        conv("0190a000-0000-7000-8000-000000000032", T0, NULL, "camp-a", "adv", "1:x"),
    };
    run(rc, batch3, AT_ARRAY_LEN(batch3));
    assert_int_equal(batch3[0].result, ENR_ATTR_NO_CLICK);
    assert_int_equal(batch3[1].result, ENR_ATTR_NO_CLICK);
    redisFree(rc);
}

/* The memory a click record costs, as Redis counts it (MEMORY USAGE, key + value + expiry),
 * for a 36-byte id and typical dimensions; printed for docs/REPORTS.md. */
static void test_attrib__memory_per_click(void **state)
{
    AT_UNUSED(state);
    redisContext *rc = fresh_db(3);
    enum { N = 10000 };
    enr_attrib_op_t *ops = calloc(N, sizeof(*ops));
    assert_non_null(ops);
    char ids[N][AT_UUID_STR_LEN + 1];
    for (int i = 0; i < N; i++) {
        snprintf(ids[i], sizeof(ids[i]), "0190a000-0000-7000-8000-%012x", i);
        ops[i] = click(ids[i], T0 + i, "campaign-0042", "creative-17", "publisher-0007", "slot-top");
    }
    redisReply *r = redisCommand(rc, "INFO memory");
    long long before = 0, after = 0;
    const char *m = strstr(r->str, "used_memory:");
    before = m ? atoll(m + 12) : 0;
    freeReplyObject(r);
    int64_t t0 = ts_now_ms();
    run(rc, ops, N);
    int64_t t1 = ts_now_ms();
    r = redisCommand(rc, "INFO memory");
    m = strstr(r->str, "used_memory:");
    after = m ? atoll(m + 12) : 0;
    freeReplyObject(r);
    r = redisCommand(rc, "MEMORY USAGE adtrack:click:%s", ids[0]);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    printf("click record: MEMORY USAGE %lld bytes; used_memory grew %lld bytes for %d clicks (%.0f per click); "
           "the call took %lld ms\n",
           r->integer, after - before, N, (double)(after - before) / N, (long long)(t1 - t0));
    assert_true(r->integer > 0 && r->integer < 256);
    freeReplyObject(r);

    /* Batch-sized calls: 1000 operations, 900 clicks and 100 conversions of earlier clicks
     * with order ids, 20 times; the time per call is what a batch with clicks adds. */
    enum { B = 1000, ROUNDS = 20 };
    char (*bid)[AT_UUID_STR_LEN + 1] = calloc((size_t)B * ROUNDS, sizeof(*bid));
    char (*ord)[16] = calloc((size_t)B * ROUNDS, sizeof(*ord));
    int64_t s0 = ts_now_ms();
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < B; i++) {
            int k = round * B + i;
            snprintf(bid[k], sizeof(bid[k]), "0190a001-0000-7000-8000-%012x", k);
            if (i % 10 != 9) {
                ops[i] = click(bid[k], T0 + k, "campaign-0042", "creative-17", "publisher-0007", "slot-top");
            } else {
                snprintf(ord[k], sizeof(ord[k]), "order-%d", k);
                ops[i] = conv(bid[k], T0 + k, ids[k % N], "campaign-0042", "adv-1", ord[k]);
            }
        }
        run(rc, ops, B);
        assert_int_equal(ops[9].result, ENR_ATTR_ATTRIBUTED);
    }
    int64_t s1 = ts_now_ms();
    printf("attribution script: %d calls of %d operations (900 clicks, 100 conversions): %.1f ms per call\n", ROUNDS,
           B, (double)(s1 - s0) / ROUNDS);
    free(bid);
    free(ord);
    free(ops);
    redisFree(rc);
}

static int group_setup(void **state)
{
    AT_UNUSED(state);
    return ts_redis_start(&redis);
}

static int group_teardown(void **state)
{
    AT_UNUSED(state);
    ts_redis_stop(&redis);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_attrib__lookback_and_unknown),
        cmocka_unit_test(test_attrib__duplicate_orders_and_replay),
        cmocka_unit_test(test_attrib__memory_per_click),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
