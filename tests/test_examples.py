"""The network examples, run as programs and driven by real clients.

Each test starts an example on a free loopback port, talks to it with the
Debian client it was written for (curl, wrk, redis-cli, redis-benchmark,
openssl) or with plain sockets, then stops it with SIGTERM and expects exit
status 0.  A missing client skips its test, except under ``CI=true``, where
it fails: CI installs them.  No assertion is about speed.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: Bound on every wait here; none should come near it.
DEADLINE = 15.0


def client(name: str) -> str:
    """The path of a client program; skip without it (fail under CI=true)."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{message}, and CI must run every example test")
        pytest.skip(message)
    return path


class Example:
    """An example program in a subprocess, its stdout read line by line."""

    def __init__(self, script: str, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(EXAMPLES / script), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.errors: list[str] = []
        self.readers = [threading.Thread(target=self._read_stdout, daemon=True),
                        threading.Thread(target=self._read_stderr, daemon=True)]
        for reader in self.readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self.errors.extend(self.process.stderr)

    @property
    def stderr(self) -> str:
        return "".join(self.errors)

    def expect(self, pattern: str) -> re.Match[str]:
        """The next stdout line matching ``pattern`` (earlier lines are kept in ``seen``)."""
        while True:
            try:
                line = self.lines.get(timeout=DEADLINE)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; got {self.seen}") from None
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def listening_port(self) -> int:
        return int(self.expect(r"listening on 127\.0\.0\.1:(\d+)").group(1))

    def stop(self) -> int:
        """SIGTERM, then the exit status (once stdout and stderr are read to their end)."""
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(timeout=DEADLINE)
        for reader in self.readers:
            reader.join(DEADLINE)
        return status

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=DEADLINE)


@pytest.fixture
def run_example() -> Iterator[Callable[..., Example]]:
    started: list[Example] = []

    def start(script: str, *args: str) -> Example:
        started.append(Example(script, *args))
        return started[-1]

    yield start
    for example in started:
        example.kill()


#: Bound on a load generator's run: a slow build (sanitizers) may need it.
LOAD_DEADLINE = 45.0


@pytest.fixture
def run(client_env: dict[str, str]) -> Callable[..., subprocess.CompletedProcess[str]]:
    """Runs a client program to its end, in ``client_env``."""

    def run(*command: str, input: str | None = None, timeout: float = DEADLINE) -> subprocess.CompletedProcess[str]:
        return subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout, env=client_env)

    return run


class LineClient:
    """A plain blocking socket that reads lines."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
        self.file = self.sock.makefile("rb")

    def send(self, line: bytes) -> None:
        self.sock.sendall(line + b"\n")

    def line(self) -> bytes:
        return self.file.readline().rstrip(b"\n")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


# -- HTTP ---------------------------------------------------------------------------


def test_http_server_with_curl(run_example, run):
    curl = client("curl")
    server = run_example("http_server.py")
    url = f"http://127.0.0.1:{server.listening_port()}"
    both = run(curl, "-sv", f"{url}/", f"{url}/second")
    assert both.returncode == 0, both.stderr
    assert both.stdout == "Hello from aioc\n" * 2
    assert re.search(r"Re-?using existing", both.stderr), both.stderr  # one connection, kept alive
    closing = run(curl, "-si", "-H", "Connection: close", f"{url}/")
    assert closing.returncode == 0
    head, body = closing.stdout.split("\n\n", 1)  # text mode turned each CRLF into LF
    assert head.startswith("HTTP/1.1 200 OK")
    assert "Connection: close" in head and "Content-Length: 16" in head
    assert body == "Hello from aioc\n"
    posted = run(curl, "-s", "--http1.0", "-d", "x" * 5000, f"{url}/form")
    assert posted.stdout == "Hello from aioc\n"
    assert server.stop() == 0, server.stderr


def test_http_server_under_wrk(run_example, run):
    wrk = client("wrk")
    server = run_example("http_server.py")
    result = run(wrk, "-t1", "-c10", "-d2s", f"http://127.0.0.1:{server.listening_port()}/", timeout=LOAD_DEADLINE)
    assert result.returncode == 0, result.stderr
    requests = re.search(r"(\d+) requests in", result.stdout)
    assert requests and int(requests.group(1)) > 0, result.stdout
    assert "Socket errors" not in result.stdout, result.stdout
    assert "Non-2xx" not in result.stdout, result.stdout
    assert server.stop() == 0, server.stderr


def test_http_server_answers_a_malformed_request_with_400(run_example):
    server = run_example("http_server.py")
    conn = LineClient(server.listening_port())
    conn.sock.sendall(b"NONSENSE\r\n\r\n")
    assert conn.line().startswith(b"HTTP/1.1 400")
    conn.close()
    assert server.stop() == 0


# -- Redis --------------------------------------------------------------------------


def test_redis_server_with_redis_cli(run_example, run):
    cli = client("redis-cli")
    server = run_example("redis_server.py")
    port = str(server.listening_port())

    def ask(*command: str) -> str:
        result = run(cli, "-p", port, *command)
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    assert ask("set", "k", "v") == "OK"
    assert ask("get", "k") == "v"
    assert ask("incr", "n") == "1"
    assert ask("incr", "n") == "2"
    assert ask("get", "missing") == ""
    assert "ERR" in ask("incr", "k")
    assert ask("ping") == "PONG"
    assert server.stop() == 0, server.stderr


def test_redis_server_under_redis_benchmark(run_example, run):
    benchmark, cli = client("redis-benchmark"), client("redis-cli")
    server = run_example("redis_server.py")
    port = str(server.listening_port())
    result = run(benchmark, "-p", port, "-t", "ping,set,get,incr", "-P", "16", "-n", "20000", "-q",
                 timeout=LOAD_DEADLINE)
    assert result.returncode == 0, result.stderr
    output = result.stdout.replace("\r", "\n")
    for test in ("PING_INLINE", "PING_MBULK", "SET", "GET", "INCR"):
        assert re.search(rf"^{test}: [\d.]+ requests per second", output, re.M), output
    assert "ERR" not in output + result.stderr and "rror" not in output + result.stderr
    # Every pipelined INCR was executed once, in order: the counter tells.
    counted = run(cli, "-p", port, "get", "counter:__rand_int__")
    assert counted.stdout.strip() == "20000"
    assert server.stop() == 0, server.stderr


# -- TLS ----------------------------------------------------------------------------


def test_tls_echo_server_with_openssl_s_client(run_example, run):
    openssl = client("openssl")
    server = run_example("tls_echo_server.py")  # makes its certificate with openssl
    result = run(openssl, "s_client", "-connect", f"127.0.0.1:{server.listening_port()}", "-quiet",
                 input="hello over tls\nand a second line\nquit\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "hello over tls\nand a second line\n"
    assert server.stop() == 0, server.stderr


def test_tls_echo_server_with_a_given_certificate(run_example, tmp_path, run):
    openssl = client("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    made = run(openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=example.test",
               "-keyout", str(key), "-out", str(cert))
    assert made.returncode == 0, made.stderr
    server = run_example("tls_echo_server.py", "--cert", str(cert), "--key", str(key))
    result = run(openssl, "s_client", "-connect", f"127.0.0.1:{server.listening_port()}", "-quiet",
                 input="ping\nquit\n")
    assert result.stdout == "ping\n"
    assert "CN = example.test" in result.stderr or "CN=example.test" in result.stderr
    assert server.stop() == 0, server.stderr


# -- chat ---------------------------------------------------------------------------


def join(port: int) -> tuple[LineClient, str]:
    member = LineClient(port)
    welcome = member.line().decode()
    assert welcome.startswith("welcome "), welcome
    return member, welcome.split(" ", 1)[1]


def test_chat_server_passes_each_line_to_the_others(run_example):
    server = run_example("chat_server.py")
    port = server.listening_port()
    (a, a_name), (b, b_name), (c, c_name) = join(port), join(port), join(port)
    assert a_name == "%s:%d" % a.sock.getsockname()
    a.send(b"hello from a")
    assert b.line() == c.line() == f"{a_name}: hello from a".encode()
    c.send(b"hi from c")
    assert a.line() == b.line() == f"{c_name}: hi from c".encode()
    b.send(b"and b")  # after c's line went round: lines sent at once may pass in either order
    assert a.line() == c.line() == f"{b_name}: and b".encode()
    # Nobody got their own line back: the next thing a reads is new.
    b.send(b"last")
    assert a.line() == f"{b_name}: last".encode()
    for member in (a, b, c):
        member.close()
    assert server.stop() == 0, server.stderr


def test_a_slow_chat_client_is_dropped_without_stalling_the_others(run_example):
    server = run_example("chat_server.py", "--queue", "32")
    port = server.listening_port()
    (talker, talker_name), (listener, _), (slow, slow_name) = join(port), join(port), join(port)
    line, batch, batches = b"x" * 1000, 20, 400  # 8 MB: more than the buffers toward the slow client hold
    expected = f"{talker_name}: ".encode() + line
    # In steps the listener keeps up with, however busy the machine: it is
    # never slow, and must get every line while the slow client is dropped.
    for _ in range(batches):
        talker.sock.sendall((line + b"\n") * batch)
        for _ in range(batch):
            assert listener.line() == expected
    server.expect(rf"disconnecting {re.escape(slow_name)}: it stopped reading")
    received = 0
    while chunk := slow.sock.recv(1 << 20):  # what was queued for it, then the end
        received += len(chunk)
    assert received < batch * batches * len(expected)
    for member in (talker, listener, slow):
        member.close()
    assert server.stop() == 0, server.stderr


# -- workers ------------------------------------------------------------------------


def test_workers_server_spreads_connections_and_stops_cleanly(run_example):
    holder = socket.socket()  # keeps the port for the workers (bound, not listening)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    try:
        server = run_example("workers_server.py", "--port", str(port), "--workers", "2")
        pids = {server.expect(r"worker (\d+) listening").group(1) for _ in range(2)}
        answered: set[str] = set()
        for attempt in range(200):
            conn = LineClient(port)
            conn.send(b"hi %d" % attempt)
            pid, _, text = conn.line().decode().partition(": ")
            conn.close()
            assert pid in pids and text == f"hi {attempt}"
            answered.add(pid)
            if answered == pids:
                break
        assert answered == pids  # the kernel gave connections to both
        assert server.stop() == 0, server.stderr
        assert {server.expect(r"worker (\d+) stopped").group(1) for _ in range(2)} == pids
    finally:
        holder.close()
