/*
 * col_query.h: parsing of pixel (/t.gif) and click (/c) query strings into an event.
 *
 * Known parameters: e, c, cr, p, pl, uid, u, d, sig, tag; cb and anything else are ignored.
 * Values are percent-decoded ('+' is a space). When a parameter repeats, the first wins.
 * Parsing never allocates: decoded values are written into a caller-supplied buffer that
 * must be at least as long as the query (decoding never grows a value).
 */
#ifndef COL_QUERY_H
#define COL_QUERY_H

#include "at_event.h"

typedef struct col_query_s {
    at_str_t e;   /* raw event type text, for error messages */
    at_str_t sig; /* click signature (base64url HMAC of d) */
} col_query_t;

/*
 * Parses @p q (without the leading '?', length @p len) into @p ev's c, cr, p, pl, uid, u,
 * d, tag and type fields (views into @p buf, capacity @p bufsize >= len) and @p out.
 * ev->type is AT_EV_NONE when e is absent or unknown. Other fields of @p ev are untouched.
 * Returns AT_REJ_NONE, or AT_REJ_BAD_ENCODING with @p err naming the parameter
 * ("u: invalid percent-encoding at byte 17"); on that error the other parameters are still
 * filled as far as they could be decoded, so the rejected event keeps them.
 * Field rules (lengths, charset, required c) are checked afterwards by at_event_check().
 */
at_reject_t col_query_parse(const char *q, size_t len, at_event_t *ev, col_query_t *out, char *buf, size_t bufsize,
                            at_err_t *err);

/* Percent-decodes @p len bytes of @p in into @p out (capacity >= len). Returns the decoded
 * length, or -1 on an invalid escape (its byte offset in *@p bad_at when non-NULL). */
long col_percent_decode(const char *in, size_t len, char *out, bool plus_is_space, size_t *bad_at);

#endif
