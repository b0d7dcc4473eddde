#!/usr/bin/python3
"""Many nodes on etcd (BENCHMARKS.md, "Many nodes on etcd"): N `nftproxy
serve` nodes sharing one desired state in a real etcd cluster, with S
ClusterIP services of E endpoints each. As root, from the repository root:

    /usr/bin/python3 tests/bench/etcd_bench.py --nftproxy build/nftproxy

Defaults: 10 nodes, 3 etcd members, 10,000 services x 10 endpoints, 120
single changes. Topology (multinode.Cluster + etcd_lab.EtcdCluster, network
namespaces of one netlab.Lab on one bridge):

    node1 .1 ... nodeN .N        etcd1 .20  etcd2 .21  etcd3 .22
      ------------- lan (bridge br0), 198.18.100.0/24 -------------

Each node runs `nftproxy serve --etcd-endpoints <all members> --etcd-prefix
/bench/ --metrics-address ""` (plus --serve-arg flags). Measured:

1. Full sync: `nftproxy sync --source bench -f MANIFEST` (gen_manifest.py's
   services, S x E) through node1, starting from empty nodes. Time to the
   reply (node1 committed to etcd and to its own kernel, CLI exit), and to
   each node's kernel: every 20 ms the benchmark asks each node's kernel for
   its nf_tables generation (NFT_MSG_GETGEN on a netlink socket opened
   inside the node's namespace; cheap, no process started); once a node's
   generation has changed and been stable for 0.2 s, `nftproxy status` on
   that node must show the sync's shared log entry (the node advances it
   only after its kernel commit); the node's time is that of its last
   generation change before that status returned (the new ruleset went
   live). "Writes done": the end of each node's write, from the timestamp of
   its "slow write" log line. Also the machine's peak unreclaimable slab
   during the sync (a thread samples /proc/meminfo every 0.2 s). With
   --second-sync, then a second full sync that moves every endpoint of every
   service. --min-available-mb aborts the run before the OOM killer acts
   (the report of what was measured is printed): with --drift-watch true
   the ten nodes' commits cost the shared kernel gigabytes (BENCHMARKS.md).
2. Single changes (--changes, default 120), one at a time: `nftproxy apply
   --source bench -f -` through node1 (--writer), each one flipping one
   endpoint address of a random service's EndpointSlice (so every change
   changes every kernel). The CLI is started first; once it waits in
   read(0) (it has connected), the clock starts and the manifest is written
   to its stdin: process start-up is not counted (`nftproxy version` to
   node1 is timed separately, and one row adds it back). Before each change,
   one netlink socket per node namespace subscribed to nf_tables
   notifications (NFNLGRP_NFTABLES) is drained; the latency of a node is the
   arrival of its NFT_MSG_NEWGEN (the end of a kernel commit, whose
   NFTA_GEN_PROC_PID must be a thread of that node's nftproxy); a change is
   done when all N nodes have one. "In etcd": the first event of a watch on
   the prefix (etcd's JSON gateway, POST /v3/watch, from a socket made in
   etcd1's namespace). The subscriptions exist only around single changes,
   never during a full sync (the kernel would build one notification per
   object).
3. Memory and disk: each node's nftproxy VmRSS and VmHWM, each etcd member's
   VmRSS, data dir size (du), dbSize/dbSizeInUse (etcdctl endpoint status),
   leader elections and late-heartbeat warnings in the etcd logs, the node
   state dirs, and the machine's Slab before and after (kernel memory,
   approximate: the machine is shared).

Everything lives in namespaces npx-<pid>-* and a temporary directory; both
are removed, and every process started is killed by pid, on every exit path
(including Ctrl-C and SIGTERM). --keep-tmp keeps the directory (node and
etcd logs, manifests); --json FILE writes every measurement.
"""

import argparse
import base64
import calendar
import ctypes
import errno
import json
import os
import random
import re
import select
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
sys.path.insert(0, HERE)

import etcd_lab  # noqa: E402
import gen_manifest  # noqa: E402
import multinode  # noqa: E402
import netlab  # noqa: E402

# netlink / nf_tables constants
NETLINK_NETFILTER = 12
NFNLGRP_NFTABLES = 7
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
SO_RCVBUFFORCE = 33
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWGEN = 15  # enum nf_tables_msg_types
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1
NFTA_GEN_PROC_PID = 2
NFTA_GEN_PROC_NAME = 3
NLM_F_REQUEST = 1
NLMSG_ERROR = 2
NEWGEN_TYPE = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN
GETGEN_TYPE = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN
CLONE_NEWNET = 0x40000000

SOURCE = "bench"
PREFIX = "/bench/"

_libc = ctypes.CDLL(None, use_errno=True)


def log(msg):
    sys.stderr.write("[%s] %s\n" % (time.strftime("%T"), msg))
    sys.stderr.flush()


# ---- netlink sockets inside the node namespaces --------------------------------------

def socket_in_netns(netns_name, family=socket.AF_NETLINK, type_=socket.SOCK_RAW, proto=NETLINK_NETFILTER):
    """A socket created inside /run/netns/NAME; the calling (main) thread
    returns to its own namespace (a socket keeps the namespace it was made in)."""
    own = os.open("/proc/self/ns/net", os.O_RDONLY)
    target = os.open("/run/netns/" + netns_name, os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns %s" % netns_name)
        try:
            s = socket.socket(family, type_, proto)
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)
    return s


def nft_socket(netns_name, group=None, rcvbuf=64 << 20):
    """A NETLINK_NETFILTER socket in a namespace, subscribed to `group` when given."""
    s = socket_in_netns(netns_name)
    try:
        s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
    except OSError:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.bind((0, 0))
    if group is not None:
        s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, group)
    s.setblocking(False)
    return s


def etcd_watch(netns_name, host, port, prefix):
    """A TCP connection, made from inside a namespace, carrying a watch of
    `prefix` through etcd's JSON gateway (POST /v3/watch); its answer is a
    stream of JSON messages, one per batch of events. Returns the socket once
    the watch is created."""
    s = socket_in_netns(netns_name, socket.AF_INET, socket.SOCK_STREAM, 0)
    s.settimeout(10)
    s.connect((host, port))
    end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    body = json.dumps({"create_request": {"key": base64.b64encode(prefix.encode()).decode(),
                                          "range_end": base64.b64encode(end.encode()).decode()}}).encode()
    s.sendall(b"POST /v3/watch HTTP/1.1\r\nHost: %s:%d\r\nContent-Type: application/json\r\n"
              b"Content-Length: %d\r\n\r\n" % (host.encode(), port, len(body)) + body)
    got = b""
    while b'"created":true' not in got:
        chunk = s.recv(65536)
        if not chunk:
            raise OSError("etcd watch: connection closed: %r" % got[:300])
        got += chunk
    if b" 200 " not in got.split(b"\r\n", 1)[0]:
        raise OSError("etcd watch: %r" % got[:300])
    s.setblocking(False)
    return s


def queued_messages(s, node, overflow):
    """Every netlink message queued on non-blocking socket s, as nl_messages;
    counts the overflows (ENOBUFS) in overflow[node]."""
    out = []
    while True:
        try:
            data = s.recv(1 << 20)
        except BlockingIOError:
            return out
        except OSError as e:
            if e.errno == errno.ENOBUFS:
                overflow[node] += 1
                continue
            raise
        out.extend(nl_messages(data))


def nl_messages(data):
    """(type, payload after nlmsghdr) of each netlink message in data."""
    off = 0
    while off + 16 <= len(data):
        length, typ, _flags, _seq, _pid = struct.unpack_from("=IHHII", data, off)
        if length < 16:
            break
        yield typ, data[off + 16:off + length]
        off += (length + 3) & ~3


def nl_attrs(payload):
    """{type: bytes} of the attributes after an nfgenmsg (4 bytes)."""
    out = {}
    off = 4
    while off + 4 <= len(payload):
        alen, atype = struct.unpack_from("=HH", payload, off)
        if alen < 4:
            break
        out[atype & 0x3fff] = payload[off + 4:off + alen]
        off += (alen + 3) & ~3
    return out


def newgen_info(payload):
    """(generation id, committing task id) of an NFT_MSG_NEWGEN."""
    a = nl_attrs(payload)
    gen = struct.unpack(">I", a[NFTA_GEN_ID])[0] if NFTA_GEN_ID in a else None
    pid = struct.unpack(">I", a[NFTA_GEN_PROC_PID])[0] if NFTA_GEN_PROC_PID in a else None
    return gen, pid


class GenPoller:
    """Asks a namespace's kernel for its nf_tables generation (NFT_MSG_GETGEN)."""

    def __init__(self, netns_name):
        self.sock = nft_socket(netns_name, rcvbuf=1 << 20)
        self.sock.setblocking(True)
        self.sock.settimeout(2.0)
        self.seq = 0

    def gen(self):
        self.seq += 1
        msg = struct.pack("=IHHII", 20, GETGEN_TYPE, NLM_F_REQUEST, self.seq, 0) + struct.pack("=BBH", 0, 0, 0)
        self.sock.send(msg)
        while True:
            data = self.sock.recv(65536)
            for typ, payload in nl_messages(data):
                if typ == NEWGEN_TYPE:
                    return newgen_info(payload)[0]
                if typ == NLMSG_ERROR:
                    code = struct.unpack_from("=i", payload, 0)[0]
                    if code != 0:
                        raise OSError(-code, "GETGEN")

    def close(self):
        self.sock.close()


# ---- helpers ---------------------------------------------------------------------------

def pct(values, p):
    """The p-th percentile (nearest rank) of values."""
    if not values:
        return float("nan")
    v = sorted(values)
    k = max(0, min(len(v) - 1, int(round(p / 100.0 * len(v) + 0.5)) - 1))
    return v[k]


def proc_status(pid, key):
    """A /proc/PID/status field in kB, or None."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def meminfo(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def du(path):
    """(allocated bytes, apparent bytes) of a directory tree."""
    alloc = apparent = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:
                continue
            alloc += st.st_blocks * 512
            apparent += st.st_size
    return alloc, apparent


def loadavg():
    """The machine's 1-minute load average (other work shares the cores)."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def mb(n_bytes):
    return n_bytes / 1e6


def yaml_docs(docs):
    out = []
    for d in docs:
        out.append("---")
        gen_manifest.yaml_lines(d, 0, out)
    return "\n".join(out) + "\n"


def moved_slice(i, endpoints):
    """Service i's EndpointSlice with every endpoint moved (second full sync)."""
    _svc, sl = gen_manifest.own(i, endpoints)
    for e, ep in enumerate(sl["endpoints"]):
        k = i * endpoints + e
        ep["addresses"] = [gen_manifest.ip("10.%d" % (160 + (k >> 16)), k)]
    return sl


def write_manifest(path, services, endpoints, moved=False):
    with open(path, "w") as f:
        for i in range(services):
            svc, sl = gen_manifest.own(i, endpoints)
            if moved:
                sl = moved_slice(i, endpoints)
            f.write(yaml_docs([svc, sl]))
    return os.path.getsize(path)


def status_text(bin_, url, timeout=60):
    cp = subprocess.run([bin_, "status", "--server", url], capture_output=True, text=True, timeout=timeout)
    return cp


def shared_seq(text):
    m = re.search(r"Shared store:.*\(log entry (\d+)\)", text)
    return int(m.group(1)) if m else None


# ---- the benchmark ----------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        self.a = args
        self.bin = args.nftproxy
        self.nodes = ["node%d" % (i + 1) for i in range(args.nodes)]
        self.writer = args.writer
        self.results = {"params": vars(args).copy()}
        self.cluster = None
        self.etcd = None
        self.tmp = None

    def cli(self, node, *args, timeout=60):
        return subprocess.run([self.bin] + list(args) + ["--server", self.cluster.url[node]],
                              capture_output=True, text=True, timeout=timeout)

    # -- set-up --------------------------------------------------------------------------

    def setup(self):
        a = self.a
        self.tmp = tempfile.mkdtemp(prefix="npx-etcdbench-")
        log("tmp dir %s" % self.tmp)
        self.results["slab_before_kb"] = meminfo("Slab")
        self.cluster = multinode.Cluster(self.tmp, binary=self.bin, nodes=self.nodes, pods={},
                                         start_servers=False)
        self.etcd = etcd_lab.EtcdCluster(self.cluster.lab, self.tmp, members=a.etcd_members)
        t = time.monotonic()
        self.etcd.start_all()
        log("etcd (%d members) healthy in %.1fs" % (a.etcd_members, time.monotonic() - t))
        flags = ["--etcd-endpoints", self.etcd.urls(), "--etcd-prefix", PREFIX, "--metrics-address", ""]
        if not a.endpoint_counters:
            flags.append("--endpoint-counters=false")
        if a.drift_watch == "false":
            # Ten nodes share one kernel here: one node's drift monitor
            # listening makes the kernel build a notification for every object
            # of every other node's commit (serve --help, --drift-watch).
            # Nodes on machines of their own do not pay that.
            flags.append("--drift-watch=false")
        flags += a.serve_arg
        self.cluster.common_flags = flags
        t = time.monotonic()
        for node in self.nodes:
            self.cluster.start_server(node, timeout=60)
        for node in self.nodes:
            self.wait_following(node)
        log("%d nodes up and following etcd in %.1fs" % (len(self.nodes), time.monotonic() - t))
        self.pid = {n: self.cluster.servers[n].pid for n in self.nodes}

    def wait_following(self, node, timeout=60):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = status_text(self.bin, self.cluster.url[node])
            if last.returncode == 0 and "Shared store:" in last.stdout and "writes fail" not in last.stdout:
                return
            time.sleep(0.1)
        raise AssertionError("%s does not follow etcd after %ss; status:\n%s\nlog:\n%s"
                             % (node, timeout, last and last.stdout, netlab.tail(self.cluster.server_log[node])))

    def check_alive(self, what):
        """Raises when a node's nftproxy or an etcd member has exited."""
        dead = ["%s (exit %s)" % (n, p.returncode) for n, p in self.cluster.servers.items() if p.poll() is not None]
        dead += ["%s (exit %s)" % (m, p.returncode) for m, p in self.etcd.procs.items() if p.poll() is not None]
        if dead:
            raise AssertionError("%s: exited: %s (a negative exit is the signal that killed it)"
                                 % (what, ", ".join(dead)))

    # -- full sync -------------------------------------------------------------------------

    def full_sync(self, path, label):
        """Sync through the writer; returns a dict of times (seconds)."""
        lab = self.cluster.lab
        pollers = {n: GenPoller(lab.ns(n)) for n in self.nodes}
        try:
            base_gen = {n: pollers[n].gen() for n in self.nodes}
            base_seq = {}
            for n in self.nodes:
                base_seq[n] = shared_seq(status_text(self.bin, self.cluster.url[n]).stdout)
            target = max(s or 0 for s in base_seq.values()) + 1
            last_gen = dict(base_gen)
            last_change = {n: None for n in self.nodes}
            status_proc = {}
            status_at = {}
            last_check = {n: 0.0 for n in self.nodes}
            done = {}
            reply = None
            reply_seq = None
            log("%s: sync of %s (%.1f MB) through %s" % (label, os.path.basename(path),
                                                         mb(os.path.getsize(path)), self.writer))
            MEM_PEAK["sunreclaim_kb"] = meminfo("SUnreclaim") or 0
            MEM_PEAK["min_available_kb"] = None
            t0_wall = time.time()
            t0 = time.monotonic()
            proc = subprocess.Popen([self.bin, "sync", "--source", SOURCE, "-f", path, "--request-timeout", "0",
                                     "--server", self.cluster.url[self.writer]],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            out_chunks = []
            reader = threading.Thread(target=lambda: out_chunks.append(proc.stdout.read()), daemon=True)
            reader.start()
            deadline = t0 + self.a.sync_timeout
            while True:
                now = time.monotonic()
                self.check_alive(label)
                if now > deadline:
                    raise AssertionError("%s: not every node reached the sync within %ss: done %s, reply %s"
                                         % (label, self.a.sync_timeout, sorted(done), reply))
                if reply is None and proc.poll() is not None:
                    reply = now - t0
                    reader.join()
                    out = "".join(out_chunks)
                    if proc.returncode != 0:
                        raise AssertionError("%s: sync failed (%d): %s\nlog:\n%s" % (
                            label, proc.returncode, out, netlab.tail(self.cluster.server_log[self.writer])))
                    log("%s: reply after %.2fs" % (label, reply))
                    reply_seq = shared_seq(status_text(self.bin, self.cluster.url[self.writer]).stdout)
                    if reply_seq is not None and reply_seq > target:
                        log("%s: the sync took entries up to %d (expected %d)" % (label, reply_seq, target))
                        target = reply_seq
                        for n in [n for n, d in done.items() if d[1] < target]:
                            del done[n]
                for n in self.nodes:
                    g = pollers[n].gen()
                    if g != last_gen[n]:
                        last_gen[n] = g
                        last_change[n] = time.monotonic()
                for n in self.nodes:
                    if n in done:
                        continue
                    p = status_proc.get(n)
                    if p is not None:
                        if p.poll() is None:
                            continue
                        out, _ = p.communicate()
                        del status_proc[n]
                        # The generation may have changed again while status ran.
                        g = pollers[n].gen()
                        if g != last_gen[n]:
                            last_gen[n] = g
                            last_change[n] = time.monotonic()
                        seq = shared_seq(out or "")
                        if seq is not None and seq >= target and last_change[n] is not None:
                            done[n] = (last_change[n] - t0, seq)
                            log("%s: %s at %.2fs (entry %d)" % (label, n, done[n][0], seq))
                        continue
                    now = time.monotonic()
                    if last_change[n] is not None and now - last_change[n] >= 0.2 and now - last_check[n] >= 0.5:
                        last_check[n] = now
                        status_at[n] = (now, last_change[n])
                        status_proc[n] = subprocess.Popen(
                            [self.bin, "status", "--server", self.cluster.url[n]],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                if reply is not None and len(done) == len(self.nodes):
                    break
                time.sleep(0.02)
            for p in status_proc.values():
                p.kill()
                p.wait()
            times = {n: done[n][0] for n in self.nodes}
            written = {n: self.write_done(n, t0_wall) for n in self.nodes}
            res = {"reply_s": reply, "per_node_s": times, "first_kernel_s": min(times.values()),
                   "all_kernels_s": max(times.values()), "entry": target,
                   "gen_changes": {n: (last_gen[n] - base_gen[n]) for n in self.nodes},
                   "write_done_s": written, "peak_sunreclaim_kb": MEM_PEAK["sunreclaim_kb"],
                   "min_available_kb": MEM_PEAK["min_available_kb"]}
            w = [v for v in written.values() if v is not None]
            if w:
                res["all_writes_done_s"] = max(w)
            res["loadavg_end"] = loadavg()
            log("%s: all %d kernels after %.2fs (first %.2fs, reply %.2fs)"
                % (label, len(self.nodes), res["all_kernels_s"], res["first_kernel_s"], reply))
            return res
        finally:
            for p in pollers.values():
                p.close()

    def write_done(self, node, t0_wall):
        """Seconds from t0_wall to the end of the node's last write logged as
        slow (the node log's timestamp: kernel commit, notifications, state
        dir), or None."""
        last = None
        try:
            with open(self.cluster.server_log[node], errors="replace") as f:
                for line in f:
                    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+)Z INFO slow write ", line)
                    if m:
                        ts = calendar.timegm(time.strptime(m.group(1)[:19], "%Y-%m-%dT%H:%M:%S")) + \
                            float("0" + m.group(1)[19:])
                        if ts >= t0_wall:
                            last = ts - t0_wall
        except OSError:
            return None
        return last

    # -- single changes -------------------------------------------------------------------

    def is_server_task(self, node, tid):
        if tid is None:
            return False
        return os.path.exists("/proc/%d/task/%d" % (self.pid[node], tid))

    def blocked_on_stdin(self, pid, timeout=10):
        """Waits until process pid's main thread sits in read(0, ...): the CLI
        has started, connected and now reads the manifest from stdin."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with open("/proc/%d/syscall" % pid) as f:
                    fields = f.read().split()
            except OSError:
                return False
            if len(fields) >= 2 and fields[0] == "0" and fields[1] == "0x0":
                return True
            time.sleep(0.002)
        return False

    def single_changes(self, moved):
        a = self.a
        lab = self.cluster.lab
        rng = random.Random(a.seed)
        flipped = set()
        socks = {n: nft_socket(lab.ns(n), group=NFNLGRP_NFTABLES) for n in self.nodes}
        fd_node = {s.fileno(): n for n, s in socks.items()}
        member = self.etcd.names[0]
        watch = etcd_watch(lab.ns(member), self.etcd.ip[member], 2379, PREFIX)
        ep = select.epoll()
        for s in socks.values():
            ep.register(s.fileno(), select.EPOLLIN)
        ep.register(watch.fileno(), select.EPOLLIN)
        stray = {n: 0 for n in self.nodes}
        foreign = {n: 0 for n in self.nodes}
        overflow = {n: 0 for n in self.nodes}
        extra = {n: 0 for n in self.nodes}
        stray_watch = [0]
        not_blocked = [0]

        def drain():
            for n, s in socks.items():
                for typ, _payload in queued_messages(s, n, overflow):
                    if typ == NEWGEN_TYPE:
                        stray[n] += 1
            while True:
                try:
                    data = watch.recv(1 << 20)
                except BlockingIOError:
                    break
                if not data:
                    raise AssertionError("etcd watch connection closed")
                if b'"events"' in data:
                    stray_watch[0] += 1

        # Quiet period: nothing should commit while no change is made.
        time.sleep(1.0)
        drain()
        quiet_stray = dict(stray)
        changes = []
        try:
            for c in range(a.changes):
                i = rng.randrange(a.services)
                sl = moved_slice(i, a.endpoints) if moved else gen_manifest.own(i, a.endpoints)[1]
                if i in flipped:
                    flipped.discard(i)
                else:
                    flipped.add(i)
                    sl["endpoints"][0]["addresses"] = [gen_manifest.ip("10.%d" % (200 + (i >> 16)), i)]
                text = yaml_docs([sl]).encode()
                drain()
                seen = {}
                t_spawn = time.monotonic()
                # The CLI reads the manifest from stdin after it has connected:
                # the clock starts when the manifest is written, so process
                # start-up is not counted (connection set-up is not either).
                proc = subprocess.Popen([self.bin, "apply", "--source", SOURCE, "-f", "-",
                                         "--server", self.cluster.url[self.writer]],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                if not self.blocked_on_stdin(proc.pid):
                    not_blocked[0] += 1
                t0 = time.monotonic()
                proc.stdin.write(text)
                proc.stdin.close()
                out_fd = proc.stdout.fileno()
                ep.register(out_fd, select.EPOLLIN | select.EPOLLHUP)
                output = b""
                reply = None
                t_etcd = None
                deadline = t0 + a.change_timeout
                while reply is None or len(seen) < len(self.nodes):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    for fd, _ev in ep.poll(left):
                        now = time.monotonic()
                        if fd == out_fd:
                            chunk = os.read(out_fd, 65536)
                            if chunk:
                                output += chunk
                            else:
                                reply = now - t0
                                ep.unregister(out_fd)
                            continue
                        if fd == watch.fileno():
                            try:
                                data = watch.recv(1 << 20)
                            except BlockingIOError:
                                continue
                            if not data:
                                raise AssertionError("etcd watch connection closed")
                            if b'"events"' in data and t_etcd is None:
                                t_etcd = now - t0
                            continue
                        n = fd_node[fd]
                        s = socks[n]
                        for typ, payload in queued_messages(s, n, overflow):
                            if typ != NEWGEN_TYPE:
                                continue
                            _gen, tid = newgen_info(payload)
                            if not self.is_server_task(n, tid):
                                foreign[n] += 1
                            elif n in seen:
                                extra[n] += 1
                            else:
                                seen[n] = now - t0
                rc = proc.wait()
                if reply is None:
                    try:
                        ep.unregister(out_fd)
                    except OSError:
                        pass
                proc.stdout.close()
                if rc != 0:
                    raise AssertionError("change %d (service %d) failed (%d): %s\nlog:\n%s" % (
                        c, i, rc, output.decode(errors="replace"), netlab.tail(self.cluster.server_log[self.writer])))
                self.check_alive("change %d" % c)
                missing = [n for n in self.nodes if n not in seen]
                rec = {"service": i, "reply_s": reply, "etcd_s": t_etcd, "spawn_s": t0 - t_spawn,
                       "per_node_s": seen, "missing": missing}
                if seen:
                    rec["first_node"] = min(seen, key=seen.get)
                    rec["last_node"] = max(seen, key=seen.get)
                    rec["first_s"] = min(seen.values())
                    rec["all_s"] = max(seen.values()) if not missing else None
                changes.append(rec)
                if missing:
                    log("change %d: no commit seen on %s within %ss" % (c, missing, a.change_timeout))
                if (c + 1) % 20 == 0:
                    log("single changes: %d/%d" % (c + 1, a.changes))
                time.sleep(a.pause)
            time.sleep(0.5)
            drain()
        finally:
            ep.close()
            watch.close()
            for s in socks.values():
                s.close()
        return {"changes": changes, "quiet_stray_newgen": quiet_stray, "stray_newgen": stray,
                "foreign_newgen": foreign, "extra_newgen": extra, "overflow": overflow,
                "stray_etcd_events": stray_watch[0], "cli_not_blocked_on_stdin": not_blocked[0]}

    # -- memory and disk --------------------------------------------------------------------

    def memory(self):
        nodes = {n: {"rss_kb": proc_status(self.pid[n], "VmRSS"), "hwm_kb": proc_status(self.pid[n], "VmHWM")}
                 for n in self.nodes}
        etcd = {}
        sizes = self.etcd.db_size()
        for m in self.etcd.names:
            p = self.etcd.procs.get(m)
            alloc, apparent = du(os.path.join(self.tmp, m + ".data"))
            etcd[m] = {"rss_kb": p and proc_status(p.pid, "VmRSS"), "hwm_kb": p and proc_status(p.pid, "VmHWM"),
                       "du_bytes": alloc, "apparent_bytes": apparent,
                       "db_size": sizes.get(m, (None, None))[0], "db_size_in_use": sizes.get(m, (None, None))[1]}
        state = {n: du(self.cluster.state_dir[n])[0] for n in self.nodes}
        elections = overloaded = 0
        for m in self.etcd.names:
            try:
                with open(self.etcd.log_path(m), errors="replace") as f:
                    for line in f:
                        if "became leader at term" in line:
                            elections += 1
                        elif "leader failed to send out heartbeat on time" in line:
                            overloaded += 1
            except OSError:
                pass
        etcd_log = {"leader_elections": elections, "heartbeat_late_warnings": overloaded}
        return {"nodes": nodes, "etcd": etcd, "state_dir_bytes": state, "slab_kb": meminfo("Slab"),
                "etcd_log": etcd_log}

    def cli_overhead(self):
        t = []
        for _ in range(20):
            t0 = time.monotonic()
            self.cli(self.writer, "version")
            t.append(time.monotonic() - t0)
        return {"p50_s": pct(t, 50), "min_s": min(t)}

    def check_logs(self):
        hits = {}
        for n in self.nodes:
            try:
                with open(self.cluster.server_log[n], errors="replace") as f:
                    lines = [ln.rstrip() for ln in f if re.search(r"(?i)error|warn|fail", ln)]
            except OSError:
                lines = []
            if lines:
                hits[n] = lines[:20] + (["... %d more" % (len(lines) - 20)] if len(lines) > 20 else [])
        return hits

    # -- run ------------------------------------------------------------------------------------

    def run(self):
        a = self.a
        r = self.results
        self.setup()
        r["loadavg_start"] = loadavg()
        r["cli_overhead"] = self.cli_overhead()
        m1 = os.path.join(self.tmp, "services.yaml")
        t = time.monotonic()
        size = write_manifest(m1, a.services, a.endpoints)
        log("manifest %.1f MB written in %.1fs" % (mb(size), time.monotonic() - t))
        r["manifest_bytes"] = size
        r["sync1"] = self.full_sync(m1, "full sync")
        counts = {}
        for n in self.nodes:
            out = status_text(self.bin, self.cluster.url[n]).stdout
            m = re.search(r"Services:\s+(\d+)", out)
            counts[n] = int(m.group(1)) if m else None
        r["services_per_node"] = counts
        if any(c != a.services for c in counts.values()):
            log("WARNING: service counts differ from %d: %s" % (a.services, counts))
        r["mem_after_sync"] = self.memory()
        r["single"] = self.single_changes(moved=False)
        r["single"]["loadavg_end"] = loadavg()
        if a.second_sync:
            m2 = os.path.join(self.tmp, "services-moved.yaml")
            write_manifest(m2, a.services, a.endpoints, moved=True)
            r["sync2"] = self.full_sync(m2, "second full sync (every endpoint moved)")
        r["mem_end"] = self.memory()
        r["log_hits"] = self.check_logs()
        return r

    def cleanup(self):
        if self.cluster is not None:
            self.cluster.cleanup()
        if self.tmp and not self.a.keep_tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)


# ---- report ---------------------------------------------------------------------------------

def self_member(a):
    return "etcd1"


def report(r, a):
    out = []
    p = out.append
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True).stdout.strip()
    except OSError:
        commit = "?"
    with open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    p("== nftproxy: many nodes on etcd ==")
    p("machine: %s, %d cores, %.0f GiB, kernel %s; commit %s; binary %s"
      % (cpu, os.cpu_count(), meminfo("MemTotal") / 2**20, os.uname().release, commit, a.nftproxy))
    p("load average at the start: %.1f (other work on the machine shares its cores)" % r.get("loadavg_start", 0))
    p("nodes %d, etcd members %d, services %d x %d endpoints (%s endpoint counters), %d single changes through %s; "
      "serve --drift-watch=%s"
      % (a.nodes, a.etcd_members, a.services, a.endpoints, "with" if a.endpoint_counters else "WITHOUT",
         a.changes, a.writer, a.drift_watch))
    p("manifest %.1f MB; CLI start-up + connect + one RPC (`nftproxy version`): p50 %.1f ms, min %.1f ms "
      "(not in the single-change times: their clock starts when the connected CLI gets the manifest)" % (mb(r["manifest_bytes"]), r["cli_overhead"]["p50_s"] * 1e3,
                                              r["cli_overhead"]["min_s"] * 1e3))
    p("")
    for key, label in (("sync1", "Full sync, empty -> %d services" % a.services),
                       ("sync2", "Second full sync, every endpoint moved")):
        if key not in r:
            continue
        s = r[key]
        p("%s (log entry %d):" % (label, s["entry"]))
        p("  %-52s %8.2f s" % ("reply to the client (%s: etcd, its kernel, CLI exit)" % a.writer, s["reply_s"]))
        p("  %-52s %8.2f s" % ("first kernel, new ruleset live (generation flip)", s["first_kernel_s"]))
        p("  %-52s %8.2f s" % ("ALL %d KERNELS, new ruleset live" % a.nodes, s["all_kernels_s"]))
        if s.get("all_writes_done_s") is not None:
            p("  %-52s %8.2f s" % ("all %d nodes' writes done (node logs' timestamps)" % a.nodes,
                                 s["all_writes_done_s"]))
        p("  per node, new ruleset live: " + ", ".join("%s %.2f" % (n, t) for n, t in s["per_node_s"].items()))
        p("  per node, write done:       " + ", ".join("%s %s" % (n, "%.2f" % t if t is not None else "?")
                                                     for n, t in s["write_done_s"].items()))
        p("  kernel generations per node: %s" % sorted(set(s["gen_changes"].values())))
        p("  machine during the sync: kernel unreclaimable slab peak %.0f MB, lowest MemAvailable %.0f MB,"
          " load average %.1f at the end" % (s["peak_sunreclaim_kb"] / 1024, (s["min_available_kb"] or 0) / 1024,
                                             s.get("loadavg_end", float("nan"))))
        p("")
    if "single" in r:
        s = r["single"]
        ch = s["changes"]
        all_ = [c["all_s"] for c in ch if c.get("all_s") is not None]
        rep = [c["reply_s"] for c in ch if c.get("reply_s") is not None]
        first = [c["first_s"] for c in ch if c.get("first_s") is not None]
        wn = [c["per_node_s"][a.writer] for c in ch if a.writer in c["per_node_s"]]
        incomplete = [c for c in ch if c["missing"]]
        etcd_t = [c["etcd_s"] for c in ch if c.get("etcd_s") is not None]
        spawn_all = [c["all_s"] + c["spawn_s"] for c in ch if c.get("all_s") is not None]
        p("Single changes (one endpoint address of a random service; %d changes, %d incomplete):"
          % (len(ch), len(incomplete)))
        p("  %-44s %8s %8s %8s %8s %8s" % ("ms from the write (manifest to the CLI)", "p50", "p90", "p99", "max",
                                          "mean"))
        for label, v in (("in etcd (watch event at %s)" % self_member(a), etcd_t),
                         ("%s's kernel (the writer)" % a.writer, wn),
                         ("first kernel", first),
                         ("reply to the client (CLI exit)", rep),
                         ("ALL %d KERNELS (last NEWGEN)" % a.nodes, all_),
                         ("all %d kernels, from starting the CLI" % a.nodes, spawn_all)):
            if v:
                p("  %-44s %8.1f %8.1f %8.1f %8.1f %8.1f" % (label, pct(v, 50) * 1e3, pct(v, 90) * 1e3,
                                                              pct(v, 99) * 1e3, max(v) * 1e3,
                                                              statistics.mean(v) * 1e3))
        p("  machine load average after the changes: %.1f" % s.get("loadavg_end", float("nan")))
        firsts = {}
        lasts = {}
        for c in ch:
            if "first_node" in c:
                firsts[c["first_node"]] = firsts.get(c["first_node"], 0) + 1
                lasts[c["last_node"]] = lasts.get(c["last_node"], 0) + 1
        p("  first node to commit (count): %s" % ", ".join("%s %d" % kv for kv in sorted(firsts.items())))
        p("  last node to commit (count):  %s" % ", ".join("%s %d" % kv for kv in sorted(lasts.items())))
        p("  NEWGEN not counted: quiet period %d, between changes %d, other processes %d, second commit per"
          " change %d; socket overflows %d; etcd watch messages after a change's first %d; CLI not seen"
          " waiting for stdin %d" % (sum(s["quiet_stray_newgen"].values()), sum(s["stray_newgen"].values()),
                                     sum(s["foreign_newgen"].values()), sum(s["extra_newgen"].values()),
                                     sum(s["overflow"].values()), s["stray_etcd_events"],
                                     s["cli_not_blocked_on_stdin"]))
        worst = sorted((c for c in ch if c.get("all_s") is not None), key=lambda c: -c["all_s"])[:5]
        p("  slowest changes: " + "; ".join("svc-%d %.0f ms (first %s %.0f ms, last %s, reply %.0f ms)"
                                              % (c["service"], c["all_s"] * 1e3, c["first_node"],
                                                 c["first_s"] * 1e3, c["last_node"], (c["reply_s"] or 0) * 1e3)
                                              for c in worst))
        p("")
    for key, label in (("mem_after_sync", "after the full sync"), ("mem_end", "at the end")):
        if key not in r:
            continue
        m = r[key]
        rss = [v["rss_kb"] for v in m["nodes"].values() if v["rss_kb"]]
        p("Memory and disk %s:" % label)
        p("  nftproxy RSS per node (MB): " + ", ".join("%s %.0f" % (n, (v["rss_kb"] or 0) / 1024)
                                                       for n, v in m["nodes"].items()))
        p("    min %.0f / median %.0f / max %.0f MB; peak (VmHWM) max %.0f MB" % (
            min(rss) / 1024, statistics.median(rss) / 1024, max(rss) / 1024,
            max((v["hwm_kb"] or 0) for v in m["nodes"].values()) / 1024))
        p("  node state dirs (cache): %.1f MB each (max)" % (mb(max(m["state_dir_bytes"].values()))))
        for e, v in m["etcd"].items():
            p("  %s: RSS %.0f MB (peak %.0f MB), data dir %.1f MB on disk, dbSize %.1f MB, dbSizeInUse %.1f MB"
              % (e, (v["rss_kb"] or 0) / 1024, (v["hwm_kb"] or 0) / 1024, mb(v["du_bytes"]),
                 mb(v["db_size"] or 0), mb(v["db_size_in_use"] or 0)))
        p("  etcd logs so far: %d leader elections (the first included), %d 'leader failed to send out heartbeat"
          " on time' warnings" % (m["etcd_log"]["leader_elections"], m["etcd_log"]["heartbeat_late_warnings"]))
        p("  kernel Slab (whole machine): %.0f MB, %+.0f MB since before the lab (approximate: shared machine)"
          % (m["slab_kb"] / 1024, (m["slab_kb"] - r["slab_before_kb"]) / 1024))
        p("")
    p("kube-proxy, published (a different set-up): SIG-scalability's network programming latency SLI,")
    p("  measured by Kubernetes' 100-node CI (apiserver + watch, from an endpoint change to the rules in")
    p("  every node's kernel): p50 1.5 s, p99 6.8 s. The single-change figures above are the same kind of")
    p("  measure (a change entering the shared store until it is in every kernel) on %d nodes." % a.nodes)
    if r.get("log_hits"):
        p("")
        p("Node log lines matching error|warn|fail:")
        for n, lines in r["log_hits"].items():
            for ln in lines:
                p("  %s: %s" % (n, ln))
    return "\n".join(out)


MEM_PEAK = {"sunreclaim_kb": 0, "min_available_kb": None}
ABORTED = []


def start_memory_guard(min_available_mb):
    """A thread that follows the machine's memory every 0.2 s (peak kernel
    unreclaimable slab, lowest MemAvailable) and, when MemAvailable falls
    under min_available_mb, aborts the run (SIGTERM to itself: the usual
    clean-up) before the kernel's OOM killer picks some process of the
    machine."""
    import signal

    def loop():
        while True:
            su, av = meminfo("SUnreclaim"), meminfo("MemAvailable")
            MEM_PEAK["sunreclaim_kb"] = max(MEM_PEAK["sunreclaim_kb"], su or 0)
            if av is not None and (MEM_PEAK["min_available_kb"] is None or av < MEM_PEAK["min_available_kb"]):
                MEM_PEAK["min_available_kb"] = av
            if min_available_mb and av is not None and av < min_available_mb * 1024:
                ABORTED.append("MemAvailable %d MB < --min-available-mb %d (kernel unreclaimable slab %d MB)"
                               % (av // 1024, min_available_mb, (su or 0) // 1024))
                log("ABORTING: " + ABORTED[-1])
                os.kill(os.getpid(), signal.SIGTERM)
                return
            time.sleep(0.2)

    threading.Thread(target=loop, daemon=True).start()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nftproxy", default=os.path.join(REPO, "build", "nftproxy"))
    ap.add_argument("--nodes", type=int, default=10)
    ap.add_argument("--services", type=int, default=10000)
    ap.add_argument("--endpoints", type=int, default=10)
    ap.add_argument("--changes", type=int, default=120)
    ap.add_argument("--etcd-members", type=int, default=3)
    ap.add_argument("--writer", default="node1", help="the node every write goes through")
    ap.add_argument("--endpoint-counters", default="true", choices=["true", "false"],
                    help="serve --endpoint-counters (default true)")
    ap.add_argument("--drift-watch", default="false", choices=["true", "false"],
                    help="serve --drift-watch on every node (default false: the nodes share one kernel)")
    ap.add_argument("--serve-arg", action="append", default=[], help="extra serve flag, repeatable: --serve-arg=--flag=value")
    ap.add_argument("--second-sync", action="store_true",
                    help="then a second full sync moving every endpoint (see BENCHMARKS.md: kernel memory)")
    ap.add_argument("--sync-timeout", type=float, default=1200)
    ap.add_argument("--change-timeout", type=float, default=30)
    ap.add_argument("--pause", type=float, default=0.05, help="seconds between single changes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", help="also write every measurement to this file")
    ap.add_argument("--keep-tmp", action="store_true")
    ap.add_argument("--min-available-mb", type=int, default=8192,
                    help="abort when the machine's MemAvailable falls below this (0: never)")
    a = ap.parse_args()
    a.endpoint_counters = a.endpoint_counters == "true"
    a.nftproxy = os.path.abspath(a.nftproxy)
    if os.geteuid() != 0:
        sys.exit("etcd_bench.py: needs root (network namespaces, nftables)")
    if not os.access(a.nftproxy, os.X_OK):
        sys.exit("etcd_bench.py: no nftproxy binary at %s (--nftproxy)" % a.nftproxy)
    if not os.access(etcd_lab.ETCD, os.X_OK):
        sys.exit("etcd_bench.py: no etcd at %s (Debian's etcd-server)" % etcd_lab.ETCD)
    if a.writer not in ["node%d" % (i + 1) for i in range(a.nodes)]:
        sys.exit("etcd_bench.py: --writer must be one of node1..node%d" % a.nodes)
    netlab.install_sigterm_cleanup()
    start_memory_guard(a.min_available_mb)
    b = Bench(a)
    try:
        r = b.run()
        if a.json:
            with open(a.json, "w") as f:
                json.dump(r, f, indent=1)
        print(report(r, a))
        sys.stdout.flush()
    except KeyboardInterrupt:
        if ABORTED:
            if "sync1" in b.results:
                print("(partial: the run was aborted)")
                print(report(b.results, a))
                sys.stdout.flush()
            sys.exit("etcd_bench.py: aborted: %s" % ABORTED[-1])
        raise
    finally:
        if a.keep_tmp and b.tmp:
            log("kept %s" % b.tmp)
        b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
