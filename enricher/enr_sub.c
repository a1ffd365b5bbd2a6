/*
 * enr_sub.c: the core-data subscriber thread (docs/CORE-DATA.md, "Subscriber rules").
 *
 * Loop: connect, SUBSCRIBE adtrack:coredata and wait for the confirmation, then load
 * everything (enr_redis_resync, on a second connection) and merge by version. Subscribing
 * first means a change published during the load is delivered afterwards and applied if it
 * is newer, so nothing falls between the two. Then apply each message as it arrives. On
 * any error (Redis restarted, connection lost) reconnect with backoff (100 ms doubling to
 * 5 s) and resync again. Pub/sub is at most once; the resync on every (re)subscribe and the
 * TTL on entries cover lost messages.
 *
 * The thread blocks only in poll(2) with a 200 ms timeout (at_redis_sub_pump), so it notices
 * a stop quickly.
 * @locality: its own thread; touches only the cache (write lock) and atomics.
 */
#include "enr_server.h"

#include <stdlib.h>
#include <unistd.h>

#include "at_log.h"
#include "at_redis.h"
#include "enr_redis.h"

#define SUB_CHANNEL "adtrack:coredata"
#define SUB_BACKOFF_MIN_MS 100
#define SUB_BACKOFF_MAX_MS 5000

static void sleep_unless_stopping(enr_server_t *srv, int64_t ms)
{
    int64_t until = enr_mono_ms() + ms;
    while (!atomic_load(&srv->stopping) && enr_mono_ms() < until)
        usleep(20000);
}

/* One pub/sub reply (at_redis_sub_pump callback; @p arg is the server). */
static void on_sub_message(void *arg, redisReply *r)
{
    enr_server_t *srv = arg;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(r->element[0]->str, "message") != 0 || r->element[2]->type != REDIS_REPLY_STRING)
        return; /* subscribe confirmations and the like */
    at_err_t err;
    int rc = enr_cache_apply_change(srv->cache, r->element[2]->str, r->element[2]->len, enr_mono_ms(), &err);
    if (rc == ENR_APPLIED) {
        at_counter_add(srv->stats.changes_applied, 1);
    } else if (rc == ENR_STALE) {
        at_counter_add(srv->stats.changes_stale, 1);
    } else {
        at_counter_add(srv->stats.changes_invalid, 1);
        at_log(AT_LOG_WARN, "enricher", "ignored a malformed core-data change", "error", err.msg, NULL);
    }
}

/* One subscription session; returns when the connection fails or on stop. */
static void session(enr_server_t *srv, redisContext *sub, int64_t *backoff)
{
    at_err_t err;
    redisReply *r = NULL;

    if (redisAppendCommand(sub, "SUBSCRIBE %s", SUB_CHANNEL) != REDIS_OK ||
        redisGetReply(sub, (void **)&r) != REDIS_OK || r == NULL) {
        at_log(AT_LOG_WARN, "enricher", "subscribe failed", "error", sub->errstr, NULL);
        return;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        /* NOPERM for the channel: the ACL user lacks &adtrack:coredata. */
        at_log(AT_LOG_ERROR, "enricher", "subscribe refused", "channel", SUB_CHANNEL, "error", r->str, NULL);
        freeReplyObject(r);
        return;
    }
    freeReplyObject(r);

    redisContext *cmd = at_redis_connect(srv->conf->redis, srv->conf->redis_password, srv->conf->redis_timeout_ms, &err);
    if (cmd == NULL) {
        at_log(AT_LOG_WARN, "enricher", "resync connection failed", "error", err.msg, NULL);
        return;
    }
    uint64_t ncmds = 0;
    long n = enr_redis_resync(cmd, srv->cache, enr_mono_ms(), &ncmds, &err);
    redisFree(cmd);
    if (n < 0) {
        at_log(AT_LOG_WARN, "enricher", "core-data resync failed", "error", err.msg, NULL);
        return;
    }
    at_counter_add(srv->stats.resyncs, 1);
    char cnt[32];
    snprintf(cnt, sizeof(cnt), "%ld", n);
    at_log(AT_LOG_INFO, "enricher", "subscribed to core-data changes; cache resynced", "entities", cnt, NULL);
    atomic_store(&srv->sub_ok, true);
    *backoff = SUB_BACKOFF_MIN_MS;

    at_redis_sub_pump(sub, &srv->stopping, on_sub_message, srv);
    atomic_store(&srv->sub_ok, false);
    if (!atomic_load(&srv->stopping))
        at_log(AT_LOG_WARN, "enricher", "core-data subscription lost; reconnecting", "error",
               sub->err ? sub->errstr : "closed", NULL);
}

void *enr_sub_main(void *arg)
{
    enr_server_t *srv = arg;
    int64_t backoff = SUB_BACKOFF_MIN_MS;
    at_err_t err;

    while (!atomic_load(&srv->stopping)) {
        redisContext *sub = at_redis_connect(srv->conf->redis, srv->conf->redis_password, srv->conf->redis_timeout_ms, &err);
        if (sub != NULL) {
            redisEnableKeepAlive(sub);
            session(srv, sub, &backoff);
            redisFree(sub);
        } else {
            at_log(AT_LOG_DEBUG, "enricher", "subscriber cannot connect", "error", err.msg, NULL);
        }
        if (atomic_load(&srv->stopping))
            break;
        sleep_unless_stopping(srv, backoff);
        backoff = AT_MIN(backoff * 2, SUB_BACKOFF_MAX_MS);
    }
    return NULL;
}
