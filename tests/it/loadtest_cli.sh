#!/usr/bin/env bash
# Integration test: adtrack-loadtest's command line against a real nginx: clear errors for
# unreachable or unresolvable targets and bad options (exit 3 / 2), captures with bad
# lines replayed at original timing x speed and at a set rate, ramp stages, HTML output,
# environment variables, and a clean partial report on SIGINT.
set -euo pipefail

source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/loadtest_it.sh"

# expect_exit <code> <stderr substring> <args...>
expect_exit() {
    local want="$1" msg="$2"
    shift 2
    set +e
    "$BIN" --progress off "$@" > "$TMP/out.txt" 2> "$TMP/err.txt"
    local rc=$?
    set -e
    [ "$rc" -eq "$want" ] || { cat "$TMP/err.txt" >&2; fail "'$*': exit $rc, expected $want"; }
    grep -qF -- "$msg" "$TMP/err.txt" || { cat "$TMP/err.txt" >&2; fail "'$*': stderr lacks '$msg'"; }
}

json() { python3 -c "import json,sys; d=json.load(open('$1')); print(eval(sys.argv[1], {'d': d}))" "$2"; }

# --- errors -------------------------------------------------------------------------------
CLOSED="$(free_port)"
expect_exit 3 "cannot connect to http://127.0.0.1:$CLOSED (127.0.0.1:$CLOSED): connect: Connection refused" \
    --target "http://127.0.0.1:$CLOSED" --rate 10 --duration 1s
expect_exit 3 "cannot resolve 'no-such-host.invalid'" --target http://no-such-host.invalid:80 --rate 10
expect_exit 2 "--target: required" --rate 10
expect_exit 2 "--rate: expected an integer" --target http://127.0.0.1:1 --rate -5
expect_exit 2 "--rate and --stages" --target http://127.0.0.1:1 --rate 5 --stages 10:1s
expect_exit 2 "--stages: stage 2" --target http://127.0.0.1:1 --stages 10:1s,fast:2s
expect_exit 2 "https is not supported" --target https://127.0.0.1:1 --rate 5
expect_exit 2 "--rate or --stages: required" --target http://127.0.0.1:1
expect_exit 2 "--capture: cannot open '$TMP/missing.log'" --target http://127.0.0.1:1 --capture "$TMP/missing.log"
printf 'garbage one\ngarbage two\n' > "$TMP/allbad.log"
expect_exit 2 "no usable request" --target http://127.0.0.1:1 --rate 5 --capture "$TMP/allbad.log" --capture-format clf
"$BIN" --help > "$TMP/help.txt"
grep -q -- "--stages" "$TMP/help.txt" || fail "--help does not list --stages"
grep -q "ADTRACK_RATE" "$TMP/help.txt" || fail "--help does not name the environment variables"

PORT="$(free_port)"
start_nginx "$PORT" "log_format uri '\$request_method \$request_uri'; access_log $TMP/access.log uri;"
T="http://127.0.0.1:$PORT"

# --- capture replayed at original timing x2, with bad lines -------------------------------
cat > "$TMP/cap.jsonl" <<'CAP'
{"ts": 1795267622.0, "url": "/t.gif?e=imp&c=a"}
this line is not JSON
{"ts": 1795267622.5, "url": "http://elsewhere.example/t.gif?e=imp&c=b"}
{"ts": "2026-11-21T13:27:03Z", "url": 42}
{"ts": "2026-11-21T13:27:03Z", "url": "/c?c=c&d=x"}
{"ts": 1795267623.5, "method": "POST", "url": "/v1/events", "body": [{"e":"imp","c":"d"}]}
CAP
: > "$TMP/access.log"
"$BIN" --progress off --target "$T" --capture "$TMP/cap.jsonl" --speed 2 --json "$TMP/cap.json" > /dev/null 2>&1 \
    || fail "capture replay failed"
[ "$(json "$TMP/cap.json" 'd["config"]["mode"]')" = replay ] || fail "not replayed at original timing"
[ "$(json "$TMP/cap.json" 'd["capture"]["bad"]')" = 2 ] || fail "bad lines not counted"
[ "$(json "$TMP/cap.json" '[b["line"] for b in d["capture"]["bad_lines"]]')" = "[2, 4]" ] || fail "bad line numbers"
[ "$(json "$TMP/cap.json" 'd["requests"]["ok"]')" = 4 ] || fail "not all capture requests answered"
[ "$(json "$TMP/cap.json" '0.74 < d["planned_s"] < 0.76')" = True ] || fail "1.5 s of capture at x2 should plan 0.75 s"
expected="GET /t.gif?e=imp&c=a
GET /t.gif?e=imp&c=b
GET /c?c=c&d=x
POST /v1/events"
[ "$(cat "$TMP/access.log")" = "$expected" ] || { cat "$TMP/access.log" >&2; fail "nginx did not see the capture in order"; }

# --- combined log replayed at a set rate, cycling, capped ---------------------------------
for i in 1 2 3; do
    echo "10.0.0.$i - - [21/Nov/2026:13:27:0$i +0000] \"GET /t.gif?e=imp&c=c$i HTTP/1.1\" 200 43 \"https://ref.example/\" \"UA $i\""
done > "$TMP/access_in.log"
echo 'bad line' >> "$TMP/access_in.log"
ADTRACK_MAX_REQUESTS=30 "$BIN" --progress off --target "$T" --capture "$TMP/access_in.log" --rate 100 --duration 2s \
    --json "$TMP/clf.json" > /dev/null 2>&1 || fail "clf replay failed"
[ "$(json "$TMP/clf.json" 'd["requests"]["intended"]')" = 30 ] || fail "ADTRACK_MAX_REQUESTS ignored"
[ "$(json "$TMP/clf.json" 'd["requests"]["ok"]')" = 30 ] || fail "clf replay not answered"
[ "$(json "$TMP/clf.json" 'd["capture"]["format"]')" = clf ] || fail "clf not detected"

# --- ramp stages and the HTML report ------------------------------------------------------
"$BIN" --progress off --target "$T" --stages 100:1s,200:1s --threads 2 --connections 4 --json "$TMP/st.json" \
    --html "$TMP/st.html" > /dev/null 2>&1 || fail "stages run failed"
# 0->100 over 1 s = 50 arrivals, 100->200 over 1 s = 150
[ "$(json "$TMP/st.json" 'd["requests"]["intended"]')" = 200 ] || fail "stages: intended != 200"
[ "$(json "$TMP/st.json" 'd["requests"]["ok"]')" = 200 ] || fail "stages: not all answered"
grep -q "<svg" "$TMP/st.html" || fail "HTML report has no charts"
! grep -q "<script" "$TMP/st.html" || fail "HTML report must not need scripts"
[ "$(grep -c "<svg" "$TMP/st.html")" -ge 3 ] || fail "HTML report should have three charts"

# --- SIGINT: stop sending, drain, still report ----------------------------------------------
"$BIN" --progress off --target "$T" --rate 200 --duration 60s --json "$TMP/int.json" > /dev/null 2>&1 &
pid=$!
sleep 1.5
kill -INT "$pid"
for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$pid" 2>/dev/null && { kill -9 "$pid"; fail "did not stop within 10 s of SIGINT"; }
wait "$pid" || fail "interrupted run exited with $?"
[ "$(json "$TMP/int.json" 'd["interrupted"]')" = True ] || fail "interrupted flag missing"
[ "$(json "$TMP/int.json" '100 < d["requests"]["intended"] < 2000')" = True ] || fail "intended should stop at the interrupt"
[ "$(json "$TMP/int.json" 'd["requests"]["sent"] + d["requests"]["dropped"] == d["requests"]["intended"]')" = True ] \
    || fail "sent + dropped != intended after an interrupt"
echo "ok: loadtest CLI checks passed"
