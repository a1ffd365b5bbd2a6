/*
 * cd_fanout.c: the fan-out thread (Redis cache + pub/sub, changes topic). See cd_fanout.h.
 *
 * @locality: everything static here runs on the fan-out thread, except the queue push
 * (core worker) and the status getters (any thread), which only touch atomics or take the
 * queue mutex.
 */
#include "cd_fanout.h"

#include <errno.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "at_kafka.h"
#include "at_log.h"
#include "at_redis.h"
#include "at_secret.h"
#include "cd_doc.h"

#define CHANNEL "adtrack:coredata"
#define VERSION_KEY "adtrack:coredata:version"
#define BATCH_MAX 512
#define INFLIGHT_MAX 1000
#define COMP "coredata"

const char cd_fanout_cas_script[] =
    "local v = tonumber(ARGV[1])\n"
    "local cur = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')\n"
    "local applied = 0\n"
    "if cur < v then\n"
    "  if ARGV[3] == '1' then\n"
    "    redis.call('HDEL', KEYS[1], 'doc')\n"
    "    redis.call('HSET', KEYS[1], 'version', ARGV[1], 'deleted', '1')\n"
    "  else\n"
    "    redis.call('HDEL', KEYS[1], 'deleted')\n"
    "    redis.call('HSET', KEYS[1], 'version', ARGV[1], 'doc', ARGV[4])\n"
    "  end\n"
    "  redis.call('SADD', KEYS[2], ARGV[2])\n"
    "  applied = 1\n"
    "end\n"
    "local gv = tonumber(redis.call('GET', KEYS[3]) or '0')\n"
    "if gv < v then redis.call('SET', KEYS[3], ARGV[1]); gv = v end\n"
    "if applied == 1 and ARGV[11] == '1' then redis.call('PUBLISH', ARGV[5], ARGV[6]) end\n"
    "local rv = 0\n"
    "if applied == 1 and ARGV[7] == '1' and ARGV[3] ~= '1' then\n"
    "  local spend = tonumber(redis.call('GET', KEYS[4]) or '0')\n"
    "  if tonumber(ARGV[8]) > spend and (ARGV[9] == '1' or redis.call('EXISTS', KEYS[5]) == 1) then\n"
    "    redis.call('DEL', KEYS[5])\n"
    "    rv = tonumber(ARGV[10])\n"
    "    if rv <= gv then rv = gv + 1 end\n"
    "    gv = rv\n"
    "    redis.call('SET', KEYS[3], string.format('%d', rv))\n"
    "    redis.call('PUBLISH', ARGV[5], '{\"kind\":\"budget\",\"id\":\"' .. ARGV[2] .. '\",\"version\":' ..\n"
    "      string.format('%d', rv) .. ',\"op\":\"replenished\"}')\n"
    "  end\n"
    "end\n"
    "return {applied, rv, gv}\n";

typedef enum kstate_e { K_QUEUED = 0, K_INFLIGHT, K_ACKED, K_FAILED } kstate_t;

struct cd_change_s {
    cd_change_t *next;
    cd_kind_t kind;
    bool budget; /* a {"kind":"budget"} notification (replenished), Kafka only */
    char id[CD_ID_MAX + 1];
    int64_t version;
    bool deleted;
    char *doc_json; /* NULL for deletes and budget notifications */
    char *msg;
    size_t msg_len;
    int64_t budget_micros;
    bool budget_op;
    int64_t replenish_version;
    /* Kafka */
    char key[CD_ID_MAX + 16];
    kstate_t kstate;
};

typedef struct cd_fanout_stats_s {
    at_counter_t *redis_writes, *redis_failures, *redis_resyncs, *published, *replenished;
    at_counter_t *kafka_acked, *kafka_failures, *kafka_resyncs, *kafka_dropped;
    at_gauge_t *redis_up, *kafka_backlog, *queue;
} cd_fanout_stats_t;

struct cd_fanout_s {
    const cd_conf_t *conf;
    cd_state_t *state;
    cd_fanout_stats_t st;
    pthread_t tid;
    bool started;
    atomic_bool stop;
    atomic_int_fast64_t floor;
    atomic_bool redis_up;
    atomic_bool redis_auth_failed; /* the last connect was refused: credentials or ACL */
    at_log_gate_t redis_gate;      /* fan-out thread only */
    atomic_size_t backlog_len;
    atomic_size_t queue_len;
    atomic_bool idle;

    /* queue from the core worker */
    pthread_mutex_t mu;
    cd_change_t *qhead, *qtail;
    int efd; /* eventfd: wakes the thread on push */

    /* Redis (fan-out thread only) */
    redisContext *rc;
    char sha[41];
    bool need_resync;
    int64_t next_connect_ms;
    int64_t backoff_ms;
    int64_t next_ping_ms; /* PING once a second: a restarted Redis is noticed without waiting for a write */

    /* Kafka (fan-out thread only) */
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt;
    int dr_pipe[2];
    cd_change_t *khead, *ktail, *kcursor; /* backlog; kcursor: next to produce */
    size_t kcount, kinflight, kfailed;
    bool kresync;       /* produce a full snapshot once the backlog is empty */
    int64_t kresync_hw; /* changes up to this version are covered by the last snapshot */
    int64_t knext_produce_ms;
    int64_t kbackoff_ms;
    int drain_ms;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- changes ---- */

char *cd_change_json(cd_kind_t kind, const bson_t *doc, size_t *len)
{
    bson_t m = BSON_INITIALIZER;
    char id[CD_ID_MAX + 1];
    bool deleted = cd_doc_deleted(doc);
    BSON_APPEND_UTF8(&m, "kind", cd_kind_str(kind));
    BSON_APPEND_UTF8(&m, "id", cd_doc_utf8(doc, "id", id, sizeof(id)));
    BSON_APPEND_INT64(&m, "version", cd_doc_int64(doc, "version", 0));
    BSON_APPEND_UTF8(&m, "op", deleted ? "delete" : "put");
    if (!deleted)
        BSON_APPEND_DOCUMENT(&m, "doc", doc);
    char *json = bson_as_relaxed_extended_json(&m, len);
    bson_destroy(&m);
    return json;
}

cd_change_t *cd_change_new(cd_kind_t kind, const bson_t *doc, bool budget_op, int64_t replenish_version)
{
    cd_change_t *ch = calloc(1, sizeof(*ch));
    if (ch == NULL)
        return NULL;
    ch->kind = kind;
    cd_doc_utf8(doc, "id", ch->id, sizeof(ch->id));
    ch->version = cd_doc_int64(doc, "version", 0);
    ch->deleted = cd_doc_deleted(doc);
    if (!ch->deleted) {
        size_t l;
        ch->doc_json = bson_as_relaxed_extended_json(doc, &l);
    }
    ch->msg = cd_change_json(kind, doc, &ch->msg_len);
    ch->budget_micros = cd_doc_int64(doc, "budget_micros", 0);
    ch->budget_op = budget_op;
    ch->replenish_version = replenish_version;
    snprintf(ch->key, sizeof(ch->key), "%s:%s", cd_kind_str(kind), ch->id);
    if (ch->msg == NULL || (!ch->deleted && ch->doc_json == NULL)) {
        cd_change_free(ch);
        return NULL;
    }
    return ch;
}

static cd_change_t *budget_change_new(const char *id, int64_t version)
{
    cd_change_t *ch = calloc(1, sizeof(*ch));
    char buf[256];
    if (ch == NULL)
        return NULL;
    ch->budget = true;
    snprintf(ch->id, sizeof(ch->id), "%s", id);
    ch->version = version;
    int n = snprintf(buf, sizeof(buf), "{\"kind\":\"budget\",\"id\":\"%s\",\"version\":%lld,\"op\":\"replenished\"}",
                     id, (long long)version);
    ch->msg = bson_strndup(buf, (size_t)n);
    ch->msg_len = (size_t)n;
    snprintf(ch->key, sizeof(ch->key), "budget:%s", id);
    return ch;
}

void cd_change_free(cd_change_t *ch)
{
    if (ch == NULL)
        return;
    bson_free(ch->doc_json);
    bson_free(ch->msg);
    free(ch);
}

/* ---- queue ---- */

void cd_fanout_push(cd_fanout_t *fo, cd_change_t *ch)
{
    uint64_t one = 1;
    ch->next = NULL;
    pthread_mutex_lock(&fo->mu);
    if (fo->qtail != NULL)
        fo->qtail->next = ch;
    else
        fo->qhead = ch;
    fo->qtail = ch;
    atomic_fetch_add(&fo->queue_len, 1);
    atomic_store(&fo->idle, false);
    pthread_mutex_unlock(&fo->mu);
    if (write(fo->efd, &one, sizeof(one)) < 0) {
        /* eventfd counter overflow cannot happen with one writer; the thread also polls. */
    }
}

static cd_change_t *take_batch(cd_fanout_t *fo, size_t max)
{
    pthread_mutex_lock(&fo->mu);
    cd_change_t *head = fo->qhead, *last = NULL, *p = head;
    size_t n = 0;
    while (p != NULL && n < max) {
        last = p;
        p = p->next;
        n++;
    }
    if (last != NULL) {
        fo->qhead = last->next;
        if (fo->qhead == NULL)
            fo->qtail = NULL;
        last->next = NULL;
    }
    atomic_fetch_sub(&fo->queue_len, n);
    pthread_mutex_unlock(&fo->mu);
    return n > 0 ? head : NULL;
}

/* ---- Redis ---- */

static void redis_drop(cd_fanout_t *fo, const char *why)
{
    if (fo->rc != NULL) {
        at_log(AT_LOG_WARN, COMP, "redis connection lost; will resync on reconnect", "error", why, NULL);
        redisFree(fo->rc);
        fo->rc = NULL;
        at_counter_add(fo->st.redis_failures, 1);
    }
    fo->need_resync = true;
    atomic_store(&fo->redis_up, false);
    at_gauge_set(fo->st.redis_up, 0);
    fo->next_connect_ms = now_ms() + fo->backoff_ms;
    fo->backoff_ms = AT_MIN(fo->backoff_ms * 2, 2000);
}

/* The commands (with representative keys and channels) coredata runs on Redis, directly or
 * inside its compare-and-set script; checked on every connect (at_redis_check_acl). */
static const char *const cd_redis_acl_probes[] = {
    "SCRIPT LOAD return",
    "EVALSHA 0000000000000000000000000000000000000000 5 adtrack:campaign:acl-probe adtrack:campaigns "
    "adtrack:coredata:version adtrack:spend:acl-probe adtrack:exhausted:acl-probe",
    "GET adtrack:coredata:version",
    "HGET adtrack:campaign:acl-probe version",
    "HSET adtrack:campaign:acl-probe version 1",
    "HDEL adtrack:campaign:acl-probe doc",
    "SADD adtrack:campaigns acl-probe",
    "SET adtrack:coredata:version 1",
    "DEL adtrack:exhausted:acl-probe",
    "EXISTS adtrack:exhausted:acl-probe",
    "PUBLISH adtrack:coredata acl-probe",
    NULL,
};

static redisContext *redis_open(const cd_conf_t *conf, int64_t timeout_ms, at_err_t *err)
{
    redisContext *c = at_redis_connect(conf->redis, conf->redis_password, timeout_ms, err);
    if (c != NULL && at_redis_check_acl(c, cd_redis_acl_probes, err) != 0) {
        redisFree(c);
        return NULL;
    }
    return c;
}

static int redis_connect(cd_fanout_t *fo)
{
    at_err_t err;
    fo->rc = redis_open(fo->conf, fo->conf->redis_timeout_ms, &err);
    atomic_store(&fo->redis_auth_failed, fo->rc == NULL && err.code == AT_ERR_AUTH);
    if (fo->rc == NULL) {
        /* Each new reason at once, a repeated one every 30 s: refused credentials or ACL
         * permissions must be seen, an outage need not fill the log. */
        if (at_log_gate(&fo->redis_gate, err.msg, 30))
            at_log(err.code == AT_ERR_AUTH ? AT_LOG_ERROR : AT_LOG_WARN, COMP,
                   err.code == AT_ERR_AUTH ? "redis refused our credentials or permissions; will retry"
                                           : "redis not reachable; will retry",
                   "error", err.msg, NULL);
        fo->next_connect_ms = now_ms() + fo->backoff_ms;
        fo->backoff_ms = AT_MIN(fo->backoff_ms * 2, 2000);
        return -1;
    }
    redisReply *r = redisCommand(fo->rc, "SCRIPT LOAD %s", cd_fanout_cas_script);
    if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40) {
        if (r != NULL)
            freeReplyObject(r);
        redis_drop(fo, "SCRIPT LOAD failed");
        return -1;
    }
    memcpy(fo->sha, r->str, 40);
    fo->sha[40] = '\0';
    freeReplyObject(r);
    char where[1100];
    at_log(AT_LOG_INFO, COMP, "redis connected", "redis", at_secret_uri_redact(fo->conf->redis, where, sizeof(where)),
           NULL);
    fo->redis_gate = (at_log_gate_t){0};
    fo->need_resync = true;
    fo->backoff_ms = 100;
    atomic_store(&fo->redis_up, true);
    at_gauge_set(fo->st.redis_up, 1);
    return 0;
}

static void raise_floor(cd_fanout_t *fo, int64_t v)
{
    int_fast64_t cur = atomic_load(&fo->floor);
    while (v > cur && !atomic_compare_exchange_weak(&fo->floor, &cur, v))
        ;
}

/* Appends the script call for @p ch to the pipeline. */
static int append_cas(cd_fanout_t *fo, const cd_change_t *ch, bool publish)
{
    char hkey[128], skey[64], spend[128], exh[128], ver[32], bud[32], rv[32];
    const char *kind = cd_kind_str(ch->kind);
    snprintf(hkey, sizeof(hkey), "adtrack:%s:%s", kind, ch->id);
    snprintf(skey, sizeof(skey), "adtrack:%s", cd_kind_plural(ch->kind));
    snprintf(spend, sizeof(spend), "adtrack:spend:%s", ch->id);
    snprintf(exh, sizeof(exh), "adtrack:exhausted:%s", ch->id);
    snprintf(ver, sizeof(ver), "%lld", (long long)ch->version);
    snprintf(bud, sizeof(bud), "%lld", (long long)ch->budget_micros);
    snprintf(rv, sizeof(rv), "%lld", (long long)ch->replenish_version);
    const char *argv[] = {"EVALSHA",
                          fo->sha,
                          "5",
                          hkey,
                          skey,
                          VERSION_KEY,
                          spend,
                          exh,
                          ver,
                          ch->id,
                          ch->deleted ? "1" : "0",
                          ch->doc_json ? ch->doc_json : "",
                          CHANNEL,
                          ch->msg,
                          ch->kind == CD_KIND_CAMPAIGN ? "1" : "0",
                          bud,
                          ch->budget_op ? "1" : "0",
                          rv,
                          publish ? "1" : "0"};
    size_t lens[AT_ARRAY_LEN(argv)];
    for (size_t i = 0; i < AT_ARRAY_LEN(argv); i++)
        lens[i] = strlen(argv[i]);
    lens[13] = ch->msg_len;
    return redisAppendCommandArgv(fo->rc, (int)AT_ARRAY_LEN(argv), argv, lens) == REDIS_OK ? 0 : -1;
}

static void kafka_append(cd_fanout_t *fo, cd_change_t *ch);
static void kafka_append_replenished(cd_fanout_t *fo, const char *id, int64_t rv);

/* Reads one script reply; *@p rv is the version of the replenished notification the script
 * published (0: none). Returns 0, or -1 when the connection is unusable. */
static int read_cas_reply(cd_fanout_t *fo, int64_t *rv)
{
    redisReply *r = NULL;
    *rv = 0;
    if (redisGetReply(fo->rc, (void **)&r) != REDIS_OK || r == NULL) {
        redis_drop(fo, fo->rc->errstr[0] ? fo->rc->errstr : "no reply");
        return -1;
    }
    int rc = 0;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 && r->element[0]->type == REDIS_REPLY_INTEGER) {
        at_counter_add(fo->st.redis_writes, 1);
        if (r->element[0]->integer == 1)
            at_counter_add(fo->st.published, 1);
        raise_floor(fo, r->element[2]->integer);
        *rv = r->element[1]->integer;
        if (*rv > 0)
            at_counter_add(fo->st.replenished, 1);
    } else {
        /* NOSCRIPT (a restarted server) or a script error: start over with a resync. */
        char why[200];
        snprintf(why, sizeof(why), "script reply: %s", r->type == REDIS_REPLY_ERROR ? r->str : "unexpected type");
        freeReplyObject(r);
        redis_drop(fo, why);
        return -1;
    }
    freeReplyObject(r);
    return rc;
}

/* Writes every entity from memory through the compare-and-set script, in version order;
 * publishes what was applied. 0 or -1 (connection dropped). */
static int redis_resync(cd_fanout_t *fo)
{
    size_t n;
    cd_snap_t *snap = cd_state_snapshot(fo->state, &n);
    int64_t t0 = now_ms();
    for (size_t i = 0; i < n;) {
        size_t end = AT_MIN(n, i + BATCH_MAX);
        cd_change_t *chs[BATCH_MAX];
        size_t k = 0;
        for (size_t j = i; j < end; j++) {
            chs[k] = cd_change_new(snap[j].kind, snap[j].e.doc, false, 0);
            if (chs[k] != NULL && append_cas(fo, chs[k], true) != 0) {
                cd_change_free(chs[k]);
                chs[k] = NULL;
            }
            if (chs[k] != NULL)
                k++;
        }
        int rc = 0;
        for (size_t j = 0; j < k; j++) {
            int64_t rv = 0;
            if (rc == 0 && read_cas_reply(fo, &rv) != 0)
                rc = -1;
            if (rv > 0)
                kafka_append_replenished(fo, chs[j]->id, rv);
            cd_change_free(chs[j]);
        }
        if (rc != 0) {
            cd_state_snapshot_free(snap, n);
            return -1;
        }
        i = end;
    }
    cd_state_snapshot_free(snap, n);
    char cnt[32], ms[32];
    snprintf(cnt, sizeof(cnt), "%zu", n);
    snprintf(ms, sizeof(ms), "%lld", (long long)(now_ms() - t0));
    at_log(AT_LOG_INFO, COMP, "redis resynced from memory", "entities", cnt, "ms", ms, NULL);
    at_counter_add(fo->st.redis_resyncs, 1);
    fo->need_resync = false;
    return 0;
}

/* ---- Kafka ---- */

static void kafka_append(cd_fanout_t *fo, cd_change_t *ch)
{
    /* Covered by a snapshot produced (or about to be) after it: producing it now would put
     * an older version after a newer one for its key. */
    if ((fo->kresync && !ch->budget) || (!ch->budget && ch->version <= fo->kresync_hw)) {
        cd_change_free(ch);
        return;
    }
    if (fo->kcount >= (size_t)fo->conf->kafka_backlog_max) {
        if (!fo->kresync)
            at_log(AT_LOG_WARN, COMP, "kafka backlog full; the full state will be produced once kafka is back", NULL);
        fo->kresync = true;
        at_counter_add(fo->st.kafka_dropped, 1);
        cd_change_free(ch);
        return;
    }
    ch->next = NULL;
    ch->kstate = K_QUEUED;
    if (fo->ktail != NULL)
        fo->ktail->next = ch;
    else
        fo->khead = ch;
    fo->ktail = ch;
    if (fo->kcursor == NULL)
        fo->kcursor = ch;
    fo->kcount++;
    atomic_store(&fo->backlog_len, fo->kcount);
}

static void kafka_append_replenished(cd_fanout_t *fo, const char *id, int64_t rv)
{
    cd_change_t *b = budget_change_new(id, rv);
    if (b != NULL)
        kafka_append(fo, b);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    cd_fanout_t *fo = opaque;
    cd_change_t *ch = m->_private;
    AT_UNUSED(rk);
    fo->kinflight--;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        at_kafka_note_ok();
        ch->kstate = K_ACKED;
        at_counter_add(fo->st.kafka_acked, 1);
        return;
    }
    ch->kstate = K_FAILED;
    fo->kfailed++;
    at_counter_add(fo->st.kafka_failures, 1);
    at_log(AT_LOG_DEBUG, COMP, "change not acknowledged by kafka; will retry", "key", ch->key, "error",
           rd_kafka_err2str(m->err), NULL);
}

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    AT_UNUSED(rk);
    AT_UNUSED(opaque);
    at_kafka_log_client_error(COMP, err, reason);
}

/* After a failure, once nothing is in flight: drop acknowledged changes and failed ones
 * superseded by an acknowledged newer change of the same key, then produce the rest again
 * from the start, in order. */
static void kafka_recover(cd_fanout_t *fo)
{
    cd_change_t *keep = NULL, *tail = NULL, *next;
    size_t n = 0;
    for (cd_change_t *ch = fo->khead; ch != NULL; ch = next) {
        next = ch->next;
        bool drop = ch->kstate == K_ACKED;
        if (ch->kstate == K_FAILED)
            for (cd_change_t *later = next; later != NULL && !drop; later = later->next)
                drop = later->kstate == K_ACKED && strcmp(later->key, ch->key) == 0;
        if (drop) {
            cd_change_free(ch);
            continue;
        }
        ch->kstate = K_QUEUED;
        ch->next = NULL;
        if (tail != NULL)
            tail->next = ch;
        else
            keep = ch;
        tail = ch;
        n++;
    }
    fo->khead = fo->kcursor = keep;
    fo->ktail = tail;
    fo->kcount = n;
    fo->kfailed = 0;
    atomic_store(&fo->backlog_len, n);
    fo->knext_produce_ms = now_ms() + fo->kbackoff_ms;
    fo->kbackoff_ms = AT_MIN(fo->kbackoff_ms * 2, 5000);
}

static void kafka_snapshot(cd_fanout_t *fo)
{
    size_t n;
    pthread_rwlock_rdlock(&fo->state->lock);
    int64_t hw = fo->state->version;
    pthread_rwlock_unlock(&fo->state->lock);
    cd_snap_t *snap = cd_state_snapshot(fo->state, &n);
    fo->kresync = false;
    for (size_t i = 0; i < n; i++) {
        cd_change_t *ch = cd_change_new(snap[i].kind, snap[i].e.doc, false, 0);
        if (ch != NULL)
            kafka_append(fo, ch);
        if (snap[i].e.version > hw)
            hw = snap[i].e.version;
    }
    fo->kresync_hw = hw;
    cd_state_snapshot_free(snap, n);
    at_counter_add(fo->st.kafka_resyncs, 1);
    char cnt[32];
    snprintf(cnt, sizeof(cnt), "%zu", n);
    at_log(AT_LOG_INFO, COMP, "producing the full state to the changes topic", "entities", cnt, NULL);
}

static void kafka_progress(cd_fanout_t *fo)
{
    rd_kafka_poll(fo->rk, 0);
    /* Acknowledged changes at the head are done. */
    while (fo->khead != NULL && fo->khead->kstate == K_ACKED) {
        cd_change_t *ch = fo->khead;
        fo->khead = ch->next;
        if (fo->khead == NULL)
            fo->ktail = NULL;
        if (fo->kcursor == ch)
            fo->kcursor = fo->khead;
        cd_change_free(ch);
        fo->kcount--;
        fo->kbackoff_ms = 100;
    }
    atomic_store(&fo->backlog_len, fo->kcount);
    if (fo->kfailed > 0) {
        if (fo->kinflight == 0)
            kafka_recover(fo);
        return;
    }
    if (fo->kresync && fo->kcount == 0)
        kafka_snapshot(fo);
    if (now_ms() < fo->knext_produce_ms)
        return;
    while (fo->kcursor != NULL && fo->kinflight < INFLIGHT_MAX) {
        cd_change_t *ch = fo->kcursor;
        rd_kafka_resp_err_t err = rd_kafka_producev(
            fo->rk, RD_KAFKA_V_RKT(fo->rkt), RD_KAFKA_V_MSGFLAGS(0), RD_KAFKA_V_KEY(ch->key, strlen(ch->key)),
            RD_KAFKA_V_VALUE(ch->msg, ch->msg_len), RD_KAFKA_V_OPAQUE(ch), RD_KAFKA_V_END);
        if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            /* Queue full: try again on the next round. */
            fo->knext_produce_ms = now_ms() + 10;
            break;
        }
        ch->kstate = K_INFLIGHT;
        fo->kinflight++;
        fo->kcursor = ch->next;
    }
}

/* ---- the thread ---- */

static void process_batch(cd_fanout_t *fo, cd_change_t *batch)
{
    cd_change_t *chs[BATCH_MAX];
    size_t n = 0;
    for (cd_change_t *p = batch; p != NULL && n < BATCH_MAX; p = p->next)
        chs[n++] = p;
    if (fo->rc != NULL && !fo->need_resync) {
        size_t appended = 0;
        for (size_t i = 0; i < n; i++, appended++)
            if (append_cas(fo, chs[i], true) != 0)
                break;
        if (appended < n) {
            redis_drop(fo, "append failed");
        } else {
            /* Each change goes to Kafka right after its own reply, so a replenished
             * notification lands between its campaign change and the next change. */
            size_t i = 0;
            for (; i < n; i++) {
                int64_t rv = 0;
                char id[CD_ID_MAX + 1];
                if (read_cas_reply(fo, &rv) != 0)
                    break;
                memcpy(id, chs[i]->id, sizeof(id));
                kafka_append(fo, chs[i]); /* may free it */
                if (rv > 0)
                    kafka_append_replenished(fo, id, rv);
            }
            /* After a failure the rest reach Redis through the resync; Kafka still gets
             * every one of them, in order. */
            for (; i < n; i++)
                kafka_append(fo, chs[i]);
            return;
        }
    }
    for (size_t i = 0; i < n; i++)
        kafka_append(fo, chs[i]);
}

/* A restarted (possibly emptied) Redis breaks our connection, but a fan-out thread with no
 * change to write would notice only at the next one, leaving readers without core data (found
 * by the core-data chaos test). A PING once a second finds it, and the reconnect resyncs. */
static void redis_ping(cd_fanout_t *fo)
{
    fo->next_ping_ms = now_ms() + 1000;
    redisReply *r = redisCommand(fo->rc, "PING");
    if (r == NULL || r->type == REDIS_REPLY_ERROR) {
        char why[160];
        snprintf(why, sizeof(why), "ping: %s", r != NULL ? r->str : fo->rc->errstr);
        if (r != NULL)
            freeReplyObject(r);
        redis_drop(fo, why);
        return;
    }
    freeReplyObject(r);
}

static void *fanout_main(void *arg)
{
    cd_fanout_t *fo = arg;
    int64_t stop_deadline = -1;

    for (;;) {
        if (atomic_load(&fo->stop)) {
            if (stop_deadline < 0)
                stop_deadline = now_ms() + fo->drain_ms;
            if ((fo->kcount == 0 && atomic_load(&fo->queue_len) == 0) || now_ms() >= stop_deadline)
                break;
        }
        if (fo->rc == NULL && now_ms() >= fo->next_connect_ms)
            redis_connect(fo);
        if (fo->rc != NULL && fo->need_resync)
            redis_resync(fo);
        if (fo->rc != NULL && now_ms() >= fo->next_ping_ms)
            redis_ping(fo);

        cd_change_t *batch = take_batch(fo, BATCH_MAX);
        if (batch != NULL)
            process_batch(fo, batch);
        kafka_progress(fo);

        size_t qlen = atomic_load(&fo->queue_len);
        bool busy = fo->kcount > 0 || qlen > 0;
        atomic_store(&fo->idle, !busy && fo->rc != NULL && !fo->need_resync);
        at_gauge_set(fo->st.kafka_backlog, (double)fo->kcount);
        at_gauge_set(fo->st.queue, (double)qlen);
        if (qlen > 0)
            continue;
        /* Sleep until a push, a delivery report, or a retry is due. */
        int timeout = 200;
        if (fo->kinflight > 0)
            timeout = 50; /* the DR pipe wakes us; this is a safety net */
        else if (fo->kcursor != NULL || fo->kfailed > 0)
            timeout = (int)AT_MAX(1, AT_MIN(200, fo->knext_produce_ms - now_ms()));
        if (fo->rc == NULL)
            timeout = (int)AT_MAX(1, AT_MIN(timeout, fo->next_connect_ms - now_ms()));
        struct pollfd pfd[2] = {{.fd = fo->efd, .events = POLLIN}, {.fd = fo->dr_pipe[0], .events = POLLIN}};
        if (poll(pfd, 2, timeout) > 0) {
            uint64_t v;
            char buf[64];
            if (pfd[0].revents & POLLIN)
                (void)!read(fo->efd, &v, sizeof(v));
            if (pfd[1].revents & POLLIN)
                while (read(fo->dr_pipe[0], buf, sizeof(buf)) > 0)
                    ;
        }
    }
    return NULL;
}

/* ---- life cycle ---- */

static void stats_init(cd_fanout_t *fo, at_metrics_t *m)
{
    cd_fanout_stats_t *s = &fo->st;
    s->redis_writes = at_metrics_counter(m, "adtrack_coredata_redis_writes_total", NULL,
                                         "Compare-and-set script runs (changes and resync writes).");
    s->redis_failures = at_metrics_counter(m, "adtrack_coredata_redis_failures_total", NULL,
                                           "Redis connections dropped after an error or timeout.");
    s->redis_resyncs = at_metrics_counter(m, "adtrack_coredata_redis_resyncs_total", NULL,
                                          "Full writes of the state from memory to Redis (every (re)connect).");
    s->published = at_metrics_counter(m, "adtrack_coredata_published_total", NULL,
                                      "Changes applied to Redis and published on adtrack:coredata.");
    s->replenished = at_metrics_counter(m, "adtrack_coredata_replenished_total", NULL,
                                        "Budget replenished notifications (exhausted flag cleared).");
    s->kafka_acked =
        at_metrics_counter(m, "adtrack_coredata_kafka_acked_total", NULL, "Changes acknowledged by the changes topic.");
    s->kafka_failures = at_metrics_counter(m, "adtrack_coredata_kafka_failures_total", NULL,
                                           "Change deliveries that failed (retried).");
    s->kafka_resyncs = at_metrics_counter(m, "adtrack_coredata_kafka_resyncs_total", NULL,
                                          "Full-state productions to the changes topic (start, backlog overflow).");
    s->kafka_dropped = at_metrics_counter(m, "adtrack_coredata_kafka_backlog_overflow_total", NULL,
                                          "Changes not queued for Kafka because the backlog was full (covered "
                                          "by the full-state production that follows).");
    s->redis_up = at_metrics_gauge(m, "adtrack_coredata_redis_up", NULL, "1 while connected to Redis.");
    s->kafka_backlog = at_metrics_gauge(m, "adtrack_coredata_kafka_backlog", NULL,
                                        "Changes not yet acknowledged by the changes topic.");
    s->queue = at_metrics_gauge(m, "adtrack_coredata_fanout_queue", NULL, "Changes waiting for the fan-out thread.");
}

cd_fanout_t *cd_fanout_new(const cd_conf_t *conf, cd_state_t *state, at_metrics_t *metrics, at_err_t *err)
{
    cd_fanout_t *fo = calloc(1, sizeof(*fo));
    char errstr[512], tmo[32], linger[32];
    if (fo == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    fo->conf = conf;
    fo->state = state;
    fo->dr_pipe[0] = fo->dr_pipe[1] = -1;
    fo->efd = -1;
    fo->backoff_ms = 100;
    fo->kbackoff_ms = 100;
    fo->kresync = conf->resync_changes_on_start;
    fo->need_resync = true;
    atomic_init(&fo->stop, false);
    atomic_init(&fo->floor, 0);
    atomic_init(&fo->redis_up, false);
    atomic_init(&fo->backlog_len, 0);
    atomic_init(&fo->queue_len, 0);
    atomic_init(&fo->idle, false);
    pthread_mutex_init(&fo->mu, NULL);
    stats_init(fo, metrics);

    fo->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fo->efd < 0 || pipe2(fo->dr_pipe, O_NONBLOCK | O_CLOEXEC) != 0) {
        at_err_set(err, AT_ERR_IO, "fan-out: eventfd/pipe: %s", strerror(errno));
        goto fail;
    }
    snprintf(tmo, sizeof(tmo), "%lld", (long long)conf->kafka_timeout_ms);
    snprintf(linger, sizeof(linger), "%lld", (long long)conf->linger_ms);
    /* Idempotence keeps each partition in produce order across librdkafka's own retries. */
    const char *defaults[] = {"linger.ms", linger, "message.timeout.ms", tmo, "enable.idempotence", "true", "acks",
                              "all",       NULL};
    rd_kafka_conf_t *kc = at_kafka_conf_new(conf->brokers, &conf->kafka, defaults, &conf->kafka_prop, err);
    if (kc == NULL)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(kc, on_delivery);
    rd_kafka_conf_set_error_cb(kc, on_kafka_error);
    rd_kafka_conf_set_opaque(kc, fo);
    fo->rk = rd_kafka_new(RD_KAFKA_PRODUCER, kc, errstr, sizeof(errstr));
    if (fo->rk == NULL) {
        rd_kafka_conf_destroy(kc);
        at_err_set(err, AT_ERR_INVALID, "kafka producer: %s", errstr);
        goto fail;
    }
    fo->rkt = rd_kafka_topic_new(fo->rk, conf->topic_changes, NULL);
    rd_kafka_queue_t *mainq = rd_kafka_queue_get_main(fo->rk);
    rd_kafka_queue_io_event_enable(mainq, fo->dr_pipe[1], "1", 1);
    rd_kafka_queue_destroy(mainq);
    return fo;
fail:
    cd_fanout_destroy(fo);
    return NULL;
}

int cd_fanout_probe_floor(cd_fanout_t *fo, at_err_t *err)
{
    redisContext *c = redis_open(fo->conf, AT_MIN(fo->conf->redis_timeout_ms, 1000), err);
    if (c == NULL)
        return -1;
    redisReply *r = redisCommand(c, "GET %s", VERSION_KEY);
    int rc = 0;
    if (r == NULL)
        rc = at_err_set(err, AT_ERR_UNAVAILABLE, "redis: %s", c->errstr);
    else if (r->type == REDIS_REPLY_STRING)
        raise_floor(fo, strtoll(r->str, NULL, 10));
    if (r != NULL)
        freeReplyObject(r);
    redisFree(c);
    return rc;
}

int cd_fanout_start(cd_fanout_t *fo, at_err_t *err)
{
    if (pthread_create(&fo->tid, NULL, fanout_main, fo) != 0)
        return at_err_set(err, AT_ERR_INTERNAL, "fan-out: cannot start thread");
    fo->started = true;
    return 0;
}

int64_t cd_fanout_floor(cd_fanout_t *fo)
{
    return atomic_load(&fo->floor);
}

bool cd_fanout_redis_auth_failed(cd_fanout_t *fo)
{
    return atomic_load(&fo->redis_auth_failed);
}

bool cd_fanout_redis_up(cd_fanout_t *fo)
{
    return atomic_load(&fo->redis_up);
}

size_t cd_fanout_kafka_backlog(cd_fanout_t *fo)
{
    return atomic_load(&fo->backlog_len);
}

size_t cd_fanout_queue_len(cd_fanout_t *fo)
{
    return atomic_load(&fo->queue_len);
}

bool cd_fanout_idle(cd_fanout_t *fo)
{
    return atomic_load(&fo->idle);
}

void cd_fanout_stop(cd_fanout_t *fo, int drain_ms)
{
    uint64_t one = 1;
    if (fo == NULL || !fo->started)
        return;
    fo->drain_ms = drain_ms;
    atomic_store(&fo->stop, true);
    (void)!write(fo->efd, &one, sizeof(one));
    pthread_join(fo->tid, NULL);
    fo->started = false;
}

void cd_fanout_destroy(cd_fanout_t *fo)
{
    if (fo == NULL)
        return;
    cd_fanout_stop(fo, 0);
    if (fo->rk != NULL) {
        /* Undelivered messages point into the backlog: purge them before freeing it. */
        rd_kafka_purge(fo->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(fo->rk, 0);
        if (fo->rkt != NULL)
            rd_kafka_topic_destroy(fo->rkt);
        rd_kafka_destroy(fo->rk);
    }
    for (cd_change_t *ch = fo->khead, *n; ch != NULL; ch = n) {
        n = ch->next;
        cd_change_free(ch);
    }
    for (cd_change_t *ch = fo->qhead, *n; ch != NULL; ch = n) {
        n = ch->next;
        cd_change_free(ch);
    }
    if (fo->rc != NULL)
        redisFree(fo->rc);
    if (fo->efd >= 0)
        close(fo->efd);
    if (fo->dr_pipe[0] >= 0) {
        close(fo->dr_pipe[0]);
        close(fo->dr_pipe[1]);
    }
    pthread_mutex_destroy(&fo->mu);
    free(fo);
}
