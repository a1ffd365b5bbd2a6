/*
 * cli_http.c: see cli_http.h.
 */
#include "cli_http.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct url_s {
    char host[256];
    char port[8];
    char prefix[512];
} url_t;

static int parse_url(const char *u, url_t *out, at_err_t *err)
{
    if (strncmp(u, "http://", 7) != 0)
        return at_err_set(err, AT_ERR_INVALID, "--api: expected http://HOST[:PORT][/PREFIX], got '%.64s'", u);
    const char *h = u + 7, *slash = strchr(h, '/');
    const char *hend = slash ? slash : h + strlen(h);
    const char *colon = memchr(h, ':', (size_t)(hend - h));
    if (h[0] == '[') /* [v6]:port */
        colon = memchr(h, ']', (size_t)(hend - h)) ? strchr(memchr(h, ']', (size_t)(hend - h)), ':') : NULL;
    if (colon != NULL && colon > hend)
        colon = NULL;
    const char *hostend = colon ? colon : hend;
    if (h[0] == '[') {
        h++;
        hostend = memchr(h, ']', (size_t)(hend - h));
        if (hostend == NULL)
            return at_err_set(err, AT_ERR_INVALID, "--api: unterminated [IPv6] host");
    }
    size_t hl = (size_t)(hostend - h);
    if (hl == 0 || hl >= sizeof(out->host))
        return at_err_set(err, AT_ERR_INVALID, "--api: expected a host name");
    memcpy(out->host, h, hl);
    out->host[hl] = '\0';
    if (colon != NULL) {
        size_t pl = (size_t)(hend - colon - 1);
        if (pl == 0 || pl >= sizeof(out->port))
            return at_err_set(err, AT_ERR_INVALID, "--api: expected a port number");
        memcpy(out->port, colon + 1, pl);
        out->port[pl] = '\0';
    } else {
        snprintf(out->port, sizeof(out->port), "80");
    }
    snprintf(out->prefix, sizeof(out->prefix), "%s", slash ? slash : "");
    size_t n = strlen(out->prefix);
    if (n > 0 && out->prefix[n - 1] == '/')
        out->prefix[n - 1] = '\0';
    return 0;
}

static int connect_to(const url_t *u, int64_t deadline, at_err_t *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(u->host, u->port, &hints, &res);
    if (rc != 0)
        return at_err_set(err, AT_ERR_UNAVAILABLE, "cannot resolve %s: %s", u->host, gai_strerror(rc));
    int fd = -1, last = 0;
    for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
            last = errno;
            close(fd);
            fd = -1;
            continue;
        }
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int left = (int)(deadline - now_ms());
        int soerr = 0;
        socklen_t sl = sizeof(soerr);
        if (left <= 0 || poll(&p, 1, left) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr) {
            last = soerr ? soerr : ETIMEDOUT;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0)
        return at_err_set(err, AT_ERR_UNAVAILABLE, "cannot connect to %s:%s: %s", u->host, u->port, strerror(last));
    return fd;
}

static int send_all(int fd, const char *p, size_t n, int64_t deadline)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EAGAIN) {
                struct pollfd pf = {.fd = fd, .events = POLLOUT};
                int left = (int)(deadline - now_ms());
                if (left <= 0 || poll(&pf, 1, left) != 1)
                    return -1;
                continue;
            }
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Decodes a chunked body in place; returns the decoded length or -1. */
static ssize_t dechunk(char *b, size_t len)
{
    size_t in = 0, out = 0;
    for (;;) {
        char *end;
        unsigned long sz = strtoul(b + in, &end, 16);
        char *crlf = strstr(b + in, "\r\n");
        if (crlf == NULL || end == b + in)
            return -1;
        in = (size_t)(crlf - b) + 2;
        if (sz == 0)
            return (ssize_t)out;
        if (in + sz + 2 > len)
            return -1;
        memmove(b + out, b + in, sz);
        out += sz;
        in += sz + 2;
    }
}

int cli_http(const char *base_url, const char *method, const char *path, const char *token, const char *extra_header,
             const char *body, size_t body_len, int timeout_ms, cli_resp_t *resp, at_err_t *err)
{
    url_t u;
    int64_t deadline = now_ms() + timeout_ms;
    memset(resp, 0, sizeof(*resp));
    if (parse_url(base_url, &u, err) != 0)
        return -1;
    int fd = connect_to(&u, deadline, err);
    if (fd < 0)
        return -1;
    size_t hcap = 2048 + strlen(path) + strlen(u.prefix) + (token ? strlen(token) : 0) +
                  (extra_header ? strlen(extra_header) : 0);
    char *req = malloc(hcap + body_len);
    int n = snprintf(req, hcap,
                     "%s %s%s HTTP/1.1\r\nHost: %s:%s\r\nUser-Agent: adtrack-cli\r\nAccept: application/json\r\n"
                     "Connection: close\r\n%s%s%s%s%s",
                     method, u.prefix, path, u.host, u.port, token ? "Authorization: Bearer " : "", token ? token : "",
                     token ? "\r\n" : "", extra_header ? extra_header : "", extra_header ? "\r\n" : "");
    if (body != NULL)
        n += snprintf(req + n, hcap - (size_t)n, "Content-Type: application/json\r\nContent-Length: %zu\r\n", body_len);
    n += snprintf(req + n, hcap - (size_t)n, "\r\n");
    if (body != NULL) {
        memcpy(req + n, body, body_len);
        n += (int)body_len;
    }
    int rc = send_all(fd, req, (size_t)n, deadline);
    free(req);
    if (rc != 0) {
        close(fd);
        return at_err_set(err, AT_ERR_IO, "sending the request failed: %s", strerror(errno));
    }

    size_t cap = 16384, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (len + 1 >= cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t r = recv(fd, buf + len, cap - len - 1, 0);
        if (r > 0) {
            len += (size_t)r;
            continue;
        }
        if (r == 0)
            break;
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            int left = (int)(deadline - now_ms());
            if (left > 0 && poll(&pf, 1, left) == 1)
                continue;
            free(buf);
            close(fd);
            return at_err_set(err, AT_ERR_TIMEOUT, "no complete answer within %d ms", timeout_ms);
        }
        free(buf);
        close(fd);
        return at_err_set(err, AT_ERR_IO, "reading the answer failed: %s", strerror(errno));
    }
    close(fd);
    buf[len] = '\0';
    char *hend = strstr(buf, "\r\n\r\n");
    if (strncmp(buf, "HTTP/1.", 7) != 0 || hend == NULL || len < 12) {
        free(buf);
        return at_err_set(err, AT_ERR_INVALID, "not an HTTP answer");
    }
    resp->status = atoi(buf + 9);
    *hend = '\0';
    bool chunked = false;
    for (char *line = strstr(buf, "\r\n"); line != NULL; line = strstr(line + 2, "\r\n"))
        if (strncasecmp(line + 2, "transfer-encoding:", 18) == 0 && strstr(line + 2, "chunked") != NULL)
            chunked = true;
    size_t blen = len - (size_t)(hend + 4 - buf);
    char *b = malloc(blen + 1);
    memcpy(b, hend + 4, blen);
    b[blen] = '\0';
    free(buf);
    if (chunked) {
        ssize_t d = dechunk(b, blen);
        if (d < 0) {
            free(b);
            return at_err_set(err, AT_ERR_INVALID, "malformed chunked answer");
        }
        blen = (size_t)d;
        b[blen] = '\0';
    }
    resp->body = b;
    resp->body_len = blen;
    return 0;
}

void cli_resp_free(cli_resp_t *resp)
{
    if (resp == NULL)
        return;
    free(resp->body);
    resp->body = NULL;
}
