#!/usr/bin/env bash
# LABELS: redis
# Redis authentication and ACLs (docs/SECURITY.md, "Redis"), against a real redis-server 7
# whose default user is off and whose users have ACL rules:
#   1. right credentials (ACL user in --redis redis://USER@HOST:PORT/DB, password from a
#      0600 file): coredata writes and publishes, the enricher and the dashboard are ready;
#      Redis killed and restarted: every service authenticates again by itself;
#   2. a wrong password: each service logs an error-level line with Redis' WRONGPASS, its
#      /readyz stays 503, and the wrong password itself is in no log;
#   3. users without a command a service needs: coredata (no EVALSHA) and the enricher (no
#      PUBLISH) log an error naming the command and stay unready; the dashboard, which needs
#      neither, is ready with the same user.
# Every wait is a poll with a deadline.
set -euo pipefail
bin=${ADTRACK_BIN_DIR:?}
command -v redis-server >/dev/null && command -v redis-cli >/dev/null || { echo "skipped: no redis-server"; exit 77; }
tmp=$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/redis-auth.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "${ADTRACK_KEEP_TMP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for f in "$tmp"/*.log; do echo "--- $f" >&2; tail -5 "$f" >&2; done
    exit 1
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }
wait_for() {
    local deadline=$(($(now_ms) + $1 * 1000))
    until eval "$2" >/dev/null 2>&1; do
        [ "$(now_ms)" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}
rand() { head -c 18 /dev/urandom | base64 | tr '+/' '-_'; }
secret_file() { (umask 077 && printf '%s\n' "$2" > "$tmp/$1"); echo "$tmp/$1"; }
code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz"; }

admin_pw=$(rand) app_pw=$(rand) nopub_pw=$(rand) noeval_pw=$(rand) wrong_pw=$(rand)
token=$(rand) dash_token=$(rand)
rport=$(port)
# The default user is off: nothing gets in without credentials. adtrack's users may touch
# only adtrack:* keys and channels.
cat > "$tmp/redis.conf" <<EOF
port $rport
bind 127.0.0.1
save ""
appendonly no
dir $tmp
user default off
user admin on >$admin_pw ~* &* +@all
user adtrack on >$app_pw ~adtrack:* &adtrack:* +@all
user nopub on >$nopub_pw ~adtrack:* &adtrack:* +@all -publish
user noeval on >$noeval_pw ~adtrack:* &adtrack:* +@all -evalsha
EOF
chmod 600 "$tmp/redis.conf"
rc() { redis-cli -p "$rport" --user admin --pass "$admin_pw" --no-auth-warning "$@"; }
start_redis() {
    redis-server "$tmp/redis.conf" >"$tmp/redis.out" 2>&1 &
    redis_pid=$!
    pids+=($redis_pid)
    wait_for 10 'rc ping | grep -q PONG' || fail "redis-server did not start"
}
start_redis
# Without credentials Redis answers nothing useful.
redis-cli -p "$rport" get x 2>&1 | grep -q NOAUTH || fail "the test's Redis lets anonymous users in"

"$bin/adtrack-devstream" --partitions 2 >"$tmp/devstream.out" 2>"$tmp/devstream.log" </dev/null &
pids+=($!)
wait_for 10 'test -s "$tmp/devstream.out"' || fail "devstream did not start"
brokers=$(head -n 1 "$tmp/devstream.out")

admin_file=$(secret_file admin.token "$token")
dash_file=$(secret_file dashboard.token "$dash_token")

# start_set NAME USER PASSWORD: coredata, an enricher and a dashboard of their own, with
# the Redis user and password (from a file); sets cport_NAME, eport_NAME, dport_NAME.
start_set() {
    local name=$1 user=$2 pw=$3 cp ep dp pwfile
    cp=$(port) ep=$(port) dp=$(port)
    pwfile=$(secret_file "redis-$name.password" "$pw")
    local redis="redis://$user@127.0.0.1:$rport/0"
    ADTRACK_ADMIN_TOKEN_FILE=$admin_file ADTRACK_REDIS="$redis" ADTRACK_REDIS_PASSWORD_FILE=$pwfile \
        "$bin/adtrack-coredata" --listen "127.0.0.1:$cp" --data-dir "$tmp/coredata-$name" --brokers "$brokers" \
        --redis-timeout-ms 500 >/dev/null 2>"$tmp/coredata-$name.log" &
    pids+=($!)
    ADTRACK_REDIS="$redis" ADTRACK_REDIS_PASSWORD_FILE=$pwfile \
        "$bin/adtrack-enricher" --listen "127.0.0.1:$ep" --data-dir "$tmp/sink-$name" --brokers "$brokers" \
        --group "g-$name" >/dev/null 2>"$tmp/enricher-$name.log" &
    pids+=($!)
    ADTRACK_AUTH_TOKEN_FILE=$dash_file ADTRACK_REDIS="$redis" ADTRACK_REDIS_PASSWORD_FILE=$pwfile \
        "$bin/adtrack-dashboard" --listen "127.0.0.1:$dp" --poll-ms 200 >/dev/null 2>"$tmp/dashboard-$name.log" &
    pids+=($!)
    printf -v "cport_$name" '%s' "$cp"
    printf -v "eport_$name" '%s' "$ep"
    printf -v "dport_$name" '%s' "$dp"
}

# ---- 1. right credentials -----------------------------------------------------------------
start_set ok adtrack "$app_pw"
wait_for 20 'test "$(code $cport_ok)" = 200' || fail "coredata not ready with the right credentials"
wait_for 20 'curl -s "http://127.0.0.1:$cport_ok/readyz" | grep -q "\"redis\" : \"up\""' || fail "coredata: redis not up"
wait_for 30 'test "$(code $eport_ok)" = 200' || fail "enricher not ready with the right credentials: $(curl -s "http://127.0.0.1:$eport_ok/readyz")"
wait_for 20 'test "$(code $dport_ok)" = 200' || fail "dashboard not ready with the right credentials"
camp='{"advertiser":"adv-acme","advertiser_name":"Acme","name":"Redis ACL","status":"active","start":"2020-01-01T00:00:00Z","end":"2099-01-01T00:00:00Z","budget_micros":1000000,"pricing":"cpm","price_micros":2500,"publishers":["pub-r"],"destinations":["https://example.com/"]}'
curl -sf -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' --data "$camp" \
    "http://127.0.0.1:$cport_ok/v1/campaigns/camp-r" >/dev/null || fail "PUT campaign"
wait_for 10 'test "$(rc HGET adtrack:campaign:camp-r version)" = 1' || fail "coredata did not write the campaign to Redis"
snap() { curl -sf -H "Authorization: Bearer $dash_token" "http://127.0.0.1:$dport_ok/api/snapshot"; }
wait_for 10 'snap | grep -q "Redis ACL"' || fail "the dashboard does not show the campaign"

# Redis restarts (empty: no persistence here): every service authenticates again on its own.
t0=$(now_ms)
{ kill -9 "$redis_pid" && wait "$redis_pid"; } 2>/dev/null || true
wait_for 10 'test "$(code $dport_ok)" = 503' || fail "dashboard stayed ready with Redis gone"
start_redis
wait_for 20 'test "$(code $dport_ok)" = 200' || fail "dashboard did not reconnect (AUTH) after the restart"
# coredata's fan-out notices the lost connection at its next write (an idle fan-out does not
# probe Redis): one more change, then the reconnect (with AUTH) and the resync.
curl -sf -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
    --data "${camp/Redis ACL/Redis ACL 2}" "http://127.0.0.1:$cport_ok/v1/campaigns/camp-r" >/dev/null || fail "second PUT"
wait_for 20 'test "$(rc HGET adtrack:campaign:camp-r version)" = 2' || fail "coredata did not reconnect (AUTH) and resync"
wait_for 30 'test "$(code $eport_ok)" = 200' || fail "enricher did not reconnect (AUTH) after the restart"
echo "all three authenticated again $(($(now_ms) - t0)) ms after Redis was killed"

# ---- 2. a wrong password --------------------------------------------------------------------
start_set bad adtrack "$wrong_pw"
for svc in coredata enricher dashboard; do
    wait_for 20 "grep -q '\"level\":\"error\".*WRONGPASS' '$tmp/$svc-bad.log'" ||
        fail "$svc: no error-level log line with WRONGPASS for a wrong password"
done
for p in "$cport_bad" "$eport_bad" "$dport_bad"; do
    [ "$(code "$p")" = 503 ] || fail "a service with a wrong Redis password is ready (port $p)"
done
curl -s "http://127.0.0.1:$cport_bad/readyz" | grep -q "redis refused our credentials" || fail "coredata /readyz does not say why"
curl -s "http://127.0.0.1:$eport_bad/readyz" | grep -q "redis refused our credentials" || fail "enricher /readyz does not say why"
sleep 1 # a few more retries: still unready, never a silent success
for p in "$cport_bad" "$eport_bad" "$dport_bad"; do
    [ "$(code "$p")" = 503 ] || fail "a service with a wrong Redis password turned ready (port $p)"
done
grep -qF "$wrong_pw" "$tmp"/*-bad.log && fail "the wrong password is in a log"
grep -h '"level":"error"' "$tmp/enricher-bad.log" | head -n 1

# ---- 3. users without a command the service needs ------------------------------------------
start_set noeval noeval "$noeval_pw"
start_set nopub nopub "$nopub_pw"
wait_for 20 "grep -q '\"level\":\"error\".*may not run EVALSHA' '$tmp/coredata-noeval.log'" ||
    fail "coredata: no error naming EVALSHA for a user without it"
wait_for 20 "grep -q '\"level\":\"error\".*may not run PUBLISH' '$tmp/enricher-nopub.log'" ||
    fail "enricher: no error naming PUBLISH for a user without it"
[ "$(code "$cport_noeval")" = 503 ] || fail "coredata without EVALSHA is ready"
[ "$(code "$eport_nopub")" = 503 ] || fail "enricher without PUBLISH is ready"
wait_for 20 'test "$(code $dport_nopub)" = 200' || fail "the dashboard needs no PUBLISH, yet is not ready with that user"
grep -h 'may not run' "$tmp/coredata-noeval.log" "$tmp/enricher-nopub.log" | head -n 2
# The probe ran nothing: the user that may not PUBLISH published nothing, and no probe key exists.
[ -z "$(rc --scan --pattern 'adtrack:*acl-probe*')" ] || fail "the ACL probe left keys behind"
echo "PASS"
