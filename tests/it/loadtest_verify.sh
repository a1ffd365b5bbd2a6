#!/usr/bin/env bash
# Integration test: --verify reconciles every acknowledged request end to end.
#
# The "pipeline" under test is real HTTP plus a stand-in sink: nginx answers the pixel and
# click requests and logs each request's tag; a small follower process turns that log into
# the enricher's file-sink layout (events-*.jsonl, rejected-*.jsonl) as lines arrive. For
# run id "vbad" it misbehaves on purpose: it drops seq 7, stores seq 11 twice under two
# event ids (a duplicate), stores seq 12 twice under the same id (a redelivery, which an
# idempotent sink absorbs: not a duplicate), and rejects seq 13 with reason
# unknown_campaign. For run id "vgood" it behaves. adtrack-loadtest must report exactly
# those findings from the tags it sent, and exit 1 for the bad run, 0 for the good one.
set -euo pipefail

source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/loadtest_it.sh"

PORT="$(free_port)"
: > "$TMP/access.log"
start_nginx "$PORT" "log_format tags '\$arg_tag'; access_log $TMP/access.log tags;"
mkdir -p "$TMP/sink"

# The follower: access log -> file sink, misbehaving for run id vbad.
cat > "$TMP/pipeline.py" <<'PY'
import os, sys, time, urllib.parse
log, sink = sys.argv[1], sys.argv[2]
ev = open(os.path.join(sink, "events-000001.jsonl"), "a", buffering=1)
rj = open(os.path.join(sink, "rejected-000001.jsonl"), "a", buffering=1)
n = 0
with open(log) as f:
    buf = ""
    while True:
        chunk = f.readline()
        if not chunk:
            time.sleep(0.05)
            continue
        buf += chunk
        if not buf.endswith("\n"):
            continue
        tag, buf = urllib.parse.unquote(buf.strip()), ""
        if ":" not in tag:
            continue
        run, seq = tag.split(":", 1)
        n += 1
        eid = f"0190{n:028x}"
        doc = '{"_id":"%s","v":1,"e":"imp","tag":"%s"}\n'
        if run == "vbad" and seq == "7":
            continue
        if run == "vbad" and seq == "13":
            rj.write('{"tag":"%s","reason":"unknown_campaign","detail":"c: not in core data"}\n' % tag)
            continue
        ev.write(doc % (eid, tag))
        if run == "vbad" and seq == "11":
            ev.write(doc % (eid + "-2", tag))
        if run == "vbad" and seq == "12":
            ev.write(doc % (eid, tag))
PY
python3 "$TMP/pipeline.py" "$TMP/access.log" "$TMP/sink" &
lt_track_pid $!

run_lt() { # run_lt <run-id> <json>
    "$BIN" --target "http://127.0.0.1:$PORT" --rate 50 --duration 2s --threads 2 --connections 4 --progress off \
        --run-id "$1" --verify "file:$TMP/sink" --verify-wait 60s --verify-quiet 3s --json "$2"
}

lt_expect_status 1 "expected exit status 1 for lost/duplicated events" run_lt vbad "$TMP/bad.json"
lt_expect_status 0 "expected exit status 0 for a clean pipeline" run_lt vgood "$TMP/good.json"

lt_python "$TMP/bad.json" "$TMP/good.json" <<'PY'
bad, good = (json.load(open(p)) for p in sys.argv[1:3])
v = bad["verify"]
check(bad["requests"]["ok"] == 100, f"bad run: {bad['requests']['ok']} acknowledged, expected 100")
check(v["store"] == "file", v)
check(v["checked_requests"] == 100, f"checked {v['checked_requests']}")
check(v["lost"] == 1 and v["lost_tags"] == ["vbad:7"], f"lost {v['lost']} {v['lost_tags']}")
check(v["duplicated"] == 1 and v["duplicated_tags"] == ["vbad:11"], f"duplicated {v['duplicated']} {v['duplicated_tags']}")
check(v["redelivered"] == 1, f"redelivered {v['redelivered']}")
check(v["rejected"] == 1 and v["rejected_by_reason"] == {"unknown_campaign": 1}, f"rejected {v['rejected']} {v['rejected_by_reason']}")
check(v["found_events"] == 99, f"found_events {v['found_events']}: 100 - lost 7 - rejected 13 + extra id for 11")
check(not v["settled"], "a run with a lost event cannot settle")
g = good["verify"]
check(g["checked_requests"] == 100 and g["lost"] == 0 and g["duplicated"] == 0 and g["rejected"] == 0, g)
check(g["settled"], "clean run did not settle")
check(g["foreign"] == 0, g)
print("ok: lost", v["lost_tags"], "duplicated", v["duplicated_tags"], "rejected", v["rejected_by_reason"])
PY
