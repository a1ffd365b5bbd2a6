/*
 * at_json.h: JSON input framing on top of libbson's parser, and a fast writer of relaxed
 * Extended JSON that produces libbson's bytes.
 */
#ifndef AT_JSON_H
#define AT_JSON_H

#include <bson/bson.h>
#include "at_err.h"

/*
 * Parses @p s (length @p len) as exactly one JSON value that opens with @p open ('{' or
 * '['), surrounded only by whitespace. libbson reads the first value and silently ignores
 * anything after it ("[...] {...}" would pass), so the framing is checked first by counting
 * brackets outside strings; libbson then validates the content.
 * Returns a new document (a top-level array becomes keys "0", "1", ...; the caller destroys
 * it), or NULL with @p err (AT_ERR_INVALID, or AT_ERR_TOO_LARGE past SSIZE_MAX), the message
 * prefixed with @p what: "<what>: expected <expected>", "<what>: not JSON: unterminated
 * array|object", "<what>: unexpected text after the JSON array|object at byte N",
 * "<what>: not JSON: <libbson's reason>".
 */
bson_t *at_json_parse_single(const char *s, size_t len, char open, const char *what, const char *expected,
                             at_err_t *err);

/*
 * Appends @p doc as relaxed Extended JSON to the growable buffer *@p buf (capacity *@p cap,
 * *@p used bytes in use; grown with realloc(), so the caller frees it with free()). The
 * bytes are exactly what bson_as_relaxed_extended_json() returns for @p doc: the common
 * types (string, int32, int64, bool, null, date from 1970 to 9999, document, array) are
 * written directly, which costs a small fraction of libbson's writer; for a document with
 * anything else (doubles, binary, ...), or with text that is not strictly valid UTF-8,
 * libbson's writer does the whole document. tests/unit/common/test_at_json.c compares the
 * two on generated documents. No NUL is appended.
 * Returns 0, or -1 (nothing appended) when libbson cannot write the document either (text
 * that is not UTF-8), or when memory runs out.
 */
int at_json_append_relaxed(const bson_t *doc, char **buf, size_t *cap, size_t *used);

/* Writes @p n bytes of valid UTF-8 @p s as a quoted JSON string, escaped the way libbson's
 * relaxed Extended JSON escapes it (bson_utf8_escape_for_json): quote and backslash, \b \f
 * \n \r \t, other control characters (NUL too) as \u00XX, everything else as is. Needs at
 * most 2 + 6n bytes at @p o; returns the end of what it wrote. */
char *at_json_put_str(char *o, const char *s, size_t n);

/* True when every byte of @p s at or above 0x80 belongs to a well-formed UTF-8 sequence (no
 * overlong forms, surrogates or code points above U+10FFFF): the strings
 * at_json_append_relaxed() writes itself with at_json_put_str(). NUL and other ASCII
 * bytes are fine (escaped). */
bool at_json_utf8_ok(const char *s, size_t n);

/* The largest date libbson writes as an ISO string that this writer also formats:
 * 9999-12-31T23:59:59.999Z. */
#define AT_JSON_DATE_MAX INT64_C(253402300799999)

/* Writes libbson's relaxed date for @p ms in [0, AT_JSON_DATE_MAX]:
 * { "$date" : "YYYY-MM-DDTHH:MM:SS[.mmm]Z" }, the milliseconds only when they are not 0.
 * Needs at most 40 bytes at @p o; returns the end of what it wrote. */
char *at_json_put_date(char *o, int64_t ms);

#endif
