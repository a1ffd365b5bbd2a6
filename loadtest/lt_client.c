/*
 * lt_client.c: the worker's epoll loop (see lt_client.h).
 *
 * Connection states: CLOSED -> CONNECTING -> IDLE <-> BUSY, back to CLOSED on close or
 * error. Sockets stay registered for EPOLLIN the whole time (level-triggered), so the
 * common path per request is one send() and one read() with no epoll_ctl; EPOLLOUT is
 * added only while connecting or when a request did not fit in the socket buffer.
 */
#include "lt_client.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#define LT_HIST_HIGHEST_US 3600000000ULL /* one hour: anything slower is clamped */
#define LT_READ_BUF 65536
#define LT_CHECK_NS 10000000LL /* timeouts are checked every 10 ms */
#define LT_IDLE_WAKE_NS 100000000LL
#define LT_BACKOFF_MIN_NS 10000000LL
#define LT_BACKOFF_MAX_NS 1000000000LL

enum { C_CLOSED = 0, C_CONNECTING, C_IDLE, C_BUSY, C_NSTATES };

typedef struct lt_conn_s {
    int fd;
    int state;
    uint32_t events; /* current epoll mask */
    bool in_queue;   /* present in the idle queue (entries are checked lazily) */
    bool reused;     /* at least one response completed on this connection */
    bool got_bytes;  /* response bytes arrived for the current request */
    bool retried;    /* the current request is a resend */
    bool resend;     /* reconnecting in order to resend the current request */
    bool head;
    uint64_t seq;
    int64_t intended, sent_at, deadline, retry_at, backoff;
    int64_t idle_since; /* when it last became idle */
    lt_buf_t out;
    size_t out_pos;
    lt_resp_t resp;
} lt_conn_t;

struct lt_worker_s {
    const lt_plan_t *plan;
    int index;
    int epfd;
    lt_conn_t *conns;
    int nconns;
    int *queue; /* idle connections, oldest first (a ring of nconns; stale entries skipped) */
    int qhead, qlen;
    int count[C_NSTATES];
    uint64_t inflight; /* requests sent and not finished (including resends in progress) */
    uint64_t next_j, local_total;
    int64_t start;
    lt_stats_t st;
    lt_live_t live;
    lt_buf_t target, body, scratch;
    char tag[96];
    char connect_err[160];
    char readbuf[LT_READ_BUF];
};

const char *lt_fail_str(lt_fail_t f)
{
    switch (f) {
    case LT_FAIL_TIMEOUT:
        return "timeout";
    case LT_FAIL_CLOSED:
        return "closed";
    case LT_FAIL_PROTOCOL:
        return "protocol";
    case LT_FAIL_COUNT:
        break;
    }
    return "unknown";
}

int64_t lt_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- stats ---- */

int lt_stats_init(lt_stats_t *s, at_err_t *err)
{
    memset(s, 0, sizeof(*s));
    if (lt_hist_init(&s->latency, LT_HIST_PRECISE, LT_HIST_HIGHEST_US, err) < 0 ||
        lt_hist_init(&s->service, LT_HIST_PRECISE, LT_HIST_HIGHEST_US, err) < 0 ||
        lt_hist_init(&s->lag, LT_HIST_PRECISE, LT_HIST_HIGHEST_US, err) < 0) {
        lt_stats_free(s);
        return -1;
    }
    return 0;
}

void lt_stats_free(lt_stats_t *s)
{
    if (s == NULL)
        return;
    lt_hist_free(&s->latency);
    lt_hist_free(&s->service);
    lt_hist_free(&s->lag);
    for (size_t i = 0; i < s->niv; i++)
        lt_hist_free(&s->iv[i].latency);
    free(s->iv);
    s->iv = NULL;
    s->niv = 0;
}

lt_interval_t *lt_stats_interval(lt_stats_t *s, size_t i)
{
    if (i >= 100000)
        i = 99999; /* a runaway index must not eat memory: pile up in the last slot */
    if (i < s->niv)
        return &s->iv[i];
    size_t n = i + 1;
    lt_interval_t *iv = realloc(s->iv, n * sizeof(*iv));
    if (iv == NULL)
        return NULL;
    s->iv = iv;
    for (size_t k = s->niv; k < n; k++) {
        memset(&iv[k], 0, sizeof(iv[k]));
        if (lt_hist_init(&iv[k].latency, LT_HIST_COARSE, LT_HIST_HIGHEST_US, NULL) < 0) {
            s->niv = k;
            return NULL;
        }
    }
    s->niv = n;
    return &s->iv[i];
}

int lt_stats_merge(lt_stats_t *dst, const lt_stats_t *src, at_err_t *err)
{
    dst->intended += src->intended;
    dst->sent += src->sent;
    dst->late += src->late;
    dst->late_sender += src->late_sender;
    dst->dropped += src->dropped;
    dst->completed += src->completed;
    dst->ok += src->ok;
    for (int i = 0; i < LT_FAIL_COUNT; i++)
        dst->failed[i] += src->failed[i];
    for (int i = 0; i < 1000; i++)
        dst->status[i] += src->status[i];
    dst->retried += src->retried;
    dst->connects += src->connects;
    dst->connect_errors += src->connect_errors;
    dst->bytes_out += src->bytes_out;
    dst->bytes_in += src->bytes_in;
    dst->last_send_ns = AT_MAX(dst->last_send_ns, src->last_send_ns);
    dst->last_done_ns = AT_MAX(dst->last_done_ns, src->last_done_ns);
    if (lt_hist_merge(&dst->latency, &src->latency, err) < 0 || lt_hist_merge(&dst->service, &src->service, err) < 0 ||
        lt_hist_merge(&dst->lag, &src->lag, err) < 0)
        return -1;
    if (src->niv > 0 && lt_stats_interval(dst, src->niv - 1) == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "out of memory merging intervals");
    for (size_t i = 0; i < src->niv; i++) {
        lt_interval_t *d = &dst->iv[i];
        const lt_interval_t *s = &src->iv[i];
        d->intended += s->intended;
        d->sent += s->sent;
        d->late += s->late;
        d->dropped += s->dropped;
        d->completed += s->completed;
        d->ok += s->ok;
        d->failed += s->failed;
        if (lt_hist_merge(&d->latency, &s->latency, err) < 0)
            return -1;
    }
    return 0;
}

/* ---- worker helpers ---- */

static uint64_t seq_of(const lt_worker_t *w, uint64_t j)
{
    return (uint64_t)w->index + j * (uint64_t)w->plan->threads;
}

static int64_t intended_of(const lt_worker_t *w, uint64_t seq)
{
    return w->start + lt_sched_time(w->plan->sched, seq);
}

static lt_interval_t *interval_at(lt_worker_t *w, int64_t t)
{
    int64_t d = t - w->start;
    size_t i = d <= 0 ? 0 : (size_t)(d / w->plan->interval_ns);
    return lt_stats_interval(&w->st, i);
}

static void set_state(lt_worker_t *w, lt_conn_t *c, int state)
{
    w->count[c->state]--;
    c->state = state;
    w->count[state]++;
    if (state == C_IDLE) {
        c->idle_since = lt_now_ns();
        if (!c->in_queue) {
            c->in_queue = true;
            w->queue[(w->qhead + w->qlen) % w->nconns] = (int)(c - w->conns);
            w->qlen++;
        }
    }
}

/* The connection idle for longest (round-robin use keeps every connection warm, and tells
 * whether a connection was already free at a request's intended time). */
static lt_conn_t *pop_idle(lt_worker_t *w)
{
    while (w->qlen > 0) {
        lt_conn_t *c = &w->conns[w->queue[w->qhead]];
        w->qhead = (w->qhead + 1) % w->nconns;
        w->qlen--;
        c->in_queue = false;
        if (c->state == C_IDLE)
            return c;
    }
    return NULL;
}

static void set_events(lt_worker_t *w, lt_conn_t *c, uint32_t ev)
{
    if (c->events == ev)
        return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, c->fd, &e) == 0)
        c->events = ev;
}

static void close_fd(lt_worker_t *w, lt_conn_t *c)
{
    if (c->fd >= 0) {
        epoll_ctl(w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
        c->fd = -1;
    }
    c->events = 0;
}

/* Closes @p c; it is reopened by the loop from @p retry_at on (while there is work). */
static void conn_close(lt_worker_t *w, lt_conn_t *c, int64_t retry_at)
{
    close_fd(w, c);
    c->reused = false;
    c->retry_at = retry_at;
    set_state(w, c, C_CLOSED);
}

static void note_connect_error(lt_worker_t *w, const char *what, int e)
{
    w->st.connect_errors++;
    if (w->connect_err[0] == '\0')
        snprintf(w->connect_err, sizeof(w->connect_err), "%s: %s", what, strerror(e));
}

static void request_failed(lt_worker_t *w, lt_conn_t *c, lt_fail_t why, int64_t now)
{
    w->st.failed[why]++;
    w->st.last_done_ns = AT_MAX(w->st.last_done_ns, now - w->start);
    lt_interval_t *iv = interval_at(w, now);
    if (iv)
        iv->failed++;
    w->inflight--;
    c->resend = false;
    c->retried = false;
}

static int try_write(lt_worker_t *w, lt_conn_t *c, int64_t now);
static void conn_broken(lt_worker_t *w, lt_conn_t *c, lt_fail_t why, int64_t now);

static void on_connected(lt_worker_t *w, lt_conn_t *c, int64_t now)
{
    w->st.connects++;
    c->backoff = 0;
    set_events(w, c, EPOLLIN);
    if (c->resend) {
        /* Resend the request that met a stale keep-alive connection. */
        c->resend = false;
        c->out_pos = 0;
        c->got_bytes = false;
        lt_resp_reset(&c->resp, c->head);
        c->deadline = c->sent_at + w->plan->timeout_ns;
        set_state(w, c, C_BUSY);
        try_write(w, c, now);
        return;
    }
    set_state(w, c, C_IDLE);
}

static void connect_failed(lt_worker_t *w, lt_conn_t *c, int e, int64_t now)
{
    note_connect_error(w, "connect", e);
    close_fd(w, c);
    if (c->resend)
        request_failed(w, c, LT_FAIL_CLOSED, now);
    c->backoff = c->backoff ? AT_MIN(c->backoff * 2, LT_BACKOFF_MAX_NS) : LT_BACKOFF_MIN_NS;
    c->retry_at = now + c->backoff;
    c->reused = false;
    set_state(w, c, C_CLOSED);
}

static void conn_open(lt_worker_t *w, lt_conn_t *c, int64_t now)
{
    const lt_plan_t *p = w->plan;
    int fd = socket(p->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        int e = errno;
        note_connect_error(w, "socket", e);
        c->backoff = c->backoff ? AT_MIN(c->backoff * 2, LT_BACKOFF_MAX_NS) : LT_BACKOFF_MIN_NS;
        c->retry_at = now + c->backoff;
        if (c->resend)
            request_failed(w, c, LT_FAIL_CLOSED, now);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->deadline = now + p->connect_timeout_ns;
    if (c->resend && c->sent_at + p->timeout_ns < c->deadline)
        c->deadline = c->sent_at + p->timeout_ns;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        int e = errno;
        close(fd);
        c->fd = -1;
        connect_failed(w, c, e, now);
        return;
    }
    c->events = ev.events;
    set_state(w, c, C_CONNECTING);
    if (connect(fd, (const struct sockaddr *)&p->addr, p->addrlen) == 0) {
        on_connected(w, c, now);
    } else if (errno != EINPROGRESS) {
        connect_failed(w, c, errno, now);
    }
}

static void record_completion(lt_worker_t *w, lt_conn_t *c, int64_t now)
{
    lt_stats_t *st = &w->st;
    int status = c->resp.status;
    bool ok = status >= 200 && status < 400;
    st->completed++;
    st->last_done_ns = AT_MAX(st->last_done_ns, now - w->start);
    st->status[status < 1000 ? status : 0]++;
    if (ok)
        st->ok++;
    uint64_t lat_us = (uint64_t)((now - c->intended) / 1000);
    uint64_t svc_us = (uint64_t)((now - c->sent_at) / 1000);
    lt_hist_record(&st->latency, lat_us);
    lt_hist_record(&st->service, svc_us);
    lt_interval_t *iv = interval_at(w, c->intended);
    if (iv)
        lt_hist_record(&iv->latency, lat_us);
    iv = interval_at(w, now);
    if (iv) {
        iv->completed++;
        if (ok)
            iv->ok++;
    }
    if (w->plan->seq_state)
        w->plan->seq_state[c->seq] = ok ? LT_SEQ_ACKED : LT_SEQ_REFUSED;
    w->inflight--;
    c->reused = true;
    c->retried = false;
}

/* The current response is complete: account for it and recycle the connection. */
static void on_response(lt_worker_t *w, lt_conn_t *c, int64_t now, bool trailing_junk)
{
    record_completion(w, c, now);
    /* Bytes after a complete response (we never pipeline) would confuse the next request:
     * the response counts, the connection does not survive. */
    if (!c->resp.keep_alive || trailing_junk) {
        conn_close(w, c, now);
        return;
    }
    set_state(w, c, C_IDLE);
}

/*
 * The connection broke while a request was outstanding. A keep-alive connection that the
 * server had already closed (no byte of the response came back) gets the request once
 * more on a fresh connection, as browsers do; anything else fails the request.
 */
static void conn_broken(lt_worker_t *w, lt_conn_t *c, lt_fail_t why, int64_t now)
{
    if (why == LT_FAIL_CLOSED && c->reused && !c->got_bytes && !c->retried) {
        w->st.retried++;
        close_fd(w, c);
        c->reused = false;
        c->retried = true;
        c->resend = true;
        set_state(w, c, C_CLOSED);
        conn_open(w, c, now);
        return;
    }
    request_failed(w, c, why, now);
    conn_close(w, c, now);
}

static int try_write(lt_worker_t *w, lt_conn_t *c, int64_t now)
{
    while (c->out_pos < c->out.len) {
        ssize_t n = send(c->fd, c->out.data + c->out_pos, c->out.len - c->out_pos, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_pos += (size_t)n;
            w->st.bytes_out += (uint64_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_events(w, c, EPOLLIN | EPOLLOUT);
            return 0;
        }
        conn_broken(w, c, LT_FAIL_CLOSED, now);
        return -1;
    }
    if (c->events & EPOLLOUT)
        set_events(w, c, EPOLLIN);
    return 0;
}

static void build_request(lt_worker_t *w, lt_conn_t *c, uint64_t seq)
{
    const lt_plan_t *p = w->plan;
    const char *tag = NULL;
    if (p->run_id) {
        snprintf(w->tag, sizeof(w->tag), "%s:%llu", p->run_id, (unsigned long long)seq);
        tag = w->tag;
    }
    unsigned nevents = 1;
    lt_buf_clear(&c->out);
    if (p->profile) {
        const char *method = "GET";
        nevents = lt_profile_request(p->profile, seq, tag, &method, &w->target, &w->body, &w->scratch);
        lt_http_write_request(&c->out, &p->target, method, w->target.data, w->target.len, tag, p->headers, NULL, 0,
                              w->body.data, w->body.len);
        c->head = false;
    } else {
        const lt_capture_t *cap = p->capture;
        const lt_capture_entry_t *e = &cap->entries[p->capture_cycle ? seq % cap->n : seq];
        lt_http_write_request(&c->out, &p->target, e->method, lt_capture_str(cap, e->target_off), e->target_len, tag,
                              p->headers, lt_capture_str(cap, e->headers_off), e->headers_len,
                              lt_capture_str(cap, e->body_off), e->body_len);
        c->head = strcmp(e->method, "HEAD") == 0;
        nevents = e->nevents;
    }
    if (p->seq_events)
        p->seq_events[seq] = (uint16_t)AT_MIN(nevents, 65535u);
}

static void send_request(lt_worker_t *w, lt_conn_t *c, uint64_t seq, int64_t intended, int64_t now)
{
    const lt_plan_t *p = w->plan;
    build_request(w, c, seq);
    c->seq = seq;
    c->intended = intended;
    c->sent_at = now;
    c->deadline = now + p->timeout_ns;
    c->out_pos = 0;
    c->got_bytes = false;
    c->retried = false;
    c->resend = false;
    lt_resp_reset(&c->resp, c->head);
    int64_t lag = now - intended;
    if (lag < 0)
        lag = 0;
    lt_hist_record(&w->st.lag, (uint64_t)(lag / 1000));
    w->st.sent++;
    w->st.last_send_ns = now - w->start;
    lt_interval_t *iv = interval_at(w, intended);
    if (iv)
        iv->intended++;
    iv = interval_at(w, now);
    if (iv)
        iv->sent++;
    if (lag > p->late_ns) {
        w->st.late++;
        /* A connection free since before the intended time means the sender itself fell
         * behind; otherwise the request waited for the target to free a connection. */
        if (c->idle_since <= intended)
            w->st.late_sender++;
        if (iv)
            iv->late++;
    }
    if (p->seq_state)
        p->seq_state[seq] = LT_SEQ_FAILED;
    w->inflight++;
    set_state(w, c, C_BUSY);
    try_write(w, c, now);
}

static void drop_request(lt_worker_t *w, int64_t intended)
{
    w->st.dropped++;
    lt_interval_t *iv = interval_at(w, intended);
    if (iv) {
        iv->intended++;
        iv->dropped++;
    }
}

static void on_readable(lt_worker_t *w, lt_conn_t *c, int64_t now)
{
    ssize_t n;
    do {
        n = read(c->fd, w->readbuf, sizeof(w->readbuf));
    } while (n < 0 && errno == EINTR);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
    if (c->state != C_BUSY) {
        /* Idle: the server closed the keep-alive connection (or sent junk). */
        conn_close(w, c, now);
        return;
    }
    if (n <= 0) {
        if (n == 0 && lt_resp_eof(&c->resp) == 1) {
            on_response(w, c, now, false);
            if (c->state != C_CLOSED)
                conn_close(w, c, now);
            return;
        }
        conn_broken(w, c, LT_FAIL_CLOSED, now);
        return;
    }
    w->st.bytes_in += (uint64_t)n;
    c->got_bytes = true;
    size_t used = 0;
    int rc = lt_resp_feed(&c->resp, w->readbuf, (size_t)n, &used);
    if (rc == 1)
        on_response(w, c, now, used < (size_t)n);
    else if (rc < 0)
        conn_broken(w, c, LT_FAIL_PROTOCOL, now);
}

static void on_event(lt_worker_t *w, lt_conn_t *c, uint32_t ev, int64_t now)
{
    if (c->state == C_CONNECTING) {
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int e = 0;
        socklen_t el = sizeof(e);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0)
            e = errno;
        if (e == 0 && !(ev & EPOLLERR))
            on_connected(w, c, now);
        else
            connect_failed(w, c, e ? e : ECONNREFUSED, now);
        return;
    }
    if ((ev & EPOLLOUT) && c->state == C_BUSY && c->out_pos < c->out.len) {
        if (try_write(w, c, now) < 0)
            return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)) {
        if (c->state == C_BUSY || c->state == C_IDLE)
            on_readable(w, c, now);
    }
}

/* Times out requests and connection attempts that passed their deadline. */
static void check_deadlines(lt_worker_t *w, int64_t now)
{
    for (int i = 0; i < w->nconns; i++) {
        lt_conn_t *c = &w->conns[i];
        if (c->state == C_BUSY && now >= c->deadline) {
            request_failed(w, c, LT_FAIL_TIMEOUT, now);
            conn_close(w, c, now);
        } else if (c->state == C_CONNECTING && now >= c->deadline) {
            if (c->resend) {
                request_failed(w, c, LT_FAIL_TIMEOUT, now);
                close_fd(w, c);
                c->retry_at = now;
                set_state(w, c, C_CLOSED);
            } else {
                connect_failed(w, c, ETIMEDOUT, now);
            }
        }
    }
}

static void reopen_closed(lt_worker_t *w, int64_t now)
{
    for (int i = 0; i < w->nconns && w->count[C_CLOSED] > 0; i++) {
        lt_conn_t *c = &w->conns[i];
        if (c->state == C_CLOSED && now >= c->retry_at)
            conn_open(w, c, now);
    }
}

static int wait_events(lt_worker_t *w, struct epoll_event *evs, int max, int64_t wait_ns)
{
    if (wait_ns < 0)
        wait_ns = 0;
    struct timespec ts = {.tv_sec = wait_ns / 1000000000LL, .tv_nsec = wait_ns % 1000000000LL};
    int n = epoll_pwait2(w->epfd, evs, max, &ts, NULL);
    if (n < 0 && errno == ENOSYS)
        n = epoll_wait(w->epfd, evs, max, (int)((wait_ns + 999999) / 1000000));
    return n;
}

static void publish(lt_worker_t *w)
{
    lt_live_t *l = &w->live;
    atomic_store_explicit(&l->sent, w->st.sent, memory_order_relaxed);
    atomic_store_explicit(&l->completed, w->st.completed, memory_order_relaxed);
    atomic_store_explicit(&l->ok, w->st.ok, memory_order_relaxed);
    uint64_t f = 0;
    for (int i = 0; i < LT_FAIL_COUNT; i++)
        f += w->st.failed[i];
    atomic_store_explicit(&l->failed, f, memory_order_relaxed);
    atomic_store_explicit(&l->dropped, w->st.dropped, memory_order_relaxed);
    atomic_store_explicit(&l->late, w->st.late, memory_order_relaxed);
    atomic_store_explicit(&l->inflight, w->inflight, memory_order_relaxed);
}

/* ---- public ---- */

lt_worker_t *lt_worker_new(const lt_plan_t *plan, int index, at_err_t *err)
{
    lt_worker_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    w->plan = plan;
    w->index = index;
    w->epfd = -1;
    w->nconns = plan->connections / plan->threads + (index < plan->connections % plan->threads ? 1 : 0);
    if (w->nconns < 1)
        w->nconns = 1;
    w->conns = calloc((size_t)w->nconns, sizeof(*w->conns));
    w->queue = calloc((size_t)w->nconns, sizeof(*w->queue));
    if (w->conns == NULL || w->queue == NULL || lt_stats_init(&w->st, err) < 0) {
        lt_worker_destroy(w);
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    for (int i = 0; i < w->nconns; i++)
        w->conns[i].fd = -1;
    w->count[C_CLOSED] = w->nconns;
    w->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (w->epfd < 0) {
        at_err_set(err, AT_ERR_IO, "epoll_create1: %s", strerror(errno));
        lt_worker_destroy(w);
        return NULL;
    }
    uint64_t total = plan->sched->total;
    w->local_total =
        (uint64_t)index < total ? (total - (uint64_t)index + (uint64_t)plan->threads - 1) / (uint64_t)plan->threads : 0;
    return w;
}

int lt_worker_connect(lt_worker_t *w)
{
    /* Tight timers: the default 50 us slack would make every send that much late. */
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    int64_t now = lt_now_ns();
    int64_t deadline = now + w->plan->connect_timeout_ns;
    for (int i = 0; i < w->nconns; i++)
        conn_open(w, &w->conns[i], now);
    struct epoll_event evs[64];
    while (w->count[C_CONNECTING] > 0 && now < deadline) {
        int n = wait_events(w, evs, 64, AT_MIN(deadline - now, 50000000LL));
        now = lt_now_ns();
        for (int i = 0; i < n; i++)
            on_event(w, evs[i].data.ptr, evs[i].events, now);
    }
    for (int i = 0; i < w->nconns; i++) {
        lt_conn_t *c = &w->conns[i];
        if (c->state == C_CONNECTING)
            connect_failed(w, c, ETIMEDOUT, now);
        c->retry_at = 0; /* the run starts with fresh attempts for whatever failed here */
        c->backoff = 0;
    }
    return w->count[C_IDLE];
}

void lt_worker_run(lt_worker_t *w)
{
    const lt_plan_t *p = w->plan;
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0);
    w->start = atomic_load(&((lt_plan_t *)p)->start_ns);
    struct epoll_event evs[256];
    int64_t next_check = 0;
    bool stopping = false;
    for (;;) {
        int64_t now = lt_now_ns();
        int stop = atomic_load_explicit(p->stop, memory_order_relaxed);
        if (stop && !stopping) {
            /* Interrupted: nothing after this moment is intended any more. */
            stopping = true;
            uint64_t j = w->next_j;
            while (j < w->local_total && intended_of(w, seq_of(w, j)) <= now)
                j++;
            w->local_total = j;
        }
        if (stop >= 2)
            break;
        bool more = w->next_j < w->local_total;
        if (more && w->count[C_CLOSED] > 0)
            reopen_closed(w, now);
        /* Send everything that is due, oldest first, while there are idle connections. */
        while (w->next_j < w->local_total) {
            uint64_t seq = seq_of(w, w->next_j);
            int64_t t = intended_of(w, seq);
            if (t > now)
                break;
            if (now - t > p->max_lag_ns) {
                drop_request(w, t);
                w->next_j++;
                continue;
            }
            lt_conn_t *c = pop_idle(w);
            if (c == NULL) {
                if (stopping) {
                    /* Interrupted: what cannot leave now is not waited for. */
                    drop_request(w, t);
                    w->next_j++;
                    continue;
                }
                break;
            }
            w->next_j++;
            send_request(w, c, seq, t, now);
        }
        if (now >= next_check) {
            check_deadlines(w, now);
            next_check = now + LT_CHECK_NS;
        }
        if (w->next_j >= w->local_total && w->inflight == 0)
            break;
        /* Sleep until the next thing to do. */
        int64_t wake = now + LT_IDLE_WAKE_NS;
        if (w->next_j < w->local_total) {
            int64_t t = intended_of(w, seq_of(w, w->next_j));
            if (w->count[C_IDLE] > 0)
                wake = AT_MIN(wake, t);
            else
                wake = AT_MIN(wake, t + p->max_lag_ns + 1);
            if (w->count[C_CLOSED] > 0)
                wake = AT_MIN(wake, now + LT_BACKOFF_MIN_NS);
        }
        if (w->count[C_BUSY] > 0 || w->count[C_CONNECTING] > 0)
            wake = AT_MIN(wake, next_check);
        int n = wait_events(w, evs, 256, wake - now);
        if (n > 0) {
            now = lt_now_ns();
            for (int i = 0; i < n; i++)
                on_event(w, evs[i].data.ptr, evs[i].events, now);
        }
        publish(w);
    }
    /* Whatever is still due but unsent was dropped; in-flight requests (hard stop) failed. */
    for (; w->next_j < w->local_total; w->next_j++)
        drop_request(w, intended_of(w, seq_of(w, w->next_j)));
    int64_t now = lt_now_ns();
    for (int i = 0; i < w->nconns; i++) {
        lt_conn_t *c = &w->conns[i];
        if (c->state == C_BUSY || (c->state == C_CONNECTING && c->resend))
            request_failed(w, c, LT_FAIL_TIMEOUT, now);
        close_fd(w, c);
    }
    w->st.intended = w->local_total;
    publish(w);
    atomic_store(&w->live.done, 1);
}

lt_stats_t *lt_worker_stats(lt_worker_t *w)
{
    return &w->st;
}

lt_live_t *lt_worker_live(lt_worker_t *w)
{
    return &w->live;
}

const char *lt_worker_connect_error(const lt_worker_t *w)
{
    return w->connect_err;
}

void lt_worker_destroy(lt_worker_t *w)
{
    if (w == NULL)
        return;
    if (w->conns) {
        for (int i = 0; i < w->nconns; i++) {
            if (w->conns[i].fd >= 0)
                close(w->conns[i].fd);
            lt_buf_free(&w->conns[i].out);
            lt_resp_free(&w->conns[i].resp);
        }
    }
    if (w->epfd >= 0)
        close(w->epfd);
    free(w->conns);
    free(w->queue);
    lt_stats_free(&w->st);
    lt_buf_free(&w->target);
    lt_buf_free(&w->body);
    lt_buf_free(&w->scratch);
    free(w);
}
