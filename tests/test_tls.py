"""TLS over memory buffers (aioc.tls): handshakes, the pump, the ends of a session.

The peers are real: Python's own blocking ``ssl.SSLSocket`` in a thread,
``openssl s_client`` and ``openssl s_server`` in a subprocess, and aioc's own
layer on the other end of a loopback connection.  Certificates are made at
test time by ``trustme``.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
from typing import Any, Callable

import pytest

import aioc
from aioc import tls
from aioc.threads import run_in_thread

MiB = 1024 * 1024


# -- a blocking peer in a thread ----------------------------------------------------


class Peer:
    """Runs ``fn(*args)`` in a thread; ``outcome()`` joins it and returns (or raises) its result."""

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.result: Any = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(fn, args), daemon=True)
        self.thread.start()

    def _run(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            self.result = fn(*args)
        except BaseException as exc:
            self.error = exc

    def outcome(self, timeout: float = 10.0) -> Any:
        self.thread.join(timeout)
        if self.thread.is_alive():
            pytest.fail("the peer thread did not finish")
        if self.error is not None:
            raise self.error
        return self.result


def blocking(sock: socket.socket) -> socket.socket:
    sock.setblocking(True)
    sock.settimeout(10)
    return sock


def recv_until(conn: Any, end: bytes) -> bytes:
    data = b""
    while not data.endswith(end):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def recv_all(conn: Any) -> bytes:
    parts = []
    while True:
        chunk = conn.recv(65536)
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def receive_exactly(layer: tls.TLSLayer, n: int) -> Any:
    parts, got = [], 0
    while got < n:
        chunk = yield from layer.receive(min(65536, n - got))
        assert chunk, f"the peer ended the session after {got} of {n} bytes"
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


def receive_until_end(layer: tls.TLSLayer) -> Any:
    parts = []
    while True:
        chunk = yield from layer.receive()
        if not chunk:
            return b"".join(parts)
        parts.append(chunk)


def pattern(n: int, seed: int) -> bytes:
    """``n`` bytes that a shifted or reordered copy would not match."""
    block = bytes((i * 7 + seed) % 251 for i in range(4096))
    return (block * (n // len(block) + 1))[:n]


# -- handshakes ------------------------------------------------------------------


def test_server_handshakes_with_python_client_and_echoes(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()

    def python_client() -> tuple[bytes, str]:
        with client_context.wrap_socket(blocking(client), server_hostname="localhost") as conn:
            conn.sendall(b"hello\nworld\n")
            reply = recv_until(conn, b"world\n")
            version = conn.version()
            conn.unwrap()
            return reply, version

    def echo() -> Any:
        layer = yield from tls.handshake(server, server_context, server_side=True)
        data = yield from receive_exactly(layer, 12)
        yield from layer.send(data)
        rest = yield from layer.receive()
        yield from layer.close()
        return layer.version(), rest, layer.ragged_eof

    peer = Peer(python_client)
    version, rest, ragged = runner.complete(echo())
    reply, peer_version = peer.outcome()
    assert reply == b"hello\nworld\n"
    assert version == peer_version and version in ("TLSv1.2", "TLSv1.3")
    assert rest == b"" and ragged is False  # the client's close_notify


def test_client_handshakes_with_python_server_with_sni(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()
    names = []
    server_context.sni_callback = lambda sslobj, name, context: names.append(name)

    def python_server() -> bytes:
        with server_context.wrap_socket(blocking(server), server_side=True) as conn:
            data = recv_until(conn, b"\n")
            conn.sendall(data.upper())
            conn.unwrap()
            return data

    def main() -> Any:
        layer = yield from tls.handshake(client, client_context, server_side=False, server_hostname="localhost")
        yield from layer.send(b"ping\n")
        reply = yield from receive_until_end(layer)
        yield from layer.close()
        return reply, layer.server_hostname, layer.getpeercert()["subjectAltName"]

    peer = Peer(python_server)
    reply, hostname, alt_names = runner.complete(main())
    assert peer.outcome() == b"ping\n"
    assert reply == b"PING\n"
    assert names == ["localhost"] and hostname == "localhost"
    assert ("DNS", "localhost") in alt_names


def test_alpn_is_negotiated_both_ways(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()
    server_context.set_alpn_protocols(["h2", "http/1.1"])
    client_context.set_alpn_protocols(["http/1.1"])

    def main() -> Any:
        server_task = yield aioc.Spawn(tls.handshake(server, server_context, server_side=True))
        client_layer = yield from tls.handshake(client, client_context, server_side=False, server_hostname="localhost")
        server_layer = yield aioc.Join(server_task)
        return client_layer.selected_alpn_protocol(), server_layer.selected_alpn_protocol()

    assert runner.complete(main()) == ("http/1.1", "http/1.1")


def test_async_def_drives_the_layer(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()

    async def serve() -> bytes:
        layer = await tls.handshake(server, server_context, server_side=True)
        data = await layer.receive()
        await layer.send(data[::-1])
        await layer.close()
        return data

    async def main() -> Any:
        server_task = await aioc.Spawn(serve())
        layer = await tls.handshake(client, client_context, server_side=False, server_hostname="localhost")
        await layer.send(b"abc")
        reply = await layer.receive()
        await layer.close()
        return reply, await aioc.Join(server_task)

    assert runner.complete(main()) == (b"cba", b"abc")


# -- failed handshakes ----------------------------------------------------------------


def test_untrusted_certificate_fails_the_client_handshake(loop, runner, tcp_pair, server_context):
    client, server = tcp_pair()
    untrusting = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)  # trusts no test CA

    def python_server() -> None:
        with pytest.raises(ssl.SSLError):
            server_context.wrap_socket(blocking(server), server_side=True)

    def main() -> Any:
        with pytest.raises(ssl.SSLCertVerificationError) as info:
            yield from tls.handshake(client, untrusting, server_side=False, server_hostname="localhost")
        return info.value

    peer = Peer(python_server)
    error = runner.complete(main())
    peer.outcome()  # the server learnt why: the alert was sent
    assert "certificate verify failed" in str(error)


def test_wrong_hostname_fails_the_client_handshake(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()

    def python_server() -> None:
        with pytest.raises(ssl.SSLError):
            server_context.wrap_socket(blocking(server), server_side=True)

    def main() -> Any:
        with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
            yield from tls.handshake(client, client_context, server_side=False, server_hostname="other.example")

    peer = Peer(python_server)
    runner.complete(main())
    peer.outcome()


def test_garbage_instead_of_client_hello_fails_that_handshake_only(loop, runner, tcp_pair, server_context, client_context):
    bad_client, bad_server = tcp_pair()
    good_client, good_server = tcp_pair()
    bad_client.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

    def main() -> Any:
        bad = yield aioc.Spawn(tls.handshake(bad_server, server_context, server_side=True))
        good = yield aioc.Spawn(tls.handshake(good_server, server_context, server_side=True))
        client_layer = yield from tls.handshake(good_client, client_context, server_side=False, server_hostname="localhost")
        server_layer = yield aioc.Join(good)
        yield from client_layer.send(b"still fine")
        data = yield from server_layer.receive()
        with pytest.raises(ssl.SSLError) as info:
            yield aioc.Join(bad)
        return data, info.value

    data, error = runner.complete(main())
    assert data == b"still fine"
    assert not isinstance(error, ssl.SSLCertVerificationError)


def test_peer_that_leaves_mid_handshake_raises_ssl_error(loop, runner, tcp_pair, server_context):
    client, server = tcp_pair()
    client.close()

    def main() -> Any:
        with pytest.raises(ssl.SSLError):
            yield from tls.handshake(server, server_context, server_side=True)

    runner.complete(main())


def test_handshake_that_never_completes_times_out(loop, runner, tcp_pair, server_context, client_context):
    silent_client, silent_server = tcp_pair()
    client, server = tcp_pair()

    def main() -> Any:
        stalled = yield aioc.Spawn(tls.handshake(silent_server, server_context, server_side=True, handshake_timeout=0.2))
        good = yield aioc.Spawn(tls.handshake(server, server_context, server_side=True, handshake_timeout=5))
        yield from tls.handshake(client, client_context, server_side=False, server_hostname="localhost")
        yield aioc.Join(good)  # served while the other one stalls
        with pytest.raises(TimeoutError):
            yield aioc.Join(stalled)

    runner.complete(main())


# -- ends of a session ---------------------------------------------------------------


def test_close_sends_close_notify(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()

    def python_client() -> bytes:
        # suppress_ragged_eofs=False: an end without close_notify would raise here.
        with client_context.wrap_socket(blocking(client), server_hostname="localhost", suppress_ragged_eofs=False) as conn:
            return recv_all(conn)

    def main() -> Any:
        layer = yield from tls.handshake(server, server_context, server_side=True)
        yield from layer.send(b"bye")
        yield from layer.close()
        yield from layer.close()  # twice is harmless

    peer = Peer(python_client)
    runner.complete(main())
    assert peer.outcome() == b"bye"


def test_close_does_not_wait_for_the_peers_close_notify(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()

    def main() -> Any:
        server_task = yield aioc.Spawn(tls.handshake(server, server_context, server_side=True))
        layer = yield from tls.handshake(client, client_context, server_side=False, server_hostname="localhost")
        yield aioc.Join(server_task)
        # The server layer never answers: close returns anyway.
        yield from aioc.timeout_after(5, layer.close())

    runner.complete(main())


def test_ragged_eof_is_a_clean_end(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()

    def python_client() -> None:
        conn = client_context.wrap_socket(blocking(client), server_hostname="localhost")
        conn.sendall(b"last words")
        conn.shutdown(socket.SHUT_WR)  # a FIN without close_notify
        while conn.recv(65536):  # the server's records (now plain bytes), until it closes
            pass
        conn.close()

    def main() -> Any:
        layer = yield from tls.handshake(server, server_context, server_side=True)
        data = yield from receive_until_end(layer)
        again = yield from layer.receive()
        yield from layer.close()  # on a connection the peer has half left: no error
        server.close()
        return data, again, layer.ragged_eof

    peer = Peer(python_client)
    assert runner.complete(main()) == (b"last words", b"", True)
    peer.outcome()


def test_close_after_failed_handshake_is_harmless(loop, runner, tcp_pair, server_context):
    client, server = tcp_pair()
    client.send(b"\x00" * 64)

    def main() -> Any:
        layer = tls.TLSLayer(server, server_context, server_side=True)
        with pytest.raises(ssl.SSLError):
            yield from layer.do_handshake()
        yield from layer.close()

    runner.complete(main())


# -- the pump ------------------------------------------------------------------------------


def test_large_transfers_both_ways_at_once(loop, runner, tcp_pair, server_context, client_context):
    """Each end sends 4 MiB while it receives 4 MiB: a reader and a writer share each layer."""
    client, server = tcp_pair()
    size = 4 * MiB
    to_server, to_client = pattern(size, 1), pattern(size, 2)

    def sender(layer: tls.TLSLayer, data: bytes) -> Any:
        for start in range(0, len(data), 1_000_000):  # sizes that cut records anywhere
            yield from layer.send(data[start : start + 1_000_000])

    def end(layer_coro: Any, outgoing: bytes) -> Any:
        layer = yield from layer_coro
        send_task = yield aioc.Spawn(sender(layer, outgoing))
        received = yield from receive_exactly(layer, size)
        yield aioc.Join(send_task)
        return received

    def main() -> Any:
        server_end = yield aioc.Spawn(end(tls.handshake(server, server_context, server_side=True), to_client))
        at_client = yield from end(
            tls.handshake(client, client_context, server_side=False, server_hostname="localhost"), to_server
        )
        at_server = yield aioc.Join(server_end)
        return at_client == to_client, at_server == to_server

    assert runner.complete(main(), limit=30) == (True, True)


def test_large_transfer_to_and_from_python(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()
    size = 3 * MiB
    upload, download = pattern(size, 3), pattern(size, 4)

    def python_client() -> bytes:
        with client_context.wrap_socket(blocking(client), server_hostname="localhost") as conn:
            conn.sendall(upload)
            return recv_all(conn)

    def main() -> Any:
        layer = yield from tls.handshake(server, server_context, server_side=True)
        received = yield from receive_exactly(layer, size)
        yield from layer.send(download)
        yield from layer.close()
        return received

    peer = Peer(python_client)
    assert runner.complete(main(), limit=30) == upload
    assert peer.outcome(30) == download


def test_many_small_records_both_ways(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()
    lines = [b"line %d\n" % i for i in range(1000)]

    def python_client() -> bytes:
        with client_context.wrap_socket(blocking(client), server_hostname="localhost") as conn:
            for line in lines:
                conn.sendall(line)  # one record each
            return recv_until(conn, lines[-1])

    def main() -> Any:
        layer = yield from tls.handshake(server, server_context, server_side=True)
        received = yield from receive_exactly(layer, sum(map(len, lines)))
        for line in received.splitlines(keepends=True):
            yield from layer.send(line)  # one record each
        yield from layer.close()
        return received

    peer = Peer(python_client)
    assert runner.complete(main()) == b"".join(lines)
    assert peer.outcome() == b"".join(lines)


def test_receive_hands_out_decrypted_data_before_waiting(loop, runner, tcp_pair, server_context, client_context):
    """Several records arrive in one segment; small receives drain them without the socket."""
    client, server = tcp_pair()

    def python_client() -> None:
        conn = client_context.wrap_socket(blocking(client), server_hostname="localhost")
        for i in range(50):
            conn.sendall(b"%02d" % i)
        # Keep the connection open: a receive that waited on the socket would hang.
        assert recv_all(conn) == b""
        conn.close()

    def main() -> Any:
        layer = yield from tls.handshake(server, server_context, server_side=True)
        parts = []
        for _ in range(50):
            # Two bytes at a time: the rest of what came stays in OpenSSL or
            # in `incoming`, and must be handed out without the socket.
            parts.append((yield from layer.receive(2)))
        yield from layer.close()
        server.close()
        return parts

    peer = Peer(python_client)
    assert runner.complete(main()) == [b"%02d" % i for i in range(50)]
    peer.outcome()


def test_receive_respects_max_bytes(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()

    def main() -> Any:
        server_task = yield aioc.Spawn(tls.handshake(server, server_context, server_side=True))
        layer = yield from tls.handshake(client, client_context, server_side=False, server_hostname="localhost")
        server_layer = yield aioc.Join(server_task)
        yield from server_layer.send(b"x" * 100_000)
        sizes = []
        got = 0
        while got < 100_000:
            chunk = yield from layer.receive(3000)
            assert 0 < len(chunk) <= 3000
            sizes.append(len(chunk))
            got += len(chunk)
        with pytest.raises(ValueError):
            yield from layer.receive(0)
        return got

    assert runner.complete(main()) == 100_000


def test_cancelled_send_keeps_the_session_intact(loop, runner, tcp_pair, server_context, client_context):
    """A send cancelled half-way leaves no partial record: the rest goes out first next time."""
    client, server = tcp_pair()
    big = pattern(32 * MiB, 5)  # more than loopback buffers take while nobody reads

    def main() -> Any:
        server_task = yield aioc.Spawn(tls.handshake(server, server_context, server_side=True))
        layer = yield from tls.handshake(client, client_context, server_side=False, server_hostname="localhost")
        server_layer = yield aioc.Join(server_task)
        # Nobody reads yet: the send fills the socket buffers and waits; cancel it there.
        result = yield from aioc.ignore_after(0.2, layer.send(big))
        assert result is None
        reader = yield aioc.Spawn(receive_until_end(server_layer))
        yield from layer.send(b"END")
        yield from layer.close()
        return (yield aioc.Join(reader))

    received = runner.complete(main(), limit=30)
    assert received.endswith(b"END")
    body = received[:-3]
    assert 0 < len(body) < len(big) and big.startswith(body)  # whole records, in order


# -- openssl as the peer ---------------------------------------------------------------------

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="the openssl command is not installed")


@needs_openssl
def test_server_against_openssl_s_client(loop, runner, listener, server_context, pem_files, client_env):
    lsock = listener()
    port = lsock.getsockname()[1]
    server_context.set_alpn_protocols(["echo/1"])
    command = [
        "openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "localhost",
        "-CAfile", pem_files["ca"], "-verify_return_error", "-alpn", "echo/1", "-quiet",
    ]

    def s_client() -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(command, input=b"hello over openssl\n", capture_output=True, timeout=10, env=client_env)

    def main() -> Any:
        client_run = yield aioc.Spawn(run_in_thread(s_client))
        conn, _ = yield aioc.AcceptEvent(lsock)
        try:
            layer = yield from tls.handshake(conn, server_context, server_side=True)
            line = yield from receive_exactly(layer, len(b"hello over openssl\n"))
            yield from layer.send(b"echo: " + line)
            yield from layer.close()
        finally:
            conn.close()
        return layer.selected_alpn_protocol(), (yield aioc.Join(client_run))

    alpn, done = runner.complete(main(), limit=15)
    assert alpn == "echo/1"
    assert done.stdout == b"echo: hello over openssl\n", done.stderr


@needs_openssl
def test_client_against_openssl_s_server(loop, runner, pem_files, client_context, tmp_path, client_env):
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    command = [
        "openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", pem_files["cert"],
        "-key", pem_files["key"], "-www", "-naccept", "1",
    ]
    server = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              env=client_env)

    def connect() -> Any:
        for _ in range(100):  # until s_server listens
            sock = socket.socket()
            sock.setblocking(False)
            try:
                yield aioc.ConnectEvent(sock, ("127.0.0.1", port))
                return sock
            except ConnectionRefusedError:
                sock.close()
                yield aioc.Sleep(0.05)
        raise AssertionError("openssl s_server did not start")

    def main() -> Any:
        sock = yield from connect()
        try:
            layer = yield from tls.handshake(sock, client_context, server_side=False, server_hostname="localhost")
            yield from layer.send(b"GET / HTTP/1.0\r\n\r\n")
            page = yield from receive_until_end(layer)
            yield from layer.close()
        finally:
            sock.close()
        return page

    try:
        page = runner.complete(main(), limit=15)
    finally:
        server.kill()
        server.communicate(timeout=5)
    assert page.startswith(b"HTTP/1.0 200 ok")
    assert b"TLSv1.3" in page or b"TLSv1.2" in page


def test_receives_cut_short_by_deadlines_lose_nothing(loop, runner, tcp_pair, server_context, client_context):
    """Deadlines land at every point of a receive; every byte still arrives, in order."""
    client, server = tcp_pair()
    records = [b"record %03d;" % i for i in range(200)]

    def sender(layer: tls.TLSLayer) -> Any:
        for record in records:
            yield from layer.send(record)
            yield aioc.Sleep(0)

    def main() -> Any:
        server_task = yield aioc.Spawn(tls.handshake(server, server_context, server_side=True))
        layer = yield from tls.handshake(client, client_context, server_side=False, server_hostname="localhost")
        server_layer = yield aioc.Join(server_task)
        send_task = yield aioc.Spawn(sender(server_layer))
        wanted = sum(map(len, records))
        received = b""
        while len(received) < wanted:
            chunk = yield from aioc.ignore_after(0.0002, layer.receive(7))
            received += chunk or b""
        yield aioc.Join(send_task)
        return received

    assert runner.complete(main(), limit=20) == b"".join(records)


# -- start_tls: a Stream over the layer ------------------------------------------------------


def test_start_tls_gives_a_stream_that_reads_lines_across_records(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()
    server_context.set_alpn_protocols(["lines/1"])
    client_context.set_alpn_protocols(["lines/1"])

    def python_client() -> bytes:
        with client_context.wrap_socket(blocking(client), server_hostname="localhost") as conn:
            conn.sendall(b"one\ntwo\nthree\n")  # one record, three lines
            for piece in (b"fo", b"u", b"r\n"):  # one line, three records
                conn.sendall(piece)
            return recv_all(conn)

    def main() -> Any:
        stream = yield from tls.start_tls(server, server_context, server_side=True)
        assert isinstance(stream, aioc.Stream) and stream.tls.selected_alpn_protocol() == "lines/1"
        lines = []
        for _ in range(4):
            lines.append((yield from stream.readline()))
        for line in lines:
            yield from stream.write(line.upper())
        yield from stream.close()  # close_notify, then the socket
        return lines, server.fileno()

    peer = Peer(python_client)
    lines, fd = runner.complete(main())
    assert lines == [b"one\n", b"two\n", b"three\n", b"four\n"] and fd == -1
    assert peer.outcome() == b"ONE\nTWO\nTHREE\nFOUR\n"


def test_start_tls_on_both_ends(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()

    async def serve() -> None:
        stream = await tls.start_tls(server, server_context, server_side=True)
        async with stream:
            while line := await stream.readline():
                await stream.write(b"> " + line)

    def main() -> Any:
        server_task = yield aioc.Spawn(serve())
        stream = yield from tls.start_tls(client, client_context, server_side=False, server_hostname="localhost")
        yield from stream.write(b"a\nb\n")
        replies = [(yield from stream.readline()), (yield from stream.readline())]
        yield from stream.close()
        yield aioc.Join(server_task)
        return replies

    assert runner.complete(main()) == [b"> a\n", b"> b\n"]


def test_write_eof_over_tls_1_3_lets_the_peer_answer(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()

    def serve() -> Any:
        stream = yield from tls.start_tls(server, server_context, server_side=True)
        request = bytearray()
        while chunk := (yield from stream.read()):  # until close_notify
            request += chunk
        yield from stream.write(b"got %d bytes\n" % len(request))
        yield from stream.close()

    def main() -> Any:
        server_task = yield aioc.Spawn(serve())
        stream = yield from tls.start_tls(client, client_context, server_side=False, server_hostname="localhost")
        yield from stream.write(b"x" * 100_000)
        yield from stream.write_eof()
        reply = yield from stream.readline()
        with pytest.raises(BrokenPipeError):
            yield from stream.write(b"more")
        yield from stream.close()
        yield aioc.Join(server_task)
        return stream.tls.version(), reply

    assert runner.complete(main()) == ("TLSv1.3", b"got 100000 bytes\n")


def test_tls_1_2_sessions_work_too(loop, runner, tcp_pair, server_context, client_context):
    client, server = tcp_pair()
    client_context.maximum_version = ssl.TLSVersion.TLSv1_2

    def serve() -> Any:
        stream = yield from tls.start_tls(server, server_context, server_side=True)
        line = yield from stream.readline()
        yield from stream.write(line * 3)
        yield from stream.close()

    def main() -> Any:
        server_task = yield aioc.Spawn(serve())
        stream = yield from tls.start_tls(client, client_context, server_side=False, server_hostname="localhost")
        yield from stream.write(b"old\n")
        reply = yield from stream.read_exactly(12)
        end = yield from stream.read()
        version = stream.tls.version()
        yield from stream.close()
        yield aioc.Join(server_task)
        return version, reply, end

    assert runner.complete(main()) == ("TLSv1.2", b"old\nold\nold\n", b"")
