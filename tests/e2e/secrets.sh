#!/usr/bin/env bash
# LABELS: realkafka;ferretdb;redis
# No secret in argv, logs or /metrics (docs/SECURITY.md), over the whole pipeline wired as
# in production: real Kafka 4.4.0 over SASL_SSL (PLAIN, TLS with a test CA), Redis with ACL
# users (default user off), FerretDB over TLS with a user and password in the URI. Every
# service logs at debug level, the most it can say. Secrets come from files (0600) or the
# environment, never from the command line:
#   coredata   admin token (file), read token (env), MongoDB URI (file), Redis password
#              (file), Kafka password (file)
#   enricher   MongoDB URI (env), Redis password (file), Kafka password (file)
#   collector  click key (file), Kafka password (file)
#   dashboard  access token (env), Redis password (file)
#   adtrack    the CLI seeds the demo data with --token-file
# The pipeline works (a pixel and a signed click of a seeded campaign are stored enriched;
# the dashboard shows them; reads with the read token work, writes with it are refused).
# Then every log, every /metrics, /readyz and the dashboard's snapshot are searched for each
# secret (and for a URI password's percent-encoded form), and /proc/<pid>/cmdline of every
# process: none may hold one. Last, a secret given on the command line anyway: the service
# warns and overwrites it in its argv, so /proc/<pid>/cmdline no longer shows it.
set -euo pipefail
source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/infra_it.sh"
bin=${ADTRACK_BIN_DIR:?}
for t in redis-server redis-cli openssl; do command -v "$t" >/dev/null || { echo "skipped: no $t"; exit 77; }; done
infra_require kafka ferretdb
tmp=$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/secrets.XXXXXX")
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
rand() { head -c 24 /dev/urandom | base64 | tr '+/' '-_'; }
secret_file() { (umask 077 && printf '%s\n' "$2" > "$tmp/$1"); echo "$tmp/$1"; }
t0=$(now_ms)

# ---- the servers -----------------------------------------------------------------------------
infra_kafka_start 1 --sasl-ssl
infra_ferretdb_start --tls
SB=$(cat "$KAFKA_DIR/sasl_ssl.bootstrap")
kafka_pw_file=$KAFKA_DIR/sasl/plain.password
kafka_pw=$(cat "$kafka_pw_file")

admin_pw=$(rand) redis_pw=$(rand)
rport=$(port)
cat > "$tmp/redis.conf" <<EOF
port $rport
bind 127.0.0.1
save ""
appendonly no
dir $tmp
user default off
user admin on >$admin_pw ~* &* +@all
user adtrack on >$redis_pw ~adtrack:* &adtrack:* +@all -@dangerous
EOF
chmod 600 "$tmp/redis.conf"
redis-server "$tmp/redis.conf" >"$tmp/redis-server.log" 2>&1 &
pids+=($!)
wait_for 10 'redis-cli -p "$rport" --user admin --pass "$admin_pw" --no-auth-warning ping | grep -q PONG' ||
    fail "redis-server did not start"

tls_uri=$(cat "$FERRETDB_DIR/tls_uri")
hostport=${tls_uri#mongodb://}
hostport=${hostport%%/*}
mongo_pw="m0ngo@$(rand)"
mongo_pw_enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$mongo_pw")
mongo_uri="mongodb://adtrack:$mongo_pw_enc@$hostport/?tls=true&tlsCAFile=$FERRETDB_DIR/tls/ca.pem&authMechanism=PLAIN&authSource=%24external&w=1"

admin_token=$(rand) read_token=$(rand) click_key=$(rand)$(rand) dash_token=$(rand)
admin_file=$(secret_file admin.token "$admin_token")
click_file=$(secret_file click.key "$click_key")
mongo_file=$(secret_file mongo.uri "$mongo_uri")
redis_pw_file=$(secret_file redis.password "$redis_pw")
secrets=("$admin_token" "$read_token" "$click_key" "$dash_token" "$redis_pw" "$kafka_pw" "$mongo_pw" "$mongo_pw_enc"
    "$admin_pw")
echo "servers up in $(($(now_ms) - t0)) ms"

# ---- the services: secrets from files and the environment only ----------------------------
common=(ADTRACK_LOG_LEVEL=debug ADTRACK_BROKERS="$SB" ADTRACK_KAFKA_SECURITY_PROTOCOL=sasl_ssl
    ADTRACK_KAFKA_SASL_MECHANISM=PLAIN ADTRACK_KAFKA_SASL_USERNAME=adtrack-plain
    ADTRACK_KAFKA_SASL_PASSWORD_FILE="$kafka_pw_file" ADTRACK_KAFKA_SSL_CA="$KAFKA_DIR/tls/ca.pem")
redis_env=(ADTRACK_REDIS="redis://adtrack@127.0.0.1:$rport/0" ADTRACK_REDIS_PASSWORD_FILE="$redis_pw_file")
cdport=$(port) eport=$(port) colport=$(port) dport=$(port)
env "${common[@]}" "${redis_env[@]}" ADTRACK_ADMIN_TOKEN_FILE="$admin_file" ADTRACK_READ_TOKEN="$read_token" \
    ADTRACK_MONGO_FILE="$mongo_file" ADTRACK_MONGO_W=1 \
    "$bin/adtrack-coredata" --listen "127.0.0.1:$cdport" >/dev/null 2>"$tmp/coredata.log" &
pids+=($!)
env "${common[@]}" "${redis_env[@]}" ADTRACK_MONGO="$mongo_uri" ADTRACK_MONGO_W=1 \
    "$bin/adtrack-enricher" --listen "127.0.0.1:$eport" --group g-secrets >/dev/null 2>"$tmp/enricher.log" &
pids+=($!)
env "${common[@]}" ADTRACK_CLICK_KEY_FILE="$click_file" \
    "$bin/adtrack-collector" --listen "127.0.0.1:$colport" --threads 1 --spool-dir "$tmp/spool" \
    >/dev/null 2>"$tmp/collector.log" &
pids+=($!)
env ADTRACK_LOG_LEVEL=debug "${redis_env[@]}" ADTRACK_AUTH_TOKEN="$dash_token" \
    "$bin/adtrack-dashboard" --listen "127.0.0.1:$dport" --poll-ms 250 \
    --scrape "collector=http://127.0.0.1:$colport/metrics" --scrape "enricher=http://127.0.0.1:$eport/metrics" \
    >/dev/null 2>"$tmp/dashboard.log" &
pids+=($!)
for p in "$cdport" "$eport" "$colport" "$dport"; do
    wait_for 60 "test \"\$(code $p)\" = 200" || fail "port $p not ready: $(curl -s "http://127.0.0.1:$p/readyz")"
done
echo "pipeline ready in $(($(now_ms) - t0)) ms"

# ---- it works -------------------------------------------------------------------------------
"$bin/adtrack" --api "http://127.0.0.1:$cdport" --token-file "$admin_file" seed demo >"$tmp/seed.out" 2>"$tmp/cli.log" ||
    fail "adtrack seed demo with --token-file"
grep -q '"ok":false' "$tmp/seed.out" && fail "seed demo: a write failed: $(cat "$tmp/seed.out")"
ADTRACK_TOKEN="$read_token" "$bin/adtrack" --api "http://127.0.0.1:$cdport" campaign get camp-acme-spring \
    >/dev/null 2>>"$tmp/cli.log" || fail "reading with the read token"
if ADTRACK_TOKEN="$read_token" "$bin/adtrack" --api "http://127.0.0.1:$cdport" campaign pause camp-acme-spring \
    >/dev/null 2>>"$tmp/cli.log"; then
    fail "the read token could pause a campaign"
fi
UA='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'
base="http://127.0.0.1:$colport"
wait_for 20 'test "$(curl -s -o /dev/null -w "%{http_code}" -A "$UA" "$base/t.gif?e=imp&c=camp-acme-spring&p=pub-dailynews&pl=top")" = 200' ||
    fail "pixel not answered 200"
dest=https://acme.example/spring
sig=$(printf '%s' "$dest" | openssl dgst -sha256 -hmac "$click_key" -binary | base64 | tr '+/' '-_' | tr -d '=')
dest_enc=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$dest")
loc=$(curl -s -o /dev/null -w '%{http_code} %{redirect_url}' -A "$UA" \
    "$base/c?c=camp-acme-spring&p=pub-dailynews&d=$dest_enc&sig=$sig")
# the destination with the click id appended (docs/REPORTS.md "Attribution")
[[ $loc =~ ^302\ ${dest}\?adt_clid=[0-9a-f-]{36}\.camp-acme-spring$ ]] ||
    fail "the signed click (key from a file) was not redirected: $loc"
inserted() { curl -s "http://127.0.0.1:$eport/metrics" | awk '/^adtrack_enricher_sink_documents_total\{result="inserted"\}/ {print $2}'; }
wait_for 60 'test "$(inserted)" -ge 2' || fail "the enricher stored $(inserted) of 2 events"
snap() { curl -sf -H "Authorization: Bearer $dash_token" "http://127.0.0.1:$dport/api/snapshot"; }
wait_for 20 'snap | python3 -c "import json,sys; s=json.load(sys.stdin); c=[x for x in s[\"campaigns\"] if x[\"id\"]==\"camp-acme-spring\"]; sys.exit(0 if c and c[0][\"imp\"]>=1 and c[0][\"click\"]>=1 else 1)"' ||
    fail "the dashboard does not show the impression and the click"
echo "pipeline works: pixel and signed click stored and shown ($(($(now_ms) - t0)) ms)"

# ---- no secret anywhere ----------------------------------------------------------------------
# Every output a secret could leak to: the logs (ours, FerretDB's, Redis'), every /metrics and
# /readyz, the dashboard's snapshot (it holds scraped metrics), and the command lines.
{
    for p in "$cdport" "$eport" "$colport" "$dport"; do
        curl -s "http://127.0.0.1:$p/metrics"
        curl -s "http://127.0.0.1:$p/readyz"
    done
    snap
} > "$tmp/outputs.txt"
logs=("$tmp"/*.log "$FERRETDB_DIR"/*.log)
# Control: the search finds a secret where one is (Redis' own config file holds two).
grep -qF -- "$redis_pw" "$tmp/redis.conf" || fail "control: the search misses a secret that is there"
nlines=$(cat "${logs[@]}" | wc -l)
for s in "${secrets[@]}"; do
    for f in "${logs[@]}" "$tmp/outputs.txt" "$tmp/seed.out"; do
        grep -qF -- "$s" "$f" && fail "a secret (${#s} bytes) is in $f: $(grep -F -- "$s" "$f" | head -n 1 | cut -c1-200)"
    done
    for p in "${pids[@]}" $(pgrep -f "$KAFKA_DIR" || true); do
        [ -r "/proc/$p/cmdline" ] && tr '\0' ' ' < "/proc/$p/cmdline" | grep -qF -- "$s" &&
            fail "a secret is on the command line of pid $p: $(tr '\0' ' ' < "/proc/$p/cmdline" | cut -c1-120)"
    done
done
echo "no secret in $nlines log lines, $(wc -c < "$tmp/outputs.txt") bytes of /metrics, /readyz and snapshot, or any command line"

# ---- a secret on the command line anyway: warned about, then overwritten in argv -------------
aport=$(port)
env "${common[@]}" "${redis_env[@]}" ADTRACK_MONGO_FILE="$mongo_file" \
    "$bin/adtrack-coredata" --listen "127.0.0.1:$aport" --admin-token "$admin_token" >/dev/null 2>"$tmp/coredata-argv.log" &
argv_pid=$!
pids+=($argv_pid)
wait_for 30 'curl -sf "http://127.0.0.1:$aport/healthz"' || fail "coredata with --admin-token on argv did not start"
grep -q '"level":"warn".*--admin-token was given on the command line' "$tmp/coredata-argv.log" ||
    fail "no warning about a secret on the command line"
tr '\0' ' ' < "/proc/$argv_pid/cmdline" | grep -qF -- "$admin_token" && fail "the secret is still in /proc/$argv_pid/cmdline"
tr '\0' ' ' < "/proc/$argv_pid/cmdline" | grep -q -- '--admin-token \*\*\*\*' || fail "argv was not overwritten: $(tr '\0' ' ' < "/proc/$argv_pid/cmdline")"
curl -sf -H "Authorization: Bearer $admin_token" "http://127.0.0.1:$aport/v1/campaigns" >/dev/null ||
    fail "the token given on argv does not work"
echo "PASS ($(($(now_ms) - t0)) ms)"
