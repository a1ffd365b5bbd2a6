/*
 * at_redis.c: opening an authenticated hiredis connection from a --redis option (see
 * at_redis.h).
 */
#include "at_redis.h"

#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/time.h>

#include "at_secret.h"

#define DEFAULT_PORT 6379
#define DB_MAX 1000000

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes [s, s+n) into @p out (size @p outlen); -1 if it does not fit. */
static int pct_decode(const char *s, size_t n, char *out, size_t outlen)
{
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '%' && i + 2 < n && hexval(s[i + 1]) >= 0 && hexval(s[i + 2]) >= 0) {
            c = (char)(hexval(s[i + 1]) * 16 + hexval(s[i + 2]));
            i += 2;
        }
        if (j + 1 >= outlen)
            return -1;
        out[j++] = c;
    }
    out[j] = '\0';
    return 0;
}

/* HOST:PORT, [V6]:PORT or HOST (with @p port_optional) into @p a. */
static int parse_hostport(const char *s, size_t n, bool port_optional, at_redis_addr_t *a, at_err_t *err)
{
    const char *hend, *colon = NULL;
    const char *hstart = s;
    if (n > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (rb == NULL)
            return at_err_set(err, AT_ERR_INVALID, "--redis: expected ']' after an IPv6 address");
        hstart = s + 1;
        hend = rb;
        if (rb + 1 < s + n) {
            if (rb[1] != ':')
                return at_err_set(err, AT_ERR_INVALID, "--redis: expected ':' after ']'");
            colon = rb + 1;
        }
    } else {
        for (size_t i = 0; i < n; i++)
            if (s[i] == ':')
                colon = s + i;
        hend = colon != NULL ? colon : s + n;
    }
    size_t hl = (size_t)(hend - hstart);
    if (hl == 0 || hl >= sizeof(a->host))
        return at_err_set(err, AT_ERR_INVALID, "--redis: expected a host name of 1 to %zu bytes", sizeof(a->host) - 1);
    memcpy(a->host, hstart, hl);
    a->host[hl] = '\0';
    if (colon == NULL) {
        if (!port_optional)
            return at_err_set(err, AT_ERR_INVALID,
                              "--redis: expected HOST:PORT, redis://[USER[:PASSWORD]@]HOST[:PORT][/DB] or a socket path");
        a->port = DEFAULT_PORT;
        return 0;
    }
    const char *p = colon + 1;
    size_t pl = (size_t)(s + n - p);
    int port = 0;
    for (size_t i = 0; i < pl; i++) {
        if (p[i] < '0' || p[i] > '9' || port > 65535) {
            port = -1;
            break;
        }
        port = port * 10 + (p[i] - '0');
    }
    if (pl == 0 || port <= 0 || port > 65535)
        return at_err_set(err, AT_ERR_INVALID, "--redis: expected a port from 1 to 65535");
    a->port = port;
    return 0;
}

static int parse_url(const char *u, at_redis_addr_t *a, at_err_t *err)
{
    const char *rest = u + strlen("redis://");
    size_t alen = strcspn(rest, "/?#");
    const char *at = NULL;
    for (size_t i = 0; i < alen; i++)
        if (rest[i] == '@')
            at = rest + i;
    const char *hp = rest;
    if (at != NULL) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        size_t ul = colon != NULL ? (size_t)(colon - rest) : (size_t)(at - rest);
        if (pct_decode(rest, ul, a->user, sizeof(a->user)) != 0)
            return at_err_set(err, AT_ERR_INVALID, "--redis: user name longer than %zu bytes", sizeof(a->user) - 1);
        if (colon != NULL && colon + 1 < at) {
            size_t pl = (size_t)(at - colon - 1);
            a->password = malloc(pl + 1);
            if (a->password == NULL)
                return at_err_set(err, AT_ERR_NOMEM, "--redis: out of memory");
            pct_decode(colon + 1, pl, a->password, pl + 1);
        }
        hp = at + 1;
    }
    if (parse_hostport(hp, (size_t)(rest + alen - hp), true, a, err) != 0)
        return -1;
    const char *tail = rest + alen;
    if (*tail == '/' && tail[1] != '\0') {
        char *end = NULL;
        long db = strtol(tail + 1, &end, 10);
        if (end == tail + 1 || *end != '\0' || db < 0 || db > DB_MAX)
            return at_err_set(err, AT_ERR_INVALID, "--redis: expected a database number after '/'");
        a->db = (int)db;
    } else if (*tail != '\0' && strcmp(tail, "/") != 0) {
        return at_err_set(err, AT_ERR_INVALID, "--redis: unexpected text after the address (query options are not supported)");
    }
    return 0;
}

int at_redis_addr_parse(const char *addr, const char *password, at_redis_addr_t *a, at_err_t *err)
{
    memset(a, 0, sizeof(*a));
    int rc;
    if (addr == NULL || addr[0] == '\0') {
        rc = at_err_set(err, AT_ERR_INVALID, "--redis: expected an address");
    } else if (strncasecmp(addr, "rediss://", 9) == 0) {
        rc = at_err_set(err, AT_ERR_INVALID,
                        "--redis: rediss:// (TLS) is not supported by hiredis 0.14; run a local TLS tunnel "
                        "(stunnel, HAProxy) and point --redis at it (docs/SECURITY.md)");
    } else if (strncasecmp(addr, "redis://", 8) == 0) {
        rc = parse_url(addr, a, err);
    } else if (addr[0] == '/') {
        if (strlen(addr) >= sizeof(a->path))
            rc = at_err_set(err, AT_ERR_INVALID, "--redis: socket path longer than %zu bytes", sizeof(a->path) - 1);
        else
            rc = (snprintf(a->path, sizeof(a->path), "%s", addr), 0);
    } else if (strstr(addr, "://") != NULL) {
        rc = at_err_set(err, AT_ERR_INVALID, "--redis: expected redis://, HOST:PORT or a socket path");
    } else {
        rc = parse_hostport(addr, strlen(addr), false, a, err);
    }
    if (rc == 0 && password != NULL && password[0] != '\0') {
        if (a->password != NULL)
            rc = at_err_set(err, AT_ERR_INVALID,
                            "--redis holds a password and --redis-password gives one too: expected only one");
        else if ((a->password = strdup(password)) == NULL)
            rc = at_err_set(err, AT_ERR_NOMEM, "--redis-password: out of memory");
    }
    if (rc == 0 && a->user[0] != '\0' && a->password == NULL)
        rc = at_err_set(err, AT_ERR_INVALID, "--redis: user '%.64s' without a password (in the URL or --redis-password)",
                        a->user);
    if (rc != 0)
        at_redis_addr_free(a);
    return rc;
}

void at_redis_addr_free(at_redis_addr_t *a)
{
    if (a == NULL)
        return;
    at_secret_wipe(a->password);
    free(a->password);
    a->password = NULL;
}

const char *at_redis_addr_str(const at_redis_addr_t *a, char *buf, size_t len)
{
    bool v6 = strchr(a->host, ':') != NULL;
    if (a->path[0] != '\0')
        snprintf(buf, len, "%s", a->path);
    else if (a->user[0] == '\0' && a->password == NULL && a->db == 0)
        snprintf(buf, len, v6 ? "[%s]:%d" : "%s:%d", a->host, a->port);
    else
        snprintf(buf, len, v6 ? "redis://%s%s[%s]:%d/%d" : "redis://%s%s%s:%d/%d", a->user, a->password ? "@" : "",
                 a->host, a->port, a->db);
    return buf;
}

/* The text of an error reply, or of the context's error. */
static const char *reply_text(redisContext *c, redisReply *r)
{
    if (r == NULL)
        return c->errstr[0] ? c->errstr : "no reply";
    if (r->type == REDIS_REPLY_ERROR)
        return r->str;
    return "unexpected reply";
}

redisContext *at_redis_connect(const char *addr, const char *password, int64_t timeout_ms, at_err_t *err)
{
    at_redis_addr_t a;
    char where[400];
    if (at_redis_addr_parse(addr, password, &a, err) != 0)
        return NULL;
    at_redis_addr_str(&a, where, sizeof(where));
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    redisContext *rc = a.path[0] != '\0' ? redisConnectUnixWithTimeout(a.path, tv)
                                         : redisConnectWithTimeout(a.host, a.port, tv);
    if (rc == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "redis: out of memory");
        goto fail;
    }
    if (rc->err) {
        at_err_set(err, AT_ERR_UNAVAILABLE, "redis %s: %s", where, rc->errstr);
        goto fail;
    }
    redisSetTimeout(rc, tv);
    if (a.password != NULL) {
        /* "AUTH user password" needs Redis 6 (ACL); a plain requirepass takes the password alone. */
        redisReply *r = a.user[0] != '\0' ? redisCommand(rc, "AUTH %s %s", a.user, a.password)
                                          : redisCommand(rc, "AUTH %s", a.password);
        bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        if (!ok) {
            /* A reply means Redis refused; no reply means the link broke. */
            at_err_set(err, r != NULL ? AT_ERR_AUTH : AT_ERR_UNAVAILABLE, "redis %s: authentication %s: %s", where,
                       r != NULL ? "refused" : "failed", reply_text(rc, r));
            if (r != NULL)
                freeReplyObject(r);
            goto fail;
        }
        freeReplyObject(r);
    }
    if (a.db != 0) {
        redisReply *r = redisCommand(rc, "SELECT %d", a.db);
        bool ok = r != NULL && r->type == REDIS_REPLY_STATUS;
        if (!ok) {
            bool noperm = r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOPERM", 6) == 0;
            at_err_set(err, noperm ? AT_ERR_AUTH : r != NULL ? AT_ERR_INVALID : AT_ERR_UNAVAILABLE,
                       "redis %s: SELECT %d failed: %s", where, a.db, reply_text(rc, r));
            if (r != NULL)
                freeReplyObject(r);
            goto fail;
        }
        freeReplyObject(r);
    }
    at_redis_addr_free(&a);
    return rc;

fail:
    if (rc != NULL)
        redisFree(rc);
    at_redis_addr_free(&a);
    return NULL;
}

/* Splits @p line at spaces into @p argv (at most @p max words, pointing into @p buf). */
static int split_words(const char *line, char *buf, size_t buflen, const char **argv, int max)
{
    snprintf(buf, buflen, "%s", line);
    int n = 0;
    for (char *save = NULL, *w = strtok_r(buf, " ", &save); w != NULL && n < max; w = strtok_r(NULL, " ", &save))
        argv[n++] = w;
    return n;
}

int at_redis_check_acl(redisContext *rc, const char *const *probes, at_err_t *err)
{
    size_t n = 0;
    while (probes != NULL && probes[n] != NULL)
        n++;
    if (n == 0)
        return 0;
    /* MULTI on its own first: were it refused, pipelined probes would run for real. */
    redisReply *r = redisCommand(rc, "MULTI");
    if (r == NULL)
        return at_err_set(err, AT_ERR_UNAVAILABLE, "redis: %s", rc->errstr[0] ? rc->errstr : "no reply");
    bool in_multi = r->type == REDIS_REPLY_STATUS;
    freeReplyObject(r);
    if (!in_multi)
        return 0;
    /* The probes and DISCARD, pipelined: one more round trip. */
    for (size_t i = 0; i < n; i++) {
        char buf[512];
        const char *argv[16];
        int argc = split_words(probes[i], buf, sizeof(buf), argv, 16);
        if (redisAppendCommandArgv(rc, argc, argv, NULL) != REDIS_OK)
            return at_err_set(err, AT_ERR_UNAVAILABLE, "redis: %s", rc->errstr);
    }
    if (redisAppendCommand(rc, "DISCARD") != REDIS_OK)
        return at_err_set(err, AT_ERR_UNAVAILABLE, "redis: %s", rc->errstr);
    int result = 0;
    for (size_t i = 0; i <= n; i++) {
        r = NULL;
        if (redisGetReply(rc, (void **)&r) != REDIS_OK || r == NULL)
            return at_err_set(err, AT_ERR_UNAVAILABLE, "redis: %s", rc->errstr[0] ? rc->errstr : "no reply");
        /* Only NOPERM counts: other errors (a command not allowed inside MULTI) say nothing
         * about permissions. */
        bool noperm = r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOPERM", 6) == 0;
        if (i < n && noperm && result == 0)
            result = at_err_set(err, AT_ERR_AUTH, "redis: the user may not run %.*s (as adtrack does): %.160s",
                                (int)strcspn(probes[i], " "), probes[i], r->str);
        freeReplyObject(r);
    }
    return result;
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
