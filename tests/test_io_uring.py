"""What the io_uring backend had to get right, held on every loop and backend.

io_uring's polls are requests that hold their file and complete on their own
time, unlike epoll's registrations: closing a socket must not leave a poll
keeping it open, a poll removed or replaced may still complete, the
completion queue may fill up.  The rules below hold on every backend; the
tests that only make sense on io_uring (its ring, its availability) say so.
"""

from __future__ import annotations

import gc
import os
import resource
import socket
import struct
import sys
import threading
import time

import pytest

from aioc import _env, _loop_py

try:
    from aioc import _loop_c
except ImportError:
    if _env.require_extensions():
        raise
    _loop_c = None

needs_io_uring = pytest.mark.skipif(
    _loop_c is None or "io_uring" not in _loop_c.available_backends(), reason="io_uring is not available here"
)


def _peer_sees_eof(sock: socket.socket) -> bool:
    sock.settimeout(2.0)
    try:
        return sock.recv(10) == b""
    except (ConnectionResetError, TimeoutError):
        return False


# -- polls must not keep a closed socket open ------------------------------------------------


def test_close_socket_closes_the_file_while_a_task_waited_on_it(aio, loop, runner, tcp_pair):
    client, server = tcp_pair()

    def reader():
        try:
            yield aio.ReadEvent(server)
        except aio.ClosedResourceError:
            return "closed"

    def main():
        task = yield aio.Spawn(reader())
        yield aio.Sleep(0.01)  # the reader waits: a poll is in flight on io_uring
        loop.close_socket(server)
        # Before the loop polls again: the peer must already see the close.
        client.setblocking(True)
        eof = _peer_sees_eof(client)
        return eof, (yield aio.Join(task))

    assert runner.complete(main()) == (True, "closed")


def test_a_socket_closed_after_its_waiter_left_is_really_closed(aio, loop, runner, tcp_pair):
    client, server = tcp_pair()

    def main():
        try:
            yield aio.Timeout(aio.ReadEvent(server), 0.02)
        except TimeoutError:
            pass
        server.close()  # directly: nobody waits on it any more
        yield aio.Sleep(0.01)  # a pass, where io_uring submits the poll's removal
        client.setblocking(True)
        return _peer_sees_eof(client)

    assert runner.complete(main()) is True


def test_a_reused_fd_number_gets_the_new_sockets_data(aio, loop, runner, socketpair):
    old, old_peer = socketpair()
    number = old.fileno()

    def main():
        try:
            yield aio.Timeout(aio.ReadEvent(old), 0.02)
        except TimeoutError:
            pass
        old_peer.send(b"stale")  # for the old file, which nobody reads any more
        old.close()
        new, new_peer = socketpair()
        if new.fileno() != number:
            new, new_peer = new_peer, new
        new_peer.send(b"fresh")
        data = yield aio.Timeout(aio.ReadEvent(new), 2.0)
        new_peer.send(b"second")
        return data, (yield aio.Timeout(aio.ReadEvent(new), 2.0))

    assert runner.complete(main()) == (b"fresh", b"second")


def test_a_reader_and_a_writer_on_one_socket_both_wake(aio, loop, runner, socketpair):
    a, b = socketpair()
    sent = 0
    while True:  # fill a's buffer, so that the writer must wait
        try:
            sent += a.send(b"x" * 65536)
        except BlockingIOError:
            break

    def reader():
        return (yield aio.Timeout(aio.ReadEvent(a, 5), 2.0))

    def drain_later():
        yield aio.Sleep(0.01)
        left = sent
        while left > 0:
            left -= len((yield aio.ReadEvent(b)))
        b.send(b"hello")

    def main():
        read = yield aio.Spawn(reader())
        yield aio.Spawn(drain_later())
        wrote = yield aio.Timeout(aio.SendAll(a, b"y" * 100_000), 2.0)
        return wrote, (yield aio.Join(read))

    assert runner.complete(main()) == (100_000, b"hello")


# -- many completions at once ---------------------------------------------------------------


def _echo_many(aio, loop, runner, socketpair, count):
    pairs = [socketpair() for _ in range(count)]

    def reader(sock):
        return (yield aio.ReadEvent(sock, 10))

    def main():
        tasks = []
        for a, _ in pairs:
            tasks.append((yield aio.Spawn(reader(a))))
        yield aio.Sleep(0.01)  # everyone waits
        for index, (_, b) in enumerate(pairs):
            b.send(str(index).encode())
        results = []
        for task in tasks:
            results.append((yield aio.Join(task)))
        return results

    return runner.complete(main()) == [str(index).encode() for index in range(count)]


def test_a_burst_of_readiness_reaches_every_waiter(aio, loop, runner, socketpair):
    assert _echo_many(aio, loop, runner, socketpair, 300)


@needs_io_uring
def test_a_completion_queue_too_small_for_the_burst_loses_nothing(socketpair, fd_limit):
    # 8 CQ entries for 300 completions: the kernel keeps the overflow aside
    # (IORING_FEAT_NODROP) and the backend reaps it in later passes.  And 2
    # recv buffers for 300 readers: the recvs that find none (ENOBUFS) are
    # submitted again once the buffers are back.
    previous = _loop_c._set_io_uring_ring_size(4, 8, 2)
    try:
        loop = _loop_c.EventLoop(backend="io_uring")
    finally:
        _loop_c._set_io_uring_ring_size(*previous)
    with loop:
        from conftest import Runner

        assert _echo_many(_loop_c, loop, Runner(loop), socketpair, 300)


# -- availability ----------------------------------------------------------------------------


def test_the_pure_loop_has_no_io_uring():
    assert "io_uring" not in _loop_py.available_backends()
    with pytest.raises(ValueError, match="unknown or unavailable backend 'io_uring'"):
        _loop_py.EventLoop(backend="io_uring")


@needs_io_uring
def test_io_uring_is_offered_last_never_by_default():
    backends = _loop_c.available_backends()
    assert backends[-1] == "io_uring"
    with _loop_c.EventLoop() as loop:
        assert loop.backend == backends[0] != "io_uring"


@needs_io_uring
def test_another_thread_wakes_an_io_uring_loop():
    """A task handed over from another thread runs while the loop is blocked
    in io_uring_enter on a long sleep, not when that sleep ends."""
    done = []
    running = threading.Event()

    def job():
        done.append(True)
        loop.stop()
        yield from ()

    def idle():
        running.set()
        yield _loop_c.Sleep(30)

    def wake():
        running.wait(10)
        time.sleep(0.05)  # most likely blocked by now; if not, the wake-up is still pending
        loop.call_soon_threadsafe(job())

    with _loop_c.EventLoop(backend="io_uring") as loop:
        sleeper = loop.call_soon(idle())
        waker = threading.Thread(target=wake)
        waker.start()
        loop.run_forever()
        waker.join()
        assert done == [True]
        assert not sleeper.done()  # woken, not timed out


REFUSED = """
import os, resource
from aioc import _loop_c
# No descriptor left for a ring: io_uring_setup fails as seccomp would make it.
open_now = len(os.listdir("/proc/self/fd")) - 1  # less the listing's own
resource.setrlimit(resource.RLIMIT_NOFILE, (open_now, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
print(_loop_c.available_backends())
try:
    _loop_c.EventLoop(backend="io_uring")  # refused before it needs any descriptor
except ValueError as exc:
    print(exc)
"""


@needs_io_uring
def test_io_uring_refused_at_run_time_is_not_offered_and_asking_says_why():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", REFUSED], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    offered, refusal = result.stdout.splitlines()
    assert "io_uring" not in offered
    assert refusal.startswith("the io_uring backend is unavailable here: io_uring_setup failed")


# -- reads and sends the kernel does itself (io_uring's completion I/O) ----------------------


def test_a_peer_reset_reaches_the_reader_waiting_for_it(aio, loop, runner, tcp_pair):
    client, server = tcp_pair()

    def reader():
        try:
            yield aio.ReadEvent(server)
        except ConnectionResetError:
            return "reset"

    def main():
        task = yield aio.Spawn(reader())
        yield aio.Sleep(0.01)  # the receive is in flight
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # with a zero linger: RST
        return (yield aio.Join(task))

    assert runner.complete(main()) == "reset"


def test_bytes_a_cancelled_reader_did_not_take_go_to_the_next_reader(aio, loop, runner, socketpair):
    a, b = socketpair()

    def impatient():
        # A deadline on the task (not a Timeout event): the built-in ReadEvent
        # itself waits, as a receive in flight on io_uring.
        return (yield from aio.timeout_after(0.02, read_once()))

    def read_once():
        return (yield aio.ReadEvent(a, 100))

    def main():
        try:
            yield from impatient()
        except TimeoutError:
            pass
        b.send(b"first")  # races the cancel of the receive, on io_uring
        b.send(b"second")
        got = b""
        while len(got) < len(b"firstsecond"):
            got += yield aio.Timeout(aio.ReadEvent(a, 3), 2.0)
        return got

    assert runner.complete(main()) == b"firstsecond"


def test_a_reader_cancelled_while_data_arrives_loses_none_of_it(aio, loop, runner, socketpair):
    a, b = socketpair()

    def reader():
        return (yield aio.ReadEvent(a, 100))

    def main():
        received = []
        for round in range(50):
            task = yield aio.Spawn(reader())
            yield aio.Sleep(0)  # it waits
            b.send(b"%d," % round)
            task.cancel()  # the data and the cancel reach the kernel in the same pass
            try:
                yield aio.Join(task)
            except aio.Cancelled:
                pass
            received.append((yield aio.Timeout(aio.ReadEvent(a, 100), 2.0)))
        return received

    assert runner.complete(main()) == [b"%d," % round for round in range(50)]


def test_cancelling_a_task_with_a_send_in_flight_releases_its_data(aio, loop, runner, socketpair):
    a, b = socketpair()
    data = bytearray(b"z" * 1_000_000)
    baseline = sys.getrefcount(data)

    def sender():
        yield aio.SendAll(a, data)

    def main():
        task = yield aio.Spawn(sender())
        yield aio.Sleep(0.01)  # the buffer filled: the rest of the send is in flight
        task.cancel()
        try:
            yield aio.Join(task)
        except aio.Cancelled:
            pass
        drained = 0
        b.setblocking(True)
        b.settimeout(0.2)
        try:
            while True:  # the peer takes what was sent, nothing more comes
                chunk = b.recv(1 << 20)
                if not chunk:
                    break
                drained += len(chunk)
        except TimeoutError:
            pass
        yield aio.Sleep(0.01)  # a pass, where the cancelled send's completion arrives
        del task
        gc.collect()
        return drained

    drained = runner.complete(main())
    assert 0 < drained < len(data)
    assert sys.getrefcount(data) == baseline  # no op holds it any more
    data.append(0)  # and no buffer view pins it either


def test_a_short_send_in_flight_finishes_with_the_rest(aio, loop, runner, socketpair):
    a, b = socketpair()
    payload = bytes(range(256)) * 4000  # more than the socket buffers hold

    def reader():
        got = bytearray()
        yield aio.Sleep(0.01)  # the send waits, partly done
        while len(got) < len(payload):
            got += yield aio.Timeout(aio.ReadEvent(b), 2.0)
        return bytes(got)

    def main():
        read = yield aio.Spawn(reader())
        sent = yield aio.Timeout(aio.SendAll(a, memoryview(payload)), 5.0)
        return sent, (yield aio.Join(read))

    assert runner.complete(main()) == (len(payload), payload)


class WaitsReadable:
    """Waits by readiness on ``sock``, as an event defined outside aioc does."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def _yield(self, loop, task):
        loop.wait_readable(self.sock.fileno(), self, task, self.sock)

    def _resume(self, loop, task):
        loop.reschedule(task, self.sock.recv(65536))


def test_a_reader_that_turns_to_readiness_finds_the_next_bytes_in_the_socket(aio, loop, runner, socketpair):
    """ReadEvents, then a reader that waits by readiness and calls recv
    itself (as a TLS layer started on a plain connection does): the loop
    took no bytes from the socket that nobody had asked for."""
    a, b = socketpair()

    def main():
        got = []
        for chunk in (b"one", b"two"):
            b.send(chunk)
            got.append((yield aio.Timeout(aio.ReadEvent(a), 2.0)))
        b.send(b"three")
        got.append((yield aio.Timeout(WaitsReadable(a), 2.0)))
        return got

    assert runner.complete(main()) == [b"one", b"two", b"three"]


def test_readers_waiting_beside_sends_in_flight_leave_the_sends_alone(aio, loop, runner, socketpair):
    """Both ends send 4 MiB while they read, one end's reader waiting by
    readiness: every byte arrives once and in order.  (On io_uring a send
    the socket could not take at once is the kernel's; a poll armed for the
    reader beside it once woke the sender, which sent its bytes again.)"""
    a, b = socketpair()
    size, chunk = 4 << 20, 1 << 20
    to_b, to_a = bytes(range(251)) * (size // 251), bytes(range(250, -1, -1)) * (size // 251)

    def sender(sock, data):
        for start in range(0, len(data), chunk):
            yield aio.Timeout(aio.SendAll(sock, data[start : start + chunk]), 5.0)

    def receiver(sock, event, size):
        got = bytearray()
        while len(got) < size:
            got += yield aio.Timeout(event(sock), 5.0)
        return bytes(got)

    def main():
        senders = [(yield aio.Spawn(sender(a, to_b))), (yield aio.Spawn(sender(b, to_a)))]
        at_b = yield aio.Spawn(receiver(b, lambda sock: aio.ReadEvent(sock, 65536), len(to_b)))
        at_a = yield from receiver(a, WaitsReadable, len(to_a))
        for task in senders:
            yield aio.Join(task)
        return at_a == to_a, (yield aio.Join(at_b)) == to_b

    assert runner.complete(main(), limit=20) == (True, True)


TEN_THOUSAND_CLIENTS = """
import socket, sys
port, count = int(sys.argv[1]), int(sys.argv[2])
socks = []
for i in range(count):
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"client %d\\n" % i)
    socks.append(sock)
for i, sock in enumerate(socks):
    reply = b""
    while not reply.endswith(b"\\n"):
        chunk = sock.recv(100)
        assert chunk, i
        reply += chunk
    assert reply == b"client %d\\n" % i, reply
for sock in socks:
    sock.close()
print("ok")
"""


@needs_io_uring
def test_10000_concurrent_connections_on_io_uring(fd_limit, sockets):
    # The clients live in a child: 10,000 connections are 20,000 fds.
    import subprocess
    import sys

    count = 10_000
    fd_limit.at_least(count + 500)
    lsock = socket.socket()
    sockets.append(lsock)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4096)
    served = []

    def handle(conn):
        line = b""
        while not line.endswith(b"\n"):
            chunk = yield _loop_c.ReadEvent(conn)
            if not chunk:
                break
            line += chunk
        yield from _loop_c.sendall(conn, line)
        served.append(conn)  # held open until every client is served

    def server():
        for _ in range(count):
            conn, _ = yield _loop_c.AcceptEvent(lsock)
            loop.call_soon(handle(conn))

    child = subprocess.Popen(
        [sys.executable, "-c", TEN_THOUSAND_CLIENTS, str(lsock.getsockname()[1]), str(count)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (count + 500, fd_limit.hard)),
    )
    try:
        with _loop_c.EventLoop(backend="io_uring") as loop:
            from conftest import Runner

            Runner(loop).complete(server(), limit=60)
            Runner(loop).forever(limit=60)
        out, err = child.communicate(timeout=60)
    finally:
        child.kill()
        for conn in served:
            conn.close()
    assert child.returncode == 0, err
    assert out.strip() == "ok"
    assert len(served) == count


@needs_io_uring
def test_an_io_uring_loop_refuses_clearly_to_run_in_a_second_thread():
    def nap():
        yield _loop_c.Sleep(0.001)

    with _loop_c.EventLoop(backend="io_uring") as loop:
        loop.run_until_complete(nap())
        errors = []

        def elsewhere():
            try:
                loop.run_until_complete(nap())
            except RuntimeError as exc:
                errors.append(str(exc))

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join(5)
        assert errors == ["an io_uring loop runs only in the thread that first ran it"]
        loop.run_until_complete(nap())  # still fine in its own thread


def test_a_connection_coming_as_its_acceptor_is_cancelled_reaches_the_next(aio, loop, runner, listener, sockets):
    lsock = listener()
    lsock.setblocking(False)

    def acceptor():
        return (yield aio.AcceptEvent(lsock))

    def main():
        served = []
        for round in range(10):
            task = yield aio.Spawn(acceptor())
            yield aio.Sleep(0)  # it waits: an accept in flight on io_uring
            client = socket.create_connection(lsock.getsockname(), timeout=2)
            sockets.append(client)
            task.cancel()  # the connection and the cancel reach the kernel in the same pass
            try:
                yield aio.Join(task)
            except aio.Cancelled:
                pass
            conn, _ = yield aio.Timeout(aio.AcceptEvent(lsock), 2.0)
            sockets.append(conn)
            client.sendall(b"%d" % round)
            served.append((yield aio.Timeout(aio.ReadEvent(conn), 2.0)))
        return served

    assert runner.complete(main()) == [b"%d" % round for round in range(10)]


# -- what comes while nobody waits (multishot accept and recv on io_uring) -------------------


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_connections_that_come_while_nobody_accepts_are_handed_out_in_order(aio, loop, runner, listener, sockets):
    lsock = listener()

    def main():
        first = socket.create_connection(lsock.getsockname(), timeout=2)
        sockets.append(first)
        conn, peer = yield aio.Timeout(aio.AcceptEvent(lsock), 2.0)
        sockets.append(conn)
        assert peer == first.getsockname()
        clients = []
        for _ in range(5):  # nobody accepts meanwhile: queued on io_uring, in the listen queue elsewhere
            clients.append(socket.create_connection(lsock.getsockname(), timeout=2))
            sockets.append(clients[-1])
            yield aio.Sleep(0.002)
        peers = []
        for client in clients:
            conn, peer = yield aio.Timeout(aio.AcceptEvent(lsock), 2.0)
            sockets.append(conn)
            client.sendall(b"hi")
            peers.append((peer, (yield aio.Timeout(aio.ReadEvent(conn), 2.0))))
        return peers, [(client.getsockname(), b"hi") for client in clients]

    got, expected = runner.complete(main())
    assert got == expected


def test_a_queued_connection_goes_to_an_accept_under_a_timeout(aio, loop, runner, listener, sockets):
    lsock = listener()

    def main():
        sockets.append(socket.create_connection(lsock.getsockname(), timeout=2))
        conn, _ = yield aio.Timeout(aio.AcceptEvent(lsock), 2.0)
        sockets.append(conn)
        client = socket.create_connection(lsock.getsockname(), timeout=2)
        sockets.append(client)
        yield aio.Sleep(0.02)  # accepted by the kernel for nobody on io_uring
        conn, peer = yield aio.Timeout(aio.AcceptEvent(lsock), 2.0)
        sockets.append(conn)
        return peer == client.getsockname()

    assert runner.complete(main()) is True


def test_a_burst_beyond_the_accept_queue_loses_no_connection(aio, loop, runner, listener, sockets, fd_limit):
    count = 100  # beyond io_uring's per-listener queue: the rest waits in the listen queue
    fd_limit.at_least(3 * count + 100)
    lsock = listener(backlog=2 * count)

    def main():
        first = socket.create_connection(lsock.getsockname(), timeout=2)
        sockets.append(first)
        conn, _ = yield aio.Timeout(aio.AcceptEvent(lsock), 2.0)
        sockets.append(conn)
        clients = []
        for index in range(count):
            client = socket.create_connection(lsock.getsockname(), timeout=2)
            sockets.append(client)
            client.sendall(b"%d" % index)
            clients.append(client)
            if index % 10 == 0:
                yield aio.Sleep(0)  # passes while nobody accepts
        yield aio.Sleep(0.02)
        received = set()
        for _ in range(count):
            conn, _ = yield aio.Timeout(aio.AcceptEvent(lsock), 2.0)
            sockets.append(conn)
            received.add((yield aio.Timeout(aio.ReadEvent(conn), 2.0)))
        return received

    assert runner.complete(main()) == {b"%d" % index for index in range(count)}


@pytest.mark.parametrize("how", ["close_socket", "close"])
def test_closing_a_listener_closes_the_connections_nobody_accepted(aio, loop, runner, listener, sockets, how):
    lsock = listener()

    def main():
        sockets.append(socket.create_connection(lsock.getsockname(), timeout=2))
        conn, _ = yield aio.Timeout(aio.AcceptEvent(lsock), 2.0)
        sockets.append(conn)
        before = _open_fds()
        clients = [socket.create_connection(lsock.getsockname(), timeout=2) for _ in range(3)]
        sockets.extend(clients)
        yield aio.Sleep(0.02)  # queued for nobody on io_uring
        if how == "close_socket":
            loop.close_socket(lsock)
        else:
            lsock.close()  # directly: the loop finds out at its next pass
            yield aio.Sleep(0.01)
        gone = []
        for client in clients:
            client.settimeout(2.0)
            try:
                gone.append(client.recv(10) == b"")
            except ConnectionResetError:
                gone.append(True)
        return gone, _open_fds() - before

    gone, fds_left = runner.complete(main())
    assert gone == [True, True, True]
    assert fds_left == 3 - 1  # the clients' own, less the listener


def _read_twice(aio, a, b):
    """Two reads of ``a``: from the second on, io_uring keeps a recv armed on it."""
    for data in (b"1", b"2"):
        b.send(data)
        assert (yield aio.Timeout(aio.ReadEvent(a), 2.0)) == data


def test_bytes_and_eof_that_come_while_nobody_reads_arrive_in_order(aio, loop, runner, socketpair):
    a, b = socketpair()

    def main():
        yield from _read_twice(aio, a, b)
        b.send(b"first")
        got = [(yield aio.Timeout(aio.ReadEvent(a), 2.0))]
        for index in range(5):  # nobody reads: queued on io_uring
            b.send(b"<%d>" % index)
            yield aio.Sleep(0.002)
        b.close()
        yield aio.Sleep(0.01)
        while True:
            data = yield aio.Timeout(aio.ReadEvent(a), 2.0)
            got.append(data)
            if not data:
                return got

    got = runner.complete(main())
    assert got[0] == b"first" and got[-1] == b""
    assert b"".join(got[1:]) == b"".join(b"<%d>" % index for index in range(5))


def test_bytes_queued_across_a_cancelled_reader_reach_the_next(aio, loop, runner, socketpair):
    a, b = socketpair()

    def reader():
        return (yield aio.ReadEvent(a))

    def main():
        yield from _read_twice(aio, a, b)
        b.send(b"one")
        first = yield aio.Timeout(aio.ReadEvent(a), 2.0)
        task = yield aio.Spawn(reader())
        yield aio.Sleep(0)
        task.cancel()  # its cancel and the bytes below reach the loop together
        b.send(b"two")
        try:
            yield aio.Join(task)
        except aio.Cancelled:
            pass
        yield aio.Sleep(0.01)
        b.send(b"three")
        yield aio.Sleep(0.01)
        rest = b""
        while len(rest) < len(b"twothree"):
            rest += yield aio.Timeout(aio.ReadEvent(a), 2.0)
        return first, rest

    assert runner.complete(main()) == (b"one", b"twothree")


def test_a_small_read_takes_part_of_a_large_chunk_and_leaves_the_rest(aio, loop, runner, socketpair):
    a, b = socketpair()
    payload = bytes(range(256)) * 40

    def main():
        yield from _read_twice(aio, a, b)
        b.send(b"x")
        got = [(yield aio.Timeout(aio.ReadEvent(a, 1), 2.0))]
        b.sendall(payload)  # one chunk received for nobody on io_uring
        yield aio.Sleep(0.01)
        got.append((yield aio.Timeout(aio.ReadEvent(a, 10), 2.0)))
        rest = b""
        while len(rest) < len(payload) - 10:
            rest += yield aio.Timeout(aio.ReadEvent(a, 1000), 2.0)
        got.append(rest)
        return got

    assert runner.complete(main()) == [b"x", payload[:10], payload[10:]]


def test_a_reader_asking_less_than_what_comes_gets_that_much(aio, loop, runner, socketpair):
    a, b = socketpair()

    def reader():
        return (yield aio.ReadEvent(a, 3))

    def main():
        yield from _read_twice(aio, a, b)
        task = yield aio.Spawn(reader())
        yield aio.Sleep(0.01)  # it waits
        b.send(b"abcdefgh")
        first = yield aio.Join(task)
        return first, (yield aio.Timeout(aio.ReadEvent(a, 100), 2.0))

    assert runner.complete(main()) == (b"abc", b"defgh")


@pytest.mark.parametrize("how", ["close_socket", "close"])
def test_closing_a_socket_read_from_before_closes_the_file(aio, loop, runner, tcp_pair, how):
    client, server = tcp_pair()

    def main():
        yield from _read_twice(aio, server, client)
        client.send(b"ping")
        data = yield aio.Timeout(aio.ReadEvent(server), 2.0)  # a multishot recv stays armed on io_uring
        if how == "close_socket":
            loop.close_socket(server)
        else:
            server.close()  # directly: the loop finds out at its next pass
            yield aio.Sleep(0.01)
        client.setblocking(True)
        return data, _peer_sees_eof(client)

    assert runner.complete(main()) == (b"ping", True)


@needs_io_uring
def test_closing_sockets_with_bytes_queued_gives_their_buffers_back(socketpair):
    # Two provided buffers: one kept, the next recvs would run out.
    previous = _loop_c._set_io_uring_ring_size(64, 256, 2)
    try:
        loop = _loop_c.EventLoop(backend="io_uring")
    finally:
        _loop_c._set_io_uring_ring_size(*previous)
    pairs = [socketpair() for _ in range(6)]

    def main():
        for a, b in pairs:
            yield from _read_twice(_loop_c, a, b)
            b.send(b"hello")
            assert (yield _loop_c.Timeout(_loop_c.ReadEvent(a), 2.0)) == b"hello"
            b.send(b"queued")  # received for nobody, or left in the socket
            yield _loop_c.Sleep(0.002)
            loop.close_socket(a)
        a, b = socketpair()
        b.send(b"still works")
        return (yield _loop_c.Timeout(_loop_c.ReadEvent(a), 2.0))

    with loop:
        assert loop.run_until_complete(main()) == b"still works"
