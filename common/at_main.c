/*
 * at_main.c: the start of every service's main() (see at_main.h).
 */
#include "at_main.h"

#include <pthread.h>

#include "at_log.h"
#include "at_secret.h"

extern char **environ;

static void register_secret(const char *value, void *arg)
{
    AT_UNUSED(arg);
    at_log_add_secret(value);
}

static void warn_argv_secret(const at_conf_opt_t *o, void *arg)
{
    const at_conf_table_t *t = arg;
    char file_opt[160], msg[400];
    snprintf(file_opt, sizeof(file_opt), "--%s-file", o->name);
    snprintf(msg, sizeof(msg),
             "--%s was given on the command line, where every user of this machine can read it (ps, "
             "/proc/<pid>/cmdline); give it with %s or the environment instead",
             o->name, file_opt);
    at_log(AT_LOG_WARN, "config", msg, "program", t->program, "option", o->name, NULL);
}

void at_main_secrets(const at_conf_table_t *t, void *conf, int argc, char **argv)
{
    /* Secrets: masked in every log record from now on, and a value given on the command line
     * is warned about and overwritten there (docs/SECURITY.md). */
    at_conf_foreach_secret(t, conf, register_secret, NULL);
    at_conf_argv_secrets(t, argc, argv, true, warn_argv_secret, (void *)t);
}

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
    at_main_secrets(t, conf, argc, argv);

    sigemptyset(signals);
    sigaddset(signals, SIGINT);
    sigaddset(signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, signals, NULL);
    signal(SIGPIPE, SIG_IGN);
    return -1;
}
