/*
 * reconcile.c: `adtrack rollups reconcile` (docs/REPORTS.md, "Reconciliation").
 *
 * Recounts every (UTC hour, c, cr, p, pl) group of a range of hours from the stored events
 * and rejected events, compares the recount with the sum of the group's stats_hourly
 * documents, prints the drift, and with --repair writes one correction document per drifting
 * group (k = -1) so that the sum equals the recount. The pure part is rec_tally.c, the stores
 * rec_store_mongo.c and rec_store_files.c.
 *
 * One thread; the process ends when the command does.
 */
#include "reconcile.h"

#include <bson/bson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "at_conf.h"
#include "at_main.h"
#include "rec_store.h"
#include "rec_tally.h"

/* An hour that ended less than this long ago may still receive events (enricher lag, a
 * collector replaying its spool): the warning threshold, documented in docs/REPORTS.md. */
#define REC_SETTLE_MS (15 * 60 * 1000)

typedef struct rec_conf_s {
    char *from;
    char *to;
    bool repair;
    bool json;
    char *mongo;
    at_conf_list_t data_dir;
} rec_conf_t;

#define R(field) AT_OFF(rec_conf_t, field)

static const at_conf_opt_t rec_opts[] = {
    {"from", AT_CONF_STR, R(from), 0, 64, "", "First hour to check: YYYY-MM-DDTHH or YYYY-MM-DD (00:00), UTC."},
    {"to", AT_CONF_STR, R(to), 0, 64, "",
     "End of the range, exclusive: YYYY-MM-DDTHH or YYYY-MM-DD (00:00 of that day), UTC."},
    {"repair", AT_CONF_BOOL, R(repair), 0, 0, "false",
     "Write a correction document (k = -1) for every drifting group. A bare --repair means true."},
    {"json", AT_CONF_BOOL, R(json), 0, 0, "false", "Print one JSON document instead of text. A bare --json means true."},
    {"mongo", AT_CONF_STR | AT_CONF_CREDS, R(mongo), 0, 4096, "",
     "MongoDB URI: read adtrack.events, adtrack.rejected and adtrack.stats_hourly there."},
    {"data-dir", AT_CONF_LIST, R(data_dir), 0, 64, "",
     "An enricher's file-sink directory (repeat for several); corrections go to the first one."},
};

static const at_conf_table_t rec_table = {
    .program = "adtrack rollups reconcile",
    .summary = "Recounts the hours [--from, --to) from the stored events and compares the stats_hourly rollups with "
               "the recount; --repair writes corrections. Exactly one of --mongo (or --mongo-file) and --data-dir. "
               "Exit status: 0 no drift (or all repaired), 1 drift found and not repaired, 2 usage or store error. "
               "See docs/REPORTS.md, \"Reconciliation\".",
    .opts = rec_opts,
    .nopts = AT_ARRAY_LEN(rec_opts),
};

extern char **environ;

/* What the run saw, for the summary. */
typedef struct run_s {
    const rec_conf_t *conf;
    int64_t now_ms;
    size_t hours, groups, drifting, repaired, unrepairable;
    size_t events, rejected, docs, ignored;
    size_t tally_bytes_max;
    bson_t *drift_json;       /* --json: the array of drifting groups, built as they come */
    size_t drift_json_n;
    bson_t **corrections;     /* this chunk's correction documents (owned) */
    size_t ncorr, capcorr;
    rec_store_t *store;
    at_err_t *err;
    int failed;
} run_t;

static void print_diff_text(const rec_diff_t *d)
{
    printf("  %-28s rollup %-14lld recount %-14lld diff %+lld\n", d->field, (long long)d->rollup,
           (long long)d->recount, (long long)(d->recount - d->rollup));
}

static void on_drift(const rec_group_t *g, const rec_diff_t *diffs, size_t n, bool repairable, void *arg)
{
    run_t *r = arg;
    r->drifting++;
    if (!repairable)
        r->unrepairable++;
    if (r->conf->repair) {
        if (r->ncorr == r->capcorr) {
            size_t ncap = r->capcorr ? r->capcorr * 2 : 16;
            bson_t **nv = realloc(r->corrections, ncap * sizeof(*nv));
            if (nv == NULL) {
                r->failed = at_err_set(r->err, AT_ERR_NOMEM, "out of memory");
                return;
            }
            r->corrections = nv;
            r->capcorr = ncap;
        }
        r->corrections[r->ncorr++] = rec_correction_new(g, r->now_ms);
    }
    if (r->conf->json) {
        char idx[16];
        const char *key;
        bson_uint32_to_string((uint32_t)r->drift_json_n++, &key, idx, sizeof(idx));
        bson_t o, fields;
        BSON_APPEND_DOCUMENT_BEGIN(r->drift_json, key, &o);
        BSON_APPEND_UTF8(&o, "group", g->key);
        char hour[REC_HOUR_STR_LEN + 1];
        rec_hour_str(g->hour_ms, hour);
        BSON_APPEND_UTF8(&o, "h", hour);
        BSON_APPEND_UTF8(&o, "c", g->dim[0]);
        BSON_APPEND_UTF8(&o, "cr", g->dim[1]);
        BSON_APPEND_UTF8(&o, "p", g->dim[2]);
        BSON_APPEND_UTF8(&o, "pl", g->dim[3]);
        BSON_APPEND_INT64(&o, "documents", (int64_t)g->ndocs);
        BSON_APPEND_ARRAY_BEGIN(&o, "fields", &fields);
        for (size_t i = 0; i < n; i++) {
            char fidx[16];
            const char *fkey;
            bson_uint32_to_string((uint32_t)i, &fkey, fidx, sizeof(fidx));
            bson_t f;
            BSON_APPEND_DOCUMENT_BEGIN(&fields, fkey, &f);
            BSON_APPEND_UTF8(&f, "field", diffs[i].field);
            BSON_APPEND_INT64(&f, "rollup", diffs[i].rollup);
            BSON_APPEND_INT64(&f, "recount", diffs[i].recount);
            BSON_APPEND_INT64(&f, "diff", diffs[i].recount - diffs[i].rollup);
            bson_append_document_end(&fields, &f);
        }
        bson_append_array_end(&o, &fields);
        BSON_APPEND_BOOL(&o, "repairable", repairable);
        BSON_APPEND_BOOL(&o, "repaired", r->conf->repair && repairable);
        bson_append_document_end(r->drift_json, &o);
        return;
    }
    printf("drift %s (%zu rollup document%s)\n", g->key, g->ndocs, g->ndocs == 1 ? "" : "s");
    for (size_t i = 0; i < n; i++)
        print_diff_text(&diffs[i]);
    if (!repairable)
        printf("  u: the rollups' registers estimate more users than there are; a sketch cannot be lowered, so a "
               "correction cannot fix this (rebuild the hour's documents)\n");
    if (r->conf->repair)
        printf("  correction %s|-1 %s\n", g->key, repairable ? "written" : "written (u still drifts)");
}

/* Checks [from_ms, to_ms): load, compare, repair. 0 or -1 + r->err. */
static int check_chunk(run_t *r, int64_t from_ms, int64_t to_ms)
{
    rec_tally_t *t = rec_tally_new(from_ms, to_ms);
    if (t == NULL)
        return at_err_set(r->err, AT_ERR_NOMEM, "out of memory");
    int rc = r->store->load(r->store, t, from_ms, to_ms, r->err);
    if (rc == 0) {
        size_t bytes = rec_tally_bytes(t);
        if (bytes > r->tally_bytes_max)
            r->tally_bytes_max = bytes;
        size_t ev, rj, docs;
        rec_tally_counted(t, &ev, &rj, &docs);
        r->events += ev;
        r->rejected += rj;
        r->docs += docs;
        r->ignored += rec_tally_ignored(t);
        r->groups += rec_tally_groups(t);
        /* corrections are printed as "written" before the write: a failed write ends the
         * command with exit 2 and its message, which is what a reader must look at */
        fflush(stdout);
        rec_tally_compare(t, on_drift, r);
        rc = r->failed;
    }
    if (rc == 0 && r->ncorr > 0) {
        size_t written = 0;
        rc = r->store->write(r->store, r->corrections, r->ncorr, &written, r->err);
        r->repaired += written;
    }
    for (size_t i = 0; i < r->ncorr; i++)
        bson_destroy(r->corrections[i]);
    r->ncorr = 0;
    rec_tally_free(t);
    return rc;
}

static long max_rss_kib(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_maxrss : -1;
}

static int usage(const char *msg)
{
    fprintf(stderr, "adtrack rollups reconcile: %s (see adtrack rollups reconcile --help)\n", msg);
    return 2;
}

static int reconcile_main(int argc, char **argv)
{
    /* Every option of a config table takes a value; the two switches are typed bare. A
     * --repair or --json that is last or followed by another option means =true. */
    char **args = calloc((size_t)argc + 1, sizeof(char *));
    if (args == NULL)
        return 2;
    for (int i = 0; i < argc; i++) {
        bool next_is_flag = i + 1 == argc || strncmp(argv[i + 1], "--", 2) == 0;
        if (strcmp(argv[i], "--repair") == 0 && next_is_flag)
            args[i] = "--repair=true";
        else if (strcmp(argv[i], "--json") == 0 && next_is_flag)
            args[i] = "--json=true";
        else
            args[i] = argv[i];
    }
    rec_conf_t conf = {0};
    at_err_t err = {0};
    int rc = at_conf_load(&rec_table, &conf, argc, args, environ, stdout, &err);
    free(args);
    if (rc == AT_CONF_EXIT_HELP)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "adtrack rollups reconcile: %s\n", err.msg);
        return 2;
    }
    at_main_secrets(&rec_table, &conf, argc, argv);
    int64_t from_ms = 0, to_ms = 0;
    rec_store_t *store = NULL;
    char msg[AT_ERR_MSG_MAX + 64];
    rc = -1;
    if (conf.from[0] == '\0' || conf.to[0] == '\0') {
        rc = usage(conf.from[0] == '\0' ? "--from: expected an hour (YYYY-MM-DDTHH) or a date (YYYY-MM-DD)"
                                        : "--to: expected an hour (YYYY-MM-DDTHH) or a date (YYYY-MM-DD)");
    } else if (rec_parse_hour(conf.from, &from_ms, &err) != 0) {
        snprintf(msg, sizeof(msg), "--from: %s", err.msg);
        rc = usage(msg);
    } else if (rec_parse_hour(conf.to, &to_ms, &err) != 0) {
        snprintf(msg, sizeof(msg), "--to: %s", err.msg);
        rc = usage(msg);
    } else if (to_ms <= from_ms) {
        rc = usage("--to: expected an hour after --from (the range is [--from, --to))");
    } else if ((conf.mongo[0] != '\0') == (conf.data_dir.count > 0)) {
        rc = usage(conf.mongo[0] != '\0' ? "expected --mongo (or --mongo-file) or --data-dir, not both"
                                         : "expected a store: --mongo URI, --mongo-file FILE or --data-dir DIR");
    } else {
        store = conf.mongo[0] != '\0' ? rec_store_mongo_new(conf.mongo, &err)
                                      : rec_store_files_new(conf.data_dir.items, conf.data_dir.count, &err);
        if (store == NULL) {
            fprintf(stderr, "adtrack rollups reconcile: %s\n", err.msg);
            rc = 2;
        }
    }
    if (store == NULL) {
        at_conf_free(&rec_table, &conf);
        return rc;
    }

    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    run_t r = {.conf = &conf, .now_ms = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000, .store = store, .err = &err};
    r.hours = (size_t)((to_ms - from_ms) / REC_HOUR_MS);
    int64_t this_hour = r.now_ms - r.now_ms % REC_HOUR_MS;
    const char *warning = NULL;
    if (to_ms > this_hour)
        warning = "the range includes the current hour (or later): it is still receiving events and will drift "
                  "again; reconcile hours that ended at least 15 minutes ago";
    else if (to_ms > r.now_ms - REC_SETTLE_MS)
        warning = "the last hour of the range ended less than 15 minutes ago: late events may still arrive and "
                  "make it drift again";
    if (warning != NULL)
        fprintf(stderr, "adtrack rollups reconcile: warning: %s\n", warning);
    if (conf.json)
        r.drift_json = bson_new();

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int64_t step = store->step_ms(store, from_ms, to_ms);
    int failed = 0;
    for (int64_t h = from_ms; h < to_ms && failed == 0; h += step)
        failed = check_chunk(&r, h, h + step < to_ms ? h + step : to_ms);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    free(r.corrections);

    if (failed != 0) {
        fprintf(stderr, "adtrack rollups reconcile: %s\n", err.msg);
        if (r.repaired > 0)
            fprintf(stderr, "adtrack rollups reconcile: %zu correction%s confirmed written before the failure\n",
                    r.repaired, r.repaired == 1 ? " was" : "s were");
        rc = 2;
    } else {
        rc = r.drifting > 0 && (!conf.repair || r.unrepairable > 0) ? 1 : 0;
    }
    const char *tolerance = "unique users (u): the merged HyperLogLog estimate is compared with the exact count and "
                            "drifts only beyond 3 standard errors (3 x 2.3%) of the count, plus 1";
    /* a correction written for a group whose u cannot be repaired does not repair it */
    size_t fixed = r.repaired > r.unrepairable ? r.repaired - r.unrepairable : 0;
    if (failed == 0 && conf.json) {
        bson_t out = BSON_INITIALIZER;
        char from_h[REC_HOUR_STR_LEN + 1], to_h[REC_HOUR_STR_LEN + 1];
        rec_hour_str(from_ms, from_h);
        rec_hour_str(to_ms, to_h);
        BSON_APPEND_UTF8(&out, "from", from_h);
        BSON_APPEND_UTF8(&out, "to", to_h);
        BSON_APPEND_UTF8(&out, "store", conf.mongo[0] ? "mongodb" : "files");
        BSON_APPEND_INT64(&out, "hours", (int64_t)r.hours);
        BSON_APPEND_INT64(&out, "groups", (int64_t)r.groups);
        BSON_APPEND_INT64(&out, "drifting", (int64_t)r.drifting);
        BSON_APPEND_INT64(&out, "repaired", (int64_t)fixed);
        BSON_APPEND_INT64(&out, "corrections_written", (int64_t)r.repaired);
        BSON_APPEND_INT64(&out, "unrepairable", (int64_t)r.unrepairable);
        BSON_APPEND_INT64(&out, "events", (int64_t)r.events);
        BSON_APPEND_INT64(&out, "rejected", (int64_t)r.rejected);
        BSON_APPEND_INT64(&out, "rollup_documents", (int64_t)r.docs);
        BSON_APPEND_INT64(&out, "ignored", (int64_t)r.ignored);
        BSON_APPEND_ARRAY(&out, "drift", r.drift_json);
        BSON_APPEND_UTF8(&out, "uniques_tolerance", tolerance);
        if (warning != NULL)
            BSON_APPEND_UTF8(&out, "warning", warning);
        BSON_APPEND_INT64(&out, "milliseconds", (int64_t)(secs * 1000.0 + 0.5));
        BSON_APPEND_INT64(&out, "tally_bytes_max", (int64_t)r.tally_bytes_max);
        BSON_APPEND_INT64(&out, "max_rss_kib", max_rss_kib());
        char *json = bson_as_relaxed_extended_json(&out, NULL);
        printf("%s\n", json);
        bson_free(json);
        bson_destroy(&out);
    } else if (failed == 0) {
        printf("checked %zu hour%s, %zu group%s (%zu events, %zu rejected, %zu rollup documents): %zu drifting", r.hours,
               r.hours == 1 ? "" : "s", r.groups, r.groups == 1 ? "" : "s", r.events, r.rejected, r.docs, r.drifting);
        if (conf.repair)
            printf(", %zu repaired (%zu correction%s written)", fixed, r.repaired, r.repaired == 1 ? "" : "s");
        if (r.unrepairable > 0)
            printf(", %zu not repairable (u too high)", r.unrepairable);
        printf("\n%s\n", tolerance);
        printf("%.2f s, largest tally %.1f KiB, max RSS %.1f MiB\n", secs, (double)r.tally_bytes_max / 1024.0,
               (double)max_rss_kib() / 1024.0);
    }
    if (r.drift_json != NULL)
        bson_destroy(r.drift_json);
    rec_store_free(store);
    at_conf_free(&rec_table, &conf);
    return rc;
}

int rollups_main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "reconcile") == 0)
        return reconcile_main(argc - 1, argv + 1);
    fprintf(stderr, "adtrack rollups: expected a subcommand: reconcile (see adtrack rollups reconcile --help)\n");
    return 2;
}
