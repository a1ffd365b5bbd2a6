/*
 * cd_store_mongo.c: the MongoDB core-data store (see cd_store.h and docs/MONGODB.md).
 *
 * Campaigns live in adtrack.campaigns and publishers in adtrack.publishers, one document
 * per entity with "_id" = the entity id, plus every field of the core-data document
 * (docs/CORE-DATA.md), "version" included. A put is a versioned upsert:
 *
 *   update {q: {_id: id, version: {$lte: v}}, u: <doc with _id>, upsert: true}
 *
 * A stored version lower than (or equal to) v matches and is replaced; a higher one does
 * not match, the upsert then tries to insert a second document with the same _id and the
 * server answers duplicate key (11000): the write is stale. Why $lte and not $lt, and why
 * one duplicate-key answer is retried once, is explained above store_put().
 *
 * Threads: one mongoc_client_t behind a mutex, so load() and put() may be called from any
 * thread; calls are serialised and block the caller for at most the URI's timeouts.
 */
#include "cd_store.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>

#include <mongoc/mongoc.h>

#include "at_mongo.h"

#include "at_log.h"

#define CD_MONGO_DB "adtrack"
#define CD_MONGO_CAMPAIGNS "campaigns"
#define CD_MONGO_PUBLISHERS "publishers"
#define CD_MONGO_APPNAME "adtrack-coredata"
#define CD_MONGO_COMP "store-mongo"


typedef struct cd_store_mongo_s {
    cd_store_t base;      /* first: the cd_store_t handed out is this struct */
    pthread_mutex_t lock; /* recursive: a load callback may call put() */
    mongoc_client_t *client;
    mongoc_collection_t *colls[2]; /* by cd_kind_t */
    bson_t *put_opts;               /* {upsert: true, writeConcern: {...}} */
} cd_store_mongo_t;

/*
 * The helpers below (driver set-up, URI defaults, write concern, error classification)
 * are the same as in enricher/enr_sink_mongo.c; the two services are separate libraries
 * and keep their copies static. docs/MONGODB.md describes them once.
 */

static const char *const kind_coll[2] = {CD_MONGO_CAMPAIGNS, CD_MONGO_PUBLISHERS};

static int64_t reply_int(const bson_t *reply, const char *key)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, reply, key) && BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_int64(&it);
    return 0;
}

/*
 * One versioned upsert. Returns 0 with *@p outcome: 1 = stored (matched or upserted),
 * 0 = duplicate key (a document with this _id and a higher version exists, or one was
 * inserted concurrently); or -1 + err.
 */
static int put_once(cd_store_mongo_t *m, cd_kind_t kind, const bson_t *filter, const bson_t *repl, int *outcome,
                    at_err_t *err)
{
    const char *cname = kind_coll[kind];
    bson_t reply;
    bson_error_t e;
    bool ok = mongoc_collection_replace_one(m->colls[kind], filter, repl, m->put_opts, &reply, &e);
    at_mongo_reply_t ri;
    at_mongo_reply_parse(&reply, &ri);
    int rc = 0;
    if (ok) {
        if (reply_int(&reply, "matchedCount") > 0 || reply_int(&reply, "upsertedCount") > 0)
            *outcome = 1;
        else /* an upsert always matches or inserts; a server that says neither is not one we know */
            rc = at_err_set(err, AT_ERR_INTERNAL, "mongo update %s.%s: upsert neither matched nor inserted",
                            CD_MONGO_DB, cname);
    } else if (at_mongo_error_is_transport(&e)) {
        rc = at_err_set(err, AT_ERR_UNAVAILABLE, "mongo update %s.%s: %s", CD_MONGO_DB, cname, e.message);
    } else if (ri.nother > 0) {
        at_errcode_t code = mongoc_error_has_label(&reply, "RetryableWriteError") ? AT_ERR_UNAVAILABLE
                                                                                  : at_mongo_code_class(ri.other_code);
        rc = at_err_set(err, code, "mongo update %s.%s: %s (code %lld)", CD_MONGO_DB, cname, ri.other_msg,
                        (long long)ri.other_code);
    } else if (ri.duplicates > 0) {
        /* Nothing was written, so a write concern error beside it does not matter. */
        *outcome = 0;
    } else if (ri.wce) {
        at_errcode_t code = (ri.wce_code == 79 || ri.wce_code == 100) ? AT_ERR_INVALID : AT_ERR_TIMEOUT;
        rc = at_err_set(err, code, "mongo update %s.%s: write concern error: %s (code %lld)", CD_MONGO_DB, cname,
                        ri.wce_msg, (long long)ri.wce_code);
    } else {
        char what[96];
        snprintf(what, sizeof(what), "update %s.%s", CD_MONGO_DB, cname);
        rc = at_mongo_fail(what, &e, &reply, err);
    }
    bson_destroy(&reply);
    return rc;
}

/*
 * The filter is {_id: id, version: {$lte: v}} rather than $lt, so that putting the same
 * version again (the caller retrying after a timeout or a dropped connection, when the
 * first attempt may have landed) matches, rewrites the identical document and waits for
 * the write concern again: the retry reports applied = true and is durable when it
 * returns. With $lt it would report "stale" for the caller's own change, and coredata
 * would skip fanning it out. Versions come from one global counter, so an equal version is
 * the same change.
 *
 * A duplicate key is retried once: two upserts racing on a new id both miss, one inserts,
 * the other gets 11000 although its version may be the higher one. The retry is
 * definitive because the document now exists: it matches (applied) or the stored version
 * is higher (duplicate key again: stale, *applied = false).
 */
static int store_put(cd_store_t *s, cd_kind_t kind, const bson_t *doc, bool *applied, at_err_t *err)
{
    cd_store_mongo_t *m = (cd_store_mongo_t *)s;
    if (applied != NULL)
        *applied = false;
    if ((unsigned)kind > CD_KIND_PUBLISHER)
        return at_err_set(err, AT_ERR_INVALID, "kind: %d; expected campaign or publisher", (int)kind);
    bson_iter_t it;
    if (doc == NULL || !bson_iter_init_find(&it, doc, "id") || !BSON_ITER_HOLDS_UTF8(&it))
        return at_err_set(err, AT_ERR_INVALID, "id: missing; expected the entity id as a string");
    uint32_t id_len;
    const char *id = bson_iter_utf8(&it, &id_len);
    if (id_len == 0)
        return at_err_set(err, AT_ERR_INVALID, "id: empty; expected the entity id");
    if (!bson_iter_init_find(&it, doc, "version") || !(BSON_ITER_HOLDS_INT64(&it) || BSON_ITER_HOLDS_INT32(&it)))
        return at_err_set(err, AT_ERR_INVALID, "version: missing; expected an integer");
    int64_t version = bson_iter_as_int64(&it);

    bson_t filter = BSON_INITIALIZER, lte, repl = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&filter, "_id", id);
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "version", &lte);
    BSON_APPEND_INT64(&lte, "$lte", version);
    bson_append_document_end(&filter, &lte);
    BSON_APPEND_UTF8(&repl, "_id", id);
    bson_copy_to_excluding_noinit(doc, &repl, "_id", NULL);

    int rc = 0, outcome = 0;
    pthread_mutex_lock(&m->lock);
    for (int attempt = 0; attempt < 2; attempt++) {
        rc = put_once(m, kind, &filter, &repl, &outcome, err);
        if (rc != 0 || outcome == 1)
            break;
    }
    pthread_mutex_unlock(&m->lock);
    bson_destroy(&filter);
    bson_destroy(&repl);
    if (rc == 0 && applied != NULL)
        *applied = outcome == 1;
    return rc;
}

/* Every document of both collections, "_id" removed (it repeats "id"), so load() hands
 * back exactly what put() was given. */
static int store_load(cd_store_t *s, cd_store_load_cb cb, void *opaque, at_err_t *err)
{
    cd_store_mongo_t *m = (cd_store_mongo_t *)s;
    int rc = 0;
    pthread_mutex_lock(&m->lock);
    for (int kind = CD_KIND_CAMPAIGN; rc == 0 && kind <= CD_KIND_PUBLISHER; kind++) {
        bson_t filter = BSON_INITIALIZER;
        mongoc_cursor_t *cur = mongoc_collection_find_with_opts(m->colls[kind], &filter, NULL, NULL);
        const bson_t *d;
        while (mongoc_cursor_next(cur, &d)) {
            bson_t out;
            bson_init(&out);
            bson_copy_to_excluding_noinit(d, &out, "_id", NULL);
            cb((cd_kind_t)kind, &out, opaque);
            bson_destroy(&out);
        }
        bson_error_t e;
        const bson_t *edoc = NULL;
        if (mongoc_cursor_error_document(cur, &e, &edoc)) {
            char what[96];
            snprintf(what, sizeof(what), "find %s.%s", CD_MONGO_DB, kind_coll[kind]);
            rc = at_mongo_fail(what, &e, edoc, err);
        }
        mongoc_cursor_destroy(cur);
        bson_destroy(&filter);
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

static void store_destroy(cd_store_t *s)
{
    cd_store_mongo_t *m = (cd_store_mongo_t *)s;
    if (m == NULL)
        return;
    for (int k = 0; k < 2; k++)
        mongoc_collection_destroy(m->colls[k]);
    mongoc_client_destroy(m->client);
    bson_destroy(m->put_opts);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static const cd_store_ops_t store_mongo_ops = {
    .load = store_load,
    .put = store_put,
    .destroy = store_destroy,
    .name = "mongodb",
};

/*
 * Does not touch the network: the driver connects on first use, so an unreachable server
 * shows up as a retriable error from load() or put(). Only a malformed URI or write
 * concern returns NULL. The caller destroys the store with cd_store_destroy().
 */
cd_store_t *cd_store_mongo_new(const char *uri, const char *w, int64_t wtimeout_ms, at_err_t *err)
{
    cd_store_mongo_t *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "mongo store: out of memory");
        return NULL;
    }
    m->base.ops = &store_mongo_ops;
    /* On the heap: bson_t is declared 128-byte aligned, which a calloc'd struct embedding
     * one does not give (UBSan: misaligned member access). */
    m->put_opts = bson_new();
    BSON_APPEND_BOOL(m->put_opts, "upsert", true);
    m->client = at_mongo_client_new(uri, CD_MONGO_APPNAME, w, wtimeout_ms, m->put_opts, err);
    if (m->client == NULL) {
        bson_destroy(m->put_opts);
        free(m);
        return NULL;
    }
    for (int k = 0; k < 2; k++)
        m->colls[k] = mongoc_client_get_collection(m->client, CD_MONGO_DB, kind_coll[k]);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&m->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return &m->base;
}
