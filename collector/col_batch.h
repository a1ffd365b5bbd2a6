/*
 * col_batch.h: parsing of `POST /v1/events` bodies (navigator.sendBeacon).
 *
 * The body is a JSON array of event objects, with the same short field names as the pixel
 * query: [{"e":"imp","c":"camp-1","cr":"cr-9","p":"pub-3","pl":"top","uid":"u-1",
 * "u":"https://...","tag":"..."}, ...]. It may arrive as application/json or text/plain
 * (sendBeacon with a string). Parsed with libbson's JSON reader.
 */
#ifndef COL_BATCH_H
#define COL_BATCH_H

#include "at_event.h"

#define COL_BATCH_MAX_EVENTS 500

typedef struct col_batch_item_s {
    at_event_t ev;      /* views into the batch's parsed document; type/fields as given */
    at_reject_t reject; /* AT_REJ_NONE, or why this element is not a valid event */
    char detail[AT_ERR_MSG_MAX]; /* message naming the field, when rejected */
    const char *raw;    /* this element as JSON text (owned by the batch), for rejected records */
    size_t rawlen;
} col_batch_item_t;

typedef struct col_batch_s {
    col_batch_item_t *items; /* heap, owned */
    size_t count;
    void *doc;               /* bson_t *, owned; the views above point into it */
} col_batch_t;

/*
 * Parses @p body. Returns 0 with every element in @p out (each already checked with
 * at_event_check(), so item.reject says whether it is usable), or -1 when the body as a
 * whole is unusable: not JSON or not an array (err->code AT_ERR_INVALID, message says what
 * was expected), or more than COL_BATCH_MAX_EVENTS elements (AT_ERR_TOO_LARGE).
 * Elements that are not objects, or have non-string fields, are items with
 * AT_REJ_MALFORMED_ENVELOPE. On success the caller calls col_batch_free().
 */
int col_batch_parse(const char *body, size_t len, col_batch_t *out, at_err_t *err);

/* Releases what col_batch_parse() allocated. Accepts NULL. */
void col_batch_free(col_batch_t *b);

#endif
