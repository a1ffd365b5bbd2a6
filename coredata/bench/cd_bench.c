/*
 * adtrack-coredata-bench: measures a running adtrack-coredata (bench/coredata.sh drives it).
 *
 *  1. latency: --changes PUTs, one after another on a keep-alive connection; three
 *     subscribers run meanwhile in this process: two Redis pub/sub subscribers on
 *     adtrack:coredata and one consumer of adtrack.coredata.changes. Each records when it saw
 *     each version; change-to-visible latency = that moment - the moment the PUT was sent
 *     (same monotonic clock). Also the API's own response time.
 *  2. throughput: --conns connections PUT as fast as they can for --seconds.
 * Prints one JSON object with p50/p99/max per subscriber, missing counts and updates/s.
 */
#include <bson/bson.h>
#include <hiredis/hiredis.h>
#include <librdkafka/rdkafka.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "at_conf.h"

typedef struct bench_conf_s {
    int64_t port;
    char *token;
    char *redis_host;
    int64_t redis_port;
    char *brokers;
    char *topic;
    int64_t changes;
    int64_t conns;
    int64_t seconds;
    char *prefix;
} bench_conf_t;

#define C(f) AT_OFF(bench_conf_t, f)
static const at_conf_opt_t opts[] = {
    {"port", AT_CONF_INT, C(port), 1, 65535, "8090", "Port of adtrack-coredata on 127.0.0.1."},
    {"token", AT_CONF_STR, C(token), 1, 512, "bench-token", "Admin token."},
    {"redis-host", AT_CONF_STR, C(redis_host), 1, 256, "127.0.0.1", "Redis host."},
    {"redis-port", AT_CONF_INT, C(redis_port), 1, 65535, "6379", "Redis port."},
    {"brokers", AT_CONF_STR, C(brokers), 1, 4096, "127.0.0.1:9092", "Kafka bootstrap servers."},
    {"topic", AT_CONF_STR, C(topic), 1, 249, "adtrack.coredata.changes", "Changes topic."},
    {"changes", AT_CONF_INT, C(changes), 1, 1000000, "2000", "Changes measured for latency."},
    {"conns", AT_CONF_INT, C(conns), 1, 256, "8", "Connections of the throughput phase."},
    {"seconds", AT_CONF_INT, C(seconds), 0, 600, "10", "Length of the throughput phase (0: skip)."},
    {"prefix", AT_CONF_STR, C(prefix), 1, 32, "bench", "Entity id prefix."},
};
static const at_conf_table_t table = {"adtrack-coredata-bench", "Benchmarks a running adtrack-coredata.", opts,
                                      AT_ARRAY_LEN(opts)};
static bench_conf_t conf;
extern char **environ;

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* ---- version -> times ---- */

#define MAXV (1 << 22)
static int64_t base_version = -1; /* versions are recorded relative to this */
static _Atomic int64_t *seen[3];  /* per subscriber: receive time by version - base */
static int64_t *sent, *answered;  /* per version: PUT sent, response received */
static atomic_bool stop;

static void record(int sub, int64_t v)
{
    int64_t b = base_version;
    if (b < 0 || v < b || v - b >= MAXV)
        return;
    int64_t zero = 0;
    atomic_compare_exchange_strong(&seen[sub][v - b], &zero, now_ns());
}

static int64_t json_version(const char *s, size_t len)
{
    bson_t *b = bson_new_from_json((const uint8_t *)s, (ssize_t)len, NULL);
    bson_iter_t it;
    int64_t v = -1;
    if (b != NULL && bson_iter_init_find(&it, b, "version"))
        v = bson_iter_as_int64(&it);
    if (b)
        bson_destroy(b);
    return v;
}

/* ---- subscribers ---- */

static void *redis_sub(void *arg)
{
    int idx = (int)(intptr_t)arg;
    struct timeval tv = {5, 0};
    redisContext *c = redisConnectWithTimeout(conf.redis_host, (int)conf.redis_port, tv);
    if (c == NULL || c->err) {
        fprintf(stderr, "bench: redis: %s\n", c ? c->errstr : "oom");
        exit(1);
    }
    redisReply *r = redisCommand(c, "SUBSCRIBE adtrack:coredata");
    freeReplyObject(r);
    while (!atomic_load(&stop)) {
        void *rep = NULL;
        if (redisGetReplyFromReader(c, &rep) != REDIS_OK)
            break;
        if (rep == NULL) {
            struct pollfd p = {.fd = c->fd, .events = POLLIN};
            if (poll(&p, 1, 100) <= 0)
                continue;
            if (redisBufferRead(c) != REDIS_OK)
                break;
            continue;
        }
        redisReply *m = rep;
        if (m->type == REDIS_REPLY_ARRAY && m->elements == 3 && m->element[2]->type == REDIS_REPLY_STRING)
            record(idx, json_version(m->element[2]->str, m->element[2]->len));
        freeReplyObject(m);
    }
    redisFree(c);
    return NULL;
}

static void *kafka_sub(void *arg)
{
    char errstr[256];
    (void)arg;
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    rd_kafka_conf_set(kc, "bootstrap.servers", conf.brokers, errstr, sizeof(errstr));
    rd_kafka_conf_set(kc, "group.id", "adtrack-coredata-bench", errstr, sizeof(errstr));
    rd_kafka_conf_set(kc, "enable.auto.commit", "false", errstr, sizeof(errstr));
    rd_kafka_conf_set(kc, "fetch.wait.max.ms", "5", errstr, sizeof(errstr));
    rd_kafka_conf_set(kc, "fetch.error.backoff.ms", "5", errstr, sizeof(errstr));
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof(errstr));
    if (rk == NULL) {
        fprintf(stderr, "bench: kafka: %s\n", errstr);
        exit(1);
    }
    rd_kafka_poll_set_consumer(rk);
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, conf.topic, NULL);
    if (rd_kafka_metadata(rk, 0, rkt, &md, 10000) != RD_KAFKA_RESP_ERR_NO_ERROR || md->topic_cnt != 1) {
        fprintf(stderr, "bench: no metadata for %s\n", conf.topic);
        exit(1);
    }
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(parts, conf.topic, md->topics[0].partitions[i].id)->offset =
            RD_KAFKA_OFFSET_END;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_assign(rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    while (!atomic_load(&stop)) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR)
            record(2, json_version(m->payload, m->len));
        rd_kafka_message_destroy(m);
    }
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    return NULL;
}

/* ---- keep-alive HTTP ---- */

static int http_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), on = 1;
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons((uint16_t)conf.port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        perror("bench: connect");
        exit(1);
    }
    return fd;
}

/* PUT one campaign; returns the new version (or -1), the status in *status. */
static int64_t put(int fd, const char *id, int n, int *status)
{
    char body[768], req[1400];
    int bl = snprintf(body, sizeof(body),
                      "{\"advertiser\":\"adv-bench\",\"name\":\"bench %d\",\"start\":\"2026-01-01T00:00:00Z\","
                      "\"end\":\"2027-01-01T00:00:00Z\",\"budget_micros\":1000000000,\"pricing\":\"cpm\","
                      "\"price_micros\":%d,\"publishers\":[\"pub-1\"],\"destinations\":[\"https://a.example/x\"]}",
                      n, 1000 + n % 1000);
    int rl = snprintf(req, sizeof(req),
                      "PUT /v1/campaigns/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                      "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                      id, conf.token, bl, body);
    if (write(fd, req, (size_t)rl) != rl)
        return -1;
    static __thread char buf[16384];
    size_t len = 0;
    for (;;) {
        ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (r <= 0)
            return -1;
        len += (size_t)r;
        buf[len] = '\0';
        char *h = strstr(buf, "\r\n\r\n");
        if (h == NULL)
            continue;
        char *cl = strcasestr(buf, "content-length:");
        size_t clen = cl ? (size_t)atol(cl + 15) : 0;
        if (len < (size_t)(h + 4 - buf) + clen)
            continue;
        *status = atoi(buf + 9);
        return json_version(h + 4, clen);
    }
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static void stats(const char *name, int64_t *lat, size_t n, size_t missing, bool last)
{
    qsort(lat, n, sizeof(*lat), cmp64);
    double p50 = n ? lat[n / 2] / 1e6 : 0, p99 = n ? lat[(size_t)(n * 0.99)] / 1e6 : 0, mx = n ? lat[n - 1] / 1e6 : 0;
    printf("    \"%s\": {\"n\": %zu, \"missing\": %zu, \"p50_ms\": %.3f, \"p99_ms\": %.3f, \"max_ms\": %.3f}%s\n", name,
           n, missing, p50, p99, mx, last ? "" : ",");
}

/* ---- throughput ---- */

static atomic_long tp_done, tp_errors;

static void *tp_worker(void *arg)
{
    int w = (int)(intptr_t)arg, fd = http_connect(), n = 0, status = 0;
    char id[64];
    int64_t end = now_ns() + conf.seconds * 1000000000LL;
    while (now_ns() < end) {
        snprintf(id, sizeof(id), "%s-tp-%d-%d", conf.prefix, w, n % 50);
        int64_t v = put(fd, id, n++, &status);
        if (v < 0) {
            atomic_fetch_add(&tp_errors, 1);
            close(fd);
            fd = http_connect();
            continue;
        }
        atomic_fetch_add(&tp_done, 1);
    }
    close(fd);
    return NULL;
}

int main(int argc, char **argv)
{
    at_err_t err = {0};
    int rc = at_conf_load(&table, &conf, argc, argv, environ, stdout, &err);
    if (rc == AT_CONF_EXIT_HELP)
        return 0;
    if (rc != 0) {
        fprintf(stderr, "adtrack-coredata-bench: %s\n", err.msg);
        return 2;
    }
    for (int i = 0; i < 3; i++)
        seen[i] = calloc(MAXV, sizeof(**seen));
    sent = calloc(MAXV, sizeof(*sent));
    answered = calloc(MAXV, sizeof(*answered));
    pthread_t subs[3];
    pthread_create(&subs[0], NULL, redis_sub, (void *)0);
    pthread_create(&subs[1], NULL, redis_sub, (void *)1);
    pthread_create(&subs[2], NULL, kafka_sub, NULL);

    /* Warm-up: until every subscriber has seen a change (the Kafka assignment takes a moment). */
    int fd = http_connect(), status = 0;
    char id[64];
    int64_t v = -1, deadline = now_ns() + 60 * 1000000000LL;
    for (int i = 0; now_ns() < deadline; i++) {
        snprintf(id, sizeof(id), "%s-warm", conf.prefix);
        v = put(fd, id, i, &status);
        if (v < 0) {
            fprintf(stderr, "bench: warm-up PUT failed (status %d)\n", status);
            return 1;
        }
        if (base_version < 0)
            base_version = v;
        usleep(200 * 1000);
        if (v - base_version < MAXV && seen[0][v - base_version] && seen[1][v - base_version] &&
            seen[2][v - base_version])
            break;
    }

    /* Latency phase: one change at a time. */
    size_t n = (size_t)conf.changes;
    int64_t *versions = calloc(n, sizeof(*versions));
    int64_t t0 = now_ns();
    for (size_t i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "%s-lat-%zu", conf.prefix, i % 100);
        int64_t ts = now_ns();
        v = put(fd, id, (int)i, &status);
        int64_t ta = now_ns();
        if (v < 0 || v - base_version >= MAXV) {
            fprintf(stderr, "bench: PUT failed (status %d)\n", status);
            return 1;
        }
        versions[i] = v;
        sent[v - base_version] = ts;
        answered[v - base_version] = ta;
    }
    double lat_secs = (now_ns() - t0) / 1e9;
    close(fd);
    /* Let the last notifications arrive. */
    int64_t settle = now_ns() + 10 * 1000000000LL;
    while (now_ns() < settle) {
        int64_t b = versions[n - 1] - base_version;
        if (seen[0][b] && seen[1][b] && seen[2][b])
            break;
        usleep(10 * 1000);
    }
    usleep(300 * 1000);

    int64_t *lat = calloc(n, sizeof(*lat));
    printf("{\n  \"changes\": %zu,\n  \"sequential_updates_per_s\": %.0f,\n  \"latency\": {\n", n, n / lat_secs);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        lat[k++] = answered[versions[i] - base_version] - sent[versions[i] - base_version];
    stats("api_response", lat, k, 0, false);
    const char *names[] = {"redis_subscriber_1", "redis_subscriber_2", "kafka_changes_subscriber"};
    for (int s = 0; s < 3; s++) {
        size_t missing = 0;
        k = 0;
        for (size_t i = 0; i < n; i++) {
            int64_t t = seen[s][versions[i] - base_version];
            if (t == 0)
                missing++;
            else
                lat[k++] = t - sent[versions[i] - base_version];
        }
        stats(names[s], lat, k, missing, s == 2);
    }
    printf("  }");

    if (conf.seconds > 0) {
        pthread_t *w = calloc((size_t)conf.conns, sizeof(*w));
        int64_t t1 = now_ns();
        for (int i = 0; i < conf.conns; i++)
            pthread_create(&w[i], NULL, tp_worker, (void *)(intptr_t)i);
        for (int i = 0; i < conf.conns; i++)
            pthread_join(w[i], NULL);
        double secs = (now_ns() - t1) / 1e9;
        printf(",\n  \"throughput\": {\"conns\": %lld, \"seconds\": %.1f, \"updates\": %ld, \"errors\": %ld, "
               "\"updates_per_s\": %.0f}",
               (long long)conf.conns, secs, atomic_load(&tp_done), atomic_load(&tp_errors),
               atomic_load(&tp_done) / secs);
        free(w);
    }
    printf("\n}\n");
    atomic_store(&stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(subs[i], NULL);
    return 0;
}
