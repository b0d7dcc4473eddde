#!/usr/bin/python3
"""The DNS responder's query rate (BENCHMARKS.md, "DNS responder"): N
services in a private namespace lab (netlab.Star), `nftproxy serve
--dns-address 198.18.1.1:53`, and dnsperf from the client namespace for
SECONDS over UDP and then TCP (10 clients, 100 queries in flight), with one
name in 11 unknown (NXDOMAIN). Also checks that the server then stops on
SIGTERM with status 0. As root:

    /usr/bin/python3 tests/bench/dns_bench.py [BINARY] [N] [SECONDS]
"""

import os
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import netlab  # noqa: E402

BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "build", "nftproxy")
N = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
SECONDS = sys.argv[3] if len(sys.argv) > 3 else "10"
KEYS = ("Queries sent", "Queries lost", "Response codes", "Queries per second", "Average Latency", "Latency StdDev")


def main():
    tmp = tempfile.mkdtemp(prefix="npx-dnsbench-")
    lab = netlab.Lab()
    try:
        netlab.Star(lab, ("b1",))
        sock = os.path.join(tmp, "s.sock")
        log_path = os.path.join(tmp, "server.log")
        with open(log_path, "w") as log:
            srv = lab.spawn("proxy", [BIN, "serve", "--listen", "unix://" + sock, "--table", "npxbench",
                                      "--state-dir", os.path.join(tmp, "state"), "--dns-address", "198.18.1.1:53",
                                      "--dns-upstream", "none", "--metrics-address", ""], stdout=log, stderr=log)
        cli = lambda *a: subprocess.run([BIN] + list(a) + ["--server", "unix://" + sock],  # noqa: E731
                                        capture_output=True, text=True)
        netlab.wait_server(srv, sock, lambda: cli("get", "services"), log_path)
        docs = [{"kind": "Service", "metadata": {"namespace": "default", "name": "svc%d" % i},
                 "spec": {"clusterIps": ["198.19.%d.%d" % (i // 250, i % 250 + 1)],
                          "ports": [{"name": "http", "protocol": "TCP", "port": 80}]}} for i in range(N)]
        with open(os.path.join(tmp, "m.yaml"), "w") as f:
            f.write(netlab.to_yaml(docs))
        cp = cli("apply", "-f", os.path.join(tmp, "m.yaml"))
        assert cp.returncode == 0, cp.stderr
        queries = os.path.join(tmp, "queries")
        with open(queries, "w") as f:
            for i in range(N):
                f.write("svc%d.default.svc.cluster.local A\n" % i)
            for i in range(N // 10):
                f.write("nope%d.default.svc.cluster.local A\n" % i)
        for mode in ("udp", "tcp"):
            cp = lab.exec("client", ["dnsperf", "-s", "198.18.1.1", "-d", queries, "-l", SECONDS, "-c", "10",
                                     "-q", "100", "-m", mode], timeout=int(SECONDS) + 60)
            print("== %s, %d services" % (mode, N))
            print("\n".join(line for line in cp.stdout.splitlines() if any(k in line for k in KEYS)))
        with open("/proc/%d/status" % srv.pid) as f:
            print("server RSS:", f.read().split("VmRSS:")[1].split("\n")[0].strip())
        rc = lab.stop(srv, signal.SIGTERM)
        print("exit status after SIGTERM:", rc)
    finally:
        lab.cleanup()


if __name__ == "__main__":
    main()
