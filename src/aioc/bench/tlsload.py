"""The TLS load generator: blocking ``ssl`` sockets, one thread per connection.

The TLS workload compares the servers' CPU time per request, so the client
only has to be correct and steady, not fast: each of ``connections`` threads
opens a TLS connection to 127.0.0.1 (trusting only the run's own
certificate) and then sends a request and reads the whole reply, again and
again, with blocking calls that release the GIL while they wait.  The
warm-up starts once every connection has finished its handshake, so the
window holds requests only, not the servers' handshakes.  The threads share this process's CPU (the
client's), like the coroutines of :mod:`aioc.bench.loadgen`, whose result
format :func:`run_tls_load` returns.  Every recv is bounded by a socket
timeout and the run by its window, so a dead server ends the run in seconds.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import Counter
from typing import Any

from . import protocol
from .loadgen import ERROR_BACKOFF, HOST, MAX_SAMPLES, BadReply
from .stats import latency_summary
from .system import raise_nofile_limit, read_cpu_times, run_delay, self_cpu, split_cpu

WARMUP, MEASURE, STOP = 0, 1, 2

#: A blocked connect, recv or send gives up after this many seconds.
SOCKET_TIMEOUT = 5.0
#: The warm-up waits at most this long for every connection's handshake.
HANDSHAKES_TIMEOUT = 30.0


class _Run:
    """The shared state of one run's client threads; counts under one lock."""

    def __init__(self, connections: int, server_pid: int | None, max_requests: int, max_errors: int) -> None:
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        #: Set once every client has handshaken, or the run has stopped: the warm-up may begin.
        self.ready = threading.Event()
        self.connections = connections
        self.connected = 0
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
        with self.lock:
            self.waits_before = self._waits()
            self.server_before = self._server_times()
            self.client_before = self_cpu()
            self.t_start = time.perf_counter()
            self.phase = MEASURE

    def stop(self, reason: str | None = None) -> None:
        with self.lock:
            self._stop(reason)

    def _stop(self, reason: str | None) -> None:
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
        self.stopped.set()
        self.ready.set()

    def handshaken(self) -> None:
        """A client's first connection is up."""
        with self.lock:
            self.connected += 1
            if self.connected == self.connections:
                self.ready.set()

    def record(self, latency: float) -> None:
        with self.lock:
            if self.phase != MEASURE:
                return
            self.completed += 1
            if len(self.latencies) < MAX_SAMPLES:
                self.latencies.append(latency)
            if self.completed >= self.max_requests:
                self._stop("max_requests")

    def error(self, exc: BaseException) -> None:
        with self.lock:
            if self.phase == STOP:
                return  # the teardown of a finished run is not the server's fault
            self.errors += 1
            self.error_kinds[type(exc).__name__] += 1
            if self.errors >= self.max_errors:
                self._stop("max_errors")


def _client(run: _Run, context: ssl.SSLContext, address: tuple, request: bytes, reply_len: int) -> None:
    perf = time.perf_counter
    prefix = protocol.REPLY_PREFIX
    first = True
    while run.phase != STOP:
        try:
            with socket.create_connection(address, timeout=SOCKET_TIMEOUT) as raw:
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                with context.wrap_socket(raw, server_hostname=HOST) as sock:
                    if first:
                        first = False
                        run.handshaken()
                    while run.phase != STOP:
                        t0 = perf()
                        sock.sendall(request)
                        data = sock.recv(65536)
                        if not data:
                            raise EOFError("the server closed the connection")
                        if not data.startswith(prefix):
                            raise BadReply(f"unexpected reply {data[:40]!r}")
                        got = len(data)
                        while got < reply_len:
                            data = sock.recv(65536)
                            if not data:
                                raise EOFError("the server closed the connection mid-reply")
                            got += len(data)
                        if got != reply_len:
                            raise BadReply(f"{got} bytes where the reply has {reply_len}")
                        run.record(perf() - t0)
        except (OSError, EOFError, BadReply) as exc:  # ssl.SSLError is an OSError
            run.error(exc)
            if run.phase != STOP:
                time.sleep(ERROR_BACKOFF)


def run_tls_load(
    port: int,
    mode: str,
    *,
    tls_cafile: str,
    connections: int = 50,
    warmup: float = 0.5,
    window: float = 1.0,
    server_pid: int | None = None,
    max_requests: int = 50_000_000,
    max_errors: int = 1000,
) -> dict:
    """Drive ``connections`` TLS clients against ``127.0.0.1:port`` (a keep-alive mode) and count.

    The same contract as :func:`aioc.bench.loadgen.run_load`: only requests
    completed inside the window count, and the run ends at the end of the
    window or early after ``max_requests`` completions or ``max_errors`` errors.
    """
    if connections < 1:
        raise ValueError("connections must be at least 1")
    if window <= 0:
        raise ValueError("window must be positive")
    if protocol.closes(mode):
        raise ValueError("the TLS client drives keep-alive modes only")
    raise_nofile_limit()
    context = ssl.create_default_context(cafile=tls_cafile)
    reply_len = len(protocol.reply_for(mode))
    run = _Run(connections, server_pid, max_requests, max_errors)
    threads = [threading.Thread(target=_client, args=(run, context, (HOST, port), protocol.REQUEST, reply_len),
                                daemon=True) for _ in range(connections)]
    for thread in threads:
        thread.start()
    try:
        # Failed handshakes count as errors and may stop the run; otherwise
        # measure anyway once the handshakes have had their time.
        run.ready.wait(HANDSHAKES_TIMEOUT)
        if warmup > 0:
            run.stopped.wait(warmup)
        if not run.stopped.is_set():
            run.begin_measure()
            run.stopped.wait(window)
    finally:
        run.stop()
        for thread in threads:
            thread.join(SOCKET_TIMEOUT + 1)
    duration = run.t_end - run.t_start if run.t_end else 0.0
    result: dict[str, Any] = {
        "port": port,
        "mode": mode,
        "connections": connections,
        "warmup_s": warmup,
        "window_s": window,
        "duration_s": duration,
        "completed": run.completed,
        "errors": run.errors,
        "error_kinds": dict(run.error_kinds),
        "stop_reason": run.stop_reason,
        "rate": run.completed / duration if duration > 0 else 0.0,
        "client_cpu_s": run.client_after - run.client_before,
        "client_loop": f"python threads, ssl ({ssl.OPENSSL_VERSION})",
    }
    result.update(latency_summary(run.latencies))
    for key, before, after in zip(("server_wait_s", "client_wait_s"), run.waits_before, run.waits_after):
        result[key] = after - before if before is not None and after is not None else None
    if run.server_before is not None and run.server_after is not None:
        user, system, total = split_cpu(run.server_after - run.server_before)
        result.update(server_user_s=user, server_sys_s=system, server_cpu_s=total)
    return result
