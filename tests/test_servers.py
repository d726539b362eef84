"""serve_tcp and serve_unix: a task per connection, errors contained, nothing leaked."""

from __future__ import annotations

import errno
import functools
import logging
import os
import shutil
import socket
import subprocess
from typing import Any

import pytest

import aioc
from aioc.threads import run_in_thread

# A socket that only the garbage collector closes is a leak.
pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def echo_lines(stream: aioc.Stream) -> Any:
    while line := (yield from stream.readline()):
        yield from stream.write(line)


async def async_echo_lines(stream: aioc.Stream) -> None:
    while line := await stream.readline():
        await stream.write(line)


def wait_until(predicate: Any, limit: float = 5.0) -> Any:
    """Let the loop run until ``predicate()`` holds (polled; no timing is asserted)."""
    for _ in range(int(limit / 0.005)):
        if predicate():
            return
        yield aioc.Sleep(0.005)
    raise AssertionError("the condition never held")


def talk(stream: aioc.Stream, line: bytes) -> Any:
    yield from stream.write(line)
    return (yield from stream.readline())


def closed_by_peer(conn: socket.socket) -> bool:
    """Whether the other end closed ``conn`` (accepted and closed: EOF; never accepted: a reset)."""
    conn.settimeout(5)
    try:
        return conn.recv(10) == b""
    except ConnectionResetError:
        return True


def stop(server: Any) -> Any:
    """Cancel a server task and wait until it has finished."""
    server.cancel()
    yield from wait_until(server.done)


@pytest.fixture
def errors(loop: Any) -> list[dict]:
    """What the loop's exception handler receives during the test."""
    seen: list[dict] = []
    loop.set_exception_handler(lambda loop, context: seen.append(context))
    return seen


# -- serving ------------------------------------------------------------------------------


@pytest.mark.parametrize("handler", [echo_lines, async_echo_lines], ids=["generator", "async"])
def test_serve_tcp_echoes(loop, runner, handler, errors):
    sock = aioc.tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]

    def main() -> Any:
        server = yield aioc.Spawn(aioc.serve_tcp(handler, sock=sock))
        replies = []
        for i in range(3):
            stream = yield from aioc.open_tcp("127.0.0.1", port)
            replies.append((yield from talk(stream, b"hello %d\n" % i)))
            yield from stream.close()
        yield from stop(server)
        return replies

    assert runner.complete(main()) == [b"hello 0\n", b"hello 1\n", b"hello 2\n"]
    assert sock.fileno() == -1 and errors == []


@pytest.mark.parametrize("handler", [echo_lines, async_echo_lines], ids=["generator", "async"])
def test_serve_unix_echoes_and_removes_its_socket_file(loop, runner, handler, tmp_path):
    path = str(tmp_path / "echo.sock")

    def main() -> Any:
        server = yield aioc.Spawn(aioc.serve_unix(handler, path))
        yield from wait_until(lambda: os.path.exists(path))
        a = yield from aioc.open_unix(path)
        b = yield from aioc.open_unix(path)
        replies = [(yield from talk(a, b"to a\n")), (yield from talk(b, b"to b\n"))]
        yield from a.close()
        yield from b.close()
        yield from stop(server)
        return replies

    assert runner.complete(main()) == [b"to a\n", b"to b\n"]
    assert not os.path.exists(path)


def test_serve_unix_replaces_a_stale_socket_file_but_not_other_files(loop, runner, tmp_path):
    path = str(tmp_path / "stale.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, as after a crash
    other = tmp_path / "plain-file"
    other.write_text("keep me")

    def main() -> Any:
        server = yield aioc.Spawn(aioc.serve_unix(echo_lines, path))
        # The stale file is there before the server replaces it: a refused
        # connect means the server has not listened yet.
        for _ in range(200):
            try:
                stream = yield from aioc.open_unix(path)
                break
            except ConnectionRefusedError:
                yield aioc.Sleep(0.01)
        reply = yield from talk(stream, b"fresh\n")
        yield from stream.close()
        yield from stop(server)
        with pytest.raises(FileExistsError):
            yield from aioc.serve_unix(echo_lines, str(other))
        return reply

    assert runner.complete(main()) == b"fresh\n"
    assert other.read_text() == "keep me"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"], ids=["address", "name"])
def test_serve_tcp_binds_host_and_port_itself(loop, runner, host):
    """An address binds at once; a name is resolved in a worker thread."""
    probe = aioc.tcp_listener("127.0.0.1", 0)
    port = probe.getsockname()[1]
    probe.close()

    def main() -> Any:
        server = yield aioc.Spawn(aioc.serve_tcp(echo_lines, host, port))
        for _ in range(200):
            try:
                stream = yield from aioc.open_tcp(host, port)
                break
            except ConnectionRefusedError:
                yield aioc.Sleep(0.01)
        reply = yield from talk(stream, b"bound\n")
        yield from stream.close()
        yield from stop(server)
        return reply

    assert runner.complete(main()) == b"bound\n"


def test_handler_exception_is_reported_and_the_server_keeps_serving(loop, runner, errors):
    sock = aioc.tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]

    def handler(stream: aioc.Stream) -> Any:
        line = yield from stream.readline()
        if line == b"fail\n":
            raise KeyError("the handler broke")
        yield from stream.write(line)

    def main() -> Any:
        server = yield aioc.Spawn(aioc.serve_tcp(handler, sock=sock))
        failing = yield from aioc.open_tcp("127.0.0.1", port)
        yield from failing.write(b"fail\n")
        assert (yield from failing.read()) == b""  # the server closed that stream
        yield from failing.close()
        stream = yield from aioc.open_tcp("127.0.0.1", port)
        reply = yield from talk(stream, b"still here\n")
        yield from stream.close()
        yield from stop(server)
        return reply

    assert runner.complete(main()) == b"still here\n"
    assert len(errors) == 1
    assert isinstance(errors[0]["exception"], KeyError)
    assert errors[0]["message"] == "a connection handler failed"
    assert errors[0]["peername"][0] == "127.0.0.1"


def test_accepting_pauses_at_max_connections(loop, runner):
    sock = aioc.tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    started = []

    def handler(stream: aioc.Stream) -> Any:
        started.append(stream.peername)
        line = yield from stream.readline()
        yield from stream.write(line)

    def main() -> Any:
        server = yield aioc.Spawn(aioc.serve_tcp(handler, sock=sock, max_connections=1))
        first = yield from aioc.open_tcp("127.0.0.1", port)
        yield from wait_until(lambda: len(started) == 1)
        second = yield from aioc.open_tcp("127.0.0.1", port)  # the kernel's backlog takes it
        yield from second.write(b"second\n")
        yield aioc.Sleep(0.1)
        held_back = len(started) == 1  # not accepted while the first is served
        assert (yield from talk(first, b"first\n")) == b"first\n"
        reply = yield from second.readline()  # accepted once the first handler ended
        yield from first.close()
        yield from second.close()
        yield from stop(server)
        return held_back, reply, len(started)

    assert runner.complete(main()) == (True, b"second\n", 2)


def test_a_handler_cancelled_before_its_first_step_gives_its_slot_back(loop, runner):
    sock = aioc.tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    started = []

    def handler(stream: aioc.Stream) -> Any:
        started.append(stream.peername)
        yield from stream.write(b"served\n")

    def cancel_handlers_at_once() -> Any:
        # Queued before the server, it runs between the server making a
        # handler's task and that task's first step.
        while True:
            for task in loop.tasks():
                if task.name.startswith("connection from") and not task.done():
                    task.cancel()
                    return
            yield aioc.Sleep(0)

    def main() -> Any:
        server = yield aioc.Spawn(aioc.serve_tcp(handler, sock=sock, max_connections=1))
        canceller = yield aioc.Spawn(cancel_handlers_at_once())
        first = socket.create_connection(("127.0.0.1", port))
        yield aioc.Join(canceller)
        first_closed = yield from run_in_thread(closed_by_peer, first)
        second = yield from aioc.open_tcp("127.0.0.1", port)
        reply = yield from second.readline()  # served: the cancelled handler's slot came back
        yield from second.close()
        first.close()
        yield from stop(server)
        return first_closed, reply, len(started)

    assert runner.complete(main()) == (True, b"served\n", 1)


def test_port_in_use_raises_and_leaks_no_fd(loop, runner):
    taken = aioc.tcp_listener("127.0.0.1", 0)
    port = taken.getsockname()[1]

    def main() -> Any:
        before = open_fds()
        with pytest.raises(OSError) as info:
            yield from aioc.serve_tcp(echo_lines, "127.0.0.1", port)
        return info.value.errno, open_fds() - before

    try:
        assert runner.complete(main()) == (errno.EADDRINUSE, 0)
        with pytest.raises(OSError):
            aioc.tcp_listener("127.0.0.1", port)
    finally:
        taken.close()


def test_cancelling_the_server_closes_every_stream_and_fd(loop, runner):
    cleaned = []

    def handler(stream: aioc.Stream) -> Any:
        try:
            yield from stream.write(b"hi\n")
            yield from stream.read()  # the clients never send: blocked here
        finally:
            cleaned.append(stream)

    def main() -> Any:
        before = open_fds()
        sock = aioc.tcp_listener("127.0.0.1", 0)
        port = sock.getsockname()[1]
        server = yield aioc.Spawn(aioc.serve_tcp(handler, sock=sock))
        clients = []
        for _ in range(5):
            stream = yield from aioc.open_tcp("127.0.0.1", port)
            assert (yield from stream.readline()) == b"hi\n"
            clients.append(stream)
        yield from stop(server)
        ends = []
        for stream in clients:
            ends.append((yield from stream.read()))
            yield from stream.close()
        return before, ends, server.cancelled()

    before, ends, cancelled = runner.complete(main())
    assert cancelled and ends == [b""] * 5
    assert len(cleaned) == 5 and all(stream.socket.fileno() == -1 for stream in cleaned)
    assert open_fds() == before


def test_connections_accepted_as_the_server_is_cancelled_are_closed(loop, runner):
    """The first handler cancels the server while later connections are being
    accepted, or are accepted but their handlers have not started yet."""
    server: list[Any] = []
    handled = []

    def handler(stream: aioc.Stream) -> Any:
        handled.append(stream)
        server[0].cancel()
        yield from stream.read()

    def main() -> Any:
        before = open_fds()
        sock = aioc.tcp_listener("127.0.0.1", 0)
        port = sock.getsockname()[1]
        raw = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]  # all in the backlog
        server.append((yield aioc.Spawn(aioc.serve_tcp(handler, sock=sock))))
        yield from wait_until(server[0].done)
        ends = [closed_by_peer(conn) for conn in raw]
        for conn in raw:
            conn.close()
        return before, ends

    before, ends = runner.complete(main())
    assert ends == [True] * 4 and len(handled) >= 1
    assert open_fds() == before


# -- TLS ---------------------------------------------------------------------------------


def test_tls_server_survives_garbage_and_a_stalled_handshake(loop, runner, server_context, client_context, caplog):
    caplog.set_level(logging.DEBUG, logger="aioc")
    sock = aioc.tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]

    def main() -> Any:
        server = yield aioc.Spawn(
            aioc.serve_tcp(echo_lines, sock=sock, ssl=server_context, handshake_timeout=0.5)
        )
        garbage = yield from aioc.open_tcp("127.0.0.1", port)
        yield from garbage.write(b"GET / HTTP/1.1\r\n\r\n")
        stalled = yield from aioc.open_tcp("127.0.0.1", port)  # says nothing
        good = yield from aioc.open_tcp("127.0.0.1", port, ssl=client_context)
        reply = yield from talk(good, b"over tls\n")
        garbage_end = yield from garbage.read()  # the server closed it (an alert, then EOF)
        while garbage_end:
            garbage_end = yield from garbage.read()
        stalled_end = yield from aioc.timeout_after(5, stalled.read())  # closed after 0.5 s
        for stream in (good, garbage, stalled):
            yield from stream.close()
        yield from stop(server)
        return reply, stalled_end

    assert runner.complete(main()) == (b"over tls\n", b"")
    failures = [record.getMessage() for record in caplog.records if "TLS handshake with 127.0.0.1:" in record.getMessage()]
    assert len(failures) == 2
    assert any("SSLError" in message for message in failures) and any("TimeoutError" in message for message in failures)


def test_tls_handshake_counts_against_max_connections(loop, runner, server_context, client_context):
    sock = aioc.tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]

    def main() -> Any:
        server = yield aioc.Spawn(
            aioc.serve_tcp(echo_lines, sock=sock, ssl=server_context, max_connections=1, handshake_timeout=0.5)
        )
        stalled = yield from aioc.open_tcp("127.0.0.1", port)  # holds the only slot while it handshakes
        yield aioc.Sleep(0.05)
        good = yield from aioc.open_tcp("127.0.0.1", port, ssl=client_context)  # served once it times out
        reply = yield from talk(good, b"after the stall\n")
        yield from good.close()
        yield from stalled.close()
        yield from stop(server)
        return reply

    assert runner.complete(main()) == b"after the stall\n"


def http_hello(stream: aioc.Stream) -> Any:
    """A tiny HTTP/1.1 server: one response per connection."""
    while (yield from stream.readline()) not in (b"\r\n", b""):
        pass  # the request's headers
    body = b"hello over https\n"
    yield from stream.write(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
        % (len(body), body)
    )


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_over_https(loop, runner, server_context, pem_files, client_env):
    sock = aioc.tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server_context.set_alpn_protocols(["http/1.1"])
    command = ["curl", "--silent", "--show-error", "--http1.1", "--cacert", pem_files["ca"],
               "--max-time", "10", f"https://127.0.0.1:{port}/"]

    def main() -> Any:
        server = yield aioc.Spawn(aioc.serve_tcp(http_hello, sock=sock, ssl=server_context))
        done = yield from run_in_thread(
            functools.partial(subprocess.run, command, capture_output=True, timeout=15, env=client_env)
        )
        yield from stop(server)
        return done

    done = runner.complete(main(), limit=20)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"hello over https\n"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")
def test_openssl_s_client_against_serve_tcp(loop, runner, server_context, pem_files, client_env):
    sock = aioc.tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]

    def handler(stream: aioc.Stream) -> Any:
        line = yield from stream.readline()
        yield from stream.write(b"%s %s" % (stream.tls.version().encode(), line))

    command = ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
               "-CAfile", pem_files["ca"], "-verify_return_error", "-quiet"]

    def main() -> Any:
        server = yield aioc.Spawn(aioc.serve_tcp(handler, sock=sock, ssl=server_context))
        done = yield from run_in_thread(
            functools.partial(subprocess.run, command, input=b"from s_client\n", capture_output=True, timeout=10,
                              env=client_env)
        )
        yield from stop(server)
        return done

    done = runner.complete(main(), limit=15)
    assert done.stdout in (b"TLSv1.3 from s_client\n", b"TLSv1.2 from s_client\n"), done.stderr


def test_bad_arguments(loop, runner):
    def main() -> Any:
        with pytest.raises(ValueError):
            yield from aioc.serve_tcp(echo_lines, sock=aioc.tcp_listener("127.0.0.1", 0), max_connections=0)
        with pytest.raises(TypeError):
            yield from aioc.serve_unix(echo_lines)
        listener = aioc.tcp_listener("127.0.0.1", 0)
        with pytest.raises(TypeError):
            yield from aioc.serve_tcp(echo_lines, sock=listener, ssl=True)  # a server needs its certificate
        assert listener.fileno() == -1  # the server owned it, and closed it

    runner.complete(main())


@pytest.mark.parametrize("max_connections", [None, 1])
def test_closing_the_loop_under_a_running_server_closes_every_socket(aio, backend, max_connections):
    before = open_fds()
    loop = aio.EventLoop(backend=backend)
    sock = aioc.tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    raw = []

    def main() -> Any:
        yield aioc.Spawn(aioc.serve_tcp(echo_lines, sock=sock, max_connections=max_connections))
        for _ in range(3):
            raw.append(socket.create_connection(("127.0.0.1", port)))
        yield from wait_until(lambda: sum(t.name.startswith("connection") for t in loop.tasks()) >= 1)

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()  # the server and its handlers are still running
    assert all(closed_by_peer(conn) for conn in raw)
    for conn in raw:
        conn.close()
    assert open_fds() == before


def test_reuse_port_lets_two_servers_share_a_port(loop, runner):
    first = aioc.tcp_listener("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]

    def main() -> Any:
        a = yield aioc.Spawn(aioc.serve_tcp(echo_lines, sock=first))
        b = yield aioc.Spawn(aioc.serve_tcp(echo_lines, "127.0.0.1", port, reuse_port=True))
        yield aioc.Sleep(0.01)
        stream = yield from aioc.open_tcp("127.0.0.1", port)
        reply = yield from talk(stream, b"either\n")
        yield from stream.close()
        both_running = not a.done() and not b.done()
        yield from stop(a)
        yield from stop(b)
        return reply, both_running

    assert runner.complete(main()) == (b"either\n", True)


def test_fifty_tls_clients_at_once(loop, runner, server_context, client_context):
    sock = aioc.tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]

    def client(i: int) -> Any:
        stream = yield from aioc.open_tcp("127.0.0.1", port, ssl=client_context)
        replies = []
        for j in range(10):
            replies.append((yield from talk(stream, b"%d.%d\n" % (i, j))))
        yield from stream.close()
        return replies == [b"%d.%d\n" % (i, j) for j in range(10)]

    def main() -> Any:
        before = open_fds()
        server = yield aioc.Spawn(aioc.serve_tcp(echo_lines, sock=sock, ssl=server_context, max_connections=20))
        group = aioc.TaskGroup()
        for i in range(50):
            yield from group.spawn(client(i))
        results = yield from group.join()
        yield from stop(server)
        return results, open_fds() - before

    results, leaked = runner.complete(main(), limit=30)
    assert results == [True] * 50 and leaked == -1  # the listening socket, made before, is closed too


def test_a_second_cancel_during_shutdown_still_closes_everything(loop, runner):
    cleaned = []

    def handler(stream: aioc.Stream) -> Any:
        try:
            yield from stream.read()
        finally:
            cleaned.append(stream)

    def main() -> Any:
        before = open_fds()
        sock = aioc.tcp_listener("127.0.0.1", 0)
        port = sock.getsockname()[1]
        server = yield aioc.Spawn(aioc.serve_tcp(handler, sock=sock))
        clients = []
        for _ in range(3):
            clients.append((yield from aioc.open_tcp("127.0.0.1", port)))
        yield from wait_until(lambda: sum(t.name.startswith("connection") for t in loop.tasks()) == 3)
        for _ in range(4):  # cancels landing at every step of the shutdown
            server.cancel()
            yield aioc.Sleep(0)
        yield from wait_until(server.done)
        for stream in clients:
            assert (yield from stream.read()) == b""
            yield from stream.close()
        return before

    before = runner.complete(main())
    assert len(cleaned) == 3 and open_fds() == before
