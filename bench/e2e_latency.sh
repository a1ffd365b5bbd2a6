#!/usr/bin/env bash
# bench/e2e_latency.sh: end-to-end latency of the whole pipeline, pixel request -> enriched
# document in the file sink, at steady arrival rates.
#
# Starts `adtrack up` (redis-server, devstream, coredata with the demo data, one enricher, the
# collector) on free ports in a scratch directory, then runs bench/e2e_latency.py once per
# rate and run. Each run reports, side by side for the same requests, the HTTP answer latency
# (the baseline: what the browser waits for) and the request-to-stored latency, p50/p90/p99,
# measured from each request's scheduled send time (open model). Prints one line per run and
# the medians over runs per rate.
#
# Usage: bench/e2e_latency.sh [BUILD_DIR] [RATES] [RUNS] [SECONDS]
#   defaults: build "200 1000" 3 15
# Extra `adtrack up` options can be given in E2E_UP_ARGS (e.g. "--enricher-arg=--batch-max-ms=20").
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
BUILD=${1:-build}
RATES=${2:-200 1000}
RUNS=${3:-3}
SECS=${4:-15}
# shellcheck source=bench/lib.sh
. bench/lib.sh
bench_cleanup_install
bench_tmpdir
data=$BENCH_TMP/data
cport=$(bench_free_port)
aport=$(bench_free_port)
dport=$(bench_free_port)

# shellcheck disable=SC2086
"$BUILD/bin/adtrack" up --data-dir "$data" --listen "127.0.0.1:$cport" --admin-listen "127.0.0.1:$aport" \
    --dashboard-listen "127.0.0.1:$dport" ${E2E_UP_ARGS:-} >"$BENCH_TMP/up.out" 2>"$BENCH_TMP/up.err" &
up_pid=$!
bench_track "$up_pid"
for _ in $(seq 1 600); do
    grep -q '^adtrack is up' "$BENCH_TMP/up.out" 2>/dev/null && break
    kill -0 "$up_pid" 2>/dev/null || { tail -n 30 "$BENCH_TMP/up.err" >&2; bench_die "adtrack up exited"; }
    sleep 0.1
done
grep -q '^adtrack is up' "$BENCH_TMP/up.out" || bench_die "adtrack up printed no banner within 60 s"

# Warm-up: the enricher joins its consumer group and fills its cache; wait until one tagged
# pixel is stored.
bench_log "warming up"
/usr/bin/python3 bench/e2e_latency.py --url "http://127.0.0.1:$cport" --sink-dir "$data/sink" \
    --rate 50 --duration 2 --wait 60 >/dev/null || bench_die "warm-up events were not stored"

printf '%-6s %-4s %8s %8s %8s   %8s %8s %8s  %s\n' rate run "ans p50" "ans p99" "ans max" \
    "sto p50" "sto p90" "sto p99" "ok/stored/dup"
for rate in $RATES; do
    a50=() a99=() s50=() s90=() s99=()
    for run in $(seq 1 "$RUNS"); do
        out=$BENCH_TMP/r$rate-$run.json
        /usr/bin/python3 bench/e2e_latency.py --url "http://127.0.0.1:$cport" --sink-dir "$data/sink" \
            --rate "$rate" --duration "$SECS" --connections 8 >"$out" || bench_log "run $rate/$run: not every request stored"
        read -r ap50 ap99 amax sp50 sp90 sp99 cnt < <(/usr/bin/python3 - "$out" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
a, s = r["answer"], r["stored_latency"]
f = lambda v: "nan" if v is None else "%.1f" % v
print(f(a["p50_ms"]), f(a["p99_ms"]), f(a["max_ms"]), f(s["p50_ms"]), f(s["p90_ms"]), f(s["p99_ms"]),
      "%d/%d/%d" % (r["ok"], r["stored"], r["duplicates"]))
EOF
)
        printf '%-6s %-4s %8s %8s %8s   %8s %8s %8s  %s\n' "$rate" "$run" "$ap50" "$ap99" "$amax" "$sp50" "$sp90" "$sp99" "$cnt"
        a50+=("$ap50") a99+=("$ap99") s50+=("$sp50") s90+=("$sp90") s99+=("$sp99")
    done
    printf '%-6s %-4s %8s %8s %8s   %8s %8s %8s  (medians, ms)\n' "$rate" med "$(bench_median "${a50[@]}")" \
        "$(bench_median "${a99[@]}")" "" "$(bench_median "${s50[@]}")" "$(bench_median "${s90[@]}")" \
        "$(bench_median "${s99[@]}")"
done
