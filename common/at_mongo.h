/*
 * at_mongo.h: mongo-c-driver glue shared by the services that talk to MongoDB (the
 * enricher's sink, coredata's store): driver set-up, URI defaults, write concern, and the
 * classification of failures into retriable and permanent at_err codes (docs/MONGODB.md).
 */
#ifndef AT_MONGO_H
#define AT_MONGO_H

#include <mongoc/mongoc.h>
#include "at_err.h"

/* Calls mongoc_init() once per process and routes the driver's log into at_log. Never
 * undone: mongoc_cleanup() would pull the driver from under other clients. Thread-safe. */
void at_mongo_init(void);

/* Parses @p uri_str and fills in what the user did not set: appName @p appname, connect
 * 3 s, server selection 5 s, socket = wtimeout + 10 s. Returns a new URI the caller
 * destroys, or NULL + err (the message never quotes the URI: it may hold a password). */
mongoc_uri_t *at_mongo_uri_new(const char *uri_str, const char *appname, int64_t wtimeout_ms, at_err_t *err);

/* Write concern from @p w ("majority", 1..50, or a tag name; NULL/"" = the URI's, else
 * majority) with @p wtimeout_ms; w=0 is refused. New object (caller destroys) or NULL + err. */
mongoc_write_concern_t *at_mongo_wc_new(const char *w, int64_t wtimeout_ms, const mongoc_uri_t *u, at_err_t *err);

/*
 * A client for @p uri_str (see at_mongo_uri_new) using error API version 2, with the write
 * concern from @p w / @p wtimeout_ms (see at_mongo_wc_new) appended to @p opts, which the
 * caller initialised and keeps using as the options of its writes. Does not touch the
 * network: the driver connects on first use. Returns the client (caller destroys; not
 * thread-safe) or NULL + err.
 */
mongoc_client_t *at_mongo_client_new(const char *uri_str, const char *appname, const char *w, int64_t wtimeout_ms,
                                     bson_t *opts, at_err_t *err);

/* Retriable (AT_ERR_UNAVAILABLE, AT_ERR_TIMEOUT) or permanent class of a server error code. */
at_errcode_t at_mongo_code_class(int64_t code);

/* What a write reply says, beyond "it failed". */
typedef struct at_mongo_reply_s {
    int64_t inserted;   /* insertedCount */
    size_t duplicates;  /* writeErrors with code 11000 */
    size_t nother;      /* other writeErrors */
    int64_t other_code; /* the first of those */
    int64_t other_index;
    char other_msg[128];
    bool wce; /* a writeConcernError */
    int64_t wce_code;
    char wce_msg[128];
} at_mongo_reply_t;

/* Reads insertedCount, writeErrors and writeConcernErrors from a mongoc write reply. */
void at_mongo_reply_parse(const bson_t *reply, at_mongo_reply_t *ri);

/* True for failures that never reached a server answer (no server, socket, protocol). */
bool at_mongo_error_is_transport(const bson_error_t *e);

/* Classifies a failed command into @p err ("mongo <what>: ..."); returns -1. Refused
 * credentials and TLS failures (untrusted certificate) are AT_ERR_AUTH. */
int at_mongo_fail(const char *what, const bson_error_t *e, const bson_t *reply, at_err_t *err);

#endif
