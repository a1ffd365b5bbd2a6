/*
 * at_main.h: what every service's main() does before it starts its server.
 */
#ifndef AT_MAIN_H
#define AT_MAIN_H

#include <signal.h>
#include "at_conf.h"

/*
 * Loads @p conf (a zeroed struct of @p t's type) from argv and the environment, applies
 * the log level held in the conf's string field at @p log_level_offset, blocks SIGINT and
 * SIGTERM in the calling thread (threads started later inherit the mask, so the caller
 * takes them with sigwait(@p signals)) and ignores SIGPIPE.
 * Returns -1 when main should go on, or the exit code main should return now: 0 after
 * --help, 2 for an invalid option (the message, naming the option, is printed to stderr
 * and @p conf is already freed).
 */
int at_main_init(const at_conf_table_t *t, void *conf, size_t log_level_offset, int argc, char **argv,
                 sigset_t *signals);

/*
 * The secret handling of at_main_init() for programs that load their table themselves
 * (adtrack up): registers every secret value of @p conf with at_log (masked in every record
 * from now on), and warns about each secret given in @p argv and overwrites it there.
 */
void at_main_secrets(const at_conf_table_t *t, void *conf, int argc, char **argv);

#endif
