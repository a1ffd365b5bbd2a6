/*
 * fuzz_batch: `POST /v1/events` bodies, and the envelope reader.
 *
 * Runs col_batch_parse(); every accepted item must pass the envelope promises and
 * round-trip through JSON, every rejected item (and a rejected whole body) must give a
 * rejected record that libbson reads back. The same input is also fed to
 * at_event_parse_json(), the enricher's reader: whatever it accepts must be a sane
 * envelope, and if it also passes at_event_check() it must serialise again.
 */
#include <stdint.h>
#include <stdlib.h>

#include "col_batch.h"
#include "fuzz_common.h"

static void check_envelope_reader(const char *in, size_t size)
{
    at_event_parsed_t pe;
    at_err_t err = {AT_OK, ""};
    if (at_event_parse_json(in, size, &pe, &err) != 0) {
        FUZZ_CHECK(err.code == AT_ERR_INVALID || err.code == AT_ERR_RANGE, "code %d", (int)err.code);
        FUZZ_CHECK(pe.doc == NULL, "doc left after failure");
        return;
    }
    FUZZ_CHECK(pe.v == AT_EVENT_SCHEMA_VERSION, "v %d", pe.v);
    FUZZ_CHECK(pe.ev.type != AT_EV_NONE && pe.ev.c.len > 0, "type/c");
    at_event_t ev = pe.ev;
    if (at_event_check(&ev, &err) == AT_REJ_NONE && ev.ts_ms >= 0 && ev.ts_ms <= INT64_C(253402300799999)) {
        fuzz_check_accepted(&ev);
        fuzz_check_roundtrip(&ev);
    }
    at_event_parsed_free(&pe);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact-size copy: ASan flags any read past the body */
    char *body = malloc(size ? size : 1);
    memcpy(body, data, size);

    col_batch_t b;
    at_err_t err = {AT_OK, ""};
    if (col_batch_parse(body, size, &b, &err) != 0) {
        FUZZ_CHECK(err.code == AT_ERR_INVALID || err.code == AT_ERR_TOO_LARGE, "code %d", (int)err.code);
        FUZZ_CHECK(b.items == NULL && b.doc == NULL && b.count == 0, "state left after failure");
        fuzz_check_rejected(NULL, AT_REJ_MALFORMED_JSON, err.msg, body, size);
    } else {
        FUZZ_CHECK(b.count <= COL_BATCH_MAX_EVENTS, "count %zu", b.count);
        for (size_t i = 0; i < b.count; i++) {
            col_batch_item_t *it = &b.items[i];
            FUZZ_CHECK(it->raw != NULL && strlen(it->raw) == it->rawlen, "raw of item %zu", i);
            FUZZ_CHECK(memchr(it->detail, '\0', sizeof(it->detail)) != NULL, "detail not terminated");
            FUZZ_CHECK(it->ev.src == AT_SRC_BEACON, "src");
            fuzz_stamp(&it->ev);
            if (it->reject == AT_REJ_NONE) {
                FUZZ_CHECK(it->detail[0] == '\0', "detail on an accepted item");
                fuzz_check_accepted(&it->ev);
                fuzz_check_roundtrip(&it->ev);
            } else {
                FUZZ_CHECK(it->detail[0] != '\0', "rejected item %zu without detail", i);
                fuzz_check_rejected(&it->ev, it->reject, it->detail, it->raw, it->rawlen);
            }
        }
        col_batch_free(&b);
    }
    check_envelope_reader(body, size);
    free(body);
    return 0;
}
