/*
 * col_query.h: parsing of pixel (/t.gif) and click (/c) query strings into an event.
 *
 * Known parameters: e, c, cr, p, pl, uid, u, d, sig, tag, clid, order, payout_micros, cp, adv; cb
 * and anything else are ignored.
 * Values are percent-decoded ('+' is a space). When a parameter repeats, the first wins.
 * Parsing never allocates: decoded values are written into a caller-supplied buffer that
 * must be at least as long as the query (decoding never grows a value).
 */
#ifndef COL_QUERY_H
#define COL_QUERY_H

#include "at_event.h"

typedef struct col_query_s {
    at_str_t e;   /* raw event type text, for error messages */
    at_str_t sig; /* click signature (base64url HMAC of d, or of d "\n" cp when cp is given) */
    at_str_t cp;  /* /c only: the name of the destination's click-id parameter (signed) */
} col_query_t;

/* The click-id parameter appended to a click's destination when the /c URL names none. */
#define COL_CLICK_PARAM_DEFAULT "adt_clid"
#define COL_CLICK_PARAM_MAX 32

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

/* A conversion (e=conv) with a well-formed clid belongs to the click's campaign: sets ev->c
 * to the campaign inside the clid (at_clid_split), whatever c said. Other events untouched. */
void col_conv_campaign(at_event_t *ev);

/* True when @p name is a usable click-id parameter name: 1-32 of [A-Za-z0-9_.-], so the
 * name needs no encoding in a URL. */
bool col_click_param_valid(at_str_t name);

/* What a /c signature covers, written to @p out (capacity @p cap): d alone when cp is
 * absent (the form every existing link has), else d, a newline, cp. A destination never
 * contains a newline (destination_is_safe), so the two parts cannot be shifted. Returns the
 * length, or SIZE_MAX when @p cap is too small. */
size_t col_click_signed_message(at_str_t d, at_str_t cp, char *out, size_t cap);

/* The 302 target: @p d with "<param>=<clid>" added to its query, before any fragment.
 * Returns the length written to @p out (capacity @p cap, not NUL-terminated), or SIZE_MAX
 * when it does not fit. */
size_t col_click_location(at_str_t d, at_str_t param, const char *clid, char *out, size_t cap);

#endif
