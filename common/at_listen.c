/*
 * at_listen.c: --listen parsing and listening sockets (see at_listen.h).
 */
#include "at_listen.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

int at_listen_parse(const char *listen, struct sockaddr_storage *ss, socklen_t *len, at_err_t *err)
{
    char host[300];
    const char *colon = strrchr(listen, ':');
    const char *hs = listen, *he = colon;

    if (colon == NULL || colon[1] == '\0')
        return at_err_set(err, AT_ERR_INVALID, "--listen: expected HOST:PORT, got '%s'", listen);
    if (*hs == '[' && he > hs && he[-1] == ']') {
        hs++;
        he--;
    }
    if ((size_t)(he - hs) >= sizeof(host))
        return at_err_set(err, AT_ERR_INVALID, "--listen: host too long in '%s'", listen);
    memcpy(host, hs, (size_t)(he - hs));
    host[he - hs] = '\0';
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host[0] ? host : NULL, colon + 1, &hints, &res);
    if (rc != 0)
        return at_err_set(err, AT_ERR_INVALID, "--listen: cannot resolve '%s': %s", listen, gai_strerror(rc));
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int at_listen_open(struct sockaddr_storage *ss, socklen_t *len, int backlog, const char *what, at_err_t *err)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;

    if (fd < 0)
        return at_err_set(err, AT_ERR_IO, "--listen: socket: %s", strerror(errno));
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (bind(fd, (struct sockaddr *)ss, *len) != 0 || listen(fd, backlog) != 0) {
        at_err_set(err, AT_ERR_IO, "--listen %s: %s", what, strerror(errno));
        close(fd);
        return -1;
    }
    getsockname(fd, (struct sockaddr *)ss, len);
    return fd;
}

int at_listen_port(const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
    if (ss->ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)ss)->sin_port);
    return 0;
}
