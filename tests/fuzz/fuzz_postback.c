/*
 * fuzz_postback: /v1/postback input through the collector's code.
 *
 * Input: "<parameters>\n<Authorization header value>" (the second part optional). Runs
 * col_postback_canonical() (the text a signature covers), col_postback_check() against a
 * fixed key table, col_query_parse() + col_conv_campaign() + at_event_check_e() as the
 * handler does, and col_postback_keys_parse() on the whole input as a key file.
 * Invariants: the canonical text is the input with exactly the first "sig=" pair (and one
 * '&') taken out, and the sig view points into the input; a check succeeds only for the
 * fixed advertiser with its exact token or a valid signature; an accepted conversion's c is
 * its clid's campaign; a key file that parses has entries with non-empty ids and secrets.
 */
#include <stdint.h>
#include <stdlib.h>

#include "at_hmac.h"
#include "col_postback.h"
#include "col_query.h"
#include "fuzz_common.h"

static const char KEYS[] = "adv-1 s3cret\nadv-2 other secret\n";

static void check_canonical(const char *q, size_t len)
{
    char *out = malloc(len + 1);
    at_str_t sig;
    size_t n = col_postback_canonical(q, len, out, &sig);
    FUZZ_CHECK(n <= len, "canonical longer than its input: %zu > %zu", n, len);
    if (sig.p == NULL) {
        FUZZ_CHECK(n == len || len == 0 || (n < len), "no sig: %zu vs %zu", n, len);
    } else {
        FUZZ_CHECK(sig.p >= q + 4 && sig.p + sig.len <= q + len, "sig view outside the input");
        FUZZ_CHECK(memcmp(sig.p - 4, "sig=", 4) == 0, "sig view not after sig=");
        /* Removed: "sig=" + value and at most one separator. */
        FUZZ_CHECK(len - n >= 4 + sig.len && len - n <= 4 + sig.len + 1, "removed %zu bytes for a %zu-byte sig",
                   len - n, sig.len);
    }
    /* The canonical text is a byte-for-byte subsequence of the input (no pair rewritten). */
    size_t j = 0;
    for (size_t i = 0; i < len && j < n; i++)
        if (q[i] == out[j])
            j++;
    FUZZ_CHECK(j == n, "canonical is not a subsequence of the input");
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 16384)
        return 0;
    const char *in = (const char *)data;
    const char *nl = memchr(in, '\n', size);
    size_t qlen = nl != NULL ? (size_t)(nl - in) : size;
    at_str_t authz = nl != NULL ? (at_str_t){nl + 1, size - qlen - 1} : (at_str_t){NULL, 0};

    /* Exact-size copies, so ASan sees any read past them. */
    char *q = malloc(qlen + 1);
    memcpy(q, in, qlen);
    check_canonical(q, qlen);

    col_postback_keys_t keys;
    at_err_t err = {0};
    FUZZ_CHECK(col_postback_keys_parse(KEYS, &keys, &err) == 0, "fixed keys: %s", err.msg);

    char *canon = malloc(qlen + 1);
    at_str_t sig;
    size_t clen = col_postback_canonical(q, qlen, canon, &sig);
    char *buf = malloc(qlen + 1);
    at_event_t ev = {0};
    col_query_t cq = {0};
    col_query_parse(q, qlen, &ev, &cq, buf, qlen + 1, &err);
    col_postback_auth_t a = col_postback_check(&keys, ev.adv, authz, canon, clen, sig);
    if (a == COL_PB_OK) {
        bool adv1 = ev.adv.len == 5 && memcmp(ev.adv.p, "adv-1", 5) == 0;
        bool adv2 = ev.adv.len == 5 && memcmp(ev.adv.p, "adv-2", 5) == 0;
        FUZZ_CHECK(adv1 || adv2, "accepted for an advertiser without a key");
        const char *secret = adv1 ? "s3cret" : "other secret";
        if (authz.len > 0) {
            FUZZ_CHECK(authz.len == 7 + strlen(secret) && memcmp(authz.p + 7, secret, strlen(secret)) == 0,
                       "accepted a wrong bearer token");
        } else {
            char want[AT_HMAC_SIG_LEN + 1];
            at_hmac_sign(secret, strlen(secret), canon, clen, want);
            FUZZ_CHECK(sig.len == AT_HMAC_SIG_LEN && memcmp(sig.p, want, AT_HMAC_SIG_LEN) == 0,
                       "accepted a wrong signature");
        }
    }
    ev.type = AT_EV_CONV;
    ev.src = AT_SRC_POSTBACK;
    fuzz_stamp(&ev);
    col_conv_campaign(&ev);
    if (at_event_check_e(&ev, AT_STR_LIT("conv"), &err) == AT_REJ_NONE && ev.clid.len > 0) {
        at_str_t c;
        FUZZ_CHECK(at_clid_split(ev.clid, NULL, &c) && fuzz_str_eq(c, ev.c), "c is not the clid's campaign");
        size_t jlen;
        char *json = at_event_to_json(&ev, &jlen);
        FUZZ_CHECK(json != NULL, "an accepted conversion does not serialise");
        at_event_parsed_t pe;
        FUZZ_CHECK(at_event_parse_json(json, jlen, &pe, &err) == 0, "read back: %s", err.msg);
        FUZZ_CHECK(fuzz_str_eq(pe.ev.clid, ev.clid) && fuzz_str_eq(pe.ev.order, ev.order) &&
                       fuzz_str_eq(pe.ev.payout_micros, ev.payout_micros) && fuzz_str_eq(pe.ev.adv, ev.adv),
                   "conversion fields differ after the round trip");
        at_event_parsed_free(&pe);
        bson_free(json);
    }
    col_postback_keys_free(&keys);

    /* The whole input as a key file. */
    char *text = malloc(size + 1);
    memcpy(text, in, size);
    text[size] = '\0';
    if (memchr(in, '\0', size) == NULL && col_postback_keys_parse(text, &keys, &err) == 0) {
        for (size_t i = 0; i < keys.count; i++)
            FUZZ_CHECK(keys.items[i].advertiser[0] != '\0' && keys.items[i].secret[0] != '\0', "empty key entry");
        col_postback_keys_free(&keys);
    }
    free(text);
    free(q);
    free(canon);
    free(buf);
    return 0;
}
