#!/usr/bin/python3
"""The CLI at scale: N services x 10 endpoints (default 20,000; set
NFTPROXY_SCALE_SERVICES=100000 for the full size) applied from one manifest
with `apply -f`, then `get services -A`, `get endpointslices -A`, `describe`,
`explain` and `watch` (its initial state), all through the CLI against a real
server in its own network namespace. Each must succeed and see everything;
the client's and the server's peak RSS and the time of each command are
printed (numbers, not pass/fail: see BENCHMARKS.md).

Run from the repository root, as root:
    NFTPROXY_BIN=build/nftproxy /usr/bin/python3 -m unittest -v tests/integration/test_scale_cli.py
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import netlab  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("NFTPROXY_BIN") or os.path.join(REPO, "build", "nftproxy")
SERVICES = int(os.environ.get("NFTPROXY_SCALE_SERVICES", "20000"))
ENDPOINTS = 10


def setUpModule():
    netlab.require_root_and_binary(BIN)


def write_manifest(path, n):
    """n Services (cluster IPs from 100.64.0.0/10) and n EndpointSlices of 10
    endpoints each, in namespace `big`, as nftproxy YAML documents."""
    with open(path, "w") as f:
        for i in range(n):
            vip = "100.%d.%d.%d" % (64 + (i >> 16), (i >> 8) & 255, i & 255)
            f.write("kind: Service\nmetadata: {namespace: big, name: svc-%06d}\n"
                    "spec: {clusterIps: [%s], ports: [{name: http, port: 80, targetPort: 8080}]}\n---\n" % (i, vip))
            eps = ", ".join("{addresses: [198.18.%d.%d]}" % (j, 1 + i % 250) for j in range(ENDPOINTS))
            f.write("kind: EndpointSlice\nmetadata: {namespace: big, name: svc-%06d}\nserviceName: svc-%06d\n"
                    "ports: [{name: http, port: 8080}]\nendpoints: [%s]\n---\n" % (i, i, eps))


def peak_rss_mb(pid):
    """The peak resident set of a live process, in MB (VmHWM)."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    return -1.0


class ScaleCliTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.lab = netlab.Lab()
        cls.lab.prefix = "npx-scale-%d" % os.getpid()
        cls.ns = cls.lab.add_netns("srv")
        cls.tmp = tempfile.mkdtemp(prefix="npx-scale-")
        cls.sock = os.path.join(cls.tmp, "nftproxy.sock")
        cls.log = os.path.join(cls.tmp, "serve.log")
        with open(cls.log, "w") as log:
            cls.server = cls.lab.spawn("srv", [BIN, "serve", "--listen", "unix://" + cls.sock, "--table", "npxscale",
                                               "--state-dir", os.path.join(cls.tmp, "state")], stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while not os.path.exists(cls.sock):
            if cls.server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("server did not start:\n" + open(cls.log).read())
            time.sleep(0.05)
        cls.manifest = os.path.join(cls.tmp, "big.yaml")
        write_manifest(cls.manifest, SERVICES)
        cls.numbers = []

    @classmethod
    def tearDownClass(cls):
        print("\nCLI at %d services x %d endpoints (manifest %.1f MB):" %
              (SERVICES, ENDPOINTS, os.path.getsize(cls.manifest) / 1e6), file=sys.stderr)
        print("  %-34s %8s %12s %16s" % ("command", "seconds", "client MB", "server peak MB"), file=sys.stderr)
        for row in cls.numbers:
            print("  %-34s %8.2f %12.0f %16.0f" % row, file=sys.stderr)
        cls.lab.cleanup()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def cli(self, name, *args, timeout=600):
        """Runs the CLI; returns (exit code, stdout, stderr) and records its time
        and peak RSS (from wait4's rusage of that one child)."""
        start = time.monotonic()
        out_path = os.path.join(self.tmp, "out")
        with open(out_path, "w") as out, open(out_path + ".err", "w") as err:
            p = subprocess.Popen([BIN, "--server", "unix://" + self.sock] + list(args), stdout=out, stderr=err)
            deadline = time.monotonic() + timeout
            while True:
                pid, status, usage = os.wait4(p.pid, os.WNOHANG)
                if pid:
                    break
                if time.monotonic() > deadline:
                    p.kill()
                    raise AssertionError("%s timed out" % name)
                time.sleep(0.01)
        seconds = time.monotonic() - start
        self.numbers.append((name, seconds, usage.ru_maxrss / 1024.0, peak_rss_mb(self.server.pid)))
        p.returncode = os.waitstatus_to_exitcode(status)
        with open(out_path) as out, open(out_path + ".err") as err:
            return p.returncode, out.read(), err.read()

    def test_everything_at_scale(self):
        rc, out, err = self.cli("apply -f", "apply", "-f", self.manifest)
        self.assertEqual(rc, 0, err[-2000:])
        self.assertEqual(out.count(" created"), 2 * SERVICES, out[-500:])

        rc, out, err = self.cli("get services -A", "get", "services", "-A")
        self.assertEqual(rc, 0, err)
        rows = out.splitlines()
        self.assertEqual(len(rows), SERVICES + 1)
        self.assertIn("svc-%06d" % (SERVICES - 1), rows[-1])

        rc, out, err = self.cli("get endpointslices -A", "get", "endpointslices", "-A")
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out.splitlines()), SERVICES + 1)

        name = "svc-%06d" % (SERVICES // 2)
        rc, out, err = self.cli("describe service", "describe", "service", name, "-n", "big")
        self.assertEqual(rc, 0, err)
        self.assertIn(name, out)
        self.assertIn("svc4/big/%s/tcp/80" % name, out)

        rc, out, err = self.cli("explain", "explain")
        self.assertEqual(rc, 0, err)
        self.assertIn("table inet npxscale", out)
        self.assertIn("svc4/big/svc-%06d/tcp/80" % (SERVICES - 1), out)

        # watch: the initial state, up to the bookmark the CLI reports on stderr.
        start = time.monotonic()
        out_path = os.path.join(self.tmp, "watch.out")
        with open(out_path, "w") as out:
            p = subprocess.Popen([BIN, "--server", "unix://" + self.sock, "watch", "-A"], stdout=out,
                                 stderr=subprocess.PIPE, text=True)
            line = p.stderr.readline()
            seconds = time.monotonic() - start
            server_mb = peak_rss_mb(self.server.pid)
            p.terminate()
            _, status, usage = os.wait4(p.pid, 0)
            p.returncode = os.waitstatus_to_exitcode(status)
            p.stderr.close()
        self.numbers.append(("watch -A (initial state)", seconds, usage.ru_maxrss / 1024.0, server_mb))
        self.assertIn("up to date", line)
        with open(out_path) as f:
            events = [l for l in f.read().splitlines()[1:] if " UPSERT " in l]
        self.assertEqual(len(events), 2 * SERVICES)


if __name__ == "__main__":
    unittest.main(verbosity=2)
