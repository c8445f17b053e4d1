#!/usr/bin/env python3
"""/healthz latency of a running workerd --http while other clients hold connections.

    http_probes.py --port PORT [--pid PID] [--idle 2000] [--slow 200] [--seconds 10]

An attacker process keeps --idle connections that send nothing and --slow connections
that send a request head one byte every --drip seconds (never its end), and opens again
at once every connection the worker closes. Once they are all open, this process probes
GET /healthz on a fresh connection every --every seconds for --seconds (at least one
probe; each may take up to --timeout) and prints `name value unit` lines: the probes'
p50, p99 and max latency (connect to the server's close), failures, the connections the
attacker opened and saw closed, and the worker's RSS (with --pid).
"""
import argparse
import multiprocessing
import os
import selectors
import signal
import socket
import sys
import time

HEAD = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "


def connect(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    return s


def attack(port, n_idle, n_slow, drip, ready, stats):
    """Hold the connections until SIGTERM; then put (opened, closed) on stats."""
    over = []
    signal.signal(signal.SIGTERM, lambda *_: over.append(1))
    sel = selectors.DefaultSelector()
    slow = {}  # socket -> bytes of HEAD sent
    opened = closed = 0

    def open_one(is_slow):
        nonlocal opened
        s = connect(port)
        sel.register(s, selectors.EVENT_READ, is_slow)
        if is_slow:
            slow[s] = 0
        opened += 1

    for i in range(n_idle + n_slow):
        open_one(i >= n_idle)
    ready.set()
    next_drip = time.monotonic()
    while not over:
        for key, _ in sel.select(max(0.0, next_drip - time.monotonic())):
            s = key.fileobj
            try:
                if s.recv(4096):
                    continue
            except BlockingIOError:
                continue
            except OSError:
                pass
            sel.unregister(s)
            slow.pop(s, None)
            s.close()
            closed += 1
            open_one(key.data)
        if time.monotonic() >= next_drip:
            for s, n in list(slow.items()):
                try:
                    if s.send(HEAD[n:n + 1] if n < len(HEAD) else b"a"):
                        slow[s] = n + 1
                except OSError:
                    pass  # still connecting, or closed: the selector says which
            next_drip = time.monotonic() + drip
    stats.put((opened, closed))


def probe(port, timeout):
    """Seconds from connect to the server's close, and the status (0: none)."""
    t0 = time.perf_counter()
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(max(0.001, timeout - (time.perf_counter() - t0)))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
    except OSError:
        pass
    status = int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0
    return time.perf_counter() - t0, status


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, help="the worker's pid, for its RSS")
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--slow", type=int, default=200)
    ap.add_argument("--drip", type=float, default=0.1, help="seconds between slow bytes")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to probe")
    ap.add_argument("--every", type=float, default=0.02, help="seconds between probes")
    ap.add_argument("--timeout", type=float, default=120.0, help="longest wait per probe")
    a = ap.parse_args()

    ctx = multiprocessing.get_context("fork")
    ready, stats = ctx.Event(), ctx.Queue()
    attacker = ctx.Process(target=attack, args=(a.port, a.idle, a.slow, a.drip, ready, stats))
    attacker.start()
    if not ready.wait(60):
        sys.exit("the attacker did not open its connections")
    rss_before = rss_kib(a.pid, "VmRSS") if a.pid else 0
    lat, failures = [], 0
    end = time.monotonic() + a.seconds
    while not lat or time.monotonic() < end:
        seconds, status = probe(a.port, a.timeout)
        lat.append(seconds)
        failures += status != 200
        time.sleep(a.every)
    rss_loaded = rss_kib(a.pid, "VmRSS") if a.pid else 0
    os.kill(attacker.pid, signal.SIGTERM)
    opened, closed = stats.get(timeout=60)
    attacker.join()
    lat.sort()
    print(f"# /healthz under {a.idle} idle + {a.slow} slow connections, {len(lat)} probes")
    print(f"http_probe_p50 {percentile(lat, 0.50) * 1000:.2f} ms")
    print(f"http_probe_p99 {percentile(lat, 0.99) * 1000:.2f} ms")
    print(f"http_probe_max {lat[-1] * 1000:.2f} ms")
    print(f"http_probe_failures {failures} probes (not 200)")
    print(f"http_attack_opened {opened} connections")
    print(f"http_attack_closed {closed} connections (closed by the worker)")
    if a.pid:
        print(f"http_worker_rss_before_probes {rss_before / 1024:.1f} MiB")
        print(f"http_worker_rss_loaded {rss_loaded / 1024:.1f} MiB")
        print(f"http_worker_rss_peak {rss_kib(a.pid, 'VmHWM') / 1024:.1f} MiB")


if __name__ == "__main__":
    main()
