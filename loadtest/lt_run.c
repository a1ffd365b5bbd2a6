/*
 * lt_run.c: a whole run (see lt_run.h).
 *
 * Threads: the caller's thread coordinates; each worker thread owns one lt_worker_t. The
 * only state shared while running is read-only (plan, schedule, source) plus per-worker
 * relaxed atomic counters for the progress line and the disjoint per-sequence verify
 * slots (worker k writes only sequence numbers k mod N).
 */
#include "lt_run.h"

#include "at_log.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define LT_MAX_VERIFY_REQUESTS 1000000000ULL
#define LT_MAX_POINTS 1200

static int resolve(lt_plan_t *p, at_err_t *err)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(p->target.hostname, p->target.port, &hints, &res);
    if (rc != 0 || res == NULL)
        return at_err_set(err, AT_ERR_UNAVAILABLE, "cannot resolve '%s': %s", p->target.hostname, gai_strerror(rc));
    memcpy(&p->addr, res->ai_addr, res->ai_addrlen);
    p->addrlen = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void make_run_id(char *out, size_t len)
{
    uint8_t rnd[5];
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
        uint64_t t = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 20);
        memcpy(rnd, &t, sizeof(rnd));
    }
    snprintf(out, len, "lt%02x%02x%02x%02x%02x", rnd[0], rnd[1], rnd[2], rnd[3], rnd[4]);
}

int lt_run_prepare(lt_run_t *r, const lt_opts_t *o, at_err_t *err)
{
    memset(r, 0, sizeof(*r));
    r->o = o;
    lt_plan_t *p = &r->plan;
    if (lt_target_parse(o->c.target, &p->target, err) < 0)
        return -1;

    /* Traffic source. */
    if (o->c.capture[0] != '\0') {
        r->have_capture = true;
        if (lt_capture_load(&r->capture, o->c.capture, o->capture_format, err) < 0)
            return -1;
        if (r->capture.bad > 0)
            at_logf(AT_LOG_WARN, "loadtest", "capture: %llu unparsable lines skipped (first at line %llu: %s)",
                    (unsigned long long)r->capture.bad, (unsigned long long)r->capture.bad_lines[0],
                    r->capture.bad_reasons[0]);
        snprintf(r->source_detail, sizeof(r->source_detail), "%s, %s", o->c.capture,
                 lt_capture_format_str(r->capture.format));
        p->capture = &r->capture;
    } else {
        r->have_profile = true;
        lt_profile_defaults(&r->profile);
        if (o->c.profile[0] != '\0' && lt_profile_load(&r->profile, o->c.profile, err) < 0)
            return -1;
        if (o->have_seed)
            r->profile.seed = o->seed;
        if (o->c.click_secret[0] != '\0' && lt_profile_set_secret(&r->profile, o->c.click_secret, err) < 0)
            return -1;
        if (lt_profile_prepare(&r->profile, err) < 0)
            return -1;
        snprintf(r->source_detail, sizeof(r->source_detail), "%s, seed %llu",
                 o->c.profile[0] ? o->c.profile : "built-in profile", (unsigned long long)r->profile.seed);
        p->profile = &r->profile;
    }

    /* Schedule. */
    uint64_t max_total = o->c.max_requests > 0 ? (uint64_t)o->c.max_requests : 0;
    if (o->rate_given) {
        r->mode = o->c.stages[0] ? "stages" : "rate";
        /* --rate is one flat stage; --stages ramp from --start-rate. */
        double start_rate = o->c.stages[0] ? (double)o->c.start_rate : o->stages[0].rate;
        if (lt_sched_init_rate(&r->sched, start_rate, o->stages, o->nstages, max_total, err) < 0)
            return -1;
        p->capture_cycle = true;
    } else {
        r->mode = "replay";
        if (!r->capture.all_timed)
            return at_err_set(err, AT_ERR_INVALID,
                              "--capture: not every request has a timestamp (format %s); give --rate to replay it at a "
                              "set rate",
                              lt_capture_format_str(r->capture.format));
        if (lt_capture_timeline(&r->capture, o->speed, &r->times, err) < 0)
            return -1;
        uint64_t n = r->capture.n;
        if (o->duration_ns > 0)
            while (n > 0 && r->times[n - 1] >= o->duration_ns)
                n--;
        if (max_total > 0 && n > max_total)
            n = max_total;
        if (lt_sched_init_times(&r->sched, r->times, n, err) < 0)
            return -1;
        if (o->duration_ns > 0)
            r->sched.duration_ns = o->duration_ns;
    }
    p->sched = &r->sched;

    /* Run parameters. */
    p->threads = (int)o->c.threads;
    p->connections = (int)o->c.connections;
    p->headers = o->headers;
    p->timeout_ns = o->timeout_ns;
    p->connect_timeout_ns = o->connect_timeout_ns;
    p->max_lag_ns = o->max_lag_ns;
    p->late_ns = o->late_ns;
    p->interval_ns = o->interval_ns;
    int64_t per_point = (r->sched.duration_ns + LT_MAX_POINTS - 1) / LT_MAX_POINTS;
    if (p->interval_ns < per_point)
        p->interval_ns = (per_point + 9999999) / 10000000 * 10000000; /* whole 10 ms */
    p->stop = &r->stop;

    bool verify = o->c.verify[0] != '\0';
    if (verify || o->c.tag || o->c.run_id[0] != '\0') {
        if (o->c.run_id[0])
            snprintf(r->run_id, sizeof(r->run_id), "%s", o->c.run_id);
        else
            make_run_id(r->run_id, sizeof(r->run_id));
        p->run_id = r->run_id;
    }
    if (verify) {
        if (r->sched.total > LT_MAX_VERIFY_REQUESTS)
            return at_err_set(err, AT_ERR_TOO_LARGE, "--verify: at most %llu requests per run can be tracked",
                              LT_MAX_VERIFY_REQUESTS);
        r->seq_state = calloc(r->sched.total, 1);
        r->seq_events = calloc(r->sched.total, sizeof(uint16_t));
        if (r->seq_state == NULL || r->seq_events == NULL)
            return at_err_set(err, AT_ERR_NOMEM, "--verify: out of memory for %llu requests",
                              (unsigned long long)r->sched.total);
        p->seq_state = r->seq_state;
        p->seq_events = r->seq_events;
    }
    return resolve(p, err);
}

typedef struct thread_ctx_s {
    lt_run_t *r;
    lt_worker_t *w;
    pthread_barrier_t *connected, *go;
    int established;
} thread_ctx_t;

static void *worker_main(void *arg)
{
    thread_ctx_t *t = arg;
    t->established = lt_worker_connect(t->w);
    pthread_barrier_wait(t->connected);
    pthread_barrier_wait(t->go);
    if (atomic_load(&t->r->stop) < 2)
        lt_worker_run(t->w);
    else
        atomic_store(&lt_worker_live(t->w)->done, 1);
    return NULL;
}

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void addr_text(const lt_plan_t *p, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    const struct sockaddr *sa = (const struct sockaddr *)&p->addr;
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, host, sizeof(host));
    snprintf(buf, len, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, p->target.port);
}

/* The live line: one carriage-return-rewritten line on a terminal. */
static void progress_line(FILE *f, lt_run_t *r, lt_worker_t **ws, int n, int64_t now, uint64_t *prev_sent,
                          uint64_t *prev_ok, int64_t *prev_t)
{
    uint64_t sent = 0, ok = 0, failed = 0, dropped = 0, late = 0, inflight = 0;
    for (int i = 0; i < n; i++) {
        lt_live_t *l = lt_worker_live(ws[i]);
        sent += atomic_load_explicit(&l->sent, memory_order_relaxed);
        ok += atomic_load_explicit(&l->ok, memory_order_relaxed);
        failed += atomic_load_explicit(&l->failed, memory_order_relaxed);
        dropped += atomic_load_explicit(&l->dropped, memory_order_relaxed);
        late += atomic_load_explicit(&l->late, memory_order_relaxed);
        inflight += atomic_load_explicit(&l->inflight, memory_order_relaxed);
    }
    int64_t start = atomic_load(&r->plan.start_ns);
    double dt = (double)(now - *prev_t) / 1e9;
    double el = (double)(now - start) / 1e9;
    double target = lt_sched_rate_at(&r->sched, now - start);
    fprintf(f,
            "\r[%6.1fs/%.1fs] target %.0f/s  sent %.0f/s  ok %.0f/s  in flight %llu  late %llu  dropped %llu  failed "
            "%llu\033[K",
            el, (double)r->sched.duration_ns / 1e9, now - start < r->sched.duration_ns ? target : 0.0,
            dt > 0 ? (double)(sent - *prev_sent) / dt : 0.0, dt > 0 ? (double)(ok - *prev_ok) / dt : 0.0,
            (unsigned long long)inflight, (unsigned long long)late, (unsigned long long)dropped,
            (unsigned long long)failed);
    fflush(f);
    *prev_sent = sent;
    *prev_ok = ok;
    *prev_t = now;
}

int lt_run_execute(lt_run_t *r, FILE *progress, at_err_t *err)
{
    lt_plan_t *p = &r->plan;
    int n = p->threads;
    lt_worker_t **ws = calloc((size_t)n, sizeof(*ws));
    thread_ctx_t *ctx = calloc((size_t)n, sizeof(*ctx));
    pthread_t *th = calloc((size_t)n, sizeof(*th));
    pthread_barrier_t connected, go;
    int started = 0, rc = 0;
    if (ws == NULL || ctx == NULL || th == NULL) {
        rc = at_err_set(err, AT_ERR_NOMEM, "out of memory");
        goto out_free;
    }
    for (int i = 0; i < n; i++) {
        ws[i] = lt_worker_new(p, i, err);
        if (ws[i] == NULL) {
            rc = -1;
            goto out_free;
        }
    }
    pthread_barrier_init(&connected, NULL, (unsigned)n + 1);
    pthread_barrier_init(&go, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++) {
        ctx[i] = (thread_ctx_t){.r = r, .w = ws[i], .connected = &connected, .go = &go};
        if (pthread_create(&th[i], NULL, worker_main, &ctx[i]) != 0) {
            /* Threads already started wait at the barriers, which need n + 1 parties:
             * there is no clean way back, so this is fatal. */
            at_log(AT_LOG_ERROR, "loadtest", "cannot start worker thread", NULL);
            abort();
        }
        started++;
    }
    pthread_barrier_wait(&connected);
    int established = 0;
    for (int i = 0; i < n; i++)
        established += ctx[i].established;
    if (established == 0) {
        char a[96];
        addr_text(p, a, sizeof(a));
        const char *why = lt_worker_connect_error(ws[0]);
        rc = at_err_set(err, AT_ERR_UNAVAILABLE, "cannot connect to %s (%s): %s", r->o->c.target, a,
                        why[0] ? why : "no connection could be established");
        atomic_store(&r->stop, 2);
    } else if (established < p->connections) {
        at_logf(AT_LOG_WARN, "loadtest", "only %d of %d connections could be opened before the start (%s)", established,
                p->connections, lt_worker_connect_error(ws[0]));
    }
    r->started_unix_ms = unix_ms();
    atomic_store(&p->start_ns, lt_now_ns() + 1000000);
    pthread_barrier_wait(&go);

    if (rc == 0) {
        uint64_t ps = 0, pok = 0;
        int64_t pt = atomic_load(&p->start_ns), last_print = pt;
        for (;;) {
            int done = 0;
            for (int i = 0; i < n; i++)
                done += atomic_load(&lt_worker_live(ws[i])->done);
            if (done == n)
                break;
            struct timespec ts = {0, 100 * 1000000L};
            nanosleep(&ts, NULL);
            int64_t now = lt_now_ns();
            if (progress && now - last_print >= 1000000000LL) {
                progress_line(progress, r, ws, n, now, &ps, &pok, &pt);
                last_print = now;
            }
        }
        if (progress) {
            progress_line(progress, r, ws, n, lt_now_ns(), &ps, &pok, &pt);
            fputc('\n', progress);
        }
    }
    for (int i = 0; i < started; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&connected);
    pthread_barrier_destroy(&go);
    r->elapsed_ns = lt_now_ns() - atomic_load(&p->start_ns);
    if (rc == 0) {
        if (lt_stats_init(&r->total, err) < 0) {
            rc = -1;
            goto out_free;
        }
        r->have_total = true;
        for (int i = 0; i < n; i++)
            if (lt_stats_merge(&r->total, lt_worker_stats(ws[i]), err) < 0) {
                rc = -1;
                break;
            }
        /* The run's end is the last completion, not the moment the coordinator noticed. */
        if (r->total.last_done_ns > 0 && r->total.last_done_ns < r->elapsed_ns)
            r->elapsed_ns = AT_MAX(r->total.last_done_ns, r->total.last_send_ns);
    }
out_free:
    if (ws)
        for (int i = 0; i < n; i++)
            lt_worker_destroy(ws[i]);
    free(ws);
    free(ctx);
    free(th);
    return rc;
}

void lt_run_verify(lt_run_t *r)
{
    const lt_opts_t *o = r->o;
    if (o->c.verify[0] == '\0' || !r->have_total)
        return;
    lt_verify_opts_t vo = {.spec = o->c.verify,
                           .topic = o->c.verify_topic,
                           .rejected_topic = o->c.verify_rejected_topic,
                           .db = o->c.verify_db,
                           .wait_ns = o->verify_wait_ns,
                           .quiet_ns = o->verify_quiet_ns};
    lt_verify_input_t in = {
        .run_id = r->run_id, .seq_state = r->seq_state, .seq_events = r->seq_events, .nseq = r->sched.total};
    at_err_t err;
    if (lt_verify_run(&vo, &in, &r->verify, &err) < 0)
        snprintf(r->verify_error, sizeof(r->verify_error), "%s", err.msg);
    r->did_verify = true;
}

void lt_run_report(const lt_run_t *r, lt_report_t *rep)
{
    const lt_opts_t *o = r->o;
    memset(rep, 0, sizeof(*rep));
    rep->target = o->c.target;
    rep->source = r->have_capture ? "capture" : "synthetic";
    rep->source_detail = r->source_detail;
    rep->mode = r->mode;
    rep->stages = o->c.stages[0] ? o->c.stages : NULL;
    rep->speed = strcmp(r->mode, "replay") == 0 ? o->speed : 1;
    rep->threads = r->plan.threads;
    rep->connections = r->plan.connections;
    rep->run_id = r->plan.run_id;
    rep->started_unix_ms = r->started_unix_ms;
    rep->planned_ns = r->sched.duration_ns;
    rep->elapsed_ns = r->elapsed_ns;
    rep->interval_ns = r->plan.interval_ns;
    rep->late_ns = r->plan.late_ns;
    rep->max_lag_ns = r->plan.max_lag_ns;
    rep->timeout_ns = r->plan.timeout_ns;
    rep->sched = &r->sched;
    rep->st = &r->total;
    rep->capture = r->have_capture ? &r->capture : NULL;
    if (r->did_verify) {
        if (r->verify_error[0])
            rep->verify_error = r->verify_error;
        else
            rep->verify = &r->verify;
    }
    rep->interrupted = atomic_load(&((lt_run_t *)r)->stop) > 0;
}

void lt_run_free(lt_run_t *r)
{
    if (r == NULL)
        return;
    lt_sched_free(&r->sched);
    if (r->have_profile)
        lt_profile_free(&r->profile);
    lt_capture_free(&r->capture);
    free(r->times);
    free(r->seq_state);
    free(r->seq_events);
    if (r->have_total)
        lt_stats_free(&r->total);
}
