/*
 * adtrack-coredata: configuration, signals, and the server's life cycle. Everything else
 * lives in the cd library so tests link the shipped code.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>

#include "at_log.h"
#include "at_main.h"
#include "cd_server.h"

int main(int argc, char **argv)
{
    cd_conf_t conf = {0};
    at_err_t err = {0};
    /* SIGINT/SIGTERM are taken synchronously by this thread with sigwait. */
    sigset_t set;
    int rc = at_main_init(&cd_conf_table, &conf, AT_OFF(cd_conf_t, log_level), argc, argv, &set);
    if (rc >= 0)
        return rc;

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
