"""What the io_uring backend had to get right, held on every loop and backend.

io_uring's polls are requests that hold their file and complete on their own
time, unlike epoll's registrations: closing a socket must not leave a poll
keeping it open, a poll removed or replaced may still complete, the
completion queue may fill up.  The rules below hold on every backend; the
tests that only make sense on io_uring (its ring, its availability) say so.
"""

from __future__ import annotations

import socket
import threading

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
    # (IORING_FEAT_NODROP) and the backend reaps it in later passes.
    previous = _loop_c._set_io_uring_ring_size(4, 8)
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
    done = []

    def job():
        done.append(True)
        yield from ()

    def idle():
        yield _loop_c.Sleep(5)

    with _loop_c.EventLoop(backend="io_uring") as loop:
        loop.call_soon(idle())
        waker = threading.Timer(0.05, lambda: (loop.call_soon_threadsafe(job()), loop.stop()))
        waker.start()
        loop.run_forever()
        waker.join()
    assert done == [True]


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
