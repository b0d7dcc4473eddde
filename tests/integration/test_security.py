#!/usr/bin/env python3
"""Who reaches the API: TLS and mutual TLS on TCP, plaintext TCP refused,
an authorization policy by unix uid (SO_PEERCRED, callers run with setpriv)
and by client certificate, certificate rotation, policy reload on SIGHUP.
Each server runs in a network namespace of its own; clients are the CLI and
grpcio (tests/integration/grpc_call.py, in grpcurl's place), run inside it.
Certificates are made with the openssl CLI for each run."""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("NFTPROXY_BIN", os.path.join(REPO, "build", "nftproxy"))
GRPC_CALL = os.path.join(REPO, "tests", "integration", "grpc_call.py")
PY = "/usr/bin/python3"


def needs_root():
    if os.geteuid() != 0 or not os.path.exists(BIN) or shutil.which("openssl") is None:
        if os.environ.get("CI") == "true":
            raise AssertionError("security tests need root, the nftproxy binary and openssl under CI")
        raise unittest.SkipTest("needs root, %s and openssl" % BIN)


def run(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, **kw)


class Pki:
    """A CA, a server certificate for 127.0.0.1, client certificates; and a
    second CA that nobody trusts."""

    def __init__(self, d):
        self.d = d
        self.ca = self.make_ca("ca", "npx-test-ca")
        self.other_ca = self.make_ca("other-ca", "npx-untrusted-ca")

    def path(self, name):
        return os.path.join(self.d, name)

    def make_ca(self, name, cn):
        run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", self.path(name + ".key"), "-out", self.path(name + ".crt"), "-subj", "/CN=" + cn,
            "-days", "2")
        return name

    def issue(self, name, cn, san, ca=None):
        """name.crt / name.key signed by `ca` (default: the trusted CA)."""
        ca = ca or self.ca
        ext = self.path(name + ".ext")
        with open(ext, "w") as f:
            f.write("subjectAltName=%s\n" % san)
        run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", self.path(name + ".key"), "-out", self.path(name + ".csr"), "-subj", "/CN=" + cn + "/O=npx")
        run("openssl", "x509", "-req", "-in", self.path(name + ".csr"), "-CA", self.path(ca + ".crt"),
            "-CAkey", self.path(ca + ".key"), "-CAcreateserial", "-out", self.path(name + ".crt"), "-days", "2",
            "-extfile", ext)
        return self.path(name + ".crt"), self.path(name + ".key")


SERVICE = """kind: Service
metadata: {name: %s, namespace: %s}
spec: {clusterIps: ["%s"], ports: [{port: 80}]}
"""


class Lab(unittest.TestCase):
    """One namespace and a temp dir per test class; servers started by the
    tests are stopped and the namespace removed afterwards."""
    name = "sec"

    @classmethod
    def setUpClass(cls):
        needs_root()
        cls.ns = "npx-%d-%s" % (os.getpid(), cls.name)
        run("ip", "netns", "add", cls.ns)
        run("ip", "netns", "exec", cls.ns, "ip", "link", "set", "lo", "up")
        cls.tmp = tempfile.mkdtemp(prefix="npx-%s-" % cls.name)
        os.chmod(cls.tmp, 0o755)
        cls.procs = []
        try:
            cls.pki = Pki(cls.tmp)
            cls.start()
        except BaseException:
            cls.tearDownClass()  # unittest does not when setUpClass fails
            raise

    @classmethod
    def start(cls):
        """The class's servers."""

    @classmethod
    def tearDownClass(cls):
        for p in cls.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            p.log.close()
        run("ip", "netns", "del", cls.ns, check=False)
        if os.environ.get("NPX_KEEP_TMP") != "1":
            shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def serve(cls, *flags, wait_tcp=None, wait_sock=None):
        log = open(os.path.join(cls.tmp, "server-%d.log" % len(cls.procs)), "w+")
        proc = subprocess.Popen(["ip", "netns", "exec", cls.ns, BIN, "serve", "--state-dir", "", "--table",
                                 "npx" + cls.name] + list(flags), stdout=log, stderr=subprocess.STDOUT)
        proc.log = log
        cls.procs.append(proc)
        deadline = time.time() + 15
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise AssertionError("server exited %d: %s" % (proc.returncode, log.read()))
            if wait_sock and os.path.exists(wait_sock):
                break
            if wait_tcp and (":%d " % wait_tcp) in run("ip", "netns", "exec", cls.ns, "ss", "-Hltn").stdout:
                break
            if time.time() > deadline:
                raise AssertionError("server did not start listening")
            time.sleep(0.05)
        return proc

    @classmethod
    def stop(cls, proc):
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=15)

    def cli(self, *args, server=None, tls=(), user=None, stdin=None):
        argv = [BIN, "--server", server or self.server] + list(tls) + list(args)
        if user is not None:
            argv = ["setpriv", "--reuid", str(user), "--regid", str(user), "--clear-groups", "--"] + argv
        return subprocess.run(["ip", "netns", "exec", self.ns] + argv, capture_output=True, text=True, input=stdin,
                              timeout=60)

    def grpc_call(self, method, request=b"", ca=None, cert=None, key=None, stream=False):
        argv = ["ip", "netns", "exec", self.ns, PY, GRPC_CALL, "127.0.0.1:%d" % self.port, method, request.hex()]
        for flag, v in (("--ca", ca), ("--cert", cert), ("--key", key)):
            if v:
                argv += [flag, v]
        if stream:
            argv.append("--stream")
        return run(*argv, timeout=60).stdout.strip()

    def manifest(self, name, ns, ip):
        path = os.path.join(self.tmp, "%s-%s.yaml" % (ns, name))
        with open(path, "w") as f:
            f.write(SERVICE % (name, ns, ip))
        os.chmod(path, 0o644)
        return path

    def table(self):
        return run("ip", "netns", "exec", self.ns, "nft", "list", "table", "inet", "npx" + self.name,
                   check=False).stdout


class PlaintextTcpTest(Lab):
    name = "plain"

    def refused(self, *flags, says):
        cp = run("ip", "netns", "exec", self.ns, BIN, "serve", "--state-dir", "", "--table", "npxrefused", *flags,
                 check=False, timeout=30)
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertIn(says, cp.stderr)
        # Refused before anything is touched: no table.
        self.assertNotIn("npxrefused", run("ip", "netns", "exec", self.ns, "nft", "list", "tables").stdout)

    def test_plaintext_tcp_is_refused_at_start(self):
        self.refused("--listen", "tcp://0.0.0.0:7443", says="refusing plaintext gRPC on a non-loopback address")
        self.refused("--listen", "tcp://0.0.0.0:7443", "--insecure-listen",
                     says="refusing plaintext gRPC on a non-loopback address")
        self.refused("--listen", "tcp://127.0.0.1:7443", says="plaintext gRPC needs --insecure-listen")
        self.refused("--listen", "tcp://0.0.0.0:7443", "--tls-cert", self.pki.path("ca.crt"), "--tls-key",
                     self.pki.path("other-ca.key"), says="does not belong to the certificate")
        self.refused("--listen", "tcp://0.0.0.0:7443", "--tls-cert", "/nonexistent.crt", "--tls-key",
                     self.pki.path("ca.key"), says="--tls-cert /nonexistent.crt: cannot read it")

    def test_insecure_loopback_is_allowed_when_asked(self):
        self.port = 7444
        proc = self.serve("--listen", "tcp://127.0.0.1:7444", "--insecure-listen", wait_tcp=7444)
        self.server = "tcp://127.0.0.1:7444"
        cp = self.cli("apply", "-f", self.manifest("web", "default", "198.19.40.1"))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.stop(proc)


class TlsTest(Lab):
    """TLS without client certificates: callers can read, not write."""
    name = "tls"

    @classmethod
    def start(cls):
        cls.port = 7445
        cls.server = "tcp://127.0.0.1:%d" % cls.port
        cls.srv_crt, cls.srv_key = cls.pki.issue("server", "nftproxy", "IP:127.0.0.1,DNS:localhost")
        cls.proc = cls.serve("--listen", cls.server, "--tls-cert", cls.srv_crt, "--tls-key", cls.srv_key,
                             wait_tcp=cls.port)

    def test_right_ca_reads_wrong_ca_fails(self):
        ca = ("--tls-ca", self.pki.path("ca.crt"))
        cp = self.cli("status", tls=ca)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        # The same through the environment, and with the name the certificate carries.
        env_cp = subprocess.run(["ip", "netns", "exec", self.ns, "env", "NFTPROXY_TLS_CA=" + self.pki.path("ca.crt"),
                                 "NFTPROXY_TLS_SERVER_NAME=localhost", BIN, "--server", self.server, "status"],
                                capture_output=True, text=True, timeout=60)
        self.assertEqual(env_cp.returncode, 0, env_cp.stderr)
        cp = self.cli("status", tls=("--tls-ca", self.pki.path("other-ca.crt"), "--request-timeout", "5s"))
        self.assertEqual(cp.returncode, 3, cp.stderr)
        # Plaintext to a TLS port does not get through either.
        cp = self.cli("status", tls=("--request-timeout", "5s"))
        self.assertEqual(cp.returncode, 3, cp.stderr)
        # grpcio, as grpcurl -cacert would: Status answers with the right CA only.
        self.assertTrue(self.grpc_call("/nftproxy.v1.Proxy/Status", ca=self.pki.path("ca.crt")).startswith("OK"))
        self.assertTrue(self.grpc_call("/nftproxy.v1.Proxy/Status",
                                       ca=self.pki.path("other-ca.crt")).startswith("ERR UNAVAILABLE"))

    def test_anonymous_tls_caller_may_not_write(self):
        before = self.table()
        cp = self.cli("apply", "-f", self.manifest("web", "default", "198.19.41.1"),
                      tls=("--tls-ca", self.pki.path("ca.crt")))
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("anonymous TLS caller", cp.stderr)
        self.assertIn("may not write", cp.stderr)
        self.assertEqual(self.table(), before)


POLICY = """rules:
- match: ["cn:admin", "uid:0"]
  allow: write
- match: ["dns:shop-writer.example"]
  allow: write
  sources: ["shop-ci"]
  namespaces: ["shop"]
- match: ["cn:reader", "uid:65534"]
  allow: read
"""


class MutualTlsTest(Lab):
    """Mutual TLS with a policy: who may write, who may only read, who may
    write only some namespaces as some source; rotation; SIGHUP reload."""
    name = "mtls"

    @classmethod
    def start(cls):
        cls.port = 7446
        cls.server = "tcp://127.0.0.1:%d" % cls.port
        cls.srv_crt, cls.srv_key = cls.pki.issue("server", "nftproxy", "IP:127.0.0.1")
        cls.admin = cls.pki.issue("admin", "admin", "DNS:admin.example")
        cls.reader = cls.pki.issue("reader", "reader", "DNS:reader.example")
        cls.shop = cls.pki.issue("shop", "shop-writer", "DNS:shop-writer.example")
        cls.stranger = cls.pki.issue("stranger", "admin", "DNS:admin.example", ca="other-ca")
        cls.policy = os.path.join(cls.tmp, "authz.yaml")
        with open(cls.policy, "w") as f:
            f.write(POLICY)
        rundir = os.path.join(cls.tmp, "run")
        os.mkdir(rundir)
        os.chmod(rundir, 0o755)
        cls.sock = os.path.join(rundir, "nftproxy.sock")
        # The binary, where another uid may run it.
        cls.bin = os.path.join(cls.tmp, "nftproxy")
        shutil.copy(BIN, cls.bin)
        os.chmod(cls.bin, 0o755)
        cls.proc = cls.serve("--listen", cls.server, "--listen", "unix://" + cls.sock, "--socket-mode", "0666",
                             "--tls-cert", cls.srv_crt, "--tls-key", cls.srv_key, "--tls-client-ca",
                             cls.pki.path("ca.crt"), "--tls-reload-interval", "1s", "--authz", cls.policy,
                             wait_tcp=cls.port)

    def as_cert(self, pair):
        return ("--tls-ca", self.pki.path("ca.crt"), "--tls-cert", pair[0], "--tls-key", pair[1])

    def test_call_without_client_certificate_is_refused(self):
        cp = self.cli("status", tls=("--tls-ca", self.pki.path("ca.crt"), "--request-timeout", "5s"))
        self.assertEqual(cp.returncode, 3, cp.stderr)
        self.assertTrue(self.grpc_call("/nftproxy.v1.Proxy/Status",
                                       ca=self.pki.path("ca.crt")).startswith("ERR UNAVAILABLE"))
        # A certificate from a CA the server does not trust, with the admin's names.
        cp = self.cli("status", tls=self.as_cert(self.stranger) + ("--request-timeout", "5s"))
        self.assertEqual(cp.returncode, 3, cp.stderr)

    def test_reader_is_denied_writes_and_nothing_changes(self):
        self.assertEqual(self.cli("apply", "-f", self.manifest("base", "default", "198.19.42.1"),
                                  tls=self.as_cert(self.admin)).returncode, 0)
        before = self.table()
        self.assertIn("198.19.42.1", before)
        cp = self.cli("apply", "-f", self.manifest("web", "default", "198.19.42.2"), tls=self.as_cert(self.reader))
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertRegex(cp.stderr, r"certificate [^ ]*CN=reader.* may not write")
        self.assertIn("may not write", cp.stderr)
        cp = self.cli("delete", "service", "base", tls=self.as_cert(self.reader))
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertEqual(self.table(), before)
        cp = self.cli("get", "service", "base", tls=self.as_cert(self.reader))
        self.assertEqual(cp.returncode, 0, cp.stderr)
        # grpcio with the reader's certificate (grpcurl -cacert -cert -key): reads yes, writes no.
        reader = dict(ca=self.pki.path("ca.crt"), cert=self.reader[0], key=self.reader[1])
        self.assertTrue(self.grpc_call("/nftproxy.v1.Proxy/Status", **reader).startswith("OK"))
        out = self.grpc_call("/nftproxy.v1.Proxy/Apply", b"", **reader)
        self.assertTrue(out.startswith("ERR PERMISSION_DENIED"), out)
        self.assertEqual(self.table(), before)

    def test_scoped_writer(self):
        shop = self.as_cert(self.shop)
        cp = self.cli("apply", "--source", "shop-ci", "-f", self.manifest("cart", "shop", "198.19.43.1"), tls=shop)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        before = self.table()
        for args, says in ((("apply", "--source", "shop-ci", "-f", self.manifest("cart", "default", "198.19.43.2")),
                            'may not write as source "shop-ci" in namespace default'),
                           (("apply", "--source", "other", "-f", self.manifest("cart2", "shop", "198.19.43.3")),
                            'may not write as source "other"')):
            cp = self.cli(*args, tls=shop)
            self.assertEqual(cp.returncode, 1, cp.stderr)
            self.assertIn(says, cp.stderr)
        self.assertEqual(self.table(), before)
        # Its reads are limited to its namespace.
        self.assertEqual(self.cli("get", "services", "-n", "shop", tls=shop).returncode, 0)
        cp = self.cli("get", "services", "-n", "default", tls=shop)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("may read only namespaces [shop]", cp.stderr)
        # So are the kernel's connection counters (GetCounters).
        self.assertEqual(self.cli("apply", "-f", self.manifest("counted", "default", "198.19.43.9"),
                                  tls=self.as_cert(self.admin)).returncode, 0)
        creds = dict(ca=self.pki.path("ca.crt"), cert=self.shop[0], key=self.shop[1])
        out = self.grpc_call("/nftproxy.v1.Proxy/GetCounters", b"\x0a\x07default", **creds)  # namespace: default
        self.assertTrue(out.startswith("ERR PERMISSION_DENIED"), out)
        out = self.grpc_call("/nftproxy.v1.Proxy/GetCounters", b"", **creds)  # every namespace it may read
        self.assertTrue(out.startswith("OK "), out)
        reply = bytes.fromhex(out.split()[1])
        self.assertIn(b"cart", reply)
        self.assertNotIn(b"default", reply)
        admin = self.grpc_call("/nftproxy.v1.Proxy/GetCounters", b"",
                               ca=self.pki.path("ca.crt"), cert=self.admin[0], key=self.admin[1])
        self.assertIn(b"default", bytes.fromhex(admin.split()[1]), admin)

    def test_unix_callers_by_uid(self):
        unix = "unix://" + self.sock
        path = self.manifest("byuid", "default", "198.19.44.1")
        # uid 65534 may read, not write; uid 65533 is in no rule; root may write.
        cp = self.cli("get", "services", server=unix, user=65534)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        before = self.table()
        cp = self.cli("apply", "-f", path, server=unix, user=65534)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("uid 65534 gid 65534", cp.stderr)
        self.assertEqual(self.table(), before)
        cp = self.cli("get", "services", server=unix, user=65533)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("uid 65533", cp.stderr)
        self.assertIn("may not read", cp.stderr)
        cp = self.cli("apply", "-f", path, server=unix)
        self.assertEqual(cp.returncode, 0, cp.stderr)

    def test_policy_reload_on_sighup(self):
        path = self.manifest("reloaded", "default", "198.19.45.1")
        self.assertEqual(self.cli("apply", "-f", path, tls=self.as_cert(self.reader)).returncode, 1)
        try:
            with open(self.policy, "w") as f:
                f.write(POLICY.replace('["cn:admin", "uid:0"]', '["cn:admin", "uid:0", "cn:reader"]'))
            self.proc.send_signal(signal.SIGHUP)
            deadline = time.time() + 10
            while self.cli("apply", "-f", path, tls=self.as_cert(self.reader)).returncode != 0:
                self.assertLess(time.time(), deadline, "the new policy was not taken on SIGHUP")
                time.sleep(0.2)
            # A broken policy is refused and the one in force stays.
            with open(self.policy, "w") as f:
                f.write("rules: [{match: [nobody], allow: write}]\n")
            self.proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)
            self.assertEqual(self.cli("get", "service", "reloaded", tls=self.as_cert(self.reader)).returncode, 0)
            self.assertIsNone(self.proc.poll())
        finally:
            with open(self.policy, "w") as f:
                f.write(POLICY)
            self.proc.send_signal(signal.SIGHUP)
            time.sleep(0.5)

    def served_certificate(self):
        cp = subprocess.run(["ip", "netns", "exec", self.ns, "openssl", "s_client", "-connect",
                             "127.0.0.1:%d" % self.port, "-CAfile", self.pki.path("ca.crt"), "-cert", self.admin[0],
                             "-key", self.admin[1]], input="", capture_output=True, text=True, timeout=30)
        return run("openssl", "x509", "-noout", "-subject", input=cp.stdout, check=False).stdout.strip()

    def test_certificate_rotation_keeps_serving(self):
        self.assertIn("CN = nftproxy,", self.served_certificate())
        # A watch over one connection, open across the rotation.
        watch = subprocess.Popen(["ip", "netns", "exec", self.ns, BIN, "--server", self.server,
                                  *self.as_cert(self.admin), "watch", "services"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            time.sleep(0.5)
            new_crt, new_key = self.pki.issue("server2", "nftproxy-rotated", "IP:127.0.0.1")
            # Key first, then the certificate, each replaced in one rename.
            for src, dst in ((new_key, self.srv_key), (new_crt, self.srv_crt)):
                shutil.copy(src, dst + ".tmp")
                os.rename(dst + ".tmp", dst)
            deadline = time.time() + 15
            while "nftproxy-rotated" not in self.served_certificate():
                self.assertLess(time.time(), deadline, "the rotated certificate was not served")
                time.sleep(0.5)
            cp = self.cli("apply", "-f", self.manifest("after-rotation", "default", "198.19.46.1"),
                          tls=self.as_cert(self.admin))
            self.assertEqual(cp.returncode, 0, cp.stderr)
            # The stream opened before the rotation still receives changes.
            deadline = time.time() + 10
            seen = ""
            os.set_blocking(watch.stdout.fileno(), False)
            while "after-rotation" not in seen:
                self.assertLess(time.time(), deadline, "the watch stopped at the rotation: %r" % seen)
                chunk = watch.stdout.read()
                seen += chunk or ""
                time.sleep(0.1)
            self.assertIsNone(watch.poll())
        finally:
            watch.kill()
            watch.wait()


if __name__ == "__main__":
    unittest.main()
