/*
 * lt_capture.h: recorded traffic to replay.
 *
 * Three formats, one request per line:
 *  - clf: an access log in (combined) log format, as nginx and Apache write it:
 *      203.0.113.9 - - [21/Nov/2026:13:27:02 +0000] "GET /t.gif?e=imp&c=c1 HTTP/1.1" 200 43 "https://ref/"
 * "Mozilla/5.0" Referer and User-Agent are replayed as headers. Only GET and HEAD lines are replayed (a log has no
 * request bodies); other methods are counted as skipped.
 *  - urls: a URL ("http://host/t.gif?...", only the path and query are used) or a path
 *    ("/t.gif?...") per line, optionally preceded by GET or HEAD. No timestamps.
 *  - jsonl: one JSON object per line: {"ts": 1763731622.123, "method": "POST",
 *    "url": "/v1/events", "headers": {"User-Agent": "..."}, "body": [...]}. ts is Unix
 *    seconds (fractional allowed), an RFC 3339 string or {"$date": ...}; "ts_ms" (Unix ms)
 *    is accepted too; "path" is a synonym of "url"; body may be a string, array or object.
 * Blank lines and lines starting with '#' are ignored (not counted as bad). A line that
 * cannot be parsed is counted, its number remembered (the first LT_CAPTURE_BAD_KEEP), and
 * loading goes on: bad input never stops a run unless nothing usable is left.
 */
#ifndef LT_CAPTURE_H
#define LT_CAPTURE_H

#include "at_err.h"
#include "lt_buf.h"

#define LT_CAPTURE_BAD_KEEP 10
#define LT_CAPTURE_NO_TIME INT64_MIN

typedef enum lt_capture_format_e {
    LT_CAP_AUTO = 0,
    LT_CAP_CLF,
    LT_CAP_URLS,
    LT_CAP_JSONL,
} lt_capture_format_t;

typedef struct lt_capture_entry_s {
    int64_t ts_ns; /* capture time, Unix ns, or LT_CAPTURE_NO_TIME */
    uint64_t line; /* 1-based line number in the source */
    char method[8];
    size_t target_off, target_len;   /* into the arena: path and query, starts with '/' */
    size_t headers_off, headers_len; /* "Name: value\r\n" lines */
    size_t body_off, body_len;
    uint32_t nevents; /* events in the body (JSON array length), else 1 */
} lt_capture_entry_t;

typedef struct lt_capture_s {
    lt_capture_format_t format;  /* the format used (resolved when auto) */
    lt_capture_entry_t *entries; /* heap, owned */
    size_t n, cap;
    lt_buf_t arena;   /* owned strings the entries point into */
    uint64_t lines;   /* lines read, including blank and comments */
    uint64_t bad;     /* unparsable lines */
    uint64_t skipped; /* well-formed but not replayable (e.g. POST in a log) */
    uint64_t bad_lines[LT_CAPTURE_BAD_KEEP];
    char bad_reasons[LT_CAPTURE_BAD_KEEP][96];
    size_t nbad_kept;
    bool all_timed; /* every entry has a timestamp */
} lt_capture_t;

/* Static name ("clf", "urls", "jsonl", "auto"). */
const char *lt_capture_format_str(lt_capture_format_t f);
/* Parses a format name; -1 with @p err when unknown. */
int lt_capture_format_parse(const char *s, lt_capture_format_t *f, at_err_t *err);

/* Reads @p path (or stdin for "-"). Returns 0, or -1 with @p err when the file cannot be
 * read or holds no usable line at all; bad lines alone are not an error. The caller
 * releases @p c with lt_capture_free(), also after an error. */
int lt_capture_load(lt_capture_t *c, const char *path, lt_capture_format_t fmt, at_err_t *err);

/* Same, from memory (for tests). An empty result is not an error here. */
int lt_capture_parse(lt_capture_t *c, const char *data, size_t len, lt_capture_format_t fmt, at_err_t *err);

void lt_capture_free(lt_capture_t *c);

/*
 * Replay timeline at the original timing / @p speed: sorts the entries by capture time
 * (stable) and returns in *@p out a heap array of c->n offsets in ns from the first entry
 * (caller frees). Entries that share a timestamp (access logs have 1-second resolution)
 * are spread evenly over that second / @p speed instead of being sent as one burst.
 * Requires c->all_timed.
 */
int lt_capture_timeline(lt_capture_t *c, double speed, int64_t **out, at_err_t *err);

/* Accessors into the arena. */
static inline const char *lt_capture_str(const lt_capture_t *c, size_t off)
{
    return c->arena.data + off;
}

/* Parses an RFC 3339 / ISO 8601 UTC or offset timestamp into Unix ns. 0 or -1. */
int lt_parse_rfc3339(const char *s, size_t len, int64_t *out_ns);

#endif
