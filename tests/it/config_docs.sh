#!/usr/bin/env bash
# docs/CONFIGURATION.md must match what the binaries' config tables generate.
set -euo pipefail
src=${ADTRACK_SOURCE_DIR:?}
bin=${ADTRACK_BIN_DIR:?}
tmp=$(mktemp)
trap 'rm -f "$tmp" "$tmp.tmp"' EXIT
"$src/scripts/gen-config-docs.sh" "$bin" "$tmp" > /dev/null
if ! diff -u "$src/docs/CONFIGURATION.md" "$tmp"; then
    echo "docs/CONFIGURATION.md is stale: run scripts/gen-config-docs.sh and commit the result" >&2
    exit 1
fi
echo "docs/CONFIGURATION.md is up to date"
