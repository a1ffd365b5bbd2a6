#!/usr/bin/env bash
# run.sh: install what is missing, build, and run the whole pipeline locally on embedded
# defaults with `adtrack up` (docs/UP.md): redis-server, adtrack-devstream, adtrack-coredata
# seeded with the demo data, an enricher, the dashboard (when built) and the collector on
# $ADTRACK_LISTEN (default 127.0.0.1:8080), all supervised. Ctrl-C stops everything,
# collector first.
#
# Arguments go to `adtrack up` (see build/bin/adtrack up --help), e.g.
#   scripts/run.sh --enrichers 2 --log-level debug
# State and logs live in $ADTRACK_RUN_DIR (default <build>/run; --data-dir overrides it);
# ADTRACK_BUILD_DIR picks the build directory (default build).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${ADTRACK_BUILD_DIR:-build}
case "$build" in /*) ;; *) build=$PWD/$build ;; esac
rundir=${ADTRACK_RUN_DIR:-$build/run}

bash scripts/install-deps.sh
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
targets=(adtrack-devstream adtrack-collector adtrack-enricher adtrack-coredata adtrack-cli)
if cmake --build "$build" --target help | grep -q '\badtrack-dashboard\b'; then
  targets+=(adtrack-dashboard)
fi
cmake --build "$build" -j"$(nproc 2>/dev/null || echo 2)" --target "${targets[@]}"

# --data-dir first, so one given in "$@" wins (the last occurrence of an option counts).
exec "$build/bin/adtrack" up --data-dir "$rundir" "$@"
