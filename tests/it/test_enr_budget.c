/* LABELS: it;redis;enricher */
/*
 * test_enr_budget.c: the budget script (enricher/enr_budget.c) against a real redis-server,
 * compared with a reference: the script as it was before its arguments were compacted (one
 * group of 7 arguments per charge, verdicts as an array of integers), kept here verbatim
 * with its own argument builder. Both run the same random batches, each in its own Redis
 * database, and must give the same verdict for every charge, the same number of published
 * exhaustions, and leave the same keys with the same contents (spend, exhausted flags,
 * charge records, per-minute counters, the core-data version) with a TTL where the
 * reference sets one.
 *
 * The batches mix campaigns, days and minutes in any order, replays of earlier events
 * (charged and refused ones), prices and budgets that change between charges of one
 * campaign, budgets that run out inside a batch, campaigns already exhausted, and
 * pre-aggregated counter increments, so the comparison covers the order in which a batch
 * is charged, not only totals.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "at_test_coredata.h"
#include "at_test_support.h"
#include "at_time.h"
#include "enr_budget.h"

static ts_redis_t redis;

/* ---- the reference ---- */

static const char ref_script[] =
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

typedef struct argv_s {
    char **v;
    size_t *len;
    size_t n, cap;
} argv_t;

static void av_add(argv_t *a, const char *s, size_t len)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 256;
        a->v = realloc(a->v, a->cap * sizeof(*a->v));
        a->len = realloc(a->len, a->cap * sizeof(*a->len));
        assert_non_null(a->v);
        assert_non_null(a->len);
    }
    a->v[a->n] = malloc(len + 1);
    assert_non_null(a->v[a->n]);
    memcpy(a->v[a->n], s, len);
    a->v[a->n][len] = '\0';
    a->len[a->n++] = len;
}

static void av_addf(argv_t *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void av_addf(argv_t *a, const char *fmt, ...)
{
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    av_add(a, tmp, (size_t)n);
}

static void av_free(argv_t *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    free(a->len);
}

static void minute_day(int64_t ms, char day[16], char minute[16])
{
    enr_budget_day(ms, day);
    at_utc_minute_key(ms, minute);
}

/* The reference call: EVAL of ref_script with the former argument layout. */
static void ref_run(redisContext *rc, int64_t window_s, const enr_charge_t *charges, size_t n, const enr_stat_t *stats,
                    size_t ns, int *verdicts, int *published)
{
    static const char *const tf[] = {"events", "imp", "view", "click", "conv"};
    argv_t a = {0};
    av_add(&a, "EVAL", 4);
    av_add(&a, ref_script, strlen(ref_script));
    av_add(&a, "0", 1);
    av_addf(&a, "%lld", (long long)window_s);
    av_addf(&a, "%lld", (long long)ENR_STATS_TTL_S);
    av_addf(&a, "%zu", n);
    for (size_t i = 0; i < n; i++) {
        char day[16], minute[16];
        minute_day(charges[i].ts_ms, day, minute);
        av_add(&a, charges[i].c, charges[i].clen);
        av_add(&a, charges[i].id, strlen(charges[i].id));
        av_addf(&a, "%lld", (long long)charges[i].price_micros);
        av_addf(&a, "%lld", (long long)charges[i].budget_micros);
        av_add(&a, day, strlen(day));
        av_add(&a, minute, strlen(minute));
        av_add(&a, tf[charges[i].type], strlen(tf[charges[i].type]));
    }
    av_addf(&a, "%zu", ns);
    for (size_t i = 0; i < ns; i++) {
        char day[16], minute[16];
        minute_day(stats[i].minute_ms, day, minute);
        av_add(&a, stats[i].c, stats[i].clen);
        av_add(&a, minute, strlen(minute));
        av_add(&a, stats[i].field, strlen(stats[i].field));
        av_addf(&a, "%lld", (long long)stats[i].n);
    }
    redisReply *r = redisCommandArgv(rc, (int)a.n, (const char **)a.v, a.len);
    av_free(&a);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("reference script: %s", r->str);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    assert_int_equal(r->element[0]->elements, n);
    for (size_t i = 0; i < n; i++)
        verdicts[i] = (int)r->element[0]->element[i]->integer;
    *published = (int)r->element[1]->integer;
    freeReplyObject(r);
}

/* ---- comparing two databases ---- */

static redisReply *cmd(redisContext *rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    if (r->type == REDIS_REPLY_ERROR)
        fail_msg("redis: %s", r->str);
    return r;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Every key with its type and contents as one sorted text per key, e.g.
 * "hash adtrack:charged:c1:20261127 <id>=c <id>=x ttl". */
static char **dump_db(redisContext *rc, size_t *count)
{
    redisReply *keys = cmd(rc, "KEYS *");
    char **out = calloc(keys->elements + 1, sizeof(*out));
    assert_non_null(out);
    for (size_t i = 0; i < keys->elements; i++) {
        const char *k = keys->element[i]->str;
        redisReply *t = cmd(rc, "TYPE %s", k);
        redisReply *ttl = cmd(rc, "TTL %s", k);
        size_t cap = 4096, used = 0;
        char *s = malloc(cap);
        assert_non_null(s);
        used += (size_t)snprintf(s, cap, "%s %s", t->str, k);
        if (strcmp(t->str, "string") == 0) {
            redisReply *v = cmd(rc, "GET %s", k);
            used += (size_t)snprintf(s + used, cap - used, " %s", v->str);
            freeReplyObject(v);
        } else if (strcmp(t->str, "hash") == 0) {
            redisReply *v = cmd(rc, "HGETALL %s", k);
            size_t nf = v->elements / 2;
            char **f = calloc(nf + 1, sizeof(*f));
            assert_non_null(f);
            for (size_t j = 0; j < nf; j++) {
                size_t l = strlen(v->element[2 * j]->str) + strlen(v->element[2 * j + 1]->str) + 2;
                f[j] = malloc(l);
                assert_non_null(f[j]);
                snprintf(f[j], l, "%s=%s", v->element[2 * j]->str, v->element[2 * j + 1]->str);
            }
            qsort(f, nf, sizeof(*f), cmp_str);
            for (size_t j = 0; j < nf; j++) {
                size_t l = strlen(f[j]);
                while (used + l + 64 > cap) {
                    cap *= 2;
                    s = realloc(s, cap);
                    assert_non_null(s);
                }
                used += (size_t)snprintf(s + used, cap - used, " %s", f[j]);
                free(f[j]);
            }
            free(f);
            freeReplyObject(v);
        } else {
            fail_msg("unexpected key type %s for %s", t->str, k);
        }
        snprintf(s + used, cap - used, " %s", ttl->integer > 0 ? "ttl" : ttl->integer == -1 ? "no-ttl" : "?");
        out[i] = s;
        freeReplyObject(t);
        freeReplyObject(ttl);
    }
    *count = keys->elements;
    freeReplyObject(keys);
    qsort(out, *count, sizeof(*out), cmp_str);
    return out;
}

static void assert_same_db(redisContext *a, redisContext *b)
{
    size_t na, nb;
    char **da = dump_db(a, &na), **db = dump_db(b, &nb);
    for (size_t i = 0; i < na || i < nb; i++) {
        const char *x = i < na ? da[i] : "(none)", *y = i < nb ? db[i] : "(none)";
        if (strcmp(x, y) != 0)
            fail_msg("databases differ:\n  script:    %.300s\n  reference: %.300s", x, y);
    }
    for (size_t i = 0; i < na; i++)
        free(da[i]);
    for (size_t i = 0; i < nb; i++)
        free(db[i]);
    free(da);
    free(db);
}

/* ---- random batches ---- */

typedef struct seen_s {
    char id[AT_UUID_STR_LEN + 1];
    int camp;
    int64_t ts_ms;
    at_event_type_t type;
} seen_t;

static uint64_t rng_state = 88172645463325252ULL;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static int rnd_in(int lo, int hi)
{
    return lo + (int)(rnd() % (uint64_t)(hi - lo + 1));
}

static const char *const camps[] = {"camp-a", "camp-b", "camp-c", "camp-d:x", "camp-e.1"};
#define NCAMPS 5

static void test_enr_budget_run__same_as_reference(void **state)
{
    AT_UNUSED(state);
    redisContext *mine = ts_redis_connect(redis.port), *ref = ts_redis_connect(redis.port);
    assert_non_null(mine);
    assert_non_null(ref);
    freeReplyObject(cmd(mine, "SELECT 1"));
    freeReplyObject(cmd(ref, "SELECT 2"));
    freeReplyObject(cmd(mine, "FLUSHDB"));
    freeReplyObject(cmd(ref, "FLUSHDB"));

    enr_budget_t b = {0};
    b.replay_window_s = 8 * 86400;
    at_err_t err;
    assert_int_equal(enr_budget_load(&b, mine, &err), 0);

    seen_t *seen = calloc(20000, sizeof(*seen));
    size_t nseen = 0;
    enr_charge_t *charges = calloc(600, sizeof(*charges));
    enr_stat_t *stats = calloc(64, sizeof(*stats));
    int *want = calloc(600, sizeof(int));
    assert_true(seen && charges && stats && want);
    at_uuid7_gen_t gen = {0};
    const int64_t base = INT64_C(1795786022123); /* 2026-11-27T13:27:02.123Z */
    static const char *const stat_fields[] = {"events", "imp", "click", "rejected", "rejected:bot"};
    int64_t budget[NCAMPS], price[NCAMPS];
    long long total_charged = 0, total_refused = 0, total_replays = 0, total_pub = 0;

    for (int round = 0; round < 400; round++) {
        if (round % 20 == 0) {
            /* A new era: budgets from tight to ample, spend somewhere below them, and now
             * and then a campaign that is already exhausted. */
            for (int c = 0; c < NCAMPS; c++) {
                price[c] = rnd_in(1, 4000);
                long long s;
                if (rnd() % 2 == 0) {
                    /* spend can reach the budget exactly (the charge that does marks the
                     * campaign exhausted) */
                    s = price[c] * rnd_in(0, 50);
                    budget[c] = s + price[c] * rnd_in(0, 250);
                } else {
                    budget[c] = price[c] * rnd_in(0, 300) + rnd_in(0, (int)price[c]);
                    s = rnd() % 3 == 0 ? 0 : rnd_in(0, (int)(budget[c] / 2 + 1));
                }
                freeReplyObject(cmd(mine, "SET adtrack:spend:%s %lld", camps[c], s));
                freeReplyObject(cmd(ref, "SET adtrack:spend:%s %lld", camps[c], s));
                const char *ex = rnd() % 8 == 0 ? "SET adtrack:exhausted:%s 1" : "DEL adtrack:exhausted:%s";
                freeReplyObject(cmd(mine, ex, camps[c]));
                freeReplyObject(cmd(ref, ex, camps[c]));
            }
        }
        size_t n = (size_t)rnd_in(0, round % 7 == 0 ? 600 : 120);
        for (size_t i = 0; i < n; i++) {
            enr_charge_t *c = &charges[i];
            memset(c, 0, sizeof(*c));
            int camp;
            if (nseen > 0 && rnd() % 5 == 0) {
                /* A replay: same id, campaign, time and type as a charge of an earlier batch
                 * (never of this one: a batch's ids are unique). */
                const seen_t *s = &seen[rnd() % nseen];
                bool dup = false;
                for (size_t j = 0; j < i && !dup; j++)
                    dup = strcmp(charges[j].id, s->id) == 0;
                if (dup) {
                    i--;
                    n--;
                    continue;
                }
                camp = s->camp;
                memcpy(c->id, s->id, sizeof(c->id));
                c->ts_ms = s->ts_ms;
                c->type = s->type;
                total_replays++;
            } else {
                at_uuid_t u;
                at_uuid7_next(&gen, (uint64_t)base, &u);
                at_uuid_format(&u, c->id);
                camp = rnd_in(0, NCAMPS - 1);
                /* three days, a handful of minutes each, in any order */
                c->ts_ms = base + (int64_t)rnd_in(0, 2) * 86400000 + (int64_t)rnd_in(0, 4) * 60000 + rnd_in(0, 59999);
                c->type = rnd() % 3 == 0 ? AT_EV_CLICK : AT_EV_IMP;
                if (nseen < 20000) {
                    seen_t *s = &seen[nseen++];
                    memcpy(s->id, c->id, sizeof(s->id));
                    s->camp = camp;
                    s->ts_ms = c->ts_ms;
                    s->type = c->type;
                }
            }
            c->c = camps[camp];
            c->clen = strlen(camps[camp]);
            /* Mostly the campaign's price and budget; now and then another (a change
             * arriving between two charges of one batch). */
            c->price_micros = rnd() % 20 == 0 ? rnd_in(1, 5000) : price[camp];
            c->budget_micros = rnd() % 20 == 0 ? budget[camp] + rnd_in(-1000, 1000) : budget[camp];
        }
        size_t ns = (size_t)rnd_in(0, 40);
        for (size_t i = 0; i < ns; i++) {
            int camp = rnd_in(0, NCAMPS - 1);
            int64_t ts = base + (int64_t)rnd_in(0, 2) * 86400000 + (int64_t)rnd_in(0, 4) * 60000;
            stats[i] = (enr_stat_t){camps[camp], strlen(camps[camp]), ts - ts % 60000,
                                    stat_fields[rnd() % AT_ARRAY_LEN(stat_fields)], rnd_in(1, 50)};
        }

        int pub_mine = -1, pub_ref = -1;
        uint64_t ncmds = 0;
        if (enr_budget_run(&b, mine, charges, n, stats, ns, &pub_mine, &ncmds, &err) != 0)
            fail_msg("round %d: %s", round, err.msg);
        assert_int_equal(ncmds, 1);
        ref_run(ref, b.replay_window_s, charges, n, stats, ns, want, &pub_ref);
        for (size_t i = 0; i < n; i++) {
            if ((int)charges[i].verdict != want[i])
                fail_msg("round %d, charge %zu (%s, %s): verdict %d, reference %d", round, i, charges[i].c,
                         charges[i].id, (int)charges[i].verdict, want[i]);
            total_charged += want[i] == 0;
            total_refused += want[i] == 2;
        }
        assert_int_equal(pub_mine, pub_ref);
        total_pub += pub_ref;
        if (round % 25 == 24 || round == 399)
            assert_same_db(mine, ref);
    }
    print_message("charged %lld, refused %lld, replays %lld, published %lld\n", total_charged, total_refused,
                  total_replays, total_pub);
    /* The random batches reached every branch. */
    assert_true(total_charged > 1000 && total_refused > 1000 && total_replays > 1000 && total_pub > 10);

    free(seen);
    free(charges);
    free(stats);
    free(want);
    enr_budget_fini(&b);
    redisFree(mine);
    redisFree(ref);
}

/* After SCRIPT FLUSH (what a Redis restart does to the script cache) the call loads the
 * script again with EVAL: two commands, the same answers. */
static void test_enr_budget_run__noscript_reloads(void **state)
{
    AT_UNUSED(state);
    redisContext *rc = ts_redis_connect(redis.port);
    assert_non_null(rc);
    freeReplyObject(cmd(rc, "SELECT 3"));
    freeReplyObject(cmd(rc, "FLUSHDB"));
    enr_budget_t b = {0};
    b.replay_window_s = 86400;
    at_err_t err;
    assert_int_equal(enr_budget_load(&b, rc, &err), 0);
    enr_charge_t ch[3] = {
        {.c = "camp-n", .clen = 6, .id = "0190a000-0000-7000-8000-000000000001", .price_micros = 10,
         .budget_micros = 25, .ts_ms = INT64_C(1795786022123), .type = AT_EV_CLICK},
        {.c = "camp-n", .clen = 6, .id = "0190a000-0000-7000-8000-000000000002", .price_micros = 10,
         .budget_micros = 25, .ts_ms = INT64_C(1795786022123), .type = AT_EV_CLICK},
        {.c = "camp-n", .clen = 6, .id = "0190a000-0000-7000-8000-000000000003", .price_micros = 10,
         .budget_micros = 25, .ts_ms = INT64_C(1795786022123), .type = AT_EV_CLICK},
    };
    int pub = 0;
    uint64_t ncmds = 0;
    freeReplyObject(cmd(rc, "SCRIPT FLUSH"));
    assert_int_equal(enr_budget_run(&b, rc, ch, 3, NULL, 0, &pub, &ncmds, &err), 0);
    assert_int_equal(ncmds, 2);
    assert_int_equal(ch[0].verdict, ENR_CHARGED);
    assert_int_equal(ch[1].verdict, ENR_CHARGED);
    assert_int_equal(ch[2].verdict, ENR_EXHAUSTED);
    assert_int_equal(pub, 1);
    /* Loaded again: the replay goes by EVALSHA and gets the first verdicts back. */
    ncmds = 0;
    assert_int_equal(enr_budget_run(&b, rc, ch, 3, NULL, 0, &pub, &ncmds, &err), 0);
    assert_int_equal(ncmds, 1);
    assert_int_equal(ch[0].verdict, ENR_ALREADY_CHARGED);
    assert_int_equal(ch[1].verdict, ENR_ALREADY_CHARGED);
    assert_int_equal(ch[2].verdict, ENR_EXHAUSTED);
    assert_int_equal(pub, 0);
    assert_int_equal(ts_redis_int(redis.port, "GET adtrack:spend:camp-n"), 0); /* DB 0: untouched */
    redisReply *r = cmd(rc, "GET adtrack:spend:camp-n");
    assert_string_equal(r->str, "20");
    freeReplyObject(r);
    enr_budget_fini(&b);
    redisFree(rc);
}

static int group_setup(void **state)
{
    AT_UNUSED(state);
    return ts_redis_start(&redis);
}

static int group_teardown(void **state)
{
    AT_UNUSED(state);
    ts_redis_stop(&redis);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enr_budget_run__same_as_reference),
        cmocka_unit_test(test_enr_budget_run__noscript_reloads),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
