/* rec_map.c: see rec_map.h. */
#include "rec_map.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

typedef struct slot_s {
    char *key; /* NULL: empty slot */
    size_t len;
    uint64_t hash;
    void *value;
} slot_t;

struct rec_map_s {
    slot_t *slots;
    size_t cap; /* a power of two */
    size_t count;
    size_t key_bytes;
};

rec_map_t *rec_map_new(void)
{
    rec_map_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->cap = 64;
    m->slots = calloc(m->cap, sizeof(slot_t));
    if (m->slots == NULL) {
        free(m);
        return NULL;
    }
    return m;
}

void rec_map_free(rec_map_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->cap; i++)
        free(m->slots[i].key);
    free(m->slots);
    free(m);
}

static slot_t *find_slot(const rec_map_t *m, const char *key, size_t len, uint64_t hash)
{
    size_t mask = m->cap - 1;
    for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
        slot_t *s = &m->slots[i];
        if (s->key == NULL || (s->hash == hash && s->len == len && memcmp(s->key, key, len) == 0))
            return s;
    }
}

static int grow(rec_map_t *m)
{
    size_t ncap = m->cap * 2;
    slot_t *ns = calloc(ncap, sizeof(slot_t));
    if (ns == NULL)
        return -1;
    for (size_t i = 0; i < m->cap; i++) {
        slot_t *s = &m->slots[i];
        if (s->key == NULL)
            continue;
        size_t j = (size_t)s->hash & (ncap - 1);
        while (ns[j].key != NULL)
            j = (j + 1) & (ncap - 1);
        ns[j] = *s;
    }
    free(m->slots);
    m->slots = ns;
    m->cap = ncap;
    return 0;
}

void *rec_map_get(const rec_map_t *m, const char *key, size_t len)
{
    slot_t *s = find_slot(m, key, len, XXH3_64bits(key, len));
    return s->key != NULL ? s->value : NULL;
}

int rec_map_add(rec_map_t *m, const char *key, size_t len, void *value, void **old)
{
    uint64_t hash = XXH3_64bits(key, len);
    slot_t *s = find_slot(m, key, len, hash);
    if (s->key != NULL) {
        if (old != NULL)
            *old = s->value;
        return 0;
    }
    if ((m->count + 1) * 10 > m->cap * 7) {
        if (grow(m) != 0)
            return -1;
        s = find_slot(m, key, len, hash);
    }
    char *copy = malloc(len + 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, key, len);
    copy[len] = '\0';
    *s = (slot_t){.key = copy, .len = len, .hash = hash, .value = value};
    m->count++;
    m->key_bytes += len + 1;
    return 1;
}

void *rec_map_put(rec_map_t *m, const char *key, size_t len, void *value, bool *failed)
{
    void *old = NULL;
    int rc = rec_map_add(m, key, len, value, &old);
    *failed = rc < 0;
    if (rc != 0)
        return NULL;
    slot_t *s = find_slot(m, key, len, XXH3_64bits(key, len));
    s->value = value;
    return old;
}

size_t rec_map_count(const rec_map_t *m)
{
    return m->count;
}

size_t rec_map_bytes(const rec_map_t *m)
{
    /* malloc rounds each key copy up to 16 bytes and adds 8 of its own */
    return m->cap * sizeof(slot_t) + m->key_bytes + m->count * 16;
}

void rec_map_each(const rec_map_t *m, void (*cb)(const char *key, size_t len, void *value, void *arg), void *arg)
{
    for (size_t i = 0; i < m->cap; i++)
        if (m->slots[i].key != NULL)
            cb(m->slots[i].key, m->slots[i].len, m->slots[i].value, arg);
}
