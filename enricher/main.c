/*
 * adtrack-enricher: configuration, signals and the server's life cycle. Everything else
 * lives in the enr library so tests link the shipped code.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "at_log.h"
#include "enr_server.h"

extern char **environ;

int main(int argc, char **argv)
{
    enr_conf_t conf = {0};
    at_err_t err = {0};
    int rc = at_conf_load(&enr_conf_table, &conf, argc, argv, environ, stdout, &err);
    if (rc == AT_CONF_EXIT_HELP)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "adtrack-enricher: %s\n", err.msg);
        return 2;
    }
    at_log_level_t level;
    if (at_log_parse_level(conf.log_level, &level) != 0) {
        fprintf(stderr, "adtrack-enricher: --log-level: expected debug, info, warn or error, got '%s'\n",
                conf.log_level);
        at_conf_free(&enr_conf_table, &conf);
        return 2;
    }
    at_log_set_level(level);

    /* Signals are taken synchronously by this thread; the other threads inherit the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    enr_server_t *srv = enr_server_new(&conf, &err);
    if (srv == NULL || enr_server_start(srv, &err) != 0) {
        fprintf(stderr, "adtrack-enricher: %s\n", err.msg);
        at_log(AT_LOG_ERROR, "enricher", "start-up failed", "error", err.msg, NULL);
        if (srv != NULL) {
            enr_server_stop(srv);
            enr_server_destroy(srv);
        }
        at_conf_free(&enr_conf_table, &conf);
        return 1;
    }
    at_log(AT_LOG_INFO, "enricher", "started", "brokers", conf.brokers, "group", conf.group, "redis", conf.redis,
           "sink", srv->sink->ops->name, NULL);

    /* Wait for a signal, or for the worker to give up at start-up (it sets stopping). */
    int sig = 0;
    struct timespec tick = {.tv_sec = 0, .tv_nsec = 200 * 1000 * 1000};
    while (!atomic_load(&srv->stopping)) {
        sig = sigtimedwait(&set, NULL, &tick);
        if (sig > 0)
            break;
    }
    bool failed = sig <= 0;
    at_log(AT_LOG_INFO, "enricher", sig == SIGTERM ? "SIGTERM received" : sig == SIGINT ? "SIGINT received" : "worker stopped",
           NULL);
    enr_server_stop(srv);
    enr_server_destroy(srv);
    at_log(AT_LOG_INFO, "enricher", "stopped", NULL);
    at_conf_free(&enr_conf_table, &conf);
    return failed ? 1 : 0;
}
