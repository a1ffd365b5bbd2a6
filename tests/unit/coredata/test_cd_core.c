/*
 * test_cd_core.c: the core worker's rules without threads (cd_core_apply on the test
 * thread, file store, no fan-out): versions strictly increase across entities and survive a
 * restart; optimistic concurrency (409); 404s; budget set/top-up; pause is idempotent.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>

#include "cd_core.h"

static cd_conf_t conf = {.queue_max = 100};

typedef struct fixture_s {
    char dir[64];
    cd_state_t st;
    cd_core_t *core;
} fixture_t;

static void open_core(fixture_t *f)
{
    at_err_t err = {0};
    cd_state_init(&f->st);
    cd_store_t *s = cd_store_file_new(f->dir, &err);
    assert_non_null(s);
    f->core = cd_core_new(&conf, s, &f->st, NULL, NULL, &err);
    assert_non_null(f->core);
}

static void close_core(fixture_t *f)
{
    cd_core_destroy(f->core);
    cd_state_free(&f->st);
}

static int setup(void **state)
{
    fixture_t *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/cd-core-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    open_core(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture_t *f = *state;
    char cmd[128];
    close_core(f);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static cd_req_t *campaign_put(const char *id, int64_t budget, int64_t expect)
{
    cd_req_t *r = cd_req_new();
    r->u.kind = CD_KIND_CAMPAIGN;
    r->u.op = CD_OP_PUT;
    r->u.expect_version = expect;
    snprintf(r->u.id, sizeof(r->u.id), "%s", id);
    BSON_APPEND_UTF8(&r->u.doc, "id", id);
    BSON_APPEND_UTF8(&r->u.doc, "status", "active");
    BSON_APPEND_INT64(&r->u.doc, "budget_micros", budget);
    return r;
}

static cd_req_t *simple(cd_kind_t kind, cd_op_t op, const char *id, int64_t amount, int64_t expect)
{
    cd_req_t *r = cd_req_new();
    r->u.kind = kind;
    r->u.op = op;
    r->u.amount = amount;
    r->u.expect_version = expect;
    snprintf(r->u.id, sizeof(r->u.id), "%s", id);
    return r;
}

/* Applies @p r, checks the status, returns the resulting version (0 without doc). */
static int64_t apply(fixture_t *f, cd_req_t *r, int want_status)
{
    cd_core_apply(f->core, r);
    if (r->status != want_status)
        fail_msg("status %d, want %d (%s)", r->status, want_status, r->msg);
    int64_t v = r->doc ? cd_doc_int64(r->doc, "version", 0) : 0;
    cd_req_free(r);
    return v;
}

static void test_cd_core_apply__versions_strictly_increase(void **state)
{
    fixture_t *f = *state;
    int64_t last = 0;
    for (int i = 0; i < 20; i++) {
        char id[16];
        snprintf(id, sizeof(id), "c-%d", i % 3);
        cd_req_t *r = campaign_put(id, 100, -1);
        int64_t v = apply(f, r, i < 3 ? 201 : 200);
        assert_true(v > last);
        last = v;
    }
    cd_req_t *p = simple(CD_KIND_PUBLISHER, CD_OP_PUT, "p-1", 0, -1);
    BSON_APPEND_UTF8(&p->u.doc, "id", "p-1");
    assert_true(apply(f, p, 201) > last);
}

static void test_cd_core_apply__optimistic_concurrency(void **state)
{
    fixture_t *f = *state;
    assert_int_equal(apply(f, campaign_put("c-1", 100, 5), 409), 0); /* does not exist: only 0 matches */
    int64_t v1 = apply(f, campaign_put("c-1", 100, 0), 201);
    cd_req_t *r = campaign_put("c-1", 200, v1 + 100);
    cd_core_apply(f->core, r);
    assert_int_equal(r->status, 409);
    assert_non_null(r->doc); /* the current entity comes back */
    assert_int_equal(cd_doc_int64(r->doc, "version", 0), v1);
    assert_non_null(strstr(r->msg, "version"));
    cd_req_free(r);
    int64_t v2 = apply(f, campaign_put("c-1", 200, v1), 200);
    assert_true(v2 > v1);
    assert_int_equal(apply(f, simple(CD_KIND_CAMPAIGN, CD_OP_PAUSE, "c-1", 0, v1), 409), v2); /* stale */
    assert_int_equal(apply(f, campaign_put("c-1", 300, 0), 409), v2);                         /* exists */
}

static void test_cd_core_apply__not_found_and_delete(void **state)
{
    fixture_t *f = *state;
    apply(f, simple(CD_KIND_CAMPAIGN, CD_OP_DELETE, "nope", 0, -1), 404);
    apply(f, simple(CD_KIND_CAMPAIGN, CD_OP_PAUSE, "nope", 0, -1), 404);
    apply(f, simple(CD_KIND_CAMPAIGN, CD_OP_BUDGET_TOPUP, "nope", 5, -1), 404);
    int64_t v1 = apply(f, campaign_put("c-1", 100, -1), 201);
    int64_t vd = apply(f, simple(CD_KIND_CAMPAIGN, CD_OP_DELETE, "c-1", 0, -1), 200);
    assert_true(vd > v1);
    apply(f, simple(CD_KIND_CAMPAIGN, CD_OP_DELETE, "c-1", 0, -1), 404);
    /* the tombstone keeps its version; re-creating goes on above it */
    ssize_t i = cd_state_find(&f->st, CD_KIND_CAMPAIGN, "c-1");
    assert_true(i >= 0);
    assert_true(f->st.items[CD_KIND_CAMPAIGN][i].deleted);
    assert_true(apply(f, campaign_put("c-1", 100, 0), 201) > vd);
}

static void test_cd_core_apply__budget_and_pause(void **state)
{
    fixture_t *f = *state;
    apply(f, campaign_put("c-1", 100, -1), 201);
    cd_req_t *r = simple(CD_KIND_CAMPAIGN, CD_OP_BUDGET_TOPUP, "c-1", 50, -1);
    cd_core_apply(f->core, r);
    assert_int_equal(r->status, 200);
    assert_int_equal(cd_doc_int64(r->doc, "budget_micros", 0), 150);
    cd_req_free(r);
    r = simple(CD_KIND_CAMPAIGN, CD_OP_BUDGET_SET, "c-1", 7, -1);
    cd_core_apply(f->core, r);
    assert_int_equal(cd_doc_int64(r->doc, "budget_micros", 0), 7);
    cd_req_free(r);
    r = simple(CD_KIND_CAMPAIGN, CD_OP_BUDGET_TOPUP, "c-1", CD_BUDGET_MAX, -1);
    cd_core_apply(f->core, r);
    assert_int_equal(r->status, 400);
    assert_string_equal(r->errs.items[0].field, "topup_micros");
    cd_req_free(r);

    int64_t vp = apply(f, simple(CD_KIND_CAMPAIGN, CD_OP_PAUSE, "c-1", 0, -1), 200);
    /* pausing a paused campaign changes nothing: same version */
    assert_int_equal(apply(f, simple(CD_KIND_CAMPAIGN, CD_OP_PAUSE, "c-1", 0, -1), 200), vp);
    assert_true(apply(f, simple(CD_KIND_CAMPAIGN, CD_OP_RESUME, "c-1", 0, -1), 200) > vp);
}

static void test_cd_core_new__versions_survive_restart(void **state)
{
    fixture_t *f = *state;
    int64_t last = 0;
    for (int i = 0; i < 5; i++)
        last = apply(f, campaign_put("c-1", 100 + i, -1), i ? 200 : 201);
    int64_t high = f->st.version;
    assert_true(high >= last);
    close_core(f);
    open_core(f);
    assert_int_equal(f->st.version, last); /* reserved-but-unused versions need not survive */
    ssize_t i = cd_state_find(&f->st, CD_KIND_CAMPAIGN, "c-1");
    assert_int_equal(f->st.items[CD_KIND_CAMPAIGN][i].version, last);
    assert_int_equal(cd_doc_int64(f->st.items[CD_KIND_CAMPAIGN][i].doc, "budget_micros", 0), 104);
    assert_true(apply(f, campaign_put("c-2", 1, -1), 201) > last);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_cd_core_apply__versions_strictly_increase, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_core_apply__optimistic_concurrency, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_core_apply__not_found_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_core_apply__budget_and_pause, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cd_core_new__versions_survive_restart, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
