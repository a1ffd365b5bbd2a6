/*
 * at_redis.c: opening a hiredis connection from a --redis option (see at_redis.h).
 */
#include "at_redis.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

redisContext *at_redis_connect(const char *addr, int64_t timeout_ms, at_err_t *err)
{
    char host[256];
    const char *colon = strrchr(addr, ':');
    if (colon == NULL || colon == addr || (size_t)(colon - addr) >= sizeof(host)) {
        at_err_set(err, AT_ERR_INVALID, "--redis: expected HOST:PORT, got '%s'", addr);
        return NULL;
    }
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    int port = atoi(colon + 1);
    if (port <= 0 || port > 65535) {
        at_err_set(err, AT_ERR_INVALID, "--redis: expected a port from 1 to 65535 in '%s'", addr);
        return NULL;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *rc = redisConnectWithTimeout(host, port, tv);
    if (rc == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "redis: out of memory");
        return NULL;
    }
    if (rc->err) {
        at_err_set(err, AT_ERR_UNAVAILABLE, "redis %s: %s", addr, rc->errstr);
        redisFree(rc);
        return NULL;
    }
    redisSetTimeout(rc, tv);
    return rc;
}

void at_redis_sub_pump(redisContext *sub, const atomic_bool *stopping, void (*on_message)(void *arg, redisReply *r),
                       void *arg)
{
    while (!atomic_load(stopping)) {
        void *reply = NULL;
        if (redisGetReplyFromReader(sub, &reply) != REDIS_OK)
            return;
        if (reply != NULL) {
            on_message(arg, reply);
            freeReplyObject(reply);
            continue;
        }
        struct pollfd pfd = {.fd = sub->fd, .events = POLLIN};
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        if (redisBufferRead(sub) != REDIS_OK)
            return;
    }
}
