/*
 * at_test_coredata.c: see at_test_coredata.h.
 */
#include "at_test_coredata.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>

#include <bson/bson.h>
#include <stdlib.h>
#include <time.h>

#include "at_common.h"

redisContext *ts_redis_connect(int port)
{
    struct timeval tv = {5, 0};
    redisContext *rc = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (rc == NULL || rc->err) {
        if (rc != NULL)
            redisFree(rc);
        return NULL;
    }
    redisSetTimeout(rc, tv);
    return rc;
}

long long ts_redis_int(int port, const char *fmt, ...)
{
    redisContext *rc = ts_redis_connect(port);
    assert_non_null(rc);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(rc, fmt, ap);
    va_end(ap);
    assert_non_null(r);
    long long v = r->type == REDIS_REPLY_INTEGER ? r->integer
                  : r->type == REDIS_REPLY_STRING ? atoll(r->str)
                                                  : 0;
    freeReplyObject(r);
    redisFree(rc);
    return v;
}

long long ts_redis_stats_sum(int port, const char *c, const char *field)
{
    redisContext *rc = ts_redis_connect(port);
    assert_non_null(rc);
    redisReply *keys = redisCommand(rc, "KEYS adtrack:stats:%s:*", c);
    assert_non_null(keys);
    assert_int_equal(keys->type, REDIS_REPLY_ARRAY);
    long long sum = 0;
    for (size_t i = 0; i < keys->elements; i++) {
        redisReply *v = redisCommand(rc, "HGET %s %s", keys->element[i]->str, field);
        assert_non_null(v);
        if (v->type == REDIS_REPLY_STRING)
            sum += atoll(v->str);
        freeReplyObject(v);
    }
    freeReplyObject(keys);
    redisFree(rc);
    return sum;
}

void ts_seed_campaign(int port, const char *id, const char *pricing, long long price_micros, long long budget_micros,
                      const char *status, uint64_t version)
{
    char doc[1024];
    snprintf(doc, sizeof(doc),
             "{\"id\":\"%s\",\"advertiser\":\"adv-%s\",\"advertiser_name\":\"Advertiser of %s\",\"name\":\"Campaign %s\","
             "\"status\":\"%s\",\"start\":\"2020-01-01T00:00:00Z\",\"end\":\"2099-01-01T00:00:00Z\","
             "\"budget_micros\":%lld,\"pricing\":\"%s\",\"price_micros\":%lld,\"publishers\":[\"pub-1\",\"pub-2\"],"
             "\"destinations\":[],\"version\":%llu}",
             id, id, id, id, status, budget_micros, pricing, price_micros, (unsigned long long)version);
    char ver[32];
    snprintf(ver, sizeof(ver), "%llu", (unsigned long long)version);
    ts_redis_int(port, "HSET adtrack:campaign:%s version %s doc %s", id, ver, doc);
    ts_redis_int(port, "SADD adtrack:campaigns %s", id);
}

void ts_seed_publishers(int port)
{
    const char *p1 = "{\"id\":\"pub-1\",\"name\":\"Daily News\",\"domain\":\"news.example\",\"status\":\"active\",\"version\":2}";
    const char *p3 = "{\"id\":\"pub-3\",\"name\":\"Elsewhere\",\"domain\":\"else.example\",\"status\":\"active\",\"version\":3}";
    ts_redis_int(port, "HSET adtrack:publisher:pub-1 version 2 doc %s", p1);
    ts_redis_int(port, "HSET adtrack:publisher:pub-3 version 3 doc %s", p3);
    ts_redis_int(port, "SADD adtrack:publishers pub-1 pub-3");
}

char *ts_event_json(const ts_evspec_t *s, at_uuid7_gen_t *gen, size_t *len)
{
    at_event_t ev;
    memset(&ev, 0, sizeof(ev));
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    ev.ts_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    if (s->id != NULL)
        ev.id = *s->id;
    else
        at_uuid7_next(gen, (uint64_t)ev.ts_ms, &ev.id);
    ev.type = s->type ? s->type : AT_EV_IMP;
    ev.src = AT_SRC_PIXEL;
    ev.c = (at_str_t){s->c, strlen(s->c)};
    if (s->p != NULL)
        ev.p = (at_str_t){s->p, strlen(s->p)};
    const char *ua = s->ua ? s->ua : "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0 Safari/537.36";
    ev.ua = (at_str_t){ua, strlen(ua)};
    ev.ip = AT_STR_LIT("198.51.100.0");
    ev.tag = (at_str_t){s->tag, strlen(s->tag)};
    return at_event_to_json(&ev, len);
}
