/*
 * cd_reports.h: the reports thread of adtrack-coredata: owns the rollup index
 * (cd_rindex.h), keeps it current from the rollups' source, and answers GET /v1/reports.
 *
 * Sources (docs/REPORTS.md): with --mongo, adtrack.stats_hourly, loaded at start and then
 * polled every --reports-poll-ms for documents whose "mt" is at least the newest seen minus
 * --reports-overlap-ms; without it, the files stats_hourly-*.jsonl of every --stats-dir,
 * read incrementally (each file's offset is remembered; only whole lines are taken).
 *
 * Why a thread of its own: loading and polling do I/O, and a report scans up to a year of
 * documents; neither may run on an HTTP loop (docs/COREDATA.md, "Threads"). Requests are
 * queued to it like changes to the core worker, and its answer goes back to the loop as an
 * h2o_multithread message (cd_http.c). The index is touched by this thread only, so it
 * needs no lock.
 */
#ifndef CD_REPORTS_H
#define CD_REPORTS_H

#include <stdbool.h>
#include <stddef.h>

#include "at_metrics.h"
#include "cd_conf.h"

typedef struct cd_reports_s cd_reports_t;
typedef struct cd_report_req_s cd_report_req_t;

/* Called on the reports thread when @p r is answered; the callee owns @p r from then on. */
typedef void (*cd_report_done_cb)(cd_report_req_t *r, void *opaque);

struct cd_report_req_s {
    cd_report_req_t *next;
    /* the request */
    char *qs; /* the query string after '?' (heap, may be NULL) */
    size_t qslen;
    bool accept_csv; /* Accept names text/csv */
    /* the answer */
    int status;       /* 200, 400, 500, 503 */
    bool csv;         /* body is CSV (else JSON) */
    char *body;       /* heap */
    size_t body_len;
    cd_report_done_cb done;
    void *opaque;
};

/* A request for query string @p qs (copied); free with cd_report_req_free(). NULL: no memory. */
cd_report_req_t *cd_report_req_new(const char *qs, size_t qslen, bool accept_csv);
void cd_report_req_free(cd_report_req_t *r);

/* The reports service for @p conf (conf->mongo, conf->stats_dir, poll settings; kept by
 * reference). Nothing is read yet. @p metrics may be NULL. NULL + err. */
cd_reports_t *cd_reports_new(const cd_conf_t *conf, at_metrics_t *metrics, at_err_t *err);
/* Starts the thread: the first load, then polling. 0 or -1 + err. */
int cd_reports_start(cd_reports_t *rp, at_err_t *err);
/* Queues @p r. 0, or -1 when the queue is full (the caller still owns r). @locality: any thread. */
int cd_reports_submit(cd_reports_t *rp, cd_report_req_t *r);
/* Reads what is new in the sources, on the calling thread (tests; or a service not started). */
void cd_reports_poll(cd_reports_t *rp);
/* Answers @p r on the calling thread without calling r->done (tests; or not started). */
void cd_reports_answer(cd_reports_t *rp, cd_report_req_t *r);
/* Documents in the index (for tests and logs; racy while the thread runs). */
size_t cd_reports_documents(cd_reports_t *rp);
/* Answers what is queued, then stops the thread. */
void cd_reports_stop(cd_reports_t *rp);
void cd_reports_destroy(cd_reports_t *rp);

#endif
