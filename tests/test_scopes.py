"""Cancel scopes and seeing inside: shield, ignore_after, task names, stacks, slow steps."""

from __future__ import annotations

import logging
import time

import pytest

from aioc.scopes import ignore_after, shield


def test_shield_holds_a_cancel_until_the_cleanup_is_done(aio, loop, runner):
    trace = []

    def cleanup():
        yield aio.Sleep(0.02)
        trace.append("cleaned up")
        return "result"

    def worker():
        try:
            trace.append((yield from shield(cleanup())))
        except aio.Cancelled:
            trace.append("cancelled as the shield ends")
            raise

    def canceller(task):
        yield aio.Sleep(0.005)
        assert task.cancel()

    task = loop.call_soon(worker())
    loop.call_soon(canceller(task))
    runner.forever()
    assert trace == ["cleaned up", "cancelled as the shield ends"]
    assert task.cancelled()


def test_shields_nest_and_an_uncancelled_task_goes_on(aio, loop, runner):
    async def inner():
        await aio.Sleep(0)
        return "inner"

    async def outer():
        return await shield(shield(inner()))

    assert runner.complete(outer()) == "inner"


def test_a_shielded_error_still_propagates(aio, loop, runner):
    def failing():
        yield aio.Sleep(0)
        raise ValueError("inside")

    def main():
        with pytest.raises(ValueError, match="inside"):
            yield from shield(failing())
        return "caught"

    assert runner.complete(main()) == "caught"


def test_deadlines_still_apply_inside_a_shield(aio, loop, runner):
    def slow():
        yield aio.Sleep(5)

    def main():
        with pytest.raises(TimeoutError):
            yield from shield(aio.timeout_after(0.01, slow()))
        return "timed out"

    assert runner.complete(main()) == "timed out"


def test_unshield_without_shield_is_an_error(aio, loop):
    task = loop.call_soon(aio.Sleep(0).__await__())
    with pytest.raises(RuntimeError):
        loop.unshield(task)


def test_ignore_after_returns_none_when_time_runs_out(aio, loop, runner):
    trace = []

    def slow():
        try:
            yield aio.Sleep(5)
        finally:
            trace.append("finally")

    def fast():
        yield aio.Sleep(0)
        return "fast"

    async def main():
        start = time.monotonic()
        late = await ignore_after(0.02, slow())
        early = await ignore_after(1.0, fast())
        return late, early, time.monotonic() - start < 1.0

    assert runner.complete(main()) == (None, "fast", True)
    assert trace == ["finally"]


def test_ignore_after_lets_an_inner_shorter_timeout_through(aio, loop, runner):
    def slow():
        yield aio.Sleep(5)

    def main():
        with pytest.raises(TimeoutError):
            yield from ignore_after(2.0, aio.timeout_after(0.01, slow()))
        return "inner timeout propagated"

    assert runner.complete(main()) == "inner timeout propagated"


# -- seeing inside -------------------------------------------------------------------


def test_tasks_have_names_stacks_and_are_listed(aio, loop, runner, socketpair):
    a, b = socketpair()
    seen = {}

    def reader():
        yield aio.ReadEvent(a)

    def sleeper():
        yield aio.Sleep(5)

    def inspector(tasks):
        yield aio.Sleep(0)
        for task in loop.tasks():
            stack = task.stack()
            seen[task.name] = ([frame.function for frame in stack.frames], type(stack.waiting_on).__name__)
        for task in tasks:
            task.cancel()

    r = loop.call_soon(reader())
    s = loop.call_soon(sleeper())
    s.name = "the sleeper"
    i = loop.call_soon(inspector([r, s]))
    assert loop.tasks() == [r, s, i]
    assert r.name == "test_tasks_have_names_stacks_and_are_listed.<locals>.reader"
    with pytest.raises(TypeError):
        r.name = 3
    runner.forever()
    assert seen[r.name] == (["reader"], "ReadEvent")
    assert seen["the sleeper"] == (["sleeper"], "Sleep")
    assert seen[i.name] == (["inspector"], "NoneType")
    assert "the sleeper" in repr(s)
    assert loop.tasks() == []


def test_a_debug_loop_logs_a_step_that_holds_it(aio, caplog):
    def hog():
        yield aio.Sleep(0)
        time.sleep(0.08)

    def quick():
        yield aio.Sleep(0)

    with aio.EventLoop(debug=True) as loop:
        loop.slow_step = 0.05
        assert loop.get_debug()
        task = loop.call_soon(hog())
        task.name = "hog"
        with caplog.at_level(logging.WARNING, logger="aioc"):
            loop.call_soon(quick())
            loop.run_until_complete(task)
    reports = [record.getMessage() for record in caplog.records if "held the loop" in record.getMessage()]
    assert len(reports) == 1
    assert reports[0].startswith("task hog held the loop for 0.0")
    assert "in hog" in reports[0]


def test_timeout_after_raises_once_so_that_cleanup_can_wait(aio, loop, runner):
    trace = []

    def work():
        try:
            yield aio.Sleep(5)
        except TimeoutError:
            trace.append("timed out")
            yield aio.Sleep(0.01)  # cleanup that waits is not cut short again
            trace.append("cleaned up")
            raise

    def main():
        with pytest.raises(TimeoutError):
            yield from aio.timeout_after(0.01, work())
        return trace

    assert runner.complete(main()) == ["timed out", "cleaned up"]
