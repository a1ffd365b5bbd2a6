/*
 * report.c: `adtrack report --from ... --to ... [--granularity day|hour] [--group-by LIST]
 * [--metrics LIST] [--tz ZONE] [--format table|csv|json]`: asks coredata's GET /v1/reports
 * and prints an aligned table (default), or the API's CSV or JSON as it came.
 *
 * --api, --token / --token-file and --timeout-ms (and ADTRACK_API, ADTRACK_TOKEN, ...) work
 * as for the other commands; the report's own flags are not read from the environment.
 */
#include "report.h"

#include <bson/bson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "at_conf.h"
#include "at_main.h"
#include "cli_http.h"

typedef struct report_conf_s {
    char *api;
    char *token;
    int64_t timeout_ms;
} report_conf_t;

#define C(field) AT_OFF(report_conf_t, field)

static const at_conf_opt_t report_opts[] = {
    {"api", AT_CONF_STR, C(api), 1, 2048, "http://127.0.0.1:8090", "Base URL of the adtrack-coredata admin API."},
    {"token", AT_CONF_STR | AT_CONF_SECRET, C(token), 0, 512, "", "Bearer token (a --read-token of coredata is enough)."},
    {"timeout-ms", AT_CONF_INT, C(timeout_ms), 100, 600000, "30000", "How long the report may take."},
};

static const at_conf_table_t report_table = {
    .program = "adtrack report",
    .summary = "A report from the hourly rollups (coredata's GET /v1/reports, docs/REPORTS.md).\n\n"
               "Report options:\n"
               "  --from T --to T        required: YYYY-MM-DD (midnight in --tz) or RFC 3339 on an hour boundary;\n"
               "                         the range is [from, to)\n"
               "  --granularity day|hour default day\n"
               "  --group-by LIST        any of campaign,advertiser,creative,publisher,placement (default: none)\n"
               "  --metrics LIST         imp,view,click,conv,spend_micros,payout_micros,rejected,uniques,ctr,\n"
               "                         viewability,cvr,ecpm_micros,cpc_micros,cpa_micros,rejected_by_reason\n"
               "                         (default: all but rejected_by_reason)\n"
               "  --tz ZONE              an IANA zone, e.g. Europe/Berlin (default UTC)\n"
               "  --format table|csv|json  default table (aligned columns and a total line)\n"
               "Exit status: 0 ok, 1 refused by the API, 2 usage, 3 unreachable.",
    .opts = report_opts,
    .nopts = AT_ARRAY_LEN(report_opts),
};

extern char **environ;

enum { R_FROM, R_TO, R_GRAN, R_GROUP, R_METRICS, R_TZ, R_FORMAT, R_COUNT };
static const char *const flag_names[R_COUNT] = {"from", "to", "granularity", "group-by", "metrics", "tz", "format"};
static const char *const param_names[R_COUNT] = {"from", "to", "granularity", "group_by", "metrics", "tz", "format"};

static int usage(const char *msg)
{
    fprintf(stderr, "adtrack report: %s (see adtrack report --help)\n", msg);
    return 2;
}

/* Percent-encodes @p s onto @p out (unreserved characters and ',' as they are). */
static size_t url_encode(const char *s, char *out, size_t size)
{
    size_t o = 0;
    for (; *s && o + 4 < size; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '~' || c == ',' || c == ':')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, size - o, "%%%02X", c);
    }
    out[o] = '\0';
    return o;
}

static void print_error(const cli_resp_t *r)
{
    bson_t *b = r->body ? bson_new_from_json((const uint8_t *)r->body, (ssize_t)r->body_len, NULL) : NULL;
    bson_iter_t it, arr;
    if (b == NULL) {
        fprintf(stderr, "adtrack report: HTTP %d: %s\n", r->status, r->body ? r->body : "");
        return;
    }
    if (bson_iter_init_find(&it, b, "error") && BSON_ITER_HOLDS_UTF8(&it))
        fprintf(stderr, "adtrack report: HTTP %d: %s\n", r->status, bson_iter_utf8(&it, NULL));
    if (bson_iter_init_find(&it, b, "errors") && BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &arr)) {
        while (bson_iter_next(&arr)) {
            bson_iter_t e;
            const char *field = "?", *exp = "?";
            if (BSON_ITER_HOLDS_DOCUMENT(&arr) && bson_iter_recurse(&arr, &e)) {
                while (bson_iter_next(&e)) {
                    if (strcmp(bson_iter_key(&e), "field") == 0 && BSON_ITER_HOLDS_UTF8(&e))
                        field = bson_iter_utf8(&e, NULL);
                    else if (strcmp(bson_iter_key(&e), "expected") == 0 && BSON_ITER_HOLDS_UTF8(&e))
                        exp = bson_iter_utf8(&e, NULL);
                }
            }
            fprintf(stderr, "  %s: expected %s\n", field, exp);
        }
    }
    bson_destroy(b);
}

/* ---- the table ---- */

/* Text of a value: numbers as numbers (ratios with 4 significant digits), null as "-". */
static void value_text(bson_iter_t *it, char *out, size_t size, bool *number)
{
    *number = true;
    if (BSON_ITER_HOLDS_INT32(it) || BSON_ITER_HOLDS_INT64(it)) {
        snprintf(out, size, "%lld", (long long)bson_iter_as_int64(it));
    } else if (BSON_ITER_HOLDS_DOUBLE(it)) {
        snprintf(out, size, "%.4g", bson_iter_double(it));
    } else if (BSON_ITER_HOLDS_NULL(it)) {
        snprintf(out, size, "-");
    } else if (BSON_ITER_HOLDS_UTF8(it)) {
        *number = false;
        snprintf(out, size, "%s", bson_iter_utf8(it, NULL));
    } else if (BSON_ITER_HOLDS_DOCUMENT(it)) { /* rejected_by_reason */
        bson_iter_t c;
        size_t o = 0;
        out[0] = '\0';
        *number = false;
        if (bson_iter_recurse(it, &c))
            while (bson_iter_next(&c) && o < size)
                o += (size_t)snprintf(out + o, size - o, "%s%s=%lld", o ? " " : "", bson_iter_key(&c),
                                      (long long)bson_iter_as_int64(&c));
    } else {
        snprintf(out, size, "?");
    }
}

/* Prints @p body (the API's JSON) as aligned columns and a total line. */
static int print_table(const char *body, size_t len)
{
    bson_error_t e;
    bson_t *b = bson_new_from_json((const uint8_t *)body, (ssize_t)len, &e);
    if (b == NULL) {
        fprintf(stderr, "adtrack report: the answer is not JSON: %s\n", e.message);
        return 1;
    }
    /* columns: period, the group_by dimensions, the metrics */
    char **names = NULL;
    size_t ncols = 0;
    names = realloc(names, sizeof(*names));
    names[ncols++] = strdup("period");
    static const char *const lists[] = {"group_by", "metrics"};
    for (size_t l = 0; l < 2; l++) {
        bson_iter_t it, a;
        if (bson_iter_init_find(&it, b, lists[l]) && BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &a))
            while (bson_iter_next(&a))
                if (BSON_ITER_HOLDS_UTF8(&a)) {
                    names = realloc(names, (ncols + 1) * sizeof(*names));
                    names[ncols++] = strdup(bson_iter_utf8(&a, NULL));
                }
    }
    /* rows, then the totals as the last row */
    size_t nrows = 0, cap = 0;
    char **cells = NULL;
    bool *numeric = calloc(ncols, sizeof(*numeric));
    bson_iter_t it, rows;
    for (int pass = 0; pass < 2; pass++) {
        bson_iter_t list;
        bool have = false;
        if (pass == 0 && bson_iter_init_find(&it, b, "rows") && BSON_ITER_HOLDS_ARRAY(&it) &&
            bson_iter_recurse(&it, &rows))
            have = true;
        for (;;) {
            bson_iter_t row;
            if (pass == 0) {
                if (!have || !bson_iter_next(&rows))
                    break;
                if (!BSON_ITER_HOLDS_DOCUMENT(&rows) || !bson_iter_recurse(&rows, &row))
                    continue;
            } else {
                if (!bson_iter_init_find(&list, b, "totals") || !BSON_ITER_HOLDS_DOCUMENT(&list) ||
                    !bson_iter_recurse(&list, &row))
                    break;
            }
            if ((nrows + 1) * ncols > cap) {
                cap = (nrows + 1) * ncols * 2;
                cells = realloc(cells, cap * sizeof(*cells));
            }
            for (size_t c = 0; c < ncols; c++) {
                bson_iter_t f = row;
                char v[512] = "";
                bool number = false;
                if (pass == 1 && c == 0)
                    snprintf(v, sizeof(v), "total");
                else if (bson_iter_find(&f, names[c]))
                    value_text(&f, v, sizeof(v), &number);
                numeric[c] = numeric[c] || number;
                cells[nrows * ncols + c] = strdup(v);
            }
            nrows++;
            if (pass == 1)
                break;
        }
    }
    size_t *w = calloc(ncols, sizeof(*w));
    for (size_t c = 0; c < ncols; c++) {
        w[c] = strlen(names[c]);
        for (size_t r = 0; r < nrows; r++)
            if (strlen(cells[r * ncols + c]) > w[c])
                w[c] = strlen(cells[r * ncols + c]);
    }
    for (size_t r = 0; r <= nrows; r++) {
        for (size_t c = 0; c < ncols; c++) {
            const char *s = r == 0 ? names[c] : cells[(r - 1) * ncols + c];
            bool last = c + 1 == ncols;
            if (numeric[c])
                printf("%s%*s", c ? "  " : "", (int)w[c], s);
            else
                printf("%s%-*s", c ? "  " : "", last ? 0 : (int)w[c], s);
        }
        printf("\n");
    }
    bson_iter_t dt;
    size_t shown = nrows > 0 ? nrows - 1 : 0; /* the last one is the total */
    if (bson_iter_init_find(&dt, b, "data_through") && BSON_ITER_HOLDS_UTF8(&dt))
        printf("(%zu row%s; data through %s)\n", shown, shown == 1 ? "" : "s", bson_iter_utf8(&dt, NULL));
    else
        printf("(%zu row%s; no rollups yet)\n", shown, shown == 1 ? "" : "s");
    for (size_t i = 0; i < nrows * ncols; i++)
        free(cells[i]);
    for (size_t c = 0; c < ncols; c++)
        free(names[c]);
    free(cells);
    free(names);
    free(numeric);
    free(w);
    bson_destroy(b);
    return 0;
}

int report_main(int argc, char **argv)
{
    const char *vals[R_COUNT] = {NULL};
    char **cargv = calloc((size_t)argc + 1, sizeof(char *));
    int cargc = 0;
    cargv[cargc++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        int which = -1;
        if (strncmp(s, "--", 2) == 0) {
            const char *name = s + 2, *eq = strchr(name, '=');
            size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
            for (int k = 0; k < R_COUNT && which < 0; k++)
                if (strlen(flag_names[k]) == nlen && memcmp(flag_names[k], name, nlen) == 0)
                    which = k;
            if (which >= 0) {
                if (eq != NULL)
                    vals[which] = eq + 1;
                else if (i + 1 < argc)
                    vals[which] = argv[++i];
                else {
                    free(cargv);
                    return usage("option needs a value");
                }
                continue;
            }
        }
        cargv[cargc++] = argv[i]; /* --api, --token, --help, ... (and errors) */
    }
    report_conf_t conf = {0};
    at_err_t err = {0};
    int rc = at_conf_load(&report_table, &conf, cargc, cargv, environ, stdout, &err);
    if (rc == 0)
        at_main_secrets(&report_table, &conf, cargc, cargv);
    free(cargv);
    if (rc == AT_CONF_EXIT_HELP)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "adtrack report: %s\n", err.msg);
        return 2;
    }
    const char *format = vals[R_FORMAT] ? vals[R_FORMAT] : "table";
    bool table = strcmp(format, "table") == 0;
    if (!table && strcmp(format, "csv") != 0 && strcmp(format, "json") != 0) {
        at_conf_free(&report_table, &conf);
        return usage("--format: expected table, csv or json");
    }
    if (vals[R_FROM] == NULL || vals[R_TO] == NULL) {
        at_conf_free(&report_table, &conf);
        return usage("expected --from and --to");
    }
    char path[4096];
    size_t o = (size_t)snprintf(path, sizeof(path), "/v1/reports?");
    for (int k = 0; k < R_COUNT; k++) {
        if (vals[k] == NULL || (k == R_FORMAT && table))
            continue;
        o += (size_t)snprintf(path + o, sizeof(path) - o, "%s%s=", o > 12 ? "&" : "", param_names[k]);
        o += url_encode(vals[k], path + o, sizeof(path) - o);
    }
    if (table)
        snprintf(path + o, sizeof(path) - o, "&format=json");
    cli_resp_t r;
    if (cli_http(conf.api, "GET", path, conf.token[0] ? conf.token : NULL, NULL, NULL, 0, (int)conf.timeout_ms, &r,
                 &err) != 0) {
        fprintf(stderr, "adtrack report: GET %s: %s\n", conf.api, err.msg);
        at_conf_free(&report_table, &conf);
        return 3;
    }
    if (r.status != 200) {
        print_error(&r);
        rc = 1;
    } else if (table) {
        rc = print_table(r.body, r.body_len);
    } else {
        fwrite(r.body, 1, r.body_len, stdout);
        rc = 0;
    }
    cli_resp_free(&r);
    at_conf_free(&report_table, &conf);
    return rc;
}
