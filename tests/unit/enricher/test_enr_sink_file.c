/* Unit tests for enricher/enr_sink_file.c: write + fsync, rotation, idempotent re-write
 * (also after reopening), torn-tail repair, mongoimport-compatible lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "enr_sink.h"

static char *fresh_dir(void)
{
    char tmpl[] = "/tmp/enr-sink-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char p[512];
    while (d != NULL && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(p, sizeof(p), "%s/%s", dir, de->d_name);
        unlink(p);
    }
    if (d != NULL)
        closedir(d);
    rmdir(dir);
}

static bson_t *doc(const char *id, int n)
{
    bson_t *b = bson_new();
    BSON_APPEND_UTF8(b, "_id", id);
    BSON_APPEND_INT32(b, "n", n);
    BSON_APPEND_DATE_TIME(b, "ts", INT64_C(1790000000123));
    BSON_APPEND_INT64(b, "price_micros", INT64_C(5000000000));
    return b;
}

/* Lines in <dir>/<name>, and how many contain @p needle. */
static int count_lines(const char *dir, const char *name, const char *needle, int *matches)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    if (f == NULL)
        return -1;
    char line[4096];
    int n = 0;
    *matches = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        n++;
        if (needle != NULL && strstr(line, needle) != NULL)
            (*matches)++;
        /* Every line must parse back as one JSON document. */
        bson_error_t berr;
        bson_t b;
        size_t len = strlen(line);
        assert_true(len > 0 && line[len - 1] == '\n');
        assert_true(bson_init_from_json(&b, line, (ssize_t)len - 1, &berr));
        bson_destroy(&b);
    }
    fclose(f);
    return n;
}

static void write_ids(enr_sink_t *s, const char *const *ids, size_t n, const char *const *rids, size_t nr,
                      enr_sink_result_t *res)
{
    bson_t *ev[16], *rj[16];
    at_err_t err;
    for (size_t i = 0; i < n; i++)
        ev[i] = doc(ids[i], (int)i);
    for (size_t i = 0; i < nr; i++)
        rj[i] = doc(rids[i], (int)i);
    int rc = enr_sink_write(s, (const bson_t *const *)ev, n, (const bson_t *const *)rj, nr, res, &err);
    if (rc != 0)
        fail_msg("write: %s", err.msg);
    for (size_t i = 0; i < n; i++)
        bson_destroy(ev[i]);
    for (size_t i = 0; i < nr; i++)
        bson_destroy(rj[i]);
}

static void test_enr_sink_file__write_and_format(void **state)
{
    AT_UNUSED(state);
    char *dir = fresh_dir();
    at_err_t err;
    enr_sink_t *s = enr_sink_file_new(dir, 1 << 20, &err);
    assert_non_null(s);
    assert_string_equal(s->ops->name, "file");
    const char *ids[] = {"e1", "e2", "e3"};
    const char *rids[] = {"r1:bot"};
    enr_sink_result_t res = {0};
    write_ids(s, ids, 3, rids, 1, &res);
    assert_int_equal(res.inserted, 4);
    assert_int_equal(res.duplicates, 0);
    int m;
    assert_int_equal(count_lines(dir, "events-1.jsonl", "{ \"_id\" : \"e", &m), 3);
    assert_int_equal(m, 3);
    assert_int_equal(count_lines(dir, "events-1.jsonl", "\"$date\"", &m), 3);
    assert_int_equal(m, 3);
    assert_int_equal(count_lines(dir, "rejected-1.jsonl", "r1:bot", &m), 1);
    assert_int_equal(m, 1);
    enr_sink_destroy(s);
    rm_dir(dir);
    free(dir);
}

static void test_enr_sink_file__idempotent_rewrite(void **state)
{
    AT_UNUSED(state);
    char *dir = fresh_dir();
    at_err_t err;
    enr_sink_t *s = enr_sink_file_new(dir, 1 << 20, &err);
    const char *ids[] = {"e1", "e2", "e2", "e3"}; /* a repeat inside one call too */
    enr_sink_result_t res = {0};
    write_ids(s, ids, 4, NULL, 0, &res);
    assert_int_equal(res.inserted, 3);
    assert_int_equal(res.duplicates, 1);
    /* The same batch again (a retry): nothing new. */
    res = (enr_sink_result_t){0};
    write_ids(s, ids, 4, NULL, 0, &res);
    assert_int_equal(res.inserted, 0);
    assert_int_equal(res.duplicates, 4);
    enr_sink_destroy(s);

    /* After a restart (reopen), the ids are still known. */
    s = enr_sink_file_new(dir, 1 << 20, &err);
    assert_non_null(s);
    const char *more[] = {"e3", "e4"};
    res = (enr_sink_result_t){0};
    write_ids(s, more, 2, NULL, 0, &res);
    assert_int_equal(res.inserted, 1);
    assert_int_equal(res.duplicates, 1);
    int m;
    assert_int_equal(count_lines(dir, "events-1.jsonl", NULL, &m), 4);
    enr_sink_destroy(s);
    rm_dir(dir);
    free(dir);
}

static void test_enr_sink_file__rotation_keeps_window(void **state)
{
    AT_UNUSED(state);
    char *dir = fresh_dir();
    at_err_t err;
    /* Each document is ~110 bytes; rotate after 4096: a few dozen per file. */
    enr_sink_t *s = enr_sink_file_new(dir, 4096, &err);
    char id[32];
    int total = 0;
    for (int i = 0; i < 100; i++) {
        snprintf(id, sizeof(id), "ev-%03d", i);
        const char *ids[] = {id};
        enr_sink_result_t res = {0};
        write_ids(s, ids, 1, NULL, 0, &res);
        total += (int)res.inserted;
    }
    assert_int_equal(total, 100);
    int m, sum = 0, files = 0;
    char name[64];
    for (int seq = 1; seq < 20; seq++) {
        snprintf(name, sizeof(name), "events-%d.jsonl", seq);
        int n = count_lines(dir, name, NULL, &m);
        if (n < 0)
            break;
        sum += n;
        files++;
    }
    assert_int_equal(sum, 100);
    assert_true(files >= 3);
    enr_sink_destroy(s);

    /* Reopen: the ids of the current and the previous file are remembered. */
    s = enr_sink_file_new(dir, 4096, &err);
    assert_non_null(s);
    snprintf(id, sizeof(id), "ev-%03d", 99);
    const char *last[] = {id};
    enr_sink_result_t res = {0};
    write_ids(s, last, 1, NULL, 0, &res);
    assert_int_equal(res.duplicates, 1);
    enr_sink_destroy(s);
    rm_dir(dir);
    free(dir);
}

static void test_enr_sink_file__torn_tail_cut(void **state)
{
    AT_UNUSED(state);
    char *dir = fresh_dir();
    at_err_t err;
    enr_sink_t *s = enr_sink_file_new(dir, 1 << 20, &err);
    const char *ids[] = {"e1", "e2"};
    enr_sink_result_t res = {0};
    write_ids(s, ids, 2, NULL, 0, &res);
    enr_sink_destroy(s);
    /* A crash mid-write leaves half a line (never acknowledged). */
    char p[512];
    snprintf(p, sizeof(p), "%s/events-1.jsonl", dir);
    int fd = open(p, O_WRONLY | O_APPEND);
    const char torn[] = "{ \"_id\" : \"e3\", \"n\" : ";
    assert_int_equal(write(fd, torn, sizeof(torn) - 1), (ssize_t)(sizeof(torn) - 1));
    close(fd);
    s = enr_sink_file_new(dir, 1 << 20, &err);
    assert_non_null(s);
    const char *again[] = {"e3"};
    res = (enr_sink_result_t){0};
    write_ids(s, again, 1, NULL, 0, &res);
    assert_int_equal(res.inserted, 1); /* e3 was not stored before */
    int m;
    assert_int_equal(count_lines(dir, "events-1.jsonl", "\"e3\"", &m), 3);
    assert_int_equal(m, 1);
    enr_sink_destroy(s);
    rm_dir(dir);
    free(dir);
}

/* Reads <dir>/<name> whole (NUL-terminated); NULL when it does not exist. */
static char *slurp(const char *dir, const char *name)
{
    char p[512];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "r");
    if (f == NULL)
        return NULL;
    char *buf = calloc(1, 1 << 20);
    assert_non_null(buf);
    size_t n = fread(buf, 1, (1 << 20) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

/* Events given as JSON lines are written as they are, and share the id window with BSON
 * documents, also after a reopen. */
static void test_enr_sink_file__lines(void **state)
{
    AT_UNUSED(state);
    char *dir = fresh_dir();
    at_err_t err;
    enr_sink_t *s = enr_sink_file_new(dir, 1 << 20, &err);
    assert_non_null(s);
    assert_true(enr_sink_takes_lines(s));
    const char *ids[] = {"e1"};
    enr_sink_result_t res = {0};
    write_ids(s, ids, 1, NULL, 0, &res); /* as BSON */
    char l2[] = "{ \"_id\" : \"e2\", \"n\" : 2 }", l3[] = "{ \"_id\" : \"e3\", \"n\" : 3 }";
    char l1[] = "{ \"_id\" : \"e1\", \"n\" : 99 }";
    enr_line_t lines[] = {{"e2", 2, l2, strlen(l2)}, {"e1", 2, l1, strlen(l1)}, {"e3", 2, l3, strlen(l3)},
                          {"e2", 2, l2, strlen(l2)}};
    bson_t *rj = doc("r1:bot", 7);
    res = (enr_sink_result_t){0};
    assert_int_equal(enr_sink_write_lines(s, lines, 4, (const bson_t *const *)&rj, 1, &res, &err), 0);
    assert_int_equal(res.inserted, 3); /* e2, e3, r1:bot */
    assert_int_equal(res.duplicates, 2); /* e1 (written as BSON before) and the second e2 */
    bson_destroy(rj);
    char *text = slurp(dir, "events-1.jsonl");
    assert_non_null(text);
    assert_non_null(strstr(text, "{ \"_id\" : \"e2\", \"n\" : 2 }\n{ \"_id\" : \"e3\", \"n\" : 3 }\n"));
    assert_null(strstr(text, "99"));
    free(text);
    enr_sink_destroy(s);

    s = enr_sink_file_new(dir, 1 << 20, &err);
    assert_non_null(s);
    res = (enr_sink_result_t){0};
    assert_int_equal(enr_sink_write_lines(s, lines, 3, NULL, 0, &res, &err), 0);
    assert_int_equal(res.inserted, 0);
    assert_int_equal(res.duplicates, 3);
    int m;
    assert_int_equal(count_lines(dir, "events-1.jsonl", NULL, &m), 3);
    enr_sink_destroy(s);
    rm_dir(dir);
    free(dir);
}

static void test_enr_sink_file__errors(void **state)
{
    AT_UNUSED(state);
    at_err_t err;
    assert_null(enr_sink_file_new("", 4096, &err));
    assert_null(enr_sink_file_new("/proc/definitely/not/here", 4096, &err));
    char *dir = fresh_dir();
    enr_sink_t *s = enr_sink_file_new(dir, 4096, &err);
    bson_t *noid = bson_new();
    BSON_APPEND_INT32(noid, "n", 1);
    enr_sink_result_t res;
    assert_int_equal(enr_sink_write(s, (const bson_t *const *)&noid, 1, NULL, 0, &res, &err), -1);
    assert_non_null(strstr(err.msg, "_id"));
    /* Zero documents is a successful no-op. */
    assert_int_equal(enr_sink_write(s, NULL, 0, NULL, 0, &res, &err), 0);
    bson_destroy(noid);
    enr_sink_destroy(s);
    enr_sink_destroy(NULL);
    rm_dir(dir);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enr_sink_file__write_and_format),
        cmocka_unit_test(test_enr_sink_file__idempotent_rewrite),
        cmocka_unit_test(test_enr_sink_file__rotation_keeps_window),
        cmocka_unit_test(test_enr_sink_file__torn_tail_cut),
        cmocka_unit_test(test_enr_sink_file__lines),
        cmocka_unit_test(test_enr_sink_file__errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
