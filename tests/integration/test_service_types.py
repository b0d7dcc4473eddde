#!/usr/bin/python3
"""Kernel-level tests of nftproxy's service types and traffic features on a
two-node lab (see multinode.py for the topology):

    pods --- node1 ---+--- lan ---+--- node2 --- pods
                      ext       ext2

NodePort (both traffic policies, --nodeport-addresses), LoadBalancer IPs with
source ranges, external IPs, refusal of traffic without endpoints, hairpin,
ClientIP session affinity, weights / round robin / source hash, draining,
selectors over workloads, UDP conntrack clean-up, ExternalName and internal
traffic policy. Each node runs its own `nftproxy serve`; every manifest is
applied to both.

Run from the repository root, as root:
    /usr/bin/python3 -m unittest -v tests/integration/test_service_types.py
Environment: NFTPROXY_BIN (default <repo>/build/nftproxy), CI=true turns
"not root" / "no binary" skips into failures, NPX_KEEP_TMP=1 keeps the temp
dirs (server logs, manifests).
"""

import difflib
import json
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import multinode as mn  # noqa: E402
import netlab  # noqa: E402
from multinode import endpoint, endpoint_slice, service, sport, workload  # noqa: E402

BIN = os.environ.get("NFTPROXY_BIN") or mn.DEFAULT_BIN

HTTP = ("http", "TCP", 8080)       # slice port: echo answers and closes
STREAM = ("stream", "TCP", 7070)   # slice port: echo keeps the connection open
DNS = ("dns", "UDP", 5353)


def setUpModule():
    netlab.require_root_and_binary(BIN)


class ClusterCase(unittest.TestCase):
    """One two-node lab (and one nftproxy per node) per test class; every test
    deletes what it applied."""

    maxDiff = None
    NODE_FLAGS = {}

    @classmethod
    def setUpClass(cls):
        cls.tmp = netlab.class_tmpdir(cls, "npx-st-")
        cls.c = mn.Cluster(cls.tmp, binary=BIN, node_flags=cls.NODE_FLAGS)
        cls.addClassCleanup(cls.c.cleanup)

    def setUp(self):
        self.addCleanup(self.c.delete_applied)

    # -- shortcuts -------------------------------------------------------------------

    def ip(self, pod):
        return self.c.pod_ip[pod]

    def ep(self, pod, **kw):
        """An endpoint for a pod, with its nodeName."""
        return endpoint([self.c.pod_ip[pod]], node=self.c.node_of[pod], **kw)

    def apply_ok(self, docs):
        return self.c.apply_ok(docs, tag=self._testMethodName)

    def traffic(self, ns, target, port, count, proto="tcp", timeout=1.5, deadline=15.0, **kw):
        """traffic_client.py in ns (a correct dataplane answers in milliseconds; the
        limits only bound how long a failing test takes)."""
        return self.c.traffic(ns, proto, target, port, count, timeout=timeout,
                              deadline=deadline, **kw)

    def msg(self, what, res, nodes=mn.NODES):
        return "%s\ntraffic result: %s%s" % (what, json.dumps(res, sort_keys=True),
                                             self.c.diag(nodes))

    # -- assertions on traffic_client results ------------------------------------------
    # (the diagnostics -- rulesets, server logs -- are only collected on failure)

    def check(self, cond, text, what, res, nodes=mn.NODES):
        if not cond:
            self.fail("%s\n%s" % (text, self.msg(what, res, nodes)))

    def assert_answered(self, res, count, backends=None, within=None, peers_in=None,
                        peer=None, not_peer=None, what="", nodes=mn.NODES):
        """Every request answered; the answering set is exactly `backends` and/or a
        subset of `within`; the peers the backends saw are `peer`, or all in
        `peers_in`, and never `not_peer`."""
        def check(cond, text):
            self.check(cond, text, what, res, nodes)
        check(res["errors"] == {}, "requests failed: %s" % res["errors"])
        check(res["ok"] == count, "%d of %d requests answered" % (res["ok"], count))
        if backends is not None:
            check(sorted(res["answers"]) == sorted(backends),
                  "wrong set of answering backends: %s, want %s"
                  % (sorted(res["answers"]), sorted(backends)))
        if within is not None:
            check(set(res["answers"]) <= set(within),
                  "a backend outside %s answered: %s" % (sorted(within), res["answers"]))
        if peer is not None:
            check(res["seen_peers"] == [peer],
                  "backends saw %s, want only the client's own address %s"
                  % (res["seen_peers"], peer))
        if peers_in is not None:
            check(res["seen_peers"] and set(res["seen_peers"]) <= set(peers_in),
                  "backends saw %s, want only addresses in %s (masqueraded to the node)"
                  % (res["seen_peers"], sorted(peers_in)))
        if not_peer is not None:
            check(not_peer not in res["seen_peers"],
                  "backends saw the client's own address %s (not masqueraded)" % not_peer)

    def assert_dropped(self, res, count, what="", nodes=mn.NODES):
        """Every request timed out: dropped, neither answered nor refused."""
        self.check(res["ok"] == 0, "%d requests were answered (want dropped)" % res["ok"],
                   what, res, nodes)
        self.check(res["errors"] == {"timeout": count},
                   "want every request to time out (dropped, not refused): %s" % res["errors"],
                   what, res, nodes)

    def assert_refused(self, res, count, max_elapsed, what="", nodes=mn.NODES):
        """Every request refused (ICMP port unreachable or TCP reset), quickly."""
        self.check(res["ok"] == 0, "%d requests were answered (want refused)" % res["ok"],
                   what, res, nodes)
        self.check(res["errors"] == {"refused": count},
                   "want every request refused (ECONNREFUSED): %s" % res["errors"],
                   what, res, nodes)
        self.check(res["elapsed"] < max_elapsed, "%d refusals took %.2fs (want < %.1fs)"
                   % (count, res["elapsed"], max_elapsed), what, res, nodes)

    def assert_not_served(self, res, what="", nodes=mn.NODES):
        self.check(res["ok"] == 0, "the service answered %d requests (want no DNAT)" % res["ok"],
                   what, res, nodes)

    def single_backend(self, res, what=""):
        """All requests answered by one backend; returns its name."""
        self.check(res["errors"] == {}, "requests failed: %s" % res["errors"], what, res)
        self.check(len(res["answers"]) == 1, "want every request on one backend, got %s"
                   % res["answers"], what, res)
        return next(iter(res["answers"]))


# ---- 1. NodePort ------------------------------------------------------------------------

class NodePortTest(ClusterCase):

    def test_nodeport_cluster_policy_masquerades(self):
        self.apply_ok([
            service("np-cluster", [sport("http", "TCP", 80, 8080, node_port=30080)],
                    ["198.19.0.20"], type="NODE_PORT"),
            endpoint_slice("np-cluster-1", "np-cluster", [HTTP],
                           [self.ep("pod1a"), self.ep("pod2a")]),
        ])
        ext = self.c.lan["ext"]
        for node in mn.NODES:
            res = self.traffic("ext", self.c.lan[node], 30080, 40)
            self.assert_answered(res, 40, backends=("pod1a", "pod2a"),
                                 peers_in=self.c.node_addresses(node), not_peer=ext,
                                 what="ext -> %s %s:30080 (externalTrafficPolicy CLUSTER)"
                                 % (node, self.c.lan[node]))

    def test_nodeport_cluster_policy_masquerades_pod_clients(self):
        # A pod on node1 reaching node2's NodePort whose only endpoint is back on
        # node1: without masquerade the endpoint would answer the pod directly
        # and node2 would never see the reply.
        self.apply_ok([
            service("np-podsrc", [sport("http", "TCP", 80, 8080, node_port=30085)],
                    ["198.19.0.25"], type="NODE_PORT"),
            endpoint_slice("np-podsrc-1", "np-podsrc", [HTTP], [self.ep("pod1b")]),
        ])
        res = self.traffic("pod1a", self.c.lan["node2"], 30085, 10)
        self.assert_answered(res, 10, backends=("pod1b",),
                             peers_in=self.c.node_addresses("node2"),
                             what="pod1a -> node2 %s:30085 (CLUSTER policy, pod client)"
                             % self.c.lan["node2"])

    def test_nodeport_local_policy_keeps_source(self):
        self.apply_ok([
            service("np-local", [sport("http", "TCP", 80, 8080, node_port=30081)],
                    ["198.19.0.21"], type="NODE_PORT", externalTrafficPolicy="LOCAL"),
            endpoint_slice("np-local-1", "np-local", [HTTP],
                           [self.ep("pod1a"), self.ep("pod1b"), self.ep("pod2a")]),
        ])
        ext = self.c.lan["ext"]
        res = self.traffic("ext", self.c.lan["node1"], 30081, 40)
        self.assert_answered(res, 40, backends=("pod1a", "pod1b"), peer=ext,
                             what="ext -> node1:30081 (LOCAL): node1's endpoints only, "
                                  "client address preserved")
        res = self.traffic("ext", self.c.lan["node2"], 30081, 20)
        self.assert_answered(res, 20, backends=("pod2a",), peer=ext,
                             what="ext -> node2:30081 (LOCAL): node2's endpoint only, "
                                  "client address preserved")

    def test_nodeport_local_policy_without_local_endpoint_drops(self):
        self.apply_ok([
            service("np-nolocal", [sport("http", "TCP", 80, 8080, node_port=30082)],
                    ["198.19.0.22"], type="NODE_PORT", externalTrafficPolicy="LOCAL"),
            endpoint_slice("np-nolocal-1", "np-nolocal", [HTTP], [self.ep("pod1a")]),
        ])
        res = self.traffic("ext", self.c.lan["node1"], 30082, 10)
        self.assert_answered(res, 10, backends=("pod1a",), peer=self.c.lan["ext"],
                             what="ext -> node1:30082 (LOCAL, endpoint on node1)")
        res = self.traffic("ext", self.c.lan["node2"], 30082, 3, timeout=1.0)
        self.assert_dropped(res, 3, what="ext -> node2:30082 (LOCAL, no endpoint on node2)",
                            nodes=("node2",))


class NodePortAddressesTest(ClusterCase):
    """node1: --nodeport-addresses <LAN CIDR>; node2: the default (every local
    address except loopback)."""

    NODE_FLAGS = {"node1": ["--nodeport-addresses", mn.LAN_CIDR]}

    def test_nodeport_addresses(self):
        self.apply_ok([
            service("np-addr", [sport("http", "TCP", 80, 8080, node_port=30084)],
                    ["198.19.0.24"], type="NODE_PORT"),
            endpoint_slice("np-addr-1", "np-addr", [HTTP], [self.ep("pod1b"), self.ep("pod2a")]),
        ])
        res = self.traffic("ext", self.c.lan["node1"], 30084, 20)
        self.assert_answered(res, 20, within=("pod1b", "pod2a"),
                             what="ext -> node1's LAN address:30084 (inside --nodeport-addresses)",
                             nodes=("node1",))
        res = self.traffic("pod1a", self.c.gw["node1"], 30084, 3, timeout=1.0)
        self.assert_not_served(res, what="pod1a -> node1's pod-side address %s:30084 (outside "
                               "--nodeport-addresses %s)" % (self.c.gw["node1"], mn.LAN_CIDR),
                               nodes=("node1",))
        # Control: node2 runs with the default, so its pod-side address serves.
        res = self.traffic("pod2b", self.c.gw["node2"], 30084, 20)
        self.assert_answered(res, 20, within=("pod1b", "pod2a"),
                             what="pod2b -> node2's pod-side address %s:30084 (default "
                             "--nodeport-addresses)" % self.c.gw["node2"], nodes=("node2",))


# ---- 2. LoadBalancer and external IPs ------------------------------------------------------

class LoadBalancerTest(ClusterCase):

    def test_load_balancer_source_ranges(self):
        lb = "198.19.10.1"
        ext = self.c.lan["ext"]
        self.apply_ok([
            service("lb-ranges", [sport("http", "TCP", 80, 8080, node_port=30090)],
                    ["198.19.0.30"], type="LOAD_BALANCER", loadBalancerIps=[lb],
                    loadBalancerSourceRanges=[ext + "/32"]),
            endpoint_slice("lb-ranges-1", "lb-ranges", [HTTP], [self.ep("pod1a"), self.ep("pod2a")]),
        ])
        res = self.traffic("ext", lb, 80, 40)
        self.assert_answered(res, 40, backends=("pod1a", "pod2a"),
                             peers_in=self.c.node_addresses("node1"), not_peer=ext,
                             what="ext (in loadBalancerSourceRanges) -> LB %s:80 via node1" % lb)
        res = self.traffic("ext2", lb, 80, 3, timeout=1.0)
        self.assert_dropped(res, 3, what="ext2 (not in loadBalancerSourceRanges) -> LB %s:80" % lb,
                            nodes=("node1",))

    def test_external_ips(self):
        xip = "198.19.10.2"
        ext = self.c.lan["ext"]
        self.apply_ok([
            service("ext-ips", [sport("http", "TCP", 80, 8080)], ["198.19.0.31"],
                    externalIps=[xip]),
            endpoint_slice("ext-ips-1", "ext-ips", [HTTP], [self.ep("pod1a"), self.ep("pod2a")]),
        ])
        res = self.traffic("ext", xip, 80, 40)
        self.assert_answered(res, 40, backends=("pod1a", "pod2a"),
                             peers_in=self.c.node_addresses("node1"), not_peer=ext,
                             what="ext -> external IP %s:80 via node1 (CLUSTER)" % xip)
        res = self.traffic("ext2", xip, 80, 10)
        self.assert_answered(res, 10, within=("pod1a", "pod2a"),
                             what="ext2 -> external IP %s:80 (no source ranges)" % xip)

    def test_load_balancer_and_external_ip_local_policy(self):
        lb, xip = "198.19.10.3", "198.19.10.4"
        ext = self.c.lan["ext"]
        self.apply_ok([
            service("lb-local", [sport("http", "TCP", 80, 8080, node_port=30091)],
                    ["198.19.0.32"], type="LOAD_BALANCER", loadBalancerIps=[lb],
                    externalIps=[xip], externalTrafficPolicy="LOCAL"),
            endpoint_slice("lb-local-1", "lb-local", [HTTP],
                           [self.ep("pod1a"), self.ep("pod1b"), self.ep("pod2a")]),
        ])
        for vip in (lb, xip):
            res = self.traffic("ext", vip, 80, 40)
            self.assert_answered(res, 40, backends=("pod1a", "pod1b"), peer=ext,
                                 what="ext -> %s:80 via node1 (LOCAL): node1's endpoints, "
                                      "client address preserved" % vip)
        for vip in (lb, xip):
            self.c.route_via("ext", vip + "/32", "node2")
        res = self.traffic("ext", lb, 80, 20)
        self.assert_answered(res, 20, backends=("pod2a",), peer=ext,
                             what="ext -> LB %s:80 via node2 (LOCAL)" % lb)
        res = self.traffic("ext", xip, 80, 20)
        self.assert_answered(res, 20, backends=("pod2a",), peer=ext,
                             what="ext -> external IP %s:80 via node2 (LOCAL)" % xip)


# ---- 3, 4, 10, 11: refusal, hairpin, ExternalName, internal traffic policy ----------------

class ClusterIPBehaviourTest(ClusterCase):

    def test_no_endpoints_refused(self):
        self.apply_ok([
            service("noep-noslice", [sport("http", "TCP", 80, 8080)], ["198.19.0.40"]),
            service("noep-empty", [sport("http", "TCP", 80, 8080)], ["198.19.0.41"]),
            endpoint_slice("noep-empty-1", "noep-empty", [HTTP], []),
            service("noep-unready", [sport("http", "TCP", 80, 8080)], ["198.19.0.43"]),
            endpoint_slice("noep-unready-1", "noep-unready", [HTTP],
                           [self.ep("pod1b", ready=False), self.ep("pod2a", ready=False)]),
        ])
        for vip, what in (("198.19.0.40", "no EndpointSlice"),
                          ("198.19.0.41", "an empty EndpointSlice"),
                          ("198.19.0.43", "only not-ready endpoints")):
            res = self.traffic("pod1a", vip, 80, 5, timeout=3.0)
            self.assert_refused(res, 5, max_elapsed=2.5,
                                what="pod1a -> %s:80, a service with %s" % (vip, what),
                                nodes=("node1",))

    def test_non_service_port_refused(self):
        vip = "198.19.0.42"
        self.apply_ok([
            service("svcport", [sport("http", "TCP", 80, 8080)], [vip]),
            endpoint_slice("svcport-1", "svcport", [HTTP], [self.ep("pod1b"), self.ep("pod2a")]),
        ])
        res = self.traffic("pod1a", vip, 80, 10)
        self.assert_answered(res, 10, within=("pod1b", "pod2a"), what="pod1a -> %s:80" % vip)
        res = self.traffic("pod1a", vip, 81, 5, timeout=3.0)
        self.assert_refused(res, 5, max_elapsed=2.5,
                            what="pod1a -> %s:81, not a port of the service" % vip,
                            nodes=("node1",))

    def test_hairpin(self):
        for pod, vip in (("pod1a", "198.19.0.50"), ("pod2a", "198.19.0.51")):
            name = "hairpin-" + pod
            self.apply_ok([
                service(name, [sport("http", "TCP", 80, 8080)], [vip]),
                endpoint_slice(name + "-1", name, [HTTP], [self.ep(pod)]),
            ])
            node = self.c.node_of[pod]
            res = self.traffic(pod, vip, 80, 10)
            self.assert_answered(res, 10, backends=(pod,), peers_in=self.c.node_addresses(node),
                                 not_peer=self.ip(pod),
                                 what="%s -> %s:80, a service whose only endpoint is %s itself "
                                      "(hairpin: must be masqueraded to %s's address)"
                                      % (pod, vip, pod, node), nodes=(node,))

    def test_external_name_programs_nothing(self):
        name = "extname-db"
        # A baseline service first, so that the table exists before the snapshot.
        self.apply_ok([
            service("extname-base", [sport("http", "TCP", 80, 8080)], ["198.19.0.44"]),
            endpoint_slice("extname-base-1", "extname-base", [HTTP], [self.ep("pod1b")]),
        ])
        before = {node: self.c.ruleset(node) for node in mn.NODES}
        self.apply_ok([
            service(name, [sport("sql", "TCP", 5432)], type="EXTERNAL_NAME",
                    externalName="db.example.com"),
        ])
        for node in mn.NODES:
            after = self.c.ruleset(node)
            if mn.norm_ruleset(after) != mn.norm_ruleset(before[node]):
                diff = "".join(difflib.unified_diff(before[node].splitlines(True),
                                                    after.splitlines(True), "before", "after"))
                self.fail("%s: applying an ExternalName service changed the ruleset:\n%s"
                          % (node, diff))
            cp = self.c.cli(node, "get", "service", name, "-o", "yaml")
            self.assertEqual(cp.returncode, 0, "%s: get service %s: %s" % (node, name, cp.stderr))
            self.assertIn("db.example.com", cp.stdout,
                          "%s: `get service %s -o yaml` lacks the externalName:\n%s"
                          % (node, name, cp.stdout))
            rs = self.c.ruleset(node)
            self.assertNotIn(name, rs, "%s: something was programmed for the ExternalName "
                             "service:\n%s" % (node, rs))

    def test_internal_traffic_policy_local(self):
        self.apply_ok([
            service("itp-local", [sport("http", "TCP", 80, 8080)], ["198.19.0.110"],
                    internalTrafficPolicy="LOCAL"),
            endpoint_slice("itp-local-1", "itp-local", [HTTP],
                           [self.ep("pod1b"), self.ep("pod1c"), self.ep("pod2a")]),
            service("itp-remote", [sport("http", "TCP", 80, 8080)], ["198.19.0.111"],
                    internalTrafficPolicy="LOCAL"),
            endpoint_slice("itp-remote-1", "itp-remote", [HTTP], [self.ep("pod2a")]),
        ])
        res = self.traffic("pod1a", "198.19.0.110", 80, 60)
        self.assert_answered(res, 60, backends=("pod1b", "pod1c"),
                             what="pod1a (node1) -> 198.19.0.110 (internalTrafficPolicy LOCAL)")
        res = self.traffic("pod2b", "198.19.0.110", 80, 20)
        self.assert_answered(res, 20, backends=("pod2a",),
                             what="pod2b (node2) -> 198.19.0.110 (internalTrafficPolicy LOCAL)")
        res = self.traffic("pod1a", "198.19.0.111", 80, 3, timeout=1.0)
        self.assert_dropped(res, 3, what="pod1a (node1) -> 198.19.0.111 (internalTrafficPolicy "
                            "LOCAL, only endpoint on node2)", nodes=("node1",))


# ---- 5, 6: affinity and load balancing ----------------------------------------------------

class BalancingTest(ClusterCase):
    """Endpoints on node1 only (clients ext/ext2 reach them via node1)."""

    def test_session_affinity_client_ip(self):
        vip = "198.19.0.60"
        self.apply_ok([
            service("aff", [sport("http", "TCP", 80, 8080)], [vip],
                    sessionAffinity="CLIENT_IP", sessionAffinityTimeout="10s"),
            endpoint_slice("aff-1", "aff", [HTTP],
                           [self.ep("pod1a"), self.ep("pod1b"), self.ep("pod1c")]),
        ])
        for client in ("ext", "ext2", "pod2b"):
            res = self.traffic(client, vip, 80, 30)
            self.assert_answered(res, 30, what="%s -> %s (CLIENT_IP affinity)" % (client, vip))
            self.single_backend(res, "%s -> %s: CLIENT_IP affinity must keep one client on one "
                                "endpoint" % (client, vip))

    def test_session_affinity_expires(self):
        # 12 client addresses, each sticky; after the 2 s timeout lapses each is
        # balanced afresh over 3 endpoints: that all 12 land where they were is a
        # 1 in 3^12 (~5e-6) chance.
        vip = "198.19.0.61"
        self.apply_ok([
            service("aff-exp", [sport("http", "TCP", 80, 8080)], [vip],
                    sessionAffinity="CLIENT_IP", sessionAffinityTimeout="2s"),
            endpoint_slice("aff-exp-1", "aff-exp", [HTTP],
                           [self.ep("pod1a"), self.ep("pod1b"), self.ep("pod1c")]),
        ])
        addrs = self.c.add_addresses("ext", 12, first=120)
        first = {}
        for a in addrs:
            res = self.traffic("ext", vip, 80, 5, bind=a)
            self.assert_answered(res, 5, what="ext from %s -> %s" % (a, vip))
            first[a] = self.single_backend(res, "from %s, within the affinity timeout" % a)
        time.sleep(3.0)
        second = {}
        for a in addrs:
            res = self.traffic("ext", vip, 80, 5, bind=a)
            self.assert_answered(res, 5, what="ext from %s -> %s after the timeout" % (a, vip))
            second[a] = self.single_backend(res, "from %s, after the timeout lapsed" % a)
        if first == second:
            self.fail("after the 2s affinity timeout lapsed, not one of %d clients was "
                      "re-balanced: %s%s" % (len(addrs), first, self.c.diag(("node1",))))

    def test_weights(self):
        vip, n = "198.19.0.70", 2500
        self.apply_ok([
            service("weights", [sport("http", "TCP", 80, 8080)], [vip]),
            endpoint_slice("weights-1", "weights", [HTTP],
                           [self.ep("pod1a", weight=90), self.ep("pod1b", weight=10)]),
        ])
        res = self.traffic("ext", vip, 80, n, deadline=60)
        self.assert_answered(res, n, backends=("pod1a", "pod1b"), what="weights 90/10",
                             nodes=("node1",))
        share = res["answers"]["pod1a"] / n
        self.assertTrue(0.85 <= share <= 0.95, "weight-90 endpoint got %.3f of %d connections "
                        "(want 0.85-0.95): %s" % (share, n, res["answers"]))

    def test_round_robin(self):
        vip = "198.19.0.71"
        self.apply_ok([
            service("rr", [sport("http", "TCP", 80, 8080)], [vip], loadBalancing="ROUND_ROBIN"),
            endpoint_slice("rr-1", "rr", [HTTP],
                           [self.ep("pod1a"), self.ep("pod1b"), self.ep("pod1c")]),
        ])
        res = self.traffic("ext", vip, 80, 30)
        self.assert_answered(res, 30, backends=("pod1a", "pod1b", "pod1c"), what="ROUND_ROBIN",
                             nodes=("node1",))
        for pod, k in res["answers"].items():
            self.assertTrue(9 <= k <= 11, "ROUND_ROBIN: %s got %d of 30 connections (want 10±1): %s"
                            % (pod, k, res["answers"]))

    def test_source_hash(self):
        vip = "198.19.0.72"
        self.apply_ok([
            service("sh", [sport("http", "TCP", 80, 8080)], [vip], loadBalancing="SOURCE_HASH"),
            endpoint_slice("sh-1", "sh", [HTTP],
                           [self.ep("pod1a"), self.ep("pod1b"), self.ep("pod1c")]),
        ])
        res = self.traffic("ext", vip, 80, 100)
        self.assert_answered(res, 100, what="SOURCE_HASH from ext's own address")
        self.single_backend(res, "SOURCE_HASH: one client address must always hit one endpoint")
        chosen = {}
        for a in self.c.add_addresses("ext", 16, first=100):
            res = self.traffic("ext", vip, 80, 10, bind=a)
            self.assert_answered(res, 10, what="SOURCE_HASH from %s" % a)
            chosen[a] = self.single_backend(res, "SOURCE_HASH from %s" % a)
        if len(set(chosen.values())) < 2:
            self.fail("SOURCE_HASH: 16 client addresses all hashed to one endpoint: %s%s"
                      % (chosen, self.c.diag(("node1",))))


# ---- 7, 8, 9: draining, selectors, UDP conntrack ---------------------------------------------

class EndpointChangeTest(ClusterCase):
    """Clients are pods (pod2b on node2, pod1a on node1): no masquerade needed."""

    PODS = ("pod1b", "pod1c", "pod2a")

    def _drain(self, name, vip, drained):
        """Opens a long-lived connection, applies drained(pod) for its backend and
        checks that the connection survives while new ones avoid that backend."""
        ports = [sport("http", "TCP", 80, 8080), sport("stream", "TCP", 70, 7070)]
        self.apply_ok([
            service(name, ports, [vip]),
            endpoint_slice(name + "-1", name, [HTTP, STREAM], [self.ep(p) for p in self.PODS]),
        ])
        res = self.traffic("pod2b", vip, 80, 30)
        self.assert_answered(res, 30, within=self.PODS, what="before draining")
        held = self.c.hold("pod2b", vip, 70)
        self.addCleanup(held.close)
        if held.error is not None:
            self.fail("could not open the long-lived connection: %s%s"
                      % (held.error, self.c.diag()))
        a = held.backend
        self.assertIn(a, self.PODS, "long-lived connection answered by %r" % held.greeting)
        self.assertEqual(held.send("before"), "%s before" % a)

        self.apply_ok([endpoint_slice(name + "-1", name, [HTTP, STREAM],
                                      [drained(p) if p == a else self.ep(p) for p in self.PODS])])
        self.assertEqual(held.send("after"), "%s after" % a,
                         "the open connection to %s broke when it was drained" % a)
        others = [p for p in self.PODS if p != a]
        res = self.traffic("pod2b", vip, 80, 50)
        self.assert_answered(res, 50, within=others,
                             what="new connections after draining %s must go elsewhere" % a)
        self.assertEqual(held.send("later"), "%s later" % a,
                         "the open connection to %s broke after new connections" % a)

    def test_drain_weight_zero(self):
        self._drain("drain-w", "198.19.0.80", lambda p: self.ep(p, weight=0))

    def test_drain_terminating(self):
        self._drain("drain-t", "198.19.0.81",
                    lambda p: self.ep(p, ready=False, terminating=True))

    def test_selector_follows_labels(self):
        vip = "198.19.0.90"
        port = [sport("http", "TCP", 80, 8080)]
        svc = service("sel", port, [vip], selector={"app": "web-sel"})

        def wl(name, pod, app):
            return workload(name, {"app": app}, [self.ip(pod)], self.c.node_of[pod])

        self.apply_ok([svc, wl("sel-a", "pod1b", "web-sel"), wl("sel-b", "pod2a", "web-sel"),
                       wl("sel-c", "pod1c", "other-sel")])
        res = self.traffic("pod2b", vip, 80, 60)
        self.assert_answered(res, 60, backends=("pod1b", "pod2a"),
                             what="selector app=web-sel: workloads sel-a (pod1b), sel-b (pod2a)")
        self.apply_ok([wl("sel-a", "pod1b", "old-sel")])
        res = self.traffic("pod2b", vip, 80, 30)
        self.assert_answered(res, 30, backends=("pod2a",),
                             what="sel-a (pod1b) relabelled app=old-sel: must get nothing")
        self.apply_ok([wl("sel-c", "pod1c", "web-sel")])
        res = self.traffic("pod2b", vip, 80, 60)
        self.assert_answered(res, 60, backends=("pod1c", "pod2a"),
                             what="sel-c (pod1c) relabelled app=web-sel: must get traffic")

    def test_udp_conntrack_cleared_for_removed_endpoint(self):
        vip, src_port = "198.19.0.100", 41000
        self.apply_ok([
            service("udp-ct", [sport("dns", "UDP", 53, 5353)], [vip]),
            endpoint_slice("udp-ct-1", "udp-ct", [DNS], [self.ep("pod1b"), self.ep("pod2a")]),
        ])
        res = self.traffic("pod1a", vip, 53, 5, proto="udp", sport=src_port, timeout=1.0)
        self.assert_answered(res, 5, within=("pod1b", "pod2a"),
                             what="UDP from pod1a:%d (one flow)" % src_port)
        gone = self.single_backend(res, "UDP datagrams of one flow")
        stays = "pod2a" if gone == "pod1b" else "pod1b"
        self.apply_ok([endpoint_slice("udp-ct-1", "udp-ct", [DNS], [self.ep(stays)])])
        t0 = time.monotonic()
        history = []
        while True:
            res = self.traffic("pod1a", vip, 53, 3, proto="udp", sport=src_port, timeout=0.3)
            history.append((round(time.monotonic() - t0, 2), res["answers"], res["errors"]))
            if res["answers"] == {stays: 3}:
                break
            if time.monotonic() - t0 > 2.5:
                self.fail("UDP flow pod1a:%d -> %s still not answered by %s alone %.1fs after %s "
                          "was removed from the slice (stale conntrack entry?); history: %s\n"
                          "--- node1 conntrack ---\n%s%s"
                          % (src_port, vip, stays, time.monotonic() - t0, gone, history,
                             self.c.conntrack("node1"), self.c.diag(("node1",))))
            time.sleep(0.1)


if __name__ == "__main__":
    unittest.main(verbosity=2)
