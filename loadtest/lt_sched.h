/*
 * lt_sched.h: the open-model arrival schedule.
 *
 * A schedule says when request i (0-based) is *intended* to be sent, as an offset in
 * nanoseconds from the start of the run. It never depends on how fast the target answers:
 * that is what makes the load an open model and lets latency be measured from the
 * intended time (no coordinated omission).
 *
 * Two kinds:
 *  - rate: piecewise-linear arrival rate. Stage k ramps linearly from the previous rate
 *    (the start rate for the first stage) to its own rate over its duration; a constant
 *    rate is one stage whose start rate equals its rate. Arrivals are spaced evenly in the
 *    cumulative-arrivals function N(t) = integral of rate: arrival i happens at N(t) = i,
 *    so a constant 500/s over 10 s gives exactly 5000 arrivals at 0, 2 ms, 4 ms, ...
 *  - times: an explicit, sorted list of offsets (a capture replayed at original timing).
 *
 * Pure functions of their input; safe to share read-only between threads.
 */
#ifndef LT_SCHED_H
#define LT_SCHED_H

#include "at_err.h"

typedef struct lt_stage_s {
    double rate;    /* target arrivals per second at the end of the stage */
    int64_t dur_ns; /* stage length */
} lt_stage_t;

typedef struct lt_sched_s {
    /* rate kind */
    lt_stage_t *stages; /* heap, owned */
    size_t nstages;
    double start_rate;
    int64_t *t0; /* heap: start offset of each stage (nstages + 1 entries, last = end) */
    double *n0;  /* heap: arrivals before each stage (nstages + 1 entries) */
    /* times kind */
    const int64_t *times; /* borrowed from the caller; NULL for the rate kind */
    uint64_t ntimes;
    /* both */
    uint64_t total;      /* number of arrivals */
    int64_t duration_ns; /* planned length of the run */
} lt_sched_t;

/* Parses a duration: an integer or decimal with unit ns, us, ms, s, m or h ("1.5s",
 * "250ms"); a bare number means seconds. Returns 0 or -1 with @p err naming @p what. */
int lt_parse_duration(const char *s, int64_t *out_ns, const char *what, at_err_t *err);

/* Parses a non-negative decimal number ("2", "0.5"). 0 or -1 with @p err naming @p what. */
int lt_parse_double(const char *s, double *out, const char *what, at_err_t *err);

/* Parses a stage list "1000:10s,5000:30s" (rate:duration, comma-separated; up to 1000
 * stages; rates 0..10,000,000/s). On success *@p out is a heap array the caller frees. */
int lt_parse_stages(const char *spec, lt_stage_t **out, size_t *n, at_err_t *err);

/* Builds a rate schedule. Copies @p stages. @p max_total caps the number of arrivals
 * (0 = no cap). Returns 0 or -1 with @p err (e.g. no arrivals at all). The caller releases
 * it with lt_sched_free(). */
int lt_sched_init_rate(lt_sched_t *s, double start_rate, const lt_stage_t *stages, size_t nstages, uint64_t max_total,
                       at_err_t *err);

/* Builds a times schedule over @p times (sorted, non-negative, borrowed: must outlive @p s). */
int lt_sched_init_times(lt_sched_t *s, const int64_t *times, uint64_t n, at_err_t *err);

void lt_sched_free(lt_sched_t *s);

/* Intended offset of arrival @p i (< total), in ns from the start. */
int64_t lt_sched_time(const lt_sched_t *s, uint64_t i);

/* Target rate at offset @p t_ns (rate kind); for the times kind, the mean rate. */
double lt_sched_rate_at(const lt_sched_t *s, int64_t t_ns);

#endif
