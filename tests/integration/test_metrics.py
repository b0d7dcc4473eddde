#!/usr/bin/python3
"""Metrics and health endpoints of `nftproxy serve --metrics-address`,
scraped by a real Prometheus.

Topology, all in private network namespaces (netlab.Star):

    client --- proxy --- b1 / b2

The proxy namespace runs `nftproxy serve` (metrics on 127.0.0.1:10249 inside
that namespace) and Prometheus (scrape interval 1s, its web API on a free
loopback port of the same namespace). The test applies services, sends
traffic through them, and reads back through Prometheus' query API: the
write duration histogram counts exactly the writes the test made, the
kernel's per-service connection counters exactly the connections it made,
`up` is 1.
/metrics passes `promtool check metrics`; /readyz is 503 before the first
commit and 200 after; /healthz and /livez are 200 with kube-proxy's JSON body,
and 503 while a write hangs (on a state dir frozen with fsfreeze) for longer
than --health-timeout.

Run from the repository root, as root:
    /usr/bin/python3 -m unittest -v tests/integration/test_metrics.py
Environment: NFTPROXY_BIN (default <repo>/build/nftproxy); CI=true turns
"not root" / "no binary" / "no prometheus" skips into failures; NPX_KEEP_TMP=1
keeps the temp dir (server and Prometheus logs, manifests).
"""

import json
import os
import subprocess
import sys
import time
import unittest
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import netlab  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("NFTPROXY_BIN") or os.path.join(REPO, "build", "nftproxy")
TABLE = "npxmetrics"
PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"
METRICS = "127.0.0.1:10249"

FREE_PORT = r"""
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
"""


def setUpModule():
    netlab.require_root_and_binary(BIN)
    missing = [p for p in (PROMETHEUS, PROMTOOL) if not os.access(p, os.X_OK)]
    if missing:
        why = "%s missing (Debian package prometheus; scripts/install-deps.sh)" % ", ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            raise AssertionError(why)
        raise unittest.SkipTest(why)


def _tail(path, n=40):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "(no log: %s)" % e


def service(name, vip, port, target):
    return {"kind": "Service", "metadata": {"name": name},
            "spec": {"clusterIps": [vip], "ports": [{"name": "http", "protocol": "TCP", "port": port,
                                                      "targetPort": target}]}}


def endpoint_slice(name, service_name, target, addresses, ready=True):
    return {"kind": "EndpointSlice", "metadata": {"name": name}, "serviceName": service_name,
            "ports": [{"name": "http", "protocol": "TCP", "port": target}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": ready}} for a in addresses]}


class MetricsTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.t0 = time.monotonic()
        cls.tmp = netlab.class_tmpdir(cls, "npx-metrics-")
        cls.lab = netlab.Lab()
        cls.addClassCleanup(cls.lab.cleanup)
        cls.star = netlab.Star(cls.lab, ("b1", "b2"))
        cls.echo_log = open(os.path.join(cls.tmp, "echo.log"), "a")
        cls.addClassCleanup(cls.echo_log.close)
        for b in ("b1", "b2"):
            netlab.start_echo(cls.lab, b, b, tcp_ports=(8080,), udp_ports=(), log=cls.echo_log)
        cls.sock = os.path.join(cls.tmp, "nftproxy.sock")
        cls.server_log = os.path.join(cls.tmp, "server.log")
        with open(cls.server_log, "a") as log:
            cls.server = cls.lab.spawn("proxy", [BIN, "serve", "--listen", "unix://" + cls.sock, "--table", TABLE,
                                                 "--state-dir", "", "--metrics-address", METRICS],
                                       stdout=log, stderr=log)
        cls.wait_for(lambda: os.path.exists(cls.sock) and cls.http("/metrics")["status"] == 200,
                     "nftproxy serve answering /metrics", proc=cls.server, log=cls.server_log)
        # Before any write: nothing committed in this run.
        cls.readyz_before = cls.http("/readyz")
        # Prometheus in the same namespace, scraping every second.
        port = int(cls.lab.exec("proxy", [sys.executable, "-c", FREE_PORT], check=True).stdout)
        cls.prom_url = "http://127.0.0.1:%d" % port
        config = os.path.join(cls.tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
                    "scrape_configs:\n  - job_name: nftproxy\n    static_configs:\n"
                    "      - targets: ['%s']\n" % METRICS)
        cls.prom_log = os.path.join(cls.tmp, "prometheus.log")
        with open(cls.prom_log, "a") as log:
            cls.prom = cls.lab.spawn("proxy", [PROMETHEUS, "--config.file=" + config,
                                               "--storage.tsdb.path=" + os.path.join(cls.tmp, "tsdb"),
                                               "--web.listen-address=127.0.0.1:%d" % port],
                                     stdout=log, stderr=log)
        cls.wait_for(lambda: cls.http(cls.prom_url + "/-/ready")["status"] == 200, "Prometheus ready",
                     proc=cls.prom, log=cls.prom_log, timeout=60)

    @classmethod
    def wait_for(cls, cond, what, proc=None, log=None, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise AssertionError("%s: exited with %s; log:\n%s" % (what, proc.returncode, _tail(log)))
            try:
                if cond():
                    return
            except (netlab.LabError, ValueError, KeyError, IndexError):
                pass
            time.sleep(0.1)
        raise AssertionError("timed out waiting for %s; log:\n%s" % (what, _tail(log) if log else ""))

    @classmethod
    def http(cls, path_or_url, method="GET"):
        url = path_or_url if path_or_url.startswith("http") else "http://%s%s" % (METRICS, path_or_url)
        return cls.lab.http("proxy", url, method)

    @classmethod
    def query(cls, promql):
        """The single value of an instant query (None: no series)."""
        r = cls.http(cls.prom_url + "/api/v1/query?query=" + urllib.parse.quote(promql))
        body = json.loads(r["body"])
        if body.get("status") != "success":
            raise AssertionError("query %s: %s" % (promql, r["body"]))
        result = body["data"]["result"]
        if not result:
            return None
        if len(result) != 1:
            raise AssertionError("query %s: want one series, got %s" % (promql, result))
        return float(result[0]["value"][1])

    def cli(self, *args):
        cp = subprocess.run([BIN] + list(args) + ["--server", "unix://" + self.sock],
                            capture_output=True, text=True, timeout=30)
        self.assertEqual(cp.returncode, 0, "nftproxy %s: %s\nserver log:\n%s"
                         % (" ".join(args), cp.stderr, _tail(self.server_log)))
        return cp

    def apply(self, docs):
        path = os.path.join(self.tmp, "m%d.yaml" % time.monotonic_ns())
        with open(path, "w") as f:
            f.write(netlab.to_yaml(docs))
        self.cli("apply", "-f", path)

    def test_metrics_through_prometheus(self):
        b1, b2 = self.star.v4["b1"], self.star.v4["b2"]
        # Before the first write there is no commit of this run.
        self.assertEqual(self.readyz_before["status"], 503, self.readyz_before)
        # Five writes: four Apply and one Delete.
        self.apply([service("web", "198.19.7.10", 80, 8080), endpoint_slice("web-1", "web", 8080, [b1])])
        self.apply([service("api", "198.19.7.11", 81, 8080), endpoint_slice("api-1", "api", 8080, [b1, b2])])
        self.apply([endpoint_slice("web-1", "web", 8080, [b1, b2])])
        self.apply([service("gone", "198.19.7.12", 82, 8080)])
        self.cli("delete", "service", "gone")
        writes = 5
        res = netlab.traffic(self.lab, "client", "tcp", "198.19.7.10", 80, 20)
        self.assertEqual(res["ok"], 20, res)
        res = netlab.traffic(self.lab, "client", "tcp", "198.19.7.11", 81, 10)
        self.assertEqual(res["ok"], 10, res)

        # The endpoints, as the server sees them.
        ready = self.http("/readyz")
        self.assertEqual(ready["status"], 200, ready)
        for path in ("/healthz", "/livez"):
            h = self.http(path)
            self.assertEqual(h["status"], 200, h)
            self.assertEqual(h["headers"].get("Content-Type"), "application/json", h)
            body = json.loads(h["body"])
            self.assertEqual(sorted(body), ["currentTime", "lastUpdated"], body)
            self.assertRegex(body["currentTime"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
            self.assertRegex(body["lastUpdated"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
        self.assertEqual(self.http("/metrics", method="POST")["status"], 405)
        self.assertEqual(self.http("/nothing")["status"], 404)

        m = self.http("/metrics")
        self.assertEqual(m["status"], 200)
        self.assertEqual(m["headers"].get("Content-Type"), "text/plain; version=0.0.4; charset=utf-8")
        check = subprocess.run([PROMTOOL, "check", "metrics"], input=m["body"], capture_output=True, text=True,
                               timeout=30)
        self.assertEqual(check.returncode, 0, "promtool check metrics:\n%s%s\n---\n%s"
                         % (check.stdout, check.stderr, m["body"]))
        text = m["body"]
        for line in ('nftproxy_writes_total{method="Apply",code="OK"} 4',
                     'nftproxy_writes_total{method="Delete",code="OK"} 1',
                     'nftproxy_write_duration_seconds_count{method="Apply"} 4',
                     'nftproxy_kernel_commits_total{kind="full"} 1',   # a fresh table: no previous run's to adopt
                     'nftproxy_kernel_commits_total{kind="delta"} 4',
                     'nftproxy_network_programming_duration_seconds_count 5',
                     'nftproxy_resources{kind="service"} 2',
                     'nftproxy_resources{kind="endpointslice"} 2',
                     'nftproxy_endpoints{condition="ready"} 4',
                     'nftproxy_write_phase_duration_seconds_count{phase="kernel"} 5',
                     'nftproxy_build_info{version="'):
            self.assertIn(line, text)

        # Through Prometheus: wait until a scrape after the last write is in.
        def scraped():
            return self.query("sum(nftproxy_write_duration_seconds_count)") == writes
        self.wait_for(scraped, "Prometheus to see %d writes" % writes, proc=self.prom, log=self.prom_log)
        self.assertEqual(self.query('up{job="nftproxy"}'), 1)
        # The kernel's per-service-port connection counters, as Prometheus has
        # them: exactly the connections the test made through each VIP.
        conns = 'nftproxy_service_connections_total{namespace="default",service="%s",port="%d",protocol="tcp"}'
        self.wait_for(lambda: self.query(conns % ("web", 80)) == 20, "Prometheus to see web's 20 connections",
                      proc=self.prom, log=self.prom_log)
        self.assertEqual(self.query(conns % ("api", 81)), 10)
        self.assertEqual(self.query("sum(nftproxy_writes_total)"), writes)
        self.assertEqual(self.query('sum(nftproxy_write_phase_duration_seconds_count{phase="examine"})'), writes)
        self.assertEqual(self.query('nftproxy_resources{kind="service"}'), 2)
        self.assertEqual(self.query("sum(nftproxy_kernel_commits_total)"), writes)
        last = self.query("nftproxy_last_successful_commit_timestamp_seconds")
        self.assertLess(abs(last - time.time()), 120)
        sys.stderr.write("\n[test_metrics: %.1fs since setUpClass began]\n" % (time.monotonic() - self.t0))

    def test_flags(self):
        """Bad --metrics-address and --health-timeout values are refused before
        anything is touched (exit 2); a wildcard address is served (from the
        client namespace too) with a warning that nothing is authenticated."""
        for flag, value in (("--metrics-address", "nowhere"), ("--metrics-address", "127.0.0.1:0"),
                            ("--metrics-address", "127.0.0.1:70000"), ("--metrics-address", "unix:///x.sock"),
                            ("--health-timeout", "0s"), ("--health-timeout", "soon")):
            cp = self.lab.exec("proxy", [BIN, "serve", "--listen", "unix://" + os.path.join(self.tmp, "bad.sock"),
                                         "--table", "npxmetricsbad", "--state-dir", "", flag, value], timeout=20)
            self.assertEqual(cp.returncode, 2, (flag, value, cp.stderr))
            self.assertIn(flag + " " + value, cp.stderr)
        sock = os.path.join(self.tmp, "wild.sock")
        log_path = os.path.join(self.tmp, "wild.log")
        with open(log_path, "a") as log:
            proc = self.lab.spawn("proxy", [BIN, "serve", "--listen", "unix://" + sock, "--table", "npxmetricswild",
                                            "--state-dir", "", "--metrics-address", "0.0.0.0:10250"],
                                  stdout=log, stderr=log)
        try:
            url = "http://%s:10250/readyz" % self.star.v4["proxy"]

            def answers():
                return self.lab.http("client", url)["status"] == 503  # nothing committed
            self.wait_for(answers, "the wildcard metrics address from the client", proc=proc, log=log_path)
            with open(log_path) as f:
                self.assertIn("served unauthenticated on a non-loopback address", f.read())
        finally:
            self.lab.stop(proc)

    def test_healthz_is_503_while_a_write_waits_longer_than_the_health_timeout(self):
        """kube-proxy's /healthz semantics with a write that really hangs: the
        state dir is an ext4 image frozen with fsfreeze, so the write's journal
        append blocks after its kernel commit. Once it has waited longer than
        --health-timeout (1s), /healthz and /livez answer 503 (with the JSON
        body) while /readyz stays 200; thawed, the write completes and both are
        200 again."""
        image = os.path.join(self.tmp, "state.img")
        mnt = os.path.join(self.tmp, "frozen-state")
        os.makedirs(mnt)
        with open(image, "wb") as f:
            f.truncate(64 << 20)
        netlab.run(["mkfs.ext4", "-q", image])
        netlab.run(["mount", "-o", "loop", image, mnt])
        self.addCleanup(subprocess.run, ["umount", mnt], capture_output=True)
        sock = os.path.join(self.tmp, "frozen.sock")
        address = "127.0.0.1:10252"
        log_path = os.path.join(self.tmp, "frozen.log")
        with open(log_path, "a") as log:
            proc = self.lab.spawn("proxy", [BIN, "serve", "--listen", "unix://" + sock, "--table", "npxmetricsfrozen",
                                            "--state-dir", os.path.join(mnt, "state"), "--metrics-address", address,
                                            "--health-timeout", "1s"],
                                  stdout=log, stderr=log)
        self.addCleanup(self.lab.stop, proc)
        # Cleanups run last first: thawed before the server is stopped.
        self.addCleanup(subprocess.run, ["fsfreeze", "-u", mnt], capture_output=True)

        def get(path):
            return self.http("http://%s%s" % (address, path))

        def cli(*args, timeout=30):
            return subprocess.run([BIN] + list(args) + ["--server", "unix://" + sock], capture_output=True,
                                  text=True, timeout=timeout)
        self.wait_for(lambda: os.path.exists(sock) and get("/metrics")["status"] == 200, "the server",
                      proc=proc, log=log_path)
        manifests = []
        for name, vip in (("first", "198.19.7.20"), ("frozen", "198.19.7.21")):
            manifests.append(os.path.join(self.tmp, name + ".yaml"))
            with open(manifests[-1], "w") as f:
                f.write(netlab.to_yaml([service(name, vip, 80, 8080)]))
        first = cli("apply", "-f", manifests[0])
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertEqual(get("/readyz")["status"], 200)
        self.assertEqual(get("/healthz")["status"], 200)
        manifest = manifests[1]

        netlab.run(["fsfreeze", "-f", mnt])
        writer = subprocess.Popen([BIN, "apply", "-f", manifest, "--server", "unix://" + sock],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.addCleanup(lambda: writer.poll() is None and writer.kill())

        def unhealthy():
            return get("/healthz")["status"] == 503
        self.wait_for(unhealthy, "/healthz to turn 503 while the write waits", proc=proc, log=log_path)
        self.assertIsNone(writer.poll(), "the write finished on a frozen state dir")
        for path in ("/healthz", "/livez"):
            h = get(path)
            self.assertEqual(h["status"], 503, h)
            body = json.loads(h["body"])
            self.assertEqual(sorted(body), ["currentTime", "lastUpdated"], body)
        self.assertEqual(get("/readyz")["status"], 200)

        netlab.run(["fsfreeze", "-u", mnt])
        out, err = writer.communicate(timeout=30)
        self.assertEqual(writer.returncode, 0, err)
        self.wait_for(lambda: get("/healthz")["status"] == 200, "/healthz back to 200 after the write",
                      proc=proc, log=log_path)
        self.assertEqual(get("/livez")["status"], 200)
        got = cli("get", "service", "frozen")
        self.assertEqual(got.returncode, 0, got.stderr)


if __name__ == "__main__":
    unittest.main()
