/*
 * rec_store_mongo.c: the MongoDB store of the reconciliation command (rec_store.h).
 *
 * Reads with plain finds, streamed through the driver's cursor (batches of REC_MONGO_BATCH
 * documents, never a whole collection), because FerretDB and MongoDB both serve them and an
 * aggregation with exact unique users ($addToSet) would hit the 16 MiB document limit on a
 * busy hour. The filters are written so the enricher's indexes can serve them on MongoDB:
 * events {c: {$gte: ""}, ts: [h, h+1)} matches the index c_1_ts_1 (every valid event has a
 * string c, and $gte "" is every string), which MongoDB scans with a seek per campaign to its
 * hour; rejected {reason: {$gte: ""}, ts: ...} matches reason_1_ts_1 likewise; stats_hourly by
 * the _id range ["<hour>|", "<next hour>|"), since an _id begins with its hour.
 */
#include "rec_store.h"

#include <mongoc/mongoc.h>
#include <stdlib.h>

#include "at_mongo.h"

#define REC_MONGO_DB "adtrack"
#define REC_MONGO_BATCH 2000
#define REC_MONGO_WTIMEOUT_MS 10000
#define REC_MONGO_WRITE_BATCH 100

typedef struct mongo_store_s {
    rec_store_t base;
    mongoc_client_t *client; /* owned */
    bson_t *write_opts;      /* owned: the write concern majority. A pointer, because a
                                bson_t wants 128-byte alignment, which calloc does not give */
} mongo_store_t;

static int64_t mongo_step_ms(rec_store_t *s, int64_t from_ms, int64_t to_ms)
{
    (void)s, (void)from_ms, (void)to_ms;
    return REC_HOUR_MS;
}

typedef int (*add_fn)(rec_tally_t *t, const bson_t *doc, at_err_t *err);

static int stream(mongo_store_t *ms, const char *coll, const bson_t *filter, const bson_t *projection,
                  rec_tally_t *t, add_fn add, at_err_t *err)
{
    mongoc_collection_t *c = mongoc_client_get_collection(ms->client, REC_MONGO_DB, coll);
    bson_t opts = BSON_INITIALIZER;
    BSON_APPEND_INT32(&opts, "batchSize", REC_MONGO_BATCH);
    if (projection != NULL)
        BSON_APPEND_DOCUMENT(&opts, "projection", projection);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, filter, &opts, NULL);
    const bson_t *doc;
    int rc = 0;
    while (rc == 0 && mongoc_cursor_next(cur, &doc))
        if (add(t, doc, err) < 0)
            rc = -1;
    bson_error_t e;
    const bson_t *reply = NULL;
    if (rc == 0 && mongoc_cursor_error_document(cur, &e, &reply)) {
        char what[64];
        snprintf(what, sizeof(what), "find %s.%s", REC_MONGO_DB, coll);
        rc = at_mongo_fail(what, &e, reply, err);
    }
    mongoc_cursor_destroy(cur);
    bson_destroy(&opts);
    mongoc_collection_destroy(c);
    return rc;
}

static void append_ts_range(bson_t *filter, int64_t from_ms, int64_t to_ms)
{
    bson_t r;
    BSON_APPEND_DOCUMENT_BEGIN(filter, "ts", &r);
    BSON_APPEND_DATE_TIME(&r, "$gte", from_ms);
    BSON_APPEND_DATE_TIME(&r, "$lt", to_ms);
    bson_append_document_end(filter, &r);
}

static int mongo_load(rec_store_t *s, rec_tally_t *t, int64_t from_ms, int64_t to_ms, at_err_t *err)
{
    mongo_store_t *ms = (mongo_store_t *)s;
    char from_h[REC_HOUR_STR_LEN + 1], to_h[REC_HOUR_STR_LEN + 1], lo[REC_HOUR_STR_LEN + 2],
        hi[REC_HOUR_STR_LEN + 2];
    rec_hour_str(from_ms, from_h);
    rec_hour_str(to_ms, to_h);
    /* "<hour>|" up to, not including, "<end hour>|": every _id of the hours in between */
    snprintf(lo, sizeof(lo), "%s|", from_h);
    snprintf(hi, sizeof(hi), "%s|", to_h);
    bson_t *stats = BCON_NEW("_id", "{", "$gte", BCON_UTF8(lo), "$lt", BCON_UTF8(hi), "}");
    bson_t events = BSON_INITIALIZER, rejected = BSON_INITIALIZER;
    bson_t *ev_proj = BCON_NEW("e", BCON_INT32(1), "c", BCON_INT32(1), "cr", BCON_INT32(1), "p", BCON_INT32(1),
                               "pl", BCON_INT32(1), "ts", BCON_INT32(1), "uid", BCON_INT32(1), "price_micros",
                               BCON_INT32(1), "payout_micros", BCON_INT32(1), "advertiser", BCON_INT32(1));
    bson_t *rj_proj = BCON_NEW("reason", BCON_INT32(1), "c", BCON_INT32(1), "cr", BCON_INT32(1), "p",
                               BCON_INT32(1), "pl", BCON_INT32(1), "ts", BCON_INT32(1));
    bson_t gte;
    BSON_APPEND_DOCUMENT_BEGIN(&events, "c", &gte);
    BSON_APPEND_UTF8(&gte, "$gte", "");
    bson_append_document_end(&events, &gte);
    append_ts_range(&events, from_ms, to_ms);
    BSON_APPEND_DOCUMENT_BEGIN(&rejected, "reason", &gte);
    BSON_APPEND_UTF8(&gte, "$gte", "");
    bson_append_document_end(&rejected, &gte);
    append_ts_range(&rejected, from_ms, to_ms);
    int rc = stream(ms, "stats_hourly", stats, NULL, t, rec_tally_add_rollup, err);
    if (rc == 0)
        rc = stream(ms, "events", &events, ev_proj, t, rec_tally_add_event, err);
    if (rc == 0)
        rc = stream(ms, "rejected", &rejected, rj_proj, t, rec_tally_add_rejected, err);
    bson_destroy(stats);
    bson_destroy(&events);
    bson_destroy(&rejected);
    bson_destroy(ev_proj);
    bson_destroy(rj_proj);
    return rc;
}

/* Ordered bulks of replace-with-upsert by _id, REC_MONGO_WRITE_BATCH at a time: one round
 * trip per batch instead of one per correction, and a batch small enough to finish well
 * within the socket timeout (wtimeout + 10 s) even on FerretDB, which takes ~90 ms per
 * upsert: 1,001 in one command timed out there. Ordered, so what was written when one fails
 * is a prefix, counted from the replies. */
static int mongo_write_batch(mongo_store_t *ms, bson_t *const *docs, size_t n, size_t *written, at_err_t *err)
{
    if (written != NULL)
        *written = 0;
    if (n == 0)
        return 0;
    mongoc_collection_t *c = mongoc_client_get_collection(ms->client, REC_MONGO_DB, "stats_hourly");
    bson_t opts;
    bson_copy_to(ms->write_opts, &opts);
    BSON_APPEND_BOOL(&opts, "ordered", true);
    mongoc_bulk_operation_t *bulk = mongoc_collection_create_bulk_operation_with_opts(c, &opts);
    bson_t *upsert = BCON_NEW("upsert", BCON_BOOL(true));
    bson_error_t e;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        bson_iter_t it;
        bson_iter_init_find(&it, docs[i], "_id");
        bson_t sel = BSON_INITIALIZER;
        BSON_APPEND_UTF8(&sel, "_id", bson_iter_utf8(&it, NULL));
        if (!mongoc_bulk_operation_replace_one_with_opts(bulk, &sel, docs[i], upsert, &e))
            rc = at_err_set(err, AT_ERR_INTERNAL, "mongo replace stats_hourly correction: %s", e.message);
        bson_destroy(&sel);
    }
    if (rc == 0) {
        bson_t reply;
        bool ok = mongoc_bulk_operation_execute(bulk, &reply, &e) != 0;
        bson_iter_t it;
        int64_t done = 0;
        if (bson_iter_init_find(&it, &reply, "nMatched"))
            done += bson_iter_as_int64(&it);
        if (bson_iter_init_find(&it, &reply, "nUpserted"))
            done += bson_iter_as_int64(&it);
        if (written != NULL)
            *written = (size_t)done;
        if (!ok)
            rc = at_mongo_fail("replace stats_hourly corrections", &e, &reply, err);
        bson_destroy(&reply);
    }
    bson_destroy(upsert);
    mongoc_bulk_operation_destroy(bulk);
    bson_destroy(&opts);
    mongoc_collection_destroy(c);
    return rc;
}

static int mongo_write(rec_store_t *s, bson_t *const *docs, size_t n, size_t *written, at_err_t *err)
{
    size_t total = 0;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i += REC_MONGO_WRITE_BATCH) {
        size_t done = 0;
        rc = mongo_write_batch((mongo_store_t *)s, docs + i, AT_MIN(REC_MONGO_WRITE_BATCH, n - i), &done, err);
        total += done;
    }
    if (written != NULL)
        *written = total;
    return rc;
}

static void mongo_free(rec_store_t *s)
{
    mongo_store_t *ms = (mongo_store_t *)s;
    mongoc_client_destroy(ms->client);
    bson_destroy(ms->write_opts);
    free(ms);
}

rec_store_t *rec_store_mongo_new(const char *uri, at_err_t *err)
{
    mongo_store_t *ms = calloc(1, sizeof(*ms));
    if (ms == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    ms->write_opts = bson_new();
    ms->client = at_mongo_client_new(uri, "adtrack-reconcile", "majority", REC_MONGO_WTIMEOUT_MS, ms->write_opts, err);
    if (ms->client == NULL) {
        bson_destroy(ms->write_opts);
        free(ms);
        return NULL;
    }
    ms->base = (rec_store_t){.step_ms = mongo_step_ms, .load = mongo_load, .write = mongo_write, .free = mongo_free};
    return &ms->base;
}

void rec_store_free(rec_store_t *s)
{
    if (s != NULL)
        s->free(s);
}
