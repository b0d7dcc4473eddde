"""A real etcd cluster (Debian's etcd-server 3.4) for the shared-store tests
and the multi-node benchmark.

Each member runs in its own network namespace of a netlab.Lab, with one veth
into the LAN namespace's bridge, so a test can stop, kill or cut off one
member (or a node) without touching the others:

    etcd1 SUBNET.(first)   etcd2 SUBNET.(first+1)   ...
      ------------- LAN namespace, bridge ------------

Members listen for clients on :2379 and for peers on :2380, plain HTTP, each
with its own data dir under tmp. Everything is removed with the lab.
"""

import json
import os
import signal
import subprocess
import time

import netlab

ETCD = "/usr/bin/etcd"
ETCDCTL = "/usr/bin/etcdctl"


def require_etcd():
    """Raises (CI) or skips when Debian's etcd-server is missing."""
    import unittest
    if not os.access(ETCD, os.X_OK):
        why = "etcd not found at %s (Debian's etcd-server)" % ETCD
        if os.environ.get("CI", "").lower() == "true":
            raise AssertionError(why)
        raise unittest.SkipTest(why)


class EtcdCluster:
    """members etcd1..etcdN in namespaces on `lan`'s bridge `bridge`."""

    def __init__(self, lab, tmp, members=3, lan="lan", bridge="br0", subnet="198.18.100", first_host=20,
                 prefix_len=24):
        self.lab = lab
        self.tmp = tmp
        self.names = ["etcd%d" % (i + 1) for i in range(members)]
        self.ip = {n: "%s.%d" % (subnet, first_host + i) for i, n in enumerate(self.names)}
        self.procs = {}
        self.token = "npx-%d-%d" % (os.getpid(), int(time.time()))
        for n in self.names:
            lab.add_netns(n)
            lab.veth(lan, "p-" + n, n, "eth0")
            lab.enslave(lan, "p-" + n, bridge)
            lab.addr(n, "eth0", "%s/%d" % (self.ip[n], prefix_len))

    # -- addresses --------------------------------------------------------------------

    def client_url(self, name):
        return "http://%s:2379" % self.ip[name]

    def urls(self):
        """Every member's client URL, comma-separated (--etcd-endpoints)."""
        return ",".join(self.client_url(n) for n in self.names)

    def log_path(self, name):
        return os.path.join(self.tmp, name + ".log")

    # -- members ----------------------------------------------------------------------

    def start(self, name, wait=True):
        peer = "http://%s:2380" % self.ip[name]
        cluster = ",".join("%s=http://%s:2380" % (n, self.ip[n]) for n in self.names)
        argv = [ETCD, "--name", name, "--data-dir", os.path.join(self.tmp, name + ".data"),
                "--listen-client-urls", self.client_url(name), "--advertise-client-urls", self.client_url(name),
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", cluster, "--initial-cluster-token", self.token,
                "--initial-cluster-state", "new", "--logger", "zap"]
        log = open(self.log_path(name), "a")
        self.procs[name] = self.lab.spawn(name, argv, stdout=log, stderr=log)
        log.close()
        if wait:
            self.wait_listening(name)

    def wait_listening(self, name, timeout=30):
        try:
            self.lab.wait_listening(name, "tcp", 2379, timeout=timeout)
        except netlab.LabError:
            raise AssertionError("%s did not start; log:\n%s" % (name, netlab.tail(self.log_path(name))))

    def start_all(self):
        # Start every member before waiting: a member of a new cluster serves
        # clients only once a quorum has met.
        for n in self.names:
            if n not in self.procs:
                self.start(n, wait=False)
        for n in self.names:
            self.wait_listening(n)
        self.wait_healthy()

    def stop(self, name, sig=signal.SIGTERM):
        proc = self.procs.pop(name, None)
        if proc is not None:
            self.lab.stop(proc, sig=sig)

    def kill(self, name):
        """kill -9: no goodbye to the other members."""
        self.stop(name, sig=signal.SIGKILL)

    def stop_all(self):
        for n in list(self.procs):
            self.stop(n)

    def running(self):
        return [n for n in self.names if n in self.procs]

    # -- state ------------------------------------------------------------------------

    def ctl(self, name, *args, timeout=10):
        """etcdctl (v3 API) run in member `name`'s namespace against that member."""
        env = dict(os.environ, ETCDCTL_API="3")
        argv = self.lab.exec_argv(name, [ETCDCTL, "--endpoints", self.client_url(name),
                                         "--command-timeout", "%ds" % timeout] + list(args))
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 5, env=env)

    def status(self, name):
        """etcdctl endpoint status of one member as a dict, or None."""
        try:
            cp = self.ctl(name, "endpoint", "status", "-w", "json", timeout=3)
        except subprocess.TimeoutExpired:
            return None
        if cp.returncode != 0:
            return None
        try:
            return json.loads(cp.stdout)[0]["Status"]
        except (ValueError, KeyError, IndexError):
            return None

    def leader(self, timeout=30):
        """The name of the current leader (asks the running members)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n in self.running():
                st = self.status(n)
                if st and st.get("leader") and st["leader"] == st.get("header", {}).get("member_id"):
                    return n
            time.sleep(0.1)
        raise AssertionError("no etcd leader among %s within %ss" % (self.running(), timeout))

    def wait_healthy(self, timeout=30):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            for n in self.running():
                last = self.ctl(n, "endpoint", "health", timeout=3)
                if last.returncode == 0:
                    return
            time.sleep(0.1)
        raise AssertionError("etcd not healthy within %ss: %s\n%s" % (
            timeout, last and last.stderr, "\n".join(netlab.tail(self.log_path(n), 10) for n in self.names)))

    def db_size(self):
        """{member: (dbSize bytes, dbSizeInUse bytes)} of the running members."""
        out = {}
        for n in self.running():
            st = self.status(n)
            if st:
                out[n] = (st.get("dbSize"), st.get("dbSizeInUse"))
        return out
