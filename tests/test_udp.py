"""Datagram events: ``RecvFrom`` and ``SendTo`` over loopback UDP and Unix datagram sockets."""

from __future__ import annotations

import collections
import os
import socket
from typing import Any

import pytest

from aioc.events import timeout_after


def udp_socket(sockets: list[socket.socket], family: int = socket.AF_INET, host: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sockets.append(sock)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


def has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def link_local_address() -> tuple[str, int] | None:
    """An IPv6 link-local address of this host and its interface index, if one exists."""
    try:
        with open("/proc/net/if_inet6") as table:
            rows = [line.split() for line in table]
    except OSError:
        return None
    for hexaddr, index, _, scope, _, _ in rows:
        if scope == "20":  # link scope
            host = socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hexaddr))
            return host, int(index, 16)
    return None


# -- round trips ------------------------------------------------------------------


def test_round_trip_over_ipv4(aio, runner, sockets):
    server, client = udp_socket(sockets), udp_socket(sockets)

    def echo_once():
        data, address = yield aio.RecvFrom(server, 100)
        sent = yield aio.SendTo(server, data.upper(), address)
        return sent, address

    async def ask():
        sent = await aio.SendTo(client, b"ping", server.getsockname())
        reply = await aio.RecvFrom(client, 100)
        return sent, reply

    def main():
        echo = yield aio.Spawn(echo_once())
        asked = yield aio.Spawn(ask())
        return (yield aio.Join(echo)), (yield aio.Join(asked))

    (echo_sent, seen_from), (sent, reply) = runner.complete(main())
    assert sent == 4 and echo_sent == 4
    assert seen_from == client.getsockname()
    assert reply == (b"PING", server.getsockname())


@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback")
def test_round_trip_over_ipv6(aio, runner, sockets):
    server = udp_socket(sockets, socket.AF_INET6, "::1")
    client = udp_socket(sockets, socket.AF_INET6, "::1")

    def main():
        yield aio.SendTo(client, b"six", server.getsockname()[:2])
        data, address = yield aio.RecvFrom(server)
        yield aio.SendTo(server, data * 2, address)
        return address, (yield aio.RecvFrom(client))

    address, reply = runner.complete(main())
    assert address == client.getsockname()  # (host, port, flowinfo, scope_id), as the socket module gives it
    assert reply == (b"sixsix", server.getsockname())


@pytest.mark.skipif(link_local_address() is None, reason="no IPv6 link-local address")
def test_a_link_local_sender_has_its_scope_id(aio, runner, sockets):
    host, index = link_local_address()  # type: ignore[misc]
    try:
        server = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        sockets.append(server)
        server.bind((host, 0, 0, index))
    except OSError as exc:
        pytest.skip(f"cannot bind the link-local address: {exc}")
    client = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    sockets.append(client)
    client.bind((host, 0, 0, index))
    client.sendto(b"x", server.getsockname())
    expected = server.recvfrom(10)  # what the socket module itself says

    def main():
        yield aio.SendTo(client, b"x", server.getsockname())
        return (yield aio.RecvFrom(server, 10))

    assert runner.complete(main()) == expected
    assert expected[1][3] == index


def test_a_named_tuple_address_is_a_tuple(aio, runner, sockets):
    server, client = udp_socket(sockets), udp_socket(sockets)
    Address = collections.namedtuple("Address", "host port")

    def main():
        yield aio.SendTo(client, b"named", Address(*server.getsockname()))
        return (yield aio.RecvFrom(server))[0]

    assert runner.complete(main()) == b"named"


def test_a_host_name_is_resolved_by_the_socket_module(aio, runner, sockets):
    server, client = udp_socket(sockets), udp_socket(sockets)

    def main():
        sent = yield aio.SendTo(client, b"named", ("localhost", server.getsockname()[1]))
        return sent, (yield aio.RecvFrom(server))

    sent, (data, address) = runner.complete(main())
    assert (sent, data, address) == (5, b"named", client.getsockname())


def test_bytes_like_data_is_sent_as_one_datagram(aio, runner, sockets):
    server, client = udp_socket(sockets), udp_socket(sockets)
    target = server.getsockname()

    def main():
        counts = []
        for data in (bytearray(b"array"), memoryview(b"--view--")[2:6], b""):
            counts.append((yield aio.SendTo(client, data, target)))
        received = []
        for _ in range(3):
            received.append((yield aio.RecvFrom(server))[0])
        return counts, received

    assert runner.complete(main()) == ([5, 4, 0], [b"array", b"view", b""])


def test_unix_datagram_sockets(aio, runner, sockets, tmp_path):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sockets.extend((server, client))
    server.bind(str(tmp_path / "server"))
    client.bind(str(tmp_path / "client"))

    def main():
        yield aio.SendTo(client, b"local", str(tmp_path / "server"))
        data, address = yield aio.RecvFrom(server)
        yield aio.SendTo(server, data[::-1], address)
        return address, (yield aio.RecvFrom(client))

    address, reply = runner.complete(main())
    assert address == str(tmp_path / "client")
    with pytest.raises(TypeError, match="AF_UNIX socket must be a str or bytes path, got PosixPath"):
        aio.SendTo(client, b"", tmp_path / "server")
    assert reply == (b"lacol", str(tmp_path / "server"))


def test_recvfrom_on_a_stream_socket_gives_no_address(aio, runner, tcp_pair):
    client, server = tcp_pair()

    def main():
        client.send(b"stream")
        return (yield aio.RecvFrom(server, 100))

    assert runner.complete(main()) == (b"stream", None)


# -- sizes and counts ---------------------------------------------------------------


def test_a_longer_datagram_is_truncated_as_recvfrom_does(aio, runner, sockets):
    server, client = udp_socket(sockets), udp_socket(sockets)

    def main():
        yield aio.SendTo(client, b"0123456789abcdef", server.getsockname())
        yield aio.SendTo(client, b"next", server.getsockname())
        first = yield aio.RecvFrom(server, 10)
        second = yield aio.RecvFrom(server, 10)
        return first[0], second[0]

    # The rest of the first datagram is discarded; the next one is whole.
    assert runner.complete(main()) == (b"0123456789", b"next")


def test_a_size_beyond_the_loops_buffer(aio, runner, sockets):
    server, client = udp_socket(sockets), udp_socket(sockets)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 18)
    payload = os.urandom(60000)

    def main():
        yield aio.SendTo(client, payload, server.getsockname())
        return (yield aio.RecvFrom(server, 100000))[0]

    assert runner.complete(main()) == payload


def test_many_datagrams_through_an_echo_server(aio, loop, runner, sockets):
    server, client = udp_socket(sockets), udp_socket(sockets)
    rounds, burst = 300, 40

    def echo():
        while True:
            data, address = yield aio.RecvFrom(server, 64)
            if data == b"stop":
                return
            yield aio.SendTo(server, data, address)

    def ask():
        replies = []
        for i in range(rounds):
            yield aio.SendTo(client, b"%d" % i, server.getsockname())
            replies.append((yield aio.RecvFrom(client, 64))[0])
        # A burst the socket buffers hold: every datagram comes back, in order.
        for i in range(burst):
            yield aio.SendTo(client, b"b%d" % i, server.getsockname())
        for _ in range(burst):
            replies.append((yield aio.RecvFrom(client, 64))[0])
        yield aio.SendTo(client, b"stop", server.getsockname())
        return replies

    loop.call_soon(echo())
    replies = runner.complete(ask())
    assert replies == [b"%d" % i for i in range(rounds)] + [b"b%d" % i for i in range(burst)]


# -- waiting ------------------------------------------------------------------------


def test_recvfrom_waits_for_a_datagram(aio, loop, runner, sockets):
    server, client = udp_socket(sockets), udp_socket(sockets)
    trace = []

    def reader():
        trace.append("waiting")
        trace.append((yield aio.RecvFrom(server))[0])

    def writer():
        yield aio.Sleep(0.01)
        trace.append("sending")
        yield aio.SendTo(client, b"late", server.getsockname())

    loop.call_soon(reader())
    loop.call_soon(writer())
    runner.forever()
    assert trace == ["waiting", "sending", b"late"]


def fill_unix_datagrams(sock: socket.socket, target: str) -> int:
    count = 0
    try:
        while True:
            sock.sendto(b"x" * 512, target)
            count += 1
    except BlockingIOError:
        return count


def test_sendto_waits_while_the_peer_queue_is_full(aio, loop, runner, tmp_path, sockets):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sockets.extend((receiver, sender))
    target = str(tmp_path / "receiver")
    receiver.bind(target)
    sender.setblocking(False)
    receiver.setblocking(False)
    queued = fill_unix_datagrams(sender, target)
    trace = []

    def send():
        trace.append("sending")
        trace.append((yield aio.SendTo(sender, b"last", target)))

    def drain():
        yield aio.Sleep(0.01)
        trace.append("draining")
        for _ in range(queued):
            yield aio.RecvFrom(receiver)
        trace.append((yield aio.RecvFrom(receiver))[0])

    loop.call_soon(send())
    loop.call_soon(drain())
    runner.forever()
    assert trace[:2] == ["sending", "draining"]
    assert sorted(trace[2:], key=str) == [4, b"last"]


def test_closing_the_socket_under_a_waiting_recvfrom(aio, loop, runner, sockets):
    server = udp_socket(sockets)

    def reader():
        yield aio.RecvFrom(server)

    def closer():
        yield aio.Sleep(0.01)
        loop.close_socket(server)

    task = loop.call_soon(reader())
    loop.call_soon(closer())
    runner.forever()
    assert isinstance(task.exception(), aio.ClosedResourceError)


def test_closing_the_socket_under_a_waiting_sendto(aio, loop, runner, tmp_path, sockets):
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sockets.extend((receiver, sender))
    target = str(tmp_path / "receiver")
    receiver.bind(target)
    sender.setblocking(False)
    fill_unix_datagrams(sender, target)

    def send():
        yield aio.SendTo(sender, b"never", target)

    def closer():
        yield aio.Sleep(0.01)
        loop.close_socket(sender)

    task = loop.call_soon(send())
    loop.call_soon(closer())
    runner.forever()
    assert isinstance(task.exception(), aio.ClosedResourceError)


def test_an_already_closed_socket_raises_in_the_task(aio, runner, sockets):
    sock = udp_socket(sockets)
    target = sock.getsockname()
    sock.close()

    def recv():
        yield aio.RecvFrom(sock)

    def send():
        yield aio.SendTo(sock, b"x", target)

    for coro in (recv(), send()):
        with pytest.raises((OSError, ValueError)):
            runner.complete(coro)


# -- timeouts -----------------------------------------------------------------------


def test_timeout_after_bounds_a_recvfrom_and_the_socket_stays_usable(aio, runner, sockets):
    server, client = udp_socket(sockets), udp_socket(sockets)

    def wait_for_one():
        return (yield aio.RecvFrom(server))

    def main():
        try:
            yield from timeout_after(0.02, wait_for_one())
        except TimeoutError:
            outcome = "timed out"
        try:
            yield aio.Timeout(aio.RecvFrom(server), 0.02)
        except TimeoutError:
            outcome += " twice"
        yield aio.SendTo(client, b"after", server.getsockname())
        return outcome, (yield from timeout_after(5.0, wait_for_one()))

    assert runner.complete(main()) == ("timed out twice", (b"after", client.getsockname()))


# -- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        (lambda aio, s: aio.RecvFrom(s, -1), ValueError, "max_bytes must be between 1 and"),
        (lambda aio, s: aio.RecvFrom(s, 0), ValueError, "max_bytes must be between 1 and"),
        (lambda aio, s: aio.RecvFrom(s, "10"), TypeError, "max_bytes must be an int, got str"),
        (lambda aio, s: aio.RecvFrom(s, True), TypeError, "max_bytes must be an int, got bool"),
        (lambda aio, s: aio.SendTo(s, "text", ("127.0.0.1", 9)), TypeError, "bytes-like"),
        (lambda aio, s: aio.SendTo(s, None, ("127.0.0.1", 9)), TypeError, "bytes-like"),
        (lambda aio, s: aio.SendTo(s, b"x", "127.0.0.1:9"), TypeError, r"AF_INET socket must be a tuple \(host, port\)"),
        (lambda aio, s: aio.SendTo(s, b"x", ("127.0.0.1",)), TypeError, "AF_INET socket must be a tuple"),
        (lambda aio, s: aio.SendTo(s, b"x", ("127.0.0.1", "9")), TypeError, "of a str and ints"),
        (lambda aio, s: aio.SendTo(s, b"x", (b"127.0.0.1", 9)), TypeError, "of a str and ints"),
        (lambda aio, s: aio.SendTo(s, b"x", ("127.0.0.1", 70000)), ValueError, "port must be between 0 and 65535"),
        (lambda aio, s: aio.SendTo(s, b"x", ("127.0.0.1", -1)), ValueError, "port must be between 0 and 65535"),
    ],
)
def test_bad_input_fails_only_the_task_that_made_it(aio, loop, runner, sockets, make, error, message):
    sock, peer = udp_socket(sockets), udp_socket(sockets)

    def bad():
        yield make(aio, sock)

    def good():
        yield aio.SendTo(peer, b"fine", sock.getsockname())
        return (yield aio.RecvFrom(sock))[0]

    failing = loop.call_soon(bad())
    working = loop.call_soon(good())
    runner.forever()
    with pytest.raises(error, match=message):
        failing.result()
    assert working.result() == b"fine"


def test_assigned_fields_are_checked_as_the_constructor_checks_them(aio, sockets):
    sock = udp_socket(sockets)
    recv = aio.RecvFrom(sock, 10)
    with pytest.raises(ValueError, match="max_bytes"):
        recv.max_bytes = 0
    recv.max_bytes = 20
    assert recv.max_bytes == 20
    send = aio.SendTo(sock, b"x", ("127.0.0.1", 9))
    with pytest.raises(TypeError):
        send.data = "text"
    with pytest.raises(TypeError, match="AF_INET socket must be a tuple"):
        send.address = "nowhere"
    send.data, send.address = bytearray(b"yz"), ("127.0.0.2", 10)
    assert bytes(send.data) == b"yz" and send.address == ("127.0.0.2", 10)


def test_an_ipv6_address_shape(aio, sockets):
    if not has_ipv6_loopback():
        pytest.skip("no IPv6 loopback")
    sock = udp_socket(sockets, socket.AF_INET6, "::1")
    for good in (("::1", 9), ("::1", 9, 0), ("::1", 9, 0, 0)):
        assert aio.SendTo(sock, b"", good).address == good
    for bad in (("::1",), ("::1", 9, 0, 0, 0), ["::1", 9], ("::1", 9, "0")):
        with pytest.raises(TypeError, match="AF_INET6 socket must be a tuple"):
            aio.SendTo(sock, b"", bad)


def test_both_loops_word_errors_alike(sockets):
    from aioc import _loop_py

    compiled: Any = pytest.importorskip("aioc._loop_c")
    sock = udp_socket(sockets)
    for args in ((sock, -5), (sock, 1.5)):
        messages = []
        for module in (_loop_py, compiled):
            with pytest.raises(Exception) as info:
                module.RecvFrom(*args)
            messages.append((type(info.value), str(info.value)))
        assert messages[0] == messages[1]
