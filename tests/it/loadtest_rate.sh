#!/usr/bin/env bash
# Integration test: rate accuracy of adtrack-loadtest's open-model scheduler.
#
# 500 req/s for 10 s against a local nginx (empty_gif). The scheduler decides how many
# requests are intended (exactly 5000) and when; what is checked:
#   - all 5000 were sent and answered, none dropped;
#   - the achieved send rate is within 1% of 500/s, and fewer than 1% were late by more
#     than 100 ms (generous, so a loaded 2-core CI box does not flake; a scheduler that
#     falls behind or bunches requests fails it);
#   - on the wire, nginx's own access log shows each of the 5000 tags once, and a
#     least-squares fit of nginx's arrival time against the sequence number gives a
#     spacing of 2 ms +- 1% (so the rate is real, not only what the tool believes; a fit is
#     not thrown off by a short stall of either process the way window counts are).
set -euo pipefail

source "${ADTRACK_SOURCE_DIR:?ADTRACK_SOURCE_DIR not set}/tests/support/loadtest_it.sh"

PORT="$(free_port)"
start_nginx "$PORT" "log_format lt '\$msec \$arg_tag'; access_log $TMP/access.log lt;" 4096

"$BIN" --target "http://127.0.0.1:$PORT" --rate 500 --duration 10s --threads 2 --connections 16 \
    --late 100ms --progress off --tag true --run-id rate1 --json "$TMP/rate.json" > "$TMP/summary.txt" \
    || fail "adtrack-loadtest exited with $?"
cat "$TMP/summary.txt"

lt_python "$TMP/rate.json" "$TMP/access.log" <<'PY'
r = json.load(open(sys.argv[1]))
q = r["requests"]
check(q["intended"] == 5000, f"intended {q['intended']} != 5000")
check(q["sent"] == 5000, f"sent {q['sent']} != 5000")
check(q["dropped"] == 0, f"dropped {q['dropped']}")
check(q["ok"] == 5000, f"ok {q['ok']} != 5000")
check(r["status"].get("200", 0) + r["status"].get("204", 0) == 5000, f"status {r['status']}")
rate = r["rates"]["sent"]
check(abs(rate - 500) / 500 < 0.01, f"achieved send rate {rate} not within 1% of 500")
check(q["late"] < 50, f"{q['late']} of 5000 requests late by more than 100 ms")
on_time = r["rates"]["on_time"]
check(abs(on_time - 500) / 500 < 0.01, f"on-time rate {on_time} not within 1% of 500")
check(abs(r["planned_s"] - 10) < 1e-9, f"planned {r['planned_s']}")
pts = r["timeline"]["points"]
check(sum(p["sent"] for p in pts) == 5000, "timeline sent does not add up")

# The wire: nginx's log ($msec per request, tag rate1:<seq>).
lines = [l.split() for l in open(sys.argv[2]) if l.strip()]
check(len(lines) == 5000, f"nginx saw {len(lines)} requests")
seqs = sorted(int(l[1].replace("%3A", ":").split(":")[1]) for l in lines if len(l) > 1)
check(seqs == list(range(5000)), "nginx did not see each tag rate1:0..4999 exactly once")
pts = [(int(l[1].replace("%3A", ":").split(":")[1]), float(l[0])) for l in lines]
n = len(pts)
mx = sum(x for x, _ in pts) / n
my = sum(y for _, y in pts) / n
slope = sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)
check(abs(slope - 0.002) / 0.002 < 0.01, f"nginx saw one request every {slope * 1000:.4f} ms, expected 2 ms +- 1%")
print(f"ok: sent rate {rate:.2f}/s, on time {on_time:.2f}/s, late {q['late']}, wire rate {1 / slope:.2f}/s")
PY
