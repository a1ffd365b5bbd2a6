/*
 * at_main.c: the start of every service's main() (see at_main.h).
 */
#include "at_main.h"

#include <pthread.h>

#include "at_log.h"

extern char **environ;

int at_main_init(const at_conf_table_t *t, void *conf, size_t log_level_offset, int argc, char **argv,
                 sigset_t *signals)
{
    at_err_t err = {0};
    int rc = at_conf_load(t, conf, argc, argv, environ, stdout, &err);
    if (rc == AT_CONF_EXIT_HELP)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", t->program, err.msg);
        return 2;
    }
    const char *level_text;
    memcpy(&level_text, (const char *)conf + log_level_offset, sizeof(level_text));
    at_log_level_t level;
    if (at_log_parse_level(level_text, &level) != 0) {
        fprintf(stderr, "%s: --log-level: expected debug, info, warn or error, got '%s'\n", t->program, level_text);
        at_conf_free(t, conf);
        return 2;
    }
    at_log_set_level(level);

    sigemptyset(signals);
    sigaddset(signals, SIGINT);
    sigaddset(signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    return -1;
}
