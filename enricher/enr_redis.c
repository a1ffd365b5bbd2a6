/*
 * enr_redis.c: Redis reads for the core-data cache (see enr_redis.h).
 */
#include "enr_redis.h"

#include <errno.h>
#include <stdlib.h>

#include "at_log.h"

#define RESYNC_CHUNK 512

int enr_redis_ctx_err(redisContext *rc, const char *what, at_err_t *err)
{
    bool timeout = rc->err == REDIS_ERR_IO && (errno == EAGAIN || errno == EWOULDBLOCK);
    return at_err_set(err, timeout ? AT_ERR_TIMEOUT : AT_ERR_UNAVAILABLE, "redis %s: %s", what,
                      rc->err ? rc->errstr : "no reply");
}

/* Applies one HGETALL reply for (kind, id). */
static void apply_hash(enr_cache_t *cache, enr_kind_t kind, const char *id, size_t idlen, const redisReply *r,
                       int64_t now_ms)
{
    const char *doc = NULL;
    size_t doclen = 0;
    uint64_t version = 0;
    bool deleted = false;
    at_err_t err;

    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const redisReply *k = r->element[i], *v = r->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(k->str, "version") == 0)
            version = strtoull(v->str, NULL, 10);
        else if (strcmp(k->str, "doc") == 0) {
            doc = v->str;
            doclen = v->len;
        } else if (strcmp(k->str, "deleted") == 0)
            deleted = strcmp(v->str, "1") == 0;
    }
    if (version == 0 || (!deleted && doc == NULL)) {
        /* Unknown to Redis (or unusable): remember the absence until the TTL or a change. */
        enr_cache_apply(cache, kind, id, idlen, 0, false, NULL, 0, ENR_SRC_FETCH, now_ms, &err);
        return;
    }
    if (enr_cache_apply(cache, kind, id, idlen, version, deleted, deleted ? NULL : doc, doclen, ENR_SRC_FETCH, now_ms,
                        &err) < 0) {
        char idbuf[72];
        snprintf(idbuf, sizeof(idbuf), "%.*s", (int)idlen, id);
        at_log(AT_LOG_WARN, "enricher", "unreadable core-data document; treated as unknown", "id", idbuf, "error",
               err.msg, NULL);
        enr_cache_apply(cache, kind, id, idlen, 0, false, NULL, 0, ENR_SRC_FETCH, now_ms, &err);
    }
}

static const char *kind_key(enr_kind_t kind)
{
    return kind == ENR_CAMPAIGN ? "adtrack:campaign:" : "adtrack:publisher:";
}

static int append_reads(redisContext *rc, enr_kind_t kind, const char *id, size_t idlen, uint64_t *ncmds)
{
    if (redisAppendCommand(rc, "HGETALL %s%b", kind_key(kind), id, idlen) != REDIS_OK)
        return -1;
    (*ncmds)++;
    if (kind == ENR_CAMPAIGN) {
        if (redisAppendCommand(rc, "EXISTS adtrack:exhausted:%b", id, idlen) != REDIS_OK)
            return -1;
        (*ncmds)++;
    }
    return 0;
}

/* Reads the replies of append_reads() for one item and applies them. */
static int read_and_apply(redisContext *rc, enr_cache_t *cache, enr_kind_t kind, const char *id, size_t idlen,
                          int64_t now_ms, at_err_t *err)
{
    redisReply *r = NULL, *ex = NULL;
    if (redisGetReply(rc, (void **)&r) != REDIS_OK || r == NULL)
        return enr_redis_ctx_err(rc, "HGETALL", err);
    if (kind == ENR_CAMPAIGN && (redisGetReply(rc, (void **)&ex) != REDIS_OK || ex == NULL)) {
        freeReplyObject(r);
        return enr_redis_ctx_err(rc, "EXISTS", err);
    }
    if (r->type == REDIS_REPLY_ERROR) {
        at_err_set(err, AT_ERR_UNAVAILABLE, "redis HGETALL: %s", r->str);
        freeReplyObject(r);
        freeReplyObject(ex);
        return -1;
    }
    apply_hash(cache, kind, id, idlen, r, now_ms);
    if (ex != NULL && ex->type == REDIS_REPLY_INTEGER)
        enr_cache_set_exhausted(cache, id, idlen, ex->integer == 1, 0);
    freeReplyObject(r);
    freeReplyObject(ex);
    return 0;
}

int enr_redis_fetch(redisContext *rc, enr_cache_t *cache, const enr_fetch_t *items, size_t n, int64_t now_ms,
                    uint64_t *ncmds, at_err_t *err)
{
    for (size_t i = 0; i < n; i++) {
        if (append_reads(rc, items[i].kind, items[i].id, items[i].idlen, ncmds) != 0)
            return enr_redis_ctx_err(rc, "append", err);
    }
    for (size_t i = 0; i < n; i++) {
        if (read_and_apply(rc, cache, items[i].kind, items[i].id, items[i].idlen, now_ms, err) != 0)
            return -1;
    }
    return 0;
}

long enr_redis_resync(redisContext *rc, enr_cache_t *cache, int64_t now_ms, uint64_t *ncmds, at_err_t *err)
{
    static const char *const sets[2] = {"adtrack:campaigns", "adtrack:publishers"};
    long total = 0;

    for (int k = 0; k < 2; k++) {
        redisReply *m = redisCommand(rc, "SMEMBERS %s", sets[k]);
        (*ncmds)++;
        if (m == NULL)
            return enr_redis_ctx_err(rc, "SMEMBERS", err);
        if (m->type != REDIS_REPLY_ARRAY) {
            at_err_set(err, AT_ERR_UNAVAILABLE, "redis SMEMBERS %s: unexpected reply", sets[k]);
            freeReplyObject(m);
            return -1;
        }
        for (size_t i = 0; i < m->elements; i += RESYNC_CHUNK) {
            size_t end = AT_MIN(m->elements, i + RESYNC_CHUNK);
            for (size_t j = i; j < end; j++) {
                const redisReply *id = m->element[j];
                if (append_reads(rc, (enr_kind_t)k, id->str, id->len, ncmds) != 0) {
                    freeReplyObject(m);
                    return enr_redis_ctx_err(rc, "append", err);
                }
            }
            for (size_t j = i; j < end; j++) {
                const redisReply *id = m->element[j];
                if (read_and_apply(rc, cache, (enr_kind_t)k, id->str, id->len, now_ms, err) != 0) {
                    freeReplyObject(m);
                    return -1;
                }
                total++;
            }
        }
        freeReplyObject(m);
    }
    return total;
}

const char *const enr_redis_acl_probes[] = {
    "HGETALL adtrack:campaign:acl-probe",
    "EXISTS adtrack:exhausted:acl-probe",
    "SMEMBERS adtrack:campaigns",
    "SCRIPT LOAD return",
    "EVALSHA 0000000000000000000000000000000000000000 1 adtrack:spend:acl-probe",
    "EVAL return 1 adtrack:spend:acl-probe",
    /* inside the budget script */
    "GET adtrack:spend:acl-probe",
    "SET adtrack:charged:acl-probe 1",
    "INCR adtrack:acl-probe",
    "INCRBY adtrack:spend:acl-probe 0",
    "HINCRBY adtrack:stats:acl-probe f 0",
    "EXPIRE adtrack:charged:acl-probe 1",
    "PUBLISH adtrack:coredata acl-probe",
    /* the subscriber */
    "SUBSCRIBE adtrack:coredata",
    NULL,
};

redisContext *enr_redis_connect(const char *addr, const char *password, int64_t timeout_ms, at_err_t *err)
{
    redisContext *rc = at_redis_connect(addr, password, timeout_ms, err);
    if (rc != NULL && at_redis_check_acl(rc, enr_redis_acl_probes, err) != 0) {
        redisFree(rc);
        return NULL;
    }
    return rc;
}
