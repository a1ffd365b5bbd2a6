/*
 * at_test_infra.h: real servers for integration tests: an Apache Kafka (KRaft) cluster of 1
 * or 3 nodes (scripts/kafka.sh) and FerretDB, a MongoDB wire-protocol server on SQLite
 * (scripts/ferretdb.sh). See docs/REAL-INFRA.md.
 *
 * Both are installed once per machine into a cache (`scripts/kafka.sh install`,
 * `scripts/ferretdb.sh install`; scripts/test.sh does it). When they are not installed the
 * start functions return TS_SKIP without starting anything, and a test's main() should exit
 * with TS_SKIP (CTest's SKIP_RETURN_CODE) before running cmocka: see ts_infra_skip().
 *
 * Every server is a child of the script, not of the test: it is stopped by the matching stop
 * function, and also SIGKILLed by the script's watchdog within about a second of the test
 * process dying (the scripts get --owner-pid getpid()). Every call is bounded in time.
 * Scratch directories come from ts_tmpdir() (under $ADTRACK_TEST_TMP); the scripts come
 * from $ADTRACK_SOURCE_DIR/scripts. Prefix ts_ = test support.
 */
#ifndef AT_TEST_INFRA_H
#define AT_TEST_INFRA_H

#include <stdbool.h>
#include <stddef.h>

/* Exit status for "needed infrastructure is not installed": CTest's SKIP_RETURN_CODE. */
#define TS_SKIP 77

#define TS_KAFKA_MAX_NODES 9

/* A Kafka cluster started by scripts/kafka.sh. Zero it before the first start. */
typedef struct ts_kafka_s {
    char dir[1024];        /* the cluster directory (cluster.env, node-<n>/{data,logs}) */
    int nodes;             /* 1 or 3 */
    char bootstraps[512];  /* "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3", node order */
    int ports[TS_KAFKA_MAX_NODES]; /* ports[n - 1]: node n's PLAINTEXT port */
    bool running;
} ts_kafka_t;

/*
 * Whether Kafka is installed (jars in the cache, Java 17+). When it is not, copies the reason
 * into @p why (may be NULL) and returns false. Runs `scripts/kafka.sh check` (no JVM start).
 */
bool ts_kafka_installed(char *why, size_t why_size);

/*
 * Starts an @p nodes-node cluster (1: RF 1; 3: RF 3 and min.insync.replicas 2, internal
 * topics alike) in a fresh scratch directory, with the topics of deploy/topics.conf (test
 * profile) created and fully replicated and the group coordinator ready, and fills
 * k->bootstraps and k->ports. Takes 8-20 s. Returns 0; TS_SKIP when Kafka is not installed;
 * -1 on any other failure (the script's messages and the nodes' log tails on stderr).
 * @p extra_args: further `kafka.sh start` arguments (e.g. "--partitions",
 * "adtrack.events.raw=4"), NULL-terminated, or NULL.
 */
int ts_kafka_start(ts_kafka_t *k, int nodes);
int ts_kafka_start_args(ts_kafka_t *k, int nodes, const char *const *extra_args);

/* SIGKILLs node @p node (1-based) and waits until the process is gone. 0 or -1. */
int ts_kafka_kill_node(ts_kafka_t *k, int node);

/* SIGTERM to node @p node (a controlled shutdown: leadership moves first), SIGKILL after
 * 30 s. 0 or -1. */
int ts_kafka_stop_node(ts_kafka_t *k, int node);

/*
 * Starts node @p node again (same port, same data) and waits until it is registered and,
 * when every node runs, until no partition is under-replicated: the node caught up and is
 * back in every ISR. Up to 120 s. 0 or -1.
 */
int ts_kafka_start_node(ts_kafka_t *k, int node);

/*
 * Runs `scripts/kafka.sh <cmd> --dir <k->dir> [args...]` (e.g. "describe", "status") and
 * returns its stdout in *@p out (heap; free()). 0 when it exited 0, else -1.
 */
int ts_kafka_script(ts_kafka_t *k, const char *cmd, const char *const *args, char **out);

/*
 * Stops every node (SIGTERM, SIGKILL after 15 s) and removes the nodes' data directories
 * (their logs stay in k->dir for a post-mortem). Safe on a zeroed or stopped cluster.
 */
void ts_kafka_stop(ts_kafka_t *k);

/* FerretDB started by scripts/ferretdb.sh. Zero it before the first start. */
typedef struct ts_ferretdb_s {
    char dir[1024]; /* data/ (the SQLite files), ferretdb.log, uri, pid */
    char uri[256];  /* mongodb://127.0.0.1:PORT (no path: append "/adtrack" or "/?...") */
    int port;
    bool running;
} ts_ferretdb_t;

/* Whether the FerretDB binary is built in the cache; the reason in @p why otherwise. */
bool ts_ferretdb_installed(char *why, size_t why_size);

/*
 * Starts FerretDB (a fresh scratch directory on the first call; on later calls the same
 * directory, port and data: a restart) and waits until it accepts connections. Fills f->uri.
 * Takes well under a second. 0; TS_SKIP when not built; -1 on failure.
 */
int ts_ferretdb_start(ts_ferretdb_t *f);

/* SIGKILLs FerretDB (data and port kept for ts_ferretdb_start()). 0 or -1. */
int ts_ferretdb_kill(ts_ferretdb_t *f);

/* Stops FerretDB and removes its data. Safe on a zeroed or stopped one. */
void ts_ferretdb_stop(ts_ferretdb_t *f);

/*
 * For a test's main(): returns true (after printing why on stderr) when any of the named
 * servers is not installed; the test then returns TS_SKIP. @p need_kafka / @p need_ferretdb
 * say which are needed. With ADTRACK_REQUIRE_REAL_INFRA=1 in the environment (CI) a missing
 * server is reported and the test fails instead (returns false and the start fails).
 */
bool ts_infra_skip(bool need_kafka, bool need_ferretdb);

#endif
