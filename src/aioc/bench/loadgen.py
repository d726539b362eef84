"""The load generator: client coroutines on aioc's own loop, in their own process.

``aioc.EventLoop`` is the compiled loop once it is built, the pure one before.
:func:`run_load` drives ``connections`` client coroutines against one port of
a server on 127.0.0.1: a warm-up, then a fixed measurement window whose
completed requests (or connections), errors and latencies are counted.  The
server's CPU time is read from ``/proc`` at the two edges of the window, by
this process, so that the window is exactly the one the counts cover.

``python -m aioc.bench.loadgen`` serves the orchestrator: it reads one JSON
command per line on stdin (``run``, ``hold``, ``release``, ``exit``) and
answers each with one JSON line on stdout.  ``hold`` opens idle keep-alive
connections (each completes one request first, so the server has really
accepted it) and keeps them open until ``release``.  A ``run`` with
``tls_cafile`` goes to the TLS client of :mod:`aioc.bench.tlsload`, which
counts with the same :class:`RunCounts`.
"""

from __future__ import annotations

import json
import signal
import socket
import sys
import time
from collections import Counter
from typing import Any

import aioc
from aioc import ConnectEvent, Join, ReadEvent, SendAll, Sleep, timeout_after

from . import protocol
from .stats import latency_summary
from .system import raise_nofile_limit, read_cpu_times, run_delay, self_cpu, split_cpu

#: The only host the benchmark ever talks to.
HOST = "127.0.0.1"

WARMUP, MEASURE, STOP = 0, 1, 2

#: Pause of a client coroutine after an error, so a dead server is not hammered.
ERROR_BACKOFF = 0.005
#: At most this many latency samples are kept per run.
MAX_SAMPLES = 5_000_000


class BadReply(Exception):
    """The server's reply was not the fixed reply."""


def check_run(connections: int, window: float) -> None:
    """Refuse a run that could count nothing."""
    if connections < 1:
        raise ValueError("connections must be at least 1")
    if window <= 0:
        raise ValueError("window must be positive")


class RunCounts:
    """What one run counts and measures, whichever client drives it.

    The warm-up, the window and the stop; completions, errors and latencies
    inside the window; the CPU and run-queue times at its two edges; and the
    result dict built from them.  A client subclasses it to learn of the stop
    (:meth:`_on_stop`).  Nothing here locks: threads share it under a lock of
    their own.
    """

    __slots__ = (
        "phase", "completed", "errors", "error_kinds", "latencies", "max_requests",
        "max_errors", "stop_reason", "server_pid", "t_start", "t_end", "server_before",
        "server_after", "client_before", "client_after", "waits_before", "waits_after",
    )

    def __init__(self, server_pid: int | None, max_requests: int, max_errors: int) -> None:
        self.phase = WARMUP
        self.completed = 0
        self.errors = 0
        self.error_kinds: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.max_requests = max_requests
        self.max_errors = max_errors
        self.stop_reason = "window"
        self.server_pid = server_pid
        self.t_start = self.t_end = 0.0
        self.server_before: Any = None
        self.server_after: Any = None
        self.client_before = self.client_after = 0.0
        self.waits_before: tuple[float | None, float | None] = (None, None)
        self.waits_after: tuple[float | None, float | None] = (None, None)

    def _server_times(self) -> Any:
        if self.server_pid is None:
            return None
        try:
            return read_cpu_times(self.server_pid)
        except OSError:
            return None

    def _waits(self) -> tuple[float | None, float | None]:
        server = run_delay(self.server_pid) if self.server_pid is not None else None
        return server, run_delay()

    def begin_measure(self) -> None:
        self.waits_before = self._waits()
        self.server_before = self._server_times()
        self.client_before = self_cpu()
        self.t_start = time.perf_counter()
        self.phase = MEASURE

    def stop(self, reason: str | None = None) -> None:
        if self.phase == STOP:
            return
        if self.phase == MEASURE:
            self.t_end = time.perf_counter()
            self.client_after = self_cpu()
            self.server_after = self._server_times()
            self.waits_after = self._waits()
        if reason:
            self.stop_reason = reason
        self.phase = STOP
        self._on_stop()

    def _on_stop(self) -> None:
        """The run has just stopped: wake whatever drives the clients."""

    def record(self, latency: float) -> None:
        """Count a completed request (or connection) if it ended in the window."""
        if self.phase != MEASURE:
            return
        self.completed += 1
        if len(self.latencies) < MAX_SAMPLES:
            self.latencies.append(latency)
        if self.completed >= self.max_requests:
            self.stop("max_requests")

    def error(self, exc: BaseException) -> None:
        if self.phase == STOP:
            return  # the teardown of a finished run is not the server's fault
        self.errors += 1
        self.error_kinds[type(exc).__name__] += 1
        if self.errors >= self.max_errors:
            self.stop("max_errors")

    def result(self, port: int, mode: str, connections: int, warmup: float, window: float,
               client_loop: str) -> dict:
        """The run's figures, in the format the orchestrator reads."""
        duration = self.t_end - self.t_start if self.t_end else 0.0
        result: dict[str, Any] = {
            "port": port,
            "mode": mode,
            "connections": connections,
            "warmup_s": warmup,
            "window_s": window,
            "duration_s": duration,
            "completed": self.completed,
            "errors": self.errors,
            "error_kinds": dict(self.error_kinds),
            "stop_reason": self.stop_reason,
            "rate": self.completed / duration if duration > 0 else 0.0,
            "client_cpu_s": self.client_after - self.client_before,
            "client_loop": client_loop,
        }
        result.update(latency_summary(self.latencies))
        for key, before, after in zip(("server_wait_s", "client_wait_s"), self.waits_before, self.waits_after):
            result[key] = after - before if before is not None and after is not None else None
        if self.server_before is not None and self.server_after is not None:
            user, system, total = split_cpu(self.server_after - self.server_before)
            result.update(server_user_s=user, server_sys_s=system, server_cpu_s=total)
        return result


class _Run(RunCounts):
    """The shared state of one run's client coroutines: the stop stops their loop."""

    __slots__ = ("loop",)

    def __init__(self, loop: Any, server_pid: int | None, max_requests: int, max_errors: int) -> None:
        super().__init__(server_pid, max_requests, max_errors)
        self.loop = loop

    def _on_stop(self) -> None:
        self.loop.stop()


def _connect_socket(nodelay: bool = True) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if nodelay:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    return sock


# The clients are kept lean, so that the server rather than the client is the
# bottleneck as far as one process allows: one ReadEvent per connection,
# yielded again and again (it keeps no state between waits), and no trip
# through the loop for a read that cannot block.


def _keepalive_client(run: _Run, address: tuple, request: bytes, reply_len: int):
    perf = time.perf_counter
    prefix = protocol.REPLY_PREFIX
    while run.phase != STOP:
        sock = _connect_socket()
        try:
            yield ConnectEvent(sock, address)
            read = ReadEvent(sock)
            while run.phase != STOP:
                t0 = perf()
                yield SendAll(sock, request)
                data = yield read
                if not data:
                    raise EOFError("the server closed the connection")
                if not data.startswith(prefix):
                    raise BadReply(f"unexpected reply {data[:40]!r}")
                got = len(data)
                while got < reply_len:
                    data = yield read
                    if not data:
                        raise EOFError("the server closed the connection mid-reply")
                    got += len(data)
                if got != reply_len:
                    raise BadReply(f"{got} bytes where the reply has {reply_len}")
                run.record(perf() - t0)
        except (OSError, EOFError, BadReply) as exc:
            run.error(exc)
            if run.phase != STOP:
                yield Sleep(ERROR_BACKOFF)
        finally:
            sock.close()


def _close_client(run: _Run, address: tuple, request: bytes, reply_len: int):
    perf = time.perf_counter
    prefix = protocol.REPLY_PREFIX
    dontwait = getattr(socket, "MSG_DONTWAIT", 0)
    while run.phase != STOP:
        t0 = perf()
        sock = _connect_socket(nodelay=False)  # one write per connection: Nagle never waits
        try:
            yield ConnectEvent(sock, address)
            yield SendAll(sock, request)
            read = ReadEvent(sock)
            data = yield read
            if not data:
                raise EOFError("the server closed the connection without a reply")
            if not data.startswith(prefix):
                raise BadReply(f"unexpected reply {data[:40]!r}")
            got = len(data)
            # The reply, then the server's close: read to the end of file.  The
            # close usually arrives with the reply, so try before waiting.
            while data:
                try:
                    data = sock.recv(65536, dontwait)
                except BlockingIOError:
                    data = yield read
                got += len(data)
            if got != reply_len:
                raise BadReply(f"{got} bytes where the reply has {reply_len}")
            run.record(perf() - t0)
        except (OSError, EOFError, BadReply) as exc:
            run.error(exc)
            if run.phase != STOP:
                yield Sleep(ERROR_BACKOFF)
        finally:
            sock.close()


def _controller(run: _Run, warmup: float, window: float):
    if warmup > 0:
        yield Sleep(warmup)
        run.begin_measure()
    yield Sleep(window)
    run.stop()


def run_load(
    port: int,
    mode: str,
    *,
    connections: int = 50,
    warmup: float = 0.5,
    window: float = 1.0,
    server_pid: int | None = None,
    max_requests: int = 50_000_000,
    max_errors: int = 1000,
    reply: bytes | None = None,
    backend: str | None = None,
) -> dict:
    """Drive ``connections`` clients against ``127.0.0.1:port`` and count.

    ``mode`` is a reply mode of :mod:`aioc.bench.protocol`: ``close`` opens a
    connection per request and reads to the server's close; the others keep
    connections open.  Only requests completed inside the window count.  The
    run ends at the end of the window, or early after ``max_requests``
    completions or ``max_errors`` errors (``stop_reason`` says which).
    """
    check_run(connections, window)
    close = protocol.closes(mode)
    expected = protocol.reply_for(mode) if reply is None else reply
    request = protocol.REQUEST_CLOSE if close else protocol.REQUEST
    address = (HOST, port)
    raise_nofile_limit()
    loop = aioc.EventLoop(backend) if backend else aioc.EventLoop()
    run = _Run(loop, server_pid, max_requests, max_errors)
    client = _close_client if close else _keepalive_client
    try:
        if warmup <= 0:
            run.begin_measure()
        loop.call_soon(_controller(run, warmup, window))
        for _ in range(connections):
            loop.call_soon(client(run, address, request, len(expected)))
        loop.run_forever()
    finally:
        if run.phase != STOP:  # interrupted
            run.stop("interrupted")
        loop.close()
    return run.result(port, mode, connections, warmup, window, f"aioc-{aioc.IMPLEMENTATION}-{loop.backend}")


def hold_connections(port: int, count: int, *, mode: str = "ka64", concurrency: int = 100,
                     timeout: float = 60.0) -> tuple[list[socket.socket], int]:
    """Open ``count`` keep-alive connections that each complete one request, then sit idle.

    Returns ``(sockets, errors)``.  The sockets stay open until the caller
    closes them.  Bounded: gives up after ``timeout`` seconds.
    """
    raise_nofile_limit()
    request, reply_len = protocol.REQUEST, len(protocol.reply_for(mode))
    address = (HOST, port)
    held: list[socket.socket] = []
    state = {"left": count, "errors": 0}
    loop = aioc.EventLoop()

    def opener():
        while state["left"] > 0 and state["errors"] < max(100, count // 10):
            state["left"] -= 1
            sock = _connect_socket()
            try:
                yield ConnectEvent(sock, address)
                yield SendAll(sock, request)
                got = 0
                while got < reply_len:
                    data = yield ReadEvent(sock)
                    if not data:
                        raise EOFError("closed")
                    got += len(data)
            except (OSError, EOFError):
                state["errors"] += 1
                sock.close()
            except BaseException:  # the time ran out: the loop closes this coroutine
                sock.close()
                raise
            else:
                held.append(sock)

    def supervise():
        workers = [loop.call_soon(opener()) for _ in range(min(concurrency, max(count, 1)))]
        for worker in workers:
            yield Join(worker)

    try:
        loop.run_until_complete(timeout_after(timeout, supervise()))
    except TimeoutError:
        pass
    finally:
        loop.close()
    return held, state["errors"] + state["left"]


def serve_commands(stdin=None, stdout=None) -> None:
    """The orchestrator's side of the pipe: one JSON command per line, one JSON answer."""
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    held: list[socket.socket] = []
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        try:
            command = json.loads(line)
            op = command.pop("op")
            if op == "run" and "tls_cafile" in command:
                from .tlsload import run_tls_load

                answer = run_tls_load(**command)
            elif op == "run":
                answer = run_load(**command)
            elif op == "hold":
                socks, errors = hold_connections(**command)
                held.extend(socks)
                answer = {"held": len(held), "errors": errors}
            elif op == "release":
                for sock in held:
                    sock.close()
                answer = {"released": len(held)}
                held.clear()
            elif op == "ping":
                answer = {"pong": True, "loop": aioc.IMPLEMENTATION}
            elif op == "exit":
                break
            else:
                answer = {"error": f"unknown op {op!r}"}
        except Exception as exc:  # reported to the orchestrator, which shows it
            answer = {"error": f"{type(exc).__name__}: {exc}"}
        stdout.write(json.dumps(answer) + "\n")
        stdout.flush()
    for sock in held:
        sock.close()


def main() -> None:
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.alarm(int(sys.argv[1]) if len(sys.argv) > 1 else 900)  # bounded in time
    raise_nofile_limit()
    serve_commands()


if __name__ == "__main__":
    main()
