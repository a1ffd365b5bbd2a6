/*
 * at_swar.h: tests on 8 bytes at once ("SIMD within a register"), for scanners that skip
 * runs of ordinary bytes. Each macro answers whether ANY byte of the 64-bit word @p w has
 * the property, exactly (no false positives or negatives for that question; which byte it
 * is, is for the caller to find byte by byte).
 */
#ifndef AT_SWAR_H
#define AT_SWAR_H

#include <stdint.h>

#define AT_SWAR_ONES UINT64_C(0x0101010101010101)
#define AT_SWAR_HIGHS UINT64_C(0x8080808080808080)
/* a byte == 0 */
#define AT_SWAR_HAS_ZERO(w) (((w) - AT_SWAR_ONES) & ~(w) & AT_SWAR_HIGHS)
/* a byte == @p b */
#define AT_SWAR_HAS_BYTE(w, b) AT_SWAR_HAS_ZERO((w) ^ (AT_SWAR_ONES * (uint64_t)(b)))
/* a byte < @p n (n <= 128) */
#define AT_SWAR_HAS_LESS(w, n) (((w) - AT_SWAR_ONES * (uint64_t)(n)) & ~(w) & AT_SWAR_HIGHS)
/* a byte >= 0x80 */
#define AT_SWAR_HAS_HIGH(w) ((w) & AT_SWAR_HIGHS)

/* The 8 bytes at @p p as a word whose least significant byte is the first in memory (a
 * byte swap on big-endian hosts). */
static inline uint64_t at_swar_load(const void *p)
{
    uint64_t w;
    __builtin_memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* Index (0-7) of the first byte, in memory order, flagged in a non-zero result @p m of the
 * tests above on a word from at_swar_load(). The lowest flag of each test is exact (borrows
 * only run towards the high bytes), so this is the first byte that has the property. */
#define AT_SWAR_FIRST(m) ((size_t)__builtin_ctzll(m) / 8)

#endif
