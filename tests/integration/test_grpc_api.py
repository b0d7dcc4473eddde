#!/usr/bin/env python3
"""gRPC surface of `nftproxy serve` seen by a client that is not the CLI:
server reflection lists nftproxy.v1.Proxy, the standard health service answers
SERVING, an invalid Apply is INVALID_ARGUMENT, and Watch streams. Uses grpcio with hand-encoded
protobuf bytes (Debian ships no reflection/health client modules)."""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("NFTPROXY_BIN", os.path.join(REPO, "build", "nftproxy"))


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

    def test_health_is_serving(self):
        # HealthCheckRequest{} -> HealthCheckResponse{status: SERVING(1)}.
        self.assertEqual(self.raw("/grpc.health.v1.Health/Check")(b"", timeout=10), b"\x08\x01")

    def test_invalid_apply_is_invalid_argument(self):
        # ApplyRequest{upserts: [Resource{service: Service{metadata{name:"x"}}}]}:
        # a service with no cluster IP and no ports.
        meta = b"\x12\x01x"                      # ObjectMeta.name = "x"
        service = b"\x0a" + bytes([len(meta)]) + meta   # Service.metadata
        resource = b"\x0a" + bytes([len(service)]) + service  # Resource.service
        req = b"\x0a" + bytes([len(resource)]) + resource     # ApplyRequest.upserts
        with self.assertRaises(grpc.RpcError) as cm:
            self.raw("/nftproxy.v1.Proxy/Apply")(req, timeout=10)
        self.assertEqual(cm.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("service default/x: spec.clusterIps: required", cm.exception.details())

    def test_watch_streams_a_bookmark_first(self):
        # WatchRequest{} on an empty store: the initial state is empty, so the
        # first event is WatchEvent{type: BOOKMARK(3), revision: 0}; the stream
        # then stays open for changes (see test_sync_watch.py).
        call = self.channel.unary_stream("/nftproxy.v1.Proxy/Watch", request_serializer=lambda b: b,
                                         response_deserializer=lambda b: b)
        stream = call(b"", timeout=10)
        self.assertEqual(next(stream), b"\x08\x03")
        stream.cancel()

if __name__ == "__main__":
    unittest.main(verbosity=2)
