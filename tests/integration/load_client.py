#!/usr/bin/python3
"""Opens new TCP connections to an echo_server.py at a steady rate until its
stdin closes, then prints one JSON object:

  {"ok": n, "errors": {"refused": k, "reset": k, "timeout": k, ...},
   "answers": {"NAME": k, ...}, "elapsed": s, "rate": n/s,
   "first_errors": [[t, kind], ...]}

Each connection reads the server's first line and closes. Connections are
started on a fixed schedule (--rate per second, spread over --threads
threads), so a stall shows up as errors or as a lower achieved rate, never
as a silently smaller load.

usage: load_client.py --target IP --port P --rate R [--threads N] [--timeout S]
"""

import argparse
import json
import sys
import threading
import time

import traffic_client


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--rate", type=float, default=1000)
    ap.add_argument("--threads", type=int, default=16)
    ap.add_argument("--timeout", type=float, default=3.0)
    args = ap.parse_args()
    family = traffic_client.socket.AF_INET6 if ":" in args.target else traffic_client.socket.AF_INET

    stop = threading.Event()
    lock = threading.Lock()
    ok = [0]
    errors, answers, first_errors = {}, {}, []
    start = time.monotonic()

    def worker(k):
        period = args.threads / args.rate
        n = 0
        while not stop.is_set():
            due = start + (k / args.rate) + n * period
            n += 1
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            try:
                data = traffic_client.tcp_once(family, args.target, args.port, args.timeout)
                name = data.decode(errors="replace").split(" ", 1)[0].strip()
                with lock:
                    if name:
                        ok[0] += 1
                        answers[name] = answers.get(name, 0) + 1
                    else:
                        errors["bad_answer"] = errors.get("bad_answer", 0) + 1
            except Exception as e:  # noqa: BLE001 - every failure is counted
                kind = traffic_client.classify(e)
                with lock:
                    errors[kind] = errors.get(kind, 0) + 1
                    if len(first_errors) < 20:
                        first_errors.append([round(time.time(), 3), kind])

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(args.threads)]
    for t in threads:
        t.start()
    print("started", flush=True)
    sys.stdin.read()  # until EOF
    stop.set()
    for t in threads:
        t.join(args.timeout + 2)
    elapsed = time.monotonic() - start
    total = ok[0] + sum(errors.values())
    print(json.dumps({"ok": ok[0], "errors": errors, "answers": answers, "elapsed": round(elapsed, 3),
                      "rate": round(total / elapsed, 1), "first_errors": first_errors}), flush=True)


if __name__ == "__main__":
    main()
