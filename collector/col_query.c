/*
 * col_query.c: pixel and click query strings (see col_query.h).
 *
 * The hot path of the pixel server: one pass over the query, no allocation, only known
 * parameters are decoded (cb and unknown ones are skipped unread). Parameter names are
 * matched as sent, without percent-decoding ("%63=x" is not "c").
 */
#include "col_query.h"

enum {
    QP_E,
    QP_C,
    QP_CR,
    QP_P,
    QP_PL,
    QP_UID,
    QP_U,
    QP_D,
    QP_SIG,
    QP_TAG,
    QP_CLID,
    QP_ORDER,
    QP_PAYOUT,
    QP_CP,
    QP_ADV,
    QP__COUNT
};

static const char *const param_names[QP__COUNT] = {"e",   "c",   "cr",   "p",     "pl",            "uid", "u",
                                                   "d",   "sig", "tag",  "clid",  "order", "payout_micros", "cp", "adv"};

/* Index of the known parameter named @p n (length @p len), or -1. */
static int param_index(const char *n, size_t len)
{
    switch (len) {
    case 1:
        switch (n[0]) {
        case 'e':
            return QP_E;
        case 'c':
            return QP_C;
        case 'p':
            return QP_P;
        case 'u':
            return QP_U;
        case 'd':
            return QP_D;
        }
        return -1;
    case 2:
        if (n[0] == 'c' && n[1] == 'r')
            return QP_CR;
        if (n[0] == 'p' && n[1] == 'l')
            return QP_PL;
        if (n[0] == 'c' && n[1] == 'p')
            return QP_CP;
        return -1;
    case 3:
        if (memcmp(n, "uid", 3) == 0)
            return QP_UID;
        if (memcmp(n, "sig", 3) == 0)
            return QP_SIG;
        if (memcmp(n, "tag", 3) == 0)
            return QP_TAG;
        if (memcmp(n, "adv", 3) == 0)
            return QP_ADV;
        return -1;
    case 4:
        return memcmp(n, "clid", 4) == 0 ? QP_CLID : -1;
    case 5:
        return memcmp(n, "order", 5) == 0 ? QP_ORDER : -1;
    case 13:
        return memcmp(n, "payout_micros", 13) == 0 ? QP_PAYOUT : -1;
    }
    return -1;
}

/* Hex digit value plus one; 0 for anything that is not a hex digit. */
static const unsigned char hexv[256] = {
    ['0'] = 1,  ['1'] = 2,  ['2'] = 3,  ['3'] = 4,  ['4'] = 5,  ['5'] = 6,  ['6'] = 7,  ['7'] = 8,
    ['8'] = 9,  ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
    ['A'] = 11, ['B'] = 12, ['C'] = 13, ['D'] = 14, ['E'] = 15, ['F'] = 16,
};

/* Bytes that stop the plain-copy loop of decode(): '%', '+' and NUL. */
static const bool dec_stop[256] = {['%'] = true, ['+'] = true, ['\0'] = true};

/*
 * Decodes @p len bytes of @p in into @p out (capacity >= len). Returns the decoded length, or
 * -1 with the offset of the bad '%' in *bad_at. *nul_at is the input offset of the first
 * decoded NUL byte, SIZE_MAX when there is none. Runs of ordinary bytes, the bulk of any
 * value, are found with a table lookup and copied in one memcpy.
 */
static long decode(const char *in, size_t len, char *out, bool plus_is_space, size_t *bad_at, size_t *nul_at)
{
    size_t o = 0, i = 0;

    *nul_at = SIZE_MAX;
    while (i < len) {
        size_t run = i;
        while (run < len && !dec_stop[(unsigned char)in[run]])
            run++;
        if (run > i) {
            memcpy(out + o, in + i, run - i);
            o += run - i;
            i = run;
            if (i == len)
                break;
        }
        unsigned char ch = (unsigned char)in[i];
        if (ch == '%') {
            unsigned hi, lo;
            if (len - i < 3 || (hi = hexv[(unsigned char)in[i + 1]]) == 0 ||
                (lo = hexv[(unsigned char)in[i + 2]]) == 0) {
                *bad_at = i;
                return -1;
            }
            ch = (unsigned char)(((hi - 1) << 4) | (lo - 1));
            if (ch == 0 && *nul_at == SIZE_MAX)
                *nul_at = i;
            i += 3;
        } else if (ch == '+') {
            ch = plus_is_space ? ' ' : '+';
            i++;
        } else { /* raw NUL */
            if (*nul_at == SIZE_MAX)
                *nul_at = i;
            i++;
        }
        out[o++] = (char)ch;
    }
    return (long)o;
}

long col_percent_decode(const char *in, size_t len, char *out, bool plus_is_space, size_t *bad_at)
{
    size_t bad = 0, nul;
    long n = decode(in, len, out, plus_is_space, &bad, &nul);
    if (n < 0 && bad_at != NULL)
        *bad_at = bad;
    return n;
}

/* Records the first decoding error only; later parameters are still decoded. */
static at_reject_t first_error(at_reject_t rej, at_err_t *err, const char *name, const char *what, size_t at)
{
    if (rej != AT_REJ_NONE)
        return rej;
    at_err_set(err, AT_ERR_INVALID, "%s: %s at byte %zu", name, what, at);
    return AT_REJ_BAD_ENCODING;
}

at_reject_t col_query_parse(const char *q, size_t len, at_event_t *ev, col_query_t *out, char *buf, size_t bufsize,
                            at_err_t *err)
{
    /* Where each parameter's decoded value goes, in QP_ order. */
    at_str_t *const slot[QP__COUNT] = {&out->e,  &ev->c,   &ev->cr,    &ev->p,   &ev->pl,
                                       &ev->uid, &ev->u,   &ev->d,     &out->sig, &ev->tag,
                                       &ev->clid, &ev->order, &ev->payout_micros, &out->cp, &ev->adv};
    at_reject_t rej = AT_REJ_NONE;
    unsigned seen = 0;
    size_t used = 0;

    ev->type = AT_EV_NONE;
    for (int k = 0; k < QP__COUNT; k++)
        *slot[k] = (at_str_t){NULL, 0};
    at_err_clear(err);
    if (q == NULL)
        len = 0;

    for (size_t i = 0; i < len;) {
        const char *pair = q + i;
        const char *amp = memchr(pair, '&', len - i);
        size_t plen = amp != NULL ? (size_t)(amp - pair) : len - i;
        const char *eq = memchr(pair, '=', plen);
        size_t nlen = eq != NULL ? (size_t)(eq - pair) : plen;
        int k = param_index(pair, nlen);

        i += plen + 1; /* past the '&' (or the end) */
        if (k < 0 || (seen & (1u << k)) != 0)
            continue; /* unknown, or a repeat: the first occurrence wins */
        seen |= 1u << k;

        const char *v = eq != NULL ? eq + 1 : pair + plen;
        size_t vlen = plen - (size_t)(v - pair);
        size_t vat = (size_t)(v - q); /* offset of the value in the query, for messages */
        if (vlen > bufsize - used) {
            /* The caller broke the contract (bufsize < len): never write past buf. */
            rej = first_error(rej, err, param_names[k], "decode buffer too small", vat);
            continue;
        }
        /* buf may be NULL only with bufsize 0, i.e. when every value is empty. */
        char *dst = buf != NULL ? buf + used : NULL;
        size_t bad = 0, nul = SIZE_MAX;
        long n = decode(v, vlen, dst, true, &bad, &nul);
        if (n < 0) {
            rej = first_error(rej, err, param_names[k], "invalid percent-encoding", vat + bad);
            continue;
        }
        if (nul != SIZE_MAX) {
            /* A NUL would cut the value short for every C consumer downstream. */
            rej = first_error(rej, err, param_names[k], "NUL byte (%00)", vat + nul);
            continue;
        }
        *slot[k] = (at_str_t){dst != NULL ? dst : "", (size_t)n};
        used += (size_t)n;
    }

    if (out->e.p != NULL)
        ev->type = at_event_type_parse(out->e.p, out->e.len);
    return rej;
}

void col_conv_campaign(at_event_t *ev)
{
    at_str_t c;
    if (ev->type == AT_EV_CONV && at_clid_split(ev->clid, NULL, &c))
        ev->c = c;
}

bool col_click_param_valid(at_str_t name)
{
    if (name.len == 0 || name.len > COL_CLICK_PARAM_MAX)
        return false;
    for (size_t i = 0; i < name.len; i++) {
        char ch = name.p[i];
        if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
              ch == '-' || ch == '.'))
            return false;
    }
    return true;
}

size_t col_click_signed_message(at_str_t d, at_str_t cp, char *out, size_t cap)
{
    size_t n = d.len + (cp.len > 0 ? 1 + cp.len : 0);
    if (n > cap)
        return SIZE_MAX;
    memcpy(out, d.p, d.len);
    if (cp.len > 0) {
        out[d.len] = '\n';
        memcpy(out + d.len + 1, cp.p, cp.len);
    }
    return n;
}

size_t col_click_location(at_str_t d, at_str_t param, const char *clid, char *out, size_t cap)
{
    size_t clen = strlen(clid);
    size_t n = d.len + 1 + param.len + 1 + clen;
    if (n > cap)
        return SIZE_MAX;
    /* Before the fragment: "https://a.example/p?x=1#top" -> "...?x=1&adt_clid=...#top". */
    const char *hash = memchr(d.p, '#', d.len);
    size_t base = hash != NULL ? (size_t)(hash - d.p) : d.len;
    const char *q = memchr(d.p, '?', base);
    size_t o = 0;
    memcpy(out, d.p, base);
    o = base;
    if (q == NULL)
        out[o++] = '?';
    else if (base > 0 && d.p[base - 1] != '?' && d.p[base - 1] != '&')
        out[o++] = '&';
    memcpy(out + o, param.p, param.len);
    o += param.len;
    out[o++] = '=';
    memcpy(out + o, clid, clen);
    o += clen;
    memcpy(out + o, d.p + base, d.len - base);
    o += d.len - base;
    return o;
}
