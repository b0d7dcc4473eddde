#!/usr/bin/python3
# Over 600 lines: every CLI habit against one shared server set-up per class; splitting would repeat it.
"""The `nftproxy` CLI against a real server in a network namespace.

Topology: client --- proxy --- b1 / b2 / b3 (netlab.Star); the proxy runs
`nftproxy serve`, the backends run echo_server.py on TCP 8080 and 9090.

What is checked: apply/get/describe/diff/delete round trips in every output
format (table, wide, yaml, json); a directory of mixed manifests (nftproxy
YAML and JSON, Kubernetes YAML); Kubernetes Service + EndpointSlice manifests
shaped like `kubectl get -o yaml` exports giving VIPs that carry traffic; the
errors for a broken YAML file, an invalid field name and a server-side
refusal (file, document, field; exit codes 1, 2, 3); sync ownership; watch;
`--help` on every command; --dry-run in every spelling; --server forms and
--request-timeout; listings past one List page (1,200 services); kubectl
habits (-o name, -o jsonpath, --no-headers, -l, get all, KIND,KIND,
--ignore-not-found, --version, shell completion, the man page).

Run from the repository root, as root:
    NFTPROXY_BIN=build-cli/nftproxy /usr/bin/python3 -m unittest -v tests/integration/test_cli.py
CI=true turns "not root" / "no binary" skips into failures.
"""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import netlab  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("NFTPROXY_BIN") or os.path.join(REPO, "build", "nftproxy")
BACKENDS = ("b1", "b2", "b3")
COMMANDS = ("apply", "delete", "get", "describe", "diff", "sync", "explain", "watch", "trace", "status", "version",
            "completion")


def setUpModule():
    netlab.require_root_and_binary(BIN)


def new_lab():
    """A netlab.Lab whose namespaces are named npx-cli-<pid>-<n>-*."""
    lab = netlab.Lab()
    lab.prefix = "npx-cli-%d-%s" % (os.getpid(), lab.prefix.split("-", 2)[2])
    return lab


def start_server(lab, ns, sock, state_dir, log_path, table="npxcli", timeout=20):
    """Starts `nftproxy serve` in ns and waits until it answers."""
    log = open(log_path, "a")
    proc = lab.spawn(ns, [BIN, "serve", "--listen", "unix://" + sock, "--table", table,
                          "--state-dir", state_dir], stdout=log, stderr=log)
    log.close()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("nftproxy serve exited with %s; log:\n%s" % (proc.returncode, open(log_path).read()))
        if os.path.exists(sock):
            cp = subprocess.run([BIN, "status", "--server", "unix://" + sock], capture_output=True, text=True,
                                timeout=10)
            if cp.returncode == 0:
                return proc
        time.sleep(0.05)
    raise AssertionError("nftproxy serve not ready; log:\n" + open(log_path).read())


# ---- manifests -------------------------------------------------------------------

def own_service(name, vip, ports, namespace="default", **spec):
    s = {"kind": "Service", "metadata": {"namespace": namespace, "name": name},
         "spec": dict({"clusterIps": [vip], "ports": ports}, **spec)}
    return s


def own_slice(name, service, ports, endpoints, namespace="default"):
    return {"kind": "EndpointSlice", "metadata": {"namespace": namespace, "name": name},
            "serviceName": service, "ports": ports, "endpoints": endpoints}


def k8s_export(ns, vip, backends):
    """`kubectl get svc,endpoints,endpointslices,svc -n NS -o yaml` for one
    Deployment behind a Service, plus a headless Service: the shape of a real
    export (bookkeeping metadata, managedFields, status, defaults)."""
    ready, not_ready = backends[:2], backends[2]
    return {
        "apiVersion": "v1",
        "kind": "List",
        "metadata": {"resourceVersion": ""},
        "items": [
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {
                 "annotations": {"kubectl.kubernetes.io/last-applied-configuration": '{"apiVersion":"v1"}\n'},
                 "creationTimestamp": "2024-05-02T09:14:07Z",
                 "labels": {"app.kubernetes.io/name": "shop-web"},
                 "managedFields": [{"apiVersion": "v1", "fieldsType": "FieldsV1",
                                    "fieldsV1": {"f:spec": {"f:ports": {}}},
                                    "manager": "kubectl-client-side-apply", "operation": "Update",
                                    "time": "2024-05-02T09:14:07Z"}],
                 "name": "shop-web", "namespace": ns, "resourceVersion": "48213",
                 "uid": "9b7d6c1e-2f0a-4c3b-8f5e-0d1c2b3a4f5e"},
             "spec": {"clusterIP": vip, "clusterIPs": [vip], "internalTrafficPolicy": "Cluster",
                      "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack",
                      "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": "http"},
                                {"appProtocol": "grpc", "name": "grpc", "port": 9000, "protocol": "TCP",
                                 "targetPort": 9090}],
                      "selector": {"app.kubernetes.io/name": "shop-web"},
                      "sessionAffinity": "None", "type": "ClusterIP"},
             "status": {"loadBalancer": {}}},
            {"apiVersion": "v1", "kind": "Service",
             "metadata": {"name": "shop-db", "namespace": ns, "uid": "x"},
             "spec": {"clusterIP": "None", "clusterIPs": ["None"], "ports": [{"port": 5432}],
                      "selector": {"app": "db"}, "type": "ClusterIP"}},
            {"apiVersion": "v1", "kind": "Endpoints",
             "metadata": {"name": "shop-web", "namespace": ns,
                          "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2024-05-02T09:14:09Z"}},
             "subsets": [{"addresses": [{"ip": ip, "nodeName": "node-a"} for ip in ready],
                          "notReadyAddresses": [{"ip": not_ready}],
                          "ports": [{"name": "http", "port": 8080, "protocol": "TCP"},
                                    {"name": "grpc", "port": 9090, "protocol": "TCP"}]}]},
            {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
             "metadata": {
                 "annotations": {"endpoints.kubernetes.io/last-change-trigger-time": "2024-05-02T09:14:09Z"},
                 "generateName": "shop-web-", "generation": 3,
                 "labels": {"endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                            "kubernetes.io/service-name": "shop-web"},
                 "name": "shop-web-7xk2p", "namespace": ns,
                 "ownerReferences": [{"apiVersion": "v1", "blockOwnerDeletion": True, "controller": True,
                                      "kind": "Service", "name": "shop-web", "uid": "9b7d6c1e"}],
                 "resourceVersion": "48240", "uid": "0c4a2e6f"},
             "addressType": "IPv4",
             "endpoints": [
                 {"addresses": [ready[0]], "conditions": {"ready": True, "serving": True, "terminating": False},
                  "nodeName": "node-a", "zone": "zone-1",
                  "targetRef": {"kind": "Pod", "name": "shop-web-5d8f7c9b6-x2x7k", "namespace": ns, "uid": "1"}},
                 {"addresses": [ready[1]], "conditions": {"ready": True, "serving": True, "terminating": False},
                  "nodeName": "node-b", "zone": "zone-2",
                  "targetRef": {"kind": "Pod", "name": "shop-web-5d8f7c9b6-k8m2d", "namespace": ns, "uid": "2"}},
                 {"addresses": [not_ready], "conditions": {"ready": False, "serving": False, "terminating": False},
                  "nodeName": "node-c"},
             ],
             "ports": [{"appProtocol": "http", "name": "http", "port": 8080, "protocol": "TCP"},
                       {"name": "grpc", "port": 9090, "protocol": "TCP"}]},
        ],
    }


class CliCase(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="npx-cli-")
        cls.addClassCleanup(shutil.rmtree, cls.tmp, True)
        cls.lab = new_lab()
        cls.addClassCleanup(cls.lab.cleanup)
        cls.star = netlab.Star(cls.lab, BACKENDS)
        cls.echo_log = open(os.path.join(cls.tmp, "echo.log"), "a")
        cls.addClassCleanup(cls.echo_log.close)
        for b in BACKENDS:
            netlab.start_echo(cls.lab, b, b, tcp_ports=(8080, 9090), udp_ports=(), log=cls.echo_log)
        cls.sock = os.path.join(cls.tmp, "nftproxy.sock")
        cls.url = "unix://" + cls.sock
        cls.log_path = os.path.join(cls.tmp, "server.log")
        cls.server = start_server(cls.lab, "proxy", cls.sock, os.path.join(cls.tmp, "state"), cls.log_path)
        cls.files = 0

    def cli(self, *args, input=None, timeout=60):
        return subprocess.run([BIN] + list(args) + ["--server", self.url], capture_output=True, text=True,
                              input=input, timeout=timeout)

    def ok(self, *args, input=None):
        cp = self.cli(*args, input=input)
        self.assertEqual(cp.returncode, 0, "nftproxy %s failed (%d):\n%s\nserver log:\n%s"
                         % (" ".join(args), cp.returncode, cp.stderr, self.server_log()))
        return cp

    def server_log(self):
        with open(self.log_path) as f:
            return "".join(f.readlines()[-20:])

    def write(self, docs, name=None, fmt="yaml", directory=None):
        type(self).files += 1
        name = name or "m%03d-%s.%s" % (self.files, self._testMethodName, fmt)
        path = os.path.join(directory or self.tmp, name)
        with open(path, "w") as f:
            if isinstance(docs, str):
                f.write(docs)
            elif fmt == "json":
                json.dump(docs, f, indent=1)
            else:
                yaml.safe_dump_all(docs if isinstance(docs, list) else [docs], f, sort_keys=False)
        return path

    def traffic(self, vip, port, count):
        return netlab.traffic(self.lab, "client", "tcp", vip, port, count, timeout=2.0, deadline=30)

    def v4(self, b):
        return self.star.v4[b]


class RoundTripTest(CliCase):

    def test_apply_get_describe_diff_delete_in_every_format(self):
        vip = "198.19.30.10"
        docs = [own_service("rt", vip, [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}],
                            loadBalancing="ROUND_ROBIN"),
                own_slice("rt-1", "rt", [{"name": "http", "protocol": "TCP", "port": 8080}],
                          [{"addresses": [self.v4("b1")], "weight": 3, "nodeName": "node-a"},
                           {"addresses": [self.v4("b2")], "conditions": {"ready": False}}])]
        path = self.write(docs)
        self.addCleanup(self.cli, "delete", "-f", path)
        cp = self.ok("apply", "-f", path)
        self.assertEqual(cp.stdout, "service/default/rt created\nendpointslice/default/rt-1 created\n")

        # table and wide: aligned columns, kubectl-like
        table = self.ok("get", "services").stdout.splitlines()
        header = table[0].split()
        self.assertEqual(header, ["NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"])
        row = [line for line in table if line.split()[1:2] == ["rt"]]
        self.assertEqual(len(row), 1, table)
        self.assertEqual(row[0].split()[:6], ["default", "rt", "ClusterIP", vip, "<none>", "80/TCP"])
        for line in table[1:]:  # every column starts where its header starts
            self.assertEqual(line.index(line.split()[2]), table[0].index("TYPE"), table)
        wide = self.ok("get", "services", "rt", "-o", "wide").stdout.splitlines()
        self.assertEqual(wide[0].split()[-4:], ["LB", "SELECTOR", "SOURCE", "CONNECTIONS"])
        self.assertIn("80->http/TCP", wide[1])
        self.assertIn("ROUND_ROBIN", wide[1])
        eps = self.ok("get", "endpoints", "-n", "default", "-o", "wide").stdout
        self.assertIn("%s*3,%s(not ready)" % (self.v4("b1"), self.v4("b2")), eps)

        # yaml and json are manifests that read back unchanged
        y = self.ok("get", "service", "rt", "-o", "yaml").stdout
        got = yaml.safe_load(y)
        self.assertEqual(got["kind"], "Service")
        self.assertEqual(got["spec"]["clusterIps"], [vip])
        self.assertEqual(got["spec"]["ports"][0]["targetPortName"], "http")
        self.assertRegex(got["metadata"]["resourceVersion"], r"^\d+$")
        js = json.loads(self.ok("get", "endpointslices", "-o", "json").stdout)
        self.assertEqual(js["kind"], "List")
        slice_ = [i for i in js["items"] if i["metadata"]["name"] == "rt-1"][0]
        self.assertEqual(slice_["endpoints"][0]["weight"], 3)
        self.assertEqual(slice_["endpoints"][1]["conditions"], {"ready": False})
        one = json.loads(self.ok("get", "endpointslice", "rt-1", "-o", "json").stdout)
        self.assertEqual(one["kind"], "EndpointSlice")
        for text in (y, json.dumps(one)):
            cp = self.ok("apply", "-f", "-", input=text)
            self.assertRegex(cp.stdout, r"^(service/default/rt|endpointslice/default/rt-1) unchanged\n$")

        # describe: spec, endpoints with conditions and weights, nftables objects
        d = self.ok("describe", "service", "rt").stdout
        self.assertRegex(d, r"Cluster IPs:\s+%s" % vip)
        self.assertRegex(d, r"Load balancing:\s+ROUND_ROBIN")
        self.assertRegex(d, r"endpointslice/rt-1\s+%s\s+http:8080\s+true\s+true\s+false\s+3\s+node-a" % self.v4("b1"))
        self.assertRegex(d, r"endpointslice/rt-1\s+%s\s+http:8080\s+false\s+false\s+false\s+1" % self.v4("b2"))
        self.assertIn("%s . tcp . 80 : goto svc4/default/rt/tcp/80" % vip, d)
        self.assertIn("chain svc4/default/rt/tcp/80 {", d)
        explain = self.ok("explain").stdout
        self.assertIn("chain svc4/default/rt/tcp/80 {", explain)

        # diff: nothing, then a change
        cp = self.cli("diff", "-f", path)
        self.assertEqual((cp.returncode, cp.stdout), (0, ""), cp.stderr)
        docs[1]["endpoints"][0]["weight"] = 5
        changed = self.write(docs)
        cp = self.cli("diff", "-f", changed)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("--- endpointslice/default/rt-1 (live)\n+++ endpointslice/default/rt-1 (%s, document 2)\n"
                      % changed, cp.stdout)
        self.assertIn("\n-    weight: 3\n+    weight: 5\n", cp.stdout)
        self.assertNotIn("service/default/rt", cp.stdout)
        # diff changed nothing
        self.assertIn("*3", self.ok("get", "endpoints", "rt-1", "-o", "wide").stdout)
        new = self.write([own_service("rt-new", "198.19.30.11", [{"port": 80}])])
        cp = self.cli("diff", "-f", new)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("--- /dev/null (not on the server)\n+++ service/default/rt-new", cp.stdout)
        self.assertIn("\n+kind: Service\n", cp.stdout)
        self.assertEqual(self.cli("get", "service", "rt-new").returncode, 1)

        # traffic through the round-robin VIP reaches only the ready backend
        self.ok("apply", "-f", changed)
        res = self.traffic(vip, 80, 12)
        self.assertEqual((res["ok"], res["answers"], res["ports"]), (12, {"b1": 12}, {"8080": 12}), res)

        # delete -f, and what is left
        cp = self.ok("delete", "-f", path)
        self.assertEqual(cp.stdout, "service/default/rt deleted\nendpointslice/default/rt-1 deleted\n")
        cp = self.cli("get", "service", "rt")
        self.assertEqual(cp.returncode, 1)
        self.assertIn("service default/rt not found", cp.stderr)
        self.assertNotIn(vip, self.ok("explain").stdout)
        cp = self.ok("get", "services", "-n", "nowhere")
        self.assertEqual((cp.stdout, cp.stderr), ("", "No resources found in nowhere namespace.\n"))

    def test_namespaces_and_delete_by_name(self):
        for ns in ("team-a", "team-b"):
            self.ok("apply", "-f", "-", "-n", ns, input=yaml.safe_dump(
                {"kind": "Service", "metadata": {"name": "same"},
                 "spec": {"clusterIps": ["198.19.31.%d" % (1 if ns == "team-a" else 2)], "ports": [{"port": 80}]}}))
        rows = self.ok("get", "svc", "-n", "team-a").stdout.splitlines()
        self.assertEqual(len(rows), 2, rows)
        self.assertEqual(rows[1].split()[:4], ["team-a", "same", "ClusterIP", "198.19.31.1"])
        self.assertEqual(len([r for r in self.ok("get", "svc", "-A").stdout.splitlines() if " same " in r]), 2)
        self.assertEqual(self.ok("delete", "service", "same", "-n", "team-a").stdout,
                         "service/team-a/same deleted\n")
        self.assertEqual(self.cli("get", "svc", "same", "-n", "team-a").returncode, 1)
        self.ok("get", "svc", "same", "-n", "team-b")
        self.ok("delete", "svc", "same", "-n", "team-b")

    def test_status_version_and_help(self):
        st = self.ok("status").stdout
        self.assertRegex(st, r"Server version:\s+\d+\.\d+\.\d+")
        self.assertRegex(st, r"Services:\s+\d+")
        self.assertRegex(st, r"Last sync duration:\s+[\d.]+ ms|Last sync:\s+<none>")
        # A refused write is the last error until the next one.
        self.assertEqual(self.cli("delete", "service", "no-such-svc-status").returncode, 1)
        st = self.ok("status").stdout
        self.assertRegex(st, r"Last error:\s+Delete: service default/no-such-svc-status not found")
        js = json.loads(self.ok("status", "-o", "json").stdout)
        self.assertIn("revision", js)
        self.assertRegex(self.ok("version").stdout, r"Client version: .*\nServer version: ")
        for command in COMMANDS:
            cp = subprocess.run([BIN, command, "--help"], capture_output=True, text=True, timeout=10)
            self.assertEqual(cp.returncode, 0, command)
            self.assertTrue(cp.stdout.startswith("Usage: nftproxy " + command), cp.stdout)
            self.assertIn("Example", cp.stdout, command)
        cp = subprocess.run([BIN, "--help"], capture_output=True, text=True, timeout=10)
        for command in COMMANDS:
            self.assertRegex(cp.stdout, r"\n  %s\s" % command)


class ManifestInputTest(CliCase):

    def test_directory_of_mixed_manifests(self):
        d = os.path.join(self.tmp, "mixed")
        os.mkdir(d)
        # nftproxy YAML (two documents), nftproxy JSON, Kubernetes YAML, and a file that is not a manifest.
        self.write([own_service("mix-a", "198.19.32.1", [{"name": "http", "port": 80, "targetPort": 8080}]),
                    own_slice("mix-a-1", "mix-a", [{"name": "http", "port": 8080}],
                              [{"addresses": [self.v4("b1")]}])], "10-own.yaml", directory=d)
        self.write({"kind": "Workload", "metadata": {"name": "mix-w", "labels": {"app": "mix-b"}},
                    "addresses": [self.v4("b2")], "ports": [{"name": "http", "port": 8080}]},
                   "20-workload.json", fmt="json", directory=d)
        self.write([own_service("mix-b", "198.19.32.2", [{"port": 80, "targetPort": "http"}],
                                selector={"app": "mix-b"})], "30-selector.yml", directory=d)
        self.write([{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "mix-k", "uid": "u"},
                     "spec": {"clusterIP": "198.19.32.3", "ports": [{"port": 80, "targetPort": 8080}]}},
                    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                     "metadata": {"name": "mix-k-abcde", "labels": {"kubernetes.io/service-name": "mix-k"}},
                     "addressType": "IPv4", "endpoints": [{"addresses": [self.v4("b3")]}],
                     "ports": [{"port": 8080, "protocol": "TCP"}]}], "40-k8s.yaml", directory=d)
        self.write("not yaml: [", "README.md", directory=d)
        self.addCleanup(self.cli, "delete", "-f", d)
        cp = self.ok("apply", "-f", d)
        self.assertEqual(cp.stdout.splitlines(), [
            "service/default/mix-a created", "endpointslice/default/mix-a-1 created",
            "workload/default/mix-w created", "service/default/mix-b created",
            "service/default/mix-k created", "endpointslice/default/mix-k-abcde created"])
        for vip, backend in (("198.19.32.1", "b1"), ("198.19.32.2", "b2"), ("198.19.32.3", "b3")):
            res = self.traffic(vip, 80, 6)
            self.assertEqual((res["ok"], res["answers"]), (6, {backend: 6}), (vip, res))
        # describe of a selector service lists the workloads it picks
        self.assertRegex(self.ok("describe", "svc", "mix-b").stdout, r"workload/mix-w\s+%s\s+http:8080" % self.v4("b2"))
        self.assertEqual(self.cli("diff", "-f", d).returncode, 0)
        self.ok("delete", "-f", d)
        self.assertEqual(self.ok("get", "services", "-n", "default").stdout.count("mix-"), 0)

    def test_kubernetes_export_gives_working_vips(self):
        vip = "198.19.33.10"
        ns = "shop"
        path = self.write(k8s_export(ns, vip, [self.v4(b) for b in BACKENDS]))
        self.addCleanup(self.cli, "delete", "service", "shop-web", "-n", ns)
        self.addCleanup(self.cli, "delete", "endpointslice", "shop-web-7xk2p", "-n", ns)
        self.addCleanup(self.cli, "delete", "service", "shop-db", "-n", ns)
        cp = self.ok("apply", "-f", path)
        # The headless service is kept (no cluster IP: DNS only); its selector is dropped, as every Service's.
        self.assertEqual(cp.stdout, "service/shop/shop-web created\nservice/shop/shop-db created\n"
                                    "endpointslice/shop/shop-web-7xk2p created\n")
        warnings = cp.stderr.splitlines()
        self.assertEqual(len(warnings), 2, cp.stderr)
        self.assertRegex(warnings[1], r"^warning: %s: document 1, items\[1\] \(Kubernetes Service shop/shop-db\): "
                                      r"line \d+, column \d+: spec.selector" % path)
        # (the manifest reader now also names the List item: "document 1, items[2] (...)")
        self.assertRegex(warnings[0], r"^warning: %s: document 1(, items\[2\])? \(Kubernetes Endpoints shop/shop-web\): "
                                      r"left out" % path)
        # the named target port resolves through the slice; the not-ready pod gets nothing
        res = self.traffic(vip, 80, 30)
        self.assertEqual(res["errors"], {}, res)
        self.assertEqual(sorted(res["answers"]), ["b1", "b2"], res)
        self.assertEqual(res["ports"], {"8080": 30}, res)
        res = self.traffic(vip, 9000, 10)
        self.assertEqual((res["ok"], res["ports"]), (10, {"9090": 10}), res)
        d = self.ok("describe", "service", "shop-web", "-n", ns).stdout
        self.assertRegex(d, r"endpointslice/shop-web-7xk2p\s+%s\s+http:8080,grpc:9090\s+true\s+true\s+false\s+1\s+"
                            r"node-a\s+zone-1" % self.v4("b1"))
        self.assertRegex(d, r"endpointslice/shop-web-7xk2p\s+%s\s+\S+\s+false\s+false\s+false" % self.v4("b3"))
        self.assertIn("chain svc4/shop/shop-web/tcp/80 {", d)
        # applying the same export again changes nothing
        self.assertEqual(self.cli("diff", "-f", path).returncode, 0)
        self.assertIn("unchanged", self.ok("apply", "-f", path).stdout)

    def test_broken_yaml_names_file_document_and_place(self):
        path = self.write("kind: Workload\nmetadata: {name: fine}\n---\nkind: Service\nmetadata:\n"
                          "  name: broken\n  labels: {a: b\nspec: {}\n")
        cp = self.cli("apply", "-f", path)
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertRegex(cp.stderr, r"^error: %s: document 2: line \d+, column \d+: [^\n]+\n$" % path)
        self.assertEqual(self.cli("get", "workload", "fine").returncode, 1, "nothing may be applied")

    def test_invalid_field_name_names_file_document_and_field(self):
        path = self.write([{"kind": "Workload", "metadata": {"name": "w"}},
                           {"kind": "Service", "metadata": {"name": "bad-field"},
                            "spec": {"clusterIP": "198.19.34.1", "ports": [{"port": 80}]}}])
        cp = self.cli("apply", "-f", path)
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertEqual(cp.stderr, 'error: %s: document 2 (Service): line 9, column 3: spec.clusterIP: unknown field '
                                    '(ServiceSpec has no field "clusterIP"; did you mean "clusterIps"?)\n' % path)
        # a Kubernetes manifest with an unsupported value
        path = self.write([{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"},
                            "spec": {"clusterIP": "198.19.34.2", "ports": [{"port": 80, "protocol": "HTTP"}]}}])
        cp = self.cli("apply", "-f", path)
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertRegex(cp.stderr, r'^error: %s: document 1 \(Kubernetes Service default/x\): line \d+, column \d+: '
                                    r'spec.ports\[0\].protocol: protocol "HTTP" is not supported' % path)

    def test_server_refusal_names_file_and_document(self):
        path = self.write([own_service("ok-one", "198.19.35.1", [{"port": 80}]),
                           own_service("bad-port", "198.19.35.2", [{"port": 70000}])])
        cp = self.cli("apply", "-f", path)
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertEqual(cp.stderr, "error: %s: document 2: service default/bad-port: spec.ports[0].port: 70000 is "
                                    "out of range (1-65535)\n" % path)
        self.assertEqual(self.cli("get", "service", "ok-one").returncode, 1, "all or nothing")
        cp = self.cli("diff", "-f", path)
        self.assertEqual(cp.returncode, 2, cp.stderr)

    def test_unreachable_server_and_bad_usage(self):
        cp = subprocess.run([BIN, "get", "services", "--server", "unix://" + os.path.join(self.tmp, "nobody.sock")],
                            capture_output=True, text=True, timeout=30)
        self.assertEqual(cp.returncode, 3, cp.stderr)
        self.assertIn("cannot reach the nftproxy server", cp.stderr)
        for args in (("get",), ("get", "pods"), ("get", "svc", "-o", "xml"), ("apply",), ("explain", "--dry-run"),
                     ("describe", "svc"), ("frobnicate",)):
            cp = self.cli(*args)
            self.assertEqual(cp.returncode, 2, (args, cp.stderr))
            self.assertTrue(cp.stderr.startswith("error: "), cp.stderr)


class OwnershipAndWatchTest(CliCase):

    def test_sync_sources_and_conflicts(self):
        a = os.path.join(self.tmp, "alice")
        os.mkdir(a)
        self.write([own_service("own-a1", "198.19.36.1", [{"port": 80}]),
                    own_service("own-a2", "198.19.36.2", [{"port": 80}])], "a.yaml", directory=a)
        self.addCleanup(self.cli, "sync", "--source", "alice", "-f", "/dev/null")
        self.addCleanup(self.cli, "sync", "--source", "bob", "-f", "/dev/null")
        cp = self.ok("sync", "--source", "alice", "-f", a)
        self.assertIn("source alice: 2 created, 0 configured, 0 deleted, 0 unchanged", cp.stdout)
        self.ok("sync", "--source", "bob", "-f", "-", input=yaml.safe_dump(own_service("own-b1", "198.19.36.3",
                                                                                      [{"port": 80}])))
        before = json.loads(self.ok("get", "service", "own-b1", "-o", "json").stdout)
        # alice drops a1: bob's service is not touched
        self.write([own_service("own-a2", "198.19.36.2", [{"port": 80}])], "a.yaml", directory=a)
        cp = self.ok("sync", "--source", "alice", "-f", a)
        self.assertIn("service/default/own-a1 deleted", cp.stdout)
        self.assertIn("0 created, 0 configured, 1 deleted, 1 unchanged", cp.stdout)
        self.assertEqual(json.loads(self.ok("get", "service", "own-b1", "-o", "json").stdout), before)
        wide = self.ok("get", "svc", "-o", "wide").stdout
        self.assertRegex(wide, r"own-a2 .* alice +\d+\n")
        self.assertRegex(wide, r"own-b1 .* bob +\d+\n")
        # a conflict is refused with exit 1, naming both sources; nothing changes
        path = self.write([own_service("own-b1", "198.19.36.9", [{"port": 80}])])
        cp = self.cli("sync", "--source", "alice", "-f", path)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn('service default/own-b1: conflict: owned by source "bob", and this request is from source '
                      '"alice"', cp.stderr)
        self.assertEqual(self.cli("get", "service", "own-a2").returncode, 0, "alice's a2 must survive the refusal")
        cp = self.cli("apply", "-f", path)
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn('owned by source "bob"', cp.stderr)
        cp = self.cli("delete", "service", "own-b1")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertEqual(self.ok("delete", "service", "own-b1", "--source", "bob").stdout,
                         "service/default/own-b1 deleted\n")

    def test_watch_streams_changes_and_resumes(self):
        lines = queue.Queue()
        proc = subprocess.Popen([BIN, "watch", "services", "-n", "default", "-o", "json", "--server", self.url],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def stop():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
            proc.stdout.close()
            proc.stderr.close()
        self.addCleanup(stop)
        threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
        # the bookmark line on stderr says the watch is live
        self.assertIn("up to date at revision", proc.stderr.readline())
        start = json.loads(self.ok("status", "-o", "json").stdout).get("revision", "0")
        svc = own_service("watched", "198.19.37.1", [{"port": 80}])
        self.addCleanup(self.cli, "delete", "service", "watched")
        self.ok("apply", "-f", "-", input=yaml.safe_dump(svc))
        svc["spec"]["ports"][0]["port"] = 81
        self.ok("apply", "-f", "-", input=yaml.safe_dump(svc))
        self.ok("apply", "-f", "-", input=yaml.safe_dump(own_slice("watched-1", "watched", [], [])))  # not a service
        self.ok("delete", "service", "watched")
        events = []
        while len(events) < 3:
            try:
                e = json.loads(lines.get(timeout=10))
            except queue.Empty:
                self.fail("watch delivered only %s" % events)
            if e["resource"]["service"]["metadata"]["name"] == "watched":
                events.append(e)
        self.ok("delete", "endpointslice", "watched-1")
        summary = [(e["type"], e["resource"]["service"]["metadata"]["name"], int(e["revision"])) for e in events]
        r0 = int(start)
        self.assertEqual(summary, [("UPSERT", "watched", r0 + 1), ("UPSERT", "watched", r0 + 2),
                                   ("DELETE", "watched", r0 + 4)])
        self.assertEqual(events[1]["resource"]["service"]["spec"]["ports"][0]["port"], 81)
        # resume after the first event: the rest again, then the bookmark
        cp = subprocess.run(["timeout", "-s", "TERM", "3", BIN, "watch", "services", "-n", "default",
                             "--since", str(r0 + 1), "--server", self.url], capture_output=True, text=True,
                            timeout=30)
        rows = [line.split() for line in cp.stdout.splitlines()]
        self.assertEqual(rows, [["REVISION", "EVENT", "KIND", "NAMESPACE", "NAME"],
                                [str(r0 + 2), "UPSERT", "service", "default", "watched"],
                                [str(r0 + 4), "DELETE", "service", "default", "watched"]], cp.stderr)
        cp = self.cli("watch", "--since", "999999999")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("is newer than the server's", cp.stderr)


def raw(*args, input=None, timeout=60):
    """The binary with exactly these arguments (no --server added)."""
    return subprocess.run([BIN] + list(args), capture_output=True, text=True, input=input, timeout=timeout)


class DryRunTest(CliCase):
    """Every write command's --dry-run goes through the server's dry run and changes nothing."""

    def test_delete_dry_run_in_every_form(self):
        path = self.write([own_service("dry-del", "198.19.40.1", [{"port": 80}])])
        self.addCleanup(self.cli, "delete", "-f", path)
        self.ok("apply", "-f", path)
        for args in (("delete", "service", "dry-del", "--dry-run"),
                     ("delete", "--dry-run", "service", "dry-del"),
                     ("--dry-run", "delete", "svc", "dry-del"),
                     ("delete", "-f", path, "--dry-run"),
                     ("delete", "--dry-run", "-f", path),
                     ("delete", "service", "dry-del", "--dry-run=server"),
                     ("delete", "service", "dry-del", "--dry-run=client"),
                     ("delete", "-f", path, "--dry-run=true")):
            cp = self.ok(*args)
            self.assertEqual(cp.stdout, "service/default/dry-del deleted (dry run)\n", args)
            self.assertEqual(self.cli("get", "service", "dry-del").returncode, 0, "%s deleted it" % (args,))
        # a dry run of something that would fail fails like the real thing
        cp = self.cli("delete", "service", "no-such-dry", "--dry-run")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("not found", cp.stderr)
        # --dry-run=none (and =false) is a real delete
        cp = self.ok("delete", "service", "dry-del", "--dry-run=none")
        self.assertEqual(cp.stdout, "service/default/dry-del deleted\n")
        self.assertEqual(self.cli("get", "service", "dry-del").returncode, 1)
        cp = self.cli("delete", "service", "x", "--dry-run=maybe")
        self.assertEqual(cp.returncode, 2, cp.stderr)

    def test_apply_and_sync_dry_run_change_nothing(self):
        path = self.write([own_service("dry-new", "198.19.40.2", [{"port": 80}])])
        self.addCleanup(self.cli, "delete", "-f", path)
        for args in (("apply", "-f", path, "--dry-run"), ("apply", "--dry-run=server", "-f", path),
                     ("--dry-run", "apply", "-f", path)):
            cp = self.ok(*args)
            self.assertEqual(cp.stdout, "service/default/dry-new created (dry run)\n", args)
            self.assertEqual(self.cli("get", "service", "dry-new").returncode, 1, args)
        cp = self.ok("sync", "--source", "dry-src", "-f", path, "--dry-run")
        self.assertIn("service/default/dry-new created (dry run)", cp.stdout)
        self.assertEqual(self.cli("get", "service", "dry-new").returncode, 1)


class ServerAddressTest(CliCase):
    """--server as a plain socket path or a refused scheme; --request-timeout bounds an unreachable server."""

    def test_plain_socket_path_and_bad_schemes(self):
        for server in (self.sock, "unix:" + self.sock, self.url):
            cp = raw("get", "services", "--server", server)
            self.assertEqual(cp.returncode, 0, (server, cp.stderr))
        cp = raw("status", "--server", "http://127.0.0.1:7070")
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertIn("http:// is not a scheme nftproxy speaks", cp.stderr)
        self.assertNotIn("DNS", cp.stderr)
        cp = raw("status", "--server", "tcp://127.0.0.1:99999")
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertIn("is not a number from 1 to 65535", cp.stderr)

    def test_request_timeout_bounds_an_unreachable_server(self):
        import socket
        # A listening socket that never accepts: the TCP handshake completes
        # in the kernel, the gRPC handshake never does.
        lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(lst.close)
        lst.bind(("127.0.0.1", 0))
        lst.listen(0)
        hung = "tcp://127.0.0.1:%d" % lst.getsockname()[1]
        closed = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        closed.bind(("127.0.0.1", 0))
        closed_port = closed.getsockname()[1]
        closed.close()
        broken = self.write("kind: Service\nmetadata: {name: [\n")
        for server in (hung, "127.0.0.1:%d" % closed_port):
            for args in (("get", "services"), ("status",), ("apply", "-f", broken), ("watch",)):
                start = time.monotonic()
                cp = raw(*args, "--server", server, "--request-timeout", "1s", timeout=30)
                took = time.monotonic() - start
                # apply connects before it reads the manifest: unreachable (3), not invalid (2)
                self.assertEqual(cp.returncode, 3, (server, args, cp.stderr))
                self.assertIn("cannot reach the nftproxy server", cp.stderr)
                self.assertLess(took, 4.0, (server, args))
        for value in ("0", "5s", "1m30s", "250ms", "7"):
            cp = self.cli("get", "services", "--request-timeout", value)
            self.assertEqual(cp.returncode, 0, (value, cp.stderr))
        cp = self.cli("get", "services", "--request-timeout", "soon")
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertIn("--request-timeout", cp.stderr)


SCALE_NS = "scale"
SCALE_COUNT = 1200


def scale_manifest(backend):
    """SCALE_COUNT services and one slice each, in one multi-document YAML text."""
    docs = []
    for i in range(SCALE_COUNT):
        name = "s%04d" % i
        docs.append(own_service(name, "198.19.%d.%d" % (100 + i // 200, i % 200 + 1),
                                [{"name": "http", "port": 80, "targetPort": 8080}], namespace=SCALE_NS))
        docs.append(own_slice(name + "-1", name, [{"name": "http", "port": 8080}],
                              [{"addresses": [backend], "nodeName": "n%d" % i}], namespace=SCALE_NS))
    return netlab.to_yaml(docs)


class ScaleTest(CliCase):
    """More resources than one List page (500): every listing follows the page token."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.big = os.path.join(cls.tmp, "big.yaml")
        with open(cls.big, "w") as f:
            f.write(scale_manifest(cls.star.v4["b1"]))
        cp = subprocess.run([BIN, "apply", "-f", cls.big, "--server", cls.url], capture_output=True, text=True,
                            timeout=120)
        if cp.returncode != 0:
            raise AssertionError("apply of %d services failed: %s" % (SCALE_COUNT, cp.stderr))

    def names(self, text):
        return [line.split()[1] for line in text.splitlines()[1:]]

    def test_get_lists_every_page(self):
        want = ["s%04d" % i for i in range(SCALE_COUNT)]
        self.assertEqual(self.names(self.ok("get", "svc", "-n", SCALE_NS).stdout), want)
        all_ns = [line.split() for line in self.ok("get", "svc", "-A").stdout.splitlines()[1:]]
        self.assertEqual([r[1] for r in all_ns if r[0] == SCALE_NS], want)
        table = self.ok("get", "svc", "-n", SCALE_NS).stdout.splitlines()
        for line in table[1:]:  # one set of column widths for every page
            self.assertEqual(line.index("ClusterIP"), table[0].index("TYPE"), line)
        self.assertEqual(len(self.ok("get", "endpointslices", "-n", SCALE_NS, "--no-headers").stdout.splitlines()),
                         SCALE_COUNT)
        self.assertEqual(self.ok("get", "svc", "-n", SCALE_NS, "-o", "name").stdout,
                         "".join("service/%s\n" % n for n in want))
        js = json.loads(self.ok("get", "svc", "-n", SCALE_NS, "-o", "json").stdout)
        self.assertEqual([i["metadata"]["name"] for i in js["items"]], want)
        docs = list(yaml.safe_load_all(self.ok("get", "svc", "-n", SCALE_NS, "-o", "yaml").stdout))
        self.assertEqual([d["metadata"]["name"] for d in docs], want)
        cp = self.ok("get", "svc", "-n", SCALE_NS, "-o", "jsonpath={.items[*].metadata.name}")
        self.assertEqual(cp.stdout.split(), want)
        cp = self.ok("get", "svc", "-n", SCALE_NS, "-o", 'jsonpath={range .items[*]}{.metadata.name}{"\\n"}{end}')
        self.assertEqual(cp.stdout, "".join(n + "\n" for n in want))

    def test_describe_watch_diff_past_the_first_page(self):
        # the slice of the last service is on the third page of the namespace's slices
        d = self.ok("describe", "service", "s%04d" % (SCALE_COUNT - 1), "-n", SCALE_NS).stdout
        self.assertRegex(d, r"endpointslice/s%04d-1\s+%s" % (SCALE_COUNT - 1, self.v4("b1")))
        cp = self.cli("diff", "-f", self.big)
        self.assertEqual((cp.returncode, cp.stdout), (0, ""), cp.stderr)
        cp = subprocess.run(["timeout", "-s", "TERM", "5", BIN, "watch", "services", "-n", SCALE_NS, "--server",
                             self.url], capture_output=True, text=True, timeout=30)
        rows = [line.split() for line in cp.stdout.splitlines()[1:]]
        self.assertEqual(sorted(r[4] for r in rows if r[1] == "UPSERT"), ["s%04d" % i for i in range(SCALE_COUNT)])
        self.assertIn("up to date at revision", cp.stderr)


class HabitsTest(CliCase):
    """What kubectl users type: output forms, selectors, several kinds, quiet misses, completion."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        docs = [own_service("web", "198.19.41.1", [{"name": "http", "port": 80}], namespace="habits"),
                own_service("db", "198.19.41.2", [{"port": 5432}], namespace="habits"),
                own_service("plain", "198.19.41.3", [{"port": 81}], namespace="habits"),
                {"kind": "Service", "metadata": {"namespace": "habits", "name": "ext"},
                 "spec": {"type": "EXTERNAL_NAME", "externalName": "db.example.com"}},
                own_slice("web-1", "web", [{"name": "http", "port": 8080}],
                          [{"addresses": [cls.star.v4["b1"]]}], namespace="habits"),
                {"kind": "Workload", "metadata": {"namespace": "habits", "name": "w1", "labels": {"app": "web"}},
                 "addresses": [cls.star.v4["b2"]]}]
        docs[0]["metadata"]["labels"] = {"app": "web", "tier": "front"}
        docs[1]["metadata"]["labels"] = {"app": "db", "tier": "db"}
        docs[3]["metadata"]["labels"] = {"app": "ext"}
        cls.path = os.path.join(cls.tmp, "habits.yaml")
        with open(cls.path, "w") as f:
            yaml.safe_dump_all(docs, f, sort_keys=False)
        cp = subprocess.run([BIN, "apply", "-f", cls.path, "--server", cls.url], capture_output=True, text=True,
                            timeout=60)
        if cp.returncode != 0:
            raise AssertionError(cp.stderr)

    def get(self, *args):
        return self.ok("get", *args, "-n", "habits").stdout

    def test_kubectl_spellings_empty_input_and_duplicates(self):
        # Item 4: the values kubectl users write are understood by a real server...
        path = self.write("""kind: Service
metadata: {namespace: spell, name: np}
spec:
  type: NodePort
  clusterIps: [198.19.42.1]
  externalTrafficPolicy: Local
  sessionAffinity: ClientIP
  sessionAffinityTimeout: 600
  ports: [{name: http, protocol: tcp, port: 80, targetPort: 8080, nodePort: 30942},
          {name: dns, protocol: udp, port: 53, targetPort: 5353, nodePort: 30943}]
""")
        self.ok("apply", "-f", path)
        spec = json.loads(self.ok("get", "svc", "np", "-n", "spell", "-o", "json").stdout)["spec"]
        self.assertEqual((spec["type"], spec["externalTrafficPolicy"], spec["sessionAffinity"]),
                         ("NODE_PORT", "LOCAL", "CLIENT_IP"))
        self.assertEqual(spec["sessionAffinityTimeout"], "600s")
        self.assertEqual(spec["ports"][0].get("protocol", "TCP"), "TCP")  # the default, left out
        self.assertEqual(spec["ports"][1]["protocol"], "UDP")
        # ... and anything else is refused with its place and the valid values.
        bad = self.write("kind: Service\nmetadata: {namespace: spell, name: bad}\nspec:\n  type: NodePorts\n"
                         "  clusterIps: [198.19.42.2]\n  ports: [{port: 80}]\n")
        cp = self.cli("apply", "-f", bad)
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertIn(bad + ": document 1", cp.stderr)
        self.assertIn("line 4", cp.stderr)
        self.assertIn('spec.type: "NodePorts" is not a service type; valid: ClusterIP, NodePort, LoadBalancer, '
                      'ExternalName', cp.stderr)
        self.assertEqual(self.cli("get", "svc", "bad", "-n", "spell").returncode, 1)
        # Item 5: no objects is an error, as in kubectl.
        for text in ("", "# only a comment\n", "---\n---\n"):
            cp = self.cli("apply", "-f", self.write(text))
            self.assertEqual(cp.returncode, 2, repr(text))
            self.assertIn("no objects", cp.stderr)
        # Item 9: a resource given twice names both places.
        twice = self.write([own_service("dup", "198.19.42.3", [{"port": 80}], namespace="spell"),
                            own_service("dup", "198.19.42.4", [{"port": 80}], namespace="spell")])
        cp = self.cli("apply", "-f", twice)
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertIn(twice + ": document 2", cp.stderr)
        self.assertIn("also in " + twice + ": document 1", cp.stderr)

    def test_output_name_jsonpath_and_no_headers(self):
        self.assertEqual(self.get("svc", "-o", "name"), "service/db\nservice/ext\nservice/plain\nservice/web\n")
        self.assertEqual(self.get("svc", "web", "-o", "name"), "service/web\n")
        self.assertEqual(self.get("svc", "web", "-o", "jsonpath={.metadata.name}"), "web")
        self.assertEqual(self.get("svc", "web", "-o", "jsonpath={.spec.ports[0].port}"), "80")
        self.assertEqual(self.get("svc", "web", "-o", "jsonpath={.metadata.labels.tier}/{.spec.clusterIps[*]}"),
                         "front/198.19.41.1")
        self.assertEqual(self.get("svc", "-o", "jsonpath={.items[*].metadata.name}"), "db ext plain web")
        self.assertEqual(self.get("svc", "-o", 'jsonpath={range .items[*]}{.metadata.name}:{.spec.type}{"\\n"}{end}'),
                         "db:\next:EXTERNAL_NAME\nplain:\nweb:\n")
        cp = self.cli("get", "svc", "-n", "habits", "-o", "jsonpath={.items[")
        self.assertEqual(cp.returncode, 2, cp.stderr)
        rows = self.get("svc", "--no-headers").splitlines()
        self.assertEqual([r.split()[1] for r in rows], ["db", "ext", "plain", "web"])
        # json is indented by two spaces, like kubectl
        self.assertTrue(self.get("svc", "web", "-o", "json").startswith('{\n  "kind": "Service",\n  "metadata": {\n'
                                                                         '    "namespace": "habits",'))

    def test_label_selectors(self):
        sel = lambda s: [r.split()[1] for r in self.get("svc", "-l", s, "--no-headers").splitlines()]  # noqa: E731
        self.assertEqual(sel("app=web"), ["web"])
        self.assertEqual(sel("app==web"), ["web"])
        self.assertEqual(sel("tier!=db"), ["ext", "plain", "web"])
        self.assertEqual(sel("tier"), ["db", "web"])
        self.assertEqual(sel("!tier"), ["ext", "plain"])
        self.assertEqual(sel("app,tier!=front"), ["db", "ext"])
        self.assertEqual(self.get("svc", "--selector", "app=web", "-o", "name"), "service/web\n")
        self.assertEqual(self.get("workloads", "-l", "app=web", "-o", "name"), "workload/w1\n")
        cp = self.cli("get", "svc", "-n", "habits", "-l", "app=nothing")
        self.assertEqual((cp.returncode, cp.stdout, cp.stderr), (0, "", "No resources found in habits namespace.\n"))
        for bad in ("app in (web)", "=web", "a=b=c"):
            cp = self.cli("get", "svc", "-l", bad)
            self.assertEqual(cp.returncode, 2, (bad, cp.stderr))

    def test_several_kinds_and_all(self):
        out = self.get("svc,eps")
        tables = out.split("\n\n")
        self.assertEqual(len(tables), 2, out)
        self.assertEqual(tables[0].splitlines()[0].split()[:3], ["NAMESPACE", "NAME", "TYPE"])
        self.assertIn("service/web", tables[0])
        self.assertEqual(tables[1].splitlines()[0].split()[:3], ["NAMESPACE", "NAME", "SERVICE"])
        self.assertIn("endpointslice/web-1", tables[1])
        self.assertEqual(self.get("all", "-o", "name"),
                         "service/db\nservice/ext\nservice/plain\nservice/web\nendpointslice/web-1\nworkload/w1\n")
        self.assertEqual(self.get("services,workloads", "-o", "name"),
                         "service/db\nservice/ext\nservice/plain\nservice/web\nworkload/w1\n")
        js = json.loads(self.get("svc,wl", "-o", "json"))
        self.assertEqual([i["kind"] for i in js["items"]], ["Service"] * 4 + ["Workload"])
        cp = self.cli("get", "svc,pods", "-n", "habits")
        self.assertEqual(cp.returncode, 2, cp.stderr)

    def test_ignore_not_found(self):
        cp = self.cli("get", "svc", "nope", "-n", "habits")
        self.assertEqual(cp.returncode, 1, cp.stderr)
        cp = self.cli("get", "svc", "nope", "-n", "habits", "--ignore-not-found")
        self.assertEqual((cp.returncode, cp.stdout, cp.stderr), (0, "", ""))
        cp = self.cli("delete", "svc", "nope", "-n", "habits", "--ignore-not-found")
        self.assertEqual((cp.returncode, cp.stdout, cp.stderr), (0, "", ""))
        gone = self.write([own_service("never-there", "198.19.41.9", [{"port": 80}], namespace="habits")])
        cp = self.cli("delete", "-f", gone, "--ignore-not-found")
        self.assertEqual((cp.returncode, cp.stderr), (0, ""))
        cp = self.cli("delete", "-f", gone)
        self.assertEqual(cp.returncode, 1, cp.stderr)

    def test_external_name_shows_no_load_balancing(self):
        row = [r for r in self.get("svc", "-o", "wide").splitlines() if r.split()[1] == "ext"][0].split()
        self.assertEqual(row[2:5], ["ExternalName", "<none>", "db.example.com"])
        self.assertNotIn("RANDOM", row)
        self.assertNotIn("RANDOM", self.ok("describe", "svc", "ext", "-n", "habits").stdout)

    def test_explicit_default_is_no_change(self):
        svc = own_service("defaults", "198.19.41.4", [{"port": 80}], namespace="habits")
        self.addCleanup(self.cli, "delete", "service", "defaults", "-n", "habits")
        self.ok("apply", "-f", "-", input=yaml.safe_dump(svc))
        svc["spec"].update({"loadBalancing": "RANDOM", "type": "CLUSTER_IP", "sessionAffinity": "NONE",
                            "externalTrafficPolicy": "CLUSTER", "internalTrafficPolicy": "CLUSTER"})
        svc["spec"]["ports"][0]["protocol"] = "TCP"
        explicit = self.write([svc])
        cp = self.cli("diff", "-f", explicit)
        self.assertEqual((cp.returncode, cp.stdout), (0, ""), cp.stderr)
        self.assertEqual(self.ok("apply", "-f", explicit).stdout, "service/habits/defaults unchanged\n")
        # and a real change still shows
        svc["spec"]["loadBalancing"] = "ROUND_ROBIN"
        cp = self.cli("diff", "-f", self.write([svc]))
        self.assertEqual(cp.returncode, 1, cp.stderr)
        self.assertIn("\n+  loadBalancing: ROUND_ROBIN\n", cp.stdout)

    def test_version_and_completion(self):
        for args in (("--version",), ("version", "--client")):
            cp = raw(*args, "--server", "unix:///nonexistent")
            self.assertEqual(cp.returncode, 0, cp.stderr)
            self.assertRegex(cp.stdout, r"^(nftproxy version|Client version:) \d+\.\d+\.\d+\n$")
        cp = subprocess.run(["bash", "-c", "source <(%s completion bash); complete -p nftproxy" % BIN],
                            capture_output=True, text=True, timeout=10)
        self.assertEqual(cp.returncode, 0, cp.stderr)
        self.assertEqual(cp.stderr, "")
        self.assertIn("nftproxy", cp.stdout)

        def complete(*words):
            # names are asked of `nftproxy` as the line names it (COMP_WORDS[0]), found on PATH
            script = ("PATH=%s:$PATH\nsource <(%s completion bash)\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\nCOMP_LINE=\"${COMP_WORDS[*]}\"\n"
                      "COMP_POINT=${#COMP_LINE}\n_nftproxy nftproxy '%s' '%s'\nprintf '%%s\\n' \"${COMPREPLY[@]}\""
                      % (os.path.dirname(os.path.abspath(BIN)), BIN, " ".join("'%s'" % w for w in words), len(words) - 1, words[-1], words[-2]))
            cp = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=20)
            self.assertEqual(cp.stderr, "", words)
            return sorted(cp.stdout.split())
        self.assertEqual(complete("nftproxy", "ge"), ["get"])
        self.assertEqual(complete("nftproxy", "d"), ["delete", "describe", "diff"])
        self.assertIn("completion", complete("nftproxy", ""))
        self.assertEqual(complete("nftproxy", "get", "s"), ["services", "svc"])
        self.assertIn("all", complete("nftproxy", "get", ""))
        self.assertEqual(complete("nftproxy", "get", "svc", "-o", "ya"), ["yaml"])
        self.assertIn("--ignore-not-found", complete("nftproxy", "delete", "--ig"))
        self.assertEqual(complete("nftproxy", "completion", ""), ["bash", "fish", "zsh"])
        # names come from the server named on the line
        self.assertEqual(complete("nftproxy", "--server", self.url, "get", "svc", "-n", "habits", "w"), ["web"])
        for shell in ("zsh", "fish"):
            cp = raw("completion", shell)
            self.assertEqual(cp.returncode, 0, cp.stderr)
            self.assertIn("nftproxy", cp.stdout)
        self.assertEqual(raw("completion", "tcsh").returncode, 2)

    def test_man_page_renders_without_warnings(self):
        page = os.path.join(REPO, "packaging", "nftproxy.1")
        env = dict(os.environ, MANWIDTH="80", LANG="C.UTF-8")
        cp = subprocess.run(["man", "--warnings", "-l", page], capture_output=True, text=True, timeout=30, env=env)
        self.assertEqual((cp.returncode, cp.stderr), (0, ""))
        for command in ("serve",) + COMMANDS:
            self.assertRegex(cp.stdout, r"\n {7}%s\b" % command, command)
        for flag in ("--request-timeout", "--dry-run", "--ignore-not-found", "--selector", "jsonpath"):
            self.assertIn(flag, cp.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
