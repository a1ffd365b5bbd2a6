/*
 * at_mongo.c: mongo-c-driver glue (see at_mongo.h).
 */
#include "at_mongo.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>

#include "at_log.h"

/* URI defaults, used only when the URI does not set the option itself. */
#define AT_MONGO_CONNECT_TIMEOUT_MS 3000
#define AT_MONGO_SERVER_SELECTION_TIMEOUT_MS 5000
#define AT_MONGO_SOCKET_TIMEOUT_SLACK_MS 10000 /* on top of wtimeout, so the server times out first */
#define AT_MONGO_SOCKET_TIMEOUT_NO_WTIMEOUT_MS 60000

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
mongoc_uri_t *at_mongo_uri_new(const char *uri_str, const char *appname, int64_t wtimeout_ms, at_err_t *err)
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
    uri_default_int32(u, MONGOC_URI_CONNECTTIMEOUTMS, AT_MONGO_CONNECT_TIMEOUT_MS);
    uri_default_int32(u, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, AT_MONGO_SERVER_SELECTION_TIMEOUT_MS);
    uri_default_int32(u, MONGOC_URI_SOCKETTIMEOUTMS,
                      wtimeout_ms > 0 ? wtimeout_ms + AT_MONGO_SOCKET_TIMEOUT_SLACK_MS
                                      : AT_MONGO_SOCKET_TIMEOUT_NO_WTIMEOUT_MS);
    return u;
}

/*
 * Write concern from @p w: "majority", a number >= 1, or any other word as a replica-set
 * tag name (getLastErrorModes); NULL or "" takes the URI's w, else majority. w=0
 * (unacknowledged) is refused: it could confirm neither durability nor duplicates.
 * Returns a new write concern (caller destroys) or NULL + err.
 */
mongoc_write_concern_t *at_mongo_wc_new(const char *w, int64_t wtimeout_ms, const mongoc_uri_t *u, at_err_t *err)
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
 * Authentication and authorization failures are configuration errors (AT_ERR_AUTH);
 * everything else means the server refused the request as such (AT_ERR_INVALID).
 */
at_errcode_t at_mongo_code_class(int64_t code)
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
        return AT_ERR_AUTH;
    default:
        return AT_ERR_INVALID;
    }
}


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
void at_mongo_reply_parse(const bson_t *reply, at_mongo_reply_t *ri)
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
bool at_mongo_error_is_transport(const bson_error_t *e)
{
    return e->domain == MONGOC_ERROR_STREAM || e->domain == MONGOC_ERROR_SERVER_SELECTION ||
           e->domain == MONGOC_ERROR_PROTOCOL;
}

/* Classifies a failed command with no write-level detail (e.g. createIndexes, a command
 * error reply {ok: 0}). Fills err; returns -1. */
/* A TLS failure (an untrusted or mismatched certificate) reaches us as a server selection or
 * stream error; only the message tells it from an unreachable server. */
static bool is_tls_failure(const bson_error_t *e)
{
    return strstr(e->message, "TLS handshake failed") != NULL || strstr(e->message, "certificate verify") != NULL ||
           strstr(e->message, "SSL") != NULL;
}

int at_mongo_fail(const char *what, const bson_error_t *e, const bson_t *reply, at_err_t *err)
{
    at_errcode_t code;
    if ((e->domain == MONGOC_ERROR_CLIENT && e->code == MONGOC_ERROR_CLIENT_AUTHENTICATE) ||
        (at_mongo_error_is_transport(e) && is_tls_failure(e)))
        code = AT_ERR_AUTH; /* credentials or certificates refused: configuration, not an outage */
    else if (at_mongo_error_is_transport(e))
        code = AT_ERR_UNAVAILABLE;
    else if (reply != NULL && mongoc_error_has_label(reply, "RetryableWriteError"))
        code = AT_ERR_UNAVAILABLE;
    else if (e->domain == MONGOC_ERROR_SERVER || e->domain == MONGOC_ERROR_WRITE_CONCERN)
        code = at_mongo_code_class(e->code); /* a server error code (error API version 2) */
    else if (e->domain == MONGOC_ERROR_CLIENT && e->code != MONGOC_ERROR_CLIENT_TOO_BIG)
        code = AT_ERR_INTERNAL; /* authentication, TLS set-up, driver state */
    else
        code = AT_ERR_INVALID; /* refused by the driver before sending: invalid BSON, bad arguments */
    return at_err_set(err, code, "mongo %s: %s (domain %u, code %u)", what, e->message, e->domain, e->code);
}

void at_mongo_init(void)
{
    pthread_once(&mongo_once, mongo_init_once);
}

mongoc_client_t *at_mongo_client_new(const char *uri_str, const char *appname, const char *w, int64_t wtimeout_ms,
                                     bson_t *opts, at_err_t *err)
{
    at_mongo_init();
    mongoc_uri_t *u = at_mongo_uri_new(uri_str, appname, wtimeout_ms, err);
    if (u == NULL)
        return NULL;
    mongoc_write_concern_t *wc = at_mongo_wc_new(w, wtimeout_ms, u, err);
    if (wc == NULL) {
        mongoc_uri_destroy(u);
        return NULL;
    }
    bool wc_ok = mongoc_write_concern_append(wc, opts);
    mongoc_write_concern_destroy(wc);
    bson_error_t e;
    mongoc_client_t *client = wc_ok ? mongoc_client_new_from_uri_with_error(u, &e) : NULL;
    mongoc_uri_destroy(u);
    if (client == NULL) {
        if (wc_ok)
            at_err_set(err, AT_ERR_INVALID, "mongo: cannot create a client for the URI: %s", e.message);
        else
            at_err_set(err, AT_ERR_INTERNAL, "mongo: cannot encode the write concern");
        return NULL;
    }
    /* Version 2 reports server errors in MONGOC_ERROR_SERVER with the server's code. */
    mongoc_client_set_error_api(client, MONGOC_ERROR_API_VERSION_2);
    return client;
}
