/*
 * at_test_load.h: what the chaos tests need to drive a service at its full rate and to
 * account for every request afterwards, independently of adtrack-loadtest.
 *
 * - ts_load_*: a closed-loop HTTP/1.1 generator. Each of its threads keeps its share of
 *   the keep-alive connections busy: a connection sends its next request as soon as the
 *   previous answer arrived, so it runs as fast as the server answers. Every request
 *   carries a unique tag=<thread>-<seq>, and the generator remembers per tag whether it was
 *   answered 2xx, answered otherwise, or not answered (connection lost, or no answer within
 *   the request timeout), and the slowest answer.
 * - ts_tagcount_*: a Kafka consumer on its own thread that reads a topic from the beginning
 *   while the test runs and counts every tag it sees, so that retention (devstream keeps
 *   about 5 MiB per partition) never hides a message, and duplicates are counted too.
 *
 * Both are bounded in time and memory (one byte per request and tag).
 */
#ifndef AT_TEST_LOAD_H
#define AT_TEST_LOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TS_LOAD_MAX_THREADS 16

/* What happened to one request, by tag. */
enum { TS_REQ_UNSENT = 0, TS_REQ_2XX = 1, TS_REQ_OTHER = 2, TS_REQ_NOANSWER = 3 };

typedef struct ts_load_opts_s {
    int port;              /* 127.0.0.1:port */
    int threads;           /* 1..TS_LOAD_MAX_THREADS */
    int connections;       /* total, spread over the threads */
    int ncampaigns;        /* c=camp-<k>, k cycling over 0..ncampaigns-1 (spreads partitions) */
    const char *path;      /* request path and fixed query, e.g. "/t.gif?e=imp&p=pub-1"; "&c=..&tag=.." is appended */
    const char *user_agent;
    const char *headers;   /* extra header lines, each ending in \r\n, or NULL */
    const char *source_ip; /* bind the client side to this loopback address (e.g. "127.0.0.1"), or NULL */
    int request_timeout_ms; /* a request unanswered this long counts as TS_REQ_NOANSWER and its connection is dropped */
} ts_load_opts_t;

typedef struct ts_load_stats_s {
    uint64_t sent, answered_2xx, answered_other, no_answer, connect_failures;
    uint64_t status_class[6];   /* answers by status / 100 */
    uint64_t max_latency_us;    /* slowest answer */
} ts_load_stats_t;

typedef struct ts_load_s ts_load_t;

/* Starts the generator threads. NULL on a bad option or a failure to start. */
ts_load_t *ts_load_start(const ts_load_opts_t *o);

/* Live totals (relaxed atomics; any thread). */
void ts_load_stats(ts_load_t *l, ts_load_stats_t *out);

/* Stops sending; a request in flight still gets up to request_timeout_ms for its answer.
 * Joins the threads. */
void ts_load_stop(ts_load_t *l);

/* After ts_load_stop: the outcome of tag "<thread>-<seq>" (TS_REQ_*), and how many
 * sequence numbers thread @p thread used. */
int ts_load_outcome(const ts_load_t *l, int thread, uint64_t seq);
uint64_t ts_load_count(const ts_load_t *l, int thread);

void ts_load_destroy(ts_load_t *l);

/* ---- tags seen in a Kafka topic ---- */

typedef struct ts_tagcount_s ts_tagcount_t;

/* Starts reading every partition of @p topic from the beginning, counting "tag":"<t>-<s>"
 * values. auto.offset.reset=error: if retention deleted a message before it was read,
 * ts_tagcount_lost() reports it. NULL on failure. */
ts_tagcount_t *ts_tagcount_start(const char *bootstraps, const char *topic);

/* Waits (up to @p timeout_ms) until the consumer has read up to the high watermark of
 * every partition, as known after this call starts, then stops the consumer thread so the
 * counts hold still. 0, or -1 on timeout (the consumer keeps running). */
int ts_tagcount_catch_up(ts_tagcount_t *t, int timeout_ms);

/* How many times tag <thread>-<seq> was seen (saturates at 255). Only after
 * ts_tagcount_catch_up() returned 0 (aborts otherwise). */
int ts_tagcount_get(const ts_tagcount_t *t, int thread, uint64_t seq);

/* Messages read, messages without a parsable tag, and whether offsets were lost. */
uint64_t ts_tagcount_messages(const ts_tagcount_t *t);
uint64_t ts_tagcount_untagged(const ts_tagcount_t *t);
bool ts_tagcount_lost(const ts_tagcount_t *t);

/* Stops the consumer thread and frees everything; accepts NULL. */
void ts_tagcount_destroy(ts_tagcount_t *t);

#endif
