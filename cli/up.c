/*
 * up.c: `adtrack up` (docs/UP.md).
 *
 * Starts, in order and each only once the previous one is ready: redis-server, the
 * devstream, coredata (then `adtrack seed demo` when its store is empty), the enrichers, the
 * dashboard when it was built, and the collector. Every part runs as a supervised child
 * (sup.h): restarted with backoff when it dies, stopped in order on SIGINT/SIGTERM,
 * collector first so everything it answered for is in Kafka (or its spool) before anything
 * downstream goes away. --brokers, --redis and --mongo swap an embedded part for a server
 * that already runs; --kafka real and --store ferretdb (--real: both) start real servers
 * instead of devstream and the file sinks, through the project's scripts/kafka.sh and
 * scripts/ferretdb.sh (docs/REAL-INFRA.md), and stop them again on shutdown.
 *
 * One thread. SIGINT, SIGTERM and SIGCHLD are blocked and taken with sigtimedwait(), so
 * every wait (readiness polls, the main loop, shutdown) also handles exits and signals.
 */
#include "up.h"

#include <bson/bson.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "at_conf.h"
#include "at_fs.h"
#include "at_hmac.h"
#include "at_log.h"
#include "at_main.h"
#include "at_secret.h"
#include "cli_http.h"
#include "sup.h"

#define UP_MAX_ENRICHERS 16

typedef struct up_conf_s {
    char *data_dir;
    int64_t enrichers;
    char *listen;
    char *admin_listen;
    char *dashboard_listen;
    char *brokers;
    char *redis;
    char *mongo;
    int64_t partitions;
    char *redis_server;
    at_conf_list_t collector_arg;
    at_conf_list_t enricher_arg;
    at_conf_list_t coredata_arg;
    at_conf_list_t dashboard_arg;
    int64_t ready_timeout_ms;
    char *log_level;
    char *kafka;       /* "devstream" or "real" */
    int64_t kafka_nodes;
    char *store;       /* "files" or "ferretdb" */
    bool real;         /* --kafka real --store ferretdb */
    char *infra_dir;   /* "": <data-dir>/infra */
    char *scripts_dir; /* "": found next to the binaries */
} up_conf_t;

#define U(field) AT_OFF(up_conf_t, field)

static const at_conf_opt_t up_opts[] = {
    {"data-dir", AT_CONF_STR, U(data_dir), 1, 3800, "data",
     "Directory of everything the run keeps: logs/, the Redis AOF, coredata's store, the enrichers' file sinks, the "
     "collector's spool, the admin and dashboard tokens and the click key. Created when missing."},
    {"enrichers", AT_CONF_INT, U(enrichers), 1, UP_MAX_ENRICHERS, "1",
     "Enricher processes (one consumer group; more than --partitions leaves some idle)."},
    {"listen", AT_CONF_STR, U(listen), 1, 256, "127.0.0.1:8080",
     "The collector's address (pixels, clicks, beacons, tracker.js, demo page), HOST:PORT; port 0 picks a free one."},
    {"admin-listen", AT_CONF_STR, U(admin_listen), 1, 256, "127.0.0.1:8090",
     "The core-data admin API's address, HOST:PORT; port 0 picks a free one."},
    {"dashboard-listen", AT_CONF_STR, U(dashboard_listen), 1, 256, "127.0.0.1:8091",
     "The live dashboard's address (when adtrack-dashboard was built), HOST:PORT; port 0 picks a free one."},
    {"brokers", AT_CONF_STR, U(brokers), 0, 4096, "",
     "Kafka bootstrap servers of a real cluster; empty: start adtrack-devstream (in memory, development only)."},
    {"redis", AT_CONF_STR | AT_CONF_CREDS, U(redis), 0, 1024, "",
     "A running Redis, HOST:PORT or redis://[USER[:PASSWORD]@]HOST[:PORT][/DB]; empty: start redis-server on a free "
     "port with its data in the data directory."},
    {"mongo", AT_CONF_STR | AT_CONF_CREDS, U(mongo), 0, 4096, "",
     "MongoDB URI for coredata's store and the enrichers' sink; empty: the file store and file sinks in the data "
     "directory."},
    {"partitions", AT_CONF_INT, U(partitions), 1, 256, "4", "Partitions of each topic of the devstream."},
    {"redis-server", AT_CONF_STR, U(redis_server), 1, 4096, "redis-server",
     "The redis-server program (a path, or a name looked up in PATH)."},
    {"collector-arg", AT_CONF_LIST, U(collector_arg), 0, 64, "",
     "One more option for the collector, as --collector-arg=--flag=value (repeatable)."},
    {"enricher-arg", AT_CONF_LIST, U(enricher_arg), 0, 64, "",
     "One more option for every enricher, as --enricher-arg=--flag=value (repeatable)."},
    {"coredata-arg", AT_CONF_LIST, U(coredata_arg), 0, 64, "",
     "One more option for coredata, as --coredata-arg=--flag=value (repeatable)."},
    {"dashboard-arg", AT_CONF_LIST, U(dashboard_arg), 0, 64, "",
     "One more option for the dashboard, as --dashboard-arg=--flag=value (repeatable)."},
    {"ready-timeout-ms", AT_CONF_INT, U(ready_timeout_ms), 1000, 600000, "30000",
     "How long each part may take to become ready at start-up before adtrack up gives up."},
    {"log-level", AT_CONF_STR, U(log_level), 1, 8, "info",
     "debug, info, warn or error: for adtrack up's own log (stderr) and every adtrack child."},
    {"kafka", AT_CONF_STR, U(kafka), 1, 16, "devstream",
     "The Kafka to start when --brokers is empty: devstream (adtrack-devstream: in memory, development only, starts in "
     "a second) or real (Apache Kafka in KRaft mode from scripts/kafka.sh, installed once with scripts/kafka.sh "
     "install; data kept in --infra-dir)."},
    {"kafka-nodes", AT_CONF_INT, U(kafka_nodes), 1, 3, "1",
     "Nodes of the --kafka real cluster: 1, or 3 (replication factor 3, min.insync.replicas 2)."},
    {"store", AT_CONF_STR, U(store), 1, 16, "files",
     "Where events and core data go when --mongo is empty: files (the file store and file sinks in the data "
     "directory) or ferretdb (FerretDB, a MongoDB wire-protocol server, from scripts/ferretdb.sh, installed once with "
     "scripts/ferretdb.sh install; data kept in --infra-dir)."},
    {"real", AT_CONF_BOOL, U(real), 0, 0, "false",
     "Real servers: the same as --kafka real --store ferretdb. Also accepted bare: adtrack up --real."},
    {"infra-dir", AT_CONF_STR, U(infra_dir), 0, 3800, "",
     "Where --kafka real and --store ferretdb keep their data and logs (kafka/, ferretdb/); empty: <data-dir>/infra. "
     "Kept between runs, like the rest of the data directory."},
    {"scripts-dir", AT_CONF_STR, U(scripts_dir), 0, 3800, "",
     "The scripts/ directory of an adtrack checkout (kafka.sh, ferretdb.sh) for --kafka real and --store ferretdb; "
     "empty: <bin-dir>/../../scripts (a build/bin in the checkout), else <bin-dir>/../scripts."},
};

static const at_conf_table_t up_table = {
    .program = "adtrack up",
    .summary =
        "Runs the whole pipeline locally on embedded defaults, supervised: redis-server, adtrack-devstream, "
        "adtrack-coredata (seeded with the demo data when its store is empty), --enrichers adtrack-enricher, "
        "adtrack-dashboard (when built) and adtrack-collector, each started once the previous one is ready. "
        "A child that dies is restarted with backoff (500 ms doubling to 30 s). SIGINT/SIGTERM stops them in order, "
        "collector first; a second signal kills what is left. --brokers, --redis and --mongo use servers that already "
        "run; --real (--kafka real, --store ferretdb) starts a real Apache Kafka cluster and FerretDB instead of "
        "adtrack-devstream and the file sinks, and stops them on shutdown. Children get no ADTRACK_* variables from "
        "this environment: pass their options with --*-arg. "
        "Binaries are taken from the directory of this program, or from $ADTRACK_BIN_DIR. See docs/UP.md.",
    .opts = up_opts,
    .nopts = AT_ARRAY_LEN(up_opts),
};

extern char **environ;

typedef struct up_s {
    up_conf_t conf;
    sup_t sup;
    char self[PATH_MAX]; /* this executable */
    char bin_dir[PATH_MAX];
    char dir[PATH_MAX]; /* absolute data directory */
    char brokers[4096]; /* current bootstrap list */
    char redis_addr[1100];
    char listen[300], admin_listen[300], dashboard_listen[300];
    char collector_url[320], admin_url[320], dashboard_url[320]; /* http://host:port to connect to */
    char enricher_listen[UP_MAX_ENRICHERS][64];
    char token[33];
    char dash_token[49];
    char read_token[49]; /* coredata --read-token: the dashboard's history and `adtrack report` */
    char click_key[65];
    int ctl_fd; /* devstream's stdin fifo, held read-write */
    int lock_fd;
    unsigned devstream_seen; /* devstream generation whose bootstraps are in brokers */
    bool with_redis, with_devstream, with_dashboard;
    bool with_kafka, with_ferretdb; /* real servers started through the scripts */
    char scripts[PATH_MAX];         /* absolute scripts/ directory (when either is used) */
    char infra[PATH_MAX];           /* absolute --infra-dir */
    bool demo_page;               /* the collector has --demo-page */
    bool dash_redis, dash_scrape, dash_reports; /* the dashboard's options */
    bool seeded;
    int signals; /* SIGINT/SIGTERM received */
    sup_child_t redis, devstream, coredata, seed, dashboard, collector;
    sup_child_t kafka, kafka_stop, ferretdb, ferretdb_stop; /* one-shot script runs */
    sup_child_t enricher[UP_MAX_ENRICHERS];
} up_t;

/* ---- small helpers ---- */

static void path_join(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= size) {
        fprintf(stderr, "adtrack up: path too long: %s/%s\n", dir, name);
        exit(1);
    }
}

static void random_hex(char *out, size_t bytes)
{
    uint8_t buf[64];
    size_t got = 0;
    while (got < bytes) {
        ssize_t n = getrandom(buf + got, bytes - got, 0);
        if (n < 0 && errno != EINTR) {
            perror("adtrack up: getrandom");
            exit(1);
        }
        if (n > 0)
            got += (size_t)n;
    }
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + 2 * i, 3, "%02x", buf[i]);
}

/* Writes @p text to @p path with mode 0600 (also when the file existed with another mode). */
static int write_secret(const char *path, const char *text)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    size_t len = strlen(text);
    int rc = fchmod(fd, 0600) == 0 && write(fd, text, len) == (ssize_t)len && write(fd, "\n", 1) == 1 ? 0 : -1;
    close(fd);
    return rc;
}

/* Reads the first line of @p path into @p out; 0 when it held a non-empty line. */
static int read_line(const char *path, char *out, size_t size)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return -1;
    int rc = -1;
    if (fgets(out, (int)size, f) != NULL) {
        size_t n = strcspn(out, "\r\n");
        bool complete = out[n] == '\n';
        out[n] = '\0';
        rc = complete && n > 0 ? 0 : -1;
    }
    fclose(f);
    return rc;
}

/* Splits HOST:PORT (IPv6 as [addr]:port) into a host to connect to (wildcards become
 * loopback) and a port. */
static int split_addr(const char *addr, char *host, size_t hsize, int *port)
{
    const char *colon = strrchr(addr, ':');
    if (colon == NULL)
        return -1;
    char *end;
    long p = strtol(colon + 1, &end, 10);
    if (*end != '\0' || p < 0 || p > 65535 || colon[1] == '\0')
        return -1;
    size_t hl = (size_t)(colon - addr);
    if (hl >= hsize)
        return -1;
    memcpy(host, addr, hl);
    host[hl] = '\0';
    if (hl == 0 || strcmp(host, "0.0.0.0") == 0 || strcmp(host, "*") == 0)
        snprintf(host, hsize, "127.0.0.1");
    else if (strcmp(host, "[::]") == 0)
        snprintf(host, hsize, "[::1]");
    *port = (int)p;
    return 0;
}

/* A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's pick). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &len) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Copies a listen address, replacing port 0 by a free port, and derives the http:// URL to
 * reach it. */
static int resolve_listen(const char *opt, const char *in, char *out, size_t osize, char *url, size_t usize)
{
    char host[280];
    int port;
    if (split_addr(in, host, sizeof(host), &port) != 0) {
        fprintf(stderr, "adtrack up: --%s: expected HOST:PORT, got '%s'\n", opt, in);
        return -1;
    }
    if (port == 0 && (port = free_port()) < 0) {
        fprintf(stderr, "adtrack up: --%s: no free port\n", opt);
        return -1;
    }
    const char *colon = strrchr(in, ':');
    snprintf(out, osize, "%.*s:%d", (int)(colon - in), in, port);
    snprintf(url, usize, "http://%s:%d", host, port);
    return 0;
}

/* Prints the last @p lines lines of a child's log to stderr. */
static void print_log_tail(const char *path, int lines)
{
    FILE *f = fopen(path, "re");
    if (f == NULL)
        return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f), from = size > 16384 ? size - 16384 : 0;
    fseek(f, from, SEEK_SET);
    char buf[16385];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = buf + n;
    int seen = 0;
    while (p > buf && seen <= lines)
        if (*--p == '\n' && p + 1 < buf + n)
            seen++;
    fprintf(stderr, "---- last lines of %s ----\n%s%s----\n", path, p == buf ? p : p + 1,
            n > 0 && buf[n - 1] != '\n' ? "\n" : "");
}

/* Runs `@p prog --help` and tells whether its output mentions option @p flag. */
static bool help_has(const char *prog, const char *flag)
{
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return false;
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(fds[1], 1);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 2);
        }
        char *argv[] = {(char *)prog, "--help", NULL};
        execv(prog, argv);
        _exit(127);
    }
    close(fds[1]);
    char buf[65536];
    size_t len = 0;
    ssize_t n;
    while (pid > 0 && len < sizeof(buf) - 1 && (n = read(fds[0], buf + len, sizeof(buf) - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
    }
    close(fds[0]);
    buf[len] = '\0';
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
    char want[80];
    snprintf(want, sizeof(want), "%s ", flag);
    return pid > 0 && strstr(buf, want) != NULL;
}

/* ---- argv building ---- */

typedef struct strv_s {
    char *v[160]; /* heap strings, NULL after the last */
    size_t n;
} strv_t;

/* Appends a copy of @p s (freed by strv_free). */
static void sv_add(strv_t *sv, const char *s)
{
    if (sv->n + 1 >= AT_ARRAY_LEN(sv->v)) {
        fprintf(stderr, "adtrack up: too many arguments\n");
        exit(1);
    }
    sv->v[sv->n++] = strdup(s);
    sv->v[sv->n] = NULL;
}

static void sv_addf(strv_t *sv, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sv_addf(strv_t *sv, const char *fmt, ...)
{
    char buf[8192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    sv_add(sv, buf);
}

static void sv_add_list(strv_t *sv, const at_conf_list_t *l)
{
    for (size_t i = 0; i < l->count; i++)
        sv_add(sv, l->items[i]);
}

static void sv_free(strv_t *sv)
{
    for (size_t i = 0; i < sv->n; i++)
        free(sv->v[i]);
    sv->n = 0;
}

/* Hands the vectors to @p c (copied) and frees ours. */
static void sv_apply(sup_child_t *c, strv_t *argv, strv_t *env)
{
    argv->v[argv->n] = NULL;
    env->v[env->n] = NULL;
    sup_child_set_argv(c, argv->v, env->v);
    sv_free(argv);
    sv_free(env);
}

static void sv_bin(const up_t *up, strv_t *sv, const char *name)
{
    sv_addf(sv, "%s/%s", up->bin_dir, name);
}

/* Each child's prepare callback builds its command line from the current state, so a
 * restart after the devstream came back on other ports gets the new bootstrap list. */

static int prep_redis(sup_child_t *c, void *opaque, at_err_t *err)
{
    up_t *up = opaque;
    AT_UNUSED(err);
    strv_t a = {0}, e = {0};
    char host[280];
    int port;
    split_addr(up->redis_addr, host, sizeof(host), &port);
    char dir[PATH_MAX];
    path_join(dir, sizeof(dir), up->dir, "redis");
    sv_add(&a, up->conf.redis_server);
    sv_add(&a, "--port");
    sv_addf(&a, "%d", port);
    sv_add(&a, "--bind");
    sv_add(&a, "127.0.0.1");
    sv_add(&a, "--dir");
    sv_add(&a, dir);
    /* Persistence: append-only file, fsynced every second, no RDB snapshots. Spend, the
     * per-event charge records and the dashboard's counters then survive a restart of
     * redis-server or of adtrack up; the AOF lives in <data-dir>/redis/appendonlydir. */
    sv_add(&a, "--save");
    sv_add(&a, "");
    sv_add(&a, "--appendonly");
    sv_add(&a, "yes");
    sv_add(&a, "--appendfsync");
    sv_add(&a, "everysec");
    sv_add(&a, "--daemonize");
    sv_add(&a, "no");
    sv_apply(c, &a, &e);
    return 0;
}

static int prep_devstream(sup_child_t *c, void *opaque, at_err_t *err)
{
    up_t *up = opaque;
    AT_UNUSED(err);
    strv_t a = {0}, e = {0};
    sv_bin(up, &a, "adtrack-devstream");
    sv_addf(&a, "--partitions=%lld", (long long)up->conf.partitions);
    sv_addf(&a, "--log-level=%s", up->conf.log_level);
    sv_apply(c, &a, &e);
    return 0;
}

static int prep_coredata(sup_child_t *c, void *opaque, at_err_t *err)
{
    up_t *up = opaque;
    AT_UNUSED(err);
    strv_t a = {0}, e = {0};
    sv_bin(up, &a, "adtrack-coredata");
    sv_addf(&a, "--listen=%s", up->admin_listen);
    /* The URIs go through the environment too: they may hold passwords. */
    if (up->conf.mongo[0] != '\0') {
        sv_addf(&e, "ADTRACK_MONGO=%s", up->conf.mongo);
    } else {
        sv_addf(&a, "--data-dir=%s/coredata", up->dir);
        /* GET /v1/reports reads the enrichers' hourly rollup files (their file sinks' directories,
         * see prep_enricher); with --mongo it reads adtrack.stats_hourly instead. */
        for (int64_t i = 0; i < up->conf.enrichers; i++)
            sv_addf(&a, "--stats-dir=%s/sink/enricher-%lld", up->dir, (long long)i + 1);
    }
    sv_addf(&e, "ADTRACK_REDIS=%s", up->redis_addr);
    sv_addf(&a, "--brokers=%s", up->brokers);
    sv_addf(&a, "--log-level=%s", up->conf.log_level);
    sv_add_list(&a, &up->conf.coredata_arg);
    /* The token goes through the environment: a command line is readable by every user. */
    sv_addf(&e, "ADTRACK_ADMIN_TOKEN=%s", up->token);
    sv_addf(&e, "ADTRACK_READ_TOKEN=%s", up->read_token);
    sv_apply(c, &a, &e);
    return 0;
}

static int prep_seed(sup_child_t *c, void *opaque, at_err_t *err)
{
    up_t *up = opaque;
    AT_UNUSED(err);
    strv_t a = {0}, e = {0};
    sv_add(&a, up->self);
    sv_add(&a, "seed");
    sv_add(&a, "demo");
    sv_addf(&e, "ADTRACK_API=%s", up->admin_url);
    sv_addf(&e, "ADTRACK_TOKEN=%s", up->token);
    sv_apply(c, &a, &e);
    return 0;
}

static int prep_enricher(sup_child_t *c, void *opaque, at_err_t *err)
{
    up_t *up = opaque;
    AT_UNUSED(err);
    size_t i = (size_t)(c - up->enricher);
    strv_t a = {0}, e = {0};
    sv_bin(up, &a, "adtrack-enricher");
    sv_addf(&a, "--brokers=%s", up->brokers);
    sv_addf(&e, "ADTRACK_REDIS=%s", up->redis_addr);
    sv_addf(&a, "--listen=%s", up->enricher_listen[i]);
    /* One sink directory per enricher: the file sink's duplicate window is per directory
     * (docs/ENRICHER.md, "Several enrichers"). */
    if (up->conf.mongo[0] != '\0')
        sv_addf(&e, "ADTRACK_MONGO=%s", up->conf.mongo);
    else
        sv_addf(&a, "--data-dir=%s/sink/%s", up->dir, c->name);
    sv_addf(&a, "--log-level=%s", up->conf.log_level);
    sv_add_list(&a, &up->conf.enricher_arg);
    sv_apply(c, &a, &e);
    return 0;
}

static int prep_dashboard(sup_child_t *c, void *opaque, at_err_t *err)
{
    up_t *up = opaque;
    AT_UNUSED(err);
    strv_t a = {0}, e = {0};
    sv_bin(up, &a, "adtrack-dashboard");
    sv_addf(&a, "--listen=%s", up->dashboard_listen);
    if (up->dash_redis)
        sv_addf(&e, "ADTRACK_REDIS=%s", up->redis_addr);
    /* The page shows every campaign's spend: the dashboard asks for this token (printed as
     * the path of dashboard.token, never as the value). */
    sv_addf(&e, "ADTRACK_AUTH_TOKEN=%s", up->dash_token);
    if (up->dash_scrape) {
        sv_addf(&a, "--scrape=collector=%s/metrics", up->collector_url);
        for (int64_t i = 0; i < up->conf.enrichers; i++)
            sv_addf(&a, "--scrape=%s=http://%s/metrics", up->enricher[i].name, up->enricher_listen[i]);
    }
    if (up->dash_reports) {
        /* history charts: coredata's GET /v1/reports with the read token (never the admin one) */
        sv_addf(&a, "--reports=%s", up->admin_url);
        sv_addf(&e, "ADTRACK_REPORTS_TOKEN=%s", up->read_token);
    }
    sv_addf(&a, "--log-level=%s", up->conf.log_level);
    sv_add_list(&a, &up->conf.dashboard_arg);
    sv_apply(c, &a, &e);
    return 0;
}

static int prep_collector(sup_child_t *c, void *opaque, at_err_t *err)
{
    up_t *up = opaque;
    AT_UNUSED(err);
    strv_t a = {0}, e = {0};
    sv_bin(up, &a, "adtrack-collector");
    sv_addf(&a, "--listen=%s", up->listen);
    sv_addf(&a, "--brokers=%s", up->brokers);
    sv_addf(&a, "--spool-dir=%s/spool", up->dir);
    if (up->demo_page)
        sv_add(&a, "--demo-page=true");
    sv_addf(&a, "--log-level=%s", up->conf.log_level);
    sv_add_list(&a, &up->conf.collector_arg);
    sv_addf(&e, "ADTRACK_CLICK_KEY=%s", up->click_key);
    sv_apply(c, &a, &e);
    return 0;
}

/* ---- real servers: scripts/kafka.sh and scripts/ferretdb.sh ---- */

/* How long a script may take: a 3-node cluster starts in 15-25 s on a busy 2-core box, its
 * controlled shutdown is cut short by --timeout (docs/REAL-INFRA.md). */
#define UP_KAFKA_START_S 180
#define UP_KAFKA_STOP_S 20
#define UP_SCRIPT_SLACK_MS 30000

/* Children lose every ADTRACK_* variable (sup.h); the scripts' own settings pass through. */
static void sv_script_env(strv_t *e)
{
    static const char *const pass[] = {"ADTRACK_CACHE_DIR", "ADTRACK_KAFKA_HEAP", "ADTRACK_KAFKA_JAVA_OPTS",
                                       "ADTRACK_FERRETDB_LOG_LEVEL"};
    for (size_t i = 0; i < AT_ARRAY_LEN(pass); i++) {
        const char *v = getenv(pass[i]);
        if (v != NULL)
            sv_addf(e, "%s=%s", pass[i], v);
    }
}

/* `bash <scripts>/<script> <cmd> --dir <infra>/<sub>`, then the command's own options. */
static void sv_script(const up_t *up, strv_t *a, const char *script, const char *cmd, const char *sub)
{
    sv_add(a, "bash");
    sv_addf(a, "%s/%s", up->scripts, script);
    sv_add(a, cmd);
    sv_add(a, "--dir");
    sv_addf(a, "%s/%s", up->infra, sub);
}

static int prep_kafka(sup_child_t *c, void *opaque, at_err_t *err)
{
    up_t *up = opaque;
    AT_UNUSED(err);
    strv_t a = {0}, e = {0};
    sv_script(up, &a, "kafka.sh", "start", "kafka");
    sv_add(&a, "--nodes");
    sv_addf(&a, "%lld", (long long)up->conf.kafka_nodes);
    sv_add(&a, "--timeout");
    sv_addf(&a, "%d", UP_KAFKA_START_S);
    /* The script's watchdog SIGKILLs the brokers once adtrack up is gone, even by SIGKILL:
     * they are not our children (setsid), so PR_SET_PDEATHSIG cannot reach them. */
    sv_add(&a, "--owner-pid");
    sv_addf(&a, "%d", (int)getpid());
    sv_script_env(&e);
    sv_apply(c, &a, &e);
    return 0;
}

static int prep_kafka_stop(sup_child_t *c, void *opaque, at_err_t *err)
{
    up_t *up = opaque;
    AT_UNUSED(err);
    strv_t a = {0}, e = {0};
    sv_script(up, &a, "kafka.sh", "stop", "kafka");
    sv_add(&a, "--timeout");
    sv_addf(&a, "%d", UP_KAFKA_STOP_S);
    sv_script_env(&e);
    sv_apply(c, &a, &e);
    return 0;
}

static int prep_ferretdb(sup_child_t *c, void *opaque, at_err_t *err)
{
    up_t *up = opaque;
    AT_UNUSED(err);
    strv_t a = {0}, e = {0};
    sv_script(up, &a, "ferretdb.sh", "start", "ferretdb");
    sv_add(&a, "--owner-pid");
    sv_addf(&a, "%d", (int)getpid());
    sv_script_env(&e);
    sv_apply(c, &a, &e);
    return 0;
}

static int prep_ferretdb_stop(sup_child_t *c, void *opaque, at_err_t *err)
{
    up_t *up = opaque;
    AT_UNUSED(err);
    strv_t a = {0}, e = {0};
    sv_script(up, &a, "ferretdb.sh", "stop", "ferretdb");
    sv_script_env(&e);
    sv_apply(c, &a, &e);
    return 0;
}

/* ---- the loop ---- */

static sigset_t up_sigs;

static void devstream_check(up_t *up);

/* Waits up to @p ms (less when the supervisor has something due) for a signal, handling
 * child exits and SIGINT/SIGTERM, then runs the supervisor's timers. */
static void up_wait(up_t *up, int64_t ms)
{
    int64_t due = sup_next_due_ms(&up->sup);
    if (due >= 0 && due < ms)
        ms = due;
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000};
    siginfo_t info;
    int sig = sigtimedwait(&up_sigs, &info, &ts);
    if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP) {
        up->signals++;
        at_log(AT_LOG_INFO, "up", up->signals == 1 ? "signal: stopping" : "second signal: killing what is left",
               "signal", sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : "SIGHUP", NULL);
        if (up->signals > 1)
            for (size_t i = 0; i < up->sup.n; i++)
                if (up->sup.children[i]->state == SUP_STOPPING)
                    up->sup.children[i]->due_ms = 0;
    }
    sup_reap(&up->sup);
    sup_tick(&up->sup);
    devstream_check(up);
}

/* After the devstream (re)started, reads its bootstrap list; when it moved (a restarted
 * devstream listens on new ports and holds nothing), restarts everything that talks to
 * Kafka so it reconnects there. The collector's spool keeps what it could not deliver. */
static void devstream_check(up_t *up)
{
    if (!up->with_devstream || up->devstream.starts == up->devstream_seen || up->devstream.state != SUP_RUNNING)
        return;
    char line[4096];
    if (read_line(up->devstream.out_path, line, sizeof(line)) != 0)
        return;
    up->devstream_seen = up->devstream.starts;
    if (strcmp(line, up->brokers) == 0)
        return;
    bool first = up->brokers[0] == '\0';
    snprintf(up->brokers, sizeof(up->brokers), "%s", line);
    at_log(AT_LOG_INFO, "up", "devstream bootstrap list", "brokers", up->brokers, NULL);
    if (first || up->sup.shutting_down)
        return;
    sup_child_t *deps[UP_MAX_ENRICHERS + 2];
    size_t n = 0;
    deps[n++] = &up->coredata;
    for (int64_t i = 0; i < up->conf.enrichers; i++)
        deps[n++] = &up->enricher[i];
    deps[n++] = &up->collector;
    for (size_t i = 0; i < n; i++)
        if (deps[i]->state != SUP_IDLE && deps[i]->state != SUP_EXITED) {
            at_log(AT_LOG_WARN, "up", "the devstream moved: restarting", "child", deps[i]->name, NULL);
            sup_restart(deps[i]);
        }
}

/* ---- readiness ---- */

typedef bool (*ready_fn)(up_t *up, sup_child_t *c);

static bool http_ok(const char *base, const char *path)
{
    cli_resp_t r;
    at_err_t err = {0};
    if (cli_http(base, "GET", path, NULL, NULL, NULL, 0, 1000, &r, &err) != 0)
        return false;
    bool ok = r.status == 200;
    cli_resp_free(&r);
    return ok;
}

/* Sends PING, wants +PONG (not -LOADING while it replays its AOF). */
static bool redis_ping(const char *addr)
{
    char host[280];
    int port;
    if (split_addr(addr, host, sizeof(host), &port) != 0)
        return false;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    bool ok = false;
    if (fd >= 0 && inet_pton(AF_INET, host, &sa.sin_addr) == 1 &&
        connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 && write(fd, "PING\r\n", 6) == 6) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        char buf[64];
        ssize_t n;
        if (poll(&p, 1, 1000) == 1 && (n = read(fd, buf, sizeof(buf) - 1)) > 0) {
            buf[n] = '\0';
            ok = strncmp(buf, "+PONG", 5) == 0;
        }
    }
    if (fd >= 0)
        close(fd);
    return ok;
}

static bool ready_redis(up_t *up, sup_child_t *c)
{
    AT_UNUSED(c);
    return redis_ping(up->redis_addr);
}

static bool ready_devstream(up_t *up, sup_child_t *c)
{
    AT_UNUSED(c);
    return up->brokers[0] != '\0' && up->devstream_seen == up->devstream.starts;
}

static bool ready_coredata(up_t *up, sup_child_t *c)
{
    AT_UNUSED(c);
    return http_ok(up->admin_url, "/readyz");
}

static bool ready_enricher(up_t *up, sup_child_t *c)
{
    char url[128];
    snprintf(url, sizeof(url), "http://%s", up->enricher_listen[c - up->enricher]);
    return http_ok(url, "/readyz");
}

static bool ready_dashboard(up_t *up, sup_child_t *c)
{
    AT_UNUSED(c);
    return http_ok(up->dashboard_url, "/readyz");
}

static bool ready_collector(up_t *up, sup_child_t *c)
{
    AT_UNUSED(c);
    return http_ok(up->collector_url, "/readyz");
}

/*
 * Starts @p c (when not NULL) and polls @p ready every 100 ms until it holds. Start-up is
 * strict: a child that exits meanwhile, a signal or --ready-timeout-ms ends it with -1 (the
 * child's log tail printed) instead of restarting, because a part that cannot start is
 * nearly always misconfigured (a port in use, a wrong path) and retrying would only hide it.
 */
static int start_and_wait(up_t *up, sup_child_t *c, ready_fn ready, const char *what)
{
    if (c != NULL) {
        at_err_t err = {0};
        if (sup_add(&up->sup, c) != 0 || sup_start(c, &err) != 0) {
            fprintf(stderr, "adtrack up: cannot start %s: %s\n", what, err.msg);
            return -1;
        }
    }
    int64_t deadline = sup_now_ms() + up->conf.ready_timeout_ms;
    unsigned starts = c != NULL ? c->starts : 0;
    for (;;) {
        if (up->signals > 0)
            return -1;
        if (c != NULL && (c->starts != starts || !sup_alive(c))) {
            char st[32] = "";
            if (WIFEXITED(c->exit_status))
                snprintf(st, sizeof(st), "exit status %d", WEXITSTATUS(c->exit_status));
            else if (WIFSIGNALED(c->exit_status))
                snprintf(st, sizeof(st), "signal %d", WTERMSIG(c->exit_status));
            fprintf(stderr, "adtrack up: %s exited during start-up (%s)\n", what, st);
            print_log_tail(c->log_path, 20);
            return -1;
        }
        if (ready(up, c))
            break;
        if (sup_now_ms() >= deadline) {
            fprintf(stderr, "adtrack up: %s did not become ready within %lld ms\n", what,
                    (long long)up->conf.ready_timeout_ms);
            if (c != NULL)
                print_log_tail(c->log_path, 20);
            return -1;
        }
        up_wait(up, 100);
    }
    at_log(AT_LOG_INFO, "up", "ready", "child", c != NULL ? c->name : what, NULL);
    return 0;
}

/* True when the store has neither campaigns nor publishers (a fresh data directory). */
static int store_empty(up_t *up, bool *empty)
{
    static const char *const paths[] = {"/v1/campaigns?limit=1", "/v1/publishers?limit=1"};
    *empty = true;
    for (size_t i = 0; i < AT_ARRAY_LEN(paths); i++) {
        cli_resp_t r;
        at_err_t err = {0};
        if (cli_http(up->admin_url, "GET", paths[i], up->token, NULL, NULL, 0, 5000, &r, &err) != 0) {
            fprintf(stderr, "adtrack up: GET %s: %s\n", paths[i], err.msg);
            return -1;
        }
        bson_t *b = r.status == 200 ? bson_new_from_json((const uint8_t *)r.body, (ssize_t)r.body_len, NULL) : NULL;
        bson_iter_t it, items;
        if (b == NULL || !bson_iter_init_find(&it, b, "items") || !BSON_ITER_HOLDS_ARRAY(&it) ||
            !bson_iter_recurse(&it, &items)) {
            fprintf(stderr, "adtrack up: GET %s: unexpected answer (HTTP %d)\n", paths[i], r.status);
            if (b)
                bson_destroy(b);
            cli_resp_free(&r);
            return -1;
        }
        if (bson_iter_next(&items))
            *empty = false;
        bson_destroy(b);
        cli_resp_free(&r);
    }
    return 0;
}

static int seed_if_empty(up_t *up)
{
    bool empty;
    if (store_empty(up, &empty) != 0)
        return -1;
    if (!empty) {
        at_log(AT_LOG_INFO, "up", "the store has data: not seeding", NULL);
        return 0;
    }
    at_err_t err = {0};
    if (sup_add(&up->sup, &up->seed) != 0 || sup_start(&up->seed, &err) != 0) {
        fprintf(stderr, "adtrack up: cannot run adtrack seed demo: %s\n", err.msg);
        return -1;
    }
    int64_t deadline = sup_now_ms() + up->conf.ready_timeout_ms;
    while (up->seed.state != SUP_EXITED && up->signals == 0 && sup_now_ms() < deadline)
        up_wait(up, 100);
    if (up->seed.state != SUP_EXITED || !WIFEXITED(up->seed.exit_status) || WEXITSTATUS(up->seed.exit_status) != 0) {
        fprintf(stderr, "adtrack up: adtrack seed demo failed\n");
        print_log_tail(up->seed.log_path, 20);
        return -1;
    }
    up->seeded = true;
    return 0;
}

/* ---- shutdown ---- */

/* Stops @p n children together and waits until all are gone (each gets its own stop
 * timeout, then SIGKILL from sup_tick). */
static void stop_group(up_t *up, sup_child_t **cs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        sup_stop(cs[i]);
    for (;;) {
        bool alive = false;
        for (size_t i = 0; i < n; i++)
            alive = alive || sup_alive(cs[i]);
        if (!alive)
            return;
        up_wait(up, 200);
    }
}

/* Whether @p c was handed to the supervisor already. */
static bool sup_has(const up_t *up, const sup_child_t *c)
{
    for (size_t i = 0; i < up->sup.n; i++)
        if (up->sup.children[i] == c)
            return true;
    return false;
}

/*
 * Runs the one-shot child @p c (a script) to completion, at most @p timeout_ms, while the
 * loop keeps handling signals and other children. Returns its exit status (0..255), or -1
 * when it could not start, was killed, ran out of time, or (with @p stop_on_signal) adtrack
 * up was asked to stop meanwhile; a child still running then is stopped (SIGTERM, then
 * SIGKILL after its stop timeout).
 */
static int run_oneshot(up_t *up, sup_child_t *c, int64_t timeout_ms, bool stop_on_signal)
{
    at_err_t err = {0};
    if ((!sup_has(up, c) && sup_add(&up->sup, c) != 0) || sup_start(c, &err) != 0) {
        fprintf(stderr, "adtrack up: cannot start %s: %s\n", c->name, err.msg);
        return -1;
    }
    int64_t deadline = sup_now_ms() + timeout_ms;
    while (c->state != SUP_EXITED && sup_now_ms() < deadline && !(stop_on_signal && up->signals > 0) &&
           up->signals < 2)
        up_wait(up, 100);
    if (c->state != SUP_EXITED) {
        if (up->signals == 0)
            fprintf(stderr, "adtrack up: %s did not finish within %lld ms\n", c->name, (long long)timeout_ms);
        sup_stop(c);
        while (sup_alive(c))
            up_wait(up, 100);
        return -1;
    }
    return WIFEXITED(c->exit_status) ? WEXITSTATUS(c->exit_status) : -1;
}

/* Starts FerretDB, then the Kafka cluster, through their scripts (one-shot children whose
 * first stdout line is the URI / bootstrap list). The servers outlive the scripts. */
static int start_real_servers(up_t *up)
{
    char line[4096];
    if (up->with_ferretdb) {
        int rc = run_oneshot(up, &up->ferretdb, 90000, true);
        if (rc != 0 || read_line(up->ferretdb.out_path, line, sizeof(line)) != 0 ||
            strncmp(line, "mongodb://", 10) != 0) {
            if (up->signals == 0) {
                fprintf(stderr, "adtrack up: FerretDB did not start (scripts/ferretdb.sh exit %d)\n", rc);
                print_log_tail(up->ferretdb.log_path, 20);
            }
            return -1;
        }
        /* FerretDB ignores write concerns (docs/MONGODB.md); w=1 says so instead of
         * pretending to wait for a majority. No database in the path: adtrack's own. */
        free(up->conf.mongo);
        if (asprintf(&up->conf.mongo, "%s/?w=1", line) < 0) {
            up->conf.mongo = NULL;
            return -1;
        }
        at_log(AT_LOG_INFO, "up", "ready", "child", "ferretdb", "uri", line, NULL);
    }
    if (up->with_kafka) {
        int rc = run_oneshot(up, &up->kafka, UP_KAFKA_START_S * 1000 + UP_SCRIPT_SLACK_MS, true);
        if (rc != 0 || read_line(up->kafka.out_path, line, sizeof(line)) != 0 || strchr(line, ':') == NULL) {
            if (up->signals == 0) {
                fprintf(stderr, "adtrack up: the Kafka cluster did not start (scripts/kafka.sh exit %d)\n", rc);
                print_log_tail(up->kafka.log_path, 30);
            }
            return -1;
        }
        snprintf(up->brokers, sizeof(up->brokers), "%s", line);
        at_log(AT_LOG_INFO, "up", "ready", "child", "kafka", "brokers", up->brokers, NULL);
    }
    return 0;
}

/* Stops what start_real_servers() started (also after a half-done start: the scripts stop
 * whatever runs in their directory and accept one where nothing ever started). */
static void stop_real_servers(up_t *up)
{
    sup_child_t *starts[] = {&up->ferretdb, &up->kafka}; /* a start script cut short */
    for (size_t i = 0; i < AT_ARRAY_LEN(starts); i++)
        if (sup_alive(starts[i]))
            stop_group(up, &starts[i], 1);
    if (up->with_ferretdb) {
        if (run_oneshot(up, &up->ferretdb_stop, 30000, false) != 0 && up->signals < 2)
            print_log_tail(up->ferretdb_stop.log_path, 10);
    }
    if (up->with_kafka) {
        if (run_oneshot(up, &up->kafka_stop, UP_KAFKA_STOP_S * 1000 + UP_SCRIPT_SLACK_MS, false) != 0 &&
            up->signals < 2)
            print_log_tail(up->kafka_stop.log_path, 10);
    }
}

static void shutdown_all(up_t *up)
{
    up->sup.shutting_down = true;
    at_log(AT_LOG_INFO, "up",
           up->with_kafka || up->with_ferretdb
               ? "stopping: collector, dashboard, enrichers, coredata, ferretdb, kafka, devstream, redis"
               : "stopping: collector, dashboard, enrichers, coredata, devstream, redis",
           NULL);
    sup_child_t *one[1];
    sup_child_t *order[] = {&up->seed, &up->collector, &up->dashboard};
    for (size_t i = 0; i < AT_ARRAY_LEN(order); i++) {
        one[0] = order[i];
        stop_group(up, one, 1);
    }
    sup_child_t *enr[UP_MAX_ENRICHERS];
    for (int64_t i = 0; i < up->conf.enrichers; i++)
        enr[i] = &up->enricher[i];
    stop_group(up, enr, (size_t)up->conf.enrichers);
    one[0] = &up->coredata;
    stop_group(up, one, 1);
    /* The real servers after every client of theirs, before Redis as the devstream. */
    stop_real_servers(up);
    sup_child_t *rest[] = {&up->devstream, &up->redis};
    for (size_t i = 0; i < AT_ARRAY_LEN(rest); i++) {
        one[0] = rest[i];
        stop_group(up, one, 1);
    }
    at_log(AT_LOG_INFO, "up", "stopped", NULL);
}

/* ---- start-up ---- */

static int find_bin_dir(up_t *up)
{
    ssize_t n = readlink("/proc/self/exe", up->self, sizeof(up->self) - 1);
    if (n <= 0) {
        perror("adtrack up: /proc/self/exe");
        return -1;
    }
    up->self[n] = '\0';
    const char *env = getenv("ADTRACK_BIN_DIR");
    if (env != NULL && env[0] != '\0') {
        snprintf(up->bin_dir, sizeof(up->bin_dir), "%s", env);
    } else {
        char copy[PATH_MAX];
        snprintf(copy, sizeof(copy), "%s", up->self);
        snprintf(up->bin_dir, sizeof(up->bin_dir), "%s", dirname(copy));
    }
    static const char *const need[] = {"adtrack-collector", "adtrack-enricher", "adtrack-coredata",
                                       "adtrack-devstream"};
    for (size_t i = 0; i < AT_ARRAY_LEN(need); i++) {
        char p[PATH_MAX];
        path_join(p, sizeof(p), up->bin_dir, need[i]);
        if (access(p, X_OK) != 0) {
            fprintf(stderr, "adtrack up: %s: %s (build it, or set ADTRACK_BIN_DIR)\n", p, strerror(errno));
            return -1;
        }
    }
    char dash[PATH_MAX], col[PATH_MAX];
    path_join(dash, sizeof(dash), up->bin_dir, "adtrack-dashboard");
    path_join(col, sizeof(col), up->bin_dir, "adtrack-collector");
    up->with_dashboard = access(dash, X_OK) == 0;
    if (up->with_dashboard) {
        up->dash_redis = help_has(dash, "--redis");
        up->dash_scrape = help_has(dash, "--scrape");
        up->dash_reports = help_has(dash, "--reports");
    }
    up->demo_page = help_has(col, "--demo-page");
    return 0;
}

/* Replaces the heap string *@p field (owned by the conf table) by a copy of @p value. */
static void conf_set_str(char **field, const char *value)
{
    char *copy = strdup(value);
    if (copy == NULL) {
        perror("adtrack up");
        exit(1);
    }
    free(*field);
    *field = copy;
}

/* Applies --real and checks --kafka, --store and --kafka-nodes against each other and against
 * --brokers / --mongo. Returns 0, or -1 after printing what is wrong (a usage error). */
static int resolve_real(up_t *up)
{
    up_conf_t *c = &up->conf;
    if (c->real) {
        conf_set_str(&c->kafka, "real");
        conf_set_str(&c->store, "ferretdb");
    }
    if (strcmp(c->kafka, "devstream") != 0 && strcmp(c->kafka, "real") != 0) {
        fprintf(stderr, "adtrack up: --kafka: expected devstream or real, got '%s'\n", c->kafka);
        return -1;
    }
    if (strcmp(c->store, "files") != 0 && strcmp(c->store, "ferretdb") != 0) {
        fprintf(stderr, "adtrack up: --store: expected files or ferretdb, got '%s'\n", c->store);
        return -1;
    }
    up->with_kafka = strcmp(c->kafka, "real") == 0;
    up->with_ferretdb = strcmp(c->store, "ferretdb") == 0;
    if (c->kafka_nodes != 1 && c->kafka_nodes != 3) {
        fprintf(stderr, "adtrack up: --kafka-nodes: expected 1 or 3, got %lld\n", (long long)c->kafka_nodes);
        return -1;
    }
    if (c->kafka_nodes != 1 && !up->with_kafka) {
        fprintf(stderr, "adtrack up: --kafka-nodes is for --kafka real (or --real)\n");
        return -1;
    }
    if (up->with_kafka && c->brokers[0] != '\0') {
        fprintf(stderr, "adtrack up: --brokers names a cluster that runs already, --kafka real starts one: use one of "
                        "them\n");
        return -1;
    }
    if (up->with_ferretdb && c->mongo[0] != '\0') {
        fprintf(stderr, "adtrack up: --mongo names a database that runs already, --store ferretdb starts one: use one "
                        "of them\n");
        return -1;
    }
    return 0;
}

/* Runs `bash @p script check` (no server starts); the first line it wrote to stderr goes to
 * @p why. Returns its exit status (3: not installed), or -1 when it could not run. */
static int script_check(const char *script, char *why, size_t why_size)
{
    int fds[2];
    why[0] = '\0';
    if (pipe2(fds, O_CLOEXEC) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDWR);
        dup2(fds[1], 2);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
        }
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        char *argv[] = {"bash", (char *)script, "check", NULL};
        execvp("bash", argv);
        _exit(127);
    }
    close(fds[1]);
    char buf[1024];
    size_t len = 0;
    ssize_t n;
    while (pid > 0 && len < sizeof(buf) - 1 && (n = read(fds[0], buf + len, sizeof(buf) - 1 - len)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            break;
        len += (size_t)n;
    }
    close(fds[0]);
    buf[len] = '\0';
    snprintf(why, why_size, "%.*s", (int)strcspn(buf, "\n"), buf);
    int status = 0;
    if (pid < 0)
        return -1;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/*
 * For --kafka real / --store ferretdb: finds the scripts and checks, before anything starts,
 * that the servers are installed. When one is not, says what to run and returns -1.
 */
static int check_real_installed(up_t *up)
{
    if (!up->with_kafka && !up->with_ferretdb)
        return 0;
    char tried[2][PATH_MAX];
    int ntried = 0;
    if (up->conf.scripts_dir[0] != '\0') {
        snprintf(tried[ntried++], PATH_MAX, "%s", up->conf.scripts_dir);
    } else {
        path_join(tried[ntried++], PATH_MAX, up->bin_dir, "../../scripts");
        path_join(tried[ntried++], PATH_MAX, up->bin_dir, "../scripts");
    }
    up->scripts[0] = '\0';
    for (int i = 0; i < ntried && up->scripts[0] == '\0'; i++) {
        char probe[PATH_MAX];
        path_join(probe, sizeof(probe), tried[i], "kafka.sh");
        if (access(probe, R_OK) == 0 && realpath(tried[i], up->scripts) == NULL)
            up->scripts[0] = '\0';
    }
    if (up->scripts[0] == '\0') {
        fprintf(stderr, "adtrack up: --%s needs the project's scripts (kafka.sh, ferretdb.sh); none in %s%s%s. Pass "
                        "--scripts-dir <adtrack checkout>/scripts.\n",
                up->conf.real ? "real" : up->with_kafka ? "kafka real" : "store ferretdb", tried[0],
                ntried > 1 ? " or " : "", ntried > 1 ? tried[1] : "");
        return -1;
    }
    static const struct {
        const char *script, *what, *option, *instead, *cost;
    } servers[] = {
        {"kafka.sh", "Apache Kafka", "--kafka real", "adtrack-devstream (in memory, starts in a second)",
         "Java 17+ and Maven; about 45 MB from Maven Central, ~10 s"},
        {"ferretdb.sh", "FerretDB", "--store ferretdb", "the file store and file sinks",
         "Go 1.24+; Go modules from the module proxy, then ~70 s of compiling on 2 cores"},
    };
    int missing = 0;
    for (size_t i = 0; i < AT_ARRAY_LEN(servers); i++) {
        if ((i == 0 && !up->with_kafka) || (i == 1 && !up->with_ferretdb))
            continue;
        char script[PATH_MAX], why[512];
        path_join(script, sizeof(script), up->scripts, servers[i].script);
        int rc = script_check(script, why, sizeof(why));
        if (rc == 0)
            continue;
        missing++;
        const char *opt = up->conf.real ? "--real" : servers[i].option;
        fprintf(stderr,
                "adtrack up: %s needs %s, which is not installed on this machine%s%s%s.\n"
                "  Install it once (%s):\n"
                "      bash %s install\n"
                "  or run without %s to use %s.\n",
                opt, servers[i].what, why[0] ? " (" : "", why, why[0] ? ")" : "", servers[i].cost, script, opt,
                servers[i].instead);
    }
    return missing == 0 ? 0 : -1;
}

static int prepare_data_dir(up_t *up)
{
    char failed[PATH_MAX];
    if (at_mkdir_p(up->conf.data_dir, 0755, failed, sizeof(failed)) != 0) {
        fprintf(stderr, "adtrack up: --data-dir: cannot create %s: %s\n", failed, strerror(errno));
        return -1;
    }
    if (realpath(up->conf.data_dir, up->dir) == NULL) {
        fprintf(stderr, "adtrack up: --data-dir %s: %s\n", up->conf.data_dir, strerror(errno));
        return -1;
    }
    static const char *const subdirs[] = {"logs", "redis", "coredata", "sink", "spool"};
    for (size_t i = 0; i < AT_ARRAY_LEN(subdirs); i++) {
        char p[PATH_MAX];
        path_join(p, sizeof(p), up->dir, subdirs[i]);
        if (at_mkdir_p(p, 0755, failed, sizeof(failed)) != 0) {
            fprintf(stderr, "adtrack up: cannot create %s: %s\n", failed, strerror(errno));
            return -1;
        }
    }
    /* One adtrack up per data directory: two would share the spool, the sinks and the
     * store. The lock goes with the process, also on SIGKILL. */
    char p[PATH_MAX];
    path_join(p, sizeof(p), up->dir, "up.lock");
    up->lock_fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (up->lock_fd < 0 || flock(up->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        fprintf(stderr, "adtrack up: %s is in use by another adtrack up (%s)\n", up->dir, strerror(errno));
        return -1;
    }
    char pid[24];
    int len = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
    if (ftruncate(up->lock_fd, 0) != 0 || write(up->lock_fd, pid, (size_t)len) != len)
        return -1;

    /* A fresh admin, dashboard and read token every run; the click key is kept, so signed click links made by
     * an earlier run stay valid. */
    random_hex(up->token, 16);
    path_join(p, sizeof(p), up->dir, "admin.token");
    if (write_secret(p, up->token) != 0) {
        fprintf(stderr, "adtrack up: %s: %s\n", p, strerror(errno));
        return -1;
    }
    random_hex(up->dash_token, 24);
    path_join(p, sizeof(p), up->dir, "dashboard.token");
    if (write_secret(p, up->dash_token) != 0) {
        fprintf(stderr, "adtrack up: %s: %s\n", p, strerror(errno));
        return -1;
    }
    random_hex(up->read_token, 24);
    path_join(p, sizeof(p), up->dir, "read.token");
    if (write_secret(p, up->read_token) != 0) {
        fprintf(stderr, "adtrack up: %s: %s\n", p, strerror(errno));
        return -1;
    }
    path_join(p, sizeof(p), up->dir, "click.key");
    if (read_line(p, up->click_key, sizeof(up->click_key)) != 0) {
        random_hex(up->click_key, 32);
        if (write_secret(p, up->click_key) != 0) {
            fprintf(stderr, "adtrack up: %s: %s\n", p, strerror(errno));
            return -1;
        }
    }
    return 0;
}

/* --infra-dir as an absolute path (created), for --kafka real and --store ferretdb. */
static int prepare_infra_dir(up_t *up)
{
    if (!up->with_kafka && !up->with_ferretdb)
        return 0;
    char want[PATH_MAX], failed[PATH_MAX];
    if (up->conf.infra_dir[0] != '\0')
        snprintf(want, sizeof(want), "%s", up->conf.infra_dir);
    else
        path_join(want, sizeof(want), up->dir, "infra");
    if (at_mkdir_p(want, 0755, failed, sizeof(failed)) != 0 || realpath(want, up->infra) == NULL) {
        fprintf(stderr, "adtrack up: --infra-dir: cannot create %s: %s\n", want, strerror(errno));
        return -1;
    }
    return 0;
}

static void child_init(up_t *up, sup_child_t *c, const char *name, sup_prepare_cb prepare, int64_t stop_timeout_ms)
{
    char log[PATH_MAX], file[96];
    snprintf(file, sizeof(file), "logs/%s.log", name);
    path_join(log, sizeof(log), up->dir, file);
    sup_child_init(c, name, log);
    c->prepare = prepare;
    c->opaque = up;
    c->stop_timeout_ms = stop_timeout_ms;
}

static int setup_children(up_t *up)
{
    char p[PATH_MAX];
    /* Stop timeouts: the collector drains for up to its --drain-timeout-ms (10 s) and then
     * flushes; an enricher may need 15 s to store the batch in hand. */
    child_init(up, &up->redis, "redis", prep_redis, 10000);
    child_init(up, &up->devstream, "devstream", prep_devstream, 5000);
    child_init(up, &up->coredata, "coredata", prep_coredata, 10000);
    child_init(up, &up->seed, "seed", prep_seed, 5000);
    up->seed.oneshot = true;
    path_join(up->seed.out_path, sizeof(up->seed.out_path), up->dir, "seed.json");
    child_init(up, &up->dashboard, "dashboard", prep_dashboard, 5000);
    child_init(up, &up->collector, "collector", prep_collector, 30000);
    if (up->with_kafka) {
        child_init(up, &up->kafka, "kafka", prep_kafka, 10000);
        child_init(up, &up->kafka_stop, "kafka-stop", prep_kafka_stop, 10000);
        up->kafka.oneshot = up->kafka_stop.oneshot = true;
        path_join(up->kafka.out_path, sizeof(up->kafka.out_path), up->dir, "kafka.out");
    }
    if (up->with_ferretdb) {
        child_init(up, &up->ferretdb, "ferretdb", prep_ferretdb, 10000);
        child_init(up, &up->ferretdb_stop, "ferretdb-stop", prep_ferretdb_stop, 10000);
        up->ferretdb.oneshot = up->ferretdb_stop.oneshot = true;
        path_join(up->ferretdb.out_path, sizeof(up->ferretdb.out_path), up->dir, "ferretdb.out");
    }
    for (int64_t i = 0; i < up->conf.enrichers; i++) {
        char name[32];
        snprintf(name, sizeof(name), "enricher-%lld", (long long)i + 1);
        child_init(up, &up->enricher[i], name, prep_enricher, 20000);
        int port = free_port();
        if (port < 0)
            return -1;
        snprintf(up->enricher_listen[i], sizeof(up->enricher_listen[i]), "127.0.0.1:%d", port);
    }

    if (up->conf.redis[0] != '\0') {
        snprintf(up->redis_addr, sizeof(up->redis_addr), "%s", up->conf.redis);
    } else {
        up->with_redis = true;
        int port = free_port();
        if (port < 0)
            return -1;
        snprintf(up->redis_addr, sizeof(up->redis_addr), "127.0.0.1:%d", port);
    }
    if (up->conf.brokers[0] != '\0') {
        snprintf(up->brokers, sizeof(up->brokers), "%s", up->conf.brokers);
    } else if (!up->with_kafka) {
        /* devstream reads control commands from a FIFO that we hold open read-write, so it
         * never sees EOF, and a restarted devstream reads the same FIFO. */
        up->with_devstream = true;
        path_join(p, sizeof(p), up->dir, "devstream.ctl");
        unlink(p);
        if (mkfifo(p, 0600) != 0 || (up->ctl_fd = open(p, O_RDWR | O_CLOEXEC)) < 0) {
            fprintf(stderr, "adtrack up: %s: %s\n", p, strerror(errno));
            return -1;
        }
        up->devstream.stdin_fd = up->ctl_fd;
        path_join(up->devstream.out_path, sizeof(up->devstream.out_path), up->dir, "devstream.out");
    }
    if (resolve_listen("listen", up->conf.listen, up->listen, sizeof(up->listen), up->collector_url,
                       sizeof(up->collector_url)) != 0 ||
        resolve_listen("admin-listen", up->conf.admin_listen, up->admin_listen, sizeof(up->admin_listen), up->admin_url,
                       sizeof(up->admin_url)) != 0 ||
        resolve_listen("dashboard-listen", up->conf.dashboard_listen, up->dashboard_listen,
                       sizeof(up->dashboard_listen), up->dashboard_url, sizeof(up->dashboard_url)) != 0)
        return -1;
    return 0;
}

static int start_all(up_t *up)
{
    if (up->with_redis) {
        if (start_and_wait(up, &up->redis, ready_redis, "redis-server") != 0)
            return -1;
    } else if (start_and_wait(up, NULL, ready_redis, "redis (--redis)") != 0) {
        return -1;
    }
    if (up->with_devstream && start_and_wait(up, &up->devstream, ready_devstream, "adtrack-devstream") != 0)
        return -1;
    if (start_real_servers(up) != 0)
        return -1;
    if (start_and_wait(up, &up->coredata, ready_coredata, "adtrack-coredata") != 0 || seed_if_empty(up) != 0)
        return -1;
    for (int64_t i = 0; i < up->conf.enrichers; i++)
        if (start_and_wait(up, &up->enricher[i], ready_enricher, up->enricher[i].name) != 0)
            return -1;
    if (up->with_dashboard && start_and_wait(up, &up->dashboard, ready_dashboard, "adtrack-dashboard") != 0)
        return -1;
    return start_and_wait(up, &up->collector, ready_collector, "adtrack-collector");
}

/* ---- what to print ---- */

static void print_banner(const up_t *up)
{
    const char *col = up->collector_url, *d = up->dir;
    char sig[AT_HMAC_SIG_LEN + 1];
    static const char dest[] = "https://acme.example/spring";
    at_hmac_sign(up->click_key, strlen(up->click_key), dest, strlen(dest), sig);
    bool files = up->conf.mongo[0] == '\0';
    char redacted[4200];
    FILE *o = stdout;
    fprintf(o, "\nadtrack is up. Ctrl-C (or SIGTERM) stops everything, collector first.\n\n");
    fprintf(o, "  Pixel endpoint   %s/t.gif   (also /c clicks, POST /v1/events beacons)\n", col);
    fprintf(o, "  tracker.js       %s/tracker.js\n", col);
    if (up->demo_page)
        fprintf(o, "  Demo page        %s/demo/\n", col);
    else
        fprintf(o, "  Demo page        (this collector has no --demo-page option)\n");
    if (up->with_dashboard)
        fprintf(o, "  Dashboard        %s/   (sign in with the token in %s/dashboard.token)\n", up->dashboard_url, d);
    else
        fprintf(o, "  Dashboard        (adtrack-dashboard is not built)\n");
    fprintf(o, "  Admin API        %s   token: %s/admin.token%s\n", up->admin_url, d,
            up->seeded ? "   (demo data seeded: seed.json)" : "");
    fprintf(o, "  Reports          %s report --api %s --token-file %s/read.token --from <day> --to <day>\n",
            up->self, up->admin_url, d);
    fprintf(o, "  Data directory   %s   (logs in logs/)\n", d);
    if (files) {
        fprintf(o, "  Stored events    %s/sink/enricher-*/events-*.jsonl\n", d);
        fprintf(o, "  Rejected events  %s/sink/enricher-*/rejected-*.jsonl   (each with its \"reason\")\n", d);
    } else {
        fprintf(o, "  Stored events    MongoDB %s: adtrack.events, rejected in adtrack.rejected\n",
                at_secret_uri_redact(up->conf.mongo, redacted, sizeof(redacted)));
        if (up->with_ferretdb)
            fprintf(o, "  FerretDB         data and log in %s/ferretdb   (scripts/ferretdb.sh; core data in "
                       "adtrack.campaigns, adtrack.publishers)\n",
                    up->infra);
    }
    if (up->with_devstream) {
        fprintf(o, "  Kafka            %s   (adtrack-devstream: in memory, development only)\n", up->brokers);
        fprintf(o, "  Fault injection  echo 'broker-down all' > %s/devstream.ctl   (answers in devstream.out)\n", d);
    } else if (up->with_kafka) {
        fprintf(o, "  Kafka            %s   (Apache Kafka, %lld node%s, from scripts/kafka.sh; data and logs in %s/kafka)\n",
                up->brokers, (long long)up->conf.kafka_nodes, up->conf.kafka_nodes == 1 ? "" : "s", up->infra);
        fprintf(o, "  Kafka status     bash %s/kafka.sh status --dir %s/kafka   (describe: topics, leaders, ISRs)\n",
                up->scripts, up->infra);
    } else {
        fprintf(o, "  Kafka            %s\n", up->brokers);
    }
    fprintf(o, "  Redis            %s%s\n\n", at_secret_uri_redact(up->redis_addr, redacted, sizeof(redacted)),
            up->with_redis ? "   (AOF in redis/)" : "");
    fprintf(o, "Try it (curl's own User-Agent is rejected as a bot, so pretend to be a browser):\n");
    fprintf(o, "  UA='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 "
               "Safari/537.36'\n");
    fprintf(o, "  curl -si -A \"$UA\" '%s/t.gif?e=imp&c=camp-acme-spring&p=pub-dailynews&pl=top'\n", col);
    fprintf(o,
            "  curl -si -A \"$UA\" '%s/c?c=camp-acme-spring&p=pub-dailynews&d=https%%3A%%2F%%2Facme.example%%2Fspring"
            "&sig=%s'\n",
            col, sig);
    if (files) {
        fprintf(o, "  tail -f %s/sink/enricher-*/events-*.jsonl      # enriched: names, price_micros, device\n", d);
        fprintf(o, "  tail -f %s/sink/enricher-*/rejected-*.jsonl\n", d);
    }
    fprintf(o, "  %s --api %s --token-file %s/admin.token campaign pause camp-acme-spring\n", up->self,
            up->admin_url, d);
    if (files) {
        fprintf(o, "\nLoad the stored events into MongoDB unchanged:\n");
        fprintf(o,
                "  for f in %s/sink/enricher-*/events-*.jsonl; do mongoimport --db adtrack --collection events "
                "--file \"$f\"; done\n",
                d);
        fprintf(o,
                "  for f in %s/sink/enricher-*/rejected-*.jsonl; do mongoimport --db adtrack --collection rejected "
                "--file \"$f\"; done\n",
                d);
    }
    fprintf(o, "\n");
    fflush(o);
}

/* ---- main ---- */

int up_main(int argc, char **argv)
{
    static up_t up_state;
    up_t *up = &up_state;
    up->ctl_fd = up->lock_fd = -1;
    at_err_t err = {0};
    /* Every option takes a value (`--real true`, as `--demo-page true` elsewhere), but the
     * one switch of this command is typed bare: `adtrack up --real`. A --real that is last or
     * followed by another option means --real=true. */
    char *args[256];
    if (argc > (int)AT_ARRAY_LEN(args) - 1) {
        fprintf(stderr, "adtrack up: too many arguments\n");
        return 2;
    }
    for (int i = 0; i < argc; i++) {
        bool bare = strcmp(argv[i], "--real") == 0 && (i + 1 == argc || strncmp(argv[i + 1], "--", 2) == 0);
        args[i] = bare ? "--real=true" : argv[i];
    }
    args[argc] = NULL;
    int rc = at_conf_load(&up_table, &up->conf, argc, args, environ, stdout, &err);
    if (rc == AT_CONF_EXIT_HELP)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "adtrack up: %s\n", err.msg);
        return 2;
    }
    at_log_level_t level;
    if (at_log_parse_level(up->conf.log_level, &level) != 0) {
        fprintf(stderr, "adtrack up: --log-level: expected debug, info, warn or error, got '%s'\n", up->conf.log_level);
        at_conf_free(&up_table, &up->conf);
        return 2;
    }
    at_log_set_level(level);
    at_main_secrets(&up_table, &up->conf, argc, argv);
    if (resolve_real(up) != 0) {
        at_conf_free(&up_table, &up->conf);
        return 2;
    }

    sigemptyset(&up_sigs);
    sigaddset(&up_sigs, SIGINT);
    sigaddset(&up_sigs, SIGTERM);
    sigaddset(&up_sigs, SIGHUP); /* the terminal went away: stop in order, as for SIGTERM */
    sigaddset(&up_sigs, SIGCHLD);
    sigprocmask(SIG_BLOCK, &up_sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    rc = 1;
    if (find_bin_dir(up) != 0 || check_real_installed(up) != 0 || prepare_data_dir(up) != 0 ||
        prepare_infra_dir(up) != 0 || setup_children(up) != 0)
        goto out;
    if (start_all(up) != 0) {
        if (up->signals == 0)
            fprintf(stderr, "adtrack up: start-up failed; stopping what was started (logs in %s/logs)\n", up->dir);
        shutdown_all(up);
        rc = up->signals > 0 ? 0 : 1;
        goto out;
    }
    print_banner(up);
    at_log(AT_LOG_INFO, "up", "running", "data_dir", up->dir, NULL);
    while (up->signals == 0)
        up_wait(up, 1000);
    shutdown_all(up);
    rc = 0;
out:
    for (size_t i = 0; i < up->sup.n; i++)
        sup_child_clear(up->sup.children[i]);
    if (up->ctl_fd >= 0) {
        char p[PATH_MAX];
        path_join(p, sizeof(p), up->dir, "devstream.ctl");
        unlink(p);
        close(up->ctl_fd);
    }
    if (up->lock_fd >= 0)
        close(up->lock_fd);
    at_conf_free(&up_table, &up->conf);
    return rc;
}
