/*
 * adtrack-coredata: configuration, signals, and the server's life cycle. Everything else
 * lives in the cd library so tests link the shipped code.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "at_log.h"
#include "cd_server.h"

extern char **environ;

int main(int argc, char **argv)
{
    cd_conf_t conf = {0};
    at_err_t err = {0};
    int rc = at_conf_load(&cd_conf_table, &conf, argc, argv, environ, stdout, &err);
    if (rc == AT_CONF_EXIT_HELP)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "adtrack-coredata: %s\n", err.msg);
        return 2;
    }
    at_log_level_t level;
    if (at_log_parse_level(conf.log_level, &level) != 0) {
        fprintf(stderr, "adtrack-coredata: --log-level: expected debug, info, warn or error, got '%s'\n",
                conf.log_level);
        at_conf_free(&cd_conf_table, &conf);
        return 2;
    }
    at_log_set_level(level);

    /* Signals are taken synchronously by this thread; every other thread inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    cd_server_t *srv = cd_server_new(&conf, &err);
    if (srv == NULL || cd_server_start(srv, &err) != 0) {
        fprintf(stderr, "adtrack-coredata: %s\n", err.msg);
        at_log(AT_LOG_ERROR, "coredata", "start-up failed", "error", err.msg, NULL);
        if (srv != NULL) {
            cd_server_stop(srv);
            cd_server_destroy(srv);
        }
        at_conf_free(&cd_conf_table, &conf);
        return 1;
    }
    int sig = 0;
    sigwait(&set, &sig);
    at_log(AT_LOG_INFO, "coredata", sig == SIGTERM ? "SIGTERM received" : "SIGINT received", NULL);
    cd_server_stop(srv);
    cd_server_destroy(srv);
    at_log(AT_LOG_INFO, "coredata", "stopped", NULL);
    at_conf_free(&cd_conf_table, &conf);
    return 0;
}
