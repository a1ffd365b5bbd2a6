#!/usr/bin/env bash
# soak.sh: the chaos tests for a long local run (not part of CI).
#
#   scripts/soak.sh [DURATION] [BUILD_DIR] [TEST_REGEX]
#       DURATION   how long each chaos test keeps injecting faults: 10m (default), 90s, 1h
#       BUILD_DIR  a configured and built tree (default build; a sanitizer tree works too)
#       TEST_REGEX which chaos tests (default: all of tests/chaos that take ADTRACK_SOAK)
#
# Each test binary runs directly (not through ctest, whose per-test timeout is 15 min) with
# ADTRACK_SOAK=DURATION and the environment ctest would give it, and prints its figures (requests, outages survived, lost, doubled, RSS at start and end)
# with the "chaos:" prefix; docs/BENCHMARKS.md keeps the figures of a 10-minute run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
duration=${1:-10m}
build=${2:-build}
regex=${3:-'test_(collector|enricher|coredata)_chaos'}

secs=$(awk -v d="$duration" 'BEGIN { n = d + 0; if (d ~ /m$/) n *= 60; else if (d ~ /h$/) n *= 3600; print int(n) }')
if [[ $secs -le 0 ]]; then
  echo "soak.sh: DURATION: expected e.g. 10m, 90s or 1h, got '$duration'" >&2
  exit 2
fi
if [[ ! -f "$build/CTestTestfile.cmake" ]]; then
  echo "soak.sh: $build is not a configured build tree (cmake -S . -B $build && cmake --build $build)" >&2
  exit 2
fi
export ADTRACK_SOAK=$duration
export ADTRACK_BIN_DIR=$PWD/$build/bin ADTRACK_SOURCE_DIR=$PWD ADTRACK_TEST_TMP=$PWD/$build/tests/tmp
mkdir -p "$ADTRACK_TEST_TMP"
rc=0
for t in "$build"/tests/bin/chaos_*; do
  name=$(basename "$t")
  [[ $name =~ $regex ]] || continue
  echo "soak: $name for $duration"
  start=$SECONDS
  if "$t" 2> >(grep -E '^(chaos|enricher-chaos|coredata-chaos|soak):|FAILED|ERROR|LINE' >&2); then
    echo "soak: $name passed after $((SECONDS - start)) s"
  else
    echo "soak: $name FAILED after $((SECONDS - start)) s"
    rc=1
  fi
done
exit $rc
