#!/usr/bin/env bash
# Collector benchmark: the same wrk load against (a) nginx empty_gif and (b) adtrack-collector
# producing every pixel to adtrack-devstream with the durability promise on (200 only after
# the Kafka acknowledgement). See --help and docs/bench/collector.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
# shellcheck source=bench/lib.sh
. "$HERE/lib.sh"

usage() {
    cat <<'EOF'
Usage: bench/collector.sh [options]

Runs wrk against nginx empty_gif and against adtrack-collector (+ adtrack-devstream as the
stand-in Kafka), interleaved round by round, and prints medians as a Markdown report:
requests/s, p50/p99 latency, peak RSS, the collector/nginx ratio, the collector's p99 at
half the nginx rate, and a sweep of configuration knobs. 127.0.0.1 only. Builds nothing:
binaries come from $ADTRACK_BIN_DIR (default: build/bin under the repository).

Options:
  --quick               ~1 minute: 4 s rounds, no knob sweep, no nginx half-rate reference,
                        and no file written unless --out is given
  --rounds N            measured rounds per server (default 3, at least 3 recommended)
  --duration S          seconds per measured wrk run (default 10)
  --warmup S            seconds of unmeasured load on each fresh server (default 1)
  --threads N           collector --threads and nginx worker_processes (default 2)
  --linger-ms N         collector --linger-ms (default 1)
  --connections C       wrk connections (default 256)
  --wrk-threads T       wrk threads (default 2)
  --half-connections C  wrk connections for the half-rate runs (default: --connections)
  --half-rate R         req/s for the half-rate runs (default: median nginx req/s / 2)
  --partitions P        partitions of adtrack.events.raw (default 4)
  --kafka devstream|real  the broker: adtrack-devstream (default), or a 1-node Apache Kafka
                        started by scripts/kafka.sh (install it first: scripts/kafka.sh
                        install). Its JVM's CPU is reported separately: on a real deployment
                        the broker runs elsewhere.
  --collector-arg ARG   extra argument for adtrack-collector (repeatable)
  --max-other PCT       a run during which other processes (not wrk, the server or devstream)
                        used more than PCT% of a core is noisy (default 25)
  --retries N           repeat a noisy run up to N times (default 1; 0 keeps every run)
  --quiet-wait S        before each measured run, wait up to S seconds for the box to be
                        <= 15% busy (default 5; 0 = don't wait)
  --slack S             waiting for quiet and repeating noisy runs may add at most S seconds
                        to the planned run time in all (default 30; --quick: 15)
  --no-knobs, --knobs   skip / run the knob sweep (default: run it, except with --quick)
  --knob-duration S     seconds per knob run (default 4)
  --out FILE            write the report there (default docs/bench/collector.md; '-' = none)
  --keep-tmp            keep the scratch directory (wrk output, logs, configs)
  -h, --help            this text

Environment: ADTRACK_BIN_DIR (adtrack-collector, adtrack-devstream), NGINX (default nginx),
WRK (default wrk).
EOF
}

# ---- options ----
RETRIES=1 MAX_OTHER=25 QUIET_WAIT=5 SLACK="" QUICK=0 ROUNDS=3 DURATION="" WARMUP="" THREADS=2 LINGER=1 CONNS=256 WRK_THREADS=2
HALF_CONNS="" HALF_RATE="" PARTITIONS=4 KAFKA=devstream KNOBS="" KNOB_DURATION=4 OUT=""
COL_EXTRA=()
ORIG_ARGS=("$@")
while [ $# -gt 0 ]; do
    case "$1" in
    --quick) QUICK=1 ;;
    --rounds) ROUNDS=$2 && shift ;;
    --duration) DURATION=$2 && shift ;;
    --warmup) WARMUP=$2 && shift ;;
    --threads) THREADS=$2 && shift ;;
    --linger-ms) LINGER=$2 && shift ;;
    --connections) CONNS=$2 && shift ;;
    --wrk-threads) WRK_THREADS=$2 && shift ;;
    --half-connections) HALF_CONNS=$2 && shift ;;
    --half-rate) HALF_RATE=$2 && shift ;;
    --partitions) PARTITIONS=$2 && shift ;;
    --kafka) KAFKA=$2 && shift ;;
    --collector-arg) COL_EXTRA+=("$2") && shift ;;
    --retries) RETRIES=$2 && shift ;;
    --max-other) MAX_OTHER=$2 && shift ;;
    --quiet-wait) QUIET_WAIT=$2 && shift ;;
    --slack) SLACK=$2 && shift ;;
    --no-knobs) KNOBS=0 ;;
    --knobs) KNOBS=1 ;;
    --knob-duration) KNOB_DURATION=$2 && shift ;;
    --out) OUT=$2 && shift ;;
    --keep-tmp) export BENCH_KEEP_TMP=1 ;;
    -h | --help) usage && exit 0 ;;
    *) usage >&2 && bench_die "unknown option: $1" ;;
    esac
    shift
done
# --quick changes only the defaults; explicit options win.
if [ "$QUICK" = 1 ]; then
    : "${DURATION:=4}" "${WARMUP:=1}" "${KNOBS:=0}" "${OUT:=-}" "${SLACK:=15}"
    HALF_NGINX=0
else
    : "${DURATION:=10}" "${WARMUP:=1}" "${KNOBS:=1}" "${OUT:=$ROOT/docs/bench/collector.md}" "${SLACK:=30}"
    HALF_NGINX=1
fi
[ -n "$HALF_CONNS" ] || HALF_CONNS=$CONNS
for v in SLACK QUIET_WAIT RETRIES MAX_OTHER ROUNDS DURATION WARMUP THREADS LINGER CONNS WRK_THREADS HALF_CONNS PARTITIONS KNOB_DURATION; do
    [[ ${!v} =~ ^[0-9]+$ ]] || bench_die "--$(echo "$v" | tr 'A-Z_' 'a-z-'): expected a whole number, got '${!v}'"
done
[ "$ROUNDS" -ge 1 ] || bench_die "--rounds: at least 1"
[[ $KAFKA == devstream || $KAFKA == real ]] || bench_die "--kafka: devstream or real, got '$KAFKA'"
if [ "$KAFKA" = real ]; then BROKER_NAME="Apache Kafka (1 node, scripts/kafka.sh)"; else BROKER_NAME="adtrack-devstream (stand-in Kafka)"; fi
[ "$CONNS" -ge "$WRK_THREADS" ] || bench_die "--connections must be >= --wrk-threads"

BIN_DIR=${ADTRACK_BIN_DIR:-$ROOT/build/bin}
NGINX=${NGINX:-nginx}
WRK=${WRK:-wrk}
COLLECTOR=$BIN_DIR/adtrack-collector
DEVSTREAM=$BIN_DIR/adtrack-devstream
for b in "$COLLECTOR" "$DEVSTREAM"; do
    [ -x "$b" ] || bench_die "$b not found. Build first:
  cmake -S $ROOT -B $ROOT/build && cmake --build $ROOT/build --target adtrack-collector adtrack-devstream
or point ADTRACK_BIN_DIR at a directory holding both binaries."
done
command -v "$WRK" >/dev/null || bench_die "wrk not found (Debian package wrk)"
command -v "$NGINX" >/dev/null || bench_die "nginx not found (Debian package nginx)"
command -v curl >/dev/null || bench_die "curl not found"
[ -r "$HERE/nginx-empty-gif.conf.in" ] || bench_die "missing $HERE/nginx-empty-gif.conf.in"

# A pixel as a page would send it: every documented field, an encoded page URL.
URL_PATH='/t.gif?e=imp&c=camp-42&cr=cr-7&p=pub-3&pl=top&uid=u-123&u=https%3A%2F%2Fnews.example%2Farticles%2F2024%2Fsome-story%3Fref%3Dhome&cb=1732191234567'
HZ=$(getconf CLK_TCK)
NCPU=$(nproc)

bench_cleanup_install
bench_tmpdir >/dev/null # not in $(...): the cleanup trap needs BENCH_TMP set here
TMP=$BENCH_TMP
bench_log "scratch directory $TMP"

# ---- box load ----
# Busy and total jiffies of the whole box, from the first line of /proc/stat.
# Prints: busy total process irq, in clock ticks summed over all CPUs. "process" is user +
# nice + system (time charged to processes); "irq" is irq + softirq (on loopback, mostly the
# network stack, charged to no process).
box_ticks() {
    awk '/^cpu / { t = 0; for (i = 2; i <= 9; i++) t += $i; print t - $5 - $6, t, $2 + $3 + $4, $7 + $8; exit }' /proc/stat
}
# CPU seconds (user + system) of this shell's waited-for children so far, from `times`
# (run in this shell, not in a $(...) subshell, which would have children of its own).
children_cpu() {
    times >"$TMP/times"
    awk 'NR == 2 { n = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); n += a[1] * 60 + a[2] }; print n }' "$TMP/times"
}
busy_pct() { # busy0 total0 busy1 total1
    awk -v b0="$1" -v t0="$2" -v b1="$3" -v t1="$4" 'BEGIN { d = t1 - t0; printf "%.0f\n", (d > 0 ? 100 * (b1 - b0) / d : 0) }'
}
read -r b0 t0 _ _ < <(box_ticks)
sleep 1
read -r b1 t1 _ _ < <(box_ticks)
IDLE_CHECK=$(busy_pct "$b0" "$t0" "$b1" "$t1")

# Before a measured run, wait (up to --quiet-wait seconds) until the box is nearly idle, so
# runs start when other people's builds and tests pause rather than in the middle of them.
QUIET_WAITED=0 SLACK_USED2=0 # in half seconds
wait_quiet() {
    local a0 at0 a1 at1 pct waited=0 limit=$((QUIET_WAIT * 2))
    # Half-second steps, out of this run's --quiet-wait and what is left of --slack.
    [ "$limit" -le $((SLACK * 2 - SLACK_USED2)) ] || limit=$((SLACK * 2 - SLACK_USED2))
    while :; do
        read -r a0 at0 _ _ < <(box_ticks)
        sleep 0.5
        read -r a1 at1 _ _ < <(box_ticks)
        pct=$(busy_pct "$a0" "$at0" "$a1" "$at1")
        [ "$pct" -le 15 ] && return 0
        if [ "$waited" -ge "$limit" ]; then
            [ "$limit" -gt 0 ] && bench_log "box still ${pct}% busy; measuring anyway"
            return 0
        fi
        waited=$((waited + 1)) QUIET_WAITED=$((QUIET_WAITED + 1)) SLACK_USED2=$((SLACK_USED2 + 1))
    done
}
LOADAVG_START=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$IDLE_CHECK" -gt 15 ]; then
    bench_log "WARNING: the box is ${IDLE_CHECK}% busy before the benchmark starts; numbers will be noisy"
fi

# ---- devstream (one for the whole run; restarted if it dies) ----
DS_PID="" BOOTSTRAP="" DS_STARTS=0
devstream_ensure() {
    if [ -n "$DS_PID" ] && kill -0 "$DS_PID" 2>/dev/null; then
        return 0
    fi
    if [ "$KAFKA" = real ]; then
        # One node, started once for the whole run (its data is scratch); the watchdog stops
        # it when this script is gone. DS_PID is the broker's JVM, measured like devstream.
        [ -z "$DS_PID" ] || bench_die "the Kafka broker (pid $DS_PID) died"
        BOOTSTRAP=$(bash "$ROOT/scripts/kafka.sh" start --dir "$TMP/kafka" --nodes 1 \
            --partitions "adtrack.events.raw=$PARTITIONS" --owner-pid $$ 2>"$TMP/kafka.err" | head -1) ||
            bench_die "scripts/kafka.sh start failed: $(tail -3 "$TMP/kafka.err")"
        DS_PID=$(cat "$TMP/kafka/node-1/pid") DS_STARTS=1
        bench_track "$DS_PID"
        bench_log "Kafka (1 node) pid $DS_PID at $BOOTSTRAP"
        return 0
    fi
    if [ -n "$DS_PID" ]; then
        bench_log "WARNING: adtrack-devstream (pid $DS_PID) died; starting a new one"
    fi
    DS_STARTS=$((DS_STARTS + 1))
    local out=$TMP/devstream.$DS_STARTS.out err=$TMP/devstream.$DS_STARTS.err _
    "$DEVSTREAM" --partitions "$PARTITIONS" --log-level warn >"$out" 2>"$err" </dev/null &
    DS_PID=$!
    bench_track "$DS_PID"
    for _ in $(seq 1 600); do
        [ -s "$out" ] && break
        kill -0 "$DS_PID" 2>/dev/null || bench_die "adtrack-devstream exited: $(tail -3 "$err")"
        sleep 0.05
    done
    BOOTSTRAP=$(head -1 "$out")
    [ -n "$BOOTSTRAP" ] || bench_die "adtrack-devstream printed no bootstrap list in 30 s"
    bench_log "devstream pid $DS_PID at $BOOTSTRAP"
}

# ---- servers ----
SRV_PID="" SRV_PORT="" SRV_KIND="" SRV_SEQ=0
nginx_start() { # workers
    local workers=$1 prefix
    SRV_SEQ=$((SRV_SEQ + 1))
    prefix=$TMP/nginx.$SRV_SEQ
    mkdir -p "$prefix/logs" "$prefix/tmp"
    local attempt
    for attempt in 1 2 3; do
        SRV_PORT=$(bench_free_port) || bench_die "no free port"
        sed -e "s|@PORT@|$SRV_PORT|g" -e "s|@WORKERS@|$workers|g" -e "s|@PREFIX@|$prefix|g" \
            "$HERE/nginx-empty-gif.conf.in" >"$prefix/nginx.conf"
        "$NGINX" -p "$prefix" -c "$prefix/nginx.conf" -e "$prefix/logs/error.log" \
            >"$prefix/stdout" 2>&1 </dev/null &
        SRV_PID=$! SRV_KIND=nginx
        bench_track "$SRV_PID"
        bench_wait_port "$SRV_PORT" 10 && kill -0 "$SRV_PID" 2>/dev/null && break
        # Somebody else took the port between the check and the bind: try another one.
        bench_stop "$SRV_PID" 2
        if [ "$attempt" = 3 ] || ! grep -q "Address already in use" "$prefix/logs/error.log" "$prefix/stdout"; then
            bench_die "nginx did not listen: $(tail -3 "$prefix/logs/error.log" "$prefix/stdout")"
        fi
    done
    # Wait for every worker to exist, so their peak RSS is read from all of them.
    local _
    for _ in $(seq 1 100); do
        [ "$(pgrep -c -P "$SRV_PID" || true)" -ge "$workers" ] && break
        sleep 0.05
    done
}

collector_start() { # threads linger [extra args...]
    local threads=$1 linger=$2 dir
    shift 2
    devstream_ensure
    SRV_SEQ=$((SRV_SEQ + 1))
    dir=$TMP/collector.$SRV_SEQ
    mkdir -p "$dir/spool"
    local attempt
    for attempt in 1 2 3; do
        SRV_PORT=$(bench_free_port) || bench_die "no free port"
        "$COLLECTOR" --listen "127.0.0.1:$SRV_PORT" --brokers "$BOOTSTRAP" --spool-dir "$dir/spool" \
            --threads "$threads" --linger-ms "$linger" ${COL_EXTRA[@]+"${COL_EXTRA[@]}"} "$@" \
            >"$dir/stdout" 2>"$dir/stderr" </dev/null &
        SRV_PID=$! SRV_KIND=collector
        bench_track "$SRV_PID"
        # Readiness, from this very process (not whatever else might answer on the port).
        bench_wait_http "http://127.0.0.1:$SRV_PORT/readyz" 30 && kill -0 "$SRV_PID" 2>/dev/null && break
        bench_stop "$SRV_PID" 2
        if [ "$attempt" = 3 ] || ! grep -q "Address already in use" "$dir/stderr"; then
            bench_die "collector not ready in 30 s: $(tail -3 "$dir/stderr")"
        fi
    done
}

server_stop() {
    bench_stop "$SRV_PID" 15
    SRV_PID=""
}

server_pids() { bench_pid_tree "$SRV_PID"; }

# Collector counters of interest, as "name value" lines.
collector_counters() {
    curl -s -m 5 "http://127.0.0.1:$SRV_PORT/metrics" | awk '
        /^adtrack_events_produced_total\{topic="raw"\}/ { print "produced", $2 }
        /^adtrack_events_spooled_total / { print "spooled", $2 }
        /^adtrack_kafka_delivery_failures_total / { print "dfail", $2 }
        /^adtrack_http_requests_total\{code="200"\}/ { print "ok", $2 }
        /^adtrack_http_requests_total\{/ { t += $2 }
        /^adtrack_http_request_duration_seconds_bucket\{le="0.001"\}/ { print "le1ms", $2 }
        /^adtrack_http_request_duration_seconds_bucket\{le="0.0025"\}/ { print "le2_5ms", $2 }
        /^adtrack_http_request_duration_seconds_bucket\{le="0.005"\}/ { print "le5ms", $2 }
        /^adtrack_http_request_duration_seconds_bucket\{le="0.01"\}/ { print "le10ms", $2 }
        /^adtrack_http_request_duration_seconds_count / { print "hcount", $2 }
        END { print "http", t + 0 }'
}
counter() { awk -v k="$2" '$1 == k { print $2; f = 1 } END { if (!f) print 0 }' "$1"; }

# ---- one measured run ----
# Sets: R_RPS R_REQS R_P50 R_P99 R_ERRS R_RSS_MIB R_DS_MIB R_CPU R_DS_CPU R_WRK_CPU R_OTHER R_IRQ
# R_CHECK R_SRV5 R_SRVP99. CPU figures are % of one core over the measured run.
WRK_SEQ=0
RUN_ROWS=()
measure() { # label connections duration [lua-script mean-delay-ms]
    local label=$1 conns=$2 dur=$3 lua=${4:-} mean=${5:-}
    local wout pids c0 c1 d0 d1 bt0 bt1 bp0 bp1 bi0 bi1 m0 m1 w0 w1
    WRK_SEQ=$((WRK_SEQ + 1))
    wout=$TMP/wrk.$WRK_SEQ.$(printf '%s' "$label" | tr -c 'A-Za-z0-9.-' '_').txt
    local wrk_args=(-t "$WRK_THREADS" -c "$conns" -d "${dur}s" --latency --timeout 10s)
    local url="http://127.0.0.1:$SRV_PORT$URL_PATH"
    if [ "$QUIET_WAIT" -gt 0 ]; then wait_quiet; fi
    if [ "$WARMUP" -gt 0 ]; then
        "$WRK" -t "$WRK_THREADS" -c "$conns" -d "${WARMUP}s" ${lua:+-s "$lua"} "$url" ${lua:+-- "$mean"} >/dev/null
    fi
    mapfile -t pids < <(server_pids)
    m0=$TMP/metrics.$WRK_SEQ.before m1=$TMP/metrics.$WRK_SEQ.after
    [ "$SRV_KIND" = collector ] && collector_counters >"$m0"
    c0=$(bench_cpu_ticks "${pids[@]}")
    d0=$(bench_cpu_ticks "$DS_PID")
    read -r _ bt0 bp0 bi0 < <(box_ticks)
    children_cpu >"$TMP/w0"
    "$WRK" "${wrk_args[@]}" ${lua:+-s "$lua"} "$url" ${lua:+-- "$mean"} >"$wout"
    children_cpu >"$TMP/w1"
    read -r _ bt1 bp1 bi1 < <(box_ticks)
    c1=$(bench_cpu_ticks "${pids[@]}")
    d1=$(bench_cpu_ticks "$DS_PID")
    [ "$SRV_KIND" = collector ] && collector_counters >"$m1"

    R_RPS=$(awk '/^Requests\/sec:/ { printf "%.0f", $2 }' "$wout")
    R_REQS=$(awk '/ requests in / { print $1 }' "$wout")
    R_P50=$(bench_to_ms "$(awk '$1 == "50%" { print $2 }' "$wout")")
    R_P99=$(bench_to_ms "$(awk '$1 == "99%" { print $2 }' "$wout")")
    R_ERRS=$(awk '/Socket errors:/ { gsub(/,/, ""); s += $4 + $6 + $8 + $10 }
                  /Non-2xx or 3xx responses:/ { s += $5 } END { print s + 0 }' "$wout")
    R_RSS_MIB=$(awk -v k="$(bench_hwm_kib "${pids[@]}")" 'BEGIN { printf "%.1f", k / 1024 }')
    R_DS_MIB=$(awk -v k="$(bench_hwm_kib "$DS_PID")" 'BEGIN { printf "%.1f", k / 1024 }')
    R_CPU=$(awk -v a="$c0" -v b="$c1" -v hz="$HZ" -v s="$dur" 'BEGIN { printf "%.0f", 100 * (b - a) / hz / s }')
    R_DS_CPU=$(awk -v a="$d0" -v b="$d1" -v hz="$HZ" -v s="$dur" 'BEGIN { printf "%.0f", 100 * (b - a) / hz / s }')
    w0=$(cat "$TMP/w0") w1=$(cat "$TMP/w1")
    R_WRK_CPU=$(awk -v a="$w0" -v b="$w1" -v s="$dur" 'BEGIN { printf "%.0f", 100 * (b - a) / s }')
    # Everything else on the box (other people's builds, tests, fuzzers), in % of one core.
    # Process CPU the three of them do not account for: other people's builds and tests.
    R_OTHER=$(awk -v p="$((bp1 - bp0))" -v t="$((bt1 - bt0))" -v n="$NCPU" -v a="$R_CPU" -v b="$R_DS_CPU" \
        -v c="$R_WRK_CPU" 'BEGIN { o = (t > 0 ? 100 * p / (t / n) : 0) - a - b - c; printf "%.0f", (o < 0 ? 0 : o) }')
    R_US=$(awk -v c="$R_CPU" -v r="${R_RPS:-0}" 'BEGIN { printf "%.1f", (r > 0 ? c / 100 * 1e6 / r : 0) }')
    R_IRQ=$(awk -v i="$((bi1 - bi0))" -v t="$((bt1 - bt0))" -v n="$NCPU" 'BEGIN { printf "%.0f", (t > 0 ? 100 * i / (t / n) : 0) }')
    R_CHECK=ok R_SRV5="" R_SRVP99=""
    [ "${R_REQS:-0}" -gt 0 ] || R_CHECK="no requests"
    [ "$R_ERRS" = 0 ] || R_CHECK="$R_ERRS errors"
    if [ "$SRV_KIND" = collector ]; then
        local produced spooled dfail http n le1 le25 le5 le10
        produced=$(($(counter "$m1" produced) - $(counter "$m0" produced)))
        spooled=$(($(counter "$m1" spooled) - $(counter "$m0" spooled)))
        dfail=$(($(counter "$m1" dfail) - $(counter "$m0" dfail)))
        http=$(($(counter "$m1" http) - $(counter "$m0" http)))
        # Every answered pixel must have been acknowledged by Kafka, none spooled to disk.
        if [ "$spooled" -gt 0 ] || [ "$dfail" -gt 0 ]; then
            R_CHECK="$spooled spooled, $dfail delivery failures (Kafka path not measured!)"
        elif [ "$produced" -lt "$((R_REQS * 99 / 100))" ]; then
            R_CHECK="only $produced produced for $R_REQS requests"
        fi
        n=$(($(counter "$m1" hcount) - $(counter "$m0" hcount)))
        le1=$(($(counter "$m1" le1ms) - $(counter "$m0" le1ms)))
        le25=$(($(counter "$m1" le2_5ms) - $(counter "$m0" le2_5ms)))
        le5=$(($(counter "$m1" le5ms) - $(counter "$m0" le5ms)))
        le10=$(($(counter "$m1" le10ms) - $(counter "$m0" le10ms)))
        if [ "$n" -gt 0 ]; then
            R_SRV5=$(awk -v a="$le5" -v n="$n" 'BEGIN { printf "%.2f", 100 * a / n }')
            R_SRVP99=$(awk -v n="$n" -v a="$le1" -v b="$le25" -v c="$le5" -v d="$le10" 'BEGIN {
                q = 0.99 * n; if (a >= q) print "<=1"; else if (b >= q) print "<=2.5";
                else if (c >= q) print "<=5"; else if (d >= q) print "<=10"; else print ">10" }')
        fi
        : "$http"
    fi
    bench_log "$(printf '%-28s %6s req/s p50 %6s p99 %7s ms rss %5s MiB cpu: srv %3s%% ds %3s%% wrk %3s%% irq %3s%% other %3s%% %s' \
        "$label" "$R_RPS" "$R_P50" "$R_P99" "$R_RSS_MIB" "$R_CPU" "$R_DS_CPU" "$R_WRK_CPU" "$R_IRQ" "$R_OTHER" "$R_CHECK")"
    local dscpu="" srv5=""
    [ "$SRV_KIND" = collector ] && dscpu="$R_DS_CPU%" srv5="${R_SRV5:+$R_SRV5%}"
    RUN_ROWS+=("| $label | $conns | $R_RPS | $R_P50 | $R_P99 | $srv5 | $R_RSS_MIB | $R_CPU% | $R_US | $dscpu | $R_WRK_CPU% | $R_IRQ% | $R_OTHER% | $R_CHECK |")
}

# Calibration run length for the half-rate phase.
CAL_DUR=3
[ "$QUICK" = 1 ] && CAL_DUR=2

# server threads linger connections
KNOB_SET=(
    "nginx $THREADS - 64"
    "nginx 1 - $CONNS"
    "nginx $THREADS - 1024"
    "collector $THREADS $LINGER 64"
    "collector $THREADS $LINGER 1024"
    "collector 1 $LINGER $CONNS"
    "collector $THREADS 0 $CONNS"
    "collector $THREADS 5 $CONNS"
)

# A measured run on a fresh server; repeated (up to --retries times) while other processes
# on the box took more than --max-other % of a core, the discarded runs staying in the table.
NOISY_RUNS=0
run_fresh() { # kind threads linger label connections duration [lua mean]
    local kind=$1 th=$2 lg=$3 label=$4 attempt last dur=$6
    shift 4
    for attempt in $(seq 0 "$RETRIES"); do
        if [ "$kind" = nginx ]; then nginx_start "$th"; else collector_start "$th" "$lg"; fi
        measure "$label" "$@"
        server_stop
        [ "$R_OTHER" -gt "$MAX_OTHER" ] || return 0
        if [ "$attempt" -ge "$RETRIES" ] || [ $((SLACK_USED2 + 2 * (dur + WARMUP + 1))) -gt $((SLACK * 2)) ]; then
            bench_log "WARNING: kept a noisy run ($label): retries or time slack used up"
            return 0
        fi
        NOISY_RUNS=$((NOISY_RUNS + 1)) SLACK_USED2=$((SLACK_USED2 + 2 * (dur + WARMUP + 1)))
        last=$((${#RUN_ROWS[@]} - 1))
        RUN_ROWS[last]=${RUN_ROWS[last]/"| $label |"/"| ~~$label~~ (noisy: discarded, repeated) |"}
        bench_log "discarding the run (other processes used ${R_OTHER}% of a core); repeating"
    done
}

# ---- phase 1: maximum rate, interleaved rounds ----
N_RPS=() N_P50=() N_P99=() N_RSS=() N_CPU=() N_US=() N_OTH=() C_US=() C_RPS=() C_P50=() C_P99=() C_RSS=() C_CPU=() C_DS=() C_DSCPU=() C_CHK=() C_OTH=()
START_TS=$(date +%s)
DATE_UTC=$(date -u '+%Y-%m-%d %H:%M UTC')
bench_log "phase 1: max rate, $ROUNDS rounds x (nginx, collector), ${DURATION}s each, wrk -t$WRK_THREADS -c$CONNS"
devstream_ensure
for r in $(seq 1 "$ROUNDS"); do
    run_fresh nginx "$THREADS" - "max rate, nginx, round $r" "$CONNS" "$DURATION"
    N_RPS+=("$R_RPS") N_P50+=("$R_P50") N_P99+=("$R_P99") N_RSS+=("$R_RSS_MIB") N_CPU+=("$R_CPU") N_US+=("$R_US")
    N_OTH+=("$R_OTHER")

    run_fresh collector "$THREADS" "$LINGER" "max rate, collector, round $r" "$CONNS" "$DURATION"
    C_RPS+=("$R_RPS") C_P50+=("$R_P50") C_P99+=("$R_P99") C_RSS+=("$R_RSS_MIB") C_CPU+=("$R_CPU") C_US+=("$R_US")
    C_DS+=("$R_DS_MIB") C_DSCPU+=("$R_DS_CPU") C_CHK+=("$R_CHECK") C_OTH+=("$R_OTHER")
done
MN_RPS=$(bench_median "${N_RPS[@]}") MN_P50=$(bench_median "${N_P50[@]}") MN_P99=$(bench_median "${N_P99[@]}")
MN_RSS=$(bench_median "${N_RSS[@]}") MN_CPU=$(bench_median "${N_CPU[@]}") MN_US=$(bench_median "${N_US[@]}")
MC_RPS=$(bench_median "${C_RPS[@]}") MC_P50=$(bench_median "${C_P50[@]}") MC_P99=$(bench_median "${C_P99[@]}")
MC_RSS=$(bench_median "${C_RSS[@]}") MC_CPU=$(bench_median "${C_CPU[@]}") MC_US=$(bench_median "${C_US[@]}")
MC_DS=$(bench_median "${C_DS[@]}") MC_DSCPU=$(bench_median "${C_DSCPU[@]}")
# The ratio is taken per round (a collector run against the nginx run just before it, so
# both saw about the same box), then the median; "quiet" pairs are those in which neither
# run had more than --max-other % of a core of other load. The verdict uses the quiet
# pairs when there are any.
P_RATIO=() Q_RATIO=() N_QUIET=() C_QUIET=()
for i in "${!N_RPS[@]}"; do
    pr=$(awk -v c="${C_RPS[i]}" -v n="${N_RPS[i]}" 'BEGIN { printf "%.3f", (n > 0 ? c / n : 0) }')
    P_RATIO+=("$pr")
    [ "${N_OTH[i]}" -le "$MAX_OTHER" ] && N_QUIET+=("$i")
    [ "${C_OTH[i]}" -le "$MAX_OTHER" ] && C_QUIET+=("$i")
    if [ "${N_OTH[i]}" -le "$MAX_OTHER" ] && [ "${C_OTH[i]}" -le "$MAX_OTHER" ]; then Q_RATIO+=("$pr"); fi
done
pick() { # array-name index... : the elements at those indexes
    local -n arr=$1
    shift
    local i
    for i in "$@"; do echo "${arr[i]}"; done
}
RATIO_ALL=$(bench_median "${P_RATIO[@]}")
if [ "${#Q_RATIO[@]}" -gt 0 ]; then
    RATIO=$(bench_median "${Q_RATIO[@]}") RATIO_BASIS="median of ${#Q_RATIO[@]} quiet round pair(s) of $ROUNDS"
else
    RATIO=$RATIO_ALL RATIO_BASIS="median of all $ROUNDS round pairs; none was quiet, so this is a noisy figure"
fi
RATIO=$(awk -v r="$RATIO" 'BEGIN { printf "%.2f", r }')
RATIO_ALL=$(awk -v r="$RATIO_ALL" 'BEGIN { printf "%.2f", r }')
QN_RPS="" QC_RPS=""
if [ "${#N_QUIET[@]}" -gt 0 ]; then
    mapfile -t tmp < <(pick N_RPS "${N_QUIET[@]}")
    QN_RPS=$(bench_median "${tmp[@]}")
    mapfile -t tmp < <(pick N_US "${N_QUIET[@]}")
    QN_US=$(bench_median "${tmp[@]}")
fi
if [ "${#C_QUIET[@]}" -gt 0 ]; then
    mapfile -t tmp < <(pick C_RPS "${C_QUIET[@]}")
    QC_RPS=$(bench_median "${tmp[@]}")
    mapfile -t tmp < <(pick C_US "${C_QUIET[@]}")
    QC_US=$(bench_median "${tmp[@]}")
fi

# ---- phase 2: the collector at half the nginx rate ----
# wrk is closed-loop: a connection sends its next request only after the previous answer.
# A Lua delay() adds a think time before each request, so each connection sends at most
# one request per (think time + latency); think times are exponential (random, mean set
# below) so the connections do not march in step. The mean is calibrated with short runs
# until the achieved rate is within a few percent of the target.
LUA=$TMP/think-time.lua
cat >"$LUA" <<'EOF'
-- Think time before every request: exponential with the mean (ms) given after "--".
-- wrk truncates delay() to whole milliseconds, so round randomly to keep the mean exact.
local n = 0
function setup(thread)
    n = n + 1
    thread:set("tid", n)
end
function init(args)
    mean = tonumber(args[1]) or 0
    math.randomseed(os.time() + 7919 * (tid or 0))
end
function delay()
    if mean <= 0 then return 0 end
    local x = -mean * math.log(1 - math.random())
    if x > 10 * mean then x = 10 * mean end
    local f = math.floor(x)
    if math.random() < x - f then f = f + 1 end
    return f
end
EOF
if [ -z "$HALF_RATE" ]; then
    # Half of nginx's rate in its quiet rounds if it had any: noise would lower the target.
    HALF_RATE=$(awk -v n="${QN_RPS:-$MN_RPS}" 'BEGIN { printf "%.0f", n / 2 }')
fi
bench_log "phase 2: collector at $HALF_RATE req/s (half the nginx median), wrk -c$HALF_CONNS with think time"
# Period of one connection at the target rate, in ms; start with the whole period as think
# time, then subtract the measured per-request overhead (latency + timer slack).
PERIOD=$(awk -v c="$HALF_CONNS" -v r="$HALF_RATE" 'BEGIN { printf "%.3f", 1000 * c / r }')
MEAN=$PERIOD
collector_start "$THREADS" "$LINGER"
SAVE_WARMUP=$WARMUP
# A calibration run disturbed by other load says little about the collector: its result
# does not move the think time (up to 6 runs; at most 3 that count).
step=0 used=0 CAL_RPS=0
while [ "$step" -lt 6 ] && [ "$used" -lt 3 ]; do
    step=$((step + 1))
    WARMUP=0
    measure "half rate, calibration $step (think ${MEAN} ms)" "$HALF_CONNS" "$CAL_DUR" "$LUA" "$MEAN"
    [ "${R_RPS:-0}" -gt 0 ] || bench_die "calibration run answered nothing"
    if [ "$R_OTHER" -gt "$MAX_OTHER" ] && [ "$step" -lt 6 ]; then
        bench_log "calibration run disturbed by other load; not adjusting the think time"
        continue
    fi
    used=$((used + 1)) CAL_RPS=$R_RPS
    OFF=$(awk -v a="$R_RPS" -v r="$HALF_RATE" 'BEGIN { d = (a - r) / r; if (d < 0) d = -d; print (d <= 0.03) ? 1 : 0 }')
    [ "$OFF" = 1 ] && break
    MEAN=$(awk -v c="$HALF_CONNS" -v a="$R_RPS" -v m="$MEAN" -v p="$PERIOD" \
        'BEGIN { o = 1000 * c / a - m; m2 = p - o; if (m2 < 0) m2 = 0; printf "%.3f", m2 }')
done
WARMUP=$SAVE_WARMUP
server_stop
bench_log "think time mean ${MEAN} ms (connection period at target: ${PERIOD} ms)"
CAL_NOTE=""
if awk -v m="$MEAN" 'BEGIN { exit !(m <= 0) }'; then
    CAL_NOTE="**The target rate was not reachable**: even with no think time, $HALF_CONNS connections got only
about $CAL_RPS req/s from the collector in calibration, so the runs below are at the collector's
saturation, not at a comfortable half load; their p99 is a saturation p99.

"
    bench_log "WARNING: $HALF_CONNS connections cannot reach $HALF_RATE req/s even without think time; raise --half-connections"
fi
H_RPS=() H_P50=() H_P99=() H_S5=() H_SP99=() H_CHK=() HN_RPS=() HN_P50=() HN_P99=() H_QP99=() H_QRPS=()
for r in $(seq 1 "$ROUNDS"); do
    if [ "$HALF_NGINX" = 1 ]; then
        run_fresh nginx "$THREADS" - "half rate, nginx, round $r" "$HALF_CONNS" "$DURATION" "$LUA" "$MEAN"
        HN_RPS+=("$R_RPS") HN_P50+=("$R_P50") HN_P99+=("$R_P99")
    fi
    run_fresh collector "$THREADS" "$LINGER" "half rate, collector, round $r" "$HALF_CONNS" "$DURATION" "$LUA" "$MEAN"
    H_RPS+=("$R_RPS") H_P50+=("$R_P50") H_P99+=("$R_P99") H_S5+=("${R_SRV5:-n/a}") H_SP99+=("${R_SRVP99:-n/a}") H_CHK+=("$R_CHECK")
    if [ "$R_OTHER" -le "$MAX_OTHER" ]; then H_QP99+=("$R_P99") H_QRPS+=("$R_RPS"); fi
done
MH_RPS=$(bench_median "${H_RPS[@]}") MH_P50=$(bench_median "${H_P50[@]}") MH_P99=$(bench_median "${H_P99[@]}")
MH_S5=$(bench_median "${H_S5[@]}")
if [ "${#H_QP99[@]}" -gt 0 ]; then
    P99_V=$(bench_median "${H_QP99[@]}") P99_BASIS="median of ${#H_QP99[@]} quiet run(s) of $ROUNDS"
    P99_RPS=$(bench_median "${H_QRPS[@]}")
else
    P99_V=$MH_P99 P99_BASIS="median of all $ROUNDS runs; none was quiet, so this is a noisy figure"
    P99_RPS=$MH_RPS
fi
if [ "$HALF_NGINX" = 1 ]; then
    MHN_RPS=$(bench_median "${HN_RPS[@]}") MHN_P50=$(bench_median "${HN_P50[@]}") MHN_P99=$(bench_median "${HN_P99[@]}")
fi

# ---- phase 3: knobs (one run each; a sweep, not a median) ----
if [ "$KNOBS" = 1 ]; then
    bench_log "phase 3: knob sweep, ${KNOB_DURATION}s per run (single runs)"
    SAVE_WARMUP=$WARMUP
    WARMUP=1
    for k in "${KNOB_SET[@]}"; do
        read -r kind th lg cn <<<"$k"
        if [ "$kind" = nginx ]; then
            label="nginx workers=$th"
        else
            label="collector --threads $th --linger-ms $lg"
        fi
        run_fresh "$kind" "$th" "$lg" "knob: $label" "$cn" "$KNOB_DURATION"
    done
    WARMUP=$SAVE_WARMUP
fi
END_TS=$(date +%s)
LOADAVG_END=$(cut -d' ' -f1-3 /proc/loadavg)
DS_HWM=$(awk -v k="$(bench_hwm_kib "$DS_PID")" 'BEGIN { printf "%.1f", k / 1024 }')

# ---- report ----
verdict() { if awk "BEGIN { exit !($1) }"; then echo "**met**"; else echo "**not met**"; fi; }
V_RATIO=$(verdict "$RATIO >= 0.8")
V_P99=$(verdict "$P99_V < 5")
V_RSS=$(verdict "$MC_RSS < 64")
GIT_REV=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null | head -1)" ]; then GIT_REV="$GIT_REV + uncommitted changes"; fi
CMD="ADTRACK_BIN_DIR=$BIN_DIR bench/collector.sh${ORIG_ARGS[*]:+ ${ORIG_ARGS[*]}}"
BUILD_INFO="build type unknown (no CMakeCache.txt next to $BIN_DIR)"
if [ -r "$BIN_DIR/../CMakeCache.txt" ]; then
    BUILD_INFO=$(awk -F= '/^CMAKE_BUILD_TYPE:/ { t = $2 } /^ADTRACK_SANITIZE:/ { z = $2 }
        END { printf "CMAKE_BUILD_TYPE=%s, ADTRACK_SANITIZE=%s", (t == "" ? "(empty)" : t), (z == "" ? "OFF" : z) }' \
        "$BIN_DIR/../CMakeCache.txt")
fi
CPU_MODEL=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
join_rows() { printf '%s\n' "$@" | paste -sd/ - | sed 's|/| / |g'; }

report() {
    cat <<EOF
## Collector vs nginx \`empty_gif\` ($( [ "$QUICK" = 1 ] && echo "quick run" || echo "full run"))

- Date: $DATE_UTC; total run time $((END_TS - START_TS)) s.
- Command: \`$CMD\`
- Machine: \`nproc\` = $(nproc) ($CPU_MODEL), kernel $(uname -r). **wrk, the server under test
  and $BROKER_NAME all share these $(nproc) cores**, so every
  number here is CPU-bound by the whole set, not by the server alone.
- Box load before start: ${IDLE_CHECK}% busy over 1 s; load average $LOADAVG_START at start,
  $LOADAVG_END at the end (other work on the box shows up here). Before each run the script
  waited for the box to be <= 15% busy (up to ${QUIET_WAIT} s): $(awk -v n="$QUIET_WAITED" 'BEGIN { printf "%.1f", n / 2 }') s of waiting in all.
- Code: $GIT_REV, $BUILD_INFO. $($NGINX -v 2>&1 | sed 's/^nginx version: //'), $($WRK --version 2>&1 | head -1 | awk '{ print "wrk " $2 }').
- Load: \`wrk -t$WRK_THREADS -c$CONNS -d${DURATION}s --latency\` (after ${WARMUP} s of unmeasured
  warm-up on each fresh server), GET \`${URL_PATH}\`.
- nginx: \`empty_gif\`, worker_processes $THREADS, master process on, access_log off,
  keep-alive, \`reuseport\` ([bench/nginx-empty-gif.conf.in](../../bench/nginx-empty-gif.conf.in)).
- Collector: \`--threads $THREADS --linger-ms $LINGER${COL_EXTRA[*]:+ ${COL_EXTRA[*]}}\`, durability on (200 only after the
  Kafka acknowledgement) against $BROKER_NAME with $PARTITIONS partitions; every
  collector round checks from /metrics that each answered pixel was produced and none was
  spooled to disk.
- $ROUNDS interleaved rounds (nginx, collector, nginx, ...), a fresh server process per
  round; medians below. Peak RSS is VmHWM from /proc (nginx: master + workers summed;
  collector: its one process). CPU is the server's own CPU time over the measured run
  (100% = one core); "us/req" divides it by the requests served, a cost per request that
  other load on the box disturbs far less than req/s.

### Targets

| target | measured | basis | verdict |
|---|---|---|---|
| collector >= 0.8x nginx empty_gif req/s | $RATIO x | $RATIO_BASIS | $V_RATIO |
| collector p99 < 5 ms at half the nginx rate | $P99_V ms at ~$P99_RPS req/s (target $HALF_RATE) | $P99_BASIS | $V_P99 |
| collector RSS < 64 MiB | $MC_RSS MiB peak | median of $ROUNDS rounds at $CONNS connections | $V_RSS |

Per-round ratios (collector run / the nginx run just before it): $(join_rows "${P_RATIO[@]}"); median
over all rounds $RATIO_ALL. A round is "quiet" when other processes on the box used at most
$MAX_OTHER% of a core during it (see the table of all runs).

### Maximum rate (medians of $ROUNDS rounds)

| server | req/s | p50 ms | p99 ms | peak RSS MiB | server CPU | server CPU us/req |
|---|---:|---:|---:|---:|---:|---:|
| nginx empty_gif ($THREADS workers) | $MN_RPS | $MN_P50 | $MN_P99 | $MN_RSS | $MN_CPU% | $MN_US |
| adtrack-collector (--threads $THREADS, --linger-ms $LINGER) | $MC_RPS | $MC_P50 | $MC_P99 | $MC_RSS | $MC_CPU% | $MC_US |
| $BROKER_NAME, not part of the collector | | | | $MC_DS | $MC_DSCPU% | |
EOF
    if [ "${#N_QUIET[@]}" -gt 0 ] && [ "${#N_QUIET[@]}" -lt "$ROUNDS" ]; then
        echo "| nginx, quiet rounds only (${#N_QUIET[@]}) | $QN_RPS | | | | | $QN_US |"
    fi
    if [ "${#C_QUIET[@]}" -gt 0 ] && [ "${#C_QUIET[@]}" -lt "$ROUNDS" ]; then
        echo "| collector, quiet rounds only (${#C_QUIET[@]}) | $QC_RPS | | | | | $QC_US |"
    fi
    cat <<EOF

**Ratio collector / nginx req/s: $RATIO** ($RATIO_BASIS; target >= 0.8: $V_RATIO).

### Collector at half the nginx rate (target p99 < 5 ms)

| server | target req/s | achieved req/s | p50 ms | p99 ms (wrk) | server-side <= 5 ms |
|---|---:|---:|---:|---:|---:|
| adtrack-collector | $HALF_RATE | $MH_RPS | $MH_P50 | $MH_P99 | $MH_S5% |
EOF
    if [ "$HALF_NGINX" = 1 ]; then
        echo "| nginx empty_gif (same think time, reference) | $HALF_RATE | $MHN_RPS | $MHN_P50 | $MHN_P99 | |"
    fi
    cat <<EOF

$CAL_NOTE**p99 at half rate: $P99_V ms** ($P99_BASIS; target < 5 ms: $V_P99). **Collector peak RSS: $MC_RSS MiB**
(target < 64 MiB: $V_RSS). Collector histogram p99 bucket per round: $(join_rows "${H_SP99[@]}") ms.

How the rate is held, and what that does not show: wrk is closed-loop (a connection sends
its next request only after the previous answer), so it cannot offer a fixed arrival rate.
Each of the $HALF_CONNS connections waits an exponentially distributed think time
(mean $MEAN ms, calibrated by short runs that aim at the target within 3%, runs
disturbed by other load not counting) before each request, so the offered load is close to Poisson arrivals as long as
the server keeps up; the achieved rate is reported next to the target. What remains
closed-loop: if the collector stalls longer than a think time, the connections stop
sending instead of queueing requests, so a stall is sampled by at most $HALF_CONNS requests
rather than by all that a real arrival stream would have sent (coordinated omission): the
wrk p99 is a lower bound during stalls. The "server-side" column is the collector's own
request-duration histogram (/metrics, buckets 1/2.5/5/10 ms), taken over the same run; it
excludes kernel and client queueing.$([ "$HALF_NGINX" = 1 ] && printf ' The nginx row (same think time) shows the floor this box\nand wrk put under any server at that rate.')
EOF
    if [ "$KNOBS" = 1 ]; then
        cat <<EOF

### Knobs tried (single ${KNOB_DURATION} s runs after 1 s warm-up; indicative, not medians)

Rows starting with "knob:" in the table of all runs below: nginx with 1 worker and with
64/1024 connections; the collector with --threads 1, --linger-ms 0 and 5, and 64/1024
connections (the connection count is in the "conns" column). Everything else as above.
EOF
    fi
    cat <<EOF

### All runs

CPU columns are % of one core over the measured run: the server (nginx: master + workers),
devstream, wrk, interrupt and softirq time (on loopback mostly the TCP stack, charged to no
process), and the process time of everything else on the box ("other": other people's
builds and tests; it makes a run noisy). "srv <= 5 ms" is the share
of requests the collector's own latency histogram puts at or under 5 ms. The check column
says whether wrk saw errors and, for the collector, whether every answered pixel was
acknowledged by Kafka (none spooled to disk, produced >= 99% of answered). A run during
which other processes used more than $MAX_OTHER% of a core was discarded and repeated on a
fresh server (up to $RETRIES times; calibration runs excepted): $NOISY_RUNS discarded in this run,
struck through below.

| run | conns | req/s | p50 ms | p99 ms | srv <= 5 ms | peak RSS MiB | server CPU | server CPU us/req | broker CPU | wrk CPU | irq CPU | other CPU | check |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|
$(printf '%s\n' "${RUN_ROWS[@]}")

The $(nproc) cores run wrk (-t$WRK_THREADS), the server and the broker together: CPU one of them does not
use goes to the others, so at ~$((NCPU * 100))% total the box, not one program, sets the rate.

Broker ($KAFKA) peak RSS over the whole run: $DS_HWM MiB (it was started $DS_STARTS time(s);
more than once means it died during the run and its rounds must be read with care).
EOF
}

REPORT=$(report)
printf '\n%s\n' "$REPORT"

MARK='<!-- end of generated results: text below this line is kept when bench/collector.sh rewrites the file -->'
if [ "$OUT" != - ]; then
    mkdir -p "$(dirname "$OUT")"
    KEEP=""
    if [ -f "$OUT" ] && grep -qF "$MARK" "$OUT"; then
        KEEP=$(sed -n "/$(printf '%s' "$MARK" | sed 's/[][\/.*^$]/\\&/g')/,\$p" "$OUT" | tail -n +2)
    fi
    {
        printf '%s\n' "$REPORT"
        printf '\n%s\n' "$MARK"
        if [ -n "$KEEP" ]; then printf '%s\n' "$KEEP"; fi
    } >"$OUT.tmp.$$"
    mv "$OUT.tmp.$$" "$OUT"
    bench_log "wrote $OUT"
fi
