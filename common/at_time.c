/*
 * at_time.c: calendar arithmetic and the counters' minute key (see at_time.h).
 */
#include "at_time.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

int64_t at_days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

void at_civil_from_days(int64_t days, int64_t *y, int *m, int *d)
{
    /* Howard Hinnant's civil-from-days, the inverse of the function above. */
    days += 719468;
    int64_t era = (days >= 0 ? days : days - 146096) / 146097;
    int64_t doe = days - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static char *put2(char *o, int v)
{
    o[0] = (char)('0' + v / 10);
    o[1] = (char)('0' + v % 10);
    return o + 2;
}

size_t at_utc_iso8601(int64_t ms, char out[32])
{
    /* 9999-12-31T23:59:59.999Z */
    if (ms < 0 || ms > INT64_C(253402300799999))
        return 0;
    int64_t secs = ms / 1000, days = secs / 86400, rem = secs % 86400, y;
    int m, d;
    at_civil_from_days(days, &y, &m, &d);
    char *o = out;
    o = put2(o, (int)(y / 100));
    o = put2(o, (int)(y % 100));
    *o++ = '-';
    o = put2(o, m);
    *o++ = '-';
    o = put2(o, d);
    *o++ = 'T';
    o = put2(o, (int)(rem / 3600));
    *o++ = ':';
    o = put2(o, (int)(rem / 60 % 60));
    *o++ = ':';
    o = put2(o, (int)(rem % 60));
    int frac = (int)(ms % 1000);
    if (frac != 0) {
        *o++ = '.';
        *o++ = (char)('0' + frac / 100);
        o = put2(o, frac % 100);
    }
    *o++ = 'Z';
    *o = '\0';
    return (size_t)(o - out);
}

void at_utc_minute_key(int64_t ms, char out[16])
{
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%04d%02d%02d%02d%02d", (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min);
    memcpy(out, tmp, 13);
    out[12] = '\0';
}
