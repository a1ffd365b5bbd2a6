/*
 * col_spool.c: group-committed write-ahead spool and its replayer (see col_spool.h).
 *
 * Threads: the writer thread owns all writes to spool.log; the replay thread owns the
 * replay producer, the read side, spool.cursor and dead-letter.log. Shared state (queue,
 * durable_end, cursor, flags) is guarded by sp->mu. Truncating the log needs the writer to
 * be idle with nothing queued, which is checked under sp->mu.
 */
#include "col_spool.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <bson/bson.h>
#include <zlib.h>

#include "at_fs.h"
#include "col_doubt.h"
#include "at_kafka.h"
#include "at_log.h"

#define REC_MAGIC 0xA7       /* an event */
#define REC_MAGIC_DOUBT 0xA8 /* an event Kafka may already hold (col_doubt.h) */
#define REC_HDR_LEN 12
#define REC_DOUBT_HDR_LEN 32 /* + partition i32 + timestamp ms i64 + fate token u64 */
#define FATES_MAX 65536      /* originals whose outcome a loop reported and no record used yet */
#define DOUBT_CHECK_TIMEOUT_MS 30000
#define DOUBT_SETTLE_MS 2000 /* after --kafka-timeout-ms: librdkafka's once-a-second timeout scan, and a margin */
#define REPLAY_WINDOW 4096
#define REPLAY_WINDOW_BYTES (8u << 20)
#define PROBE_INTERVAL_MS 1000
#define PROBE_INTERVAL_DOWN_MS 250
#define BACKOFF_MAX_MS 5000

typedef struct fate_s {
    uint64_t token;
    int fate; /* COL_FATE_* */
} fate_t;

typedef struct spool_client_s {
    col_spool_notify_cb cb;
    void *opaque;
} spool_client_t;

/* Internal view of a record: the public struct plus the submitting client. */
typedef struct spool_rec_s {
    col_spool_rec_t pub;
    int client;
} spool_rec_t;

struct col_spool_s {
    char *dir;
    int log_fd, cursor_fd, dead_fd;
    uint64_t max_bytes;
    char *topics[COL_SPOOL_MAX_TOPICS];
    size_t ntopics;
    rd_kafka_t *rk;
    rd_kafka_topic_t *rkt[COL_SPOOL_MAX_TOPICS];
    int kafka_timeout_ms;        /* the replay producer's message.timeout.ms */
    atomic_int doubt_settle_ms;  /* after this long an event's first attempt is over for sure */
    rd_kafka_conf_t *doubt_conf; /* the template of sp->doubt's consumer (duplicated for each) */
    col_part_fn partitioner;     /* the producer's, for explicit partitions (col_part.h) */
    atomic_int nparts[COL_SPOOL_MAX_TOPICS];
    _Atomic int32_t leader[COL_SPOOL_MAX_TOPICS][COL_SPOOL_MAX_PARTITIONS]; /* broker id, -1 none */
    _Atomic uint8_t suspect[COL_SPOOL_MAX_TOPICS][COL_SPOOL_MAX_PARTITIONS];
    col_doubt_t *doubt;          /* replay thread only */
    spool_client_t clients[COL_SPOOL_MAX_CLIENTS];
    int nclients;

    pthread_mutex_t mu;
    pthread_cond_t writer_cv, replay_cv, prober_cv;
    spool_rec_t *queue_head, *queue_tail;
    uint64_t queued_bytes;
    uint64_t durable_end; /* bytes of spool.log that are fsynced */
    uint64_t cursor;      /* bytes of spool.log already in Kafka */
    bool writing, closing, stop_replay, stop_prober, probe_now;
    pthread_t writer_tid, replay_tid, prober_tid;

    atomic_bool active, reachable;
    atomic_bool stopping; /* col_spool_close: a doubt check in progress gives up */
    pthread_mutex_t fate_mu; /* guards fates */
    fate_t *fates;        /* FATES_MAX entries: what became of originals of copies in doubt */
    size_t nfates;
    atomic_uint_fast64_t next_token;
    atomic_bool fate_news; /* a fate arrived: the replayer tries at once */
    atomic_uint_fast64_t suspect_log_minute;
    atomic_uint suspect_logged;
    atomic_uint_fast64_t appended, append_failed, fsyncs, replayed, replay_failures, dead_lettered, bytes;
    atomic_uint_fast64_t doubt_appended, doubt_found, doubt_resent, suspects;
};

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void deadline_in(struct timespec *ts, int ms)
{
    clock_gettime(CLOCK_REALTIME, ts);
    ts->tv_sec += ms / 1000;
    ts->tv_nsec += (long)(ms % 1000) * 1000000;
    if (ts->tv_nsec >= 1000000000) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000;
    }
}

/* CRC-32 over topic, lengths, key, value and, for a record in doubt, its 12 extra header
 * bytes (@p extra, NULL otherwise). */
static uint32_t rec_crc(uint8_t topic, uint16_t keylen, uint32_t valuelen, const void *key, const void *value,
                        const uint8_t *extra)
{
    uint8_t hdr[7] = {topic, (uint8_t)keylen, (uint8_t)(keylen >> 8), (uint8_t)valuelen, (uint8_t)(valuelen >> 8),
                      (uint8_t)(valuelen >> 16), (uint8_t)(valuelen >> 24)};
    uLong crc = crc32(0L, hdr, sizeof(hdr));
    crc = crc32(crc, key, keylen);
    crc = crc32(crc, value, valuelen);
    if (extra != NULL)
        crc = crc32(crc, extra, REC_DOUBT_HDR_LEN - REC_HDR_LEN);
    return (uint32_t)crc;
}

static size_t hdr_len(uint8_t magic)
{
    return magic == REC_MAGIC_DOUBT ? REC_DOUBT_HDR_LEN : REC_HDR_LEN;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t rec_size(const col_spool_rec_t *r)
{
    return (r->in_doubt ? REC_DOUBT_HDR_LEN : REC_HDR_LEN) + r->keylen + r->valuelen;
}

static void update_bytes_locked(col_spool_t *sp)
{
    atomic_store(&sp->bytes, (sp->durable_end - sp->cursor) + sp->queued_bytes);
}

/* ---- records ---- */

col_spool_rec_t *col_spool_rec_new(uint8_t topic, const void *key, size_t keylen, const void *value, size_t valuelen,
                                   void *opaque)
{
    if (keylen > UINT16_MAX || valuelen > UINT32_MAX)
        return NULL;
    /* Room for the longer header, so a record can still be marked in doubt. */
    spool_rec_t *r = malloc(sizeof(*r) + keylen + valuelen + REC_DOUBT_HDR_LEN);
    if (r == NULL)
        return NULL;
    char *data = (char *)(r + 1);
    r->pub.next = NULL;
    r->pub.opaque = opaque;
    r->pub.result = -1;
    r->pub.topic = topic;
    r->pub.keylen = (uint16_t)keylen;
    r->pub.valuelen = (uint32_t)valuelen;
    r->pub.in_doubt = false;
    r->pub.partition = -1;
    r->pub.ts_ms = -1;
    /* The on-disk header is kept in front of key and value so one iovec covers all three. */
    r->pub.key = data + REC_DOUBT_HDR_LEN;
    r->pub.value = r->pub.key + keylen;
    memcpy(r->pub.key, key, keylen);
    memcpy(r->pub.value, value, valuelen);
    uint8_t *h = (uint8_t *)r->pub.key - REC_HDR_LEN;
    h[0] = REC_MAGIC;
    h[1] = topic;
    put_le(h + 2, keylen, 2);
    put_le(h + 4, valuelen, 4);
    put_le(h + 8, rec_crc(topic, (uint16_t)keylen, (uint32_t)valuelen, key, value, NULL), 4);
    r->client = -1;
    return &r->pub;
}

void col_spool_rec_set_in_doubt(col_spool_rec_t *rec, int32_t partition, int64_t ts_ms, uint64_t token)
{
    uint8_t *h = (uint8_t *)rec->key - REC_DOUBT_HDR_LEN;
    uint8_t extra[REC_DOUBT_HDR_LEN - REC_HDR_LEN];
    put_le(extra, (uint32_t)partition, 4);
    put_le(extra + 4, (uint64_t)ts_ms, 8);
    put_le(extra + 12, token, 8);
    h[0] = REC_MAGIC_DOUBT;
    h[1] = rec->topic;
    put_le(h + 2, rec->keylen, 2);
    put_le(h + 4, rec->valuelen, 4);
    put_le(h + 8, rec_crc(rec->topic, rec->keylen, rec->valuelen, rec->key, rec->value, extra), 4);
    memcpy(h + REC_HDR_LEN, extra, sizeof(extra));
    rec->in_doubt = true;
    rec->partition = partition;
    rec->ts_ms = ts_ms;
}

static const void *rec_disk_bytes(const col_spool_rec_t *r)
{
    return r->key - (r->in_doubt ? REC_DOUBT_HDR_LEN : REC_HDR_LEN);
}

/* ---- writer thread ---- */

static int write_all(int fd, struct iovec *iov, int iovcnt)
{
    while (iovcnt > 0) {
        ssize_t n = writev(fd, iov, AT_MIN(iovcnt, IOV_MAX));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
            n -= (ssize_t)iov->iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0 && n > 0) {
            iov->iov_base = (char *)iov->iov_base + n;
            iov->iov_len -= (size_t)n;
        }
    }
    return 0;
}

static void notify_clients(col_spool_t *sp, spool_rec_t *list)
{
    col_spool_rec_t *heads[COL_SPOOL_MAX_CLIENTS] = {0}, *tails[COL_SPOOL_MAX_CLIENTS] = {0};

    while (list != NULL) {
        spool_rec_t *next = (spool_rec_t *)list->pub.next;
        int c = list->client;
        list->pub.next = NULL;
        if (tails[c] != NULL)
            tails[c]->next = &list->pub;
        else
            heads[c] = &list->pub;
        tails[c] = &list->pub;
        list = next;
    }
    for (int c = 0; c < sp->nclients; c++)
        if (heads[c] != NULL)
            sp->clients[c].cb(heads[c], sp->clients[c].opaque);
}

static void *writer_main(void *arg)
{
    col_spool_t *sp = arg;
    struct iovec *iov = NULL;
    size_t iovcap = 0;

    pthread_mutex_lock(&sp->mu);
    for (;;) {
        while (sp->queue_head == NULL && !sp->closing)
            pthread_cond_wait(&sp->writer_cv, &sp->mu);
        if (sp->queue_head == NULL)
            break; /* closing and drained */
        spool_rec_t *batch = sp->queue_head;
        sp->queue_head = sp->queue_tail = NULL;
        sp->writing = true;
        uint64_t start = sp->durable_end;
        pthread_mutex_unlock(&sp->mu);

        /* Group commit: one writev + one fdatasync for everything that queued up meanwhile. */
        size_t n = 0;
        uint64_t total = 0;
        for (spool_rec_t *r = batch; r != NULL; r = (spool_rec_t *)r->pub.next)
            n++;
        if (n > iovcap) {
            struct iovec *grown = realloc(iov, n * sizeof(*iov));
            if (grown != NULL) {
                iov = grown;
                iovcap = n;
            }
        }
        int rc = -1;
        if (n <= iovcap) {
            size_t i = 0;
            for (spool_rec_t *r = batch; r != NULL; r = (spool_rec_t *)r->pub.next, i++) {
                iov[i].iov_base = (void *)rec_disk_bytes(&r->pub);
                iov[i].iov_len = rec_size(&r->pub);
                total += iov[i].iov_len;
            }
            rc = write_all(sp->log_fd, iov, (int)n);
            if (rc == 0)
                rc = fdatasync(sp->log_fd);
        }
        if (rc != 0) {
            char why[128];
            snprintf(why, sizeof(why), "%s", strerror(errno));
            at_log(AT_LOG_ERROR, "spool", "spool write failed; events answered 503", "error", why, NULL);
            /* Cut whatever part of the batch reached the file: it was never acknowledged. */
            if (ftruncate(sp->log_fd, (off_t)start) != 0)
                at_log(AT_LOG_ERROR, "spool", "could not cut a failed write", NULL);
        }
        for (spool_rec_t *r = batch; r != NULL; r = (spool_rec_t *)r->pub.next)
            r->pub.result = rc == 0 ? 0 : -1;

        pthread_mutex_lock(&sp->mu);
        sp->writing = false;
        sp->queued_bytes -= AT_MIN(sp->queued_bytes, total);
        if (rc == 0) {
            sp->durable_end = start + total;
            atomic_fetch_add(&sp->appended, n);
            atomic_fetch_add(&sp->fsyncs, 1);
        } else {
            atomic_fetch_add(&sp->append_failed, n);
        }
        update_bytes_locked(sp);
        pthread_cond_broadcast(&sp->replay_cv);
        pthread_mutex_unlock(&sp->mu);

        notify_clients(sp, batch);
        pthread_mutex_lock(&sp->mu);
    }
    pthread_mutex_unlock(&sp->mu);
    free(iov);
    return NULL;
}

/* ---- replay thread ---- */

typedef struct replay_slot_s {
    uint64_t offset;
    uint32_t len;
    uint32_t hlen;           /* header length: REC_HDR_LEN, or REC_DOUBT_HDR_LEN in doubt */
    rd_kafka_resp_err_t err;
    bool done;               /* delivery report arrived */
    bool skipped;            /* acknowledged in an earlier attempt, or found in Kafka */
    bool in_doubt;           /* Kafka may already hold it: look before sending */
    bool possibly_persisted; /* this attempt failed after the broker may have appended it */
    int32_t partition;       /* in doubt / possibly persisted: where the earlier attempt went */
    int64_t ts_ms;           /* ... and its Kafka timestamp */
} replay_slot_t;

static void replay_dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    AT_UNUSED(rk);
    replay_slot_t *slot = m->_private;
    col_spool_t *sp = opaque;
    slot->err = m->err;
    slot->done = true;
    if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && sp != NULL && m->partition >= 0 &&
        m->partition < COL_SPOOL_MAX_PARTITIONS) {
        /* Kafka takes this partition's events again: the loops may send to it directly. */
        for (size_t t = 0; t < sp->ntopics; t++)
            if (m->rkt == sp->rkt[t] && atomic_exchange(&sp->suspect[t][m->partition], 0)) {
                char part[48];
                snprintf(part, sizeof(part), "%s/%d", sp->topics[t], (int)m->partition);
                at_log(AT_LOG_INFO, "spool", "partition back: its events go to Kafka directly again", "partition",
                       part, NULL);
            }
    }
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR &&
        rd_kafka_message_status(m) == RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED) {
        slot->possibly_persisted = true;
        slot->partition = m->partition;
        slot->ts_ms = rd_kafka_message_timestamp(m, NULL);
    }
}

static void replay_error_cb(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    AT_UNUSED(rk);
    AT_UNUSED(opaque);
    at_kafka_log_client_error("spool", err, reason);
}

static void write_cursor(col_spool_t *sp, uint64_t cursor)
{
    uint8_t b[16];
    put_le(b, cursor, 8);
    put_le(b + 8, ~cursor, 8);
    if (pwrite(sp->cursor_fd, b, sizeof(b), 0) != (ssize_t)sizeof(b) || fdatasync(sp->cursor_fd) != 0)
        at_log(AT_LOG_ERROR, "spool", "could not persist the replay cursor; a restart may replay twice", NULL);
}

/* The partition count and each partition's leader, for the loops' routing. */
static void record_topic(col_spool_t *sp, size_t t, const rd_kafka_metadata_topic_t *mt)
{
    for (int i = 0; i < mt->partition_cnt; i++) {
        int32_t id = mt->partitions[i].id;
        if (id >= 0 && id < COL_SPOOL_MAX_PARTITIONS)
            atomic_store(&sp->leader[t][id], mt->partitions[i].err ? -1 : mt->partitions[i].leader);
    }
    atomic_store(&sp->nparts[t], mt->partition_cnt);
}

static void probe_kafka(col_spool_t *sp)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(sp->rk, 0, sp->rkt[0], &md, 2000);
    bool ok = err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err == 0 &&
              md->topics[0].partition_cnt > 0;
    if (ok)
        record_topic(sp, 0, &md->topics[0]);
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    /* The other topics' partition counts, for the loops' explicit partitions. */
    for (size_t t = 1; ok && t < sp->ntopics; t++) {
        md = NULL;
        if (rd_kafka_metadata(sp->rk, 0, sp->rkt[t], &md, 2000) == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
            md->topics[0].err == 0)
            record_topic(sp, t, &md->topics[0]);
        if (md != NULL)
            rd_kafka_metadata_destroy(md);
    }
    if (ok)
        at_kafka_note_ok();
    bool was = atomic_exchange(&sp->reachable, ok);
    if (ok != was)
        at_log(ok ? AT_LOG_INFO : AT_LOG_WARN, "spool", ok ? "kafka reachable" : "kafka unreachable", "reason",
               ok ? "metadata answered" : rd_kafka_err2str(err), NULL);
}

static void dead_letter(col_spool_t *sp, const uint8_t *rec, rd_kafka_resp_err_t err)
{
    uint8_t topic = rec[1];
    uint16_t keylen = (uint16_t)get_le(rec + 2, 2);
    uint32_t valuelen = (uint32_t)get_le(rec + 4, 4);
    size_t hlen = hdr_len(rec[0]);
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&doc, "topic", topic < sp->ntopics ? sp->topics[topic] : "?");
    bson_append_utf8(&doc, "key", 3, (const char *)rec + hlen, keylen);
    BSON_APPEND_UTF8(&doc, "error", rd_kafka_err2str(err));
    bson_append_utf8(&doc, "value", 5, (const char *)rec + hlen + keylen, (int)valuelen);
    size_t len;
    char *json = bson_as_relaxed_extended_json(&doc, &len);
    bson_destroy(&doc);
    if (sp->dead_fd < 0) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/dead-letter.log", sp->dir);
        sp->dead_fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    }
    struct iovec iov[2] = {{json, len}, {"\n", 1}};
    if (json == NULL || sp->dead_fd < 0 || write_all(sp->dead_fd, iov, 2) != 0 || fdatasync(sp->dead_fd) != 0)
        at_log(AT_LOG_ERROR, "spool", "could not write the dead-letter file", NULL);
    bson_free(json);
    atomic_fetch_add(&sp->dead_lettered, 1);
    at_log(AT_LOG_ERROR, "spool", "kafka refused a spooled event for good; kept in dead-letter.log", "error",
           rd_kafka_err2str(err), NULL);
}

/* Offsets acknowledged by Kafka beyond the cursor, from an attempt that failed part-way:
 * they must not be sent again. Kept sorted; small in practice (one window at most). */
typedef struct offset_set_s {
    uint64_t *v;
    size_t n, cap;
} offset_set_t;

static bool offset_set_has(const offset_set_t *s, uint64_t off)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->v[mid] < off)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->n && s->v[lo] == off;
}

static void offset_set_add(offset_set_t *s, uint64_t off)
{
    if (offset_set_has(s, off))
        return;
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 256;
        uint64_t *v = realloc(s->v, cap * sizeof(*v));
        if (v == NULL)
            return; /* worst case: that record is sent twice; the enricher dedupes by id */
        s->v = v;
        s->cap = cap;
    }
    size_t i = s->n;
    while (i > 0 && s->v[i - 1] > off) {
        s->v[i] = s->v[i - 1];
        i--;
    }
    s->v[i] = off;
    s->n++;
}

static void offset_set_drop_below(offset_set_t *s, uint64_t off)
{
    size_t k = 0;
    while (k < s->n && s->v[k] < off)
        k++;
    if (k == 0)
        return; /* also keeps memmove away from a NULL s->v while the set was never grown */
    memmove(s->v, s->v + k, (s->n - k) * sizeof(*s->v));
    s->n -= k;
}

/* Records whose last replay attempt may have reached Kafka (offset in spool.log -> where
 * and when it went): the next attempt looks for them before sending. In memory only: after a
 * restart such a record is sent again, and the enricher's idempotent sink stores it once. */
typedef struct doubt_entry_s {
    uint64_t offset;
    int32_t partition;
    int64_t ts_ms;
} doubt_entry_t;

typedef struct doubt_map_s {
    doubt_entry_t *v;
    size_t n, cap;
} doubt_map_t;

static doubt_entry_t *doubt_map_find(doubt_map_t *m, uint64_t off)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->v[i].offset == off)
            return &m->v[i];
    return NULL;
}

static void doubt_map_put(doubt_map_t *m, uint64_t off, int32_t partition, int64_t ts_ms)
{
    doubt_entry_t *e = doubt_map_find(m, off);
    if (e == NULL) {
        if (m->n == m->cap) {
            size_t cap = m->cap ? m->cap * 2 : 64;
            doubt_entry_t *v = realloc(m->v, cap * sizeof(*v));
            if (v == NULL)
                return; /* worst case: sent again unchecked; the enricher dedupes by id */
            m->v = v;
            m->cap = cap;
        }
        e = &m->v[m->n++];
        e->offset = off;
    }
    e->partition = partition;
    e->ts_ms = ts_ms;
}

static void doubt_map_drop_below(doubt_map_t *m, uint64_t off)
{
    size_t k = 0;
    for (size_t i = 0; i < m->n; i++)
        if (m->v[i].offset >= off)
            m->v[k++] = m->v[i];
    m->n = k;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The prober: asks Kafka for metadata every second, and every 250 ms while Kafka is not
 * reachable (or at once when woken), and publishes the answer as sp->reachable. A thread of
 * its own, because the replay thread can be busy for seconds (a flush waiting out a timeout,
 * an events-in-doubt check), and the loops go back to Kafka as soon as it answers.
 */
static void *prober_main(void *arg)
{
    col_spool_t *sp = arg;
    pthread_mutex_lock(&sp->mu);
    while (!sp->stop_prober) {
        pthread_mutex_unlock(&sp->mu);
        bool was = atomic_load(&sp->reachable);
        probe_kafka(sp);
        if (!was && atomic_load(&sp->reachable)) {
            pthread_mutex_lock(&sp->mu);
            pthread_cond_broadcast(&sp->replay_cv); /* the replayer may go on */
            pthread_mutex_unlock(&sp->mu);
        }
        pthread_mutex_lock(&sp->mu);
        if (sp->stop_prober)
            break;
        if (!sp->probe_now) {
            struct timespec ts;
            deadline_in(&ts, atomic_load(&sp->reachable) ? PROBE_INTERVAL_MS : PROBE_INTERVAL_DOWN_MS);
            pthread_cond_timedwait(&sp->prober_cv, &sp->mu, &ts);
        }
        sp->probe_now = false;
    }
    pthread_mutex_unlock(&sp->mu);
    return NULL;
}

static void wake_prober(col_spool_t *sp)
{
    pthread_mutex_lock(&sp->mu);
    sp->probe_now = true;
    pthread_cond_signal(&sp->prober_cv);
    pthread_mutex_unlock(&sp->mu);
}

/* The fate a loop reported for the original of token (0 when none yet); removes it. */
static int fate_take(col_spool_t *sp, uint64_t token)
{
    int fate = 0;
    pthread_mutex_lock(&sp->fate_mu);
    for (size_t i = 0; i < sp->nfates; i++)
        if (sp->fates[i].token == token) {
            fate = sp->fates[i].fate;
            sp->fates[i] = sp->fates[--sp->nfates];
            break;
        }
    pthread_mutex_unlock(&sp->fate_mu);
    return fate;
}

uint64_t col_spool_fate_token(col_spool_t *sp)
{
    return atomic_fetch_add(&sp->next_token, 1) + 1;
}

void col_spool_fate(col_spool_t *sp, uint64_t token, int fate)
{
    pthread_mutex_lock(&sp->fate_mu);
    if (sp->nfates == FATES_MAX) {
        /* Full (records that never came, e.g. a refused append): forget the oldest half; a
         * forgotten fate only costs a check in Kafka. */
        memmove(sp->fates, sp->fates + FATES_MAX / 2, (FATES_MAX / 2) * sizeof(*sp->fates));
        sp->nfates = FATES_MAX / 2;
    }
    if (sp->fates != NULL)
        sp->fates[sp->nfates++] = (fate_t){token, fate};
    pthread_mutex_unlock(&sp->fate_mu);
    atomic_store(&sp->fate_news, true);
    pthread_mutex_lock(&sp->mu);
    pthread_cond_broadcast(&sp->replay_cv);
    pthread_mutex_unlock(&sp->mu);
}

/* Looks for this window's events in doubt in Kafka and marks those found as skipped.
 * 0, or -1 when Kafka could not be read (the window is tried again later). */
static int check_doubts(col_spool_t *sp, const uint8_t *buf, uint64_t cursor, replay_slot_t *slots, size_t nslots)
{
    size_t n = 0;
    for (size_t i = 0; i < nslots; i++)
        if (slots[i].in_doubt && !slots[i].skipped)
            n++;
    if (n == 0)
        return 0;
    at_err_t err = {0};
    if (sp->doubt == NULL) {
        sp->doubt = col_doubt_new(rd_kafka_conf_dup(sp->doubt_conf), &err);
        if (sp->doubt == NULL) {
            at_log(AT_LOG_ERROR, "spool", "cannot check events in doubt; sending them again", "error", err.msg, NULL);
            return 0;
        }
    }
    col_doubt_item_t *items = calloc(n, sizeof(*items));
    size_t *which = calloc(n, sizeof(*which));
    if (items == NULL || which == NULL) {
        free(items);
        free(which);
        return -1;
    }
    size_t k = 0;
    for (size_t i = 0; i < nslots; i++) {
        replay_slot_t *sl = &slots[i];
        if (!sl->in_doubt || sl->skipped)
            continue;
        const uint8_t *rec = buf + (sl->offset - cursor);
        uint8_t topic = rec[1];
        uint16_t keylen = (uint16_t)get_le(rec + 2, 2);
        items[k] = (col_doubt_item_t){.topic = sp->topics[topic < sp->ntopics ? topic : 0],
                                      .partition = sl->partition,
                                      .ts_ms = sl->ts_ms >= 0 ? sl->ts_ms : wall_ms() - sp->kafka_timeout_ms - 1000,
                                      .value = rec + sl->hlen + keylen,
                                      .valuelen = sl->len - sl->hlen - keylen};
        which[k++] = i;
    }
    int rc = col_doubt_check(sp->doubt, items, n, DOUBT_CHECK_TIMEOUT_MS, &sp->stopping, &err);
    if (rc == 0) {
        uint64_t found = 0;
        for (size_t j = 0; j < n; j++)
            if (items[j].found) {
                slots[which[j]].skipped = true;
                found++;
            }
        atomic_fetch_add(&sp->doubt_found, found);
        atomic_fetch_add(&sp->doubt_resent, n - found);
        char nf[24], nr[24];
        snprintf(nf, sizeof(nf), "%llu", (unsigned long long)found);
        snprintf(nr, sizeof(nr), "%llu", (unsigned long long)(n - found));
        at_log(AT_LOG_INFO, "spool", "checked events in doubt against Kafka", "already_in_kafka", nf, "sent_again", nr,
               NULL);
    } else {
        at_log(AT_LOG_WARN, "spool", "could not check events in doubt yet; will retry", "error", err.msg, NULL);
        /* A fresh client next time: librdkafka 2.0.2 keeps a stale leader for a partition
         * that moved until its metadata expires (15 minutes), answering "not leader"
         * meanwhile (seen on real Kafka after a broker restart). */
        col_doubt_destroy(sp->doubt);
        sp->doubt = NULL;
    }
    free(items);
    free(which);
    return rc;
}

/* Replays one window starting at @p cursor; returns the new cursor. Sets *outage when
 * Kafka failed deliveries for reasons that may pass. */
static uint64_t replay_window(col_spool_t *sp, uint64_t cursor, uint64_t end, uint8_t *buf, replay_slot_t *slots,
                              offset_set_t *skip, doubt_map_t *doubts, bool *outage, int64_t *wait_ms)
{
    size_t want = (size_t)AT_MIN(end - cursor, (uint64_t)REPLAY_WINDOW_BYTES);
    ssize_t got = pread(sp->log_fd, buf, want, (off_t)cursor);
    if (got <= 0)
        return cursor;

    /* Cut the buffer into whole records. */
    size_t nslots = 0, pos = 0;
    while (nslots < REPLAY_WINDOW && pos + REC_HDR_LEN <= (size_t)got) {
        uint32_t hlen = (uint32_t)hdr_len(buf[pos]);
        uint32_t len = hlen + (uint32_t)get_le(buf + pos + 2, 2) + (uint32_t)get_le(buf + pos + 4, 4);
        if (pos + len > (size_t)got)
            break;
        replay_slot_t *sl = &slots[nslots];
        *sl = (replay_slot_t){.offset = cursor + pos, .len = len, .hlen = hlen, .partition = -1, .ts_ms = -1};
        sl->skipped = offset_set_has(skip, cursor + pos);
        doubt_entry_t *d = doubt_map_find(doubts, cursor + pos);
        if (d != NULL) {
            sl->in_doubt = true;
            sl->partition = d->partition;
            sl->ts_ms = d->ts_ms;
        } else if (buf[pos] == REC_MAGIC_DOUBT) {
            sl->in_doubt = true;
            sl->partition = (int32_t)get_le(buf + pos + REC_HDR_LEN, 4);
            sl->ts_ms = (int64_t)get_le(buf + pos + REC_HDR_LEN + 4, 8);
            uint64_t token = get_le(buf + pos + REC_HDR_LEN + 12, 8);
            /* The loop already knows what became of the original: delivered, the copy is
             * not needed; failed, it is decidable now. */
            int fate = token != 0 ? fate_take(sp, token) : 0;
            if (fate == COL_FATE_DELIVERED) {
                sl->skipped = true;
                atomic_fetch_add(&sp->doubt_found, 1);
            } else if (fate == COL_FATE_FAILED) {
                sl->ts_ms = 0; /* no waiting: check Kafka now */
            }
        }
        nslots++;
        pos += len;
    }
    if (nslots == 0 && (size_t)got == REPLAY_WINDOW_BYTES) {
        at_log(AT_LOG_ERROR, "spool", "spool record larger than the replay window", NULL);
        return cursor;
    }
    /* An event in doubt is decided only once its first attempt is over for sure: librdkafka
     * gives up on a message --kafka-timeout-ms after it was produced (checked every second),
     * and the loops spool a copy after --kafka-ack-wait-ms while the original is still being
     * retried. Before that the original may still land, and a copy sent meanwhile would be
     * stored twice. The window stops at the first such record until it is old enough. */
    int64_t wall = wall_ms();
    for (size_t i = 0; i < nslots; i++) {
        const replay_slot_t *sl = &slots[i];
        int64_t ready = sl->ts_ms + atomic_load(&sp->doubt_settle_ms);
        if (sl->in_doubt && !sl->skipped && sl->ts_ms >= 0 && ready > wall) {
            if (i == 0) {
                *wait_ms = ready - wall;
                return cursor;
            }
            nslots = i;
            break;
        }
    }
    /* Events Kafka may already hold are looked for before anything of the window is sent. */
    if (check_doubts(sp, buf, cursor, slots, nslots) != 0) {
        *outage = true;
        return cursor;
    }

    for (size_t i = 0; i < nslots; i++) {
        replay_slot_t *s = &slots[i];
        if (s->skipped)
            continue;
        const uint8_t *rec = buf + (s->offset - cursor);
        uint8_t topic = rec[1];
        uint16_t keylen = (uint16_t)get_le(rec + 2, 2);
        uint32_t valuelen = (uint32_t)get_le(rec + 4, 4);
        for (;;) {
            /* The buffer outlives every delivery report (below), so librdkafka need not copy. */
            /* The partition the loops would choose (col_part.h); an event in doubt goes back to the
             * partition its first attempt went to. */
            int t = topic < sp->ntopics ? topic : 0;
            int32_t part = s->in_doubt && s->partition >= 0
                               ? s->partition
                               : col_part_of(sp->partitioner, sp->rkt[t], rec + s->hlen, keylen,
                                             atomic_load(&sp->nparts[t]));
            rd_kafka_resp_err_t err = rd_kafka_producev(
                sp->rk, RD_KAFKA_V_RKT(sp->rkt[t]), RD_KAFKA_V_PARTITION(part), RD_KAFKA_V_MSGFLAGS(0),
                RD_KAFKA_V_KEY(rec + s->hlen, keylen), RD_KAFKA_V_VALUE((void *)(rec + s->hlen + keylen), valuelen),
                RD_KAFKA_V_OPAQUE(s), RD_KAFKA_V_END);
            if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) {
                rd_kafka_poll(sp->rk, 50);
                continue;
            }
            if (err != 0) {
                s->err = err;
                s->done = true;
            }
            break;
        }
    }
    if (rd_kafka_flush(sp->rk, sp->kafka_timeout_ms + 5000) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        /* librdkafka still points into buf, which the next window overwrites: end every
         * message now (purged in-flight ones report as possibly persisted). */
        rd_kafka_purge(sp->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        while (rd_kafka_outq_len(sp->rk) > 0)
            rd_kafka_poll(sp->rk, 100);
    }
    rd_kafka_poll(sp->rk, 0);

    uint64_t newcursor = cursor;
    bool prefix = true;
    for (size_t i = 0; i < nslots; i++) {
        replay_slot_t *s = &slots[i];
        bool acked = s->skipped || (s->done && s->err == 0);
        if (!acked && s->done && !at_kafka_err_is_outage(s->err)) {
            dead_letter(sp, buf + (s->offset - cursor), s->err);
            acked = true;
        }
        if (acked && !s->skipped && s->done && s->err == 0)
            atomic_fetch_add(&sp->replayed, 1);
        if (!acked) {
            *outage = true;
            if (s->possibly_persisted)
                doubt_map_put(doubts, s->offset, s->partition, s->ts_ms);
        }
        if (prefix && acked)
            newcursor = s->offset + s->len;
        else if (acked)
            offset_set_add(skip, s->offset);
        else
            prefix = false;
    }
    offset_set_drop_below(skip, newcursor);
    doubt_map_drop_below(doubts, newcursor);
    return newcursor;
}

static void *replay_main(void *arg)
{
    col_spool_t *sp = arg;
    uint8_t *buf = malloc(REPLAY_WINDOW_BYTES);
    replay_slot_t *slots = calloc(REPLAY_WINDOW, sizeof(*slots));
    offset_set_t skip = {0};
    doubt_map_t doubts = {0};
    uint64_t backoff_ms = 0, next_attempt = 0;
    bool waiting_for_doubt = false; /* next_attempt is a wait for an event in doubt, not a backoff */

    if (buf == NULL || slots == NULL) {
        at_log(AT_LOG_ERROR, "spool", "replay thread out of memory", NULL);
        goto out;
    }

    pthread_mutex_lock(&sp->mu);
    while (!sp->stop_replay) {
        uint64_t t = now_ms();
        if (sp->cursor == sp->durable_end) {
            /* Everything durable is in Kafka: cut the files once the writer is idle. */
            if (!sp->writing && sp->queue_head == NULL) {
                if (sp->durable_end > 0 && ftruncate(sp->log_fd, 0) == 0) {
                    char bytes[24], replayed[24];
                    snprintf(bytes, sizeof(bytes), "%llu", (unsigned long long)sp->durable_end);
                    snprintf(replayed, sizeof(replayed), "%llu", (unsigned long long)atomic_load(&sp->replayed));
                    sp->durable_end = sp->cursor = 0;
                    write_cursor(sp, 0);
                    update_bytes_locked(sp);
                    /* The line an operator waits for after an outage. */
                    at_log(AT_LOG_INFO, "spool", "spool drained: every spooled event is in Kafka", "bytes", bytes,
                           "replayed_total", replayed, NULL);
                }
                if (sp->durable_end == 0)
                    atomic_store(&sp->active, false);
            }
        }
        bool pending = sp->cursor < sp->durable_end;
        if (atomic_exchange(&sp->fate_news, false) && waiting_for_doubt)
            next_attempt = 0; /* the copy in doubt we wait for may be decidable now */
        bool work = pending && t >= next_attempt;
        if (!work) {
            /* Sleep until the end of a backoff, new spooled data, or Kafka reachable again
             * (the prober broadcasts); at most a second. */
            uint64_t wake = pending ? next_attempt : t + PROBE_INTERVAL_MS;
            if (t < wake) {
                struct timespec ts;
                deadline_in(&ts, (int)AT_MIN(wake - t, (uint64_t)PROBE_INTERVAL_MS));
                pthread_cond_timedwait(&sp->replay_cv, &sp->mu, &ts);
            }
            continue;
        }
        uint64_t cursor = sp->cursor, end = sp->durable_end;
        pthread_mutex_unlock(&sp->mu);

        bool outage = false;
        int64_t wait_ms = 0;
        uint64_t newcursor = cursor;
        if (atomic_load(&sp->reachable))
            newcursor = replay_window(sp, cursor, end, buf, slots, &skip, &doubts, &outage, &wait_ms);
        else
            outage = true;
        if (newcursor != cursor)
            write_cursor(sp, newcursor);
        waiting_for_doubt = false;
        if (outage) {
            /* Whether all of Kafka is gone or only some partitions (whose loops already route
             * them here) is the prober's to say, not one window's. */
            atomic_fetch_add(&sp->replay_failures, 1);
            wake_prober(sp);
            backoff_ms = AT_MIN(AT_MAX(backoff_ms * 2, (uint64_t)250), (uint64_t)BACKOFF_MAX_MS);
            next_attempt = now_ms() + backoff_ms;
        } else if (wait_ms > 0) {
            next_attempt = now_ms() + (uint64_t)wait_ms; /* an event in doubt not decidable yet */
            waiting_for_doubt = true;
        } else {
            backoff_ms = 0;
            next_attempt = 0;
        }

        pthread_mutex_lock(&sp->mu);
        sp->cursor = newcursor;
        update_bytes_locked(sp);
        pthread_cond_broadcast(&sp->replay_cv);
    }
    pthread_mutex_unlock(&sp->mu);
out:
    free(skip.v);
    free(doubts.v);
    free(slots);
    free(buf);
    return NULL;
}

/* ---- open / close ---- */

/* Validates records from @p from to the end; returns the offset after the last good one. */
static uint64_t scan_valid_end(int fd, uint64_t from, uint64_t size)
{
    uint64_t pos = from;
    uint8_t hdr[REC_DOUBT_HDR_LEN];
    char *body = NULL;
    size_t bodycap = 0;

    while (pos + REC_HDR_LEN <= size) {
        if (pread(fd, hdr, REC_HDR_LEN, (off_t)pos) != REC_HDR_LEN || (hdr[0] != REC_MAGIC && hdr[0] != REC_MAGIC_DOUBT))
            break;
        size_t hlen = hdr_len(hdr[0]);
        if (hlen > REC_HDR_LEN && (pos + hlen > size || pread(fd, hdr + REC_HDR_LEN, hlen - REC_HDR_LEN,
                                                               (off_t)(pos + REC_HDR_LEN)) != (ssize_t)(hlen - REC_HDR_LEN)))
            break;
        uint16_t keylen = (uint16_t)get_le(hdr + 2, 2);
        uint32_t valuelen = (uint32_t)get_le(hdr + 4, 4);
        size_t blen = (size_t)keylen + valuelen;
        if (pos + hlen + blen > size)
            break;
        if (blen > bodycap) {
            char *nb = realloc(body, blen);
            if (nb == NULL)
                break;
            body = nb;
            bodycap = blen;
        }
        if (pread(fd, body, blen, (off_t)(pos + hlen)) != (ssize_t)blen)
            break;
        if (rec_crc(hdr[1], keylen, valuelen, body, body + keylen, hlen > REC_HDR_LEN ? hdr + REC_HDR_LEN : NULL) !=
            (uint32_t)get_le(hdr + 8, 4))
            break;
        pos += hlen + blen;
    }
    free(body);
    return pos;
}

col_spool_t *col_spool_open(const char *dir, uint64_t max_bytes, rd_kafka_conf_t *conf, rd_kafka_conf_t *check_conf,
                            const char *const *topics, size_t ntopics, at_err_t *err)
{
    col_spool_t *sp = calloc(1, sizeof(*sp));
    char path[4200], errstr[512];

    if (sp == NULL) {
        rd_kafka_conf_destroy(check_conf);
        rd_kafka_conf_destroy(conf);
        at_err_set(err, AT_ERR_NOMEM, "spool: out of memory");
        return NULL;
    }
    sp->log_fd = sp->cursor_fd = sp->dead_fd = -1;
    sp->max_bytes = max_bytes;
    sp->doubt_conf = check_conf;
    pthread_mutex_init(&sp->mu, NULL);
    pthread_cond_init(&sp->writer_cv, NULL);
    pthread_cond_init(&sp->replay_cv, NULL);
    pthread_cond_init(&sp->prober_cv, NULL);
    pthread_mutex_init(&sp->fate_mu, NULL);
    sp->fates = calloc(FATES_MAX, sizeof(*sp->fates));
    sp->dir = strdup(dir);

    if (ntopics == 0 || ntopics > COL_SPOOL_MAX_TOPICS) {
        rd_kafka_conf_destroy(conf);
        at_err_set(err, AT_ERR_INVALID, "spool: 1 to %d topics expected", COL_SPOOL_MAX_TOPICS);
        goto fail;
    }
    if (at_mkdir_p(dir, 0750, NULL, 0) != 0) {
        rd_kafka_conf_destroy(conf);
        at_err_set(err, AT_ERR_IO, "--spool-dir '%s': cannot create: %s", dir, strerror(errno));
        goto fail;
    }
    snprintf(path, sizeof(path), "%s/spool.log", dir);
    sp->log_fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    snprintf(path, sizeof(path), "%s/spool.cursor", dir);
    sp->cursor_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0640);
    if (sp->log_fd < 0 || sp->cursor_fd < 0) {
        rd_kafka_conf_destroy(conf);
        at_err_set(err, AT_ERR_IO, "--spool-dir '%s': cannot open spool files: %s", dir, strerror(errno));
        goto fail;
    }

    /* Recover: read the cursor, drop a torn tail. */
    struct stat st;
    fstat(sp->log_fd, &st);
    uint64_t size = (uint64_t)st.st_size;
    uint8_t cb[16];
    if (pread(sp->cursor_fd, cb, sizeof(cb), 0) == (ssize_t)sizeof(cb) && get_le(cb, 8) == ~get_le(cb + 8, 8))
        sp->cursor = get_le(cb, 8);
    if (sp->cursor > size)
        sp->cursor = 0; /* the log was cut but the cursor not yet reset: nothing to replay */
    uint64_t valid = scan_valid_end(sp->log_fd, sp->cursor, size);
    if (valid < size) {
        at_log(AT_LOG_WARN, "spool", "cutting a torn record at the end of the spool (never acknowledged)", NULL);
        if (ftruncate(sp->log_fd, (off_t)valid) != 0 || fdatasync(sp->log_fd) != 0) {
            rd_kafka_conf_destroy(conf);
            at_err_set(err, AT_ERR_IO, "spool: cannot repair %s/spool.log: %s", dir, strerror(errno));
            goto fail;
        }
    }
    sp->durable_end = valid;
    update_bytes_locked(sp);
    atomic_store(&sp->active, sp->durable_end > sp->cursor);
    if (sp->durable_end > sp->cursor) {
        char pending[32];
        snprintf(pending, sizeof(pending), "%llu", (unsigned long long)(sp->durable_end - sp->cursor));
        at_log(AT_LOG_INFO, "spool", "spool holds events from an earlier run; replaying", "bytes", pending, NULL);
    }

    /* The replay producer. */
    char tmo[32];
    const char *tmo_s = NULL;
    size_t tmo_len = sizeof(tmo);
    if (rd_kafka_conf_get(conf, "message.timeout.ms", tmo, &tmo_len) == RD_KAFKA_CONF_OK)
        tmo_s = tmo;
    sp->kafka_timeout_ms = tmo_s ? atoi(tmo_s) : 5000;
    atomic_store(&sp->doubt_settle_ms, sp->kafka_timeout_ms + DOUBT_SETTLE_MS);
    rd_kafka_conf_set_dr_msg_cb(conf, replay_dr_cb);
    rd_kafka_conf_set_opaque(conf, sp);
    sp->partitioner = col_part_fn_from_conf(conf);
    /* Without an error callback librdkafka logs every reconnect attempt as an error; the
     * spool logs Kafka's reachability itself, so these only need the rate-limited line. */
    rd_kafka_conf_set_error_cb(conf, replay_error_cb);
    sp->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (sp->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        at_err_set(err, AT_ERR_INVALID, "spool: cannot create the replay producer: %s", errstr);
        goto fail;
    }
    for (size_t i = 0; i < ntopics; i++) {
        sp->topics[i] = strdup(topics[i]);
        sp->rkt[i] = rd_kafka_topic_new(sp->rk, topics[i], NULL);
    }
    sp->ntopics = ntopics;

    if (pthread_create(&sp->writer_tid, NULL, writer_main, sp) != 0) {
        at_err_set(err, AT_ERR_INTERNAL, "spool: cannot start the writer thread");
        goto fail;
    }
    if (pthread_create(&sp->replay_tid, NULL, replay_main, sp) != 0) {
        pthread_mutex_lock(&sp->mu);
        sp->closing = true;
        pthread_cond_broadcast(&sp->writer_cv);
        pthread_mutex_unlock(&sp->mu);
        pthread_join(sp->writer_tid, NULL);
        at_err_set(err, AT_ERR_INTERNAL, "spool: cannot start the replay thread");
        goto fail;
    }
    if (pthread_create(&sp->prober_tid, NULL, prober_main, sp) != 0) {
        /* Without a prober Kafka would never count as reachable: give up now. */
        pthread_mutex_lock(&sp->mu);
        sp->closing = sp->stop_replay = true;
        pthread_cond_broadcast(&sp->writer_cv);
        pthread_cond_broadcast(&sp->replay_cv);
        pthread_mutex_unlock(&sp->mu);
        pthread_join(sp->writer_tid, NULL);
        pthread_join(sp->replay_tid, NULL);
        at_err_set(err, AT_ERR_INTERNAL, "spool: cannot start the prober thread");
        goto fail;
    }
    return sp;

fail:
    for (size_t i = 0; i < sp->ntopics; i++) {
        rd_kafka_topic_destroy(sp->rkt[i]);
        free(sp->topics[i]);
    }
    if (sp->rk)
        rd_kafka_destroy(sp->rk);
    if (sp->doubt_conf != NULL)
        rd_kafka_conf_destroy(sp->doubt_conf);
    if (sp->log_fd >= 0)
        close(sp->log_fd);
    if (sp->cursor_fd >= 0)
        close(sp->cursor_fd);
    free(sp->dir);
    free(sp);
    return NULL;
}

int col_spool_register(col_spool_t *sp, col_spool_notify_cb cb, void *opaque)
{
    pthread_mutex_lock(&sp->mu);
    int id = sp->nclients < COL_SPOOL_MAX_CLIENTS ? sp->nclients++ : -1;
    if (id >= 0)
        sp->clients[id] = (spool_client_t){cb, opaque};
    pthread_mutex_unlock(&sp->mu);
    return id;
}

int col_spool_append(col_spool_t *sp, int client, col_spool_rec_t *rec)
{
    spool_rec_t *r = (spool_rec_t *)rec;
    uint64_t size = rec_size(rec);

    pthread_mutex_lock(&sp->mu);
    uint64_t used = (sp->durable_end - sp->cursor) + sp->queued_bytes;
    if (sp->closing || client < 0 || client >= sp->nclients || used + size > sp->max_bytes) {
        pthread_mutex_unlock(&sp->mu);
        atomic_fetch_add(&sp->append_failed, 1);
        return -1;
    }
    r->client = client;
    rec->next = NULL;
    if (rec->in_doubt)
        atomic_fetch_add(&sp->doubt_appended, 1);
    if (sp->queue_tail != NULL)
        sp->queue_tail->pub.next = rec;
    else
        sp->queue_head = r;
    sp->queue_tail = r;
    sp->queued_bytes += size;
    atomic_store(&sp->active, true);
    update_bytes_locked(sp);
    pthread_cond_signal(&sp->writer_cv);
    pthread_mutex_unlock(&sp->mu);
    return 0;
}

bool col_spool_active(col_spool_t *sp)
{
    return atomic_load_explicit(&sp->active, memory_order_relaxed);
}

bool col_spool_kafka_reachable(col_spool_t *sp)
{
    return atomic_load_explicit(&sp->reachable, memory_order_relaxed);
}

void col_spool_report_outage(col_spool_t *sp)
{
    if (atomic_exchange(&sp->reachable, false)) {
        at_log(AT_LOG_WARN, "spool", "kafka unreachable (delivery failed); spooling", NULL);
        pthread_mutex_lock(&sp->mu);
        pthread_cond_broadcast(&sp->replay_cv);
        pthread_mutex_unlock(&sp->mu);
    }
}

void col_spool_partition_suspect(col_spool_t *sp, int topic, int32_t partition, const char *why)
{
    if (topic < 0 || topic >= (int)sp->ntopics || partition < 0 || partition >= COL_SPOOL_MAX_PARTITIONS)
        return;
    if (!atomic_exchange(&sp->suspect[topic][partition], 1)) {
        atomic_fetch_add(&sp->suspects, 1);
        /* One line per partition, but at most 10 a minute: a broker of a big cluster leads
         * many partitions. */
        uint64_t minute = now_ms() / 60000, seen = atomic_load(&sp->suspect_log_minute);
        if (seen != minute && atomic_compare_exchange_strong(&sp->suspect_log_minute, &seen, minute))
            atomic_store(&sp->suspect_logged, 0);
        unsigned n = atomic_fetch_add(&sp->suspect_logged, 1);
        char part[48];
        snprintf(part, sizeof(part), "%s/%d", sp->topics[topic], (int)partition);
        if (n < 10)
            at_log(AT_LOG_WARN, "spool", "partition not answering: its events go to the spool", "partition", part,
                   "reason", why, NULL);
        else if (n == 10)
            at_log(AT_LOG_WARN, "spool", "more partitions not answering; no more of these lines this minute "
                                         "(adtrack_spool_partitions_suspect)", NULL);
        pthread_mutex_lock(&sp->mu);
        pthread_cond_broadcast(&sp->replay_cv);
        pthread_mutex_unlock(&sp->mu);
    }
}

void col_spool_partition_clear(col_spool_t *sp, int topic, int32_t partition)
{
    if (topic < 0 || topic >= (int)sp->ntopics || partition < 0 || partition >= COL_SPOOL_MAX_PARTITIONS)
        return;
    if (atomic_load_explicit(&sp->suspect[topic][partition], memory_order_relaxed) &&
        atomic_exchange(&sp->suspect[topic][partition], 0)) {
        char part[48];
        snprintf(part, sizeof(part), "%s/%d", sp->topics[topic], (int)partition);
        at_log(AT_LOG_INFO, "spool", "partition back: its events go to Kafka directly again", "partition", part, NULL);
    }
}

bool col_spool_partition_is_suspect(col_spool_t *sp, int topic, int32_t partition)
{
    if (topic < 0 || topic >= (int)sp->ntopics || partition < 0 || partition >= COL_SPOOL_MAX_PARTITIONS)
        return false;
    return atomic_load_explicit(&sp->suspect[topic][partition], memory_order_relaxed) != 0;
}

void col_spool_set_original_timeout(col_spool_t *sp, int ms)
{
    atomic_store(&sp->doubt_settle_ms, ms + DOUBT_SETTLE_MS);
}

int col_spool_broker_down(col_spool_t *sp, int32_t broker_id)
{
    int n = 0;
    char why[64];
    snprintf(why, sizeof(why), "connection to broker %d lost", (int)broker_id);
    for (size_t t = 0; t < sp->ntopics; t++) {
        int32_t cnt = AT_MIN(atomic_load(&sp->nparts[t]), COL_SPOOL_MAX_PARTITIONS);
        for (int32_t p = 0; p < cnt; p++)
            if (atomic_load_explicit(&sp->leader[t][p], memory_order_relaxed) == broker_id) {
                col_spool_partition_suspect(sp, (int)t, p, why);
                n++;
            }
    }
    return n;
}

int32_t col_spool_partition_count(col_spool_t *sp, int topic)
{
    return topic >= 0 && topic < (int)sp->ntopics ? atomic_load_explicit(&sp->nparts[topic], memory_order_relaxed) : 0;
}

col_part_fn col_spool_partitioner(col_spool_t *sp)
{
    return sp->partitioner;
}

bool col_spool_full(col_spool_t *sp)
{
    return atomic_load_explicit(&sp->bytes, memory_order_relaxed) >= sp->max_bytes;
}

void col_spool_get_stats(col_spool_t *sp, col_spool_stats_t *out)
{
    out->appended = atomic_load(&sp->appended);
    out->append_failed = atomic_load(&sp->append_failed);
    out->fsyncs = atomic_load(&sp->fsyncs);
    out->replayed = atomic_load(&sp->replayed);
    out->replay_failures = atomic_load(&sp->replay_failures);
    out->dead_lettered = atomic_load(&sp->dead_lettered);
    out->doubt_appended = atomic_load(&sp->doubt_appended);
    out->doubt_found = atomic_load(&sp->doubt_found);
    out->doubt_resent = atomic_load(&sp->doubt_resent);
    out->suspects = atomic_load(&sp->suspects);
    out->bytes = atomic_load(&sp->bytes);
    out->kafka_reachable = atomic_load(&sp->reachable);
}

void col_spool_close(col_spool_t *sp, int replay_wait_ms)
{
    if (sp == NULL)
        return;
    pthread_mutex_lock(&sp->mu);
    sp->closing = true;
    pthread_cond_broadcast(&sp->writer_cv);
    pthread_mutex_unlock(&sp->mu);
    pthread_join(sp->writer_tid, NULL);

    /* Let the replayer move what Kafka will take now; the rest waits on disk. */
    uint64_t deadline = now_ms() + (uint64_t)AT_MAX(replay_wait_ms, 0);
    pthread_mutex_lock(&sp->mu);
    while (sp->cursor < sp->durable_end && atomic_load(&sp->reachable) && now_ms() < deadline) {
        struct timespec ts;
        deadline_in(&ts, 100);
        pthread_cond_timedwait(&sp->replay_cv, &sp->mu, &ts);
    }
    sp->stop_replay = true;
    atomic_store(&sp->stopping, true);
    pthread_cond_broadcast(&sp->replay_cv);
    pthread_mutex_unlock(&sp->mu);
    pthread_join(sp->replay_tid, NULL);
    pthread_mutex_lock(&sp->mu);
    sp->stop_prober = true;
    pthread_cond_broadcast(&sp->prober_cv);
    pthread_mutex_unlock(&sp->mu);
    pthread_join(sp->prober_tid, NULL);

    for (size_t i = 0; i < sp->ntopics; i++) {
        rd_kafka_topic_destroy(sp->rkt[i]);
        free(sp->topics[i]);
    }
    rd_kafka_destroy(sp->rk);
    col_doubt_destroy(sp->doubt);
    if (sp->doubt_conf != NULL)
        rd_kafka_conf_destroy(sp->doubt_conf);
    close(sp->log_fd);
    close(sp->cursor_fd);
    if (sp->dead_fd >= 0)
        close(sp->dead_fd);
    pthread_cond_destroy(&sp->writer_cv);
    pthread_cond_destroy(&sp->replay_cv);
    pthread_cond_destroy(&sp->prober_cv);
    pthread_mutex_destroy(&sp->fate_mu);
    free(sp->fates);
    pthread_mutex_destroy(&sp->mu);
    free(sp->dir);
    free(sp);
}
