#!/usr/bin/env bash
# kafka.sh: real Apache Kafka (KRaft) clusters on 127.0.0.1 for adtrack's tests, benchmarks
# and `adtrack up`: 1 or 3 combined broker+controller nodes on free ports, one JVM each,
# started by this script (never a system service). See docs/REAL-INFRA.md.
#
#   scripts/kafka.sh install [--version V]
#       Downloads the broker's jars from Maven Central (tools/kafka/pom.xml, pinned) into the
#       cache and compiles tools/kafka/AdtrackKafkaAdmin.java. Idempotent: a second call
#       only checks the cache. Prints the install directory.
#   scripts/kafka.sh check [--version V]
#       Exit 0 if installed (and Java 17+ is there), 3 if not. Starts no JVM.
#   --version V: which pinned Kafka. Default 4.4.0 (tools/kafka/pom.xml), used by every test,
#       `adtrack up` and deploy/. The only other one is 3.9.1 (tools/kafka/pom-3.9.xml, its
#       own cache directory): a Kafka 3.x broker, because Kafka 4.x refuses the SCRAM proof of
#       Debian 12's librdkafka 2.0.2 (librdkafka#4895) and it/realkafka_sasl verifies SCRAM
#       against 3.9.1 instead (docs/SECURITY.md). `start --version V` on a new DIR records V in
#       DIR/cluster.env; every later command on that DIR uses the recorded version.
#   scripts/kafka.sh start --dir DIR [--nodes 1|3] [--no-topics] [--profile test|production]
#                          [--partitions NAME=N]... [--heap SIZE] [--timeout SEC] [--owner-pid PID]
#                          [--sasl-ssl] [--version V]
#       Formats the KRaft storage (first time only), starts the nodes and waits (bounded)
#       until every broker is registered, the adtrack topics of deploy/topics.conf exist with
#       every partition fully replicated, and the group coordinator answers. The first
#       stdout line (and DIR/bootstrap) is the bootstrap list. On a DIR whose cluster was
#       stopped, the same cluster (data kept) starts again; on a running one it only prints
#       the bootstrap list. With --owner-pid, a watchdog SIGKILLs the nodes once PID is gone,
#       so a test that dies leaves no broker behind.
#       --sasl-ssl (on a new DIR): every node also gets a SASL_SSL listener, as MSK and
#       Confluent Cloud have, with a test CA and broker certificate made by openssl in
#       DIR/tls/ (ca.pem; other-ca.pem signed nothing: for "untrusted" tests), SCRAM-SHA-512
#       user adtrack-scram (added at format time, StorageTool --add-scram) and PLAIN user
#       adtrack-plain, random passwords in DIR/sasl/scram.password and plain.password (0600).
#       Its bootstrap list is in DIR/sasl_ssl.bootstrap (the first stdout line stays the
#       PLAINTEXT one, which the admin steps and inter-broker traffic use). docs/SECURITY.md.
#   scripts/kafka.sh stop --dir DIR [--timeout SEC] [--kill]
#       SIGTERM to every node (controlled shutdown), SIGKILL to what is left after SEC
#       (default 30); --kill sends SIGKILL at once. DIR (data, logs) is kept.
#   scripts/kafka.sh kill-node  --dir DIR --node N      SIGKILL node N (a crash)
#   scripts/kafka.sh stop-node  --dir DIR --node N [--timeout SEC]   SIGTERM (a clean stop)
#   scripts/kafka.sh start-node --dir DIR --node N [--no-wait-isr] [--timeout SEC]
#       Starts node N again and waits until it is registered and, when every node runs,
#       until no partition is under-replicated (the node caught up).
#   scripts/kafka.sh topics --dir DIR [--profile test|production] [--partitions NAME=N]...
#       Creates the topics of deploy/topics.conf that do not exist yet.
#   scripts/kafka.sh describe --dir DIR [--topic NAME]
#       Every partition's leader, replicas and ISR; with --topic, that topic's configs.
#   scripts/kafka.sh status|bootstrap --dir DIR
#
# Exit status: 0 ok; 1 failed (the reason and the tail of the node logs on stderr);
# 2 usage; 3 not installed (run `scripts/kafka.sh install`; tests treat this as "skip").
#
# Environment:
#   ADTRACK_CACHE_DIR       download and build cache (default $HOME/.cache/adtrack)
#   ADTRACK_KAFKA_HEAP      -Xmx of each broker (default 320m; --heap overrides)
#   ADTRACK_KAFKA_JAVA_OPTS extra JVM options for the brokers
#   JAVA_HOME               the Java 17+ to use (default: java on PATH)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SELF="$ROOT/scripts/kafka.sh"
POM="$ROOT/tools/kafka/pom.xml"
ADMIN_SRC="$ROOT/tools/kafka/AdtrackKafkaAdmin.java"
TOPICS_CONF="$ROOT/deploy/topics.conf"
CACHE=${ADTRACK_CACHE_DIR:-$HOME/.cache/adtrack}
# shellcheck source=scripts/infra-lib.sh
source "$ROOT/scripts/infra-lib.sh"

die() { echo "kafka.sh: $*" >&2; exit 1; }
usage() { echo "kafka.sh: $*" >&2; echo "usage: see the comment at the top of $SELF" >&2; exit 2; }
note() { echo "kafka.sh: $*" >&2; }

java_bin() {
    if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/java ]]; then echo "$JAVA_HOME/bin/java"; else command -v java || true; fi
}
javac_bin() {
    if [[ -n ${JAVA_HOME:-} && -x $JAVA_HOME/bin/javac ]]; then echo "$JAVA_HOME/bin/javac"; else command -v javac || true; fi
}

pom_version() { sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$1" | head -n 1; }
kafka_version() { pom_version "$POM"; }

# select_version V: POM becomes the tools/kafka/pom*.xml whose kafka.version is V.
select_version() {
    local v=$1 f known=""
    for f in "$ROOT"/tools/kafka/pom*.xml; do
        if [[ $(pom_version "$f") == "$v" ]]; then
            POM=$f
            return 0
        fi
        known+="${known:+, }$(pom_version "$f")"
    done
    usage "--version $v: not pinned here (known: $known)"
}

# The install directory depends on everything that goes into it: a changed POM or admin tool
# gets a fresh directory, and an old one is simply no longer used.
install_home() {
    local key
    key=$(cat "$POM" "$ADMIN_SRC" | sha256sum | cut -c1-12)
    echo "$CACHE/kafka/$(kafka_version)-$key"
}

check_java() {
    local java v
    java=$(java_bin)
    [[ -n $java ]] || { note "no java on PATH (Java 17 or newer; Debian: openjdk-17-jre-headless)"; return 1; }
    v=$("$java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
    if [[ -z $v || ${v%%.*} -lt 17 ]]; then
        note "$java is Java ${v:-?}; Kafka 4 brokers need Java 17 or newer (set JAVA_HOME)"
        return 1
    fi
}

cmd_install() {
    local home tmp t0
    home=$(install_home)
    if [[ -f $home/.complete ]]; then
        note "Kafka $(kafka_version) already installed in $home"
        echo "$home"
        return 0
    fi
    check_java || exit 1
    command -v mvn > /dev/null || die "mvn not found (Debian: maven)"
    [[ -n $(javac_bin) ]] || die "javac not found (Debian: openjdk-17-jdk-headless)"
    mkdir -p "$CACHE/kafka"
    # One installer at a time (tests may run side by side); the second one finds it done.
    exec 8> "$CACHE/kafka/.install.lock"
    flock -w 900 8 || die "another install holds $CACHE/kafka/.install.lock for 15 minutes"
    if [[ -f $home/.complete ]]; then
        echo "$home"
        return 0
    fi
    t0=$(now_ms)
    tmp=$(mktemp -d "$CACHE/kafka/.tmp.XXXXXX")
    note "downloading Kafka $(kafka_version) from Maven Central into $CACHE/m2 (first time: about 60 MB)"
    # -f with an absolute POM path; the build directory (target/) goes to the temporary
    # directory, so a read-only checkout works.
    if ! (cd "$tmp" && mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$CACHE/m2" -f "$POM" \
            -Dproject.build.directory="$tmp/target" \
            dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$tmp/libs" >&2); then
        rm -rf "$tmp"
        die "mvn dependency:copy-dependencies failed (see above)"
    fi
    if ! "$(javac_bin)" -nowarn -d "$tmp/classes" -cp "$tmp/libs/*" "$ADMIN_SRC" >&2; then
        rm -rf "$tmp"
        die "javac $ADMIN_SRC failed"
    fi
    rm -rf "$tmp/target"
    echo "kafka=$(kafka_version)" > "$tmp/.complete"
    rm -rf "$home"
    mv "$tmp" "$home"
    note "installed Kafka $(kafka_version) in $home ($(( ($(now_ms) - t0) / 1000 )) s)"
    echo "$home"
}

require_installed() {
    HOME_DIR=$(install_home)
    if [[ ! -f $HOME_DIR/.complete ]]; then
        note "Kafka $(kafka_version) is not installed (run: scripts/kafka.sh install)"
        exit 3
    fi
    check_java || exit 3
    JAVA=$(java_bin)
}

# admin <command> [args...]: tools/kafka/AdtrackKafkaAdmin in a short-lived JVM.
admin() {
    "$JAVA" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData \
        -Dlog4j2.configurationFile="$ROOT/tools/kafka/log4j2-cli.xml" \
        -cp "$HOME_DIR/classes:$HOME_DIR/libs/*" AdtrackKafkaAdmin "$@"
}


# --- cluster directory ------------------------------------------------------------------
# DIR/cluster.env   NODES, CLUSTER_ID, RF, MIN_ISR, PORT_<n>, CPORT_<n>, BOOTSTRAP
# DIR/bootstrap     the bootstrap list
# DIR/node-<n>/     server.properties, data/, logs/ (server.log, stdout.log), pid
# DIR/watchdog.pid  the --owner-pid watchdog

load_cluster() {
    [[ -f $DIR/cluster.env ]] || die "$DIR has no cluster (cluster.env missing; use start)"
    # shellcheck disable=SC1091
    source "$DIR/cluster.env"
}

node_pid() { # prints the live pid of node $1, or nothing
    infra_pid_is "$DIR/node-$1/pid" "$DIR/node-$1/server.properties"
}

running_nodes() {
    local n c=0
    for ((n = 1; n <= NODES; n++)); do [[ -n $(node_pid "$n") ]] && c=$((c + 1)); done
    echo "$c"
}

tail_logs() { # tail_logs <node>: the end of a node's logs, for a failure message
    local d="$DIR/node-$1/logs" f
    for f in "$d/stdout.log" "$d/server.log"; do
        [[ -s $f ]] || continue
        echo "---- node $1: $f (last 15 lines) ----" >&2
        tail -n 15 "$f" >&2
    done
}

write_cluster() {
    local ports voters="" bootstrap="" sbootstrap="" n p c sp i=0 per=2
    [[ $SASL_SSL -eq 1 ]] && per=3
    read -r -a ports <<< "$(infra_free_ports $((per * NODES)))"
    [[ ${#ports[@]} -eq $((per * NODES)) ]] || die "could not find $((per * NODES)) free ports"
    # A random UUID in Kafka's form (URL-safe base64, no padding). One starting with '-'
    # would be read as an option by StorageTool's argument parser (1 in 64): Kafka's own
    # Uuid.randomUuid() skips those too.
    CLUSTER_ID=-
    while [[ $CLUSTER_ID == -* ]]; do
        CLUSTER_ID=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')
    done
    if [[ $NODES -eq 1 ]]; then RF=1 MIN_ISR=1; else RF=3 MIN_ISR=2; fi
    {
        echo "NODES=$NODES"
        echo "KAFKA_VERSION=$(kafka_version)"
        echo "CLUSTER_ID=$CLUSTER_ID"
        echo "RF=$RF"
        echo "MIN_ISR=$MIN_ISR"
        for ((n = 1; n <= NODES; n++)); do
            p=${ports[i]} c=${ports[i + 1]}
            echo "PORT_$n=$p"
            echo "CPORT_$n=$c"
            if [[ $SASL_SSL -eq 1 ]]; then
                sp=${ports[i + 2]}
                echo "SPORT_$n=$sp"
                sbootstrap+="${sbootstrap:+,}127.0.0.1:$sp"
            fi
            i=$((i + per))
            voters+="${voters:+,}$n@127.0.0.1:$c"
            bootstrap+="${bootstrap:+,}127.0.0.1:$p"
        done
        echo "VOTERS=$voters"
        echo "BOOTSTRAP=$bootstrap"
        echo "SASL_SSL=$SASL_SSL"
        echo "SASL_BOOTSTRAP=$sbootstrap"
    } > "$DIR/cluster.env.tmp"
    mv "$DIR/cluster.env.tmp" "$DIR/cluster.env"
    load_cluster
    local scram_pw="" plain_pw="" format_extra=()
    if [[ $SASL_SSL -eq 1 ]]; then
        infra_make_certs "$DIR/tls" broker || die "making the test certificates failed"
        mkdir -p "$DIR/sasl"
        chmod 0700 "$DIR/sasl"
        scram_pw=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
        plain_pw=$(head -c 18 /dev/urandom | base64 | tr '+/' '-_')
        (umask 077 && printf '%s\n' "$scram_pw" > "$DIR/sasl/scram.password" &&
            printf '%s\n' "$plain_pw" > "$DIR/sasl/plain.password")
        format_extra=(--add-scram "SCRAM-SHA-512=[name=adtrack-scram,password=$scram_pw]")
        echo "$SASL_BOOTSTRAP" > "$DIR/sasl_ssl.bootstrap"
    fi
    for ((n = 1; n <= NODES; n++)); do
        local port_var=PORT_$n cport_var=CPORT_$n sport_var=SPORT_$n node="$DIR/node-$n"
        local listeners="PLAINTEXT://127.0.0.1:${!port_var},CONTROLLER://127.0.0.1:${!cport_var}"
        local advertised="PLAINTEXT://127.0.0.1:${!port_var}" protomap="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
        if [[ $SASL_SSL -eq 1 ]]; then
            listeners+=",SASL_SSL://127.0.0.1:${!sport_var}"
            advertised+=",SASL_SSL://127.0.0.1:${!sport_var}"
            protomap+=",SASL_SSL:SASL_SSL"
        fi
        # The share-group state topic exists from Kafka 4.0 on; 3.x would only warn about
        # unknown settings, but its server.properties should hold none.
        local share_props=""
        if [[ ${KAFKA_VERSION%%.*} -ge 4 ]]; then
            share_props="share.coordinator.state.topic.replication.factor=$RF
share.coordinator.state.topic.min.isr=$MIN_ISR"
        fi
        mkdir -p "$node/data" "$node/logs"
        (umask 077 && : > "$node/server.properties")
        cat > "$node/server.properties" <<EOF
# Written by scripts/kafka.sh: node $n of $NODES, combined broker and controller (KRaft).
process.roles=broker,controller
node.id=$n
controller.quorum.voters=$VOTERS
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protomap
log.dirs=$node/data

# Replication as in production (docs/DEPLOY.md): with 3 nodes every partition has 3 replicas
# and acks=all needs 2 in sync; internal topics alike.
default.replication.factor=$RF
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$RF
transaction.state.log.replication.factor=$RF
transaction.state.log.min.isr=$MIN_ISR
$share_props
unclean.leader.election.enable=false
# Topics come from deploy/topics.conf, never from a producer's typo.
auto.create.topics.enable=false
num.partitions=1

# Test-sized: fewer internal partitions (they only spread group coordinators) and no 3 s
# wait before the first rebalance.
offsets.topic.num.partitions=12
transaction.state.log.num.partitions=12
group.initial.rebalance.delay.ms=0

# Up to 3 brokers share 2 cores with the services under test: few threads each.
num.network.threads=2
num.io.threads=4
background.threads=4
num.replica.fetchers=1
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
# The cleaner looks for work every second (default 15 s) so compaction shows in tests, with
# a 16 MiB dedupe buffer (default 128 MiB, which would not fit the heap).
log.cleaner.backoff.ms=1000
log.cleaner.dedupe.buffer.size=16777216
EOF
        if [[ $SASL_SSL -eq 1 ]]; then
            cat >> "$node/server.properties" <<EOF

# --sasl-ssl: the listener the clients under test use (SCRAM-SHA-512 and PLAIN over TLS).
# SCRAM credentials live in the cluster metadata (added at format time); PLAIN users are
# listed here. The keystore is one PEM file: unencrypted PKCS#8 key, then the certificate.
listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,PLAIN
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_adtrack-plain="$plain_pw";
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$DIR/tls/broker.chain.pem
EOF
        fi
    done
    # Format every node's storage (in parallel: each is a JVM start).
    local pids=() rc=0
    for ((n = 1; n <= NODES; n++)); do
        "$JAVA" -Xmx128m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:-UsePerfData \
            -Dlog4j2.configurationFile="$ROOT/tools/kafka/log4j2-cli.xml" \
            -cp "$HOME_DIR/libs/*" kafka.tools.StorageTool format --ignore-formatted \
            -t "$CLUSTER_ID" -c "$DIR/node-$n/server.properties" "${format_extra[@]}" > "$DIR/node-$n/logs/format.log" 2>&1 &
        pids+=($!)
    done
    for ((n = 1; n <= NODES; n++)); do
        if ! wait "${pids[n - 1]}"; then
            rc=1
            echo "---- node $n: StorageTool format ----" >&2
            cat "$DIR/node-$n/logs/format.log" >&2
        fi
    done
    [[ $rc -eq 0 ]] || die "formatting the KRaft storage failed"
}

start_node_process() { # start_node_process <n>: starts the JVM of node n unless it runs
    local n=$1 node pid heap
    node="$DIR/node-$n"
    [[ -n $(node_pid "$n") ]] && return 0
    heap=${HEAP:-${ADTRACK_KAFKA_HEAP:-320m}}
    mkdir -p "$node/logs"
    # 9>&-: the broker must not inherit the start lock (fd 9), or every later `start` on this
    # running cluster would wait for it and fail instead of printing the bootstrap list.
    # stdin, stdout and stderr all redirected: a caller reading our output (ts_run) must see
    # EOF when this script exits, not when the broker does. setsid: not in the caller's
    # process group, so a terminal's Ctrl-C is for the caller; --owner-pid covers the rest.
    # shellcheck disable=SC2086
    setsid "$JAVA" -Xms64m "-Xmx$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent \
        -XX:+ExitOnOutOfMemoryError -XX:-UsePerfData -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$ROOT/tools/kafka/log4j2-broker.xml" -Dkafka.logs.dir="$node/logs" \
        ${ADTRACK_KAFKA_JAVA_OPTS:-} \
        -cp "$HOME_DIR/libs/*" kafka.Kafka "$node/server.properties" \
        < /dev/null >> "$node/logs/stdout.log" 2>&1 9>&- &
    pid=$!
    echo "$pid" > "$node/pid"
}

wait_node_port() { # wait_node_port <n> <deadline_ms>
    local n=$1 deadline=$2 port_var=PORT_$1
    local pid
    pid=$(cat "$DIR/node-$n/pid" 2> /dev/null || true)
    while ! infra_port_open "${!port_var}"; do
        # kill -0 on the recorded pid, not node_pid: right after the fork the child's
        # command line is still the shell's.
        if [[ -z $pid ]] || ! kill -0 "$pid" 2> /dev/null; then
            tail_logs "$n"
            die "node $n exited during start-up"
        fi
        if (($(now_ms) > deadline)); then
            tail_logs "$n"
            die "node $n does not accept connections on 127.0.0.1:${!port_var}"
        fi
        sleep 0.1
    done
}

start_watchdog() { # start_watchdog <owner-pid>
    local owner=$1 old
    old=$(cat "$DIR/watchdog.pid" 2> /dev/null || true)
    if [[ -n $old ]] && kill -0 "$old" 2> /dev/null; then
        kill "$old" 2> /dev/null || true
    fi
    setsid bash "$SELF" _watchdog --dir "$DIR" --owner-pid "$owner" < /dev/null > /dev/null 2>> "$DIR/watchdog.log" 9>&- &
    echo $! > "$DIR/watchdog.pid"
}

cmd_watchdog() {
    # Runs until the owner is gone (then SIGKILLs every node) or until this watchdog is no
    # longer the one recorded in DIR/watchdog.pid (stop, or a newer watchdog).
    load_cluster
    local n pid
    while [[ $(cat "$DIR/watchdog.pid" 2> /dev/null || true) == "$$" ]]; do
        if ! kill -0 "$OWNER" 2> /dev/null; then
            echo "kafka.sh watchdog: owner $OWNER is gone: killing the nodes of $DIR" >&2
            for ((n = 1; n <= NODES; n++)); do
                pid=$(node_pid "$n")
                [[ -n $pid ]] && kill -9 "$pid" 2> /dev/null
            done
            rm -f "$DIR/watchdog.pid"
            exit 0
        fi
        sleep 1
    done
}

cmd_start() {
    local t0 deadline n state
    t0=$(now_ms)
    deadline=$((t0 + TIMEOUT * 1000))
    mkdir -p "$DIR"
    exec 9> "$DIR/.lock"
    flock -w "$TIMEOUT" 9 || die "$DIR is locked by another kafka.sh"
    if [[ -f $DIR/cluster.env ]]; then
        load_cluster
        [[ -z $WANT_NODES || $WANT_NODES -eq $NODES ]] || die "$DIR holds a $NODES-node cluster, not $WANT_NODES (use another --dir)"
        state="existing"
    else
        NODES=${WANT_NODES:-1}
        [[ $NODES -ge 1 && $NODES -le 9 ]] || usage "--nodes $NODES: expected 1..9"
        write_cluster
        state="new"
    fi
    for ((n = 1; n <= NODES; n++)); do start_node_process "$n"; done
    [[ -n $OWNER ]] && start_watchdog "$OWNER"
    for ((n = 1; n <= NODES; n++)); do wait_node_port "$n" "$deadline"; done
    if ! admin wait-brokers --bootstrap "$BOOTSTRAP" --brokers "$NODES" --timeout-ms "$(left_ms "$deadline")"; then
        for ((n = 1; n <= NODES; n++)); do tail_logs "$n"; done
        die "the cluster in $DIR did not come up: $NODES brokers not registered in time"
    fi
    if [[ $TOPICS -eq 1 ]]; then
        create_topics "$deadline" || die "creating the topics failed"
    fi
    echo "$BOOTSTRAP" > "$DIR/bootstrap"
    note "$NODES-node cluster ($state) ready in $(( $(now_ms) - t0 )) ms: $BOOTSTRAP (dir $DIR)"
    echo "$BOOTSTRAP"
}

left_ms() { local l=$(($1 - $(now_ms))); ((l < 1000)) && l=1000; echo "$l"; }

create_topics() { # create_topics <deadline_ms>
    local args=(create-topics --bootstrap "$BOOTSTRAP" --file "$TOPICS_CONF" --profile "$PROFILE"
        --replication-factor "$RF" --min-isr "$MIN_ISR" --timeout-ms "$(left_ms "$1")") p
    for p in "${PARTITIONS[@]}"; do args+=(--partitions "$p"); done
    admin "${args[@]}"
}

cmd_topics() {
    local deadline=$(($(now_ms) + TIMEOUT * 1000))
    load_cluster
    create_topics "$deadline"
}

stop_pids() { # stop_pids <signal> <timeout-s> <node>...: signal the nodes, wait, then SIGKILL
    local sig=$1 timeout=$2 n pid deadline left
    shift 2
    local -a nodes=("$@") pids=()
    for n in "${nodes[@]}"; do
        pid=$(node_pid "$n")
        [[ -n $pid ]] || continue
        kill "-$sig" "$pid" 2> /dev/null || true
        pids+=("$n:$pid")
    done
    deadline=$(($(now_ms) + timeout * 1000))
    while :; do
        left=0
        for n in "${nodes[@]}"; do [[ -n $(node_pid "$n") ]] && left=$((left + 1)); done
        ((left == 0)) && break
        if (($(now_ms) > deadline)); then
            note "$left node(s) still running after ${timeout}s: SIGKILL"
            for n in "${nodes[@]}"; do
                pid=$(node_pid "$n")
                [[ -n $pid ]] && kill -9 "$pid" 2> /dev/null || true
            done
            deadline=$(($(now_ms) + 10000))
            timeout=10
        fi
        sleep 0.1
    done
    for n in "${nodes[@]}"; do rm -f "$DIR/node-$n/pid"; done
}

cmd_stop() {
    [[ -f $DIR/cluster.env ]] || { note "$DIR: no cluster"; return 0; }
    load_cluster
    local t0 all=() n
    t0=$(now_ms)
    rm -f "$DIR/watchdog.pid" # the watchdog sees it is no longer wanted and exits
    for ((n = 1; n <= NODES; n++)); do all+=("$n"); done
    if [[ $KILL -eq 1 ]]; then stop_pids KILL 10 "${all[@]}"; else stop_pids TERM "$TIMEOUT" "${all[@]}"; fi
    note "stopped $DIR in $(( $(now_ms) - t0 )) ms"
}

check_node_arg() { [[ -n $NODE && $NODE -ge 1 && $NODE -le $NODES ]] || usage "--node: expected 1..$NODES"; }

cmd_kill_node() {
    load_cluster
    check_node_arg
    [[ -n $(node_pid "$NODE") ]] || die "node $NODE is not running"
    stop_pids KILL 10 "$NODE"
    note "node $NODE killed (SIGKILL)"
}

cmd_stop_node() {
    load_cluster
    check_node_arg
    stop_pids TERM "$TIMEOUT" "$NODE"
    note "node $NODE stopped"
}

cmd_start_node() {
    local t0 deadline running
    t0=$(now_ms)
    deadline=$((t0 + TIMEOUT * 1000))
    load_cluster
    check_node_arg
    start_node_process "$NODE"
    [[ -n $OWNER ]] && start_watchdog "$OWNER"
    wait_node_port "$NODE" "$deadline"
    running=$(running_nodes)
    admin wait-brokers --bootstrap "$BOOTSTRAP" --brokers "$running" --timeout-ms "$(left_ms "$deadline")" ||
        { tail_logs "$NODE"; die "node $NODE did not register"; }
    if [[ $WAIT_ISR -eq 1 && $running -eq $NODES ]]; then
        admin wait-isr --bootstrap "$BOOTSTRAP" --timeout-ms "$(left_ms "$deadline")" ||
            die "node $NODE is up but partitions are still under-replicated"
    fi
    note "node $NODE up in $(( $(now_ms) - t0 )) ms"
}

cmd_status() {
    load_cluster
    local n pid rss port_var
    echo "cluster $CLUSTER_ID: $NODES node(s), RF $RF, min ISR $MIN_ISR, bootstrap $BOOTSTRAP"
    for ((n = 1; n <= NODES; n++)); do
        pid=$(node_pid "$n") port_var=PORT_$n
        if [[ -n $pid ]]; then
            rss=$(infra_rss_kb "$pid")
            echo "node $n: running pid $pid port ${!port_var} rss ${rss:-?} kB"
        else
            echo "node $n: stopped port ${!port_var}"
        fi
    done
}

# --- arguments --------------------------------------------------------------------------
[[ $# -ge 1 ]] || usage "no command"
CMD=$1
shift
DIR="" WANT_NODES="" WANT_VERSION="" NODE="" TOPIC="" TOPICS=1 PROFILE=test HEAP="" TIMEOUT="" OWNER="" KILL=0 WAIT_ISR=1 SASL_SSL=0
PARTITIONS=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --dir) DIR=${2:?--dir needs a value}; shift 2 ;;
    --nodes) WANT_NODES=${2:?}; shift 2 ;;
    --node) NODE=${2:?}; shift 2 ;;
    --no-topics) TOPICS=0; shift ;;
    --profile) PROFILE=${2:?}; shift 2 ;;
    --partitions) PARTITIONS+=("${2:?}"); shift 2 ;;
    --heap) HEAP=${2:?}; shift 2 ;;
    --timeout) TIMEOUT=${2:?}; shift 2 ;;
    --owner-pid) OWNER=${2:?}; shift 2 ;;
    --kill) KILL=1; shift ;;
    --topic) TOPIC=${2:?}; shift 2 ;;
    --no-wait-isr) WAIT_ISR=0; shift ;;
    --sasl-ssl) SASL_SSL=1; shift ;;
    --version) WANT_VERSION=${2:?--version needs a value}; shift 2 ;;
    *) usage "unknown argument $1" ;;
    esac
done
[[ -z $WANT_NODES || $WANT_NODES =~ ^[0-9]+$ ]] || usage "--nodes $WANT_NODES: not a number"
[[ -z $NODE || $NODE =~ ^[0-9]+$ ]] || usage "--node $NODE: not a number"
[[ -z $OWNER || $OWNER =~ ^[0-9]+$ ]] || usage "--owner-pid $OWNER: not a number"
[[ -z $TIMEOUT || $TIMEOUT =~ ^[0-9]+$ ]] || usage "--timeout $TIMEOUT: seconds, a number"
[[ $PROFILE == test || $PROFILE == production ]] || usage "--profile $PROFILE: test or production"

[[ -n $WANT_VERSION ]] && select_version "$WANT_VERSION"

need_dir() {
    [[ -n $DIR ]] || usage "$CMD: --dir is required"
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    # A cluster runs the version it was formatted with (clusters from before --version have
    # no KAFKA_VERSION line: they are the default's).
    local have
    if [[ -f $DIR/cluster.env ]]; then
        have=$(sed -n 's/^KAFKA_VERSION=//p' "$DIR/cluster.env")
        have=${have:-$(pom_version "$ROOT/tools/kafka/pom.xml")}
        [[ -z $WANT_VERSION || $WANT_VERSION == "$have" ]] ||
            die "$DIR holds a Kafka $have cluster, not $WANT_VERSION (use another --dir)"
        select_version "$have"
    fi
}

case $CMD in
install) cmd_install ;;
check) require_installed; echo "Kafka $(kafka_version) installed in $HOME_DIR" ;;
start) need_dir; require_installed; TIMEOUT=${TIMEOUT:-180}; cmd_start ;;
stop) need_dir; TIMEOUT=${TIMEOUT:-30}; cmd_stop ;;
kill-node) need_dir; cmd_kill_node ;;
stop-node) need_dir; TIMEOUT=${TIMEOUT:-30}; cmd_stop_node ;;
start-node) need_dir; require_installed; TIMEOUT=${TIMEOUT:-120}; cmd_start_node ;;
topics) need_dir; require_installed; TIMEOUT=${TIMEOUT:-60}; cmd_topics ;;
describe)
    need_dir; require_installed; load_cluster
    if [[ -n $TOPIC ]]; then admin describe-configs --bootstrap "$BOOTSTRAP" --topic "$TOPIC"; else admin describe --bootstrap "$BOOTSTRAP"; fi ;;
bootstrap) need_dir; load_cluster; echo "$BOOTSTRAP" ;;
status) need_dir; cmd_status ;;
_watchdog) need_dir; cmd_watchdog ;;
-h | --help | help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d' | sed 's/^# \{0,1\}//' ;;
*) usage "unknown command $CMD" ;;
esac
