#!/usr/bin/env bash
# bench/enricher.sh: adtrack-enricher throughput, Redis commands per event and RSS.
#
# Pre-produces events to adtrack-devstream, then times one enricher (one worker thread,
# file sink) draining them; every run uses a fresh consumer group, data dir and Redis.
#   warm: 10 campaigns, all loaded into the cache by the start-up resync
#   cold: 100,000 campaigns that are not in adtrack:campaigns (so nothing is preloaded);
#         events spread over all of them, so batches are mostly cache misses
#   rss:  100,000 campaigns preloaded by the resync, RSS after draining
# Prints one line per run and the medians; writes nothing else.
# Usage: bench/enricher.sh [BUILD_DIR] [EVENTS] [RUNS]
# Environment:
#   ENR_BENCH_MODES="warm cold rss"  which modes to run ("" for none, e.g. callgrind only);
#                        warm2: the warm drain by two enrichers (one worker thread each) in
#                        one consumer group, for the scaling from 1 to 2 workers
#   ENR_BENCH_KAFKA=real  a 1-node Apache Kafka (scripts/kafka.sh) instead of devstream;
#                        warm modes only
#   ENR_BENCH_BASE=DIR   a second build dir (e.g. the previous commit's): every run is done
#                        with both enrichers, alternating, and the median ratio is printed
#   ENR_BENCH_SCRIPT=N   also time the budget script alone (adtrack-enricher-budget-bench: N
#                        calls of 1000 charges over 10 campaigns, RUNS times per build,
#                        alternating): median ms per call and Redis us per charge
#   ENR_BENCH_ROLLUPS=1  every run is done twice, alternating, with --rollups off and
#                        --rollups on (same build), and the median ratio on/off is printed: the
#                        cost of the hourly rollups (stats_hourly)
#   ENR_BENCH_ARGS="..."  extra enricher options for every run (e.g. --batch-size 5000;
#                        a later option wins)
#   ENR_BENCH_SINK=ferretdb  the MongoDB sink on FerretDB (scripts/ferretdb.sh; a fresh
#                        FerretDB per run, so no run finds the events or rollups of another)
#                        instead of the file sink
#   ENR_BENCH_CALLGRIND=N  also drain N warm events once per build under valgrind
#                        --tool=callgrind and print the worker thread's instructions per event
#                        (counted inside enr_worker_main only: start-up, librdkafka's own
#                        threads and the subscriber are left out). Needs valgrind.
set -euo pipefail
BUILD=${1:-build}
EVENTS=${2:-100000}
RUNS=${3:-3}
BIN=$BUILD/bin
BASE=${ENR_BENCH_BASE:-}
MODES=${ENR_BENCH_MODES-warm cold rss}
CG_EVENTS=${ENR_BENCH_CALLGRIND:-0}
SCRIPT_CALLS=${ENR_BENCH_SCRIPT:-0}
BUILDS=("$BUILD")
[ -n "$BASE" ] && BUILDS=("$BASE" "$BUILD")
# Variants: "label|build dir|extra enricher args", run alternately within each round.
VARIANTS=()
for b in "${BUILDS[@]}"; do
    if [ "${ENR_BENCH_ROLLUPS:-0}" = 1 ]; then
        VARIANTS+=("rollups-off|$b|--rollups off" "rollups-on|$b|--rollups on")
    else
        VARIANTS+=("$(basename "$b")|$b|")
    fi
done
SINK=${ENR_BENCH_SINK:-file}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TMP=$(mktemp -d /tmp/enr-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$TMP"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

RPORT=$(free_port)
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --dir "$TMP" --loglevel warning >/dev/null &
PIDS+=($!)
R="redis-cli -p $RPORT"
for _ in $(seq 50); do $R ping >/dev/null 2>&1 && break; sleep 0.1; done

WARM_TOPIC=bench-warm
if [ "${ENR_BENCH_KAFKA:-devstream}" = real ]; then
    # A 1-node Apache Kafka (scripts/kafka.sh install first). Only the topics of
    # deploy/topics.conf exist there, so the warm modes use adtrack.events.raw (16 partitions).
    case " $MODES " in *" cold "* | *" rss "*) echo "ENR_BENCH_KAFKA=real runs the warm modes only (ENR_BENCH_MODES)" >&2; exit 2 ;; esac
    [ "$CG_EVENTS" = 0 ] || { echo "ENR_BENCH_KAFKA=real: no callgrind run" >&2; exit 2; }
    BS=$(bash "$ROOT/scripts/kafka.sh" start --dir "$TMP/kafka" --nodes 1 --partitions adtrack.events.raw=16 \
        --owner-pid $$ 2>"$TMP/kafka.err" | head -1) || { tail -5 "$TMP/kafka.err" >&2; exit 1; }
    PIDS+=("$(cat "$TMP/kafka/node-1/pid")")
    WARM_TOPIC=adtrack.events.raw
else
    "$BIN/adtrack-devstream" --partitions 4 --topic bench-warm:16 --topic bench-cold:16 --topic bench-cg:16 --log-level warn \
        >"$TMP/ds.out" 2>"$TMP/ds.err" </dev/null &
    PIDS+=($!)
    for _ in $(seq 100); do [ -s "$TMP/ds.out" ] && break; sleep 0.1; done
    BS=$(head -1 "$TMP/ds.out")
fi

# seed NCAMP IN_SET: campaigns camp-0..NCAMP-1 (+ pub-1); IN_SET=1 adds them to adtrack:campaigns.
seed() {
    $R flushall >/dev/null
    python3 - "$1" "$2" >"$TMP/seed.txt" <<'PY'
import sys
n, in_set = int(sys.argv[1]), sys.argv[2] == "1"
def cmd(*a):
    out = "*%d\r\n" % len(a)
    for x in a:
        b = x.encode()
        out += "$%d\r\n%s\r\n" % (len(b), x)
    sys.stdout.write(out)
pub = '{"id":"pub-1","name":"Daily News","domain":"news.example","status":"active","version":1}'
cmd("HSET", "adtrack:publisher:pub-1", "version", "1", "doc", pub)
cmd("SADD", "adtrack:publishers", "pub-1")
for i in range(n):
    c = "camp-%d" % i
    doc = ('{"id":"%s","advertiser":"adv-%d","advertiser_name":"Advertiser %d","name":"Campaign %d",'
           '"status":"active","start":"2020-01-01T00:00:00Z","end":"2099-01-01T00:00:00Z",'
           '"budget_micros":1000000000000000,"pricing":"cpm","price_micros":2500000,"publishers":["pub-1"],'
           '"version":%d}') % (c, i, i, i, i + 2)
    cmd("HSET", "adtrack:campaign:" + c, "version", str(i + 2), "doc", doc)
    if in_set:
        cmd("SADD", "adtrack:campaigns", c)
PY
    $R --pipe <"$TMP/seed.txt" >/dev/null
}

# produce TOPIC NCAMP [COUNT]: COUNT (default EVENTS) events spread over camp-0..NCAMP-1 (key = campaign).
produce() {
    local count=${3:-$EVENTS}
    python3 - "$count" "$2" >"$TMP/events.txt" <<'PY'
import sys, time, random, uuid
n, ncamp = int(sys.argv[1]), int(sys.argv[2])
now = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
rnd = random.Random(7)
out = []
for i in range(n):
    c = "camp-%d" % rnd.randrange(ncamp)
    e = "imp" if i % 10 else "click"
    out.append('%s|{"v":1,"id":"%s","ts":{"$date":"%s"},"e":"%s","src":"pixel","c":"%s","p":"pub-1",'
               '"pl":"slot-top","uid":"u-%d","u":"https://news.example/a","ua":"%s","ip":"203.0.113.0",'
               '"tag":"bench:%d"}' % (c, uuid.uuid4(), now, e, c, i % 5000, ua, i))
sys.stdout.write("\n".join(out) + "\n")
PY
    kcat -P -l -b "$BS" -t "$1" -K '|' "$TMP/events.txt"
    # Count what the cluster actually serves (librdkafka's mock can serve fewer than were
    # acknowledged when a producer sends very large batches); the runs drain exactly that.
    local served; served=$(timeout 120 kcat -C -e -q -b "$BS" -t "$1" -o beginning -f '.\n' | wc -l)
    echo "# $1: $served of $count events served" >&2
    [ "$served" = "$count" ] || { echo "devstream serves $served of $count; aborting" >&2; exit 1; }
}

# awk reads to the end: exiting at the match could SIGPIPE curl, which with pipefail ended the
# whole script silently (seen in about a third of callgrind runs).
metric() { curl -s "127.0.0.1:$1/metrics" | awk -v m="$2" '$1 == m && !f { print $2; f = 1 }'; }
total_calls() { $R info commandstats | awk -F'[=,:]' '/^cmdstat_/ { s += $3 } END { print s + 0 }'; }
# Microseconds Redis spent running the budget script (EVALSHA and EVAL, the commands the
# script calls included), from INFO commandstats.
script_usec() { $R info commandstats | awk -F'[=,:]' '/^cmdstat_eval(sha)?:/ { s += $5 } END { print s + 0 }'; }

# sink_args TAG: the enricher's sink options for one run; with ENR_BENCH_SINK=ferretdb a
# fresh FerretDB (its own data directory) is started for the run.
FDB_DIRS=()
sink_args() {
    if [ "$SINK" = ferretdb ]; then
        local d=$TMP/fdb-$1
        local uri; uri=$(bash "$ROOT/scripts/ferretdb.sh" start --dir "$d" --owner-pid $$ 2>"$TMP/fdb-$1.err" | head -1) ||
            { cat "$TMP/fdb-$1.err" >&2; exit 1; }
        FDB_DIRS+=("$d")
        echo "--mongo $uri --mongo-w 1"
    fi
}
stop_ferretdb() { [ "$SINK" = ferretdb ] && bash "$ROOT/scripts/ferretdb.sh" stop --dir "$TMP/fdb-$1" >/dev/null 2>&1; return 0; }

# run TOPIC NCAMP IN_SET MODE N BUILD [COUNT [WRAPPER...]]: one timed drain of COUNT (default
# EVENTS) events with BUILD's enricher (plus the options in ENR_ARGS), optionally started
# under WRAPPER (valgrind); prints
# "events/s cmds/event(enricher) calls/event(redis) rss_MiB script_us/event".
run() {
    local topic=$1 ncamp=$2 in_set=$3 mode=$4 n=$5 bin=$6/bin count=${7:-$EVENTS}
    local tagname; tagname=$mode-$n-${LABEL:-$(basename "$6")}
    shift $(($# < 7 ? $# : 7))
    seed "$ncamp" "$in_set"
    local sargs; sargs=$(sink_args "$tagname")
    local before; before=$(total_calls)
    local us_before; us_before=$(script_usec)
    # INSTANCES enrichers (one worker thread each) share one consumer group: mode warm2.
    local group="bench-$tagname-$RANDOM" ports=() pids=() i
    for ((i = 0; i < ${INSTANCES:-1}; i++)); do
        local port; port=$(free_port)
        "$@" "$bin/adtrack-enricher" --brokers "$BS" --group "$group" --topic-raw "$topic" \
            --redis "127.0.0.1:$RPORT" --data-dir "$TMP/sink-$tagname-$i" --listen "127.0.0.1:$port" \
            --batch-size 1000 --batch-max-ms 100 --log-level warn $sargs ${ENR_BENCH_ARGS:-} ${ENR_ARGS:-} 2>"$TMP/enr-$tagname-$i.err" &
        pids+=($!) ports+=("$port")
        PIDS+=($!)
    done
    # sum_metric NAME: the metric summed over the instances (0 when absent).
    sum_metric() { local t=0 p v; for p in "${ports[@]}"; do v=$(metric "$p" "$1" || true); t=$(python3 -c "print(${t} + ${v:-0})"); done; echo "$t"; }
    local t0="" done=0 c0=0
    for _ in $(seq 20000); do
        local v r
        v=$(sum_metric 'adtrack_enricher_events_total{outcome="valid"}')
        r=$(sum_metric 'adtrack_enricher_batches_total')
        if [ -z "$t0" ] && [ "${r%.*}" != "0" ]; then t0=$(date +%s.%N); c0=$v; fi
        if [ "${v%.*}" -ge "$count" ] 2>/dev/null; then done=1; break; fi
        sleep 0.05
    done
    local t1; t1=$(date +%s.%N)
    [ "$done" = 1 ] || { echo "run $tagname: did not drain (see $TMP/enr-$tagname-*.err)" >&2; cat "$TMP"/enr-"$tagname"-*.err >&2; exit 1; }
    local cmds; cmds=$(sum_metric 'adtrack_enricher_redis_commands_total')
    local rss; rss=$(awk '/VmRSS/ { printf "%.1f", $2 / 1024 }' "/proc/${pids[0]}/status")
    local after; after=$(total_calls)
    local us_after; us_after=$(script_usec)
    for i in "${pids[@]}"; do kill -TERM "$i"; done
    for i in "${pids[@]}"; do wait "$i" || true; done
    stop_ferretdb "$tagname"
    python3 -c "
ev=$count; dt=$t1-$t0; done=ev-${c0%.*}
print('%.0f %.4f %.4f %s %.2f' % (done/dt, $cmds/ev, ($after-$before)/ev, '$rss', ($us_after-$us_before)/ev))"
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

echo "# producing $EVENTS events to bench-warm (10 campaigns) and bench-cold (100000 campaigns)" >&2
case " $MODES " in *" warm "* | *" warm2 "*) produce "$WARM_TOPIC" 10 ;; esac
case " $MODES " in *" cold "* | *" rss "*) produce bench-cold 100000 ;; esac
printf '%-5s %-14s %-4s %12s %18s %20s %8s %12s\n' mode build run events_per_s enricher_cmds_per_ev redis_calls_per_ev rss_MiB script_us_per_ev
for mode in $MODES; do
    for v in "${VARIANTS[@]}"; do : >"$TMP/$mode-${v%%|*}.res"; done
    for n in $(seq "$RUNS"); do
        for v in "${VARIANTS[@]}"; do
            label=${v%%|*} rest=${v#*|}
            b=${rest%%|*} args=${rest#*|}
            export LABEL=$label ENR_ARGS=$args
            case $mode in
            warm) out=$(run "$WARM_TOPIC" 10 1 warm "$n" "$b") ;;
            warm2) out=$(INSTANCES=2 run "$WARM_TOPIC" 10 1 warm2 "$n" "$b") ;;
            cold) out=$(run bench-cold 100000 0 cold "$n" "$b") ;;
            rss) out=$(run bench-cold 100000 1 rss "$n" "$b") ;;
            *) echo "unknown mode '$mode'" >&2; exit 2 ;;
            esac
            echo "$out" >>"$TMP/$mode-$label.res"
            printf '%-5s %-14s %-4s %12s %18s %20s %8s %12s\n' "$mode" "$label" "$n" $out
        done
    done
    unset LABEL ENR_ARGS
    for v in "${VARIANTS[@]}"; do
        res=$TMP/$mode-${v%%|*}.res
        printf '%-5s %-14s %-4s %12s %18s %20s %8s %12s\n' "$mode" "${v%%|*}" median \
            "$(cut -d' ' -f1 "$res" | median)" "$(cut -d' ' -f2 "$res" | median)" \
            "$(cut -d' ' -f3 "$res" | median)" "$(cut -d' ' -f4 "$res" | median)" "$(cut -d' ' -f5 "$res" | median)"
    done
    if [ ${#VARIANTS[@]} = 2 ]; then
        first=${VARIANTS[0]%%|*} second=${VARIANTS[1]%%|*}
        a=$(cut -d' ' -f1 "$TMP/$mode-$first.res" | median)
        c=$(cut -d' ' -f1 "$TMP/$mode-$second.res" | median)
        python3 -c "print('%-5s ratio %s/%s events/s medians: %.3f' % ('$mode', '$second', '$first', $c / $a))"
    fi
done

if [ "$SCRIPT_CALLS" -gt 0 ]; then
    printf '%-6s %-14s %-4s %14s %20s\n' script build run ms_per_call redis_us_per_charge
    for b in "${BUILDS[@]}"; do : >"$TMP/script-$(basename "$b").res"; done
    for n in $(seq "$RUNS"); do
        for b in "${BUILDS[@]}"; do
            tool=$b/bin/adtrack-enricher-budget-bench
            [ -x "$tool" ] || { echo "script: $tool missing (a build before it existed); skipped" >&2; continue; }
            out=$("$tool" "$RPORT" "$SCRIPT_CALLS" 1000 10)
            echo "$out" >>"$TMP/script-$(basename "$b").res"
            printf '%-6s %-14s %-4s %14s %20s\n' script "$(basename "$b")" "$n" $out
        done
    done
    for b in "${BUILDS[@]}"; do
        res=$TMP/script-$(basename "$b").res
        [ -s "$res" ] || continue
        printf '%-6s %-14s %-4s %14s %20s\n' script "$(basename "$b")" median "$(cut -d' ' -f1 "$res" | median)" \
            "$(cut -d' ' -f2 "$res" | median)"
    done
fi

if [ "$CG_EVENTS" -gt 0 ]; then
    produce bench-cg 10 "$CG_EVENTS"
    for v in "${VARIANTS[@]}"; do
        label=${v%%|*} rest=${v#*|}
        b=${rest%%|*} args=${rest#*|}
        cg=$TMP/callgrind-$label.out
        LABEL=$label ENR_ARGS=$args run bench-cg 10 1 cg 1 "$b" "$CG_EVENTS" valgrind --tool=callgrind \
            --callgrind-out-file="$cg" --toggle-collect=enr_worker_main >/dev/null
        ir=$(callgrind_annotate "$cg" 2>/dev/null | awk '/PROGRAM TOTALS/ && !s { gsub(",", "", $1); print $1; s = 1 }')
        python3 -c "print('callgrind %-14s worker-thread instructions/event: %.0f (%d events)' % ('$label', $ir / $CG_EVENTS, $CG_EVENTS))"
        if [ -n "${ENR_BENCH_CG_KEEP:-}" ]; then mkdir -p "$ENR_BENCH_CG_KEEP"; cp "$cg" "$ENR_BENCH_CG_KEEP/"; fi
    done
fi
