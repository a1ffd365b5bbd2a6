#!/usr/bin/env bash
# Core-data benchmark: updates/s through the admin API, and change-to-visible latency in
# three subscribers (two Redis pub/sub subscribers, one reader of adtrack.coredata.changes).
#   bench/coredata.sh [runs]            (default 3 runs; medians are reported)
# Environment:
#   BUILD     build directory with bin/ (default: build)
#   CHANGES   changes per latency run (default 2000)
#   CONNS     connections of the throughput phase (default 8)
#   SECONDS_TP  length of the throughput phase (default 10)
#   DATA_DIR  where the file store lives (default: a fresh temp dir on the build disk)
# Starts its own redis-server, adtrack-devstream and adtrack-coredata (file store), and stops
# exactly those processes at the end. Prints a Markdown table (see docs/bench/coredata.md).
set -euo pipefail

runs=${1:-3}
root=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-build}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
bin="$build/bin"
changes=${CHANGES:-2000}
conns=${CONNS:-8}
secs=${SECONDS_TP:-10}
work=$(mktemp -d "${TMPDIR:-/tmp}/adtrack-bench-coredata.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

for b in adtrack-coredata adtrack-coredata-bench adtrack-devstream; do
    [ -x "$bin/$b" ] || { echo "missing $bin/$b: build first (cmake --build $build)" >&2; exit 1; }
done

rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$work" --loglevel warning >/dev/null 2>&1 &
pids+=($!)
mkfifo "$work/ds.out"
"$bin/adtrack-devstream" --partitions 1 --log-level warn >"$work/ds.out" 2>"$work/ds.err" &
pids+=($!)
exec 3<"$work/ds.out"
read -r brokers <&3
# keep reading devstream's stdout so it never blocks
cat <&3 >/dev/null &
pids+=($!)

results=()
for run in $(seq 1 "$runs"); do
    port=$(free_port)
    data=${DATA_DIR:-$work/data-$run}
    rm -rf "$data"
    redis-cli -p "$rport" flushall >/dev/null
    "$bin/adtrack-coredata" --listen "127.0.0.1:$port" --admin-token bench-token --data-dir "$data" \
        --redis "127.0.0.1:$rport" --brokers "$brokers" --feed false --log-level warn \
        --resync-changes-on-start false 2>"$work/cd-$run.err" &
    cdpid=$!
    pids+=($cdpid)
    for _ in $(seq 1 100); do
        curl -sf "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
        sleep 0.1
    done
    out="$work/run-$run.json"
    "$bin/adtrack-coredata-bench" --port "$port" --token bench-token --redis-port "$rport" --brokers "$brokers" \
        --changes "$changes" --conns "$conns" --seconds "$secs" --prefix "run$run" >"$out"
    kill "$cdpid"
    wait "$cdpid" 2>/dev/null || true
    results+=("$out")
    echo "run $run: $(tr -d '\n ' <"$out" | cut -c1-400)" >&2
done

python3 - "$runs" "$changes" "$conns" "$secs" "${results[@]}" <<'PY'
import json, statistics, sys
runs, changes, conns, secs = sys.argv[1:5]
rs = [json.load(open(p)) for p in sys.argv[5:]]
med = lambda xs: statistics.median(xs)
print(f"Medians of {runs} runs; {changes} sequential changes per run for latency; "
      f"{conns} connections x {secs} s for throughput.\n")
print("| measure | p50 (ms) | p99 (ms) | max (ms) | missing |")
print("|---|---|---|---|---|")
for k in ["api_response", "redis_subscriber_1", "redis_subscriber_2", "kafka_changes_subscriber"]:
    l = [r["latency"][k] for r in rs]
    print(f"| {k} | {med([x['p50_ms'] for x in l]):.2f} | {med([x['p99_ms'] for x in l]):.2f} | "
          f"{med([x['max_ms'] for x in l]):.2f} | {max(x['missing'] for x in l)} |")
print()
print(f"| updates/s | median | runs |")
print("|---|---|---|")
seq = [r["sequential_updates_per_s"] for r in rs]
print(f"| sequential (1 connection, latency phase) | {med(seq):.0f} | {', '.join(f'{x:.0f}' for x in seq)} |")
if "throughput" in rs[0]:
    tp = [r["throughput"]["updates_per_s"] for r in rs]
    print(f"| {conns} connections | {med(tp):.0f} | {', '.join(f'{x:.0f}' for x in tp)} |")
PY
