"""Server CPU per request: aioc.Stream against raw events, side by side.

A keep-alive echo of 64-byte requests (63 bytes and a newline) over 50
loopback connections.  Each server runs alone on CPU 0, the load generator
(raw events on aioc's loop) on CPU 1; the server's user and system CPU time
are read from ``/proc/<pid>/stat`` over the measurement window only.  Those
are 10 ms ticks, coarse next to a user time of well under a microsecond per
request, so the server's total CPU time is also read to the nanosecond from
``/proc/<pid>/schedstat``: every server here makes the same system calls per
request (one recv, one send, a share of one epoll_wait), so the difference of
two servers' totals is the difference of their user-space work, and
``user est. x raw`` is (raw's user + that difference) / raw's user.
Servers:

- ``raw``: ``yield ReadEvent(conn)`` then ``yield from sendall(conn, data)``;
- ``read``: ``yield from stream.read()`` then ``yield from stream.write(data)``;
- ``readline``: ``yield from stream.readline()`` then ``stream.write(line)``.

``--stream pure`` runs the pure ``aioc.streams.Stream`` instead of the one
``import aioc`` gives (compiled when built).  ``--in-process`` runs servers
and clients on one loop in this process over Unix socket pairs instead and
reports its CPU time per request (clients included, which cost the same for
every server): no neighbour shares that process, so its differences are
steadier than those of the loopback run on a shared machine (pin it with
``taskset -c 0``).

    python benchmarks/streams_echo.py [--seconds 5] [--rounds 3] [--stream pure] [--in-process]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import aioc
from aioc import AcceptEvent, ReadEvent, Sleep, sendall

CONNECTIONS = 50
REQUEST = b"x" * 63 + b"\n"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# -- the servers -----------------------------------------------------------------


def raw_handler(conn):
    while True:
        data = yield ReadEvent(conn)
        if not data:
            break
        yield from sendall(conn, data)
    conn.close()


def stream_read_handler(stream_type):
    def handle(conn):
        stream = stream_type(conn)
        while True:
            data = yield from stream.read()
            if not data:
                break
            yield from stream.write(data)
        yield from stream.close()

    return handle


def stream_readline_handler(stream_type):
    def handle(conn):
        stream = stream_type(conn)
        while True:
            line = yield from stream.readline()
            if not line:
                break
            yield from stream.write(line)
        yield from stream.close()

    return handle


def serve(mode: str, stream_impl: str, port_file: str) -> None:
    if stream_impl == "pure":
        from aioc.streams import Stream as stream_type
    else:
        stream_type = aioc.Stream
    handler = {
        "raw": raw_handler,
        "read": stream_read_handler(stream_type),
        "readline": stream_readline_handler(stream_type),
    }[mode]
    loop = aioc.EventLoop()
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(256)

    def accept_loop():
        while True:
            conn, _ = yield AcceptEvent(listener)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            loop.call_soon(handler(conn))

    with open(port_file, "w") as out:
        out.write(str(listener.getsockname()[1]))
    loop.call_soon(accept_loop())
    loop.run_forever()


# -- the load generator ------------------------------------------------------------


def load(port: int, warmup: float, seconds: float, go_file: str) -> None:
    """Prints "ready" after the warm-up, starts the window once ``go_file``
    exists, then prints the requests completed in the window."""
    loop = aioc.EventLoop()
    counts = [0]
    phase = ["warmup"]

    def client():
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        while phase[0] != "done":
            yield from sendall(sock, REQUEST)
            got = 0
            while got < len(REQUEST):
                got += len((yield ReadEvent(sock)))
            if phase[0] == "window":
                counts[0] += 1
        sock.close()

    def controller():
        yield Sleep(warmup)
        print("ready", flush=True)
        while not os.path.exists(go_file):
            yield Sleep(0.01)
        phase[0] = "window"
        yield Sleep(seconds)
        phase[0] = "done"
        print(counts[0], flush=True)

    for _ in range(CONNECTIONS):
        loop.call_soon(client())
    loop.call_soon(controller())
    loop.run_forever()


# -- one measurement ----------------------------------------------------------------


def cpu_ticks(pid: int) -> tuple[int, int]:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])  # utime, stime


def cpu_nanoseconds(pid: int) -> int:
    return int(open(f"/proc/{pid}/schedstat").read().split()[0])


def measure(mode: str, stream_impl: str, seconds: float) -> tuple[float, float, float, float]:
    """(requests/s, user µs/request and total µs/request in ticks, total µs/request to the ns) of one server."""
    work = tempfile.mkdtemp(prefix="aioc-streams-echo-")
    port_file, go_file = os.path.join(work, "port"), os.path.join(work, "go")
    me = os.path.abspath(__file__)
    server = subprocess.Popen(["taskset", "-c", "0", sys.executable, me, "serve", mode, stream_impl, port_file])
    try:
        while not os.path.exists(port_file) or not open(port_file).read():
            time.sleep(0.05)
        port = open(port_file).read()
        client = subprocess.Popen(
            ["taskset", "-c", "1", sys.executable, me, "load", port, "1.0", str(seconds), go_file],
            stdout=subprocess.PIPE, text=True,
        )
        assert client.stdout.readline().strip() == "ready"
        before, before_ns = cpu_ticks(server.pid), cpu_nanoseconds(server.pid)
        open(go_file, "w").close()
        count = int(client.stdout.readline())
        after, after_ns = cpu_ticks(server.pid), cpu_nanoseconds(server.pid)
        client.wait()
    finally:
        server.kill()
        server.wait()
        shutil.rmtree(work)
    user = (after[0] - before[0]) / CLOCK_TICKS
    system = (after[1] - before[1]) / CLOCK_TICKS
    return count / seconds, user / count * 1e6, (user + system) / count * 1e6, (after_ns - before_ns) / count / 1e3


def in_process(handler, connections: int = CONNECTIONS, requests: int = 4000) -> float:
    """CPU µs per request of servers and clients on one loop, over socket pairs."""
    loop = aioc.EventLoop()
    pairs = [socket.socketpair() for _ in range(connections)]

    def client(sock):
        for _ in range(requests):
            yield from sendall(sock, REQUEST)
            got = 0
            while got < len(REQUEST):
                got += len((yield ReadEvent(sock)))
        sock.close()

    for server_end, client_end in pairs:
        server_end.setblocking(False)
        client_end.setblocking(False)
        loop.call_soon(handler(server_end))
        loop.call_soon(client(client_end))
    start = time.process_time()
    loop.run_forever()
    spent = time.process_time() - start
    loop.close()
    return spent / (connections * requests) * 1e6


def main_in_process(rounds: int) -> None:
    from aioc.streams import Stream as PureStream

    handlers = {
        "raw": raw_handler,
        "read": stream_read_handler(aioc.Stream),
        "readline": stream_readline_handler(aioc.Stream),
        "pure read": stream_read_handler(PureStream),
        "pure readline": stream_readline_handler(PureStream),
    }
    results: dict[str, list[float]] = {name: [] for name in handlers}
    for _ in range(rounds):
        for name, handler in handlers.items():
            results[name].append(in_process(handler))
    print(f"in-process, loop {aioc.IMPLEMENTATION}, aioc.Stream from {aioc.Stream.__module__}; medians of {rounds} rounds")
    print(f"{'server':<14} {'CPU µs/req':>11} {'- raw':>7}")
    raw = statistics.median(results["raw"])
    for name, spent in results.items():
        median = statistics.median(spent)
        print(f"{name:<14} {median:>11.2f} {median - raw:>+7.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--stream", choices=["default", "pure"], default="default")
    parser.add_argument("--modes", default="raw,read,readline")
    parser.add_argument("--in-process", action="store_true")
    args = parser.parse_args()
    if args.in_process:
        main_in_process(args.rounds)
        return
    modes = args.modes.split(",")
    results: dict[str, list[tuple[float, float, float, float]]] = {mode: [] for mode in modes}
    for _ in range(args.rounds):  # interleaved, so that neighbours' noise spreads evenly
        for mode in modes:
            results[mode].append(measure(mode, args.stream, args.seconds))
    stream = "aioc.streams.Stream (pure)" if args.stream == "pure" else f"aioc.Stream ({aioc.Stream.__module__})"
    print(f"loop {aioc.IMPLEMENTATION}, stream {stream}; medians of {args.rounds} rounds of {args.seconds:g} s")
    print(f"{'server':<10} {'req/s':>9} {'user µs/req':>12} {'total µs/req':>13} {'user x raw':>11}"
          f" {'total ns-precise':>17} {'- raw':>7} {'user est. x raw':>16}")
    medians = {mode: [statistics.median(r[i] for r in results[mode]) for i in range(4)] for mode in modes}
    raw = medians.get("raw")
    for mode in modes:
        rate, user, total, precise = medians[mode]
        ratio = f"{user / raw[1]:.2f}" if raw else "-"
        extra = f"{precise - raw[3]:+.2f}" if raw else "-"
        estimate = f"{(raw[1] + precise - raw[3]) / raw[1]:.2f}" if raw else "-"
        print(f"{mode:<10} {rate:>9,.0f} {user:>12.2f} {total:>13.2f} {ratio:>11} {precise:>17.2f} {extra:>7} {estimate:>16}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], sys.argv[4])
    elif len(sys.argv) > 1 and sys.argv[1] == "load":
        load(int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5])
    else:
        main()
