#!/usr/bin/env bash
# Integration test: adtrack-loadtest against the real collector and a Kafka-protocol
# cluster (adtrack-devstream), with --verify kafka: every pixel (200), signed click (302)
# and beacon batch (3 events per POST) the collector acknowledged must be in
# adtrack.events.raw exactly once, under the run's tags. This checks the load tester's
# tagging, click signing (--click-key), beacon event counting and Kafka reconciliation
# against the shipped pipeline rather than a stand-in, and the collector's promise that a
# 2xx means the event is durable.
set -euo pipefail

source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/loadtest_it.sh"
LT_FAIL_TAIL="$TMP/col.err"

for b in adtrack-loadtest adtrack-collector adtrack-devstream; do
    [ -x "$BIN_DIR/$b" ] || fail "$BIN_DIR/$b not built"
done

lt_start_devstream

PORT="$(free_port)"
"$BIN_DIR/adtrack-collector" --listen "127.0.0.1:$PORT" --brokers "$BOOT" --spool-dir "$TMP/spool" \
    --click-key it-key > "$TMP/col.out" 2> "$TMP/col.err" &
lt_track_pid $!
ready=0
for _ in $(seq 1 300); do
    code="$(python3 - "$PORT" <<'PY' 2>/dev/null || true
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=1)
c.request("GET", "/readyz")
print(c.getresponse().status)
PY
)"
    [ "$code" = 200 ] && { ready=1; break; }
    sleep 0.1
done
[ "$ready" = 1 ] || fail "collector not ready on port $PORT"

cat > "$TMP/profile.json" <<'JSON'
{"seed": 7, "campaigns": 20, "mix": {"imp": 80, "view": 10, "click": 8, "conv": 2},
 "beacon_ratio": 0.1, "beacon_batch": 3}
JSON
lt_expect_status 0 "adtrack-loadtest: expected exit status 0" \
    env ADTRACK_CLICK_KEY=it-key "$BIN" --target "http://127.0.0.1:$PORT" --rate 200 --duration 2s \
    --threads 2 --connections 8 --progress off --profile "$TMP/profile.json" --verify "kafka:$BOOT" \
    --verify-wait 60s --verify-quiet 10s --json "$TMP/run.json"

lt_python "$TMP/run.json" <<'PY'
r = json.load(open(sys.argv[1]))
q, v, st = r["requests"], r["verify"], r["status"]
check(q["intended"] == 400 and q["ok"] == 400, f"requests {q}")
check(st.get("302", 0) > 0, f"no signed click was redirected: {st}")
check(set(st) <= {"200", "302"}, f"unexpected statuses {st}")
check(v["checked_requests"] == 400, v)
check(v["expected_events"] > 400, f"beacon batches should carry 3 events each: {v['expected_events']}")
check(v["lost"] == 0 and v["duplicated"] == 0 and v["rejected"] == 0, v)
check(v["found_events"] == v["expected_events"] and v["settled"], v)
print(f"ok: {v['expected_events']} events of 400 requests all in Kafka exactly once; statuses {st}")
PY
