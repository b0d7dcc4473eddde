#!/usr/bin/python3
"""Answers every TCP connection / UDP datagram with one line:

    NAME <local_port> <peer_ip>\n

The peer IP is the source address the server saw (IPv4-mapped IPv6 addresses
are shown as plain IPv4). Listens on all addresses, IPv4 and IPv6 (a
dual-stack `::` socket, or `0.0.0.0` if IPv6 is unavailable). Prints "ready"
on stdout once every socket is bound and listening.

With --stream PORT[,PORT], a TCP connection to one of those ports is kept
open: the server sends the same first line, then answers every line it
receives with "NAME <line>\n" until the client closes (for tests of
long-lived connections).

usage: echo_server.py --name NAME [--tcp PORT[,PORT]] [--udp PORT[,PORT]]
                      [--stream PORT[,PORT]]
"""

import argparse
import socket
import sys
import threading


def plain_ip(ip):
    if ip.startswith("::ffff:") and "." in ip:
        return ip[len("::ffff:"):]
    return ip.split("%", 1)[0]


def bind(kind, port):
    try:
        s = socket.socket(socket.AF_INET6, kind)
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("::", port))
    except OSError:
        s = socket.socket(socket.AF_INET, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", port))
    return s


def answer(name, local_port, peer):
    return ("%s %d %s\n" % (name, local_port, plain_ip(peer))).encode()


def serve_tcp(name, s):
    port = s.getsockname()[1]
    while True:
        try:
            c, addr = s.accept()
        except OSError:
            continue
        try:
            c.settimeout(5)
            c.sendall(answer(name, port, addr[0]))
            c.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            c.close()


def stream_conn(name, port, c, addr):
    try:
        c.settimeout(None)
        c.sendall(answer(name, port, addr[0]))
        f = c.makefile("rb")
        for line in f:
            c.sendall(("%s %s\n" % (name, line.decode("utf-8", "replace").strip())).encode())
    except OSError:
        pass
    finally:
        c.close()


def serve_stream(name, s):
    port = s.getsockname()[1]
    while True:
        try:
            c, addr = s.accept()
        except OSError:
            continue
        threading.Thread(target=stream_conn, args=(name, port, c, addr), daemon=True).start()


def serve_udp(name, s):
    port = s.getsockname()[1]
    while True:
        try:
            _, addr = s.recvfrom(65535)
            s.sendto(answer(name, port, addr[0]), addr)
        except OSError:
            continue


def ports(text):
    return [int(p) for p in text.split(",") if p.strip()] if text else []


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--tcp", default="")
    ap.add_argument("--udp", default="")
    ap.add_argument("--stream", default="")
    args = ap.parse_args()

    threads = []
    for port in ports(args.tcp):
        s = bind(socket.SOCK_STREAM, port)
        s.listen(512)
        threads.append(threading.Thread(target=serve_tcp, args=(args.name, s), daemon=True))
    for port in ports(args.stream):
        s = bind(socket.SOCK_STREAM, port)
        s.listen(512)
        threads.append(threading.Thread(target=serve_stream, args=(args.name, s), daemon=True))
    for port in ports(args.udp):
        s = bind(socket.SOCK_DGRAM, port)
        threads.append(threading.Thread(target=serve_udp, args=(args.name, s), daemon=True))
    if not threads:
        ap.error("nothing to serve: give --tcp, --udp and/or --stream")
    for t in threads:
        t.start()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for t in threads:
        t.join()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
