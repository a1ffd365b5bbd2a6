/*
 * at_test_load.c: closed-loop HTTP generator and Kafka tag counter for the chaos tests
 * (see at_test_load.h).
 *
 * Threads: each generator thread owns its connections and its outcome array; the main
 * thread reads the arrays only after ts_load_stop() joined the threads. The tag counter's
 * consumer thread owns its count arrays; they are read after ts_tagcount_finish() joined it.
 * Live totals are relaxed atomics.
 */
#include "at_test_load.h"

#include "at_common.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A growable byte per sequence number; written by one thread. */
typedef struct bytemap_s {
    uint8_t *v;
    uint64_t cap;
} bytemap_t;

static int bytemap_set(bytemap_t *m, uint64_t i, uint8_t value)
{
    if (i >= m->cap) {
        uint64_t cap = m->cap ? m->cap : 65536;
        while (cap <= i)
            cap *= 2;
        uint8_t *v = realloc(m->v, cap);
        if (v == NULL)
            return -1;
        memset(v + m->cap, 0, cap - m->cap);
        m->v = v;
        m->cap = cap;
    }
    m->v[i] = value;
    return 0;
}

static uint8_t bytemap_get(const bytemap_t *m, uint64_t i)
{
    return i < m->cap ? m->v[i] : 0;
}

/* ---- generator ---- */

enum { C_CLOSED, C_CONNECTING, C_IDLE, C_SENDING, C_READING };

typedef struct lconn_s {
    int fd;
    int state;
    int64_t retry_at_us; /* after a failed connect */
    char req[1024];
    size_t reqlen, reqoff;
    char buf[16384];
    size_t buflen;
    uint64_t seq;
    int64_t sent_us;
} lconn_t;

typedef struct lthread_s {
    struct ts_load_s *l;
    int index;
    pthread_t tid;
    int ep;
    lconn_t *conns;
    int nconns;
    uint64_t next_seq;
    bytemap_t outcome;
} lthread_t;

struct ts_load_s {
    ts_load_opts_t o;
    char path[512];
    char ua[512];
    char headers[1024];
    struct sockaddr_in addr, source;
    lthread_t th[TS_LOAD_MAX_THREADS];
    int nthreads;
    atomic_bool stop;
    atomic_uint_fast64_t sent, ok, other, noanswer, connfail, max_lat;
    atomic_uint_fast64_t cls[6];
};

static void conn_close(lthread_t *t, lconn_t *c)
{
    if (c->fd >= 0) {
        epoll_ctl(t->ep, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = C_CLOSED;
    c->buflen = 0;
}

/* Records the fate of the request in flight on @p c. */
static void record(lthread_t *t, lconn_t *c, int outcome, int status)
{
    struct ts_load_s *l = t->l;
    if (bytemap_set(&t->outcome, c->seq, (uint8_t)outcome) != 0) {
        fprintf(stderr, "[load] out of memory\n");
        abort();
    }
    if (outcome == TS_REQ_NOANSWER) {
        atomic_fetch_add_explicit(&l->noanswer, 1, memory_order_relaxed);
        return;
    }
    atomic_fetch_add_explicit(outcome == TS_REQ_2XX ? &l->ok : &l->other, 1, memory_order_relaxed);
    if (status >= 100 && status < 600)
        atomic_fetch_add_explicit(&l->cls[status / 100], 1, memory_order_relaxed);
    uint64_t lat = (uint64_t)(now_us() - c->sent_us);
    uint64_t prev = atomic_load_explicit(&l->max_lat, memory_order_relaxed);
    while (lat > prev && !atomic_compare_exchange_weak(&l->max_lat, &prev, lat))
        ;
}

static void conn_open(lthread_t *t, lconn_t *c)
{
    struct ts_load_s *l = t->l;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (l->source.sin_family == AF_INET && bind(fd, (struct sockaddr *)&l->source, sizeof(l->source)) != 0) {
        close(fd);
        atomic_fetch_add_explicit(&l->connfail, 1, memory_order_relaxed);
        c->retry_at_us = now_us() + 20000;
        return;
    }
    int rc = connect(fd, (struct sockaddr *)&l->addr, sizeof(l->addr));
    if (rc != 0 && errno != EINPROGRESS) {
        close(fd);
        atomic_fetch_add_explicit(&l->connfail, 1, memory_order_relaxed);
        c->retry_at_us = now_us() + 20000;
        return;
    }
    c->fd = fd;
    c->state = C_CONNECTING;
    c->buflen = 0;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    epoll_ctl(t->ep, EPOLL_CTL_ADD, fd, &ev);
}

static void conn_want(lthread_t *t, lconn_t *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Sends what is left of the request; on EAGAIN waits for EPOLLOUT. */
static void conn_flush(lthread_t *t, lconn_t *c)
{
    while (c->reqoff < c->reqlen) {
        ssize_t n = send(c->fd, c->req + c->reqoff, c->reqlen - c->reqoff, MSG_NOSIGNAL);
        if (n > 0) {
            c->reqoff += (size_t)n;
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->state = C_SENDING;
            conn_want(t, c, EPOLLOUT | EPOLLIN);
            return;
        }
        record(t, c, TS_REQ_NOANSWER, 0);
        conn_close(t, c);
        return;
    }
    c->state = C_READING;
    conn_want(t, c, EPOLLIN);
}

static void conn_send_next(lthread_t *t, lconn_t *c)
{
    struct ts_load_s *l = t->l;
    c->seq = t->next_seq++;
    int camp = (int)(c->seq % (uint64_t)l->o.ncampaigns);
    int n = snprintf(c->req, sizeof(c->req),
                     "GET %s&c=camp-%d&tag=%d-%llu HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: %s\r\n%s\r\n", l->path,
                     camp, t->index, (unsigned long long)c->seq, l->ua, l->headers);
    c->reqlen = (size_t)n;
    c->reqoff = 0;
    c->sent_us = now_us();
    atomic_fetch_add_explicit(&l->sent, 1, memory_order_relaxed);
    conn_flush(t, c);
}

/* Parses one whole response at the start of c->buf. Returns its length (0 = incomplete),
 * and sets *status and *close. -1 when the bytes are not HTTP. */
static long parse_response(const lconn_t *c, int *status, bool *close_after)
{
    const char *end = memmem(c->buf, c->buflen, "\r\n\r\n", 4);
    if (end == NULL)
        return c->buflen >= sizeof(c->buf) ? -1 : 0;
    size_t hlen = (size_t)(end - c->buf) + 4;
    if (c->buflen < 12 || memcmp(c->buf, "HTTP/1.", 7) != 0)
        return -1;
    *status = atoi(c->buf + 9);
    long clen = 0;
    *close_after = false;
    for (const char *p = c->buf; p < end;) {
        const char *eol = memmem(p, (size_t)(end - p) + 2, "\r\n", 2);
        if (eol == NULL)
            break;
        if ((size_t)(eol - p) > 15 && strncasecmp(p, "content-length:", 15) == 0)
            clen = atol(p + 15);
        if ((size_t)(eol - p) > 11 && strncasecmp(p, "connection:", 11) == 0 && memmem(p, (size_t)(eol - p), "close", 5))
            *close_after = true;
        p = eol + 2;
    }
    if (clen < 0 || hlen + (size_t)clen > sizeof(c->buf))
        return -1;
    return c->buflen >= hlen + (size_t)clen ? (long)(hlen + (size_t)clen) : 0;
}

static void conn_readable(lthread_t *t, lconn_t *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, c->buf + c->buflen, sizeof(c->buf) - c->buflen, 0);
        if (n > 0) {
            c->buflen += (size_t)n;
            if (c->buflen < sizeof(c->buf))
                continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            /* EOF or error: a request in flight has no answer. */
            if (c->state == C_READING || c->state == C_SENDING)
                record(t, c, TS_REQ_NOANSWER, 0);
            conn_close(t, c);
            return;
        }
        break;
    }
    if (c->state != C_READING)
        return;
    int status = 0;
    bool close_after = false;
    long len = parse_response(c, &status, &close_after);
    if (len == 0)
        return;
    if (len < 0) {
        record(t, c, TS_REQ_NOANSWER, 0);
        conn_close(t, c);
        return;
    }
    record(t, c, status >= 200 && status < 300 ? TS_REQ_2XX : TS_REQ_OTHER, status);
    memmove(c->buf, c->buf + len, c->buflen - (size_t)len);
    c->buflen -= (size_t)len;
    if (close_after) {
        conn_close(t, c);
        return;
    }
    c->state = C_IDLE;
    if (!atomic_load_explicit(&t->l->stop, memory_order_relaxed))
        conn_send_next(t, c);
}

static void *lthread_main(void *arg)
{
    lthread_t *t = arg;
    struct ts_load_s *l = t->l;
    struct epoll_event evs[64];

    for (;;) {
        bool stopping = atomic_load_explicit(&l->stop, memory_order_relaxed);
        int64_t now = now_us();
        bool busy = false;
        for (int i = 0; i < t->nconns; i++) {
            lconn_t *c = &t->conns[i];
            if (c->state == C_READING || c->state == C_SENDING) {
                busy = true;
                if (now - c->sent_us > (int64_t)l->o.request_timeout_ms * 1000) {
                    record(t, c, TS_REQ_NOANSWER, 0);
                    conn_close(t, c);
                }
            } else if (!stopping && c->state == C_CLOSED && now >= c->retry_at_us) {
                conn_open(t, c);
            } else if (!stopping && c->state == C_IDLE) {
                conn_send_next(t, c);
            }
        }
        if (stopping && !busy)
            break;
        int n = epoll_wait(t->ep, evs, (int)AT_ARRAY_LEN(evs), 10);
        for (int i = 0; i < n; i++) {
            lconn_t *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue;
            if (c->state == C_CONNECTING) {
                int err = 0;
                socklen_t len = sizeof(err);
                getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
                if (err != 0 || (evs[i].events & (EPOLLERR | EPOLLHUP))) {
                    atomic_fetch_add_explicit(&l->connfail, 1, memory_order_relaxed);
                    conn_close(t, c);
                    c->retry_at_us = now_us() + 20000;
                    continue;
                }
                c->state = C_IDLE;
                if (!atomic_load_explicit(&l->stop, memory_order_relaxed))
                    conn_send_next(t, c);
                else
                    conn_close(t, c);
                continue;
            }
            if (c->state == C_SENDING && (evs[i].events & EPOLLOUT))
                conn_flush(t, c);
            if (c->fd >= 0 && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                conn_readable(t, c);
        }
    }
    for (int i = 0; i < t->nconns; i++)
        conn_close(t, &t->conns[i]);
    return NULL;
}

ts_load_t *ts_load_start(const ts_load_opts_t *o)
{
    if (o->threads < 1 || o->threads > TS_LOAD_MAX_THREADS || o->connections < o->threads || o->ncampaigns < 1 ||
        o->path == NULL || strchr(o->path, '?') == NULL)
        return NULL;
    ts_load_t *l = calloc(1, sizeof(*l));
    if (l == NULL)
        return NULL;
    l->o = *o;
    if (l->o.request_timeout_ms <= 0)
        l->o.request_timeout_ms = 30000;
    snprintf(l->path, sizeof(l->path), "%s", o->path);
    snprintf(l->ua, sizeof(l->ua), "%s",
             o->user_agent ? o->user_agent
                           : "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36");
    snprintf(l->headers, sizeof(l->headers), "%s", o->headers ? o->headers : "");
    if (o->source_ip != NULL) {
        l->source.sin_family = AF_INET;
        if (inet_pton(AF_INET, o->source_ip, &l->source.sin_addr) != 1) {
            free(l);
            return NULL;
        }
    }
    l->addr.sin_family = AF_INET;
    l->addr.sin_port = htons((uint16_t)o->port);
    l->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    l->nthreads = o->threads;
    for (int i = 0; i < l->nthreads; i++) {
        lthread_t *t = &l->th[i];
        t->l = l;
        t->index = i;
        t->nconns = o->connections / o->threads + (i < o->connections % o->threads ? 1 : 0);
        t->conns = calloc((size_t)t->nconns, sizeof(*t->conns));
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        if (t->conns == NULL || t->ep < 0)
            goto fail;
        for (int k = 0; k < t->nconns; k++)
            t->conns[k].fd = -1;
    }
    for (int i = 0; i < l->nthreads; i++)
        if (pthread_create(&l->th[i].tid, NULL, lthread_main, &l->th[i]) != 0) {
            atomic_store(&l->stop, true);
            for (int k = 0; k < i; k++)
                pthread_join(l->th[k].tid, NULL);
            l->nthreads = 0;
            goto fail;
        }
    return l;
fail:
    ts_load_destroy(l);
    return NULL;
}

void ts_load_stats(ts_load_t *l, ts_load_stats_t *out)
{
    memset(out, 0, sizeof(*out));
    out->sent = atomic_load_explicit(&l->sent, memory_order_relaxed);
    out->answered_2xx = atomic_load_explicit(&l->ok, memory_order_relaxed);
    out->answered_other = atomic_load_explicit(&l->other, memory_order_relaxed);
    out->no_answer = atomic_load_explicit(&l->noanswer, memory_order_relaxed);
    out->connect_failures = atomic_load_explicit(&l->connfail, memory_order_relaxed);
    out->max_latency_us = atomic_load_explicit(&l->max_lat, memory_order_relaxed);
    for (int i = 0; i < 6; i++)
        out->status_class[i] = atomic_load_explicit(&l->cls[i], memory_order_relaxed);
}

void ts_load_stop(ts_load_t *l)
{
    if (atomic_exchange(&l->stop, true))
        return;
    for (int i = 0; i < l->nthreads; i++)
        pthread_join(l->th[i].tid, NULL);
}

int ts_load_outcome(const ts_load_t *l, int thread, uint64_t seq)
{
    return thread >= 0 && thread < l->nthreads ? bytemap_get(&l->th[thread].outcome, seq) : TS_REQ_UNSENT;
}

uint64_t ts_load_count(const ts_load_t *l, int thread)
{
    return thread >= 0 && thread < l->nthreads ? l->th[thread].next_seq : 0;
}

void ts_load_destroy(ts_load_t *l)
{
    if (l == NULL)
        return;
    ts_load_stop(l);
    for (int i = 0; i < TS_LOAD_MAX_THREADS; i++) {
        free(l->th[i].conns);
        free(l->th[i].outcome.v);
        if (l->th[i].ep > 0)
            close(l->th[i].ep);
    }
    free(l);
}

/* ---- tag counter ---- */

#define TC_MAX_PARTITIONS 1024

struct ts_tagcount_s {
    rd_kafka_t *rk;
    char topic[256];
    int nparts;
    pthread_t tid;
    atomic_bool stop, lost;
    atomic_int_fast64_t next_offset[TC_MAX_PARTITIONS]; /* next offset to read, per partition */
    atomic_uint_fast64_t messages, untagged;
    bytemap_t counts[TS_LOAD_MAX_THREADS];
};

static int kconf(rd_kafka_conf_t *c, const char *k, const char *v)
{
    char errstr[256];
    if (rd_kafka_conf_set(c, k, v, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "[tagcount] %s: %s\n", k, errstr);
        return -1;
    }
    return 0;
}

/* "tag":"<thread>-<seq>" in a collector envelope. */
static bool find_tag(const char *v, size_t len, int *thread, uint64_t *seq)
{
    /* libbson's relaxed JSON writes "tag" : "..."; other writers may leave the spaces out. */
    const char *p = memmem(v, len, "\"tag\"", 5);
    const char *end = v + len;
    if (p == NULL)
        return false;
    p += 5;
    while (p < end && *p == ' ')
        p++;
    if (p >= end || *p++ != ':')
        return false;
    while (p < end && *p == ' ')
        p++;
    if (p >= end || *p++ != '"')
        return false;
    int t = 0;
    uint64_t s = 0;
    bool digits = false;
    while (p < end && *p >= '0' && *p <= '9') {
        t = t * 10 + (*p++ - '0');
        digits = true;
        if (t >= TS_LOAD_MAX_THREADS)
            return false;
    }
    if (!digits || p >= end || *p++ != '-')
        return false;
    digits = false;
    while (p < end && *p >= '0' && *p <= '9') {
        s = s * 10 + (uint64_t)(*p++ - '0');
        digits = true;
    }
    if (!digits || p >= end || *p != '"')
        return false;
    *thread = t;
    *seq = s;
    return true;
}

static void *tagcount_main(void *arg)
{
    ts_tagcount_t *t = arg;
    while (!atomic_load(&t->stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(t->rk, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            int th;
            uint64_t seq;
            atomic_fetch_add_explicit(&t->messages, 1, memory_order_relaxed);
            if (find_tag(m->payload, m->len, &th, &seq)) {
                uint8_t c = bytemap_get(&t->counts[th], seq);
                if (c < 255 && bytemap_set(&t->counts[th], seq, (uint8_t)(c + 1)) != 0) {
                    fprintf(stderr, "[tagcount] out of memory\n");
                    abort();
                }
            } else {
                atomic_fetch_add_explicit(&t->untagged, 1, memory_order_relaxed);
            }
            if (m->partition >= 0 && m->partition < TC_MAX_PARTITIONS)
                atomic_store(&t->next_offset[m->partition], m->offset + 1);
        } else if (m->err == RD_KAFKA_RESP_ERR__AUTO_OFFSET_RESET || m->err == RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE) {
            fprintf(stderr, "[tagcount] %s [%d]: %s (messages were deleted before they were read)\n", t->topic,
                    (int)m->partition, rd_kafka_message_errstr(m));
            atomic_store(&t->lost, true);
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* Transient while a broker is down on purpose. */
        }
        rd_kafka_message_destroy(m);
    }
    return NULL;
}

ts_tagcount_t *ts_tagcount_start(const char *bootstraps, const char *topic)
{
    static atomic_int seq;
    char errstr[256], group[96];
    ts_tagcount_t *t = calloc(1, sizeof(*t));
    if (t == NULL)
        return NULL;
    snprintf(t->topic, sizeof(t->topic), "%s", topic);
    snprintf(group, sizeof(group), "adtrack-tagcount-%ld-%d", (long)getpid(), atomic_fetch_add(&seq, 1));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (kconf(conf, "bootstrap.servers", bootstraps) || kconf(conf, "group.id", group) ||
        kconf(conf, "enable.auto.commit", "false") || kconf(conf, "enable.auto.offset.store", "false") ||
        kconf(conf, "auto.offset.reset", "error") || kconf(conf, "log_level", "2") ||
        kconf(conf, "reconnect.backoff.max.ms", "500")) {
        rd_kafka_conf_destroy(conf);
        free(t);
        return NULL;
    }
    t->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (t->rk == NULL) {
        fprintf(stderr, "[tagcount] consumer: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        free(t);
        return NULL;
    }
    rd_kafka_poll_set_consumer(t->rk);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(t->rk, topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(t->rk, 0, rkt, &md, 10000);
    if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err == 0)
        t->nparts = md->topics[0].partition_cnt;
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    if (t->nparts <= 0 || t->nparts > TC_MAX_PARTITIONS) {
        fprintf(stderr, "[tagcount] %s: no partitions (%s)\n", topic, rd_kafka_err2str(err));
        goto fail;
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(t->nparts);
    for (int i = 0; i < t->nparts; i++)
        rd_kafka_topic_partition_list_add(parts, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    err = rd_kafka_assign(t->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "[tagcount] assign: %s\n", rd_kafka_err2str(err));
        goto fail;
    }
    if (pthread_create(&t->tid, NULL, tagcount_main, t) != 0)
        goto fail;
    return t;
fail:
    rd_kafka_destroy(t->rk);
    free(t);
    return NULL;
}

static void tagcount_stop(ts_tagcount_t *t)
{
    if (!atomic_exchange(&t->stop, true))
        pthread_join(t->tid, NULL);
}

int ts_tagcount_catch_up(ts_tagcount_t *t, int timeout_ms)
{
    int64_t deadline = now_us() + (int64_t)timeout_ms * 1000;
    int64_t high[TC_MAX_PARTITIONS];
    /* Every partition's end offset in one ListOffsets per broker (offsets_for_times with the
     * time END): a request per partition waits behind the consumer's long-polling fetch on
     * the same connection, about half a second each. */
    bool known = false;
    while (!known && now_us() < deadline) {
        rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(t->nparts);
        for (int p = 0; p < t->nparts; p++)
            rd_kafka_topic_partition_list_add(parts, t->topic, p)->offset = RD_KAFKA_OFFSET_END;
        int left = (int)((deadline - now_us()) / 1000);
        if (rd_kafka_offsets_for_times(t->rk, parts, left < 5000 ? (left > 0 ? left : 1) : 5000) ==
            RD_KAFKA_RESP_ERR_NO_ERROR) {
            known = parts->cnt == t->nparts;
            for (int i = 0; i < parts->cnt && known; i++) {
                const rd_kafka_topic_partition_t *tp = &parts->elems[i];
                if (tp->partition < 0 || tp->partition >= t->nparts || tp->err != RD_KAFKA_RESP_ERR_NO_ERROR ||
                    tp->offset < 0)
                    known = false;
                else
                    high[tp->partition] = tp->offset;
            }
        }
        rd_kafka_topic_partition_list_destroy(parts);
    }
    if (!known) {
        fprintf(stderr, "[tagcount] %s: the partitions' end offsets are not known\n", t->topic);
        return -1;
    }
    for (;;) {
        int behind = -1;
        for (int p = 0; p < t->nparts && behind < 0; p++)
            if (high[p] > 0 && atomic_load(&t->next_offset[p]) < high[p])
                behind = p;
        if (behind < 0) {
            tagcount_stop(t);
            return 0;
        }
        if (now_us() >= deadline) {
            fprintf(stderr, "[tagcount] %s [%d]: read up to %lld of %lld\n", t->topic, behind,
                    (long long)atomic_load(&t->next_offset[behind]), (long long)high[behind]);
            return -1;
        }
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int ts_tagcount_get(const ts_tagcount_t *t, int thread, uint64_t seq)
{
    if (!atomic_load(&t->stop)) {
        fprintf(stderr, "[tagcount] ts_tagcount_get before ts_tagcount_catch_up succeeded\n");
        abort();
    }
    return thread >= 0 && thread < TS_LOAD_MAX_THREADS ? bytemap_get(&t->counts[thread], seq) : 0;
}

uint64_t ts_tagcount_messages(const ts_tagcount_t *t)
{
    return atomic_load(&t->messages);
}

uint64_t ts_tagcount_untagged(const ts_tagcount_t *t)
{
    return atomic_load(&t->untagged);
}

bool ts_tagcount_lost(const ts_tagcount_t *t)
{
    return atomic_load(&t->lost);
}

void ts_tagcount_destroy(ts_tagcount_t *t)
{
    if (t == NULL)
        return;
    tagcount_stop(t);
    rd_kafka_consumer_close(t->rk);
    rd_kafka_destroy(t->rk);
    for (int i = 0; i < TS_LOAD_MAX_THREADS; i++)
        free(t->counts[i].v);
    free(t);
}
