/*
 * cd_store.h: the source of truth for core data (campaigns, publishers). Two
 * implementations: MongoDB (cd_store_mongo.c: adtrack.campaigns / adtrack.publishers,
 * _id = entity id) and the embedded file store (cd_store_file.c: written atomically with
 * a temp file + rename, loaded at start).
 *
 * Documents are the JSON shapes of docs/CORE-DATA.md as bson, always with "id" and
 * "version"; a deleted entity is a tombstone {"id", "version", "deleted": true}. The
 * highest version in the store is the global version counter's high-water mark, so the
 * store needs no separate counter.
 */
#ifndef CD_STORE_H
#define CD_STORE_H

#include <bson/bson.h>
#include "at_err.h"

typedef enum cd_kind_e { CD_KIND_CAMPAIGN = 0, CD_KIND_PUBLISHER = 1 } cd_kind_t;

typedef struct cd_store_s cd_store_t;

/* Called once per stored document during load; @p doc is only valid during the call. */
typedef void (*cd_store_load_cb)(cd_kind_t kind, const bson_t *doc, void *opaque);

typedef struct cd_store_ops_s {
    /* Calls @p cb for every stored document of both kinds, tombstones included. 0 or -1. */
    int (*load)(cd_store_t *s, cd_store_load_cb cb, void *opaque, at_err_t *err);
    /*
     * Stores @p doc (replacing the entity with the same id) only if the stored version is
     * lower than doc's "version"; a stale write is not an error (*applied = false).
     * Durable on return (MongoDB: the configured write concern; file: fsync + rename).
     * 0, or -1 with err (at_err_retriable() tells whether to retry).
     */
    int (*put)(cd_store_t *s, cd_kind_t kind, const bson_t *doc, bool *applied, at_err_t *err);
    void (*destroy)(cd_store_t *s);
    const char *name; /* "mongodb" or "file" */
} cd_store_ops_t;

struct cd_store_s {
    const cd_store_ops_t *ops;
};

/* MongoDB store; @p w "majority" or a number as text. NULL + err on a malformed URI. */
cd_store_t *cd_store_mongo_new(const char *uri, const char *w, int64_t wtimeout_ms, at_err_t *err);

/* File store in @p dir (campaigns.json, publishers.json). NULL + err if unusable. */
cd_store_t *cd_store_file_new(const char *dir, at_err_t *err);

static inline void cd_store_destroy(cd_store_t *s)
{
    if (s != NULL)
        s->ops->destroy(s);
}

#endif
