#!/usr/bin/python3
"""Many nodes on a three-member etcd cluster, with real traffic (issue 17).

The two-node lab of multinode.py grown to three nodes, plus three etcd
members (etcd_lab.EtcdCluster), each in its own namespace on the LAN:

    pod1a pod1b          pod2a                pod3a
        node1 .1         node2 .2             node3 .3       nftproxy serve in each,
    --------------------- lan (bridge br0) ------------------  --etcd-endpoints = all 3 members
      etcd1 .20    etcd2 .21    etcd3 .22     ext .200

Every write goes through ONE node (the others learn it from etcd). Asserted,
with packets that arrive:
  - a ClusterIP service written through node1 answers through its VIP from a
    pod on node3 (node3's kernel does the DNAT);
  - a NodePort service with externalTrafficPolicy LOCAL: each node answers
    with its own endpoints only (by nodeName) and drops without one; after
    the endpoints move to other nodes, the answers follow;
  - every etcd member stopped: traffic keeps flowing through every node,
    writes fail UNAVAILABLE naming etcd, `status` says so; members restarted:
    a write goes through and every node converges;
  - the etcd leader killed (kill -9) during a stream of writes through two
    nodes: every acknowledged write is on every node, in its state and in
    its kernel, and the kernels agree;
  - one node cut off from etcd (its packets to and from the members
    dropped): it keeps serving its last state, /healthz says 503 after
    --health-timeout, and when the partition heals it converges;
  - a client watching node1 resumes on node3 from the last revision it saw,
    and gets the same events (revisions are etcd's, the same everywhere).

Run from the repository root, as root:

    NFTPROXY_BIN=build/nftproxy /usr/bin/python3 -m unittest -v tests/integration/test_etcd_cluster.py
"""

import json
import os
import queue
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import etcd_lab  # noqa: E402
import multinode as mn  # noqa: E402
import netlab  # noqa: E402
from multinode import endpoint, endpoint_slice, service, sport  # noqa: E402

BIN = os.environ.get("NFTPROXY_BIN", mn.DEFAULT_BIN)
NODES = ("node1", "node2", "node3")
PODS = {"node1": ("pod1a", "pod1b"), "node2": ("pod2a",), "node3": ("pod3a",)}
HTTP = ("http", "TCP", 8080)
PREFIX = "/npx-cluster/"
METRICS = "127.0.0.1:10249"
HEALTH_TIMEOUT = "2s"


def setUpModule():
    netlab.require_root_and_binary(BIN)
    etcd_lab.require_etcd()


class EtcdClusterTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = netlab.class_tmpdir(cls, "npx-etcd-cluster-")
        cls.c = mn.Cluster(cls.tmp, binary=BIN, nodes=NODES, pods=PODS, start_servers=False,
                           node_flags={n: ["--nodeport-addresses", mn.LAN_CIDR] for n in NODES})
        cls.addClassCleanup(cls.c.cleanup)
        cls.etcd = etcd_lab.EtcdCluster(cls.c.lab, cls.tmp, members=3)
        cls.etcd.start_all()
        cls.c.common_flags = ["--etcd-endpoints", cls.etcd.urls(), "--etcd-prefix", PREFIX,
                              "--metrics-address", METRICS, "--health-timeout", HEALTH_TIMEOUT]
        for node in NODES:
            cls.c.start_server(node)
        for node in NODES:
            cls.wait_following(node)

    # -- helpers -------------------------------------------------------------------------

    @classmethod
    def wait_following(cls, node, timeout=60):
        """Until `status` says the node has read etcd and follows it."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = cls.c.cli(node, "status")
            if last.returncode == 0 and "Shared store:" in last.stdout and "writes fail" not in last.stdout:
                return
            time.sleep(0.05)
        raise AssertionError("%s does not follow etcd after %ss; status:\n%s\n%s"
                             % (node, timeout, last and last.stdout, cls.c.diag((node,))))

    def ip(self, pod):
        return self.c.pod_ip[pod]

    def ep(self, pod):
        return endpoint([self.c.pod_ip[pod]], node=self.c.node_of[pod])

    def write(self, node, docs, tag):
        """apply -f through ONE node; returns the CompletedProcess."""
        res, _ = self.c.apply(docs, nodes=(node,), tag=tag)
        return res[node]

    def write_ok(self, node, docs, tag):
        cp = self.write(node, docs, tag)
        self.assertEqual(cp.returncode, 0, "apply through %s: %s\n%s" % (node, cp.stderr, self.c.diag((node,))))

    def services(self, node):
        cp = self.c.cli(node, "get", "services", "-o", "json")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        data = json.loads(cp.stdout)
        items = data.get("items", []) if isinstance(data, dict) else data
        return {i["metadata"]["name"]: i for i in items}

    def table(self, node):
        cp = self.c.lab.exec(node, ["nft", "list", "table", "inet", mn.TABLE])
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return netlab.norm_ruleset(cp.stdout)

    def wait_for(self, what, pred, timeout=30, nodes=NODES):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.05)
        self.fail("%s: not within %ss\n%s" % (what, timeout, self.c.diag(nodes)))

    def wait_everywhere(self, what, pred, timeout=30):
        for node in NODES:
            self.wait_for("%s on %s" % (what, node), lambda node=node: pred(node), timeout=timeout)

    def tables_agree(self):
        tables = [self.table(n) for n in NODES]
        return all(t == tables[0] for t in tables)

    def traffic(self, ns, target, port, count, timeout=1.5, deadline=20.0):
        return self.c.traffic(ns, "tcp", target, port, count, timeout=timeout, deadline=deadline)

    def assert_answered(self, res, count, within, what):
        self.assertEqual(res["errors"], {}, "%s: requests failed\n%s" % (what, res))
        self.assertEqual(res["ok"], count, "%s: %s" % (what, res))
        self.assertTrue(set(res["answers"]) <= set(within), "%s: answered by %s, want within %s"
                        % (what, sorted(res["answers"]), sorted(within)))

    def assert_dropped(self, res, count, what):
        self.assertEqual(res["ok"], 0, "%s: answered (want dropped): %s" % (what, res))
        self.assertEqual(res["errors"], {"timeout": count}, "%s: %s" % (what, res))

    def log_size(self, node):
        return os.path.getsize(self.c.server_log[node])

    def log_since(self, node, offset):
        with open(self.c.server_log[node]) as f:
            f.seek(offset)
            return f.read()

    def healthz(self, node):
        try:
            return self.c.lab.http(node, "http://%s/healthz" % METRICS, timeout=10)["status"]
        except netlab.LabError as e:
            return str(e)

    # -- the tests (name order; each leaves the cluster following etcd) -----------------

    def test_1_vip_written_through_node1_answers_on_node3(self):
        vip = "198.19.1.10"
        t0 = time.monotonic()
        self.write_ok("node1", [
            service("web", [sport("http", "TCP", 80, 8080)], [vip]),
            endpoint_slice("web-1", "web", [HTTP], [self.ep("pod1a"), self.ep("pod2a")]),
        ], "web")
        self.wait_everywhere("web's VIP in the kernel", lambda n: vip in self.table(n))
        took = time.monotonic() - t0
        res = self.traffic("pod3a", vip, 80, 20)
        self.assert_answered(res, 20, ("pod1a", "pod2a"), "pod3a -> %s:80 through node3's kernel" % vip)
        self.assertEqual(sorted(res["answers"]), ["pod1a", "pod2a"], res)
        # The same through node2's kernel, and node1's.
        self.assert_answered(self.traffic("pod2a", vip, 80, 10), 10, ("pod1a", "pod2a"), "pod2a -> VIP")
        self.assert_answered(self.traffic("pod1b", vip, 80, 10), 10, ("pod1a", "pod2a"), "pod1b -> VIP")
        versions = {n: self.services(n)["web"]["metadata"]["resourceVersion"] for n in NODES}
        self.assertEqual(len(set(map(str, versions.values()))), 1, versions)
        print("\n  written through node1 -> in all 3 kernels in %.3fs; 20/20 answered from pod3a" % took,
              file=sys.stderr)

    def test_2_nodeport_local_follows_node_name(self):
        port = 30090
        docs = lambda pods: [
            service("np", [sport("http", "TCP", 80, 8080, node_port=port)], ["198.19.1.20"],
                    type="NODE_PORT", externalTrafficPolicy="LOCAL"),
            endpoint_slice("np-1", "np", [HTTP], [self.ep(p) for p in pods]),
        ]
        self.write_ok("node2", docs(["pod1a", "pod1b", "pod3a"]), "np")
        self.wait_everywhere("np in the kernel", lambda n: "198.19.1.20" in self.table(n))
        ext = "ext"
        res = self.traffic(ext, self.c.lan["node1"], port, 20)
        self.assert_answered(res, 20, ("pod1a", "pod1b"), "ext -> node1:%d (LOCAL)" % port)
        res = self.traffic(ext, self.c.lan["node3"], port, 10)
        self.assert_answered(res, 10, ("pod3a",), "ext -> node3:%d (LOCAL)" % port)
        self.assertEqual(set(res["seen_peers"]), {self.c.lan[ext]}, "LOCAL keeps the client's address")
        self.assert_dropped(self.traffic(ext, self.c.lan["node2"], port, 3, timeout=1.0), 3,
                            "ext -> node2:%d (LOCAL, no endpoint on node2)" % port)
        # The endpoints move: to node2 only, written through node3.
        self.write_ok("node3", docs(["pod2a"]), "np-moved")
        self.wait_everywhere("np's endpoints moved", lambda n: self.ip("pod3a") not in self.table(n))
        self.assert_answered(self.traffic(ext, self.c.lan["node2"], port, 10), 10, ("pod2a",),
                             "ext -> node2:%d after the move" % port)
        for node in ("node1", "node3"):
            self.assert_dropped(self.traffic(ext, self.c.lan[node], port, 3, timeout=1.0), 3,
                                "ext -> %s:%d after the endpoints left it" % (node, port))
        # (LOCAL makes the tables differ by node: gone before the next test.)
        self.assertEqual(self.c.cli("node1", "delete", "endpointslice", "np-1").returncode, 0)
        self.assertEqual(self.c.cli("node1", "delete", "service", "np").returncode, 0)
        self.wait_everywhere("np deleted", lambda n: "198.19.1.20" not in self.table(n))

    def test_3_every_member_stopped_traffic_flows_writes_unavailable(self):
        vip = "198.19.1.10"   # web, from test 1 (or written here if run alone)
        if "web" not in self.services("node1"):
            self.test_1_vip_written_through_node1_answers_on_node3()
        before = {n: self.table(n) for n in NODES}
        mark = self.log_size("node2")
        self.etcd.stop_all()
        try:
            for node, client in (("node1", "pod1b"), ("node2", "pod2a"), ("node3", "pod3a")):
                self.assert_answered(self.traffic(client, vip, 80, 10), 10, ("pod1a", "pod2a"),
                                     "%s -> VIP through %s with etcd down" % (client, node))
            cp = self.write("node2", [service("down", [sport("http", "TCP", 80, 8080)], ["198.19.1.30"])], "down")
            self.assertEqual(cp.returncode, 1, cp.stderr)   # refused by the server, not unreachable (3)
            self.assertIn("shared state (etcd at", cp.stderr)
            self.assertIn("cannot be written", cp.stderr)
            self.assertRegex(self.log_since("node2", mark), r"write refused method=Apply .*code=UNAVAILABLE",
                             "node2 answers UNAVAILABLE")
            self.wait_for("status on node3 says writes fail",
                          lambda: "writes fail" in self.c.cli("node3", "status").stdout, timeout=60)
            for n in NODES:
                self.assertEqual(self.table(n), before[n], "%s's table changed while etcd was down" % n)
        finally:
            self.etcd.start_all()
        deadline = time.monotonic() + 60
        while True:
            cp = self.write("node2", [service("back", [sport("http", "TCP", 80, 8080)], ["198.19.1.31"])], "back")
            if cp.returncode == 0:
                break
            self.assertLess(time.monotonic(), deadline, "no write after etcd came back: %s" % cp.stderr)
            time.sleep(0.5)
        self.wait_everywhere("back in the kernel", lambda n: "198.19.1.31" in self.table(n))
        for n in NODES:
            self.wait_following(n)
        self.wait_for("every kernel agrees", self.tables_agree)

    def test_4_leader_killed_during_writes_loses_no_acknowledged_write(self):
        leader = self.etcd.leader()
        acked = {}        # name -> VIP, acknowledged (exit 0)
        failed = []
        stop = threading.Event()

        def writer(node, base):
            i = 0
            while not stop.is_set() and i < 400:
                name = "w-%s-%03d" % (node, i)
                vip = "198.19.%d.%d" % (base + i // 200, 1 + i % 200)
                cp = self.write(node, [service(name, [sport("http", "TCP", 80, 8080)], [vip])], name)
                if cp.returncode == 0:
                    acked[name] = vip
                else:
                    failed.append((name, cp.returncode, cp.stderr.strip()[-240:]))
                i += 1

        threads = [threading.Thread(target=writer, args=("node1", 10)),
                   threading.Thread(target=writer, args=("node3", 11))]
        for t in threads:
            t.start()
        try:
            time.sleep(2)
            before_kill = len(acked)
            t_kill = time.monotonic()
            self.etcd.kill(leader)
            # Writes in flight when the leader died wait for etcd's own
            # timeout and fail; go on until writes are acknowledged again.
            while len(acked) < before_kill + 10 and time.monotonic() < t_kill + 40:
                time.sleep(0.1)
            t_resumed = time.monotonic() - t_kill
            time.sleep(1)
        finally:
            stop.set()
            for t in threads:
                t.join()
            self.etcd.start(leader)
        new_leader = self.etcd.leader()
        print("\n  leader %s killed after %d acknowledged writes; new leader %s; writes acknowledged again "
              "%.1fs after the kill; %d acknowledged, %d refused"
              % (leader, before_kill, new_leader, t_resumed, len(acked), len(failed)), file=sys.stderr)
        if failed:
            print("  refused, e.g.: %s" % (failed[:3],), file=sys.stderr)
        self.assertGreater(len(acked), before_kill, "no write was acknowledged after the leader died: %s"
                           % failed[-3:])
        for node in NODES:
            self.wait_for("every acknowledged write in %s's state" % node,
                          lambda node=node: set(acked) <= set(self.services(node)), timeout=60)
            table = self.table(node)
            missing = [n for n, vip in acked.items() if vip + " " not in table + " " and vip not in table]
            self.assertEqual(missing, [], "acknowledged writes missing from %s's kernel" % node)
        self.wait_for("every kernel agrees", self.tables_agree)
        versions = {n: {k: v["metadata"]["resourceVersion"] for k, v in self.services(n).items()} for n in NODES}
        self.assertEqual(versions["node1"], versions["node2"])
        self.assertEqual(versions["node1"], versions["node3"])
        # Clean up through node2 (one Delete each).
        for name in [n for n in self.services("node2") if n.startswith("w-")]:
            self.c.cli("node2", "delete", "service", name)

    def test_5_partitioned_node_serves_its_state_and_converges(self):
        vip = "198.19.1.10"
        if "web" not in self.services("node3"):
            self.test_1_vip_written_through_node1_answers_on_node3()
        self.wait_for("every kernel agrees", self.tables_agree)
        self.assertEqual(self.healthz("node3"), 200)
        members = ", ".join(self.etcd.ip.values())
        cut = ("table inet npx_partition {\n"
               " chain out { type filter hook output priority 0; ip daddr { %s } drop; }\n"
               " chain in { type filter hook input priority 0; ip saddr { %s } drop; }\n}\n" % (members, members))
        cp = self.c.lab.exec("node3", ["nft", "-f", "-"], input=cut)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        healed = False
        try:
            self.write_ok("node1", [service("during", [sport("http", "TCP", 80, 8080)], ["198.19.1.40"])], "during")
            self.wait_for("during on node2", lambda: "198.19.1.40" in self.table("node2"))
            self.wait_for("node3 reports the shared store cut off",
                          lambda: "writes fail" in self.c.cli("node3", "status").stdout, timeout=90)
            self.wait_for("node3's /healthz says 503", lambda: self.healthz("node3") == 503, timeout=30)
            self.assertNotIn("198.19.1.40", self.table("node3"), "node3 saw a write while cut off")
            self.assert_answered(self.traffic("pod3a", vip, 80, 10), 10, ("pod1a", "pod2a"),
                                 "pod3a -> VIP through node3 while it is cut off")
            cp = self.write("node3", [service("cutoff", [sport("http", "TCP", 80, 8080)], ["198.19.1.41"])], "cutoff")
            self.assertNotEqual(cp.returncode, 0, "a write through the cut-off node was acknowledged")
            self.assertIn("shared state (etcd at", cp.stderr)
            self.c.lab.exec("node3", ["nft", "delete", "table", "inet", "npx_partition"], check=True)
            healed = True
            t0 = time.monotonic()
            self.wait_for("node3 converges", lambda: "198.19.1.40" in self.table("node3"), timeout=90)
            print("\n  node3 converged %.1fs after the partition healed" % (time.monotonic() - t0), file=sys.stderr)
            self.assertNotIn("cutoff", self.services("node1"))
            self.wait_for("every kernel agrees", self.tables_agree)
            self.wait_for("node3's /healthz says 200", lambda: self.healthz("node3") == 200, timeout=60)
        finally:
            if not healed:
                self.c.lab.exec("node3", ["nft", "delete", "table", "inet", "npx_partition"])

    def test_6_watch_resumes_on_another_node(self):
        # Watch node1 from now on, write two services through node2, then
        # resume on node3 after the first one's revision.
        argv = self.c.lab.exec_argv("node1", [BIN, "watch", "service", "-o", "json", "--server", self.c.url["node1"]])
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
        try:
            # The current state comes first, then a bookmark ("# up to date" on stderr).
            line = proc.stderr.readline()
            self.assertIn("up to date", line)
            self.write_ok("node2", [service("wa", [sport("http", "TCP", 80, 8080)], ["198.19.1.50"])], "wa")
            self.write_ok("node2", [service("wb", [sport("http", "TCP", 80, 8080)], ["198.19.1.51"])], "wb")
            events = []
            while len(events) < 2:
                try:
                    e = json.loads(lines.get(timeout=30))
                except queue.Empty:
                    self.fail("node1's watch: no event for wa and wb within 30s; got %s" % events)
                # (the current state came first)
                if events or e["resource"]["service"]["metadata"]["name"] == "wa":
                    events.append(e)
        finally:
            proc.kill()
            proc.wait()
            proc.stdout.close()
            proc.stderr.close()
        names = [e["resource"]["service"]["metadata"]["name"] for e in events]
        self.assertEqual(names, ["wa", "wb"], events)
        rev_a = int(events[0]["revision"])
        rev_b = int(events[1]["revision"])
        self.assertLess(rev_a, rev_b)
        cp = subprocess.run(self.c.lab.exec_argv("node3", [
            "timeout", "3", BIN, "watch", "service", "-o", "json", "--since", str(rev_a),
            "--server", self.c.url["node3"]]), capture_output=True, text=True, timeout=30)
        got = [json.loads(line) for line in cp.stdout.splitlines() if line.strip()]
        self.assertTrue(got, "nothing from node3 after revision %d: %s" % (rev_a, cp.stderr))
        self.assertEqual(got[0], events[1], "node3 resumed differently from node1's stream")
