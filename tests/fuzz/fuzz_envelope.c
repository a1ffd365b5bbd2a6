/*
 * fuzz_envelope: the enricher's envelope reader. at_event_parse_json() reads the envelopes
 * the collector writes with a hand parser and everything else with libbson; on every input
 * it must agree with at_event_parse_json_libbson(), the libbson-only reference: the same
 * verdict, the same error, the same fields. A JSON writer's relaxed Extended JSON output of
 * each accepted envelope must also be read back the same (at_json_append_relaxed vs libbson).
 */
#include <stdint.h>
#include <stdlib.h>

#include "at_json.h"
#include "fuzz_common.h"

static int same_str(at_str_t a, at_str_t b)
{
    if ((a.p == NULL) != (b.p == NULL) || a.len != b.len)
        return 0;
    return a.len == 0 || memcmp(a.p, b.p, a.len) == 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* exact-size copy: ASan flags any read past the input */
    char *in = malloc(size ? size : 1);
    memcpy(in, data, size);
    at_event_parsed_t a, b;
    at_err_t ea = {AT_OK, ""}, eb = {AT_OK, ""};
    int ra = at_event_parse_json(in, size, &a, &ea);
    int rb = at_event_parse_json_libbson(in, size, &b, &eb);
    /* The in-place variant (the enricher's) agrees, with its views inside the input. */
    at_event_parsed_t c;
    at_err_t ec = {AT_OK, ""};
    int rv = at_event_parse_json_view(in, size, &c, &ec);
    FUZZ_CHECK(rv == ra, "in-place verdict %d vs %d", rv, ra);
    if (rv == 0) {
        FUZZ_CHECK(c.plain == a.plain && c.text == NULL && c.ev.ts_ms == a.ev.ts_ms && same_str(c.ev.c, a.ev.c) &&
                       same_str(c.ev.u, a.ev.u) && same_str(c.ev.ua, a.ev.ua) && same_str(c.ev.tag, a.ev.tag),
                   "in-place reader differs");
        at_event_parsed_free(&c);
    } else {
        FUZZ_CHECK(ec.code == ea.code && strcmp(ec.msg, ea.msg) == 0, "in-place error differs");
    }
    free(in); /* the fast reader's views must not point into the input */
    FUZZ_CHECK(ra == rb, "verdicts %d vs libbson %d", ra, rb);
    if (ra != 0) {
        FUZZ_CHECK(ea.code == eb.code && strcmp(ea.msg, eb.msg) == 0, "errors '%s' vs libbson '%s'", ea.msg, eb.msg);
        FUZZ_CHECK(a.doc == NULL && a.text == NULL, "state left after failure");
        return 0;
    }
    FUZZ_CHECK(a.v == b.v, "v %d vs %d", a.v, b.v);
    FUZZ_CHECK(memcmp(&a.ev.id, &b.ev.id, sizeof(a.ev.id)) == 0, "id");
    FUZZ_CHECK(a.ev.ts_ms == b.ev.ts_ms, "ts %lld vs %lld", (long long)a.ev.ts_ms, (long long)b.ev.ts_ms);
    FUZZ_CHECK(a.ev.type == b.ev.type && a.ev.src == b.ev.src, "type/src");
    FUZZ_CHECK(same_str(a.ev.c, b.ev.c) && same_str(a.ev.cr, b.ev.cr) && same_str(a.ev.p, b.ev.p) &&
                   same_str(a.ev.pl, b.ev.pl) && same_str(a.ev.uid, b.ev.uid) && same_str(a.ev.u, b.ev.u) &&
                   same_str(a.ev.ref, b.ev.ref) && same_str(a.ev.ua, b.ev.ua) && same_str(a.ev.ip, b.ev.ip) &&
                   same_str(a.ev.d, b.ev.d) && same_str(a.ev.tag, b.ev.tag),
               "string fields differ");
    /* libbson's document of it, written by both JSON writers: the same bytes. */
    if (b.doc != NULL) {
        size_t n = 0, cap = 0, used = 0;
        char *want = bson_as_relaxed_extended_json((const bson_t *)b.doc, &n);
        char *buf = NULL;
        int rc = at_json_append_relaxed((const bson_t *)b.doc, &buf, &cap, &used);
        if (want == NULL)
            FUZZ_CHECK(rc == -1 && used == 0, "writer wrote what libbson refuses");
        else
            FUZZ_CHECK(rc == 0 && used == n && memcmp(buf, want, n) == 0, "writer differs from libbson");
        bson_free(want);
        free(buf);
    }
    at_event_parsed_free(&a);
    at_event_parsed_free(&b);
    return 0;
}
