/* Unit tests for common/at_json.c: the relaxed Extended JSON writer must produce exactly
 * libbson's bytes (bson_as_relaxed_extended_json) for every document, and fail where
 * libbson fails. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "at_common.h"
#include "at_json.h"

/* xorshift64*: deterministic, so a failure reproduces. */
static uint64_t rng_state = UINT64_C(0x9E3779B97F4A7C15);

static uint64_t rnd(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * UINT64_C(2685821657736338717);
}

static size_t rnd_below(size_t n)
{
    return (size_t)(rnd() % n);
}

/* Random text: mostly printable ASCII, with JSON specials, control characters, NUL,
 * 2-, 3- and 4-byte UTF-8, and (when @p allow_bad) now and then bytes that are not
 * strictly valid UTF-8 (stray continuation, overlong, surrogate, above U+10FFFF, cut short). */
static size_t rnd_text(char *out, size_t max, bool allow_bad, bool allow_nul)
{
    static const char *const pieces[] = {"\"", "\\", "/", "\b", "\f", "\n", "\r", "\t", "\x01", "\x1f", "\x7f",
                                         "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xef\xbf\xbd",
                                         "\xe2\x80\xa8", "\xf4\x8f\xbf\xbf", "\xc2\x80", "\xed\x9f\xbf",
                                         "\xee\x80\x80"};
    static const char *const bad[] = {"\x80", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\xff",
                                      "\xf8\x88\x80\x80\x80", "\xc1\xbf", "\xe0\x80\xaf"};
    size_t n = 0, want = rnd_below(max / 4 + 1);
    while (n < want) {
        unsigned r = (unsigned)rnd_below(100);
        const char *p;
        char one[2] = {0, 0};
        if (r < 70) {
            one[0] = (char)(0x20 + rnd_below(95));
            p = one;
        } else if (r < 97 || !allow_bad) {
            p = pieces[rnd_below(AT_ARRAY_LEN(pieces))];
        } else {
            p = bad[rnd_below(AT_ARRAY_LEN(bad))];
        }
        size_t pl = strlen(p);
        if (n + pl > max)
            break;
        memcpy(out + n, p, pl);
        n += pl;
    }
    if (allow_nul && n < max && rnd_below(20) == 0)
        out[n++] = '\0';
    return n;
}

static int64_t rnd_date(void)
{
    switch (rnd_below(8)) {
    case 0:
        return 0;
    case 1:
        return -1 - (int64_t)rnd_below(1000000);
    case 2:
        return INT64_C(253402300799999);
    case 3:
        return INT64_C(253402300800000) + (int64_t)rnd_below(1000);
    case 4:
        return (int64_t)rnd_below(100000) * 1000; /* whole seconds: no ".mmm" */
    case 5:
        return (int64_t)(rnd() % UINT64_C(253402300800000));
    case 6:
        return INT64_C(951782400000) + (int64_t)rnd_below(86400000 * 3); /* around 2000-02-29 */
    default:
        return INT64_C(1700000000000) + (int64_t)rnd_below(100000000000);
    }
}

static void rnd_doc(bson_t *b, int depth, bool array, bool allow_bad, bool allow_exotic)
{
    size_t n = rnd_below(depth == 0 ? 12 : 5);
    for (size_t i = 0; i < n; i++) {
        char key[64], sval[256];
        if (array) {
            snprintf(key, sizeof(key), "%zu", i);
        } else {
            size_t kl = rnd_text(key, sizeof(key) - 1, allow_bad, false);
            key[kl] = '\0';
        }
        unsigned t = (unsigned)rnd_below(allow_exotic ? 12 : 10);
        bson_t sub;
        switch (t) {
        case 0:
        case 1:
        case 2: {
            size_t sl = rnd_text(sval, sizeof(sval), allow_bad, true);
            bson_append_utf8(b, key, -1, sval, (int)sl);
            break;
        }
        case 3:
            bson_append_int32(b, key, -1, (int32_t)(rnd() >> 32) >> (int)rnd_below(32));
            break;
        case 4:
            bson_append_int64(b, key, -1, (int64_t)rnd() >> (int)rnd_below(64));
            break;
        case 5:
            bson_append_bool(b, key, -1, rnd_below(2) == 0);
            break;
        case 6:
            bson_append_null(b, key, -1);
            break;
        case 7:
            bson_append_date_time(b, key, -1, rnd_date());
            break;
        case 8:
        case 9:
            if (depth >= 4) {
                bson_append_int32(b, key, -1, 7);
                break;
            }
            if (t == 8) {
                bson_append_document_begin(b, key, -1, &sub);
                rnd_doc(&sub, depth + 1, false, allow_bad, allow_exotic);
                bson_append_document_end(b, &sub);
            } else {
                bson_append_array_begin(b, key, -1, &sub);
                rnd_doc(&sub, depth + 1, true, allow_bad, allow_exotic);
                bson_append_array_end(b, &sub);
            }
            break;
        case 10:
            bson_append_double(b, key, -1, (double)(int64_t)rnd() / 3.0);
            break;
        default: {
            static const uint8_t bin[] = {1, 2, 3};
            bson_append_binary(b, key, -1, BSON_SUBTYPE_BINARY, bin, sizeof(bin));
            break;
        }
        }
    }
}

/* Compares the writer with libbson on @p doc, appending after a prefix already in the
 * buffer. Returns true when the fast path matched libbson (or both failed). */
static void check_same(const bson_t *doc)
{
    size_t n = 0;
    char *want = bson_as_relaxed_extended_json(doc, &n);
    char *buf = NULL;
    size_t cap = 0, used = 0;
    /* a prefix, and a tiny capacity, so appending and growing are both exercised */
    buf = malloc(8);
    assert_non_null(buf);
    cap = 8;
    memcpy(buf, "PREFIX", 6);
    used = 6;
    int rc = at_json_append_relaxed(doc, &buf, &cap, &used);
    if (want == NULL) {
        if (rc != -1 || used != 6)
            fail_msg("libbson fails on this document, the writer returned %d (used %zu)", rc, used);
    } else {
        assert_int_equal(rc, 0);
        assert_memory_equal(buf, "PREFIX", 6);
        if (used - 6 != n || memcmp(buf + 6, want, n) != 0)
            fail_msg("writer differs from libbson:\nlibbson: %s\nwriter:  %.*s", want, (int)(used - 6), buf + 6);
    }
    bson_free(want);
    free(buf);
}

static void test_at_json_append_relaxed__generated_documents_match_libbson(void **state)
{
    AT_UNUSED(state);
    for (int i = 0; i < 20000; i++) {
        bson_t doc = BSON_INITIALIZER;
        /* every fourth document: only valid text and the types written directly */
        bool plain = i % 4 == 0;
        rnd_doc(&doc, 0, false, !plain, !plain);
        check_same(&doc);
        bson_destroy(&doc);
    }
}

static void test_at_json_append_relaxed__edge_cases(void **state)
{
    AT_UNUSED(state);
    bson_t doc = BSON_INITIALIZER, sub;
    check_same(&doc); /* "{ }" */
    BSON_APPEND_DOCUMENT_BEGIN(&doc, "e", &sub);
    bson_append_document_end(&doc, &sub);
    BSON_APPEND_ARRAY_BEGIN(&doc, "a", &sub);
    bson_append_array_end(&doc, &sub);
    BSON_APPEND_INT32(&doc, "min32", INT32_MIN);
    BSON_APPEND_INT64(&doc, "min64", INT64_MIN);
    BSON_APPEND_INT64(&doc, "max64", INT64_MAX);
    BSON_APPEND_DATE_TIME(&doc, "d0", 0);
    BSON_APPEND_DATE_TIME(&doc, "dmax", INT64_C(253402300799999));
    BSON_APPEND_DATE_TIME(&doc, "d1000", 1000);
    BSON_APPEND_DATE_TIME(&doc, "leap", INT64_C(951782400123)); /* 2000-02-29T00:00:00.123Z */
    bson_append_utf8(&doc, "nul\x01", -1, "a\0b", 3);
    check_same(&doc);
    BSON_APPEND_DATE_TIME(&doc, "neg", -1); /* libbson's {"$numberLong"} form */
    BSON_APPEND_DATE_TIME(&doc, "y10000", INT64_C(253402300800000));
    check_same(&doc);
    bson_destroy(&doc);

    /* An enriched event, the sink's everyday document. */
    bson_init(&doc);
    BSON_APPEND_UTF8(&doc, "_id", "0190a000-0000-7000-8000-0000000000aa");
    BSON_APPEND_INT32(&doc, "v", 1);
    BSON_APPEND_DATE_TIME(&doc, "ts", INT64_C(1795786022123));
    BSON_APPEND_UTF8(&doc, "ua", "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/120.0");
    BSON_APPEND_UTF8(&doc, "u", "https://news.example/a?q=\"x\"&y=\\z\u00e9");
    BSON_APPEND_INT64(&doc, "price_micros", 2500);
    check_same(&doc);
    bson_destroy(&doc);

    /* Not UTF-8: libbson cannot write it, neither does the writer. */
    bson_init(&doc);
    bson_append_utf8(&doc, "x", -1, "\xff", 1);
    check_same(&doc);
    bson_destroy(&doc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_json_append_relaxed__edge_cases),
        cmocka_unit_test(test_at_json_append_relaxed__generated_documents_match_libbson),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
