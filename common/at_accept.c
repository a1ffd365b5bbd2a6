/*
 * at_accept.c: connection limits for the h2o listeners (see at_accept.h).
 *
 * Threads: the open-connection count is an atomic shared by every loop of the process.
 * The per-address table is shared too and guarded by `mu`; it is touched once per accepted
 * and once per closed connection, never per request. Everything else in a listener belongs
 * to its loop thread.
 */
#include "at_accept.h"

#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>

#include "at_log.h"

#define ACCEPT_BURST 64
#define IP_BUCKETS 1024
#define WARN_INTERVAL_S 10

/* Connections from one client address. */
typedef struct ip_entry_s {
    struct ip_entry_s *next;
    uint8_t addr[16]; /* IPv6, or IPv4-mapped */
    int count;
} ip_entry_t;

struct at_acceptor_s {
    at_accept_limits_t lim;
    char comp[32];
    atomic_int conns;
    pthread_mutex_t mu;
    ip_entry_t *buckets[IP_BUCKETS];
    at_gauge_t *open;
    at_counter_t *refused_per_ip, *paused_max, *paused_fd;
    atomic_llong last_warn_s;
};

/* What a closing connection must give back. Allocated per connection only when it counts
 * against a per-address limit; otherwise on_close.data is the acceptor itself. */
typedef struct conn_ref_s {
    at_acceptor_t *acc;
    ip_entry_t *ip;
} conn_ref_t;

static void warn_limited(at_acceptor_t *a, const char *msg, const char *why)
{
    long long now = (long long)time(NULL), last = atomic_load(&a->last_warn_s);
    if (now - last >= WARN_INTERVAL_S && atomic_compare_exchange_strong(&a->last_warn_s, &last, now))
        at_log(AT_LOG_WARN, a->comp, msg, "reason", why, NULL);
}

at_acceptor_t *at_acceptor_new(const at_accept_limits_t *limits, at_metrics_t *m, const char *comp, at_err_t *err)
{
    if (limits->max_connections < 1 || limits->max_per_ip < 0) {
        at_err_set(err, AT_ERR_RANGE, "--max-connections: expected at least 1");
        return NULL;
    }
    at_acceptor_t *a = calloc(1, sizeof(*a));
    if (a == NULL) {
        at_err_set(err, AT_ERR_NOMEM, "out of memory");
        return NULL;
    }
    a->lim = *limits;
    snprintf(a->comp, sizeof(a->comp), "%s", comp);
    pthread_mutex_init(&a->mu, NULL);
    a->open = at_metrics_gauge(m, "adtrack_http_connections", NULL, "Open HTTP connections.");
    a->refused_per_ip = at_metrics_counter(m, "adtrack_http_connections_refused_total", "reason=\"per_ip\"",
                                           "Connections closed at once because their address had --max-connections-per-ip.");
    a->paused_max = at_metrics_counter(m, "adtrack_http_accept_paused_total", "reason=\"max_connections\"",
                                       "Times a listener stopped accepting: at --max-connections, or out of file descriptors.");
    a->paused_fd = at_metrics_counter(m, "adtrack_http_accept_paused_total", "reason=\"fd_limit\"",
                                      "Times a listener stopped accepting: at --max-connections, or out of file descriptors.");
    if (a->open == NULL || a->refused_per_ip == NULL || a->paused_max == NULL || a->paused_fd == NULL) {
        at_acceptor_destroy(a);
        at_err_set(err, AT_ERR_NOMEM, "metrics: out of memory");
        return NULL;
    }
    return a;
}

void at_acceptor_destroy(at_acceptor_t *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < IP_BUCKETS; i++)
        for (ip_entry_t *e = a->buckets[i], *next; e != NULL; e = next) {
            next = e->next;
            free(e);
        }
    pthread_mutex_destroy(&a->mu);
    free(a);
}

int at_acceptor_connections(const at_acceptor_t *a)
{
    return atomic_load_explicit(&((at_acceptor_t *)a)->conns, memory_order_relaxed);
}

/* The peer's address as 16 bytes (IPv4 mapped into IPv6); false for other families. */
static bool peer_key(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

static size_t key_hash(const uint8_t key[16])
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 1099511628211ull;
    return (size_t)(h % IP_BUCKETS);
}

/* Counts one more connection from @p key; NULL when the address is at its limit. */
static ip_entry_t *ip_take(at_acceptor_t *a, const uint8_t key[16])
{
    size_t b = key_hash(key);
    pthread_mutex_lock(&a->mu);
    ip_entry_t *e = a->buckets[b];
    while (e != NULL && memcmp(e->addr, key, 16) != 0)
        e = e->next;
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        if (e != NULL) {
            memcpy(e->addr, key, 16);
            e->next = a->buckets[b];
            a->buckets[b] = e;
        }
    }
    if (e != NULL && e->count >= a->lim.max_per_ip)
        e = NULL;
    else if (e != NULL)
        e->count++;
    pthread_mutex_unlock(&a->mu);
    return e;
}

static void ip_give_back(at_acceptor_t *a, ip_entry_t *ip)
{
    pthread_mutex_lock(&a->mu);
    if (--ip->count == 0) {
        ip_entry_t **pp = &a->buckets[key_hash(ip->addr)];
        while (*pp != ip)
            pp = &(*pp)->next;
        *pp = ip->next;
        free(ip);
    }
    pthread_mutex_unlock(&a->mu);
}

static void conn_closed(at_acceptor_t *a)
{
    atomic_fetch_sub_explicit(&a->conns, 1, memory_order_relaxed);
    at_gauge_add(a->open, -1);
}

/* on_close of a connection without a per-address count. @locality: its loop thread */
static void on_close_plain(void *data)
{
    conn_closed(data);
}

/* on_close of a connection counted against its address. @locality: its loop thread */
static void on_close_counted(void *data)
{
    conn_ref_t *ref = data;
    ip_give_back(ref->acc, ref->ip);
    conn_closed(ref->acc);
    free(ref);
}

static void listener_pause(at_listener_t *l)
{
    if (!l->paused && l->sock != NULL) {
        h2o_socket_read_stop(l->sock);
        l->paused = true;
    }
}

static void on_accept(h2o_socket_t *listener, const char *err)
{
    at_listener_t *l = listener->data;
    at_acceptor_t *a = l->acc;
    if (err != NULL)
        return;
    /* A bounded burst per wake-up, so one busy listener cannot starve the loop. */
    for (int i = 0; i < ACCEPT_BURST; i++) {
        if (atomic_load_explicit(&a->conns, memory_order_relaxed) >= a->lim.max_connections) {
            at_counter_add(a->paused_max, 1);
            warn_limited(a, "at --max-connections: new connections wait in the listen backlog", "max_connections");
            listener_pause(l);
            return;
        }
        errno = 0;
        h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
        if (sock == NULL) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                at_counter_add(a->paused_fd, 1);
                warn_limited(a, "accept failed: out of file descriptors; pausing the listener", strerror(errno));
                listener_pause(l);
            }
            return;
        }
        conn_ref_t *ref = NULL;
        if (a->lim.max_per_ip > 0) {
            struct sockaddr_storage ss;
            uint8_t key[16];
            socklen_t sl = h2o_socket_getpeername(sock, (struct sockaddr *)&ss);
            bool counted = sl > 0 && peer_key((struct sockaddr *)&ss, key) &&
                           !(a->lim.exempt != NULL && a->lim.exempt((struct sockaddr *)&ss, a->lim.exempt_opaque));
            if (counted) {
                ip_entry_t *ip = ip_take(a, key);
                ref = ip != NULL ? malloc(sizeof(*ref)) : NULL;
                if (ref == NULL) {
                    if (ip != NULL)
                        ip_give_back(a, ip);
                    at_counter_add(a->refused_per_ip, 1);
                    warn_limited(a, "closing connections from an address over --max-connections-per-ip", "per_ip");
                    h2o_socket_close(sock);
                    continue;
                }
                ref->acc = a;
                ref->ip = ip;
            }
        }
        atomic_fetch_add_explicit(&a->conns, 1, memory_order_relaxed);
        at_gauge_add(a->open, 1);
        sock->on_close.cb = ref != NULL ? on_close_counted : on_close_plain;
        sock->on_close.data = ref != NULL ? (void *)ref : (void *)a;
        h2o_accept(l->actx, sock);
    }
}

void at_listener_start(at_listener_t *l, at_acceptor_t *acc, h2o_evloop_t *loop, int fd, h2o_accept_ctx_t *actx)
{
    l->acc = acc;
    l->actx = actx;
    l->paused = false;
    l->sock = h2o_evloop_socket_create(loop, fd, H2O_SOCKET_FLAG_DONT_READ);
    l->sock->data = l;
    h2o_socket_read_start(l->sock, on_accept);
}

void at_listener_tick(at_listener_t *l)
{
    if (l->paused && l->sock != NULL &&
        atomic_load_explicit(&l->acc->conns, memory_order_relaxed) < l->acc->lim.max_connections) {
        l->paused = false;
        h2o_socket_read_start(l->sock, on_accept);
    }
}

void at_listener_close(at_listener_t *l)
{
    if (l->sock == NULL)
        return;
    if (!l->paused)
        h2o_socket_read_stop(l->sock);
    h2o_socket_close(l->sock);
    l->sock = NULL;
}

long at_accept_raise_fd_limit(int64_t *max_connections, long reserve, const char *option)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return -1;
    if (rl.rlim_cur < rl.rlim_max) {
        rlim_t want = rl.rlim_max == RLIM_INFINITY ? (rlim_t)1 << 20 : rl.rlim_max;
        struct rlimit raised = {want, rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
            rl.rlim_cur = want;
    }
    long soft = rl.rlim_cur == RLIM_INFINITY ? (1L << 20) : (long)rl.rlim_cur;
    if (max_connections != NULL && *max_connections + reserve > soft) {
        int64_t fit = soft - reserve > 1 ? soft - reserve : 1;
        char want[32], have[32], lim[32];
        snprintf(want, sizeof(want), "%lld", (long long)*max_connections);
        snprintf(have, sizeof(have), "%lld", (long long)fit);
        snprintf(lim, sizeof(lim), "%ld", soft);
        at_log(AT_LOG_WARN, "accept", "the open-files limit cannot hold that many connections; lowered", "option", option,
               "asked", want, "using", have, "nofile_limit", lim, NULL);
        *max_connections = fit;
    }
    return soft;
}
