/*
 * test_cd_tz.c: TZif zones (cd_tz.h): offsets across DST changes, local midnights in
 * Europe/Berlin and America/New_York (days of 23 and 25 hours), wall times in a gap,
 * formatting, half-hour zones refused, bad names.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "at_time.h"
#include "cd_tz.h"

static int64_t utc(int y, int m, int d, int hh)
{
    return at_days_from_civil(y, m, d) * 86400 + hh * 3600;
}

/* Length in hours of local day y-m-d. */
static int64_t day_hours(const cd_tz_t *z, int y, int m, int d)
{
    int64_t start = cd_tz_to_utc(z, at_days_from_civil(y, m, d) * 86400);
    int64_t end = cd_tz_to_utc(z, (at_days_from_civil(y, m, d) + 1) * 86400);
    return (end - start) / 3600;
}

static void test_cd_tz_load__berlin_days_of_23_and_25_hours(void **state)
{
    (void)state;
    cd_tz_t z;
    at_err_t err = {0};
    assert_int_equal(cd_tz_load(&z, "Europe/Berlin", NULL, &err), 0);
    assert_int_equal(cd_tz_offset(&z, utc(2026, 1, 15, 12)), 3600);
    assert_int_equal(cd_tz_offset(&z, utc(2026, 7, 15, 12)), 7200);
    /* 2026-03-29: 02:00 CET -> 03:00 CEST at 01:00 UTC */
    assert_int_equal(cd_tz_offset(&z, utc(2026, 3, 29, 0)), 3600);
    assert_int_equal(cd_tz_offset(&z, utc(2026, 3, 29, 1)), 7200);
    assert_int_equal(day_hours(&z, 2026, 3, 28), 24);
    assert_int_equal(day_hours(&z, 2026, 3, 29), 23);
    assert_int_equal(day_hours(&z, 2026, 10, 25), 25);
    assert_int_equal(cd_tz_to_utc(&z, at_days_from_civil(2026, 3, 29) * 86400), utc(2026, 3, 28, 23));
    assert_int_equal(cd_tz_to_utc(&z, at_days_from_civil(2026, 10, 26) * 86400), utc(2026, 10, 25, 23));
    /* 02:30 on 2026-03-29 does not exist: the change's instant */
    assert_int_equal(cd_tz_to_utc(&z, at_days_from_civil(2026, 3, 29) * 86400 + 2 * 3600 + 1800), utc(2026, 3, 29, 1));
    /* 02:30 on 2026-10-25 happens twice: the first (CEST, 00:30 UTC) */
    assert_int_equal(cd_tz_to_utc(&z, at_days_from_civil(2026, 10, 25) * 86400 + 2 * 3600 + 1800),
                     utc(2026, 10, 25, 0) + 1800);
    char t[32];
    cd_tz_format(&z, utc(2026, 3, 29, 1), t);
    assert_string_equal(t, "2026-03-29T03:00:00+02:00");
    cd_tz_format(&z, utc(2026, 3, 28, 23), t);
    assert_string_equal(t, "2026-03-29T00:00:00+01:00");
    char why[300];
    assert_int_equal(cd_tz_check_range(&z, utc(2026, 1, 1, 0), utc(2026, 12, 31, 0), why, sizeof(why)), 0);
    cd_tz_free(&z);
}

static void test_cd_tz_load__new_york_days_of_23_and_25_hours(void **state)
{
    (void)state;
    cd_tz_t z;
    at_err_t err = {0};
    assert_int_equal(cd_tz_load(&z, "America/New_York", NULL, &err), 0);
    assert_int_equal(day_hours(&z, 2026, 3, 8), 23);
    assert_int_equal(day_hours(&z, 2026, 3, 9), 24);
    assert_int_equal(day_hours(&z, 2026, 11, 1), 25);
    assert_int_equal(cd_tz_to_utc(&z, at_days_from_civil(2026, 3, 8) * 86400), utc(2026, 3, 8, 5));
    assert_int_equal(cd_tz_to_utc(&z, at_days_from_civil(2026, 3, 9) * 86400), utc(2026, 3, 9, 4));
    char t[32];
    cd_tz_format(&z, utc(2026, 11, 1, 6), t);
    assert_string_equal(t, "2026-11-01T01:00:00-05:00");
    cd_tz_free(&z);
}

static void test_cd_tz_check_range__half_hour_zone_refused(void **state)
{
    (void)state;
    cd_tz_t z;
    at_err_t err = {0};
    char why[300];
    assert_int_equal(cd_tz_load(&z, "Asia/Kolkata", NULL, &err), 0);
    assert_int_equal(cd_tz_offset(&z, utc(2026, 1, 1, 0)), 5 * 3600 + 1800);
    assert_int_equal(cd_tz_check_range(&z, utc(2026, 1, 1, 0), utc(2026, 1, 2, 0), why, sizeof(why)), -1);
    assert_non_null(strstr(why, "Asia/Kolkata"));
    assert_non_null(strstr(why, "+5:30"));
    assert_non_null(strstr(why, "whole number of hours"));
    cd_tz_free(&z);
    /* Newfoundland: -3:30, the sign must survive */
    assert_int_equal(cd_tz_load(&z, "America/St_Johns", NULL, &err), 0);
    assert_int_equal(cd_tz_check_range(&z, utc(2026, 1, 1, 0), utc(2026, 1, 2, 0), why, sizeof(why)), -1);
    assert_non_null(strstr(why, "-3:30"));
    cd_tz_free(&z);
}

static void test_cd_tz_load__names(void **state)
{
    (void)state;
    cd_tz_t z;
    at_err_t err = {0};
    assert_int_equal(cd_tz_load(&z, "UTC", NULL, &err), 0);
    assert_int_equal(cd_tz_offset(&z, utc(2026, 7, 1, 0)), 0);
    char t[32];
    cd_tz_format(&z, utc(2026, 7, 1, 5), t);
    assert_string_equal(t, "2026-07-01T05:00:00+00:00");
    cd_tz_free(&z);
    assert_int_equal(cd_tz_load(&z, "../../etc/passwd", NULL, &err), -1);
    assert_non_null(strstr(err.msg, "IANA time zone name"));
    assert_int_equal(cd_tz_load(&z, "/etc/passwd", NULL, &err), -1);
    assert_int_equal(cd_tz_load(&z, "", NULL, &err), -1);
    assert_int_equal(cd_tz_load(&z, "Nowhere/Atlantis", NULL, &err), -1);
    assert_non_null(strstr(err.msg, "Nowhere/Atlantis"));
    /* a directory, not a zone */
    assert_int_equal(cd_tz_load(&z, "Europe", NULL, &err), -1);
    cd_tz_free(&z);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cd_tz_load__berlin_days_of_23_and_25_hours),
        cmocka_unit_test(test_cd_tz_load__new_york_days_of_23_and_25_hours),
        cmocka_unit_test(test_cd_tz_check_range__half_hour_zone_refused),
        cmocka_unit_test(test_cd_tz_load__names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
