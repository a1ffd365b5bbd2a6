#!/usr/bin/env bash
# End to end: `adtrack up` on free ports and a fresh data directory, then
#   1. pixels over HTTP (browser User-Agent) -> enriched documents in the file sink, with
#      price_micros and the campaign and publisher names;
#   2. a campaign paused through the admin API (adtrack campaign pause) rejects a pixel sent
#      less than a second after the pause returned (measured: pixels every 50 ms, the first
#      one rejected as campaign_inactive is looked up by its uid);
#   3. kill -9 of the enricher: adtrack up logs the exit, restarts it, events keep landing;
#   4. a second adtrack up on the same data directory is refused;
#   5. SIGTERM: exit 0, collector stopped first and redis last, every child gone;
#   6. a restart on the same data directory keeps the store (no second seeding).
# Needs redis-server and curl. Every wait is a bounded poll.
set -euo pipefail
bin=${ADTRACK_BIN_DIR:?}
command -v redis-server >/dev/null && command -v curl >/dev/null || {
    echo "SKIP: needs redis-server and curl"
    exit 77
}
mkdir -p "${ADTRACK_TEST_TMP:-/tmp}"
tmp=$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/e2e-up.XXXXXX")
data=$tmp/data
up_pid=
cleanup() {
    if [[ -n "$up_pid" ]] && kill -0 "$up_pid" 2>/dev/null; then
        kill -TERM "$up_pid" 2>/dev/null || true
        for _ in $(seq 1 300); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
        # Its children have PR_SET_PDEATHSIG: a killed adtrack up takes them along.
        kill -KILL "$up_pid" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
    [[ "${KEEP_TMP:-}" == 1 ]] || rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for f in "$tmp"/up*.err; do [[ -f $f ]] && { echo "---- $f" >&2; tail -n 30 "$f" >&2; }; done
    exit 1
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
UA='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'

cport=$(port)
aport=$(port)
dport=$(port)
col=http://127.0.0.1:$cport
api=http://127.0.0.1:$aport

# start_up <n>: runs adtrack up in the background (stdout $tmp/up<n>.out, stderr .err) and
# waits for its banner.
start_up() {
    "$bin/adtrack" up --data-dir "$data" --listen "127.0.0.1:$cport" --admin-listen "127.0.0.1:$aport" \
        --dashboard-listen "127.0.0.1:$dport" >"$tmp/up$1.out" 2>"$tmp/up$1.err" &
    up_pid=$!
    for _ in $(seq 1 600); do
        grep -q '^adtrack is up' "$tmp/up$1.out" 2>/dev/null && return 0
        kill -0 "$up_pid" 2>/dev/null || fail "adtrack up exited during start-up"
        sleep 0.1
    done
    fail "adtrack up printed no banner within 60 s"
}

# stop_up: SIGTERM, then checks exit status 0 and that every child is gone.
stop_up() {
    local children
    children=$(pgrep -P "$up_pid" || true)
    [[ -n "$children" ]] || fail "adtrack up has no children"
    kill -TERM "$up_pid"
    local t0 rc=0
    t0=$(now_ms)
    for _ in $(seq 1 900); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$up_pid" 2>/dev/null && fail "adtrack up still running 90 s after SIGTERM"
    wait "$up_pid" || rc=$?
    echo "adtrack up stopped in $(($(now_ms) - t0)) ms, exit status $rc"
    [[ $rc -eq 0 ]] || fail "adtrack up exited $rc after SIGTERM"
    local p
    for p in $children; do
        kill -0 "$p" 2>/dev/null && fail "child $p ($(cat /proc/$p/cmdline | tr '\0' ' ')) outlived adtrack up"
    done
    up_pid=
}

# pixel <campaign> <uid>: one impression pixel; fails the test unless the answer is 200.
pixel() {
    local code
    code=$(curl -s -o /dev/null -w '%{http_code}' -A "$UA" \
        "$col/t.gif?e=imp&c=$1&p=pub-dailynews&pl=top&uid=$2") || fail "pixel $2: curl failed"
    [[ "$code" == 200 ]] || fail "pixel $2: HTTP $code"
}

events() { cat "$data"/sink/enricher-*/events-*.jsonl 2>/dev/null || true; }
rejected() { cat "$data"/sink/enricher-*/rejected-*.jsonl 2>/dev/null || true; }

# wait_event <uid> <seconds>: until a stored event with that uid exists.
wait_event() {
    for _ in $(seq 1 $(($2 * 10))); do
        events | grep -q "\"uid\" : \"$1\"" && return 0
        sleep 0.1
    done
    fail "event uid=$1 not stored within $2 s"
}

# ---- 1. start, pixels, enriched documents ----
start_up 1
grep -q "$col/t.gif" "$tmp/up1.out" || fail "banner lacks the pixel endpoint"
grep -q "$api" "$tmp/up1.out" || fail "banner lacks the admin API"
grep -q "mongoimport" "$tmp/up1.out" || fail "banner lacks the mongoimport line"
grep -q "devstream.ctl" "$tmp/up1.out" || fail "banner lacks the devstream fifo"
[[ -p "$data/devstream.ctl" ]] || fail "no devstream control fifo"
[[ "$(stat -c %a "$data/admin.token")" == 600 ]] || fail "admin.token is not mode 0600"
token=$(cat "$data/admin.token")
grep -q '"camp-acme-spring","ok":true' "$data/seed.json" || fail "demo data not seeded: $(cat "$data/seed.json")"
curl -sf "$col/tracker.js" >/dev/null || fail "tracker.js not served"
if [[ -x "$bin/adtrack-dashboard" ]]; then
    grep -q "Dashboard *http://127.0.0.1:$dport/" "$tmp/up1.out" || fail "banner lacks the dashboard URL"
    curl -sf "http://127.0.0.1:$dport/readyz" >/dev/null || fail "dashboard not ready"
    # The dashboard asks for the token adtrack up wrote (0600) and names in its banner.
    grep -q "sign in with the token in $data/dashboard.token" "$tmp/up1.out" || fail "banner does not say where the dashboard token is"
    [[ "$(stat -c %a "$data/dashboard.token")" == 600 ]] || fail "dashboard.token is not mode 0600"
    [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$dport/api/snapshot")" == 401 ]] ||
        fail "dashboard answers without a token"
    curl -sf -H "Authorization: Bearer $(cat "$data/dashboard.token")" "http://127.0.0.1:$dport/api/snapshot" >/dev/null ||
        fail "dashboard refuses its own token"
    if grep -qF "$(cat "$data/dashboard.token")" "$tmp/up1.out" "$tmp/up1.err" "$data"/logs/*.log; then
        fail "the dashboard token is printed or logged"
    fi
fi
if "$bin/adtrack-collector" --help | grep -q -- '--demo-page '; then
    grep -q "Demo page *$col/demo/" "$tmp/up1.out" || fail "banner lacks the demo page URL"
    curl -sf "$col/demo/" >/dev/null || fail "demo page not served"
fi

for i in 1 2 3 4 5; do pixel camp-acme-spring "e2e-$i"; done
for i in 1 2 3 4 5; do wait_event "e2e-$i" 20; done
line=$(events | grep '"uid" : "e2e-3"')
for want in '"price_micros" : 2500' '"campaign_name" : "Spring running shoes"' '"publisher_name" : "Daily News"' \
    '"advertiser_name" : "Acme Shoes"'; do
    [[ "$line" == *"$want"* ]] || fail "stored event lacks $want: $line"
done
echo "ok: 5 pixels stored, enriched with price and names"

# ---- 2. pause through the admin API: rejected within a second ----
"$bin/adtrack" --api "$api" --token-file "$data/admin.token" campaign pause camp-acme-spring >"$tmp/pause.json" ||
    fail "campaign pause failed"
paused_at=$(now_ms)
grep -q '"status" : "paused"' "$tmp/pause.json" || fail "pause answer: $(cat "$tmp/pause.json")"
declare -A sent_at
first=
for k in $(seq 0 199); do
    sent_at[$k]=$(now_ms)
    pixel camp-acme-spring "after-pause-$k"
    sleep 0.05
    hit=$(rejected | grep -o '"uid" : "after-pause-[0-9]*"' | grep -o '[0-9]*' | sort -n | head -1 || true)
    if [[ -n "$hit" ]]; then
        first=$hit
        break
    fi
done
[[ -n "$first" ]] || fail "no pixel rejected within 200 pixels (~10 s) after the pause"
rej=$(rejected) # captured: with pipefail, a producer cut off by `grep -q` fails the pipeline
grep "\"uid\" : \"after-pause-$first\"" <<<"$rej" | grep -q '"reason" : "campaign_inactive"' ||
    fail "after-pause-$first rejected for another reason: $(rejected | grep "after-pause-$first\"")"
delay=$((sent_at[$first] - paused_at))
accepted=$(events | grep -c '"uid" : "after-pause-' || true)
echo "pause: first rejected pixel sent $delay ms after the pause returned (pixel #$first; $accepted accepted before it)"
[[ $delay -lt 1000 ]] || fail "the pause took $delay ms to reject pixels (want < 1000)"
"$bin/adtrack" --api "$api" --token "$token" campaign resume camp-acme-spring >/dev/null || fail "resume failed"

# ---- 3. kill -9 the enricher: restarted, events keep landing ----
enr=$(pgrep -P "$up_pid" -f adtrack-enricher) || fail "no enricher child"
kill -KILL "$enr"
for _ in $(seq 1 100); do
    grep -q '"msg":"child exited unexpectedly; restarting after backoff","child":"enricher-1"' "$tmp/up1.err" && break
    sleep 0.1
done
grep '"child":"enricher-1"' "$tmp/up1.err" | grep 'signal 9' >/dev/null || fail "no restart log line for the killed enricher"
for _ in $(seq 1 100); do
    grep -q '"msg":"restarted","child":"enricher-1"' "$tmp/up1.err" && break
    sleep 0.1
done
new=$(pgrep -P "$up_pid" -f adtrack-enricher) || fail "the enricher was not restarted"
[[ "$new" != "$enr" ]] || fail "the enricher pid did not change"
# The resume may reach the new enricher's cache an instant after it starts: retry a rejected one.
for i in 1 2 3; do pixel camp-acme-spring "after-kill-$i"; done
for i in 1 2 3; do wait_event "after-kill-$i" 30; done
echo "ok: enricher $enr killed, restarted as $new, events keep landing"

# ---- 4. one adtrack up per data directory ----
set +e
"$bin/adtrack" up --data-dir "$data" --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 \
    --dashboard-listen 127.0.0.1:0 >/dev/null 2>"$tmp/second.err"
rc=$?
set -e
[[ $rc -eq 1 ]] && grep -q "in use by another adtrack up" "$tmp/second.err" ||
    fail "a second adtrack up on the same data directory: rc $rc, $(cat "$tmp/second.err")"

# ---- 5. SIGTERM: in order, everything gone, exit 0 ----
stop_up
order=$(grep '"msg":"stopped","child"' "$tmp/up1.err" | grep -o '"child":"[a-z0-9-]*"' | cut -d'"' -f4 | tr '\n' ' ')
[[ "$order" == "collector "* && "$order" == *" redis " ]] || fail "stop order: $order"
echo "ok: stopped in order: $order"

# ---- 6. restart keeps the store ----
start_up 2
grep -q 'the store has data: not seeding' "$tmp/up2.err" || fail "restart seeded again"
[[ -e "$data/seed.json" ]] || fail "seed.json vanished"
pixel camp-acme-spring after-restart
wait_event after-restart 30
stop_up
echo "PASS"
