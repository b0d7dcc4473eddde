#!/usr/bin/python3
"""Health-check node ports on the two-node lab (see multinode.py): a
LoadBalancer service with externalTrafficPolicy LOCAL and a
healthCheckNodePort is answered on that port of both nodes, 200 with
localEndpoints 1 by the node that has the endpoint and 503 by the other;
when the endpoint moves (its nodeName changes) the answers swap. Queried from
the `ext` namespace on the LAN with python's http.client, as a cloud load
balancer would.

Run from the repository root, as root:
    /usr/bin/python3 -m unittest -v tests/integration/test_health_ports.py
Environment: NFTPROXY_BIN (default <repo>/build/nftproxy), CI=true turns
"not root" / "no binary" skips into failures, NPX_KEEP_TMP=1 keeps the temp
dirs.
"""

import json
import os
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import multinode as mn  # noqa: E402
import netlab  # noqa: E402
from multinode import endpoint, endpoint_slice, service, sport  # noqa: E402

BIN = os.environ.get("NFTPROXY_BIN") or mn.DEFAULT_BIN
HC_PORT = 32100

# Runs in the client namespace: GET / on each address given; prints one JSON
# line per address: {"status": N, "body": {...}} or {"error": "..."}.
CLIENT = r"""
import http.client, json, sys
port = int(sys.argv[1])
for host in sys.argv[2:]:
    try:
        c = http.client.HTTPConnection(host, port, timeout=2)
        c.request("GET", "/")
        r = c.getresponse()
        body = r.read().decode()
        try:
            body = json.loads(body)
        except ValueError:
            pass
        print(json.dumps({"status": r.status, "body": body}))
    except OSError as e:
        print(json.dumps({"error": str(e)}))
"""


def setUpModule():
    netlab.require_root_and_binary(BIN)


class HealthCheckNodePortTest(unittest.TestCase):
    maxDiff = None
    NODE_FLAGS = {}

    @classmethod
    def setUpClass(cls):
        cls.tmp = netlab.class_tmpdir(cls, "npx-hc-")
        cls.c = mn.Cluster(cls.tmp, binary=BIN, node_flags=cls.NODE_FLAGS)
        cls.addClassCleanup(cls.c.cleanup)

    def setUp(self):
        self.addCleanup(self.c.delete_applied)

    def ask(self, client="ext", hosts=None):
        """{node: answer} for GET / on each node's LAN address (or `hosts`)."""
        hosts = hosts or (self.c.lan["node1"], self.c.lan["node2"])
        cp = self.c.lab.exec(client, [sys.executable, "-c", CLIENT, str(HC_PORT)] + list(hosts), timeout=30)
        lines = cp.stdout.splitlines()
        self.assertEqual(len(lines), 2, "client: %s %s" % (cp.stdout, cp.stderr))
        return {"node1": json.loads(lines[0]), "node2": json.loads(lines[1])}

    def wait_for(self, want, what, timeout=5.0):
        """Polls until every node's (status, localEndpoints) is as in `want`."""
        deadline = time.monotonic() + timeout
        got = None
        while True:
            got = self.ask()
            seen = {n: (a.get("status"), a.get("body", {}).get("localEndpoints")
                        if isinstance(a.get("body"), dict) else None) for n, a in got.items()}
            if seen == want:
                return got
            if time.monotonic() >= deadline:
                self.fail("%s: want %s, got %s\n%s" % (what, want, got, self.c.diag()))
            time.sleep(0.1)

    def docs(self, node):
        pod = mn.PODS[node][0]
        return [
            service("lb", [sport("http", "TCP", 80, target=8080, node_port=30100)], ["198.19.0.30"],
                    type="LOAD_BALANCER", externalTrafficPolicy="LOCAL", healthCheckNodePort=HC_PORT),
            endpoint_slice("lb-1", "lb", [("http", "TCP", 8080)],
                           [endpoint([self.c.pod_ip[pod]], node=node)]),
        ]

    def test_answers_follow_the_local_endpoint(self):
        self.c.apply_ok(self.docs("node1"), tag="hc1")
        got = self.wait_for({"node1": (200, 1), "node2": (503, 0)}, "endpoint on node1")
        self.assertEqual(got["node1"]["body"], {"service": {"namespace": "default", "name": "lb"},
                                                "localEndpoints": 1, "serviceProxyHealthy": True})
        self.assertEqual(got["node2"]["body"]["service"], {"namespace": "default", "name": "lb"})
        # The endpoint moves to node2: the answers swap.
        self.c.apply_ok(self.docs("node2"), tag="hc2")
        self.wait_for({"node1": (503, 0), "node2": (200, 1)}, "endpoint moved to node2")
        # The service goes: nothing listens any more.
        self.c.delete_applied()
        deadline = time.monotonic() + 5
        while True:
            got = self.ask()
            if all("error" in a for a in got.values()):
                break
            if time.monotonic() >= deadline:
                self.fail("health check node port still answered after the delete: %s" % got)
            time.sleep(0.1)

    def test_served_again_after_a_restart(self):
        # The saved state is restored at start-up: the port is opened with it.
        self.c.apply_ok(self.docs("node1"), tag="hc7")
        self.wait_for({"node1": (200, 1), "node2": (503, 0)}, "endpoint on node1")
        self.c.stop_server("node1")
        self.c.start_server("node1")
        self.wait_for({"node1": (200, 1), "node2": (503, 0)}, "after node1's restart")

    def test_clashing_port_is_refused_and_changes_nothing(self):
        self.c.apply_ok(self.docs("node1"), tag="hc3")
        self.wait_for({"node1": (200, 1), "node2": (503, 0)}, "endpoint on node1")
        # Another service whose node port is the health check node port.
        other = service("np", [sport("http", "TCP", 80, target=8080, node_port=HC_PORT)], ["198.19.0.31"],
                        type="NODE_PORT")
        res, _ = self.c.apply([other], tag="hc4")
        for node, cp in res.items():
            self.assertNotEqual(cp.returncode, 0, node)
            self.assertIn("service default/np", cp.stderr)
            self.assertIn("spec.ports[0].nodePort", cp.stderr)
        self.wait_for({"node1": (200, 1), "node2": (503, 0)}, "after the refused write")

    def test_port_in_use_fails_the_write(self):
        # Something else holds the port on node2: the write fails there naming
        # the service and field, and node2 keeps no trace of it.
        holder = self.c.lab.spawn("node2", [sys.executable, "-u", "-c",
                                            "import socket,time\n"
                                            "s=socket.socket(socket.AF_INET)\n"
                                            # earlier tests' answers leave TIME_WAIT sockets on the port
                                            "s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
                                            "s.bind(('0.0.0.0', %d)); s.listen(); print('ready')\n"
                                            "time.sleep(60)\n" % HC_PORT],
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.addCleanup(self.c.lab.stop, holder)
        line = holder.stdout.readline().strip()
        if line != "ready":
            holder.wait(10)
            self.fail("the port holder did not start: %s\n%s" % (line, holder.stdout.read()))
        res, _ = self.c.apply(self.docs("node1"), tag="hc5")
        self.assertEqual(res["node1"].returncode, 0, res["node1"].stderr)
        self.assertNotEqual(res["node2"].returncode, 0, "%s\n%s" % (res["node2"].stdout, mn.tail(self.c.server_log["node2"])))
        self.assertIn("service default/lb", res["node2"].stderr)
        self.assertIn("spec.healthCheckNodePort", res["node2"].stderr)
        self.assertIn("in use", res["node2"].stderr)
        cp = self.c.cli("node2", "get", "services", "-o", "name")
        self.assertNotIn("lb", cp.stdout)


class NodePortAddressesTest(HealthCheckNodePortTest):
    """With --nodeport-addresses the port is served on the node's addresses
    inside it only (here the LAN one, not the pod-side gateway)."""

    NODE_FLAGS = {n: ["--nodeport-addresses", mn.LAN_CIDR] for n in mn.NODES}

    def test_served_on_the_node_addresses_inside_only(self):
        self.c.apply_ok(self.docs("node1"), tag="hc6")
        self.wait_for({"node1": (200, 1), "node2": (503, 0)}, "endpoint on node1")
        pod = mn.PODS["node1"][1]
        got = self.ask(client=pod, hosts=(self.c.gw["node1"], self.c.lan["node1"]))
        self.assertIn("error", got["node1"], "the pod-side address answered: %s" % got)
        self.assertEqual(got["node2"].get("status"), 200, got)  # the LAN address, from the pod


if __name__ == "__main__":
    unittest.main()
