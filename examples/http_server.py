"""A small HTTP/1.1 keep-alive server: ``python examples/http_server.py [--port PORT]``.

Every request gets the same small ``text/plain`` response with its
``Content-Length``.  Connections are kept alive for HTTP/1.1 unless the
request says ``Connection: close`` (HTTP/1.0 only with ``Connection:
keep-alive``); a request body announced by ``Content-Length`` is read and
dropped.  A malformed request gets ``400`` and the connection closes;
chunked request bodies are not supported (``501``).

``--port 0`` (the default) picks a free port; the server prints ``listening
on 127.0.0.1:PORT`` once it accepts connections, and exits with status 0 on
SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import signal
from collections.abc import Generator
from typing import Any

import aioc

BODY = b"Hello from aioc\n"
#: The longest request head (request line and headers) accepted.
MAX_HEAD = 16384
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class BadRequest(Exception):
    def __init__(self, status: bytes) -> None:
        super().__init__(status.decode())
        self.status = status


class Request:
    """The parts of a request head this server looks at."""

    def __init__(self, head: bytes) -> None:
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest(b"400 Bad Request")
        self.method, self.target, self.version = parts
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise BadRequest(b"400 Bad Request")
            self.headers[name.lower()] = value.strip()

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"

    def body_length(self) -> int:
        if "transfer-encoding" in self.headers:
            raise BadRequest(b"501 Not Implemented")
        length = self.headers.get("content-length", "0")
        if not length.isdigit():
            raise BadRequest(b"400 Bad Request")
        return int(length)


def response(status: bytes, body: bytes, *, keep_alive: bool, head_only: bool = False) -> bytes:
    lines = [
        b"HTTP/1.1 " + status,
        b"Content-Type: text/plain",
        b"Content-Length: %d" % len(body),
        b"Connection: " + (b"keep-alive" if keep_alive else b"close"),
    ]
    return b"\r\n".join(lines) + b"\r\n\r\n" + (b"" if head_only else body)


def handle(stream: aioc.Stream) -> Generator[Any, Any, None]:
    """Answer requests on one connection until it closes or asks to."""
    try:
        while True:
            head = yield from stream.read_until(b"\r\n\r\n", limit=MAX_HEAD)
            if not head:
                return  # the client closed between requests
            try:
                request = Request(head[:-4])
                body_length = request.body_length()
            except BadRequest as exc:
                yield from stream.write(response(exc.status, exc.status + b"\n", keep_alive=False))
                return
            if body_length:
                yield from stream.read_exactly(body_length)
            keep_alive = request.keep_alive
            yield from stream.write(response(b"200 OK", BODY, keep_alive=keep_alive,
                                             head_only=request.method == "HEAD"))
            if not keep_alive:
                return
    except (aioc.IncompleteReadError, ConnectionError):
        pass  # the client went away mid-request
    except aioc.LimitOverrunError:
        yield from stream.write(response(b"431 Request Header Fields Too Large", b"", keep_alive=False))


def main(port: int) -> Generator[Any, Any, None]:
    yield from aioc.watch_signals(*STOP_SIGNALS)
    listener = aioc.tcp_listener("127.0.0.1", port)
    server: aioc.Task = yield aioc.Spawn(aioc.serve_tcp(handle, sock=listener))
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    yield from aioc.wait_signal(*STOP_SIGNALS)
    server.cancel()  # stops accepting, cancels the handlers and waits for them
    yield from finish(server)


def finish(task: aioc.Task) -> Generator[Any, Any, None]:
    """Wait for ``task`` to end, however it ends."""
    try:
        yield aioc.Join(task)
    except aioc.Cancelled:
        if not task.done():
            raise  # this task itself was cancelled


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="A small HTTP/1.1 keep-alive server.")
    parser.add_argument("--port", type=int, default=0)
    aioc.run(main(parser.parse_args().port))
