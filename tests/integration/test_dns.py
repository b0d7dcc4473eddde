#!/usr/bin/python3
"""The built-in DNS responder (serve --dns-address) with real resolvers.

Topology (netlab.Star): client --- proxy --- b1, b2, up

The proxy runs `nftproxy serve --dns-address 198.18.1.1:53 --dns-upstream
UP:53`; b1 and b2 run python's HTTP server on port 80 (answering "b1" /
"b2"); `up` runs dnsmasq as the upstream resolver (db.example.org -> b1,
www.example.org -> 192.0.2.80). The client asks with dig, and with the
system resolver through a resolv.conf of its own (/etc/netns/NAME/
resolv.conf, which `ip netns exec` bind-mounts): getent and curl.

Run from the repository root, as root:
    /usr/bin/python3 -m unittest -v tests/integration/test_dns.py
Environment: NFTPROXY_BIN (default <repo>/build/nftproxy), CI=true turns
"not root" / "no binary" / "no dig" skips into failures, NPX_KEEP_TMP=1
keeps the temp dir.
"""

import os
import shutil
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
TABLE = os.environ.get("NFTPROXY_TEST_TABLE", "npxtest")
DNS = "198.18.1.1"  # the proxy's address on the client's link
DOMAIN = "cluster.local"
TOOLS = ("dig", "dnsmasq", "curl", "getent")


def setUpModule():
    netlab.require_root_and_binary(BIN)
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        why = "missing %s (scripts/install-deps.sh installs them)" % ", ".join(missing)
        if os.environ.get("CI", "").lower() == "true":
            raise AssertionError(why)
        raise unittest.SkipTest(why)


def service(name, ports=(), cluster_ips=(), **spec):
    s = {"ports": list(ports)}
    if cluster_ips:
        s["clusterIps"] = list(cluster_ips)
    s.update(spec)
    return {"kind": "Service", "metadata": {"namespace": "default", "name": name}, "spec": s}


def sport(name, protocol, port, target=None):
    p = {"name": name, "protocol": protocol, "port": port}
    if target is not None:
        p["targetPort"] = target
    return p


def endpoint_slice(name, service_name, ports, endpoints):
    return {"kind": "EndpointSlice", "metadata": {"namespace": "default", "name": name},
            "serviceName": service_name,
            "ports": [{"name": n, "protocol": pr, "port": p} for n, pr, p in ports],
            "endpoints": list(endpoints)}


class DnsTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = netlab.class_tmpdir(cls, "npx-dns-")
        cls.lab = netlab.Lab()
        cls.addClassCleanup(cls.lab.cleanup)
        cls.star = netlab.Star(cls.lab, ("b1", "b2", "up"))
        # HTTP backends: GET / answers the backend's name.
        for b in ("b1", "b2"):
            root = os.path.join(cls.tmp, "www-" + b)
            os.mkdir(root)
            with open(os.path.join(root, "index.html"), "w") as f:
                f.write(b + "\n")
            cls.lab.spawn(b, [sys.executable, "-m", "http.server", "80", "--bind", cls.star.v4[b],
                              "--directory", root])
            cls.lab.wait_listening(b, "tcp", 80)
        # The upstream resolver.
        dnsmasq_log = open(os.path.join(cls.tmp, "dnsmasq.log"), "w")
        cls.addClassCleanup(dnsmasq_log.close)
        cls.lab.spawn("up", ["dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
                             "--no-hosts", "--user=root", "--bind-interfaces",
                             "--listen-address=" + cls.star.v4["up"], "--port=53",
                             "--pid-file=" + os.path.join(cls.tmp, "dnsmasq.pid"),
                             "--host-record=db.example.org," + cls.star.v4["b1"],
                             "--host-record=www.example.org,192.0.2.80"],
                      stderr=dnsmasq_log)
        cls.lab.wait_listening("up", "udp", 53)
        # The client's resolver: the cluster's search path, as a pod's.
        cls.netns_etc = "/etc/netns/" + cls.lab.ns("client")
        os.makedirs(cls.netns_etc)
        cls.addClassCleanup(shutil.rmtree, cls.netns_etc, True)
        with open(os.path.join(cls.netns_etc, "resolv.conf"), "w") as f:
            f.write("nameserver %s\nsearch default.svc.%s svc.%s %s\noptions ndots:5 timeout:2 attempts:1\n"
                    % (DNS, DOMAIN, DOMAIN, DOMAIN))
        cls.sock = os.path.join(cls.tmp, "nftproxy.sock")
        cls.log_path = os.path.join(cls.tmp, "server.log")
        log = open(cls.log_path, "a")
        cls.server = cls.lab.spawn("proxy", [
            BIN, "serve", "--listen", "unix://" + cls.sock, "--table", TABLE, "--state-dir",
            os.path.join(cls.tmp, "state"), "--dns-address", DNS + ":53",
            "--dns-upstream", cls.star.v4["up"] + ":53", "--metrics-address", "127.0.0.1:10249"],
            stdout=log, stderr=log)
        log.close()
        netlab.wait_server(cls.server, cls.sock, lambda: cls.cli("get", "services", timeout=5), cls.log_path)
        cls.manifests = 0

    @classmethod
    def cli(cls, *args, timeout=30):
        return subprocess.run([BIN] + list(args) + ["--server", "unix://" + cls.sock],
                              capture_output=True, text=True, timeout=timeout)

    def apply_ok(self, docs):
        type(self).manifests += 1
        path = os.path.join(self.tmp, "m%03d.yaml" % self.manifests)
        with open(path, "w") as f:
            f.write(netlab.to_yaml(docs))
        cp = self.cli("apply", "-f", path)
        self.assertEqual(cp.returncode, 0, "apply: %s\n%s" % (cp.stderr, netlab.tail(self.log_path)))

    def delete(self, name):
        self.cli("delete", "service", name, "-n", "default")

    def dig(self, *args, server=DNS):
        cp = self.lab.exec("client", ["dig", "@" + server, "+time=2", "+tries=1"] + list(args), timeout=30)
        self.assertEqual(cp.returncode, 0, "dig %s: %s %s" % (args, cp.stdout, cp.stderr))
        return cp.stdout

    def short(self, *args, server=DNS):
        return sorted(self.dig("+short", *args, server=server).split("\n")[:-1])

    def status(self, *args):
        out = self.dig(*args)
        for line in out.splitlines():
            if "status:" in line:
                return line.split("status:")[1].split(",")[0].strip()
        self.fail("no status in dig's output:\n" + out)

    def web(self):
        self.apply_ok([
            service("web", [sport("http", "TCP", 80)], ["198.19.5.10", "fd00:198:19::10"]),
            endpoint_slice("web-1", "web", [("http", "TCP", 80)], [{"addresses": [self.star.v4["b1"]]}])])
        self.addCleanup(self.delete, "web")

    def test_records_from_dig(self):
        self.web()
        name = "web.default.svc." + DOMAIN
        self.assertEqual(self.short(name, "A"), ["198.19.5.10"])
        self.assertEqual(self.short("WEB.Default.SVC.Cluster.Local", "A"), ["198.19.5.10"])
        self.assertEqual(self.short(name, "AAAA"), ["fd00:198:19::10"])
        self.assertEqual(self.short("_http._tcp." + name, "SRV"), ["0 100 80 %s." % name])
        self.assertEqual(self.short("-x", "198.19.5.10"), [name + "."])
        self.assertEqual(self.short("+tcp", name, "A"), ["198.19.5.10"])
        self.assertEqual(self.status("nope.default.svc." + DOMAIN, "A"), "NXDOMAIN")
        # Outside the cluster domain: forwarded to the upstream.
        self.assertEqual(self.short("www.example.org", "A"), ["192.0.2.80"])
        # The answers are counted.
        cp = self.lab.exec("proxy", ["curl", "-s", "http://127.0.0.1:10249/metrics"])
        self.assertIn('nftproxy_dns_queries_total{type="A",rcode="NXDOMAIN"}', cp.stdout)
        self.assertIn('nftproxy_dns_queries_total{type="SRV",rcode="NOERROR"}', cp.stdout)

    def test_a_name_is_there_within_the_write(self):
        # No sleep, no retry: the reply to the apply comes after DNS has it.
        for i in range(5):
            name = "fresh%d" % i
            self.apply_ok([service(name, [sport("http", "TCP", 80)], ["198.19.6.%d" % (10 + i)])])
            self.addCleanup(self.delete, name)
            self.assertEqual(self.short("%s.default.svc.%s" % (name, DOMAIN)), ["198.19.6.%d" % (10 + i)])
            self.delete(name)
            self.assertEqual(self.status("%s.default.svc.%s" % (name, DOMAIN)), "NXDOMAIN")

    def test_headless_truncated_over_udp_whole_over_tcp(self):
        eps = [{"addresses": ["10.3.%d.%d" % (i // 200, i % 200 + 1)]} for i in range(60)]
        eps[0]["hostname"] = "first"
        self.apply_ok([service("many", [sport("http", "TCP", 80)]),
                       endpoint_slice("many-1", "many", [("http", "TCP", 80)], eps)])
        self.addCleanup(self.delete, "many")
        name = "many.default.svc." + DOMAIN
        udp = self.dig("+noedns", "+ignore", name, "A")
        self.assertRegex(udp, r"flags:[a-z ]* tc[ ;]")
        self.assertIn("ANSWER: 0", udp)
        self.assertEqual(len(self.short("+tcp", name, "A")), 60)
        # dig without +ignore falls back to TCP itself, as resolvers do.
        self.assertEqual(len(self.short("+noedns", name, "A")), 60)
        self.assertEqual(self.short("first." + name, "A"), ["10.3.0.1"])
        self.assertEqual(len(self.short("_http._tcp." + name, "SRV")), 60)

    def test_system_resolver_reaches_the_backend_through_the_vip(self):
        self.web()
        for url in ("http://web.default.svc.%s/" % DOMAIN, "http://web.default/", "http://web/"):
            cp = self.lab.exec("client", ["curl", "-sS", "--max-time", "5", url])
            self.assertEqual((cp.returncode, cp.stdout.strip()), (0, "b1"), "%s: %s" % (url, cp.stderr))

    def test_external_name_then_cluster_ip(self):
        name = "db.default.svc." + DOMAIN
        self.apply_ok([service("db", type="EXTERNAL_NAME", externalName="db.example.org")])
        self.addCleanup(self.delete, "db")
        self.assertEqual(self.short(name, "CNAME"), ["db.example.org."])
        self.assertEqual(self.short(name, "A"), sorted(["db.example.org.", self.star.v4["b1"]]))
        cp = self.lab.exec("client", ["getent", "hosts", name])
        self.assertEqual(cp.stdout.split()[0], self.star.v4["b1"], cp.stdout)
        cp = self.lab.exec("client", ["curl", "-sS", "--max-time", "5", "http://db/"])
        self.assertEqual(cp.stdout.strip(), "b1", cp.stderr)
        # Now a ClusterIP service with b2 behind it: same name, same client.
        self.apply_ok([service("db", [sport("http", "TCP", 80)], ["198.19.5.20"]),
                       endpoint_slice("db-1", "db", [("http", "TCP", 80)], [{"addresses": [self.star.v4["b2"]]}])])
        cp = self.lab.exec("client", ["getent", "hosts", name])
        self.assertEqual(cp.stdout.split()[0], "198.19.5.20", cp.stdout)
        cp = self.lab.exec("client", ["curl", "-sS", "--max-time", "5", "http://db/"])
        self.assertEqual(cp.stdout.strip(), "b2", cp.stderr)

    def test_the_responder_behind_a_service_vip(self):
        # As kube-dns at 10.96.0.10: a service whose endpoint is the responder.
        self.web()
        self.apply_ok([
            service("kube-dns", [sport("dns", "UDP", 53), sport("dns-tcp", "TCP", 53)], ["198.19.0.10"]),
            endpoint_slice("kube-dns-1", "kube-dns", [("dns", "UDP", 53), ("dns-tcp", "TCP", 53)],
                           [{"addresses": [DNS]}])])
        self.addCleanup(self.delete, "kube-dns")
        self.assertEqual(self.short("web.default.svc." + DOMAIN, server="198.19.0.10"), ["198.19.5.10"])
        self.assertEqual(self.short("+tcp", "web.default.svc." + DOMAIN, server="198.19.0.10"), ["198.19.5.10"])


if __name__ == "__main__":
    unittest.main()
