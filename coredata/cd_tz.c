/*
 * cd_tz.c: TZif reader (RFC 8536, version 2 and later: the 64-bit block). See cd_tz.h.
 */
#include "cd_tz.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "at_time.h"

#define TZ_DIR "/usr/share/zoneinfo"
#define TZ_FILE_MAX (1 << 20)

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > CD_TZ_NAME_MAX || name[0] == '/' || strstr(name, "..") != NULL)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '+' ||
              c == '-' || c == '/'))
            return false;
    }
    return true;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static int64_t be64(const unsigned char *p)
{
    return (int64_t)((uint64_t)be32(p) << 32 | be32(p + 4));
}

typedef struct tzhead_s {
    uint32_t isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt;
} tzhead_t;

static int read_head(const unsigned char *p, size_t len, tzhead_t *h)
{
    if (len < 44 || memcmp(p, "TZif", 4) != 0)
        return -1;
    h->isutcnt = be32(p + 20);
    h->isstdcnt = be32(p + 24);
    h->leapcnt = be32(p + 28);
    h->timecnt = be32(p + 32);
    h->typecnt = be32(p + 36);
    h->charcnt = be32(p + 40);
    return h->typecnt == 0 || h->typecnt > 256 || h->timecnt > 100000 || h->charcnt > 65536 ? -1 : 0;
}

static size_t block_len(const tzhead_t *h, size_t timesize)
{
    return (size_t)h->timecnt * timesize + h->timecnt + (size_t)h->typecnt * 6 + h->charcnt +
           (size_t)h->leapcnt * (timesize + 4) + h->isstdcnt + h->isutcnt;
}

/* Parses the 64-bit block of @p buf into @p z. */
static int parse(cd_tz_t *z, const unsigned char *buf, size_t len, at_err_t *err)
{
    tzhead_t h1, h2;
    if (read_head(buf, len, &h1) != 0 || buf[4] < '2')
        return at_err_set(err, AT_ERR_INVALID, "not a TZif file of version 2 or later");
    size_t off = 44 + block_len(&h1, 4);
    if (off > len || read_head(buf + off, len - off, &h2) != 0)
        return at_err_set(err, AT_ERR_INVALID, "truncated TZif file");
    if (h2.leapcnt != 0)
        return at_err_set(err, AT_ERR_INVALID, "a zone with leap seconds (right/...) is not supported");
    const unsigned char *p = buf + off + 44;
    if (off + 44 + block_len(&h2, 8) > len)
        return at_err_set(err, AT_ERR_INVALID, "truncated TZif file");
    const unsigned char *times = p, *idx = p + (size_t)h2.timecnt * 8, *types = idx + h2.timecnt;
    z->n = h2.timecnt;
    z->at = calloc(z->n + 1, sizeof(*z->at));
    z->off = calloc(z->n + 1, sizeof(*z->off));
    if (z->at == NULL || z->off == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    for (size_t i = 0; i < z->n; i++) {
        if (idx[i] >= h2.typecnt)
            return at_err_set(err, AT_ERR_INVALID, "TZif transition names a missing type");
        z->at[i] = be64(times + i * 8);
        z->off[i] = (int32_t)be32(types + (size_t)idx[i] * 6);
        if (i > 0 && z->at[i] <= z->at[i - 1])
            return at_err_set(err, AT_ERR_INVALID, "TZif transitions out of order");
    }
    z->off0 = (int32_t)be32(types);
    /* The footer ("\n<POSIX TZ>\n") follows the block: a ',' means a DST rule. */
    const unsigned char *f = p + block_len(&h2, 8), *e = buf + len;
    z->footer_dst = false;
    if (f < e && *f == '\n') {
        for (f++; f < e && *f != '\n'; f++)
            if (*f == ',')
                z->footer_dst = true;
    }
    return 0;
}

int cd_tz_load(cd_tz_t *z, const char *name, const char *dir, at_err_t *err)
{
    memset(z, 0, sizeof(*z));
    if (!name_ok(name))
        return at_err_set(err, AT_ERR_INVALID,
                          "an IANA time zone name such as Europe/Berlin (1 to 64 characters of A-Z a-z 0-9 _ + - /)");
    snprintf(z->name, sizeof(z->name), "%s", name);
    if (strcmp(name, "UTC") == 0 || strcmp(name, "Etc/UTC") == 0)
        return 0; /* no file needed: offset 0 always */
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s", dir != NULL ? dir : TZ_DIR, name);
    FILE *fp = fopen(path, "rb");
    if (fp == NULL)
        return at_err_set(err, errno == ENOENT || errno == ENOTDIR ? AT_ERR_INVALID : AT_ERR_IO,
                          "an IANA time zone name such as Europe/Berlin (no zone '%s' in %s: %s)", name,
                          dir != NULL ? dir : TZ_DIR, strerror(errno));
    unsigned char *buf = malloc(TZ_FILE_MAX);
    size_t len = buf != NULL ? fread(buf, 1, TZ_FILE_MAX, fp) : 0;
    fclose(fp);
    int rc = buf == NULL ? at_err_set(err, AT_ERR_NOMEM, "out of memory") : parse(z, buf, len, err);
    free(buf);
    if (rc != 0) {
        char msg[AT_ERR_MSG_MAX];
        snprintf(msg, sizeof(msg), "%s", err->msg);
        at_err_set(err, AT_ERR_INVALID, "a usable time zone ('%s': %s)", name, msg);
        cd_tz_free(z);
        snprintf(z->name, sizeof(z->name), "%s", name);
    }
    return rc;
}

void cd_tz_free(cd_tz_t *z)
{
    if (z == NULL)
        return;
    free(z->at);
    free(z->off);
    z->at = NULL;
    z->off = NULL;
    z->n = 0;
}

/* Index of the last transition at or before @p t, or -1. */
static ssize_t find(const cd_tz_t *z, int64_t t)
{
    size_t lo = 0, hi = z->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (z->at[mid] <= t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return (ssize_t)lo - 1;
}

int32_t cd_tz_offset(const cd_tz_t *z, int64_t t)
{
    ssize_t i = find(z, t);
    return i < 0 ? z->off0 : z->off[i];
}

int64_t cd_tz_to_utc(const cd_tz_t *z, int64_t local)
{
    /* Try the offsets in force a day either side: a wall time maps to u = local - off with
     * off = offset(u). Of the consistent ones, the earliest; none: a gap, answer the change. */
    int32_t a = cd_tz_offset(z, local - 86400), b = cd_tz_offset(z, local + 86400);
    int64_t ua = local - a, ub = local - b;
    bool oka = cd_tz_offset(z, ua) == a, okb = cd_tz_offset(z, ub) == b;
    if (oka && okb)
        return ua < ub ? ua : ub;
    if (oka)
        return ua;
    if (okb)
        return ub;
    /* In a gap: the first transition after the earlier candidate. */
    int64_t lo = ua < ub ? ua : ub;
    ssize_t i = find(z, lo);
    return (size_t)(i + 1) < z->n ? z->at[i + 1] : lo;
}

int cd_tz_check_range(const cd_tz_t *z, int64_t from, int64_t to, char *why, size_t why_size)
{
    char when[32];
    ssize_t i = find(z, from);
    int32_t o = i < 0 ? z->off0 : z->off[i];
    int64_t t = from;
    for (;;) {
        if (o % 3600 != 0) {
            cd_tz_format(z, t, when);
            snprintf(why, why_size,
                     "a time zone whose UTC offset is a whole number of hours in the range ('%s' is %c%d:%02d at %s; "
                     "reports are cut from hourly rollups)",
                     z->name, o < 0 ? '-' : '+', abs(o) / 3600, abs(o) % 3600 / 60, when);
            return -1;
        }
        i++;
        if ((size_t)i >= z->n || z->at[i] >= to)
            break;
        t = z->at[i];
        o = z->off[i];
    }
    if (z->footer_dst && z->n > 0 && to > z->at[z->n - 1]) {
        at_utc_iso8601(z->at[z->n - 1] * 1000, when);
        snprintf(why, why_size, "a range the zone file of '%s' covers (its transitions end at %s)", z->name, when);
        return -1;
    }
    return 0;
}

void cd_tz_format(const cd_tz_t *z, int64_t t, char out[32])
{
    int32_t o = cd_tz_offset(z, t);
    int64_t l = t + o;
    int64_t days = l >= 0 ? l / 86400 : -((-l + 86399) / 86400);
    int64_t sod = l - days * 86400, y;
    int m, d;
    at_civil_from_days(days, &y, &m, &d);
    int ao = abs(o);
    snprintf(out, 32, "%04lld-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", (long long)y, m, d, (int)(sod / 3600),
             (int)(sod / 60 % 60), (int)(sod % 60), o < 0 ? '-' : '+', ao / 3600, ao / 60 % 60);
}
