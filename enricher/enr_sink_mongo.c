/*
 * enr_sink_mongo.c: the MongoDB sink (see enr_sink.h and docs/MONGODB.md).
 *
 * Valid events go to adtrack.events, rejected ones to adtrack.rejected, each batch as one
 * unordered insert (mongoc_collection_insert_many with {ordered: false}) per collection.
 * Idempotency comes from the documents' own "_id" (the event id): a document that is
 * already stored comes back as a duplicate-key write error (11000), which this sink counts
 * as success. Everything else is classified into a retriable or a permanent at_err code
 * (the table is in docs/MONGODB.md and in mongo_code_class() below).
 *
 * Threads: a sink owns one mongoc_client_t, which is not thread-safe. The sink is used by
 * the single enricher worker thread that created it (one sink per worker); calls block
 * that thread for at most the URI's timeouts (defaults set in mongo_uri_new()).
 */
#include "enr_sink.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>

#include <mongoc/mongoc.h>

#include "at_log.h"

#define ENR_MONGO_DB "adtrack"
#define ENR_MONGO_EVENTS "events"
#define ENR_MONGO_REJECTED "rejected"
#define ENR_MONGO_APPNAME "adtrack-enricher"
#define ENR_MONGO_COMP "sink-mongo"

/* URI defaults, used only when the URI does not set the option itself. */
#define ENR_MONGO_CONNECT_TIMEOUT_MS 3000
#define ENR_MONGO_SERVER_SELECTION_TIMEOUT_MS 5000
#define ENR_MONGO_SOCKET_TIMEOUT_SLACK_MS 10000 /* on top of wtimeout, so the server times out first */
#define ENR_MONGO_SOCKET_TIMEOUT_NO_WTIMEOUT_MS 60000

typedef struct enr_sink_mongo_s {
    enr_sink_t base; /* first: the enr_sink_t handed out is this struct */
    mongoc_client_t *client;
    mongoc_collection_t *events;
    mongoc_collection_t *rejected;
    bson_t insert_opts;   /* {ordered: false, writeConcern: {...}} */
    bool indexes_pending; /* createIndexes could not reach the server yet */
    bool indexes_warned;  /* the deferral was logged at warn level once already */
} enr_sink_mongo_t;

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
    uri_default_int32(u, MONGOC_URI_CONNECTTIMEOUTMS, ENR_MONGO_CONNECT_TIMEOUT_MS);
    uri_default_int32(u, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, ENR_MONGO_SERVER_SELECTION_TIMEOUT_MS);
    uri_default_int32(u, MONGOC_URI_SOCKETTIMEOUTMS,
                      wtimeout_ms > 0 ? wtimeout_ms + ENR_MONGO_SOCKET_TIMEOUT_SLACK_MS
                                      : ENR_MONGO_SOCKET_TIMEOUT_NO_WTIMEOUT_MS);
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
        rc = mongo_fail(what, &e, &reply, err);
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
    bool ok = mongoc_collection_insert_many(coll, (const bson_t **)docs, n, &m->insert_opts, &reply, &e);
    int rc = 0;
    mongo_reply_info_t ri;
    mongo_reply_parse(&reply, &ri);
    if (ok) {
        res->inserted += (size_t)ri.inserted;
    } else if (mongo_error_is_transport(&e)) {
        rc = at_err_set(err, AT_ERR_UNAVAILABLE, "mongo insert %s.%s: %s", ENR_MONGO_DB, cname, e.message);
    } else if (ri.nother > 0) {
        at_errcode_t code = mongoc_error_has_label(&reply, "RetryableWriteError") ? AT_ERR_UNAVAILABLE
                                                                                  : mongo_code_class(ri.other_code);
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
        rc = mongo_fail(what, &e, &reply, err);
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
    int rc = ok ? 0 : mongo_fail("ping", &e, &reply, err);
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
    bson_destroy(&m->insert_opts);
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
    pthread_once(&mongo_once, mongo_init_once);
    mongoc_uri_t *u = mongo_uri_new(uri, ENR_MONGO_APPNAME, wtimeout_ms, err);
    if (u == NULL)
        return NULL;
    mongoc_write_concern_t *wc = mongo_wc_new(w, wtimeout_ms, u, err);
    if (wc == NULL) {
        mongoc_uri_destroy(u);
        return NULL;
    }
    enr_sink_mongo_t *m = calloc(1, sizeof(*m));
    if (m == NULL) {
        mongoc_write_concern_destroy(wc);
        mongoc_uri_destroy(u);
        at_err_set(err, AT_ERR_NOMEM, "mongo sink: out of memory");
        return NULL;
    }
    m->base.ops = &sink_mongo_ops;
    bson_init(&m->insert_opts);
    BSON_APPEND_BOOL(&m->insert_opts, "ordered", false);
    bool wc_ok = mongoc_write_concern_append(wc, &m->insert_opts);
    mongoc_write_concern_destroy(wc);

    bson_error_t e;
    m->client = wc_ok ? mongoc_client_new_from_uri_with_error(u, &e) : NULL;
    mongoc_uri_destroy(u);
    if (m->client == NULL) {
        if (wc_ok)
            at_err_set(err, AT_ERR_INVALID, "mongo: cannot create a client for the URI: %s", e.message);
        else
            at_err_set(err, AT_ERR_INTERNAL, "mongo: cannot encode the write concern");
        bson_destroy(&m->insert_opts);
        free(m);
        return NULL;
    }
    /* Version 2 reports server errors in MONGOC_ERROR_SERVER with the server's code. */
    mongoc_client_set_error_api(m->client, MONGOC_ERROR_API_VERSION_2);
    m->events = mongoc_client_get_collection(m->client, ENR_MONGO_DB, ENR_MONGO_EVENTS);
    m->rejected = mongoc_client_get_collection(m->client, ENR_MONGO_DB, ENR_MONGO_REJECTED);
    m->indexes_pending = true;
    ensure_indexes(m);
    return &m->base;
}
