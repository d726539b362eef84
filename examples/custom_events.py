"""Events of your own on aioc's loop: a line-logging server.

The two event classes below do not come from aioc and do not subclass
aioc.Event: any object with ``_yield(loop, task)`` and ``_resume(loop, task)``
is an event.  They ask the loop only what ``aioc.lowlevel`` documents: wait
for a socket to be readable (naming the socket that owns the fd), and
reschedule the task with a result.  ``python examples/custom_events.py [port]``, then
``printf 'hello\\n' | nc 127.0.0.1 8888``.
"""

import socket
import sys
from collections.abc import Generator
from typing import Any

import aioc


class Incoming:
    """Resumes with the next connection on a listening socket."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener

    def _yield(self, loop: aioc.EventLoop, task: aioc.Task) -> None:
        loop.wait_readable(self.listener.fileno(), self, task, self.listener)

    def _resume(self, loop: aioc.EventLoop, task: aioc.Task) -> None:
        conn, peer = self.listener.accept()
        conn.setblocking(False)
        loop.reschedule(task, (conn, peer))


class Chunk:
    """Resumes with up to 4 KiB from a connection, b'' when the peer is done."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn

    def _yield(self, loop: aioc.EventLoop, task: aioc.Task) -> None:
        loop.wait_readable(self.conn.fileno(), self, task, self.conn)

    def _resume(self, loop: aioc.EventLoop, task: aioc.Task) -> None:
        loop.reschedule(task, self.conn.recv(4096))


def log_lines(conn: socket.socket, peer: tuple[str, int]) -> Generator[Any, Any, None]:
    pending = b""
    try:
        while chunk := (yield Chunk(conn)):
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                print(f"{peer[0]}:{peer[1]} says {line.decode(errors='replace')!r}")
    finally:
        conn.close()


def serve(loop: aioc.EventLoop, port: int) -> Generator[Any, Any, None]:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    listener.setblocking(False)
    print(f"logging lines on 127.0.0.1:{port}")
    while True:
        conn, peer = yield Incoming(listener)
        loop.call_soon(log_lines(conn, peer))


if __name__ == "__main__":
    with aioc.EventLoop() as loop:
        loop.call_soon(serve(loop, int(sys.argv[1]) if len(sys.argv) > 1 else 8888))
        try:
            loop.run_forever()
        except KeyboardInterrupt:
            pass
