/*
 * cd_reports.c: the reports thread. See cd_reports.h.
 */
#include "cd_reports.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <mongoc/mongoc.h>

#include "at_log.h"
#include "at_mongo.h"
#include "cd_doc.h"
#include "cd_rindex.h"
#include "cd_rline.h"
#include "cd_rquery.h"

#define COMP "reports"
#define QUEUE_MAX 256
#define READ_CHUNK (1 << 20)
#define LINE_MAX_BYTES (1 << 20) /* a longer line is skipped: no rollup document is near it */
#define FILE_PREFIX "stats_hourly-"
#define FILE_SUFFIX ".jsonl"
#define MONGO_DB "adtrack"
#define MONGO_COLL "stats_hourly"

/* A stats file and how far it has been read. */
typedef struct rfile_s {
    char *path;
    off_t offset; /* the byte after the last whole line taken */
} rfile_t;

struct cd_reports_s {
    const cd_conf_t *conf;
    /* owned by the reports thread (or the caller of cd_reports_poll/answer before start) */
    cd_rindex_t *ix;
    cd_tzcache_t tzc;
    rfile_t *files;
    size_t nfiles, capfiles;
    char *line;  /* read buffer */
    size_t line_cap;
    mongoc_client_t *mongo;
    mongoc_collection_t *coll;
    bool mongo_indexed;
    bool loaded;   /* the first load is done */
    bool sourced;  /* there is a source at all */
    int64_t last_source_log;
    int64_t last_invalid_log; /* invalid documents: one warning per 10 s at most, with a count */
    uint64_t invalid_unlogged;
    /* the queue: any thread, under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    cd_report_req_t *head, *tail;
    size_t qlen;
    bool stop;
    pthread_t tid;
    bool started;
    /* metrics */
    at_counter_t *requests, *invalid, *source_errors;
    at_histogram_t *duration;
    at_gauge_t *documents, *data_through;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

cd_report_req_t *cd_report_req_new(const char *qs, size_t qslen, bool accept_csv)
{
    cd_report_req_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    if (qs != NULL) {
        r->qs = malloc(qslen + 1);
        if (r->qs == NULL) {
            free(r);
            return NULL;
        }
        memcpy(r->qs, qs, qslen);
        r->qs[qslen] = '\0';
        r->qslen = qslen;
    }
    r->accept_csv = accept_csv;
    return r;
}

void cd_report_req_free(cd_report_req_t *r)
{
    if (r == NULL)
        return;
    free(r->qs);
    free(r->body);
    free(r);
}

cd_reports_t *cd_reports_new(const cd_conf_t *conf, at_metrics_t *metrics, at_err_t *err)
{
    cd_reports_t *rp = calloc(1, sizeof(*rp));
    if (rp == NULL || (rp->ix = cd_rindex_new()) == NULL) {
        free(rp);
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    rp->conf = conf;
    rp->last_source_log = INT64_MIN;
    rp->last_invalid_log = INT64_MIN;
    pthread_mutex_init(&rp->mu, NULL);
    pthread_cond_init(&rp->cv, NULL);
    rp->sourced = conf->mongo[0] != '\0' || conf->stats_dir.count > 0;
    if (conf->mongo[0] != '\0') {
        bson_t opts = BSON_INITIALIZER;
        rp->mongo = at_mongo_client_new(conf->mongo, "adtrack-coredata-reports", conf->mongo_w,
                                        conf->mongo_wtimeout_ms, &opts, err);
        bson_destroy(&opts);
        if (rp->mongo == NULL) {
            cd_reports_destroy(rp);
            return NULL;
        }
        rp->coll = mongoc_client_get_collection(rp->mongo, MONGO_DB, MONGO_COLL);
        if (conf->stats_dir.count > 0)
            at_log(AT_LOG_WARN, COMP, "--stats-dir is ignored with --mongo: reports read adtrack.stats_hourly", NULL);
    }
    if (metrics != NULL) {
        rp->requests = at_metrics_counter(metrics, "adtrack_coredata_reports_requests_total", NULL,
                                          "GET /v1/reports requests answered (any status).");
        rp->duration = at_metrics_histogram(metrics, "adtrack_coredata_reports_duration_seconds", NULL,
                                            "Time the reports thread spent on one report (parse, aggregate, write).",
                                            at_metrics_latency_bounds, at_metrics_latency_nbounds);
        rp->documents = at_metrics_gauge(metrics, "adtrack_coredata_reports_documents", NULL,
                                         "stats_hourly documents in the reports index.");
        rp->data_through = at_metrics_gauge(metrics, "adtrack_coredata_reports_data_through_seconds", NULL,
                                            "The newest mt in the reports index (Unix seconds; 0: none yet).");
        rp->invalid = at_metrics_counter(metrics, "adtrack_coredata_reports_invalid_documents_total", NULL,
                                         "stats_hourly documents or lines skipped because they break the contract.");
        rp->source_errors = at_metrics_counter(metrics, "adtrack_coredata_reports_source_errors_total", NULL,
                                               "Failed reads of the rollups' source (MongoDB or stats files).");
    }
    return rp;
}

/* ---- sources ---- */

static void source_error(cd_reports_t *rp, const char *msg, const char *what, const char *detail)
{
    if (rp->source_errors != NULL)
        at_counter_add(rp->source_errors, 1);
    /* One line a minute at most: a source that stays down would otherwise log every poll. */
    int64_t now = mono_ms();
    if (rp->last_source_log != INT64_MIN && now - rp->last_source_log < 60000)
        return;
    rp->last_source_log = now;
    at_log(AT_LOG_WARN, COMP, msg, "source", what, "error", detail, NULL);
}

/* Counts a skipped document or line; warns about it unless one was logged in the last 10 s
 * (a damaged file must not turn into a million log lines). */
static void invalid(cd_reports_t *rp, const char *msg, const char *where, const char *error)
{
    if (rp->invalid != NULL)
        at_counter_add(rp->invalid, 1);
    int64_t now = mono_ms();
    if (rp->last_invalid_log != INT64_MIN && now - rp->last_invalid_log < 10000) {
        rp->invalid_unlogged++;
        return;
    }
    char more[32];
    snprintf(more, sizeof(more), "%llu", (unsigned long long)rp->invalid_unlogged);
    rp->last_invalid_log = now;
    rp->invalid_unlogged = 0;
    at_log(AT_LOG_WARN, COMP, msg, "where", where, "error", error, "skipped_unlogged_before", more, NULL);
}

static void put_doc(cd_reports_t *rp, const bson_t *doc, const char *where)
{
    at_err_t err = {0};
    if (cd_rindex_put(rp->ix, doc, &err) < 0)
        invalid(rp, "stats_hourly document skipped", where, err.msg);
}

static void take_line(cd_reports_t *rp, const char *line, size_t len, const char *path)
{
    while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    if (len == 0)
        return;
    bson_t doc;
    bson_error_t e;
    /* The fast reader takes what the enricher writes; libbson anything else. */
    if (cd_rline_parse(line, len, &doc) != 0 && !bson_init_from_json(&doc, line, (ssize_t)len, &e)) {
        invalid(rp, "stats_hourly line skipped: not JSON", path, e.message);
        return;
    }
    put_doc(rp, &doc, path);
    bson_destroy(&doc);
}

/* Reads what was appended to @p f since the last time (whole lines only). */
static void read_file(cd_reports_t *rp, rfile_t *f)
{
    int fd = open(f->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT) /* removed since the listing: its documents stay indexed */
            source_error(rp, "cannot open a stats file", f->path, strerror(errno));
        return;
    }
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_size < f->offset) {
        at_log(AT_LOG_WARN, COMP, "stats file shrank; reading it again from the start", "file", f->path, NULL);
        f->offset = 0;
    }
    if (rp->line == NULL) {
        rp->line_cap = READ_CHUNK;
        rp->line = malloc(rp->line_cap);
        if (rp->line == NULL) {
            close(fd);
            return;
        }
    }
    size_t have = 0; /* bytes in rp->line from f->offset on */
    for (;;) {
        if (have == rp->line_cap) {
            if (rp->line_cap >= LINE_MAX_BYTES * 2) { /* one line longer than any document: skip it */
                at_log(AT_LOG_WARN, COMP, "stats file line too long; skipped", "file", f->path, NULL);
                char *nl = NULL;
                while (nl == NULL) {
                    ssize_t n = pread(fd, rp->line, rp->line_cap, f->offset);
                    if (n <= 0)
                        break;
                    nl = memchr(rp->line, '\n', (size_t)n);
                    f->offset += nl ? (nl - rp->line) + 1 : n;
                }
                have = 0;
                if (nl == NULL)
                    break;
                continue;
            }
            char *nb = realloc(rp->line, rp->line_cap * 2);
            if (nb == NULL)
                break;
            rp->line = nb;
            rp->line_cap *= 2;
        }
        ssize_t n = pread(fd, rp->line + have, rp->line_cap - have, f->offset + (off_t)have);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            source_error(rp, "cannot read a stats file", f->path, strerror(errno));
            break;
        }
        if (n == 0)
            break;
        have += (size_t)n;
        size_t start = 0;
        for (;;) {
            char *nl = memchr(rp->line + start, '\n', have - start);
            if (nl == NULL)
                break;
            size_t end = (size_t)(nl - rp->line);
            take_line(rp, rp->line + start, end - start, f->path);
            start = end + 1;
        }
        f->offset += (off_t)start;
        memmove(rp->line, rp->line + start, have - start);
        have -= start;
    }
    close(fd);
}

static bool stats_name(const char *name)
{
    size_t n = strlen(name), p = strlen(FILE_PREFIX), s = strlen(FILE_SUFFIX);
    return n > p + s && memcmp(name, FILE_PREFIX, p) == 0 && strcmp(name + n - s, FILE_SUFFIX) == 0;
}

static rfile_t *file_get(cd_reports_t *rp, const char *path)
{
    for (size_t i = 0; i < rp->nfiles; i++)
        if (strcmp(rp->files[i].path, path) == 0)
            return &rp->files[i];
    if (rp->nfiles == rp->capfiles) {
        size_t cap = rp->capfiles ? rp->capfiles * 2 : 16;
        rfile_t *nf = realloc(rp->files, cap * sizeof(*nf));
        if (nf == NULL)
            return NULL;
        rp->files = nf;
        rp->capfiles = cap;
    }
    char *copy = strdup(path);
    if (copy == NULL)
        return NULL;
    rp->files[rp->nfiles] = (rfile_t){.path = copy, .offset = 0};
    return &rp->files[rp->nfiles++];
}

static int cmp_names(const struct dirent **a, const struct dirent **b)
{
    return strcmp((*a)->d_name, (*b)->d_name);
}

static int filter_stats(const struct dirent *d)
{
    return stats_name(d->d_name);
}

/* Every stats file of every --stats-dir, in name order (the last line of an _id wins). */
static void poll_files(cd_reports_t *rp)
{
    for (size_t d = 0; d < rp->conf->stats_dir.count; d++) {
        const char *dir = rp->conf->stats_dir.items[d];
        struct dirent **names = NULL;
        int n = scandir(dir, &names, filter_stats, cmp_names);
        if (n < 0) {
            /* A sink directory that does not exist yet (no event stored) is normal at start. */
            if (errno != ENOENT)
                source_error(rp, "cannot list a --stats-dir", dir, strerror(errno));
            continue;
        }
        for (int i = 0; i < n; i++) {
            char path[4400];
            snprintf(path, sizeof(path), "%s/%s", dir, names[i]->d_name);
            rfile_t *f = file_get(rp, path);
            if (f != NULL)
                read_file(rp, f);
            free(names[i]);
        }
        free(names);
    }
}

static void poll_mongo(cd_reports_t *rp)
{
    bson_error_t e;
    if (!rp->mongo_indexed) {
        /* Polls select by mt: an index keeps them cheap. Creating an existing index is a no-op. */
        bson_t cmd = BSON_INITIALIZER, idx, one, key;
        BSON_APPEND_UTF8(&cmd, "createIndexes", MONGO_COLL);
        BSON_APPEND_ARRAY_BEGIN(&cmd, "indexes", &idx);
        BSON_APPEND_DOCUMENT_BEGIN(&idx, "0", &one);
        BSON_APPEND_DOCUMENT_BEGIN(&one, "key", &key);
        BSON_APPEND_INT32(&key, "mt", 1);
        bson_append_document_end(&one, &key);
        BSON_APPEND_UTF8(&one, "name", "mt_1");
        bson_append_document_end(&idx, &one);
        bson_append_array_end(&cmd, &idx);
        if (mongoc_client_write_command_with_opts(rp->mongo, MONGO_DB, &cmd, NULL, NULL, &e))
            rp->mongo_indexed = true;
        else
            source_error(rp, "cannot create the mt index of stats_hourly", "mongodb", e.message);
        bson_destroy(&cmd);
    }
    bson_t filter = BSON_INITIALIZER;
    int64_t newest = cd_rindex_newest_mt(rp->ix);
    if (newest != INT64_MIN) {
        bson_t gte;
        BSON_APPEND_DOCUMENT_BEGIN(&filter, "mt", &gte);
        BSON_APPEND_DATE_TIME(&gte, "$gte", newest - rp->conf->reports_overlap_ms);
        bson_append_document_end(&filter, &gte);
    }
    mongoc_cursor_t *cur = mongoc_collection_find_with_opts(rp->coll, &filter, NULL, NULL);
    const bson_t *doc;
    while (mongoc_cursor_next(cur, &doc))
        put_doc(rp, doc, "mongodb");
    if (mongoc_cursor_error(cur, &e))
        source_error(rp, "cannot read stats_hourly", "mongodb", e.message);
    mongoc_cursor_destroy(cur);
    bson_destroy(&filter);
}

void cd_reports_poll(cd_reports_t *rp)
{
    size_t before = cd_rindex_count(rp->ix);
    int64_t t0 = mono_ms();
    if (rp->mongo != NULL)
        poll_mongo(rp);
    else
        poll_files(rp);
    size_t n = cd_rindex_count(rp->ix);
    int64_t newest = cd_rindex_newest_mt(rp->ix);
    if (rp->documents != NULL) {
        at_gauge_set(rp->documents, (double)n);
        at_gauge_set(rp->data_through, newest == INT64_MIN ? 0 : (double)newest / 1000.0);
    }
    if (!rp->loaded) {
        rp->loaded = true;
        char docs[32], ms[32];
        snprintf(docs, sizeof(docs), "%zu", n);
        snprintf(ms, sizeof(ms), "%lld", (long long)(mono_ms() - t0));
        if (rp->sourced)
            at_log(AT_LOG_INFO, COMP, "rollups loaded", "source", rp->mongo ? "mongodb" : "stats files", "documents",
                   docs, "ms", ms, NULL);
    } else if (n != before) {
        char docs[32];
        snprintf(docs, sizeof(docs), "%zu", n);
        at_log(AT_LOG_DEBUG, COMP, "rollups polled", "documents", docs, NULL);
    }
}

size_t cd_reports_documents(cd_reports_t *rp)
{
    return cd_rindex_count(rp->ix);
}

/* ---- answers ---- */

static void answer_json(cd_report_req_t *r, int status, const bson_t *doc)
{
    size_t len;
    char *json = bson_as_relaxed_extended_json(doc, &len);
    r->status = status;
    r->csv = false;
    if (json == NULL) {
        r->status = 500;
        r->body = strdup("{\"error\":\"response not serialisable\"}");
        r->body_len = r->body ? strlen(r->body) : 0;
        return;
    }
    r->body = malloc(len + 1);
    if (r->body != NULL) {
        memcpy(r->body, json, len);
        r->body[len] = '\n';
        r->body_len = len + 1;
    }
    bson_free(json);
}

static void answer_error(cd_report_req_t *r, int status, const char *msg, const cd_verrs_t *errs)
{
    bson_t doc = BSON_INITIALIZER;
    BSON_APPEND_UTF8(&doc, "error", msg);
    if (errs != NULL && errs->count > 0)
        cd_verrs_append(errs, &doc);
    answer_json(r, status, &doc);
    bson_destroy(&doc);
}

void cd_reports_answer(cd_reports_t *rp, cd_report_req_t *r)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    cd_verrs_t errs = {0};
    cd_rquery_t q;
    if (!rp->sourced) {
        answer_error(r, 503,
                     "reports: no source of hourly rollups: start adtrack-coredata with --stats-dir DIR (the "
                     "enrichers' data directories) or --mongo",
                     NULL);
    } else if (cd_rquery_parse(r->qs, r->qslen, r->accept_csv, &rp->tzc, &q, &errs) != 0) {
        answer_error(r, 400, "validation failed: see errors", &errs);
    } else {
        cd_rspec_t spec;
        cd_rresult_t res;
        at_err_t err = {0};
        cd_rquery_spec(&q, &spec);
        if (cd_rindex_query(rp->ix, &spec, &res, &err) != 0) {
            answer_error(r, 503, err.msg, NULL);
        } else {
            if (cd_rquery_render(&q, rp->ix, &res, cd_rindex_newest_mt(rp->ix), &r->body, &r->body_len) != 0) {
                answer_error(r, 503, "out of memory while writing the report", NULL);
            } else {
                r->status = 200;
                r->csv = q.csv;
            }
            cd_rresult_free(&res);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (rp->requests != NULL) {
        at_counter_add(rp->requests, 1);
        at_histogram_observe(rp->duration, (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9);
    }
}

/* ---- the thread ---- */

static void *run(void *arg)
{
    cd_reports_t *rp = arg;
    int64_t next_poll = 0;
    for (;;) {
        pthread_mutex_lock(&rp->mu);
        while (rp->head == NULL && !rp->stop && mono_ms() < next_poll) {
            int64_t wait = next_poll - mono_ms();
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += wait / 1000;
            ts.tv_nsec += (wait % 1000) * 1000000;
            if (ts.tv_nsec >= 1000000000) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000;
            }
            pthread_cond_timedwait(&rp->cv, &rp->mu, &ts);
        }
        cd_report_req_t *batch = rp->head;
        rp->head = rp->tail = NULL;
        rp->qlen = 0;
        bool stop = rp->stop;
        pthread_mutex_unlock(&rp->mu);
        /* A due poll first: the first one (next_poll 0) is the load, before any answer. */
        if (!stop && mono_ms() >= next_poll) {
            if (rp->sourced)
                cd_reports_poll(rp);
            next_poll = mono_ms() + rp->conf->reports_poll_ms;
        }
        while (batch != NULL) {
            cd_report_req_t *r = batch;
            batch = r->next;
            cd_reports_answer(rp, r);
            r->done(r, r->opaque);
        }
        if (stop)
            break;
    }
    return NULL;
}

int cd_reports_start(cd_reports_t *rp, at_err_t *err)
{
    int rc = pthread_create(&rp->tid, NULL, run, rp);
    if (rc != 0)
        return at_err_set(err, AT_ERR_IO, "reports thread: %s", strerror(rc));
    pthread_setname_np(rp->tid, "cd-reports");
    rp->started = true;
    return 0;
}

int cd_reports_submit(cd_reports_t *rp, cd_report_req_t *r)
{
    pthread_mutex_lock(&rp->mu);
    if (rp->qlen >= QUEUE_MAX || rp->stop) {
        pthread_mutex_unlock(&rp->mu);
        return -1;
    }
    r->next = NULL;
    if (rp->tail != NULL)
        rp->tail->next = r;
    else
        rp->head = r;
    rp->tail = r;
    rp->qlen++;
    pthread_cond_signal(&rp->cv);
    pthread_mutex_unlock(&rp->mu);
    return 0;
}

void cd_reports_stop(cd_reports_t *rp)
{
    if (rp == NULL || !rp->started)
        return;
    pthread_mutex_lock(&rp->mu);
    rp->stop = true;
    pthread_cond_signal(&rp->cv);
    pthread_mutex_unlock(&rp->mu);
    pthread_join(rp->tid, NULL);
    rp->started = false;
}

void cd_reports_destroy(cd_reports_t *rp)
{
    if (rp == NULL)
        return;
    cd_reports_stop(rp);
    cd_rindex_destroy(rp->ix);
    cd_tzcache_free(&rp->tzc);
    for (size_t i = 0; i < rp->nfiles; i++)
        free(rp->files[i].path);
    free(rp->files);
    free(rp->line);
    if (rp->coll != NULL)
        mongoc_collection_destroy(rp->coll);
    if (rp->mongo != NULL)
        mongoc_client_destroy(rp->mongo);
    pthread_mutex_destroy(&rp->mu);
    pthread_cond_destroy(&rp->cv);
    free(rp);
}
