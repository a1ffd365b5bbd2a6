/*
 * at_test_support.h: helpers for integration tests that drive real processes
 * (adtrack binaries, redis-server, the devstream Kafka-protocol cluster) over real sockets.
 *
 * Everything here is bounded in time: every wait polls a condition with a deadline and
 * fails (returns -1) rather than hanging. Prefix ts_ = test support.
 */
#ifndef AT_TEST_SUPPORT_H
#define AT_TEST_SUPPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* A child process. */
typedef struct ts_proc_s {
    pid_t pid;
    int stdin_fd;  /* write end of the child's stdin pipe, or -1 */
    int stdout_fd; /* read end of the child's stdout pipe, or -1 (stdout then goes to stderr) */
    char first_line[1024]; /* first stdout line, when asked for */
} ts_proc_t;

/* Path of a shipped binary: $ADTRACK_BIN_DIR/<name>. Returns a heap string; free(). */
char *ts_bin(const char *name);

/* A fresh scratch directory under $ADTRACK_TEST_TMP (or /tmp), created empty. Heap string. */
char *ts_tmpdir(const char *name);

/* A TCP port on 127.0.0.1 that was free a moment ago. */
int ts_free_port(void);

/*
 * Starts argv[0] with argv. @p env_extra: NULL-terminated "K=V" strings added to the
 * environment (may be NULL). When @p want_first_line, stdout is a pipe and the call waits
 * (up to @p timeout_ms) for the first line, stored in p->first_line without the newline.
 * Stdin is a pipe (p->stdin_fd) so tests can send control lines. Returns 0 or -1.
 */
int ts_spawn(ts_proc_t *p, char *const argv[], char *const env_extra[], bool want_first_line, int timeout_ms);

/* Writes a line (a newline is appended) to the child's stdin. */
int ts_send_line(ts_proc_t *p, const char *line);

/* Reads the next stdout line of a child started with @p want_first_line (newline stripped,
 * truncated to @p size - 1). Returns 0, or -1 on EOF or timeout. */
int ts_read_stdout_line(ts_proc_t *p, char *buf, size_t size, int timeout_ms);

/*
 * Runs argv to completion with stdin=/dev/null, capturing stdout and stderr. On success
 * (the process ran and exited within @p timeout_ms) returns 0 with *@p out and *@p err as
 * NUL-terminated heap strings (free(); either pointer may be NULL to discard) and the
 * waitpid status in *@p status. Returns -1 if it could not start or did not finish in time.
 */
int ts_run(char *const argv[], char *const env_extra[], int timeout_ms, char **out, char **err, int *status);

/* Sends @p sig. */
int ts_signal(ts_proc_t *p, int sig);

/* Waits up to @p timeout_ms for exit; stores the waitpid status. Returns 0, or -1 on timeout. */
int ts_wait(ts_proc_t *p, int timeout_ms, int *status);

/* SIGKILL (if still running) and reap; closes pipes. Safe on a zeroed/finished proc. */
void ts_kill(ts_proc_t *p);

/* Polls until something accepts TCP connections on 127.0.0.1:@p port. 0 or -1. */
int ts_wait_port(int port, int timeout_ms);

/* HTTP/1.1 over a fresh connection to 127.0.0.1. */
typedef struct ts_http_resp_s {
    int status;
    char *headers; /* raw header block (heap, NUL-terminated), lower-cased names not guaranteed */
    char *body;    /* heap, NUL-terminated */
    size_t body_len;
} ts_http_resp_t;

/* Sends @p method @p path with optional @p extra_headers ("Name: v\r\n..." or NULL) and
 * @p body (may be NULL). Reads the whole response (Content-Length or close). 0 or -1. */
int ts_http(int port, const char *method, const char *path, const char *extra_headers, const char *body,
            size_t body_len, ts_http_resp_t *resp, int timeout_ms);
/* Value of header @p name (case-insensitive) as a heap string, or NULL. */
char *ts_http_header(const ts_http_resp_t *resp, const char *name);
void ts_http_resp_free(ts_http_resp_t *resp);

/* adtrack-devstream child: bootstraps holds its first stdout line. */
typedef struct ts_devstream_s {
    ts_proc_t proc;
    char bootstraps[256];
} ts_devstream_t;

/* Starts $ADTRACK_BIN_DIR/adtrack-devstream --brokers @p brokers --partitions @p partitions. */
int ts_devstream_start(ts_devstream_t *d, int brokers, int partitions);
/* Starts devstream with a full argv (argv[0] = the binary, e.g. from ts_bin()). */
int ts_devstream_start_argv(ts_devstream_t *d, char *const argv[]);
/* Sends a control line (see `adtrack-devstream --help`, e.g. "broker-down 1") and reads the
 * one-line answer. Returns 0 if it starts with "ok", else -1 (the answer goes to stderr). */
int ts_devstream_control(ts_devstream_t *d, const char *line);
/* Same, and copies the answer line (e.g. "ok adtrack.events.raw/0=1 ...") into @p reply. */
int ts_devstream_control_reply(ts_devstream_t *d, const char *line, char *reply, size_t reply_size);
void ts_devstream_stop(ts_devstream_t *d);

/* A Kafka message read back by a test. */
typedef struct ts_kmsg_s {
    char *key;   /* heap, NUL-terminated, or NULL */
    char *value; /* heap, NUL-terminated */
    size_t value_len;
    int32_t partition;
    int64_t offset;
} ts_kmsg_t;

/*
 * Reads @p topic from the beginning (all partitions) with a fresh consumer until at least
 * @p expect messages arrived, then keeps reading until @p quiet_ms pass with nothing new
 * (so extra, duplicate messages are seen too), or until @p timeout_ms. Returns the count
 * read (>= 0; the caller compares with expect) and the messages in *@p out (heap array;
 * free with ts_kmsgs_free), or -1 on a client error.
 */
long ts_kafka_consume_all(const char *bootstraps, const char *topic, size_t expect, int quiet_ms, int timeout_ms,
                          ts_kmsg_t **out);
void ts_kmsgs_free(ts_kmsg_t *msgs, long n);

/* redis-server child on a free port, by default with no persistence. */
typedef struct ts_redis_s {
    ts_proc_t proc;
    int port;
    bool durable;   /* append-only file, fsynced on every write */
    char dir[512];  /* its working directory (the append-only file lives here) */
} ts_redis_t;
int ts_redis_start(ts_redis_t *r);
/* A redis-server that survives SIGKILL with every acknowledged write (appendfsync always). */
int ts_redis_start_durable(ts_redis_t *r);
/* SIGKILLs it, waits @p down_ms, and starts it again on the same port and directory (a crash
 * and restart; a durable one comes back with its data, without its script cache). 0 or -1. */
int ts_redis_crash_restart(ts_redis_t *r, int down_ms);
void ts_redis_stop(ts_redis_t *r);

/* Monotonic milliseconds. */
int64_t ts_now_ms(void);

#endif
