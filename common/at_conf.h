/*
 * at_conf.h: one config table per binary.
 *
 * Each binary declares a static array of at_conf_opt_t rows describing its options. From
 * that single table come: parsing of `--name value` arguments, `ADTRACK_NAME` environment
 * variables (upper case, '-' becomes '_'), defaults, range checks, `--help`, and the
 * Markdown reference in docs/CONFIGURATION.md (`--help-markdown`).
 *
 * Precedence: default < environment < command line. Options marked secret (AT_CONF_SECRET)
 * also read from `--name-file PATH` / `ADTRACK_NAME_FILE`; giving a value and a file in the
 * same source is an error.
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

/*
 * Flags ORed into the type of a STR or LIST row (docs/SECURITY.md):
 *
 * AT_CONF_SECRET: the value is a secret (token, key, password). It can also be read from
 * a file, `--NAME-file PATH` or `ADTRACK_NAME_FILE` (at_secret_read_file(): not readable
 * by others, trailing newlines dropped; a list takes one value per line), so it never
 * needs to be on a command line, where every user of the machine can read it. --help
 * lists the -file variant as an option of its own. at_main_init() warns about a secret
 * given on the command line, overwrites it there, and registers every secret value with
 * at_log_add_secret().
 *
 * AT_CONF_CREDS: a URI that may carry a password (mongodb://user:pw@..., redis://...).
 * Treated like a secret (the -file variant, the warning) only when it does carry one;
 * the password is what is registered with at_log.
 */
#define AT_CONF_SECRET 0x100
#define AT_CONF_CREDS 0x200

/* The base type of a row, without the flags above. */
#define AT_CONF_BASE(o) ((at_conf_type_t)((unsigned)(o)->type & 0xffu))
/* True when the row has a -file variant. */
#define AT_CONF_HAS_FILE(o) (((unsigned)(o)->type & (AT_CONF_SECRET | AT_CONF_CREDS)) != 0)

/* A repeatable option's values, in the order given. */
typedef struct at_conf_list_s {
    char **items; /* heap array of heap strings, owned by the conf struct */
    size_t count;
} at_conf_list_t;

typedef struct at_conf_opt_s {
    const char *name;    /* flag name without the leading "--", e.g. "listen" */
    unsigned type;       /* an at_conf_type_t, with AT_CONF_SECRET or AT_CONF_CREDS ORed in */
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

/*
 * Finds the options of @p t marked AT_CONF_SECRET (or AT_CONF_CREDS with a password in the
 * value) that argv gives as a value (`--name value`, `--name=value`; not `--name-file`),
 * calls @p found (may be NULL) for each, and with @p scrub overwrites the value in argv with
 * '*' so that /proc/<pid>/cmdline and ps stop showing it (they showed it until now: the
 * warning is the real remedy). Returns how many were found.
 */
size_t at_conf_argv_secrets(const at_conf_table_t *t, int argc, char **argv, bool scrub,
                            void (*found)(const at_conf_opt_t *o, void *arg), void *arg);

/*
 * Calls @p cb with every secret value held in @p conf: each value of an AT_CONF_SECRET row
 * (every item of a list), and the password inside an AT_CONF_CREDS URI. @p cb must copy
 * what it keeps.
 */
void at_conf_foreach_secret(const at_conf_table_t *t, const void *conf, void (*cb)(const char *value, void *arg),
                            void *arg);

/* Sets one option by name from text, with the same checks as the command line. For a
 * secret option, "NAME-file" reads the value from the file @p value names. */
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
