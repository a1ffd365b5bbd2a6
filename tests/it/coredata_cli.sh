#!/usr/bin/env bash
# The adtrack CLI against a real adtrack-coredata (file store) and redis-server:
# seed demo, get/list/pause/budget, exit statuses and error output. Kafka is not needed
# (the changes topic is simply unreachable here; the API does not wait for it).
set -euo pipefail
bin=${ADTRACK_BIN_DIR:?}
tmp=$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/coredata-cli.XXXXXX")
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

rport=$(port)
redis-server --port "$rport" --bind 127.0.0.1 --save '' --appendonly no --dir "$tmp" >/dev/null 2>&1 &
pids+=($!)
aport=$(port)
"$bin/adtrack-coredata" --listen "127.0.0.1:$aport" --admin-token cli-admin --read-token cli-read \
    --data-dir "$tmp/data" --redis "127.0.0.1:$rport" --brokers 127.0.0.1:9 --feed false --log-level error \
    2>"$tmp/cd.err" &
pids+=($!)
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$aport/healthz" >/dev/null 2>&1 && break; sleep 0.1; done

export ADTRACK_API="http://127.0.0.1:$aport" ADTRACK_TOKEN=cli-admin
a="$bin/adtrack"

out=$("$a" seed demo) || fail "seed demo exited $?"
echo "$out" | grep -q '"camp-acme-spring","ok":true' || fail "seed demo output: $out"
[ "$(echo "$out" | grep -o '"ok":true' | wc -l)" -eq 11 ] || fail "seed demo: not all 11 entities ok: $out"

"$a" campaign get camp-globex-summer | grep '"advertiser" : "adv-globex"' >/dev/null || fail "campaign get"
n=$("$a" campaign list --limit 2 --all | grep -o '"id" : "camp-' | wc -l)
[ "$n" -eq 5 ] || fail "campaign list --all found $n campaigns, want 5"
"$a" publisher list | grep 'pub-clickfarm' >/dev/null || fail "publisher list"

"$a" campaign pause camp-acme-spring | grep '"status" : "paused"' >/dev/null || fail "pause"
"$a" campaign budget camp-acme-spring --topup 1000 | grep '"budget_micros" : 5000001000' >/dev/null || fail "budget topup"

# a put from stdin, then a stale --if-match: exit 1 with the API's message
echo '{"id":"pub-cli","name":"CLI News","domain":"cli.example"}' | "$a" publisher put - >/dev/null || fail "put -"
set +e
err=$("$a" publisher put - --if-match 1 2>&1 >/dev/null <<<'{"id":"pub-cli","name":"x","domain":"cli.example"}')
rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "HTTP 409" || fail "stale if-match: rc $rc, $err"
# validation problems are listed one per line
err=$("$a" publisher put - 2>&1 >/dev/null <<<'{"id":"pub-bad","name":"","domain":"-x"}')
rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "name: expected" && echo "$err" | grep -q "domain: expected" ||
    fail "validation: rc $rc, $err"
# read-only token: 403
err=$("$a" --token cli-read campaign resume camp-acme-spring 2>&1)
rc=$?
[ $rc -eq 1 ] && echo "$err" | grep -q "HTTP 403" || fail "read token: rc $rc, $err"
# unreachable API: 3; usage: 2
"$a" --api http://127.0.0.1:9 campaign get x >/dev/null 2>&1
[ $? -eq 3 ] || fail "unreachable API should exit 3"
"$a" campaign budget camp-acme-spring >/dev/null 2>&1
[ $? -eq 2 ] || fail "budget without amount should exit 2"
"$a" campaign get nope >/dev/null 2>&1
[ $? -eq 1 ] || fail "unknown campaign should exit 1"
set -e
echo "adtrack CLI ok"
