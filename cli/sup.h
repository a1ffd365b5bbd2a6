/*
 * sup.h: a small process supervisor (the engine of `adtrack up`).
 *
 * A sup_t holds children in start order. Each child is a process started with fork+exec in
 * its own process group (so a terminal's Ctrl-C reaches only the supervisor, which then
 * stops the children in order), with PR_SET_PDEATHSIG so it never outlives the supervisor,
 * stdin from a given fd or /dev/null and stdout/stderr appended to its own log file.
 *
 * A child that exits while it should be running is restarted after an exponential backoff
 * (sup_backoff_t); every exit and restart is logged as one JSON line (at_log, component
 * "up"). The caller owns the event loop: it reaps exits with waitpid() and hands them to
 * sup_on_exit(), and calls sup_tick() when sup_next_due_ms() says so.
 *
 * @locality: one thread (the supervisor's main thread); nothing here is thread-safe.
 */
#ifndef SUP_H
#define SUP_H

#include <limits.h>
#include <sys/types.h>

#include "at_err.h"

/* Milliseconds on CLOCK_MONOTONIC. */
int64_t sup_now_ms(void);

/* ---- restart backoff ---- */

typedef struct sup_backoff_s {
    int64_t initial_ms;     /* first delay, e.g. 500 */
    int64_t max_ms;         /* cap, e.g. 30000 */
    int64_t reset_after_ms; /* a child that stayed up this long starts again from initial_ms */
    int64_t next_ms;        /* the delay the next crash gets */
} sup_backoff_t;

void sup_backoff_init(sup_backoff_t *b, int64_t initial_ms, int64_t max_ms, int64_t reset_after_ms);

/* The child crashed after running @p uptime_ms: returns how long to wait before restarting
 * it, and doubles the following delay (up to max_ms). A long uptime resets the sequence. */
int64_t sup_backoff_next(sup_backoff_t *b, int64_t uptime_ms);

/* ---- children ---- */

typedef enum sup_state_e {
    SUP_IDLE,     /* never started, or stopped on purpose */
    SUP_RUNNING,  /* pid is alive */
    SUP_BACKOFF,  /* exited unexpectedly; restarts at due_ms */
    SUP_STOPPING, /* stop signal sent; SIGKILL at due_ms */
    SUP_EXITED,   /* a one-shot child finished (see exit_status) */
} sup_state_t;

typedef struct sup_child_s sup_child_t;

/* Called right before every start (first start and restarts): sets c->argv (and c->env)
 * for this start, e.g. with a broker list that changed. Returns 0, or -1 with @p err to
 * skip this start (it is retried after the next backoff delay). */
typedef int (*sup_prepare_cb)(sup_child_t *c, void *opaque, at_err_t *err);

struct sup_child_s {
    /* Set by the caller before the first start. */
    char name[64];           /* "collector", "enricher-1": log file name and log field */
    char log_path[PATH_MAX]; /* stderr (and stdout unless out_path) are appended here */
    char out_path[PATH_MAX]; /* "" or a file stdout is truncated into at every start */
    int stdin_fd;            /* -1: /dev/null; not owned (stays open in the supervisor) */
    int stop_signal;         /* SIGTERM by default (sup_child_init) */
    int64_t stop_timeout_ms; /* how long a stop may take before SIGKILL */
    bool oneshot;            /* run once, never restart (e.g. `adtrack seed demo`) */
    sup_prepare_cb prepare;  /* may be NULL when argv is fixed */
    void *opaque;
    /* Owned by the child (freed by sup_child_clear): NULL-terminated heap vectors. argv[0]
     * is the program (a path, or a name looked up in PATH); env holds NAME=VALUE entries
     * added to the supervisor's environment minus every ADTRACK_* variable, so children
     * are configured only by what the supervisor passes them. */
    char **argv;
    char **env;

    /* Supervisor state (read-only for the caller). */
    sup_state_t state;
    pid_t pid;
    int64_t started_ms;   /* when the current/last run began */
    int64_t due_ms;       /* SUP_BACKOFF: restart time; SUP_STOPPING: SIGKILL time */
    unsigned restarts;    /* unexpected exits followed by a restart */
    unsigned starts;      /* every successful fork (a generation counter) */
    int exit_status;      /* last wait status (as from waitpid) */
    bool restart_planned; /* sup_restart(): start again as soon as it exited, no backoff */
    sup_backoff_t backoff;
};

/* Zeroes @p c and sets the defaults: stdin /dev/null, SIGTERM, 10 s stop timeout, backoff
 * 500 ms doubling to 30 s, reset after 60 s up. */
void sup_child_init(sup_child_t *c, const char *name, const char *log_path);

/* Replaces c->argv / c->env with copies of the NULL-terminated @p argv / @p env (env may be
 * NULL). */
void sup_child_set_argv(sup_child_t *c, char *const *argv, char *const *env);

/* Frees argv and env. Accepts NULL. */
void sup_child_clear(sup_child_t *c);

/* Starts @p c now (prepare, fork, exec). Returns 0, or -1 with @p err (a failed exec shows
 * up later as an exit with status 127 and a line in the child's log). */
int sup_start(sup_child_t *c, at_err_t *err);

/* Sends the stop signal and gives the child stop_timeout_ms before SIGKILL (sup_tick sends
 * it). A child in backoff just stays down. */
void sup_stop(sup_child_t *c);

/* A planned restart: stop like sup_stop(), then start again at once when it exited (not
 * counted as a crash, no backoff). */
void sup_restart(sup_child_t *c);

/* ---- the set ---- */

#define SUP_MAX_CHILDREN 32

typedef struct sup_s {
    sup_child_t *children[SUP_MAX_CHILDREN]; /* not owned */
    size_t n;
    bool shutting_down; /* no more restarts of anything */
} sup_t;

/* Adds @p c (not owned; it must outlive @p s). Returns 0 or -1 when full. */
int sup_add(sup_t *s, sup_child_t *c);

/* Handles the exit of @p pid (a status from waitpid): logs it and schedules a restart
 * unless the child was being stopped, is one-shot, or the set is shutting down.
 * Returns the child, or NULL when @p pid is none of them. */
sup_child_t *sup_on_exit(sup_t *s, pid_t pid, int status);

/* Reaps every exited child (waitpid WNOHANG) through sup_on_exit(). */
void sup_reap(sup_t *s);

/* Starts children whose backoff ended and SIGKILLs children whose stop timed out. */
void sup_tick(sup_t *s);

/* Milliseconds until the next sup_tick() has something to do (-1: nothing scheduled). */
int64_t sup_next_due_ms(const sup_t *s);

/* True while @p c has a live process. */
static inline bool sup_alive(const sup_child_t *c)
{
    return c->state == SUP_RUNNING || c->state == SUP_STOPPING;
}

#endif
