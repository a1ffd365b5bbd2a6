/* LABELS: chaos;kafka;collector;coredata */
/*
 * test_hostile_clients.c: idle floods, slow headers (slowloris) and slow bodies must not
 * starve the other clients of the collector or of coredata (docs/COLLECTOR.md,
 * "Connections and slow clients").
 *
 * Each service runs with small limits (--max-connections, --max-connections-per-ip,
 * --request-timeout-ms 2000) so the test reaches them quickly. Well-behaved clients (a
 * closed-loop generator on 127.0.0.1, connected before the attack) keep sending requests
 * the whole time; the attackers come from other loopback addresses (127.0.0.2 and up), so
 * the per-address limit can tell them apart. Asserted, phase by phase:
 *  - idle flood from one address: connections past --max-connections-per-ip are closed at
 *    once, the rest when --request-timeout-ms runs out;
 *  - slowloris (a header byte every 200 ms) and slow bodies (10 bytes every 200 ms of a
 *    declared 50 kB): every such connection is closed, unanswered, within the request
 *    timeout plus a margin;
 *  - idle floods from several addresses beyond --max-connections: the process stays up,
 *    the listeners pause (adtrack_http_accept_paused_total), and a new client is served as
 *    soon as the idle connections have timed out;
 *  - throughout, the well-behaved clients get every request answered 2xx, none slower than
 *    1 s, and they keep being answered in every phase.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "at_common.h"
#include "at_test_load.h"
#include "at_test_support.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REQUEST_TIMEOUT_MS 2000
#define MAX_PER_IP 300
#define MAX_CONNECTIONS 1000
/* Closed by the server within the request timeout, plus this much for scheduling. */
#define CLOSE_MARGIN_MS 2500
#define GOOD_LATENCY_BOUND_US 1000000

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static bool alive(ts_proc_t *p)
{
    return p->pid > 0 && waitpid(p->pid, NULL, WNOHANG) == 0;
}

static double metric(int port, const char *name, const char *labels)
{
    ts_http_resp_t r = {0};
    double v = -1;
    char want[256];
    snprintf(want, sizeof(want), "%s%s ", name, labels ? labels : "");
    if (ts_http(port, "GET", "/metrics", NULL, NULL, 0, &r, 5000) == 0 && r.status == 200 && r.body != NULL) {
        const char *p = strstr(r.body, want);
        while (p != NULL && p != r.body && p[-1] != '\n')
            p = strstr(p + 1, want);
        if (p != NULL)
            v = atof(p + strlen(want));
    }
    ts_http_resp_free(&r);
    return v;
}

/* Opens @p n connections to 127.0.0.1:@p port from @p src; returns how many connected. */
static int open_from(const char *src, int port, int *fds, int n)
{
    struct sockaddr_in from = {.sin_family = AF_INET}, to = {.sin_family = AF_INET};
    inet_pton(AF_INET, src, &from.sin_addr);
    to.sin_port = htons((uint16_t)port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int ok = 0;
    for (int i = 0; i < n; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fds[i] < 0 || bind(fds[i], (struct sockaddr *)&from, sizeof(from)) != 0 ||
            connect(fds[i], (struct sockaddr *)&to, sizeof(to)) != 0) {
            if (fds[i] >= 0)
                close(fds[i]);
            fds[i] = -1;
            continue;
        }
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        ok++;
    }
    return ok;
}

/* True once the peer closed @p fd (EOF or reset); data it sent counts as "answered". */
static bool peer_closed(int fd, bool *answered)
{
    char buf[512];
    for (;;) {
        ssize_t r = recv(fd, buf, sizeof(buf), 0);
        if (r > 0) {
            if (answered != NULL)
                *answered = true;
            continue;
        }
        if (r == 0)
            return true;
        return errno != EAGAIN && errno != EWOULDBLOCK;
    }
}

static int count_closed(int *fds, int n, bool close_them, int *answered)
{
    int closed = 0;
    for (int i = 0; i < n; i++) {
        if (fds[i] < 0)
            continue;
        bool ans = false;
        if (peer_closed(fds[i], &ans)) {
            closed++;
            if (close_them) {
                close(fds[i]);
                fds[i] = -1;
            }
        }
        if (ans && answered != NULL)
            (*answered)++;
    }
    return closed;
}

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

/* The well-behaved clients: still answered, all of them 2xx, none too slow. */
typedef struct good_s {
    ts_load_t *load;
    ts_load_stats_t last;
} good_t;

static void good_check(good_t *g, const char *phase)
{
    ts_load_stats_t st;
    ts_load_stats(g->load, &st);
    uint64_t answered = st.answered_2xx - g->last.answered_2xx;
    fprintf(stderr, "hostile: %-28s good clients: %llu answered 2xx, slowest so far %.1f ms (%llu connect failures)\n",
            phase, (unsigned long long)answered, st.max_latency_us / 1000.0, (unsigned long long)st.connect_failures);
    if (answered < 50)
        fail_msg("%s: the well-behaved clients got only %llu answers", phase, (unsigned long long)answered);
    assert_int_equal(st.answered_other, 0);
    assert_int_equal(st.no_answer, 0);
    if (st.max_latency_us > GOOD_LATENCY_BOUND_US)
        fail_msg("%s: a well-behaved request waited %.1f ms", phase, st.max_latency_us / 1000.0);
    g->last = st;
}

/* Runs every attack against the service on @p port while @p good keeps it busy. */
static void attack(ts_proc_t *svc, int port, const char *slow_path, good_t *good)
{
    static int fds[4 * MAX_PER_IP + 64];
    char lbl[64];
    int64_t t0, deadline;

    /* 1. Idle flood from one address: the excess closed at once, the rest by the timeout. */
    int n = MAX_PER_IP + 200;
    assert_int_equal(open_from("127.0.0.2", port, fds, n), n);
    t0 = ts_now_ms();
    deadline = t0 + 3000;
    while (count_closed(fds, n, false, NULL) < n - MAX_PER_IP) {
        assert_true(alive(svc));
        if (ts_now_ms() > deadline)
            fail_msg("idle flood: %d of %d connections over the per-address limit still open after 3 s",
                     n - MAX_PER_IP - count_closed(fds, n, false, NULL), n - MAX_PER_IP);
        sleep_ms(20);
    }
    fprintf(stderr, "hostile: idle flood: %d over the per-address limit closed after %lld ms\n", n - MAX_PER_IP,
            (long long)(ts_now_ms() - t0));
    deadline = t0 + REQUEST_TIMEOUT_MS + CLOSE_MARGIN_MS;
    while (count_closed(fds, n, false, NULL) < n) {
        assert_true(alive(svc));
        if (ts_now_ms() > deadline)
            fail_msg("idle flood: %d idle connections still open %d ms after they connected",
                     n - count_closed(fds, n, false, NULL), REQUEST_TIMEOUT_MS + CLOSE_MARGIN_MS);
        sleep_ms(50);
    }
    fprintf(stderr, "hostile: idle flood: all %d closed after %lld ms\n", n, (long long)(ts_now_ms() - t0));
    close_all(fds, n);
    snprintf(lbl, sizeof(lbl), "{reason=\"per_ip\"}");
    assert_true(metric(port, "adtrack_http_connections_refused_total", lbl) >= n - MAX_PER_IP);
    good_check(good, "idle flood from one address");

    /* 2. Slowloris and slow bodies: trickled bytes do not keep a connection alive. */
    int nloris = 200, nbody = 80;
    assert_int_equal(open_from("127.0.0.3", port, fds, nloris), nloris);
    assert_int_equal(open_from("127.0.0.4", port, fds + nloris, nbody), nbody);
    char head[256], body_head[512];
    snprintf(head, sizeof(head), "GET %s HTTP/1.1\r\nHost: x\r\n", slow_path);
    snprintf(body_head, sizeof(body_head),
             "POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50000\r\n\r\n[");
    for (int i = 0; i < nloris; i++)
        assert_true(send(fds[i], head, strlen(head), MSG_NOSIGNAL) > 0);
    for (int i = 0; i < nbody; i++)
        assert_true(send(fds[nloris + i], body_head, strlen(body_head), MSG_NOSIGNAL) > 0);
    t0 = ts_now_ms();
    deadline = t0 + REQUEST_TIMEOUT_MS + CLOSE_MARGIN_MS;
    int total = nloris + nbody, answered = 0;
    for (;;) {
        int closed = 0;
        for (int i = 0; i < total; i++) {
            if (fds[i] < 0) {
                closed++;
                continue;
            }
            bool ans = false;
            if (peer_closed(fds[i], &ans)) {
                close(fds[i]);
                fds[i] = -1;
                closed++;
            } else {
                const char *drip = i < nloris ? "X" : "{\"e\":\"imp\",\"c\":\"x\"},";
                send(fds[i], drip, i < nloris ? 1 : 10, MSG_NOSIGNAL);
            }
            if (ans)
                answered++;
        }
        if (closed == total)
            break;
        assert_true(alive(svc));
        if (ts_now_ms() > deadline)
            fail_msg("slow clients: %d of %d still connected %d ms after they started", total - closed, total,
                     REQUEST_TIMEOUT_MS + CLOSE_MARGIN_MS);
        sleep_ms(200);
    }
    fprintf(stderr, "hostile: %d slowloris and %d slow-body connections all closed after %lld ms\n", nloris, nbody,
            (long long)(ts_now_ms() - t0));
    /* h2o answers nothing to a request that never completed; a 408 would be welcome too,
     * but an answer with data would mean a trickled request was served. */
    assert_int_equal(answered, 0);
    good_check(good, "slowloris and slow bodies");

    /* 3. Idle floods from several addresses past --max-connections. The service takes
     * --max-connections of them and pauses its listeners; the rest, and any newcomer, wait
     * in the kernel's backlog until the idle ones time out. */
    double paused0 = metric(port, "adtrack_http_accept_paused_total", "{reason=\"max_connections\"}");
    int per = MAX_PER_IP, naddr = 4, opened = 0;
    for (int a = 0; a < naddr; a++) {
        char src[32];
        snprintf(src, sizeof(src), "127.0.0.%d", 10 + a);
        /* connect() completes in the kernel's backlog even while the listener pauses. */
        opened += open_from(src, port, fds + a * per, per);
    }
    assert_int_equal(opened, naddr * per);
    t0 = ts_now_ms();
    for (int i = 0; i < 10; i++) {
        assert_true(alive(svc));
        sleep_ms(100);
    }
    good_check(good, "flood over --max-connections");
    deadline = t0 + 2 * REQUEST_TIMEOUT_MS + CLOSE_MARGIN_MS;
    for (;;) {
        ts_http_resp_t r = {0};
        int ok = ts_http(port, "GET", "/healthz", NULL, NULL, 0, &r, 1000) == 0 && r.status == 200;
        ts_http_resp_free(&r);
        if (ok)
            break;
        assert_true(alive(svc));
        if (ts_now_ms() > deadline)
            fail_msg("a new client was not served %lld ms after the flood", (long long)(ts_now_ms() - t0));
        sleep_ms(100);
    }
    fprintf(stderr, "hostile: %d idle connections from %d addresses: a new client was served %lld ms after the flood began\n",
            opened, naddr, (long long)(ts_now_ms() - t0));
    /* Those past the limit were accepted once the first ones timed out, then timed out too. */
    deadline = t0 + 2 * REQUEST_TIMEOUT_MS + 2 * CLOSE_MARGIN_MS;
    while (count_closed(fds, opened, false, NULL) < opened) {
        assert_true(alive(svc));
        if (ts_now_ms() > deadline)
            fail_msg("flood over --max-connections: %d connections still open after %lld ms",
                     opened - count_closed(fds, opened, false, NULL), (long long)(ts_now_ms() - t0));
        sleep_ms(50);
    }
    fprintf(stderr, "hostile: all %d closed by the service after %lld ms\n", opened, (long long)(ts_now_ms() - t0));
    close_all(fds, opened);
    double paused = metric(port, "adtrack_http_accept_paused_total", "{reason=\"max_connections\"}");
    fprintf(stderr, "hostile: listeners paused %.0f times at --max-connections %d\n", paused - paused0, MAX_CONNECTIONS);
    assert_true(paused > paused0);
    good_check(good, "after the flood");
}

static void raise_nofile(void)
{
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 4 * MAX_PER_IP + 512)
        skip(); /* cannot open enough sockets to attack with */
}

static void good_start(good_t *g, int port, const char *path, const char *headers)
{
    ts_load_opts_t lo = {.port = port, .threads = 1, .connections = 8, .ncampaigns = 16, .path = path,
                         .headers = headers, .source_ip = "127.0.0.1", .request_timeout_ms = 10000};
    g->load = ts_load_start(&lo);
    assert_non_null(g->load);
    int64_t deadline = ts_now_ms() + 10000;
    do {
        sleep_ms(50);
        ts_load_stats(g->load, &g->last);
        assert_true(ts_now_ms() < deadline);
    } while (g->last.answered_2xx < 100);
}

static void limits_args(char *maxc, char *perip, char *tmo)
{
    snprintf(maxc, 16, "%d", MAX_CONNECTIONS);
    snprintf(perip, 16, "%d", MAX_PER_IP);
    snprintf(tmo, 16, "%d", REQUEST_TIMEOUT_MS);
}

static void test_collector__hostile_clients_do_not_starve_others(void **state)
{
    AT_UNUSED(state);
    raise_nofile();
    ts_devstream_t ds = {0};
    ts_proc_t col = {0};
    assert_int_equal(ts_devstream_start(&ds, 1, 4), 0);
    char *bin = ts_bin("adtrack-collector");
    char *spool = ts_tmpdir("hostile-collector-spool");
    int port = ts_free_port();
    char listen[32], maxc[16], perip[16], tmo[16];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    limits_args(maxc, perip, tmo);
    char *argv[] = {bin, "--threads", "2", "--listen", listen, "--brokers", ds.bootstraps, "--spool-dir", spool,
                    "--max-connections", maxc, "--max-connections-per-ip", perip, "--request-timeout-ms", tmo,
                    "--log-level", "warn", NULL};
    assert_int_equal(ts_spawn(&col, argv, NULL, false, 5000), 0);
    assert_int_equal(ts_wait_port(port, 10000), 0);

    good_t good = {0};
    good_start(&good, port, "/t.gif?e=imp&p=pub-1", NULL);
    attack(&col, port, "/t.gif?e=imp&c=slow", &good);
    ts_load_stop(good.load);
    ts_load_destroy(good.load);

    int status = 0;
    assert_true(alive(&col));
    ts_signal(&col, SIGTERM);
    assert_int_equal(ts_wait(&col, 30000, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ts_devstream_stop(&ds);
    free(bin);
    free(spool);
}

static void test_coredata__hostile_clients_do_not_starve_others(void **state)
{
    AT_UNUSED(state);
    raise_nofile();
    ts_proc_t cd = {0};
    char *bin = ts_bin("adtrack-coredata");
    char *data = ts_tmpdir("hostile-coredata");
    int port = ts_free_port();
    char listen[32], maxc[16], perip[16], tmo[16];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);
    limits_args(maxc, perip, tmo);
    /* No Redis and no Kafka: coredata serves its API anyway (its fan-out retries), which is
     * all this test needs. */
    char redis[32], brokers[32];
    snprintf(redis, sizeof(redis), "127.0.0.1:%d", ts_free_port());
    snprintf(brokers, sizeof(brokers), "127.0.0.1:%d", ts_free_port());
    char *argv[] = {bin, "--listen", listen, "--threads", "2", "--data-dir", data, "--admin-token", "hostile-admin",
                    "--redis", redis, "--brokers", brokers, "--max-connections", maxc, "--max-connections-per-ip",
                    perip, "--request-timeout-ms", tmo, "--log-level", "error", NULL};
    assert_int_equal(ts_spawn(&cd, argv, NULL, false, 5000), 0);
    assert_int_equal(ts_wait_port(port, 10000), 0);

    good_t good = {0};
    good_start(&good, port, "/v1/campaigns?limit=10", "Authorization: Bearer hostile-admin\r\n");
    attack(&cd, port, "/v1/campaigns", &good);
    ts_load_stop(good.load);
    ts_load_destroy(good.load);

    int status = 0;
    assert_true(alive(&cd));
    ts_signal(&cd, SIGTERM);
    assert_int_equal(ts_wait(&cd, 30000, &status), 0);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(bin);
    free(data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_collector__hostile_clients_do_not_starve_others),
        cmocka_unit_test(test_coredata__hostile_clients_do_not_starve_others),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
