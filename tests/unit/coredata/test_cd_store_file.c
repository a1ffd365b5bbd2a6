/*
 * test_cd_store_file.c: the embedded file store: round trip through a reopen, stale puts
 * ignored, tombstones kept, atomic replacement (a leftover temp file never corrupts a
 * load), and a corrupt file refused with its line number.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cd_doc.h"
#include "cd_store.h"

static char *tmpdir(void)
{
    char tmpl[] = "/tmp/cd-store-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void rmdir_all(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static bson_t *doc(const char *id, int64_t version, const char *name)
{
    bson_t *d = bson_new();
    BSON_APPEND_UTF8(d, "id", id);
    BSON_APPEND_UTF8(d, "name", name);
    BSON_APPEND_INT64(d, "version", version);
    return d;
}

typedef struct loaded_s {
    int n[2];
    char names[2][8][32];
    int64_t versions[2][8];
    bool deleted[2][8];
} loaded_t;

static void on_load(cd_kind_t kind, const bson_t *d, void *opaque)
{
    loaded_t *l = opaque;
    int i = l->n[kind]++;
    assert_true(i < 8);
    cd_doc_utf8(d, "name", l->names[kind][i], sizeof(l->names[kind][i]));
    l->versions[kind][i] = cd_doc_int64(d, "version", -1);
    l->deleted[kind][i] = cd_doc_deleted(d);
    bson_iter_t it;
    assert_false(bson_iter_init_find(&it, d, "_id")); /* the store's own key is not part of the document */
}

static void put(cd_store_t *s, cd_kind_t kind, bson_t *d, bool want_applied)
{
    at_err_t err = {0};
    bool applied = !want_applied;
    assert_int_equal(s->ops->put(s, kind, d, &applied, &err), 0);
    assert_int_equal(applied, want_applied);
    bson_destroy(d);
}

static void test_cd_store_file__round_trip_and_stale(void **state)
{
    (void)state;
    char *dir = tmpdir();
    at_err_t err = {0};
    cd_store_t *s = cd_store_file_new(dir, &err);
    assert_non_null(s);
    assert_string_equal(s->ops->name, "file");
    put(s, CD_KIND_CAMPAIGN, doc("c-1", 1, "one"), true);
    put(s, CD_KIND_CAMPAIGN, doc("c-2", 2, "two"), true);
    put(s, CD_KIND_PUBLISHER, doc("p-1", 3, "pub"), true);
    put(s, CD_KIND_CAMPAIGN, doc("c-1", 4, "one-v4"), true);
    put(s, CD_KIND_CAMPAIGN, doc("c-1", 3, "stale"), false); /* older: ignored, not an error */
    put(s, CD_KIND_CAMPAIGN, doc("c-1", 4, "same"), false);  /* equal: ignored */
    bson_t *t = bson_new();
    BSON_APPEND_UTF8(t, "id", "c-2");
    BSON_APPEND_INT64(t, "version", 5);
    BSON_APPEND_BOOL(t, "deleted", true);
    put(s, CD_KIND_CAMPAIGN, t, true);
    cd_store_destroy(s);

    s = cd_store_file_new(dir, &err);
    loaded_t l = {0};
    assert_int_equal(s->ops->load(s, on_load, &l, &err), 0);
    assert_int_equal(l.n[CD_KIND_CAMPAIGN], 2);
    assert_int_equal(l.n[CD_KIND_PUBLISHER], 1);
    assert_string_equal(l.names[CD_KIND_CAMPAIGN][0], "one-v4");
    assert_int_equal(l.versions[CD_KIND_CAMPAIGN][0], 4);
    assert_true(l.deleted[CD_KIND_CAMPAIGN][1]);
    assert_int_equal(l.versions[CD_KIND_CAMPAIGN][1], 5);
    assert_string_equal(l.names[CD_KIND_PUBLISHER][0], "pub");
    /* after a reload the store still refuses older versions */
    put(s, CD_KIND_CAMPAIGN, doc("c-1", 2, "stale"), false);
    cd_store_destroy(s);
    rmdir_all(dir);
    free(dir);
}

static void test_cd_store_file__leftover_temp_file_is_ignored(void **state)
{
    (void)state;
    char *dir = tmpdir();
    at_err_t err = {0};
    cd_store_t *s = cd_store_file_new(dir, &err);
    put(s, CD_KIND_CAMPAIGN, doc("c-1", 1, "durable"), true);
    cd_store_destroy(s);
    /* A crash between writing the temp file and the rename leaves this behind. */
    char path[512];
    snprintf(path, sizeof(path), "%s/.campaigns.json.tmp", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"_id\":\"c-1\",\"id\":\"c-1\",\"name\":\"half-writ", f);
    fclose(f);

    s = cd_store_file_new(dir, &err);
    loaded_t l = {0};
    assert_int_equal(s->ops->load(s, on_load, &l, &err), 0);
    assert_int_equal(l.n[CD_KIND_CAMPAIGN], 1);
    assert_string_equal(l.names[CD_KIND_CAMPAIGN][0], "durable");
    assert_int_not_equal(access(path, F_OK), 0); /* removed */
    /* and the next write still works */
    put(s, CD_KIND_CAMPAIGN, doc("c-1", 2, "next"), true);
    cd_store_destroy(s);
    rmdir_all(dir);
    free(dir);
}

static void test_cd_store_file__corrupt_file_names_line(void **state)
{
    (void)state;
    char *dir = tmpdir();
    char path[512];
    snprintf(path, sizeof(path), "%s/publishers.json", dir);
    FILE *f = fopen(path, "w");
    fputs("{\"id\":\"p-1\",\"version\":1}\n{not json\n", f);
    fclose(f);
    at_err_t err = {0};
    cd_store_t *s = cd_store_file_new(dir, &err);
    loaded_t l = {0};
    assert_int_equal(s->ops->load(s, on_load, &l, &err), -1);
    assert_non_null(strstr(err.msg, "line 2"));
    cd_store_destroy(s);
    rmdir_all(dir);
    free(dir);
}

static void test_cd_store_file__unwritable_dir(void **state)
{
    (void)state;
    at_err_t err = {0};
    if (geteuid() == 0) {
        /* root can write anywhere; a path below a regular file still fails */
        assert_null(cd_store_file_new("/etc/passwd/x", &err));
    } else {
        assert_null(cd_store_file_new("/proc/cd-no", &err));
    }
    assert_int_equal(err.code, AT_ERR_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cd_store_file__round_trip_and_stale),
        cmocka_unit_test(test_cd_store_file__leftover_temp_file_is_ignored),
        cmocka_unit_test(test_cd_store_file__corrupt_file_names_line),
        cmocka_unit_test(test_cd_store_file__unwritable_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
