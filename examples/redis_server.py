"""A Redis-protocol server: ``python examples/redis_server.py [--port PORT]``.

It speaks RESP2, the protocol of ``redis-cli`` and ``redis-benchmark``, and
keeps strings in one dict in memory.  Commands: ``PING [message]``, ``ECHO
message``, ``SET key value``, ``GET key``, ``INCR key``, ``DEL key...``,
``CONFIG GET pattern`` (no parameters: an empty list, which is all
``redis-benchmark`` asks at start) and ``QUIT``.  Requests come as RESP
arrays of bulk strings, or as inline commands (a line of words); any number
may be pipelined, and replies are written in the same order.

``--port 0`` (the default) picks a free port; the server prints ``listening
on 127.0.0.1:PORT`` once it accepts connections, and exits with status 0 on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import fnmatch
import signal
from collections.abc import Callable, Generator
from typing import Any

import aioc

#: Bounds on what one request may hold, so a client cannot make the server buffer forever.
MAX_LINE = 65536
MAX_ARGUMENTS = 1024 * 1024
MAX_BULK = 512 * 1024 * 1024
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: What CONFIG GET reports: no snapshots, no append-only file.
CONFIG = {b"save": b"", b"appendonly": b"no"}


class ProtocolError(Exception):
    """The client sent something that is not RESP: the connection ends after the error reply."""


# -- replies -------------------------------------------------------------------------


def simple(text: str) -> bytes:
    return b"+" + text.encode() + b"\r\n"


def error(text: str) -> bytes:
    return b"-" + text.encode() + b"\r\n"


def integer(value: int) -> bytes:
    return b":%d\r\n" % value


def bulk(value: bytes | None) -> bytes:
    if value is None:
        return b"$-1\r\n"
    return b"$%d\r\n%s\r\n" % (len(value), value)


def array(items: list[bytes]) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(bulk(item) for item in items)


# -- requests ------------------------------------------------------------------------


def read_request(stream: aioc.Stream) -> Generator[Any, Any, list[bytes] | None]:
    """The next command as a list of arguments; None at a clean end of the stream."""
    line = yield from stream.readline(limit=MAX_LINE)
    if not line:
        return None
    if not line.endswith(b"\r\n"):
        raise ProtocolError("lines must end with CRLF")
    if not line.startswith(b"*"):
        return line.split()  # an inline command
    count = parse_count(line, MAX_ARGUMENTS)
    arguments = []
    for _ in range(count):
        header = yield from stream.readline(limit=MAX_LINE)
        if not header.startswith(b"$"):
            raise ProtocolError(f"expected '$', got {header[:1]!r}")
        size = parse_count(header, MAX_BULK)
        data = yield from stream.read_exactly(size + 2)
        if data[-2:] != b"\r\n":
            raise ProtocolError("a bulk string must end with CRLF")
        arguments.append(data[:-2])
    return arguments


def parse_count(line: bytes, limit: int) -> int:
    digits = line[1:].strip()
    if not digits.isdigit() or int(digits) > limit:
        raise ProtocolError(f"invalid length {digits[:20]!r}")
    return int(digits)


# -- commands ------------------------------------------------------------------------


class Store:
    """The data and the commands over it: each takes the arguments after the name."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.commands: dict[bytes, tuple[int, int, Callable[[list[bytes]], bytes]]] = {
            # name: (fewest arguments, most arguments, function)
            b"PING": (0, 1, self.ping),
            b"ECHO": (1, 1, lambda args: bulk(args[0])),
            b"SET": (2, 2, self.set),
            b"GET": (1, 1, lambda args: bulk(self.data.get(args[0]))),
            b"INCR": (1, 1, self.incr),
            b"DEL": (1, MAX_ARGUMENTS, self.delete),
            b"CONFIG": (2, 2, self.config),
        }

    def execute(self, arguments: list[bytes]) -> bytes:
        name = arguments[0].upper()
        if name not in self.commands:
            return error(f"ERR unknown command '{arguments[0].decode(errors='replace')}'")
        fewest, most, command = self.commands[name]
        if not fewest <= len(arguments) - 1 <= most:
            return error(f"ERR wrong number of arguments for '{name.decode().lower()}' command")
        return command(arguments[1:])

    def ping(self, args: list[bytes]) -> bytes:
        return bulk(args[0]) if args else simple("PONG")

    def set(self, args: list[bytes]) -> bytes:
        self.data[args[0]] = args[1]
        return simple("OK")

    def incr(self, args: list[bytes]) -> bytes:
        current = self.data.get(args[0], b"0")
        try:
            value = int(current) + 1
        except ValueError:
            return error("ERR value is not an integer or out of range")
        if not -(2**63) <= value < 2**63:
            return error("ERR increment or decrement would overflow")
        self.data[args[0]] = b"%d" % value
        return integer(value)

    def delete(self, args: list[bytes]) -> bytes:
        return integer(sum(self.data.pop(key, None) is not None for key in args))

    def config(self, args: list[bytes]) -> bytes:
        if args[0].upper() != b"GET":
            return error("ERR only CONFIG GET is supported")
        pattern = args[1].decode(errors="replace").lower()
        pairs = [item for name, value in CONFIG.items() if fnmatch.fnmatchcase(name.decode(), pattern)
                 for item in (name, value)]
        return array(pairs)


def handler(store: Store) -> Callable[[aioc.Stream], Generator[Any, Any, None]]:
    def handle(stream: aioc.Stream) -> Generator[Any, Any, None]:
        """Execute the client's commands in order, one reply each."""
        try:
            while True:
                arguments = yield from read_request(stream)
                if arguments is None:
                    return
                if not arguments:
                    continue  # an empty inline line
                if arguments[0].upper() == b"QUIT":
                    yield from stream.write(simple("OK"))
                    return
                yield from stream.write(store.execute(arguments))
        except (ProtocolError, aioc.LimitOverrunError) as exc:
            yield from stream.write(error(f"ERR Protocol error: {exc}"))
        except (aioc.IncompleteReadError, ConnectionError):
            pass  # the client went away mid-request

    return handle


def main(port: int) -> Generator[Any, Any, None]:
    yield from aioc.watch_signals(*STOP_SIGNALS)
    listener = aioc.tcp_listener("127.0.0.1", port)
    server: aioc.Task = yield aioc.Spawn(aioc.serve_tcp(handler(Store()), sock=listener))
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    yield from aioc.wait_signal(*STOP_SIGNALS)
    server.cancel()  # stops accepting, cancels the handlers and waits for them
    try:
        yield aioc.Join(server)
    except aioc.Cancelled:
        if not server.done():
            raise  # this task itself was cancelled


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A Redis-protocol server.")
    parser.add_argument("--port", type=int, default=0)
    aioc.run(main(parser.parse_args().port))
