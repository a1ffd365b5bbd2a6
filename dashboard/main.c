/*
 * adtrack-dashboard: configuration, signals and the server's life cycle. Everything else
 * lives in the dash library so tests link the shipped code.
 */
#include <signal.h>
#include <stdlib.h>

#include "at_log.h"
#include "at_main.h"
#include "dash_server.h"

int main(int argc, char **argv)
{
    dash_conf_t conf = {0};
    at_err_t err = {0};
    /* SIGINT/SIGTERM are taken synchronously by this thread with sigwait. */
    sigset_t set;
    int rc = at_main_init(&dash_conf_table, &conf, AT_OFF(dash_conf_t, log_level), argc, argv, &set);
    if (rc >= 0)
        return rc;

    dash_server_t *srv = dash_server_new(&conf, &err);
    if (srv == NULL || dash_server_start(srv, &err) != 0) {
        fprintf(stderr, "adtrack-dashboard: %s\n", err.msg);
        at_log(AT_LOG_ERROR, "dashboard", "start-up failed", "error", err.msg, NULL);
        if (srv != NULL) {
            dash_server_stop(srv);
            dash_server_destroy(srv);
        }
        at_conf_free(&dash_conf_table, &conf);
        return 1;
    }
    int sig = 0;
    sigwait(&set, &sig);
    at_log(AT_LOG_INFO, "dashboard", sig == SIGTERM ? "SIGTERM received" : "SIGINT received", NULL);
    dash_server_stop(srv);
    dash_server_destroy(srv);
    at_log(AT_LOG_INFO, "dashboard", "stopped", NULL);
    at_conf_free(&dash_conf_table, &conf);
    return 0;
}
