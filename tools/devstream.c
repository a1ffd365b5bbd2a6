/*
 * devstream.c: adtrack-devstream, a local Kafka-protocol cluster for development and tests.
 *
 * It wraps librdkafka's mock cluster (rdkafka_mock.h): real Kafka protocol over TCP on
 * 127.0.0.1, everything in memory, nothing persisted, no TLS/SASL. It is a stand-in for
 * Kafka on machines that have none; deploy/ runs real Kafka.
 *
 * Life cycle: create the cluster and the project's topics, print the bootstrap list as the
 * first stdout line, then serve control commands read from stdin (one per line, one answer
 * line each on stdout) until SIGINT or SIGTERM. EOF on stdin only stops the control channel:
 * the process is often started with stdin=/dev/null and must keep running.
 *
 * Leader placement is fixed here, not left to the mock (which picks a random replica in
 * librdkafka 2.0.2): partition p of every topic is led by broker (p % brokers) + 1. The mock
 * never moves leadership by itself (broker-down does not fail over), so tests know exactly
 * which partitions a downed broker takes with it; set-leader moves a partition explicitly.
 *
 * Threads: the mock cluster runs on its own librdkafka thread; every rd_kafka_mock_* call
 * below is a synchronous request to that thread. Everything else runs on the main thread.
 */
#include "at_conf.h"
#include "at_log.h"

#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define DS_COMP "devstream"
#define DS_LINE_MAX 1024
#define DS_TOPIC_NAME_MAX 249 /* Kafka's own limit */
#define DS_MAX_PARTITIONS 256
#define DS_API_PRODUCE 0

typedef struct ds_conf_s {
    int64_t brokers;
    int64_t partitions;
    at_conf_list_t topics;
    char *log_level;
} ds_conf_t;

static const at_conf_opt_t ds_opts[] = {
    {"brokers", AT_CONF_INT, AT_OFF(ds_conf_t, brokers), 1, 16, "1", "Number of mock brokers (ids 1..N)"},
    {"partitions", AT_CONF_INT, AT_OFF(ds_conf_t, partitions), 1, DS_MAX_PARTITIONS, "4",
     "Partitions of each adtrack.* topic"},
    {"topic", AT_CONF_LIST, AT_OFF(ds_conf_t, topics), 0, 64, "",
     "Extra topic to create, as name or name:partitions (a name of a built-in topic overrides its partition count)"},
    {"log-level", AT_CONF_STR, AT_OFF(ds_conf_t, log_level), 0, 16, "info", "debug, info, warn or error"},
};

static const at_conf_table_t ds_table = {
    .program = "adtrack-devstream",
    .summary =
        "A local Kafka-protocol cluster for development and tests only, built on librdkafka's\n"
        "mock cluster. It is not for production: it is in-memory (data dies with the process),\n"
        "has no replication, no TLS/SASL and no authentication, and listens on 127.0.0.1 only.\n"
        "Retention is fixed by the mock: each partition keeps about its last 5 MiB or 100,000\n"
        "messages and deletes older ones (like Kafka retention), so a consumer that starts\n"
        "from the beginning after more than that was produced misses the oldest messages; use\n"
        "more --partitions for bigger runs.\n"
        "\n"
        "On start it creates adtrack.events.raw, adtrack.events.rejected, adtrack.coredata.updates\n"
        "and adtrack.coredata.changes (plus every --topic), prints the bootstrap list\n"
        "(host:port,...) as the first line on stdout, logs JSON lines on stderr and runs until\n"
        "SIGINT or SIGTERM (exit 0). Partition p of every topic is led by broker\n"
        "(p mod brokers)+1; leadership never moves unless set-leader moves it.\n"
        "\n"
        "Control commands on stdin, one per line, each answered by one stdout line starting\n"
        "with \"ok\" or \"error\". EOF on stdin ends the control channel, not the cluster.\n"
        "\n"
        "    broker-down <id|all>           refuse new connections, drop open ones (no failover)\n"
        "    broker-up <id|all>             accept connections again\n"
        "    broker-rtt <id|all> <ms>       delay every response by ms (0 turns it off)\n"
        "    produce-errors <count> <ERR>   fail the next count Produce requests with ERR:\n"
        "                                   _TRANSPORT (disconnect), NOT_LEADER_FOR_PARTITION,\n"
        "                                   REQUEST_TIMED_OUT, ... (rd_kafka_err2name names)\n"
        "    request-errors <apikey> <count> <ERR>\n"
        "                                   the same for any ApiKey (1 Fetch, 3 Metadata,\n"
        "                                   8 OffsetCommit, ...)\n"
        "    clear-errors [<apikey>]        drop queued errors (default: all ApiKeys)\n"
        "    set-leader <topic> <partition> <id|-1>\n"
        "                                   move a partition's leader (-1: leaderless)\n"
        "    leaders                        ok topic/partition=leader ... (one line)\n"
        "    bootstraps                     ok host:port,...\n"
        "    help                           ok and the command list",
    .opts = ds_opts,
    .nopts = AT_ARRAY_LEN(ds_opts),
};

static const char *const ds_builtin_topics[] = {
    "adtrack.events.raw",
    "adtrack.events.rejected",
    "adtrack.coredata.updates",
    "adtrack.coredata.changes",
};

typedef struct ds_topic_s {
    char *name;
    int partitions;
    int32_t *leaders; /* [partitions]; broker id or -1 */
} ds_topic_t;

typedef struct ds_s {
    rd_kafka_t *rk; /* dummy producer that owns the mock cluster; never produces */
    rd_kafka_mock_cluster_t *mc;
    int brokers;
    ds_topic_t *topics;
    size_t ntopics;
} ds_t;

/*
 * librdkafka 2.0.2's mock thread can miss the wake-up for a command queued right after it
 * answered the previous one (it drains its wake-up pipe after serving the queue), and the
 * command then waits for the thread's 1 s poll timeout. Measured here: without a pause, about
 * one command in four took 1 s (devstream startup 1-7 s); with a 1 ms pause before each
 * command, none did. A command can still take up to 1 s on a badly overloaded machine.
 */
static void ds_pace(void)
{
    struct timespec ts = {.tv_sec = 0, .tv_nsec = 1000000};
    nanosleep(&ts, NULL);
}

/* ---- small parsers ---------------------------------------------------------------------- */

/* Strict decimal in [min, max]: optional '-', digits, nothing else. */
static int ds_parse_long(const char *s, long min, long max, long *out)
{
    const char *d = (s[0] == '-') ? s + 1 : s;
    if (d[0] < '0' || d[0] > '9')
        return -1;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max)
        return -1;
    *out = v;
    return 0;
}

static bool ds_topic_name_ok(const char *name, size_t len)
{
    if (len == 0 || len > DS_TOPIC_NAME_MAX)
        return false;
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

/* Error code by librdkafka name ("_TRANSPORT", "NOT_LEADER_FOR_PARTITION", optionally with the
 * RD_KAFKA_RESP_ERR_ prefix, any case) or by number. Returns 0 or -1 (unknown / NO_ERROR). */
static int ds_parse_err(const char *s, rd_kafka_resp_err_t *out)
{
    static const char prefix[] = "RD_KAFKA_RESP_ERR_";
    const struct rd_kafka_err_desc *descs = NULL;
    size_t n = 0;
    long num;

    if (strncasecmp(s, prefix, sizeof(prefix) - 1) == 0)
        s += sizeof(prefix) - 1;
    rd_kafka_get_err_descs(&descs, &n);
    bool numeric = ds_parse_long(s, INT32_MIN, INT32_MAX, &num) == 0;
    for (size_t i = 0; i < n; i++) {
        if (descs[i].name == NULL || descs[i].code == RD_KAFKA_RESP_ERR_NO_ERROR)
            continue;
        if ((numeric && (long)descs[i].code == num) || (!numeric && strcasecmp(descs[i].name, s) == 0)) {
            *out = descs[i].code;
            return 0;
        }
    }
    /* Kafka renamed error 6; accept the new name too. */
    if (!numeric && strcasecmp(s, "NOT_LEADER_OR_FOLLOWER") == 0) {
        *out = RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION;
        return 0;
    }
    return -1;
}

/* ---- topics -------------------------------------------------------------------------------- */

static ds_topic_t *ds_topic_find(ds_t *ds, const char *name, size_t len)
{
    for (size_t i = 0; i < ds->ntopics; i++)
        if (strlen(ds->topics[i].name) == len && memcmp(ds->topics[i].name, name, len) == 0)
            return &ds->topics[i];
    return NULL;
}

/* Adds (or, for a name already present, re-sizes) a topic in the plan; nothing is created yet. */
static int ds_topic_plan(ds_t *ds, const char *name, size_t len, int partitions, at_err_t *err)
{
    ds_topic_t *t = ds_topic_find(ds, name, len);
    if (t != NULL) {
        t->partitions = partitions;
        return 0;
    }
    ds_topic_t *topics = realloc(ds->topics, (ds->ntopics + 1) * sizeof(*topics));
    if (topics == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    ds->topics = topics;
    t = &ds->topics[ds->ntopics];
    t->name = strndup(name, len);
    t->partitions = partitions;
    t->leaders = NULL;
    if (t->name == NULL)
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    ds->ntopics++;
    return 0;
}

/* "name" or "name:partitions" from --topic. */
static int ds_topic_plan_arg(ds_t *ds, const char *arg, int def_partitions, at_err_t *err)
{
    const char *colon = strchr(arg, ':');
    size_t len = colon ? (size_t)(colon - arg) : strlen(arg);
    long partitions = def_partitions;
    if (!ds_topic_name_ok(arg, len))
        return at_err_set(err, AT_ERR_INVALID,
                          "--topic: expected name[:partitions] with a name of 1..249 characters from "
                          "[A-Za-z0-9._-], got '%.64s'",
                          arg);
    if (colon != NULL && ds_parse_long(colon + 1, 1, DS_MAX_PARTITIONS, &partitions) != 0)
        return at_err_set(err, AT_ERR_RANGE, "--topic: expected a partition count from 1 to %d after ':', got '%.64s'",
                          DS_MAX_PARTITIONS, arg);
    return ds_topic_plan(ds, arg, len, (int)partitions, err);
}

/* Creates every planned topic with the fixed leader placement described at the top. */
static int ds_topics_create(ds_t *ds, at_err_t *err)
{
    int rf = AT_MIN(ds->brokers, 3);
    for (size_t i = 0; i < ds->ntopics; i++) {
        ds_topic_t *t = &ds->topics[i];
        ds_pace();
        rd_kafka_resp_err_t kerr = rd_kafka_mock_topic_create(ds->mc, t->name, t->partitions, rf);
        if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
            return at_err_set(err, AT_ERR_INTERNAL, "creating topic %s: %s", t->name, rd_kafka_err2str(kerr));
        t->leaders = calloc((size_t)t->partitions, sizeof(*t->leaders));
        if (t->leaders == NULL)
            return at_err_set(err, AT_ERR_NOMEM, "out of memory");
        for (int p = 0; p < t->partitions; p++) {
            int32_t leader = (int32_t)(p % ds->brokers) + 1;
            t->leaders[p] = leader;
            if (ds->brokers == 1)
                continue; /* one broker: it leads everything already */
            ds_pace();
            kerr = rd_kafka_mock_partition_set_leader(ds->mc, t->name, p, leader);
            if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR)
                return at_err_set(err, AT_ERR_INTERNAL, "setting leader of %s/%d: %s", t->name, p,
                                  rd_kafka_err2str(kerr));
        }
        char parts[16], rfs[16];
        snprintf(parts, sizeof(parts), "%d", t->partitions);
        snprintf(rfs, sizeof(rfs), "%d", rf);
        at_log(AT_LOG_INFO, DS_COMP, "topic created", "topic", t->name, "partitions", parts, "replication_factor",
               rfs, NULL);
    }
    return 0;
}

static void ds_topics_free(ds_t *ds)
{
    for (size_t i = 0; i < ds->ntopics; i++) {
        free(ds->topics[i].name);
        free(ds->topics[i].leaders);
    }
    free(ds->topics);
    ds->topics = NULL;
    ds->ntopics = 0;
}

/* ---- librdkafka logging -------------------------------------------------------------------- */

/* @locality: any librdkafka thread (at_log is thread-safe). */
static void ds_rdkafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    AT_UNUSED(rk);
    at_log_level_t l = level <= 3 ? AT_LOG_ERROR : level == 4 ? AT_LOG_WARN : level <= 6 ? AT_LOG_INFO : AT_LOG_DEBUG;
    /* The handle that owns the mock cluster is never meant to connect anywhere, so its
     * "no bootstrap.servers configured" warning is noise rather than news. */
    if (strcmp(fac, "CONFWARN") == 0 && strstr(buf, "bootstrap.servers") != NULL)
        l = AT_LOG_DEBUG;
    at_log(l, DS_COMP, "librdkafka", "facility", fac, "detail", buf, NULL);
}

/* ---- control channel ----------------------------------------------------------------------- */

/* Every answer is exactly one line; a closed stdout is ignored (SIGPIPE is ignored too). */
static void ds_reply(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void ds_reply(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stdout, fmt, ap);
    va_end(ap);
    fputc('\n', stdout);
    fflush(stdout);
}

/* "all" -> -1, else 1..brokers. */
static int ds_parse_broker(const ds_t *ds, const char *s, int32_t *id)
{
    long v;
    if (s == NULL)
        return -1;
    if (strcmp(s, "all") == 0) {
        *id = -1;
        return 0;
    }
    if (ds_parse_long(s, 1, ds->brokers, &v) != 0)
        return -1;
    *id = (int32_t)v;
    return 0;
}

static void ds_broker_label(int32_t id, char *buf, size_t len)
{
    if (id < 0)
        snprintf(buf, len, "all");
    else
        snprintf(buf, len, "%" PRId32, id);
}

static void ds_cmd_broker_updown(ds_t *ds, char **args, int nargs, bool up)
{
    int32_t id;
    char label[16];
    if (nargs != 1 || ds_parse_broker(ds, args[0], &id) != 0) {
        ds_reply("error usage: broker-%s <id 1..%d|all>", up ? "up" : "down", ds->brokers);
        return;
    }
    ds_pace();
    rd_kafka_resp_err_t kerr = up ? rd_kafka_mock_broker_set_up(ds->mc, id) : rd_kafka_mock_broker_set_down(ds->mc, id);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ds_reply("error %s", rd_kafka_err2str(kerr));
        return;
    }
    ds_broker_label(id, label, sizeof(label));
    at_log(AT_LOG_INFO, DS_COMP, up ? "broker up" : "broker down", "broker", label, NULL);
    ds_reply("ok broker %s %s", label, up ? "up" : "down");
}

static void ds_cmd_broker_rtt(ds_t *ds, char **args, int nargs)
{
    int32_t id;
    long ms;
    char label[16];
    if (nargs != 2 || ds_parse_broker(ds, args[0], &id) != 0 || ds_parse_long(args[1], 0, 600000, &ms) != 0) {
        ds_reply("error usage: broker-rtt <id 1..%d|all> <ms 0..600000>", ds->brokers);
        return;
    }
    ds_pace();
    rd_kafka_resp_err_t kerr = rd_kafka_mock_broker_set_rtt(ds->mc, id, (int)ms);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ds_reply("error %s", rd_kafka_err2str(kerr));
        return;
    }
    ds_broker_label(id, label, sizeof(label));
    at_log(AT_LOG_INFO, DS_COMP, "broker rtt", "broker", label, "rtt_ms", args[1], NULL);
    ds_reply("ok broker %s rtt %ld ms", label, ms);
}

/* Queues @p count copies of an error for @p apikey; the mock pops one per matching request,
 * whichever broker receives it. */
static void ds_push_errors(ds_t *ds, long apikey, const char *count_s, const char *err_s, const char *usage)
{
    long count;
    rd_kafka_resp_err_t kerr;
    if (ds_parse_long(count_s, 1, 1000000, &count) != 0) {
        ds_reply("error usage: %s (count 1..1000000)", usage);
        return;
    }
    if (ds_parse_err(err_s, &kerr) != 0) {
        ds_reply("error unknown error name '%.64s' (expected e.g. _TRANSPORT, NOT_LEADER_FOR_PARTITION, "
                 "REQUEST_TIMED_OUT)",
                 err_s);
        return;
    }
    rd_kafka_resp_err_t *errs = malloc((size_t)count * sizeof(*errs));
    if (errs == NULL) {
        ds_reply("error out of memory");
        return;
    }
    for (long i = 0; i < count; i++)
        errs[i] = kerr;
    ds_pace();
    rd_kafka_mock_push_request_errors_array(ds->mc, (int16_t)apikey, (size_t)count, errs);
    free(errs);
    char keys[16];
    snprintf(keys, sizeof(keys), "%ld", apikey);
    at_log(AT_LOG_INFO, DS_COMP, "request errors queued", "apikey", keys, "count", count_s, "error",
           rd_kafka_err2name(kerr), NULL);
    ds_reply("ok queued %ld x %s for ApiKey %ld", count, rd_kafka_err2name(kerr), apikey);
}

static void ds_cmd_clear_errors(ds_t *ds, char **args, int nargs)
{
    long apikey;
    if (nargs == 0) {
        /* ApiKeys are small numbers (under 100 in every Kafka release to date). */
        for (int16_t k = 0; k < 100; k++) {
            ds_pace();
            rd_kafka_mock_clear_request_errors(ds->mc, k);
        }
        ds_reply("ok cleared all queued request errors");
        return;
    }
    if (nargs != 1 || ds_parse_long(args[0], 0, INT16_MAX, &apikey) != 0) {
        ds_reply("error usage: clear-errors [<apikey>]");
        return;
    }
    ds_pace();
    rd_kafka_mock_clear_request_errors(ds->mc, (int16_t)apikey);
    ds_reply("ok cleared queued request errors for ApiKey %ld", apikey);
}

static void ds_cmd_set_leader(ds_t *ds, char **args, int nargs)
{
    long partition, leader;
    ds_topic_t *t = nargs == 3 ? ds_topic_find(ds, args[0], strlen(args[0])) : NULL;
    if (nargs != 3) {
        ds_reply("error usage: set-leader <topic> <partition> <broker id|-1>");
        return;
    }
    if (t == NULL) {
        ds_reply("error unknown topic '%.64s' (only topics created at start)", args[0]);
        return;
    }
    if (ds_parse_long(args[1], 0, t->partitions - 1, &partition) != 0 ||
        ds_parse_long(args[2], -1, ds->brokers, &leader) != 0 || leader == 0) {
        ds_reply("error usage: set-leader %s <partition 0..%d> <broker 1..%d|-1>", t->name, t->partitions - 1,
                 ds->brokers);
        return;
    }
    ds_pace();
    rd_kafka_resp_err_t kerr = rd_kafka_mock_partition_set_leader(ds->mc, t->name, (int32_t)partition, (int32_t)leader);
    if (kerr != RD_KAFKA_RESP_ERR_NO_ERROR) {
        ds_reply("error %s", rd_kafka_err2str(kerr));
        return;
    }
    t->leaders[partition] = (int32_t)leader;
    at_log(AT_LOG_INFO, DS_COMP, "leader set", "topic", t->name, "partition", args[1], "leader", args[2], NULL);
    ds_reply("ok %s/%ld=%ld", t->name, partition, leader);
}

static void ds_cmd_leaders(ds_t *ds)
{
    fputs("ok", stdout);
    for (size_t i = 0; i < ds->ntopics; i++)
        for (int p = 0; p < ds->topics[i].partitions; p++)
            fprintf(stdout, " %s/%d=%" PRId32, ds->topics[i].name, p, ds->topics[i].leaders[p]);
    fputc('\n', stdout);
    fflush(stdout);
}

static void ds_command(ds_t *ds, char *line)
{
    char *args[8];
    int nargs = 0;
    char *save = NULL;
    char *cmd = strtok_r(line, " \t\r", &save);
    if (cmd == NULL)
        return; /* blank lines are not commands and get no answer */
    for (char *a; nargs < (int)AT_ARRAY_LEN(args) && (a = strtok_r(NULL, " \t\r", &save)) != NULL;)
        args[nargs++] = a;
    if (strtok_r(NULL, " \t\r", &save) != NULL) {
        ds_reply("error too many arguments");
        return;
    }
    at_log(AT_LOG_DEBUG, DS_COMP, "control command", "cmd", cmd, NULL);

    if (strcmp(cmd, "broker-down") == 0) {
        ds_cmd_broker_updown(ds, args, nargs, false);
    } else if (strcmp(cmd, "broker-up") == 0) {
        ds_cmd_broker_updown(ds, args, nargs, true);
    } else if (strcmp(cmd, "broker-rtt") == 0) {
        ds_cmd_broker_rtt(ds, args, nargs);
    } else if (strcmp(cmd, "produce-errors") == 0) {
        if (nargs != 2)
            ds_reply("error usage: produce-errors <count> <ERRNAME>");
        else
            ds_push_errors(ds, DS_API_PRODUCE, args[0], args[1], "produce-errors <count> <ERRNAME>");
    } else if (strcmp(cmd, "request-errors") == 0) {
        long apikey;
        if (nargs != 3 || ds_parse_long(args[0], 0, INT16_MAX, &apikey) != 0)
            ds_reply("error usage: request-errors <apikey> <count> <ERRNAME>");
        else
            ds_push_errors(ds, apikey, args[1], args[2], "request-errors <apikey> <count> <ERRNAME>");
    } else if (strcmp(cmd, "clear-errors") == 0) {
        ds_cmd_clear_errors(ds, args, nargs);
    } else if (strcmp(cmd, "set-leader") == 0) {
        ds_cmd_set_leader(ds, args, nargs);
    } else if (strcmp(cmd, "leaders") == 0 && nargs == 0) {
        ds_cmd_leaders(ds);
    } else if (strcmp(cmd, "bootstraps") == 0 && nargs == 0) {
        ds_reply("ok %s", rd_kafka_mock_cluster_bootstraps(ds->mc));
    } else if (strcmp(cmd, "help") == 0) {
        ds_reply("ok commands: broker-down <id|all>; broker-up <id|all>; broker-rtt <id|all> <ms>; "
                 "produce-errors <count> <ERR>; request-errors <apikey> <count> <ERR>; clear-errors [<apikey>]; "
                 "set-leader <topic> <partition> <id|-1>; leaders; bootstraps; help");
    } else {
        ds_reply("error unknown command '%.64s' (try help)", cmd);
    }
}

/* Line assembly for stdin. A line longer than DS_LINE_MAX is answered with one error and
 * skipped up to its newline. */
typedef struct ds_input_s {
    char buf[DS_LINE_MAX + 1];
    size_t len;
    bool discarding;
} ds_input_t;

/* Returns false once stdin is finished (EOF or error). */
static bool ds_read_stdin(ds_t *ds, ds_input_t *in)
{
    char chunk[512];
    ssize_t n = read(STDIN_FILENO, chunk, sizeof(chunk));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    if (n <= 0) {
        at_log(AT_LOG_INFO, DS_COMP, n == 0 ? "stdin closed; control channel off, still running"
                                            : "stdin unreadable; control channel off, still running",
               NULL);
        return false;
    }
    for (ssize_t i = 0; i < n; i++) {
        char c = chunk[i];
        if (c == '\n') {
            if (!in->discarding) {
                in->buf[in->len] = '\0';
                ds_command(ds, in->buf);
            }
            in->len = 0;
            in->discarding = false;
        } else if (!in->discarding) {
            if (in->len == DS_LINE_MAX) {
                ds_reply("error line longer than %d bytes", DS_LINE_MAX);
                in->discarding = true;
                in->len = 0;
            } else {
                in->buf[in->len++] = c;
            }
        }
    }
    return true;
}

/* ---- main ---------------------------------------------------------------------------------- */

/*
 * SIGINT/SIGTERM arrive through a signalfd. Their dispositions are reset first: a shell
 * starting us in the background without job control sets SIGINT to "ignore", and an ignored
 * signal is discarded before a signalfd could see it. The mask is set before librdkafka
 * starts its threads so that none of them can take the signal instead.
 */
static int ds_signals_setup(void)
{
    sigset_t set;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof(dfl));
    dfl.sa_handler = SIG_DFL;
    sigaction(SIGINT, &dfl, NULL);
    sigaction(SIGTERM, &dfl, NULL);
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &set, NULL) != 0)
        return -1;
    return signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

static rd_kafka_t *ds_handle_new(at_log_level_t level, at_err_t *err)
{
    char errstr[512];
    rd_kafka_conf_t *kconf = rd_kafka_conf_new();
    /* librdkafka's syslog levels: 7 debug, 6 info, 4 warning, 3 error. */
    const char *klevel = level == AT_LOG_DEBUG ? "7" : level == AT_LOG_INFO ? "6" : level == AT_LOG_WARN ? "4" : "3";
    rd_kafka_conf_set_log_cb(kconf, ds_rdkafka_log);
    if (rd_kafka_conf_set(kconf, "log_level", klevel, errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(kconf, "client.id", "adtrack-devstream", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK) {
        rd_kafka_conf_destroy(kconf);
        at_err_set(err, AT_ERR_INTERNAL, "librdkafka config: %s", errstr);
        return NULL;
    }
    /* The conf object is owned by the handle on success only. */
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, kconf, errstr, sizeof(errstr));
    if (rk == NULL) {
        rd_kafka_conf_destroy(kconf);
        at_err_set(err, AT_ERR_INTERNAL, "librdkafka handle: %s", errstr);
    }
    return rk;
}

int main(int argc, char **argv)
{
    ds_conf_t conf;
    ds_t ds;
    at_err_t err;
    at_log_level_t level;
    int rc = 1;
    int sfd = -1;

    memset(&conf, 0, sizeof(conf));
    memset(&ds, 0, sizeof(ds));
    at_err_clear(&err);

    int lrc = at_conf_load(&ds_table, &conf, argc, argv, environ, stdout, &err);
    if (lrc == AT_CONF_EXIT_HELP)
        return 0;
    if (lrc != 0) {
        fprintf(stderr, "adtrack-devstream: %s\n", err.msg);
        return 2;
    }
    if (at_log_parse_level(conf.log_level, &level) != 0) {
        fprintf(stderr, "adtrack-devstream: --log-level: expected debug, info, warn or error, got '%.16s'\n",
                conf.log_level);
        at_conf_free(&ds_table, &conf);
        return 2;
    }
    at_log_set_level(level);
    ds.brokers = (int)conf.brokers;

    for (size_t i = 0; i < AT_ARRAY_LEN(ds_builtin_topics); i++)
        if (ds_topic_plan(&ds, ds_builtin_topics[i], strlen(ds_builtin_topics[i]), (int)conf.partitions, &err) != 0)
            goto usage_fail;
    for (size_t i = 0; i < conf.topics.count; i++)
        if (ds_topic_plan_arg(&ds, conf.topics.items[i], (int)conf.partitions, &err) != 0)
            goto usage_fail;

    sfd = ds_signals_setup();
    if (sfd < 0) {
        at_log(AT_LOG_ERROR, DS_COMP, "signal setup failed", "error", strerror(errno), NULL);
        goto out;
    }
    ds.rk = ds_handle_new(level, &err);
    if (ds.rk == NULL)
        goto fail;
    ds.mc = rd_kafka_mock_cluster_new(ds.rk, ds.brokers);
    if (ds.mc == NULL) {
        at_err_set(&err, AT_ERR_INTERNAL, "rd_kafka_mock_cluster_new failed (see librdkafka log)");
        goto fail;
    }
    if (ds_topics_create(&ds, &err) != 0)
        goto fail;

    const char *bootstraps = rd_kafka_mock_cluster_bootstraps(ds.mc);
    /* The contract with scripts and tests: the bootstrap list is the first stdout line. */
    ds_reply("%s", bootstraps);
    char nb[16];
    snprintf(nb, sizeof(nb), "%d", ds.brokers);
    at_log(AT_LOG_INFO, DS_COMP, "ready (in-memory mock cluster; for development and tests only)", "bootstraps",
           bootstraps, "brokers", nb, "leaders", "partition p -> broker (p mod brokers)+1", NULL);

    ds_input_t in;
    memset(&in, 0, sizeof(in));
    struct pollfd pfd[2] = {{.fd = sfd, .events = POLLIN}, {.fd = STDIN_FILENO, .events = POLLIN}};
    for (;;) {
        if (poll(pfd, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            at_log(AT_LOG_ERROR, DS_COMP, "poll failed", "error", strerror(errno), NULL);
            goto out;
        }
        if (pfd[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                at_log(AT_LOG_INFO, DS_COMP, "stopping", "signal", strsignal((int)si.ssi_signo), NULL);
                rc = 0;
                break;
            }
        }
        /* A negative fd makes poll() skip the entry: that is how the channel is switched off. */
        if (pfd[1].fd >= 0 && (pfd[1].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL))) {
            if ((pfd[1].revents & POLLNVAL) || !ds_read_stdin(&ds, &in))
                pfd[1].fd = -1;
        }
    }
    goto out;

usage_fail:
    fprintf(stderr, "adtrack-devstream: %s\n", err.msg);
    rc = 2;
    goto out;
fail:
    at_log(AT_LOG_ERROR, DS_COMP, "startup failed", "error", err.msg, NULL);
out:
    if (ds.mc != NULL)
        rd_kafka_mock_cluster_destroy(ds.mc);
    if (ds.rk != NULL)
        rd_kafka_destroy(ds.rk);
    if (sfd >= 0)
        close(sfd);
    ds_topics_free(&ds);
    at_conf_free(&ds_table, &conf);
    return rc;
}
