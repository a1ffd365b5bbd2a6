/*
 * at_conf.h: one config table per binary.
 *
 * Each binary declares a static array of at_conf_opt_t rows describing its options. From
 * that single table come: parsing of `--name value` arguments, `ADTRACK_NAME` environment
 * variables (upper case, '-' becomes '_'), defaults, range checks, `--help`, and the
 * Markdown reference in docs/CONFIGURATION.md (`--help-markdown`).
 *
 * Precedence: default < environment < command line.
 *
 * Example row:
 *   {"redis-timeout-ms", AT_CONF_INT, AT_OFF(enr_conf_t, redis_timeout_ms), 1, 60000, "500",
 *    "Redis command timeout in milliseconds"},
 */
#ifndef AT_CONF_H
#define AT_CONF_H

#include "at_err.h"

typedef enum at_conf_type_e {
    AT_CONF_INT,  /* field is int64_t; min/max bound the value; default parsed from def */
    AT_CONF_BOOL, /* field is bool; accepts true/false/1/0/yes/no/on/off; min/max unused */
    AT_CONF_STR,  /* field is char * (heap, owned by the conf struct); max = max length (0: unbounded) */
    AT_CONF_LIST, /* field is at_conf_list_t; repeatable flag (env: comma-separated); max = max items */
} at_conf_type_t;

/* A repeatable option's values, in the order given. */
typedef struct at_conf_list_s {
    char **items; /* heap array of heap strings, owned by the conf struct */
    size_t count;
} at_conf_list_t;

typedef struct at_conf_opt_s {
    const char *name;    /* flag name without the leading "--", e.g. "listen" */
    at_conf_type_t type;
    size_t offset;       /* AT_OFF(conf_struct, field) */
    int64_t min, max;    /* see at_conf_type_t */
    const char *def;     /* default as text ("" or NULL = empty string / no items) */
    const char *help;    /* one sentence; shown in --help and docs */
} at_conf_opt_t;

typedef struct at_conf_table_s {
    const char *program;   /* "adtrack-collector" */
    const char *summary;   /* one paragraph shown at the top of --help */
    const at_conf_opt_t *opts;
    size_t nopts;
} at_conf_table_t;

/* Return values of at_conf_load() besides 0 and -1. */
#define AT_CONF_EXIT_HELP 1 /* --help or --help-markdown was given and printed to @p out */

/*
 * Fills @p conf (a zeroed struct of the table's type) from defaults, then @p envp (may be
 * NULL), then argv[1..argc-1]. Prints help to @p out when asked.
 * Returns 0, AT_CONF_EXIT_HELP, or -1 with @p err naming the option and the accepted
 * range or form, e.g. "--threads: expected an integer from 1 to 64, got '0'".
 * Unknown flags and stray positional arguments are errors.
 * The strings stored in @p conf are owned by it; release them with at_conf_free().
 */
int at_conf_load(const at_conf_table_t *t, void *conf, int argc, char **argv, char **envp, FILE *out,
                 at_err_t *err);

/* Sets one option by name from text, with the same checks as the command line. */
int at_conf_set(const at_conf_table_t *t, void *conf, const char *name, const char *value, at_err_t *err);

/* Writes the --help text (usage, summary, one block per option with type, range, default,
 * env name). */
void at_conf_usage(const at_conf_table_t *t, FILE *out);

/* Writes the Markdown reference section for docs/CONFIGURATION.md. */
void at_conf_markdown(const at_conf_table_t *t, FILE *out);

/* Frees the strings and lists the table's rows point to inside @p conf; the struct itself
 * stays the caller's. Accepts NULL. */
void at_conf_free(const at_conf_table_t *t, void *conf);

#endif
