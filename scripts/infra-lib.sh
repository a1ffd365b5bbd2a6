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

# infra_make_certs DIR [NAME]: a throw-away test PKI made with openssl in DIR (created), for
# the TLS tests (docs/SECURITY.md): ca.pem/ca.key (a CA), NAME.pem/NAME.key (a server
# certificate signed by it for 127.0.0.1 and localhost; NAME defaults to server),
# NAME.chain.pem (key then certificate, for servers that want one file), and other-ca.pem (a
# second CA that signed nothing here: "untrusted" tests point clients at it). Keys are
# unencrypted PKCS#8 and mode 0600. Idempotent: an existing ca.pem is kept and reused.
infra_make_certs() {
    local dir=$1 name=${2:-server}
    mkdir -p "$dir"
    (
        set -e
        cd "$dir"
        umask 077
        if [[ ! -s ca.pem ]]; then
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 30 \
                -subj "/CN=adtrack test CA" -addext basicConstraints=critical,CA:TRUE \
                -addext keyUsage=critical,keyCertSign,cRLSign 2> /dev/null
            openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 30 \
                -subj "/CN=adtrack other CA" 2> /dev/null
        fi
        if [[ ! -s $name.pem ]]; then
            openssl req -newkey rsa:2048 -nodes -keyout "$name.key" -out "$name.csr" -subj "/CN=$name" 2> /dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n' > "$name.ext"
            openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
                -extfile "$name.ext" -out "$name.pem" 2> /dev/null
            cat "$name.key" "$name.pem" > "$name.chain.pem"
            rm -f "$name.csr" "$name.ext"
        fi
        chmod 0644 ca.pem other-ca.pem "$name.pem"
    )
}
