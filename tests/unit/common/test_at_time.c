/* tests for common/at_time.c: days from civil dates, and the counters' minute key. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_at_days_from_civil__epoch_leap_years_and_before),
        cmocka_unit_test(test_at_utc_minute_key__utc_formats),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
