/*
 * at_uuid.c: UUIDv7 generation, formatting and parsing (see at_uuid.h).
 *
 * Layout (RFC 9562 5.7), big-endian:
 *   bytes 0-5   unix_ts_ms (48 bits)
 *   byte  6     version 7 in the high nibble, counter bits 11..8 in the low nibble
 *   byte  7     counter bits 7..0                    (rand_a used as a counter, 6.2 method 1)
 *   byte  8     variant 0b10 in the top two bits, then 6 random bits
 *   bytes 9-15  56 random bits                       (rand_b: 62 bits in total)
 */
#include "at_uuid.h"

#include <errno.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define COUNTER_MAX 0xfffu

/*
 * Fallback when getrandom(2) is unavailable or would block (very early boot). Ids need
 * uniqueness, not secrecy, so a splitmix64 stream seeded from the clock, the pid and the
 * generator's address is enough; the per-ms counter still guarantees ordering.
 */
static uint64_t splitmix64(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void refill(at_uuid7_gen_t *g)
{
    uint8_t *p = (uint8_t *)g->rand_pool;
    size_t want = sizeof(g->rand_pool), got = 0;
    while (got < want) {
        ssize_t n = getrandom(p + got, want - got, GRND_NONBLOCK);
        if (n > 0) {
            got += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            break;
        }
    }
    if (got < want) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        uint64_t st = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
        st ^= (uint64_t)getpid() << 32;
        st ^= (uint64_t)(uintptr_t)g;
        st ^= g->rand_pool[0];
        for (size_t i = 0; i < AT_ARRAY_LEN(g->rand_pool); i++)
            g->rand_pool[i] = splitmix64(&st);
    }
    g->rand_left = (unsigned)AT_ARRAY_LEN(g->rand_pool);
}

/* One 64-bit random word; one syscall serves a whole pool of them. */
static uint64_t rand64(at_uuid7_gen_t *g)
{
    if (g->rand_left == 0 || g->rand_left > AT_ARRAY_LEN(g->rand_pool))
        refill(g);
    return g->rand_pool[--g->rand_left];
}

/* The counter's seed keeps its top bit clear so at least 2048 ids fit in a millisecond
 * before the timestamp has to run ahead of the clock. */
static uint16_t counter_seed(at_uuid7_gen_t *g)
{
    return (uint16_t)(rand64(g) & 0x7ffu);
}

void at_uuid7_next(at_uuid7_gen_t *g, uint64_t now_ms, at_uuid_t *out)
{
    if (now_ms > g->last_ms) {
        g->last_ms = now_ms;
        g->counter = counter_seed(g);
    } else {
        /* Same millisecond, or the clock went back: stay on the last timestamp and count,
         * so ids keep increasing. When the counter runs out, borrow the next millisecond;
         * the clock catches up with it soon. */
        if (g->counter >= COUNTER_MAX) {
            g->last_ms++;
            g->counter = counter_seed(g);
        } else {
            g->counter++;
        }
    }
    uint64_t ms = g->last_ms & 0xffffffffffffull;
    uint64_t r = rand64(g);
    uint8_t *b = out->b;
    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(ms >> (40 - 8 * i));
    b[6] = (uint8_t)(0x70 | ((g->counter >> 8) & 0x0f));
    b[7] = (uint8_t)(g->counter & 0xff);
    b[8] = (uint8_t)(0x80 | ((r >> 56) & 0x3f));
    for (int i = 0; i < 7; i++)
        b[9 + i] = (uint8_t)(r >> (48 - 8 * i));
}

void at_uuid_format(const at_uuid_t *u, char out[AT_UUID_STR_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[u->b[i] >> 4];
        out[o++] = hex[u->b[i] & 0x0f];
    }
    out[o] = '\0';
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int at_uuid_parse(const char *s, size_t len, at_uuid_t *out)
{
    if (s == NULL || len != AT_UUID_STR_LEN)
        return -1;
    at_uuid_t u;
    size_t j = 0;
    for (size_t i = 0; i < AT_UUID_STR_LEN;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (s[i] != '-')
                return -1;
            i++;
            continue;
        }
        int hi = hexval(s[i]), lo = hexval(s[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        u.b[j++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    /* Only written on success so a failed parse leaves the caller's value untouched. */
    *out = u;
    return 0;
}

uint64_t at_uuid7_time_ms(const at_uuid_t *u)
{
    uint64_t ms = 0;
    for (int i = 0; i < 6; i++)
        ms = (ms << 8) | u->b[i];
    return ms;
}

int at_uuid_cmp(const at_uuid_t *a, const at_uuid_t *b)
{
    return memcmp(a->b, b->b, sizeof(a->b));
}
