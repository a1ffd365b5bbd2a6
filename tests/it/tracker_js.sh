#!/usr/bin/env bash
# Unit tests of web/tracker.js (tests/js/test_tracker.js) in plain node, against a fake
# browser: queued calls, batching into sendBeacon POSTs, the pixel fallback, DNT/GPC,
# viewability timing and signed click links. Also `node --check` on the file the collector
# embeds. Skips (77) only when node is missing; scripts/install-deps.sh provides it.
set -euo pipefail
SRC="${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}"
if ! command -v node > /dev/null 2>&1; then
    echo "SKIP: node is not installed (scripts/install-deps.sh installs it)"
    exit 77
fi
node --check "$SRC/web/tracker.js"
node "$SRC/tests/js/test_tracker.js"
