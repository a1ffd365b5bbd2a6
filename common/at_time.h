/*
 * at_time.h: calendar arithmetic shared by the services' date parsers, and the UTC minute
 * key of the real-time counters (adtrack:stats:<campaign>:<yyyymmddHHMM>, written by the
 * enricher, read by the dashboard: one function, so the two cannot drift apart).
 */
#ifndef AT_TIME_H
#define AT_TIME_H

#include <stddef.h>
#include <stdint.h>

/* Days from 1970-01-01 to @p y-@p m-@p d in the proleptic Gregorian calendar (Howard
 * Hinnant's days-from-civil algorithm); negative before the epoch. @p m is 1..12 and
 * @p d 1..31; the caller checks ranges. */
int64_t at_days_from_civil(int64_t y, int m, int d);

/* The calendar date of day @p days since 1970-01-01 (the inverse of at_days_from_civil). */
void at_civil_from_days(int64_t days, int64_t *y, int *m, int *d);

/*
 * Writes the UTC time @p ms (milliseconds since the epoch) as libbson's relaxed Extended
 * JSON writes a date: "YYYY-MM-DDTHH:MM:SSZ", with ".mmm" before the Z only when the
 * milliseconds are not 0. Only for years 1970 to 9999 (libbson's own range for this form);
 * returns the length written (NUL-terminated), or 0 outside it.
 */
size_t at_utc_iso8601(int64_t ms, char out[32]);

/* Writes "yyyymmddHHMM" (UTC, NUL-terminated, 13 bytes) of the minute holding @p ms
 * (milliseconds since the epoch; times before it round down to their minute). */
void at_utc_minute_key(int64_t ms, char out[16]);

#endif
