"""An event that completes at once (``loop.complete``) resumes its task at once.

The rule, on both loops: when an event's ``_yield`` calls
``loop.complete(task, value)``, the task resumes with ``value`` as soon as
``_yield`` returns, without a trip through the ready queue, for at most
``IMMEDIATE_RESUMPTIONS`` times in a row; then, and whenever ``complete`` is
called anywhere else, the task is queued as ``reschedule`` queues it.
``Sleep(0)`` still gives way.  The rule holds on every backend.
"""

from __future__ import annotations

from typing import Any

import pytest

from aioc._constants import IMMEDIATE_RESUMPTIONS


class CompletesAtOnce:
    """Completes in its ``_yield`` with ``value``."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def _yield(self, loop: Any, task: Any) -> None:
        loop.complete(task, self.value)

    def _resume(self, loop: Any, task: Any) -> None:
        raise AssertionError("never waited")


class CompletesLater:
    """Waits for a deadline that has passed, then calls ``complete`` from ``_resume``."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def _yield(self, loop: Any, task: Any) -> None:
        loop.wait_until(loop.time(), self, task)

    def _resume(self, loop: Any, task: Any) -> None:
        loop.complete(task, self.value)


class CompletesThenFails:
    """Completes in its ``_yield``, then raises: the exception wins."""

    def _yield(self, loop: Any, task: Any) -> None:
        loop.complete(task, "lost")
        raise ValueError("after completing")

    def _resume(self, loop: Any, task: Any) -> None:
        raise AssertionError("never waited")


def run_two(loop: Any, runner: Any, first: Any, second: Any) -> None:
    loop.call_soon(first)
    loop.call_soon(second)
    runner.forever()


def test_a_completed_event_resumes_before_the_tasks_queued_after_it(aio, loop, runner):
    order = []

    def completer():
        order.append(("completer", "yields"))
        order.append(("completer", (yield CompletesAtOnce(42))))

    def other():
        order.append(("other", "runs"))
        return
        yield

    run_two(loop, runner, completer(), other())
    assert order == [("completer", "yields"), ("completer", 42), ("other", "runs")]


def test_sleep_zero_still_gives_way(aio, loop, runner):
    order = []

    def sleeper():
        order.append("sleeper yields")
        yield aio.Sleep(0)
        order.append("sleeper resumes")

    def other():
        order.append("other runs")
        return
        yield

    run_two(loop, runner, sleeper(), other())
    assert order == ["sleeper yields", "other runs", "sleeper resumes"]


def test_immediate_resumptions_are_bounded(aio, loop, runner):
    order = []

    def greedy():
        for i in range(3 * IMMEDIATE_RESUMPTIONS):
            order.append((yield CompletesAtOnce(i)))

    def other():
        while len(order) - order.count("other") < 3 * IMMEDIATE_RESUMPTIONS:  # until greedy is done
            order.append("other")
            yield aio.Sleep(0)

    run_two(loop, runner, greedy(), other())
    runs, run = [], 0
    for entry in order:
        if entry == "other":
            runs.append(run)
            run = 0
        else:
            run += 1
    runs.append(run)
    # A step of greedy takes one resumption from the ready queue, then
    # IMMEDIATE_RESUMPTIONS at once; then it is queued, and other gets a turn.
    assert max(runs) == IMMEDIATE_RESUMPTIONS + 1
    assert [entry for entry in order if entry != "other"] == list(range(3 * IMMEDIATE_RESUMPTIONS))
    assert order.count("other") >= 2


def test_complete_outside_the_tasks_yield_queues_it(aio, loop, runner):
    order = []

    def waiter():
        order.append(("waiter", (yield CompletesLater("late"))))

    def other():
        order.append(("other", "runs"))
        yield aio.Sleep(0)
        order.append(("other", "again"))

    run_two(loop, runner, waiter(), other())
    # Woken by its timer, the waiter is queued behind other's Sleep(0).
    assert order == [("other", "runs"), ("other", "again"), ("waiter", "late")]


def test_an_exception_after_complete_is_thrown_in(aio, loop, runner):
    def task():
        with pytest.raises(ValueError, match="after completing"):
            yield CompletesThenFails()
        return (yield CompletesAtOnce("still works"))

    assert runner.complete(task()) == "still works"


def test_a_send_that_completes_at_once_takes_one_step(aio, loop, runner, socketpair):
    a, b = socketpair()
    order = []

    def sender():
        order.append(("sent", (yield from aio.sendall(a, b"ping"))))
        order.append(("wrote", (yield aio.WriteEvent(a, b"pong"))))

    def other():
        order.append(("other", "runs"))
        return
        yield

    run_two(loop, runner, sender(), other())
    assert order == [("sent", 4), ("wrote", 4), ("other", "runs")]
    assert b.recv(100) == b"pingpong"


def test_spawn_resumes_the_parent_at_once_and_the_child_later(aio, loop, runner):
    order = []

    def child():
        order.append("child runs")
        return
        yield

    def parent():
        task = yield aio.Spawn(child())
        order.append("parent has the task")
        yield aio.Join(task)
        order.append("parent joined")

    runner.complete(parent())
    assert order == ["parent has the task", "child runs", "parent joined"]


def test_a_deadline_around_an_event_that_completes_at_once_is_cancelled(aio, loop, runner, socketpair):
    a, _ = socketpair()

    def task():
        sent = yield aio.Timeout(aio.sendall(a, b"x"), 0.01)
        yield aio.Sleep(0.05)  # a deadline left armed would throw here
        return sent

    assert runner.complete(task()) == 1


def test_a_cancel_from_the_completing_step_reaches_the_task(aio, loop, runner):
    # The task completes at once, resumes, and is cancelled by a task it
    # spawned before: the cancel lands at its next wait, as always.
    def victim():
        yield CompletesAtOnce(None)
        yield aio.Sleep(10)

    def main():
        task = yield aio.Spawn(victim())
        yield aio.Sleep(0)
        task.cancel()
        yield aio.Sleep(0)
        return task.cancelled()

    assert runner.complete(main()) is True
