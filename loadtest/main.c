/*
 * adtrack-loadtest: thin entry point; everything lives in the lt library (loadtest/lt_*.c)
 * so the tests link exactly the shipped code.
 *
 * Exit status: 0 ok; 1 --verify found lost or duplicated events (or could not read the
 * store); 2 bad options or input; 3 target unreachable or the run failed.
 */
#include "at_log.h"
#include "lt_conf.h"
#include "lt_report.h"
#include "lt_run.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

extern char **environ;

static atomic_int *g_stop;

static void on_signal(int sig)
{
    AT_UNUSED(sig);
    if (g_stop)
        atomic_fetch_add(g_stop, 1);
}

static int write_file(const char *path, const lt_buf_t *b)
{
    FILE *f = strcmp(path, "-") == 0 ? stdout : fopen(path, "wb");
    if (f == NULL) {
        fprintf(stderr, "adtrack-loadtest: cannot write '%s': %s\n", path, strerror(errno));
        return -1;
    }
    size_t n = b->len ? fwrite(b->data, 1, b->len, f) : 0;
    int rc = (n == b->len && fflush(f) == 0) ? 0 : -1;
    if (f != stdout && fclose(f) != 0)
        rc = -1;
    if (rc < 0)
        fprintf(stderr, "adtrack-loadtest: cannot write '%s': %s\n", path, strerror(errno));
    return rc;
}

int main(int argc, char **argv)
{
    lt_opts_t o;
    at_err_t err;
    at_err_clear(&err);
    int rc = lt_opts_load(&o, argc, argv, environ, stdout, &err);
    if (rc == AT_CONF_EXIT_HELP) {
        lt_opts_free(&o);
        return 0;
    }
    if (rc != 0) {
        fprintf(stderr, "adtrack-loadtest: %s\n", err.msg);
        lt_opts_free(&o);
        return 2;
    }
    lt_run_t r;
    if (lt_run_prepare(&r, &o, &err) < 0) {
        fprintf(stderr, "adtrack-loadtest: %s\n", err.msg);
        int code = err.code == AT_ERR_UNAVAILABLE ? 3 : 2;
        lt_run_free(&r);
        lt_opts_free(&o);
        return code;
    }
    g_stop = &r.stop;
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    bool tty = isatty(STDERR_FILENO) == 1;
    FILE *progress = (o.progress == 1 || (o.progress == -1 && tty)) ? stderr : NULL;
    at_log(AT_LOG_INFO, "loadtest", "starting", "target", o.c.target, "mode", r.mode, "source", r.source_detail,
           "run_id", r.run_id[0] ? r.run_id : "", NULL);
    if (lt_run_execute(&r, progress, &err) < 0) {
        fprintf(stderr, "adtrack-loadtest: %s\n", err.msg);
        int code = 3;
        lt_run_free(&r);
        lt_opts_free(&o);
        return code;
    }
    lt_run_verify(&r);

    lt_report_t rep;
    lt_run_report(&r, &rep);
    bool json_stdout = strcmp(o.c.json, "-") == 0;
    lt_report_text(&rep, json_stdout ? stderr : stdout);
    int exit_code = 0;
    if (o.c.json[0] != '\0') {
        lt_buf_t b = {0};
        lt_report_json(&rep, &b);
        if (b.oom || write_file(o.c.json, &b) < 0)
            exit_code = 3;
        lt_buf_free(&b);
    }
    if (o.c.html[0] != '\0') {
        lt_buf_t b = {0};
        lt_report_html(&rep, &b);
        if (b.oom || write_file(o.c.html, &b) < 0)
            exit_code = 3;
        lt_buf_free(&b);
    }
    if (exit_code == 0 && (rep.verify_error || (rep.verify && (rep.verify->lost > 0 || rep.verify->duplicated > 0))))
        exit_code = 1;
    g_stop = NULL;
    lt_run_free(&r);
    lt_opts_free(&o);
    return exit_code;
}
