#!/usr/bin/env bash
# install-deps.sh: installs the Debian 12 packages adtrack needs to build, test and run
# locally. Idempotent: packages already installed are left alone, and `apt-get update` runs
# only when something is missing. Runs apt-get directly as root, otherwise through sudo.
#
# Some packages (redis-server, nginx, haproxy) ship system services that Debian may start on
# install. Nothing in adtrack uses them: every test and scripts/run.sh start their own
# processes on free ports. This script never enables or starts a service.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  clang libclang-rt-14-dev  # libFuzzer targets (scripts/fuzz.sh); the runtime is only a Recommends of clang
  libh2o-evloop-dev librdkafka-dev libhiredis-dev libmongoc-dev libbson-dev libssl-dev
  libxxhash-dev          # XXH3: the unique-user HyperLogLog (common/at_hll.c)
  libcmocka-dev
  redis-server           # integration tests start their own redis-server
  nginx wrk              # load-test baselines
  kcat                   # Kafka from the shell
  python3-mockupdb       # MongoDB wire-protocol mock for tests
  haproxy                # tests/e2e/failover.sh puts deploy/haproxy.cfg in front of two collectors
  docker-compose yamllint python3-yaml  # tests/it/deploy_lint.sh validates deploy/ (no engine needed)
  chromium               # tests/e2e/browser.sh: headless Chromium driven by playwright-core
  openssl                # scripts/run.sh signs a demo click URL
  curl                   # tests/it/coredata_cli.sh and the README walk-through
  tzdata                 # coredata's reports read IANA zones from /usr/share/zoneinfo (coredata/cd_tz.c)
)

# Node.js runs the tracker's unit test and playwright-core. Machines that already have a
# node (e.g. from nodesource) keep it; otherwise Debian's nodejs and npm are installed.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

# Java 17+ and Maven run the real Kafka brokers of the tests (scripts/kafka.sh: jars from
# Maven Central, javac for its admin helper). Machines that already have them keep theirs.
if ! command -v javac >/dev/null 2>&1; then
  packages+=(openjdk-17-jdk-headless)
fi
if ! command -v mvn >/dev/null 2>&1; then
  packages+=(maven)
fi
# Go (for FerretDB, scripts/ferretdb.sh) is not installed here: Debian 12's Go 1.19 is too
# old for FerretDB 1.24; the script needs Go 1.24+ on PATH or in /usr/local/go.

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  if [[ "$status" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

if [[ $(id -u) -eq 0 ]]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1; then
  sudo=(sudo)
else
  echo "install-deps: missing packages: ${missing[*]}" >&2
  echo "install-deps: not root and no sudo; install them as root and run again" >&2
  exit 1
fi

echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null
echo "install-deps: done"
