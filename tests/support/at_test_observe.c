/*
 * at_test_observe.c: see at_test_observe.h.
 *
 * Each Kafka helper makes a short-lived client of its own, so a test can call it between any
 * two steps without sharing librdkafka state with the processes under test.
 */
#include "at_test_observe.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>

#include "at_common.h"
#include "at_test_support.h"

/* Calls @p fn for each sample line of @p port's /metrics; returns false if unreadable. */
typedef void (*ts_sample_fn)(const char *line, size_t len, void *opaque);

static bool ts_metrics_each(int port, ts_sample_fn fn, void *opaque)
{
    ts_http_resp_t r = {0};
    if (ts_http(port, "GET", "/metrics", NULL, NULL, 0, &r, 5000) != 0 || r.status != 200 || r.body == NULL) {
        ts_http_resp_free(&r);
        return false;
    }
    for (const char *line = r.body; *line != '\0';) {
        const char *nl = strchr(line, '\n');
        size_t len = nl != NULL ? (size_t)(nl - line) : strlen(line);
        if (len > 0 && line[0] != '#')
            fn(line, len, opaque);
        if (nl == NULL)
            break;
        line = nl + 1;
    }
    ts_http_resp_free(&r);
    return true;
}

typedef struct ts_metric_q_s {
    const char *name;
    bool exact; /* name is a whole series (name + labels) */
    double sum;
    bool found;
} ts_metric_q_t;

static void ts_metric_match(const char *line, size_t len, void *opaque)
{
    ts_metric_q_t *q = opaque;
    size_t nlen = strlen(q->name);
    if (len <= nlen || strncmp(line, q->name, nlen) != 0)
        return;
    char next = line[nlen];
    if (next != ' ' && (q->exact || next != '{'))
        return;
    /* The value is the last blank-separated field (no timestamps are written). */
    const char *sp = line + len;
    while (sp > line && sp[-1] != ' ')
        sp--;
    char num[64];
    size_t vlen = (size_t)(line + len - sp);
    if (vlen == 0 || vlen >= sizeof(num))
        return;
    memcpy(num, sp, vlen);
    num[vlen] = '\0';
    q->sum += strtod(num, NULL);
    q->found = true;
}

double ts_metric_sum(int port, const char *name)
{
    ts_metric_q_t q = {.name = name};
    if (!ts_metrics_each(port, ts_metric_match, &q) || !q.found)
        return -1;
    return q.sum;
}

double ts_metric(int port, const char *series)
{
    ts_metric_q_t q = {.name = series, .exact = true};
    if (!ts_metrics_each(port, ts_metric_match, &q) || !q.found)
        return -1;
    return q.sum;
}

bson_t *ts_json_file(const char *path)
{
    bson_error_t e;
    bson_json_reader_t *rd = bson_json_reader_new_from_file(path, &e);
    if (rd == NULL) {
        fprintf(stderr, "[observe] %s: %s\n", path, e.message);
        return NULL;
    }
    bson_t *b = bson_new();
    if (bson_json_reader_read(rd, b, &e) != 1) {
        fprintf(stderr, "[observe] %s: not one JSON document (%s)\n", path, e.message);
        bson_destroy(b);
        b = NULL;
    }
    bson_json_reader_destroy(rd);
    return b;
}

bool ts_json_num(const bson_t *b, const char *path, double *out)
{
    bson_iter_t it, found;
    if (b == NULL || !bson_iter_init(&it, b) || !bson_iter_find_descendant(&it, path, &found) ||
        !BSON_ITER_HOLDS_NUMBER(&found))
        return false;
    *out = bson_iter_as_double(&found);
    return true;
}

double ts_report_max_p99_us(const bson_t *report, double from_s, double to_s)
{
    bson_iter_t it, points;
    double worst = -1;
    if (report == NULL || !bson_iter_init(&it, report) || !bson_iter_find_descendant(&it, "timeline.points", &points) ||
        !BSON_ITER_HOLDS_ARRAY(&points) || !bson_iter_recurse(&points, &it))
        return -1;
    while (bson_iter_next(&it)) {
        bson_iter_t p, t, p99;
        if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &p))
            continue;
        bson_iter_t p2 = p;
        if (!bson_iter_find(&p, "t") || !BSON_ITER_HOLDS_NUMBER(&p) || !bson_iter_find(&p2, "p99_us") ||
            !BSON_ITER_HOLDS_NUMBER(&p2))
            continue;
        t = p;
        p99 = p2;
        double ts = bson_iter_as_double(&t);
        if (ts >= from_s && ts < to_s && bson_iter_as_double(&p99) > worst)
            worst = bson_iter_as_double(&p99);
    }
    return worst;
}

/* A client of our own (producer: no group, nothing joins anything). */
static rd_kafka_t *ts_observer(const char *bootstraps, const char *group)
{
    char errstr[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        (group != NULL && rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)) {
        fprintf(stderr, "[observe] kafka conf: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(group != NULL ? RD_KAFKA_CONSUMER : RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "[observe] kafka client: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
    }
    return rk;
}

int ts_topic_layout(const char *bootstraps, const char *topic, ts_part_t *parts, int max)
{
    rd_kafka_t *rk = ts_observer(bootstraps, NULL);
    if (rk == NULL)
        return -1;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    const struct rd_kafka_metadata *md = NULL;
    int n = -1;
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
        md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
        const rd_kafka_metadata_topic_t *t = &md->topics[0];
        n = t->partition_cnt;
        for (int i = 0; i < t->partition_cnt; i++) {
            const rd_kafka_metadata_partition_t *p = &t->partitions[i];
            if (p->id < 0 || p->id >= max)
                continue;
            ts_part_t *out = &parts[p->id];
            memset(out, 0, sizeof(*out));
            out->leader = p->err == RD_KAFKA_RESP_ERR_NO_ERROR ? p->leader : -1;
            out->nreplicas = p->replica_cnt;
            out->nisr = p->isr_cnt;
            for (int j = 0; j < p->isr_cnt; j++)
                if (p->isrs[j] >= 0 && p->isrs[j] <= TS_MAX_BROKER_ID)
                    out->isr_has[p->isrs[j]] = true;
        }
    }
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return n;
}

int ts_group_offsets(const char *bootstraps, const char *group, const char *topic, int nparts, int64_t *committed,
                     int64_t *high)
{
    /* A consumer handle with the group's id answers OffsetFetch for it; it never subscribes,
     * so it never joins the group or disturbs its members. */
    rd_kafka_t *rk = ts_observer(bootstraps, group);
    if (rk == NULL)
        return -1;
    int rc = 0;
    if (committed != NULL) {
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(nparts);
        for (int p = 0; p < nparts; p++)
            rd_kafka_topic_partition_list_add(parts, topic, p);
        rd_kafka_resp_err_t e = rd_kafka_committed(rk, parts, 10000);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "[observe] committed offsets of %s: %s\n", group, rd_kafka_err2str(e));
            rc = -1;
        }
        for (int i = 0; rc == 0 && i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (p >= 0 && p < nparts)
                committed[p] = parts->elems[i].err == RD_KAFKA_RESP_ERR_NO_ERROR && parts->elems[i].offset >= 0
                                   ? parts->elems[i].offset
                                   : -1;
        }
        rd_kafka_topic_partition_list_destroy(parts);
    }
    for (int p = 0; rc == 0 && high != NULL && p < nparts; p++) {
        int64_t lo = 0, hi = 0;
        rd_kafka_resp_err_t e = rd_kafka_query_watermark_offsets(rk, topic, p, &lo, &hi, 10000);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            fprintf(stderr, "[observe] watermarks of %s/%d: %s\n", topic, p, rd_kafka_err2str(e));
            rc = -1;
        }
        high[p] = hi;
    }
    rd_kafka_destroy(rk);
    return rc;
}

int ts_group_assignment(const char *bootstraps, const char *group, const char *client_id, const char *topic,
                        bool *owned, int nparts)
{
    rd_kafka_t *rk = ts_observer(bootstraps, NULL);
    if (rk == NULL)
        return -1;
    memset(owned, 0, (size_t)nparts * sizeof(*owned));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    const char *groups[] = {group};
    rd_kafka_DescribeConsumerGroups(rk, groups, 1, NULL, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, 10000);
    int n = -1;
    if (ev == NULL) {
        fprintf(stderr, "[observe] DescribeConsumerGroups %s: no answer within 10 s\n", group);
    } else if (rd_kafka_event_error(ev) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "[observe] DescribeConsumerGroups %s: %s\n", group, rd_kafka_event_error_string(ev));
    } else {
        size_t ng = 0;
        const rd_kafka_ConsumerGroupDescription_t **gs =
            rd_kafka_DescribeConsumerGroups_result_groups(rd_kafka_event_DescribeConsumerGroups_result(ev), &ng);
        const rd_kafka_error_t *gerr = ng == 1 ? rd_kafka_ConsumerGroupDescription_error(gs[0]) : NULL;
        if (ng != 1 || gerr != NULL) {
            fprintf(stderr, "[observe] DescribeConsumerGroups %s: %s\n", group,
                    gerr != NULL ? rd_kafka_error_string(gerr) : "no group in the answer");
        } else {
            n = 0;
            for (size_t m = 0; m < rd_kafka_ConsumerGroupDescription_member_count(gs[0]); m++) {
                const rd_kafka_MemberDescription_t *md = rd_kafka_ConsumerGroupDescription_member(gs[0], m);
                if (strcmp(rd_kafka_MemberDescription_client_id(md), client_id) != 0)
                    continue;
                const rd_kafka_topic_partition_list_t *l =
                    rd_kafka_MemberAssignment_partitions(rd_kafka_MemberDescription_assignment(md));
                for (int i = 0; l != NULL && i < l->cnt; i++) {
                    int32_t p = l->elems[i].partition;
                    if (strcmp(l->elems[i].topic, topic) == 0 && p >= 0 && p < nparts && !owned[p]) {
                        owned[p] = true;
                        n++;
                    }
                }
            }
        }
    }
    if (ev != NULL)
        rd_kafka_event_destroy(ev);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return n;
}
