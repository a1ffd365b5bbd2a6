/*
 * at_listen.h: the `--listen HOST:PORT` option and the listening sockets behind it, shared
 * by every service that serves HTTP (collector, coredata, the enricher's ops listener).
 */
#ifndef AT_LISTEN_H
#define AT_LISTEN_H

#include <sys/socket.h>
#include "at_err.h"

/* Parses "HOST:PORT", "[IPv6]:PORT" or ":PORT" (any address) into @p ss / @p len, with
 * numeric ports. 0, or -1 with @p err naming --listen and what was expected. */
int at_listen_parse(const char *listen, struct sockaddr_storage *ss, socklen_t *len, at_err_t *err);

/*
 * Opens a non-blocking, close-on-exec TCP listener bound to @p ss with SO_REUSEADDR,
 * SO_REUSEPORT (so each event-loop thread can have its own listener on the same port) and
 * TCP_NODELAY. On success stores the bound address back into @p ss / @p len (port 0 becomes
 * the port the kernel chose) and returns the fd, which the caller closes. @p what is the
 * option's text, for messages. -1 + err on failure.
 */
int at_listen_open(struct sockaddr_storage *ss, socklen_t *len, int backlog, const char *what, at_err_t *err);

/* The port of @p ss (host order), 0 for a non-IP family. */
int at_listen_port(const struct sockaddr_storage *ss);

#endif
