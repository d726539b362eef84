#!/usr/bin/env python3
"""Instructions a server executes per request: a CPU measure that noise cannot bend.

``python benchmarks/instructions.py [--rounds N]`` starts the benchmark
suite's own servers (aioc compiled and pure, uvloop's Protocol server, the C
epoll server) one at a time on CPU 0, counts the server's user-mode and
kernel-mode instructions with ``perf stat`` while a load runs on CPU 1, and
prints medians over interleaved rounds with ratios to uvloop.  Time on a
shared machine varies with its neighbours; instruction counts do not.

- keep-alive: ``wrk -t1 -c50`` for 3 s against the 64 B keep-alive port;
- connection per request: 3,000 sequential connections, each sending one
  request, reading the reply to the server's close, and closing with an RST
  (so no TIME_WAIT piles up).

Needs Linux ``perf`` (package linux-perf) and ``wrk``.  Where the machine
exposes no hardware counters to ``perf`` (many virtual machines), use
``--counter callgrind`` (package valgrind): each server then runs under
callgrind, which counts user-mode instructions only (no kernel column); the
counters are zeroed after a warm-up and dumped after the load, so start-up
is not counted.  A server under callgrind runs about 50 times slower, so the
load is a fixed number of requests rather than a time: ``--requests``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

try:
    import aioc  # noqa: F401
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "src"))

from aioc.bench import contenders, cserver, protocol

CONTENDERS = ("aioc-compiled", "aioc-pure-epoll", "uvloop-protocol", "c-epoll")
CONNECTIONS = 3000


def start(contender, c_servers, wrapper=()):
    argv = ["taskset", "-c", "0", *wrapper, *contenders.server_argv(contender, c_servers, 600)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=contender.environ())
    ready = proc.stdout.readline().split()
    if not ready or ready[0] != "READY":
        proc.kill()
        raise RuntimeError(f"{contender.name} did not start: {ready}")
    ports = dict(zip(protocol.MODES, map(int, ready[-len(protocol.MODES):])))
    return proc, ports


def counted(pid, load):
    """Run ``load()`` (it returns how many requests it made) under perf stat -p pid."""
    out = tempfile.NamedTemporaryFile(suffix=".perf", delete=False)
    out.close()
    perf = subprocess.Popen(["perf", "stat", "-x,", "-e", "instructions:u,instructions:k",
                             "-p", str(pid), "-o", out.name], stderr=subprocess.DEVNULL)
    time.sleep(0.3)  # perf attaches
    try:
        requests = load()
    finally:
        perf.send_signal(signal.SIGINT)
        perf.wait(timeout=30)
    counts = {}
    with open(out.name) as f:
        for line in f:
            fields = line.strip().split(",")
            if len(fields) > 2 and fields[2].startswith("instructions"):
                counts[fields[2]] = int(fields[0])
    os.unlink(out.name)
    return counts["instructions:u"] / requests, counts["instructions:k"] / requests


class Callgrind:
    """Counts a server's user-mode instructions with valgrind's callgrind."""

    def __init__(self, directory):
        self.directory = directory
        self.runs = 0

    def wrapper(self):
        self.runs += 1
        self.out = os.path.join(self.directory, f"callgrind.{self.runs}")
        return ["valgrind", "--tool=callgrind", "--quiet", f"--callgrind-out-file={self.out}"]

    def counted(self, pid, load, warmup):
        warmup()
        control("-z", pid)
        requests = load()
        control("-d", pid)
        dumps = sorted(name for name in os.listdir(self.directory)
                       if name.startswith(os.path.basename(self.out) + "."))
        with open(os.path.join(self.directory, dumps[-1])) as f:
            total = next(int(line.split()[1]) for line in f if line.startswith(("summary:", "totals:")))
        for name in dumps:
            os.unlink(os.path.join(self.directory, name))
        return total / requests, 0.0


def control(option, pid):
    # callgrind_control finds the process by pid and waits for it to act.
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True, timeout=120)


def keepalive_requests(port, requests, connections=50):
    """``requests`` keep-alive requests over ``connections`` connections, in lock step."""
    os.sched_setaffinity(0, {1})
    socks = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in range(connections)]
    done = 0
    try:
        while done < requests:
            batch = socks[: requests - done]
            for sock in batch:
                sock.sendall(protocol.REQUEST)
            for sock in batch:
                left = len(protocol.reply_for("ka64"))
                while left > 0:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("the server closed a keep-alive connection")
                    left -= len(chunk)
            done += len(batch)
    finally:
        for sock in socks:
            sock.close()
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return requests


def keepalive_load(port):
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c50", "-d3s", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=60).stdout
    return int(next(line for line in out.splitlines() if "requests in" in line).split()[0])


def connection_load(port, connections=CONNECTIONS):
    os.sched_setaffinity(0, {1})
    linger = struct.pack("ii", 1, 0)
    for _ in range(connections):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(protocol.REQUEST_CLOSE)
        while sock.recv(65536):
            pass
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        sock.close()
    os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    return connections


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--counter", choices=("perf", "callgrind"), default="perf",
                        help="perf stat (hardware counters) or callgrind (user mode only; works anywhere)")
    parser.add_argument("--requests", type=int, default=5000,
                        help="with callgrind: keep-alive requests and connections counted (default 5000)")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help=f"comma-separated (default {','.join(CONTENDERS)})")
    args = parser.parse_args()
    tools = ("valgrind", "callgrind_control", "taskset") if args.counter == "callgrind" else ("perf", "wrk", "taskset")
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        parser.error(f"needs {', '.join(missing)} on PATH (apt-get install linux-perf valgrind wrk util-linux)")
    chosen = contenders.select(args.contenders.split(","))
    with tempfile.TemporaryDirectory() as build_dir:
        c_servers = {"c-epoll": cserver.build(build_dir)}
        contenders.check_availability(chosen, c_servers)
        chosen = [c for c in chosen if c.available]
        results = {(c.name, w): [] for c in chosen for w in ("keep-alive", "per-connection")}
        for round_ in range(args.rounds):
            for c in chosen[round_ % len(chosen):] + chosen[: round_ % len(chosen)]:
                if args.counter == "callgrind":
                    grind = Callgrind(build_dir)
                    proc, ports = start(c, c_servers, grind.wrapper())
                    n = args.requests
                    measure = [
                        ("keep-alive", lambda: grind.counted(proc.pid, lambda: keepalive_requests(ports["ka64"], n),
                                                             lambda: keepalive_requests(ports["ka64"], 500))),
                        ("per-connection", lambda: grind.counted(proc.pid, lambda: connection_load(ports["close"], n),
                                                                 lambda: connection_load(ports["close"], 200))),
                    ]
                else:
                    proc, ports = start(c, c_servers)
                    measure = [
                        ("keep-alive", lambda: counted(proc.pid, lambda: keepalive_load(ports["ka64"]))),
                        ("per-connection", lambda: counted(proc.pid, lambda: connection_load(ports["close"]))),
                    ]
                try:
                    for workload, count in measure:
                        results[c.name, workload].append(count())
                finally:
                    proc.kill()
                    proc.wait()
                print(f"round {round_ + 1}: {c.name} done", file=sys.stderr)
    for workload in ("keep-alive", "per-connection"):
        unit = "request" if workload == "keep-alive" else "connection"
        base = statistics.median(u for u, _ in results["uvloop-protocol", workload]) \
            if ("uvloop-protocol", workload) in results else None
        print(f"\n{workload}: server instructions per {unit} (median of {args.rounds})")
        print(f"{'contender':18s} {'user':>9s} {'kernel':>9s} {'user x uvloop':>14s}")
        for c in chosen:
            user = statistics.median(u for u, _ in results[c.name, workload])
            kernel = statistics.median(k for _, k in results[c.name, workload])
            ratio = f"{user / base:.2f}" if base else "-"
            kernel_text = f"{kernel:9,.0f}" if args.counter == "perf" else f"{'-':>9s}"
            print(f"{c.name:18s} {user:9,.0f} {kernel_text} {ratio:>14s}")


if __name__ == "__main__":
    main()
