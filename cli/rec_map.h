/*
 * rec_map.h: a string-keyed hash map for the reconciliation command (adtrack rollups
 * reconcile, docs/REPORTS.md "Reconciliation"): its groups, the exact sets of user ids and
 * the event ids seen in file mode. Open addressing with linear probing on XXH3-64; grows at
 * 70% load; never shrinks, never removes (the command builds, reads and frees).
 *
 * The map copies each key (it owns the copies); values are the caller's pointers, which the
 * map never frees. One thread.
 */
#ifndef REC_MAP_H
#define REC_MAP_H

#include <stdbool.h>
#include <stddef.h>

typedef struct rec_map_s rec_map_t;

/* A new empty map (caller frees with rec_map_free()), or NULL when out of memory. */
rec_map_t *rec_map_new(void);

/* Frees the map and its key copies, not the values. Accepts NULL. */
void rec_map_free(rec_map_t *m);

/* The value stored under @p key (@p len bytes), or NULL when absent. */
void *rec_map_get(const rec_map_t *m, const char *key, size_t len);

/*
 * Stores @p value under @p key unless the key is present. Returns 1 when inserted, 0 when the
 * key was there already (then *@p old, when not NULL, is its value, which stays), -1 when out
 * of memory.
 */
int rec_map_add(rec_map_t *m, const char *key, size_t len, void *value, void **old);

/* Replaces the value of a present key, or adds it; returns the previous value (NULL when new).
 * *@p failed is set on out of memory. */
void *rec_map_put(rec_map_t *m, const char *key, size_t len, void *value, bool *failed);

size_t rec_map_count(const rec_map_t *m);

/* Bytes the map holds (slots and key copies), for the memory figures of docs/REPORTS.md. */
size_t rec_map_bytes(const rec_map_t *m);

/* Calls @p cb for every entry, in no particular order. */
void rec_map_each(const rec_map_t *m, void (*cb)(const char *key, size_t len, void *value, void *arg), void *arg);

#endif
