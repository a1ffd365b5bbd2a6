/*
 * lt_conf.c: the option table of adtrack-loadtest (see lt_conf.h).
 */
#include "lt_conf.h"

#include "at_log.h"
#include "lt_buf.h"

#include <ctype.h>
#include <stdlib.h>
#include <strings.h>

#define O(f) AT_OFF(lt_conf_t, f)

static const at_conf_opt_t opts[] = {
    {"target", AT_CONF_STR, O(target), 0, 1024, "",
     "Base URL of the system under test, http://host[:port][/prefix] (required)"},
    {"rate", AT_CONF_INT, O(rate), 0, 10000000, "0",
     "Constant arrival rate in requests per second (open model); 0 = not set: a timed capture then replays at its "
     "original timing"},
    {"duration", AT_CONF_STR, O(duration), 0, 32, "",
     "How long to generate load (10s, 5m, 1h); default 10s with --rate, the whole capture when replaying its timing"},
    {"stages", AT_CONF_STR, O(stages), 0, 65536, "",
     "Ramp stages rate:duration[,rate:duration...]; each stage ramps linearly from the previous rate (the first "
     "from --start-rate) to its own, e.g. 1000:10s,5000:30s"},
    {"start-rate", AT_CONF_INT, O(start_rate), 0, 10000000, "0", "Rate at which the first of --stages starts"},
    {"threads", AT_CONF_INT, O(threads), 1, 256, "2", "Worker threads, each with its own epoll loop"},
    {"connections", AT_CONF_INT, O(connections), 1, 100000, "64",
     "Keep-alive connections in total, spread over the threads"},
    {"max-requests", AT_CONF_INT, O(max_requests), 0, INT64_MAX, "0", "Stop after this many requests (0 = no limit)"},
    {"timeout", AT_CONF_STR, O(timeout), 0, 32, "10s", "Time a request may take from being sent to its full response"},
    {"connect-timeout", AT_CONF_STR, O(connect_timeout), 0, 32, "3s", "Time a TCP connection may take to establish"},
    {"max-lag", AT_CONF_STR, O(max_lag), 0, 32, "10s",
     "A request that cannot be sent within this time after its intended time (every connection busy) is dropped "
     "and counted"},
    {"late", AT_CONF_STR, O(late), 0, 32, "10ms",
     "A request sent more than this after its intended time counts as late"},
    {"interval", AT_CONF_STR, O(interval), 0, 32, "1s",
     "Time-series resolution for the report (raised automatically to keep at most 1200 points)"},
    {"capture", AT_CONF_STR, O(capture), 0, 4096, "",
     "Replay this capture (access log, URL list or JSON lines; - for stdin) instead of synthetic traffic"},
    {"capture-format", AT_CONF_STR, O(capture_format), 0, 16, "auto", "Capture format: auto, clf, urls or jsonl"},
    {"speed", AT_CONF_STR, O(speed), 0, 32, "1",
     "Replay a timed capture this many times faster than recorded (0.5 = half speed)"},
    {"profile", AT_CONF_STR, O(profile), 0, 4096, "",
     "Synthetic traffic profile (JSON; see docs/LOADTEST.md); default: the built-in mix"},
    {"seed", AT_CONF_STR, O(seed), 0, 20, "", "Seed for synthetic traffic (overrides the profile's seed)"},
    {"click-key", AT_CONF_STR, O(click_secret), 0, 1024, "",
     "The collector's --click-key (HMAC key for click destinations), so synthetic clicks carry valid signatures"},
    {"header", AT_CONF_LIST, O(header), 0, 64, "", "Extra request header \"Name: value\" (repeatable)"},
    {"json", AT_CONF_STR, O(json), 0, 4096, "", "Write the JSON report to this file (- for stdout)"},
    {"html", AT_CONF_STR, O(html), 0, 4096, "", "Write the self-contained HTML report with charts to this file"},
    {"progress", AT_CONF_STR, O(progress), 0, 8, "auto",
     "Live one-line progress on stderr: auto (when stderr is a terminal), on or off"},
    {"verify", AT_CONF_STR, O(verify), 0, 4096, "",
     "After the run, reconcile every acknowledged request with the store: kafka:<bootstrap>, file:<dir> or "
     "mongodb://..."},
    {"verify-wait", AT_CONF_STR, O(verify_wait), 0, 32, "60s",
     "Longest time --verify waits for events still travelling through the pipeline"},
    {"verify-quiet", AT_CONF_STR, O(verify_quiet), 0, 32, "5s",
     "--verify stops early when nothing new arrived for this long"},
    {"verify-topic", AT_CONF_STR, O(verify_topic), 1, 249, "adtrack.events.raw",
     "Kafka topic with the events (--verify kafka:)"},
    {"verify-rejected-topic", AT_CONF_STR, O(verify_rejected_topic), 0, 249, "adtrack.events.rejected",
     "Kafka topic with rejected events (--verify kafka:; empty = do not read)"},
    {"verify-db", AT_CONF_STR, O(verify_db), 1, 64, "adtrack",
     "MongoDB database when the URI names none (--verify mongodb://)"},
    {"run-id", AT_CONF_STR, O(run_id), 0, 32, "",
     "Run id for request tags (tag=<run-id>:<seq>); default: random. Letters, digits, '-' and '_'"},
    {"tag", AT_CONF_BOOL, O(tag), 0, 0, "false", "Tag requests even without --verify (to reconcile later)"},
    {"log-level", AT_CONF_STR, O(log_level), 0, 8, "info", "debug, info, warn or error"},
};

const at_conf_table_t lt_conf_table = {
    .program = "adtrack-loadtest",
    .summary = "Open-model load generator for adtrack: replays captured or synthetic pixel/click/beacon traffic at a "
               "fixed arrival rate (or ramp stages), measures latency from each request's intended send time "
               "(no coordinated omission), reports percentiles, throughput and errors as text, JSON and HTML, and "
               "with --verify reconciles every acknowledged request against the event store (lost, duplicated, "
               "rejected). Exit status: 0 ok, 1 --verify found lost or duplicated events, 2 bad options or input, "
               "3 target unreachable or the run failed.",
    .opts = opts,
    .nopts = AT_ARRAY_LEN(opts),
};

static int dur(const char *s, const char *name, int64_t min_ns, int64_t *out, at_err_t *err)
{
    char what[48];
    snprintf(what, sizeof(what), "--%s", name);
    if (lt_parse_duration(s, out, what, err) < 0)
        return -1;
    if (*out < min_ns)
        return at_err_set(err, AT_ERR_RANGE, "--%s: must be at least %lld ms, got '%s'", name,
                          (long long)(min_ns / 1000000), s);
    return 0;
}

static int join_headers(lt_opts_t *o, at_err_t *err)
{
    const at_conf_list_t *l = &o->c.header;
    if (l->count == 0)
        return 0;
    lt_buf_t b = {0};
    for (size_t i = 0; i < l->count; i++) {
        const char *h = l->items[i];
        const char *colon = strchr(h, ':');
        if (colon == NULL || colon == h) {
            lt_buf_free(&b);
            return at_err_set(err, AT_ERR_INVALID, "--header: expected \"Name: value\", got '%.64s'", h);
        }
        for (const char *p = h; p < colon; p++) {
            if (!(isalnum((unsigned char)*p) || strchr("!#$%&'*+-.^_`|~", *p))) {
                lt_buf_free(&b);
                return at_err_set(err, AT_ERR_INVALID, "--header: bad header name in '%.64s'", h);
            }
        }
        for (const char *p = colon; *p; p++) {
            if ((unsigned char)*p < 0x20 && *p != '\t') {
                lt_buf_free(&b);
                return at_err_set(err, AT_ERR_INVALID, "--header: control character in '%.64s'", h);
            }
        }
        size_t nlen = (size_t)(colon - h);
        if ((nlen == 4 && strncasecmp(h, "host", 4) == 0) ||
            (nlen == 14 && strncasecmp(h, "content-length", 14) == 0) ||
            (nlen == 10 && strncasecmp(h, "connection", 10) == 0)) {
            lt_buf_free(&b);
            return at_err_set(err, AT_ERR_INVALID, "--header: %.*s is set by the load tester itself", (int)nlen, h);
        }
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        lt_buf_append(&b, h, nlen);
        lt_buf_puts(&b, ": ");
        lt_buf_puts(&b, v);
        lt_buf_puts(&b, "\r\n");
    }
    if (b.oom) {
        lt_buf_free(&b);
        return at_err_set(err, AT_ERR_NOMEM, "out of memory");
    }
    o->headers = b.data;
    return 0;
}

int lt_opts_load(lt_opts_t *o, int argc, char **argv, char **envp, FILE *out, at_err_t *err)
{
    memset(o, 0, sizeof(*o));
    int rc = at_conf_load(&lt_conf_table, &o->c, argc, argv, envp, out, err);
    if (rc != 0)
        return rc;
    lt_conf_t *c = &o->c;
    if (c->target[0] == '\0')
        return at_err_set(err, AT_ERR_INVALID, "--target: required, e.g. --target http://127.0.0.1:8080");
    if (dur(c->timeout, "timeout", 1000000, &o->timeout_ns, err) < 0 ||
        dur(c->connect_timeout, "connect-timeout", 1000000, &o->connect_timeout_ns, err) < 0 ||
        dur(c->max_lag, "max-lag", 0, &o->max_lag_ns, err) < 0 || dur(c->late, "late", 0, &o->late_ns, err) < 0 ||
        dur(c->interval, "interval", 10000000, &o->interval_ns, err) < 0 ||
        dur(c->verify_wait, "verify-wait", 0, &o->verify_wait_ns, err) < 0 ||
        dur(c->verify_quiet, "verify-quiet", 0, &o->verify_quiet_ns, err) < 0)
        return -1;
    if (c->duration[0] != '\0' && dur(c->duration, "duration", 1000000, &o->duration_ns, err) < 0)
        return -1;
    if (lt_parse_double(c->speed, &o->speed, "--speed", err) < 0)
        return -1;
    if (!(o->speed >= 0.001 && o->speed <= 1000000))
        return at_err_set(err, AT_ERR_RANGE, "--speed: expected a factor from 0.001 to 1000000, got '%s'", c->speed);
    if (lt_capture_format_parse(c->capture_format, &o->capture_format, err) < 0)
        return -1;
    if (strcmp(c->progress, "auto") == 0)
        o->progress = -1;
    else if (strcmp(c->progress, "on") == 0)
        o->progress = 1;
    else if (strcmp(c->progress, "off") == 0)
        o->progress = 0;
    else
        return at_err_set(err, AT_ERR_INVALID, "--progress: expected auto, on or off, got '%.16s'", c->progress);
    if (c->seed[0] != '\0') {
        char *end = NULL;
        unsigned long long s = strtoull(c->seed, &end, 10);
        if (*end != '\0' || !isdigit((unsigned char)c->seed[0]))
            return at_err_set(err, AT_ERR_INVALID, "--seed: expected a non-negative integer, got '%.20s'", c->seed);
        o->have_seed = true;
        o->seed = s;
    }
    for (const char *p = c->run_id; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_'))
            return at_err_set(err, AT_ERR_INVALID, "--run-id: only letters, digits, '-' and '_' are allowed");
    if (c->connections < c->threads)
        return at_err_set(err, AT_ERR_RANGE,
                          "--connections: need at least one per thread (%lld threads, %lld connections)",
                          (long long)c->threads, (long long)c->connections);
    if (c->stages[0] != '\0' && c->rate > 0)
        return at_err_set(err, AT_ERR_INVALID, "--rate and --stages: give one or the other");
    if (c->stages[0] != '\0' && c->duration[0] != '\0')
        return at_err_set(err, AT_ERR_INVALID,
                          "--stages and --duration: the stages set the duration; give one or the other");
    if (c->stages[0] != '\0') {
        if (lt_parse_stages(c->stages, &o->stages, &o->nstages, err) < 0)
            return -1;
        o->rate_given = true;
    } else if (c->rate > 0) {
        o->stages = calloc(1, sizeof(*o->stages));
        if (o->stages == NULL)
            return at_err_set(err, AT_ERR_NOMEM, "out of memory");
        o->stages[0].rate = (double)c->rate;
        o->stages[0].dur_ns = o->duration_ns ? o->duration_ns : 10000000000LL;
        o->nstages = 1;
        o->rate_given = true;
    }
    if (c->start_rate > 0 && c->stages[0] == '\0')
        return at_err_set(err, AT_ERR_INVALID, "--start-rate: only meaningful with --stages");
    if (!o->rate_given && c->capture[0] == '\0')
        return at_err_set(err, AT_ERR_INVALID,
                          "--rate or --stages: required for synthetic traffic (or give --capture with timestamps to "
                          "replay its timing)");
    if (c->verify[0] != '\0' && strncmp(c->verify, "kafka:", 6) != 0 && strncmp(c->verify, "file:", 5) != 0 &&
        strncmp(c->verify, "mongodb://", 10) != 0 && strncmp(c->verify, "mongodb+srv://", 14) != 0)
        return at_err_set(err, AT_ERR_INVALID,
                          "--verify: expected kafka:<bootstrap>, file:<dir> or mongodb://..., got '%.64s'", c->verify);
    at_log_level_t lvl;
    if (at_log_parse_level(c->log_level, &lvl) < 0)
        return at_err_set(err, AT_ERR_INVALID, "--log-level: expected debug, info, warn or error");
    at_log_set_level(lvl);
    return join_headers(o, err);
}

void lt_opts_free(lt_opts_t *o)
{
    if (o == NULL)
        return;
    at_conf_free(&lt_conf_table, &o->c);
    free(o->stages);
    free(o->headers);
    memset(o, 0, sizeof(*o));
}
