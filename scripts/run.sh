#!/usr/bin/env bash
# run.sh: install what is missing, build, and run the whole pipeline locally on embedded
# defaults, every part on 127.0.0.1:
#
#   redis-server       the core-data cache and budgets (Debian's binary, a free port, no
#                      persistence; state in the run directory)
#   adtrack-devstream  in-memory Kafka-protocol cluster (librdkafka mock; dev only)
#   adtrack-coredata   admin API on a free port, file store in the run directory, seeded
#                      with the demo data set (adtrack seed demo)
#   adtrack-enricher   consumer group on adtrack.events.raw -> file sink in the run directory
#   adtrack-collector  HTTP on $ADTRACK_LISTEN (default 127.0.0.1:8080), spooling to the run
#                      directory when Kafka is unreachable
#
# Ctrl-C (or SIGTERM) stops everything, collector first. Extra arguments go to the collector, e.g.
#   scripts/run.sh --log-level debug
# Logs and state live in $ADTRACK_RUN_DIR (default <build>/run); ADTRACK_BUILD_DIR picks the
# build directory (default build). Everything devstream holds is lost when it stops.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD
listen=${ADTRACK_LISTEN:-127.0.0.1:8080}
build=${ADTRACK_BUILD_DIR:-build}
case "$build" in /*) ;; *) build=$root/$build ;; esac
rundir=${ADTRACK_RUN_DIR:-$build/run}
bin=$build/bin

bash scripts/install-deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target adtrack-devstream adtrack-collector \
  adtrack-enricher adtrack-coredata adtrack-cli

for b in adtrack-devstream adtrack-collector adtrack-enricher adtrack-coredata adtrack; do
  if [[ ! -x "$bin/$b" ]]; then
    echo "run.sh: $bin/$b was not built" >&2
    exit 1
  fi
done

mkdir -p "$rundir/spool"
ctl=$rundir/devstream.ctl
out=$rundir/devstream.out
rm -f "$ctl" "$out"
mkfifo "$ctl"

ds_pid=
col_pid=
enr_pid=
cd_pid=
redis_pid=
cleanup() {
  trap - EXIT INT TERM
  local pid
  # Collector first, so it can hand what it holds to Kafka (or its spool) before Kafka goes;
  # then the enricher (finishes and commits its batch), coredata, Kafka, Redis.
  for pid in $col_pid $enr_pid $cd_pid $ds_pid $redis_pid; do
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  rm -f "$ctl"
  echo "run.sh: stopped"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# free_port: a TCP port on 127.0.0.1 that nothing listens on right now.
free_port() {
  local p
  for _ in $(seq 1 50); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
      echo "$p"
      return 0
    fi
  done
  return 1
}

# wait_tcp <name> <pid> <port> <log>: polls until the port accepts connections.
wait_tcp() {
  local name=$1 pid=$2 port=$3 log=$4
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    sleep 0.1
  done
  echo "run.sh: $name is not accepting connections on port $port; its log:" >&2
  tail -n 20 "$log" >&2
  exit 1
}

mkdir -p "$rundir/redis" "$rundir/coredata" "$rundir/sink"
redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --dir "$rundir/redis" \
  >"$rundir/redis.log" 2>&1 &
redis_pid=$!
wait_tcp redis-server "$redis_pid" "$redis_port" "$rundir/redis.log"

# devstream reads control commands from a FIFO it holds open read-write (so it never sees
# EOF); its answers and the bootstrap list (first line) go to devstream.out.
"$bin/adtrack-devstream" <>"$ctl" >"$out" 2>"$rundir/devstream.log" &
ds_pid=$!
bootstraps=
for _ in $(seq 1 200); do
  if [[ -s "$out" ]] && IFS= read -r bootstraps <"$out" && [[ -n "$bootstraps" ]]; then
    break
  fi
  if ! kill -0 "$ds_pid" 2>/dev/null; then
    echo "run.sh: adtrack-devstream exited; its log:" >&2
    tail -n 20 "$rundir/devstream.log" >&2
    exit 1
  fi
  sleep 0.1
done
if [[ -z "$bootstraps" ]]; then
  echo "run.sh: adtrack-devstream printed no bootstrap list within 20 s" >&2
  exit 1
fi

# A fresh development admin token and click key for this run (printed below; not secrets
# worth keeping: everything here is local and in memory).
token=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
click_key=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
cd_port=$(free_port)
"$bin/adtrack-coredata" --listen "127.0.0.1:$cd_port" --admin-token "$token" --data-dir "$rundir/coredata" \
  --redis "127.0.0.1:$redis_port" --brokers "$bootstraps" 2>"$rundir/coredata.log" &
cd_pid=$!
wait_tcp adtrack-coredata "$cd_pid" "$cd_port" "$rundir/coredata.log"
"$bin/adtrack" --api "http://127.0.0.1:$cd_port" --token "$token" seed demo >"$rundir/seed.json"

enr_port=$(free_port)
"$bin/adtrack-enricher" --brokers "$bootstraps" --redis "127.0.0.1:$redis_port" --data-dir "$rundir/sink" \
  --listen "127.0.0.1:$enr_port" 2>"$rundir/enricher.log" &
enr_pid=$!
wait_tcp adtrack-enricher "$enr_pid" "$enr_port" "$rundir/enricher.log"

"$bin/adtrack-collector" --listen "$listen" --brokers "$bootstraps" --spool-dir "$rundir/spool" \
  --click-key "$click_key" "$@" \
  2>"$rundir/collector.log" &
col_pid=$!
host=${listen%:*}
port=${listen##*:}
[[ "$host" == 0.0.0.0 || -z "$host" ]] && host=127.0.0.1
up=0
for _ in $(seq 1 200); do
  if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then
    up=1
    break
  fi
  if ! kill -0 "$col_pid" 2>/dev/null; then
    break
  fi
  sleep 0.1
done
if [[ $up -ne 1 ]]; then
  echo "run.sh: adtrack-collector is not accepting connections on $listen; its log:" >&2
  tail -n 20 "$rundir/collector.log" >&2
  exit 1
fi

sig=$(printf '%s' 'https://acme.example/spring' | openssl dgst -sha256 -hmac "$click_key" -binary \
  | base64 -w0 | tr '+/' '-_' | tr -d '=')
cat <<INFO

adtrack is running. Ctrl-C stops everything (collector first).

  adtrack-collector  http://$listen   (/t.gif, /c, /v1/events, /healthz, /readyz, /metrics)
                     log $rundir/collector.log, spool $rundir/spool
  adtrack-enricher   http://127.0.0.1:$enr_port/metrics   log $rundir/enricher.log
                     stored events: $rundir/sink/events-*.jsonl, rejected: $rundir/sink/rejected-*.jsonl
  adtrack-coredata   admin API http://127.0.0.1:$cd_port   token $token
                     log $rundir/coredata.log, store $rundir/coredata (demo data seeded)
  adtrack-devstream  Kafka bootstrap $bootstraps   (in-memory mock cluster: development only)
                     control: echo 'broker-down 1' > $ctl   (answers in $out)
  redis-server       127.0.0.1:$redis_port

Try (the demo campaigns are in $rundir/seed.json; curl's own User-Agent is rejected as a bot,
so these pretend to be a browser):
  UA='Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36'
  curl -si -A "\$UA" 'http://$listen/t.gif?e=imp&c=camp-acme-spring&p=pub-dailynews&pl=top'
  curl -si -A "\$UA" 'http://$listen/c?c=camp-acme-spring&p=pub-dailynews&d=https%3A%2F%2Facme.example%2Fspring&sig=$sig'
  tail -f $rundir/sink/events-*.jsonl        # the enriched event, with names and price
  $bin/adtrack --api http://127.0.0.1:$cd_port --token $token campaign pause camp-acme-spring
  kcat -C -b $bootstraps -t adtrack.events.raw -o beginning -e

Load the stored events into MongoDB unchanged:
  for f in $rundir/sink/events-*.jsonl; do mongoimport --db adtrack --collection events --file "\$f"; done

INFO

# Stay in the foreground until Ctrl-C or until a process exits on its own.
set +e
wait -n "$redis_pid" "$ds_pid" "$cd_pid" "$enr_pid" "$col_pid"
rc=$?
set -e
echo "run.sh: a component exited on its own (status $rc); see the logs in $rundir" >&2
exit 1
