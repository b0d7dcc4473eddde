#!/usr/bin/python3
"""Sync and Watch driven through gRPC by a client that is not nftproxy's CLI:
Python's grpcio (Debian's python3-grpcio) with message classes built at run
time from the descriptors the server hands out over gRPC server reflection
(no generated code, no copy of the .proto).

What is checked: two sources that Sync independently never disturb each
other; a source claiming another's resource is refused (ALREADY_EXISTS) and
nothing changes; a stale resourceVersion is refused (ABORTED); Watch delivers
every change in commit order with revisions, resumes from a revision, refuses
an unknown revision (OUT_OF_RANGE), filters by kind; a watch ends when the
server stops; error cases (INVALID_ARGUMENT).

Run from the repository root, as root:
    NFTPROXY_BIN=build-cli/nftproxy /usr/bin/python3 -m unittest -v tests/integration/test_sync_watch.py
"""

import os
import queue
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import netlab  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("NFTPROXY_BIN") or os.path.join(REPO, "build", "nftproxy")


def setUpModule():
    netlab.require_root_and_binary(BIN)


# ---- the API from server reflection -------------------------------------------------

def _varint(buf, i):
    shift = result = 0
    while True:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7


def _fields(buf):
    """(field number, value) pairs of a protobuf message's wire encoding."""
    i = 0
    while i < len(buf):
        key, i = _varint(buf, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 2:
            n, i = _varint(buf, i)
            value, i = buf[i:i + n], i + n
        elif wire == 1:
            value, i = buf[i:i + 8], i + 8
        elif wire == 5:
            value, i = buf[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wire)
        yield number, value


def _string_field(number, text):
    data = text.encode()
    out = bytearray([number << 3 | 2])
    n = len(data)
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            break
    return bytes(out) + data


class Api:
    """Message classes and stubs for nftproxy.v1, from the server's reflection."""

    def __init__(self, channel):
        ident = lambda b: b  # noqa: E731
        info = channel.stream_stream("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                     request_serializer=ident, response_deserializer=ident)
        # ServerReflectionRequest{file_containing_symbol (4): "nftproxy.v1.Proxy"}
        replies = list(info(iter([_string_field(4, "nftproxy.v1.Proxy")]), timeout=10))
        files = []
        for number, value in _fields(replies[0]):
            if number == 4:  # file_descriptor_response
                files += [v for n, v in _fields(value) if n == 1]
            if number == 7:  # error_response
                raise AssertionError("reflection error: %r" % value)
        protos = {}
        for raw in files:
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            protos[fd.name] = fd
        self.pool = descriptor_pool.DescriptorPool()
        added = set()

        def add(name):
            if name in added:
                return
            for dep in protos[name].dependency:
                add(dep)
            self.pool.Add(protos[name])
            added.add(name)
        for name in protos:
            add(name)
        self.files = sorted(protos)
        self.channel = channel

    def cls(self, name):
        desc = self.pool.FindMessageTypeByName("nftproxy.v1." + name)
        if hasattr(message_factory, "GetMessageClass"):
            return message_factory.GetMessageClass(desc)
        return message_factory.MessageFactory(self.pool).GetPrototype(desc)

    def msg(self, name, fields=None):
        return json_format.ParseDict(fields or {}, self.cls(name)())

    def unary(self, method, request, response):
        call = self.channel.unary_unary("/nftproxy.v1.Proxy/" + method,
                                        request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=self.cls(response).FromString)
        return call(request, timeout=30)

    def watch(self, fields=None, timeout=None):
        call = self.channel.unary_stream("/nftproxy.v1.Proxy/Watch",
                                         request_serializer=lambda m: m.SerializeToString(),
                                         response_deserializer=self.cls("WatchEvent").FromString)
        return call(self.msg("WatchRequest", fields), timeout=timeout)

    # conveniences
    def sync(self, source, resources, **kw):
        return self.unary("Sync", self.msg("SyncRequest", dict({"source": source, "resources": resources}, **kw)),
                          "SyncResponse")

    def apply(self, upserts=(), deletes=(), **kw):
        return self.unary("Apply", self.msg("ApplyRequest", dict({"upserts": list(upserts),
                                                                  "deletes": list(deletes)}, **kw)), "ApplyResponse")

    def list(self, kind="SERVICE"):
        resp = self.unary("List", self.msg("ListRequest", {"kind": kind}), "ListResponse")
        return {r.service.metadata.name if kind == "SERVICE" else r.endpoint_slice.metadata.name: r
                for r in resp.resources}

    def revision(self):
        return self.unary("Status", self.msg("StatusRequest"), "StatusResponse").revision


def svc(name, vip, port=80, **meta):
    return {"service": {"metadata": dict({"name": name}, **meta),
                        "spec": {"clusterIps": [vip], "ports": [{"port": port}]}}}


def sl(name, service, address):
    return {"endpointSlice": {"metadata": {"name": name}, "serviceName": service,
                              "endpoints": [{"addresses": [address]}]}}


class Collector:
    """Reads a Watch stream on a thread."""

    def __init__(self, call):
        self.call = call
        self.events = queue.Queue()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            for e in self.call:
                self.events.put(e)
        except grpc.RpcError as e:
            self.error = e
        self.events.put(None)

    def take(self, n, timeout=10):
        out = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            try:
                e = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError("only %d of %d events: %s" % (len(out), n, [summary(x) for x in out]))
            if e is None:
                raise AssertionError("stream ended (%s) after %s" % (self.error, [summary(x) for x in out]))
            out.append(e)
        return out


def summary(e):
    kind = e.resource.WhichOneof("kind")
    if kind is None:
        return ("BOOKMARK" if e.type == 3 else str(e.type), e.revision)
    meta = getattr(e.resource, kind).metadata
    return ({1: "UPSERT", 2: "DELETE"}[e.type], kind, meta.name, e.revision)


class ServerCase(unittest.TestCase):
    """Runs `nftproxy serve` in a namespace of its own, once per class."""
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="npx-cli-sw-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.lab = netlab.Lab()
        cls.lab.prefix = "npx-cli-%d-sw-" % os.getpid()
        cls.addClassCleanup(cls.lab.cleanup)
        cls.lab.add_netns("proxy")
        cls.start()

    @classmethod
    def start(cls):
        cls.sock = os.path.join(cls.tmp, "nftproxy.sock")
        cls.log_path = os.path.join(cls.tmp, "server.log")
        log = open(cls.log_path, "a")
        cls.server = cls.lab.spawn("proxy", [BIN, "serve", "--listen", "unix://" + cls.sock, "--table", "npxsw",
                                             "--state-dir", os.path.join(cls.tmp, "state")], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + 20
        while not os.path.exists(cls.sock):
            if cls.server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("server did not start:\n" + open(cls.log_path).read())
            time.sleep(0.05)
        cls.channel = grpc.insecure_channel("unix:" + cls.sock)
        grpc.channel_ready_future(cls.channel).result(timeout=10)
        cls.addClassCleanup(cls.channel.close)
        cls.api = Api(cls.channel)


class SyncWatchTest(ServerCase):

    def tearDown(self):
        # Every test starts from an empty store: each resource is deleted by its owner.
        for r in self.api.unary("List", self.api.msg("ListRequest"), "ListResponse").resources:
            kind = r.WhichOneof("kind")
            meta = getattr(r, kind).metadata
            self.api.apply(deletes=[{"kind": {"service": "SERVICE", "endpoint_slice": "ENDPOINT_SLICE",
                                              "workload": "WORKLOAD"}[kind],
                                     "namespace": meta.namespace, "name": meta.name}], source=meta.source)

    def test_reflection_gives_the_whole_api(self):
        self.assertIn("nftproxy/v1/nftproxy.proto", self.api.files)
        self.assertIn("google/protobuf/duration.proto", self.api.files)
        for name in ("SyncRequest", "SyncResponse", "WatchRequest", "WatchEvent"):
            self.assertIsNotNone(self.api.cls(name))

    def test_two_sources_never_disturb_each_other(self):
        r = self.api.sync("adapter-a", [svc("a1", "198.19.50.1"), svc("a2", "198.19.50.2"),
                                        sl("a2-1", "a2", "198.18.10.2")])
        self.assertEqual(sorted(x.name for x in r.created), ["a1", "a2", "a2-1"])
        self.api.sync("adapter-b", [svc("b1", "198.19.51.1")])
        b1 = self.api.list()["b1"]
        self.assertEqual(b1.service.metadata.source, "adapter-b")
        # a replaces its set: a1 goes, a2 changes, a3 comes; b1 is untouched
        r = self.api.sync("adapter-a", [svc("a2", "198.19.50.2", port=81), svc("a3", "198.19.50.3")])
        self.assertEqual([(x.kind, x.name) for x in r.deleted], [(1, "a1"), (2, "a2-1")])
        self.assertEqual([x.name for x in r.created], ["a3"])
        self.assertEqual([x.name for x in r.configured], ["a2"])
        services = self.api.list()
        self.assertEqual(sorted(services), ["a2", "a3", "b1"])
        self.assertEqual(services["b1"], b1, "b's service changed")
        self.assertEqual(services["a2"].service.spec.ports[0].port, 81)
        # b replaces its set: a's are untouched
        before = {k: v for k, v in services.items() if k.startswith("a")}
        self.api.sync("adapter-b", [])
        after = self.api.list()
        self.assertEqual(after, before)
        # the installed ruleset follows
        text = self.api.unary("GetRuleset", self.api.msg("GetRulesetRequest"), "GetRulesetResponse").text
        self.assertIn("svc4/default/a3/tcp/80", text)
        self.assertNotIn("svc4/default/b1/", text)
        self.assertNotIn("svc4/default/a1/", text)

    def test_conflict_is_refused_and_changes_nothing(self):
        self.api.sync("adapter-a", [svc("mine", "198.19.52.1")])
        rev = self.api.revision()
        with self.assertRaises(grpc.RpcError) as cm:
            self.api.sync("adapter-b", [svc("theirs", "198.19.52.2"), svc("mine", "198.19.52.9")])
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ALREADY_EXISTS)
        self.assertEqual(cm.exception.details(),
                         'service default/mine: conflict: owned by source "adapter-a", and this request is from '
                         'source "adapter-b" (a source changes only its own resources; to act for the owner, send '
                         'its name as the source)')
        self.assertEqual(sorted(self.api.list()), ["mine"])
        self.assertEqual(self.api.revision(), rev)
        # Apply from another source, and a manual Apply, are refused the same way
        for source in ("adapter-b", ""):
            with self.assertRaises(grpc.RpcError) as cm:
                self.api.apply([svc("mine", "198.19.52.9")], source=source)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.ALREADY_EXISTS)
        with self.assertRaises(grpc.RpcError) as cm:
            self.api.unary("Delete", self.api.msg("DeleteRequest", {"refs": [{"kind": "SERVICE", "name": "mine"}]}),
                           "DeleteResponse")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ALREADY_EXISTS)
        self.assertEqual(self.api.list()["mine"].service.spec.cluster_ips, ["198.19.52.1"])

    def test_stale_resource_version_and_invalid_requests(self):
        r = self.api.apply([svc("versioned", "198.19.53.1")], source="person")
        version = r.applied[0].service.metadata.resource_version
        self.api.apply([svc("versioned", "198.19.53.1", port=81, resourceVersion=str(version))], source="person")
        with self.assertRaises(grpc.RpcError) as cm:  # the same, now stale, version
            self.api.apply([svc("versioned", "198.19.53.1", port=82, resourceVersion=str(version))], source="person")
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ABORTED)
        self.assertIn("metadata.resourceVersion: conflict", cm.exception.details())
        with self.assertRaises(grpc.RpcError) as cm:
            self.api.sync("", [svc("x", "198.19.53.2")])
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("source: required", cm.exception.details())
        with self.assertRaises(grpc.RpcError) as cm:
            self.api.sync("person", [svc("x", "198.19.53.2", source="someone-else")])
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(grpc.RpcError) as cm:
            self.api.sync("person", [{"service": {"metadata": {"name": "noports"},
                                                  "spec": {"clusterIps": ["198.19.53.3"]}}}])
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("service default/noports: spec.ports: required", cm.exception.details())
        self.assertEqual(sorted(self.api.list()), ["versioned"], "the refused Syncs must not delete anything")

    def test_watch_delivers_every_change_in_order_and_resumes(self):
        self.api.sync("adapter-a", [svc("w0", "198.19.54.1")])
        start = self.api.revision()
        call = self.api.watch()
        self.addCleanup(call.cancel)
        c = Collector(call)
        first = c.take(2)
        self.assertEqual([summary(e) for e in first], [("UPSERT", "service", "w0", start), ("BOOKMARK", start)])
        # a burst of writes of every kind
        self.api.apply([svc("w1", "198.19.54.2")], source="adapter-a")                       # +1
        self.api.sync("adapter-b", [svc("w2", "198.19.54.3"), sl("w2-1", "w2", "198.18.10.2")])  # +2
        self.api.sync("adapter-a", [svc("w1", "198.19.54.2", port=90)])                      # +3: w0 deleted, w1 changed
        self.api.apply([svc("w1", "198.19.54.2", port=90)], source="adapter-a")              # unchanged: no event
        self.api.unary("Delete", self.api.msg("DeleteRequest", {"refs": [{"kind": "ENDPOINT_SLICE", "name": "w2-1"}],
                                                               "source": "adapter-b"}), "DeleteResponse")  # +4
        for i in range(20):                                                                   # +5 .. +24
            self.api.apply([svc("w1", "198.19.54.2", port=100 + i)], source="adapter-a")
        want = [("UPSERT", "service", "w1", start + 1),
                ("UPSERT", "service", "w2", start + 2), ("UPSERT", "endpoint_slice", "w2-1", start + 2),
                ("DELETE", "service", "w0", start + 3), ("UPSERT", "service", "w1", start + 3),
                ("DELETE", "endpoint_slice", "w2-1", start + 4)]
        want += [("UPSERT", "service", "w1", start + 5 + i) for i in range(20)]
        got = c.take(len(want))
        self.assertEqual([summary(e) for e in got], want)
        self.assertEqual(got[3].resource.service.spec.cluster_ips, ["198.19.54.1"], "a delete carries the old resource")
        self.assertEqual(got[-1].resource.service.spec.ports[0].port, 119)
        self.assertEqual(got[-1].resource.service.metadata.resource_version, start + 24)
        # resume from any revision: exactly the changes after it, then a bookmark
        for since in (start, start + 3, start + 23):
            resumed = Collector(self.api.watch({"sinceRevision": str(since)}))
            tail = [w for w in want if w[-1] > since] + [("BOOKMARK", start + 24)]
            self.assertEqual([summary(e) for e in resumed.take(len(tail))], tail, "since %d" % since)
            resumed.call.cancel()
        # kinds filter
        slices = Collector(self.api.watch({"sinceRevision": str(start), "kinds": ["ENDPOINT_SLICE"]}))
        self.assertEqual([summary(e) for e in slices.take(3)],
                         [w for w in want if w[1] == "endpoint_slice"] + [("BOOKMARK", start + 24)])
        slices.call.cancel()
        # a revision the server does not have
        with self.assertRaises(grpc.RpcError) as cm:
            list(self.api.watch({"sinceRevision": str(start + 1000)}, timeout=10))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.OUT_OF_RANGE)
        self.assertIn("is newer than the server's", cm.exception.details())
        # the cancelled client goes away cleanly; the server keeps serving
        call.cancel()
        self.assertIsInstance(self.api.revision(), int)


def readme_grpcurl_commands():
    """The grpcurl command lines of README.md's "Driving it with grpcurl"
    section, as argument lists."""
    with open(os.path.join(REPO, "README.md")) as f:
        text = f.read()
    m = re.search(r"^## Driving it with grpcurl\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    if not m:
        raise AssertionError("README.md has no \"## Driving it with grpcurl\" section")
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", m.group(1), re.S):
        lexer = shlex.shlex(block.replace("\\\n", " "), posix=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        for token in lexer:
            if token == "grpcurl":
                commands.append([])
            elif commands:
                commands[-1].append(token)
    return commands


class ReadmeTest(ServerCase):
    """grpcurl itself is not packaged in Debian 12; the README's grpcurl
    commands are replayed here, with the same JSON, through grpcio."""

    def test_readme_grpcurl_examples(self):
        commands = readme_grpcurl_commands()
        self.assertGreaterEqual(len(commands), 8, commands)
        methods = []
        for argv in commands:
            self.assertEqual(argv[:2], ["-plaintext", "-unix"], argv)
            self.assertIn("$S", argv, argv)
            tail = argv[argv.index("$S") + 1:]
            if tail[0] == "list":
                self.assertEqual(tail, ["list"])
                continue
            if tail[0] == "describe":
                find = (self.api.pool.FindServiceByName if tail[1].endswith(".Proxy") else
                        self.api.pool.FindMessageTypeByName)
                self.assertEqual(find(tail[1]).full_name, tail[1])
                continue
            self.assertEqual(argv.index("-d"), 2, "grpcurl's -d must come before the address: %s" % argv)
            body = json_format.Parse(argv[3], self.api.cls("WatchRequest" if tail[0].endswith("/Watch") else
                                                           tail[0].split("/")[1] + "Request")())
            service, method = tail[0].split("/")
            self.assertEqual(service, "nftproxy.v1.Proxy")
            methods.append(method)
            if method == "Watch":
                c = Collector(self.api.watch(json_format.MessageToDict(body)))
                events = c.take(3)
                self.assertEqual([summary(e) for e in events][-1][0], "BOOKMARK", [summary(e) for e in events])
                c.call.cancel()
                continue
            response = {"Apply": "ApplyResponse", "List": "ListResponse", "Get": "Resource",
                        "Status": "StatusResponse", "Sync": "SyncResponse"}[method]
            self.api.unary(method, body, response)
        self.assertEqual(methods, ["Apply", "List", "Get", "Status", "Sync", "Watch"])
        self.assertEqual(sorted(self.api.list()), ["api", "web"])
        self.assertEqual(self.api.list()["api"].service.metadata.source, "my-adapter")
        # The error shown in the README is the server's.
        with self.assertRaises(grpc.RpcError) as cm:
            self.api.sync("other-adapter", [svc("api", "198.19.0.11", port=443)])
        self.assertEqual(cm.exception.code(), grpc.StatusCode.ALREADY_EXISTS)
        with open(os.path.join(REPO, "README.md")) as f:
            self.assertIn("  Message: " + cm.exception.details() + "\n", f.read())
        for source in ("my-adapter", ""):
            for r in self.api.unary("List", self.api.msg("ListRequest"), "ListResponse").resources:
                meta = getattr(r, r.WhichOneof("kind")).metadata
                if meta.source == source:
                    self.api.apply(deletes=[{"kind": "SERVICE" if r.WhichOneof("kind") == "service" else
                                             "ENDPOINT_SLICE", "name": meta.name}], source=source)


class WatchAcrossRestartTest(ServerCase):
    """A watch ends when the server stops; after a restart the state comes back
    with its revision, and a revision from before the restart is refused."""

    def test_watch_ends_on_shutdown_and_old_revisions_are_refused_after_restart(self):
        self.api.sync("adapter-a", [svc("r1", "198.19.55.1")])
        self.api.sync("adapter-a", [svc("r1", "198.19.55.1"), svc("r2", "198.19.55.2")])
        rev = self.api.revision()
        c = Collector(self.api.watch())
        self.assertEqual(summary(c.take(3)[-1]), ("BOOKMARK", rev))
        t0 = time.monotonic()
        self.assertEqual(self.lab.stop(self.server, signal.SIGTERM, timeout=15), 0)
        self.assertEqual(c.events.get(timeout=15), None)
        self.assertLess(time.monotonic() - t0, 12)
        self.assertIn(c.error.code(), (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED))
        self.channel.close()
        type(self).start()
        self.assertEqual(self.api.revision(), rev)
        self.assertEqual(sorted(self.api.list()), ["r1", "r2"])
        with self.assertRaises(grpc.RpcError) as cm:
            list(self.api.watch({"sinceRevision": str(rev - 1)}, timeout=10))
        self.assertEqual(cm.exception.code(), grpc.StatusCode.OUT_OF_RANGE)
        self.assertIn("too old", cm.exception.details())
        c = Collector(self.api.watch({"sinceRevision": str(rev)}))
        self.assertEqual([summary(e) for e in c.take(1)], [("BOOKMARK", rev)])
        c.call.cancel()


if __name__ == "__main__":
    unittest.main(verbosity=2)
