/*
 * col_batch.c: `POST /v1/events` bodies (see col_batch.h).
 *
 * libbson's JSON reader accepts a top-level array and turns it into a document with keys
 * "0", "1", ...; it also silently ignores whatever value follows the first one
 * ("[...] {...}" parses as the array alone). So the body is framed here first: it must be
 * one array and nothing but whitespace after it; libbson then validates the content.
 */
#include "col_batch.h"
#include "col_query.h"
#include "at_json.h"

#include <bson/bson.h>
#include <limits.h>
#include <stdlib.h>

/* The element under @p it as relaxed Extended JSON (heap, bson_free), or NULL when libbson
 * cannot render it (e.g. a $dbPointer). Non-documents are rendered inside a one-key wrapper
 * document whose frame is then cut off. */
static char *element_json(const bson_iter_t *it, size_t *len)
{
    static const char pre[] = "{ \"0\" : ", post[] = " }";
    const size_t npre = sizeof(pre) - 1, npost = sizeof(post) - 1;
    bson_t tmp;
    size_t n = 0;
    char *json;

    if (BSON_ITER_HOLDS_DOCUMENT(it)) {
        const uint8_t *data = NULL;
        uint32_t dlen = 0;
        bson_iter_document(it, &dlen, &data);
        if (!bson_init_static(&tmp, data, dlen))
            return NULL;
        json = bson_as_relaxed_extended_json(&tmp, len);
        return json;
    }
    bson_init(&tmp);
    json = bson_append_iter(&tmp, "0", 1, it) ? bson_as_relaxed_extended_json(&tmp, &n) : NULL;
    bson_destroy(&tmp);
    if (json == NULL)
        return NULL;
    if (n >= npre + npost && memcmp(json, pre, npre) == 0 && memcmp(json + n - npost, post, npost) == 0) {
        n -= npre + npost;
        memmove(json, json + npre, n);
        json[n] = '\0';
    }
    /* else: libbson changed its layout; the wrapped form is still a faithful copy. */
    *len = n;
    return json;
}

/* Element keys read into the event; "e" goes to the type text. */
static const struct {
    const char *key;
    size_t off;
} batch_fields[] = {
    {"e", SIZE_MAX},
    {"c", offsetof(at_event_t, c)},
    {"cr", offsetof(at_event_t, cr)},
    {"p", offsetof(at_event_t, p)},
    {"pl", offsetof(at_event_t, pl)},
    {"uid", offsetof(at_event_t, uid)},
    {"u", offsetof(at_event_t, u)},
    {"tag", offsetof(at_event_t, tag)},
    {"clid", offsetof(at_event_t, clid)},
    {"order", offsetof(at_event_t, order)},
    {"payout_micros", offsetof(at_event_t, payout_micros)},
};

static void item_reject(col_batch_item_t *item, at_reject_t r, const char *msg)
{
    if (item->reject != AT_REJ_NONE)
        return; /* the first problem is the one reported */
    item->reject = r;
    snprintf(item->detail, sizeof(item->detail), "%s", msg);
}

/* Fills @p item from the element under @p it, then checks it. */
static void parse_item(const bson_iter_t *it, size_t idx, col_batch_item_t *item)
{
    at_str_t e_text = {NULL, 0};
    bson_iter_t f;
    unsigned seen = 0;
    char msg[AT_ERR_MSG_MAX];

    item->ev.src = AT_SRC_BEACON;
    if (!BSON_ITER_HOLDS_DOCUMENT(it) || !bson_iter_recurse(it, &f)) {
        snprintf(msg, sizeof(msg), "event %zu: expected a JSON object", idx);
        item_reject(item, AT_REJ_MALFORMED_ENVELOPE, msg);
        return;
    }
    /* Unknown keys are ignored; when a key repeats, the first occurrence wins. A known key
     * with a non-string value rejects the element, but the other fields are still read so
     * the rejected record keeps them. */
    while (bson_iter_next(&f)) {
        const char *key = bson_iter_key(&f);
        size_t k;
        for (k = 0; k < AT_ARRAY_LEN(batch_fields); k++) {
            if (strcmp(key, batch_fields[k].key) == 0)
                break;
        }
        if (k == AT_ARRAY_LEN(batch_fields) || (seen & (1u << k)) != 0)
            continue;
        seen |= 1u << k;
        if (!BSON_ITER_HOLDS_UTF8(&f)) {
            snprintf(msg, sizeof(msg), "%s: expected a string", batch_fields[k].key);
            item_reject(item, AT_REJ_MALFORMED_ENVELOPE, msg);
            continue;
        }
        uint32_t n = 0;
        const char *s = bson_iter_utf8(&f, &n);
        at_str_t *dst =
            batch_fields[k].off == SIZE_MAX ? &e_text : (at_str_t *)((char *)&item->ev + batch_fields[k].off);
        *dst = (at_str_t){s, n};
    }
    item->ev.type = at_event_type_parse(e_text.p, e_text.len);
    col_conv_campaign(&item->ev); /* a conversion with a click id belongs to the click's campaign */

    at_err_t err = {AT_OK, ""};
    at_reject_t r = at_event_check_e(&item->ev, e_text, &err);
    if (r != AT_REJ_NONE)
        item_reject(item, r, err.msg);
}

int col_batch_parse(const char *body, size_t len, col_batch_t *out, at_err_t *err)
{
    memset(out, 0, sizeof(*out));
    if (body == NULL)
        len = 0;
    bson_t *doc = at_json_parse_single(body, len, '[', "body", "a JSON array of event objects", err);
    if (doc == NULL)
        return -1;

    uint32_t count = bson_count_keys(doc);
    if (count > COL_BATCH_MAX_EVENTS) {
        bson_destroy(doc);
        return at_err_set(err, AT_ERR_TOO_LARGE, "body: %u events, more than %d", (unsigned)count,
                          COL_BATCH_MAX_EVENTS);
    }
    out->doc = doc;
    if (count > 0) {
        out->items = calloc(count, sizeof(*out->items));
        if (out->items == NULL) {
            col_batch_free(out);
            return at_err_set(err, AT_ERR_NOMEM, "body: out of memory for %u events", (unsigned)count);
        }
    }

    bson_iter_t it;
    if (!bson_iter_init(&it, doc)) {
        col_batch_free(out);
        return at_err_set(err, AT_ERR_INTERNAL, "body: unreadable parsed document");
    }
    while (out->count < count && bson_iter_next(&it)) {
        col_batch_item_t *item = &out->items[out->count++];
        parse_item(&it, out->count - 1, item);
        /* Every item gets its JSON text, so the caller can store any of them as "raw". */
        size_t rawlen = 0;
        char *raw = element_json(&it, &rawlen);
        if (raw == NULL) {
            /* Only exotic Extended JSON (e.g. $dbPointer) gets here; the fields, if any,
             * were read from the document and stand on their own. */
            raw = bson_strdup("");
            rawlen = 0;
        }
        item->raw = raw;
        item->rawlen = rawlen;
    }
    return 0;
}

void col_batch_free(col_batch_t *b)
{
    if (b == NULL)
        return;
    for (size_t i = 0; i < b->count; i++)
        bson_free((char *)b->items[i].raw);
    free(b->items);
    if (b->doc != NULL)
        bson_destroy((bson_t *)b->doc);
    memset(b, 0, sizeof(*b));
}
