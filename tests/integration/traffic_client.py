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
                         [--timeout S] [--deadline S]
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


def tcp_once(family, target, port, timeout):
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
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


def udp_once(family, target, port, timeout):
    s = socket.socket(family, socket.SOCK_DGRAM)
    try:
        s.settimeout(timeout)
        s.connect((target, port))
        s.send(b"ping\n")
        return s.recv(65535)
    finally:
        s.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--proto", choices=("tcp", "udp"), required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--count", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=2.0, help="per request, seconds")
    ap.add_argument("--deadline", type=float, default=30.0, help="for all requests, seconds")
    args = ap.parse_args()

    family = socket.AF_INET6 if ":" in args.target else socket.AF_INET
    once = tcp_once if args.proto == "tcp" else udp_once
    answers, ports, errors, peers = {}, {}, {}, set()
    ok = 0
    start = time.monotonic()
    for i in range(args.count):
        left = args.deadline - (time.monotonic() - start)
        if left <= 0:
            errors["deadline"] = errors.get("deadline", 0) + (args.count - i)
            break
        try:
            data = once(family, args.target, args.port, min(args.timeout, left))
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
