#!/usr/bin/env python3
"""Soak test: hold many connections, churn many more, then check that nothing stays behind.

``python tools/soak.py`` runs an echo server on one aioc event loop, the
process that is measured, and its load in a second process, the client,
itself on aioc (the compiled loop unless ``--client-impl`` says otherwise).
The two talk over TCP on 127.0.0.1 only; the client reports back to the
server process as JSON lines on its stdout.  The server runs the compiled
loop on epoll unless ``--impl`` or ``--backend`` say otherwise.

- 10,000 connections are opened and held for the whole run; each sends a
  ping every 5 s and reads its echo, so they are live rather than idle;
- while they are held, 100 client tasks churn 100,000 more connections
  through the same server: connect, send a small request, read its echo,
  close with an RST.  The churn is paced to spread over 90% of the load's
  wall-clock bound (``--minutes``, 5 by default), so the run is a soak at a
  steady rate rather than one burst.

Leaks in an event loop show up only after many connections and tasks have
come and gone, and only as figures that fail to come back.  So the same load,
at full hold size and 1/50 of the churn, runs first as a warm-up: the loop's
per-fd tables, the allocator's arenas and the interpreter's caches reach
their steady size, and the baseline is taken after it, in the server process,
while no client process exists.  Each phase starts its own client process
and its own listener and ends with both gone.  At the end, with the held
connections and the server closed and ``gc.collect()`` done, the server's
figures must be back: the same open file descriptors, fewer than 1,000 more
GC-tracked objects, RSS within 16 MiB, no task left and nothing queued.  The
client must have opened every held connection, completed every churned one
and seen no error, and the server must have accepted exactly those.  The exit
status is 0 only then, 1 on a failed check, 2 when the run cannot be set up.

``--quick`` is the CI size: 1,000 held and 10,000 churned over a 15 s bound,
about 15 s in all.  ``--json FILE`` saves every figure.  Progress is printed
every 10 s, with the longest round trips the client saw and the longest lag
of each process's loop (how late a task sleeping 0.1 s was woken), so that a
stall shows where it happened; these are reported, not checked.  With two CPUs or more, the server is pinned to the first allowed
CPU and the client to the second (``--no-pin`` leaves both to the
scheduler).  Each process holds one end of every held connection and of each
client task's connection, plus a margin: 10,456 descriptors with the
defaults.  Each raises its soft RLIMIT_NOFILE to that, and the hard one too
when it may (it needs CAP_SYS_RESOURCE); otherwise the run stops at once and
names the largest ``--hold`` that fits.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import random
import resource
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Generator

#: The only address the soak ever binds or connects to.
HOST = "127.0.0.1"
IMPLEMENTATIONS = {"compiled": "aioc._loop_c", "pure": "aioc._loop_py"}
FULL_SIZE = {"hold": 10_000, "churn": 100_000, "minutes": 5.0}
QUICK_SIZE = {"hold": 1_000, "churn": 10_000, "minutes": 0.25}
CLIENTS = 100
PING_INTERVAL = 5.0
#: The client process's poller: it is the load, not what is measured.
CLIENT_BACKEND = "epoll"
#: The first argument that makes this script the client process.
CLIENT_ROLE = "--client"
SCRIPT = str(Path(__file__).resolve())

#: The churn is paced to end at this fraction of the load's time bound; the
#: rest is slack for a machine that falls behind the pace.
PACE_FRACTION = 0.9
#: The warm-up churns this fraction of the connections, in as much less time.
WARMUP_DIVISOR = 50
#: Seeds the held connections' ping phases, so that runs are repeatable.
SEED = 12_345

#: Far above any loopback round trip: only a lost wake-up reaches it.
IO_TIMEOUT = 30.0
#: Opening the held connections slower than this means something is wrong.
MIN_OPEN_RATE = 200.0
#: Seconds allowed for the held connections and their server side to close,
#: and for the client process to exit once it has reported.
CLOSE_TIMEOUT = 30.0
#: Seconds allowed for the client process to start (an interpreter and aioc).
CLIENT_START_TIMEOUT = 30.0
#: Extra seconds before a watchdog stops a phase that overran every bound.
WATCHDOG_MARGIN = 30.0
CLOSE_POLL = 0.01
PROGRESS_INTERVAL = 10.0
#: Each process's loop lag is measured by a task that sleeps this long, again and again.
LAG_TICK = 0.1
LISTEN_BACKLOG = 1024
#: Far above the reads of a held connection in any run; stops a runaway peer.
MAX_READS_PER_CONNECTION = 1_000_000
#: Bounds on the client's report stream: reads, and bytes of one line.
MAX_REPORT_READS = 1_000_000
MAX_REPORT_LINE = 1024 * 1024
#: Clients stop after this many errors: the run has failed already.
MAX_ERRORS = 100
ERRORS_SHOWN = 5

#: select() watches only file descriptors below this.
SELECT_FD_LIMIT = 1024
#: Descriptors beyond one per held connection and two per client task (its
#: connection, and in the server the end whose client has just closed until
#: it reads the RST): stdio, the loop's poller and wake-up pair, the
#: listener, the client's report stream, and a few the interpreter opens.
FD_HEADROOM = 256
#: The same below the first socket, for select.
SELECT_FD_HEADROOM = 32

#: Allowed growth of GC-tracked objects from the baseline: the report's own
#: few objects and interning noise, far below one per churned connection.
OBJECT_TOLERANCE = 1_000
#: Allowed RSS growth.  The warm-up sizes the loop's per-fd table and the
#: allocator's arenas at full hold size, so what remains is fragmentation
#: (an arena that keeps a few live objects cannot be returned).  16 MiB
#: leaves room for other allocators and machines and is still about 170
#: bytes per churned connection of the default run, so a C allocation lost
#: once per connection fails the check.
RSS_TOLERANCE_MIB = 16.0

#: SO_LINGER on, zero timeout: close() sends an RST and leaves no TIME_WAIT,
#: which 100,000 closes would otherwise pile up until the ephemeral ports run out.
LINGER_RST = struct.pack("ii", 1, 0)
MIB = 1024 * 1024


class SetupError(Exception):
    """The run cannot start: a bad option, a missing loop, too few descriptors."""


class BadReply(Exception):
    """The echo differed from the request."""


@dataclass(frozen=True)
class Load:
    """The size of one phase: held connections, churned ones, and its time bound."""

    hold: int
    churn: int
    clients: int
    seconds: float
    ping_interval: float

    def fds_needed(self) -> int:
        # Per process: the server and the client each hold one end of every connection.
        return self.hold + 2 * self.clients + FD_HEADROOM

    def warmup(self) -> Load:
        churn = min(self.churn, max(self.clients, self.churn // WARMUP_DIVISOR))
        return replace(self, churn=churn, seconds=self.seconds / WARMUP_DIVISOR)

    def open_bound(self) -> float:
        return IO_TIMEOUT + self.hold / MIN_OPEN_RATE

    def client_time_limit(self) -> float:
        """The client's watchdog: opening, the load, closing the held connections, and a margin."""
        return self.open_bound() + self.seconds + CLOSE_TIMEOUT + WATCHDOG_MARGIN

    def report_bound(self) -> float:
        """How long the server waits for the client's final report."""
        return CLIENT_START_TIMEOUT + self.client_time_limit() + CLOSE_TIMEOUT

    def server_time_limit(self) -> float:
        """The server's watchdog: the report, the server ends closing, the client exiting, a margin."""
        return self.report_bound() + 2 * CLOSE_TIMEOUT + WATCHDOG_MARGIN

    def arguments(self) -> list[str]:
        return ["--hold", str(self.hold), "--churn", str(self.churn), "--clients", str(self.clients),
                "--seconds", repr(self.seconds), "--ping-interval", repr(self.ping_interval)]


@dataclass(frozen=True)
class Settings:
    impl: str
    backend: str
    client_impl: str
    load: Load
    rss_tolerance_mib: float
    object_tolerance: int
    json_path: str | None
    #: (server CPU, client CPU), or None when neither is pinned.
    cpus: tuple[int, int] | None


@dataclass
class Figures:
    """What must come back to baseline, as seen from inside the server process."""

    rss_bytes: int
    fds: int
    objects: int
    num_tasks: int
    ready: int
    types: dict[str, int] = field(repr=False)


# -- measuring ---------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def type_name(kind: type) -> str:
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def count_types(objects: list[Any]) -> dict[str, int]:
    # A plain loop, not Counter(): Counter's isinstance(..., Mapping) check
    # fills ABC caches (new sets and weakrefs) after the objects were listed,
    # and the end figures would count them as growth.
    counts: dict[type, int] = {}
    for obj in objects:
        kind = type(obj)
        counts[kind] = counts.get(kind, 0) + 1
    return {type_name(kind): count for kind, count in counts.items()}


def measure(loop: Any) -> Figures:
    gc.collect()
    objects = gc.get_objects()
    types = count_types(objects)
    total = len(objects)
    del objects  # the list holds a reference to every object
    return Figures(rss_bytes(), open_fds(), total, loop._num_tasks, len(loop._ready), types)


def top_growing(start: Figures, end: Figures, limit: int = 10) -> list[tuple[str, int, int, int]]:
    """``(type, start, end, growth)`` of the types that grew most, largest first."""
    rows = [(name, start.types.get(name, 0), count, count - start.types.get(name, 0))
            for name, count in end.types.items()]
    rows = [row for row in rows if row[3] > 0]
    rows.sort(key=lambda row: (-row[3], row[0]))
    return rows[:limit]


# -- the processes -------------------------------------------------------------------


def listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((HOST, 0))
    sock.listen(LISTEN_BACKLOG)
    return sock


def client_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, LINGER_RST)
    return sock


def raise_fd_limit(load: Load) -> None:
    """Raise this process's RLIMIT_NOFILE to what ``load`` needs: the soft limit, and the hard one if it is lower."""
    needed = load.fds_needed()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    new_hard = hard if hard == resource.RLIM_INFINITY or hard >= needed else needed
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, new_hard))
    except (ValueError, OSError) as exc:
        limit = soft if hard == resource.RLIM_INFINITY else hard
        most = max(0, limit - FD_HEADROOM - 2 * load.clients)
        raise SetupError(
            f"each process needs {needed:,} file descriptors (one per held connection, two per client task, "
            f"plus {FD_HEADROOM}) but RLIMIT_NOFILE is {soft:,} with a hard limit of {hard:,}, and raising "
            f"it failed ({exc}): a hard limit is raised only with CAP_SYS_RESOURCE.  Raise it beforehand "
            f"('ulimit -Hn {needed}' where allowed), or run with --hold {most} or less"
        ) from exc


def pin_to(cpu: int) -> None:
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        raise SetupError(f"cannot pin to CPU {cpu}: {exc}") from exc


def import_loop(impl: str, option: str = "--impl") -> ModuleType:
    try:
        return importlib.import_module(IMPLEMENTATIONS[impl])
    except ImportError as exc:
        raise SetupError(f"cannot import {IMPLEMENTATIONS[impl]} ({exc}); install aioc with its compiled loop "
                         f"or use {option} pure") from exc


class UnhandledErrors:
    """The loop's exception handler: counts task failures nobody retrieved, shows the first few."""

    def __init__(self, who: str) -> None:
        self.who = who
        self.count = 0

    def __call__(self, loop: Any, context: dict[str, Any]) -> None:
        self.count += 1
        if self.count <= ERRORS_SHOWN:
            print(f"{self.who}: unhandled: {context.get('message')}: {context.get('exception')!r} "
                  f"in {context.get('task')!r}", file=sys.stderr, flush=True)


def run_bounded(loop: Any, coro: Any, seconds: float, on_fire: Any = None) -> bool:
    """Run ``coro`` under a watchdog thread; True if the watchdog stopped the loop.

    A stuck loop fails the run instead of hanging it.
    """
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        if on_fire is not None:
            on_fire()
        loop.stop()  # thread-safe by contract

    watchdog = threading.Timer(seconds, fire)
    watchdog.daemon = True
    watchdog.start()
    try:
        loop.run_until_complete(coro)
    except RuntimeError:  # "the loop stopped before the task finished"
        if not fired.is_set():
            raise
    finally:
        watchdog.cancel()
        watchdog.join()
    return fired.is_set()


class LagMeter:
    """How late the loop wakes a task that sleeps ``LAG_TICK`` again and again: a stalled loop shows here."""

    def __init__(self) -> None:
        self.max = 0.0
        self.interval_max = 0.0

    def run(self, aio: ModuleType, seconds: float) -> Generator[Any, Any, None]:
        for _ in range(int(seconds / LAG_TICK) + 1):
            due = time.monotonic() + LAG_TICK
            yield aio.Sleep(LAG_TICK)
            lag = time.monotonic() - due
            self.max = max(self.max, lag)
            self.interval_max = max(self.interval_max, lag)

    def take_interval(self) -> float:
        """The largest lag since the last call."""
        lag, self.interval_max = self.interval_max, 0.0
        return lag


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


# -- the client process: the load --------------------------------------------------


def emit(event: str, **fields: Any) -> None:
    """One report to the server process: a JSON line on stdout, which is nothing else."""
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


class ClientPhase:
    """The load of one phase, in the client process: the held connections and the churn."""

    def __init__(self, loop: Any, aio: ModuleType, load: Load, address: tuple[str, int]) -> None:
        self.loop = loop
        self.aio = aio
        self.load = load
        self.address = address
        self.rng = random.Random(SEED)
        self.pingers: list[Any] = []
        self.max_pings = int((load.open_bound() + load.seconds) / load.ping_interval) + 1
        self.churn_spacing = load.seconds * PACE_FRACTION / load.churn if load.churn else 0.0
        self.open_deadline = 0.0
        self.load_start = 0.0
        self.load_deadline = 0.0
        self.next_hold = 0
        self.next_churn = 0
        self.held = 0  # held connections open now
        self.held_opened = 0
        self.churned = 0
        self.pings = 0
        self.errors: Counter[str] = Counter()
        self.first_errors: list[str] = []
        self.seconds = {"open": 0.0, "load": 0.0, "close": 0.0}
        self.watchdog_fired = False
        self.left_open = 0
        self.lag = LagMeter()
        #: The longest round trips, over the phase and since the last progress report.
        self.max_rtt = {"ping": 0.0, "churn": 0.0}
        self.interval_rtt = {"ping": 0.0, "churn": 0.0}

    def record_rtt(self, kind: str, started: float) -> None:
        rtt = time.monotonic() - started
        self.max_rtt[kind] = max(self.max_rtt[kind], rtt)
        self.interval_rtt[kind] = max(self.interval_rtt[kind], rtt)

    def record_error(self, where: str, exc: BaseException) -> None:
        self.errors[f"{where}: {type(exc).__name__}"] += 1
        if len(self.first_errors) < ERRORS_SHOWN:
            self.first_errors.append(f"{where}: {exc!r}")

    def failing(self) -> bool:
        return sum(self.errors.values()) >= MAX_ERRORS

    def exchange(self, sock: socket.socket, request: bytes) -> Generator[Any, Any, None]:
        yield from self.aio.sendall(sock, request)
        reply = b""
        for _ in range(len(request)):  # every read brings at least one byte
            chunk = yield self.aio.ReadEvent(sock)
            if not chunk:
                raise EOFError("the server closed the connection")
            reply += chunk
            if len(reply) >= len(request):
                break
        if reply != request:
            raise BadReply(f"sent {request!r}, got back {reply!r}")

    def connect_and_exchange(self, sock: socket.socket, request: bytes) -> Generator[Any, Any, None]:
        yield self.aio.ConnectEvent(sock, self.address)
        yield from self.exchange(sock, request)

    def bounded(self, coro: Generator[Any, Any, None]) -> Generator[Any, Any, None]:
        bounded: Generator[Any, Any, None] = self.aio.timeout_after(IO_TIMEOUT, coro)
        return bounded

    def opener(self) -> Generator[Any, Any, None]:
        """Open held connections, one at a time, until all are open; hand each to a pinger."""
        while self.next_hold < self.load.hold and time.monotonic() < self.open_deadline and not self.failing():
            index = self.next_hold
            self.next_hold += 1
            sock = client_socket()
            try:
                # One exchange first, so that the server has really accepted it.
                yield from self.bounded(self.connect_and_exchange(sock, b"hold %d\n" % index))
            except Exception as exc:  # counted, and it fails the run
                self.record_error("hold", exc)
                sock.close()
                continue
            except BaseException:  # cancelled, or the loop is closing
                sock.close()
                raise
            self.held += 1
            self.held_opened += 1
            first_ping = self.rng.uniform(0, self.load.ping_interval)
            self.pingers.append((yield self.aio.Spawn(self.pinger(sock, first_ping))))

    def pinger(self, sock: socket.socket, first_ping: float) -> Generator[Any, Any, None]:
        """Keep a held connection live until the phase cancels this task."""
        try:
            yield self.aio.Sleep(first_ping)
            for n in range(self.max_pings):
                started = time.monotonic()
                yield from self.bounded(self.exchange(sock, b"ping %d\n" % n))
                self.record_rtt("ping", started)
                self.pings += 1
                yield self.aio.Sleep(self.load.ping_interval)
        except Exception as exc:  # counted, and it fails the run
            self.record_error("ping", exc)
        finally:
            self.held -= 1
            sock.close()

    def churner(self) -> Generator[Any, Any, None]:
        """Connect, exchange one request and close, at the pace, until the churn is done."""
        while self.next_churn < self.load.churn and time.monotonic() < self.load_deadline and not self.failing():
            index = self.next_churn
            self.next_churn += 1
            delay = self.load_start + index * self.churn_spacing - time.monotonic()
            if delay > 0:
                yield self.aio.Sleep(delay)
            sock = client_socket()
            started = time.monotonic()
            try:
                yield from self.bounded(self.connect_and_exchange(sock, b"churn %d\n" % index))
                self.record_rtt("churn", started)
                self.churned += 1
            except Exception as exc:  # counted, and it fails the run
                self.record_error("churn", exc)
            finally:
                sock.close()

    def progress(self) -> Generator[Any, Any, None]:
        last_time, last_churned = self.load_start, 0
        for _ in range(int(self.load.seconds / PROGRESS_INTERVAL) + 1):
            yield self.aio.Sleep(PROGRESS_INTERVAL)
            now = time.monotonic()
            rate = (self.churned - last_churned) / (now - last_time)
            last_time, last_churned = now, self.churned
            rtt, self.interval_rtt = self.interval_rtt, {"ping": 0.0, "churn": 0.0}
            emit("progress", t=now - self.load_start, churned=self.churned, rate=rate, held=self.held,
                 pings=self.pings, errors=sum(self.errors.values()), tasks=self.loop._num_tasks,
                 rss_bytes=rss_bytes(), fds=open_fds(), max_rtt=rtt, max_lag=self.lag.take_interval())

    def run(self) -> Generator[Any, Any, None]:
        started = time.monotonic()
        lag = self.loop.call_soon(self.lag.run(self.aio, self.load.client_time_limit()))
        self.open_deadline = started + self.load.open_bound()
        openers = [self.loop.call_soon(self.opener()) for _ in range(min(self.load.clients, self.load.hold))]
        for task in openers:
            yield self.aio.Join(task)
        self.load_start = time.monotonic()
        self.seconds["open"] = self.load_start - started
        emit("held", held_opened=self.held_opened, seconds=self.seconds["open"],
             errors=sum(self.errors.values()))

        self.load_deadline = self.load_start + self.load.seconds
        progress = self.loop.call_soon(self.progress())
        churners = [self.loop.call_soon(self.churner()) for _ in range(self.load.clients)]
        for task in churners:
            yield self.aio.Join(task)
        # A run without churn still keeps its held connections busy for the paced time.
        yield self.aio.Sleep(max(0.0, self.load_start + self.load.seconds * PACE_FRACTION - time.monotonic()))
        progress.cancel()
        closing = time.monotonic()
        self.seconds["load"] = closing - self.load_start

        for task in self.pingers:
            task.cancel()
        self.pingers.clear()
        close_deadline = closing + CLOSE_TIMEOUT
        while self.held and time.monotonic() < close_deadline:
            yield self.aio.Sleep(CLOSE_POLL)
        self.seconds["close"] = time.monotonic() - closing
        lag.cancel()
        yield self.aio.Sleep(0)  # the cancellation is queued: let it run before the figures are taken

    def summary(self) -> dict[str, Any]:
        return {
            "hold": self.load.hold, "held_opened": self.held_opened, "churn": self.load.churn,
            "churned": self.churned, "pings": self.pings, "errors": dict(self.errors),
            "first_errors": list(self.first_errors), "left_open": self.left_open,
            "seconds": dict(self.seconds), "watchdog_fired": self.watchdog_fired,
            "max_rtt": dict(self.max_rtt), "max_lag": self.lag.max,
        }


def parse_client_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"soak.py {CLIENT_ROLE}",
                                     description="The soak's load, started by the soak itself.")
    parser.add_argument("--port", type=int, required=True, help=f"the server's port on {HOST}")
    parser.add_argument("--hold", type=int, required=True)
    parser.add_argument("--churn", type=int, required=True)
    parser.add_argument("--clients", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--ping-interval", type=float, required=True)
    parser.add_argument("--impl", choices=sorted(IMPLEMENTATIONS), default="compiled")
    parser.add_argument("--cpu", type=int, default=-1, help="pin to this CPU (-1: do not pin)")
    return parser.parse_args(argv)


def client_main(argv: list[str]) -> int:
    """The client process: run one phase's load against 127.0.0.1:port and report on stdout."""
    args = parse_client_args(argv)
    load = Load(args.hold, args.churn, args.clients, args.seconds, args.ping_interval)
    try:
        if args.cpu >= 0:
            pin_to(args.cpu)
        aio = import_loop(args.impl, "--client-impl")
        raise_fd_limit(load)
    except SetupError as exc:
        emit("setup_error", message=str(exc))
        return 2
    unhandled = UnhandledErrors("client")
    loop = aio.EventLoop(backend=CLIENT_BACKEND)
    loop.set_exception_handler(unhandled)
    try:
        phase = ClientPhase(loop, aio, load, (HOST, args.port))
        phase.watchdog_fired = run_bounded(loop, phase.run(), load.client_time_limit())
        phase.left_open = phase.held
        figures = {"rss_bytes": rss_bytes(), "fds": open_fds(), "num_tasks": loop._num_tasks,
                   "ready": len(loop._ready)}
    finally:
        loop.close()
    emit("done", **phase.summary(), unhandled=unhandled.count, figures=figures)
    return 0


# -- the server process: what is measured ---------------------------------------------


class ServerPhase:
    """One phase in the server process: the echo server, and the client process that loads it."""

    def __init__(self, loop: Any, aio: ModuleType, settings: Settings, load: Load, label: str) -> None:
        self.loop = loop
        self.aio = aio
        self.settings = settings
        self.load = load
        self.label = label
        self.listener: socket.socket | None = None
        self.reports: socket.socket | None = None  # the client's stdout
        self.proc: subprocess.Popen[bytes] | None = None
        self.serving = 0  # server ends open now
        self.accepted = 0
        self.echoes = 0
        self.client: dict[str, Any] | None = None  # the client's final report
        self.client_setup_error: str | None = None
        self.client_status: int | None = None
        self.report_timed_out = False
        self.client_killed = False
        self.seconds = {"close": 0.0, "client_exit": 0.0}
        self.watchdog_fired = False
        self.left_open = 0
        self.lag = LagMeter()

    # The server: accept, then echo on each connection until its client leaves.

    def acceptor(self, listener: socket.socket) -> Generator[Any, Any, None]:
        for _ in range(self.load.hold + self.load.churn):
            try:
                conn, _ = yield self.aio.AcceptEvent(listener)
            except self.aio.ClosedResourceError:
                return  # the phase closed the listener: the server's end
            self.accepted += 1
            self.loop.call_soon(self.serve(conn))

    def serve(self, conn: socket.socket) -> Generator[Any, Any, None]:
        self.serving += 1
        try:
            for _ in range(MAX_READS_PER_CONNECTION):
                data = yield self.aio.ReadEvent(conn)
                if not data:
                    return
                yield from self.aio.sendall(conn, data)
                self.echoes += 1
        except ConnectionResetError:
            pass  # every client closes with an RST
        finally:
            self.serving -= 1
            # Through the loop, so that it forgets the fd at once.  A plain
            # close() leaves the fd's registration and a weakref to the closed
            # socket until the number is reused; for a server end, whether its
            # hang-up unregistered it first depends on timing, which would make
            # the object count drift by up to one per held connection between runs.
            self.loop.close_socket(conn)

    # The client process.

    def start_client(self, port: int) -> None:
        ours, theirs = socket.socketpair()
        cpu = self.settings.cpus[1] if self.settings.cpus else -1
        command = [sys.executable, SCRIPT, CLIENT_ROLE, "--port", str(port), *self.load.arguments(),
                   "--impl", self.settings.client_impl, "--cpu", str(cpu)]
        try:
            # stderr is ours: the client's tracebacks and warnings show up in the run's output.
            self.proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=theirs.fileno(),
                                         close_fds=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self.reports = ours

    def read_reports(self, reports: socket.socket) -> Generator[Any, Any, None]:
        """Take the client's JSON lines until its stdout closes."""
        pending = b""
        for _ in range(MAX_REPORT_READS):
            chunk = yield self.aio.ReadEvent(reports)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                self.on_report(line)
            if len(pending) > MAX_REPORT_LINE:
                raise ValueError(f"a report line from the client passed {MAX_REPORT_LINE:,} bytes")
        if pending:
            self.on_report(pending)

    def on_report(self, line: bytes) -> None:
        try:
            report = json.loads(line)
            event = report["event"]
        except (ValueError, KeyError, TypeError):
            print(f"[{self.label}] client: {line.decode(errors='replace')}", flush=True)
            return
        if event == "progress":
            print(f"[{self.label} {report['t']:5.0f} s] churned {report['churned']:,}/{self.load.churn:,} "
                  f"({report['rate']:,.0f}/s)  held {report['held']:,}  pings {report['pings']:,}  "
                  f"errors {report['errors']}  max rtt ping {ms(report['max_rtt']['ping'])} "
                  f"churn {ms(report['max_rtt']['churn'])}  lag {ms(report['max_lag'])}  |  "
                  f"server: connections {self.serving:,}  tasks {self.loop._num_tasks:,}  "
                  f"lag {ms(self.lag.take_interval())}  RSS {rss_bytes() / MIB:.1f} MiB  fds {open_fds():,}",
                  flush=True)
        elif event == "held":
            print(f"[{self.label}] {report['held_opened']:,} connections held, opened in {report['seconds']:.1f} s"
                  f"  |  server: connections {self.serving:,}  RSS {rss_bytes() / MIB:.1f} MiB  "
                  f"fds {open_fds():,}", flush=True)
        elif event == "done":
            self.client = report
        elif event == "setup_error":
            self.client_setup_error = str(report.get("message"))
        else:
            print(f"[{self.label}] client: {line.decode(errors='replace')}", flush=True)

    def kill_client(self) -> None:
        """Stop the client process; safe from the watchdog's thread."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            self.client_killed = True
            proc.kill()

    def run(self) -> Generator[Any, Any, None]:
        lag = yield self.aio.Spawn(self.lag.run(self.aio, self.load.report_bound()))
        listener = self.listener = listening_socket()
        acceptor = yield self.aio.Spawn(self.acceptor(listener))
        self.start_client(listener.getsockname()[1])
        assert self.reports is not None and self.proc is not None
        try:
            yield from self.aio.timeout_after(self.load.report_bound(), self.read_reports(self.reports))
        except TimeoutError:
            self.report_timed_out = True
            self.kill_client()  # its sockets close with it: the server ends read the RSTs
        except ValueError as exc:
            print(f"[{self.label}] {exc}", file=sys.stderr, flush=True)
            self.kill_client()
        closing = time.monotonic()
        lag.cancel()

        # The client closed its ends before its report: the server ends close once they read the RSTs.
        close_deadline = closing + CLOSE_TIMEOUT
        while self.serving and time.monotonic() < close_deadline:
            yield self.aio.Sleep(CLOSE_POLL)
        self.loop.close_socket(listener)
        yield self.aio.Join(acceptor)
        self.seconds["close"] = time.monotonic() - closing

        # Its stdout closed: the client process is exiting.
        exit_deadline = time.monotonic() + CLOSE_TIMEOUT
        while self.proc.poll() is None and time.monotonic() < exit_deadline:
            yield self.aio.Sleep(CLOSE_POLL)
        self.seconds["client_exit"] = time.monotonic() - closing
        self.finish()

    def finish(self) -> None:
        """Reap the client process and close the phase's sockets; after a watchdog, kill the client first."""
        if self.proc is not None:
            self.kill_client()
            self.client_status = self.proc.wait(timeout=CLOSE_TIMEOUT)
            self.proc = None  # nothing of the phase's process stays to the end figures
        for sock in (self.reports, self.listener):
            if sock is not None and sock.fileno() >= 0:
                self.loop.close_socket(sock)
        self.reports = self.listener = None

    def summary(self) -> dict[str, Any]:
        return {
            "hold": self.load.hold, "churn": self.load.churn, "accepted": self.accepted, "echoes": self.echoes,
            "left_open": self.left_open, "seconds": dict(self.seconds), "watchdog_fired": self.watchdog_fired,
            "client_status": self.client_status, "client_killed": self.client_killed, "max_lag": self.lag.max,
            "report_timed_out": self.report_timed_out, "client_setup_error": self.client_setup_error,
            "client": self.client,
        }

    def failures(self) -> list[str]:
        label = self.label
        found = []
        if self.watchdog_fired:
            found.append(f"{label}: the server's watchdog stopped the loop after {self.load.server_time_limit():.0f} s")
        if self.report_timed_out:
            found.append(f"{label}: no final report from the client within {self.load.report_bound():.0f} s")
        if self.client_setup_error:
            found.append(f"{label}: the client could not start: {self.client_setup_error}")
        if self.client_killed:
            found.append(f"{label}: the client process had to be killed")
        if self.client_status:
            found.append(f"{label}: the client process exited with status {self.client_status}")
        if self.left_open:
            found.append(f"{label}: {self.left_open} server ends still open")
        client = self.client
        if client is None:
            if not self.client_setup_error:
                found.append(f"{label}: the client process ended without its final report")
            return found
        errors = sum(client["errors"].values())
        if client["watchdog_fired"]:
            found.append(f"{label}: the client's watchdog stopped its loop after "
                         f"{self.load.client_time_limit():.0f} s")
        if client["held_opened"] < self.load.hold:
            found.append(f"{label}: opened {client['held_opened']:,} of {self.load.hold:,} held connections")
        if client["churned"] < self.load.churn:
            found.append(f"{label}: completed {client['churned']:,} of {self.load.churn:,} churned connections")
        if errors:
            found.append(f"{label}: {errors} client errors {client['errors']}")
        if client["unhandled"]:
            found.append(f"{label}: {client['unhandled']} client task exceptions were never retrieved")
        if client["left_open"]:
            found.append(f"{label}: {client['left_open']} held client ends still open")
        if not errors and self.accepted != client["held_opened"] + client["churned"]:
            found.append(f"{label}: the server accepted {self.accepted:,} connections, the client completed "
                         f"{client['held_opened'] + client['churned']:,}")
        return found


def run_server_phase(loop: Any, aio: ModuleType, settings: Settings, load: Load, label: str) -> ServerPhase:
    """Run one phase under a watchdog thread that also kills the client process."""
    phase = ServerPhase(loop, aio, settings, load, label)
    try:
        phase.watchdog_fired = run_bounded(loop, phase.run(), load.server_time_limit(), phase.kill_client)
        # Counted now: closing the loop later runs the finally blocks of what is left.
        phase.left_open = phase.serving
    finally:
        phase.finish()  # done already unless the phase failed
    return phase


# -- the verdict and the report ----------------------------------------------------


def check(start: Figures, end: Figures, settings: Settings) -> list[str]:
    found = []
    if end.fds != start.fds:
        found.append(f"open fds: {start.fds} at the start, {end.fds} at the end")
    if end.objects - start.objects >= settings.object_tolerance:
        found.append(f"GC objects grew by {end.objects - start.objects:,} (limit {settings.object_tolerance:,})")
    if end.rss_bytes - start.rss_bytes > settings.rss_tolerance_mib * MIB:
        found.append(f"RSS grew by {(end.rss_bytes - start.rss_bytes) / MIB:.1f} MiB "
                     f"(limit {settings.rss_tolerance_mib:g} MiB)")
    if end.num_tasks:
        found.append(f"{end.num_tasks} tasks left in the loop")
    if end.ready:
        found.append(f"{end.ready} steps left in the ready queue")
    return found


def describe(settings: Settings) -> str:
    load = settings.load
    pace = load.churn / (load.seconds * PACE_FRACTION)
    where = (f"server on CPU {settings.cpus[0]}, client on CPU {settings.cpus[1]}" if settings.cpus
             else "not pinned")
    return (f"soak: aioc {settings.impl} loop, {settings.backend}, in this process; {load.hold:,} held connections "
            f"(a ping each every {load.ping_interval:g} s), {load.churn:,} churned by {load.clients} client tasks "
            f"at {pace:,.0f}/s, load bounded to {load.seconds:g} s, from a client process on the aioc "
            f"{settings.client_impl} loop; {where}; 127.0.0.1 only")


def print_baseline(start: Figures) -> None:
    print(f"baseline after the warm-up: RSS {start.rss_bytes / MIB:.1f} MiB, open fds {start.fds}, "
          f"GC objects {start.objects:,}, loop._num_tasks {start.num_tasks}, len(loop._ready) {start.ready}",
          flush=True)


def print_table(start: Figures, end: Figures, settings: Settings) -> None:
    rows = [
        ("RSS", f"{start.rss_bytes / MIB:.1f} MiB", f"{end.rss_bytes / MIB:.1f} MiB",
         f"{(end.rss_bytes - start.rss_bytes) / MIB:+.1f} MiB", f"+{settings.rss_tolerance_mib:g} MiB",
         end.rss_bytes - start.rss_bytes <= settings.rss_tolerance_mib * MIB),
        ("open fds", f"{start.fds:,}", f"{end.fds:,}", f"{end.fds - start.fds:+,}", "0", end.fds == start.fds),
        ("GC objects", f"{start.objects:,}", f"{end.objects:,}", f"{end.objects - start.objects:+,}",
         f"<{settings.object_tolerance:,}", end.objects - start.objects < settings.object_tolerance),
        ("loop._num_tasks", f"{start.num_tasks}", f"{end.num_tasks}", "", "0", end.num_tasks == 0),
        ("len(loop._ready)", f"{start.ready}", f"{end.ready}", "", "0", end.ready == 0),
    ]
    print(f"\nserver process{'':4}{'start':>12}{'end':>12}{'change':>12}{'allowed':>11}")
    for name, first, last, change, allowed, ok in rows:
        print(f"{name:18}{first:>12}{last:>12}{change:>12}{allowed:>11}  {'ok' if ok else 'FAIL'}")


def print_growth(rows: list[tuple[str, int, int, int]]) -> None:
    print("\ntypes that grew most in the server process (GC-tracked objects):")
    if not rows:
        print("  none")
    for name, first, last, growth in rows:
        print(f"  {growth:+8,}  {name}  ({first:,} -> {last:,})")


def print_load(phase: ServerPhase) -> None:
    client = phase.client
    if client is None:
        print(f"\nload: no report from the client process (exit status {phase.client_status}); "
              f"the server accepted {phase.accepted:,} connections")
        return
    seconds = client["seconds"]
    churn_rate = client["churned"] / seconds["load"] if seconds["load"] else 0.0
    print(f"\nload (client report): {client['held_opened']:,}/{client['hold']:,} held, "
          f"{client['churned']:,}/{client['churn']:,} churned ({churn_rate:,.0f}/s over {seconds['load']:.0f} s), "
          f"{client['pings']:,} pings, {sum(client['errors'].values())} errors, "
          f"{client['unhandled']} unhandled; open {seconds['open']:.1f} s, close {seconds['close']:.1f} s")
    for line in client["first_errors"]:
        print(f"  {line}")
    figures = client["figures"]
    print(f"client process at its end: RSS {figures['rss_bytes'] / MIB:.1f} MiB, open fds {figures['fds']}, "
          f"loop._num_tasks {figures['num_tasks']}, len(loop._ready) {figures['ready']}, "
          f"exit status {phase.client_status}")
    print(f"server: accepted {phase.accepted:,} connections, echoed {phase.echoes:,} requests; "
          f"its ends closed {phase.seconds['close']:.1f} s after the client's report")
    print(f"longest round trip: ping {ms(client['max_rtt']['ping'])}, churn (connect and echo) "
          f"{ms(client['max_rtt']['churn'])}; longest loop lag: server {ms(phase.lag.max)}, "
          f"client {ms(client['max_lag'])}")


def write_json(path: str, settings: Settings, phases: list[ServerPhase], start: Figures, end: Figures,
               growth: list[tuple[str, int, int, int]], failures: list[str]) -> None:
    def figures(f: Figures) -> dict[str, Any]:
        return {key: value for key, value in asdict(f).items() if key != "types"}

    report = {
        "settings": asdict(settings),
        "python": sys.version,
        "machine": platform.platform(),
        "phases": {phase.label: phase.summary() for phase in phases},
        "start": figures(start),
        "end": figures(end),
        "top_growing_types": [{"type": n, "start": s, "end": e, "growth": g} for n, s, e, g in growth],
        "failures": failures,
        "ok": not failures,
    }
    with open(path, "w") as out:
        json.dump(report, out, indent=2)
        out.write("\n")


# -- the command ------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Hold connections and churn more through an aioc echo server on 127.0.0.1, from a client "
                    "process, then check that the server's RSS, fds and objects return to their baseline.")
    parser.add_argument("--quick", action="store_true",
                        help="the CI size: 1,000 held, 10,000 churned, a 15 s load bound (options below still win)")
    parser.add_argument("--hold", type=int, help="connections held open for the whole run (default 10,000)")
    parser.add_argument("--churn", type=int, help="connections opened, used once and closed (default 100,000)")
    parser.add_argument("--minutes", type=float,
                        help=f"wall-clock bound of the load; the churn is paced over "
                             f"{PACE_FRACTION * 100:.0f}%% of it (default 5)")
    parser.add_argument("--clients", type=int, default=CLIENTS, help=f"concurrent client tasks (default {CLIENTS})")
    parser.add_argument("--ping-interval", type=float, default=PING_INTERVAL,
                        help=f"seconds between the pings of a held connection (default {PING_INTERVAL:g})")
    parser.add_argument("--impl", choices=sorted(IMPLEMENTATIONS), default="compiled",
                        help="the server's loop (default compiled)")
    parser.add_argument("--backend", choices=["epoll", "select"], default="epoll",
                        help="the server's poller (default epoll)")
    parser.add_argument("--client-impl", choices=sorted(IMPLEMENTATIONS), default="compiled",
                        help=f"the client process's loop (default compiled; its poller is {CLIENT_BACKEND})")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=None,
                        help="pin the server to the first allowed CPU and the client to the second "
                             "(default: on with two CPUs or more)")
    parser.add_argument("--rss-tolerance-mib", type=float, default=RSS_TOLERANCE_MIB,
                        help=f"allowed RSS growth in MiB (default {RSS_TOLERANCE_MIB:g})")
    parser.add_argument("--object-tolerance", type=int, default=OBJECT_TOLERANCE,
                        help=f"allowed growth of GC-tracked objects, exclusive (default {OBJECT_TOLERANCE:,})")
    parser.add_argument("--json", metavar="FILE", help="also write every figure to FILE as JSON")
    return parser.parse_args(argv)


def choose_cpus(pin: bool | None) -> tuple[int, int] | None:
    allowed = sorted(os.sched_getaffinity(0))
    if pin is None:
        pin = len(allowed) >= 2
    if not pin:
        return None
    if len(allowed) < 2:
        raise SetupError(f"--pin needs two CPUs, and this process may use only {allowed}")
    return allowed[0], allowed[1]


def settings_from(args: argparse.Namespace) -> Settings:
    size = QUICK_SIZE if args.quick else FULL_SIZE
    hold = int(size["hold"]) if args.hold is None else args.hold
    churn = int(size["churn"]) if args.churn is None else args.churn
    minutes = size["minutes"] if args.minutes is None else args.minutes
    if hold < 0 or churn < 0 or args.clients < 1 or minutes <= 0 or args.ping_interval <= 0:
        raise SetupError("--hold and --churn must be >= 0, --clients >= 1, --minutes and --ping-interval > 0")
    load = Load(hold, churn, args.clients, minutes * 60.0, args.ping_interval)
    if args.backend == "select" and load.hold + 2 * load.clients + SELECT_FD_HEADROOM > SELECT_FD_LIMIT:
        most = SELECT_FD_LIMIT - SELECT_FD_HEADROOM - 2 * args.clients
        raise SetupError(f"select watches only fds below {SELECT_FD_LIMIT}: with --clients {args.clients}, "
                         f"--hold can be at most {max(most, 0)}")
    return Settings(args.impl, args.backend, args.client_impl, load, args.rss_tolerance_mib,
                    args.object_tolerance, args.json, choose_cpus(args.pin))


def soak(settings: Settings, aio: ModuleType) -> int:
    print(describe(settings), flush=True)
    unhandled = UnhandledErrors("server")
    loop = aio.EventLoop(backend=settings.backend)
    loop.set_exception_handler(unhandled)
    try:
        warmup = run_server_phase(loop, aio, settings, settings.load.warmup(), "warm-up")
        if warmup.client_setup_error:
            print(f"soak: the client process could not start: {warmup.client_setup_error}", file=sys.stderr)
            return 2
        start = measure(loop)
        print_baseline(start)
        soaked = run_server_phase(loop, aio, settings, settings.load, "soak")
        end = measure(loop)
    finally:
        loop.close()
    growth = top_growing(start, end)
    failures = warmup.failures() + soaked.failures() + check(start, end, settings)
    if unhandled.count:
        failures.append(f"{unhandled.count} server task exceptions were never retrieved")
    print_load(soaked)
    print_table(start, end, settings)
    print_growth(growth)
    if settings.json_path:
        write_json(settings.json_path, settings, [warmup, soaked], start, end, growth, failures)
    print()
    for failure in failures:
        print(f"FAIL: {failure}")
    print("soak: FAILED" if failures else "soak: passed, every figure back to its baseline", flush=True)
    return 1 if failures else 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [CLIENT_ROLE]:
        return client_main(argv[1:])
    args = parse_args(argv)
    try:
        settings = settings_from(args)
        aio = import_loop(settings.impl)
        import_loop(settings.client_impl, "--client-impl")  # fail here, not in the client process
        raise_fd_limit(settings.load)  # the client inherits the raised limit
        if settings.cpus:
            pin_to(settings.cpus[0])
    except SetupError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    return soak(settings, aio)


if __name__ == "__main__":
    sys.exit(main())
