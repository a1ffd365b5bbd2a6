#!/usr/bin/env bash
# Integration test: what adtrack-collector serves besides events (collector/col_static.c),
# over real HTTP with curl, against a Kafka-protocol cluster (adtrack-devstream):
#   - GET /tracker.js: 200, JavaScript, ETag and a long Cache-Control; If-None-Match -> 304
#   - --demo-page true: /demo/ has the ad slots with signed /c links; following one with a
#     browser User-Agent is a 302 to /demo/landing, which answers 200 naming the campaign;
#     a tampered signature is refused; other /demo/ paths are 404
#   - without --demo-page, /demo/ is 404 while /tracker.js is still served
set -euo pipefail

source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/loadtest_it.sh"

for b in adtrack-collector adtrack-devstream; do
    [ -x "$BIN_DIR/$b" ] || fail "$BIN_DIR/$b not built"
done
command -v curl > /dev/null || fail "curl not installed (scripts/install-deps.sh installs it)"

lt_start_devstream

# start_collector <name> <args...>: a collector on a free port; sets PORT; waits for /healthz.
start_collector() {
    local name="$1"
    shift
    PORT="$(free_port)"
    "$BIN_DIR/adtrack-collector" --listen "127.0.0.1:$PORT" --brokers "$BOOT" --spool-dir "$TMP/spool-$name" \
        --threads 1 "$@" > "$TMP/$name.out" 2> "$TMP/$name.err" &
    lt_track_pid $!
    LT_FAIL_TAIL="$TMP/$name.err"
    for _ in $(seq 1 300); do
        curl -fs -o /dev/null "http://127.0.0.1:$PORT/healthz" && return 0
        sleep 0.1
    done
    fail "collector $name not answering on port $PORT"
}

# http <curl args...>: prints "<status>" and keeps headers in $TMP/h, body in $TMP/b.
http() { rm -f "$TMP/b"; curl -s -o "$TMP/b" -D "$TMP/h" -w '%{http_code}' "$@"; }
header() { grep -i "^$1:" "$TMP/h" | head -n 1 | cut -d' ' -f2- | tr -d '\r'; }
UA='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'

start_collector demo --click-key it-key --demo-page true
BASE="http://127.0.0.1:$PORT"

# ---- /tracker.js ----
[ "$(http "$BASE/tracker.js")" = 200 ] || fail "/tracker.js: expected 200"
case "$(header content-type)" in application/javascript*) ;; *) fail "/tracker.js content-type: $(header content-type)" ;; esac
etag="$(header etag)"
[[ "$etag" =~ ^\"[0-9a-f]{16}\"$ ]] || fail "/tracker.js: ETag '$etag'"
[[ "$(header cache-control)" == *max-age=86400* ]] || fail "/tracker.js cache-control: $(header cache-control)"
cmp -s "$TMP/b" "$SRC/web/tracker.js" || fail "/tracker.js: body differs from web/tracker.js"
[ "$(http -H "If-None-Match: $etag" "$BASE/tracker.js")" = 304 ] || fail "If-None-Match $etag: expected 304"
[ ! -s "$TMP/b" ] || fail "304 with a body"
[ "$(header etag)" = "$etag" ] || fail "304 without the ETag"
[ "$(http -H 'If-None-Match: "0000000000000000"' "$BASE/tracker.js")" = 200 ] || fail "stale ETag: expected 200"
[ "$(http -X POST "$BASE/tracker.js")" = 405 ] || fail "POST /tracker.js: expected 405"
echo "ok: /tracker.js 200 with ETag $etag, 304 on If-None-Match"

# ---- /demo/ ----
[ "$(http -A "$UA" "$BASE/demo/")" = 200 ] || fail "/demo/: expected 200"
case "$(header content-type)" in text/html*) ;; *) fail "/demo/ content-type: $(header content-type)" ;; esac
cp "$TMP/b" "$TMP/demo.html"
for id in ad-top ad-side ad-inline ad-bottom; do
    grep -q "id=\"$id\"" "$TMP/demo.html" || fail "/demo/: no element #$id"
done
grep -q 'Daily News' "$TMP/demo.html" || fail "/demo/: the publisher is not named"
grep -q 'src="/tracker.js"' "$TMP/demo.html" || fail "/demo/: does not load /tracker.js"
nlinks="$(grep -o 'href="/c?[^"]*"' "$TMP/demo.html" | sort -u | wc -l)"
[ "$nlinks" -eq 4 ] || fail "/demo/: expected 4 distinct signed /c links, found $nlinks"
! grep -q '{{' "$TMP/demo.html" || fail "/demo/: unfilled placeholder"

# The bottom ad's link, HTML-unescaped.
click="$(grep -A3 'id="ad-bottom"' "$TMP/demo.html" | grep -o 'href="/c?[^"]*"' | head -n 1 \
    | sed -e 's/^href="//' -e 's/"$//' -e 's/&amp;/\&/g')"
[ -n "$click" ] || fail "/demo/: #ad-bottom has no /c link"
[ "$(http -A "$UA" "$BASE$click")" = 302 ] || fail "GET $click: expected 302, got $(cat "$TMP/b")"
location="$(header location)"
# The destination plus the click id (<click event id>.<campaign>) for the landing page.
[[ "$location" =~ ^"$BASE/demo/landing?c=camp-acme-retarget&adt_clid="[0-9a-f-]{36}\.camp-acme-retarget$ ]] \
    || fail "click Location: '$location'"
[ "$(http -A "$UA" "$location")" = 200 ] || fail "GET $location: expected 200"
grep -q 'You arrived from campaign camp-acme-retarget' "$TMP/b" || fail "landing page does not name the campaign"
echo "ok: /demo/ has 4 ad slots; #ad-bottom's signed link -> 302 $location -> 200"

# A tampered signature is refused by /c (no redirect).
bad="${click%sig=*}sig=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
[ "$(http -A "$UA" "$BASE$bad")" = 400 ] || fail "tampered sig: expected 400"

[ "$(http "$BASE/demo/other")" = 404 ] || fail "/demo/other: expected 404"
[ "$(http "$BASE/demo/../tracker.js")" != 500 ] || fail "/demo/../: 500"
[ "$(http -H 'Host: a"b' "$BASE/demo/")" = 400 ] || fail "/demo/ with a hostile Host: expected 400"

# The click above went through /c: the collector took it as an event.
# (captured first: with pipefail, `curl | grep -q` fails when grep stops reading early)
metrics=$(curl -s "$BASE/metrics")
grep -q 'adtrack_http_requests_total{code="302"} 1' <<<"$metrics" || fail "metrics: expected one 302 (the click)"

# ---- without --demo-page ----
start_collector plain --click-key it-key
[ "$(http "http://127.0.0.1:$PORT/demo/")" = 404 ] || fail "/demo/ without --demo-page: expected 404"
[ "$(http "http://127.0.0.1:$PORT/demo/landing?c=x")" = 404 ] || fail "/demo/landing without --demo-page: expected 404"
[ "$(http "http://127.0.0.1:$PORT/tracker.js")" = 200 ] || fail "/tracker.js without --demo-page: expected 200"
echo "ok: without --demo-page /demo/ is 404 and /tracker.js is served"
