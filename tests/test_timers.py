"""Timers, timeouts and fairness between busy tasks, I/O and timers."""

from __future__ import annotations

import socket
import threading
import time

import pytest

# -- the timer heap -------------------------------------------------------------------


class At:
    """Resume at an absolute monotonic ``deadline`` through ``loop._timer_wait``."""

    def __init__(self, deadline):
        self.deadline = deadline

    def _yield(self, loop, task):
        loop._timer_wait(self.deadline, self, task)

    def _resume(self, loop, task):
        loop._ready.append((task, self.deadline))


def test_equal_deadlines_do_not_compare_tasks(aio, loop, runner):
    deadline = time.monotonic() + 0.01
    order = []

    def waiter(i):
        got = yield At(deadline)
        assert got == deadline
        order.append(i)

    tasks = [loop.call_soon(waiter(i)) for i in range(20)]
    runner.forever()
    for t in tasks:
        assert t.exception() is None  # no TypeError from comparing tasks
    assert order == list(range(20))  # ties resume in registration order


def test_timers_fire_in_deadline_order_whatever_the_registration_order(aio, loop, runner):
    base = time.monotonic() + 0.01
    offsets = [7, 3, 9, 0, 5, 1, 8, 2, 6, 4]
    order = []

    def waiter(k):
        yield At(base + k * 0.001)
        order.append(k)

    for k in offsets:
        loop.call_soon(waiter(k))
    runner.forever()
    assert order == sorted(offsets)


def test_a_deadline_in_the_past_fires_at_once(aio, runner):
    def main():
        return (yield At(time.monotonic() - 10))

    assert runner.complete(main()) < time.monotonic()


def test_many_cancelled_sleepers_do_not_delay_the_loop(aio, loop, runner):
    trace = []

    def sleeper():
        yield aio.Sleep(0.05)
        trace.append("not cancelled")

    sleepers = [loop.call_soon(sleeper()) for _ in range(2000)]

    def canceller():
        yield aio.Sleep(0)
        for t in sleepers:
            t.cancel()
        yield aio.Sleep(0.1)  # outlives the cancelled deadlines
        return "done"

    c = loop.call_soon(canceller())
    start_cpu = time.process_time()
    start = time.monotonic()
    runner.forever()
    assert time.monotonic() - start < 2
    assert time.process_time() - start_cpu < 1.5
    assert c.result() == "done"
    assert trace == []
    assert all(t.cancelled() for t in sleepers)


def test_many_timeouts_that_do_not_fire_let_the_loop_finish_promptly(aio, loop, runner):
    def quick():
        yield aio.Timeout(aio.Sleep(0.001), 30)
        return "in time"

    tasks = [loop.call_soon(quick()) for _ in range(2000)]

    def late():
        yield aio.Sleep(0.05)
        return "late"

    last = loop.call_soon(late())
    start = time.monotonic()
    runner.forever()
    assert time.monotonic() - start < 2
    assert all(t.result() == "in time" for t in tasks)
    assert last.result() == "late"


def test_sleeping_many_times_in_a_row(aio, runner):
    def main():
        for _ in range(50):
            yield aio.Sleep(0.00001)
        return "done"

    assert runner.complete(main()) == "done"


# -- Timeout ------------------------------------------------------------------------------


def test_timeout_on_a_read_raises_timeout_error_and_unregisters(aio, loop, runner, socketpair):
    a, b = socketpair()

    def main():
        start = time.monotonic()
        try:
            yield aio.Timeout(aio.ReadEvent(a), 0.05)
        except TimeoutError as exc:
            caught = exc
        else:
            return "no timeout"
        elapsed = time.monotonic() - start
        b.send(b"after the timeout")
        data = yield aio.ReadEvent(a)  # no ResourceBusy: the timed-out wait is gone
        return type(caught), elapsed, data

    exc_type, elapsed, data = runner.complete(main())
    assert exc_type is TimeoutError  # the built-in one
    assert 0.05 <= elapsed < 2
    assert data == b"after the timeout"


def test_timeout_frees_the_fd_for_another_task(aio, loop, runner, socketpair):
    a, b = socketpair()

    def first():
        try:
            yield aio.Timeout(aio.ReadEvent(a), 0.02)
        except TimeoutError:
            return "timed out"

    def second():
        yield aio.Sleep(0.05)
        b.send(b"x")
        return (yield aio.ReadEvent(a))

    t1 = loop.call_soon(first())
    t2 = loop.call_soon(second())
    runner.forever()
    assert t1.result() == "timed out"
    assert t2.result() == b"x"


def test_timeout_does_not_fire_when_the_event_completes_first(aio, loop, runner, socketpair):
    a, b = socketpair()

    def main():
        b.send(b"quick")
        data = yield aio.Timeout(aio.ReadEvent(a), 0.03)
        yield aio.Sleep(0.05)  # past the deadline: nothing must be thrown here
        more = yield aio.Timeout(aio.Sleep(0.001), 0.03)
        yield aio.Sleep(0.04)
        return data, more

    assert runner.complete(main()) == (b"quick", None)


def test_timeout_around_sleep_and_join(aio, loop, runner):
    def forever():
        yield aio.Sleep(30)

    target = loop.call_soon(forever())

    def main():
        results = []
        for event in (aio.Sleep(10), aio.Join(target)):
            try:
                yield aio.Timeout(event, 0.01)
            except TimeoutError:
                results.append("timeout")
        target.cancel()
        return results

    start = time.monotonic()
    assert runner.complete(main()) == ["timeout", "timeout"]
    assert time.monotonic() - start < 2


def test_timeout_on_a_write_unregisters(aio, loop, runner, socketpair):
    a, b = socketpair()
    filled = 0
    while True:
        try:
            filled += a.send(b"\0" * 65536)
        except BlockingIOError:
            break

    def main():
        try:
            yield aio.Timeout(aio.WriteEvent(a, b"x"), 0.02)
        except TimeoutError:
            pass
        else:
            return "no timeout"
        got = 0
        while got < filled:  # drain, then the write can go through
            got += len(b.recv(1 << 20))
        return (yield aio.WriteEvent(a, b"y"))

    assert runner.complete(main()) == 1


def test_timeout_after_raises_inside_the_sub_coroutine(aio, runner, socketpair):
    a, _ = socketpair()
    trace = []

    def sub():
        try:
            yield aio.Sleep(0)
            yield aio.ReadEvent(a)  # never completes
            trace.append("not reached")
        except TimeoutError:
            trace.append("sub saw TimeoutError")
            raise
        finally:
            trace.append("sub finally")

    def main():
        start = time.monotonic()
        try:
            yield from aio.timeout_after(0.05, sub())
        except TimeoutError:
            return time.monotonic() - start
        return None

    elapsed = runner.complete(main())
    assert elapsed is not None and 0.05 <= elapsed < 2
    assert trace == ["sub saw TimeoutError", "sub finally"]


def test_timeout_after_returns_the_value_in_time(aio, runner, socketpair):
    a, b = socketpair()

    def sub():
        yield aio.Sleep(0.001)
        b.send(b"data")
        data = yield aio.ReadEvent(a)
        yield aio.Sleep(0)
        return data.upper()

    def main():
        value = yield from aio.timeout_after(0.5, sub())
        yield aio.Sleep(0.52)  # the expired bound must not fire afterwards
        return value

    assert runner.complete(main()) == b"DATA"


def test_timeout_after_sub_can_handle_the_timeout(aio, runner):
    def sub():
        try:
            yield aio.Sleep(10)
        except TimeoutError:
            return "handled"

    def main():
        return (yield from aio.timeout_after(0.02, sub()))

    assert runner.complete(main()) == "handled"


def test_timeout_after_passes_values_and_errors_through(aio, loop, runner):
    def child():
        yield aio.Sleep(0)
        raise KeyError("child")

    def sub():
        t = yield aio.Spawn(child())
        assert isinstance(t, aio.Task)
        try:
            yield aio.Join(t)
        except KeyError:
            pass
        try:
            yield 42  # the loop's TypeError lands in sub
        except TypeError:
            return "type error reached sub"

    def main():
        return (yield from aio.timeout_after(1, sub()))

    assert runner.complete(main()) == "type error reached sub"


def test_timeout_after_bounds_a_sub_coroutine_that_never_blocks(aio, runner):
    trace = []

    def busy():
        n = 0
        try:
            while True:  # every event completes at once: nothing ever blocks
                n += 1
                yield aio.Sleep(0)
        except TimeoutError:
            trace.append("busy saw TimeoutError")
            raise

    def main():
        start = time.monotonic()
        try:
            yield from aio.timeout_after(0.03, busy())
        except TimeoutError:
            return time.monotonic() - start
        return None

    elapsed = runner.complete(main(), limit=5)
    assert elapsed is not None and 0.03 <= elapsed < 2
    assert trace == ["busy saw TimeoutError"]


@pytest.mark.parametrize("outer, inner", [(5.0, 0.03), (0.03, 5.0)])
def test_nested_timeout_after_earliest_wins(aio, runner, outer, inner):
    trace = []

    def innermost():
        try:
            yield aio.Sleep(10)
        finally:
            trace.append("innermost finally")

    def middle():
        try:
            yield from aio.timeout_after(inner, innermost())
        except TimeoutError:
            trace.append("middle saw timeout")
            raise

    def main():
        start = time.monotonic()
        try:
            yield from aio.timeout_after(outer, middle())
        except TimeoutError:
            return time.monotonic() - start
        return None

    elapsed = runner.complete(main())
    assert elapsed is not None and 0.03 <= elapsed < 2
    assert trace == ["innermost finally", "middle saw timeout"]


def test_cancelling_a_task_inside_timeout_after(aio, loop, runner):
    trace = []

    def sub():
        try:
            yield aio.Sleep(10)
        finally:
            trace.append("sub finally")

    def main():
        yield from aio.timeout_after(5, sub())

    t = loop.call_soon(main())

    def canceller():
        yield aio.Sleep(0.005)
        t.cancel()

    loop.call_soon(canceller())
    runner.forever()
    assert t.cancelled()
    assert trace == ["sub finally"]


# -- fairness -------------------------------------------------------------------------------


def test_a_spinning_task_does_not_starve_io(aio, loop, runner, socketpair):
    a, b = socketpair()
    b.setblocking(True)
    state = {"stop": False}

    def spinner():
        n = 0
        while not state["stop"]:
            n += 1
            yield aio.Sleep(0)
        return n

    def reader():
        data = yield aio.ReadEvent(a)
        state["stop"] = True
        return data

    s = loop.call_soon(spinner())
    r = loop.call_soon(reader())
    sender = threading.Timer(0.02, b.send, args=(b"through",))
    sender.start()
    try:
        runner.forever(limit=5)
    finally:
        sender.cancel()
        sender.join()
    assert r.result() == b"through"
    assert s.result() > 0


def test_a_spinning_task_does_not_starve_timers(aio, loop, runner):
    state = {"stop": False}

    def spinner():
        n = 0
        while not state["stop"]:
            n += 1
            yield aio.Sleep(0)
        return n

    def timer():
        yield aio.Sleep(0.01)
        state["stop"] = True
        return "fired"

    s = loop.call_soon(spinner())
    t = loop.call_soon(timer())
    runner.forever(limit=5)
    assert t.result() == "fired"
    assert s.result() > 0


def test_a_spinning_task_does_not_starve_accept(aio, loop, runner, listener, sockets):
    lsock = listener()
    state = {"stop": False}

    def spinner():
        while not state["stop"]:
            yield aio.Sleep(0)

    def acceptor():
        conn, _ = yield aio.AcceptEvent(lsock)
        sockets.append(conn)
        state["stop"] = True
        return "accepted"

    def connector():
        yield aio.Sleep(0.01)
        sock = socket.socket()
        sockets.append(sock)
        yield aio.ConnectEvent(sock, lsock.getsockname())

    loop.call_soon(spinner())
    a = loop.call_soon(acceptor())
    loop.call_soon(connector())
    runner.forever(limit=5)
    assert a.result() == "accepted"
