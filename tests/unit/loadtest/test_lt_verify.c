/*
 * test_lt_verify.c: reconciliation of the run's acknowledged requests with what the store
 * holds (lost, duplicated, redelivered, rejected by reason), tag parsing, and the file
 * store end to end through lt_verify_run().
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lt_client.h"
#include "lt_verify.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void add(lt_obs_set_t *s, const char *tag, const char *id, const char *reason, int kind)
{
    assert_int_equal(lt_obs_add(s, "r1", tag, strlen(tag), id, id ? strlen(id) : 0, reason, kind), 0);
}

static void test_lt_verify_reconcile__findings(void **state)
{
    (void)state;
    enum { N = 12 };
    uint8_t st[N];
    uint16_t ev[N];
    for (int i = 0; i < N; i++) {
        st[i] = LT_SEQ_ACKED;
        ev[i] = 1;
    }
    st[8] = LT_SEQ_FAILED;   /* timed out, yet stored */
    st[10] = LT_SEQ_REFUSED; /* 400: not expected anywhere */
    ev[9] = 3;               /* a beacon with three events */
    lt_obs_set_t obs = {0};
    for (int i = 0; i < N; i++) {
        char tag[16], id[16];
        snprintf(tag, sizeof(tag), "r1:%d", i);
        snprintf(id, sizeof(id), "id-%d", i);
        if (i == 3 || i == 7 || i == 10 || i == 11)
            continue;
        add(&obs, tag, id, NULL, LT_OBS_EVENT);
    }
    add(&obs, "r1:5", "id-5b", NULL, LT_OBS_EVENT); /* duplicate: a second id for one pixel */
    add(&obs, "r1:6", "id-6", NULL, LT_OBS_EVENT);  /* redelivery of the same id */
    add(&obs, "r1:7", NULL, "unknown_campaign", LT_OBS_REJECTED);
    add(&obs, "r1:11", NULL, "bot", LT_OBS_REJECTED);
    add(&obs, "r1:9", "id-9b", NULL, LT_OBS_EVENT);     /* 2 of 3 beacon events */
    add(&obs, "r2:1", "other-run", NULL, LT_OBS_EVENT); /* ignored */
    add(&obs, "r1:x", "bad", NULL, LT_OBS_EVENT);       /* foreign */
    add(&obs, "r1:99", "beyond", NULL, LT_OBS_EVENT);   /* past the run */
    lt_verify_input_t in = {.run_id = "r1", .seq_state = st, .seq_events = ev, .nseq = N};
    lt_verify_result_t res;
    memset(&res, 0, sizeof(res));
    lt_verify_reconcile(&in, &obs, &res);
    assert_int_equal(res.checked_requests, 10);
    assert_int_equal(res.expected_events, 12);
    assert_int_equal(res.lost, 2); /* seq 3, and one of seq 9's three */
    assert_int_equal(res.lost_requests, 2);
    assert_int_equal(res.nlost_seqs, 2);
    assert_int_equal(res.lost_seqs[0], 3);
    assert_int_equal(res.lost_seqs[1], 9);
    assert_int_equal(res.duplicated, 1);
    assert_int_equal(res.ndup_seqs, 1);
    assert_int_equal(res.dup_seqs[0], 5);
    assert_int_equal(res.redelivered, 1);
    assert_int_equal(res.rejected, 2);
    assert_int_equal(res.unacked_found, 1);
    assert_int_equal(res.foreign, 2);
    int seen = 0;
    for (size_t i = 0; i < res.nreasons; i++) {
        if (strcmp(res.reasons[i], "unknown_campaign") == 0 || strcmp(res.reasons[i], "bot") == 0) {
            assert_int_equal(res.reason_counts[i], 1);
            seen++;
        }
    }
    assert_int_equal(seen, 2);
    lt_obs_free(&obs);
}

static void test_lt_obs_add_json__fields(void **state)
{
    (void)state;
    lt_obs_set_t obs = {0};
    const char *e1 = "{\"v\":1,\"id\":\"0190-a\",\"tag\":\"r1:4\",\"c\":\"x\"}";
    const char *e2 = "{\"_id\":\"0190-b\",\"tag\":\"r1:4\"}";
    const char *rj = "{\"tag\":\"r1:5\",\"reason\":\"bad_signature\",\"detail\":\"sig\"}";
    assert_int_equal(lt_obs_add_json(&obs, "r1", e1, strlen(e1), LT_OBS_EVENT), 0);
    assert_int_equal(lt_obs_add_json(&obs, "r1", e2, strlen(e2), LT_OBS_EVENT), 0);
    assert_int_equal(lt_obs_add_json(&obs, "r1", rj, strlen(rj), LT_OBS_REJECTED), 0);
    assert_int_equal(lt_obs_add_json(&obs, "r1", "{broken", 7, LT_OBS_EVENT), 0);
    assert_int_equal(lt_obs_add_json(&obs, "r1", "{\"tag\":\"r10:4\"}", 15, LT_OBS_EVENT), 0); /* prefix, not ours */
    assert_int_equal(obs.n, 3);
    assert_int_equal(obs.unreadable, 1);
    assert_int_equal(obs.v[0].seq, 4);
    assert_true(obs.v[0].idhash != obs.v[1].idhash);
    assert_int_equal(obs.v[2].kind, LT_OBS_REJECTED);
    assert_string_equal(obs.reasons[obs.v[2].reason], "bad_signature");
    lt_obs_free(&obs);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_lt_verify_run__file_store(void **state)
{
    (void)state;
    char dir[] = "/tmp/lt_verify_XXXXXX";
    assert_non_null(mkdtemp(dir));
    /* 6 acknowledged pixels; the sink lost seq 2, stored seq 4 twice under two ids,
     * rejected seq 5. Other runs' lines and a partial last line are ignored. */
    write_file(dir, "events-000001.jsonl",
               "{\"_id\":\"a0\",\"tag\":\"t9:0\",\"e\":\"imp\"}\n"
               "{\"_id\":\"a1\",\"tag\":\"t9:1\"}\n"
               "{\"_id\":\"zz\",\"tag\":\"other:2\"}\n"
               "{\"_id\":\"a3\",\"tag\":\"t9:3\"}\n");
    write_file(dir, "events-000002.jsonl",
               "{\"_id\":\"a4\",\"tag\":\"t9:4\"}\n{\"_id\":\"a4x\",\"tag\":\"t9:4\"}\n{\"_id\":\"a5");
    write_file(dir, "rejected-000001.jsonl", "{\"tag\":\"t9:5\",\"reason\":\"unknown_campaign\",\"detail\":\"c\"}\n");
    write_file(dir, "notes.txt", "{\"_id\":\"n\",\"tag\":\"t9:2\"}\n");
    uint8_t st[6];
    memset(st, LT_SEQ_ACKED, sizeof(st));
    lt_verify_input_t in = {.run_id = "t9", .seq_state = st, .seq_events = NULL, .nseq = 6};
    char spec[600];
    snprintf(spec, sizeof(spec), "file:%s", dir);
    lt_verify_opts_t o = {
        .spec = spec, .topic = "", .rejected_topic = "", .db = "adtrack", .wait_ns = 2000000000LL, .quiet_ns = 0};
    lt_verify_result_t res;
    at_err_t err;
    assert_int_equal(lt_verify_run(&o, &in, &res, &err), 0);
    assert_string_equal(res.store, "file");
    assert_int_equal(res.checked_requests, 6);
    assert_int_equal(res.lost, 1);
    assert_int_equal(res.lost_seqs[0], 2);
    assert_int_equal(res.duplicated, 1);
    assert_int_equal(res.dup_seqs[0], 4);
    assert_int_equal(res.rejected, 1);
    assert_false(res.settled);

    /* The missing event arrives: now everything is accounted for and the check settles. */
    write_file(dir, "events-000003.jsonl", "{\"_id\":\"a2\",\"tag\":\"t9:2\"}\n");
    assert_int_equal(lt_verify_run(&o, &in, &res, &err), 0);
    assert_int_equal(res.lost, 0);
    assert_true(res.settled);

    /* A missing directory is "nothing yet", not an error. */
    snprintf(spec, sizeof(spec), "file:%s/nope", dir);
    assert_int_equal(lt_verify_run(&o, &in, &res, &err), 0);
    assert_int_equal(res.lost, 6);

    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_lt_store_open__bad_specs(void **state)
{
    (void)state;
    at_err_t err;
    lt_verify_opts_t o = {.spec = "file:", .topic = "t", .rejected_topic = "", .db = "adtrack"};
    assert_null(lt_store_open(&o, "r", &err));
    o.spec = "kafka:";
    assert_null(lt_store_open(&o, "r", &err));
    o.spec = "mongodb://h:notaport/db";
    assert_null(lt_store_open(&o, "r", &err));
    assert_non_null(strstr(err.msg, "mongodb"));
    o.spec = "redis://x";
    assert_null(lt_store_open(&o, "r", &err));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lt_verify_reconcile__findings),
        cmocka_unit_test(test_lt_obs_add_json__fields),
        cmocka_unit_test(test_lt_verify_run__file_store),
        cmocka_unit_test(test_lt_store_open__bad_specs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
