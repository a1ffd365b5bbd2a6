/*
 * enr_sink_mongo.c: the MongoDB sink (see enr_sink.h and docs/MONGODB.md).
 *
 * Valid events go to adtrack.events, rejected ones to adtrack.rejected, each batch as one
 * unordered insert (mongoc_collection_insert_many with {ordered: false}) per collection.
 * Idempotency comes from the documents' own "_id" (the event id): a document that is
 * already stored comes back as a duplicate-key write error (11000), which this sink counts
 * as success. Everything else is classified into a retriable or a permanent at_err code
 * (the table is in docs/MONGODB.md and in at_mongo_code_class() below).
 *
 * Threads: a sink owns one mongoc_client_t, which is not thread-safe. The sink is used by
 * the single enricher worker thread that created it (one sink per worker); calls block
 * that thread for at most the URI's timeouts (defaults set in at_mongo_uri_new()).
 */
#include "enr_sink.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>

#include <mongoc/mongoc.h>

#include "at_mongo.h"

#include "at_log.h"

#define ENR_MONGO_DB "adtrack"
#define ENR_MONGO_EVENTS "events"
#define ENR_MONGO_REJECTED "rejected"
#define ENR_MONGO_APPNAME "adtrack-enricher"
#define ENR_MONGO_COMP "sink-mongo"


typedef struct enr_sink_mongo_s {
    enr_sink_t base; /* first: the enr_sink_t handed out is this struct */
    mongoc_client_t *client;
    mongoc_collection_t *events;
    mongoc_collection_t *rejected;
    bson_t *insert_opts;   /* {ordered: false, writeConcern: {...}} */
    bool indexes_pending; /* createIndexes could not reach the server yet */
    bool indexes_warned;  /* the deferral was logged at warn level once already */
} enr_sink_mongo_t;

/* ---- indexes --------------------------------------------------------------------------------- */

/* createIndexes for one collection with one compound ascending index on @p k1, @p k2. */
static int create_index(mongoc_collection_t *coll, const char *cname, const char *k1, const char *k2, at_err_t *err)
{
    char name[64];
    snprintf(name, sizeof(name), "%s_1_%s_1", k1, k2);
    bson_t *cmd = BCON_NEW("createIndexes", BCON_UTF8(cname), "indexes", "[", "{", "key", "{", k1, BCON_INT32(1), k2,
                           BCON_INT32(1), "}", "name", BCON_UTF8(name), "}", "]");
    bson_t reply;
    bson_error_t e;
    bool ok = mongoc_collection_write_command_with_opts(coll, cmd, NULL, &reply, &e);
    int rc = 0;
    if (!ok) {
        char what[96];
        snprintf(what, sizeof(what), "createIndexes %s.%s", ENR_MONGO_DB, cname);
        rc = at_mongo_fail(what, &e, &reply, err);
    }
    bson_destroy(&reply);
    bson_destroy(cmd);
    return rc;
}

/*
 * Creates the indexes if they are still pending. A transport or other retriable failure
 * leaves them pending (tried again before the next write); a permanent one (e.g. an index
 * of that name with other options already exists) is logged and not retried: writes do
 * not depend on the index.
 */
static void ensure_indexes(enr_sink_mongo_t *m)
{
    if (!m->indexes_pending)
        return;
    at_err_t err;
    at_err_clear(&err);
    int rc = create_index(m->events, ENR_MONGO_EVENTS, "c", "ts", &err);
    if (rc == 0)
        rc = create_index(m->rejected, ENR_MONGO_REJECTED, "reason", "ts", &err);
    if (rc == 0) {
        m->indexes_pending = false;
        at_log(AT_LOG_INFO, ENR_MONGO_COMP, "indexes ready", "events", "c_1_ts_1", "rejected", "reason_1_ts_1", NULL);
    } else if (at_err_retriable(err.code)) {
        /* Tried before every write while the server is away: one warning is enough. */
        at_log(m->indexes_warned ? AT_LOG_DEBUG : AT_LOG_WARN, ENR_MONGO_COMP, "index creation deferred", "error",
               err.msg, NULL);
        m->indexes_warned = true;
    } else {
        m->indexes_pending = false;
        at_log(AT_LOG_ERROR, ENR_MONGO_COMP, "index creation failed", "error", err.msg, NULL);
    }
}

/* ---- writes ---------------------------------------------------------------------------------- */

/*
 * One unordered insert of @p n documents into @p coll; adds to @p res on success.
 * Duplicate-key write errors count as duplicates. Any other write error, a write concern
 * error or a transport error fails the call; what was inserted stays inserted, and a retry
 * of the same documents turns those into duplicates.
 */
static int insert_batch(enr_sink_mongo_t *m, mongoc_collection_t *coll, const char *cname, const bson_t *const *docs,
                        size_t n, enr_sink_result_t *res, at_err_t *err)
{
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        /* Without an _id the driver would add an ObjectId, and a replayed batch would be
         * stored twice. */
        if (docs[i] == NULL || !bson_has_field(docs[i], "_id"))
            return at_err_set(err, AT_ERR_INVALID, "%s[%zu]: document has no _id; expected the event id", cname, i);
    }
    bson_t reply;
    bson_error_t e;
    bool ok = mongoc_collection_insert_many(coll, (const bson_t **)docs, n, m->insert_opts, &reply, &e);
    int rc = 0;
    at_mongo_reply_t ri;
    at_mongo_reply_parse(&reply, &ri);
    if (ok) {
        res->inserted += (size_t)ri.inserted;
    } else if (at_mongo_error_is_transport(&e)) {
        /* at_mongo_fail tells a refused certificate (AT_ERR_AUTH) from an outage. */
        char what[96];
        snprintf(what, sizeof(what), "insert %s.%s", ENR_MONGO_DB, cname);
        rc = at_mongo_fail(what, &e, &reply, err);
    } else if (ri.nother > 0) {
        at_errcode_t code = mongoc_error_has_label(&reply, "RetryableWriteError") ? AT_ERR_UNAVAILABLE
                                                                                  : at_mongo_code_class(ri.other_code);
        rc = at_err_set(err, code, "mongo insert %s.%s: %zu of %zu documents failed, first %s[%lld]: %s (code %lld)",
                        ENR_MONGO_DB, cname, ri.nother, n, cname, (long long)ri.other_index, ri.other_msg,
                        (long long)ri.other_code);
    } else if (ri.wce) {
        /* The documents are on the primary but not confirmed by w: retry until they are
         * (the retry sees duplicates and waits for the write concern again). 79 and 100
         * mean the write concern itself cannot be met: retrying would spin. */
        at_errcode_t code = (ri.wce_code == 79 || ri.wce_code == 100) ? AT_ERR_INVALID : AT_ERR_TIMEOUT;
        rc = at_err_set(err, code, "mongo insert %s.%s: write concern error: %s (code %lld)", ENR_MONGO_DB, cname,
                        ri.wce_msg, (long long)ri.wce_code);
    } else if (ri.duplicates > 0) {
        res->inserted += (size_t)ri.inserted;
        res->duplicates += ri.duplicates;
    } else {
        char what[96];
        snprintf(what, sizeof(what), "insert %s.%s", ENR_MONGO_DB, cname);
        rc = at_mongo_fail(what, &e, &reply, err);
    }
    bson_destroy(&reply);
    return rc;
}

/* A round trip to the primary: {ping: 1} on admin with read preference primary, so it
 * succeeds only when a writable server is selectable and answers. */
static int ping_primary(enr_sink_mongo_t *m, at_err_t *err)
{
    bson_t *cmd = BCON_NEW("ping", BCON_INT32(1));
    mongoc_read_prefs_t *rp = mongoc_read_prefs_new(MONGOC_READ_PRIMARY);
    bson_t reply;
    bson_error_t e;
    bool ok = mongoc_client_command_simple(m->client, "admin", cmd, rp, &reply, &e);
    int rc = ok ? 0 : at_mongo_fail("ping", &e, &reply, err);
    bson_destroy(&reply);
    mongoc_read_prefs_destroy(rp);
    bson_destroy(cmd);
    return rc;
}

/*
 * An empty batch (no events, no rejected documents) pings the primary instead of writing:
 * the worker uses it to prove the sink before /readyz turns ready, and while it waits for
 * MongoDB to come back.
 */
static int sink_mongo_write(enr_sink_t *s, const bson_t *const *events, size_t nevents, const bson_t *const *rejected,
                            size_t nrejected, enr_sink_result_t *res, at_err_t *err)
{
    enr_sink_mongo_t *m = (enr_sink_mongo_t *)s;
    enr_sink_result_t local = {0, 0};
    ensure_indexes(m);
    if (nevents == 0 && nrejected == 0) {
        if (res != NULL)
            *res = local;
        return ping_primary(m, err);
    }
    if (insert_batch(m, m->events, ENR_MONGO_EVENTS, events, nevents, &local, err) != 0 ||
        insert_batch(m, m->rejected, ENR_MONGO_REJECTED, rejected, nrejected, &local, err) != 0) {
        if (res != NULL)
            *res = (enr_sink_result_t){0, 0};
        return -1;
    }
    if (res != NULL)
        *res = local;
    return 0;
}

static void sink_mongo_destroy(enr_sink_t *s)
{
    enr_sink_mongo_t *m = (enr_sink_mongo_t *)s;
    if (m == NULL)
        return;
    mongoc_collection_destroy(m->events);
    mongoc_collection_destroy(m->rejected);
    mongoc_client_destroy(m->client);
    bson_destroy(m->insert_opts);
    free(m);
}

static const enr_sink_ops_t sink_mongo_ops = {
    .write = sink_mongo_write,
    .destroy = sink_mongo_destroy,
    .name = "mongodb",
};

/*
 * Connects lazily (the driver connects on first use), then tries createIndexes once: an
 * unreachable server does not fail construction, the indexes are retried before the next
 * write instead. Only a malformed URI or write concern returns NULL.
 * @locality: the enricher worker thread that will own the sink.
 */
enr_sink_t *enr_sink_mongo_new(const char *uri, const char *w, int64_t wtimeout_ms, at_err_t *err)
{
    enr_sink_mongo_t *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "mongo sink: out of memory");
        return NULL;
    }
    m->base.ops = &sink_mongo_ops;
    /* On the heap: bson_t is declared 128-byte aligned, which a calloc'd struct embedding
     * one does not give (UBSan: misaligned member access). */
    m->insert_opts = bson_new();
    BSON_APPEND_BOOL(m->insert_opts, "ordered", false);
    m->client = at_mongo_client_new(uri, ENR_MONGO_APPNAME, w, wtimeout_ms, m->insert_opts, err);
    if (m->client == NULL) {
        bson_destroy(m->insert_opts);
        free(m);
        return NULL;
    }
    m->events = mongoc_client_get_collection(m->client, ENR_MONGO_DB, ENR_MONGO_EVENTS);
    m->rejected = mongoc_client_get_collection(m->client, ENR_MONGO_DB, ENR_MONGO_REJECTED);
    m->indexes_pending = true;
    ensure_indexes(m);
    return &m->base;
}
