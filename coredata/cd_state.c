/*
 * cd_state.c: sorted arrays of entities per kind. Core data is small (thousands of
 * entities), so binary search plus memmove on insert is simple and fast enough; inserts
 * only happen on creates.
 */
#include "cd_state.h"

#include <stdlib.h>

#include "cd_doc.h"

void cd_state_init(cd_state_t *st)
{
    memset(st, 0, sizeof(*st));
    pthread_rwlock_init(&st->lock, NULL);
}

static void entry_free(cd_entry_t *e)
{
    free(e->id);
    if (e->doc != NULL)
        bson_destroy(e->doc);
}

void cd_state_free(cd_state_t *st)
{
    if (st == NULL)
        return;
    for (int k = 0; k < 2; k++) {
        for (size_t i = 0; i < st->count[k]; i++)
            entry_free(&st->items[k][i]);
        free(st->items[k]);
        st->items[k] = NULL;
        st->count[k] = st->cap[k] = 0;
    }
    pthread_rwlock_destroy(&st->lock);
}

size_t cd_state_lower_bound(const cd_state_t *st, cd_kind_t kind, const char *after)
{
    size_t lo = 0, hi = st->count[kind];
    if (after == NULL)
        return 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(st->items[kind][mid].id, after) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* First index with id >= @p id. */
static size_t lower(const cd_state_t *st, cd_kind_t kind, const char *id)
{
    size_t lo = 0, hi = st->count[kind];
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(st->items[kind][mid].id, id) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

ssize_t cd_state_find(const cd_state_t *st, cd_kind_t kind, const char *id)
{
    size_t i = lower(st, kind, id);
    if (i < st->count[kind] && strcmp(st->items[kind][i].id, id) == 0)
        return (ssize_t)i;
    return -1;
}

bool cd_state_put(cd_state_t *st, cd_kind_t kind, const bson_t *doc)
{
    char id[CD_ID_MAX + 1];
    int64_t v = cd_doc_int64(doc, "version", 0);
    cd_doc_utf8(doc, "id", id, sizeof(id));
    if (id[0] == '\0')
        return false;
    if (v > st->version)
        st->version = v;
    size_t i = lower(st, kind, id);
    cd_entry_t *e;
    if (i < st->count[kind] && strcmp(st->items[kind][i].id, id) == 0) {
        e = &st->items[kind][i];
        if (e->version >= v)
            return false;
        bson_destroy(e->doc);
    } else {
        if (st->count[kind] == st->cap[kind]) {
            size_t ncap = st->cap[kind] ? st->cap[kind] * 2 : 64;
            cd_entry_t *n = realloc(st->items[kind], ncap * sizeof(*n));
            if (n == NULL)
                abort(); /* out of memory in the middle of a change: nothing sane to do */
            st->items[kind] = n;
            st->cap[kind] = ncap;
        }
        memmove(&st->items[kind][i + 1], &st->items[kind][i], (st->count[kind] - i) * sizeof(cd_entry_t));
        st->count[kind]++;
        e = &st->items[kind][i];
        e->id = strdup(id);
    }
    e->version = v;
    e->deleted = cd_doc_deleted(doc);
    e->doc = bson_copy(doc);
    return true;
}

static int by_version(const void *a, const void *b)
{
    int64_t va = ((const cd_snap_t *)a)->e.version, vb = ((const cd_snap_t *)b)->e.version;
    return va < vb ? -1 : va > vb;
}

cd_snap_t *cd_state_snapshot(cd_state_t *st, size_t *n)
{
    pthread_rwlock_rdlock(&st->lock);
    size_t total = st->count[0] + st->count[1], j = 0;
    cd_snap_t *s = calloc(total + 1, sizeof(*s));
    for (int k = 0; k < 2 && s != NULL; k++) {
        for (size_t i = 0; i < st->count[k]; i++, j++) {
            const cd_entry_t *e = &st->items[k][i];
            s[j].kind = (cd_kind_t)k;
            s[j].e.id = strdup(e->id);
            s[j].e.version = e->version;
            s[j].e.deleted = e->deleted;
            s[j].e.doc = bson_copy(e->doc);
        }
    }
    pthread_rwlock_unlock(&st->lock);
    if (s == NULL) {
        *n = 0;
        return NULL;
    }
    qsort(s, total, sizeof(*s), by_version);
    *n = total;
    return s;
}

void cd_state_snapshot_free(cd_snap_t *s, size_t n)
{
    for (size_t i = 0; s != NULL && i < n; i++)
        entry_free(&s[i].e);
    free(s);
}
