"""Task API, cancellation, exceptions and their reporting, and yielding non-events."""

from __future__ import annotations

import gc
import logging
import time

import pytest

# -- state ----------------------------------------------------------------------


def test_result_and_exception_before_done_raise_invalid_state(aio, loop, runner):
    def main():
        yield aio.Sleep(0)
        return "value"

    t = loop.call_soon(main())
    assert not t.done()
    with pytest.raises(aio.InvalidStateError):
        t.result()
    with pytest.raises(aio.InvalidStateError):
        t.exception()
    assert issubclass(aio.InvalidStateError, RuntimeError)
    runner.forever()
    assert t.done()
    assert t.result() == "value"
    assert t.exception() is None
    assert not t.cancelled()


def test_task_repr_is_a_string(aio, loop, runner):
    t = loop.call_soon(_sleep(aio, 0))
    assert isinstance(repr(t), str)
    runner.forever()
    assert isinstance(repr(t), str)


def _sleep(aio, seconds):
    yield aio.Sleep(seconds)


# -- cancellation ------------------------------------------------------------------


def test_cancel_throws_cancelled_at_the_current_yield(aio, loop, runner, socketpair):
    a, _ = socketpair()
    trace = []

    def reader():
        try:
            yield aio.ReadEvent(a)
            trace.append("not reached")
        except aio.Cancelled:
            trace.append("cancelled at yield")
            raise
        finally:
            trace.append("finally")

    t = loop.call_soon(reader())

    def canceller():
        yield aio.Sleep(0.005)
        assert t.cancel() is True

    loop.call_soon(canceller())
    runner.forever()
    assert trace == ["cancelled at yield", "finally"]
    assert t.done()
    assert t.cancelled()
    assert isinstance(t.exception(), aio.Cancelled)
    with pytest.raises(aio.Cancelled):
        t.result()
    assert issubclass(aio.Cancelled, BaseException)
    assert not issubclass(aio.Cancelled, Exception)


def test_cancelling_a_reader_removes_its_registration(aio, loop, runner, socketpair):
    a, b = socketpair()

    def first():
        yield aio.ReadEvent(a)

    t1 = loop.call_soon(first())

    def second():
        yield aio.Sleep(0.005)
        t1.cancel()
        data = yield aio.ReadEvent(a)  # no ResourceBusy: t1's wait is gone
        return data

    def sender():
        yield aio.Sleep(0.02)
        b.send(b"for the second")

    t2 = loop.call_soon(second())
    loop.call_soon(sender())
    runner.forever()
    assert t1.cancelled()
    assert t2.result() == b"for the second"


def test_cancelling_a_writer_removes_its_registration(aio, loop, runner, socketpair):
    a, b = socketpair()
    while True:  # fill the buffers so that writers block
        try:
            a.send(b"\0" * 65536)
        except BlockingIOError:
            break

    def first():
        while True:
            yield aio.WriteEvent(a, b"x" * 65536)

    t1 = loop.call_soon(first())

    def second():
        yield aio.Sleep(0.005)
        t1.cancel()
        return (yield aio.WriteEvent(a, b"y"))

    def drainer():
        yield aio.Sleep(0.02)
        while not t2.done():
            yield aio.ReadEvent(b)

    t2 = loop.call_soon(second())
    loop.call_soon(drainer())
    runner.forever()
    assert t1.cancelled()
    assert t2.result() == 1


def test_cancel_a_sleeping_task(aio, loop, runner):
    trace = []

    def sleeper():
        try:
            yield aio.Sleep(30)
        finally:
            trace.append("finally")

    t = loop.call_soon(sleeper())

    def canceller():
        yield aio.Sleep(0)
        t.cancel()

    loop.call_soon(canceller())
    start = time.monotonic()
    runner.forever()
    assert time.monotonic() - start < 2
    assert t.cancelled()
    assert trace == ["finally"]


def test_cancel_a_task_in_the_ready_queue(aio, loop, runner):
    trace = []

    def spinner():
        try:
            while True:
                trace.append("spin")
                yield aio.Sleep(0)  # back in the ready queue
        finally:
            trace.append("finally")

    t = loop.call_soon(spinner())

    def canceller():
        # t runs before this task in the pass: it is now in the ready queue.
        t.cancel()
        yield aio.Sleep(0)

    loop.call_soon(canceller())
    runner.forever()
    assert t.cancelled()
    assert trace == ["spin", "finally"]


def test_cancel_a_task_woken_with_a_value(aio, loop, runner, socketpair):
    """Cancelled after its read completed but before it ran: Cancelled wins."""
    a, b = socketpair()
    trace = []

    def reader():
        try:
            yield aio.ReadEvent(a)
            trace.append("got data")
        except aio.Cancelled:
            trace.append("cancelled")
            raise

    t = loop.call_soon(reader())

    def other():
        yield aio.Sleep(0)
        b.send(b"data")
        # Next pass: the poll wakes the reader, queued behind this task.
        yield aio.Sleep(0)
        assert not t.done()
        assert t.cancel() is True

    loop.call_soon(other())
    runner.forever()
    assert trace == ["cancelled"]
    assert t.cancelled()


def test_cancel_a_task_that_has_not_started(aio, loop, runner):
    trace = []

    def never():
        trace.append("started")
        try:
            yield aio.Sleep(0)
        finally:
            trace.append("finally")

    t = loop.call_soon(never())
    assert t.cancel() is True
    runner.forever()
    assert trace == []
    assert t.cancelled()


def test_cancel_a_finished_task_returns_false(aio, loop, runner):
    t = loop.call_soon(_sleep(aio, 0))
    runner.forever()
    assert t.cancel() is False
    assert not t.cancelled()
    assert t.result() is None


def test_a_task_can_cancel_itself(aio, loop, runner):
    trace = []
    me = []

    def selfish():
        try:
            trace.append(me[0].cancel())
            yield aio.Sleep(0.5)  # Cancelled is thrown in here; the sleep is ignored
            trace.append("not reached")
        finally:
            trace.append("finally")

    me.append(loop.call_soon(selfish()))
    start = time.monotonic()
    runner.forever()
    assert time.monotonic() - start < 0.4
    assert trace == [True, "finally"]
    assert me[0].cancelled()


def test_a_task_that_catches_cancelled_and_continues_is_not_cancelled(aio, loop, runner):
    def stubborn():
        try:
            yield aio.Sleep(30)
        except aio.Cancelled:
            pass
        yield aio.Sleep(0.001)
        return "survived"

    t = loop.call_soon(stubborn())

    def canceller():
        yield aio.Sleep(0)
        t.cancel()

    loop.call_soon(canceller())
    runner.forever()
    assert not t.cancelled()
    assert t.result() == "survived"


def test_except_exception_does_not_swallow_cancelled(aio, loop, runner):
    def careless():
        try:
            yield aio.Sleep(30)
        except Exception:
            return "swallowed"

    t = loop.call_soon(careless())

    def canceller():
        yield aio.Sleep(0)
        t.cancel()

    loop.call_soon(canceller())
    runner.forever()
    assert t.cancelled()


def test_cancel_a_task_waiting_in_join(aio, loop, runner):
    def slow():
        yield aio.Sleep(0.05)
        return "slow"

    target = loop.call_soon(slow())

    def joiner():
        return (yield aio.Join(target))

    j = loop.call_soon(joiner())

    def canceller():
        yield aio.Sleep(0.001)
        j.cancel()

    loop.call_soon(canceller())
    runner.forever()
    assert j.cancelled()
    assert target.result() == "slow"


def test_joining_a_cancelled_task_raises_cancelled(aio, loop, runner):
    def sleeper():
        yield aio.Sleep(30)

    target = loop.call_soon(sleeper())

    def joiner():
        yield aio.Sleep(0)
        target.cancel()
        try:
            yield aio.Join(target)
        except aio.Cancelled:
            return "saw Cancelled"
        return None

    j = loop.call_soon(joiner())
    runner.forever()
    assert j.result() == "saw Cancelled"
    assert not j.cancelled()


# -- exceptions ------------------------------------------------------------------------


def test_an_exception_ends_its_task_only(aio, loop, runner):
    trace = []

    def bad():
        yield aio.Sleep(0.001)
        raise ValueError("bad task")

    def good():
        for i in range(5):
            yield aio.Sleep(0.002)
            trace.append(i)
        return "good"

    b = loop.call_soon(bad())

    def joiner():
        try:
            yield aio.Join(b)
        except ValueError as exc:
            return f"join saw {exc}"
        return None

    g = loop.call_soon(good())
    j = loop.call_soon(joiner())
    runner.forever()
    assert g.result() == "good"
    assert trace == [0, 1, 2, 3, 4]
    assert j.result() == "join saw bad task"
    with pytest.raises(ValueError, match="bad task"):
        b.result()
    assert isinstance(b.exception(), ValueError)
    assert not b.cancelled()


def test_never_retrieved_exception_is_reported_once_to_the_handler(aio, loop, runner):
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append((lp, ctx)))

    # Keep no reference to the exception: its traceback can reach the task.
    def bad():
        yield aio.Sleep(0)
        raise ValueError("nobody looks")

    t = loop.call_soon(bad())
    runner.forever()
    assert t.done()
    del t
    gc.collect()
    gc.collect()
    assert len(reports) == 1
    lp, ctx = reports[0]
    assert lp is loop
    assert isinstance(ctx["exception"], ValueError)
    assert str(ctx["exception"]) == "nobody looks"
    assert isinstance(ctx["task"], aio.Task)
    del ctx, reports[:]
    gc.collect()
    assert reports == []


def test_only_a_task_with_an_exception_to_report_has_a_finalizer(aio, loop, runner):
    def ok():
        yield aio.Sleep(0)

    def bad():
        yield aio.Sleep(0)
        raise ValueError("to report")

    def cancelled():
        yield aio.Sleep(10)

    tasks = [loop.call_soon(coro) for coro in (ok(), bad(), cancelled())]
    tasks[2].cancel()
    runner.forever()
    kinds = [type(task) for task in tasks]
    assert kinds == [aio.Task, aio.FailedTask, aio.Task]
    assert all(isinstance(task, aio.Task) for task in tasks)
    assert not hasattr(aio.Task, "__del__") and hasattr(aio.FailedTask, "__del__")
    assert isinstance(tasks[1].exception(), ValueError)  # retrieved: nothing to report


def test_every_failed_task_is_reported_among_many_spawned_and_finished(aio, loop, runner):
    """Tasks come and go in waves (the compiled loop recycles their memory): each failure is reported once."""
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(str(ctx["exception"])))

    def ok():
        return
        yield

    def bad(label):
        raise ValueError(label)
        yield

    def waves():
        for wave in range(4):
            for index in range(300):
                loop.call_soon(bad(f"{wave}-{index}") if index % 50 == 7 else ok())
            yield aio.Sleep(0)
            yield aio.Sleep(0)

    loop.call_soon(waves())
    runner.forever()
    gc.collect()
    gc.collect()
    expected = [f"{wave}-{index}" for wave in range(4) for index in range(7, 300, 50)]
    assert sorted(reports) == sorted(expected)


def test_never_retrieved_exception_goes_to_the_aioc_logger_by_default(aio, loop, runner, caplog):
    def bad():
        yield aio.Sleep(0)
        raise ValueError("logged by default")

    t = loop.call_soon(bad())
    runner.forever()
    with caplog.at_level(logging.ERROR, logger="aioc"):
        del t
        gc.collect()
    records = [r for r in caplog.records if r.name == "aioc" and r.levelno >= logging.ERROR]
    assert len(records) == 1
    assert records[0].exc_info is not None
    assert isinstance(records[0].exc_info[1], ValueError)
    assert "logged by default" in caplog.text


@pytest.mark.parametrize("how", ["result", "exception", "join"])
def test_retrieved_exceptions_are_not_reported(aio, loop, runner, how):
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))

    def bad():
        yield aio.Sleep(0)
        raise ValueError("seen")

    t = loop.call_soon(bad())

    def joiner():
        try:
            yield aio.Join(t)
        except ValueError:
            pass

    if how == "join":
        loop.call_soon(joiner())
    runner.forever()
    if how == "result":
        with pytest.raises(ValueError):
            t.result()
    elif how == "exception":
        assert isinstance(t.exception(), ValueError)
    del t
    gc.collect()
    assert reports == []


def test_cancelled_tasks_are_not_reported(aio, loop, runner):
    reports = []
    loop.set_exception_handler(lambda lp, ctx: reports.append(ctx))

    def sleeper():
        yield aio.Sleep(30)

    t = loop.call_soon(sleeper())

    def canceller():
        yield aio.Sleep(0)
        t.cancel()

    loop.call_soon(canceller())
    runner.forever()
    assert t.cancelled()
    del t
    gc.collect()
    assert reports == []


def test_an_exception_handler_that_raises_does_not_break_the_loop(aio, loop, runner, caplog):
    def handler(lp, ctx):
        raise RuntimeError("handler is broken")

    loop.set_exception_handler(handler)

    def bad():
        yield aio.Sleep(0)
        raise ValueError("unreported")

    t = loop.call_soon(bad())
    runner.forever()
    with caplog.at_level(logging.ERROR, logger="aioc"):
        del t
        gc.collect()
    assert runner.complete(_value(aio, "still works")) == "still works"


def _value(aio, value):
    yield aio.Sleep(0)
    return value


# -- yielding something that is not an event ------------------------------------------------


def _subcoroutine(aio):
    yield aio.Sleep(0)
    return "sub"


@pytest.mark.parametrize("kind", ["int", "none", "str", "generator", "event-class"])
def test_yielding_a_non_event_throws_type_error_into_the_task(aio, runner, kind):
    sub = _subcoroutine(aio)
    bad = {"int": 42, "none": None, "str": "ReadEvent", "generator": sub, "event-class": aio.Sleep}[kind]

    def main():
        try:
            yield bad
        except TypeError as exc:
            caught = exc
        else:
            return "no error"
        yield aio.Sleep(0)  # the task carries on normally
        value = yield from _subcoroutine(aio)
        return type(caught).__name__, value

    assert runner.complete(main()) == ("TypeError", "sub")
    sub.close()


def test_an_uncaught_type_error_from_a_non_event_ends_the_task(aio, loop, runner):
    def main():
        yield 42

    t = loop.call_soon(main())
    runner.forever()
    with pytest.raises(TypeError):
        t.result()
