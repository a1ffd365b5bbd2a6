/*
 * lt_report.h: the run's results as a text summary, JSON (--json) and, in lt_html.c, a
 * self-contained HTML page (--html). All three read the same lt_report_t, so they never
 * disagree. Field meanings are documented in docs/LOADTEST.md.
 */
#ifndef LT_REPORT_H
#define LT_REPORT_H

#include "lt_buf.h"
#include "lt_capture.h"
#include "lt_client.h"
#include "lt_sched.h"
#include "lt_verify.h"

#define LT_VERSION "0.1.0"

typedef struct lt_report_s {
    const char *target;        /* --target as given */
    const char *source;        /* "synthetic" or "capture" */
    const char *source_detail; /* profile path / "built-in", or capture path */
    const char *mode;          /* "rate", "stages" or "replay" (original timing) */
    const char *stages;        /* --stages text, or NULL */
    double speed;              /* replay speed factor */
    int threads, connections;
    const char *run_id; /* NULL when requests were not tagged */
    int64_t started_unix_ms;
    int64_t planned_ns; /* length of the schedule */
    int64_t elapsed_ns; /* start to the last worker finishing (includes draining) */
    int64_t interval_ns, late_ns, max_lag_ns, timeout_ns;
    const lt_sched_t *sched;
    const lt_stats_t *st;
    const lt_capture_t *capture;      /* NULL for synthetic traffic */
    const lt_verify_result_t *verify; /* NULL without --verify */
    const char *verify_error;         /* --verify could not run: why; else NULL */
    bool interrupted;
} lt_report_t;

/* Derived numbers, computed once for every output format. */
typedef struct lt_report_rates_s {
    double target;        /* planned mean arrival rate (intended requests / planned time) */
    double sent;          /* sent / send window (planned time, or longer if sending ran late) */
    double on_time;       /* (sent - late) / planned time */
    double completed;     /* completed / elapsed */
    double ok;            /* ok / elapsed */
    double success_ratio; /* ok / intended */
    uint64_t failed;      /* sum of request failures */
} lt_report_rates_t;

void lt_report_rates(const lt_report_t *r, lt_report_rates_t *out);

/* Percentiles shown everywhere, and their JSON key names. */
extern const double lt_report_pcts[];
extern const char *const lt_report_pct_keys[];
extern const size_t lt_report_npcts;

/* Human-readable summary. */
void lt_report_text(const lt_report_t *r, FILE *out);

/* JSON document (pretty-printed) appended to @p out. */
void lt_report_json(const lt_report_t *r, lt_buf_t *out);

/* Self-contained HTML page appended to @p out (lt_html.c). */
void lt_report_html(const lt_report_t *r, lt_buf_t *out);

/* Formats microseconds for humans ("850us", "12.3ms", "1.25s") into @p buf. */
const char *lt_fmt_us(double us, char *buf, size_t len);

/* ISO 8601 UTC time of Unix ms into @p buf (at least 25 bytes). */
const char *lt_fmt_time(int64_t unix_ms, char *buf, size_t len);

#endif
