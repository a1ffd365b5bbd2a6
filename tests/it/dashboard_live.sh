#!/usr/bin/env bash
# adtrack-dashboard against a real redis-server and a stand-in /metrics target, as a user
# runs it: seeded counters show in /api/snapshot, growing counters give a rate, a core-data
# change PUBLISHed on adtrack:coredata reaches an SSE client (curl -N) as `event: change`
# within a second, /events streams snapshots, the scraped target shows in pipeline health
# (and a dead one as down), Redis killed -> /readyz 503, restarted -> 200 and counts back.
# Every request carries the dashboard's token (Bearer), which it reads from a file; without
# it the page, the API and the stream answer 401. Every wait is a poll with a deadline.
set -euo pipefail
bin=${ADTRACK_BIN_DIR:?}
tmp=$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/dashboard-live.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    echo "--- dashboard log" >&2; tail -20 "$tmp/dash.err" >&2 || true
    exit 1
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
# json EXPR: evaluates a Python expression over the snapshot `s`; prints the result.
json() { curl -sf -H "$authz" "http://127.0.0.1:$dport/api/snapshot" | python3 -c "import json,sys; s=json.load(sys.stdin); print($1)"; }
# wait_for SECONDS 'SHELL CONDITION': evaluates the condition every 100 ms until it holds
# (evaluated afresh each time, so command substitutions inside it are re-run).
wait_for() {
    local deadline=$(($(now_ms) + $1 * 1000))
    until eval "$2" >/dev/null 2>&1; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}

rport=$(port)
start_redis() {
    redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >/dev/null 2>&1 &
    redis_pid=$!
    pids+=($redis_pid)
    wait_for 10 'redis-cli -p "$rport" ping' || fail "redis-server did not start"
}
start_redis
r() { redis-cli -p "$rport" "$@" >/dev/null; }

minute=$(date -u +%Y%m%d%H%M)
r SADD adtrack:campaigns camp-it camp-gone
r HSET adtrack:campaign:camp-it version 3 doc '{"id":"camp-it","name":"IT Spring","advertiser_name":"Acme","status":"active","start":"2020-01-01T00:00:00Z","end":"2099-01-01T00:00:00Z","budget_micros":1000000,"pricing":"cpm","price_micros":2500}'
r HSET adtrack:campaign:camp-gone version 4 deleted 1
r SET adtrack:spend:camp-it 7500
r HSET "adtrack:stats:camp-it:$minute" events 20 imp 12 view 6 click 3 rejected 2 rejected:bot 2 spend 7500

# A stand-in collector /metrics (python's static file server), and a target that is down.
mkdir -p "$tmp/www"
printf 'adtrack_spool_bytes 4096\nadtrack_spool_active 1\nadtrack_kafka_reachable 0\nadtrack_http_requests_total{code="200"} 10\n' > "$tmp/www/metrics"
mport=$(port)
(cd "$tmp/www" && exec python3 -m http.server "$mport" --bind 127.0.0.1 >/dev/null 2>&1) &
pids+=($!)
dead=$(port)

dport=$(port)
# The dashboard's access token comes from a file (mode 0600), as in production.
tok=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
authz="Authorization: Bearer $tok"
(umask 077 && printf '%s\n' "$tok" > "$tmp/dashboard.token")
ADTRACK_AUTH_TOKEN_FILE="$tmp/dashboard.token" "$bin/adtrack-dashboard" --listen "127.0.0.1:$dport" --redis "127.0.0.1:$rport" --poll-ms 250 \
    --scrape "collector=http://127.0.0.1:$mport/metrics" --scrape "gone=http://127.0.0.1:$dead/metrics" \
    --log-level info 2>"$tmp/dash.err" &
pids+=($!)
wait_for 10 'curl -sf "http://127.0.0.1:$dport/healthz"' || fail "dashboard did not start"

# 0. without the token: 401 on the page, the API and the stream; probes and /metrics stay open
code_of() { curl -s -o /dev/null -w '%{http_code}' "$@"; }
for path in / /api/snapshot /events /dashboard.js; do
    [ "$(code_of "http://127.0.0.1:$dport$path")" = 401 ] || fail "$path without a token is not 401"
    [ "$(code_of -H "Authorization: Bearer wrong-$tok" "http://127.0.0.1:$dport$path")" = 401 ] || fail "$path with a wrong token is not 401"
done
for path in /healthz /metrics /login; do
    [ "$(code_of "http://127.0.0.1:$dport$path")" = 200 ] || fail "$path should be open"
done

# 0b. --auth none (behind an authenticating proxy): no check, and a warning; with a token
# as well, it refuses to start rather than ignore one of the two
nport=$(port)
"$bin/adtrack-dashboard" --listen "127.0.0.1:$nport" --redis "127.0.0.1:$rport" --auth none 2>"$tmp/dash-none.err" &
pids+=($!)
wait_for 10 'curl -sf "http://127.0.0.1:$nport/healthz"' || fail "dashboard --auth none did not start"
[ "$(code_of "http://127.0.0.1:$nport/api/snapshot")" != 401 ] || fail "--auth none still asks for a token"
grep -q '"level":"warn".*--auth none' "$tmp/dash-none.err" || fail "--auth none without a warning"
if ADTRACK_AUTH_TOKEN=some-token-0123456789 timeout 10 "$bin/adtrack-dashboard" --listen 127.0.0.1:0 \
    --redis "127.0.0.1:$rport" --auth none >/dev/null 2>&1; then
    fail "--auth none with a token started"
fi
if timeout 10 "$bin/adtrack-dashboard" --listen 127.0.0.1:0 --redis "127.0.0.1:$rport" >/dev/null 2>"$tmp/dash-notoken.err"; then
    fail "the dashboard started without a token"
fi
grep -q -- "--auth-token: expected at least one token" "$tmp/dash-notoken.err" || fail "no clear message without a token"

# 1. seeded counts show up; the tombstone does not
wait_for 10 'test "$(json '\''s["campaigns"][0]["imp"] if s["campaigns"] else -1'\'')" = 12' || fail "snapshot never showed imp=12: $(curl -s "http://127.0.0.1:$dport/api/snapshot")"
[ "$(json 'len(s["campaigns"])')" = 1 ] || fail "tombstoned campaign shown"
[ "$(json 's["campaigns"][0]["name"]')" = "IT Spring" ] || fail "name"
[ "$(json 's["campaigns"][0]["click"]')" = 3 ] || fail "clicks"
[ "$(json 'round(s["campaigns"][0]["ctr"], 4)')" = 0.25 ] || fail "ctr"
[ "$(json 's["campaigns"][0]["rejected_by_reason"]["bot"]')" = 2 ] || fail "rejected by reason"
[ "$(json 's["campaigns"][0]["spend_micros"]')" = 7500 ] || fail "spend"
curl -sf "http://127.0.0.1:$dport/readyz" >/dev/null || fail "/readyz should be 200 with Redis up"

# 2. growing counters give a rate. The counters grow continuously in the background (each
# snapshot's rate covers only the last poll interval, so a check right after a single
# increment could read a snapshot taken just before it).
(while :; do redis-cli -p "$rport" HINCRBY "adtrack:stats:camp-it:$(date -u +%Y%m%d%H%M)" events 20 >/dev/null; sleep 0.05; done) &
inc_pid=$!
pids+=($inc_pid)
rate_above() { python3 -c "import json,sys,urllib.request as u; s=json.load(u.urlopen(u.Request('http://127.0.0.1:$dport/api/snapshot', headers={'Authorization': 'Bearer $tok'}))); r=s['campaigns'][0]['events_per_s']; print(r); sys.exit(0 if r is not None and r > $1 else 1)"; }
wait_for 15 'rate_above 20' || fail "events_per_s never rose above 20/s: $(json 's["campaigns"][0]["events_per_s"]')"
rate=$(rate_above -1 || true)
kill "$inc_pid" 2>/dev/null || true
echo "rate seen: $rate events/s"

# 3. pipeline health: the stand-in collector is up with its spool, the dead target down
wait_for 10 'test "$(json '\''s["pipeline"]["spool_bytes"]'\'')" = 4096' || fail "spool_bytes from the scrape"
[ "$(json 's["pipeline"]["up"], s["pipeline"]["down"]')" = "1 1" ] || fail "targets up/down: $(json 's["pipeline"]')"
[ "$(json 's["pipeline"]["targets"][0]["kind"]')" = collector ] || fail "collector kind"

# 4. SSE: a snapshot at once, then a core-data change pushed within a second
curl -sN -H "$authz" "http://127.0.0.1:$dport/events" > "$tmp/sse.out" 2>/dev/null &
curl_pid=$!
pids+=($curl_pid)
wait_for 10 'grep -q '\''^event: snapshot'\'' "$tmp/sse.out"' || fail "no snapshot event on /events"
t0=$(now_ms)
r PUBLISH adtrack:coredata '{"kind":"campaign","id":"camp-it","version":5,"op":"put","doc":{"id":"camp-it","name":"IT Spring","status":"paused"}}'
wait_for 1 'grep -q '\''^data: {"kind":"campaign","id":"camp-it","op":"put","version":5,"status":"paused"'\'' "$tmp/sse.out"' ||
    fail "no change event within 1 s: $(grep -c '^event:' "$tmp/sse.out") events, last: $(tail -c 300 "$tmp/sse.out")"
echo "change event after $(($(now_ms) - t0)) ms"
grep -q '^event: change' "$tmp/sse.out" || fail "change event without its name"
n=$(grep -c '^event: snapshot' "$tmp/sse.out")
wait_for 5 'test "$(grep -c '\''^event: snapshot'\'' "$tmp/sse.out")" -gt $((n + 2))' || fail "snapshots stopped streaming"
# (outputs are captured first: with pipefail, `curl | grep -q` fails when grep stops reading early)
metrics=$(curl -s "http://127.0.0.1:$dport/metrics")
grep -q '^adtrack_dashboard_clients 1$' <<<"$metrics" || fail "clients gauge"
grep -q '^adtrack_dashboard_changes_total 1$' <<<"$metrics" || fail "changes counter"
kill "$curl_pid" 2>/dev/null || true
wait_for 5 'grep -qx "adtrack_dashboard_clients 0" <<<"$(curl -s "http://127.0.0.1:$dport/metrics")"' ||
    fail "a closed /events client is still counted"

# 5. the page and its assets are served from the binary
page=$(curl -sf -H "$authz" "http://127.0.0.1:$dport/") || fail "GET /"
grep -q 'id="campaigns"' <<<"$page" || fail "page"
js=$(curl -sfI -H "$authz" "http://127.0.0.1:$dport/dashboard.js") || fail "GET /dashboard.js"
grep -qi 'content-type: text/javascript' <<<"$js" || fail "js content type"

# 6. Redis down -> /readyz 503 and the snapshot says so; back -> 200, counts again
{ kill -9 "$redis_pid" && wait "$redis_pid"; } 2>/dev/null || true
code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$dport/readyz"; }
wait_for 10 'test "$(code)" = 503' || fail "/readyz did not turn 503 with Redis down"
[ "$(json 's["redis"]["up"]')" = False ] || fail "snapshot should say redis down"
start_redis
wait_for 10 'test "$(code)" = 200' || fail "/readyz did not return to 200 after Redis came back"
wait_for 10 'test "$(json '\''len(s["campaigns"])'\'')" = 0' || fail "an empty Redis should show no campaigns"
r SADD adtrack:campaigns camp-it
r HSET adtrack:campaign:camp-it version 6 doc '{"id":"camp-it","name":"IT Spring","status":"active"}'
r HSET "adtrack:stats:camp-it:$(date -u +%Y%m%d%H%M)" imp 5
wait_for 10 'test "$(json '\''s["campaigns"][0]["imp"] if s["campaigns"] else -1'\'')" = 5' || fail "counts after the restart"
# 7. history (--reports): a stand-in for coredata's GET /v1/reports that insists on the read
# token, answers what the query asked for, and logs every query. The dashboard fetches both
# reports, serves them at /api/history and streams them as `event: history`; a wrong token
# or a dead coredata shows as ok:false with the reason; the live view is not affected.
readtok="read-$tok"
cat > "$tmp/reports.py" <<'PY'
import json, sys, urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
port, token, log = int(sys.argv[1]), sys.argv[2], sys.argv[3]
class H(BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        u = urllib.parse.urlparse(self.path)
        q = dict(urllib.parse.parse_qsl(u.query))
        with open(log, "a") as f: f.write(self.path + "\n")
        if self.headers.get("Authorization") != "Bearer " + token:
            self.send_response(401); self.end_headers(); self.wfile.write(b'{"error":"token"}'); return
        if u.path != "/v1/reports":
            self.send_response(404); self.end_headers(); return
        if q.get("granularity") == "hour":
            rows = [{"period": q["from"], "imp": 40, "click": 2, "conv": 1, "spend_micros": 100000}]
        else:
            rows = [{"period": q["from"] + "T00:00:00Z", "campaign": "camp-it", "imp": 700, "click": 9, "conv": 2,
                     "spend_micros": 1750000}]
        body = json.dumps({"from": q["from"], "to": q["to"], "granularity": q["granularity"], "rows": rows,
                           "data_through": "2026-12-03T17:00:00Z"}).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
HTTPServer(("127.0.0.1", port), H).serve_forever()
PY
cport=$(port)
python3 "$tmp/reports.py" "$cport" "$readtok" "$tmp/reports.log" &
reports_pid=$!
pids+=($reports_pid)
wait_for 10 'curl -s -o /dev/null "http://127.0.0.1:$cport/"' || fail "stand-in reports server did not start"
hport=$(port)
(umask 077 && printf '%s\n' "$readtok" > "$tmp/reports.token")
ADTRACK_AUTH_TOKEN_FILE="$tmp/dashboard.token" ADTRACK_REPORTS_TOKEN_FILE="$tmp/reports.token" \
    "$bin/adtrack-dashboard" --listen "127.0.0.1:$hport" --redis "127.0.0.1:$rport" \
    --reports "http://127.0.0.1:$cport/" --reports-poll-s 5 --reports-hours 24 --reports-days 7 2>"$tmp/dash-hist.err" &
pids+=($!)
hist() { curl -sf -H "$authz" "http://127.0.0.1:$hport/api/history" | python3 -c "import json,sys; h=json.load(sys.stdin); print($1)"; }
wait_for 15 'test "$(hist '\''h["ok"]'\'')" = True' || fail "history never ok: $(curl -s -H "$authz" "http://127.0.0.1:$hport/api/history")"
[ "$(hist 'h["hourly"]["rows"][0]["imp"], h["daily"]["rows"][0]["campaign"]')" = "40 camp-it" ] || fail "history content: $(hist h)"
grep -q 'granularity=hour&tz=UTC' "$tmp/reports.log" || fail "no hourly report asked for: $(cat "$tmp/reports.log")"
grep -q 'granularity=day&tz=UTC&group_by=campaign' "$tmp/reports.log" || fail "no daily report by campaign asked for"
# 24 hours and 7 days, to the next hour / day boundary
python3 - "$tmp/reports.log" <<'PY' || fail "report ranges: $(head -2 "$tmp/reports.log")"
import sys, urllib.parse, datetime as d
for line in [l for l in open(sys.argv[1]).read().split() if l.startswith("/v1/reports")][:2]:
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(line).query))
    if q["granularity"] == "hour":
        f, t = (d.datetime.strptime(q[k], "%Y-%m-%dT%H:%M:%SZ") for k in ("from", "to"))
        assert t - f == d.timedelta(hours=24) and t.minute == 0 and t > d.datetime.utcnow(), q
    else:
        f, t = (d.date.fromisoformat(q[k]) for k in ("from", "to"))
        assert (t - f).days == 7 and t > d.datetime.utcnow().date(), q
PY
curl -sN -H "$authz" "http://127.0.0.1:$hport/events" > "$tmp/sse-hist.out" 2>/dev/null &
pids+=($!)
wait_for 10 'grep -q '\''^event: history'\'' "$tmp/sse-hist.out"' || fail "no history event on /events"
[ "$(code_of -H "$authz" "http://127.0.0.1:$dport/api/history")" = 404 ] || fail "/api/history without --reports is not 404"
[ "$(code_of "http://127.0.0.1:$hport/api/history")" = 401 ] || fail "/api/history without a token is not 401"
# coredata gone: the next fetch says so, the live view goes on
{ kill -9 "$reports_pid" && wait "$reports_pid"; } 2>/dev/null || true
wait_for 15 'test "$(hist '\''h["ok"]'\'')" = False' || fail "history still ok with its server dead"
hist 'h["error"]' | grep -q 'connect' || fail "history error does not say why: $(hist 'h["error"]')"
grep -q 'history reports unavailable' "$tmp/dash-hist.err" || fail "no warning in the log"
grep -q '^adtrack_dashboard_history_errors_total [1-9]' <<<"$(curl -s "http://127.0.0.1:$hport/metrics")" || fail "history errors counter"
# the wrong token: refused, shown with the status
python3 "$tmp/reports.py" "$cport" "other-token" "$tmp/reports.log" &
pids+=($!)
wait_for 15 'hist '\''h["error"]'\'' | grep -q "HTTP 401"' || fail "a refused token is not shown: $(hist h)"
# --reports without a token does not start
if timeout 10 "$bin/adtrack-dashboard" --listen 127.0.0.1:0 --redis "127.0.0.1:$rport" --auth none \
    --reports "http://127.0.0.1:$cport" >/dev/null 2>"$tmp/dash-nort.err"; then
    fail "--reports without --reports-token started"
fi
grep -q -- "--reports-token: required with --reports" "$tmp/dash-nort.err" || fail "no clear message without --reports-token"
echo "PASS"
