#!/usr/bin/python3
"""Kernel-level integration test of nftproxy's ClusterIP services.

Topology (per test class), all in private network namespaces:

    client --- proxy --- b1 / b2 / b3

The proxy namespace forwards and runs `nftproxy serve`; b1..b3 run
echo_server.py (TCP 8080 and 9090, UDP 5353); the client sends traffic to
service VIPs with traffic_client.py. Each test uses its own service names and
VIPs and deletes its services afterwards.

Run from the repository root, as root:
    /usr/bin/python3 -m unittest -v tests/integration/test_clusterip.py
Environment: NFTPROXY_BIN (default <repo>/build/nftproxy), CI=true turns
"not root" / "no binary" skips into failures, NPX_KEEP_TMP=1 keeps the temp
dir (server log, manifests).
"""

import difflib
import ipaddress
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import netlab  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("NFTPROXY_BIN") or os.path.join(REPO, "build", "nftproxy")
TABLE = os.environ.get("NFTPROXY_TEST_TABLE", "npxtest")
BACKENDS = ("b1", "b2", "b3")


def setUpModule():
    netlab.require_root_and_binary(BIN)


# ---- manifests ---------------------------------------------------------------

to_yaml = netlab.to_yaml


def service(name, cluster_ips, ports, namespace="default"):
    return {"kind": "Service",
            "metadata": {"namespace": namespace, "name": name},
            "spec": {"clusterIps": list(cluster_ips), "ports": list(ports)}}


def sport(name, protocol, port, target=None, target_name=None):
    p = {"name": name, "protocol": protocol, "port": port}
    if target is not None:
        p["targetPort"] = target
    if target_name is not None:
        p["targetPortName"] = target_name
    return p


def endpoint(addresses, ready=None):
    e = {"addresses": list(addresses)}
    if ready is not None:
        e["conditions"] = {"ready": ready}
    return e


def endpoint_slice(name, service_name, ports, endpoints, namespace="default"):
    return {"kind": "EndpointSlice",
            "metadata": {"namespace": namespace, "name": name},
            "serviceName": service_name,
            "ports": [{"name": n, "protocol": pr, "port": p} for n, pr, p in ports],
            "endpoints": list(endpoints)}


_tail = netlab.tail


_norm_counters = netlab.norm_ruleset


# ---- base class ----------------------------------------------------------------

class ProxyLabCase(unittest.TestCase):
    """Builds the topology and starts nftproxy once per test class."""

    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = netlab.class_tmpdir(cls, "npx-it-")
        cls.lab = netlab.Lab()
        cls.addClassCleanup(cls.lab.cleanup)
        cls.star = netlab.Star(cls.lab, BACKENDS)
        cls.echo_log = open(os.path.join(cls.tmp, "echo.log"), "a")
        cls.addClassCleanup(cls.echo_log.close)
        for b in BACKENDS:
            netlab.start_echo(cls.lab, b, b, tcp_ports=(8080, 9090), udp_ports=(5353,),
                              log=cls.echo_log)
        cls.sock = os.path.join(cls.tmp, "nftproxy.sock")
        cls.url = "unix://" + cls.sock
        cls.state_dir = os.path.join(cls.tmp, "state")
        os.mkdir(cls.state_dir)
        cls.server_log_path = os.path.join(cls.tmp, "server.log")
        cls.server = None
        cls._manifests = 0
        cls.start_server()

    # -- server ----------------------------------------------------------------

    @classmethod
    def start_server(cls, timeout=20):
        log = open(cls.server_log_path, "a")
        log.write("==== nftproxy serve started at %s ====\n" % time.strftime("%T"))
        log.flush()
        cls.server = cls.lab.spawn(
            "proxy", [BIN, "serve", "--listen", cls.url, "--table", TABLE,
                      "--state-dir", cls.state_dir],
            stdout=log, stderr=log)
        log.close()
        netlab.wait_server(cls.server, cls.sock, lambda: cls.cli_run("get", "services", timeout=5),
                           cls.server_log_path, timeout)

    @classmethod
    def stop_server(cls, timeout=10):
        """SIGTERM; returns (exit status, seconds it took)."""
        t0 = time.monotonic()
        rc = cls.lab.stop(cls.server, signal.SIGTERM, timeout=timeout)
        cls.server = None
        return rc, time.monotonic() - t0

    # -- CLI ---------------------------------------------------------------------

    @classmethod
    def cli_run(cls, *args, timeout=30):
        return subprocess.run([BIN] + list(args) + ["--server", cls.url],
                              capture_output=True, text=True, timeout=timeout)

    def cli(self, *args, timeout=30):
        return self.cli_run(*args, timeout=timeout)

    def write_manifest(self, docs):
        type(self)._manifests += 1
        path = os.path.join(self.tmp, "manifest-%03d-%s.yaml" % (self._manifests, self._testMethodName))
        with open(path, "w") as f:
            f.write(to_yaml(docs) if not isinstance(docs, str) else docs)
        return path

    def apply(self, docs):
        path = self.write_manifest(docs)
        return self.cli("apply", "-f", path), path

    def apply_ok(self, docs, wait_vips=()):
        cp, path = self.apply(docs)
        with open(path) as f:
            text = f.read()
        self.assertEqual(cp.returncode, 0,
                         "apply failed (exit %d)\nstderr: %s\nmanifest:\n%s\nserver log:\n%s"
                         % (cp.returncode, cp.stderr, text, _tail(self.server_log_path)))
        for vip in wait_vips:
            self.wait_vip_in_table(vip)
        return cp

    def delete_service(self, name, namespace="default"):
        return self.cli("delete", "service", name, "-n", namespace)

    def cleanup_service(self, name):
        self.addCleanup(self.delete_service, name)

    # -- nftables in the proxy namespace -------------------------------------------

    def nft(self, *args, input=None):
        return self.lab.exec("proxy", ["nft"] + list(args), input=input)

    def table_text(self):
        cp = self.nft("list", "table", "inet", TABLE)
        return cp.stdout if cp.returncode == 0 else ""

    def wait_vip_in_table(self, vip, present=True, timeout=5):
        vip = str(ipaddress.ip_address(vip))
        deadline = time.monotonic() + timeout
        while True:
            text = self.table_text()
            if (vip in text) == present:
                return text
            if time.monotonic() > deadline:
                self.fail("VIP %s %s in `nft list table inet %s` after %ss:\n%s\nserver log:\n%s"
                          % (vip, "not" if present else "still", TABLE, timeout, text,
                             _tail(self.server_log_path)))
            time.sleep(0.05)

    def diag(self):
        return "\n--- nft list table inet %s ---\n%s--- server log (tail) ---\n%s" % (
            TABLE, self.table_text(), _tail(self.server_log_path, 25))

    # -- traffic -------------------------------------------------------------------

    def traffic(self, proto, target, port, count, timeout=2.0, deadline=30.0):
        return netlab.traffic(self.lab, "client", proto, target, port, count,
                              timeout=timeout, deadline=deadline)

    def assert_all_answered(self, res, count, backends=BACKENDS, port=None, peer=None, what=""):
        msg = "%s\ntraffic result: %s%s" % (what, json.dumps(res, sort_keys=True), self.diag())
        self.assertEqual(res["errors"], {}, "requests failed. " + msg)
        self.assertEqual(res["ok"], count, "not every request was answered. " + msg)
        self.assertEqual(sorted(res["answers"]), sorted(backends),
                         "the set of answering backends is wrong. " + msg)
        if port is not None:
            self.assertEqual(res["ports"], {str(port): count}, "wrong backend port. " + msg)
        if peer is not None:
            self.assertEqual(res["seen_peers"], [peer],
                             "backends did not see the client's own address (SNAT?). " + msg)

    def assert_all_failed(self, res, count, what=""):
        msg = "%s\ntraffic result: %s%s" % (what, json.dumps(res, sort_keys=True), self.diag())
        self.assertEqual(res["ok"], 0, "some requests were answered. " + msg)
        self.assertEqual(sum(res["errors"].values()), count, msg)

    # -- common manifests ------------------------------------------------------------

    def v4(self, b):
        return self.star.v4[b]

    def v6(self, b):
        return self.star.v6[b]


# ---- tests ---------------------------------------------------------------------------

class ClusterIPTest(ProxyLabCase):

    def test_tcp_v4(self):
        vip = "198.19.0.10"
        self.cleanup_service("tcp-v4")
        self.apply_ok([
            service("tcp-v4", [vip], [sport("http", "TCP", 80, 8080)]),
            endpoint_slice("tcp-v4-1", "tcp-v4", [("http", "TCP", 8080)], [
                endpoint([self.v4("b1")], ready=True),
                endpoint([self.v4("b2")]),                # ready unset means ready
                endpoint([self.v4("b3")], ready=True),
            ]),
        ], wait_vips=[vip])
        res = self.traffic("tcp", vip, 80, 90)
        self.assert_all_answered(res, 90, port=8080, peer=self.star.v4["client"],
                                 what="TCP %s:80 -> :8080" % vip)

    def test_udp_v4(self):
        vip = "198.19.0.11"
        self.cleanup_service("udp-v4")
        self.apply_ok([
            service("udp-v4", [vip], [sport("dns", "UDP", 53, 5353)]),
            endpoint_slice("udp-v4-1", "udp-v4", [("dns", "UDP", 5353)],
                           [endpoint([self.v4(b)], ready=True) for b in BACKENDS]),
        ], wait_vips=[vip])
        res = self.traffic("udp", vip, 53, 90)
        self.assert_all_answered(res, 90, port=5353, peer=self.star.v4["client"],
                                 what="UDP %s:53 -> :5353" % vip)

    def test_tcp_v6(self):
        vip = "fd00:96::12"
        self.cleanup_service("tcp-v6")
        self.apply_ok([
            service("tcp-v6", [vip], [sport("http", "TCP", 80, 8080)]),
            endpoint_slice("tcp-v6-1", "tcp-v6", [("http", "TCP", 8080)],
                           [endpoint([self.v6(b)], ready=True) for b in BACKENDS]),
        ], wait_vips=[vip])
        res = self.traffic("tcp", vip, 80, 90)
        self.assert_all_answered(res, 90, port=8080, peer=self.star.v6["client"],
                                 what="TCP [%s]:80 -> :8080" % vip)

    def test_dual_stack(self):
        vip4, vip6 = "198.19.0.21", "fd00:96::21"
        self.cleanup_service("dual")
        self.apply_ok([
            service("dual", [vip4, vip6], [sport("http", "TCP", 80, 8080),
                                           sport("dns", "UDP", 53, 5353)]),
            endpoint_slice("dual-1", "dual", [("http", "TCP", 8080), ("dns", "UDP", 5353)],
                           [endpoint([self.v4(b), self.v6(b)]) for b in BACKENDS]),
        ], wait_vips=[vip4, vip6])
        for proto, vip, port, tport, peer in (
                ("tcp", vip4, 80, 8080, self.star.v4["client"]),
                ("tcp", vip6, 80, 8080, self.star.v6["client"]),
                ("udp", vip4, 53, 5353, self.star.v4["client"]),
                ("udp", vip6, 53, 5353, self.star.v6["client"])):
            res = self.traffic(proto, vip, port, 45)
            self.assert_all_answered(res, 45, port=tport, peer=peer,
                                     what="dual-stack %s %s:%d" % (proto, vip, port))

    def test_multi_port(self):
        vip = "198.19.0.13"
        self.cleanup_service("multi")
        self.apply_ok([
            service("multi", [vip], [sport("http", "TCP", 80, 8080),
                                     sport("admin", "TCP", 81, 9090)]),
            endpoint_slice("multi-1", "multi", [("http", "TCP", 8080), ("admin", "TCP", 9090)],
                           [endpoint([self.v4(b)]) for b in BACKENDS]),
        ], wait_vips=[vip])
        res80 = self.traffic("tcp", vip, 80, 45)
        self.assert_all_answered(res80, 45, port=8080, what="multi-port via :80")
        res81 = self.traffic("tcp", vip, 81, 45)
        self.assert_all_answered(res81, 45, port=9090, what="multi-port via :81")

    def test_target_port_name(self):
        # targetPortName: the slice port named like the service port supplies the number.
        vip = "198.19.0.19"
        self.cleanup_service("named")
        self.apply_ok([
            service("named", [vip], [sport("http", "TCP", 80, target_name="http")]),
            endpoint_slice("named-1", "named", [("http", "TCP", 9090)],
                           [endpoint([self.v4(b)]) for b in BACKENDS]),
        ], wait_vips=[vip])
        res = self.traffic("tcp", vip, 80, 45)
        self.assert_all_answered(res, 45, port=9090, what="targetPortName resolved by slice port")

    def test_not_ready_endpoint_gets_no_traffic(self):
        vip = "198.19.0.14"
        self.cleanup_service("notready")
        self.apply_ok([
            service("notready", [vip], [sport("http", "TCP", 80, 8080)]),
            endpoint_slice("notready-1", "notready", [("http", "TCP", 8080)], [
                endpoint([self.v4("b1")], ready=True),
                endpoint([self.v4("b2")]),
                endpoint([self.v4("b3")], ready=False),
            ]),
        ], wait_vips=[vip])
        res = self.traffic("tcp", vip, 80, 60)
        self.assert_all_answered(res, 60, backends=("b1", "b2"), port=8080,
                                 what="b3 is not ready and must get nothing")

    def test_delete_service(self):
        vip = "198.19.0.15"
        self.cleanup_service("deleteme")
        self.apply_ok([
            service("deleteme", [vip], [sport("http", "TCP", 80, 8080)]),
            endpoint_slice("deleteme-1", "deleteme", [("http", "TCP", 8080)],
                           [endpoint([self.v4(b)]) for b in BACKENDS]),
        ], wait_vips=[vip])
        res = self.traffic("tcp", vip, 80, 30)
        self.assert_all_answered(res, 30, port=8080, what="before delete")

        cp = self.delete_service("deleteme")
        self.assertEqual(cp.returncode, 0, "delete failed: %s" % cp.stderr)
        res = self.traffic("tcp", vip, 80, 10, timeout=1.0, deadline=15)
        self.assert_all_failed(res, 10, what="after `delete service deleteme`")
        table = self.table_text()
        self.assertNotIn(vip, table, "deleted VIP still in the table:\n" + table)
        gs = self.cli("get", "services")
        self.assertEqual(gs.returncode, 0, gs.stderr)
        self.assertNotIn("deleteme", gs.stdout)

    def _rejection_baseline(self):
        vip = "198.19.0.16"
        self.cleanup_service("rej-base")
        self.apply_ok([
            service("rej-base", [vip], [sport("http", "TCP", 80, 8080)]),
            endpoint_slice("rej-base-1", "rej-base", [("http", "TCP", 8080)],
                           [endpoint([self.v4(b)]) for b in BACKENDS]),
        ], wait_vips=[vip])
        ruleset = self.nft("list", "ruleset")
        self.assertEqual(ruleset.returncode, 0, ruleset.stderr)
        gs = self.cli("get", "services")
        self.assertEqual(gs.returncode, 0, gs.stderr)
        return ruleset.stdout, gs.stdout

    def _service_rows(self, text):
        # Exact rows, unless the table has an AGE column (which changes with time):
        # then only the leading NAMESPACE/NAME columns are compared.
        lines = [line.split() for line in text.splitlines() if line.strip()]
        if lines and "AGE" in lines[0]:
            lines = [line[:2] for line in lines]
        return sorted(tuple(line) for line in lines)

    def _assert_unchanged(self, before_ruleset, before_gs, what):
        after = self.nft("list", "ruleset")
        self.assertEqual(after.returncode, 0, after.stderr)
        if after.stdout != before_ruleset:
            diff = "".join(difflib.unified_diff(before_ruleset.splitlines(True),
                                                after.stdout.splitlines(True),
                                                "before", "after"))
            self.fail("%s changed the ruleset:\n%s" % (what, diff))
        gs = self.cli("get", "services")
        self.assertEqual(gs.returncode, 0, gs.stderr)
        self.assertEqual(self._service_rows(gs.stdout), self._service_rows(before_gs),
                         "%s changed `get services`:\nbefore:\n%s\nafter:\n%s"
                         % (what, before_gs, gs.stdout))
        for name in ("rej-new", "rej-bad"):
            self.assertNotIn(name, gs.stdout)

    def test_rejected_invalid_port(self):
        before_ruleset, before_gs = self._rejection_baseline()
        self.cleanup_service("rej-new")
        self.cleanup_service("rej-bad")
        # A valid document followed by an invalid one: all or nothing.
        cp, _ = self.apply([
            service("rej-new", ["198.19.0.26"], [sport("http", "TCP", 80, 8080)]),
            service("rej-bad", ["198.19.0.27"], [sport("http", "TCP", 70000, 8080)]),
        ])
        self.assertEqual(cp.returncode, 2, "port 70000: want exit 2, got %d; stderr: %r"
                         % (cp.returncode, cp.stderr))
        self.assertIn("port", cp.stderr)
        self.assertEqual(len(cp.stderr.strip().splitlines()), 1,
                         "want a one-line error, got: %r" % cp.stderr)
        self._assert_unchanged(before_ruleset, before_gs, "rejected manifest (port 70000)")

    def test_rejected_bad_cluster_ip(self):
        before_ruleset, before_gs = self._rejection_baseline()
        self.cleanup_service("rej-bad")
        cp, _ = self.apply([
            service("rej-bad", ["198.19.0.999"], [sport("http", "TCP", 80, 8080)]),
        ])
        self.assertEqual(cp.returncode, 2, "bad cluster IP: want exit 2, got %d; stderr: %r"
                         % (cp.returncode, cp.stderr))
        self.assertRegex(cp.stderr, r"(?i)cluster_?ips",
                         "the error should name the clusterIps field")
        self.assertEqual(len(cp.stderr.strip().splitlines()), 1,
                         "want a one-line error, got: %r" % cp.stderr)
        self._assert_unchanged(before_ruleset, before_gs, "rejected manifest (bad cluster IP)")

    def test_ruleset_printable_and_reloadable(self):
        vip4, vip6 = "198.19.0.17", "fd00:96::17"
        self.cleanup_service("print")
        self.apply_ok([
            service("print", [vip4, vip6], [sport("http", "TCP", 80, 8080),
                                            sport("dns", "UDP", 53, 5353)]),
            endpoint_slice("print-1", "print", [("http", "TCP", 8080), ("dns", "UDP", 5353)], [
                endpoint([self.v4("b1"), self.v6("b1")]),
                endpoint([self.v4("b2"), self.v6("b2")], ready=True),
                endpoint([self.v4("b3"), self.v6("b3")], ready=False),
            ]),
        ], wait_vips=[vip4, vip6])
        rs = self.nft("list", "ruleset")
        self.assertEqual(rs.returncode, 0, "nft list ruleset failed: %s" % rs.stderr)
        self.assertIn("table inet %s" % TABLE, rs.stdout)

        table = self.nft("list", "table", "inet", TABLE)
        self.assertEqual(table.returncode, 0, table.stderr)
        scratch = "scratch-%d" % (time.monotonic_ns() % 100000)
        self.lab.add_netns(scratch)
        self.addCleanup(self.lab.del_netns, scratch)
        load = self.lab.exec(scratch, ["nft", "-f", "-"], input=table.stdout)
        self.assertEqual(load.returncode, 0,
                         "`nft -f` of the listing failed in a fresh namespace:\n%s\nlisting:\n%s"
                         % (load.stderr, table.stdout))
        relist = self.lab.exec(scratch, ["nft", "list", "table", "inet", TABLE])
        self.assertEqual(relist.returncode, 0, relist.stderr)
        self.assertIn(vip4, relist.stdout)
        self.assertIn(vip6, relist.stdout)

    def test_explain(self):
        vip = "198.19.0.20"
        self.cleanup_service("explain")
        self.apply_ok([
            service("explain", [vip], [sport("http", "TCP", 80, 8080)]),
            endpoint_slice("explain-1", "explain", [("http", "TCP", 8080)],
                           [endpoint([self.v4("b1")])]),
        ], wait_vips=[vip])
        cp = self.cli("explain")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertIn(vip, cp.stdout)
        gs = self.cli("get", "services", "explain")
        self.assertEqual(gs.returncode, 0, gs.stderr)
        self.assertIn("explain", gs.stdout)

    def test_server_unreachable_exit_code(self):
        cp = subprocess.run([BIN, "get", "services", "--server",
                             "unix://" + os.path.join(self.tmp, "nobody-listens.sock")],
                            capture_output=True, text=True, timeout=30)
        self.assertEqual(cp.returncode, 3, "want exit 3 for an unreachable server; stderr: %r"
                         % cp.stderr)


class RestartTest(ProxyLabCase):

    def test_restart_keeps_service(self):
        vip4, vip6 = "198.19.0.18", "fd00:96::18"
        self.cleanup_service("restart")
        self.apply_ok([
            service("restart", [vip4, vip6], [sport("http", "TCP", 80, 8080)]),
            endpoint_slice("restart-1", "restart", [("http", "TCP", 8080)],
                           [endpoint([self.v4(b), self.v6(b)]) for b in BACKENDS]),
        ], wait_vips=[vip4, vip6])
        self.assert_all_answered(self.traffic("tcp", vip4, 80, 45), 45, port=8080,
                                 what="before restart")
        table_before = self.table_text()

        # Watch the table through the restart: it must never be missing.
        missing, polls, stop = [], [0], threading.Event()

        def watch():
            while not stop.is_set():
                cp = self.lab.exec("proxy", ["nft", "list", "table", "inet", TABLE])
                polls[0] += 1
                if cp.returncode != 0 or vip4 not in cp.stdout:
                    missing.append((time.strftime("%T"), cp.returncode, cp.stderr.strip()))
                time.sleep(0.005)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            rc, took = self.stop_server()
            self.assertNotEqual(rc, -signal.SIGKILL,
                                "nftproxy serve ignored SIGTERM (killed after %.1fs)" % took)

            # Server down: the kernel keeps forwarding.
            self.assertIn(vip4, self.table_text(), "table gone after the server stopped")
            self.assert_all_answered(self.traffic("tcp", vip4, 80, 45), 45, port=8080,
                                     what="while the server is down (v4)")
            self.assert_all_answered(self.traffic("tcp", vip6, 80, 45), 45, port=8080,
                                     what="while the server is down (v6)")

            self.start_server()
            self.assertIn(vip4, self.table_text(), "table missing right after restart")
        finally:
            stop.set()
            watcher.join(10)
        self.assertEqual(missing, [], "table (or VIP) missing during the restart in %d of %d polls"
                         % (len(missing), polls[0]))
        self.assertGreater(polls[0], 0)

        self.assert_all_answered(self.traffic("tcp", vip4, 80, 45), 45, port=8080,
                                 what="after restart (v4)")
        self.assert_all_answered(self.traffic("tcp", vip6, 80, 45), 45, port=8080,
                                 what="after restart (v6)")
        gs = self.cli("get", "services")
        self.assertEqual(gs.returncode, 0, gs.stderr)
        self.assertIn("restart", gs.stdout)
        gs1 = self.cli("get", "services", "restart")
        self.assertEqual(gs1.returncode, 0, gs1.stderr)
        self.assertIn("restart", gs1.stdout)

        table_after = self.table_text()
        if _norm_counters(table_after) != _norm_counters(table_before):
            diff = "".join(difflib.unified_diff(table_before.splitlines(True),
                                                table_after.splitlines(True),
                                                "before restart", "after restart"))
            self.fail("restored table differs from the one before the restart:\n" + diff)

        # The restored state is live: an update after the restart takes effect.
        self.apply_ok([
            endpoint_slice("restart-1", "restart", [("http", "TCP", 8080)], [
                endpoint([self.v4("b1"), self.v6("b1")]),
                endpoint([self.v4("b2"), self.v6("b2")]),
                endpoint([self.v4("b3"), self.v6("b3")], ready=False),
            ]),
        ])
        res = self.traffic("tcp", vip4, 80, 45)
        self.assert_all_answered(res, 45, backends=("b1", "b2"), port=8080,
                                 what="update after restart (b3 not ready)")



class DriftTest(ProxyLabCase):
    """Changes to the table that nftproxy did not make are noticed (nf_tables
    notifications), logged, shown in `status`, and undone with a full commit:
    traffic works again and the table is what it was."""

    def drifted(self, vip, damage, what):
        text = self.table_text()
        before = self.cli("status", "-o", "json")
        self.assertEqual(before.returncode, 0, before.stderr)
        repairs = int(json.loads(before.stdout).get("driftRepairs", "0"))
        cp = self.nft(*damage)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        t0 = time.monotonic()
        while _norm_counters(self.table_text()) != _norm_counters(text):
            if time.monotonic() - t0 > 10:
                self.fail("the table was not repaired after %s:%s" % (" ".join(damage), self.diag()))
            time.sleep(0.01)
        took = time.monotonic() - t0
        print("\n  %s: table back in %.0f ms" % (" ".join(damage[:2]), took * 1000), file=sys.stderr)
        res = self.traffic("tcp", vip, 80, 30)
        self.assert_all_answered(res, 30, port=8080, what="after %s was repaired" % " ".join(damage))
        status = json.loads(self.cli("status", "-o", "json").stdout)
        self.assertGreater(int(status.get("driftRepairs", "0")), repairs)
        self.assertIn(what, status.get("lastDrift", ""))
        self.assertIn("the table changed outside nftproxy", _tail(self.server_log_path, 50))
        # Repaired: the kernel's table, read back, is what the server installed.
        cp = self.cli("explain", "--kernel")
        self.assertEqual(cp.returncode, 0, cp.stdout[:3000] + cp.stderr)
        self.assertTrue(cp.stdout.startswith("# the kernel's table inet %s is the ruleset below" % TABLE),
                        cp.stdout[:500])

    def test_drift_is_repaired(self):
        vip = "198.19.0.90"
        self.cleanup_service("drift")
        self.apply_ok([
            service("drift", [vip], [sport("http", "TCP", 80, 8080)]),
            endpoint_slice("drift-1", "drift", [("http", "TCP", 8080)],
                           [endpoint([self.v4(b)], ready=True) for b in BACKENDS]),
        ], wait_vips=[vip])
        self.assert_all_answered(self.traffic("tcp", vip, 80, 30), 30, port=8080, what="before any drift")
        chain = "svc4/default/drift/tcp/80"
        self.assertIn("chain %s {" % chain, self.table_text())
        self.drifted(vip, ["flush", "chain", "inet", TABLE, chain], "deleted a rule")
        element = re.search(r"map backends4-\d+ \{[^}]*?elements = \{ (\S+) :", self.table_text(), re.S)
        self.assertIsNotNone(element, self.table_text())
        backends_map = re.search(r"map (backends4-\d+) \{[^}]*?elements", self.table_text(), re.S).group(1)
        self.drifted(vip, ["delete", "element", "inet", TABLE, backends_map, "{", element.group(1), "}"],
                     "deleted elements")
        self.drifted(vip, ["delete", "table", "inet", TABLE], "deleted the table")


if __name__ == "__main__":
    unittest.main(verbosity=2)
