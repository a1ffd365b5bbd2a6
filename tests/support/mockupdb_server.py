#!/usr/bin/python3
"""mockupdb_server.py: a scripted MongoDB wire peer for adtrack's integration tests.

Run it with Debian's python3 (/usr/bin/python3; python3-mockupdb is installed only there):

    /usr/bin/python3 tests/support/mockupdb_server.py [--port N] [--rule JSON]... [--verbose]

It starts a mockupdb.MockupDB on 127.0.0.1 (a free port unless --port is given) that looks
like a standalone MongoDB 6.0 (maxWireVersion 17, writable primary, no sessions) and talks
to stdin/stdout in JSON lines:

stdout, one JSON object per line, each with an "event" field:
  {"event": "listening", "port": 40123, "uri": "mongodb://127.0.0.1:40123"}   (always first)
  {"event": "command", "seq": 3, "cmd": "insert", "db": "adtrack", "collection": "events",
   "action": "duplicate", "doc": {...the whole command, documents included...}}
      one per request received, queued for stdout BEFORE the reply is sent; lines leave in
      the order they were queued, so an ack read after a client call returned comes after
      every report of that call. Lines are written by a writer thread and never block the
      server: the test may leave stdout unread for as long as it likes (see emit())
  {"event": "ack", "op": "rule", "id": 2}       one per control line, after it took effect
  {"event": "error", "msg": "..."}              a control line that could not be parsed, or a
                                                rule that failed while answering (the client
                                                then sees a hang-up rather than no answer)

stdin, one JSON object per line (relaxed or canonical Extended JSON):
  {"op": "rule", "cmd": "insert", "action": "...", "times": 1, "collection": "events", ...}
      queue a scripted answer for the next matching command (cmd compared case-insensitively,
      "collection" optional). "times" (default 1; -1 = forever) is how many requests the rule
      answers before it is used up. Rules are tried in the order they were added. Actions:
        "ok"                   the default reply for that command (see below), merged with
                               "reply" if given: {"reply": {"n": 2}}
        "reply"                exactly {"ok": 1} + "reply"
        "duplicate"            insert: a writeErrors entry (code 11000) for every document
                               whose _id is in "ids" (all documents when "ids" is absent), n
                               counts the others; update: the same for every update whose
                               q._id is in "ids" (all when absent)
        "error"                a command error: {"ok": 0, "code": C, "errmsg": M, "codeName": N}
                               (code default 2, errmsg "mock error"), plus "labels" as
                               errorLabels when given
        "write_concern_error"  the default reply plus writeConcernError {code, errmsg}
                               (code default 64, "waiting for replication timed out")
        "hangup"               close the connection without replying
        "cursor"               find/aggregate: {"cursor": {"id": 0, "ns": "<db>.<coll>",
                               "firstBatch": <the rule's "docs">}}
  {"op": "clear"}      drop every queued rule
  {"op": "count"}      ack with "counts": {collection: documents stored} (--store)
  {"op": "dump", "collection": "events", "path": "/abs/file.jsonl"}
                       write the stored documents of a collection (their --store-fields) to a
                       file, one relaxed JSON object per line; ack with "count" (--store)
  {"op": "sync"}       nothing; the ack says every earlier line took effect
  {"op": "stop"}       exit (so does stdin EOF and SIGTERM/SIGINT)

With --store the peer keeps what unscripted inserts insert, like a MongoDB collection with
its _id index: a document whose _id is already stored gets a writeErrors entry with code
11000 and is not counted in n. Only --store-fields (comma-separated, default all) of each
document are kept, so a few hundred thousand documents fit in memory. --quiet sends no
"command" lines at all (for tests that push hundreds of thousands of documents through; they
read the outcome with "count" and "dump").

Default replies when no rule matches: hello/isMaster -> the hello document; insert ->
{n: len(documents)}; update -> every update counted as upserted ({n, nModified: 0,
upserted: [{index, _id: q._id}]}); delete -> {n: len(deletes)}; find/aggregate -> an empty
cursor; getMore -> an empty nextBatch; createIndexes -> {numIndexesBefore: 1,
numIndexesAfter: 2}; anything else (endSessions, ping, buildInfo, killCursors, ...) -> {ok: 1}.
"""
import argparse
import os
import queue
import signal
import sys
import threading
from collections import OrderedDict

import mockupdb
from bson import json_util
from bson.json_util import RELAXED_JSON_OPTIONS

HELLO = OrderedDict([
    ("ismaster", True),
    ("isWritablePrimary", True),
    ("maxWireVersion", 17),
    ("minWireVersion", 0),
    ("maxBsonObjectSize", 16 * 1024 * 1024),
    ("maxMessageSizeBytes", 48000000),
    ("maxWriteBatchSize", 100000),
])

HANDSHAKE_CMDS = ("ismaster", "hello")

# The protocol goes to the real stdout only; anything else that prints (mockupdb's verbose
# log, a stray traceback helper) is sent to stderr by main().
_OUT = sys.stdout
# Lines waiting for stdout, in emit() order; unbounded on purpose (see emit()).
_out_q = queue.Queue()


def _writer():
    """The only thread that writes stdout: takes whole lines from _out_q, in order."""
    while True:
        line = _out_q.get()
        _OUT.write(line)
        _OUT.flush()
        _out_q.task_done()


def emit(obj):
    """Queues one JSON line for stdout, from any thread; never blocks.

    Why a queue and not a direct write: mockupdb runs every autoresponder while holding its
    server-wide lock (MockupDB._server_loop is @_synchronized), and the test reads stdout only
    inside ts_mongo_ctl(). A report of a large insert (120 events are ~58 KB of JSON, the pipe
    holds 64 KiB) written straight into a pipe the test is not reading blocks the handler
    before it replies, and with it every other connection's hello: the whole peer hangs until
    the test reads again, which looks to the client like a dead server. Queued lines keep
    their order, so a control ack still follows every report queued before it."""
    _out_q.put(json_util.dumps(obj, json_options=RELAXED_JSON_OPTIONS) + "\n")


def flush_out(timeout_s):
    """Waits up to @timeout_s for the writer to hand every queued line to stdout (a reader
    that stopped reading must not keep the peer from exiting)."""
    done = threading.Event()

    def wait_all():
        _out_q.join()
        done.set()

    threading.Thread(target=wait_all, daemon=True).start()
    done.wait(timeout_s)


class Store(object):
    """--store: the documents unscripted inserts inserted, per collection, by _id."""

    def __init__(self, fields):
        self.lock = threading.Lock()
        self.colls = {}
        self.fields = fields

    def insert(self, coll, documents):
        """Inserts like MongoDB with unordered writes: returns (n, writeErrors)."""
        errors = []
        n = 0
        with self.lock:
            stored = self.colls.setdefault(coll, OrderedDict())
            for i, d in enumerate(documents):
                key = d.get("_id")
                if key is None or key in stored:
                    errors.append(OrderedDict([("index", i), ("code", 11000), ("codeName", "DuplicateKey"),
                                               ("errmsg", "E11000 duplicate key error collection: %s" % coll)]))
                    continue
                if self.fields:
                    stored[key] = OrderedDict((f, d.get(f)) for f in self.fields if f in d)
                else:
                    stored[key] = d
                n += 1
        return n, errors

    def counts(self):
        with self.lock:
            return OrderedDict((c, len(v)) for c, v in self.colls.items())

    def dump(self, coll, path):
        with self.lock:
            docs = list(self.colls.get(coll, OrderedDict()).values())
        with open(path, "w") as f:
            for d in docs:
                f.write(json_util.dumps(d, json_options=RELAXED_JSON_OPTIONS))
                f.write("\n")
        return len(docs)


class Script(object):
    """The queued rules and the request counter, shared by connection threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.rules = []
        self.seq = 0
        self.next_rule_id = 1
        self.store = None
        self.quiet = False

    def add(self, rule):
        if not isinstance(rule.get("cmd"), str):
            raise ValueError("rule: \"cmd\" (a command name) is required")
        action = rule.get("action", "ok")
        if action not in ("ok", "reply", "duplicate", "error", "write_concern_error", "hangup", "cursor"):
            raise ValueError("rule: unknown action %r" % (action,))
        with self.lock:
            rule = dict(rule)
            rule["action"] = action
            rule.setdefault("times", 1)
            if not isinstance(rule["times"], int) or rule["times"] == 0 or rule["times"] < -1:
                raise ValueError("rule: times must be a positive count or -1 (forever)")
            rule["id"] = self.next_rule_id
            self.next_rule_id += 1
            self.rules.append(rule)
            return rule["id"]

    def clear(self):
        with self.lock:
            self.rules = []

    def take(self, cmd, collection):
        """The first live rule for (cmd, collection), used up by one; or None."""
        with self.lock:
            self.seq += 1
            seq = self.seq
            for rule in self.rules:
                if rule["cmd"].lower() != cmd.lower():
                    continue
                if "collection" in rule and rule["collection"] != collection:
                    continue
                if rule["times"] > 0:
                    rule["times"] -= 1
                    if rule["times"] == 0:
                        self.rules.remove(rule)
                return seq, rule
            return seq, None


def command_parts(request):
    """(command name, database, collection or None, command document)."""
    doc = request.doc if len(request.docs) == 1 else OrderedDict()
    name = request.command_name if request.is_command else type(request).__name__
    db = request.namespace
    if isinstance(db, str) and "." in db:
        db = db.split(".", 1)[0]
    coll = None
    if doc and name is not None:
        first = doc.get(name)
        if isinstance(first, str):
            coll = first
    return name or "", db, coll, doc


def default_reply(name, db, coll, doc):
    lname = name.lower()
    if lname in HANDSHAKE_CMDS:
        return OrderedDict(HELLO)
    if lname == "insert":
        return OrderedDict([("n", len(doc.get("documents", [])))])
    if lname == "update":
        updates = doc.get("updates", [])
        upserted = [OrderedDict([("index", i), ("_id", u.get("q", {}).get("_id"))]) for i, u in enumerate(updates)]
        return OrderedDict([("n", len(updates)), ("nModified", 0), ("upserted", upserted)])
    if lname == "delete":
        return OrderedDict([("n", len(doc.get("deletes", [])))])
    if lname in ("find", "aggregate"):
        return OrderedDict([("cursor", OrderedDict([("id", 0), ("ns", "%s.%s" % (db, coll)), ("firstBatch", [])]))])
    if lname == "getmore":
        return OrderedDict([("cursor", OrderedDict([("id", 0), ("ns", "%s.%s" % (db, doc.get("collection"))),
                                                     ("nextBatch", [])]))])
    if lname == "createindexes":
        return OrderedDict([("createdCollectionAutomatically", False), ("numIndexesBefore", 1),
                            ("numIndexesAfter", 2)])
    return OrderedDict()


def duplicate_reply(name, doc, rule):
    ids = rule.get("ids")
    lname = name.lower()
    items = doc.get("documents", []) if lname == "insert" else doc.get("updates", [])
    errors = []
    for i, item in enumerate(items):
        key = item.get("_id") if lname == "insert" else item.get("q", {}).get("_id")
        if ids is None or key in ids:
            errors.append(OrderedDict([("index", i), ("code", 11000), ("codeName", "DuplicateKey"),
                                       ("errmsg", "E11000 duplicate key error collection: dup key: { _id: %r }" % (key,))]))
    reply = OrderedDict([("n", len(items) - len(errors))])
    if lname == "update":
        reply["nModified"] = 0
    if errors:
        reply["writeErrors"] = errors
    return reply


def make_handler(script):
    def handle(request):
        try:
            return answer(request)
        except Exception as exc:  # a broken rule must not leave the client waiting for a reply
            emit(OrderedDict([("event", "error"), ("msg", "handler: %s: %s" % (type(exc).__name__, exc))]))
            return request.hangup()

    def answer(request):
        name, db, coll, doc = command_parts(request)
        seq, rule = script.take(name, coll)
        action = rule["action"] if rule else "default"
        if not script.quiet:
            emit(OrderedDict([("event", "command"), ("seq", seq), ("cmd", name), ("db", db), ("collection", coll),
                              ("action", action), ("doc", doc)]))
        if not request.is_command:
            # Legacy opcodes (OP_INSERT, ...): mongoc 1.23 never sends them to wire version 17.
            return request.hangup()
        if rule is None and script.store is not None and name.lower() == "insert":
            n, errors = script.store.insert(coll, doc.get("documents", []))
            reply = OrderedDict([("n", n)])
            if errors:
                reply["writeErrors"] = errors
            return request.replies(reply)
        if rule is None or action == "ok":
            reply = default_reply(name, db, coll, doc)
            if rule is not None:
                reply.update(rule.get("reply", {}))
            return request.replies(reply)
        if action == "reply":
            return request.replies(OrderedDict(rule.get("reply", {})))
        if action == "duplicate":
            return request.replies(duplicate_reply(name, doc, rule))
        if action == "error":
            extra = OrderedDict([("codeName", rule.get("codeName", "MockError"))])
            if "labels" in rule:
                extra["errorLabels"] = rule["labels"]
            return request.command_err(rule.get("code", 2), rule.get("errmsg", "mock error"), **extra)
        if action == "write_concern_error":
            reply = default_reply(name, db, coll, doc)
            reply["writeConcernError"] = OrderedDict([
                ("code", rule.get("code", 64)), ("codeName", rule.get("codeName", "WriteConcernFailed")),
                ("errmsg", rule.get("errmsg", "waiting for replication timed out"))])
            return request.replies(reply)
        if action == "hangup":
            return request.hangup()
        if action == "cursor":
            ns = "%s.%s" % (db, coll)
            return request.replies(OrderedDict([("cursor", OrderedDict([("id", 0), ("ns", ns),
                                                                        ("firstBatch", rule.get("docs", []))]))]))
        return request.replies(OrderedDict([("ok", 0), ("errmsg", "mockupdb_server: unhandled action")]))

    return handle


def control(script, line):
    line = line.strip()
    if not line:
        return True
    try:
        msg = json_util.loads(line)
        op = msg.get("op")
        if op == "rule":
            rule_id = script.add(msg)
            emit(OrderedDict([("event", "ack"), ("op", op), ("id", rule_id)]))
        elif op == "clear":
            script.clear()
            emit(OrderedDict([("event", "ack"), ("op", op)]))
        elif op == "sync":
            emit(OrderedDict([("event", "ack"), ("op", op)]))
        elif op == "count":
            if script.store is None:
                raise ValueError("count needs --store")
            emit(OrderedDict([("event", "ack"), ("op", op), ("counts", script.store.counts())]))
        elif op == "dump":
            if script.store is None:
                raise ValueError("dump needs --store")
            n = script.store.dump(msg["collection"], msg["path"])
            emit(OrderedDict([("event", "ack"), ("op", op), ("count", n)]))
        elif op == "stop":
            emit(OrderedDict([("event", "ack"), ("op", op)]))
            return False
        else:
            raise ValueError("unknown op %r" % (op,))
    except Exception as exc:  # a bad line must not kill the peer the test talks to
        emit(OrderedDict([("event", "error"), ("msg", "%s: %s" % (type(exc).__name__, exc))]))
    return True


def main():
    ap = argparse.ArgumentParser(description="Scripted MongoDB wire peer (mockupdb) for adtrack tests.")
    ap.add_argument("--port", type=int, default=None, help="listen port (default: a free one)")
    ap.add_argument("--rule", action="append", default=[], help="a rule as JSON, queued before listening")
    ap.add_argument("--verbose", action="store_true", help="mockupdb's own request log on stderr")
    ap.add_argument("--store", action="store_true", help="keep inserted documents by _id (duplicates: 11000)")
    ap.add_argument("--store-fields", default="", help="with --store: the fields kept per document (comma-separated)")
    ap.add_argument("--quiet", action="store_true", help="no \"command\" reports on stdout")
    args = ap.parse_args()

    threading.Thread(target=_writer, name="stdout-writer", daemon=True).start()
    script = Script()
    script.quiet = args.quiet
    if args.store:
        script.store = Store([f for f in args.store_fields.split(",") if f])
    for text in args.rule:
        script.add(json_util.loads(text))

    # mongoc 1.23 opens every connection with the legacy handshake {isMaster: 1, helloOk:
    # true} (OP_QUERY on admin.$cmd). The reply has no helloOk, so the driver keeps using
    # isMaster rather than switching to hello. The catch-all handler registered below takes
    # precedence over auto_ismaster and answers both (so handshakes are reported too);
    # auto_ismaster stays as mockupdb's own fallback.
    server = mockupdb.MockupDB(port=args.port, auto_ismaster=OrderedDict(HELLO), request_timeout=int(1e6))
    server.autoresponds(make_handler(script))
    sys.stdout = sys.stderr
    server.verbose = args.verbose
    port = server.run()
    emit(OrderedDict([("event", "listening"), ("port", port), ("uri", "mongodb://127.0.0.1:%d" % port)]))

    def on_signal(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        for line in sys.stdin:
            if not control(script, line):
                break
    except SystemExit:
        pass
    # mockupdb.stop() joins every connection thread for up to 10 s each; a test peer has
    # nothing else to flush, so leave once the queued lines (the stop ack) are out.
    flush_out(2.0)
    os._exit(0)


if __name__ == "__main__":
    main()
