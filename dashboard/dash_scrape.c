/*
 * dash_scrape.c: see dash_scrape.h. Non-blocking socket + poll(2) against one deadline,
 * so a target that accepts but never answers costs at most the timeout.
 */
#include "dash_scrape.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int dash_url_parse(const char *url, dash_url_t *u, at_err_t *err)
{
    memset(u, 0, sizeof(*u));
    if (strncasecmp(url, "http://", 7) != 0)
        return at_err_set(err, AT_ERR_INVALID, "--scrape: expected an http:// URL, got '%s'", url);
    const char *h = url + 7;
    const char *slash = strchr(h, '/');
    const char *hend = slash != NULL ? slash : h + strlen(h);
    const char *port = NULL;
    const char *hs = h, *he = hend;
    if (*h == '[') {
        const char *rb = memchr(h, ']', (size_t)(hend - h));
        if (rb == NULL)
            return at_err_set(err, AT_ERR_INVALID, "--scrape: unterminated [IPv6] host in '%s'", url);
        hs = h + 1;
        he = rb;
        if (rb + 1 < hend) {
            if (rb[1] != ':')
                return at_err_set(err, AT_ERR_INVALID, "--scrape: expected ':' after ']' in '%s'", url);
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(h, ':', (size_t)(hend - h));
        if (colon != NULL) {
            he = colon;
            port = colon + 1;
        }
    }
    if (he == hs || (size_t)(he - hs) >= sizeof(u->host))
        return at_err_set(err, AT_ERR_INVALID, "--scrape: expected a host in '%s'", url);
    memcpy(u->host, hs, (size_t)(he - hs));
    u->port = 80;
    if (port != NULL) {
        int p = 0;
        if (port == hend)
            return at_err_set(err, AT_ERR_INVALID, "--scrape: empty port in '%s'", url);
        for (const char *c = port; c < hend; c++) {
            if (*c < '0' || *c > '9' || p > 65535)
                return at_err_set(err, AT_ERR_INVALID, "--scrape: expected a port from 1 to 65535 in '%s'", url);
            p = p * 10 + (*c - '0');
        }
        if (p < 1 || p > 65535)
            return at_err_set(err, AT_ERR_INVALID, "--scrape: expected a port from 1 to 65535 in '%s'", url);
        u->port = p;
    }
    const char *path = slash != NULL ? slash : "/";
    if (strlen(path) >= sizeof(u->path))
        return at_err_set(err, AT_ERR_INVALID, "--scrape: path too long in '%s'", url);
    for (const char *c = path; *c; c++)
        if ((unsigned char)*c <= 0x20 || *c == 0x7f)
            return at_err_set(err, AT_ERR_INVALID, "--scrape: control character or space in '%s'", url);
    memcpy(u->path, path, strlen(path) + 1);
    return 0;
}

int dash_scrape_spec(const char *spec, char *name, size_t name_size, char *url, size_t url_size, at_err_t *err)
{
    const char *eq = strchr(spec, '=');
    const char *scheme = strstr(spec, "://");
    if (eq != NULL && (scheme == NULL || eq < scheme)) {
        size_t nl = (size_t)(eq - spec);
        if (nl == 0 || nl >= name_size)
            return at_err_set(err, AT_ERR_INVALID,
                              "--scrape: expected NAME=URL with a name of 1 to %zu bytes, got '%s'", name_size - 1,
                              spec);
        memcpy(name, spec, nl);
        name[nl] = '\0';
        spec = eq + 1;
    } else {
        name[0] = '\0';
    }
    if (strlen(spec) >= url_size)
        return at_err_set(err, AT_ERR_INVALID, "--scrape: URL too long in '%s'", spec);
    dash_url_t u;
    if (dash_url_parse(spec, &u, err) != 0)
        return -1;
    memcpy(url, spec, strlen(spec) + 1);
    if (name[0] == '\0')
        snprintf(name, name_size, "%s:%d", u.host, u.port);
    return 0;
}

static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - mono_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        return r;
    }
}

static int connect_deadline(const dash_url_t *u, int64_t deadline, at_err_t *err)
{
    char port[16];
    snprintf(port, sizeof(port), "%d", u->port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    /* Names resolve through the system resolver, which may block; targets are normally IPs. */
    int rc = getaddrinfo(u->host, port, &hints, &res);
    if (rc != 0)
        return at_err_set(err, AT_ERR_UNAVAILABLE, "cannot resolve %s: %s", u->host, gai_strerror(rc));
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        freeaddrinfo(res);
        return at_err_set(err, AT_ERR_IO, "socket: %s", strerror(errno));
    }
    rc = connect(fd, res->ai_addr, res->ai_addrlen);
    freeaddrinfo(res);
    if (rc != 0 && errno != EINPROGRESS) {
        int e = errno;
        close(fd);
        return at_err_set(err, AT_ERR_UNAVAILABLE, "connect: %s", strerror(e));
    }
    if (rc != 0) {
        if (wait_fd(fd, POLLOUT, deadline) <= 0) {
            close(fd);
            return at_err_set(err, AT_ERR_TIMEOUT, "connect: timed out");
        }
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
        if (soerr != 0) {
            close(fd);
            return at_err_set(err, AT_ERR_UNAVAILABLE, "connect: %s", strerror(soerr));
        }
    }
    return fd;
}

int dash_scrape_get(const dash_url_t *u, int timeout_ms, size_t max_bytes, char **body, size_t *len, at_err_t *err)
{
    return dash_http_get(u, "text/plain", NULL, timeout_ms, max_bytes, body, len, err);
}

int dash_http_get(const dash_url_t *u, const char *accept, const char *bearer, int timeout_ms, size_t max_bytes,
                  char **body, size_t *len, at_err_t *err)
{
    int64_t deadline = mono_ms() + timeout_ms;
    *body = NULL;
    *len = 0;
    int fd = connect_deadline(u, deadline, err);
    if (fd < 0)
        return -1;

    char req[2600];
    int n = snprintf(req, sizeof(req), "GET %s HTTP/1.0\r\nHost: %s:%d\r\nAccept: %s\r\n%s%s%sUser-Agent: adtrack-dashboard\r\n\r\n",
                     u->path, u->host, u->port, accept, bearer ? "Authorization: Bearer " : "", bearer ? bearer : "",
                     bearer ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof(req)) {
        close(fd);
        return at_err_set(err, AT_ERR_INVALID, "request line and headers longer than %zu bytes", sizeof(req));
    }
    size_t off = 0;
    while (off < (size_t)n) {
        ssize_t w = send(fd, req + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w > 0) {
            off += (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR) && wait_fd(fd, POLLOUT, deadline) > 0)
            continue;
        close(fd);
        return at_err_set(err, AT_ERR_IO, "send: %s", w < 0 ? strerror(errno) : "timed out");
    }

    size_t cap = 16384, got = 0, limit = max_bytes + 8192; /* room for the header block */
    char *buf = malloc(cap);
    if (buf == NULL) {
        close(fd);
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    }
    for (;;) {
        if (got + 1 >= cap) {
            if (cap >= limit) {
                free(buf);
                close(fd);
                return at_err_set(err, AT_ERR_TOO_LARGE, "response larger than %zu bytes", max_bytes);
            }
            size_t ncap = AT_MIN(cap * 2, limit);
            char *nb = realloc(buf, ncap);
            if (nb == NULL) {
                free(buf);
                close(fd);
                return at_err_set(err, AT_ERR_NOMEM, "out of memory");
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = recv(fd, buf + got, cap - got - 1, 0);
        if (r > 0) {
            got += (size_t)r;
            continue;
        }
        if (r == 0)
            break;
        if ((errno == EAGAIN || errno == EINTR) && wait_fd(fd, POLLIN, deadline) > 0)
            continue;
        free(buf);
        close(fd);
        return at_err_set(err, errno == EAGAIN ? AT_ERR_TIMEOUT : AT_ERR_IO, "read: %s",
                          errno == EAGAIN ? "timed out" : strerror(errno));
    }
    close(fd);
    buf[got] = '\0';

    int status = 0;
    if (got < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || sscanf(buf + 9, "%3d", &status) != 1) {
        free(buf);
        return at_err_set(err, AT_ERR_INVALID, "not an HTTP response");
    }
    char *hend = strstr(buf, "\r\n\r\n");
    if (hend == NULL) {
        free(buf);
        return at_err_set(err, AT_ERR_INVALID, "HTTP response without a header end");
    }
    if (status != 200) {
        free(buf);
        return at_err_set(err, AT_ERR_UNAVAILABLE, "HTTP %d", status);
    }
    size_t hlen = (size_t)(hend + 4 - buf);
    memmove(buf, buf + hlen, got - hlen + 1);
    *body = buf;
    *len = got - hlen;
    return 0;
}
