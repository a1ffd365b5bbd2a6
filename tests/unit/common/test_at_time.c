/* tests for common/at_time.c: days from civil dates, and the counters' minute key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

#include "at_common.h"
#include "at_time.h"

static void test_at_days_from_civil__epoch_leap_years_and_before(void **state)
{
    AT_UNUSED(state);
    assert_int_equal(at_days_from_civil(1970, 1, 1), 0);
    assert_int_equal(at_days_from_civil(1969, 12, 31), -1);
    assert_int_equal(at_days_from_civil(2000, 3, 1), 11017); /* after a 400-year leap day */
    assert_int_equal(at_days_from_civil(2024, 2, 29), 19782);
    assert_int_equal(at_days_from_civil(2026, 11, 27), 20784);
    assert_int_equal(at_days_from_civil(1900, 3, 1), -25508); /* 1900 is not a leap year */
}

static void test_at_utc_minute_key__utc_formats(void **state)
{
    AT_UNUSED(state);
    char out[16];
    at_utc_minute_key(INT64_C(1795786022123), out); /* 2026-11-27T13:27:02.123Z */
    assert_string_equal(out, "202611271327");
    at_utc_minute_key(-1, out); /* one ms before the epoch */
    assert_string_equal(out, "196912312359");
}

/* Against gmtime_r + strftime (what at_event_to_json used before): every date from 1970 to
 * 9999 in steps that hit every day of some years, leap days, month ends and odd millis. */
static void test_at_utc_iso8601__matches_gmtime_across_the_range(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 400000; i++) {
        int64_t ms;
        if (i < 200000) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            ms = (int64_t)(x % (uint64_t)INT64_C(253402300800000));
        } else {
            ms = (int64_t)(i - 200000) * INT64_C(86400000) + (i % 3 == 0 ? 0 : i % 1000) + INT64_C(86399000) * (i % 2);
        }
        char got[32], want[64];
        size_t n = at_utc_iso8601(ms, got);
        time_t secs = (time_t)(ms / 1000);
        struct tm tm;
        gmtime_r(&secs, &tm);
        size_t dn = strftime(want, sizeof(want), "%Y-%m-%dT%H:%M:%S", &tm);
        if (ms % 1000 != 0)
            snprintf(want + dn, sizeof(want) - dn, ".%03dZ", (int)(ms % 1000));
        else
            snprintf(want + dn, sizeof(want) - dn, "Z");
        if (strcmp(got, want) != 0 || n != strlen(want))
            fail_msg("%lld: got %s, want %s", (long long)ms, got, want);
        int64_t y;
        int m, d;
        at_civil_from_days(ms / 86400000, &y, &m, &d);
        assert_int_equal(at_days_from_civil(y, m, d), ms / 86400000);
    }
    char out[32];
    assert_int_equal(at_utc_iso8601(-1, out), 0);
    assert_int_equal(at_utc_iso8601(INT64_C(253402300800000), out), 0);
    assert_int_equal(at_utc_iso8601(INT64_C(253402300799999), out), 24);
    assert_string_equal(out, "9999-12-31T23:59:59.999Z");
    assert_int_equal(at_utc_iso8601(0, out), 20);
    assert_string_equal(out, "1970-01-01T00:00:00Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_days_from_civil__epoch_leap_years_and_before),
        cmocka_unit_test(test_at_utc_minute_key__utc_formats),
        cmocka_unit_test(test_at_utc_iso8601__matches_gmtime_across_the_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
