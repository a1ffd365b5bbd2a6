#!/usr/bin/env bash
# LABELS: realkafka
# Integration test (real Kafka, 1 node; skipped with 77 unless `scripts/kafka.sh install` ran):
# Debian's kcat (librdkafka 2.0.2, the library our binaries link) against Apache Kafka 4.x,
# through tests/support/infra_it.sh:
#   1. metadata: one broker, the adtrack topics of deploy/topics.conf with their partitions;
#   2. idempotent produce with acks=all, read back complete;
#   3. a consumer group (-G) commits; the same group started again gets nothing more;
#   4. the compacted changes topic (test profile of deploy/topics.conf): 40 versions of two
#      keys shrink to the latest of each within 90 s (segment rolled after segment.ms, the
#      cleaner's 1 s backoff), so compaction can be shown in a test.
set -euo pipefail

source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/infra_it.sh"
command -v kcat > /dev/null || { echo "skipped: kcat not installed (scripts/install-deps.sh)"; exit 77; }
infra_require kafka
trap infra_cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }

infra_kafka_start 1
B=$KAFKA_BOOTSTRAP
echo "cluster: $B ($KAFKA_DIR)"

# 1. Metadata (MetadataRequest v4).
md=$(kcat -L -b "$B")
grep -q ' 1 brokers:' <<< "$md" || fail "kcat -L: expected 1 broker: $md"
for t in adtrack.events.raw:12 adtrack.events.rejected:3 adtrack.coredata.updates:1 adtrack.coredata.changes:1; do
    grep -q "topic \"${t%%:*}\" with ${t##*:} partitions" <<< "$md" || fail "kcat -L: ${t%%:*} with ${t##*:} partitions missing"
done

# 2. Idempotent produce, acks=all (InitProducerId v4, Produce v7).
seq 1 500 | sed 's/^/k&:v/' | kcat -P -q -b "$B" -t adtrack.events.raw -K: \
    -X enable.idempotence=true -X acks=all -X message.timeout.ms=60000 || fail "kcat -P failed"
n=$(timeout 60 kcat -C -q -b "$B" -t adtrack.events.raw -o beginning -e | wc -l)
[[ $n -eq 500 ]] || fail "read back $n messages, want 500"

# 3. Consumer group with commits (JoinGroup v5, SyncGroup v3, OffsetCommit, OffsetFetch v7).
group="realkafka-kcat-$$"
n=$(timeout 60 kcat -q -b "$B" -G "$group" -X auto.offset.reset=earliest -e adtrack.events.raw | wc -l)
[[ $n -eq 500 ]] || fail "group $group read $n messages, want 500"
n=$(timeout 60 kcat -q -b "$B" -G "$group" -X auto.offset.reset=earliest -e adtrack.events.raw | wc -l)
[[ $n -eq 0 ]] || fail "group $group read $n messages again after its commit, want 0"

# 4. Compaction of adtrack.coredata.changes.
for v in $(seq 1 20); do printf 'campaign:a|{"v":%d}\ncampaign:b|{"v":%d}\n' "$v" "$v"; done |
    kcat -P -q -b "$B" -t adtrack.coredata.changes -K '|' -X enable.idempotence=true || fail "kcat -P changes"
start=$SECONDS
deadline=$((SECONDS + 90))
compacted=0
while ((SECONDS < deadline)); do
    # A segment rolls only when a message arrives after segment.ms (5 s in the test profile):
    # keep appending a marker so the segment with the 40 versions gets closed and cleaned.
    echo 'roll|{}' | kcat -P -q -b "$B" -t adtrack.coredata.changes -K '|' || fail "kcat -P roll"
    out=$(timeout 30 kcat -C -q -b "$B" -t adtrack.coredata.changes -o beginning -e -f '%k=%s\n')
    a=$(grep -c '^campaign:a=' <<< "$out" || true)
    b=$(grep -c '^campaign:b=' <<< "$out" || true)
    if [[ $a -eq 1 && $b -eq 1 ]]; then
        grep -qx 'campaign:a={"v":20}' <<< "$out" || fail "compaction kept the wrong version of a: $out"
        grep -qx 'campaign:b={"v":20}' <<< "$out" || fail "compaction kept the wrong version of b: $out"
        compacted=1
        break
    fi
    sleep 1
done
[[ $compacted -eq 1 ]] || fail "adtrack.coredata.changes not compacted within 90 s (a: $a, b: $b versions left)"
echo "ok: kcat metadata, idempotent produce, group commit; changes topic compacted after $((SECONDS - start)) s"
