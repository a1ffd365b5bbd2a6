#!/usr/bin/python3
"""End-to-end latency: pixel request -> enriched document in the enricher's file sink.

Sends GET /t.gif at a fixed arrival rate (open model: each request's clock starts at its
scheduled send time, so a slow pipeline cannot slow the client down and hide its own
latency), tags every request with <run id>:<sequence>, and tails the file sink
(events-*.jsonl) to see when each tagged document appears. Reports, side by side, the HTTP
answer latency (what the browser waits for) and the request-to-stored latency (what a
dashboard or a report waits for), as p50/p90/p99/max in milliseconds, as JSON on stdout.

Only the Python standard library is used (Debian's python3). The sink is polled every
--poll-ms (default 2 ms), which bounds the measuring error of "stored" from above by that.
"""
import argparse
import glob
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse
import uuid

BROWSER_UA = ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 "
              "(KHTML, like Gecko) Chrome/120.0 Safari/537.36")


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def summary(values_s):
    v = sorted(x * 1000.0 for x in values_s)
    return {
        "count": len(v),
        "p50_ms": percentile(v, 50),
        "p90_ms": percentile(v, 90),
        "p99_ms": percentile(v, 99),
        "max_ms": v[-1] if v else None,
    }


class Sink:
    """Tails every events-*.jsonl under a directory, including files created while it runs."""

    def __init__(self, directory, run_id):
        self.directory = directory
        self.marker = ('"' + run_id + ':').encode()
        self.offsets = {}
        self.partial = {}
        self.arrived = {}  # sequence -> monotonic time first seen
        self.duplicates = 0

    def files(self):
        # adtrack up gives every enricher a directory of its own under the sink directory.
        return glob.glob(os.path.join(self.directory, "**", "events-*.jsonl"), recursive=True)

    def skip_existing(self):
        for path in self.files():
            self.offsets[path] = os.path.getsize(path)

    def poll(self):
        now = time.monotonic()
        for path in self.files():
            off = self.offsets.get(path, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(off)
                    data = f.read()
            except FileNotFoundError:
                continue
            if not data:
                continue
            self.offsets[path] = off + len(data)
            data = self.partial.pop(path, b"") + data
            lines = data.split(b"\n")
            if lines[-1]:
                self.partial[path] = lines[-1]
            for line in lines[:-1]:
                if self.marker not in line:
                    continue
                tag = json.loads(line).get("tag", "")
                seq = int(tag.rsplit(":", 1)[1])
                if seq in self.arrived:
                    self.duplicates += 1
                else:
                    self.arrived[seq] = now


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="collector base URL, e.g. http://127.0.0.1:8080")
    ap.add_argument("--sink-dir", required=True, help="the enricher's file sink directory")
    ap.add_argument("--rate", type=float, default=200.0, help="requests per second")
    ap.add_argument("--duration", type=float, default=20.0, help="seconds of sending")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--campaign", default="camp-acme-spring")
    ap.add_argument("--publisher", default="pub-dailynews")
    ap.add_argument("--placement", default="top")
    ap.add_argument("--poll-ms", type=float, default=2.0)
    ap.add_argument("--wait", type=float, default=30.0, help="seconds to wait for stragglers")
    args = ap.parse_args()

    base = urllib.parse.urlsplit(args.url)
    run_id = "e2e-" + uuid.uuid4().hex[:12]
    total = int(args.rate * args.duration)
    sink = Sink(args.sink_dir, run_id)
    sink.skip_existing()

    scheduled = [0.0] * total
    answered = [None] * total
    status = [0] * total
    next_seq = [0]
    lock = threading.Lock()
    start = time.monotonic() + 0.2

    def sender():
        conn = None
        while True:
            with lock:
                seq = next_seq[0]
                next_seq[0] += 1
            if seq >= total:
                break
            due = start + seq / args.rate
            scheduled[seq] = due
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            q = urllib.parse.urlencode({"e": "imp", "c": args.campaign, "p": args.publisher,
                                        "pl": args.placement, "tag": f"{run_id}:{seq}"})
            for _attempt in range(2):
                try:
                    if conn is None:
                        conn = http.client.HTTPConnection(base.hostname, base.port, timeout=10)
                    conn.request("GET", "/t.gif?" + q, headers={"User-Agent": BROWSER_UA})
                    resp = conn.getresponse()
                    resp.read()
                    status[seq] = resp.status
                    answered[seq] = time.monotonic()
                    break
                except (OSError, http.client.HTTPException):
                    conn = None

    stop = threading.Event()

    def watcher():
        while not stop.is_set():
            sink.poll()
            time.sleep(args.poll_ms / 1000.0)

    w = threading.Thread(target=watcher, daemon=True)
    w.start()
    senders = [threading.Thread(target=sender) for _ in range(args.connections)]
    for t in senders:
        t.start()
    for t in senders:
        t.join()
    ok = [i for i in range(total) if 200 <= status[i] < 300]
    deadline = time.monotonic() + args.wait
    while time.monotonic() < deadline and any(i not in sink.arrived for i in ok):
        time.sleep(0.05)
    stop.set()
    w.join()
    sink.poll()

    answer = [answered[i] - scheduled[i] for i in ok]
    stored = [sink.arrived[i] - scheduled[i] for i in ok if i in sink.arrived]
    out = {
        "run_id": run_id,
        "rate": args.rate,
        "duration_s": args.duration,
        "requests": total,
        "ok": len(ok),
        "stored": len(stored),
        "missing": len(ok) - len(stored),
        "duplicates": sink.duplicates,
        "poll_ms": args.poll_ms,
        "answer": summary(answer),
        "stored_latency": summary(stored),
    }
    json.dump(out, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if out["missing"] == 0 and out["ok"] == total else 1


if __name__ == "__main__":
    sys.exit(main())
