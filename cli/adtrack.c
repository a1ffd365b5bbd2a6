/*
 * adtrack: the command-line client of the core-data admin API.
 *
 *   adtrack [--api URL] [--token-file PATH | --token T] <command>
 *     campaign  put FILE|-  |  get ID  |  list [--limit N] [--after ID] [--all]  |  delete ID
 *               pause ID  |  resume ID  |  budget ID --topup N | --set N
 *     publisher put FILE|-  |  get ID  |  list [...]  |  delete ID
 *     seed demo             a realistic demo data set (publishers, then campaigns)
 *   Writes take --if-match VERSION (optimistic concurrency).
 *
 *   adtrack up [options]    the whole pipeline locally, supervised (up.c, docs/UP.md); its
 *                           options are its own config table: adtrack up --help
 *
 * Prints the API's JSON on stdout. Exit status: 0 success, 1 the API refused (its error
 * and every field problem go to stderr), 2 usage, 3 the API could not be reached.
 * --api / --token also come from ADTRACK_API / ADTRACK_TOKEN, and the token from a file with
 * --token-file / ADTRACK_TOKEN_FILE (the config table; docs/SECURITY.md).
 */
#include <bson/bson.h>
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "at_conf.h"
#include "at_main.h"
#include "cli_http.h"
#include "reconcile.h"
#include "report.h"
#include "up.h"

typedef struct cli_conf_s {
    char *api;
    char *token;
    int64_t timeout_ms;
} cli_conf_t;

#define C(field) AT_OFF(cli_conf_t, field)

static const at_conf_opt_t cli_opts[] = {
    {"api", AT_CONF_STR, C(api), 1, 2048, "http://127.0.0.1:8090", "Base URL of the adtrack-coredata admin API."},
    {"token", AT_CONF_STR | AT_CONF_SECRET, C(token), 0, 512, "",
     "Bearer token (an --admin-token of the service for writes; a --read-token for reads)."},
    {"timeout-ms", AT_CONF_INT, C(timeout_ms), 100, 600000, "10000", "How long one API call may take."},
};

static const at_conf_table_t cli_table = {
    .program = "adtrack",
    .summary = "Command-line client of the adtrack core-data admin API.\n\nCommands:\n"
               "  campaign put FILE|-          create or replace (the file's \"id\" names it)\n"
               "  campaign get ID | delete ID | pause ID | resume ID\n"
               "  campaign list [--limit N] [--after ID] [--all]\n"
               "  campaign budget ID --topup MICROS | --set MICROS\n"
               "  publisher put FILE|- | get ID | delete ID | list [...]\n"
               "  seed demo                    load a realistic demo data set\n"
               "  up [options]                 run the whole pipeline locally, supervised (adtrack up --help)\n"
               "  report --from T --to T [...] a report from the hourly rollups (adtrack report --help)\n"
               "  rollups reconcile --from T --to T [--repair]  recount rollups from stored events\n"
               "Writes accept --if-match VERSION. Exit status: 0 ok, 1 refused by the API, 2 usage, 3 unreachable.",
    .opts = cli_opts,
    .nopts = AT_ARRAY_LEN(cli_opts),
};

extern char **environ;

typedef struct args_s {
    const char *pos[8];
    int npos;
    const char *topup, *set, *limit, *after, *if_match;
    bool all;
} args_t;

static cli_conf_t conf;

static int usage(const char *msg)
{
    fprintf(stderr, "adtrack: %s (see adtrack --help)\n", msg);
    return 2;
}

/* Prints the API's error body readably on stderr. */
static void print_error(const cli_resp_t *r)
{
    bson_t *b = r->body ? bson_new_from_json((const uint8_t *)r->body, (ssize_t)r->body_len, NULL) : NULL;
    bson_iter_t it, arr;
    if (b == NULL) {
        fprintf(stderr, "adtrack: HTTP %d: %s\n", r->status, r->body ? r->body : "");
        return;
    }
    if (bson_iter_init_find(&it, b, "error") && BSON_ITER_HOLDS_UTF8(&it))
        fprintf(stderr, "adtrack: HTTP %d: %s\n", r->status, bson_iter_utf8(&it, NULL));
    else
        fprintf(stderr, "adtrack: HTTP %d\n", r->status);
    if (bson_iter_init_find(&it, b, "errors") && BSON_ITER_HOLDS_ARRAY(&it) && bson_iter_recurse(&it, &arr)) {
        while (bson_iter_next(&arr)) {
            bson_iter_t e, f;
            const char *field = "?", *exp = "?";
            if (!BSON_ITER_HOLDS_DOCUMENT(&arr) || !bson_iter_recurse(&arr, &e))
                continue;
            if (bson_iter_find(&e, "field") && BSON_ITER_HOLDS_UTF8(&e))
                field = bson_iter_utf8(&e, NULL);
            bson_iter_recurse(&arr, &f);
            if (bson_iter_find(&f, "expected") && BSON_ITER_HOLDS_UTF8(&f))
                exp = bson_iter_utf8(&f, NULL);
            fprintf(stderr, "  %s: expected %s\n", field, exp);
        }
    }
    bson_destroy(b);
}

/* One call; prints the answer (stdout on 2xx, stderr otherwise). Returns the exit status. */
static int call(const char *method, const char *path, const char *body, const char *if_match, bool print,
                cli_resp_t *keep)
{
    cli_resp_t r;
    at_err_t err = {0};
    char hdr[64];
    if (if_match != NULL)
        snprintf(hdr, sizeof(hdr), "If-Match: \"%s\"", if_match);
    if (cli_http(conf.api, method, path, conf.token[0] ? conf.token : NULL, if_match ? hdr : NULL, body,
                 body ? strlen(body) : 0, (int)conf.timeout_ms, &r, &err) != 0) {
        fprintf(stderr, "adtrack: %s %s: %s\n", method, path, err.msg);
        return 3;
    }
    int rc = r.status >= 200 && r.status < 300 ? 0 : 1;
    if (rc == 0 && print)
        printf("%s\n", r.body);
    else if (rc != 0)
        print_error(&r);
    if (keep != NULL)
        *keep = r;
    else
        cli_resp_free(&r);
    return rc;
}

static char *read_input(const char *file)
{
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
    if (f == NULL) {
        fprintf(stderr, "adtrack: %s: %s\n", file, strerror(errno));
        return NULL;
    }
    size_t cap = 8192, len = 0;
    char *buf = malloc(cap);
    size_t n;
    while ((n = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += n;
        if (len + 1 >= cap)
            buf = realloc(buf, cap *= 2);
    }
    buf[len] = '\0';
    if (f != stdin)
        fclose(f);
    return buf;
}

static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == ':' || c == '-'))
            return false;
    }
    return true;
}

static int cmd_put(const char *plural, const char *file, const char *if_match)
{
    char *text = read_input(file);
    if (text == NULL)
        return 2;
    bson_error_t berr;
    bson_t *doc = bson_new_from_json((const uint8_t *)text, -1, &berr);
    if (doc == NULL) {
        fprintf(stderr, "adtrack: %s: not valid JSON: %s\n", file, berr.message);
        free(text);
        return 2;
    }
    bson_iter_t it;
    char id[80] = "";
    if (bson_iter_init_find(&it, doc, "id") && BSON_ITER_HOLDS_UTF8(&it))
        snprintf(id, sizeof(id), "%s", bson_iter_utf8(&it, NULL));
    bson_destroy(doc);
    if (!id_ok(id)) {
        free(text);
        return usage("put: the document needs an \"id\" of 1 to 64 characters from A-Z a-z 0-9 . _ : -");
    }
    char path[128];
    snprintf(path, sizeof(path), "/v1/%s/%s", plural, id);
    int rc = call("PUT", path, text, if_match, true, NULL);
    free(text);
    return rc;
}

static int cmd_list(const char *plural, const args_t *a)
{
    char after[80] = "";
    if (a->after)
        snprintf(after, sizeof(after), "%s", a->after);
    for (;;) {
        char path[256];
        snprintf(path, sizeof(path), "/v1/%s?limit=%s%s%s", plural, a->limit ? a->limit : "100",
                 after[0] ? "&after=" : "", after);
        cli_resp_t r;
        int rc = call("GET", path, NULL, NULL, true, &r);
        if (rc != 0)
            return rc;
        bson_t *b = bson_new_from_json((const uint8_t *)r.body, (ssize_t)r.body_len, NULL);
        bson_iter_t it;
        after[0] = '\0';
        if (b != NULL && bson_iter_init_find(&it, b, "next") && BSON_ITER_HOLDS_UTF8(&it))
            snprintf(after, sizeof(after), "%s", bson_iter_utf8(&it, NULL));
        if (b)
            bson_destroy(b);
        cli_resp_free(&r);
        if (!a->all || after[0] == '\0')
            return 0;
    }
}

static bool digits(const char *s)
{
    if (s == NULL || *s == '\0' || strlen(s) > 19)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

static int cmd_entity(const char *plural, bool campaign, const args_t *a)
{
    const char *verb = a->npos > 1 ? a->pos[1] : NULL;
    const char *arg = a->npos > 2 ? a->pos[2] : NULL;
    char path[160];
    if (verb == NULL)
        return usage("expected put, get, list or delete");
    if (strcmp(verb, "list") == 0)
        return cmd_list(plural, a);
    if (arg == NULL)
        return usage("expected an id (or a file for put)");
    if (strcmp(verb, "put") == 0)
        return cmd_put(plural, arg, a->if_match);
    if (!id_ok(arg))
        return usage("expected an id of 1 to 64 characters from A-Z a-z 0-9 . _ : -");
    snprintf(path, sizeof(path), "/v1/%s/%s", plural, arg);
    if (strcmp(verb, "get") == 0)
        return call("GET", path, NULL, NULL, true, NULL);
    if (strcmp(verb, "delete") == 0)
        return call("DELETE", path, NULL, a->if_match, true, NULL);
    if (campaign && (strcmp(verb, "pause") == 0 || strcmp(verb, "resume") == 0)) {
        char sub[200];
        snprintf(sub, sizeof(sub), "%s/%s", path, verb);
        return call("POST", sub, NULL, a->if_match, true, NULL);
    }
    if (campaign && strcmp(verb, "budget") == 0) {
        if ((a->topup == NULL) == (a->set == NULL))
            return usage("budget: expected exactly one of --topup MICROS or --set MICROS");
        const char *v = a->topup ? a->topup : a->set;
        if (!digits(v))
            return usage("budget: expected a non-negative integer amount of micros");
        char body[96], sub[200];
        snprintf(body, sizeof(body), "{\"%s\":%s}", a->topup ? "topup_micros" : "set_micros", v);
        snprintf(sub, sizeof(sub), "%s/budget", path);
        return call("POST", sub, body, a->if_match, true, NULL);
    }
    return usage(campaign ? "expected put, get, list, delete, pause, resume or budget"
                          : "expected put, get, list or delete");
}

/* ---- seed demo ---- */

static void iso_time(time_t t, char *out, size_t size)
{
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int cmd_seed_demo(void)
{
    static const struct {
        const char *id, *name, *domain, *status;
    } pubs[] = {
        {"pub-dailynews", "Daily News", "dailynews.example", "active"},
        {"pub-sportsnow", "Sports Now", "sportsnow.example", "active"},
        {"pub-techradar", "Tech Radar Weekly", "techradar.example", "active"},
        {"pub-homecooking", "Home Cooking", "homecooking.example", "active"},
        {"pub-travelblog", "Wanderlust Travel Blog", "wanderlust.example", "active"},
        {"pub-clickfarm", "Totally Real Traffic", "clickfarm.example", "blocked"},
    };
    /* Flight dates relative to now: running, starting soon, just ended, paused. */
    static const struct {
        const char *id, *adv, *adv_name, *name, *status;
        int start_days, end_days;
        long long budget, price;
        const char *pricing, *pubs, *dest;
    } camps[] = {
        {"camp-acme-spring", "adv-acme", "Acme Shoes", "Spring running shoes", "active", -7, 30, 5000000000LL, 2500000,
         "cpm", "\"pub-dailynews\",\"pub-sportsnow\"", "\"https://acme.example/spring\""},
        {"camp-acme-retarget", "adv-acme", "Acme Shoes", "Cart abandoners retargeting", "active", -14, 60, 1500000000LL,
         400000, "cpc", "", "\"https://acme.example/cart\",\"https://acme.example/sale\""},
        {"camp-globex-summer", "adv-globex", "Globex Travel", "Summer city breaks", "active", 3, 45, 12000000000LL,
         4000000, "cpm", "\"pub-travelblog\",\"pub-dailynews\"", "\"https://globex.example/summer\""},
        {"camp-initech-launch", "adv-initech", "Initech Software", "TPS Reports 2.0 launch", "active", -40, -1,
         800000000LL, 1250000, "cpc", "\"pub-techradar\"", "\"https://initech.example/launch\""},
        {"camp-umbrella-wellness", "adv-umbrella", "Umbrella Health", "Wellness month", "paused", -2, 28, 3000000000LL,
         1800000, "cpm", "\"pub-homecooking\",\"pub-dailynews\"", "\"https://umbrella.example/wellness\""},
    };
    time_t now = time(NULL);
    int rc = 0;
    printf("{\"publishers\":[");
    for (size_t i = 0; i < AT_ARRAY_LEN(pubs); i++) {
        char body[512], path[128];
        snprintf(body, sizeof(body), "{\"name\":\"%s\",\"domain\":\"%s\",\"status\":\"%s\"}", pubs[i].name,
                 pubs[i].domain, pubs[i].status);
        snprintf(path, sizeof(path), "/v1/publishers/%s", pubs[i].id);
        int r = call("PUT", path, body, NULL, false, NULL);
        printf("%s{\"id\":\"%s\",\"ok\":%s}", i ? "," : "", pubs[i].id, r == 0 ? "true" : "false");
        if (r != 0)
            rc = r;
    }
    printf("],\"campaigns\":[");
    for (size_t i = 0; i < AT_ARRAY_LEN(camps); i++) {
        char body[1024], path[128], start[32], end[32];
        iso_time(now + (time_t)camps[i].start_days * 86400, start, sizeof(start));
        iso_time(now + (time_t)camps[i].end_days * 86400, end, sizeof(end));
        snprintf(body, sizeof(body),
                 "{\"advertiser\":\"%s\",\"advertiser_name\":\"%s\",\"name\":\"%s\",\"status\":\"%s\","
                 "\"start\":\"%s\",\"end\":\"%s\",\"budget_micros\":%lld,\"pricing\":\"%s\",\"price_micros\":%lld,"
                 "\"publishers\":[%s],\"destinations\":[%s]}",
                 camps[i].adv, camps[i].adv_name, camps[i].name, camps[i].status, start, end, camps[i].budget,
                 camps[i].pricing, camps[i].price, camps[i].pubs, camps[i].dest);
        snprintf(path, sizeof(path), "/v1/campaigns/%s", camps[i].id);
        int r = call("PUT", path, body, NULL, false, NULL);
        printf("%s{\"id\":\"%s\",\"ok\":%s}", i ? "," : "", camps[i].id, r == 0 ? "true" : "false");
        if (r != 0)
            rc = r;
    }
    printf("]}\n");
    return rc;
}

/* ---- argument handling ---- */

static bool is_conf_opt(const char *name, size_t len)
{
    for (size_t i = 0; i < cli_table.nopts; i++) {
        size_t n = strlen(cli_opts[i].name);
        if (n == len && memcmp(cli_opts[i].name, name, len) == 0)
            return true;
        /* --token-file: the file variant of a secret option (at_conf.h) */
        if (AT_CONF_HAS_FILE(&cli_opts[i]) && len == n + 5 && memcmp(cli_opts[i].name, name, n) == 0 &&
            memcmp(name + n, "-file", 5) == 0)
            return true;
    }
    return len == 4 && memcmp(name, "help", 4) == 0;
}

int main(int argc, char **argv)
{
    /* `up` has its own options (a config table of its own), so it takes the rest of argv. */
    if (argc >= 2 && strcmp(argv[1], "up") == 0)
        return up_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "rollups") == 0)
        return rollups_main(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "report") == 0)
        return report_main(argc - 1, argv + 1);
    args_t a = {0};
    char **cargv = calloc((size_t)argc + 1, sizeof(char *));
    int cargc = 0;
    cargv[cargc++] = argv[0];
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        if (strncmp(s, "--", 2) != 0 || s[2] == '\0') {
            if (a.npos >= (int)AT_ARRAY_LEN(a.pos))
                return usage("too many arguments");
            a.pos[a.npos++] = s;
            continue;
        }
        const char *name = s + 2, *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        if (is_conf_opt(name, nlen)) {
            cargv[cargc++] = argv[i];
            if (eq == NULL && strcmp(name, "help") != 0 && i + 1 < argc)
                cargv[cargc++] = argv[++i];
            continue;
        }
        const char **slot = NULL;
        if (nlen == 5 && memcmp(name, "topup", 5) == 0)
            slot = &a.topup;
        else if (nlen == 3 && memcmp(name, "set", 3) == 0)
            slot = &a.set;
        else if (nlen == 5 && memcmp(name, "limit", 5) == 0)
            slot = &a.limit;
        else if (nlen == 5 && memcmp(name, "after", 5) == 0)
            slot = &a.after;
        else if (nlen == 8 && memcmp(name, "if-match", 8) == 0)
            slot = &a.if_match;
        else if (nlen == 3 && memcmp(name, "all", 3) == 0) {
            a.all = true;
            continue;
        } else {
            fprintf(stderr, "adtrack: unknown option --%.*s (see adtrack --help)\n", (int)nlen, name);
            return 2;
        }
        if (eq != NULL)
            *slot = eq + 1;
        else if (i + 1 < argc)
            *slot = argv[++i];
        else
            return usage("option needs a value");
    }
    at_err_t err = {0};
    int rc = at_conf_load(&cli_table, &conf, cargc, cargv, environ, stdout, &err);
    if (rc == 0)
        at_main_secrets(&cli_table, &conf, cargc, cargv);
    free(cargv);
    if (rc == AT_CONF_EXIT_HELP)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "adtrack: %s\n", err.msg);
        return 2;
    }
    if (a.limit != NULL && !digits(a.limit))
        rc = usage("--limit: expected an integer from 1 to 1000");
    else if (a.after != NULL && !id_ok(a.after))
        rc = usage("--after: expected an id");
    else if (a.if_match != NULL && !digits(a.if_match))
        rc = usage("--if-match: expected a version number");
    else if (a.npos == 0)
        rc = usage("expected a command: campaign, publisher or seed");
    else if (strcmp(a.pos[0], "campaign") == 0)
        rc = cmd_entity("campaigns", true, &a);
    else if (strcmp(a.pos[0], "publisher") == 0)
        rc = cmd_entity("publishers", false, &a);
    else if (strcmp(a.pos[0], "seed") == 0 && a.npos == 2 && strcmp(a.pos[1], "demo") == 0)
        rc = cmd_seed_demo();
    else
        rc = usage("expected a command: campaign, publisher, seed demo or up");
    at_conf_free(&cli_table, &conf);
    return rc;
}
