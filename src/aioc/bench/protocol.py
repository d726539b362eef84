"""The wire protocol every server and client of the benchmark speaks.

A tiny subset of HTTP/1.1, so that ``wrk`` can cross-check the numbers: the
client sends ``GET / HTTP/1.1`` with a ``Host`` header, the server answers each
complete request (anything ending in a blank line) with one fixed reply.  A
server listens on one port per reply: :data:`CLOSE` replies and closes the
connection (the conn/s workload), the others keep it open (keep-alive) with a
body of 64 B, 1 KiB or 16 KiB.  No path, header or method is parsed: the point
is the cost of the event loop, not of HTTP.
"""

from __future__ import annotations

#: The end of a request.
TERMINATOR = b"\r\n\r\n"

#: The request our load generator sends on keep-alive connections.
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
#: The request sent in conn/s mode (asks for the close the server does anyway).
REQUEST_CLOSE = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"

#: Reply modes, in the order a server prints its ports: ``READY <pid> <port>...``.
CLOSE = "close"
KEEPALIVE_SIZES = (64, 1024, 16384)
MODES = (CLOSE,) + tuple(f"ka{size}" for size in KEEPALIVE_SIZES)

#: Body size of the conn/s reply.
CLOSE_BODY = 64

#: Every reply starts with this; the client checks it.
REPLY_PREFIX = b"HTTP/1.1 200 OK\r\n"


def make_reply(body_size: int, close: bool = False) -> bytes:
    """The fixed reply: headers and a body of ``body_size`` bytes."""
    connection = b"close" if close else b"keep-alive"
    head = (
        REPLY_PREFIX
        + b"Content-Type: text/plain\r\n"
        + b"Content-Length: " + str(body_size).encode() + b"\r\n"
        + b"Connection: " + connection + b"\r\n\r\n"
    )
    body = (b"0123456789abcdef" * (body_size // 16 + 1))[:body_size]
    return head + body


def reply_for(mode: str) -> bytes:
    """The reply a server sends on the port of ``mode``."""
    if mode == CLOSE:
        return make_reply(CLOSE_BODY, close=True)
    if mode.startswith("ka") and int(mode[2:]) in KEEPALIVE_SIZES:
        return make_reply(int(mode[2:]))
    raise ValueError(f"unknown reply mode {mode!r}; choose one of {', '.join(MODES)}")


def closes(mode: str) -> bool:
    return mode == CLOSE


def split_requests(buffered: bytes, data: bytes) -> tuple[int, bytes]:
    """Count the complete requests in ``buffered + data``; return ``(count, rest)``.

    ``rest`` is the start of an incomplete request, kept for the next read.
    Every Python server uses this, so that they all do the same work.
    """
    if buffered:
        data = buffered + data
    count = data.count(TERMINATOR)
    if not count:
        return 0, data
    if data.endswith(TERMINATOR):
        return count, b""
    return count, data[data.rfind(TERMINATOR) + 4 :]


#: A server drops a connection that sends this much without a complete request.
MAX_REQUEST = 65536
