/*
 * cd_rline.h: a fast reader of the JSON lines of the stats files (docs/REPORTS.md), for the
 * reports' file source.
 *
 * Why: libbson's JSON reader parses a rollup line in tens of microseconds, so loading 30
 * days x 1000 campaigns (1.4 million lines) took over a minute. The lines are flat relaxed
 * Extended JSON written by our own enricher: strings without escapes, integers, dates
 * {"$date": "...Z"}, {"$numberLong": "..."} and small objects of integers. This reader
 * takes exactly that subset and builds the same BSON libbson would (an integer that fits
 * int32 is an int32, else int64); anything else (an escape, a non-ASCII byte, a double,
 * an array, true/false/null, a date in another form) makes it give up, and the caller uses
 * libbson for that line. tests/unit/coredata/test_cd_rline.c compares both readers.
 *
 * @locality: any thread; no state.
 */
#ifndef CD_RLINE_H
#define CD_RLINE_H

#include <bson/bson.h>
#include <stddef.h>

/* Parses the JSON object @p s (length @p n) into @p out (initialised here; destroy it
 * when 0 is returned). -1: not in the subset (nothing to destroy). */
int cd_rline_parse(const char *s, size_t n, bson_t *out);

#endif
