"""The TLS load generator: blocking ``ssl`` sockets, one thread per connection.

The TLS workload compares the servers' CPU time per request, so the client
only has to be correct and steady, not fast: each of ``connections`` threads
opens a TLS connection to 127.0.0.1 (trusting only the run's own
certificate) and then sends a request and reads the whole reply, again and
again, with blocking calls that release the GIL while they wait.  The
warm-up starts once every connection has finished its handshake, so the
window holds requests only, not the servers' handshakes.  The threads share this process's CPU (the
client's), like the coroutines of :mod:`aioc.bench.loadgen`, and are counted
by the same :class:`~aioc.bench.loadgen.RunCounts`, so :func:`run_tls_load`
returns the same result format.  Every recv is bounded by a socket
timeout and the run by its window, so a dead server ends the run in seconds.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time

from . import protocol
from .loadgen import ERROR_BACKOFF, HOST, STOP, BadReply, RunCounts, check_run
from .system import raise_nofile_limit

#: A blocked connect, recv or send gives up after this many seconds.
SOCKET_TIMEOUT = 5.0
#: The warm-up waits at most this long for every connection's handshake.
HANDSHAKES_TIMEOUT = 30.0


class _Run(RunCounts):
    """The shared state of one run's client threads: every call but :meth:`handshaken` holds ``lock``."""

    def __init__(self, connections: int, server_pid: int | None, max_requests: int, max_errors: int) -> None:
        super().__init__(server_pid, max_requests, max_errors)
        self.lock = threading.Lock()
        self.stopped = threading.Event()
        #: Set once every client has handshaken, or the run has stopped: the warm-up may begin.
        self.ready = threading.Event()
        self.connections = connections
        self.connected = 0

    def _on_stop(self) -> None:
        self.stopped.set()
        self.ready.set()

    def handshaken(self) -> None:
        """A client's first connection is up."""
        with self.lock:
            self.connected += 1
            if self.connected == self.connections:
                self.ready.set()


def _client(run: _Run, context: ssl.SSLContext, address: tuple, request: bytes, reply_len: int) -> None:
    perf = time.perf_counter
    prefix = protocol.REPLY_PREFIX
    lock, record = run.lock, run.record
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
                        latency = perf() - t0
                        with lock:
                            record(latency)
        except (OSError, EOFError, BadReply) as exc:  # ssl.SSLError is an OSError
            with lock:
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
    check_run(connections, window)
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
            with run.lock:
                run.begin_measure()
            run.stopped.wait(window)
    finally:
        with run.lock:
            run.stop()
        for thread in threads:
            thread.join(SOCKET_TIMEOUT + 1)
    return run.result(port, mode, connections, warmup, window, f"python threads, ssl ({ssl.OPENSSL_VERSION})")
