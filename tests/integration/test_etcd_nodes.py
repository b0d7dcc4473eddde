#!/usr/bin/python3
"""Many nodes, one desired state (issue 17): three `nftproxy serve` sharing
one real etcd (Debian's etcd-server, /usr/bin/etcd).

Topology (network namespaces of one netlab.Lab, bridged on a LAN):

    etcd 198.18.200.10:2379     node1 .1   node2 .2   node3 .3
      ------------------ lan (bridge br0) -------------------

Each node runs `nftproxy serve --etcd-endpoints http://198.18.200.10:2379
--etcd-prefix /npx-test/ --table nftproxy --state-dir TMP/NODE --listen
unix://TMP/NODE.sock` in its own namespace. Asserted:
  - a service applied through node1 appears on node2 and node3 (`get
    services` and `nft list table inet nftproxy`), with the same
    resourceVersion (etcd's revision) everywhere;
  - two writers racing on one resource through node2 and node3 with the
    same resourceVersion: one wins, the other gets ABORTED, every kernel
    agrees;
  - etcd stopped: writes fail UNAVAILABLE naming etcd, every table is
    unchanged, `status` says the shared store cannot be followed;
  - etcd restarted: a write goes through, and every node converges;
  - a node restarted while etcd is down serves its cached state (the state
    dir), refuses writes until it has read etcd, then converges.

Run from the repository root, as root:

    NFTPROXY_BIN=build/nftproxy /usr/bin/python3 -m unittest -v tests/integration/test_etcd_nodes.py
"""

import json
import os
import re
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import etcd_lab  # noqa: E402
import netlab  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("NFTPROXY_BIN", os.path.join(REPO, "build", "nftproxy"))
ETCD_URL = "http://198.18.200.10:2379"   # the one member, etcd1
NODES = ("node1", "node2", "node3")
TABLE = "nftproxy"
PREFIX = "/npx-test/"


def setUpModule():
    netlab.require_root_and_binary(BIN)
    etcd_lab.require_etcd()


def service(name, vip, port=80):
    return {"kind": "Service", "metadata": {"name": name, "namespace": "default"},
            "spec": {"clusterIps": [vip], "ports": [{"name": "http", "protocol": "TCP", "port": port,
                                                    "targetPort": 8080}]}}


def endpoint_slice(name, svc, addresses):
    return {"kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "default"}, "serviceName": svc,
            "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
            "endpoints": [{"addresses": [a]} for a in addresses]}


class EtcdNodesTest(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        cls.tmp = netlab.class_tmpdir(cls, "npx-etcd-nodes-")
        cls.lab = netlab.Lab()
        cls.addClassCleanup(cls.lab.cleanup)
        cls.servers = {}
        lab = cls.lab
        lab.add_netns("lan")
        lab.bridge("lan", "br0")
        for n, node in enumerate(NODES, start=1):
            lab.add_netns(node)
            lab.veth("lan", "p-" + node, node, "eth0")
            lab.enslave("lan", "p-" + node, "br0")
            lab.addr(node, "eth0", "198.18.200.%d/24" % n)
        cls.etcd = etcd_lab.EtcdCluster(lab, cls.tmp, members=1, subnet="198.18.200", first_host=10)
        assert cls.etcd.urls() == ETCD_URL
        cls.etcd.start_all()
        for node in NODES:
            cls.start_server(node)
        for node in NODES:
            cls.wait_following(node)

    @classmethod
    def start_etcd(cls):
        cls.etcd.start_all()

    @classmethod
    def stop_etcd(cls):
        cls.etcd.stop_all()

    @classmethod
    def sock(cls, node):
        return os.path.join(cls.tmp, node + ".sock")

    @classmethod
    def start_server(cls, node, timeout=30, prefix=PREFIX):
        state = os.path.join(cls.tmp, node)
        os.makedirs(state, exist_ok=True)
        log_path = os.path.join(cls.tmp, node + ".log")
        log = open(log_path, "a")
        argv = [BIN, "serve", "--node-name", node, "--listen", "unix://" + cls.sock(node),
                "--state-dir", state, "--table", TABLE, "--metrics-address", "",
                "--etcd-endpoints", ETCD_URL, "--etcd-prefix", prefix,
                # Trim often, so that every test here also runs over a base.
                "--etcd-trim-entries", "3"]
        proc = cls.lab.spawn(node, argv, stdout=log, stderr=log)
        log.close()
        cls.servers[node] = proc
        netlab.wait_server(proc, cls.sock(node), lambda: cls.cli(node, "get", "services", timeout=5),
                           log_path, timeout=timeout, what="%s: nftproxy serve" % node)

    @classmethod
    def wait_following(cls, node, timeout=30):
        """Until `status` says the node has read etcd and follows it."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = cls.cli(node, "status")
            if last.returncode == 0 and "Shared store:" in last.stdout and "writes fail" not in last.stdout:
                return
            time.sleep(0.05)
        raise AssertionError("%s does not follow etcd after %ss; status:\n%s\nlog:\n%s"
                             % (node, timeout, last and last.stdout,
                                netlab.tail(os.path.join(cls.tmp, node + ".log"))))

    @classmethod
    def cli(cls, node, *args, timeout=30):
        return subprocess.run([BIN] + list(args) + ["--server", "unix://" + cls.sock(node)],
                              capture_output=True, text=True, timeout=timeout)

    # -- helpers -------------------------------------------------------------------------

    def write(self, docs, name):
        path = os.path.join(self.tmp, name + ".yaml")
        with open(path, "w") as f:
            f.write(netlab.to_yaml(docs))
        return path

    def apply(self, node, docs, name):
        return self.cli(node, "apply", "-f", self.write(docs, name))

    def services(self, node):
        cp = self.cli(node, "get", "services", "-o", "json")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        data = json.loads(cp.stdout)
        items = data.get("items", []) if isinstance(data, dict) else data
        return {i["metadata"]["name"]: i for i in items}

    def table(self, node):
        cp = self.lab.exec(node, ["nft", "list", "table", "inet", TABLE])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return netlab.norm_ruleset(cp.stdout)

    def log_tail(self, node):
        return netlab.tail(os.path.join(self.tmp, node + ".log"), 20)

    def wait_for(self, what, pred, timeout=20):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.05)
        self.fail("%s: not within %ss\n%s" % (what, timeout,
                                              "\n".join("--- %s\n%s" % (n, self.log_tail(n)) for n in NODES)))

    def tables_agree(self):
        tables = [self.table(n) for n in NODES]
        return all(t == tables[0] for t in tables)

    # -- the tests (run in name order: each builds on the last) ------------------------

    def test_1_apply_through_one_node_reaches_all(self):
        t0 = time.monotonic()
        cp = self.apply("node1", [service("web", "198.19.7.10"),
                                  endpoint_slice("web-1", "web", ["198.18.7.2", "198.18.7.3"])], "web")
        self.assertEqual(cp.returncode, 0, cp.stderr + self.log_tail("node1"))
        for node in NODES:
            self.wait_for("web on %s" % node,
                          lambda node=node: "web" in self.services(node) and "198.19.7.10" in self.table(node))
        took = time.monotonic() - t0
        versions = {n: self.services(n)["web"]["metadata"]["resourceVersion"] for n in NODES}
        self.assertEqual(len(set(map(str, versions.values()))), 1, versions)
        self.assertTrue(self.tables_agree())
        print("\n  apply on node1 -> visible in all 3 kernels in %.3fs" % took, file=sys.stderr)

    def test_2_racing_writers_one_wins_one_aborted(self):
        version = self.services("node2")["web"]["metadata"]["resourceVersion"]
        results = {}

        def write(node, vip):
            svc = service("web", vip)
            svc["metadata"]["resourceVersion"] = int(version)
            results[node] = self.apply(node, [svc], "race-" + node)

        threads = [threading.Thread(target=write, args=("node2", "198.19.7.20")),
                   threading.Thread(target=write, args=("node3", "198.19.7.30"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        codes = sorted(cp.returncode for cp in results.values())
        self.assertEqual(codes[0], 0, {n: (cp.returncode, cp.stderr) for n, cp in results.items()})
        self.assertNotEqual(codes[1], 0, {n: (cp.returncode, cp.stderr) for n, cp in results.items()})
        winner = [n for n, cp in results.items() if cp.returncode == 0][0]
        loser = [n for n, cp in results.items() if cp.returncode != 0][0]
        self.assertRegex(results[loser].stderr, r"(?i)abort|resourceVersion",
                         "the loser's error: %s" % results[loser].stderr)
        with open(os.path.join(self.tmp, loser + ".log")) as f:
            self.assertRegex(f.read(), r"write refused method=Apply .*code=ABORTED", "%s answers ABORTED" % loser)
        print("\n  race: %s won, %s got: %s" % (winner, loser, results[loser].stderr.strip()[:200]), file=sys.stderr)
        vip = "198.19.7.20" if winner == "node2" else "198.19.7.30"
        other = "198.19.7.30" if winner == "node2" else "198.19.7.20"
        for node in NODES:
            self.wait_for("the winner's VIP on %s" % node, lambda node=node: vip in self.table(node))
            self.assertNotIn(other, self.table(node))
        self.wait_for("every kernel agrees", self.tables_agree)

    def test_3_etcd_down_writes_unavailable_tables_kept(self):
        before = {n: self.table(n) for n in NODES}
        self.stop_etcd()
        try:
            t0 = time.monotonic()
            cp = self.apply("node2", [service("down", "198.19.7.40")], "down")
            took = time.monotonic() - t0
            # Refused by the server (exit 1), not "cannot reach the server" (3).
            self.assertEqual(cp.returncode, 1, cp.stderr)
            self.assertIn("shared state (etcd at %s" % ETCD_URL, cp.stderr)
            self.assertIn("cannot be written", cp.stderr)
            print("\n  write with etcd down refused in %.2fs: %s" % (took, cp.stderr.strip()[:200]),
                  file=sys.stderr)
            self.wait_for("status names the shared store's error",
                          lambda: "writes fail" in self.cli("node3", "status").stdout, timeout=30)
            for n in NODES:
                self.assertEqual(self.table(n), before[n], "%s's table changed while etcd was down" % n)
                self.assertNotIn("down", self.services(n))
        finally:
            if not self.etcd.running():
                self.start_etcd()

    def test_4_etcd_back_writes_and_converges(self):
        deadline = time.monotonic() + 60
        while True:
            cp = self.apply("node3", [service("back", "198.19.7.50")], "back")
            if cp.returncode == 0:
                break
            if time.monotonic() > deadline:
                self.fail("no write through node3 after etcd came back: %s\n%s" % (cp.stderr, self.log_tail("node3")))
            time.sleep(0.5)
        for node in NODES:
            self.wait_for("back on %s" % node, lambda node=node: "198.19.7.50" in self.table(node), timeout=30)
        self.wait_for("every kernel agrees", self.tables_agree)
        for node in NODES:
            self.wait_for("%s follows etcd again" % node,
                          lambda node=node: "writes fail" not in self.cli(node, "status").stdout, timeout=30)

    def test_5_node_restarted_while_etcd_down_serves_its_cache(self):
        self.wait_for("every kernel agrees", self.tables_agree)
        before = self.table("node2")
        names = set(self.services("node2"))
        self.stop_etcd()
        try:
            self.lab.stop(self.servers.pop("node2"))
            self.start_server("node2")
            self.assertEqual(set(self.services("node2")), names)
            self.assertEqual(self.table("node2"), before)
            cp = self.apply("node2", [service("cached", "198.19.7.60")], "cached")
            self.assertEqual(cp.returncode, 1, cp.stderr)
            self.assertIn("has not been read since this server started", cp.stderr)
        finally:
            if not self.etcd.running():
                self.start_etcd()
        deadline = time.monotonic() + 60
        while True:
            cp = self.apply("node2", [service("cached", "198.19.7.60")], "cached")
            if cp.returncode == 0:
                break
            if time.monotonic() > deadline:
                self.fail("no write through node2 after etcd came back: %s\n%s" % (cp.stderr, self.log_tail("node2")))
            time.sleep(0.5)
        for node in NODES:
            self.wait_for("cached on %s" % node, lambda node=node: "198.19.7.60" in self.table(node), timeout=30)
        self.wait_for("every kernel agrees", self.tables_agree)

    def test_6_empty_log_is_seeded_from_the_cache_not_taken_as_empty(self):
        # node3 restarted on a prefix nobody wrote (a typo, a node moving to
        # etcd, an etcd that lost its data): it keeps its services and writes
        # them as that log's first entry; back on the shared prefix, it follows.
        self.wait_for("every kernel agrees", self.tables_agree)
        before = self.table("node3")
        names = set(self.services("node3"))
        self.assertTrue(names)
        self.lab.stop(self.servers.pop("node3"))
        log_path = os.path.join(self.tmp, "node3.log")
        mark = os.path.getsize(log_path)
        self.start_server("node3", prefix="/npx-test-other/")
        self.wait_following("node3")
        self.assertEqual(set(self.services("node3")), names)
        self.assertEqual(self.table("node3"), before)
        with open(log_path) as f:
            f.seek(mark)
            self.assertIn("the shared log was empty: wrote this node's cached state as its first entry", f.read())
        cp = self.etcd.ctl("etcd1", "get", "--prefix", "--keys-only", "/npx-test-other/log/")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual([k for k in cp.stdout.split() if k], ["/npx-test-other/log/%020d" % 1], cp.stdout)
        self.lab.stop(self.servers.pop("node3"))
        self.start_server("node3")
        self.wait_following("node3")
        self.wait_for("every kernel agrees", self.tables_agree)

    def test_7_manifests_with_etcd_is_refused(self):
        # Each node's directory would fight the others' in the one shared state.
        d = os.path.join(self.tmp, "manifests")
        os.makedirs(d, exist_ok=True)
        cp = self.lab.exec("node1", [BIN, "serve", "--etcd-endpoints", ETCD_URL, "--manifests", d,
                                     "--state-dir", "", "--listen", "unix://" + os.path.join(self.tmp, "m.sock"),
                                     "--metrics-address", ""], timeout=30)
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertIn("--manifests cannot be used with --etcd-endpoints", cp.stderr)

    def test_8_log_is_trimmed_and_a_node_starts_from_the_base(self):
        for i in range(8):
            cp = self.apply("node%d" % (1 + i % 3), [service("t%d" % i, "198.19.8.%d" % (10 + i))], "t%d" % i)
            self.assertEqual(cp.returncode, 0, cp.stderr)
        self.wait_for("every kernel has the last one", lambda: all("198.19.8.17" in self.table(n) for n in NODES))
        cp = self.etcd.ctl("etcd1", "get", PREFIX + "base", "--print-value-only")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertRegex(cp.stdout, r"^S \d+ \d+ \d+ \d+ \d+", "a base in etcd")
        base_seq = int(cp.stdout.split()[1])
        head = int(self.etcd.ctl("etcd1", "get", PREFIX + "head", "--print-value-only").stdout.split()[0])
        keys = [k for k in self.etcd.ctl("etcd1", "get", "--prefix", "--keys-only", PREFIX + "log/").stdout.split()]
        # Every entry up to the base is gone; at most 3 + 1 (the name's spread) + a node's lag follow it.
        self.assertEqual([int(k.rsplit("/", 1)[1]) for k in keys], list(range(base_seq + 1, head + 1)))
        self.assertLessEqual(len(keys), 6, keys)
        print("\n  log: base at entry %d, head %d, %d entries kept" % (base_seq, head, len(keys)), file=sys.stderr)
        # A node restarted reads the base and what follows, and agrees.
        log_path = os.path.join(self.tmp, "node2.log")
        mark = os.path.getsize(log_path)
        self.lab.stop(self.servers.pop("node2"))
        self.start_server("node2")
        self.wait_following("node2")
        self.wait_for("every kernel agrees", self.tables_agree)
        with open(log_path) as f:
            f.seek(mark)
            self.assertRegex(f.read(), r"read the shared state .*base=[1-9]")


if __name__ == "__main__":
    unittest.main()
