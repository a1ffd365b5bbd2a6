#!/usr/bin/env bash
# up-real.sh: `adtrack up` on real servers: a Kafka 4.4 KRaft cluster (scripts/kafka.sh) and
# FerretDB (scripts/ferretdb.sh) instead of devstream and the file sinks. Until `adtrack up`
# grows an option of its own for this, this wrapper is the way (docs/REAL-INFRA.md).
#
#   scripts/up-real.sh [--nodes 1|3] [--infra-dir DIR] [--no-ferretdb] [--install] [adtrack up options...]
#
#   --nodes N       Kafka nodes (default 1; 3 gives replication factor 3, min ISR 2)
#   --infra-dir DIR where the cluster and FerretDB keep their data and logs (default
#                   data/infra); a second run on the same DIR reuses both, data included
#   --no-ferretdb   keep adtrack up's embedded file store and sinks
#   --install       run `kafka.sh install` / `ferretdb.sh install` first when needed
# Everything else goes to `adtrack up` (e.g. --data-dir, --listen, --enrichers). SIGINT or
# SIGTERM stops adtrack up (collector first), then FerretDB and Kafka. Both servers also die
# with this script (--owner-pid), so nothing outlives it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${ADTRACK_BIN_DIR:-$ROOT/build/bin}/adtrack
nodes=1 infra=data/infra ferretdb=1 install=0
up_args=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --nodes) nodes=${2:?}; shift 2 ;;
    --infra-dir) infra=${2:?}; shift 2 ;;
    --no-ferretdb) ferretdb=0; shift ;;
    --install) install=1; shift ;;
    *) up_args+=("$1"); shift ;;
    esac
done
[[ -x $BIN ]] || { echo "up-real.sh: $BIN not built (cmake --build build)" >&2; exit 2; }
mkdir -p "$infra"
infra=$(cd "$infra" && pwd)

if [[ $install -eq 1 ]]; then
    bash "$ROOT/scripts/kafka.sh" check > /dev/null 2>&1 || bash "$ROOT/scripts/kafka.sh" install > /dev/null
    if [[ $ferretdb -eq 1 ]]; then
        bash "$ROOT/scripts/ferretdb.sh" check > /dev/null 2>&1 || bash "$ROOT/scripts/ferretdb.sh" install > /dev/null
    fi
fi

up_pid=""
cleanup() {
    trap - INT TERM EXIT
    if [[ -n $up_pid ]] && kill -0 "$up_pid" 2> /dev/null; then
        kill -TERM "$up_pid" 2> /dev/null || true
        wait "$up_pid" 2> /dev/null || true
    fi
    [[ $ferretdb -eq 1 ]] && bash "$ROOT/scripts/ferretdb.sh" stop --dir "$infra/ferretdb" > /dev/null 2>&1 || true
    bash "$ROOT/scripts/kafka.sh" stop --dir "$infra/kafka" > /dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

brokers=$(bash "$ROOT/scripts/kafka.sh" start --nodes "$nodes" --dir "$infra/kafka" --owner-pid $$ | head -n 1)
real=(--brokers "$brokers")
if [[ $ferretdb -eq 1 ]]; then
    uri=$(bash "$ROOT/scripts/ferretdb.sh" start --dir "$infra/ferretdb" --owner-pid $$ | head -n 1)
    # FerretDB ignores write concerns; w=1 says so instead of pretending to wait for a majority.
    real+=(--mongo "$uri/?w=1")
fi

"$BIN" up "${real[@]}" "${up_args[@]}" &
up_pid=$!
set +e
wait "$up_pid"
rc=$?
set -e
up_pid=""
exit "$rc"
