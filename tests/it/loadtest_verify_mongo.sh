#!/usr/bin/env bash
# Integration test: --verify mongodb:// queries adtrack.events and adtrack.rejected for the
# run's tags over the MongoDB wire protocol (mongo-c-driver against mockupdb, scripted by
# tests/support/mockupdb_server.py) and reconciles the answer with the requests that nginx
# acknowledged. The scripted store misses seq 4, holds seq 6 under two ids and has seq 9
# among the rejected (unknown_campaign); the test also checks the query itself: a find on
# each collection filtered by {tag: {$regex: "^<run-id>:"}}.
set -euo pipefail

BIN="${ADTRACK_BIN_DIR:?ADTRACK_BIN_DIR not set}/adtrack-loadtest"
SRC="${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}"
TMP="$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/loadtest_verify_mongo.XXXXXX")"
NGINX_PID=""
MOCK_PID=""
cleanup() {
    exec 3>&- 2>/dev/null || true
    for p in "$MOCK_PID" "$NGINX_PID"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f "$TMP/mock.out" ] && tail -5 "$TMP/mock.out" >&2; exit 1; }

/usr/bin/python3 -c 'import mockupdb' 2>/dev/null || fail "python3-mockupdb is not installed for /usr/bin/python3"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

start_nginx() {
    mkdir -p "$TMP/nginx"
    cat > "$TMP/nginx/nginx.conf" <<CONF
daemon off;
master_process off;
error_log stderr;
pid $TMP/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  server {
    listen 127.0.0.1:$1;
    location = /t.gif { empty_gif; }
    location / { return 204; }
  }
}
CONF
    nginx -e stderr -c "$TMP/nginx/nginx.conf" -p "$TMP/nginx" &
    NGINX_PID=$!
    for _ in $(seq 1 100); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    fail "nginx did not start on port $1"
}

PORT="$(free_port)"
start_nginx "$PORT"

mkfifo "$TMP/mock.in"
/usr/bin/python3 "$SRC/tests/support/mockupdb_server.py" < "$TMP/mock.in" > "$TMP/mock.out" 2> "$TMP/mock.err" &
MOCK_PID=$!
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

set +e
"$BIN" --target "http://127.0.0.1:$PORT" --rate 20 --duration 1s --threads 1 --connections 2 --progress off \
    --run-id mv1 --verify "$URI/adtrack" --verify-wait 30s --verify-quiet 2s --json "$TMP/run.json"
rc=$?
set -e
[ "$rc" -eq 1 ] || fail "expected exit status 1 (lost and duplicated events), got $rc"

python3 - "$TMP/run.json" "$TMP/mock.out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
def check(cond, msg):
    if not cond:
        print("FAIL:", msg, file=sys.stderr)
        sys.exit(1)
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
