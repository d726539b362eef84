"""The built-in events, ``async def`` support, ``yield from event`` and bad arguments."""

from __future__ import annotations

import math
import random
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aioc.events

# -- ReadEvent ---------------------------------------------------------------


def test_read_event_returns_bytes(aio, runner, socketpair):
    a, b = socketpair()

    def main():
        b.send(b"hello")
        return (yield aio.ReadEvent(a))

    assert runner.complete(main()) == b"hello"


def test_read_event_waits_for_data(aio, loop, runner, socketpair):
    a, b = socketpair()
    trace = []

    def reader():
        trace.append("waiting")
        data = yield aio.ReadEvent(a)
        trace.append(data)

    def writer():
        yield aio.Sleep(0.01)
        trace.append("sending")
        b.send(b"late")

    loop.call_soon(reader())
    loop.call_soon(writer())
    runner.forever()
    assert trace == ["waiting", "sending", b"late"]


def test_read_event_respects_nbytes(aio, runner, socketpair):
    a, b = socketpair()

    def main():
        b.send(b"abcdefgh")
        first = yield aio.ReadEvent(a, 3)
        second = yield aio.ReadEvent(a, 2)
        rest = yield aio.ReadEvent(a, 100)
        return first, second, rest

    assert runner.complete(main()) == (b"abc", b"de", b"fgh")


def test_read_event_returns_empty_bytes_at_eof(aio, runner, socketpair):
    a, b = socketpair()

    def main():
        b.send(b"last")
        b.shutdown(socket.SHUT_WR)
        data = yield aio.ReadEvent(a)
        eof = yield aio.ReadEvent(a)
        again = yield aio.ReadEvent(a)
        return data, eof, again

    assert runner.complete(main()) == (b"last", b"", b"")


# -- WriteEvent and SendAll --------------------------------------------------


def _fill(sock: socket.socket) -> int:
    """Send on a non-blocking socket until its buffers are full; returns the count."""
    total = 0
    chunk = b"\0" * 65536
    while True:
        try:
            total += sock.send(chunk)
        except BlockingIOError:
            return total


def test_write_event_returns_count(aio, runner, socketpair):
    a, b = socketpair()

    def main():
        return (yield aio.WriteEvent(a, b"xyz"))

    assert runner.complete(main()) == 3
    assert b.recv(10) == b"xyz"


def test_write_event_waits_while_buffer_is_full(aio, loop, runner, socketpair):
    a, b = socketpair()
    filled = _fill(a)
    payload = b"payload"

    def writer():
        return (yield aio.WriteEvent(a, payload))

    def drainer():
        got = bytearray()
        while len(got) < filled + len(payload):
            chunk = yield aio.ReadEvent(b, 65536)
            assert chunk
            got += chunk
        return bytes(got)

    w = loop.call_soon(writer())
    d = loop.call_soon(drainer())
    runner.forever()
    assert w.result() == len(payload)
    got = d.result()
    assert len(got) == filled + len(payload)
    assert got.endswith(payload)


@pytest.mark.parametrize("style", ["yield-from-sendall", "yield-SendAll"])
def test_sendall_larger_than_buffers_with_slow_reader(aio, loop, runner, socketpair, style):
    a, b = socketpair()
    data = random.Random(1234).randbytes(2 * 1024 * 1024)
    buffers = a.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) + b.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    assert len(data) > 2 * buffers  # the sender must wait for the reader, repeatedly

    def sender():
        if style == "yield-from-sendall":
            sent = yield from aio.sendall(a, data)
        else:
            sent = yield aio.SendAll(a, data)
        a.shutdown(socket.SHUT_WR)
        return sent

    def slow_reader():
        got = bytearray()
        while True:
            chunk = yield aio.ReadEvent(b, 32768)
            if not chunk:
                return bytes(got)
            got += chunk
            yield aio.Sleep(0.0005)

    s = loop.call_soon(sender())
    r = loop.call_soon(slow_reader())
    runner.forever()
    assert s.result() == len(data)
    assert r.result() == data


def test_sendall_accepts_memoryview_and_bytearray(aio, runner, socketpair):
    a, b = socketpair()

    def main():
        n1 = yield from aio.sendall(a, bytearray(b"abc"))
        n2 = yield from aio.sendall(a, memoryview(b"defg"))
        return n1, n2

    assert runner.complete(main()) == (3, 4)
    assert b.recv(100) == b"abcdefg"


# -- AcceptEvent and ConnectEvent --------------------------------------------


def test_accept_event_returns_nonblocking_connection(aio, runner, listener, sockets):
    lsock = listener()
    client = socket.create_connection(lsock.getsockname(), timeout=5)
    sockets.append(client)

    def main():
        conn, addr = yield aio.AcceptEvent(lsock)
        sockets.append(conn)
        return conn, addr

    conn, addr = runner.complete(main())
    assert isinstance(conn, socket.socket)
    assert conn.getblocking() is False
    assert addr == client.getsockname()
    client.sendall(b"ping")
    assert conn.recv(10) == b"ping"


def test_accept_and_connect_events_talk_to_each_other(aio, loop, runner, listener, sockets):
    lsock = listener()
    address = lsock.getsockname()

    def server():
        conn, _ = yield aio.AcceptEvent(lsock)  # waits: nobody has connected yet
        sockets.append(conn)
        line = yield aio.ReadEvent(conn)
        yield from aio.sendall(conn, line.upper())
        return line

    def client():
        sock = socket.socket()
        sockets.append(sock)
        result = yield aio.ConnectEvent(sock, address)
        assert result is None
        assert sock.getblocking() is False
        yield from aio.sendall(sock, b"hello")
        return (yield aio.ReadEvent(sock))

    srv = loop.call_soon(server())
    cli = loop.call_soon(client())
    runner.forever()
    assert srv.result() == b"hello"
    assert cli.result() == b"HELLO"


def test_connect_event_refused(aio, runner, sockets):
    # A bound socket that does not listen answers a SYN with RST: refused.
    closed_port = socket.socket()
    sockets.append(closed_port)
    closed_port.bind(("127.0.0.1", 0))
    address = closed_port.getsockname()

    def main():
        sock = socket.socket()
        sockets.append(sock)
        try:
            yield aio.ConnectEvent(sock, address)
        except ConnectionRefusedError as exc:
            return exc
        return None

    assert isinstance(runner.complete(main()), ConnectionRefusedError)


# -- Sleep -------------------------------------------------------------------


def test_sleep_wakes_in_deadline_order(aio, loop, runner):
    trace = []

    def sleeper(name, seconds):
        yield aio.Sleep(seconds)
        trace.append(name)

    for name, seconds in [("c", 0.03), ("a", 0.01), ("d", 0.04), ("b", 0.02)]:
        loop.call_soon(sleeper(name, seconds))
    runner.forever()
    assert trace == ["a", "b", "c", "d"]


def test_sleep_does_not_wake_before_its_deadline(aio, loop, runner):
    def main():
        start = loop.time()
        yield aio.Sleep(0.02)
        return loop.time() - start

    assert runner.complete(main()) >= 0.02


def test_sleep_zero_moves_task_to_back_of_queue(aio, loop, runner):
    trace = []

    def spinner(name):
        for i in range(3):
            trace.append(f"{name}{i}")
            yield aio.Sleep(0)

    def once():
        trace.append("c0")
        return
        yield

    loop.call_soon(spinner("a"))
    loop.call_soon(spinner("b"))
    loop.call_soon(once())
    runner.forever()
    assert trace == ["a0", "b0", "c0", "a1", "b1", "a2", "b2"]


def test_negative_sleep_behaves_like_sleep_zero(aio, loop, runner):
    trace = []

    def a():
        trace.append("a0")
        yield aio.Sleep(-1)
        trace.append("a1")

    def b():
        trace.append("b0")
        yield aio.Sleep(0)
        trace.append("b1")

    loop.call_soon(a())
    loop.call_soon(b())
    runner.forever()
    assert trace == ["a0", "b0", "a1", "b1"]


# -- Spawn and Join ----------------------------------------------------------


def test_spawn_returns_a_task_and_join_returns_its_result(aio, runner):
    def child(x):
        yield aio.Sleep(0.001)
        return x * 2

    def main():
        task = yield aio.Spawn(child(21))
        assert isinstance(task, aio.Task)
        return (yield aio.Join(task))

    assert runner.complete(main()) == 42


def test_join_reraises_the_exception(aio, runner):
    def child():
        yield aio.Sleep(0)
        raise ValueError("boom")

    def main():
        task = yield aio.Spawn(child())
        try:
            yield aio.Join(task)
        except ValueError as exc:
            return str(exc)
        return None

    assert runner.complete(main()) == "boom"


def test_join_on_finished_task(aio, runner):
    def child():
        return "early"
        yield

    def main():
        task = yield aio.Spawn(child())
        yield aio.Sleep(0.01)
        assert task.done()
        first = yield aio.Join(task)
        second = yield aio.Join(task)
        return first, second

    assert runner.complete(main()) == ("early", "early")


def test_several_tasks_join_the_same_task(aio, loop, runner):
    def child():
        yield aio.Sleep(0.01)
        return "shared"

    target = loop.call_soon(child())

    def joiner():
        return (yield aio.Join(target))

    joiners = [loop.call_soon(joiner()) for _ in range(5)]
    runner.forever()
    assert [j.result() for j in joiners] == ["shared"] * 5


# -- async def and yield from --------------------------------------------------


def test_async_def_coroutines_run_beside_generators(aio, loop, runner, socketpair):
    a, b = socketpair()
    trace = []

    async def async_reader():
        data = await aio.ReadEvent(a)
        trace.append(("async", data))
        await aio.Sleep(0)
        n = await aio.WriteEvent(a, b"reply")
        return n

    def gen_writer():
        yield aio.Sleep(0.005)
        yield from aio.sendall(b, b"request")
        data = yield aio.ReadEvent(b)
        trace.append(("gen", data))

    r = loop.call_soon(async_reader())
    loop.call_soon(gen_writer())
    runner.forever()
    assert r.result() == 5
    assert trace == [("async", b"request"), ("gen", b"reply")]


def test_async_def_spawn_and_join_mix_with_generators(aio, loop, runner):
    def gen_child():
        yield aio.Sleep(0.001)
        return "gen"

    async def async_child():
        await aio.Sleep(0.001)
        return "async"

    async def async_main():
        t = await aio.Spawn(gen_child())
        return await aio.Join(t)

    def gen_main():
        t = yield aio.Spawn(async_child())
        return (yield aio.Join(t))

    assert runner.complete(async_main()) == "gen"
    assert runner.complete(gen_main()) == "async"


def test_async_def_sendall(aio, runner, socketpair):
    a, b = socketpair()

    async def main():
        return await aio.sendall(a, b"x" * 1000)

    assert runner.complete(main()) == 1000
    assert b.recv(2000) == b"x" * 1000


def test_yield_from_event_is_yield_event(aio, runner, socketpair):
    a, b = socketpair()

    def main():
        b.send(b"data")
        data = yield from aio.ReadEvent(a)
        slept = yield from aio.Sleep(0)
        sent = yield from aio.WriteEvent(a, b"back")
        return data, slept, sent

    assert runner.complete(main()) == (b"data", None, 4)
    assert b.recv(10) == b"back"


# -- Event base class ---------------------------------------------------------


def test_builtin_events_are_instances_of_event(aio, socketpair, listener):
    a, _ = socketpair()
    lsock = listener()

    def gen():
        yield

    task_like = gen()
    events = [
        aio.ReadEvent(a),
        aio.WriteEvent(a, b"x"),
        aio.SendAll(a, b"x"),
        aio.sendall(a, b"x"),
        aio.AcceptEvent(lsock),
        aio.ConnectEvent(socket.socket(), ("127.0.0.1", 1)),
        aio.Sleep(1),
        aio.Spawn(task_like),
        aio.Join(None),
        aio.Timeout(aio.Sleep(1), 1),
    ]
    events[5].sock.close()
    for event in events:
        assert isinstance(event, aioc.events.Event), type(event)
        assert isinstance(event, aio.Event), type(event)
    task_like.close()


# -- bad input ------------------------------------------------------------------


@pytest.mark.parametrize("nbytes", [0, -1])
def test_read_event_rejects_nonpositive_size(aio, socketpair, nbytes):
    a, _ = socketpair()
    with pytest.raises(ValueError):
        aio.ReadEvent(a, nbytes)


@pytest.mark.parametrize("nbytes", ["x", 1.5, None])
def test_read_event_rejects_non_int_size(aio, socketpair, nbytes):
    a, _ = socketpair()
    with pytest.raises(TypeError):
        aio.ReadEvent(a, nbytes)


@pytest.mark.parametrize("seconds", ["x", None, b"1"])
def test_sleep_rejects_non_numbers(aio, seconds):
    with pytest.raises(TypeError):
        aio.Sleep(seconds)


def test_sleep_rejects_nan(aio):
    with pytest.raises(ValueError):
        aio.Sleep(float("nan"))
    with pytest.raises(ValueError):
        aio.Sleep(math.nan)


def test_timeout_rejects_non_events_and_bad_seconds(aio):
    with pytest.raises(TypeError):
        aio.Timeout(42, 1)
    with pytest.raises(TypeError):
        aio.Timeout(aio.Sleep(1), "x")
    with pytest.raises(ValueError):
        aio.Timeout(aio.Sleep(1), float("nan"))


def test_call_soon_rejects_non_coroutines(loop):
    for bad in (42, None, "coroutine", lambda: None):
        with pytest.raises(TypeError):
            loop.call_soon(bad)


def test_unknown_backend_is_rejected(aio):
    with pytest.raises(ValueError):
        aio.EventLoop(backend="kqueue")


def test_join_of_a_non_task_throws_type_error_into_the_task(aio, runner):
    def main():
        try:
            yield aio.Join(42)
        except TypeError:
            return "type error"
        return None

    assert runner.complete(main()) == "type error"


def test_spawn_of_a_non_coroutine_throws_type_error_into_the_task(aio, runner):
    def main():
        try:
            yield aio.Spawn(42)
        except TypeError:
            return "type error"
        return None

    assert runner.complete(main()) == "type error"


def test_join_of_a_task_of_another_loop_throws_type_error(aio, runner, backend):
    other = aio.EventLoop(backend=backend)
    try:

        def idle():
            yield aio.Sleep(0)

        foreign = other.call_soon(idle())

        def main():
            try:
                yield aio.Join(foreign)
            except TypeError:
                return "type error"
            return None

        assert runner.complete(main()) == "type error"
    finally:
        other.close()


def test_join_of_itself_throws_runtime_error_into_the_task(aio, loop, runner):
    me = []

    def main():
        try:
            yield aio.Join(me[0])
        except RuntimeError:
            return "runtime error"
        return None

    me.append(loop.call_soon(main()))
    runner.forever()
    assert me[0].result() == "runtime error"


# -- property: any chunking of writes and reads delivers the bytes in order ------------------


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    messages=st.lists(st.binary(min_size=1, max_size=20000), min_size=1, max_size=8),
    read_sizes=st.lists(st.integers(min_value=1, max_value=70000), min_size=1, max_size=8),
    yields=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=8),
)
def test_stream_round_trip_property(aio, backend, messages, read_sizes, yields):
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        with aio.EventLoop(backend=backend) as ev_loop:

            def writer():
                for i, message in enumerate(messages):
                    if i % 2:
                        yield from aio.sendall(a, message)
                    else:
                        sent = 0
                        while sent < len(message):
                            sent += yield aio.WriteEvent(a, message[sent:])
                    for _ in range(yields[i % len(yields)]):
                        yield aio.Sleep(0)
                a.shutdown(socket.SHUT_WR)

            def reader():
                got = bytearray()
                i = 0
                while True:
                    chunk = yield aio.ReadEvent(b, read_sizes[i % len(read_sizes)])
                    assert len(chunk) <= read_sizes[i % len(read_sizes)]
                    i += 1
                    if not chunk:
                        return bytes(got)
                    got += chunk

            ev_loop.call_soon(writer())
            r = ev_loop.call_soon(reader())
            ev_loop.run_forever()
            assert r.result() == b"".join(messages)
    finally:
        a.close()
        b.close()
