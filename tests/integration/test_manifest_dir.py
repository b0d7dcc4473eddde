#!/usr/bin/python3
"""Appliance mode against the real kernel: `nftproxy serve --manifests DIR`.

Topology, all in private network namespaces (netlab.Star):

    client --- proxy --- b1 / b2 / b3

The proxy namespace runs `nftproxy serve --config FILE`, the file setting
the socket, table, state dir and `manifests: [DIR]`; b1..b3 run
echo_server.py (TCP 8080 and 9090). Tests write, change, break, fix and
remove files in DIR and check real traffic from the client to the VIPs, the
server's List and Watch, and `nftproxy status`. Each test uses its own file
names and VIPs, and removes its files afterwards.

Run from the repository root, as root:
    /usr/bin/python3 -m unittest -v tests/integration/test_manifest_dir.py
Environment: NFTPROXY_BIN (default <repo>/build/nftproxy); CI=true turns
"not root" / "no binary" skips into failures; NPX_KEEP_TMP=1 keeps the temp
dir (server log, manifests).
"""

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

import netlab  # noqa: E402

REPO = os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("NFTPROXY_BIN") or os.path.join(REPO, "build", "nftproxy")
TABLE = "npxdir"
BACKENDS = ("b1", "b2", "b3")


def setUpModule():
    netlab.require_root_and_binary(BIN)


_tail = netlab.tail


def service(name, vip, port, target, backends, v4):
    """A Service and its EndpointSlice (endpoints: the backends' addresses)."""
    return netlab.to_yaml([
        {"kind": "Service", "metadata": {"name": name},
         "spec": {"clusterIps": [vip], "ports": [{"name": "tcp", "port": port, "targetPort": target}]}},
        {"kind": "EndpointSlice", "metadata": {"name": name + "-1"}, "serviceName": name,
         "ports": [{"name": "tcp", "protocol": "TCP", "port": target}],
         "endpoints": [{"addresses": [v4[b]]} for b in backends]},
    ])


class ManifestDirTest(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = netlab.class_tmpdir(cls, "npx-dir-")
        os.chmod(cls.tmp, 0o755)
        cls.lab = netlab.Lab()
        cls.addClassCleanup(cls.lab.cleanup)
        cls.star = netlab.Star(cls.lab, BACKENDS)
        cls.echo_log = open(os.path.join(cls.tmp, "echo.log"), "a")
        cls.addClassCleanup(cls.echo_log.close)
        for b in BACKENDS:
            netlab.start_echo(cls.lab, b, b, tcp_ports=(8080, 9090), udp_ports=(), log=cls.echo_log)
        cls.dir = os.path.join(cls.tmp, "manifests")
        os.mkdir(cls.dir, 0o755)
        cls.sock = os.path.join(cls.tmp, "nftproxy.sock")
        cls.url = "unix://" + cls.sock
        cls.state_dir = os.path.join(cls.tmp, "state")
        cls.config = os.path.join(cls.tmp, "config.yaml")
        with open(cls.config, "w") as f:
            f.write("# written by test_manifest_dir.py\n"
                    "listen: [\"%s\"]\ntable: %s\nstate-dir: %s\nmanifests:\n  - %s\nlog-level: debug\n"
                    % (cls.url, TABLE, cls.state_dir, cls.dir))
        # One service there from the start: synced before the server listens.
        with open(os.path.join(cls.dir, "boot.yaml"), "w") as f:
            f.write(service("boot", "198.19.70.1", 80, 8080, ["b1"], cls.star.v4))
        cls.server_log_path = os.path.join(cls.tmp, "server.log")
        log = open(cls.server_log_path, "a")
        cls.server = cls.lab.spawn("proxy", [BIN, "serve", "--config", cls.config], stdout=log, stderr=log)
        log.close()
        cls.first_listing = netlab.wait_server(cls.server, cls.sock,
                                               lambda: cls.cli_run("get", "services", "-o", "name"),
                                               cls.server_log_path).stdout

    @classmethod
    def cli_run(cls, *args, timeout=30, input=None):
        return subprocess.run([BIN] + list(args) + ["--server", cls.url], capture_output=True, text=True,
                              timeout=timeout, input=input)

    def cli(self, *args, **kw):
        return self.cli_run(*args, **kw)

    # -- files -------------------------------------------------------------------

    def path(self, rel):
        return os.path.join(self.dir, rel)

    def write(self, rel, text):
        p = self.path(rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        self.addCleanup(self.remove, rel)
        return p

    def remove(self, rel):
        try:
            os.unlink(self.path(rel))
        except FileNotFoundError:
            pass

    # -- what the server has -------------------------------------------------------

    def names(self):
        cp = self.cli("get", "services", "-o", "name")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return set(line.split("/")[-1] for line in cp.stdout.split())

    def status(self):
        cp = self.cli("status")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        return cp.stdout

    def dir_status(self):
        cp = self.cli("status", "-o", "json")
        self.assertEqual(cp.returncode, 0, cp.stderr)
        dirs = json.loads(cp.stdout).get("manifestDirs", [])
        self.assertEqual(len(dirs), 1, cp.stdout)
        return dirs[0]

    def wait(self, what, cond, timeout=5.0):
        """Polls cond() until true; returns the seconds it took."""
        t0 = time.monotonic()
        while not cond():
            if time.monotonic() - t0 > timeout:
                self.fail("%s: not after %ss\nstatus:\n%s\nserver log:\n%s"
                          % (what, timeout, self.status(), _tail(self.server_log_path)))
            time.sleep(0.05)
        return time.monotonic() - t0

    def traffic(self, vip, port, count=12, deadline=10.0):
        return netlab.traffic(self.lab, "client", "tcp", vip, port, count, timeout=1.0, deadline=deadline)

    def assert_served(self, vip, port, backends, backend_port, count=12):
        res = self.traffic(vip, port, count)
        msg = "traffic to %s:%d: %s\nserver log:\n%s" % (vip, port, json.dumps(res, sort_keys=True),
                                                         _tail(self.server_log_path))
        self.assertEqual(res["errors"], {}, msg)
        self.assertEqual(res["ok"], count, msg)
        self.assertEqual(sorted(res["answers"]), sorted(backends), msg)
        self.assertEqual(res["ports"], {str(backend_port): count}, msg)

    def assert_not_served(self, vip, port, count=4):
        res = self.traffic(vip, port, count, deadline=8.0)
        self.assertEqual(res["ok"], 0, "answered: %s" % json.dumps(res, sort_keys=True))

    # -- tests ----------------------------------------------------------------------

    def test_a_synced_before_ready_and_status(self):
        # The server answered only after boot.yaml was applied.
        self.assertIn("boot", self.first_listing)
        self.assert_served("198.19.70.1", 80, ["b1"], 8080)
        d = self.dir_status()
        self.assertEqual(d["path"], self.dir)
        self.assertEqual(d["source"], "dir:" + self.dir)
        self.assertNotIn("lastError", d)
        text = self.status()
        self.assertIn("Manifest dir:", text)
        self.assertIn(self.dir, text)
        # Its resources belong to the directory's source.
        cp = self.cli("get", "service", "boot", "-o", "json")
        self.assertEqual(json.loads(cp.stdout)["metadata"]["source"], "dir:" + self.dir, cp.stdout)

    def test_add_change_remove(self):
        vip = "198.19.70.10"
        self.write("web.yaml", service("web", vip, 80, 8080, ["b1"], self.star.v4))
        took = self.wait("web applied", lambda: "web" in self.names())
        self.assertLess(took, 2.0, "a new file should apply within a second or so (took %.2fs)" % took)
        self.assert_served(vip, 80, ["b1"], 8080)
        # A new backend and another port: traffic follows.
        self.write("web.yaml", service("web", vip, 81, 9090, ["b1", "b2"], self.star.v4))
        self.wait("web changed", lambda: '"port": 81' in self.cli("get", "service", "web", "-o", "json").stdout)
        self.assert_served(vip, 81, ["b1", "b2"], 9090, count=30)
        self.assert_not_served(vip, 80)
        # Removed: the VIP is gone.
        os.unlink(self.path("web.yaml"))
        self.wait("web removed", lambda: "web" not in self.names())
        self.assert_not_served(vip, 81)
        sys.stderr.write("\n  web.yaml applied %.2fs after it was written\n" % took)

    def test_broken_file_keeps_last_good_state(self):
        vip = "198.19.70.20"
        self.write("shop.yaml", service("shop", vip, 80, 8080, ["b2"], self.star.v4))
        self.wait("shop applied", lambda: "shop" in self.names())
        self.assert_served(vip, 80, ["b2"], 8080)
        # A YAML error in another file: nothing changes, status says where.
        self.write("sub/broken.yaml", service("other", "198.19.70.21", 80, 8080, ["b3"], self.star.v4)
                   + "---\nkind: Service\nmetadata: {name: x\n")
        self.wait("YAML error shown", lambda: "broken.yaml" in self.dir_status().get("lastError", ""))
        err = self.dir_status()["lastError"]
        self.assertIn(self.path("sub/broken.yaml") + ": document 3", err)
        text = self.status()
        self.assertIn(self.path("sub/broken.yaml") + ": document 3", text)
        self.assertIn("the last good state keeps serving", text)
        self.assertNotIn("other", self.names())
        self.assert_served(vip, 80, ["b2"], 8080)
        # A validation error (refused by the server): file, document and field.
        self.write("sub/broken.yaml", service("other", "198.19.70.21", 70000, 8080, ["b3"], self.star.v4))
        self.wait("validation error shown",
                  lambda: "spec.ports[0].port" in self.dir_status().get("lastError", ""))
        err = self.dir_status()["lastError"]
        self.assertIn(self.path("sub/broken.yaml") + ": document 1", err)
        self.assertIn("service default/other: spec.ports[0].port", err)
        self.assertNotIn("other", self.names())
        self.assert_served(vip, 80, ["b2"], 8080)
        # Also when shop.yaml changes meanwhile: the whole directory is one unit.
        self.write("shop.yaml", service("shop", vip, 80, 8080, ["b3"], self.star.v4))
        time.sleep(1.0)
        self.assert_served(vip, 80, ["b2"], 8080)
        # Fixed: applied, error gone.
        self.write("sub/broken.yaml", service("other", "198.19.70.21", 80, 8080, ["b3"], self.star.v4))
        self.wait("fixed", lambda: "other" in self.names())
        self.assertNotIn("lastError", self.dir_status())
        self.assert_served("198.19.70.21", 80, ["b3"], 8080)
        self.assert_served(vip, 80, ["b3"], 8080)
        os.unlink(self.path("sub/broken.yaml"))
        os.unlink(self.path("shop.yaml"))
        self.wait("removed", lambda: not ({"other", "shop"} & self.names()))

    def test_half_written_file_is_never_applied(self):
        # Watch every service change from now on.
        events = queue.Queue()
        proc = subprocess.Popen([BIN, "watch", "services", "-o", "json", "--server", self.url],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def stop():
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
            proc.stdout.close()
            proc.stderr.close()
        self.addCleanup(stop)
        threading.Thread(target=lambda: [events.put(json.loads(l)) for l in proc.stdout], daemon=True).start()
        self.assertIn("up to date at revision", proc.stderr.readline())

        first = service("half-a", "198.19.70.30", 80, 8080, ["b1"], self.star.v4) + "---\n"
        rest = service("half-b", "198.19.70.31", 80, 8080, ["b2"], self.star.v4)
        p = self.path("half.yaml")
        self.addCleanup(self.remove, "half.yaml")
        f = open(p, "w")
        self.addCleanup(f.close)
        f.write(first)            # half of it: a valid manifest on its own
        f.flush()
        os.fsync(f.fileno())
        # Meanwhile another file changes, so the directory is read during the pause.
        self.write("trigger.yaml", service("trigger", "198.19.70.32", 80, 8080, ["b3"], self.star.v4))
        seen_trigger = False
        t_end = time.monotonic() + 1.5
        while time.monotonic() < t_end:
            names = self.names()
            self.assertNotIn("half-a", names, "the half-written file was applied")
            seen_trigger = seen_trigger or "trigger" in names
            time.sleep(0.1)
        self.assertTrue(seen_trigger, "the directory was not read during the pause")
        f.write(rest)
        f.close()
        self.wait("whole file applied", lambda: {"half-a", "half-b"} <= self.names())
        self.assert_served("198.19.70.31", 80, ["b2"], 8080)
        # Watch: half-a appeared in the same revision as half-b, never before.
        first_rev = {}
        deadline = time.monotonic() + 5
        while len(first_rev) < 2 and time.monotonic() < deadline:
            try:
                e = events.get(timeout=1)
            except queue.Empty:
                continue
            name = e["resource"]["service"]["metadata"]["name"]
            if name in ("half-a", "half-b"):
                first_rev.setdefault(name, int(e["revision"]))
        self.assertEqual(len(first_rev), 2, first_rev)
        self.assertEqual(first_rev["half-a"], first_rev["half-b"], first_rev)
        os.unlink(p)
        os.unlink(self.path("trigger.yaml"))
        self.wait("removed", lambda: not ({"half-a", "half-b", "trigger"} & self.names()))

    def test_rename_into_place(self):
        tmp = self.path(".api.yaml.tmp")
        with open(tmp, "w") as f:
            f.write(service("api", "198.19.70.40", 80, 9090, ["b3"], self.star.v4))
        time.sleep(0.5)
        self.assertNotIn("api", self.names())    # a hidden temp file is not read
        os.rename(tmp, self.path("api.yaml"))
        self.addCleanup(self.remove, "api.yaml")
        self.wait("renamed file applied", lambda: "api" in self.names())
        self.assert_served("198.19.70.40", 80, ["b3"], 9090)
        # Renamed away (out of the directory): gone.
        os.rename(self.path("api.yaml"), os.path.join(self.tmp, "api.yaml.moved"))
        self.wait("renamed-away file removed", lambda: "api" not in self.names())

    def test_subdirectories(self):
        os.makedirs(self.path("team-a/deeper"))
        self.addCleanup(shutil.rmtree, self.path("team-a"), True)
        time.sleep(0.2)
        self.write("team-a/deeper/db.yml", service("db", "198.19.70.50", 5432, 8080, ["b1", "b3"], self.star.v4))
        self.wait("file in a new subdirectory applied", lambda: "db" in self.names())
        self.assert_served("198.19.70.50", 5432, ["b1", "b3"], 8080, count=30)
        # A subdirectory moved in whole.
        staged = os.path.join(self.tmp, "staged")
        os.makedirs(staged)
        with open(os.path.join(staged, "cache.json"), "w") as f:
            json.dump({"kind": "Service", "metadata": {"name": "cache"},
                       "spec": {"clusterIps": ["198.19.70.51"], "ports": [{"port": 6379, "targetPort": 8080}]}}, f)
        os.rename(staged, self.path("team-b"))
        self.addCleanup(shutil.rmtree, self.path("team-b"), True)
        self.wait("moved-in subdirectory applied", lambda: "cache" in self.names(), timeout=15)
        shutil.rmtree(self.path("team-a"))
        shutil.rmtree(self.path("team-b"))
        self.wait("removed subdirectories", lambda: not ({"db", "cache"} & self.names()))
        self.assert_not_served("198.19.70.50", 5432)

    def test_editor_files_are_ignored(self):
        bad = "kind: Service\nmetadata: {name: nope\n"
        for rel in (".foo.yaml.swp", "foo.yaml~", "#foo.yaml#", "foo.yaml.dpkg-new", "notes.txt"):
            self.write(rel, bad)
        self.write(".hidden/svc.yaml", service("hidden", "198.19.70.60", 80, 8080, ["b1"], self.star.v4))
        self.write("foo.yaml.bak", service("backup", "198.19.70.61", 80, 8080, ["b1"], self.star.v4))
        time.sleep(1.5)
        self.assertNotIn("lastError", self.dir_status())
        self.assertFalse({"hidden", "backup"} & self.names())
        shutil.rmtree(self.path(".hidden"))

    def test_missing_directory_is_refused(self):
        # In the client namespace, so that even a wrong start touches nothing of the host's.
        cp = self.lab.exec("client", [BIN, "serve", "--manifests", "/nonexistent/manifests", "--state-dir", "",
                                      "--listen", "unix://" + os.path.join(self.tmp, "other.sock"),
                                      "--table", "npxdir2"], timeout=30)
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertIn("--manifests /nonexistent/manifests", cp.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "other.sock")))
        # Nested directories: each file belongs to one source.
        os.makedirs(self.path("nested"), exist_ok=True)
        self.addCleanup(shutil.rmtree, self.path("nested"), True)
        cp = self.lab.exec("client", [BIN, "serve", "--manifests", self.dir, "--manifests", self.path("nested"),
                                      "--state-dir", "", "--listen",
                                      "unix://" + os.path.join(self.tmp, "other.sock"), "--table", "npxdir2"],
                           timeout=30)
        self.assertEqual(cp.returncode, 2, cp.stderr)
        self.assertIn("inside or around", cp.stderr)


if __name__ == "__main__":
    unittest.main()
