#!/usr/bin/env bash
# up-real.sh: `adtrack up` on real servers. `adtrack up --real` does this itself now (it starts
# a Kafka cluster through scripts/kafka.sh and FerretDB through scripts/ferretdb.sh, and stops
# them on shutdown: docs/UP.md); this wrapper keeps the old options and adds --install.
#
#   scripts/up-real.sh [--nodes 1|3] [--infra-dir DIR] [--no-ferretdb] [--install] [adtrack up options...]
#
#   --nodes N       Kafka nodes (default 1; 3 gives replication factor 3, min ISR 2): --kafka-nodes
#   --infra-dir DIR where the cluster and FerretDB keep their data and logs: --infra-dir
#                   (default <data-dir>/infra, so data/infra as before)
#   --no-ferretdb   real Kafka only, keep the file store and sinks: --kafka real instead of --real
#   --install       run `kafka.sh install` / `ferretdb.sh install` first when needed
# Everything else goes to `adtrack up` as it is.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${ADTRACK_BIN_DIR:-$ROOT/build/bin}/adtrack
real=(--real) install=0
up_args=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --nodes) up_args+=(--kafka-nodes "${2:?}"); shift 2 ;;
    --infra-dir) up_args+=(--infra-dir "${2:?}"); shift 2 ;;
    --no-ferretdb) real=(--kafka real); shift ;;
    --install) install=1; shift ;;
    *) up_args+=("$1"); shift ;;
    esac
done
[[ -x $BIN ]] || { echo "up-real.sh: $BIN not built (cmake --build build)" >&2; exit 2; }
if [[ $install -eq 1 ]]; then
    bash "$ROOT/scripts/kafka.sh" check > /dev/null 2>&1 || bash "$ROOT/scripts/kafka.sh" install > /dev/null
    if [[ ${real[0]} == --real ]]; then
        bash "$ROOT/scripts/ferretdb.sh" check > /dev/null 2>&1 || bash "$ROOT/scripts/ferretdb.sh" install > /dev/null
    fi
fi
exec "$BIN" up "${real[@]}" --scripts-dir "$ROOT/scripts" "${up_args[@]}"
