"""open_tcp and open_unix: resolve, try each address, handshake, and leak nothing."""

from __future__ import annotations

import os
import socket
import ssl
from typing import Any

import pytest

import aioc
from aioc import clients

pytestmark = pytest.mark.filterwarnings("error::ResourceWarning")


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def echo_lines(stream: aioc.Stream) -> Any:
    while line := (yield from stream.readline()):
        yield from stream.write(line)


def talk(stream: aioc.Stream, line: bytes) -> Any:
    yield from stream.write(line)
    return (yield from stream.readline())


def stop(server: Any) -> Any:
    server.cancel()
    while not server.done():
        yield aioc.Sleep(0.005)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return port


def ipv6_loopback_works() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_open_tcp_by_name_and_async(loop, runner):
    sock = aioc.tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]

    async def client() -> bytes:
        stream = await aioc.open_tcp("localhost", port)  # /etc/hosts may list ::1 first: then 127.0.0.1 is tried
        async with stream:
            await stream.write(b"by name\n")
            return await stream.readline()

    def main() -> Any:
        server = yield aioc.Spawn(aioc.serve_tcp(echo_lines, sock=sock))
        reply = yield aioc.Join((yield aioc.Spawn(client())))
        yield from stop(server)
        return reply

    assert runner.complete(main()) == b"by name\n"


def test_unresolvable_name_raises_gaierror(loop, runner):
    def main() -> Any:
        before = open_fds()
        with pytest.raises(socket.gaierror):
            yield from aioc.open_tcp("nonexistent.invalid", 80)
        return open_fds() - before

    assert runner.complete(main()) == 0


def test_closed_port_raises_connection_refused_and_leaks_no_fd(loop, runner):
    port = closed_port()

    def main() -> Any:
        before = open_fds()
        with pytest.raises(ConnectionRefusedError):
            yield from aioc.open_tcp("127.0.0.1", port)
        return open_fds() - before

    assert runner.complete(main()) == 0


def test_each_address_is_tried_in_turn(loop, runner, monkeypatch):
    sock = aioc.tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    tried = []

    def fake_getaddrinfo(host: str, port: int, type: int = 0) -> Any:
        # 127.0.0.2 is loopback too, but nobody listens there on this port.
        infos = [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]
        tried.append(host)
        return infos
        yield  # a generator, as the real one

    monkeypatch.setattr(clients, "getaddrinfo", fake_getaddrinfo)

    def main() -> Any:
        server = yield aioc.Spawn(aioc.serve_tcp(echo_lines, sock=sock))
        stream = yield from aioc.open_tcp("two.addresses.test", port)
        peer = stream.peername
        reply = yield from talk(stream, b"second try\n")
        yield from stream.close()
        yield from stop(server)
        return peer, reply

    assert runner.complete(main()) == (("127.0.0.1", port), b"second try\n")
    assert tried == ["two.addresses.test"]


def test_the_last_connect_error_is_raised_when_all_fail(loop, runner, monkeypatch):
    port = closed_port()

    def fake_getaddrinfo(host: str, port: int, type: int = 0) -> Any:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.2", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
        ]
        yield

    monkeypatch.setattr(clients, "getaddrinfo", fake_getaddrinfo)

    def main() -> Any:
        before = open_fds()
        with pytest.raises(ConnectionRefusedError):
            yield from aioc.open_tcp("nobody.test", port)
        return open_fds() - before

    assert runner.complete(main()) == 0


@pytest.mark.skipif(not ipv6_loopback_works(), reason="::1 is not available here")
def test_open_tcp_over_ipv6_loopback(loop, runner):
    sock = aioc.tcp_listener("::1", 0)
    port = sock.getsockname()[1]

    def main() -> Any:
        server = yield aioc.Spawn(aioc.serve_tcp(echo_lines, sock=sock))
        stream = yield from aioc.open_tcp("::1", port)
        family = stream.socket.family
        reply = yield from talk(stream, b"over ipv6\n")
        yield from stream.close()
        yield from stop(server)
        return family, reply

    assert runner.complete(main()) == (socket.AF_INET6, b"over ipv6\n")


@pytest.mark.skipif(not ipv6_loopback_works(), reason="::1 is not available here")
def test_server_on_every_interface_takes_ipv4_and_ipv6(loop, runner):
    sock = aioc.tcp_listener(None, 0)
    port = sock.getsockname()[1]

    def main() -> Any:
        server = yield aioc.Spawn(aioc.serve_tcp(echo_lines, sock=sock))
        replies = []
        for host in ("127.0.0.1", "::1"):
            stream = yield from aioc.open_tcp(host, port)
            replies.append((yield from talk(stream, host.encode() + b"\n")))
            yield from stream.close()
        yield from stop(server)
        return replies

    assert runner.complete(main()) == [b"127.0.0.1\n", b"::1\n"]


def test_open_tcp_with_tls(loop, runner, server_context, client_context):
    sock = aioc.tcp_listener("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server_context.set_alpn_protocols(["echo/1"])
    client_context.set_alpn_protocols(["echo/1"])
    names = []
    server_context.sni_callback = lambda sslobj, name, context: names.append(name)

    def main() -> Any:
        server = yield aioc.Spawn(aioc.serve_tcp(echo_lines, sock=sock, ssl=server_context))
        stream = yield from aioc.open_tcp("localhost", port, ssl=client_context)  # SNI: the host
        reply = yield from talk(stream, b"secret\n")
        alpn, hostname = stream.tls.selected_alpn_protocol(), stream.tls.server_hostname
        yield from stream.close()
        yield from stop(server)
        return reply, alpn, hostname

    assert runner.complete(main()) == (b"secret\n", "echo/1", "localhost")
    assert names == ["localhost"]


def test_tls_to_the_wrong_name_fails_and_closes_the_socket(loop, runner, server_context, client_context):
    def main() -> Any:
        before = open_fds()
        sock = aioc.tcp_listener("127.0.0.1", 0)
        port = sock.getsockname()[1]
        server = yield aioc.Spawn(aioc.serve_tcp(echo_lines, sock=sock, ssl=server_context))
        with pytest.raises(ssl.SSLCertVerificationError):
            yield from aioc.open_tcp("127.0.0.1", port, ssl=client_context, server_hostname="other.example")
        yield from stop(server)
        return open_fds() - before

    assert runner.complete(main()) == 0


def test_timeout_bounds_the_handshake(loop, runner, client_context):
    silent = aioc.tcp_listener("127.0.0.1", 0)  # the kernel completes connects; nobody answers
    port = silent.getsockname()[1]

    def main() -> Any:
        before = open_fds()
        with pytest.raises(TimeoutError):
            yield from aioc.open_tcp("127.0.0.1", port, ssl=client_context, timeout=0.2)
        return open_fds() - before

    try:
        assert runner.complete(main()) == 0
    finally:
        silent.close()


def test_open_unix_plain_and_with_tls(loop, runner, tmp_path, server_context, client_context):
    plain_path, tls_path = str(tmp_path / "plain.sock"), str(tmp_path / "tls.sock")

    def main() -> Any:
        plain = yield aioc.Spawn(aioc.serve_unix(echo_lines, plain_path))
        secure = yield aioc.Spawn(aioc.serve_unix(echo_lines, tls_path, ssl=server_context))
        while not (os.path.exists(plain_path) and os.path.exists(tls_path)):
            yield aioc.Sleep(0.005)
        replies = []
        stream = yield from aioc.open_unix(plain_path)
        replies.append((yield from talk(stream, b"plain\n")))
        yield from stream.close()
        stream = yield from aioc.open_unix(tls_path, ssl=client_context, server_hostname="localhost")
        replies.append((yield from talk(stream, b"tls\n")))
        yield from stream.close()
        yield from stop(plain)
        yield from stop(secure)
        return replies

    assert runner.complete(main()) == [b"plain\n", b"tls\n"]


def test_open_unix_to_a_missing_path(loop, runner, tmp_path):
    def main() -> Any:
        before = open_fds()
        with pytest.raises(FileNotFoundError):
            yield from aioc.open_unix(str(tmp_path / "nobody.sock"))
        return open_fds() - before

    assert runner.complete(main()) == 0


def test_bad_arguments(loop, runner):
    def main() -> Any:
        with pytest.raises(ValueError):
            yield from aioc.open_tcp("127.0.0.1", 1, server_hostname="x")
        with pytest.raises(TypeError):
            yield from aioc.open_tcp("127.0.0.1", 1, ssl="yes")

    runner.complete(main())
