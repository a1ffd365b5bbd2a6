/*
 * lt_profile.c: synthetic traffic (see lt_profile.h).
 */
#include "lt_profile.h"

#include "at_hmac.h"

#include <bson/bson.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#define LT_PROFILE_MAX_ITEMS 10000000ULL
#define LT_PROFILE_MAX_IDS 1000000ULL

static const char *const ev_names[LT_EV_COUNT] = {"imp", "view", "click", "conv"};

/* ---- random numbers ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void lt_rng_seed(lt_rng_t *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t lt_rng_next(lt_rng_t *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double lt_rng_double(lt_rng_t *r)
{
    return (double)(lt_rng_next(r) >> 11) * 0x1.0p-53;
}

uint64_t lt_rng_below(lt_rng_t *r, uint64_t n)
{
    /* Lemire's multiply-shift; the tiny bias for huge n does not matter for load shapes. */
    return (uint64_t)(((unsigned __int128)lt_rng_next(r) * n) >> 64);
}

/* ---- Zipf ---- */

int lt_zipf_init(lt_zipf_t *z, uint64_t n, double s, at_err_t *err)
{
    memset(z, 0, sizeof(*z));
    if (n == 0)
        return at_err_set(err, AT_ERR_RANGE, "zipf: need at least one item");
    z->n = n;
    z->s = s;
    if (s <= 0 || n == 1)
        return 0;
    z->cdf = malloc(n * sizeof(double));
    if (z->cdf == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "zipf: out of memory for %llu items", (unsigned long long)n);
    double acc = 0;
    for (uint64_t k = 0; k < n; k++) {
        acc += pow((double)(k + 1), -s);
        z->cdf[k] = acc;
    }
    for (uint64_t k = 0; k < n; k++)
        z->cdf[k] /= acc;
    z->cdf[n - 1] = 1.0;
    return 0;
}

void lt_zipf_free(lt_zipf_t *z)
{
    if (z == NULL)
        return;
    free(z->cdf);
    z->cdf = NULL;
}

uint64_t lt_zipf_sample(const lt_zipf_t *z, lt_rng_t *r)
{
    if (z->cdf == NULL)
        return lt_rng_below(r, z->n);
    double u = lt_rng_double(r);
    uint64_t lo = 0, hi = z->n - 1; /* first k with cdf[k] > u */
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (z->cdf[mid] > u)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* ---- profile ---- */

void lt_profile_defaults(lt_profile_t *p)
{
    memset(p, 0, sizeof(*p));
    p->seed = 1;
    p->campaigns = 100;
    p->creatives_per_campaign = 4;
    p->publishers = 50;
    p->placements_per_publisher = 3;
    p->users = 100000;
    p->campaign_skew = 1.0;
    p->publisher_skew = 0.8;
    p->user_skew = 0.0;
    p->mix[LT_EV_IMP] = 0.90;
    p->mix[LT_EV_VIEW] = 0.07;
    p->mix[LT_EV_CLICK] = 0.02;
    p->mix[LT_EV_CONV] = 0.01;
    p->beacon_ratio = 0.0;
    p->beacon_batch = 5;
}

static void free_ids(char **ids, uint64_t n)
{
    if (ids == NULL)
        return;
    for (uint64_t i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

void lt_profile_free(lt_profile_t *p)
{
    if (p == NULL)
        return;
    free_ids(p->campaign_ids, p->campaigns);
    free_ids(p->publisher_ids, p->publishers);
    free_ids(p->click_sigs, p->campaigns);
    free_ids(p->cids, p->campaigns);
    free_ids(p->pids, p->publishers);
    free_ids(p->page_pre, p->publishers);
    free_ids(p->page_post, p->publishers);
    free(p->page_url);
    free(p->click_dest);
    free(p->click_secret);
    lt_zipf_free(&p->zc);
    lt_zipf_free(&p->zp);
    lt_zipf_free(&p->zu);
    memset(p, 0, sizeof(*p));
}

static bool iter_number(const bson_iter_t *it, double *out)
{
    switch (bson_iter_type(it)) {
    case BSON_TYPE_DOUBLE:
    case BSON_TYPE_INT32:
    case BSON_TYPE_INT64:
        *out = bson_iter_as_double(it);
        return true;
    default:
        return false;
    }
}

static int get_count(const bson_iter_t *it, const char *key, uint64_t lo, uint64_t hi, uint64_t *out, at_err_t *err)
{
    double v;
    if (!iter_number(it, &v) || v != floor(v) || v < (double)lo || v > (double)hi)
        return at_err_set(err, AT_ERR_INVALID, "profile: %s: expected an integer from %llu to %llu", key,
                          (unsigned long long)lo, (unsigned long long)hi);
    *out = (uint64_t)v;
    return 0;
}

static int get_real(const bson_iter_t *it, const char *key, double lo, double hi, double *out, at_err_t *err)
{
    double v;
    if (!iter_number(it, &v) || !(v >= lo && v <= hi))
        return at_err_set(err, AT_ERR_INVALID, "profile: %s: expected a number from %g to %g", key, lo, hi);
    *out = v;
    return 0;
}

static int get_string(const bson_iter_t *it, const char *key, char **out, at_err_t *err)
{
    if (!BSON_ITER_HOLDS_UTF8(it))
        return at_err_set(err, AT_ERR_INVALID, "profile: %s: expected a string", key);
    uint32_t len;
    const char *s = bson_iter_utf8(it, &len);
    char *c = strndup(s, len);
    if (c == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "profile: out of memory");
    free(*out);
    *out = c;
    return 0;
}

/* An id usable as c / p: 1-64 characters from [A-Za-z0-9._:-] (the collector's rule). */
static bool valid_id(const char *s, size_t len)
{
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == ':' || c == '-'))
            return false;
    }
    return true;
}

static int get_ids(const bson_iter_t *it, const char *key, char ***out, uint64_t *count, at_err_t *err)
{
    if (!BSON_ITER_HOLDS_ARRAY(it))
        return at_err_set(err, AT_ERR_INVALID, "profile: %s: expected an array of strings", key);
    bson_iter_t ai;
    if (!bson_iter_recurse(it, &ai))
        return at_err_set(err, AT_ERR_INVALID, "profile: %s: unreadable array", key);
    uint64_t n = 0, cap = 16;
    char **ids = calloc(cap, sizeof(*ids));
    if (ids == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "profile: out of memory");
    while (bson_iter_next(&ai)) {
        uint32_t len = 0;
        const char *s = BSON_ITER_HOLDS_UTF8(&ai) ? bson_iter_utf8(&ai, &len) : NULL;
        if (s == NULL || !valid_id(s, len)) {
            free_ids(ids, n);
            return at_err_set(err, AT_ERR_INVALID, "profile: %s[%llu]: expected 1-64 characters from [A-Za-z0-9._:-]",
                              key, (unsigned long long)n);
        }
        if (n == LT_PROFILE_MAX_IDS) {
            free_ids(ids, n);
            return at_err_set(err, AT_ERR_TOO_LARGE, "profile: %s: more than %llu ids", key, LT_PROFILE_MAX_IDS);
        }
        if (n == cap) {
            char **g = realloc(ids, 2 * cap * sizeof(*ids));
            if (g == NULL) {
                free_ids(ids, n);
                return at_err_set(err, AT_ERR_NOMEM, "profile: out of memory");
            }
            ids = g;
            cap *= 2;
        }
        ids[n] = strndup(s, len);
        if (ids[n] == NULL) {
            free_ids(ids, n);
            return at_err_set(err, AT_ERR_NOMEM, "profile: out of memory");
        }
        n++;
    }
    if (n == 0) {
        free(ids);
        return at_err_set(err, AT_ERR_INVALID, "profile: %s: expected at least one id", key);
    }
    free_ids(*out, *count);
    *out = ids;
    *count = n;
    return 0;
}

int lt_profile_parse(lt_profile_t *p, const char *json, size_t len, at_err_t *err)
{
    bson_error_t berr;
    bson_t doc;
    if (!bson_init_from_json(&doc, json, (ssize_t)len, &berr))
        return at_err_set(err, AT_ERR_INVALID, "profile: not a JSON object: %s", berr.message);
    bson_iter_t it;
    int rc = 0;
    if (!bson_iter_init(&it, &doc)) {
        bson_destroy(&doc);
        return at_err_set(err, AT_ERR_INVALID, "profile: unreadable document");
    }
    /* Explicit id lists decide the counts; read them first so "campaigns" cannot contradict. */
    bool have_cids = false, have_pids = false;
    bson_iter_t it2;
    if (bson_iter_init_find(&it2, &doc, "campaign_ids")) {
        if ((rc = get_ids(&it2, "campaign_ids", &p->campaign_ids, &p->campaigns, err)) < 0)
            goto out;
        have_cids = true;
    }
    if (bson_iter_init_find(&it2, &doc, "publisher_ids")) {
        if ((rc = get_ids(&it2, "publisher_ids", &p->publisher_ids, &p->publishers, err)) < 0)
            goto out;
        have_pids = true;
    }
    while (bson_iter_next(&it)) {
        const char *k = bson_iter_key(&it);
        if (strcmp(k, "seed") == 0) {
            rc = get_count(&it, k, 0, (1ULL << 53), &p->seed, err);
        } else if (strcmp(k, "campaigns") == 0) {
            if (have_cids)
                continue;
            free_ids(p->campaign_ids, p->campaigns);
            p->campaign_ids = NULL;
            rc = get_count(&it, k, 1, LT_PROFILE_MAX_IDS, &p->campaigns, err);
        } else if (strcmp(k, "publishers") == 0) {
            if (have_pids)
                continue;
            free_ids(p->publisher_ids, p->publishers);
            p->publisher_ids = NULL;
            rc = get_count(&it, k, 1, LT_PROFILE_MAX_IDS, &p->publishers, err);
        } else if (strcmp(k, "creatives_per_campaign") == 0) {
            rc = get_count(&it, k, 1, 1000, &p->creatives_per_campaign, err);
        } else if (strcmp(k, "placements_per_publisher") == 0) {
            rc = get_count(&it, k, 1, 1000, &p->placements_per_publisher, err);
        } else if (strcmp(k, "users") == 0) {
            rc = get_count(&it, k, 1, LT_PROFILE_MAX_ITEMS, &p->users, err);
        } else if (strcmp(k, "campaign_skew") == 0) {
            rc = get_real(&it, k, 0, 10, &p->campaign_skew, err);
        } else if (strcmp(k, "publisher_skew") == 0) {
            rc = get_real(&it, k, 0, 10, &p->publisher_skew, err);
        } else if (strcmp(k, "user_skew") == 0) {
            rc = get_real(&it, k, 0, 10, &p->user_skew, err);
        } else if (strcmp(k, "beacon_ratio") == 0) {
            rc = get_real(&it, k, 0, 1, &p->beacon_ratio, err);
        } else if (strcmp(k, "beacon_batch") == 0) {
            rc = get_count(&it, k, 1, 500, &p->beacon_batch, err);
        } else if (strcmp(k, "page_url") == 0) {
            rc = get_string(&it, k, &p->page_url, err);
        } else if (strcmp(k, "click_dest") == 0) {
            rc = get_string(&it, k, &p->click_dest, err);
        } else if (strcmp(k, "click_key") == 0) {
            rc = get_string(&it, k, &p->click_secret, err);
        } else if (strcmp(k, "mix") == 0) {
            bson_iter_t mi;
            if (!BSON_ITER_HOLDS_DOCUMENT(&it) || !bson_iter_recurse(&it, &mi)) {
                rc = at_err_set(err, AT_ERR_INVALID,
                                "profile: mix: expected an object like {\"imp\": 90, \"click\": 2}");
                goto out;
            }
            double mix[LT_EV_COUNT] = {0};
            while (rc == 0 && bson_iter_next(&mi)) {
                const char *mk = bson_iter_key(&mi);
                int e = -1;
                for (int j = 0; j < LT_EV_COUNT; j++)
                    if (strcmp(mk, ev_names[j]) == 0)
                        e = j;
                if (e < 0) {
                    rc = at_err_set(err, AT_ERR_INVALID,
                                    "profile: mix: unknown event type '%s' (expected imp, view, click, conv)", mk);
                    break;
                }
                char key[40];
                snprintf(key, sizeof(key), "mix.%s", mk);
                rc = get_real(&mi, key, 0, 1e12, &mix[e], err);
            }
            if (rc < 0)
                goto out;
            double sum = 0;
            for (int j = 0; j < LT_EV_COUNT; j++)
                sum += mix[j];
            if (sum <= 0) {
                rc = at_err_set(err, AT_ERR_INVALID, "profile: mix: the weights add up to 0");
                goto out;
            }
            for (int j = 0; j < LT_EV_COUNT; j++)
                p->mix[j] = mix[j];
        } else if (strcmp(k, "campaign_ids") == 0 || strcmp(k, "publisher_ids") == 0) {
            continue;
        } else {
            rc = at_err_set(err, AT_ERR_INVALID, "profile: unknown field '%s'", k);
        }
        if (rc < 0)
            goto out;
    }
out:
    bson_destroy(&doc);
    return rc;
}

int lt_profile_load(lt_profile_t *p, const char *path, at_err_t *err)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return at_err_set(err, AT_ERR_IO, "--profile: cannot open '%s': %s", path, strerror(errno));
    lt_buf_t b = {0};
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        lt_buf_append(&b, chunk, n);
        if (b.len > 64 * 1024 * 1024)
            break;
    }
    bool rerr = ferror(f) != 0;
    fclose(f);
    int rc;
    if (rerr || b.oom)
        rc = at_err_set(err, AT_ERR_IO, "--profile: cannot read '%s'", path);
    else if (b.len > 64 * 1024 * 1024)
        rc = at_err_set(err, AT_ERR_TOO_LARGE, "--profile: '%s' is larger than 64 MiB", path);
    else
        rc = lt_profile_parse(p, b.data ? b.data : "", b.len, err);
    lt_buf_free(&b);
    return rc;
}

int lt_profile_set_secret(lt_profile_t *p, const char *secret, at_err_t *err)
{
    free(p->click_secret);
    p->click_secret = NULL;
    if (secret == NULL || *secret == '\0')
        return 0;
    p->click_secret = strdup(secret);
    if (p->click_secret == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    return 0;
}

/* Appends @p tmpl with "{key}" replaced by @p val (other text copied as is). */
static void expand(lt_buf_t *b, const char *tmpl, const char *key, const char *val, const char *key2, const char *val2)
{
    const char *p = tmpl;
    while (*p) {
        const char *open = strchr(p, '{');
        if (open == NULL) {
            lt_buf_puts(b, p);
            return;
        }
        lt_buf_append(b, p, (size_t)(open - p));
        const char *close = strchr(open, '}');
        if (close == NULL) {
            lt_buf_puts(b, open);
            return;
        }
        size_t klen = (size_t)(close - open - 1);
        if (key && strlen(key) == klen && memcmp(open + 1, key, klen) == 0)
            lt_buf_puts(b, val);
        else if (key2 && strlen(key2) == klen && memcmp(open + 1, key2, klen) == 0)
            lt_buf_puts(b, val2);
        else
            lt_buf_append(b, open, (size_t)(close - open + 1));
        p = close + 1;
    }
}

static void campaign_id(const lt_profile_t *p, uint64_t k, char *out, size_t cap)
{
    if (p->campaign_ids)
        snprintf(out, cap, "%s", p->campaign_ids[k]);
    else
        snprintf(out, cap, "camp-%llu", (unsigned long long)k + 1);
}

static void publisher_id(const lt_profile_t *p, uint64_t k, char *out, size_t cap)
{
    if (p->publisher_ids)
        snprintf(out, cap, "%s", p->publisher_ids[k]);
    else
        snprintf(out, cap, "pub-%llu", (unsigned long long)k + 1);
}

int lt_profile_prepare(lt_profile_t *p, at_err_t *err)
{
    if (p->page_url == NULL && (p->page_url = strdup("https://{p}.example/article/{n}")) == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    if (p->click_dest == NULL && (p->click_dest = strdup("https://shop.example/landing/{c}")) == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    double sum = 0;
    for (int j = 0; j < LT_EV_COUNT; j++)
        sum += p->mix[j];
    if (sum <= 0)
        return at_err_set(err, AT_ERR_INVALID, "profile: mix: the weights add up to 0");
    for (int j = 0; j < LT_EV_COUNT; j++)
        p->mix[j] /= sum;
    lt_zipf_free(&p->zc);
    lt_zipf_free(&p->zp);
    lt_zipf_free(&p->zu);
    if (lt_zipf_init(&p->zc, p->campaigns, p->campaign_skew, err) < 0 ||
        lt_zipf_init(&p->zp, p->publishers, p->publisher_skew, err) < 0 ||
        lt_zipf_init(&p->zu, p->users, p->user_skew, err) < 0)
        return -1;
    free_ids(p->click_sigs, p->campaigns);
    free_ids(p->cids, p->campaigns);
    free_ids(p->pids, p->publishers);
    free_ids(p->page_pre, p->publishers);
    free_ids(p->page_post, p->publishers);
    p->click_sigs = calloc(p->campaigns, sizeof(char *));
    p->cids = calloc(p->campaigns, sizeof(char *));
    p->pids = calloc(p->publishers, sizeof(char *));
    p->page_pre = calloc(p->publishers, sizeof(char *));
    p->page_post = calloc(p->publishers, sizeof(char *));
    if (p->click_sigs == NULL || p->cids == NULL || p->pids == NULL || p->page_pre == NULL || p->page_post == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    /* Per-publisher page URL, percent-encoded once, split around the page number {n}. */
    const char *nmark = strstr(p->page_url, "{n}");
    size_t prelen = nmark ? (size_t)(nmark - p->page_url) : strlen(p->page_url);
    char *pre_t = strndup(p->page_url, prelen);
    const char *post_t = nmark ? nmark + 3 : "";
    if (pre_t == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    for (uint64_t k = 0; k < p->publishers; k++) {
        char pid[80];
        publisher_id(p, k, pid, sizeof(pid));
        lt_buf_t pre = {0}, post = {0}, enc = {0};
        expand(&pre, pre_t, "p", pid, NULL, NULL);
        expand(&post, post_t, "p", pid, NULL, NULL);
        p->pids[k] = strdup(pid);
        lt_buf_put_urlenc(&enc, pre.data ? pre.data : "", pre.len);
        p->page_pre[k] = strdup(enc.data ? enc.data : "");
        lt_buf_clear(&enc);
        lt_buf_put_urlenc(&enc, post.data ? post.data : "", post.len);
        p->page_post[k] = strdup(enc.data ? enc.data : "");
        bool bad = pre.oom || post.oom || enc.oom || !p->pids[k] || !p->page_pre[k] || !p->page_post[k];
        lt_buf_free(&pre);
        lt_buf_free(&post);
        lt_buf_free(&enc);
        if (bad) {
            free(pre_t);
            return at_err_set(err, AT_ERR_NOMEM, "out of memory");
        }
    }
    free(pre_t);
    lt_buf_t d = {0}, q = {0};
    for (uint64_t k = 0; k < p->campaigns; k++) {
        char cid[80];
        campaign_id(p, k, cid, sizeof(cid));
        if ((p->cids[k] = strdup(cid)) == NULL) {
            lt_buf_free(&d);
            lt_buf_free(&q);
            return at_err_set(err, AT_ERR_NOMEM, "out of memory");
        }
        lt_buf_clear(&d);
        lt_buf_clear(&q);
        expand(&d, p->click_dest, "c", cid, NULL, NULL);
        lt_buf_puts(&q, "&d=");
        lt_buf_put_urlenc(&q, d.data ? d.data : "", d.len);
        if (p->click_secret) {
            char sig[AT_HMAC_SIG_LEN + 1];
            at_hmac_sign(p->click_secret, strlen(p->click_secret), d.data ? d.data : "", d.len, sig);
            lt_buf_puts(&q, "&sig=");
            lt_buf_puts(&q, sig);
        }
        if (q.oom || (p->click_sigs[k] = strdup(q.data)) == NULL) {
            lt_buf_free(&d);
            lt_buf_free(&q);
            return at_err_set(err, AT_ERR_NOMEM, "out of memory");
        }
    }
    lt_buf_free(&d);
    lt_buf_free(&q);
    return 0;
}

/* The fields of one synthetic event. */
typedef struct gen_event_s {
    int type;
    uint64_t c, cr, p, pl, uid, page;
    const char *cid, *pid;
} gen_event_t;

static void gen_event(const lt_profile_t *p, lt_rng_t *r, gen_event_t *e)
{
    double u = lt_rng_double(r), acc = 0;
    e->type = LT_EV_CONV;
    for (int j = 0; j < LT_EV_COUNT; j++) {
        acc += p->mix[j];
        if (u < acc) {
            e->type = j;
            break;
        }
    }
    e->c = lt_zipf_sample(&p->zc, r);
    e->cr = lt_rng_below(r, p->creatives_per_campaign);
    e->p = lt_zipf_sample(&p->zp, r);
    e->pl = lt_rng_below(r, p->placements_per_publisher);
    e->uid = lt_zipf_sample(&p->zu, r);
    e->page = lt_rng_below(r, 1000);
    e->cid = p->cids[e->c];
    e->pid = p->pids[e->p];
}

static void page_url(const lt_profile_t *p, const gen_event_t *e, lt_buf_t *out)
{
    char n[24];
    snprintf(n, sizeof(n), "%llu", (unsigned long long)e->page);
    expand(out, p->page_url, "p", e->pid, "n", n);
}

static char *put_str(char *o, const char *s)
{
    size_t n = strlen(s);
    memcpy(o, s, n);
    return o + n;
}

static char *put_u64(char *o, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *o++ = tmp[--n];
    return o;
}

unsigned lt_profile_request(const lt_profile_t *p, uint64_t i, const char *tag, const char **method, lt_buf_t *target,
                            lt_buf_t *body, lt_buf_t *scratch)
{
    lt_rng_t r;
    lt_rng_seed(&r, p->seed * 0x9e3779b97f4a7c15ULL ^ (i + 1) * 0xd1b54a32d192ed03ULL);
    lt_buf_clear(target);
    lt_buf_clear(body);
    lt_buf_t *ub = scratch;
    gen_event_t e;
    if (p->beacon_ratio > 0 && lt_rng_double(&r) < p->beacon_ratio) {
        *method = "POST";
        lt_buf_puts(target, "/v1/events");
        lt_buf_putc(body, '[');
        for (uint64_t k = 0; k < p->beacon_batch; k++) {
            gen_event(p, &r, &e);
            if (e.type == LT_EV_CLICK)
                e.type = LT_EV_VIEW; /* clicks go through /c, which signs the destination */
            lt_buf_clear(ub);
            page_url(p, &e, ub);
            lt_buf_printf(body,
                          "%s{\"e\":\"%s\",\"c\":\"%s\",\"cr\":\"cr-%llu-%llu\",\"p\":\"%s\",\"pl\":\"pl-%llu-%llu\","
                          "\"uid\":\"u-%llu\",\"u\":\"",
                          k ? "," : "", ev_names[e.type], e.cid, (unsigned long long)e.c + 1,
                          (unsigned long long)e.cr + 1, e.pid, (unsigned long long)e.p + 1,
                          (unsigned long long)e.pl + 1, (unsigned long long)e.uid + 1);
            lt_buf_put_jsonstr(body, ub->data ? ub->data : "", ub->len);
            lt_buf_putc(body, '"');
            if (tag) {
                lt_buf_puts(body, ",\"tag\":\"");
                lt_buf_put_jsonstr(body, tag, strlen(tag));
                lt_buf_putc(body, '"');
            }
            lt_buf_putc(body, '}');
        }
        lt_buf_putc(body, ']');
        return (unsigned)p->beacon_batch;
    }
    gen_event(p, &r, &e);
    *method = "GET";
    /* The hot path: no printf, every piece precomputed or a plain integer. */
    const char *sig = e.type == LT_EV_CLICK ? p->click_sigs[e.c] : "";
    size_t need =
        160 + strlen(e.cid) + strlen(e.pid) + strlen(p->page_pre[e.p]) + strlen(p->page_post[e.p]) + strlen(sig);
    if (lt_buf_reserve(target, need) < 0)
        return 1;
    char *o = target->data + target->len;
    o = put_str(o, e.type == LT_EV_CLICK ? "/c?e=click" : "/t.gif?e=");
    if (e.type != LT_EV_CLICK)
        o = put_str(o, ev_names[e.type]);
    o = put_str(o, "&c=");
    o = put_str(o, e.cid);
    o = put_str(o, "&cr=cr-");
    o = put_u64(o, e.c + 1);
    *o++ = '-';
    o = put_u64(o, e.cr + 1);
    o = put_str(o, "&p=");
    o = put_str(o, e.pid);
    o = put_str(o, "&pl=pl-");
    o = put_u64(o, e.p + 1);
    *o++ = '-';
    o = put_u64(o, e.pl + 1);
    o = put_str(o, "&uid=u-");
    o = put_u64(o, e.uid + 1);
    o = put_str(o, "&u=");
    o = put_str(o, p->page_pre[e.p]);
    o = put_u64(o, e.page);
    o = put_str(o, p->page_post[e.p]);
    o = put_str(o, sig);
    o = put_str(o, "&cb=");
    uint64_t cbv = lt_rng_next(&r);
    static const char hex[] = "0123456789abcdef";
    for (int k = 7; k >= 0; k--)
        *o++ = hex[(cbv >> (4 * k)) & 15];
    *o = '\0';
    target->len = (size_t)(o - target->data);
    return 1;
}
