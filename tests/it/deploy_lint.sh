#!/usr/bin/env bash
# deploy_lint.sh: validates deploy/ as far as this machine allows without containers, and
# fails on any problem:
#   1. haproxy -c on deploy/haproxy.cfg, with the variables it reads set;
#   2. docker-compose config -q (Debian's Compose v1), and `docker compose` (v2) if present;
#      the file must refuse to render without the click key and the admin token;
#   3. yamllint (deploy/.yamllint) over the compose file and the Kubernetes manifests;
#   4. kubectl kustomize on the base and on an overlay with the KEDA component, if kubectl
#      is installed (Debian 12 has no kustomize; skipped with a message otherwise);
#   5. shell syntax (and shellcheck, if installed) of the entrypoint and the init scripts;
#   6. deploy/check_manifests.py: every option, probe, port, grace period and reference in
#      compose and Kubernetes against the binaries' --help, the entrypoint, the Dockerfile.
# Environment (from ctest): ADTRACK_SOURCE_DIR, ADTRACK_BIN_DIR, ADTRACK_TEST_TMP.
set -euo pipefail
src=${ADTRACK_SOURCE_DIR:?}
bin=${ADTRACK_BIN_DIR:?}
tmp_root=${ADTRACK_TEST_TMP:-${TMPDIR:-/tmp}}
mkdir -p "$tmp_root"
work=$(mktemp -d "$tmp_root/deploy_lint.XXXXXX")
trap 'rm -rf "$work"' EXIT
deploy=$src/deploy
failed=0

fail() {
    echo "deploy_lint: FAIL: $*" >&2
    failed=1
}
skip() {
    echo "deploy_lint: skipped: $*"
}

for f in "$deploy/compose.yaml" "$deploy/Dockerfile" "$deploy/docker-entrypoint.sh" \
         "$deploy/k8s/kustomization.yaml" "$deploy/check_manifests.py"; do
    [[ -f $f ]] || fail "$f is missing"
done

# 1. HAProxy. The backends must resolve here, so they are loopback addresses.
if [[ ! -f $deploy/haproxy.cfg ]]; then
    skip "deploy/haproxy.cfg does not exist yet (written by the failover work)"
elif ! command -v haproxy > /dev/null; then
    fail "haproxy is not installed (scripts/install-deps.sh installs it)"
elif ! ADTRACK_LB_BIND=127.0.0.1:18080 ADTRACK_LB_STATS_BIND=127.0.0.1:18404 \
        ADTRACK_COLLECTOR_1=127.0.0.1:18081 ADTRACK_COLLECTOR_2=127.0.0.1:18082 \
        haproxy -c -f "$deploy/haproxy.cfg"; then
    fail "haproxy -c -f deploy/haproxy.cfg"
else
    echo "deploy_lint: haproxy -c ok"
fi

# 2. Compose. Secrets are files (deploy/secrets/, written by deploy/compose/make-secrets.sh):
# rendering needs no secret in the environment, and check_manifests.py checks that none is
# passed by value.
compose_env=(env -u ADTRACK_CLICK_KEY -u ADTRACK_ADMIN_TOKEN)
if command -v docker-compose > /dev/null; then
    if ! "${compose_env[@]}" docker-compose -f "$deploy/compose.yaml" --profile demo config -q; then
        fail "docker-compose config -q (Compose v1)"
    else
        echo "deploy_lint: docker-compose config ok ($(docker-compose version --short 2>/dev/null))"
    fi
    # No secret may be interpolated from the environment into the file.
    if grep -nE '\$\{ADTRACK_[A-Z_]*(KEY|TOKEN|PASSWORD|MONGO)' "$deploy/compose.yaml"; then
        fail "compose.yaml takes a secret from the environment: use a Compose secret (file)"
    fi
else
    fail "docker-compose is not installed (scripts/install-deps.sh installs it)"
fi
if command -v docker > /dev/null && docker compose version > /dev/null 2>&1; then
    if ! "${compose_env[@]}" docker compose -f "$deploy/compose.yaml" --profile demo config -q; then
        fail "docker compose config -q (Compose v2)"
    else
        echo "deploy_lint: docker compose (v2) config ok"
    fi
else
    skip "docker compose (v2) is not installed"
fi

# 3. YAML style and syntax.
if command -v yamllint > /dev/null; then
    if ! yamllint -s -c "$deploy/.yamllint" "$deploy/compose.yaml" "$deploy/k8s"; then
        fail "yamllint"
    else
        echo "deploy_lint: yamllint ok"
    fi
else
    fail "yamllint is not installed (scripts/install-deps.sh installs it)"
fi

# 4. Kustomize rendering (offline).
if command -v kubectl > /dev/null && kubectl kustomize --help > /dev/null 2>&1; then
    if ! kubectl kustomize "$deploy/k8s" > "$work/base.yaml"; then
        fail "kubectl kustomize deploy/k8s"
    fi
    # An overlay outside the tree (kustomize refuses a root inside another) with the component.
    overlay=$work/overlay
    mkdir -p "$overlay"
    rel=$(/usr/bin/python3 -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$deploy/k8s" "$overlay")
    printf 'apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: adtrack-lint\nresources: [%s]\ncomponents: [%s/keda]\n' \
        "$rel" "$rel" > "$overlay/kustomization.yaml"
    if ! kubectl kustomize "$overlay" > "$work/keda.yaml"; then
        fail "kubectl kustomize with the keda component"
    elif ! grep -q '^kind: ScaledObject' "$work/keda.yaml" || grep -q '^kind: ScaledObject' "$work/base.yaml"; then
        fail "the ScaledObject must be in the keda component only"
    else
        echo "deploy_lint: kubectl kustomize ok (base: $(grep -c '^kind:' "$work/base.yaml") objects)"
    fi
else
    skip "kubectl is not installed: kustomize rendering not checked (check_manifests.py still reads every file)"
fi

# 5. Shell syntax.
bash -n "$deploy/docker-entrypoint.sh" || fail "bash -n deploy/docker-entrypoint.sh"
bash -n "$deploy/compose/mongo-init.sh" || fail "bash -n deploy/compose/mongo-init.sh"
sh -n "$deploy/compose/kafka-init.sh" || fail "sh -n deploy/compose/kafka-init.sh"
if command -v dash > /dev/null; then
    dash -n "$deploy/compose/kafka-init.sh" || fail "dash -n deploy/compose/kafka-init.sh (busybox sh in the kafka image)"
fi
[[ -x $deploy/docker-entrypoint.sh ]] || fail "deploy/docker-entrypoint.sh is not executable"
if command -v shellcheck > /dev/null; then
    shellcheck "$deploy/docker-entrypoint.sh" "$deploy/compose/mongo-init.sh" "$deploy/compose/kafka-init.sh" ||
        fail "shellcheck"
else
    skip "shellcheck is not installed"
fi

# 6. Manifests against the binaries (also runs the entrypoint for every service).
if ! /usr/bin/python3 -c 'import yaml' 2> /dev/null; then
    fail "/usr/bin/python3 has no yaml module (Debian package python3-yaml)"
elif ! /usr/bin/python3 "$deploy/check_manifests.py" --bin-dir "$bin" --source-dir "$src"; then
    fail "deploy/check_manifests.py"
fi

# 7. The entrypoint's health check against a real collector: /healthz 200, /readyz 503
#    (no Kafka), port found from the process's --listen, and a closed port fails.
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
dead=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
ENTRYPOINT_BIN_DIR=$bin "$deploy/docker-entrypoint.sh" collector --listen "127.0.0.1:$port" \
    --brokers "127.0.0.1:$dead" --spool-dir "$work/spool" --log-level error 2> "$work/collector.log" &
collector_pid=$!
up=0
for _ in $(seq 1 100); do
    if "$deploy/docker-entrypoint.sh" healthcheck /healthz "127.0.0.1:$port" > /dev/null 2>&1; then
        up=1
        break
    fi
    sleep 0.1
done
if ((up == 0)); then
    fail "entrypoint healthcheck: the collector's /healthz never answered 200"
else
    HEALTHCHECK_PID=$collector_pid "$deploy/docker-entrypoint.sh" healthcheck /healthz > /dev/null ||
        fail "entrypoint healthcheck did not find the collector's port from its --listen"
    if "$deploy/docker-entrypoint.sh" healthcheck /readyz "127.0.0.1:$port" 2> /dev/null; then
        fail "entrypoint healthcheck: /readyz passed without Kafka"
    fi
    if "$deploy/docker-entrypoint.sh" healthcheck /healthz "127.0.0.1:$dead" 2> /dev/null; then
        fail "entrypoint healthcheck: passed on a closed port"
    fi
    echo "deploy_lint: entrypoint healthcheck ok"
fi
kill -TERM "$collector_pid"
wait "$collector_pid" || fail "the collector exited $? on SIGTERM (expected 0)"

if ((failed)); then
    echo "deploy_lint: FAILED" >&2
    exit 1
fi
echo "deploy_lint: all checks passed"
