/*
 * col_part.c: the partition of an event, as librdkafka's partitioner would choose it (see
 * col_part.h).
 */
#include "col_part.h"

#include <string.h>

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
    /* The *_random partitioners pick a random partition for an empty key: not reproducible. */
    if (fn == NULL || count <= 0 || key == NULL || keylen == 0)
        return COL_PART_ANY;
    return fn(rkt, key, keylen, count, NULL, NULL);
}
