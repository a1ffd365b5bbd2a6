/*
 * enr_worker.c: the worker thread: consume a batch, validate and enrich it, charge budgets,
 * store it, add it to the hourly rollups (enr_rollup.h), produce the rejected events, commit
 * its offsets. See docs/ENRICHER.md.
 *
 * One batch in hand at a time (memory bounded by --batch-size). A batch is processed by
 * attempt(); any failure (Redis, sink, rejected topic, commit) pauses every assigned
 * partition, keeps polling the consumer (so the member stays in the group and rebalances
 * are served) for a backoff of 100 ms doubling to --retry-max-ms, and then runs the same
 * batch again. Every step is idempotent: the budget script answers "already charged" for
 * events it charged before, the sink skips ids it stored, so a retry stores and charges
 * nothing twice. Offsets (the batch's highest offset + 1 per partition) are committed
 * synchronously only after the sink and the rejected topic acknowledged.
 *
 * Rebalances (eager protocol) arrive inside rd_kafka_consumer_poll() on this thread. A
 * revoke abandons the batch in hand without committing: its partitions restart from the
 * committed offsets wherever they are assigned next, and the idempotent steps make the
 * redelivery harmless.
 *
 * @locality: the worker thread owns the consumer, the producer, its Redis connection and
 * the sink.
 */
#include "enr_server.h"

#include <stdlib.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "at_kafka.h"
#include "at_log.h"
#include "enr_attrib.h"
#include "enr_budget.h"
#include "enr_redis.h"
#include "enr_rollup.h"
#include "enr_validate.h"

#define BACKOFF_MIN_MS 100
#define STOP_GRACE_MS 15000
/* Stall watchdog: an unpaused worker with assigned partitions, a consumer lag > 0 in the
 * statistics, and no message for this long re-assigns its partitions (see stall_check()). */
#define STALL_MS 3000

typedef struct item_s {
    rd_kafka_message_t *msg;
    at_event_parsed_t pe;
    bool parsed;
    at_reject_t env_reason; /* envelope or duplicate: decided once per batch */
    char env_detail[ENR_DETAIL_MAX];
    char id[AT_UUID_STR_LEN + 1];
    enr_verdict_t v;        /* per attempt */
    int charge;             /* index into charges, or -1 */
    bson_t doc;
    bool has_doc, doc_is_event;
    bool has_line;          /* valid event rendered as its sink line: lines[line_off, +line_len) */
    size_t line_off, line_len;
    int attr;               /* click or conversion: index into attr, or -1 (per attempt) */
    at_str_t orig_cr, orig_p, orig_pl; /* a conversion's own, restored each attempt: attribution
                                        * points its fields at the click's */
} item_t;

/* An index over up to N keys (open addressing on a caller-computed hash); stores
 * positions into the caller's arrays. */
typedef struct imap_s {
    int32_t *slot;
    uint64_t *hash;
    size_t cap;
} imap_t;

typedef struct worker_s {
    enr_server_t *srv;
    at_log_gate_t redis_gate; /* connect failures: logged once per new message or 30 s */
    at_log_gate_t sink_gate;  /* sink probe failures, likewise */
    const enr_conf_t *conf;
    rd_kafka_t *rk;                 /* consumer */
    rd_kafka_t *prod;               /* rejected-topic producer */
    rd_kafka_topic_t *rej_topic;
    redisContext *rc;
    enr_budget_t budget;
    enr_ua_cache_t *ua_cache;       /* this thread's UA classifications */

    item_t *items;
    size_t nitems, cap;
    rd_kafka_message_t **overflow;  /* arrived while paused; processed next */
    size_t noverflow, overflow_cap;

    rd_kafka_topic_partition_list_t *assignment;
    bool paused, abandon;

    enr_fetch_t *fetch;
    enr_charge_t *charges;
    enr_attrib_op_t *attr;          /* clicks and conversions of the batch (enr_attrib.h) */
    size_t nattr;
    enr_stat_t *stats;
    size_t nfetch, ncharges, nstats;
    imap_t fetch_map, stat_map, dup_map;
    bson_t **events, **rejected;    /* pointer arrays for the sink */
    size_t nevents, nrejected;
    /* When the sink takes JSON lines (the file sink), valid events are rendered straight
     * into this buffer instead of being built as BSON (enr_doc_event_json). */
    bool use_lines;
    char *lbuf;
    size_t lcap, lused;
    enr_line_t *lines;

    long dr_pending, dr_failed;
    bool stored;                    /* the batch is in the sink and topic; only the commit is left */
    int64_t stop_deadline;
    int64_t last_progress_ms;       /* last message consumed, (re-)assignment or resume */
    int64_t lag;                    /* from the last statistics document; -1 = none since assign */
    enr_rollup_t *rollup;           /* stats_hourly (enr_rollup.h); NULL with --rollups off */
} worker_t;

/* ---- small helpers ---- */

static uint64_t hash_bytes(uint64_t h, const void *p, size_t len)
{
    const unsigned char *s = p;
    for (size_t i = 0; i < len; i++) {
        h ^= s[i];
        h *= UINT64_C(1099511628211);
    }
    return h;
}

static int imap_reset(imap_t *m, size_t want)
{
    size_t cap = 64;
    while (cap < want * 2)
        cap *= 2;
    if (cap != m->cap) {
        int32_t *ns = realloc(m->slot, cap * sizeof(*ns));
        uint64_t *nh = realloc(m->hash, cap * sizeof(*nh));
        if (ns != NULL)
            m->slot = ns;
        if (nh != NULL)
            m->hash = nh;
        if (ns == NULL || nh == NULL)
            return -1;
        m->cap = cap;
    }
    for (size_t i = 0; i < m->cap; i++)
        m->slot[i] = -1;
    return 0;
}

/* Finds the position stored for @p h for which @p eq(pos) holds, or returns the free slot
 * index encoded as -(slot + 1). */
static long imap_find(const imap_t *m, uint64_t h, bool (*eq)(const worker_t *, int32_t, const void *),
                      const worker_t *w, const void *key)
{
    for (size_t i = (size_t)h & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->slot[i] < 0)
            return -(long)i - 1;
        if (m->hash[i] == h && eq(w, m->slot[i], key))
            return m->slot[i];
    }
}

static void imap_put(imap_t *m, long freeslot, uint64_t h, int32_t pos)
{
    size_t i = (size_t)(-freeslot - 1);
    m->slot[i] = pos;
    m->hash[i] = h;
}

/* ---- Kafka callbacks ---- */

static void set_assigned(worker_t *w, const rd_kafka_topic_partition_list_t *parts)
{
    if (parts == NULL)
        at_gauge_set(w->srv->stats.consumer_lag, 0); /* nothing assigned, nothing owed */
    if (w->assignment != NULL)
        rd_kafka_topic_partition_list_destroy(w->assignment);
    w->assignment = parts != NULL ? rd_kafka_topic_partition_list_copy(parts) : NULL;
    w->last_progress_ms = enr_mono_ms();
    w->lag = -1;
    atomic_store(&w->srv->assigned, parts != NULL ? parts->cnt : 0);
}

static void drop_overflow(worker_t *w)
{
    for (size_t i = 0; i < w->noverflow; i++)
        rd_kafka_message_destroy(w->overflow[i]);
    w->noverflow = 0;
}

static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque)
{
    worker_t *w = opaque;
    char n[16];
    snprintf(n, sizeof(n), "%d", parts != NULL ? parts->cnt : 0);
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        /* librdkafka keeps a partition's pause flag across revoke and re-assign: a partition
         * paused by a failed batch, revoked, and handed back to this worker would otherwise
         * never be fetched again (seen in tests/e2e/failover.sh). So the flag is set
         * explicitly, either way, and BEFORE rd_kafka_assign(): in librdkafka 2.0.2 a
         * pause/resume takes a new per-partition op version and then queues its op, and
         * the main thread does the same for the FETCH_START of a new assignment (once the
         * committed offsets arrive, a millisecond later on a local broker). Issued after
         * assign(), our resume could take the later version but be queued first; the
         * FETCH_START is then served as "outdated" and dropped, and the partition stays
         * assigned, unpaused and never fetched (both failover.sh stalls). Before assign()
         * no FETCH_START exists yet; partitions this client never had are skipped. */
        if (w->paused)
            rd_kafka_pause_partitions(rk, parts);
        else
            rd_kafka_resume_partitions(rk, parts);
        rd_kafka_assign(rk, parts);
        set_assigned(w, parts);
        enr_rollup_forget(w->rollup); /* another worker may have moved these partitions' documents */
        atomic_store(&w->srv->kafka_ok, true);
        at_kafka_note_ok();
        at_log(AT_LOG_INFO, "enricher", "partitions assigned", "count", n, NULL);
    } else {
        /* Revoked (or an error): whatever is in hand is abandoned uncommitted; the next
         * owner starts from the committed offsets. */
        rd_kafka_assign(rk, NULL);
        set_assigned(w, NULL);
        w->abandon = true;
        drop_overflow(w);
        at_log(AT_LOG_INFO, "enricher", "partitions revoked", "count", n, NULL);
    }
}

static void on_kafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    worker_t *w = opaque;
    AT_UNUSED(rk);
    if (err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        atomic_store(&w->srv->kafka_ok, false);
    at_kafka_log_client_error("enricher", err, reason);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    worker_t *w = opaque;
    AT_UNUSED(rk);
    w->dr_pending--;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
        w->dr_failed++;
}

/* ---- consumer lag (from librdkafka's statistics, once per statistics.interval.ms) ---- */

/* Lag of one partition entry of the statistics: the end offset librdkafka last saw (the last
 * stable offset under read_committed, else the high watermark) minus the group's committed
 * offset; a partition with nothing committed yet counts from its low watermark (what
 * auto.offset.reset=earliest starts from), or not at all while that is unknown. */
static int64_t partition_lag(const bson_t *part)
{
    bson_iter_t it;
    int64_t hi = -1, ls = -1, lo = -1, committed = -1;
    if (!bson_iter_init(&it, part))
        return 0;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (!BSON_ITER_HOLDS_NUMBER(&it))
            continue;
        if (strcmp(k, "hi_offset") == 0)
            hi = bson_iter_as_int64(&it);
        else if (strcmp(k, "ls_offset") == 0)
            ls = bson_iter_as_int64(&it);
        else if (strcmp(k, "lo_offset") == 0)
            lo = bson_iter_as_int64(&it);
        else if (strcmp(k, "committed_offset") == 0)
            committed = bson_iter_as_int64(&it);
    }
    int64_t end = ls >= 0 ? ls : hi;
    int64_t from = committed >= 0 ? committed : lo;
    return end >= 0 && from >= 0 && end > from ? end - from : 0;
}

/* Sums the lag of the assigned partitions of the raw topic in one statistics document. */
static int64_t stats_lag(const worker_t *w, const bson_t *stats)
{
    bson_iter_t it, topic, parts;
    int64_t lag = 0;
    if (w->assignment == NULL || !bson_iter_init_find(&it, stats, "topics") || !BSON_ITER_HOLDS_DOCUMENT(&it) ||
        !bson_iter_recurse(&it, &topic))
        return 0;
    /* Topic names contain dots, so no bson_iter_find_descendant(). */
    while (bson_iter_next(&topic)) {
        if (strcmp(bson_iter_key(&topic), w->conf->topic_raw) != 0 || !BSON_ITER_HOLDS_DOCUMENT(&topic))
            continue;
        bson_iter_t t;
        if (!bson_iter_recurse(&topic, &t) || !bson_iter_find(&t, "partitions") || !BSON_ITER_HOLDS_DOCUMENT(&t) ||
            !bson_iter_recurse(&t, &parts))
            return 0;
        while (bson_iter_next(&parts)) {
            char *end;
            long pno = strtol(bson_iter_key(&parts), &end, 10);
            if (*end != '\0' || pno < 0 || !BSON_ITER_HOLDS_DOCUMENT(&parts) ||
                rd_kafka_topic_partition_list_find(w->assignment, w->conf->topic_raw, (int32_t)pno) == NULL)
                continue;
            uint32_t len;
            const uint8_t *data;
            bson_t part;
            bson_iter_document(&parts, &len, &data);
            if (bson_init_static(&part, data, len))
                lag += partition_lag(&part);
        }
        break;
    }
    return lag;
}

/* librdkafka's statistics callback: served by rd_kafka_consumer_poll() on the worker
 * thread (the main queue is forwarded to the consumer queue), so it may read the
 * assignment. Costs one JSON parse per interval, nothing per event. */
static int on_stats(rd_kafka_t *rk, char *json, size_t len, void *opaque)
{
    worker_t *w = opaque;
    AT_UNUSED(rk);
    bson_t *doc = bson_new_from_json((const uint8_t *)json, (ssize_t)len, NULL);
    if (doc != NULL) {
        w->lag = stats_lag(w, doc);
        at_gauge_set(w->srv->stats.consumer_lag, (double)w->lag);
        bson_destroy(doc);
    }
    return 0; /* librdkafka frees json */
}

/* ---- pause / resume ---- */

static void pause_all(worker_t *w)
{
    if (w->paused)
        return;
    w->paused = true;
    atomic_store(&w->srv->paused, true);
    if (w->assignment != NULL)
        rd_kafka_pause_partitions(w->rk, w->assignment);
}

static void resume_all(worker_t *w)
{
    if (!w->paused)
        return;
    w->paused = false;
    w->last_progress_ms = enr_mono_ms();
    atomic_store(&w->srv->paused, false);
    if (w->assignment != NULL)
        rd_kafka_resume_partitions(w->rk, w->assignment);
}

/* Stall watchdog, a safety net behind the ordering in on_rebalance(): librdkafka 2.0.2 can
 * leave an assigned, unpaused partition without a fetch position (a FETCH_START dropped as
 * outdated by a racing pause/resume, see on_rebalance(); or a committed-offset reply
 * dropped because the assignment changed meanwhile). The worker then idles while the lag
 * grows. Re-assigning the same partitions rebuilds the client's assignment state (committed
 * offsets fetched again, fetchers started again), so an idle worker that is owed messages
 * gets them.
 * Only called between batches (nothing in hand, so nothing uncommitted is lost: the
 * partitions restart from the committed offsets, as after any rebalance). */
static void stall_check(worker_t *w)
{
    if (w->paused || w->assignment == NULL || w->noverflow > 0 || w->lag <= 0 ||
        enr_mono_ms() - w->last_progress_ms < STALL_MS)
        return;
    char lag[32], n[16];
    snprintf(lag, sizeof(lag), "%lld", (long long)w->lag);
    snprintf(n, sizeof(n), "%d", w->assignment->cnt);
    at_log(AT_LOG_WARN, "enricher", "consumer stalled (assigned, not paused, lag > 0, nothing fetched); re-assigning",
           "lag", lag, "partitions", n, NULL);
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_copy(w->assignment);
    for (int i = 0; i < parts->cnt; i++)
        parts->elems[i].offset = RD_KAFKA_OFFSET_INVALID; /* from the committed offsets */
    rd_kafka_assign(w->rk, NULL);
    rd_kafka_resume_partitions(w->rk, parts); /* before assign(): see on_rebalance() */
    rd_kafka_resp_err_t e = rd_kafka_assign(w->rk, parts);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        at_log(AT_LOG_WARN, "enricher", "re-assign after stall failed", "error", rd_kafka_err2str(e), NULL);
    rd_kafka_topic_partition_list_destroy(parts);
    w->last_progress_ms = enr_mono_ms();
    w->lag = -1;
}

/* ---- batch state ---- */

static void item_reset_attempt(item_t *it)
{
    if (it->has_doc)
        bson_destroy(&it->doc);
    it->has_doc = false;
    it->doc_is_event = false;
    it->has_line = false;
    it->charge = -1;
}

static void release_batch(worker_t *w)
{
    for (size_t i = 0; i < w->nitems; i++) {
        item_t *it = &w->items[i];
        item_reset_attempt(it);
        if (it->parsed)
            at_event_parsed_free(&it->pe);
        rd_kafka_message_destroy(it->msg);
    }
    w->nitems = 0;
    w->stored = false;
}

static int push_msg(worker_t *w, rd_kafka_message_t *m)
{
    if (w->nitems == w->cap) {
        size_t nc = w->cap ? w->cap * 2 : 256;
        item_t *ni = realloc(w->items, nc * sizeof(*ni));
        if (ni == NULL)
            return -1;
        w->items = ni;
        w->cap = nc;
    }
    item_t *it = &w->items[w->nitems++];
    memset(it, 0, sizeof(*it));
    it->msg = m;
    it->charge = -1;
    return 0;
}

static void push_overflow(worker_t *w, rd_kafka_message_t *m)
{
    if (w->noverflow == w->overflow_cap) {
        size_t nc = w->overflow_cap ? w->overflow_cap * 2 : 64;
        rd_kafka_message_t **no = realloc(w->overflow, nc * sizeof(*no));
        if (no == NULL) {
            /* Cannot hold it: it is not committed, so it comes back after a restart. */
            rd_kafka_message_destroy(m);
            return;
        }
        w->overflow = no;
        w->overflow_cap = nc;
    }
    w->overflow[w->noverflow++] = m;
}

/* Polls once; returns a consumed message, or NULL (nothing, or a consumer event handled). */
static rd_kafka_message_t *poll_one(worker_t *w, int timeout_ms)
{
    rd_kafka_message_t *m = rd_kafka_consumer_poll(w->rk, timeout_ms);
    if (m == NULL)
        return NULL;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            at_log(AT_LOG_WARN, "enricher", "consumer error", "error", rd_kafka_message_errstr(m), NULL);
        rd_kafka_message_destroy(m);
        return NULL;
    }
    atomic_store(&w->srv->kafka_ok, true);
    at_kafka_note_ok();
    w->last_progress_ms = enr_mono_ms();
    return m;
}

/* Fills the batch: what arrived while paused first, then up to --batch-size messages
 * within --batch-max-ms of the first one. Returns the count (0 when stopping idle). */
static size_t collect(worker_t *w)
{
    size_t max = (size_t)w->conf->batch_size;
    int64_t deadline = 0;

    w->abandon = false;
    size_t take = AT_MIN(w->noverflow, max);
    for (size_t i = 0; i < take; i++)
        push_msg(w, w->overflow[i]);
    if (take > 0) { /* w->overflow is NULL until the first pause kept messages (UBSan) */
        memmove(w->overflow, w->overflow + take, (w->noverflow - take) * sizeof(*w->overflow));
        w->noverflow -= take;
    }
    if (w->nitems > 0)
        deadline = enr_mono_ms() + w->conf->batch_max_ms;

    while (w->nitems < max && !atomic_load(&w->srv->stopping)) {
        int timeout = 100;
        if (w->nitems > 0) {
            int64_t left = deadline - enr_mono_ms();
            if (left <= 0)
                break;
            timeout = (int)AT_MIN(left, 100);
        }
        rd_kafka_message_t *m = poll_one(w, timeout);
        if (w->abandon) {
            release_batch(w);
            w->abandon = false;
            deadline = 0;
        }
        if (m == NULL) {
            if (w->nitems == 0)
                stall_check(w);
            continue;
        }
        if (push_msg(w, m) != 0) {
            push_overflow(w, m);
            break;
        }
        if (w->nitems == 1)
            deadline = enr_mono_ms() + w->conf->batch_max_ms;
    }
    return w->nitems;
}

/* ---- once per batch: envelope and duplicates ---- */

static bool dup_eq(const worker_t *w, int32_t pos, const void *key)
{
    return memcmp(&w->items[pos].pe.ev.id, key, sizeof(at_uuid_t)) == 0;
}

static void prepare(worker_t *w)
{
    at_err_t err;
    imap_reset(&w->dup_map, w->nitems);
    for (size_t i = 0; i < w->nitems; i++) {
        item_t *it = &w->items[i];
        const char *payload = it->msg->payload != NULL ? it->msg->payload : "";
        /* In place: the message lives as long as the batch (release_batch()). */
        if (at_event_parse_json_view(payload, it->msg->len, &it->pe, &err) != 0) {
            it->env_reason = enr_parse_error_reason(&err);
            snprintf(it->env_detail, sizeof(it->env_detail), "%s", err.msg);
            continue;
        }
        it->parsed = true;
        it->orig_cr = it->pe.ev.cr;
        it->orig_p = it->pe.ev.p;
        it->orig_pl = it->pe.ev.pl;
        at_uuid_format(&it->pe.ev.id, it->id);
        at_reject_t r = at_event_check(&it->pe.ev, &err);
        if (r != AT_REJ_NONE) {
            it->env_reason = r;
            snprintf(it->env_detail, sizeof(it->env_detail), "%s", err.msg);
            continue;
        }
        uint64_t h = hash_bytes(UINT64_C(1469598103934665603), &it->pe.ev.id, sizeof(at_uuid_t));
        long pos = imap_find(&w->dup_map, h, dup_eq, w, &it->pe.ev.id);
        if (pos >= 0) {
            it->env_reason = AT_REJ_DUPLICATE;
            snprintf(it->env_detail, sizeof(it->env_detail), "id: %s appeared earlier in the same batch", it->id);
            continue;
        }
        imap_put(&w->dup_map, pos, h, (int32_t)i);
    }
}

/* ---- per attempt ---- */

static bool fetch_eq(const worker_t *w, int32_t pos, const void *key)
{
    const enr_fetch_t *a = &w->fetch[pos], *b = key;
    return a->kind == b->kind && a->idlen == b->idlen && memcmp(a->id, b->id, a->idlen) == 0;
}

/* Counts into *@p hits / *@p misses (added to the shared counters once per batch: an atomic
 * add per lookup on a cache line every worker thread writes). */
static void need(worker_t *w, enr_kind_t kind, at_str_t id, int64_t now, uint64_t *hits, uint64_t *misses)
{
    const enr_entry_t *e = enr_cache_get(w->srv->cache, kind, id.p, id.len);
    if (enr_cache_fresh(w->srv->cache, e, now)) {
        (*hits)++;
        return;
    }
    (*misses)++;
    enr_fetch_t f = {kind, id.p, id.len};
    uint64_t h = hash_bytes(UINT64_C(1469598103934665603) ^ (uint64_t)kind, id.p, id.len);
    long pos = imap_find(&w->fetch_map, h, fetch_eq, w, &f);
    if (pos >= 0)
        return;
    imap_put(&w->fetch_map, pos, h, (int32_t)w->nfetch);
    w->fetch[w->nfetch++] = f;
}

typedef struct stat_key_s {
    at_str_t c;
    int64_t minute;
    const char *field;
} stat_key_t;

static bool stat_eq(const worker_t *w, int32_t pos, const void *key)
{
    const enr_stat_t *a = &w->stats[pos];
    const stat_key_t *b = key;
    return a->field == b->field && a->minute_ms == b->minute && a->clen == b->c.len && memcmp(a->c, b->c.p, a->clen) == 0;
}

static void stat_add(worker_t *w, at_str_t c, int64_t ts_ms, const char *field)
{
    int64_t minute = ts_ms - ((ts_ms % 60000) + 60000) % 60000;
    stat_key_t k = {c, minute, field};
    uint64_t h = hash_bytes(hash_bytes((uint64_t)(uintptr_t)field, &minute, sizeof(minute)), c.p, c.len);
    long pos = imap_find(&w->stat_map, h, stat_eq, w, &k);
    if (pos >= 0) {
        w->stats[pos].n++;
        return;
    }
    imap_put(&w->stat_map, pos, h, (int32_t)w->nstats);
    w->stats[w->nstats++] = (enr_stat_t){c.p, c.len, minute, field, 1};
}

static int ensure_redis(worker_t *w, at_err_t *err)
{
    if (w->rc != NULL && w->rc->err == 0)
        return 0;
    if (w->rc != NULL) {
        redisFree(w->rc);
        w->rc = NULL;
    }
    w->rc = enr_redis_connect(w->conf->redis, w->conf->redis_password, w->conf->redis_timeout_ms, err);
    atomic_store(&w->srv->redis_auth_failed, w->rc == NULL && err->code == AT_ERR_AUTH);
    if (w->rc == NULL)
        return -1;
    at_counter_add(w->srv->stats.redis_commands, 1);
    if (enr_budget_load(&w->budget, w->rc, err) != 0) {
        redisFree(w->rc);
        w->rc = NULL;
        return -1;
    }
    return 0;
}

static void redis_failed(worker_t *w)
{
    atomic_store(&w->srv->redis_ok, false);
    if (w->rc != NULL && w->rc->err != 0) {
        redisFree(w->rc);
        w->rc = NULL;
    }
}

/* Events of a known campaign count in its real-time counters; others (unknown campaign,
 * malformed, duplicates) do not, so arbitrary ids cannot create counter keys. */
static bool counts_for_campaign(at_reject_t r)
{
    return r == AT_REJ_NONE || at_reject_keeps_campaign(r);
}

/*
 * 1b. Attribution (enr_attrib.h): valid clicks record themselves and valid conversions look
 * their click and order up, in batch order, in one script call. A click or conversion is
 * judged here by the same rules as in step 2, so only a click that will be stored is
 * recorded (one later refused by the budget script still is: docs/REPORTS.md).
 */
static int attribute(worker_t *w, at_err_t *err)
{
    enr_server_t *srv = w->srv;
    w->nattr = 0;
    enr_cache_rdlock(srv->cache);
    for (size_t i = 0; i < w->nitems; i++) {
        item_t *it = &w->items[i];
        it->attr = -1;
        if (it->env_reason != AT_REJ_NONE)
            continue;
        at_event_t *ev = &it->pe.ev;
        if (ev->type != AT_EV_CLICK && ev->type != AT_EV_CONV)
            continue;
        if (ev->type == AT_EV_CONV) {
            ev->cr = it->orig_cr;
            ev->p = it->orig_p;
            ev->pl = it->orig_pl;
        }
        const enr_entry_t *ce = enr_cache_get(srv->cache, ENR_CAMPAIGN, ev->c.p, ev->c.len);
        const enr_entry_t *pe = ev->p.len > 0 ? enr_cache_get(srv->cache, ENR_PUBLISHER, ev->p.p, ev->p.len) : NULL;
        enr_ua_info_t ua;
        enr_verdict_t v;
        enr_ua_cache_classify(w->ua_cache, ev->ua.p, ev->ua.len, &ua);
        if (enr_validate(ev, ce, pe, &ua, &v) != AT_REJ_NONE)
            continue;
        const enr_campaign_t *cp = ce->u.campaign;
        enr_attrib_op_t *op = &w->attr[w->nattr];
        memset(op, 0, sizeof(*op));
        op->is_conv = ev->type == AT_EV_CONV;
        op->id = ev->id;
        op->ts_ms = ev->ts_ms;
        op->c = ev->c;
        op->ttl_s = (int64_t)cp->lookback_days * 86400 + 86400; /* a day for late processing */
        if (op->is_conv) {
            op->has_click = at_clid_split(ev->clid, &op->click_id, NULL);
            snprintf(op->advertiser, sizeof(op->advertiser), "%s", cp->advertiser);
            op->order = ev->order;
            op->lookback_ms = (int64_t)cp->lookback_days * 86400000;
        } else {
            op->cr = ev->cr;
            op->p = ev->p;
            op->pl = ev->pl;
        }
        it->attr = (int)w->nattr++;
    }
    enr_cache_unlock(srv->cache);
    if (w->nattr == 0)
        return 0;
    if (ensure_redis(w, err) != 0)
        return -1;
    uint64_t ncmds = 0;
    int rc = enr_attrib_run(w->rc, w->attr, w->nattr, &ncmds, err);
    at_counter_add(srv->stats.redis_commands, ncmds);
    if (rc != 0)
        return -1;
    atomic_store(&srv->redis_ok, true);
    return 0;
}

static const char *type_field(at_event_type_t t)
{
    static const char *const f[] = {"events", "imp", "view", "click", "conv"};
    return (unsigned)t < AT_ARRAY_LEN(f) ? f[t] : "events";
}

static int validate_and_charge(worker_t *w, at_err_t *err)
{
    enr_server_t *srv = w->srv;
    int64_t now = enr_mono_ms();
    uint64_t ncmds = 0, hits = 0, misses = 0;

    /* 1. Cache misses, fetched together in one pipelined round trip. */
    w->nfetch = 0;
    imap_reset(&w->fetch_map, w->nitems * 2 + 1);
    enr_cache_rdlock(srv->cache);
    for (size_t i = 0; i < w->nitems; i++) {
        item_t *it = &w->items[i];
        if (it->env_reason != AT_REJ_NONE)
            continue;
        need(w, ENR_CAMPAIGN, it->pe.ev.c, now, &hits, &misses);
        if (it->pe.ev.p.len > 0)
            need(w, ENR_PUBLISHER, it->pe.ev.p, now, &hits, &misses);
    }
    enr_cache_unlock(srv->cache);
    at_counter_add(srv->stats.cache_hits, hits);
    at_counter_add(srv->stats.cache_misses, misses);
    if (w->nfetch > 0) {
        if (ensure_redis(w, err) != 0)
            return -1;
        int rc = enr_redis_fetch(w->rc, srv->cache, w->fetch, w->nfetch, now, &ncmds, err);
        at_counter_add(srv->stats.redis_commands, ncmds);
        if (rc != 0)
            return -1;
        atomic_store(&srv->redis_ok, true);
    }

    if (attribute(w, err) != 0)
        return -1;

    /* 2. Validation and the enriched documents, under the cache read lock (no I/O). */
    w->ncharges = 0;
    w->nstats = 0;
    w->lused = 0;
    imap_reset(&w->stat_map, w->nitems * 3 + 1); /* at most 3 fields per event */
    enr_cache_rdlock(srv->cache);
    for (size_t i = 0; i < w->nitems; i++) {
        item_t *it = &w->items[i];
        item_reset_attempt(it);
        memset(&it->v, 0, sizeof(it->v));
        if (it->env_reason != AT_REJ_NONE) {
            it->v.reason = it->env_reason;
            snprintf(it->v.detail, sizeof(it->v.detail), "%s", it->env_detail);
            continue;
        }
        const at_event_t *ev = &it->pe.ev;
        const enr_entry_t *ce = enr_cache_get(srv->cache, ENR_CAMPAIGN, ev->c.p, ev->c.len);
        const enr_entry_t *pe = ev->p.len > 0 ? enr_cache_get(srv->cache, ENR_PUBLISHER, ev->p.p, ev->p.len) : NULL;
        enr_ua_info_t ua;
        enr_ua_cache_classify(w->ua_cache, ev->ua.p, ev->ua.len, &ua);
        enr_validate(ev, ce, pe, &ua, &it->v);
        if (it->v.reason == AT_REJ_NONE && ev->type == AT_EV_CONV) {
            if (it->attr < 0) {
                /* Core data changed between step 1b and here: judge the batch again. */
                enr_cache_unlock(srv->cache);
                return at_err_set(err, AT_ERR_UNAVAILABLE, "event %s: its campaign changed during the batch", it->id);
            }
            enr_conversion_apply(&it->pe.ev, ce->u.campaign, &w->attr[it->attr], &it->v);
            pe = NULL; /* a conversion's publisher is the click's: no publisher_name */
        }
        if (it->v.reason == AT_REJ_NONE) {
            if (w->use_lines) {
                size_t off = w->lused;
                if (enr_doc_event_json(&w->lbuf, &w->lcap, &w->lused, ev, it->pe.plain, ce->u.campaign,
                                       pe != NULL ? pe->u.publisher : NULL, &it->v) !=
                    0) {
                    enr_cache_unlock(srv->cache);
                    return at_err_set(err, AT_ERR_NOMEM, "event %s: cannot write its document as JSON", it->id);
                }
                it->has_line = true;
                it->line_off = off;
                it->line_len = w->lused - off;
            } else {
                bson_init(&it->doc);
                enr_doc_event(&it->doc, ev, ce->u.campaign, pe != NULL ? pe->u.publisher : NULL, &it->v);
                it->has_doc = it->doc_is_event = true;
            }
            if (it->v.chargeable) {
                enr_charge_t *c = &w->charges[w->ncharges];
                c->c = ev->c.p;
                c->clen = ev->c.len;
                memcpy(c->id, it->id, sizeof(c->id));
                c->price_micros = it->v.price_micros;
                c->budget_micros = it->v.budget_micros;
                c->ts_ms = ev->ts_ms;
                c->type = ev->type;
                it->charge = (int)w->ncharges++;
                continue; /* counted by the script, which knows the verdict */
            }
            stat_add(w, ev->c, ev->ts_ms, "events");
            stat_add(w, ev->c, ev->ts_ms, type_field(ev->type));
        } else if (counts_for_campaign(it->v.reason)) {
            stat_add(w, ev->c, ev->ts_ms, "events");
            stat_add(w, ev->c, ev->ts_ms, "rejected");
            stat_add(w, ev->c, ev->ts_ms, enr_budget_rejected_field(it->v.reason));
        }
    }
    enr_cache_unlock(srv->cache);

    /* 3. Budgets and counters: one script call for the whole batch. */
    if (w->ncharges > 0 || w->nstats > 0) {
        if (ensure_redis(w, err) != 0)
            return -1;
        int published = 0;
        ncmds = 0;
        int rc = enr_budget_run(&w->budget, w->rc, w->charges, w->ncharges, w->stats, w->nstats, &published, &ncmds,
                                err);
        at_counter_add(srv->stats.redis_commands, ncmds);
        if (rc != 0)
            return -1;
        atomic_store(&srv->redis_ok, true);
        if (published > 0) {
            at_counter_add(srv->stats.exhausted_published, (uint64_t)published);
            at_log(AT_LOG_INFO, "enricher", "campaign budget exhausted; change published", NULL);
        }
        for (size_t i = 0; i < w->nitems; i++) {
            item_t *it = &w->items[i];
            if (it->charge < 0 || w->charges[it->charge].verdict != ENR_EXHAUSTED)
                continue;
            item_reset_attempt(it);
            it->v.reason = AT_REJ_BUDGET_EXHAUSTED;
            snprintf(it->v.detail, sizeof(it->v.detail), "c: the budget of campaign '%.*s' is exhausted",
                     (int)it->pe.ev.c.len, it->pe.ev.c.p);
        }
    }
    return 0;
}

static void build_rejected(worker_t *w)
{
    w->nevents = w->nrejected = 0;
    for (size_t i = 0; i < w->nitems; i++) {
        item_t *it = &w->items[i];
        if (it->v.reason == AT_REJ_NONE) {
            if (it->has_line)
                w->lines[w->nevents++] = (enr_line_t){it->id, AT_UUID_STR_LEN, w->lbuf + it->line_off, it->line_len};
            else
                w->events[w->nevents++] = &it->doc;
            continue;
        }
        char rid[128];
        if (it->parsed)
            snprintf(rid, sizeof(rid), "%s:%s", it->id, at_reject_str(it->v.reason));
        else
            snprintf(rid, sizeof(rid), "raw:%s:%d:%lld", rd_kafka_topic_name(it->msg->rkt), (int)it->msg->partition,
                     (long long)it->msg->offset);
        item_reset_attempt(it);
        bson_init(&it->doc);
        it->has_doc = true;
        const char *raw = it->parsed ? NULL : it->msg->payload;
        size_t rawlen = it->parsed ? 0 : it->msg->len;
        if (enr_doc_rejected(&it->doc, rid, it->parsed ? &it->pe.ev : NULL, it->v.reason, it->v.detail, raw, rawlen) !=
            0) {
            /* Cannot happen for text at_event_rejected_to_json repairs; keep the reason anyway. */
            bson_reinit(&it->doc);
            BSON_APPEND_UTF8(&it->doc, "_id", rid);
            BSON_APPEND_UTF8(&it->doc, "reason", at_reject_str(it->v.reason));
            BSON_APPEND_UTF8(&it->doc, "detail", "unserialisable event");
        }
        w->rejected[w->nrejected++] = &it->doc;
    }
}

static int produce_rejected(worker_t *w, at_err_t *err)
{
    if (w->nrejected == 0)
        return 0;
    w->dr_failed = 0;
    w->dr_pending = 0;
    for (size_t i = 0; i < w->nitems; i++) {
        item_t *it = &w->items[i];
        if (it->v.reason == AT_REJ_NONE)
            continue;
        size_t len;
        char *json = bson_as_relaxed_extended_json(&it->doc, &len);
        if (json == NULL)
            continue;
        const char *key = it->parsed ? it->pe.ev.c.p : NULL;
        size_t keylen = it->parsed ? it->pe.ev.c.len : 0;
        rd_kafka_resp_err_t e;
        for (;;) {
            e = rd_kafka_producev(w->prod, RD_KAFKA_V_RKT(w->rej_topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                  RD_KAFKA_V_KEY(key, keylen), RD_KAFKA_V_VALUE(json, len), RD_KAFKA_V_END);
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(w->prod, 100);
        }
        bson_free(json);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            w->dr_failed++;
            break;
        }
        w->dr_pending++;
    }
    rd_kafka_resp_err_t fe = rd_kafka_flush(w->prod, (int)w->conf->kafka_timeout_ms + 1000);
    if (fe != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* Nothing may linger into the next attempt: purge, and collect the reports. */
        rd_kafka_purge(w->prod, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_flush(w->prod, 1000);
    }
    if (w->dr_failed > 0 || fe != RD_KAFKA_RESP_ERR_NO_ERROR)
        return at_err_set(err, AT_ERR_UNAVAILABLE, "rejected topic: %ld of %zu messages not acknowledged",
                          w->dr_failed > 0 ? w->dr_failed : w->dr_pending, w->nrejected);
    return 0;
}

/* Commits the batch's offsets: per partition, the highest offset + 1. */
static int commit(worker_t *w, at_err_t *err, bool *fatal_for_batch)
{
    rd_kafka_topic_partition_list_t *offs = rd_kafka_topic_partition_list_new(8);
    *fatal_for_batch = false;
    for (size_t i = 0; i < w->nitems; i++) {
        const rd_kafka_message_t *m = w->items[i].msg;
        const char *topic = rd_kafka_topic_name(m->rkt);
        rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_find(offs, topic, m->partition);
        if (p == NULL)
            p = rd_kafka_topic_partition_list_add(offs, topic, m->partition);
        if (m->offset + 1 > p->offset)
            p->offset = m->offset + 1;
    }
    rd_kafka_resp_err_t e = rd_kafka_commit(w->rk, offs, 0);
    rd_kafka_topic_partition_list_destroy(offs);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR)
        return 0;
    at_counter_add(w->srv->stats.commit_failures, 1);
    if (e == RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS || e == RD_KAFKA_RESP_ERR_ILLEGAL_GENERATION ||
        e == RD_KAFKA_RESP_ERR_UNKNOWN_MEMBER_ID || e == RD_KAFKA_RESP_ERR__STATE)
        *fatal_for_batch = true; /* the partitions are moving: the next owner redoes it */
    return at_err_set(err, AT_ERR_UNAVAILABLE, "offset commit: %s", rd_kafka_err2str(e));
}

/* ---- hourly rollups (enr_rollup.h): after the sink, before the rejected topic ---- */

/* Adds every message of the batch to the rollups and writes them through the offset gate.
 * The advertiser is read from the cache under the read lock, which is released before any
 * I/O (enr_rollup_add() copies what it keeps). */
static int rollup_batch(worker_t *w, at_err_t *err)
{
    enr_rollup_begin(w->rollup);
    enr_cache_rdlock(w->srv->cache);
    for (size_t i = 0; i < w->nitems; i++) {
        const item_t *it = &w->items[i];
        enr_rollup_event_t ev = {.k = it->msg->partition, .offset = it->msg->offset, .has_ts = it->parsed,
                                 .reason = it->v.reason};
        if (it->parsed) {
            const at_event_t *e = &it->pe.ev;
            ev.ts_ms = e->ts_ms;
            ev.type = e->type;
            ev.c = e->c;
            ev.cr = e->cr;
            ev.p = e->p;
            ev.pl = e->pl;
            ev.uid = e->uid;
            const enr_entry_t *ce = enr_cache_get(w->srv->cache, ENR_CAMPAIGN, e->c.p, e->c.len);
            if (ce != NULL && ce->u.campaign != NULL && ce->u.campaign->advertiser != NULL)
                ev.adv = (at_str_t){ce->u.campaign->advertiser, strlen(ce->u.campaign->advertiser)};
        }
        if (it->v.reason == AT_REJ_NONE) {
            ev.price_micros = it->v.price_micros;
            /* Attribution adds payout_micros to conversions only; other events are not searched. */
            if (it->pe.ev.type == AT_EV_CONV)
                ev.payout_micros = it->has_line ? enr_rollup_payout_line(w->lbuf + it->line_off, it->line_len)
                                                : enr_rollup_payout_bson(&it->doc);
        }
        if (enr_rollup_add(w->rollup, &ev, err) != 0) {
            enr_cache_unlock(w->srv->cache);
            return -1;
        }
    }
    enr_cache_unlock(w->srv->cache);
    enr_rollup_result_t res;
    int rc = enr_rollup_commit(w->rollup, enr_wall_ms(), &res, err);
    at_counter_add(w->srv->stats.rollup_documents, res.documents);
    at_counter_add(w->srv->stats.rollup_gate_skips, res.gate_skips);
    at_counter_add(w->srv->stats.rollup_lost_writes, res.lost_writes);
    return rc;
}

static int attempt(worker_t *w, int *stage, bool *drop, at_err_t *err)
{
    enr_sink_result_t res = {0};
    *drop = false;
    if (!w->stored) {
        *stage = ENR_STAGE_REDIS;
        if (validate_and_charge(w, err) != 0) {
            redis_failed(w);
            return -1;
        }
        build_rejected(w);
        *stage = ENR_STAGE_SINK;
        int src = w->use_lines ? enr_sink_write_lines(w->srv->sink, w->lines, w->nevents,
                                                      (const bson_t *const *)w->rejected, w->nrejected, &res, err)
                               : enr_sink_write(w->srv->sink, (const bson_t *const *)w->events, w->nevents,
                                                (const bson_t *const *)w->rejected, w->nrejected, &res, err);
        if (src != 0) {
            atomic_store(&w->srv->sink_ok, false);
            atomic_store(&w->srv->sink_auth_failed, err->code == AT_ERR_AUTH);
            return -1;
        }
        atomic_store(&w->srv->sink_ok, true);
        atomic_store(&w->srv->sink_auth_failed, false);
        at_counter_add(w->srv->stats.sink_inserted, res.inserted);
        at_counter_add(w->srv->stats.sink_duplicates, res.duplicates);
        *stage = ENR_STAGE_ROLLUP;
        if (w->rollup != NULL && rollup_batch(w, err) != 0)
            return -1;
        *stage = ENR_STAGE_KAFKA;
        if (produce_rejected(w, err) != 0)
            return -1;
        w->stored = true;
    }
    *stage = ENR_STAGE_COMMIT;
    if (commit(w, err, drop) != 0)
        return -1;
    return 0;
}

/* Adds the batch's outcomes to the shared counters: summed here first, so each counter gets
 * one atomic add per batch, not per event. */
static void count_outcomes(worker_t *w)
{
    enr_stats_t *st = &w->srv->stats;
    uint64_t valid = 0, rejected[AT_REJ__COUNT] = {0}, charges[3] = {0}, spend = 0;
    for (size_t i = 0; i < w->nitems; i++) {
        item_t *it = &w->items[i];
        if (it->v.reason == AT_REJ_NONE)
            valid++;
        else if ((unsigned)it->v.reason < AT_REJ__COUNT)
            rejected[it->v.reason]++;
        if (it->charge >= 0) {
            const enr_charge_t *c = &w->charges[it->charge];
            charges[c->verdict]++;
            if (c->verdict == ENR_CHARGED)
                spend += (uint64_t)c->price_micros;
        }
    }
    if (valid > 0)
        at_counter_add(st->valid, valid);
    for (int r = 1; r < AT_REJ__COUNT; r++)
        if (rejected[r] > 0 && st->rejected[r] != NULL)
            at_counter_add(st->rejected[r], rejected[r]);
    for (int v = 0; v < 3; v++)
        if (charges[v] > 0)
            at_counter_add(st->charges[v], charges[v]);
    if (spend > 0)
        at_counter_add(st->spend_micros, spend);
    at_counter_add(st->batches, 1);
}

/* Waits @p ms while serving the consumer (heartbeats, rebalances). Messages that still
 * arrive (fetched before the pause took effect) are kept for the next batch. */
static void wait_serving(worker_t *w, int64_t ms)
{
    int64_t until = enr_mono_ms() + ms;
    for (;;) {
        int64_t left = until - enr_mono_ms();
        if (left <= 0 || w->abandon)
            return;
        rd_kafka_message_t *m = poll_one(w, (int)AT_MIN(left, 100));
        if (m != NULL)
            push_overflow(w, m);
    }
}

static void process_batch(worker_t *w)
{
    int64_t start = enr_mono_ms();
    int64_t backoff = BACKOFF_MIN_MS;
    at_err_t err;
    bool done = false;

    prepare(w);
    for (;;) {
        int stage = ENR_STAGE_REDIS;
        bool drop = false;
        at_err_clear(&err);
        if (attempt(w, &stage, &drop, &err) == 0) {
            done = true;
            break;
        }
        if (drop) {
            at_log(AT_LOG_INFO, "enricher", "batch left to the partitions' next owner", "error", err.msg, NULL);
            break;
        }
        at_counter_add(w->srv->stats.retries[stage], 1);
        char bo[32];
        snprintf(bo, sizeof(bo), "%lld", (long long)backoff);
        /* Refused credentials or certificates are configuration errors: error level, so
         * they are not taken for an outage that retrying will ride out. */
        at_log(err.code == AT_ERR_AUTH ? AT_LOG_ERROR : AT_LOG_WARN, "enricher",
               err.code == AT_ERR_AUTH ? "batch failed: a dependency refused our credentials or certificate; partitions "
                                         "paused, retrying"
                                       : "batch failed; partitions paused, retrying",
               "error", err.msg, "backoff_ms", bo, NULL);
        pause_all(w);
        if (atomic_load(&w->srv->stopping)) {
            if (w->stop_deadline == 0)
                w->stop_deadline = enr_mono_ms() + STOP_GRACE_MS;
            if (enr_mono_ms() >= w->stop_deadline) {
                at_log(AT_LOG_WARN, "enricher", "shutting down with a batch not stored; it will be redelivered", NULL);
                break;
            }
        }
        wait_serving(w, backoff);
        if (w->abandon) {
            at_log(AT_LOG_INFO, "enricher", "partitions revoked while retrying; batch abandoned uncommitted", NULL);
            break;
        }
        backoff = AT_MIN(backoff * 2, w->conf->retry_max_ms);
    }
    if (done) {
        count_outcomes(w);
        at_histogram_observe(w->srv->stats.batch_seconds, (double)(enr_mono_ms() - start) / 1000.0);
    }
    resume_all(w);
    release_batch(w);
    w->abandon = false;
}

/* ---- set-up ---- */

static int worker_init(worker_t *w, enr_server_t *srv, at_err_t *err)
{
    const enr_conf_t *conf = srv->conf;
    char errstr[512], tmo[32];

    w->srv = srv;
    w->conf = conf;
    w->budget.replay_window_s = conf->replay_window_days * 86400;
    size_t bs = (size_t)conf->batch_size;
    w->fetch = calloc(bs * 2 + 1, sizeof(*w->fetch));
    w->charges = calloc(bs + 1, sizeof(*w->charges));
    w->attr = calloc(bs + 1, sizeof(*w->attr));
    w->stats = calloc(bs * 3 + 1, sizeof(*w->stats)); /* events + rejected + rejected:<reason> */
    w->events = calloc(bs + 1, sizeof(*w->events));
    w->lines = calloc(bs + 1, sizeof(*w->lines));
    w->use_lines = enr_sink_takes_lines(srv->sink);
    w->rejected = calloc(bs + 1, sizeof(*w->rejected));
    w->ua_cache = enr_ua_cache_new(srv->ua, 1024);
    if (w->fetch == NULL || w->charges == NULL || w->attr == NULL || w->stats == NULL || w->events == NULL || w->rejected == NULL ||
        w->lines == NULL || w->ua_cache == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "worker: out of memory");
    if (conf->rollups) {
        w->rollup = conf->mongo[0] != '\0'
                        ? enr_rollup_mongo_new(conf->mongo, conf->mongo_w, conf->mongo_wtimeout_ms, err)
                        : enr_rollup_file_new(conf->data_dir, conf->sink_rotate_bytes, ENR_ROLLUP_KEEP_HOURS, err);
        if (w->rollup == NULL)
            return -1;
    }

    const char *cdefaults[] = {"group.id", conf->group, "enable.auto.commit", "false", "enable.auto.offset.store",
                               "false", "auto.offset.reset", "earliest", "session.timeout.ms", "10000",
                               "heartbeat.interval.ms", "1000", "max.poll.interval.ms", "120000",
                               "partition.assignment.strategy", "range,roundrobin",
                               "statistics.interval.ms", "1000", /* adtrack_enricher_consumer_lag */
                               /* Kafka answers a fetch as soon as one byte is there, so this only
                                * bounds how long an idle fetch is parked; librdkafka's 500 ms made
                                * the pipeline's p50 pixel-to-stored 354 ms on devstream, whose
                                * mock broker waits it out (bench/e2e_latency.sh). */
                               "fetch.wait.max.ms", "25", NULL};
    rd_kafka_conf_t *kc = at_kafka_conf_new(conf->brokers, &conf->kafka, cdefaults, &conf->kafka_prop, err);
    if (kc == NULL)
        return -1;
    rd_kafka_conf_set_rebalance_cb(kc, on_rebalance);
    rd_kafka_conf_set_error_cb(kc, on_kafka_error);
    rd_kafka_conf_set_stats_cb(kc, on_stats);
    rd_kafka_conf_set_opaque(kc, w);
    w->rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof(errstr));
    if (w->rk == NULL) {
        rd_kafka_conf_destroy(kc);
        return at_err_set(err, AT_ERR_INVALID, "kafka consumer: %s", errstr);
    }
    rd_kafka_poll_set_consumer(w->rk);

    snprintf(tmo, sizeof(tmo), "%lld", (long long)conf->kafka_timeout_ms);
    const char *pdefaults[] = {"acks", "all", "enable.idempotence", "true", "linger.ms", "5", "message.timeout.ms",
                               tmo, NULL};
    /* --kafka-prop is meant for both clients; consumer-only properties would make the
     * producer fail, so it gets only the defaults plus the properties it accepts. */
    rd_kafka_conf_t *pc = at_kafka_conf_new(conf->brokers, &conf->kafka, pdefaults, &conf->kafka_prop, err);
    if (pc == NULL)
        return -1;
    for (size_t i = 0; i < conf->kafka_prop.count; i++) {
        const char *kv = conf->kafka_prop.items[i];
        const char *eq = strchr(kv, '=');
        char name[256];
        if (eq == NULL || (size_t)(eq - kv) >= sizeof(name))
            continue;
        memcpy(name, kv, (size_t)(eq - kv));
        name[eq - kv] = '\0';
        rd_kafka_conf_set(pc, name, eq + 1, errstr, sizeof(errstr)); /* consumer-only: ignored */
    }
    rd_kafka_conf_set_dr_msg_cb(pc, on_delivery);
    rd_kafka_conf_set_opaque(pc, w);
    w->prod = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof(errstr));
    if (w->prod == NULL) {
        rd_kafka_conf_destroy(pc);
        return at_err_set(err, AT_ERR_INVALID, "kafka producer: %s", errstr);
    }
    w->rej_topic = rd_kafka_topic_new(w->prod, conf->topic_rejected, NULL);

    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, conf->topic_raw, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(w->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return at_err_set(err, AT_ERR_INVALID, "subscribe %s: %s", conf->topic_raw, rd_kafka_err2str(e));
    return 0;
}

static void worker_fini(worker_t *w)
{
    if (w->rk != NULL) {
        /* Leaves the group cleanly (the revoke runs through on_rebalance). */
        rd_kafka_consumer_close(w->rk);
        drop_overflow(w);
        rd_kafka_destroy(w->rk);
    }
    if (w->prod != NULL) {
        rd_kafka_flush(w->prod, 2000);
        if (w->rej_topic != NULL)
            rd_kafka_topic_destroy(w->rej_topic);
        rd_kafka_destroy(w->prod);
    }
    if (w->assignment != NULL)
        rd_kafka_topic_partition_list_destroy(w->assignment);
    if (w->rc != NULL)
        redisFree(w->rc);
    enr_budget_fini(&w->budget);
    enr_ua_cache_destroy(w->ua_cache);
    enr_rollup_destroy(w->rollup);
    free(w->items);
    free(w->overflow);
    free(w->fetch);
    free(w->charges);
    free(w->attr);
    free(w->stats);
    free(w->events);
    free(w->lines);
    free(w->lbuf);
    free(w->rejected);
    free(w->fetch_map.slot);
    free(w->fetch_map.hash);
    free(w->stat_map.slot);
    free(w->stat_map.hash);
    free(w->dup_map.slot);
    free(w->dup_map.hash);
}

/* Start-up probes, so /readyz turns 200 only once each dependency answered. */
static void probe(worker_t *w)
{
    at_err_t err;
    if (ensure_redis(w, &err) == 0)
        atomic_store(&w->srv->redis_ok, true);
    else if (at_log_gate(&w->redis_gate, err.msg, 30))
        at_log(err.code == AT_ERR_AUTH ? AT_LOG_ERROR : AT_LOG_WARN, "enricher",
               err.code == AT_ERR_AUTH ? "redis refused our credentials or permissions; will retry"
                                       : "redis not reachable; will retry",
               "error", err.msg, NULL);
    const struct rd_kafka_metadata *md = NULL;
    if (rd_kafka_metadata(w->rk, 0, NULL, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        atomic_store(&w->srv->kafka_ok, true);
        at_kafka_note_ok();
        rd_kafka_metadata_destroy(md);
    }
    if (!atomic_load(&w->srv->sink_ok)) {
        enr_sink_result_t res;
        if (enr_sink_write(w->srv->sink, NULL, 0, NULL, 0, &res, &err) == 0) {
            atomic_store(&w->srv->sink_ok, true);
            atomic_store(&w->srv->sink_auth_failed, false);
        } else {
            atomic_store(&w->srv->sink_auth_failed, err.code == AT_ERR_AUTH);
            if (at_log_gate(&w->sink_gate, err.msg, 30))
                at_log(err.code == AT_ERR_AUTH ? AT_LOG_ERROR : AT_LOG_WARN, "enricher",
                       err.code == AT_ERR_AUTH ? "the sink refused our credentials or certificate; will retry"
                                               : "the sink is not reachable; will retry",
                       "error", err.msg, NULL);
        }
    }
}

void *enr_worker_main(void *arg)
{
    enr_server_t *srv = arg;
    worker_t w = {0};
    at_err_t err;
    int64_t last_probe = 0;

    if (worker_init(&w, srv, &err) != 0) {
        at_log(AT_LOG_ERROR, "enricher", "worker start-up failed", "error", err.msg, NULL);
        worker_fini(&w);
        atomic_store(&srv->stopping, true);
        return NULL;
    }
    probe(&w);
    last_probe = enr_mono_ms();
    while (!atomic_load(&srv->stopping)) {
        if (collect(&w) > 0)
            process_batch(&w);
        /* An idle worker still proves its dependencies now and then for /readyz. */
        if ((!atomic_load(&srv->redis_ok) || !atomic_load(&srv->kafka_ok) || !atomic_load(&srv->sink_ok)) &&
            enr_mono_ms() - last_probe > 1000) {
            probe(&w);
            last_probe = enr_mono_ms();
        }
    }
    /* SIGTERM: collect() returned what was in hand; it was processed and committed above. */
    worker_fini(&w);
    at_log(AT_LOG_INFO, "enricher", "worker stopped; left the consumer group", NULL);
    return NULL;
}
