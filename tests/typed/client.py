"""A loopback echo server and its clients, fully annotated.

``mypy --strict examples/ tests/typed/`` checks this program against the
installed package (its ``py.typed`` and ``.pyi`` stubs) the way it checks a
user's code; ``python tests/typed/client.py`` runs it on the default loop and
``python tests/typed/client.py select`` on the select backend.  It exits 0 when
every echo came back intact.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Generator
from typing import Any, TypeVar

import aioc
from aioc import AcceptEvent, ConnectEvent, Join, ReadEvent, Sleep, Spawn, sendall
from aioc.events import ClosedResourceError, Timeout, timeout_after

T = TypeVar("T")
#: A generator coroutine run by aioc: it yields events, is sent their results
#: and returns a T.
Coro = Generator[Any, Any, T]

MESSAGES: list[bytes] = [b"hello", b"typed world", bytes(range(256)) * 512]
#: No single wait of the exchange may take longer than this, in seconds.
WAIT_LIMIT = 5.0


def handle(conn: socket.socket) -> Coro[int]:
    """Echo what ``conn`` sends until it shuts down its side; return the bytes echoed."""
    echoed = 0
    try:
        while True:
            data: bytes = yield Timeout(ReadEvent(conn), WAIT_LIMIT)
            if not data:
                return echoed
            echoed += yield from sendall(conn, data)
    finally:
        conn.close()


def serve(listener: socket.socket, connections: int) -> Coro[int]:
    """Accept ``connections`` clients, echo each in its own task, return the bytes echoed."""
    handlers: list[aioc.Task] = []
    for _ in range(connections):
        conn: socket.socket
        conn, _peer = yield Timeout(AcceptEvent(listener), WAIT_LIMIT)
        handler: aioc.Task = yield Spawn(handle(conn))
        handlers.append(handler)
    total = 0
    for handler in handlers:
        echoed: int = yield Join(handler)
        total += echoed
    return total


def read_all(sock: socket.socket) -> Coro[bytes]:
    """Read until the peer closes."""
    chunks: list[bytes] = []
    while chunk := (yield ReadEvent(sock)):
        chunks.append(chunk)
    return b"".join(chunks)


def echo(address: tuple[str, int], message: bytes) -> Coro[bytes]:
    """Send ``message``, shut down the sending side, return what comes back."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        yield ConnectEvent(sock, address)
        # Any bytes-like object can be sent.
        sent: int = yield from sendall(sock, memoryview(message))
        assert sent == len(message)
        sock.shutdown(socket.SHUT_WR)
        reply: bytes = yield from timeout_after(WAIT_LIMIT, read_all(sock))
        return reply
    finally:
        sock.close()


async def echo_async(address: tuple[str, int], message: bytes) -> bytes:
    """``echo`` as an ``async def`` coroutine that awaits the same events."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        await ConnectEvent(sock, address)
        await sendall(sock, message)
        sock.shutdown(socket.SHUT_WR)
        chunks: list[bytes] = []
        while chunk := await ReadEvent(sock):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        sock.close()


def exchange(loop: aioc.EventLoop) -> Coro[list[bytes]]:
    """Start the server, run one client per message (the last one async), return the replies."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(len(MESSAGES))
        host, port = listener.getsockname()
        address: tuple[str, int] = (host, port)
        server: aioc.Task = yield Spawn(serve(listener, len(MESSAGES)))
        clients: list[aioc.Task] = [loop.call_soon(echo(address, message)) for message in MESSAGES[:-1]]
        clients.append(loop.call_soon(echo_async(address, MESSAGES[-1])))
        replies: list[bytes] = []
        for client in clients:
            reply: bytes = yield Join(client)
            replies.append(reply)
        echoed: int = yield Join(server)
        assert echoed == sum(map(len, MESSAGES)), echoed
        return replies
    finally:
        listener.close()


def pause(seconds: float) -> Coro[float]:
    """Sleep, then return how long the loop's clock says it took."""
    start = time.monotonic()
    yield Sleep(seconds)
    return time.monotonic() - start


def closed_wait(loop: aioc.EventLoop) -> Coro[bool]:
    """A task waiting on a socket that the loop closes gets ClosedResourceError."""
    a, b = socket.socketpair()
    try:
        waiter: aioc.Task = yield Spawn(read_all(a))
        yield Sleep(0)
        loop.close_socket(a)
        try:
            yield Join(waiter)
        except ClosedResourceError:
            return True
        return False
    finally:
        a.close()
        b.close()


def main(argv: list[str]) -> int:
    backend: str | None = argv[1] if len(argv) > 1 else None
    with aioc.EventLoop(backend) as loop:
        replies: list[bytes] = loop.run_until_complete(exchange(loop))
        closed: bool = loop.run_until_complete(closed_wait(loop))
    if replies != MESSAGES:
        print("echo mismatch", file=sys.stderr)
        return 1
    if not closed:
        print("no ClosedResourceError", file=sys.stderr)
        return 1
    slept: float = aioc.run(pause(0.01), backend=backend)
    if slept < 0.01:
        print(f"Sleep(0.01) took {slept} s", file=sys.stderr)
        return 1
    version: str = aioc.__version__
    implementation: str = aioc.IMPLEMENTATION
    print(f"aioc {version} ({implementation}, {loop.backend}): {len(replies)} echoes intact")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
