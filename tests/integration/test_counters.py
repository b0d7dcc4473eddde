#!/usr/bin/python3
"""Kernel connection counters (serve --kernel-counters) against the real
kernel: real TCP connections through a VIP are counted per service port in a
named counter object, shown by /metrics (nftproxy_service_connections_total),
`describe service`, `get services -o wide` and `nft list`; and per endpoint
(serve --endpoint-counters, the default) in a counter object per endpoint,
each equal to the connections that endpoint answered, shown by /metrics
(nftproxy_endpoint_connections_total) and `describe service`. Incremental
writes (an unrelated service, an endpoint weight change, an endpoint added
or removed, which renumbers the tickets), a restart that adopts the table
and a drift repair reset neither; a counter goes with its service port or
endpoint; with --endpoint-counters=false there are no per-endpoint objects
or series, with --kernel-counters=false no counter object at all.

Topology, all in private network namespaces (netlab.Star):

    client --- proxy --- b1 / b2

Run from the repository root, as root:
    /usr/bin/python3 -m unittest -v tests/integration/test_counters.py
Environment: NFTPROXY_BIN (default <repo>/build/nftproxy); CI=true turns
"not root" / "no binary" skips into failures; NPX_KEEP_TMP=1 keeps the temp
dir (server logs, manifests).
"""

import json
import os
import re
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import netlab  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("NFTPROXY_BIN") or os.path.join(REPO, "build", "nftproxy")
TABLE = "npxcounters"
METRICS = "127.0.0.1:10249"
VIP = "198.19.8.10"
SERIES = ('nftproxy_service_connections_total{namespace="default",service="web",port="80",protocol="tcp"}')
EP_SERIES = ('nftproxy_endpoint_connections_total{namespace="default",service="web",port="80",protocol="tcp",'
             'endpoint="%s:8080"}')

def setUpModule():
    netlab.require_root_and_binary(BIN)


def service(name, vip, port, target):
    return {"kind": "Service", "metadata": {"name": name},
            "spec": {"clusterIps": [vip], "ports": [{"name": "http", "protocol": "TCP", "port": port,
                                                      "targetPort": target}]}}


def endpoint_slice(name, service_name, target, endpoints):
    """endpoints: [(address, weight or None)]"""
    eps = []
    for addr, weight in endpoints:
        e = {"addresses": [addr], "conditions": {"ready": True}}
        if weight is not None:
            e["weight"] = weight
        eps.append(e)
    return {"kind": "EndpointSlice", "metadata": {"name": name}, "serviceName": service_name,
            "ports": [{"name": "http", "protocol": "TCP", "port": target}], "endpoints": eps}


class CountersTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = netlab.class_tmpdir(cls, "npx-counters-")
        cls.lab = netlab.Lab()
        cls.addClassCleanup(cls.lab.cleanup)
        cls.star = netlab.Star(cls.lab, ("b1", "b2"))
        cls.echo_log = open(os.path.join(cls.tmp, "echo.log"), "a")
        cls.addClassCleanup(cls.echo_log.close)
        for b in ("b1", "b2"):
            netlab.start_echo(cls.lab, b, b, tcp_ports=(8080,), udp_ports=(), log=cls.echo_log)
        cls.sock = os.path.join(cls.tmp, "nftproxy.sock")
        cls.state = os.path.join(cls.tmp, "state")
        cls.server_log = os.path.join(cls.tmp, "server.log")
        cls.server = None
        cls.addClassCleanup(cls.stop_server)

    @classmethod
    def start_server(cls, *extra, table=TABLE, sock=None, metrics=METRICS):
        sock = sock or cls.sock
        if os.path.exists(sock):
            os.unlink(sock)
        with open(cls.server_log, "a") as log:
            proc = cls.lab.spawn("proxy", [BIN, "serve", "--listen", "unix://" + sock, "--table", table,
                                           "--state-dir", cls.state if table == TABLE else "",
                                           "--metrics-address", metrics] + list(extra),
                                 stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while not os.path.exists(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("nftproxy serve did not start:\n" + netlab.tail(cls.server_log))
            time.sleep(0.05)
        return proc

    @classmethod
    def stop_server(cls, proc=None):
        proc = proc or cls.server
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(20)

    def cli(self, *args, sock=None):
        cp = subprocess.run([BIN] + list(args) + ["--server", "unix://" + (sock or self.sock)],
                            capture_output=True, text=True, timeout=60)
        self.assertEqual(cp.returncode, 0, "nftproxy %s: %s\nserver log:\n%s"
                         % (" ".join(args), cp.stderr, netlab.tail(self.server_log)))
        return cp

    def apply(self, docs, sock=None):
        path = os.path.join(self.tmp, "m%d.yaml" % time.monotonic_ns())
        with open(path, "w") as f:
            f.write(netlab.to_yaml(docs))
        self.cli("apply", "-f", path, sock=sock)

    def metrics(self):
        got = self.lab.http("proxy", "http://%s/metrics" % METRICS)
        self.assertEqual(got["status"], 200, got)
        return got["body"]

    def metric(self, series=SERIES):
        """The value of one series of /metrics, or None when absent."""
        for line in self.metrics().splitlines():
            if line.startswith(series + " "):
                return float(line.split()[-1])
        return None

    def kernel_counter(self, name, table=TABLE):
        """Packets of counter `name` in the kernel (nft -j), None when absent."""
        cp = self.lab.exec("proxy", ["nft", "-j", "list", "counters", "table", "inet", table])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        for item in json.loads(cp.stdout)["nftables"]:
            c = item.get("counter")
            if c and c["name"] == name:
                return c["packets"]
        return None

    def connect(self, n):
        res = netlab.traffic(self.lab, "client", "tcp", VIP, 80, n)
        self.assertEqual(res["ok"], n, res)
        for name, k in res["answers"].items():
            self.answered[name] = self.answered.get(name, 0) + k

    def expect_endpoints(self, expected, what):
        """Per endpoint of web's port 80 ({backend name: connections}; an
        endpoint left out has no counter): the kernel's counter objects,
        /metrics and `describe service` agree."""
        for b in ("b1", "b2"):
            addr = self.star.v4[b]
            want = expected.get(b)
            self.assertEqual(self.kernel_counter("epconns/default/web/tcp/80/%s/8080" % addr), want,
                             "%s: kernel counter of %s" % (what, b))
            self.assertEqual(self.metric(EP_SERIES % addr), want, "%s: metric of %s" % (what, b))
        out = self.cli("describe", "service", "web").stdout
        section = out.split("Connections per endpoint:", 1)
        self.assertEqual(len(section), 2, out)
        rows = {}
        for line in section[1].splitlines()[2:]:
            f = line.split()
            if len(f) != 3 or not f[0].endswith("/TCP"):
                break
            rows[f[1]] = int(f[2])
        self.assertEqual(rows, {"%s:8080" % self.star.v4[b]: n for b, n in expected.items()},
                         "%s: describe service:\n%s" % (what, out))

    def expect_count(self, n, what):
        """The kernel, /metrics, `describe service` and `get services -o
        wide` all say n for web's port 80."""
        self.assertEqual(self.kernel_counter("conns/default/web/tcp/80"), n, what)
        self.assertEqual(self.metric(), n, what)
        out = self.cli("describe", "service", "web").stdout
        port = [line.split() for line in out.splitlines() if line.startswith("  http ")]
        self.assertEqual(len(port), 1, out)
        self.assertEqual(port[0][-1], str(n), "%s: describe service:\n%s" % (what, out))
        self.assertRegex(out, r"\n  NAME +PROTOCOL +PORT +TARGET +NODE-PORT +CONNECTIONS\n")
        out = self.cli("get", "services", "-o", "wide").stdout
        lines = out.splitlines()
        self.assertEqual(lines[0].split()[-1], "CONNECTIONS", out)
        web = [line.split() for line in lines if line.split()[1:2] == ["web"]]
        self.assertEqual(len(web), 1, out)
        self.assertEqual(web[0][-1], str(n), "%s: get services -o wide:\n%s" % (what, out))

    def test_counts_survive_incremental_writes_and_restart(self):
        b1, b2 = self.star.v4["b1"], self.star.v4["b2"]
        self.answered = {}
        self.__class__.server = self.start_server()
        self.apply([service("web", VIP, 80, 8080), endpoint_slice("web-1", "web", 8080, [(b1, None)])])
        self.connect(20)
        self.expect_count(20, "20 connections through the VIP")
        self.expect_endpoints({"b1": 20}, "20 connections through the VIP")
        # An unrelated incremental write.
        self.apply([service("other", "198.19.8.11", 81, 8080), endpoint_slice("other-1", "other", 8080, [(b2, None)])])
        self.expect_count(20, "after an unrelated write")
        # An endpoint's weight changes, then a second endpoint is added: both
        # renumber b1's tickets; its counter stays.
        self.apply([endpoint_slice("web-1", "web", 8080, [(b1, 3)])])
        self.expect_count(20, "after a weight change")
        self.expect_endpoints({"b1": 20}, "after a weight change")
        self.apply([endpoint_slice("web-1", "web", 8080, [(b1, 1), (b2, 1)])])
        self.expect_count(20, "after an endpoint was added")
        self.expect_endpoints({"b1": 20, "b2": 0}, "after an endpoint was added")
        self.connect(40)
        self.expect_count(60, "40 more connections")
        # Each endpoint's count is what that endpoint answered, and both got some.
        self.assertEqual(set(self.answered), {"b1", "b2"}, self.answered)
        self.expect_endpoints(dict(self.answered), "40 more connections over two endpoints")
        answered_b2 = self.answered["b2"]
        # An endpoint removed: its counter goes, the other one's stays.
        self.apply([endpoint_slice("web-1", "web", 8080, [(b2, None)])])
        self.expect_count(60, "after an endpoint was removed")
        self.expect_endpoints({"b2": answered_b2}, "after b1 was removed")
        self.answered = {"b2": answered_b2}
        # The other service's port counts on its own.
        res = netlab.traffic(self.lab, "client", "tcp", "198.19.8.11", 81, 5)
        self.assertEqual(res["ok"], 5, res)
        self.assertEqual(self.kernel_counter("conns/default/other/tcp/81"), 5)
        self.expect_count(60, "after traffic to another service")
        # A restart adopts the table the previous run left: counts kept.
        self.stop_server()
        self.__class__.server = self.start_server()
        deadline = time.monotonic() + 30
        while "adopted the table" not in netlab.tail(self.server_log, 30):
            self.assertLess(time.monotonic(), deadline, netlab.tail(self.server_log))
            time.sleep(0.1)
        self.expect_count(60, "after a restart")
        self.expect_endpoints(dict(self.answered), "after a restart")
        self.connect(5)
        self.expect_count(65, "5 connections after the restart")
        self.expect_endpoints(dict(self.answered), "5 connections after the restart")
        # Drift: someone flushes the port's chain; the repair rewrites the
        # chain and keeps the counter.
        chain = "svc4/default/web/tcp/80"
        cp = self.lab.exec("proxy", ["nft", "flush", "chain", "inet", TABLE, chain])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        deadline = time.monotonic() + 20
        while 'counter name "conns/default/web/tcp/80"' not in self.lab.exec(
                "proxy", ["nft", "list", "chain", "inet", TABLE, chain]).stdout:
            self.assertLess(time.monotonic(), deadline, "the flushed chain was not repaired:\n"
                            + netlab.tail(self.server_log))
            time.sleep(0.05)
        self.expect_count(65, "after a drift repair")
        self.connect(5)
        self.expect_count(70, "5 connections after the drift repair")
        self.expect_endpoints(dict(self.answered), "5 connections after the drift repair")
        # The service port goes: its counter goes with it, the other stays.
        self.cli("delete", "service", "web")
        self.assertIsNone(self.kernel_counter("conns/default/web/tcp/80"))
        self.assertIsNone(self.metric())
        self.assertIsNone(self.kernel_counter("epconns/default/web/tcp/80/%s/8080" % b2))
        self.assertIsNone(self.metric(EP_SERIES % b2))
        self.assertEqual(self.kernel_counter("conns/default/other/tcp/81"), 5)
        self.stop_server()
        self.__class__.server = None

    def test_endpoint_counters_off(self):
        table, sock = "npxnoepcounters", os.path.join(self.tmp, "noep.sock")
        proc = self.start_server("--endpoint-counters=false", table=table, sock=sock, metrics="127.0.0.1:10251")
        try:
            self.apply([service("plain", "198.19.8.21", 80, 8080),
                        endpoint_slice("plain-1", "plain", 8080, [(self.star.v4["b1"], None)])], sock=sock)
            res = netlab.traffic(self.lab, "client", "tcp", "198.19.8.21", 80, 5)
            self.assertEqual(res["ok"], 5, res)
            cp = self.lab.exec("proxy", ["nft", "list", "table", "inet", table])
            self.assertEqual(cp.returncode, 0, cp.stderr)
            self.assertIn('counter name "conns/default/plain/tcp/80"', cp.stdout)
            self.assertNotIn("epconns", cp.stdout)
            out = self.lab.http("proxy", "http://127.0.0.1:10251/metrics")
            self.assertEqual(out["status"], 200, out)
            self.assertIn('nftproxy_service_connections_total{namespace="default",service="plain",port="80",'
                          'protocol="tcp"} 5', out["body"])
            self.assertNotIn("nftproxy_endpoint_connections_total", out["body"])
            desc = self.cli("describe", "service", "plain", sock=sock).stdout
            self.assertNotIn("Connections per endpoint", desc)
        finally:
            self.stop_server(proc)

    def test_kernel_counters_off(self):
        table, sock = "npxnocounters", os.path.join(self.tmp, "off.sock")
        proc = self.start_server("--kernel-counters=false", table=table, sock=sock, metrics="127.0.0.1:10250")
        try:
            self.apply([service("plain", "198.19.8.20", 80, 8080),
                        endpoint_slice("plain-1", "plain", 8080, [(self.star.v4["b1"], None)])], sock=sock)
            res = netlab.traffic(self.lab, "client", "tcp", "198.19.8.20", 80, 5)
            self.assertEqual(res["ok"], 5, res)
            cp = self.lab.exec("proxy", ["nft", "list", "table", "inet", table])
            self.assertEqual(cp.returncode, 0, cp.stderr)
            self.assertIn("chain svc4/default/plain/tcp/80", cp.stdout)
            self.assertNotRegex(cp.stdout, re.compile(r"\bcounter\b"))
            out = self.lab.http("proxy", "http://127.0.0.1:10250/metrics")
            self.assertEqual(out["status"], 200, out)
            self.assertNotIn("nftproxy_service_connections_total", out["body"])
            self.assertNotIn("nftproxy_endpoint_connections_total", out["body"])
            # The CLI says there is nothing to show.
            desc = self.cli("describe", "service", "plain", sock=sock).stdout
            port = [line.split() for line in desc.splitlines() if line.startswith("  http ")]
            self.assertEqual(port[0][-1], "-", desc)
        finally:
            self.stop_server(proc)
            self.lab.exec("proxy", ["nft", "delete", "table", "inet", table])


if __name__ == "__main__":
    unittest.main(verbosity=2)
