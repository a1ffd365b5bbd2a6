/*
 * enr_budget.c: the charge script and its call (see enr_budget.h).
 *
 * ARGV layout: [1] charge-record TTL seconds, [2] counter TTL seconds, [3] n charges, then
 * per charge 7 values (campaign, event id, price, budget, yyyymmdd, yyyymmddHHMM, type
 * field), then the number of counter increments and 4 values each (campaign, yyyymmddHHMM,
 * field, n). Keys are built inside the script, so it needs one Redis (not a cluster with
 * the keys spread over slots); see docs/ENRICHER.md.
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

const char enr_budget_script[] =
    "local win = tonumber(ARGV[1])\n"
    "local sttl = tonumber(ARGV[2])\n"
    "local n = tonumber(ARGV[3])\n"
    "local W = 7\n"
    "local function chunked(cmd, key, list)\n"
    "  local out = {}\n"
    "  for s = 1, #list, 1000 do\n"
    "    local r = redis.call(cmd, key, unpack(list, s, math.min(s + 999, #list)))\n"
    "    if type(r) == 'table' then for _, x in ipairs(r) do out[#out + 1] = x end\n"
    "    else for _ = s, math.min(s + 999, #list) do out[#out + 1] = false end end\n"
    "  end\n"
    "  return out\n"
    "end\n"
    "local stats, skeys = {}, {}\n"
    "local function st(k, f, v)\n"
    "  local t = stats[k]\n"
    "  if t == nil then t = {}; stats[k] = t; skeys[#skeys + 1] = k end\n"
    "  t[f] = (t[f] or 0) + v\n"
    "end\n"
    "local groups, gorder = {}, {}\n"
    "for i = 0, n - 1 do\n"
    "  local b = 3 + i * W\n"
    "  local ck = 'adtrack:charged:' .. ARGV[b + 1] .. ':' .. ARGV[b + 5]\n"
    "  local g = groups[ck]\n"
    "  if g == nil then g = {}; groups[ck] = g; gorder[#gorder + 1] = ck end\n"
    "  g[#g + 1] = i\n"
    "end\n"
    "local prev = {}\n"
    "for _, ck in ipairs(gorder) do\n"
    "  local g = groups[ck]\n"
    "  local ids = {}\n"
    "  for j, i in ipairs(g) do ids[j] = ARGV[3 + i * W + 2] end\n"
    "  local r = chunked('HMGET', ck, ids)\n"
    "  for j, i in ipairs(g) do prev[i] = r[j] end\n"
    "end\n"
    "local spend, exh, added, newly, corder, marks, res = {}, {}, {}, {}, {}, {}, {}\n"
    "for i = 0, n - 1 do\n"
    "  local b = 3 + i * W\n"
    "  local c, id = ARGV[b + 1], ARGV[b + 2]\n"
    "  local price, budget = tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])\n"
    "  local ck = 'adtrack:charged:' .. c .. ':' .. ARGV[b + 5]\n"
    "  local sk = 'adtrack:stats:' .. c .. ':' .. ARGV[b + 6]\n"
    "  local v\n"
    "  local p = prev[i]\n"
    "  if p == 'c' then v = 1\n"
    "  elseif p == 'x' then v = 2\n"
    "  else\n"
    "    if spend[c] == nil then\n"
    "      spend[c] = tonumber(redis.call('GET', 'adtrack:spend:' .. c) or '0')\n"
    "      exh[c] = redis.call('EXISTS', 'adtrack:exhausted:' .. c) == 1\n"
    "      added[c] = 0\n"
    "      corder[#corder + 1] = c\n"
    "    end\n"
    "    if (not exh[c]) and spend[c] + price <= budget then\n"
    "      spend[c] = spend[c] + price; added[c] = added[c] + price; v = 0\n"
    "      st(sk, 'spend', price)\n"
    "      if spend[c] >= budget then exh[c] = true; newly[c] = true end\n"
    "    else\n"
    "      v = 2\n"
    "      if not exh[c] then exh[c] = true; newly[c] = true end\n"
    "    end\n"
    "    local m = marks[ck]\n"
    "    if m == nil then m = {}; marks[ck] = m end\n"
    "    m[#m + 1] = id; m[#m + 1] = (v == 0) and 'c' or 'x'\n"
    "  end\n"
    "  st(sk, 'events', 1)\n"
    "  if v == 2 then st(sk, 'rejected', 1); st(sk, 'rejected:budget_exhausted', 1)\n"
    "  else st(sk, ARGV[b + 7], 1) end\n"
    "  res[i + 1] = v\n"
    "end\n"
    "for _, c in ipairs(corder) do\n"
    "  if added[c] > 0 then redis.call('INCRBY', 'adtrack:spend:' .. c, string.format('%d', added[c])) end\n"
    "end\n"
    "for _, ck in ipairs(gorder) do\n"
    "  local m = marks[ck]\n"
    "  if m ~= nil then chunked('HSET', ck, m); redis.call('EXPIRE', ck, win) end\n"
    "end\n"
    "local pub = 0\n"
    "for _, c in ipairs(corder) do\n"
    "  if newly[c] then\n"
    "    redis.call('SET', 'adtrack:exhausted:' .. c, '1')\n"
    "    local ver = redis.call('INCR', 'adtrack:coredata:version')\n"
    "    redis.call('PUBLISH', 'adtrack:coredata', '{\"kind\":\"budget\",\"id\":\"' .. c .. '\",\"version\":' ..\n"
    "      string.format('%d', ver) .. ',\"op\":\"exhausted\"}')\n"
    "    pub = pub + 1\n"
    "  end\n"
    "end\n"
    "local b = 3 + n * W\n"
    "local ns = tonumber(ARGV[b + 1])\n"
    "for j = 0, ns - 1 do\n"
    "  local o = b + 1 + j * 4\n"
    "  st('adtrack:stats:' .. ARGV[o + 1] .. ':' .. ARGV[o + 2], ARGV[o + 3], tonumber(ARGV[o + 4]))\n"
    "end\n"
    "for _, k in ipairs(skeys) do\n"
    "  for f, v in pairs(stats[k]) do redis.call('HINCRBY', k, f, string.format('%d', v)) end\n"
    "  redis.call('EXPIRE', k, sttl)\n"
    "end\n"
    "return {res, pub}\n";

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

/* Argument arena: every argv string lives in one growing buffer; offsets become pointers
 * once it stops moving. */
typedef struct args_s {
    char *buf;
    size_t used, cap;
    size_t *off, *len;
    size_t n, ncap;
} args_t;

static int args_add(args_t *a, const char *s, size_t len)
{
    if (a->n == a->ncap) {
        size_t nc = a->ncap ? a->ncap * 2 : 256;
        size_t *no = realloc(a->off, nc * sizeof(*no));
        if (no == NULL)
            return -1;
        a->off = no;
        size_t *nl = realloc(a->len, nc * sizeof(*nl));
        if (nl == NULL)
            return -1;
        a->len = nl;
        a->ncap = nc;
    }
    if (a->used + len + 1 > a->cap) {
        size_t nc = a->cap ? a->cap * 2 : 16384;
        while (nc < a->used + len + 1)
            nc *= 2;
        char *nb = realloc(a->buf, nc);
        if (nb == NULL)
            return -1;
        a->buf = nb;
        a->cap = nc;
    }
    memcpy(a->buf + a->used, s, len);
    a->buf[a->used + len] = '\0';
    a->off[a->n] = a->used;
    a->len[a->n] = len;
    a->used += len + 1;
    a->n++;
    return 0;
}

static int args_addf(args_t *a, const char *fmt, long long v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), fmt, v);
    return args_add(a, tmp, (size_t)n);
}

/* A decimal integer without snprintf (two per chargeable event). */
static int args_add_int(args_t *a, long long v)
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
    return args_add(a, o, (size_t)(tmp + sizeof(tmp) - o));
}

/* The day and minute strings of the last timestamp asked for: a batch's events mostly
 * share their minute, and gmtime_r + snprintf per event showed in the profile. */
typedef struct when_memo_s {
    int64_t minute_ms; /* INT64_MIN: empty */
    char day[16], minute[16];
} when_memo_t;

static void when_of(when_memo_t *m, int64_t ts_ms)
{
    int64_t minute_ms = ts_ms - ((ts_ms % 60000) + 60000) % 60000;
    if (minute_ms == m->minute_ms)
        return;
    enr_budget_day(minute_ms, m->day);
    at_utc_minute_key(minute_ms, m->minute);
    m->minute_ms = minute_ms;
}

static void args_free(args_t *a)
{
    free(a->buf);
    free(a->off);
    free(a->len);
}

static int run_once(redisContext *rc, args_t *a, bool by_sha, redisReply **out)
{
    const char **argv = malloc(a->n * sizeof(*argv));
    if (argv == NULL)
        return -1;
    for (size_t i = 0; i < a->n; i++)
        argv[i] = a->buf + a->off[i];
    argv[0] = by_sha ? "EVALSHA" : "EVAL";
    size_t len0 = a->len[0];
    a->len[0] = by_sha ? 7 : 4;
    *out = redisCommandArgv(rc, (int)a->n, argv, a->len);
    a->len[0] = len0;
    free(argv);
    return 0;
}

int enr_budget_run(enr_budget_t *b, redisContext *rc, enr_charge_t *charges, size_t ncharges, const enr_stat_t *stats,
                   size_t nstats, int *published, uint64_t *ncmds, at_err_t *err)
{
    args_t a = {0};
    redisReply *r = NULL;
    int rc_ = -1;
    static const char *const type_fields[] = {"events", "imp", "view", "click", "conv"};

    *published = 0;
    /* argv[0] is a placeholder for EVALSHA/EVAL; argv[1] the sha or the script text. */
    bool ok = args_add(&a, "EVALSHA", 7) == 0;
    ok = ok && (b->loaded ? args_add(&a, b->sha, 40) : args_add(&a, enr_budget_script, strlen(enr_budget_script))) == 0;
    size_t script_arg = 1;
    ok = ok && args_add(&a, "0", 1) == 0;
    ok = ok && args_addf(&a, "%lld", (long long)b->replay_window_s) == 0;
    ok = ok && args_addf(&a, "%lld", (long long)ENR_STATS_TTL_S) == 0;
    ok = ok && args_addf(&a, "%lld", (long long)ncharges) == 0;
    when_memo_t when = {.minute_ms = INT64_MIN};
    for (size_t i = 0; ok && i < ncharges; i++) {
        const enr_charge_t *c = &charges[i];
        when_of(&when, c->ts_ms);
        ok = args_add(&a, c->c, c->clen) == 0 && args_add(&a, c->id, strlen(c->id)) == 0 &&
             args_add_int(&a, (long long)c->price_micros) == 0 && args_add_int(&a, (long long)c->budget_micros) == 0 &&
             args_add(&a, when.day, strlen(when.day)) == 0 && args_add(&a, when.minute, strlen(when.minute)) == 0 &&
             args_add(&a, type_fields[(unsigned)c->type < 5 ? c->type : 0],
                      strlen(type_fields[(unsigned)c->type < 5 ? c->type : 0])) == 0;
    }
    ok = ok && args_addf(&a, "%lld", (long long)nstats) == 0;
    for (size_t i = 0; ok && i < nstats; i++) {
        when_of(&when, stats[i].minute_ms);
        ok = args_add(&a, stats[i].c, stats[i].clen) == 0 && args_add(&a, when.minute, strlen(when.minute)) == 0 &&
             args_add(&a, stats[i].field, strlen(stats[i].field)) == 0 && args_add_int(&a, (long long)stats[i].n) == 0;
    }
    if (!ok) {
        at_err_set(err, AT_ERR_NOMEM, "budget: out of memory");
        goto out;
    }

    bool by_sha = b->loaded;
    run_once(rc, &a, by_sha, &r);
    (*ncmds)++;
    if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        /* The server lost its script cache (restart, SCRIPT FLUSH): EVAL loads it again. */
        freeReplyObject(r);
        r = NULL;
        size_t off_save = a.off[script_arg], len_save = a.len[script_arg];
        if (args_add(&a, enr_budget_script, strlen(enr_budget_script)) != 0) {
            at_err_set(err, AT_ERR_NOMEM, "budget: out of memory");
            goto out;
        }
        a.off[script_arg] = a.off[a.n - 1];
        a.len[script_arg] = a.len[a.n - 1];
        a.n--;
        run_once(rc, &a, false, &r);
        (*ncmds)++;
        a.off[script_arg] = off_save;
        a.len[script_arg] = len_save;
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
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_ARRAY ||
        r->element[0]->elements != ncharges) {
        at_err_set(err, AT_ERR_INTERNAL, "redis budget script: unexpected reply shape");
        goto out;
    }
    for (size_t i = 0; i < ncharges; i++) {
        const redisReply *v = r->element[0]->element[i];
        long long x = v->type == REDIS_REPLY_INTEGER ? v->integer : 2;
        charges[i].verdict = x == 0 ? ENR_CHARGED : x == 1 ? ENR_ALREADY_CHARGED : ENR_EXHAUSTED;
    }
    if (r->element[1]->type == REDIS_REPLY_INTEGER)
        *published = (int)r->element[1]->integer;
    rc_ = 0;
out:
    freeReplyObject(r);
    args_free(&a);
    return rc_;
}
