#!/bin/bash
# docker-entrypoint.sh: the adtrack image's entrypoint. One image holds every binary; the
# first argument picks the service, the rest are its options:
#
#   docker-entrypoint.sh collector --listen 0.0.0.0:8080 ...   exec adtrack-collector
#   docker-entrypoint.sh enricher|coredata|loadtest|devstream   exec adtrack-<service>
#   docker-entrypoint.sh <name>                                 exec adtrack-<name> if it exists
#   docker-entrypoint.sh adtrack campaign list                  exec the admin CLI
#   docker-entrypoint.sh healthcheck [PATH] [HOST:PORT]         HTTP probe (Docker HEALTHCHECK)
#   docker-entrypoint.sh help                                   this text
#   docker-entrypoint.sh <any other command>                    exec it (e.g. bash)
#
# Options come as flags or as ADTRACK_<FLAG> environment variables (see `<service> --help`).
# The service is exec'd, so it is PID 1 and receives SIGTERM itself: every service handles
# SIGTERM (the collector drains, the enricher commits its batch and leaves the group).
#
# ENTRYPOINT_BIN_DIR overrides where the binaries are (default /opt/adtrack/bin); the lint
# test uses it to run this script against a build tree. It is deliberately not an ADTRACK_
# variable: the services ignore unknown ADTRACK_ variables silently, so that prefix is kept
# for real options only (tests/it/deploy_lint.sh checks this).
set -euo pipefail

bin_dir=${ENTRYPOINT_BIN_DIR:-/opt/adtrack/bin}

usage() {
    cat <<'EOF'
usage: docker-entrypoint.sh SERVICE [OPTION...]
services: collector enricher coredata loadtest devstream adtrack (the admin CLI),
          and any other adtrack-<name> in the image by its <name>
          healthcheck [PATH] [HOST:PORT]   exit 0 when GET PATH (default /healthz) answers 200
Every option is a flag or an ADTRACK_<FLAG> environment variable: SERVICE --help lists them.
EOF
}

# The address a service listens on, for the health check: --listen in the service's own
# command line (/proc/<pid>/cmdline; PID 1 in a container), else ADTRACK_LISTEN from its
# environment, else the default in the binary's --help. Prints HOST:PORT, or nothing for
# services without an HTTP endpoint (loadtest, devstream).
listen_address() {
    local pid=$1 prog="" listen="" arg prev="" i=0
    local -a args=()
    if [[ -r /proc/$pid/cmdline ]]; then
        mapfile -d '' args < "/proc/$pid/cmdline"
    fi
    for arg in "${args[@]}"; do
        if ((i == 0)); then
            prog=${arg##*/}
        elif [[ $prev == --listen ]]; then
            listen=$arg
        elif [[ $arg == --listen=* ]]; then
            listen=${arg#--listen=}
        fi
        prev=$arg
        i=$((i + 1))
    done
    if [[ -z $listen && -r /proc/$pid/environ ]]; then
        listen=$(tr '\0' '\n' < "/proc/$pid/environ" | sed -n 's/^ADTRACK_LISTEN=//p' | tail -n 1)
    fi
    if [[ -z $listen ]]; then
        listen=${ADTRACK_LISTEN:-}
    fi
    # The default is whatever the binary's --help says (loadtest and devstream have none).
    if [[ -z $listen && $prog == adtrack-* && -x $bin_dir/$prog ]]; then
        listen=$("$bin_dir/$prog" --help | sed -n 's/.*Default: \(.*\)\. Env: ADTRACK_LISTEN$/\1/p' | head -n 1)
    fi
    if [[ -z $listen ]]; then
        return 0
    fi
    printf '%s\n' "$listen"
}

# GET PATH over bash's /dev/tcp: the slim image needs no curl or wget for this. A wildcard
# listen address is probed on loopback. Exit 0 only on an HTTP 200 status line.
healthcheck() {
    local path=${1:-/healthz} addr=${2:-} host port code
    if [[ -z $addr ]]; then
        addr=$(listen_address "${HEALTHCHECK_PID:-1}")
        if [[ -z $addr ]]; then
            echo "healthcheck: this service has no HTTP endpoint; healthy while it runs"
            return 0
        fi
    fi
    port=${addr##*:}
    host=${addr%:*}
    host=${host#[}
    host=${host%]}
    case $host in
        "" | 0.0.0.0) host=127.0.0.1 ;;
        ::) host=::1 ;;
    esac
    if ! { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
        echo "healthcheck: cannot connect to $host:$port" >&2
        return 1
    fi
    printf 'GET %s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$path" >&3
    local status=""
    if ! IFS= read -r -t 5 status <&3; then
        echo "healthcheck: no answer from $host:$port$path" >&2
        exec 3>&-
        return 1
    fi
    exec 3>&-
    code=$(printf '%s' "$status" | cut -d' ' -f2)
    if [[ $code != 200 ]]; then
        echo "healthcheck: $host:$port$path answered ${status%$'\r'}" >&2
        return 1
    fi
    return 0
}

if [[ $# -eq 0 ]]; then
    usage
    exit 0
fi

case $1 in
    collector | enricher | coredata | loadtest | devstream)
        service=$1
        shift
        exec "$bin_dir/adtrack-$service" "$@"
        ;;
    adtrack)
        shift
        exec "$bin_dir/adtrack" "$@"
        ;;
    healthcheck)
        shift
        healthcheck "$@"
        ;;
    help | -h | --help)
        usage
        ;;
    -*)
        echo "docker-entrypoint.sh: name the service before its options, e.g. collector $1" >&2
        usage >&2
        exit 2
        ;;
    *)
        # Services added later (e.g. dashboard -> adtrack-dashboard) without editing this file.
        if [[ $1 =~ ^[a-z]+$ && -x $bin_dir/adtrack-$1 ]]; then
            service=$1
            shift
            exec "$bin_dir/adtrack-$service" "$@"
        fi
        exec "$@"
        ;;
esac
