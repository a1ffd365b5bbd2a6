#!/usr/bin/env bash
# LABELS: ferretdb
# MongoDB over TLS with credentials in the URI (docs/SECURITY.md, "MongoDB"), against
# FerretDB 1.24 listening with TLS (scripts/ferretdb.sh --tls: a CA and a server certificate
# made with openssl). The services get only the TLS port, and the URI, with a user and
# password, comes from a 0600 file (--mongo-file / ADTRACK_MONGO_FILE):
#   1. coredata stores a publisher and a campaign over TLS and loads them again after a
#      restart;
#   2. the enricher stores 20 pixels' events over TLS (collector -> devstream -> enricher);
#   3. with a CA that did not sign FerretDB's certificate, the enricher logs an error-level
#      "certificate" failure and /readyz stays 503, naming MongoDB;
#   4. the URI's password is in no log, /metrics or command line.
# FerretDB's SQLite handler accepts any user and password (PLAIN, checked by nobody), so a
# wrong password cannot be shown here; its classification (AuthenticationFailed -> refused
# credentials, not an outage) is covered by tests/it/test_mongo_store.c against mockupdb.
set -euo pipefail
source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/infra_it.sh"
bin=${ADTRACK_BIN_DIR:?}
command -v redis-server >/dev/null || { echo "skipped: no redis-server"; exit 77; }
infra_require ferretdb
tmp=$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/ferretdb-tls.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    infra_cleanup
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
code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz"; }
secret_file() { (umask 077 && printf '%s\n' "$2" > "$tmp/$1"); echo "$tmp/$1"; }

infra_ferretdb_start --tls
tls_uri=$(cat "$FERRETDB_DIR/tls_uri")  # mongodb://127.0.0.1:P/?tls=true&tlsCAFile=.../ca.pem
hostport=${tls_uri#mongodb://}
hostport=${hostport%%/*}
ca=$FERRETDB_DIR/tls/ca.pem
pw="p@ss:$(head -c 12 /dev/urandom | base64 | tr '+/' '-_')"
pw_enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$pw")
uri="mongodb://adtrack:$pw_enc@$hostport/?tls=true&tlsCAFile=$ca&authMechanism=PLAIN&authSource=%24external&w=1"
uri_file=$(secret_file mongo.uri "$uri")
bad_uri_file=$(secret_file mongo-bad.uri "${uri/$ca/$FERRETDB_DIR/tls/other-ca.pem}")
token=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
admin_file=$(secret_file admin.token "$token")
echo "FerretDB TLS listener $hostport"

rport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >/dev/null 2>&1 &
pids+=($!)
wait_for 10 'redis-cli -p "$rport" ping' || fail "redis-server did not start"
"$bin/adtrack-devstream" --partitions 2 >"$tmp/devstream.out" 2>"$tmp/devstream.log" </dev/null &
pids+=($!)
wait_for 10 'test -s "$tmp/devstream.out"' || fail "devstream did not start"
brokers=$(head -n 1 "$tmp/devstream.out")

# ---- 1. coredata's store over TLS --------------------------------------------------------------
start_coredata() {
    cdport=$(port)
    ADTRACK_MONGO_FILE=$uri_file ADTRACK_ADMIN_TOKEN_FILE=$admin_file "$bin/adtrack-coredata" \
        --listen "127.0.0.1:$cdport" --redis "127.0.0.1:$rport" --brokers "$brokers" --mongo-w 1 \
        >/dev/null 2>>"$tmp/coredata.log" &
    cd_pid=$!
    pids+=($cd_pid)
    wait_for 30 'test "$(code $cdport)" = 200' || fail "coredata not ready with MongoDB over TLS"
}
start_coredata
put() {
    curl -sf -X PUT -H "Authorization: Bearer $token" -H 'Content-Type: application/json' --data "$2" \
        "http://127.0.0.1:$cdport/v1/$1" >/dev/null || fail "PUT $1"
}
put publishers/pub-tls '{"name":"TLS pub","domain":"tls.example","status":"active"}'
put campaigns/camp-tls '{"advertiser":"adv-acme","advertiser_name":"Acme","name":"TLS camp","status":"active","start":"2020-01-01T00:00:00Z","end":"2099-01-01T00:00:00Z","budget_micros":100000000,"pricing":"cpm","price_micros":2500,"publishers":["pub-tls"],"destinations":["https://example.com/"]}'
kill "$cd_pid"
wait "$cd_pid" 2>/dev/null || true
start_coredata
grep -q '"msg":"listening".*"store":"mongodb".*"entities":"2"' "$tmp/coredata.log" ||
    fail "coredata did not load its 2 entities back over TLS: $(grep listening "$tmp/coredata.log")"
echo "coredata: stored and loaded over TLS"

# ---- 2. the enricher's sink over TLS -------------------------------------------------------------
eport=$(port) colport=$(port)
ADTRACK_MONGO_FILE=$uri_file "$bin/adtrack-enricher" --listen "127.0.0.1:$eport" --brokers "$brokers" \
    --redis "127.0.0.1:$rport" --mongo-w 1 --group g-tls >/dev/null 2>"$tmp/enricher.log" &
pids+=($!)
"$bin/adtrack-collector" --listen "127.0.0.1:$colport" --brokers "$brokers" --threads 1 --spool-dir "$tmp/spool" \
    >/dev/null 2>"$tmp/collector.log" &
pids+=($!)
wait_for 30 'test "$(code $eport)" = 200' || fail "enricher not ready with MongoDB over TLS: $(curl -s "http://127.0.0.1:$eport/readyz")"
wait_for 30 'test "$(code $colport)" = 200' || fail "collector not ready"
UA='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'
for i in $(seq 1 20); do
    c=$(curl -s -o /dev/null -w '%{http_code}' -A "$UA" "http://127.0.0.1:$colport/t.gif?e=imp&c=camp-tls&p=pub-tls&cb=$i")
    [ "$c" = 200 ] || fail "pixel $i answered $c"
done
inserted() { curl -s "http://127.0.0.1:$eport/metrics" | awk '/^adtrack_enricher_sink_documents_total\{result="inserted"\}/ {print $2}'; }
wait_for 30 'test "$(inserted)" -ge 20' || fail "the enricher stored $(inserted) of 20 events over TLS"
echo "enricher: $(inserted) events stored over TLS"

# ---- 3. a CA that did not sign FerretDB's certificate -----------------------------------------
bport=$(port)
ADTRACK_MONGO_FILE=$bad_uri_file "$bin/adtrack-enricher" --listen "127.0.0.1:$bport" --brokers "$brokers" \
    --redis "127.0.0.1:$rport" --mongo-w 1 --group g-bad >/dev/null 2>"$tmp/enricher-bad.log" &
pids+=($!)
wait_for 30 "grep -q '\"level\":\"error\".*refused our credentials or certificate.*' '$tmp/enricher-bad.log'" ||
    fail "an untrusted MongoDB certificate is not logged as an error"
wait_for 10 'curl -s "http://127.0.0.1:$bport/readyz" | grep -q "mongodb refused our credentials or certificate"' ||
    fail "untrusted MongoDB certificate, yet /readyz says: $(curl -s "http://127.0.0.1:$bport/readyz")"
[ "$(code "$bport")" = 503 ] || fail "the enricher is ready with a MongoDB it cannot verify"
grep -m 1 'refused our credentials or certificate' "$tmp/enricher-bad.log" | cut -c1-300

# ---- 4. the password is nowhere it could leak -------------------------------------------------
for s in "$pw" "$pw_enc" "$token"; do
    grep -qF "$s" "$tmp"/*.log && fail "a secret is in a log"
    for p in "$cdport" "$eport" "$bport"; do
        curl -s "http://127.0.0.1:$p/metrics" | grep -qF "$s" && fail "a secret is in /metrics of port $p"
    done
    for p in "${pids[@]}"; do
        [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' < "/proc/$p/cmdline" | grep -qF "$s" && fail "a secret is on the command line of pid $p"
    done
done
echo "PASS"
