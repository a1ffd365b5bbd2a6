/*
 * at_hll.c: HyperLogLog (at_hll.h). The estimator is the one of Flajolet, Fusy, Gandouet
 * and Meunier (2007): the bias-corrected harmonic mean, replaced by linear counting while
 * the estimate is below 2.5 m and some registers are still zero. With a 64-bit hash the
 * large-range correction of the 32-bit original is not needed.
 */
#include "at_hll.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <xxhash.h>

void at_hll_hash(const void *uid, size_t len, uint32_t *index, uint8_t *rank)
{
    uint64_t h = XXH3_64bits(uid, len);
    *index = (uint32_t)(h >> (64 - AT_HLL_P));
    uint64_t rest = h << AT_HLL_P;
    /* All 53 remaining bits zero: the highest rank there is. */
    *rank = rest == 0 ? AT_HLL_RANK_MAX : (uint8_t)(__builtin_clzll(rest) + 1);
}

void at_hll_add(at_hll_t *h, const void *uid, size_t len)
{
    uint32_t index;
    uint8_t rank;
    at_hll_hash(uid, len, &index, &rank);
    at_hll_set(h, index, rank);
}

void at_hll_merge(at_hll_t *dst, const at_hll_t *src)
{
    for (size_t i = 0; i < AT_HLL_REGISTERS; i++)
        if (dst->reg[i] < src->reg[i])
            dst->reg[i] = src->reg[i];
}

size_t at_hll_used(const at_hll_t *h)
{
    size_t n = 0;
    for (size_t i = 0; i < AT_HLL_REGISTERS; i++)
        n += h->reg[i] != 0;
    return n;
}

double at_hll_estimate(const at_hll_t *h)
{
    const double m = AT_HLL_REGISTERS;
    double sum = 0;
    size_t zeros = 0;
    for (size_t i = 0; i < AT_HLL_REGISTERS; i++) {
        sum += ldexp(1.0, -(int)h->reg[i]);
        zeros += h->reg[i] == 0;
    }
    if (zeros == AT_HLL_REGISTERS)
        return 0;
    double alpha = 0.7213 / (1.0 + 1.079 / m);
    double e = alpha * m * m / sum;
    if (e <= 2.5 * m && zeros > 0)
        e = m * log(m / (double)zeros);
    return e;
}

int at_hll_merge_bson(at_hll_t *h, const bson_t *sparse, at_err_t *err)
{
    bson_iter_t it;
    if (!bson_iter_init(&it, sparse))
        return at_err_set(err, AT_ERR_INVALID, "u: not a valid document");
    while (bson_iter_next(&it)) {
        const char *key = bson_iter_key(&it);
        char *end = NULL;
        long index = strtol(key, &end, 10);
        if (key[0] < '0' || key[0] > '9' || *end != '\0' || index < 0 || index >= (long)AT_HLL_REGISTERS)
            return at_err_set(err, AT_ERR_INVALID, "u.%s: expected a register index from 0 to %u", key,
                              AT_HLL_REGISTERS - 1);
        int64_t rank;
        if (BSON_ITER_HOLDS_INT32(&it))
            rank = bson_iter_int32(&it);
        else if (BSON_ITER_HOLDS_INT64(&it))
            rank = bson_iter_int64(&it);
        else
            return at_err_set(err, AT_ERR_INVALID, "u.%s: expected an integer rank", key);
        if (rank < 1 || rank > AT_HLL_RANK_MAX)
            return at_err_set(err, AT_ERR_INVALID, "u.%s: expected a rank from 1 to %d", key, AT_HLL_RANK_MAX);
        at_hll_set(h, (uint32_t)index, (uint8_t)rank);
    }
    return 0;
}

bool at_hll_append_bson(bson_t *parent, const char *key, const at_hll_t *h)
{
    bson_t child;
    if (!bson_append_document_begin(parent, key, -1, &child))
        return false;
    char name[16];
    for (uint32_t i = 0; i < AT_HLL_REGISTERS; i++) {
        if (h->reg[i] == 0)
            continue;
        int n = snprintf(name, sizeof name, "%u", i);
        if (!bson_append_int32(&child, name, n, h->reg[i]))
            return false;
    }
    return bson_append_document_end(parent, &child);
}
