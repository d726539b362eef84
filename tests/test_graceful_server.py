"""examples/graceful_server.py in a subprocess: SIGHUP reloads, SIGTERM drains and exits 0."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "graceful_server.py"


class Server:
    """``examples/graceful_server.py`` in a subprocess, its stdout read line by line."""

    def __init__(self, grace: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLE), "0", str(grace)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.port = int(self.expect("listening on").rsplit(":", 1)[1])

    def expect(self, prefix: str, timeout: float = 5.0) -> str:
        """The next stdout line that starts with ``prefix`` (earlier ones are kept)."""
        deadline = time.monotonic() + timeout
        assert self.proc.stdout is not None
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            self.lines.append(line.rstrip("\n"))
            if line.startswith(prefix):
                return line.rstrip("\n")
        raise AssertionError(f"no line starting with {prefix!r}; got {self.lines}")

    def connect(self) -> Client:
        return Client(self.port)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=5)


class Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def line(self) -> str:
        while b"\n" not in self.buffer:
            data = self.sock.recv(4096)
            if not data:
                raise EOFError(self.buffer)
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    def rest(self) -> bytes:
        """Everything until the server closes the connection."""
        chunks = [self.buffer]
        while data := self.sock.recv(4096):
            chunks.append(data)
        self.buffer = b""
        return b"".join(chunks)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def server_factory() -> Iterator[Any]:
    made: list[Server] = []

    def make(grace: float) -> Server:
        server = Server(grace)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def test_graceful_server_finishes_a_response_being_sent(server_factory):
    server = server_factory(grace=5.0)
    echo = server.connect()
    echo.send("hello")
    assert echo.line() == "hello"

    server.proc.send_signal(signal.SIGHUP)  # reload: logs it and keeps serving
    server.expect("reload")
    echo.send("still here")
    assert echo.line() == "still here"

    slow = server.connect()
    slow.send("slow 6")  # six parts, 0.1 s apart
    assert slow.line() == "part 1/6"
    server.proc.send_signal(signal.SIGTERM)
    server.expect("stopping")
    started = time.monotonic()

    # The response being sent arrives whole; the connection then closes.
    rest = slow.rest().decode().splitlines()
    assert rest == [f"part {i}/6" for i in range(2, 7)] + ["done"]
    # The idle connection is closed at once, without a response.
    assert echo.rest() == b""
    # No new connection is accepted.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).recv(1)

    assert server.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 3.0
    out, err = server.proc.communicate(timeout=5)
    assert "stopped" in out
    assert "Traceback" not in err
    echo.close()
    slow.close()


def test_graceful_server_cancels_handlers_past_the_grace_period(server_factory):
    server = server_factory(grace=0.3)
    slow = server.connect()
    slow.send("slow 100")  # ten seconds' worth
    assert slow.line() == "part 1/100"
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    rest = slow.rest().decode().splitlines()
    assert 0 < len(rest) < 20 and "done" not in rest
    assert server.proc.wait(timeout=5) == 0
    assert time.monotonic() - started < 2.0
    out, err = server.proc.communicate(timeout=5)
    assert "cancelled 1" in out
    assert "Traceback" not in err
    slow.close()


def test_graceful_server_stops_on_sigint_too(server_factory):
    server = server_factory(grace=1.0)
    server.proc.send_signal(signal.SIGINT)
    assert server.proc.wait(timeout=5) == 0
    out, err = server.proc.communicate(timeout=5)
    assert "stopped" in out and "KeyboardInterrupt" not in err
