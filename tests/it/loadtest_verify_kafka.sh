#!/usr/bin/env bash
# Integration test: --verify kafka:<bootstrap> reads the raw and rejected topics from the
# beginning over the Kafka protocol (adtrack-devstream, librdkafka's mock cluster) and
# reconciles them with the run.
#
# Pipeline stand-in: nginx answers and logs each request's tag; a script produces one
# event per tag to adtrack.events.raw with kcat (as the collector would), except that for
# run id "kbad" it drops seq 3, produces seq 5 under two event ids (a duplicate), produces
# seq 6 twice with the same id (a producer retry: a redelivery, not a duplicate) and sends
# seq 8 to adtrack.events.rejected with reason malformed_envelope.
set -euo pipefail

source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/loadtest_it.sh"
DEVSTREAM="$BIN_DIR/adtrack-devstream"

[ -x "$DEVSTREAM" ] || fail "$DEVSTREAM not built (tools/devstream.c)"
command -v kcat > /dev/null || fail "kcat not installed (Debian package kcat)"

lt_start_devstream

PORT="$(free_port)"
: > "$TMP/access.log"
start_nginx "$PORT" "log_format tags '\$arg_tag'; access_log $TMP/access.log tags;"

# The pipeline stand-in runs once the run's requests are all in nginx's log: kcat -P
# only produces reliably when its stdin ends, so each run's events go out as one batch,
# while adtrack-loadtest is already waiting in --verify (quiet period 10 s).
cat > "$TMP/pipeline.py" <<'PY'
import subprocess, sys, urllib.parse
log, boot, want_run = sys.argv[1], sys.argv[2], sys.argv[3]
raw, rej = [], []
n = 0
for line in open(log):
    tag = urllib.parse.unquote(line.strip())
    if ":" not in tag:
        continue
    run, seq = tag.split(":", 1)
    if run != want_run:
        continue
    n += 1
    eid = f"0190{run}{n:024x}"
    doc = '{"v":1,"id":"%s","e":"imp","c":"camp-1","tag":"%s"}'
    if run == "kbad" and seq == "3":
        continue
    if run == "kbad" and seq == "8":
        rej.append('{"v":1,"tag":"%s","reason":"malformed_envelope","detail":"x"}' % tag)
        continue
    raw.append(doc % (eid, tag))
    if run == "kbad" and seq == "5":
        raw.append(doc % (eid + "-2", tag))
    if run == "kbad" and seq == "6":
        raw.append(doc % (eid, tag))
for topic, lines in (("adtrack.events.raw", raw), ("adtrack.events.rejected", rej)):
    if lines:
        subprocess.run(["kcat", "-P", "-q", "-b", boot, "-t", topic], input="\n".join(lines) + "\n",
                       text=True, check=True, timeout=60)
PY

run_lt() { # run_lt <run-id> <json>: load in the background, then feed the pipeline, then wait
    "$BIN" --target "http://127.0.0.1:$PORT" --rate 40 --duration 1s --threads 1 --connections 2 --progress off \
        --run-id "$1" --verify "kafka:$BOOT" --verify-wait 60s --verify-quiet 10s --json "$2" &
    local lt=$!
    for _ in $(seq 1 300); do
        [ "$(grep -c "^$1%3A" "$TMP/access.log" || true)" -ge 40 ] && break
        sleep 0.1
    done
    python3 "$TMP/pipeline.py" "$TMP/access.log" "$BOOT" "$1" || fail "pipeline stand-in failed"
    wait "$lt"
}

lt_expect_status 1 "expected exit status 1" run_lt kbad "$TMP/bad.json"
lt_expect_status 0 "expected exit status 0 for a clean pipeline" run_lt kgood "$TMP/good.json"

lt_python "$TMP/bad.json" "$TMP/good.json" <<'PY'
bad, good = (json.load(open(p)) for p in sys.argv[1:3])
v = bad["verify"]
check(v["store"] == "kafka", v)
check(v["checked_requests"] == 40, f"checked {v['checked_requests']}")
check(v["lost"] == 1 and v["lost_tags"] == ["kbad:3"], f"lost {v['lost']} {v['lost_tags']}")
check(v["duplicated"] == 1 and v["duplicated_tags"] == ["kbad:5"], f"duplicated {v['duplicated_tags']}")
check(v["redelivered"] == 1, f"redelivered {v['redelivered']}")
check(v["rejected_by_reason"] == {"malformed_envelope": 1}, v["rejected_by_reason"])
g = good["verify"]
check(g["checked_requests"] == 40 and g["lost"] == 0 and g["duplicated"] == 0 and g["settled"], g)
print("ok: kafka verify found", v["lost_tags"], v["duplicated_tags"], v["rejected_by_reason"])
PY
