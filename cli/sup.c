/*
 * sup.c: the process supervisor of `adtrack up` (see sup.h).
 */
#include "sup.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "at_log.h"

extern char **environ;

int64_t sup_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sup_backoff_init(sup_backoff_t *b, int64_t initial_ms, int64_t max_ms, int64_t reset_after_ms)
{
    b->initial_ms = initial_ms;
    b->max_ms = max_ms;
    b->reset_after_ms = reset_after_ms;
    b->next_ms = initial_ms;
}

int64_t sup_backoff_next(sup_backoff_t *b, int64_t uptime_ms)
{
    if (uptime_ms >= b->reset_after_ms)
        b->next_ms = b->initial_ms;
    int64_t delay = b->next_ms;
    b->next_ms = AT_MIN(b->next_ms * 2, b->max_ms);
    return delay;
}

void sup_child_init(sup_child_t *c, const char *name, const char *log_path)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->name, sizeof(c->name), "%s", name);
    snprintf(c->log_path, sizeof(c->log_path), "%s", log_path);
    c->stdin_fd = -1;
    c->stop_signal = SIGTERM;
    c->stop_timeout_ms = 10000;
    sup_backoff_init(&c->backoff, 500, 30000, 60000);
}

static void strv_free(char **v)
{
    if (v == NULL)
        return;
    for (char **p = v; *p != NULL; p++)
        free(*p);
    free(v);
}

static char **strv_dup(char *const *v)
{
    size_t n = 0;
    while (v != NULL && v[n] != NULL)
        n++;
    char **out = calloc(n + 1, sizeof(char *));
    if (out == NULL)
        abort();
    for (size_t i = 0; i < n; i++)
        if ((out[i] = strdup(v[i])) == NULL)
            abort();
    return out;
}

void sup_child_set_argv(sup_child_t *c, char *const *argv, char *const *env)
{
    strv_free(c->argv);
    strv_free(c->env);
    c->argv = strv_dup(argv);
    c->env = strv_dup(env);
}

void sup_child_clear(sup_child_t *c)
{
    if (c == NULL)
        return;
    strv_free(c->argv);
    strv_free(c->env);
    c->argv = c->env = NULL;
}

/* The child's environment: ours without ADTRACK_* (each service reads ADTRACK_<FLAG> as its
 * option, so variables meant for `adtrack up` would silently configure every child), plus
 * c->env. Built before fork: the child only execs. */
static char **child_environ(const sup_child_t *c)
{
    size_t n = 0, extra = 0;
    while (environ[n] != NULL)
        n++;
    while (c->env != NULL && c->env[extra] != NULL)
        extra++;
    char **env = calloc(n + extra + 1, sizeof(char *));
    if (env == NULL)
        abort();
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "ADTRACK_", 8) != 0)
            env[k++] = environ[i];
    for (size_t i = 0; i < extra; i++)
        env[k++] = c->env[i];
    return env; /* the array is ours; the strings stay environ's and c->env's */
}

/* Writes a message to fd 2 of a forked child without stdio (async-signal-safe). */
static void child_fail(const char *what, const char *arg)
{
    const char *e = strerror(errno);
    if (write(2, "adtrack up: ", 12) < 0 || write(2, what, strlen(what)) < 0 || write(2, arg, strlen(arg)) < 0 ||
        write(2, ": ", 2) < 0 || write(2, e, strlen(e)) < 0 || write(2, "\n", 1) < 0)
        _exit(127);
    _exit(127);
}

int sup_start(sup_child_t *c, at_err_t *err)
{
    if (c->prepare != NULL && c->prepare(c, c->opaque, err) != 0)
        return -1;
    if (c->argv == NULL || c->argv[0] == NULL) {
        at_err_set(err, AT_ERR_INVALID, "%s: nothing to run", c->name);
        return -1;
    }
    int logfd = open(c->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (logfd < 0) {
        at_err_set(err, AT_ERR_IO, "%s: %s", c->log_path, strerror(errno));
        return -1;
    }
    int outfd = -1;
    if (c->out_path[0] != '\0' && (outfd = open(c->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) < 0) {
        at_err_set(err, AT_ERR_IO, "%s: %s", c->out_path, strerror(errno));
        close(logfd);
        return -1;
    }
    char **env = child_environ(c);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        at_err_set(err, AT_ERR_IO, "%s: fork: %s", c->name, strerror(errno));
        free(env);
        close(logfd);
        if (outfd >= 0)
            close(outfd);
        return -1;
    }
    if (pid == 0) {
        /* Own process group: Ctrl-C in a terminal signals the supervisor only, which then
         * stops the children in order. PDEATHSIG: if the supervisor dies (even by SIGKILL),
         * the child gets SIGTERM and shuts down cleanly instead of lingering. */
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        /* The supervisor blocks the signals it waits for; exec keeps the mask and ignored
         * dispositions, and e.g. redis-server would then never see SIGTERM. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        int in = c->stdin_fd >= 0 ? c->stdin_fd : open("/dev/null", O_RDONLY);
        if (in < 0 || dup2(in, 0) < 0 || dup2(outfd >= 0 ? outfd : logfd, 1) < 0 || dup2(logfd, 2) < 0)
            child_fail("redirecting the output of ", c->name);
        execvpe(c->argv[0], c->argv, env);
        child_fail("cannot run ", c->argv[0]);
    }
    free(env);
    close(logfd);
    if (outfd >= 0)
        close(outfd);
    /* Also from this side, so a signal sent to the group right away cannot miss it. */
    setpgid(pid, pid);
    c->pid = pid;
    c->state = SUP_RUNNING;
    c->started_ms = sup_now_ms();
    c->starts++;
    c->restart_planned = false;
    char pidtext[24];
    snprintf(pidtext, sizeof(pidtext), "%d", (int)pid);
    at_log(AT_LOG_INFO, "up", c->starts > 1 ? "restarted" : "started", "child", c->name, "pid", pidtext, NULL);
    return 0;
}

void sup_stop(sup_child_t *c)
{
    if (c->state == SUP_BACKOFF) {
        c->state = SUP_IDLE;
        return;
    }
    if (c->state != SUP_RUNNING)
        return;
    kill(c->pid, c->stop_signal);
    c->state = SUP_STOPPING;
    c->due_ms = sup_now_ms() + c->stop_timeout_ms;
}

void sup_restart(sup_child_t *c)
{
    if (c->state == SUP_RUNNING || c->state == SUP_STOPPING) {
        sup_stop(c);
        c->restart_planned = true;
    } else if (c->state == SUP_BACKOFF) {
        c->due_ms = sup_now_ms();
    }
}

int sup_add(sup_t *s, sup_child_t *c)
{
    if (s->n >= SUP_MAX_CHILDREN)
        return -1;
    s->children[s->n++] = c;
    return 0;
}

static void status_text(int status, char *out, size_t size)
{
    if (WIFEXITED(status))
        snprintf(out, size, "exit %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(out, size, "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(out, size, "status %d", status);
}

sup_child_t *sup_on_exit(sup_t *s, pid_t pid, int status)
{
    sup_child_t *c = NULL;
    for (size_t i = 0; i < s->n && c == NULL; i++)
        if (sup_alive(s->children[i]) && s->children[i]->pid == pid)
            c = s->children[i];
    if (c == NULL)
        return NULL;
    int64_t now = sup_now_ms();
    int64_t uptime = now - c->started_ms;
    char st[64], up[24], pidtext[24];
    status_text(status, st, sizeof(st));
    snprintf(up, sizeof(up), "%lld", (long long)uptime);
    snprintf(pidtext, sizeof(pidtext), "%d", (int)pid);
    c->exit_status = status;
    c->pid = 0;
    bool expected = c->state == SUP_STOPPING;
    if (c->oneshot) {
        c->state = SUP_EXITED;
        at_log(AT_LOG_INFO, "up", "finished", "child", c->name, "pid", pidtext, "status", st, NULL);
    } else if (s->shutting_down || (expected && !c->restart_planned)) {
        c->state = SUP_IDLE;
        at_log(AT_LOG_INFO, "up", "stopped", "child", c->name, "pid", pidtext, "status", st, "uptime_ms", up, NULL);
    } else if (expected) {
        c->state = SUP_BACKOFF;
        c->due_ms = now;
        at_log(AT_LOG_INFO, "up", "restarting (planned)", "child", c->name, "pid", pidtext, "status", st, NULL);
    } else {
        int64_t delay = sup_backoff_next(&c->backoff, uptime);
        char d[24], n[16];
        snprintf(d, sizeof(d), "%lld", (long long)delay);
        snprintf(n, sizeof(n), "%u", ++c->restarts);
        c->state = SUP_BACKOFF;
        c->due_ms = now + delay;
        at_log(AT_LOG_WARN, "up", "child exited unexpectedly; restarting after backoff", "child", c->name, "pid",
               pidtext, "status", st, "uptime_ms", up, "restart_in_ms", d, "restarts", n, "log", c->log_path, NULL);
    }
    return c;
}

void sup_reap(sup_t *s)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
        sup_on_exit(s, pid, status);
}

void sup_tick(sup_t *s)
{
    int64_t now = sup_now_ms();
    for (size_t i = 0; i < s->n; i++) {
        sup_child_t *c = s->children[i];
        if (c->state == SUP_STOPPING && now >= c->due_ms) {
            char pidtext[24];
            snprintf(pidtext, sizeof(pidtext), "%d", (int)c->pid);
            at_log(AT_LOG_WARN, "up", "stop timed out; sending SIGKILL", "child", c->name, "pid", pidtext, NULL);
            kill(c->pid, SIGKILL);
            c->due_ms = INT64_MAX; /* once; the exit arrives through waitpid */
        } else if (c->state == SUP_BACKOFF && !s->shutting_down && now >= c->due_ms) {
            at_err_t err = {0};
            if (sup_start(c, &err) != 0) {
                int64_t delay = sup_backoff_next(&c->backoff, 0);
                c->due_ms = now + delay;
                at_log(AT_LOG_ERROR, "up", "restart failed; retrying after backoff", "child", c->name, "error", err.msg,
                       NULL);
            }
        }
    }
}

int64_t sup_next_due_ms(const sup_t *s)
{
    int64_t now = sup_now_ms(), next = -1;
    for (size_t i = 0; i < s->n; i++) {
        const sup_child_t *c = s->children[i];
        bool pending =
            (c->state == SUP_STOPPING && c->due_ms != INT64_MAX) || (c->state == SUP_BACKOFF && !s->shutting_down);
        if (!pending)
            continue;
        int64_t in = AT_MAX(c->due_ms - now, 0);
        if (next < 0 || in < next)
            next = in;
    }
    return next;
}
