#!/bin/sh
# kafka-init.sh: creates the adtrack topics. Runs once in compose (service kafka-init, in the
# apache/kafka image, whose shell is busybox sh: keep this POSIX). Idempotent: existing topics
# are left as they are (an existing topic keeps its partition count; raise it with
# kafka-topics.sh --alter, see docs/DEPLOY.md "Partitions").
#
# Environment (defaults fit the single-broker compose setup):
#   KAFKA_BOOTSTRAP       bootstrap server            (kafka:9092)
#   REPLICATION_FACTOR    replicas per partition      (1; production: 3)
#   MIN_INSYNC_REPLICAS   min.insync.replicas         (1; production: 2, with acks=all)
#   RAW_PARTITIONS        partitions of the raw topic (12): the most enrichers that can work
set -eu

bootstrap=${KAFKA_BOOTSTRAP:-kafka:9092}
rf=${REPLICATION_FACTOR:-1}
min_isr=${MIN_INSYNC_REPLICAS:-1}
raw_partitions=${RAW_PARTITIONS:-12}
topics=/opt/kafka/bin/kafka-topics.sh

create() {
    name=$1
    partitions=$2
    shift 2
    "$topics" --bootstrap-server "$bootstrap" --create --if-not-exists --topic "$name" \
        --partitions "$partitions" --replication-factor "$rf" \
        --config "min.insync.replicas=$min_isr" "$@"
}

# Raw events: keyed by campaign. Retention 7 days stays below the enricher's
# --replay-window-days (8): a replay older than the window could be charged again.
create adtrack.events.raw "$raw_partitions" --config retention.ms=604800000
create adtrack.events.rejected 3 --config retention.ms=604800000
create adtrack.coredata.updates 1 --config retention.ms=604800000
# Core-data changes: compacted, one partition (global version order; docs/COREDATA.md).
create adtrack.coredata.changes 1 --config cleanup.policy=compact

"$topics" --bootstrap-server "$bootstrap" --describe \
    --topic 'adtrack\..*'
echo "kafka-init: topics ready"
