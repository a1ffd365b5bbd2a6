/*
 * fuzz_query: pixel/click query strings through the collector's hot path.
 *
 * Input: "<query>\n<user agent>\n<ip>" (the last two optional), so the truncation of ua
 * and the ip rule are fuzzed too. Runs col_query_parse() + at_event_check_e(), then
 * serialises: an accepted event must round-trip through at_event_parse_json(); a rejected
 * one must give a rejected record that libbson reads back. Also compares
 * col_percent_decode() with a simple reference decoder.
 */
#include <stdint.h>
#include <stdlib.h>

#include "col_query.h"
#include "fuzz_common.h"

static int hexval(unsigned char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* Reference decoder, written for obviousness rather than speed. */
static long ref_decode(const char *in, size_t len, char *out, bool plus, size_t *bad_at)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == '%') {
            if (i + 2 >= len) {
                *bad_at = i;
                return -1;
            }
            int h = hexval((unsigned char)in[i + 1]), l = hexval((unsigned char)in[i + 2]);
            if (h < 0 || l < 0) {
                *bad_at = i;
                return -1;
            }
            out[o++] = (char)(h * 16 + l);
            i += 2;
        } else {
            out[o++] = (plus && in[i] == '+') ? ' ' : in[i];
        }
    }
    return (long)o;
}

static bool in_buf(at_str_t s, const char *buf, size_t size)
{
    if (s.len == 0)
        return true;
    return s.p >= buf && s.p + s.len <= buf + size;
}

static void check_decode(const char *q, size_t len)
{
    char *a = malloc(len + 1), *b = malloc(len + 1);
    for (int plus = 0; plus < 2; plus++) {
        size_t bad_a = SIZE_MAX, bad_b = SIZE_MAX;
        long na = col_percent_decode(q, len, a, plus, &bad_a);
        long nb = ref_decode(q, len, b, plus, &bad_b);
        FUZZ_CHECK(na == nb, "decode length %ld vs reference %ld", na, nb);
        if (na >= 0)
            FUZZ_CHECK(memcmp(a, b, (size_t)na) == 0, "decoded bytes differ");
        else
            FUZZ_CHECK(bad_a == bad_b, "bad_at %zu vs %zu", bad_a, bad_b);
    }
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    const char *nl1 = memchr(in, '\n', size);
    size_t qlen = nl1 ? (size_t)(nl1 - in) : size;

    /* Exact-size copies: ASan flags any read past the query or write past the buffer. */
    char *q = malloc(qlen ? qlen : 1);
    char *buf = malloc(qlen ? qlen : 1);
    memcpy(q, in, qlen);

    at_event_t ev;
    memset(&ev, 0, sizeof(ev));
    fuzz_stamp(&ev);
    ev.src = AT_SRC_PIXEL;
    if (nl1 != NULL) {
        const char *ua = nl1 + 1;
        size_t rest = size - qlen - 1;
        const char *nl2 = memchr(ua, '\n', rest);
        ev.ua = (at_str_t){ua, nl2 ? (size_t)(nl2 - ua) : rest};
        if (nl2 != NULL)
            ev.ip = (at_str_t){nl2 + 1, size - (size_t)(nl2 + 1 - in)};
    }

    col_query_t cq;
    at_err_t err = {AT_OK, ""};
    at_reject_t r = col_query_parse(q, qlen, &ev, &cq, buf, qlen, &err);
    FUZZ_CHECK(r == AT_REJ_NONE || r == AT_REJ_BAD_ENCODING, "col_query_parse returned %d", (int)r);
    FUZZ_CHECK((r == AT_REJ_NONE) == (err.code == AT_OK), "err.code %d vs reject %d", (int)err.code, (int)r);
    FUZZ_CHECK(memchr(err.msg, '\0', sizeof(err.msg)) != NULL, "message not terminated");
    at_str_t views[] = {ev.c, ev.cr, ev.p, ev.pl, ev.uid, ev.u, ev.d, ev.tag, cq.e, cq.sig};
    size_t total = 0;
    for (size_t i = 0; i < sizeof(views) / sizeof(views[0]); i++) {
        FUZZ_CHECK(in_buf(views[i], buf, qlen), "view %zu outside the decode buffer", i);
        FUZZ_CHECK(memchr(views[i].p ? views[i].p : "", '\0', views[i].len) == NULL, "NUL in view %zu", i);
        total += views[i].len;
    }
    FUZZ_CHECK(total <= qlen, "decoded %zu bytes from a %zu-byte query", total, qlen);
    FUZZ_CHECK(ev.type == at_event_type_parse(cq.e.p, cq.e.len), "type");

    /* Checked even after a decoding error (which takes precedence), as the ua truncation
     * and the checks must cope with whatever partial event the parser left. */
    at_err_t err2 = {AT_OK, ""};
    at_reject_t r2 = at_event_check_e(&ev, cq.e, &err2);
    if (r == AT_REJ_NONE) {
        r = r2;
        err = err2;
    }
    FUZZ_CHECK(ev.ua.len <= AT_EVENT_UA_MAX, "ua not truncated: %zu", ev.ua.len);
    if (r == AT_REJ_NONE) {
        fuzz_check_accepted(&ev);
        fuzz_check_roundtrip(&ev);
    } else {
        fuzz_check_rejected(&ev, r, err.msg, q, qlen);
    }
    check_decode(q, qlen);

    free(buf);
    free(q);
    return 0;
}
