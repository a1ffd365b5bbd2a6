#!/usr/bin/env bash
# LABELS: redis
# Reaching a TLS-only Redis (ElastiCache with in-transit encryption, Redis Cloud, a
# redis-server with tls-port and port 0) through a local TLS tunnel, the documented way
# (docs/SECURITY.md, "Redis over TLS"): hiredis 0.14 speaks no TLS, so HAProxy (Debian's,
# 2.6) listens on 127.0.0.1 in plain TCP and opens a verified TLS connection to Redis,
# presenting a client certificate (tls-auth-clients yes). Checked:
#   - the Redis has no plaintext port, and refuses a TLS client without a certificate;
#   - coredata and the dashboard, pointed at the tunnel with an ACL user and a password
#     file, work: a PUT lands in Redis, the dashboard is ready and shows it;
#   - a tunnel that does not trust Redis' certificate (another CA) carries nothing: the
#     dashboard stays unready, HAProxy logs failed server connections and Redis the
#     tunnel's "unknown ca" alert.
set -euo pipefail
bin=${ADTRACK_BIN_DIR:?}
src=${ADTRACK_SOURCE_DIR:?}
for t in redis-server redis-cli haproxy openssl; do
    command -v "$t" >/dev/null || { echo "skipped: no $t"; exit 77; }
done
# shellcheck source=scripts/infra-lib.sh
source "$src/scripts/infra-lib.sh"
tmp=$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/redis-tls.XXXXXX")
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

infra_make_certs "$tmp/pki" redis
infra_make_certs "$tmp/pki" client
pki=$tmp/pki
admin_pw=$(rand) app_pw=$(rand) token=$(rand) dash_token=$(rand)
tls_port=$(port)
cat > "$tmp/redis.conf" <<EOF
port 0
tls-port $tls_port
bind 127.0.0.1
tls-cert-file $pki/redis.pem
tls-key-file $pki/redis.key
tls-ca-cert-file $pki/ca.pem
tls-auth-clients yes
save ""
appendonly no
dir $tmp
user default off
user admin on >$admin_pw ~* &* +@all
user adtrack on >$app_pw ~adtrack:* &adtrack:* +@all
EOF
chmod 600 "$tmp/redis.conf"
redis-server "$tmp/redis.conf" >"$tmp/redis.log" 2>&1 &
pids+=($!)
rtls() {
    redis-cli -p "$tls_port" --tls --cacert "$pki/ca.pem" --cert "$pki/client.pem" --key "$pki/client.key" \
        --user admin --pass "$admin_pw" --no-auth-warning "$@"
}
wait_for 10 'rtls ping | grep -q PONG' || fail "TLS-only redis-server did not start"
# No certificate, no connection (and there is no plaintext port at all).
if redis-cli -p "$tls_port" --tls --cacert "$pki/ca.pem" --user admin --pass "$admin_pw" --no-auth-warning ping 2>/dev/null |
    grep -q PONG; then
    fail "Redis accepted a TLS client without a certificate"
fi

# start_tunnel NAME CAFILE: HAProxy on a free local port -> TLS to Redis; sets tport.
start_tunnel() {
    tport=$(port)
    cat > "$tmp/haproxy-$1.cfg" <<EOF
global
    log stderr format raw local0 info
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    timeout client 1h
    timeout server 1h
listen redis-tls
    bind 127.0.0.1:$tport
    server redis 127.0.0.1:$tls_port ssl verify required ca-file $2 verifyhost localhost sni str(localhost) crt $pki/client.chain.pem
EOF
    haproxy -c -q -f "$tmp/haproxy-$1.cfg" || fail "haproxy -c rejects the tunnel config"
    haproxy -db -f "$tmp/haproxy-$1.cfg" >"$tmp/haproxy-$1.log" 2>&1 &
    pids+=($!)
    wait_for 10 "(exec 3<>/dev/tcp/127.0.0.1/$tport) 2>/dev/null" || fail "haproxy did not listen"
}

start_tunnel good "$pki/ca.pem"
good=$tport
# Through the tunnel, plain redis-cli (as hiredis would) gets TLS to Redis for free.
redis-cli -p "$good" --user adtrack --pass "$app_pw" --no-auth-warning ping | grep -q PONG || fail "no PONG through the tunnel"

pwfile=$(secret_file redis.password "$app_pw")
admin_file=$(secret_file admin.token "$token")
dash_file=$(secret_file dashboard.token "$dash_token")
cport=$(port) dport=$(port)
ADTRACK_ADMIN_TOKEN_FILE=$admin_file ADTRACK_REDIS_PASSWORD_FILE=$pwfile \
    "$bin/adtrack-coredata" --listen "127.0.0.1:$cport" --data-dir "$tmp/coredata" --redis "redis://adtrack@127.0.0.1:$good" \
    --brokers 127.0.0.1:1 --feed false >/dev/null 2>"$tmp/coredata.log" &
pids+=($!)
ADTRACK_AUTH_TOKEN_FILE=$dash_file ADTRACK_REDIS_PASSWORD_FILE=$pwfile \
    "$bin/adtrack-dashboard" --listen "127.0.0.1:$dport" --redis "redis://adtrack@127.0.0.1:$good" --poll-ms 200 \
    >/dev/null 2>"$tmp/dashboard.log" &
pids+=($!)
wait_for 20 'test "$(code $dport)" = 200' || fail "dashboard not ready through the tunnel"
wait_for 20 'curl -sf "http://127.0.0.1:$cport/healthz"' || fail "coredata did not start"
camp='{"advertiser":"adv-acme","advertiser_name":"Acme","name":"Over TLS","status":"active","start":"2020-01-01T00:00:00Z","end":"2099-01-01T00:00:00Z","budget_micros":1000000,"pricing":"cpm","price_micros":2500,"publishers":["pub-t"],"destinations":["https://example.com/"]}'
curl -sf -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' --data "$camp" \
    "http://127.0.0.1:$cport/v1/campaigns/camp-tls" >/dev/null || fail "PUT campaign"
wait_for 10 'test "$(rtls HGET adtrack:campaign:camp-tls version)" = 1' || fail "the campaign did not reach the TLS-only Redis"
wait_for 10 'curl -sf -H "Authorization: Bearer $dash_token" "http://127.0.0.1:$dport/api/snapshot" | grep -q "Over TLS"' ||
    fail "the dashboard does not show the campaign read over TLS"
echo "coredata and the dashboard work through the TLS tunnel"

# A tunnel that trusts another CA: nothing gets through, the dashboard says unready.
start_tunnel bad "$pki/other-ca.pem"
bad=$tport
dport2=$(port)
ADTRACK_AUTH_TOKEN_FILE=$dash_file ADTRACK_REDIS_PASSWORD_FILE=$pwfile \
    "$bin/adtrack-dashboard" --listen "127.0.0.1:$dport2" --redis "redis://adtrack@127.0.0.1:$bad" --poll-ms 200 \
    >/dev/null 2>"$tmp/dashboard-bad.log" &
pids+=($!)
wait_for 10 "grep -q 'redis poll failed' '$tmp/dashboard-bad.log'" || fail "the dashboard behind an untrusting tunnel logged no failure"
sleep 1
[ "$(code "$dport2")" = 503 ] || fail "the dashboard is ready behind a tunnel that cannot verify Redis"
# HAProxy ends those sessions with "SC" (the server side failed); Redis sees the tunnel's
# "unknown ca" alert: the tunnel refused Redis' certificate.
wait_for 10 "grep -q ' SC ' '$tmp/haproxy-bad.log'" || fail "haproxy logged no failed server connection"
wait_for 10 "grep -q 'unknown ca' '$tmp/redis.log'" || fail "redis did not see the tunnel refuse its certificate"
grep -m 1 'unknown ca' "$tmp/redis.log"
echo "PASS"
