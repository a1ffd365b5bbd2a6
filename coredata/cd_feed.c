/*
 * cd_feed.c: the upstream feed: consumes adtrack.coredata.updates (consumer group
 * adtrack-coredata), one JSON update per message (format: cd_update_parse in cd_doc.h).
 *
 * Valid updates go through the core worker exactly like API writes. An update that is
 * invalid, or that the core refuses (unknown entity, stale version), is produced to the
 * rejected topic as
 *   {"source":"coredata.updates","reason":"<code>","detail":"<field: expected ...; ...>",
 *    "errors":[{"field","expected"}...],"topic","partition","offset","raw":"<message, cut to 2048 bytes>"}
 * with reason malformed_json, invalid_update, not_found or version_conflict.
 *
 * At least once: an offset is stored (and auto-committed) only after its update was
 * applied by the store or its rejected record was acknowledged by Kafka; a store that is
 * unavailable is retried, the consumer waiting meanwhile. A redelivered put creates one more
 * version of the same content, which subscribers handle like any change.
 *
 * @locality: its own thread.
 */
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "at_kafka.h"
#include "at_log.h"
#include "cd_server.h"

#define COMP "coredata"

struct cd_feed_s {
    const cd_conf_t *conf;
    cd_core_t *core;
    rd_kafka_t *consumer;
    rd_kafka_t *producer; /* rejected records */
    pthread_t tid;
    bool started;
    atomic_bool stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    at_counter_t *applied, *rejected[4];
};

static const char *reasons[] = {"malformed_json", "invalid_update", "not_found", "version_conflict"};

static void on_done(cd_req_t *r, void *opaque)
{
    cd_feed_t *f = opaque;
    AT_UNUSED(r);
    pthread_mutex_lock(&f->mu);
    f->done = true;
    pthread_cond_signal(&f->cv);
    pthread_mutex_unlock(&f->mu);
}

static volatile int delivery_state; /* 0 pending, 1 ok, -1 failed: one message at a time */

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    AT_UNUSED(rk);
    AT_UNUSED(opaque);
    delivery_state = m->err == RD_KAFKA_RESP_ERR_NO_ERROR ? 1 : -1;
}

/* Produces the rejected record and waits for its acknowledgement, retrying until it is
 * acknowledged or the feed stops. 0 when acknowledged. */
static int reject(cd_feed_t *f, const rd_kafka_message_t *m, int reason, const char *detail, const cd_verrs_t *errs)
{
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&doc, "source", "coredata.updates");
    BSON_APPEND_UTF8(&doc, "reason", reasons[reason]);
    BSON_APPEND_UTF8(&doc, "detail", detail);
    if (errs != NULL && errs->count > 0)
        cd_verrs_append(errs, &doc);
    BSON_APPEND_UTF8(&doc, "topic", rd_kafka_topic_name(m->rkt));
    BSON_APPEND_INT32(&doc, "partition", m->partition);
    BSON_APPEND_INT64(&doc, "offset", m->offset);
    char *raw = cd_utf8_sanitize(m->payload ? m->payload : "", m->len, CD_RAW_MAX);
    BSON_APPEND_UTF8(&doc, "raw", raw);
    bson_free(raw);
    size_t len;
    char *json = bson_as_relaxed_extended_json(&doc, &len);
    bson_destroy(&doc);
    if (reason >= 0 && reason < 4)
        at_counter_add(f->rejected[reason], 1);
    int rc = -1;
    while (json != NULL && !atomic_load(&f->stop)) {
        delivery_state = 0;
        rd_kafka_resp_err_t err = rd_kafka_producev(
            f->producer, RD_KAFKA_V_TOPIC(f->conf->topic_rejected), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
            RD_KAFKA_V_KEY(m->key ? m->key : "coredata", m->key ? m->key_len : 8), RD_KAFKA_V_VALUE(json, len),
            RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            while (delivery_state == 0 && !atomic_load(&f->stop))
                rd_kafka_poll(f->producer, 100);
            if (delivery_state == 1) {
                rc = 0;
                break;
            }
        }
        at_log(AT_LOG_WARN, COMP, "rejected update not acknowledged; retrying", NULL);
        sleep(1);
    }
    bson_free(json);
    return rc;
}

/* Handles one message; returns 0 when its offset may be stored. */
static int handle(cd_feed_t *f, const rd_kafka_message_t *m)
{
    cd_verrs_t errs = {0};
    bool malformed = false;
    char detail[1024];
    cd_req_t *r = cd_req_new();
    if (r == NULL)
        return -1;
    cd_update_free(&r->u);
    if (cd_update_parse(m->payload ? m->payload : "", m->len, &r->u, &errs, &malformed) != 0) {
        cd_verrs_summary(&errs, detail, sizeof(detail));
        int rc = reject(f, m, malformed ? 0 : 1, detail, &errs);
        cd_req_free(r);
        return rc;
    }
    for (;;) {
        r->done = on_done;
        r->opaque = f;
        f->done = false;
        if (cd_core_submit(f->core, r) != 0) {
            /* Queue full: wait a little, as an HTTP client would after a 503. */
            usleep(50 * 1000);
            if (atomic_load(&f->stop)) {
                cd_req_free(r);
                return -1;
            }
            continue;
        }
        pthread_mutex_lock(&f->mu);
        while (!f->done)
            pthread_cond_wait(&f->cv, &f->mu);
        pthread_mutex_unlock(&f->mu);
        if (r->status != 503 && r->status != 500)
            break;
        /* The store is unavailable: keep the update (and the offset) until it comes back. */
        at_log(AT_LOG_WARN, COMP, "update not stored yet; retrying", "error", r->msg, NULL);
        sleep(1);
        if (atomic_load(&f->stop)) {
            cd_req_free(r);
            return -1;
        }
        if (r->doc != NULL) {
            bson_destroy(r->doc);
            r->doc = NULL;
        }
    }
    int rc = 0;
    if (r->status == 200 || r->status == 201) {
        at_counter_add(f->applied, 1);
    } else if (r->status == 400) {
        cd_verrs_summary(&r->errs, detail, sizeof(detail));
        rc = reject(f, m, 1, detail, &r->errs);
    } else {
        rc = reject(f, m, r->status == 404 ? 2 : 3, r->msg, NULL);
    }
    cd_req_free(r);
    return rc;
}

static void *feed_main(void *arg)
{
    cd_feed_t *f = arg;
    while (!atomic_load(&f->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(f->consumer, 200);
        rd_kafka_poll(f->producer, 0);
        if (m == NULL)
            continue;
        if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                at_log(AT_LOG_WARN, COMP, "updates feed: consumer error", "error", rd_kafka_message_errstr(m), NULL);
            rd_kafka_message_destroy(m);
            continue;
        }
        if (handle(f, m) == 0)
            rd_kafka_offset_store(m->rkt, m->partition, m->offset);
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

cd_feed_t *cd_feed_new(const cd_conf_t *conf, cd_core_t *core, at_metrics_t *metrics, at_err_t *err)
{
    cd_feed_t *f = calloc(1, sizeof(*f));
    char errstr[512];
    if (f == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    f->conf = conf;
    f->core = core;
    atomic_init(&f->stop, false);
    pthread_mutex_init(&f->mu, NULL);
    pthread_cond_init(&f->cv, NULL);
    f->applied = at_metrics_counter(metrics, "adtrack_coredata_feed_applied_total", NULL,
                                    "Updates from the updates topic that were applied.");
    for (int i = 0; i < 4; i++) {
        char lbl[64];
        snprintf(lbl, sizeof(lbl), "reason=\"%s\"", reasons[i]);
        f->rejected[i] = at_metrics_counter(metrics, "adtrack_coredata_feed_rejected_total", lbl,
                                            "Updates from the updates topic sent to the rejected topic, by reason.");
    }

    const char *cdefaults[] = {
        "group.id", conf->group,         "enable.auto.commit", "true", "enable.auto.offset.store",
        "false",    "auto.offset.reset", "earliest",           NULL};
    rd_kafka_conf_t *cc = at_kafka_conf_new(conf->brokers, &conf->kafka, cdefaults, &conf->kafka_prop, err);
    if (cc == NULL)
        goto fail;
    f->consumer = rd_kafka_new(RD_KAFKA_CONSUMER, cc, errstr, sizeof(errstr));
    if (f->consumer == NULL) {
        rd_kafka_conf_destroy(cc);
        at_err_set(err, AT_ERR_INVALID, "kafka consumer: %s", errstr);
        goto fail;
    }
    rd_kafka_poll_set_consumer(f->consumer);

    const char *pdefaults[] = {"linger.ms", "0", "enable.idempotence", "true", "acks", "all", NULL};
    rd_kafka_conf_t *pc = at_kafka_conf_new(conf->brokers, &conf->kafka, pdefaults, &conf->kafka_prop, err);
    if (pc == NULL)
        goto fail;
    rd_kafka_conf_set_dr_msg_cb(pc, on_delivery);
    f->producer = rd_kafka_new(RD_KAFKA_PRODUCER, pc, errstr, sizeof(errstr));
    if (f->producer == NULL) {
        rd_kafka_conf_destroy(pc);
        at_err_set(err, AT_ERR_INVALID, "kafka producer: %s", errstr);
        goto fail;
    }
    return f;
fail:
    cd_feed_destroy(f);
    return NULL;
}

int cd_feed_start(cd_feed_t *f, at_err_t *err)
{
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, f->conf->topic_updates, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t e = rd_kafka_subscribe(f->consumer, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return at_err_set(err, AT_ERR_INVALID, "--topic-updates: subscribe: %s", rd_kafka_err2str(e));
    if (pthread_create(&f->tid, NULL, feed_main, f) != 0)
        return at_err_set(err, AT_ERR_INTERNAL, "feed: cannot start thread");
    f->started = true;
    return 0;
}

void cd_feed_stop(cd_feed_t *f)
{
    if (f == NULL || !f->started)
        return;
    atomic_store(&f->stop, true);
    pthread_join(f->tid, NULL);
    f->started = false;
    rd_kafka_consumer_close(f->consumer);
}

void cd_feed_destroy(cd_feed_t *f)
{
    if (f == NULL)
        return;
    cd_feed_stop(f);
    if (f->consumer != NULL)
        rd_kafka_destroy(f->consumer);
    if (f->producer != NULL) {
        rd_kafka_flush(f->producer, 2000);
        rd_kafka_destroy(f->producer);
    }
    pthread_mutex_destroy(&f->mu);
    pthread_cond_destroy(&f->cv);
    free(f);
}
