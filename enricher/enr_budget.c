/*
 * enr_budget.c: the charge script and its call (see enr_budget.h).
 *
 * The arguments (laid out above enr_budget_script) carry each charge's event id and a
 * class number; a class is what charges share (campaign, day, minute, type, price,
 * budget), sent once. Keys are built inside the script, so it needs one Redis (not a
 * cluster with the keys spread over slots); see docs/ENRICHER.md.
 *
 * Redis commands inside the script per batch: HMGET + HSET + EXPIRE per (campaign, day),
 * GET + EXISTS + INCRBY per charged campaign, HINCRBY per (campaign, minute, field) and
 * EXPIRE per (campaign, minute): independent of the number of events.
 * Integers travel as Lua numbers (doubles): exact up to 2^53 micros (9e9 currency units).
 */
#include "enr_budget.h"
#include "at_time.h"

#include <stdlib.h>
#include <time.h>

/*
 * ARGV: [1] charge-record TTL seconds, [2] counter TTL seconds, [3] k = number of charge
 * classes, then 6 values per class (campaign, yyyymmdd, yyyymmddHHMM, type field, price,
 * budget), then all event ids of the batch's charges in batch order, packed (36 bytes
 * each), then their class numbers, packed (2 bytes each, big-endian, from 1), then the
 * number of counter increments and 4 values each (campaign, yyyymmddHHMM, field, n).
 * Returns {verdicts, published}: one character per charge in batch order, '0' charged,
 * '1' already charged, '2' refused.
 *
 * The charges are decided one by one in batch order, exactly as when every charge carried
 * its own 7 arguments: the classes only stop a batch from sending (and Redis from turning
 * into Lua strings) the campaign, day, minute, type, price and budget once per event. That
 * was most of the script's time (about 5 ms per 1000 charges, on the worker's critical
 * path). tests/it/test_enr_budget.c runs the former script as a reference.
 */
const char enr_budget_script[] =
    "local tonumber, sbyte, ssub, call, unpack, fmt = tonumber, string.byte, string.sub, redis.call, unpack, string.format\n"
    "local win = tonumber(ARGV[1])\n"
    "local sttl = tonumber(ARGV[2])\n"
    "local nk = tonumber(ARGV[3])\n"
    "local K = 6\n"
    "local ids, cls = ARGV[4 + nk * K], ARGV[5 + nk * K]\n"
    "local n = #cls / 2\n"
    /* Globals looked up once; counters instead of the # operator; numeric loops. */
    /* HMGET / HSET with at most 1000 arguments per call (Lua's unpack limit). */
    "local function hmget(key, list, cnt)\n"
    "  if cnt <= 1000 then return call('HMGET', key, unpack(list, 1, cnt)) end\n"
    "  local out, o = {}, 0\n"
    "  for s = 1, cnt, 1000 do\n"
    "    local r = call('HMGET', key, unpack(list, s, math.min(s + 999, cnt)))\n"
    "    for j = 1, #r do out[o + j] = r[j] end\n"
    "    o = o + #r\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "local function hset(key, list, cnt)\n"
    "  for s = 1, cnt, 1000 do call('HSET', key, unpack(list, s, math.min(s + 999, cnt))) end\n"
    "end\n"
    "local stats, skeys, nskeys = {}, {}, 0\n"
    "local function st(k, f, v)\n"
    "  if v == 0 then return end\n"
    "  local t = stats[k]\n"
    "  if t == nil then t = {}; stats[k] = t; nskeys = nskeys + 1; skeys[nskeys] = k end\n"
    "  t[f] = (t[f] or 0) + v\n"
    "end\n"
    /* Per class: campaign, price, budget, counters; its group = its charge-record key. */
    "local kc, kg, ksk, ktf, kprice, kbudget = {}, {}, {}, {}, {}, {}\n"
    "local kn, kok, kx, kspend = {}, {}, {}, {}\n"
    "local gkey, gnum, ng = {}, {}, 0\n"
    "for k = 1, nk do\n"
    "  local b = 3 + (k - 1) * K\n"
    "  local c = ARGV[b + 1]\n"
    "  kc[k] = c\n"
    "  local ck = 'adtrack:charged:' .. c .. ':' .. ARGV[b + 2]\n"
    "  local g = gnum[ck]\n"
    "  if g == nil then ng = ng + 1; g = ng; gnum[ck] = g; gkey[g] = ck end\n"
    "  kg[k] = g\n"
    "  ksk[k] = 'adtrack:stats:' .. c .. ':' .. ARGV[b + 3]\n"
    "  ktf[k] = ARGV[b + 4]\n"
    "  kprice[k], kbudget[k] = tonumber(ARGV[b + 5]), tonumber(ARGV[b + 6])\n"
    "  kn[k], kok[k], kx[k], kspend[k] = 0, 0, 0, 0\n"
    "end\n"
    "local glist, gcnt = {}, {}\n"
    "for g = 1, ng do glist[g] = {}; gcnt[g] = 0 end\n"
    "local ek, eid = {}, {}\n"
    "for i = 1, n do\n"
    "  local hi, lo = sbyte(cls, 2 * i - 1, 2 * i)\n"
    "  local k = hi * 256 + lo\n"
    "  ek[i] = k\n"
    "  eid[i] = ssub(ids, 36 * i - 35, 36 * i)\n"
    "  local g = kg[k]\n"
    "  local c = gcnt[g] + 1\n"
    "  gcnt[g] = c\n"
    "  glist[g][c] = i\n"
    "end\n"
    /* Earlier verdicts: one HMGET per charge-record key. */
    "local prev = {}\n"
    "for g = 1, ng do\n"
    "  local gl, cnt = glist[g], gcnt[g]\n"
    "  local gids = {}\n"
    "  for j = 1, cnt do gids[j] = eid[gl[j]] end\n"
    "  local r = hmget(gkey[g], gids, cnt)\n"
    "  for j = 1, cnt do prev[gl[j]] = r[j] end\n"
    "end\n"
    /* The charges, in batch order. */
    "local spend, exh, added, newly, corder, nc, res = {}, {}, {}, {}, {}, 0, {}\n"
    "local marks, mcnt = {}, {}\n"
    "for g = 1, ng do marks[g] = {}; mcnt[g] = 0 end\n"
    "for i = 1, n do\n"
    "  local k = ek[i]\n"
    "  local v\n"
    "  local p = prev[i]\n"
    "  if p == 'c' then v = '1'\n"
    "  elseif p == 'x' then v = '2'\n"
    "  else\n"
    "    local c, price, budget = kc[k], kprice[k], kbudget[k]\n"
    "    local sp = spend[c]\n"
    "    if sp == nil then\n"
    "      sp = tonumber(call('GET', 'adtrack:spend:' .. c) or '0')\n"
    "      exh[c] = call('EXISTS', 'adtrack:exhausted:' .. c) == 1\n"
    "      added[c] = 0\n"
    "      nc = nc + 1; corder[nc] = c\n"
    "    end\n"
    "    local mark\n"
    "    if (not exh[c]) and sp + price <= budget then\n"
    "      sp = sp + price; added[c] = added[c] + price; v = '0'; mark = 'c'\n"
    "      kspend[k] = kspend[k] + price\n"
    "      if sp >= budget then exh[c] = true; newly[c] = true end\n"
    "    else\n"
    "      v = '2'; mark = 'x'\n"
    "      if not exh[c] then exh[c] = true; newly[c] = true end\n"
    "    end\n"
    "    spend[c] = sp\n"
    "    local g = kg[k]\n"
    "    local m, mc = marks[g], mcnt[g]\n"
    "    m[mc + 1] = eid[i]; m[mc + 2] = mark\n"
    "    mcnt[g] = mc + 2\n"
    "  end\n"
    "  kn[k] = kn[k] + 1\n"
    "  if v == '2' then kx[k] = kx[k] + 1 else kok[k] = kok[k] + 1 end\n"
    "  res[i] = v\n"
    "end\n"
    "for j = 1, nc do\n"
    "  local c = corder[j]\n"
    "  if added[c] > 0 then call('INCRBY', 'adtrack:spend:' .. c, fmt('%d', added[c])) end\n"
    "end\n"
    "for g = 1, ng do\n"
    "  if mcnt[g] > 0 then hset(gkey[g], marks[g], mcnt[g]); call('EXPIRE', gkey[g], win) end\n"
    "end\n"
    "local pub = 0\n"
    "for j = 1, nc do\n"
    "  local c = corder[j]\n"
    "  if newly[c] then\n"
    "    call('SET', 'adtrack:exhausted:' .. c, '1')\n"
    "    local ver = call('INCR', 'adtrack:coredata:version')\n"
    "    call('PUBLISH', 'adtrack:coredata', '{\"kind\":\"budget\",\"id\":\"' .. c .. '\",\"version\":' ..\n"
    "      fmt('%d', ver) .. ',\"op\":\"exhausted\"}')\n"
    "    pub = pub + 1\n"
    "  end\n"
    "end\n"
    "for k = 1, nk do\n"
    "  local sk = ksk[k]\n"
    "  st(sk, 'spend', kspend[k])\n"
    "  st(sk, 'events', kn[k])\n"
    "  st(sk, 'rejected', kx[k])\n"
    "  st(sk, 'rejected:budget_exhausted', kx[k])\n"
    "  st(sk, ktf[k], kok[k])\n"
    "end\n"
    "local b = 5 + nk * K\n"
    "local ns = tonumber(ARGV[b + 1])\n"
    "for j = 0, ns - 1 do\n"
    "  local o = b + 1 + j * 4\n"
    "  st('adtrack:stats:' .. ARGV[o + 1] .. ':' .. ARGV[o + 2], ARGV[o + 3], tonumber(ARGV[o + 4]))\n"
    "end\n"
    "for j = 1, nskeys do\n"
    "  local k = skeys[j]\n"
    "  for f, v in pairs(stats[k]) do call('HINCRBY', k, f, fmt('%d', v)) end\n"
    "  call('EXPIRE', k, sttl)\n"
    "end\n"
    "return {table.concat(res), pub}\n";

const char *enr_budget_rejected_field(at_reject_t r)
{
    /* Literals, so the worker's per-batch aggregation can compare fields by pointer. */
    static const char *const fields[AT_REJ__COUNT] = {
        [AT_REJ_NONE] = "rejected:none",
        [AT_REJ_MISSING_FIELD] = "rejected:missing_field",
        [AT_REJ_INVALID_FIELD] = "rejected:invalid_field",
        [AT_REJ_FIELD_TOO_LONG] = "rejected:field_too_long",
        [AT_REJ_BAD_ENCODING] = "rejected:bad_encoding",
        [AT_REJ_UNKNOWN_EVENT_TYPE] = "rejected:unknown_event_type",
        [AT_REJ_MALFORMED_JSON] = "rejected:malformed_json",
        [AT_REJ_MALFORMED_ENVELOPE] = "rejected:malformed_envelope",
        [AT_REJ_UNKNOWN_CAMPAIGN] = "rejected:unknown_campaign",
        [AT_REJ_CAMPAIGN_INACTIVE] = "rejected:campaign_inactive",
        [AT_REJ_UNKNOWN_PUBLISHER] = "rejected:unknown_publisher",
        [AT_REJ_PUBLISHER_NOT_ALLOWED] = "rejected:publisher_not_allowed",
        [AT_REJ_DUPLICATE] = "rejected:duplicate_event",
        [AT_REJ_BOT] = "rejected:bot",
        [AT_REJ_BUDGET_EXHAUSTED] = "rejected:budget_exhausted",
        [AT_REJ_DUPLICATE_ORDER] = "rejected:duplicate_order",
        [AT_REJ_WRONG_ADVERTISER] = "rejected:wrong_advertiser",
    };
    return (unsigned)r < AT_REJ__COUNT && fields[r] != NULL ? fields[r] : "rejected:unknown";
}

void enr_budget_day(int64_t ms, char out[16])
{
    time_t t = (time_t)(ms >= 0 ? ms / 1000 : (ms - 999) / 1000);
    struct tm tm;
    gmtime_r(&t, &tm);
    char tmp[64];
    snprintf(tmp, sizeof(tmp), "%04d%02d%02d", (tm.tm_year + 1900) % 10000, tm.tm_mon + 1, tm.tm_mday);
    memcpy(out, tmp, 9);
    out[8] = '\0';
}

int enr_budget_load(enr_budget_t *b, redisContext *rc, at_err_t *err)
{
    redisReply *r = redisCommand(rc, "SCRIPT LOAD %s", enr_budget_script);
    if (r == NULL) {
        b->loaded = false;
        return at_err_set(err, rc->err ? AT_ERR_UNAVAILABLE : AT_ERR_INTERNAL, "redis SCRIPT LOAD: %s",
                          rc->err ? rc->errstr : "no reply");
    }
    if (r->type != REDIS_REPLY_STRING || r->len != 40) {
        at_err_set(err, AT_ERR_UNAVAILABLE, "redis SCRIPT LOAD: %s", r->type == REDIS_REPLY_ERROR ? r->str : "bad reply");
        freeReplyObject(r);
        return -1;
    }
    memcpy(b->sha, r->str, 40);
    b->sha[40] = '\0';
    b->loaded = true;
    freeReplyObject(r);
    return 0;
}

/* Growable byte buffer. */
typedef struct bbuf_s {
    char *p;
    size_t n, cap;
} bbuf_t;

static int bb_reserve(bbuf_t *b, size_t more)
{
    if (b->n + more <= b->cap)
        return 0;
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->n + more)
        nc *= 2;
    char *np = realloc(b->p, nc);
    if (np == NULL)
        return -1;
    b->p = np;
    b->cap = nc;
    return 0;
}

/* A charge class: what the charges of one class share (see enr_budget_script). */
typedef struct klass_s {
    const char *c;
    size_t clen;
    int64_t minute_ms;
    int64_t price, budget;
    at_event_type_t type;
} klass_t;

/* Scratch kept between calls, so a batch allocates nothing once the buffers have grown:
 * the argument texts (one buffer; argv points into it once it stops moving), the packed ids
 * and class numbers, the classes and their hash index. */
struct enr_budget_scratch_s {
    bbuf_t text;
    size_t *off, *len;
    const char **argv;
    size_t nargs, args_cap;
    bbuf_t ids, cls;
    klass_t *k;
    size_t nk, k_cap;
    uint32_t *slot; /* class index + 1; 0 = free */
    size_t slot_cap;
};

void enr_budget_fini(enr_budget_t *b)
{
    struct enr_budget_scratch_s *s = b->scratch;
    if (s == NULL)
        return;
    free(s->text.p);
    free(s->off);
    free(s->len);
    free(s->argv);
    free(s->ids.p);
    free(s->cls.p);
    free(s->k);
    free(s->slot);
    free(s);
    b->scratch = NULL;
}

static int args_add(struct enr_budget_scratch_s *s, const char *p, size_t len)
{
    if (s->nargs == s->args_cap) {
        size_t nc = s->args_cap ? s->args_cap * 2 : 64;
        size_t *no = realloc(s->off, nc * sizeof(*no));
        if (no == NULL)
            return -1;
        s->off = no;
        size_t *nl = realloc(s->len, nc * sizeof(*nl));
        if (nl == NULL)
            return -1;
        s->len = nl;
        const char **na = realloc(s->argv, nc * sizeof(*na));
        if (na == NULL)
            return -1;
        s->argv = na;
        s->args_cap = nc;
    }
    if (bb_reserve(&s->text, len + 1) != 0)
        return -1;
    memcpy(s->text.p + s->text.n, p, len);
    s->text.p[s->text.n + len] = '\0';
    s->off[s->nargs] = s->text.n;
    s->len[s->nargs] = len;
    s->text.n += len + 1;
    s->nargs++;
    return 0;
}

static int args_add_str(struct enr_budget_scratch_s *s, const char *p)
{
    return args_add(s, p, strlen(p));
}

/* A decimal integer without snprintf. */
static int args_add_int(struct enr_budget_scratch_s *s, long long v)
{
    char tmp[24];
    char *o = tmp + sizeof(tmp);
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        *--o = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *--o = '-';
    return args_add(s, o, (size_t)(tmp + sizeof(tmp) - o));
}

/* The day and minute strings of the last timestamp asked for: a batch's events mostly
 * share their minute, and gmtime_r + snprintf per event showed in the profile. */
typedef struct when_memo_s {
    int64_t minute_ms; /* INT64_MIN: empty */
    char day[16], minute[16];
} when_memo_t;

static int64_t minute_of(int64_t ts_ms)
{
    return ts_ms - ((ts_ms % 60000) + 60000) % 60000;
}

static void when_of(when_memo_t *m, int64_t ts_ms)
{
    int64_t minute_ms = minute_of(ts_ms);
    if (minute_ms == m->minute_ms)
        return;
    enr_budget_day(minute_ms, m->day);
    at_utc_minute_key(minute_ms, m->minute);
    m->minute_ms = minute_ms;
}

static uint64_t klass_hash(const klass_t *k)
{
    uint64_t h = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < k->clen; i++) {
        h ^= (unsigned char)k->c[i];
        h *= UINT64_C(1099511628211);
    }
    uint64_t v[4] = {(uint64_t)k->minute_ms, (uint64_t)k->price, (uint64_t)k->budget, (uint64_t)k->type};
    for (size_t i = 0; i < 4; i++) {
        h ^= v[i];
        h *= UINT64_C(1099511628211);
        h ^= h >> 29;
    }
    return h;
}

static bool klass_eq(const klass_t *a, const klass_t *b)
{
    return a->minute_ms == b->minute_ms && a->price == b->price && a->budget == b->budget && a->type == b->type &&
           a->clen == b->clen && memcmp(a->c, b->c, a->clen) == 0;
}

/* Sorts @p n charges into classes: fills s->k and appends each charge's id and class number
 * to s->ids and s->cls. 0, or -1 when out of memory. */
static int classify(struct enr_budget_scratch_s *s, const enr_charge_t *charges, size_t n)
{
    size_t want = 64;
    while (want < n * 2)
        want *= 2;
    if (want > s->slot_cap) {
        uint32_t *ns = realloc(s->slot, want * sizeof(*ns));
        if (ns == NULL)
            return -1;
        s->slot = ns;
        s->slot_cap = want;
    }
    if (n > s->k_cap) {
        klass_t *nk = realloc(s->k, n * sizeof(*nk));
        if (nk == NULL)
            return -1;
        s->k = nk;
        s->k_cap = n;
    }
    memset(s->slot, 0, want * sizeof(*s->slot));
    s->nk = 0;
    s->ids.n = s->cls.n = 0;
    if (bb_reserve(&s->ids, n * AT_UUID_STR_LEN) != 0 || bb_reserve(&s->cls, n * 2) != 0)
        return -1;
    size_t last = SIZE_MAX;
    for (size_t i = 0; i < n; i++) {
        const enr_charge_t *c = &charges[i];
        klass_t key = {c->c, c->clen, minute_of(c->ts_ms), c->price_micros, c->budget_micros, c->type};
        size_t ki;
        if (last != SIZE_MAX && klass_eq(&s->k[last], &key)) {
            ki = last; /* consecutive charges mostly share their class */
        } else {
            size_t j = (size_t)klass_hash(&key) & (want - 1);
            while (s->slot[j] != 0 && !klass_eq(&s->k[s->slot[j] - 1], &key))
                j = (j + 1) & (want - 1);
            if (s->slot[j] == 0) {
                s->k[s->nk] = key;
                s->slot[j] = (uint32_t)++s->nk;
            }
            ki = s->slot[j] - 1;
            last = ki;
        }
        memcpy(s->ids.p + s->ids.n, c->id, AT_UUID_STR_LEN);
        s->ids.n += AT_UUID_STR_LEN;
        s->cls.p[s->cls.n++] = (char)(uint8_t)((ki + 1) >> 8);
        s->cls.p[s->cls.n++] = (char)(uint8_t)(ki + 1);
    }
    return 0;
}

/* Puts the script text in place of the sha (argument 1), for EVAL. */
static int use_script_text(struct enr_budget_scratch_s *s)
{
    if (args_add(s, enr_budget_script, sizeof(enr_budget_script) - 1) != 0)
        return -1;
    s->nargs--;
    s->off[1] = s->off[s->nargs];
    s->len[1] = s->len[s->nargs];
    return 0;
}

static redisReply *run_once(struct enr_budget_scratch_s *s, redisContext *rc, bool by_sha)
{
    for (size_t i = 0; i < s->nargs; i++)
        s->argv[i] = s->text.p + s->off[i];
    s->argv[0] = by_sha ? "EVALSHA" : "EVAL";
    s->len[0] = by_sha ? 7 : 4;
    return redisCommandArgv(rc, (int)s->nargs, s->argv, s->len);
}

int enr_budget_run(enr_budget_t *b, redisContext *rc, enr_charge_t *charges, size_t ncharges, const enr_stat_t *stats,
                   size_t nstats, int *published, uint64_t *ncmds, at_err_t *err)
{
    static const char *const type_fields[] = {"events", "imp", "view", "click", "conv"};
    redisReply *r = NULL;
    int rc_ = -1;

    *published = 0;
    /* Class numbers travel as 2 bytes; a batch is at most 5000 events (--batch-size). */
    if (ncharges > 65535)
        return at_err_set(err, AT_ERR_INVALID, "budget: %zu charges in one call, at most 65535", ncharges);
    if (b->scratch == NULL && (b->scratch = calloc(1, sizeof(*b->scratch))) == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "budget: out of memory");
    struct enr_budget_scratch_s *s = b->scratch;
    s->nargs = 0;
    s->text.n = 0;
    for (size_t i = 0; i < ncharges; i++) {
        if (strlen(charges[i].id) != AT_UUID_STR_LEN)
            return at_err_set(err, AT_ERR_INVALID, "budget: charge %zu: id '%s' is not a canonical UUID", i,
                              charges[i].id);
    }
    /* argv[0] is a placeholder for EVALSHA/EVAL, argv[1] the sha (the text is added only
     * when NOSCRIPT asks for it). */
    bool ok = classify(s, charges, ncharges) == 0;
    ok = ok && args_add(s, "EVALSHA", 7) == 0 && args_add(s, b->sha, strlen(b->sha)) == 0 && args_add(s, "0", 1) == 0;
    ok = ok && args_add_int(s, (long long)b->replay_window_s) == 0 && args_add_int(s, ENR_STATS_TTL_S) == 0 &&
         args_add_int(s, (long long)s->nk) == 0;
    when_memo_t when = {.minute_ms = INT64_MIN};
    for (size_t i = 0; ok && i < s->nk; i++) {
        const klass_t *k = &s->k[i];
        when_of(&when, k->minute_ms);
        ok = args_add(s, k->c, k->clen) == 0 && args_add_str(s, when.day) == 0 && args_add_str(s, when.minute) == 0 &&
             args_add_str(s, type_fields[(unsigned)k->type < 5 ? k->type : 0]) == 0 &&
             args_add_int(s, (long long)k->price) == 0 && args_add_int(s, (long long)k->budget) == 0;
    }
    ok = ok && args_add(s, s->ids.n ? s->ids.p : "", s->ids.n) == 0 && args_add(s, s->cls.n ? s->cls.p : "", s->cls.n) == 0;
    ok = ok && args_add_int(s, (long long)nstats) == 0;
    for (size_t i = 0; ok && i < nstats; i++) {
        when_of(&when, stats[i].minute_ms);
        ok = args_add(s, stats[i].c, stats[i].clen) == 0 && args_add_str(s, when.minute) == 0 &&
             args_add_str(s, stats[i].field) == 0 && args_add_int(s, (long long)stats[i].n) == 0;
    }
    if (!ok)
        return at_err_set(err, AT_ERR_NOMEM, "budget: out of memory");

    if (!b->loaded && use_script_text(s) != 0)
        return at_err_set(err, AT_ERR_NOMEM, "budget: out of memory");
    r = run_once(s, rc, b->loaded);
    (*ncmds)++;
    if (b->loaded && r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* The server lost its script cache (restart, SCRIPT FLUSH): EVAL loads it again. */
        freeReplyObject(r);
        r = NULL;
        if (use_script_text(s) != 0) {
            at_err_set(err, AT_ERR_NOMEM, "budget: out of memory");
            goto out;
        }
        r = run_once(s, rc, false);
        (*ncmds)++;
    }
    if (r == NULL) {
        at_err_set(err, rc->err ? AT_ERR_UNAVAILABLE : AT_ERR_INTERNAL, "redis EVALSHA: %s",
                   rc->err ? rc->errstr : "no reply");
        goto out;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        at_err_set(err, AT_ERR_UNAVAILABLE, "redis budget script: %s", r->str);
        goto out;
    }
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING ||
        r->element[0]->len != ncharges) {
        at_err_set(err, AT_ERR_INTERNAL, "redis budget script: unexpected reply shape");
        goto out;
    }
    for (size_t i = 0; i < ncharges; i++) {
        char x = r->element[0]->str[i];
        charges[i].verdict = x == '0' ? ENR_CHARGED : x == '1' ? ENR_ALREADY_CHARGED : ENR_EXHAUSTED;
    }
    if (r->element[1]->type == REDIS_REPLY_INTEGER)
        *published = (int)r->element[1]->integer;
    rc_ = 0;
out:
    freeReplyObject(r);
    return rc_;
}
