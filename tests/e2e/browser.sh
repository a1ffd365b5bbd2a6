#!/usr/bin/env bash
# Browser end to end: `adtrack up` on free ports, then headless Chromium (Debian's
# /usr/bin/chromium) driven by playwright-core (tests/e2e/browser/demo.test.mjs) loads the
# dashboard and the demo page, scrolls an ad into view, clicks it, and checks that the
# impression, view and click are stored and that the dashboard shows them without a reload,
# and that its history charts (from the hourly rollups through coredata's reports) add up.
# Screenshots and logs are kept in $ADTRACK_TEST_TMP/browser (CI artifacts).
#
# playwright-core comes from the npm registry (tests/e2e/browser/package-lock.json pins it);
# it never downloads a browser. Exit 77 (skipped) only when chromium or node is missing.
set -euo pipefail
bin=${ADTRACK_BIN_DIR:?}
src=${ADTRACK_SOURCE_DIR:?}
chromium=${CHROMIUM:-/usr/bin/chromium}
if [[ ! -x $chromium ]] || ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "SKIP: needs $chromium, node and npm (scripts/install-deps.sh installs them)"
    exit 77
fi
dir=$src/tests/e2e/browser
if [[ ! -d $dir/node_modules/playwright-core ]]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
fi

mkdir -p "${ADTRACK_TEST_TMP:-/tmp}"
out=${ADTRACK_TEST_TMP:-/tmp}/browser
rm -rf "$out"
mkdir -p "$out"
data=$out/data
up_pid=
cleanup() {
    if [[ -n "$up_pid" ]] && kill -0 "$up_pid" 2>/dev/null; then
        kill -TERM "$up_pid" 2>/dev/null || true
        for _ in $(seq 1 300); do kill -0 "$up_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$up_pid" 2>/dev/null || true
    fi
    wait 2>/dev/null || true
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    tail -n 40 "$out/up.err" >&2 || true
    exit 1
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
cport=$(port)
aport=$(port)
dport=$(port)

"$bin/adtrack" up --data-dir "$data" --listen "127.0.0.1:$cport" --admin-listen "127.0.0.1:$aport" \
    --dashboard-listen "127.0.0.1:$dport" --dashboard-arg=--reports-poll-s=5 >"$out/up.out" 2>"$out/up.err" &
up_pid=$!
for _ in $(seq 1 600); do
    grep -q '^adtrack is up' "$out/up.out" 2>/dev/null && break
    kill -0 "$up_pid" 2>/dev/null || fail "adtrack up exited during start-up"
    sleep 0.1
done
grep -q '^adtrack is up' "$out/up.out" || fail "adtrack up printed no banner within 60 s"

DASHBOARD_TOKEN_FILE=$data/dashboard.token \
COLLECTOR_URL=http://127.0.0.1:$cport DASHBOARD_URL=http://127.0.0.1:$dport SINK_DIR=$data/sink \
    ARTIFACT_DIR=$out CHROMIUM=$chromium timeout 180 node "$dir/demo.test.mjs" 2>&1 | tee "$out/browser.log"
rc=${PIPESTATUS[0]}
echo "screenshots and logs: $out"
exit "$rc"
