#!/usr/bin/env bash
# ferretdb.sh: FerretDB 1.24 (MongoDB wire protocol on SQLite) on 127.0.0.1 for adtrack's
# tests, benchmarks and `adtrack up`. The server is tools/ferretdb (a tiny Go module of ours
# embedding FerretDB through its ferretdb package), built once into the cache. Never a
# system service. See docs/REAL-INFRA.md; what differs from MongoDB is in docs/MONGODB.md.
#
#   scripts/ferretdb.sh install
#       Builds tools/ferretdb with the local Go (1.24 or newer; modules from the Go module
#       proxy, pinned by tools/ferretdb/go.sum) into the cache. Idempotent. Prints the binary.
#   scripts/ferretdb.sh check
#       Exit 0 if built, 3 if not.
#   scripts/ferretdb.sh start --dir DIR [--port P] [--timeout SEC] [--owner-pid PID] [--tls]
#       Starts it with its SQLite files in DIR/data, waits (bounded) until it accepts
#       connections, and prints the URI (mongodb://127.0.0.1:PORT, no path) as the first
#       stdout line and into DIR/uri. On a DIR where it runs already, only prints the URI;
#       on a stopped one, starts again on the same port with the data kept. With
#       --owner-pid, a watchdog SIGKILLs it once PID is gone.
#       --tls: also a TLS listener on another free port, with a test CA and server certificate
#       made by openssl in DIR/tls/ (ca.pem; other-ca.pem signed nothing: for "untrusted"
#       tests); its URI (mongodb://127.0.0.1:TLSPORT/?tls=true&tlsCAFile=DIR/tls/ca.pem) goes
#       to DIR/tls_uri. The first stdout line stays the plain URI. docs/SECURITY.md.
#   scripts/ferretdb.sh stop --dir DIR [--timeout SEC] [--kill]
#       SIGTERM, SIGKILL after SEC (default 10). DIR is kept.
#   scripts/ferretdb.sh status|uri --dir DIR
#
# Exit status: 0 ok; 1 failed (reason and the log's tail on stderr); 2 usage; 3 not
# installed (run `scripts/ferretdb.sh install`; tests treat this as "skip").
#
# Environment: ADTRACK_CACHE_DIR (default $HOME/.cache/adtrack); GO (the go binary; default
# go on PATH, else /usr/local/go/bin/go); GOPROXY/GOFLAGS etc. as usual for go.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/scripts/ferretdb.sh"
SRC="$ROOT/tools/ferretdb"
CACHE=${ADTRACK_CACHE_DIR:-$HOME/.cache/adtrack}
# shellcheck source=scripts/infra-lib.sh
source "$ROOT/scripts/infra-lib.sh"

die() { echo "ferretdb.sh: $*" >&2; exit 1; }
usage() { echo "ferretdb.sh: $*" >&2; echo "usage: see the comment at the top of $SELF" >&2; exit 2; }
note() { echo "ferretdb.sh: $*" >&2; }

ferretdb_version() { sed -n 's:^require github.com/FerretDB/FerretDB \(v[0-9.]*\).*:\1:p' "$SRC/go.mod" | head -n 1; }

# A changed go.mod, go.sum or main.go gets a fresh build directory.
install_home() {
    local key
    key=$(cat "$SRC/go.mod" "$SRC/go.sum" "$SRC/main.go" | sha256sum | cut -c1-12)
    echo "$CACHE/ferretdb/$(ferretdb_version)-$key"
}

go_bin() {
    if [[ -n ${GO:-} ]]; then echo "$GO"; elif command -v go > /dev/null; then command -v go;
    elif [[ -x /usr/local/go/bin/go ]]; then echo /usr/local/go/bin/go; fi
}

cmd_install() {
    local home go gov tmp t0
    home=$(install_home)
    if [[ -x $home/adtrack-ferretdb ]]; then
        note "FerretDB $(ferretdb_version) already built: $home/adtrack-ferretdb"
        echo "$home/adtrack-ferretdb"
        return 0
    fi
    go=$(go_bin)
    [[ -n $go ]] || die "no go on PATH or in /usr/local/go/bin (Go 1.24 or newer)"
    gov=$("$go" env GOVERSION 2> /dev/null || true)
    # FerretDB v1.24.2's go.mod says "go 1.24"; GOTOOLCHAIN=local below forbids downloading
    # a toolchain, so an older go must fail here, clearly.
    if [[ ! $gov =~ ^go1\.([0-9]+) ]] || ((BASH_REMATCH[1] < 24)); then
        die "$go is ${gov:-of unknown version}; FerretDB $(ferretdb_version) needs Go 1.24 or newer"
    fi
    mkdir -p "$CACHE/ferretdb"
    exec 8> "$CACHE/ferretdb/.install.lock"
    flock -w 900 8 || die "another install holds $CACHE/ferretdb/.install.lock for 15 minutes"
    if [[ -x $home/adtrack-ferretdb ]]; then
        echo "$home/adtrack-ferretdb"
        return 0
    fi
    t0=$(now_ms)
    tmp=$(mktemp -d "$CACHE/ferretdb/.tmp.XXXXXX")
    note "building FerretDB $(ferretdb_version) with $gov (first time: downloads ~100 MB of modules, ~1-2 min on 2 cores)"
    # Modules and build cache under our cache directory; no toolchain download (the module
    # proxy is for modules only); go.sum must already hold every hash (-mod=readonly);
    # no cgo (the SQLite driver is modernc.org/sqlite, pure Go); without the PostgreSQL
    # backend, which we do not use.
    if ! (cd "$SRC" && env GOMODCACHE="$CACHE/go/mod" GOCACHE="$CACHE/go/build" GOTOOLCHAIN=local \
            GOFLAGS=-mod=readonly CGO_ENABLED=0 \
            "$go" build -trimpath -tags ferretdb_no_postgresql -o "$tmp/adtrack-ferretdb" . >&2); then
        rm -rf "$tmp"
        die "go build failed (see above)"
    fi
    rm -rf "$home"
    mv "$tmp" "$home"
    note "built $home/adtrack-ferretdb in $(( ($(now_ms) - t0) / 1000 )) s"
    echo "$home/adtrack-ferretdb"
}

BIN=""
require_installed() {
    BIN="$(install_home)/adtrack-ferretdb"
    if [[ ! -x $BIN ]]; then
        note "FerretDB $(ferretdb_version) is not built (run: scripts/ferretdb.sh install)"
        exit 3
    fi
}

server_pid() { infra_pid_is "$DIR/pid" "--dir $DIR/data"; }

cmd_start() {
    local t0 deadline pid port uri=""
    t0=$(now_ms)
    deadline=$((t0 + TIMEOUT * 1000))
    exec 9> "$DIR/.lock"
    flock -w "$TIMEOUT" 9 || die "$DIR is locked by another ferretdb.sh"
    if [[ -n $(server_pid) && -s $DIR/uri ]]; then
        cat "$DIR/uri"
        return 0
    fi
    if [[ -n $PORT ]]; then
        port=$PORT
    elif [[ -s $DIR/port ]]; then
        port=$(< "$DIR/port") # a restart keeps the URI
    else
        port=$(infra_free_ports 1)
    fi
    echo "$port" > "$DIR/port"
    local tls_args=()
    if [[ $TLS -eq 1 ]]; then
        local tport
        if [[ -s $DIR/tls_port ]]; then tport=$(< "$DIR/tls_port"); else tport=$(infra_free_ports 1); fi
        echo "$tport" > "$DIR/tls_port"
        infra_make_certs "$DIR/tls" ferretdb || die "making the test certificates failed"
        tls_args=(--tls-listen "127.0.0.1:$tport" --tls-cert "$DIR/tls/ferretdb.pem" --tls-key "$DIR/tls/ferretdb.key")
        echo "mongodb://127.0.0.1:$tport/?tls=true&tlsCAFile=$DIR/tls/ca.pem" > "$DIR/tls_uri"
    fi
    mkdir -p "$DIR/data"
    rm -f "$DIR/uri" "$DIR/stdout"
    # All three standard streams redirected: a caller reading our output (ts_run) sees EOF
    # when this script exits. setsid: out of the caller's process group. 9>&-: not the start
    # lock, or every later `start` on this directory would wait for the server to exit.
    setsid "$BIN" --listen "127.0.0.1:$port" --dir "$DIR/data" --log-level "${ADTRACK_FERRETDB_LOG_LEVEL:-warn}" "${tls_args[@]}" \
        < /dev/null > "$DIR/stdout" 2>> "$DIR/ferretdb.log" 9>&- &
    pid=$!
    echo "$pid" > "$DIR/pid"
    [[ -n $OWNER ]] && start_watchdog "$OWNER"
    # The server prints its URI once it accepts connections.
    while :; do
        [[ -s $DIR/stdout ]] && uri=$(head -n 1 "$DIR/stdout")
        [[ $uri == mongodb://* ]] && break
        if ! kill -0 "$pid" 2> /dev/null; then
            tail -n 20 "$DIR/ferretdb.log" >&2 || true
            die "FerretDB exited during start-up"
        fi
        if (($(now_ms) > deadline)); then
            kill -9 "$pid" 2> /dev/null || true
            tail -n 20 "$DIR/ferretdb.log" >&2 || true
            die "FerretDB did not start within ${TIMEOUT}s"
        fi
        sleep 0.05
    done
    echo "$uri" > "$DIR/uri"
    note "FerretDB ready in $(( $(now_ms) - t0 )) ms: $uri (dir $DIR)"
    echo "$uri"
}

start_watchdog() {
    local old
    old=$(cat "$DIR/watchdog.pid" 2> /dev/null || true)
    [[ -n $old ]] && kill "$old" 2> /dev/null || true
    setsid bash "$SELF" _watchdog --dir "$DIR" --owner-pid "$1" < /dev/null > /dev/null 2>> "$DIR/watchdog.log" 9>&- &
    echo $! > "$DIR/watchdog.pid"
}

cmd_watchdog() {
    local pid
    while [[ $(cat "$DIR/watchdog.pid" 2> /dev/null || true) == "$$" ]]; do
        if ! kill -0 "$OWNER" 2> /dev/null; then
            pid=$(server_pid)
            echo "ferretdb.sh watchdog: owner $OWNER is gone: killing FerretDB ${pid:-(not running)}" >&2
            [[ -n $pid ]] && kill -9 "$pid" 2> /dev/null
            rm -f "$DIR/watchdog.pid"
            exit 0
        fi
        sleep 1
    done
}

cmd_stop() {
    local pid deadline
    rm -f "$DIR/watchdog.pid"
    pid=$(server_pid)
    [[ -n $pid ]] || { rm -f "$DIR/pid"; note "$DIR: not running"; return 0; }
    if [[ $KILL -eq 1 ]]; then kill -9 "$pid"; else kill -TERM "$pid"; fi
    deadline=$(($(now_ms) + TIMEOUT * 1000))
    while [[ -n $(server_pid) ]]; do
        if (($(now_ms) > deadline)); then
            note "still running after ${TIMEOUT}s: SIGKILL"
            kill -9 "$pid" 2> /dev/null || true
            deadline=$(($(now_ms) + 10000))
        fi
        sleep 0.05
    done
    rm -f "$DIR/pid"
    note "stopped $DIR"
}

cmd_status() {
    local pid
    pid=$(server_pid)
    if [[ -n $pid ]]; then
        echo "running pid $pid $(cat "$DIR/uri" 2> /dev/null) rss $(infra_rss_kb "$pid") kB"
    else
        echo "stopped"
    fi
}

[[ $# -ge 1 ]] || usage "no command"
CMD=$1
shift
DIR="" PORT="" TIMEOUT="" OWNER="" KILL=0 TLS=0
while [[ $# -gt 0 ]]; do
    case $1 in
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --port) PORT=${2:?}; shift 2 ;;
    --tls) TLS=1; shift ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --owner-pid) OWNER=${2:?}; shift 2 ;;
    --kill) KILL=1; shift ;;
    *) usage "unknown argument $1" ;;
    esac
done
[[ -z $PORT || $PORT =~ ^[0-9]+$ ]] || usage "--port $PORT: not a number"
[[ -z $OWNER || $OWNER =~ ^[0-9]+$ ]] || usage "--owner-pid $OWNER: not a number"
[[ -z $TIMEOUT || $TIMEOUT =~ ^[0-9]+$ ]] || usage "--timeout $TIMEOUT: seconds, a number"

need_dir() {
    [[ -n $DIR ]] || usage "$CMD: --dir is required"
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
}

case $CMD in
install) cmd_install ;;
check) require_installed; echo "FerretDB $(ferretdb_version) built: $BIN" ;;
start) need_dir; require_installed; TIMEOUT=${TIMEOUT:-60}; cmd_start ;;
stop) need_dir; TIMEOUT=${TIMEOUT:-10}; cmd_stop ;;
status) need_dir; cmd_status ;;
uri) need_dir; cat "$DIR/uri" ;;
_watchdog) need_dir; cmd_watchdog ;;
-h | --help | help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//' ;;
*) usage "unknown command $CMD" ;;
esac
