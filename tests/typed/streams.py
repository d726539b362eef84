"""A line server on aioc.Stream and its clients, fully annotated.

``mypy --strict examples/ tests/typed/`` checks this program against the
installed package as it checks a user's code; tests/test_streams.py runs it.
``main()`` returns 0 when every reply came back as expected.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Generator
from typing import Any, TypeVar

import aioc
from aioc import IncompleteReadError, LimitOverrunError, Stream

T = TypeVar("T")
Coro = Generator[Any, Any, T]

LINES: list[bytes] = [b"hello\n", b"typed streams\n", b"x" * 5000 + b"\n"]
LIMIT = 1024


def handle(conn: socket.socket) -> Coro[int]:
    """Upper-case each line, an over-long one as b"too long"; return the lines served."""
    served = 0
    stream = Stream(conn)
    try:
        while True:
            try:
                line: bytes = yield from stream.readline(LIMIT)
            except LimitOverrunError as error:
                skipped: bytes = yield from stream.read_exactly(error.consumed)
                assert len(skipped) == LIMIT
                yield from stream.read_until(b"\n", 100_000)
                line = b"too long\n"
            if not line:
                return served
            yield from stream.write(line.upper())
            served += 1
    except IncompleteReadError:
        return served
    finally:
        yield from stream.close()


async def ask(address: tuple[str, int], lines: list[bytes]) -> list[bytes]:
    """Send the lines, half-close, and collect one reply line per line."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    await aioc.ConnectEvent(sock, address)
    async with Stream(sock) as stream:
        for line in lines:
            await stream.write(line)
        sock.shutdown(socket.SHUT_WR)
        replies: list[bytes] = []
        for _ in lines:
            replies.append(await stream.readline())
        assert await stream.read() == b""
        return replies


def exchange(loop: aioc.EventLoop) -> Coro[list[bytes]]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        host, port = listener.getsockname()
        client: aioc.Task = loop.call_soon(ask((host, port), LINES))
        conn: socket.socket
        conn, _peer = yield aioc.AcceptEvent(listener)
        served: int = yield from handle(conn)
        assert served == len(LINES), served
        replies: list[bytes] = yield aioc.Join(client)
        return replies
    finally:
        listener.close()


def main(argv: list[str]) -> int:
    backend = argv[1] if len(argv) > 1 else None
    with aioc.EventLoop(backend) as loop:
        replies = loop.run_until_complete(exchange(loop))
    return 0 if replies == [b"HELLO\n", b"TYPED STREAMS\n", b"TOO LONG\n"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
