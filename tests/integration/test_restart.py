#!/usr/bin/python3
"""Restarts without a blip (issue 14): `kill -9` of nftproxy and a restart
under a steady load of new connections through a VIP, many times over.

The new run adopts the table the previous run left (dataplane/adopt.h):
same tickets, affinity entries kept, only differences written. Asserted:
  - not one new connection refused, reset or timed out over all cycles;
  - a client of a ClientIP-affinity service keeps its endpoint across every
    restart;
  - every restart adopted the table (the server says so), and the table is
    the same before and after (but for counters and the affinity entries'
    expiry times).

Topology: tests/integration/netlab.py's Star (client, proxy, b1..b3), as
test_clusterip.py. Run from the repository root, as root:

    NFTPROXY_BIN=build/nftproxy /usr/bin/python3 -m unittest -v tests/integration/test_restart.py

NFTPROXY_RESTART_CYCLES (default 20) and NFTPROXY_RESTART_RATE (new
connections per second, default 1000) size the run.
"""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import netlab  # noqa: E402
from test_clusterip import (BACKENDS, BIN, ProxyLabCase, _tail, endpoint,  # noqa: E402
                            endpoint_slice, service, sport)

CYCLES = int(os.environ.get("NFTPROXY_RESTART_CYCLES", "20"))
RATE = int(os.environ.get("NFTPROXY_RESTART_RATE", "1000"))
LOAD_CLIENT = os.path.join(HERE, "load_client.py")


def setUpModule():
    netlab.require_root_and_binary(BIN)


def _strip_volatile(text):
    """The table without counters and without the affinity maps' elements
    (their expiry times run down)."""
    text = netlab.norm_ruleset(text)
    return re.sub(r"(map affinity[46] \{[^}]*?)elements = \{[^}]*\}", r"\1", text, flags=re.S)


class RestartUnderLoadTest(ProxyLabCase):

    def sticky_client(self, vip, stop, answers, errors):
        while not stop.is_set():
            res = self.traffic("tcp", vip, 80, 1, timeout=2.0, deadline=5.0)
            answers.extend(res["answers"].keys())
            for kind, n in res["errors"].items():
                errors[kind] = errors.get(kind, 0) + n
            time.sleep(0.05)

    def test_kill9_restarts_under_load(self):
        load_vip, sticky_vip = "198.19.0.70", "198.19.0.71"
        self.cleanup_service("load")
        self.cleanup_service("sticky")
        sticky = service("sticky", [sticky_vip], [sport("http", "TCP", 80, 8080)])
        sticky["spec"]["sessionAffinity"] = "ClientIP"
        self.apply_ok([
            service("load", [load_vip], [sport("http", "TCP", 80, 8080)]),
            endpoint_slice("load-1", "load", [("http", "TCP", 8080)],
                           [endpoint([self.v4(b)]) for b in BACKENDS]),
            sticky,
            endpoint_slice("sticky-1", "sticky", [("http", "TCP", 8080)],
                           [endpoint([self.v4(b)]) for b in BACKENDS]),
        ], wait_vips=[load_vip, sticky_vip])
        self.assert_all_answered(self.traffic("tcp", load_vip, 80, 30), 30, port=8080, what="before")
        first = self.traffic("tcp", sticky_vip, 80, 10)
        self.assertEqual(first["ok"], 10, first)
        self.assertEqual(len(first["answers"]), 1, "ClientIP affinity spread one client: %s" % first)
        endpoint_before = list(first["answers"])[0]
        table_before = _strip_volatile(self.table_text())

        load = self.lab.spawn("client", [sys.executable, LOAD_CLIENT, "--target", load_vip, "--port", "80",
                                         "--rate", str(RATE)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.assertEqual(load.stdout.readline().strip(), "started")
        stop = threading.Event()
        sticky_answers, sticky_errors = [], {}
        sticky_thread = threading.Thread(target=self.sticky_client,
                                         args=(sticky_vip, stop, sticky_answers, sticky_errors), daemon=True)
        sticky_thread.start()
        adopted_before = _tail(self.server_log_path, 100000).count("adopted the table")
        try:
            time.sleep(1.0)
            for cycle in range(CYCLES):
                self.lab.stop(self.server, signal.SIGKILL)
                type(self).server = None
                time.sleep(0.2)      # down for a moment: the kernel serves alone
                self.start_server()
                time.sleep(0.5)      # the load runs against the new run's table
        finally:
            stop.set()
            sticky_thread.join(30)
            out, _ = load.communicate(timeout=60)
        result = json.loads(out.strip().splitlines()[-1])
        print("\n  %d kill -9 restarts under load: %s" % (CYCLES, json.dumps(result)), file=sys.stderr)
        print("  sticky client: %d answers, endpoints %s, errors %s"
              % (len(sticky_answers), sorted(set(sticky_answers)), sticky_errors), file=sys.stderr)

        self.assertEqual(result["errors"], {},
                         "connections failed across the restarts: %s%s" % (json.dumps(result), self.diag()))
        self.assertGreater(result["ok"], 0)
        self.assertEqual(sorted(result["answers"]), sorted(BACKENDS), result)
        self.assertEqual(sticky_errors, {}, "the sticky client's connections failed")
        self.assertGreater(len(sticky_answers), CYCLES)
        self.assertEqual(set(sticky_answers), {endpoint_before},
                         "the ClientIP-affinity client changed endpoint across restarts")
        log = _tail(self.server_log_path, 100000)
        self.assertEqual(log.count("adopted the table") - adopted_before, CYCLES,
                         "not every restart adopted the table; log:\n" + _tail(self.server_log_path, 60))
        self.assertNotIn("replacing the table instead of adopting it", log)
        self.assertEqual(_strip_volatile(self.table_text()), table_before,
                         "the table changed across the restarts")


if __name__ == "__main__":
    unittest.main(verbosity=2)
