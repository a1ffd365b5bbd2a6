/*
 * test_lt_client.c: the epoll worker against a scripted in-process HTTP server: every
 * request answered and tagged once, a stalled server's stall shows in latency (no
 * coordinated omission), requests that wait too long are dropped and counted, keep-alive
 * closes and server-side idle closes are survived, timeouts are counted.
 *
 * Assertions are bounds that a slower machine can only make easier to meet (a stall adds
 * at least its own length to the latency of whatever queued behind it).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "lt_client.h"

#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAXC 64

typedef struct server_s {
    int lfd, port;
    atomic_int quit;
    pthread_t th;
    /* script */
    int stall_at, stall_ms; /* before answering request #stall_at (1-based), sleep */
    int close_every;        /* answer with Connection: close every n-th response */
    bool close_after_each;  /* close silently after every response */
    int hang_at;            /* never answer request #hang_at */
    /* record */
    int nreq;
    char *seen; /* seen[seq] counts tag=t:<seq> */
    int nseen;
} server_t;

static void *server_main(void *arg)
{
    server_t *s = arg;
    struct pollfd pf[MAXC + 1];
    char buf[MAXC][8192];
    size_t len[MAXC];
    bool dead[MAXC];
    int n = 0;
    pf[0].fd = s->lfd;
    pf[0].events = POLLIN;
    while (!atomic_load(&s->quit)) {
        if (poll(pf, (nfds_t)n + 1, 50) <= 0)
            continue;
        if ((pf[0].revents & POLLIN) && n < MAXC) {
            int c = accept(s->lfd, NULL, NULL);
            if (c >= 0) {
                pf[n + 1].fd = c;
                pf[n + 1].events = POLLIN;
                pf[n + 1].revents = 0;
                len[n] = 0;
                dead[n] = false;
                n++;
            }
        }
        for (int i = 0; i < n; i++) {
            if (!(pf[i + 1].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t r = read(pf[i + 1].fd, buf[i] + len[i], sizeof(buf[i]) - len[i] - 1);
            if (r <= 0) {
                close(pf[i + 1].fd);
                pf[i + 1] = pf[n];
                memcpy(buf[i], buf[n - 1], len[n - 1]);
                len[i] = len[n - 1];
                dead[i] = dead[n - 1];
                n--;
                i--;
                continue;
            }
            len[i] += (size_t)r;
            buf[i][len[i]] = '\0';
            char *end;
            while (!dead[i] && (end = strstr(buf[i], "\r\n\r\n")) != NULL) {
                s->nreq++;
                char *tag = strstr(buf[i], "tag=t%3A");
                if (tag && tag < end) {
                    int seq = atoi(tag + 8);
                    if (seq >= 0 && seq < s->nseen)
                        s->seen[seq]++;
                }
                size_t used = (size_t)(end + 4 - buf[i]);
                memmove(buf[i], buf[i] + used, len[i] - used + 1);
                len[i] -= used;
                if (s->hang_at && s->nreq == s->hang_at) {
                    dead[i] = true; /* keep the connection open, never answer */
                    break;
                }
                if (s->stall_at && s->nreq == s->stall_at)
                    usleep((useconds_t)s->stall_ms * 1000);
                bool close_now = s->close_every && s->nreq % s->close_every == 0;
                const char *resp = close_now ? "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"
                                             : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                if (write(pf[i + 1].fd, resp, strlen(resp)) < 0)
                    break;
                if (close_now || s->close_after_each) {
                    shutdown(pf[i + 1].fd, SHUT_RDWR);
                    break;
                }
            }
        }
    }
    for (int i = 0; i < n; i++)
        close(pf[i + 1].fd);
    return NULL;
}

static void server_start(server_t *s, int nseen)
{
    s->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->lfd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->lfd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(s->lfd, 128), 0);
    socklen_t al = sizeof(a);
    getsockname(s->lfd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    s->nseen = nseen;
    s->seen = calloc((size_t)nseen, 1);
    assert_int_equal(pthread_create(&s->th, NULL, server_main, s), 0);
}

static void server_stop(server_t *s)
{
    atomic_store(&s->quit, 1);
    pthread_join(s->th, NULL);
    close(s->lfd);
    free(s->seen);
}

typedef struct run_s {
    lt_plan_t plan;
    lt_sched_t sched;
    lt_profile_t prof;
    atomic_int stop;
    uint8_t *state;
    uint16_t *events;
    lt_stats_t st;
} run_t;

/* Runs one worker against @p s at @p rate for @p ms over @p conns connections. */
static void run(run_t *r, server_t *s, double rate, int ms, int conns, int64_t max_lag_ms, int64_t timeout_ms)
{
    memset(r, 0, sizeof(*r));
    char url[64];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d", s->port);
    assert_int_equal(lt_target_parse(url, &r->plan.target, NULL), 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)s->port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    memcpy(&r->plan.addr, &a, sizeof(a));
    r->plan.addrlen = sizeof(a);
    lt_stage_t st = {rate, (int64_t)ms * 1000000};
    assert_int_equal(lt_sched_init_rate(&r->sched, rate, &st, 1, 0, NULL), 0);
    lt_profile_defaults(&r->prof);
    assert_int_equal(lt_profile_prepare(&r->prof, NULL), 0);
    r->state = calloc(r->sched.total, 1);
    r->events = calloc(r->sched.total, 2);
    r->plan.sched = &r->sched;
    r->plan.profile = &r->prof;
    r->plan.threads = 1;
    r->plan.connections = conns;
    r->plan.timeout_ns = timeout_ms * 1000000;
    r->plan.connect_timeout_ns = 2000000000LL;
    r->plan.max_lag_ns = max_lag_ms * 1000000;
    r->plan.late_ns = 10000000;
    r->plan.interval_ns = 1000000000LL;
    r->plan.run_id = "t";
    r->plan.seq_state = r->state;
    r->plan.seq_events = r->events;
    r->plan.stop = &r->stop;
    at_err_t err;
    lt_worker_t *w = lt_worker_new(&r->plan, 0, &err);
    assert_non_null(w);
    assert_int_equal(lt_worker_connect(w), conns);
    atomic_store(&r->plan.start_ns, lt_now_ns());
    lt_worker_run(w);
    assert_int_equal(lt_stats_init(&r->st, NULL), 0);
    assert_int_equal(lt_stats_merge(&r->st, lt_worker_stats(w), NULL), 0);
    lt_worker_destroy(w);
}

static void run_free(run_t *r)
{
    lt_stats_free(&r->st);
    lt_sched_free(&r->sched);
    lt_profile_free(&r->prof);
    free(r->state);
    free(r->events);
}

static uint64_t count_above(const lt_hist_t *h, uint64_t us)
{
    uint64_t n = 0;
    for (size_t i = 0; i < h->nbuckets; i++)
        if (lt_hist_bucket_low(h, i) > us)
            n += h->counts[i];
    return n;
}

static void test_lt_worker_run__every_request_answered_and_tagged_once(void **state)
{
    (void)state;
    server_t s = {0};
    server_start(&s, 200);
    run_t r;
    run(&r, &s, 200, 1000, 4, 10000, 5000);
    assert_int_equal(r.st.intended, 200);
    assert_int_equal(r.st.sent, 200);
    assert_int_equal(r.st.dropped, 0);
    assert_int_equal(r.st.completed, 200);
    assert_int_equal(r.st.ok, 200);
    assert_int_equal(r.st.status[200], 200);
    assert_int_equal(r.st.latency.total, 200);
    assert_int_equal(r.st.service.total, 200);
    for (int i = 0; i < 200; i++) {
        assert_int_equal(r.state[i], LT_SEQ_ACKED);
        assert_int_equal(r.events[i], 1);
        assert_int_equal(s.seen[i], 1);
    }
    /* Latency counts from the intended time, so it is never below the service time. */
    assert_true(r.st.latency.min >= r.st.service.min);
    assert_true(lt_hist_percentile(&r.st.latency, 99) >= lt_hist_percentile(&r.st.service, 99));
    uint64_t iv_sent = 0;
    for (size_t i = 0; i < r.st.niv; i++)
        iv_sent += r.st.iv[i].sent;
    assert_int_equal(iv_sent, 200);
    run_free(&r);
    server_stop(&s);
}

static void test_lt_worker_run__stall_shows_in_latency(void **state)
{
    (void)state;
    server_t s = {0};
    s.stall_at = 50;
    s.stall_ms = 500;
    server_start(&s, 200);
    run_t r;
    /* One connection, 100/s: the 50th request is held 500 ms; ~50 more are due meanwhile. */
    run(&r, &s, 100, 2000, 1, 10000, 5000);
    assert_int_equal(r.st.ok, 200);
    assert_true(r.st.latency.max >= 500000);
    /* Requests intended in the first 400 ms of the stall wait at least 100 ms each. */
    uint64_t slow_lat = count_above(&r.st.latency, 100000);
    uint64_t slow_svc = count_above(&r.st.service, 100000);
    assert_true(slow_lat >= 40);
    assert_true(slow_svc < slow_lat); /* a closed-loop view hides the queued ones */
    assert_true(r.st.late >= 40);
    /* ...and they are attributed to the target (no connection free), not to the sender. */
    assert_true(r.st.late - r.st.late_sender >= 40);
    assert_true(lt_hist_percentile(&r.st.lag, 99) >= 100000);
    run_free(&r);
    server_stop(&s);
}

static void test_lt_worker_run__max_lag_drops_and_counts(void **state)
{
    (void)state;
    server_t s = {0};
    s.stall_at = 10;
    s.stall_ms = 1500;
    server_start(&s, 100);
    run_t r;
    run(&r, &s, 100, 1000, 1, 200, 5000);
    assert_int_equal(r.st.intended, 100);
    assert_true(r.st.dropped >= 50); /* due during the stall, more than 200 ms before its end */
    assert_int_equal(r.st.sent + r.st.dropped, 100);
    assert_int_equal(r.st.ok, r.st.sent);
    uint64_t unsent = 0, dropped_iv = 0;
    for (int i = 0; i < 100; i++)
        unsent += r.state[i] == LT_SEQ_UNSENT;
    for (size_t i = 0; i < r.st.niv; i++)
        dropped_iv += r.st.iv[i].dropped;
    assert_int_equal(unsent, r.st.dropped);
    assert_int_equal(dropped_iv, r.st.dropped);
    run_free(&r);
    server_stop(&s);
}

static void test_lt_worker_run__connection_close_reconnects(void **state)
{
    (void)state;
    server_t s = {0};
    s.close_every = 3;
    server_start(&s, 150);
    run_t r;
    run(&r, &s, 150, 1000, 2, 10000, 5000);
    assert_int_equal(r.st.ok, 150);
    assert_true(r.st.connects >= 50);
    assert_int_equal(r.st.failed[LT_FAIL_CLOSED], 0);
    run_free(&r);
    server_stop(&s);
}

static void test_lt_worker_run__silent_server_close_is_survived(void **state)
{
    (void)state;
    server_t s = {0};
    s.close_after_each = true;
    server_start(&s, 100);
    run_t r;
    run(&r, &s, 100, 1000, 2, 10000, 5000);
    assert_int_equal(r.st.ok, 100);
    for (int i = 0; i < 100; i++)
        assert_true(s.seen[i] >= 1);
    run_free(&r);
    server_stop(&s);
}

static void test_lt_worker_run__timeout_counted(void **state)
{
    (void)state;
    server_t s = {0};
    s.hang_at = 5;
    server_start(&s, 50);
    run_t r;
    run(&r, &s, 50, 1000, 2, 10000, 1000);
    assert_int_equal(r.st.failed[LT_FAIL_TIMEOUT], 1);
    assert_int_equal(r.st.ok, 49);
    assert_int_equal(r.st.completed + r.st.failed[LT_FAIL_TIMEOUT], 50);
    int failed = 0;
    for (int i = 0; i < 50; i++)
        failed += r.state[i] == LT_SEQ_FAILED;
    assert_int_equal(failed, 1);
    run_free(&r);
    server_stop(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lt_worker_run__every_request_answered_and_tagged_once),
        cmocka_unit_test(test_lt_worker_run__stall_shows_in_latency),
        cmocka_unit_test(test_lt_worker_run__max_lag_drops_and_counts),
        cmocka_unit_test(test_lt_worker_run__connection_close_reconnects),
        cmocka_unit_test(test_lt_worker_run__silent_server_close_is_survived),
        cmocka_unit_test(test_lt_worker_run__timeout_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
