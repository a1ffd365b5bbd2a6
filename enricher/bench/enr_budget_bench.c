/*
 * adtrack-enricher-budget-bench: the budget script alone, against a redis-server, the way
 * the worker calls it (enr_budget_run(): one call per batch). Used by bench/enricher.sh
 * (ENR_BENCH_SCRIPT) to compare builds on the script's Redis time, which the worker waits
 * for on every batch. Not installed.
 *
 *   adtrack-enricher-budget-bench PORT BATCHES BATCH_SIZE CAMPAIGNS
 *
 * FLUSHALLs the server first (use a scratch Redis), then charges BATCHES batches of
 * BATCH_SIZE new impressions (price 2500 micros, a budget that never runs out) spread over
 * CAMPAIGNS campaigns, all in one minute, as the warm enricher bench does. Prints one line:
 * "<median ms per call> <Redis microseconds per charge>", the second from INFO commandstats
 * (EVALSHA and EVAL, the commands the script calls included).
 */
#include <stdlib.h>
#include <time.h>

#include "at_uuid.h"
#include "enr_budget.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Microseconds Redis spent in EVAL/EVALSHA so far, or -1. */
static long long script_usec(redisContext *rc)
{
    redisReply *r = redisCommand(rc, "INFO commandstats");
    if (r == NULL || r->type != REDIS_REPLY_STRING) {
        freeReplyObject(r);
        return -1;
    }
    long long sum = 0;
    for (const char *p = r->str; (p = strstr(p, "cmdstat_eval")) != NULL; p++) {
        const char *u = strstr(p, "usec=");
        if (u != NULL)
            sum += atoll(u + 5);
    }
    freeReplyObject(r);
    return sum;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s PORT BATCHES BATCH_SIZE CAMPAIGNS\n", argv[0]);
        return 2;
    }
    int port = atoi(argv[1]), nb = atoi(argv[2]), bs = atoi(argv[3]), nc = atoi(argv[4]);
    if (port <= 0 || nb <= 0 || bs <= 0 || bs > 65535 || nc <= 0 || nc > 1000) {
        fprintf(stderr, "%s: bad arguments\n", argv[0]);
        return 2;
    }
    redisContext *rc = redisConnect("127.0.0.1", port);
    if (rc == NULL || rc->err) {
        fprintf(stderr, "%s: cannot connect to redis on port %d\n", argv[0], port);
        return 1;
    }
    freeReplyObject(redisCommand(rc, "FLUSHALL"));
    enr_budget_t b = {.replay_window_s = 8 * 86400};
    at_err_t err;
    if (enr_budget_load(&b, rc, &err) != 0) {
        fprintf(stderr, "%s: %s\n", argv[0], err.msg);
        return 1;
    }
    char(*camps)[16] = calloc((size_t)nc, sizeof(*camps));
    enr_charge_t *ch = calloc((size_t)bs, sizeof(*ch));
    double *t = calloc((size_t)nb, sizeof(*t));
    if (camps == NULL || ch == NULL || t == NULL)
        return 1;
    for (int c = 0; c < nc; c++)
        snprintf(camps[c], sizeof(camps[c]), "camp-%d", c);
    at_uuid7_gen_t gen = {0};
    const int64_t minute = INT64_C(1795786020000); /* 2026-11-27T13:27:00Z */
    long long u0 = script_usec(rc);
    for (int n = 0; n < nb; n++) {
        for (int i = 0; i < bs; i++) {
            at_uuid_t u;
            at_uuid7_next(&gen, (uint64_t)minute, &u);
            at_uuid_format(&u, ch[i].id);
            int c = (int)((int64_t)i * nc / bs); /* consecutive runs per campaign, as per partition */
            ch[i].c = camps[c];
            ch[i].clen = strlen(camps[c]);
            ch[i].price_micros = 2500;
            ch[i].budget_micros = INT64_C(1000000000000000);
            ch[i].ts_ms = minute + i % 60000;
            ch[i].type = AT_EV_IMP;
        }
        int published;
        uint64_t ncmds = 0;
        double t0 = now_s();
        if (enr_budget_run(&b, rc, ch, (size_t)bs, NULL, 0, &published, &ncmds, &err) != 0) {
            fprintf(stderr, "%s: %s\n", argv[0], err.msg);
            return 1;
        }
        t[n] = now_s() - t0;
    }
    long long u1 = script_usec(rc);
    qsort(t, (size_t)nb, sizeof(*t), cmp_double);
    printf("%.3f %.3f\n", t[nb / 2] * 1e3, (double)(u1 - u0) / nb / bs);
    enr_budget_fini(&b);
    redisFree(rc);
    free(camps);
    free(ch);
    free(t);
    return 0;
}
