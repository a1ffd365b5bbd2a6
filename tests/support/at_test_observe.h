/*
 * at_test_observe.h: looking at what running processes and clusters report, for integration
 * tests: a service's Prometheus /metrics, adtrack-loadtest's JSON report, a topic's partition
 * layout (leader, replicas, ISR) and a consumer group's committed offsets as librdkafka sees
 * them. Every call is bounded in time and reports failure by its return value (no cmocka
 * assertions inside), so callers decide what a failure means. Prefix ts_ = test support.
 */
#ifndef AT_TEST_OBSERVE_H
#define AT_TEST_OBSERVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <bson/bson.h>

/*
 * Sum of every sample of metric @p name (any labels, or none) on
 * http://127.0.0.1:@p port/metrics; -1 when the page could not be fetched (5 s) or has no
 * sample of that name. `name` must be the whole metric name: "x_total" does not match
 * "x_total_bytes".
 */
double ts_metric_sum(int port, const char *name);

/* The value of the one sample written exactly as @p series (name plus labels, e.g.
 * `adtrack_enricher_charges_total{verdict="charged"}`); -1 when absent or unreadable. */
double ts_metric(int port, const char *series);

/* The JSON file @p path (e.g. a loadtest --json report) as BSON; NULL (with a note on
 * stderr) when it cannot be read or parsed. The caller frees it with bson_destroy(). */
bson_t *ts_json_file(const char *path);

/* The number at dotted @p path of @p b into *@p out (int32, int64 or double). false when
 * there is no number there. */
bool ts_json_num(const bson_t *b, const char *path, double *out);

/*
 * The largest per-interval "p99_us" of a loadtest report's timeline ("timeline.points")
 * among the intervals whose start "t" lies in [@p from_s, @p to_s) seconds after the run
 * began; -1 when the report has no such interval. This is how a test reads the tail
 * latency *during* a fault rather than over the whole run.
 */
double ts_report_max_p99_us(const bson_t *report, double from_s, double to_s);

#define TS_MAX_BROKER_ID 16

/* One partition as the cluster's metadata describes it. */
typedef struct ts_part_s {
    int leader;    /* broker id, or -1 when leaderless (or the partition reports an error) */
    int nreplicas; /* replicas assigned */
    int nisr;      /* replicas in sync */
    bool isr_has[TS_MAX_BROKER_ID + 1]; /* isr_has[b]: broker b is in the ISR */
} ts_part_t;

/*
 * Fills @p parts[p] for each partition p < @p max of @p topic from a fresh metadata request
 * to @p bootstraps (10 s). Returns the topic's partition count, or -1 (no answer, no topic).
 */
int ts_topic_layout(const char *bootstraps, const char *topic, ts_part_t *parts, int max);

/*
 * For partitions 0..@p nparts-1 of @p topic: the committed offset of consumer group
 * @p group (OffsetFetch, without joining the group; -1 where nothing is committed) into
 * @p committed, and the high watermark into @p high (either may be NULL). 0, or -1 when a
 * request failed (10 s each).
 */
int ts_group_offsets(const char *bootstraps, const char *group, const char *topic, int nparts, int64_t *committed,
                     int64_t *high);

/*
 * Which partitions of @p topic (0..@p nparts-1) the member of @p group with client.id
 * @p client_id holds, from DescribeConsumerGroups (librdkafka's admin API, 10 s): owned[p]
 * set for each. Returns the number owned, 0 when no member has that client.id (or it holds
 * nothing), -1 on a failed request.
 */
int ts_group_assignment(const char *bootstraps, const char *group, const char *client_id, const char *topic,
                        bool *owned, int nparts);

#endif
