# infra-lib.sh: helpers shared by scripts/kafka.sh and scripts/ferretdb.sh (sourced, bash).
# Nothing here starts anything.

now_ms() { date +%s%3N; }

# infra_free_ports N: N distinct TCP ports on 127.0.0.1 that were free a moment ago, below the
# kernel's ephemeral range when it leaves room: a port given up by a killed server is then
# not taken by some client's outgoing connection before the server restarts on it. All N are
# held at once while they are picked, so they are distinct.
infra_free_ports() {
    python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
try:
    lo = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
except OSError:
    lo = 32768
held, ports = [], []
cands = random.sample(range(10000, lo), min(4000, lo - 10000)) if lo > 12000 else []
for p in cands:
    if len(ports) == n:
        break
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        s.close()
        continue
    held.append(s)
    ports.append(p)
while len(ports) < n:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    held.append(s)
    ports.append(s.getsockname()[1])
print(" ".join(map(str, ports)))
PY
}

# infra_port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
infra_port_open() { (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null; }

# infra_pid_is PIDFILE PATTERN: prints the pid recorded in PIDFILE if that process is alive
# and its command line contains PATTERN (so a recycled pid is never taken for ours).
infra_pid_is() {
    local pid
    [[ -f $1 ]] || return 0
    pid=$(< "$1")
    if [[ -n $pid && -r /proc/$pid/cmdline ]] && tr '\0' ' ' < "/proc/$pid/cmdline" | grep -qF -- "$2"; then
        echo "$pid"
    fi
}

# infra_rss_kb PID: resident set size in KiB (VmRSS), or nothing.
infra_rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2> /dev/null || true; }
