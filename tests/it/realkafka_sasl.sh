#!/usr/bin/env bash
# LABELS: realkafka
# Kafka over SASL_SSL (docs/SECURITY.md, "Kafka"), against a real Apache Kafka 4.4.0 node
# and a real Kafka 3.9.1 node (scripts/kafka.sh --version 3.9.1), whose SASL_SSL listeners
# this test has scripts/kafka.sh configure (--sasl-ssl: a CA and a broker certificate made
# with openssl, a PLAIN user and a SCRAM-SHA-512 user, per cluster); the services see only
# that listener, and every password comes from a 0600 file. Both nodes start side by side.
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
#   2b. SASL/SCRAM-SHA-512 over TLS against Kafka 3.9.1, which accepts librdkafka 2.0.2's SCRAM
#      proof: the collector and the enricher are ready, 20 pixels are answered 2xx and not
#      spooled, kcat (the same librdkafka, SCRAM-SHA-512, the same user and password) reads all
#      20 back from adtrack.events.raw and the enricher's group (over SCRAM too) stores all
#      20; a collector with a wrong SCRAM password is refused by the same broker (error log,
#      503), so the success is the broker checking the proof, not skipping it.
#   3. a wrong password: collector and enricher log an error and stay 503 ("kafka refused our
#      credentials"); the collector keeps its 2xx promise through the spool meanwhile.
#   4. an untrusted CA (the brokers' certificate is signed by another CA): "certificate verify
#      failed" at error level, /readyz 503.
#   5. no password from the files is in any log, /metrics or command line.
set -euo pipefail
source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/infra_it.sh"
bin=${ADTRACK_BIN_DIR:?}
for t in kcat redis-server; do command -v "$t" >/dev/null || { echo "skipped: no $t"; exit 77; }; done
infra_require kafka kafka@3.9.1
tmp=$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/realkafka-sasl.XXXXXX")
pids=()
K39_DIR=""
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    if [ -n "$K39_DIR" ]; then
        bash "$ADTRACK_SOURCE_DIR/scripts/kafka.sh" stop --dir "$K39_DIR" --timeout 15 >/dev/null 2>&1 || true
        rm -rf "$K39_DIR"/node-*/data
    fi
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
# Kafka 3.9.1 for 2b, started in the background meanwhile (its own watchdog: --owner-pid).
K39_DIR=$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/kafka39.XXXXXX")
bash "$ADTRACK_SOURCE_DIR/scripts/kafka.sh" start --dir "$K39_DIR" --nodes 1 --sasl-ssl --version 3.9.1 \
    --owner-pid $$ >"$tmp/kafka39.out" 2>"$tmp/kafka39.err" &
k39_pid=$!
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

# ---- 2b. SCRAM-SHA-512 over TLS against Kafka 3.9.1 -------------------------------------------
wait "$k39_pid" || { cat "$tmp/kafka39.err" >&2; fail "kafka.sh start --version 3.9.1 --sasl-ssl failed"; }
grep -q '^KAFKA_VERSION=3.9.1$' "$K39_DIR/cluster.env" || fail "the second cluster is not Kafka 3.9.1"
grep -o 'ready in [0-9]* ms' "$tmp/kafka39.err" | sed 's/^/Kafka 3.9.1 node (SASL_SSL) /'
SB39=$(cat "$K39_DIR/sasl_ssl.bootstrap")
scram39_pw_file=$K39_DIR/sasl/scram.password
wrong39_pw_file=$(secret_file wrong39.password "wrong-$(head -c 12 /dev/urandom | base64 | tr '+/' '-_')")
kafka39_env() {
    echo "ADTRACK_BROKERS=$SB39 ADTRACK_KAFKA_SECURITY_PROTOCOL=sasl_ssl ADTRACK_KAFKA_SASL_MECHANISM=SCRAM-SHA-512" \
        "ADTRACK_KAFKA_SASL_USERNAME=adtrack-scram ADTRACK_KAFKA_SASL_PASSWORD_FILE=$1 ADTRACK_KAFKA_SSL_CA=$K39_DIR/tls/ca.pem"
}
read -r -a scram39_env <<< "$(kafka39_env "$scram39_pw_file")"
read -r -a wrong39_env <<< "$(kafka39_env "$wrong39_pw_file")"
start_collector scram39 "${scram39_env[@]}"
start_enricher scram39 "${scram39_env[@]}"
start_collector wrong39 "${wrong39_env[@]}"
wait_for 60 'test "$(code $cport_scram39)" = 200' ||
    fail "collector not ready over SASL_SSL/SCRAM-SHA-512 against Kafka 3.9.1 (librdkafka ${rdver% *}): $(curl -s "http://127.0.0.1:$cport_scram39/readyz")"
wait_for 60 'test "$(code $eport_scram39)" = 200' ||
    fail "enricher not ready over SASL_SSL/SCRAM-SHA-512 against Kafka 3.9.1: $(curl -s "http://127.0.0.1:$eport_scram39/readyz")"
for i in $(seq 1 20); do
    c=$(curl -s -o /dev/null -w '%{http_code}' -A "$UA" "http://127.0.0.1:$cport_scram39/t.gif?e=imp&c=camp-scram39&p=pub-sasl&cb=$i")
    [ "$c" = 200 ] || fail "Kafka 3.9.1: pixel $i answered $c"
done
kc39=(kcat -b "$SB39" -X security.protocol=SASL_SSL -X sasl.mechanism=SCRAM-SHA-512 -X sasl.username=adtrack-scram
    -X "sasl.password=$(cat "$scram39_pw_file")" -X "ssl.ca.location=$K39_DIR/tls/ca.pem")
in_kafka39() { timeout 20 "${kc39[@]}" -C -q -t adtrack.events.raw -o beginning -e | grep -c camp-scram39 || true; }
wait_for 30 'test "$(in_kafka39)" -ge 20' || fail "kcat over SASL_SSL/SCRAM reads $(in_kafka39) of 20 events in Kafka 3.9.1's adtrack.events.raw"
n=$(in_kafka39)
[ "$n" -eq 20 ] || fail "Kafka 3.9.1 holds $n events for 20 pixels"
grep -q '"spooled"\|spooling' "$tmp/collector-scram39.log" && fail "the collector spooled: Kafka 3.9.1 over SCRAM did not take the events"
grep -q '"level":"error"' "$tmp/collector-scram39.log" && fail "the SCRAM collector logged an error: $(grep -m 1 '"level":"error"' "$tmp/collector-scram39.log")"
stored39() { cat "$tmp"/sink-scram39/*.jsonl 2>/dev/null | grep -c 'camp-scram39' || true; }
wait_for 60 'test "$(stored39)" -ge 20' || fail "the enricher (SCRAM, Kafka 3.9.1) stored $(stored39) of 20 events"
wait_for 30 "grep -q '\"level\":\"error\".*kafka refused our credentials.*SCRAM-SHA-512' '$tmp/collector-wrong39.log'" ||
    fail "Kafka 3.9.1: a wrong SCRAM password is not logged as an error"
[ "$(code "$cport_wrong39")" = 503 ] || fail "a collector with a wrong SCRAM password is ready (Kafka 3.9.1)"
echo "SCRAM-SHA-512 over TLS works against Kafka 3.9.1 (librdkafka ${rdver% *}): 20 pixels produced, read back with kcat over SCRAM, consumed and stored; a wrong SCRAM password refused:"
grep -m 1 'kafka refused' "$tmp/collector-wrong39.log" | cut -c1-300

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
for f in "$plain_pw_file" "$scram_pw_file" "$wrong_pw_file" "$admin_file" "$scram39_pw_file" "$wrong39_pw_file"; do
    s=$(cat "$f")
    grep -rqF "$s" "$tmp"/*.log && fail "a secret from $(basename "$f") is in a log"
    for p in "$cport_plain" "$eport_plain" "$cdport" "$cport_wrong" "$cport_scram39" "$eport_scram39" "$cport_wrong39"; do
        curl -s "http://127.0.0.1:$p/metrics" | grep -qF "$s" && fail "a secret is in /metrics of port $p"
    done
    for p in "${pids[@]}"; do
        [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' < "/proc/$p/cmdline" | grep -qF "$s" && fail "a secret is on the command line of pid $p"
    done
done
echo "PASS ($(($(now_ms) - t0)) ms)"
