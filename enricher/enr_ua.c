/*
 * enr_ua.c: user-agent classification (see enr_ua.h).
 *
 * The UA is lower-cased once into a stack buffer (it is at most AT_EVENT_UA_MAX bytes
 * after the envelope check), then every rule is a memmem() on it. The order of the family
 * rules matters because browsers quote each other: Edge and Opera also say "Chrome/" and
 * "Safari/", Chrome also says "Safari/".
 */
#include "enr_ua.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>

#include "at_event.h"

#define UA_BUF 1024

struct enr_ua_s {
    char **pat;
    size_t *patlen;
    size_t n;
};

/* Built-in bot list: crawlers and link previewers that announce themselves, headless and
 * automated browsers, and HTTP client libraries no person browses with. */
static const char *const default_patterns[] = {
    "bot",           "crawler",        "spider",         "slurp",          "crawl",         "headless",
    "phantomjs",     "puppeteer",      "playwright",     "selenium",       "webdriver",     "lighthouse",
    "pingdom",       "curl/",          "wget/",          "python-requests", "python-urllib", "aiohttp",
    "go-http-client", "java/",         "okhttp",         "libwww-perl",    "httpclient",    "scrapy",
    "facebookexternalhit", "bingpreview", "mediapartners", "feedfetcher",  "ahrefs",        "semrush",
    "node-fetch",    "axios/",         "postmanruntime", "insomnia",       "httpie",        "uptime",
};

static int add_pattern(enr_ua_t *ua, const char *p, size_t len)
{
    char **np = realloc(ua->pat, (ua->n + 1) * sizeof(*np));
    if (np == NULL)
        return -1;
    ua->pat = np;
    size_t *nl = realloc(ua->patlen, (ua->n + 1) * sizeof(*nl));
    if (nl == NULL)
        return -1;
    ua->patlen = nl;
    char *s = malloc(len + 1);
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < len; i++)
        s[i] = (char)tolower((unsigned char)p[i]);
    s[len] = '\0';
    ua->pat[ua->n] = s;
    ua->patlen[ua->n] = len;
    ua->n++;
    return 0;
}

enr_ua_t *enr_ua_new(const char *path, at_err_t *err)
{
    enr_ua_t *ua = calloc(1, sizeof(*ua));
    if (ua == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "bot patterns: out of memory");
        return NULL;
    }
    if (path == NULL || path[0] == '\0') {
        for (size_t i = 0; i < AT_ARRAY_LEN(default_patterns); i++) {
            if (add_pattern(ua, default_patterns[i], strlen(default_patterns[i])) != 0)
                goto nomem;
        }
        return ua;
    }
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        at_err_set(err, AT_ERR_IO, "--bot-patterns: cannot open '%s': %s", path, strerror(errno));
        enr_ua_destroy(ua);
        return NULL;
    }
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL) {
        size_t len = strlen(line);
        while (len > 0 && isspace((unsigned char)line[len - 1]))
            len--;
        size_t start = 0;
        while (start < len && isspace((unsigned char)line[start]))
            start++;
        if (start == len || line[start] == '#')
            continue;
        if (add_pattern(ua, line + start, len - start) != 0) {
            fclose(f);
            goto nomem;
        }
    }
    fclose(f);
    if (ua->n == 0) {
        at_err_set(err, AT_ERR_INVALID, "--bot-patterns: '%s' holds no pattern (one substring per line expected)",
                   path);
        enr_ua_destroy(ua);
        return NULL;
    }
    return ua;
nomem:
    at_err_set(err, AT_ERR_NOMEM, "bot patterns: out of memory");
    enr_ua_destroy(ua);
    return NULL;
}

void enr_ua_destroy(enr_ua_t *ua)
{
    if (ua == NULL)
        return;
    for (size_t i = 0; i < ua->n; i++)
        free(ua->pat[i]);
    free(ua->pat);
    free(ua->patlen);
    free(ua);
}

size_t enr_ua_npatterns(const enr_ua_t *ua)
{
    return ua->n;
}

static bool has(const char *s, size_t len, const char *needle)
{
    return memmem(s, len, needle, strlen(needle)) != NULL;
}

void enr_ua_classify(const enr_ua_t *ua, const char *s, size_t len, enr_ua_info_t *out)
{
    char buf[UA_BUF];

    memset(out, 0, sizeof(*out));
    if (len == 0) {
        out->family = ENR_UA_OTHER;
        out->device = ENR_DEV_UNKNOWN;
        return;
    }
    if (len > sizeof(buf))
        len = sizeof(buf);
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)tolower((unsigned char)s[i]);

    for (size_t i = 0; i < ua->n; i++) {
        if (memmem(buf, len, ua->pat[i], ua->patlen[i]) != NULL) {
            out->bot = true;
            break;
        }
    }

    if (has(buf, len, "edg/") || has(buf, len, "edge/") || has(buf, len, "edga/") || has(buf, len, "edgios/"))
        out->family = ENR_UA_EDGE;
    else if (has(buf, len, "opr/") || has(buf, len, "opera") || has(buf, len, "opt/"))
        out->family = ENR_UA_OPERA;
    else if (has(buf, len, "firefox/") || has(buf, len, "fxios/"))
        out->family = ENR_UA_FIREFOX;
    else if (has(buf, len, "chrome/") || has(buf, len, "crios/") || has(buf, len, "chromium/"))
        out->family = ENR_UA_CHROME;
    else if (has(buf, len, "safari/") && (has(buf, len, "version/") || has(buf, len, "mobile/")))
        out->family = ENR_UA_SAFARI;
    else
        out->family = ENR_UA_OTHER;

    if (out->bot)
        out->device = ENR_DEV_BOT;
    else if (has(buf, len, "ipad") || has(buf, len, "tablet") || has(buf, len, "kindle") || has(buf, len, "silk/") ||
             (has(buf, len, "android") && !has(buf, len, "mobile")))
        out->device = ENR_DEV_TABLET;
    else if (has(buf, len, "mobi") || has(buf, len, "iphone") || has(buf, len, "ipod") ||
             has(buf, len, "android") || has(buf, len, "windows phone"))
        out->device = ENR_DEV_MOBILE;
    else
        out->device = ENR_DEV_DESKTOP;
}

const char *enr_ua_family_str(enr_ua_family_t f)
{
    static const char *const names[] = {"other", "chrome", "firefox", "safari", "edge", "opera"};
    return (unsigned)f < AT_ARRAY_LEN(names) ? names[f] : "other";
}

const char *enr_device_str(enr_device_t d)
{
    static const char *const names[] = {"unknown", "desktop", "mobile", "tablet", "bot"};
    return (unsigned)d < AT_ARRAY_LEN(names) ? names[d] : "unknown";
}

/* ---- per-thread cache ---- */

typedef struct ua_slot_s {
    uint64_t hash;
    char *key; /* owned copy, keylen bytes; NULL when the slot is empty */
    size_t keylen;
    enr_ua_info_t info;
} ua_slot_t;

struct enr_ua_cache_s {
    const enr_ua_t *ua;
    ua_slot_t *slots;
    size_t mask;
};

enr_ua_cache_t *enr_ua_cache_new(const enr_ua_t *ua, size_t slots)
{
    size_t n = 1;
    while (n < slots && n < ((size_t)1 << 20))
        n *= 2;
    enr_ua_cache_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->slots = calloc(n, sizeof(*c->slots));
    if (c->slots == NULL) {
        free(c);
        return NULL;
    }
    c->ua = ua;
    c->mask = n - 1;
    return c;
}

void enr_ua_cache_destroy(enr_ua_cache_t *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i <= c->mask; i++)
        free(c->slots[i].key);
    free(c->slots);
    free(c);
}

/* 64-bit hash, 8 bytes per step (the UA is read once per event on a hit, so this matters
 * more than its quality, which only decides how often two UAs share a slot). */
static uint64_t ua_hash(const char *s, size_t len)
{
    uint64_t h = UINT64_C(0x9E3779B97F4A7C15) ^ (uint64_t)len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        h = (h ^ w) * UINT64_C(0xFF51AFD7ED558CCD);
        h ^= h >> 32;
    }
    uint64_t w = 0;
    memcpy(&w, s + i, len - i);
    h = (h ^ w) * UINT64_C(0xC4CEB9FE1A85EC53);
    return h ^ (h >> 29);
}

void enr_ua_cache_classify(enr_ua_cache_t *c, const char *s, size_t len, enr_ua_info_t *out)
{
    if (len == 0 || len > AT_EVENT_UA_MAX) {
        enr_ua_classify(c->ua, s, len, out);
        return;
    }
    uint64_t h = ua_hash(s, len);
    ua_slot_t *slot = &c->slots[h & c->mask];
    if (slot->key != NULL && slot->hash == h && slot->keylen == len && memcmp(slot->key, s, len) == 0) {
        *out = slot->info;
        return;
    }
    enr_ua_classify(c->ua, s, len, out);
    char *key = slot->keylen >= len && slot->key != NULL ? slot->key : realloc(slot->key, len);
    if (key == NULL)
        return; /* the old entry stays valid; this answer is just not cached */
    memcpy(key, s, len);
    slot->key = key;
    slot->keylen = len;
    slot->hash = h;
    slot->info = *out;
}
