#!/usr/bin/env bash
# run.sh: install what is missing, build, and run the pipeline locally on embedded defaults:
#
#   adtrack-devstream  in-memory Kafka-protocol cluster (librdkafka mock; dev only) on
#                      127.0.0.1, ephemeral ports
#   adtrack-collector  HTTP on $ADTRACK_LISTEN (default 127.0.0.1:8080), producing to the
#                      devstream, spooling to build/run/spool when Kafka is unreachable
#
# Ctrl-C (or SIGTERM) stops both. Extra arguments are passed to the collector, e.g.
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
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target adtrack-devstream adtrack-collector

for b in adtrack-devstream adtrack-collector; do
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
cleanup() {
  trap - EXIT INT TERM
  local pid
  # Collector first, so it can hand what it holds to Kafka (or its spool) before Kafka goes.
  for pid in $col_pid $ds_pid; do
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

"$bin/adtrack-collector" --listen "$listen" --brokers "$bootstraps" --spool-dir "$rundir/spool" "$@" \
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

cat <<INFO

adtrack is running. Ctrl-C stops both processes.

  adtrack-devstream  pid $ds_pid
      Kafka bootstrap: $bootstraps   (in-memory mock cluster: development only, data dies with it)
      log:      $rundir/devstream.log
      control:  echo 'broker-down 1' > $ctl   (answers in $out; 'help' lists commands)
  adtrack-collector  pid $col_pid
      HTTP:     http://$listen   (/t.gif, /c, /v1/events, /healthz, /readyz, /metrics)
      log:      $rundir/collector.log
      spool:    $rundir/spool

Try:
  curl -si 'http://$listen/t.gif?e=imp&c=cmp-1&p=pub-1'
  kcat -C -b $bootstraps -t adtrack.events.raw -o beginning -e

INFO

# Stay in the foreground until Ctrl-C or until one of the two exits on its own.
set +e
wait -n "$ds_pid" "$col_pid"
rc=$?
set -e
if kill -0 "$ds_pid" 2>/dev/null; then
  echo "run.sh: adtrack-collector exited (status $rc); see $rundir/collector.log" >&2
else
  echo "run.sh: adtrack-devstream exited (status $rc); see $rundir/devstream.log" >&2
fi
exit 1
