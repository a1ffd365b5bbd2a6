/*
 * fuzz_coredata: the core-data JSON parser and validator.
 *
 * The input is one message of adtrack.coredata.updates, and also the body of an admin-API
 * PUT (campaign and publisher), budget or pause request. Invariants (abort() on failure):
 *  - cd_update_parse either succeeds with a valid id and, for a put, a canonical document,
 *    or fails with at least one problem (malformed only when the input is no JSON object);
 *  - a canonical document serialises to JSON that validates again to the same bytes
 *    (validation is idempotent) and carries no "version";
 *  - every problem list serialises to valid JSON with printable field names, as the 400
 *    body and the rejected record do;
 *  - the rejected record's "raw" is valid UTF-8 of at most 3 x 2048 bytes.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "cd_doc.h"

#define CHECK(cond, ...)                                                                                               \
    do {                                                                                                               \
        if (!(cond)) {                                                                                                 \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                                              \
            fputc('\n', stderr);                                                                                       \
            abort();                                                                                                   \
        }                                                                                                              \
    } while (0)

static void check_errs(const cd_verrs_t *e)
{
    CHECK(e->count > 0 || e->dropped > 0, "failure without a problem");
    CHECK(e->count <= CD_VERRS_MAX, "count %zu", e->count);
    for (size_t i = 0; i < e->count; i++) {
        for (const char *p = e->items[i].field; *p; p++)
            CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f, "unprintable field name");
        CHECK(e->items[i].expected[0] != '\0', "empty expectation for %s", e->items[i].field);
    }
    bson_t b = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&b, "error", "validation failed");
    cd_verrs_append(e, &b);
    size_t len;
    char *json = bson_as_relaxed_extended_json(&b, &len);
    CHECK(json != NULL, "problem list does not serialise");
    bson_t back;
    CHECK(bson_init_from_json(&back, json, (ssize_t)len, NULL), "problem list JSON does not read back");
    bson_destroy(&back);
    bson_free(json);
    bson_destroy(&b);
}

/* A canonical document validates again, to the same bytes. */
static void check_canonical(cd_kind_t kind, const bson_t *doc)
{
    bson_iter_t it;
    CHECK(!bson_iter_init_find(&it, doc, "version"), "client version copied into the document");
    size_t len;
    char *json = bson_as_relaxed_extended_json(doc, &len);
    CHECK(json != NULL, "canonical document does not serialise");
    bson_t again, canon2;
    cd_verrs_t errs = {0};
    int64_t ev;
    CHECK(cd_json_object(json, len, &again, &errs) == 0, "canonical JSON unreadable: %s", json);
    CHECK(cd_doc_validate(kind, &again, NULL, &canon2, &ev, &errs) == 0, "canonical document invalid: %s", json);
    CHECK(canon2.len == doc->len && memcmp(bson_get_data(&canon2), bson_get_data(doc), doc->len) == 0,
          "validation is not idempotent: %s", json);
    bson_destroy(&canon2);
    bson_destroy(&again);
    bson_free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;

    /* the updates topic */
    cd_update_t u;
    cd_verrs_t errs = {0};
    bool malformed = true;
    if (cd_update_parse(in, size, &u, &errs, &malformed) == 0) {
        CHECK(!malformed, "malformed but accepted");
        CHECK(cd_id_valid(u.id, strlen(u.id)), "invalid id accepted");
        CHECK(u.expect_version >= -1 && u.expect_version <= CD_VERSION_MAX, "version %lld",
              (long long)u.expect_version);
        if (u.op == CD_OP_PUT)
            check_canonical(u.kind, &u.doc);
        else
            CHECK(u.doc.len == 5, "doc on a non-put");
        if (u.op == CD_OP_BUDGET_SET || u.op == CD_OP_BUDGET_TOPUP)
            CHECK(u.amount >= 0 && u.amount <= CD_BUDGET_MAX, "amount %lld", (long long)u.amount);
        cd_update_free(&u);
    } else {
        check_errs(&errs);
    }

    /* the admin API bodies */
    bson_t body;
    memset(&errs, 0, sizeof(errs));
    if (cd_json_object(in, size, &body, &errs) == 0) {
        for (int k = 0; k < 2; k++) {
            bson_t canon;
            int64_t ev;
            cd_verrs_t e2 = {0};
            if (cd_doc_validate((cd_kind_t)k, &body, k ? "pub-1" : "camp-1", &canon, &ev, &e2) == 0) {
                check_canonical((cd_kind_t)k, &canon);
                bson_destroy(&canon);
            } else {
                check_errs(&e2);
            }
        }
        cd_update_t b;
        cd_verrs_t e3 = {0};
        cd_update_init(&b);
        if (cd_budget_body(&body, &b, &e3) != 0)
            check_errs(&e3);
        else
            CHECK(b.op == CD_OP_BUDGET_SET || b.op == CD_OP_BUDGET_TOPUP, "budget op %d", (int)b.op);
        memset(&e3, 0, sizeof(e3));
        if (cd_version_body(&body, &b, &e3) != 0)
            check_errs(&e3);
        cd_update_free(&b);
        bson_destroy(&body);
    } else {
        check_errs(&errs);
    }

    /* the rejected record keeps the raw input as valid UTF-8 */
    char *raw = cd_utf8_sanitize(in, size, CD_RAW_MAX);
    size_t rl = strlen(raw);
    CHECK(rl <= 3 * CD_RAW_MAX, "raw %zu bytes", rl);
    CHECK(bson_utf8_validate(raw, rl, false), "raw not UTF-8");
    bson_free(raw);
    return 0;
}
