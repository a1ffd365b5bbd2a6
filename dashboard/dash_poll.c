/*
 * dash_poll.c: the poll thread (Redis counters + /metrics scrapes -> snapshot) and the
 * subscriber thread (adtrack:coredata -> SSE change events). See dash_server.h.
 *
 * Poll, every --poll-ms (or at once when the subscriber saw a change):
 *   1. SMEMBERS adtrack:campaigns (ids sorted, at most --max-campaigns).
 *   2. Pipelined in chunks of 64 campaigns: HMGET adtrack:campaign:<id> version deleted doc,
 *      GET adtrack:spend:<id>, EXISTS adtrack:exhausted:<id>, and HGETALL of the stats
 *      buckets: the current and previous minute, or the whole --window-min window once a
 *      minute and for a campaign seen for the first time (late events land in older
 *      minutes; the periodic full read picks them up).
 *   3. GET of every --scrape target's /metrics.
 * Any Redis error drops the connection; the next poll reconnects.
 */
#include "dash_server.h"

#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "at_log.h"
#include "at_redis.h"
#include "at_secret.h"
#include "at_time.h"

#define SUB_CHANNEL "adtrack:coredata"
#define CHUNK 64
#define SCRAPE_MAX_BYTES (8u << 20)
#define CHANGE_MAX_BYTES (1u << 20)

int64_t dash_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void dash_cond_wait_ms(pthread_cond_t *cv, pthread_mutex_t *mu, int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(cv, mu, &ts);
}

int64_t dash_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int reply_err(redisContext *rc, redisReply *r, const char *what, at_err_t *err)
{
    if (r == NULL)
        return at_err_set(err, AT_ERR_UNAVAILABLE, "redis %s: %s", what, rc->errstr[0] ? rc->errstr : "no reply");
    if (r->type == REDIS_REPLY_ERROR)
        return at_err_set(err, AT_ERR_UNAVAILABLE, "redis %s: %s", what, r->str);
    return 0;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int64_t reply_int(const redisReply *r)
{
    if (r->type == REDIS_REPLY_INTEGER)
        return r->integer;
    if (r->type == REDIS_REPLY_STRING)
        return strtoll(r->str, NULL, 10);
    return 0;
}

/* Appends the commands for @p id; returns how many stats minutes were asked for. */
static int append_campaign(redisContext *rc, const char *id, int64_t first_min, int64_t last_min)
{
    char mk[16];
    redisAppendCommand(rc, "HMGET adtrack:campaign:%s version deleted doc", id);
    redisAppendCommand(rc, "GET adtrack:spend:%s", id);
    redisAppendCommand(rc, "EXISTS adtrack:exhausted:%s", id);
    for (int64_t mi = first_min; mi <= last_min; mi++) {
        at_utc_minute_key(mi * 60000, mk);
        redisAppendCommand(rc, "HGETALL adtrack:stats:%s:%s", id, mk);
    }
    return (int)(last_min - first_min + 1);
}

/* Reads the replies for one campaign into the model. */
static int read_campaign(dash_server_t *srv, redisContext *rc, const char *id, int64_t first_min, int64_t last_min,
                         at_err_t *err)
{
    redisReply *meta = NULL, *spend = NULL, *exh = NULL;
    int rcode = 0;
    if (redisGetReply(rc, (void **)&meta) != REDIS_OK || reply_err(rc, meta, "HMGET", err) != 0 ||
        redisGetReply(rc, (void **)&spend) != REDIS_OK || reply_err(rc, spend, "GET", err) != 0 ||
        redisGetReply(rc, (void **)&exh) != REDIS_OK || reply_err(rc, exh, "EXISTS", err) != 0) {
        rcode = -1;
        goto out;
    }
    dash_campaign_t *c = dash_model_campaign(srv->model, id);
    if (c != NULL && meta->type == REDIS_REPLY_ARRAY && meta->elements == 3) {
        redisReply *v = meta->element[0], *d = meta->element[1], *doc = meta->element[2];
        bool deleted = d->type == REDIS_REPLY_STRING && strcmp(d->str, "1") == 0;
        /* A set member without a hash (not written yet) is shown with its id only. */
        dash_model_campaign_meta(c, v->type == REDIS_REPLY_STRING ? reply_int(v) : 0, deleted,
                                 doc->type == REDIS_REPLY_STRING ? doc->str : NULL,
                                 doc->type == REDIS_REPLY_STRING ? doc->len : 0);
        dash_model_campaign_spend(c, spend->type == REDIS_REPLY_STRING ? reply_int(spend) : 0, reply_int(exh) > 0);
    }
    for (int64_t mi = first_min; mi <= last_min; mi++) {
        redisReply *st = NULL;
        if (redisGetReply(rc, (void **)&st) != REDIS_OK || reply_err(rc, st, "HGETALL", err) != 0) {
            freeReplyObject(st);
            rcode = -1;
            /* the remaining replies are not read: the caller drops the connection */
            goto out;
        }
        if (c != NULL && st->type == REDIS_REPLY_ARRAY) {
            const char *fields[64], *values[64];
            size_t n = 0;
            for (size_t i = 0; i + 1 < st->elements && n < AT_ARRAY_LEN(fields); i += 2) {
                if (st->element[i]->type != REDIS_REPLY_STRING || st->element[i + 1]->type != REDIS_REPLY_STRING)
                    continue;
                fields[n] = st->element[i]->str;
                values[n++] = st->element[i + 1]->str;
            }
            dash_model_campaign_stats(srv->model, c, mi, fields, values, n);
        }
        freeReplyObject(st);
    }
out:
    freeReplyObject(meta);
    freeReplyObject(spend);
    freeReplyObject(exh);
    return rcode;
}

/* The commands (with representative keys and channels) the dashboard runs on Redis. */
static const char *const dash_redis_acl_probes[] = {
    "SMEMBERS adtrack:campaigns",
    "HMGET adtrack:campaign:acl-probe version",
    "GET adtrack:spend:acl-probe",
    "EXISTS adtrack:exhausted:acl-probe",
    "HGETALL adtrack:stats:acl-probe",
    "SUBSCRIBE adtrack:coredata",
    NULL,
};

static int poll_redis(dash_server_t *srv, int64_t now_ms, at_err_t *err)
{
    const dash_conf_t *conf = srv->conf;
    redisContext *rc = srv->redis;
    if (rc == NULL) {
        rc = at_redis_connect(conf->redis, conf->redis_password, conf->redis_timeout_ms, err);
        if (rc == NULL)
            return -1;
        if (at_redis_check_acl(rc, dash_redis_acl_probes, err) != 0) {
            redisFree(rc);
            return -1;
        }
        srv->redis = rc;
    }
    redisReply *set = redisCommand(rc, "SMEMBERS adtrack:campaigns");
    if (reply_err(rc, set, "SMEMBERS", err) != 0) {
        freeReplyObject(set);
        return -1;
    }
    size_t n = set->type == REDIS_REPLY_ARRAY ? set->elements : 0;
    const char **ids = calloc(n + 1, sizeof(*ids));
    size_t nids = 0;
    for (size_t i = 0; ids != NULL && i < n; i++)
        if (set->element[i]->type == REDIS_REPLY_STRING && set->element[i]->len <= DASH_ID_MAX)
            ids[nids++] = set->element[i]->str;
    if (ids != NULL)
        qsort(ids, nids, sizeof(*ids), cmp_str);

    int64_t now_min = dash_minute_of_ms(now_ms);
    bool full = now_min != srv->last_full_minute;
    int rcode = 0;
    size_t limit = AT_MIN(nids, (size_t)conf->max_campaigns);
    int64_t firsts[CHUNK];
    for (size_t start = 0; rcode == 0 && start < limit; start += CHUNK) {
        size_t end = AT_MIN(limit, start + CHUNK);
        for (size_t i = start; i < end; i++) {
            bool fresh = full || dash_model_find(srv->model, ids[i]) == NULL;
            firsts[i - start] = fresh ? now_min - conf->window_min + 1 : now_min - 1;
            append_campaign(rc, ids[i], firsts[i - start], now_min);
        }
        for (size_t i = start; i < end && rcode == 0; i++)
            rcode = read_campaign(srv, rc, ids[i], firsts[i - start], now_min, err);
    }
    /* One more than the model may hold: it fails, and the model reports itself truncated. */
    if (rcode == 0 && nids > limit)
        (void)dash_model_campaign(srv->model, ids[limit]);
    free(ids);
    freeReplyObject(set);
    if (rcode == 0 && full)
        srv->last_full_minute = now_min;
    return rcode;
}

static void poll_once(dash_server_t *srv)
{
    at_err_t err = {0};
    int64_t t0 = dash_mono_ms();
    int64_t now_ms = dash_wall_ms();

    dash_model_begin(srv->model, now_ms);
    bool ok = poll_redis(srv, now_ms, &err) == 0;
    if (!ok) {
        if (srv->redis != NULL) {
            redisFree(srv->redis);
            srv->redis = NULL;
        }
        at_counter_add(srv->stats.poll_errors, 1);
        /* once per outage (and at start-up), not once per poll; refused credentials or
         * permissions at error level, and again when the reason changes or every 30 s */
        if (err.code == AT_ERR_AUTH) {
            if (at_log_gate(&srv->redis_gate, err.msg, 30))
                at_log(AT_LOG_ERROR, "dashboard", "redis refused our credentials or permissions; retrying every poll",
                       "error", err.msg, NULL);
        } else if (atomic_load(&srv->redis_up) || srv->polls_done == 0) {
            at_log(AT_LOG_WARN, "dashboard", "redis poll failed; retrying every poll", "error", err.msg, NULL);
        }
    } else if (!atomic_load(&srv->redis_up)) {
        char where[1100];
        at_log(AT_LOG_INFO, "dashboard", "redis reachable", "redis",
               at_secret_uri_redact(srv->conf->redis, where, sizeof(where)), NULL);
        srv->redis_gate = (at_log_gate_t){0};
    }
    srv->polls_done++;
    dash_model_end(srv->model, ok, err.msg);
    atomic_store(&srv->redis_up, ok);
    at_gauge_set(srv->stats.redis_up, ok ? 1 : 0);
    at_counter_add(srv->stats.polls, 1);

    for (size_t i = 0; i < dash_model_ntargets(srv->model); i++) {
        char *body = NULL;
        size_t len = 0;
        at_err_t serr = {0};
        int rc =
            dash_scrape_get(&srv->urls[i], (int)srv->conf->scrape_timeout_ms, SCRAPE_MAX_BYTES, &body, &len, &serr);
        at_counter_add(srv->stats.scrapes, 1);
        if (rc != 0)
            at_counter_add(srv->stats.scrape_errors, 1);
        dash_model_target(srv->model, i, rc == 0, body, len, serr.msg, dash_wall_ms());
        free(body);
    }

    size_t len = 0;
    char *json = dash_model_json(srv->model, DASH_SNAPSHOT_MAX, &len);
    if (json == NULL) {
        at_log(AT_LOG_ERROR, "dashboard", "snapshot could not be built (too large or out of memory)", NULL);
    } else {
        at_gauge_set(srv->stats.snapshot_bytes, (double)len);
        dash_server_post(srv, DASH_MSG_SNAPSHOT, json, len);
    }
    at_histogram_observe(srv->stats.poll_duration, (double)(dash_mono_ms() - t0) / 1000.0);
}

void dash_poll_wake(dash_server_t *srv)
{
    pthread_mutex_lock(&srv->wake_mu);
    srv->wake = true;
    pthread_cond_signal(&srv->wake_cv);
    pthread_mutex_unlock(&srv->wake_mu);
}

void *dash_poll_main(void *arg)
{
    dash_server_t *srv = arg;
    while (!atomic_load(&srv->stopping)) {
        int64_t next = dash_mono_ms() + srv->conf->poll_ms;
        poll_once(srv);
        pthread_mutex_lock(&srv->wake_mu);
        while (!srv->wake && !atomic_load(&srv->stopping)) {
            int64_t now = dash_mono_ms();
            if (now >= next)
                break;
            dash_cond_wait_ms(&srv->wake_cv, &srv->wake_mu, next - now);
        }
        srv->wake = false;
        pthread_mutex_unlock(&srv->wake_mu);
    }
    if (srv->redis != NULL) {
        redisFree(srv->redis);
        srv->redis = NULL;
    }
    return NULL;
}

/* ---- subscriber ---- */

/* One pub/sub reply (at_redis_sub_pump callback; @p arg is the server). */
static void on_sub_message(void *arg, redisReply *r)
{
    dash_server_t *srv = arg;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 3 || r->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(r->element[0]->str, "message") != 0 || r->element[2]->type != REDIS_REPLY_STRING)
        return; /* subscribe confirmations and the like */
    size_t len = 0;
    char *json = r->element[2]->len <= CHANGE_MAX_BYTES
                     ? dash_change_json(r->element[2]->str, r->element[2]->len, dash_wall_ms(), &len)
                     : NULL;
    if (json == NULL) {
        at_counter_add(srv->stats.changes_invalid, 1);
        at_log(AT_LOG_DEBUG, "dashboard", "ignored a malformed core-data change", NULL);
        return;
    }
    at_counter_add(srv->stats.changes, 1);
    dash_server_post(srv, DASH_MSG_CHANGE, json, len);
    dash_poll_wake(srv); /* a fresh snapshot right behind the change */
}

static void sub_session(dash_server_t *srv, redisContext *sub, int64_t *backoff)
{
    redisReply *r = NULL;
    if (redisAppendCommand(sub, "SUBSCRIBE %s", SUB_CHANNEL) != REDIS_OK ||
        redisGetReply(sub, (void **)&r) != REDIS_OK || r == NULL) {
        at_log(AT_LOG_DEBUG, "dashboard", "subscribe failed", "error", sub->errstr, NULL);
        return;
    }
    freeReplyObject(r);
    atomic_store(&srv->subscribed, true);
    *backoff = 100;
    at_log(AT_LOG_INFO, "dashboard", "subscribed to core-data changes", "channel", SUB_CHANNEL, NULL);
    dash_poll_wake(srv); /* changes missed while away are in the next poll */
    at_redis_sub_pump(sub, &srv->stopping, on_sub_message, srv);
    atomic_store(&srv->subscribed, false);
    if (!atomic_load(&srv->stopping))
        at_log(AT_LOG_WARN, "dashboard", "core-data subscription lost; reconnecting", "error",
               sub->err ? sub->errstr : "closed", NULL);
}

void *dash_sub_main(void *arg)
{
    dash_server_t *srv = arg;
    int64_t backoff = 100;
    while (!atomic_load(&srv->stopping)) {
        at_err_t err;
        redisContext *sub = at_redis_connect(srv->conf->redis, srv->conf->redis_password, srv->conf->redis_timeout_ms, &err);
        if (sub != NULL) {
            /* The subscription waits for messages indefinitely: no read timeout here. */
            struct timeval none = {0, 0};
            redisSetTimeout(sub, none);
            redisEnableKeepAlive(sub);
            sub_session(srv, sub, &backoff);
            redisFree(sub);
        }
        int64_t until = dash_mono_ms() + backoff;
        while (!atomic_load(&srv->stopping) && dash_mono_ms() < until)
            usleep(20000);
        backoff = AT_MIN(backoff * 2, 2000);
    }
    return NULL;
}
