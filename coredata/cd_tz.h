/*
 * cd_tz.h: IANA time zones for the reporting API, read from the TZif files of the system's
 * zone database (/usr/share/zoneinfo, Debian's tzdata; RFC 8536).
 *
 * Why not localtime_r: glibc takes the zone from the TZ environment variable, and setenv()
 * in a threaded process races with every other getenv(); there is no per-call zone API.
 * A zone here is plain data (its transitions and offsets), so any number of them can be
 * used at once from any thread.
 *
 * Times after the file's last transition use the last offset. Debian ships the "fat" files
 * (transitions listed up to 2037); a zone whose file ends earlier while its footer rule
 * still has daylight saving time is refused for such times (cd_tz_check_range), instead of
 * answering with a wrong offset.
 *
 * @locality: plain data; a loaded zone is read-only and may be shared by threads.
 */
#ifndef CD_TZ_H
#define CD_TZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "at_err.h"

#define CD_TZ_NAME_MAX 64

typedef struct cd_tz_s {
    char name[CD_TZ_NAME_MAX + 1];
    int64_t *at;      /* transition instants (UTC seconds), ascending; heap */
    int32_t *off;     /* off[i]: UTC offset (seconds east) from at[i] on; heap */
    size_t n;         /* transitions */
    int32_t off0;     /* the offset before the first transition (or always, without any) */
    bool footer_dst;  /* the footer rule has daylight saving time: offsets after at[n-1] unknown */
} cd_tz_t;

/*
 * Loads zone @p name ("UTC", or an IANA name such as "Europe/Berlin") from the directory
 * @p dir (NULL: /usr/share/zoneinfo). The name must be 1..64 characters of [A-Za-z0-9_+-/],
 * not start with '/' and not contain "..". Returns 0, or -1 with @p err (the message says
 * what was wrong, without the path prefix). Free with cd_tz_free().
 */
int cd_tz_load(cd_tz_t *z, const char *name, const char *dir, at_err_t *err);
void cd_tz_free(cd_tz_t *z);

/* The UTC offset (seconds east) at UTC instant @p t. */
int32_t cd_tz_offset(const cd_tz_t *z, int64_t t);

/*
 * The UTC instant of local wall time @p local (seconds since 1970-01-01T00:00 local). When
 * the wall time happens twice (clocks set back) the first one; when it does not happen
 * (clocks set forward over it) the instant of the change.
 */
int64_t cd_tz_to_utc(const cd_tz_t *z, int64_t local);

/*
 * 0 when every offset in force in [@p from, @p to) is a whole number of hours (so hourly
 * rollups can be cut into this zone's days) and known; else -1 with @p why (what and when).
 */
int cd_tz_check_range(const cd_tz_t *z, int64_t from, int64_t to, char *why, size_t why_size);

/* Writes UTC instant @p t as local RFC 3339 time with offset, "2026-03-29T03:00:00+02:00". */
void cd_tz_format(const cd_tz_t *z, int64_t t, char out[32]);

#endif
