/*
 * col_doubt.c: looks for events in doubt in Kafka (see col_doubt.h).
 *
 * One partition at a time: its watermarks, a start offset (by timestamp, else the last
 * COL_DOUBT_SCAN_MAX messages), then a plain assign-and-read up to the high watermark seen
 * at the start, comparing every message with the items of that partition. Items are few
 * (those in flight when a connection broke), so the comparison is a short list walk.
 */
#include "col_doubt.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "at_kafka.h"
#include "at_log.h"

struct col_doubt_s {
    rd_kafka_t *rk;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    AT_UNUSED(rk);
    AT_UNUSED(opaque);
    at_kafka_log_client_error("spool", err, reason);
}

col_doubt_t *col_doubt_new(rd_kafka_conf_t *conf, at_err_t *err)
{
    char errstr[256], group[64];
    /* assign() wants a group id; nothing joins a group or commits. */
    snprintf(group, sizeof(group), "adtrack-collector-doubt-%ld", (long)getpid());
    const char *props[][2] = {{"group.id", group},
                              {"enable.auto.commit", "false"},
                              {"enable.auto.offset.store", "false"},
                              {"enable.partition.eof", "true"},
                              {"auto.offset.reset", "earliest"},
                              {"fetch.wait.max.ms", "50"}};
    for (size_t i = 0; i < AT_ARRAY_LEN(props); i++)
        if (at_kafka_conf_set(conf, props[i][0], props[i][1], err) != 0) {
            rd_kafka_conf_destroy(conf);
            return NULL;
        }
    rd_kafka_conf_set_error_cb(conf, on_error);
    col_doubt_t *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        rd_kafka_conf_destroy(conf);
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    d->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (d->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        free(d);
        at_err_set(err, AT_ERR_INVALID, "spool check consumer: %s", errstr);
        return NULL;
    }
    rd_kafka_poll_set_consumer(d->rk);
    return d;
}

void col_doubt_destroy(col_doubt_t *d)
{
    if (d == NULL)
        return;
    rd_kafka_consumer_close(d->rk);
    rd_kafka_destroy(d->rk);
    free(d);
}

/* The offset of the first message at or after @p ts_ms; -1 when the broker has none, or
 * cannot look offsets up by time. -2 on a request error. */
static int64_t offset_for_time(rd_kafka_t *rk, const char *topic, int32_t partition, int64_t ts_ms, int timeout_ms)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, partition)->offset = ts_ms;
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, l, timeout_ms);
    int64_t off = -2;
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && l->elems[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
        off = l->elems[0].offset < 0 ? -1 : l->elems[0].offset;
    rd_kafka_topic_partition_list_destroy(l);
    return off;
}

/* Checks the items of one partition (@p idx, @p nidx of them). */
static int check_partition(col_doubt_t *d, col_doubt_item_t *items, const size_t *idx, size_t nidx, int64_t deadline,
                           const atomic_bool *cancel, at_err_t *err)
{
    const char *topic = items[idx[0]].topic;
    int32_t part = items[idx[0]].partition;
    int64_t ts_min = items[idx[0]].ts_ms;
    for (size_t k = 1; k < nidx; k++)
        ts_min = AT_MIN(ts_min, items[idx[k]].ts_ms);

    /* The watermarks through offsets_for_times (the times END and BEGINNING): in librdkafka
     * 2.0.2, rd_kafka_query_watermark_offsets() does not honour its timeout while the
     * partition's cached leader is down (librdkafka #2588, fixed in 2.3.0), which held the
     * replayer for minutes (found on real Kafka with a broker killed and left down). */
    int64_t lo = offset_for_time(d->rk, topic, part, RD_KAFKA_OFFSET_BEGINNING,
                                 (int)AT_MAX(deadline - mono_ms(), (int64_t)1));
    int64_t hi = offset_for_time(d->rk, topic, part, RD_KAFKA_OFFSET_END, (int)AT_MAX(deadline - mono_ms(), (int64_t)1));
    if (lo < 0 || hi < 0)
        return at_err_set(err, AT_ERR_UNAVAILABLE, "%s [%d]: the partition's offsets are not known now", topic,
                          (int)part);
    rd_kafka_resp_err_t kerr;
    if (hi <= lo)
        return 0; /* empty: nothing there */

    int64_t start = offset_for_time(d->rk, topic, part, AT_MAX(ts_min - COL_DOUBT_LOOKBACK_MS, (int64_t)0),
                                    (int)AT_MAX(deadline - mono_ms(), (int64_t)1));
    if (start == -2)
        return at_err_set(err, AT_ERR_UNAVAILABLE, "%s [%d]: offset lookup by time failed", topic, (int)part);
    if (start == -1) {
        /* None at or after that time, or a broker that cannot tell: asking for the time 0 of a
         * non-empty partition tells which. */
        int64_t probe = offset_for_time(d->rk, topic, part, 0, (int)AT_MAX(deadline - mono_ms(), (int64_t)1));
        if (probe == -2)
            return at_err_set(err, AT_ERR_UNAVAILABLE, "%s [%d]: offset lookup by time failed", topic, (int)part);
        if (probe >= 0)
            return 0; /* it can tell: nothing that recent, so the events are not there */
        start = hi - COL_DOUBT_SCAN_MAX;
    }
    if (start < lo && lo > 0) {
        /* Retention already deleted part of what should be read: an event in doubt that was
         * there is no longer seen, and will be sent again (stored twice, never lost). */
        at_log(AT_LOG_WARN, "spool", "events in doubt: Kafka no longer holds all the messages around their time; "
                                     "any that were stored are sent again", "topic", topic, NULL);
    }
    start = AT_MAX(start, lo);
    if (start >= hi)
        return 0;

    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(l, topic, part)->offset = start;
    kerr = rd_kafka_assign(d->rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
        return at_err_set(err, AT_ERR_UNAVAILABLE, "%s [%d]: assign: %s", topic, (int)part, rd_kafka_err2str(kerr));

    int64_t next = start;
    size_t left_items = nidx;
    int rc = 0;
    while (next < hi && left_items > 0) {
        int64_t now = mono_ms();
        if (cancel != NULL && atomic_load(cancel)) {
            rc = at_err_set(err, AT_ERR_UNAVAILABLE, "%s [%d]: stopped", topic, (int)part);
            break;
        }
        if (now >= deadline) {
            rc = at_err_set(err, AT_ERR_TIMEOUT, "%s [%d]: read up to offset %lld of %lld in time", topic, (int)part,
                            (long long)next, (long long)hi);
            break;
        }
        rd_kafka_message_t *m = rd_kafka_consumer_poll(d->rk, (int)AT_MIN(deadline - now, (int64_t)200));
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            next = AT_MAX(next, m->offset);
        } else if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR && m->partition == part) {
            for (size_t k = 0; k < nidx; k++) {
                col_doubt_item_t *it = &items[idx[k]];
                if (!it->found && it->valuelen == m->len && memcmp(it->value, m->payload, m->len) == 0) {
                    it->found = true;
                    left_items--;
                }
            }
            next = m->offset + 1;
        }
        /* Other errors are transient (a broker still coming back); the deadline bounds them. */
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(d->rk, NULL);
    return rc;
}

int col_doubt_check(col_doubt_t *d, col_doubt_item_t *items, size_t n, int timeout_ms, const atomic_bool *cancel,
                    at_err_t *err)
{
    int64_t deadline = mono_ms() + timeout_ms;
    size_t *idx = malloc(AT_MAX(n, (size_t)1) * sizeof(*idx));
    bool *done = calloc(AT_MAX(n, (size_t)1), sizeof(*done));
    int rc = 0;
    if (idx == NULL || done == NULL) {
        rc = at_err_set(err, AT_ERR_NOMEM, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (done[i])
            continue;
        size_t nidx = 0;
        for (size_t j = i; j < n; j++)
            if (!done[j] && items[j].partition == items[i].partition && strcmp(items[j].topic, items[i].topic) == 0) {
                idx[nidx++] = j;
                done[j] = true;
            }
        rc = check_partition(d, items, idx, nidx, deadline, cancel, err);
    }
out:
    free(idx);
    free(done);
    return rc;
}
