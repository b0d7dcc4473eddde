"""Tiny network-namespace lab for nftproxy's integration tests.

Everything a Lab creates is recorded so that cleanup() can undo it:
processes are killed by pid, namespaces are deleted by name. cleanup() also
runs at interpreter exit (atexit) for labs that were not cleaned up.

Only 198.18.0.0/15 and fd00::/8 are used, and all traffic stays inside the
namespaces the lab creates (they are connected to each other only).
"""

import atexit
import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

IP = shutil.which("ip") or "/usr/sbin/ip"
SS = shutil.which("ss") or "/usr/bin/ss"
SYSCTL = shutil.which("sysctl") or "/usr/sbin/sysctl"

_lab_ids = itertools.count()
_live_labs = []


class LabError(RuntimeError):
    pass


# Lab.http's client, run inside a namespace: argv URL METHOD; prints the
# answer as JSON whatever its status.
_HTTP_REQUEST = r"""
import json, sys, urllib.request, urllib.error
req = urllib.request.Request(sys.argv[1], method=sys.argv[2])
try:
    r = urllib.request.urlopen(req, timeout=5)
    status, headers, body = r.status, dict(r.headers), r.read()
except urllib.error.HTTPError as e:
    status, headers, body = e.code, dict(e.headers), e.read()
print(json.dumps({"status": status, "headers": headers, "body": body.decode("utf-8", "replace")}))
"""


def run(argv, check=True, timeout=30, input=None):
    """Runs argv in the current (root) namespace; returns CompletedProcess (text)."""
    cp = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
    if check and cp.returncode != 0:
        raise LabError("command failed (%d): %s\nstdout: %s\nstderr: %s"
                       % (cp.returncode, " ".join(argv), cp.stdout, cp.stderr))
    return cp


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Lab:
    """A set of network namespaces and the processes started inside them."""

    def __init__(self):
        self.prefix = "npx-%d-%d-" % (os.getpid(), next(_lab_ids))
        self.namespaces = {}          # short name -> full netns name
        self.procs = []               # Popen objects started by spawn()
        self._cleaned = False
        _live_labs.append(self)

    # ---- namespaces -----------------------------------------------------

    def add_netns(self, short):
        if short in self.namespaces:
            raise LabError("namespace %r already exists" % short)
        name = self.prefix + short
        run([IP, "netns", "add", name])
        self.namespaces[short] = name
        run([IP, "-n", name, "link", "set", "lo", "up"])
        # No duplicate address detection: addresses are usable at once.
        self.sysctl(short, "net.ipv6.conf.all.accept_dad", 0)
        self.sysctl(short, "net.ipv6.conf.default.accept_dad", 0)
        return name

    def del_netns(self, short):
        """Deletes one namespace of this lab (killing what runs inside it)."""
        name = self.namespaces.pop(short)
        self._kill_inside(name)
        run([IP, "netns", "del", name], check=False, timeout=10)

    def _kill_inside(self, name):
        cp = run([IP, "netns", "pids", name], check=False, timeout=10)
        for tok in cp.stdout.split():
            if tok.isdigit():
                pid = int(tok)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                for _ in range(50):
                    if not _pid_alive(pid):
                        break
                    time.sleep(0.02)

    def ns(self, short):
        """Full netns name of a namespace of this lab."""
        return self.namespaces[short]

    # ---- links, addresses, routes, sysctls ---------------------------------

    def veth(self, ns_a, if_a, ns_b, if_b):
        """A veth pair with end if_a in ns_a and end if_b in ns_b, both up.

        The pair is created directly inside the namespaces, so no interface
        ever appears in the root namespace.
        """
        a, b = self.ns(ns_a), self.ns(ns_b)
        run([IP, "-n", a, "link", "add", if_a, "type", "veth", "peer", "name", if_b, "netns", b])
        run([IP, "-n", a, "link", "set", if_a, "up"])
        run([IP, "-n", b, "link", "set", if_b, "up"])

    def bridge(self, ns, name):
        """A Linux bridge `name` inside ns, up (no STP, no forwarding delay)."""
        n = self.ns(ns)
        run([IP, "-n", n, "link", "add", name, "type", "bridge", "stp_state", "0",
             "forward_delay", "0"])
        run([IP, "-n", n, "link", "set", name, "up"])

    def enslave(self, ns, dev, bridge):
        """Attaches interface dev (in ns) to bridge (in the same ns)."""
        run([IP, "-n", self.ns(ns), "link", "set", dev, "master", bridge])

    def dev_route(self, ns, dst, dev, src=None):
        """A link-scope route to dst out of dev (no gateway)."""
        argv = [IP, "-n", self.ns(ns)]
        if ":" in dst:
            argv.append("-6")
        argv += ["route", "replace", dst, "dev", dev, "scope", "link"]
        if src:
            argv += ["src", src]
        run(argv)

    def addr(self, ns, dev, cidr):
        argv = [IP, "-n", self.ns(ns), "addr", "add", cidr, "dev", dev]
        if ":" in cidr:
            argv.append("nodad")
        run(argv)

    def route(self, ns, dst, via, dev=None):
        argv = [IP, "-n", self.ns(ns)]
        if ":" in via:
            argv.append("-6")
        argv += ["route", "replace", dst, "via", via]
        if dev:
            argv += ["dev", dev]
        run(argv)

    def sysctl(self, ns, key, value):
        run([IP, "netns", "exec", self.ns(ns), SYSCTL, "-qw", "%s=%s" % (key, value)])

    def enable_forwarding(self, ns):
        self.sysctl(ns, "net.ipv4.ip_forward", 1)
        self.sysctl(ns, "net.ipv6.conf.all.forwarding", 1)

    # ---- processes ---------------------------------------------------------

    def exec_argv(self, ns, argv):
        return [IP, "netns", "exec", self.ns(ns)] + list(argv)

    def exec(self, ns, argv, check=False, timeout=60, input=None):
        """Runs argv to completion inside namespace ns; returns CompletedProcess."""
        return run(self.exec_argv(ns, argv), check=check, timeout=timeout, input=input)

    def http(self, ns, url, method="GET", timeout=20):
        """An HTTP request made inside namespace ns: {"status": N, "headers":
        {...}, "body": "..."} whatever the status; LabError when no answer
        came (refused, timed out)."""
        cp = self.exec(ns, [sys.executable, "-c", _HTTP_REQUEST, url, method], timeout=timeout)
        if cp.returncode != 0:
            raise LabError("%s %s from %s: %s" % (method, url, ns, cp.stderr.strip()[-300:]))
        return json.loads(cp.stdout)

    def spawn(self, ns, argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
              stdin=subprocess.DEVNULL, text=True):
        """Starts argv in the background inside ns and records it for cleanup.

        `ip netns exec` execs the command in place, so the pid is the pid of the
        command itself.
        """
        p = subprocess.Popen(self.exec_argv(ns, argv), stdout=stdout, stderr=stderr,
                             stdin=stdin, text=text, start_new_session=True)
        self.procs.append(p)
        return p

    def stop(self, proc, sig=signal.SIGTERM, timeout=10):
        """Signals a process started by spawn() (by pid) and waits for it;
        escalates to SIGKILL after timeout. Returns its exit status."""
        if proc.poll() is None:
            try:
                os.kill(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        for f in (proc.stdout, proc.stderr, proc.stdin):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass
        if proc in self.procs:
            self.procs.remove(proc)
        return proc.returncode

    # ---- readiness helpers -------------------------------------------------

    def listening(self, ns, proto, port):
        flag = "-Hltn" if proto == "tcp" else "-Hlun"
        cp = self.exec(ns, [SS, flag, "sport", "=", ":%d" % port])
        return cp.returncode == 0 and cp.stdout.strip() != ""

    def wait_listening(self, ns, proto, port, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.listening(ns, proto, port):
                return
            time.sleep(0.05)
        raise LabError("%s/%d not listening in %s after %ss" % (proto, port, ns, timeout))

    # ---- cleanup -----------------------------------------------------------

    def cleanup(self):
        """Kills every process this lab started and deletes its namespaces.
        Safe to call more than once; never raises."""
        errors = []
        for p in list(reversed(self.procs)):
            try:
                self.stop(p, signal.SIGTERM, timeout=5)
            except Exception as e:  # noqa: BLE001 - cleanup must go on
                errors.append("stop pid %d: %s" % (p.pid, e))
        self.procs.clear()
        for short, name in list(reversed(list(self.namespaces.items()))):
            # Anything still running inside one of our namespaces was started
            # (directly or not) by this lab: kill it by pid before deleting.
            try:
                self._kill_inside(name)
            except Exception as e:  # noqa: BLE001
                errors.append("pids %s: %s" % (name, e))
            try:
                cp = run([IP, "netns", "del", name], check=False, timeout=10)
                if cp.returncode != 0 and os.path.exists("/run/netns/" + name):
                    errors.append("netns del %s: %s" % (name, cp.stderr.strip()))
            except Exception as e:  # noqa: BLE001
                errors.append("netns del %s: %s" % (name, e))
            del self.namespaces[short]
        self._cleaned = True
        if self in _live_labs:
            _live_labs.remove(self)
        if errors:
            sys.stderr.write("netlab cleanup problems:\n  " + "\n  ".join(errors) + "\n")
        return errors


@atexit.register
def _cleanup_all():
    for lab in list(_live_labs):
        lab.cleanup()


def _on_sigterm(signum, frame):
    raise KeyboardInterrupt("SIGTERM")


def install_sigterm_cleanup():
    """Makes SIGTERM unwind like Ctrl-C, so atexit cleanup still runs.
    Only replaces the default handler, and only from the main thread."""
    import threading
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


# ---- the standard topology -------------------------------------------------

class Star:
    """client --- proxy --- b1, b2, ... (one veth and one /24 + /64 per link).

    The proxy forwards; client and backends route everything (v4 and v6)
    through it. Addresses:
      client link: proxy 198.18.1.1/24 fd00:1::1/64, client .2 / ::2
      backend i (1-based): proxy 198.18.(9+i).1/24 fd00:(9+i)::1/64,
                           backend 198.18.(9+i).2 / fd00:(9+i)::2
    """

    def __init__(self, lab, backends=("b1", "b2", "b3")):
        self.lab = lab
        self.backends = list(backends)
        self.v4 = {}   # namespace short name -> its own IPv4 address
        self.v6 = {}
        lab.add_netns("proxy")
        lab.enable_forwarding("proxy")
        # Answer unroutable destinations (e.g. a deleted VIP) with an ICMP
        # error every time, so failing requests fail fast instead of timing out.
        lab.sysctl("proxy", "net.ipv4.icmp_ratelimit", 0)
        lab.sysctl("proxy", "net.ipv6.icmp.ratelimit", 0)
        links = [("client", "198.18.1", "fd00:1")]
        for i, b in enumerate(self.backends, start=1):
            links.append((b, "198.18.%d" % (9 + i), "fd00:%d" % (9 + i)))
        for short, net4, net6 in links:
            lab.add_netns(short)
            lab.veth("proxy", "to-" + short, short, "eth0")
            lab.addr("proxy", "to-" + short, net4 + ".1/24")
            lab.addr("proxy", "to-" + short, net6 + "::1/64")
            lab.addr(short, "eth0", net4 + ".2/24")
            lab.addr(short, "eth0", net6 + "::2/64")
            lab.route(short, "default", net4 + ".1")
            lab.route(short, "default", net6 + "::1")
            self.v4[short] = net4 + ".2"
            self.v6[short] = net6 + "::2"
        self.v4["proxy"] = "198.18.1.1"
        self.v6["proxy"] = "fd00:1::1"


HERE = os.path.dirname(os.path.abspath(__file__))
ECHO_SERVER = os.path.join(HERE, "echo_server.py")
TRAFFIC_CLIENT = os.path.join(HERE, "traffic_client.py")


def start_echo(lab, ns, name, tcp_ports=(8080, 9090), udp_ports=(5353,), log=None, timeout=10,
               stream_ports=()):
    """Starts echo_server.py in ns and waits until every port is bound.
    stream_ports: TCP ports whose connections stay open (echo_server --stream)."""
    argv = [sys.executable, "-u", ECHO_SERVER, "--name", name]
    if tcp_ports:
        argv += ["--tcp", ",".join(str(p) for p in tcp_ports)]
    if udp_ports:
        argv += ["--udp", ",".join(str(p) for p in udp_ports)]
    if stream_ports:
        argv += ["--stream", ",".join(str(p) for p in stream_ports)]
    p = lab.spawn(ns, argv, stdout=subprocess.PIPE,
                  stderr=log if log is not None else subprocess.DEVNULL)
    # The server prints "ready" once all of its sockets are bound/listening.
    line = p.stdout.readline()
    if line.strip() != "ready":
        rc = p.poll()
        raise LabError("echo server %s in %s did not become ready (rc=%s, said %r)"
                       % (name, ns, rc, line))
    for port in tcp_ports:
        lab.wait_listening(ns, "tcp", port, timeout)
    for port in udp_ports:
        lab.wait_listening(ns, "udp", port, timeout)
    for port in stream_ports:
        lab.wait_listening(ns, "tcp", port, timeout)
    return p


def traffic(lab, ns, proto, target, port, count, timeout=2.0, deadline=30.0,
            bind=None, sport=None):
    """Runs traffic_client.py inside ns and returns its parsed JSON result.
    bind: local source address; sport: one fixed UDP source port for all datagrams."""
    import json
    argv = [sys.executable, TRAFFIC_CLIENT, "--proto", proto, "--target", target,
            "--port", str(port), "--count", str(count), "--timeout", str(timeout),
            "--deadline", str(deadline)]
    if bind:
        argv += ["--bind", bind]
    if sport:
        argv += ["--sport", str(sport)]
    cp = lab.exec(ns, argv, timeout=deadline + 30)
    if cp.returncode != 0:
        raise LabError("traffic_client failed (%d): %s" % (cp.returncode, cp.stderr))
    return json.loads(cp.stdout)


# ---- manifests: block-style YAML, as the manifest spec shows them -----------------

def _scalar(v):
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    v = str(v)
    if re.match(r"[A-Za-z][A-Za-z0-9_-]*\Z", v) and v.lower() not in {
            "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~"}:
        return v
    return json.dumps(v)


def _emit(obj, ind):
    pad = " " * ind
    lines = []
    for k, v in obj.items():
        if isinstance(v, dict):
            if not v:
                lines.append("%s%s: {}" % (pad, k))
                continue
            lines.append("%s%s:" % (pad, k))
            lines += _emit(v, ind + 2)
        elif isinstance(v, list):
            if all(not isinstance(x, (dict, list)) for x in v):
                lines.append("%s%s: [%s]" % (pad, k, ", ".join(_scalar(x) for x in v)))
            else:
                lines.append("%s%s:" % (pad, k))
                for item in v:
                    sub = _emit(item, ind + 4)
                    lines.append("%s  - %s" % (pad, sub[0].lstrip()))
                    lines += sub[1:]
        else:
            lines.append("%s%s: %s" % (pad, k, _scalar(v)))
    return lines


def to_yaml(docs):
    """Block-style YAML, documents separated by `---`."""
    return "---\n".join("\n".join(_emit(d, 0)) + "\n" for d in docs)


def class_tmpdir(cls, prefix):
    """A temporary directory for a test class, removed when the class is done
    (or at exit, if interrupted) unless NPX_KEEP_TMP is set."""
    import atexit
    import shutil
    import tempfile
    path = tempfile.mkdtemp(prefix=prefix)
    if not os.environ.get("NPX_KEEP_TMP"):
        cls.addClassCleanup(shutil.rmtree, path, True)
        atexit.register(shutil.rmtree, path, True)
    return path


def tail(path, n=40):
    """The last n lines of a log file (or why there are none)."""
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError as e:
        return "(no log: %s)" % e


def wait_server(proc, sock, probe, log_path, timeout=20, what="nftproxy serve"):
    """Waits until the unix socket `sock` exists and probe() (returning a
    CompletedProcess) succeeds; returns that CompletedProcess. Raises
    AssertionError, with the log's tail, if `proc` exits or time runs out."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError("%s exited with %s during start-up; log:\n%s"
                                 % (what, proc.returncode, tail(log_path)))
        if os.path.exists(sock):
            last = probe()
            if last.returncode == 0:
                return last
        time.sleep(0.05)
    raise AssertionError("%s not ready after %ss (last probe: %r); log:\n%s"
                         % (what, timeout, last and (last.returncode, last.stderr), tail(log_path)))


def require_root_and_binary(binary):
    """setUpModule for namespace tests: skip without root or the binary, but fail
    under CI=true, where a skipped kernel test would hide a broken set-up."""
    why = None
    if os.geteuid() != 0:
        why = "integration test needs root (network namespaces, nftables)"
    elif not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        why = "nftproxy binary not found at %s (set NFTPROXY_BIN)" % binary
    if why:
        if os.environ.get("CI", "").lower() == "true":
            raise AssertionError(why)
        import unittest
        raise unittest.SkipTest(why)
    install_sigterm_cleanup()


def norm_ruleset(text):
    """A ruleset listing without its counter values (anonymous counters and
    named counter objects; for comparing two listings)."""
    return re.sub(r"packets \d+ bytes \d+", "packets - bytes -", text)
