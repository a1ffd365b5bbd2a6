/*
 * dash_model.c: see dash_model.h.
 */
#include "dash_model.h"

#include <bson/bson.h>
#include <math.h>
#include <stdlib.h>
#include <time.h>

#include "at_json.h"
#include "dash_buf.h"

typedef struct dash_target_s {
    char name[64];
    char url[512];
    bool scraped; /* at least one attempt */
    bool up;
    char error[160];
    dash_health_t h, prev;
    int64_t prev_ms;
    bool has_prev;
    double req_rate, enr_rate; /* NaN until two readings */
} dash_target_t;

struct dash_model_s {
    dash_model_opts_t o;
    dash_campaign_t **campaigns; /* sorted by id; owned */
    size_t ncampaigns;
    bool truncated;
    char reasons[DASH_REASONS_MAX][DASH_REASON_NAME_MAX]; /* the last slot is "other" */
    size_t nreasons;
    float *history; /* ring of total events/s, NaN = unknown */
    size_t hist_head, hist_count;
    int64_t now_ms, last_ok_ms;
    bool polled;
    bool redis_up;
    char redis_error[160];
    uint64_t seq;
    dash_target_t targets[DASH_TARGETS_MAX];
    size_t ntargets;
};

static const char *const field_names[DASH_F__COUNT] = {"events", "imp", "view", "click", "conv", "rejected", "spend"};

static void copy_str(char *dst, size_t size, const char *src, size_t len)
{
    size_t n = AT_MIN(len, size - 1);
    /* never cut a UTF-8 sequence in half */
    while (n > 0 && n < len && ((unsigned char)src[n] & 0xC0) == 0x80)
        n--;
    memcpy(dst, src, n);
    dst[n] = '\0';
}

dash_model_t *dash_model_new(const dash_model_opts_t *o)
{
    dash_model_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->o = *o;
    if (m->o.window_min < 1)
        m->o.window_min = 1;
    if (m->o.history_len < 2)
        m->o.history_len = 2;
    m->campaigns = calloc(m->o.max_campaigns + 1, sizeof(*m->campaigns));
    m->history = calloc(m->o.history_len, sizeof(*m->history));
    if (m->campaigns == NULL || m->history == NULL) {
        dash_model_destroy(m);
        return NULL;
    }
    return m;
}

static void campaign_free(dash_campaign_t *c)
{
    if (c != NULL)
        free(c->buckets);
    free(c);
}

void dash_model_destroy(dash_model_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; m->campaigns != NULL && i < m->ncampaigns; i++)
        campaign_free(m->campaigns[i]);
    free(m->campaigns);
    free(m->history);
    free(m);
}

int dash_model_add_target(dash_model_t *m, const char *name, const char *url)
{
    if (m->ntargets == DASH_TARGETS_MAX)
        return -1;
    dash_target_t *t = &m->targets[m->ntargets++];
    memset(t, 0, sizeof(*t));
    copy_str(t->name, sizeof(t->name), name, strlen(name));
    copy_str(t->url, sizeof(t->url), url, strlen(url));
    t->req_rate = t->enr_rate = NAN;
    return 0;
}

size_t dash_model_ntargets(const dash_model_t *m)
{
    return m->ntargets;
}

const char *dash_model_target_url(const dash_model_t *m, size_t i)
{
    return i < m->ntargets ? m->targets[i].url : NULL;
}

bool dash_model_redis_up(const dash_model_t *m)
{
    return m->redis_up;
}

void dash_model_begin(dash_model_t *m, int64_t now_ms)
{
    m->now_ms = now_ms;
    m->truncated = false;
    for (size_t i = 0; i < m->ncampaigns; i++) {
        m->campaigns[i]->seen = false;
        m->campaigns[i]->delta_events = 0;
    }
}

/* Binary search; returns the index of @p id or where it would go (*found says which). */
static size_t campaign_pos(const dash_model_t *m, const char *id, bool *found)
{
    size_t lo = 0, hi = m->ncampaigns;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(m->campaigns[mid]->id, id);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

dash_campaign_t *dash_model_find(dash_model_t *m, const char *id)
{
    bool found;
    size_t i = campaign_pos(m, id, &found);
    return found ? m->campaigns[i] : NULL;
}

static bool id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > DASH_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = id[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
              ch == '_' || ch == ':' || ch == '-'))
            return false;
    }
    return true;
}

dash_campaign_t *dash_model_campaign(dash_model_t *m, const char *id)
{
    bool found;
    if (!id_valid(id))
        return NULL;
    size_t pos = campaign_pos(m, id, &found);
    if (found) {
        m->campaigns[pos]->seen = true;
        return m->campaigns[pos];
    }
    if (m->ncampaigns >= m->o.max_campaigns) {
        m->truncated = true;
        return NULL;
    }
    dash_campaign_t *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->buckets = calloc((size_t)m->o.window_min, sizeof(*c->buckets));
    if (c->buckets == NULL) {
        free(c);
        return NULL;
    }
    memcpy(c->id, id, strlen(id) + 1);
    snprintf(c->status, sizeof(c->status), "unknown");
    c->version = -1;
    c->events_per_s = NAN;
    c->seen = true;
    memmove(&m->campaigns[pos + 1], &m->campaigns[pos], (m->ncampaigns - pos) * sizeof(*m->campaigns));
    m->campaigns[pos] = c;
    m->ncampaigns++;
    return c;
}

static void doc_str(bson_iter_t *it, const char *key, char *dst, size_t size)
{
    bson_iter_t f;
    uint32_t len;
    if (bson_iter_find_descendant(it, key, &f) && BSON_ITER_HOLDS_UTF8(&f)) {
        const char *s = bson_iter_utf8(&f, &len);
        copy_str(dst, size, s, len);
    }
}

static int64_t doc_int(bson_iter_t *it, const char *key, int64_t def)
{
    bson_iter_t f;
    if (bson_iter_find_descendant(it, key, &f) && (BSON_ITER_HOLDS_NUMBER(&f)))
        return bson_iter_as_int64(&f);
    return def;
}

void dash_model_campaign_meta(dash_campaign_t *c, int64_t version, bool deleted, const char *doc, size_t doclen)
{
    c->deleted = deleted;
    if (deleted || doc == NULL || version == c->version)
        return;
    at_err_t err;
    bson_t *b = at_json_parse_single(doc, doclen, '{', "doc", "a JSON object", &err);
    if (b == NULL)
        return; /* keep what we had; the next version may be readable */
    bson_iter_t it;
    c->version = version;
    c->name[0] = c->advertiser[0] = c->pricing[0] = '\0';
    snprintf(c->status, sizeof(c->status), "unknown");
    if (bson_iter_init(&it, b)) {
        doc_str(&it, "name", c->name, sizeof(c->name));
        bson_iter_init(&it, b);
        doc_str(&it, "advertiser_name", c->advertiser, sizeof(c->advertiser));
        bson_iter_init(&it, b);
        doc_str(&it, "status", c->status, sizeof(c->status));
        bson_iter_init(&it, b);
        doc_str(&it, "pricing", c->pricing, sizeof(c->pricing));
        bson_iter_init(&it, b);
        c->budget_micros = doc_int(&it, "budget_micros", 0);
        bson_iter_init(&it, b);
        c->price_micros = doc_int(&it, "price_micros", 0);
    }
    bson_destroy(b);
}

void dash_model_campaign_spend(dash_campaign_t *c, int64_t spend_micros, bool exhausted)
{
    c->spend_micros = spend_micros;
    c->exhausted = exhausted;
}

static bool reason_valid(const char *r)
{
    size_t n = strlen(r);
    if (n == 0 || n >= DASH_REASON_NAME_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((r[i] >= 'a' && r[i] <= 'z') || (r[i] >= '0' && r[i] <= '9') || r[i] == '_' || r[i] == '-'))
            return false;
    return true;
}

/* Index of reason @p r in the table, adding it while there is room; the last slot is
 * "other" for everything that does not fit or is not a plain name. */
static size_t reason_index(dash_model_t *m, const char *r)
{
    const char *name = reason_valid(r) ? r : "other";
    for (size_t i = 0; i < m->nreasons; i++)
        if (strcmp(m->reasons[i], name) == 0)
            return i;
    size_t i = m->nreasons < DASH_REASONS_MAX - 1 ? m->nreasons : DASH_REASONS_MAX - 1;
    if (i == DASH_REASONS_MAX - 1)
        name = "other";
    if (i == m->nreasons) {
        snprintf(m->reasons[i], sizeof(m->reasons[i]), "%s", name);
        m->nreasons++;
    }
    return i;
}

static int64_t parse_count(const char *v)
{
    char *e = NULL;
    long long n = strtoll(v, &e, 10);
    return (e != v && n > 0) ? (int64_t)n : 0;
}

void dash_model_campaign_stats(dash_model_t *m, dash_campaign_t *c, int64_t minute, const char *const *fields,
                               const char *const *values, size_t n)
{
    dash_bucket_t *b = &c->buckets[(size_t)(minute % m->o.window_min)];
    int64_t old_events = b->minute == minute ? b->c.f[DASH_F_EVENTS] : 0;
    dash_counts_t cnt;
    memset(&cnt, 0, sizeof(cnt));
    for (size_t i = 0; i < n; i++) {
        const char *f = fields[i];
        if (strncmp(f, "rejected:", 9) == 0) {
            cnt.reason[reason_index(m, f + 9)] += parse_count(values[i]);
            continue;
        }
        for (int k = 0; k < DASH_F__COUNT; k++)
            if (strcmp(f, field_names[k]) == 0)
                cnt.f[k] = parse_count(values[i]);
    }
    int64_t now_events = cnt.f[DASH_F_EVENTS];
    c->delta_events += now_events >= old_events ? now_events - old_events : now_events;
    b->minute = minute;
    b->c = cnt;
}

static void ring_push(float *ring, size_t cap, size_t *head, size_t *count, double v)
{
    ring[*head] = (float)v;
    *head = (*head + 1) % cap;
    if (*count < cap)
        (*count)++;
}

void dash_model_end(dash_model_t *m, bool redis_ok, const char *error)
{
    m->seq++;
    m->polled = true;
    m->redis_up = redis_ok;
    if (!redis_ok) {
        snprintf(m->redis_error, sizeof(m->redis_error), "%s", error != NULL ? error : "unavailable");
        for (size_t i = 0; i < m->ncampaigns; i++) {
            dash_campaign_t *c = m->campaigns[i];
            c->events_per_s = NAN;
            ring_push(c->spark, DASH_SPARK_MAX, &c->spark_head, &c->spark_count, NAN);
        }
        ring_push(m->history, m->o.history_len, &m->hist_head, &m->hist_count, NAN);
        return;
    }
    m->redis_error[0] = '\0';
    /* Campaigns gone from the set, or tombstoned, leave the dashboard. */
    size_t keep = 0;
    for (size_t i = 0; i < m->ncampaigns; i++) {
        dash_campaign_t *c = m->campaigns[i];
        if (!c->seen || c->deleted)
            campaign_free(c);
        else
            m->campaigns[keep++] = c;
    }
    m->ncampaigns = keep;

    double dt = m->last_ok_ms > 0 ? (double)(m->now_ms - m->last_ok_ms) / 1000.0 : 0;
    double total = 0;
    bool any = false;
    for (size_t i = 0; i < m->ncampaigns; i++) {
        dash_campaign_t *c = m->campaigns[i];
        if (c->polled_before && dt > 0) {
            c->events_per_s = (double)c->delta_events / dt;
            total += c->events_per_s;
            any = true;
        } else {
            c->events_per_s = NAN;
        }
        ring_push(c->spark, DASH_SPARK_MAX, &c->spark_head, &c->spark_count, c->events_per_s);
        c->polled_before = true;
    }
    /* With no campaign at all, the pipeline is idle rather than unknown. */
    if (!any && m->ncampaigns == 0 && dt > 0)
        any = true;
    ring_push(m->history, m->o.history_len, &m->hist_head, &m->hist_count, any ? total : NAN);
    m->last_ok_ms = m->now_ms;
}

void dash_model_target(dash_model_t *m, size_t i, bool up, const char *text, size_t len, const char *error,
                       int64_t now_ms)
{
    if (i >= m->ntargets)
        return;
    dash_target_t *t = &m->targets[i];
    t->scraped = true;
    t->up = up;
    if (!up) {
        snprintf(t->error, sizeof(t->error), "%s", error != NULL ? error : "down");
        t->has_prev = false;
        t->req_rate = t->enr_rate = NAN;
        return;
    }
    t->error[0] = '\0';
    dash_health_extract(text, len, &t->h);
    if (t->has_prev) {
        double dt = (double)(now_ms - t->prev_ms) / 1000.0;
        t->req_rate = dash_rate(t->prev.requests_total, t->h.requests_total, dt);
        t->enr_rate = dash_rate(t->prev.enr_events_total, t->h.enr_events_total, dt);
    }
    t->prev = t->h;
    t->prev_ms = now_ms;
    t->has_prev = true;
}

int64_t dash_minute_of_ms(int64_t ms)
{
    return ms >= 0 ? ms / 60000 : (ms - 59999) / 60000;
}

/* ---- JSON ---- */

static void key(dash_buf_t *b, const char *k)
{
    dash_buf_json_str(b, k, strlen(k));
    dash_buf_append(b, ":", 1);
}

static void kv_str(dash_buf_t *b, const char *k, const char *v)
{
    key(b, k);
    dash_buf_json_str(b, v, strlen(v));
    dash_buf_append(b, ",", 1);
}

static void kv_num(dash_buf_t *b, const char *k, double v)
{
    key(b, k);
    dash_buf_json_num(b, v);
    dash_buf_append(b, ",", 1);
}

static void kv_bool(dash_buf_t *b, const char *k, bool v)
{
    key(b, k);
    dash_buf_str(b, v ? "true," : "false,");
}

/* Replaces a trailing comma (if any) with @p close. */
static void close_with(dash_buf_t *b, char close)
{
    if (!b->failed && b->len > 0 && b->p[b->len - 1] == ',') {
        b->p[b->len - 1] = close;
        return;
    }
    dash_buf_append(b, &close, 1);
}

static void ring_json(dash_buf_t *b, const float *ring, size_t cap, size_t head, size_t count, size_t want)
{
    dash_buf_append(b, "[", 1);
    /* Always @p want points, oldest first, unknown (and not yet recorded) as null, so the
     * charts keep a fixed time axis. */
    for (size_t i = 0; i < want; i++) {
        size_t back = want - i; /* 1 = newest */
        double v = NAN;
        if (back <= count)
            v = ring[(head + cap - back) % cap];
        if (i > 0)
            dash_buf_append(b, ",", 1);
        dash_buf_json_num(b, v);
    }
    dash_buf_append(b, "]", 1);
}

static void window_sum(const dash_model_t *m, const dash_campaign_t *c, dash_counts_t *out)
{
    int64_t now_min = dash_minute_of_ms(m->now_ms);
    memset(out, 0, sizeof(*out));
    for (int i = 0; i < m->o.window_min; i++) {
        const dash_bucket_t *b = &c->buckets[i];
        /* one minute of slack for clocks slightly ahead */
        if (b->minute == 0 || b->minute <= now_min - m->o.window_min || b->minute > now_min + 1)
            continue;
        for (int k = 0; k < DASH_F__COUNT; k++)
            out->f[k] += b->c.f[k];
        for (int k = 0; k < DASH_REASONS_MAX; k++)
            out->reason[k] += b->c.reason[k];
    }
}

static void counts_json(dash_buf_t *b, const dash_model_t *m, const dash_counts_t *s)
{
    for (int k = 0; k < DASH_F__COUNT; k++)
        kv_num(b, field_names[k], (double)s->f[k]);
    kv_num(b, "ctr", s->f[DASH_F_IMP] > 0 ? (double)s->f[DASH_F_CLICK] / (double)s->f[DASH_F_IMP] : NAN);
    key(b, "rejected_by_reason");
    dash_buf_append(b, "{", 1);
    for (size_t r = 0; r < m->nreasons; r++)
        if (s->reason[r] > 0)
            kv_num(b, m->reasons[r], (double)s->reason[r]);
    close_with(b, '}');
    dash_buf_append(b, ",", 1);
}

static void campaign_json(dash_buf_t *b, const dash_model_t *m, const dash_campaign_t *c, dash_counts_t *tot)
{
    dash_counts_t s;
    window_sum(m, c, &s);
    for (int k = 0; k < DASH_F__COUNT; k++)
        tot->f[k] += s.f[k];
    for (int k = 0; k < DASH_REASONS_MAX; k++)
        tot->reason[k] += s.reason[k];
    dash_buf_append(b, "{", 1);
    kv_str(b, "id", c->id);
    kv_str(b, "name", c->name[0] ? c->name : c->id);
    kv_str(b, "advertiser", c->advertiser);
    kv_str(b, "status", c->status);
    kv_str(b, "pricing", c->pricing);
    kv_num(b, "version", (double)c->version);
    kv_num(b, "price_micros", (double)c->price_micros);
    kv_num(b, "budget_micros", (double)c->budget_micros);
    kv_num(b, "spend_micros", (double)c->spend_micros);
    kv_num(b, "budget_used", c->budget_micros > 0 ? (double)c->spend_micros / (double)c->budget_micros : NAN);
    kv_bool(b, "exhausted", c->exhausted);
    kv_num(b, "events_per_s", c->events_per_s);
    counts_json(b, m, &s);
    key(b, "spark");
    ring_json(b, c->spark, DASH_SPARK_MAX, c->spark_head, c->spark_count, DASH_SPARK_MAX);
    dash_buf_append(b, "}", 1);
}

static void pipeline_json(dash_buf_t *b, const dash_model_t *m)
{
    double spool = 0, lag = 0, enr_rate = 0, req_rate = 0;
    bool any_lag = false, spool_active = false, any_collector = false, any_enricher = false;
    size_t up = 0, down = 0, paused = 0;
    key(b, "pipeline");
    dash_buf_append(b, "{", 1);
    key(b, "targets");
    dash_buf_append(b, "[", 1);
    for (size_t i = 0; i < m->ntargets; i++) {
        const dash_target_t *t = &m->targets[i];
        const dash_health_t *h = &t->h;
        if (t->up)
            up++;
        else
            down++;
        if (i > 0)
            dash_buf_append(b, ",", 1);
        dash_buf_append(b, "{", 1);
        kv_str(b, "name", t->name);
        kv_str(b, "url", t->url);
        kv_bool(b, "up", t->up);
        kv_str(b, "kind", !t->up ? "unknown" : h->collector ? "collector" : h->enricher ? "enricher" : "other");
        if (!t->up) {
            kv_str(b, "error", t->scraped ? t->error : "not scraped yet");
        } else if (h->collector) {
            any_collector = true;
            spool += h->spool_bytes;
            spool_active = spool_active || h->spool_active > 0;
            if (isfinite(t->req_rate))
                req_rate += t->req_rate;
            kv_num(b, "spool_bytes", h->spool_bytes);
            kv_bool(b, "spool_active", h->spool_active > 0);
            kv_bool(b, "kafka_reachable", h->kafka_reachable > 0);
            kv_num(b, "requests_per_s", t->req_rate);
        } else if (h->enricher) {
            any_enricher = true;
            if (isfinite(t->enr_rate))
                enr_rate += t->enr_rate;
            if (h->enr_paused > 0)
                paused++;
            if (h->has_lag) {
                any_lag = true;
                lag += h->consumer_lag;
            }
            kv_num(b, "events_per_s", t->enr_rate);
            kv_bool(b, "paused", h->enr_paused > 0);
            kv_bool(b, "ready", h->enr_ready > 0);
            kv_num(b, "consumer_lag", h->has_lag ? h->consumer_lag : NAN);
        }
        close_with(b, '}');
    }
    dash_buf_append(b, "],", 2);
    kv_num(b, "up", (double)up);
    kv_num(b, "down", (double)down);
    kv_num(b, "spool_bytes", any_collector ? spool : NAN);
    kv_bool(b, "spool_active", spool_active);
    kv_num(b, "collector_requests_per_s", any_collector ? req_rate : NAN);
    kv_num(b, "enricher_events_per_s", any_enricher ? enr_rate : NAN);
    kv_num(b, "enrichers_paused", (double)paused);
    kv_num(b, "consumer_lag", any_lag ? lag : NAN);
    close_with(b, '}');
}

char *dash_model_json(const dash_model_t *m, size_t max, size_t *len)
{
    dash_buf_t b;
    dash_buf_init(&b, max);
    dash_buf_append(&b, "{", 1);
    kv_num(&b, "v", 1);
    kv_num(&b, "seq", (double)m->seq);
    kv_num(&b, "ts_ms", (double)m->now_ms);
    kv_num(&b, "poll_ms", (double)m->o.poll_ms);
    kv_num(&b, "window_min", m->o.window_min);
    key(&b, "redis");
    dash_buf_append(&b, "{", 1);
    kv_bool(&b, "up", m->redis_up);
    if (!m->redis_up)
        kv_str(&b, "error", m->polled ? m->redis_error : "not polled yet");
    close_with(&b, '}');
    dash_buf_append(&b, ",", 1);
    kv_bool(&b, "truncated", m->truncated);

    dash_counts_t tot;
    memset(&tot, 0, sizeof(tot));
    double rate = 0;
    bool rate_known = false;
    key(&b, "campaigns");
    dash_buf_append(&b, "[", 1);
    for (size_t i = 0; i < m->ncampaigns; i++) {
        if (i > 0)
            dash_buf_append(&b, ",", 1);
        campaign_json(&b, m, m->campaigns[i], &tot);
        if (isfinite(m->campaigns[i]->events_per_s)) {
            rate += m->campaigns[i]->events_per_s;
            rate_known = true;
        }
    }
    dash_buf_append(&b, "],", 2);
    key(&b, "totals");
    dash_buf_append(&b, "{", 1);
    kv_num(&b, "events_per_s", rate_known ? rate : (m->ncampaigns == 0 && m->redis_up ? 0 : NAN));
    kv_num(&b, "campaigns", (double)m->ncampaigns);
    counts_json(&b, m, &tot);
    close_with(&b, '}');
    dash_buf_append(&b, ",", 1);
    key(&b, "history");
    dash_buf_append(&b, "{", 1);
    kv_num(&b, "step_ms", (double)m->o.poll_ms);
    key(&b, "events_per_s");
    ring_json(&b, m->history, m->o.history_len, m->hist_head, m->hist_count, m->o.history_len);
    dash_buf_append(&b, "},", 2);
    pipeline_json(&b, m);
    dash_buf_append(&b, "}", 1);
    return dash_buf_steal(&b, len);
}

/* ---- change events ---- */

char *dash_change_json(const char *raw, size_t len, int64_t now_ms, size_t *outlen)
{
    at_err_t err;
    bson_t *doc = at_json_parse_single(raw, len, '{', "change", "a JSON object", &err);
    if (doc == NULL)
        return NULL;
    char kind[32] = "", id[DASH_ID_MAX + 1] = "", op[32] = "", status[16] = "", name[128] = "";
    int64_t version = -1;
    bson_iter_t it;
    bson_iter_init(&it, doc);
    doc_str(&it, "kind", kind, sizeof(kind));
    bson_iter_init(&it, doc);
    doc_str(&it, "id", id, sizeof(id));
    bson_iter_init(&it, doc);
    doc_str(&it, "op", op, sizeof(op));
    bson_iter_init(&it, doc);
    version = doc_int(&it, "version", -1);
    bson_iter_init(&it, doc);
    doc_str(&it, "doc.status", status, sizeof(status));
    bson_iter_init(&it, doc);
    doc_str(&it, "doc.name", name, sizeof(name));
    bson_destroy(doc);
    if (kind[0] == '\0' || id[0] == '\0')
        return NULL;

    dash_buf_t b;
    dash_buf_init(&b, 4096);
    dash_buf_append(&b, "{", 1);
    kv_str(&b, "kind", kind);
    kv_str(&b, "id", id);
    kv_str(&b, "op", op);
    kv_num(&b, "version", (double)version);
    if (status[0])
        kv_str(&b, "status", status);
    if (name[0])
        kv_str(&b, "name", name);
    kv_num(&b, "ts_ms", (double)now_ms);
    close_with(&b, '}');
    return dash_buf_steal(&b, outlen);
}
