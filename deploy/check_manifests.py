#!/usr/bin/python3
"""check_manifests.py: checks deploy/ against the binaries it deploys.

    /usr/bin/python3 deploy/check_manifests.py --bin-dir build/bin [--source-dir .]

Run by tests/it/deploy_lint.sh. Needs python3-yaml (Debian's). Prints one line per problem
and exits 1 if there is any, so a renamed flag, a probe on the wrong port or a grace period
shorter than the drain fails the test. What it checks:

- every ADTRACK_* variable and every --flag that compose or Kubernetes passes to an adtrack
  service is an option in that binary's --help (the binaries ignore unknown ADTRACK_
  variables silently, so a typo would otherwise go unnoticed);
- probes and health checks use /healthz (liveness) and /readyz (readiness), on the port the
  service listens on (--listen); Services and HAProxy point at those ports;
- collectors: termination grace >= preStop + --shutdown-delay-ms + --drain-timeout-ms, a
  spool of their own on persistent storage, larger than --spool-max-bytes; HAProxy is the
  only trusted proxy in compose;
- the references inside the manifests (ConfigMap and Secret keys, selectors, HPA and KEDA
  targets, the governing Service, compose depends_on, mounted files) resolve;
- secrets go as files (docs/SECURITY.md): an option the binary marks secret (--help: "Secret:
  keep it off the command line") is never set by value, only as ADTRACK_<OPTION>_FILE; a URI
  option that may hold a password (redis, mongo) holds none; every ADTRACK_*_FILE names a
  Compose secret of that service (/run/secrets/<name>, declared at the top level) or a key
  of the Secret adtrack-secrets mounted as a volume that other users cannot read (mode
  without o+r; the pod's fsGroup is the image's gid);
- HAProxy gets exactly the variables deploy/haproxy.cfg reads;
- the topics the binaries use by default are defined in deploy/topics.conf, which the
  compose init (kafka-init.sh) creates;
- dashboard: every --scrape target is NAME=http://HOST:PORT/metrics; in compose each HOST is
  an adtrack service listening on PORT, and every collector and enricher is scraped once;
- docker-entrypoint.sh selects every service (its `<service> --help` is the binary's);
- the Dockerfile ships every binary the entrypoint selects, and its runtime stage installs
  the packages of every shared library the binaries link (ldd + dpkg -S + apt-cache).
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

import yaml

SERVICES = {
    "collector": "adtrack-collector",
    "enricher": "adtrack-enricher",
    "coredata": "adtrack-coredata",
    "loadtest": "adtrack-loadtest",
    "devstream": "adtrack-devstream",
    "dashboard": "adtrack-dashboard",
    "adtrack": "adtrack",
}
HTTP_SERVICES = ("collector", "enricher", "coredata", "dashboard")
# Services whose /metrics the compose dashboard must scrape (each instance, by its own name).
SCRAPED_SERVICES = ("collector", "enricher")
PROBE_PATHS = ("/healthz", "/readyz")
# Seconds the enricher may spend on its last batch after SIGTERM (docs/ENRICHER.md), and the
# time coredata gives Redis and Kafka (docs/COREDATA.md): grace periods must cover them.
ENRICHER_SIGTERM_BATCH_S = 15
COREDATA_SIGTERM_FLUSH_S = 5
SECRET_KEYS = {"click-key", "admin-token", "dashboard-token", "read-token", "mongo-uri", "redis-password", "kafka-sasl-password"}

problems = []


def problem(where, msg):
    problems.append("%s: %s" % (where, msg))


class Options:
    """The options of one binary, parsed from its --help."""

    def __init__(self, text):
        self.flags = {}  # flag name -> {"type", "default", "env"}
        self.secret = set()  # flags whose value is a secret: only their -file variant may be set
        self.creds = set()  # URI flags that may hold a password: set by value only without one
        current = None
        for line in text.splitlines():
            if current is not None and "Secret: keep it off the command line" in line:
                self.secret.add(current)
            if current is not None and "With a password in it, keep it off the command line" in line:
                self.creds.add(current)
            m = re.match(r"^  --([a-z0-9][a-z0-9.-]*)(?: <(\w+)>)?\s*$", line)
            if m:
                current = m.group(1)
                self.flags[current] = {"type": m.group(2), "default": None, "env": None}
                continue
            if current is None:
                continue
            m = re.search(r"Default: (.*?)\. Env: (ADTRACK_[A-Z0-9_]+)", line)
            if m:
                self.flags[current]["default"] = m.group(1)
                self.flags[current]["env"] = m.group(2)
        self.envs = {v["env"]: k for k, v in self.flags.items() if v["env"]}

    def default(self, flag):
        f = self.flags.get(flag)
        return f["default"] if f else None


def load_options(bin_dir):
    opts = {}
    for svc, binary in SERVICES.items():
        path = os.path.join(bin_dir, binary)
        if not os.access(path, os.X_OK):
            problem(path, "binary missing (build first)")
            continue
        out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=30)
        if out.returncode != 0:
            problem(path, "--help exited %d" % out.returncode)
            continue
        opts[svc] = Options(out.stdout)
        if not opts[svc].envs:
            problem(path, "--help lists no ADTRACK_ variables: its format changed?")
    return opts


def port_of(listen):
    m = re.match(r"^(?:\[[^\]]*\]|[^:]*):(\d+)$", listen or "")
    return int(m.group(1)) if m else None


def check_secret_values(where, svc, opts, env, args):
    """Secret options are set through their files only; URIs hold no password."""
    o = opts.get(svc)
    if o is None:
        return
    for flag in o.secret | o.creds:
        envname = o.flags[flag]["env"]
        values = [env[envname]] if envname in env else []
        values += [a.split("=", 1)[1] for a in args if isinstance(a, str) and a.startswith("--" + flag + "=")]
        values += [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--" + flag]
        for v in values:
            if flag in o.secret:
                problem(where, "%s is a secret: pass it as a file, %s_FILE (not by value)" % (flag, envname))
            elif re.search(r"://[^/@]*:[^/@]*@", v):
                problem(where, "%s holds a password: put the URI in a file (%s_FILE) or the password in its "
                        "own secret option" % (flag, envname))


def check_settings(where, svc, opts, env_names, args):
    """env_names: ADTRACK_ variable names set; args: the service's arguments after its name."""
    o = opts.get(svc)
    if o is None:
        return
    for name in env_names:
        if not name.startswith("ADTRACK_"):
            problem(where, "%s is not an ADTRACK_ option; the %s binary does not read it" % (name, svc))
        elif name not in o.envs:
            problem(where, "%s is not an option of %s (see %s --help)" % (name, SERVICES[svc], SERVICES[svc]))
    for a in args:
        if not isinstance(a, str) or not a.startswith("--"):
            continue
        flag = a[2:].split("=", 1)[0]
        if flag not in o.flags:
            problem(where, "--%s is not an option of %s" % (flag, SERVICES[svc]))


def arg_value(args, flag):
    for i, a in enumerate(args):
        if a == "--" + flag and i + 1 < len(args):
            return args[i + 1]
        if isinstance(a, str) and a.startswith("--" + flag + "="):
            return a.split("=", 1)[1]
    return None


def setting(opts, svc, env, args, flag):
    """The effective value of an option: flag, else environment, else the binary's default."""
    v = arg_value(args, flag)
    if v is None and svc in opts:
        v = env.get(opts[svc].flags.get(flag, {}).get("env") or "")
    if v is None and svc in opts:
        v = opts[svc].default(flag)
    return v


def duration_s(text):
    """Compose durations: 1m30s, 25s, 500ms."""
    total = 0.0
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(text)):
        total += float(num) * {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def quantity_bytes(q):
    m = re.match(r"^(\d+)(Ki|Mi|Gi|Ti|k|M|G|T)?$", str(q))
    if not m:
        return None
    mult = {None: 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "k": 10**3, "M": 10**6, "G": 10**9,
            "T": 10**12}
    return int(m.group(1)) * mult[m.group(2)]


def haproxy_vars(src):
    path = os.path.join(src, "deploy", "haproxy.cfg")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return set(re.findall(r"\$\{([A-Z0-9_]+)\}", f.read()))


# ---------------------------------------------------------------- compose

def compose_env(svc_def):
    env = svc_def.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {k: ("" if v is None else str(v)) for k, v in env.items()}


def adtrack_service_of(name, svc_def):
    """(service, args) for a compose service that runs the adtrack image, else None."""
    build = svc_def.get("build") or {}
    image = str(svc_def.get("image", ""))
    if not (image.startswith("adtrack:") or (isinstance(build, dict) and build.get("dockerfile") == "deploy/Dockerfile")):
        return None
    cmd = svc_def.get("command")
    if isinstance(cmd, str):
        cmd = cmd.split()
    if not cmd or cmd[0] not in SERVICES:
        problem("compose " + name, "command must start with a service name (%s), got %r" % (" ".join(SERVICES), cmd))
        return None
    return cmd[0], cmd[1:]


def check_compose(src, opts, raw_topics):
    path = os.path.join(src, "deploy", "compose.yaml")
    base = os.path.dirname(path)
    with open(path) as f:
        doc = yaml.safe_load(f)
    services = doc.get("services") or {}
    named_volumes = set((doc.get("volumes") or {}).keys())
    listen_ports = {}
    spools = {}
    collectors = []
    haproxy_ip = None
    trusted = {}
    scrapes = {}  # compose service name -> its dashboard's --scrape values
    service_kind = {}  # compose service name -> adtrack service (collector, ...)

    for name, s in services.items():
        where = "compose " + name
        for dep, cond in (s.get("depends_on") or {}).items():
            if dep not in services:
                problem(where, "depends_on %s: no such service" % dep)
                continue
            c = cond.get("condition") if isinstance(cond, dict) else None
            if c not in ("service_started", "service_healthy", "service_completed_successfully"):
                problem(where, "depends_on %s: condition %r" % (dep, c))
            hc = services[dep].get("healthcheck") or {}
            if c == "service_healthy" and (not hc or hc.get("disable")):
                problem(where, "depends_on %s: service_healthy, but %s has no healthcheck" % (dep, dep))
        for v in s.get("volumes") or []:
            spec = v if isinstance(v, str) else "%s:%s" % (v.get("source"), v.get("target"))
            source = spec.split(":", 1)[0]
            if source.startswith(".") or source.startswith("/"):
                if not os.path.exists(os.path.normpath(os.path.join(base, source))):
                    problem(where, "mounts %s, which does not exist" % source)
            elif source not in named_volumes:
                problem(where, "volume %s is not declared under volumes:" % source)
        net = (s.get("networks") or {})
        if isinstance(net, dict):
            for n in net.values():
                if isinstance(n, dict) and n.get("ipv4_address") and name == "haproxy":
                    haproxy_ip = n["ipv4_address"]

        found = adtrack_service_of(name, s)
        if found is None:
            continue
        svc, args = found
        service_kind[name] = svc
        env = compose_env(s)
        check_settings(where, svc, opts, env.keys(), args)
        check_secret_values(where, svc, opts, env, args)
        declared = doc.get("secrets") or {}
        used = [x if isinstance(x, str) else x.get("source") for x in s.get("secrets") or []]
        for u in used:
            if u not in declared:
                problem(where, "secret %s is not declared under the top-level secrets:" % u)
            elif not str((declared[u] or {}).get("file", "")).startswith("./secrets/"):
                problem(where, "secret %s: expected a file under deploy/secrets/ (make-secrets.sh)" % u)
        for k, v in env.items():
            if k.startswith("ADTRACK_") and k.endswith("_FILE"):
                m = re.match(r"^/run/secrets/([A-Za-z0-9_.-]+)$", v)
                if not m or m.group(1) not in used:
                    problem(where, "%s=%s is not /run/secrets/<one of this service's secrets %s>" % (k, v, used))
        if svc == "dashboard":
            scrapes[name] = scrape_values(env, args)
        if svc in HTTP_SERVICES:
            listen = setting(opts, svc, env, args, "listen")
            port = port_of(listen)
            listen_ports[name] = port
            if listen and listen.startswith("127."):
                problem(where, "listens on %s: unreachable from other containers" % listen)
            hc = s.get("healthcheck") or {}
            test = hc.get("test") or []
            if "healthcheck" not in test:
                problem(where, "healthcheck should run docker-entrypoint.sh healthcheck, got %r" % (test,))
            else:
                rest = test[test.index("healthcheck") + 1:]
                if not rest or rest[0] not in PROBE_PATHS:
                    problem(where, "healthcheck path %r is not one of %s" % (rest[:1], PROBE_PATHS))
                if len(rest) > 1 and port_of(rest[1]) != port:
                    problem(where, "healthcheck probes %s but the service listens on %s" % (rest[1], listen))
            for p in s.get("ports") or []:
                target = str(p).rsplit(":", 1)[-1].split("/")[0]
                if int(target) != port:
                    problem(where, "publishes container port %s but listens on %s" % (target, listen))
        if svc == "collector":
            collectors.append(name)
            delay = int(setting(opts, svc, env, args, "shutdown-delay-ms") or 0)
            drain = int(setting(opts, svc, env, args, "drain-timeout-ms") or 0)
            grace = duration_s(s.get("stop_grace_period", "10s"))
            if grace < (delay + drain) / 1000.0:
                problem(where, "stop_grace_period %ss < shutdown delay %d ms + drain %d ms" % (grace, delay, drain))
            spool_dir = setting(opts, svc, env, args, "spool-dir")
            vol = None
            for v in s.get("volumes") or []:
                parts = str(v).split(":")
                if len(parts) >= 2 and os.path.normpath(parts[1]) == os.path.normpath(spool_dir or ""):
                    vol = parts[0]
            if vol is None:
                problem(where, "no volume mounted on its spool directory %s" % spool_dir)
            elif vol in spools.values():
                problem(where, "shares spool volume %s with another collector" % vol)
            else:
                spools[name] = vol
            trusted[name] = setting(opts, svc, env, args, "trusted-proxies") or ""
        if svc == "enricher" and grace_too_short(s, ENRICHER_SIGTERM_BATCH_S):
            problem(where, "stop_grace_period below the %d s the last batch may take" % ENRICHER_SIGTERM_BATCH_S)
        if svc == "coredata" and grace_too_short(s, COREDATA_SIGTERM_FLUSH_S):
            problem(where, "stop_grace_period below the %d s flush" % COREDATA_SIGTERM_FLUSH_S)
        for t in ("topic-raw", "topic-rejected", "topic-changes", "topic-updates"):
            if svc in opts and t in opts[svc].flags:
                raw_topics.add(setting(opts, svc, env, args, t))

    if not collectors:
        problem("compose", "no collector service found")
    check_compose_scrapes(scrapes, service_kind, listen_ports)
    # HAProxy: exactly the variables haproxy.cfg reads; collectors addressed on their ports.
    hp = services.get("haproxy")
    wanted = haproxy_vars(src)
    if hp is None:
        problem("compose", "no haproxy service")
    else:
        env = compose_env(hp)
        if wanted is not None and set(env) != wanted:
            problem("compose haproxy", "environment %s, but haproxy.cfg reads %s" % (sorted(env), sorted(wanted)))
        backends = [v for k, v in env.items() if k.startswith("ADTRACK_COLLECTOR_")]
        for b in backends:
            host, _, port = b.rpartition(":")
            if host not in services:
                problem("compose haproxy", "backend %s: no service %s" % (b, host))
            elif listen_ports.get(host) != int(port):
                problem("compose haproxy", "backend %s, but %s listens on port %s" % (b, host, listen_ports.get(host)))
        if sorted(b.rpartition(":")[0] for b in backends) != sorted(collectors):
            problem("compose haproxy", "backends %s are not the collectors %s" % (sorted(backends), collectors))
        for name, t in trusted.items():
            nets = [x.strip() for x in t.split(",") if x.strip()]
            if haproxy_ip is None or nets != [haproxy_ip + "/32"]:
                problem("compose " + name, "trusted proxies %r should be exactly HAProxy's %s/32" % (t, haproxy_ip))


def scrape_values(env, args):
    """Every --scrape NAME=URL of a dashboard: the flags, else ADTRACK_SCRAPE (comma-separated)."""
    vals = [args[i + 1] for i, a in enumerate(args) if a == "--scrape" and i + 1 < len(args)]
    vals += [a.split("=", 1)[1] for a in args if isinstance(a, str) and a.startswith("--scrape=")]
    if not vals and env.get("ADTRACK_SCRAPE"):
        vals = [v.strip() for v in env["ADTRACK_SCRAPE"].split(",") if v.strip()]
    return vals


def parse_scrape(where, value):
    """NAME=http://HOST:PORT/metrics -> (name, host, port), or None after reporting a problem."""
    m = re.match(r"^([^=\s]+)=http://([A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\]):(\d+)(/\S*)$", value)
    if not m:
        problem(where, "--scrape %r is not NAME=http://HOST:PORT/PATH" % value)
        return None
    if m.group(4) != "/metrics":
        problem(where, "--scrape %s: path %s, the services serve /metrics" % (value, m.group(4)))
    return m.group(1), m.group(2), int(m.group(3))


def check_compose_scrapes(scrapes, service_kind, listen_ports):
    if not scrapes:
        problem("compose", "no dashboard service found")
    for dash, values in scrapes.items():
        where = "compose " + dash
        names, hosts = set(), []
        for v in values:
            parsed = parse_scrape(where, v)
            if parsed is None:
                continue
            name, host, port = parsed
            if name in names:
                problem(where, "--scrape name %s used twice" % name)
            names.add(name)
            hosts.append(host)
            if host not in service_kind:
                problem(where, "--scrape %s: %s is not an adtrack service in compose" % (v, host))
            elif listen_ports.get(host) != port:
                problem(where, "--scrape %s: %s listens on port %s" % (v, host, listen_ports.get(host)))
        wanted = sorted(n for n, k in service_kind.items() if k in SCRAPED_SERVICES)
        if sorted(hosts) != wanted:
            problem(where, "scrapes %s, but the collectors and enrichers are %s" % (sorted(hosts), wanted))


def grace_too_short(s, seconds):
    return duration_s(s.get("stop_grace_period", "10s")) < seconds


def check_topics(src, topics):
    """The topics come from deploy/topics.conf (read by compose's kafka-init.sh and by the
    real-Kafka tests' scripts/kafka.sh): every topic a service uses must be defined there,
    and kafka-init.sh must read that file. Returns the raw topic's partition count."""
    conf = os.path.join(src, "deploy", "topics.conf")
    defined = {}
    with open(conf) as f:
        for no, line in enumerate(f, 1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if words[0] == "topic" and len(words) >= 3 and words[2].isdigit():
                defined[words[1]] = int(words[2])
            elif words[0] == "test" and len(words) >= 3:
                if words[1] not in defined:
                    problem("deploy/topics.conf:%d" % no, "test override for undefined topic %s" % words[1])
            else:
                problem("deploy/topics.conf:%d" % no, "expected 'topic NAME PARTITIONS ...' or 'test NAME ...'")
    for t in sorted(x for x in topics if x):
        if t not in defined:
            problem("deploy/topics.conf", "does not define topic %s, which the services use" % t)
    init = os.path.join(src, "deploy", "compose", "kafka-init.sh")
    with open(init) as f:
        if "topics.conf" not in f.read():
            problem("deploy/compose/kafka-init.sh", "does not read topics.conf")
    return defined.get("adtrack.events.raw")


# ---------------------------------------------------------------- Kubernetes

def load_kustomization(dirpath, docs, seen):
    kpath = os.path.join(dirpath, "kustomization.yaml")
    with open(kpath) as f:
        k = yaml.safe_load(f)
    for r in k.get("resources") or []:
        p = os.path.normpath(os.path.join(dirpath, r))
        if os.path.isdir(p):
            load_kustomization(p, docs, seen)
        elif not os.path.exists(p):
            problem(kpath, "resource %s does not exist" % r)
        elif p not in seen:
            seen.add(p)
            with open(p) as f:
                for d in yaml.safe_load_all(f):
                    if d:
                        docs.append((os.path.relpath(p), d))
    return k


def container_env(c, configmaps, where):
    env = {}
    for e in c.get("env") or []:
        name = e["name"]
        if "value" in e:
            env[name] = str(e["value"])
            continue
        vf = e.get("valueFrom") or {}
        if "configMapKeyRef" in vf:
            ref = vf["configMapKeyRef"]
            cm = configmaps.get(ref["name"])
            if cm is None or ref["key"] not in (cm.get("data") or {}):
                problem(where, "%s: ConfigMap %s has no key %s" % (name, ref["name"], ref["key"]))
                env[name] = ""
            else:
                env[name] = str(cm["data"][ref["key"]])
        elif "secretKeyRef" in vf:
            ref = vf["secretKeyRef"]
            if ref["name"] != "adtrack-secrets" or ref["key"] not in SECRET_KEYS:
                problem(where, "%s: secret %s/%s is not one docs/DEPLOY.md tells to create (adtrack-secrets: %s)"
                        % (name, ref["name"], ref["key"], ", ".join(sorted(SECRET_KEYS))))
            env[name] = "<secret>"
        else:
            problem(where, "%s: unsupported valueFrom %s" % (name, list(vf)))
    for ef in c.get("envFrom") or []:
        problem(where, "envFrom %s: list variables one by one so each can be checked" % ef)
    return env


def check_secret_files(where, pod, c, env, uid):
    """Every ADTRACK_*_FILE is a key of adtrack-secrets mounted from a volume others cannot read."""
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = [(os.path.normpath(m["mountPath"]), m["name"]) for m in c.get("volumeMounts") or []]
    fs_group = (pod.get("securityContext") or {}).get("fsGroup")
    for k, v in env.items():
        if not (k.startswith("ADTRACK_") and k.endswith("_FILE")):
            continue
        d, key = os.path.split(os.path.normpath(v))
        vol = next((volumes.get(n) for mp, n in mounts if mp == d), None)
        sec = (vol or {}).get("secret")
        if not sec:
            problem(where, "%s=%s: no Secret volume is mounted at %s" % (k, v, d))
            continue
        if sec.get("secretName") != "adtrack-secrets":
            problem(where, "%s: volume of Secret %s, expected adtrack-secrets" % (k, sec.get("secretName")))
        items = {i["path"]: i for i in sec.get("items") or []}
        item = items.get(key)
        skey = item["key"] if item else key
        if items and item is None:
            problem(where, "%s: the volume does not project %s" % (k, key))
        if skey not in SECRET_KEYS:
            problem(where, "%s: key %s is not one docs/DEPLOY.md tells to create (adtrack-secrets: %s)"
                    % (k, skey, ", ".join(sorted(SECRET_KEYS))))
        mode = (item or {}).get("mode", sec.get("defaultMode", 0o644))
        if mode & 0o007:
            problem(where, "%s: mode %o lets other users read the secret (the services refuse it): use 0440" % (k, mode))
        if mode & 0o040 and uid is not None and fs_group != uid:
            problem(where, "%s: group-readable secret, but the pod's fsGroup %s is not the image's gid %s"
                    % (k, fs_group, uid))


def labels_match(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_k8s(src, opts, raw_partitions):
    kdir = os.path.join(src, "deploy", "k8s")
    docs = []
    load_kustomization(kdir, docs, set())
    keda_docs = []
    load_kustomization(os.path.join(kdir, "keda"), keda_docs, set())
    for path, d in docs:
        if d.get("kind") == "ScaledObject":
            problem(path, "a KEDA ScaledObject in the base: the base must apply without the KEDA CRDs")
    by_kind = {}
    for path, d in docs + keda_docs:
        by_kind.setdefault(d.get("kind"), []).append((path, d))
    configmaps = {d["metadata"]["name"]: d for _, d in by_kind.get("ConfigMap", [])}
    services = {d["metadata"]["name"]: d for _, d in by_kind.get("Service", [])}
    workloads = {}
    with open(os.path.join(src, "deploy", "Dockerfile")) as f:
        uid = re.search(r"--uid (\d+)", f.read())
    uid = int(uid.group(1)) if uid else None
    enricher_settings = {}
    deployed = set()  # adtrack services that have a workload in the base

    for kind in ("Deployment", "StatefulSet"):
        for path, d in by_kind.get(kind, []):
            name = d["metadata"]["name"]
            where = "%s %s/%s" % (path, kind, name)
            spec = d["spec"]
            tmpl = spec["template"]
            labels = tmpl["metadata"].get("labels") or {}
            workloads[(kind, name)] = d
            if not labels_match(spec["selector"].get("matchLabels"), labels):
                problem(where, "selector does not match the pod template's labels")
            pod = tmpl["spec"]
            sc = pod.get("securityContext") or {}
            if uid is not None and sc.get("runAsUser") != uid:
                problem(where, "runAsUser %s is not the image's uid %s" % (sc.get("runAsUser"), uid))
            for c in pod["containers"]:
                cwhere = "%s container %s" % (where, c["name"])
                if not str(c.get("image", "")).startswith("adtrack"):
                    continue
                args = c.get("args") or []
                if c.get("command"):
                    problem(cwhere, "sets command: the image's entrypoint selects the service from args")
                if not args or args[0] not in SERVICES:
                    problem(cwhere, "args must start with a service name, got %r" % (args,))
                    continue
                svc, rest = args[0], args[1:]
                deployed.add(svc)
                env = container_env(c, configmaps, cwhere)
                check_settings(cwhere, svc, opts, env.keys(), rest)
                check_secret_values(cwhere, svc, opts, env, rest)
                check_secret_files(cwhere, pod, c, env, uid)
                if svc == "dashboard":
                    for v in scrape_values(env, rest):
                        parse_scrape(cwhere, v)
                ports = {p.get("name"): p["containerPort"] for p in c.get("ports") or []}
                listen = setting(opts, svc, env, rest, "listen")
                lport = port_of(listen)
                if svc in HTTP_SERVICES:
                    if listen.startswith("127."):
                        problem(cwhere, "listens on %s: probes and Services cannot reach it" % listen)
                    if lport not in ports.values():
                        problem(cwhere, "listens on %s but declares container ports %s" % (listen, sorted(ports.values())))
                    for probe, path_wanted in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
                        p = c.get(probe)
                        if not p or "httpGet" not in p:
                            problem(cwhere, "no %s httpGet" % probe)
                            continue
                        hg = p["httpGet"]
                        if hg.get("path") not in PROBE_PATHS:
                            problem(cwhere, "%s path %s is not one of %s" % (probe, hg.get("path"), PROBE_PATHS))
                        elif hg.get("path") != path_wanted:
                            problem(cwhere, "%s should probe %s, not %s" % (probe, path_wanted, hg.get("path")))
                        port = ports.get(hg.get("port"), hg.get("port"))
                        if port != lport:
                            problem(cwhere, "%s on port %s, but the service listens on %s" % (probe, hg.get("port"), listen))
                grace = pod.get("terminationGracePeriodSeconds", 30)
                prestop = 0
                hook = ((c.get("lifecycle") or {}).get("preStop") or {})
                if hook:
                    cmd = " ".join(map(str, (hook.get("exec") or {}).get("command") or []))
                    m = re.search(r"sleep\s+(\d+)", cmd)
                    prestop = int(m.group(1)) if m else int((hook.get("sleep") or {}).get("seconds", 0))
                if svc == "collector":
                    delay = int(setting(opts, svc, env, rest, "shutdown-delay-ms") or 0)
                    drain = int(setting(opts, svc, env, rest, "drain-timeout-ms") or 0)
                    if grace < prestop + (delay + drain) / 1000.0:
                        problem(cwhere, "terminationGracePeriodSeconds %s < preStop %d s + shutdown delay %d ms + "
                                "drain %d ms" % (grace, prestop, delay, drain))
                    if delay == 0:
                        problem(cwhere, "shutdown delay 0: endpoints and load balancers need time to stop sending")
                    check_spool(cwhere, kind, d, c, setting(opts, svc, env, rest, "spool-dir"),
                                setting(opts, svc, env, rest, "spool-max-bytes"), services)
                if svc == "enricher":
                    if grace < prestop + ENRICHER_SIGTERM_BATCH_S:
                        problem(cwhere, "terminationGracePeriodSeconds %s below the %d s the last batch may take"
                                % (grace, ENRICHER_SIGTERM_BATCH_S))
                    enricher_settings = {"deployment": name, "brokers": env.get("ADTRACK_BROKERS"),
                                         "group": setting(opts, svc, env, rest, "group"),
                                         "topic": setting(opts, svc, env, rest, "topic-raw")}
                if svc == "coredata":
                    if grace < prestop + COREDATA_SIGTERM_FLUSH_S:
                        problem(cwhere, "terminationGracePeriodSeconds below the %d s flush" % COREDATA_SIGTERM_FLUSH_S)
                    if spec.get("replicas", 1) != 1 or (spec.get("strategy") or {}).get("type") != "Recreate":
                        problem(cwhere, "coredata is a single writer: replicas 1 and strategy Recreate")

    for svc in HTTP_SERVICES:
        if svc not in deployed:
            problem(os.path.join(kdir, "kustomization.yaml"), "no workload runs %s in the base" % svc)
    pod_labels = [(n, w["spec"]["template"]["metadata"].get("labels") or {}) for (_, n), w in workloads.items()]
    for name, s in services.items():
        sel = s["spec"].get("selector") or {}
        matches = [n for n, lab in pod_labels if labels_match(sel, lab)]
        if not matches:
            problem("Service " + name, "selector %s matches no workload" % sel)
            continue
        w = [w for (_, n), w in workloads.items() if n == matches[0]][0]
        cports = {}
        for c in w["spec"]["template"]["spec"]["containers"]:
            for p in c.get("ports") or []:
                cports[p.get("name")] = p["containerPort"]
        for p in s["spec"].get("ports") or []:
            t = p.get("targetPort", p.get("port"))
            if t not in cports and t not in cports.values():
                problem("Service " + name, "targetPort %s is not a port of %s" % (t, matches[0]))
    for path, p in by_kind.get("PodDisruptionBudget", []):
        sel = p["spec"]["selector"].get("matchLabels")
        if not any(labels_match(sel, lab) for _, lab in pod_labels):
            problem(path, "PodDisruptionBudget %s selects no workload" % p["metadata"]["name"])
    for path, h in by_kind.get("HorizontalPodAutoscaler", []):
        ref = h["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) not in workloads:
            problem(path, "HPA %s targets %s/%s, which is not in the base" % (h["metadata"]["name"], ref["kind"], ref["name"]))
    for path, so in by_kind.get("ScaledObject", []):
        ref = so["spec"]["scaleTargetRef"]
        if (ref.get("kind", "Deployment"), ref["name"]) not in workloads:
            problem(path, "ScaledObject targets %s, which is not in the base" % ref["name"])
        for t in so["spec"].get("triggers") or []:
            if t.get("type") != "kafka":
                continue
            md = t.get("metadata") or {}
            for key, wanted in (("bootstrapServers", enricher_settings.get("brokers")),
                                ("consumerGroup", enricher_settings.get("group")),
                                ("topic", enricher_settings.get("topic"))):
                if md.get(key) != wanted:
                    problem(path, "kafka trigger %s %r, but the enricher uses %r" % (key, md.get(key), wanted))
            if str(md.get("allowIdleConsumers", "false")).lower() != "false":
                problem(path, "allowIdleConsumers must stay false: enrichers beyond the partitions idle")
        mx = so["spec"].get("maxReplicaCount")
        if raw_partitions and mx and mx > raw_partitions:
            problem(path, "maxReplicaCount %s > %s partitions of the raw topic" % (mx, raw_partitions))
    if not by_kind.get("ScaledObject"):
        problem("deploy/k8s/keda", "no ScaledObject for the enrichers")


def check_spool(where, kind, d, c, spool_dir, spool_max, services):
    mounts = {os.path.normpath(m["mountPath"]): m["name"] for m in c.get("volumeMounts") or []}
    vol = mounts.get(os.path.normpath(spool_dir or ""))
    if vol is None:
        problem(where, "nothing mounted on the spool directory %s" % spool_dir)
        return
    if kind != "StatefulSet":
        problem(where, "the spool must survive the pod: use a StatefulSet with a volumeClaimTemplate")
        return
    claims = {t["metadata"]["name"]: t for t in d["spec"].get("volumeClaimTemplates") or []}
    if vol not in claims:
        problem(where, "spool volume %s is not a volumeClaimTemplate" % vol)
        return
    size = quantity_bytes(claims[vol]["spec"]["resources"]["requests"]["storage"])
    if size is None or spool_max is None or size <= int(spool_max):
        problem(where, "spool claim (%s bytes) must be larger than --spool-max-bytes %s" % (size, spool_max))
    gov = services.get(d["spec"].get("serviceName"))
    if gov is None or gov["spec"].get("clusterIP") != "None":
        problem(where, "serviceName %s is not a headless Service in the base" % d["spec"].get("serviceName"))


# ---------------------------------------------------------------- image

def shipped_binaries(bin_dir):
    """What the Dockerfile ships: every adtrack* binary of the build except benchmarks."""
    return sorted(b for b in os.listdir(bin_dir)
                  if b.startswith("adtrack") and not b.endswith("-bench") and os.access(os.path.join(bin_dir, b), os.X_OK))


def check_entrypoint(src, bin_dir):
    ep = os.path.join(src, "deploy", "docker-entrypoint.sh")
    env = dict(os.environ, ENTRYPOINT_BIN_DIR=bin_dir)
    names = set(SERVICES) | {b[len("adtrack-"):] for b in shipped_binaries(bin_dir) if b.startswith("adtrack-")}
    for svc in sorted(names):
        binary = SERVICES.get(svc, "adtrack-" + svc)
        want = subprocess.run([os.path.join(bin_dir, binary), "--help"], capture_output=True, text=True, timeout=30)
        got = subprocess.run([ep, svc, "--help"], capture_output=True, text=True, timeout=30, env=env)
        if got.returncode != 0 or got.stdout != want.stdout:
            problem(ep, "`%s --help` did not run %s (exit %d)" % (svc, binary, got.returncode))


def check_dockerfile(src, bin_dir):
    path = os.path.join(src, "deploy", "Dockerfile")
    with open(path) as f:
        text = f.read()
    if not re.search(r"for b in /build/bin/adtrack\*; do", text) or "*-bench) ;;" not in text:
        problem(path, "the build stage should install every /build/bin/adtrack* except *-bench")
    shipped = shipped_binaries(bin_dir)
    for binary in SERVICES.values():
        if binary not in shipped:
            problem(path, "the build has no %s, which the entrypoint selects" % binary)
    stages = re.split(r"^FROM ", text, flags=re.M)
    runtime = [s for s in stages if " AS runtime" in s.split("\n", 1)[0]]
    if not runtime:
        problem(path, "no runtime stage")
        return
    m = re.search(r"apt-get install[^\n]*\\\n(.*?)&& rm", runtime[0], re.S)
    listed = set(m.group(1).replace("\\", " ").split()) if m else set()
    if not (shutil.which("ldd") and shutil.which("dpkg") and shutil.which("apt-cache")):
        print("check_manifests: no ldd/dpkg/apt-cache: runtime packages not checked")
        return
    libs = {}
    for binary in shipped:
        out = subprocess.run(["ldd", os.path.join(bin_dir, binary)], capture_output=True, text=True).stdout
        for lib in re.findall(r"=> (/\S+)", out):
            libs.setdefault(lib, set()).add(binary)
    # One dpkg -S for all of them. Debian 12 is usr-merged: /lib/x86_64-linux-gnu/x is owned
    # under either spelling, so each library is asked for as /lib/... and /usr/lib/...
    def spellings(lib):
        other = lib[4:] if lib.startswith("/usr/") else "/usr" + lib
        return [lib, other, os.path.realpath(lib)]
    queries = sorted({q for lib in libs for q in spellings(lib)})
    r = subprocess.run(["dpkg", "-S"] + queries, capture_output=True, text=True)
    owner = {}
    for line in r.stdout.splitlines():
        pkgs, _, file = line.partition(": ")
        owner[file.strip()] = pkgs.split(",")[0].split(":")[0].strip()
    needed = {}
    # A sanitizer build (-DADTRACK_SANITIZE / -DADTRACK_TSAN, run by the test suite) links
    # the sanitizer runtimes; images are never built from one.
    sanitizer = re.compile(r"/lib(asan|tsan|ubsan|lsan)\.so")
    for lib, users in libs.items():
        if sanitizer.search(lib):
            continue
        pkg = next((owner[q] for q in spellings(lib) if q in owner), None)
        if pkg is None:
            problem(path, "%s links %s, which no Debian package owns" % (", ".join(sorted(users)), lib))
        else:
            needed.setdefault(pkg, set()).update(users)
    out = subprocess.run(["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
                          "--no-breaks", "--no-replaces", "--no-enhances", "--no-pre-depends"] + sorted(listed),
                         capture_output=True, text=True).stdout
    closure = set(listed) | {ln.strip().split(":", 1)[0] for ln in out.splitlines() if ln and not ln.startswith(" ")}
    closure |= {ln.split("Depends:", 1)[1].strip() for ln in out.splitlines() if "Depends:" in ln}
    closure = {p.split(":")[0] for p in closure}
    for pkg, users in sorted(needed.items()):
        if pkg not in closure:
            problem(path, "runtime stage lacks %s (needed by %s)" % (pkg, ", ".join(sorted(users))))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--source-dir", default=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    a = ap.parse_args()
    opts = load_options(a.bin_dir)
    topics = set()
    check_compose(a.source_dir, opts, topics)
    partitions = check_topics(a.source_dir, topics)
    check_k8s(a.source_dir, opts, partitions)
    check_entrypoint(a.source_dir, a.bin_dir)
    check_dockerfile(a.source_dir, a.bin_dir)
    for p in problems:
        print("check_manifests: " + p)
    if problems:
        print("check_manifests: %d problem(s)" % len(problems))
        return 1
    print("check_manifests: compose, Kubernetes, entrypoint and Dockerfile agree with the binaries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
