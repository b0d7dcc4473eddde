#!/usr/bin/python3
"""The static binary (NFTPROXY_STATIC=ON) alone in an empty directory.

The binary is copied into an empty directory and run there with chroot, with
an empty environment: no shared libraries, no /etc, no /proc, no `nft`.
`serve` starts in a proxy namespace, a service is applied through its unix
socket (by the same file as client, from outside the chroot and from inside
it), and real TCP traffic from a client namespace reaches the backends
through the VIP.

    client --- proxy (chroot: /nftproxy serve) --- b1 / b2

Run from the repository root, as root:
    NFTPROXY_STATIC_BIN=build-static/nftproxy /usr/bin/python3 -m unittest -v tests/integration/test_static.py
Environment: NFTPROXY_STATIC_BIN (the static binary; unset or missing: the
test skips, or fails under CI=true), NPX_KEEP_TMP=1 keeps the temp dir.
ctest runs it as integration_static when tests/integration was configured
with -DNFTPROXY_STATIC_BIN=... (.ci/run).
"""

import json
import os
import shutil
import struct
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import netlab  # noqa: E402

STATIC_BIN = os.environ.get("NFTPROXY_STATIC_BIN", "")
TABLE = "npxstatic"
CHROOT = shutil.which("chroot") or "/usr/sbin/chroot"
VIP = "198.19.7.10"
BACKENDS = ("b1", "b2")


def setUpModule():
    why = None
    if os.geteuid() != 0:
        why = "needs root (network namespaces, nftables, chroot)"
    elif not STATIC_BIN:
        why = "NFTPROXY_STATIC_BIN is not set (the static binary: cmake -DNFTPROXY_STATIC=ON)"
    elif not (os.path.isfile(STATIC_BIN) and os.access(STATIC_BIN, os.X_OK)):
        why = "NFTPROXY_STATIC_BIN=%s: no such executable" % STATIC_BIN
    if why:
        if os.environ.get("CI", "").lower() == "true":
            raise AssertionError(why)
        raise unittest.SkipTest(why)
    netlab.install_sigterm_cleanup()


def elf_segments(path):
    """The program header types of an ELF64 little-endian file."""
    with open(path, "rb") as f:
        ident = f.read(64)
        if ident[:4] != b"\x7fELF" or ident[4] != 2 or ident[5] != 1:
            raise AssertionError("%s: not a 64-bit little-endian ELF file" % path)
        phoff, = struct.unpack_from("<Q", ident, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", ident, 0x36)
        types = []
        for i in range(phnum):
            f.seek(phoff + i * phentsize)
            types.append(struct.unpack("<I", f.read(4))[0])
        return types


def elf_has_symtab(path):
    """Whether the file still has a .symtab section (not stripped)."""
    with open(path, "rb") as f:
        data = f.read()
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    for i in range(shnum):
        sh_type, = struct.unpack_from("<I", data, shoff + i * shentsize + 4)
        if sh_type == 2:  # SHT_SYMTAB
            return True
    return False


_tail = netlab.tail


class StaticBinaryTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = netlab.class_tmpdir(cls, "npx-static-")
        # The chroot: an empty directory and the one file.
        cls.root = os.path.join(cls.tmp, "root")
        os.mkdir(cls.root)
        cls.bin = os.path.join(cls.root, "nftproxy")
        shutil.copy2(STATIC_BIN, cls.bin)
        cls.sock_host = os.path.join(cls.root, "nftproxy.sock")   # seen from outside
        cls.url_host = "unix://" + cls.sock_host
        cls.url_chroot = "unix:///nftproxy.sock"                     # seen from inside

        cls.lab = netlab.Lab()
        cls.addClassCleanup(cls.lab.cleanup)
        cls.star = netlab.Star(cls.lab, BACKENDS)
        cls.echo_log = open(os.path.join(cls.tmp, "echo.log"), "a")
        cls.addClassCleanup(cls.echo_log.close)
        for b in BACKENDS:
            netlab.start_echo(cls.lab, b, b, tcp_ports=(8080,), udp_ports=(), log=cls.echo_log)

        cls.server_log_path = os.path.join(cls.tmp, "server.log")
        log = open(cls.server_log_path, "a")
        # `ip netns exec` execs chroot, which execs the binary: the pid is the
        # server's. env={}: not even PATH.
        cls.server = subprocess.Popen(
            cls.lab.exec_argv("proxy", [CHROOT, cls.root, "/nftproxy", "serve",
                                        "--listen", cls.url_chroot, "--table", TABLE,
                                        "--state-dir", "/state"]),
            stdout=log, stderr=log, stdin=subprocess.DEVNULL, env={}, start_new_session=True)
        cls.lab.procs.append(cls.server)  # cleanup() stops it by pid
        log.close()
        netlab.wait_server(cls.server, cls.sock_host, lambda: cls.cli_host("get", "services", timeout=5),
                           cls.server_log_path, what="static nftproxy serve in the chroot")

    # -- the client: the same file, outside and inside the chroot ---------------

    @classmethod
    def cli_host(cls, *args, timeout=30, input=None):
        return subprocess.run([cls.bin] + list(args) + ["--server", cls.url_host],
                              capture_output=True, text=True, timeout=timeout, env={}, input=input)

    @classmethod
    def cli_chroot(cls, *args, timeout=30, input=None):
        return subprocess.run([CHROOT, cls.root, "/nftproxy"] + list(args) + ["--server", cls.url_chroot],
                              capture_output=True, text=True, timeout=timeout, env={}, input=input)

    def diag(self):
        cp = self.lab.exec("proxy", ["nft", "list", "table", "inet", TABLE])
        return "\n--- nft list table inet %s ---\n%s--- server log ---\n%s" % (
            TABLE, cp.stdout, _tail(self.server_log_path, 25))

    def wait_vip(self, vip, present=True, timeout=5):
        deadline = time.monotonic() + timeout
        while True:
            text = self.lab.exec("proxy", ["nft", "list", "table", "inet", TABLE]).stdout
            if (vip in text) == present:
                return
            if time.monotonic() > deadline:
                self.fail("VIP %s %s in the table after %ss%s"
                          % (vip, "not" if present else "still", timeout, self.diag()))
            time.sleep(0.05)

    # -- tests ----------------------------------------------------------------------

    def test_1_binary_is_static_and_stripped(self):
        types = elf_segments(self.bin)
        self.assertNotIn(3, types, "PT_INTERP: the binary wants a dynamic loader")
        self.assertNotIn(2, types, "PT_DYNAMIC: the binary has dynamic linking information")
        self.assertFalse(elf_has_symtab(self.bin), "not stripped: a .symtab section is left")
        # The chroot holds the binary and what the server made (socket, state).
        self.assertEqual(sorted(os.listdir(self.root)), ["nftproxy", "nftproxy.sock", "state"])

    def test_2_service_through_the_chroot(self):
        def web(backends):
            return netlab.to_yaml([
                {"kind": "Service", "metadata": {"namespace": "default", "name": "web"},
                 "spec": {"clusterIps": [VIP], "ports": [{"name": "http", "protocol": "TCP", "port": 80,
                                                          "targetPort": 8080}]}},
                {"kind": "EndpointSlice", "metadata": {"namespace": "default", "name": "web-1"},
                 "serviceName": "web", "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
                 "endpoints": [{"addresses": [self.star.v4[x]]} for x in backends]},
            ])

        manifest = web(BACKENDS)
        path = os.path.join(self.tmp, "web.yaml")
        with open(path, "w") as f:
            f.write(manifest)
        # Applied by the static client from outside the chroot ...
        cp = self.cli_host("apply", "-f", path)
        self.assertEqual(cp.returncode, 0, "apply failed: %s%s" % (cp.stderr, self.diag()))
        self.addCleanup(self.cli_host, "delete", "service", "web")
        self.wait_vip(VIP)
        # ... and read back by it from inside (no /etc, no /tmp, no PATH).
        cp = self.cli_chroot("get", "services", "-o", "json")
        self.assertEqual(cp.returncode, 0, "get in the chroot failed: %s" % cp.stderr)
        self.assertIn("web", cp.stdout)
        cp = self.cli_chroot("status")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertRegex(cp.stdout, r"Services:\s+1\b")

        res = netlab.traffic(self.lab, "client", "tcp", VIP, 80, 60)
        what = "TCP %s:80 -> :8080 through the static server\ntraffic: %s%s" % (
            VIP, json.dumps(res, sort_keys=True), self.diag())
        self.assertEqual(res["errors"], {}, what)
        self.assertEqual(res["ok"], 60, what)
        self.assertEqual(sorted(res["answers"]), sorted(BACKENDS), what)
        self.assertEqual(res["ports"], {"8080": 60}, what)

        # A change through the chroot's client: one backend goes, traffic follows.
        cp = self.cli_chroot("apply", "-f", "-", input=web(["b1"]))
        self.assertEqual(cp.returncode, 0, "apply -f - in the chroot failed: %s" % cp.stderr)
        res = netlab.traffic(self.lab, "client", "tcp", VIP, 80, 20)
        self.assertEqual(res["ok"], 20, json.dumps(res))
        self.assertEqual(res["answers"], {"b1": 20}, json.dumps(res))

    def test_3_group_names_need_etc_group(self):
        # No NSS in a static binary: --socket-group NAME is looked up in
        # /etc/group, and the chroot has none: a clear error, before anything
        # is touched.
        cp = subprocess.run(
            self.lab.exec_argv("proxy", [CHROOT, self.root, "/nftproxy", "serve",
                                         "--listen", "unix:///other.sock", "--table", "npxstatic2",
                                         "--state-dir", "/state2", "--socket-group", "nftproxy"]),
            capture_output=True, text=True, timeout=30, env={})
        self.assertEqual(cp.returncode, 2, cp.stdout + cp.stderr)
        self.assertIn("--socket-group nftproxy: no such group in /etc/group", cp.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.root, "other.sock")))


if __name__ == "__main__":
    unittest.main()
