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

#include "at_log.h"

#define CD_MONGO_DB "adtrack"
#define CD_MONGO_CAMPAIGNS "campaigns"
#define CD_MONGO_PUBLISHERS "publishers"
#define CD_MONGO_APPNAME "adtrack-coredata"
#define CD_MONGO_COMP "store-mongo"

/* URI defaults, used only when the URI does not set the option itself. */
#define CD_MONGO_CONNECT_TIMEOUT_MS 3000
#define CD_MONGO_SERVER_SELECTION_TIMEOUT_MS 5000
#define CD_MONGO_SOCKET_TIMEOUT_SLACK_MS 10000 /* on top of wtimeout, so the server times out first */
#define CD_MONGO_SOCKET_TIMEOUT_NO_WTIMEOUT_MS 60000

typedef struct cd_store_mongo_s {
    cd_store_t base;      /* first: the cd_store_t handed out is this struct */
    pthread_mutex_t lock; /* recursive: a load callback may call put() */
    mongoc_client_t *client;
    mongoc_collection_t *colls[2]; /* by cd_kind_t */
    bson_t put_opts;               /* {upsert: true, writeConcern: {...}} */
} cd_store_mongo_t;

/*
 * The helpers below (driver set-up, URI defaults, write concern, error classification)
 * are the same as in enricher/enr_sink_mongo.c; the two services are separate libraries
 * and keep their copies static. docs/MONGODB.md describes them once.
 */

/* ---- driver set-up (once per process) -------------------------------------------------------- */

static pthread_once_t mongo_once = PTHREAD_ONCE_INIT;

/* The driver's own log lines become at_log records; debug and trace chatter is dropped. */
static void mongo_log_handler(mongoc_log_level_t level, const char *domain, const char *message, void *opaque)
{
    AT_UNUSED(opaque);
    at_log_level_t l;
    switch (level) {
    case MONGOC_LOG_LEVEL_ERROR:
    case MONGOC_LOG_LEVEL_CRITICAL:
        l = AT_LOG_ERROR;
        break;
    case MONGOC_LOG_LEVEL_WARNING:
        l = AT_LOG_WARN;
        break;
    case MONGOC_LOG_LEVEL_MESSAGE:
    case MONGOC_LOG_LEVEL_INFO:
        l = AT_LOG_INFO;
        break;
    default:
        return;
    }
    at_log(l, "mongoc", "driver", "domain", domain != NULL ? domain : "", "detail", message != NULL ? message : "",
           NULL);
}

/* mongoc_init() is process-wide and never undone: mongoc_cleanup() would pull the driver
 * from under any other client in the process (e.g. a test linking enricher and coredata). */
static void mongo_init_once(void)
{
    mongoc_init();
    mongoc_log_set_handler(mongo_log_handler, NULL);
}

/* ---- URI, write concern ---------------------------------------------------------------------- */

static void uri_default_int32(mongoc_uri_t *u, const char *key, int64_t value)
{
    if (!mongoc_uri_has_option(u, key))
        mongoc_uri_set_option_as_int32(u, key, (int32_t)AT_MIN(value, (int64_t)INT32_MAX));
}

/*
 * Parses @p uri_str and fills in what the user did not set: appName, and timeouts that
 * bound every call (connect 3 s, server selection 5 s, socket wtimeout + 10 s so a slow
 * write concern is reported by the server rather than cut by the socket). Returns a new
 * URI (caller destroys) or NULL + err.
 */
static mongoc_uri_t *mongo_uri_new(const char *uri_str, const char *appname, int64_t wtimeout_ms, at_err_t *err)
{
    if (uri_str == NULL || uri_str[0] == '\0') {
        at_err_set(err, AT_ERR_INVALID, "mongo: empty URI; expected mongodb://host[:port][,...]/[?options]");
        return NULL;
    }
    bson_error_t e;
    mongoc_uri_t *u = mongoc_uri_new_with_error(uri_str, &e);
    if (u == NULL) {
        /* The driver's message may quote the URI, which can hold a password: keep it out. */
        at_err_set(err, AT_ERR_INVALID, "mongo: malformed URI; expected mongodb://host[:port][,...]/[?options]");
        return NULL;
    }
    if (mongoc_uri_get_appname(u) == NULL)
        mongoc_uri_set_appname(u, appname);
    uri_default_int32(u, MONGOC_URI_CONNECTTIMEOUTMS, CD_MONGO_CONNECT_TIMEOUT_MS);
    uri_default_int32(u, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, CD_MONGO_SERVER_SELECTION_TIMEOUT_MS);
    uri_default_int32(u, MONGOC_URI_SOCKETTIMEOUTMS,
                      wtimeout_ms > 0 ? wtimeout_ms + CD_MONGO_SOCKET_TIMEOUT_SLACK_MS
                                      : CD_MONGO_SOCKET_TIMEOUT_NO_WTIMEOUT_MS);
    return u;
}

/*
 * Write concern from @p w: "majority", a number >= 1, or any other word as a replica-set
 * tag name (getLastErrorModes); NULL or "" takes the URI's w, else majority. w=0
 * (unacknowledged) is refused: it could confirm neither durability nor duplicates.
 * Returns a new write concern (caller destroys) or NULL + err.
 */
static mongoc_write_concern_t *mongo_wc_new(const char *w, int64_t wtimeout_ms, const mongoc_uri_t *u, at_err_t *err)
{
    if (wtimeout_ms < 0) {
        at_err_set(err, AT_ERR_RANGE, "mongo wtimeout: %lld ms; expected >= 0 (0 = no limit)", (long long)wtimeout_ms);
        return NULL;
    }
    mongoc_write_concern_t *wc = mongoc_write_concern_new();
    const mongoc_write_concern_t *uri_wc = mongoc_uri_get_write_concern(u);
    if (w == NULL || w[0] == '\0') {
        int32_t uw = uri_wc != NULL ? mongoc_write_concern_get_w(uri_wc) : MONGOC_WRITE_CONCERN_W_DEFAULT;
        if (uw == MONGOC_WRITE_CONCERN_W_TAG)
            mongoc_write_concern_set_wtag(wc, mongoc_write_concern_get_wtag(uri_wc));
        else if (uw >= 1)
            mongoc_write_concern_set_w(wc, uw);
        else if (uw == MONGOC_WRITE_CONCERN_W_UNACKNOWLEDGED || uw == MONGOC_WRITE_CONCERN_W_ERRORS_IGNORED)
            goto unacknowledged;
        else
            mongoc_write_concern_set_w(wc, MONGOC_WRITE_CONCERN_W_MAJORITY);
    } else if (strcmp(w, "majority") == 0) {
        mongoc_write_concern_set_w(wc, MONGOC_WRITE_CONCERN_W_MAJORITY);
    } else if ((w[0] >= '0' && w[0] <= '9') || w[0] == '-') {
        char *end;
        errno = 0;
        long n = strtol(w, &end, 10);
        if (*end != '\0' || errno != 0 || n < 0 || n > 50) {
            mongoc_write_concern_destroy(wc);
            at_err_set(err, AT_ERR_INVALID, "mongo w: \"%s\"; expected majority, a number 1..50 or a tag name", w);
            return NULL;
        }
        if (n == 0)
            goto unacknowledged;
        mongoc_write_concern_set_w(wc, (int32_t)n);
    } else {
        mongoc_write_concern_set_wtag(wc, w);
    }
    mongoc_write_concern_set_wtimeout_int64(wc, wtimeout_ms);
    if (uri_wc != NULL && mongoc_write_concern_journal_is_set(uri_wc))
        mongoc_write_concern_set_journal(wc, mongoc_write_concern_get_journal(uri_wc));
    if (!mongoc_write_concern_is_valid(wc)) {
        mongoc_write_concern_destroy(wc);
        at_err_set(err, AT_ERR_INVALID, "mongo w: \"%s\" with wtimeout %lld ms is not a valid write concern",
                   w != NULL ? w : "", (long long)wtimeout_ms);
        return NULL;
    }
    return wc;

unacknowledged:
    mongoc_write_concern_destroy(wc);
    at_err_set(err, AT_ERR_INVALID,
               "mongo w: 0 (unacknowledged) cannot confirm that writes are stored; expected "
               "majority or a number >= 1");
    return NULL;
}

/* ---- error classification -------------------------------------------------------------------- */

/*
 * Server error codes that may succeed when tried again: the primary changed or is shutting
 * down, the network inside the cluster failed, a lock or write conflict, a sharding
 * config refresh (AT_ERR_UNAVAILABLE); a server-side time limit (AT_ERR_TIMEOUT).
 * Authentication and authorization failures are configuration errors (AT_ERR_INTERNAL);
 * everything else means the server refused the request as such (AT_ERR_INVALID).
 */
static at_errcode_t mongo_code_class(int64_t code)
{
    switch (code) {
    case 6:     /* HostUnreachable */
    case 7:     /* HostNotFound */
    case 24:    /* LockTimeout */
    case 46:    /* LockBusy */
    case 63:    /* StaleShardVersion */
    case 91:    /* ShutdownInProgress */
    case 112:   /* WriteConflict */
    case 133:   /* FailedToSatisfyReadPreference */
    case 150:   /* StaleEpoch */
    case 189:   /* PrimarySteppedDown */
    case 9001:  /* SocketException */
    case 10058: /* LegacyNotPrimary */
    case 10107: /* NotWritablePrimary */
    case 11600: /* InterruptedAtShutdown */
    case 11602: /* InterruptedDueToReplStateChange */
    case 13388: /* StaleConfig */
    case 13435: /* NotPrimaryNoSecondaryOk */
    case 13436: /* NotPrimaryOrSecondary */
        return AT_ERR_UNAVAILABLE;
    case 50:  /* MaxTimeMSExpired */
    case 64:  /* WriteConcernFailed */
    case 89:  /* NetworkTimeout */
    case 262: /* ExceededTimeLimit */
        return AT_ERR_TIMEOUT;
    case 13: /* Unauthorized */
    case 18: /* AuthenticationFailed */
        return AT_ERR_INTERNAL;
    default:
        return AT_ERR_INVALID;
    }
}

/* What a write reply says, beyond "it failed". */
typedef struct mongo_reply_info_s {
    int64_t inserted;   /* insertedCount */
    size_t duplicates;  /* writeErrors with code 11000 */
    size_t nother;      /* other writeErrors */
    int64_t other_code; /* the first of those */
    int64_t other_index;
    char other_msg[128];
    bool wce; /* a writeConcernError */
    int64_t wce_code;
    char wce_msg[128];
} mongo_reply_info_t;

static void copy_msg(char *dst, size_t size, bson_iter_t *doc, const char *key)
{
    bson_iter_t it;
    dst[0] = '\0';
    if (bson_iter_recurse(doc, &it) && bson_iter_find(&it, key) && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(dst, size, "%s", bson_iter_utf8(&it, NULL));
}

static int64_t sub_int(bson_iter_t *doc, const char *key, int64_t dflt)
{
    bson_iter_t it;
    if (bson_iter_recurse(doc, &it) && bson_iter_find(&it, key) && BSON_ITER_HOLDS_NUMBER(&it))
        return bson_iter_as_int64(&it);
    return dflt;
}

/* Reads insertedCount, writeErrors and writeConcernErrors from a mongoc write reply. */
static void mongo_reply_parse(const bson_t *reply, mongo_reply_info_t *ri)
{
    memset(ri, 0, sizeof(*ri));
    bson_iter_t it, arr;
    if (bson_iter_init_find(&it, reply, "insertedCount") && BSON_ITER_HOLDS_NUMBER(&it))
        ri->inserted = bson_iter_as_int64(&it);
    if (bson_iter_init_find(&it, reply, "writeErrors") && BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &arr)) {
        while (bson_iter_next(&arr)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
                continue;
            int64_t code = sub_int(&arr, "code", 0);
            if (code == 11000) {
                ri->duplicates++;
            } else if (ri->nother++ == 0) {
                ri->other_code = code;
                ri->other_index = sub_int(&arr, "index", -1);
                copy_msg(ri->other_msg, sizeof(ri->other_msg), &arr, "errmsg");
            }
        }
    }
    if (bson_iter_init_find(&it, reply, "writeConcernErrors") && BSON_ITER_HOLDS_ARRAY(&it) &&
        bson_iter_recurse(&it, &arr)) {
        while (!ri->wce && bson_iter_next(&arr)) {
            if (!BSON_ITER_HOLDS_DOCUMENT(&arr))
                continue;
            ri->wce = true;
            ri->wce_code = sub_int(&arr, "code", 64);
            copy_msg(ri->wce_msg, sizeof(ri->wce_msg), &arr, "errmsg");
        }
    }
}

/* Failures that never reached a server answer: no server, a broken or timed-out socket, a
 * garbled reply. The operation may or may not have been applied; retrying is safe because
 * every write here is idempotent. */
static bool mongo_error_is_transport(const bson_error_t *e)
{
    return e->domain == MONGOC_ERROR_STREAM || e->domain == MONGOC_ERROR_SERVER_SELECTION ||
           e->domain == MONGOC_ERROR_PROTOCOL;
}

/* Classifies a failed command with no write-level detail (e.g. createIndexes, a command
 * error reply {ok: 0}). Fills err; returns -1. */
static int mongo_fail(const char *what, const bson_error_t *e, const bson_t *reply, at_err_t *err)
{
    at_errcode_t code;
    if (mongo_error_is_transport(e))
        code = AT_ERR_UNAVAILABLE;
    else if (reply != NULL && mongoc_error_has_label(reply, "RetryableWriteError"))
        code = AT_ERR_UNAVAILABLE;
    else if (e->domain == MONGOC_ERROR_SERVER || e->domain == MONGOC_ERROR_WRITE_CONCERN)
        code = mongo_code_class(e->code); /* a server error code (error API version 2) */
    else if (e->domain == MONGOC_ERROR_CLIENT && e->code != MONGOC_ERROR_CLIENT_TOO_BIG)
        code = AT_ERR_INTERNAL; /* authentication, TLS set-up, driver state */
    else
        code = AT_ERR_INVALID; /* refused by the driver before sending: invalid BSON, bad arguments */
    return at_err_set(err, code, "mongo %s: %s (domain %u, code %u)", what, e->message, e->domain, e->code);
}

/* ---- the store ------------------------------------------------------------------------------- */

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
    bool ok = mongoc_collection_replace_one(m->colls[kind], filter, repl, &m->put_opts, &reply, &e);
    mongo_reply_info_t ri;
    mongo_reply_parse(&reply, &ri);
    int rc = 0;
    if (ok) {
        if (reply_int(&reply, "matchedCount") > 0 || reply_int(&reply, "upsertedCount") > 0)
            *outcome = 1;
        else /* an upsert always matches or inserts; a server that says neither is not one we know */
            rc = at_err_set(err, AT_ERR_INTERNAL, "mongo update %s.%s: upsert neither matched nor inserted",
                            CD_MONGO_DB, cname);
    } else if (mongo_error_is_transport(&e)) {
        rc = at_err_set(err, AT_ERR_UNAVAILABLE, "mongo update %s.%s: %s", CD_MONGO_DB, cname, e.message);
    } else if (ri.nother > 0) {
        at_errcode_t code = mongoc_error_has_label(&reply, "RetryableWriteError") ? AT_ERR_UNAVAILABLE
                                                                                  : mongo_code_class(ri.other_code);
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
        rc = mongo_fail(what, &e, &reply, err);
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
            rc = mongo_fail(what, &e, edoc, err);
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
    bson_destroy(&m->put_opts);
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
    pthread_once(&mongo_once, mongo_init_once);
    mongoc_uri_t *u = mongo_uri_new(uri, CD_MONGO_APPNAME, wtimeout_ms, err);
    if (u == NULL)
        return NULL;
    mongoc_write_concern_t *wc = mongo_wc_new(w, wtimeout_ms, u, err);
    if (wc == NULL) {
        mongoc_uri_destroy(u);
        return NULL;
    }
    cd_store_mongo_t *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        mongoc_write_concern_destroy(wc);
        mongoc_uri_destroy(u);
        at_err_set(err, AT_ERR_NOMEM, "mongo store: out of memory");
        return NULL;
    }
    m->base.ops = &store_mongo_ops;
    bson_init(&m->put_opts);
    BSON_APPEND_BOOL(&m->put_opts, "upsert", true);
    bool wc_ok = mongoc_write_concern_append(wc, &m->put_opts);
    mongoc_write_concern_destroy(wc);

    bson_error_t e;
    m->client = wc_ok ? mongoc_client_new_from_uri_with_error(u, &e) : NULL;
    mongoc_uri_destroy(u);
    if (m->client == NULL) {
        if (wc_ok)
            at_err_set(err, AT_ERR_INVALID, "mongo: cannot create a client for the URI: %s", e.message);
        else
            at_err_set(err, AT_ERR_INTERNAL, "mongo: cannot encode the write concern");
        bson_destroy(&m->put_opts);
        free(m);
        return NULL;
    }
    /* Version 2 reports server errors in MONGOC_ERROR_SERVER with the server's code. */
    mongoc_client_set_error_api(m->client, MONGOC_ERROR_API_VERSION_2);
    for (int k = 0; k < 2; k++)
        m->colls[k] = mongoc_client_get_collection(m->client, CD_MONGO_DB, kind_coll[k]);
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&m->lock, &attr);
    pthread_mutexattr_destroy(&attr);
    return &m->base;
}
