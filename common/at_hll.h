/*
 * at_hll.h: HyperLogLog unique counts, p = 11 (2048 registers, standard error
 * 1.04/sqrt(2048) = 2.3%), for the unique users of the hourly rollups (docs/REPORTS.md).
 *
 * A user id is hashed with XXH3-64; the top 11 bits pick the register, and the rank is
 * 1 + the number of leading zeros of the other 53 bits. A register keeps the highest rank
 * it saw, so adding is idempotent and merging two sketches is a per-register maximum: the
 * rollups can apply the same user twice (a replayed batch) or merge documents in any order
 * and still get the same estimate.
 *
 * Stored in BSON as a sparse document {"<register index>": <rank>} with only the non-zero
 * registers, so a rollup with a handful of users stays small, and MongoDB's $max can
 * update one register in place.
 *
 * Plain data: no locking, no allocation. A sketch belongs to whoever holds it.
 */
#ifndef AT_HLL_H
#define AT_HLL_H

#include <bson/bson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "at_err.h"

#define AT_HLL_P 11
#define AT_HLL_REGISTERS (1u << AT_HLL_P)
#define AT_HLL_RANK_MAX (64 - AT_HLL_P + 1)

typedef struct at_hll_s {
    uint8_t reg[AT_HLL_REGISTERS];
} at_hll_t;

/* The register and rank of one user id (any bytes). */
void at_hll_hash(const void *uid, size_t len, uint32_t *index, uint8_t *rank);

static inline void at_hll_clear(at_hll_t *h)
{
    memset(h->reg, 0, sizeof h->reg);
}

/* Raises register @p index to @p rank if it is lower. Out-of-range values are ignored. */
static inline void at_hll_set(at_hll_t *h, uint32_t index, uint8_t rank)
{
    if (index < AT_HLL_REGISTERS && rank <= AT_HLL_RANK_MAX && h->reg[index] < rank)
        h->reg[index] = rank;
}

void at_hll_add(at_hll_t *h, const void *uid, size_t len);

/* dst = register-wise maximum of dst and src. */
void at_hll_merge(at_hll_t *dst, const at_hll_t *src);

/* The estimated number of distinct ids added (0 for an empty sketch). */
double at_hll_estimate(const at_hll_t *h);

/* Number of non-zero registers. */
size_t at_hll_used(const at_hll_t *h);

/*
 * Merges the sparse BSON form (the value of a document's "u" field) into @p h. Keys must be
 * decimal register indexes below AT_HLL_REGISTERS and values int32/int64 ranks from 1 to
 * AT_HLL_RANK_MAX; anything else is -1 + err naming the key (the document is then
 * partly merged).
 */
int at_hll_merge_bson(at_hll_t *h, const bson_t *sparse, at_err_t *err);

/* Appends @p h to @p parent as a sparse subdocument named @p key (non-zero registers, as int32). */
bool at_hll_append_bson(bson_t *parent, const char *key, const at_hll_t *h);

#endif
