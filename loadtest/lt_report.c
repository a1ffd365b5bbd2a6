/*
 * lt_report.c: text and JSON reports (see lt_report.h).
 */
#include "lt_report.h"

#include "lt_json.h"

#include <math.h>
#include <time.h>

const double lt_report_pcts[] = {50, 75, 90, 95, 99, 99.9, 99.99};
const char *const lt_report_pct_keys[] = {"p50", "p75", "p90", "p95", "p99", "p99_9", "p99_99"};
const size_t lt_report_npcts = AT_ARRAY_LEN(lt_report_pcts);

const char *lt_fmt_us(double us, char *buf, size_t len)
{
    if (us < 1000)
        snprintf(buf, len, "%.0fus", us);
    else if (us < 10000)
        snprintf(buf, len, "%.2fms", us / 1000);
    else if (us < 1000000)
        snprintf(buf, len, "%.1fms", us / 1000);
    else
        snprintf(buf, len, "%.3fs", us / 1e6);
    return buf;
}

const char *lt_fmt_time(int64_t unix_ms, char *buf, size_t len)
{
    time_t s = (time_t)(unix_ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char tmp[32];
    strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, len, "%s.%03dZ", tmp, (int)(unix_ms % 1000));
    return buf;
}

void lt_report_rates(const lt_report_t *r, lt_report_rates_t *out)
{
    const lt_stats_t *st = r->st;
    memset(out, 0, sizeof(*out));
    double planned = (double)r->planned_ns / 1e9;
    double elapsed = (double)r->elapsed_ns / 1e9;
    /* The send window: the schedule's length, or longer when sends ran late. Counting from
     * the start, an arrival at the very end of the plan still belongs to the plan. */
    double window = AT_MAX(planned, (double)st->last_send_ns / 1e9);
    if (planned > 0) {
        out->target = (double)st->intended / planned;
        out->on_time = (double)(st->sent - st->late) / planned;
    }
    if (window > 0)
        out->sent = (double)st->sent / window;
    if (elapsed > 0) {
        out->completed = (double)st->completed / elapsed;
        out->ok = (double)st->ok / elapsed;
    }
    out->success_ratio = st->intended ? (double)st->ok / (double)st->intended : 0;
    for (int i = 0; i < LT_FAIL_COUNT; i++)
        out->failed += st->failed[i];
}

/* ---- text ---- */

static void text_hist(FILE *out, const char *name, const char *what, const lt_hist_t *h)
{
    char a[32], b[32];
    fprintf(out, "%-10s %s\n           ", name, what);
    if (h->total == 0) {
        fprintf(out, "(no samples)\n");
        return;
    }
    for (size_t i = 0; i < lt_report_npcts; i++)
        fprintf(out, "%s %s  ", lt_report_pct_keys[i],
                lt_fmt_us((double)lt_hist_percentile(h, lt_report_pcts[i]), a, sizeof(a)));
    fprintf(out, "max %s  mean %s\n", lt_fmt_us((double)h->max, a, sizeof(a)),
            lt_fmt_us(lt_hist_mean(h), b, sizeof(b)));
}

void lt_report_text(const lt_report_t *r, FILE *out)
{
    const lt_stats_t *st = r->st;
    lt_report_rates_t rt;
    lt_report_rates(r, &rt);
    fprintf(out, "adtrack-loadtest %s -> %s\n", LT_VERSION, r->target);
    fprintf(out, "load       %s (%s), ", r->source, r->source_detail);
    if (strcmp(r->mode, "replay") == 0)
        fprintf(out, "original timing x %g", r->speed);
    else if (r->stages)
        fprintf(out, "stages %s", r->stages);
    else
        fprintf(out, "%.0f/s", rt.target);
    fprintf(out, " over %.1fs, %d threads, %d connections%s\n", (double)r->planned_ns / 1e9, r->threads, r->connections,
            r->interrupted ? "  [INTERRUPTED]" : "");
    fprintf(out,
            "requests   intended %llu  sent %llu (late %llu, dropped %llu)  completed %llu  ok %llu  failed %llu\n",
            (unsigned long long)st->intended, (unsigned long long)st->sent, (unsigned long long)st->late,
            (unsigned long long)st->dropped, (unsigned long long)st->completed, (unsigned long long)st->ok,
            (unsigned long long)rt.failed);
    if (st->late > 0)
        fprintf(out,
                "late       %llu waited for a busy connection (the target), %llu had one free (the load generator "
                "fell behind)\n",
                (unsigned long long)(st->late - st->late_sender), (unsigned long long)st->late_sender);
    fprintf(out, "success    %.3f%% of intended requests got a 2xx/3xx\n", 100.0 * rt.success_ratio);
    fprintf(out, "rate/s     target %.1f  sent %.1f  on time %.1f  completed %.1f\n", rt.target, rt.sent, rt.on_time,
            rt.completed);
    fprintf(out, "errors     timeout %llu  closed %llu  protocol %llu  connect %llu  (retried %llu)\n",
            (unsigned long long)st->failed[LT_FAIL_TIMEOUT], (unsigned long long)st->failed[LT_FAIL_CLOSED],
            (unsigned long long)st->failed[LT_FAIL_PROTOCOL], (unsigned long long)st->connect_errors,
            (unsigned long long)st->retried);
    fprintf(out, "status    ");
    bool any = false;
    for (int s = 0; s < 1000; s++) {
        if (st->status[s]) {
            fprintf(out, " %d: %llu", s, (unsigned long long)st->status[s]);
            any = true;
        }
    }
    fprintf(out, "%s\n", any ? "" : " (none)");
    text_hist(out, "latency", "from intended send time (includes waiting for a connection):", &st->latency);
    text_hist(out, "service", "from actual send time (what a closed-loop tool would report):", &st->service);
    text_hist(out, "send lag", "actual minus intended send time:", &st->lag);
    if (r->capture) {
        const lt_capture_t *c = r->capture;
        fprintf(out, "capture    %s: %llu lines, %zu requests, %llu bad, %llu skipped",
                lt_capture_format_str(c->format), (unsigned long long)c->lines, c->n, (unsigned long long)c->bad,
                (unsigned long long)c->skipped);
        if (c->nbad_kept) {
            fprintf(out, " (bad lines:");
            for (size_t i = 0; i < c->nbad_kept; i++)
                fprintf(out, " %llu", (unsigned long long)c->bad_lines[i]);
            fprintf(out, "%s; first: %s)", c->bad > c->nbad_kept ? " ..." : "", c->bad_reasons[0]);
        }
        fprintf(out, "\n");
    }
    if (r->verify_error) {
        fprintf(out, "verify     FAILED to read the store: %s\n", r->verify_error);
    } else if (r->verify) {
        const lt_verify_result_t *v = r->verify;
        fprintf(out,
                "verify     %s: %llu acknowledged requests (%llu events) checked: lost %llu, duplicated %llu, rejected "
                "%llu, redelivered %llu  (%s after %.1fs)\n",
                v->store, (unsigned long long)v->checked_requests, (unsigned long long)v->expected_events,
                (unsigned long long)v->lost, (unsigned long long)v->duplicated, (unsigned long long)v->rejected,
                (unsigned long long)v->redelivered, v->settled ? "settled" : "gave up waiting",
                (double)v->waited_ms / 1000);
        for (size_t i = 0; i <= LT_VERIFY_REASONS; i++)
            if (v->reason_counts[i])
                fprintf(out, "           rejected %s: %llu\n", v->reasons[i], (unsigned long long)v->reason_counts[i]);
        if (v->nlost_seqs) {
            fprintf(out, "           lost:");
            for (size_t i = 0; i < v->nlost_seqs; i++)
                fprintf(out, " %s:%llu", r->run_id, (unsigned long long)v->lost_seqs[i]);
            fprintf(out, "%s\n", v->lost_requests > v->nlost_seqs ? " ..." : "");
        }
        if (v->ndup_seqs) {
            fprintf(out, "           duplicated:");
            for (size_t i = 0; i < v->ndup_seqs; i++)
                fprintf(out, " %s:%llu", r->run_id, (unsigned long long)v->dup_seqs[i]);
            fprintf(out, "%s\n", v->duplicated_requests > v->ndup_seqs ? " ..." : "");
        }
        if (v->unacked_found)
            fprintf(out, "           %llu events were stored for requests that got no 2xx/3xx (e.g. timed out)\n",
                    (unsigned long long)v->unacked_found);
        if (v->note[0])
            fprintf(out, "           note: %s\n", v->note);
    }
}

/* ---- JSON ---- */

static void json_hist(lt_json_t *j, const char *key, const lt_hist_t *h)
{
    lt_json_obj(j, key);
    lt_json_u64(j, "count", h->total);
    lt_json_u64(j, "min", h->total ? h->min : 0);
    lt_json_dbl(j, "mean", round(lt_hist_mean(h) * 10) / 10);
    lt_json_dbl(j, "stddev", round(lt_hist_stddev(h) * 10) / 10);
    for (size_t i = 0; i < lt_report_npcts; i++)
        lt_json_u64(j, lt_report_pct_keys[i], lt_hist_percentile(h, lt_report_pcts[i]));
    lt_json_u64(j, "max", h->max);
    lt_json_end_obj(j);
}

/* Points of the percentile distribution (for plotting): from p0 to p99.999. */
static const double dist_pcts[] = {0,  10, 20,   30, 40,   50, 60,    70,   75,    80,   85,    90,    92.5,   95,
                                   96, 97, 97.5, 98, 98.5, 99, 99.25, 99.5, 99.75, 99.9, 99.95, 99.99, 99.999, 100};

void lt_report_json(const lt_report_t *r, lt_buf_t *out)
{
    const lt_stats_t *st = r->st;
    lt_report_rates_t rt;
    lt_report_rates(r, &rt);
    char tbuf[40];
    lt_json_t j;
    lt_json_init(&j, out, true);
    lt_json_obj(&j, NULL);
    lt_json_str(&j, "tool", "adtrack-loadtest");
    lt_json_str(&j, "version", LT_VERSION);
    lt_json_str(&j, "target", r->target);
    lt_json_str(&j, "started", lt_fmt_time(r->started_unix_ms, tbuf, sizeof(tbuf)));
    lt_json_str(&j, "run_id", r->run_id);
    lt_json_bool(&j, "interrupted", r->interrupted);

    lt_json_obj(&j, "config");
    lt_json_str(&j, "source", r->source);
    lt_json_str(&j, "source_detail", r->source_detail);
    lt_json_str(&j, "mode", r->mode);
    lt_json_str(&j, "stages", r->stages);
    lt_json_dbl(&j, "speed", r->speed);
    lt_json_i64(&j, "threads", r->threads);
    lt_json_i64(&j, "connections", r->connections);
    lt_json_dbl(&j, "planned_s", (double)r->planned_ns / 1e9);
    lt_json_dbl(&j, "timeout_ms", (double)r->timeout_ns / 1e6);
    lt_json_dbl(&j, "late_ms", (double)r->late_ns / 1e6);
    lt_json_dbl(&j, "max_lag_ms", (double)r->max_lag_ns / 1e6);
    lt_json_end_obj(&j);

    lt_json_obj(&j, "requests");
    lt_json_u64(&j, "intended", st->intended);
    lt_json_u64(&j, "sent", st->sent);
    lt_json_u64(&j, "late", st->late);
    lt_json_u64(&j, "late_sender", st->late_sender);
    lt_json_u64(&j, "dropped", st->dropped);
    lt_json_u64(&j, "completed", st->completed);
    lt_json_u64(&j, "ok", st->ok);
    lt_json_u64(&j, "failed", rt.failed);
    lt_json_u64(&j, "retried", st->retried);
    lt_json_end_obj(&j);
    lt_json_dbl(&j, "success_ratio", rt.success_ratio);

    lt_json_obj(&j, "errors");
    for (int i = 0; i < LT_FAIL_COUNT; i++)
        lt_json_u64(&j, lt_fail_str((lt_fail_t)i), st->failed[i]);
    lt_json_u64(&j, "connect", st->connect_errors);
    lt_json_end_obj(&j);

    lt_json_obj(&j, "status");
    for (int s = 0; s < 1000; s++) {
        if (st->status[s]) {
            char k[8];
            snprintf(k, sizeof(k), "%d", s);
            lt_json_u64(&j, k, st->status[s]);
        }
    }
    lt_json_end_obj(&j);

    lt_json_obj(&j, "rates");
    lt_json_dbl(&j, "target", rt.target);
    lt_json_dbl(&j, "sent", rt.sent);
    lt_json_dbl(&j, "on_time", rt.on_time);
    lt_json_dbl(&j, "completed", rt.completed);
    lt_json_dbl(&j, "ok", rt.ok);
    lt_json_end_obj(&j);

    lt_json_dbl(&j, "planned_s", (double)r->planned_ns / 1e9);
    lt_json_dbl(&j, "send_window_s", AT_MAX((double)r->planned_ns, (double)st->last_send_ns) / 1e9);
    lt_json_dbl(&j, "elapsed_s", (double)r->elapsed_ns / 1e9);

    lt_json_obj(&j, "network");
    lt_json_u64(&j, "connections_opened", st->connects);
    lt_json_u64(&j, "bytes_sent", st->bytes_out);
    lt_json_u64(&j, "bytes_received", st->bytes_in);
    lt_json_end_obj(&j);

    json_hist(&j, "latency_us", &st->latency);
    json_hist(&j, "service_time_us", &st->service);
    json_hist(&j, "send_lag_us", &st->lag);

    lt_json_arr(&j, "percentiles");
    for (size_t i = 0; i < AT_ARRAY_LEN(dist_pcts); i++) {
        lt_json_obj(&j, NULL);
        lt_json_dbl(&j, "p", dist_pcts[i]);
        lt_json_u64(&j, "latency_us", lt_hist_percentile(&st->latency, dist_pcts[i]));
        lt_json_u64(&j, "service_time_us", lt_hist_percentile(&st->service, dist_pcts[i]));
        lt_json_end_obj(&j);
    }
    lt_json_end_arr(&j);

    lt_json_obj(&j, "timeline");
    lt_json_dbl(&j, "interval_s", (double)r->interval_ns / 1e9);
    lt_json_arr(&j, "points");
    for (size_t i = 0; i < st->niv; i++) {
        const lt_interval_t *iv = &st->iv[i];
        int64_t t = (int64_t)i * r->interval_ns;
        lt_json_obj(&j, NULL);
        lt_json_dbl(&j, "t", (double)t / 1e9);
        lt_json_dbl(&j, "target_rate", t < r->planned_ns ? lt_sched_rate_at(r->sched, t + r->interval_ns / 2) : 0);
        lt_json_u64(&j, "intended", iv->intended);
        lt_json_u64(&j, "sent", iv->sent);
        lt_json_u64(&j, "late", iv->late);
        lt_json_u64(&j, "dropped", iv->dropped);
        lt_json_u64(&j, "completed", iv->completed);
        lt_json_u64(&j, "ok", iv->ok);
        lt_json_u64(&j, "failed", iv->failed);
        lt_json_u64(&j, "p50_us", lt_hist_percentile(&iv->latency, 50));
        lt_json_u64(&j, "p90_us", lt_hist_percentile(&iv->latency, 90));
        lt_json_u64(&j, "p99_us", lt_hist_percentile(&iv->latency, 99));
        lt_json_u64(&j, "max_us", iv->latency.max);
        lt_json_end_obj(&j);
    }
    lt_json_end_arr(&j);
    lt_json_end_obj(&j);

    if (r->capture) {
        const lt_capture_t *c = r->capture;
        lt_json_obj(&j, "capture");
        lt_json_str(&j, "format", lt_capture_format_str(c->format));
        lt_json_u64(&j, "lines", c->lines);
        lt_json_u64(&j, "requests", c->n);
        lt_json_u64(&j, "bad", c->bad);
        lt_json_u64(&j, "skipped", c->skipped);
        lt_json_arr(&j, "bad_lines");
        for (size_t i = 0; i < c->nbad_kept; i++) {
            lt_json_obj(&j, NULL);
            lt_json_u64(&j, "line", c->bad_lines[i]);
            lt_json_str(&j, "reason", c->bad_reasons[i]);
            lt_json_end_obj(&j);
        }
        lt_json_end_arr(&j);
        lt_json_end_obj(&j);
    }

    if (r->verify || r->verify_error) {
        lt_json_obj(&j, "verify");
        if (r->verify_error) {
            lt_json_str(&j, "error", r->verify_error);
        } else {
            const lt_verify_result_t *v = r->verify;
            char tag[96];
            lt_json_str(&j, "store", v->store);
            lt_json_u64(&j, "checked_requests", v->checked_requests);
            lt_json_u64(&j, "expected_events", v->expected_events);
            lt_json_u64(&j, "found_events", v->found_events);
            lt_json_u64(&j, "lost", v->lost);
            lt_json_u64(&j, "lost_requests", v->lost_requests);
            lt_json_u64(&j, "duplicated", v->duplicated);
            lt_json_u64(&j, "duplicated_requests", v->duplicated_requests);
            lt_json_u64(&j, "rejected", v->rejected);
            lt_json_obj(&j, "rejected_by_reason");
            for (size_t i = 0; i <= LT_VERIFY_REASONS; i++)
                if (v->reason_counts[i])
                    lt_json_u64(&j, v->reasons[i], v->reason_counts[i]);
            lt_json_end_obj(&j);
            lt_json_u64(&j, "redelivered", v->redelivered);
            lt_json_u64(&j, "unacked_found", v->unacked_found);
            lt_json_u64(&j, "foreign", v->foreign);
            lt_json_u64(&j, "unreadable", v->unreadable);
            lt_json_arr(&j, "lost_tags");
            for (size_t i = 0; i < v->nlost_seqs; i++) {
                snprintf(tag, sizeof(tag), "%s:%llu", r->run_id, (unsigned long long)v->lost_seqs[i]);
                lt_json_str(&j, NULL, tag);
            }
            lt_json_end_arr(&j);
            lt_json_arr(&j, "duplicated_tags");
            for (size_t i = 0; i < v->ndup_seqs; i++) {
                snprintf(tag, sizeof(tag), "%s:%llu", r->run_id, (unsigned long long)v->dup_seqs[i]);
                lt_json_str(&j, NULL, tag);
            }
            lt_json_end_arr(&j);
            lt_json_dbl(&j, "waited_s", (double)v->waited_ms / 1000);
            lt_json_bool(&j, "settled", v->settled);
            lt_json_str(&j, "note", v->note[0] ? v->note : NULL);
        }
        lt_json_end_obj(&j);
    }
    lt_json_end_obj(&j);
}
