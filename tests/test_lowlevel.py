"""Events written only against the documented contract (aioc.lowlevel) run on both loops."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

import pytest

from aioc import ClosedResourceError, ResourceBusy, lowlevel


class Readable:
    """Resumes with up to 100 bytes once ``sock`` is readable."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def _yield(self, loop: lowlevel.Loop, task: Any) -> None:
        loop.wait_readable(self.sock.fileno(), self, task, self.sock)

    def _resume(self, loop: lowlevel.Loop, task: Any) -> None:
        loop.reschedule(task, self.sock.recv(100))


class Writable:
    """Resumes with ``"writable"`` once ``sock`` can take bytes."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def _yield(self, loop: lowlevel.Loop, task: Any) -> None:
        loop.wait_writable(self.sock.fileno(), self, task, self.sock)

    def _resume(self, loop: lowlevel.Loop, task: Any) -> None:
        loop.reschedule(task, "writable")


class At:
    """Resumes with the loop's time once ``deadline`` has passed."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def _yield(self, loop: lowlevel.Loop, task: Any) -> None:
        loop.wait_until(self.deadline, self, task)

    def _resume(self, loop: lowlevel.Loop, task: Any) -> None:
        loop.reschedule(task, loop.time())


class After:
    """Resumes with another task's result once it finishes."""

    def __init__(self, other: Any) -> None:
        self.other = other

    def _yield(self, loop: lowlevel.Loop, task: Any) -> None:
        loop.wait_task(self.other, self, task)

    def _resume(self, loop: lowlevel.Loop, task: Any) -> None:
        loop.reschedule(task, ("joined", self.other.result()))


class Bounded:
    """Waits for ``event`` but no later than ``deadline``."""

    def __init__(self, event: Any, deadline: float) -> None:
        self.event, self.deadline = event, deadline

    def _yield(self, loop: lowlevel.Loop, task: Any) -> None:
        loop.set_deadline(task, self.deadline)
        self.event._yield(loop, task)

    def _resume(self, loop: lowlevel.Loop, task: Any) -> None:
        raise NotImplementedError


class Raw:
    """Reads a raw fd, with no socket object to name as its owner."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def _yield(self, loop: lowlevel.Loop, task: Any) -> None:
        loop.wait_readable(self.fd, self, task)

    def _resume(self, loop: lowlevel.Loop, task: Any) -> None:
        loop.reschedule(task, os.read(self.fd, 100))


def test_every_contract_call_serves_a_custom_event(aio, loop, runner, socketpair):
    a, b = socketpair()

    def child():
        yield aio.Sleep(0)
        return 7

    def main():
        b.send(b"ping")
        read = yield Readable(a)
        writable = yield Writable(a)
        start = loop.time()
        woke = yield At(start + 0.02)
        joined = yield After(loop.call_soon(child()))
        try:
            yield Bounded(Readable(a), loop.time() + 0.02)
        except TimeoutError:
            timed_out = True
        return read, writable, woke - start >= 0.02, joined, timed_out

    assert runner.complete(main()) == (b"ping", "writable", True, ("joined", 7), True)


def test_a_raw_fd_without_an_owner(aio, loop, runner):
    r, w = os.pipe()
    try:
        os.write(w, b"raw")

        def main():
            return (yield Raw(r))

        assert runner.complete(main()) == b"raw"
    finally:
        os.close(r)
        os.close(w)


class SlotOwner:
    """Owns a socket but takes no weak reference (``__slots__`` without ``__weakref__``)."""

    __slots__ = ("sock",)

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def fileno(self) -> int:
        return self.sock.fileno()


class OwnedReadable(Readable):
    """Like Readable, with ``owner`` named as the fd's owner."""

    def __init__(self, sock: socket.socket, owner: Any) -> None:
        super().__init__(sock)
        self.owner = owner

    def _yield(self, loop: lowlevel.Loop, task: Any) -> None:
        loop.wait_readable(self.sock.fileno(), self, task, self.owner)


def test_an_owner_that_takes_no_weak_reference(aio, loop, runner, socketpair):
    """The loop holds owners weakly where it can; an owner that cannot be
    held so still gets every wake-up, wait after wait."""
    a, b = socketpair()
    owner = SlotOwner(a)

    def main():
        got = []
        for message in (b"one", b"two", b"three"):
            b.send(message)
            got.append((yield OwnedReadable(a, owner)))
        return got

    assert runner.complete(main()) == [b"one", b"two", b"three"]


def test_two_readers_of_one_fd_are_refused(aio, loop, runner, socketpair):
    a, b = socketpair()

    def reader():
        return (yield Readable(a))

    def second():
        try:
            yield Readable(a)
        except ResourceBusy:
            b.send(b"go")
            return "busy"

    first = loop.call_soon(reader())
    other = loop.call_soon(second())
    runner.forever()
    assert (first.result(), other.result()) == (b"go", "busy")


def test_the_owner_tells_a_stale_waiter_from_a_new_socket(aio, loop, runner):
    """A socket closed behind its waiter's back and its fd number reused:
    the new socket's reader gets through, the stale waiter gets ClosedResourceError."""
    old, old_peer = socket.socketpair()
    old.setblocking(False)
    fd = old.fileno()
    made = [old_peer]

    def stale():
        with pytest.raises(ClosedResourceError):
            yield Readable(old)
        return "told"

    def fresh():
        yield aio.Sleep(0)
        old.close()
        new, new_peer = socket.socketpair()
        made.extend((new, new_peer))
        assert fd in (new.fileno(), new_peer.fileno())
        sock, peer = (new, new_peer) if new.fileno() == fd else (new_peer, new)
        sock.setblocking(False)
        peer.send(b"new")
        return (yield Readable(sock))

    try:
        first = loop.call_soon(stale())
        second = loop.call_soon(fresh())
        runner.forever()
        assert (first.result(), second.result()) == ("told", b"new")
    finally:
        for sock in made:
            sock.close()


def test_reschedule_resumes_with_the_value(aio, loop, runner):
    class Now:
        def _yield(self, loop: lowlevel.Loop, task: Any) -> None:
            loop.reschedule(task, "now")

    def main():
        return (yield Now())

    assert runner.complete(main()) == "now"


def test_the_contract_names_what_both_loops_offer(aio, loop):
    for name in lowlevel.CONTRACT:
        assert callable(getattr(loop, name))
    assert abs(loop.time() - time.monotonic()) < 1.0


class Gate:
    """A minimal primitive on park/reschedule: tasks wait until ``open()``."""

    def __init__(self) -> None:
        self.waiters: list[Any] = []

    def wait(self):
        return (yield self)

    def _yield(self, loop: lowlevel.Loop, task: Any) -> None:
        self.waiters.append(task)
        loop.park(task)

    def open(self, loop: lowlevel.Loop, value: Any) -> None:
        while self.waiters:
            loop.reschedule(self.waiters.pop(0), value)


def test_parked_tasks_wake_when_rescheduled_in_order(aio, loop, runner):
    gate = Gate()
    woke = []

    def waiter(label):
        woke.append((label, (yield from gate.wait())))

    def opener():
        yield aio.Sleep(0.01)
        gate.open(loop, "open")

    for label in "abc":
        loop.call_soon(waiter(label))
    loop.call_soon(opener())
    runner.forever()
    assert woke == [("a", "open"), ("b", "open"), ("c", "open")]


def test_a_parked_task_can_be_cancelled_and_timed_out(aio, loop, runner):
    gate = Gate()

    def waiter():
        try:
            yield from gate.wait()
        except BaseException as exc:
            gate.waiters.remove(task)  # the parker forgets it
            return type(exc).__name__

    def bounded():
        try:
            yield aio.Timeout(gate, 0.01)
        except TimeoutError:
            gate.waiters.remove(timed)
            return "TimeoutError"

    task = loop.call_soon(waiter())
    timed = loop.call_soon(bounded())

    def canceller():
        yield aio.Sleep(0)
        task.cancel()

    loop.call_soon(canceller())
    runner.forever()
    assert (task.result(), timed.result()) == ("Cancelled", "TimeoutError")
    assert gate.waiters == []


def test_only_the_loop_wakes_a_task_waiting_on_it(aio, loop, runner, socketpair):
    a, b = socketpair()

    def reader():
        return (yield aio.ReadEvent(a))

    def meddler(target):
        yield aio.Sleep(0)
        with pytest.raises(RuntimeError):
            loop.reschedule(target, "forged")
        b.send(b"real")

    target = loop.call_soon(reader())
    loop.call_soon(meddler(target))
    runner.forever()
    assert target.result() == b"real"


def test_a_parked_task_woken_by_a_cancel_is_not_queued_again(aio, loop, runner):
    """The grant that comes after the cancel is refused, so the task runs once."""
    gate = Gate()
    steps = []

    def waiter():
        try:
            yield from gate.wait()
        except aio.Cancelled:
            steps.append("cancelled")
        yield aio.Sleep(0.01)
        steps.append("slept")
        return "done"

    def canceller(task):
        yield aio.Sleep(0)
        task.cancel()
        assert loop.reschedule(gate.waiters.pop(0), "late grant") is False

    task = loop.call_soon(waiter())
    loop.call_soon(canceller(task))
    runner.forever()
    assert task.result() == "done"
    assert steps == ["cancelled", "slept"]
