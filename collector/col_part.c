/*
 * col_part.c: the partition of an event, as librdkafka's partitioner would choose it (see
 * col_part.h).
 */
#include "col_part.h"

#include <string.h>

/* A per-thread xorshift: no lock, and its quality is plenty for spreading keyless events. */
static uint32_t rand_next(void)
{
    static __thread uint32_t x;
    if (x == 0)
        x = (uint32_t)(uintptr_t)&x ^ 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return x;
}

col_part_fn col_part_fn_from_conf(const rd_kafka_conf_t *conf)
{
    static const struct {
        const char *name;
        col_part_fn fn;
    } known[] = {
        {"consistent_random", rd_kafka_msg_partitioner_consistent_random},
        {"consistent", rd_kafka_msg_partitioner_consistent},
        {"murmur2", rd_kafka_msg_partitioner_murmur2},
        {"murmur2_random", rd_kafka_msg_partitioner_murmur2_random},
        {"fnv1a", rd_kafka_msg_partitioner_fnv1a},
        {"fnv1a_random", rd_kafka_msg_partitioner_fnv1a_random},
    };
    char name[64];
    size_t len = sizeof(name);
    if (rd_kafka_conf_get(conf, "partitioner", name, &len) != RD_KAFKA_CONF_OK)
        return rd_kafka_msg_partitioner_consistent_random; /* librdkafka's default */
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcmp(name, known[i].name) == 0)
            return known[i].fn;
    return NULL;
}

int32_t col_part_of(col_part_fn fn, const rd_kafka_topic_t *rkt, const void *key, size_t keylen, int32_t count)
{
    if (fn == NULL || count <= 0)
        return COL_PART_ANY;
    /* No key (a rejected event without a campaign): any partition, as librdkafka's *_random
     * partitioners would, but chosen here so the event still has a known partition. */
    if (key == NULL || keylen == 0)
        return (int32_t)(rand_next() % (uint32_t)count);
    return fn(rkt, key, keylen, count, NULL, NULL);
}
