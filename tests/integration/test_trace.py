#!/usr/bin/python3
"""Kernel-level integration test of `nftproxy trace`.

Topology: netlab.Star (client --- proxy --- b1 / b2), all in private network
namespaces; the proxy runs `nftproxy serve --node-name proxy`. For each flow
the test starts `nftproxy trace` in the background, waits until the trace
table exists, connects from the client namespace, and reads the trace's
lines: a working flow names the service and the endpoint and ends accepted
(dnat); a service without endpoints is rejected; a service whose traffic
policy is Local, on a node without a local endpoint, drops. The trace table
is gone afterwards, also when the CLI is killed, and the trace caused no
drift repair of nftproxy's own table.

Run from the repository root, as root:
    /usr/bin/python3 -m unittest -v tests/integration/test_trace.py
Environment: NFTPROXY_BIN (default <repo>/build/nftproxy), CI=true turns
"not root" / "no binary" skips into failures, NPX_KEEP_TMP=1 keeps the temp dir.
"""

import os
import signal
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
TABLE = os.environ.get("NFTPROXY_TEST_TABLE", "npxtrace")
TRACE_TABLE = TABLE + "-trace"
BACKENDS = ("b1", "b2")


def setUpModule():
    netlab.require_root_and_binary(BIN)


def service(name, vip, policy=None, node_port=None):
    spec = {"clusterIps": [vip], "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 8080}]}
    if policy:
        spec["internalTrafficPolicy"] = policy
    if node_port:
        spec["type"] = "NODE_PORT"
        spec["ports"][0]["nodePort"] = node_port
    return {"kind": "Service", "metadata": {"namespace": "default", "name": name}, "spec": spec}


def endpoint_slice(name, service_name, endpoints):
    return {"kind": "EndpointSlice", "metadata": {"namespace": "default", "name": name},
            "serviceName": service_name,
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
            "endpoints": endpoints}


class TraceTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = netlab.class_tmpdir(cls, "npx-trace-")
        cls.lab = netlab.Lab()
        cls.addClassCleanup(cls.lab.cleanup)
        cls.star = netlab.Star(cls.lab, BACKENDS)
        cls.echo_log = open(os.path.join(cls.tmp, "echo.log"), "a")
        cls.addClassCleanup(cls.echo_log.close)
        for b in BACKENDS:
            netlab.start_echo(cls.lab, b, b, tcp_ports=(8080,), udp_ports=(), log=cls.echo_log)
        cls.sock = os.path.join(cls.tmp, "nftproxy.sock")
        cls.url = "unix://" + cls.sock
        cls.log_path = os.path.join(cls.tmp, "server.log")
        cls.state_dir = os.path.join(cls.tmp, "state")
        os.mkdir(cls.state_dir)
        cls.start_server()
        manifest = os.path.join(cls.tmp, "services.yaml")
        with open(manifest, "w") as f:
            f.write(netlab.to_yaml([
                service("web", "198.19.0.10"),
                endpoint_slice("web-1", "web", [{"addresses": [cls.star.v4["b1"]]},
                                                {"addresses": [cls.star.v4["b2"]]}]),
                service("np", "198.19.0.13", node_port=30080),
                endpoint_slice("np-1", "np", [{"addresses": [cls.star.v4["b2"]]}]),
                service("empty", "198.19.0.11"),
                service("loc", "198.19.0.12", policy="LOCAL"),
                endpoint_slice("loc-1", "loc", [{"addresses": [cls.star.v4["b1"]], "nodeName": "elsewhere"}]),
            ]))
        cp = cls.cli("apply", "-f", manifest)
        if cp.returncode != 0:
            raise AssertionError("apply failed: %s\n%s" % (cp.stderr, netlab.tail(cls.log_path)))

    @classmethod
    def start_server(cls):
        log = open(cls.log_path, "a")
        cls.server = cls.lab.spawn(
            "proxy", [BIN, "serve", "--listen", cls.url, "--table", TABLE, "--node-name", "proxy",
                      "--state-dir", cls.state_dir, "--metrics-address", ""],
            stdout=log, stderr=log)
        log.close()
        netlab.wait_server(cls.server, cls.sock, lambda: cls.cli("get", "services", timeout=5), cls.log_path)

    @classmethod
    def cli(cls, *args, timeout=30):
        return subprocess.run([BIN] + list(args) + ["--server", cls.url],
                              capture_output=True, text=True, timeout=timeout)

    def nft_list(self, table):
        return self.lab.exec("proxy", ["nft", "list", "table", "inet", table])

    def diag(self):
        return "\n--- nft list ruleset ---\n%s--- server log ---\n%s" % (
            self.lab.exec("proxy", ["nft", "list", "ruleset"]).stdout, netlab.tail(self.log_path, 30))

    def wait_trace_table(self, present, proc=None, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if (self.nft_list(TRACE_TABLE).returncode == 0) == present:
                return
            if present and proc is not None and proc.poll() is not None:
                self.fail("nftproxy trace ended early (%s): %s%s"
                          % (proc.returncode, proc.stderr.read(), self.diag()))
            time.sleep(0.05)
        self.fail("trace table %s %s after %ss%s"
                  % (TRACE_TABLE, "missing" if present else "still there", timeout, self.diag()))

    def start_trace(self, to, duration="4s", count=None, port=80):
        argv = [BIN, "trace", "--from", self.star.v4["client"], "--to", to, "--proto", "tcp",
                "--port", str(port), "--duration", duration, "--server", self.url]
        if count:
            argv += ["--count", str(count)]
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        def stop():
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
            p.stdout.close()
            p.stderr.close()
        self.addCleanup(stop)
        self.wait_trace_table(True, p)
        return p

    def trace_flow(self, vip, duration="3s", port=80):
        """Traces one connection from the client to vip:port; returns (lines, traffic result)."""
        p = self.start_trace(vip, duration, port=port)
        res = netlab.traffic(self.lab, "client", "tcp", vip, port, 1, timeout=1.0, deadline=5.0)
        out, err = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, "trace failed: %s%s" % (err, self.diag()))
        # However the trace ended, its table is gone, and ours was not repaired.
        self.assertNotEqual(self.nft_list(TRACE_TABLE).returncode, 0, "trace table left behind" + self.diag())
        self.assertEqual(self.nft_list(TABLE).returncode, 0)
        lines = [l for l in out.splitlines() if l.strip()]
        if os.environ.get("NPX_SHOW_TRACE"):
            sys.stderr.write("\n" + "\n".join(lines) + "\n")
        return lines, res

    def assert_no_drift(self):
        st = self.cli("status")
        self.assertIn("Drift repairs:", st.stdout)
        self.assertRegex(st.stdout, r"Drift repairs:\s+0\n", "the trace was taken for drift" + self.diag())

    def test_working_flow_names_service_and_endpoint(self):
        lines, res = self.trace_flow("198.19.0.10")
        self.assertEqual(res["ok"], 1, "the connection failed: %s%s" % (res, self.diag()))
        pre = [l for l in lines if "  prerouting: " in l]
        self.assertEqual(len(pre), 1, "want one prerouting line:\n%s%s" % ("\n".join(lines), self.diag()))
        line = pre[0]
        self.assertTrue(line.startswith("tcp %s:" % self.star.v4["client"]), line)
        self.assertIn("-> 198.19.0.10:80  prerouting: services map -> svc4/default/web/tcp/80 (service default/web)",
                      line)
        self.assertRegex(line, r"ticket 0x8[0-9a-f]{7} -> pick4-0 -> dnat 198\.18\.1[01]\.2:8080")
        self.assertTrue(line.endswith("-> accepted"), line)
        answered = list(res["answers"])[0]
        ip = self.star.v4[answered]
        self.assertIn("dnat %s:8080 (endpoint web-1/%s)" % (ip, ip), line,
                      "the trace names another endpoint than the one that answered")
        post = [l for l in lines if "  postrouting: " in l]
        self.assertEqual(len(post), 1, "\n".join(lines))
        self.assertTrue(post[0].endswith("-> accepted"), post[0])
        self.assert_no_drift()

    def test_node_port_is_masqueraded(self):
        node = self.star.v4["proxy"]
        lines, res = self.trace_flow(node, port=30080)
        self.assertEqual(res["ok"], 1, "the connection failed: %s%s" % (res, self.diag()))
        pre = [l for l in lines if "  prerouting: " in l]
        self.assertEqual(len(pre), 1, "\n".join(lines) + self.diag())
        self.assertIn("-> %s:30080  prerouting: frontend map -> ext4/default/np/tcp/80 (service default/np) -> "
                      "svc4/default/np/tcp/80 -> ticket 0x" % node, pre[0])
        self.assertIn("dnat %s:8080 (endpoint np-1/%s) -> accepted" % (self.star.v4["b2"], self.star.v4["b2"]),
                      pre[0])
        post = [l for l in lines if "  postrouting: " in l]
        self.assertEqual(len(post), 1, "\n".join(lines))
        self.assertTrue(post[0].endswith("postrouting: masquerade -> accepted"), post[0])
        self.assert_no_drift()

    def test_no_endpoints_is_rejected(self):
        lines, res = self.trace_flow("198.19.0.11")
        self.assertEqual(res["ok"], 0, res)
        pre = [l for l in lines if "  prerouting: " in l]
        self.assertEqual(len(pre), 1, "\n".join(lines) + self.diag())
        self.assertIn("svc4/default/empty/tcp/80 (service default/empty)", pre[0])
        self.assertRegex(pre[0], r"no endpoints -> rejected \(chain pick4-0 rule \d+\)$")
        self.assert_no_drift()

    def test_local_policy_without_local_endpoint_is_dropped(self):
        lines, res = self.trace_flow("198.19.0.12")
        self.assertEqual(res["ok"], 0, res)
        # A dropped SYN is sent again: one line per packet, each dropped.
        pre = [l for l in lines if "  prerouting: " in l]
        self.assertGreaterEqual(len(pre), 1, "\n".join(lines) + self.diag())
        for l in pre:
            self.assertIn("local4/default/loc/tcp/80 (service default/loc)", l)
            self.assertRegex(l, r"no local endpoint \(traffic policy Local\) -> dropped \(chain pick4-0 rule \d+\)$")
        self.assert_no_drift()

    def test_trace_table_removed_when_cli_is_killed(self):
        p = self.start_trace("198.19.0.10", duration="50s")
        # One trace at a time.
        cp = self.cli("trace", "--from", self.star.v4["client"], "--to", "198.19.0.11", "--port", "80")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("a trace is already running", cp.stderr)
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=10)
        t0 = time.monotonic()
        self.wait_trace_table(False, timeout=5)
        self.assertLess(time.monotonic() - t0, 5)
        # And the next trace may start at once.
        lines, res = self.trace_flow("198.19.0.10", duration="2s")
        self.assertEqual(res["ok"], 1)

    def test_zz_server_stopped_mid_trace(self):
        """Last (it stops the server): a server stopped during a trace removes the
        trace table on the way out; one killed leaves it to the next start."""
        p = self.start_trace("198.19.0.10", duration="50s")
        rc = self.lab.stop(self.server, signal.SIGTERM, timeout=15)
        self.assertEqual(rc, 0, netlab.tail(self.log_path))
        self.assertNotEqual(self.nft_list(TRACE_TABLE).returncode, 0, "left behind on SIGTERM" + self.diag())
        p.wait(timeout=10)
        # Killed mid-trace: the next start removes the table.
        self.start_server()
        p = self.start_trace("198.19.0.10", duration="50s")
        self.lab.stop(self.server, signal.SIGKILL, timeout=15)
        p.wait(timeout=10)
        self.assertEqual(self.nft_list(TRACE_TABLE).returncode, 0, "the kill removed the table?")
        self.start_server()
        self.assertNotEqual(self.nft_list(TRACE_TABLE).returncode, 0, "left behind after a restart" + self.diag())

    def test_bad_input_names_the_field(self):
        for args, field in ((["--from", "client", "--to", "198.19.0.10", "--port", "80"], "from: "),
                            (["--from", "198.18.1.2", "--to", "198.19.0.10", "--port", "70000"], "port: "),
                            (["--from", "198.18.1.2", "--to", "198.19.0.10", "--port", "80", "--duration", "2m"],
                             "duration: ")):
            cp = self.cli("trace", *args)
            self.assertEqual(cp.returncode, 2, "%s: %s %s" % (args, cp.stdout, cp.stderr))
            self.assertTrue(cp.stderr.startswith("error: " + field), cp.stderr)
        self.assertNotEqual(self.nft_list(TRACE_TABLE).returncode, 0)


if __name__ == "__main__":
    unittest.main()
