#!/usr/bin/python3
"""Sends N independent requests to an echo_server.py (through a VIP) and
prints one JSON object summarising the answers:

  {"count": N, "ok": n, "answers": {"NAME": k, ...}, "ports": {"8080": k, ...},
   "errors": {"kind": k, ...}, "seen_peers": ["ip", ...], "elapsed": s}

TCP: N separate connections. UDP: N datagrams, each from a new socket (so a
new source port and a new conntrack flow). Errors are counted, not raised:
refused, timeout, unreachable, reset, bad_answer, deadline (requests not tried
because --deadline expired), errno_<N>.

usage: traffic_client.py --proto tcp|udp --target IP --port P --count N
                         [--timeout S] [--deadline S] [--bind IP] [--sport PORT]
                         [--hold]

--bind IP: send from this local address. --sport PORT (UDP only): send every
datagram from ONE socket bound to this source port, so that all of them
belong to the same conntrack flow (stale answers are drained before each
datagram).

--hold (TCP): open one connection and keep it open. Prints one JSON line
{"greeting": "<first line>", "local": [ip, port]} (or {"error": kind}), then
for every line read on stdin sends it on the connection and prints
{"reply": "<answer line>"} (or {"error": kind}); exits at EOF on stdin.
"""

import argparse
import errno
import json
import socket
import sys
import time


def classify(e):
    if isinstance(e, socket.timeout):
        return "timeout"
    if isinstance(e, ConnectionRefusedError):
        return "refused"
    if isinstance(e, (ConnectionResetError, ConnectionAbortedError, BrokenPipeError)):
        return "reset"
    if isinstance(e, OSError):
        if e.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH):
            return "unreachable"
        if e.errno == errno.ETIMEDOUT:
            return "timeout"
        if e.errno is not None:
            return "errno_%d" % e.errno
    return type(e).__name__


def _bind(s, bind, sport=0):
    if bind or sport:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((bind or ("::" if s.family == socket.AF_INET6 else "0.0.0.0"), sport))


def tcp_once(family, target, port, timeout, bind=None):
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        _bind(s, bind)
        s.settimeout(timeout)
        s.connect((target, port))
        data = b""
        end = time.monotonic() + timeout
        while b"\n" not in data:
            s.settimeout(max(0.01, end - time.monotonic()))
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        s.close()


def udp_once(family, target, port, timeout, bind=None):
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        _bind(s, bind)
        s.settimeout(timeout)
        s.connect((target, port))
        s.send(b"ping\n")
        return s.recv(65535)
    finally:
        s.close()


class FixedPortUdp:
    """Every datagram from one socket (one source port): one conntrack flow."""

    def __init__(self, family, target, port, bind, sport):
        self.s = socket.socket(family, socket.SOCK_DGRAM)
        _bind(self.s, bind, sport)
        self.s.connect((target, port))

    def __call__(self, family, target, port, timeout, bind=None):
        self.s.setblocking(False)
        while True:                      # drop late answers to earlier datagrams
            try:
                self.s.recv(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:              # e.g. a queued ICMP error
                continue
        self.s.settimeout(timeout)
        self.s.send(b"ping\n")
        return self.s.recv(65535)


def hold(family, target, port, timeout, bind, sport):
    """--hold: one long-lived TCP connection driven by stdin lines."""
    def out(obj):
        sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
        sys.stdout.flush()

    def readline(s, f):
        line = f.readline()
        if not line:
            raise ConnectionResetError("connection closed")
        return line.decode("utf-8", "replace").strip()

    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        _bind(s, bind, sport)
        s.settimeout(timeout)
        s.connect((target, port))
        f = s.makefile("rb")
        out({"greeting": readline(s, f), "local": list(s.getsockname()[:2])})
    except Exception as e:  # noqa: BLE001
        out({"error": classify(e)})
        return
    for cmd in sys.stdin:
        try:
            s.sendall(cmd.strip().encode() + b"\n")
            out({"reply": readline(s, f)})
        except Exception as e:  # noqa: BLE001
            out({"error": classify(e)})
    s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto", choices=("tcp", "udp"), required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=2.0, help="per request, seconds")
    ap.add_argument("--deadline", type=float, default=30.0, help="for all requests, seconds")
    ap.add_argument("--bind", default=None, help="local source address")
    ap.add_argument("--sport", type=int, default=0, help="fixed source port (UDP, --hold)")
    ap.add_argument("--hold", action="store_true", help="one long-lived TCP connection")
    args = ap.parse_args()

    family = socket.AF_INET6 if ":" in args.target else socket.AF_INET
    if args.hold:
        if args.proto != "tcp":
            ap.error("--hold is for --proto tcp")
        hold(family, args.target, args.port, args.timeout, args.bind, args.sport)
        return
    if args.sport and args.proto != "udp":
        ap.error("--sport is for --proto udp (or --hold)")
    once = tcp_once if args.proto == "tcp" else udp_once
    if args.sport:
        once = FixedPortUdp(family, args.target, args.port, args.bind, args.sport)
    answers, ports, errors, peers = {}, {}, {}, set()
    ok = 0
    start = time.monotonic()
    for i in range(args.count):
        left = args.deadline - (time.monotonic() - start)
        if left <= 0:
            errors["deadline"] = errors.get("deadline", 0) + (args.count - i)
            break
        try:
            data = once(family, args.target, args.port, min(args.timeout, left), bind=args.bind)
        except Exception as e:  # noqa: BLE001 - every failure is counted
            k = classify(e)
            errors[k] = errors.get(k, 0) + 1
            continue
        parts = data.decode("utf-8", "replace").strip().split()
        if len(parts) != 3:
            errors["bad_answer"] = errors.get("bad_answer", 0) + 1
            continue
        name, lport, peer = parts
        answers[name] = answers.get(name, 0) + 1
        ports[lport] = ports.get(lport, 0) + 1
        peers.add(peer)
        ok += 1

    json.dump({"count": args.count, "ok": ok, "answers": answers, "ports": ports,
               "errors": errors, "seen_peers": sorted(peers),
               "elapsed": round(time.monotonic() - start, 3)}, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
