"""Task groups: children finish before their group is left, failures stop the siblings."""

from __future__ import annotations

import gc
import sys
from typing import Any

import pytest

from aioc.scopes import ignore_after, shield
from aioc.taskgroups import TaskGroup, TaskGroupError


@pytest.fixture
def reports(loop: Any) -> list[dict]:
    """What the loop's exception handler was told: must stay empty unless a test says otherwise."""
    seen: list[dict] = []
    loop.set_exception_handler(lambda loop, context: seen.append(context))
    return seen


def settle(reports: list[dict]) -> list[dict]:
    gc.collect()  # a Task reports an exception nobody retrieved when it is collected
    return reports


def steps(aio: Any, count: int):
    for _ in range(count):
        yield aio.Sleep(0)


def test_results_come_in_spawn_order(aio, loop, runner, reports):
    def child(value, delay):
        yield from steps(aio, delay)
        return value

    def main():
        group = TaskGroup()
        for value, delay in [("a", 3), ("b", 0), ("c", 1)]:
            yield from group.spawn(child(value, delay))
        return (yield from group.join())

    assert runner.complete(main()) == ["a", "b", "c"]
    assert loop.tasks() == []
    assert settle(reports) == []


def test_children_are_named_after_what_they_run(aio, loop, runner):
    def fetch():
        yield aio.Sleep(0)

    def main():
        group = TaskGroup()
        task = yield from group.spawn(fetch())
        name = task.name
        yield from group.join()
        return name, group.tasks == [task]

    assert runner.complete(main()) == ("test_children_are_named_after_what_they_run.<locals>.fetch", True)


def test_a_failure_cancels_a_child_blocked_on_a_read(aio, loop, runner, socketpair, reports):
    a, b = socketpair()
    trace = []
    boom = ValueError("boom")

    def reader():
        try:
            return (yield aio.ReadEvent(a))
        except aio.Cancelled:
            trace.append("reader cancelled")
            raise
        finally:
            trace.append("reader finally")

    def failer():
        yield from steps(aio, 2)  # the reader is blocked by now
        raise boom

    def main():
        group = TaskGroup()
        blocked = yield from group.spawn(reader())
        yield from group.spawn(failer())
        with pytest.raises(TaskGroupError) as caught:
            yield from group.join()
        trace.append("join raised")
        return caught.value, blocked

    error, blocked = runner.complete(main())
    assert list(error.exceptions) == [boom]
    assert trace == ["reader cancelled", "reader finally", "join raised"]
    assert blocked.cancelled()
    assert loop.tasks() == []
    assert settle(reports) == []


def test_the_group_error_reads_like_an_exception_group(aio, loop, runner):
    def failer():
        yield aio.Sleep(0)
        raise KeyError("k")

    def main():
        group = TaskGroup()
        yield from group.spawn(failer())
        try:
            yield from group.join()
        except TaskGroupError as exc:
            return exc

    error = runner.complete(main())
    assert str(error) == "a child of a task group failed (1 sub-exception)"
    assert isinstance(error.exceptions[0], KeyError)
    if sys.version_info >= (3, 11):
        assert isinstance(error, ExceptionGroup)  # noqa: F821 (3.11+)
        matched, rest = error.split(KeyError)
        assert isinstance(matched, TaskGroupError) and rest is None


def test_several_failures_are_collected_in_the_order_they_happen(aio, loop, runner, reports):
    def failer():
        yield aio.Sleep(0)
        raise ValueError("first")

    def cleanup_fails():
        try:
            yield from steps(aio, 10)
        except aio.Cancelled:
            yield aio.Sleep(0)
            raise OSError("cleanup failed")

    def finisher():
        return "fine"
        yield

    def main():
        group = TaskGroup()
        yield from group.spawn(finisher())
        yield from group.spawn(cleanup_fails())
        yield from group.spawn(failer())
        try:
            yield from group.join()
        except TaskGroupError as exc:
            return exc

    error = runner.complete(main())
    assert [repr(exc) for exc in error.exceptions] == ["ValueError('first')", "OSError('cleanup failed')"]
    assert str(error) == "2 children of a task group failed (2 sub-exceptions)"
    assert settle(reports) == []


def test_a_child_may_clean_up_with_yields_before_it_finishes(aio, loop, runner, socketpair):
    a, b = socketpair()
    trace = []

    def polite():
        try:
            yield aio.ReadEvent(a)
        except aio.Cancelled:
            trace.append("cancelled")
            yield from steps(aio, 3)
            yield from aio.sendall(a, b"bye")  # real I/O during cleanup
            trace.append(("cleanup sent", (yield aio.ReadEvent(b))))
            raise

    def failer():
        yield aio.Sleep(0)
        raise ValueError("x")

    def main():
        group = TaskGroup()
        yield from group.spawn(polite())
        yield from group.spawn(failer())
        try:
            yield from group.join()
        except TaskGroupError:
            trace.append("join raised")

    runner.complete(main())
    assert trace == ["cancelled", ("cleanup sent", b"bye"), "join raised"]


def test_cancelling_the_owner_in_join_cancels_the_children_and_waits(aio, loop, runner, socketpair, reports):
    a, b = socketpair()
    trace = []

    def child(label):
        try:
            yield aio.ReadEvent(a if label == "r" else b)
        finally:
            yield aio.Sleep(0)  # a finally that waits: the group waits for it
            trace.append(f"{label} finally")

    def owner():
        group = TaskGroup()
        yield from group.spawn(child("r"))
        yield from group.spawn(child("s"))
        try:
            yield from group.join()
        finally:
            trace.append(("owner leaves join", len(loop.tasks())))

    def canceller(task):
        yield from steps(aio, 3)
        task.cancel()

    task = loop.call_soon(owner())
    loop.call_soon(canceller(task))
    runner.forever()
    assert trace == ["r finally", "s finally", ("owner leaves join", 1)]  # only the owner is left
    assert task.cancelled()
    assert loop.tasks() == []
    assert settle(reports) == []


def test_cancelling_the_owner_during_cleanup_still_waits(aio, loop, runner):
    """A second cancel while the group waits for its cancelled children does not cut the wait short."""
    trace = []

    def stubborn():
        try:
            yield aio.Sleep(10)
        except aio.Cancelled:
            yield from steps(aio, 5)
            trace.append("child done")
            raise

    def owner():
        group = TaskGroup()
        yield from group.spawn(stubborn())
        try:
            yield from group.join()
        except aio.Cancelled:
            trace.append("owner cancelled")
            raise

    def canceller(task):
        yield from steps(aio, 2)
        task.cancel()
        yield from steps(aio, 2)
        task.cancel()

    task = loop.call_soon(owner())
    loop.call_soon(canceller(task))
    runner.forever()
    assert trace == ["child done", "owner cancelled"]


def test_a_child_failure_while_the_owner_is_cancelled_is_reported_not_lost(aio, loop, runner, reports):
    def fails_in_cleanup():
        try:
            yield aio.Sleep(10)
        except aio.Cancelled:
            raise ValueError("cleanup")

    def owner():
        group = TaskGroup()
        yield from group.spawn(fails_in_cleanup())
        yield from group.join()

    task = loop.call_soon(owner())

    def canceller():
        yield from steps(aio, 2)
        task.cancel()

    loop.call_soon(canceller())
    runner.forever()
    assert task.cancelled()
    assert [repr(report["exception"]) for report in settle(reports)] == ["ValueError('cleanup')"]


def test_async_with_joins_on_exit(aio, loop, runner, reports):
    async def child(value):
        await aio.Sleep(0)
        return value * 2

    async def main():
        async with TaskGroup() as group:
            first = await group.spawn(child(1))
            second = await group.spawn(child(2))
        return first.done() and second.done(), first.result() + second.result()

    assert runner.complete(main()) == (True, 6)
    assert settle(reports) == []


def test_async_with_a_failure_cancels_the_body(aio, loop, runner, socketpair, reports):
    a, b = socketpair()
    trace = []

    async def failer():
        await aio.Sleep(0)
        raise ValueError("child")

    async def main():
        try:
            async with TaskGroup() as group:
                await group.spawn(failer())
                try:
                    await aio.ReadEvent(a)  # would block for ever
                except aio.Cancelled:
                    trace.append("body cancelled")
                    raise
        except TaskGroupError as exc:
            trace.append(list(map(repr, exc.exceptions)))

    runner.complete(main())
    assert trace == ["body cancelled", ["ValueError('child')"]]
    assert settle(reports) == []


def test_async_with_a_body_error_cancels_the_children_and_joins_the_failures(aio, loop, runner):
    trace = []

    async def sleeper():
        try:
            await aio.Sleep(10)
        finally:
            trace.append("child finally")

    async def main():
        try:
            async with TaskGroup() as group:
                await group.spawn(sleeper())
                await aio.Sleep(0)
                raise KeyError("body")
        except TaskGroupError as exc:
            trace.append(list(map(repr, exc.exceptions)))

    runner.complete(main())
    assert trace == ["child finally", ["KeyError('body')"]]


def test_async_with_an_outside_cancel_propagates_after_the_children(aio, loop, runner):
    trace = []

    async def sleeper():
        try:
            await aio.Sleep(10)
        finally:
            await aio.Sleep(0)
            trace.append("child finally")

    async def main():
        try:
            async with TaskGroup() as group:
                await group.spawn(sleeper())
                await aio.Sleep(10)
        finally:
            trace.append(("left", len(loop.tasks())))

    task = loop.call_soon(main())

    def canceller():
        yield from steps(aio, 2)
        task.cancel()

    loop.call_soon(canceller())
    runner.forever()
    assert task.cancelled()
    assert trace == ["child finally", ("left", 1)]


def test_nested_groups(aio, loop, runner, reports):
    trace = []

    async def inner_failer():
        await aio.Sleep(0)
        raise ValueError("inner")

    async def sleeper(label):
        try:
            await aio.Sleep(10)
        finally:
            trace.append(f"{label} finally")

    async def inner():
        async with TaskGroup() as group:
            await group.spawn(sleeper("inner sleeper"))
            await group.spawn(inner_failer())

    async def main():
        try:
            async with TaskGroup() as group:
                await group.spawn(sleeper("outer sleeper"))
                await group.spawn(inner())
        except TaskGroupError as exc:
            return exc

    error = runner.complete(main())
    (nested,) = error.exceptions
    assert isinstance(nested, TaskGroupError)
    assert list(map(repr, nested.exceptions)) == ["ValueError('inner')"]
    assert sorted(trace) == ["inner sleeper finally", "outer sleeper finally"]
    assert loop.tasks() == []
    assert settle(reports) == []


def test_an_outer_failure_cancels_an_inner_group(aio, loop, runner, socketpair):
    a, b = socketpair()
    trace = []

    def reader():
        try:
            yield aio.ReadEvent(a)
        finally:
            trace.append("inner reader finally")

    def inner():
        group = TaskGroup()
        yield from group.spawn(reader())
        try:
            yield from group.join()
        except aio.Cancelled:
            trace.append("inner join cancelled")
            raise

    def failer():
        yield from steps(aio, 3)
        raise ValueError("outer")

    def main():
        group = TaskGroup()
        inner_task = yield from group.spawn(inner())
        yield from group.spawn(failer())
        try:
            yield from group.join()
        except TaskGroupError as exc:
            return list(map(repr, exc.exceptions)), inner_task.cancelled()

    assert runner.complete(main()) == (["ValueError('outer')"], True)
    assert trace == ["inner reader finally", "inner join cancelled"]


def test_a_child_may_spawn_a_sibling_while_the_owner_joins(aio, loop, runner):
    group = TaskGroup()

    def late():
        yield aio.Sleep(0)
        return "late"

    def spawner():
        yield aio.Sleep(0)
        yield from group.spawn(late())
        return "spawner"

    def main():
        yield from group.spawn(spawner())
        return (yield from group.join())

    assert runner.complete(main()) == ["spawner", "late"]


def test_spawning_after_join_is_an_error(aio, loop, runner):
    ran = []

    def child():
        ran.append(True)
        yield aio.Sleep(0)

    async def never_run():
        ran.append("never")

    def main():
        group = TaskGroup()
        yield from group.spawn(child())
        yield from group.join()
        late = never_run()
        with pytest.raises(RuntimeError, match="already been joined"):
            yield from group.spawn(late)
        assert late.cr_frame is None  # closed, so Python does not warn it was never awaited
        with pytest.raises(RuntimeError, match="already closed"):
            yield from group.join()
        return "ok"

    assert runner.complete(main()) == "ok"
    assert ran == [True]


def test_a_child_spawned_while_the_group_cancels_never_starts(aio, loop, runner, reports):
    started = []
    group = TaskGroup()

    def late():
        started.append("late")
        yield aio.Sleep(0)

    def failer():
        yield aio.Sleep(0)
        raise ValueError("x")

    def cleanup_spawns():
        try:
            yield aio.Sleep(10)
        except aio.Cancelled:
            task = yield from group.spawn(late())
            started.append(task.name)
            raise

    def main():
        yield from group.spawn(cleanup_spawns())
        yield from group.spawn(failer())
        with pytest.raises(TaskGroupError):
            yield from group.join()
        return group.tasks[-1].cancelled()

    assert runner.complete(main()) is True
    assert started == ["test_a_child_spawned_while_the_group_cancels_never_starts.<locals>.late"]
    assert settle(reports) == []


def test_a_shielded_child_finishes_its_work_before_the_group_raises(aio, loop, runner):
    trace = []

    def essential():
        yield from steps(aio, 4)
        trace.append("essential done")

    def child():
        yield from shield(essential())
        yield aio.Sleep(10)

    def failer():
        yield aio.Sleep(0)
        raise ValueError("x")

    def main():
        group = TaskGroup()
        yield from group.spawn(child())
        yield from group.spawn(failer())
        with pytest.raises(TaskGroupError):
            yield from group.join()
        trace.append("join raised")

    runner.complete(main())
    assert trace == ["essential done", "join raised"]


def test_a_group_inside_ignore_after_that_does_not_expire(aio, loop, runner):
    def child():
        yield aio.Sleep(0)
        return 1

    def work():
        group = TaskGroup()
        yield from group.spawn(child())
        return (yield from group.join())

    def main():
        return (yield from ignore_after(5.0, work()))

    assert runner.complete(main()) == [1]


def test_an_expired_deadline_still_waits_for_the_children(aio, loop, runner):
    trace = []

    def sleeper():
        try:
            yield aio.Sleep(10)
        finally:
            trace.append("child finally")

    def work():
        group = TaskGroup()
        yield from group.spawn(sleeper())
        yield from group.join()

    def main():
        result = yield from ignore_after(0.01, work())
        trace.append(("ignore_after returned", result))

    runner.complete(main())
    assert trace == ["child finally", ("ignore_after returned", None)]
