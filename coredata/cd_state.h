/*
 * cd_state.h: the in-memory copy of every entity (tombstones included) and the global
 * version counter.
 *
 * Written only by the core worker thread (after the store accepted a change); read by
 * the HTTP loop threads (GET, list) and the fan-out thread (resync). A rwlock guards it:
 * writers hold it only for an in-memory update, never across I/O, so readers on a loop
 * thread never wait for Redis, Kafka or the store.
 */
#ifndef CD_STATE_H
#define CD_STATE_H

#include <pthread.h>
#include <sys/types.h>

#include "cd_store.h"

typedef struct cd_entry_s {
    char *id; /* heap */
    int64_t version;
    bool deleted; /* tombstone */
    bson_t *doc;  /* the full stored document (with version); heap */
} cd_entry_t;

typedef struct cd_state_s {
    pthread_rwlock_t lock;
    cd_entry_t *items[2]; /* per kind, sorted by id */
    size_t count[2], cap[2];
    int64_t version; /* highest version assigned (>= every entry's version) */
} cd_state_t;

void cd_state_init(cd_state_t *st);
/* Frees every entry. Accepts NULL. */
void cd_state_free(cd_state_t *st);

/* Index of @p id in kind's array, or -1. The caller holds the lock (either mode). */
ssize_t cd_state_find(const cd_state_t *st, cd_kind_t kind, const char *id);

/*
 * Inserts or replaces the entity with @p doc's id if doc's version is higher than the
 * current one (copies doc). Raises st->version to at least doc's version. The caller holds
 * the write lock (or is single-threaded, during load). Returns true when applied.
 */
bool cd_state_put(cd_state_t *st, cd_kind_t kind, const bson_t *doc);

/* Index of the first entry of @p kind with id > @p after (NULL: from the start). Lock held. */
size_t cd_state_lower_bound(const cd_state_t *st, cd_kind_t kind, const char *after);

/* A copy of every entity (both kinds), sorted by version ascending, for a resync. Takes the
 * read lock itself. Returns a heap array of @p *n entries; free with cd_state_snapshot_free(). */
typedef struct cd_snap_s {
    cd_kind_t kind;
    cd_entry_t e; /* deep copy */
} cd_snap_t;
cd_snap_t *cd_state_snapshot(cd_state_t *st, size_t *n);
void cd_state_snapshot_free(cd_snap_t *s, size_t n);

#endif
