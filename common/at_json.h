/*
 * at_json.h: JSON input framing on top of libbson's parser.
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

#endif
