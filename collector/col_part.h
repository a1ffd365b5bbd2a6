/*
 * col_part.h: the collector chooses each event's partition itself, so that it can route an
 * event whose partition is in trouble straight to the spool while the others go to Kafka.
 *
 * The partition is the one librdkafka's configured partitioner would choose for the key
 * (`partitioner`, default consistent_random: CRC32 of the campaign id), computed with
 * librdkafka's own partitioner functions and the partition count the spool's metadata probe
 * last saw. Loops and the spool's replayer use the same choice, so an event keeps its
 * partition whichever path it takes. A partitioner that is not a pure function of the key
 * ("random", a custom one) turns the per-partition routing off (COL_PART_ANY).
 */
#ifndef COL_PART_H
#define COL_PART_H

#include <stddef.h>
#include <stdint.h>
#include <librdkafka/rdkafka.h>

/* "Let librdkafka's partitioner choose" (RD_KAFKA_PARTITION_UA). */
#define COL_PART_ANY RD_KAFKA_PARTITION_UA

typedef int32_t (*col_part_fn)(const rd_kafka_topic_t *rkt, const void *key, size_t keylen, int32_t partition_cnt,
                               void *rkt_opaque, void *msg_opaque);

/* The partitioner @p conf names (read before rd_kafka_new() takes @p conf), or NULL when
 * it is not a function of the key. */
col_part_fn col_part_fn_from_conf(const rd_kafka_conf_t *conf);

/* The partition of @p key among @p count (a random one for an empty key), or COL_PART_ANY
 * when @p fn is NULL or @p count is not known yet (0). @locality: any thread */
int32_t col_part_of(col_part_fn fn, const rd_kafka_topic_t *rkt, const void *key, size_t keylen, int32_t count);

#endif
