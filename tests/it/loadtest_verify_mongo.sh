#!/usr/bin/env bash
# Integration test: --verify mongodb:// queries adtrack.events and adtrack.rejected for the
# run's tags over the MongoDB wire protocol (mongo-c-driver against mockupdb, scripted by
# tests/support/mockupdb_server.py) and reconciles the answer with the requests that nginx
# acknowledged. The scripted store misses seq 4, holds seq 6 under two ids and has seq 9
# among the rejected (unknown_campaign); the test also checks the query itself: a find on
# each collection filtered by {tag: {$regex: "^<run-id>:"}}.
set -euo pipefail

source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/loadtest_it.sh"
LT_FAIL_TAIL="$TMP/mock.out"
LT_FAIL_TAIL_LINES=5
lt_before_cleanup() { exec 3>&- 2>/dev/null || true; }

/usr/bin/python3 -c 'import mockupdb' 2>/dev/null || fail "python3-mockupdb is not installed for /usr/bin/python3"

PORT="$(free_port)"
start_nginx "$PORT" "access_log off;"

mkfifo "$TMP/mock.in"
/usr/bin/python3 "$SRC/tests/support/mockupdb_server.py" < "$TMP/mock.in" > "$TMP/mock.out" 2> "$TMP/mock.err" &
lt_track_pid $!
exec 3> "$TMP/mock.in"
URI=""
for _ in $(seq 1 100); do
    URI="$(python3 -c 'import json,sys; l=open(sys.argv[1]).readline(); print(json.loads(l)["uri"] if l else "")' "$TMP/mock.out" 2>/dev/null || true)"
    [ -n "$URI" ] && break
    sleep 0.1
done
[ -n "$URI" ] || fail "mockupdb_server.py did not start"

# The store's contents for run mv1 (20 requests: seq 0..19).
python3 - >&3 <<'PY'
import json
events = [{"_id": f"e{s}", "tag": f"mv1:{s}", "e": "imp"} for s in range(20) if s not in (4, 9)]
events.append({"_id": "e6-again", "tag": "mv1:6", "e": "imp"})
rejected = [{"_id": {"$oid": "65f000000000000000000009"}, "tag": "mv1:9", "reason": "unknown_campaign"}]
print(json.dumps({"op": "rule", "cmd": "find", "collection": "events", "action": "cursor", "docs": events, "times": -1}))
print(json.dumps({"op": "rule", "cmd": "find", "collection": "rejected", "action": "cursor", "docs": rejected, "times": -1}))
print(json.dumps({"op": "sync"}))
PY
for _ in $(seq 1 100); do
    [ "$(grep -c '"ack"' "$TMP/mock.out" || true)" -ge 3 ] && break
    sleep 0.1
done

lt_expect_status 1 "expected exit status 1 (lost and duplicated events)" \
    "$BIN" --target "http://127.0.0.1:$PORT" --rate 20 --duration 1s --threads 1 --connections 2 --progress off \
    --run-id mv1 --verify "$URI/adtrack" --verify-wait 30s --verify-quiet 2s --json "$TMP/run.json"

lt_python "$TMP/run.json" "$TMP/mock.out" <<'PY'
r = json.load(open(sys.argv[1]))
v = r["verify"]
check(v["store"] == "mongodb", v)
check(v["checked_requests"] == 20, v)
check(v["lost"] == 1 and v["lost_tags"] == ["mv1:4"], v)
check(v["duplicated"] == 1 and v["duplicated_tags"] == ["mv1:6"], v)
check(v["rejected_by_reason"] == {"unknown_campaign": 1}, v)
finds = [json.loads(l) for l in open(sys.argv[2])]
finds = [e for e in finds if e.get("event") == "command" and e.get("cmd") == "find"]
colls = {e["collection"] for e in finds}
check(colls == {"events", "rejected"}, f"find on {colls}")
for e in finds:
    check(e["db"] == "adtrack", e)
    check(e["doc"]["filter"]["tag"]["$regex"] == "^mv1:", e["doc"]["filter"])
print("ok: mongodb verify found", v["lost_tags"], v["duplicated_tags"], v["rejected_by_reason"])
PY
