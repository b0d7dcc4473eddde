"""The Debian package: scripts/build-deb.sh builds it, dpkg installs, removes
and purges it on this machine.

The binary packaged is NFTPROXY_STATIC_BIN when set (it must then be
statically linked: the package declares no library dependencies), else
NFTPROXY_BIN with --allow-dynamic, so that every build's ctest checks the
packaging with the binary it has. NFTPROXY_DEB names a package built
already from that binary (then it is not built again). The package's server is started by hand
in a private network namespace, so the host's nftables are not touched.

Needs root, dpkg and a machine where nftproxy is not installed otherwise
(no /usr/bin/nftproxy, /etc/nftproxy or /var/lib/nftproxy): they are
skipped when missing (failed under CI=true). Runs serialized with any other
run of this test through a lock file. At the end the package is purged and
the namespace deleted, whatever happened.
"""

import fcntl
import gzip
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CI = os.environ.get("CI") == "true"
LOCK = "/run/lock/nftproxy-package-test.lock"
UNIT = "/lib/systemd/system/nftproxy.service"
CONFIG = "/etc/nftproxy/config.yaml"
STATE = "/var/lib/nftproxy"
SOCKET = "/run/nftproxy/nftproxy.sock"

# Every file the package ships (directories aside).
FILES = {
    "/usr/bin/nftproxy",
    UNIT,
    CONFIG,
    "/usr/share/man/man1/nftproxy.1.gz",
    "/usr/share/bash-completion/completions/nftproxy",
    "/usr/share/zsh/vendor-completions/_nftproxy",
    "/usr/share/fish/vendor_completions.d/nftproxy.fish",
    "/usr/share/doc/nftproxy/copyright",
    "/usr/share/doc/nftproxy/README.md",
    "/usr/share/doc/nftproxy/changelog.gz",
    "/usr/share/lintian/overrides/nftproxy",
}

MANIFEST = """\
kind: Service
metadata: {{namespace: {ns}, name: web}}
spec:
  clusterIps: ["198.19.77.10"]
  ports: [{{name: http, protocol: TCP, port: 80, targetPort: 8080}}]
---
kind: EndpointSlice
metadata: {{namespace: {ns}, name: web-1}}
serviceName: web
endpoints:
  - addresses: ["198.18.77.2"]
"""


def run(cmd, check=True, **kw):
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    p = subprocess.run(cmd, **kw)
    if check and p.returncode != 0:
        raise AssertionError("%s: exit %d\nstdout:\n%s\nstderr:\n%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p


def skip_or_fail(why):
    if CI:
        raise AssertionError(why)
    raise unittest.SkipTest(why)


def package_status():
    p = run(["dpkg-query", "-W", "-f=${Status}", "nftproxy"], check=False)
    return p.stdout.strip() if p.returncode == 0 else ""


def version_from_cmake():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        m = re.search(r"project\(nftproxy VERSION ([0-9.]+)", f.read())
    return m.group(1)


def unit_values(path, key):
    values = []
    with open(path) as f:
        for line in f:
            if line.startswith(key + "="):
                values.append(line.split("=", 1)[1].strip())
    return values


def host_has_table():
    return run(["nft", "list", "table", "inet", "nftproxy"], check=False).returncode == 0


def mdwe_supported():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    # PR_GET_MDWE (66): Linux 6.3 and later.
    return libc.prctl(66, 0, 0, 0, 0) >= 0


class PackageTest(unittest.TestCase):
    """One sequence: build, inspect, install, run, remove, purge."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            skip_or_fail("needs root")
        for tool in ("dpkg", "dpkg-deb", "ip", "nft", "man", "systemd-analyze", "setpriv", "readelf"):
            if shutil.which(tool) is None:
                skip_or_fail("%s not found (scripts/install-deps.sh)" % tool)
        static = os.environ.get("NFTPROXY_STATIC_BIN")
        cls.binary = static or os.environ.get("NFTPROXY_BIN") or os.path.join(ROOT, "build", "nftproxy")
        cls.allow_dynamic = not static
        if not os.access(cls.binary, os.X_OK):
            skip_or_fail("no binary to package: %s" % cls.binary)
        cls.version = version_from_cmake()
        cls.tmp = tempfile.mkdtemp(prefix="nftproxy-pkgtest.")
        cls.netns = "pkgtest-%d" % os.getpid()
        cls.server = None
        cls.installed = False
        cls.netns_added = False
        cls.lock = open(LOCK, "w")
        deadline = time.monotonic() + 600
        while True:
            try:
                fcntl.flock(cls.lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    cls.tearDownClass()
                    raise AssertionError("another package test holds %s for 10 minutes" % LOCK)
                time.sleep(1)
        try:
            cls.prepare()
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def prepare(cls):
        status = package_status()
        if status and "not-installed" not in status:
            skip_or_fail("the nftproxy package is already on this machine (%s): not touching it" % status)
        for path in ("/usr/bin/nftproxy", "/etc/nftproxy", STATE, SOCKET):
            if os.path.lexists(path):
                skip_or_fail("%s exists: an nftproxy not from this test is on this machine; not touching it "
                             "(left by a killed run of this test? then: dpkg --purge nftproxy; "
                             "rm -rf /var/lib/nftproxy /run/nftproxy)" % path)
        if os.environ.get("NFTPROXY_DEB"):
            # Built already (by .ci/run, with the documented command).
            cls.deb = os.path.abspath(os.environ["NFTPROXY_DEB"])
            return
        cmd = [os.path.join(ROOT, "scripts", "build-deb.sh")]
        if cls.allow_dynamic:
            cmd.append("--allow-dynamic")
        cmd += [cls.binary, cls.tmp]
        started = time.monotonic()
        out = run(cmd)
        print("build-deb.sh: %.1f s" % (time.monotonic() - started), file=sys.stderr)
        cls.deb = out.stdout.strip().splitlines()[-1]

    @classmethod
    def tearDownClass(cls):
        if getattr(cls, "server", None) is not None and cls.server.poll() is None:
            cls.server.kill()
            cls.server.wait()
        if getattr(cls, "netns_added", False):
            run(["ip", "netns", "del", cls.netns], check=False)
        if getattr(cls, "installed", False) and package_status():
            run(["dpkg", "--purge", "nftproxy"], check=False)
        if getattr(cls, "host_table_before", True) is False and host_has_table():
            # Made by the service postinst started under systemd.
            run(["nft", "delete", "table", "inet", "nftproxy"], check=False)
        if getattr(cls, "tmp", None):
            shutil.rmtree(cls.tmp, ignore_errors=True)
        if getattr(cls, "lock", None):
            cls.lock.close()

    def test_package(self):
        with self.subTest("build"):
            self.check_build()
        self.check_contents()
        self.check_lintian()
        self.install()
        self.check_installed()
        self.run_in_netns()
        self.remove()
        self.purge()

    def check_build(self):
        self.assertEqual(os.path.basename(self.deb), "nftproxy_%s_amd64.deb" % self.version)
        if not self.allow_dynamic:
            return
        # Without --allow-dynamic a dynamic binary is refused, naming the way out.
        if "(NEEDED)" in run(["readelf", "-d", self.binary], check=False).stdout:
            p = run([os.path.join(ROOT, "scripts", "build-deb.sh"), self.binary, self.tmp], check=False)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("--allow-dynamic", p.stderr)

    def check_contents(self):
        info = run(["dpkg-deb", "-I", self.deb]).stdout
        fields = dict(re.findall(r"^ ([A-Z][A-Za-z-]+): (.*)$", info, re.M))
        self.assertEqual(fields.get("Package"), "nftproxy")
        self.assertEqual(fields.get("Version"), self.version)
        self.assertEqual(fields.get("Architecture"), "amd64")
        for field in ("Depends", "Pre-Depends"):
            self.assertNotIn(field, fields, "the static package depends on nothing")
        for member in ("control", "md5sums", "conffiles", "postinst", "prerm", "postrm"):
            self.assertRegex(info, r"\b%s\b" % member)
        self.assertEqual(run(["dpkg-deb", "-f", self.deb, "Package"]).stdout.strip(), "nftproxy")
        listing = run(["dpkg-deb", "-c", self.deb]).stdout
        print(listing, file=sys.stderr)
        files = set()
        for line in listing.splitlines():
            mode, owner, _size, _date, _time, path = line.split(None, 5)
            self.assertEqual(owner, "root/root", line)
            if not mode.startswith("d"):
                files.add(path[1:])
        self.assertEqual(files, FILES)

        x = os.path.join(self.tmp, "x")
        run(["dpkg-deb", "-x", self.deb, x])
        control = os.path.join(self.tmp, "control")
        run(["dpkg-deb", "-e", self.deb, control])
        with open(os.path.join(control, "conffiles")) as f:
            self.assertEqual(f.read().split(), [CONFIG])
        binary = x + "/usr/bin/nftproxy"
        self.assertNotIn(".symtab", run(["readelf", "-S", "-W", binary]).stdout, "stripped")
        if not self.allow_dynamic:
            self.assertNotIn("(NEEDED)", run(["readelf", "-d", binary], check=False).stdout)
            self.assertNotIn("program interpreter", run(["readelf", "-l", binary]).stdout)
        # The unit runs the packaged binary with the packaged config.
        unit = x + UNIT
        self.assertEqual(unit_values(unit, "ExecStart"), ["/usr/bin/nftproxy serve --config %s" % CONFIG])
        self.assertEqual(unit_values(unit, "CapabilityBoundingSet"), ["CAP_NET_ADMIN CAP_CHOWN"])
        self.assertEqual(unit_values(unit, "PrivateNetwork"), [])
        for key, value in (("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                           ("NoNewPrivileges", "yes"), ("StateDirectory", "nftproxy"),
                           ("RuntimeDirectory", "nftproxy"), ("Restart", "on-failure"),
                           ("MemoryDenyWriteExecute", "yes")):
            self.assertEqual(unit_values(unit, key), [value], key)
        with open(os.path.join(ROOT, "packaging", "nftproxy.yaml")) as a, open(x + CONFIG) as b:
            self.assertEqual(a.read(), b.read())
        # Completion: generated by the binary, and loadable.
        run(["bash", "-c", "source %s/usr/share/bash-completion/completions/nftproxy && complete -p nftproxy" % x])
        for shell, path in (("zsh", "/usr/share/zsh/vendor-completions/_nftproxy"),
                            ("fish", "/usr/share/fish/vendor_completions.d/nftproxy.fish")):
            self.assertGreater(os.path.getsize(x + path), 100, path)
            if shutil.which(shell):
                run([shell, "-n", x + path])
        with gzip.open(x + "/usr/share/man/man1/nftproxy.1.gz", "rt") as f:
            page = f.read()
        with open(os.path.join(ROOT, "packaging", "nftproxy.1")) as f:
            self.assertEqual(page, f.read())

    def check_lintian(self):
        if shutil.which("lintian") is None:
            print("lintian: not installed, not run", file=sys.stderr)
            return
        p = run(["lintian", "--allow-root", self.deb], check=False)
        print("lintian:\n" + p.stdout + p.stderr, file=sys.stderr)
        errors = [l for l in p.stdout.splitlines() if l.startswith("E:")]
        self.assertEqual(errors, [], "lintian errors")

    def install(self):
        systemd = os.path.isdir("/run/systemd/system")
        type(self).host_table_before = host_has_table()
        print("PID 1: %s; systemd %s" % (run(["ps", "-p", "1", "-o", "comm="]).stdout.strip(),
                                        "running" if systemd else "not running"), file=sys.stderr)
        type(self).installed = True
        p = run(["dpkg", "-i", self.deb], check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertNotRegex(p.stderr, r"(?i)\berror\b", p.stderr)
        self.assertEqual(package_status(), "install ok installed")
        wants = "/etc/systemd/system/multi-user.target.wants/nftproxy.service"
        if systemd:
            # Enabled and started by postinst; stopped here so that the
            # server started by hand below owns the state dir.
            self.assertTrue(os.path.islink(wants), "enabled")
            self.assertEqual(run(["systemctl", "is-active", "nftproxy"], check=False).stdout.strip(), "active")
            run(["systemctl", "stop", "nftproxy"])
        else:
            self.assertFalse(os.path.lexists(wants), "not enabled without systemd")

    def check_installed(self):
        for path in FILES:
            self.assertTrue(os.path.isfile(path), path)
        self.assertIn(self.version, run(["/usr/bin/nftproxy", "--version"]).stdout)
        # systemd-analyze verify also runs `man nftproxy` for Documentation=.
        p = run(["systemd-analyze", "verify", UNIT], check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertNotIn("nftproxy.service", p.stdout + p.stderr)
        self.assertEqual(run(["man", "-w", "nftproxy"]).stdout.strip(), "/usr/share/man/man1/nftproxy.1.gz")
        p = run(["man", "--warnings", "-l", "/usr/share/man/man1/nftproxy.1.gz"], env=dict(os.environ, MANWIDTH="80", LC_ALL="C"))
        self.assertEqual(p.stderr, "")
        for section in ("COMMANDS", "SERVER FLAGS", "CONFIGURATION", "FILES", "THE DEBIAN PACKAGE"):
            self.assertRegex(p.stdout, r"(?m)^%s$" % section)
        # Every flag of `serve --help` and every command of `--help` is in the page.
        text = p.stdout
        serve_help = run(["/usr/bin/nftproxy", "serve", "--help"]).stdout
        for flag in sorted(set(re.findall(r"(?m)^\s+(--[a-z][a-z-]*)", serve_help))):
            self.assertIn(flag, text)
        commands = run(["/usr/bin/nftproxy", "--help"]).stdout.split("Global flags")[0]
        for command in re.findall(r"(?m)^  ([a-z]+) ", commands):
            self.assertRegex(text, r"(?m)^       %s\b" % command)

    def serve_command(self):
        """The installed binary with the installed config, limited to the
        unit's capabilities, no new privileges and, when the kernel has it,
        no writable code (what MemoryDenyWriteExecute= enforces)."""
        caps = ",".join("+" + c[len("CAP_"):].lower() for c in unit_values(UNIT, "CapabilityBoundingSet")[0].split())
        cmd = ["ip", "netns", "exec", self.netns,
               "setpriv", "--bounding-set=-all," + caps, "--inh-caps=-all", "--no-new-privs"]
        if mdwe_supported():
            cmd += ["/usr/bin/python3", "-c",
                    "import ctypes, os, sys\n"
                    "if ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0: sys.exit('PR_SET_MDWE failed')\n"
                    "os.execv(sys.argv[1], sys.argv[1:])"]
        if "--config" in run(["/usr/bin/nftproxy", "serve", "--help"]).stdout:
            return cmd + ["/usr/bin/nftproxy", "serve", "--config", CONFIG]
        # A binary from before --config: the file's settings as flags.
        import yaml
        with open(CONFIG) as f:
            settings = yaml.safe_load(f) or {}
        cmd += ["/usr/bin/nftproxy", "serve"]
        for key, value in settings.items():
            for v in value if isinstance(value, list) else [value]:
                cmd += ["--" + key] if v is True else ["--%s=%s" % (key, v)]
        return cmd

    def client(self, *args, check=True):
        return run(["ip", "netns", "exec", self.netns, "/usr/bin/nftproxy", "--server", "unix://" + SOCKET,
                    "--request-timeout", "10s"] + list(args), check=check)

    def table(self):
        return run(["ip", "netns", "exec", self.netns, "nft", "list", "table", "inet", "nftproxy"], check=False)

    def run_in_netns(self):
        run(["ip", "netns", "add", self.netns])
        type(self).netns_added = True
        run(["ip", "netns", "exec", self.netns, "ip", "link", "set", "lo", "up"])
        log = open(os.path.join(self.tmp, "serve.log"), "w")
        cmd = self.serve_command()
        print(" ".join(cmd), file=sys.stderr)
        type(self).server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while not os.path.exists(SOCKET):
            if self.server.poll() is not None or time.monotonic() > deadline:
                with open(log.name) as f:
                    self.fail("serve did not start:\n" + f.read())
            time.sleep(0.1)
        ns = "pkgtest%d" % os.getpid()
        manifest = os.path.join(self.tmp, "web.yaml")
        with open(manifest, "w") as f:
            f.write(MANIFEST.format(ns=ns))
        self.client("apply", "-f", manifest)
        self.assertIn("web", self.client("get", "services", "-n", ns).stdout)
        listed = self.table()
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertIn("managed by nftproxy", listed.stdout)
        self.assertIn("198.19.77.10", listed.stdout)
        host = run(["nft", "list", "ruleset"], check=False).stdout
        self.assertNotIn("198.19.77.10", host, "the host's nftables are untouched")
        # Stopping leaves the rules installed and the state saved.
        self.server.send_signal(signal.SIGTERM)
        self.assertEqual(self.server.wait(timeout=30), 0)
        log.close()
        self.assertIn("198.19.77.10", self.table().stdout)
        self.assertEqual(os.stat(STATE).st_mode & 0o7777, 0o750)
        self.assertTrue(os.listdir(STATE), "state saved in " + STATE)
        type(self).state_files = sorted(os.listdir(STATE))

    def remove(self):
        p = run(["dpkg", "-r", "nftproxy"], check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertEqual(package_status(), "deinstall ok config-files")
        for path in FILES - {CONFIG}:
            self.assertFalse(os.path.lexists(path), path)
        self.assertFalse(os.path.lexists("/etc/systemd/system/multi-user.target.wants/nftproxy.service"))
        # Kept: the configuration, the saved state and the kernel's table.
        self.assertTrue(os.path.isfile(CONFIG))
        self.assertEqual(sorted(os.listdir(STATE)), self.state_files)
        self.assertIn("198.19.77.10", self.table().stdout)

    def purge(self):
        p = run(["dpkg", "--purge", "nftproxy"], check=False)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn(package_status(), ("", "unknown ok not-installed", "purge ok not-installed"))
        # As documented: configuration, state and runtime dir go; the
        # kernel's table stays until `nft delete table inet nftproxy`.
        for path in ("/etc/nftproxy", STATE, "/run/nftproxy"):
            self.assertFalse(os.path.lexists(path), path)
        self.assertIn("198.19.77.10", self.table().stdout)


if __name__ == "__main__":
    unittest.main()
