#!/usr/bin/env bash
# LABELS: realkafka;ferretdb
# End to end: `adtrack up --real` (docs/UP.md, "Real servers"): a real Apache Kafka cluster
# (scripts/kafka.sh, 1 node) and FerretDB (scripts/ferretdb.sh) instead of devstream and the
# file sinks. 77 unless both are installed.
#   1. without the servers installed (an empty ADTRACK_CACHE_DIR), --real says what to
#      install and exits 1 before creating anything; --real with --brokers is a usage error;
#   2. `adtrack up --real` on free ports: the banner names the cluster and FerretDB, the demo
#      data is seeded into FerretDB, pixels are stored there enriched (names, price_micros);
#   3. SIGTERM: exit 0, and the broker and FerretDB processes are gone too;
#   4. a second start on the same data directory finds the cluster and the store as they
#      were (no second seeding) and stores a pixel; then adtrack up is SIGKILLed, and the
#      scripts' watchdogs take the broker and FerretDB down within seconds.
set -euo pipefail

source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/infra_it.sh"
infra_require kafka ferretdb
bin=${ADTRACK_BIN_DIR:?}
for t in redis-server curl; do command -v $t > /dev/null || { echo "SKIP: needs $t"; exit 77; }; done
/usr/bin/python3 -c 'import pymongo' 2> /dev/null || { echo "SKIP: needs python3-pymongo"; exit 77; }
tmp=$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/e2e-up-real.XXXXXX")
data=$tmp/data
up_pid=
cleanup() {
    if [[ -n $up_pid ]] && kill -0 "$up_pid" 2> /dev/null; then
        kill -TERM "$up_pid" 2> /dev/null || true
        for _ in $(seq 1 600); do kill -0 "$up_pid" 2> /dev/null || break; sleep 0.1; done
        kill -KILL "$up_pid" 2> /dev/null || true # its watchdogs then take Kafka and FerretDB
    fi
    wait 2> /dev/null || true
    rm -rf "$data/infra/kafka"/node-*/data "$data/infra/ferretdb/data"
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for f in "$tmp"/up*.err "$data"/logs/kafka*.log "$data"/logs/ferretdb*.log; do
        [[ -f $f ]] && { echo "---- $f" >&2; tail -n 20 "$f" >&2; }
    done
    exit 1
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { local t=${EPOCHREALTIME/./}; echo $((t / 1000)); }
UA='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'
cport=$(port)
col=http://127.0.0.1:$cport
ports=(--listen "127.0.0.1:$cport" --admin-listen 127.0.0.1:0 --dashboard-listen 127.0.0.1:0)

# ---- 1. not installed; a usage error ----
rc=0
ADTRACK_CACHE_DIR=$tmp/empty-cache "$bin/adtrack" up --real --data-dir "$tmp/never" "${ports[@]}" \
    > /dev/null 2> "$tmp/noinstall.err" || rc=$?
[[ $rc -eq 1 ]] || fail "--real without the servers installed: exit $rc, want 1"
grep -q 'kafka.sh install' "$tmp/noinstall.err" && grep -q 'ferretdb.sh install' "$tmp/noinstall.err" ||
    fail "--real without the servers: no install instructions: $(cat "$tmp/noinstall.err")"
[[ ! -e $tmp/never ]] || fail "--real without the servers created the data directory"
rc=0
"$bin/adtrack" up --real --brokers 127.0.0.1:9 --data-dir "$tmp/never" > /dev/null 2>&1 || rc=$?
[[ $rc -eq 2 ]] || fail "--real with --brokers: exit $rc, want 2 (usage)"
echo "ok: without the servers, --real says how to install them (exit 1); --real --brokers is a usage error"

# start_up <n>: adtrack up --real in the background (stdout up<n>.out, stderr .err), waits
# for its banner (the cluster's start is bounded by kafka.sh's own 180 s).
start_up() {
    local t0
    t0=$(now_ms)
    # --rollups off: the FerretDB hang of docs/REAL-INFRA.md "Found on FerretDB" 1 (a known bug)
    local extra=(--enricher-arg=--rollups=off)
    [[ ${ADTRACK_KNOWN_BUGS:-0} == 1 ]] && extra=()
    "$bin/adtrack" up --real --data-dir "$data" "${ports[@]}" "${extra[@]}" > "$tmp/up$1.out" 2> "$tmp/up$1.err" &
    up_pid=$!
    for _ in $(seq 1 2400); do
        grep -q '^adtrack is up' "$tmp/up$1.out" 2> /dev/null && { echo "adtrack up --real ($1) up in $(($(now_ms) - t0)) ms"; return 0; }
        kill -0 "$up_pid" 2> /dev/null || fail "adtrack up --real exited during start-up"
        sleep 0.1
    done
    fail "adtrack up --real printed no banner within 240 s"
}

# wait_stored <uid> <seconds>: until FerretDB holds an enriched event of that uid; prints it.
wait_stored() {
    /usr/bin/python3 - "$URI" "$1" "$2" << 'PY' || fail "pixel uid=$1 not stored in FerretDB as expected"
import sys, time, pymongo
from bson.int64 import Int64
uri, uid, secs = sys.argv[1], sys.argv[2], float(sys.argv[3])
db = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)["adtrack"]
deadline = time.time() + secs
while time.time() < deadline:
    d = db.events.find_one({"uid": uid})
    if d:
        want = {"c": "camp-acme-spring", "campaign_name": "Spring running shoes", "advertiser_name": "Acme Shoes",
                "publisher_name": "Daily News", "price_micros": 2500, "device": "desktop"}
        bad = {k: d.get(k) for k, v in want.items() if d.get(k) != v}
        if bad or type(d["price_micros"]) is not Int64:
            print("stored, but:", bad, repr(d.get("price_micros")), file=sys.stderr)
            sys.exit(1)
        print(f"stored in FerretDB: {uid} -> {d['campaign_name']} / {d['publisher_name']}, {d['price_micros']} micros")
        sys.exit(0)
    time.sleep(0.1)
sys.exit(1)
PY
}

pixel() {
    [[ $(curl -s -o /dev/null -w '%{http_code}' -A "$UA" "$col/t.gif?e=imp&c=camp-acme-spring&p=pub-dailynews&pl=top&uid=$1") == 200 ]] ||
        fail "pixel $1 not answered 200"
}

server_pids() { cat "$data/infra/kafka/node-1/pid" "$data/infra/ferretdb/pid" 2> /dev/null || true; }
# running <pid>: the process exists and is not a zombie. The servers are setsid'd orphans
# whose exit init reaps a moment later; until then kill -0 still succeeds.
running() { [[ -r /proc/$1/stat ]] && [[ $(cut -d' ' -f3 "/proc/$1/stat" 2> /dev/null) != Z ]]; }

# ---- 2. up on real servers; pixels into FerretDB ----
start_up 1
grep -q 'Apache Kafka, 1 node' "$tmp/up1.out" || fail "banner lacks the real Kafka line"
URI=$(grep -o 'mongodb://127.0.0.1:[0-9]*' "$tmp/up1.out" | head -n 1)
[[ -n $URI ]] || fail "banner lacks the FerretDB URI"
grep -q 'devstream' "$tmp/up1.out" && fail "banner mentions devstream"
[[ -e $data/devstream.ctl || -d $data/sink/enricher-1 ]] && fail "devstream or file sinks were set up"
/usr/bin/python3 -c "
import pymongo, sys
db = pymongo.MongoClient('$URI', serverSelectionTimeoutMS=5000)['adtrack']
n = db.campaigns.count_documents({})
sys.exit(0 if n == 5 and db.publishers.count_documents({}) == 6 else 1)" || fail "demo data not in FerretDB"
for i in 1 2 3; do pixel "real-$i"; done
for i in 1 2 3; do wait_stored "real-$i" 60; done
pids=$(server_pids)
[[ $(wc -w <<< "$pids") -eq 2 ]] || fail "no pid files for the broker and FerretDB"

# ---- 3. SIGTERM stops the real servers too ----
t0=$(now_ms)
kill -TERM "$up_pid"
for _ in $(seq 1 900); do kill -0 "$up_pid" 2> /dev/null || break; sleep 0.1; done
rc=0
wait "$up_pid" || rc=$?
up_pid=
[[ $rc -eq 0 ]] || fail "adtrack up --real exited $rc after SIGTERM"
for p in $pids; do running "$p" && fail "server pid $p ($(tr '\0' ' ' < "/proc/$p/cmdline" | cut -c1-80)) outlived adtrack up"; done
grep -q '"stopping: collector, dashboard, enrichers, coredata, ferretdb, kafka, devstream, redis"' "$tmp/up1.err" ||
    fail "no stop order with ferretdb and kafka in the log"
echo "ok: SIGTERM stopped everything, the broker and FerretDB included, in $(($(now_ms) - t0)) ms"

# ---- 4. restart on the same data; SIGKILL takes the servers along ----
start_up 2
grep -q 'the store has data: not seeding' "$tmp/up2.err" || fail "the restart seeded again"
URI=$(grep -o 'mongodb://127.0.0.1:[0-9]*' "$tmp/up2.out" | head -n 1)
wait_stored real-1 5 > /dev/null # stored by the first run
pixel real-again
wait_stored real-again 60
pids=$(server_pids)
kill -KILL "$up_pid"
wait "$up_pid" 2> /dev/null || true
up_pid=
t0=$(now_ms)
for _ in $(seq 1 150); do
    alive=0
    for p in $pids; do running "$p" && alive=1; done
    [[ $alive -eq 0 ]] && break
    sleep 0.1
done
[[ $alive -eq 0 ]] || fail "the broker or FerretDB still runs 15 s after adtrack up was SIGKILLed"
echo "ok: after SIGKILL of adtrack up the watchdogs stopped the broker and FerretDB in $(($(now_ms) - t0)) ms"
echo "PASS"
