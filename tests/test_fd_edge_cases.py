"""File-descriptor edge cases: resets, busy fds, closed and reused fds, dups, fd limits."""

from __future__ import annotations

import errno
import gc
import logging
import os
import socket
import struct
import threading
import time

import pytest

#: CPU seconds the whole process may use while the loop should be idle for ~0.3 s.
IDLE_CPU_BOUND = 0.15


def _fill(sock: socket.socket) -> int:
    total = 0
    while True:
        try:
            total += sock.send(b"\0" * 65536)
        except BlockingIOError:
            return total


def _is_closed(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return True
    return False


class RawRead:
    """A custom event on a bare fd number: ``os.read`` once readable."""

    def __init__(self, fd):
        self.fd = fd

    def _yield(self, loop, task):
        loop._read_wait(self.fd, self, task)

    def _resume(self, loop, task):
        loop._ready.append((task, os.read(self.fd, 100)))


# -- errors from _resume -------------------------------------------------------------------


def test_connection_reset_is_thrown_into_the_waiting_task(aio, loop, runner, tcp_pair):
    client, server = tcp_pair()

    def reader():
        try:
            yield aio.ReadEvent(server)
        except ConnectionResetError:
            return "reset"
        return "no error"

    def resetter():
        yield aio.Sleep(0.01)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # RST

    def bystander():
        yield aio.Sleep(0.03)
        return "alive"

    r = loop.call_soon(reader())
    loop.call_soon(resetter())
    b = loop.call_soon(bystander())
    runner.forever()
    assert r.result() == "reset"
    assert b.result() == "alive"
    assert runner.complete(_value(aio, "loop still runs")) == "loop still runs"


def _value(aio, value):
    yield aio.Sleep(0)
    return value


def test_uncaught_reset_ends_only_the_reader(aio, loop, runner, tcp_pair):
    client, server = tcp_pair()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    def reader():
        yield aio.ReadEvent(server)

    def resetter():
        yield aio.Sleep(0.005)
        client.close()
        yield aio.Sleep(0.01)
        return "after reset"

    r = loop.call_soon(reader())
    o = loop.call_soon(resetter())
    runner.forever()
    assert isinstance(r.exception(), ConnectionResetError)
    assert o.result() == "after reset"


# -- ResourceBusy ----------------------------------------------------------------------------


def test_second_reader_of_an_fd_gets_resource_busy(aio, loop, runner, socketpair):
    a, b = socketpair()

    def first():
        return (yield aio.ReadEvent(a))

    def second():
        try:
            yield aio.ReadEvent(a)
        except aio.ResourceBusy:
            return "busy"
        return "no error"

    def sender():
        yield aio.Sleep(0.01)
        b.send(b"for the first")

    t1 = loop.call_soon(first())
    t2 = loop.call_soon(second())
    loop.call_soon(sender())
    runner.forever()
    assert t2.result() == "busy"
    assert t1.result() == b"for the first"
    assert issubclass(aio.ResourceBusy, RuntimeError)


def test_a_reader_and_a_writer_may_share_an_fd(aio, loop, runner, socketpair):
    a, b = socketpair()
    filled = _fill(a)  # the writer below has to wait too

    def reader():
        return (yield aio.ReadEvent(a))

    def writer():
        return (yield aio.WriteEvent(a, b"w"))

    def peer():
        yield aio.Sleep(0.01)
        b.send(b"to the reader")
        got = 0
        while got < filled + 1:
            got += len((yield aio.ReadEvent(b)))
        return got

    r = loop.call_soon(reader())
    w = loop.call_soon(writer())
    p = loop.call_soon(peer())
    runner.forever()
    assert r.result() == b"to the reader"
    assert w.result() == 1
    assert p.result() == filled + 1


def test_second_writer_of_an_fd_gets_resource_busy(aio, loop, runner, socketpair):
    a, b = socketpair()
    filled = _fill(a)

    def first():
        return (yield aio.WriteEvent(a, b"first"))

    def second():
        try:
            yield aio.WriteEvent(a, b"second")
        except aio.ResourceBusy:
            return "busy"
        return "no error"

    def drainer():
        yield aio.Sleep(0.01)
        got = 0
        while got < filled + 5:
            got += len((yield aio.ReadEvent(b)))
        return got

    t1 = loop.call_soon(first())
    t2 = loop.call_soon(second())
    d = loop.call_soon(drainer())
    runner.forever()
    assert t2.result() == "busy"
    assert t1.result() == 5
    assert d.result() == filled + 5


# -- closed and invalid fds -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["read", "write", "accept", "sendall", "connect"])
def test_waiting_on_a_closed_socket_raises_at_once(aio, runner, socketpair, listener, sockets, kind):
    a, _ = socketpair()
    lsock = listener()
    fresh = socket.socket()
    sockets.append(fresh)
    # Built while the socket is open; closed before the task yields it.
    event, target = {
        "read": (aio.ReadEvent(a), a),
        "write": (aio.WriteEvent(a, b"x"), a),
        "accept": (aio.AcceptEvent(lsock), lsock),
        "sendall": (aio.SendAll(a, b"x"), a),
        "connect": (aio.ConnectEvent(fresh, lsock.getsockname()), fresh),
    }[kind]
    target.close()

    def main():
        try:
            yield event
        except (OSError, ValueError) as exc:
            return exc
        return None

    start = time.monotonic()
    assert isinstance(runner.complete(main(), limit=5), (OSError, ValueError))
    assert time.monotonic() - start < 2


def test_custom_event_with_an_invalid_fd_number_fails_without_hanging(aio, runner):
    x, y = socket.socketpair()
    bad_fd = x.detach()
    os.close(bad_fd)
    y.close()

    def main():
        assert _is_closed(bad_fd)  # nothing reused the number meanwhile
        try:
            yield RawRead(bad_fd)
        except (OSError, ValueError) as exc:
            return exc
        return None

    start = time.monotonic()
    assert isinstance(runner.complete(main(), limit=5), (OSError, ValueError))
    assert time.monotonic() - start < 2


def test_custom_event_with_a_negative_fd_number_fails(aio, runner):
    def main():
        try:
            yield RawRead(-1)
        except (OSError, ValueError) as exc:
            return exc
        return None

    assert isinstance(runner.complete(main(), limit=5), (OSError, ValueError))


def test_fd_above_1024(aio, backend, runner, socketpair, fd_limit, sockets):
    """select cannot watch fds >= 1024: a ValueError in the task; epoll just works."""
    high = 1500
    fd_limit.at_least(high + 1)
    a, b = socketpair()
    assert _is_closed(high)
    os.dup2(a.fileno(), high)
    big = socket.socket(fileno=high)
    sockets.append(big)
    big.setblocking(False)
    b.send(b"high fd")

    def main():
        try:
            return (yield aio.ReadEvent(big))
        except ValueError as exc:
            return exc

    result = runner.complete(main())
    if backend == "select":
        assert isinstance(result, ValueError)
    else:
        assert result == b"high fd"


# -- close_socket ----------------------------------------------------------------------------


@pytest.mark.parametrize("direction", ["read", "write"])
def test_close_socket_wakes_the_waiter_with_closed_resource_error(aio, loop, runner, socketpair, direction):
    a, b = socketpair()
    if direction == "write":
        _fill(a)

    def waiter():
        try:
            if direction == "read":
                yield aio.ReadEvent(a)
            else:
                yield aio.WriteEvent(a, b"blocked")
        except aio.ClosedResourceError as exc:
            return exc
        return None

    def closer():
        yield aio.Sleep(0.01)
        loop.close_socket(a)

    def idle():
        yield aio.Sleep(0.25)

    w = loop.call_soon(waiter())
    loop.call_soon(closer())
    loop.call_soon(idle())
    cpu = time.process_time()
    start = time.monotonic()
    runner.forever()
    assert time.process_time() - cpu < IDLE_CPU_BOUND
    assert time.monotonic() - start < 2
    exc = w.result()
    assert isinstance(exc, aio.ClosedResourceError)
    assert isinstance(exc, OSError)
    assert a.fileno() == -1
    assert runner.complete(_value(aio, "fine")) == "fine"


def test_close_socket_without_waiters_just_closes(aio, loop, runner, socketpair):
    a, b = socketpair()

    def main():
        b.send(b"x")
        yield aio.ReadEvent(a)  # leaves a (lazy) registration behind on epoll
        loop.close_socket(a)
        yield aio.Sleep(0.01)
        return a.fileno()

    assert runner.complete(main()) == -1


def test_socket_closed_behind_the_loops_back_and_fd_reused(aio, loop, runner, socketpair, sockets):
    a, _ = socketpair()
    number = a.fileno()

    def task_a():
        try:
            yield aio.ReadEvent(a)
        except aio.ClosedResourceError:
            return "closed"
        return "no error"

    def task_b():
        yield aio.Sleep(0)
        a.close()  # directly, not through loop.close_socket
        new, peer = _socketpair_at(number, sockets)
        peer.send(b"to the new socket")
        try:
            return (yield aio.ReadEvent(new))
        except aio.ResourceBusy:
            return "busy"

    ta = loop.call_soon(task_a())
    tb = loop.call_soon(task_b())
    runner.forever(limit=5)
    assert tb.result() == b"to the new socket"
    assert ta.result() == "closed"


def test_reused_fd_number_is_registered_again(aio, loop, runner, socketpair, sockets):
    """The old socket's (lazy) registration must not hide the new socket on epoll."""
    a, b = socketpair()
    number = a.fileno()

    def main():
        b.send(b"old")
        assert (yield aio.ReadEvent(a)) == b"old"  # the registration persists
        a.close()
        new, peer = _socketpair_at(number, sockets)
        peer.send(b"new")
        first = yield aio.ReadEvent(new)
        peer.send(b"again")
        second = yield aio.ReadEvent(new)
        return first, second

    assert runner.complete(main(), limit=5) == (b"new", b"again")


def _socketpair_at(number, sockets):
    """A new connected pair whose first socket has the fd ``number`` (now free)."""
    x, y = socket.socketpair()
    sockets.extend((x, y))
    if y.fileno() == number:
        x, y = y, x
    if x.fileno() != number:
        assert _is_closed(number)
        os.dup2(x.fileno(), number)
        moved = socket.socket(fileno=number)
        sockets.append(moved)
        x.close()
        x = moved
    x.setblocking(False)
    y.setblocking(False)
    return x, y


# -- dup'd zombies on epoll ------------------------------------------------------------------------


def test_dup_of_a_closed_registered_socket_does_not_make_the_loop_spin(aio, loop, runner, socketpair, sockets):
    a, b = socketpair()

    def read_once():
        b.send(b"first")
        return (yield aio.ReadEvent(a))  # registration persists afterwards

    assert runner.complete(read_once()) == b"first"
    dup = a.dup()
    sockets.append(dup)
    dup.setblocking(False)
    a.close()  # the file stays open through the dup: a zombie registration
    b.send(b"zombie data")

    def idle():
        yield aio.Sleep(0.3)
        return "slept"

    cpu = time.process_time()
    assert runner.complete(idle()) == "slept"
    assert time.process_time() - cpu < IDLE_CPU_BOUND

    def read_dup():
        return (yield aio.ReadEvent(dup))

    assert runner.complete(read_dup()) == b"zombie data"
    _assert_wakes_from_another_thread(aio, loop, runner)


def test_zombie_registration_under_a_reused_number_does_not_spin(aio, loop, runner, socketpair, sockets):
    """A dup keeps a closed fd's registration alive while a new socket reuses the number."""
    a, b = socketpair()
    number = a.fileno()

    def read_once():
        b.send(b"first")
        return (yield aio.ReadEvent(a))

    assert runner.complete(read_once()) == b"first"
    dup = a.dup()
    sockets.append(dup)
    a.close()
    new, peer = _socketpair_at(number, sockets)
    b.send(b"zombie data")  # the zombie file reports readable under `number`

    def reader():
        return (yield aio.ReadEvent(new))

    def sender():
        yield aio.Sleep(0.3)
        peer.send(b"real data")

    cpu = time.process_time()
    r = loop.call_soon(reader())
    loop.call_soon(sender())
    runner.forever(limit=5)
    assert time.process_time() - cpu < IDLE_CPU_BOUND
    assert r.result() == b"real data"
    assert dup.recv(100) == b"zombie data"
    _assert_wakes_from_another_thread(aio, loop, runner)


def _assert_wakes_from_another_thread(aio, loop, runner):
    """The wake-up fd still works (e.g. after the poller was rebuilt)."""

    def sleeper():
        yield aio.Sleep(30)

    t = loop.call_soon(sleeper())

    def canceller():
        t.cancel()
        return
        yield

    timer = threading.Timer(0.05, lambda: loop.call_soon_threadsafe(canceller()))
    timer.start()
    start = time.monotonic()
    runner.forever(limit=10)
    timer.join()
    assert time.monotonic() - start < 5
    assert t.cancelled()


class WaitWritable:
    """Resume once ``sock`` is writable (``loop._write_wait``), sending nothing."""

    def __init__(self, sock):
        self.sock = sock

    def _yield(self, loop, task):
        loop._write_wait(self.sock.fileno(), self, task)

    def _resume(self, loop, task):
        loop._ready.append((task, None))


def test_idle_registrations_do_not_burden_a_busy_loop(aio, loop, runner, socketpair):
    """Writable sockets nobody waits on must not be dispatched on every pass.

    Each socket below was waited on once (epoll keeps the registration
    lazily) and stays writable.  While a task spins on Sleep(0) and another
    waits for I/O, every pass polls; the idle fds must be dropped after at
    most a pass or two instead of costing work on each of thousands of passes.
    """
    pairs = [socketpair() for _ in range(400)]  # fds stay below select's limit

    def touch(sock):
        yield WaitWritable(sock)

    for a, _ in pairs:
        loop.call_soon(touch(a))
    runner.forever()
    waiter_sock, waiter_peer = socketpair()

    def reader():  # keeps the loop polling on every pass
        return (yield aio.ReadEvent(waiter_sock))

    def spinner():
        for _ in range(5000):
            yield aio.Sleep(0)
        waiter_peer.send(b"done")

    r = loop.call_soon(reader())
    loop.call_soon(spinner())
    cpu = time.process_time()
    runner.forever()
    cpu = time.process_time() - cpu
    assert r.result() == b"done"
    assert cpu < 0.25  # ~0.03 s when idle fds are dropped; ~0.5 s or more when not


# -- accept failures --------------------------------------------------------------------------------


def test_accept_out_of_fds_backs_off_logs_once_and_recovers(aio, loop, runner, listener, sockets, fd_limit, caplog):
    lsock = listener()
    client = socket.create_connection(lsock.getsockname(), timeout=5)
    sockets.append(client)

    def acceptor():
        conn, addr = yield aio.AcceptEvent(lsock)
        sockets.append(conn)
        return addr

    def restorer():
        yield aio.Sleep(0.3)
        fd_limit.restore()

    acc = loop.call_soon(acceptor())
    loop.call_soon(restorer())
    # No fd number below the soft limit is free: accept() fails with EMFILE.
    gc.collect()  # no garbage socket may free a low number during the test
    probe = os.dup(lsock.fileno())
    os.close(probe)
    fd_limit.set_soft(probe)
    try:
        with pytest.raises(OSError) as info:
            os.dup(lsock.fileno())
        assert info.value.errno == errno.EMFILE
        with caplog.at_level(logging.WARNING, logger="aioc"):
            cpu = time.process_time()
            start = time.monotonic()
            runner.forever(limit=5)
            cpu = time.process_time() - cpu
    finally:
        fd_limit.restore()
    assert cpu < IDLE_CPU_BOUND
    assert time.monotonic() - start < 2
    assert acc.result() == client.getsockname()
    warnings = [r for r in caplog.records if r.name == "aioc" and r.levelno == logging.WARNING]
    assert len(warnings) == 1


class AbortingListener(socket.socket):
    """A real listening socket whose first accept() finds the peer gone (ECONNABORTED)."""

    aborts = 1

    def accept(self):
        if self.aborts:
            self.aborts -= 1
            conn, _ = super().accept()
            conn.close()  # the first connection: gone before the server got it
            raise ConnectionAbortedError(errno.ECONNABORTED, os.strerror(errno.ECONNABORTED))
        return super().accept()


def test_accept_skips_connection_aborted(aio, loop, runner, listener, sockets):
    lsock = listener(cls=AbortingListener)
    address = lsock.getsockname()
    first = socket.create_connection(address, timeout=5)
    sockets.append(first)

    def acceptor():
        conn, addr = yield aio.AcceptEvent(lsock)
        sockets.append(conn)
        return addr

    def second_client():
        yield aio.Sleep(0.02)
        sock = socket.socket()
        sockets.append(sock)
        yield aio.ConnectEvent(sock, address)
        return sock.getsockname()

    acc = loop.call_soon(acceptor())
    cli = loop.call_soon(second_client())
    runner.forever(limit=5)
    assert lsock.aborts == 0
    assert acc.result() == cli.result()
