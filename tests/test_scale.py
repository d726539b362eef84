"""Many concurrent loopback TCP connections (not on select: it stops at fd 1024)."""

from __future__ import annotations

import socket
import time

import pytest

CONNECTIONS = 5000
#: Connections launched but not yet accepted, at most: keeps the accept queue
#: (somaxconn) from overflowing, which would cost SYN retransmits of 1 s.
WINDOW = 1000


def test_5000_concurrent_connections(aio, loop, backend, runner, fd_limit):
    if backend == "select":
        pytest.skip("select cannot watch file descriptors above 1024")
    fd_limit.at_least(2 * CONNECTIONS + 1000)
    all_socks: list[socket.socket] = []
    lsock = socket.socket()
    all_socks.append(lsock)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4096)
    address = lsock.getsockname()
    state = {"accepted": 0, "launched": 0, "served": 0, "open": 0, "peak": 0, "connected": 0}
    replies: list[bool] = []

    def all_served():
        while state["served"] < CONNECTIONS:
            yield aio.Sleep(0.005)

    barrier = loop.call_soon(all_served())

    def handle(conn):
        state["open"] += 1
        state["peak"] = max(state["peak"], state["open"])
        line = b""
        while not line.endswith(b"\n"):
            chunk = yield aio.ReadEvent(conn)
            if not chunk:
                break
            line += chunk
        yield from aio.sendall(conn, line)
        state["served"] += 1
        yield aio.Join(barrier)  # hold every connection open until all are served
        state["open"] -= 1
        conn.close()  # the server closes first: TIME_WAIT stays on its side

    def server():
        for _ in range(CONNECTIONS):
            conn, _ = yield aio.AcceptEvent(lsock)
            all_socks.append(conn)
            state["accepted"] += 1
            loop.call_soon(handle(conn))

    def client(i):
        sock = socket.socket()
        all_socks.append(sock)
        yield aio.ConnectEvent(sock, address)
        state["connected"] += 1
        line = b"client %d\n" % i
        yield from aio.sendall(sock, line)
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = yield aio.ReadEvent(sock)
            if not chunk:
                break
            reply += chunk
        replies.append(reply == line)
        eof = yield aio.ReadEvent(sock)
        sock.close()
        return eof

    def launcher():
        clients = []
        while state["launched"] < CONNECTIONS:
            while state["launched"] - state["accepted"] >= WINDOW:
                yield aio.Sleep(0)
            for _ in range(min(100, CONNECTIONS - state["launched"])):
                clients.append(loop.call_soon(client(state["launched"])))
                state["launched"] += 1
            yield aio.Sleep(0)
        for c in clients:
            assert (yield aio.Join(c)) == b""
        return len(clients)

    srv = loop.call_soon(server())
    start = time.monotonic()
    try:
        assert runner.complete(launcher(), limit=30) == CONNECTIONS
        elapsed = time.monotonic() - start
        runner.forever()
    finally:
        for sock in all_socks:
            sock.close()
        fd_limit.restore()
    assert srv.result() is None
    assert state["connected"] == CONNECTIONS
    assert state["accepted"] == CONNECTIONS
    assert state["served"] == CONNECTIONS
    assert len(replies) == CONNECTIONS and all(replies)
    assert state["peak"] == CONNECTIONS  # the server held them all open at once
    assert state["open"] == 0
    assert elapsed < 20
