/*
 * at_json.c: JSON input framing (see at_json.h).
 */
#include "at_json.h"

#include <limits.h>

static bool is_json_ws(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Index one past the bracket closing the object or array that opens at s[start], counting
 * brackets outside strings only; 0 when it is not closed within @p len. A framing aid, not
 * a validator. */
static size_t json_container_end(const char *s, size_t len, size_t start)
{
    size_t depth = 0;
    bool in_str = false;

    for (size_t i = start; i < len; i++) {
        char ch = s[i];
        if (in_str) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_str = false;
            continue;
        }
        if (ch == '"') {
            in_str = true;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if (ch == '}' || ch == ']') {
            if (depth == 0 || --depth == 0)
                return i + 1;
        }
    }
    return 0;
}

bson_t *at_json_parse_single(const char *s, size_t len, char open, const char *what, const char *expected,
                             at_err_t *err)
{
    const char *kind = open == '[' ? "array" : "object";
    size_t i = 0;

    while (i < len && is_json_ws(s[i]))
        i++;
    if (i == len || s[i] != open) {
        at_err_set(err, AT_ERR_INVALID, "%s: expected %s", what, expected);
        return NULL;
    }
    size_t end = json_container_end(s, len, i);
    if (end == 0) {
        at_err_set(err, AT_ERR_INVALID, "%s: not JSON: unterminated %s", what, kind);
        return NULL;
    }
    for (size_t j = end; j < len; j++) {
        if (!is_json_ws(s[j])) {
            at_err_set(err, AT_ERR_INVALID, "%s: unexpected text after the JSON %s at byte %zu", what, kind, j);
            return NULL;
        }
    }
    if (end > (size_t)SSIZE_MAX) {
        at_err_set(err, AT_ERR_TOO_LARGE, "%s: too large", what);
        return NULL;
    }
    bson_error_t berr;
    bson_t *doc = bson_new_from_json((const uint8_t *)s, (ssize_t)end, &berr);
    if (doc == NULL)
        at_err_set(err, AT_ERR_INVALID, "%s: not JSON: %s", what, berr.message);
    return doc;
}
