/*
 * cd_doc.c: validation of campaigns, publishers and updates. See cd_doc.h.
 */
#include "cd_doc.h"
#include "at_time.h"

#include <stdarg.h>
#include <stdlib.h>

/* ---- problems ---- */

void cd_verrs_add(cd_verrs_t *e, const char *field, const char *fmt, ...)
{
    if (e->count >= CD_VERRS_MAX) {
        e->dropped++;
        return;
    }
    cd_verr_t *v = &e->items[e->count++];
    size_t n = 0;
    /* Field names may come from the input (unknown fields): keep them printable and short. */
    for (const char *p = field; *p != '\0' && n < 64 && n + 1 < sizeof(v->field); p++) {
        unsigned char c = (unsigned char)*p;
        v->field[n++] = (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') ? (char)c : '?';
    }
    v->field[n] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->expected, sizeof(v->expected), fmt, ap);
    va_end(ap);
    /* The text may quote input (libbson's parse errors do): keep it printable ASCII so the
     * problem list always serialises as JSON. */
    for (char *p = v->expected; *p != '\0'; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
            *p = '?';
}

void cd_verrs_append(const cd_verrs_t *e, bson_t *out)
{
    bson_t arr, item;
    char idx[16];
    const char *key;
    bson_append_array_begin(out, "errors", -1, &arr);
    for (size_t i = 0; i < e->count; i++) {
        bson_uint32_to_string((uint32_t)i, &key, idx, sizeof(idx));
        bson_append_document_begin(&arr, key, -1, &item);
        BSON_APPEND_UTF8(&item, "field", e->items[i].field);
        BSON_APPEND_UTF8(&item, "expected", e->items[i].expected);
        bson_append_document_end(&arr, &item);
    }
    bson_append_array_end(out, &arr);
    if (e->dropped > 0)
        BSON_APPEND_INT64(out, "errors_not_shown", (int64_t)e->dropped);
}

const char *cd_verrs_summary(const cd_verrs_t *e, char *buf, size_t size)
{
    size_t off = 0;
    if (size == 0)
        return buf;
    buf[0] = '\0';
    for (size_t i = 0; i < e->count && off + 1 < size; i++) {
        int n = snprintf(buf + off, size - off, "%s%s: expected %s", i ? "; " : "", e->items[i].field,
                         e->items[i].expected);
        if (n < 0)
            break;
        off += (size_t)n;
    }
    return buf;
}

/* ---- scalar rules ---- */

static bool id_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == ':' || c == '-';
}

bool cd_id_valid(const char *s, size_t len)
{
    if (s == NULL || len == 0 || len > CD_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (!id_char((unsigned char)s[i]))
            return false;
    return true;
}

static int digits(const char *s, size_t n, int *out)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    *out = v;
    return 0;
}

int cd_time_parse(const char *s, size_t len, int64_t *ms)
{
    int y, mo, d, h, mi, se;
    static const int mdays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

    if (len < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' || s[len - 1] != 'Z')
        return -1;
    if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) || digits(s + 11, 2, &h) ||
        digits(s + 14, 2, &mi) || digits(s + 17, 2, &se))
        return -1;
    int frac_ms = 0;
    if (len > 20) {
        /* ".f" to ".fffffffff" */
        size_t nf = len - 21;
        if (s[19] != '.' || nf < 1 || nf > 9)
            return -1;
        for (size_t i = 0; i < nf; i++) {
            char c = s[20 + i];
            if (c < '0' || c > '9')
                return -1;
            if (i < 3)
                frac_ms = frac_ms * 10 + (c - '0');
        }
        for (size_t i = nf; i < 3; i++)
            frac_ms *= 10;
    }
    if (y < 1970 || mo < 1 || mo > 12 || h > 23 || mi > 59 || se > 59)
        return -1;
    int dim = mdays[mo - 1] + (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
    if (d < 1 || d > dim)
        return -1;
    *ms = ((at_days_from_civil(y, mo, d) * 24 + h) * 60 + mi) * INT64_C(60000) + se * 1000 + frac_ms;
    return 0;
}

const char *cd_kind_str(cd_kind_t kind)
{
    return kind == CD_KIND_CAMPAIGN ? "campaign" : "publisher";
}

const char *cd_kind_plural(cd_kind_t kind)
{
    return kind == CD_KIND_CAMPAIGN ? "campaigns" : "publishers";
}

int cd_kind_parse(const char *s, size_t len, cd_kind_t *kind)
{
    if (len == 8 && memcmp(s, "campaign", 8) == 0) {
        *kind = CD_KIND_CAMPAIGN;
        return 0;
    }
    if (len == 9 && memcmp(s, "publisher", 9) == 0) {
        *kind = CD_KIND_PUBLISHER;
        return 0;
    }
    return -1;
}

const char *cd_op_str(cd_op_t op)
{
    switch (op) {
    case CD_OP_PUT:
        return "put";
    case CD_OP_DELETE:
        return "delete";
    case CD_OP_BUDGET_SET:
        return "budget_set";
    case CD_OP_BUDGET_TOPUP:
        return "budget_topup";
    case CD_OP_PAUSE:
        return "pause";
    case CD_OP_RESUME:
        return "resume";
    }
    return "?";
}

static bool domain_valid(const char *s, size_t len)
{
    size_t label = 0;
    if (len == 0 || len > CD_DOMAIN_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            continue;
        }
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
        if (!ok || (c == '-' && label == 0) || ++label > 63)
            return false;
    }
    return label > 0 && s[len - 1] != '-';
}

static bool url_valid(const char *s, size_t len)
{
    size_t scheme;
    if (len > CD_URL_MAX)
        return false;
    if (len > 8 && memcmp(s, "https://", 8) == 0)
        scheme = 8;
    else if (len > 7 && memcmp(s, "http://", 7) == 0)
        scheme = 7;
    else
        return false;
    if (s[scheme] == '/' || s[scheme] == '?' || s[scheme] == '#')
        return false; /* no host */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>')
            return false;
    }
    return true;
}

/* ---- field tables ---- */

typedef enum field_rule_e {
    R_ID,       /* entity id */
    R_REF_ID,   /* another id (advertiser) */
    R_NAME,     /* 1..256 bytes of UTF-8 */
    R_NAME0,    /* 0..256 bytes of UTF-8 */
    R_STATUS_C, /* active | paused */
    R_STATUS_P, /* active | blocked */
    R_TIME,
    R_BUDGET,
    R_PRICING,
    R_PRICE,
    R_PUBLISHERS,
    R_DESTINATIONS,
    R_DOMAIN,
    R_VERSION,
    R_CLICK_PARAM, /* 1..32 of [A-Za-z0-9_.-]: the destination's click-id parameter */
    R_LOOKBACK,    /* integer days, 1..90 */
} field_rule_t;

typedef struct field_def_s {
    const char *name;
    field_rule_t rule;
    bool required;
    const char *expected; /* what a valid value is */
} field_def_t;

#define ID_EXPECTED "1 to 64 characters from A-Z a-z 0-9 . _ : -"
#define TIME_EXPECTED "an RFC 3339 UTC time such as 2026-11-01T00:00:00Z"

static const field_def_t campaign_fields[] = {
    {"id", R_ID, true, "a campaign id: " ID_EXPECTED},
    {"advertiser", R_REF_ID, true, "an advertiser id: " ID_EXPECTED},
    {"advertiser_name", R_NAME0, false, "a string of at most 256 bytes"},
    {"name", R_NAME, true, "a string of 1 to 256 bytes"},
    {"status", R_STATUS_C, false, "\"active\" or \"paused\""},
    {"start", R_TIME, true, TIME_EXPECTED},
    {"end", R_TIME, true, TIME_EXPECTED " after start"},
    {"budget_micros", R_BUDGET, true, "an integer from 0 to 10^15"},
    {"pricing", R_PRICING, true, "\"cpm\" or \"cpc\""},
    {"price_micros", R_PRICE, true, "an integer from 0 to 10^12"},
    {"publishers", R_PUBLISHERS, false, "an array of at most 1000 distinct publisher ids"},
    {"destinations", R_DESTINATIONS, false, "an array of at most 100 http:// or https:// URLs"},
    {"click_param", R_CLICK_PARAM, false,
     "1 to 32 characters from A-Z a-z 0-9 _ . - (the landing page's click-id parameter; default adt_clid)"},
    {"lookback_days", R_LOOKBACK, false, "an integer from 1 to 90 (days a click can win a conversion; default 30)"},
    {"payout_micros", R_PRICE, false, "an integer from 0 to 10^12 (a conversion's payout when it names none)"},
    {"version", R_VERSION, false, "a non-negative integer: the version you last read"},
};

static const field_def_t publisher_fields[] = {
    {"id", R_ID, true, "a publisher id: " ID_EXPECTED},
    {"name", R_NAME, true, "a string of 1 to 256 bytes"},
    {"domain", R_DOMAIN, true, "a domain name such as news.example"},
    {"status", R_STATUS_P, false, "\"active\" or \"blocked\""},
    {"version", R_VERSION, false, "a non-negative integer: the version you last read"},
};

#define MAX_FIELDS 20

static bool is_int(const bson_iter_t *it)
{
    return BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it);
}

static bool get_str(const bson_iter_t *it, const char **s, uint32_t *len)
{
    if (!BSON_ITER_HOLDS_UTF8(it))
        return false;
    *s = bson_iter_utf8(it, len);
    return true;
}

static bool text_ok(const char *s, uint32_t len, uint32_t min, uint32_t max)
{
    return len >= min && len <= max && bson_utf8_validate(s, len, false);
}

/* Checks one present field; appends its canonical form to @p out when valid. Returns
 * true when valid. @p prefix names the containing object ("" or "doc."). */
static bool check_field(const field_def_t *f, const bson_iter_t *it, const char *prefix, bson_t *out, cd_verrs_t *errs,
                        int64_t *time_ms)
{
    char fname[96];
    const char *s;
    uint32_t len;
    snprintf(fname, sizeof(fname), "%s%s", prefix, f->name);

    switch (f->rule) {
    case R_ID:
    case R_REF_ID:
        if (!get_str(it, &s, &len) || !cd_id_valid(s, len))
            goto bad;
        bson_append_utf8(out, f->name, -1, s, (int)len);
        return true;
    case R_NAME:
    case R_NAME0:
        if (!get_str(it, &s, &len) || !text_ok(s, len, f->rule == R_NAME ? 1 : 0, CD_NAME_MAX))
            goto bad;
        bson_append_utf8(out, f->name, -1, s, (int)len);
        return true;
    case R_STATUS_C:
    case R_STATUS_P:
        if (!get_str(it, &s, &len))
            goto bad;
        if (!((len == 6 && memcmp(s, "active", 6) == 0) ||
              (f->rule == R_STATUS_C && len == 6 && memcmp(s, "paused", 6) == 0) ||
              (f->rule == R_STATUS_P && len == 7 && memcmp(s, "blocked", 7) == 0)))
            goto bad;
        bson_append_utf8(out, f->name, -1, s, (int)len);
        return true;
    case R_TIME:
        if (!get_str(it, &s, &len) || cd_time_parse(s, len, time_ms) != 0)
            goto bad;
        bson_append_utf8(out, f->name, -1, s, (int)len);
        return true;
    case R_BUDGET:
    case R_PRICE: {
        int64_t max = f->rule == R_BUDGET ? CD_BUDGET_MAX : CD_PRICE_MAX;
        if (!is_int(it) || bson_iter_as_int64(it) < 0 || bson_iter_as_int64(it) > max)
            goto bad;
        bson_append_int64(out, f->name, -1, bson_iter_as_int64(it));
        return true;
    }
    case R_PRICING:
        if (!get_str(it, &s, &len) || len != 3 || (memcmp(s, "cpm", 3) != 0 && memcmp(s, "cpc", 3) != 0))
            goto bad;
        bson_append_utf8(out, f->name, -1, s, (int)len);
        return true;
    case R_DOMAIN:
        if (!get_str(it, &s, &len) || !domain_valid(s, len))
            goto bad;
        bson_append_utf8(out, f->name, -1, s, (int)len);
        return true;
    case R_CLICK_PARAM: {
        if (!get_str(it, &s, &len) || len < 1 || len > 32)
            goto bad;
        for (uint32_t i = 0; i < len; i++) {
            char ch = s[i];
            if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                  ch == '.' || ch == '-'))
                goto bad;
        }
        bson_append_utf8(out, f->name, -1, s, (int)len);
        return true;
    }
    case R_LOOKBACK:
        if (!is_int(it) || bson_iter_as_int64(it) < 1 || bson_iter_as_int64(it) > 90)
            goto bad;
        bson_append_int64(out, f->name, -1, bson_iter_as_int64(it));
        return true;
    case R_VERSION:
        if (!is_int(it) || bson_iter_as_int64(it) < 0 || bson_iter_as_int64(it) > CD_VERSION_MAX)
            goto bad;
        return true; /* not copied: the version is the server's */
    case R_PUBLISHERS:
    case R_DESTINATIONS: {
        bool pubs = f->rule == R_PUBLISHERS;
        size_t max = pubs ? CD_PUBLISHERS_MAX : CD_DESTINATIONS_MAX;
        bson_iter_t child;
        if (!BSON_ITER_HOLDS_ARRAY(it) || !bson_iter_recurse(it, &child))
            goto bad;
        /* Count first so an oversized array is one problem, not a thousand. */
        bson_iter_t counter = child;
        size_t n = 0;
        while (bson_iter_next(&counter))
            n++;
        if (n > max)
            goto bad;
        bson_t arr;
        bool ok = true;
        size_t i = 0;
        char idx[16];
        const char *key;
        const char **seen = pubs ? calloc(n + 1, sizeof(*seen)) : NULL;
        uint32_t *seen_len = pubs ? calloc(n + 1, sizeof(*seen_len)) : NULL;
        bson_append_array_begin(out, f->name, -1, &arr);
        for (; bson_iter_next(&child); i++) {
            char ename[112];
            snprintf(ename, sizeof(ename), "%s[%zu]", fname, i);
            if (!get_str(&child, &s, &len) || (pubs ? !cd_id_valid(s, len) : !url_valid(s, len))) {
                cd_verrs_add(errs, ename, "%s",
                             pubs ? "a publisher id: " ID_EXPECTED
                                  : "an http:// or https:// URL with a host, at most 2048 bytes, no spaces");
                ok = false;
                continue;
            }
            if (pubs) {
                bool dup = false;
                for (size_t j = 0; j < i && !dup; j++)
                    dup = seen[j] != NULL && seen_len[j] == len && memcmp(seen[j], s, len) == 0;
                seen[i] = s;
                seen_len[i] = len;
                if (dup) {
                    cd_verrs_add(errs, ename, "a publisher id not listed before");
                    ok = false;
                    continue;
                }
            }
            bson_uint32_to_string((uint32_t)i, &key, idx, sizeof(idx));
            bson_append_utf8(&arr, key, -1, s, (int)len);
        }
        bson_append_array_end(out, &arr);
        free(seen);
        free(seen_len);
        return ok;
    }
    }
bad:
    cd_verrs_add(errs, fname, "%s", f->expected);
    return false;
}

static int validate_fields(cd_kind_t kind, const bson_t *in, const char *path_id, const char *prefix, bson_t *out,
                           int64_t *expect_version, cd_verrs_t *errs)
{
    const field_def_t *defs = kind == CD_KIND_CAMPAIGN ? campaign_fields : publisher_fields;
    size_t ndefs = kind == CD_KIND_CAMPAIGN ? AT_ARRAY_LEN(campaign_fields) : AT_ARRAY_LEN(publisher_fields);
    /* bson_iter_t is over-aligned: a wrapper struct pads it so an array is allowed. */
    struct {
        bson_iter_t it;
    } at[MAX_FIELDS];
    bool present[MAX_FIELDS] = {false};
    bson_iter_t it;
    size_t before = errs->count + errs->dropped;
    char fname[160];

    *expect_version = -1;
    if (!bson_iter_init(&it, in)) {
        cd_verrs_add(errs, "(body)", "a JSON object");
        return -1;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        size_t j = 0;
        while (j < ndefs && strcmp(defs[j].name, k) != 0)
            j++;
        snprintf(fname, sizeof(fname), "%s%s", prefix, k);
        if (j == ndefs) {
            cd_verrs_add(errs, fname, "no such field in a %s (unknown field)", cd_kind_str(kind));
            continue;
        }
        if (present[j]) {
            cd_verrs_add(errs, fname, "the field only once");
            continue;
        }
        present[j] = true;
        at[j].it = it;
    }

    bson_t doc = BSON_INITIALIZER;
    int64_t start_ms = 0, end_ms = 0, ms = 0;
    bool start_ok = false, end_ok = false;
    for (size_t j = 0; j < ndefs; j++) {
        const field_def_t *f = &defs[j];
        snprintf(fname, sizeof(fname), "%s%s", prefix, f->name);
        if (f->rule == R_ID) {
            if (!present[j]) {
                if (path_id == NULL) {
                    cd_verrs_add(errs, fname, "%s (required)", f->expected);
                    continue;
                }
                BSON_APPEND_UTF8(&doc, "id", path_id); /* the URL names it */
                continue;
            }
            if (!check_field(f, &at[j].it, prefix, &doc, errs, &ms))
                continue;
            if (path_id != NULL) {
                uint32_t len;
                const char *s = bson_iter_utf8(&at[j].it, &len);
                if (strlen(path_id) != len || memcmp(path_id, s, len) != 0)
                    cd_verrs_add(errs, fname, "the same id as in the URL (\"%s\")", path_id);
            }
            continue;
        }
        if (!present[j]) {
            if (f->required) {
                cd_verrs_add(errs, fname, "%s (required)", f->expected);
                continue;
            }
            /* Defaults, so every stored document has every field. */
            if (f->rule == R_NAME0)
                BSON_APPEND_UTF8(&doc, f->name, "");
            else if (f->rule == R_STATUS_C || f->rule == R_STATUS_P)
                BSON_APPEND_UTF8(&doc, f->name, "active");
            else if (f->rule == R_PUBLISHERS || f->rule == R_DESTINATIONS) {
                bson_t empty;
                bson_append_array_begin(&doc, f->name, -1, &empty);
                bson_append_array_end(&doc, &empty);
            }
            continue;
        }
        bool ok = check_field(f, &at[j].it, prefix, &doc, errs, &ms);
        if (ok && f->rule == R_TIME) {
            if (strcmp(f->name, "start") == 0) {
                start_ms = ms;
                start_ok = true;
            } else {
                end_ms = ms;
                end_ok = true;
            }
        }
        if (ok && f->rule == R_VERSION)
            *expect_version = bson_iter_as_int64(&at[j].it);
    }
    if (start_ok && end_ok && end_ms <= start_ms) {
        snprintf(fname, sizeof(fname), "%send", prefix);
        cd_verrs_add(errs, fname, "a time after start");
    }
    if (errs->count + errs->dropped > before) {
        bson_destroy(&doc);
        *expect_version = -1;
        return -1;
    }
    bson_steal(out, &doc);
    return 0;
}

int cd_doc_validate(cd_kind_t kind, const bson_t *in, const char *path_id, bson_t *out, int64_t *expect_version,
                    cd_verrs_t *errs)
{
    return validate_fields(kind, in, path_id, "", out, expect_version, errs);
}

int cd_json_object(const char *json, size_t len, bson_t *out, cd_verrs_t *errs)
{
    bson_error_t berr;
    size_t i = 0;
    /* libbson also reads a top-level array as a document with keys "0", "1", ...: refuse it. */
    while (i < len && (json[i] == ' ' || json[i] == '\t' || json[i] == '\r' || json[i] == '\n'))
        i++;
    if (i == len || json[i] != '{') {
        cd_verrs_add(errs, "(body)", "a JSON object");
        return -1;
    }
    if (memchr(json, '\0', len) != NULL) {
        cd_verrs_add(errs, "(body)", "a JSON object (the body contains a NUL byte)");
        return -1;
    }
    if (len > INT32_MAX || !bson_init_from_json(out, json, (ssize_t)len, &berr)) {
        cd_verrs_add(errs, "(body)", "a well-formed JSON object (%s)", berr.message);
        return -1;
    }
    return 0;
}

/* ---- updates ---- */

void cd_update_init(cd_update_t *u)
{
    memset(u, 0, sizeof(*u));
    bson_init(&u->doc);
    u->expect_version = -1;
}

void cd_update_free(cd_update_t *u)
{
    if (u == NULL)
        return;
    bson_destroy(&u->doc);
    bson_init(&u->doc);
}

static bool version_field(const bson_iter_t *it, const char *name, int64_t *v, cd_verrs_t *errs)
{
    if (!is_int(it) || bson_iter_as_int64(it) < 0 || bson_iter_as_int64(it) > CD_VERSION_MAX) {
        cd_verrs_add(errs, name, "a non-negative integer: the version you last read");
        return false;
    }
    *v = bson_iter_as_int64(it);
    return true;
}

int cd_budget_body(const bson_t *in, cd_update_t *u, cd_verrs_t *errs)
{
    bson_iter_t it;
    size_t before = errs->count + errs->dropped;
    int given = 0;
    u->expect_version = -1;
    if (in == NULL || !bson_iter_init(&it, in)) {
        cd_verrs_add(errs, "set_micros", "exactly one of set_micros or topup_micros");
        return -1;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "set_micros") == 0 || strcmp(k, "topup_micros") == 0) {
            bool set = k[0] == 's';
            int64_t lo = set ? 0 : 1;
            given++;
            if (!is_int(&it) || bson_iter_as_int64(&it) < lo || bson_iter_as_int64(&it) > CD_BUDGET_MAX) {
                cd_verrs_add(errs, k, "an integer from %d to 10^15", (int)lo);
                continue;
            }
            u->op = set ? CD_OP_BUDGET_SET : CD_OP_BUDGET_TOPUP;
            u->amount = bson_iter_as_int64(&it);
        } else if (strcmp(k, "version") == 0) {
            version_field(&it, "version", &u->expect_version, errs);
        } else {
            cd_verrs_add(errs, k, "no such field in a budget change (known: set_micros, topup_micros, version)");
        }
    }
    if (given != 1)
        cd_verrs_add(errs, "set_micros", "exactly one of set_micros or topup_micros");
    return errs->count + errs->dropped > before ? -1 : 0;
}

int cd_version_body(const bson_t *in, cd_update_t *u, cd_verrs_t *errs)
{
    bson_iter_t it;
    size_t before = errs->count + errs->dropped;
    u->expect_version = -1;
    if (in == NULL || !bson_iter_init(&it, in))
        return 0;
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "version") == 0)
            version_field(&it, "version", &u->expect_version, errs);
        else
            cd_verrs_add(errs, k, "no such field here (known: version)");
    }
    return errs->count + errs->dropped > before ? -1 : 0;
}

int cd_update_parse(const char *json, size_t len, cd_update_t *u, cd_verrs_t *errs, bool *malformed)
{
    bson_t in;
    bson_iter_t it;
    bson_iter_t f_kind, f_op, f_doc, f_id;
    bool h_kind = false, h_op = false, h_doc = false, h_id = false;
    int64_t amount = -1, version = -1;
    int namounts = 0;
    size_t before = errs->count + errs->dropped;

    cd_update_init(u);
    *malformed = false;
    if (cd_json_object(json, len, &in, errs) != 0) {
        *malformed = true;
        return -1;
    }
    bson_iter_init(&it, &in);
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "kind") == 0 && !h_kind) {
            f_kind = it;
            h_kind = true;
        } else if (strcmp(k, "op") == 0 && !h_op) {
            f_op = it;
            h_op = true;
        } else if (strcmp(k, "doc") == 0 && !h_doc) {
            f_doc = it;
            h_doc = true;
        } else if (strcmp(k, "id") == 0 && !h_id) {
            f_id = it;
            h_id = true;
        } else if (strcmp(k, "version") == 0) {
            version_field(&it, "version", &version, errs);
        } else if (strcmp(k, "set_micros") == 0 || strcmp(k, "topup_micros") == 0) {
            bool set = k[0] == 's';
            int64_t lo = set ? 0 : 1;
            namounts++;
            if (!is_int(&it) || bson_iter_as_int64(&it) < lo || bson_iter_as_int64(&it) > CD_BUDGET_MAX) {
                cd_verrs_add(errs, k, "an integer from %d to 10^15", (int)lo);
                continue;
            }
            amount = bson_iter_as_int64(&it);
            u->op = set ? CD_OP_BUDGET_SET : CD_OP_BUDGET_TOPUP;
        } else if (strcmp(k, "kind") == 0 || strcmp(k, "op") == 0 || strcmp(k, "doc") == 0 || strcmp(k, "id") == 0) {
            cd_verrs_add(errs, k, "the field only once");
        } else {
            cd_verrs_add(errs, k,
                         "no such field in an update (known: kind, op, id, doc, version, set_micros, "
                         "topup_micros)");
        }
    }

    const char *s;
    uint32_t slen;
    bool kind_ok = false;
    if (!h_kind || !get_str(&f_kind, &s, &slen) || cd_kind_parse(s, slen, &u->kind) != 0)
        cd_verrs_add(errs, "kind", "\"campaign\" or \"publisher\"%s", h_kind ? "" : " (required)");
    else
        kind_ok = true;

    /* op */
    enum { O_NONE, O_PUT, O_DELETE, O_BUDGET, O_PAUSE, O_RESUME } op = O_NONE;
    if (h_op && get_str(&f_op, &s, &slen)) {
        if (slen == 3 && memcmp(s, "put", 3) == 0)
            op = O_PUT;
        else if (slen == 6 && memcmp(s, "delete", 6) == 0)
            op = O_DELETE;
        else if (slen == 6 && memcmp(s, "budget", 6) == 0)
            op = O_BUDGET;
        else if (slen == 5 && memcmp(s, "pause", 5) == 0)
            op = O_PAUSE;
        else if (slen == 6 && memcmp(s, "resume", 6) == 0)
            op = O_RESUME;
    }
    if (op == O_NONE)
        cd_verrs_add(errs, "op", "\"put\", \"delete\", \"budget\", \"pause\" or \"resume\"%s",
                     h_op ? "" : " (required)");
    if (kind_ok && u->kind == CD_KIND_PUBLISHER && (op == O_BUDGET || op == O_PAUSE || op == O_RESUME))
        cd_verrs_add(errs, "op", "\"put\" or \"delete\" for a publisher");
    if (op != O_BUDGET && namounts > 0)
        cd_verrs_add(errs, "set_micros", "no budget amount unless op is \"budget\"");
    if (op == O_BUDGET && namounts != 1)
        cd_verrs_add(errs, "set_micros", "exactly one of set_micros or topup_micros");

    if (op == O_PUT) {
        if (h_id)
            cd_verrs_add(errs, "id", "no top-level id with op \"put\" (put it in doc)");
        bson_t d;
        if (!h_doc || !BSON_ITER_HOLDS_DOCUMENT(&f_doc)) {
            cd_verrs_add(errs, "doc", "the %s as a JSON object%s", kind_ok ? cd_kind_str(u->kind) : "entity",
                         h_doc ? "" : " (required)");
        } else if (kind_ok) {
            uint32_t dlen;
            const uint8_t *data;
            bson_iter_document(&f_doc, &dlen, &data);
            int64_t dv = -1;
            if (bson_init_static(&d, data, dlen)) {
                bson_t canon;
                if (validate_fields(u->kind, &d, NULL, "doc.", &canon, &dv, errs) == 0) {
                    bson_destroy(&u->doc);
                    bson_steal(&u->doc, &canon);
                    uint32_t ilen;
                    bson_iter_t idit;
                    if (bson_iter_init_find(&idit, &u->doc, "id")) {
                        const char *id = bson_iter_utf8(&idit, &ilen);
                        memcpy(u->id, id, ilen);
                        u->id[ilen] = '\0';
                    }
                }
            }
            if (dv >= 0 && version >= 0 && dv != version)
                cd_verrs_add(errs, "version", "the same version as doc.version");
            if (dv >= 0)
                version = dv;
        }
    } else if (op != O_NONE) {
        if (h_doc)
            cd_verrs_add(errs, "doc", "no doc with op \"%s\"", op == O_DELETE ? "delete" : "budget/pause/resume");
        if (!h_id || !get_str(&f_id, &s, &slen) || !cd_id_valid(s, slen)) {
            cd_verrs_add(errs, "id", "%s%s", "an entity id: " ID_EXPECTED, h_id ? "" : " (required)");
        } else {
            memcpy(u->id, s, slen);
            u->id[slen] = '\0';
        }
        if (op == O_DELETE)
            u->op = CD_OP_DELETE;
        else if (op == O_PAUSE)
            u->op = CD_OP_PAUSE;
        else if (op == O_RESUME)
            u->op = CD_OP_RESUME;
        u->amount = amount;
    }
    bson_destroy(&in);
    if (errs->count + errs->dropped > before) {
        cd_update_free(u);
        cd_update_init(u);
        return -1;
    }
    if (op == O_PUT)
        u->op = CD_OP_PUT;
    u->expect_version = version;
    return 0;
}

/* ---- document helpers ---- */

static void set_field(const bson_t *doc, const char *key, const bson_value_t *v, bson_t *out)
{
    bson_iter_t it;
    bool done = false;
    bson_init(out);
    if (bson_iter_init(&it, doc)) {
        while (bson_iter_next(&it)) {
            if (strcmp(bson_iter_key(&it), key) == 0) {
                if (!done)
                    bson_append_value(out, key, -1, v);
                done = true;
                continue;
            }
            bson_append_iter(out, bson_iter_key(&it), -1, &it);
        }
    }
    if (!done)
        bson_append_value(out, key, -1, v);
}

void cd_doc_set_int64(const bson_t *doc, const char *key, int64_t v, bson_t *out)
{
    bson_value_t val = {.value_type = BSON_TYPE_INT64};
    val.value.v_int64 = v;
    set_field(doc, key, &val, out);
}

void cd_doc_set_utf8(const bson_t *doc, const char *key, const char *v, bson_t *out)
{
    bson_value_t val = {.value_type = BSON_TYPE_UTF8};
    val.value.v_utf8.str = (char *)v;
    val.value.v_utf8.len = (uint32_t)strlen(v);
    set_field(doc, key, &val, out);
}

int64_t cd_doc_int64(const bson_t *doc, const char *key, int64_t def)
{
    bson_iter_t it;
    if (bson_iter_init_find(&it, doc, key) && is_int(&it))
        return bson_iter_as_int64(&it);
    return def;
}

const char *cd_doc_utf8(const bson_t *doc, const char *key, char *buf, size_t size)
{
    bson_iter_t it;
    uint32_t len = 0;
    if (size == 0)
        return buf;
    buf[0] = '\0';
    if (bson_iter_init_find(&it, doc, key) && BSON_ITER_HOLDS_UTF8(&it)) {
        const char *s = bson_iter_utf8(&it, &len);
        size_t n = AT_MIN((size_t)len, size - 1);
        memcpy(buf, s, n);
        buf[n] = '\0';
    }
    return buf;
}

bool cd_doc_deleted(const bson_t *doc)
{
    bson_iter_t it;
    return bson_iter_init_find(&it, doc, "deleted") && BSON_ITER_HOLDS_BOOL(&it) && bson_iter_bool(&it);
}

char *cd_utf8_sanitize(const char *s, size_t len, size_t max)
{
    /* Worst case every byte becomes the 3-byte U+FFFD. */
    size_t cap = AT_MIN(len, max) * 3 + 1;
    char *out = bson_malloc(cap);
    size_t o = 0, i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)s[i];
        size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xe ? 3 : (c >> 3) == 0x1e ? 4 : 0;
        bool ok = n > 0 && i + n <= len && c != 0;
        if (ok && n > 1)
            ok = bson_utf8_validate(s + i, n, false);
        if (ok && i + n > max)
            break;
        if (!ok) {
            if (i + 1 > max)
                break;
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(out + o, s + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
    return out;
}
