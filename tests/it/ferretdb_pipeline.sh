#!/usr/bin/env bash
# LABELS: ferretdb
# Integration test (FerretDB; 77 unless `scripts/ferretdb.sh install` ran): the whole pipeline
# storing into a real MongoDB-protocol database. collector -> adtrack-devstream -> enricher
# (--mongo: FerretDB) with coredata's store in the same FerretDB, seeded with `adtrack seed
# demo`, budgets in a real redis-server. adtrack-loadtest sends the demo campaigns' traffic
# (pixels, signed clicks, beacons) and reconciles with --verify mongodb://: every acknowledged
# event found in adtrack.events or adtrack.rejected, none lost, none stored twice. Then the
# stored documents are read back with pymongo: coredata's campaigns and publishers are there
# with versions; every stored event carries campaign, advertiser and publisher names and an
# int64 price_micros; each campaign's spend in Redis equals the sum of its stored prices;
# every rejected event has a reason; the sink's indexes exist.
# Kafka here is devstream on purpose: FerretDB is the subject; tests/e2e/up_real.sh runs the
# same pipeline on real Kafka.
set -euo pipefail

source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/infra_it.sh"
infra_require ferretdb
/usr/bin/python3 -c 'import pymongo' 2> /dev/null || { echo "skipped: python3-pymongo missing"; exit 77; }
BIN_DIR=${ADTRACK_BIN_DIR:?ADTRACK_BIN_DIR not set}
TMP=$(mktemp -d "${ADTRACK_TEST_TMP:-/tmp}/ferretdb-pipeline.XXXXXX")
PIDS=()
cleanup() {
    local i
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[$i]}" 2> /dev/null && wait "${PIDS[$i]}" 2> /dev/null
    done
    infra_cleanup
}
trap cleanup EXIT
fail() {
    echo "FAIL: $*" >&2
    for f in "$TMP"/*.log; do [[ -s $f ]] && { echo "---- $f" >&2; tail -n 10 "$f" >&2; }; done
    exit 1
}
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_http <name> <url> <pid>: until the URL answers 200 (30 s).
wait_http() {
    for _ in $(seq 1 300); do
        [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "$2" || true) == 200 ]] && return 0
        kill -0 "$3" 2> /dev/null || fail "$1 exited"
        sleep 0.1
    done
    fail "$1 not ready at $2"
}

infra_ferretdb_start
MONGO="$FERRETDB_URI/?w=1" # FerretDB ignores write concerns (docs/MONGODB.md)

RPORT=$(port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" > "$TMP/redis.log" 2>&1 &
PIDS+=($!)
"$BIN_DIR/adtrack-devstream" --partitions 4 > "$TMP/devstream.out" 2> "$TMP/devstream.log" < /dev/null &
PIDS+=($!)
for _ in $(seq 1 100); do BOOT=$(head -n 1 "$TMP/devstream.out" 2> /dev/null || true); [[ -n $BOOT ]] && break; sleep 0.1; done
[[ -n $BOOT ]] || fail "devstream printed no bootstrap list"
until redis-cli -p "$RPORT" ping > /dev/null 2>&1; do sleep 0.1; done

TOKEN=ferretdb-pipeline-token
CPORT=$(port)
"$BIN_DIR/adtrack-coredata" --listen "127.0.0.1:$CPORT" --admin-token "$TOKEN" --mongo "$MONGO" --mongo-w 1 \
    --redis "127.0.0.1:$RPORT" --brokers "$BOOT" --log-level warn > "$TMP/coredata.log" 2>&1 &
PIDS+=($!)
wait_http coredata "http://127.0.0.1:$CPORT/readyz" "${PIDS[-1]}"
"$BIN_DIR/adtrack" --api "http://127.0.0.1:$CPORT" --token "$TOKEN" seed demo > "$TMP/seed.json" ||
    fail "adtrack seed demo: $(cat "$TMP/seed.json")"

EPORT=$(port)
# --rollups off: KNOWN BUG (docs/REAL-INFRA.md "Found on FerretDB" 1): with the rollups on,
# this pipeline (coredata and the enricher on one FerretDB, 200 req/s) hangs FerretDB within
# seconds: every operation waits for a connection of its SQLite pool. The rollups on FerretDB
# are tested by it/test_rollup; ADTRACK_KNOWN_BUGS=1 runs this test with them on.
rollups=off
[[ ${ADTRACK_KNOWN_BUGS:-0} == 1 ]] && rollups=on
"$BIN_DIR/adtrack-enricher" --brokers "$BOOT" --redis "127.0.0.1:$RPORT" --mongo "$MONGO" --mongo-w 1 \
    --rollups "$rollups" --listen "127.0.0.1:$EPORT" --log-level warn > "$TMP/enricher.log" 2>&1 &
PIDS+=($!)
wait_http enricher "http://127.0.0.1:$EPORT/readyz" "${PIDS[-1]}"
KEY=ferretdb-pipeline-click-key
PORT=$(port)
"$BIN_DIR/adtrack-collector" --listen "127.0.0.1:$PORT" --brokers "$BOOT" --spool-dir "$TMP/spool" --threads 2 \
    --click-key "$KEY" --log-level warn > "$TMP/collector.log" 2>&1 &
PIDS+=($!)
wait_http collector "http://127.0.0.1:$PORT/readyz" "${PIDS[-1]}"

# Every demo campaign: two running Acme ones are valid and charged (CPM impressions, CPC
# clicks), the others are rejected with a reason, which --verify counts as found.
cat > "$TMP/profile.json" << 'JSON'
{"seed": 7, "campaign_skew": 0,
 "campaign_ids": ["camp-acme-spring", "camp-acme-retarget", "camp-globex-summer", "camp-initech-launch",
                  "camp-umbrella-wellness"],
 "publisher_ids": ["pub-dailynews", "pub-sportsnow"],
 "mix": {"imp": 85, "view": 5, "click": 8, "conv": 2}, "beacon_ratio": 0.1, "beacon_batch": 3,
 "click_dest": "https://acme.example/spring"}
JSON
rc=0
"$BIN_DIR/adtrack-loadtest" --target "http://127.0.0.1:$PORT" --rate 200 --duration 10s --threads 1 \
    --connections 32 --click-key "$KEY" --profile "$TMP/profile.json" --progress off --run-id fdbpipe \
    --verify "$FERRETDB_URI/adtrack" --verify-wait 90s --verify-quiet 5s --json "$TMP/run.json" \
    > "$TMP/run.txt" 2>&1 || rc=$?
cat "$TMP/run.txt"
[[ $rc -eq 0 ]] || fail "adtrack-loadtest --verify mongodb:// exited $rc"

/usr/bin/python3 - "$TMP/run.json" "$FERRETDB_URI" "$RPORT" << 'PY'
import json, subprocess, sys
from bson.int64 import Int64
import pymongo
run, uri, rport = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3]
bad = []
def check(cond, msg):
    if not cond:
        bad.append(msg)
q, v = run["requests"], run["verify"]
check(v["store"] == "mongodb", v)
check(q["ok"] == q["intended"] == 2000, f"requests {q}")
check(v["checked_requests"] == q["ok"] and v["lost"] == 0 and v["duplicated"] == 0, f"verify {v}")
check(v["found_events"] + v["rejected"] == v["expected_events"] and v["settled"], f"verify {v}")
db = pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000)["adtrack"]
# coredata's store: the demo data, versioned, _id = id.
camps = {d["_id"]: d for d in db.campaigns.find()}
check(len(camps) == 5 and all(d.get("version", 0) > 0 for d in camps.values()), f"campaigns {list(camps)}")
check(db.publishers.count_documents({}) == 6, "publishers")
events = list(db.events.find({"tag": {"$regex": "^fdbpipe:"}}))
rejected = list(db.rejected.find({"tag": {"$regex": "^fdbpipe:"}}))
check(len(events) + len(rejected) == v["expected_events"], f"{len(events)} + {len(rejected)} documents")
check(len({e["_id"] for e in events}) == len(events), "an event id twice")
spend = {}
for e in events:
    if e["e"] == "conv":
        # Conversions are judged by fewer rules (docs/REPORTS.md "Attribution"): they count
        # for paused or ended campaigns too, have no publisher of their own, and these carry
        # no click id, so each is kept as not attributed, with payout 0.
        check(e.get("attribution") == "no_click" and int(e.get("payout_micros", -1)) == 0, f"conversion {e}")
        continue
    check(e["c"] in ("camp-acme-spring", "camp-acme-retarget"), f"stored event of {e['c']}")
    for f in ("campaign_name", "advertiser_name", "publisher_name", "ua_family", "device"):
        check(isinstance(e.get(f), str) and e[f], f"event {e['_id']} lacks {f}")
    check(type(e.get("price_micros")) is Int64, f"event {e['_id']}: price_micros {e.get('price_micros')!r}")
    spend[e["c"]] = spend.get(e["c"], 0) + int(e["price_micros"])
check(events and events[0]["campaign_name"] in ("Spring running shoes", "Cart abandoners retargeting"), "names")
for c, s in spend.items():
    r = subprocess.run(["redis-cli", "-p", rport, "GET", f"adtrack:spend:{c}"], capture_output=True, text=True)
    check(int(r.stdout.strip() or 0) == s, f"{c}: Redis spend {r.stdout.strip()} != stored prices {s}")
reasons = {}
for r in rejected:
    reasons[r.get("reason")] = reasons.get(r.get("reason"), 0) + 1
check(rejected and None not in reasons, f"rejected reasons {reasons}")
names = {i["name"] for i in db.events.list_indexes()} | {i["name"] for i in db.rejected.list_indexes()}
check({"c_1_ts_1", "reason_1_ts_1"} <= names, f"indexes {names}")
print(f"ferretdb pipeline: {q['ok']} requests, {len(events)} events stored (spend {spend}), "
      f"{len(rejected)} rejected {reasons}; verify lost {v['lost']} duplicated {v['duplicated']} "
      f"redelivered {v['redelivered']}")
for b in bad:
    print("FAIL:", b, file=sys.stderr)
sys.exit(1 if bad else 0)
PY
echo "PASS: ferretdb_pipeline"
