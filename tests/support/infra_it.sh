# shellcheck shell=bash
# tests/support/infra_it.sh: real Kafka and FerretDB for shell-driven tests (tests/it/*.sh,
# tests/e2e/*.sh, bench scripts); the shell side of tests/support/at_test_infra.[ch]. Sourced,
# never run (ctest runs every tests/it/*.sh as a test, so it lives here). Usage:
#
#   source "${ADTRACK_SOURCE_DIR:?}/tests/support/infra_it.sh"
#   infra_require kafka ferretdb     # exits 77 (CTest: skipped) unless both are installed
#   infra_require kafka@3.9.1        # a second pinned Kafka (scripts/kafka.sh --version)
#   trap infra_cleanup EXIT          # or call infra_cleanup from the test's own EXIT trap
#   infra_kafka_start 3              # sets KAFKA_DIR and KAFKA_BOOTSTRAP
#   infra_ferretdb_start             # sets FERRETDB_DIR and FERRETDB_URI
#   infra_kafka_kill_node 2; infra_kafka_start_node 2
#
# Every server gets --owner-pid $$ (the test's shell), so the scripts' watchdogs SIGKILL it
# within a second of the test dying, whatever happens to the EXIT trap. Every call is bounded
# by the scripts' own timeouts. With ADTRACK_REQUIRE_REAL_INFRA=1, a missing server fails
# the test (exit 1) instead of skipping it. Scratch directories go under $ADTRACK_TEST_TMP.

INFRA_SRC="${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}"
INFRA_TMP="${ADTRACK_TEST_TMP:-${TMPDIR:-/tmp}}"
KAFKA_DIR=""
KAFKA_BOOTSTRAP=""
FERRETDB_DIR=""
FERRETDB_URI=""

# infra_require kafka|kafka@VERSION|ferretdb...: exit 77 when one is not installed (see above).
infra_require() {
    local what script missing=0 args
    for what in "$@"; do
        args=(check)
        case $what in
        kafka) script=kafka.sh ;;
        kafka@*) script=kafka.sh args=(check --version "${what#kafka@}") ;;
        ferretdb) script=ferretdb.sh ;;
        *) echo "infra_require: unknown $what" >&2; exit 2 ;;
        esac
        if ! bash "$INFRA_SRC/scripts/$script" "${args[@]}" > /dev/null; then
            missing=1
        fi
    done
    if [[ $missing -eq 1 ]]; then
        if [[ ${ADTRACK_REQUIRE_REAL_INFRA:-0} == 1 ]]; then
            echo "FAIL: real infrastructure missing and ADTRACK_REQUIRE_REAL_INFRA=1" >&2
            exit 1
        fi
        echo "skipped: install with scripts/kafka.sh install [--version V] / scripts/ferretdb.sh install" >&2
        exit 77
    fi
}

# infra_kafka_start NODES [kafka.sh start args...]: a fresh cluster; KAFKA_BOOTSTRAP, KAFKA_DIR.
infra_kafka_start() {
    local nodes=$1
    shift
    mkdir -p "$INFRA_TMP"
    KAFKA_DIR=$(mktemp -d "$INFRA_TMP/kafka.XXXXXX")
    KAFKA_BOOTSTRAP=$(bash "$INFRA_SRC/scripts/kafka.sh" start --dir "$KAFKA_DIR" --nodes "$nodes" \
        --owner-pid $$ "$@" | head -n 1) || { echo "FAIL: kafka.sh start --nodes $nodes" >&2; exit 1; }
    [[ -n $KAFKA_BOOTSTRAP ]] || { echo "FAIL: kafka.sh start printed no bootstrap list" >&2; exit 1; }
}

infra_kafka_kill_node() { bash "$INFRA_SRC/scripts/kafka.sh" kill-node --dir "$KAFKA_DIR" --node "$1"; }
infra_kafka_stop_node() { bash "$INFRA_SRC/scripts/kafka.sh" stop-node --dir "$KAFKA_DIR" --node "$1"; }
infra_kafka_start_node() {
    bash "$INFRA_SRC/scripts/kafka.sh" start-node --dir "$KAFKA_DIR" --node "$1" --owner-pid $$
}

# infra_ferretdb_start [ferretdb.sh start args...]: a fresh FerretDB (or the same one again,
# after infra_ferretdb_kill); FERRETDB_URI is mongodb://127.0.0.1:PORT, without a path. With
# --tls, $FERRETDB_DIR/tls_uri holds the TLS listener's URI (see scripts/ferretdb.sh).
infra_ferretdb_start() {
    if [[ -z $FERRETDB_DIR ]]; then
        mkdir -p "$INFRA_TMP"
        FERRETDB_DIR=$(mktemp -d "$INFRA_TMP/ferretdb.XXXXXX")
    fi
    FERRETDB_URI=$(bash "$INFRA_SRC/scripts/ferretdb.sh" start --dir "$FERRETDB_DIR" --owner-pid $$ "$@" | head -n 1) ||
        { echo "FAIL: ferretdb.sh start" >&2; exit 1; }
}

infra_ferretdb_kill() { bash "$INFRA_SRC/scripts/ferretdb.sh" stop --dir "$FERRETDB_DIR" --kill; }

# infra_cleanup: stops whatever was started and removes the data (logs stay).
infra_cleanup() {
    if [[ -n $KAFKA_DIR ]]; then
        bash "$INFRA_SRC/scripts/kafka.sh" stop --dir "$KAFKA_DIR" --timeout 15 > /dev/null 2>&1 || true
        rm -rf "$KAFKA_DIR"/node-*/data
    fi
    if [[ -n $FERRETDB_DIR ]]; then
        bash "$INFRA_SRC/scripts/ferretdb.sh" stop --dir "$FERRETDB_DIR" > /dev/null 2>&1 || true
        rm -rf "$FERRETDB_DIR/data"
    fi
}
