/* LABELS: it;ferretdb;coredata */
/*
 * test_reports.c: GET /v1/reports of a real adtrack-coredata process, and `adtrack report`:
 *  - MongoDB mode against a real FerretDB: stats_hourly documents inserted here exactly as
 *    docs/REPORTS.md describes them (int64 counts, dates, sparse HyperLogLog registers),
 *    loaded at start; JSON and CSV (Accept: text/csv) answers with sums over partitions and
 *    days in Europe/Berlin; a document inserted and one replaced later appear after a poll;
 *    401 without or with a wrong token, 200 with the read token, 400 with the fields;
 *  - file mode (--stats-dir, the jsonl written here): the same answers; a line appended
 *    later appears after a poll; `adtrack report` prints the aligned table, CSV, and exits
 *    1 on a refused request and 3 when coredata cannot be reached.
 * Exits 77 (skipped) when FerretDB is not built (scripts/ferretdb.sh install); the file-mode
 * test then does not run either (one binary).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <mongoc/mongoc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "at_mongo.h"
#include "at_test_infra.h"
#include "at_test_support.h"

#define ADMIN "reports-admin-token-1"
#define READER "reports-read-token-1"
#define AUTH_READ "Authorization: Bearer " READER "\r\n"

static ts_ferretdb_t fdb;

/* A contract document: hour "YYYY-MM-DDTHH", campaign, publisher, partition, counts, mt. */
static char *doc_json(const char *hour, const char *c, const char *p, int k, long long imp, long long click,
                      const char *u, const char *mt)
{
    static char buf[2048];
    snprintf(buf, sizeof(buf),
             "{\"_id\":\"%s|%s|cr-1|%s|top|%d\",\"h\":{\"$date\":\"%s:00:00Z\"},\"c\":\"%s\",\"adv\":\"adv-1\","
             "\"cr\":\"cr-1\",\"p\":\"%s\",\"pl\":\"top\",\"k\":%d,\"o\":{\"$numberLong\":\"42\"},"
             "\"imp\":{\"$numberLong\":\"%lld\"},\"view\":{\"$numberLong\":\"0\"},\"click\":{\"$numberLong\":\"%lld\"},"
             "\"conv\":{\"$numberLong\":\"0\"},\"spend\":{\"$numberLong\":\"%lld\"},\"payout\":{\"$numberLong\":\"0\"},"
             "\"rejected\":{\"$numberLong\":\"1\"},\"rej\":{\"bot\":{\"$numberLong\":\"1\"}},\"u\":%s,"
             "\"mt\":{\"$date\":\"%s\"}}",
             hour, c, p, k, hour, c, p, k, imp, click, imp * 1000, u, mt);
    return buf;
}

/* The seed: camp-1 on two partitions and two Berlin days (2026-03-28 23:00 UTC is the 29th
 * there), camp-2 ("a,b" publisher: CSV quoting) once. */
static const char *const seed[][8] = {
    {"2026-03-28T10", "camp-1", "pub-1", "0", "100", "2", "{\"5\":2}", "2026-03-28T11:00:00Z"},
    {"2026-03-28T10", "camp-1", "pub-1", "1", "50", "1", "{\"5\":3,\"6\":1}", "2026-03-28T11:00:01Z"},
    {"2026-03-28T23", "camp-1", "pub-1", "0", "10", "0", "{}", "2026-03-29T00:00:00Z"},
    {"2026-03-28T12", "camp-2", "a,b", "0", "0", "0", "{}", "2026-03-28T13:00:00Z"},
};

static void seed_mongo(mongoc_collection_t *coll, const char *json)
{
    bson_error_t e;
    bson_t *d = bson_new_from_json((const uint8_t *)json, -1, &e);
    if (d == NULL)
        fail_msg("bad test JSON: %s", e.message);
    bson_t filter = BSON_INITIALIZER;
    bson_iter_t it;
    assert_true(bson_iter_init_find(&it, d, "_id"));
    BSON_APPEND_UTF8(&filter, "_id", bson_iter_utf8(&it, NULL));
    bson_t opts = BSON_INITIALIZER;
    BSON_APPEND_BOOL(&opts, "upsert", true);
    if (!mongoc_collection_replace_one(coll, &filter, d, &opts, NULL, &e))
        fail_msg("replace_one: %s", e.message);
    bson_destroy(&opts);
    bson_destroy(&filter);
    bson_destroy(d);
}

static char *seed_line(size_t i)
{
    return doc_json(seed[i][0], seed[i][1], seed[i][2], atoi(seed[i][3]), atoll(seed[i][4]), atoll(seed[i][5]),
                    seed[i][6], seed[i][7]);
}

typedef struct cdp_s {
    ts_proc_t proc;
    int port;
} cdp_t;

static cdp_t *running; /* killed by the group teardown when a test fails midway */

static void cd_start(cdp_t *c, const char *mongo_uri, const char *stats_dir)
{
    running = c;
    char listen[32], *bin = ts_bin("adtrack-coredata"), *dir = ts_tmpdir("reports-cd");
    c->port = ts_free_port();
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", c->port);
    char env_mongo[512], env_admin[128], env_read[128];
    snprintf(env_mongo, sizeof(env_mongo), "ADTRACK_MONGO=%s", mongo_uri ? mongo_uri : "");
    snprintf(env_admin, sizeof(env_admin), "ADTRACK_ADMIN_TOKEN=%s", ADMIN);
    snprintf(env_read, sizeof(env_read), "ADTRACK_READ_TOKEN=%s", READER);
    char *env[] = {env_mongo, env_admin, env_read, NULL};
    /* Redis and Kafka are not needed for reports: unreachable addresses, the fan-out just waits. */
    const char *argv[24] = {bin, "--listen", listen, "--data-dir", dir, "--redis", "127.0.0.1:1", "--brokers",
                            "127.0.0.1:1", "--feed", "false", "--reports-poll-ms", "200", "--log-level", "warn"};
    size_t n = 15;
    if (stats_dir != NULL) {
        argv[n++] = "--stats-dir";
        argv[n++] = stats_dir;
    }
    argv[n] = NULL;
    assert_int_equal(ts_spawn(&c->proc, (char *const *)argv, env, false, 0), 0);
    free(bin);
    free(dir);
    assert_int_equal(ts_wait_port(c->port, 30000), 0);
}

static void cd_stop(cdp_t *c)
{
    int status = -1;
    ts_signal(&c->proc, SIGTERM);
    assert_int_equal(ts_wait(&c->proc, 20000, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    running = NULL;
}

static ts_http_resp_t get(cdp_t *c, const char *path, const char *headers)
{
    ts_http_resp_t r;
    if (ts_http(c->port, "GET", path, headers, NULL, 0, &r, 20000) != 0)
        fail_msg("GET %s failed", path);
    return r;
}

#define DAY_Q "/v1/reports?from=2026-03-28&to=2026-03-30&tz=Europe/Berlin&group_by=campaign&metrics=imp,click,ctr,uniques"

/* What the seed gives for DAY_Q (and the newest mt, 2026-03-29T00:00:00Z). */
static const char *const day_rows =
    "\"rows\":[{\"period\":\"2026-03-28T00:00:00+01:00\",\"campaign\":\"camp-1\",\"imp\":150,\"click\":3,"
    "\"ctr\":0.02,\"uniques\":2},{\"period\":\"2026-03-28T00:00:00+01:00\",\"campaign\":\"camp-2\",\"imp\":0,"
    "\"click\":0,\"ctr\":null,\"uniques\":0},{\"period\":\"2026-03-29T00:00:00+01:00\",\"campaign\":\"camp-1\","
    "\"imp\":10,\"click\":0,\"ctr\":0,\"uniques\":0}],\"totals\":{\"imp\":160,\"click\":3,\"ctr\":0.01875,"
    "\"uniques\":2},\"data_through\":\"2026-03-29T00:00:00Z\"}";

/* The checks both modes share. */
static void check_answers(cdp_t *c)
{
    ts_http_resp_t r = get(c, DAY_Q, NULL);
    assert_int_equal(r.status, 401);
    ts_http_resp_free(&r);
    r = get(c, DAY_Q, "Authorization: Bearer wrong-token\r\n");
    assert_int_equal(r.status, 401);
    ts_http_resp_free(&r);
    r = get(c, DAY_Q, AUTH_READ);
    assert_int_equal(r.status, 200);
    if (strstr(r.body, day_rows) == NULL)
        fail_msg("unexpected answer: %s", r.body);
    assert_non_null(strstr(r.body, "\"from\":\"2026-03-28T00:00:00+01:00\",\"to\":\"2026-03-30T00:00:00+02:00\""));
    ts_http_resp_free(&r);
    /* the admin token may read too */
    r = get(c, DAY_Q, "Authorization: Bearer " ADMIN "\r\n");
    assert_int_equal(r.status, 200);
    ts_http_resp_free(&r);
    /* CSV by Accept */
    r = get(c, "/v1/reports?from=2026-03-28&to=2026-03-29&group_by=campaign,publisher&metrics=imp,ctr",
            AUTH_READ "Accept: text/csv\r\n");
    assert_int_equal(r.status, 200);
    char *ct = ts_http_header(&r, "content-type");
    assert_non_null(ct);
    assert_non_null(strstr(ct, "text/csv"));
    free(ct);
    assert_string_equal(r.body, "period,campaign,publisher,imp,ctr\r\n"
                                "2026-03-28T00:00:00+00:00,camp-1,pub-1,160,0.01875\r\n"
                                "2026-03-28T00:00:00+00:00,camp-2,\"a,b\",0,\r\n");
    ts_http_resp_free(&r);
    /* (the UTC day holds 2026-03-28T23:00Z, which is the 29th in Berlin) */
    /* a bad request: 400 naming every field */
    r = get(c, "/v1/reports?from=2026-03-28T00:30:00Z&to=2026-03-29&tz=Asia/Kolkata&granularity=week", AUTH_READ);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "\"field\" : \"from\""));
    assert_non_null(strstr(r.body, "\"field\" : \"granularity\""));
    ts_http_resp_free(&r);
    r = get(c, "/v1/reports?from=2026-03-28&to=2026-03-29&tz=Asia/Kolkata", AUTH_READ);
    assert_int_equal(r.status, 400);
    assert_non_null(strstr(r.body, "\"field\" : \"tz\""));
    assert_non_null(strstr(r.body, "+5:30"));
    ts_http_resp_free(&r);
    r = get(c, "/v1/reports", "");
    assert_int_equal(r.status, 401);
    ts_http_resp_free(&r);
}

/* Polls DAY_Q's totals until they hold @p want (bounded). */
static void wait_for(cdp_t *c, const char *want)
{
    int64_t deadline = ts_now_ms() + 15000;
    for (;;) {
        ts_http_resp_t r = get(c, DAY_Q, AUTH_READ);
        bool ok = r.status == 200 && strstr(r.body, want) != NULL;
        if (!ok && ts_now_ms() > deadline)
            fail_msg("%s did not appear; last answer: %s", want, r.body);
        ts_http_resp_free(&r);
        if (ok)
            return;
        usleep(100 * 1000);
    }
}

static void test_reports__mongodb(void **state)
{
    (void)state;
    at_err_t err = {0};
    bson_t opts = BSON_INITIALIZER;
    mongoc_client_t *client = at_mongo_client_new(fdb.uri, "test-reports", "majority", 5000, &opts, &err);
    bson_destroy(&opts);
    assert_non_null(client);
    mongoc_collection_t *coll = mongoc_client_get_collection(client, "adtrack", "stats_hourly");
    for (size_t i = 0; i < AT_ARRAY_LEN(seed); i++)
        seed_mongo(coll, seed_line(i));
    cdp_t c = {0};
    cd_start(&c, fdb.uri, NULL);
    check_answers(&c);
    /* a new document (a third partition) and a newer version of one already read */
    seed_mongo(coll, doc_json("2026-03-28T10", "camp-1", "pub-1", 2, 1000, 0, "{}", "2026-03-29T01:00:00Z"));
    wait_for(&c, "\"totals\":{\"imp\":1160,");
    seed_mongo(coll, doc_json("2026-03-28T23", "camp-1", "pub-1", 0, 20, 0, "{}", "2026-03-29T01:00:01Z"));
    wait_for(&c, "\"totals\":{\"imp\":1170,");
    cd_stop(&c);
    mongoc_collection_destroy(coll);
    mongoc_client_destroy(client);
}

static void append(const char *path, const char *line)
{
    FILE *f = fopen(path, "a");
    assert_non_null(f);
    fprintf(f, "%s\n", line);
    fclose(f);
}

static void test_reports__files_and_cli(void **state)
{
    (void)state;
    char *dir = ts_tmpdir("reports-stats"), path[1200];
    snprintf(path, sizeof(path), "%s/stats_hourly-000001.jsonl", dir);
    for (size_t i = 0; i < AT_ARRAY_LEN(seed); i++)
        append(path, seed_line(i));
    cdp_t c = {0};
    cd_start(&c, NULL, dir);
    check_answers(&c);
    append(path, doc_json("2026-03-28T10", "camp-1", "pub-1", 2, 1000, 0, "{}", "2026-03-29T01:00:00Z"));
    wait_for(&c, "\"totals\":{\"imp\":1160,");

    /* adtrack report */
    char api[64], env_tok[128];
    snprintf(api, sizeof(api), "http://127.0.0.1:%d", c.port);
    snprintf(env_tok, sizeof(env_tok), "ADTRACK_TOKEN=%s", READER);
    char *env[] = {env_tok, NULL};
    char *bin = ts_bin("adtrack");
    char *out = NULL, *errout = NULL;
    int status = -1;
    char *argv1[] = {bin, "report", "--api", api, "--from", "2026-03-28", "--to", "2026-03-30", "--tz", "Europe/Berlin",
                     "--group-by", "campaign", "--metrics", "imp,click,ctr", NULL};
    assert_int_equal(ts_run(argv1, env, 20000, &out, &errout, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_string_equal(out, "period                     campaign   imp  click       ctr\n"
                             "2026-03-28T00:00:00+01:00  camp-1    1150      3  0.002609\n"
                             "2026-03-28T00:00:00+01:00  camp-2       0      0         -\n"
                             "2026-03-29T00:00:00+01:00  camp-1      10      0         0\n"
                             "total                                1160      3  0.002586\n"
                             "(3 rows; data through 2026-03-29T01:00:00Z)\n");
    free(out);
    free(errout);
    char *argv2[] = {bin, "report", "--api", api, "--from", "2026-03-28", "--to", "2026-03-29", "--metrics", "imp",
                     "--format", "csv", NULL};
    assert_int_equal(ts_run(argv2, env, 20000, &out, &errout, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_string_equal(out, "period,imp\r\n2026-03-28T00:00:00+00:00,1160\r\n");
    free(out);
    free(errout);
    /* refused: exit 1 with the field on stderr */
    char *argv3[] = {bin, "report", "--api", api, "--from", "2026-03-28", "--to", "2026-03-28", NULL};
    assert_int_equal(ts_run(argv3, env, 20000, &out, &errout, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 1);
    assert_non_null(strstr(errout, "to: expected a time after from"));
    free(out);
    free(errout);
    cd_stop(&c);
    /* unreachable: exit 3 */
    assert_int_equal(ts_run(argv2, env, 20000, &out, &errout, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 3);
    free(out);
    free(errout);
    free(bin);
    free(dir);
}

static int group_setup(void **state)
{
    (void)state;
    at_mongo_init();
    return ts_ferretdb_start(&fdb) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    if (running != NULL)
        ts_kill(&running->proc);
    ts_ferretdb_stop(&fdb);
    return 0;
}

int main(void)
{
    if (ts_infra_skip(false, true))
        return TS_SKIP;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reports__mongodb),
        cmocka_unit_test(test_reports__files_and_cli),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
