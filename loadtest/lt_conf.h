/*
 * lt_conf.h: adtrack-loadtest's one config table (flags, ADTRACK_* environment, --help,
 * --help-markdown) and the checked, typed options derived from it.
 */
#ifndef LT_CONF_H
#define LT_CONF_H

#include "at_conf.h"
#include "lt_capture.h"
#include "lt_sched.h"

/* Raw values as the table fills them. */
typedef struct lt_conf_s {
    char *target;
    int64_t rate;
    char *duration;
    char *stages;
    int64_t start_rate;
    int64_t threads;
    int64_t connections;
    int64_t max_requests;
    char *timeout;
    char *connect_timeout;
    char *max_lag;
    char *late;
    char *interval;
    char *capture;
    char *capture_format;
    char *speed;
    char *profile;
    char *seed;
    char *click_secret;
    at_conf_list_t header;
    char *json;
    char *html;
    char *progress;
    char *verify;
    char *verify_wait;
    char *verify_quiet;
    char *verify_topic;
    char *verify_rejected_topic;
    char *verify_db;
    char *run_id;
    bool tag;
    char *log_level;
} lt_conf_t;

/* Checked options. */
typedef struct lt_opts_s {
    lt_conf_t c;
    int64_t duration_ns; /* 0 = not given */
    int64_t timeout_ns, connect_timeout_ns, max_lag_ns, late_ns, interval_ns;
    int64_t verify_wait_ns, verify_quiet_ns;
    double speed;
    lt_stage_t *stages; /* heap; from --stages, or one stage from --rate/--duration */
    size_t nstages;
    bool rate_given; /* --rate or --stages */
    lt_capture_format_t capture_format;
    int progress; /* 1 on, 0 off, -1 auto (on when stderr is a terminal) */
    bool have_seed;
    uint64_t seed;
    char *headers; /* the --header values joined as "Name: v\r\n" lines (heap) or NULL */
} lt_opts_t;

extern const at_conf_table_t lt_conf_table;

/*
 * Loads and checks the options. Returns 0, AT_CONF_EXIT_HELP (help printed to @p out), or
 * -1 with @p err naming the option. The caller releases @p o with lt_opts_free() in every
 * case.
 */
int lt_opts_load(lt_opts_t *o, int argc, char **argv, char **envp, FILE *out, at_err_t *err);

void lt_opts_free(lt_opts_t *o);

#endif
