# shellcheck shell=bash
# tests/support/loadtest_it.sh: set-up shared by the shell integration tests of adtrack-loadtest
# (tests/it/loadtest_*.sh). Sourced, never run: it lives here and not under tests/it/ because
# ctest runs every tests/it/*.sh as a test. A test starts with
#
#   source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/loadtest_it.sh"
#
# and then has:
#   BIN_DIR, BIN   $ADTRACK_BIN_DIR and the adtrack-loadtest binary in it
#   SRC            $ADTRACK_SOURCE_DIR
#   TMP            a fresh scratch directory named after the test, removed on exit
#   fail <msg>     prints "FAIL: <msg>" (and the last $LT_FAIL_TAIL_LINES lines of the file
#                  $LT_FAIL_TAIL, when the test set it and it exists) and exits 1
#   lt_track_pid   a background process to stop on exit (last started, first stopped); a
#                  function lt_before_cleanup, when the test defines one, runs before that
#   free_port, start_nginx, lt_start_devstream, lt_expect_status, lt_python: see below
set -euo pipefail

BIN_DIR="${ADTRACK_BIN_DIR:?ADTRACK_BIN_DIR not set}"
# shellcheck disable=SC2034 # BIN and SRC are for the sourcing test
BIN="$BIN_DIR/adtrack-loadtest"
# shellcheck disable=SC2034
SRC="${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}"
TMP="$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/$(basename "$0" .sh).XXXXXX")"
LT_PIDS=()
LT_FAIL_TAIL=""
LT_FAIL_TAIL_LINES=20

lt_track_pid() { LT_PIDS+=("$1"); }

lt_cleanup() {
    if declare -F lt_before_cleanup > /dev/null; then lt_before_cleanup || true; fi
    local i p
    for ((i = ${#LT_PIDS[@]} - 1; i >= 0; i--)); do
        p="${LT_PIDS[$i]}"
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
    done
    [ -n "${KEEP:-}" ] || rm -rf "$TMP"
}
trap lt_cleanup EXIT

fail() {
    echo "FAIL: $*" >&2
    if [ -n "$LT_FAIL_TAIL" ] && [ -f "$LT_FAIL_TAIL" ]; then tail -n "$LT_FAIL_TAIL_LINES" "$LT_FAIL_TAIL" >&2; fi
    exit 1
}

# A TCP port on 127.0.0.1 that was free a moment ago.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_nginx <port> [<http directives>] [<worker_connections>]: nginx in the foreground, one
# process, answering /t.gif with empty_gif and everything else with 204; the directives
# (log_format, access_log) go into the http block as given. Waits up to 10 s for the port.
start_nginx() {
    mkdir -p "$TMP/nginx"
    cat > "$TMP/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
error_log stderr;
pid $TMP/nginx/nginx.pid;
events { worker_connections ${3:-1024}; }
http {
  ${2:-}
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  server {
    listen 127.0.0.1:$1;
    location = /t.gif { empty_gif; }
    location / { return 204; }
  }
}
CONF
    nginx -e stderr -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" &
    lt_track_pid $!
    for _ in $(seq 1 100); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    fail "nginx did not start on port $1"
}

# lt_start_devstream: a Kafka-protocol cluster (adtrack-devstream, 1 broker, 4 partitions);
# sets BOOT to the bootstrap list it prints (waits up to 30 s for it).
lt_start_devstream() {
    "$BIN_DIR/adtrack-devstream" --brokers 1 --partitions 4 > "$TMP/ds.out" 2> "$TMP/ds.err" < /dev/null &
    lt_track_pid $!
    BOOT=""
    for _ in $(seq 1 300); do
        BOOT="$(head -n 1 "$TMP/ds.out" 2>/dev/null || true)"
        [ -n "$BOOT" ] && break
        sleep 0.1
    done
    [ -n "$BOOT" ] || { cat "$TMP/ds.err" >&2; fail "adtrack-devstream printed no bootstrap list"; }
}

# lt_expect_status <status> <message> <command...>: runs the command (errexit off while it
# runs) and fails with "<message>, got <its status>" unless it exited with <status>.
lt_expect_status() {
    local want="$1" msg="$2" rc
    shift 2
    set +e
    "$@"
    rc=$?
    set -e
    [ "$rc" -eq "$want" ] || fail "$msg, got $rc"
}

# lt_python <args...> <<'PY' ... PY: the Python script on stdin, run with <args> as
# sys.argv[1:], after a prelude that imports json and sys and defines check(cond, msg):
# unless cond, print "FAIL: <msg>" on stderr and exit 1. Its exit status is the script's.
lt_python() {
    {
        cat <<'PY'
import json, sys
def check(cond, msg):
    if not cond:
        print("FAIL:", msg, file=sys.stderr)
        sys.exit(1)
PY
        cat
    } | python3 - "$@"
}
