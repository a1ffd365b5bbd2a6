/*
 * at_test_infra.c: real Kafka and FerretDB for integration tests, through scripts/kafka.sh
 * and scripts/ferretdb.sh (see at_test_infra.h and docs/REAL-INFRA.md).
 *
 * The scripts do the work (ports, formatting, readiness, pid files, the --owner-pid
 * watchdog); this file runs them with ts_run() under a deadline, reads the first stdout line
 * and maps exit status 3 ("not installed") to TS_SKIP.
 */
#include "at_test_infra.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "at_test_support.h"

/* Exit status of the scripts when the server is not installed. */
#define TS_INFRA_NOT_INSTALLED 3

/* A script's own bounds are below these (start 180 s, start-node 120 s, stop 30 s + 10 s). */
#define TS_KAFKA_START_MS 240000
#define TS_KAFKA_NODE_MS 180000
#define TS_KAFKA_STOP_MS 60000
#define TS_FERRETDB_MS 90000

static void ts_infra_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ts_infra_note(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("[infra] ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* $ADTRACK_SOURCE_DIR/scripts/<name> into @p buf; -1 if the variable is missing. */
static int ts_script_path(const char *name, char *buf, size_t size)
{
    const char *src = getenv("ADTRACK_SOURCE_DIR");
    if (src == NULL || src[0] == '\0') {
        ts_infra_note("ADTRACK_SOURCE_DIR is not set (CTest sets it; see docs/TESTING.md)");
        return -1;
    }
    int n = snprintf(buf, size, "%s/scripts/%s", src, name);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

/*
 * Runs `bash scripts/<script> <cmd> [--dir dir] [args...]` within @p timeout_ms. Returns the
 * exit status (0..255), or -1 if it could not run or was killed. *@p out gets stdout (heap)
 * when @p out is not NULL; stderr is copied to our stderr when the status is not 0, or
 * always when @p echo_err.
 */
static int ts_infra_run(const char *script, const char *cmd, const char *dir, const char *const *args,
                        int timeout_ms, bool echo_err, char **out)
{
    char path[2048], owner[32];
    const char *argv[40];
    size_t n = 0;
    char *sout = NULL, *serr = NULL;
    int status = 0;

    if (out != NULL)
        *out = NULL;
    if (ts_script_path(script, path, sizeof(path)) != 0)
        return -1;
    snprintf(owner, sizeof(owner), "%ld", (long)getpid());
    argv[n++] = "bash";
    argv[n++] = path;
    argv[n++] = cmd;
    if (dir != NULL) {
        argv[n++] = "--dir";
        argv[n++] = dir;
    }
    if (strcmp(cmd, "start") == 0 || strcmp(cmd, "start-node") == 0) {
        argv[n++] = "--owner-pid";
        argv[n++] = owner;
    }
    for (size_t i = 0; args != NULL && args[i] != NULL && n < 39; i++)
        argv[n++] = args[i];
    argv[n] = NULL;

    if (ts_run((char *const *)argv, NULL, timeout_ms, &sout, &serr, &status) != 0) {
        ts_infra_note("%s %s: did not finish within %d ms", script, cmd, timeout_ms);
        free(sout);
        free(serr);
        return -1;
    }
    int rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if ((rc != 0 || echo_err) && serr != NULL && serr[0] != '\0')
        fprintf(stderr, "%s", serr);
    if (rc != 0 && rc != TS_INFRA_NOT_INSTALLED)
        ts_infra_note("%s %s%s%s: exit status %d", script, cmd, dir ? " --dir " : "", dir ? dir : "", rc);
    free(serr);
    if (out != NULL)
        *out = sout;
    else
        free(sout);
    return rc;
}

/* Copies the first line of @p s (without the newline) into @p buf. */
static void ts_first_line(const char *s, char *buf, size_t size)
{
    size_t len = s != NULL ? strcspn(s, "\n") : 0;
    if (len >= size)
        len = size - 1;
    if (len > 0)
        memcpy(buf, s, len);
    buf[len] = '\0';
}

static bool ts_infra_check(const char *script, char *why, size_t why_size)
{
    char path[2048];
    char *serr = NULL;
    int status = 0;
    if (why != NULL && why_size > 0)
        why[0] = '\0';
    if (ts_script_path(script, path, sizeof(path)) != 0) {
        if (why != NULL)
            snprintf(why, why_size, "ADTRACK_SOURCE_DIR is not set");
        return false;
    }
    const char *argv[] = {"bash", path, "check", NULL};
    if (ts_run((char *const *)argv, NULL, 30000, NULL, &serr, &status) != 0) {
        if (why != NULL)
            snprintf(why, why_size, "%s check did not finish", script);
        free(serr);
        return false;
    }
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok && why != NULL)
        ts_first_line(serr != NULL && serr[0] ? serr : "not installed", why, why_size);
    free(serr);
    return ok;
}

/* ---- Kafka ------------------------------------------------------------------------------------ */

bool ts_kafka_installed(char *why, size_t why_size)
{
    return ts_infra_check("kafka.sh", why, why_size);
}

static int ts_kafka_parse_bootstraps(ts_kafka_t *k)
{
    const char *p = k->bootstraps;
    int n = 0;
    while (*p != '\0' && n < TS_KAFKA_MAX_NODES) {
        const char *colon = strchr(p, ':');
        if (colon == NULL)
            break;
        k->ports[n++] = atoi(colon + 1);
        const char *comma = strchr(colon, ',');
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    if (n != k->nodes) {
        ts_infra_note("kafka.sh start printed %d brokers (%s), expected %d", n, k->bootstraps, k->nodes);
        return -1;
    }
    return 0;
}

int ts_kafka_start_args(ts_kafka_t *k, int nodes, const char *const *extra_args)
{
    char nbuf[16];
    const char *args[32];
    size_t n = 0;
    char *out = NULL;

    if (nodes < 1 || nodes > TS_KAFKA_MAX_NODES) {
        ts_infra_note("ts_kafka_start: %d nodes, expected 1..%d", nodes, TS_KAFKA_MAX_NODES);
        return -1;
    }
    if (k->dir[0] == '\0') {
        char *d = ts_tmpdir("kafka");
        if (d == NULL)
            return -1;
        snprintf(k->dir, sizeof(k->dir), "%s", d);
        free(d);
    }
    k->nodes = nodes;
    snprintf(nbuf, sizeof(nbuf), "%d", nodes);
    args[n++] = "--nodes";
    args[n++] = nbuf;
    for (size_t i = 0; extra_args != NULL && extra_args[i] != NULL && n < 31; i++)
        args[n++] = extra_args[i];
    args[n] = NULL;

    int64_t t0 = ts_now_ms();
    int rc = ts_infra_run("kafka.sh", "start", k->dir, args, TS_KAFKA_START_MS, false, &out);
    if (rc == TS_INFRA_NOT_INSTALLED) {
        free(out);
        return TS_SKIP;
    }
    if (rc != 0) {
        free(out);
        /* Whatever did start must not outlive the failure. */
        ts_infra_run("kafka.sh", "stop", k->dir, (const char *const[]){"--kill", NULL}, TS_KAFKA_STOP_MS, false,
                     NULL);
        return -1;
    }
    k->running = true;
    ts_first_line(out, k->bootstraps, sizeof(k->bootstraps));
    free(out);
    if (ts_kafka_parse_bootstraps(k) != 0)
        return -1;
    ts_infra_note("kafka: %d node(s) ready in %lld ms: %s (%s)", nodes, (long long)(ts_now_ms() - t0),
                  k->bootstraps, k->dir);
    return 0;
}

int ts_kafka_start(ts_kafka_t *k, int nodes)
{
    return ts_kafka_start_args(k, nodes, NULL);
}

static int ts_kafka_node_cmd(ts_kafka_t *k, const char *cmd, int node, int timeout_ms)
{
    char nbuf[16];
    if (!k->running || node < 1 || node > k->nodes) {
        ts_infra_note("kafka %s: node %d of a %s %d-node cluster", cmd, node, k->running ? "running" : "stopped",
                      k->nodes);
        return -1;
    }
    snprintf(nbuf, sizeof(nbuf), "%d", node);
    int64_t t0 = ts_now_ms();
    int rc = ts_infra_run("kafka.sh", cmd, k->dir, (const char *const[]){"--node", nbuf, NULL}, timeout_ms, false,
                          NULL);
    if (rc == 0)
        ts_infra_note("kafka: %s %d took %lld ms", cmd, node, (long long)(ts_now_ms() - t0));
    return rc == 0 ? 0 : -1;
}

int ts_kafka_kill_node(ts_kafka_t *k, int node)
{
    return ts_kafka_node_cmd(k, "kill-node", node, TS_KAFKA_STOP_MS);
}

int ts_kafka_stop_node(ts_kafka_t *k, int node)
{
    return ts_kafka_node_cmd(k, "stop-node", node, TS_KAFKA_STOP_MS);
}

int ts_kafka_start_node(ts_kafka_t *k, int node)
{
    return ts_kafka_node_cmd(k, "start-node", node, TS_KAFKA_NODE_MS);
}

int ts_kafka_script(ts_kafka_t *k, const char *cmd, const char *const *args, char **out)
{
    if (k->dir[0] == '\0')
        return -1;
    return ts_infra_run("kafka.sh", cmd, k->dir, args, TS_KAFKA_NODE_MS, false, out) == 0 ? 0 : -1;
}

/* Removes each node's data directory: the logs stay for a post-mortem, the segments go. */
static void ts_kafka_remove_data(ts_kafka_t *k)
{
    for (int n = 1; n <= k->nodes; n++) {
        char data[1200];
        snprintf(data, sizeof(data), "%s/node-%d/data", k->dir, n);
        const char *argv[] = {"rm", "-rf", "--", data, NULL};
        int status;
        if (ts_run((char *const *)argv, NULL, 60000, NULL, NULL, &status) != 0)
            ts_infra_note("could not remove %s", data);
    }
}

void ts_kafka_stop(ts_kafka_t *k)
{
    if (k == NULL || k->dir[0] == '\0')
        return;
    if (k->running) {
        int64_t t0 = ts_now_ms();
        if (ts_infra_run("kafka.sh", "stop", k->dir, (const char *const[]){"--timeout", "15", NULL},
                         TS_KAFKA_STOP_MS, false, NULL) == 0) {
            ts_infra_note("kafka: stopped in %lld ms", (long long)(ts_now_ms() - t0));
            ts_kafka_remove_data(k);
        }
        k->running = false;
    }
}

/* ---- FerretDB --------------------------------------------------------------------------------- */

bool ts_ferretdb_installed(char *why, size_t why_size)
{
    return ts_infra_check("ferretdb.sh", why, why_size);
}

int ts_ferretdb_start(ts_ferretdb_t *f)
{
    char *out = NULL;
    if (f->dir[0] == '\0') {
        char *d = ts_tmpdir("ferretdb");
        if (d == NULL)
            return -1;
        snprintf(f->dir, sizeof(f->dir), "%s", d);
        free(d);
    }
    int64_t t0 = ts_now_ms();
    int rc = ts_infra_run("ferretdb.sh", "start", f->dir, NULL, TS_FERRETDB_MS, false, &out);
    if (rc == TS_INFRA_NOT_INSTALLED) {
        free(out);
        return TS_SKIP;
    }
    if (rc != 0) {
        free(out);
        return -1;
    }
    ts_first_line(out, f->uri, sizeof(f->uri));
    free(out);
    const char *colon = strrchr(f->uri, ':');
    f->port = colon != NULL ? atoi(colon + 1) : 0;
    if (strncmp(f->uri, "mongodb://", 10) != 0 || f->port <= 0) {
        ts_infra_note("ferretdb.sh start printed %s, expected mongodb://127.0.0.1:PORT", f->uri);
        return -1;
    }
    f->running = true;
    ts_infra_note("ferretdb: ready in %lld ms: %s (%s)", (long long)(ts_now_ms() - t0), f->uri, f->dir);
    return 0;
}

int ts_ferretdb_kill(ts_ferretdb_t *f)
{
    if (f->dir[0] == '\0')
        return -1;
    int rc = ts_infra_run("ferretdb.sh", "stop", f->dir, (const char *const[]){"--kill", NULL}, TS_FERRETDB_MS,
                          false, NULL);
    f->running = false;
    return rc == 0 ? 0 : -1;
}

void ts_ferretdb_stop(ts_ferretdb_t *f)
{
    if (f == NULL || f->dir[0] == '\0')
        return;
    if (ts_infra_run("ferretdb.sh", "stop", f->dir, NULL, TS_FERRETDB_MS, false, NULL) == 0) {
        char data[1200];
        snprintf(data, sizeof(data), "%s/data", f->dir);
        const char *argv[] = {"rm", "-rf", "--", data, NULL};
        int status;
        ts_run((char *const *)argv, NULL, 60000, NULL, NULL, &status);
    }
    f->running = false;
}

/* ---- skipping --------------------------------------------------------------------------------- */

bool ts_infra_skip(bool need_kafka, bool need_ferretdb)
{
    char why[512];
    bool missing = false;
    if (need_kafka && !ts_kafka_installed(why, sizeof(why))) {
        ts_infra_note("real Kafka not available: %s", why);
        missing = true;
    }
    if (need_ferretdb && !ts_ferretdb_installed(why, sizeof(why))) {
        ts_infra_note("FerretDB not available: %s", why);
        missing = true;
    }
    if (!missing)
        return false;
    const char *req = getenv("ADTRACK_REQUIRE_REAL_INFRA");
    if (req != NULL && strcmp(req, "1") == 0) {
        ts_infra_note("ADTRACK_REQUIRE_REAL_INFRA=1: not skipping (install with scripts/kafka.sh install, "
                      "scripts/ferretdb.sh install)");
        return false;
    }
    ts_infra_note("skipping (exit %d): install with scripts/kafka.sh install / scripts/ferretdb.sh install", TS_SKIP);
    return true;
}
