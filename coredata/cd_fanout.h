/*
 * cd_fanout.h: after the store accepted a change, tell everybody.
 *
 * One dedicated thread, fed by a queue from the core worker, in version order:
 *  1. Redis (hiredis, synchronous, pipelined): a Lua script per change compares and sets
 *     the entity hash by version, adds the id to the id set, raises
 *     adtrack:coredata:version, and PUBLISHes the change on adtrack:coredata, all
 *     atomically, so no subscriber can see a notification before the hash it announces.
 *     For a campaign whose budget now exceeds its spend it also deletes
 *     adtrack:exhausted:<id> and publishes {"kind":"budget","op":"replenished"}.
 *  2. Kafka: the same JSON, produced to the compacted changes topic keyed <kind>:<id>,
 *     in order, each kept until acknowledged.
 *
 * Guarantees (docs/COREDATA.md): Redis ends up with every entity at its latest version. When
 * Redis fails, queued changes are not retried one by one: on every (re)connect the thread
 * writes the full state from memory through the same compare-and-set script (and publishes
 * what was applied), so a Redis restart loses no change. Kafka: per key in version order,
 * at least once; on failure the unacknowledged changes are produced again in order (a
 * failed change whose newer version of the same key was already acknowledged is dropped,
 * so compaction never keeps an older version).
 */
#ifndef CD_FANOUT_H
#define CD_FANOUT_H

#include "at_metrics.h"
#include "cd_conf.h"
#include "cd_state.h"

typedef struct cd_fanout_s cd_fanout_t;

/* One change to announce. Built by cd_change_new(); owned by the fan-out once pushed. */
typedef struct cd_change_s cd_change_t;

/*
 * A change for @p doc (the stored document, with version; a tombstone for deletes).
 * @p budget_op: the change altered the campaign's budget (replenish when budget > spend).
 * @p replenish_version: a version reserved for the "replenished" notification (0: none
 * reserved; the script then takes the counter's next value if it has to replenish).
 */
cd_change_t *cd_change_new(cd_kind_t kind, const bson_t *doc, bool budget_op, int64_t replenish_version);
void cd_change_free(cd_change_t *ch);

/* The notification JSON of a stored document: {"kind","id","version","op"[,"doc"]}.
 * bson_free() the result. */
char *cd_change_json(cd_kind_t kind, const bson_t *doc, size_t *len);

/* Creates the fan-out (not started). @p state is read for resyncs. NULL + err. */
cd_fanout_t *cd_fanout_new(const cd_conf_t *conf, cd_state_t *state, at_metrics_t *metrics, at_err_t *err);
/* Starts the thread. */
int cd_fanout_start(cd_fanout_t *fo, at_err_t *err);
/* Queues @p ch (ownership taken). @locality: the core worker thread. */
void cd_fanout_push(cd_fanout_t *fo, cd_change_t *ch);
/* Highest version seen in adtrack:coredata:version (the enricher also takes versions from
 * it); the core keeps its counter above it. @locality: any thread. */
int64_t cd_fanout_floor(cd_fanout_t *fo);
/* Reads adtrack:coredata:version once, synchronously (start-up only). 0 or -1. */
int cd_fanout_probe_floor(cd_fanout_t *fo, at_err_t *err);
/* Status for /readyz and /metrics. @locality: any thread. */
bool cd_fanout_redis_up(cd_fanout_t *fo);
/* True while Redis refuses coredata's credentials or ACL permissions. @locality: any thread. */
bool cd_fanout_redis_auth_failed(cd_fanout_t *fo);
size_t cd_fanout_kafka_backlog(cd_fanout_t *fo);
size_t cd_fanout_queue_len(cd_fanout_t *fo);
/* True once every change pushed so far has been written to Redis and acknowledged by Kafka. */
bool cd_fanout_idle(cd_fanout_t *fo);
/* Stops the thread after trying to flush Kafka for up to @p drain_ms. */
void cd_fanout_stop(cd_fanout_t *fo, int drain_ms);
void cd_fanout_destroy(cd_fanout_t *fo);

/* The Lua compare-and-set script (exported for tests that apply an old version directly).
 * KEYS: entity hash, id set, version key, spend key, exhausted key.
 * ARGV: version, id, deleted(0/1), doc, channel, message, is_campaign(0/1), budget_micros,
 *       budget_op(0/1), replenish_version, publish(0/1).
 * Returns {applied(0/1), replenished_version(0 = none), counter}. */
extern const char cd_fanout_cas_script[];

#endif
