#!/usr/bin/env bash
# LABELS: realkafka
# Integration test (real Kafka, 1 node; 77 unless `scripts/kafka.sh install` ran): a full-rate
# load run counted event by event. The collector (--threads 2, acks=all, idempotence) takes
# adtrack-loadtest's synthetic traffic at REALKAFKA_FULLRATE requests/s (default 20000, about
# what this 2-core box sustains with the broker, the collector and the load generator on it)
# for REALKAFKA_FULLRATE_S seconds (default 20); then --verify kafka: reads
# adtrack.events.raw from the beginning and must find every acknowledged event exactly once.
#
# The point: adtrack-devstream (librdkafka's mock cluster) keeps at most ~5 MiB or 100k
# messages per partition, so it cannot hold such a run and its verify could only report the
# overflow as lost. The test also checks that the run's largest partition outgrew 5 MiB on
# disk, so the run really was beyond what devstream can count.
set -euo pipefail

source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/infra_it.sh"
infra_require kafka
BIN_DIR=${ADTRACK_BIN_DIR:?ADTRACK_BIN_DIR not set}
RATE=${REALKAFKA_FULLRATE:-20000}
SECS=${REALKAFKA_FULLRATE_S:-20}
TMP=$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/realkafka-fullrate.XXXXXX")
COL_PID=""
cleanup() {
    [[ -n $COL_PID ]] && kill "$COL_PID" 2> /dev/null && wait "$COL_PID" 2> /dev/null
    infra_cleanup
    rm -rf "$TMP/spool"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; tail -n 20 "$TMP/collector.log" >&2 || true; exit 1; }

infra_kafka_start 1
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$BIN_DIR/adtrack-collector" --listen "127.0.0.1:$PORT" --brokers "$KAFKA_BOOTSTRAP" --spool-dir "$TMP/spool" \
    --threads 2 --click-key fullrate-key --log-level warn > "$TMP/collector.log" 2>&1 &
COL_PID=$!
for _ in $(seq 1 300); do
    [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$PORT/readyz" || true) == 200 ]] && break
    kill -0 "$COL_PID" 2> /dev/null || fail "the collector exited"
    sleep 0.1
done

# Warm-up, not counted: a fresh broker JVM (and the collector's producers) take 100k requests
# or so to reach speed; started cold at 20000/s the first ~15 s queue up to 2 s of requests
# (measured). 10 s at half the rate, under its own run id, which --verify below ignores.
"$BIN_DIR/adtrack-loadtest" --target "http://127.0.0.1:$PORT" --rate $((RATE / 2)) --duration 10s --threads 2 \
    --connections 200 --click-key fullrate-key --progress off --run-id warmup --json "$TMP/warmup.json" \
    > "$TMP/warmup.txt" 2>&1 || fail "warm-up run failed: $(tail -n 5 "$TMP/warmup.txt")"

t0=$(date +%s)
rc=0
"$BIN_DIR/adtrack-loadtest" --target "http://127.0.0.1:$PORT" --rate "$RATE" --duration "${SECS}s" --threads 2 \
    --connections 200 --click-key fullrate-key --progress off --run-id fullrate \
    --verify "kafka:$KAFKA_BOOTSTRAP" --verify-wait 180s --verify-quiet 5s --json "$TMP/run.json" \
    > "$TMP/run.txt" 2>&1 || rc=$?
cat "$TMP/run.txt"
[[ $rc -le 1 ]] || fail "adtrack-loadtest exited $rc"
kill -0 "$COL_PID" 2> /dev/null || fail "the collector died under load"

# On-disk size of each raw partition (node 1 holds them all), in bytes.
largest=$(du -sb "$KAFKA_DIR"/node-1/data/adtrack.events.raw-* | sort -n | tail -n 1 | cut -f1)
spooled=$(curl -s "http://127.0.0.1:$PORT/metrics" | awk '$1 == "adtrack_events_spooled_total" { print $2 }')

python3 - "$TMP/run.json" "$RATE" "$SECS" "$largest" "${spooled:-0}" "$(($(date +%s) - t0))" "$TMP/warmup.json" << 'PY'
import json, sys
r = json.load(open(sys.argv[1]))
w = json.load(open(sys.argv[7]))
print(f"warm-up: {w['requests']['ok']} of {w['requests']['intended']} ok, p99 {w['latency_us']['p99'] / 1000:.1f} ms")
rate, secs, largest, spooled, wall = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6]
q, v, lat = r["requests"], r["verify"], r["latency_us"]
print(f"fullrate: {q['intended']} intended at {rate}/s, {q['ok']} ok ({r['rates']['ok']:.0f}/s), late {q['late']}, "
      f"p99 {lat['p99'] / 1000:.1f} ms; verify: {v['checked_requests']} checked, {v['found_events']} of "
      f"{v['expected_events']} events found, lost {v['lost']}, duplicated {v['duplicated']}, redelivered "
      f"{v['redelivered']}, read in {v['waited_s']:.1f} s; largest raw partition {largest / 2**20:.1f} MiB; "
      f"{spooled:.0f} spooled; {wall} s for load and verify")
bad = []
if q["intended"] != rate * secs: bad.append(f"intended {q['intended']}, want {rate * secs}")
# A shared 2-core box may drop a few requests at full rate; every acknowledged one must count.
if q["ok"] < 0.999 * q["intended"]: bad.append(f"only {q['ok']} of {q['intended']} requests answered 2xx")
if v["checked_requests"] != q["ok"]: bad.append(f"verify checked {v['checked_requests']} of {q['ok']} acknowledged")
if v["lost"] or v["duplicated"]: bad.append(f"lost {v['lost']} {v['lost_tags']}, duplicated {v['duplicated']}")
if v["found_events"] != v["expected_events"]: bad.append(f"found {v['found_events']} of {v['expected_events']}")
if not v["settled"]: bad.append("verify did not settle")
if largest <= 5 * 2**20: bad.append(f"largest partition {largest} bytes: not beyond devstream's 5 MiB")
for b in bad:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
echo "PASS: realkafka_fullrate"
