"""A two-node cluster lab for nftproxy's service-type integration tests.

Topology (every box is a private network namespace of one netlab.Lab):

    pod1a pod1b pod1c            pod2a pod2b
      \\    |    /                  \\    /
        node1                        node2          nftproxy serve in each node
          | eth0 198.18.100.1          | eth0 198.18.100.2
    ------+------------ lan (bridge br0) ---------+--------------+
                                                 ext            ext2
                                          198.18.100.200  198.18.100.201

- Pods: one veth each into their node, point-to-point: the pod has a /32
  (198.18.N.(10+i)), a link route to its node's pod-side gateway address
  198.18.N.1 and a default route via it; the node has 198.18.N.1/32 on every
  pod veth and a /32 route per pod. So traffic between two pods of the same
  node is routed (and seen by conntrack) by the node, like with a CNI plugin.
- Nodes forward (ip_forward=1, no redirects, no rp_filter, no ICMP rate
  limit), route the other node's pod /24 via its LAN address and everything
  else via the LAN's router 198.18.100.254 (the `lan` namespace itself, which
  has no further routes: it answers ICMP unreachable).
- Cluster CIDR (pods): 198.18.0.0/20. LAN 198.18.100.0/24 (outside it).
  Service VIPs (cluster, LB, external IPs) come from 198.19.0.0/16, which
  ext and ext2 route via node1 (route_via() sends a prefix via node2).
- Every node runs `nftproxy serve --node-name NODE --cluster-cidr CIDR
  --listen unix://TMP/NODE.sock --state-dir TMP/NODE --table nftproxy`
  (plus per-node extra flags), and every manifest is applied to every node.
- Every pod runs echo_server.py: TCP 8080 and 9090, stream TCP 7070 (kept
  open, echoes lines), UDP 5353; it answers "NAME PORT PEER_IP".

Everything is created inside `npx-<pid>-*` namespaces and removed (processes
killed by pid) by Cluster.cleanup(), which also runs at interpreter exit.
Only 198.18.0.0/15 is used.
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import netlab  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_BIN = os.path.join(REPO, "build", "nftproxy")

CLUSTER_CIDR = "198.18.0.0/20"
LAN_CIDR = "198.18.100.0/24"
ROUTER = "198.18.100.254"      # in `lan`, on its bridge: the nodes' default route
VIP_CIDR = "198.19.0.0/16"
TABLE = "nftproxy"

NODES = ("node1", "node2")
PODS = {"node1": ("pod1a", "pod1b", "pod1c"), "node2": ("pod2a", "pod2b")}
EXTERNALS = ("ext", "ext2")

TCP_PORTS = (8080, 9090)
STREAM_PORT = 7070
UDP_PORT = 5353


# ---- manifests (block-style YAML, as test_clusterip.py writes them) ----------------

to_yaml = netlab.to_yaml


def service(name, ports, cluster_ips=(), type=None, namespace="default", **spec):
    """A Service; extra spec fields by their JSON names (externalTrafficPolicy=...)."""
    s = {"ports": list(ports)}
    if cluster_ips:
        s["clusterIps"] = list(cluster_ips)
    if type:
        s["type"] = type
    s.update(spec)
    return {"kind": "Service", "metadata": {"namespace": namespace, "name": name}, "spec": s}


def sport(name, protocol, port, target=None, node_port=None):
    p = {"name": name, "protocol": protocol, "port": port}
    if target is not None:
        p["targetPort"] = target
    if node_port is not None:
        p["nodePort"] = node_port
    return p


def endpoint(addresses, node=None, ready=None, terminating=None, serving=None, weight=None):
    e = {"addresses": list(addresses)}
    cond = {}
    if ready is not None:
        cond["ready"] = ready
    if serving is not None:
        cond["serving"] = serving
    if terminating is not None:
        cond["terminating"] = terminating
    if cond:
        e["conditions"] = cond
    if node is not None:
        e["nodeName"] = node
    if weight is not None:
        e["weight"] = weight
    return e


def endpoint_slice(name, service_name, ports, endpoints, namespace="default"):
    """ports: [(name, protocol, port), ...]"""
    return {"kind": "EndpointSlice",
            "metadata": {"namespace": namespace, "name": name},
            "serviceName": service_name,
            "ports": [{"name": n, "protocol": pr, "port": p} for n, pr, p in ports],
            "endpoints": list(endpoints)}


def workload(name, labels, addresses, node, ports=(), namespace="default", ready=None):
    w = {"kind": "Workload",
         "metadata": {"namespace": namespace, "name": name, "labels": dict(labels)},
         "addresses": list(addresses), "nodeName": node}
    if ports:
        w["ports"] = [{"name": n, "protocol": pr, "port": p} for n, pr, p in ports]
    if ready is not None:
        w["conditions"] = {"ready": ready}
    return w


_KIND_WORD = {"Service": "service", "EndpointSlice": "endpointslice", "Workload": "workload"}


norm_ruleset = netlab.norm_ruleset


tail = netlab.tail


# ---- a held (long-lived) TCP connection -------------------------------------------

class HeldConnection:
    """traffic_client.py --hold running in a namespace: one open TCP connection."""

    def __init__(self, lab, ns, target, port, timeout=2.0, bind=None):
        argv = [sys.executable, "-u", netlab.TRAFFIC_CLIENT, "--proto", "tcp", "--hold",
                "--target", target, "--port", str(port), "--timeout", str(timeout)]
        if bind:
            argv += ["--bind", bind]
        self.lab = lab
        self.proc = lab.spawn(ns, argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        first = self._read()
        self.greeting = first.get("greeting")          # "NAME PORT PEER" or None
        self.error = first.get("error")
        self.backend = self.greeting.split()[0] if self.greeting else None

    def _read(self):
        line = self.proc.stdout.readline()
        if not line:
            return {"error": "client exited (rc=%s)" % self.proc.poll()}
        return json.loads(line)

    def send(self, text):
        """Sends one line; returns the answer line ("NAME text") or raises AssertionError."""
        try:
            self.proc.stdin.write(text + "\n")
            self.proc.stdin.flush()
        except OSError as e:
            raise AssertionError("held connection: client gone: %s" % e)
        res = self._read()
        if "reply" not in res:
            raise AssertionError("held connection: no reply to %r: %s" % (text, res))
        return res["reply"]

    def close(self):
        if self.proc in self.lab.procs:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            self.lab.stop(self.proc)


# ---- the cluster ---------------------------------------------------------------------

class Cluster:
    """Builds the topology above, starts the echo servers and one nftproxy per node.

    node_flags: {"node1": ["--nodeport-addresses", "..."], ...} extra serve flags.
    """

    def __init__(self, tmp, binary=None, node_flags=None, cluster_cidr=CLUSTER_CIDR,
                 table=TABLE, start_servers=True, nodes=NODES, pods=None, common_flags=()):
        """nodes: the node names (node1..nodeN: node n has LAN address .n and
        pods in 198.18.n.0/24); pods: {node: (pod, ...)} (default PODS for the
        two standard nodes, none for others); common_flags: serve flags for
        every node, before node_flags'."""
        self.tmp = tmp
        self.nodes = tuple(nodes)
        self.pods = {n: tuple((pods if pods is not None else PODS).get(n, ())) for n in self.nodes}
        self.common_flags = list(common_flags)
        self.bin = binary or os.environ.get("NFTPROXY_BIN") or DEFAULT_BIN
        self.table = table
        self.cluster_cidr = cluster_cidr
        self.node_flags = dict(node_flags or {})
        self.lab = netlab.Lab()
        self.servers = {}
        self.sock = {}
        self.url = {}
        self.state_dir = {}
        self.server_log = {}
        self.lan = {}         # node / external -> LAN address
        self.gw = {}          # node -> its pod-side address
        self.pod_ip = {}      # pod -> address
        self.node_of = {}     # pod -> node
        self.applied = []     # (kind word, namespace, name) in apply order
        self._manifests = 0
        self._extra_addrs = {}
        self.echo_log = open(os.path.join(tmp, "echo.log"), "a")
        try:
            self._build()
            if start_servers:
                for node in self.nodes:
                    self.start_server(node)
        except BaseException:
            self.cleanup()
            raise

    # -- topology -----------------------------------------------------------------

    def _build(self):
        lab = self.lab
        lab.add_netns("lan")
        lab.bridge("lan", "br0")
        # The LAN's router: the nodes' default gateway. It has no route beyond
        # the LAN, so what a node forwards without handling it (e.g. to a VIP)
        # comes back as ICMP unreachable, as on a real network, instead of the
        # node itself failing the route lookup before its forward hook.
        lab.addr("lan", "br0", ROUTER + "/24")
        lab.sysctl("lan", "net.ipv4.icmp_ratelimit", 0)
        # Nodes are .1 .. .N, externals from .200.
        lan_hosts = [(node, int(node[len("node"):])) for node in self.nodes]
        lan_hosts += [(ext, 200 + i) for i, ext in enumerate(EXTERNALS)]
        for short, host in lan_hosts:
            lab.add_netns(short)
            lab.veth("lan", "p-" + short, short, "eth0")
            lab.enslave("lan", "p-" + short, "br0")
            lab.addr(short, "eth0", "198.18.100.%d/24" % host)
            self.lan[short] = "198.18.100.%d" % host
        for node in self.nodes:
            n = int(node[len("node"):])
            lab.enable_forwarding(node)
            for key, val in (("net.ipv4.conf.all.rp_filter", 0),
                             ("net.ipv4.conf.default.rp_filter", 0),
                             ("net.ipv4.conf.all.send_redirects", 0),
                             ("net.ipv4.conf.default.send_redirects", 0),
                             ("net.ipv4.icmp_ratelimit", 0),
                             ("net.ipv6.icmp.ratelimit", 0)):
                lab.sysctl(node, key, val)
            gw = "198.18.%d.1" % n
            self.gw[node] = gw
            for i, pod in enumerate(self.pods[node]):
                ip = "198.18.%d.%d" % (n, 10 + i)
                lab.add_netns(pod)
                lab.veth(node, "p-" + pod, pod, "eth0")
                lab.addr(node, "p-" + pod, gw + "/32")
                lab.dev_route(node, ip + "/32", "p-" + pod, src=gw)
                lab.addr(pod, "eth0", ip + "/32")
                lab.dev_route(pod, gw + "/32", "eth0")
                lab.route(pod, "default", gw, dev="eth0")
                self.pod_ip[pod] = ip
                self.node_of[pod] = node
        for node in self.nodes:
            for other in self.nodes:
                if other != node and self.pods[other]:
                    lab.route(node, "198.18.%s.0/24" % other[len("node"):], self.lan[other])
            lab.route(node, "default", ROUTER)
        for ext in EXTERNALS:
            lab.route(ext, VIP_CIDR, self.lan["node1"])
        for node, pods in self.pods.items():
            for pod in pods:
                netlab.start_echo(lab, pod, pod, tcp_ports=TCP_PORTS, udp_ports=(UDP_PORT,),
                                  stream_ports=(STREAM_PORT,), log=self.echo_log)

    def node_addresses(self, node):
        """Every address of a node (LAN and pod-side)."""
        return {self.lan[node], self.gw[node]}

    def pods_of(self, node):
        return self.pods[node]

    def route_via(self, ns, dst, node):
        """Routes dst (a prefix) from namespace ns via node's LAN address."""
        self.lab.route(ns, dst, self.lan[node])

    def add_addresses(self, ns, count, first=100):
        """Adds `count` more LAN addresses (198.18.100.first+i/24) to ns's eth0; returns them."""
        have = self._extra_addrs.setdefault(ns, [])
        out = []
        for i in range(count):
            ip = "198.18.100.%d" % (first + i)
            if ip not in have:
                self.lab.addr(ns, "eth0", ip + "/24")
                have.append(ip)
            out.append(ip)
        return out

    # -- servers --------------------------------------------------------------------

    def serve_argv(self, node):
        return [self.bin, "serve", "--node-name", node, "--cluster-cidr", self.cluster_cidr,
                "--listen", self.url[node], "--state-dir", self.state_dir[node],
                "--table", self.table] + self.common_flags + list(self.node_flags.get(node, ()))

    def start_server(self, node, timeout=20):
        self.sock[node] = os.path.join(self.tmp, node + ".sock")
        self.url[node] = "unix://" + self.sock[node]
        self.state_dir[node] = os.path.join(self.tmp, node)
        os.makedirs(self.state_dir[node], exist_ok=True)
        self.server_log[node] = os.path.join(self.tmp, node + ".log")
        log = open(self.server_log[node], "a")
        argv = self.serve_argv(node)
        log.write("==== %s started at %s: %s ====\n" % (node, time.strftime("%T"), " ".join(argv)))
        log.flush()
        proc = self.lab.spawn(node, argv, stdout=log, stderr=log)
        log.close()
        self.servers[node] = proc
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError("%s: nftproxy serve exited with %s during start-up; log:\n%s"
                                     % (node, proc.returncode, tail(self.server_log[node])))
            if os.path.exists(self.sock[node]):
                last = self.cli(node, "get", "services", timeout=5)
                if last.returncode == 0:
                    return proc
            time.sleep(0.05)
        raise AssertionError("%s: nftproxy serve not ready after %ss (last `get services`: %r); "
                             "log:\n%s" % (node, timeout, last and (last.returncode, last.stderr),
                                           tail(self.server_log[node])))

    def stop_server(self, node):
        proc = self.servers.pop(node, None)
        if proc is not None:
            return self.lab.stop(proc)
        return None

    # -- CLI --------------------------------------------------------------------------

    def cli(self, node, *args, timeout=30):
        return subprocess.run([self.bin] + list(args) + ["--server", self.url[node]],
                              capture_output=True, text=True, timeout=timeout)

    def write_manifest(self, docs, tag="m"):
        self._manifests += 1
        path = os.path.join(self.tmp, "manifest-%03d-%s.yaml" % (self._manifests, tag))
        with open(path, "w") as f:
            f.write(docs if isinstance(docs, str) else to_yaml(docs))
        return path

    def apply(self, docs, nodes=None, tag="m"):
        """Applies docs to every node; returns {node: CompletedProcess}, path."""
        nodes = self.nodes if nodes is None else nodes
        path = self.write_manifest(docs, tag)
        if not isinstance(docs, str):
            for d in docs:
                ref = (_KIND_WORD[d["kind"]], d["metadata"].get("namespace", "default"),
                       d["metadata"]["name"])
                if ref not in self.applied:
                    self.applied.append(ref)
        return {node: self.cli(node, "apply", "-f", path) for node in nodes}, path

    def apply_ok(self, docs, nodes=None, tag="m"):
        res, path = self.apply(docs, nodes, tag)
        for node, cp in res.items():
            if cp.returncode != 0:
                with open(path) as f:
                    text = f.read()
                raise AssertionError("apply to %s failed (exit %d)\nstderr: %s\nmanifest:\n%s\n"
                                     "server log:\n%s" % (node, cp.returncode, cp.stderr, text,
                                                          tail(self.server_log[node])))
        return res

    def delete_applied(self):
        """Deletes every resource applied so far, on every running node (errors ignored):
        endpoint slices and workloads first, then services."""
        order = {"endpointslice": 0, "workload": 0, "service": 1}
        refs = sorted(reversed(self.applied), key=lambda r: order[r[0]])
        for node in list(self.servers):
            for kind, ns, name in refs:
                try:
                    self.cli(node, "delete", kind, name, "-n", ns, timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        self.applied.clear()

    # -- nftables / diagnostics -----------------------------------------------------------

    def ruleset(self, node):
        cp = self.lab.exec(node, ["nft", "list", "ruleset"])
        return cp.stdout if cp.returncode == 0 else "(nft list ruleset failed: %s)" % cp.stderr

    def diag(self, nodes=None):
        out = []
        nodes = self.nodes if nodes is None else nodes
        for node in nodes:
            out.append("\n--- %s: nft list ruleset ---\n%s" % (node, self.ruleset(node)))
            if node in self.server_log:
                out.append("--- %s: server log (tail) ---\n%s" % (node, tail(self.server_log[node], 15)))
        return "".join(out)

    def conntrack(self, node):
        cp = self.lab.exec(node, ["cat", "/proc/net/nf_conntrack"])
        if cp.returncode == 0:
            return cp.stdout
        cp = self.lab.exec(node, ["conntrack", "-L"])
        return cp.stdout if cp.returncode == 0 else "(no conntrack listing available)"

    # -- traffic ------------------------------------------------------------------------------

    def traffic(self, ns, proto, target, port, count, timeout=2.0, deadline=30.0, bind=None,
                sport=None):
        return netlab.traffic(self.lab, ns, proto, target, port, count, timeout=timeout,
                              deadline=deadline, bind=bind, sport=sport)

    def hold(self, ns, target, port, timeout=2.0, bind=None):
        return HeldConnection(self.lab, ns, target, port, timeout=timeout, bind=bind)

    # -- cleanup --------------------------------------------------------------------------------

    def cleanup(self):
        errors = self.lab.cleanup()
        try:
            self.echo_log.close()
        except OSError:
            pass
        return errors
