/*
 * lt_html.c: the HTML report: one self-contained page (inline CSS and SVG, no scripts, no
 * external resources) that opens in any browser and can be attached to a ticket.
 *
 * Charts: throughput over time (target, sent, completed, failed), latency over time
 * (p50/p90/p99/max of the requests intended in each interval, log scale) and the
 * percentile distribution of latency and service time (x axis stretched towards the tail,
 * as HdrHistogram plots do).
 */
#include "lt_report.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>

#define CW 960.0
#define CH 330.0
#define ML 78.0
#define MR 24.0
#define MT 50.0
#define MB 48.0

typedef struct series_s {
    const char *name;
    const char *color;
    const double *y;
    bool dashed;
} series_t;

typedef enum { X_SECONDS, X_PERCENTILE } xkind_t;

typedef struct chart_s {
    const char *title;
    const char *xlabel, *ylabel;
    const double *x;
    size_t n;
    const series_t *s;
    size_t ns;
    bool ylog;
    bool yus; /* y values are microseconds */
    xkind_t xkind;
    double xmax; /* right end of the x axis (at least the largest x) */
} chart_t;

static void esc(lt_buf_t *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '<':
            lt_buf_puts(b, "&lt;");
            break;
        case '>':
            lt_buf_puts(b, "&gt;");
            break;
        case '&':
            lt_buf_puts(b, "&amp;");
            break;
        case '"':
            lt_buf_puts(b, "&quot;");
            break;
        default:
            lt_buf_putc(b, *s);
        }
    }
}

static double nice_step(double range, int target_ticks)
{
    if (!(range > 0))
        return 1;
    double raw = range / target_ticks;
    double mag = pow(10, floor(log10(raw)));
    double f = raw / mag;
    double nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 2.5 ? 2.5 : f <= 5 ? 5 : 10;
    return nf * mag;
}

static void fmt_y(const chart_t *c, double v, char *buf, size_t len)
{
    if (c->yus) {
        lt_fmt_us(v, buf, len);
    } else if (v >= 1e6) {
        snprintf(buf, len, "%.1fM", v / 1e6);
    } else if (v >= 1e4) {
        snprintf(buf, len, "%.0fk", v / 1e3);
    } else if (v == floor(v)) {
        snprintf(buf, len, "%.0f", v);
    } else {
        snprintf(buf, len, "%.1f", v);
    }
}

static void chart(lt_buf_t *b, const chart_t *c)
{
    double pw = CW - ML - MR, ph = CH - MT - MB;
    /* Ranges. */
    double xmin = 0, xmax = c->xmax;
    for (size_t i = 0; i < c->n; i++)
        xmax = AT_MAX(xmax, c->x[i]);
    if (c->xkind == X_PERCENTILE)
        xmax = 5; /* up to p99.999 */
    if (xmax <= xmin)
        xmax = xmin + 1;
    double ymin = INFINITY, ymax = -INFINITY;
    for (size_t k = 0; k < c->ns; k++) {
        for (size_t i = 0; i < c->n; i++) {
            double v = c->s[k].y[i];
            if (!isfinite(v) || (c->ylog && v <= 0))
                continue;
            ymin = AT_MIN(ymin, v);
            ymax = AT_MAX(ymax, v);
        }
    }
    bool empty = !isfinite(ymin);
    double ylo, yhi;
    if (c->ylog) {
        if (empty) {
            ymin = 1;
            ymax = 10;
        }
        ylo = floor(log10(ymin));
        yhi = ceil(log10(ymax));
        if (yhi <= ylo)
            yhi = ylo + 1;
    } else {
        if (empty)
            ymax = 1;
        ylo = 0;
        double st = nice_step(ymax, 5);
        yhi = ceil(ymax * 1.05 / st) * st;
        if (yhi <= 0)
            yhi = 1;
    }
#define PX(xv) (ML + ((xv)-xmin) / (xmax - xmin) * pw)
#define PY(yv) (MT + ph - ((c->ylog ? log10(yv) : (yv)) - ylo) / (yhi - ylo) * ph)
    lt_buf_printf(b,
                  "<figure class=\"chart\"><svg viewBox=\"0 0 %.0f %.0f\" xmlns=\"http://www.w3.org/2000/svg\" "
                  "role=\"img\" aria-label=\"",
                  CW, CH);
    esc(b, c->title);
    lt_buf_puts(b, "\">\n");
    lt_buf_printf(b, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" class=\"plot\"/>\n", ML, MT, pw, ph);
    lt_buf_printf(b, "<text x=\"%.1f\" y=\"18\" class=\"title\">", ML);
    esc(b, c->title);
    lt_buf_puts(b, "</text>\n");
    /* Y grid and labels. */
    char lab[32];
    if (c->ylog) {
        for (double e = ylo; e <= yhi + 1e-9; e += 1) {
            double v = pow(10, e);
            double y = PY(v);
            lt_buf_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", ML, ML + pw, y,
                          y);
            fmt_y(c, v, lab, sizeof(lab));
            lt_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"yl\">%s</text>\n", ML - 6, y + 4, lab);
            if (yhi - ylo <= 3 && e < yhi) {
                for (int m = 2; m <= 5; m += 3) {
                    double y2 = PY(v * m);
                    lt_buf_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid minor\"/>", ML,
                                  ML + pw, y2, y2);
                    fmt_y(c, v * m, lab, sizeof(lab));
                    lt_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"yl minor\">%s</text>\n", ML - 6, y2 + 4, lab);
                }
            }
        }
    } else {
        double st = nice_step(yhi, 5);
        for (double v = 0; v <= yhi + st * 1e-6; v += st) {
            double y = PY(v);
            lt_buf_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", ML, ML + pw, y,
                          y);
            fmt_y(c, v, lab, sizeof(lab));
            lt_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"yl\">%s</text>\n", ML - 6, y + 4, lab);
        }
    }
    /* X grid and labels. */
    if (c->xkind == X_PERCENTILE) {
        static const char *const names[] = {"0%", "90%", "99%", "99.9%", "99.99%", "99.999%"};
        for (int k = 0; k <= 5; k++) {
            double x = PX((double)k);
            lt_buf_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", x, x, MT,
                          MT + ph);
            lt_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"xl\">%s</text>\n", x, MT + ph + 18, names[k]);
        }
    } else {
        double st = nice_step(xmax - xmin, 8);
        for (double v = xmin; v <= xmax + st * 1e-6; v += st) {
            double x = PX(v);
            lt_buf_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>", x, x, MT,
                          MT + ph);
            lt_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"xl\">%gs</text>\n", x, MT + ph + 18, v);
        }
    }
    lt_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"axis\">", ML + pw / 2, CH - 8);
    esc(b, c->xlabel);
    lt_buf_puts(b, "</text>");
    lt_buf_printf(b, "<text transform=\"translate(16 %.1f) rotate(-90)\" class=\"axis\">", MT + ph / 2);
    esc(b, c->ylabel);
    lt_buf_puts(b, "</text>\n");
    /* Series. */
    for (size_t k = 0; k < c->ns; k++) {
        const series_t *s = &c->s[k];
        lt_buf_printf(b, "<path fill=\"none\" stroke=\"%s\" stroke-width=\"1.8\"%s d=\"", s->color,
                      s->dashed ? " stroke-dasharray=\"6 4\"" : "");
        bool pen = false;
        for (size_t i = 0; i < c->n; i++) {
            double v = s->y[i];
            if (!isfinite(v) || (c->ylog && v <= 0) || c->x[i] > xmax) {
                pen = false;
                continue;
            }
            lt_buf_printf(b, "%s%.1f %.1f ", pen ? "L" : "M", PX(c->x[i]), PY(v));
            pen = true;
        }
        lt_buf_puts(b, "\"/>\n");
        if (c->n <= 60) {
            for (size_t i = 0; i < c->n; i++) {
                double v = s->y[i];
                if (!isfinite(v) || (c->ylog && v <= 0) || c->x[i] > xmax)
                    continue;
                fmt_y(c, v, lab, sizeof(lab));
                lt_buf_printf(b, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"2.2\" fill=\"%s\"><title>", PX(c->x[i]), PY(v),
                              s->color);
                esc(b, s->name);
                lt_buf_printf(b, ": %s</title></circle>", lab);
            }
            lt_buf_puts(b, "\n");
        }
        /* Legend entry. */
        double lx = ML + 130.0 * (double)k, ly = 40;
        lt_buf_printf(b, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"3\"%s/>",
                      lx, lx + 22, ly - 4, ly - 4, s->color, s->dashed ? " stroke-dasharray=\"6 4\"" : "");
        lt_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"legend\">", lx + 27, ly);
        esc(b, s->name);
        lt_buf_puts(b, "</text>\n");
    }
    if (empty)
        lt_buf_printf(b, "<text x=\"%.1f\" y=\"%.1f\" class=\"axis\">no data</text>", ML + pw / 2, MT + ph / 2);
    lt_buf_puts(b, "</svg></figure>\n");
#undef PX
#undef PY
}

static void row(lt_buf_t *b, const char *k, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void row(lt_buf_t *b, const char *k, const char *fmt, ...)
{
    char v[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v, sizeof(v), fmt, ap);
    va_end(ap);
    lt_buf_puts(b, "<tr><th>");
    esc(b, k);
    lt_buf_puts(b, "</th><td>");
    esc(b, v);
    lt_buf_puts(b, "</td></tr>\n");
}

static const char css[] =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:24px auto;max-width:1000px;"
    "color:#1d2430;background:#fff;padding:0 16px}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde3ea;"
    "padding-bottom:4px}.sub{color:#5b6675;margin:0 0 16px}"
    ".cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}.card{border:1px solid #dde3ea;border-radius:8px;"
    "padding:10px 14px;min-width:150px}.card .v{font-size:22px;font-weight:600}.card .k{color:#5b6675;font-size:12px}"
    ".bad .v{color:#c0392b}.good .v{color:#1e8449}"
    "table{border-collapse:collapse;margin:8px 0}th,td{padding:3px 12px 3px 0;text-align:left;vertical-align:top}"
    "th{font-weight:500;color:#5b6675}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}"
    "table.grid td,table.grid th{border-bottom:1px solid #eef1f5;padding:4px 12px}"
    "figure.chart{margin:10px 0 18px}svg{width:100%;height:auto;font-family:inherit}"
    ".plot{fill:#fbfcfd;stroke:#c9d1db}.grid{stroke:#e6eaef;stroke-width:1}.grid.minor{stroke-dasharray:2 3}"
    ".title{font-size:15px;font-weight:600;fill:#1d2430}.yl{font-size:11px;fill:#5b6675;text-anchor:end}"
    ".yl.minor{fill:#9aa4b1}.xl{font-size:11px;fill:#5b6675;text-anchor:middle}"
    ".axis{font-size:12px;fill:#5b6675;text-anchor:middle}.legend{font-size:12px;fill:#1d2430}"
    ".note{color:#5b6675;font-size:13px}code{background:#f3f5f8;padding:1px 4px;border-radius:3px}";

static void card(lt_buf_t *b, const char *cls, const char *k, const char *v)
{
    lt_buf_printf(b, "<div class=\"card %s\"><div class=\"v\">", cls);
    esc(b, v);
    lt_buf_puts(b, "</div><div class=\"k\">");
    esc(b, k);
    lt_buf_puts(b, "</div></div>\n");
}

void lt_report_html(const lt_report_t *r, lt_buf_t *b)
{
    const lt_stats_t *st = r->st;
    lt_report_rates_t rt;
    lt_report_rates(r, &rt);
    char t1[64], t2[64];
    lt_buf_puts(b, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                   "<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">"
                   "<title>adtrack-loadtest report</title><style>");
    lt_buf_puts(b, css);
    lt_buf_puts(b, "</style></head><body>\n<h1>adtrack-loadtest report</h1>\n<p class=\"sub\">");
    esc(b, r->target);
    lt_buf_printf(b, " &middot; started %s &middot; ", lt_fmt_time(r->started_unix_ms, t1, sizeof(t1)));
    esc(b, r->source);
    lt_buf_puts(b, " (");
    esc(b, r->source_detail);
    lt_buf_puts(b, ")");
    if (r->run_id) {
        lt_buf_puts(b, " &middot; run id <code>");
        esc(b, r->run_id);
        lt_buf_puts(b, "</code>");
    }
    if (r->interrupted)
        lt_buf_puts(b, " &middot; <strong>interrupted</strong>");
    lt_buf_puts(b, "</p>\n<div class=\"cards\">\n");
    snprintf(t1, sizeof(t1), "%.3f%%", 100 * rt.success_ratio);
    card(b, rt.success_ratio >= 0.999 ? "good" : "bad", "success (2xx/3xx of intended)", t1);
    snprintf(t1, sizeof(t1), "%.0f / %.0f", rt.sent, rt.target);
    card(b, "", "sent / target rate (req/s)", t1);
    card(b, "", "p50 latency", lt_fmt_us((double)lt_hist_percentile(&st->latency, 50), t1, sizeof(t1)));
    card(b, "", "p99 latency", lt_fmt_us((double)lt_hist_percentile(&st->latency, 99), t1, sizeof(t1)));
    card(b, "", "max latency", lt_fmt_us((double)st->latency.max, t1, sizeof(t1)));
    snprintf(t1, sizeof(t1), "%llu / %llu", (unsigned long long)st->late, (unsigned long long)st->dropped);
    card(b, st->dropped || st->late > st->intended / 100 ? "bad" : "good", "late / dropped requests", t1);
    if (r->verify) {
        snprintf(t1, sizeof(t1), "%llu / %llu", (unsigned long long)r->verify->lost,
                 (unsigned long long)r->verify->duplicated);
        card(b, r->verify->lost || r->verify->duplicated ? "bad" : "good", "verify: lost / duplicated", t1);
    }
    lt_buf_puts(b, "</div>\n");

    /* Charts over time. */
    size_t n = st->niv;
    double *x = calloc(n + 1, sizeof(double));
    double *ys = calloc(8 * (n + 1), sizeof(double));
    if (x != NULL && ys != NULL && n > 0) {
        double iv_s = (double)r->interval_ns / 1e9;
        double *target = ys, *sent = ys + n, *done = ys + 2 * n, *failed = ys + 3 * n;
        double *p50 = ys + 4 * n, *p90 = ys + 5 * n, *p99 = ys + 6 * n, *pmax = ys + 7 * n;
        for (size_t i = 0; i < n; i++) {
            const lt_interval_t *iv = &st->iv[i];
            int64_t t = (int64_t)i * r->interval_ns;
            x[i] = ((double)i + 0.5) * iv_s; /* plotted mid-interval */
            target[i] = t < r->planned_ns ? lt_sched_rate_at(r->sched, t + r->interval_ns / 2) : NAN;
            sent[i] = (double)iv->sent / iv_s;
            done[i] = (double)iv->ok / iv_s;
            failed[i] = (double)(iv->failed + iv->dropped) / iv_s;
            bool have = iv->latency.total > 0;
            p50[i] = have ? (double)lt_hist_percentile(&iv->latency, 50) : NAN;
            p90[i] = have ? (double)lt_hist_percentile(&iv->latency, 90) : NAN;
            p99[i] = have ? (double)lt_hist_percentile(&iv->latency, 99) : NAN;
            pmax[i] = have ? (double)iv->latency.max : NAN;
        }
        lt_buf_puts(b, "<h2>Throughput over time</h2>\n");
        series_t s1[] = {{"target", "#7f8c8d", target, true},
                         {"sent", "#2e86c1", sent, false},
                         {"ok responses", "#1e8449", done, false},
                         {"failed + dropped", "#c0392b", failed, false}};
        chart_t c1 = {"Requests per second", "time since start", "requests / s", x, n, s1, 4, false, false, X_SECONDS,
                      (double)n * iv_s};
        chart(b, &c1);
        lt_buf_puts(b, "<h2>Latency over time</h2>\n<p class=\"note\">Per interval, of the requests <em>intended</em> "
                       "in it, measured from the intended send time: a stall shows where it began. Log scale.</p>\n");
        series_t s2[] = {{"p50", "#1e8449", p50, false},
                         {"p90", "#2e86c1", p90, false},
                         {"p99", "#d68910", p99, false},
                         {"max", "#c0392b", pmax, true}};
        chart_t c2 = {"Latency percentiles per interval",
                      "time since start",
                      "latency",
                      x,
                      n,
                      s2,
                      4,
                      true,
                      true,
                      X_SECONDS,
                      (double)n * iv_s};
        chart(b, &c2);
    }
    free(x);
    free(ys);

    /* Percentile distribution. */
    enum { NP = 101 };
    double px[NP], pl[NP], ps[NP];
    for (int i = 0; i < NP; i++) {
        double xv = 5.0 * i / (NP - 1); /* x = log10(1 / (1 - q)) */
        double q = 100.0 * (1.0 - pow(10, -xv));
        px[i] = xv;
        pl[i] = st->latency.total ? (double)lt_hist_percentile(&st->latency, q) : NAN;
        ps[i] = st->service.total ? (double)lt_hist_percentile(&st->service, q) : NAN;
    }
    lt_buf_puts(b, "<h2>Latency distribution</h2>\n<p class=\"note\">Latency counts from the intended send time "
                   "(what users of an open system experience); service time from the actual send (what a closed-loop "
                   "tool reports). Where the two lines part, the target made requests wait.</p>\n");
    series_t s3[] = {{"latency", "#c0392b", pl, false}, {"service time", "#2e86c1", ps, true}};
    chart_t c3 = {"Percentile distribution", "percentile", "latency", px, NP, s3, 2, true, true, X_PERCENTILE, 5};
    chart(b, &c3);

    lt_buf_puts(b, "<table class=\"grid\"><tr><th></th>");
    for (size_t i = 0; i < lt_report_npcts; i++)
        lt_buf_printf(b, "<th class=\"n\">p%g</th>", lt_report_pcts[i]);
    lt_buf_puts(b, "<th class=\"n\">max</th><th class=\"n\">mean</th></tr>\n");
    const lt_hist_t *hs[3] = {&st->latency, &st->service, &st->lag};
    const char *hn[3] = {"latency", "service time", "send lag"};
    for (int k = 0; k < 3; k++) {
        lt_buf_printf(b, "<tr><th>%s</th>", hn[k]);
        for (size_t i = 0; i < lt_report_npcts; i++)
            lt_buf_printf(b, "<td class=\"n\">%s</td>",
                          lt_fmt_us((double)lt_hist_percentile(hs[k], lt_report_pcts[i]), t1, sizeof(t1)));
        lt_buf_printf(b, "<td class=\"n\">%s</td><td class=\"n\">%s</td></tr>\n",
                      lt_fmt_us((double)hs[k]->max, t1, sizeof(t1)), lt_fmt_us(lt_hist_mean(hs[k]), t2, sizeof(t2)));
    }
    lt_buf_puts(b, "</table>\n");

    /* Tables. */
    lt_buf_puts(b, "<h2>Requests</h2>\n<table>\n");
    row(b, "intended", "%llu", (unsigned long long)st->intended);
    row(b, "sent",
        "%llu (late by more than %.0f ms: %llu, of which %llu with a connection free: the load generator fell behind)",
        (unsigned long long)st->sent, (double)r->late_ns / 1e6, (unsigned long long)st->late,
        (unsigned long long)st->late_sender);
    row(b, "dropped", "%llu (could not be sent within %.0f ms of their time)", (unsigned long long)st->dropped,
        (double)r->max_lag_ns / 1e6);
    row(b, "completed", "%llu (ok %llu)", (unsigned long long)st->completed, (unsigned long long)st->ok);
    row(b, "failed", "timeout %llu, closed %llu, protocol %llu; connect errors %llu; retried %llu",
        (unsigned long long)st->failed[LT_FAIL_TIMEOUT], (unsigned long long)st->failed[LT_FAIL_CLOSED],
        (unsigned long long)st->failed[LT_FAIL_PROTOCOL], (unsigned long long)st->connect_errors,
        (unsigned long long)st->retried);
    row(b, "rates (req/s)", "target %.1f, sent %.1f, on time %.1f, completed %.1f", rt.target, rt.sent, rt.on_time,
        rt.completed);
    row(b, "time", "planned %.2f s, elapsed %.2f s", (double)r->planned_ns / 1e9, (double)r->elapsed_ns / 1e9);
    row(b, "setup", "%d threads, %d connections, mode %s%s%s", r->threads, r->connections, r->mode,
        r->stages ? ", stages " : "", r->stages ? r->stages : "");
    lt_buf_puts(
        b,
        "</table>\n<h2>Status codes</h2>\n<table class=\"grid\"><tr><th>status</th><th class=\"n\">count</th></tr>\n");
    for (int s = 0; s < 1000; s++)
        if (st->status[s])
            lt_buf_printf(b, "<tr><td>%d</td><td class=\"n\">%llu</td></tr>\n", s, (unsigned long long)st->status[s]);
    lt_buf_puts(b, "</table>\n");
    if (r->capture) {
        const lt_capture_t *c = r->capture;
        lt_buf_puts(b, "<h2>Capture</h2>\n<table>\n");
        row(b, "format", "%s", lt_capture_format_str(c->format));
        row(b, "lines", "%llu (requests %zu, bad %llu, skipped %llu)", (unsigned long long)c->lines, c->n,
            (unsigned long long)c->bad, (unsigned long long)c->skipped);
        for (size_t i = 0; i < c->nbad_kept; i++) {
            char k[32];
            snprintf(k, sizeof(k), "bad line %llu", (unsigned long long)c->bad_lines[i]);
            row(b, k, "%s", c->bad_reasons[i]);
        }
        lt_buf_puts(b, "</table>\n");
    }
    if (r->verify_error) {
        lt_buf_puts(b, "<h2>Verify</h2>\n<p>Could not read the store: ");
        esc(b, r->verify_error);
        lt_buf_puts(b, "</p>\n");
    } else if (r->verify) {
        const lt_verify_result_t *v = r->verify;
        lt_buf_puts(b, "<h2>Verify</h2>\n<table>\n");
        row(b, "store", "%s", v->store);
        row(b, "checked", "%llu acknowledged requests, %llu events expected, %llu found",
            (unsigned long long)v->checked_requests, (unsigned long long)v->expected_events,
            (unsigned long long)v->found_events);
        row(b, "lost", "%llu events (%llu requests)", (unsigned long long)v->lost,
            (unsigned long long)v->lost_requests);
        row(b, "duplicated", "%llu events (%llu requests)", (unsigned long long)v->duplicated,
            (unsigned long long)v->duplicated_requests);
        row(b, "rejected", "%llu", (unsigned long long)v->rejected);
        for (size_t i = 0; i <= LT_VERIFY_REASONS; i++)
            if (v->reason_counts[i]) {
                char k[96];
                snprintf(k, sizeof(k), "rejected: %s", v->reasons[i]);
                row(b, k, "%llu", (unsigned long long)v->reason_counts[i]);
            }
        row(b, "redelivered", "%llu (same event id seen again; absorbed by the idempotent sink)",
            (unsigned long long)v->redelivered);
        row(b, "waited", "%.1f s, %s", (double)v->waited_ms / 1000, v->settled ? "settled" : "gave up waiting");
        if (v->nlost_seqs) {
            lt_buf_t l = {0};
            for (size_t i = 0; i < v->nlost_seqs; i++)
                lt_buf_printf(&l, "%s%s:%llu", i ? ", " : "", r->run_id, (unsigned long long)v->lost_seqs[i]);
            row(b, "lost tags", "%s", l.data ? l.data : "");
            lt_buf_free(&l);
        }
        lt_buf_puts(b, "</table>\n");
    }
    lt_buf_puts(b, "<p class=\"note\">Generated by adtrack-loadtest " LT_VERSION
                   ". Open model: requests are sent at their scheduled times whatever the target does; latency is "
                   "measured from the scheduled time, so stalls are not hidden (no coordinated omission).</p>\n"
                   "</body></html>\n");
}
