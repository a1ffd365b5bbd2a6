#!/bin/sh
# kafka-init.sh: creates the adtrack topics of deploy/topics.conf (the one topic definition
# that the real-Kafka tests use too: scripts/kafka.sh topics). Runs once in compose (service
# kafka-init, in the apache/kafka image, whose shell is busybox sh: keep this POSIX).
# Idempotent: existing topics are left as they are (an existing topic keeps its partition
# count and configs; raise partitions with kafka-topics.sh --alter, see docs/DEPLOY.md
# "Partitions").
#
# Environment (defaults fit the single-broker compose setup):
#   KAFKA_BOOTSTRAP       bootstrap server            (kafka:9092)
#   TOPICS_CONF           the topic definitions       (/init/topics.conf, mounted from deploy/)
#   REPLICATION_FACTOR    replicas per partition      (1; production: 3)
#   MIN_INSYNC_REPLICAS   min.insync.replicas         (1; production: 2, with acks=all)
#   RAW_PARTITIONS        partitions of the raw topic (12, from topics.conf): the most
#                         enrichers that can work
# Only the "topic" lines of topics.conf are applied; its "test" lines are for the test
# clusters and never reach a deployment.
set -eu

bootstrap=${KAFKA_BOOTSTRAP:-kafka:9092}
conf=${TOPICS_CONF:-/init/topics.conf}
rf=${REPLICATION_FACTOR:-1}
min_isr=${MIN_INSYNC_REPLICAS:-1}
raw_partitions=${RAW_PARTITIONS:-}
topics=${KAFKA_TOPICS_SH:-/opt/kafka/bin/kafka-topics.sh}

[ -r "$conf" ] || { echo "kafka-init: cannot read $conf" >&2; exit 1; }

# create NAME PARTITIONS [KEY=VALUE]...
create() {
    name=$1
    partitions=$2
    shift 2
    if [ "$name" = adtrack.events.raw ] && [ -n "$raw_partitions" ]; then
        partitions=$raw_partitions
    fi
    set -- --bootstrap-server "$bootstrap" --create --if-not-exists --topic "$name" \
        --partitions "$partitions" --replication-factor "$rf" \
        --config "min.insync.replicas=$min_isr" "$@"
    "$topics" "$@"
}

count=0
# Each "topic NAME PARTITIONS KEY=VALUE..." line becomes one create call, every KEY=VALUE a
# --config (a POSIX shell has no arrays: the words are split on blanks, which topics.conf
# rules out inside values).
while read -r kind name partitions rest || [ -n "$kind" ]; do
    case $kind in
    topic)
        [ -n "$name" ] && [ -n "$partitions" ] || { echo "kafka-init: bad line: topic $name" >&2; exit 1; }
        rest=${rest%%#*}
        # shellcheck disable=SC2086 # word splitting of KEY=VALUE list is intended
        set -- $rest
        args=""
        for kv in "$@"; do
            case $kv in
            *=*) args="$args --config $kv" ;;
            *) echo "kafka-init: $name: expected KEY=VALUE, got $kv" >&2; exit 1 ;;
            esac
        done
        # shellcheck disable=SC2086 # values contain no blanks (topics.conf says so)
        create "$name" "$partitions" $args
        count=$((count + 1))
        ;;
    test | '' | \#*) ;;
    *) echo "kafka-init: unknown line kind $kind in $conf" >&2; exit 1 ;;
    esac
done < "$conf"

[ "$count" -gt 0 ] || { echo "kafka-init: no topic lines in $conf" >&2; exit 1; }

"$topics" --bootstrap-server "$bootstrap" --describe \
    --topic 'adtrack\..*'
echo "kafka-init: $count topics ready"
