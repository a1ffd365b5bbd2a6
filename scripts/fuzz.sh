#!/usr/bin/env bash
# Builds the libFuzzer targets with clang and runs each for N seconds (default 30).
#   scripts/fuzz.sh [seconds]
# Environment:
#   FUZZ_BUILD_DIR  build directory (default build-fuzz, relative to the repository root)
#   FUZZ_TARGETS    targets to run (default "query batch envelope coredata")
#   FUZZ_JOBS       parallel fuzzing processes per target (default 1; see docs/FUZZING.md)
#   FUZZ_ARGS       extra libFuzzer flags
# Exits non-zero if any target crashes, leaks, times out or breaks an invariant; the input
# that did it is saved under $FUZZ_BUILD_DIR/fuzz-artifacts/<target>/.
set -euo pipefail

secs=${1:-30}
case "$secs" in '' | *[!0-9]*) echo "usage: $0 [seconds]" >&2; exit 2 ;; esac

root=$(cd "$(dirname "$0")/.." && pwd)
build=${FUZZ_BUILD_DIR:-build-fuzz}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
targets=${FUZZ_TARGETS:-query batch envelope postback coredata}
jobs=${FUZZ_JOBS:-1}

export CC=clang
mkdir -p "$build"
cmake -S "$root" -B "$build" -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DADTRACK_FUZZ=ON -DADTRACK_TESTS=ON >"$build/configure.log" 2>&1 || {
    cat "$build/configure.log" >&2
    exit 1
}
build_targets=()
for t in $targets; do build_targets+=("fuzz_$t"); done
# Only the fuzz targets: unrelated parts of the tree need not compile for this to work.
cmake --build "$build" --target "${build_targets[@]}" -j"$(nproc)"

status=0
for t in $targets; do
    bin="$build/tests/bin/fuzz_$t"
    seeds="$root/tests/fuzz/corpus/$t"
    work="$build/fuzz-corpus/$t" # grows with what the fuzzer finds; kept out of the repo
    artifacts="$build/fuzz-artifacts/$t/"
    mkdir -p "$work" "$artifacts"
    dict=()
    [ -f "$root/tests/fuzz/$t.dict" ] && dict=(-dict="$root/tests/fuzz/$t.dict")
    par=()
    [ "$jobs" -gt 1 ] && par=(-jobs="$jobs" -workers="$jobs")
    echo "== fuzz_$t: ${secs}s, jobs $jobs" >&2
    # shellcheck disable=SC2086
    if ! (cd "$build" && "$bin" -max_total_time="$secs" -max_len=16384 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$artifacts" "${dict[@]}" "${par[@]}" ${FUZZ_ARGS:-} "$work" "$seeds"); then
        echo "fuzz_$t FAILED; reproduce with: $bin $artifacts<file>" >&2
        status=1
    fi
done
exit $status
