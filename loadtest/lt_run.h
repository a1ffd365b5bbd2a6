/*
 * lt_run.h: one load-test run from checked options to results: loads the traffic source,
 * builds the schedule, resolves the target, runs the worker threads with a live progress
 * line, merges their results, and runs --verify.
 */
#ifndef LT_RUN_H
#define LT_RUN_H

#include "lt_client.h"
#include "lt_conf.h"
#include "lt_report.h"
#include "lt_verify.h"

typedef struct lt_run_s {
    const lt_opts_t *o;
    lt_plan_t plan;
    lt_sched_t sched;
    lt_profile_t profile;
    bool have_profile;
    lt_capture_t capture;
    bool have_capture;
    int64_t *times; /* replay offsets (heap) for the original-timing mode */
    char run_id[40];
    char source_detail[256];
    const char *mode;
    uint8_t *seq_state; /* --verify */
    uint16_t *seq_events;
    lt_stats_t total;
    bool have_total;
    int64_t started_unix_ms, elapsed_ns;
    lt_verify_result_t verify;
    bool did_verify;
    char verify_error[AT_ERR_MSG_MAX];
    atomic_int stop; /* raised by SIGINT/SIGTERM: 1 = stop sending and drain, 2 = stop now */
} lt_run_t;

/* Prepares a run from @p o (borrowed: must outlive @p r). Returns 0 or -1 with @p err;
 * err->code AT_ERR_UNAVAILABLE means the target name could not be resolved. The caller
 * calls lt_run_free() in every case. */
int lt_run_prepare(lt_run_t *r, const lt_opts_t *o, at_err_t *err);

/* Runs the load. @p progress: stream for the live line, or NULL. Returns 0, or -1 with
 * @p err (AT_ERR_UNAVAILABLE: no connection to the target could be made). */
int lt_run_execute(lt_run_t *r, FILE *progress, at_err_t *err);

/* Runs --verify when asked (no-op otherwise). Failures end up in r->verify_error. */
void lt_run_verify(lt_run_t *r);

/* Fills @p rep from the run (pointers into @p r). */
void lt_run_report(const lt_run_t *r, lt_report_t *rep);

void lt_run_free(lt_run_t *r);

#endif
