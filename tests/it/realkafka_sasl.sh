#!/usr/bin/env bash
# LABELS: realkafka
# Kafka over SASL_SSL (docs/SECURITY.md, "Kafka"), against a real Apache Kafka 4.4.0 node
# whose SASL_SSL listener this test has scripts/kafka.sh configure (--sasl-ssl: a CA and a
# broker certificate made with openssl, a PLAIN user and a SCRAM-SHA-512 user); the services
# see only that listener, and every password comes from a 0600 file.
#   1. SASL/PLAIN over TLS (Confluent Cloud's setting): the collector and the enricher are
#      ready, 40 pixels are answered 2xx, produced over TLS, consumed by the enricher's group
#      and stored (all 40 land in its file sink: unknown campaigns go to rejected-*.jsonl
#      through the rejected-topic producer, also over SASL_SSL); coredata produces a change
#      to adtrack.coredata.changes, read back with kcat over SASL_SSL.
#   2. SASL/SCRAM-SHA-512 over TLS (MSK's setting): with librdkafka >= 2.6.1 the collector is
#      ready. With an older librdkafka (Debian 12's 2.0.2) Kafka 4.x refuses its SCRAM proof
#      (librdkafka#4895, fixed in 2.6.1): then the test checks that this shows as it should,
#      an error-level log line and /readyz 503 naming the refusal, never a healthy-looking
#      retry loop.
#   3. a wrong password: collector and enricher log an error and stay 503 ("kafka refused our
#      credentials"); the collector keeps its 2xx promise through the spool meanwhile.
#   4. an untrusted CA (the brokers' certificate is signed by another CA): "certificate verify
#      failed" at error level, /readyz 503.
#   5. no password from the files is in any log, /metrics or command line.
set -euo pipefail
source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/infra_it.sh"
bin=${ADTRACK_BIN_DIR:?}
for t in kcat redis-server; do command -v "$t" >/dev/null || { echo "skipped: no $t"; exit 77; }; done
infra_require kafka
tmp=$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/realkafka-sasl.XXXXXX")
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
        sleep 0.2
    done
}
code() { curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/readyz"; }
secret_file() { (umask 077 && printf '%s\n' "$2" > "$tmp/$1"); echo "$tmp/$1"; }

t0=$(now_ms)
infra_kafka_start 1 --sasl-ssl
SB=$(cat "$KAFKA_DIR/sasl_ssl.bootstrap")
CA=$KAFKA_DIR/tls/ca.pem
OTHER_CA=$KAFKA_DIR/tls/other-ca.pem
plain_pw_file=$KAFKA_DIR/sasl/plain.password
scram_pw_file=$KAFKA_DIR/sasl/scram.password
wrong_pw_file=$(secret_file wrong.password "wrong-$(head -c 12 /dev/urandom | base64 | tr '+/' '-_')")
echo "cluster up in $(($(now_ms) - t0)) ms; SASL_SSL listener $SB"

rport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >/dev/null 2>&1 &
pids+=($!)
wait_for 10 'redis-cli -p "$rport" ping' || fail "redis-server did not start"

# kafka_env MECHANISM USER PASSWORD_FILE CA: the variables of one client's Kafka security.
kafka_env() {
    echo "ADTRACK_BROKERS=$SB ADTRACK_KAFKA_SECURITY_PROTOCOL=sasl_ssl ADTRACK_KAFKA_SASL_MECHANISM=$1" \
        "ADTRACK_KAFKA_SASL_USERNAME=$2 ADTRACK_KAFKA_SASL_PASSWORD_FILE=$3 ADTRACK_KAFKA_SSL_CA=$4"
}
# start_collector NAME ENV...: sets cport_NAME.
start_collector() {
    local name=$1 p
    shift
    p=$(port)
    env "$@" "$bin/adtrack-collector" --listen "127.0.0.1:$p" --threads 1 --spool-dir "$tmp/spool-$name" \
        --kafka-timeout-ms 10000 >/dev/null 2>"$tmp/collector-$name.log" &
    pids+=($!)
    printf -v "cport_$name" '%s' "$p"
}
start_enricher() {
    local name=$1 p
    shift
    p=$(port)
    env "$@" "$bin/adtrack-enricher" --listen "127.0.0.1:$p" --redis "127.0.0.1:$rport" --group "g-$name" \
        --data-dir "$tmp/sink-$name" >/dev/null 2>"$tmp/enricher-$name.log" &
    pids+=($!)
    printf -v "eport_$name" '%s' "$p"
}
# kcat over SASL_SSL with PLAIN (a test tool: the password on its command line is the test's)
kc=(kcat -b "$SB" -X security.protocol=SASL_SSL -X sasl.mechanism=PLAIN -X sasl.username=adtrack-plain
    -X "sasl.password=$(cat "$plain_pw_file")" -X "ssl.ca.location=$CA")

# ---- 1. PLAIN over TLS ------------------------------------------------------------------------
read -r -a plain_env <<< "$(kafka_env PLAIN adtrack-plain "$plain_pw_file" "$CA")"
start_collector plain "${plain_env[@]}"
start_enricher plain "${plain_env[@]}"
wait_for 60 'test "$(code $cport_plain)" = 200' || fail "collector not ready over SASL_SSL/PLAIN: $(curl -s "http://127.0.0.1:$cport_plain/readyz")"
wait_for 60 'test "$(code $eport_plain)" = 200' || fail "enricher not ready over SASL_SSL/PLAIN: $(curl -s "http://127.0.0.1:$eport_plain/readyz")"
UA='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'
for i in $(seq 1 40); do
    c=$(curl -s -o /dev/null -w '%{http_code}' -A "$UA" "http://127.0.0.1:$cport_plain/t.gif?e=imp&c=camp-sasl&p=pub-sasl&cb=$i")
    [ "$c" = 200 ] || fail "pixel $i answered $c"
done
grep -q '"spooled"\|spooling' "$tmp/collector-plain.log" && fail "the collector spooled: Kafka over SASL_SSL did not take the events"
stored() { cat "$tmp"/sink-plain/*.jsonl 2>/dev/null | grep -c 'camp-sasl' || true; }
wait_for 60 'test "$(stored)" -ge 40' || fail "the enricher stored $(stored) of 40 events"
n=$(timeout 60 "${kc[@]}" -C -q -t adtrack.events.raw -o beginning -e | grep -c camp-sasl || true)
[ "$n" -eq 40 ] || fail "kcat over SASL_SSL reads $n of 40 events in adtrack.events.raw"
echo "PLAIN over TLS: 40 pixels produced, consumed and stored"

admin_file=$(secret_file admin.token "$(head -c 24 /dev/urandom | base64 | tr '+/' '-_')")
cdport=$(port)
env "${plain_env[@]}" ADTRACK_ADMIN_TOKEN_FILE="$admin_file" "$bin/adtrack-coredata" --listen "127.0.0.1:$cdport" \
    --data-dir "$tmp/coredata" --redis "127.0.0.1:$rport" >/dev/null 2>"$tmp/coredata-plain.log" &
pids+=($!)
wait_for 30 'curl -sf "http://127.0.0.1:$cdport/healthz"' || fail "coredata did not start"
curl -sf -X PUT -H "Authorization: Bearer $(cat "$admin_file")" -H 'Content-Type: application/json' \
    --data '{"name":"SASL pub","domain":"sasl.example","status":"active"}' \
    "http://127.0.0.1:$cdport/v1/publishers/pub-sasl" >/dev/null || fail "PUT publisher"
wait_for 60 '[ "$(timeout 20 "${kc[@]}" -C -q -t adtrack.coredata.changes -o beginning -e | grep -c "pub-sasl")" -ge 1 ]' ||
    fail "coredata's change did not reach adtrack.coredata.changes over SASL_SSL"
[ "$(code "$cdport")" = 200 ] || fail "coredata not ready over SASL_SSL/PLAIN"
echo "coredata produced its change over SASL_SSL"

# ---- 2. SCRAM-SHA-512 over TLS -------------------------------------------------------------
read -r -a scram_env <<< "$(kafka_env SCRAM-SHA-512 adtrack-scram "$scram_pw_file" "$CA")"
start_collector scram "${scram_env[@]}"
rdver=$(python3 - <<'PY'
import ctypes
v = ctypes.CDLL("librdkafka.so.1").rd_kafka_version()
print("%d.%d.%d %d" % (v >> 24, (v >> 16) & 255, (v >> 8) & 255, 1 if v >= 0x020601ff else 0))
PY
)
if [ "${rdver##* }" = 1 ]; then
    wait_for 60 'test "$(code $cport_scram)" = 200' || fail "collector not ready over SASL_SSL/SCRAM-SHA-512 (librdkafka ${rdver% *})"
    echo "SCRAM-SHA-512 over TLS works (librdkafka ${rdver% *})"
else
    wait_for 30 "grep -q '\"level\":\"error\".*kafka refused our credentials.*SCRAM-SHA-512' '$tmp/collector-scram.log'" ||
        fail "librdkafka ${rdver% *} against Kafka 4: the refused SCRAM exchange is not logged as an error"
    curl -s "http://127.0.0.1:$cport_scram/readyz" | grep -q "kafka refused our credentials" ||
        fail "SCRAM refused, yet /readyz does not say so: $(curl -s "http://127.0.0.1:$cport_scram/readyz")"
    echo "SCRAM-SHA-512: librdkafka ${rdver% *} is refused by Kafka 4.x (librdkafka#4895, fixed in 2.6.1), and says so:"
    grep -m 1 'kafka refused' "$tmp/collector-scram.log" | cut -c1-300
fi

# ---- 3. a wrong password ----------------------------------------------------------------------
read -r -a wrong_env <<< "$(kafka_env PLAIN adtrack-plain "$wrong_pw_file" "$CA")"
start_collector wrong "${wrong_env[@]}"
start_enricher wrong "${wrong_env[@]}"
for svc in collector enricher; do
    wait_for 30 "grep -q '\"level\":\"error\".*kafka refused our credentials.*Authentication failed' '$tmp/$svc-wrong.log'" ||
        fail "$svc: a wrong SASL password is not logged as an error"
done
sleep 2 # librdkafka keeps retrying: it must not turn ready meanwhile
for p in "$cport_wrong" "$eport_wrong"; do
    curl -s "http://127.0.0.1:$p/readyz" | grep -q "kafka refused our credentials" ||
        fail "wrong password, yet /readyz of port $p says: $(curl -s "http://127.0.0.1:$p/readyz")"
    [ "$(code "$p")" = 503 ] || fail "a service with a wrong Kafka password is ready (port $p)"
done
c=$(curl -s -o /dev/null -w '%{http_code}' -A "$UA" "http://127.0.0.1:$cport_wrong/t.gif?e=imp&c=camp-sasl&p=pub-sasl")
[ "$c" = 200 ] || fail "the unready collector broke its promise: pixel answered $c (expected 200 from the spool)"
grep -m 1 'kafka refused' "$tmp/enricher-wrong.log" | cut -c1-300

# ---- 4. an untrusted CA -----------------------------------------------------------------------
read -r -a untrusted_env <<< "$(kafka_env PLAIN adtrack-plain "$plain_pw_file" "$OTHER_CA")"
start_collector untrusted "${untrusted_env[@]}"
wait_for 30 "grep -q '\"level\":\"error\".*certificate verify failed' '$tmp/collector-untrusted.log'" ||
    fail "an untrusted broker certificate is not logged as an error"
sleep 1
[ "$(code "$cport_untrusted")" = 503 ] || fail "the collector is ready with a broker it cannot verify"
curl -s "http://127.0.0.1:$cport_untrusted/readyz" | grep -q "kafka refused our credentials or certificate" ||
    fail "untrusted CA, yet /readyz says: $(curl -s "http://127.0.0.1:$cport_untrusted/readyz")"
grep -m 1 'certificate verify failed' "$tmp/collector-untrusted.log" | cut -c1-300

# ---- 5. no password anywhere it could leak ---------------------------------------------------
for f in "$plain_pw_file" "$scram_pw_file" "$wrong_pw_file" "$admin_file"; do
    s=$(cat "$f")
    grep -rqF "$s" "$tmp"/*.log && fail "a secret from $(basename "$f") is in a log"
    for p in "$cport_plain" "$eport_plain" "$cdport" "$cport_wrong"; do
        curl -s "http://127.0.0.1:$p/metrics" | grep -qF "$s" && fail "a secret is in /metrics of port $p"
    done
    for p in "${pids[@]}"; do
        [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' < "/proc/$p/cmdline" | grep -qF "$s" && fail "a secret is on the command line of pid $p"
    done
done
echo "PASS ($(($(now_ms) - t0)) ms)"
