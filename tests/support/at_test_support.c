/*
 * at_test_support.c: see at_test_support.h.
 *
 * Conventions: every wait has a deadline computed once from ts_now_ms() and every blocking
 * call is a poll() bounded by what is left of it. Failures print one line on stderr saying
 * what was waited for, so a failing integration test explains itself in ctest's output.
 */
#include "at_test_support.h"

#include "at_common.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

extern char **environ;

static void ts_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ts_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("[ts] ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

int64_t ts_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int ts_left(int64_t deadline)
{
    int64_t left = deadline - ts_now_ms();
    return left < 0 ? 0 : (int)AT_MIN(left, INT32_MAX);
}

static void ts_sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static char *ts_strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *ts_strdup_printf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;
    va_start(ap, fmt);
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

char *ts_bin(const char *name)
{
    const char *dir = getenv("ADTRACK_BIN_DIR");
    return ts_strdup_printf("%s/%s", dir && dir[0] ? dir : "build/bin", name);
}

char *ts_tmpdir(const char *name)
{
    const char *root = getenv("ADTRACK_TEST_TMP");
    if (root == NULL || root[0] == '\0')
        root = "/tmp";
    mkdir(root, 0755); /* usually exists (CMake creates it); EEXIST is fine */
    /* mkdtemp makes it fresh, empty and unique, so parallel tests never share one. */
    char *path = ts_strdup_printf("%s/%s.XXXXXX", root, name);
    if (path == NULL)
        return NULL;
    if (mkdtemp(path) == NULL) {
        ts_note("ts_tmpdir: mkdtemp %s: %s", path, strerror(errno));
        free(path);
        return NULL;
    }
    return path;
}

int ts_free_port(void)
{
    struct sockaddr_in sa;
    socklen_t len = sizeof(sa);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || getsockname(fd, (struct sockaddr *)&sa, &len) != 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(sa.sin_port);
}

/* ---- processes --------------------------------------------------------------------------- */

/* environ plus @p extra, where an extra "K=V" replaces an inherited K. Heap array of borrowed
 * pointers; free() the array only. */
static char **ts_env_build(char *const extra[])
{
    size_t n_env = 0, n_extra = 0;
    while (environ != NULL && environ[n_env] != NULL)
        n_env++;
    while (extra != NULL && extra[n_extra] != NULL)
        n_extra++;
    char **env = calloc(n_env + n_extra + 1, sizeof(*env));
    if (env == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t klen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool overridden = false;
        for (size_t j = 0; j < n_extra && !overridden; j++)
            overridden = strncmp(extra[j], environ[i], klen) == 0 && extra[j][klen] == '=';
        if (!overridden)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < n_extra; j++)
        env[k++] = extra[j];
    env[k] = NULL;
    return env;
}

/*
 * Reads one line from @p fd byte by byte until '\n', EOF or the deadline. Byte-wise on
 * purpose: nothing past the newline is consumed, so later reads of the same pipe (control
 * answers, the rest of a --help text) still see it. Returns the length, or -1.
 */
static int ts_read_line(int fd, char *buf, size_t size, int64_t deadline)
{
    size_t len = 0;
    if (size == 0)
        return -1;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, ts_left(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break; /* timeout or error */
        char c;
        ssize_t n = read(fd, &c, 1);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0)
            break; /* EOF */
        if (c == '\n') {
            buf[len] = '\0';
            return (int)len;
        }
        if (len + 1 < size)
            buf[len++] = c;
    }
    buf[len] = '\0';
    return -1;
}

static void ts_close(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* A test writing to a child that already died must get EPIPE, not die of SIGPIPE. */
static void ts_ignore_sigpipe(void)
{
    static bool done;
    if (!done) {
        signal(SIGPIPE, SIG_IGN);
        done = true;
    }
}

/* argv[0] as execve wants it: itself when it contains a '/', else the first executable match
 * in our PATH (as posix_spawnp would search). Heap string, or NULL when nothing matched. */
static char *ts_resolve(const char *name)
{
    if (strchr(name, '/') != NULL)
        return strdup(name);
    const char *path = getenv("PATH");
    if (path == NULL || path[0] == '\0')
        path = "/usr/local/bin:/usr/bin:/bin";
    for (const char *p = path;;) {
        const char *colon = strchr(p, ':');
        size_t len = colon ? (size_t)(colon - p) : strlen(p);
        char *cand = ts_strdup_printf("%.*s/%s", (int)len, len ? p : ".", name);
        if (cand != NULL && access(cand, X_OK) == 0)
            return cand;
        free(cand);
        if (colon == NULL)
            return NULL;
        p = colon + 1;
    }
}

/*
 * fork + execve with: stdin from @p in_rd (or /dev/null when -1), stdout to @p out_wr (or to
 * our stderr when -1), stderr to @p err_wr (or inherited when -1). The child starts with an
 * empty signal mask and default SIGPIPE/SIGINT/SIGTERM, whatever the test process set, and
 * gets SIGKILL when the thread that started it dies (PR_SET_PDEATHSIG): a test killed by
 * ctest's timeout or a crash must not leave servers running. So spawn from the main thread
 * (or one that outlives the child). An exec failure comes back through a close-on-exec pipe,
 * so it is reported here rather than as a child exiting 127.
 */
static int ts_spawn_raw(pid_t *pid, char *const argv[], char *const env_extra[], int in_rd, int out_wr, int err_wr)
{
    int errpipe[2] = {-1, -1};
    char **env = ts_env_build(env_extra);
    char *path = ts_resolve(argv[0]);
    if (env == NULL || path == NULL) {
        ts_note("spawn %s: %s", argv[0], path == NULL ? "not found in PATH" : "out of memory");
        free(env);
        free(path);
        return -1;
    }
    if (pipe2(errpipe, O_CLOEXEC) != 0) {
        ts_note("spawn %s: pipe: %s", argv[0], strerror(errno));
        free(env);
        free(path);
        return -1;
    }
    pid_t parent = getpid();
    pid_t child = fork();
    if (child == 0) {
        /* Only async-signal-safe calls from here on: the parent may have other threads. */
        struct sigaction dfl;
        sigset_t empty;
        memset(&dfl, 0, sizeof(dfl));
        dfl.sa_handler = SIG_DFL;
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent)
            _exit(127); /* the parent died before prctl took effect */
        if (in_rd < 0)
            in_rd = open("/dev/null", O_RDONLY);
        if (in_rd < 0 || dup2(in_rd, STDIN_FILENO) < 0 ||
            dup2(out_wr >= 0 ? out_wr : STDERR_FILENO, STDOUT_FILENO) < 0 ||
            (err_wr >= 0 && dup2(err_wr, STDERR_FILENO) < 0))
            goto child_fail;
        sigaction(SIGPIPE, &dfl, NULL);
        sigaction(SIGINT, &dfl, NULL);
        sigaction(SIGTERM, &dfl, NULL);
        sigemptyset(&empty);
        sigprocmask(SIG_SETMASK, &empty, NULL);
        execve(path, argv, env);
    child_fail:;
        int e = errno;
        ssize_t wr = write(errpipe[1], &e, sizeof(e));
        (void)wr;
        _exit(127);
    }
    int fork_errno = errno;
    close(errpipe[1]);
    free(env);
    free(path);
    if (child < 0) {
        close(errpipe[0]);
        ts_note("spawn %s: fork: %s", argv[0], strerror(fork_errno));
        return -1;
    }
    int child_errno = 0;
    ssize_t n;
    while ((n = read(errpipe[0], &child_errno, sizeof(child_errno))) < 0 && errno == EINTR)
        ;
    close(errpipe[0]);
    if (n == (ssize_t)sizeof(child_errno)) {
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
            ;
        ts_note("spawn %s: %s", argv[0], strerror(child_errno));
        return -1;
    }
    *pid = child;
    return 0;
}

int ts_spawn(ts_proc_t *p, char *const argv[], char *const env_extra[], bool want_first_line, int timeout_ms)
{
    int in_pipe[2] = {-1, -1}, out_pipe[2] = {-1, -1};
    int64_t deadline = ts_now_ms() + timeout_ms;

    ts_ignore_sigpipe();
    memset(p, 0, sizeof(*p));
    p->pid = 0;
    p->stdin_fd = -1;
    p->stdout_fd = -1;

    if (pipe2(in_pipe, O_CLOEXEC) != 0)
        goto fail_pipes;
    if (want_first_line && pipe2(out_pipe, O_CLOEXEC) != 0)
        goto fail_pipes;
    if (ts_spawn_raw(&p->pid, argv, env_extra, in_pipe[0], out_pipe[1], -1) != 0)
        goto fail_pipes;
    ts_close(&in_pipe[0]);
    ts_close(&out_pipe[1]);
    p->stdin_fd = in_pipe[1];
    p->stdout_fd = out_pipe[0];

    if (want_first_line && ts_read_line(p->stdout_fd, p->first_line, sizeof(p->first_line), deadline) < 0) {
        ts_note("%s: no first stdout line within %d ms (got '%s')", argv[0], timeout_ms, p->first_line);
        ts_kill(p);
        return -1;
    }
    return 0;

fail_pipes:
    ts_note("ts_spawn %s: %s", argv[0], strerror(errno));
    ts_close(&in_pipe[0]);
    ts_close(&in_pipe[1]);
    ts_close(&out_pipe[0]);
    ts_close(&out_pipe[1]);
    p->pid = 0;
    return -1;
}

int ts_send_line(ts_proc_t *p, const char *line)
{
    if (p->stdin_fd < 0)
        return -1;
    size_t len = strlen(line);
    char *buf = malloc(len + 1);
    if (buf == NULL)
        return -1;
    memcpy(buf, line, len);
    buf[len] = '\n';
    size_t off = 0;
    while (off < len + 1) {
        ssize_t n = write(p->stdin_fd, buf + off, len + 1 - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(buf);
            return -1;
        }
        off += (size_t)n;
    }
    free(buf);
    return 0;
}

int ts_read_stdout_line(ts_proc_t *p, char *buf, size_t size, int timeout_ms)
{
    if (p->stdout_fd < 0 || size == 0)
        return -1;
    return ts_read_line(p->stdout_fd, buf, size, ts_now_ms() + timeout_ms) < 0 ? -1 : 0;
}

int ts_signal(ts_proc_t *p, int sig)
{
    if (p->pid <= 0)
        return -1;
    return kill(p->pid, sig);
}

int ts_wait(ts_proc_t *p, int timeout_ms, int *status)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    if (p->pid <= 0)
        return -1;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(p->pid, &st, WNOHANG);
        if (r == p->pid) {
            if (status != NULL)
                *status = st;
            p->pid = 0; /* reaped: never signal a recycled pid */
            return 0;
        }
        if (r < 0 && errno != EINTR)
            return -1;
        if (ts_now_ms() >= deadline)
            return -1;
        ts_sleep_ms(10);
    }
}

void ts_kill(ts_proc_t *p)
{
    if (p == NULL)
        return;
    if (p->pid > 0) {
        kill(p->pid, SIGKILL);
        while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        p->pid = 0;
    }
    /* A zeroed struct has fd 0 here: only close what ts_spawn opened (always > 2). */
    if (p->stdin_fd > 2)
        close(p->stdin_fd);
    if (p->stdout_fd > 2)
        close(p->stdout_fd);
    p->stdin_fd = -1;
    p->stdout_fd = -1;
}

/* Drains @p fd into a growing heap buffer; returns 1 at EOF, 0 if more may come, -1 on error. */
static int ts_drain(int fd, char **buf, size_t *len, size_t *cap)
{
    char chunk[4096];
    ssize_t n = read(fd, chunk, sizeof(chunk));
    if (n < 0)
        return (errno == EINTR || errno == EAGAIN) ? 0 : -1;
    if (n == 0)
        return 1;
    if (*len + (size_t)n + 1 > *cap) {
        size_t ncap = AT_MAX(*cap * 2, *len + (size_t)n + 1);
        char *nb = realloc(*buf, ncap);
        if (nb == NULL)
            return -1;
        *buf = nb;
        *cap = ncap;
    }
    memcpy(*buf + *len, chunk, (size_t)n);
    *len += (size_t)n;
    (*buf)[*len] = '\0';
    return 0;
}

int ts_run(char *const argv[], char *const env_extra[], int timeout_ms, char **out, char **err, int *status)
{
    int opipe[2] = {-1, -1}, epipe[2] = {-1, -1};
    char *bufs[2] = {NULL, NULL};
    size_t lens[2] = {0, 0}, caps[2] = {0, 0};
    int64_t deadline = ts_now_ms() + timeout_ms;
    ts_proc_t p;
    int rc = -1;

    ts_ignore_sigpipe();
    memset(&p, 0, sizeof(p));
    p.stdin_fd = p.stdout_fd = -1;
    if (pipe2(opipe, O_CLOEXEC) != 0 || pipe2(epipe, O_CLOEXEC) != 0)
        goto out;
    if (ts_spawn_raw(&p.pid, argv, env_extra, -1, opipe[1], epipe[1]) != 0)
        goto out;
    ts_close(&opipe[1]);
    ts_close(&epipe[1]);
    for (int i = 0; i < 2; i++) {
        caps[i] = 1024;
        bufs[i] = calloc(1, caps[i]);
        if (bufs[i] == NULL)
            goto out;
    }

    struct pollfd pfd[2] = {{.fd = opipe[0], .events = POLLIN}, {.fd = epipe[0], .events = POLLIN}};
    while (pfd[0].fd >= 0 || pfd[1].fd >= 0) {
        int r = poll(pfd, 2, ts_left(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ts_note("ts_run %s: no EOF on its output within %d ms", argv[0], timeout_ms);
            goto out;
        }
        for (int i = 0; i < 2; i++) {
            if (pfd[i].fd >= 0 && pfd[i].revents != 0) {
                int d = ts_drain(pfd[i].fd, &bufs[i], &lens[i], &caps[i]);
                if (d < 0)
                    goto out;
                if (d == 1)
                    pfd[i].fd = -1;
            }
        }
    }
    /* EOF comes a moment before the child is reapable: allow at least a second for that. */
    if (ts_wait(&p, AT_MAX(ts_left(deadline), 1000), status) != 0) {
        ts_note("ts_run %s: did not exit within %d ms", argv[0], timeout_ms);
        goto out;
    }
    rc = 0;

out:
    ts_kill(&p);
    ts_close(&opipe[0]);
    ts_close(&opipe[1]);
    ts_close(&epipe[0]);
    ts_close(&epipe[1]);
    if (rc == 0 && out != NULL) {
        *out = bufs[0];
        bufs[0] = NULL;
    }
    if (rc == 0 && err != NULL) {
        *err = bufs[1];
        bufs[1] = NULL;
    }
    free(bufs[0]);
    free(bufs[1]);
    return rc;
}

static int ts_connect_local(int port, int64_t deadline)
{
    struct sockaddr_in sa;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0)
        return fd;
    if (errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    int r;
    while ((r = poll(&pfd, 1, ts_left(deadline))) < 0 && errno == EINTR)
        ;
    int soerr = 0;
    socklen_t slen = sizeof(soerr);
    if (r <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &slen) != 0 || soerr != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int ts_wait_port(int port, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    for (;;) {
        int fd = ts_connect_local(port, AT_MIN(deadline, ts_now_ms() + 1000));
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        if (ts_now_ms() >= deadline) {
            ts_note("nothing accepted connections on 127.0.0.1:%d within %d ms", port, timeout_ms);
            return -1;
        }
        ts_sleep_ms(20);
    }
}

/* ---- HTTP client ----------------------------------------------------------------------------- */

static int ts_send_all(int fd, const char *buf, size_t len, int64_t deadline)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EINTR)
            return -1;
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        if (poll(&pfd, 1, ts_left(deadline)) == 0)
            return -1;
    }
    return 0;
}

/* Finds "\r\n\r\n"; returns the offset just past it or 0. */
static size_t ts_header_end(const char *buf, size_t len)
{
    for (size_t i = 3; i < len; i++)
        if (buf[i - 3] == '\r' && buf[i - 2] == '\n' && buf[i - 1] == '\r' && buf[i] == '\n')
            return i + 1;
    return 0;
}

/* Header lookup in a raw header block (status line first). Heap copy of the trimmed value. */
static char *ts_header_find(const char *headers, const char *name)
{
    size_t nlen = strlen(name);
    const char *line = strstr(headers, "\r\n");
    while (line != NULL) {
        line += 2;
        const char *end = strstr(line, "\r\n");
        size_t llen = end ? (size_t)(end - line) : strlen(line);
        if (llen > nlen && strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            const char *ve = line + llen;
            while (v < ve && (*v == ' ' || *v == '\t'))
                v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            return strndup(v, (size_t)(ve - v));
        }
        line = end;
    }
    return NULL;
}

char *ts_http_header(const ts_http_resp_t *resp, const char *name)
{
    if (resp == NULL || resp->headers == NULL)
        return NULL;
    return ts_header_find(resp->headers, name);
}

void ts_http_resp_free(ts_http_resp_t *resp)
{
    if (resp == NULL)
        return;
    free(resp->headers);
    free(resp->body);
    memset(resp, 0, sizeof(*resp));
}

/*
 * Decodes the chunked body in @p in[0..len) into @p out (room for len bytes; NULL = only
 * check). Returns 1 when the terminating chunk was seen (and sets *out_len), 0 when more
 * input is needed, -1 on a malformed body. The input is left untouched, so a body that is
 * still incomplete can be decoded again once more bytes arrived.
 */
static int ts_dechunk(const char *in, size_t len, char *out, size_t *out_len)
{
    size_t pos = 0, n = 0;
    for (;;) {
        const char *crlf = memmem(in + pos, len - pos, "\r\n", 2);
        if (crlf == NULL)
            return 0;
        if (!isxdigit((unsigned char)in[pos]))
            return -1;
        errno = 0;
        unsigned long long size = strtoull(in + pos, NULL, 16); /* stops at ';' extensions */
        if (errno != 0)
            return -1;
        size_t data = (size_t)(crlf - in) + 2;
        if (size == 0) {
            *out_len = n;
            return 1; /* trailers are ignored */
        }
        if (size > len || len - data < (size_t)size + 2)
            return 0; /* the rest of this chunk has not arrived yet */
        if (out != NULL)
            memcpy(out + n, in + data, size);
        n += size;
        pos = data + size + 2;
    }
}

int ts_http(int port, const char *method, const char *path, const char *extra_headers, const char *body,
            size_t body_len, ts_http_resp_t *resp, int timeout_ms)
{
    int64_t deadline = ts_now_ms() + timeout_ms;
    char *req = NULL, *buf = NULL;
    size_t len = 0, cap = 0;
    int rc = -1;
    int fd;

    memset(resp, 0, sizeof(*resp));
    fd = ts_connect_local(port, deadline);
    if (fd < 0) {
        ts_note("ts_http: connect 127.0.0.1:%d failed", port);
        return -1;
    }
    char clen_hdr[64] = "";
    if (body != NULL)
        snprintf(clen_hdr, sizeof(clen_hdr), "Content-Length: %zu\r\n", body_len);
    req = ts_strdup_printf("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n%s%s\r\n", method, path,
                           port, extra_headers ? extra_headers : "", clen_hdr);
    if (req == NULL)
        goto out;
    if (ts_send_all(fd, req, strlen(req), deadline) != 0 ||
        (body != NULL && body_len > 0 && ts_send_all(fd, body, body_len, deadline) != 0)) {
        ts_note("ts_http: send to 127.0.0.1:%d failed", port);
        goto out;
    }

    bool head = strcasecmp(method, "HEAD") == 0;
    size_t hend = 0;
    long long clen = -1;
    bool chunked = false, eof = false;
    for (;;) {
        if (hend == 0 && (hend = ts_header_end(buf ? buf : "", len)) != 0) {
            resp->headers = strndup(buf, hend - 4);
            if (resp->headers == NULL || sscanf(buf, "HTTP/1.%*d %d", &resp->status) != 1) {
                ts_note("ts_http: malformed status line");
                goto out;
            }
            char *v = ts_header_find(resp->headers, "Content-Length");
            if (v != NULL)
                clen = strtoll(v, NULL, 10);
            free(v);
            v = ts_header_find(resp->headers, "Transfer-Encoding");
            chunked = v != NULL && strcasecmp(v, "chunked") == 0;
            free(v);
            if (head || resp->status == 204 || resp->status == 304 || (resp->status >= 100 && resp->status < 200))
                clen = 0;
        }
        if (hend != 0) {
            size_t have = len - hend;
            if (chunked) {
                size_t blen = 0;
                int d = ts_dechunk(buf + hend, have, NULL, &blen);
                if (d < 0) {
                    ts_note("ts_http: malformed chunked body");
                    goto out;
                }
                if (d == 1) {
                    /* Decode into a copy, then put the body right after the headers. */
                    char *body_copy = malloc(have + 1);
                    if (body_copy == NULL)
                        goto out;
                    ts_dechunk(buf + hend, have, body_copy, &blen);
                    memcpy(buf + hend, body_copy, blen);
                    free(body_copy);
                    len = hend + blen;
                    break;
                }
            } else if (clen >= 0 && have >= (size_t)clen) {
                len = hend + (size_t)clen;
                break;
            }
            if (eof && (!chunked && clen < 0))
                break; /* read-to-close body */
        }
        if (eof) {
            ts_note("ts_http: connection closed before the response was complete");
            goto out;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, ts_left(deadline));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            ts_note("ts_http: %s %s on port %d: no complete response within %d ms", method, path, port, timeout_ms);
            goto out;
        }
        int d = ts_drain(fd, &buf, &len, &cap);
        if (d < 0) {
            ts_note("ts_http: recv: %s", strerror(errno));
            goto out;
        }
        eof = d == 1;
    }
    resp->body_len = len - hend;
    resp->body = malloc(resp->body_len + 1);
    if (resp->body == NULL)
        goto out;
    memcpy(resp->body, buf + hend, resp->body_len);
    resp->body[resp->body_len] = '\0';
    rc = 0;

out:
    if (rc != 0)
        ts_http_resp_free(resp);
    free(req);
    free(buf);
    close(fd);
    return rc;
}

/* ---- devstream ------------------------------------------------------------------------------- */

int ts_devstream_start(ts_devstream_t *d, int brokers, int partitions)
{
    char b[16], pa[16];
    snprintf(b, sizeof(b), "%d", brokers);
    snprintf(pa, sizeof(pa), "%d", partitions);
    char *bin = ts_bin("adtrack-devstream");
    if (bin == NULL)
        return -1;
    char *argv[] = {bin, "--brokers", b, "--partitions", pa, NULL};
    int rc = ts_devstream_start_argv(d, argv);
    free(bin);
    return rc;
}

int ts_devstream_start_argv(ts_devstream_t *d, char *const argv[])
{
    memset(d, 0, sizeof(*d));
    if (ts_spawn(&d->proc, argv, NULL, true, 20000) != 0)
        return -1;
    if (d->proc.first_line[0] == '\0' || strchr(d->proc.first_line, ':') == NULL ||
        strlen(d->proc.first_line) >= sizeof(d->bootstraps)) {
        ts_note("devstream: unexpected first line '%s'", d->proc.first_line);
        ts_kill(&d->proc);
        return -1;
    }
    memcpy(d->bootstraps, d->proc.first_line, strlen(d->proc.first_line) + 1);
    return 0;
}

int ts_devstream_control_reply(ts_devstream_t *d, const char *line, char *reply, size_t reply_size)
{
    char local[256];
    if (reply == NULL || reply_size == 0) {
        reply = local;
        reply_size = sizeof(local);
    }
    reply[0] = '\0';
    if (ts_send_line(&d->proc, line) != 0) {
        ts_note("devstream: cannot send '%s'", line);
        return -1;
    }
    if (ts_read_stdout_line(&d->proc, reply, reply_size, 10000) != 0) {
        ts_note("devstream: no answer to '%s'", line);
        return -1;
    }
    if (strncmp(reply, "ok", 2) != 0 || (reply[2] != '\0' && reply[2] != ' ')) {
        ts_note("devstream: '%s' -> '%s'", line, reply);
        return -1;
    }
    return 0;
}

int ts_devstream_control(ts_devstream_t *d, const char *line)
{
    return ts_devstream_control_reply(d, line, NULL, 0);
}

void ts_devstream_stop(ts_devstream_t *d)
{
    if (d == NULL)
        return;
    if (d->proc.pid > 0) {
        ts_signal(&d->proc, SIGTERM);
        int status = 0;
        if (ts_wait(&d->proc, 10000, &status) != 0)
            ts_note("devstream: no exit 10 s after SIGTERM; killing it");
        else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            ts_note("devstream: exited with status 0x%x after SIGTERM", status);
    }
    ts_kill(&d->proc);
}

/* ---- Kafka ------------------------------------------------------------------------------------ */

void ts_kmsgs_free(ts_kmsg_t *msgs, long n)
{
    if (msgs == NULL)
        return;
    for (long i = 0; i < n; i++) {
        free(msgs[i].key);
        free(msgs[i].value);
    }
    free(msgs);
}

static int ts_kconf(rd_kafka_conf_t *conf, const char *name, const char *value)
{
    char errstr[256];
    if (rd_kafka_conf_set(conf, name, value, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        ts_note("kafka conf %s=%s: %s", name, value, errstr);
        return -1;
    }
    return 0;
}

/* Partition count of @p topic, retried until the deadline (the topic may not exist yet). */
static int ts_partition_count(rd_kafka_t *rk, const char *topic, int64_t deadline)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    int count = -1;
    if (rkt == NULL)
        return -1;
    while (count < 0) {
        const struct rd_kafka_metadata *md = NULL;
        int left = ts_left(deadline);
        rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, rkt, &md, AT_MAX(AT_MIN(left, 5000), 1));
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 && md->topics[0].err == 0 &&
            md->topics[0].partition_cnt > 0)
            count = md->topics[0].partition_cnt;
        else if (ts_now_ms() >= deadline)
            ts_note("kafka: no metadata for topic %s: %s", topic,
                    err != RD_KAFKA_RESP_ERR_NO_ERROR ? rd_kafka_err2str(err)
                    : md->topic_cnt == 1              ? rd_kafka_err2str(md->topics[0].err)
                                                      : "topic missing from the reply");
        if (md != NULL)
            rd_kafka_metadata_destroy(md);
        if (count < 0 && ts_now_ms() >= deadline)
            break;
        if (count < 0)
            ts_sleep_ms(100);
    }
    rd_kafka_topic_destroy(rkt);
    return count;
}

static int ts_kmsg_push(ts_kmsg_t **msgs, long *n, size_t *cap, const rd_kafka_message_t *m)
{
    if ((size_t)*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 64;
        ts_kmsg_t *nm = realloc(*msgs, ncap * sizeof(*nm));
        if (nm == NULL)
            return -1;
        *msgs = nm;
        *cap = ncap;
    }
    ts_kmsg_t *k = &(*msgs)[*n];
    memset(k, 0, sizeof(*k));
    k->key = m->key ? strndup(m->key, m->key_len) : NULL;
    k->value = malloc(m->len + 1);
    if ((m->key && k->key == NULL) || k->value == NULL) {
        free(k->key);
        free(k->value);
        return -1;
    }
    if (m->len > 0)
        memcpy(k->value, m->payload, m->len);
    k->value[m->len] = '\0';
    k->value_len = m->len;
    k->partition = m->partition;
    k->offset = m->offset;
    (*n)++;
    return 0;
}

long ts_kafka_consume_all(const char *bootstraps, const char *topic, size_t expect, int quiet_ms, int timeout_ms,
                          ts_kmsg_t **out)
{
    static int seq;
    int64_t deadline = ts_now_ms() + timeout_ms;
    char errstr[256], group[96];
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_partition_list_t *parts = NULL;
    ts_kmsg_t *msgs = NULL;
    size_t cap = 0;
    long n = 0;
    long rc = -1;

    *out = NULL;
    /* assign() needs a group id in librdkafka, but nothing joins or commits: a unique id per
     * call keeps consumers from ever sharing state. */
    snprintf(group, sizeof(group), "adtrack-test-%ld-%d", (long)getpid(), ++seq);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (ts_kconf(conf, "bootstrap.servers", bootstraps) != 0 || ts_kconf(conf, "group.id", group) != 0 ||
        ts_kconf(conf, "enable.auto.commit", "false") != 0 || ts_kconf(conf, "enable.auto.offset.store", "false") != 0 ||
        ts_kconf(conf, "enable.partition.eof", "false") != 0 || ts_kconf(conf, "log_level", "3") != 0 ||
        ts_kconf(conf, "topic.metadata.refresh.interval.ms", "1000") != 0) {
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errstr, sizeof(errstr));
    if (rk == NULL) {
        ts_note("kafka consumer: %s", errstr);
        rd_kafka_conf_destroy(conf);
        return -1;
    }
    rd_kafka_poll_set_consumer(rk);

    int nparts = ts_partition_count(rk, topic, deadline);
    if (nparts <= 0)
        goto out;
    parts = rd_kafka_topic_partition_list_new(nparts);
    for (int i = 0; i < nparts; i++)
        rd_kafka_topic_partition_list_add(parts, topic, i)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t aerr = rd_kafka_assign(rk, parts);
    if (aerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ts_note("kafka assign %s: %s", topic, rd_kafka_err2str(aerr));
        goto out;
    }

    int64_t last_new = ts_now_ms();
    for (;;) {
        int64_t now = ts_now_ms();
        if (now >= deadline)
            break;
        if ((size_t)n >= expect && now - last_new >= quiet_ms)
            break;
        int wait = ts_left(deadline);
        if ((size_t)n >= expect)
            wait = (int)AT_MIN((int64_t)wait, AT_MAX(last_new + quiet_ms - now, 1));
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, AT_MIN(wait, 200));
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            if (ts_kmsg_push(&msgs, &n, &cap, m) != 0) {
                rd_kafka_message_destroy(m);
                goto out;
            }
            last_new = ts_now_ms();
        } else if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            /* Transient (a broker down on purpose, a rebalance of the mock): keep going. */
            ts_note("kafka consume %s: %s", topic, rd_kafka_message_errstr(m));
        }
        rd_kafka_message_destroy(m);
    }
    rc = n;
    *out = msgs;
    msgs = NULL;

out:
    if (parts != NULL)
        rd_kafka_topic_partition_list_destroy(parts);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    ts_kmsgs_free(msgs, n);
    return rc;
}

/* ---- redis ------------------------------------------------------------------------------------ */

/* Starts redis-server on @p port (0: a free one, retried if taken meanwhile) in r->dir. */
static int redis_spawn(ts_redis_t *r, int fixed_port)
{
    /* A free port can be taken by someone else between our probe and redis' bind: retry. */
    for (int attempt = 0; attempt < 3; attempt++) {
        char port[16];
        int pn = fixed_port > 0 ? fixed_port : ts_free_port();
        if (pn <= 0)
            break;
        snprintf(port, sizeof(port), "%d", pn);
        /* Durable: every write is in the append-only file before Redis answers it, so a
         * SIGKILL loses nothing that was acknowledged (charge records, spend). */
        char *argv[] = {"redis-server", "--port",     port,      "--bind",      "127.0.0.1", "--save", "",
                        "--appendonly", r->durable ? "yes" : "no", "--appendfsync", "always", "--dir", r->dir,
                        "--loglevel", "warning", "--daemonize",  "no",         NULL};
        if (ts_spawn(&r->proc, argv, NULL, false, 0) != 0)
            break;
        int64_t deadline = ts_now_ms() + 10000;
        while (ts_now_ms() < deadline) {
            int status;
            if (ts_wait(&r->proc, 0, &status) == 0)
                break; /* exited: most likely the port was taken */
            int fd = ts_connect_local(pn, ts_now_ms() + 500);
            if (fd >= 0) {
                close(fd);
                r->port = pn;
                return 0;
            }
            ts_sleep_ms(20);
        }
        ts_note("redis-server on port %d did not come up; %s", pn, attempt < 2 && fixed_port <= 0 ? "retrying" : "giving up");
        ts_kill(&r->proc);
        if (fixed_port > 0)
            ts_sleep_ms(200); /* the same port: give the old socket a moment */
    }
    return -1;
}

static int redis_start(ts_redis_t *r, bool durable)
{
    memset(r, 0, sizeof(*r));
    r->proc.stdin_fd = r->proc.stdout_fd = -1;
    r->durable = durable;
    char *dir = ts_tmpdir("redis");
    if (dir == NULL)
        return -1;
    snprintf(r->dir, sizeof(r->dir), "%s", dir);
    free(dir);
    return redis_spawn(r, 0);
}

int ts_redis_start(ts_redis_t *r)
{
    return redis_start(r, false);
}

int ts_redis_start_durable(ts_redis_t *r)
{
    return redis_start(r, true);
}

int ts_redis_crash_restart(ts_redis_t *r, int down_ms)
{
    int port = r->port;
    ts_kill(&r->proc);
    ts_sleep_ms(down_ms);
    return redis_spawn(r, port);
}

void ts_redis_stop(ts_redis_t *r)
{
    if (r == NULL)
        return;
    if (r->proc.pid > 0) {
        ts_signal(&r->proc, SIGTERM);
        if (ts_wait(&r->proc, 5000, NULL) != 0)
            ts_note("redis-server: no exit 5 s after SIGTERM; killing it");
    }
    ts_kill(&r->proc);
    r->port = 0;
}
