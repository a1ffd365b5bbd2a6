#!/usr/bin/env bash
# tests/e2e/failover.sh: the collector tier survives losing an instance under load.
#
# On loopback, without containers: HAProxy (Debian's, with deploy/haproxy.cfg) in front of two
# collectors, a 2-broker adtrack-devstream, Redis, coredata seeded with the demo data, two
# enrichers (file sinks). adtrack-loadtest drives a steady open-model rate through HAProxy and
# then reads the sinks back (--verify).
#
#   phase 0 "same id": one pixel and one 3-event beacon, each sent to both collectors with
#                      the same X-Adtrack-Request-Id (what an HAProxy retry does), are stored
#                      once, under the ids derived as collector/col_reqid.h describes; without
#                      the header the two copies get different ids (the control).
#   phase 1 "kill":    mid-run, collector 1 gets SIGKILL and is restarted a few seconds later
#                      with the same spool; later Kafka broker 2 is stopped for a few seconds.
#                      Pass: success >= 99.9% (FAILOVER_MIN_SUCCESS), nothing lost, nothing
#                      duplicated among the acknowledged requests.
#   phase 2 "rolling": SIGTERM collector 1, wait for it to exit, start it, wait until HAProxy
#                      sees it ready; then the same for collector 2. Pass: every request
#                      succeeded, nothing lost, nothing duplicated.
#
# Reports (loadtest JSON + HTML) and every process's log are kept in
# $ADTRACK_TEST_TMP/failover for CI artifacts. Tunables (environment): FAILOVER_RATE (req/s,
# default 300), FAILOVER_KILL_S (phase 1 length, default 45), FAILOVER_ROLLING_S (default 40),
# FAILOVER_MIN_SUCCESS (default 0.999), FAILOVER_COLLECTOR_ARGS (extra collector options, split on
# spaces; default none. The collector's own default reconnect.backoff.max.ms is 1 s: with
# librdkafka's 10 s, a request whose partition leader is down waited up to ~12 s, see
# docs/bench/failover.md), FAILOVER_ENRICHER_ARGS (extra enricher options, split on spaces; default
# none; e.g. "--kafka-prop debug=cgrp,fetch,topic" to trace the consumers). Everything this
# script starts is stopped on exit.
set -euo pipefail

BIN_DIR="${ADTRACK_BIN_DIR:?ADTRACK_BIN_DIR not set}"
SRC="${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}"
OUT="${ADTRACK_TEST_TMP:-/tmp}/failover"
RATE="${FAILOVER_RATE:-300}"
KILL_S="${FAILOVER_KILL_S:-45}"
ROLLING_S="${FAILOVER_ROLLING_S:-40}"
MIN_SUCCESS="${FAILOVER_MIN_SUCCESS:-0.999}"
COLLECTOR_ARGS="${FAILOVER_COLLECTOR_ARGS-}"
ENRICHER_ARGS="${FAILOVER_ENRICHER_ARGS-}"
CLICK_KEY=failover-click-key
START_EPOCH=$(date +%s)

for b in adtrack-devstream adtrack-collector adtrack-enricher adtrack-coredata adtrack adtrack-loadtest; do
    [ -x "$BIN_DIR/$b" ] || { echo "FAIL: $BIN_DIR/$b not built" >&2; exit 1; }
done
for t in haproxy redis-server curl python3 timeout; do
    command -v "$t" > /dev/null || { echo "SKIP/FAIL: $t not installed (scripts/install-deps.sh)" >&2; exit 1; }
done

rm -rf "$OUT"
mkdir -p "$OUT"/{redis,coredata,sink1,sink2,sink-all,spool1,spool2}

# ---- process bookkeeping: everything started here is stopped on exit, by pid ----
PIDS=()           # long-lived helpers (redis, devstream, coredata, enrichers, haproxy, linker)
declare -A COL_PID=()
track() { PIDS+=("$1"); }
stop_pid() { # stop_pid <pid> [<seconds before SIGKILL>]
    local p=$1 t=${2:-10}
    [ -n "$p" ] || return 0
    kill -TERM "$p" 2> /dev/null || return 0
    for _ in $(seq 1 $((t * 10))); do
        kill -0 "$p" 2> /dev/null || break
        sleep 0.1
    done
    kill -KILL "$p" 2> /dev/null || true
    wait "$p" 2> /dev/null || true
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    set +e
    [ -n "${LT_PID:-}" ] && stop_pid "$LT_PID" 5
    stop_pid "${COL_PID[1]:-}" 15
    stop_pid "${COL_PID[2]:-}" 15
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do stop_pid "${PIDS[$i]}" 10; done
    exec 9>&- 2> /dev/null
    echo "failover: logs and reports in $OUT ($(($(date +%s) - START_EPOCH)) s)"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "FAIL: $*" >&2
    exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_tcp <name> <pid> <port> <log>: until the port accepts connections (30 s).
wait_tcp() {
    for _ in $(seq 1 300); do
        (exec 3<> "/dev/tcp/127.0.0.1/$3") 2> /dev/null && return 0
        kill -0 "$2" 2> /dev/null || break
        sleep 0.1
    done
    tail -n 20 "$4" >&2
    fail "$1 is not accepting connections on port $3"
}

http_code() { curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$1" 2> /dev/null || true; }

# wait_ready <name> <url> <seconds> <pid> <log>: until the URL answers 200.
wait_ready() {
    local i
    for ((i = 0; i < $3 * 10; i++)); do
        [ "$(http_code "$2")" = 200 ] && return 0
        kill -0 "$4" 2> /dev/null || break
        sleep 0.1
    done
    tail -n 5 "$5" >&2
    fail "$1 not ready at $2 within $3 s"
}

# HAProxy's view of a server: UP, DOWN, "UP 1/2", ... from the stats CSV (field 18 = status).
lb_status() {
    curl -s --max-time 1 "http://127.0.0.1:$STATS_PORT/stats;csv" 2> /dev/null |
        awk -F, -v s="$1" '$1 == "adtrack_collectors" && $2 == s { print $18 }'
}
# wait_lb <server> <UP|DOWN> <seconds>: polls every 20 ms; prints the milliseconds it took.
wait_lb() {
    local t0 st
    t0=$(date +%s%3N)
    while (($(date +%s%3N) - t0 < $3 * 1000)); do
        st=$(lb_status "$1")
        if [ "$2" = DOWN ] && [ "$st" = DOWN ]; then echo $(($(date +%s%3N) - t0)); return 0; fi
        if [ "$2" = UP ] && [ "$st" = UP ]; then echo $(($(date +%s%3N) - t0)); return 0; fi
        sleep 0.02
    done
    fail "HAProxy did not see $1 $2 within $3 s (last status: ${st:-none})"
}

# ---- Redis, Kafka (devstream, 2 brokers), coredata ----
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$OUT/redis" \
    > "$OUT/redis.log" 2>&1 &
track $!
wait_tcp redis-server $! "$REDIS_PORT" "$OUT/redis.log"

# devstream reads fault commands from a FIFO that this script holds open on fd 9 (so it never
# sees EOF); its answers and the bootstrap list (first line) go to devstream.out.
mkfifo "$OUT/devstream.ctl"
"$BIN_DIR/adtrack-devstream" --brokers 2 --partitions 4 <> "$OUT/devstream.ctl" > "$OUT/devstream.out" \
    2> "$OUT/devstream.log" &
DS_PID=$!
track $DS_PID
exec 9> "$OUT/devstream.ctl"
BOOT=
for _ in $(seq 1 300); do
    BOOT=$(head -n 1 "$OUT/devstream.out" 2> /dev/null || true)
    [ -n "$BOOT" ] && break
    kill -0 "$DS_PID" 2> /dev/null || break
    sleep 0.1
done
[ -n "$BOOT" ] || fail "adtrack-devstream printed no bootstrap list"
# ds_cmd <command>: sends a control command and waits (5 s) for its "ok" answer.
ds_cmd() {
    local before
    before=$(wc -l < "$OUT/devstream.out")
    echo "$*" >&9
    for _ in $(seq 1 50); do
        if [ "$(wc -l < "$OUT/devstream.out")" -gt "$before" ]; then
            tail -n 1 "$OUT/devstream.out" | grep -q '^ok' || fail "devstream '$*': $(tail -n 1 "$OUT/devstream.out")"
            return 0
        fi
        sleep 0.1
    done
    fail "devstream did not answer '$*'"
}

TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
CD_PORT=$(free_port)
"$BIN_DIR/adtrack-coredata" --listen "127.0.0.1:$CD_PORT" --admin-token "$TOKEN" --data-dir "$OUT/coredata" \
    --redis "127.0.0.1:$REDIS_PORT" --brokers "$BOOT" --threads 1 > "$OUT/coredata.log" 2>&1 &
track $!
wait_tcp adtrack-coredata $! "$CD_PORT" "$OUT/coredata.log"
timeout 30 "$BIN_DIR/adtrack" --api "http://127.0.0.1:$CD_PORT" --token "$TOKEN" seed demo > "$OUT/seed.json" ||
    fail "adtrack seed demo failed: $(cat "$OUT/seed.json")"

# ---- two enrichers, one file sink each (docs/ENRICHER.md: one data directory per instance) ----
for i in 1 2; do
    port=$(free_port)
    # shellcheck disable=SC2086 # ENRICHER_ARGS is split on purpose
    "$BIN_DIR/adtrack-enricher" --brokers "$BOOT" --redis "127.0.0.1:$REDIS_PORT" --data-dir "$OUT/sink$i" \
        --listen "127.0.0.1:$port" $ENRICHER_ARGS > "$OUT/enricher$i.log" 2>&1 &
    track $!
    wait_tcp "adtrack-enricher $i" $! "$port" "$OUT/enricher$i.log"
    declare "ENR_PORT_$i=$port"
done
# --verify file: reads one directory: sink-all holds symbolic links to both sinks' files, kept
# up to date (files appear on first write and on rotation) by this small loop.
link_sinks() {
    local i f
    for i in 1 2; do
        for f in "$OUT/sink$i"/events-*.jsonl "$OUT/sink$i"/rejected-*.jsonl; do
            [ -e "$f" ] || continue
            local name
            name=$(basename "$f")
            [ -L "$OUT/sink-all/${name%%-*}-e$i-${name#*-}" ] || ln -s "$f" "$OUT/sink-all/${name%%-*}-e$i-${name#*-}"
        done
    done
}
(while true; do link_sinks; sleep 0.3; done) > /dev/null 2>&1 &
track $!

# ---- two collectors behind HAProxy ----
COL_PORT[1]=$(free_port)
COL_PORT[2]=$(free_port)
# start_collector <n>: same port and spool every time, so a restart replays what it spooled.
start_collector() {
    local n=$1
    # shellcheck disable=SC2086 # COLLECTOR_ARGS is split on purpose
    "$BIN_DIR/adtrack-collector" --listen "127.0.0.1:${COL_PORT[$n]}" --brokers "$BOOT" \
        --spool-dir "$OUT/spool$n" --click-key "$CLICK_KEY" --trusted-proxies 127.0.0.1/32 --threads 1 \
        --shutdown-delay-ms 2000 --kafka-timeout-ms 2000 $COLLECTOR_ARGS >> "$OUT/collector$n.log" 2>&1 &
    COL_PID[$n]=$!
    wait_ready "collector $n" "http://127.0.0.1:${COL_PORT[$n]}/readyz" 30 "${COL_PID[$n]}" "$OUT/collector$n.log"
}
start_collector 1
start_collector 2

LB_PORT=$(free_port)
STATS_PORT=$(free_port)
ADTRACK_LB_BIND="127.0.0.1:$LB_PORT" ADTRACK_LB_STATS_BIND="127.0.0.1:$STATS_PORT" \
    ADTRACK_COLLECTOR_1="127.0.0.1:${COL_PORT[1]}" ADTRACK_COLLECTOR_2="127.0.0.1:${COL_PORT[2]}" \
    haproxy -db -f "$SRC/deploy/haproxy.cfg" > "$OUT/haproxy.log" 2>&1 &
track $!
wait_tcp haproxy $! "$LB_PORT" "$OUT/haproxy.log"
wait_lb collector-1 UP 10 > /dev/null
wait_lb collector-2 UP 10 > /dev/null
echo "failover: pipeline up in $(($(date +%s) - START_EPOCH)) s (LB 127.0.0.1:$LB_PORT, stats :$STATS_PORT/stats)"

# Every demo campaign (five Kafka keys, so every partition and both enrichers get events; the
# two acme campaigns are valid and charged, the others are rejected with a reason, which
# --verify counts as found); 10% beacons of 3 events exercise the per-index ids of a batch;
# clicks are signed.
cat > "$OUT/profile.json" << 'JSON'
{"seed": 11, "campaign_skew": 0,
 "campaign_ids": ["camp-acme-spring", "camp-acme-retarget", "camp-globex-summer", "camp-initech-launch",
                  "camp-umbrella-wellness"],
 "publisher_ids": ["pub-dailynews", "pub-sportsnow"],
 "mix": {"imp": 88, "view": 8, "click": 3, "conv": 1}, "beacon_ratio": 0.1, "beacon_batch": 3,
 "click_dest": "https://acme.example/spring"}
JSON

# start_load <name> <seconds>: the load test in the background (LT_PID), reports in $OUT.
# 256 connections: pixels come from many independent browsers, so a request that waits for
# Kafka (up to --kafka-timeout-ms while a broker is down) must not hold up the others.
start_load() {
    LT_T0=$(date +%s%3N)
    LT_NAME=$1
    timeout $(($2 + 120)) env ADTRACK_CLICK_KEY="$CLICK_KEY" "$BIN_DIR/adtrack-loadtest" \
        --target "http://127.0.0.1:$LB_PORT" --rate "$RATE" --duration "${2}s" --threads 1 --connections 256 \
        --timeout 20s --progress off --profile "$OUT/profile.json" --run-id "failover-$1" \
        --verify "file:$OUT/sink-all" --verify-wait 60s --verify-quiet 10s \
        --json "$OUT/$1.json" --html "$OUT/$1.html" > "$OUT/$1.txt" 2> "$OUT/$1.err" &
    LT_PID=$!
}
# at <seconds>: waits until that many seconds after the load started (schedule, not a guess).
at() {
    local due=$((LT_T0 + $1 * 1000)) now
    now=$(date +%s%3N)
    ((due > now)) && sleep "$(awk -v d=$((due - now)) 'BEGIN { printf "%.3f", d / 1000 }')"
    kill -0 "$LT_PID" 2> /dev/null || fail "adtrack-loadtest ended early: $(tail -n 5 "$OUT/$LT_NAME.err")"
}
finish_load() {
    local rc=0
    wait "$LT_PID" || rc=$?
    LT_PID=
    # 0 = ran, 1 = verify found lost/duplicated events (asserted below from the JSON).
    [ "$rc" -le 1 ] || fail "adtrack-loadtest $1 exited $rc: $(tail -n 5 "$OUT/$1.err")"
    [ -s "$OUT/$1.json" ] || fail "adtrack-loadtest $1 wrote no JSON report"
}
note() { echo "failover: t=$(awk -v d=$(($(date +%s%3N) - LT_T0)) 'BEGIN { printf "%.1f", d / 1000 }') s: $*"; }

# ---- phase 0: a retried request is stored once (the LB's request id, end to end) ----
# Sent straight to the collectors from 127.0.0.1 (a trusted proxy for them), as HAProxy would
# send a request and then its retry; then the sinks are read until all tags are found (30 s).
REQID="$(date +%s%3N)-failover-probe-$$"
UA='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'
for n in 1 2; do
    base="http://127.0.0.1:${COL_PORT[$n]}"
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -A "$UA" -H "X-Adtrack-Request-Id: $REQID" \
        "$base/t.gif?e=imp&c=camp-acme-spring&p=pub-dailynews&tag=probe:pixel")" = 200 ] || fail "probe pixel to collector $n"
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -A "$UA" -H "X-Adtrack-Request-Id: $REQID-b" \
        -H 'Content-Type: text/plain' --data-binary \
        '[{"e":"imp","c":"camp-acme-spring","p":"pub-dailynews","tag":"probe:beacon"},{"e":"view","c":"camp-acme-spring","p":"pub-dailynews","tag":"probe:beacon"},{"e":"imp","c":"camp-acme-retarget","p":"pub-sportsnow","tag":"probe:beacon"}]' \
        "$base/v1/events")" = 200 ] || fail "probe beacon to collector $n"
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 -A "$UA" \
        "$base/t.gif?e=imp&c=camp-acme-spring&p=pub-dailynews&tag=probe:control")" = 200 ] || fail "probe control to collector $n"
done
timeout 40 python3 - "$OUT" "$REQID" << 'PY' || fail "phase 0: a request sent twice with one request id was not stored once"
import glob, hashlib, json, sys, time
out, reqid = sys.argv[1], sys.argv[2]
def derived(value, index):
    ms = int(value.split("-", 1)[0])
    h = hashlib.sha256(b"adtrack.reqid.v1\0" + value.encode() + index.to_bytes(4, "big")).digest()
    b = ms.to_bytes(6, "big") + bytes([0x70 | (h[0] & 0x0F), h[1], 0x80 | (h[2] & 0x3F)]) + h[3:10]
    x = b.hex()
    return f"{x[:8]}-{x[8:12]}-{x[12:16]}-{x[16:20]}-{x[20:]}"
want = {"probe:pixel": {derived(reqid, 0)}, "probe:beacon": {derived(reqid + "-b", i) for i in range(3)}}
deadline = time.time() + 30
while True:
    ids = {"probe:pixel": [], "probe:beacon": [], "probe:control": []}
    for f in glob.glob(f"{out}/sink[12]/events-*.jsonl"):
        for line in open(f, errors="replace"):
            if '"probe:' not in line or not line.endswith("\n"):
                continue
            d = json.loads(line)
            ids[d["tag"]].append(d["_id"])
    done = len(ids["probe:control"]) >= 2 and all(set(ids[t]) == want[t] for t in want)
    if done or time.time() > deadline:
        break
    time.sleep(0.3)
print(f"phase 0: stored ids {json.dumps(ids)}")
ok = all(set(ids[t]) == want[t] and len(ids[t]) == len(want[t]) for t in want)
ok = ok and len(set(ids["probe:control"])) == 2
sys.exit(0 if ok else 1)
PY
echo "failover: phase 0 ok: the same request sent to both collectors was stored once, under the derived ids"

# ---- phase 1: SIGKILL a collector, restart it; stop a broker ----
start_load kill "$KILL_S"
at 8
kill -KILL "${COL_PID[1]}"
wait "${COL_PID[1]}" 2> /dev/null || true
note "collector 1 killed (SIGKILL)"
DETECT_MS=$(wait_lb collector-1 DOWN 10)
note "HAProxy marked collector 1 down after $DETECT_MS ms"
at 13
start_collector 1
UP_MS=$(wait_lb collector-1 UP 20)
note "collector 1 restarted; back in HAProxy after $UP_MS ms"
at 22
ds_cmd broker-down 2
note "Kafka broker 2 down"
at 28
ds_cmd broker-up 2
note "Kafka broker 2 up"
finish_load kill
note "load and verify done"

# ---- phase 2: rolling restart (SIGTERM, wait for exit, start, wait ready), one at a time ----
start_load rolling "$ROLLING_S"
ROLL_NOTES=()
for n in 1 2; do
    at $((n == 1 ? 6 : 20))
    t0=$(date +%s%3N)
    kill -TERM "${COL_PID[$n]}"
    down_ms=$(wait_lb "collector-$n" DOWN 10)
    rc=0
    timeout 30 tail --pid="${COL_PID[$n]}" -f /dev/null || fail "collector $n did not exit within 30 s of SIGTERM"
    wait "${COL_PID[$n]}" || rc=$?
    [ "$rc" = 0 ] || fail "collector $n exited $rc after SIGTERM (expected 0)"
    exit_ms=$(($(date +%s%3N) - t0))
    start_collector "$n"
    up_ms=$(wait_lb "collector-$n" UP 20)
    note "collector $n: SIGTERM -> HAProxy down ${down_ms} ms, exit 0 after ${exit_ms} ms, restarted, back in after ${up_ms} ms"
    ROLL_NOTES+=("collector-$n: down ${down_ms} ms, exit ${exit_ms} ms, up ${up_ms} ms")
done
finish_load rolling
note "load and verify done"

# ---- HAProxy's side: retries and redispatches, answers it gave itself ----
python3 - "$OUT/haproxy.log" > "$OUT/haproxy-summary.json" << 'PY'
import json, re, sys
retried = redispatched = lb_errors = 0
line_re = re.compile(r'\] adtrack_public \S+ \S+ (\d+) \S+ (\S+) \d+/\d+/\d+/\d+/(\+?)(\d+) ')
for l in open(sys.argv[1], errors="replace"):
    m = line_re.search(l)
    if not m:
        continue
    if int(m.group(4)) > 0:
        retried += 1
    if m.group(3) == "+":
        redispatched += 1
    if m.group(1).startswith("5"):
        lb_errors += 1
print(json.dumps({"retried_requests": retried, "redispatched": redispatched, "5xx_to_clients": lb_errors}))
PY

# ---- verdict ----
python3 - "$OUT" "$MIN_SUCCESS" "$DETECT_MS" "$UP_MS" "${ROLL_NOTES[*]}" << 'PY'
import json, sys
out, min_success, detect_ms, up_ms, roll = sys.argv[1], float(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
lb = json.load(open(f"{out}/haproxy-summary.json"))
failures = []
rows = []
for phase, need in (("kill", min_success), ("rolling", 1.0)):
    r = json.load(open(f"{out}/{phase}.json"))
    q, v, lat = r["requests"], r.get("verify") or {}, r["latency_us"]
    ratio = r["success_ratio"]
    rows.append((phase, q["intended"], q["ok"], f"{100 * ratio:.3f}%", q["failed"] + q["dropped"],
                 v.get("lost"), v.get("duplicated"), v.get("redelivered"), f"{lat['p50'] / 1000:.1f}",
                 f"{lat['p99'] / 1000:.1f}", f"{lat['max'] / 1000:.0f}"))
    if ratio < need:
        failures.append(f"{phase}: success {ratio:.5f} < {need} (status {r['status']}, errors {r['errors']})")
    if v.get("error"):
        failures.append(f"{phase}: verify could not read the store: {v['error']}")
    if v.get("lost", 1) != 0 or v.get("duplicated", 1) != 0:
        failures.append(f"{phase}: lost {v.get('lost')} duplicated {v.get('duplicated')} "
                        f"(lost tags {v.get('lost_tags')}, duplicated tags {v.get('duplicated_tags')})")
    if not v.get("settled", False):
        failures.append(f"{phase}: verify did not settle (found {v.get('found_events')} of {v.get('expected_events')})")
hdr = ("phase", "intended", "ok", "success", "failed", "lost", "dup", "redeliv", "p50 ms", "p99 ms", "max ms")
w = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)]
for row in (hdr, *rows):
    print("  ".join(str(x).rjust(n) for x, n in zip(row, w)))
print(f"kill: HAProxy saw collector 1 down {detect_ms} ms after SIGKILL; restarted one back in {up_ms} ms")
print(f"rolling: {roll}")
print(f"HAProxy: {lb['retried_requests']} requests retried ({lb['redispatched']} redispatched), "
      f"{lb['5xx_to_clients']} 5xx answered to clients")
for f in failures:
    print("FAIL:", f, file=sys.stderr)
sys.exit(1 if failures else 0)
PY
echo "PASS: failover"
