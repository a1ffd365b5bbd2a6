/*
 * adtrack-enricher: configuration, signals and the server's life cycle. Everything else
 * lives in the enr library so tests link the shipped code.
 */
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <time.h>

#include "at_log.h"
#include "at_main.h"
#include "at_secret.h"
#include "enr_server.h"

int main(int argc, char **argv)
{
    enr_conf_t conf = {0};
    at_err_t err = {0};
    /* SIGINT/SIGTERM are taken synchronously by this thread with sigwait. */
    sigset_t set;
    int rc = at_main_init(&enr_conf_table, &conf, AT_OFF(enr_conf_t, log_level), argc, argv, &set);
    if (rc >= 0)
        return rc;

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
    char redis[1100];
    at_log(AT_LOG_INFO, "enricher", "started", "brokers", conf.brokers, "group", conf.group, "redis",
           at_secret_uri_redact(conf.redis, redis, sizeof(redis)), "kafka_security", conf.kafka.security_protocol,
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
