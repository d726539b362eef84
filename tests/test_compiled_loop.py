"""Machinery of the compiled loop that the shared suite does not reach."""

from __future__ import annotations

import gc
import os
import socket

import pytest

import aioc
from aioc import _env, _loop_py

try:
    from aioc import _loop_c
except ImportError:
    if _env.require_extensions():
        raise
    pytest.skip("the compiled loop is not built", allow_module_level=True)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.parametrize("backend", _loop_c.available_backends())
def test_closing_a_loop_releases_its_descriptors(backend: str) -> None:
    before = _open_fds()
    for _ in range(50):
        loop = _loop_c.EventLoop(backend=backend)
        loop.run_until_complete(_sleep_once())
        loop.close()
    del loop
    gc.collect()
    assert _open_fds() == before


def _sleep_once():
    yield _loop_c.Sleep(0.001)


def test_ready_queue_takes_only_task_value_pairs() -> None:
    with _loop_c.EventLoop() as loop:
        with pytest.raises(TypeError):
            loop._ready.append(("not a task", 1))
        with pytest.raises(ValueError):
            loop._ready.append((1, 2, 3))
        assert len(loop._ready) == 0


def test_socket_fast_path_reads_the_same_fd_as_fileno() -> None:
    # The compiled loop reads a socket's fd from the object itself; the
    # import-time check must have found the layout it expects.
    assert _loop_c._socket_layout_ok()
    a, b = socket.socketpair()
    b.sendall(b"x")

    def read():
        return (yield _loop_c.ReadEvent(a))

    assert _loop_c.run(read()) == b"x"
    a.close()
    b.close()

    def read_closed():
        yield _loop_c.ReadEvent(a)

    with pytest.raises((OSError, ValueError)):
        _loop_c.run(read_closed())


def test_subclassed_builtin_event_goes_through_its_python_methods() -> None:
    calls = []

    class LoggedRead(_loop_c.ReadEvent):
        def _resume(self, loop, task):
            calls.append("resume")
            super()._resume(loop, task)

    a, b = socket.socketpair()
    b.sendall(b"data")

    def main():
        return (yield LoggedRead(a, 10))

    assert _loop_c.run(main()) == b"data"
    assert calls == ["resume"]
    a.close()
    b.close()


@pytest.mark.parametrize("event", ["ReadEvent", "SendAll", "Sleep", "WriteEvent", "AcceptEvent", "Join"])
def test_compiled_events_are_aioc_events(event: str) -> None:
    assert issubclass(getattr(_loop_c, event), aioc.Event)


def test_events_cross_between_implementations() -> None:
    """Each loop runs the other's built-in events through their Python methods."""
    for loop_module, event_module in ((_loop_py, _loop_c), (_loop_c, _loop_py)):
        a, b = socket.socketpair()
        a.setblocking(False)
        b.setblocking(False)

        def main():
            yield event_module.Sleep(0.001)
            sent = yield from event_module.sendall(b, b"ping")
            data = yield event_module.ReadEvent(a)
            child = yield event_module.Spawn(_value(7))
            return sent, data, (yield event_module.Join(child))

        assert loop_module.run(main()) == (4, b"ping", 7)
        a.close()
        b.close()


def _value(value):
    yield _loop_c.Sleep(0)
    return value


def test_ready_queue_grows_past_its_initial_capacity() -> None:
    def quick(i):
        yield _loop_c.Sleep(0)
        return i

    with _loop_c.EventLoop() as loop:
        tasks = [loop.call_soon(quick(i)) for i in range(5000)]
        assert len(loop._ready) == 5000
        loop.run_forever()
        assert [t.result() for t in tasks] == list(range(5000))


def test_fd_table_grows_with_the_highest_descriptor() -> None:
    a, b = socket.socketpair()
    high = os.dup2(a.fileno(), 900)
    sock = socket.socket(fileno=high)
    sock.setblocking(False)
    b.sendall(b"far")

    def main():
        return (yield _loop_c.ReadEvent(sock))

    try:
        assert _loop_c.run(main()) == b"far"
    finally:
        sock.close()
        a.close()
        b.close()


def test_events_are_their_own_iterators() -> None:
    event = _loop_c.Sleep(0)
    assert event.__await__() is event
    assert iter(event) is event
    assert next(event) is event
    with pytest.raises(StopIteration):
        next(event)


def test_python_subclasses_of_events_can_be_awaited_and_yielded_from() -> None:
    class Nap(_loop_c.Sleep):
        pass

    async def awaiting():
        return await Nap(0)

    def delegating():
        return (yield from Nap(0))

    assert _loop_c.run(awaiting()) is None
    assert _loop_c.run(delegating()) is None


def test_an_event_thrown_into_can_be_waited_on_again() -> None:
    """throw() through 'yield from event' leaves the event reusable."""
    event = _loop_c.Sleep(0)

    def delegating():
        try:
            yield from event
        except ValueError:
            pass
        return (yield from event)

    coro = delegating()
    assert coro.send(None) is event
    assert coro.throw(ValueError("boom")) is event
    with pytest.raises(StopIteration) as stop:
        coro.send("second")
    assert stop.value.value == "second"


@pytest.mark.parametrize("family, host", [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_fast_accept_gives_what_the_socket_module_gives(family: int, host: str) -> None:
    import fcntl

    def accepted(module):
        listener = socket.socket(family)
        listener.bind((host, 0))
        listener.listen()
        client = socket.socket(family)
        client.connect(listener.getsockname())

        def accept():
            return (yield module.AcceptEvent(listener))

        conn, address = module.run(accept())
        facts = (
            address == client.getsockname(), conn.family, conn.type, conn.proto, conn.gettimeout(),
            bool(fcntl.fcntl(conn.fileno(), fcntl.F_GETFL) & os.O_NONBLOCK),
            bool(fcntl.fcntl(conn.fileno(), fcntl.F_GETFD) & fcntl.FD_CLOEXEC),
            type(conn), conn.getpeername() == client.getsockname(),
        )
        for sock in (conn, client, listener):
            sock.close()
        return facts

    assert accepted(_loop_c) == accepted(_loop_py)
    assert accepted(_loop_c)[0] is True


def test_socket_subclasses_keep_their_own_io_methods() -> None:
    """The C fast paths take exact socket types only (ssl.SSLSocket overrides recv and send)."""
    calls = []

    class Logged(socket.socket):
        def recv(self, *args):
            calls.append("recv")
            return super().recv(*args)

        def send(self, *args):
            calls.append("send")
            return super().send(*args)

    a, b = socket.socketpair()
    sock = Logged(fileno=a.detach())
    sock.setblocking(False)

    def main():
        yield from _loop_c.sendall(sock, b"ping")
        return (yield _loop_c.ReadEvent(sock))

    b.setblocking(False)
    b.sendall(b"pong")
    assert _loop_c.run(main()) == b"pong"
    assert calls == ["send", "recv"]
    sock.close()
    b.close()
