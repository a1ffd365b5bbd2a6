/*
 * at_accept.h: accepting HTTP connections within limits, shared by the services that serve
 * HTTP to the outside (collector, coredata, dashboard).
 *
 * What a flood of connections must not do: take every file descriptor (accept() then fails
 * with EMFILE while the listener stays readable, and the loop spins), let one client address
 * hold every connection, or starve the clients already connected. So:
 *  - at most `max_connections` per process: at the limit each loop stops reading its
 *    listener (new connections wait in the kernel's backlog) and resumes once connections
 *    have closed, checked on every tick of the loop;
 *  - at most `max_per_ip` per client address (0 = no limit): one more is accepted and
 *    closed at once, counted in adtrack_http_connections_refused_total{reason="per_ip"};
 *    addresses for which `exempt` says yes (e.g. the collector's trusted load balancers,
 *    which carry everybody's traffic) are not limited per address;
 *  - when accept() fails for lack of descriptors, the listener pauses until the next tick
 *    instead of spinning;
 *  - at_accept_raise_fd_limit() lifts the soft RLIMIT_NOFILE to the hard limit at start.
 * Slow clients are the business of the h2o request timeout (http1.req_timeout): in h2o
 * 2.2.5 it runs from the moment a connection waits for a request until the whole request,
 * headers and body, has arrived, and it also ends idle keep-alive connections.
 *
 * Metrics: adtrack_http_connections (gauge, open connections),
 * adtrack_http_connections_refused_total{reason="per_ip"}, and
 * adtrack_http_accept_paused_total{reason="max_connections|fd_limit"}.
 */
#ifndef AT_ACCEPT_H
#define AT_ACCEPT_H

#include <stdbool.h>
#include <sys/socket.h>
#include <h2o.h>

#include "at_err.h"
#include "at_metrics.h"

typedef bool (*at_accept_exempt_cb)(const struct sockaddr *sa, void *opaque);

typedef struct at_accept_limits_s {
    int max_connections;        /* per process, >= 1 */
    int max_per_ip;             /* per client address; 0 = unlimited */
    at_accept_exempt_cb exempt; /* NULL, or: true = no per-address limit for this peer */
    void *exempt_opaque;
} at_accept_limits_t;

/* Shared by all loops of one process. */
typedef struct at_acceptor_s at_acceptor_t;

/* One listener of one loop. @locality: that loop's thread */
typedef struct at_listener_s {
    at_acceptor_t *acc;
    h2o_socket_t *sock;
    h2o_accept_ctx_t *actx;
    bool paused;
} at_listener_t;

/*
 * Returns a new acceptor (registering its metrics on @p m, which must outlive it), or NULL +
 * err. @p comp names the service in log lines. Free with at_acceptor_destroy() after every
 * loop using it has stopped. @locality: main thread
 */
at_acceptor_t *at_acceptor_new(const at_accept_limits_t *limits, at_metrics_t *m, const char *comp, at_err_t *err);
void at_acceptor_destroy(at_acceptor_t *a);

/* Open connections of the process right now. @locality: any thread */
int at_acceptor_connections(const at_acceptor_t *a);

/* Starts accepting on @p fd (a listening socket; the listener takes it over) into @p actx.
 * @locality: the loop's thread */
void at_listener_start(at_listener_t *l, at_acceptor_t *acc, h2o_evloop_t *loop, int fd, h2o_accept_ctx_t *actx);

/* Resumes a listener paused at a limit once the process is under it again. Call it from the
 * loop's periodic tick. @locality: the loop's thread */
void at_listener_tick(at_listener_t *l);

/* Stops accepting and closes the listening socket; accepts a listener never started.
 * @locality: the loop's thread */
void at_listener_close(at_listener_t *l);

/*
 * Raises the soft RLIMIT_NOFILE to the hard limit. Returns the soft limit now in force, and
 * lowers *@p max_connections (with a warning naming @p option) when the limit cannot hold
 * that many connections plus @p reserve descriptors for everything else. @locality: main thread
 */
long at_accept_raise_fd_limit(int64_t *max_connections, long reserve, const char *option);

#endif
