/*
 * col_spool.h: the collector's local write-ahead spool.
 *
 * When Kafka cannot take an event (down, queue full, delivery timed out), the event is
 * appended to <spool-dir>/spool.log and the request is answered only after the append is
 * fsynced. Appends from all loop threads are group-committed by one writer thread: it
 * takes everything queued, writes it with one writev, calls fdatasync once, then reports
 * every record of the batch back to its submitter.
 *
 * A replay thread owns its own Kafka producer. Whenever the spool holds records past the
 * replay cursor (<spool-dir>/spool.cursor), it produces them in file order, in windows,
 * waits for their delivery reports, advances the cursor over the acknowledged prefix and
 * remembers acknowledged records beyond it so a retry never sends them twice. When the
 * cursor reaches the end and nothing is queued, the files are truncated to empty.
 * Records Kafka refuses for good (e.g. too large) go to <spool-dir>/dead-letter.log with
 * the error, fsynced, instead of blocking the spool forever.
 *
 * Loops send an event to the spool instead of Kafka while Kafka is unreachable
 * (col_spool_kafka_reachable()) or its partition is suspect (col_spool_partition_suspect()).
 *
 * Record format (little-endian): magic 0xA7 | topic u8 | key length u16 | value length u32 |
 * crc32 u32 (zlib, over topic..value) | key | value. An event Kafka may already hold (its
 * produce attempt ended "possibly persisted") has magic 0xA8 and, after the crc, the
 * partition it was sent to (i32) and its Kafka timestamp in ms (i64), both also under the
 * crc; before sending it, the replayer looks for it in that partition (col_doubt.h) and
 * skips it when it is there. A replay attempt of its own that ends possibly persisted is
 * remembered in memory and checked the same way. A torn record at the tail (crash mid-
 * write, never acknowledged) is cut off at start-up.
 */
#ifndef COL_SPOOL_H
#define COL_SPOOL_H

#include <librdkafka/rdkafka.h>
#include "at_err.h"
#include "col_part.h"

#define COL_SPOOL_MAX_TOPICS 4
#define COL_SPOOL_MAX_CLIENTS 64
#define COL_SPOOL_MAX_PARTITIONS 1024 /* per topic; beyond it partitions are not tracked */

typedef struct col_spool_s col_spool_t;

/* A record on its way into the spool. Allocated by col_spool_rec_new() as one block;
 * owned by the spool from col_spool_append() until it is handed back through the
 * client's notify callback, after which the client frees it with free(). */
typedef struct col_spool_rec_s {
    struct col_spool_rec_s *next;
    void *opaque;    /* submitter's, untouched */
    int result;      /* after notify: 0 = durable, -1 = could not be written */
    uint8_t topic;   /* index into the spool's topic list */
    uint16_t keylen;
    uint32_t valuelen;
    bool in_doubt;   /* set by col_spool_rec_set_in_doubt() */
    int32_t partition;
    int64_t ts_ms;
    char *key;       /* point into this block */
    char *value;
} col_spool_rec_t;

/* Called on the spool writer thread with a list (linked by ->next) of this client's
 * finished records; the callee takes ownership of the list and must not block. */
typedef void (*col_spool_notify_cb)(col_spool_rec_t *done, void *opaque);

typedef struct col_spool_stats_s {
    uint64_t appended, append_failed, fsyncs, replayed, replay_failures, dead_lettered;
    uint64_t doubt_appended; /* events spooled in doubt */
    uint64_t doubt_found;    /* events in doubt found in Kafka: not sent again */
    uint64_t doubt_resent;   /* events in doubt not in Kafka: sent */
    uint64_t suspects;       /* partitions marked suspect (each time one is) */
    uint64_t bytes;     /* not yet replayed, including queued appends */
    bool kafka_reachable;
} col_spool_stats_t;

/*
 * Opens (creating if needed) the spool in @p dir, cuts a torn tail, and starts the writer
 * and replay threads. @p conf is the replay producer's librdkafka conf, @p check_conf a
 * consumer conf (brokers and security) for looking up events in doubt, created the first
 * time one is replayed: both taken over on success and on failure. @p topics: @p ntopics
 * topic names (copied). Returns NULL + err.
 */
col_spool_t *col_spool_open(const char *dir, uint64_t max_bytes, rd_kafka_conf_t *conf, rd_kafka_conf_t *check_conf,
                            const char *const *topics, size_t ntopics, at_err_t *err);

/* Registers a submitter; returns its client id (>= 0) or -1. Call before traffic. */
int col_spool_register(col_spool_t *sp, col_spool_notify_cb cb, void *opaque);

/* Allocates a record holding copies of @p key and @p value. NULL on allocation failure. */
col_spool_rec_t *col_spool_rec_new(uint8_t topic, const void *key, size_t keylen, const void *value, size_t valuelen,
                                   void *opaque);

/* Marks @p rec (before col_spool_append) as possibly already in Kafka: sent to @p partition
 * with Kafka timestamp @p ts_ms, with no answer. @p token (from col_spool_fate_token(), or
 * 0) names the original while it is still being tried, so col_spool_fate() can tell the
 * replayer what became of it. */
void col_spool_rec_set_in_doubt(col_spool_rec_t *rec, int32_t partition, int64_t ts_ms, uint64_t token);

enum { COL_FATE_DELIVERED = 1, COL_FATE_FAILED = 2 };

/* A fresh token for col_spool_rec_set_in_doubt(). @locality: any thread */
uint64_t col_spool_fate_token(col_spool_t *sp);

/* The original of the copy in doubt with @p token was acknowledged by Kafka
 * (COL_FATE_DELIVERED: the replayer drops the copy without looking) or failed for good
 * (COL_FATE_FAILED: the replayer decides about the copy now). In memory only. @locality: any
 * thread */
void col_spool_fate(col_spool_t *sp, uint64_t token, int fate);

/*
 * Queues @p rec for a durable append on behalf of @p client. Returns 0 (the outcome
 * arrives through the client's notify callback), or -1 when the spool is over its size
 * limit or closing (the record stays the caller's). @locality: any thread.
 */
int col_spool_append(col_spool_t *sp, int client, col_spool_rec_t *rec);

/* True while the spool holds records not yet replayed. */
bool col_spool_active(col_spool_t *sp);

/* True once Kafka answered the replay thread's probe and no outage has been seen since. */
bool col_spool_kafka_reachable(col_spool_t *sp);

/* Marks Kafka as unreachable (a loop saw an outage-type delivery failure); the replay
 * thread probes again. @locality: any thread. */
void col_spool_report_outage(col_spool_t *sp);

/*
 * Per-partition trouble, for routing around a partition whose leader is gone while the rest
 * of Kafka works (one broker of three down): a loop marks (topic, partition) suspect when an
 * event to it waited too long or failed, and then sends that partition's events to the spool
 * at once; the replayer clears the mark when Kafka acknowledged a spooled event of that
 * partition again. @locality: any thread
 */
void col_spool_partition_suspect(col_spool_t *sp, int topic, int32_t partition, const char *why);
bool col_spool_partition_is_suspect(col_spool_t *sp, int topic, int32_t partition);
/* Kafka acknowledged an event of the partition: it is not suspect any more. */
void col_spool_partition_clear(col_spool_t *sp, int topic, int32_t partition);

/*
 * The connection to broker @p broker_id broke (a loop's client saw it): every partition that
 * broker led at the last probe becomes suspect. Returns how many. @locality: any thread
 */
int col_spool_broker_down(col_spool_t *sp, int32_t broker_id);

/*
 * How long the loops' producers keep trying an event (their message.timeout.ms): the replayer
 * decides about an event in doubt only this long (+ 2 s) after it was first produced, when
 * the first attempt is over for sure. Default: the replay producer's own timeout.
 * @locality: any thread, before traffic
 */
void col_spool_set_original_timeout(col_spool_t *sp, int ms);

/* The topic's partition count from the replayer's last metadata probe; 0 until known.
 * @locality: any thread */
int32_t col_spool_partition_count(col_spool_t *sp, int topic);

/* The partitioner the spool's producer was configured with (col_part.h); loops use the
 * same so an event keeps its partition on either path. */
col_part_fn col_spool_partitioner(col_spool_t *sp);

/* True when the spool is at or over its size limit. */
bool col_spool_full(col_spool_t *sp);

void col_spool_get_stats(col_spool_t *sp, col_spool_stats_t *out);

/*
 * Stops accepting appends, writes and fsyncs everything queued (notifying submitters),
 * gives the replay thread up to @p replay_wait_ms to finish what Kafka will take now,
 * then stops both threads and frees everything. What is not replayed stays on disk for
 * the next start. Accepts NULL.
 */
void col_spool_close(col_spool_t *sp, int replay_wait_ms);

#endif
