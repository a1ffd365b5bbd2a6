/*
 * at_log.c: JSON-lines logging (see at_log.h).
 *
 * A record is built in a local buffer and handed to the kernel with a single write(2), so
 * lines from different threads never interleave (writes to pipes up to PIPE_BUF are atomic,
 * and in practice so are writes to files opened O_APPEND and to terminals).
 */
#include "at_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* Globals are atomics rather than mutex-protected: they are read on every record from any
 * thread and written only at start-up or by tests. */
static _Atomic int log_level = AT_LOG_INFO;
static _Atomic int log_fd = 2;

/* Registered secrets (at_log_add_secret). Entries are written under secrets_mu and only then
 * published by the release store of secrets_n, so a reader on any thread that loads the count
 * (acquire) sees complete entries without taking the lock. Entries are never removed. */
#define SECRETS_MAX 64
#define SECRET_MIN_LEN 4
#define SECRET_MASK "***"
static char *secrets[SECRETS_MAX];
static size_t secret_lens[SECRETS_MAX];
static _Atomic size_t secrets_n = 0;
static pthread_mutex_t secrets_mu = PTHREAD_MUTEX_INITIALIZER;

/* Most records fit on the stack; bigger ones move to the heap. */
#define LOG_STACK_BUF 1024

typedef struct logbuf_s {
    char *p;
    size_t len, cap;
    bool heap;
    bool truncated; /* allocation failed: the record is cut, but still emitted */
    char stack[LOG_STACK_BUF];
} logbuf_t;

static bool lb_reserve(logbuf_t *b, size_t extra)
{
    if (b->truncated)
        return false;
    if (b->len + extra <= b->cap)
        return true;
    size_t cap = b->cap * 2;
    while (cap < b->len + extra)
        cap *= 2;
    char *p = b->heap ? realloc(b->p, cap) : malloc(cap);
    if (p == NULL) {
        b->truncated = true;
        return false;
    }
    if (!b->heap)
        memcpy(p, b->p, b->len);
    b->p = p;
    b->cap = cap;
    b->heap = true;
    return true;
}

static void lb_put(logbuf_t *b, const char *s, size_t n)
{
    if (lb_reserve(b, n)) {
        memcpy(b->p + b->len, s, n);
        b->len += n;
    }
}

static void lb_puts(logbuf_t *b, const char *s)
{
    lb_put(b, s, strlen(s));
}

/* Length of the valid UTF-8 sequence starting at @p s (at most @p n bytes), or 0 if the
 * bytes there are not valid UTF-8 (overlong forms and surrogates included). */
static size_t utf8_seq_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/*
 * Appends @p s as a JSON string literal. Values often come from requests (user agents,
 * query strings), so anything that could break the line or the JSON is escaped: quotes,
 * backslashes, all control characters, and invalid UTF-8 (replaced by U+FFFD so parsers
 * that insist on valid UTF-8 still accept the line).
 */
static void lb_json_str_raw(logbuf_t *b, const char *s);

/* @p s with every registered secret replaced by "***", as a new string (caller frees), or
 * NULL when it holds none (or out of memory, in which case the caller drops the value). */
static char *scrub(const char *s, bool *oom)
{
    size_t n = atomic_load_explicit(&secrets_n, memory_order_acquire);
    char *cur = NULL;
    *oom = false;
    for (size_t i = 0; i < n; i++) {
        const char *src = cur != NULL ? cur : s;
        const char *hit = strstr(src, secrets[i]);
        if (hit == NULL)
            continue;
        /* The masked text is never longer than the original (secrets are >= 4 bytes). */
        char *dst = malloc(strlen(src) + 1);
        if (dst == NULL) {
            free(cur);
            *oom = true;
            return NULL;
        }
        size_t j = 0;
        while (hit != NULL) {
            memcpy(dst + j, src, (size_t)(hit - src));
            j += (size_t)(hit - src);
            memcpy(dst + j, SECRET_MASK, sizeof(SECRET_MASK) - 1);
            j += sizeof(SECRET_MASK) - 1;
            src = hit + secret_lens[i];
            hit = strstr(src, secrets[i]);
        }
        memcpy(dst + j, src, strlen(src) + 1);
        free(cur);
        cur = dst;
    }
    return cur;
}

int at_log_add_secret(const char *s)
{
    if (s == NULL || strlen(s) < SECRET_MIN_LEN)
        return -1;
    int rc = -1;
    pthread_mutex_lock(&secrets_mu);
    size_t n = atomic_load_explicit(&secrets_n, memory_order_relaxed);
    bool known = false;
    for (size_t i = 0; i < n && !known; i++)
        known = strcmp(secrets[i], s) == 0;
    if (known) {
        rc = 0;
    } else if (n < SECRETS_MAX && (secrets[n] = strdup(s)) != NULL) {
        secret_lens[n] = strlen(s);
        atomic_store_explicit(&secrets_n, n + 1, memory_order_release);
        rc = 0;
    }
    pthread_mutex_unlock(&secrets_mu);
    return rc;
}

static void lb_json_str(logbuf_t *b, const char *s)
{
    if (atomic_load_explicit(&secrets_n, memory_order_relaxed) == 0) {
        lb_json_str_raw(b, s);
        return;
    }
    bool oom;
    char *clean = scrub(s, &oom);
    lb_json_str_raw(b, oom ? "(value dropped: out of memory while masking secrets)" : clean != NULL ? clean : s);
    free(clean);
}

static void lb_json_str_raw(logbuf_t *b, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s);
    lb_put(b, "\"", 1);
    for (size_t i = 0; i < n;) {
        unsigned char c = p[i];
        char esc[8];
        if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            lb_put(b, esc, 2);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            const char *named = c == '\n' ? "\\n" : c == '\r' ? "\\r" : c == '\t' ? "\\t" : NULL;
            if (named != NULL) {
                lb_puts(b, named);
            } else {
                snprintf(esc, sizeof(esc), "\\u%04x", c);
                lb_put(b, esc, 6);
            }
            i++;
        } else {
            size_t len = utf8_seq_len(p + i, n - i);
            if (len == 0) {
                lb_puts(b, "\\ufffd");
                i++;
            } else {
                lb_put(b, (const char *)p + i, len);
                i += len;
            }
        }
    }
    lb_put(b, "\"", 1);
}

static const char *level_name(at_log_level_t level)
{
    switch (level) {
    case AT_LOG_DEBUG:
        return "debug";
    case AT_LOG_INFO:
        return "info";
    case AT_LOG_WARN:
        return "warn";
    case AT_LOG_ERROR:
        return "error";
    }
    return "unknown";
}

void at_log_set_level(at_log_level_t level)
{
    atomic_store_explicit(&log_level, (int)level, memory_order_relaxed);
}

int at_log_parse_level(const char *s, at_log_level_t *level)
{
    static const at_log_level_t all[] = {AT_LOG_DEBUG, AT_LOG_INFO, AT_LOG_WARN, AT_LOG_ERROR};
    if (s == NULL)
        return -1;
    for (size_t i = 0; i < AT_ARRAY_LEN(all); i++) {
        if (strcmp(s, level_name(all[i])) == 0) {
            *level = all[i];
            return 0;
        }
    }
    return -1;
}

void at_log_set_fd(int fd)
{
    atomic_store_explicit(&log_fd, fd, memory_order_relaxed);
}

static bool enabled(at_log_level_t level)
{
    return (int)level >= atomic_load_explicit(&log_level, memory_order_relaxed);
}

static void write_all(int fd, const char *p, size_t len)
{
    /* Normally one iteration. A short write (full pipe, signal) is finished rather than
     * dropped; logging must never fail the caller, so errors are ignored. */
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return;
        }
        p += n;
        len -= (size_t)n;
    }
}

/* Builds and writes one record. @p kv is the NULL-terminated key/value list or NULL. */
static void emit(at_log_level_t level, const char *comp, const char *msg, va_list *kv)
{
    logbuf_t b;
    b.p = b.stack;
    b.len = 0;
    b.cap = sizeof(b.stack);
    b.heap = false;
    b.truncated = false;

    struct timespec ts;
    struct tm tm;
    char tbuf[48];
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t tl = strftime(tbuf, sizeof(tbuf), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(tbuf + tl, sizeof(tbuf) - tl, ".%03ldZ", ts.tv_nsec / 1000000L);

    lb_puts(&b, "{\"ts\":\"");
    lb_puts(&b, tbuf);
    lb_puts(&b, "\",\"level\":\"");
    lb_puts(&b, level_name(level));
    lb_puts(&b, "\",\"comp\":");
    lb_json_str(&b, comp ? comp : "");
    lb_puts(&b, ",\"msg\":");
    lb_json_str(&b, msg ? msg : "");
    if (kv != NULL) {
        const char *k;
        while ((k = va_arg(*kv, const char *)) != NULL) {
            const char *v = va_arg(*kv, const char *);
            lb_put(&b, ",", 1);
            lb_json_str(&b, k);
            lb_put(&b, ":", 1);
            /* A NULL value is a caller mistake that should not crash the logger. */
            if (v != NULL)
                lb_json_str(&b, v);
            else
                lb_puts(&b, "null");
        }
    }
    lb_puts(&b, "}\n");

    if (b.truncated) {
        /* Out of memory mid-record: emit what fits in the stack buffer as a valid line
         * instead of a cut-off JSON fragment. */
        int n =
            snprintf(b.stack, sizeof(b.stack),
                     "{\"ts\":\"%s\",\"level\":\"%s\",\"comp\":\"log\",\"msg\":\"record dropped: out of memory\"}\n",
                     tbuf, level_name(level));
        write_all(atomic_load_explicit(&log_fd, memory_order_relaxed), b.stack,
                  (size_t)AT_MIN(n, (int)sizeof(b.stack) - 1));
    } else {
        write_all(atomic_load_explicit(&log_fd, memory_order_relaxed), b.p, b.len);
    }
    if (b.heap)
        free(b.p);
}

bool at_log_gate(at_log_gate_t *g, const char *msg, int interval_s)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)(msg ? msg : ""); *p != '\0'; p++)
        h = (h ^ *p) * 1099511628211ULL;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t now = (int64_t)ts.tv_sec;
    if (g->last_s != 0 && h == g->hash && now - g->last_s < interval_s)
        return false;
    g->hash = h;
    g->last_s = now == 0 ? 1 : now;
    return true;
}

void at_log(at_log_level_t level, const char *comp, const char *msg, ...)
{
    if (!enabled(level))
        return;
    va_list ap;
    va_start(ap, msg);
    emit(level, comp, msg, &ap);
    va_end(ap);
}

void at_logf(at_log_level_t level, const char *comp, const char *fmt, ...)
{
    if (!enabled(level))
        return;
    char stackmsg[512];
    char *msg = stackmsg;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(stackmsg, sizeof(stackmsg), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(stackmsg)) {
        /* Long messages get the heap; if that fails the truncated stack copy is logged. */
        char *heapmsg = malloc((size_t)n + 1);
        if (heapmsg != NULL) {
            va_start(ap, fmt);
            vsnprintf(heapmsg, (size_t)n + 1, fmt, ap);
            va_end(ap);
            msg = heapmsg;
        }
    } else if (n < 0) {
        stackmsg[0] = '\0';
    }
    emit(level, comp, msg, NULL);
    if (msg != stackmsg)
        free(msg);
}
