#!/usr/bin/env python3
"""gRPC surface of `nftproxy serve` seen by a client that is not the CLI:
server reflection lists nftproxy.v1.Proxy, the standard health service answers
SERVING, an invalid Apply is INVALID_ARGUMENT, and Watch streams. Uses grpcio with hand-encoded
protobuf bytes (Debian ships no reflection/health client modules)."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("NFTPROXY_BIN", os.path.join(REPO, "build", "nftproxy"))


def fields(data):
    """(field number, value) pairs of a serialized message: varints as ints,
    length-delimited fields as bytes (all this test needs)."""
    out, i = [], 0
    def varint():
        nonlocal i
        v, shift = 0, 0
        while True:
            b = data[i]
            i += 1
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v
    while i < len(data):
        key = varint()
        if key & 7 == 0:
            out.append((key >> 3, varint()))
        elif key & 7 == 2:
            n = varint()
            out.append((key >> 3, data[i:i + n]))
            i += n
        else:
            raise ValueError("wire type %d" % (key & 7))
    return out


def needs_root(test):
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            raise AssertionError("integration tests need root under CI")
        raise unittest.SkipTest("needs root")


class GrpcApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        needs_root(cls)
        cls.ns = "npx-%d-grpc" % os.getpid()
        subprocess.run(["ip", "netns", "add", cls.ns], check=True)
        cls.tmp = tempfile.mkdtemp(prefix="npx-grpc-")
        cls.sock = os.path.join(cls.tmp, "run", "nftproxy.sock")
        cls.proc = subprocess.Popen(
            ["ip", "netns", "exec", cls.ns, BIN, "serve", "--listen", "unix://" + cls.sock,
             "--state-dir", os.path.join(cls.tmp, "state")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 10
        while not os.path.exists(cls.sock):
            if time.time() > deadline or cls.proc.poll() is not None:
                raise AssertionError("server did not start: %s" % cls.proc.stderr.read())
            time.sleep(0.05)
        cls.channel = grpc.insecure_channel("unix:" + cls.sock)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.proc.terminate()
        try:
            cls.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            cls.proc.kill()
            cls.proc.wait()
        subprocess.run(["ip", "netns", "del", cls.ns], check=False)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def raw(self, method, kind="unary"):
        ident = lambda b: b
        if kind == "stream":
            return self.channel.stream_stream(method, request_serializer=ident, response_deserializer=ident)
        return self.channel.unary_unary(method, request_serializer=ident, response_deserializer=ident)

    def test_reflection_lists_the_service(self):
        # ServerReflectionRequest{list_services: "*"}: field 7, length-delimited.
        call = self.raw("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "stream")
        replies = list(call(iter([b"\x3a\x01*"]), timeout=10))
        self.assertEqual(len(replies), 1)
        self.assertIn(b"nftproxy.v1.Proxy", replies[0])
        self.assertIn(b"grpc.health.v1.Health", replies[0])

    def test_socket_mode(self):
        self.assertEqual(os.stat(self.sock).st_mode & 0o777, 0o660)
        # The server creates a missing socket directory with mode 0750.
        self.assertEqual(os.stat(os.path.join(self.tmp, "run")).st_mode & 0o777, 0o750)

    def test_malformed_requests_are_invalid_argument(self):
        garbage = b"\xff\xff\xff"  # a truncated field key: no message parses from it
        for method in ("Apply", "Sync", "Get", "List", "Delete", "GetRuleset", "Status", "GetCounters"):
            with self.assertRaises(grpc.RpcError, msg=method) as cm:
                self.raw("/nftproxy.v1.Proxy/" + method)(garbage, timeout=10)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, method)
            self.assertIn("Request", cm.exception.details())
        for method in ("Watch", "StreamRuleset"):
            call = self.channel.unary_stream("/nftproxy.v1.Proxy/" + method, request_serializer=lambda b: b,
                                             response_deserializer=lambda b: b)
            with self.assertRaises(grpc.RpcError, msg=method) as cm:
                list(call(garbage, timeout=10))
            self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, method)
        # The server is still there.
        self.assertEqual(self.raw("/grpc.health.v1.Health/Check")(b"", timeout=10), b"\x08\x01")

    def test_health_is_serving(self):
        # HealthCheckRequest{} -> HealthCheckResponse{status: SERVING(1)}.
        self.assertEqual(self.raw("/grpc.health.v1.Health/Check")(b"", timeout=10), b"\x08\x01")

    def reflect_file(self, symbol, version="v1alpha"):
        """The FileDescriptorProtos reflection returns for `symbol`, as grpcurl
        asks for them (ServerReflectionRequest.file_containing_symbol)."""
        name = symbol.encode()
        call = self.raw("/grpc.reflection.%s.ServerReflection/ServerReflectionInfo" % version, "stream")
        replies = list(call(iter([b"\x22" + bytes([len(name)]) + name]), timeout=10))
        self.assertEqual(len(replies), 1)
        files = []
        for num, value in fields(replies[0]):
            self.assertNotEqual(num, 7, "reflection error for %s: %r" % (symbol, value))
            if num == 4:  # file_descriptor_response
                files += [descriptor_pb2.FileDescriptorProto.FromString(v) for n, v in fields(value) if n == 1]
        return files

    def test_health_is_described_by_reflection_and_answers_per_service(self):
        # No local .proto: the health service's descriptor comes from the
        # server, and Check's messages are built from it, as grpcurl does.
        files = self.reflect_file("grpc.health.v1.Health")
        self.assertTrue(files, "reflection knows no grpc.health.v1.Health")
        pool = descriptor_pool.DescriptorPool()
        for f in reversed(files):
            pool.Add(f)
        service = pool.FindServiceByName("grpc.health.v1.Health")
        check = service.FindMethodByName("Check")
        factory = message_factory.MessageFactory(pool)
        request_class = factory.GetPrototype(check.input_type)
        response_class = factory.GetPrototype(check.output_type)
        status = check.output_type.fields_by_name["status"].enum_type
        call = self.channel.unary_unary("/grpc.health.v1.Health/Check",
                                        request_serializer=lambda m: m.SerializeToString(),
                                        response_deserializer=response_class.FromString)
        for name in ("", "nftproxy.v1.Proxy"):
            reply = call(request_class(service=name), timeout=10)
            self.assertEqual(status.values_by_number[reply.status].name, "SERVING", name)
        with self.assertRaises(grpc.RpcError) as cm:
            call(request_class(service="nftproxy.v1.Nope"), timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_reflection_serves_the_api_with_its_comments(self):
        # grpcurl describe shows the .proto's comments: the descriptor must
        # carry its source info. Both protocol versions answer (grpcurl tries
        # v1 first).
        for version in ("v1alpha", "v1"):
            files = self.reflect_file("nftproxy.v1.SyncRequest", version)
            self.assertEqual(files[0].name, "nftproxy/v1/nftproxy.proto")
            # Imports come along, so a client can build every type.
            self.assertIn("google/protobuf/timestamp.proto", [f.name for f in files])
            comments = [loc.leading_comments for loc in files[0].source_code_info.location]
            self.assertTrue(any("Sync replaces, all-or-nothing, everything one source owns" in c for c in comments),
                            "no comments in the served descriptor (%s)" % version)
            pool = descriptor_pool.DescriptorPool()
            for f in reversed(files):
                pool.Add(f)
            self.assertIn("source", pool.FindMessageTypeByName("nftproxy.v1.SyncRequest").fields_by_name)
        # An unknown symbol is NOT_FOUND, as gRPC's own reflection says it.
        call = self.raw("/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "stream")
        reply = list(call(iter([b"\x22\x0enftproxy.v1.No"]), timeout=10))[0]
        error = dict(fields(dict(fields(reply))[7]))
        self.assertEqual(error[1], 5)
        self.assertEqual(error[2], b"Symbol not found.")

    def test_invalid_apply_is_invalid_argument(self):
        # ApplyRequest{upserts: [Resource{service: Service{metadata{name:"X_y"}}}]}:
        # a service whose name is not a DNS label.
        meta = b"\x12\x03X_y"                    # ObjectMeta.name = "X_y"
        service = b"\x0a" + bytes([len(meta)]) + meta   # Service.metadata
        resource = b"\x0a" + bytes([len(service)]) + service  # Resource.service
        req = b"\x0a" + bytes([len(resource)]) + resource     # ApplyRequest.upserts
        with self.assertRaises(grpc.RpcError) as cm:
            self.raw("/nftproxy.v1.Proxy/Apply")(req, timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("service default/X_y: metadata.name: \"X_y\" must be a DNS label", cm.exception.details())

    def test_watch_streams_a_bookmark_first(self):
        # WatchRequest{} on an empty store: the initial state is empty, so the
        # first event is WatchEvent{type: BOOKMARK(3), revision: 0}; the stream
        # then stays open for changes (see test_sync_watch.py).
        call = self.channel.unary_stream("/nftproxy.v1.Proxy/Watch", request_serializer=lambda b: b,
                                         response_deserializer=lambda b: b)
        stream = call(b"", timeout=10)
        self.assertEqual(next(stream), b"\x08\x03")
        stream.cancel()

class ListenAddressTest(unittest.TestCase):
    """`serve --listen` is checked before the server touches anything."""

    def setUp(self):
        needs_root(self)
        self.ns = "npx-%d-listen" % os.getpid()
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.tmp = tempfile.mkdtemp(prefix="npx-listen-")

    def tearDown(self):
        subprocess.run(["ip", "netns", "del", self.ns], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def serve(self, *listen, extra=("--state-dir", "")):
        args = ["ip", "netns", "exec", self.ns, BIN, "serve", "--table", "npxlisten"] + list(extra)
        for a in listen:
            args += ["--listen", a]
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def wait_socket(self, proc, sock):
        deadline = time.time() + 10
        while not os.path.exists(sock):
            if proc.poll() is not None:
                self.fail("server exited: %s" % proc.stderr.read())
            self.assertLess(time.time(), deadline, "no socket")
            time.sleep(0.02)

    def test_state_dir_writable_by_others_is_refused_and_others_tightened(self):
        state = os.path.join(self.tmp, "state")
        os.mkdir(state)
        os.chmod(state, 0o777)
        proc = self.serve(os.path.join(self.tmp, "a.sock"), extra=("--state-dir", state))
        _, err = proc.communicate(timeout=10)
        self.assertEqual(proc.returncode, 2, err)
        self.assertIn("writable by every user (mode 0777)", err)
        self.assertIn("chmod 0750 " + state, err)
        self.assertEqual(os.stat(state).st_mode & 0o777, 0o777)  # left as it was
        os.chmod(state, 0o775)
        sock = os.path.join(self.tmp, "b.sock")
        proc = self.serve(sock, extra=("--state-dir", state))
        try:
            self.wait_socket(proc, sock)
            self.assertEqual(os.stat(state).st_mode & 0o777, 0o750)
        finally:
            proc.terminate()
            proc.communicate(timeout=10)

    def test_socket_has_its_mode_and_group_from_the_start(self):
        sock = os.path.join(self.tmp, "m.sock")
        proc = self.serve(sock, extra=("--state-dir", "", "--socket-mode", "0600", "--socket-group", "7"))
        try:
            # Polled as fast as possible: the first mode ever seen is the final one.
            self.wait_socket(proc, sock)
            self.assertEqual(os.stat(sock).st_mode & 0o777, 0o600)
            # The group too: the socket is bound under another name, given
            # its mode and group, then renamed into place.
            self.assertEqual(os.stat(sock).st_gid, 7)
        finally:
            proc.terminate()
            proc.communicate(timeout=10)
        for bad in ("0644x", "0400", "1777"):
            proc = self.serve(os.path.join(self.tmp, "x.sock"), extra=("--state-dir", "", "--socket-mode", bad))
            _, err = proc.communicate(timeout=10)
            self.assertEqual(proc.returncode, 2, bad)
            self.assertIn("--socket-mode", err)

    def test_bad_addresses_are_refused_at_start(self):
        for bad, says in (("tcp://127.0.0.1:99999", "port \"99999\" is not a number from 1 to 65535"),
                          ("tcp://127.0.0.1", "no port"),
                          ("http://127.0.0.1:7070", "http:// is not a scheme"),
                          ("tcp://::1:7070", "[ADDRESS]:PORT")):
            proc = self.serve(bad)
            _, err = proc.communicate(timeout=10)
            self.assertEqual(proc.returncode, 2, bad)
            self.assertIn("--listen", err)
            self.assertIn(says, err)
            # Refused before the table was created.
            out = subprocess.run(["ip", "netns", "exec", self.ns, "nft", "list", "tables"],
                                 capture_output=True, text=True).stdout
            self.assertNotIn("npxlisten", out)

    def test_plain_socket_path_and_log_lines(self):
        sock = os.path.join(self.tmp, "plain.sock")
        proc = self.serve(sock)
        try:
            deadline = time.time() + 10
            while not os.path.exists(sock):
                self.assertIsNone(proc.poll(), "server exited")
                self.assertLess(time.time(), deadline, "no socket")
                time.sleep(0.05)
            channel = grpc.insecure_channel("unix:" + sock)
            reply = channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=10)
            self.assertEqual(reply, b"\x08\x01")
            # A refused write: DeleteRequest{refs: [{kind: SERVICE, name: "gone"}]}.
            ref = b"\x08\x01\x1a\x04gone"
            with self.assertRaises(grpc.RpcError) as cm:
                channel.unary_unary("/nftproxy.v1.Proxy/Delete")(b"\x0a" + bytes([len(ref)]) + ref, timeout=10)
            self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
            # Status names it as the last error (field 8), with its time (field 10).
            status = dict(fields(channel.unary_unary("/nftproxy.v1.Proxy/Status")(b"", timeout=10)))
            self.assertEqual(status[8], b"Delete: service default/gone not found")
            self.assertIn(10, status)
            channel.close()
        finally:
            proc.terminate()
            _, err = proc.communicate(timeout=10)
        # One line per event: RFC 3339 UTC time, a level, the message.
        # gRPC's own library may log too, in its glog style ("E1201 08:00:00..."): not ours.
        lines = [l for l in err.splitlines() if l and not re.match(r"^[IWEF]\d{4} ", l)]
        self.assertTrue(lines)
        for line in lines:
            self.assertRegex(line, r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z (DEBUG|INFO|WARNING|ERROR) ")
        self.assertTrue(any(" INFO serving " in l and "listen=unix://" + sock in l for l in lines), lines)
        refused = [l for l in lines if " WARNING write refused " in l]
        self.assertEqual(len(refused), 1, lines)
        self.assertIn("method=Delete", refused[0])
        self.assertIn("code=NOT_FOUND", refused[0])
        self.assertIn('error="service default/gone not found"', refused[0])


class OneServerTest(unittest.TestCase):
    """A second server on the same table, state directory or socket is refused
    (exit 2, naming what is held and by which pid) and the first keeps serving;
    a socket file left by a dead server is replaced."""

    def setUp(self):
        needs_root(self)
        self.ns = "npx-%d-one" % os.getpid()
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.tmp = tempfile.mkdtemp(prefix="npx-one-")
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                p.communicate(timeout=10)
        subprocess.run(["ip", "netns", "del", self.ns], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def serve(self, sock, state, table):
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, BIN, "serve", "--listen", sock, "--state-dir", state,
                              "--table", table], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def healthy(self, sock):
        channel = grpc.insecure_channel("unix:" + sock)
        try:
            return channel.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=10) == b"\x08\x01"
        finally:
            channel.close()

    def test_second_server_is_refused_and_the_first_keeps_serving(self):
        sock = os.path.join(self.tmp, "a.sock")
        state = os.path.join(self.tmp, "state")
        first = self.serve(sock, state, "npxone")
        deadline = time.time() + 10
        while not os.path.exists(sock):
            self.assertIsNone(first.poll())
            self.assertLess(time.time(), deadline)
            time.sleep(0.02)
        self.assertTrue(self.healthy(sock))
        for what, args, says in (
                ("socket", (sock, os.path.join(self.tmp, "s2"), "npxtwo"), "a server answers there by pid %d"),
                ("state dir", (os.path.join(self.tmp, "b.sock"), state, "npxthree"), "is in use by pid %d"),
                ("table", (os.path.join(self.tmp, "c.sock"), os.path.join(self.tmp, "s3"), "npxone"),
                 "table inet npxone is already served by pid %d")):
            second = self.serve(*args)
            _, err = second.communicate(timeout=10)
            self.assertEqual(second.returncode, 2, what + ": " + err)
            self.assertIn(says % first.pid, err, what)
            self.assertTrue(self.healthy(sock), what)
        # A socket file nobody answers on (a server killed with -9) is replaced.
        first.kill()
        first.communicate(timeout=10)
        self.assertTrue(os.path.exists(sock))
        again = self.serve(sock, state, "npxone")
        deadline = time.time() + 10
        while True:
            self.assertIsNone(again.poll(), "restart refused")
            try:
                if self.healthy(sock):
                    break
            except grpc.RpcError:
                pass
            self.assertLess(time.time(), deadline)
            time.sleep(0.05)


def varint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def ld(field, payload):
    """A length-delimited protobuf field."""
    return bytes([field << 3 | 2]) + varint(len(payload)) + payload


def service_bytes(name, spec):
    """Resource{service{metadata{name}, spec}}."""
    return ld(1, ld(1, ld(2, name.encode())) + ld(2, spec))


class LimitsTest(unittest.TestCase):
    """Requests over a limit are refused before any expensive work, with
    INVALID_ARGUMENT naming the limit, while other writes keep answering."""

    @classmethod
    def setUpClass(cls):
        needs_root(cls)
        cls.ns = "npx-%d-limits" % os.getpid()
        subprocess.run(["ip", "netns", "add", cls.ns], check=True)
        cls.tmp = tempfile.mkdtemp(prefix="npx-limits-")
        cls.sock = os.path.join(cls.tmp, "l.sock")
        cls.proc = subprocess.Popen(["ip", "netns", "exec", cls.ns, BIN, "serve", "--listen", cls.sock,
                                     "--state-dir", "", "--table", "npxlimits"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 10
        while not os.path.exists(cls.sock):
            if cls.proc.poll() is not None or time.time() > deadline:
                raise AssertionError("server did not start")
            time.sleep(0.02)
        cls.channel = grpc.insecure_channel("unix:" + cls.sock, options=[("grpc.max_send_message_length", -1)])

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.proc.terminate()
        cls.proc.wait(timeout=10)
        subprocess.run(["ip", "netns", "del", cls.ns], check=False)
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def apply(self, *resources):
        return self.channel.unary_unary("/nftproxy.v1.Proxy/Apply")(b"".join(ld(1, r) for r in resources),
                                                                     timeout=60)

    def refused(self, what, resources, says):
        start = time.monotonic()
        with self.assertRaises(grpc.RpcError) as cm:
            self.apply(*resources)
        took = time.monotonic() - start
        print("\n  %s: refused in %.3f s" % (what, took), file=sys.stderr)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, what)
        self.assertIn(says, cm.exception.details())
        # Nothing changed, and an ordinary write still goes through.
        self.apply(service_bytes("ok", ld(2, b"198.19.9.9") + ld(3, b"\x18\x50")))

    def test_other_writes_answer_during_a_refused_huge_request(self):
        ips = b"".join(ld(4, ("10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255)).encode()) for i in range(1000000))
        big = service_bytes("huge", ld(2, b"198.19.9.3") + ips)
        other = grpc.insecure_channel("unix:" + self.sock)
        send_one = other.unary_unary("/nftproxy.v1.Proxy/Apply")
        apply = lambda resource, timeout: send_one(ld(1, resource), timeout=timeout)
        apply(service_bytes("side-0", ld(2, b"198.19.10.1") + ld(3, b"\x18\x50")), timeout=30)  # connected
        outcome = {}

        def send():
            try:
                self.apply(big)
                outcome["code"] = grpc.StatusCode.OK
            except grpc.RpcError as e:
                outcome["code"] = e.code()

        sender = threading.Thread(target=send)
        start = time.monotonic()
        sender.start()
        took = []
        n = 1
        # Small writes, one after another, for as long as the big one is in
        # flight (sent, examined, refused), and a few more.
        while sender.is_alive() or n < 5:
            t0 = time.monotonic()
            apply(service_bytes("side-%d" % n, ld(2, ("198.19.%d.%d" % (10 + n // 250, 1 + n % 250)).encode()) + ld(3, b"\x18\x50")),
                  timeout=30)
            took.append(time.monotonic() - t0)
            n += 1
        sender.join()
        other.close()
        took.sort()
        print("\n  1,000,000 external IPs refused in %.3f s; meanwhile %d other writes answered, "
              "p50 %.1f ms, max %.1f ms" % (time.monotonic() - start, len(took), 1000 * took[len(took) // 2],
                                             1000 * took[-1]), file=sys.stderr)
        self.assertEqual(outcome["code"], grpc.StatusCode.INVALID_ARGUMENT)

    def test_oversized_requests_are_refused(self):
        # ServicePort{name: "pN", port: 10000 + N}
        ports = b"".join(ld(3, ld(1, ("p%d" % i).encode()) + b"\x18" + varint(10000 + i)) for i in range(2000))
        self.refused("a service with 2,000 ports", [service_bytes("wide", ld(2, b"198.19.9.1") + ports)],
                     "spec.ports: 2000 items; at most 256 are allowed (server flag --max-ports-per-service)")
        # EndpointSlice{metadata{name}, serviceName, endpoints x 100,000}.
        endpoints = b"".join(ld(4, ld(1, ("10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, 1 + (i & 127))).encode()))
                             for i in range(100000))
        slice_ = ld(2, ld(1, ld(2, b"big-1")) + ld(2, b"big") + endpoints)
        self.refused("an EndpointSlice of 100,000 endpoints", [slice_],
                     "endpoints: 100000 items; at most 1000 are allowed (server flag --max-endpoints-per-slice)")
        ips = b"".join(ld(4, ("10.%d.%d.%d" % (i >> 16, (i >> 8) & 255, i & 255)).encode())
                       for i in range(1000000))
        self.refused("a service with 1,000,000 external IPs", [service_bytes("many", ld(2, b"198.19.9.2") + ips)],
                     "spec.externalIps: 1000000 items; at most 256 are allowed")


class TableOwnershipTest(unittest.TestCase):
    """nftproxy never changes a table it did not create: a firewall's table
    survives `serve --table fw` byte for byte and serve exits 2 naming it;
    the tables nftproxy creates carry its mark."""

    FIREWALL = """table inet fw {
	chain input {
		type filter hook input priority filter; policy drop;
		tcp dport 22 accept
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
	}
}
"""

    def setUp(self):
        needs_root(self)
        self.ns = "npx-%d-own" % os.getpid()
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        self.tmp = tempfile.mkdtemp(prefix="npx-own-")

    def tearDown(self):
        subprocess.run(["ip", "netns", "del", self.ns], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def nft(self, *args, input=None):
        return subprocess.run(["ip", "netns", "exec", self.ns, "nft"] + list(args), input=input,
                              capture_output=True, text=True, check=True).stdout

    def apply_one(self, proc, sock):
        """Waits for the server, then applies one service (the first commit)."""
        deadline = time.time() + 10
        while not os.path.exists(sock):
            self.assertIsNone(proc.poll(), "serve exited")
            self.assertLess(time.time(), deadline)
            time.sleep(0.02)
        spec = ld(2, b"198.19.0.1") + ld(3, b"\x18\x50")            # clusterIps, ports[{port: 80}]
        service = ld(1, ld(2, b"web")) + ld(2, spec)                  # metadata{name}, spec
        request = ld(1, ld(1, service))                               # upserts[{service}]
        channel = grpc.insecure_channel("unix:" + sock)
        try:
            channel.unary_unary("/nftproxy.v1.Proxy/Apply")(request, timeout=20)
        finally:
            channel.close()

    def test_foreign_table_is_left_alone_and_own_tables_are_marked(self):
        self.nft("-f", "-", input=self.FIREWALL)
        before = self.nft("list", "table", "inet", "fw")
        sock = os.path.join(self.tmp, "fw.sock")
        state = os.path.join(self.tmp, "state")
        proc = subprocess.run(["ip", "netns", "exec", self.ns, BIN, "serve", "--table", "fw", "--listen", sock,
                               "--state-dir", state], capture_output=True, text=True, timeout=20)
        self.assertEqual(proc.returncode, 2, proc.stderr)
        self.assertIn("table inet fw exists and was not created by nftproxy", proc.stderr)
        self.assertEqual(self.nft("list", "table", "inet", "fw"), before)
        self.assertFalse(os.path.exists(sock))
        # A table nftproxy creates says so, and a restart takes it back.
        for _ in range(2):
            p = subprocess.Popen(["ip", "netns", "exec", self.ns, BIN, "serve", "--table", "mine", "--listen", sock,
                                  "--state-dir", state], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                if "mine" not in self.nft("list", "tables"):
                    self.apply_one(p, sock)
                self.assertIn('comment "managed by nftproxy"', self.nft("list", "table", "inet", "mine"))
            finally:
                p.terminate()
                p.communicate(timeout=10)
        # --adopt-table takes over an unmarked table on purpose.
        self.nft("add", "table", "inet", "old")
        p = subprocess.Popen(["ip", "netns", "exec", self.ns, BIN, "serve", "--table", "old", "--adopt-table",
                              "--listen", sock, "--state-dir", ""], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
        try:
            self.apply_one(p, sock)
            self.assertIn('comment "managed by nftproxy"', self.nft("list", "table", "inet", "old"))
        finally:
            p.terminate()
            p.communicate(timeout=10)


if __name__ == "__main__":
    unittest.main(verbosity=2)
