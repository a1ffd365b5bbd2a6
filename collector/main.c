/*
 * adtrack-collector: configuration, signals, and the server's life cycle. Everything
 * else lives in the col library so tests link the shipped code.
 */
#include <signal.h>
#include <stdlib.h>
#include <pthread.h>

#include "at_log.h"
#include "at_main.h"
#include "col_server.h"

int main(int argc, char **argv)
{
    col_conf_t conf = {0};
    at_err_t err = {0};
    /* SIGINT/SIGTERM are taken synchronously by this thread with sigwait. */
    sigset_t set;
    int rc = at_main_init(&col_conf_table, &conf, AT_OFF(col_conf_t, log_level), argc, argv, &set);
    if (rc >= 0)
        return rc;

    col_server_t *srv = col_server_new(&conf, &err);
    if (srv == NULL || col_server_start(srv, &err) != 0) {
        fprintf(stderr, "adtrack-collector: %s\n", err.msg);
        at_log(AT_LOG_ERROR, "collector", "start-up failed", "error", err.msg, NULL);
        if (srv != NULL) {
            col_server_stop(srv);
            col_server_destroy(srv);
        }
        at_conf_free(&col_conf_table, &conf);
        return 1;
    }
    int sig = 0;
    sigwait(&set, &sig);
    at_log(AT_LOG_INFO, "collector", sig == SIGTERM ? "SIGTERM received" : "SIGINT received", NULL);
    col_server_stop(srv);
    col_server_destroy(srv);
    at_log(AT_LOG_INFO, "collector", "stopped", NULL);
    at_conf_free(&col_conf_table, &conf);
    return 0;
}
