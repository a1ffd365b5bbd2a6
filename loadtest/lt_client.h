/*
 * lt_client.h: one load-generating worker thread: an epoll loop that sends the requests of
 * its share of the schedule over a pool of keep-alive HTTP/1.1 connections.
 *
 * Worker k of N owns the requests whose sequence number is k mod N. Each request is sent
 * as soon as (a) its intended time has come and (b) a connection of the worker's pool is
 * idle; requests that are due while every connection is busy wait in order and are sent
 * late. Latency is measured from the intended time, so waiting for a connection counts
 * (no coordinated omission); the service time (from the actual send) is kept as well.
 * A request that could not be sent within max_lag of its intended time is dropped and
 * counted, never silently skipped.
 */
#ifndef LT_CLIENT_H
#define LT_CLIENT_H

#include "lt_capture.h"
#include "lt_hist.h"
#include "lt_http.h"
#include "lt_profile.h"
#include "lt_sched.h"

#include <stdatomic.h>
#include <sys/socket.h>

/* Why a request failed without a usable response. */
typedef enum lt_fail_e {
    LT_FAIL_TIMEOUT = 0, /* no complete response within --timeout */
    LT_FAIL_CLOSED,      /* connection closed or reset before the response was complete */
    LT_FAIL_PROTOCOL,    /* malformed HTTP response */
    LT_FAIL_COUNT
} lt_fail_t;

const char *lt_fail_str(lt_fail_t f);

/* Per-request outcome kept for --verify (one byte per sequence number). */
enum {
    LT_SEQ_UNSENT = 0, /* dropped or never due */
    LT_SEQ_FAILED,     /* sent, no response (timeout, reset, ...) */
    LT_SEQ_REFUSED,    /* a response with status >= 400 */
    LT_SEQ_ACKED,      /* a 2xx or 3xx response: the target took responsibility */
};

/* What happened in one interval of the run. Counts are filed under the interval in which
 * the thing happened (sent, completed...); latency under the interval in which the request
 * was *intended*, so a stall shows where it started. */
typedef struct lt_interval_s {
    uint64_t intended, sent, late, dropped, completed, ok, failed;
    lt_hist_t latency; /* coarse, microseconds */
} lt_interval_t;

/* Everything a worker measured. Merged by lt_stats_merge(). */
typedef struct lt_stats_s {
    uint64_t intended; /* requests whose intended time came during the run */
    uint64_t sent;
    uint64_t late;        /* sent more than late_ns after the intended time */
    uint64_t late_sender; /* of which a connection was free at the intended time: the load
                           * generator itself fell behind (the rest waited for a connection) */
    uint64_t dropped;     /* never sent: more than max_lag behind, or still waiting at the end */
    uint64_t completed;   /* got a full response (any status) */
    uint64_t ok;          /* status 200-399 */
    uint64_t failed[LT_FAIL_COUNT];
    uint64_t status[1000];
    uint64_t retried;        /* resent once on a fresh connection after a stale keep-alive one */
    uint64_t connects;       /* successful TCP connections */
    uint64_t connect_errors; /* failed connection attempts (requests then wait, and may drop) */
    uint64_t bytes_out, bytes_in;
    int64_t last_send_ns; /* offset from the start of the last send (the send window) */
    int64_t last_done_ns; /* offset from the start of the last completion or failure */
    lt_hist_t latency;    /* us, from intended time to full response */
    lt_hist_t service;    /* us, from actual send to full response */
    lt_hist_t lag;        /* us, from intended time to actual send */
    lt_interval_t *iv;    /* heap, niv entries */
    size_t niv;
} lt_stats_t;

int lt_stats_init(lt_stats_t *s, at_err_t *err);
void lt_stats_free(lt_stats_t *s);
/* Adds @p src into @p dst (counters, histograms, intervals). */
int lt_stats_merge(lt_stats_t *dst, const lt_stats_t *src, at_err_t *err);
/* The interval @p i, creating it (and the ones before) when needed; NULL when out of memory. */
lt_interval_t *lt_stats_interval(lt_stats_t *s, size_t i);

/* The run's shared, read-only plan. */
typedef struct lt_plan_s {
    lt_target_t target;
    struct sockaddr_storage addr; /* resolved target */
    socklen_t addrlen;
    const lt_sched_t *sched;
    const lt_profile_t *profile; /* one of profile / capture */
    const lt_capture_t *capture;
    bool capture_cycle;  /* request i uses entry i mod n (set rate), else entry i */
    const char *headers; /* extra headers for every request ("Name: v\r\n"...), may be NULL */
    int threads, connections;
    int64_t timeout_ns, max_lag_ns, late_ns, interval_ns, connect_timeout_ns;
    const char *run_id;    /* tag requests "<run_id>:<seq>" when non-NULL */
    uint8_t *seq_state;    /* --verify: LT_SEQ_* per sequence number, or NULL */
    uint16_t *seq_events;  /* --verify: events carried by each request, or NULL */
    atomic_int *stop;      /* 1: stop sending, drain; 2: stop now */
    atomic_llong start_ns; /* CLOCK_MONOTONIC start, set by the coordinator */
} lt_plan_t;

/* Live counters a worker publishes (relaxed atomics) for the progress line. */
typedef struct lt_live_s {
    atomic_ullong sent, completed, ok, failed, dropped, late, inflight;
    atomic_int done;
} lt_live_t;

typedef struct lt_worker_s lt_worker_t;

/* Creates worker @p index of plan->threads; connections are opened by lt_worker_connect().
 * Returns NULL with @p err. The caller frees it with lt_worker_destroy(). */
lt_worker_t *lt_worker_new(const lt_plan_t *plan, int index, at_err_t *err);

/* Opens the worker's connections and waits (up to plan->connect_timeout_ns) until they are
 * established or failed. Returns the number established. @locality: the worker's thread. */
int lt_worker_connect(lt_worker_t *w);

/* Runs the worker's share of the schedule from plan->start_ns until it is done (every
 * request sent or dropped, every response in or timed out) or told to stop.
 * @locality: the worker's thread. */
void lt_worker_run(lt_worker_t *w);

/* The worker's results (valid after lt_worker_run) and live counters. */
lt_stats_t *lt_worker_stats(lt_worker_t *w);
lt_live_t *lt_worker_live(lt_worker_t *w);
/* First connect error message seen, or "" (for the "cannot connect" diagnosis). */
const char *lt_worker_connect_error(const lt_worker_t *w);

void lt_worker_destroy(lt_worker_t *w);

/* Monotonic nanoseconds. */
int64_t lt_now_ns(void);

#endif
