#!/usr/bin/env bash
# Reporting API benchmark: 30 days x 1000 campaigns of hourly rollup documents (each campaign
# with 3 creatives and 2 publishers, two (creative, publisher) documents per hour, 4 raw-topic
# partitions spread over the campaigns) in the file-sink layout, loaded by adtrack-coredata
# --stats-dir; then reports timed from the client (curl), index warm. See docs/BENCHMARKS.md.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
BIN=${ADTRACK_BIN_DIR:-$ROOT/build/bin}
DAYS=30
CAMPAIGNS=1000
REQUESTS=7
KEEP=0
DATA=

usage() {
    cat <<'EOF'
Usage: bench/reports.sh [--days N] [--campaigns N] [--requests N] [--keep] [--data FILE]

Generates the rollups (N days x N campaigns, 2 documents per campaign-hour; default 30 x 1000
= 1,440,000 documents, ~6 non-zero HyperLogLog registers each), starts adtrack-coredata with
--stats-dir on them, and prints: the index's load time and RSS before/after the load, and the
median (and min/max) client-side time of --requests (default 7) reports each:
  day   by campaign            (the 200 ms target)
  hour  by campaign
  day   by campaign,publisher
  day   by campaign, all metrics incl. uniques and rejected_by_reason, CSV
Builds nothing: binaries come from $ADTRACK_BIN_DIR (default build/bin). --keep keeps the
generated data and coredata's log (printed at the end); --data FILE reuses such a generated
stats_hourly-000001.jsonl (copied; --days/--campaigns must match it).
EOF
}

while [ $# -gt 0 ]; do
    case $1 in
    --days) DAYS=$2; shift 2 ;;
    --campaigns) CAMPAIGNS=$2; shift 2 ;;
    --requests) REQUESTS=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --data) DATA=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "reports.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

[ -x "$BIN/adtrack-coredata" ] || { echo "reports.sh: $BIN/adtrack-coredata not built" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/adtrack-bench-reports.XXXXXX")
PID=
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null && wait "$PID" 2>/dev/null || true
    if [ "$KEEP" = 1 ]; then echo "kept: $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
mkdir -p "$WORK/stats" "$WORK/cd"

if [ -n "$DATA" ]; then
    cp "$DATA" "$WORK/stats_hourly-000001.jsonl"
else
echo "generating $DAYS days x $CAMPAIGNS campaigns ..." >&2
python3 - "$DAYS" "$CAMPAIGNS" "$WORK/stats_hourly-000001.jsonl" <<'PY'
import random, sys, datetime
days, camps, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rnd = random.Random(7)
start = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)
with open(out, "w") as f:
    for hour in range(days * 24):
        t = start + datetime.timedelta(hours=hour)
        hs = t.strftime("%Y-%m-%dT%H")
        mt = (t + datetime.timedelta(minutes=59)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
        for c in range(camps):
            for j in range(2):
                cr = "cr-%d-%d" % (c, (hour + j) % 3)
                p = "pub-%d" % ((c + j) % 50)
                k = c % 4
                imp = rnd.randint(50, 500)
                click = rnd.randint(0, imp // 20)
                conv = rnd.randint(0, click // 3 + 1) if click else 0
                regs = ",".join('"%d":%d' % (rnd.randrange(2048), rnd.randint(1, 6)) for _ in range(6))
                f.write('{"_id":"%s|camp-%d|%s|%s|top|%d","h":{"$date":"%s:00:00Z"},"c":"camp-%d","adv":"adv-%d",'
                        '"cr":"%s","p":"%s","pl":"top","k":%d,"o":%d,"imp":%d,"view":%d,"click":%d,"conv":%d,'
                        '"spend":%d,"payout":%d,"rejected":%d,"rej":{"bot":%d},"u":{%s},"mt":{"$date":"%s"}}\n'
                        % (hs, c, cr, p, k, hs, c, c % 100, cr, p, k, hour * 1000 + c, imp, imp * 6 // 10, click,
                           conv, imp * 2500, conv * 1000000, imp // 50, imp // 50, regs, mt))
PY
fi
LINES=$(wc -l <"$WORK/stats_hourly-000001.jsonl")
BYTES=$(stat -c %s "$WORK/stats_hourly-000001.jsonl")

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TOKEN=bench-reports-token
ADTRACK_ADMIN_TOKEN=$TOKEN "$BIN/adtrack-coredata" --listen "127.0.0.1:$PORT" --data-dir "$WORK/cd" \
    --stats-dir "$WORK/stats" --redis 127.0.0.1:1 --brokers 127.0.0.1:1 --feed false \
    --reports-poll-ms 200 --log-level error >"$WORK/coredata.log" 2>&1 &
PID=$!
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break; sleep 0.1; done
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$PID/status"; }
sleep 0.5
RSS0=$(rss_kb)
docs() { curl -sf "http://127.0.0.1:$PORT/metrics" | awk '/^adtrack_coredata_reports_documents / {print int($2)}'; }
T0=$(date +%s.%N)
mv "$WORK/stats_hourly-000001.jsonl" "$WORK/stats/"
while [ "$(docs)" != "$LINES" ]; do
    sleep 0.05
    kill -0 "$PID" || { echo "coredata died" >&2; cat "$WORK/coredata.log" >&2; exit 1; }
done
T1=$(date +%s.%N)
RSS1=$(rss_kb)

# median/min/max of REQUESTS timed requests (the first one unmeasured: warm-up)
time_q() {
    local q=$1 accept=${2:-application/json} ts=() out
    curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" "http://127.0.0.1:$PORT/v1/reports?$q"
    for _ in $(seq "$REQUESTS"); do
        ts+=("$(curl -sf -o "$WORK/last" -w '%{time_total}' -H "Authorization: Bearer $TOKEN" -H "Accept: $accept" \
            "http://127.0.0.1:$PORT/v1/reports?$q")")
    done
    out=$(printf '%s\n' "${ts[@]}" | sort -g | awk '{a[NR]=$1} END {printf "median %.1f ms (min %.1f, max %.1f)", a[int((NR+1)/2)]*1000, a[1]*1000, a[NR]*1000}')
    echo "$out; $(wc -c <"$WORK/last") bytes"
}
RANGE="from=2026-11-01&to=2026-12-01"
echo "## reports benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores)"
echo
echo "- data: $LINES documents ($DAYS days x $CAMPAIGNS campaigns x 2 per hour), $((BYTES / 1048576)) MiB of jsonl"
echo "- load (file mode, one file): $(echo "$T1 - $T0" | bc) s; RSS $((RSS0 / 1024)) MiB before, $((RSS1 / 1024)) MiB after ($(( (RSS1 - RSS0) * 1024 / LINES )) bytes per document)"
echo "- day by campaign (30 days, 30,000 rows):          $(time_q "$RANGE&granularity=day&group_by=campaign&metrics=imp,click,conv,spend_micros,ctr,ecpm_micros")"
echo "- day by campaign, all default metrics (uniques):  $(time_q "$RANGE&granularity=day&group_by=campaign")"
echo "- hour by campaign (30 days, 720,000 rows):         $(time_q "$RANGE&granularity=hour&group_by=campaign&metrics=imp,click,ctr")"
echo "- day by campaign,publisher (60,000 rows):          $(time_q "$RANGE&granularity=day&group_by=campaign,publisher")"
echo "- day by campaign, CSV with rejected_by_reason:     $(time_q "$RANGE&granularity=day&group_by=campaign&metrics=imp,uniques,rejected_by_reason" text/csv)"
echo "- day, Europe/Berlin, no grouping (30 rows):        $(time_q "$RANGE&granularity=day&tz=Europe/Berlin")"
echo "- RSS after the reports: $(( $(rss_kb) / 1024 )) MiB"
