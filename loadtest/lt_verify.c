/*
 * lt_verify.c: reading the store back and reconciling (see lt_verify.h).
 */
#include "lt_verify.h"

#include "at_log.h"
#include "lt_buf.h"
#include "lt_client.h"

#include <bson/bson.h>
#include <dirent.h>
#include <errno.h>
#include <fnmatch.h>
#include <librdkafka/rdkafka.h>
#include <mongoc/mongoc.h>
#include <stdlib.h>
#include <time.h>

/* ---- observations ---- */

static uint64_t fnv1a(const void *p, size_t n)
{
    const unsigned char *s = p;
    uint64_t h = 0xcbf29ce484222325ULL;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

void lt_obs_clear(lt_obs_set_t *s)
{
    s->n = 0;
    s->docs = s->foreign = s->unreadable = 0;
}

void lt_obs_free(lt_obs_set_t *s)
{
    if (s == NULL)
        return;
    free(s->v);
    for (size_t i = 0; i < s->nreasons; i++)
        free(s->reasons[i]);
    memset(s, 0, sizeof(*s));
}

static uint16_t reason_index(lt_obs_set_t *s, const char *reason)
{
    if (reason == NULL || *reason == '\0')
        reason = "(none)";
    for (size_t i = 0; i < s->nreasons; i++)
        if (strcmp(s->reasons[i], reason) == 0)
            return (uint16_t)i;
    if (s->nreasons < LT_VERIFY_REASONS) {
        char *r = strndup(reason, 63);
        if (r != NULL) {
            s->reasons[s->nreasons] = r;
            return (uint16_t)s->nreasons++;
        }
    }
    return LT_VERIFY_REASONS; /* "other" */
}

int lt_obs_add(lt_obs_set_t *s, const char *run_id, const char *tag, size_t taglen, const char *id, size_t idlen,
               const char *reason, int kind)
{
    size_t rl = strlen(run_id);
    if (taglen <= rl + 1 || memcmp(tag, run_id, rl) != 0 || tag[rl] != ':')
        return 0;
    s->docs++;
    uint64_t seq = 0;
    size_t i = rl + 1;
    for (; i < taglen; i++) {
        char c = tag[i];
        if (c < '0' || c > '9' || seq > (UINT64_MAX - 9) / 10)
            break;
        seq = seq * 10 + (uint64_t)(c - '0');
    }
    if (i != taglen || taglen - rl - 1 > 19) {
        s->foreign++;
        return 0;
    }
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 1024;
        lt_obs_t *v = realloc(s->v, cap * sizeof(*v));
        if (v == NULL)
            return -1;
        s->v = v;
        s->cap = cap;
    }
    lt_obs_t *o = &s->v[s->n++];
    o->seq = seq;
    o->kind = (uint8_t)kind;
    o->idhash = id ? fnv1a(id, idlen) : 0;
    o->reason = kind == LT_OBS_REJECTED ? reason_index(s, reason) : 0;
    return 0;
}

/* The id of a document as bytes to hash: a string's text, or the raw BSON value. */
static bool id_bytes(const bson_iter_t *it, const char **p, size_t *n)
{
    if (BSON_ITER_HOLDS_UTF8(it)) {
        uint32_t l;
        *p = bson_iter_utf8(it, &l);
        *n = l;
        return true;
    }
    const bson_value_t *v = bson_iter_value((bson_iter_t *)it);
    if (v->value_type == BSON_TYPE_OID) {
        *p = (const char *)v->value.v_oid.bytes;
        *n = 12;
        return true;
    }
    return false;
}

static int add_doc(lt_obs_set_t *s, const char *run_id, const bson_t *doc, const char *raw, size_t rawlen, int kind)
{
    bson_iter_t it;
    if (!bson_iter_init_find(&it, doc, "tag") || !BSON_ITER_HOLDS_UTF8(&it))
        return 0;
    uint32_t taglen;
    const char *tag = bson_iter_utf8(&it, &taglen);
    const char *id = NULL;
    size_t idlen = 0;
    bson_iter_t f;
    if (bson_iter_init_find(&f, doc, "_id") || bson_iter_init_find(&f, doc, "id")) {
        if (!id_bytes(&f, &id, &idlen))
            id = NULL;
    }
    if (id == NULL && raw != NULL) {
        /* No id: the document itself identifies it (identical copies are redeliveries). */
        id = raw;
        idlen = rawlen;
    }
    char reason[64] = "";
    if (kind == LT_OBS_REJECTED && bson_iter_init_find(&f, doc, "reason") && BSON_ITER_HOLDS_UTF8(&f)) {
        uint32_t rl;
        const char *r = bson_iter_utf8(&f, &rl);
        snprintf(reason, sizeof(reason), "%.*s", (int)AT_MIN(rl, 63u), r);
    }
    return lt_obs_add(s, run_id, tag, taglen, id, idlen, reason, kind);
}

int lt_obs_add_json(lt_obs_set_t *s, const char *run_id, const char *json, size_t len, int kind)
{
    bson_t doc;
    bson_error_t berr;
    if (!bson_init_from_json(&doc, json, (ssize_t)len, &berr)) {
        s->unreadable++;
        return 0;
    }
    int rc = add_doc(s, run_id, &doc, json, len, kind);
    bson_destroy(&doc);
    return rc;
}

/* ---- reconciliation ---- */

static int cmp_obs(const void *a, const void *b)
{
    const lt_obs_t *x = a, *y = b;
    if (x->seq != y->seq)
        return x->seq < y->seq ? -1 : 1;
    if (x->kind != y->kind)
        return x->kind < y->kind ? -1 : 1;
    if (x->idhash != y->idhash)
        return x->idhash < y->idhash ? -1 : 1;
    return 0;
}

void lt_verify_reconcile(const lt_verify_input_t *in, lt_obs_set_t *obs, lt_verify_result_t *res)
{
    char store[sizeof(res->store)];
    memcpy(store, res->store, sizeof(store));
    memset(res, 0, sizeof(*res));
    memcpy(res->store, store, sizeof(store));
    res->docs = obs->docs;
    res->foreign = obs->foreign;
    res->unreadable = obs->unreadable;
    if (obs->n > 0)
        qsort(obs->v, obs->n, sizeof(*obs->v), cmp_obs);
    /* De-duplicate identical (seq, kind, id): a redelivery, not a duplicate event. */
    size_t w = 0;
    uint64_t redelivered = 0;
    for (size_t r = 0; r < obs->n; r++) {
        if (w > 0 && cmp_obs(&obs->v[w - 1], &obs->v[r]) == 0) {
            if (obs->v[r].kind == LT_OBS_EVENT)
                redelivered++;
            continue;
        }
        obs->v[w++] = obs->v[r];
    }
    obs->n = w;
    res->redelivered = redelivered;
    for (size_t i = 0; i < obs->nreasons; i++)
        snprintf(res->reasons[i], sizeof(res->reasons[i]), "%s", obs->reasons[i]);
    snprintf(res->reasons[LT_VERIFY_REASONS], sizeof(res->reasons[0]), "other");
    res->nreasons = obs->nreasons;

    size_t k = 0; /* cursor into obs */
    for (uint64_t seq = 0; seq < in->nseq; seq++) {
        uint64_t events = 0, rejected = 0;
        while (k < obs->n && obs->v[k].seq < seq)
            k++;
        size_t first = k;
        while (k < obs->n && obs->v[k].seq == seq) {
            if (obs->v[k].kind == LT_OBS_EVENT)
                events++;
            else
                rejected++;
            k++;
        }
        if (in->seq_state[seq] != LT_SEQ_ACKED) {
            res->unacked_found += events;
            continue;
        }
        uint64_t expected = in->seq_events ? in->seq_events[seq] : 1;
        if (expected == 0)
            expected = 1;
        res->checked_requests++;
        res->expected_events += expected;
        res->found_events += events;
        res->rejected += rejected;
        for (size_t m = first; m < k; m++)
            if (obs->v[m].kind == LT_OBS_REJECTED)
                res->reason_counts[obs->v[m].reason]++;
        if (events + rejected < expected) {
            res->lost += expected - events - rejected;
            res->lost_requests++;
            if (res->nlost_seqs < LT_VERIFY_KEEP)
                res->lost_seqs[res->nlost_seqs++] = seq;
        }
        if (events > expected) {
            res->duplicated += events - expected;
            res->duplicated_requests++;
            if (res->ndup_seqs < LT_VERIFY_KEEP)
                res->dup_seqs[res->ndup_seqs++] = seq;
        }
    }
    /* Observations past the last sequence number are not ours to judge. */
    for (; k < obs->n; k++)
        res->foreign++;
}

/* ---- stores ---- */

enum { ST_FILE, ST_KAFKA, ST_MONGO };

struct lt_store_s {
    int kind;
    char *run_id;
    /* file */
    char *dir;
    /* kafka */
    rd_kafka_t *rk;
    int nparts;
    int *part_eof; /* per assigned partition: reached the end since the last message */
    char **part_topic;
    int32_t *part_id;
    char *rejected_topic; /* "" when not read */
    /* mongo */
    mongoc_client_t *mc;
    char *db;
};

static int store_file_collect(lt_store_t *st, lt_obs_set_t *obs, at_err_t *err)
{
    lt_obs_clear(obs);
    DIR *d = opendir(st->dir);
    if (d == NULL) {
        if (errno == ENOENT)
            return 0; /* the sink may not have written anything yet */
        return at_err_set(err, AT_ERR_IO, "--verify file: cannot open directory '%s': %s", st->dir, strerror(errno));
    }
    char needle[64];
    snprintf(needle, sizeof(needle), "\"%s:", st->run_id);
    size_t nlen = strlen(needle);
    lt_buf_t path = {0}, line = {0};
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d)) != NULL) {
        int kind;
        if (fnmatch("events-*.jsonl", de->d_name, 0) == 0)
            kind = LT_OBS_EVENT;
        else if (fnmatch("rejected-*.jsonl", de->d_name, 0) == 0)
            kind = LT_OBS_REJECTED;
        else
            continue;
        lt_buf_clear(&path);
        lt_buf_printf(&path, "%s/%s", st->dir, de->d_name);
        FILE *f = path.oom ? NULL : fopen(path.data, "rb");
        if (f == NULL) {
            rc = at_err_set(err, AT_ERR_IO, "--verify file: cannot open '%s': %s", path.data ? path.data : "",
                            strerror(errno));
            break;
        }
        char *l = NULL;
        size_t cap = 0;
        ssize_t n;
        while ((n = getline(&l, &cap, f)) > 0) {
            size_t len = (size_t)n;
            while (len > 0 && (l[len - 1] == '\n' || l[len - 1] == '\r'))
                len--;
            if (len == 0)
                continue;
            /* Cheap filter first: a sink holds far more than this run. A partial last line
             * (the sink is still writing) fails to parse and is read again next round. */
            if (memmem(l, len, needle, nlen) == NULL)
                continue;
            if (lt_obs_add_json(obs, st->run_id, l, len, kind) < 0) {
                rc = at_err_set(err, AT_ERR_NOMEM, "--verify: out of memory");
                break;
            }
        }
        free(l);
        fclose(f);
    }
    closedir(d);
    lt_buf_free(&path);
    lt_buf_free(&line);
    return rc;
}

static int store_kafka_open(lt_store_t *st, const char *bootstrap, const lt_verify_opts_t *o, at_err_t *err)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char group[64];
    snprintf(group, sizeof(group), "adtrack-loadtest-verify-%s", st->run_id);
    if (rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "group.id", group, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.auto.commit", "false", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.partition.eof", "true", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "auto.offset.reset", "earliest", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(conf);
        return at_err_set(err, AT_ERR_INVALID, "--verify kafka: %s", errstr);
    }
    st->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (st->rk == NULL) {
        rd_kafka_conf_destroy(conf);
        return at_err_set(err, AT_ERR_INTERNAL, "--verify kafka: %s", errstr);
    }
    rd_kafka_poll_set_consumer(st->rk);
    const char *topics[2] = {o->topic, o->rejected_topic};
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(16);
    for (int t = 0; t < 2; t++) {
        if (topics[t] == NULL || topics[t][0] == '\0')
            continue;
        rd_kafka_topic_t *rkt = rd_kafka_topic_new(st->rk, topics[t], NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = rd_kafka_metadata(st->rk, 0, rkt, &md, 10000);
        if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
            rd_kafka_topic_destroy(rkt);
            rd_kafka_topic_partition_list_destroy(parts);
            return at_err_set(err, AT_ERR_UNAVAILABLE, "--verify kafka: no metadata from %s for %s: %s", bootstrap,
                              topics[t], rd_kafka_err2str(e));
        }
        if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            for (int p = 0; p < md->topics[0].partition_cnt; p++)
                rd_kafka_topic_partition_list_add(parts, topics[t], md->topics[0].partitions[p].id)->offset =
                    RD_KAFKA_OFFSET_BEGINNING;
        } else if (t == 0) {
            rd_kafka_resp_err_t te = md->topic_cnt == 1 ? md->topics[0].err : RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC;
            rd_kafka_metadata_destroy(md);
            rd_kafka_topic_destroy(rkt);
            rd_kafka_topic_partition_list_destroy(parts);
            return at_err_set(err, AT_ERR_NOT_FOUND, "--verify kafka: topic %s: %s", topics[t], rd_kafka_err2str(te));
        }
        rd_kafka_metadata_destroy(md);
        rd_kafka_topic_destroy(rkt);
    }
    st->nparts = parts->cnt;
    st->part_eof = calloc((size_t)parts->cnt + 1, sizeof(int));
    st->part_topic = calloc((size_t)parts->cnt + 1, sizeof(char *));
    st->part_id = calloc((size_t)parts->cnt + 1, sizeof(int32_t));
    if (st->part_eof == NULL || st->part_topic == NULL || st->part_id == NULL) {
        rd_kafka_topic_partition_list_destroy(parts);
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < parts->cnt; i++) {
        st->part_topic[i] = strdup(parts->elems[i].topic);
        st->part_id[i] = parts->elems[i].partition;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(st->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        return at_err_set(err, AT_ERR_INTERNAL, "--verify kafka: assign: %s", rd_kafka_err2str(e));
    return 0;
}

static int part_index(const lt_store_t *st, const char *topic, int32_t partition)
{
    for (int i = 0; i < st->nparts; i++)
        if (st->part_id[i] == partition && strcmp(st->part_topic[i], topic) == 0)
            return i;
    return -1;
}

/* Consumes until every partition reported its end once in this round (or 10 s passed);
 * observations accumulate over rounds. */
static int store_kafka_collect(lt_store_t *st, lt_obs_set_t *obs, const char *rejected_topic, at_err_t *err)
{
    for (int i = 0; i < st->nparts; i++)
        st->part_eof[i] = 0;
    int eofs = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (eofs < st->nparts) {
        struct timespec t1;
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (t1.tv_sec - t0.tv_sec > 10)
            break;
        rd_kafka_message_t *m = rd_kafka_consumer_poll(st->rk, 200);
        if (m == NULL)
            continue;
        const char *topic = m->rkt ? rd_kafka_topic_name(m->rkt) : "";
        int pi = part_index(st, topic, m->partition);
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            if (pi >= 0 && !st->part_eof[pi]) {
                st->part_eof[pi] = 1;
                eofs++;
            }
        } else if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
            at_log(AT_LOG_WARN, "loadtest", "verify: kafka consumer error", "error", rd_kafka_message_errstr(m), NULL);
            if (m->err == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
                rd_kafka_message_destroy(m);
                return at_err_set(err, AT_ERR_UNAVAILABLE, "--verify kafka: all brokers down");
            }
        } else if (m->payload != NULL) {
            int kind = rejected_topic[0] != '\0' && strcmp(topic, rejected_topic) == 0 ? LT_OBS_REJECTED : LT_OBS_EVENT;
            if (lt_obs_add_json(obs, st->run_id, m->payload, m->len, kind) < 0) {
                rd_kafka_message_destroy(m);
                return at_err_set(err, AT_ERR_NOMEM, "--verify: out of memory");
            }
        }
        rd_kafka_message_destroy(m);
    }
    return 0;
}

static int mongo_read(lt_store_t *st, lt_obs_set_t *obs, const char *coll, int kind, at_err_t *err)
{
    mongoc_collection_t *c = mongoc_client_get_collection(st->mc, st->db, coll);
    char re[64];
    snprintf(re, sizeof(re), "^%s:", st->run_id);
    bson_t filter = BSON_INITIALIZER, sub, opts = BSON_INITIALIZER, proj;
    BSON_APPEND_DOCUMENT_BEGIN(&filter, "tag", &sub);
    BSON_APPEND_UTF8(&sub, "$regex", re);
    bson_append_document_end(&filter, &sub);
    BSON_APPEND_DOCUMENT_BEGIN(&opts, "projection", &proj);
    BSON_APPEND_INT32(&proj, "tag", 1);
    BSON_APPEND_INT32(&proj, "id", 1);
    if (kind == LT_OBS_REJECTED)
        BSON_APPEND_INT32(&proj, "reason", 1);
    bson_append_document_end(&opts, &proj);
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(c, &filter, &opts, NULL);
    const bson_t *doc;
    int rc = 0;
    while (mongoc_cursor_next(cur, &doc)) {
        if (add_doc(obs, st->run_id, doc, (const char *)bson_get_data(doc), doc->len, kind) < 0) {
            rc = at_err_set(err, AT_ERR_NOMEM, "--verify: out of memory");
            break;
        }
    }
    bson_error_t berr;
    if (rc == 0 && mongoc_cursor_error(cur, &berr))
        rc = at_err_set(err, AT_ERR_UNAVAILABLE, "--verify mongodb: %s.%s: %s", st->db, coll, berr.message);
    mongoc_cursor_destroy(cur);
    bson_destroy(&filter);
    bson_destroy(&opts);
    mongoc_collection_destroy(c);
    return rc;
}

lt_store_t *lt_store_open(const lt_verify_opts_t *o, const char *run_id, at_err_t *err)
{
    lt_store_t *st = calloc(1, sizeof(*st));
    if (st == NULL || (st->run_id = strdup(run_id)) == NULL) {
        free(st);
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    const char *spec = o->spec;
    if (strncmp(spec, "file:", 5) == 0) {
        st->kind = ST_FILE;
        st->dir = strdup(spec + 5);
        if (st->dir == NULL || st->dir[0] == '\0') {
            at_err_set(err, AT_ERR_INVALID, "--verify file: expected file:<directory>");
            lt_store_close(st);
            return NULL;
        }
    } else if (strncmp(spec, "kafka:", 6) == 0) {
        st->kind = ST_KAFKA;
        st->rejected_topic = strdup(o->rejected_topic ? o->rejected_topic : "");
        if (spec[6] == '\0' || st->rejected_topic == NULL) {
            at_err_set(err, AT_ERR_INVALID, "--verify kafka: expected kafka:<host:port[,host:port...]>");
            lt_store_close(st);
            return NULL;
        }
        if (store_kafka_open(st, spec + 6, o, err) < 0) {
            lt_store_close(st);
            return NULL;
        }
    } else if (strncmp(spec, "mongodb://", 10) == 0 || strncmp(spec, "mongodb+srv://", 14) == 0) {
        st->kind = ST_MONGO;
        mongoc_init();
        bson_error_t berr;
        mongoc_uri_t *uri = mongoc_uri_new_with_error(spec, &berr);
        if (uri == NULL) {
            at_err_set(err, AT_ERR_INVALID, "--verify mongodb: bad URI: %s", berr.message);
            lt_store_close(st);
            return NULL;
        }
        const char *db = mongoc_uri_get_database(uri);
        st->db = strdup(db && *db ? db : o->db);
        st->mc = mongoc_client_new_from_uri(uri);
        mongoc_uri_destroy(uri);
        if (st->mc == NULL || st->db == NULL) {
            at_err_set(err, AT_ERR_INVALID, "--verify mongodb: cannot create a client");
            lt_store_close(st);
            return NULL;
        }
        mongoc_client_set_appname(st->mc, "adtrack-loadtest");
    } else {
        at_err_set(err, AT_ERR_INVALID, "--verify: expected kafka:<bootstrap>, file:<dir> or mongodb://...");
        lt_store_close(st);
        return NULL;
    }
    return st;
}

int lt_store_collect(lt_store_t *st, lt_obs_set_t *obs, at_err_t *err)
{
    switch (st->kind) {
    case ST_FILE:
        return store_file_collect(st, obs, err);
    case ST_KAFKA:
        return store_kafka_collect(st, obs, st->rejected_topic, err);
    case ST_MONGO:
        lt_obs_clear(obs);
        if (mongo_read(st, obs, "events", LT_OBS_EVENT, err) < 0)
            return -1;
        return mongo_read(st, obs, "rejected", LT_OBS_REJECTED, err);
    }
    return at_err_set(err, AT_ERR_INTERNAL, "unknown store");
}

void lt_store_close(lt_store_t *st)
{
    if (st == NULL)
        return;
    if (st->rk) {
        rd_kafka_consumer_close(st->rk);
        rd_kafka_destroy(st->rk);
    }
    for (int i = 0; i < st->nparts; i++)
        free(st->part_topic ? st->part_topic[i] : NULL);
    free(st->part_topic);
    free(st->part_id);
    free(st->part_eof);
    if (st->mc) {
        mongoc_client_destroy(st->mc);
        mongoc_cleanup();
    }
    free(st->db);
    free(st->rejected_topic);
    free(st->dir);
    free(st->run_id);
    free(st);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int lt_verify_run(const lt_verify_opts_t *o, const lt_verify_input_t *in, lt_verify_result_t *res, at_err_t *err)
{
    memset(res, 0, sizeof(*res));
    const char *kind = strncmp(o->spec, "file:", 5) == 0    ? "file"
                       : strncmp(o->spec, "kafka:", 6) == 0 ? "kafka"
                                                            : "mongodb";
    snprintf(res->store, sizeof(res->store), "%s", kind);
    lt_store_t *st = lt_store_open(o, in->run_id, err);
    if (st == NULL)
        return -1;
    lt_obs_set_t obs = {0};
    lt_obs_set_t work = {0};
    int64_t t0 = mono_ms(), deadline = t0 + o->wait_ns / 1000000, quiet_ms = o->quiet_ns / 1000000;
    int64_t last_change = t0;
    uint64_t last_docs = UINT64_MAX;
    int rc = 0;
    for (;;) {
        at_err_t e2;
        if (lt_store_collect(st, &obs, &e2) < 0) {
            if (e2.code == AT_ERR_NOMEM || mono_ms() >= deadline) {
                *err = e2;
                rc = -1;
                break;
            }
            snprintf(res->note, sizeof(res->note), "%s", e2.msg);
        } else {
            res->note[0] = '\0';
        }
        /* Reconcile a copy: the Kafka store keeps adding to obs across rounds. */
        lt_obs_clear(&work);
        if (obs.n > work.cap) {
            lt_obs_t *v = realloc(work.v, obs.n * sizeof(*v));
            if (v == NULL) {
                rc = at_err_set(err, AT_ERR_NOMEM, "--verify: out of memory");
                break;
            }
            work.v = v;
            work.cap = obs.n;
        }
        if (obs.n)
            memcpy(work.v, obs.v, obs.n * sizeof(*obs.v));
        work.n = obs.n;
        work.docs = obs.docs;
        work.foreign = obs.foreign;
        work.unreadable = obs.unreadable;
        for (size_t i = 0; i < work.nreasons; i++)
            free(work.reasons[i]);
        work.nreasons = 0;
        for (size_t i = 0; i < obs.nreasons; i++) {
            work.reasons[i] = strdup(obs.reasons[i]);
            if (work.reasons[i] == NULL)
                break;
            work.nreasons++;
        }
        char note[sizeof(res->note)];
        memcpy(note, res->note, sizeof(note));
        lt_verify_reconcile(in, &work, res);
        memcpy(res->note, note, sizeof(note));
        int64_t now = mono_ms();
        res->waited_ms = now - t0;
        if (res->lost == 0 && res->note[0] == '\0') {
            res->settled = true;
            break;
        }
        if (obs.docs != last_docs) {
            last_docs = obs.docs;
            last_change = now;
        }
        if (now - last_change >= quiet_ms || now >= deadline)
            break;
        struct timespec ts = {0, 500 * 1000000L};
        nanosleep(&ts, NULL);
    }
    lt_obs_free(&obs);
    lt_obs_free(&work);
    lt_store_close(st);
    return rc;
}
