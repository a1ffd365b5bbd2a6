#!/usr/bin/env bash
# test.sh: the whole test suite on a Debian 12 machine, from a fresh clone.
#
#   1. scripts/install-deps.sh (installs only what is missing)
#   2. build/       RelWithDebInfo, every target; ctest: unit tests in parallel, then the
#                   integration and end-to-end tests one at a time (they start real
#                   processes: devstream, redis-server, collectors, mockupdb)
#   3. build-asan/  -DADTRACK_SANITIZE=ON (ASan + UBSan); ctest -L unit
#   4. scripts/fuzz.sh 20 (20 s per fuzz target), when that script exists
#
# Every stage runs even when an earlier one failed (except that nothing is tested without a
# build); the exit status is non-zero if anything failed. Set ADTRACK_SKIP_ASAN=1 or
# ADTRACK_SKIP_FUZZ=1 to leave a stage out locally, ADTRACK_BUILD_DIR / ADTRACK_ASAN_BUILD_DIR
# to build elsewhere (scripts/fuzz.sh takes FUZZ_BUILD_DIR).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
jobs=$(nproc 2>/dev/null || echo 2)
build=${ADTRACK_BUILD_DIR:-build}
build_asan=${ADTRACK_ASAN_BUILD_DIR:-build-asan}
failed=()
summary=()
t_start=$SECONDS

stage() { printf '\n==== %s ====\n' "$*"; }

# run_stage <name> <command...>: runs, times and records one stage.
run_stage() {
  local name=$1 t0=$SECONDS rc=0
  shift
  stage "$name"
  "$@" || rc=$?
  local took=$((SECONDS - t0))
  if [[ $rc -eq 0 ]]; then
    summary+=("ok      ${took}s  $name")
  else
    summary+=("FAILED  ${took}s  $name (exit $rc)")
    failed+=("$name")
  fi
  return $rc
}

build_dir() { # build_dir <dir> <cmake args...>: configure, then build all, going past errors
  local dir=$1 keep=()
  shift
  cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" || return
  [[ -f "$dir/Makefile" ]] && keep=(-- -k)
  cmake --build "$dir" -j"$jobs" "${keep[@]}"
}

# Every ctest run's output is kept so the totals can be summed at the end.
ctest_logs=()
ctest_in() { # ctest_in <dir> <ctest args...>
  local dir=$1 log
  shift
  log=$(mktemp)
  ctest_logs+=("$log")
  (cd "$dir" && ctest --output-on-failure "$@") 2>&1 | tee "$log"
  return "${PIPESTATUS[0]}"
}

run_stage "install dependencies" bash scripts/install-deps.sh || true

# Tests run even after a failed build: whatever did build still gets tested, and a test
# whose binary is missing is reported as "Not Run" (a failure).
run_stage "build ($build)" build_dir "$build" || true
if [[ -f "$build/CTestTestfile.cmake" ]]; then
  run_stage "unit tests ($build)" ctest_in "$build" -L unit -j"$jobs" || true
  run_stage "integration and e2e tests ($build)" ctest_in "$build" -LE unit || true
fi

if [[ "${ADTRACK_SKIP_ASAN:-0}" != 1 ]]; then
  # LeakSanitizer needs ptrace-like access that some containers deny; it is on by default and
  # can be turned off from outside with ASAN_OPTIONS=detect_leaks=0.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
  run_stage "ASan/UBSan build ($build_asan)" build_dir "$build_asan" -DADTRACK_SANITIZE=ON || true
  if [[ -f "$build_asan/CTestTestfile.cmake" ]]; then
    run_stage "unit tests under ASan/UBSan ($build_asan)" ctest_in "$build_asan" -L unit -j"$jobs" || true
  fi
fi

if [[ "${ADTRACK_SKIP_FUZZ:-0}" != 1 ]]; then
  if [[ -f scripts/fuzz.sh ]]; then
    run_stage "fuzzing (scripts/fuzz.sh 20)" bash scripts/fuzz.sh 20 || true
  else
    summary+=("skipped     fuzzing (scripts/fuzz.sh not present)")
  fi
fi

stage "summary ($((SECONDS - t_start))s total)"
printf '  %s\n' "${summary[@]}"
# One closing line over all ctest runs: "N passed, N failed".
passed=0 failed_tests=0
for log in "${ctest_logs[@]}"; do
  line=$(grep -E '[0-9]+% tests passed, [0-9]+ tests? failed out of [0-9]+' "$log" | tail -n 1)
  if [[ -n "$line" ]]; then
    f=$(sed -E 's/.* ([0-9]+) tests? failed out of ([0-9]+).*/\1/' <<<"$line")
    t=$(sed -E 's/.* failed out of ([0-9]+).*/\1/' <<<"$line")
    passed=$((passed + t - f))
    failed_tests=$((failed_tests + f))
  fi
  rm -f "$log"
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "test.sh: FAILED: ${failed[*]}"
  echo "$passed passed, $failed_tests failed"
  exit 1
fi
echo "test.sh: all stages passed"
echo "$passed passed, $failed_tests failed"
