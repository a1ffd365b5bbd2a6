/*
 * col_doubt.h: does Kafka already hold an event whose produce attempt ended in doubt?
 *
 * A produce request that reached the broker, but whose answer never came back (the
 * connection broke, the broker went down, the message timed out while in flight), leaves
 * its events "possibly persisted" (librdkafka's RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED).
 * The collector cannot answer 2xx on a maybe, so it spools such an event; sending it again
 * blindly would store it twice whenever the broker had in fact appended it. Before the
 * spool replays an event in doubt, it asks this module, which reads the partition the event
 * was sent to, from a little before the event's timestamp up to the current end, and looks
 * for the exact bytes. Found: the event is not sent again. Not found: it is sent.
 *
 * Where the broker cannot look offsets up by time (devstream's mock cluster answers -1 to
 * every timestamp), the last COL_DOUBT_SCAN_MAX messages of the partition are read instead.
 *
 * Limit (docs/COLLECTOR.md, "Events in doubt"): only messages below the high watermark are
 * visible. One appended by a leader but not yet replicated when the check runs is not seen,
 * and is sent again if that leader later keeps it; with acks=all that takes a leader that
 * failed and came back within the check, which the check's wait for Kafka makes rare.
 */
#ifndef COL_DOUBT_H
#define COL_DOUBT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

#include "at_err.h"

#define COL_DOUBT_SCAN_MAX 200000
#define COL_DOUBT_LOOKBACK_MS 5000

typedef struct col_doubt_item_s {
    const char *topic;   /* borrowed */
    int32_t partition;   /* where the doubtful attempt went */
    int64_t ts_ms;       /* the message's Kafka timestamp (producer create time) */
    const void *value;   /* borrowed; compared byte for byte */
    size_t valuelen;
    bool found;          /* out: Kafka holds these bytes in that partition */
} col_doubt_item_t;

typedef struct col_doubt_s col_doubt_t;

/* Returns a checker that owns a consumer built from @p conf (a consumer configuration:
 * bootstrap servers and security settings; taken over on success and on failure), or NULL
 * + err. @locality: any thread; then only the thread that calls col_doubt_check() */
col_doubt_t *col_doubt_new(rd_kafka_conf_t *conf, at_err_t *err);

/*
 * Sets `found` on each of the @p n items that Kafka holds. Returns 0, or -1 + err when
 * Kafka could not be read completely within @p timeout_ms or *@p cancel (may be NULL) became
 * true meanwhile (nothing may then be concluded; try again later). @locality: the thread
 * that owns @p d
 */
int col_doubt_check(col_doubt_t *d, col_doubt_item_t *items, size_t n, int timeout_ms, const atomic_bool *cancel,
                    at_err_t *err);

/* Accepts NULL. */
void col_doubt_destroy(col_doubt_t *d);

#endif
