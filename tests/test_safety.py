"""Hostile values and shared state: what once corrupted memory, spun, leaked or diverged.

Every test runs on both loops.  An event field that C reads is checked when
it is assigned; an error met inside the loop's own I/O is thrown into the
task; a NaN deadline is refused; a loop dropped with waiting tasks is found
by the garbage collector; one event awaited by several tasks serves each;
Ctrl-C leaves every task intact.
"""

from __future__ import annotations

import gc
import math
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

import pytest

HOSTILE_SIZES = [-1, 0, -(2**62), 2**64, sys.maxsize + 1]
WRONG_TYPES = [1.5, "10", None, True, b"1"]


# -- fields C reads are checked at assignment ---------------------------------


@pytest.mark.parametrize("value", HOSTILE_SIZES + WRONG_TYPES)
def test_read_size_is_checked_when_assigned(aio, socketpair, value):
    a, _ = socketpair()
    event = aio.ReadEvent(a, 16)
    with pytest.raises((TypeError, ValueError)):
        event.nbytes = value
    assert event.nbytes == 16
    with pytest.raises((TypeError, ValueError)):
        aio.ReadEvent(a, value)


@pytest.mark.parametrize("value", [-1, -64, -(2**62), 1.5, None, True])
def test_sent_count_is_checked_when_assigned(aio, socketpair, value):
    a, _ = socketpair()
    event = aio.SendAll(a, b"hello")
    with pytest.raises((TypeError, ValueError)):
        event.sent = value
    assert event.sent == 0


@pytest.mark.parametrize("value", ["text", 3, None, object()])
def test_send_data_must_be_bytes_like(aio, socketpair, value):
    a, _ = socketpair()
    event = aio.SendAll(a, b"hello")
    with pytest.raises(TypeError):
        event.data = value
    assert bytes(event.data) == b"hello"


@pytest.mark.parametrize("value", [math.nan, "1", None, True])
def test_sleep_seconds_are_checked_when_assigned(aio, value):
    event = aio.Sleep(0.5)
    with pytest.raises((TypeError, ValueError)):
        event.seconds = value
    assert event.seconds == 0.5


def test_timeout_deadline_is_checked_when_assigned(aio, socketpair):
    a, _ = socketpair()
    event = aio.Timeout(aio.ReadEvent(a), 1.0)
    with pytest.raises(ValueError):
        event.deadline = math.nan
    with pytest.raises(TypeError):
        event.deadline = "soon"


def test_a_negative_raw_sent_count_is_refused_not_sent(aio, loop, runner, socketpair):
    """``_sent`` is the raw field: a negative value must never index before the data."""
    a, b = socketpair()

    def sender():
        event = aio.SendAll(a, b"hello")
        event._sent = -64
        try:
            yield event
        except ValueError as exc:
            return str(exc)
        return "sent"

    assert runner.complete(sender()).startswith("sent must be between 0 and")
    with pytest.raises(BlockingIOError):
        b.recv(100)  # nothing reached the peer


def test_sent_count_resumes_a_partial_send(aio, loop, runner, socketpair):
    a, b = socketpair()

    def sender():
        event = aio.SendAll(a, b"hello world")
        event.sent = 6
        return (yield event)

    assert runner.complete(sender()) == 11
    assert b.recv(100) == b"world"


# -- errors inside the loop's own I/O are thrown into the task ------------------


def test_released_buffer_is_thrown_into_the_task(aio, loop, runner, socketpair):
    a, _ = socketpair()
    view = memoryview(bytearray(b"hello"))
    event = aio.SendAll(a, view)
    event.data.release()
    trace = []

    def sender():
        try:
            yield event
        except ValueError:
            trace.append("ValueError")
        yield aio.Sleep(0)
        return "still running"

    assert runner.complete(sender()) == "still running"
    assert trace == ["ValueError"]
    assert loop._num_tasks == 0


# -- deadlines ---------------------------------------------------------------------


class NanTimer:
    """A custom event that asks the loop for a NaN deadline."""

    def _yield(self, loop: Any, task: Any) -> None:
        loop._timer_wait(math.nan, self, task)

    def _resume(self, loop: Any, task: Any) -> None:
        loop._ready.append((task, "woke"))


@pytest.mark.parametrize("ask", ["_timer_wait", "wait_until", "set_deadline"])
def test_nan_deadline_is_refused_and_the_loop_goes_on(aio, loop, runner, ask):
    class Hostile(NanTimer):
        def _yield(self, loop: Any, task: Any) -> None:
            if ask == "set_deadline":
                loop.set_deadline(task, math.nan)
            else:
                getattr(loop, ask)(math.nan, self, task)

    trace = []

    def hostile():
        try:
            yield Hostile()
        except ValueError:
            trace.append("refused")

    def sleeper():
        yield aio.Sleep(0.01)
        trace.append("timer fired")

    loop.call_soon(hostile())
    loop.call_soon(sleeper())
    start = time.process_time()
    runner.forever(limit=5)
    assert sorted(trace) == ["refused", "timer fired"]
    assert time.process_time() - start < 1.0  # no spin


# -- garbage collection --------------------------------------------------------------


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_dropped_loop_with_waiting_tasks_is_reclaimed(aio, backend):
    """Loops dropped without close() while tasks wait on I/O and timers leave no fd behind."""
    pairs = [socket.socketpair() for _ in range(4)]
    try:
        gc.collect()
        before = open_fds()
        for _ in range(50):
            loop = aio.EventLoop(backend=backend)

            def reader(sock):
                yield aio.ReadEvent(sock)

            def sleeper():
                yield aio.Sleep(60)

            def settle():
                yield aio.Spawn(sleeper())
                for _ in range(3):
                    yield aio.Sleep(0)

            for a, _ in pairs:
                loop.call_soon(reader(a))
            loop.call_soon(sleeper())
            loop.run_until_complete(settle())
            assert loop._num_tasks == len(pairs) + 2
            del loop, reader, sleeper, settle
        gc.collect()
        assert open_fds() == before
    finally:
        for a, b in pairs:
            a.close()
            b.close()


class Forgetful:
    """An event that parks its task and keeps no reference to it."""

    def _yield(self, loop: Any, task: Any) -> None:
        loop.park(task)


def test_the_loop_alone_keeps_its_tasks_alive(aio, backend):
    """Queued and parked tasks nobody else holds survive collections and are listed."""
    import weakref

    with aio.EventLoop(backend=backend) as loop:

        def parked():
            yield Forgetful()

        def settle():
            for _ in range(3):
                yield aio.Sleep(0)

        refs = [weakref.ref(loop.call_soon(parked())) for _ in range(3)]
        loop.run_until_complete(settle())
        refs.append(weakref.ref(loop.call_soon(parked())))  # still queued
        gc.collect()
        assert all(ref() is not None for ref in refs)
        assert loop.tasks() == [ref() for ref in refs]
        assert loop._num_tasks == 4
        for ref in refs[:3]:
            loop.reschedule(ref(), None)
        loop.run_until_complete(settle())
        assert loop.tasks() == [refs[3]()]


def test_a_dropped_loops_tasks_are_reclaimed_with_it(aio, backend):
    """Parked and queued tasks of a loop dropped without close() are freed by the collector."""
    import weakref

    gc.collect()
    loop = aio.EventLoop(backend=backend)

    def parked():
        yield Forgetful()

    def settle():
        yield aio.Sleep(0)

    refs = [weakref.ref(loop.call_soon(parked())) for _ in range(3)]
    loop.run_until_complete(settle())
    refs.append(weakref.ref(loop.call_soon(parked())))  # still queued
    del loop, parked, settle
    gc.collect()
    assert [ref() for ref in refs] == [None] * 4


def test_a_task_held_elsewhere_keeps_its_dropped_loop_whole(aio, backend):
    """A collection never tears down a loop that a live task held by the program reaches."""
    loop = aio.EventLoop(backend=backend)

    def parked():
        yield Forgetful()

    def settle():
        yield aio.Sleep(0)

    task = loop.call_soon(parked())
    loop.call_soon(parked())
    loop.run_until_complete(settle())
    del loop
    gc.collect()
    (loop,) = [referent for referent in gc.get_referents(task) if isinstance(referent, aio.EventLoop)]
    try:
        assert not loop.is_closed()
        assert len(loop.tasks()) == 2 and task in loop.tasks()
        assert task.cancel()
        loop.run_until_complete(settle())
        assert task.cancelled()
        assert len(loop.tasks()) == 1
    finally:
        loop.close()


# -- one event, several tasks -------------------------------------------------------


@pytest.mark.parametrize("style", ["await", "yield from", "yield"])
def test_one_sleep_awaited_by_three_tasks_wakes_each_on_time(aio, loop, runner, style):
    shared = aio.Sleep(0.1)
    woke = []

    if style == "await":

        async def sleeper():
            start = time.monotonic()
            await shared
            woke.append(time.monotonic() - start)

    elif style == "yield from":

        def sleeper():
            start = time.monotonic()
            yield from shared
            woke.append(time.monotonic() - start)

    else:

        def sleeper():
            start = time.monotonic()
            yield shared
            woke.append(time.monotonic() - start)

    for _ in range(3):
        loop.call_soon(sleeper())
    runner.forever(limit=5)
    assert len(woke) == 3
    assert all(0.09 <= elapsed < 0.19 for elapsed in woke), woke


# -- tasks belong to a loop --------------------------------------------------------------


def test_a_task_cannot_be_made_without_a_loop(aio):
    def coro():
        yield aio.Sleep(0)

    with pytest.raises(TypeError):
        aio.Task()
    with pytest.raises(TypeError):
        aio.Task(coro(), None)
    if aio.__name__.endswith("_loop_c"):
        # A bare pure Task is only a Python object; a bare compiled one would
        # reach C with no loop.
        with pytest.raises(TypeError):
            aio.Task.__new__(aio.Task)


def test_reschedule_refuses_what_is_not_a_task_of_this_loop(aio, loop):
    other = aio.EventLoop()
    try:
        stranger = other.call_soon(aio.Sleep(0).__await__())
        with pytest.raises((TypeError, ValueError)):
            loop.reschedule("not a task", 1)
        with pytest.raises((TypeError, ValueError)):
            loop.reschedule(stranger, 1)
    finally:
        other.close()


# -- Ctrl-C ------------------------------------------------------------------------------


def test_sigint_while_running_loses_no_task(aio, loop, socketpair):
    """SIGINT lands while ping-pong pairs run; running the loop again finishes them all."""
    rounds = 2000
    pairs = [socketpair() for _ in range(20)]
    done = threading.Event()
    interrupted = threading.Event()

    def ping(sock):
        for i in range(rounds):
            yield from aio.sendall(sock, b"x")
            assert (yield aio.ReadEvent(sock, 1)) == b"y"
        return "ping done"

    def pong(sock):
        for i in range(rounds):
            assert (yield aio.ReadEvent(sock, 1)) == b"x"
            yield from aio.sendall(sock, b"y")
        return "pong done"

    def interrupter():
        # One SIGINT at a time, each while the loop runs and only once the
        # loop has raised the last one.
        while not done.is_set():
            if not loop.is_running():
                time.sleep(0.0005)
                continue
            interrupted.clear()
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            interrupted.wait(1.0)

    def drive():
        nonlocal interrupts
        while loop._num_tasks and time.monotonic() < deadline:
            try:
                loop.run_forever()
            except KeyboardInterrupt:
                interrupts += 1
                interrupted.set()

    tasks = [loop.call_soon(ping(a)) for a, _ in pairs] + [loop.call_soon(pong(b)) for _, b in pairs]
    old_handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    thread = threading.Thread(target=interrupter, daemon=True)
    interrupts = 0
    deadline = time.monotonic() + 20
    try:
        thread.start()
        while True:
            try:
                drive()
                break
            except KeyboardInterrupt:  # landed in this test's code, outside the loop
                interrupted.set()
    finally:
        signal.signal(signal.SIGINT, lambda signum, frame: None)  # absorbs a late one
        done.set()
        thread.join()
        signal.signal(signal.SIGINT, old_handler)
    assert [t.result() for t in tasks] == ["ping done"] * 20 + ["pong done"] * 20
    assert interrupts > 0
