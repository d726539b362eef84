"""A line server that shuts down gracefully: ``python examples/graceful_server.py [port] [grace]``.

Each line it receives is echoed back, except ``slow N``, which streams N
lines ``part i/N`` a tenth of a second apart and then ``done`` (a response
that takes time to send).  ``port`` 0 (the default) picks a free port; the
server prints ``listening on 127.0.0.1:PORT`` once it accepts connections.

Signals:

- SIGHUP logs ``reload`` and keeps serving (where a real server would
  re-read its configuration);
- SIGTERM or SIGINT (Ctrl-C) stop it gracefully: it stops accepting, closes
  the connections that wait for a request, lets those in the middle of a
  response finish it within ``grace`` seconds (5 by default), then cancels
  what remains and exits with status 0.

The signals are watched before the server says it is listening, so a SIGTERM
sent as soon as the port is known is never fatal.
"""

from __future__ import annotations

import signal
import socket
import sys
import time
from collections.abc import Generator
from typing import Any

import aioc
from aioc import AcceptEvent, Join, ReadEvent, Sleep, Spawn, Timeout, sendall
from aioc.signals import wait_signal, watch_signals

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNAL = signal.SIGHUP


def log(message: str) -> None:
    print(message, flush=True)


class Connection:
    """One client: its socket, its handler task, and whether it is mid-response."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.task: aioc.Task | None = None
        self.busy = False


class Server:
    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.connections: set[Connection] = set()
        self.draining = False

    def accept_loop(self) -> Generator[Any, Any, None]:
        while True:
            sock, _ = yield AcceptEvent(self.listener)
            conn = Connection(sock)
            self.connections.add(conn)
            conn.task = yield Spawn(self.handle(conn))

    def handle(self, conn: Connection) -> Generator[Any, Any, None]:
        buffer = b""
        try:
            while not self.draining:
                while b"\n" not in buffer:
                    data = yield ReadEvent(conn.sock)
                    if not data:
                        return
                    buffer += data
                line, buffer = buffer.split(b"\n", 1)
                conn.busy = True
                yield from self.respond(conn.sock, line.decode(errors="replace").strip())
                conn.busy = False
        except ConnectionError:
            pass  # the client went away
        finally:
            self.connections.discard(conn)
            conn.sock.close()

    def respond(self, sock: socket.socket, line: str) -> Generator[Any, Any, None]:
        words = line.split()
        if len(words) == 2 and words[0] == "slow" and words[1].isdigit():
            parts = int(words[1])
            for i in range(1, parts + 1):
                yield from sendall(sock, f"part {i}/{parts}\n".encode())
                yield Sleep(0.1)
            yield from sendall(sock, b"done\n")
        else:
            yield from sendall(sock, line.encode() + b"\n")

    def shutdown(self, acceptor: aioc.Task, grace: float) -> Generator[Any, Any, None]:
        """Stop accepting, let responses in progress finish within ``grace``, cancel the rest."""
        self.draining = True
        acceptor.cancel()
        yield from finish(acceptor)
        self.listener.close()
        # Connections that wait for a request have nothing to finish.
        for conn in list(self.connections):
            if not conn.busy and conn.task is not None:
                conn.task.cancel()
        deadline = time.monotonic() + grace
        for conn in list(self.connections):
            left = deadline - time.monotonic()
            if conn.task is None or left <= 0:
                break
            try:
                yield from finish(conn.task, left)
            except TimeoutError:
                break
        late = [conn.task for conn in list(self.connections) if conn.task is not None]
        for task in late:
            task.cancel()
        for task in late:
            yield from finish(task)
        log(f"cancelled {len(late)} connection(s) after the grace period" if late else "every response finished")


def finish(task: aioc.Task, seconds: float | None = None) -> Generator[Any, Any, None]:
    """Wait for ``task`` to end, however it ends (``TimeoutError`` after ``seconds``)."""
    try:
        yield Join(task) if seconds is None else Timeout(Join(task), seconds)
    except TimeoutError:
        if not task.done():
            raise
    except BaseException:
        if not task.done():
            raise  # this task itself was cancelled
        # Otherwise Join passed on how the task ended: that was the point.


def main(port: int, grace: float) -> Generator[Any, Any, None]:
    yield from watch_signals(*STOP_SIGNALS, RELOAD_SIGNAL)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(128)
    server = Server(listener)
    acceptor: aioc.Task = yield Spawn(server.accept_loop())
    log(f"listening on 127.0.0.1:{listener.getsockname()[1]}")
    while True:
        signo = yield from wait_signal(*STOP_SIGNALS, RELOAD_SIGNAL)
        if signo != RELOAD_SIGNAL:
            break
        log("reload")
    log(f"stopping on {signal.Signals(signo).name}: no new connections, {grace:g} s to finish")
    yield from server.shutdown(acceptor, grace)
    log("stopped")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    grace = float(sys.argv[2]) if len(sys.argv) > 2 else 5.0
    with aioc.EventLoop() as loop:
        loop.run_until_complete(main(port, grace))
