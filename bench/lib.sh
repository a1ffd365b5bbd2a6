# shellcheck shell=bash
# Shared helpers for the bench/ scripts. Source it; it defines functions only (plus the
# BENCH_PIDS / BENCH_TMP state the cleanup trap uses) and changes no shell options.
#
#   bench_log MSG...            progress line on stderr
#   bench_die MSG...            message on stderr, exit 1 (the trap cleans up)
#   bench_free_port             a TCP port on 127.0.0.1 that no socket uses now (not ephemeral)
#   bench_wait_port PORT SECS   wait until something accepts on 127.0.0.1:PORT
#   bench_wait_http URL SECS    wait until URL answers 200
#   bench_median N...           median of numbers (mean of the middle two for even counts)
#   bench_track PID             stop PID (and wait for it) when the script exits
#   bench_stop PID [SECS]       SIGTERM, wait up to SECS (default 10), then SIGKILL
#   bench_tmpdir                make BENCH_TMP (removed on exit) and print it; call it
#                               directly, not in $(...), or the trap never learns the path
#   bench_cleanup_install       install the EXIT/INT/TERM trap
#   bench_pid_tree PID          PID and its direct children
#   bench_hwm_kib PID...        sum of VmHWM (peak RSS) in KiB over the PIDs
#   bench_cpu_ticks PID...      sum of utime+stime clock ticks over the PIDs
#   bench_to_ms VALUE           wrk duration (850.00us, 1.27ms, 1.02s, 2.00m) to ms

BENCH_PIDS=()
BENCH_TMP=""

bench_log() { printf '[bench %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
bench_die() {
    printf '[bench] error: %s\n' "$*" >&2
    exit 1
}

bench_free_port() {
    # Below the kernel's ephemeral range, so that no client connection (wrk's, or anybody
    # else's) can be holding the port as its local end when the server binds it.
    local lo _ port
    lo=$(awk '{ print $1 }' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
    [ "$lo" -gt 12000 ] || lo=32768
    for _ in $(seq 1 200); do
        port=$((10000 + (RANDOM * 32768 + RANDOM) % (lo - 10000)))
        if [ -z "$(ss -Htan "sport = :$port" 2>/dev/null)" ] &&
            ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return 0
        fi
    done
    return 1
}

bench_wait_port() {
    local port=$1 secs=${2:-10} deadline
    deadline=$(($(date +%s) + secs))
    while [ "$(date +%s)" -le "$deadline" ]; do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    return 1
}

bench_wait_http() {
    local url=$1 secs=${2:-10} deadline code
    deadline=$(($(date +%s) + secs))
    while [ "$(date +%s)" -le "$deadline" ]; do
        code=$(curl -s -o /dev/null -m 1 -w '%{http_code}' "$url" 2>/dev/null || true)
        [ "$code" = 200 ] && return 0
        sleep 0.05
    done
    return 1
}

bench_median() {
    [ $# -gt 0 ] || {
        echo "n/a"
        return 0
    }
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) m = v[(NR + 1) / 2]; else m = (v[NR / 2] + v[NR / 2 + 1]) / 2;
              printf "%.6g\n", m }'
}

bench_track() { BENCH_PIDS+=("$1"); }

bench_stop() {
    local pid=$1 secs=${2:-10} _
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    for _ in $(seq 1 $((secs * 20))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    if kill -0 "$pid" 2>/dev/null; then
        bench_log "pid $pid did not stop after ${secs}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}

bench_tmpdir() {
    if [ -z "$BENCH_TMP" ]; then
        BENCH_TMP=$(mktemp -d "${TMPDIR:-/tmp}/adtrack-bench.XXXXXX") || bench_die "mktemp failed"
    fi
    echo "$BENCH_TMP"
}

_bench_cleanup() {
    local rc=$? pid
    trap - EXIT INT TERM
    for pid in "${BENCH_PIDS[@]}"; do
        kill -0 "$pid" 2>/dev/null && kill -TERM "$pid" 2>/dev/null
    done
    for pid in "${BENCH_PIDS[@]}"; do
        bench_stop "$pid" 5
    done
    if [ -n "$BENCH_TMP" ] && [ -d "$BENCH_TMP" ] && [ -z "${BENCH_KEEP_TMP:-}" ]; then
        rm -rf "$BENCH_TMP"
    fi
    exit "$rc"
}

bench_cleanup_install() {
    trap _bench_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

bench_pid_tree() {
    echo "$1"
    pgrep -P "$1" || true
}

bench_hwm_kib() {
    local total=0 pid v
    for pid in "$@"; do
        v=$(awk '/^VmHWM:/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

bench_cpu_ticks() {
    local total=0 pid v
    for pid in "$@"; do
        # utime and stime are fields 14 and 15; strip "pid (comm) " first.
        v=$(sed -E 's/^[0-9]+ \(.*\) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }')
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

bench_to_ms() {
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        else if (u == "h") n *= 3600000;
        printf "%.3f\n", n }'
}
